/*
 * kernels/x86/gemv_avx2.c — AVX2/FMA/F16C products of a few activation rows
 * with weight rows in their stored formats: the optimised twins of the row
 * loop of dsv4k_linear_ref (tested against it in tests/kernels).
 *
 * Every weight is decoded exactly to f32 in registers and multiplied in f32
 * (exact products rounded once, f32 sums), so results equal the reference's
 * up to summation order, in both numerics:
 *  - BF16: zero-extended and shifted into the f32 high half;
 *  - FP8 e4m3: sign, exponent and mantissa moved into an f16 whose value is
 *    the e4m3 value × 2^-8 (exact for normals and subnormals; the NaN codes,
 *    which checkpoints do not contain, become finite) and widened by
 *    vcvtph2ps; the 2^8 is folded into the 128×128 block scale;
 *  - FP4 e2m1: every value is an f16 whose low byte is zero, so one vpshufb
 *    with a 16-entry table of high bytes decodes 16 nibbles; the even and
 *    odd elements meet activations split the same way once per call
 *    (dsv4k_split_even_odd); each block of 32 gets its E8M0 scale once.
 * Also the lightning indexer's score (8 heads per pass) and its FP4 key
 * decoding. Compiled with target attributes; callers check
 * dsv4k_have_avx2() first.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>
#include "gemv.h"
#include "mca.h"

#define TGT __attribute__((target("avx2,fma,f16c")))

/* dsv4k_have_avx2: kernels/cpu.c */

TGT static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

TGT static inline float hmax(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* up to 4 activation rows share every decoded weight vector */
#define ACC4(wv, off)                                                                     \
    do {                                                                                  \
        b0 = _mm256_fmadd_ps((wv), _mm256_loadu_ps(x0 + (off)), b0);                      \
        if (mi > 1) b1 = _mm256_fmadd_ps((wv), _mm256_loadu_ps(x0 + ldx + (off)), b1);    \
        if (mi > 2) b2 = _mm256_fmadd_ps((wv), _mm256_loadu_ps(x0 + 2 * ldx + (off)), b2); \
        if (mi > 3) b3 = _mm256_fmadd_ps((wv), _mm256_loadu_ps(x0 + 3 * ldx + (off)), b3); \
    } while (0)

#define STORE4()                                             \
    do {                                                     \
        y[i0 * ldy + r] = hsum(a0);                          \
        if (mi > 1) y[(i0 + 1) * ldy + r] = hsum(a1);        \
        if (mi > 2) y[(i0 + 2) * ldy + r] = hsum(a2);        \
        if (mi > 3) y[(i0 + 3) * ldy + r] = hsum(a3);        \
    } while (0)

/* a_i += b_i · s, then b_i = 0 */
#define SCALE4(sv)                                           \
    do {                                                     \
        a0 = _mm256_fmadd_ps(b0, (sv), a0);                  \
        a1 = _mm256_fmadd_ps(b1, (sv), a1);                  \
        a2 = _mm256_fmadd_ps(b2, (sv), a2);                  \
        a3 = _mm256_fmadd_ps(b3, (sv), a3);                  \
        b0 = b1 = b2 = b3 = _mm256_setzero_ps();             \
    } while (0)

/* ---- BF16 ------------------------------------------------------------------ */

/* one activation row: four independent accumulators, so the FMA latency
 * does not bound the loop */
TGT static float dot1_bf16(const uint16_t *p, int64_t cs, const float *x, int64_t k)
{
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    int64_t c = 0;
    for (; c + 32 <= k; c += 32, p += cs) {
        __m256i h0 = _mm256_loadu_si256((const __m256i *)p), h1 = _mm256_loadu_si256((const __m256i *)(p + 16));
        c0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(h0)), 16)),
                             _mm256_loadu_ps(x + c), c0);
        c1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(h0, 1)), 16)),
                             _mm256_loadu_ps(x + c + 8), c1);
        c2 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(h1)), 16)),
                             _mm256_loadu_ps(x + c + 16), c2);
        c3 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(h1, 1)), 16)),
                             _mm256_loadu_ps(x + c + 24), c3);
    }
    for (; c < k; c += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)p);
        p += 16;
        c0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(h)), 16)),
                             _mm256_loadu_ps(x + c), c0);
        c1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1)), 16)),
                             _mm256_loadu_ps(x + c + 8), c1);
    }
    return hsum(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)));
}

/* k % 32 == 0, activations split even/odd per 32 (dsv4k_split_even_odd): a
 * 32-bit lane holds two weights, the even one is the lane shifted left by
 * 16 and the odd one the lane with its low half cleared (2 integer ops per
 * 8 weights instead of a widening, an extract and a shift) */
#define BF16X16S(ptr, ev, od)                                                      \
    do {                                                                           \
        __m256i v_ = _mm256_loadu_si256((const __m256i *)(ptr));                   \
        (ev) = _mm256_castsi256_ps(_mm256_slli_epi32(v_, 16));                     \
        (od) = _mm256_castsi256_ps(_mm256_and_si256(v_, hm));                      \
    } while (0)

/* one row whose 32-weight chunks lie cs words apart (32 plain, 128 in the
 * interleaved layout) */
TGT static float dot1_bf16_split(const uint16_t *p, int64_t cs, const float *xs, int64_t k)
{
    const __m256i hm = _mm256_set1_epi32((int)0xffff0000u);
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, e0, o0, e1, o1;
    for (int64_t c = 0; c < k; c += 32, p += cs) {
        DSV4K_MCA_BEGIN("bf16_avx2_row:32");
        BF16X16S(p, e0, o0);      /* elements 0..15 of the block */
        BF16X16S(p + 16, e1, o1); /* elements 16..31 */
        c0 = _mm256_fmadd_ps(e0, _mm256_loadu_ps(xs + c), c0);
        c1 = _mm256_fmadd_ps(o0, _mm256_loadu_ps(xs + c + 16), c1);
        c2 = _mm256_fmadd_ps(e1, _mm256_loadu_ps(xs + c + 8), c2);
        c3 = _mm256_fmadd_ps(o1, _mm256_loadu_ps(xs + c + 24), c3);
        DSV4K_MCA_END("bf16_avx2_row:32");
    }
    return hsum(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)));
}

/*
 * Two rows of an interleaved group (p: the first one's start; the second's
 * chunks follow each of its chunks) in one pass: the activations are
 * loaded once for both, and each row keeps dot1_bf16_split's accumulators
 * in its order, so the results are bit for bit its results. Two rows, not
 * four: AVX2 has 16 registers. The second pass over the group (its other
 * two rows) finds the lines in cache.
 */
#define BF16S2_ROW(i, q)                                                    \
    do {                                                                    \
        BF16X16S((q), e0, o0);                                              \
        BF16X16S((q) + 16, e1, o1);                                         \
        c##i##0 = _mm256_fmadd_ps(e0, x0, c##i##0);                         \
        c##i##1 = _mm256_fmadd_ps(o0, x1, c##i##1);                         \
        c##i##2 = _mm256_fmadd_ps(e1, x2, c##i##2);                         \
        c##i##3 = _mm256_fmadd_ps(o1, x3, c##i##3);                         \
    } while (0)

TGT static void dot2_bf16_split(const uint16_t *p, const float *xs, int64_t k, float *y)
{
    const __m256i hm = _mm256_set1_epi32((int)0xffff0000u);
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m256 e0, o0, e1, o1, x0, x1, x2, x3;
    for (int64_t c = 0; c < k; c += 32, p += 128) {
        x0 = _mm256_loadu_ps(xs + c);
        x1 = _mm256_loadu_ps(xs + c + 16);
        x2 = _mm256_loadu_ps(xs + c + 8);
        x3 = _mm256_loadu_ps(xs + c + 24);
        BF16S2_ROW(0, p);
        BF16S2_ROW(1, p + 32);
    }
    y[0] = hsum(_mm256_add_ps(_mm256_add_ps(c00, c01), _mm256_add_ps(c02, c03)));
    y[1] = hsum(_mm256_add_ps(_mm256_add_ps(c10, c11), _mm256_add_ps(c12, c13)));
}

TGT static void rows_bf16_split(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *xs, int64_t ldx,
                                int64_t m, float *y, int64_t ldy)
{
    int64_t k = w->k;
    const __m256i hm = _mm256_set1_epi32((int)0xffff0000u);
    for (int64_t r = r0; r < r1; r++) {
        int64_t rr = w->row0 + r, cs;
        const uint16_t *p = (const uint16_t *)(const void *)dsv4k_row_start(w, rr, 2 * k, &cs);
        cs /= 2;
        if (m == 1) {
            if (rr < w->ilv && (rr & 3) == 0 && r + 4 <= r1) {
                dot2_bf16_split(p, xs, k, y + r);
                dot2_bf16_split(p + 64, xs, k, y + r + 2);
                r += 3;
            } else {
                y[r] = dot1_bf16_split(p, cs, xs, k);
            }
            continue;
        }
        for (int64_t i0 = 0; i0 < m; i0 += 4) {
            int64_t mi = m - i0 < 4 ? m - i0 : 4;
            const float *x0 = xs + i0 * ldx;
            const uint16_t *q = p;
            __m256 b0 = _mm256_setzero_ps(), b1 = b0, b2 = b0, b3 = b0, ev, od;
            for (int64_t c = 0; c < k; c += 32, q += cs) {
                BF16X16S(q, ev, od);
                ACC4(ev, c);
                ACC4(od, c + 16);
                BF16X16S(q + 16, ev, od);
                ACC4(ev, c + 8);
                ACC4(od, c + 24);
            }
            __m256 a0 = b0, a1 = b1, a2 = b2, a3 = b3;
            STORE4();
        }
    }
}

TGT static void rows_bf16(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *x, int64_t ldx, int64_t m,
                          float *y, int64_t ldy)
{
    int64_t k = w->k;
    for (int64_t r = r0; r < r1; r++) {
        int64_t cs;
        const uint16_t *p = (const uint16_t *)(const void *)dsv4k_row_start(w, w->row0 + r, 2 * k, &cs);
        cs /= 2;
        if (m == 1) {
            y[r] = dot1_bf16(p, cs, x, k);
            continue;
        }
        for (int64_t i0 = 0; i0 < m; i0 += 4) {
            int64_t mi = m - i0 < 4 ? m - i0 : 4;
            const float *x0 = x + i0 * ldx;
            __m256 b0 = _mm256_setzero_ps(), b1 = b0, b2 = b0, b3 = b0;
            for (int64_t c = 0; c < k; c += 16) {
                __m256i h = _mm256_loadu_si256((const __m256i *)(p + (c >> 5) * cs + (c & 31)));
                __m256 lo = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(h)), 16));
                __m256 hi = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1)), 16));
                ACC4(lo, c);
                ACC4(hi, c + 8);
            }
            __m256 a0 = b0, a1 = b1, a2 = b2, a3 = b3;
            STORE4();
        }
    }
}

/* ---- FP8 e4m3, 128×128 block scales ------------------------------------------ */

