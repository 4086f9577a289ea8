/*
 * libdsv4 — chat encoding (included by dsv4.h; do not include directly).
 *
 * Renders a conversation to the exact prompt string of the official
 * DeepSeek-V4 encoder, so that no binding re-implements it. Tokenize the
 * result with dsv4_tokenizer_encode() (added tokens matched, no BOS flag:
 * the prompt already starts with BOS).
 */
#ifndef LIBDSV4_DSV4_CHAT_H
#define LIBDSV4_DSV4_CHAT_H
#ifndef LIBDSV4_DSV4_H
#error "include <dsv4/dsv4.h> instead"
#endif

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Render a chat request (JSON, OpenAI chat-completions style) to the prompt
 * string the official DeepSeek-V4 encoder produces.
 *
 * Request fields:
 *  - "messages" (required): objects with "role" ∈ system, user, assistant,
 *    tool, latest_reminder. system: "content", optional "tools" and
 *    "response_format" (rendered as the official blocks). user: "content".
 *    assistant: "content", "reasoning_content", "tool_calls" (OpenAI form,
 *    "arguments" a JSON string), "prefix": true (or "wo_eos": true) on the
 *    last message to continue it (chat-prefix completion: no end-of-sentence).
 *    tool: "tool_call_id", "content" — consecutive results are merged into
 *    one user turn in the order of the preceding assistant's calls.
 *  - "tools": request-level tool list, attached to the first system message
 *    (a system message with empty content is added when there is none).
 *  - "thinking": {"type": "enabled"|"disabled"} or "thinking_mode":
 *    "thinking"|"chat"; default thinking.
 *  - "reasoning_effort": "none" (= chat mode), "low"/"minimal"/"medium"/"high"
 *    (= high: no prompt change), "max"/"xhigh" (= the official max-effort
 *    paragraph, thinking mode only).
 *  - "drop_thinking": boolean, default true (reasoning of turns before the
 *    last user message is dropped); forced false when any tools are present.
 * A completion request — "prompt" (and optional "suffix") instead of
 * "messages" — renders BOS + prompt, or with a suffix the fill-in-the-middle
 * form BOS <｜fim▁begin｜>prompt<｜fim▁hole｜>suffix<｜fim▁end｜>.
 * A top-level "response_format" is not injected into the prompt (the
 * official service does not document doing so); constrain the output instead.
 *
 * @param request_json  the request bytes (need not be NUL-terminated), at
 *                      most 1 GiB; borrowed.
 * @param prompt        receives the UTF-8 prompt, to free with dsv4_free().
 * @param err_msg       optional; on failure a message naming the field.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL pointers, unknown role,
 *         wrong field types, tool result without a matching call, bad
 *         reasoning_effort); DSV4_ERR_BAD_FORMAT (not a JSON object);
 *         DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_chat_render(const char *request_json, size_t len, char **prompt, char **err_msg);

/** A conversation being built by calls (the C form of the request JSON). @since 0.1.0 */
typedef struct dsv4_chat dsv4_chat;

/** Settings of a conversation. Append-only. @since 0.1.0 */
typedef int32_t dsv4_chat_field;
/** The values of dsv4_chat_field (explicit; never renumbered). @since 0.1.0 */
enum dsv4_chat_field_value {
    DSV4_CHAT_THINKING = 1,         /**< i64 0/1, default 1: thinking mode */
    DSV4_CHAT_REASONING_EFFORT = 2, /**< i64 dsv4_reasoning_effort */
    DSV4_CHAT_DROP_THINKING = 3,    /**< i64 0/1, default 1 (forced 0 when tools are present) */
    DSV4_CHAT_PREFIX = 4,           /**< i64 0/1 on the last assistant message: continue it (no end-of-sentence) */
    DSV4_CHAT_TOOLS = 100,          /**< JSON array of OpenAI tools ({"type":"function","function":{...}}) */
    DSV4_CHAT_RESPONSE_FORMAT = 101 /**< JSON object, rendered on the first (system) message */
};

