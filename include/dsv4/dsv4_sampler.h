/*
 * libdsv4 — sampling (included by dsv4.h; do not include directly).
 *
 * A sampler turns one position's logits into a token: logit bias →
 * repetition / frequency / presence penalties → temperature → top-k → top-p
 * → min-p → a draw from a seeded generator (same seed and inputs ⇒ same
 * tokens). Temperature 0 is greedy (argmax after bias and penalties; the
 * lowest id wins ties). Defaults follow DeepSeek's recommendation for local
 * use: temperature 1.0, top_p 1.0, everything else off.
 */
#ifndef LIBDSV4_DSV4_SAMPLER_H
#define LIBDSV4_DSV4_SAMPLER_H
#ifndef LIBDSV4_DSV4_H
#error "include <dsv4/dsv4.h> instead"
#endif

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A sampler: settings, penalty history and generator state. @since 0.1.0 */
typedef struct dsv4_sampler dsv4_sampler;

/** Sampler settings; "f64"/"i64" name the setter to use. Append-only. @since 0.1.0 */
typedef int32_t dsv4_sampler_param;
/** The values of dsv4_sampler_param (explicit; never renumbered). @since 0.1.0 */
enum dsv4_sampler_param_value {
    DSV4_SAMPLER_TEMPERATURE = 1,        /**< f64 >= 0, default 1.0; 0 = greedy */
    DSV4_SAMPLER_TOP_K = 2,              /**< i64 >= 0, default 0 (off) */
    DSV4_SAMPLER_TOP_P = 3,              /**< f64 in (0, 1], default 1.0 (off) */
    DSV4_SAMPLER_MIN_P = 4,              /**< f64 in [0, 1], default 0 (off): drop tokens below min_p × the top probability */
    DSV4_SAMPLER_REPETITION_PENALTY = 5, /**< f64 > 0, default 1.0: logits of tokens in the history divided (if > 0) or multiplied (if < 0) by it */
    DSV4_SAMPLER_FREQUENCY_PENALTY = 6,  /**< f64 in [-2, 2], default 0: minus count × penalty */
    DSV4_SAMPLER_PRESENCE_PENALTY = 7,   /**< f64 in [-2, 2], default 0: minus penalty once per token present */
    DSV4_SAMPLER_PENALTY_LAST_N = 8,     /**< i64 >= 0, default 64: history length the penalties see; 0 = all accepted tokens */
    DSV4_SAMPLER_SEED = 9                /**< i64, default 0: generator seed (setting it restarts the generator) */
};

/**
 * Create a sampler with the defaults.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (out NULL), DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per sampler. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_sampler_create(dsv4_sampler **out);

/**
 * Free a sampler; NULL is a no-op. A registered user stage's `release` is
 * called (once) with its `user` first.
 * @threadsafety one thread per sampler. @since 0.1.0
 */
DSV4_API void dsv4_sampler_free(dsv4_sampler *sampler);

/**
 * Set a floating-point setting.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL, value out of range or not
 *         finite, or an integer setting); DSV4_ERR_UNKNOWN_OPTION. On failure
 *         nothing changes.
 * @threadsafety one thread per sampler. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_sampler_set_f64(dsv4_sampler *sampler, dsv4_sampler_param key, double value);

/** Set an integer setting; statuses as dsv4_sampler_set_f64(). @since 0.1.0 */
DSV4_API dsv4_status dsv4_sampler_set_i64(dsv4_sampler *sampler, dsv4_sampler_param key, int64_t value);

/** Read a floating-point setting. @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT, DSV4_ERR_UNKNOWN_OPTION. @since 0.1.0 */
DSV4_API dsv4_status dsv4_sampler_get_f64(const dsv4_sampler *sampler, dsv4_sampler_param key, double *value);

/** Read an integer setting. @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT, DSV4_ERR_UNKNOWN_OPTION. @since 0.1.0 */
DSV4_API dsv4_status dsv4_sampler_get_i64(const dsv4_sampler *sampler, dsv4_sampler_param key, int64_t *value);

