/*
 * kernels/gemm/onednn.c — the oneDNN matmul route for products of many
 * activation rows (see gemm.h).
 *
 * Two routes, both exact in their products:
 *
 * bf16 (reference numerics: quantised activations, weights with E8M0 or no
 * scales, on CPUs where oneDNN runs bf16 natively): every activation is
 * e4m3 · 2^e and every weight e4m3 · 2^e, e2m1 · 2^e or bf16, so each is a
 * bf16 value when it lies in bf16's normal range, and the product of two
 * bf16 values is exact in f32. Unquantised activations that happen to be
 * bf16 values take it too. The activations are converted once per call
 * (quantised by the threads, a row each), the weights a block of about
 * 4 MiB of bf16 rows at a time (in one pass, dsv4k_decode_row_bf16_avx512,
 * or decoded to f32 exactly and their upper halves taken), each conversion
 * checked value by value: any value
 * that is not zero or a finite normal bf16 (a tiny scale times a subnormal
 * code, a huge scale, NaN, Inf — the AVX-512 bf16 instructions flush
 * subnormals) sends the whole call (activations) or that block of rows
 * (weights) to the f32 route. A bf16 matmul then computes the block with
 * f32 accumulation. Only the f32 summation order differs from the f32
 * route. The decoded weights are written in the blocked layout oneDNN's
 * brgemm kernels read (asked for with format `any`, checked by packed_ok:
 * tiles of 16 input pairs × 64 outputs, written by 16×16 register
 * transposes of 16 decoded rows), into a dense [m][NB] result copied to
 * y's columns after: given plain [rows][k] weights and a strided result,
 * oneDNN 2.6 falls back to a gemm that packs the weights itself on every
 * call — at 24 rows per call (an expert's share of a 1024-row chunk on
 * V4-Flash) 2.7× slower, at 96 rows 10 %, at 768 a few %. A layout
 * packed_ok does not know (another oneDNN, AMX) keeps the plain form.
 *
 * f32 (everything else): for each block of NB output rows (as many as
 * 8 MiB of f32 hold at this k: small blocks cost oneDNN a fifth), OpenMP threads
 * decode the weight rows to f32 (exact, dsv4k_decode_row), then one f32
 * matmul computes y[:, n0:n0+NB] = x · blockᵀ with the weights read through
 * strides (the block is [NB][k] row-major, i.e. B = blockᵀ with strides
 * {1, k}) on one thread, or written transposed ([k][NB], B itself) on
 * several, where oneDNN's matmul scales far better on that form.
 *
 * Both take the activation count as a fixed M: oneDNN then picks its brgemm
 * kernels, faster than the gemm a run-time M gets (by about a quarter on one
 * thread, more on two); a primitive per shape and M, cached here and behind
 * that in oneDNN's own primitive cache.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <immintrin.h>
#include <oneapi/dnnl/dnnl.h>
#include "gemm.h"
#include "linear.h"
#include "x86/gemv.h"

#define CACHE 128
/* decoded weights per block: f32 blocks fill F32_BLOCK bytes (at least
 * 16 rows), bf16 blocks BF16_BLOCK */
#ifndef F32_BLOCK
#define F32_BLOCK (8 << 20)
#endif
/* the packed forms' dense result buffer, at most */
#define YTMP_MAX (16 << 20)
#ifndef BF16_BLOCK
#define BF16_BLOCK (4 << 20)
#endif

typedef struct prim {
    int bf;                 /* bf16 source and weights */
    int64_t m, k, nb, ldx, ldy;
    /* weights in oneDNN's blocked layout (see packed_ok): blocks of 16
     * inputs (bf16: 16 input pairs) × nbk outputs; s0, s1 the strides (in
     * values) of the input and output blocks. 0: the plain layout */
    int packed, tried;      /* tried: packing was allowed when it was made */
    int64_t nbk, s0, s1;
    dnnl_primitive_t p;
    dnnl_memory_desc_t src, wei, dst;
} prim;

