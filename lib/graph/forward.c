/*
 * lib/graph/forward.c — the DeepSeek-V4 forward pass (see forward.h).
 *
 * A chunk of T tokens of one session runs layer by layer: the projections
 * of all T tokens are single products (dsv4k_linear), the compressors then
 * consume the tokens in order (emitting compressed entries into the
 * session's cache), and attention runs for all T queries in parallel, each
 * seeing its causal window (raw KV of this chunk or the ring of earlier
 * positions) and the compressed entries complete at its position. The ring
 * is updated once the chunk's attention is done. Decode is the T = 1 case of
 * the same code, so prefill, chunked prefill and decode agree.
 *
 * Numerics (spec §4): `float` keeps every activation in f32 with no
 * quantisation; `reference` quantises activations to FP8 before FP8/FP4
 * products, rounds KV to FP8 (current revision), applies the indexer's FP4
 * simulation and stores compressed entries compactly (lossless, §6.1):
 * e4m3 codes + E8M0 exponents for the non-RoPE dims, the RoPE dims as f32
 * (intermediates are f32 here, so bf16 storage of them would be lossy),
 * indexer keys as packed e2m1 + E8M0.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "forward.h"
#include "linear.h"
#include "ops.h"

/* ---- runtime ------------------------------------------------------------ */

typedef struct thread_buf {
    const float **kv;      /* window + compressed vectors of one query */
    float *dec;            /* decoded compressed entries [max_comp][hd] */
    float *scores;         /* indexer scores [n_ctx/4 + 1] */
    int64_t *idx;          /* [n_ctx/4 + 1] */
    float *key;            /* one decoded indexer key */
} thread_buf;

struct dsv4__rt {
    const struct dsv4_model *m;
    const dsv4__config *c;
    const struct dsv4__weights *w;
    dsv4__rt_opts o;
    int aq, kv_sim, fp4_sim, shared_clamp, compact;
    int hc;
    dsv4k_pool *pool;
    dsv4k_linear_ctx *lin;
    int64_t max_comp;      /* most compressed entries one query attends */
    thread_buf *tb;
    /* activations of one chunk (B = max_batch rows) */
    float *X, *X2, *U, *XN, *POST, *COMB, *AO;
    float *QL, *Q, *KV, *O, *Z;
    float *CV, *CG, *IV, *IG, *QI, *WT;
    float *GL, *SELW, *XE, *GE, *UE, *OE, *ACC;
    int32_t *SEL, *ROWS;
    float *EP, *HN, *HP, *YH, *TMP, *GIN, *GOUT;
    int32_t *DBG;          /* [B][index_topk] selections, when debugging */
    dsv4__debug_fn debug;
    void *debug_user;
    void **allocs;
    int n_allocs;
};

typedef struct lstate {
    float *ring;           /* [window][hd] */
    float *ckv, *csc;      /* main compressor state [rows][coff·d] */
    float *ikv, *isc;      /* indexer compressor state [8][2·ihd] */
    uint8_t *cache;        /* compressed entries */
    uint8_t *icache;       /* indexer keys */
    int64_t cap;           /* entries the caches hold */
    int64_t n;             /* entries emitted */
} lstate;

struct dsv4__state {
    dsv4__rt *rt;
    lstate *L;             /* n_layers (+1 for MTP) */
    int mtp;
    int64_t pos;           /* tokens fed */
    float *last_x;         /* trunk streams at pos-1 (MTP input) */
    int64_t reserved;
};

static void *rt_alloc(dsv4__rt *rt, int64_t n_bytes)
{
    void *p = dsv4__malloc_aligned((size_t)(n_bytes > 0 ? n_bytes : 1));
    if (!p) return NULL;
    void **a = dsv4__realloc(rt->allocs, (size_t)(rt->n_allocs + 1) * sizeof *a);
    if (!a) { dsv4__free_aligned(p); return NULL; }
    rt->allocs = a;
    rt->allocs[rt->n_allocs++] = p;
    return p;
}

