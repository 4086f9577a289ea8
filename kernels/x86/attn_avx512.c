/*
 * kernels/x86/attn_avx512.c — the AVX-512 (F) twin of dsv4k_attn_heads_avx2:
 * attention of every head of a row over the same n key=value vectors, in
 * f32, for d a multiple of 16 (kernels/ops.c chooses it when the CPU and the
 * OS have AVX-512; tested against dsv4k_attn_head_ref in tests/kernels).
 *
 * The same three phases as the AVX2 kernel, 16 lanes wide:
 *  - scores: 8 heads × 3 vectors per pass (24 accumulators), so each vector
 *    is read once per 8 heads; the dot products are summed across their
 *    lanes 16 at a time (a transposed reduction: four levels of shuffles and
 *    adds for all 16 instead of four levels each);
 *  - softmax with the sink logit (zero value): the maximum, e^(s - max) 16
 *    at a time with the polynomial of the AVX2 kernel (same accuracy), the
 *    denominator;
 *  - weighted sums: 6 heads × 64 columns per pass (24 accumulators), the
 *    vectors in blocks whose 64-column slices stay in the first-level cache
 *    while every head passes over them; then the multiplication by
 *    1 / denominator.
 * Every head's output is computed by the same sequence of operations
 * whatever the number of heads given and the head's place among them (the
 * ragged passes leave the other accumulators at zero, and every lane of the
 * reductions adds in the same tree), so splitting the heads among threads
 * does not change a bit.
 *
 * Built twice as gemv_avx512.c is: with target attributes for the library,
 * and with DSV4K_EMULATE_AVX512 on SIMDe's portable intrinsics for the tests
 * (the _emul twin), which only uses the intrinsics SIMDe 0.7 defines.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef DSV4K_EMULATE_AVX512
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define TGT
#define K512(name) name##_emul
/* SIMDe 0.7 has the integer form of the 128-bit lane shuffle only */
#define shuf128(x, y, imm) \
    _mm512_castsi512_ps(_mm512_shuffle_i32x4(_mm512_castps_si512(x), _mm512_castps_si512(y), imm))
typedef simde__mmask16 mask16;
#else
#include <immintrin.h>
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define K512(name) name
#define shuf128(x, y, imm) _mm512_shuffle_f32x4(x, y, imm)
typedef __mmask16 mask16;
#endif

#include "gemv.h"

#define INL static inline __attribute__((always_inline))

/* a loaded value kept in a register: without it the compiler folds the
 * query load into both FMAs that use it (twice the loads of the scores) */
#ifdef DSV4K_EMULATE_AVX512
#define IN_REG(v) ((void)0)
#else
#define IN_REG(v) __asm__("" : "+v"(v))
#endif

/* vectors per block, heads per pass of the scores, heads and 16-column
 * chunks per pass of the weighted sums */
#define AT_EB 64
#define AT_GH 8
#define AT_WH 6
#define AT_WC 4

/* the sum of the 16 lanes of a (a fixed tree: lanes j and j+8, then j and
 * j+4, j and j+2, j and j+1) */
TGT INL float at_hsum(__m512 a)
{
    a = _mm512_add_ps(a, shuf128(a, a, 0x4E));
    a = _mm512_add_ps(a, shuf128(a, a, 0xB1));
    a = _mm512_add_ps(a, _mm512_shuffle_ps(a, a, 0x4E));
    a = _mm512_add_ps(a, _mm512_shuffle_ps(a, a, 0xB1));
    return _mm_cvtss_f32(_mm512_castps512_ps128(a));
}

TGT INL float at_hmax(__m512 a)
{
    a = _mm512_max_ps(a, shuf128(a, a, 0x4E));
    a = _mm512_max_ps(a, shuf128(a, a, 0xB1));
    a = _mm512_max_ps(a, _mm512_shuffle_ps(a, a, 0x4E));
    a = _mm512_max_ps(a, _mm512_shuffle_ps(a, a, 0xB1));
    return _mm_cvtss_f32(_mm512_castps512_ps128(a));
}

/* one level of the transposed reduction: x and y each hold groups of 2w
 * lanes, each group the partial sums of one accumulator; the result holds
 * groups of w lanes, those of x's groups and y's groups alternating, each
 * lane j the sum of lanes j and j+w of its group */
TGT INL __m512 at_fold8(__m512 x, __m512 y)
{
    return _mm512_add_ps(shuf128(x, y, 0x44), shuf128(x, y, 0xEE));
}

TGT INL __m512 at_fold4(__m512 x, __m512 y)
{
    return _mm512_add_ps(shuf128(x, y, 0x88), shuf128(x, y, 0xDD));
}

TGT INL __m512 at_fold2(__m512 x, __m512 y)
{
    return _mm512_add_ps(_mm512_shuffle_ps(x, y, 0x44), _mm512_shuffle_ps(x, y, 0xEE));
}

TGT INL __m512 at_fold1(__m512 x, __m512 y)
{
    return _mm512_add_ps(_mm512_shuffle_ps(x, y, 0x88), _mm512_shuffle_ps(x, y, 0xDD));
}

