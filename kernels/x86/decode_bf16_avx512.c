/*
 * kernels/x86/decode_bf16_avx512.c — one weight row decoded straight to
 * bf16 for the oneDNN bf16 route (kernels/gemm/onednn.c), in one pass and
 * without the f32 copy in memory that dsv4k_decode_row + the bf16 check
 * make (the scalar twin: dsv4k_decode_row_bf16_ref in kernels/ref/quant.c;
 * tests/kernels compares them bit for bit, refusals included).
 *
 * Every value it writes is exact: with an E8M0 scale 2^s, |s| <= 100, an
 * e4m3 or e2m1 value times 2^s is a normal f32 whose low 16 bits are zero,
 * i.e. a normal bf16.
 *  - FP8 e4m3, 32 codes per step: the code as an f16 equal to value · 2^-8
 *    (byte to the high half, arithmetic shift by one, the sign's copy
 *    cleared), widened by vcvtph2ps (exact, subnormal codes too), times
 *    2^(s+8), the upper halves kept;
 *  - FP4 e2m1, 32 codes per step (one scale): each byte widened to a
 *    32-bit lane whose two words index its two nibbles, vpermw against the
 *    16 codes' bf16 bits with s added to the exponent field of the nonzero
 *    ones (the row's scales checked first, 64 at a time);
 *  - BF16: copied (interleaved rows read chunk by chunk), each value
 *    checked to be zero or normal.
 * It returns -1 (dst then undefined) for what it does not take: a scale
 * outside 2^±100, an e4m3 NaN code, a BF16 value that is subnormal,
 * infinite or NaN, other formats, widths not a multiple of 32 — the caller
 * then decodes the row the old way (dsv4k_decode_row_bf16_ref), which gives
 * the same bits where this function gives any.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include "gemv.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx2,f16c")))

/* bf16 bits of the 16 e2m1 codes (bit 3 the sign; code 8 is -0), twice:
 * vpermw takes the low 5 bits of each index */
static const uint16_t E2M1_BF16[32] = {
    0x0000, 0x3f00, 0x3f80, 0x3fc0, 0x4000, 0x4040, 0x4080, 0x40c0,
    0x8000, 0xbf00, 0xbf80, 0xbfc0, 0xc000, 0xc040, 0xc080, 0xc0c0,
    0x0000, 0x3f00, 0x3f80, 0x3fc0, 0x4000, 0x4040, 0x4080, 0x40c0,
    0x8000, 0xbf00, 0xbf80, 0xbfc0, 0xc000, 0xc040, 0xc080, 0xc0c0,
};

/* ---- 32 values of a row ------------------------------------------------ */

/* the odd words of two vectors: the upper halves of 32 f32 values */
static const uint16_t ODD_WORDS[32] = {
    1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31,
    33, 35, 37, 39, 41, 43, 45, 47, 49, 51, 53, 55, 57, 59, 61, 63,
};

/* 32 e4m3 codes at q times sv = 2^(s+8) (see the top) as bf16; NaN codes
 * set bits of *nan */
TGT static inline __m512i fp8_blk(const uint8_t *q, __m512 sv, __mmask32 *nan)
{
    const __m512i em = _mm512_set1_epi16((short)0xbfff), x7f = _mm512_set1_epi8(0x7f);
    __m256i raw = _mm256_loadu_si256((const __m256i *)q);
    /* S.1111.111 is NaN in e4m3 */
    *nan |= (__mmask32)_mm512_cmpeq_epi8_mask(_mm512_and_si512(_mm512_castsi256_si512(raw), x7f), x7f);
    __m512i h = _mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(_mm512_cvtepu8_epi16(raw), 8), 1), em);
    __m512 lo = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(h)), sv);
    __m512 hi = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)), sv);
    return _mm512_permutex2var_epi16(_mm512_castps_si512(lo), _mm512_loadu_si512(ODD_WORDS), _mm512_castps_si512(hi));
}

/* the FP8 block scale byte of input c of stored row rr */
static inline uint8_t fp8_scale(const dsv4k_weight *w, int64_t rr, int64_t c)
{
    return ((const uint8_t *)w->s)[(rr / 128) * (w->k / 128) + c / 128];
}

/* 32 e2m1 codes (16 bytes at q) with the block's scale byte sb, as bf16:
 * byte b of the 16 in a 32-bit lane, made b | b << 12: its low word indexes
 * the low nibble (low 5 bits: the table's two halves are the same), its
 * high word the high nibble — the codes in element order; the block's
 * scale added to the exponents of the table's nonzero entries */
