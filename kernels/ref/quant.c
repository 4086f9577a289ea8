/* Scalar reference of the numeric formats and quantisation primitives
 * (spec architecture.md §3.3, §4.3, §4.7, §4.8). Bit-exact by construction. */
#include "kernels.h"
#include "linear.h"

#include <math.h>

float dsv4k_e8m0_to_f32(uint8_t b)
{
    if (b == 255) return NAN;
    if (b == 0) return dsv4k_bits_f32(0x00400000u); /* 2^-127, subnormal */
    return dsv4k_bits_f32((uint32_t)b << 23);
}

float dsv4k_e4m3_to_f32(uint8_t b)
{
    int sign = b >> 7, e = (b >> 3) & 15, m = b & 7;
    float v;
    if (e == 15 && m == 7) return NAN;
    if (e == 0) v = (float)m * (1.0f / 512.0f);           /* m · 2^-9 */
    else v = (1.0f + (float)m / 8.0f) * ldexpf(1.0f, e - 7);
    return sign ? -v : v;
}

float dsv4k_e2m1_to_f32(uint8_t code)
{
    static const float t[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    float v = t[code & 7];
    return (code & 8) ? -v : v;
}

/* nearest-even rounding of |v| to multiples of 2^q (q may be negative) */
static float round_quantum(float a, int q)
{
    return ldexpf(rintf(ldexpf(a, -q)), q); /* rintf: ties to even (default mode) */
}

float dsv4k_e4m3_round(float v, uint8_t *code)
{
    float a = fabsf(v), r;
    if (isnan(v)) { if (code) *code = 0x7f; return v; }
    if (a >= 448.0f) r = 448.0f;
    else if (a < 0.015625f) r = round_quantum(a, -9);   /* subnormal range, step 2^-9 */
    else {
        int e;
        frexpf(a, &e);            /* a = f·2^e, f in [0.5,1) → leading bit 2^(e-1) */
        r = round_quantum(a, e - 1 - 3);
        if (r > 448.0f) r = 448.0f;
    }
    if (code) {
        uint8_t c;
        if (r == 0.0f) c = 0;
        else if (r < 0.015625f) c = (uint8_t)(int)ldexpf(r, 9);
        else {
            int e;
            float f = frexpf(r, &e);              /* r = f·2^e */
            int m = (int)ldexpf(f, 4) - 8;        /* f·16 in [8,16) */
            c = (uint8_t)(((e - 1 + 7) << 3) | m);
        }
        *code = (uint8_t)(c | (signbit(v) ? 0x80 : 0));
    }
    return signbit(v) ? -r : r;
}

float dsv4k_e2m1_round(float v, uint8_t *code)
{
    float a = fabsf(v), r;
    if (a >= 6.0f) r = 6.0f;
    else if (a < 2.0f) r = round_quantum(a, -1);
    else if (a < 4.0f) r = round_quantum(a, 0);
    else r = round_quantum(a, 1);
    if (code) {
        static const float t[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
        uint8_t c = 0;
        for (uint8_t i = 0; i < 8; i++) if (t[i] == r) c = i;
        *code = (uint8_t)(c | (signbit(v) ? 8 : 0));
    }
    return signbit(v) ? -r : r;
}

int dsv4k_log2_ceil(float t)
{
    uint32_t u = dsv4k_f32_bits(t);
    int e = (int)((u >> 23) & 0xff) - 127;
    return e + ((u & 0x7fffffu) != 0);
}

void dsv4k_act_quant_fp8_ref(const float *x, int64_t n, int block, float *q, int8_t *exps)
{
    const float c = 1.0f / 448.0f;
    for (int64_t b0 = 0; b0 < n; b0 += block) {
        float amax = 0.0f;
        for (int i = 0; i < block; i++) amax = fmaxf(amax, fabsf(x[b0 + i]));
        amax = fmaxf(amax, 1e-4f);
        int e = dsv4k_log2_ceil(amax * c);
        float inv = dsv4k_pow2(-e);
        for (int i = 0; i < block; i++) {
            float y = x[b0 + i] * inv;   /* exact: power of two */
            y = fminf(fmaxf(y, -448.0f), 448.0f);
            q[b0 + i] = dsv4k_e4m3_round(y, NULL);
        }
        if (exps) exps[b0 / block] = (int8_t)e;
    }
}

void dsv4k_fp8_sim_ref(float *x, int64_t n, int block)
{
    const float c = 1.0f / 448.0f;
    for (int64_t b0 = 0; b0 < n; b0 += block) {
        float amax = 0.0f;
        for (int i = 0; i < block; i++) amax = fmaxf(amax, fabsf(x[b0 + i]));
        amax = fmaxf(amax, 1e-4f);
        int e = dsv4k_log2_ceil(amax * c);
        float s = dsv4k_pow2(e), inv = dsv4k_pow2(-e);
        for (int i = 0; i < block; i++) {
            float y = fminf(fmaxf(x[b0 + i] * inv, -448.0f), 448.0f);
            x[b0 + i] = dsv4k_e4m3_round(y, NULL) * s;
        }
    }
}

void dsv4k_fp4_sim_ref(float *x, int64_t n, int block)
{
    const float c = 1.0f / 6.0f;
    const float floor_amax = 6.0f * 0x1p-126f;
    for (int64_t b0 = 0; b0 < n; b0 += block) {
        float amax = 0.0f;
        for (int i = 0; i < block; i++) amax = fmaxf(amax, fabsf(x[b0 + i]));
        amax = fmaxf(amax, floor_amax);
        int e = dsv4k_log2_ceil(amax * c);
        float s = ldexpf(1.0f, e), inv = ldexpf(1.0f, -e);
        for (int i = 0; i < block; i++) {
            float y = fminf(fmaxf(x[b0 + i] * inv, -6.0f), 6.0f);
            x[b0 + i] = dsv4k_e2m1_round(y, NULL) * s;
        }
    }
}

int dsv4k_decode_row_bf16_ref(const dsv4k_weight *w, int64_t r, float *tmp, uint16_t *dst)
{
    dsv4k_decode_row(w, r, tmp);
    int ok = 1;
    for (int64_t i = 0; i < w->k; i++) {
        uint32_t u = dsv4k_f32_bits(tmp[i]), e = (u >> 23) & 0xff;
        /* the low half zero, finite, and normal or a (signed) zero */
        ok &= (u & 0xffff) == 0 && e != 0xff && (e != 0 || (u & 0x7fffffff) == 0);
        dst[i] = (uint16_t)(u >> 16);
    }
    return ok ? 0 : -1;
}