/* 16 e4m3 bytes -> two vectors of f32 values × 2^-8 (exact) */
#define E4M3X16(ptr, lo, hi)                                                                              \
    do {                                                                                                  \
        __m256i b_ = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(ptr)));                      \
        /* byte to the high half, arithmetic shift right by one (exponent and  \
         * mantissa into the f16 places), clear the copy of the sign in bit 14 */ \
        __m256i h_ = _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(b_, 8), 1), em);                \
        (lo) = _mm256_cvtph_ps(_mm256_castsi256_si128(h_));                                               \
        (hi) = _mm256_cvtph_ps(_mm256_extracti128_si256(h_, 1));                                          \
    } while (0)

/* one activation row, one row of weights: per 128-block four independent
 * partial sums, scaled into two alternating totals */
TGT static float dot1_fp8(const uint8_t *p, int64_t cs, const float *sc, const float *x, int64_t k)
{
    const __m256i em = _mm256_set1_epi16((short)0xbfff);
    __m256 t0 = _mm256_setzero_ps(), t1 = t0;
    for (int64_t c0 = 0; c0 < k; c0 += 128) {
        __m256 c_0 = _mm256_setzero_ps(), c_1 = c_0, c_2 = c_0, c_3 = c_0, w0, w1, w2, w3;
        for (int64_t c = c0; c < c0 + 128; c += 32) {
            const uint8_t *q = p + (c >> 6) * cs + (c & 63);
            E4M3X16(q, w0, w1);
            E4M3X16(q + 16, w2, w3);
            c_0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + c), c_0);
            c_1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + c + 8), c_1);
            c_2 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(x + c + 16), c_2);
            c_3 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(x + c + 24), c_3);
        }
        __m256 bs = _mm256_add_ps(_mm256_add_ps(c_0, c_1), _mm256_add_ps(c_2, c_3));
        if ((c0 / 128) & 1) t1 = _mm256_fmadd_ps(bs, _mm256_set1_ps(sc[c0 / 128]), t1);
        else t0 = _mm256_fmadd_ps(bs, _mm256_set1_ps(sc[c0 / 128]), t0);
    }
    return hsum(_mm256_add_ps(t0, t1));
}

TGT static void rows_fp8(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *x, int64_t ldx, int64_t m,
                         float *y, int64_t ldy)
{
    int64_t k = w->k, kb = (k + 127) / 128;
    const __m256i em = _mm256_set1_epi16((short)0xbfff); /* for E4M3X16 */
    float scb[64];  /* one row-block's scales × 2^8 (k <= 8192) */
    int64_t cur = -1;
    for (int64_t r = r0; r < r1; r++) {
        int64_t rr = w->row0 + r, cs;
        const uint8_t *p = dsv4k_row_start(w, rr, k, &cs);
        if (m == 1 && kb <= 64) {
            if (rr / 128 != cur) {
                cur = rr / 128;
                for (int64_t b = 0; b < kb; b++)
                    scb[b] = 256.0f * (w->fmt == DSV4K_W_FP8 ? dsv4k_lut_e8m0[((const uint8_t *)w->s)[cur * kb + b]]
                                                             : ((const float *)w->s)[cur * kb + b]);
            }
            y[r] = dot1_fp8(p, cs, scb, x, k);
            continue;
        }
        for (int64_t i0 = 0; i0 < m; i0 += 4) {
            int64_t mi = m - i0 < 4 ? m - i0 : 4;
            const float *x0 = x + i0 * ldx;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            for (int64_t c0 = 0; c0 < k; c0 += 128) {
                float s = w->fmt == DSV4K_W_FP8 ? dsv4k_lut_e8m0[((const uint8_t *)w->s)[(rr / 128) * kb + c0 / 128]]
                                                : ((const float *)w->s)[(rr / 128) * kb + c0 / 128];
                for (int64_t c = c0; c < c0 + 128; c += 16) {
                    __m256 lo, hi;
                    E4M3X16(p + (c >> 6) * cs + (c & 63), lo, hi);
                    ACC4(lo, c);
                    ACC4(hi, c + 8);
                }
                __m256 sv = _mm256_set1_ps(s * 256.0f);
                SCALE4(sv);
            }
            STORE4();
        }
    }
}

/*
 * FP8 against activations quantised to e4m3 (reference numerics, m = 1):
 * sign-extending a byte to 32 bits, shifting it left by 20 and keeping the
 * sign and the 7 low bits gives the f32 whose value is the e4m3 value ×
 * 2^-120, exactly — the subnormal codes become f32 subnormals, which the
 * FMA takes at full speed. Three integer operations per 8 weights and no
 * conversion instruction. The activations come as q · 2^110 (q the e4m3
 * value): every product is then exact and normal (2^-28 .. 2^8), and each
 * 128-block's sum is scaled by S · 2^(10+ex).
 */
#define E4M3X8(ptr)                                                                                       \
    _mm256_castsi256_ps(                                                                                  \
        _mm256_and_si256(_mm256_slli_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(ptr))), 20), msk))

TGT static float dot1_fp8q(const uint8_t *p, int64_t cs, const float *sc, const float *x, int64_t k)
{
    const __m256i msk = _mm256_set1_epi32((int)0x87f00000u);
    __m256 t0 = _mm256_setzero_ps(), t1 = t0;
    for (int64_t c0 = 0; c0 < k; c0 += 128) {
        DSV4K_MCA_BEGIN("fp8_avx2_f32act:128");
        __m256 c_0 = _mm256_setzero_ps(), c_1 = c_0, c_2 = c_0, c_3 = c_0;
        /* unrolled (as -O3 does): one straight pass per block, also for the static model */
        #pragma GCC unroll 4
        for (int64_t c = c0; c < c0 + 128; c += 32) {
            const uint8_t *q = p + (c >> 6) * cs + (c & 63);
            c_0 = _mm256_fmadd_ps(E4M3X8(q), _mm256_loadu_ps(x + c), c_0);
            c_1 = _mm256_fmadd_ps(E4M3X8(q + 8), _mm256_loadu_ps(x + c + 8), c_1);
            c_2 = _mm256_fmadd_ps(E4M3X8(q + 16), _mm256_loadu_ps(x + c + 16), c_2);
            c_3 = _mm256_fmadd_ps(E4M3X8(q + 24), _mm256_loadu_ps(x + c + 24), c_3);
        }
        __m256 bs = _mm256_add_ps(_mm256_add_ps(c_0, c_1), _mm256_add_ps(c_2, c_3));
        if ((c0 / 128) & 1) t1 = _mm256_fmadd_ps(bs, _mm256_set1_ps(sc[c0 / 128]), t1);
        else t0 = _mm256_fmadd_ps(bs, _mm256_set1_ps(sc[c0 / 128]), t0);
        DSV4K_MCA_END("fp8_avx2_f32act:128");
    }
    return hsum(_mm256_add_ps(t0, t1));
}

/*
 * Two rows of an interleaved group (p: the first one's start, the second
 * 64 bytes further in each 256-byte step) in one pass, each with
 * dot1_fp8q's sums in its order (bit for bit its results); the activations
 * are loaded once for both.
 */
#define FP8Q2_ROW(i, q)                                                          \
    do {                                                                         \
        d##i##0 = _mm256_fmadd_ps(E4M3X8(q), x0, d##i##0);                       \
        d##i##1 = _mm256_fmadd_ps(E4M3X8((q) + 8), x1, d##i##1);                 \
        d##i##2 = _mm256_fmadd_ps(E4M3X8((q) + 16), x2, d##i##2);                \
        d##i##3 = _mm256_fmadd_ps(E4M3X8((q) + 24), x3, d##i##3);                \
    } while (0)
#define FP8Q2_END(i)                                                             \
    do {                                                                         \
        __m256 bs = _mm256_add_ps(_mm256_add_ps(d##i##0, d##i##1), _mm256_add_ps(d##i##2, d##i##3)); \
        if (j & 1) u##i = _mm256_fmadd_ps(bs, sv, u##i);                         \
        else t##i = _mm256_fmadd_ps(bs, sv, t##i);                               \
    } while (0)

TGT static void dot2_fp8q(const uint8_t *p, const float *sc, const float *x, int64_t k, float *y)
{
    const __m256i msk = _mm256_set1_epi32((int)0x87f00000u);
    __m256 t0 = _mm256_setzero_ps(), t1 = t0, u0 = t0, u1 = t0;
    for (int64_t j = 0; j < k / 128; j++) {
        __m256 d00 = _mm256_setzero_ps(), d01 = d00, d02 = d00, d03 = d00, d10 = d00, d11 = d00, d12 = d00, d13 = d00;
        for (int64_t c = 128 * j; c < 128 * j + 128; c += 32) {
            const uint8_t *q = p + (c >> 6) * 256 + (c & 63);
            __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);
            __m256 x2 = _mm256_loadu_ps(x + c + 16), x3 = _mm256_loadu_ps(x + c + 24);
            FP8Q2_ROW(0, q);
            FP8Q2_ROW(1, q + 64);
        }
        __m256 sv = _mm256_set1_ps(sc[j]);
        FP8Q2_END(0);
        FP8Q2_END(1);
    }
    y[0] = hsum(_mm256_add_ps(t0, u0));
    y[1] = hsum(_mm256_add_ps(t1, u1));
}

void dsv4k_fp8q_prepare(const float *dq, const int8_t *ex, int64_t k, float *xp, int16_t *sh)
{
    for (int64_t b = 0; b < k; b += 128) {
        /* dq · 2^-ex = q exactly (ex in [-22, 120]: the scale is normal),
         * then q · 2^110 */
        float f = ldexpf(1.0f, -ex[b / 128]);
        for (int i = 0; i < 128; i++) xp[b + i] = dq[b + i] * f * 0x1p110f;
        sh[b / 128] = (int16_t)(110 - ex[b / 128]);
    }
}

TGT int dsv4k_fp8x_prepare(const float *x, int64_t k, float *xp, int16_t *sh)
{
    const __m256i ef = _mm256_set1_epi32(0x7f800000), mag = _mm256_set1_epi32(0x7fffffff);
    const __m256i z = _mm256_setzero_si256(), all = _mm256_set1_epi32(255 << 23);
    for (int64_t b = 0; b < k; b += 128) {
        __m256i emax = z, emin = all, odd = z;
        for (int i = 0; i < 128; i += 8) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(x + b + i));
            __m256i e = _mm256_and_si256(v, ef), zero_e = _mm256_cmpeq_epi32(e, z);
            /* a subnormal (exponent field 0, not zero) or a value that is not finite */
            odd = _mm256_or_si256(odd, _mm256_andnot_si256(_mm256_cmpeq_epi32(_mm256_and_si256(v, mag), z), zero_e));
            odd = _mm256_or_si256(odd, _mm256_cmpeq_epi32(e, ef));
            emax = _mm256_max_epi32(emax, e);
            emin = _mm256_min_epi32(emin, _mm256_blendv_epi8(e, all, zero_e));
        }
        if (!_mm256_testz_si256(odd, odd)) return -1;
        int32_t t[16];
        _mm256_storeu_si256((__m256i *)t, emax);
        _mm256_storeu_si256((__m256i *)(t + 8), emin);
        int hi = 0, lo = 255;
        for (int i = 0; i < 8; i++) {
            hi = t[i] >> 23 > hi ? t[i] >> 23 : hi;
            lo = t[8 + i] >> 23 < lo ? t[8 + i] >> 23 : lo;
        }
        /* the smallest value to 2^3 .. 2^4 (so every product with a
         * nonzero weight × 2^-120 stays normal), the largest below 2^101 */
        int s = lo == 255 ? 110 : 130 - lo; /* all zero: any s keeps them; 110 keeps S · 2^(120-s) near S */
        if (lo != 255 && hi + s > 127 + 100) return -1;
        __m256i add = _mm256_set1_epi32((int32_t)((uint32_t)s << 23)); /* s may be negative */
        for (int i = 0; i < 128; i += 8) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(x + b + i));
            __m256i nz = _mm256_xor_si256(_mm256_cmpeq_epi32(_mm256_and_si256(v, mag), z), _mm256_set1_epi32(-1));
            _mm256_storeu_si256((__m256i *)(xp + b + i), _mm256_add_epi32(v, _mm256_and_si256(add, nz)));
        }
        sh[b / 128] = (int16_t)s;
    }
    return 0;
}

