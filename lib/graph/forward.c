/*
 * lib/graph/forward.c — the DeepSeek-V4 forward pass (see forward.h).
 *
 * The model is one graph (graph.h) built and planned when the runtime is
 * created, for batches of up to max_batch token rows: embedding, every
 * block (mHC pre-mix, attention or MoE, mHC post-mix), the final head, then
 * the MTP block and its head. Generic operators live in graph.c; the ones
 * that touch session state or route rows are defined here: embedding,
 * compressors, attention, the window ring, routing, the experts, the MTP
 * staging and the logit outputs.
 *
 * A batch carries spans: runs of consecutive positions of one session each
 * (one session per span, several sessions per batch). The projections of
 * all rows are single products; the compressors consume each span's rows in
 * order (emitting compressed entries into its session's cache); attention
 * runs for every row in parallel, each seeing its causal window (raw KV of
 * the batch or its session's ring) and the compressed entries complete at
 * its position; the ring is updated once attention is done. Decode is the
 * one-row case of the same graph, so prefill, chunked prefill and decode
 * agree.
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
#include "graph.h"
#include "linear.h"
#include "ops.h"
#include "x86/gemv.h"

/* ---- runtime ------------------------------------------------------------ */

typedef struct thread_buf {
    const float **kv;      /* window + compressed vectors of one query */
    float *dec;            /* decoded compressed entries [max_comp][hd] */
    float *scores;         /* indexer scores [n_ctx/4 + 1] */
    int64_t *idx;          /* [n_ctx/4 + 1] */
    float *key;            /* one decoded indexer key */
    float *att;            /* attention scores of the heads [n_heads][window + max_comp + 1] */
    void *q4;              /* one indexer query in integers (dsv4k_index_q4_prepare) */
} thread_buf;

/* consecutive rows [row0, row0 + n) of a row domain: positions p0.. of s */
typedef struct span {
    dsv4__state *s;
    int64_t p0, row0, n;
    float *out;            /* logits destination (logit domains), or NULL */
} span;

/* the rows of one domain in the batch being run */
typedef struct rowset {
    span *sp;
    int n_sp;
    int64_t n;
    int32_t *sp_of;        /* span of every row */
    int64_t *pos;          /* position of every row */
    int32_t *tok;          /* token of every row (TOK), next token (MTP) */
    int64_t *src;          /* logit domains: the row of TOK / MTP they read */
} rowset;

struct dsv4__rt {
    const dsv4__config *c;
    const struct dsv4__weights *w;
    dsv4__rt_opts o;
    int aq, kv_sim, fp4_sim, shared_clamp, compact;
    int simd;              /* AVX2 indexer and attention kernels (not with ref_ops) */
    int hc;
    dsv4k_pool *pool;
    dsv4k_linear_ctx *lin;
    dsv4k_gemm *gemm;      /* oneDNN route for many rows (NULL: unavailable) */
    int64_t max_comp;      /* most compressed entries one query attends */
    thread_buf *tb;
    dsv4g_graph g, gd;     /* the model; the MTP draft */
    uint8_t *arena;
    rowset rs[DSV4G_N_DOM];
    dsv4k_weight *wo_views; /* per layer (+MTP), per output group: rows of wo_a */
    int32_t *DBG;          /* [B][index_topk] selections, when debugging */
    dsv4__debug_fn debug;
    void *debug_user;
    int64_t *prof_ns;      /* per node of g, when profiling */
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
    dsv4k_gemm_free(rt->gemm);
    dsv4k_pool_free(rt->pool);
    dsv4g_free(&rt->g);
    dsv4g_free(&rt->gd);
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

static int build_graphs(dsv4__rt *rt);

dsv4_status dsv4__rt_create(const dsv4__config *c, const struct dsv4__weights *w, const dsv4__rt_opts *o,
                            dsv4__rt **out, dsv4__err *e)
{
    *out = NULL;
    if (!w) return dsv4__fail(e, DSV4_ERR_INTERNAL, "model has no bound weights");
    dsv4__rt *rt = dsv4__calloc(1, sizeof *rt);
    if (!rt) return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "context: out of memory");
    rt->c = c;
    rt->w = w;
    rt->o = *o;
    rt->aq = o->numerics == DSV4_NUMERICS_REFERENCE;
    rt->fp4_sim = rt->aq;
    rt->kv_sim = rt->aq && o->revision == DSV4_REVISION_CURRENT;
    rt->compact = rt->kv_sim;
    rt->shared_clamp = o->revision == DSV4_REVISION_CURRENT;
    rt->hc = c->hc_mult;
    rt->simd = !o->ref_ops && dsv4k_have_avx2() && c->index_head_dim % 32 == 0 && c->head_dim % 8 == 0;
    int64_t B = o->max_batch, hd = c->head_dim, H = c->n_heads;
    int64_t ihd = c->index_head_dim, inter = c->moe_inter_dim, dim = c->dim;
    int64_t qlr = c->q_lora_rank, oz = (int64_t)c->o_groups * c->o_lora_rank;
    rt->pool = dsv4k_pool_create(o->threads);
    int64_t max_k = max64(max64(max64(dim, qlr), max64(oz, inter)), H * hd / c->o_groups);
    rt->lin = rt->pool ? dsv4k_linear_ctx_create(rt->pool, max_k, B * rt->hc) : NULL;
    if (!rt->lin) goto oom;
    /* products of max_batch rows of hc streams at most (the MTP h_proj) */
    if (B * rt->hc >= DSV4G_GEMM_MIN_ROWS) rt->gemm = dsv4k_gemm_create(o->threads, max_k, B * rt->hc);
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
        b->att = rt_alloc(rt, c->n_heads * (c->window + rt->max_comp + 1) * 4);
        b->q4 = rt_alloc(rt, dsv4k_index_q4_bytes((int)c->index_n_heads, ihd) + 64);
        if (!b->kv || !b->dec || !b->scores || !b->idx || !b->key || !b->att || !b->q4) goto oom;
    }
    for (int d = 0; d < DSV4G_N_DOM; d++) {
        rowset *s = &rt->rs[d];
        if (!(s->sp = rt_alloc(rt, B * (int64_t)sizeof *s->sp)) || !(s->sp_of = rt_alloc(rt, B * 4)) ||
            !(s->pos = rt_alloc(rt, B * 8)) || !(s->tok = rt_alloc(rt, B * 4)) || !(s->src = rt_alloc(rt, B * 8)))
            goto oom;
    }
    if (!(rt->DBG = rt_alloc(rt, B * c->index_topk * 4))) goto oom;
    if (!(rt->wo_views = rt_alloc(rt, (int64_t)(c->n_layers + 1) * c->o_groups * (int64_t)sizeof(dsv4k_weight))))
        goto oom;
    int b = build_graphs(rt);
    if (b < 0) {
        dsv4__rt_free(rt);
        return dsv4__fail(e, DSV4_ERR_INTERNAL, "context: the forward graph is inconsistent");
    }
    if (b > 0) goto oom;
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

