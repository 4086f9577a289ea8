/*
 * kernels/x86/gemv_mrows_avx512.c — the AVX-512 one-row kernels of
 * gemv_avx512.c for 2..8 activation rows at once (gemv_mrows.h).
 *
 * A batched decode step (several sequences of a server, or the rows of a
 * speculative verification) multiplies the same weights by a few
 * activation rows, and each row's result must be exactly the one it gets
 * alone. So every kernel here is its one-row twin with the activation loop
 * moved inside: a weight vector is loaded and decoded once, then each
 * activation row applies to it the one-row kernel's operations on its own
 * accumulators, in the one-row kernel's order. Nothing is shared between
 * activation rows but the decoded weights, so row i's result is bit for bit
 * the one-row kernel's for row i — whatever m, whatever the other rows hold.
 * The accumulators of up to four (FP4: two) activation rows stay in
 * registers; more rows take the same weight row again from cache in passes
 * of that many.
 *
 * Built twice as gemv_avx512.c is: natively with target attributes, and in
 * tests on SIMDe (DSV4K_EMULATE_AVX512; names with _emul).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef DSV4K_EMULATE_AVX512
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define TGT
#define TGTV
#define TGTB
#define K512(name) name##_emul
#else
#include <immintrin.h>
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define TGTV __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")))
#define TGTB __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512bf16,avx2,fma,f16c")))
#define K512(name) name
#endif

#include "gemv_mrows.h"

#define INL inline __attribute__((always_inline))
/* the loops over the activation rows unrolled, so that their accumulators
 * (arrays indexed by constants then) live in registers */
#ifdef DSV4K_EMULATE_AVX512
#define UNROLL /* SIMDe's definitions unrolled cost minutes of compiling */
#else
#define UNROLL _Pragma("GCC unroll 8")
#endif

/* the helpers as gemv_avx512.c defines them (same operations, same order) */
#ifdef DSV4K_EMULATE_AVX512
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
#define cvt_i32_ps(v) _mm512_cvtepi32_ps(v)
#define cvtph16(h) _mm512_cvtph_ps(h)
#define hsum16(v) _mm512_reduce_add_ps(v)
#define cvt_u8x16_epi32(b) _mm512_cvtepu8_epi32(b)
#endif

/* up to this many activation rows per pass over a weight row */
#define MR 4

/* ---- FP8 e4m3 in f32 (the fallback rows of the FP8 kernels) ------------------ */

#define E4M3X32(ptr, lo, hi)                                                                  \
    do {                                                                                      \
        __m512i b_ = ld_u8x32_epi16(ptr);                                                     \
        __m512i h_ = _mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(b_, 8), 1), em);    \
        (lo) = cvtph16(_mm512_castsi512_si256(h_));                                           \
        (hi) = cvtph16(_mm512_extracti64x4_epi64(h_, 1));                                     \
    } while (0)

/* dot1_fp8 of gemv_avx512.c for M activation rows */
TGT static INL void fp8_rows(const uint8_t *p, int64_t cs, const float *sc, const float *const *x, int64_t k,
                             float *out, const int M)
{
    const __m512i em = _mm512_set1_epi16((short)0xbfff);
    __m512 t0[MR], t1[MR];
    UNROLL for (int a = 0; a < M; a++) t0[a] = t1[a] = _mm512_setzero_ps();
    for (int64_t c0 = 0; c0 < k; c0 += 128) {
        __m512 c_0[MR], c_1[MR], c_2[MR], c_3[MR], w0, w1, w2, w3;
        UNROLL for (int a = 0; a < M; a++) c_0[a] = c_1[a] = c_2[a] = c_3[a] = _mm512_setzero_ps();
        for (int64_t c = c0; c < c0 + 128; c += 64, p += cs) {
            E4M3X32(p, w0, w1);
            E4M3X32(p + 32, w2, w3);
            UNROLL for (int a = 0; a < M; a++) {
                c_0[a] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x[a] + c), c_0[a]);
                c_1[a] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x[a] + c + 16), c_1[a]);
                c_2[a] = _mm512_fmadd_ps(w2, _mm512_loadu_ps(x[a] + c + 32), c_2[a]);
                c_3[a] = _mm512_fmadd_ps(w3, _mm512_loadu_ps(x[a] + c + 48), c_3[a]);
            }
        }
        UNROLL for (int a = 0; a < M; a++) {
            __m512 bs = _mm512_add_ps(_mm512_add_ps(c_0[a], c_1[a]), _mm512_add_ps(c_2[a], c_3[a]));
            if ((c0 / 128) & 1) t1[a] = _mm512_fmadd_ps(bs, _mm512_set1_ps(sc[c0 / 128]), t1[a]);
            else t0[a] = _mm512_fmadd_ps(bs, _mm512_set1_ps(sc[c0 / 128]), t0[a]);
        }
    }
    UNROLL for (int a = 0; a < M; a++) out[a] = hsum16(_mm512_add_ps(t0[a], t1[a]));
}

