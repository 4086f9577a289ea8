/*
 * tests/kernels/test_ops512.c — the optimised per-row operators against
 * their scalar references, bit for bit: RMSNorm over many rows, RoPE from a
 * per-position table, the FP4 and FP8 simulations. Values cover random
 * rows at scales from subnormal to near overflow, every tie of the
 * roundings over a sweep of bit patterns, zeros of both signs, subnormals,
 * NaN and infinities, and the widths the models use (and odd ones).
 * Without AVX-512 the dispatching entry points take the references and the
 * comparisons still run (trivially); a note says so.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"
#include "ops.h"
#include "linear.h"
#include "x86/gemv.h"
#include "testutil.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)(rng >> 32); }
static float frand(void) { return (float)((rnd() >> 8) / 16777216.0 * 2.0 - 1.0); }

static float bits(uint32_t u) { return dsv4k_bits_f32(u); }

/* a value of a row: mostly plain random ones at the row's scale, now and
 * then a special one (when `special`) */
static float value(float scale, int special)
{
    uint32_t k = rnd() % 64;
    if (special && k == 0) return NAN;
    if (special && k == 1) return (rnd() & 1) ? INFINITY : -INFINITY;
    if (k == 2) return (rnd() & 1) ? 0.0f : -0.0f;
    if (k == 3) return bits((rnd() & 0x807fffffu)); /* subnormal */
    if (k == 4) {                                   /* any pattern, NaN only when special */
        float v = bits(rnd());
        /* a NaN made quiet: a signalling NaN never comes out of arithmetic,
         * and fmaxf treats it as no value at all (the references' block
         * maxima start over after one) */
        if (isnan(v)) v = special ? bits(dsv4k_f32_bits(v) | 0x00400000u) : 1.0f;
        return v;
    }
    return frand() * scale;
}

/* equal bits, except that any NaN equals any NaN: which NaN an operation
 * with two NaN operands returns (sign, payload) follows the order of the
 * operands in the instruction, which C leaves to the compiler (it swaps
 * the operands of a product at will, in the reference too), so the
 * references define NaN, not its bits. Everything else (±0, ±inf,
 * subnormals) must match bit for bit. */
static int same_bits(const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (dsv4k_f32_bits(a[i]) != dsv4k_f32_bits(b[i]) && !(isnan(a[i]) && isnan(b[i]))) return 0;
    return 1;
}

static void rmsnorm(void)
{
    static const int64_t ns[] = { 1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 64, 100, 128, 512, 1024, 4096, 7168 };
    static const int64_t ms[] = { 1, 5, 15, 16, 17, 33, 48 };
    int bad = 0, cases = 0;
    for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
        for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++) {
            int64_t n = ns[ni], m = ms[mi];
            if (n * m > 200000 && mi % 2) continue;
            int64_t ldx = n + (int64_t)(rnd() % 3) * 16 + (mi & 1), ldy = n + (int64_t)(rnd() % 2) * 5;
            float *x = malloc((size_t)(m * ldx) * 4), *w = malloc((size_t)n * 4);
            float *y1 = malloc((size_t)(m * ldy) * 4), *y2 = malloc((size_t)(m * ldy) * 4);
            float *xi = malloc((size_t)(m * ldx) * 4);
            int special = (int)(ni + mi) % 3 == 0;
            for (int64_t i = 0; i < m; i++) {
                /* row scales from 2^-140 (all subnormal) to 2^120 */
                float sc = ldexpf(1.0f, (int)(rnd() % 261) - 140);
                for (int64_t c = 0; c < ldx; c++) x[i * ldx + c] = value(sc, special);
            }
            for (int64_t c = 0; c < n; c++) w[c] = value(2.0f, 0);
            float eps = (rnd() & 1) ? 1e-6f : 1e-20f;
            for (int wi = 0; wi < 2; wi++) {
                const float *wp = wi ? w : NULL;
                memset(y1, 0x55, (size_t)(m * ldy) * 4);
                memcpy(y2, y1, (size_t)(m * ldy) * 4);
                for (int64_t i = 0; i < m; i++) dsv4k_rmsnorm_ref(x + i * ldx, wp, n, eps, y1 + i * ldy);
                dsv4k_rmsnorm_rows(x, ldx, wp, n, eps, y2, ldy, m, 1);
                bad += !same_bits(y1, y2, m * ldy); /* the gaps between rows untouched too */
                /* in place */
                memcpy(xi, x, (size_t)(m * ldx) * 4);
                dsv4k_rmsnorm_rows(xi, ldx, wp, n, eps, xi, ldx, m, 1);
                for (int64_t i = 0; i < m; i++) bad += !same_bits(xi + i * ldx, y1 + i * ldy, n);
                /* the portable path of the entry point */
                dsv4k_rmsnorm_rows(x, ldx, wp, n, eps, y2, ldy, m, 0);
                bad += !same_bits(y1, y2, m * ldy);
                cases++;
            }
            free(x); free(w); free(y1); free(y2); free(xi);
        }
    CHECK(bad == 0, "RMSNorm of m rows = the reference per row, bit for bit (%d mismatches in %d cases)", bad, cases);
}