const dsv4g_graph *dsv4__rt_graph(const dsv4__rt *rt) { return &rt->g; }
dsv4k_pool *dsv4__rt_pool(dsv4__rt *rt) { return rt->pool; }

void dsv4__rt_set_profile(dsv4__rt *rt, int64_t *ns_per_node) { rt->prof_ns = ns_per_node; }

int64_t dsv4__rt_scratch_bytes(const dsv4__rt *rt)
{
    return max64(rt->g.arena_bytes, rt->gd.arena_bytes);
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
    if (rt->simd) {
        dsv4k_key_fp4_decode_avx2(p, ihd, buf);
        return buf;
    }
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
            entry_put(rt, L, j, v);
            if (r == 4) {
                for (int64_t i = 0; i < ihd; i++) v[i] = RF();
                key_put(rt, L, j, v);
            }
        }
        L->n = n;
    }
#undef RND
#undef RF
    dsv4__free(v);
    for (int64_t i = 0; i < (int64_t)c->hc_mult * c->dim; i++) s->last_x[i] = 0.0f;
    s->pos = pos;
}

/* ---- compressor step, top-k, SwiGLU ------------------------------------------ */

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

/* ---- model operators -------------------------------------------------------- */

static dsv4__rt *RT(const dsv4g_run *r) { return r->user; }
static lstate *span_layer(const span *sp, int64_t layer) { return &sp->s->L[layer]; }

/* X[row] = hc copies of the token's embedding */
static void op_embed(dsv4g_run *r, const dsv4g_node *n)
{
    dsv4__rt *rt = RT(r);
    const rowset *rs = &rt->rs[n->i[0]];
    int64_t dim = rt->c->dim, width = r->g->t[n->out[0]].ld;
    float *X = dsv4g_f32(r, n->out[0]);
    for (int64_t t = 0; t < rs->n; t++) {
        dsv4k_weight_rows_f32_ref(&rt->w->embed, rs->tok[t], rs->tok[t] + 1, X + t * width);
        for (int64_t j = 1; j < n->i[1]; j++) memcpy(X + t * width + j * dim, X + t * width, (size_t)dim * 4);
    }
}

static void add_embed(dsv4g_graph *g, int dom, int64_t copies, int32_t X)
{
    dsv4g_node *n = dsv4g_node_add(g, op_embed, "embed");
    dsv4g_out(g, n, X, -1, -1);
    n->i[0] = dom;
    n->i[1] = copies;
}

/* compressor (§5.4, §5.5 step 2): each span's rows in order */
typedef struct comp_job { dsv4g_run *r; const dsv4g_node *n; } comp_job;

static void comp_spans(void *arg, int64_t a, int64_t b, int thread)
{
    comp_job *j = arg;
    const dsv4g_node *n = j->n;
    dsv4__rt *rt = RT(j->r);
    (void)thread;
    const dsv4__layer_w *lw = n->p[0];
    int indexer = (int)n->i[1];
    const dsv4__compressor_w *cw = indexer ? &lw->icomp : &lw->comp;
    const rowset *rs = &rt->rs[n->i[2]];
    int64_t d = cw->d, rd = rt->c->rope_head_dim;
    const float *V = dsv4g_f32(j->r, n->in[0]), *G = dsv4g_f32(j->r, n->in[1]);
    int64_t ldv = j->r->g->t[n->in[0]].ld, ldg = j->r->g->t[n->in[1]].ld;
    float e[1024];
    for (int64_t si = a; si < b; si++) {
        const span *sp = &rs->sp[si];
        lstate *ls = span_layer(sp, n->i[0]);
        float *kvs = indexer ? ls->ikv : ls->ckv, *scs = indexer ? ls->isc : ls->csc;
        for (int64_t t = 0; t < sp->n; t++) {
            int64_t p = sp->p0 + t, row = sp->row0 + t;
            if (!compress_step(cw, kvs, scs, V + row * ldv, G + row * ldg, p, e)) continue;
            int64_t jj = (p + 1) / cw->ratio - 1;
            dsv4k_rmsnorm_ref(e, cw->norm, d, (float)rt->c->norm_eps, e);
            dsv4k_rope_ref(e + d - rd, (int)rd, jj * cw->ratio, lw->rope, 0);
            if (jj >= ls->cap) continue;
            if (indexer) {
                dsv4k_hadamard_ref(e, (int)d);
                key_put(rt, ls, jj, e);
            } else {
                entry_put(rt, ls, jj, e);
            }
        }
        if (!indexer) {
            int64_t done = (sp->p0 + sp->n) / cw->ratio;
            ls->n = done < ls->cap ? done : ls->cap;
        }
    }
}

static void op_compress(dsv4g_run *r, const dsv4g_node *n)
{
    comp_job j = { r, n };
    const rowset *rs = &RT(r)->rs[n->i[2]];
    dsv4k_pool_for(rs->n_sp > 1 ? r->pool : NULL, rs->n_sp, 1, comp_spans, &j);
}

/* attention (§5.3–5.6) of one row t: O [rows][H·hd] from Q, the batch's KV,
 * the session's ring and compressed entries (CSA: indexer QI, WT first).
 * The row's lists live in the buffers of thread `owner`; the three loops
 * inside (indexer scores over the entries, decoding of the chosen entries,
 * the heads) run on `pool` when given (a single row, as in decode, would
 * otherwise leave every other core idle), else on the calling thread. The
 * results are the same either way. */
