/*
 * kernels/ops.h — the model's operators other than the linear product.
 *
 * The *_ref functions are plain scalar C (kernels/ref/ops.c): the reference
 * twins every optimised version is tested against; they never dispatch.
 * The functions without the suffix (kernels/ops.c) are the entry points the
 * forward pass calls: they take a `simd` flag (0: never an optimised twin)
 * and choose the instruction set themselves (the x86 twins where the CPU
 * and the shapes allow, else portable C). Code outside kernels/ never picks
 * an ISA and never includes kernels/x86/. Spec references are to
 * ../shared/spec/architecture.md.
 *
 * All vectors are f32. Functions never allocate unless stated and never fail.
 */
#ifndef DSV4_OPS_H
#define DSV4_OPS_H

#include <stdint.h>

/* y = w ⊙ x · rsqrt(mean(x²) + eps) (§4.1); w may be NULL (no weight, §4.2).
 * y may equal x. */
void dsv4k_rmsnorm_ref(const float *x, const float *w, int64_t n, float eps, float *y);

/* dsv4k_rmsnorm_ref on m rows: row i of x at x + i·ldx, its result at
 * y + i·ldy (y may equal x with ldy == ldx). The AVX-512 twin when simd and
 * the CPU has it (the same bits: each row's sum in the reference's order),
 * else the reference per row. */
void dsv4k_rmsnorm_rows(const float *x, int64_t ldx, const float *w, int64_t n, float eps, float *y, int64_t ldy,
                        int64_t m, int simd);

/* RoPE frequency table (§4.6): f[i] for i < rope_dim/2. YaRN is applied when
 * orig_len > 0 (factor, beta_fast, beta_slow as in config.json). */
void dsv4k_rope_freqs(double base, int rope_dim, int64_t orig_len, double factor, double beta_fast,
                      double beta_slow, float *f);

/* Rotate the interleaved pairs (x[2i], x[2i+1]) of the rope_dim-vector x by
 * angle fp32(pos)·f[i] (inverse: by the negative angle). In place. */
void dsv4k_rope_ref(float *x, int rope_dim, int64_t pos, const float *f, int inverse);

/* dsv4k_rope_ref in two steps, for rows that share a position: the table
 * cs [rope_dim] of the cosines (cs[2i]) and sines (cs[2i+1], negated when
 * inverse) of the angles fp32(pos)·f[i], then the rotation of x by it. The
 * two steps give dsv4k_rope_ref's bits; dsv4k_rope_apply takes the AVX-512
 * twin when simd and the CPU has it. */
void dsv4k_rope_table(int rope_dim, int64_t pos, const float *f, int inverse, float *cs);
void dsv4k_rope_apply_ref(float *x, int rope_dim, const float *cs);
void dsv4k_rope_apply(float *x, int rope_dim, const float *cs, int simd);

/* dsv4k_fp4_sim_ref / dsv4k_fp8_sim_ref (kernels.h) through their AVX-512
 * twins (same bits) when simd, the CPU has it and the block is 32 / 64 */
void dsv4k_fp4_sim(float *x, int64_t n, int block, int simd);
void dsv4k_fp8_sim(float *x, int64_t n, int block, int simd);

/* Sylvester-ordered Hadamard transform of n (a power of two) values scaled
 * by n^-0.5 (§4.9). In place. */
void dsv4k_hadamard_ref(float *x, int n);
/* the same through the AVX-512 twin (same bits) when simd, n >= 16 and the
 * CPU has it */
void dsv4k_hadamard(float *x, int n, int simd);

/* SwiGLU of the routed and shared experts (§5.7), in place of g:
 * g[i] = w · (silu(min(g[i], lim)) · clamp(u[i], ±lim)) with lim 0 meaning
 * no clamp, silu(x) = x / (1 + e^-x) evaluated in double and rounded once
 * to f32, the two products in f32 in that order. */
void dsv4k_swiglu_ref(float *g, const float *u, int64_t n, float lim, float w);
/* the same through the AVX-512 twin when simd and the CPU has it: its
 * e^-x is a vector double-precision exponential (error below 2 ulp of a
 * double), so a value's f32 silu can differ from the reference's only where
 * the exact quotient lies within a few double ulps of an f32 rounding
 * boundary (about one value in 10^7; the test counts them, none so far) */
