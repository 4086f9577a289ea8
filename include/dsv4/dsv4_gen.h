/*
 * libdsv4 — generation (included by dsv4.h; do not include directly).
 *
 * A generator turns a session into "the assistant's answer, streamed": it
 * feeds a prompt (reusing the session's tokens that already match it),
 * samples with its own sampler chain, enforces the thinking budget and the
 * output constraints (JSON, JSON schema, DSML tool calls), detokenizes,
 * splits reasoning / content / tool calls, applies stop strings, and hands
 * out events one at a time. Nothing is pushed at the caller: every event is
 * pulled with dsv4_gen_next() (or prepared in bounded slices with
 * dsv4_gen_step() and collected with dsv4_gen_poll()); a callback is
 * optional.
 *
 * Typical use:
 *
 *     dsv4_gen *g;
 *     dsv4_gen_create(session, tok, &g);
 *     dsv4_gen_start_request(g, request_json, len);   // or dsv4_gen_start(g, ids, n)
 *     for (;;) {
 *         dsv4_gen_event_type t; const char *d; size_t n;
 *         if (dsv4_gen_next(g, &t, NULL, &d, &n) != DSV4_OK || t == DSV4_GEN_EVENT_STOP) break;
 *         if (t == DSV4_GEN_EVENT_CONTENT) fwrite(d, 1, n, stdout);
 *     }
 *     dsv4_gen_free(g);
 *
 * Thread safety: one thread at a time per generator (and per context, as
 * for sessions), except dsv4_gen_cancel(), which any thread may call at any
 * time while the generator exists.
 */
#ifndef LIBDSV4_DSV4_GEN_H
#define LIBDSV4_DSV4_GEN_H
#ifndef LIBDSV4_DSV4_H
#error "include <dsv4/dsv4.h> instead"
#endif

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A generator bound to one session. @since 0.1.0 */
typedef struct dsv4_gen dsv4_gen;

/** Integer settings of a generator (dsv4_gen_set_i64). Append-only. @since 0.1.0 */
typedef int32_t dsv4_gen_param;
/** The values of dsv4_gen_param (explicit; never renumbered). @since 0.1.0 */
enum dsv4_gen_param_value {
    /** completion tokens at most (reasoning included), >= 1; default 4096 */
    DSV4_GEN_MAX_TOKENS = 1,
    /** dsv4_reasoning_effort; sets the default thinking budget: low 1024,
     *  medium 8192, high and max none (only MAX_TOKENS bounds it), none 0.
     *  The prompt switch itself is the chat encoder's (dsv4_chat_render). */
    DSV4_GEN_REASONING_EFFORT = 2,
    /** reasoning tokens at most (the "</think>" that closes them not
     *  counted), -1 = none (default; the effort's budget applies), 0 =
     *  close the thinking block at once. The last freely chosen reasoning
     *  token ends on a whole UTF-8 character, then "\n\n" and "</think>" are
     *  forced (only "</think>" for budgets 0 and 1) and the answer follows. */
    DSV4_GEN_REASONING_BUDGET = 3,
    /** -1 (default): thinking when the prompt ends with "<think>", 0: the
     *  output is content only (chat mode: "<think>"/"</think>" are never
     *  emitted), 1: the output starts as reasoning */
    DSV4_GEN_THINKING = 4,
    /** dsv4_response_format, default DSV4_RESPONSE_TEXT */
    DSV4_GEN_RESPONSE_FORMAT = 5,
    /** dsv4_tool_choice, default AUTO when tools are set, else NONE */
    DSV4_GEN_TOOL_CHOICE = 6,
    /** 0/1, default 0: record the log-probability of each chosen token */
    DSV4_GEN_LOGPROBS = 7,
    /** 0..20, default 0: alternatives recorded per token (implies LOGPROBS) */
    DSV4_GEN_TOP_LOGPROBS = 8,
    /** 0/1, default 1: keep the session's tokens that are a prefix of the
     *  new prompt instead of re-feeding them (reported as cached tokens) */
    DSV4_GEN_REUSE_PREFIX = 9
#ifdef DSV4_ENABLE_EXPERIMENTAL
    ,
    /** @experimental 0 (default): a start feeds the whole prompt before it
     *  returns. N > 0: a start feeds nothing (the prompt tokens the session
     *  already holds are kept as ever); the rest is fed by the steps —
     *  dsv4_gen_step_batch() feeds N prompt tokens at most per call, in the
     *  same forward pass as the other generators' tokens (a long prompt then
     *  does not stall the other streams); dsv4_gen_next() and the other
     *  single-generator calls feed all of it at their first step. Results are
     *  the same either way. A cancel while the prompt is fed ends the
     *  generation with DSV4_FINISH_CANCELLED. */
    DSV4_GEN_PREFILL_CHUNK = 10,
    /** @experimental speculative decoding with the model's MTP head
     *  (docs/generation.md "Speculative decoding"); needs a session created
     *  with DSV4_OPT_MTP (else DSV4_ERR_NOT_AVAILABLE). 0 (default): off.
     *  1: after each token the MTP head drafts the next one, and the next
     *  step checks the draft with the logits after the token; greedy output
     *  is the same token for token as without speculation, sampled output
     *  has the same distribution (other draws). The token and its draft go
     *  through the model in one two-row pass only where that pass computes
     *  what two one-row passes compute, bit for bit; elsewhere (today: all
     *  numerics) as two one-row passes, so it gains no speed yet. 2: always
     *  one two-row pass (faster; a greedy run may then differ from one
     *  without speculation where two logits are within rounding). Drafts
     *  are not made for sampled output under a JSON or tool constraint, with
     *  a user sampler stage or select callback, or in dsv4_gen_step_batch().
     *  Counters: DSV4_USAGE_DRAFTS_PROPOSED / _ACCEPTED. */
    DSV4_GEN_SPECULATIVE = 11
#endif
};