typedef struct att_job {
    dsv4g_run *r;
    const dsv4g_node *n;
    int64_t t, cnt, base;   /* row; vectors listed; where the compressed ones start */
    const lstate *ls;
    thread_buf *own;
    int topk;               /* entries come from own->idx */
    int q4;                 /* the indexer query is in own->q4: integer scores */
} att_job;

static void att_scores(void *arg, int64_t e0, int64_t e1, int thread)
{
    att_job *j = arg;
    dsv4__rt *rt = RT(j->r);
    const dsv4__config *c = rt->c;
    int64_t ih = c->index_n_heads, ihd = c->index_head_dim;
    const float *qi = dsv4g_f32(j->r, j->n->in[2]) + j->t * ih * ihd, *wt = dsv4g_f32(j->r, j->n->in[3]) + j->t * ih;
    float *kb = rt->tb[thread].key;
    if (j->q4) {
        int64_t eb = dsv4__rt_entry_bytes(rt, 1);
        for (int64_t e = e0; e < e1; e++) {
            j->own->scores[e] = dsv4k_index_score_q4_avx2(j->own->q4, wt, (int)ih, ihd, j->ls->icache + e * eb);
            j->own->idx[e] = e;
        }
        return;
    }
    for (int64_t e = e0; e < e1; e++) {
        const float *k = key_get(rt, j->ls, e, kb);
        j->own->scores[e] = j->r->ref ? dsv4k_index_score_ref(qi, wt, (int)ih, ihd, k)
                            : rt->simd ? dsv4k_index_score_avx2(qi, wt, (int)ih, ihd, k)
                                       : dsv4k_index_score(qi, wt, (int)ih, ihd, k);
        j->own->idx[e] = e;
    }
}

static void att_entries(void *arg, int64_t i0, int64_t i1, int thread)
{
    att_job *j = arg;
    dsv4__rt *rt = RT(j->r);
    int64_t hd = rt->c->head_dim;
    (void)thread;
    for (int64_t i = i0; i < i1; i++)
        j->own->kv[j->base + i] = entry_get(rt, j->ls, j->topk ? j->own->idx[i] : i, j->own->dec + i * hd);
}

static void att_heads(void *arg, int64_t h0, int64_t h1, int thread)
{
    att_job *j = arg;
    dsv4__rt *rt = RT(j->r);
    const dsv4__config *c = rt->c;
    const dsv4__layer_w *lw = j->n->p[0];
    int64_t hd = c->head_dim, H = c->n_heads;
    const float *Q = dsv4g_f32(j->r, j->n->in[0]);
    float *O = dsv4g_f32(j->r, j->n->out[0]);
    float scale = (float)(1.0 / sqrt((double)hd));
    if (rt->simd) {
        /* the heads together, each vector read once per 4 heads */
        dsv4k_attn_heads_avx2(Q + (j->t * H + h0) * hd, hd, h1 - h0, j->own->kv, j->cnt, hd, scale, lw->sink + h0,
                              O + (j->t * H + h0) * hd, hd, rt->tb[thread].att);
        return;
    }
    for (int64_t h = h0; h < h1; h++)
        dsv4k_attn_head_ref(Q + (j->t * H + h) * hd, j->own->kv, j->cnt, hd, scale, lw->sink[h], O + (j->t * H + h) * hd);
}

/* fn over [0, n) on the pool, or on the calling thread */
static void att_loop(dsv4k_pool *pool, int64_t n, int64_t grain, dsv4k_task_fn fn, att_job *j, int thread)
{
    if (pool) dsv4k_pool_for(pool, n, grain, fn, j);
    else if (n > 0) fn(j, 0, n, thread);
}

static void attn_row(dsv4g_run *r, const dsv4g_node *n, int64_t t, int thread, dsv4k_pool *pool)
{
    dsv4__rt *rt = RT(r);
    const dsv4__config *c = rt->c;
    const dsv4__layer_w *lw = n->p[0];
    const rowset *rs = &rt->rs[n->i[1]];
    thread_buf *tb = &rt->tb[thread];
    int64_t hd = c->head_dim, W = c->window;
    const float *KV = dsv4g_f32(r, n->in[1]);
    const span *sp = &rs->sp[rs->sp_of[t]];
    lstate *ls = span_layer(sp, n->i[0]);
    int64_t p = rs->pos[t], cnt = 0;
    int64_t first = p - W + 1 < 0 ? 0 : p - W + 1;
    for (int64_t q = first; q <= p; q++)
        tb->kv[cnt++] = q >= sp->p0 ? KV + (sp->row0 + q - sp->p0) * hd : ls->ring + (q % W) * hd;
    att_job j = { r, n, t, 0, cnt, ls, tb, 0, 0 };
    int ratio = lw->ratio;
    if (ratio > 0) {
        int64_t nvis = (p + 1) / ratio;
        if (nvis > ls->n) nvis = ls->n;   /* cannot happen: entries are emitted first */
        if (ratio == 4 && nvis > c->index_topk) {
            /* FP4-simulated query and keys (reference numerics): integer scores */
            int64_t ih = c->index_n_heads, ihd = c->index_head_dim;
            if (rt->simd && rt->fp4_sim && !r->ref && ih % 16 == 0 && ihd % 32 == 0 && ihd <= 512)
                j.q4 = dsv4k_index_q4_prepare(dsv4g_f32(r, n->in[2]) + t * ih * ihd, (int)ih, ihd, tb->q4) == 0;
            att_loop(pool, nvis, 64, att_scores, &j, thread);
            select_topk(tb->scores, tb->idx, nvis, c->index_topk);
            qsort(tb->idx, (size_t)c->index_topk, sizeof *tb->idx, cmp_i64);
            j.topk = 1;
            att_loop(pool, c->index_topk, 16, att_entries, &j, thread);
            cnt += c->index_topk;
            if (rt->debug)
                for (int64_t e = 0; e < c->index_topk; e++) rt->DBG[t * c->index_topk + e] = (int32_t)tb->idx[e];
        } else {
            att_loop(pool, nvis, 16, att_entries, &j, thread);
            cnt += nvis;
            if (rt->debug && ratio == 4)
                for (int64_t e = 0; e < c->index_topk; e++)
                    rt->DBG[t * c->index_topk + e] = e < nvis ? (int32_t)e : -1;
        }
    }
    j.cnt = cnt;
    att_loop(pool, c->n_heads, 4, att_heads, &j, thread);
}