static float fp8_scale(const dsv4k_weight *w, int64_t rr, int64_t b, int64_t kb)
{
    return w->fmt == DSV4K_W_FP8 ? dsv4k_lut_e8m0[((const uint8_t *)w->s)[(rr / 128) * kb + b]]
                                 : ((const float *)w->s)[(rr / 128) * kb + b];
}

TGT static void fp8_rows_n(const uint8_t *p, int64_t cs, const float *sc, const float *const *x, int64_t k,
                           float *out, int n)
{
    for (; n >= 4; n -= 4, x += 4, out += 4) fp8_rows(p, cs, sc, x, k, out, 4);
    switch (n) {
    case 3: fp8_rows(p, cs, sc, x, k, out, 3); break;
    case 2: fp8_rows(p, cs, sc, x, k, out, 2); break;
    case 1: fp8_rows(p, cs, sc, x, k, out, 1); break;
    }
}

/* ---- FP4 against e4m3 activations, VNNI second form (dsv4k_fp4v_prepare) ---- */

/* no scale byte of the row is 0 or 255 */
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

#define FP4V_PLANES(v, lo, hi)                                                             \
    do {                                                                                   \
        (lo) = _mm512_permutexvar_epi8((v), tab);                                          \
        (hi) = _mm512_permutexvar_epi8(_mm512_srli_epi16((v), 4), tab);                    \
    } while (0)

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

/* one activation row's view of its fp4v buffer */
typedef struct fp4v_act {
    const int8_t *pl;
    const int32_t *corr;
    const float *xs;
    const uint8_t *np;
} fp4v_act;

/* weight row p (scales sc) against M activation rows, as one pass of the
 * one-row kernel's loop for each */
TGTV static INL void fp4v_rows(const uint8_t *p, const uint8_t *sc, int64_t ng, const fp4v_act *A, __m512i tab,
                               __m128i trv, const uint8_t *tr, float *out, const int M)
{
    int plain = plain_scales(sc, 16 * ng);
    __m512 t0[MR], t1[MR];
    UNROLL for (int a = 0; a < M; a++) t0[a] = t1[a] = _mm512_setzero_ps();
    for (int64_t G = 0; G < ng; G++) {
        __m512i lo0, hi0, lo1, hi1, lo2, hi2, lo3, hi3;
        const uint8_t *pj = p + 256 * G;
        FP4V_PLANES(_mm512_loadu_si512((const void *)pj), lo0, hi0);
        FP4V_PLANES(_mm512_loadu_si512((const void *)(pj + 64)), lo1, hi1);
        FP4V_PLANES(_mm512_loadu_si512((const void *)(pj + 128)), lo2, hi2);
        FP4V_PLANES(_mm512_loadu_si512((const void *)(pj + 192)), lo3, hi3);
        __m512 sw;
        if (plain) {
            __m128i b = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(sc + 16 * G)), trv);
            sw = _mm512_castsi512_ps(_mm512_slli_epi32(cvt_u8x16_epi32(b), 23));
        } else {
            float f[16];
            for (int l = 0; l < 16; l++) f[l] = dsv4k_lut_e8m0[sc[16 * G + tr[l]]];
            sw = _mm512_loadu_ps(f);
        }
        UNROLL for (int a = 0; a < M; a++) {
            __m512i S0, S1, S2, S3;
            const int8_t *qj = A[a].pl + 1536 * G;
            const uint8_t *np = A[a].np + 4 * G;
            FP4V2_SUM(lo0, hi0, qj, np[0], S0);
            FP4V2_SUM(lo1, hi1, qj + 384, np[1], S1);
            FP4V2_SUM(lo2, hi2, qj + 768, np[2], S2);
            FP4V2_SUM(lo3, hi3, qj + 1152, np[3], S3);
            __m512i u0 = _mm512_add_epi32(_mm512_unpacklo_epi32(S0, S1), _mm512_unpackhi_epi32(S0, S1));
            __m512i u1 = _mm512_add_epi32(_mm512_unpacklo_epi32(S2, S3), _mm512_unpackhi_epi32(S2, S3));
            __m512i R = _mm512_add_epi32(_mm512_unpacklo_epi64(u0, u1), _mm512_unpackhi_epi64(u0, u1));
            R = _mm512_sub_epi32(R, _mm512_loadu_si512((const void *)(A[a].corr + 16 * G)));
            __m512 sv = _mm512_mul_ps(sw, _mm512_loadu_ps(A[a].xs + 16 * G));
            if (G & 1) t1[a] = _mm512_fmadd_ps(cvt_i32_ps(R), sv, t1[a]);
            else t0[a] = _mm512_fmadd_ps(cvt_i32_ps(R), sv, t0[a]);
        }
    }
    UNROLL for (int a = 0; a < M; a++) out[a] = hsum16(_mm512_add_ps(t0[a], t1[a]));
}