/* the 16 lane sums of a[0..16) at once, each by at_hsum's tree: lane
 * 4k + j of the result is the sum of a[4j + k] */
TGT INL __m512 at_sum16(const __m512 *a)
{
    __m512 b0 = at_fold8(a[0], a[1]), b1 = at_fold8(a[2], a[3]), b2 = at_fold8(a[4], a[5]),
           b3 = at_fold8(a[6], a[7]), b4 = at_fold8(a[8], a[9]), b5 = at_fold8(a[10], a[11]),
           b6 = at_fold8(a[12], a[13]), b7 = at_fold8(a[14], a[15]);
    __m512 c0 = at_fold4(b0, b1), c1 = at_fold4(b2, b3), c2 = at_fold4(b4, b5), c3 = at_fold4(b6, b7);
    return at_fold1(at_fold2(c0, c1), at_fold2(c2, c3));
}

/* the lane of at_sum16's result that holds the sum of a[p] */
#define AT_LANE(p) (4 * ((p) % 4) + (p) / 4)

/* scores of G <= 8 heads (queries ldq apart) × V <= 3 vectors into
 * sc[g·lds + v]: one accumulator per pair over the columns in order (24 in
 * registers), summed across lanes 16 at a time by at_sum16 (the pairs of
 * the first two vectors in one, those of the third with 8 zeros in the
 * other: each lane is reduced alone, so the sum is the same either way) */
TGT INL void at_dots(const float *q, int64_t ldq, int G, const float *const *kv, int V, int64_t d, float scale,
                     float *sc, int64_t lds)
{
    __m512 a[32];
#pragma GCC unroll 32
    for (int k = 0; k < 32; k++) a[k] = _mm512_setzero_ps();
    const float *k0 = kv[0], *k1 = V > 1 ? kv[1] : kv[0], *k2 = V > 2 ? kv[2] : kv[0];
    for (int64_t c = 0; c < d; c += 16) {
        __m512 v0 = _mm512_loadu_ps(k0 + c), v1 = _mm512_loadu_ps(k1 + c), v2 = _mm512_loadu_ps(k2 + c);
#pragma GCC unroll 8
        for (int g = 0; g < AT_GH; g++) {
            if (g < G) {
                __m512 qv = _mm512_loadu_ps(q + g * ldq + c);
                IN_REG(qv);
                a[2 * g] = _mm512_fmadd_ps(qv, v0, a[2 * g]);
                if (V > 1) a[2 * g + 1] = _mm512_fmadd_ps(qv, v1, a[2 * g + 1]);
                if (V > 2) a[16 + g] = _mm512_fmadd_ps(qv, v2, a[16 + g]);
            }
        }
    }
    float t[16], t2[16];
    _mm512_storeu_ps(t, _mm512_mul_ps(at_sum16(a), _mm512_set1_ps(scale)));
    if (V > 2) _mm512_storeu_ps(t2, _mm512_mul_ps(at_sum16(a + 16), _mm512_set1_ps(scale)));
    for (int g = 0; g < G; g++) {
        for (int v = 0; v < V && v < 2; v++) sc[g * lds + v] = t[AT_LANE(2 * g + v)];
        if (V > 2) sc[g * lds + 2] = t2[AT_LANE(g)];
    }
}

/* the ragged passes */
TGT static void at_dots_any(const float *q, int64_t ldq, int G, const float *const *kv, int V, int64_t d,
                            float scale, float *sc, int64_t lds)
{
    at_dots(q, ldq, G, kv, V, d, scale, sc, lds);
}

/* o[g][c0 .. c0 + 16·C) += Σ_i p[g][i] · kv[i][c0 ..] for G <= 6 heads (p
 * ldp apart, o ldo apart), i in [0, ne): one accumulator per lane, the
 * vectors in order */
TGT INL void at_wsum(const float *p, int64_t ldp, int G, const float *const *kv, int64_t ne, int64_t c0, int C,
                     float *o, int64_t ldo)
{
    __m512 a[AT_WH * AT_WC];
#pragma GCC unroll 8
    for (int g = 0; g < AT_WH; g++)
#pragma GCC unroll 8
        for (int j = 0; j < AT_WC; j++)
            a[g * AT_WC + j] = g < G && j < C ? _mm512_loadu_ps(o + g * ldo + c0 + 16 * j) : _mm512_setzero_ps();
    for (int64_t i = 0; i < ne; i++) {
        const float *k = kv[i] + c0;
        __m512 v[AT_WC];
#pragma GCC unroll 8
        for (int j = 0; j < AT_WC; j++) v[j] = j < C ? _mm512_loadu_ps(k + 16 * j) : _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int g = 0; g < AT_WH; g++) {
            if (g < G) {
                __m512 pw = _mm512_set1_ps(p[g * ldp + i]);
#pragma GCC unroll 8
                for (int j = 0; j < AT_WC; j++)
                    if (j < C) a[g * AT_WC + j] = _mm512_fmadd_ps(pw, v[j], a[g * AT_WC + j]);
            }
        }
    }
#pragma GCC unroll 8
    for (int g = 0; g < AT_WH; g++)