/** Values of DSV4_GEN_RESPONSE_FORMAT. @since 0.1.0 */
typedef int32_t dsv4_response_format;
/** The values of dsv4_response_format (explicit; never renumbered). @since 0.1.0 */
enum dsv4_response_format_value {
    DSV4_RESPONSE_TEXT = 0,
    DSV4_RESPONSE_JSON_OBJECT = 1, /**< content is one JSON object, guaranteed to parse */
    DSV4_RESPONSE_JSON_SCHEMA = 2  /**< content follows the schema set with dsv4_gen_set_json_schema() */
};

/** Values of DSV4_GEN_TOOL_CHOICE. @since 0.1.0 */
typedef int32_t dsv4_tool_choice;
/** The values of dsv4_tool_choice (explicit; never renumbered). @since 0.1.0 */
enum dsv4_tool_choice_value {
    DSV4_TOOLS_NONE = 0,     /**< no tool calls (the DSML token is banned) */
    DSV4_TOOLS_AUTO = 1,     /**< text, optionally followed by tool calls */
    DSV4_TOOLS_REQUIRED = 2  /**< the answer is tool calls (named: see dsv4_gen_set_tools) */
};

/** Events of dsv4_gen_next(). Append-only. @since 0.1.0 */
typedef int32_t dsv4_gen_event_type;
/** The values of dsv4_gen_event_type (explicit; never renumbered). @since 0.1.0 */
enum dsv4_gen_event_type_value {
    DSV4_GEN_EVENT_NONE = 0,            /**< dsv4_gen_poll(): nothing queued */
    DSV4_GEN_EVENT_REASONING = 1,       /**< data: reasoning_content bytes (valid UTF-8) */
    DSV4_GEN_EVENT_CONTENT = 2,         /**< data: content bytes (valid UTF-8 unless the model wrote otherwise) */
    DSV4_GEN_EVENT_TOOL_CALL_START = 3, /**< index: call number from 0; data: function name */
    DSV4_GEN_EVENT_TOOL_CALL_ARGS = 4,  /**< index; data: next piece of the arguments JSON */
    DSV4_GEN_EVENT_TOOL_CALL_END = 5,   /**< index: the call is complete */
    DSV4_GEN_EVENT_STOP = 6             /**< index: the dsv4_finish_reason; the last event */
};