TGTV void K512(dsv4k_rows_fp4v_mrows_avx512vnni)(const dsv4k_weight *w, int64_t r0, int64_t r1, int m,
                                                 const void *const *buf, float *const *y)
{
    int64_t k = w->k, ng = k / 512;
    fp4v_act A[DSV4K_MROWS_MAX];
    for (int a = 0; a < m; a++) {
        A[a].pl = buf[a];
        A[a].corr = (const int32_t *)(A[a].pl + 3 * k);
        A[a].xs = (const float *)(A[a].corr + k / 32);
        A[a].np = (const uint8_t *)(A[a].xs + k / 32);
    }
    uint8_t t64[64], tr[16];
    for (int i = 0; i < 64; i++) t64[i] = dsv4k_e2m1_x2p12[i % 16];
    for (int g = 0; g < 4; g++)
        for (int i = 0; i < 4; i++) tr[4 * g + i] = (uint8_t)(4 * i + g);
    const __m512i tab = _mm512_loadu_si512(t64);
    const __m128i trv = _mm_loadu_si128((const __m128i *)tr);
    for (int64_t r = r0; r < r1; r++) {
        int64_t rr = w->row0 + r;
        const uint8_t *p = (const uint8_t *)w->w + rr * (k / 2);
        const uint8_t *sc = (const uint8_t *)w->s + rr * (k / 32);
        float out[DSV4K_MROWS_MAX];
        int a = 0;
        /* two activation rows per pass (four measured slower: their digit
         * planes, 3 bytes per weight each, crowd the L1 cache) */
        for (; m - a >= 2; a += 2) fp4v_rows(p, sc, ng, A + a, tab, trv, tr, out + a, 2);
        if (a < m) fp4v_rows(p, sc, ng, A + a, tab, trv, tr, out + a, 1);
        for (a = 0; a < m; a++) y[a][r] = out[a];
    }
}

/* ---- FP8 by vdpbf16ps (dsv4k_fp8b_prepare) -------------------------------------- */

#define DPBF16(acc, a, b) _mm512_dpbf16_ps((acc), (__m512bh)(a), (__m512bh)(b))

#define E4M3_BF16X64(ptr, w0, w1)                                                                          \
    do {                                                                                                   \
        __m512i v_ = _mm512_loadu_si512((const void *)(ptr));                                              \
        __m512i h_ = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(th0, v_, th1), v_, sgn, 0xf8);     \
        __m512i l_ = _mm512_permutex2var_epi8(tl0, v_, tl1);                                               \
        (w0) = _mm512_unpacklo_epi8(l_, h_);                                                               \
        (w1) = _mm512_unpackhi_epi8(l_, h_);                                                               \
    } while (0)

/* one weight row (chunks cs bytes apart) against M activation rows: the
 * one-row loop of dsv4k_rows_fp8b_avx512bf16 (and so, row by row, the
 * four-row group pass too) for each */
