/*
 * kernels/ops.c — the operators' entry points that choose an instruction
 * set (see kernels/ops.h). Each takes a `simd` flag (the caller allows the
 * optimised twins: off for the reference operators throughout) and runs a
 * kernels/x86 twin where the flag, the CPU and the shapes allow it, else
 * the portable code; the twins are tested against the scalar references of
 * kernels/ref/ops.c. All the ISA choice of the operators is made here (the
 * linear products choose theirs in kernels/linear.c).
 */
#include <stddef.h>
#include "kernels.h"
#include "ops.h"
#include "x86/gemv.h"

/* the stream mix of HcPre / HcHead through the AVX2 twin where it applies */
static void hc_mix(const float *X, int64_t width, const float *fn, int rows, float norm_eps, double *m, int simd)
{
    if (simd && width % 8 == 0 && dsv4k_have_avx2()) dsv4k_hc_mix_avx2(X, width, fn, rows, norm_eps, m);
    else dsv4k_hc_mix_ref(X, width, fn, rows, norm_eps, m);
}

void dsv4k_hc_pre(const float *X, int hc, int64_t dim, const float *fn, const float *base, const float *scale,
                  int iters, float norm_eps, float hc_eps, float *u, float *post, float *comb, int simd)
{
    double m[64];
    hc_mix(X, hc * dim, fn, (2 + hc) * hc, norm_eps, m, simd);
    dsv4k_hc_pre_from_mix_ref(X, hc, dim, m, base, scale, iters, hc_eps, u, post, comb);
}

void dsv4k_hc_post(const float *X, const float *o, const float *post, const float *comb, int hc, int64_t dim,
                   float *Xo, int simd)
{
    if (simd && dim % 8 == 0 && dsv4k_have_avx2()) dsv4k_hc_post_avx2(X, o, post, comb, hc, dim, Xo);
    else dsv4k_hc_post_ref(X, o, post, comb, hc, dim, Xo);
}

void dsv4k_hc_head(const float *X, int hc, int64_t dim, const float *fn, const float *base, const float *scale,
                   float norm_eps, float hc_eps, float *y, int simd)
{
    double m[8];
    hc_mix(X, hc * dim, fn, hc, norm_eps, m, simd);
    dsv4k_hc_head_from_mix_ref(X, hc, dim, m, base, scale, hc_eps, y);
}

void dsv4k_attn_heads(const float *q, int64_t ldq, int64_t nh, const float *const *kv, int64_t n, int64_t d,
                      float scale, const float *sink, float *out, int64_t ldo, float *sc, int simd)
{
    if (simd && d % 16 == 0 && dsv4k_have_avx512()) {
        dsv4k_attn_heads_avx512(q, ldq, nh, kv, n, d, scale, sink, out, ldo, sc);
        return;
    }
    if (simd && d % 8 == 0 && dsv4k_have_avx2()) {
        dsv4k_attn_heads_avx2(q, ldq, nh, kv, n, d, scale, sink, out, ldo, sc);
        return;
    }
    for (int64_t h = 0; h < nh; h++) dsv4k_attn_head_ref(q + h * ldq, kv, n, d, scale, sink[h], out + h * ldo);
}

float dsv4k_index_score(const float *q, const float *w, int heads, int64_t d, const float *k)
{
    float s = 0.0f;
    for (int h = 0; h < heads; h++) {
        const float *qh = q + h * d;
        float acc[16] = { 0 };
        for (int64_t c = 0; c + 16 <= d; c += 16)
            for (int j = 0; j < 16; j++) acc[j] += qh[c + j] * k[c + j];
        float dot = 0.0f;
        for (int j = 0; j < 16; j++) dot += acc[j];
        if (dot > 0) s += w[h] * dot;
    }
    return s;
}

float dsv4k_index_score_fast(const float *q, const float *w, int heads, int64_t d, const float *k, int simd)
{
    if (simd && d % 8 == 0 && dsv4k_have_avx2()) return dsv4k_index_score_avx2(q, w, heads, d, k);
    return dsv4k_index_score(q, w, heads, d, k);
}

int64_t dsv4k_index_q4_query_bytes(int heads, int64_t d)
{
    return dsv4k_index_q4_bytes(heads, d);
}

int dsv4k_index_q4_query(const float *q, int heads, int64_t d, void *buf, int simd)
{
    return simd && dsv4k_have_avx2() && heads % 16 == 0 && d % 32 == 0 && d <= 512 &&
           dsv4k_index_q4_prepare(q, heads, d, buf) == 0;
}

float dsv4k_index_score_q4(const void *qbuf, const float *w, int heads, int64_t d, const uint8_t *key)
{
    return dsv4k_index_score_q4_avx2(qbuf, w, heads, d, key);
}

void dsv4k_key_fp4_decode(const uint8_t *p, int64_t d, float *dst, int simd)
{
    if (simd && d % 32 == 0 && dsv4k_have_avx2()) dsv4k_key_fp4_decode_avx2(p, d, dst);
    else dsv4k_key_fp4_decode_ref(p, d, dst);
}
