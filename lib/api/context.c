/*
 * lib/api/context.c — contexts and sessions.
 *
 * This development snapshot has no forward pass yet: dsv4_context_create()
 * checks its arguments and then reports DSV4_ERR_UNSUPPORTED with a message
 * saying so, so no session can exist. Every session entry point still checks
 * its arguments and returns a status.
 */
#include <stdio.h>
#include "loader/loader.h"

struct dsv4_context { dsv4__ref ref; };
struct dsv4_session { dsv4__ref ref; };

static const char no_forward[] =
    "the forward pass is not available in this libdsv4 build (development snapshot " DSV4_VERSION_STRING ")";

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
    if (n_ctx > model->cfg.max_position) {
        dsv4__fail(&e, DSV4_ERR_INVALID_ARGUMENT, "dsv4_context_create: context length %lld above the model's "
                   "max_position_embeddings %lld", (long long)n_ctx, (long long)model->cfg.max_position);
        return dsv4__err_out(&e, err_msg);
    }
    dsv4__fail(&e, DSV4_ERR_UNSUPPORTED, "dsv4_context_create: %s", no_forward);
    return dsv4__err_out(&e, err_msg);
}

void dsv4_context_free(dsv4_context *ctx) { (void)ctx; }

const char *dsv4_context_last_error(const dsv4_context *ctx)
{
    return ctx ? no_forward : "dsv4_context_last_error: ctx is NULL";
}

dsv4_status dsv4_session_create(dsv4_context *ctx, const dsv4_options *opts, dsv4_session **out, char **err_msg)
{
    dsv4__err e = { 0, "" };
    (void)opts;
    if (out) *out = NULL;
    if (err_msg) *err_msg = NULL;
    if (!ctx || !out) {
        dsv4__fail(&e, DSV4_ERR_INVALID_ARGUMENT, "dsv4_session_create: %s is NULL", !ctx ? "ctx" : "out");
        return dsv4__err_out(&e, err_msg);
    }
    dsv4__fail(&e, DSV4_ERR_UNSUPPORTED, "dsv4_session_create: %s", no_forward);
    return dsv4__err_out(&e, err_msg);
}

void dsv4_session_free(dsv4_session *s) { (void)s; }

const char *dsv4_session_last_error(const dsv4_session *s)
{
    return s ? no_forward : "dsv4_session_last_error: session is NULL";
}

dsv4_status dsv4_session_eval(dsv4_session *s, const int32_t *tokens, size_t n, uint32_t flags)
{
    (void)flags;
    if (!s || !tokens || n == 0) return DSV4_ERR_INVALID_ARGUMENT;
    return DSV4_ERR_UNSUPPORTED;
}

dsv4_status dsv4_session_logits(const dsv4_session *s, int64_t pos, float *dst, size_t cap)
{
    (void)pos; (void)cap;
    if (!s || !dst) return DSV4_ERR_INVALID_ARGUMENT;
    return DSV4_ERR_UNSUPPORTED;
}

dsv4_status dsv4_session_mtp_logits(const dsv4_session *s, int64_t pos, float *dst, size_t cap)
{
    (void)pos; (void)cap;
    if (!s || !dst) return DSV4_ERR_INVALID_ARGUMENT;
    return DSV4_ERR_UNSUPPORTED;
}

dsv4_status dsv4_session_mtp_draft(dsv4_session *s, int32_t next_token, float *dst, size_t cap)
{
    (void)next_token; (void)cap;
    if (!s || !dst) return DSV4_ERR_INVALID_ARGUMENT;
    return DSV4_ERR_UNSUPPORTED;
}

int64_t dsv4_session_position(const dsv4_session *s) { return s ? 0 : -1; }

dsv4_status dsv4_session_reset(dsv4_session *s) { return s ? DSV4_OK : DSV4_ERR_INVALID_ARGUMENT; }

dsv4_status dsv4_session_memory(const dsv4_session *s, int64_t *reserved_bytes, int64_t *used_bytes)
{
    if (!s) return DSV4_ERR_INVALID_ARGUMENT;
    if (reserved_bytes) *reserved_bytes = 0;
    if (used_bytes) *used_bytes = 0;
    return DSV4_OK;
}
