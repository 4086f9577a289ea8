/*
 * kernels/linear.h — y = x · Wᵀ for weights in their stored formats
 * (BF16, F32, FP8 e4m3 with 128×128 block scales, FP4 e2m1 with 1×32 scales).
 *
 * dsv4k_linear() is the optimised twin of dsv4k_linear_ref() (kernels.h):
 * same result up to f32 accumulation order. It splits the output rows over
 * the pool; each row is decoded exactly to f32, in AVX-512 or AVX2
 * registers where the CPU allows (kernels/x86/gemv_avx512.c, gemv_avx2.c),
 * else through lookup tables (kernels/linear.c).
 */
#ifndef DSV4_LINEAR_H
#define DSV4_LINEAR_H

#include "kernels.h"
#include "pool.h"

typedef struct dsv4k_linear_ctx dsv4k_linear_ctx;

/* One per context: per-thread row buffers for weights of up to max_k
 * inputs and a buffer for max_m quantised activation rows. pool may be NULL
 * (serial). NULL on failure. */
dsv4k_linear_ctx *dsv4k_linear_ctx_create(dsv4k_pool *pool, int64_t max_k, int64_t max_m);
void dsv4k_linear_ctx_free(dsv4k_linear_ctx *c);
/* the highest kernel set the context may use (tests, benchmarks): the
 * portable kernel, AVX2, AVX-512 (F/BW/VL), or AVX-512 with its VNNI, VBMI
 * and BF16 extensions (each only where the CPU has it); default
 * DSV4K_ISA_BEST */
enum { DSV4K_ISA_PORTABLE = 0, DSV4K_ISA_AVX2 = 1, DSV4K_ISA_AVX512 = 2, DSV4K_ISA_AVX512X = 3, DSV4K_ISA_BEST = 3 };
void dsv4k_linear_set_isa(dsv4k_linear_ctx *c, int isa);
/* on (default): a single activation row of an FP8 product, or of an FP4
 * product in reference numerics (aq), on the AVX2 or AVX-512 level takes
 * the kernels with integer weight decoding (dsv4k_rows_fp4q_avx2/_avx512,
 * dsv4k_rows_fp8q_avx2/_avx512); off: the f32 ones (tests, benchmarks) */
void dsv4k_linear_set_intq(dsv4k_linear_ctx *c, int on);
/* on (default): dsv4k_linear_batch runs its jobs in one parallel loop;
 * off: one dsv4k_linear call per job (the same results; benchmarks) */
void dsv4k_linear_set_batch(dsv4k_linear_ctx *c, int on);
/* products of 2..DSV4K_MROWS_EXACT (kernels.h) activation rows: on (1,
 * default), every row's result is bit for bit the one it gets alone
 * (m = 1), in pieces of up to DSV4K_MROWS_MAX rows: the weights decoded
 * once for all rows where a kernel of gemv_mrows_*.c takes the route and
 * measured faster (FP4 on VNNI), else the one-row kernels over cache-sized
 * blocks of weight rows (the weights still read from memory once); 2:
 * always the blocked one-row calls; 3: every m-row kernel there is; 0: the
 * f32 kernels of many rows (another summation order; tests, benchmarks) */
void dsv4k_linear_set_mrows(dsv4k_linear_ctx *c, int on);
/* the most activation rows whose every row is bit for bit its one-row
 * product (DSV4K_MROWS_EXACT; 1 with the old route, mode 0) */
int dsv4k_linear_rows_exact(const dsv4k_linear_ctx *c);

/*
 * y[i][j] = Σ_c a[i][c] · W[j][c], x f32 [m][w->k] (rows ldx apart), y f32
 * [m][w->n] (rows ldy apart), as
 * dsv4k_linear_ref (aq != 0: activations quantised per 128-block to e4m3
 * with power-of-two scales first, spec §4.3). Returns 0, or -1 when k or m
 * exceed what the context was created for (y then unchanged).
 */
int dsv4k_linear(dsv4k_linear_ctx *c, const dsv4k_weight *w, const float *x, int64_t ldx, int64_t m,
                 float *y, int64_t ldy, int aq);

/* one product of dsv4k_linear_batch: y[0..w->n) from the single
 * activation row x[0..w->k) */
typedef struct dsv4k_linear_job {
    const dsv4k_weight *w;
    const float *x;
    float *y;
} dsv4k_linear_job;

/* most jobs dsv4k_linear_batch takes in one parallel loop (more go in
 * several) */
#define DSV4K_BATCH_MAX 64

/*
 * The n jobs' one-row products, each y bit for bit what dsv4k_linear(c, w,
 * x, w->k, 1, y, w->n, aq) gives it, in one parallel loop where the routes
 * allow (FP4 and FP8 in the integer / vdpbf16ps kernels, FP8 with f32
 * activations, BF16; AVX-512 with VNNI and BF16): each distinct activation
 * row (same pointer, width and route) prepared once, the pool woken once.
 * Other jobs, and rows a preparation refuses, run through dsv4k_linear.
 * The jobs must be independent: no y may overlap another job's x or y.
 * Returns 0, or -1 when some job's dsv4k_linear returned -1 (the others
 * are still computed).
 */
int dsv4k_linear_batch(dsv4k_linear_ctx *c, const dsv4k_linear_job *jobs, int n, int aq);

/* the activations an FP8/FP4 product sees (spec §4.3): x[0..k) (k a
 * multiple of 128) quantised per 128 to e4m3 with power-of-two scales, given
 * dequantised in out; ex: the k/128 block exponents; simd: AVX2 where the CPU
 * has it (bit-identical) */
void dsv4k_act_quant_dq(const float *x, int64_t k, float *out, int8_t *ex, int simd);

/* decode row r (of the view: row0 + r of the stored tensor) of w to f32
 * dst[k], exactly */
void dsv4k_decode_row(const dsv4k_weight *w, int64_t r, float *dst);

/* row r of w as bf16 bits in dst[k] when every value is exactly a bf16
 * zero or normal number (then 0), else -1 (dst undefined): the scalar twin
 * (dsv4k_decode_row into tmp[k], then each value checked and its upper half
 * kept) of dsv4k_decode_row_bf16_avx512 (kernels/x86/gemv.h) */
int dsv4k_decode_row_bf16_ref(const dsv4k_weight *w, int64_t r, float *tmp, uint16_t *dst);

#endif