/** Why a generation ended. Append-only. @since 0.1.0 */
typedef int32_t dsv4_finish_reason;
/** The values of dsv4_finish_reason (explicit; never renumbered). @since 0.1.0 */
enum dsv4_finish_reason_value {
    DSV4_FINISH_NONE = 0,       /**< not finished */
    DSV4_FINISH_STOP = 1,       /**< end-of-sentence token or a stop string */
    DSV4_FINISH_LENGTH = 2,     /**< MAX_TOKENS reached, or the context is full */
    DSV4_FINISH_TOOL_CALLS = 3, /**< the answer ended with tool calls */
    DSV4_FINISH_ERROR = 4,      /**< a step failed: see dsv4_gen_last_error() */
    DSV4_FINISH_CANCELLED = 5   /**< dsv4_gen_cancel() */
};

/** Counters of dsv4_gen_usage(). Append-only. @since 0.1.0 */
typedef int32_t dsv4_usage_key;
/** The values of dsv4_usage_key (explicit; never renumbered). @since 0.1.0 */
enum dsv4_usage_key_value {
    DSV4_USAGE_PROMPT_TOKENS = 1,     /**< prompt length */
    DSV4_USAGE_CACHED_TOKENS = 2,     /**< prompt tokens the session already held */
    DSV4_USAGE_COMPLETION_TOKENS = 3, /**< tokens generated (reasoning included) */
    DSV4_USAGE_REASONING_TOKENS = 4,  /**< of which reasoning ("</think>" included) */
    DSV4_USAGE_PROMPT_NS = 5,         /**< nanoseconds spent feeding the prompt */
    DSV4_USAGE_DECODE_NS = 6          /**< nanoseconds spent generating */
#ifdef DSV4_ENABLE_EXPERIMENTAL
    ,
    /** @experimental tokens drafted by the MTP head (DSV4_GEN_SPECULATIVE) */
    DSV4_USAGE_DRAFTS_PROPOSED = 7,
    /** @experimental of which accepted: generated as drafted */
    DSV4_USAGE_DRAFTS_ACCEPTED = 8,
    /** @experimental checks run as one two-row pass (the rest: one-row passes) */
    DSV4_USAGE_DRAFTS_BATCHED = 9
#endif
};

/**
 * The name of a finish reason as the response JSON spells it: "stop",
 * "length", "tool_calls", "error", "cancelled"; "none" for
 * DSV4_FINISH_NONE and "unknown" for any other value. Static storage,
 * never NULL.
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API const char *dsv4_finish_reason_string(dsv4_finish_reason reason);

/**
 * The name of an event type: "none", "reasoning", "content",
 * "tool_call_start", "tool_call_args", "tool_call_end", "stop"; "unknown"
 * for any other value. Static storage, never NULL.
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API const char *dsv4_gen_event_name(dsv4_gen_event_type type);

/**
 * Optional callback: called with each event as dsv4_gen_next(),
 * dsv4_gen_step() or dsv4_gen_poll() produces it, on the calling thread,
 * before the event is handed out. data is valid during the call only.
 */
typedef void (*dsv4_gen_event_fn)(void *user, dsv4_gen_event_type type, int32_t index, const char *data,
                                  size_t len);

/**
 * Create a generator on a session. Takes a reference to the session and
 * one to the tokenizer (both stay alive until the generator is freed, so
 * they may be freed before it). Only ids both the model and the tokenizer
 * know are ever generated.
 * @param[out] out the generator, freed with dsv4_gen_free(); NULL on failure.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULLs); DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per context; the tokenizer may be shared. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_gen_create(dsv4_session *session, const dsv4_tokenizer *tok, dsv4_gen **out);

/**
 * Free a generator (NULL is a no-op), releasing its session and tokenizer
 * references and its sampler (whose user stage is released); the session
 * keeps its tokens.
 * @threadsafety one thread per context. @since 0.1.0
 */
DSV4_API void dsv4_gen_free(dsv4_gen *gen);

/**
 * Message of the last failed call on this generator; "" when none. Owned by
 * the generator, valid until its next call. @since 0.1.0
 */
DSV4_API const char *dsv4_gen_last_error(const dsv4_gen *gen);

/**
 * The generator's sampler (owned by it, freed with it): configure it with
 * dsv4_sampler_set_*(). Its history is reset at each start.
 * @return the sampler, NULL for NULL. @since 0.1.0
 */
DSV4_API dsv4_sampler *dsv4_gen_sampler(dsv4_gen *gen);

