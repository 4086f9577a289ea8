/*
 * kernels/x86/gemv_avx512.c — AVX-512 (F, BW, VL) products of a few
 * activation rows with weight rows in their stored formats: the twins of
 * dsv4k_rows_avx2 for CPUs with 512-bit vectors (tested against the
 * reference in tests/kernels).
 *
 * Exact as the AVX2 kernels are: every weight is decoded exactly to f32 and
 * multiplied in f32, so results equal the reference's up to summation
 * order, in both numerics modes. What the wider registers buy is cheaper
 * decoding:
 *  - FP4 e2m1: vpermps over 16 lanes takes the whole 4-bit code as its
 *    index, so one permute against a table of the 16 signed values decodes
 *    16 weights (AVX2 needs a permute, two shifts and a xor for 8); the
 *    bytes are widened once, the high nibble is one shift away;
 *  - BF16: a 32-bit lane holds two weights; the even one is the lane shifted
 *    left by 16, the odd one the lane with its low half cleared, so 32
 *    weights cost two integer ops against activations split even/odd;
 *  - FP8 e4m3: as in the AVX2 kernels (an f16 equal to the value × 2^-8,
 *    widened by vcvtph2ps), 32 codes per pass.
 * Activations for FP4 and BF16 come split per 32-block into the 16 even and
 * the 16 odd elements (dsv4k_split_even_odd). For one activation row in
 * reference numerics, the twins of the AVX2 kernels made for e4m3
 * activations (dsv4k_rows_fp4q_avx512: vpmaddubsw over 128 weights per
 * step; dsv4k_rows_fp8q_avx512: three integer operations per 16 weights).
 *
 * The file is built twice. The library compiles it with target attributes
 * and calls it when the CPU and the OS have AVX-512 (dsv4k_have_avx512).
 * Tests compile it again with DSV4K_EMULATE_AVX512: the same kernel code then
 * runs on any x86-64 through SIMDe's portable definitions of the intrinsics
 * (the few SIMDe lacks are given below), so the kernels' logic is checked
 * against the reference on machines without AVX-512 too; on machines with
 * it the native build is checked as well.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef DSV4K_EMULATE_AVX512
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define TGT
#define K512(name) name##_emul
#else
#include <immintrin.h>
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define K512(name) name
#endif

#include "gemv.h"
#include "mca.h"

#ifdef DSV4K_EMULATE_AVX512
/* the intrinsics SIMDe 0.7 does not define, written out plainly */
static __m512i ld_u8x16_epi32(const uint8_t *p)
{
    int32_t t[16];
    for (int i = 0; i < 16; i++) t[i] = p[i];
    return _mm512_loadu_si512(t);
}

static __m512i ld_u8x32_epi16(const uint8_t *p)
{
    int16_t t[32];
    for (int i = 0; i < 32; i++) t[i] = p[i];
    return _mm512_loadu_si512(t);
}

static __m512i ld_s8x16_epi32(const uint8_t *p)
{
    int32_t t[16];
    for (int i = 0; i < 16; i++) t[i] = (int8_t)p[i];
    return _mm512_loadu_si512(t);
}

/* SIMDe 0.7's alias of _mm512_madd_epi16 takes the masked form's 4 arguments */
#define madd16(a, b) simde_mm512_madd_epi16(a, b)

static __m512 cvt_i32_ps(__m512i v)
{
    int32_t t[16];
    float f[16];
    _mm512_storeu_si512(t, v);
    for (int i = 0; i < 16; i++) f[i] = (float)t[i];
    return _mm512_loadu_ps(f);
}

static float f16_to_f32(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 1024), e - 25);
    return (h & 0x8000) ? -v : v;
}

static __m512 cvtph16(__m256i h)
{
    uint16_t t[16];
    float f[16];
    _mm256_storeu_si256((__m256i *)t, h);
    for (int i = 0; i < 16; i++) f[i] = f16_to_f32(t[i]);
    return _mm512_loadu_ps(f);
}

/* x86's conversion: NaN and out-of-range values give INT32_MIN */
static __m512i cvtt_ps_i32(__m512 v)
{
    float f[16];
    int32_t t[16];
    _mm512_storeu_ps(f, v);
    for (int i = 0; i < 16; i++) t[i] = f[i] >= -2147483648.0f && f[i] < 2147483648.0f ? (int32_t)f[i] : INT32_MIN;
    return _mm512_loadu_si512(t);
}

static __m512i srai32(__m512i v, int n)
{
    int32_t t[16];
    _mm512_storeu_si512(t, v);
    for (int i = 0; i < 16; i++) t[i] = n > 31 ? (t[i] < 0 ? -1 : 0) : t[i] >> n;
    return _mm512_loadu_si512(t);
}

static __m512i cvt_u8x16_epi32(__m128i b)
{
    uint8_t u[16];
    _mm_storeu_si128((__m128i *)u, b);
    return ld_u8x16_epi32(u);
}

static float hsum16(__m512 v)
{
    float t[16];
    _mm512_storeu_ps(t, v);
    for (int n = 8; n > 0; n /= 2)
        for (int i = 0; i < n; i++) t[i] += t[i + n];
    return t[0];
}
#else
#define ld_u8x16_epi32(p) _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p)))
#define ld_u8x32_epi16(p) _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(p)))
#define ld_s8x16_epi32(p) _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p)))
#define madd16(a, b) _mm512_madd_epi16(a, b)
#define cvt_i32_ps(v) _mm512_cvtepi32_ps(v)
#define cvtph16(h) _mm512_cvtph_ps(h)
#define hsum16(v) _mm512_reduce_add_ps(v)
#define cvtt_ps_i32(v) _mm512_cvttps_epi32(v)
#define srai32(v, n) _mm512_sra_epi32((v), _mm_cvtsi32_si128(n))
#define cvt_u8x16_epi32(b) _mm512_cvtepu8_epi32(b)

/* dsv4k_have_avx512: kernels/cpu.c */
#endif

/* up to 4 activation rows share every decoded weight vector */
#define ACC4(wv, off)                                                                     \
    do {                                                                                  \
        b0 = _mm512_fmadd_ps((wv), _mm512_loadu_ps(x0 + (off)), b0);                      \
        if (mi > 1) b1 = _mm512_fmadd_ps((wv), _mm512_loadu_ps(x0 + ldx + (off)), b1);    \
        if (mi > 2) b2 = _mm512_fmadd_ps((wv), _mm512_loadu_ps(x0 + 2 * ldx + (off)), b2); \
        if (mi > 3) b3 = _mm512_fmadd_ps((wv), _mm512_loadu_ps(x0 + 3 * ldx + (off)), b3); \
    } while (0)

#define STORE4(a0, a1, a2, a3)                               \
    do {                                                     \
        y[i0 * ldy + r] = hsum16(a0);                        \
        if (mi > 1) y[(i0 + 1) * ldy + r] = hsum16(a1);      \
        if (mi > 2) y[(i0 + 2) * ldy + r] = hsum16(a2);      \
        if (mi > 3) y[(i0 + 3) * ldy + r] = hsum16(a3);      \
    } while (0)

/* a_i += b_i · s, then b_i = 0 */
#define SCALE4(sv)                                           \
    do {                                                     \
        a0 = _mm512_fmadd_ps(b0, (sv), a0);                  \
        a1 = _mm512_fmadd_ps(b1, (sv), a1);                  \
        a2 = _mm512_fmadd_ps(b2, (sv), a2);                  \
        a3 = _mm512_fmadd_ps(b3, (sv), a3);                  \
        b0 = b1 = b2 = b3 = _mm512_setzero_ps();             \
    } while (0)