TGT static inline __m512i fp4_blk(const uint8_t *q, uint8_t sb, __m512i tab)
{
    /* the table's entries of nonzero magnitude: all but ±0 (0, 8, 16, 24) */
    const __mmask32 nz = ~(__mmask32)0x01010101u;
    __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)q));
    d = _mm512_or_si512(d, _mm512_slli_epi32(d, 12));
    __m512i t = _mm512_mask_add_epi16(tab, nz, tab, _mm512_set1_epi16((short)(((int)sb - 127) * 128)));
    return _mm512_permutexvar_epi16(d, t);
}

/* 1 when the ns scale bytes at sc all lie within 2^±100 (27 .. 227), 64 at a time */
TGT static int fp4_scales_ok(const uint8_t *sc, int64_t ns)
{
    const __m512i s27 = _mm512_set1_epi8(27), span = _mm512_set1_epi8((char)200);
    int64_t i = 0;
    for (; i + 64 <= ns; i += 64)
        if (_mm512_cmpgt_epu8_mask(_mm512_sub_epi8(_mm512_loadu_si512(sc + i), s27), span)) return 0;
    for (; i < ns; i++)
        if (sc[i] < 27 || sc[i] > 227) return 0;
    return 1;
}

/* 32 bf16 values at q; values neither zero nor normal set bits of *bad */
TGT static inline __m512i bf16_blk(const uint16_t *q, __mmask32 *bad)
{
    const __m512i ex = _mm512_set1_epi16(0x7f80), mag = _mm512_set1_epi16(0x7fff);
    __m512i v = _mm512_loadu_si512(q);
    __m512i e = _mm512_and_si512(v, ex);
    /* exponent all ones (Inf, NaN), or zero with a nonzero magnitude */
    *bad |= _mm512_cmpeq_epi16_mask(e, ex) | (_mm512_cmpeq_epi16_mask(e, _mm512_setzero_si512()) &
                                              _mm512_test_epi16_mask(v, mag));
    return v;
}

/* where 32 values of stored row rr from input c start (interleaved rows:
 * 32 values never cross a 64-byte chunk) */
static inline const uint8_t *fp8_at(const dsv4k_weight *w, int64_t rr, int64_t c)
{
    return rr < w->ilv ? dsv4k_row_byte(w, rr, w->k, c) : (const uint8_t *)w->w + rr * w->k + c;
}

static inline const uint16_t *bf16_at(const dsv4k_weight *w, int64_t rr, int64_t c)
{
    return rr < w->ilv ? (const uint16_t *)(const void *)dsv4k_row_byte(w, rr, 2 * w->k, 2 * c)
                       : (const uint16_t *)w->w + rr * w->k + c;
}

/* the FP8 multiplier 2^(s+8) of a scale byte, or 0 outside 2^±100 */
static inline float fp8_mult(uint8_t sb)
{
    int e = (int)sb - 127;
    return e < -100 || e > 100 ? 0.0f : dsv4k_lut_e8m0[sb] * 256.0f;
}

/* ---- rows ----------------------------------------------------------------- */

TGT static int fp8_row(const dsv4k_weight *w, int64_t rr, uint16_t *dst)
{
    int64_t k = w->k;
    __mmask32 nan = 0;
    for (int64_t c0 = 0; c0 < k; c0 += 128) {
        float m = fp8_mult(fp8_scale(w, rr, c0));
        if (m == 0.0f) return -1;
        const __m512 sv = _mm512_set1_ps(m);
        for (int64_t c = c0; c < c0 + 128; c += 32) _mm512_storeu_si512(dst + c, fp8_blk(fp8_at(w, rr, c), sv, &nan));
    }
    return nan ? -1 : 0;
}

TGT static int fp4_row(const dsv4k_weight *w, int64_t rr, uint16_t *dst)
{
    int64_t k = w->k;
    const uint8_t *p = (const uint8_t *)w->w + rr * (k / 2), *sc = (const uint8_t *)w->s + rr * (k / 32);
    if (!fp4_scales_ok(sc, k / 32)) return -1;
    const __m512i tab = _mm512_loadu_si512(E2M1_BF16);
    for (int64_t c = 0; c < k; c += 32) _mm512_storeu_si512(dst + c, fp4_blk(p + c / 2, sc[c / 32], tab));
    return 0;
}

TGT static int bf16_row(const dsv4k_weight *w, int64_t rr, uint16_t *dst)
{
    __mmask32 bad = 0;
    for (int64_t c = 0; c < w->k; c += 32) _mm512_storeu_si512(dst + c, bf16_blk(bf16_at(w, rr, c), &bad));
    return bad ? -1 : 0;
}

/* ---- 16 × 16 transposition of 32-bit values --------------------------------- */

/* o[c·ldo + i] = lane c of r[i] for i, c < 16: rows paired (unpack), then
 * quadruples (shuffle within 128-bit lanes), then lanes gathered across
 * rows in two steps, column c ending up as one vector of its 16 rows */