int dsv4k_fp8q_block_scales(const dsv4k_weight *w, int64_t rb, const int16_t *sh, float *sq, float *sf)
{
    int64_t kb = w->k / 128;
    int fast = 1;
    for (int64_t b = 0; b < kb; b++) {
        float s = w->fmt == DSV4K_W_FP8 ? dsv4k_lut_e8m0[((const uint8_t *)w->s)[rb * kb + b]]
                                        : ((const float *)w->s)[rb * kb + b];
        sf[b] = 256.0f * s;
        /* 2^120 undoes the weights' 2^-120, 2^-sh the activations' scaling */
        sq[b] = s * ldexpf(1.0f, 120 - sh[b]);
        /* far from overflow and underflow, or the f32 kernel */
        fast &= fabsf(sq[b]) >= 0x1p-120f && fabsf(sq[b]) <= 0x1p120f;
    }
    return fast;
}

TGT int dsv4k_rows_fp8q_avx2(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *x, const float *xp,
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
        if (fast && rr < w->ilv && (rr & 3) == 0 && r + 4 <= r1) {
            /* an interleaved group: two rows per pass */
            dot2_fp8q(p, sq, xp, k, y + r);
            dot2_fp8q(p + 128, sq, xp, k, y + r + 2);
            r += 3;
            continue;
        }
        y[r] = fast ? dot1_fp8q(p, cs, sq, xp, k) : dot1_fp8(p, cs, sf, x, k);
    }
    return 0;
}

/* ---- FP4 e2m1, E8M0 per 32 --------------------------------------------------------- */

void dsv4k_split_even_odd(const float *x, int64_t k, float *dst)
{
    for (int64_t b = 0; b < k; b += 32)
        for (int i = 0; i < 16; i++) {
            dst[b + i] = x[b + 2 * i];
            dst[b + 16 + i] = x[b + 2 * i + 1];
        }
}

/* high bytes of the f16 encodings of the 16 e2m1 values (low bytes are 0) */
static const uint8_t e2m1_f16_hi[16] = { 0x00, 0x38, 0x3c, 0x3e, 0x40, 0x42, 0x44, 0x46,
                                         0x80, 0xb8, 0xbc, 0xbe, 0xc0, 0xc2, 0xc4, 0xc6 };

/* magnitudes of the e2m1 codes 0..7, each with the code's bits pre-xored
 * into bits 28..30: xoring the code shifted left by 28 (sign bit landing in
 * bit 31) then restores the magnitude and applies the sign in one step */
#define E2M1_MAGX(v, i) ((v) ^ ((uint32_t)(i) << 28))
static const uint32_t e2m1_mag_bits[8] = {
    E2M1_MAGX(0x00000000u, 0), E2M1_MAGX(0x3f000000u, 1), E2M1_MAGX(0x3f800000u, 2), E2M1_MAGX(0x3fc00000u, 3),
    E2M1_MAGX(0x40000000u, 4), E2M1_MAGX(0x40400000u, 5), E2M1_MAGX(0x40800000u, 6), E2M1_MAGX(0x40c00000u, 7),
};

/* 8 packed bytes (16 e2m1 codes) -> the 8 even and the 8 odd values (exact):
 * vpermps picks the (pre-xored) magnitude from the low 3 bits of the code,
 * code << 28 undoes the pre-xor and moves bit 3 into the sign */
#define E2M1X16(ptr, ev, od)                                                                              \
    do {                                                                                                  \
        __m256i b_ = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(ptr)));                       \
        __m256i h_ = _mm256_srli_epi32(b_, 4);                                                            \
        (ev) = _mm256_xor_ps(_mm256_permutevar8x32_ps(mag, b_), _mm256_castsi256_ps(_mm256_slli_epi32(b_, 28))); \
        (od) = _mm256_xor_ps(_mm256_permutevar8x32_ps(mag, h_), _mm256_castsi256_ps(_mm256_slli_epi32(h_, 28))); \
    } while (0)

/* E8M0 bytes -> f32 2^(e-127) for n bytes (n a multiple of 8): the byte in
 * the f32 exponent field; 0 (2^-127, subnormal) fixed up; 255 (NaN) stays
 * as the table has it */
TGT static void e8m0_row(const uint8_t *sc, int64_t n, float *dst)
{
    for (int64_t i = 0; i < n; i += 8) {
        __m256i e = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sc + i)));
        __m256i f = _mm256_slli_epi32(e, 23);
        __m256i zero = _mm256_cmpeq_epi32(e, _mm256_setzero_si256()), nan = _mm256_cmpeq_epi32(e, _mm256_set1_epi32(255));
        f = _mm256_blendv_epi8(f, _mm256_set1_epi32(0x00400000), zero);
        f = _mm256_blendv_epi8(f, _mm256_set1_epi32(0x7fc00000), nan);
        _mm256_storeu_si256((__m256i *)(dst + i), f);
    }
}

/* one activation row: per 32-block two chains of two products, scaled into
 * two alternating totals (scales given as f32) */
TGT static float dot1_fp4(const uint8_t *p, const float *sf, const float *xs, int64_t k)
{
    const __m256 mag = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)e2m1_mag_bits));
    __m256 t0 = _mm256_setzero_ps(), t1 = t0;
    const float *xe = xs + k;
    for (; xs + 64 <= xe; xs += 64, p += 32, sf += 2) {
        DSV4K_MCA_BEGIN("fp4_avx2_f32:64");
        __m256 e0, o0, e1, o1, e2, o2, e3, o3;
        E2M1X16(p, e0, o0);
        E2M1X16(p + 8, e1, o1);
        E2M1X16(p + 16, e2, o2);
        E2M1X16(p + 24, e3, o3);
        __m256 s0 = _mm256_fmadd_ps(e1, _mm256_loadu_ps(xs + 8), _mm256_mul_ps(e0, _mm256_loadu_ps(xs)));
        __m256 s1 = _mm256_fmadd_ps(o1, _mm256_loadu_ps(xs + 24), _mm256_mul_ps(o0, _mm256_loadu_ps(xs + 16)));
        __m256 s2 = _mm256_fmadd_ps(e3, _mm256_loadu_ps(xs + 40), _mm256_mul_ps(e2, _mm256_loadu_ps(xs + 32)));
        __m256 s3 = _mm256_fmadd_ps(o3, _mm256_loadu_ps(xs + 56), _mm256_mul_ps(o2, _mm256_loadu_ps(xs + 48)));
        t0 = _mm256_fmadd_ps(_mm256_add_ps(s0, s1), _mm256_broadcast_ss(sf), t0);
        t1 = _mm256_fmadd_ps(_mm256_add_ps(s2, s3), _mm256_broadcast_ss(sf + 1), t1);
        DSV4K_MCA_END("fp4_avx2_f32:64");
    }
    if (xs < xe) {
        __m256 e0, o0, e1, o1;
        E2M1X16(p, e0, o0);
        E2M1X16(p + 8, e1, o1);
        __m256 s0 = _mm256_fmadd_ps(e1, _mm256_loadu_ps(xs + 8), _mm256_mul_ps(e0, _mm256_loadu_ps(xs)));
        __m256 s1 = _mm256_fmadd_ps(o1, _mm256_loadu_ps(xs + 24), _mm256_mul_ps(o0, _mm256_loadu_ps(xs + 16)));
        t0 = _mm256_fmadd_ps(_mm256_add_ps(s0, s1), _mm256_broadcast_ss(sf), t0);
    }
    return hsum(_mm256_add_ps(t0, t1));
}

TGT static void rows_fp4(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *xs, int64_t ldx, int64_t m,
                         float *y, int64_t ldy)
{
    int64_t k = w->k;
    const __m128i tab = _mm_loadu_si128((const __m128i *)e2m1_f16_hi), m4 = _mm_set1_epi8(15);
    for (int64_t r = r0; r < r1; r++) {
        int64_t rr = w->row0 + r;
        const uint8_t *p = (const uint8_t *)w->w + rr * (k / 2);
        const uint8_t *sc = (const uint8_t *)w->s + rr * (k / 32);
        if (m == 1 && k <= 8192) {
            float sf[256];
            if ((k / 32) % 8 == 0) {
                e8m0_row(sc, k / 32, sf);
            } else {
                for (int64_t b = 0; b < k / 32; b++) sf[b] = dsv4k_lut_e8m0[sc[b]];
            }
            y[r] = dot1_fp4(p, sf, xs, k);
            continue;
        }
        for (int64_t i0 = 0; i0 < m; i0 += 4) {
            int64_t mi = m - i0 < 4 ? m - i0 : 4;
            const float *x0 = xs + i0 * ldx;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            for (int64_t c = 0; c < k; c += 32) {
                __m128i v = _mm_loadu_si128((const __m128i *)(p + c / 2));
                __m128i ev = _mm_shuffle_epi8(tab, _mm_and_si128(v, m4));
                __m128i od = _mm_shuffle_epi8(tab, _mm_and_si128(_mm_srli_epi16(v, 4), m4));
                __m128i z = _mm_setzero_si128();
                /* bytes -> f16 with the byte as high half */
                ACC4(_mm256_cvtph_ps(_mm_unpacklo_epi8(z, ev)), c);
                ACC4(_mm256_cvtph_ps(_mm_unpackhi_epi8(z, ev)), c + 8);
                ACC4(_mm256_cvtph_ps(_mm_unpacklo_epi8(z, od)), c + 16);
                ACC4(_mm256_cvtph_ps(_mm_unpackhi_epi8(z, od)), c + 24);
                __m256 sv = _mm256_set1_ps(dsv4k_lut_e8m0[sc[c / 32]]);
                SCALE4(sv);
            }
            STORE4();
        }
    }
}