static void rope(void)
{
    static const int dims[] = { 2, 6, 8, 16, 32, 64, 96, 128 };
    float f[64], cs[128], x[128], y1[128], y2[128], y3[128];
    int bad_t = 0, bad_s = 0, cases = 0;
    for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
        int rd = dims[di];
        for (int yarn = 0; yarn < 2; yarn++) {
            dsv4k_rope_freqs(yarn ? 160000.0 : 10000.0, rd, yarn ? 65536 : 0, 16.0, 32.0, 1.0, f);
            for (int rep = 0; rep < 300; rep++) {
                int64_t pos = rep < 20 ? rep : rep < 40 ? (int64_t)1 << (rep - 20) : (int64_t)(rnd() % 2000000);
                int special = rep % 7 == 0;
                float sc = ldexpf(1.0f, (int)(rnd() % 200) - 100);
                for (int c = 0; c < rd; c++) x[c] = value(sc, special);
                for (int inv = 0; inv < 2; inv++) {
                    memcpy(y1, x, sizeof x);
                    memcpy(y2, x, sizeof x);
                    memcpy(y3, x, sizeof x);
                    dsv4k_rope_ref(y1, rd, pos, f, inv);
                    dsv4k_rope_table(rd, pos, f, inv, cs);
                    dsv4k_rope_apply_ref(y2, rd, cs);
                    dsv4k_rope_apply(y3, rd, cs, 1);
                    bad_t += !same_bits(y1, y2, 128);
                    bad_s += !same_bits(y1, y3, 128);
                    cases++;
                }
            }
        }
    }
    CHECK(bad_t == 0, "RoPE by table = dsv4k_rope_ref bit for bit (%d of %d differ)", bad_t, cases);
    CHECK(bad_s == 0, "RoPE by table, optimised rotation = dsv4k_rope_ref bit for bit (%d of %d differ)", bad_s, cases);
}

/*
 * The simulations: blocks holding an anchor that sets the block's scale
 * (the format's largest value times 2^k) and values swept over bit
 * patterns times 2^k: every exponent in range, the top 11 mantissa bits
 * all, the low 12 from a set that includes the exact ties. Then random
 * rows with specials.
 */
