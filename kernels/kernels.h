/*
 * kernels/kernels.h — numeric primitives and operators of libdsv4.
 *
 * Kernels never see the public header. Every optimised kernel has a scalar
 * reference twin named *_ref in kernels/ref/, and a test comparing them.
 * Numerics follow ../shared/spec/architecture.md §4 (cited per function).
 */
#ifndef DSV4_KERNELS_H
#define DSV4_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- CPU features (kernels/cpu.c) -------------------------------------- */

/* what this CPU and its OS can run, read once with cpuid and xgetbv (safe
 * from any thread); the same bits as the public DSV4_CPU_* */
enum {
    DSV4K_CPU_AVX2 = 1u << 0,
    DSV4K_CPU_FMA = 1u << 1,
    DSV4K_CPU_F16C = 1u << 2,
    DSV4K_CPU_AVX512F = 1u << 3,
    DSV4K_CPU_AVX512BW = 1u << 4,
    DSV4K_CPU_AVX512VL = 1u << 5,
    DSV4K_CPU_AVX512VNNI = 1u << 6,
    DSV4K_CPU_AVX512BF16 = 1u << 7,
    DSV4K_CPU_AMX = 1u << 8,
    DSV4K_CPU_AVX512VBMI = 1u << 9
};
uint32_t dsv4k_cpu_features(void);

/* ---- scalar formats (spec §3.3, §4) ---------------------------------- */

