/*
 * libdsv4 — tokenizer (included by dsv4.h; do not include directly).
 *
 * Byte-level BPE as described by a Hugging Face tokenizer.json (DeepSeek-V4
 * and DeepSeek-V3 files), plus a streaming detokenizer.
 *
 * Errors: functions return a dsv4_status; where a message helps, an optional
 * `char **err_msg` receives a copy the caller frees with dsv4_free() (NULL
 * on success or when the copy could not be made).
 *
 * Limits: encode() accepts texts of at most DSV4_TOKENIZER_MAX_TEXT bytes;
 * longer texts give DSV4_ERR_INVALID_ARGUMENT. Token ids are int32_t.
 * A pre-token (a piece the pre-tokenizer does not split: a run of letters,
 * of whitespace or of symbols) longer than 65 536 bytes is merged in pieces
 * of at most 65 536 bytes cut at character boundaries, so its ids may differ
 * from those of the reference tokenizer (runs of one repeated character,
 * such as spaces or one letter, give the same ids). This bounds the cost whatever the text: O(log 65 536)
 * time per byte (about 5 MiB/s on such runs, 60 MiB/s on prose, one core)
 * and about 2.5 MiB of scratch memory besides the caller's ids.
 */
#ifndef LIBDSV4_DSV4_TEXT_H
#define LIBDSV4_DSV4_TEXT_H
#ifndef LIBDSV4_DSV4_H
#error "include <dsv4/dsv4.h> instead"
#endif

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Largest text encode() accepts, in bytes (1 GiB). @since 0.1.0 */
#define DSV4_TOKENIZER_MAX_TEXT ((size_t)1 << 30)

/**
 * A loaded tokenizer. Immutable after load: any number of threads may call
 * encode/decode/lookups on one tokenizer concurrently. @since 0.1.0
 */
typedef struct dsv4_tokenizer dsv4_tokenizer;

/** Flags for dsv4_tokenizer_encode(). @since 0.1.0 */
typedef uint32_t dsv4_encode_flag;
/** The values of dsv4_encode_flag (explicit; never renumbered). @since 0.1.0 */
enum dsv4_encode_flag_value {
    /** Put the BOS token id before the text's ids. */
    DSV4_ENCODE_ADD_BOS = 1u << 0,
    /** Do not match added/special tokens in the text: "<think>" is encoded
     *  as plain text (for untrusted input). Default: they are matched, as
     *  the reference tokenizer does. */
    DSV4_ENCODE_NO_SPECIAL = 1u << 1
};

/**
 * Named special tokens (text-protocol §1.2), for dsv4_tokenizer_special_id().
 * New names are appended with the next free value (from 16: 15 is the
 * deprecated count below and never names a token). @since 0.1.0
 */
typedef int32_t dsv4_special_token;
/** The values of dsv4_special_token (explicit; never renumbered). @since 0.1.0 */
enum dsv4_special_token_value {
    DSV4_TOKEN_BOS = 0,              /**< <｜begin▁of▁sentence｜> */
    DSV4_TOKEN_EOS = 1,              /**< <｜end▁of▁sentence｜> */
    DSV4_TOKEN_PAD = 2,              /**< <｜▁pad▁｜> */
    DSV4_TOKEN_USER = 3,             /**< <｜User｜> */
    DSV4_TOKEN_ASSISTANT = 4,        /**< <｜Assistant｜> */
    DSV4_TOKEN_THINK_BEGIN = 5,      /**< <think> */
    DSV4_TOKEN_THINK_END = 6,        /**< </think> */
    DSV4_TOKEN_DSML = 7,             /**< ｜DSML｜ */
    DSV4_TOKEN_DSML_OPEN = 8,        /**< <dsml: */
    DSV4_TOKEN_DSML_CLOSE = 9,       /**< </dsml: */
    DSV4_TOKEN_FIM_BEGIN = 10,       /**< <｜fim▁begin｜> */
    DSV4_TOKEN_FIM_HOLE = 11,        /**< <｜fim▁hole｜> */
    DSV4_TOKEN_FIM_END = 12,         /**< <｜fim▁end｜> */
    DSV4_TOKEN_LATEST_REMINDER = 13, /**< <｜latest_reminder｜> */
    DSV4_TOKEN_EOT = 14              /**< <|EOT|> (legacy) */
#ifndef DSV4_NO_DEPRECATED
    /** Deprecated since 0.1.0 (hidden when DSV4_NO_DEPRECATED is defined):
     *  frozen at 15, the number of names in 0.1.0; it does not grow when
     *  names are appended (they take 16, 17, ...), so it is no loop bound.
     *  dsv4_tokenizer_special_id() gives -1 for it. Removed with the next
     *  ABI major. */
    , DSV4_TOKEN_COUNT_ = 15
#endif
};
/**
 * Load a tokenizer.json (BPE model, Split/ByteLevel pre-tokenizers,
 * ByteLevel decoder). `opts` may be NULL (only its log settings are used).
 * @param[out] out the tokenizer, freed with dsv4_tokenizer_free(); NULL on error.
 * @param[out] err_msg optional message on error (free with dsv4_free()).
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT, DSV4_ERR_IO, DSV4_ERR_BAD_FORMAT,
 *         DSV4_ERR_UNSUPPORTED (a normalizer/pre-tokenizer/model type this
 *         library does not implement), DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_tokenizer_load(const char *path, const dsv4_options *opts,
                                         dsv4_tokenizer **out, char **err_msg);

/**
 * Release the caller's reference to a tokenizer (NULL is a no-op). The
 * generators and detokenizers created with it hold references of their
 * own, so they stay usable and the objects may be freed in any order; the
 * memory goes with the last reference.
 * @threadsafety any thread, but not concurrently with the caller's own
 *               other calls on this handle. @since 0.1.0
 */
