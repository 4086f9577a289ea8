/*
 * kernels/x86/gemv.h — AVX2 twins of the reference product's row loop
 * (kernels/x86/gemv_avx2.c), used by dsv4k_linear when the CPU has AVX2,
 * FMA and F16C.
 */
#ifndef DSV4_GEMV_H
#define DSV4_GEMV_H

#include "kernels.h"

/* 1 when the AVX2 kernels can run on this CPU */
int dsv4k_have_avx2(void);

/*
 * y[i][r] = Σ_c x[i][c] · W[r][c] for rows r in [r0, r1) of the view w and
 * i < m; x rows ldx apart, y rows ldy apart. For FP4 weights, and for
 * BF16 weights when k % 32 == 0, x must be given split per 32-block
 * (dsv4k_split_even_odd). Returns 0, or -1 for a
 * format or width it does not take (k % 16 for BF16, % 128 for FP8, % 32
 * for FP4, F32 weights): then nothing is written.
 */
int dsv4k_rows_avx2(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *x, int64_t ldx, int64_t m,
                    float *y, int64_t ldy);

/* 1 when the AVX-512 (F, BW, VL) kernels can run: CPU and OS */
int dsv4k_have_avx512(void);

/*
 * The AVX-512 twin of dsv4k_rows_avx2 (kernels/x86/gemv_avx512.c): same
 * contract, except that BF16 weights need k % 32 (x split as for
 * dsv4k_rows_avx2). Returns -1 (nothing written) for a
 * format or width it does not take. The _emul twin is the same code built
 * on SIMDe's portable intrinsics; only tests link it.
 */
int dsv4k_rows_avx512(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *x, int64_t ldx, int64_t m,
                      float *y, int64_t ldy);
int dsv4k_rows_avx512_emul(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *x, int64_t ldx, int64_t m,
                           float *y, int64_t ldy);

/* twin of dsv4k_decode_row (row r of the view, k values into dst), bit for
 * bit; returns -1 (nothing written) for a format, width or block scale it
 * does not take (scales outside 2^±100 stay with the portable decoder) */
int dsv4k_decode_row_avx2(const dsv4k_weight *w, int64_t r, float *dst);

/* twin of dsv4k_decode_row_bf16_ref (linear.h) in one pass, for FP8 (E8M0
 * scales), FP4 and BF16 rows with k % 32 == 0 (FP8: % 128): the same bits
 * and the same 0; -1 also for what it does not take (scales outside 2^±100,
 * e4m3 NaN codes, other formats): decode the row with the twin then
 * (kernels/x86/decode_bf16_avx512.c; CPUs with AVX-512 F/BW/VL) */
int dsv4k_decode_row_bf16_avx512(const dsv4k_weight *w, int64_t r, uint16_t *dst);
/* rows [r, r + rn) of the view (rn <= 16; rows rn.. of the tile zero) as
 * dsv4k_decode_row_bf16_avx512 decodes them, written as pairs of bf16
 * (32-bit units, the lower input in the low half): the pair p of row i at
 * o[(p / 16)·kstep + (p % 16)·ldo + i] — oneDNN's blocked bf16 weight
 * layout (kernels/gemm/onednn.c). 0, or -1 (o then partly written) where
 * dsv4k_decode_row_bf16_avx512 would refuse any of the rows. */
int dsv4k_decode_tile_bf16_avx512(const dsv4k_weight *w, int64_t r, int rn, uint32_t *o, int64_t ldo,
                                  int64_t kstep);
/* o[c·ldo + i] = t[i·ldt + c] for i, c < 16, 32-bit values */
void dsv4k_tile16_avx512(const float *t, int64_t ldt, float *o, int64_t ldo);
/* the AVX2 twin for one 8 × 8 tile (gemv_avx2.c): o[c·ldo + i] = t[i·ldt + c],
 * i, c < 8 */
void dsv4k_tile8_avx2(const float *t, int64_t ldt, float *o, int64_t ldo);

/* twin of dsv4k_index_score_ref (d a multiple of 8) */
float dsv4k_index_score_avx2(const float *q, const float *w, int heads, int64_t d, const float *k);

/*
 * The indexer score of dsv4k_index_score_ref in integers, for FP4-simulated
 * queries and keys (reference numerics, spec §4.8): every query block of 32
 * is n · 2^e with integer |n| <= 12, every key value 2·e2m1 · 2^(E-128), so
 * each block's dot product is an exact integer (vpmaddubsw over 16 heads at
 * once: the heads sit in the lanes, a key pair is broadcast), scaled once;
 * only the f32 sums over blocks and heads round. heads % 16 == 0, d % 32 ==
 * 0, d <= 512. dsv4k_index_q4_prepare fills buf (dsv4k_index_q4_bytes) from
 * the f32 query [heads][d]; it returns -1 when a block is not of that form
 * (then use the f32 kernels). key: the stored form of
 * dsv4k_key_fp4_decode_avx2.
 */