/* ---- BF16 (activations split even/odd per 32) -------------------------------- */

/* 32 bf16 at p -> the 16 even and the 16 odd weights as f32 */
#define BF16X32(p, ev, od)                                                                     \
    do {                                                                                       \
        __m512i v_ = _mm512_loadu_si512((const void *)(p));                                    \
        (ev) = _mm512_castsi512_ps(_mm512_slli_epi32(v_, 16));                                 \
        (od) = _mm512_castsi512_ps(_mm512_and_si512(v_, _mm512_set1_epi32((int)0xffff0000u)));  \
    } while (0)

/* one row whose 32-weight chunks lie cs words apart (32 plain, 128 in the
 * interleaved layout) */
TGT static float dot1_bf16(const uint16_t *p, int64_t cs, const float *xs, int64_t k)
{
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, e0, o0, e1, o1;
    int64_t c = 0;
    for (; c + 64 <= k; c += 64, p += 2 * cs) {
        DSV4K_MCA_BEGIN("bf16_avx512_row:64");
        BF16X32(p, e0, o0);
        BF16X32(p + cs, e1, o1);
        c0 = _mm512_fmadd_ps(e0, _mm512_loadu_ps(xs + c), c0);
        c1 = _mm512_fmadd_ps(o0, _mm512_loadu_ps(xs + c + 16), c1);
        c2 = _mm512_fmadd_ps(e1, _mm512_loadu_ps(xs + c + 32), c2);
        c3 = _mm512_fmadd_ps(o1, _mm512_loadu_ps(xs + c + 48), c3);
        DSV4K_MCA_END("bf16_avx512_row:64");
    }
    if (c < k) {
        BF16X32(p, e0, o0);
        c0 = _mm512_fmadd_ps(e0, _mm512_loadu_ps(xs + c), c0);
        c1 = _mm512_fmadd_ps(o0, _mm512_loadu_ps(xs + c + 16), c1);
    }
    return hsum16(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)));
}

/*
 * The four rows of an interleaved group (kernels.h) at once, as one
 * sequential stream: each activation vector is loaded once for the four,
 * and each row keeps the four accumulators of dot1_bf16, updated in the
 * same order — so every row's result is bit for bit dot1_bf16's.
 */
#define BF16G_ROW(i)                                                          \
    do {                                                                      \
        BF16X32(q + 32 * (i), e0, o0);                                        \
        BF16X32(q + 128 + 32 * (i), e1, o1);                                  \
        c##i##0 = _mm512_fmadd_ps(e0, x0, c##i##0);                           \
        c##i##1 = _mm512_fmadd_ps(o0, x1, c##i##1);                           \
        c##i##2 = _mm512_fmadd_ps(e1, x2, c##i##2);                           \
        c##i##3 = _mm512_fmadd_ps(o1, x3, c##i##3);                           \
    } while (0)
#define BF16G_TAIL(i)                                                         \
    do {                                                                      \
        BF16X32(q + 32 * (i), e0, o0);                                        \
        c##i##0 = _mm512_fmadd_ps(e0, x0, c##i##0);                           \
        c##i##1 = _mm512_fmadd_ps(o0, x1, c##i##1);                           \
    } while (0)
#define BF16G_SUM(i) hsum16(_mm512_add_ps(_mm512_add_ps(c##i##0, c##i##1), _mm512_add_ps(c##i##2, c##i##3)))

TGT static void dot4_bf16(const uint16_t *q, const float *xs, int64_t k, float *y)
{
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m512 c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
    __m512 e0, o0, e1, o1, x0, x1, x2, x3;
    int64_t c = 0;
    for (; c + 64 <= k; c += 64, q += 256) {
        DSV4K_MCA_BEGIN("bf16_avx512_4rows:256");
        x0 = _mm512_loadu_ps(xs + c);
        x1 = _mm512_loadu_ps(xs + c + 16);
        x2 = _mm512_loadu_ps(xs + c + 32);
        x3 = _mm512_loadu_ps(xs + c + 48);
        BF16G_ROW(0);
        BF16G_ROW(1);
        BF16G_ROW(2);
        BF16G_ROW(3);
        DSV4K_MCA_END("bf16_avx512_4rows:256");
    }
    if (c < k) {
        x0 = _mm512_loadu_ps(xs + c);
        x1 = _mm512_loadu_ps(xs + c + 16);
        BF16G_TAIL(0);
        BF16G_TAIL(1);
        BF16G_TAIL(2);
        BF16G_TAIL(3);
    }
    y[0] = BF16G_SUM(0);
    y[1] = BF16G_SUM(1);
    y[2] = BF16G_SUM(2);
    y[3] = BF16G_SUM(3);
}

TGT static void rows_bf16(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *xs, int64_t ldx, int64_t m,
                          float *y, int64_t ldy)
{
    int64_t k = w->k;
    for (int64_t r = r0; r < r1; r++) {
        int64_t rr = w->row0 + r, cs;
        const uint16_t *p = (const uint16_t *)(const void *)dsv4k_row_start(w, rr, 2 * k, &cs);
        cs /= 2;
        if (m == 1) {
            if (rr < w->ilv && (rr & 3) == 0 && r + 4 <= r1) {
                dot4_bf16(p, xs, k, y + r);
                r += 3;
            } else {
                y[r] = dot1_bf16(p, cs, xs, k);
            }
            continue;
        }
        for (int64_t i0 = 0; i0 < m; i0 += 4) {
            int64_t mi = m - i0 < 4 ? m - i0 : 4;
            const float *x0 = xs + i0 * ldx;
            const uint16_t *q = p;
            __m512 b0 = _mm512_setzero_ps(), b1 = b0, b2 = b0, b3 = b0, ev, od;
            for (int64_t c = 0; c < k; c += 32, q += cs) {
                BF16X32(q, ev, od);
                ACC4(ev, c);
                ACC4(od, c + 16);
            }
            STORE4(b0, b1, b2, b3);
        }
    }
}

/* ---- FP8 e4m3, 128×128 block scales (activations in natural order) ---------- */

/* 32 e4m3 bytes -> two vectors of 16 f32 values × 2^-8 (exact): the byte
 * moved to the high half of a 16-bit lane and shifted right arithmetically
 * by one lands exponent and mantissa in the f16 places; em clears the copy
 * of the sign in bit 14 */
#define E4M3X32(ptr, lo, hi)                                                                  \
    do {                                                                                      \
        __m512i b_ = ld_u8x32_epi16(ptr);                                                     \
        __m512i h_ = _mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(b_, 8), 1), em);    \
        (lo) = cvtph16(_mm512_castsi512_si256(h_));                                           \
        (hi) = cvtph16(_mm512_extracti64x4_epi64(h_, 1));                                     \
    } while (0)

/* one activation row: per 128-block four independent partial sums, scaled
 * (sc already × 2^8) into two alternating totals */
