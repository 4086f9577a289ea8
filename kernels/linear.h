/*
 * kernels/linear.h — y = x · Wᵀ for weights in their stored formats
 * (BF16, F32, FP8 e4m3 with 128×128 block scales, FP4 e2m1 with 1×32 scales).
 *
 * dsv4k_linear() is the optimised twin of dsv4k_linear_ref() (kernels.h):
 * same result up to f32 accumulation order. Small m (decode, few tokens) uses
 * hand-written dequantising mat-vec kernels (AVX-512 / AVX2 / scalar by CPU
 * dispatch); large m goes through oneDNN matmul primitives, created once per
 * shape and cached in the dsv4k_linear_ctx.
 */
#ifndef DSV4_LINEAR_H
#define DSV4_LINEAR_H

#include "kernels.h"
#include "pool.h"

typedef struct dsv4k_linear_ctx dsv4k_linear_ctx;

/* One per context (owns the oneDNN engine/stream, primitive cache, scratch).
 * pool may be NULL (serial). NULL on failure. */
dsv4k_linear_ctx *dsv4k_linear_ctx_create(dsv4k_pool *pool);
void dsv4k_linear_ctx_free(dsv4k_linear_ctx *c);

/*
 * y[i][j] = Σ_c a[i][c] · W[j][c], x f32 [m][w->k], y f32 [m][w->n], as
 * dsv4k_linear_ref (aq != 0: activations quantised per 128-block to e4m3
 * with power-of-two scales first, spec §4.3). Returns 0, or -1 when scratch
 * memory or a oneDNN primitive could not be had (y then undefined).
 */
int dsv4k_linear(dsv4k_linear_ctx *c, const dsv4k_weight *w, const float *x, int64_t m,
                 float *y, int aq);

#endif
