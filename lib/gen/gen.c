/*
 * lib/gen/gen.c — the generator (see dsv4_gen.h): the token loop, thinking
 * budget, constrained choice, events and stop strings.
 *
 * One step: feed the previously chosen token to the session, read the
 * logits, choose the next token (forced tokens first: the end of a thinking
 * block whose budget is spent, or the bytes that close constrained output
 * when tokens run out; else the sampler's choice restricted to what the
 * constraint allows), then turn it into text and events. The chosen token
 * is fed at the start of the next step, so a generation that ends never
 * computes a token nobody reads.
 */
#ifndef DSV4_ENABLE_EXPERIMENTAL
#define DSV4_ENABLE_EXPERIMENTAL 1 /* the experimental tier (docs/ABI.md) */
#endif
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core/core.h"
#include "core/utf8.h"
#include "gen/gen_int.h"
#include "gen/sampler_int.h"
#include "text/tokenizer_int.h"

#define REJECT_TRIES 8

/* prompt tokens fed per evaluation (a progress report and a cancellation
 * check after each): the context's chunk, so each is one forward pass */
static size_t prompt_chunk(const dsv4_gen *g)
{
    int64_t b = dsv4__session_max_batch(g->sess);
    return b > 0 ? (size_t)b : 1;
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

dsv4_status dsv4__gen_fail(dsv4_gen *g, dsv4_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err, sizeof g->err, fmt, ap);
    va_end(ap);
    return code;
}

const char *dsv4__gen_piece(const dsv4_gen *g, int32_t id, size_t *len)
{
    *len = g->piece_off[id + 1] - g->piece_off[id];
    return g->piece_pool + g->piece_off[id];
}

/* ------------------------------------------------------------------------ */
/* creation and settings                                                     */
/* ------------------------------------------------------------------------ */

static int32_t special(const dsv4_tokenizer *tok, dsv4_special_token w, int64_t n)
{
    int32_t id = dsv4_tokenizer_special_id(tok, w);
    return id >= 0 && id < n ? id : -1;
}

/* Cache every token's bytes (one pool) and mark the control tokens: added
 * tokens whose text is a protocol marker (<｜...｜>, <think>, ...), which
 * constrained text never contains. */
static dsv4_status build_pieces(dsv4_gen *g)
{
    size_t n = (size_t)g->n_vocab, total = 0, cap = 1 << 20;
    g->piece_off = dsv4__malloc((n + 1) * sizeof *g->piece_off);
    g->control = dsv4__calloc(n ? n : 1, 1);
    g->piece_pool = dsv4__malloc(cap);
    if (!g->piece_off || !g->control || !g->piece_pool) return DSV4_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        g->piece_off[i] = (uint32_t)total;
        dsv4_status st = dsv4_tokenizer_token_to_piece(g->tok, (int32_t)i, NULL, 0, &len);
        if (st == DSV4_ERR_INVALID_ARGUMENT) { g->control[i] = 2; continue; } /* hole in the vocabulary */
        if (total + len + 1 > cap) {
            while (total + len + 1 > cap) cap *= 2;
            char *p = dsv4__realloc(g->piece_pool, cap);
            if (!p) return DSV4_ERR_OUT_OF_MEMORY;
            g->piece_pool = p;
        }
        if (len && dsv4_tokenizer_token_to_piece(g->tok, (int32_t)i, g->piece_pool + total, len, &len) != DSV4_OK)
            return DSV4_ERR_INTERNAL;
        total += len;
        if (total > UINT32_MAX - 4096) return DSV4_ERR_UNSUPPORTED;
    }
    g->piece_off[n] = (uint32_t)total;
    /* control tokens: the named specials, and any added token flagged special */
    for (int w = 0; w < DSV4__N_SPECIAL; w++) {
        int32_t id = special(g->tok, (dsv4_special_token)w, g->n_vocab);
        if (id >= 0) g->control[id] = 1;
    }
    for (size_t i = 0; i < n; i++)
        if (dsv4_tokenizer_is_special(g->tok, (int32_t)i)) g->control[i] = 1;
    return DSV4_OK;
}

dsv4_status dsv4_gen_create(dsv4_session *session, const dsv4_tokenizer *tok, dsv4_gen **out)
{
    if (!out) return DSV4_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!session || !tok) return DSV4_ERR_INVALID_ARGUMENT;
    int64_t mv = dsv4__session_vocab(session), tv = dsv4_tokenizer_vocab_size(tok);
    if (mv <= 0 || tv <= 0) return DSV4_ERR_INVALID_ARGUMENT;
    dsv4_gen *g = dsv4__calloc(1, sizeof *g);
    if (!g) return DSV4_ERR_OUT_OF_MEMORY;
    dsv4__tokenizer_retain(tok); /* held until dsv4_gen_free: any free order is safe */
    g->tok = tok;
    g->model_vocab = mv;
    g->n_vocab = mv < tv ? mv : tv;
    g->max_tokens = 4096;
    g->budget = -1;
    g->thinking_opt = -1;
    g->reuse = 1;
    g->pending = -1;
    g->draft = g->verify_d = -1;
    atomic_init(&g->cancel, 0);
    dsv4_status st = dsv4_sampler_create(&g->sampler);
    if (!st) st = build_pieces(g);
    if (!st) {
        g->logits = dsv4__malloc((size_t)mv * sizeof(float));
        g->probs = dsv4__malloc((size_t)mv * sizeof(float));
        g->work = dsv4__malloc((size_t)mv * sizeof(float));
        if (!g->logits || !g->probs || !g->work) st = DSV4_ERR_OUT_OF_MEMORY;
    }
    if (st) {
        g->sess = NULL;
        dsv4_gen_free(g);
        return st;
    }
    g->eos = special(tok, DSV4_TOKEN_EOS, g->n_vocab);
    g->think_open = special(tok, DSV4_TOKEN_THINK_BEGIN, g->n_vocab);
    g->think_close = special(tok, DSV4_TOKEN_THINK_END, g->n_vocab);
    g->dsml = special(tok, DSV4_TOKEN_DSML, g->n_vocab);
    dsv4__session_retain(session);
    g->sess = session;
    *out = g;
    return DSV4_OK;
}

static void clear_generation(dsv4_gen *g)
{
    for (size_t i = 0; i < g->q_n; i++) dsv4__free(g->q[(g->q_head + i) % g->q_cap].data);
    g->q_head = g->q_n = 0;
    dsv4__free(g->cur);
    g->cur = NULL;
    dsv4__sbuf_free(&g->hold);
    dsv4__sbuf_free(&g->reasoning);
    dsv4__sbuf_free(&g->content);
    for (size_t i = 0; i < g->n_calls; i++) {
        dsv4__free(g->calls[i].name);
        dsv4__sbuf_free(&g->calls[i].args);
    }
    g->n_calls = 0;
    dsv4_detok_free(g->detok);
    g->detok = NULL;
    dsv4_chat_parser_free(g->parser);
    g->parser = NULL;
    dsv4__cons_free(g->cons);
    g->cons = NULL;
    g->cons_kind = 0;
    g->started = g->ended = 0;
    g->finish = DSV4_FINISH_NONE;
    g->n_gen = g->n_reason = g->prompt_tokens = g->cached = g->prompt_ns = g->decode_ns = 0;
    g->pending = -1;
    g->draft = g->verify_d = -1;
    g->spec_fed = g->spec_batched = g->draft_sampled = 0;
    g->n_proposed = g->n_accepted = g->n_verify_batched = 0;
    g->n_forced = g->i_forced = 0;
    g->forcing_len = 0;
    g->utf8_need = 0;
    g->stopped_by_string = 0;
    g->chunk_state = 0;
    g->n_defer = g->i_defer = 0;
    g->defer_mark = SIZE_MAX;
}

void dsv4_gen_free(dsv4_gen *g)
{
    if (!g) return;
    clear_generation(g);
    dsv4__free(g->q);
    dsv4__free(g->calls);
    dsv4__free(g->tok_ids);
    dsv4__free(g->tok_lp);
    dsv4__free(g->top_ids);
    dsv4__free(g->top_lp);
    dsv4__free(g->n_top);
    dsv4__free(g->hist);
    dsv4__free(g->defer);
    dsv4__free(g->logits);
    dsv4__free(g->probs);
    dsv4__free(g->work);
    dsv4__free(g->qdist);
    dsv4__free(g->logits2);
    dsv4__free(g->allowed_cache);
    dsv4__free(g->piece_off);
    dsv4__free(g->piece_pool);
    dsv4__free(g->control);
    dsv4__free(g->schema);
    dsv4__free(g->tools);
    dsv4__free(g->forced_name);
    dsv4__free(g->model_name);
    for (int i = 0; i < g->n_stops; i++) dsv4__free(g->stops[i]);
    dsv4_sampler_free(g->sampler);
    if (g->sess) dsv4_session_free(g->sess);
    if (g->tok) dsv4__tokenizer_release(g->tok);
    dsv4__free(g);
}

const char *dsv4_gen_last_error(const dsv4_gen *g) { return g ? g->err : ""; }
dsv4_sampler *dsv4_gen_sampler(dsv4_gen *g) { return g ? g->sampler : NULL; }