static void attn_rows(void *arg, int64_t t0, int64_t t1, int thread)
{
    comp_job *j = arg;
    for (int64_t t = t0; t < t1; t++) attn_row(j->r, j->n, t, thread, NULL);
}

static void op_attend(dsv4g_run *r, const dsv4g_node *n)
{
    dsv4__rt *rt = RT(r);
    const rowset *rs = &rt->rs[n->i[1]];
    comp_job j = { r, n };
    if (rs->n < dsv4k_pool_threads(r->pool)) {
        /* fewer rows than threads: each row over the whole pool */
        for (int64_t t = 0; t < rs->n; t++) attn_row(r, n, t, 0, r->pool);
    } else {
        dsv4k_pool_for(r->pool, rs->n, 1, attn_rows, &j);
    }
    const dsv4__layer_w *lw = n->p[0];
    if (rt->debug && lw->ratio == 4 && rs->n)
        rt->debug(rt->debug_user, (int)n->i[0], 1, rs->n, rs->n_sp ? rs->sp[0].p0 : 0, rt->DBG, NULL);
}

/* the ring keeps the last `window` raw KV vectors of each session */
static void op_ring(dsv4g_run *r, const dsv4g_node *n)
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

/* routing (§5.7): scores sqrt(softplus(logit)), the K best of score + bias
 * (ties to the lower id) or the token's hash row, weights renormalised */