void dsv4__rt_free(dsv4__rt *rt)
{
    if (!rt) return;
    dsv4k_linear_ctx_free(rt->lin);
    dsv4k_pool_free(rt->pool);
    for (int i = 0; i < rt->n_allocs; i++) dsv4__free_aligned(rt->allocs[i]);
    dsv4__free(rt->allocs);
    dsv4__free(rt);
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

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

dsv4_status dsv4__rt_create(const struct dsv4_model *m, const dsv4__rt_opts *o, dsv4__rt **out, dsv4__err *e)
{
    *out = NULL;
    if (!m->weights) return dsv4__fail(e, DSV4_ERR_INTERNAL, "model has no bound weights");
    dsv4__rt *rt = dsv4__calloc(1, sizeof *rt);
    if (!rt) return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "context: out of memory");
    const dsv4__config *c = &m->cfg;
    rt->m = m;
    rt->c = c;
    rt->w = m->weights;
    rt->o = *o;
    rt->aq = o->numerics == DSV4_NUMERICS_REFERENCE;
    rt->fp4_sim = rt->aq;
    rt->kv_sim = rt->aq && o->revision == DSV4_REVISION_CURRENT;
    rt->compact = rt->kv_sim;
    rt->shared_clamp = o->revision == DSV4_REVISION_CURRENT;
    rt->hc = c->hc_mult;
    int64_t B = o->max_batch, hc = c->hc_mult, dim = c->dim, hd = c->head_dim, H = c->n_heads;
    int64_t ihd = c->index_head_dim, ih = c->index_n_heads, inter = c->moe_inter_dim, E = c->n_routed_experts;
    int64_t K = c->n_active_experts, qlr = c->q_lora_rank, oz = (int64_t)c->o_groups * c->o_lora_rank;
    rt->pool = dsv4k_pool_create(o->threads);
    int64_t max_k = max64(max64(max64(dim, qlr), max64(oz, inter)), H * hd / c->o_groups);
    rt->lin = rt->pool ? dsv4k_linear_ctx_create(rt->pool, max_k, B * hc) : NULL;
    if (!rt->lin) goto oom;
    rt->max_comp = 0;
    for (int l = 0; l <= c->n_layers; l++) {
        int r = c->compress_ratios[l];
        if (r == 4) rt->max_comp = max64(rt->max_comp, c->index_topk);
        else if (r > 0) rt->max_comp = max64(rt->max_comp, o->n_ctx / r + 1);
    }
    int nt = dsv4k_pool_threads(rt->pool);
    rt->tb = rt_alloc(rt, (int64_t)nt * (int64_t)sizeof *rt->tb);
    if (!rt->tb) goto oom;
    for (int t = 0; t < nt; t++) {
        thread_buf *b = &rt->tb[t];
        b->kv = rt_alloc(rt, (c->window + rt->max_comp) * (int64_t)sizeof(float *));
        b->dec = rt_alloc(rt, rt->max_comp * hd * 4);
        b->scores = rt_alloc(rt, (o->n_ctx / 4 + 1) * 4);
        b->idx = rt_alloc(rt, (o->n_ctx / 4 + 1) * 8);
        b->key = rt_alloc(rt, ihd * 4);
        if (!b->kv || !b->dec || !b->scores || !b->idx || !b->key) goto oom;
    }
#define BUF(name, n) if (!(rt->name = rt_alloc(rt, (int64_t)(n) * 4))) goto oom
    BUF(X, B * hc * dim); BUF(X2, B * hc * dim); BUF(U, B * dim); BUF(XN, B * dim);
    BUF(POST, B * hc); BUF(COMB, B * hc * hc); BUF(AO, B * dim);
    BUF(QL, B * qlr); BUF(Q, B * H * hd); BUF(KV, B * hd); BUF(O, B * H * hd); BUF(Z, B * oz);
    BUF(CV, B * 2 * hd); BUF(CG, B * 2 * hd); BUF(IV, B * 2 * ihd); BUF(IG, B * 2 * ihd);
    BUF(QI, B * ih * ihd); BUF(WT, B * ih);
    BUF(GL, B * E); BUF(SELW, B * K); BUF(XE, B * dim); BUF(GE, B * inter); BUF(UE, B * inter);
    BUF(OE, B * dim); BUF(ACC, B * dim); BUF(SEL, B * K); BUF(ROWS, B * K);
    BUF(EP, B * dim); BUF(HN, B * hc * dim); BUF(HP, B * hc * dim); BUF(YH, B * dim); BUF(TMP, B * max64(dim, K));
    if (!(rt->DBG = rt_alloc(rt, B * c->index_topk * 4))) goto oom;
    BUF(GIN, B * (H * hd / c->o_groups)); BUF(GOUT, B * c->o_lora_rank);
#undef BUF
    *out = rt;
    return DSV4_OK;
oom:
    dsv4__rt_free(rt);
    return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "context: out of memory for %d-token scratch", o->max_batch);
}