struct dsv4k_gemm {
    int threads;
    int bf16;          /* bf16 route allowed (dsv4k_gemm_set_bf16) */
    int64_t max_k, max_m, nb;
    dnnl_engine_t eng;
    dnnl_stream_t str;
    float *blk;        /* nb × max_k decoded weights */
    float *aq;         /* max_m × max_k quantised activations */
    int8_t *ex;        /* threads × (max_k / 128 + 1) block exponents */
    uint16_t *xb;      /* max_m × max_k activations in bf16 */
    uint16_t *blkb;    /* bf16 weight block (blkb_bytes) */
    int64_t blkb_bytes;
    float *rowt;       /* threads × 16 × max_k: 16 f32 weight rows per thread */
    int64_t n_bf16, n_f32; /* blocks of output rows per route (dsv4k_gemm_counts) */
    int64_t n_packed;  /* blocks written in oneDNN's blocked layout */
    int packing;       /* the blocked layout allowed (dsv4k_gemm_set_packing) */
    float *ytmp;       /* the packed form's dense result, ytmp_bytes (grown on demand) */
    int64_t ytmp_bytes;
    prim cache[CACHE];
    int n_cache;
};

void dsv4k_gemm_free(dsv4k_gemm *g)
{
    if (!g) return;
    for (int i = 0; i < g->n_cache; i++) dnnl_primitive_destroy(g->cache[i].p);
    if (g->str) dnnl_stream_destroy(g->str);
    if (g->eng) dnnl_engine_destroy(g->eng);
    free(g->blk);
    free(g->aq);
    free(g->ex);
    free(g->xb);
    free(g->blkb);
    free(g->rowt);
    free(g->ytmp);
    free(g);
}