dsv4_status dsv4_gen_set_i64(dsv4_gen *g, dsv4_gen_param key, int64_t v)
{
    if (!g) return DSV4_ERR_INVALID_ARGUMENT;
    g->err[0] = 0;
    switch (key) {
    case DSV4_GEN_MAX_TOKENS:
        if (v < 1) return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "max_tokens must be >= 1");
        g->max_tokens = v;
        break;
    case DSV4_GEN_REASONING_EFFORT:
        if (v < DSV4_EFFORT_DEFAULT || v > DSV4_EFFORT_MAX)
            return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "unknown reasoning effort %lld", (long long)v);
        g->effort = v;
        break;
    case DSV4_GEN_REASONING_BUDGET:
        if (v < -1) return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "reasoning budget must be >= -1");
        g->budget = v;
        break;
    case DSV4_GEN_THINKING:
        if (v < -1 || v > 1) return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "thinking must be -1, 0 or 1");
        g->thinking_opt = v;
        break;
    case DSV4_GEN_RESPONSE_FORMAT:
        if (v < DSV4_RESPONSE_TEXT || v > DSV4_RESPONSE_JSON_SCHEMA)
            return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "unknown response format %lld", (long long)v);
        if (v == DSV4_RESPONSE_JSON_SCHEMA && !g->schema)
            return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "json_schema format needs dsv4_gen_set_json_schema()");
        g->resp_fmt = v;
        break;
    case DSV4_GEN_TOOL_CHOICE:
        if (v < DSV4_TOOLS_NONE || v > DSV4_TOOLS_REQUIRED)
            return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "unknown tool choice %lld", (long long)v);
        if (v != DSV4_TOOLS_NONE && !g->tools)
            return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "tool choice needs tools (dsv4_gen_set_tools)");
        g->tool_choice = v;
        if (v != DSV4_TOOLS_REQUIRED) {
            dsv4__free(g->forced_name);
            g->forced_name = NULL;
        }
        break;
    case DSV4_GEN_LOGPROBS:
        if (v < 0 || v > 1) return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "logprobs must be 0 or 1");
        g->logprobs = v;
        break;
    case DSV4_GEN_TOP_LOGPROBS:
        if (v < 0 || v > DSV4__GEN_MAX_TOP)
            return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "top_logprobs must be in 0..20");
        g->top_logprobs = v;
        break;
    case DSV4_GEN_REUSE_PREFIX:
        if (v < 0 || v > 1) return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "reuse_prefix must be 0 or 1");
        g->reuse = v;
        break;
    case DSV4_GEN_PREFILL_CHUNK:
        if (v < 0 || v > 65536) return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "prefill_chunk must be in 0..65536");
        g->prefill_chunk = v;
        break;
    case DSV4_GEN_SPECULATIVE:
        if (v < 0 || v > 2) return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "speculative must be 0, 1 or 2");
        if (v && !dsv4__session_has_mtp(g->sess))
            return dsv4__gen_fail(g, DSV4_ERR_NOT_AVAILABLE, "speculative decoding needs the MTP block: a session "
                                  "created with DSV4_OPT_MTP on a model that has one");
        if (v && (!g->qdist || !g->logits2)) {
            if (!g->qdist) g->qdist = dsv4__malloc((size_t)g->model_vocab * sizeof(float));
            if (!g->logits2) g->logits2 = dsv4__malloc((size_t)g->model_vocab * sizeof(float));
            if (!g->qdist || !g->logits2) return DSV4_ERR_OUT_OF_MEMORY;
        }
        g->spec = v;
        if (!v) g->draft = -1;
        break;
    default:
        return dsv4__gen_fail(g, DSV4_ERR_UNKNOWN_OPTION, "unknown generator setting %d", (int)key);
    }
    return DSV4_OK;
}

dsv4_status dsv4_gen_get_i64(const dsv4_gen *g, dsv4_gen_param key, int64_t *v)
{
    if (!g || !v) return DSV4_ERR_INVALID_ARGUMENT;
    switch (key) {
    case DSV4_GEN_MAX_TOKENS: *v = g->max_tokens; break;
    case DSV4_GEN_REASONING_EFFORT: *v = g->effort; break;
    case DSV4_GEN_REASONING_BUDGET: *v = g->budget; break;
    case DSV4_GEN_THINKING: *v = g->thinking_opt; break;
    case DSV4_GEN_RESPONSE_FORMAT: *v = g->resp_fmt; break;
    case DSV4_GEN_TOOL_CHOICE: *v = g->tool_choice; break;
    case DSV4_GEN_LOGPROBS: *v = g->logprobs; break;
    case DSV4_GEN_TOP_LOGPROBS: *v = g->top_logprobs; break;
    case DSV4_GEN_REUSE_PREFIX: *v = g->reuse; break;
    case DSV4_GEN_PREFILL_CHUNK: *v = g->prefill_chunk; break;
    case DSV4_GEN_SPECULATIVE: *v = g->spec; break;
    default: return DSV4_ERR_UNKNOWN_OPTION;
    }
    return DSV4_OK;
}

dsv4_status dsv4_gen_add_stop(dsv4_gen *g, const char *stop, size_t len)
{
    if (!g) return DSV4_ERR_INVALID_ARGUMENT;
    g->err[0] = 0;
    if (!stop) {
        for (int i = 0; i < g->n_stops; i++) dsv4__free(g->stops[i]);
        g->n_stops = 0;
        return DSV4_OK;
    }
    if (len < 1 || len > DSV4__GEN_MAX_STOP_LEN)
        return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "a stop string has 1 to 256 bytes");
    if (g->n_stops == DSV4__GEN_MAX_STOPS)
        return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "at most 16 stop strings");
    char *c = dsv4__malloc(len + 1);
    if (!c) return DSV4_ERR_OUT_OF_MEMORY;
    memcpy(c, stop, len);
    c[len] = 0;
    g->stops[g->n_stops] = c;
    g->stop_len[g->n_stops++] = len;
    return DSV4_OK;
}

dsv4_status dsv4_gen_set_json_schema(dsv4_gen *g, const char *schema, size_t len)
{
    if (!g) return DSV4_ERR_INVALID_ARGUMENT;
    g->err[0] = 0;
    if (!schema) {
        dsv4__free(g->schema);
        g->schema = NULL;
        if (g->resp_fmt == DSV4_RESPONSE_JSON_SCHEMA) g->resp_fmt = DSV4_RESPONSE_TEXT;
        return DSV4_OK;
    }
    /* validate now, so the error surfaces at the call that caused it */
    dsv4__err e = { 0 };
    dsv4__cons *c = NULL;
    dsv4_status st = dsv4__cons_json(schema, len, 0, &c, &e);
    dsv4__cons_free(c);
    if (st) return dsv4__gen_fail(g, st, "json schema: %s", e.msg[0] ? e.msg : dsv4_status_string(st));
    return dsv4__gen_store_schema(g, schema, len);
}

dsv4_status dsv4__gen_store_schema(dsv4_gen *g, const char *schema, size_t len)
{
    char *copy = dsv4__malloc(len + 1);
    if (!copy) return DSV4_ERR_OUT_OF_MEMORY;
    memcpy(copy, schema, len);
    copy[len] = 0;
    dsv4__free(g->schema);
    g->schema = copy;
    g->schema_len = len;
    g->resp_fmt = DSV4_RESPONSE_JSON_SCHEMA;
    return DSV4_OK;
}

dsv4_status dsv4_gen_set_tools(dsv4_gen *g, const char *tools, size_t len, const char *forced_name)
{
    if (!g) return DSV4_ERR_INVALID_ARGUMENT;
    g->err[0] = 0;
    if (!tools) {
        dsv4__free(g->tools);
        dsv4__free(g->forced_name);
        g->tools = g->forced_name = NULL;
        g->tool_choice = DSV4_TOOLS_NONE;
        return DSV4_OK;
    }
    dsv4__err e = { 0 };
    dsv4__cons *c = NULL;
    dsv4_status st = dsv4__cons_dsml(tools, len, forced_name ? DSV4__TOOLS_REQUIRED : DSV4__TOOLS_AUTO, forced_name,
                                     &c, &e);
    dsv4__cons_free(c);
    if (st) return dsv4__gen_fail(g, st, "tools: %s", e.msg[0] ? e.msg : dsv4_status_string(st));
    return dsv4__gen_store_tools(g, tools, len, forced_name);
}

dsv4_status dsv4__gen_store_tools(dsv4_gen *g, const char *tools, size_t len, const char *forced_name)
{
    char *copy = dsv4__malloc(len + 1), *name = forced_name ? dsv4__strdup(forced_name) : NULL;
    if (!copy || (forced_name && !name)) {
        dsv4__free(copy);
        dsv4__free(name);
        return DSV4_ERR_OUT_OF_MEMORY;
    }
    memcpy(copy, tools, len);
    copy[len] = 0;
    dsv4__free(g->tools);
    dsv4__free(g->forced_name);
    g->tools = copy;
    g->tools_len = len;
    g->forced_name = name;
    g->tool_choice = forced_name ? DSV4_TOOLS_REQUIRED : DSV4_TOOLS_AUTO;
    return DSV4_OK;
}

dsv4_status dsv4_gen_set_callback(dsv4_gen *g, dsv4_gen_event_fn fn, void *user)
{
    if (!g) return DSV4_ERR_INVALID_ARGUMENT;
    g->cb = fn;
    g->cb_user = fn ? user : NULL;
    return DSV4_OK;
}

