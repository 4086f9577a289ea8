/*
 * lib/graph/kv.c — a session's decode state (spec §6): per layer the window
 * ring of raw KV vectors, the compressors' running states, the compressed
 * entries and indexer keys, stored compactly in reference numerics (§6.1);
 * plus the ring store node of the graph.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "forward_int.h"
#include "ops.h"

/* ---- session state -------------------------------------------------------- */

void dsv4__state_free(dsv4__state *s)
{
    if (!s) return;
    int nl = s->rt->c->n_layers + 1;
    for (int l = 0; s->L && l < nl; l++) {
        lstate *L = &s->L[l];
        dsv4__free_aligned(L->ring);
        dsv4__free_aligned(L->ckv); dsv4__free_aligned(L->csc);
        dsv4__free_aligned(L->ikv); dsv4__free_aligned(L->isc);
        dsv4__free_aligned(L->cache); dsv4__free_aligned(L->icache);
    }
    dsv4__free(s->L);
    dsv4__free_aligned(s->last_x);
    dsv4__free_aligned(s->prev_x);
    dsv4__free(s->undo);
    dsv4__free(s);
}


void dsv4__state_reset(dsv4__state *s)
{
    const dsv4__config *c = s->rt->c;
    int nl = c->n_layers + 1;
    for (int l = 0; l < nl; l++) {
        lstate *L = &s->L[l];
        int r = c->compress_ratios[l];
        L->n = 0;
        if (r > 0 && L->ckv) {
            int64_t n = (int64_t)comp_rows(r) * (r == 4 ? 2 : 1) * c->head_dim;
            for (int64_t i = 0; i < n; i++) { L->ckv[i] = 0.0f; L->csc[i] = -INFINITY; }
        }
        if (r == 4 && L->ikv) {
            int64_t n = 8 * 2 * (int64_t)c->index_head_dim;
            for (int64_t i = 0; i < n; i++) { L->ikv[i] = 0.0f; L->isc[i] = -INFINITY; }
        }
    }
    s->pos = 0;
    s->undo_pos = -1;
}

dsv4_status dsv4__state_create(dsv4__rt *rt, int with_mtp, dsv4__state **out, dsv4__err *e)
{
    *out = NULL;
    const dsv4__config *c = rt->c;
    dsv4__state *s = dsv4__calloc(1, sizeof *s);
    if (!s) return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "session: out of memory");
    s->rt = rt;
    s->mtp = with_mtp;
    int nl = c->n_layers + 1;
    s->L = dsv4__calloc((size_t)nl, sizeof *s->L);
    int64_t hd = c->head_dim, ihd = c->index_head_dim, total = 0;
    if (!s->L) goto oom;
#define AL(p, n) do { int64_t n_ = (n); total += n_; if (!((p) = dsv4__malloc_aligned((size_t)(n_ > 0 ? n_ : 1)))) goto oom; } while (0)
    for (int l = 0; l < nl; l++) {
        if (l == c->n_layers && !with_mtp) continue;
        lstate *L = &s->L[l];
        int r = c->compress_ratios[l];
        AL(L->ring, (int64_t)c->window * hd * 4);
        if (r > 0) {
            int64_t w = (r == 4 ? 2 : 1) * hd;
            AL(L->ckv, comp_rows(r) * w * 4);
            AL(L->csc, comp_rows(r) * w * 4);
            L->cap = rt->o.n_ctx / r;
            AL(L->cache, L->cap * dsv4__rt_entry_bytes(rt, 0));
        }
        if (r == 4) {
            AL(L->ikv, 8 * 2 * ihd * 4);
            AL(L->isc, 8 * 2 * ihd * 4);
            AL(L->icache, L->cap * dsv4__rt_entry_bytes(rt, 1));
        }
    }
    AL(s->last_x, (int64_t)c->hc_mult * c->dim * 4);
    AL(s->prev_x, (int64_t)c->hc_mult * c->dim * 4);
#undef AL
    s->reserved = total;
    dsv4__state_reset(s);
    *out = s;
    return DSV4_OK;
oom:
    dsv4__state_free(s);
    return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "session: out of memory for a %lld-token context",
                      (long long)rt->o.n_ctx);
}

