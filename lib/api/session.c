/*
 * lib/api/session.c — sessions that last (docs/sessions.md): a session's
 * token history and eval-call boundaries, its checkpoints (exact images of
 * the decode state, lib/graph/kv.c), rewind, and save/restore through the
 * session file format of lib/state.
 */
#define DSV4_ENABLE_EXPERIMENTAL
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "api/api_int.h"
#include "state/sfile.h"

#define DEFAULT_MAX_CK 4
#define MAX_MAX_CK 4096

static int64_t vocab(const dsv4_session *s) { return s->ctx->model->ck->cfg.vocab_size; }

dsv4_status dsv4__session_init_extra(dsv4_session *s, dsv4__err *e)
{
    int64_t cap = s->ctx->n_ctx;
    s->max_ck = DEFAULT_MAX_CK;
    s->hist = dsv4__malloc((size_t)(cap > 0 ? cap : 1) * sizeof *s->hist);
    s->cuts = dsv4__calloc((size_t)cap / 8 + 1, 1);
    if (!s->hist || !s->cuts)
        return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory for the token history of %lld tokens",
                          (long long)cap);
    return DSV4_OK;
}

static void ck_free(dsv4__ckpt *c)
{
    dsv4__free(c->img);
    dsv4__free(c->logits);
}

void dsv4__session_free_extra(dsv4_session *s)
{
    for (int i = 0; i < s->n_ck; i++) ck_free(&s->ck[i]);
    dsv4__free(s->ck);
    dsv4__free(s->hist);
    dsv4__free(s->cuts);
    s->ck = NULL;
    s->hist = NULL;
    s->cuts = NULL;
    s->n_ck = 0;
    dsv4__session_cache_release(s);
}

static void cut_set(uint8_t *c, int64_t p) { c[p >> 3] |= (uint8_t)(1u << (p & 7)); }
static int cut_get(const uint8_t *c, int64_t p) { return (c[p >> 3] >> (p & 7)) & 1; }
/* clear the boundaries of positions >= p */
static void cuts_truncate(uint8_t *c, int64_t p, int64_t cap)
{
    int64_t nb = cap / 8 + 1;
    if (p >> 3 >= nb) return;
    c[p >> 3] &= (uint8_t)((1u << (p & 7)) - 1);
    if ((p >> 3) + 1 < nb) memset(c + (p >> 3) + 1, 0, (size_t)(nb - (p >> 3) - 1));
}

void dsv4__session_note_eval(dsv4_session *s, int64_t pos0, const int32_t *tokens, int64_t n)
{
    s->edits++;
    memcpy(s->hist + pos0, tokens, (size_t)n * sizeof *tokens);
    /* a call began at pos0 and none inside it (bits left from an earlier history go) */
    cut_set(s->cuts, pos0);
    for (int64_t p = pos0 + 1; p < pos0 + n; p++) {
        if ((p & 7) == 0 && p + 8 <= pos0 + n) { s->cuts[p >> 3] = 0; p += 7; continue; }
        s->cuts[p >> 3] &= (uint8_t)~(1u << (p & 7));
    }
}

void dsv4__session_drop_checkpoints(dsv4_session *s, int64_t above)
{
    int k = 0;
    for (int i = 0; i < s->n_ck; i++) {
        if (s->ck[i].pos > above) ck_free(&s->ck[i]);
        else s->ck[k++] = s->ck[i];
    }
    s->n_ck = k;
}

static int64_t ck_bytes(const dsv4_session *s)
{
    int64_t b = 0;
    for (int i = 0; i < s->n_ck; i++) b += s->ck[i].img_bytes + (s->ck[i].logits ? vocab(s) * 4 : 0);
    return b;
}

/* drop least recently used checkpoints until within the limits; `keep`
 * (index, -1 none) goes last */
