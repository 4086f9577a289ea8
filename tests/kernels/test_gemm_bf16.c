/*
 * tests/kernels/test_gemm_bf16.c — the bf16 route of the oneDNN products
 * (kernels/gemm/onednn.c) against the scalar reference dsv4k_linear_ref.
 *
 * In reference numerics every quantised activation and every weight with
 * power-of-two scales is a bf16 value, so the route's products are exact and
 * only its f32 summation order differs from the reference (which sums in
 * double). Checked here:
 *  - random FP8/FP4/BF16 weights, ragged shapes, several row blocks, strided
 *    input and output: |y − y_ref| ≤ (γ_k + u)·Σ|a·w| + 2k·2^-126
 *    (γ_k = k·u / (1 − k·u), u = 2^-24: any order of k f32 additions of exact
 *    products, the reference's own rounding to f32, and flushed subnormals);
 *  - single-product outputs (one nonzero weight per row) equal the reference
 *    bit for bit, at the edges of the scale range too;
 *  - weights or activations outside bf16's normal range (tiny or huge
 *    scales, NaN scales, infinite activations), float numerics, F32 and
 *    F32-scaled weights and k % 128 take the f32 route: the route counters
 *    say so and the result equals the f32-only route bit for bit;
 *  - the f32 → bf16 conversion's refusals value by value;
 *  - the bf16 and f32 weights in oneDNN's blocked layout (ragged blocks
 *    padded) and in the plain one, against the same bound.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"
#include "linear.h"
#include "gemm/gemm.h"
#include "x86/gemv.h"
#include "testutil.h"

#define T(c) CHECK((c), "%s", #c)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)(rng >> 32); }
static float frand(void) { return (float)((rnd() >> 8) / 16777216.0 * 2.0 - 1.0); }

static int native;

/* a weight of fmt [n][k]; scale bytes (E8M0) from sc(row, col block) */
typedef struct wbuf { dsv4k_weight w; uint8_t *d; void *s; } wbuf;

static wbuf make_w(int fmt, int64_t n, int64_t k, int e_lo, int e_hi)
{
    wbuf b;
    int64_t kb = (k + 127) / 128, nbk = (n + 127) / 128;
    size_t es = fmt == DSV4K_W_BF16 ? 2 : fmt == DSV4K_W_F32 ? 4 : 1;
    b.d = malloc((size_t)(n * k) * es + 8);
    b.s = malloc((size_t)(fmt == DSV4K_W_FP4 ? n * (k / 32) : nbk * kb * 4) + 8);
    for (int64_t i = 0; i < n * k * (int64_t)es; i++) b.d[i] = (uint8_t)rnd();
    if (fmt == DSV4K_W_BF16)
        for (int64_t i = 0; i < n * k; i++) {
            uint16_t h = dsv4k_f32_to_bf16(frand());
            memcpy(b.d + 2 * i, &h, 2);
        }
    if (fmt == DSV4K_W_F32)
        for (int64_t i = 0; i < n * k; i++) ((float *)b.d)[i] = frand();
    if (fmt == DSV4K_W_FP8 || fmt == DSV4K_W_FP8_F32S)
        for (int64_t i = 0; i < n * k; i++)
            if ((b.d[i] & 0x7f) == 0x7f) b.d[i] = 0x7e; /* no NaN codes */
    if (fmt == DSV4K_W_FP8)
        for (int64_t i = 0; i < nbk * kb; i++) ((uint8_t *)b.s)[i] = (uint8_t)(127 + e_lo + (int)(rnd() % (uint32_t)(e_hi - e_lo + 1)));
    if (fmt == DSV4K_W_FP8_F32S)
        for (int64_t i = 0; i < nbk * kb; i++) ((float *)b.s)[i] = frand() * 0.01f;
    if (fmt == DSV4K_W_FP4)
        for (int64_t i = 0; i < n * (k / 32); i++) ((uint8_t *)b.s)[i] = (uint8_t)(127 + e_lo + (int)(rnd() % (uint32_t)(e_hi - e_lo + 1)));
    dsv4k_weight w = { fmt, n, k, b.d, b.s, 0, 0 };
    b.w = w;
    return b;
}

static void free_w(wbuf *b) { free(b->d); free(b->s); }