TGTB static INL void fp8b_rows(const uint8_t *p, int64_t cs, const uint16_t *const *a16, const float *sc, int64_t kb,
                               __m512i th0, __m512i th1, __m512i tl0, __m512i tl1, __m512i sgn, float *out,
                               const int M)
{
    __m512 t0[MR], t1[MR];
    UNROLL for (int a = 0; a < M; a++) t0[a] = t1[a] = _mm512_setzero_ps();
    for (int64_t j = 0; j < kb; j++, p += 2 * cs) {
        __m512i w0, w1, w2, w3;
        E4M3_BF16X64(p, w0, w1);
        E4M3_BF16X64(p + cs, w2, w3);
        __m512 sv = _mm512_set1_ps(sc[j]);
        UNROLL for (int b = 0; b < M; b++) {
            const uint16_t *a = a16[b] + 128 * j;
            __m512 s0 = DPBF16(_mm512_setzero_ps(), w0, _mm512_loadu_si512((const void *)a));
            __m512 s1 = DPBF16(_mm512_setzero_ps(), w2, _mm512_loadu_si512((const void *)(a + 64)));
            s0 = DPBF16(s0, w1, _mm512_loadu_si512((const void *)(a + 32)));
            s1 = DPBF16(s1, w3, _mm512_loadu_si512((const void *)(a + 96)));
            if (j & 1) t1[b] = _mm512_fmadd_ps(_mm512_add_ps(s0, s1), sv, t1[b]);
            else t0[b] = _mm512_fmadd_ps(_mm512_add_ps(s0, s1), sv, t0[b]);
        }
    }
    UNROLL for (int a = 0; a < M; a++) out[a] = hsum16(_mm512_add_ps(t0[a], t1[a]));
}

TGTB int K512(dsv4k_rows_fp8b_mrows_avx512bf16)(const dsv4k_weight *w, int64_t r0, int64_t r1, int m,
                                                const float *const *x, const void *const *buf, float *const *y)
{
    int64_t k = w->k, kb = k / 128;
    if ((w->fmt != DSV4K_W_FP8 && w->fmt != DSV4K_W_FP8_F32S) || k % 128 || kb > 64 || m < 1 ||
        m > DSV4K_MROWS_MAX)
        return -1;
    const uint16_t *a16[DSV4K_MROWS_MAX];
    for (int a = 0; a < m; a++) a16[a] = buf[a];
    /* the tables are the same in every buffer (they depend on nothing) */
    const uint8_t *tb = (const uint8_t *)(a16[0] + k);
    const __m512i th0 = _mm512_loadu_si512((const void *)tb), th1 = _mm512_loadu_si512((const void *)(tb + 64));
    const __m512i tl0 = _mm512_loadu_si512((const void *)(tb + 128)), tl1 = _mm512_loadu_si512((const void *)(tb + 192));
    const __m512i sgn = _mm512_set1_epi8((char)0x80);
    float sc[64], sf[64];
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
                fast &= fabsf(sc[b]) >= 0x1p-100f && fabsf(sc[b]) <= 0x1p100f;
            }
        }
        int64_t cs;
        const uint8_t *p = dsv4k_row_start(w, rr, k, &cs);
        float out[DSV4K_MROWS_MAX];
        if (!fast) {
            fp8_rows_n(p, cs, sf, x, k, out, m);
        } else {
            int a = 0;
            for (; m - a >= 4; a += 4) fp8b_rows(p, cs, a16 + a, sc, kb, th0, th1, tl0, tl1, sgn, out + a, 4);
            switch (m - a) {
            case 3: fp8b_rows(p, cs, a16 + a, sc, kb, th0, th1, tl0, tl1, sgn, out + a, 3); break;
            case 2: fp8b_rows(p, cs, a16 + a, sc, kb, th0, th1, tl0, tl1, sgn, out + a, 2); break;
            case 1: fp8b_rows(p, cs, a16 + a, sc, kb, th0, th1, tl0, tl1, sgn, out + a, 1); break;
            }
        }
        for (int a = 0; a < m; a++) y[a][r] = out[a];
    }
    return 0;
}

/* ---- FP8 against power-of-two scaled activations (dsv4k_fp8q/fp8x_prepare) ---- */