/** Values of DSV4_CHAT_REASONING_EFFORT (mapping in dsv4_chat_render). @since 0.1.0 */
typedef int32_t dsv4_reasoning_effort;
/** The values of dsv4_reasoning_effort (explicit; never renumbered). @since 0.1.0 */
enum dsv4_reasoning_effort_value {
    DSV4_EFFORT_DEFAULT = 0, /**< = high in thinking mode */
    DSV4_EFFORT_NONE = 1,    /**< non-thinking (chat) mode */
    DSV4_EFFORT_LOW = 2,     /**< = high (the official encoder has high and max) */
    DSV4_EFFORT_MEDIUM = 3,  /**< = high */
    DSV4_EFFORT_HIGH = 4,
    DSV4_EFFORT_MAX = 5      /**< the max-effort paragraph */
};

/**
 * Create an empty conversation.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (out NULL), DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per conversation. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_chat_create(dsv4_chat **out);

/** Free a conversation; NULL is a no-op. @since 0.1.0 */
DSV4_API void dsv4_chat_free(dsv4_chat *chat);

/**
 * Message of the last failed call on `chat` (empty if none); valid until
 * the next call on it. @since 0.1.0
 */
DSV4_API const char *dsv4_chat_last_error(const dsv4_chat *chat);

/**
 * Append a message. role: "system", "user", "assistant", "latest_reminder"
 * or "developer"; content may be NULL (empty); reasoning_content only for
 * assistant messages (NULL for none). Strings are copied; UTF-8 checked.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL chat/role, unknown role,
 *         invalid UTF-8, reasoning on a non-assistant message, FIM request);
 *         DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per conversation. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_chat_add_message(dsv4_chat *chat, const char *role, const char *content,
                                           const char *reasoning_content);

/**
 * Add a tool call to the last message, which must be an assistant message.
 * @param id  the call id tool results refer to (may be NULL: results then
 *            follow the calls in order); arguments_json a JSON object.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULLs, no assistant message
 *         last, arguments not a JSON object, invalid UTF-8); DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per conversation. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_chat_add_tool_call(dsv4_chat *chat, const char *id, const char *name,
                                             const char *arguments_json);

/**
 * Append a tool result (checked against the calls when rendering).
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT, DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per conversation. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_chat_add_tool_result(dsv4_chat *chat, const char *tool_call_id, const char *content);

/**
 * Set an integer setting (DSV4_CHAT_THINKING, _REASONING_EFFORT, _DROP_THINKING, _PREFIX).
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (value out of range, PREFIX
 *         without a last assistant message); DSV4_ERR_UNKNOWN_OPTION.
 * @threadsafety one thread per conversation. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_chat_set_i64(dsv4_chat *chat, dsv4_chat_field field, int64_t value);

/**
 * Set a JSON setting (DSV4_CHAT_TOOLS: array; DSV4_CHAT_RESPONSE_FORMAT:
 * object, needs the system message first). json NULL clears tools.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT, DSV4_ERR_UNKNOWN_OPTION.
 * @threadsafety one thread per conversation. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_chat_set_json(dsv4_chat *chat, dsv4_chat_field field, const char *json);

/**
 * Make this a fill-in-the-middle request (no messages): prefix, and suffix
 * (NULL for a plain completion of the prefix).
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (NULLs, messages present, invalid UTF-8).
 * @threadsafety one thread per conversation. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_chat_set_fim(dsv4_chat *chat, const char *prefix, const char *suffix);

/**
 * Render the prompt string exactly as dsv4_chat_render() does for the
 * equivalent request JSON.
 * @param prompt  receives the prompt, to free with dsv4_free().
 * @return the statuses of dsv4_chat_render(); details in dsv4_chat_last_error().
 * @threadsafety one thread per conversation. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_chat_render_text(dsv4_chat *chat, char **prompt);

/**
 * Render and tokenize: the prompt's token ids. *n_ids receives the full
 * count, also with DSV4_ERR_BUFFER_TOO_SMALL (so cap 0 asks the size).
 * @return DSV4_OK, DSV4_ERR_BUFFER_TOO_SMALL, and the statuses of
 *         dsv4_chat_render_text() and dsv4_tokenizer_encode().
 * @threadsafety one thread per conversation; the tokenizer may be shared. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_chat_render_ids(dsv4_chat *chat, const dsv4_tokenizer *tok, int32_t *ids, size_t cap,
                                          size_t *n_ids);

/** Incremental parser of generated assistant text. @since 0.1.0 */
typedef struct dsv4_chat_parser dsv4_chat_parser;

