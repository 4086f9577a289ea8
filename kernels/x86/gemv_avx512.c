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

TGT static float dot1_bf16(const uint16_t *p, const float *xs, int64_t k)
{
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, e0, o0, e1, o1;
    int64_t c = 0;
    for (; c + 64 <= k; c += 64) {
        BF16X32(p + c, e0, o0);
        BF16X32(p + c + 32, e1, o1);
        c0 = _mm512_fmadd_ps(e0, _mm512_loadu_ps(xs + c), c0);
        c1 = _mm512_fmadd_ps(o0, _mm512_loadu_ps(xs + c + 16), c1);
        c2 = _mm512_fmadd_ps(e1, _mm512_loadu_ps(xs + c + 32), c2);
        c3 = _mm512_fmadd_ps(o1, _mm512_loadu_ps(xs + c + 48), c3);
    }
    if (c < k) {
        BF16X32(p + c, e0, o0);
        c0 = _mm512_fmadd_ps(e0, _mm512_loadu_ps(xs + c), c0);
        c1 = _mm512_fmadd_ps(o0, _mm512_loadu_ps(xs + c + 16), c1);
    }
    return hsum16(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)));
}

TGT static void rows_bf16(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *xs, int64_t ldx, int64_t m,
                          float *y, int64_t ldy)
{
    int64_t k = w->k;
    for (int64_t r = r0; r < r1; r++) {
        const uint16_t *p = (const uint16_t *)w->w + (w->row0 + r) * k;
        if (m == 1) {
            y[r] = dot1_bf16(p, xs, k);
            continue;
        }
        for (int64_t i0 = 0; i0 < m; i0 += 4) {
            int64_t mi = m - i0 < 4 ? m - i0 : 4;
            const float *x0 = xs + i0 * ldx;
            __m512 b0 = _mm512_setzero_ps(), b1 = b0, b2 = b0, b3 = b0, ev, od;
            for (int64_t c = 0; c < k; c += 32) {
                BF16X32(p + c, ev, od);
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
TGT static float dot1_fp8(const uint8_t *p, const float *sc, const float *x, int64_t k)
{
    const __m512i em = _mm512_set1_epi16((short)0xbfff);
    __m512 t0 = _mm512_setzero_ps(), t1 = t0;
    for (int64_t c0 = 0; c0 < k; c0 += 128) {
        __m512 c_0 = _mm512_setzero_ps(), c_1 = c_0, c_2 = c_0, c_3 = c_0, w0, w1, w2, w3;
        for (int64_t c = c0; c < c0 + 128; c += 64) {
            E4M3X32(p + c, w0, w1);
            E4M3X32(p + c + 32, w2, w3);
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
        int64_t rr = w->row0 + r;
        const uint8_t *p = (const uint8_t *)w->w + rr * k;
        if (m == 1 && kb <= 64) {
            if (rr / 128 != cur) {
                cur = rr / 128;
                for (int64_t b = 0; b < kb; b++) scb[b] = 256.0f * fp8_scale(w, rr, b, kb);
            }
            y[r] = dot1_fp8(p, scb, x, k);
            continue;
        }
        for (int64_t i0 = 0; i0 < m; i0 += 4) {
            int64_t mi = m - i0 < 4 ? m - i0 : 4;
            const float *x0 = x + i0 * ldx;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            for (int64_t c0 = 0; c0 < k; c0 += 128) {
                for (int64_t c = c0; c < c0 + 128; c += 32) {
                    __m512 lo, hi;
                    E4M3X32(p + c, lo, hi);
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

/* one activation row: per 32-block the even and odd products in one chain,
 * scaled into two alternating totals */
TGT static float dot1_fp4(const uint8_t *p, const uint8_t *sc, const float *xs, int64_t k)
{
    const __m512 tab = _mm512_loadu_ps(e2m1_val);
    __m512 t0 = _mm512_setzero_ps(), t1 = t0, e0, o0, e1, o1;
    int64_t c = 0;
    for (; c + 64 <= k; c += 64, p += 32, sc += 2) {
        E2M1X32(p, e0, o0);
        E2M1X32(p + 16, e1, o1);
        __m512 s0 = _mm512_fmadd_ps(o0, _mm512_loadu_ps(xs + c + 16), _mm512_mul_ps(e0, _mm512_loadu_ps(xs + c)));
        __m512 s1 = _mm512_fmadd_ps(o1, _mm512_loadu_ps(xs + c + 48), _mm512_mul_ps(e1, _mm512_loadu_ps(xs + c + 32)));
        t0 = _mm512_fmadd_ps(s0, _mm512_set1_ps(dsv4k_lut_e8m0[sc[0]]), t0);
        t1 = _mm512_fmadd_ps(s1, _mm512_set1_ps(dsv4k_lut_e8m0[sc[1]]), t1);
    }
    if (c < k) {
        E2M1X32(p, e0, o0);
        __m512 s0 = _mm512_fmadd_ps(o0, _mm512_loadu_ps(xs + c + 16), _mm512_mul_ps(e0, _mm512_loadu_ps(xs + c)));
        t0 = _mm512_fmadd_ps(s0, _mm512_set1_ps(dsv4k_lut_e8m0[sc[0]]), t0);
    }
    return hsum16(_mm512_add_ps(t0, t1));
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

TGT static float dot1_fp8q(const uint8_t *p, const float *sc, const float *x, int64_t k)
{
    const __m512i msk = _mm512_set1_epi32((int)0x87f00000u);
    __m512 t0 = _mm512_setzero_ps(), t1 = t0;
    for (int64_t c0 = 0; c0 < k; c0 += 128) {
        __m512 c_0 = _mm512_setzero_ps(), c_1 = c_0, c_2 = c_0, c_3 = c_0;
        for (int64_t c = c0; c < c0 + 128; c += 64) {
            c_0 = _mm512_fmadd_ps(E4M3X16Q(p + c), _mm512_loadu_ps(x + c), c_0);
            c_1 = _mm512_fmadd_ps(E4M3X16Q(p + c + 16), _mm512_loadu_ps(x + c + 16), c_1);
            c_2 = _mm512_fmadd_ps(E4M3X16Q(p + c + 32), _mm512_loadu_ps(x + c + 32), c_2);
            c_3 = _mm512_fmadd_ps(E4M3X16Q(p + c + 48), _mm512_loadu_ps(x + c + 48), c_3);
        }
        __m512 bs = _mm512_add_ps(_mm512_add_ps(c_0, c_1), _mm512_add_ps(c_2, c_3));
        if ((c0 / 128) & 1) t1 = _mm512_fmadd_ps(bs, _mm512_set1_ps(sc[c0 / 128]), t1);
        else t0 = _mm512_fmadd_ps(bs, _mm512_set1_ps(sc[c0 / 128]), t0);
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
        const uint8_t *p = (const uint8_t *)w->w + rr * k;
        y[r] = fast ? dot1_fp8q(p, sq, xp, k) : dot1_fp8(p, sf, x, k);
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
    const __m512i bidx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
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
            float s4[4];
            for (int b = 0; b < 4; b++)
                s4[b] = (plain ? dsv4k_bits_f32((uint32_t)sc[4 * j + b] << 23) : dsv4k_lut_e8m0[sc[4 * j + b]]) * xs[j];
            __m512 sv = _mm512_permutexvar_ps(bidx, _mm512_castps128_ps512(_mm_loadu_ps(s4)));
            if (j & 1) t1 = _mm512_fmadd_ps(cvt_i32_ps(sum), sv, t1);
            else t0 = _mm512_fmadd_ps(cvt_i32_ps(sum), sv, t0);
        }
        y[r] = hsum16(_mm512_add_ps(t0, t1));
    }
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