#define E4M3X16Q(ptr) _mm512_castsi512_ps(_mm512_and_si512(_mm512_slli_epi32(ld_s8x16_epi32(ptr), 20), msk))

/* dot1_fp8q of gemv_avx512.c for M activation rows, each with its scales */
TGT static INL void fp8q_rows(const uint8_t *p, int64_t cs, const float *const *sc, const float *const *x, int64_t k,
                              float *out, const int M)
{
    const __m512i msk = _mm512_set1_epi32((int)0x87f00000u);
    __m512 t0[MR], t1[MR];
    UNROLL for (int a = 0; a < M; a++) t0[a] = t1[a] = _mm512_setzero_ps();
    for (int64_t c0 = 0; c0 < k; c0 += 128) {
        __m512 c_0[MR], c_1[MR], c_2[MR], c_3[MR];
        UNROLL for (int a = 0; a < M; a++) c_0[a] = c_1[a] = c_2[a] = c_3[a] = _mm512_setzero_ps();
        for (int64_t c = c0; c < c0 + 128; c += 64, p += cs) {
            __m512 w0 = E4M3X16Q(p), w1 = E4M3X16Q(p + 16), w2 = E4M3X16Q(p + 32), w3 = E4M3X16Q(p + 48);
            UNROLL for (int a = 0; a < M; a++) {
                c_0[a] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x[a] + c), c_0[a]);
                c_1[a] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x[a] + c + 16), c_1[a]);
                c_2[a] = _mm512_fmadd_ps(w2, _mm512_loadu_ps(x[a] + c + 32), c_2[a]);
                c_3[a] = _mm512_fmadd_ps(w3, _mm512_loadu_ps(x[a] + c + 48), c_3[a]);
            }
        }
        UNROLL for (int a = 0; a < M; a++) {
            __m512 bs = _mm512_add_ps(_mm512_add_ps(c_0[a], c_1[a]), _mm512_add_ps(c_2[a], c_3[a]));
            if ((c0 / 128) & 1) t1[a] = _mm512_fmadd_ps(bs, _mm512_set1_ps(sc[a][c0 / 128]), t1[a]);
            else t0[a] = _mm512_fmadd_ps(bs, _mm512_set1_ps(sc[a][c0 / 128]), t0[a]);
        }
    }
    UNROLL for (int a = 0; a < M; a++) out[a] = hsum16(_mm512_add_ps(t0[a], t1[a]));
}

TGT static void fp8q_rows_n(const uint8_t *p, int64_t cs, const float *const *sc, const float *const *x, int64_t k,
                            float *out, int n)
{
    for (; n >= 4; n -= 4, sc += 4, x += 4, out += 4) fp8q_rows(p, cs, sc, x, k, out, 4);
    switch (n) {
    case 3: fp8q_rows(p, cs, sc, x, k, out, 3); break;
    case 2: fp8q_rows(p, cs, sc, x, k, out, 2); break;
    case 1: fp8q_rows(p, cs, sc, x, k, out, 1); break;
    }
}

TGT int K512(dsv4k_rows_fp8q_mrows_avx512)(const dsv4k_weight *w, int64_t r0, int64_t r1, int m, const float *const *x,
                                           const float *const *xp, const int16_t *const *sh, float *const *y)
{
    int64_t k = w->k, kb = k / 128;
    if ((w->fmt != DSV4K_W_FP8 && w->fmt != DSV4K_W_FP8_F32S) || k % 128 || kb > 64 || m < 1 ||
        m > DSV4K_MROWS_MAX)
        return -1;
    float sq[DSV4K_MROWS_MAX][64], sf[64];
    /* per row block: the activation rows of the fast form, then the others */
    const float *qs[DSV4K_MROWS_MAX], *qx[DSV4K_MROWS_MAX], *fx[DSV4K_MROWS_MAX];
    int qi[DSV4K_MROWS_MAX], fi[DSV4K_MROWS_MAX], nq = 0, nf = 0;
    int64_t cur = -1;
    for (int64_t r = r0; r < r1; r++) {
        int64_t rr = w->row0 + r;
        if (rr / 128 != cur) {
            cur = rr / 128;
            nq = nf = 0;
            for (int a = 0; a < m; a++) {
                /* sf is the same for every activation row */
                if (dsv4k_fp8q_block_scales(w, cur, sh[a], sq[a], sf)) {
                    qs[nq] = sq[a];
                    qx[nq] = xp[a];
                    qi[nq++] = a;
                } else {
                    fx[nf] = x[a];
                    fi[nf++] = a;
                }
            }
        }
        int64_t cs;
        const uint8_t *p = dsv4k_row_start(w, rr, k, &cs);
        float out[DSV4K_MROWS_MAX];
        if (nq) {
            fp8q_rows_n(p, cs, qs, qx, k, out, nq);
            for (int j = 0; j < nq; j++) y[qi[j]][r] = out[j];
        }
        if (nf) {
            fp8_rows_n(p, cs, sf, fx, k, out, nf);
            for (int j = 0; j < nf; j++) y[fi[j]][r] = out[j];
        }
    }
    return 0;
}