int64_t dsv4__state_pos(const dsv4__state *s) { return s->pos; }

void dsv4__state_memory(const dsv4__state *s, int64_t *reserved, int64_t *used)
{
    const dsv4__config *c = s->rt->c;
    int64_t u = 0;
    for (int l = 0; l < c->n_layers; l++) {
        int r = c->compress_ratios[l];
        if (r > 0) u += s->L[l].n * dsv4__rt_entry_bytes(s->rt, 0);
        if (r == 4) u += s->L[l].n * dsv4__rt_entry_bytes(s->rt, 1);
    }
    if (reserved) *reserved = s->reserved;
    if (used) *used = u;
}

/* ---- compact entry storage (spec §6.1) ------------------------------------ */

int64_t dsv4__kv_entry_bytes(const dsv4__config *c, int indexer, int compact)
{
    int64_t ihd = c->index_head_dim, nope = c->head_dim - c->rope_head_dim;
    if (indexer) return compact ? ihd / 2 + ihd / 32 : ihd * 4;
    return compact ? nope + nope / 64 + (int64_t)c->rope_head_dim * 4 : (int64_t)c->head_dim * 4;
}

int64_t dsv4__rt_entry_bytes(const dsv4__rt *rt, int indexer)
{
    return dsv4__kv_entry_bytes(rt->c, indexer, indexer ? rt->fp4_sim : rt->compact);
}

/* FP8 simulation of x[0..n) per 64-block (§4.7); with dst, also store codes
 * and E8M0 exponents there (n bytes then n/64 bytes) */
void dsv4__kv_fp8(float *x, int64_t n, uint8_t *dst)
{
    float q[64];
    int8_t ex;
    for (int64_t b = 0; b < n; b += 64) {
        dsv4k_act_quant_fp8_ref(x + b, 64, 64, q, &ex);
        float s = dsv4k_pow2(ex);
        for (int i = 0; i < 64; i++) {
            uint8_t code;
            dsv4k_e4m3_round(q[i], &code);
            if (dst) dst[b + i] = code;
            x[b + i] = q[i] * s;
        }
        if (dst) dst[n + b / 64] = (uint8_t)(ex + 127);
    }
}

/* FP4 simulation of x[0..n) per 32-block (§4.8); with dst, packed codes
 * (n/2 bytes) then E8M0 exponents (n/32 bytes) */
void dsv4__key_fp4(float *x, int64_t n, uint8_t *dst)
{
    const float c6 = 1.0f / 6.0f, floor_ = 6.0f * dsv4k_pow2(-126);
    for (int64_t b = 0; b < n; b += 32) {
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b + i]));
        amax = fmaxf(amax, floor_);
        int ex = dsv4k_log2_ceil(amax * c6);
        float s = dsv4k_pow2(ex), inv = dsv4k_pow2(-ex);
        for (int i = 0; i < 32; i++) {
            uint8_t code;
            float v = x[b + i] * inv;
            v = v > 6.0f ? 6.0f : v < -6.0f ? -6.0f : v;
            x[b + i] = dsv4k_e2m1_round(v, &code) * s;
            if (dst) {
                if (i & 1) dst[(b + i) / 2] |= (uint8_t)(code << 4);
                else dst[(b + i) / 2] = code;
            }
        }
        if (dst) dst[n / 2 + b / 32] = (uint8_t)(ex + 127);
    }
}

const float *dsv4__entry_get(const dsv4__rt *rt, const lstate *L, int64_t j, float *buf)
{
    const dsv4__config *c = rt->c;
    int64_t hd = c->head_dim;
    if (!rt->compact) return (const float *)(L->cache + j * hd * 4);
    int64_t nope = hd - c->rope_head_dim;
    const uint8_t *p = L->cache + j * dsv4__rt_entry_bytes(rt, 0);
    for (int64_t b = 0; b < nope; b += 64) {
        float s = dsv4k_pow2((int)p[nope + b / 64] - 127);
        for (int i = 0; i < 64; i++) buf[b + i] = dsv4k_lut_e4m3[p[b + i]] * s;
    }
    memcpy(buf + nope, p + nope + nope / 64, (size_t)c->rope_head_dim * 4);
    return buf;
}