/**
 * Add `bias` to the logit of `token` before everything else (-INFINITY bans
 * it; 0 removes the entry). Tokens beyond the vocabulary given at sampling
 * time are ignored.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL, token < 0, bias NaN or
 *         +infinity); DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per sampler. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_sampler_set_logit_bias(dsv4_sampler *sampler, int32_t token, float bias);

/**
 * The distribution the sampler would draw from for these logits (all
 * stages applied; zero for removed tokens), into probs[n_vocab].
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULLs, n_vocab 0 or above
 *         2^31, a NaN logit, also one the user stage wrote);
 *         DSV4_ERR_NOT_AVAILABLE (the stages removed every token: logit
 *         biases, penalties, the user stage or min-p left nothing to draw
 *         from; probs' content unspecified); DSV4_ERR_OUT_OF_MEMORY;
 *         DSV4_ERR_ABORTED (a user callback failed).
 * @threadsafety one thread per sampler. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_sampler_probs(dsv4_sampler *sampler, const float *logits, size_t n_vocab, float *probs);

/**
 * Choose a token for these logits (not yet accepted: call
 * dsv4_sampler_accept() with the token actually used).
 * @param[out] token the token; -1 on failure.
 * @return the statuses of dsv4_sampler_probs(); DSV4_ERR_INVALID_ARGUMENT
 *         also when the user stage's select chose a removed token.
 * @threadsafety one thread per sampler. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_sampler_sample(dsv4_sampler *sampler, const float *logits, size_t n_vocab,
                                         int32_t *token);

/**
 * Record a generated token in the penalty history.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (NULL, token < 0), DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per sampler. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_sampler_accept(dsv4_sampler *sampler, int32_t token);

/**
 * Forget the history and restart the generator from the seed (settings and
 * biases stay). @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_sampler_reset(dsv4_sampler *sampler);

/**
 * A user-supplied sampler stage (all members optional). Size-versioned:
 * set struct_size to sizeof(dsv4_sampler_callbacks) as compiled by the
 * caller; members are only ever appended, every member after struct_size
 * is a function pointer at a multiple of sizeof(void *), and members beyond
 * struct_size are taken as NULL. The table is copied on registration; every
 * callback runs on the thread calling the sampler. A nonzero return fails
 * the call with DSV4_ERR_ABORTED.
 * Layout (pinned by tests/abi/header_c99.c): struct_size at 0, then apply,
 * select, accept, reset, release at 1..5 × sizeof(void *).
 * @since 0.1.0
 */
typedef struct dsv4_sampler_callbacks {
    uint32_t struct_size;
    /** Change logits in place (after the logit bias and penalties, before
     *  temperature and truncation); -INFINITY removes a token. */
    int32_t (*apply)(void *user, float *logits, size_t n_vocab);
    /** Choose the token from the final distribution (instead of the seeded
     *  draw); the choice must have nonzero probability. */
    int32_t (*select)(void *user, const float *probs, size_t n_vocab, int32_t *token);
    /** A token was accepted (dsv4_sampler_accept). */
    void (*accept)(void *user, int32_t token);
    /** The sampler was reset. */
    void (*reset)(void *user);
    /** The stage is gone: called once with `user` when the sampler is freed
     *  (also by dsv4_gen_free() for a generator's sampler), or when the stage
     *  is removed or replaced by dsv4_sampler_set_callbacks(); not called
     *  when the same `user` is registered again with the same `release`
     *  (the stage keeps owning it). Lets a binding free what `user` points
     *  to. May not call back into the sampler. @since 0.1.0 */
    void (*release)(void *user);
} dsv4_sampler_callbacks;

/**
 * Register (or with cb NULL remove) a user stage. `user` is passed to every
 * callback; the library never frees it, but calls the table's `release`
 * with it once the stage is gone (see dsv4_sampler_callbacks.release). A
 * stage already registered is replaced (and released). On failure nothing
 * changes and `user` is not released.
 * @param cb    the table (copied), or NULL to remove the stage.
 * @param user  passed to the callbacks; may be NULL.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL sampler; struct_size not
 *         a multiple of sizeof(void *) — it would cut a function pointer —,
 *         below sizeof(void *) or above 64 KiB).
 * @threadsafety one thread per sampler. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_sampler_set_callbacks(dsv4_sampler *sampler, const dsv4_sampler_callbacks *cb,
                                                void *user);

#ifdef __cplusplus
}
#endif

#endif