dsv4_status dsv4_gen_set_progress(dsv4_gen *g, dsv4_eval_progress_fn fn, void *user)
{
    if (!g) return DSV4_ERR_INVALID_ARGUMENT;
    g->progress = fn;
    g->progress_user = fn ? user : NULL;
    return DSV4_OK;
}

void dsv4_gen_cancel(dsv4_gen *g)
{
    if (g) atomic_store(&g->cancel, 1);
}

int32_t dsv4_gen_finish_reason(const dsv4_gen *g) { return g ? g->finish : -1; }
int64_t dsv4_gen_n_tokens(const dsv4_gen *g) { return g ? g->n_gen : -1; }

int64_t dsv4_gen_usage(const dsv4_gen *g, dsv4_usage_key key)
{
    if (!g) return -1;
    switch (key) {
    case DSV4_USAGE_PROMPT_TOKENS: return g->prompt_tokens;
    case DSV4_USAGE_CACHED_TOKENS: return g->cached;
    case DSV4_USAGE_COMPLETION_TOKENS: return g->n_gen;
    case DSV4_USAGE_REASONING_TOKENS: return g->n_reason;
    case DSV4_USAGE_PROMPT_NS: return g->prompt_ns;
    case DSV4_USAGE_DECODE_NS: return g->decode_ns;
    case DSV4_USAGE_DRAFTS_PROPOSED: return g->n_proposed;
    case DSV4_USAGE_DRAFTS_ACCEPTED: return g->n_accepted;
    case DSV4_USAGE_DRAFTS_BATCHED: return g->n_verify_batched;
    default: return -1;
    }
}

dsv4_status dsv4_gen_token(const dsv4_gen *g, int64_t i, int32_t *token, float *logprob, int32_t *top_ids,
                           float *top_logprobs, size_t cap, size_t *n_top)
{
    if (n_top) *n_top = 0;
    if (!g || i < 0 || i >= g->n_gen) return DSV4_ERR_INVALID_ARGUMENT;
    if (token) *token = g->tok_ids[i];
    if (!g->logprobs && !g->top_logprobs)
        return logprob || top_ids || top_logprobs ? DSV4_ERR_NOT_AVAILABLE : DSV4_OK;
    if (logprob) *logprob = g->tok_lp[i];
    size_t k = g->n_top[i] < cap ? g->n_top[i] : cap;
    for (size_t j = 0; j < k; j++) {
        if (top_ids) top_ids[j] = g->top_ids[(size_t)i * DSV4__GEN_MAX_TOP + j];
        if (top_logprobs) top_logprobs[j] = g->top_lp[(size_t)i * DSV4__GEN_MAX_TOP + j];
    }
    if (n_top) *n_top = k;
    return DSV4_OK;
}

/* ------------------------------------------------------------------------ */
/* events                                                                    */
/* ------------------------------------------------------------------------ */

static dsv4_status push_event(dsv4_gen *g, int32_t type, int32_t index, const char *data, size_t len)
{
    if (g->q_n == g->q_cap) {
        size_t c = g->q_cap ? 2 * g->q_cap : 16;
        dsv4__gen_event *q = dsv4__malloc(c * sizeof *q);
        if (!q) return DSV4_ERR_OUT_OF_MEMORY;
        for (size_t i = 0; i < g->q_n; i++) q[i] = g->q[(g->q_head + i) % g->q_cap];
        dsv4__free(g->q);
        g->q = q;
        g->q_cap = c;
        g->q_head = 0;
    }
    char *d = dsv4__malloc(len + 1);
    if (!d) return DSV4_ERR_OUT_OF_MEMORY;
    if (len) memcpy(d, data, len);
    d[len] = 0;
    dsv4__gen_event *e = &g->q[(g->q_head + g->q_n) % g->q_cap];
    e->type = type;
    e->index = index;
    e->data = d;
    e->len = len;
    g->q_n++;
    if (g->cb) g->cb(g->cb_user, (dsv4_gen_event_type)type, index, d, len);
    return DSV4_OK;
}

/* Content through the stop strings: emit what can no longer start a stop
 * string, hold the rest. Returns 1 when a stop string matched. */
static int content_out(dsv4_gen *g, const char *s, size_t n, int flush, dsv4_status *st)
{
    if (g->stopped_by_string) return 1;
    if (dsv4__sbuf_add(&g->hold, s, n)) { *st = DSV4_ERR_OUT_OF_MEMORY; return 0; }
    size_t hn = g->hold.n, cut = hn, emit;
    int hit = 0;
    for (int i = 0; i < g->n_stops; i++) {
        size_t L = g->stop_len[i];
        for (size_t p = 0; p + L <= hn && p < cut; p++)
            if (!memcmp(g->hold.p + p, g->stops[i], L)) { cut = p; hit = 1 + i; break; }
    }
    if (hit) {
        emit = cut;
    } else if (flush) {
        emit = hn;
    } else {
        /* keep the longest suffix that is a proper prefix of a stop string */
        size_t keep = 0;
        for (int i = 0; i < g->n_stops; i++) {
            size_t L = g->stop_len[i];
            for (size_t k = (L - 1 < hn ? L - 1 : hn); k > keep; k--)
                if (!memcmp(g->hold.p + hn - k, g->stops[i], k)) { keep = k; break; }
        }
        emit = hn - keep;
    }
    if (emit) {
        if (dsv4__sbuf_add(&g->content, g->hold.p, emit) ||
            push_event(g, DSV4_GEN_EVENT_CONTENT, -1, g->hold.p, emit)) {
            *st = DSV4_ERR_OUT_OF_MEMORY;
            return 0;
        }
        memmove(g->hold.p, g->hold.p + emit, hn - emit);
        g->hold.n = hn - emit;
        g->hold.p[g->hold.n] = 0;
    }
    if (hit) {
        g->hold.n = 0;
        g->stopped_by_string = hit;
    }
    return hit != 0;
}

/* Move the parser's events to the queue. */
static dsv4_status drain_parser(dsv4_gen *g)
{
    dsv4_status st = DSV4_OK;
    for (;;) {
        dsv4_chat_event_type t;
        int32_t idx;
        const char *d;
        size_t n;
        st = dsv4_chat_parser_next(g->parser, &t, &idx, &d, &n);
        if (st || t == DSV4_CHAT_EVENT_NONE) return st;
        if (g->stopped_by_string) continue;
        switch (t) {
        case DSV4_CHAT_EVENT_REASONING:
            if (dsv4__sbuf_add(&g->reasoning, d, n)) return DSV4_ERR_OUT_OF_MEMORY;
            st = push_event(g, DSV4_GEN_EVENT_REASONING, -1, d, n);
            break;
        case DSV4_CHAT_EVENT_CONTENT:
        case DSV4_CHAT_EVENT_ERROR: /* text that is not valid DSML stays visible as content */
            content_out(g, d, n, 0, &st);
            break;
        case DSV4_CHAT_EVENT_TOOL_CALL_START: {
            content_out(g, "", 0, 1, &st);
            if (st) return st;
            if (g->n_calls == g->cap_calls) {
                size_t c = g->cap_calls ? 2 * g->cap_calls : 4;
                dsv4__gen_call *p = dsv4__realloc(g->calls, c * sizeof *p);
                if (!p) return DSV4_ERR_OUT_OF_MEMORY;
                g->calls = p;
                g->cap_calls = c;
            }
            dsv4__gen_call *c = &g->calls[g->n_calls];
            memset(c, 0, sizeof *c);
            c->name = dsv4__malloc(n + 1);
            if (!c->name) return DSV4_ERR_OUT_OF_MEMORY;
            memcpy(c->name, d, n);
            c->name[n] = 0;
            g->n_calls++;
            st = push_event(g, DSV4_GEN_EVENT_TOOL_CALL_START, (int32_t)g->n_calls - 1, d, n);
            break;
        }
        case DSV4_CHAT_EVENT_TOOL_CALL_ARGS:
            if (g->n_calls && dsv4__sbuf_add(&g->calls[g->n_calls - 1].args, d, n)) return DSV4_ERR_OUT_OF_MEMORY;
            st = push_event(g, DSV4_GEN_EVENT_TOOL_CALL_ARGS, (int32_t)g->n_calls - 1, d, n);
            break;
        case DSV4_CHAT_EVENT_TOOL_CALL_END:
            if (g->n_calls) g->calls[g->n_calls - 1].done = 1;
            st = push_event(g, DSV4_GEN_EVENT_TOOL_CALL_END, (int32_t)g->n_calls - 1, "", 0);
            break;
        default:
            break;
        }
        if (st) return st;
    }
}

/* End the generation: flush the text layers and queue STOP. */
static void spec_unfeed(dsv4_gen *g);

static void finish(dsv4_gen *g, int reason)
{
    if (g->ended) return;
    g->ended = 1;
    /* a draft fed ahead of its turn: the session ends where it would have */
    if (g->spec_fed) spec_unfeed(g);
    g->draft = -1;
    dsv4_status st = DSV4_OK;
    if (g->detok && g->parser && !g->stopped_by_string) {
        char buf[64];
        size_t n = 0;
        if (dsv4_detok_flush(g->detok, buf, sizeof buf, &n) == DSV4_OK && n)
            st = dsv4_chat_parser_feed(g->parser, buf, n);
        if (!st) st = dsv4_chat_parser_finish(g->parser);
        if (!st) st = drain_parser(g);
    }
    if (!st) content_out(g, "", 0, 1, &st);
    if (g->stopped_by_string && reason != DSV4_FINISH_ERROR && reason != DSV4_FINISH_CANCELLED)
        reason = DSV4_FINISH_STOP;
    if (reason == DSV4_FINISH_STOP && g->n_calls > 0 && g->calls[g->n_calls - 1].done) reason = DSV4_FINISH_TOOL_CALLS;
    if (st) {
        reason = DSV4_FINISH_ERROR;
        if (!g->err[0]) dsv4__gen_fail(g, st, "generation: %s", dsv4_status_string(st));
    }
    g->finish = reason;
    if (push_event(g, DSV4_GEN_EVENT_STOP, reason, "", 0)) {
        /* no memory even for the STOP event: next() reports it from g->finish */
    }
}