int dsv4k_rows_avx2(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *x, int64_t ldx, int64_t m, float *y,
                    int64_t ldy)
{
    switch (w->fmt) {
    case DSV4K_W_BF16:
        if (w->k % 16) return -1;
        if (w->k % 32 == 0) rows_bf16_split(w, r0, r1, x, ldx, m, y, ldy);
        else rows_bf16(w, r0, r1, x, ldx, m, y, ldy);
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

/* ---- exact row decoding (for the oneDNN route's weight blocks) --------------------- */

TGT int dsv4k_decode_row_avx2(const dsv4k_weight *w, int64_t r, float *dst)
{
    int64_t k = w->k;
    r += w->row0;
    switch (w->fmt) {
    case DSV4K_W_BF16: {
        if (k % 16) return -1;
        if (r < w->ilv) {
            /* interleaved rows (k % 32 == 0): a 64-byte chunk at a time */
            for (int64_t c0 = 0; c0 < k; c0 += 32) {
                const uint16_t *q = (const uint16_t *)(const void *)dsv4k_row_byte(w, r, 2 * k, 2 * c0);
                for (int64_t c = 0; c < 32; c += 8) {
                    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(q + c)));
                    _mm256_storeu_ps(dst + c0 + c, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
                }
            }
            return 0;
        }
        const uint16_t *p = (const uint16_t *)w->w + r * k;
        for (int64_t c = 0; c < k; c += 8) {
            __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + c)));
            _mm256_storeu_ps(dst + c, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
        }
        return 0;
    }
    case DSV4K_W_FP8:
    case DSV4K_W_FP8_F32S: {
        if (k % 128) return -1;
        const uint8_t *p = (const uint8_t *)w->w + r * k;
        int64_t kb = k / 128;
        const __m256i em = _mm256_set1_epi16((short)0xbfff);
        for (int64_t c0 = 0; c0 < k; c0 += 128) {
            float s = w->fmt == DSV4K_W_FP8 ? dsv4k_lut_e8m0[((const uint8_t *)w->s)[(r / 128) * kb + c0 / 128]]
                                            : ((const float *)w->s)[(r / 128) * kb + c0 / 128];
            /* value × 2^-8 (exact in f16) times s · 2^8: exact while s · 2^8
             * and the products stay normal, i.e. s within 2^±100 */
            if (!(fabsf(s) >= 0x1p-100f && fabsf(s) <= 0x1p100f)) return -1;
            __m256 sv = _mm256_set1_ps(s * 256.0f);
            for (int64_t c = c0; c < c0 + 128; c += 16) {
                /* rows in the interleaved layout: a 64-byte chunk is contiguous */
                const uint8_t *q = r < w->ilv ? dsv4k_row_byte(w, r, k, c) : p + c;
                /* e4m3 NaN (S.1111.111) has no f16 twin here: the portable decoder takes the row */
                __m128i raw = _mm_loadu_si128((const __m128i *)q), x7f = _mm_set1_epi8(0x7f);
                if (_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_and_si128(raw, x7f), x7f))) return -1;
                __m256 lo, hi;
                E4M3X16(q, lo, hi);
                _mm256_storeu_ps(dst + c, _mm256_mul_ps(lo, sv));
                _mm256_storeu_ps(dst + c + 8, _mm256_mul_ps(hi, sv));
            }
        }
        return 0;
    }
    case DSV4K_W_FP4: {
        if (k % 32) return -1;
        const uint8_t *p = (const uint8_t *)w->w + r * (k / 2);
        const uint8_t *sc = (const uint8_t *)w->s + r * (k / 32);
        const __m128i tab = _mm_loadu_si128((const __m128i *)e2m1_f16_hi), m4 = _mm_set1_epi8(15), z = _mm_setzero_si128();
        for (int64_t c = 0; c < k; c += 32) {
            float s = dsv4k_lut_e8m0[sc[c / 32]];
            if (!(s >= 0x1p-100f && s <= 0x1p100f)) return -1;
            __m256 sv = _mm256_set1_ps(s);
            __m128i v = _mm_loadu_si128((const __m128i *)(p + c / 2));
            __m128i ev = _mm_shuffle_epi8(tab, _mm_and_si128(v, m4));
            __m128i od = _mm_shuffle_epi8(tab, _mm_and_si128(_mm_srli_epi16(v, 4), m4));
            /* natural order: low nibble (even weight) first */
            __m128i n0 = _mm_unpacklo_epi8(ev, od), n1 = _mm_unpackhi_epi8(ev, od);
            _mm256_storeu_ps(dst + c, _mm256_mul_ps(_mm256_cvtph_ps(_mm_unpacklo_epi8(z, n0)), sv));
            _mm256_storeu_ps(dst + c + 8, _mm256_mul_ps(_mm256_cvtph_ps(_mm_unpackhi_epi8(z, n0)), sv));
            _mm256_storeu_ps(dst + c + 16, _mm256_mul_ps(_mm256_cvtph_ps(_mm_unpacklo_epi8(z, n1)), sv));
            _mm256_storeu_ps(dst + c + 24, _mm256_mul_ps(_mm256_cvtph_ps(_mm_unpackhi_epi8(z, n1)), sv));
        }
        return 0;
    }
    default:
        return -1;
    }
}

/* ---- lightning indexer ------------------------------------------------------------ */

TGT float dsv4k_index_score_avx2(const float *q, const float *w, int heads, int64_t d, const float *k)
{
    /* 8 heads at a time: 8 dot products, reduced together, relu, weighted */
    __m256 tot = _mm256_setzero_ps();
    int h = 0;
    for (; h + 8 <= heads; h += 8) {
        __m256 acc[8];
        for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
        for (int64_t c = 0; c < d; c += 8) {
            __m256 kv = _mm256_loadu_ps(k + c);
            for (int j = 0; j < 8; j++) acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(q + (h + j) * d + c), kv, acc[j]);
        }
        /* transpose-reduce: lane j of s = Σ acc[j] */
        __m256 s01 = _mm256_hadd_ps(acc[0], acc[1]), s23 = _mm256_hadd_ps(acc[2], acc[3]);
        __m256 s45 = _mm256_hadd_ps(acc[4], acc[5]), s67 = _mm256_hadd_ps(acc[6], acc[7]);
        __m256 s0123 = _mm256_hadd_ps(s01, s23), s4567 = _mm256_hadd_ps(s45, s67);
        __m256 lo = _mm256_permute2f128_ps(s0123, s4567, 0x20), hi = _mm256_permute2f128_ps(s0123, s4567, 0x31);
        __m256 dots = _mm256_add_ps(lo, hi);  /* lane j: the dot of head h + j */
        dots = _mm256_max_ps(dots, _mm256_setzero_ps());
        tot = _mm256_fmadd_ps(dots, _mm256_loadu_ps(w + h), tot);
    }
    float s = hsum(tot);
    for (; h < heads; h++) {
        __m256 acc = _mm256_setzero_ps();
        for (int64_t c = 0; c < d; c += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + h * d + c), _mm256_loadu_ps(k + c), acc);
        float dot = hsum(acc);
        if (dot > 0) s += w[h] * dot;
    }
    return s;
}

TGT void dsv4k_key_fp4_decode_avx2(const uint8_t *p, int64_t d, float *dst)
{
    const __m128i tab = _mm_loadu_si128((const __m128i *)e2m1_f16_hi), m4 = _mm_set1_epi8(15), z = _mm_setzero_si128();
    for (int64_t b = 0; b < d; b += 32) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + b / 2));
        __m128i ev = _mm_shuffle_epi8(tab, _mm_and_si128(v, m4));
        __m128i od = _mm_shuffle_epi8(tab, _mm_and_si128(_mm_srli_epi16(v, 4), m4));
        __m128i il0 = _mm_unpacklo_epi8(ev, od), il1 = _mm_unpackhi_epi8(ev, od); /* natural order */
        __m256 sv = _mm256_set1_ps(dsv4k_lut_e8m0[p[d / 2 + b / 32]]);
        _mm256_storeu_ps(dst + b, _mm256_mul_ps(_mm256_cvtph_ps(_mm_unpacklo_epi8(z, il0)), sv));
        _mm256_storeu_ps(dst + b + 8, _mm256_mul_ps(_mm256_cvtph_ps(_mm_unpackhi_epi8(z, il0)), sv));
        _mm256_storeu_ps(dst + b + 16, _mm256_mul_ps(_mm256_cvtph_ps(_mm_unpacklo_epi8(z, il1)), sv));
        _mm256_storeu_ps(dst + b + 24, _mm256_mul_ps(_mm256_cvtph_ps(_mm_unpackhi_epi8(z, il1)), sv));
    }
}

/* ---- attention of one head ------------------------------------------------------------ */

/* e^x for x in [-87.3, 88.3] (smaller x give 2^-126) within 2 ulp:
 * 2^n · p(r), r = x - n·ln 2 in two parts, p of degree 7 */
TGT static inline __m256 exp256(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33654f)), _mm256_set1_ps(88.37626f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* Several heads over the same vectors (every head of a row attends the same
 * list): the scores of up to 4 heads × 2 vectors at once, each vector loaded
 * once for the 4 heads; the weighted sums of up to 4 heads over 16 columns
 * at once. Vectors are taken in blocks of ATT_EB so a block stays in the
 * core's cache while every head passes over it. */
#define ATT_EB 64

/* scores of 4 heads × 2 vectors (the accumulators in registers) */
TGT static void att_dots42(const float *q, int64_t ldq, const float *k0, const float *k1, int64_t d, float scale,
                           float *sc, int64_t lds)
{
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    for (int64_t c = 0; c < d; c += 8) {
        __m256 v0 = _mm256_loadu_ps(k0 + c), v1 = _mm256_loadu_ps(k1 + c), qv;
        qv = _mm256_loadu_ps(q + c);
        a00 = _mm256_fmadd_ps(qv, v0, a00); a01 = _mm256_fmadd_ps(qv, v1, a01);
        qv = _mm256_loadu_ps(q + ldq + c);
        a10 = _mm256_fmadd_ps(qv, v0, a10); a11 = _mm256_fmadd_ps(qv, v1, a11);
        qv = _mm256_loadu_ps(q + 2 * ldq + c);
        a20 = _mm256_fmadd_ps(qv, v0, a20); a21 = _mm256_fmadd_ps(qv, v1, a21);
        qv = _mm256_loadu_ps(q + 3 * ldq + c);
        a30 = _mm256_fmadd_ps(qv, v0, a30); a31 = _mm256_fmadd_ps(qv, v1, a31);
    }
    sc[0] = hsum(a00) * scale; sc[1] = hsum(a01) * scale;
    sc[lds] = hsum(a10) * scale; sc[lds + 1] = hsum(a11) * scale;
    sc[2 * lds] = hsum(a20) * scale; sc[2 * lds + 1] = hsum(a21) * scale;
    sc[3 * lds] = hsum(a30) * scale; sc[3 * lds + 1] = hsum(a31) * scale;
}

/* the score of one head and one vector */
TGT static float att_dot1(const float *q, const float *k, int64_t d, float scale)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t c = 0;
    for (; c + 16 <= d; c += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), _mm256_loadu_ps(k + c), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c + 8), _mm256_loadu_ps(k + c + 8), a1);
    }
    if (c < d) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), _mm256_loadu_ps(k + c), a0);
    return hsum(_mm256_add_ps(a0, a1)) * scale;
}