int dsv4k_gemm_bf16_native(void)
{
    /* oneDNN's own view (it honours ONEDNN_MAX_CPU_ISA): AVX-512 with the
     * bf16 instructions, or AMX, which contains that set */
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return ((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) == (unsigned)dnnl_cpu_isa_avx512_core_bf16;
}

dsv4k_gemm *dsv4k_gemm_create(int threads, int64_t max_k, int64_t max_m)
{
    dsv4k_tables_init();
    dsv4k_gemm *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->threads = threads > 0 ? threads : 1;
    g->max_k = max_k;
    g->max_m = max_m;
    g->bf16 = dsv4k_gemm_bf16_native();
    g->packing = 1;
    /* blocks of about 2 MiB of decoded weights, at least 64 rows */
    /* nb × max_k floats: F32_BLOCK bytes, at least 64 rows */
    g->nb = (F32_BLOCK) / (4 * (max_k > 0 ? max_k : 1));
    if (g->nb < 64) g->nb = 64;
    g->nb &= ~(int64_t)15;
    g->blkb_bytes = (BF16_BLOCK) > 2 * 64 * max_k ? (BF16_BLOCK) : 2 * 64 * max_k;
    g->blk = malloc((size_t)(g->nb * max_k) * sizeof(float));
    g->aq = malloc((size_t)(max_m * max_k) * sizeof(float));
    g->ex = malloc((size_t)(g->threads * (max_k / 128 + 1)));
    g->xb = malloc((size_t)(max_m * max_k) * sizeof(uint16_t));
    g->blkb = aligned_alloc(64, (size_t)((g->blkb_bytes + 63) & ~(int64_t)63));
    g->rowt = malloc((size_t)(g->threads * 16 * max_k) * sizeof(float));
    if (!g->blk || !g->aq || !g->ex || !g->xb || !g->blkb || !g->rowt ||
        dnnl_engine_create(&g->eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&g->str, g->eng, dnnl_stream_default_flags) != dnnl_success) {
        dsv4k_gemm_free(g);
        return NULL;
    }
    return g;
}

int dsv4k_gemm_cached(const dsv4k_gemm *g) { return g ? g->n_cache : 0; }

void dsv4k_gemm_set_bf16(dsv4k_gemm *g, int on) { g->bf16 = on && dsv4k_gemm_bf16_native(); }

void dsv4k_gemm_set_packing(dsv4k_gemm *g, int on) { g->packing = on != 0; }
int64_t dsv4k_gemm_packed_blocks(const dsv4k_gemm *g) { return g->n_packed; }

void dsv4k_gemm_counts(const dsv4k_gemm *g, int64_t *bf16_blocks, int64_t *f32_blocks)
{
    if (bf16_blocks) *bf16_blocks = g->n_bf16;
    if (f32_blocks) *f32_blocks = g->n_f32;
}

/* 1 (and p's layout fields set) when oneDNN's chosen weight layout w for
 * B = [k][nb] is one the routes write themselves: blocks of 16 inputs ×
 * nbk outputs, outputs innermost (f32: oneDNN's "BA16a<nbk>b"), or of 16
 * input pairs × nbk outputs × the pair (bf16: "BA16a<nbk>b2a") — the forms
 * its AVX-512 brgemm kernels read — nbk a multiple of 16, no padding of k,
 * no extra data, the whole within cap bytes (the padding of nb to nbk is
 * written as zeros with the block). Otherwise the plain layout is used. */
static int packed_ok(const dnnl_memory_desc_t *w, int bf, int64_t k, int64_t nb, int64_t cap, prim *p)
{
    const dnnl_blocking_desc_t *b = &w->format_desc.blocking;
    int pair = bf ? 2 : 1;
    if (w->ndims != 2 || w->format_kind != dnnl_blocked || w->data_type != (bf ? dnnl_bf16 : dnnl_f32) ||
        w->dims[0] != k || w->dims[1] != nb || w->padded_dims[0] != k || w->offset0 != 0 ||
        w->padded_offsets[0] != 0 || w->padded_offsets[1] != 0 || w->extra.flags != 0 ||
        b->inner_nblks != (bf ? 3 : 2) || b->inner_blks[0] != 16 || b->inner_idxs[0] != 0 || b->inner_idxs[1] != 1 ||
        (bf && (b->inner_blks[2] != 2 || b->inner_idxs[2] != 0)))
        return 0;
    int64_t nbk = b->inner_blks[1], tile = 16 * pair * nbk;
    if (nbk < 16 || nbk % 16 || w->padded_dims[1] != (nb + nbk - 1) / nbk * nbk || k % (16 * pair) ||
        b->strides[0] % pair || b->strides[1] % pair || b->strides[0] < tile || b->strides[1] < tile ||
        (int64_t)dnnl_memory_desc_get_size(w) > cap)
        return 0;
    p->packed = 1;
    p->nbk = nbk;
    p->s0 = b->strides[0];
    p->s1 = b->strides[1];
    return 1;
}

static prim *get_prim(dsv4k_gemm *g, int bf, int64_t m, int64_t k, int64_t nb, int64_t ldx, int64_t ldy)
{
    for (int i = 0; i < g->n_cache; i++) {
        prim *p = &g->cache[i];
        if (p->bf == bf && p->m == m && p->k == k && p->nb == nb && p->ldx == ldx && p->ldy == ldy &&
            p->tried == (g->packing && m * nb * 4 <= YTMP_MAX))
            return p;
    }
    if (g->n_cache == CACHE) {
        /* full: drop the oldest (oneDNN's own primitive cache makes
         * creating it again cheap) */
        dnnl_primitive_destroy(g->cache[0].p);
        memmove(g->cache, g->cache + 1, (CACHE - 1) * sizeof *g->cache);
        g->n_cache--;
    }
    prim *p = &g->cache[g->n_cache];
    memset(p, 0, sizeof *p);
    p->bf = bf; p->m = m; p->k = k; p->nb = nb; p->ldx = ldx; p->ldy = ldy;
    /* the packed form writes a dense [m][nb] result (oneDNN 2.6 takes its
     * brgemm kernels, which read the blocked weights, only for a dense
     * destination; a strided one gets the older gemm, which packs the
     * weights itself): at most YTMP_MAX bytes of it */
    p->tried = g->packing && m * nb * 4 <= YTMP_MAX;
    dnnl_data_type_t dt = bf ? dnnl_bf16 : dnnl_f32;
    dnnl_dims_t ds = { m, k }, ss = { ldx, 1 };
    /* weights [nb][k] row-major (B = blockᵀ through strides), or for f32
     * on several threads [k][nb] (B itself; see f32_rows) */
    int tr = !bf && g->threads > 1;
    dnnl_dims_t dw = { k, nb }, sw = { tr ? nb : 1, tr ? 1 : k };
    dnnl_dims_t dd = { m, nb }, sd = { ldy, 1 };
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd = NULL;
    /* the weights in the layout oneDNN's kernel reads (format any), when
     * it is one packed_ok knows how to write */
    dnnl_dims_t sdd = { nb, 1 };
    if (p->tried && dnnl_memory_desc_init_by_strides(&p->src, 2, ds, dt, ss) == dnnl_success &&
        dnnl_memory_desc_init_by_tag(&p->wei, 2, dw, dt, dnnl_format_tag_any) == dnnl_success &&
        dnnl_memory_desc_init_by_strides(&p->dst, 2, dd, dnnl_f32, sdd) == dnnl_success &&
        dnnl_matmul_desc_init(&md, &p->src, &p->wei, NULL, &p->dst) == dnnl_success &&
        dnnl_primitive_desc_create(&pd, &md, NULL, g->eng, NULL) == dnnl_success) {
        const dnnl_memory_desc_t *q = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        int64_t cap = bf ? g->blkb_bytes : g->nb * g->max_k * 4;
        if (q && packed_ok(q, bf, k, nb, cap, p) && dnnl_primitive_create(&p->p, pd) == dnnl_success) {
            p->wei = *q;
            dnnl_primitive_desc_destroy(pd);
            g->n_cache++;
            return p;
        }
        dnnl_primitive_desc_destroy(pd);
        pd = NULL;
        p->packed = 0;
    }
    if (dnnl_memory_desc_init_by_strides(&p->src, 2, ds, dt, ss) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&p->wei, 2, dw, dt, sw) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&p->dst, 2, dd, dnnl_f32, sd) != dnnl_success ||
        dnnl_matmul_desc_init(&md, &p->src, &p->wei, NULL, &p->dst) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &md, NULL, g->eng, NULL) != dnnl_success)
        return NULL;
    dnnl_status_t st = dnnl_primitive_create(&p->p, pd);
    dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) return NULL;
    g->n_cache++;
    return p;
}