/* ------------------------------------------------------------------------ */
/* starting                                                                  */
/* ------------------------------------------------------------------------ */

static int64_t effective_budget(const dsv4_gen *g)
{
    if (g->budget >= 0) return g->budget;
    switch (g->effort) {
    case DSV4_EFFORT_NONE: return 0;
    case DSV4_EFFORT_LOW: return 1024;
    case DSV4_EFFORT_MEDIUM: return 8192;
    default: return -1;
    }
}

static dsv4_status start(dsv4_gen *g, const int32_t *prompt, size_t n, dsv4__cons **ready);

/* the session's latest checkpoint at or before `limit` (a prefix of the
 * new prompt), 0 when none */
static size_t best_checkpoint(dsv4_gen *g, size_t limit)
{
    int64_t at[64];
    size_t nc = 0;
    if (dsv4_session_checkpoints(g->sess, at, 64, &nc) != DSV4_OK) return 0;
    int64_t best = 0;
    for (size_t i = 0; i < nc; i++)
        if (at[i] <= (int64_t)limit && at[i] > best) best = at[i];
    return (size_t)best;
}

static dsv4_status hist_reserve(dsv4_gen *g, size_t n)
{
    if (n <= g->cap_hist) return DSV4_OK;
    size_t c = g->cap_hist ? g->cap_hist : 256;
    while (c < n) c *= 2;
    int32_t *h = dsv4__realloc(g->hist, c * sizeof *h);
    if (!h) return dsv4__gen_fail(g, DSV4_ERR_OUT_OF_MEMORY, "out of memory for a history of %zu tokens", n);
    g->hist = h;
    g->cap_hist = c;
    return DSV4_OK;
}

/* feed tokens to the session, tracking them in hist */
static dsv4_status feed_flags(dsv4_gen *g, const int32_t *t, size_t n, uint32_t flags)
{
    dsv4_status st = hist_reserve(g, g->n_hist + n);
    if (st) return st;
    /* with speculation the MTP head drafts on demand (propose): no MTP
     * logits rows for the tokens fed */
    if (g->spec) dsv4__session_mtp_rows(g->sess, 0);
    st = dsv4_session_eval(g->sess, t, n, flags);
    if (g->spec) dsv4__session_mtp_rows(g->sess, 1);
    if (st) {
        dsv4__gen_fail(g, st, "eval: %s", dsv4_session_last_error(g->sess));
        /* a failed eval leaves the session as it was, except INTERNAL */
        if (st == DSV4_ERR_INTERNAL) g->n_hist = (size_t)-1;
        return st;
    }
    memcpy(g->hist + g->n_hist, t, n * sizeof *t);
    g->n_hist += n;
    g->sess_edits = dsv4__session_edits(g->sess);
    return DSV4_OK;
}

static dsv4_status feed(dsv4_gen *g, const int32_t *t, size_t n) { return feed_flags(g, t, n, 0); }

dsv4_status dsv4_gen_start(dsv4_gen *g, const int32_t *prompt, size_t n)
{
    if (!g) return DSV4_ERR_INVALID_ARGUMENT;
    g->err[0] = 0;
    return dsv4__gen_start(g, prompt, n, NULL);
}

dsv4_status dsv4__gen_start(dsv4_gen *g, const int32_t *prompt, size_t n, dsv4__cons *ready)
{
    dsv4_status st = start(g, prompt, n, &ready);
    dsv4__cons_free(ready); /* not taken: the start failed before using it */
    /* every failed start says why (dsv4_gen_last_error) */
    if (st && !g->err[0]) dsv4__gen_fail(g, st, "start: %s", dsv4_status_string(st));
    return st;
}

static dsv4_status start(dsv4_gen *g, const int32_t *prompt, size_t n, dsv4__cons **ready)
{
    if (!prompt || n == 0) return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "empty prompt");
    for (size_t i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= g->model_vocab)
            return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "prompt token %d at %zu is outside the vocabulary",
                                  prompt[i], i);
    if (g->resp_fmt != DSV4_RESPONSE_TEXT && g->tool_choice == DSV4_TOOLS_REQUIRED)
        return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "a JSON response format and required tool calls exclude each other");
    int64_t cap = dsv4__session_capacity(g->sess);
    if ((int64_t)n > cap)
        return dsv4__gen_fail(g, DSV4_ERR_CONTEXT_FULL, "prompt of %zu tokens exceeds the context of %lld", n,
                              (long long)cap);
    clear_generation(g);
    atomic_store(&g->cancel, 0);
    dsv4_status st = dsv4_sampler_reset(g->sampler);
    if (st) return st;

    /* constraint of the content (compiled by the caller when `ready`: the
     * one these settings give, see dsv4__gen_start) */
    dsv4__err e = { 0 };
    if (g->resp_fmt == DSV4_RESPONSE_JSON_OBJECT) {
        st = dsv4__cons_json(NULL, 0, 1, &g->cons, &e);
        g->cons_kind = 1;
    } else if (g->resp_fmt == DSV4_RESPONSE_JSON_SCHEMA) {
        if (*ready) { g->cons = *ready; *ready = NULL; }
        else st = dsv4__cons_json(g->schema, g->schema_len, 0, &g->cons, &e);
        g->cons_kind = 1;
    } else if (g->tools && g->tool_choice != DSV4_TOOLS_NONE) {
        if (*ready) { g->cons = *ready; *ready = NULL; }
        else st = dsv4__cons_dsml(g->tools, g->tools_len,
                                  g->tool_choice == DSV4_TOOLS_REQUIRED ? DSV4__TOOLS_REQUIRED : DSV4__TOOLS_AUTO,
                                  g->forced_name, &g->cons, &e);
        g->cons_kind = 2;
    }
    if (st) return dsv4__gen_fail(g, st, "constraint: %s", e.msg);

    /* thinking: explicit, or the prompt ends with <think> */
    g->thinking = g->thinking_opt == 1 || (g->thinking_opt == -1 && g->think_open >= 0 && prompt[n - 1] == g->think_open);
    if (g->thinking && g->think_close < 0)
        return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "thinking needs a </think> token in the vocabulary");
    g->in_reasoning = g->thinking;
    st = dsv4_detok_create(g->tok, &g->detok);
    if (!st) st = dsv4_chat_parser_create(g->thinking, &g->parser);
    if (st) return dsv4__gen_fail(g, st, "start: the detokenizer or the output parser: %s", dsv4_status_string(st));

    /* prompt: keep what the session already holds, or go back to its
     * latest checkpoint within the common prefix (docs/sessions.md) */
    int64_t pos = dsv4_session_position(g->sess);
    size_t keep = 0, lcp = 0, own = 0;
    /* a session moved by others (restored, rewound, fed directly): its own history */
    /* (its edit count tells: the caller's eval or reset between two
     * generations may leave as many tokens as before, but others) */
    int fresh = (size_t)pos == g->n_hist && dsv4__session_edits(g->sess) == g->sess_edits;
    if (g->reuse && pos > 0 && !fresh && hist_reserve(g, (size_t)pos) == DSV4_OK) {
        size_t nh = 0;
        if (dsv4_session_tokens(g->sess, g->hist, g->cap_hist, &nh) == DSV4_OK) {
            g->n_hist = nh;
            fresh = 1;
        }
    }
    if (g->reuse && pos > 0 && fresh && (size_t)pos == g->n_hist) {
        while (lcp < n && lcp < g->n_hist && g->hist[lcp] == prompt[lcp]) lcp++;
        own = lcp == g->n_hist ? lcp : best_checkpoint(g, lcp < n ? lcp : n - 1);
    }
    /* the prefix cache, when it holds more of the prompt */
    size_t got = 0;
    dsv4_prefix_cache *pc = dsv4_session_prefix_cache(g->sess);
    if (pc && own < n && hist_reserve(g, n) == DSV4_OK &&
        dsv4_prefix_cache_restore(pc, g->sess, prompt, n, own, &got) == DSV4_OK && got > own) {
        memcpy(g->hist, prompt, got * sizeof *prompt);
        g->n_hist = got;
        keep = got;
    } else if (own > 0 && own == lcp && lcp == g->n_hist) {
        keep = own;
    } else if (own > 0 && dsv4_session_rewind(g->sess, (int64_t)own, 0) == DSV4_OK) {
        g->n_hist = own;
        keep = own;
    }
    if (keep > 0) g->sess_edits = dsv4__session_edits(g->sess); /* hist is the session's */
    if (keep == 0 && pos != 0) {
        st = dsv4_session_reset(g->sess);
        if (st) return st;
        g->n_hist = 0;
        g->sess_edits = dsv4__session_edits(g->sess);
    } else if (keep == 0) {
        g->n_hist = 0;
    }
    g->prompt_tokens = (int64_t)n;
    g->cached = (int64_t)keep;
    /* a checkpoint at the end of the prompt — before its last token when
     * that opens thinking: the next turn's prompt drops this turn's
     * reasoning and closes the tag there instead */
    size_t mark = g->think_open >= 0 && prompt[n - 1] == g->think_open ? n - 1 : n;
    if (g->prefill_chunk > 0 && n - keep > 1) {
        /* deferred: the steps feed the rest (dsv4_gen_step_batch a chunk at
         * a time beside the other generators' tokens) */
        if (n - keep > g->cap_defer) {
            int32_t *d = dsv4__realloc(g->defer, (n - keep) * sizeof *d);
            if (!d) return DSV4_ERR_OUT_OF_MEMORY;
            g->defer = d;
            g->cap_defer = n - keep;
        }
        memcpy(g->defer, prompt + keep, (n - keep) * sizeof *prompt);
        g->n_defer = n - keep;
        g->i_defer = 0;
        g->defer_mark = mark > keep ? mark - keep : SIZE_MAX;
        g->started = 1;
        return DSV4_OK;
    }
    int64_t t0 = now_ns();
    size_t chunk = prompt_chunk(g);
    for (size_t i = keep;;) {
        /* progress before each chunk and after the last (done = total) */
        if (g->progress && g->progress(g->progress_user, (int64_t)(i - keep), (int64_t)(n - keep)) != 0)
            atomic_store(&g->cancel, 1);
        if (atomic_load(&g->cancel)) return dsv4__gen_fail(g, DSV4_ERR_ABORTED, "cancelled while feeding the prompt");
        if (i >= n) break;
        size_t m = n - i < chunk ? n - i : chunk;
        if (i < mark && i + m > mark) m = mark - i;
        st = feed(g, prompt + i, m);
        if (st) return st;
        i += m;
        if (i == mark && mark > keep) { /* best effort */
            dsv4_session_checkpoint(g->sess);
            if (pc) dsv4_prefix_cache_store(pc, g->sess);
        }
    }
    g->prompt_ns = now_ns() - t0;
    st = dsv4_session_logits(g->sess, -1, g->logits, (size_t)g->model_vocab);
    if (st) return dsv4__gen_fail(g, st, "no logits after the prompt");
    g->started = 1;
    return DSV4_OK;
}