TGT static float dot1_fp8(const uint8_t *p, int64_t cs, const float *sc, const float *x, int64_t k)
{
    const __m512i em = _mm512_set1_epi16((short)0xbfff);
    __m512 t0 = _mm512_setzero_ps(), t1 = t0;
    for (int64_t c0 = 0; c0 < k; c0 += 128) {
        __m512 c_0 = _mm512_setzero_ps(), c_1 = c_0, c_2 = c_0, c_3 = c_0, w0, w1, w2, w3;
        for (int64_t c = c0; c < c0 + 128; c += 64, p += cs) {
            E4M3X32(p, w0, w1);
            E4M3X32(p + 32, w2, w3);
            c_0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + c), c_0);
            c_1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + c + 16), c_1);
            c_2 = _mm512_fmadd_ps(w2, _mm512_loadu_ps(x + c + 32), c_2);
            c_3 = _mm512_fmadd_ps(w3, _mm512_loadu_ps(x + c + 48), c_3);
        }
        __m512 bs = _mm512_add_ps(_mm512_add_ps(c_0, c_1), _mm512_add_ps(c_2, c_3));
        if ((c0 / 128) & 1) t1 = _mm512_fmadd_ps(bs, _mm512_set1_ps(sc[c0 / 128]), t1);
        else t0 = _mm512_fmadd_ps(bs, _mm512_set1_ps(sc[c0 / 128]), t0);
    }
    return hsum16(_mm512_add_ps(t0, t1));
}

static float fp8_scale(const dsv4k_weight *w, int64_t rr, int64_t b, int64_t kb)
{
    return w->fmt == DSV4K_W_FP8 ? dsv4k_lut_e8m0[((const uint8_t *)w->s)[(rr / 128) * kb + b]]
                                 : ((const float *)w->s)[(rr / 128) * kb + b];
}

TGT static void rows_fp8(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *x, int64_t ldx, int64_t m,
                         float *y, int64_t ldy)
{
    int64_t k = w->k, kb = k / 128;
    const __m512i em = _mm512_set1_epi16((short)0xbfff); /* for E4M3X32 */
    float scb[64]; /* one row-block's scales × 2^8 (k <= 8192) */
    int64_t cur = -1;
    for (int64_t r = r0; r < r1; r++) {
        int64_t rr = w->row0 + r, cs;
        const uint8_t *p = dsv4k_row_start(w, rr, k, &cs);
        if (m == 1 && kb <= 64) {
            if (rr / 128 != cur) {
                cur = rr / 128;
                for (int64_t b = 0; b < kb; b++) scb[b] = 256.0f * fp8_scale(w, rr, b, kb);
            }
            y[r] = dot1_fp8(p, cs, scb, x, k);
            continue;
        }
        for (int64_t i0 = 0; i0 < m; i0 += 4) {
            int64_t mi = m - i0 < 4 ? m - i0 : 4;
            const float *x0 = x + i0 * ldx;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            for (int64_t c0 = 0; c0 < k; c0 += 128) {
                for (int64_t c = c0; c < c0 + 128; c += 32) {
                    __m512 lo, hi;
                    E4M3X32(p + (c >> 6) * cs + (c & 63), lo, hi);
                    ACC4(lo, c);
                    ACC4(hi, c + 16);
                }
                __m512 sv = _mm512_set1_ps(fp8_scale(w, rr, c0 / 128, kb) * 256.0f);
                SCALE4(sv);
            }
            STORE4(a0, a1, a2, a3);
        }
    }
}

/* ---- FP4 e2m1, E8M0 per 32 (activations split even/odd per 32) -------------- */

/* the 16 e2m1 values, indexed by the whole code (bit 3 the sign) */
static const float e2m1_val[16] = { 0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                    -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f };

/* 16 packed bytes (32 codes) -> the 16 even and the 16 odd values (exact);
 * vpermps reads only the low 4 bits of each index lane */
#define E2M1X32(ptr, ev, od)                                                   \
    do {                                                                       \
        __m512i b_ = ld_u8x16_epi32(ptr);                                      \
        (ev) = _mm512_permutexvar_ps(b_, tab);                                 \
        (od) = _mm512_permutexvar_ps(_mm512_srli_epi32(b_, 4), tab);           \
    } while (0)

/* one activation row: each 32-block's table of values scaled by its E8M0
 * (exact: e2m1 times a power of two), so every product goes straight into
 * one of 8 independent totals — no per-block sum to scale, and 8 chains to
 * hide the FMA latency */
#define FP4S_BLOCK(pp, xx, s, ae, ao)                                                   \
    do {                                                                               \
        __m512 ts_ = _mm512_mul_ps(tab, _mm512_set1_ps(dsv4k_lut_e8m0[s]));            \
        __m512i b_ = ld_u8x16_epi32(pp);                                               \
        (ae) = _mm512_fmadd_ps(_mm512_permutexvar_ps(b_, ts_), _mm512_loadu_ps(xx), (ae)); \
        (ao) = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(b_, 4), ts_),    \
                               _mm512_loadu_ps((xx) + 16), (ao));                       \
    } while (0)

TGT static float dot1_fp4(const uint8_t *p, const uint8_t *sc, const float *xs, int64_t k)
{
    const __m512 tab = _mm512_loadu_ps(e2m1_val);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    int64_t c = 0;
    for (; c + 128 <= k; c += 128, p += 64, sc += 4) {
        DSV4K_MCA_BEGIN("fp4_avx512_f32:128");
        FP4S_BLOCK(p, xs + c, sc[0], a0, a1);
        FP4S_BLOCK(p + 16, xs + c + 32, sc[1], a2, a3);
        FP4S_BLOCK(p + 32, xs + c + 64, sc[2], a4, a5);
        FP4S_BLOCK(p + 48, xs + c + 96, sc[3], a6, a7);
        DSV4K_MCA_END("fp4_avx512_f32:128");
    }
    for (; c < k; c += 32, p += 16, sc++) FP4S_BLOCK(p, xs + c, sc[0], a0, a1);
    return hsum16(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                                _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7))));
}

TGT static void rows_fp4(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *xs, int64_t ldx, int64_t m,
                         float *y, int64_t ldy)
{
    int64_t k = w->k;
    const __m512 tab = _mm512_loadu_ps(e2m1_val);
    for (int64_t r = r0; r < r1; r++) {
        int64_t rr = w->row0 + r;
        const uint8_t *p = (const uint8_t *)w->w + rr * (k / 2);
        const uint8_t *sc = (const uint8_t *)w->s + rr * (k / 32);
        if (m == 1) {
            y[r] = dot1_fp4(p, sc, xs, k);
            continue;
        }
        for (int64_t i0 = 0; i0 < m; i0 += 4) {
            int64_t mi = m - i0 < 4 ? m - i0 : 4;
            const float *x0 = xs + i0 * ldx;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0, ev, od;
            for (int64_t c = 0; c < k; c += 32) {
                E2M1X32(p + c / 2, ev, od);
                ACC4(ev, c);
                ACC4(od, c + 16);
                __m512 sv = _mm512_set1_ps(dsv4k_lut_e8m0[sc[c / 32]]);
                SCALE4(sv);
            }
            STORE4(a0, a1, a2, a3);
        }
    }
}

/* ---- kernels for e4m3 activations (reference numerics, one row; see gemv.h) ---- */

/* 16 e4m3 bytes -> their values × 2^-120 as f32 (subnormal codes become f32
 * subnormals): sign-extended, shifted left by 20, sign and 7 low bits kept */
#define E4M3X16Q(ptr) _mm512_castsi512_ps(_mm512_and_si512(_mm512_slli_epi32(ld_s8x16_epi32(ptr), 20), msk))

