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

TGT static int fp8_row(const dsv4k_weight *w, int64_t rr, uint16_t *dst)
{
    int64_t k = w->k, kb = k / 128;
    const uint8_t *p = (const uint8_t *)w->w + rr * k;
    const uint8_t *sc = (const uint8_t *)w->s + (rr / 128) * kb;
    const __m512i em = _mm512_set1_epi16((short)0xbfff), x7f = _mm512_set1_epi8(0x7f);
    for (int64_t c0 = 0; c0 < k; c0 += 128) {
        int e = (int)sc[c0 / 128] - 127;
        if (e < -100 || e > 100) return -1;
        const __m512 sv = _mm512_set1_ps(dsv4k_lut_e8m0[sc[c0 / 128]] * 256.0f);
        for (int64_t c = c0; c < c0 + 128; c += 32) {
            /* interleaved rows: 32 codes never cross a 64-byte chunk */
            const uint8_t *q = rr < w->ilv ? dsv4k_row_byte(w, rr, k, c) : p + c;
            __m256i raw = _mm256_loadu_si256((const __m256i *)q);
            /* S.1111.111 is NaN in e4m3 */
            if (_mm512_cmpeq_epi8_mask(_mm512_and_si512(_mm512_castsi256_si512(raw), x7f), x7f) & 0xffffffffu)
                return -1;
            __m512i h = _mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(_mm512_cvtepu8_epi16(raw), 8), 1), em);
            __m512 lo = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(h)), sv);
            __m512 hi = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)), sv);
            _mm256_storeu_si256((__m256i *)(dst + c), _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(lo), 16)));
            _mm256_storeu_si256((__m256i *)(dst + c + 16),
                                _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(hi), 16)));
        }
    }
    return 0;
}

TGT static int fp4_row(const dsv4k_weight *w, int64_t rr, uint16_t *dst)
{
    int64_t k = w->k, ns = k / 32, i = 0;
    const uint8_t *p = (const uint8_t *)w->w + rr * (k / 2);
    const uint8_t *sc = (const uint8_t *)w->s + rr * ns;
    /* every scale within 2^±100 (bytes 27 .. 227), 64 at a time */
    const __m512i s27 = _mm512_set1_epi8(27), span = _mm512_set1_epi8((char)200);
    for (; i + 64 <= ns; i += 64)
        if (_mm512_cmpgt_epu8_mask(_mm512_sub_epi8(_mm512_loadu_si512(sc + i), s27), span)) return -1;
    for (; i < ns; i++)
        if (sc[i] < 27 || sc[i] > 227) return -1;
    const __m512i tab = _mm512_loadu_si512(E2M1_BF16);
    /* the table's entries of nonzero magnitude: all but ±0 (0, 8, 16, 24) */
    const __mmask32 nz = ~(__mmask32)0x01010101u;
    for (int64_t c = 0; c < k; c += 32) {
        /* byte b of the 16 in a 32-bit lane, made b | b << 12: its low word
         * indexes the low nibble (low 5 bits: the table's two halves are the
         * same), its high word is the high nibble — the codes in element
         * order; the block's scale added to the exponents of the table */
        __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + c / 2)));
        d = _mm512_or_si512(d, _mm512_slli_epi32(d, 12));
        __m512i t = _mm512_mask_add_epi16(tab, nz, tab, _mm512_set1_epi16((short)(((int)sc[c / 32] - 127) * 128)));
        _mm512_storeu_si512(dst + c, _mm512_permutexvar_epi16(d, t));
    }
    return 0;
}

TGT static int bf16_row(const dsv4k_weight *w, int64_t rr, uint16_t *dst)
{
    int64_t k = w->k;
    const uint16_t *p = (const uint16_t *)w->w + rr * k;
    const __m512i ex = _mm512_set1_epi16(0x7f80), mag = _mm512_set1_epi16(0x7fff), z = _mm512_setzero_si512();
    __mmask32 bad = 0;
    for (int64_t c = 0; c < k; c += 32) {
        const uint16_t *q = rr < w->ilv ? (const uint16_t *)(const void *)dsv4k_row_byte(w, rr, 2 * k, 2 * c) : p + c;
        __m512i v = _mm512_loadu_si512(q);
        __m512i e = _mm512_and_si512(v, ex);
        /* exponent all ones (Inf, NaN), or zero with a nonzero magnitude */
        bad |= _mm512_cmpeq_epi16_mask(e, ex) | (_mm512_cmpeq_epi16_mask(e, z) & _mm512_test_epi16_mask(v, mag));
        _mm512_storeu_si512(dst + c, v);
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