/* ------------------------------------------------------------------------ */
/* choosing a token                                                          */
/* ------------------------------------------------------------------------ */


/* Tokens needed to write the constraint's shortest completion, as the
 * forced path writes it (longest vocabulary token first), plus nothing for
 * the end-of-sentence. Bytes are an upper bound; this is the exact count. */
static int64_t completion_tokens(const dsv4_gen *g, const dsv4__cons *c)
{
    char local[512], *buf = local;
    size_t n = dsv4__cons_completion(c, local, sizeof local);
    if (n >= sizeof local) {
        buf = dsv4__malloc(n + 1);
        if (!buf) return (int64_t)n;
        dsv4__cons_completion(c, buf, n + 1);
    }
    int64_t count = 0;
    for (size_t pos = 0; pos < n; count++) {
        size_t step = 1;
        for (size_t L = n - pos < 32 ? n - pos : 32; L > 1; L--) {
            int32_t id = -1;
            if (dsv4_tokenizer_piece_to_token(g->tok, buf + pos, L, &id) == DSV4_OK && id >= 0 && id < g->n_vocab &&
                (!g->control[id] || id == g->dsml)) {
                step = L;
                break;
            }
        }
        pos += step;
    }
    if (buf != local) dsv4__free(buf);
    return count;
}

/* May token t come next? */
static int allowed(dsv4_gen *g, int32_t t)
{
    if (t < 0 || t >= g->n_vocab || g->control[t] == 2) return 0;
    if (t == g->think_open) return 0;
    if (t == g->think_close) return g->in_reasoning;
    if (t == g->eos) {
        if (g->in_reasoning) return 1; /* with a constraint: closes the reasoning (next_token) */
        return !g->cons || dsv4__cons_complete(g->cons);
    }
    if (g->in_reasoning) {
        if (!g->utf8_strict) return 1;
        size_t len;
        const char *p = dsv4__gen_piece(g, t, &len);
        return dsv4__utf8_owed(g->utf8_need, p, len) == 0;
    }
    if (t == g->dsml && g->cons_kind != 2) return 0; /* no tool calls without tools */
    if (!g->cons) return 1;
    if (g->control[t] && t != g->dsml) return 0;
    size_t len;
    const char *p = dsv4__gen_piece(g, t, &len);
    if (len == 0 || !dsv4__cons_allows(g->cons, p, len)) return 0;
    if (g->tight) {
        /* few tokens left: the token must leave room to complete the output
         * (its completion, at most one token per byte, then end-of-sentence) */
        dsv4__cons *c = dsv4__cons_clone(g->cons);
        if (!c) return 0;
        int ok = dsv4__cons_feed(c, p, len) && ((int64_t)dsv4__cons_completion(c, NULL, 0) + 1 <= g->rem_after ||
                                                completion_tokens(g, c) + 1 <= g->rem_after);
        dsv4__cons_free(c);
        return ok;
    }
    return 1;
}

/* The log-softmax of the logits for the chosen token and its top rivals. */
static dsv4_status record(dsv4_gen *g, int32_t t)
{
    size_t i = (size_t)g->n_gen;
    if (i >= g->cap_toks) {
        size_t c = g->cap_toks ? 2 * g->cap_toks : 256;
        int32_t *ids = dsv4__realloc(g->tok_ids, c * sizeof *ids);
        if (!ids) return DSV4_ERR_OUT_OF_MEMORY;
        g->tok_ids = ids;
        float *lp = dsv4__realloc(g->tok_lp, c * sizeof *lp);
        if (!lp) return DSV4_ERR_OUT_OF_MEMORY;
        g->tok_lp = lp;
        uint8_t *nt = dsv4__realloc(g->n_top, c);
        if (!nt) return DSV4_ERR_OUT_OF_MEMORY;
        g->n_top = nt;
        g->cap_toks = c;
    }
    g->tok_ids[i] = t;
    g->n_top[i] = 0;
    g->tok_lp[i] = 0;
    if (!(g->logprobs || g->top_logprobs)) return DSV4_OK;
    if (g->cap_top < g->cap_toks) {
        /* alternatives only for generations that ask for them */
        int32_t *ti = dsv4__realloc(g->top_ids, g->cap_toks * DSV4__GEN_MAX_TOP * sizeof *ti);
        if (!ti) return DSV4_ERR_OUT_OF_MEMORY;
        g->top_ids = ti;
        float *tl = dsv4__realloc(g->top_lp, g->cap_toks * DSV4__GEN_MAX_TOP * sizeof *tl);
        if (!tl) return DSV4_ERR_OUT_OF_MEMORY;
        g->top_lp = tl;
        g->cap_top = g->cap_toks;
    }
    /* the model's own distribution: log-softmax of the raw logits */
    const float *x = g->logits;
    size_t n = (size_t)g->n_vocab;
    float mx = -INFINITY;
    for (size_t k = 0; k < n; k++) if (x[k] > mx) mx = x[k];
    double s = 0;
    for (size_t k = 0; k < n; k++) s += exp((double)x[k] - mx);
    double lse = mx + log(s);
    g->tok_lp[i] = (float)(x[t] - lse);
    int K = (int)g->top_logprobs;
    int32_t *ti = g->top_ids + i * DSV4__GEN_MAX_TOP;
    float *tl = g->top_lp + i * DSV4__GEN_MAX_TOP;
    int m = 0;
    for (size_t k = 0; k < n && K > 0; k++) {
        float v = x[k];
        if (m == K && v <= (float)(tl[m - 1] + lse)) continue;
        int j = m < K ? m++ : K - 1;
        while (j > 0 && (double)v > tl[j - 1] + lse) { ti[j] = ti[j - 1]; tl[j] = tl[j - 1]; j--; }
        ti[j] = (int32_t)k;
        tl[j] = (float)(v - lse);
    }
    g->n_top[i] = (uint8_t)m;
    return DSV4_OK;
}

/* Longest token whose bytes start `s` (forced output). */
static int32_t longest_token(dsv4_gen *g, const char *s, size_t n)
{
    for (size_t L = n < 48 ? n : 48; L > 0; L--) {
        int32_t id = -1;
        if (dsv4_tokenizer_piece_to_token(g->tok, s, L, &id) == DSV4_OK && id >= 0 && id < g->n_vocab &&
            id != g->think_open && id != g->think_close && id != g->eos && allowed(g, id))
            return id;
    }
    return -1;
}

/* A failure of the sampler itself (not "nothing to choose"): a NaN logit,
 * a failing or misbehaving user stage. Named here, as the generation ends
 * with it. */
static dsv4_status sampling_failed(dsv4_gen *g, dsv4_status st)
{
    if (st == DSV4_ERR_INVALID_ARGUMENT)
        return dsv4__gen_fail(g, DSV4_ERR_INTERNAL, "sampling: a NaN logit, or the user stage chose a removed token");
    if (st == DSV4_ERR_ABORTED) return dsv4__gen_fail(g, st, "sampling: a user sampler callback failed");
    return st;
}

/* Speculative sampling (see gen_int.h): accept d with probability
 * min(1, p(d)/q(d)) (p = pw / z), else draw from norm(max(0, p - q)). */