/** Events of dsv4_chat_parser_next(). Append-only. @since 0.1.0 */
typedef int32_t dsv4_chat_event_type;
/** The values of dsv4_chat_event_type (explicit; never renumbered). @since 0.1.0 */
enum dsv4_chat_event_type_value {
    DSV4_CHAT_EVENT_NONE = 0,            /**< nothing ready yet: feed more bytes (or finish) */
    DSV4_CHAT_EVENT_REASONING = 1,       /**< data: reasoning_content bytes */
    DSV4_CHAT_EVENT_CONTENT = 2,         /**< data: content bytes */
    DSV4_CHAT_EVENT_TOOL_CALL_START = 3, /**< index: call number from 0; data: function name */
    DSV4_CHAT_EVENT_TOOL_CALL_ARGS = 4,  /**< index; data: the next piece of the call's arguments JSON */
    DSV4_CHAT_EVENT_TOOL_CALL_END = 5,   /**< index: the call's arguments are complete */
    DSV4_CHAT_EVENT_ERROR = 6,           /**< data: raw text that is not valid DSML, kept verbatim */
    DSV4_CHAT_EVENT_END = 7              /**< the message ended (end-of-sentence token or finish) */
};

/**
 * Create a parser for one assistant message. In thinking mode (`thinking`
 * 1) the text starts as reasoning up to "</think>", then content; in chat
 * mode (0) it is content from the start. Content ends at the end-of-sentence
 * token or at a DSML tool-call block, which is parsed strictly: each call
 * gives START (name), ARGS pieces that concatenate to a JSON object
 * (string="true" values JSON-quoted, others as written), END. Text that
 * breaks the DSML grammar gives an ERROR event holding it verbatim (from the
 * start of the block), never a crash.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (out NULL, thinking not 0/1),
 *         DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per parser. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_chat_parser_create(int32_t thinking, dsv4_chat_parser **out);

/** Free a parser; NULL is a no-op. @since 0.1.0 */
DSV4_API void dsv4_chat_parser_free(dsv4_chat_parser *parser);

/**
 * Feed generated bytes (the detokenized text including special tokens), split
 * anywhere — inside UTF-8 sequences and tags too. The bytes are copied.
 * Text fed after the message ended comes back as ERROR events.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL, or after finish);
 *         DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per parser. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_chat_parser_feed(dsv4_chat_parser *parser, const char *bytes, size_t n);

/**
 * Mark the end of the generated text (e.g. the generation stopped on a
 * length limit): held-back bytes are released and END follows.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT. @threadsafety one thread per parser. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_chat_parser_finish(dsv4_chat_parser *parser);

/**
 * Pull the next event. Bytes that a later byte could still change (a partial
 * tag, an incomplete UTF-8 sequence) are held back until decided.
 * @param type   receives the event type (DSV4_CHAT_EVENT_NONE when nothing is ready).
 * @param index  optional; the tool call's index for TOOL_CALL_* events, else -1.
 * @param data   optional; the event's bytes (NUL-terminated), owned by the
 *               parser and valid until the next call on it.
 * @param len    optional; their length.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (parser or type NULL), DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per parser. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_chat_parser_next(dsv4_chat_parser *parser, dsv4_chat_event_type *type,
                                           int32_t *index, const char **data, size_t *len);

#ifdef __cplusplus
}
#endif

#endif