/* ---- f32 kernels of one activation row: BF16 and FP4 (x split per 32) -------- */

#define BF16X32(p, ev, od)                                                                     \
    do {                                                                                       \
        __m512i v_ = _mm512_loadu_si512((const void *)(p));                                    \
        (ev) = _mm512_castsi512_ps(_mm512_slli_epi32(v_, 16));                                 \
        (od) = _mm512_castsi512_ps(_mm512_and_si512(v_, _mm512_set1_epi32((int)0xffff0000u)));  \
    } while (0)

/* dot1_bf16 of gemv_avx512.c (and, row by row, its four-row group pass) for
 * M activation rows */
TGT static INL void bf16_rows(const uint16_t *p, int64_t cs, const float *const *xs, int64_t k, float *out,
                              const int M)
{
    __m512 c0[MR], c1[MR], c2[MR], c3[MR], e0, o0, e1, o1;
    UNROLL for (int a = 0; a < M; a++) c0[a] = c1[a] = c2[a] = c3[a] = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 64 <= k; c += 64, p += 2 * cs) {
        BF16X32(p, e0, o0);
        BF16X32(p + cs, e1, o1);
        UNROLL for (int a = 0; a < M; a++) {
            c0[a] = _mm512_fmadd_ps(e0, _mm512_loadu_ps(xs[a] + c), c0[a]);
            c1[a] = _mm512_fmadd_ps(o0, _mm512_loadu_ps(xs[a] + c + 16), c1[a]);
            c2[a] = _mm512_fmadd_ps(e1, _mm512_loadu_ps(xs[a] + c + 32), c2[a]);
            c3[a] = _mm512_fmadd_ps(o1, _mm512_loadu_ps(xs[a] + c + 48), c3[a]);
        }
    }
    if (c < k) {
        BF16X32(p, e0, o0);
        UNROLL for (int a = 0; a < M; a++) {
            c0[a] = _mm512_fmadd_ps(e0, _mm512_loadu_ps(xs[a] + c), c0[a]);
            c1[a] = _mm512_fmadd_ps(o0, _mm512_loadu_ps(xs[a] + c + 16), c1[a]);
        }
    }
    UNROLL for (int a = 0; a < M; a++)
        out[a] = hsum16(_mm512_add_ps(_mm512_add_ps(c0[a], c1[a]), _mm512_add_ps(c2[a], c3[a])));
}

/* the same for two weight rows (p, q; chunks cs, cq apart) against M (<= 2)
 * activation rows: each activation vector is loaded once for both rows,
 * each (row, activation) pair keeps its own four accumulators in
 * dot1_bf16's order */