static void sim_sweep(int fp4)
{
    int block = fp4 ? 32 : 64;
    float top = fp4 ? 6.0f : 448.0f;
    int64_t n = 64 * block;
    float *a = malloc(4096 * 4), *b = malloc(4096 * 4);
    static const uint32_t low[] = { 0, 1, 0x7ff, 0x800, 0x801, 0xfff };
    static const int ks[] = { -140, -127, -126, -100, -3, 0, 1, 7, 60, 119, 120, 127 };
    int64_t bad = 0, blocks = 0;
    int64_t fill = 0;
    for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
        int k = ks[ki];
        /* swept magnitudes from 2^-30 up to 2^4 (above the largest value: clamped) */
        for (uint32_t ex = 127 - 30; ex <= 127 + 4; ex++)
            for (uint32_t hi = 0; hi < 2048; hi++)
                for (size_t li = 0; li < sizeof low / sizeof *low; li++) {
                    if (fill % block == 0) {
                        a[fill] = ldexpf((fill / block) % 2 ? top : -top, k);
                        fill++;
                    }
                    uint32_t u = (ex << 23) | (hi << 12) | low[li] | ((rnd() & 1) ? 0x80000000u : 0);
                    a[fill++] = ldexpf(bits(u), k);
                    if (fill == n) {
                        memcpy(b, a, (size_t)n * 4);
                        if (fp4) { dsv4k_fp4_sim_ref(a, n, block); dsv4k_fp4_sim(b, n, block, 1); }
                        else { dsv4k_fp8_sim_ref(a, n, block); dsv4k_fp8_sim(b, n, block, 1); }
                        for (int64_t q = 0; q < n; q += block) bad += !same_bits(a + q, b + q, block);
                        blocks += n / block;
                        fill = 0;
                    }
                }
    }
    /* random rows: scales over the whole range, specials (NaN, ±inf, ±0,
     * subnormals), whole blocks of zeros */
    static const int64_t ns[] = { 32, 64, 128, 512, 1024, 4096 };
    for (int rep = 0; rep < 400; rep++) {
        int64_t m = ns[rep % 6];
        if (m % block) continue;
        float sc = ldexpf(1.0f, (int)(rnd() % 280) - 150);
        for (int64_t i = 0; i < m; i++) a[i] = value(sc, rep % 3 == 0);
        if (rep % 5 == 0) memset(a, 0, (size_t)block * 4);
        if (rep % 11 == 0) a[block / 2] = (rep & 1) ? INFINITY : NAN;
        memcpy(b, a, (size_t)m * 4);
        if (fp4) { dsv4k_fp4_sim_ref(a, m, block); dsv4k_fp4_sim(b, m, block, 1); }
        else { dsv4k_fp8_sim_ref(a, m, block); dsv4k_fp8_sim(b, m, block, 1); }
        for (int64_t q = 0; q < m; q += block) bad += !same_bits(a + q, b + q, block);
        blocks += m / block;
    }
    CHECK(bad == 0 && blocks > 50000, "%s simulation = the reference bit for bit (%lld of %lld blocks differ)",
          fp4 ? "FP4" : "FP8", (long long)bad, (long long)blocks);
    free(a);
    free(b);
}

static int same_bits_d(const double *a, const double *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, 8) && !(isnan(a[i]) && isnan(b[i]))) return 0;
    return 1;
}

/* HcPre of T tokens at once = dsv4k_hc_pre per token (the AVX2 mix when
 * the CPU has AVX2); its parts against theirs */