/* Σ|a·w| per output (a: the activations the product sees) */
static void abs_sums(const dsv4k_weight *w, const float *x, int64_t ldx, int64_t m, int aq, double *sa)
{
    int64_t k = w->k, n = w->n;
    float *a = malloc((size_t)k * 4), *wr = malloc((size_t)(n * k) * 4);
    int8_t *ex = malloc((size_t)(k / 128 + 1));
    dsv4k_weight_rows_f32_ref(w, 0, n, wr);
    for (int64_t i = 0; i < m; i++) {
        if (aq && k % 128 == 0) dsv4k_act_quant_dq(x + i * ldx, k, a, ex, 0);
        else memcpy(a, x + i * ldx, (size_t)k * 4);
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t c = 0; c < k; c++) s += fabs((double)a[c] * wr[j * k + c]);
            sa[i * n + j] = s;
        }
    }
    free(a); free(wr); free(ex);
}

/* largest |y − ref| / bound over the outputs (≤ 1 passes); NaN where one
 * side is NaN and the other not */
static double worst(const float *y, int64_t ldy, const float *ref, const double *sa, int64_t m, int64_t n, int64_t k)
{
    const double u = 0x1p-24, g = (double)(k + 1) * u / (1 - (double)(k + 1) * u);
    double q = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double a = y[i * ldy + j], b = ref[i * n + j];
            if (isnan(a) || isnan(b)) {
                if (isnan(a) != isnan(b)) return NAN;
                continue;
            }
            if (isinf(a) || isinf(b)) {
                if (a != b) return NAN;
                continue;
            }
            double bound = g * sa[i * n + j] + 2.0 * (double)k * 0x1p-126;
            q = fmax(q, fabs(a - b) / bound);
        }
    return q;
}

static int same_bits(const float *a, const float *b, int64_t n)
{
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

static void counts(dsv4k_gemm *g, int64_t *bf, int64_t *f32)
{
    dsv4k_gemm_counts(g, bf, f32);
}

/* one product through the gemm with the bf16 route on, checked against the
 * reference and the bound; then the f32-only route for comparison.
 * expect: 1 every block bf16, 0 every block f32, 2 some of each */
static void check(dsv4k_gemm *g, const char *what, const dsv4k_weight *w, const float *x, int64_t m, int aq,
                  int expect)
{
    int64_t n = w->n, k = w->k, ldx = k + 3, ldy = n + 5;
    float *xs = malloc((size_t)(m * ldx) * 4), *y = malloc((size_t)(m * ldy) * 4), *yf = malloc((size_t)(m * ldy) * 4);
    float *ref = malloc((size_t)(m * n) * 4);
    double *sa = malloc((size_t)(m * n) * sizeof(double));
    for (int64_t i = 0; i < m; i++) {
        memcpy(xs + i * ldx, x + i * k, (size_t)k * 4);
        for (int c = 0; c < 3; c++) xs[i * ldx + k + c] = NAN; /* never read */
    }
    for (int64_t i = 0; i < m * ldy; i++) y[i] = yf[i] = -7.0f;
    dsv4k_linear_ref(w, x, k, m, ref, n, aq);
    abs_sums(w, x, k, m, aq, sa);
    int64_t b0, f0, b1, f1;
    dsv4k_gemm_set_bf16(g, 1);
    counts(g, &b0, &f0);
    int rc = dsv4k_gemm_run(g, w, xs, ldx, m, y, ldy, aq);
    counts(g, &b1, &f1);
    dsv4k_gemm_set_bf16(g, 0);
    int rc2 = dsv4k_gemm_run(g, w, xs, ldx, m, yf, ldy, aq);
    dsv4k_gemm_set_bf16(g, 1);
    int kept = 1;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = n; j < ldy; j++) kept &= y[i * ldy + j] == -7.0f && yf[i * ldy + j] == -7.0f;
    int64_t nbf = b1 - b0, nf = f1 - f0;
    if (!native) expect = 0;
    int route = expect == 1 ? nbf > 0 && nf == 0 : expect == 0 ? nbf == 0 && nf > 0 : nbf > 0 && nf > 0;
    double q = worst(y, ldy, ref, sa, m, n, k), qf = worst(yf, ldy, ref, sa, m, n, k);
    CHECK(rc == 0 && rc2 == 0 && kept, "%s: runs (%d, %d), columns beyond n untouched", what, rc, rc2);
    CHECK(route, "%s: route blocks bf16 %lld, f32 %lld (expected %s)", what, (long long)nbf, (long long)nf,
          expect == 1 ? "bf16 only" : expect == 0 ? "f32 only" : "both");
    CHECK(q <= 1.0, "%s m %lld n %lld k %lld: bf16 route error / bound %.3g", what, (long long)m, (long long)n,
          (long long)k, q);
    CHECK(qf <= 1.0, "%s: f32 route error / bound %.3g", what, qf);
    if (expect == 0) {
        int same = 1;
        for (int64_t i = 0; i < m; i++) same &= same_bits(y + i * ldy, yf + i * ldy, n);
        CHECK(same, "%s: refused, equals the f32 route bit for bit", what);
    }
    free(xs); free(y); free(yf); free(ref); free(sa);
}

