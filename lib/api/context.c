/*
 * lib/api/context.c — contexts (runtime: threads, scratch, numerics) and
 * sessions (one conversation's decode state and its last logits). The
 * context's runtime is built from its model's config and bound weights.
 * The structs are in api_int.h; checkpoints, rewind and save/restore in
 * session.c.
 */
#ifndef DSV4_ENABLE_EXPERIMENTAL
#define DSV4_ENABLE_EXPERIMENTAL 1 /* dsv4_session_set_progress */
#endif
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "api/api_int.h"

static void keep_err(char *dst, const dsv4__err *e)
{
    snprintf(dst, 512, "%s", e->msg);
}

dsv4_status dsv4_context_create(dsv4_model *model, const dsv4_options *opts, dsv4_context **out, char **err_msg)
{
    dsv4__err e = { 0, "" };
    if (out) *out = NULL;
    if (err_msg) *err_msg = NULL;
    if (!model || !out) {
        dsv4__fail(&e, DSV4_ERR_INVALID_ARGUMENT, "dsv4_context_create: %s is NULL", !model ? "model" : "out");
        return dsv4__err_out(&e, err_msg);
    }
    int64_t n_ctx = dsv4__opt_i64(opts, DSV4_OPT_CONTEXT_LENGTH);
    if (n_ctx > model->ck->cfg.max_position) {
        dsv4__fail(&e, DSV4_ERR_INVALID_ARGUMENT, "dsv4_context_create: context length %lld above the model's "
                   "max_position_embeddings %lld", (long long)n_ctx, (long long)model->ck->cfg.max_position);
        return dsv4__err_out(&e, err_msg);
    }
    const dsv4__config *c = &model->ck->cfg;
    for (int l = 0; l <= c->n_layers; l++)
        if (c->compress_ratios[l] > 128) {
            dsv4__fail(&e, DSV4_ERR_UNSUPPORTED, "dsv4_context_create: compress ratio %d of layer %d is above 128",
                       c->compress_ratios[l], l);
            return dsv4__err_out(&e, err_msg);
        }
    if (c->head_dim > 1024 || c->index_head_dim > 1024 || c->hc_mult > 8) {
        dsv4__fail(&e, DSV4_ERR_UNSUPPORTED, "dsv4_context_create: head_dim, index_head_dim above 1024 or "
                   "hc_mult above 8 are not supported");
        return dsv4__err_out(&e, err_msg);
    }
    dsv4__rt_opts o;
    memset(&o, 0, sizeof o);
    int64_t threads = dsv4__opt_i64(opts, DSV4_OPT_THREADS);
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? n : 1;
    }
    if (threads > 256) threads = 256;
    o.threads = (int32_t)threads;
    o.n_ctx = n_ctx;
    int64_t mb = dsv4__opt_i64(opts, DSV4_OPT_MAX_BATCH);
    /* the default chunk sized to the context: one session never feeds more
     * than its length at once, and batches of several sessions are split at
     * the chunk anyway, so a short context keeps a smaller scratch (at
     * least DSV4__MAX_BATCH_FLOOR rows, the sessions' shared batches) */
    if (!dsv4__opt_is_set(opts, DSV4_OPT_MAX_BATCH)) mb = dsv4__default_chunk(n_ctx);
    o.max_batch = (int32_t)(mb > 65536 ? 65536 : mb);
    o.numerics = (int32_t)dsv4__opt_i64(opts, DSV4_OPT_NUMERICS);
    o.revision = (int32_t)dsv4__opt_i64(opts, DSV4_OPT_REVISION);
    dsv4_context *ctx = dsv4__calloc(1, sizeof *ctx);
    if (!ctx) {
        dsv4__fail(&e, DSV4_ERR_OUT_OF_MEMORY, "dsv4_context_create: out of memory");
        return dsv4__err_out(&e, err_msg);
    }
    dsv4_status st = dsv4__model_rt_create(model, &o, &ctx->rt, &e);
    if (st) {
        dsv4__free(ctx);
        dsv4__err_prefix(&e, "dsv4_context_create");
        return dsv4__err_out(&e, err_msg);
    }
    /* the pool's waiting (DSV4_OPT_WORKER_SPIN; OpenMP's follows its own settings) */
    dsv4k_pool_set_spin(dsv4__rt_pool(ctx->rt), (int)dsv4__opt_i64(opts, DSV4_OPT_WORKER_SPIN));
    dsv4__ref_init(&ctx->ref);
    dsv4__ref_get(&model->ref);
    ctx->model = model;
    ctx->n_ctx = n_ctx;
    ctx->max_batch = o.max_batch > 0 ? o.max_batch : DSV4__MAX_BATCH_DEFAULT;
    *out = ctx;
    return DSV4_OK;
}