static int mem(dnnl_memory_t *out, const dnnl_memory_desc_t *md, dnnl_engine_t eng, void *ptr)
{
    return dnnl_memory_create(out, md, eng, ptr) == dnnl_success ? 0 : -1;
}

static int exec(dsv4k_gemm *g, prim *p, const void *x, void *wt, float *y)
{
    dnnl_memory_t ms = NULL, mw = NULL, md = NULL;
    int bad = mem(&ms, &p->src, g->eng, (void *)x) || mem(&mw, &p->wei, g->eng, wt) || mem(&md, &p->dst, g->eng, y);
    if (!bad) {
        dnnl_exec_arg_t args[3] = { { DNNL_ARG_SRC, ms }, { DNNL_ARG_WEIGHTS, mw }, { DNNL_ARG_DST, md } };
        bad = dnnl_primitive_execute(p->p, g->str, 3, args) != dnnl_success ||
              dnnl_stream_wait(g->str) != dnnl_success;
    }
    if (ms) dnnl_memory_destroy(ms);
    if (mw) dnnl_memory_destroy(mw);
    if (md) dnnl_memory_destroy(md);
    return bad ? -1 : 0;
}

/* a block's product into y's columns [n0, n0 + nb): directly where p
 * writes y's own layout, else (the packed forms: a dense result) through
 * g->ytmp, copied into place by the threads */
