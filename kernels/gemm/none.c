/*
 * kernels/gemm/none.c — the oneDNN route left out (-Donednn=false, e.g. a
 * ThreadSanitizer build): no gemm object is ever made, so every product
 * takes dsv4k_linear on the context's pool.
 */
#include <stddef.h>
#include "gemm.h"

dsv4k_gemm *dsv4k_gemm_create(int threads, int64_t max_k, int64_t max_m)
{
    (void)threads; (void)max_k; (void)max_m;
    return NULL;
}

void dsv4k_gemm_free(dsv4k_gemm *g) { (void)g; }

int dsv4k_gemm_run(dsv4k_gemm *g, const dsv4k_weight *w, const float *x, int64_t ldx, int64_t m, float *y,
                   int64_t ldy, int aq)
{
    (void)g; (void)w; (void)x; (void)ldx; (void)m; (void)y; (void)ldy; (void)aq;
    return -1;
}

int dsv4k_gemm_cached(const dsv4k_gemm *g) { (void)g; return 0; }
int dsv4k_gemm_bf16_native(void) { return 0; }
void dsv4k_gemm_set_bf16(dsv4k_gemm *g, int on) { (void)g; (void)on; }

void dsv4k_gemm_set_packing(dsv4k_gemm *g, int on) { (void)g; (void)on; }
int64_t dsv4k_gemm_packed_blocks(const dsv4k_gemm *g) { (void)g; return 0; }

void dsv4k_gemm_counts(const dsv4k_gemm *g, int64_t *bf16_blocks, int64_t *f32_blocks)
{
    (void)g;
    if (bf16_blocks) *bf16_blocks = 0;
    if (f32_blocks) *f32_blocks = 0;
}

int dsv4k_gemm_to_bf16(const float *src, int64_t n, uint16_t *dst)
{
    (void)src; (void)n; (void)dst;
    return -1;
}