static void enforce_limits(dsv4_session *s, int keep)
{
    while (s->n_ck > 0 && (s->n_ck > s->max_ck || (s->max_ck_bytes > 0 && ck_bytes(s) > s->max_ck_bytes))) {
        int v = -1;
        for (int i = 0; i < s->n_ck; i++)
            if (i != keep && (v < 0 || s->ck[i].used < s->ck[v].used)) v = i;
        if (v < 0) v = keep;
        ck_free(&s->ck[v]);
        memmove(s->ck + v, s->ck + v + 1, (size_t)(s->n_ck - v - 1) * sizeof *s->ck);
        s->n_ck--;
        if (keep > v) keep--;
        else if (keep == v) keep = -1;
    }
}

/* the last logits row of position pos-1, or NULL */
static const float *last_logits(const dsv4_session *s, int64_t pos)
{
    if (s->lg_n > 0 && s->lg_first + s->lg_n == pos) return s->logits + (s->lg_n - 1) * vocab(s);
    return NULL;
}

dsv4_status dsv4__session_image(const dsv4_session *s, uint8_t **img, int64_t *bytes, float **logits)
{
    int64_t pos = dsv4__state_pos(s->st);
    int64_t n = dsv4__state_image_bytes(s->ctx->rt, s->has_mtp, pos);
    *img = dsv4__malloc((size_t)(n > 0 ? n : 1));
    *logits = NULL;
    const float *lg = last_logits(s, pos);
    if (*img && lg) *logits = dsv4__malloc((size_t)vocab(s) * 4);
    if (!*img || (lg && !*logits)) {
        dsv4__free(*img);
        *img = NULL;
        return DSV4_ERR_OUT_OF_MEMORY;
    }
    dsv4__state_image_write(s->st, *img);
    if (lg) memcpy(*logits, lg, (size_t)vocab(s) * 4);
    *bytes = n;
    return DSV4_OK;
}

dsv4_status dsv4_session_checkpoint(dsv4_session *s)
{
    if (!s) return DSV4_ERR_INVALID_ARGUMENT;
    s->err[0] = 0;
    if (s->max_ck == 0) {
        snprintf(s->err, sizeof s->err, "dsv4_session_checkpoint: checkpoints are off (limit 0)");
        return DSV4_ERR_NOT_AVAILABLE;
    }
    int64_t pos = dsv4__state_pos(s->st);
    int64_t need = dsv4__state_image_bytes(s->ctx->rt, s->has_mtp, pos) + (last_logits(s, pos) ? vocab(s) * 4 : 0);
    if (s->max_ck_bytes > 0 && need > s->max_ck_bytes) {
        snprintf(s->err, sizeof s->err, "dsv4_session_checkpoint: %lld bytes at position %lld, above the limit of "
                 "%lld", (long long)need, (long long)pos, (long long)s->max_ck_bytes);
        return DSV4_ERR_NOT_AVAILABLE;
    }
    dsv4__ckpt c = { .pos = pos };
    int at = 0;
    while (at < s->n_ck && s->ck[at].pos < pos) at++;
    int replace = at < s->n_ck && s->ck[at].pos == pos;
    dsv4__ckpt *grown = s->ck;
    if (!replace) {
        grown = dsv4__realloc(s->ck, (size_t)(s->n_ck + 1) * sizeof *s->ck);
        if (!grown) goto oom;
        s->ck = grown;
    }
    if (dsv4__session_image(s, &c.img, &c.img_bytes, &c.logits)) goto oom;
    c.used = ++s->tick;
    if (replace) {
        ck_free(&s->ck[at]);
    } else {
        memmove(s->ck + at + 1, s->ck + at, (size_t)(s->n_ck - at) * sizeof *s->ck);
        s->n_ck++;
    }
    s->ck[at] = c;
    enforce_limits(s, at);
    return DSV4_OK;
oom:
    snprintf(s->err, sizeof s->err, "dsv4_session_checkpoint: out of memory for the state at position %lld",
             (long long)pos);
    return DSV4_ERR_OUT_OF_MEMORY;
}

dsv4_status dsv4_session_checkpoints(const dsv4_session *s, int64_t *positions, size_t cap, size_t *n)
{
    if (!s || !n) return DSV4_ERR_INVALID_ARGUMENT;
    *n = (size_t)s->n_ck;
    if (!positions) return DSV4_OK;
    if (cap < (size_t)s->n_ck) return DSV4_ERR_BUFFER_TOO_SMALL;
    for (int i = 0; i < s->n_ck; i++) positions[i] = s->ck[i].pos;
    return DSV4_OK;
}