static int exec_into(dsv4k_gemm *g, prim *p, const void *x, void *wt, float *y, int64_t ldy, int64_t m, int64_t nb,
                     int64_t n0)
{
    if (!p->packed || ldy == nb) return exec(g, p, x, wt, y + n0);
    if (g->ytmp_bytes < m * nb * 4) {
        free(g->ytmp);
        g->ytmp_bytes = 0;
        if (!(g->ytmp = aligned_alloc(64, (size_t)((m * nb * 4 + 63) & ~(int64_t)63)))) return -1;
        g->ytmp_bytes = m * nb * 4;
    }
    if (exec(g, p, x, wt, g->ytmp)) return -1;
    const float *yt = g->ytmp;
#pragma omp parallel for num_threads(g->threads) schedule(static)
    for (int64_t i = 0; i < m; i++) memcpy(y + i * ldy + n0, yt + i * nb, (size_t)nb * 4);
    return 0;
}

/* ---- f32 → bf16, exact or refused ---------------------------------------- */

/* 1 when f is ±0 or a finite normal number whose low 16 bits are zero */
static inline int bf16_exact(uint32_t u)
{
    uint32_t e = (u >> 23) & 0xff;
    return (u & 0xffff) == 0 && (e != 0xff) && (e != 0 || (u & 0x7fffffff) == 0);
}

static int to_bf16_c(const float *src, int64_t n, uint16_t *dst)
{
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = dsv4k_f32_bits(src[i]);
        ok &= bf16_exact(u);
        dst[i] = (uint16_t)(u >> 16);
    }
    return ok ? 0 : -1;
}

__attribute__((target("avx512f,avx512bw"))) static int to_bf16_512(const float *src, int64_t n, uint16_t *dst)
{
    const __m512i lo = _mm512_set1_epi32(0xffff), ex = _mm512_set1_epi32(0x7f800000);
    const __m512i mag = _mm512_set1_epi32(0x7fffffff);
    __mmask16 bad = 0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i u = _mm512_loadu_si512(src + i);
        __m512i e = _mm512_and_si512(u, ex);
        /* low half set, exponent all ones, or exponent zero with a nonzero magnitude */
        bad |= _mm512_test_epi32_mask(u, lo) | _mm512_cmpeq_epi32_mask(e, ex) |
               (_mm512_cmpeq_epi32_mask(e, _mm512_setzero_si512()) & _mm512_test_epi32_mask(u, mag));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtepi32_epi16(_mm512_srli_epi32(u, 16)));
    }
    int rest = to_bf16_c(src + i, n - i, dst + i);
    return bad || rest ? -1 : 0;
}

/* dst = src as bf16 when every value is exactly a bf16 zero or normal;
 * else -1 (dst then undefined) */
static int to_bf16(const float *src, int64_t n, uint16_t *dst)
{
    return dsv4k_have_avx512() ? to_bf16_512(src, n, dst) : to_bf16_c(src, n, dst);
}

int dsv4k_gemm_to_bf16(const float *src, int64_t n, uint16_t *dst) { return to_bf16(src, n, dst); }

/* ---- the f32 route's transposition -------------------------------------- */

static void transpose_c(const float *t, int64_t k, int rn, float *o, int64_t nb, int64_t c0)
{
    for (int64_t c = c0; c < k; c++)
        for (int i = 0; i < rn; i++) o[c * nb + i] = t[i * k + c];
}

static void tile_c(const uint32_t *t, int64_t ldt, uint32_t *o, int64_t ldo)
{
    for (int c = 0; c < 16; c++)
        for (int i = 0; i < 16; i++) o[c * ldo + i] = t[i * ldt + c];
}

/* one 16 × 16 tile of 32-bit values: o[c·ldo + i] = t[i·ldt + c] */
static void tile16(const float *t, int64_t ldt, float *o, int64_t ldo)
{
    if (dsv4k_have_avx512()) {
        dsv4k_tile16_avx512(t, ldt, o, ldo);
    } else if (dsv4k_have_avx2()) {
        for (int a = 0; a < 16; a += 8)
            for (int b = 0; b < 16; b += 8) dsv4k_tile8_avx2(t + a * ldt + b, ldt, o + b * ldo + a, ldo);
    } else {
        tile_c((const uint32_t *)(const void *)t, ldt, (uint32_t *)(void *)o, ldo);
    }
}