static void context_release(dsv4_context *ctx)
{
    if (!dsv4__ref_put(&ctx->ref)) return;
    dsv4__rt_free(ctx->rt);
    dsv4__model_release(ctx->model);
    dsv4__free(ctx);
}

void dsv4_context_free(dsv4_context *ctx)
{
    if (ctx) context_release(ctx);
}

const char *dsv4_context_last_error(const dsv4_context *ctx)
{
    return ctx ? ctx->err : "dsv4_context_last_error: ctx is NULL";
}

dsv4_status dsv4_session_create(dsv4_context *ctx, const dsv4_options *opts, dsv4_session **out, char **err_msg)
{
    dsv4__err e = { 0, "" };
    if (out) *out = NULL;
    if (err_msg) *err_msg = NULL;
    if (!ctx || !out) {
        dsv4__fail(&e, DSV4_ERR_INVALID_ARGUMENT, "dsv4_session_create: %s is NULL", !ctx ? "ctx" : "out");
        return dsv4__err_out(&e, err_msg);
    }
    int mtp = (int)dsv4__opt_i64(opts, DSV4_OPT_MTP);
    if (mtp && !ctx->model->ck->has_mtp) {
        dsv4__fail(&e, DSV4_ERR_NOT_AVAILABLE, "dsv4_session_create: MTP asked for, but the model has no MTP block "
                   "loaded");
        keep_err(ctx->err, &e);
        return dsv4__err_out(&e, err_msg);
    }
    if (mtp && ctx->model->ck->cfg.compress_ratios[ctx->model->ck->cfg.n_layers] != 0) {
        dsv4__fail(&e, DSV4_ERR_UNSUPPORTED, "dsv4_session_create: an MTP block with a compressor is not supported");
        keep_err(ctx->err, &e);
        return dsv4__err_out(&e, err_msg);
    }
    dsv4_session *s = dsv4__calloc(1, sizeof *s);
    if (!s) {
        dsv4__fail(&e, DSV4_ERR_OUT_OF_MEMORY, "dsv4_session_create: out of memory");
        keep_err(ctx->err, &e);
        return dsv4__err_out(&e, err_msg);
    }
    if (dsv4__state_create(ctx->rt, mtp, &s->st, &e) || (s->ctx = ctx, dsv4__session_init_extra(s, &e))) {
        dsv4__state_free(s->st);
        dsv4__session_free_extra(s);
        dsv4__free(s);
        dsv4__err_prefix(&e, "dsv4_session_create");
        keep_err(ctx->err, &e);
        return dsv4__err_out(&e, err_msg);
    }
    dsv4__ref_init(&s->ref);
    dsv4__ref_get(&ctx->ref);
    s->ctx = ctx;
    s->has_mtp = mtp;
    *out = s;
    return DSV4_OK;
}

void dsv4_session_free(dsv4_session *s)
{
    if (!s || !dsv4__ref_put(&s->ref)) return;
    dsv4__session_free_extra(s);
    dsv4__state_free(s->st);
    dsv4__free(s->logits);
    dsv4__free(s->mtp);
    context_release(s->ctx);
    dsv4__free(s);
}

const char *dsv4_session_last_error(const dsv4_session *s)
{
    return s ? s->err : "dsv4_session_last_error: session is NULL";
}

/* make room for rows × vocab floats in *buf (capacity *cap rows) */
int dsv4__session_reserve(float **buf, int64_t *cap, int64_t rows, int64_t vocab)
{
    if (rows <= *cap) return 0;
    float *p = dsv4__realloc(*buf, (size_t)(rows * vocab) * sizeof *p);
    if (!p) return -1;
    *buf = p;
    *cap = rows;
    return 0;
}

