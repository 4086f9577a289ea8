/*
 * kernels/gemm/gemm.h — y = x · Wᵀ for many activation rows through oneDNN
 * matmul primitives (kernels/gemm/onednn.c).
 *
 * oneDNN 2.6 takes no FP8/FP4, so weights are dequantised exactly a block of
 * output rows at a time (by oneDNN's OpenMP threads) and multiplied by a
 * matmul. In reference
 * numerics (aq, k % 128 == 0) on CPUs where oneDNN runs bf16 natively
 * (AVX-512 BF16, AMX), FP8 (E8M0 scales), FP4 and BF16 weights go through a
 * bf16 matmul: quantised activations and those weights are bf16 values, so
 * the products are exact; a value outside bf16's normal range refuses the
 * call (an activation) or its block of rows (a weight) to the f32 route;
 * unquantised activations that are all bf16 values take the bf16 route too.
 * Everything else (float numerics, F32 weights, F32-scaled FP8, k % 128)
 * takes an f32 matmul. Primitives take the row count as a fixed M (faster
 * kernels than a run-time M) and are cached per shape and M. Same contract
 * as dsv4k_linear (linear.h); results agree with dsv4k_linear_ref up to f32
 * summation order.
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

/* 1 when oneDNN runs bf16 matmuls natively here (AVX-512 BF16 or AMX, as
 * oneDNN sees the CPU, ONEDNN_MAX_CPU_ISA included) */
int dsv4k_gemm_bf16_native(void);
/* the bf16 route on (default where native) or off (tests, benchmarks);
 * never on where not native */
void dsv4k_gemm_set_bf16(dsv4k_gemm *g, int on);
/* blocks of output rows computed so far by each route (tests) */
void dsv4k_gemm_counts(const dsv4k_gemm *g, int64_t *bf16_blocks, int64_t *f32_blocks);
/* both routes write their decoded weights in the blocked layout oneDNN's
 * kernel reads, where it is one they know (default on), or plain (off:
 * tests, benchmarks); and how many blocks took the blocked layout so far */
void dsv4k_gemm_set_packing(dsv4k_gemm *g, int on);
int64_t dsv4k_gemm_packed_blocks(const dsv4k_gemm *g);
/* dst[i] = bf16 bits of src[i] for i < n, returning 0 when every value is
 * exactly a bf16 zero or finite normal number, else -1 (dst then
 * undefined) */
int dsv4k_gemm_to_bf16(const float *src, int64_t n, uint16_t *dst);

/* o[c·nb + i] = t[i·k + c] for i < rn, c < k: the f32 route's transposition
 * of rn <= 16 decoded rows into its [k][nb] block, by 16×16 tiles in
 * AVX-512 registers when simd, rn == 16 and the CPU has it, else by the
 * scalar loop (the twin the test compares it with) */
void dsv4k_gemm_transpose_rows(const float *t, int64_t k, int rn, float *o, int64_t nb, int simd);

#endif