/**
 * Set an integer setting; applies from the next start.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL, value out of range,
 *         JSON_SCHEMA without a schema); DSV4_ERR_UNKNOWN_OPTION. On failure
 *         nothing changes.
 * @threadsafety one thread per generator. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_gen_set_i64(dsv4_gen *gen, dsv4_gen_param key, int64_t value);

/** Read an integer setting. @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT, DSV4_ERR_UNKNOWN_OPTION. @since 0.1.0 */
DSV4_API dsv4_status dsv4_gen_get_i64(const dsv4_gen *gen, dsv4_gen_param key, int64_t *value);

/**
 * Add a stop string (1..256 bytes, at most 16): content ends before its
 * first occurrence (finish reason stop). Content that could be the start of
 * a stop string is held back until decided. NULL clears the list.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (length, count); DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per generator. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_gen_add_stop(dsv4_gen *gen, const char *stop, size_t len);

/**
 * Constrain the content to a JSON schema (subset: type, properties,
 * required, additionalProperties, enum, const, items; see docs/constraints.md)
 * and set DSV4_GEN_RESPONSE_FORMAT to JSON_SCHEMA. NULL clears it (format
 * back to TEXT). The schema is copied.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (malformed schema);
 *         DSV4_ERR_UNSUPPORTED (a keyword outside the subset, named in the
 *         message); DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per generator. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_gen_set_json_schema(dsv4_gen *gen, const char *schema, size_t len);

/**
 * Tools the answer may call (OpenAI "tools" array JSON; copied): tool calls
 * are then kept valid DSML (names and parameters from these definitions,
 * string="false" values valid JSON), so every emitted call parses. Sets
 * DSV4_GEN_TOOL_CHOICE to AUTO, or to REQUIRED with `forced_name` non-NULL
 * (every call names that tool). NULL tools clears them. The tools must
 * also be in the prompt (dsv4_chat_render does that).
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (not an array of functions,
 *         forced_name not among them); DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per generator. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_gen_set_tools(dsv4_gen *gen, const char *tools_json, size_t len,
                                        const char *forced_name);

/** Set or clear (fn NULL) the event callback. @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT. @since 0.1.0 */
DSV4_API dsv4_status dsv4_gen_set_callback(dsv4_gen *gen, dsv4_gen_event_fn fn, void *user);