static void transpose_512(const float *t, int64_t k, float *o, int64_t nb)
{
    int64_t c0 = 0;
    for (; c0 + 16 <= k; c0 += 16) dsv4k_tile16_avx512(t + c0, k, o + c0 * nb, nb);
    transpose_c(t, k, 16, o, nb, c0);
}

/* AVX2: each 8 rows in 8 × 8 tiles, the rows and columns past them by the
 * loop; the tiles of one column block one after the other, so that each
 * output line is written whole while it is in cache */
static void transpose_avx2(const float *t, int64_t k, int rn, float *o, int64_t nb)
{
    int64_t c0 = k / 8 * 8;
    int r8 = rn / 8 * 8;
    for (int64_t c = 0; c < c0; c += 8)
        for (int i = 0; i < r8; i += 8) dsv4k_tile8_avx2(t + i * k + c, k, o + c * nb + i, nb);
    for (int64_t c = 0; c < c0; c++)
        for (int i = r8; i < rn; i++) o[c * nb + i] = t[i * k + c];
    transpose_c(t, k, rn, o, nb, c0);
}

void dsv4k_gemm_transpose_rows(const float *t, int64_t k, int rn, float *o, int64_t nb, int simd)
{
    if (simd && rn == 16 && dsv4k_have_avx512()) transpose_512(t, k, o, nb);
    else if (simd && dsv4k_have_avx2()) transpose_avx2(t, k, rn, o, nb);
    else transpose_c(t, k, rn, o, nb, 0);
}

/* ---- the two routes ------------------------------------------------------ */

static void decode_f32(const dsv4k_weight *w, int64_t r, float *dst, int simd)
{
    if (!simd || dsv4k_decode_row_avx2(w, r, dst) != 0) dsv4k_decode_row(w, r, dst);
}

/* output rows [n0, n1) by the f32 route: blocks of nb rows from n0 */
static int f32_rows(dsv4k_gemm *g, const dsv4k_weight *w, const float *x, int64_t ldx, int64_t m, float *y,
                    int64_t ldy, int64_t n0, int64_t n1)
{
    int64_t k = w->k;
    int simd = dsv4k_have_avx2();
    /* as many rows as the buffer holds at this k (a multiple of 64, so a
     * ragged block padded for the packed form fits; of 16 below 64) */
    int64_t cap = g->nb * g->max_k / k;
    cap &= cap >= 64 ? ~(int64_t)63 : ~(int64_t)15;
    for (; n0 < n1; n0 += cap) {
        int64_t nb = n1 - n0 < cap ? n1 - n0 : cap;
        prim *p = get_prim(g, 0, m, k, nb, ldx, ldy);
        if (!p) return -1;
        /* decoded by oneDNN's own OpenMP threads: they are awake between
         * the products anyway, and the pool's workers would compete with
         * them for the cores while they spin. On several threads the block
         * is written transposed, blk[c][r] (16 rows decoded, then a cache
         * line of them per column): oneDNN's f32 matmul on the strided
         * form scaled 1.25x from one thread to two, on this form 1.85x; on
         * one thread the transposition would cost about 10 % */
        if (p->packed) {
            /* 16 rows decoded, then each 16 inputs of them one tile of the
             * blocked layout: input kk of row r at (r / nbk)·s1 +
             * (kk / 16)·s0 + (kk % 16)·nbk + r % nbk; rows past nb zero */
            int64_t groups = (nb + p->nbk - 1) / p->nbk * p->nbk / 16;
#pragma omp parallel for num_threads(g->threads) schedule(static)
            for (int64_t gi = 0; gi < groups; gi++) {
                float *t = g->rowt + (int64_t)omp_get_thread_num() * 16 * g->max_k;
                int64_t r0 = gi * 16;
                for (int64_t i = 0; i < 16; i++) {
                    if (r0 + i < nb) decode_f32(w, n0 + r0 + i, t + i * k, simd);
                    else memset(t + i * k, 0, (size_t)k * 4);
                }
                float *o = g->blk + (r0 / p->nbk) * p->s1 + r0 % p->nbk;
                for (int64_t kb = 0; kb < k / 16; kb++) tile16(t + kb * 16, k, o + kb * p->s0, p->nbk);
            }
        } else if (g->threads == 1) {
            for (int64_t r = 0; r < nb; r++) decode_f32(w, n0 + r, g->blk + r * k, simd);
        } else {
#pragma omp parallel for num_threads(g->threads) schedule(static)
            for (int64_t r0 = 0; r0 < nb; r0 += 16) {
                float *t = g->rowt + (int64_t)omp_get_thread_num() * 16 * g->max_k;
                int64_t rn = nb - r0 < 16 ? nb - r0 : 16;
                for (int64_t i = 0; i < rn; i++) decode_f32(w, n0 + r0 + i, t + i * k, simd);
                dsv4k_gemm_transpose_rows(t, k, (int)rn, g->blk + r0, nb, 1);
            }
        }
        if (exec_into(g, p, x, g->blk, y, ldy, m, nb, n0)) return -1;
        g->n_f32++;
        g->n_packed += p->packed;
    }
    return 0;
}

