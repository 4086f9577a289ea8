/*
 * kernels/x86/ops_avx512.c — AVX-512 (F, BW, VL) twins of the per-row
 * operators of kernels/ref (RMSNorm, the RoPE rotation, the FP4 and FP8
 * simulations), chosen by kernels/ops.c and tested bit for bit against the
 * references in tests/kernels.
 *
 * Every twin performs the reference's IEEE operations on each value in the
 * reference's order, so the results are the same bits:
 *  - RMSNorm's sum of squares stays a sequential double sum per row; the
 *    vectors run across 8 rows at once (one lane per row, each lane adding
 *    its row's squares in column order), never within a row. The scaling
 *    pass is element-wise and runs along the row.
 *  - RoPE takes its cosines and sines from a table the reference's own
 *    expressions fill (dsv4k_rope_table), then does the same two products
 *    and the same subtraction or addition per pair.
 *  - The simulations round with vrndscaleps (round to nearest even, as
 *    rintf in the default mode) after scaling by a power of two, which is
 *    exact; the clamps use vmaxps/vminps with the operands in the order that
 *    gives fmaxf's and fminf's answer for a NaN input.
 * The project is compiled as ISO C, so products and sums are never fused.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <immintrin.h>

#include "gemv.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))

/* ---- RMSNorm ------------------------------------------------------------- */

TGT static void scale_row(const float *x, const float *w, int64_t n, float r, float *y)
{
    __m512 rv = _mm512_set1_ps(r), one = _mm512_set1_ps(1.0f);
    int64_t c = 0;
    for (; c + 16 <= n; c += 16) {
        __m512 t = _mm512_mul_ps(_mm512_loadu_ps(x + c), rv);
        _mm512_storeu_ps(y + c, _mm512_mul_ps(t, w ? _mm512_loadu_ps(w + c) : one));
    }
    for (; c < n; c++) y[c] = (w ? w[c] : 1.0f) * (x[c] * r);
}

TGT static float inv_rms(double ss, int64_t n, float eps)
{
    return (float)(1.0 / sqrt(ss / (double)n + (double)eps));
}

TGT void dsv4k_rmsnorm_rows_avx512(const float *x, int64_t ldx, const float *w, int64_t n, float eps, float *y,
                                   int64_t ldy, int64_t m)
{
    int64_t i = 0;
    /* 8 rows side by side: 8 columns of each loaded, transposed so that a
     * vector holds one column of the 8 rows, then added in column order */
    for (; i + 8 <= m; i += 8) {
        const float *xb = x + i * ldx;
        __m512d s0 = _mm512_setzero_pd();
        int64_t c = 0;
        for (; c + 8 <= n; c += 8) {
            __m256 r0 = _mm256_loadu_ps(xb + c), r1 = _mm256_loadu_ps(xb + ldx + c);
            __m256 r2 = _mm256_loadu_ps(xb + 2 * ldx + c), r3 = _mm256_loadu_ps(xb + 3 * ldx + c);
            __m256 r4 = _mm256_loadu_ps(xb + 4 * ldx + c), r5 = _mm256_loadu_ps(xb + 5 * ldx + c);
            __m256 r6 = _mm256_loadu_ps(xb + 6 * ldx + c), r7 = _mm256_loadu_ps(xb + 7 * ldx + c);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            __m256 col[8] = { _mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
                              _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
                              _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
                              _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31) };
            for (int k = 0; k < 8; k++) {
                __m512d v = _mm512_cvtps_pd(col[k]);
                /* square (exact in double), then the sum first as the
                 * reference adds (the same NaN comes out first) */
                s0 = _mm512_add_pd(s0, _mm512_mul_pd(v, v));
            }
        }
        double ss[8];
        _mm512_storeu_pd(ss, s0);
        for (int k = 0; k < 8; k++) {
            const float *xr = xb + k * ldx;
            for (int64_t cc = c; cc < n; cc++) ss[k] += (double)xr[cc] * xr[cc];
            scale_row(xr, w, n, inv_rms(ss[k], n, eps), y + (i + k) * ldy);
        }
    }
    for (; i < m; i++) {
        const float *xr = x + i * ldx;
        double ss = 0.0;
        for (int64_t c = 0; c < n; c++) ss += (double)xr[c] * xr[c];
        scale_row(xr, w, n, inv_rms(ss, n, eps), y + i * ldy);
    }
}