/* dsv4_session_eval with a progress callback (checked and sized by it):
 * one forward pass per chunk of max_batch tokens, a report before the first
 * and after each. The logits rows and MTP rows of the chunks follow each
 * other in the session's buffers, as one pass would write them. A stop
 * keeps the chunks already run (dsv4_session_set_progress). */
static dsv4_status eval_chunks(dsv4_session *s, const int32_t *tokens, int64_t n, uint32_t flags)
{
    int64_t V = s->ctx->model->ck->cfg.vocab_size, B = s->ctx->max_batch;
    int all = (flags & DSV4_EVAL_ALL_LOGITS) != 0;
    int64_t pos = dsv4__state_pos(s->st), done = 0, n_mtp = 0;
    dsv4_status st = DSV4_OK;
    for (;;) {
        if (s->progress(s->progress_user, done, n) != 0) {
            snprintf(s->err, sizeof s->err, "dsv4_session_eval: stopped by the progress callback after %lld of "
                     "%lld tokens", (long long)done, (long long)n);
            st = DSV4_ERR_ABORTED;
            break;
        }
        if (done == n) break;
        int64_t m = n - done < B ? n - done : B, got = 0;
        dsv4__err e = { 0, "" };
        st = dsv4__forward(s->st, tokens + done, m, all ? s->logits + done * V : s->logits, all ? m : 1,
                           s->has_mtp && !s->mtp_rows_off ? s->mtp + n_mtp * V : NULL, &got, &e);
        if (st) {
            snprintf(s->err, sizeof s->err, "dsv4_session_eval: %s", e.msg);
            if (st == DSV4_ERR_IO) { /* a weight read failed: the state was reset (memory budget) */
                dsv4_session_reset(s);
                return st;
            }
            break;
        }
        dsv4__session_note_eval(s, pos + done, tokens + done, m); /* each chunk is its own call (rewind) */
        done += m;
        n_mtp += got;
    }
    if (st && done == 0) return st; /* nothing ran: the session is as it was */
    /* the rows of what was fed */
    s->lg_n = all ? done : 1;
    s->lg_first = pos + done - s->lg_n;
    s->mtp_n = s->mtp_rows_off ? 0 : n_mtp;
    s->mtp_first = pos > 0 ? pos - 1 : 0;
    return st;
}

dsv4_status dsv4_session_eval(dsv4_session *s, const int32_t *tokens, size_t n, uint32_t flags)
{
    if (!s) return DSV4_ERR_INVALID_ARGUMENT;
    s->err[0] = 0;
    if (!tokens || n == 0) {
        snprintf(s->err, sizeof s->err, "dsv4_session_eval: %s", !tokens ? "tokens is NULL" : "n is 0");
        return DSV4_ERR_INVALID_ARGUMENT;
    }
    if (flags & ~(uint32_t)DSV4_EVAL_ALL_LOGITS) {
        snprintf(s->err, sizeof s->err, "dsv4_session_eval: unknown flag bits 0x%x", (unsigned)flags);
        return DSV4_ERR_INVALID_ARGUMENT;
    }
    const dsv4__config *c = &s->ctx->model->ck->cfg;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size) {
            snprintf(s->err, sizeof s->err, "dsv4_session_eval: token %d at index %zu out of range [0, %d)",
                     tokens[i], i, c->vocab_size);
            return DSV4_ERR_INVALID_ARGUMENT;
        }
    int64_t pos = dsv4__state_pos(s->st);
    /* capacity before any buffer is sized by n */
    if (pos > s->ctx->n_ctx || n > (uint64_t)(s->ctx->n_ctx - pos)) {
        snprintf(s->err, sizeof s->err,
                 "dsv4_session_eval: context full: position %lld + %zu tokens exceeds the capacity %lld",
                 (long long)pos, n, (long long)s->ctx->n_ctx);
        return DSV4_ERR_CONTEXT_FULL;
    }
    int64_t rows = (flags & DSV4_EVAL_ALL_LOGITS) ? (int64_t)n : 1;
    if (dsv4__session_reserve(&s->logits, &s->lg_cap, rows, c->vocab_size) ||
        (s->has_mtp && dsv4__session_reserve(&s->mtp, &s->mtp_cap, (int64_t)n, c->vocab_size))) {
        snprintf(s->err, sizeof s->err, "dsv4_session_eval: out of memory for the logits of %lld positions",
                 (long long)n);
        return DSV4_ERR_OUT_OF_MEMORY;
    }
    dsv4__err e = { 0, "" };
    int64_t n_mtp = 0;
    s->edits++;
    if (s->progress) return eval_chunks(s, tokens, (int64_t)n, flags);
    dsv4_status st = dsv4__forward(s->st, tokens, (int64_t)n, s->logits, rows,
                                   s->has_mtp && !s->mtp_rows_off ? s->mtp : NULL, &n_mtp, &e);
    if (st) {
        snprintf(s->err, sizeof s->err, "dsv4_session_eval: %s", e.msg);
        if (st == DSV4_ERR_IO) dsv4_session_reset(s); /* a weight read failed: the state was reset */
        return st;
    }
    dsv4__session_note_eval(s, pos, tokens, (int64_t)n);
    s->lg_first = pos + (int64_t)n - rows;
    s->lg_n = rows;
    s->mtp_n = s->mtp_rows_off ? 0 : n_mtp;
    s->mtp_first = pos > 0 ? pos - 1 : 0;
    return DSV4_OK;
}