static void hc(void)
{
    static const int64_t dims[] = { 2, 8, 24, 64, 100, 4096 };
    static const int hcs[] = { 1, 2, 3, 4, 6 };
    int bad_rows = 0, bad_mix = 0, bad_sum = 0, cases = 0;
    for (size_t di = 0; di < sizeof dims / sizeof *dims; di++)
        for (size_t hi = 0; hi < sizeof hcs / sizeof *hcs; hi++) {
            int h = hcs[hi];
            int64_t dim = dims[di], width = h * dim, rows = (2 + h) * h;
            if (dim == 4096 && h != 4) continue;
            int64_t T = dim == 4096 ? 9 : 1 + (int64_t)(rnd() % 11), ldx = width + (di & 1) * 8;
            float *X = malloc((size_t)(T * ldx) * 4), *fn = malloc((size_t)(rows * width) * 4);
            float base[80], scale[3] = { 0.7f, 1.3f, 0.9f };
            float *u1 = calloc((size_t)(T * dim), 4), *u2 = calloc((size_t)(T * dim), 4);
            float p1[96], p2[96], c1[768], c2[768]; /* T <= 11 tokens */
            for (int64_t i = 0; i < rows * width; i++) fn[i] = frand() * 0.1f;
            for (int64_t i = 0; i < rows; i++) base[i] = frand();
            for (int64_t t = 0; t < T; t++) {
                float sc = ldexpf(1.0f, (int)(rnd() % 40) - 20);
                for (int64_t c = 0; c < ldx; c++) X[t * ldx + c] = value(sc, t == 5);
            }
            for (int rep = 0; rep < 2; rep++) {
                /* rep 0: all tokens at once; rep 1: in groups of 3 (a token's
                 * result must not depend on its group) */
                memset(u2, 0, (size_t)(T * dim) * 4);
                for (int64_t t0 = 0; t0 < T; t0 += rep ? 3 : T) {
                    int64_t nt = rep && T - t0 > 3 ? 3 : T - t0;
                    dsv4k_hc_pre_rows(X + t0 * ldx, ldx, nt, h, dim, fn, base, scale, 20, 1e-6f, 1e-6f, u2 + t0 * dim,
                                      dim, p2 + t0 * 8, 8, c2 + t0 * 64, 64, 1);
                }
                for (int64_t t = 0; t < T; t++) {
                    dsv4k_hc_pre(X + t * ldx, h, dim, fn, base, scale, 20, 1e-6f, 1e-6f, u1 + t * dim, p1 + t * 8,
                                 c1 + t * 64, 1);
                    bad_rows += !same_bits(u1 + t * dim, u2 + t * dim, dim) || !same_bits(p1 + t * 8, p2 + t * 8, h) ||
                                !same_bits(c1 + t * 64, c2 + t * 64, h * h);
                }
                cases++;
            }
            if (width % 8 == 0 && dsv4k_have_avx512()) {
                double m1[4 * 80], m2[4 * 80];
                for (int nt = 1; nt <= 4 && nt <= T; nt++) {
                    dsv4k_hc_mix_avx512(X, ldx, nt, width, fn, (int)rows, 1e-6f, m2, 80);
                    for (int t = 0; t < nt; t++) {
                        dsv4k_hc_mix_avx2(X + t * ldx, width, fn, (int)rows, 1e-6f, m1 + t * 80);
                        bad_mix += !same_bits_d(m1 + t * 80, m2 + t * 80, rows);
                    }
                }
                float w[8];
                for (int j = 0; j < h; j++) w[j] = value(1.0f, 0);
                dsv4k_hc_sum_ref(X, h, dim, w, u1);
                dsv4k_hc_sum_avx512(X, h, dim, w, u2);
                bad_sum += !same_bits(u1, u2, dim);
            }
            free(X); free(fn); free(u1); free(u2);
        }
    CHECK(bad_rows == 0, "HcPre of several tokens = HcPre per token, bit for bit (%d tokens differ, %d cases)", bad_rows, cases);
    CHECK(bad_mix == 0, "the 4-token AVX-512 stream mix = the AVX2 mix, bit for bit (%d differ)", bad_mix);
    CHECK(bad_sum == 0, "the AVX-512 stream sum = dsv4k_hc_sum_ref, bit for bit (%d differ)", bad_sum);
}