static inline float dsv4k_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t dsv4k_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* bf16 -> f32 is exact */
static inline float dsv4k_bf16_to_f32(uint16_t h) { return dsv4k_bits_f32((uint32_t)h << 16); }
/* f32 -> bf16, round to nearest even; NaN stays NaN */
static inline uint16_t dsv4k_f32_to_bf16(float f)
{
    uint32_t u = dsv4k_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
/* round a float to the nearest bf16 value (RNE), kept as float */
static inline float dsv4k_round_bf16(float f) { return dsv4k_bf16_to_f32(dsv4k_f32_to_bf16(f)); }

/* E8M0 scale byte -> 2^(b-127); 255 is NaN */
float dsv4k_e8m0_to_f32(uint8_t b);
/* e4m3fn byte -> float (exact; 0x7f/0xff NaN) */
float dsv4k_e4m3_to_f32(uint8_t b);
/* e2m1 nibble (0..15) -> float */
float dsv4k_e2m1_to_f32(uint8_t code);

/* Round to nearest-even e4m3fn value, saturating at ±448 (input already clamped
 * by callers per spec §4.3). Returns the value; *code (may be NULL) the byte. */
float dsv4k_e4m3_round(float v, uint8_t *code);
/* Round to nearest-even e2m1 value, saturating at ±6. *code (may be NULL). */
float dsv4k_e2m1_round(float v, uint8_t *code);

/* ceil(log2(t)) from the f32 bit pattern (exponent − 127, +1 if any mantissa
 * bit) as the reference's fast_log2_ceil; t > 0 and normal. */
int dsv4k_log2_ceil(float t);
/* 2^e as float for e in [-126, 127] */
static inline float dsv4k_pow2(int e) { return dsv4k_bits_f32((uint32_t)(e + 127) << 23); }

/*
 * Activation quantisation (spec §4.3): for each block of `block` values of x
 * (n a multiple of block): amax = max(max|x|, 1e-4); s = 2^ceil(log2(amax *
 * fp32(1/448))); q = e4m3_rne(clamp(x/s, ±448)). Writes the e4m3 values
 * (as floats) to q and the exponents (log2 s) to exps[n/block].
 * Either output may alias nothing else; q may equal x.
 */
void dsv4k_act_quant_fp8_ref(const float *x, int64_t n, int block, float *q, int8_t *exps);

/*
 * In-place FP8 simulation (spec §4.7): per block of 64 (or `block`), x ←
 * e4m3_rne(clamp(x/s, ±448)) · s, with s as in act_quant. `round_bf16`
 * additionally rounds the result to bf16 (no-op: values are exact in bf16).
 */
void dsv4k_fp8_sim_ref(float *x, int64_t n, int block);

/*
 * In-place FP4 simulation (spec §4.8): per block of 32: amax = max(max|x|,
 * 6·2^−126); s = 2^ceil(log2(amax · fp32(1/6))); x ← e2m1_rne(clamp(x/s, ±6)) · s.
 */
void dsv4k_fp4_sim_ref(float *x, int64_t n, int block);

/* Decode tables (value of every e4m3 byte, e2m1 nibble and E8M0 byte);
 * valid after dsv4k_tables_init(), which is idempotent and thread-safe. */
extern float dsv4k_lut_e4m3[256], dsv4k_lut_e2m1[16], dsv4k_lut_e8m0[256];
void dsv4k_tables_init(void);

/* ---- weights as stored ----------------------------------------------- */

enum dsv4k_wfmt {
    DSV4K_W_BF16 = 1,     /* uint16 bf16 [n][k] */
    DSV4K_W_F32 = 2,      /* float [n][k] */
    DSV4K_W_FP8 = 3,      /* e4m3 bytes [n][k], E8M0 scales [ceil(n/128)][ceil(k/128)] */
    DSV4K_W_FP8_F32S = 4, /* e4m3 bytes [n][k], float scales [ceil(n/128)][ceil(k/128)] (Flash-Base) */
    DSV4K_W_FP4 = 5       /* packed e2m1 [n][k/2] (low nibble = even k), E8M0 scales [n][k/32] */
};

typedef struct dsv4k_weight {
    int32_t fmt;      /* enum dsv4k_wfmt */
    int64_t n, k;     /* logical rows (outputs) and columns (inputs) */
    const void *w;    /* stored data, row-major */
    const void *s;    /* scales, NULL for BF16/F32 */
    int64_t row0;     /* a view of rows [row0, row0 + n) of the stored tensor
                       * (w and s still point at the whole tensor); 0 normally */
    int64_t ilv;      /* rows [0, ilv) of the stored tensor are interleaved in
                       * groups of 4 (dsv4k_repack_rows; ilv a multiple of 4);
                       * 0: every row plain (row-major) */
} dsv4k_weight;

/*
 * Row-interleaved layout (BF16 and FP8 weights whose rows are a multiple
 * of 64 bytes; made by dsv4k_repack_rows when weights are copied at load).
 * Rows 4g .. 4g+3 of the stored tensor occupy the same 4 row-lengths of
 * bytes as in the plain layout, but in 64-byte chunks taken in turn: chunk
 * c of row 4g + i lies at byte (4g)·rb + (4c + i)·64 (rb: bytes per row),
 * so a kernel reading the four rows together reads one sequential stream.
 * Rows from ilv on (the last n % 4) stay plain where they were. Scales
 * are not moved.
 */
/* bytes per row when the format and width can be interleaved, else 0 */
int64_t dsv4k_ilv_row_bytes(int32_t fmt, int64_t k);
/* dsv4k_ilv_row_bytes where interleaving the weights at load pays (the
 * loader's choice): BF16 on CPUs with AVX-512 only — measured on Zen 5
 * (docs/bench.md): the FP8 kernel's four-row pass gained in cache but not
 * from memory, AVX2's two-row BF16 pass did not gain in cache */
int64_t dsv4k_ilv_load_row_bytes(int32_t fmt, int64_t k);
/* dst = src (n rows of rb bytes) with rows [0, n/4·4) interleaved; returns
 * that count (the weight's ilv), or 0 (a plain copy) when rb is not a
 * positive multiple of 64. dst and src do not overlap. */
int64_t dsv4k_repack_rows(void *dst, const void *src, int64_t n, int64_t rb);
/* address of byte c of stored row rr (rb bytes per row) in either layout */
static inline const uint8_t *dsv4k_row_byte(const dsv4k_weight *w, int64_t rr, int64_t rb, int64_t c)
{
    const uint8_t *b = (const uint8_t *)w->w;
    if (rr < w->ilv) return b + (rr & ~(int64_t)3) * rb + (c >> 6) * 256 + (rr & 3) * 64 + (c & 63);
    return b + rr * rb + c;
}
/* stored row rr's first byte; *cs: the bytes from one of its 64-byte
 * chunks to the next (64 plain, 256 interleaved) */
static inline const uint8_t *dsv4k_row_start(const dsv4k_weight *w, int64_t rr, int64_t rb, int64_t *cs)
{
    *cs = rr < w->ilv ? 256 : 64;
    return dsv4k_row_byte(w, rr, rb, 0);
}

/* most activation rows the m-row kernels take at once
 * (kernels/x86/gemv_mrows.h); dsv4k_linear computes every row of a product
 * of up to DSV4K_MROWS_EXACT rows as alone (in pieces of at most
 * DSV4K_MROWS_MAX rows; dsv4k_linear_set_mrows) */
#define DSV4K_MROWS_MAX 8
#define DSV4K_MROWS_EXACT 15

/* Dequantise rows [r0, r1) of W into f32 dst[(r - r0) * k + c]. Exact. */
void dsv4k_weight_rows_f32_ref(const dsv4k_weight *w, int64_t r0, int64_t r1, float *dst);

/*
 * y[i][j] = Σ_c a[i][c] · W[j][c] for i < m, j < w->n (spec §4.4/§4.5 in
 * exact arithmetic, f32 accumulation). x is f32 rows of k values ldx apart;
 * y f32 rows of n values ldy apart (ldx >= k, ldy >= n).
 * aq != 0: each row of x is first quantised by dsv4k_act_quant_fp8_ref with
 * block 128 (the reference's act_quant before FP8/FP4 GEMMs); aq == 0: x is
 * used as is.
 */
void dsv4k_linear_ref(const dsv4k_weight *w, const float *x, int64_t ldx, int64_t m, float *y, int64_t ldy,
                      int aq);

#endif