/* ---- RoPE ------------------------------------------------------------------ */

TGT void dsv4k_rope_apply_avx512(float *x, int rope_dim, const float *cs)
{
    int c = 0;
    for (; c + 16 <= rope_dim; c += 16) {
        __m512 v = _mm512_loadu_ps(x + c), t = _mm512_loadu_ps(cs + c);
        __m512 cc = _mm512_moveldup_ps(t), ss = _mm512_movehdup_ps(t);
        __m512 sw = _mm512_permute_ps(v, 0xB1);      /* (b, a) per pair */
        __m512 p = _mm512_mul_ps(v, cc);             /* a·c, b·c */
        __m512 q = _mm512_mul_ps(sw, ss);            /* b·s, a·s */
        __m512 odd = _mm512_add_ps(q, p);            /* a·s + b·c */
        _mm512_storeu_ps(x + c, _mm512_mask_sub_ps(odd, 0x5555, p, q)); /* a·c − b·s */
    }
    for (; c + 1 < rope_dim; c += 2) {
        float a = x[c], b = x[c + 1], co = cs[c], si = cs[c + 1];
        x[c] = a * co - b * si;
        x[c + 1] = a * si + b * co;
    }
}

/* ---- FP4 / FP8 simulation ---------------------------------------------------- */

TGT static inline __m512 absv(__m512 v)
{
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff)));
}

TGT static inline __m512 with_sign_of(__m512 r, __m512 v)
{
    __m512i sb = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int32_t)0x80000000u));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(r), sb));
}

#define RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

/* dsv4k_e2m1_round(min(max(x·inv, -6), 6)) · s */
TGT static inline __m512 fp4_one(__m512 x, __m512 inv, __m512 s)
{
    __m512 y = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(x, inv), _mm512_set1_ps(-6.0f)), _mm512_set1_ps(6.0f));
    __m512 a = absv(y);
    __mmask16 lt2 = _mm512_cmp_ps_mask(a, _mm512_set1_ps(2.0f), _CMP_LT_OQ);
    __mmask16 lt4 = _mm512_cmp_ps_mask(a, _mm512_set1_ps(4.0f), _CMP_LT_OQ);
    __mmask16 ge6 = _mm512_cmp_ps_mask(a, _mm512_set1_ps(6.0f), _CMP_GE_OQ);
    /* quantum 2^q: 1/2 below 2, 1 below 4, 2 above */
    __m512 down = _mm512_mask_blend_ps(lt4, _mm512_set1_ps(0.5f), _mm512_set1_ps(1.0f));
    down = _mm512_mask_blend_ps(lt2, down, _mm512_set1_ps(2.0f));
    __m512 up = _mm512_mask_blend_ps(lt4, _mm512_set1_ps(2.0f), _mm512_set1_ps(1.0f));
    up = _mm512_mask_blend_ps(lt2, up, _mm512_set1_ps(0.5f));
    __m512 r = _mm512_mul_ps(_mm512_roundscale_ps(_mm512_mul_ps(a, down), RNE), up);
    r = _mm512_mask_blend_ps(ge6, r, _mm512_set1_ps(6.0f));
    return _mm512_mul_ps(with_sign_of(r, y), s);
}

TGT void dsv4k_fp4_sim_avx512(float *x, int64_t n)
{
    const float c = 1.0f / 6.0f;
    const float floor_amax = 6.0f * 0x1p-126f;
    for (int64_t b0 = 0; b0 + 32 <= n; b0 += 32) {
        __m512 v0 = _mm512_loadu_ps(x + b0), v1 = _mm512_loadu_ps(x + b0 + 16);
        /* vmaxps returns its second operand when either is NaN: NaNs are
         * skipped as fmaxf skips them */
        __m512 mx = _mm512_max_ps(absv(v1), _mm512_max_ps(absv(v0), _mm512_setzero_ps()));
        float amax = fmaxf(_mm512_reduce_max_ps(mx), floor_amax);
        int e = dsv4k_log2_ceil(amax * c);
        __m512 s = _mm512_set1_ps(ldexpf(1.0f, e)), inv = _mm512_set1_ps(ldexpf(1.0f, -e));
        _mm512_storeu_ps(x + b0, fp4_one(v0, inv, s));
        _mm512_storeu_ps(x + b0 + 16, fp4_one(v1, inv, s));
    }
}