void dsv4k_swiglu(float *g, const float *u, int64_t n, float lim, float w, int simd);

/*
 * mHC pre-mix (§5.2 HcPre) for one token: X is hc streams of dim values
 * (stream-major). fn [(2+hc)·hc][hc·dim], base [(2+hc)·hc], scale [3].
 * Writes u [dim] (the sublayer input), post [hc], comb [hc·hc] (comb[j·hc+k]
 * maps source stream j to destination k).
 */
void dsv4k_hc_pre_ref(const float *X, int hc, int64_t dim, const float *fn, const float *base,
                      const float *scale, int iters, float norm_eps, float hc_eps, float *u,
                      float *post, float *comb);

/* the part of HcPre after the stream mix: m [(2+hc)·hc] as
 * dsv4k_hc_mix_ref gives it (dsv4k_hc_pre_ref is the mix, then this) */
void dsv4k_hc_pre_from_mix_ref(const float *X, int hc, int64_t dim, const double *m, const float *base,
                               const float *scale, int iters, float hc_eps, float *u, float *post, float *comb);

/* the parts of dsv4k_hc_pre_from_mix_ref: the weights pre [hc], post and
 * comb from the mix, then u = Σ_j pre[j]·X[j] (dsv4k_hc_sum_ref: per value a
 * double sum over the streams in order, rounded once; HcHead's too) */
void dsv4k_hc_pre_weights_ref(int hc, const double *m, const float *base, const float *scale, int iters,
                              float hc_eps, float *pre, float *post, float *comb);
void dsv4k_hc_sum_ref(const float *X, int hc, int64_t dim, const float *w, float *y);

/* the same with the stream mix (the (2+hc)·hc dot products over hc·dim
 * values, the bulk of the work) through the AVX2 twin when simd and the CPU
 * has it; the rest is the reference's (kernels/ops.c) */
void dsv4k_hc_pre(const float *X, int hc, int64_t dim, const float *fn, const float *base, const float *scale,
                  int iters, float norm_eps, float hc_eps, float *u, float *post, float *comb, int simd);

/* dsv4k_hc_pre for T tokens: token t's X at X + t·ldx, its u, post and
 * comb at u + t·ldu, post + t·ldp, comb + t·ldc; each token's results are
 * dsv4k_hc_pre's bits. With AVX-512 (simd, hc·dim % 8 == 0, hc <= 8) the
 * mix takes 4 tokens per pass over fn. */
void dsv4k_hc_pre_rows(const float *X, int64_t ldx, int64_t T, int hc, int64_t dim, const float *fn,
                       const float *base, const float *scale, int iters, float norm_eps, float hc_eps, float *u,
                       int64_t ldu, float *post, int64_t ldp, float *comb, int64_t ldc, int simd);

/* the stream mix of HcPre / HcHead: m[o] = (f32)(fn[o] · X) · r for rows o,
 * r the f32-rounded inverse RMS of X[0..width); sums in double */
void dsv4k_hc_mix_ref(const float *X, int64_t width, const float *fn, int rows, float norm_eps, double *m);

/* mHC post-mix (§5.2 HcPost): Xo[k] = post[k]·o + Σ_j comb[j·hc+k]·X[j].
 * Xo must not alias X. */
void dsv4k_hc_post_ref(const float *X, const float *o, const float *post, const float *comb, int hc,
                       int64_t dim, float *Xo);
/* the same through the AVX2 twin (identical results) when simd and the CPU
 * has it (kernels/ops.c) */
void dsv4k_hc_post(const float *X, const float *o, const float *post, const float *comb, int hc, int64_t dim,
                   float *Xo, int simd);

/* Final stream reduction (§5.2 HcHead): fn [hc][hc·dim], base [hc], scale [1]. */
void dsv4k_hc_head_ref(const float *X, int hc, int64_t dim, const float *fn, const float *base,
                       const float *scale, float norm_eps, float hc_eps, float *y);
/* the part of HcHead after the stream mix: m [hc] as dsv4k_hc_mix_ref
 * gives it */
void dsv4k_hc_head_from_mix_ref(const float *X, int hc, int64_t dim, const double *m, const float *base,
                                const float *scale, float hc_eps, float *y);