static float *acts(int64_t m, int64_t k, float scale)
{
    float *x = malloc((size_t)(m * k) * 4);
    for (int64_t i = 0; i < m * k; i++) x[i] = frand() * scale;
    return x;
}

static void random_shapes(dsv4k_gemm *g)
{
    /* max_k 4096: f32 blocks of 128 rows, bf16 blocks of 256 rows at k = 4096 */
    struct { int fmt; int64_t m, n, k; } cs[] = {
        { DSV4K_W_FP8, 16, 1, 128 },    { DSV4K_W_FP8, 37, 33, 384 },   { DSV4K_W_FP4, 19, 300, 512 },
        { DSV4K_W_BF16, 23, 65, 256 },  { DSV4K_W_FP8, 64, 600, 4096 }, { DSV4K_W_FP4, 40, 520, 4096 },
        { DSV4K_W_FP4, 300, 70, 1024 }, { DSV4K_W_FP8, 129, 257, 896 },
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        wbuf b = make_w(cs[i].fmt, cs[i].n, cs[i].k, -12, -4);
        float *x = acts(cs[i].m, cs[i].k, 3.0f);
        /* a row of zeros and a row of tiny values (amax floor) among them */
        memset(x, 0, (size_t)cs[i].k * 4);
        if (cs[i].m > 2)
            for (int64_t c = 0; c < cs[i].k; c++) x[cs[i].k + c] = frand() * 1e-8f;
        char what[96];
        snprintf(what, sizeof what, "random fmt %d", cs[i].fmt);
        check(g, what, &b.w, x, cs[i].m, 1, 1);
        free(x);
        free_w(&b);
    }
    /* the primitive for a shape is made once; another M is another one */
    wbuf b = make_w(DSV4K_W_FP8, 200, 512, -10, -6);
    float *x = acts(48, 512, 1.0f), *y = malloc((size_t)(48 * 200) * 4);
    T(dsv4k_gemm_run(g, &b.w, x, 512, 48, y, 200, 1) == 0);
    int c0 = dsv4k_gemm_cached(g);
    T(dsv4k_gemm_run(g, &b.w, x, 512, 48, y, 200, 1) == 0 && dsv4k_gemm_cached(g) == c0);
    T(dsv4k_gemm_run(g, &b.w, x, 512, 47, y, 200, 1) == 0 && dsv4k_gemm_cached(g) == c0 + 1);
    free(x); free(y);
    free_w(&b);
}