/* rows of a bf16 block: about blkb_bytes of weights, a multiple of 64 (a
 * refused block goes through the f32 route's own blocks; a ragged last
 * block padded to 64 rows still fits) */
static int64_t bf16_rows(const dsv4k_gemm *g, int64_t k)
{
    return (g->blkb_bytes / (2 * k)) & ~(int64_t)63;
}

/* row r of w in bf16 into dst, exactly, or -1: in one pass where the CPU
 * and the row allow (dsv4k_decode_row_bf16_avx512), else decoded to f32 in
 * t and checked (the same bits) */
static int decode_bf16(const dsv4k_weight *w, int64_t r, float *t, uint16_t *dst, int simd)
{
    if (dsv4k_have_avx512() && dsv4k_decode_row_bf16_avx512(w, r, dst) == 0) return 0;
    decode_f32(w, r, t, simd);
    return to_bf16(t, w->k, dst);
}

/* rows [r0, r0 + 16) of a bf16 block of nb rows from n0 into p's blocked
 * layout at g->blkb: decoded to bf16 rows in the thread's buffer (rows at
 * or past nb zero: the layout's padding), then each 32-input block of them
 * as one tile of 16 rows × 16 input pairs. 1 when a weight is refused. */
static int pack16(dsv4k_gemm *g, const prim *p, const dsv4k_weight *w, int64_t n0, int64_t nb, int64_t r0, int simd)
{
    int64_t k = w->k, tid = omp_get_thread_num();
    /* a pair of inputs (kk, kk + 1) of row r sits, in 32-bit units, at
     * ((r / nbk)·s1 + (kk / 32)·s0) / 2 + ((kk % 32) / 2)·nbk + r % nbk */
    uint32_t *o = (uint32_t *)g->blkb + (r0 / p->nbk) * p->s1 / 2 + r0 % p->nbk;
    int avx512 = dsv4k_have_avx512();
    /* in one pass where the decoder takes all 16 rows, else row by row */
    int rn = nb - r0 < 16 ? (int)(nb - r0 > 0 ? nb - r0 : 0) : 16;
    if (avx512 && dsv4k_decode_tile_bf16_avx512(w, n0 + r0, rn, o, p->nbk, p->s0 / 2) == 0) return 0;
    uint16_t *tb = (uint16_t *)(g->rowt + tid * 16 * g->max_k);
    float *t = g->rowt + tid * 16 * g->max_k + 8 * g->max_k;
    for (int64_t i = 0; i < 16; i++) {
        if (r0 + i >= nb) memset(tb + i * k, 0, (size_t)k * 2);
        else if (decode_bf16(w, n0 + r0 + i, t, tb + i * k, simd)) return 1;
    }
    const uint32_t *src = (const uint32_t *)tb;
    for (int64_t kb = 0; kb < k / 32; kb++) {
        if (avx512) dsv4k_tile16_avx512((const float *)(src + kb * 16), k / 2, (float *)(o + kb * p->s0 / 2), p->nbk);
        else tile_c(src + kb * 16, k / 2, o + kb * p->s0 / 2, p->nbk);
    }
    return 0;
}