int64_t dsv4k_index_q4_bytes(int heads, int64_t d);
int dsv4k_index_q4_prepare(const float *q, int heads, int64_t d, void *buf);
float dsv4k_index_score_q4_avx2(const void *qbuf, const float *w, int heads, int64_t d, const uint8_t *key);

/* an indexer key stored as d/2 packed e2m1 bytes (low nibble first) then
 * d/32 E8M0 bytes, decoded to f32 dst[d] (d a multiple of 32); exact */
void dsv4k_key_fp4_decode_avx2(const uint8_t *p, int64_t d, float *dst);

/* twin of dsv4k_attn_head_ref for every head of a row over the same n
 * vectors, in f32: for h in [0, nh), out[h·ldo .. +d) is head h's output
 * for the query q + h·ldq and sink[h] (d a multiple of 8); sc: room for
 * nh·(n + 1) floats. Each vector is read once per 4 heads. */
void dsv4k_attn_heads_avx2(const float *q, int64_t ldq, int64_t nh, const float *const *kv, int64_t n, int64_t d,
                           float scale, const float *sink, float *out, int64_t ldo, float *sc);
/* its AVX-512 twin (kernels/x86/attn_avx512.c): same contract for d a
 * multiple of 16; each vector read once per 8 heads, and every head's
 * output the same bits whatever nh and the head's place among them.
 * _emul: built on SIMDe, tests only */
void dsv4k_attn_heads_avx512(const float *q, int64_t ldq, int64_t nh, const float *const *kv, int64_t n, int64_t d,
                             float scale, const float *sink, float *out, int64_t ldo, float *sc);
void dsv4k_attn_heads_avx512_emul(const float *q, int64_t ldq, int64_t nh, const float *const *kv, int64_t n,
                                  int64_t d, float scale, const float *sink, float *out, int64_t ldo, float *sc);

/* the activation quantisation of dsv4k_act_quant_fp8_ref (blocks of 128, n a
 * multiple of 128) with the result given dequantised: out = q · 2^e, bit
 * for bit; the exponents e to ex[n/128] when ex is not NULL */
void dsv4k_act_quant_dq_avx2(const float *x, int64_t n, float *out, int8_t *ex);

/* twin of dsv4k_hc_mix_ref (kernels/ops.h) for width % 8 == 0: the same
 * double sums of exact f32 products, four rows per pass over X */
void dsv4k_hc_mix_avx2(const float *X, int64_t width, const float *fn, int rows, float norm_eps, double *m);

/* twin of dsv4k_hc_post_ref for dim % 8 == 0, bit for bit */
void dsv4k_hc_post_avx2(const float *X, const float *o, const float *post, const float *comb, int hc, int64_t dim,
                        float *Xo);

/*
 * FP4 rows against one activation row quantised to e4m3 per 128 (reference
 * numerics), in integers. dsv4k_fp4q_prepare turns the quantised values dq
 * (e4m3 values × 2^ex, as dsv4k_act_quant_dq gives them; k a multiple of
 * 128) and the block exponents ex into buf (dsv4k_fp4q_bytes(k) bytes): each
 * value times 2^(9-ex) as three signed 7-bit digits in planes of bytes, sums
 * for the +12 offset and per-block scales. It returns -1 when an input is
 * not finite (then use the f32 kernels; buf is partly written).
 * dsv4k_rows_fp4q_avx2 then computes y[r] for rows [r0, r1) of w: the
 * weights as unsigned 2·e2m1 + 12 bytes meet the digit planes in vpmaddubsw,
 * so every 8 products sum exactly in integers (rounded once if the sum
 * passes 2^24, which needs 8 products near the largest); only the f32 sums
 * over those round. The same value as the f32 kernels up to summation order.
 */
int64_t dsv4k_fp4q_bytes(int64_t k);
/* 2·e2m1 + 12 (0..24) by code: the unsigned weights of the integer kernels */
extern const uint8_t dsv4k_e2m1_x2p12[16];
int dsv4k_fp4q_prepare(const float *dq, const int8_t *ex, int64_t k, void *buf);
void dsv4k_rows_fp4q_avx2(const dsv4k_weight *w, int64_t r0, int64_t r1, const void *buf, float *y);