#pragma GCC unroll 8
        for (int j = 0; j < AT_WC; j++)
            if (g < G && j < C) _mm512_storeu_ps(o + g * ldo + c0 + 16 * j, a[g * AT_WC + j]);
}

TGT static void at_wsum_any(const float *p, int64_t ldp, int G, const float *const *kv, int64_t ne, int64_t c0,
                            int C, float *o, int64_t ldo)
{
    at_wsum(p, ldp, G, kv, ne, c0, C, o, ldo);
}

/* e^x as exp256 of gemv_avx2.c computes it, 16 lanes: x clamped to
 * [-87.3, 88.3], 2^n · p(r) with r = x - n·ln 2 in two parts and p of
 * degree 7, within 2 ulp. n is rounded to nearest (even) by adding and
 * subtracting 1.5·2^23, which also leaves n + 127 in the low bits of the
 * sum for the power of two. */
TGT INL __m512 at_exp512(__m512 x)
{
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.33654f)), _mm512_set1_ps(88.37626f));
    __m512 t = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), magic);
    __m512 n = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    /* the bits of t are those of 1.5·2^23 plus n */
    __m512i e = _mm512_slli_epi32(_mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4B400000 - 127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

TGT void K512(dsv4k_attn_heads_avx512)(const float *q, int64_t ldq, int64_t nh, const float *const *kv, int64_t n,
                                       int64_t d, float scale, const float *sink, float *out, int64_t ldo, float *sc)
{
    float *den = sc + nh * n;
    /* scores, vector block by vector block */
    for (int64_t e0 = 0; e0 < n; e0 += AT_EB) {
        int64_t e1 = e0 + AT_EB < n ? e0 + AT_EB : n;
        for (int64_t h = 0; h < nh; h += AT_GH) {
            int G = nh - h < AT_GH ? (int)(nh - h) : AT_GH;
            int64_t i = e0;
            if (G == AT_GH)
                for (; i + 3 <= e1; i += 3) at_dots(q + h * ldq, ldq, AT_GH, kv + i, 3, d, scale, sc + h * n + i, n);
            for (; i < e1; i += 3) {
                int V = e1 - i < 3 ? (int)(e1 - i) : 3;
                at_dots_any(q + h * ldq, ldq, G, kv + i, V, d, scale, sc + h * n + i, n);
            }
        }
    }
    /* softmax with the sink (exponentials 16 at a time) */
    for (int64_t h = 0; h < nh; h++) {
        float *s = sc + h * n, mx = sink[h];
        __m512 vm = _mm512_set1_ps(mx), vs = _mm512_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(s + i));
        mx = at_hmax(vm);
        for (; i < n; i++) mx = s[i] > mx ? s[i] : mx;
        vm = _mm512_set1_ps(mx);
        for (i = 0; i + 16 <= n; i += 16) {
            __m512 e = at_exp512(_mm512_sub_ps(_mm512_loadu_ps(s + i), vm));
            _mm512_storeu_ps(s + i, e);
            vs = _mm512_add_ps(vs, e);
        }
        if (i < n) { /* the last n % 16 through a padded copy */
            float t[16] = { 0 };
            int r = (int)(n - i);
            memcpy(t, s + i, (size_t)r * sizeof(float));
            __m512 e = at_exp512(_mm512_sub_ps(_mm512_loadu_ps(t), vm));
            _mm512_storeu_ps(t, e);
            memcpy(s + i, t, (size_t)r * sizeof(float));
            vs = _mm512_mask_add_ps(vs, (mask16)((1u << r) - 1), vs, e);
        }
        den[h] = expf(sink[h] - mx) + at_hsum(vs);
        memset(out + h * ldo, 0, (size_t)d * sizeof(float));
    }
    /* weighted sums, vector block by vector block; the column chunk outer,
     * so its slices of the block's vectors stay in the first-level cache
     * while every head passes over them */
    for (int64_t e0 = 0; e0 < n; e0 += AT_EB) {
        int64_t ne = n - e0 < AT_EB ? n - e0 : AT_EB;
        for (int64_t c = 0; c < d; c += 16 * AT_WC) {
            int C = d - c < 16 * AT_WC ? (int)((d - c) / 16) : AT_WC;
            for (int64_t h = 0; h < nh; h += AT_WH) {
                int G = nh - h < AT_WH ? (int)(nh - h) : AT_WH;
                if (G == AT_WH && C == AT_WC)
                    at_wsum(sc + h * n + e0, n, AT_WH, kv + e0, ne, c, AT_WC, out + h * ldo, ldo);
                else
                    at_wsum_any(sc + h * n + e0, n, G, kv + e0, ne, c, C, out + h * ldo, ldo);
            }
        }
    }
    for (int64_t h = 0; h < nh; h++) {
        __m512 inv = _mm512_set1_ps(1.0f / den[h]);
        for (int64_t c = 0; c < d; c += 16)
            _mm512_storeu_ps(out + h * ldo + c, _mm512_mul_ps(_mm512_loadu_ps(out + h * ldo + c), inv));
    }
}