/* HcPost's twin against the reference */
static void hc_post(void)
{
    static const int64_t dims[] = { 1, 2, 7, 8, 24, 100, 512, 4096 };
    int bad = 0, cases = 0;
    for (size_t di = 0; di < sizeof dims / sizeof *dims; di++)
        for (int h = 1; h <= 8; h++) {
            int64_t dim = dims[di];
            float *X = malloc((size_t)(h * dim) * 4), *o = malloc((size_t)dim * 4);
            float *y1 = malloc((size_t)(h * dim) * 4), *y2 = malloc((size_t)(h * dim) * 4);
            float post[8], comb[64];
            for (int rep = 0; rep < 3; rep++) {
                float sc = ldexpf(1.0f, (int)(rnd() % 60) - 30);
                for (int64_t i = 0; i < h * dim; i++) X[i] = value(sc, rep == 2);
                for (int64_t i = 0; i < dim; i++) o[i] = value(sc, rep == 2);
                for (int k = 0; k < h; k++) post[k] = 2.0f * (frand() + 1.0f) / 2.0f;
                for (int k = 0; k < h * h; k++) comb[k] = (frand() + 1.0f) / 2.0f;
                dsv4k_hc_post_ref(X, o, post, comb, h, dim, y1);
                dsv4k_hc_post(X, o, post, comb, h, dim, y2, 1);
                bad += !same_bits(y1, y2, h * dim);
                if (dsv4k_have_avx512()) {
                    dsv4k_hc_post_avx512(X, o, post, comb, h, dim, y2);
                    bad += !same_bits(y1, y2, h * dim);
                }
                cases++;
            }
            free(X); free(o); free(y1); free(y2);
        }
    CHECK(bad == 0, "HcPost's twins = the reference, bit for bit (%d mismatches in %d cases)", bad, cases);
}

static void hadamard(void)
{
    float x[4096], y1[4096], y2[4096];
    int bad = 0, cases = 0;
    for (int n = 1; n <= 4096; n *= 2)
        for (int rep = 0; rep < 20; rep++) {
            float sc = ldexpf(1.0f, (int)(rnd() % 270) - 140);
            for (int i = 0; i < n; i++) x[i] = value(sc, rep % 4 == 3);
            memcpy(y1, x, (size_t)n * 4);
            memcpy(y2, x, (size_t)n * 4);
            dsv4k_hadamard_ref(y1, n);
            dsv4k_hadamard(y2, n, 1);
            bad += !same_bits(y1, y2, n);
            if (n >= 16 && dsv4k_have_avx512()) {
                memcpy(y2, x, (size_t)n * 4);
                dsv4k_hadamard_avx512(y2, n);
                bad += !same_bits(y1, y2, n);
            }
            cases++;
        }
    CHECK(bad == 0, "Hadamard's twin = the reference, bit for bit (%d mismatches in %d cases)", bad, cases);
}

/* SwiGLU: the twin's vector e^-x against the reference's libm exp, over
 * gate values at scales from subnormal to overflow (every part of silu's
 * range: the saturations past ±709 and ±745, the subnormal results of
 * e^-x, NaN and infinities), with and without the clamp, at ragged widths
 * (the masked tail) */
static void swiglu(void)
{
    enum { N = 4099 };
    static float g[N], u[N], y1[N], y2[N];
    int64_t bad = 0, total = 0;
    const float scales[8] = { 1e-30f, 0.01f, 1.0f, 4.0f, 20.0f, 120.0f, 800.0f, 3e38f };
    for (int rep = 0; rep < 400; rep++) {
        int64_t n = rep % 5 == 4 ? 1 + rnd() % 40 : rep % 7 == 0 ? N : 2048;
        float sc = scales[rep % 8], lim = rep % 3 == 0 ? 7.0f : rep % 3 == 1 ? 0.0f : 500.0f;
        float w = rep % 4 == 0 ? 1.0f : frand();
        for (int64_t i = 0; i < n; i++) {
            g[i] = value(sc, rep % 5 == 1);
            u[i] = value(rep % 2 ? sc : 3.0f, rep % 5 == 1);
        }
        memcpy(y1, g, (size_t)n * 4);
        memcpy(y2, g, (size_t)n * 4);
        dsv4k_swiglu_ref(y1, u, n, lim, w);
        dsv4k_swiglu(y2, u, n, lim, w, 1);
        for (int64_t i = 0; i < n; i++) bad += !same_bits(y1 + i, y2 + i, 1);
        if (dsv4k_have_avx512()) {
            memcpy(y2, g, (size_t)n * 4);
            dsv4k_swiglu_avx512(y2, u, n, lim, w);
            for (int64_t i = 0; i < n; i++) bad += !same_bits(y1 + i, y2 + i, 1);
        }
        total += n;
    }
    /* the edges of silu one by one */
    const float edge[12] = { -745.5f, -745.0f, -709.9f, -709.7f, -88.7f, -87.3f, 708.5f, 745.2f, -0.0f, 0.0f,
                             -INFINITY, INFINITY };
    for (int i = 0; i < 12; i++) {
        float a = edge[i], b = edge[i], one = 1.0f;
        dsv4k_swiglu_ref(&a, &one, 1, 0.0f, 1.0f);
        dsv4k_swiglu(&b, &one, 1, 0.0f, 1.0f, 1);
        bad += !same_bits(&a, &b, 1);
        total++;
    }
    CHECK(bad == 0 && total > 500000, "SwiGLU's twin = the reference, bit for bit (%lld of %lld values differ)",
          (long long)bad, (long long)total);
}

