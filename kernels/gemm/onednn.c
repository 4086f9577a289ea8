/*
 * kernels/gemm/onednn.c — the oneDNN matmul route for products of many
 * activation rows (see gemm.h).
 *
 * For each block of NB output rows: OpenMP threads decode the weight rows
 * to f32 (exact, dsv4k_decode_row), then one f32 matmul computes
 * y[:, n0:n0+NB] = x · blockᵀ with the weights read through strides (the
 * block is [NB][k] row-major, i.e. B = blockᵀ with strides {1, k}). M is a
 * run-time dimension, so one primitive serves every batch size of a shape.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <oneapi/dnnl/dnnl.h>
#include "gemm.h"
#include "linear.h"
#include "x86/gemv.h"

#define CACHE 64

typedef struct prim {
    int64_t k, nb, ldx, ldy;
    dnnl_primitive_t p;
    dnnl_memory_desc_t src, wei, dst;
} prim;

struct dsv4k_gemm {
    int threads;
    int64_t max_k, max_m, nb;
    dnnl_engine_t eng;
    dnnl_stream_t str;
    float *blk;        /* nb × max_k decoded weights */
    float *aq;         /* max_m × max_k quantised activations */
    int8_t *ex;
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
    free(g);
}

dsv4k_gemm *dsv4k_gemm_create(int threads, int64_t max_k, int64_t max_m)
{
    dsv4k_tables_init();
    dsv4k_gemm *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->threads = threads > 0 ? threads : 1;
    g->max_k = max_k;
    g->max_m = max_m;
    /* blocks of about 2 MiB of decoded weights, at least 64 rows */
    g->nb = (2 << 20) / (4 * (max_k > 0 ? max_k : 1));
    if (g->nb < 64) g->nb = 64;
    g->nb &= ~(int64_t)15;
    g->blk = malloc((size_t)(g->nb * max_k) * sizeof(float));
    g->aq = malloc((size_t)(max_m * max_k) * sizeof(float));
    g->ex = malloc((size_t)(max_k / 128 + 1));
    if (!g->blk || !g->aq || !g->ex || dnnl_engine_create(&g->eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&g->str, g->eng, dnnl_stream_default_flags) != dnnl_success) {
        dsv4k_gemm_free(g);
        return NULL;
    }
    return g;
}

int dsv4k_gemm_cached(const dsv4k_gemm *g) { return g ? g->n_cache : 0; }

static prim *get_prim(dsv4k_gemm *g, int64_t k, int64_t nb, int64_t ldx, int64_t ldy)
{
    for (int i = 0; i < g->n_cache; i++) {
        prim *p = &g->cache[i];
        if (p->k == k && p->nb == nb && p->ldx == ldx && p->ldy == ldy) return p;
    }
    if (g->n_cache == CACHE) {
        /* full: drop the oldest */
        dnnl_primitive_destroy(g->cache[0].p);
        memmove(g->cache, g->cache + 1, (CACHE - 1) * sizeof *g->cache);
        g->n_cache--;
    }
    prim *p = &g->cache[g->n_cache];
    memset(p, 0, sizeof *p);
    p->k = k; p->nb = nb; p->ldx = ldx; p->ldy = ldy;
    dnnl_dims_t ds = { DNNL_RUNTIME_DIM_VAL, k }, ss = { ldx, 1 };
    dnnl_dims_t dw = { k, nb }, sw = { 1, k };
    dnnl_dims_t dd = { DNNL_RUNTIME_DIM_VAL, nb }, sd = { ldy, 1 };
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_memory_desc_init_by_strides(&p->src, 2, ds, dnnl_f32, ss) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&p->wei, 2, dw, dnnl_f32, sw) != dnnl_success ||
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

static int mem(dnnl_memory_t *out, const dnnl_memory_desc_t *md, int64_t m, dnnl_engine_t eng, void *ptr)
{
    dnnl_memory_desc_t d = *md;
    if (d.dims[0] == DNNL_RUNTIME_DIM_VAL) d.dims[0] = m;
    return dnnl_memory_create(out, &d, eng, ptr) == dnnl_success ? 0 : -1;
}

int dsv4k_gemm_run(dsv4k_gemm *g, const dsv4k_weight *w, const float *x, int64_t ldx, int64_t m, float *y,
                   int64_t ldy, int aq)
{
    int64_t k = w->k, n = w->n;
    if (m <= 0 || n <= 0) return 0;
    if (k > g->max_k || m > g->max_m) return -1;
    if (aq && k % 128 == 0) {
        for (int64_t i = 0; i < m; i++) dsv4k_act_quant_dq(x + i * ldx, k, g->aq + i * k, g->ex, 1);
        x = g->aq;
        ldx = k;
    }
    omp_set_num_threads(g->threads);
    int simd = dsv4k_have_avx2();
    for (int64_t n0 = 0; n0 < n; n0 += g->nb) {
        int64_t nb = n - n0 < g->nb ? n - n0 : g->nb;
        prim *p = get_prim(g, k, nb, ldx, ldy);
        if (!p) return -1;
        /* decoded by oneDNN's own OpenMP threads: they are awake between
         * the products anyway, and the pool's workers would compete with
         * them for the cores while they spin */
#pragma omp parallel for num_threads(g->threads) schedule(static)
        for (int64_t r = 0; r < nb; r++)
            if (!simd || dsv4k_decode_row_avx2(w, n0 + r, g->blk + r * k) != 0) dsv4k_decode_row(w, n0 + r, g->blk + r * k);
        dnnl_memory_t ms = NULL, mw = NULL, md = NULL;
        int bad = mem(&ms, &p->src, m, g->eng, (void *)x) || mem(&mw, &p->wei, m, g->eng, g->blk) ||
                  mem(&md, &p->dst, m, g->eng, y + n0);
        if (!bad) {
            dnnl_exec_arg_t args[3] = { { DNNL_ARG_SRC, ms }, { DNNL_ARG_WEIGHTS, mw }, { DNNL_ARG_DST, md } };
            bad = dnnl_primitive_execute(p->p, g->str, 3, args) != dnnl_success ||
                  dnnl_stream_wait(g->str) != dnnl_success;
        }
        if (ms) dnnl_memory_destroy(ms);
        if (mw) dnnl_memory_destroy(mw);
        if (md) dnnl_memory_destroy(md);
        if (bad) return -1;
    }
    return 0;
}