/* its weights w [hc] (then y = dsv4k_hc_sum_ref of them) */
void dsv4k_hc_head_weights_ref(int hc, const double *m, const float *base, const float *scale, float hc_eps,
                               float *w);
/* the same, the mix as for dsv4k_hc_pre (kernels/ops.c) */
void dsv4k_hc_head(const float *X, int hc, int64_t dim, const float *fn, const float *base, const float *scale,
                   float norm_eps, float hc_eps, float *y, int simd);

/*
 * Attention of one query head over n key=value vectors (§5.6): scores
 * (q·kv_i)·scale, an extra sink logit with a zero value, softmax, weighted
 * sum. kv[i] points at vector i (d values). out [d].
 */
void dsv4k_attn_head_ref(const float *q, const float *const *kv, int64_t n, int64_t d, float scale,
                         float sink, float *out);
/* every head h < nh of a row over the same n vectors: out + h·ldo from the
 * query q + h·ldq and sink[h]; when simd, the AVX-512 twin (f32, each
 * vector read once per 8 heads) for d % 16 == 0 on a CPU that has it, else
 * the AVX2 twin (once per 4 heads) for d % 8 == 0 (sc: room for nh·(n + 1)
 * floats), else dsv4k_attn_head_ref per head (sc unused). The choice does
 * not depend on the row or on how many rows a step holds. */
void dsv4k_attn_heads(const float *q, int64_t ldq, int64_t nh, const float *const *kv, int64_t n, int64_t d,
                      float scale, const float *sink, float *out, int64_t ldo, float *sc, int simd);

/*
 * Compressor pooling (§5.4): per channel c < d, softmax over `rows` rows of
 * g[row·stride + off_row + c] and the weighted sum of v likewise. The row's
 * feature offset is off[row] (lets the overlapping form read the first half
 * of previous-block rows and the second half of current-block rows).
 */
void dsv4k_compress_pool_ref(const float *v, const float *g, int rows, int64_t stride,
                             const int64_t *off, int64_t d, float *out);

/* Lightning-indexer score of one query against one key (§5.5):
 * Σ_h w[h] · relu(q[h]·k), q [heads][d]. */
float dsv4k_index_score_ref(const float *q, const float *w, int heads, int64_t d, const float *k);

/* Optimised twin of dsv4k_index_score_ref: f32 sums in 16 lanes (the
 * compiler vectorises them); d a multiple of 16 (kernels/ops.c). */
float dsv4k_index_score(const float *q, const float *w, int heads, int64_t d, const float *k);
/* the AVX2 twin when simd, d % 8 == 0 and the CPU has it, else
 * dsv4k_index_score */
float dsv4k_index_score_fast(const float *q, const float *w, int heads, int64_t d, const float *k, int simd);

/*
 * The indexer score in integers for FP4-simulated queries and keys
 * (reference numerics, §4.8; see dsv4k_index_score_q4_avx2 in
 * kernels/x86/gemv.h). dsv4k_index_q4_query prepares the query [heads][d]
 * into buf (dsv4k_index_q4_query_bytes) and returns 1 when simd, the CPU
 * and the shapes allow the integer kernel and the query has the FP4 form;
 * else 0 (use the f32 scores). dsv4k_index_score_q4 then scores a key
 * stored as dsv4k_key_fp4_decode reads it.
 */
int64_t dsv4k_index_q4_query_bytes(int heads, int64_t d);
int dsv4k_index_q4_query(const float *q, int heads, int64_t d, void *buf, int simd);
float dsv4k_index_score_q4(const void *qbuf, const float *w, int heads, int64_t d, const uint8_t *key);

/* An indexer key stored as d/2 packed e2m1 bytes (low nibble first) then
 * d/32 E8M0 bytes (d a multiple of 32), decoded to f32 dst[d]; exact. Needs
 * dsv4k_tables_init. The _ref is scalar; the other takes the AVX2 twin when
 * simd and the CPU has it (same values). */
void dsv4k_key_fp4_decode_ref(const uint8_t *p, int64_t d, float *dst);
void dsv4k_key_fp4_decode(const uint8_t *p, int64_t d, float *dst, int simd);

/* PyTorch softplus (threshold 20) */
float dsv4k_softplus(float x);

#endif