dsv4_status dsv4_session_set_checkpoint_limit(dsv4_session *s, int32_t max_count, int64_t max_bytes)
{
    if (!s || max_count < 0 || max_count > MAX_MAX_CK || max_bytes < 0) return DSV4_ERR_INVALID_ARGUMENT;
    s->max_ck = max_count;
    s->max_ck_bytes = max_bytes;
    enforce_limits(s, -1);
    return DSV4_OK;
}

dsv4_status dsv4_session_tokens(const dsv4_session *s, int32_t *dst, size_t cap, size_t *n)
{
    if (!s || !n) return DSV4_ERR_INVALID_ARGUMENT;
    int64_t pos = dsv4__state_pos(s->st);
    *n = (size_t)pos;
    if (!dst) return DSV4_OK;
    if (cap < (size_t)pos) return DSV4_ERR_BUFFER_TOO_SMALL;
    memcpy(dst, s->hist, (size_t)pos * sizeof *dst);
    return DSV4_OK;
}

/* put the session at an image of position pos (checked), its history being
 * already right up to pos; logits: row of pos-1 or NULL */
void dsv4__session_apply(dsv4_session *s, int64_t pos, const uint8_t *img, const float *logits)
{
    s->edits++; /* restore, rewind, a cache entry: the tokens change (dsv4__session_edits) */
    dsv4__state_image_read(s->st, pos, img);
    s->mtp_n = 0;
    s->lg_n = 0;
    if (logits) {
        memcpy(s->logits, logits, (size_t)vocab(s) * 4);
        s->lg_first = pos - 1;
        s->lg_n = 1;
    }
}

/* re-feed history [from, to) in the calls recorded in cuts (one call when
 * batched); logits of the last row */
static dsv4_status refeed(dsv4_session *s, int64_t from, int64_t to, int batched)
{
    dsv4__err e = { 0, "" };
    for (int64_t a = from; a < to;) {
        int64_t b = a + 1;
        if (!batched)
            while (b < to && !cut_get(s->cuts, b)) b++;
        else
            b = to;
        int64_t n_mtp = 0;
        dsv4_status st = dsv4__forward(s->st, s->hist + a, b - a, s->logits, 1,
                                       s->has_mtp && !s->mtp_rows_off ? s->mtp : NULL, &n_mtp, &e);
        if (st) {
            snprintf(s->err, sizeof s->err, "dsv4_session_rewind: %s", e.msg);
            return st;
        }
        cut_set(s->cuts, a);
        s->lg_first = b - 1;
        s->lg_n = 1;
        s->mtp_n = s->mtp_rows_off ? 0 : n_mtp;
        s->mtp_first = a > 0 ? a - 1 : 0;
        a = b;
    }
    return DSV4_OK;
}