dsv4_status dsv4_session_set_progress(dsv4_session *s, dsv4_eval_progress_fn fn, void *user)
{
    if (!s) return DSV4_ERR_INVALID_ARGUMENT;
    s->progress = fn;
    s->progress_user = fn ? user : NULL;
    return DSV4_OK;
}

static dsv4_status copy_row(const dsv4_session *s, const float *buf, int64_t first, int64_t count, int64_t pos,
                            float *dst, size_t cap)
{
    int64_t V = s->ctx->model->ck->cfg.vocab_size;
    if (cap < (size_t)V) return DSV4_ERR_BUFFER_TOO_SMALL;
    if (count == 0) return DSV4_ERR_NOT_AVAILABLE;
    if (pos == -1) pos = first + count - 1;
    if (pos < first || pos >= first + count) return DSV4_ERR_NOT_AVAILABLE;
    memcpy(dst, buf + (pos - first) * V, (size_t)V * sizeof *dst);
    return DSV4_OK;
}

dsv4_status dsv4_session_logits(const dsv4_session *s, int64_t pos, float *dst, size_t cap)
{
    if (!s || !dst || pos < -1) return DSV4_ERR_INVALID_ARGUMENT;
    return copy_row(s, s->logits, s->lg_first, s->lg_n, pos, dst, cap);
}

dsv4_status dsv4_session_mtp_logits(const dsv4_session *s, int64_t pos, float *dst, size_t cap)
{
    if (!s || !dst || pos < -1) return DSV4_ERR_INVALID_ARGUMENT;
    if (!s->has_mtp) return DSV4_ERR_NOT_AVAILABLE;
    return copy_row(s, s->mtp, s->mtp_first, s->mtp_n, pos, dst, cap);
}

dsv4_status dsv4_session_mtp_draft(dsv4_session *s, int32_t next_token, float *dst, size_t cap)
{
    if (!s || !dst) return DSV4_ERR_INVALID_ARGUMENT;
    const dsv4__config *c = &s->ctx->model->ck->cfg;
    if (next_token < 0 || next_token >= c->vocab_size) return DSV4_ERR_INVALID_ARGUMENT;
    if (cap < (size_t)c->vocab_size) return DSV4_ERR_BUFFER_TOO_SMALL;
    if (!s->has_mtp) return DSV4_ERR_NOT_AVAILABLE;
    if (dsv4__state_pos(s->st) >= s->ctx->n_ctx) return DSV4_ERR_CONTEXT_FULL;
    dsv4__err e = { 0, "" };
    dsv4_status st = dsv4__forward_mtp_draft(s->st, next_token, dst, &e);
    if (st) snprintf(s->err, sizeof s->err, "dsv4_session_mtp_draft: %s", e.msg);
    return st;
}

/* Feed sessions of one context together (the generator's batched step):
 * count[i] tokens for sess[i], one forward pass for all (weights read once
 * per batch), the last position's logits kept for each, as
 * dsv4_session_eval with flags 0 would. The sessions must be distinct and
 * share one context. Every check happens before anything runs, so a
 * refusal changes no session. */