/* weights whose scales sit at the edges of bf16's normal range */
static void edge_scales(dsv4k_gemm *g)
{
    /* FP8: nonzero e4m3 magnitudes span [2^-9, 1.75·2^8]: 2^e · that is
     * normal and finite for e in [-117, 119] */
    struct { int fmt, e; float xs; int expect; } cs[] = {
        { DSV4K_W_FP8, -117, 1e20f, 1 }, { DSV4K_W_FP8, -118, 1e20f, 0 }, { DSV4K_W_FP8, 119, 1e-9f, 1 },
        { DSV4K_W_FP8, 120, 1e-9f, 0 }, { DSV4K_W_FP4, -125, 1e20f, 1 }, { DSV4K_W_FP4, -126, 1e20f, 0 },
        { DSV4K_W_FP4, 125, 1e-9f, 1 }, { DSV4K_W_FP4, 126, 1e-9f, 0 }, { DSV4K_W_FP8, 128, 1.0f, 0 },
        { DSV4K_W_FP4, 128, 1.0f, 0 }, { DSV4K_W_FP4, -127, 1e20f, 0 },
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        int64_t m = 24, n = 40, k = 256;
        wbuf b = make_w(cs[i].fmt, n, k, cs[i].e, cs[i].e);
        float *x = acts(m, k, cs[i].xs);
        char what[96];
        snprintf(what, sizeof what, "fmt %d scale 2^%d", cs[i].fmt, cs[i].e);
        check(g, what, &b.w, x, m, 1, cs[i].expect);
        /* one nonzero weight per row: a single product, exact on both routes */
        uint8_t zero = 0;
        if (cs[i].fmt == DSV4K_W_FP8) {
            for (int64_t r = 0; r < n; r++)
                for (int64_t c = 0; c < k; c++)
                    if (c != (r * 7) % k) b.d[r * k + c] = zero;
        } else {
            for (int64_t r = 0; r < n; r++)
                for (int64_t c = 0; c < k; c += 2) {
                    uint8_t *p = b.d + r * (k / 2) + c / 2;
                    int keep = (r * 7) % k;
                    *p = (uint8_t)((c == keep ? *p & 0x0f : 0) | (c + 1 == keep ? *p & 0xf0 : 0));
                }
        }
        float *y = malloc((size_t)(m * n) * 4), *ref = malloc((size_t)(m * n) * 4);
        dsv4k_linear_ref(&b.w, x, k, m, ref, n, 1);
        T(dsv4k_gemm_run(g, &b.w, x, k, m, y, n, 1) == 0);
        int same = 1;
        for (int64_t j = 0; j < m * n; j++) same &= y[j] == ref[j] || (isnan(y[j]) && isnan(ref[j]));
        CHECK(same, "%s, one weight per row: equals the reference bit for bit", what);
        free(y); free(ref);
        free(x);
        free_w(&b);
    }
    /* one block of rows refused among accepted ones: FP8 row blocks of 128
     * with the middle one's scales at 2^-120 (k = 4096: bf16 blocks of 256
     * rows, so the refused one is split into the f32 route's blocks) */
    wbuf b = make_w(DSV4K_W_FP8, 700, 4096, -9, -5);
    for (int64_t c = 0; c < 32; c++) ((uint8_t *)b.s)[3 * 32 + c] = 127 - 120;
    float *x = acts(33, 4096, 100.0f);
    check(g, "fp8 with one row block at 2^-120", &b.w, x, 33, 1, 2);
    free(x);
    free_w(&b);
}

/* activations: extreme magnitudes go bf16; non-finite ones refuse the call */
static void edge_acts(dsv4k_gemm *g)
{
    int64_t m = 20, n = 50, k = 384;
    wbuf b = make_w(DSV4K_W_FP4, n, k, -8, -2);
    float *x = acts(m, k, 1.0f);
    for (int64_t c = 0; c < k; c++) {
        x[c] *= 1e36f;          /* scale 2^112 */
        x[k + c] *= 1e-8f;      /* below the amax floor: scale 2^-22, e4m3 subnormals */
    }
    x[2 * k + 5] = 1e38f;       /* scale 2^118 */
    check(g, "activations at 1e36, 1e-8 and 1e38", &b.w, x, m, 1, 1);
    x[3 * k + 100] = INFINITY;
    check(g, "an infinite activation", &b.w, x, m, 1, 0);
    /* a NaN input: bf16 when its quantised block is finite (the route sees
     * only the quantised values), else f32 */
    x[3 * k + 100] = NAN;
    float *q = malloc((size_t)k * 4);
    int8_t ex[8];
    dsv4k_act_quant_dq(x + 3 * k, k, q, ex, 0);
    int fin = 1;
    for (int64_t c = 0; c < k; c++) fin &= isfinite(q[c]);
    check(g, fin ? "a NaN input quantised to finite values" : "a NaN activation", &b.w, x, m, 1, fin);
    free(q);
    free(x);
    free_w(&b);
}