static void op_route(dsv4g_run *r, const dsv4g_node *n)
{
    dsv4__rt *rt = RT(r);
    const dsv4__config *c = rt->c;
    const dsv4__layer_w *lw = n->p[0];
    const rowset *rs = &rt->rs[n->i[1]];
    int64_t E = c->n_routed_experts, K = c->n_active_experts;
    float *GL = dsv4g_f32(r, n->in[0]), *SELW = dsv4g_f32(r, n->out[1]);
    int32_t *SEL = dsv4g_i32(r, n->out[0]);
    for (int64_t t = 0; t < rs->n; t++) {
        float *l = GL + t * E;
        for (int64_t e = 0; e < E; e++) l[e] = sqrtf(dsv4k_softplus(l[e]));
        int32_t *sel = SEL + t * K;
        if (lw->hash) {
            for (int64_t k = 0; k < K; k++) sel[k] = lw->tid2eid[(int64_t)rs->tok[t] * K + k];
        } else {
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
        for (int64_t k = 0; k < K; k++) SELW[t * K + k] = (float)(c->route_scale * l[sel[k]] / sum);
    }
    if (rt->debug && rs->n) rt->debug(rt->debug_user, (int)n->i[0], 0, rs->n, 0, SEL, SELW);
}

/* routed experts (§5.7): rows grouped per expert, in expert id order (so
 * each row's sum runs in id order too); ACC [rows][dim]; WS workspace
 * [rows][2·dim + 2·inter] */
static void op_experts(dsv4g_run *r, const dsv4g_node *n)
{
    dsv4__rt *rt = RT(r);
    const dsv4__config *c = rt->c;
    const dsv4__layer_w *lw = n->p[0];
    int64_t dim = c->dim, E = c->n_routed_experts, K = c->n_active_experts, inter = c->moe_inter_dim;
    int64_t T = dsv4g_rows(r, n->in[0]);
    const float *x = dsv4g_f32(r, n->in[0]), *SELW = dsv4g_f32(r, n->in[2]);
    const int32_t *SEL = dsv4g_i32(r, n->in[1]);
    float *ACC = dsv4g_f32(r, n->out[0]), *WS = dsv4g_f32(r, n->out[1]);
    float *XE = WS, *GE = XE + T * dim, *UE = GE + T * inter, *OE = UE + T * inter;
    int32_t *ROWS = (int32_t *)(OE + T * dim);
    float *WR = (float *)(ROWS + T);
    float lim = (float)c->swiglu_limit;
    memset(ACC, 0, (size_t)(T * dim) * 4);
    for (int64_t e = 0; e < E; e++) {
        int64_t m = 0;
        for (int64_t t = 0; t < T; t++)
            for (int64_t k = 0; k < K; k++)
                if (SEL[t * K + k] == e) {
                    ROWS[m] = (int32_t)t;
                    WR[m] = SELW[t * K + k];
                    memcpy(XE + m * dim, x + t * dim, (size_t)dim * 4);
                    m++;
                }
        if (!m) continue;
        dsv4g_linear_exec(r, &lw->w1[e], XE, dim, m, GE, inter, r->aq);
        dsv4g_linear_exec(r, &lw->w3[e], XE, dim, m, UE, inter, r->aq);
        for (int64_t i = 0; i < m; i++) swiglu(GE + i * inter, UE + i * inter, inter, lim, WR[i]);
        dsv4g_linear_exec(r, &lw->w2[e], GE, inter, m, OE, dim, r->aq);
        for (int64_t i = 0; i < m; i++) {
            float *acc = ACC + ROWS[i] * dim;
            const float *o = OE + i * dim;
            for (int64_t d = 0; d < dim; d++) acc[d] += o[d];
        }
    }
}

/* g = silu(min(g, lim)) · clamp(u, ±lim) (lim 0: no clamp) */
static void op_swiglu(dsv4g_run *r, const dsv4g_node *n)
{
    int64_t rows = dsv4g_rows(r, n->in[0]), cols = r->g->t[n->in[0]].cols;
    float *g = dsv4g_f32(r, n->in[0]);
    const float *u = dsv4g_f32(r, n->in[1]);
    for (int64_t t = 0; t < rows; t++) swiglu(g + t * cols, u + t * cols, cols, n->f[0], 1.0f);
}

/* the rows of X a logit domain reads */
static void op_gather(dsv4g_run *r, const dsv4g_node *n)
{
    const rowset *rs = &RT(r)->rs[n->i[0]];
    int64_t w = r->g->t[n->in[0]].ld;
    const float *X = dsv4g_f32(r, n->in[0]);
    float *Y = dsv4g_f32(r, n->out[0]);
    for (int64_t i = 0; i < rs->n; i++) memcpy(Y + i * w, X + rs->src[i] * w, (size_t)w * 4);
}

/* logits of each span of a logit domain straight into its destination */
static void op_head(dsv4g_run *r, const dsv4g_node *n)
{
    dsv4__rt *rt = RT(r);
    const rowset *rs = &rt->rs[n->i[0]];
    const float *Y = dsv4g_f32(r, n->in[0]);
    int64_t dim = rt->c->dim, V = rt->c->vocab_size;
    for (int i = 0; i < rs->n_sp; i++) {
        const span *sp = &rs->sp[i];
        if (sp->out) dsv4g_linear_exec(r, &rt->w->head, Y + sp->row0 * dim, dim, sp->n, sp->out, V, 0);
    }
}

/* MTP input rows (§5.8) of each session: its trunk streams at positions
 * first .. first+m-1 (the saved row at p0-1, then the batch's rows) */
static void op_mtp_stage(dsv4g_run *r, const dsv4g_node *n)
{
    dsv4__rt *rt = RT(r);
    const rowset *tr = &rt->rs[DSV4G_TOK], *mr = &rt->rs[DSV4G_MTP];
    int64_t w = r->g->t[n->in[0]].ld;
    const float *X = dsv4g_f32(r, n->in[0]);
    float *Hs = dsv4g_f32(r, n->out[0]);
    for (int i = 0; i < mr->n_sp; i++) {
        const span *ms = &mr->sp[i];
        const span *ts = NULL;
        for (int k = 0; k < tr->n_sp; k++)
            if (tr->sp[k].s == ms->s) ts = &tr->sp[k];
        int64_t o = 0;
        if (ts->p0 > 0) memcpy(Hs + ms->row0 * w, ms->s->last_x, (size_t)w * 4), o = 1;
        for (int64_t t = 0; t + o < ms->n; t++)
            memcpy(Hs + (ms->row0 + o + t) * w, X + (ts->row0 + t) * w, (size_t)w * 4);
    }
    /* every session keeps its last trunk row for the next batch */
    for (int k = 0; k < tr->n_sp; k++)
        memcpy(tr->sp[k].s->last_x, X + (tr->sp[k].row0 + tr->sp[k].n - 1) * w, (size_t)w * 4);
}

/* the draft's single MTP row: the saved trunk row at pos-1 */
static void op_draft_stage(dsv4g_run *r, const dsv4g_node *n)
{
    const rowset *mr = &RT(r)->rs[DSV4G_MTP];
    int64_t w = r->g->t[n->out[0]].ld;
    memcpy(dsv4g_f32(r, n->out[0]), mr->sp[0].s->last_x, (size_t)w * 4);
}

/* Z[row][j] = EP[row] + HP[row·hc + j] for every stream j */
static void op_mtp_mix(dsv4g_run *r, const dsv4g_node *n)
{
    int64_t rows = dsv4g_rows(r, n->in[0]), dim = r->g->t[n->in[0]].cols, hc = n->i[0];
    const float *EP = dsv4g_f32(r, n->in[0]), *HP = dsv4g_f32(r, n->in[1]);
    float *Z = dsv4g_f32(r, n->out[0]);
    for (int64_t t = 0; t < rows; t++)
        for (int64_t j = 0; j < hc; j++)
            for (int64_t d = 0; d < dim; d++)
                Z[(t * hc + j) * dim + d] = EP[t * dim + d] + HP[(t * hc + j) * dim + d];
}

/* ---- the graph ----------------------------------------------------------------- */

static int32_t F(dsv4g_graph *g, const char *name, int dom, int64_t mult, int64_t cols)
{
    return dsv4g_new(g, name, DSV4G_F32, dom, mult, cols);
}

/* attention sublayer (§5.3–5.6) of layer `li` on rows x [dom][dim] → out */
static int32_t build_attention(dsv4__rt *rt, dsv4g_graph *g, int li, const dsv4__layer_w *lw, int dom, int32_t x)
{
    const dsv4__config *c = rt->c;
    int64_t hd = c->head_dim, H = c->n_heads, rd = c->rope_head_dim, qlr = c->q_lora_rank, nope = hd - rd;
    int64_t ih = c->index_n_heads, ihd = c->index_head_dim, dim = c->dim;
    float eps = (float)c->norm_eps;
    /* queries: low rank, per-head norm without weight, rope */
    int32_t QL = F(g, "q_lora", dom, 1, qlr), Q = F(g, "q", dom, 1, H * hd);
    dsv4g_linear(g, &lw->wq_a, x, QL, 1);
    dsv4g_rmsnorm(g, QL, lw->q_norm, eps, QL);
    dsv4g_linear(g, &lw->wq_b, QL, Q, 1);
    dsv4g_rmsnorm(g, dsv4g_view(g, Q, dom, H, hd, hd, 0), NULL, eps, dsv4g_view(g, Q, dom, H, hd, hd, 0));
    dsv4g_rope(g, dsv4g_view(g, Q, dom, H, rd, hd, nope), lw->rope, 0);
    /* the one key=value vector per row */
    int32_t KV = F(g, "kv", dom, 1, hd);
    dsv4g_linear(g, &lw->wkv, x, KV, 1);
    dsv4g_rmsnorm(g, KV, lw->kv_norm, eps, KV);
    dsv4g_rope(g, dsv4g_view(g, KV, dom, 1, rd, hd, nope), lw->rope, 0);
    dsv4g_sim(g, dsv4g_view(g, KV, dom, 1, nope, hd, 0), 0);
    int32_t QI = -1, WT = -1;
    for (int ix = 0; ix < (lw->ratio == 4 ? 2 : lw->ratio > 0); ix++) {
        const dsv4__compressor_w *cw = ix ? &lw->icomp : &lw->comp;
        int64_t wd = (int64_t)cw->coff * cw->d;
        int32_t CV = F(g, "comp_kv", dom, 1, wd), CG = F(g, "comp_gate", dom, 1, wd);
        dsv4g_linear(g, &cw->wkv, x, CV, 0);
        dsv4g_linear(g, &cw->wgate, x, CG, 0);
        dsv4g_node *n = dsv4g_node_add(g, op_compress, ix ? "compress_indexer" : "compress");
        dsv4g_in(g, n, CV, CG, -1, -1, -1);
        n->p[0] = lw;
        n->i[0] = li; n->i[1] = ix; n->i[2] = dom;
    }
    if (lw->ratio == 4) {
        /* indexer queries and head weights (§5.5) */
        QI = F(g, "index_q", dom, 1, ih * ihd);
        WT = F(g, "index_w", dom, 1, ih);
        dsv4g_linear(g, &lw->iwq_b, QL, QI, 1);
        int32_t QIh = dsv4g_view(g, QI, dom, ih, ihd, ihd, 0);
        dsv4g_rope(g, dsv4g_view(g, QI, dom, ih, rd, ihd, ihd - rd), lw->rope, 0);
        dsv4g_hadamard(g, QIh);
        dsv4g_sim(g, QIh, 1);
        dsv4g_linear(g, &lw->iwproj, x, WT, 0);
        dsv4g_scale(g, WT, (float)(1.0 / sqrt((double)ihd) / sqrt((double)ih)));
    }
    int32_t O = F(g, "attn_o", dom, 1, H * hd);
    dsv4g_node *n = dsv4g_node_add(g, op_attend, "attend");
    dsv4g_in(g, n, Q, KV, QI, WT, -1);
    dsv4g_out(g, n, O, -1, -1);
    n->p[0] = lw;
    n->i[0] = li; n->i[1] = dom;
    dsv4g_rope(g, dsv4g_view(g, O, dom, H, rd, hd, nope), lw->rope, 1);
    n = dsv4g_node_add(g, op_ring, "ring_store");
    dsv4g_in(g, n, KV, -1, -1, -1, -1);
    n->i[0] = li; n->i[1] = dom;
    /* grouped low-rank output (§5.6): group q reads heads [q·H/G, (q+1)·H/G)
     * and rows [q·olr, (q+1)·olr) of wo_a (used unquantised, as BF16) */
    int64_t G = c->o_groups, olr = c->o_lora_rank, gin = H * hd / G;
    int32_t Z = F(g, "o_lora", dom, 1, G * olr), out = F(g, "attn_out", dom, 1, dim);
    for (int64_t q = 0; q < G; q++) {
        dsv4k_weight *wv = &rt->wo_views[(int64_t)li * G + q];
        *wv = lw->wo_a;
        wv->row0 = q * olr;
        wv->n = olr;
        dsv4g_linear(g, wv, dsv4g_view(g, O, dom, 1, gin, H * hd, q * gin), dsv4g_view(g, Z, dom, 1, olr, G * olr, q * olr), 0);
    }
    dsv4g_linear(g, &lw->wo_b, Z, out, 1);
    return out;
}

/* MoE sublayer (§5.7) */
static int32_t build_moe(dsv4__rt *rt, dsv4g_graph *g, int li, const dsv4__layer_w *lw, int dom, int32_t x)
{
    const dsv4__config *c = rt->c;
    int64_t dim = c->dim, E = c->n_routed_experts, K = c->n_active_experts, inter = c->moe_inter_dim;
    int32_t GL = F(g, "gate_logits", dom, 1, E), SEL = dsv4g_new(g, "experts", DSV4G_I32, dom, 1, K);
    int32_t SELW = F(g, "expert_w", dom, 1, K);
    dsv4g_linear(g, &lw->gate, x, GL, 0);
    dsv4g_node *n = dsv4g_node_add(g, op_route, "route");
    dsv4g_in(g, n, GL, -1, -1, -1, -1);
    dsv4g_out(g, n, SEL, SELW, -1);
    n->p[0] = lw;
    n->i[0] = li; n->i[1] = dom;
    int32_t ACC = F(g, "routed_out", dom, 1, dim), WS = F(g, "expert_ws", dom, 1, 2 * dim + 2 * inter + 2);
    n = dsv4g_node_add(g, op_experts, "experts");
    dsv4g_in(g, n, x, SEL, SELW, -1, -1);
    dsv4g_out(g, n, ACC, WS, -1);
    n->p[0] = lw;
    int32_t SG = F(g, "shared_gate", dom, 1, inter), SU = F(g, "shared_up", dom, 1, inter);
    int32_t SO = F(g, "shared_out", dom, 1, dim), out = F(g, "ffn_out", dom, 1, dim);
    dsv4g_linear(g, &lw->sw1, x, SG, 1);
    dsv4g_linear(g, &lw->sw3, x, SU, 1);
    n = dsv4g_node_add(g, op_swiglu, "swiglu");
    dsv4g_in(g, n, SG, SU, -1, -1, -1);
    dsv4g_out(g, n, SG, -1, -1);
    n->f[0] = rt->shared_clamp ? (float)c->swiglu_limit : 0.0f;
    dsv4g_linear(g, &lw->sw2, SG, SO, 1);
    dsv4g_add(g, ACC, SO, out);
    return out;
}

/* one block with hyper-connections (§5.2): streams X [dom][hc·dim] → new X */
static int32_t build_block(dsv4__rt *rt, dsv4g_graph *g, int li, const dsv4__layer_w *lw, int dom, int32_t X)
{
    const dsv4__config *c = rt->c;
    int hc = rt->hc;
    int64_t dim = c->dim;
    float eps = (float)c->norm_eps;
    for (int site = 0; site < 2; site++) {
        g->tag_layer = li;
        g->tag_part = site ? DSV4G_PART_FFN : DSV4G_PART_ATTN;
        int32_t U = F(g, "hc_in", dom, 1, dim), POST = F(g, "hc_post", dom, 1, hc);
        int32_t COMB = F(g, "hc_comb", dom, 1, (int64_t)hc * hc), XN = F(g, "normed", dom, 1, dim);
        dsv4g_hc_pre(g, X, lw->hc_fn[site], lw->hc_base[site], lw->hc_scale[site], hc, c->hc_sinkhorn_iters, eps,
                     (float)c->hc_eps, U, POST, COMB);
        dsv4g_rmsnorm(g, U, site ? lw->ffn_norm : lw->attn_norm, eps, XN);
        int32_t AO = site ? build_moe(rt, g, li, lw, dom, XN) : build_attention(rt, g, li, lw, dom, XN);
        int32_t X2 = F(g, "streams", dom, 1, hc * dim);
        dsv4g_hc_post(g, X, AO, POST, COMB, hc, X2);
        X = X2;
    }
    g->tag_layer = -1;
    g->tag_part = DSV4G_PART_OTHER;
    return X;
}

/* final stream reduction, norm and LM head of the rows of logit domain ldom */
static void build_head(dsv4__rt *rt, dsv4g_graph *g, int32_t X, int ldom, const float *fn, const float *base,
                       const float *scale, const float *norm)
{
    const dsv4__config *c = rt->c;
    int64_t dim = c->dim;
    int32_t XL = F(g, "logit_streams", ldom, 1, rt->hc * dim), YH = F(g, "head_in", ldom, 1, dim);
    g->tag_part = DSV4G_PART_HEAD;
    dsv4g_node *n = dsv4g_node_add(g, op_gather, "gather");
    dsv4g_in(g, n, X, -1, -1, -1, -1);
    dsv4g_out(g, n, XL, -1, -1);
    n->i[0] = ldom;
    dsv4g_hc_head(g, XL, fn, base, scale, rt->hc, (float)c->norm_eps, (float)c->hc_eps, YH);
    dsv4g_rmsnorm(g, YH, norm, (float)c->norm_eps, YH);
    n = dsv4g_node_add(g, op_head, "head");
    dsv4g_in(g, n, YH, -1, -1, -1, -1);
    n->i[0] = ldom;
    g->tag_part = DSV4G_PART_OTHER;
}

/* the MTP block (§5.8) on staged trunk rows Hs [MTP][hc·dim] */
static void build_mtp(dsv4__rt *rt, dsv4g_graph *g, int32_t Hs)
{
    const struct dsv4__weights *w = rt->w;
    const dsv4__config *c = rt->c;
    int hc = rt->hc;
    int64_t dim = c->dim;
    float eps = (float)c->norm_eps;
    int32_t Em = F(g, "mtp_embed", DSV4G_MTP, 1, dim), HN = F(g, "mtp_hnorm", DSV4G_MTP, hc, dim);
    int32_t EP = F(g, "mtp_eproj", DSV4G_MTP, 1, dim), HP = F(g, "mtp_hproj", DSV4G_MTP, hc, dim);
    int32_t Z = F(g, "mtp_streams", DSV4G_MTP, 1, hc * dim);
    add_embed(g, DSV4G_MTP, 1, Em);
    dsv4g_rmsnorm(g, Em, w->enorm, eps, Em);
    dsv4g_rmsnorm(g, dsv4g_view(g, Hs, DSV4G_MTP, hc, dim, dim, 0), w->hnorm, eps, HN);
    dsv4g_linear(g, &w->e_proj, Em, EP, 1);
    dsv4g_linear(g, &w->h_proj, HN, HP, 1);
    dsv4g_node *n = dsv4g_node_add(g, op_mtp_mix, "mtp_mix");
    dsv4g_in(g, n, EP, HP, -1, -1, -1);
    dsv4g_out(g, n, Z, -1, -1);
    n->i[0] = hc;
    Z = build_block(rt, g, c->n_layers, w->mtp, DSV4G_MTP, Z);
    build_head(rt, g, Z, DSV4G_MTP_LOGIT, w->mtp_hc_fn, w->mtp_hc_base, w->mtp_hc_scale, w->mtp_norm);
}

/* 0, 1 out of memory, -1 inconsistent */
static int build_graphs(dsv4__rt *rt)
{
    const dsv4__config *c = rt->c;
    const struct dsv4__weights *w = rt->w;
    int64_t B = rt->o.max_batch, width = (int64_t)rt->hc * c->dim;
    int64_t full[DSV4G_N_DOM] = { B, B, B, B, 1 }, one[DSV4G_N_DOM] = { 0, 1, 0, 1, 1 };
    dsv4g_graph *g = &rt->g;
    dsv4g_init(g, full);
    int32_t X = F(g, "streams", DSV4G_TOK, 1, width);
    add_embed(g, DSV4G_TOK, rt->hc, X);
    for (int l = 0; l < c->n_layers; l++) X = build_block(rt, g, l, &w->layers[l], DSV4G_TOK, X);
    build_head(rt, g, X, DSV4G_LOGIT, w->hc_head_fn, w->hc_head_base, w->hc_head_scale, w->norm);
    int32_t Hs = F(g, "mtp_in", DSV4G_MTP, 1, width);
    dsv4g_node *n = dsv4g_node_add(g, op_mtp_stage, "mtp_stage");
    dsv4g_in(g, n, X, -1, -1, -1, -1);
    dsv4g_out(g, n, Hs, -1, -1);
    if (w->mtp) build_mtp(rt, g, Hs);
    dsv4g_graph *d = &rt->gd;
    dsv4g_init(d, one);
    if (w->mtp) {
        Hs = F(d, "mtp_in", DSV4G_MTP, 1, width);
        n = dsv4g_node_add(d, op_draft_stage, "draft_stage");
        dsv4g_out(d, n, Hs, -1, -1);
        build_mtp(rt, d, Hs);
    }
    if (g->failed || d->failed) return 1;
    if (dsv4g_plan(g) || dsv4g_plan(d)) return -1;
    rt->arena = rt_alloc(rt, dsv4__rt_scratch_bytes(rt));
    return rt->arena ? 0 : 1;
}

/* ---- running batches ------------------------------------------------------------------ */

static void run_graph(dsv4__rt *rt, const dsv4g_graph *g)
{
    dsv4g_run r;
    memset(&r, 0, sizeof r);
    r.g = g;
    r.arena = rt->arena;
    r.pool = rt->pool;
    r.lin = rt->lin;
    r.gemm = rt->gemm;
    r.ref = rt->o.ref_ops;
    r.aq = rt->aq;
    r.kv_sim = rt->kv_sim;
    r.fp4_sim = rt->fp4_sim;
    r.user = rt;
    r.prof_ns = g == &rt->g ? rt->prof_ns : NULL;
    for (int d = 0; d < DSV4G_FIXED; d++) {
        r.dom_n[d] = rt->rs[d].n;
        r.pos[d] = rt->rs[d].pos;
    }
    r.dom_n[DSV4G_FIXED] = 1;
    dsv4g_exec(&r);
}

static void rs_clear(rowset *rs) { rs->n = 0; rs->n_sp = 0; }

/* append rows p0 .. p0+n-1 of session s to a rowset */
static span *rs_push(rowset *rs, dsv4__state *s, int64_t p0, int64_t n, float *out)
{
    span *sp = &rs->sp[rs->n_sp];
    *sp = (span){ s, p0, rs->n, n, out };
    for (int64_t i = 0; i < n; i++) {
        rs->sp_of[rs->n + i] = rs->n_sp;
        rs->pos[rs->n + i] = p0 + i;
    }
    rs->n_sp++;
    rs->n += n;
    return sp;
}

/* one part of a request inside a batch */
typedef struct part {
    dsv4__req *q;
    int64_t i, n;          /* tokens [i, i+n) of the request */
} part;

/* run one batch of parts (distinct sessions, total <= max_batch rows) */
static void run_batch(dsv4__rt *rt, const part *pt, int n_parts)
{
    int64_t V = rt->c->vocab_size;
    rowset *tr = &rt->rs[DSV4G_TOK], *lr = &rt->rs[DSV4G_LOGIT];
    rowset *mr = &rt->rs[DSV4G_MTP], *ml = &rt->rs[DSV4G_MTP_LOGIT];
    rs_clear(tr); rs_clear(lr); rs_clear(mr); rs_clear(ml);
    for (int k = 0; k < n_parts; k++) {
        const part *p = &pt[k];
        dsv4__req *q = p->q;
        dsv4__state *s = q->s;
        int64_t p0 = s->pos;
        span *ts = rs_push(tr, s, p0, p->n, NULL);
        memcpy(tr->tok + ts->row0, q->tokens + p->i, (size_t)p->n * 4);
        /* logit rows wanted from this part: those among the request's last n_logit_rows */
        int64_t after = q->n - (p->i + p->n), want = q->n_logit_rows - after;
        if (want > p->n) want = p->n;
        if (q->logits && want > 0) {
            span *ls = rs_push(lr, s, p0 + p->n - want, want, q->logits + (q->n_logit_rows - after - want) * V);
            for (int64_t i = 0; i < want; i++) lr->src[ls->row0 + i] = ts->row0 + p->n - want + i;
        }
        if (s->mtp) {
            /* MTP rows at positions first .. p0+n-2: trunk row, next token */
            int64_t o = p0 > 0, m = p->n - 1 + o, first = p0 - o;
            if (m <= 0) continue;
            span *ms = rs_push(mr, s, first, m, NULL);
            memcpy(mr->tok + ms->row0, q->tokens + p->i + 1 - o, (size_t)m * 4);
            if (q->mtp_logits) {
                span *mo = rs_push(ml, s, first, m, q->mtp_logits + q->n_mtp * V);
                for (int64_t i = 0; i < m; i++) ml->src[mo->row0 + i] = ms->row0 + i;
            }
            q->n_mtp += m;
        }
    }
    /* a batch whose products go to oneDNN runs all its loops on OpenMP's
     * threads too (one set of threads on the cores, see pool.h) */
    int omp = rt->gemm && tr->n >= DSV4G_GEMM_MIN_ROWS;
    dsv4k_pool_set_omp(rt->pool, omp);
    run_graph(rt, &rt->g);
    dsv4k_pool_set_omp(rt->pool, 0);
    for (int k = 0; k < n_parts; k++) pt[k].q->s->pos += pt[k].n;
}

dsv4_status dsv4__forward_batch(dsv4__rt *rt, dsv4__req *reqs, int n_reqs, dsv4__err *e)
{
    int64_t B = rt->o.max_batch;
    for (int i = 0; i < n_reqs; i++) {
        dsv4__req *q = &reqs[i];
        q->n_mtp = 0;
        if (q->s->rt != rt)
            return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "batch: a session of another context");
        for (int j = 0; j < i; j++)
            if (reqs[j].s == q->s) return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "batch: a session appears twice");
        if (q->n < 1) return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "batch: a request without tokens");
        if (q->s->pos + q->n > rt->o.n_ctx)
            return dsv4__fail(e, DSV4_ERR_CONTEXT_FULL, "context full: position %lld + %lld tokens exceeds the "
                              "capacity %lld", (long long)q->s->pos, (long long)q->n, (long long)rt->o.n_ctx);
    }
    /* fill batches of up to B rows, request by request */
    part pt[64];
    int np = 0;
    int64_t rows = 0;
    for (int i = 0; i < n_reqs; i++) {
        for (int64_t done = 0; done < reqs[i].n;) {
            int64_t take = reqs[i].n - done < B - rows ? reqs[i].n - done : B - rows;
            pt[np++] = (part){ &reqs[i], done, take };
            rows += take;
            done += take;
            if (rows == B || np == 64) {
                run_batch(rt, pt, np);
                np = 0;
                rows = 0;
            }
        }
    }
    if (np) run_batch(rt, pt, np);
    return DSV4_OK;
}