TGT static float dot1_fp8q(const uint8_t *p, int64_t cs, const float *sc, const float *x, int64_t k)
{
    const __m512i msk = _mm512_set1_epi32((int)0x87f00000u);
    __m512 t0 = _mm512_setzero_ps(), t1 = t0;
    for (int64_t c0 = 0; c0 < k; c0 += 128) {
        DSV4K_MCA_BEGIN("fp8_avx512_f32act:128");
        __m512 c_0 = _mm512_setzero_ps(), c_1 = c_0, c_2 = c_0, c_3 = c_0;
        /* unrolled (as -O3 does): one straight pass per block, also for the static model */
        #pragma GCC unroll 4
        for (int64_t c = c0; c < c0 + 128; c += 64, p += cs) {
            c_0 = _mm512_fmadd_ps(E4M3X16Q(p), _mm512_loadu_ps(x + c), c_0);
            c_1 = _mm512_fmadd_ps(E4M3X16Q(p + 16), _mm512_loadu_ps(x + c + 16), c_1);
            c_2 = _mm512_fmadd_ps(E4M3X16Q(p + 32), _mm512_loadu_ps(x + c + 32), c_2);
            c_3 = _mm512_fmadd_ps(E4M3X16Q(p + 48), _mm512_loadu_ps(x + c + 48), c_3);
        }
        __m512 bs = _mm512_add_ps(_mm512_add_ps(c_0, c_1), _mm512_add_ps(c_2, c_3));
        if ((c0 / 128) & 1) t1 = _mm512_fmadd_ps(bs, _mm512_set1_ps(sc[c0 / 128]), t1);
        else t0 = _mm512_fmadd_ps(bs, _mm512_set1_ps(sc[c0 / 128]), t0);
        DSV4K_MCA_END("fp8_avx512_f32act:128");
    }
    return hsum16(_mm512_add_ps(t0, t1));
}

TGT int K512(dsv4k_rows_fp8q_avx512)(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *x, const float *xp,
                                     const int16_t *sh, float *y)
{
    int64_t k = w->k, kb = k / 128;
    if ((w->fmt != DSV4K_W_FP8 && w->fmt != DSV4K_W_FP8_F32S) || k % 128 || kb > 64) return -1;
    float sq[64], sf[64]; /* one row block's scales: for dot1_fp8q, and × 2^8 for dot1_fp8 */
    int64_t cur = -1;
    int fast = 0;
    for (int64_t r = r0; r < r1; r++) {
        int64_t rr = w->row0 + r;
        if (rr / 128 != cur) {
            cur = rr / 128;
            fast = dsv4k_fp8q_block_scales(w, cur, sh, sq, sf);
        }
        int64_t cs;
        const uint8_t *p = dsv4k_row_start(w, rr, k, &cs);
        y[r] = fast ? dot1_fp8q(p, cs, sq, xp, k) : dot1_fp8(p, cs, sf, x, k);
    }
    return 0;
}


/* no scale byte of the row is 0 or 255 (see the AVX2 twin) */
TGT static int plain_scales(const uint8_t *sc, int64_t n)
{
    const __m512i z = _mm512_setzero_si512(), ones = _mm512_set1_epi8(-1);
    int64_t i = 0;
    int odd = 0;
    for (; i + 64 <= n; i += 64) {
        __m512i v = _mm512_loadu_si512((const void *)(sc + i));
        odd |= (_mm512_cmpeq_epi8_mask(v, z) | _mm512_cmpeq_epi8_mask(v, ones)) != 0;
    }
    for (; i < n; i++) odd |= sc[i] == 0 || sc[i] == 255;
    return !odd;
}

/* the vpshufb control of fp4v_scales: lane l (of 16) takes byte l/4 of the
 * broadcast word in its low byte, the other bytes zero */
TGT static inline __m512i fp4v_spread(void)
{
    uint8_t sp[64];
    for (int i = 0; i < 64; i++) sp[i] = (uint8_t)(i % 4 == 0 ? i / 16 : 0x80);
    return _mm512_loadu_si512(sp);
}

/* the f32 scale of each lane: 2^(E-127) of its block's byte (plain rows:
 * no byte 0 or 255) times the activation block's xs */
TGT static inline __m512 fp4v_scales(const uint8_t *sc4, __m512i spread, float xs)
{
    uint32_t b4;
    memcpy(&b4, sc4, 4);
    __m512i e = _mm512_shuffle_epi8(_mm512_set1_epi32((int)b4), spread);
    return _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(e, 23)), _mm512_set1_ps(xs));
}

TGT static inline __m512 fp4v_scales_lut(const uint8_t *sc4, float xs)
{
    float s4[4];
    for (int b = 0; b < 4; b++) s4[b] = dsv4k_lut_e8m0[sc4[b]] * xs;
    return _mm512_permutexvar_ps(_mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0),
                                 _mm512_castps128_ps512(_mm_loadu_ps(s4)));
}