/**
 * Start generating after a prompt: the session's tokens that are a prefix
 * of it are kept (DSV4_GEN_REUSE_PREFIX), otherwise the session is reset;
 * the rest is fed now. Any previous generation on this generator ends.
 * @param prompt  n >= 1 token ids (borrowed for the call).
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL, n 0, id out of range,
 *         JSON and tool settings that cannot be combined);
 *         DSV4_ERR_CONTEXT_FULL (the prompt does not fit, nothing fed);
 *         DSV4_ERR_ABORTED (cancelled, or stopped by the progress callback,
 *         while feeding); and the statuses of
 *         dsv4_session_eval().
 * @threadsafety one thread per context. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_gen_start(dsv4_gen *gen, const int32_t *prompt, size_t n);

/**
 * Start from an OpenAI-style chat-completions request (JSON): the prompt is
 * rendered as dsv4_chat_render() does ("messages", or "prompt" / "suffix"
 * for completion and fill-in-the-middle), and the request's generation
 * fields set the generator: "model" (ignored), "stream", "stream_options"
 * {"include_usage"}, "max_tokens" / "max_completion_tokens", "temperature",
 * "top_p", "top_k", "min_p", "seed", "frequency_penalty",
 * "presence_penalty", "repetition_penalty", "logit_bias", "stop" (string
 * or array of up to 16), "response_format" ({"type": "text" |
 * "json_object" | "json_schema", "json_schema": {"schema": ...}}), "tools",
 * "tool_choice" ("none" | "auto" | "required" | {"type": "function",
 * "function": {"name": ...}}), "logprobs", "top_logprobs",
 * "thinking_budget" (libdsv4: reasoning tokens at most), "n" (1 only), and
 * the prompt fields of dsv4_chat_render(). Unlike the official service,
 * temperature, top_p and the penalties apply in thinking mode too.
 * Unknown fields and wrong types are errors (the message names the field),
 * and leave the generator unchanged. The request is self-contained: the
 * settings it does not give take their defaults (sampler settings and logit
 * biases included; the sampler's user callbacks stay).
 * The request is parsed once, its prompt encoded once and its output
 * constraint compiled once.
 * @param request_json  the request bytes (need not be NUL-terminated), at
 *                      most 1 GiB; borrowed for the call.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL, above 1 GiB, bad
 *         request: see dsv4_gen_last_error()); DSV4_ERR_BAD_FORMAT (not
 *         JSON); DSV4_ERR_UNSUPPORTED (schema keyword outside the subset);
 *         DSV4_ERR_OUT_OF_MEMORY; and the statuses of dsv4_gen_start().
 * @threadsafety one thread per context. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_gen_start_request(dsv4_gen *gen, const char *request_json, size_t len);

/**
 * The next event, generating tokens until one is ready. After STOP, further
 * calls return STOP again.
 * @param type   receives the event type (never NONE).
 * @param index  optional: tool-call index, or the finish reason for STOP, else -1.
 * @param data   optional: the event's bytes (NUL-terminated), owned by the
 *               generator, valid until its next call.
 * @param len    optional: their length.
 * @return DSV4_OK (also when the generation ended with an error: STOP with
 *         DSV4_FINISH_ERROR); DSV4_ERR_INVALID_ARGUMENT (NULL, or no
 *         generation started).
 * @threadsafety one thread per context. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_gen_next(dsv4_gen *gen, dsv4_gen_event_type *type, int32_t *index, const char **data,
                                   size_t *len);

/**
 * Generate up to `max_tokens` tokens (>= 1) or until `max_seconds` (> 0;
 * 0 = no limit) has passed (checked between tokens), or the generation
 * ends; the events are queued for dsv4_gen_poll(). For game loops: bounded
 * work per frame.
 * @param n_tokens  optional: tokens generated by this call.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT.
 * @threadsafety one thread per context. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_gen_step(dsv4_gen *gen, int32_t max_tokens, double max_seconds, int32_t *n_tokens);

/**
 * The next queued event without generating (type NONE when none is
 * queued). Arguments as dsv4_gen_next().
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT.
 * @threadsafety one thread per generator. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_gen_poll(dsv4_gen *gen, dsv4_gen_event_type *type, int32_t *index, const char **data,
                                   size_t *len);

/**
 * Ask the generation to stop: the token being computed is finished, then
 * STOP with DSV4_FINISH_CANCELLED (a prompt being fed stops between
 * chunks: dsv4_gen_start returns DSV4_ERR_ABORTED). Cleared by the next start.
 * @threadsafety any thread, any time while the generator exists; also
 *               async-signal-safe (one lock-free atomic store), so a SIGINT
 *               handler may call it. @since 0.1.0
 */
DSV4_API void dsv4_gen_cancel(dsv4_gen *gen);

/** The finish reason (DSV4_FINISH_NONE while running); -1 for NULL. @since 0.1.0 */
DSV4_API int32_t dsv4_gen_finish_reason(const dsv4_gen *gen);

/** A usage counter of the current generation; -1 for NULL or an unknown key. @since 0.1.0 */
DSV4_API int64_t dsv4_gen_usage(const dsv4_gen *gen, dsv4_usage_key key);

/** Tokens generated so far (reasoning included); -1 for NULL. @since 0.1.0 */
DSV4_API int64_t dsv4_gen_n_tokens(const dsv4_gen *gen);