DSV4_API void dsv4_tokenizer_free(dsv4_tokenizer *tok);

/**
 * Encode UTF-8 text (`len` bytes, need not be NUL-terminated; text may be
 * NULL when len is 0) into token ids.
 * @param flags a combination of dsv4_encode_flag.
 * @param ids caller buffer of `cap` ids (may be NULL when cap is 0).
 * @param[out] n_out number of ids of the full encoding (also on
 *             DSV4_ERR_BUFFER_TOO_SMALL, so a call with cap 0 asks the size).
 * @param[out] err_msg optional message on error (free with dsv4_free()).
 * @return DSV4_OK; DSV4_ERR_BUFFER_TOO_SMALL (ids' content unspecified);
 *         DSV4_ERR_INVALID_ARGUMENT (NULL tok/n_out, invalid UTF-8 with the
 *         byte offset in the message, text longer than DSV4_TOKENIZER_MAX_TEXT,
 *         unknown flag); DSV4_ERR_OUT_OF_MEMORY; DSV4_ERR_INTERNAL (regex
 *         engine resource limit).
 * @threadsafety concurrent calls on one tokenizer are safe. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_tokenizer_encode(const dsv4_tokenizer *tok, const char *text, size_t len,
                                           uint32_t flags, int32_t *ids, size_t cap, size_t *n_out,
                                           char **err_msg);

/**
 * Decode ids to bytes (added tokens give their literal text). The result is
 * not NUL-terminated and may contain invalid UTF-8 if the ids split a
 * character (use dsv4_detok for streaming).
 * @param[out] len_out bytes of the full result (also on DSV4_ERR_BUFFER_TOO_SMALL).
 * @return DSV4_OK, DSV4_ERR_BUFFER_TOO_SMALL, DSV4_ERR_INVALID_ARGUMENT
 *         (NULL argument, id out of range or not in the vocabulary).
 * @threadsafety concurrent calls on one tokenizer are safe. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_tokenizer_decode(const dsv4_tokenizer *tok, const int32_t *ids, size_t n,
                                           char *buf, size_t cap, size_t *len_out);

/**
 * The bytes of one token (as decode() of that single id would give).
 * @return as dsv4_tokenizer_decode(). @threadsafety any thread. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_tokenizer_token_to_piece(const dsv4_tokenizer *tok, int32_t id, char *buf,
                                                   size_t cap, size_t *len_out);

/**
 * The id of the token whose bytes are exactly piece[0..len) (added tokens by
 * their content, BPE tokens by their decoded bytes).
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (NULL argument or no such token; *id = -1).
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_tokenizer_piece_to_token(const dsv4_tokenizer *tok, const char *piece,
                                                   size_t len, int32_t *id);

/** Number of ids (largest id + 1; 129280 for DeepSeek-V4); -1 for NULL. @since 0.1.0 */
DSV4_API int32_t dsv4_tokenizer_vocab_size(const dsv4_tokenizer *tok);

/**
 * Id of a named special token, or -1 if tok is NULL, `which` is unknown or
 * the tokenizer has no such token (e.g. <think> in the V3 file).
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API int32_t dsv4_tokenizer_special_id(const dsv4_tokenizer *tok, dsv4_special_token which);

/**
 * Whether id is an added token flagged `special` in tokenizer.json
 * (1 yes, 0 no or invalid). @since 0.1.0
 */
DSV4_API int dsv4_tokenizer_is_special(const dsv4_tokenizer *tok, int32_t id);

/**
 * Streaming detokenizer: feed ids one by one, get bytes that never end in
 * an incomplete UTF-8 sequence (held back until the next ids complete it).
 * Bytes that can never become valid UTF-8 are passed through unchanged.
 * One object per stream; one thread at a time. Holds a reference to its
 * tokenizer (since 0.1.0), so the tokenizer may be freed first. @since 0.1.0
 */
typedef struct dsv4_detok dsv4_detok;

/**
 * Create a streaming detokenizer for `tok`, taking a reference to it
 * (released by dsv4_detok_free()).
 * @param[out] out the detokenizer; NULL on failure.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (NULL tok or out), DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety any thread; the tokenizer may be shared. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_detok_create(const dsv4_tokenizer *tok, dsv4_detok **out);

/** Free, releasing its tokenizer reference (NULL is a no-op). @threadsafety one thread per object. @since 0.1.0 */
DSV4_API void dsv4_detok_free(dsv4_detok *d);

/**
 * Feed one id; write the bytes now complete to buf.
 * @param[out] len_out bytes written (needed size on DSV4_ERR_BUFFER_TOO_SMALL,
 *             in which case the id is not consumed; 4 + the longest piece
 *             always suffices, see dsv4_detok_max_chunk()).
 * @return DSV4_OK, DSV4_ERR_BUFFER_TOO_SMALL, DSV4_ERR_INVALID_ARGUMENT (bad id:
 *         not consumed), DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per object. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_detok_feed(dsv4_detok *d, int32_t id, char *buf, size_t cap,
                                     size_t *len_out);

/**
 * Write out the bytes held back (an incomplete sequence at the end of the
 * stream) and reset the object for a new stream.
 * @return DSV4_OK, DSV4_ERR_BUFFER_TOO_SMALL (nothing written, needed size in
 *         *len_out), DSV4_ERR_INVALID_ARGUMENT. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_detok_flush(dsv4_detok *d, char *buf, size_t cap, size_t *len_out);

/** A buffer of this many bytes always suffices for one feed/flush; 0 for NULL. @since 0.1.0 */
DSV4_API size_t dsv4_detok_max_chunk(const dsv4_detok *d);

#ifdef __cplusplus
}
#endif

#endif