TGT static INL void bf16_rows2(const uint16_t *p, int64_t cs, const uint16_t *q, int64_t cq,
                               const float *const *xs, int64_t k, float *out0, float *out1, const int M)
{
    __m512 c0[2], c1[2], c2[2], c3[2], d0[2], d1[2], d2[2], d3[2], e0, o0, e1, o1, f0, g0, f1, g1;
    UNROLL for (int a = 0; a < M; a++) c0[a] = c1[a] = c2[a] = c3[a] = d0[a] = d1[a] = d2[a] = d3[a] = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 64 <= k; c += 64, p += 2 * cs, q += 2 * cq) {
        BF16X32(p, e0, o0);
        BF16X32(p + cs, e1, o1);
        BF16X32(q, f0, g0);
        BF16X32(q + cq, f1, g1);
        UNROLL for (int a = 0; a < M; a++) {
            __m512 x0 = _mm512_loadu_ps(xs[a] + c), x1 = _mm512_loadu_ps(xs[a] + c + 16);
            __m512 x2 = _mm512_loadu_ps(xs[a] + c + 32), x3 = _mm512_loadu_ps(xs[a] + c + 48);
            c0[a] = _mm512_fmadd_ps(e0, x0, c0[a]);
            c1[a] = _mm512_fmadd_ps(o0, x1, c1[a]);
            c2[a] = _mm512_fmadd_ps(e1, x2, c2[a]);
            c3[a] = _mm512_fmadd_ps(o1, x3, c3[a]);
            d0[a] = _mm512_fmadd_ps(f0, x0, d0[a]);
            d1[a] = _mm512_fmadd_ps(g0, x1, d1[a]);
            d2[a] = _mm512_fmadd_ps(f1, x2, d2[a]);
            d3[a] = _mm512_fmadd_ps(g1, x3, d3[a]);
        }
    }
    if (c < k) {
        BF16X32(p, e0, o0);
        BF16X32(q, f0, g0);
        UNROLL for (int a = 0; a < M; a++) {
            __m512 x0 = _mm512_loadu_ps(xs[a] + c), x1 = _mm512_loadu_ps(xs[a] + c + 16);
            c0[a] = _mm512_fmadd_ps(e0, x0, c0[a]);
            c1[a] = _mm512_fmadd_ps(o0, x1, c1[a]);
            d0[a] = _mm512_fmadd_ps(f0, x0, d0[a]);
            d1[a] = _mm512_fmadd_ps(g0, x1, d1[a]);
        }
    }
    UNROLL for (int a = 0; a < M; a++) {
        out0[a] = hsum16(_mm512_add_ps(_mm512_add_ps(c0[a], c1[a]), _mm512_add_ps(c2[a], c3[a])));
        out1[a] = hsum16(_mm512_add_ps(_mm512_add_ps(d0[a], d1[a]), _mm512_add_ps(d2[a], d3[a])));
    }
}

static const float e2m1_val[16] = { 0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                    -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f };

/* one 32-block's 32 values, scaled by its E8M0 (as FP4S_BLOCK decodes them) */
#define FP4S_W(pp, s, ev, od)                                                      \
    do {                                                                           \
        __m512 ts_ = _mm512_mul_ps(tab, _mm512_set1_ps(dsv4k_lut_e8m0[s]));        \
        __m512i b_ = ld_u8x16_epi32(pp);                                           \
        (ev) = _mm512_permutexvar_ps(b_, ts_);                                     \
        (od) = _mm512_permutexvar_ps(_mm512_srli_epi32(b_, 4), ts_);               \
    } while (0)

/* dot1_fp4 of gemv_avx512.c for M (<= 2) activation rows */
TGT static INL void fp4_rows(const uint8_t *p, const uint8_t *sc, const float *const *xs, int64_t k, float *out,
                             const int M)
{
    const __m512 tab = _mm512_loadu_ps(e2m1_val);
    __m512 a0[2], a1[2], a2[2], a3[2], a4[2], a5[2], a6[2], a7[2];
    UNROLL for (int a = 0; a < M; a++) a0[a] = a1[a] = a2[a] = a3[a] = a4[a] = a5[a] = a6[a] = a7[a] = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 128 <= k; c += 128, p += 64, sc += 4) {
        __m512 e0, o0, e1, o1, e2, o2, e3, o3;
        FP4S_W(p, sc[0], e0, o0);
        FP4S_W(p + 16, sc[1], e1, o1);
        FP4S_W(p + 32, sc[2], e2, o2);
        FP4S_W(p + 48, sc[3], e3, o3);
        UNROLL for (int a = 0; a < M; a++) {
            const float *x = xs[a] + c;
            a0[a] = _mm512_fmadd_ps(e0, _mm512_loadu_ps(x), a0[a]);
            a1[a] = _mm512_fmadd_ps(o0, _mm512_loadu_ps(x + 16), a1[a]);
            a2[a] = _mm512_fmadd_ps(e1, _mm512_loadu_ps(x + 32), a2[a]);
            a3[a] = _mm512_fmadd_ps(o1, _mm512_loadu_ps(x + 48), a3[a]);
            a4[a] = _mm512_fmadd_ps(e2, _mm512_loadu_ps(x + 64), a4[a]);
            a5[a] = _mm512_fmadd_ps(o2, _mm512_loadu_ps(x + 80), a5[a]);
            a6[a] = _mm512_fmadd_ps(e3, _mm512_loadu_ps(x + 96), a6[a]);
            a7[a] = _mm512_fmadd_ps(o3, _mm512_loadu_ps(x + 112), a7[a]);
        }
    }
    for (; c < k; c += 32, p += 16, sc++) {
        __m512 e0, o0;
        FP4S_W(p, sc[0], e0, o0);
        UNROLL for (int a = 0; a < M; a++) {
            a0[a] = _mm512_fmadd_ps(e0, _mm512_loadu_ps(xs[a] + c), a0[a]);
            a1[a] = _mm512_fmadd_ps(o0, _mm512_loadu_ps(xs[a] + c + 16), a1[a]);
        }
    }
    UNROLL for (int a = 0; a < M; a++)
        out[a] = hsum16(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0[a], a1[a]), _mm512_add_ps(a2[a], a3[a])),
                                      _mm512_add_ps(_mm512_add_ps(a4[a], a5[a]), _mm512_add_ps(a6[a], a7[a]))));
}