TGT static inline void tr16(const __m512 *r, float *o, int64_t ldo)
{
    __m512 a[16], b[16];
    for (int i = 0; i < 16; i += 2) {
        a[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        a[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* b[4q + j], 128-bit lane L: rows 4q..4q+3 of column 4L + j */
    for (int q = 0; q < 4; q++) {
        b[4 * q + 0] = _mm512_shuffle_ps(a[4 * q], a[4 * q + 2], 0x44);
        b[4 * q + 1] = _mm512_shuffle_ps(a[4 * q], a[4 * q + 2], 0xEE);
        b[4 * q + 2] = _mm512_shuffle_ps(a[4 * q + 1], a[4 * q + 3], 0x44);
        b[4 * q + 3] = _mm512_shuffle_ps(a[4 * q + 1], a[4 * q + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {
        __m512 v0 = _mm512_shuffle_f32x4(b[j], b[4 + j], 0x88), v1 = _mm512_shuffle_f32x4(b[j], b[4 + j], 0xDD);
        __m512 w0 = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0x88);
        __m512 w1 = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0xDD);
        _mm512_storeu_ps(o + j * ldo, _mm512_shuffle_f32x4(v0, w0, 0x88));
        _mm512_storeu_ps(o + (4 + j) * ldo, _mm512_shuffle_f32x4(v1, w1, 0x88));
        _mm512_storeu_ps(o + (8 + j) * ldo, _mm512_shuffle_f32x4(v0, w0, 0xDD));
        _mm512_storeu_ps(o + (12 + j) * ldo, _mm512_shuffle_f32x4(v1, w1, 0xDD));
    }
}

TGT void dsv4k_tile16_avx512(const float *t, int64_t ldt, float *o, int64_t ldo)
{
    __m512 r[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(t + i * ldt);
    tr16(r, o, ldo);
}

/* ---- 16 rows into a blocked layout ------------------------------------------ */

TGT int dsv4k_decode_tile_bf16_avx512(const dsv4k_weight *w, int64_t r, int rn, uint32_t *o, int64_t ldo,
                                      int64_t kstep)
{
    int64_t k = w->k;
    if (k % 32 || rn < 0 || rn > 16 || (w->fmt == DSV4K_W_FP8 && k % 128) ||
        (w->fmt != DSV4K_W_FP8 && w->fmt != DSV4K_W_FP4 && w->fmt != DSV4K_W_BF16))
        return -1;
    int64_t rr0 = r + w->row0;
    /* the scales first, row by row (FP8: each row's block row) */
    for (int i = 0; i < rn; i++) {
        int64_t rr = rr0 + i;
        if (w->fmt == DSV4K_W_FP4 && !fp4_scales_ok((const uint8_t *)w->s + rr * (k / 32), k / 32)) return -1;
        if (w->fmt == DSV4K_W_FP8)
            for (int64_t c = 0; c < k; c += 128)
                if (fp8_mult(fp8_scale(w, rr, c)) == 0.0f) return -1;
    }
    const __m512i tab = _mm512_loadu_si512(E2M1_BF16);
    __mmask32 bad = 0;
    __m512i v[16];
    for (int i = rn; i < 16; i++) v[i] = _mm512_setzero_si512();
    for (int64_t c = 0; c < k; c += 32) {
        for (int i = 0; i < rn; i++) {
            int64_t rr = rr0 + i;
            if (w->fmt == DSV4K_W_FP8)
                v[i] = fp8_blk(fp8_at(w, rr, c), _mm512_set1_ps(fp8_mult(fp8_scale(w, rr, c))), &bad);
            else if (w->fmt == DSV4K_W_FP4)
                v[i] = fp4_blk((const uint8_t *)w->w + rr * (k / 2) + c / 2, ((const uint8_t *)w->s)[rr * (k / 32) + c / 32],
                               tab);
            else
                v[i] = bf16_blk(bf16_at(w, rr, c), &bad);
        }
        tr16((const __m512 *)v, (float *)(o + (c / 32) * kstep), ldo);
    }
    return bad ? -1 : 0;
}

TGT int dsv4k_decode_row_bf16_avx512(const dsv4k_weight *w, int64_t r, uint16_t *dst)
{
    if (w->k % 32) return -1;
    int64_t rr = r + w->row0;
    switch (w->fmt) {
    case DSV4K_W_FP8: return w->k % 128 ? -1 : fp8_row(w, rr, dst);
    case DSV4K_W_FP4: return fp4_row(w, rr, dst);
    case DSV4K_W_BF16: return bf16_row(w, rr, dst);
    default: return -1;
    }
}