/* dsv4k_e4m3_round(min(max(x·inv, -448), 448)) · s */
TGT static inline __m512 fp8_one(__m512 x, __m512 inv, __m512 s)
{
    __m512 y = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(x, inv), _mm512_set1_ps(-448.0f)), _mm512_set1_ps(448.0f));
    __m512 a = absv(y);
    /* biased exponent of a, at least that of 2^-6 (the subnormal step 2^-9
     * continues the normals' 2^(E-3)) */
    __m512i be = _mm512_max_epi32(_mm512_srli_epi32(_mm512_castps_si512(a), 23), _mm512_set1_epi32(121));
    __m512 down = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_sub_epi32(_mm512_set1_epi32(257), be), 23));
    __m512 up = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_sub_epi32(be, _mm512_set1_epi32(3)), 23));
    __m512 r = _mm512_mul_ps(_mm512_roundscale_ps(_mm512_mul_ps(a, down), RNE), up);
    r = _mm512_min_ps(r, _mm512_set1_ps(448.0f));
    return _mm512_mul_ps(with_sign_of(r, y), s);
}

TGT void dsv4k_fp8_sim_avx512(float *x, int64_t n)
{
    const float c = 1.0f / 448.0f;
    for (int64_t b0 = 0; b0 + 64 <= n; b0 += 64) {
        __m512 v[4];
        __m512 mx = _mm512_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm512_loadu_ps(x + b0 + 16 * k);
            mx = _mm512_max_ps(absv(v[k]), mx);
        }
        float amax = fmaxf(_mm512_reduce_max_ps(mx), 1e-4f);
        int e = dsv4k_log2_ceil(amax * c);
        __m512 s = _mm512_set1_ps(dsv4k_pow2(e)), inv = _mm512_set1_ps(dsv4k_pow2(-e));
        for (int k = 0; k < 4; k++) _mm512_storeu_ps(x + b0 + 16 * k, fp8_one(v[k], inv, s));
    }
}

/* ---- mHC ------------------------------------------------------------------------- */

/* dsv4k_hc_mix_avx2's reduction: its two 4-lane halves added, then pairs */
TGT static inline double hsum8(__m512d a)
{
    __m256d v = _mm256_add_pd(_mm512_castpd512_pd256(a), _mm512_extractf64x4_pd(a, 1));
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

TGT void dsv4k_hc_mix_avx512(const float *X, int64_t ldx, int nt, int64_t width, const float *fn, int rows,
                             float norm_eps, double *m, int ldm)
{
    const float *x0 = X, *x1 = X + (nt > 1 ? ldx : 0), *x2 = X + (nt > 2 ? 2 * ldx : 0), *x3 = X + (nt > 3 ? 3 * ldx : 0);
    double r[4];
    for (int t = 0; t < nt; t++) {
        const float *xt = X + t * ldx;
        __m512d q = _mm512_setzero_pd();
        for (int64_t i = 0; i < width; i += 8) {
            __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(xt + i));
            q = _mm512_fmadd_pd(v, v, q);
        }
        r[t] = (double)(float)(1.0 / sqrt(hsum8(q) / (double)width + (double)norm_eps));
    }
    for (int o = 0; o < rows; o += 4) {
        const float *f0 = fn + (int64_t)o * width;
        const float *f1 = o + 1 < rows ? f0 + width : f0, *f2 = o + 2 < rows ? f0 + 2 * width : f0;
        const float *f3 = o + 3 < rows ? f0 + 3 * width : f0;
        __m512d a00 = _mm512_setzero_pd(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00,
                a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
        for (int64_t i = 0; i < width; i += 8) {
            __m512d v0 = _mm512_cvtps_pd(_mm256_loadu_ps(x0 + i)), v1 = _mm512_cvtps_pd(_mm256_loadu_ps(x1 + i));
            __m512d v2 = _mm512_cvtps_pd(_mm256_loadu_ps(x2 + i)), v3 = _mm512_cvtps_pd(_mm256_loadu_ps(x3 + i));
            __m512d g;
            /* f row first, then x, as dsv4k_hc_mix_avx2 multiplies */
#define HC_ROW(j, f)                                   \
    g = _mm512_cvtps_pd(_mm256_loadu_ps((f) + i));     \
    a##j##0 = _mm512_fmadd_pd(g, v0, a##j##0);         \
    a##j##1 = _mm512_fmadd_pd(g, v1, a##j##1);         \
    a##j##2 = _mm512_fmadd_pd(g, v2, a##j##2);         \
    a##j##3 = _mm512_fmadd_pd(g, v3, a##j##3);
            HC_ROW(0, f0)
            HC_ROW(1, f1)
            HC_ROW(2, f2)
            HC_ROW(3, f3)
#undef HC_ROW
        }
        __m512d acc[4][4] = { { a00, a01, a02, a03 }, { a10, a11, a12, a13 }, { a20, a21, a22, a23 },
                              { a30, a31, a32, a33 } };
        for (int j = 0; j < 4 && o + j < rows; j++)
            for (int t = 0; t < nt; t++) m[t * ldm + o + j] = (double)(float)hsum8(acc[j][t]) * r[t];
    }
}

TGT void dsv4k_hc_sum_avx512(const float *X, int hc, int64_t dim, const float *w, float *y)
{
    int64_t c = 0;
    for (; c + 16 <= dim; c += 16) {
        __m512d a0 = _mm512_setzero_pd(), a1 = a0;
        for (int j = 0; j < hc; j++) {
            __m512d wj = _mm512_set1_pd((double)w[j]);
            __m512 xv = _mm512_loadu_ps(X + j * dim + c);
            __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(xv));
            __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(xv), 1)));
            /* an f32 product is exact in double; then the sum first */
            a0 = _mm512_add_pd(a0, _mm512_mul_pd(wj, lo));
            a1 = _mm512_add_pd(a1, _mm512_mul_pd(wj, hi));
        }
        _mm256_storeu_ps(y + c, _mm512_cvtpd_ps(a0));
        _mm256_storeu_ps(y + c + 8, _mm512_cvtpd_ps(a1));
    }
    for (; c < dim; c++) {
        double acc = 0.0;
        for (int j = 0; j < hc; j++) acc += (double)w[j] * X[j * dim + c];
        y[c] = (float)acc;
    }
}