void dsv4__entry_put(const dsv4__rt *rt, lstate *L, int64_t j, float *v)
{
    const dsv4__config *c = rt->c;
    int64_t hd = c->head_dim, nope = hd - c->rope_head_dim;
    if (!rt->compact) {
        if (rt->kv_sim) dsv4__kv_fp8(v, nope, NULL);
        memcpy(L->cache + j * hd * 4, v, (size_t)hd * 4);
        return;
    }
    uint8_t *p = L->cache + j * dsv4__rt_entry_bytes(rt, 0);
    dsv4__kv_fp8(v, nope, p);
    memcpy(p + nope + nope / 64, v + nope, (size_t)c->rope_head_dim * 4);
}

const float *dsv4__key_get(const dsv4__rt *rt, const lstate *L, int64_t j, float *buf)
{
    int64_t ihd = rt->c->index_head_dim;
    if (!rt->fp4_sim) return (const float *)(L->icache + j * ihd * 4);
    dsv4k_key_fp4_decode(L->icache + j * dsv4__rt_entry_bytes(rt, 1), ihd, buf, rt->simd);
    return buf;
}

void dsv4__key_put(const dsv4__rt *rt, lstate *L, int64_t j, float *v)
{
    int64_t ihd = rt->c->index_head_dim;
    if (!rt->fp4_sim) { memcpy(L->icache + j * ihd * 4, v, (size_t)ihd * 4); return; }
    dsv4__key_fp4(v, ihd, L->icache + j * dsv4__rt_entry_bytes(rt, 1));
}

void dsv4__state_fill_synthetic(dsv4__state *s, int64_t pos, uint32_t seed)
{
    dsv4__rt *rt = s->rt;
    const dsv4__config *c = rt->c;
    int64_t hd = c->head_dim, ihd = c->index_head_dim, W = c->window;
    if (pos > rt->o.n_ctx) pos = rt->o.n_ctx;
    uint32_t st = seed * 2654435761u + 1;
#define RND() (st = st * 1664525u + 1013904223u, st >> 8)
#define RF() ((float)(RND() & 0xffff) / 32768.0f - 1.0f)
    float *v = dsv4__malloc(sizeof(float) * (size_t)(hd > ihd ? hd : ihd));
    for (int l = 0; v && l < c->n_layers; l++) {
        lstate *L = &s->L[l];
        int r = c->compress_ratios[l];
        for (int64_t i = 0; i < W * hd; i++) L->ring[i] = RF();
        if (r <= 0) continue;
        int64_t n = pos / r < L->cap ? pos / r : L->cap;
        for (int64_t j = 0; j < n; j++) {
            for (int64_t i = 0; i < hd; i++) v[i] = RF();
            dsv4__entry_put(rt, L, j, v);
            if (r == 4) {
                for (int64_t i = 0; i < ihd; i++) v[i] = RF();
                dsv4__key_put(rt, L, j, v);
            }
        }
        L->n = n;
    }
#undef RND
#undef RF
    dsv4__free(v);
    for (int64_t i = 0; i < (int64_t)c->hc_mult * c->dim; i++) s->last_x[i] = 0.0f;
    s->pos = pos;
    s->undo_pos = -1;
}

/* ---- the window ring --------------------------------------------------- */

/* the ring keeps the last `window` raw KV vectors of each session */
void dsv4__op_ring(dsv4g_run *r, const dsv4g_node *n)
{
    dsv4__rt *rt = RT(r);
    const rowset *rs = &rt->rs[n->i[1]];
    int64_t hd = rt->c->head_dim, W = rt->c->window;
    const float *KV = dsv4g_f32(r, n->in[0]);
    for (int i = 0; i < rs->n_sp; i++) {
        const span *sp = &rs->sp[i];
        lstate *ls = span_layer(sp, n->i[0]);
        for (int64_t t = sp->n > W ? sp->n - W : 0; t < sp->n; t++)
            memcpy(ls->ring + ((sp->p0 + t) % W) * hd, KV + (sp->row0 + t) * hd, (size_t)hd * 4);
    }
}

/* ---- images: the exact state at its position, compactly (docs/sessions.md) */