/*
 * FP8 rows (E8M0 or F32 block scales, k a multiple of 128, k <= 8192)
 * against one activation row whose 128-blocks are scaled by powers of two:
 * dsv4k_rows_fp8q_avx2 decodes each weight byte to its value × 2^-120 in
 * three integer operations (subnormal codes to f32 subnormals) and
 * multiplies xp = x · 2^sh[block]; each 128-block's sum is scaled by
 * S · 2^(120 - sh). The products are exact and normal when every nonzero
 * |xp| lies in [2^3, 2^101] — the preparations see to that:
 *  - dsv4k_fp8q_prepare: x quantised to e4m3 (dq, ex as dsv4k_act_quant_dq
 *    gives them; reference numerics): xp = q · 2^110, sh = 110 - ex;
 *  - dsv4k_fp8x_prepare: any f32 x (float numerics, or the unquantised
 *    products): per block the smallest nonzero magnitude to [2^3, 2^4) by
 *    exponent arithmetic; returns -1 (use the f32 kernel) when a block holds
 *    a subnormal or non-finite value or spans more than 2^97.
 * Row blocks whose scale S · 2^(120-sh) lies outside 2^±120 (or is not
 * finite) go through the f32 kernel with x. The same value as
 * dsv4k_rows_avx2 on x (bit for bit while its products are normal too).
 * Returns -1 (nothing written) for a format or width it does not take.
 */
void dsv4k_fp8q_prepare(const float *dq, const int8_t *ex, int64_t k, float *xp, int16_t *sh);
/* row block rb's scales for both twins: sq[b] = S · 2^(120 - sh[b]) (the
 * fast form), sf[b] = S · 2^8 (the f32 kernel's); returns 1 when every sq
 * lies in 2^±120 (the fast form may run), else 0 */
int dsv4k_fp8q_block_scales(const dsv4k_weight *w, int64_t rb, const int16_t *sh, float *sq, float *sf);
int dsv4k_fp8x_prepare(const float *x, int64_t k, float *xp, int16_t *sh);
int dsv4k_rows_fp8q_avx2(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *x, const float *xp,
                         const int16_t *sh, float *y);

/* the AVX-512 (F, BW) twins of dsv4k_rows_fp4q_avx2 and
 * dsv4k_rows_fp8q_avx2: same prepared activations, same contracts (the FP8
 * one bit for bit the AVX-512 f32 kernel's result); _emul: built on SIMDe,
 * tests only */
void dsv4k_rows_fp4q_avx512(const dsv4k_weight *w, int64_t r0, int64_t r1, const void *buf, float *y);
int dsv4k_rows_fp8q_avx512(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *x, const float *xp,
                           const int16_t *sh, float *y);
/* 1 when the VNNI twin below can run (AVX-512 F/BW/VL plus VNNI and VBMI) */
int dsv4k_have_avx512vnni(void);
/* dsv4k_rows_fp4q_avx512 on VNNI (vpermb decoding, vpdpbusd sums): same
 * prepared activations and contract, bit for bit the same result */
void dsv4k_rows_fp4q_avx512vnni(const dsv4k_weight *w, int64_t r0, int64_t r1, const void *buf, float *y);
void dsv4k_rows_fp4q_avx512vnni_emul(const dsv4k_weight *w, int64_t r0, int64_t r1, const void *buf, float *y);
/*
 * The VNNI kernel's second form (k a multiple of 512; see gemv_avx512.c):
 * dsv4k_fp4v_prepare fills buf (dsv4k_fp4v_bytes(k)) from the same dq and
 * ex as dsv4k_fp4q_prepare — digits of the block integers over their
 * common power of two, base 256, two planes where they suffice — and
 * returns -1 (buf partly written) for k % 512 or a value that is not
 * finite; dsv4k_rows_fp4v_avx512vnni then computes rows [r0, r1). Exact
 * integer sums per 32-block as the first form; only the f32 total rounds
 * (in another order). _emul: built on SIMDe, tests only.
 */
int64_t dsv4k_fp4v_bytes(int64_t k);
int dsv4k_fp4v_prepare(const float *dq, const int8_t *ex, int64_t k, void *buf);
int dsv4k_fp4v_prepare_emul(const float *dq, const int8_t *ex, int64_t k, void *buf);
void dsv4k_rows_fp4v_avx512vnni(const dsv4k_weight *w, int64_t r0, int64_t r1, const void *buf, float *y);
void dsv4k_rows_fp4v_avx512vnni_emul(const dsv4k_weight *w, int64_t r0, int64_t r1, const void *buf, float *y);
/* the second form on AVX2 (gemv_avx2.c): dsv4k_fp4v_prepare_avx2 writes
 * what dsv4k_fp4v_prepare writes (the planes of each block's plane count,
 * the corrections, scales and counts), with the same refusals;
 * dsv4k_rows_fp4v_avx2 computes rows [r0, r1) from it (vpmaddubsw sums:
 * exact per 32-block; its f32 total in its own order) */