void dsv4__rt_set_debug(dsv4__rt *rt, dsv4__debug_fn fn, void *user)
{
    rt->debug = fn;
    rt->debug_user = user;
}

static int layer_id(const dsv4__rt *rt, const dsv4__layer_w *lw)
{
    return lw->is_mtp ? rt->c->n_layers : (int)(lw - rt->w->layers);
}

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
    dsv4__free(s);
}

static int comp_rows(int ratio) { return ratio == 4 ? 8 : ratio; }

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

static const float *entry_get(const dsv4__rt *rt, const lstate *L, int64_t j, float *buf)
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

static void entry_put(const dsv4__rt *rt, lstate *L, int64_t j, float *v)
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

static const float *key_get(const dsv4__rt *rt, const lstate *L, int64_t j, float *buf)
{
    int64_t ihd = rt->c->index_head_dim;
    if (!rt->fp4_sim) return (const float *)(L->icache + j * ihd * 4);
    const uint8_t *p = L->icache + j * dsv4__rt_entry_bytes(rt, 1);
    for (int64_t b = 0; b < ihd; b += 32) {
        float s = dsv4k_pow2((int)p[ihd / 2 + b / 32] - 127);
        for (int64_t i = b; i < b + 32; i += 2) {
            uint8_t byte = p[i / 2];
            buf[i] = dsv4k_lut_e2m1[byte & 15] * s;
            buf[i + 1] = dsv4k_lut_e2m1[byte >> 4] * s;
        }
    }
    return buf;
}

static void key_put(const dsv4__rt *rt, lstate *L, int64_t j, float *v)
{
    int64_t ihd = rt->c->index_head_dim;
    if (!rt->fp4_sim) { memcpy(L->icache + j * ihd * 4, v, (size_t)ihd * 4); return; }
    dsv4__key_fp4(v, ihd, L->icache + j * dsv4__rt_entry_bytes(rt, 1));
}

/* ---- helpers ---------------------------------------------------------------- */

static void linear(dsv4__rt *rt, const dsv4k_weight *w, const float *x, int64_t m, float *y, int quantised)
{
    int aq = quantised && rt->aq;
    dsv4k_linear(rt->lin, w, x, m, y, aq);
}

/* ---- compressor (§5.4) --------------------------------------------------------- */

/* consume one token's projections v, g (coff·d each, gate without ape) at
 * position p; returns 1 and writes the pooled entry (d) when a block ends */
static int compress_step(const dsv4__compressor_w *cw, float *kvs, float *scs, const float *v, const float *g,
                         int64_t p, float *entry)
{
    int r = cw->ratio, coff = cw->coff;
    int64_t d = cw->d, width = coff * d;
    int slot = r == 4 ? 4 + (int)(p % 4) : (int)(p % r);
    const float *ape = cw->ape + (p % r) * width;
    for (int64_t c = 0; c < width; c++) {
        kvs[slot * width + c] = v[c];
        scs[slot * width + c] = g[c] + ape[c];
    }
    if ((p + 1) % r) return 0;
    int rows = comp_rows(r) <= 128 ? comp_rows(r) : 128; /* ratios above 128 are refused at context creation */
    int64_t off[128] = { 0 };
    for (int i = 0; i < rows; i++) off[i] = (r == 4 && i >= 4) ? d : 0;
    dsv4k_compress_pool_ref(kvs, scs, rows, width, off, d, entry);
    if (r == 4) {
        memcpy(kvs, kvs + 4 * width, (size_t)(4 * width) * 4);
        memcpy(scs, scs + 4 * width, (size_t)(4 * width) * 4);
    }
    return 1;
}

/* run one compressor (main, or the indexer's) over the chunk's tokens,
 * storing every entry whose block completes (§5.4, §5.5 step 2) */