/* o[h][c0 .. c0+16) += Σ_i p[h][i] · kv[i][c0 ..] for 4 heads, i in [0, ne) */
TGT static void att_wsum4(const float *p, int64_t ldp, const float *const *kv, int64_t ne, int64_t c0, float *o,
                          int64_t ldo)
{
    float *o0 = o + c0, *o1 = o0 + ldo, *o2 = o1 + ldo, *o3 = o2 + ldo;
    __m256 a00 = _mm256_loadu_ps(o0), a01 = _mm256_loadu_ps(o0 + 8), a10 = _mm256_loadu_ps(o1),
           a11 = _mm256_loadu_ps(o1 + 8), a20 = _mm256_loadu_ps(o2), a21 = _mm256_loadu_ps(o2 + 8),
           a30 = _mm256_loadu_ps(o3), a31 = _mm256_loadu_ps(o3 + 8);
    for (int64_t i = 0; i < ne; i++) {
        const float *k = kv[i] + c0;
        __m256 v0 = _mm256_loadu_ps(k), v1 = _mm256_loadu_ps(k + 8), pw;
        pw = _mm256_broadcast_ss(p + i);
        a00 = _mm256_fmadd_ps(pw, v0, a00); a01 = _mm256_fmadd_ps(pw, v1, a01);
        pw = _mm256_broadcast_ss(p + ldp + i);
        a10 = _mm256_fmadd_ps(pw, v0, a10); a11 = _mm256_fmadd_ps(pw, v1, a11);
        pw = _mm256_broadcast_ss(p + 2 * ldp + i);
        a20 = _mm256_fmadd_ps(pw, v0, a20); a21 = _mm256_fmadd_ps(pw, v1, a21);
        pw = _mm256_broadcast_ss(p + 3 * ldp + i);
        a30 = _mm256_fmadd_ps(pw, v0, a30); a31 = _mm256_fmadd_ps(pw, v1, a31);
    }
    _mm256_storeu_ps(o0, a00); _mm256_storeu_ps(o0 + 8, a01);
    _mm256_storeu_ps(o1, a10); _mm256_storeu_ps(o1 + 8, a11);
    _mm256_storeu_ps(o2, a20); _mm256_storeu_ps(o2 + 8, a21);
    _mm256_storeu_ps(o3, a30); _mm256_storeu_ps(o3 + 8, a31);
}

/* o[c0 .. c0+8) += Σ_i p[i] · kv[i][c0 ..] for one head */
TGT static void att_wsum1(const float *p, const float *const *kv, int64_t ne, int64_t c0, float *o)
{
    __m256 a0 = _mm256_loadu_ps(o + c0), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= ne; i += 2) {
        a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + i), _mm256_loadu_ps(kv[i] + c0), a0);
        a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + i + 1), _mm256_loadu_ps(kv[i + 1] + c0), a1);
    }
    if (i < ne) a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + i), _mm256_loadu_ps(kv[i] + c0), a0);
    _mm256_storeu_ps(o + c0, _mm256_add_ps(a0, a1));
}

TGT void dsv4k_attn_heads_avx2(const float *q, int64_t ldq, int64_t nh, const float *const *kv, int64_t n, int64_t d,
                               float scale, const float *sink, float *out, int64_t ldo, float *sc)
{
    float *den = sc + nh * n;
    /* scores, vector block by vector block */
    for (int64_t e0 = 0; e0 < n; e0 += ATT_EB) {
        int64_t e1 = e0 + ATT_EB < n ? e0 + ATT_EB : n;
        int64_t h = 0;
        for (; h + 4 <= nh; h += 4) {
            int64_t i = e0;
            for (; i + 2 <= e1; i += 2) att_dots42(q + h * ldq, ldq, kv[i], kv[i + 1], d, scale, sc + h * n + i, n);
            for (int64_t g = h; i < e1 && g < h + 4; g++) sc[g * n + i] = att_dot1(q + g * ldq, kv[i], d, scale);
        }
        for (; h < nh; h++)
            for (int64_t i = e0; i < e1; i++) sc[h * n + i] = att_dot1(q + h * ldq, kv[i], d, scale);
    }
    /* softmax with the sink (exponentials 8 at a time) */
    for (int64_t h = 0; h < nh; h++) {
        float *s = sc + h * n, mx = sink[h];
        __m256 vm = _mm256_set1_ps(mx), vs = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + i));
        mx = hmax(vm);
        for (; i < n; i++) mx = s[i] > mx ? s[i] : mx;
        vm = _mm256_set1_ps(mx);
        for (i = 0; i + 8 <= n; i += 8) {
            __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + i), vm));
            _mm256_storeu_ps(s + i, e);
            vs = _mm256_add_ps(vs, e);
        }
        float dn = expf(sink[h] - mx) + hsum(vs);
        for (; i < n; i++) {
            s[i] = expf(s[i] - mx);
            dn += s[i];
        }
        den[h] = dn;
        memset(out + h * ldo, 0, (size_t)d * sizeof(float));
    }
    /* weighted sums, vector block by vector block */
    for (int64_t e0 = 0; e0 < n; e0 += ATT_EB) {
        int64_t ne = n - e0 < ATT_EB ? n - e0 : ATT_EB;
        /* column chunk outer: its lines of the block's vectors stay in
         * the first-level cache while every head passes over them */
        int64_t c = 0, h4 = nh & ~(int64_t)3;
        for (; c + 16 <= d; c += 16) {
            for (int64_t h = 0; h < h4; h += 4) att_wsum4(sc + h * n + e0, n, kv + e0, ne, c, out + h * ldo, ldo);
            for (int64_t h = h4; h < nh; h++) {
                att_wsum1(sc + h * n + e0, kv + e0, ne, c, out + h * ldo);
                att_wsum1(sc + h * n + e0, kv + e0, ne, c + 8, out + h * ldo);
            }
        }
        if (c < d)
            for (int64_t h = 0; h < nh; h++) att_wsum1(sc + h * n + e0, kv + e0, ne, c, out + h * ldo);
    }
    for (int64_t h = 0; h < nh; h++) {
        __m256 inv = _mm256_set1_ps(1.0f / den[h]);
        for (int64_t c = 0; c < d; c += 8)
            _mm256_storeu_ps(out + h * ldo + c, _mm256_mul_ps(_mm256_loadu_ps(out + h * ldo + c), inv));
    }
}

/* ---- activation quantisation ----------------------------------------------------------- */

TGT void dsv4k_act_quant_dq_avx2(const float *x, int64_t n, float *out, int8_t *ex)
{
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 lo = _mm256_set1_ps(-448.0f), hi = _mm256_set1_ps(448.0f);
    for (int64_t b0 = 0; b0 < n; b0 += 128) {
        __m256 mx = _mm256_setzero_ps();
        for (int i = 0; i < 128; i += 8) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(x + b0 + i), absm));
        float amax = hmax(mx);
        amax = amax > 1e-4f ? amax : 1e-4f;
        int e = dsv4k_log2_ceil(amax * (1.0f / 448.0f));
        if (ex) ex[b0 / 128] = (int8_t)e;
        const __m256 inv = _mm256_set1_ps(dsv4k_pow2(-e)), sc = _mm256_set1_ps(dsv4k_pow2(e));
        for (int i = 0; i < 128; i += 8) {
            __m256 y = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(x + b0 + i), inv), lo), hi);
            __m256 a = _mm256_and_ps(y, absm);
            /* quantum 2^q, q = max(floor(log2 a) - 3, -9) */
            __m256i q = _mm256_max_epi32(_mm256_sub_epi32(_mm256_srli_epi32(_mm256_castps_si256(a), 23),
                                                          _mm256_set1_epi32(130)), _mm256_set1_epi32(-9));
            __m256 down = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_sub_epi32(_mm256_set1_epi32(127), q), 23));
            __m256 up = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_set1_epi32(127), q), 23));
            __m256 r = _mm256_mul_ps(_mm256_round_ps(_mm256_mul_ps(a, down), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), up);
            r = _mm256_or_ps(r, _mm256_andnot_ps(absm, y)); /* the sign of y */
            _mm256_storeu_ps(out + b0 + i, _mm256_mul_ps(r, sc));
        }
    }
}

/* ---- mHC stream mix ------------------------------------------------------------------ */

TGT static inline double hsum_pd(__m256d v)
{
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

TGT void dsv4k_hc_mix_avx2(const float *X, int64_t width, const float *fn, int rows, float norm_eps, double *m)
{
    __m256d q0 = _mm256_setzero_pd(), q1 = q0;
    for (int64_t i = 0; i < width; i += 8) {
        __m256 x = _mm256_loadu_ps(X + i);
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(x)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
        q0 = _mm256_fmadd_pd(lo, lo, q0);
        q1 = _mm256_fmadd_pd(hi, hi, q1);
    }
    double ss = hsum_pd(_mm256_add_pd(q0, q1));
    double r = (double)(float)(1.0 / sqrt(ss / (double)width + (double)norm_eps));
    int o = 0;
    for (; o + 4 <= rows; o += 4) {
        const float *f0 = fn + (int64_t)o * width, *f1 = f0 + width, *f2 = f1 + width, *f3 = f2 + width;
        __m256d a[8];
        for (int j = 0; j < 8; j++) a[j] = _mm256_setzero_pd();
        for (int64_t i = 0; i < width; i += 8) {
            __m256 x = _mm256_loadu_ps(X + i);
            __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(x)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
#define HC_ROW(j, f)                                                                                   \
    do {                                                                                               \
        __m256 v_ = _mm256_loadu_ps((f) + i);                                                          \
        a[2 * (j)] = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v_)), lo, a[2 * (j)]);     \
        a[2 * (j) + 1] = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v_, 1)), hi, a[2 * (j) + 1]); \
    } while (0)
            HC_ROW(0, f0);
            HC_ROW(1, f1);
            HC_ROW(2, f2);
            HC_ROW(3, f3);
#undef HC_ROW
        }
        for (int j = 0; j < 4; j++) m[o + j] = (double)(float)hsum_pd(_mm256_add_pd(a[2 * j], a[2 * j + 1])) * r;
    }
    for (; o < rows; o++) {
        const float *f = fn + (int64_t)o * width;
        __m256d a0 = _mm256_setzero_pd(), a1 = a0;
        for (int64_t i = 0; i < width; i += 8) {
            __m256 x = _mm256_loadu_ps(X + i), v = _mm256_loadu_ps(f + i);
            a0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_castps256_ps128(x)), a0);
            a1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), a1);
        }
        m[o] = (double)(float)hsum_pd(_mm256_add_pd(a0, a1)) * r;
    }
}

/* twin of dsv4k_hc_post_ref: the same double sums in the same order (the
 * f32 products are exact in double, so fused and separate steps agree) */