/* what the route refuses as a whole */
static void refused(dsv4k_gemm *g)
{
    int64_t m = 30, n = 70;
    float *x = acts(m, 512, 2.0f);
    wbuf a = make_w(DSV4K_W_FP8, n, 512, -9, -5);
    check(g, "float numerics (FP8)", &a.w, x, m, 0, 0);
    wbuf b = make_w(DSV4K_W_BF16, n, 512, 0, 0);
    check(g, "BF16 weights, activations not quantised", &b.w, x, m, 0, 0);
    check(g, "BF16 weights, quantised activations", &b.w, x, m, 1, 1);
    wbuf c = make_w(DSV4K_W_F32, n, 512, 0, 0);
    check(g, "F32 weights", &c.w, x, m, 1, 0);
    wbuf d = make_w(DSV4K_W_FP8_F32S, n, 512, 0, 0);
    check(g, "F32-scaled FP8", &d.w, x, m, 1, 0);
    wbuf e = make_w(DSV4K_W_FP4, n, 480, -9, -5);
    check(g, "k % 128 != 0", &e.w, x, m, 1, 0);
    /* switched off: f32 for everything */
    float *y = malloc((size_t)(m * n) * 4);
    int64_t b0, f0, b1, f1;
    dsv4k_gemm_set_bf16(g, 0);
    counts(g, &b0, &f0);
    T(dsv4k_gemm_run(g, &a.w, x, 512, m, y, n, 1) == 0);
    counts(g, &b1, &f1);
    CHECK(b1 == b0 && f1 > f0, "bf16 route off: f32 only (%lld bf16 blocks)", (long long)(b1 - b0));
    dsv4k_gemm_set_bf16(g, 1);
    /* bigger than made for: refused, y untouched */
    for (int64_t i = 0; i < m * n; i++) y[i] = -7.0f;
    dsv4k_gemm *small = dsv4k_gemm_create(2, 4096, m - 1);
    int kept = 1;
    if (CHECK(small != NULL, "small gemm")) {
        T(dsv4k_gemm_run(small, &a.w, x, 512, m, y, n, 1) == -1);
        for (int64_t i = 0; i < m * n; i++) kept &= y[i] == -7.0f;
        CHECK(kept, "m above the maximum: y untouched");
    }
    dsv4k_gemm_free(small);
    free(y);
    free(x);
    free_w(&a); free_w(&b); free_w(&c); free_w(&d); free_w(&e);
}

static void conversion(void)
{
    float v[40];
    uint16_t h[40];
    for (int n = 1; n <= 40; n++) {
        for (int i = 0; i < n; i++) v[i] = dsv4k_round_bf16(frand() * ldexpf(1.0f, (int)(rnd() % 200) - 100));
        v[0] = -0.0f;
        int ok = dsv4k_gemm_to_bf16(v, n, h) == 0;
        for (int i = 0; i < n; i++) ok &= dsv4k_bf16_to_f32(h[i]) == v[i] && (h[i] >> 15) == (dsv4k_f32_bits(v[i]) >> 31);
        CHECK(ok, "bf16 values and zeros convert exactly (n %d)", n);
        float bad[5] = { 1.0f + 0x1p-10f, 0x1p-130f, INFINITY, NAN, -0x1p-149f };
        for (int b = 0; b < 5; b++) {
            int at = (int)(rnd() % (uint32_t)n);
            float keep = v[at];
            v[at] = bad[b];
            CHECK(dsv4k_gemm_to_bf16(v, n, h) == -1, "n %d: value %g at %d refused", n, (double)bad[b], at);
            v[at] = keep;
        }
    }
    /* smallest and largest normal bf16 */
    float edge[3] = { 0x1p-126f, -0x1p-126f, dsv4k_bf16_to_f32(0x7f7f) };
    CHECK(dsv4k_gemm_to_bf16(edge, 3, h) == 0 && h[0] == 0x0080 && h[1] == 0x8080 && h[2] == 0x7f7f,
          "the normal range's ends convert");
}

/* activations that are not quantised but are bf16 values already (what
 * reference numerics gives wo_a and the compressors): the bf16 route takes
 * them; one value that is not a bf16 sends the call to f32 */