dsv4_status dsv4__session_eval_batch(dsv4_session *const *sess, const int32_t *const *tokens, const size_t *count,
                                     int n)
{
    if (!sess || !tokens || !count || n < 1 || n > 256) return DSV4_ERR_INVALID_ARGUMENT;
    dsv4__req reqs[256];
    dsv4_context *ctx = sess[0] ? sess[0]->ctx : NULL;
    if (!ctx) return DSV4_ERR_INVALID_ARGUMENT;
    const dsv4__config *c = &ctx->model->ck->cfg;
    for (int i = 0; i < n; i++) {
        dsv4_session *s = sess[i];
        if (!s || s->ctx != ctx || !tokens[i] || count[i] == 0) return DSV4_ERR_INVALID_ARGUMENT;
        for (int k = 0; k < i; k++)
            if (sess[k] == s) return DSV4_ERR_INVALID_ARGUMENT;
        for (size_t t = 0; t < count[i]; t++)
            if (tokens[i][t] < 0 || tokens[i][t] >= c->vocab_size) return DSV4_ERR_INVALID_ARGUMENT;
        int64_t pos = dsv4__state_pos(s->st);
        if (pos > ctx->n_ctx || count[i] > (uint64_t)(ctx->n_ctx - pos)) return DSV4_ERR_CONTEXT_FULL;
        if (dsv4__session_reserve(&s->logits, &s->lg_cap, 1, c->vocab_size) ||
            (s->has_mtp && dsv4__session_reserve(&s->mtp, &s->mtp_cap, (int64_t)count[i], c->vocab_size)))
            return DSV4_ERR_OUT_OF_MEMORY;
        reqs[i] = (dsv4__req){ .s = s->st, .tokens = tokens[i], .n = (int64_t)count[i], .logits = s->logits,
                               .n_logit_rows = 1, .mtp_logits = s->has_mtp && !s->mtp_rows_off ? s->mtp : NULL };
    }
    int64_t pos0[256];
    for (int i = 0; i < n; i++) pos0[i] = dsv4__state_pos(sess[i]->st);
    dsv4__err e = { 0, "" };
    dsv4_status st = dsv4__forward_batch(ctx->rt, reqs, n, &e);
    if (st) {
        for (int i = 0; i < n; i++) {
            snprintf(sess[i]->err, sizeof sess[i]->err, "batched eval: %s", e.msg);
            if (st == DSV4_ERR_IO) dsv4_session_reset(sess[i]); /* a weight read failed: states reset */
        }
        return st;
    }
    for (int i = 0; i < n; i++) {
        dsv4_session *s = sess[i];
        dsv4__session_note_eval(s, pos0[i], tokens[i], (int64_t)count[i]); /* history (rewind, save) */
        s->lg_first = pos0[i] + (int64_t)count[i] - 1;
        s->lg_n = 1;
        s->mtp_n = s->mtp_rows_off ? 0 : reqs[i].n_mtp;
        s->mtp_first = pos0[i] > 0 ? pos0[i] - 1 : 0;
    }
    return DSV4_OK;
}

int64_t dsv4_session_position(const dsv4_session *s) { return s ? dsv4__state_pos(s->st) : -1; }

dsv4_status dsv4_session_reset(dsv4_session *s)
{
    if (!s) return DSV4_ERR_INVALID_ARGUMENT;
    dsv4__state_reset(s->st);
    s->edits++;
    dsv4__session_drop_checkpoints(s, 0);
    s->lg_n = 0;
    s->mtp_n = 0;
    return DSV4_OK;
}

dsv4_status dsv4_session_memory(const dsv4_session *s, int64_t *reserved_bytes, int64_t *used_bytes)
{
    if (!s) return DSV4_ERR_INVALID_ARGUMENT;
    dsv4__state_memory(s->st, reserved_bytes, used_bytes);
    return DSV4_OK;
}

/* For the generator (lib/gen): keep a session alive, and its geometry. */
void dsv4__session_retain(dsv4_session *s) { dsv4__ref_get(&s->ref); }
int64_t dsv4__session_vocab(const dsv4_session *s) { return s->ctx->model->ck->cfg.vocab_size; }
int64_t dsv4__session_capacity(const dsv4_session *s) { return s->ctx->n_ctx; }
dsv4k_pool *dsv4__context_pool(dsv4_context *ctx) { return ctx ? dsv4__rt_pool(ctx->rt) : NULL; }
uint64_t dsv4__session_edits(const dsv4_session *s) { return s->edits; }