/* the bf16 route: xb the activations in bf16 (rows k apart), xf the same
 * in f32, rows ldxf apart (for refused blocks) */
static int bf16_run(dsv4k_gemm *g, const dsv4k_weight *w, const float *xf, int64_t ldxf, int64_t m, float *y,
                    int64_t ldy)
{
    int64_t k = w->k, n = w->n, rows = bf16_rows(g, k);
    int simd = dsv4k_have_avx2();
    for (int64_t n0 = 0; n0 < n; n0 += rows) {
        int64_t nb = n - n0 < rows ? n - n0 : rows;
        prim *p = get_prim(g, 1, m, k, nb, k, ldy);
        if (!p) {
            /* oneDNN made no bf16 matmul after all: f32 from here on */
            g->bf16 = 0;
            return f32_rows(g, w, xf, ldxf, m, y, ldy, n0, n);
        }
        int bad = 0;
        if (p->packed) {
            int64_t groups = (nb + p->nbk - 1) / p->nbk * p->nbk / 16;
#pragma omp parallel for num_threads(g->threads) schedule(static) reduction(|: bad)
            for (int64_t gi = 0; gi < groups; gi++)
                if (!bad) bad |= pack16(g, p, w, n0, nb, gi * 16, simd);
        } else {
#pragma omp parallel for num_threads(g->threads) schedule(static) reduction(|: bad)
            for (int64_t r = 0; r < nb; r++) {
                float *t = g->rowt + (int64_t)omp_get_thread_num() * 16 * g->max_k;
                bad |= decode_bf16(w, n0 + r, t, g->blkb + r * k, simd) != 0;
            }
        }
        if (bad) {
            /* a weight outside bf16's normal range (or not finite) */
            if (f32_rows(g, w, xf, ldxf, m, y, ldy, n0, n0 + nb)) return -1;
            continue;
        }
        if (exec_into(g, p, g->xb, g->blkb, y, ldy, m, nb, n0)) return -1;
        g->n_bf16++;
        g->n_packed += p->packed;
    }
    return 0;
}

int dsv4k_gemm_run(dsv4k_gemm *g, const dsv4k_weight *w, const float *x, int64_t ldx, int64_t m, float *y,
                   int64_t ldy, int aq)
{
    int64_t k = w->k, n = w->n;
    if (m <= 0 || n <= 0) return 0;
    if (k > g->max_k || m > g->max_m) return -1;
    omp_set_num_threads(g->threads);
    int bfw = g->bf16 && (w->fmt == DSV4K_W_FP8 || w->fmt == DSV4K_W_FP4 || w->fmt == DSV4K_W_BF16);
    if (aq && k % 128 == 0) {
        int64_t nex = k / 128 + 1;
#pragma omp parallel for num_threads(g->threads) schedule(static)
        for (int64_t i = 0; i < m; i++)
            dsv4k_act_quant_dq(x + i * ldx, k, g->aq + i * k, g->ex + (int64_t)omp_get_thread_num() * nex, 1);
        x = g->aq;
        ldx = k;
    }
    /* bf16: activations that are all bf16 zeros or normal numbers — the
     * quantised ones (e4m3 times a power of two) unless a subnormal,
     * infinite or NaN one refuses the call, and unquantised ones that
     * happen to be bf16 values (the forward pass keeps its unquantised
     * activations in f32: they refuse at the first row of each thread) —
     * against weights with power-of-two or no scales: exact products */
    if (bfw) {
        int bad = 0;
#pragma omp parallel for num_threads(g->threads) schedule(static) reduction(|: bad)
        for (int64_t i = 0; i < m; i++)
            if (!bad) bad |= to_bf16(x + i * ldx, k, g->xb + i * k) != 0;
        if (!bad) return bf16_run(g, w, x, ldx, m, y, ldy);
    }
    return f32_rows(g, w, x, ldx, m, y, ldy, 0, n);
}