TGT void K512(dsv4k_rows_fp4q_avx512)(const dsv4k_weight *w, int64_t r0, int64_t r1, const void *buf, float *y)
{
    int64_t k = w->k;
    const int8_t *pl = buf;
    const int32_t *corr = (const int32_t *)(pl + 3 * k);
    const float *xs = (const float *)(corr + k / 8);
    uint8_t t64[64];
    for (int i = 0; i < 64; i++) t64[i] = dsv4k_e2m1_x2p12[i % 16];
    const __m512i tab = _mm512_loadu_si512(t64), m4 = _mm512_set1_epi8(15);
    const __m512i one = _mm512_set1_epi16(1), c128 = _mm512_set1_epi16(128), c16k = _mm512_set1_epi16(16384);
    const __m512i spread = fp4v_spread();
    for (int64_t r = r0; r < r1; r++) {
        int64_t rr = w->row0 + r;
        const uint8_t *p = (const uint8_t *)w->w + rr * (k / 2);
        const uint8_t *sc = (const uint8_t *)w->s + rr * (k / 32);
        int plain = plain_scales(sc, k / 32);
        __m512 t0 = _mm512_setzero_ps(), t1 = t0;
        for (int64_t j = 0; j < k / 128; j++) {
            /* 128 weights: 64 bytes; lanes 4b..4b+3 of the sums are block b */
            __m512i v = _mm512_loadu_si512((const void *)(p + 64 * j));
            __m512i lo = _mm512_shuffle_epi8(tab, _mm512_and_si512(v, m4));
            __m512i hi = _mm512_shuffle_epi8(tab, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
            const int8_t *q = pl + 384 * j;
            __m512i p0 = _mm512_add_epi16(_mm512_maddubs_epi16(lo, _mm512_loadu_si512((const void *)q)),
                                          _mm512_maddubs_epi16(hi, _mm512_loadu_si512((const void *)(q + 64))));
            __m512i p1 = _mm512_add_epi16(_mm512_maddubs_epi16(lo, _mm512_loadu_si512((const void *)(q + 128))),
                                          _mm512_maddubs_epi16(hi, _mm512_loadu_si512((const void *)(q + 192))));
            __m512i p2 = _mm512_add_epi16(_mm512_maddubs_epi16(lo, _mm512_loadu_si512((const void *)(q + 256))),
                                          _mm512_maddubs_epi16(hi, _mm512_loadu_si512((const void *)(q + 320))));
            __m512i sum = _mm512_add_epi32(_mm512_add_epi32(madd16(p0, one), madd16(p1, c128)), madd16(p2, c16k));
            sum = _mm512_sub_epi32(sum, _mm512_loadu_si512((const void *)(corr + 16 * j)));
            __m512 sv = plain ? fp4v_scales(sc + 4 * j, spread, xs[j]) : fp4v_scales_lut(sc + 4 * j, xs[j]);
            if (j & 1) t1 = _mm512_fmadd_ps(cvt_i32_ps(sum), sv, t1);
            else t0 = _mm512_fmadd_ps(cvt_i32_ps(sum), sv, t0);
        }
        y[r] = hsum16(_mm512_add_ps(t0, t1));
    }
}

/* ---- VNNI (vpdpbusd) twins for CPUs with AVX512-VNNI ---------------------------- */

#ifdef DSV4K_EMULATE_AVX512
#define TGTV
#else
#define TGTV __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")))
#endif

/*
 * The FP4 row kernel of e4m3 activations on VNNI: vpermb decodes 64 codes
 * at once against a 64-byte table holding the 16 values 2·e2m1 + 12 four
 * times (its index is the low 6 bits of each byte, so neither nibble needs
 * masking: the low nibble's table entry ignores the 2 bits above it, and
 * the high nibble is a 16-bit shift away); vpdpbusd multiplies those
 * unsigned bytes by one signed digit plane and adds each 4 products into
 * an int32 lane — exactly (no 16-bit intermediate as in vpmaddubsw), so
 * 128 weights cost 6 vpdpbusd for the 3 digit planes. Lane l of a
 * 128-block's sums holds elements 8l .. 8l+7 (even ones from the low
 * nibbles, odd ones from the high), so lanes 4b .. 4b+3 are 32-block b,
 * whose E8M0 byte is spread over them by one vpshufb of the broadcast
 * 4 bytes and moved into the f32 exponent field. Same sums as
 * dsv4k_rows_fp4q_avx512, bit for bit (the block sums are exact integers
 * either way; the f32 total is summed in the same order).
 */
#define FP4V_PLANES(v, lo, hi)                                                             \
    do {                                                                                   \
        (lo) = _mm512_permutexvar_epi8((v), tab);                                          \
        (hi) = _mm512_permutexvar_epi8(_mm512_srli_epi16((v), 4), tab);                    \
    } while (0)

/* Σ over the 3 planes (digit weights 1, 128, 16384) of lo·even + hi·odd
 * less the corrections, by Horner's rule: the top plane's sums shifted by 7
 * take the middle plane's, shifted again the low plane's (exact: every
 * partial value is an int32 well inside range) */
#define FP4V_SUM(lo, hi, q, cr, out)                                                                        \
    do {                                                                                                    \
        __m512i s_ = _mm512_dpbusd_epi32(_mm512_setzero_si512(), (lo), _mm512_loadu_si512((const void *)((q) + 256))); \
        s_ = _mm512_dpbusd_epi32(s_, (hi), _mm512_loadu_si512((const void *)((q) + 320)));                  \
        s_ = _mm512_dpbusd_epi32(_mm512_slli_epi32(s_, 7), (lo), _mm512_loadu_si512((const void *)((q) + 128))); \
        s_ = _mm512_dpbusd_epi32(s_, (hi), _mm512_loadu_si512((const void *)((q) + 192)));                  \
        s_ = _mm512_dpbusd_epi32(_mm512_slli_epi32(s_, 7), (lo), _mm512_loadu_si512((const void *)(q)));    \
        s_ = _mm512_dpbusd_epi32(s_, (hi), _mm512_loadu_si512((const void *)((q) + 64)));                   \
        (out) = _mm512_sub_epi32(s_, _mm512_loadu_si512((const void *)(cr)));                               \
    } while (0)

/* one row (any scale bytes) */
TGTV static inline float fp4v_row(const uint8_t *p, const uint8_t *sc, int64_t kb, const int8_t *pl,
                                  const int32_t *corr, const float *xs, __m512i tab, __m512i spread)
{
    int plain = plain_scales(sc, 4 * kb);
    __m512 t0 = _mm512_setzero_ps(), t1 = t0;
    for (int64_t j = 0; j < kb; j++) {
        __m512i lo, hi, s;
        FP4V_PLANES(_mm512_loadu_si512((const void *)(p + 64 * j)), lo, hi);
        FP4V_SUM(lo, hi, pl + 384 * j, corr + 16 * j, s);
        __m512 sv = plain ? fp4v_scales(sc + 4 * j, spread, xs[j]) : fp4v_scales_lut(sc + 4 * j, xs[j]);
        if (j & 1) t1 = _mm512_fmadd_ps(cvt_i32_ps(s), sv, t1);
        else t0 = _mm512_fmadd_ps(cvt_i32_ps(s), sv, t0);
    }
    return hsum16(_mm512_add_ps(t0, t1));
}

TGTV void K512(dsv4k_rows_fp4q_avx512vnni)(const dsv4k_weight *w, int64_t r0, int64_t r1, const void *buf, float *y)
{
    int64_t k = w->k, kb = k / 128;
    const int8_t *pl = buf;
    const int32_t *corr = (const int32_t *)(pl + 3 * k);
    const float *xs = (const float *)(corr + k / 8);
    uint8_t t64[64];
    for (int i = 0; i < 64; i++) t64[i] = dsv4k_e2m1_x2p12[i % 16];
    const __m512i tab = _mm512_loadu_si512(t64), spread = fp4v_spread();
    /* one row per pass: two rows sharing the plane loads measured slower */
    for (int64_t r = r0; r < r1; r++) {
        int64_t rr = w->row0 + r;
        y[r] = fp4v_row((const uint8_t *)w->w + rr * (k / 2), (const uint8_t *)w->s + rr * (k / 32), kb, pl, corr,
                        xs, tab, spread);
    }
}

/*
 * The second form (dsv4k_fp4v_prepare, dsv4k_rows_fp4v_avx512vnni; k a
 * multiple of 512). vpdpbusd has no 16-bit intermediate, so the digits may
 * use the whole signed byte: each 128-block's integers a = q·2^(9-ex) are
 * first divided by their common power of two 2^tz (exact: tz is the lowest
 * set bit of their OR), then written a' = d0 + 256·d1 (+ 65536·d2): most
 * blocks need two planes, not three (those whose a' lie within ±2^15,
 * i.e. whose nonzero values span less than about 12 binades), and the
 * kernel takes the plane count per block. Four blocks' lane sums are then
 * folded by one transposition (unpack, add) into one vector whose lane
 * 4g + i is 32-block g of block i, so the corrections, the E8M0 scales
 * (16 bytes, one vpshufb, one widening) and the activation scales are
 * applied once per 512 weights instead of once per 128.
 *
 * Buffer (dsv4k_fp4v_bytes): per block j at 384·j the digit planes as in
 * the first form (plane p at +128·p: 64 even elements, then 64 odd); then
 * int32 corrections 12·Σa' per 32-block and float scales 2^(ex-10+tz), both
 * [k/32] in the transposed order (index 16·G + 4·g + i for block 4G + i,
 * 32-block g); then the plane count per block, uint8 [k/128].
 */
#ifndef DSV4K_EMULATE_AVX512
int64_t dsv4k_fp4v_bytes(int64_t k) { return 3 * k + 8 * (k / 32) + k / 128; }
#endif

#ifdef DSV4K_EMULATE_AVX512
static int32_t hsum_i32(__m512i v)
{
    int32_t t[16], s = 0;
    _mm512_storeu_si512(t, v);
    for (int i = 0; i < 16; i++) s += t[i];
    return s;
}
static uint32_t hor_i32(__m512i v)
{
    uint32_t t[16], s = 0;
    _mm512_storeu_si512(t, v);
    for (int i = 0; i < 16; i++) s |= t[i];
    return s;
}
#else
#define hsum_i32(v) _mm512_reduce_add_epi32(v)
#define hor_i32(v) ((uint32_t)_mm512_reduce_or_epi32(v))
#endif

/* the even (ev = 1: elements 0, 2, ..) or odd elements of 32 int32 lanes
 * (a, b) as 16 bytes (each value fits a signed byte) */
TGT static inline __m128i fp4v_pick(__m512i a, __m512i b, __m512i idx)
{
    return _mm512_cvtsepi32_epi8(_mm512_permutex2var_epi32(a, idx, b));
}

TGT int K512(dsv4k_fp4v_prepare)(const float *dq, const int8_t *ex, int64_t k, void *buf)
{
    if (k % 512) return -1;
    int8_t *pl = buf;
    int32_t *corr = (int32_t *)(pl + 3 * k);
    float *xs = (float *)(corr + k / 32);
    uint8_t *np = (uint8_t *)(xs + k / 32);
    const __m512i bad = _mm512_set1_epi32(INT32_MIN);
    const __m512i ev_i = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od_i = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    for (int64_t j = 0; j < k / 128; j++) {
        __m512 up = _mm512_set1_ps(ldexpf(1.0f, 9 - ex[j]));
        __m512i a[8], d[3][8], any = _mm512_setzero_si512(), hi = any;
        int nonfinite = 0;
        for (int v = 0; v < 8; v++) {
            /* exact: dq = e4m3 value · 2^ex; NaN and infinities become INT32_MIN */
            a[v] = cvtt_ps_i32(_mm512_mul_ps(_mm512_loadu_ps(dq + 128 * j + 16 * v), up));
            nonfinite |= _mm512_cmpeq_epi32_mask(a[v], bad) != 0;
            any = _mm512_or_si512(any, a[v]);
        }
        if (nonfinite) return -1;
        uint32_t o = hor_i32(any);
        int tz = o ? __builtin_ctz(o) : 0;
        for (int v = 0; v < 8; v++) {
            __m512i x = srai32(a[v], tz);
            a[v] = x;
            /* d0: the low byte as a signed value; d1, d2 likewise of the rest */
            __m512i d0 = srai32(_mm512_slli_epi32(x, 24), 24);
            __m512i r = srai32(_mm512_sub_epi32(x, d0), 8);
            __m512i d1 = srai32(_mm512_slli_epi32(r, 24), 24);
            d[0][v] = d0;
            d[1][v] = d1;
            d[2][v] = srai32(_mm512_sub_epi32(r, d1), 8);
            hi = _mm512_or_si512(hi, d[2][v]);
        }
        int n = hor_i32(hi) ? 3 : 2;
        np[j] = (uint8_t)n;
        for (int p = 0; p < n; p++) {
            int8_t *dst = pl + 384 * j + 128 * p;
            for (int h = 0; h < 4; h++) {
                _mm_storeu_si128((__m128i *)(dst + 16 * h), fp4v_pick(d[p][2 * h], d[p][2 * h + 1], ev_i));
                _mm_storeu_si128((__m128i *)(dst + 64 + 16 * h), fp4v_pick(d[p][2 * h], d[p][2 * h + 1], od_i));
            }
        }
        /* 32-block g of block j = 4G + i at 16·G + 4·g + i */
        int64_t G = j / 4, i = j % 4;
        for (int g = 0; g < 4; g++) corr[16 * G + 4 * g + i] = 12 * hsum_i32(_mm512_add_epi32(a[2 * g], a[2 * g + 1]));
        float s = ldexpf(1.0f, ex[j] - 10 + tz);
        for (int g = 0; g < 4; g++) xs[16 * G + 4 * g + i] = s;
    }
    return 0;
}

/* the lane sums (16 lanes: lanes 4b .. 4b+3 are 32-block b) of one
 * 128-block of n planes, base 256, by Horner's rule */
#define FP4V2_SUM(lo, hi, q, n, out)                                                                      \
    do {                                                                                                  \
        __m512i s_ = _mm512_setzero_si512();                                                              \
        if ((n) == 3) {                                                                                   \
            s_ = _mm512_dpbusd_epi32(s_, (lo), _mm512_loadu_si512((const void *)((q) + 256)));            \
            s_ = _mm512_slli_epi32(_mm512_dpbusd_epi32(s_, (hi), _mm512_loadu_si512((const void *)((q) + 320))), 8); \
        }                                                                                                 \
        s_ = _mm512_dpbusd_epi32(s_, (lo), _mm512_loadu_si512((const void *)((q) + 128)));                \
        s_ = _mm512_slli_epi32(_mm512_dpbusd_epi32(s_, (hi), _mm512_loadu_si512((const void *)((q) + 192))), 8); \
        s_ = _mm512_dpbusd_epi32(s_, (lo), _mm512_loadu_si512((const void *)(q)));                        \
        (out) = _mm512_dpbusd_epi32(s_, (hi), _mm512_loadu_si512((const void *)((q) + 64)));              \
    } while (0)

TGTV void K512(dsv4k_rows_fp4v_avx512vnni)(const dsv4k_weight *w, int64_t r0, int64_t r1, const void *buf, float *y)
{
    int64_t k = w->k, ng = k / 512;
    const int8_t *pl = buf;
    const int32_t *corr = (const int32_t *)(pl + 3 * k);
    const float *xs = (const float *)(corr + k / 32);
    const uint8_t *np = (const uint8_t *)(xs + k / 32);
    uint8_t t64[64], tr[16];
    for (int i = 0; i < 64; i++) t64[i] = dsv4k_e2m1_x2p12[i % 16];
    for (int g = 0; g < 4; g++)
        for (int i = 0; i < 4; i++) tr[4 * g + i] = (uint8_t)(4 * i + g); /* the scale bytes transposed */
    const __m512i tab = _mm512_loadu_si512(t64);
    const __m128i trv = _mm_loadu_si128((const __m128i *)tr);
    for (int64_t r = r0; r < r1; r++) {
        int64_t rr = w->row0 + r;
        const uint8_t *p = (const uint8_t *)w->w + rr * (k / 2);
        const uint8_t *sc = (const uint8_t *)w->s + rr * (k / 32);
        int plain = plain_scales(sc, k / 32);
        __m512 t0 = _mm512_setzero_ps(), t1 = t0;
        for (int64_t G = 0; G < ng; G++) {
            DSV4K_MCA_BEGIN("fp4_avx512_vnni:512");
            __m512i S0, S1, S2, S3, lo, hi;
            const uint8_t *pj = p + 256 * G;
            const int8_t *qj = pl + 1536 * G;
            uint32_t n4;
            memcpy(&n4, np + 4 * G, 4);
            if (DSV4K_MCA_COMMON(n4 == 0x02020202u)) { /* the common case: four blocks of two planes, unrolled */
                FP4V_PLANES(_mm512_loadu_si512((const void *)pj), lo, hi);
                FP4V2_SUM(lo, hi, qj, 2, S0);
                FP4V_PLANES(_mm512_loadu_si512((const void *)(pj + 64)), lo, hi);
                FP4V2_SUM(lo, hi, qj + 384, 2, S1);
                FP4V_PLANES(_mm512_loadu_si512((const void *)(pj + 128)), lo, hi);
                FP4V2_SUM(lo, hi, qj + 768, 2, S2);
                FP4V_PLANES(_mm512_loadu_si512((const void *)(pj + 192)), lo, hi);
                FP4V2_SUM(lo, hi, qj + 1152, 2, S3);
            } else {
                FP4V_PLANES(_mm512_loadu_si512((const void *)pj), lo, hi);
                FP4V2_SUM(lo, hi, qj, np[4 * G], S0);
                FP4V_PLANES(_mm512_loadu_si512((const void *)(pj + 64)), lo, hi);
                FP4V2_SUM(lo, hi, qj + 384, np[4 * G + 1], S1);
                FP4V_PLANES(_mm512_loadu_si512((const void *)(pj + 128)), lo, hi);
                FP4V2_SUM(lo, hi, qj + 768, np[4 * G + 2], S2);
                FP4V_PLANES(_mm512_loadu_si512((const void *)(pj + 192)), lo, hi);
                FP4V2_SUM(lo, hi, qj + 1152, np[4 * G + 3], S3);
            }
            __m512i u0 = _mm512_add_epi32(_mm512_unpacklo_epi32(S0, S1), _mm512_unpackhi_epi32(S0, S1));
            __m512i u1 = _mm512_add_epi32(_mm512_unpacklo_epi32(S2, S3), _mm512_unpackhi_epi32(S2, S3));
            __m512i R = _mm512_add_epi32(_mm512_unpacklo_epi64(u0, u1), _mm512_unpackhi_epi64(u0, u1));
            R = _mm512_sub_epi32(R, _mm512_loadu_si512((const void *)(corr + 16 * G)));
            __m512 sv;
            if (DSV4K_MCA_COMMON(plain)) {
                __m128i b = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(sc + 16 * G)), trv);
                sv = _mm512_castsi512_ps(_mm512_slli_epi32(cvt_u8x16_epi32(b), 23));
            } else {
                float f[16];
                for (int l = 0; l < 16; l++) f[l] = dsv4k_lut_e8m0[sc[16 * G + tr[l]]];
                sv = _mm512_loadu_ps(f);
            }
            sv = _mm512_mul_ps(sv, _mm512_loadu_ps(xs + 16 * G));
            if (G & 1) t1 = _mm512_fmadd_ps(cvt_i32_ps(R), sv, t1);
            else t0 = _mm512_fmadd_ps(cvt_i32_ps(R), sv, t0);
            DSV4K_MCA_END("fp4_avx512_vnni:512");
        }
        y[r] = hsum16(_mm512_add_ps(t0, t1));
    }
}