/* twin of dsv4k_hc_post_ref (and of dsv4k_hc_post_avx2): per output value
 * post[k]·o, then + comb[j·hc+k]·X[j] for j in order, in double; 8 values
 * of every output stream per pass, the source streams read once */
TGT void dsv4k_hc_post_avx512(const float *X, const float *o, const float *post, const float *comb, int hc,
                              int64_t dim, float *Xo)
{
    __m512d pk[8], cw[64];
    for (int k = 0; k < hc; k++) pk[k] = _mm512_set1_pd((double)post[k]);
    for (int j = 0; j < hc * hc; j++) cw[j] = _mm512_set1_pd((double)comb[j]);
    int64_t c = 0;
    for (; c + 8 <= dim; c += 8) {
        __m512d xv[8];
        for (int j = 0; j < hc; j++) xv[j] = _mm512_cvtps_pd(_mm256_loadu_ps(X + j * dim + c));
        __m512d ov = _mm512_cvtps_pd(_mm256_loadu_ps(o + c));
        for (int k = 0; k < hc; k++) {
            __m512d a = _mm512_mul_pd(pk[k], ov);
            for (int j = 0; j < hc; j++) a = _mm512_fmadd_pd(cw[j * hc + k], xv[j], a);
            _mm256_storeu_ps(Xo + k * dim + c, _mm512_cvtpd_ps(a));
        }
    }
    for (; c < dim; c++)
        for (int k = 0; k < hc; k++) {
            double acc = (double)post[k] * o[c];
            for (int j = 0; j < hc; j++) acc += (double)comb[j * hc + k] * X[j * dim + c];
            Xo[k * dim + c] = (float)acc;
        }
}

/* ---- Hadamard ------------------------------------------------------------------------- */

/* one butterfly stage of span h < 16 inside a vector: a lane without bit h
 * takes itself + its partner, a lane with it partner − itself (the
 * reference's a + b and a − b) */
TGT static inline __m512 bfly(__m512 v, __m512 partner, __mmask16 upper)
{
    return _mm512_mask_sub_ps(_mm512_add_ps(v, partner), upper, partner, v);
}