dsv4_status dsv4__gen_spec_choose(dsv4_sampler *s, const float *pw, double z, const float *q, int32_t d, float *work,
                                  size_t n, int32_t *out)
{
    double pd = d >= 0 && (size_t)d < n ? pw[d] / z : 0, qd = d >= 0 && (size_t)d < n ? q[d] : 0;
    if (qd > 0 && dsv4__sampler_uniform(s) * qd < pd) {
        *out = d;
        return DSV4_OK;
    }
    double mass = 0;
    for (size_t i = 0; i < n; i++) {
        double v = pw[i] / z - q[i];
        work[i] = v > 0 ? (float)v : 0;
        mass += work[i];
    }
    /* no residual mass only when p equals q up to rounding: then p itself */
    return dsv4__sampler_pick(s, mass > 0 ? work : pw, n, out);
}

/* The draft d of g->verify_d was drawn from q (g->qdist); p' is the
 * sampler's distribution p restricted to the allowed tokens, which is what
 * choose() samples from: the speculative choice among them, distributed as
 * p'. DSV4_ERR_NOT_AVAILABLE: p' has no mass (p is then zero where not
 * allowed; the usual path goes on from there). */
static dsv4_status spec_pick(dsv4_gen *g, float *p, size_t n, int32_t *out)
{
    double z = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] > 0 && !allowed(g, (int32_t)i)) p[i] = 0;
        z += p[i];
    }
    if (!(z > 0)) return DSV4_ERR_NOT_AVAILABLE;
    return dsv4__gen_spec_choose(g->sampler, p, z, g->qdist, g->verify_d, g->work, n, out);
}

/* Sample with the sampler and the constraint: rejection first (cheap when
 * the model mostly agrees with the constraint), then the allowed part of
 * the sampler's distribution, then the constraint applied to the logits
 * before the sampler's truncation. */
static dsv4_status choose(dsv4_gen *g, int32_t *out)
{
    size_t n = (size_t)g->n_vocab;
    float *p = g->probs;
    int32_t greedy = -1, t = -1;
    g->sampler_empty = 0;
    /* DSV4_ERR_NOT_AVAILABLE: the sampler's stages removed every token */
    dsv4_status st = dsv4__sampler_dist(g->sampler, g->logits, n, p, &greedy);
    if (st && st != DSV4_ERR_NOT_AVAILABLE) return sampling_failed(g, st);
    if (!st) {
        int is_greedy = dsv4__sampler_is_greedy(g->sampler);
        if (is_greedy) {
            if (allowed(g, greedy)) { *out = greedy; return DSV4_OK; }
        } else {
            if (g->verify_d >= 0 && g->draft_sampled && !g->cons) {
                st = spec_pick(g, p, n, &t);
                if (!st) { *out = t; return DSV4_OK; }
                if (st != DSV4_ERR_NOT_AVAILABLE) return sampling_failed(g, st);
            }
            for (int k = 0; k < REJECT_TRIES; k++) {
                st = dsv4__sampler_pick(g->sampler, p, n, &t);
                if (st == DSV4_ERR_NOT_AVAILABLE) break; /* no mass left */
                if (st) return sampling_failed(g, st);
                if (allowed(g, t)) { *out = t; return DSV4_OK; }
                p[t] = 0;
            }
            int any = 0;
            for (size_t i = 0; i < n; i++) {
                if (p[i] > 0 && !allowed(g, (int32_t)i)) p[i] = 0;
                any |= p[i] > 0;
            }
            if (any) {
                st = dsv4__sampler_pick(g->sampler, p, n, out);
                return st && st != DSV4_ERR_NOT_AVAILABLE ? sampling_failed(g, st) : st;
            }
        }
    }
    /* nothing allowed survived the truncation: constrain the logits first */
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        int ok = allowed(g, (int32_t)i);
        g->work[i] = ok ? g->logits[i] : -INFINITY;
        any |= ok && g->logits[i] > -INFINITY;
    }
    if (!any) return DSV4_ERR_NOT_AVAILABLE;
    st = dsv4__sampler_dist(g->sampler, g->work, n, p, &greedy);
    if (st == DSV4_ERR_NOT_AVAILABLE) {
        g->sampler_empty = 1; /* the constraint allows tokens, the sampler none of them */
        return st;
    }
    if (st) return sampling_failed(g, st);
    if (dsv4__sampler_is_greedy(g->sampler)) { *out = greedy; return DSV4_OK; }
    st = dsv4__sampler_pick(g->sampler, p, n, out);
    return st && st != DSV4_ERR_NOT_AVAILABLE ? sampling_failed(g, st) : st;
}

/* Tokens still allowed: by max_tokens and by the context. */
static int64_t remaining(const dsv4_gen *g)
{
    int64_t r = g->max_tokens - g->n_gen;
    /* every chosen token but the last is fed: a pending token needs a slot */
    int64_t ctx = dsv4__session_capacity(g->sess) - (int64_t)g->n_hist + (g->pending >= 0 ? 0 : 1);
    return r < ctx ? r : ctx;
}

static dsv4_status force_think_end(dsv4_gen *g, int with_newlines)
{
    g->n_forced = g->i_forced = 0;
    if (with_newlines) {
        int32_t nl = -1;
        if (dsv4_tokenizer_piece_to_token(g->tok, "\n\n", 2, &nl) == DSV4_OK && nl >= 0 && nl < g->n_vocab)
            g->forced[g->n_forced++] = nl;
    }
    g->forced[g->n_forced++] = g->think_close;
    return DSV4_OK;
}

/* Decide the next token. */
static dsv4_status next_token(dsv4_gen *g, int32_t *t)
{
    if (g->i_forced < g->n_forced) {
        *t = g->forced[g->i_forced++];
        return DSV4_OK;
    }
    int64_t rem = remaining(g);
    if (g->in_reasoning) {
        int64_t budget = effective_budget(g);
        int64_t nl = 1; /* the "\n\n" token before </think> */
        int close = 0, newlines = 1;
        if (budget >= 0) {
            if (budget <= nl) { close = g->n_reason >= budget; newlines = 0; }
            else if (g->n_reason >= budget - nl) close = 1;
            /* the last free token must end on a whole UTF-8 character */
            else if (g->n_reason == budget - nl - 1) g->utf8_strict = 1;
        }
        /* constrained content must still fit: </think>, the shortest
         * completion (at most one token per byte) and EOS */
        if (g->cons) {
            int64_t need = 1 + completion_tokens(g, g->cons) + 1; /* the constraint is still unfed */
            if (rem <= need + 1 + nl) {
                close = 1;
                newlines = rem > need + nl;
            }
        }
        if (close) {
            force_think_end(g, newlines);
            *t = g->forced[g->i_forced++];
            return DSV4_OK;
        }
    } else if (g->cons) {
        size_t need = dsv4__cons_completion(g->cons, NULL, 0);
        if (g->forcing_len || (rem <= (int64_t)need + 1 && rem <= completion_tokens(g, g->cons) + 1)) {
            if (!g->forcing_len) g->forcing_len = 1;
            if (need == 0) {
                if (g->eos < 0) return DSV4_ERR_NOT_AVAILABLE;
                *t = g->eos;
                return DSV4_OK;
            }
            char *buf = dsv4__malloc(need + 1);
            if (!buf) return DSV4_ERR_OUT_OF_MEMORY;
            dsv4__cons_completion(g->cons, buf, need + 1);
            *t = longest_token(g, buf, need);
            dsv4__free(buf);
            return *t >= 0 ? DSV4_OK : DSV4_ERR_NOT_AVAILABLE;
        }
    }
    g->tight = 0;
    if (g->cons && !g->in_reasoning) {
        size_t need = dsv4__cons_completion(g->cons, NULL, 0);
        g->rem_after = rem - 1;
        g->tight = rem < (int64_t)need + 512;
    }
    dsv4_status st = choose(g, t);
    g->tight = 0;
    int strict = g->utf8_strict;
    g->utf8_strict = 0;
    if (st == DSV4_ERR_NOT_AVAILABLE && strict) {
        /* no token ends the character: close the reasoning now */
        force_think_end(g, 1);
        *t = g->forced[g->i_forced++];
        return DSV4_OK;
    }
    if (st == DSV4_ERR_NOT_AVAILABLE && g->cons && !g->in_reasoning) {
        /* the model's distribution has no allowed token at all (e.g. a tiny
         * vocabulary): close the output (not a length stop) */
        g->forcing_len = 2;
        return next_token(g, t);
    }
    if (!st && g->in_reasoning && g->cons && (*t == g->eos || (*t == g->dsml && g->cons_kind == 2))) {
        /* the model ends its reasoning without </think> while constrained
         * content must still come: it wants to stop, or opens a tool-call
         * block (the DSML marker) inside the reasoning. Left there, the block
         * would be reasoning text and the stop refused, on to max_tokens;
         * instead the reasoning closes here and the content (the tool call)
         * follows under the constraint */
        force_think_end(g, 1);
        *t = g->forced[g->i_forced++];
    }
    return st;
}

/* a deferred prompt's chunk of m tokens cut at its checkpoint mark */
static size_t defer_cut(const dsv4_gen *g, size_t m)
{
    size_t mk = g->defer_mark;
    return mk != SIZE_MAX && g->i_defer < mk && g->i_defer + m > mk ? mk - g->i_defer : m;
}