int dsv4k_fp4v_prepare_avx2(const float *dq, const int8_t *ex, int64_t k, void *buf);
void dsv4k_rows_fp4v_avx2(const dsv4k_weight *w, int64_t r0, int64_t r1, const void *buf, float *y);
/*
 * FP8 rows against one activation row quantised to e4m3 per 128 (reference
 * numerics) by vdpbf16ps (AVX512-BF16 with VBMI; see gemv_avx512.c): exact
 * products, f32 sums in another order than the f32 kernels (each
 * vdpbf16ps adds two products to its lane, rounding as f32 additions do).
 * dsv4k_fp8b_prepare fills buf (dsv4k_fp8b_bytes(k)) from dq and ex as
 * dsv4k_act_quant_dq gives them; -1 (use another kernel) for k % 128, a
 * value that is not finite or a block exponent outside ±100. The rows
 * kernel takes dq as x too: row blocks with a scale outside 2^±100 (or not
 * finite) go through the f32 kernel with it, as the reference's products
 * may overflow where a block sum scaled once does not. It returns -1
 * (nothing written) for a format or width it does not take (FP8 with E8M0
 * or F32 scales, k <= 8192). _emul: SIMDe, tests only.
 */
int dsv4k_have_avx512bf16(void);
int64_t dsv4k_fp8b_bytes(int64_t k);
int dsv4k_fp8b_prepare(const float *dq, const int8_t *ex, int64_t k, void *buf);
int dsv4k_fp8b_prepare_emul(const float *dq, const int8_t *ex, int64_t k, void *buf);
int dsv4k_rows_fp8b_avx512bf16(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *x, const void *buf,
                                float *y);
int dsv4k_rows_fp8b_avx512bf16_emul(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *x, const void *buf,
                                     float *y);
void dsv4k_rows_fp4q_avx512_emul(const dsv4k_weight *w, int64_t r0, int64_t r1, const void *buf, float *y);
int dsv4k_rows_fp8q_avx512_emul(const dsv4k_weight *w, int64_t r0, int64_t r1, const float *x, const float *xp,
                                const int16_t *sh, float *y);

/*
 * AVX-512 twins of per-row operators (kernels/x86/ops_avx512.c), bit for bit
 * the references' results: RMSNorm of m rows (dsv4k_rmsnorm_ref per row; the
 * sums of 8 rows side by side), the RoPE rotation from a table of
 * dsv4k_rope_table, the FP4 simulation with blocks of 32 and the FP8
 * simulation with blocks of 64 (n a multiple of the block).
 */
void dsv4k_rmsnorm_rows_avx512(const float *x, int64_t ldx, const float *w, int64_t n, float eps, float *y,
                               int64_t ldy, int64_t m);
void dsv4k_rope_apply_avx512(float *x, int rope_dim, const float *cs);
void dsv4k_fp4_sim_avx512(float *x, int64_t n);
void dsv4k_fp8_sim_avx512(float *x, int64_t n);
/* dsv4k_hc_mix_avx2 (the same bits) for nt <= 4 tokens at once, token t at
 * X + t·ldx, its m at m + t·ldm: each row of fn is read once per 4 tokens
 * (width % 8 == 0) */
void dsv4k_hc_mix_avx512(const float *X, int64_t ldx, int nt, int64_t width, const float *fn, int rows,
                         float norm_eps, double *m, int ldm);
/* dsv4k_hadamard_ref for n a power of two >= 16, bit for bit */
void dsv4k_hadamard_avx512(float *x, int n);
/* dsv4k_hc_post_ref for hc <= 8, bit for bit */
void dsv4k_hc_post_avx512(const float *X, const float *o, const float *post, const float *comb, int hc,
                          int64_t dim, float *Xo);
/* dsv4k_hc_sum_ref, bit for bit */
void dsv4k_hc_sum_avx512(const float *X, int hc, int64_t dim, const float *w, float *y);

/* dsv4k_swiglu_ref with e^-x from a vector double exponential (see
 * dsv4k_swiglu in ops.h for how close it stays) */
void dsv4k_swiglu_avx512(float *g, const float *u, int64_t n, float lim, float w);

/* per block of 32 of x[0..k): the 16 even elements, then the 16 odd ones */
void dsv4k_split_even_odd(const float *x, int64_t k, float *dst);

#endif