dsv4_status dsv4_session_rewind(dsv4_session *s, int64_t pos, uint32_t flags)
{
    if (!s) return DSV4_ERR_INVALID_ARGUMENT;
    s->err[0] = 0;
    int64_t cur = dsv4__state_pos(s->st);
    if (pos < 0 || pos > cur || (flags & ~(uint32_t)DSV4_REWIND_BATCHED)) {
        snprintf(s->err, sizeof s->err, "dsv4_session_rewind: position %lld outside [0, %lld] or unknown flags 0x%x",
                 (long long)pos, (long long)cur, (unsigned)flags);
        return DSV4_ERR_INVALID_ARGUMENT;
    }
    if (pos == cur) return DSV4_OK;
    s->edits++;
    int k = -1;
    for (int i = 0; i < s->n_ck; i++)
        if (s->ck[i].pos <= pos) k = i;
    int64_t from = k >= 0 ? s->ck[k].pos : 0;
    int batched = (flags & DSV4_REWIND_BATCHED) != 0;
    /* buffers first, so that running out of memory leaves the session as it was */
    int64_t longest = 1;
    for (int64_t a = from; a < pos;) {
        int64_t b = a + 1;
        while (b < pos && (batched || !cut_get(s->cuts, b))) b++;
        if (b - a > longest) longest = b - a;
        a = b;
    }
    if (dsv4__session_reserve(&s->logits, &s->lg_cap, 1, vocab(s)) ||
        (s->has_mtp && dsv4__session_reserve(&s->mtp, &s->mtp_cap, longest, vocab(s)))) {
        snprintf(s->err, sizeof s->err, "dsv4_session_rewind: out of memory");
        return DSV4_ERR_OUT_OF_MEMORY;
    }
    dsv4__session_drop_checkpoints(s, pos);
    if (k >= 0) {
        s->ck[k].used = ++s->tick;
        dsv4__session_apply(s, from, s->ck[k].img, s->ck[k].logits);
    } else {
        dsv4__state_reset(s->st);
        s->lg_n = 0;
        s->mtp_n = 0;
    }
    if (batched) cuts_truncate(s->cuts, from + 1, s->ctx->n_ctx);
    else cuts_truncate(s->cuts, pos, s->ctx->n_ctx);
    dsv4_status st = refeed(s, from, pos, batched);
    if (st) {
        /* cannot happen for want of memory (reserved above) */
        dsv4__state_reset(s->st);
        cuts_truncate(s->cuts, 0, s->ctx->n_ctx);
        dsv4__session_drop_checkpoints(s, 0);
        s->lg_n = 0;
        s->mtp_n = 0;
        return st == DSV4_ERR_OUT_OF_MEMORY ? DSV4_ERR_INTERNAL : st;
    }
    return DSV4_OK;
}

/* ---- undoing one position (the generator's speculative decoding) ------- */

dsv4_status dsv4__session_undo_mark(dsv4_session *s) { return dsv4__state_undo_mark(s->st); }

dsv4_status dsv4__session_undo(dsv4_session *s)
{
    dsv4_status st = dsv4__state_undo(s->st);
    if (st) return st;
    int64_t q = dsv4__state_pos(s->st);
    s->edits++;
    cuts_truncate(s->cuts, q, s->ctx->n_ctx);
    dsv4__session_drop_checkpoints(s, q);
    /* logits rows of positions < q stay; MTP rows whose next token is < q */
    if (s->lg_first >= q) s->lg_n = 0;
    else if (s->lg_first + s->lg_n > q) s->lg_n = q - s->lg_first;
    if (s->mtp_first >= q - 1) s->mtp_n = 0;
    else if (s->mtp_first + s->mtp_n > q - 1) s->mtp_n = q - 1 - s->mtp_first;
    return DSV4_OK;
}

int dsv4__session_rows_identical(const dsv4_session *s) { return dsv4__rt_rows_identical(s->ctx->rt); }
int dsv4__session_has_mtp(const dsv4_session *s) { return s->has_mtp; }
void dsv4__session_mtp_rows(dsv4_session *s, int on) { s->mtp_rows_off = !on; }

int64_t dsv4__session_max_batch(const dsv4_session *s) { return s->ctx->max_batch; }

/* ---- save / restore (format: lib/state/sfile.c) ------------------------ */

uint64_t dsv4__context_fingerprint(dsv4_context *ctx)
{
    if (!ctx->fingerprint) ctx->fingerprint = dsv4__model_fingerprint(ctx->model->ck);
    return ctx->fingerprint;
}

void dsv4__session_meta(dsv4_session *s, dsv4__sfile_meta *m)
{
    memset(m, 0, sizeof *m);
    dsv4__rt_opts o = dsv4__rt_options(s->ctx->rt);
    m->fingerprint = dsv4__context_fingerprint(s->ctx);
    m->numerics = o.numerics ? o.numerics : DSV4_NUMERICS_REFERENCE;
    m->revision = o.revision ? o.revision : DSV4_REVISION_CURRENT;
    m->n_ctx = s->ctx->n_ctx;
    m->mtp = s->has_mtp;
    m->vocab = vocab(s);
    m->lib_version = dsv4_version_number();
    /* a restore takes as many checkpoints as the session keeps, and at
     * least the default count (then drops what is above its limits) */
    m->max_ck = s->max_ck > DEFAULT_MAX_CK ? s->max_ck : DEFAULT_MAX_CK;
}