/* the deferred prompt reached its mark: the end-of-prompt checkpoint (best effort) */
static void defer_checkpoint(dsv4_gen *g)
{
    if (g->defer_mark == SIZE_MAX || g->i_defer != g->defer_mark) return;
    dsv4_session_checkpoint(g->sess);
    dsv4_prefix_cache *pc = dsv4_session_prefix_cache(g->sess);
    if (pc) dsv4_prefix_cache_store(pc, g->sess);
}

/* The deferred prompt fed (one chunk of `max` tokens at most, or all of
 * it for max 0), its logits read when it is complete. */
static dsv4_status feed_deferred(dsv4_gen *g, size_t max)
{
    int64_t t0 = now_ns();
    size_t end = max ? (g->n_defer - g->i_defer < max ? g->n_defer : g->i_defer + max) : g->n_defer;
    size_t chunk = prompt_chunk(g);
    while (g->i_defer < end) {
        if (atomic_load(&g->cancel)) return DSV4_OK;
        size_t m = defer_cut(g, end - g->i_defer < chunk ? end - g->i_defer : chunk);
        dsv4_status st = feed(g, g->defer + g->i_defer, m);
        if (st) return st;
        g->i_defer += m;
        defer_checkpoint(g);
    }
    g->prompt_ns += now_ns() - t0;
    if (g->i_defer == g->n_defer) {
        g->n_defer = g->i_defer = 0;
        dsv4_status st = dsv4_session_logits(g->sess, -1, g->logits, (size_t)g->model_vocab);
        if (st) return dsv4__gen_fail(g, st, "no logits after the prompt");
    }
    return DSV4_OK;
}

static dsv4_status step_choose(dsv4_gen *g, int64_t t0);
static dsv4_status verify(dsv4_gen *g, int64_t t0);

static dsv4_status step_one(dsv4_gen *g)
{
    int64_t t0 = now_ns();
    dsv4_status st;
    if (g->n_defer) {
        st = feed_deferred(g, 0);
        if (st) return st;
        if (g->n_defer) { finish(g, DSV4_FINISH_CANCELLED); return DSV4_OK; }
        t0 = now_ns();
    }
    if (g->pending >= 0) {
        int32_t t = g->pending;
        if (remaining(g) <= 0 && g->max_tokens - g->n_gen > 0) {
            /* the context is full */
            g->pending = -1;
            finish(g, DSV4_FINISH_LENGTH);
            return DSV4_OK;
        }
        if (g->draft >= 0 && dsv4__session_capacity(g->sess) - (int64_t)g->n_hist >= 2) return verify(g, t0);
        g->draft = -1;
        st = feed(g, &t, 1);
        if (st == DSV4_ERR_CONTEXT_FULL) { g->pending = -1; finish(g, DSV4_FINISH_LENGTH); return DSV4_OK; }
        if (st) return st;
        g->pending = -1;
        st = dsv4_session_logits(g->sess, -1, g->logits, (size_t)g->model_vocab);
        if (st) return dsv4__gen_fail(g, st, "no logits");
    }
    return step_choose(g, t0);
}

/* ------------------------------------------------------------------------ */
/* speculative decoding (DSV4_GEN_SPECULATIVE)                               */
/* ------------------------------------------------------------------------ */

/* take back the draft fed ahead of its turn (exact: lib/graph/kv.c) */
static void spec_unfeed(dsv4_gen *g)
{
    g->spec_fed = 0;
    if (dsv4__session_undo(g->sess) == DSV4_OK) {
        g->n_hist--;
        g->sess_edits = dsv4__session_edits(g->sess);
    }
}

/* After choosing `pending`: the MTP head drafts the token after it, from
 * the trunk state of the last token fed and `pending` (the state does not
 * move). Greedy: the argmax of the sampler's distribution over the draft
 * logits; sampled: a draw from it (kept in qdist for the acceptance). */
static void propose(dsv4_gen *g)
{
    g->draft = -1;
    if (!g->spec || g->no_draft || g->ended || g->pending < 0) return;
    if (dsv4__sampler_has_user(g->sampler)) return;    /* the user stage would see the draft's logits */
    int greedy = dsv4__sampler_is_greedy(g->sampler);
    if (!greedy && g->cons) return;                     /* p' is not explicit under a constraint */
    if (g->i_forced < g->n_forced) return;              /* a forced token comes next anyway */
    if (g->n_gen >= g->max_tokens || dsv4__session_capacity(g->sess) - (int64_t)g->n_hist < 2) return;
    size_t n = (size_t)g->n_vocab;
    if (dsv4_session_mtp_draft(g->sess, g->pending, g->work, (size_t)g->model_vocab) != DSV4_OK) return;
    int32_t d = -1;
    dsv4_status st = dsv4__sampler_dist(g->sampler, g->work, n, g->qdist, &d);
    if (st) return;
    if (!greedy && dsv4__sampler_pick(g->sampler, g->qdist, n, &d) != DSV4_OK) return;
    if (d < 0 || (size_t)d >= n) return;
    g->draft = d;
    g->draft_sampled = !greedy;
    g->n_proposed++;
}

/* The step of a drafted token: feed `pending` and its draft, as one
 * two-row pass when that computes what one-row passes compute (or
 * DSV4_GEN_SPECULATIVE 2), else `pending` alone; then choose the token after
 * `pending` as ever (the sampling acceptance in choose()). The draft is
 * accepted when that token is the draft: after a two-row pass its logits
 * are ready and the next step chooses at once. A rejected draft fed is
 * taken back. */
static dsv4_status verify(dsv4_gen *g, int64_t t0)
{
    int32_t tk[2] = { g->pending, g->draft };
    int batched = g->spec == 2 || dsv4__session_rows_identical(g->sess) >= 2;
    if (batched && dsv4__session_undo_mark(g->sess) != DSV4_OK) batched = 0;
    dsv4_status st = feed_flags(g, tk, batched ? 2 : 1, batched ? DSV4_EVAL_ALL_LOGITS : 0);
    if (st == DSV4_ERR_CONTEXT_FULL) { g->pending = g->draft = -1; finish(g, DSV4_FINISH_LENGTH); return DSV4_OK; }
    if (st) return st;
    g->pending = -1;
    g->verify_d = g->draft;
    g->draft = -1;
    g->spec_batched = batched;
    int64_t at = (int64_t)g->n_hist - (batched ? 2 : 1);
    st = dsv4_session_logits(g->sess, at, g->logits, (size_t)g->model_vocab);
    if (!st && batched) st = dsv4_session_logits(g->sess, at + 1, g->logits2, (size_t)g->model_vocab);
    if (st) return dsv4__gen_fail(g, st, "no logits");
    if (batched) {
        g->spec_fed = 1;
        g->n_verify_batched++;
    }
    return step_choose(g, t0);
}

/* The second half of a step: the logits of the last token fed are in
 * g->logits; choose the next token and turn it into events. */
static dsv4_status step_choose(dsv4_gen *g, int64_t t0)
{
    dsv4_status st;
    if (atomic_load(&g->cancel)) { finish(g, DSV4_FINISH_CANCELLED); return DSV4_OK; }
    if (remaining(g) <= 0) { finish(g, DSV4_FINISH_LENGTH); return DSV4_OK; }

    int32_t t = -1;
    int32_t d = g->verify_d;
    st = next_token(g, &t);
    g->verify_d = -1;
    if (st == DSV4_ERR_NOT_AVAILABLE && g->sampler_empty)
        return dsv4__gen_fail(g, DSV4_ERR_NOT_AVAILABLE,
                              "sampling: the sampler removed every token (logit bias, penalties, user stage or min-p)");
    if (st == DSV4_ERR_NOT_AVAILABLE) return dsv4__gen_fail(g, DSV4_ERR_INTERNAL, "no token satisfies the output constraint");
    if (st) return g->err[0] ? st : dsv4__gen_fail(g, st, "sampling: %s", dsv4_status_string(st)); /* keep a named cause */
    int accepted = d >= 0 && t == d;
    if (d >= 0) {
        g->n_accepted += accepted;
        if (g->spec_batched && !accepted) spec_unfeed(g); /* the draft fed is taken back */
    } else {
        g->spec_fed = 0; /* a token chosen after the draft: the draft is in place */
    }
    st = record(g, t);
    if (st) return st;
    st = dsv4_sampler_accept(g->sampler, t);
    if (st) return st;
    g->n_gen++;
    if (g->in_reasoning) g->n_reason++;

    if (t == g->eos) {
        g->decode_ns += now_ns() - t0;
        finish(g, g->forcing_len == 1 ? DSV4_FINISH_LENGTH : DSV4_FINISH_STOP);
        return DSV4_OK;
    }
    size_t plen;
    const char *piece = dsv4__gen_piece(g, t, &plen);
    if (t == g->think_close) {
        g->in_reasoning = 0;
    } else if (g->in_reasoning) {
        g->utf8_need = dsv4__utf8_owed(g->utf8_need, piece, plen);
    } else if (g->cons && !dsv4__cons_feed(g->cons, piece, plen)) {
        return dsv4__gen_fail(g, DSV4_ERR_INTERNAL, "token %d broke the output constraint", t);
    }
    char buf[512];
    size_t n = 0;
    st = dsv4_detok_feed(g->detok, t, buf, sizeof buf, &n);
    if (st == DSV4_ERR_BUFFER_TOO_SMALL) {
        char *big = dsv4__malloc(n);
        if (!big) return DSV4_ERR_OUT_OF_MEMORY;
        st = dsv4_detok_feed(g->detok, t, big, n, &n);
        if (!st) st = dsv4_chat_parser_feed(g->parser, big, n);
        dsv4__free(big);
    } else if (!st && n) {
        st = dsv4_chat_parser_feed(g->parser, buf, n);
    }
    if (!st) st = drain_parser(g);
    if (st) return st;
    g->pending = t;
    if (accepted && g->spec_batched) {
        /* the draft is fed and its logits are ready: nothing pending */
        g->pending = -1;
        memcpy(g->logits, g->logits2, (size_t)g->model_vocab * sizeof *g->logits);
    }
    g->spec_batched = 0;
    if (g->stopped_by_string) { g->decode_ns += now_ns() - t0; finish(g, DSV4_FINISH_STOP); return DSV4_OK; }
    if (g->n_gen >= g->max_tokens) {
        g->decode_ns += now_ns() - t0;
        finish(g, DSV4_FINISH_LENGTH);
        return DSV4_OK;
    }
    propose(g);
    g->decode_ns += now_ns() - t0;
    /* constrained content that is complete and admits nothing more ends here
     * (e.g. after "</｜DSML｜tool_calls>"): EOS is the only choice anyway */
    return DSV4_OK;
}