enum { SEG_F32, SEG_F32_OR_NEGINF, SEG_ENTRIES, SEG_KEYS };

/* visit the segments of the image of a state of runtime rt (MTP block when
 * mtp) at position pos, in image order; L NULL to count bytes only.
 * fn returns non-zero to stop; walk returns the image bytes, or -1 when stopped */
typedef int (*seg_fn)(void *u, int kind, uint8_t *p, int64_t bytes, int64_t count);
static int64_t walk(const dsv4__rt *rt, int mtp, int64_t pos, lstate *Ls, float *last_x, seg_fn fn, void *u)
{
    const dsv4__config *c = rt->c;
    int64_t hd = c->head_dim, ihd = c->index_head_dim, W = c->window, total = 0;
    int nl = c->n_layers + (mtp ? 1 : 0);
#define SEG(kind, ptr, bytes, count) do { \
        int64_t b_ = (bytes); \
        if (fn && fn(u, (kind), (uint8_t *)(ptr), b_, (count))) return -1; \
        total += b_; \
    } while (0)
    for (int l = 0; l < nl; l++) {
        lstate *L = Ls ? &Ls[l] : NULL;
        int r = c->compress_ratios[l];
        /* the MTP block's rows run one behind: row q needs the token at q+1 */
        int64_t valid = l == c->n_layers ? (pos > 0 ? pos - 1 : 0) : pos, rows = valid < W ? valid : W;
        SEG(SEG_F32, L ? L->ring : NULL, rows * hd * 4, rows * hd);
        if (r <= 0) continue;
        int64_t n = pos / r, w = (int64_t)(r == 4 ? 2 : 1) * hd * comp_rows(r);
        SEG(SEG_F32, L ? L->ckv : NULL, w * 4, w);
        SEG(SEG_F32_OR_NEGINF, L ? L->csc : NULL, w * 4, w);
        SEG(SEG_ENTRIES, L ? L->cache : NULL, n * dsv4__rt_entry_bytes(rt, 0), n);
        if (r != 4) continue;
        int64_t iw = 8 * 2 * ihd;
        SEG(SEG_F32, L ? L->ikv : NULL, iw * 4, iw);
        SEG(SEG_F32_OR_NEGINF, L ? L->isc : NULL, iw * 4, iw);
        SEG(SEG_KEYS, L ? L->icache : NULL, n * dsv4__rt_entry_bytes(rt, 1), n);
    }
    if (mtp && pos > 0) SEG(SEG_F32, last_x, (int64_t)c->hc_mult * c->dim * 4, (int64_t)c->hc_mult * c->dim);
#undef SEG
    return total;
}

int64_t dsv4__state_image_bytes(const dsv4__rt *rt, int mtp, int64_t pos)
{
    return walk(rt, mtp, pos, NULL, NULL, NULL, NULL);
}

int dsv4__state_mtp(const dsv4__state *s) { return s->mtp; }
const dsv4__rt *dsv4__state_rt(const dsv4__state *s) { return s->rt; }

typedef struct img_cursor { uint8_t *p; int out; } img_cursor;

static int seg_copy(void *u, int kind, uint8_t *p, int64_t bytes, int64_t count)
{
    img_cursor *cu = u;
    (void)kind; (void)count;
    if (bytes == 0) return 0;
    if (cu->out) memcpy(cu->p, p, (size_t)bytes);
    else memcpy(p, cu->p, (size_t)bytes);
    cu->p += bytes;
    return 0;
}

void dsv4__state_image_write(const dsv4__state *s, uint8_t *dst)
{
    img_cursor cu = { dst, 1 };
    walk(s->rt, s->mtp, s->pos, s->L, s->last_x, seg_copy, &cu);
}

void dsv4__state_image_read(dsv4__state *s, int64_t pos, const uint8_t *img)
{
    /* positions beyond pos keep stale data: nothing reads a ring row, a
     * compressed entry or a key that the position has not written again */
    img_cursor cu = { (uint8_t *)img, 0 };
    walk(s->rt, s->mtp, pos, s->L, s->last_x, seg_copy, &cu);
    const dsv4__config *c = s->rt->c;
    for (int l = 0; l < c->n_layers; l++) {
        int r = c->compress_ratios[l];
        if (r > 0) s->L[l].n = pos / r;
    }
    s->pos = pos;
    s->undo_pos = -1;
}