/* ---- FP8 by vdpbf16ps (AVX512-BF16 and VBMI; reference numerics) ----------- */

#ifdef DSV4K_EMULATE_AVX512
#define TGTB
#else
#define TGTB __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512bf16,avx2,fma,f16c")))

int64_t dsv4k_fp8b_bytes(int64_t k) { return 2 * k + 256; }
#endif

/*
 * Every e4m3 value is a bf16 value (a subnormal code 2^-9·m becomes a normal
 * bf16), and so is every activation of reference numerics, q·2^ex with q
 * e4m3; their products have at most 8 significant bits, exact in f32. So
 * vdpbf16ps multiplies them exactly and only its f32 sums round. A weight
 * byte becomes its bf16 by two vpermt2b over 128-entry tables (the high
 * and the low byte of the magnitude's bf16, indexed by the byte's low 7
 * bits), the sign bit or-ed back into the high byte, and the two byte
 * vectors interleaved into words: 64 weights in 5 operations, against 16
 * for the f32 decoding. The interleave puts bytes 0-7 of each 16 in the
 * first word vector and 8-15 in the second; dsv4k_fp8b_prepare lays the
 * activation words out in that order.
 *
 * Buffer: the activation as bf16 words [k] in kernel order, then the four
 * tables (64 bytes each). Refused (-1) for a value that is
 * not finite or a block exponent outside ±100 (products could leave the
 * f32 normal range, where vdpbf16ps flushes), and k % 128.
 */