static void compress_chunk(dsv4__rt *rt, const dsv4__layer_w *lw, lstate *ls, int indexer, const float *x,
                           int64_t T, int64_t p0)
{
    const dsv4__compressor_w *cw = indexer ? &lw->icomp : &lw->comp;
    int64_t d = cw->d, wd = (int64_t)cw->coff * d, rd = rt->c->rope_head_dim;
    float *V = indexer ? rt->IV : rt->CV, *G = indexer ? rt->IG : rt->CG;
    float *kvs = indexer ? ls->ikv : ls->ckv, *scs = indexer ? ls->isc : ls->csc;
    float e[1024];
    linear(rt, &cw->wkv, x, T, V, 0);
    linear(rt, &cw->wgate, x, T, G, 0);
    for (int64_t t = 0; t < T; t++) {
        int64_t p = p0 + t;
        if (!compress_step(cw, kvs, scs, V + t * wd, G + t * wd, p, e)) continue;
        int64_t j = (p + 1) / cw->ratio - 1;
        dsv4k_rmsnorm_ref(e, cw->norm, d, (float)rt->c->norm_eps, e);
        dsv4k_rope_ref(e + d - rd, (int)rd, j * cw->ratio, lw->rope, 0);
        if (j >= ls->cap) continue;
        if (indexer) {
            dsv4k_hadamard_ref(e, (int)d);
            key_put(rt, ls, j, e);
        } else {
            entry_put(rt, ls, j, e);
        }
    }
}

/* ---- attention (§5.3–5.6) ---------------------------------------------------- */

typedef struct attn_job {
    dsv4__rt *rt;
    const dsv4__layer_w *lw;
    lstate *ls;
    int64_t T, p0;
} attn_job;

