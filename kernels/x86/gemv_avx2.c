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
 * Compiled with target attributes; callers check dsv4k_have_avx2() first.
 */
#include <immintrin.h>
#include <string.h>
#include "gemv.h"

#define TGT __attribute__((target("avx2,fma,f16c")))

int dsv4k_have_avx2(void)
{
    static int have = -1;
    if (have < 0)
        have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    return have;
}

TGT static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
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

TGT static void rows_bf16(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *x, int64_t ldx, int64_t m,
                          float *y, int64_t ldy)
{
    int64_t k = w->k;
    for (int64_t r = r0; r < r1; r++) {
        const uint16_t *p = (const uint16_t *)w->w + (w->row0 + r) * k;
        for (int64_t i0 = 0; i0 < m; i0 += 4) {
            int64_t mi = m - i0 < 4 ? m - i0 : 4;
            const float *x0 = x + i0 * ldx;
            __m256 b0 = _mm256_setzero_ps(), b1 = b0, b2 = b0, b3 = b0;
            for (int64_t c = 0; c < k; c += 16) {
                __m256i h = _mm256_loadu_si256((const __m256i *)(p + c));
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

TGT static void rows_fp8(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *x, int64_t ldx, int64_t m,
                         float *y, int64_t ldy)
{
    int64_t k = w->k, kb = (k + 127) / 128;
    const __m256i sgn = _mm256_set1_epi16((short)0x8000), em = _mm256_set1_epi16(0x3f80);
    for (int64_t r = r0; r < r1; r++) {
        int64_t rr = w->row0 + r;
        const uint8_t *p = (const uint8_t *)w->w + rr * k;
        for (int64_t i0 = 0; i0 < m; i0 += 4) {
            int64_t mi = m - i0 < 4 ? m - i0 : 4;
            const float *x0 = x + i0 * ldx;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            for (int64_t c0 = 0; c0 < k; c0 += 128) {
                float s = w->fmt == DSV4K_W_FP8 ? dsv4k_lut_e8m0[((const uint8_t *)w->s)[(rr / 128) * kb + c0 / 128]]
                                                : ((const float *)w->s)[(rr / 128) * kb + c0 / 128];
                for (int64_t c = c0; c < c0 + 128; c += 16) {
                    __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(p + c)));
                    __m256i h = _mm256_or_si256(_mm256_and_si256(_mm256_slli_epi16(b, 8), sgn),
                                                _mm256_and_si256(_mm256_slli_epi16(b, 7), em));
                    __m256 lo = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
                    __m256 hi = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
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

TGT static void rows_fp4(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *xs, int64_t ldx, int64_t m,
                         float *y, int64_t ldy)
{
    int64_t k = w->k;
    const __m128i tab = _mm_loadu_si128((const __m128i *)e2m1_f16_hi), m4 = _mm_set1_epi8(15);
    for (int64_t r = r0; r < r1; r++) {
        int64_t rr = w->row0 + r;
        const uint8_t *p = (const uint8_t *)w->w + rr * (k / 2);
        const uint8_t *sc = (const uint8_t *)w->s + rr * (k / 32);
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