TGT void dsv4k_hadamard_avx512(float *x, int n)
{
    for (int b = 0; b < n; b += 16) {
        __m512 v = _mm512_loadu_ps(x + b);
        v = bfly(v, _mm512_permute_ps(v, 0xB1), 0xAAAA);
        v = bfly(v, _mm512_permute_ps(v, 0x4E), 0xCCCC);
        v = bfly(v, _mm512_shuffle_f32x4(v, v, 0xB1), 0xF0F0);
        v = bfly(v, _mm512_shuffle_f32x4(v, v, 0x4E), 0xFF00);
        _mm512_storeu_ps(x + b, v);
    }
    for (int h = 16; h < n; h *= 2)
        for (int i = 0; i < n; i += 2 * h)
            for (int j = i; j < i + h; j += 16) {
                __m512 a = _mm512_loadu_ps(x + j), c = _mm512_loadu_ps(x + j + h);
                _mm512_storeu_ps(x + j, _mm512_add_ps(a, c));
                _mm512_storeu_ps(x + j + h, _mm512_sub_ps(a, c));
            }
    __m512 s = _mm512_set1_ps((float)(1.0 / sqrt((double)n)));
    for (int i = 0; i < n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), s));
}

/* ---- SwiGLU ------------------------------------------------------------------------------ */

/* e^t for 8 doubles: t = k·ln2 + r with k = round(t·log2 e) and |r| <= ln2/2
 * (ln2 split so that k·ln2hi is exact), e^r by its Taylor polynomial to
 * r^13 (truncation below 2e-16 relative), scaled by 2^k with vscalefpd,
 * which saturates to +inf and flushes through the subnormals to +0 as exp
 * does. t is clamped to ±800 first (both ends already saturate); a NaN t
 * becomes 800 there, which only matters through the caller's quotient,
 * whose numerator keeps the NaN. */
TGT static inline __m512d exp_pd(__m512d t)
{
    t = _mm512_max_pd(_mm512_min_pd(t, _mm512_set1_pd(800.0)), _mm512_set1_pd(-800.0));
    __m512d k = _mm512_roundscale_pd(_mm512_mul_pd(t, _mm512_set1_pd(1.4426950408889634)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512d r = _mm512_fnmadd_pd(k, _mm512_set1_pd(6.93147180369123816490e-01), t);
    r = _mm512_fnmadd_pd(k, _mm512_set1_pd(1.90821492927058770002e-10), r);
    /* 1/j! for j = 13 down to 0 */
    static const double inv_fact[14] = {
        1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0,
        1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0 };
    __m512d p = _mm512_set1_pd(inv_fact[0]);
    for (int j = 1; j < 14; j++) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(inv_fact[j]));
    return _mm512_scalef_pd(p, k);
}

/* 8 values: w · (silu(min(g, lim)) · clamp(u, ±lim)) as the reference
 * computes it (the clamps by masks, so a NaN passes through as there) */
TGT static inline __m256 swiglu8(__m256 gv, __m256 uv, float lim, __m256 wv)
{
    if (lim > 0) {
        __m256 l = _mm256_set1_ps(lim), nl = _mm256_set1_ps(-lim);
        gv = _mm256_mask_blend_ps(_mm256_cmp_ps_mask(gv, l, _CMP_GT_OQ), gv, l);
        __mmask8 hi = _mm256_cmp_ps_mask(uv, l, _CMP_GT_OQ), lo = _mm256_cmp_ps_mask(uv, nl, _CMP_LT_OQ);
        uv = _mm256_mask_blend_ps(hi, _mm256_mask_blend_ps(lo, uv, nl), l);
    }
    __m512d x = _mm512_cvtps_pd(gv);
    __m512d e = exp_pd(_mm512_sub_pd(_mm512_setzero_pd(), x));
    __m256 s = _mm512_cvtpd_ps(_mm512_div_pd(x, _mm512_add_pd(_mm512_set1_pd(1.0), e)));
    return _mm256_mul_ps(wv, _mm256_mul_ps(s, uv));
}

TGT void dsv4k_swiglu_avx512(float *g, const float *u, int64_t n, float lim, float w)
{
    __m256 wv = _mm256_set1_ps(w);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(g + i, swiglu8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i), lim, wv));
    if (i < n) {
        __mmask8 m = (__mmask8)((1u << (n - i)) - 1);
        __m256 r = swiglu8(_mm256_maskz_loadu_ps(m, g + i), _mm256_maskz_loadu_ps(m, u + i), lim, wv);
        _mm256_mask_storeu_ps(g + i, m, r);
    }
}
