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

void dsv4k_hc_pre_rows(const float *X, int64_t ldx, int64_t T, int hc, int64_t dim, const float *fn,
                       const float *base, const float *scale, int iters, float norm_eps, float hc_eps, float *u,
                       int64_t ldu, float *post, int64_t ldp, float *comb, int64_t ldc, int simd)
{
    int rows = (2 + hc) * hc;
    if (!(simd && hc >= 1 && hc <= 8 && (hc * dim) % 8 == 0 && dsv4k_have_avx512())) {
        for (int64_t t = 0; t < T; t++)
            dsv4k_hc_pre(X + t * ldx, hc, dim, fn, base, scale, iters, norm_eps, hc_eps, u + t * ldu, post + t * ldp,
                         comb + t * ldc, simd);
        return;
    }
    double m[4 * 80];
    for (int64_t t0 = 0; t0 < T; t0 += 4) {
        int nt = T - t0 < 4 ? (int)(T - t0) : 4;
        dsv4k_hc_mix_avx512(X + t0 * ldx, ldx, nt, hc * dim, fn, rows, norm_eps, m, 80);
        for (int t = 0; t < nt; t++) {
            float pre[8];
            int64_t i = t0 + t;
            dsv4k_hc_pre_weights_ref(hc, m + t * 80, base, scale, iters, hc_eps, pre, post + i * ldp, comb + i * ldc);
            dsv4k_hc_sum_avx512(X + i * ldx, hc, dim, pre, u + i * ldu);
        }
    }
}

void dsv4k_hc_post(const float *X, const float *o, const float *post, const float *comb, int hc, int64_t dim,
                   float *Xo, int simd)
{
    if (simd && hc <= 8 && dsv4k_have_avx512()) dsv4k_hc_post_avx512(X, o, post, comb, hc, dim, Xo);
    else if (simd && dim % 8 == 0 && dsv4k_have_avx2()) dsv4k_hc_post_avx2(X, o, post, comb, hc, dim, Xo);
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

void dsv4k_rmsnorm_rows(const float *x, int64_t ldx, const float *w, int64_t n, float eps, float *y, int64_t ldy,
                        int64_t m, int simd)
{
    if (simd && dsv4k_have_avx512()) {
        dsv4k_rmsnorm_rows_avx512(x, ldx, w, n, eps, y, ldy, m);
        return;
    }
    for (int64_t i = 0; i < m; i++) dsv4k_rmsnorm_ref(x + i * ldx, w, n, eps, y + i * ldy);
}

void dsv4k_rope_apply(float *x, int rope_dim, const float *cs, int simd)
{
    if (simd && dsv4k_have_avx512()) dsv4k_rope_apply_avx512(x, rope_dim, cs);
    else dsv4k_rope_apply_ref(x, rope_dim, cs);
}

void dsv4k_fp4_sim(float *x, int64_t n, int block, int simd)
{
    if (simd && block == 32 && n % 32 == 0 && dsv4k_have_avx512()) dsv4k_fp4_sim_avx512(x, n);
    else dsv4k_fp4_sim_ref(x, n, block);
}

void dsv4k_fp8_sim(float *x, int64_t n, int block, int simd)
{
    if (simd && block == 64 && n % 64 == 0 && dsv4k_have_avx512()) dsv4k_fp8_sim_avx512(x, n);
    else dsv4k_fp8_sim_ref(x, n, block);
}

void dsv4k_hadamard(float *x, int n, int simd)
{
    if (simd && n >= 16 && (n & (n - 1)) == 0 && dsv4k_have_avx512()) dsv4k_hadamard_avx512(x, n);
    else dsv4k_hadamard_ref(x, n);
}

void dsv4k_swiglu(float *g, const float *u, int64_t n, float lim, float w, int simd)
{
    if (simd && dsv4k_have_avx512()) dsv4k_swiglu_avx512(g, u, n, lim, w);
    else dsv4k_swiglu_ref(g, u, n, lim, w);
}