TGT int K512(dsv4k_fp8b_prepare)(const float *dq, const int8_t *ex, int64_t k, void *buf)
{
    if (k % 128) return -1;
    uint16_t *a16 = buf;
    uint8_t *tb = (uint8_t *)(a16 + k);
    for (int64_t j = 0; j < k / 128; j++)
        if (ex[j] < -100 || ex[j] > 100) return -1;
    for (int m = 0; m < 128; m++) {
        float v = dsv4k_lut_e4m3[m];
        uint32_t u = dsv4k_f32_bits(v);
        uint16_t h = m == 127 ? 0x7fc0 : (uint16_t)(u >> 16);
        tb[m] = (uint8_t)(h >> 8);        /* high bytes: tables 0, 1 */
        tb[128 + m] = (uint8_t)(h & 255); /* low bytes: tables 2, 3 */
    }
    /* words 2i+1 of (F0, F1) are the bf16 of k_i (exact: the values are
     * bf16 values); A = k0-7, k16-23, k8-15, k24-31 */
    int16_t ia[32];
    for (int i = 0; i < 8; i++) {
        ia[i] = (int16_t)(2 * i + 1);
        ia[8 + i] = (int16_t)(32 + 2 * i + 1);
        ia[16 + i] = (int16_t)(2 * (8 + i) + 1);
        ia[24 + i] = (int16_t)(32 + 2 * (8 + i) + 1);
    }
    const __m512i idx = _mm512_loadu_si512(ia);
    __m512i bad = _mm512_setzero_si512();
    for (int64_t c = 0; c < k; c += 64) {
        __m512 f0 = _mm512_loadu_ps(dq + c), f1 = _mm512_loadu_ps(dq + c + 16);
        __m512 f2 = _mm512_loadu_ps(dq + c + 32), f3 = _mm512_loadu_ps(dq + c + 48);
        /* x - x is NaN exactly for NaN and infinities */
        __m512i z01 = _mm512_or_si512(_mm512_castps_si512(_mm512_sub_ps(f0, f0)), _mm512_castps_si512(_mm512_sub_ps(f1, f1)));
        __m512i z23 = _mm512_or_si512(_mm512_castps_si512(_mm512_sub_ps(f2, f2)), _mm512_castps_si512(_mm512_sub_ps(f3, f3)));
        bad = _mm512_or_si512(bad, _mm512_or_si512(z01, z23));
        __m512i A = _mm512_permutex2var_epi16(_mm512_castps_si512(f0), idx, _mm512_castps_si512(f1));
        __m512i B = _mm512_permutex2var_epi16(_mm512_castps_si512(f2), idx, _mm512_castps_si512(f3));
        _mm512_storeu_si512((void *)(a16 + c), _mm512_shuffle_i32x4(A, B, 0x44));
        _mm512_storeu_si512((void *)(a16 + c + 32), _mm512_shuffle_i32x4(A, B, 0xee));
    }
    /* x - x is +0 for finite x: any other bit pattern marks NaN or infinity */
    uint32_t t[16];
    _mm512_storeu_si512(t, bad);
    for (int i = 0; i < 16; i++)
        if (t[i]) return -1;
    return 0;
}

#define DPBF16(acc, a, b) _mm512_dpbf16_ps((acc), (__m512bh)(a), (__m512bh)(b))