/* ---- undoing one position (speculative decoding) ------------------------- */

/* Position q = mark + 1 writes, in each trunk layer: ring row q % W, the
 * running-state slot of q in each compressor and, when q ends a block of a
 * ratio-4 compressor, its shift of slots 4..7 to 0..3 (slots 0..3 held the
 * block before, which no position between the mark and q changes); in the
 * MTP block, ring row (q-1) % W. The buffer keeps, per layer: the ring row,
 * then for a compressor 5 slots (q's, then 0..3) of kv and of scores, for
 * the indexer's the same. */
static int64_t undo_floats(const dsv4__config *c, int l)
{
    int r = c->compress_ratios[l];
    int64_t n = c->head_dim;
    if (r > 0) n += 2 * 5 * (r == 4 ? 2 : 1) * (int64_t)c->head_dim;
    if (r == 4) n += 2 * 5 * 2 * (int64_t)c->index_head_dim;
    return n;
}

/* copy compressor slots: slot sl and (with four) slots 0..3, between the
 * state (kv, sc) and the saved area u (to_state: restore) */
static float *undo_slots(float *u, float *kv, float *sc, int64_t width, int sl, int four, int to_state)
{
    int slots[5] = { sl, 0, 1, 2, 3 };
    int ns = four ? 5 : 1;
    for (int k = 0; k < 2; k++) {
        float *a = k ? sc : kv;
        for (int i = 0; i < ns; i++) {
            float *st = a + (int64_t)slots[i] * width, *sv = u + i * width;
            if (to_state) memcpy(st, sv, (size_t)width * 4);
            else memcpy(sv, st, (size_t)width * 4);
        }
        u += 5 * width;
    }
    return u;
}

static void undo_copy(dsv4__state *s, int64_t q, int to_state)
{
    const dsv4__config *c = s->rt->c;
    int64_t hd = c->head_dim, W = c->window;
    float *u = s->undo;
    for (int l = 0; l < c->n_layers + (s->mtp ? 1 : 0); l++) {
        lstate *L = &s->L[l];
        int r = c->compress_ratios[l];
        float *base = u;
        int64_t row = l == c->n_layers ? (q - 1) % W : q % W;
        if (to_state) memcpy(L->ring + row * hd, u, (size_t)hd * 4);
        else memcpy(u, L->ring + row * hd, (size_t)hd * 4);
        u += hd;
        if (r > 0 && l < c->n_layers) {
            int sl = r == 4 ? 4 + (int)(q % 4) : (int)(q % r);
            /* restoring slots 0..3 only when q's shift overwrote them */
            int four = r == 4 && (!to_state || (q + 1) % 4 == 0);
            u = undo_slots(u, L->ckv, L->csc, (r == 4 ? 2 : 1) * hd, sl, four, to_state);
            if (r == 4) u = undo_slots(u, L->ikv, L->isc, 2 * c->index_head_dim, sl, four, to_state);
        }
        u = base + undo_floats(c, l);
    }
}

dsv4_status dsv4__state_undo_mark(dsv4__state *s)
{
    const dsv4__config *c = s->rt->c;
    s->undo_pos = -1;
    if (!s->mtp || s->pos < 1) return DSV4_ERR_NOT_AVAILABLE;
    if (!s->undo) {
        int64_t n = 0;
        for (int l = 0; l < c->n_layers + 1; l++) n += undo_floats(c, l);
        if (!(s->undo = dsv4__malloc((size_t)n * 4))) return DSV4_ERR_OUT_OF_MEMORY;
    }
    undo_copy(s, s->pos + 1, 0);
    s->undo_pos = s->pos;
    return DSV4_OK;
}

dsv4_status dsv4__state_undo(dsv4__state *s)
{
    const dsv4__config *c = s->rt->c;
    if (s->undo_pos < 1 || s->pos != s->undo_pos + 2) return DSV4_ERR_INVALID_ARGUMENT;
    int64_t q = s->pos - 1;
    undo_copy(s, q, 1);
    for (int l = 0; l < c->n_layers; l++) {
        int r = c->compress_ratios[l];
        if (r > 0) s->L[l].n = q / r < s->L[l].cap ? q / r : s->L[l].cap;
    }
    memcpy(s->last_x, s->prev_x, (size_t)c->hc_mult * c->dim * 4);
    s->pos = q;
    s->undo_pos = -1;
    return DSV4_OK;
}