/**
 * The i-th generated token and, with DSV4_GEN_LOGPROBS, its natural-log
 * probability under the model's distribution (log-softmax of the logits,
 * before the sampler's stages and the constraints) and the most likely
 * alternatives under it (up to DSV4_GEN_TOP_LOGPROBS).
 * @param token, logprob   optional outputs.
 * @param top_ids, top_logprobs  optional arrays of `cap` entries.
 * @param n_top  optional: alternatives written (<= cap, <= TOP_LOGPROBS).
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL gen, i out of range);
 *         DSV4_ERR_NOT_AVAILABLE (logprob, top_ids or top_logprobs asked
 *         for while logprobs were not recorded; *token is still written).
 *         Asking for the token alone always succeeds.
 * @threadsafety one thread per generator. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_gen_token(const dsv4_gen *gen, int64_t i, int32_t *token, float *logprob,
                                    int32_t *top_ids, float *top_logprobs, size_t cap, size_t *n_top);

/**
 * The chat-completion response JSON of the generation so far (complete
 * after STOP): {"id","object":"chat.completion","created","model",
 * "choices":[{"index":0,"message":{"role":"assistant","content",
 * "reasoning_content"?,"tool_calls"?},"logprobs"?,"finish_reason"}],
 * "usage":{...}}. A fill-in-the-middle or "prompt" request gives the
 * completion form ("text_completion", choices[].text).
 * @param json  receives the text, to free with dsv4_free().
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT, DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per generator. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_gen_response_json(const dsv4_gen *gen, char **json);

/**
 * Streaming form: the next "chat.completion.chunk" JSON (what follows
 * "data: " in a server-sent event), generating as needed. The first chunk
 * carries the role; reasoning, content and tool-call events each give a
 * delta chunk; the last chunk carries the finish reason (and usage when the
 * request asked for it or was not a request). After it, *chunk is NULL (the
 * "[DONE]" marker).
 * @param chunk  receives the text (dsv4_free()) or NULL at the end.
 * @return as dsv4_gen_next(); DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per context. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_gen_next_chunk(dsv4_gen *gen, char **chunk);

/**
 * One call: start the request, generate to the end, return the response
 * JSON (as dsv4_gen_response_json()).
 * @return the statuses of dsv4_gen_start_request(); DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per context. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_gen_complete(dsv4_gen *gen, const char *request_json, size_t len, char **response_json);

#ifdef DSV4_ENABLE_EXPERIMENTAL
/**
 * Report the progress of feeding the prompt in dsv4_gen_start() and
 * dsv4_gen_start_request() to `fn` (NULL = none, the default): done and
 * total count the prompt tokens the session did not already hold; once
 * with done = 0 before any work, then after each chunk of up to the
 * context's DSV4_OPT_MAX_BATCH tokens (one forward pass each), the last
 * time with done = total. A nonzero return stops the
 * feeding as dsv4_gen_cancel() does: the start returns DSV4_ERR_ABORTED and
 * the tokens already fed stay in the session, so the next start with the
 * same prompt (DSV4_GEN_REUSE_PREFIX) goes on from there. Decode steps are
 * not reported (each one is a token event).
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (gen NULL).
 * @threadsafety one thread per generator. @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_gen_set_progress(dsv4_gen *gen, dsv4_eval_progress_fn fn, void *user);

/* ------------------------------------------------------------------------ */
/* The Anthropic Messages form (experimental)                               */
/* ------------------------------------------------------------------------ */