TGT int K512(dsv4k_rows_mrows_avx512)(const dsv4k_weight *w, int64_t r0, int64_t r1, int m, const float *const *x,
                                      float *const *y)
{
    int64_t k = w->k;
    if (m < 1 || m > DSV4K_MROWS_MAX || k % 32) return -1;
    if (w->fmt == DSV4K_W_BF16) {
        int64_t r = r0;
        /* two weight rows per pass (measured: one row per pass is bound by
         * the activation loads) */
        for (; r + 2 <= r1; r += 2) {
            int64_t rr = w->row0 + r, cs, cq;
            const uint16_t *p = (const uint16_t *)(const void *)dsv4k_row_start(w, rr, 2 * k, &cs);
            const uint16_t *q = (const uint16_t *)(const void *)dsv4k_row_start(w, rr + 1, 2 * k, &cq);
            float o0[DSV4K_MROWS_MAX], o1[DSV4K_MROWS_MAX];
            int a = 0;
            for (; m - a >= 2; a += 2) bf16_rows2(p, cs / 2, q, cq / 2, x + a, k, o0 + a, o1 + a, 2);
            if (a < m) bf16_rows2(p, cs / 2, q, cq / 2, x + a, k, o0 + a, o1 + a, 1);
            for (a = 0; a < m; a++) {
                y[a][r] = o0[a];
                y[a][r + 1] = o1[a];
            }
        }
        for (; r < r1; r++) {
            int64_t rr = w->row0 + r, cs;
            const uint16_t *p = (const uint16_t *)(const void *)dsv4k_row_start(w, rr, 2 * k, &cs);
            cs /= 2;
            float out[DSV4K_MROWS_MAX];
            int a = 0;
            for (; m - a >= 4; a += 4) bf16_rows(p, cs, x + a, k, out + a, 4);
            switch (m - a) {
            case 3: bf16_rows(p, cs, x + a, k, out + a, 3); break;
            case 2: bf16_rows(p, cs, x + a, k, out + a, 2); break;
            case 1: bf16_rows(p, cs, x + a, k, out + a, 1); break;
            }
            for (a = 0; a < m; a++) y[a][r] = out[a];
        }
        return 0;
    }
    if (w->fmt == DSV4K_W_FP4) {
        for (int64_t r = r0; r < r1; r++) {
            int64_t rr = w->row0 + r;
            const uint8_t *p = (const uint8_t *)w->w + rr * (k / 2);
            const uint8_t *sc = (const uint8_t *)w->s + rr * (k / 32);
            float out[DSV4K_MROWS_MAX];
            int a = 0;
            for (; m - a >= 2; a += 2) fp4_rows(p, sc, x + a, k, out + a, 2);
            if (a < m) fp4_rows(p, sc, x + a, k, out + a, 1);
            for (a = 0; a < m; a++) y[a][r] = out[a];
        }
        return 0;
    }
    return -1;
}