static void unquantised_bf16(dsv4k_gemm *g)
{
    int64_t m = 33, n = 300;
    int fmts[3] = { DSV4K_W_FP8, DSV4K_W_FP4, DSV4K_W_BF16 };
    int64_t ks[2] = { 512, 480 };
    for (int f = 0; f < 3; f++)
        for (int ki = 0; ki < 2; ki++) {
            int64_t k = ks[ki];
            if (fmts[f] == DSV4K_W_FP8 && k % 128) continue;
            wbuf b = make_w(fmts[f], n, k, -9, -3);
            float *x = acts(m, k, 5.0f);
            for (int64_t i = 0; i < m * k; i++) x[i] = dsv4k_round_bf16(x[i]);
            memset(x + k, 0, (size_t)k * 4); /* a row of zeros */
            char what[96];
            snprintf(what, sizeof what, "fmt %d k %lld, unquantised bf16 activations", fmts[f], (long long)k);
            check(g, what, &b.w, x, m, 0, 1);
            x[(m - 1) * k + 7] = 1.0f + 0x1p-12f; /* not a bf16 */
            snprintf(what, sizeof what, "fmt %d k %lld, one activation not a bf16", fmts[f], (long long)k);
            check(g, what, &b.w, x, m, 0, 0);
            x[(m - 1) * k + 7] = 0x1p-130f; /* a bf16, but subnormal */
            snprintf(what, sizeof what, "fmt %d k %lld, one subnormal activation", fmts[f], (long long)k);
            check(g, what, &b.w, x, m, 0, 0);
            free(x);
            free_w(&b);
        }
}

/* the one-pass AVX-512 decoder against its scalar twin: every code, every
 * scale byte, interleaved rows, views */
