/*
 * kernels/x86/gemv_mrows.h — the one-row kernels of gemv.h for m activation
 * rows at once (2 <= m <= DSV4K_MROWS_MAX, kernels/linear.h): each weight
 * row is decoded once, and for each activation row the arithmetic is the
 * one-row kernel's, operation for operation in the same order, so y[i] is
 * bit for bit what the one-row kernel gives for activation row i
 * (kernels/x86/gemv_mrows_avx512.c; tested in tests/kernels/test_mrows.c).
 * Arguments per activation row i < m: its prepared buffer buf[i], its f32
 * row x[i] where the one-row kernel takes one, its results y[i][r] for the
 * view's rows r in [r0, r1). _emul: built on SIMDe, tests only.
 */
#ifndef DSV4_GEMV_MROWS_H
#define DSV4_GEMV_MROWS_H

#include "gemv.h"

/* dsv4k_rows_fp4v_avx512vnni for m rows (buffers of dsv4k_fp4v_prepare) */
void dsv4k_rows_fp4v_mrows_avx512vnni(const dsv4k_weight *w, int64_t r0, int64_t r1, int m, const void *const *buf,
                                      float *const *y);
void dsv4k_rows_fp4v_mrows_avx512vnni_emul(const dsv4k_weight *w, int64_t r0, int64_t r1, int m,
                                           const void *const *buf, float *const *y);
/* dsv4k_rows_fp8b_avx512bf16 for m rows (x[i]: row i dequantised, buf[i]
 * of dsv4k_fp8b_prepare); -1 (nothing written) where it refuses */
int dsv4k_rows_fp8b_mrows_avx512bf16(const dsv4k_weight *w, int64_t r0, int64_t r1, int m, const float *const *x,
                                     const void *const *buf, float *const *y);
int dsv4k_rows_fp8b_mrows_avx512bf16_emul(const dsv4k_weight *w, int64_t r0, int64_t r1, int m,
                                          const float *const *x, const void *const *buf, float *const *y);
/* dsv4k_rows_fp8q_avx512 for m rows (x[i], xp[i], sh[i] as it takes them);
 * -1 (nothing written) where it refuses */
int dsv4k_rows_fp8q_mrows_avx512(const dsv4k_weight *w, int64_t r0, int64_t r1, int m, const float *const *x,
                                 const float *const *xp, const int16_t *const *sh, float *const *y);
int dsv4k_rows_fp8q_mrows_avx512_emul(const dsv4k_weight *w, int64_t r0, int64_t r1, int m, const float *const *x,
                                      const float *const *xp, const int16_t *const *sh, float *const *y);
/* dsv4k_rows_avx512 with one activation row, for m rows (BF16 and FP4
 * weights, x[i] split as it takes them); -1 (nothing written) for another
 * format or width */
int dsv4k_rows_mrows_avx512(const dsv4k_weight *w, int64_t r0, int64_t r1, int m, const float *const *x,
                            float *const *y);
int dsv4k_rows_mrows_avx512_emul(const dsv4k_weight *w, int64_t r0, int64_t r1, int m, const float *const *x,
                                 float *const *y);

#endif