TGT void dsv4k_hc_post_avx2(const float *X, const float *o, const float *post, const float *comb, int hc, int64_t dim,
                            float *Xo)
{
    for (int k = 0; k < hc; k++) {
        __m256d pk = _mm256_set1_pd((double)post[k]);
        for (int64_t c = 0; c < dim; c += 8) {
            __m256 ov = _mm256_loadu_ps(o + c);
            __m256d a0 = _mm256_mul_pd(pk, _mm256_cvtps_pd(_mm256_castps256_ps128(ov)));
            __m256d a1 = _mm256_mul_pd(pk, _mm256_cvtps_pd(_mm256_extractf128_ps(ov, 1)));
            for (int j = 0; j < hc; j++) {
                __m256d cj = _mm256_set1_pd((double)comb[j * hc + k]);
                __m256 xv = _mm256_loadu_ps(X + j * dim + c);
                a0 = _mm256_fmadd_pd(cj, _mm256_cvtps_pd(_mm256_castps256_ps128(xv)), a0);
                a1 = _mm256_fmadd_pd(cj, _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1)), a1);
            }
            _mm256_storeu_ps(Xo + k * dim + c, _mm256_set_m128(_mm256_cvtpd_ps(a1), _mm256_cvtpd_ps(a0)));
        }
    }
}

/* ---- FP4 rows against e4m3-quantised activations, in integers ------------------------ */

const uint8_t dsv4k_e2m1_x2p12[16] = { 12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0 };

/*
 * Prepared activation (dsv4k_fp4q_prepare), per block j of 128 elements
 * (two chunks of 64, h = 0, 1):
 *   planes at 384·j + 128·p for digit p: the 32 even elements of chunk 0,
 *     of chunk 1, then the 32 odd elements of chunk 0, of chunk 1, int8
 *     each (a 64-byte vector holds one parity of both chunks);
 *   at 3k: corrections int32 [k/8]: 12 · Σ a over elements 8l .. 8l+7;
 *   then scales f32 [k/128]: 2^(ex-10) per activation block of 128.
 * a = q·2^(9-ex) is the e4m3 value times 2^9, an integer with |a| <= 448·2^9,
 * written a = d0 + 128·d1 + 16384·d2 with d0, d1 in [-64, 63], |d2| <= 14.
 */
int64_t dsv4k_fp4q_bytes(int64_t k) { return 3 * k + k / 2 + k / 32; }

/* the 32 bytes (as int32 lanes of a[0..3], elements 0..31 of a chunk half)
 * packed and split: even elements to the low 16 bytes, odd to the high */
TGT static inline __m256i pack_split(__m256i a0, __m256i a1, __m256i a2, __m256i a3)
{
    __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(a0, a1), _mm256_packs_epi32(a2, a3));
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)); /* natural order */
    b = _mm256_shuffle_epi8(b, _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8,
                                                10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
    return _mm256_permute4x64_epi64(b, 0xd8);
}

TGT int dsv4k_fp4q_prepare(const float *dq, const int8_t *ex, int64_t k, void *buf)
{
    int8_t *pl = buf;
    int32_t *corr = (int32_t *)(pl + 3 * k);
    float *xs = (float *)(corr + k / 8);
    const __m256i c64 = _mm256_set1_epi32(64), c127 = _mm256_set1_epi32(127), bad = _mm256_set1_epi32(INT32_MIN);
    __m256i any_bad = _mm256_setzero_si256();
    for (int64_t c = 0; c < k / 64; c++) {
        int e = ex[c / 2];
        __m256 up = _mm256_set1_ps(ldexpf(1.0f, 9 - e));
        __m256i a[8], d[3][8];
        for (int g = 0; g < 8; g++) {
            /* exact: dq = e4m3 value · 2^e; NaN and infinities become INT32_MIN */
            a[g] = _mm256_cvttps_epi32(_mm256_mul_ps(_mm256_loadu_ps(dq + 64 * c + 8 * g), up));
            any_bad = _mm256_or_si256(any_bad, _mm256_cmpeq_epi32(a[g], bad));
            __m256i d0 = _mm256_sub_epi32(_mm256_and_si256(_mm256_add_epi32(a[g], c64), c127), c64);
            __m256i r = _mm256_srai_epi32(_mm256_sub_epi32(a[g], d0), 7);
            __m256i d1 = _mm256_sub_epi32(_mm256_and_si256(_mm256_add_epi32(r, c64), c127), c64);
            d[0][g] = d0;
            d[1][g] = d1;
            d[2][g] = _mm256_srai_epi32(_mm256_sub_epi32(r, d1), 7);
        }
        for (int p = 0; p < 3; p++) {
            __m256i x = pack_split(d[p][0], d[p][1], d[p][2], d[p][3]), y = pack_split(d[p][4], d[p][5], d[p][6], d[p][7]);
            int8_t *dst = pl + 384 * (c / 2) + 128 * p + 32 * (c % 2);
            _mm256_storeu_si256((__m256i *)dst, _mm256_permute2x128_si256(x, y, 0x20));
            _mm256_storeu_si256((__m256i *)(dst + 64), _mm256_permute2x128_si256(x, y, 0x31));
        }
        /* lane g of the sums: Σ a[g] (|.| <= 8 · 229376, no overflow) */
        __m256i s0 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
        __m256i s1 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[4], a[5]), _mm256_hadd_epi32(a[6], a[7]));
        __m256i s = _mm256_add_epi32(_mm256_permute2x128_si256(s0, s1, 0x20), _mm256_permute2x128_si256(s0, s1, 0x31));
        _mm256_storeu_si256((__m256i *)(corr + 8 * c), _mm256_mullo_epi32(s, _mm256_set1_epi32(12)));
        if (c % 2 == 0) xs[c / 2] = ldexpf(1.0f, e - 10);
    }
    return _mm256_testz_si256(any_bad, any_bad) ? 0 : -1;
}

/* no scale byte of the row is 0 or 255, so 2^(E-127) is the float with
 * exponent field E (the two others are 2^-127, a subnormal, and NaN) */
TGT static int plain_scales(const uint8_t *sc, int64_t n)
{
    __m256i z = _mm256_setzero_si256(), ones = _mm256_set1_epi8(-1), hit = z;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(sc + i));
        hit = _mm256_or_si256(hit, _mm256_or_si256(_mm256_cmpeq_epi8(v, z), _mm256_cmpeq_epi8(v, ones)));
    }
    int odd = !_mm256_testz_si256(hit, hit);
    for (; i < n; i++) odd |= sc[i] == 0 || sc[i] == 255;
    return !odd;
}

/* Σ (2·e2m1 + 12) · a over each 8 elements of chunk p (64 weights as 32
 * bytes) against its prepared planes q, less the corrections: the exact
 * Σ 2·e2m1 · a per lane (lanes 0-3: the first block of 32, 4-7: the second) */
TGT static inline __m256i fp4q_chunk(const uint8_t *p, const int8_t *q, const int32_t *corr, __m256i tab, __m256i m4)
{
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    __m256i lo = _mm256_shuffle_epi8(tab, _mm256_and_si256(v, m4));
    __m256i hi = _mm256_shuffle_epi8(tab, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
    const __m256i *pq = (const __m256i *)q; /* digit p: even at pq + 4p, odd at pq + 4p + 2 */
    __m256i p0 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256(pq)),
                                  _mm256_maddubs_epi16(hi, _mm256_loadu_si256(pq + 2)));
    __m256i p1 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256(pq + 4)),
                                  _mm256_maddubs_epi16(hi, _mm256_loadu_si256(pq + 6)));
    __m256i p2 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256(pq + 8)),
                                  _mm256_maddubs_epi16(hi, _mm256_loadu_si256(pq + 10)));
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(p0, _mm256_set1_epi16(1)),
                                                  _mm256_madd_epi16(p1, _mm256_set1_epi16(128))),
                                 _mm256_madd_epi16(p2, _mm256_set1_epi16(16384)));
    return _mm256_sub_epi32(s, _mm256_loadu_si256((const __m256i *)corr));
}

TGT void dsv4k_rows_fp4q_avx2(const dsv4k_weight *w, int64_t r0, int64_t r1, const void *buf, float *y)
{
    int64_t k = w->k;
    const int8_t *pl = buf;
    const int32_t *corr = (const int32_t *)(pl + 3 * k);
    const float *xs = (const float *)(corr + k / 8);
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)dsv4k_e2m1_x2p12));
    const __m256i m4 = _mm256_set1_epi8(15);
    const __m256i lo4 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1), hi4 = _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3);
    for (int64_t r = r0; r < r1; r++) {
        int64_t rr = w->row0 + r;
        const uint8_t *p = (const uint8_t *)w->w + rr * (k / 2);
        const uint8_t *sc = (const uint8_t *)w->s + rr * (k / 32);
        int plain = plain_scales(sc, k / 32);
        __m256 t0 = _mm256_setzero_ps(), t1 = t0;
        for (int64_t j = 0; j < k / 128; j++) {
            DSV4K_MCA_BEGIN("fp4_avx2_int:128");
            /* the 4 block scales of this activation block, times its scale */
            __m128 s4;
            if (DSV4K_MCA_COMMON(plain)) {
                int32_t b4;
                memcpy(&b4, sc + 4 * j, 4);
                s4 = _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(b4)), 23));
            } else {
                s4 = _mm_setr_ps(dsv4k_lut_e8m0[sc[4 * j]], dsv4k_lut_e8m0[sc[4 * j + 1]], dsv4k_lut_e8m0[sc[4 * j + 2]],
                                 dsv4k_lut_e8m0[sc[4 * j + 3]]);
            }
            __m256 s8 = _mm256_castps128_ps256(_mm_mul_ps(s4, _mm_set1_ps(xs[j])));
            __m256i a = fp4q_chunk(p + 64 * j, pl + 384 * j, corr + 16 * j, tab, m4);
            __m256i b = fp4q_chunk(p + 64 * j + 32, pl + 384 * j + 32, corr + 16 * j + 8, tab, m4);
            t0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), _mm256_permutevar8x32_ps(s8, lo4), t0);
            t1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(b), _mm256_permutevar8x32_ps(s8, hi4), t1);
            DSV4K_MCA_END("fp4_avx2_int:128");
        }
        y[r] = hsum(_mm256_add_ps(t0, t1));
    }
}

/* ---- an 8 × 8 tile of 32-bit values transposed in registers --------------------- */