static int cmp_score(const float *sc, int64_t a, int64_t b)
{
    if (sc[a] != sc[b]) return sc[a] > sc[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}

/* put the k best of idx[0..n) (by score desc, then index asc) first */
static void select_topk(const float *sc, int64_t *idx, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int64_t piv = idx[lo + (hi - lo) / 2], i = lo, j = hi;
        while (i <= j) {
            while (cmp_score(sc, idx[i], piv) < 0) i++;
            while (cmp_score(sc, idx[j], piv) > 0) j--;
            if (i <= j) { int64_t t = idx[i]; idx[i] = idx[j]; idx[j] = t; i++; j--; }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void attn_rows(void *arg, int64_t t0, int64_t t1, int thread)
{
    attn_job *j = arg;
    dsv4__rt *rt = j->rt;
    const dsv4__config *c = rt->c;
    const dsv4__layer_w *lw = j->lw;
    lstate *ls = j->ls;
    thread_buf *tb = &rt->tb[thread];
    int64_t hd = c->head_dim, H = c->n_heads, W = c->window, rd = c->rope_head_dim;
    int64_t ih = c->index_n_heads, ihd = c->index_head_dim;
    float scale = (float)(1.0 / sqrt((double)hd));
    for (int64_t t = t0; t < t1; t++) {
        int64_t p = j->p0 + t, n = 0;
        int64_t first = p - W + 1 < 0 ? 0 : p - W + 1;
        for (int64_t q = first; q <= p; q++)
            tb->kv[n++] = q >= j->p0 ? rt->KV + (q - j->p0) * hd : ls->ring + (q % W) * hd;
        int r = lw->ratio;
        if (r > 0) {
            int64_t nvis = (p + 1) / r;
            if (nvis > ls->n) nvis = ls->n;   /* cannot happen: entries are emitted first */
            if (r == 4 && nvis > c->index_topk) {
                const float *qi = rt->QI + t * ih * ihd, *wt = rt->WT + t * ih;
                for (int64_t e = 0; e < nvis; e++) {
                    tb->scores[e] = dsv4k_index_score(qi, wt, (int)ih, ihd, key_get(rt, ls, e, tb->key));
                    tb->idx[e] = e;
                }
                select_topk(tb->scores, tb->idx, nvis, c->index_topk);
                qsort(tb->idx, (size_t)c->index_topk, sizeof *tb->idx, cmp_i64);
                for (int64_t e = 0; e < c->index_topk; e++) {
                    tb->kv[n++] = entry_get(rt, ls, tb->idx[e], tb->dec + e * hd);
                    if (rt->debug) rt->DBG[t * c->index_topk + e] = (int32_t)tb->idx[e];
                }
            } else {
                for (int64_t e = 0; e < nvis; e++) tb->kv[n++] = entry_get(rt, ls, e, tb->dec + e * hd);
                if (rt->debug && r == 4)
                    for (int64_t e = 0; e < c->index_topk; e++)
                        rt->DBG[t * c->index_topk + e] = e < nvis ? (int32_t)e : -1;
            }
        }
        for (int64_t h = 0; h < H; h++) {
            float *o = rt->O + (t * H + h) * hd;
            dsv4k_attn_head_ref(rt->Q + (t * H + h) * hd, tb->kv, n, hd, scale, lw->sink[h], o);
            dsv4k_rope_ref(o + hd - rd, (int)rd, p, lw->rope, 1);
        }
    }
}

static void attention(dsv4__rt *rt, const dsv4__layer_w *lw, lstate *ls, const float *x, int64_t T, int64_t p0,
                      float *out)
{
    const dsv4__config *c = rt->c;
    int64_t hd = c->head_dim, H = c->n_heads, rd = c->rope_head_dim, qlr = c->q_lora_rank;
    int64_t ih = c->index_n_heads, ihd = c->index_head_dim, W = c->window, nope = hd - rd;
    float eps = (float)c->norm_eps;
    /* queries */
    linear(rt, &lw->wq_a, x, T, rt->QL, 1);
    for (int64_t t = 0; t < T; t++) dsv4k_rmsnorm_ref(rt->QL + t * qlr, lw->q_norm, qlr, eps, rt->QL + t * qlr);
    linear(rt, &lw->wq_b, rt->QL, T, rt->Q, 1);
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            float *q = rt->Q + (t * H + h) * hd;
            dsv4k_rmsnorm_ref(q, NULL, hd, eps, q);
            dsv4k_rope_ref(q + nope, (int)rd, p0 + t, lw->rope, 0);
        }
    /* the one key=value vector per token */
    linear(rt, &lw->wkv, x, T, rt->KV, 1);
    for (int64_t t = 0; t < T; t++) {
        float *kv = rt->KV + t * hd;
        dsv4k_rmsnorm_ref(kv, lw->kv_norm, hd, eps, kv);
        dsv4k_rope_ref(kv + nope, (int)rd, p0 + t, lw->rope, 0);
        if (rt->kv_sim) dsv4__kv_fp8(kv, nope, NULL);
    }
    if (lw->ratio > 0) compress_chunk(rt, lw, ls, 0, x, T, p0);
    if (lw->ratio == 4) {
        compress_chunk(rt, lw, ls, 1, x, T, p0);
        linear(rt, &lw->iwq_b, rt->QL, T, rt->QI, 1);
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < ih; h++) {
                float *q = rt->QI + (t * ih + h) * ihd;
                dsv4k_rope_ref(q + ihd - rd, (int)rd, p0 + t, lw->rope, 0);
                dsv4k_hadamard_ref(q, (int)ihd);
                if (rt->fp4_sim) dsv4__key_fp4(q, ihd, NULL);
            }
        linear(rt, &lw->iwproj, x, T, rt->WT, 0);
        float ws = (float)(1.0 / sqrt((double)ihd) / sqrt((double)ih));
        for (int64_t i = 0; i < T * ih; i++) rt->WT[i] *= ws;
    }
    if (lw->ratio > 0) {
        int64_t n_done = (p0 + T) / lw->ratio;
        ls->n = n_done < ls->cap ? n_done : ls->cap;
    }
    attn_job job = { rt, lw, ls, T, p0 };
    dsv4k_pool_for(rt->pool, T, 1, attn_rows, &job);
    if (rt->debug && lw->ratio == 4) rt->debug(rt->debug_user, layer_id(rt, lw), 1, T, p0, rt->DBG, NULL);
    /* the ring keeps the last W raw kv vectors */
    for (int64_t t = T > W ? T - W : 0; t < T; t++)
        memcpy(ls->ring + ((p0 + t) % W) * hd, rt->KV + t * hd, (size_t)hd * 4);
    /* grouped low-rank output (§5.6): group g reads heads [g·H/G, (g+1)·H/G)
     * and rows [g·olr, (g+1)·olr) of wo_a (used unquantised, as BF16) */
    int64_t G = c->o_groups, olr = c->o_lora_rank, gin = H * hd / G, oz = G * olr;
    for (int64_t g = 0; g < G; g++) {
        dsv4k_weight wg = lw->wo_a;
        wg.row0 = g * olr;
        wg.n = olr;
        for (int64_t t = 0; t < T; t++) memcpy(rt->GIN + t * gin, rt->O + t * H * hd + g * gin, (size_t)gin * 4);
        linear(rt, &wg, rt->GIN, T, rt->GOUT, 0);
        for (int64_t t = 0; t < T; t++) memcpy(rt->Z + t * oz + g * olr, rt->GOUT + t * olr, (size_t)olr * 4);
    }
    linear(rt, &lw->wo_b, rt->Z, T, out, 1);
}

/* ---- MoE (§5.7) -------------------------------------------------------------------- */

static float silu(float x) { return (float)((double)x / (1.0 + exp(-(double)x))); }

/* h = w · silu(min(g, lim)) · clamp(u, ±lim) in place of g (lim 0 = none) */
static void swiglu(float *g, const float *u, int64_t n, float lim, float w)
{
    for (int64_t i = 0; i < n; i++) {
        float gv = g[i], uv = u[i];
        if (lim > 0) {
            gv = gv > lim ? lim : gv;
            uv = uv > lim ? lim : uv < -lim ? -lim : uv;
        }
        g[i] = w * (silu(gv) * uv);
    }
}

static void moe(dsv4__rt *rt, const dsv4__layer_w *lw, const float *x, const int32_t *tokens, int64_t T, float *out)
{
    const dsv4__config *c = rt->c;
    int64_t dim = c->dim, E = c->n_routed_experts, K = c->n_active_experts, inter = c->moe_inter_dim;
    float lim = (float)c->swiglu_limit;
    linear(rt, &lw->gate, x, T, rt->GL, 0);
    for (int64_t t = 0; t < T; t++) {
        float *l = rt->GL + t * E;
        for (int64_t e = 0; e < E; e++) l[e] = sqrtf(dsv4k_softplus(l[e]));
        int32_t *sel = rt->SEL + t * K;
        if (lw->hash) {
            for (int64_t k = 0; k < K; k++) sel[k] = lw->tid2eid[(int64_t)tokens[t] * K + k];
        } else {
            /* the K largest of score + bias; ties to the lower expert id */
            for (int64_t k = 0; k < K; k++) {
                int32_t best = -1;
                float bv = 0;
                for (int64_t e = 0; e < E; e++) {
                    int taken = 0;
                    for (int64_t q = 0; q < k; q++) taken |= sel[q] == e;
                    if (taken) continue;
                    float v = l[e] + lw->gate_bias[e];
                    if (best < 0 || v > bv) { best = (int32_t)e; bv = v; }
                }
                sel[k] = best;
            }
        }
        double sum = 0.0;
        for (int64_t k = 0; k < K; k++) sum += l[sel[k]];
        for (int64_t k = 0; k < K; k++) rt->SELW[t * K + k] = (float)(c->route_scale * l[sel[k]] / sum);
    }
    if (rt->debug) rt->debug(rt->debug_user, layer_id(rt, lw), 0, T, 0, rt->SEL, rt->SELW);
    memset(rt->ACC, 0, (size_t)(T * dim) * 4);
    /* experts in id order; each token's sum therefore runs in id order too */
    for (int64_t e = 0; e < E; e++) {
        int64_t m = 0;
        for (int64_t t = 0; t < T; t++)
            for (int64_t k = 0; k < K; k++)
                if (rt->SEL[t * K + k] == e) {
                    rt->ROWS[m] = (int32_t)t;
                    rt->TMP[m] = rt->SELW[t * K + k];
                    memcpy(rt->XE + m * dim, x + t * dim, (size_t)dim * 4);
                    m++;
                }
        if (!m) continue;
        linear(rt, &lw->w1[e], rt->XE, m, rt->GE, 1);
        linear(rt, &lw->w3[e], rt->XE, m, rt->UE, 1);
        for (int64_t i = 0; i < m; i++) swiglu(rt->GE + i * inter, rt->UE + i * inter, inter, lim, rt->TMP[i]);
        linear(rt, &lw->w2[e], rt->GE, m, rt->OE, 1);
        for (int64_t i = 0; i < m; i++) {
            float *acc = rt->ACC + rt->ROWS[i] * dim;
            const float *o = rt->OE + i * dim;
            for (int64_t d = 0; d < dim; d++) acc[d] += o[d];
        }
    }
    linear(rt, &lw->sw1, x, T, rt->GE, 1);
    linear(rt, &lw->sw3, x, T, rt->UE, 1);
    for (int64_t t = 0; t < T; t++)
        swiglu(rt->GE + t * inter, rt->UE + t * inter, inter, rt->shared_clamp ? lim : 0.0f, 1.0f);
    linear(rt, &lw->sw2, rt->GE, T, rt->OE, 1);
    for (int64_t i = 0; i < T * dim; i++) out[i] = rt->ACC[i] + rt->OE[i];
}

/* ---- block with hyper-connections (§5.2) ---------------------------------------- */

static void block(dsv4__rt *rt, const dsv4__layer_w *lw, lstate *ls, float *X, const int32_t *tokens, int64_t T,
                  int64_t p0)
{
    const dsv4__config *c = rt->c;
    int hc = rt->hc;
    int64_t dim = c->dim, width = hc * dim;
    float eps = (float)c->norm_eps, hc_eps = (float)c->hc_eps;
    for (int site = 0; site < 2; site++) {
        for (int64_t t = 0; t < T; t++) {
            dsv4k_hc_pre_ref(X + t * width, hc, dim, lw->hc_fn[site], lw->hc_base[site], lw->hc_scale[site],
                             c->hc_sinkhorn_iters, eps, hc_eps, rt->U + t * dim, rt->POST + t * hc,
                             rt->COMB + t * hc * hc);
            dsv4k_rmsnorm_ref(rt->U + t * dim, site ? lw->ffn_norm : lw->attn_norm, dim, eps, rt->XN + t * dim);
        }
        if (site == 0) attention(rt, lw, ls, rt->XN, T, p0, rt->AO);
        else moe(rt, lw, rt->XN, tokens, T, rt->AO);
        for (int64_t t = 0; t < T; t++) {
            dsv4k_hc_post_ref(X + t * width, rt->AO + t * dim, rt->POST + t * hc, rt->COMB + t * hc * hc, hc, dim,
                              rt->X2 + t * width);
            memcpy(X + t * width, rt->X2 + t * width, (size_t)width * 4);
        }
    }
}

/* logits of rows of streams X: head · norm(HcHead(X)) */
static void logits_of(dsv4__rt *rt, const float *X, int64_t rows, const float *fn, const float *base,
                      const float *scale, const float *norm, float *logits)
{
    const dsv4__config *c = rt->c;
    int64_t dim = c->dim, width = rt->hc * dim;
    for (int64_t t = 0; t < rows; t++) {
        dsv4k_hc_head_ref(X + t * width, rt->hc, dim, fn, base, scale, (float)c->norm_eps, (float)c->hc_eps,
                          rt->YH + t * dim);
        dsv4k_rmsnorm_ref(rt->YH + t * dim, norm, dim, (float)c->norm_eps, rt->YH + t * dim);
    }
    linear(rt, &rt->w->head, rt->YH, rows, logits, 0);
}

static void embed_row(const dsv4__rt *rt, int32_t tok, float *dst)
{
    const dsv4k_weight *e = &rt->w->embed;
    dsv4k_weight_rows_f32_ref(e, tok, tok + 1, dst);
}

/* MTP rows (§5.8) for positions first..first+m-1: trunk streams H (m rows),
 * next tokens nxt (m); logits to out (m × vocab) */
static void mtp_rows(dsv4__state *s, const float *Hs, const int32_t *nxt, int64_t m, int64_t first, float *out)
{
    dsv4__rt *rt = s->rt;
    const struct dsv4__weights *w = rt->w;
    const dsv4__config *c = rt->c;
    int hc = rt->hc;
    int64_t dim = c->dim, width = hc * dim;
    float eps = (float)c->norm_eps;
    for (int64_t t = 0; t < m; t++) {
        embed_row(rt, nxt[t], rt->TMP + t * dim);
        dsv4k_rmsnorm_ref(rt->TMP + t * dim, w->enorm, dim, eps, rt->TMP + t * dim);
        for (int j = 0; j < hc; j++)
            dsv4k_rmsnorm_ref(Hs + t * width + j * dim, w->hnorm, dim, eps, rt->HN + (t * hc + j) * dim);
    }
    linear(rt, &w->e_proj, rt->TMP, m, rt->EP, 1);
    linear(rt, &w->h_proj, rt->HN, m * hc, rt->HP, 1);
    float *Z = rt->X;  /* the trunk is done with X for this chunk */
    for (int64_t t = 0; t < m; t++)
        for (int j = 0; j < hc; j++)
            for (int64_t d = 0; d < dim; d++)
                Z[t * width + j * dim + d] = rt->EP[t * dim + d] + rt->HP[(t * hc + j) * dim + d];
    block(rt, w->mtp, &s->L[c->n_layers], Z, NULL, m, first);
    if (out) logits_of(rt, Z, m, w->mtp_hc_fn, w->mtp_hc_base, w->mtp_hc_scale, w->mtp_norm, out);
}

/* ---- top level ---------------------------------------------------------------------- */

static void chunk(dsv4__state *s, const int32_t *tok, int64_t T, float *logits, int64_t n_logit_rows,
                  float *mtp_logits, int64_t *n_mtp)
{
    dsv4__rt *rt = s->rt;
    const dsv4__config *c = rt->c;
    const struct dsv4__weights *w = rt->w;
    int hc = rt->hc;
    int64_t dim = c->dim, width = hc * dim, p0 = s->pos, V = c->vocab_size;
    for (int64_t t = 0; t < T; t++) {
        embed_row(rt, tok[t], rt->X + t * width);
        for (int j = 1; j < hc; j++) memcpy(rt->X + t * width + j * dim, rt->X + t * width, (size_t)dim * 4);
    }
    for (int l = 0; l < c->n_layers; l++) block(rt, &w->layers[l], &s->L[l], rt->X, tok, T, p0);
    if (logits && n_logit_rows > 0) {
        int64_t r = n_logit_rows < T ? n_logit_rows : T;
        logits_of(rt, rt->X + (T - r) * width, r, w->hc_head_fn, w->hc_head_base, w->hc_head_scale, w->norm,
                  logits + (n_logit_rows - r) * V);
    }
    /* keep the trunk streams MTP needs: rows p0-1 .. p0+T-1 */
    float *Hs = rt->X2;  /* [T + 1][width] staging: previous last row, then this chunk */
    int64_t m = 0, first = p0 > 0 ? p0 - 1 : 0;
    if (s->mtp) {
        if (p0 > 0) memcpy(Hs, s->last_x, (size_t)width * 4);
        int64_t off = p0 > 0 ? 1 : 0;
        for (int64_t t = 0; t < T - 1; t++) memcpy(Hs + (t + off) * width, rt->X + t * width, (size_t)width * 4);
        m = T - 1 + off;
    }
    memcpy(s->last_x, rt->X + (T - 1) * width, (size_t)width * 4);
    s->pos = p0 + T;
    if (s->mtp && m > 0) {
        mtp_rows(s, Hs, tok + (p0 > 0 ? 0 : 1), m, first, mtp_logits ? mtp_logits + *n_mtp * V : NULL);
        *n_mtp += m;
    }
}

dsv4_status dsv4__forward(dsv4__state *s, const int32_t *tokens, int64_t n, float *logits, int64_t n_logit_rows,
                          float *mtp_logits, int64_t *n_mtp_rows, dsv4__err *e)
{
    dsv4__rt *rt = s->rt;
    int64_t V = rt->c->vocab_size, B = rt->o.max_batch, n_mtp = 0;
    if (s->pos + n > rt->o.n_ctx)
        return dsv4__fail(e, DSV4_ERR_CONTEXT_FULL, "context full: position %lld + %lld tokens exceeds the "
                          "capacity %lld", (long long)s->pos, (long long)n, (long long)rt->o.n_ctx);
    for (int64_t i = 0; i < n; i += B) {
        int64_t T = n - i < B ? n - i : B;
        /* logits rows wanted from this chunk: those among the last n_logit_rows of the call */
        int64_t want = n_logit_rows - (n - (i + T));
        if (want > T) want = T;
        float *dst = NULL;
        if (logits && want > 0) dst = logits + (n_logit_rows - (n - i - T) - want) * V;
        chunk(s, tokens + i, T, dst, want > 0 ? want : 0, mtp_logits, &n_mtp);
    }
    if (n_mtp_rows) *n_mtp_rows = n_mtp;
    return DSV4_OK;
}

dsv4_status dsv4__forward_mtp_draft(dsv4__state *s, int32_t next_token, float *logits, dsv4__err *e)
{
    if (!s->mtp) return dsv4__fail(e, DSV4_ERR_NOT_AVAILABLE, "MTP is not enabled on this session");
    if (s->pos == 0) return dsv4__fail(e, DSV4_ERR_NOT_AVAILABLE, "MTP draft needs at least one token fed");
    /* the MTP block is window-only: its ring slot for row pos-1 is rewritten
     * when that row is computed for real, so a draft leaves no trace */
    memcpy(s->rt->X2, s->last_x, (size_t)s->rt->hc * s->rt->c->dim * 4);
    mtp_rows(s, s->rt->X2, &next_token, 1, s->pos - 1, logits);
    return DSV4_OK;
}