dsv4_status dsv4__forward(dsv4__state *s, const int32_t *tokens, int64_t n, float *logits, int64_t n_logit_rows,
                          float *mtp_logits, int64_t *n_mtp_rows, dsv4__err *e)
{
    dsv4__req q = { s, tokens, n, logits, n_logit_rows, mtp_logits, 0 };
    dsv4_status st = dsv4__forward_batch(s->rt, &q, 1, e);
    if (st == DSV4_OK && n_mtp_rows) *n_mtp_rows = q.n_mtp;
    return st;
}

dsv4_status dsv4__forward_mtp_draft(dsv4__state *s, int32_t next_token, float *logits, dsv4__err *e)
{
    dsv4__rt *rt = s->rt;
    if (!s->mtp) return dsv4__fail(e, DSV4_ERR_NOT_AVAILABLE, "MTP is not enabled on this session");
    if (s->pos == 0) return dsv4__fail(e, DSV4_ERR_NOT_AVAILABLE, "MTP draft needs at least one token fed");
    /* the MTP block is window-only: its ring slot for row pos-1 is rewritten
     * when that row is computed for real, so a draft leaves no trace */
    for (int d = 0; d < DSV4G_FIXED; d++) rs_clear(&rt->rs[d]);
    span *ms = rs_push(&rt->rs[DSV4G_MTP], s, s->pos - 1, 1, NULL);
    rt->rs[DSV4G_MTP].tok[ms->row0] = next_token;
    span *mo = rs_push(&rt->rs[DSV4G_MTP_LOGIT], s, s->pos - 1, 1, logits);
    rt->rs[DSV4G_MTP_LOGIT].src[mo->row0] = 0;
    run_graph(rt, &rt->gd);
    return DSV4_OK;
}