TGT void dsv4k_tile8_avx2(const float *t, int64_t ldt, float *o, int64_t ldo)
{
    __m256 r0 = _mm256_loadu_ps(t), r1 = _mm256_loadu_ps(t + ldt), r2 = _mm256_loadu_ps(t + 2 * ldt);
    __m256 r3 = _mm256_loadu_ps(t + 3 * ldt), r4 = _mm256_loadu_ps(t + 4 * ldt), r5 = _mm256_loadu_ps(t + 5 * ldt);
    __m256 r6 = _mm256_loadu_ps(t + 6 * ldt), r7 = _mm256_loadu_ps(t + 7 * ldt);
    /* pairs of rows interleaved, then pairs of pairs: columns c, c+1 of 4 rows per 128-bit half */
    __m256 a0 = _mm256_unpacklo_ps(r0, r1), a1 = _mm256_unpackhi_ps(r0, r1);
    __m256 a2 = _mm256_unpacklo_ps(r2, r3), a3 = _mm256_unpackhi_ps(r2, r3);
    __m256 a4 = _mm256_unpacklo_ps(r4, r5), a5 = _mm256_unpackhi_ps(r4, r5);
    __m256 a6 = _mm256_unpacklo_ps(r6, r7), a7 = _mm256_unpackhi_ps(r6, r7);
    __m256 b0 = _mm256_shuffle_ps(a0, a2, 0x44), b1 = _mm256_shuffle_ps(a0, a2, 0xee);
    __m256 b2 = _mm256_shuffle_ps(a1, a3, 0x44), b3 = _mm256_shuffle_ps(a1, a3, 0xee);
    __m256 b4 = _mm256_shuffle_ps(a4, a6, 0x44), b5 = _mm256_shuffle_ps(a4, a6, 0xee);
    __m256 b6 = _mm256_shuffle_ps(a5, a7, 0x44), b7 = _mm256_shuffle_ps(a5, a7, 0xee);
    /* b0: column 0 of rows 0-3 | column 4 of rows 0-3; b4: the same of rows 4-7 */
    _mm256_storeu_ps(o, _mm256_permute2f128_ps(b0, b4, 0x20));
    _mm256_storeu_ps(o + ldo, _mm256_permute2f128_ps(b1, b5, 0x20));
    _mm256_storeu_ps(o + 2 * ldo, _mm256_permute2f128_ps(b2, b6, 0x20));
    _mm256_storeu_ps(o + 3 * ldo, _mm256_permute2f128_ps(b3, b7, 0x20));
    _mm256_storeu_ps(o + 4 * ldo, _mm256_permute2f128_ps(b0, b4, 0x31));
    _mm256_storeu_ps(o + 5 * ldo, _mm256_permute2f128_ps(b1, b5, 0x31));
    _mm256_storeu_ps(o + 6 * ldo, _mm256_permute2f128_ps(b2, b6, 0x31));
    _mm256_storeu_ps(o + 7 * ldo, _mm256_permute2f128_ps(b3, b7, 0x31));
}

/* ---- FP4 rows, the second form on AVX2 (the layout of dsv4k_fp4v_prepare) ---------- */

/*
 * The same prepared activation as the AVX-512 VNNI kernel's second form
 * (gemv_avx512.c: each 128-block's integers a over their common power of
 * two 2^tz, digits base 256, two planes where they suffice, the plane
 * count per block; corrections 12·Σa' and scales 2^(ex-10+tz) per 32-block
 * in the order 16·G + 4·g + i for block 4G + i), written with AVX2 — the
 * bytes dsv4k_fp4v_prepare writes (test kernels) — and the row kernel on
 * vpmaddubsw: a signed digit d in [-128, 127] against an unsigned weight
 * 2·e2m1 + 12 <= 24 gives pair sums of at most 2·24·128 and the sum of
 * the even and the odd pairs at most 12288, far inside int16, so the
 * base-256 digits need no more care than the base-128 digits of the first
 * form, and most blocks cost two planes (4 vpmaddubsw per 64 weights)
 * instead of three (6). Exact integer sums per 32-block; only the f32
 * total rounds.
 */
TGT int dsv4k_fp4v_prepare_avx2(const float *dq, const int8_t *ex, int64_t k, void *buf)
{
    if (k % 512) return -1;
    int8_t *pl = buf;
    int32_t *corr = (int32_t *)(pl + 3 * k);
    float *xs = (float *)(corr + k / 32);
    uint8_t *np = (uint8_t *)(xs + k / 32);
    const __m256i bad = _mm256_set1_epi32(INT32_MIN);
    for (int64_t j = 0; j < k / 128; j++) {
        __m256 up = _mm256_set1_ps(ldexpf(1.0f, 9 - ex[j]));
        __m256i a[16], d[3][16], any = _mm256_setzero_si256(), hit = any, hi = any;
        for (int v = 0; v < 16; v++) {
            /* exact: dq = e4m3 value · 2^ex; NaN and infinities become INT32_MIN */
            a[v] = _mm256_cvttps_epi32(_mm256_mul_ps(_mm256_loadu_ps(dq + 128 * j + 8 * v), up));
            hit = _mm256_or_si256(hit, _mm256_cmpeq_epi32(a[v], bad));
            any = _mm256_or_si256(any, a[v]);
        }
        if (!_mm256_testz_si256(hit, hit)) return -1;
        __m128i o4 = _mm_or_si128(_mm256_castsi256_si128(any), _mm256_extracti128_si256(any, 1));
        o4 = _mm_or_si128(o4, _mm_unpackhi_epi64(o4, o4));
        uint32_t o = (uint32_t)_mm_cvtsi128_si32(_mm_or_si128(o4, _mm_srli_epi64(o4, 32)));
        __m128i tz = _mm_cvtsi32_si128(o ? __builtin_ctz(o) : 0);
        for (int v = 0; v < 16; v++) {
            __m256i x = _mm256_sra_epi32(a[v], tz);
            a[v] = x;
            /* d0: the low byte as a signed value; d1, d2 likewise of the rest */
            __m256i d0 = _mm256_srai_epi32(_mm256_slli_epi32(x, 24), 24);
            __m256i r = _mm256_srai_epi32(_mm256_sub_epi32(x, d0), 8);
            __m256i d1 = _mm256_srai_epi32(_mm256_slli_epi32(r, 24), 24);
            d[0][v] = d0;
            d[1][v] = d1;
            d[2][v] = _mm256_srai_epi32(_mm256_sub_epi32(r, d1), 8);
            hi = _mm256_or_si256(hi, d[2][v]);
        }
        int n = _mm256_testz_si256(hi, hi) ? 2 : 3;
        np[j] = (uint8_t)n;
        for (int p = 0; p < n; p++) {
            int8_t *dst = pl + 384 * j + 128 * p;
            for (int h = 0; h < 4; h++) {
                /* elements 32h .. 32h+31: the 16 even ones, then the 16 odd */
                __m256i b = pack_split(d[p][4 * h], d[p][4 * h + 1], d[p][4 * h + 2], d[p][4 * h + 3]);
                _mm_storeu_si128((__m128i *)(dst + 16 * h), _mm256_castsi256_si128(b));
                _mm_storeu_si128((__m128i *)(dst + 64 + 16 * h), _mm256_extracti128_si256(b, 1));
            }
        }
        /* 32-block g of block j = 4G + i at 16·G + 4·g + i */
        int64_t G = j / 4, i = j % 4;
        float sc = ldexpf(1.0f, ex[j] - 10 + _mm_cvtsi128_si32(tz));
        for (int g = 0; g < 4; g++) {
            __m256i t = _mm256_add_epi32(_mm256_add_epi32(a[4 * g], a[4 * g + 1]), _mm256_add_epi32(a[4 * g + 2], a[4 * g + 3]));
            __m128i t4 = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
            t4 = _mm_add_epi32(t4, _mm_unpackhi_epi64(t4, t4));
            t4 = _mm_add_epi32(t4, _mm_srli_epi64(t4, 32));
            corr[16 * G + 4 * g + i] = 12 * _mm_cvtsi128_si32(t4);
            xs[16 * G + 4 * g + i] = sc;
        }
    }
    return 0;
}

/* 64 weights (32 bytes at p) against the planes of their chunk (q: the
 * block's planes plus 32 for the second chunk): int32 lane l holds the exact
 * Σ (2·e2m1 + 12)·a' over elements 8l .. 8l+7 of the chunk */
#define FP4W_CHUNK(p, q, n, out)                                                                         \
    do {                                                                                                 \
        __m256i v_ = _mm256_loadu_si256((const __m256i *)(p));                                           \
        __m256i lo_ = _mm256_shuffle_epi8(tab, _mm256_and_si256(v_, m4));                                \
        __m256i hi_ = _mm256_shuffle_epi8(tab, _mm256_and_si256(_mm256_srli_epi16(v_, 4), m4));          \
        const __m256i *pq_ = (const __m256i *)(q); /* plane p: even at pq_ + 4p, odd at pq_ + 4p + 2 */  \
        __m256i p0_ = _mm256_add_epi16(_mm256_maddubs_epi16(lo_, _mm256_loadu_si256(pq_)),               \
                                       _mm256_maddubs_epi16(hi_, _mm256_loadu_si256(pq_ + 2)));          \
        __m256i p1_ = _mm256_add_epi16(_mm256_maddubs_epi16(lo_, _mm256_loadu_si256(pq_ + 4)),           \
                                       _mm256_maddubs_epi16(hi_, _mm256_loadu_si256(pq_ + 6)));          \
        (out) = _mm256_add_epi32(_mm256_madd_epi16(p0_, one), _mm256_madd_epi16(p1_, c256));             \
        if (DSV4K_MCA_RARE((n) == 3)) { /* the rare third plane */                                         \
            __m256i p2_ = _mm256_add_epi16(_mm256_maddubs_epi16(lo_, _mm256_loadu_si256(pq_ + 8)),       \
                                           _mm256_maddubs_epi16(hi_, _mm256_loadu_si256(pq_ + 10)));     \
            (out) = _mm256_add_epi32((out), _mm256_slli_epi32(_mm256_madd_epi16(p2_, c256), 8));         \
        }                                                                                                \
    } while (0)