dsv4_status dsv4_session_save(dsv4_session *s, dsv4_write_fn fn, void *user, uint32_t flags)
{
    if (!s) return DSV4_ERR_INVALID_ARGUMENT;
    s->err[0] = 0;
    if (!fn || (flags & ~(uint32_t)(DSV4_SAVE_UNCOMPRESSED | DSV4_SAVE_NO_CHECKPOINTS))) {
        snprintf(s->err, sizeof s->err, "dsv4_session_save: %s", !fn ? "fn is NULL" : "unknown flags");
        return DSV4_ERR_INVALID_ARGUMENT;
    }
    dsv4__sfile_meta m;
    dsv4__session_meta(s, &m);
    dsv4__sfile_data d = { 0 };
    d.pos = dsv4__state_pos(s->st);
    d.tokens = s->hist;
    d.cuts = s->cuts;
    dsv4__err e = { 0, "" };
    /* the checkpoints, borrowed */
    int n_ck = flags & DSV4_SAVE_NO_CHECKPOINTS ? 0 : s->n_ck;
    if (n_ck > 0 && !(d.ck = dsv4__malloc((size_t)n_ck * sizeof *d.ck))) {
        snprintf(s->err, sizeof s->err, "dsv4_session_save: out of memory");
        return DSV4_ERR_OUT_OF_MEMORY;
    }
    for (int i = 0; i < n_ck; i++)
        d.ck[i] = (dsv4__sfile_ckpt){ s->ck[i].pos, s->ck[i].img, s->ck[i].img_bytes, s->ck[i].logits };
    d.n_ck = n_ck;
    dsv4_status st = dsv4__session_image(s, &d.img, &d.img_bytes, &d.logits);
    if (st) {
        dsv4__free(d.ck);
        snprintf(s->err, sizeof s->err, "dsv4_session_save: out of memory for the state");
        return st;
    }
    st = dsv4__sfile_write(&m, &d, !(flags & DSV4_SAVE_UNCOMPRESSED), fn, user, &e);
    dsv4__free(d.img);
    dsv4__free(d.logits);
    dsv4__free(d.ck);
    if (st) snprintf(s->err, sizeof s->err, "dsv4_session_save: %s", e.msg);
    return st;
}

