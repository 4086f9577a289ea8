/*
 * kernels/gemm/gemm.h — y = x · Wᵀ for many activation rows through oneDNN
 * matmul primitives (kernels/gemm/onednn.c).
 *
 * oneDNN 2.6 takes no FP8/FP4, so weights are dequantised exactly to f32 a
 * block of output rows at a time (by oneDNN's OpenMP threads) and multiplied by
 * an f32 matmul; primitives are created once per shape (M is a run-time
 * dimension) and cached. Same contract as dsv4k_linear (linear.h); results
 * agree with dsv4k_linear_ref up to f32 summation order.
 */
#ifndef DSV4_GEMM_H
#define DSV4_GEMM_H

#include "kernels.h"

typedef struct dsv4k_gemm dsv4k_gemm;

/* weights of up to max_k inputs, up to max_m activation rows; threads: the
 * OpenMP threads oneDNN (and the weight decoding) may use. NULL when oneDNN
 * is unusable or on failure. */
dsv4k_gemm *dsv4k_gemm_create(int threads, int64_t max_k, int64_t max_m);
void dsv4k_gemm_free(dsv4k_gemm *g);

/* as dsv4k_linear; returns 0, or -1 when k or m exceed the sizes given at
 * creation (y unchanged) or oneDNN fails (y partly written: callers then
 * compute the product another way) */
int dsv4k_gemm_run(dsv4k_gemm *g, const dsv4k_weight *w, const float *x, int64_t ldx, int64_t m, float *y,
                   int64_t ldy, int aq);

/* primitives created so far (tests: the cache is reused) */
int dsv4k_gemm_cached(const dsv4k_gemm *g);

#endif