static void decode_twin(void)
{
    if (!dsv4k_have_avx512()) {
        printf("note: no AVX-512 here: dsv4k_decode_row_bf16_avx512 not checked\n");
        return;
    }
    dsv4k_tables_init();
    int fmts[3] = { DSV4K_W_FP8, DSV4K_W_FP4, DSV4K_W_BF16 };
    int64_t taken = 0, refused_both = 0, refused_fast = 0, bad = 0, rows = 0;
    int64_t tiles = 0, tiles_taken = 0, tiles_bad = 0;
    for (int f = 0; f < 3; f++)
        for (int ilv = 0; ilv <= (fmts[f] == DSV4K_W_FP4 ? 0 : 1); ilv++) {
            /* FP4: 69 scales a row (the decoder checks them 64 at a time,
             * then one by one) */
            int64_t n = 260, k = fmts[f] == DSV4K_W_FP8 ? 768 : fmts[f] == DSV4K_W_FP4 ? 2208 : 512;
            wbuf b = make_w(fmts[f], n, k, -3, 3);
            uint8_t *d = b.d;
            size_t es = fmts[f] == DSV4K_W_BF16 ? 2 : 1;
            if (fmts[f] == DSV4K_W_FP8) {
                /* every code incl. NaN in rows 200.., every scale byte 0..255
                 * over the (2 × 6) blocks and the rows below 128 kept in range */
                for (int64_t i = 0; i < n * k; i++) d[i] = (uint8_t)(i * 7 + i / 256);
                for (int64_t r = 0; r < 200; r++)
                    for (int64_t c = 0; c < k; c++)
                        if ((d[r * k + c] & 0x7f) == 0x7f) d[r * k + c] ^= 1;
                uint8_t *sc = b.s;
                for (int i = 0; i < 6; i++) sc[i] = (uint8_t)(127 - 3 + 2 * i);
                for (int i = 6; i < 18; i++) sc[i] = (uint8_t)(rnd() & 0xff);
                sc[6] = 27; sc[7] = 26; sc[8] = 227; sc[9] = 228; sc[10] = 0; sc[11] = 255;
            }
            if (fmts[f] == DSV4K_W_FP4) {
                uint8_t *sc = b.s;
                /* rows below 200: every in-range byte (27 .. 227), then
                 * rows 30 .. 69 one byte out of range (26, 228, 0 or 255)
                 * somewhere in the row, from row 200 any byte */
                int64_t ns = k / 32;
                for (int64_t i = 0; i < n * ns; i++) sc[i] = (uint8_t)(i < 200 * ns ? 127 + (int)(i % 201) - 100 : i & 0xff);
                static const uint8_t far[4] = { 26, 228, 0, 255 };
                for (int64_t r = 30; r < 70; r++) sc[r * ns + (r * 7) % ns] = far[r % 4];
            }
            if (fmts[f] == DSV4K_W_BF16) {
                /* random bits: subnormals, infinities and NaNs in some rows */
                uint16_t *h = (uint16_t *)(void *)d;
                for (int64_t r = 0; r < n; r++)
                    for (int64_t c = 0; c < k; c++)
                        if (r % 5 == 3) h[r * k + c] = (uint16_t)rnd();
                h[7 * k + 3] = 0x0001;  /* subnormal */
                h[11 * k + 500] = 0x7f80; /* +Inf */
                h[13 * k + 31] = 0x8000; /* -0: taken */
            }
            uint8_t *store = d;
            if (ilv) {
                store = malloc((size_t)(n * k) * es);
                b.w.ilv = dsv4k_repack_rows(store, d, n, k * (int64_t)es);
                b.w.w = store;
            }
            float *tmp = malloc((size_t)k * 4);
            uint16_t *h1 = malloc((size_t)k * 2), *h2 = malloc((size_t)k * 2);
            for (int view = 0; view <= 1; view++) {
                dsv4k_weight w = b.w;
                if (view) { w.row0 = 5; w.n = n - 9; }
                for (int64_t r = 0; r < w.n; r++) {
                    memset(h1, 0xa5, (size_t)k * 2);
                    int a = dsv4k_decode_row_bf16_avx512(&w, r, h1);
                    int e = dsv4k_decode_row_bf16_ref(&w, r, tmp, h2);
                    rows++;
                    if (a == 0) {
                        taken++;
                        int wrong = e != 0 || memcmp(h1, h2, (size_t)k * 2) != 0;
                        if (wrong && bad < 3) {
                            int64_t c = 0;
                            while (c < k && h1[c] == h2[c]) c++;
                            printf("# fmt %d ilv %d view %d row %lld: twin %d, col %lld: %04x vs %04x byte %02x s %02x tmp %g\n", fmts[f], ilv, view,
                                   (long long)r, e, (long long)c, c < k ? h1[c] : 0, c < k ? h2[c] : 0, d[r * k + c], ((uint8_t *)w.s)[c / 128], (double)tmp[c]);
                        }
                        bad += wrong;
                    } else if (e == 0) {
                        refused_fast++; /* allowed: scales outside 2^±100 only */
                        int64_t rr = r + w.row0;
                        int far = 0;
                        if (fmts[f] == DSV4K_W_FP4)
                            for (int64_t c = 0; c < k / 32; c++) {
                                int x = ((uint8_t *)w.s)[rr * (k / 32) + c] - 127;
                                far |= x < -100 || x > 100;
                            }
                        if (fmts[f] == DSV4K_W_FP8)
                            for (int64_t c = 0; c < k / 128; c++) {
                                int x = ((uint8_t *)w.s)[(rr / 128) * (k / 128) + c] - 127;
                                far |= x < -100 || x > 100;
                            }
                        if (!far && bad < 3) printf("# fmt %d ilv %d view %d row %lld: refused, twin takes it\n", fmts[f], ilv, view, (long long)r);
                        bad += !far;
                    } else {
                        refused_both++;
                    }
                }
                /* 16 rows at a time into the blocked layout (pair p of row
                 * i at (p / 16)·kstep + (p % 16)·ldo + i; ldo 64, kstep
                 * 2048 as oneDNN lays out 64-output blocks), ragged groups
                 * too: taken exactly when the row decoder takes every row,
                 * then its bits, zeros in the rows past rn */
                int64_t ldo = 64, kstep = 2048;
                uint32_t *o = malloc((size_t)(k / 32 * kstep) * 4);
                for (int64_t r0 = 0; r0 < w.n; r0 += 16) {
                    int rn = w.n - r0 < 16 ? (int)(w.n - r0) : (int)(r0 / 16 % 5 == 2 ? r0 / 16 % 17 : 16);
                    int all = 1, wrong = 0;
                    memset(o, 0xa5, (size_t)(k / 32 * kstep) * 4);
                    int a = dsv4k_decode_tile_bf16_avx512(&w, r0, rn, o + 16 * (r0 / 16 % 4), ldo, kstep);
                    for (int i = 0; i < 16; i++) {
                        int ok = i >= rn || dsv4k_decode_row_bf16_avx512(&w, r0 + i, h1) == 0;
                        all &= ok;
                        if (a || !ok) continue;
                        for (int64_t pp = 0; pp < k / 2; pp++) {
                            uint32_t want = i >= rn ? 0 : (uint32_t)h1[2 * pp] | (uint32_t)h1[2 * pp + 1] << 16;
                            wrong |= o[(pp / 16) * kstep + (pp % 16) * ldo + 16 * (r0 / 16 % 4) + i] != want;
                        }
                    }
                    tiles++;
                    tiles_taken += a == 0;
                    tiles_bad += wrong || (a == 0) != all;
                }
                free(o);
            }
            if (ilv) free(store);
            free(tmp); free(h1); free(h2);
            free_w(&b);
        }
    CHECK(bad == 0 && taken > 0 && refused_both > 0 && refused_fast > 0,
          "one-pass bf16 decoding = the twin: %lld rows, %lld taken (same bits), %lld refused by both, %lld left "
          "to the twin (scales beyond 2^±100), %lld wrong", (long long)rows, (long long)taken, (long long)refused_both,
          (long long)refused_fast, (long long)bad);
    CHECK(tiles_bad == 0 && tiles_taken > 10 && tiles_taken < tiles,
          "16-row bf16 decoding into the blocked layout = the row decoder: %lld tiles, %lld taken, %lld wrong",
          (long long)tiles, (long long)tiles_taken, (long long)tiles_bad);
}