/* the embedding lookup decodes rows with dsv4k_decode_row: the reference's
 * values (dsv4k_weight_rows_f32_ref) in every format, on a row view too */
static void decode_rows(void)
{
    dsv4k_tables_init();
    int fmts[5] = { DSV4K_W_BF16, DSV4K_W_F32, DSV4K_W_FP8, DSV4K_W_FP8_F32S, DSV4K_W_FP4 };
    int bad = 0, rows = 0;
    for (int f = 0; f < 5; f++) {
        int fmt = fmts[f];
        int64_t n = 256, k = 512, kb = k / 128, nb = n / 128;
        size_t wbytes = fmt == DSV4K_W_BF16 ? 2 : fmt == DSV4K_W_F32 ? 4 : 1;
        uint8_t *wd = malloc((size_t)(n * k) * wbytes);
        void *sd = malloc((size_t)(fmt == DSV4K_W_FP4 ? n * (k / 32) : nb * kb * 4));
        for (int64_t i = 0; i < n * k * (int64_t)wbytes; i++) wd[i] = (uint8_t)rnd();
        if (fmt == DSV4K_W_FP8)
            for (int64_t i = 0; i < nb * kb; i++) ((uint8_t *)sd)[i] = (uint8_t)(i == 3 ? 250 : 60 + rnd() % 130);
        if (fmt == DSV4K_W_FP8_F32S)
            for (int64_t i = 0; i < nb * kb; i++) ((float *)sd)[i] = frand() * 0.01f;
        if (fmt == DSV4K_W_FP4)
            for (int64_t i = 0; i < n * (k / 32); i++) ((uint8_t *)sd)[i] = (uint8_t)(i % 97 == 5 ? 2 : 60 + rnd() % 130);
        float *a = malloc((size_t)k * 4), *b = malloc((size_t)k * 4);
        for (int view = 0; view < 2; view++) {
            dsv4k_weight w = { fmt, view ? 100 : n, k, wd, sd, view ? 37 : 0, 0 };
            for (int64_t r = 0; r < w.n; r++) {
                dsv4k_weight_rows_f32_ref(&w, r, r + 1, a);
                dsv4k_decode_row(&w, r, b);
                bad += !same_bits(a, b, k);
                rows++;
            }
        }
        free(wd); free(sd); free(a); free(b);
    }
    CHECK(bad == 0 && rows > 1000, "row decoding = the reference's values (%d of %d rows differ)", bad, rows);
}

/* the twins do change values (a test of the test) */
static void sim_rounds(void)
{
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = 0.3f + (float)i * 0.01f;
    dsv4k_fp4_sim(x, 64, 32, 1);
    CHECK(x[0] == 0.25f && x[31] == 0.5f, "FP4 simulation rounds (%g, %g)", x[0], x[31]);
}

int main(void)
{
    if (!dsv4k_have_avx512()) printf("note: no AVX-512 here; the entry points take the references\n");
    rmsnorm();
    rope();
    sim_sweep(1);
    sim_sweep(0);
    sim_rounds();
    hc();
    hc_post();
    hadamard();
    swiglu();
    decode_rows();
    return test_summary();
}