/* checking an image: every float finite (the compressors' scores may be
 * -inf), no NaN code among the FP8 entries, no NaN exponent */
typedef struct img_check {
    const dsv4__rt *rt;
    const uint8_t *p;
    int64_t off;
    int bad;
    const char *what;
} img_check;

static int f32_ok(const uint8_t *p, int64_t count, int neginf)
{
    for (int64_t i = 0; i < count; i++) {
        float v;
        memcpy(&v, p + i * 4, 4);
        if (!isfinite(v) && !(neginf && v == -INFINITY)) return 0;
    }
    return 1;
}

static int seg_check(void *u, int kind, uint8_t *unused, int64_t bytes, int64_t count)
{
    img_check *ck = u;
    const dsv4__config *c = ck->rt->c;
    const uint8_t *p = ck->p + ck->off;
    (void)unused;
    ck->off += bytes;
    switch (kind) {
    case SEG_F32:
    case SEG_F32_OR_NEGINF:
        if (!f32_ok(p, count, kind == SEG_F32_OR_NEGINF)) { ck->what = "a value that is not finite"; return ck->bad = 1; }
        return 0;
    case SEG_ENTRIES: {
        int64_t eb = dsv4__rt_entry_bytes(ck->rt, 0), hd = c->head_dim, nope = hd - c->rope_head_dim;
        for (int64_t j = 0; j < count; j++) {
            const uint8_t *e = p + j * eb;
            if (!ck->rt->compact) {
                if (!f32_ok(e, hd, 0)) { ck->what = "a compressed entry that is not finite"; return ck->bad = 1; }
                continue;
            }
            for (int64_t i = 0; i < nope; i++)
                if ((e[i] & 0x7f) == 0x7f) { ck->what = "a NaN FP8 code in a compressed entry"; return ck->bad = 1; }
            for (int64_t i = 0; i < nope / 64; i++)
                if (e[nope + i] == 0xff) { ck->what = "a NaN scale in a compressed entry"; return ck->bad = 1; }
            if (!f32_ok(e + nope + nope / 64, c->rope_head_dim, 0)) {
                ck->what = "a compressed entry that is not finite";
                return ck->bad = 1;
            }
        }
        return 0;
    }
    case SEG_KEYS: {
        int64_t kb = dsv4__rt_entry_bytes(ck->rt, 1), ihd = c->index_head_dim;
        for (int64_t j = 0; j < count; j++) {
            const uint8_t *k = p + j * kb;
            if (!ck->rt->fp4_sim) {
                if (!f32_ok(k, ihd, 0)) { ck->what = "an indexer key that is not finite"; return ck->bad = 1; }
                continue;
            }
            for (int64_t i = 0; i < ihd / 32; i++)
                if (k[ihd / 2 + i] == 0xff) { ck->what = "a NaN scale in an indexer key"; return ck->bad = 1; }
        }
        return 0;
    }
    }
    return 0;
}

dsv4_status dsv4__state_image_check(const dsv4__rt *rt, int mtp, int64_t pos, const uint8_t *img, int64_t n,
                                    dsv4__err *e)
{
    if (pos < 0 || pos > rt->o.n_ctx)
        return dsv4__fail(e, DSV4_ERR_CONTEXT_FULL, "state at position %lld does not fit a context of %lld tokens",
                          (long long)pos, (long long)rt->o.n_ctx);
    int64_t want = dsv4__state_image_bytes(rt, mtp, pos);
    if (n != want)
        return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "state image of %lld bytes, %lld expected at position %lld",
                          (long long)n, (long long)want, (long long)pos);
    img_check ck = { rt, img, 0, 0, NULL };
    walk(rt, mtp, pos, NULL, NULL, seg_check, &ck);
    if (ck.bad) return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "state image holds %s", ck.what);
    return DSV4_OK;
}