/* the f32 route's transposition of 16 decoded rows: the register tiles
 * against the scalar loop, at widths with and without a ragged tail and
 * into blocks wider than 16 rows (the column stride nb) */
static void transpose(void)
{
    int bad = 0, cases = 0;
    const int64_t ks[5] = { 16, 48, 129, 1024, 4100 };
    for (int a = 0; a < 5; a++)
        for (int64_t nb = 16; nb <= 53; nb += 37) {
            int64_t k = ks[a];
            float *t = malloc((size_t)(16 * k) * 4), *o1 = malloc((size_t)(k * nb) * 4), *o2 = malloc((size_t)(k * nb) * 4);
            for (int64_t i = 0; i < 16 * k; i++) t[i] = (float)i + 0.5f;
            for (int64_t i = 0; i < k * nb; i++) o1[i] = o2[i] = -1.0f;
            for (int rn = 15; rn <= 16; rn++) {
                dsv4k_gemm_transpose_rows(t, k, rn, o1, nb, 0);
                dsv4k_gemm_transpose_rows(t, k, rn, o2, nb, 1);
                int ok = memcmp(o1, o2, (size_t)(k * nb) * 4) == 0;
                /* and the scalar loop itself: column c, row i */
                for (int64_t c = 0; c < k; c += 7) ok &= o1[c * nb + rn - 1] == t[(rn - 1) * k + c] && (nb == rn || o1[c * nb + nb - 1] == -1.0f);
                bad += !ok;
                cases++;
            }
            free(t); free(o1); free(o2);
        }
    CHECK(bad == 0 && cases == 20, "the f32 route's 16-row transposition = the scalar loop (%d of %d cases differ)", bad, cases);
}

int main(void)
{
    native = dsv4k_gemm_bf16_native();
    if (!native) printf("note: oneDNN has no native bf16 here: only the f32 route and the refusals are checked\n");
    conversion();
    decode_twin();
    transpose();
    dsv4k_gemm *g = dsv4k_gemm_create(2, 4096, 512);
    if (CHECK(g != NULL, "oneDNN gemm created")) {
        random_shapes(g);
        int64_t packed = dsv4k_gemm_packed_blocks(g);
        CHECK(!native || packed > 0, "bf16 blocks written in oneDNN's blocked layout (%lld)", (long long)packed);
        /* and in the plain layout, the route's other form */
        dsv4k_gemm_set_packing(g, 0);
        random_shapes(g);
        CHECK(dsv4k_gemm_packed_blocks(g) == packed, "packing off: plain blocks only");
        dsv4k_gemm_set_packing(g, 1);
        edge_scales(g);
        edge_acts(g);
        int64_t p0 = dsv4k_gemm_packed_blocks(g);
        refused(g);
        CHECK(!native || dsv4k_gemm_packed_blocks(g) > p0, "f32 blocks written in oneDNN's blocked layout (%lld)",
              (long long)(dsv4k_gemm_packed_blocks(g) - p0));
        dsv4k_gemm_set_packing(g, 0);
        refused(g);
        dsv4k_gemm_set_packing(g, 1);
        unquantised_bf16(g);
    }
    dsv4k_gemm_free(g);
    /* one thread: the f32 route's blocks stay row-major there */
    g = dsv4k_gemm_create(1, 4096, 512);
    if (CHECK(g != NULL, "oneDNN gemm created (one thread)")) {
        refused(g);
        dsv4k_gemm_set_packing(g, 0);
        refused(g);
        dsv4k_gemm_set_packing(g, 1);
        unquantised_bf16(g);
    }
    dsv4k_gemm_free(g);
    return test_summary();
}