/* 64 e4m3 bytes -> their bf16 words, in the two vectors' order above */
#define E4M3_BF16X64(ptr, w0, w1)                                                                          \
    do {                                                                                                   \
        __m512i v_ = _mm512_loadu_si512((const void *)(ptr));                                              \
        __m512i h_ = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(th0, v_, th1), v_, sgn, 0xf8);     \
        __m512i l_ = _mm512_permutex2var_epi8(tl0, v_, tl1);                                               \
        (w0) = _mm512_unpacklo_epi8(l_, h_);                                                               \
        (w1) = _mm512_unpackhi_epi8(l_, h_);                                                               \
    } while (0)

/*
 * The four rows of an interleaved group (q: its first byte) against the
 * activation words: each row's sums in the order of the one-row loop
 * (two partial sums per 128-block, their sum scaled into two alternating
 * totals), so each result is bit for bit that loop's; the activation words
 * are loaded once for the four rows.
 */
#define FP8B_ROW(i)                                                                         \
    do {                                                                                    \
        __m512i w0, w1, w2, w3;                                                             \
        E4M3_BF16X64(q + 64 * (i), w0, w1);                                                 \
        E4M3_BF16X64(q + 256 + 64 * (i), w2, w3);                                           \
        __m512 s0 = DPBF16(_mm512_setzero_ps(), w0, a0);                                    \
        __m512 s1 = DPBF16(_mm512_setzero_ps(), w2, a2);                                    \
        s0 = DPBF16(s0, w1, a1);                                                            \
        s1 = DPBF16(s1, w3, a3);                                                            \
        if (j & 1) u##i = _mm512_fmadd_ps(_mm512_add_ps(s0, s1), sv, u##i);                 \
        else t##i = _mm512_fmadd_ps(_mm512_add_ps(s0, s1), sv, t##i);                       \
    } while (0)

TGTB static void fp8b_group(const uint8_t *q, const uint16_t *a16, const float *sc, int64_t kb, __m512i th0,
                            __m512i th1, __m512i tl0, __m512i tl1, __m512i sgn, float *y)
{
    __m512 t0 = _mm512_setzero_ps(), t1 = t0, t2 = t0, t3 = t0, u0 = t0, u1 = t0, u2 = t0, u3 = t0;
    for (int64_t j = 0; j < kb; j++, q += 512) {
        DSV4K_MCA_BEGIN("fp8_avx512_bf16dot_4rows:512");
        const uint16_t *a = a16 + 128 * j;
        __m512i a0 = _mm512_loadu_si512((const void *)a), a1 = _mm512_loadu_si512((const void *)(a + 32));
        __m512i a2 = _mm512_loadu_si512((const void *)(a + 64)), a3 = _mm512_loadu_si512((const void *)(a + 96));
        __m512 sv = _mm512_set1_ps(sc[j]);
        FP8B_ROW(0);
        FP8B_ROW(1);
        FP8B_ROW(2);
        FP8B_ROW(3);
        DSV4K_MCA_END("fp8_avx512_bf16dot_4rows:512");
    }
    y[0] = hsum16(_mm512_add_ps(t0, u0));
    y[1] = hsum16(_mm512_add_ps(t1, u1));
    y[2] = hsum16(_mm512_add_ps(t2, u2));
    y[3] = hsum16(_mm512_add_ps(t3, u3));
}

TGTB int K512(dsv4k_rows_fp8b_avx512bf16)(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *x,
                                          const void *buf, float *y)
{
    int64_t k = w->k, kb = k / 128;
    if ((w->fmt != DSV4K_W_FP8 && w->fmt != DSV4K_W_FP8_F32S) || k % 128 || kb > 64) return -1;
    const uint16_t *a16 = buf;
    const uint8_t *tb = (const uint8_t *)(a16 + k);
    const __m512i th0 = _mm512_loadu_si512((const void *)tb), th1 = _mm512_loadu_si512((const void *)(tb + 64));
    const __m512i tl0 = _mm512_loadu_si512((const void *)(tb + 128)), tl1 = _mm512_loadu_si512((const void *)(tb + 192));
    const __m512i sgn = _mm512_set1_epi8((char)0x80);
    float sc[64], sf[64]; /* one row block's scales (the activation words carry their 2^ex); × 2^8 */
    int64_t cur = -1;
    int fast = 1;
    for (int64_t r = r0; r < r1; r++) {
        int64_t rr = w->row0 + r;
        if (rr / 128 != cur) {
            cur = rr / 128;
            fast = 1;
            for (int64_t b = 0; b < kb; b++) {
                sc[b] = fp8_scale(w, rr, b, kb);
                sf[b] = 256.0f * sc[b];
                /* a block sum scaled at the end may stay finite where the
                 * reference's scaled products overflow (or it may leave the
                 * normal range): such row blocks take the f32 kernel */
                fast &= fabsf(sc[b]) >= 0x1p-100f && fabsf(sc[b]) <= 0x1p100f;
            }
        }
        int64_t cs;
        const uint8_t *p = dsv4k_row_start(w, rr, k, &cs);
        if (!fast) {
            y[r] = dot1_fp8(p, cs, sf, x, k);
            continue;
        }
        if (rr < w->ilv && (rr & 3) == 0 && r + 4 <= r1) {
            /* an interleaved group: its four rows in one stream */
            fp8b_group(p, a16, sc, kb, th0, th1, tl0, tl1, sgn, y + r);
            r += 3;
            continue;
        }
        __m512 t0 = _mm512_setzero_ps(), t1 = t0;
        for (int64_t j = 0; j < kb; j++, p += 2 * cs) {
            DSV4K_MCA_BEGIN("fp8_avx512_bf16dot:128");
            __m512i w0, w1, w2, w3;
            const uint16_t *a = a16 + 128 * j;
            E4M3_BF16X64(p, w0, w1);
            E4M3_BF16X64(p + cs, w2, w3);
            __m512 s0 = DPBF16(_mm512_setzero_ps(), w0, _mm512_loadu_si512((const void *)a));
            __m512 s1 = DPBF16(_mm512_setzero_ps(), w2, _mm512_loadu_si512((const void *)(a + 64)));
            s0 = DPBF16(s0, w1, _mm512_loadu_si512((const void *)(a + 32)));
            s1 = DPBF16(s1, w3, _mm512_loadu_si512((const void *)(a + 96)));
            if (j & 1) t1 = _mm512_fmadd_ps(_mm512_add_ps(s0, s1), _mm512_set1_ps(sc[j]), t1);
            else t0 = _mm512_fmadd_ps(_mm512_add_ps(s0, s1), _mm512_set1_ps(sc[j]), t0);
            DSV4K_MCA_END("fp8_avx512_bf16dot:128");
        }
        y[r] = hsum16(_mm512_add_ps(t0, t1));
    }
    return 0;
}

int K512(dsv4k_rows_avx512)(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *x, int64_t ldx, int64_t m,
                            float *y, int64_t ldy)
{
    switch (w->fmt) {
    case DSV4K_W_BF16:
        if (w->k % 32) return -1;
        rows_bf16(w, r0, r1, x, ldx, m, y, ldy);
        return 0;
    case DSV4K_W_FP8:
    case DSV4K_W_FP8_F32S:
        if (w->k % 128) return -1;
        rows_fp8(w, r0, r1, x, ldx, m, y, ldy);
        return 0;
    case DSV4K_W_FP4:
        if (w->k % 32) return -1;
        rows_fp4(w, r0, r1, x, ldx, m, y, ldy);
        return 0;
    }
    return -1;
}