TGT void dsv4k_rows_fp4v_avx2(const dsv4k_weight *w, int64_t r0, int64_t r1, const void *buf, float *y)
{
    int64_t k = w->k, ng = k / 512;
    const int8_t *pl = buf;
    const int32_t *corr = (const int32_t *)(pl + 3 * k);
    const float *xs = (const float *)(corr + k / 32);
    const uint8_t *np = (const uint8_t *)(xs + k / 32);
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)dsv4k_e2m1_x2p12));
    const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi16(1), c256 = _mm256_set1_epi16(256);
    /* the scale bytes of a group (16·G + 4·i + g for 32-block g of block
     * 4G + i) in the sums' order 4·g + i */
    const __m128i trv = _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    for (int64_t r = r0; r < r1; r++) {
        int64_t rr = w->row0 + r;
        const uint8_t *p = (const uint8_t *)w->w + rr * (k / 2);
        const uint8_t *sc = (const uint8_t *)w->s + rr * (k / 32);
        int plain = plain_scales(sc, k / 32);
        __m256 t0 = _mm256_setzero_ps(), t1 = t0;
        for (int64_t G = 0; G < ng; G++) {
            DSV4K_MCA_BEGIN("fp4_avx2_int2:512");
            const uint8_t *pj = p + 256 * G;
            const int8_t *qj = pl + 1536 * G;
            const uint8_t *nj = np + 4 * G;
            __m256i A0, B0, A1, B1, A2, B2, A3, B3;
            FP4W_CHUNK(pj, qj, nj[0], A0);
            FP4W_CHUNK(pj + 32, qj + 32, nj[0], B0);
            FP4W_CHUNK(pj + 64, qj + 384, nj[1], A1);
            FP4W_CHUNK(pj + 96, qj + 416, nj[1], B1);
            FP4W_CHUNK(pj + 128, qj + 768, nj[2], A2);
            FP4W_CHUNK(pj + 160, qj + 800, nj[2], B2);
            FP4W_CHUNK(pj + 192, qj + 1152, nj[3], A3);
            FP4W_CHUNK(pj + 224, qj + 1184, nj[3], B3);
            /* per 32-block: lanes 4g+i of (L, H) for g = 0, 1 (L) and 2, 3 (H) */
            __m256i L = _mm256_hadd_epi32(_mm256_hadd_epi32(A0, A1), _mm256_hadd_epi32(A2, A3));
            __m256i H = _mm256_hadd_epi32(_mm256_hadd_epi32(B0, B1), _mm256_hadd_epi32(B2, B3));
            L = _mm256_sub_epi32(L, _mm256_loadu_si256((const __m256i *)(corr + 16 * G)));
            H = _mm256_sub_epi32(H, _mm256_loadu_si256((const __m256i *)(corr + 16 * G + 8)));
            __m256 sl, sh;
            if (DSV4K_MCA_COMMON(plain)) {
                __m128i b = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(sc + 16 * G)), trv);
                sl = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu8_epi32(b), 23));
                sh = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(b, b)), 23));
            } else {
                const uint8_t *s16 = sc + 16 * G;
                sl = _mm256_setr_ps(dsv4k_lut_e8m0[s16[0]], dsv4k_lut_e8m0[s16[4]], dsv4k_lut_e8m0[s16[8]],
                                    dsv4k_lut_e8m0[s16[12]], dsv4k_lut_e8m0[s16[1]], dsv4k_lut_e8m0[s16[5]],
                                    dsv4k_lut_e8m0[s16[9]], dsv4k_lut_e8m0[s16[13]]);
                sh = _mm256_setr_ps(dsv4k_lut_e8m0[s16[2]], dsv4k_lut_e8m0[s16[6]], dsv4k_lut_e8m0[s16[10]],
                                    dsv4k_lut_e8m0[s16[14]], dsv4k_lut_e8m0[s16[3]], dsv4k_lut_e8m0[s16[7]],
                                    dsv4k_lut_e8m0[s16[11]], dsv4k_lut_e8m0[s16[15]]);
            }
            sl = _mm256_mul_ps(sl, _mm256_loadu_ps(xs + 16 * G));
            sh = _mm256_mul_ps(sh, _mm256_loadu_ps(xs + 16 * G + 8));
            t0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(L), sl, t0);
            t1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(H), sh, t1);
            DSV4K_MCA_END("fp4_avx2_int2:512");
        }
        y[r] = hsum(_mm256_add_ps(t0, t1));
    }
}

/* ---- lightning indexer in integers (FP4-simulated queries and keys) ---------------- */

int64_t dsv4k_index_q4_bytes(int heads, int64_t d)
{
    /* pairs [heads/16][d/2][16][2] int8, corrections [heads/16][d/32][16]
     * int16, scales [heads/16][d/32][16] f32 */
    return (int64_t)heads * d + (int64_t)heads * (d / 32) * 2 + (int64_t)heads * (d / 32) * 4;
}

int dsv4k_index_q4_prepare(const float *q, int heads, int64_t d, void *buf)
{
    if (heads % 16 || d % 32) return -1;
    int8_t *qp = buf;
    int16_t *corr = (int16_t *)(qp + (int64_t)heads * d);
    float *sq = (float *)(corr + (int64_t)heads * (d / 32));
    int64_t nb = d / 32;
    for (int h = 0; h < heads; h++) {
        int g = h / 16, l = h % 16;
        for (int64_t b = 0; b < nb; b++) {
            const float *v = q + (int64_t)h * d + 32 * b;
            float amax = 0;
            for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(v[i]));
            /* the block's values as integers n · 2^e, |n| <= 12: e from the
             * e2m1 grid (quantum 1/2 of the scale 2^ceil(log2(amax/6))) */
            int e = amax > 0 ? dsv4k_log2_ceil(amax / 6.0f) - 1 : 0;
            if (!(amax < 0x1p100f) || e < -120) return -1;
            float down = ldexpf(1.0f, -e);
            int sum = 0;
            for (int i = 0; i < 32; i++) {
                float n = v[i] * down;
                if (n != rintf(n) || fabsf(n) > 12.0f) return -1; /* not an FP4-simulated block */
                int ni = (int)n;
                qp[(((int64_t)g * (d / 2) + 16 * b + i / 2) * 16 + l) * 2 + (i & 1)] = (int8_t)ni;
                sum += ni;
            }
            corr[((int64_t)g * nb + b) * 16 + l] = (int16_t)(12 * sum);
            sq[((int64_t)g * nb + b) * 16 + l] = ldexpf(1.0f, e);
        }
    }
    return 0;
}


/* block b of head group g: the integer sums a of the 16 heads corrected
 * (Σ n_q · (n_k + 12) - 12 Σ n_q = Σ n_q · n_k, |.| <= 4608), scaled by the
 * query scales and the key's kv, added to e0 (heads 0-7) and e1 (8-15) */
TGT static inline __attribute__((always_inline)) void q4_block(__m256i a, const int16_t *corr, const float *sq, int g,
                                                               int64_t nb, int64_t b, __m256 kv, __m256 *e0,
                                                               __m256 *e1)
{
    a = _mm256_sub_epi16(a, _mm256_loadu_si256((const __m256i *)(corr + ((int64_t)g * nb + b) * 16)));
    const float *sg = sq + ((int64_t)g * nb + b) * 16;
    *e0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(a))),
                          _mm256_mul_ps(_mm256_loadu_ps(sg), kv), *e0);
    *e1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(a, 1))),
                          _mm256_mul_ps(_mm256_loadu_ps(sg + 8), kv), *e1);
}

TGT float dsv4k_index_score_q4_avx2(const void *qbuf, const float *w, int heads, int64_t d, const uint8_t *key)
{
    const int8_t *qp = qbuf;
    const int16_t *corr = (const int16_t *)(qp + (int64_t)heads * d);
    const float *sq = (const float *)(corr + (int64_t)heads * (d / 32));
    int64_t nb = d / 32;
    /* the key as unsigned 2·e2m1 + 12 in natural order, and its block scales 2^(E-128) */
    uint8_t kb[512];
    float ks[16];
    const __m128i tab = _mm_loadu_si128((const __m128i *)dsv4k_e2m1_x2p12), m4 = _mm_set1_epi8(15);
    for (int64_t b = 0; b < nb; b++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(key + 16 * b));
        __m128i lo = _mm_shuffle_epi8(tab, _mm_and_si128(v, m4));
        __m128i hi = _mm_shuffle_epi8(tab, _mm_and_si128(_mm_srli_epi16(v, 4), m4));
        _mm_storeu_si128((__m128i *)(kb + 32 * b), _mm_unpacklo_epi8(lo, hi));
        _mm_storeu_si128((__m128i *)(kb + 32 * b + 16), _mm_unpackhi_epi8(lo, hi));
        ks[b] = dsv4k_lut_e8m0[key[d / 2 + b]] * 0.5f;
    }
    __m256 tot = _mm256_setzero_ps();
    int g = 0;
    /* 4 groups of 16 heads per pass: each broadcast key pair serves all 4
     * (the same sums in the same order as the one-group loop below) */
    for (; g + 4 <= heads / 16; g += 4) {
        __m256 d00 = _mm256_setzero_ps(), d01 = d00, d10 = d00, d11 = d00, d20 = d00, d21 = d00, d30 = d00,
               d31 = d00;
        const int8_t *q0 = qp + (int64_t)g * d * 16, *q1 = q0 + d * 16, *q2 = q1 + d * 16, *q3 = q2 + d * 16;
        for (int64_t b = 0; b < nb; b++) {
            __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
            for (int j = 0; j < 16; j++) {
                uint16_t kw;
                memcpy(&kw, kb + 32 * b + 2 * j, 2);
                __m256i kv2 = _mm256_set1_epi16((short)kw);
                int64_t o = (16 * b + j) * 32;
                a0 = _mm256_add_epi16(a0, _mm256_maddubs_epi16(kv2, _mm256_loadu_si256((const __m256i *)(q0 + o))));
                a1 = _mm256_add_epi16(a1, _mm256_maddubs_epi16(kv2, _mm256_loadu_si256((const __m256i *)(q1 + o))));
                a2 = _mm256_add_epi16(a2, _mm256_maddubs_epi16(kv2, _mm256_loadu_si256((const __m256i *)(q2 + o))));
                a3 = _mm256_add_epi16(a3, _mm256_maddubs_epi16(kv2, _mm256_loadu_si256((const __m256i *)(q3 + o))));
            }
            __m256 kv = _mm256_set1_ps(ks[b]);
            q4_block(a0, corr, sq, g, nb, b, kv, &d00, &d01);
            q4_block(a1, corr, sq, g + 1, nb, b, kv, &d10, &d11);
            q4_block(a2, corr, sq, g + 2, nb, b, kv, &d20, &d21);
            q4_block(a3, corr, sq, g + 3, nb, b, kv, &d30, &d31);
        }
        const __m256 z = _mm256_setzero_ps();
        const float *wg = w + 16 * g;
        tot = _mm256_fmadd_ps(_mm256_max_ps(d00, z), _mm256_loadu_ps(wg), tot);
        tot = _mm256_fmadd_ps(_mm256_max_ps(d01, z), _mm256_loadu_ps(wg + 8), tot);
        tot = _mm256_fmadd_ps(_mm256_max_ps(d10, z), _mm256_loadu_ps(wg + 16), tot);
        tot = _mm256_fmadd_ps(_mm256_max_ps(d11, z), _mm256_loadu_ps(wg + 24), tot);
        tot = _mm256_fmadd_ps(_mm256_max_ps(d20, z), _mm256_loadu_ps(wg + 32), tot);
        tot = _mm256_fmadd_ps(_mm256_max_ps(d21, z), _mm256_loadu_ps(wg + 40), tot);
        tot = _mm256_fmadd_ps(_mm256_max_ps(d30, z), _mm256_loadu_ps(wg + 48), tot);
        tot = _mm256_fmadd_ps(_mm256_max_ps(d31, z), _mm256_loadu_ps(wg + 56), tot);
    }
    for (; g < heads / 16; g++) {
        __m256 d0 = _mm256_setzero_ps(), d1 = d0; /* heads 16g..16g+7, 16g+8..16g+15 */
        const int8_t *qg = qp + (int64_t)g * d * 16;
        for (int64_t b = 0; b < nb; b++) {
            __m256i acc = _mm256_setzero_si256();
            for (int j = 0; j < 16; j++) {
                uint16_t kw;
                memcpy(&kw, kb + 32 * b + 2 * j, 2);
                acc = _mm256_add_epi16(acc, _mm256_maddubs_epi16(_mm256_set1_epi16((short)kw),
                                                                 _mm256_loadu_si256((const __m256i *)(qg + (16 * b + j) * 32))));
            }
            q4_block(acc, corr, sq, g, nb, b, _mm256_set1_ps(ks[b]), &d0, &d1);
        }
        d0 = _mm256_max_ps(d0, _mm256_setzero_ps());
        d1 = _mm256_max_ps(d1, _mm256_setzero_ps());
        tot = _mm256_fmadd_ps(d0, _mm256_loadu_ps(w + 16 * g), tot);
        tot = _mm256_fmadd_ps(d1, _mm256_loadu_ps(w + 16 * g + 8), tot);
    }
    return hsum(tot);
}