static void step_failed(dsv4_gen *g, dsv4_status st)
{
    if (st && !g->ended) {
        if (!g->err[0]) dsv4__gen_fail(g, st, "generation failed: %s", dsv4_status_string(st));
        char keep[sizeof g->err];
        memcpy(keep, g->err, sizeof keep);
        finish(g, DSV4_FINISH_ERROR);
        memcpy(g->err, keep, sizeof keep);
    }
}

static void run_step(dsv4_gen *g) { step_failed(g, step_one(g)); }

static dsv4_status pop(dsv4_gen *g, dsv4_gen_event_type *type, int32_t *index, const char **data, size_t *len)
{
    dsv4__free(g->cur);
    g->cur = NULL;
    if (g->q_n == 0) {
        if (g->ended) {
            /* after STOP: STOP again */
            *type = DSV4_GEN_EVENT_STOP;
            if (index) *index = g->finish;
            if (data) *data = "";
            if (len) *len = 0;
            return DSV4_OK;
        }
        *type = DSV4_GEN_EVENT_NONE;
        if (index) *index = -1;
        if (data) *data = "";
        if (len) *len = 0;
        return DSV4_OK;
    }
    dsv4__gen_event *e = &g->q[g->q_head];
    g->q_head = (g->q_head + 1) % g->q_cap;
    g->q_n--;
    g->cur = e->data;
    *type = (dsv4_gen_event_type)e->type;
    if (index) *index = e->index;
    if (data) *data = e->data;
    if (len) *len = e->len;
    return DSV4_OK;
}

dsv4_status dsv4_gen_next(dsv4_gen *g, dsv4_gen_event_type *type, int32_t *index, const char **data, size_t *len)
{
    if (type) *type = DSV4_GEN_EVENT_NONE;
    if (!g || !type) return DSV4_ERR_INVALID_ARGUMENT;
    if (!g->started) return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "no generation started");
    while (g->q_n == 0 && !g->ended) run_step(g);
    return pop(g, type, index, data, len);
}

dsv4_status dsv4_gen_poll(dsv4_gen *g, dsv4_gen_event_type *type, int32_t *index, const char **data, size_t *len)
{
    if (type) *type = DSV4_GEN_EVENT_NONE;
    if (!g || !type) return DSV4_ERR_INVALID_ARGUMENT;
    return pop(g, type, index, data, len);
}

dsv4_status dsv4_gen_step(dsv4_gen *g, int32_t max_tokens, double max_seconds, int32_t *n_tokens)
{
    if (n_tokens) *n_tokens = 0;
    if (!g || max_tokens < 1 || !(max_seconds >= 0) || !isfinite(max_seconds)) return DSV4_ERR_INVALID_ARGUMENT;
    if (!g->started) return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "no generation started");
    int64_t t0 = now_ns(), n0 = g->n_gen;
    while (!g->ended && g->n_gen - n0 < max_tokens) {
        run_step(g);
        if (max_seconds > 0 && (double)(now_ns() - t0) * 1e-9 >= max_seconds) break;
    }
    if (n_tokens) *n_tokens = (int32_t)(g->n_gen - n0);
    return DSV4_OK;
}

int64_t dsv4_gen_queued_events(const dsv4_gen *g) { return g ? (int64_t)g->q_n : -1; }

dsv4_status dsv4_gen_step_batch(dsv4_gen *const *gens, int32_t n, int32_t *n_tokens)
{
    if (n_tokens) *n_tokens = 0;
    if (!gens || n < 1 || n > DSV4__GEN_MAX_BATCH) return DSV4_ERR_INVALID_ARGUMENT;
    for (int32_t i = 0; i < n; i++) {
        if (!gens[i]) return DSV4_ERR_INVALID_ARGUMENT;
        if (!gens[i]->started) return dsv4__gen_fail(gens[i], DSV4_ERR_INVALID_ARGUMENT, "no generation started");
        for (int32_t k = 0; k < i; k++)
            if (gens[k] == gens[i] || gens[k]->sess == gens[i]->sess) return DSV4_ERR_INVALID_ARGUMENT;
    }
    int64_t t0 = now_ns();
    for (int32_t i = 0; i < n; i++) gens[i]->no_draft = 1;
    dsv4_session *sess[DSV4__GEN_MAX_BATCH];
    const int32_t *toks[DSV4__GEN_MAX_BATCH];
    size_t cnt[DSV4__GEN_MAX_BATCH];
    int32_t who[DSV4__GEN_MAX_BATCH], one[DSV4__GEN_MAX_BATCH];
    uint8_t kind[DSV4__GEN_MAX_BATCH]; /* 0 nothing, 1 prompt chunk, 2 decode token, 3 choose only */
    int nb = 0;
    int64_t n0 = 0;
    for (int32_t i = 0; i < n; i++) {
        dsv4_gen *g = gens[i];
        kind[i] = 0;
        n0 += g->n_gen;
        if (g->ended) continue;
        if (g->n_defer) {
            if (atomic_load(&g->cancel)) { finish(g, DSV4_FINISH_CANCELLED); continue; }
            size_t left = g->n_defer - g->i_defer;
            size_t m = defer_cut(g, left < (size_t)g->prefill_chunk ? left : (size_t)g->prefill_chunk);
            if (hist_reserve(g, g->n_hist + m)) { step_failed(g, DSV4_ERR_OUT_OF_MEMORY); continue; }
            kind[i] = 1;
            sess[nb] = g->sess;
            toks[nb] = g->defer + g->i_defer;
            cnt[nb] = m;
        } else if (g->pending >= 0) {
            if (remaining(g) <= 0 && g->max_tokens - g->n_gen > 0) {
                g->pending = -1;
                finish(g, DSV4_FINISH_LENGTH);
                continue;
            }
            if (hist_reserve(g, g->n_hist + 1)) { step_failed(g, DSV4_ERR_OUT_OF_MEMORY); continue; }
            kind[i] = 2;
            g->draft = -1; /* no speculation in a batched step */
            one[i] = g->pending;
            sess[nb] = g->sess;
            toks[nb] = &one[i];
            cnt[nb] = 1;
        } else {
            kind[i] = 3;
            continue;
        }
        who[nb++] = i;
    }
    dsv4_status st = nb ? dsv4__session_eval_batch(sess, toks, cnt, nb) : DSV4_OK;
    if (st) {
        /* the batch was refused or failed (no session changed, except after
         * DSV4_ERR_INTERNAL): each generator steps alone, with its own
         * handling of a full context or a failure */
        for (int b = 0; b < nb; b++) {
            dsv4_gen *g = gens[who[b]];
            if (kind[who[b]] == 1) step_failed(g, feed_deferred(g, (size_t)g->prefill_chunk));
            else run_step(g);
        }
        nb = 0;
    }
    int64_t t1 = now_ns();
    for (int b = 0; b < nb; b++) {
        dsv4_gen *g = gens[who[b]];
        memcpy(g->hist + g->n_hist, toks[b], cnt[b] * sizeof *toks[b]);
        g->n_hist += cnt[b];
        g->sess_edits = dsv4__session_edits(g->sess);
        if (kind[who[b]] == 1) {
            g->i_defer += cnt[b];
            defer_checkpoint(g);
            g->prompt_ns += t1 - t0;
            if (g->i_defer < g->n_defer) continue;
            g->n_defer = g->i_defer = 0;
        } else {
            g->pending = -1;
        }
        st = dsv4_session_logits(g->sess, -1, g->logits, (size_t)g->model_vocab);
        if (st) { step_failed(g, dsv4__gen_fail(g, st, "no logits")); continue; }
        if (kind[who[b]] == 1) continue; /* the prompt is in: its first token is chosen at the next step */
        step_failed(g, step_choose(g, t0));
    }
    for (int32_t i = 0; i < n; i++)
        if (kind[i] == 3) step_failed(gens[i], step_choose(gens[i], t0));
    for (int32_t i = 0; i < n; i++) gens[i]->no_draft = 0;
    if (n_tokens) {
        int64_t n1 = 0;
        for (int32_t i = 0; i < n; i++) n1 += gens[i]->n_gen;
        *n_tokens = (int32_t)(n1 - n0);
    }
    return DSV4_OK;
}