int32_t dsv4__fd_write(void *user, const void *data, size_t len)
{
    int fd = *(int *)user;
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

dsv4_status dsv4_session_save_fd(dsv4_session *s, int fd, uint32_t flags)
{
    if (!s || fd < 0) return DSV4_ERR_INVALID_ARGUMENT;
    return dsv4_session_save(s, dsv4__fd_write, &fd, flags);
}

/* the caller's buffer: written in place while the bytes fit, then only
 * counted (no copy of the whole file in between, no allocation) */
typedef struct membuf { uint8_t *p; size_t n, cap; } membuf;

static int32_t write_mem(void *user, const void *data, size_t len)
{
    membuf *b = user;
    if (b->n <= b->cap && len <= b->cap - b->n) memcpy(b->p + b->n, data, len);
    b->n += len;
    return 0;
}

dsv4_status dsv4_session_save_buffer(dsv4_session *s, void *buf, size_t cap, size_t *len, uint32_t flags)
{
    if (!s || !len || (!buf && cap)) return DSV4_ERR_INVALID_ARGUMENT;
    *len = 0;
    membuf b = { buf, 0, cap };
    dsv4_status st = dsv4_session_save(s, write_mem, &b, flags);
    if (!st) {
        *len = b.n;
        if (cap < b.n) st = DSV4_ERR_BUFFER_TOO_SMALL; /* what was written is not a whole file */
    }
    return st;
}

/* the session at a parsed file: its checkpoints copied first (nothing
 * changes when that fails), then the rest, which cannot fail */
static dsv4_status restore_parsed(dsv4_session *s, const dsv4__sfile_data *d)
{
    dsv4__ckpt *ck = NULL;
    if (d->n_ck > 0) {
        ck = dsv4__calloc((size_t)d->n_ck, sizeof *ck);
        for (int i = 0; ck && i < d->n_ck; i++) {
            const dsv4__sfile_ckpt *f = &d->ck[i];
            ck[i].pos = f->pos;
            ck[i].img_bytes = f->img_bytes;
            ck[i].img = dsv4__malloc((size_t)(f->img_bytes > 0 ? f->img_bytes : 1));
            if (ck[i].img) memcpy(ck[i].img, f->img, (size_t)f->img_bytes);
            if (f->logits && (ck[i].logits = dsv4__malloc((size_t)vocab(s) * 4)))
                memcpy(ck[i].logits, f->logits, (size_t)vocab(s) * 4);
            if (!ck[i].img || (f->logits && !ck[i].logits)) {
                for (int j = 0; j <= i; j++) ck_free(&ck[j]);
                dsv4__free(ck);
                ck = NULL;
            }
        }
        if (!ck) {
            snprintf(s->err, sizeof s->err, "dsv4_session_restore: out of memory for the checkpoints");
            return DSV4_ERR_OUT_OF_MEMORY;
        }
    }
    memcpy(s->hist, d->tokens, (size_t)d->pos * sizeof *s->hist);
    memset(s->cuts, 0, (size_t)s->ctx->n_ctx / 8 + 1);
    memcpy(s->cuts, d->cuts, (size_t)(d->pos + 7) / 8);
    dsv4__session_drop_checkpoints(s, -1);
    dsv4__session_apply(s, d->pos, d->img, d->logits);
    dsv4__free(s->ck);
    s->ck = ck;
    s->n_ck = d->n_ck;
    for (int i = 0; i < s->n_ck; i++) s->ck[i].used = ++s->tick;
    enforce_limits(s, -1);
    return DSV4_OK;
}

dsv4_status dsv4_session_restore(dsv4_session *s, dsv4_read_fn fn, void *user)
{
    if (!s) return DSV4_ERR_INVALID_ARGUMENT;
    s->err[0] = 0;
    if (!fn) {
        snprintf(s->err, sizeof s->err, "dsv4_session_restore: fn is NULL");
        return DSV4_ERR_INVALID_ARGUMENT;
    }
    dsv4__sfile_meta m;
    dsv4__session_meta(s, &m);
    /* the logits buffer first: nothing may fail once the session changes */
    if (dsv4__session_reserve(&s->logits, &s->lg_cap, 1, vocab(s))) {
        snprintf(s->err, sizeof s->err, "dsv4_session_restore: out of memory");
        return DSV4_ERR_OUT_OF_MEMORY;
    }
    dsv4__sfile_data d = { 0 };
    dsv4__err e = { 0, "" };
    dsv4_status st = dsv4__sfile_read(&m, s->ctx->rt, fn, user, &d, &e);
    if (st) {
        snprintf(s->err, sizeof s->err, "dsv4_session_restore: %s", e.msg);
        return st;
    }
    st = restore_parsed(s, &d);
    dsv4__sfile_data_free(&d);
    return st;
}

int64_t dsv4__fd_read(void *user, void *dst, size_t len)
{
    int fd = *(int *)user;
    for (;;) {
        ssize_t r = read(fd, dst, len);
        if (r < 0 && errno == EINTR) continue;
        return r;
    }
}

dsv4_status dsv4_session_restore_fd(dsv4_session *s, int fd)
{
    if (!s || fd < 0) return DSV4_ERR_INVALID_ARGUMENT;
    return dsv4_session_restore(s, dsv4__fd_read, &fd);
}

typedef struct memsrc { const uint8_t *p; size_t n, off; } memsrc;

static int64_t read_mem(void *user, void *dst, size_t len)
{
    memsrc *m = user;
    size_t k = m->n - m->off < len ? m->n - m->off : len;
    memcpy(dst, m->p + m->off, k);
    m->off += k;
    return (int64_t)k;
}

dsv4_status dsv4_session_restore_buffer(dsv4_session *s, const void *buf, size_t len)
{
    if (!s || (!buf && len)) return DSV4_ERR_INVALID_ARGUMENT;
    memsrc m = { buf, len, 0 };
    return dsv4_session_restore(s, read_mem, &m);
}