/**
 * Start from an Anthropic Messages request (JSON, the body of
 * POST /v1/messages): it is mapped to the chat-completions request of
 * dsv4_gen_start_request(), which then applies. The mapping:
 *  - "system" (a string or text blocks) → a system message;
 *  - "messages": role "user" or "assistant", "content" a string or blocks:
 *    "text" blocks → the message's text (joined by "\n"); in a user
 *    message "tool_result" blocks ("tool_use_id", "content" a string or
 *    text blocks, "is_error" → "Error: " before the text) → tool results;
 *    in an assistant message "thinking" blocks → its reasoning_content
 *    ("signature" ignored), "redacted_thinking" dropped, "tool_use" blocks
 *    ("id", "name", object "input") → its tool_calls. A last assistant
 *    message is continued (chat-prefix completion). Other block types
 *    (image, document, server tools) are refused;
 *  - "tools": [{"name", "description"?, "input_schema"}] → function tools;
 *    "tool_choice": {"type": "auto" | "any" | "none" | "tool", "name"} →
 *    "auto" | "required" | "none" | the named function;
 *  - "thinking": {"type": "enabled", "budget_tokens": N} → thinking mode
 *    with a reasoning budget of N tokens (0 <= N < max_tokens); absent or
 *    {"type": "disabled"} → chat mode (no reasoning);
 *  - "max_tokens" (required, >= 1), "stop_sequences", "temperature"
 *    (0..1), "top_p", "top_k", "stream", "model" as their chat
 *    counterparts; "metadata" and "service_tier" accepted and ignored.
 * Unknown fields and wrong types are errors naming the field (as
 * "messages[2].content[0].tool_use_id"), and leave the generator as it was.
 * Afterwards dsv4_gen_message_response_json() and
 * dsv4_gen_next_message_event() give the answer in the Messages form (the
 * chat-completions forms work too).
 * @param request_json  the request bytes (need not be NUL-terminated), at
 *                      most 1 GiB; borrowed for the call.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL, above 1 GiB, bad
 *         request: see dsv4_gen_last_error()); DSV4_ERR_BAD_FORMAT (not
 *         JSON); and the statuses of dsv4_gen_start_request().
 * @threadsafety one thread per context.
 * @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_gen_start_messages(dsv4_gen *gen, const char *request_json, size_t len);

/**
 * The Messages response JSON of the generation so far (complete after
 * STOP): {"id": "msg_…", "type": "message", "role": "assistant", "model",
 * "content": [{"type": "thinking", "thinking", "signature": ""}? (thinking
 * mode), {"type": "text", "text"}? (present unless the answer is tool
 * calls only), {"type": "tool_use", "id": "toolu_…", "name", "input"}…],
 * "stop_reason": "end_turn" | "max_tokens" | "stop_sequence" | "tool_use"
 * (null while running; a cancelled or failed generation gives "end_turn"),
 * "stop_sequence": the stop string that matched or null, "usage":
 * {"input_tokens" (prompt tokens not read from the cache),
 * "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens": 0}}.
 * @param json  receives the text, to free with dsv4_free().
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT, DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per generator.
 * @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_gen_message_response_json(const dsv4_gen *gen, char **json);

/**
 * Streaming Messages form: the next server-sent events, complete frames
 * ("event: NAME\ndata: JSON\n\n", one or more), generating as needed. The
 * first call gives "message_start"; then each reasoning, content and
 * tool-call event gives its "content_block_delta" ("thinking_delta",
 * "text_delta", "input_json_delta"), preceded by "content_block_stop" of
 * the block it ends and "content_block_start" of the block it opens (a
 * thinking block ends with an empty "signature_delta"); the end gives the
 * open block's "content_block_stop", "message_delta" (stop_reason,
 * stop_sequence, usage) and "message_stop". After that, *events is NULL.
 * @param events  receives the text (dsv4_free()) or NULL at the end.
 * @return as dsv4_gen_next(); DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per context.
 * @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_gen_next_message_event(dsv4_gen *gen, char **events);

/**
 * Continuous batching: one step of each of `n` generators whose sessions
 * share one context, with a single forward pass for all of them — each
 * running generator's last chosen token (and, with DSV4_GEN_PREFILL_CHUNK,
 * the next chunk of a prompt still being fed) goes through the model
 * together, so the weights are read once for the whole batch; then each
 * chooses its next token and queues its events as dsv4_gen_step() would.
 * Take the events with dsv4_gen_poll(), or with dsv4_gen_next_chunk() /
 * dsv4_gen_next_message_event() while dsv4_gen_queued_events() is above 0
 * or the generation has ended (those then generate nothing). A generator
 * that has ended is skipped. Token for token, a generator gives what it
 * gives alone (greedy runs are equal; sampled runs too, the sampler being
 * the generator's own).
 * If the batched pass is refused or fails, each generator steps alone
 * (its failure ends it with DSV4_FINISH_ERROR, as dsv4_gen_step() does).
 * @param gens      n distinct generators on distinct sessions of one
 *                  context, each started.
 * @param n         1..256.
 * @param n_tokens  optional: tokens generated by this call, all generators.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL, n out of range, a
 *         generator twice or not started).
 * @threadsafety one thread per context (all the generators' context).
 * @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_gen_step_batch(dsv4_gen *const *gens, int32_t n, int32_t *n_tokens);

/**
 * Events queued and not yet taken (by dsv4_gen_poll(), dsv4_gen_next() and
 * the chunk and message-event calls); -1 for NULL.
 * @threadsafety one thread per generator.
 * @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API int64_t dsv4_gen_queued_events(const dsv4_gen *gen);

#endif /* DSV4_ENABLE_EXPERIMENTAL */

#ifdef __cplusplus
}
#endif

#endif
