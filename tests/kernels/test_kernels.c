/*
 * tests/kernels/test_kernels.c — numeric formats bit-exactly against spec
 * §3.3/§4 (hand-computed values), the scalar reference linear operator
 * against a direct per-element evaluation, and the thread pool.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kernels.h"
#include "linear.h"
#include "gemm/gemm.h"
#ifdef DSV4_NO_ONEDNN
#define ONEDNN 0 /* -Donednn=false: the route is left out */
#else
#define ONEDNN 1
#endif
#include "x86/gemv.h"
#include "ops.h"
#include "pool.h"
#include "testutil.h"
#include "graph/forward.h"

#define T(c) CHECK((c), "%s", #c)

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)(rng >> 32); }
static float frand(void) { return (float)((rnd() >> 8) / 16777216.0 * 2.0 - 1.0); }

static void formats(void)
{
    /* e4m3fn: every code, from its fields (spec §3.3) */
    int bad = 0;
    for (int c = 0; c < 256; c++) {
        float v = dsv4k_e4m3_to_f32((uint8_t)c);
        int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
        float want = e == 0 ? ldexpf((float)m, -9) : ldexpf(1.0f + m / 8.0f, e - 7);
        if (s) want = -want;
        if ((c & 0x7f) == 0x7f) { if (!isnan(v)) bad++; }
        else if (v != want || (v == 0 && !!signbit(v) != s)) bad++;
    }
    CHECK(bad == 0, "e4m3 decode: %d of 256 codes wrong", bad);
    T(dsv4k_e4m3_to_f32(0x7e) == 448.0f);
    T(dsv4k_e4m3_to_f32(0x01) == ldexpf(1, -9));
    /* e4m3 rounding: ties to even at several binades, saturation */
    uint8_t code;
    T(dsv4k_e4m3_round(1.0625f, &code) == 1.0f);      /* halfway 1 and 1.125 -> even (1) */
    T(dsv4k_e4m3_round(1.1875f, NULL) == 1.25f);      /* halfway 1.125 and 1.25 -> even (1.25) */
    T(dsv4k_e4m3_round(17.0f, NULL) == 16.0f);        /* halfway 16 and 18 -> 16 */
    T(dsv4k_e4m3_round(19.0f, NULL) == 20.0f);        /* halfway 18 and 20 -> 20 */
    T(dsv4k_e4m3_round(-1.0625f, NULL) == -1.0f);
    T(dsv4k_e4m3_round(448.0f, &code) == 448.0f && code == 0x7e);
    T(dsv4k_e4m3_round(ldexpf(1, -10), NULL) == 0.0f); /* halfway 0 and 2^-9 -> 0 */
    T(dsv4k_e4m3_round(ldexpf(3, -10), NULL) == ldexpf(2, -9)); /* 1.5 quanta -> 2 */
    /* e2m1 table and ties */
    static const float e2m1[8] = { 0, 0.5f, 1, 1.5f, 2, 3, 4, 6 };
    bad = 0;
    for (int c = 0; c < 16; c++)
        if (dsv4k_e2m1_to_f32((uint8_t)c) != (c & 8 ? -e2m1[c & 7] : e2m1[c & 7])) bad++;
    CHECK(bad == 0, "e2m1 decode: %d codes wrong", bad);
    struct { float in, out; } ties[] = { { 0.25f, 0 }, { 0.75f, 1 }, { 1.25f, 1 }, { 1.75f, 2 }, { 2.5f, 2 },
                                         { 3.5f, 4 }, { 5.0f, 4 }, { 6.0f, 6 }, { -0.75f, -1 }, { -5.0f, -4 } };
    for (size_t i = 0; i < sizeof ties / sizeof ties[0]; i++)
        CHECK(dsv4k_e2m1_round(ties[i].in, NULL) == ties[i].out, "e2m1 round %g -> %g, want %g", ties[i].in,
              dsv4k_e2m1_round(ties[i].in, NULL), ties[i].out);
    T(dsv4k_e2m1_round(3.0f, &code) == 3.0f && code == 5);
    T(dsv4k_e2m1_round(-6.0f, &code) == -6.0f && code == 15);
    /* E8M0 */
    T(dsv4k_e8m0_to_f32(127) == 1.0f && dsv4k_e8m0_to_f32(130) == 8.0f && dsv4k_e8m0_to_f32(120) == ldexpf(1, -7));
    T(isnan(dsv4k_e8m0_to_f32(255)));
    /* log2_ceil: exact powers of two vs one ulp above */
    for (int e = -20; e <= 20; e++) {
        float p = ldexpf(1, e);
        CHECK(dsv4k_log2_ceil(p) == e && dsv4k_log2_ceil(nextafterf(p, INFINITY)) == e + 1, "log2_ceil 2^%d", e);
    }
    /* activation quantisation: scale from amax * fp32(1/448), amax floor 1e-4 */
    float x[128], q[128];
    int8_t ex[1];
    for (int i = 0; i < 128; i++) x[i] = 0;
    x[5] = 448.0f;
    dsv4k_act_quant_fp8_ref(x, 128, 128, q, ex);
    T(ex[0] == 0 && q[5] == 448.0f);
    x[5] = 449.0f; /* needs scale 2 */
    dsv4k_act_quant_fp8_ref(x, 128, 128, q, ex);
    T(ex[0] == 1 && q[5] == dsv4k_e4m3_round(224.5f, NULL));
    memset(x, 0, sizeof x);
    dsv4k_act_quant_fp8_ref(x, 128, 128, q, ex); /* all zero: floor 1e-4 -> 2^ceil(log2(1e-4/448)) */
    T(ex[0] == dsv4k_log2_ceil(1e-4f * (1.0f / 448.0f)) && q[0] == 0.0f);
    /* FP8 / FP4 simulation round trip: quantised values are fixed points */
    float y[64];
    for (int i = 0; i < 64; i++) y[i] = frand() * 10;
    dsv4k_fp8_sim_ref(y, 64, 64);
    float z[64];
    memcpy(z, y, sizeof z);
    dsv4k_fp8_sim_ref(z, 64, 64);
    T(memcmp(y, z, sizeof z) == 0);
    for (int i = 0; i < 64; i++) y[i] = frand();
    dsv4k_fp4_sim_ref(y, 64, 32);
    memcpy(z, y, sizeof z);
    dsv4k_fp4_sim_ref(z, 64, 32);
    T(memcmp(y, z, sizeof z) == 0);
}

/* weight element by direct decoding, independent of the reference's helper */
static double w_at(const dsv4k_weight *w, int64_t r, int64_t c)
{
    int64_t kb = (w->k + 127) / 128;
    const uint8_t *b = w->w;
    switch (w->fmt) {
    case DSV4K_W_BF16: { uint16_t h; memcpy(&h, b + 2 * (r * w->k + c), 2); return dsv4k_bf16_to_f32(h); }
    case DSV4K_W_F32: return ((const float *)w->w)[r * w->k + c];
    case DSV4K_W_FP8:
        return (double)dsv4k_e4m3_to_f32(b[r * w->k + c]) * ldexp(1, ((const uint8_t *)w->s)[(r / 128) * kb + c / 128] - 127);
    case DSV4K_W_FP8_F32S:
        return (double)dsv4k_e4m3_to_f32(b[r * w->k + c]) * ((const float *)w->s)[(r / 128) * kb + c / 128];
    case DSV4K_W_FP4: {
        uint8_t v = b[r * (w->k / 2) + c / 2];
        return (double)dsv4k_e2m1_to_f32(c % 2 ? v >> 4 : v & 15) *
               ldexp(1, ((const uint8_t *)w->s)[r * (w->k / 32) + c / 32] - 127);
    }
    }
    return NAN;
}

/*
 * The AVX-512 row kernel called directly on rows [0, n/2) and [n/2, n) of
 * w (activations prepared as dsv4k_linear does: quantised when aq, split
 * even/odd for FP4 and BF16), against the reference's y: the build of the
 * same source on SIMDe's portable intrinsics (any x86-64), and the native
 * build where the CPU has AVX-512.
 */
typedef int (*rows_fn)(const dsv4k_weight *, int64_t, int64_t, const float *, int64_t, int64_t, float *, int64_t);

static void rows512_case(const dsv4k_weight *w, const float *x, int64_t m, int aq, const float *y, const double *sabs)
{
    int64_t n = w->n, k = w->k;
    rows_fn fns[2] = { NULL, NULL };
    const char *names[2] = { "AVX-512 (SIMDe emulation)", "AVX-512 (native)" };
#ifdef DSV4K_HAVE_EMUL512
    fns[0] = dsv4k_rows_avx512_emul;
#endif
    if (dsv4k_have_avx512()) fns[1] = dsv4k_rows_avx512;
    float *in = malloc((size_t)(m * k) * 4), *xs = malloc((size_t)(m * k) * 4), *y4 = malloc((size_t)(m * n) * 4);
    int8_t *ex = malloc((size_t)(k / 128 + 1));
    for (int64_t i = 0; i < m; i++) {
        if (aq && k % 128 == 0) dsv4k_act_quant_dq(x + i * k, k, in + i * k, ex, 0);
        else memcpy(in + i * k, x + i * k, (size_t)k * 4);
        if (w->fmt == DSV4K_W_FP4 || w->fmt == DSV4K_W_BF16) {
            if (k % 32 == 0) dsv4k_split_even_odd(in + i * k, k, xs + i * k);
        } else {
            memcpy(xs + i * k, in + i * k, (size_t)k * 4);
        }
    }
    int takes = w->fmt == DSV4K_W_FP8 || w->fmt == DSV4K_W_FP8_F32S ? k % 128 == 0
              : w->fmt == DSV4K_W_FP4 || w->fmt == DSV4K_W_BF16 ? k % 32 == 0 : 0;
    for (int f = 0; f < 2; f++) {
        if (!fns[f]) continue;
        for (int64_t i = 0; i < m * n; i++) y4[i] = -7.0f;
        int rc1 = fns[f](w, 0, n / 2, xs, k, m, y4, n), rc2 = fns[f](w, n / 2, n, xs, k, m, y4, n);
        if (!takes) {
            int kept = 1;
            for (int64_t i = 0; i < m * n; i++) kept &= y4[i] == -7.0f;
            CHECK(rc1 == -1 && rc2 == -1 && kept, "%s declines fmt %d k %lld and writes nothing", names[f], w->fmt,
                  (long long)k);
            continue;
        }
        double md = 0;
        for (int64_t i = 0; i < m * n; i++) md = fmax(md, fabs((double)y4[i] - y[i]) / (sabs[i] + 1e-30));
        CHECK(rc1 == 0 && rc2 == 0 && md < 1e-5, "%s rows vs linear_ref fmt %d m %lld n %lld k %lld aq %d: rel diff %.3g",
              names[f], w->fmt, (long long)m, (long long)n, (long long)k, aq, md);
    }
    free(in); free(xs); free(y4); free(ex);
}

static void linear_case(int fmt, int64_t m, int64_t n, int64_t k, int aq)
{
    int64_t kb = (k + 127) / 128, nb = (n + 127) / 128;
    size_t wbytes = fmt == DSV4K_W_BF16 ? 2 : fmt == DSV4K_W_F32 ? 4 : 1;
    uint8_t *wd = malloc((size_t)(n * k) * wbytes + 8);
    void *sd = malloc((size_t)(fmt == DSV4K_W_FP4 ? n * (k / 32) : nb * kb * 4) + 8);
    for (int64_t i = 0; i < n * k * (int64_t)wbytes; i++) wd[i] = (uint8_t)rnd();
    if (fmt == DSV4K_W_BF16)
        for (int64_t i = 0; i < n * k; i++) { uint16_t h = dsv4k_f32_to_bf16(frand()); memcpy(wd + 2 * i, &h, 2); }
    if (fmt == DSV4K_W_F32)
        for (int64_t i = 0; i < n * k; i++) ((float *)wd)[i] = frand();
    if (fmt == DSV4K_W_FP8 || fmt == DSV4K_W_FP8_F32S)
        for (int64_t i = 0; i < n * k; i++) if ((wd[i] & 0x7f) == 0x7f) wd[i] = 0x7e; /* no NaN codes */
    if (fmt == DSV4K_W_FP8)
        for (int64_t i = 0; i < nb * kb; i++) ((uint8_t *)sd)[i] = (uint8_t)(120 + rnd() % 8);
    if (fmt == DSV4K_W_FP8_F32S)
        for (int64_t i = 0; i < nb * kb; i++) ((float *)sd)[i] = frand() * 0.01f;
    if (fmt == DSV4K_W_FP4)
        for (int64_t i = 0; i < n * (k / 32); i++) ((uint8_t *)sd)[i] = (uint8_t)(120 + rnd() % 8);
    dsv4k_weight w = { fmt, n, k, wd, sd, 0, 0 };
    float *x = malloc((size_t)(m * k) * 4), *y = malloc((size_t)(m * n) * 4), *a = malloc((size_t)k * 4);
    double *sabs = malloc((size_t)(m * n) * sizeof(double));
    int8_t ex[64];
    for (int64_t i = 0; i < m * k; i++) x[i] = frand() * 3;
    dsv4k_linear_ref(&w, x, k, m, y, n, aq);
    int bad = 0;
    for (int64_t i = 0; i < m; i++) {
        if (aq) {
            dsv4k_act_quant_fp8_ref(x + i * k, k, 128, a, ex);
            for (int64_t c = 0; c < k; c++) a[c] = ldexpf(a[c], ex[c / 128]);
        } else {
            memcpy(a, x + i * k, (size_t)k * 4);
        }
        for (int64_t j = 0; j < n; j++) {
            double s = 0, sa = 0;
            for (int64_t c = 0; c < k; c++) { double p = (double)a[c] * w_at(&w, j, c); s += p; sa += fabs(p); }
            if (fabs(y[i * n + j] - s) > 1e-6 * sa + 1e-30) bad++;
            sabs[i * n + j] = sa;
        }
    }
    CHECK(bad == 0, "linear_ref fmt %d m %lld n %lld k %lld aq %d: %d outputs off", fmt, (long long)m, (long long)n,
          (long long)k, aq, bad);
    /* the optimised twin (2 threads) against the reference, and a row view */
    dsv4k_pool *pl = dsv4k_pool_create(2);
    dsv4k_linear_ctx *lc = dsv4k_linear_ctx_create(pl, k, m);
    float *y2 = malloc((size_t)(m * n) * 4);
    T(lc && dsv4k_linear(lc, &w, x, k, m, y2, n, aq) == 0);
    double md = 0;
    for (int64_t i = 0; i < m * n; i++) md = fmax(md, fabs((double)y2[i] - y[i]) / (sabs[i] + 1e-30));
    CHECK(md < 1e-5, "linear vs linear_ref fmt %d m %lld n %lld k %lld aq %d (%s): rel diff %.3g", fmt, (long long)m,
          (long long)n, (long long)k, aq, dsv4k_have_avx2() ? "AVX2 where it applies" : "portable", md);
    /* the portable kernel as well, where AVX2 took the case above */
    dsv4k_linear_set_isa(lc, 0);
    T(dsv4k_linear(lc, &w, x, k, m, y2, n, aq) == 0);
    md = 0;
    for (int64_t i = 0; i < m * n; i++) md = fmax(md, fabs((double)y2[i] - y[i]) / (sabs[i] + 1e-30));
    CHECK(md < 1e-5, "portable linear vs linear_ref fmt %d: rel diff %.3g", fmt, md);
    /* AVX2 alone, where AVX-512 took the first case */
    if (dsv4k_have_avx2()) {
        dsv4k_linear_set_isa(lc, DSV4K_ISA_AVX2);
        T(dsv4k_linear(lc, &w, x, k, m, y2, n, aq) == 0);
        md = 0;
        for (int64_t i = 0; i < m * n; i++) md = fmax(md, fabs((double)y2[i] - y[i]) / (sabs[i] + 1e-30));
        CHECK(md < 1e-5, "AVX2 linear vs linear_ref fmt %d m %lld k %lld aq %d: rel diff %.3g", fmt, (long long)m,
              (long long)k, aq, md);
        /* and the f32 kernels where those for e4m3 activations took the case */
        dsv4k_linear_set_intq(lc, 0);
        T(dsv4k_linear(lc, &w, x, k, m, y2, n, aq) == 0);
        md = 0;
        for (int64_t i = 0; i < m * n; i++) md = fmax(md, fabs((double)y2[i] - y[i]) / (sabs[i] + 1e-30));
        CHECK(md < 1e-5, "AVX2 linear (f32 kernels) vs linear_ref fmt %d m %lld aq %d: rel diff %.3g", fmt,
              (long long)m, aq, md);
        dsv4k_linear_set_intq(lc, 1);
    }
    dsv4k_linear_set_isa(lc, DSV4K_ISA_BEST);
    rows512_case(&w, x, m, aq, y, sabs);
    if (n > 2) {
        dsv4k_weight v = w;
        v.row0 = n / 3;
        v.n = n - n / 3 - 1;
        float *yv = malloc((size_t)(m * v.n) * 4);
        dsv4k_linear_ref(&v, x, k, m, yv, v.n, aq);
        int same = 1;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < v.n; j++) same &= yv[i * v.n + j] == y[i * n + v.row0 + j];
        CHECK(same, "row view [%lld, +%lld) of fmt %d equals the rows of the whole", (long long)v.row0,
              (long long)v.n, fmt);
        /* strided: the view's rows of the first m-1 inputs, read with a
         * stride of k+5, written into columns [row0, row0+v.n) of rows n+3 apart */
        int64_t lx = k + 5, ly = n + 3;
        float *xs = malloc((size_t)(m * lx) * 4), *ys = malloc((size_t)(m * ly) * 4);
        for (int64_t i = 0; i < m; i++) memcpy(xs + i * lx, x + i * k, (size_t)k * 4);
        for (int64_t i = 0; i < m * ly; i++) ys[i] = -7.0f;
        T(dsv4k_linear(lc, &v, xs, lx, m - 1, ys + v.row0, ly, aq) == 0);
        double sd2 = 0;
        int kept = 1;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < ly; j++) {
                int in = i < m - 1 && j >= v.row0 && j < v.row0 + v.n;
                if (!in) kept &= ys[i * ly + j] == -7.0f;
                else sd2 = fmax(sd2, fabs((double)ys[i * ly + j] - y[i * n + j]) / (sabs[i * n + j] + 1e-30));
            }
        CHECK(kept && sd2 < 1e-5, "strided linear (ldx %lld, ldy %lld) on a row view: rel diff %.3g, other "
              "values untouched %d", (long long)lx, (long long)ly, sd2, kept);
        free(xs); free(ys);
        free(yv);
    }
    /* the oneDNN route: blocks of 64 output rows (max_k large), ragged last
     * block, a strided output view, the primitive cache reused */
    dsv4k_gemm *gm = dsv4k_gemm_create(2, 8192, m);
#ifdef DSV4_NO_ONEDNN
    CHECK(gm == NULL, "built without oneDNN: no gemm route");
#endif
    if (ONEDNN && CHECK(gm != NULL, "oneDNN matmul available")) {
        float *y3 = malloc((size_t)(m * n) * 4);
        T(dsv4k_gemm_run(gm, &w, x, k, m, y3, n, aq) == 0);
        double mg = 0;
        for (int64_t i = 0; i < m * n; i++) mg = fmax(mg, fabs((double)y3[i] - y[i]) / (sabs[i] + 1e-30));
        int cached = dsv4k_gemm_cached(gm);
        T(dsv4k_gemm_run(gm, &w, x, k, m, y3, n, aq) == 0 && dsv4k_gemm_cached(gm) == cached);
        CHECK(mg < 1e-5, "oneDNN gemm vs linear_ref fmt %d m %lld n %lld k %lld aq %d: rel diff %.3g (%d primitives)",
              fmt, (long long)m, (long long)n, (long long)k, aq, mg, cached);
        if (n > 2) {
            int64_t ly = n + 3, r0 = n / 3, nv = n - n / 3 - 1;
            dsv4k_weight v = w;
            v.row0 = r0;
            v.n = nv;
            float *ys = malloc((size_t)(m * ly) * 4);
            for (int64_t i = 0; i < m * ly; i++) ys[i] = -7.0f;
            T(dsv4k_gemm_run(gm, &v, x, k, m, ys + r0, ly, aq) == 0);
            double sd2 = 0;
            int kept = 1;
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < ly; j++) {
                    if (j < r0 || j >= r0 + nv) kept &= ys[i * ly + j] == -7.0f;
                    else sd2 = fmax(sd2, fabs((double)ys[i * ly + j] - y[i * n + j]) / (sabs[i * n + j] + 1e-30));
                }
            CHECK(kept && sd2 < 1e-5, "oneDNN gemm on a row view into strided output: rel diff %.3g, rest kept %d",
                  sd2, kept);
            free(ys);
        }
        T(dsv4k_gemm_run(gm, &w, x, k, m + 1, y3, n, aq) == -1); /* more rows than it was made for */
        free(y3);
    }
    dsv4k_gemm_free(gm);
    dsv4k_linear_ctx *small = dsv4k_linear_ctx_create(pl, k - 1, m);
    T(small && dsv4k_linear(small, &w, x, k, m, y2, n, aq) == -1); /* k above what the context was made for */
    dsv4k_linear_ctx_free(small);
    dsv4k_linear_ctx_free(lc);
    dsv4k_pool_free(pl);
    free(y2);
    free(sabs);
    free(wd); free(sd); free(x); free(y); free(a);
}

typedef struct { atomic_llong sum; atomic_int calls; int64_t n; atomic_int bad; int threads; } pool_arg;
static void pool_task(void *varg, int64_t b, int64_t e, int thread)
{
    pool_arg *p = varg;
    if (b < 0 || e > p->n || b >= e || thread < 0 || (p->threads && thread >= p->threads)) atomic_fetch_add(&p->bad, 1);
    long long s = 0;
    for (int64_t i = b; i < e; i++) s += i;
    atomic_fetch_add(&p->sum, s);
    atomic_fetch_add(&p->calls, 1);
}

static void pool(void)
{
    /* the pool's own workers, then OpenMP's team (dsv4k_pool_set_omp) */
    for (int tm = 0; tm < 8; tm++) {
        int t = 1 + tm % 4, omp = tm / 4;
        dsv4k_pool *pl = dsv4k_pool_create(t);
        T(pl != NULL && dsv4k_pool_threads(pl) == t);
        dsv4k_pool_set_omp(pl, omp);
        int64_t sizes[] = { 0, 1, 2, 3, 7, 100, 1000, 100003 };
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            for (int64_t grain = 1; grain <= 64; grain *= 8) {
                pool_arg a;
                atomic_init(&a.sum, 0); atomic_init(&a.calls, 0); atomic_init(&a.bad, 0);
                a.n = sizes[i];
                a.threads = t;
                dsv4k_pool_for(pl, a.n, grain, pool_task, &a);
                CHECK(atomic_load(&a.sum) == a.n * (a.n - 1) / 2 && atomic_load(&a.bad) == 0 &&
                      (a.n > 0 || atomic_load(&a.calls) == 0),
                      "pool %d threads%s n %lld grain %lld", t, omp ? " (OpenMP)" : "", (long long)a.n, (long long)grain);
            }
        }
        /* many tiny loops back to back */
        int ok = 1;
        for (int r = 0; r < 2000 && ok; r++) {
            pool_arg a;
            atomic_init(&a.sum, 0); atomic_init(&a.calls, 0); atomic_init(&a.bad, 0);
            a.n = 5;
            a.threads = t;
            dsv4k_pool_for(pl, 5, 1, pool_task, &a);
            ok = atomic_load(&a.sum) == 10 && atomic_load(&a.bad) == 0;
            /* switching between the two sets of threads between loops */
            if (r % 100 == 99) dsv4k_pool_set_omp(pl, (r / 100 + omp) % 2);
        }
        CHECK(ok, "pool %d threads%s: 2000 tiny loops", t, omp ? " (OpenMP)" : "");
        dsv4k_pool_free(pl);
    }
    pool_arg a;
    atomic_init(&a.sum, 0); atomic_init(&a.calls, 0); atomic_init(&a.bad, 0);
    a.n = 10;
    a.threads = 1;
    dsv4k_pool_set_omp(NULL, 1);
    dsv4k_pool_for(NULL, 10, 1, pool_task, &a);
    T(atomic_load(&a.sum) == 45 && dsv4k_pool_threads(NULL) == 1);
    dsv4k_pool_free(NULL);
}

/* the pool's waiting: adaptive by default; loops far apart put the
 * threads to sleep (the spin does not pay), the settings read back */
static void pool_spin(void)
{
    dsv4k_pool *pl = dsv4k_pool_create(2);
    T(pl != NULL && dsv4k_pool_get_spin(pl) == -1);
    int64_t hits0 = 0, sleeps0 = 0, hits = 0, sleeps = 0;
    dsv4k_pool_spin_stats(pl, &hits0, &sleeps0);
    int ok = 1;
    for (int r = 0; r < 20; r++) {
        pool_arg a;
        atomic_init(&a.sum, 0); atomic_init(&a.calls, 0); atomic_init(&a.bad, 0);
        a.n = 1000;
        a.threads = 2;
        dsv4k_pool_for(pl, a.n, 1, pool_task, &a);
        ok &= atomic_load(&a.sum) == 999 * 1000 / 2 && atomic_load(&a.bad) == 0;
        struct timespec ts = { 0, 3000000 }; /* 3 ms: far longer than any spin */
        nanosleep(&ts, NULL);
    }
    dsv4k_pool_spin_stats(pl, &hits, &sleeps);
    CHECK(ok, "adaptive pool: loops 3 ms apart give the right sums");
    /* the worker waited ~3 ms before 19 of the loops: each of those waits
     * outlasted the spin and slept */
    CHECK(sleeps - sleeps0 >= 15, "adaptive pool: waits of 3 ms sleep (%lld sleeps, %lld spin hits)",
          (long long)(sleeps - sleeps0), (long long)(hits - hits0));
    dsv4k_pool_set_spin(pl, 0);
    T(dsv4k_pool_get_spin(pl) == 0);
    dsv4k_pool_set_spin(pl, 100);
    T(dsv4k_pool_get_spin(pl) == 100);
    dsv4k_pool_set_spin(pl, -7);
    T(dsv4k_pool_get_spin(pl) == -1);
    T(dsv4k_pool_get_spin(NULL) == -1);
    dsv4k_pool_free(pl);
}

/* operators of kernels/ops.h: properties and independent evaluations */
static void ops(void)
{
    /* RoPE: inverse undoes forward; a pair rotates by pos·f */
    float f[32], x[64], y[64];
    dsv4k_rope_freqs(160000, 64, 65536, 16, 32, 1, f);
    /* YaRN range for base 160000 is dims 15..25 (spec §4.6) */
    CHECK(f[15] == (float)(1.0 / pow(160000, 30.0 / 64)) && fabsf(f[25] - (float)(1.0 / pow(160000, 50.0 / 64) / 16)) < 1e-12f,
          "YaRN ramp ends at 15 and 25");
    for (int i = 0; i < 64; i++) x[i] = y[i] = frand();
    dsv4k_rope_ref(y, 64, 12345, f, 0);
    float ang = 12345.0f * f[3];
    CHECK(fabsf(y[6] - (x[6] * cosf(ang) - x[7] * sinf(ang))) < 1e-5f, "rope rotates interleaved pairs");
    dsv4k_rope_ref(y, 64, 12345, f, 1);
    float md = 0;
    for (int i = 0; i < 64; i++) md = fmaxf(md, fabsf(y[i] - x[i]));
    CHECK(md < 1e-5f, "inverse rope undoes rope (%g)", md);
    /* Hadamard vs the explicit Sylvester matrix */
    float h[128], hx[128];
    for (int i = 0; i < 128; i++) h[i] = hx[i] = frand();
    dsv4k_hadamard_ref(hx, 128);
    md = 0;
    for (int i = 0; i < 128; i++) {
        double s = 0;
        for (int j = 0; j < 128; j++) s += (__builtin_popcount(i & j) & 1 ? -1.0 : 1.0) * h[j];
        md = fmaxf(md, fabsf((float)(s / sqrt(128.0)) - hx[i]));
    }
    CHECK(md < 1e-5f, "hadamard vs matrix (%g)", md);
    /* mHC: comb is (nearly) doubly stochastic after Sinkhorn, post in (0, 2) */
    int64_t dim = 128;
    float *X = malloc(4 * dim * 4), *fn = malloc(24 * 4 * dim * 4), base[24], scale[3] = { 0.7f, 1.2f, 0.9f };
    float u[128], post[4], comb[16];
    for (int64_t i = 0; i < 4 * dim; i++) X[i] = frand();
    for (int64_t i = 0; i < 24 * 4 * dim; i++) fn[i] = frand() * 0.01f;
    for (int i = 0; i < 24; i++) base[i] = frand() * 0.5f;
    dsv4k_hc_pre_ref(X, 4, dim, fn, base, scale, 20, 1e-6f, 1e-6f, u, post, comb);
    float cs = 0, rs = 0;
    for (int k = 0; k < 4; k++) {
        float c = 0, r = 0;
        for (int j = 0; j < 4; j++) { c += comb[j * 4 + k]; r += comb[k * 4 + j]; }
        cs = fmaxf(cs, fabsf(c - 1));
        rs = fmaxf(rs, fabsf(r - 1));
        T(post[k] > 0 && post[k] < 2);
    }
    CHECK(cs < 1e-5f && rs < 1e-3f, "sinkhorn: columns sum to 1 (%g), rows nearly (%g)", cs, rs);
    /* the AVX2 stream mix against the reference: 24 rows (4 per pass) and
     * 7 (a 3-row remainder), the whole HcPre and HcHead on top */
    if (dsv4k_have_avx2()) {
        double m1[24], m2[24];
        for (int rows = 24; rows >= 7; rows -= 17) {
            dsv4k_hc_mix_ref(X, 4 * dim, fn, rows, 1e-6f, m1);
            dsv4k_hc_mix_avx2(X, 4 * dim, fn, rows, 1e-6f, m2);
            double mm = 0;
            for (int j = 0; j < rows; j++) mm = fmax(mm, fabs(m1[j] - m2[j]) / (fabs(m1[j]) + 1e-30));
            CHECK(mm < 1e-6, "hc mix AVX2 vs reference, %d rows: rel diff %.3g", rows, mm);
        }
        float u2[128], post2[4], comb2[16], y1[128], y2[128];
        dsv4k_hc_pre(X, 4, dim, fn, base, scale, 20, 1e-6f, 1e-6f, u2, post2, comb2, 1);
        double dd = 0;
        for (int c = 0; c < 128; c++) dd = fmax(dd, fabs((double)u2[c] - u[c]));
        for (int j = 0; j < 4; j++) dd = fmax(dd, fabs((double)post2[j] - post[j]));
        for (int j = 0; j < 16; j++) dd = fmax(dd, fabs((double)comb2[j] - comb[j]));
        CHECK(dd < 1e-5, "HcPre with the AVX2 mix vs the reference: max diff %.3g", dd);
        dsv4k_hc_head_ref(X, 4, dim, fn, base, scale, 1e-6f, 1e-6f, y1);
        dsv4k_hc_head(X, 4, dim, fn, base, scale, 1e-6f, 1e-6f, y2, 1);
        dd = 0;
        for (int c = 0; c < 128; c++) dd = fmax(dd, fabs((double)y2[c] - y1[c]));
        CHECK(dd < 1e-5, "HcHead with the AVX2 mix vs the reference: max diff %.3g", dd);
        /* HcPost: bit for bit */
        float *Xo1 = malloc(4 * dim * 4), *Xo2 = malloc(4 * dim * 4);
        dsv4k_hc_post_ref(X, u, post, comb, 4, dim, Xo1);
        dsv4k_hc_post(X, u, post, comb, 4, dim, Xo2, 1);
        CHECK(!memcmp(Xo1, Xo2, 4 * dim * 4), "HcPost AVX2 equals the reference bit for bit");
        free(Xo1); free(Xo2);
    }
    /* attention: one key gets all the weight against a sink of -inf-like */
    const float *kv[2] = { X, X + dim };
    float o[128];
    dsv4k_attn_head_ref(X, kv, 2, dim, 0.0f, -1e30f, o);
    md = 0;
    for (int64_t c = 0; c < dim; c++) md = fmaxf(md, fabsf(o[c] - 0.5f * (X[c] + X[dim + c])));
    CHECK(md < 1e-6f, "attention with equal scores averages the values (%g)", md);
    /* compressor pooling with equal gates averages the rows */
    int64_t off[4] = { 0, 0, 0, 0 };
    float g[4 * 128] = { 0 };
    dsv4k_compress_pool_ref(X, g, 4, dim, off, dim, o);
    md = 0;
    for (int64_t c = 0; c < dim; c++) md = fmaxf(md, fabsf(o[c] - 0.25f * (X[c] + X[dim + c] + X[2 * dim + c] + X[3 * dim + c])));
    CHECK(md < 1e-6f, "pooling with equal gates averages (%g)", md);
    /* indexer score: optimised vs reference */
    float q8[8 * 128], w8[8];
    for (int i = 0; i < 8 * 128; i++) q8[i] = frand();
    for (int i = 0; i < 8; i++) w8[i] = frand();
    md = 0;
    for (int rep = 0; rep < 20; rep++) {
        for (int i = 0; i < 128; i++) h[i] = frand();
        float r = dsv4k_index_score_ref(q8, w8, 8, 128, h), f2 = dsv4k_index_score(q8, w8, 8, 128, h);
        md = fmaxf(md, fabsf(r - f2) / (1 + fabsf(r)));
    }
    CHECK(md < 1e-5f, "index score vs reference (%g)", md);
    if (dsv4k_have_avx2()) {
        /* integer indexer score on FP4-simulated queries and stored keys:
         * 64 heads × 128 (the model's shape), 16 × 64 and 80 × 128 (4
         * groups of 16 heads per pass, then one), against the reference on
         * the same simulated values */
        int hs[3] = { 64, 16, 80 };
        int64_t ds[3] = { 128, 64, 128 };
        for (int v = 0; v < 3; v++) {
            int H = hs[v];
            int64_t D = ds[v];
            float *qf = malloc((size_t)(H * D) * 4), *wf = malloc((size_t)H * 4), kf[128];
            uint8_t kc[64 + 4];
            void *qb = malloc((size_t)dsv4k_index_q4_bytes(H, D));
            for (int64_t i = 0; i < H * D; i++) qf[i] = frand() * (i % 96 == 5 ? 40.0f : 1.0f);
            for (int64_t i = 0; i < 32; i++) qf[i] = 0; /* an all-zero block */
            for (int i = 0; i < H; i++) wf[i] = frand();
            dsv4k_fp4_sim_ref(qf, H * D, 32);
            int prep = dsv4k_index_q4_prepare(qf, H, D, qb);
            double worst = 0;
            for (int rep = 0; rep < 40 && prep == 0; rep++) {
                for (int64_t i = 0; i < D; i++) kf[i] = frand() * (rep % 7 == 3 ? 1e-3f : 2.0f);
                dsv4__key_fp4(kf, D, kc);
                double sa = 0;
                for (int h2 = 0; h2 < H; h2++) {
                    double dt = 0;
                    for (int64_t c = 0; c < D; c++) dt += (double)qf[h2 * D + c] * kf[c];
                    sa += fabs(wf[h2] * dt);
                }
                float r = dsv4k_index_score_ref(qf, wf, H, D, kf), f2 = dsv4k_index_score_q4_avx2(qb, wf, H, D, kc);
                worst = fmax(worst, fabs((double)r - f2) / (sa + 1e-30));
            }
            CHECK(prep == 0 && worst < 1e-6, "integer index score, %d heads × %lld: rel diff %.3g", H, (long long)D,
                  worst);
            qf[7] = 0.3f; /* not on the FP4 grid of its block */
            CHECK(dsv4k_index_q4_prepare(qf, H, D, qb) == -1, "a query off the FP4 grid is refused");
            free(qf); free(wf); free(qb);
        }
    }
    if (dsv4k_have_avx2()) {
        /* 12 heads: one pass of 8 and 4 single heads */
        float q12[12 * 128], w12[12];
        for (int i = 0; i < 12 * 128; i++) q12[i] = frand();
        for (int i = 0; i < 12; i++) w12[i] = frand();
        md = 0;
        for (int rep = 0; rep < 50; rep++) {
            for (int i = 0; i < 128; i++) h[i] = frand();
            float r = dsv4k_index_score_ref(q12, w12, 12, 128, h), f2 = dsv4k_index_score_avx2(q12, w12, 12, 128, h);
            md = fmaxf(md, fabsf(r - f2) / (1 + fabsf(r)));
        }
        CHECK(md < 1e-5f, "AVX2 index score vs reference (%g)", md);
        float oa2[512];
        /* every head of a row at once: 1, 4, 7 and 11 heads (blocks of 4
         * and ragged ones), 1, 2, 65 and 150 vectors (blocks of 64, an odd
         * one), d 136 (a ragged 16-column step) and 512; heads apart by a
         * stride larger than d; sharply peaked scores */
        {
            int hs[4] = { 1, 4, 7, 11 }, ns[4] = { 1, 2, 65, 150 }, ds[2] = { 136, 512 };
            float *kvh = malloc(150 * 512 * sizeof *kvh), *qh = malloc(11 * 520 * sizeof *qh);
            float *oh = malloc(11 * 520 * sizeof *oh), *scr2 = malloc(11 * 151 * sizeof *scr2), sk[11];
            const float *kvq[150];
            float mh = 0;
            for (int i = 0; i < 150 * 512; i++) kvh[i] = frand();
            for (int i = 0; i < 11 * 520; i++) qh[i] = frand() * (i % 520 == 3 ? 40.0f : 1.0f);
            for (int i = 0; i < 11; i++) sk[i] = frand();
            for (int di = 0; di < 2; di++)
                for (int hi = 0; hi < 4; hi++)
                    for (int ni = 0; ni < 4; ni++) {
                        int64_t D = ds[di];
                        /* the vectors in a scattered order */
                        for (int i = 0; i < ns[ni]; i++) kvq[i] = kvh + (int64_t)((i * 37) % 150) * D;
                        for (int i = 0; i < 11 * 520; i++) oh[i] = NAN;
                        dsv4k_attn_heads_avx2(qh, 520, hs[hi], kvq, ns[ni], D, 0.05f, sk, oh, 520, scr2);
                        for (int hh = 0; hh < hs[hi]; hh++) {
                            dsv4k_attn_head_ref(qh + hh * 520, kvq, ns[ni], D, 0.05f, sk[hh], oa2);
                            for (int64_t c = 0; c < D; c++) {
                                float dd = fabsf(oa2[c] - oh[hh * 520 + c]);
                                mh = dd == dd ? fmaxf(mh, dd) : INFINITY;
                            }
                            /* the columns past d and the heads past nh untouched */
                            if (oh[hh * 520 + D] == oh[hh * 520 + D]) mh = INFINITY;
                        }
                        if (hs[hi] < 11 && oh[hs[hi] * 520] == oh[hs[hi] * 520]) mh = INFINITY;
                    }
            CHECK(mh < 2e-5f, "AVX2 attention of several heads at once vs reference (%g)", mh);
            free(kvh); free(qh); free(oh); free(scr2);
        }
        /* activation quantisation, bit for bit: blocks of ordinary, tiny,
         * huge, zero and mixed-magnitude values, ties */
        float xa[1024], qa1[1024], qa2[1024];
        int8_t exa[8];
        int bad = 0;
        for (int rep = 0; rep < 200; rep++) {
            for (int i = 0; i < 1024; i++) {
                int blk = i / 128;
                float v = frand();
                xa[i] = blk == 0 ? v : blk == 1 ? v * 1e-7f : blk == 2 ? v * 3e4f : blk == 3 ? 0.0f
                      : blk == 4 ? v * ldexpf(1.0f, (int)(rnd() % 40) - 20) : blk == 5 ? (float)(int)(v * 64) / 8.0f
                      : blk == 6 ? -v * 1e-30f : v * ldexpf(1.0f, rep % 30);
            }
            dsv4k_act_quant_fp8_ref(xa, 1024, 128, qa1, exa);
            for (int i = 0; i < 1024; i++) qa1[i] *= dsv4k_pow2(exa[i / 128]);
            int8_t exb[8];
            dsv4k_act_quant_dq_avx2(xa, 1024, qa2, exb);
            bad += memcmp(qa1, qa2, sizeof qa1) != 0 || memcmp(exa, exb, 8) != 0;
        }
        CHECK(bad == 0, "AVX2 activation quantisation = reference bit for bit (%d of 200 differ)", bad);
    }
    free(X);
    free(fn);
}

/*
 * The AVX-512 attention twin (native where the CPU has AVX-512, and its
 * SIMDe build) against dsv4k_attn_head_ref, with the AVX2 twin's tolerance:
 * the AVX2 test's shapes with d a multiple of 16 (16, 144: a ragged
 * 64-column pass, 512), then every head count 1..67 at d 512 with n from 0
 * to 700 (ragged blocks of 64 vectors and of 16 scores), sharply peaked
 * scores, a dominating and a negligible sink, vectors scaled by 2^±12.
 * Columns past d and heads past nh stay untouched; every head's output is
 * the same bits when the heads come in other groups (threads split them).
 */
typedef void (*attn_fn)(const float *, int64_t, int64_t, const float *const *, int64_t, int64_t, float, const float *,
                        float *, int64_t, float *);

static void attn512(void)
{
    attn_fn fns[2] = { NULL, NULL };
    const char *names[2] = { "AVX-512 attention (SIMDe emulation)", "AVX-512 attention (native)" };
#ifdef DSV4K_HAVE_EMUL512
    fns[0] = dsv4k_attn_heads_avx512_emul;
#endif
    if (dsv4k_have_avx512()) fns[1] = dsv4k_attn_heads_avx512;
    enum { NV = 700, HM = 67, LD = 520 };
    float *kvh = malloc((size_t)NV * 512 * sizeof(float)), *qh = malloc((size_t)HM * LD * sizeof(float));
    float *oh = malloc((size_t)HM * LD * sizeof(float)), *o1 = malloc((size_t)HM * LD * sizeof(float));
    float *scr = malloc((size_t)HM * (NV + 1) * sizeof(float)), sk[HM], oref[512];
    const float **kvq = malloc(NV * sizeof *kvq);
    for (int i = 0; i < NV * 512; i++) kvh[i] = frand();
    for (int i = 0; i < HM * LD; i++) qh[i] = frand() * (i % LD == 3 ? 40.0f : 1.0f);
    for (int i = 0; i < HM; i++) sk[i] = frand();
    for (int f = 0; f < 2; f++) {
        if (!fns[f]) continue;
        /* (nh, n, d, kind): kind 0 plain, 1 sink +30, 2 sink -1e30, 3 vectors × 2^12, 4 × 2^-12 */
        int cases[400][4], nc = 0;
        {
            int hs[4] = { 1, 4, 7, 11 }, ns[4] = { 1, 2, 65, 150 }, ds[3] = { 16, 144, 512 };
            for (int di = 0; di < 3; di++)
                for (int hi = 0; hi < 4; hi++)
                    for (int ni = 0; ni < 4; ni++) {
                        cases[nc][0] = hs[hi]; cases[nc][1] = ns[ni]; cases[nc][2] = ds[di]; cases[nc][3] = 0;
                        nc++;
                    }
        }
        int step = test_reps(1, 5);
        for (int h = 1; h <= HM; h += step) {
            cases[nc][0] = h; cases[nc][1] = h == 1 ? 0 : (h * 263) % 701; cases[nc][2] = 512; cases[nc][3] = h % 5;
            nc++;
        }
        cases[nc][0] = HM; cases[nc][1] = NV; cases[nc][2] = 512; cases[nc][3] = 0;
        nc++;
        double mh = 0, mrel = 0;
        int bad_untouched = 0, worst = -1;
        for (int ci = 0; ci < nc; ci++) {
            int nh = cases[ci][0], n = cases[ci][1], kind = cases[ci][3];
            int64_t D = cases[ci][2];
            float sks[HM], mul = kind == 3 ? 4096.0f : kind == 4 ? 1.0f / 4096.0f : 1.0f;
            for (int hh = 0; hh < nh; hh++) sks[hh] = kind == 1 ? 30.0f : kind == 2 ? -1e30f : sk[hh];
            float *kvs = kvh;
            if (mul != 1.0f) {
                kvs = malloc((size_t)n * D * sizeof(float) + 1);
                for (int64_t i = 0; i < (int64_t)n * D; i++) kvs[i] = kvh[i] * mul;
            }
            /* the vectors in a scattered order */
            for (int i = 0; i < n; i++) kvq[i] = kvs + (int64_t)((i * 37) % (n > 0 ? n : 1)) * D;
            for (int i = 0; i < HM * LD; i++) oh[i] = NAN;
            fns[f](qh, LD, nh, kvq, n, D, 0.05f, sks, oh, LD, scr);
            for (int hh = 0; hh < nh; hh++) {
                dsv4k_attn_head_ref(qh + hh * LD, kvq, n, D, 0.05f, sks[hh], oref);
                for (int64_t c = 0; c < D; c++) {
                    /* the AVX2 test's absolute bound on values of size 1 */
                    double dd = fabs((double)oref[c] - oh[hh * LD + c]) / mul;
                    if (!(dd <= mh)) { mh = dd == dd ? dd : INFINITY; worst = ci; }
                    if (fabs(oref[c]) > 1e-3 * mul) mrel = fmax(mrel, dd * mul / fabs(oref[c]));
                }
                if (oh[hh * LD + D] == oh[hh * LD + D]) bad_untouched++;
            }
            if (nh < HM && oh[nh * LD] == oh[nh * LD]) bad_untouched++;
            if (kvs != kvh) free(kvs);
        }
        CHECK(mh < 2e-5 && bad_untouched == 0,
              "%s vs reference over %d shapes: max abs diff %.3g (worst nh %d n %d d %d), rel %.3g; %d wrote outside",
              names[f], nc, mh, worst >= 0 ? cases[worst][0] : 0, worst >= 0 ? cases[worst][1] : 0,
              worst >= 0 ? cases[worst][2] : 0, mrel, bad_untouched);
        /* the heads in other groups: one at a time, and split at 13 and 42 */
        int nsp[3] = { 1, 129, NV }, bits = 0;
        for (int k = 0; k < 3; k++) {
            int n = nsp[k];
            for (int i = 0; i < n; i++) kvq[i] = kvh + (int64_t)((i * 37) % n) * 512;
            fns[f](qh, LD, HM, kvq, n, 512, 0.05f, sk, oh, LD, scr);
            for (int hh = 0; hh < HM; hh++) fns[f](qh + hh * LD, LD, 1, kvq, n, 512, 0.05f, sk + hh, o1 + hh * LD, LD, scr);
            for (int hh = 0; hh < HM; hh++) bits += memcmp(oh + hh * LD, o1 + hh * LD, 512 * sizeof(float)) != 0;
            fns[f](qh, LD, 13, kvq, n, 512, 0.05f, sk, o1, LD, scr);
            fns[f](qh + 13 * LD, LD, 29, kvq, n, 512, 0.05f, sk + 13, o1 + 13 * LD, LD, scr);
            fns[f](qh + 42 * LD, LD, HM - 42, kvq, n, 512, 0.05f, sk + 42, o1 + 42 * LD, LD, scr);
            for (int hh = 0; hh < HM; hh++) bits += memcmp(oh + hh * LD, o1 + hh * LD, 512 * sizeof(float)) != 0;
        }
        CHECK(bits == 0, "%s: every head the same bits in other head groups (%d of %d differ)", names[f], bits,
              6 * HM);
    }
    free(kvh); free(qh); free(oh); free(o1); free(scr); free(kvq);
}

/* the compact KV codecs equal the simulations and decode back exactly */
static void kv_codecs(void)
{
    float a[448], b[448], c[448];
    uint8_t code[448 + 7];
    int bad = 0, bad_dec = 0;
    for (int rep = 0; rep < 50; rep++) {
        for (int i = 0; i < 448; i++) a[i] = b[i] = frand() * (float)(1 << (rep % 12)) * (i % 64 == 0 ? 7 : 1);
        dsv4k_fp8_sim_ref(a, 448, 64);
        dsv4__kv_fp8(b, 448, code);
        for (int i = 0; i < 448; i++) {
            bad += a[i] != b[i];
            c[i] = dsv4k_e4m3_to_f32(code[i]) * dsv4k_e8m0_to_f32(code[448 + i / 64]);
            bad_dec += c[i] != b[i];
        }
    }
    CHECK(bad == 0 && bad_dec == 0, "KV FP8 codec: %d differ from fp8_sim_ref, %d decode differently", bad, bad_dec);
    uint8_t k4[64 + 4];
    bad = bad_dec = 0;
    for (int rep = 0; rep < 50; rep++) {
        for (int i = 0; i < 128; i++) a[i] = b[i] = frand() * (float)(1 << (rep % 9));
        dsv4k_fp4_sim_ref(a, 128, 32);
        dsv4__key_fp4(b, 128, k4);
        for (int i = 0; i < 128; i++) {
            bad += a[i] != b[i];
            uint8_t cd = (i & 1) ? (uint8_t)(k4[i / 2] >> 4) : (uint8_t)(k4[i / 2] & 15);
            bad_dec += dsv4k_e2m1_to_f32(cd) * dsv4k_e8m0_to_f32(k4[64 + i / 32]) != b[i];
        }
    }
    CHECK(bad == 0 && bad_dec == 0, "indexer FP4 codec: %d differ from fp4_sim_ref, %d decode differently", bad, bad_dec);
    if (dsv4k_have_avx2()) {
        dsv4k_tables_init();
        int bad_avx = 0;
        for (int rep = 0; rep < 50; rep++) {
            for (int i = 0; i < 128; i++) b[i] = frand() * (float)(1 << (rep % 9));
            dsv4__key_fp4(b, 128, k4);
            dsv4k_key_fp4_decode_avx2(k4, 128, c);
            for (int i = 0; i < 128; i++) bad_avx += c[i] != b[i];
        }
        CHECK(bad_avx == 0, "AVX2 FP4 key decoding = the simulated values (%d differ)", bad_avx);
    }
}

/* the AVX2 row decoder (oneDNN route) against the portable one, bit for
 * bit, on every byte value including e4m3 NaN codes and extreme scales
 * (which it must hand back, not decode differently) */
static void decode_rows(void)
{
    if (!dsv4k_have_avx2()) return;
    dsv4k_tables_init();
    int fmts[4] = { DSV4K_W_BF16, DSV4K_W_FP8, DSV4K_W_FP8_F32S, DSV4K_W_FP4 };
    for (int f = 0; f < 4; f++) {
        int fmt = fmts[f];
        int64_t n = 256, k = 512, kb = k / 128, nb = n / 128;
        size_t wbytes = fmt == DSV4K_W_BF16 ? 2 : 1;
        uint8_t *wd = malloc((size_t)(n * k) * wbytes);
        void *sd = malloc((size_t)(fmt == DSV4K_W_FP4 ? n * (k / 32) : nb * kb * 4));
        for (int64_t i = 0; i < n * k * (int64_t)wbytes; i++) wd[i] = (uint8_t)rnd();
        /* FP8: NaN codes only in odd rows, so both paths are taken */
        if (fmt != DSV4K_W_BF16 && fmt != DSV4K_W_FP4)
            for (int64_t r = 0; r < n; r += 2)
                for (int64_t c = 0; c < k; c++) if ((wd[r * k + c] & 0x7f) == 0x7f) wd[r * k + c] = 0x7e;
        if (fmt == DSV4K_W_FP8)
            for (int64_t i = 0; i < nb * kb; i++) ((uint8_t *)sd)[i] = (uint8_t)(i == 3 ? 250 : 100 + rnd() % 50);
        if (fmt == DSV4K_W_FP8_F32S)
            for (int64_t i = 0; i < nb * kb; i++) ((float *)sd)[i] = frand() * 0.01f;
        if (fmt == DSV4K_W_FP4)
            for (int64_t i = 0; i < n * (k / 32); i++) ((uint8_t *)sd)[i] = (uint8_t)(i % 97 == 5 ? 2 : 100 + rnd() % 50);
        dsv4k_weight w = { fmt, n, k, wd, sd, 0, 0 };
        float *a = malloc((size_t)k * 4), *b = malloc((size_t)k * 4);
        int same = 1, fast = 0, back = 0;
        for (int64_t r = 0; r < n; r++) {
            dsv4k_decode_row(&w, r, a);
            memset(b, 0xAB, (size_t)k * 4);
            if (dsv4k_decode_row_avx2(&w, r, b) == 0) {
                fast++;
                for (int64_t c = 0; c < k; c++) {
                    uint32_t x, y;
                    memcpy(&x, a + c, 4);
                    memcpy(&y, b + c, 4);
                    same &= x == y || (isnan(a[c]) && isnan(b[c]));
                }
            } else {
                back++;
            }
        }
        CHECK(same, "AVX2 row decoding = portable, bit for bit (format %d)", fmt);
        CHECK(fast > n / 4 && (fmt == DSV4K_W_BF16 || fmt == DSV4K_W_FP8_F32S || back > 0),
              "format %d: %d rows decoded by AVX2, %d handed back (NaN codes, extreme scales)", fmt, fast, back);
        free(wd);
        free(sd);
        free(a);
        free(b);
    }
}

/*
 * The integer FP4 kernel (prepare + rows) against the reference product on
 * activations that reach every digit: random rows; blocks spanning 2^-20 ..
 * 1 (subnormal e4m3 values and zeros, all three digits); blocks of one sign at the
 * largest values against rows of the largest weights (lane sums past 2^24);
 * blocks scaled by 1e30 and 1e-30; a zero block; rows with the scale bytes
 * 0 (2^-127) and 255 (NaN). A prepared value that is not finite is refused.
 */
typedef void (*fp4q_fn)(const dsv4k_weight *, int64_t, int64_t, const void *, float *);
typedef int (*fp8q_fn)(const dsv4k_weight *, int64_t, int64_t, const float *, const float *, const int16_t *, float *);
static const char *fp4q_names[5] = { "AVX2", "AVX-512 (SIMDe emulation)", "AVX-512 (native)",
                                      "AVX-512 VNNI (SIMDe emulation)", "AVX-512 VNNI (native)" };

static void fp4q(void)
{
    if (!dsv4k_have_avx2()) return;
    fp4q_fn fp4q_fns[5] = { dsv4k_rows_fp4q_avx2, NULL, NULL, NULL, NULL };
#ifdef DSV4K_HAVE_EMUL512
    fp4q_fns[1] = dsv4k_rows_fp4q_avx512_emul;
    fp4q_fns[3] = dsv4k_rows_fp4q_avx512vnni_emul;
#endif
    if (dsv4k_have_avx512()) fp4q_fns[2] = dsv4k_rows_fp4q_avx512;
    if (dsv4k_have_avx512vnni()) fp4q_fns[4] = dsv4k_rows_fp4q_avx512vnni;
    const int64_t n = 24, k = 1024;
    uint8_t *wd = malloc((size_t)(n * k / 2)), *sd = malloc((size_t)(n * k / 32));
    for (int64_t i = 0; i < n * k / 2; i++) wd[i] = (uint8_t)rnd();
    for (int64_t i = 0; i < n * k / 32; i++) sd[i] = (uint8_t)(118 + rnd() % 16);
    for (int64_t i = 0; i < k / 2; i++) wd[3 * (k / 2) + i] = 0x77; /* row 3: every weight +6 */
    for (int64_t i = 0; i < k / 2; i++) wd[4 * (k / 2) + i] = 0xff; /* row 4: every weight -6 */
    sd[5 * (k / 32) + 7] = 0;                                       /* row 5: one scale 2^-127 */
    sd[6 * (k / 32) + 30] = 255;                                    /* row 6: one NaN scale */
    dsv4k_weight w = { DSV4K_W_FP4, n, k, wd, sd, 0, 0 };
    float *x = malloc((size_t)k * 4), *y = malloc((size_t)n * 4), *yr = malloc((size_t)n * 4);
    float *dq = malloc((size_t)k * 4), *a = malloc((size_t)k * 4);
    int8_t ex[64];
    void *buf = malloc((size_t)dsv4k_fp4q_bytes(k));
    /* kinds 3 and 4 without the extreme blocks, whose products would hide
     * an error in the others within the tolerance */
    for (int kind = 0; kind < 5; kind++) {
        for (int64_t i = 0; i < k; i++) {
            int blk = (int)(i / 128), ext = kind < 3;
            float v = frand() * 3;
            if (kind == 1 || kind == 4 || (ext && blk == 1))
                v = ldexpf(frand() > 0 ? 1.0f : -1.0f, -(int)(rnd() % 21)) * (1 + frand() / 2);
            if (kind == 2 || (ext && blk == 2)) v = 448.0f - (float)(rnd() % 3) * 16; /* one sign, near the largest */
            if (ext && blk == 3) v *= 1e30f;
            if (ext && blk == 4) v *= 1e-30f;
            if (ext && blk == 5) v = 0;
            x[i] = v;
        }
        dsv4k_act_quant_dq(x, k, dq, ex, 1);
        T(dsv4k_fp4q_prepare(dq, ex, k, buf) == 0);
        for (int64_t r = 0; r < n; r++) y[r] = -7.0f;
        dsv4k_linear_ref(&w, x, k, 1, yr, n, 1);
        dsv4k_act_quant_fp8_ref(x, k, 128, a, ex);
        float yv[5][24];
        for (int v = 0; v < 5; v++) {
            fp4q_fn fn = fp4q_fns[v];
            if (!fn) continue;
            for (int64_t r = 0; r < n; r++) y[r] = -7.0f;
            /* odd splits too: the VNNI kernel takes rows in pairs */
            fn(&w, 0, 5, buf, y);
            fn(&w, 5, n / 2, buf, y);
            fn(&w, n / 2, n, buf, y);
            memcpy(yv[v], y, sizeof(float) * (size_t)n);
            if (v >= 3 && fp4q_fns[v - 2]) {
                int same = 1;
                for (int64_t r = 0; r < n; r++) same &= memcmp(&y[r], &yv[v - 2][r], 4) == 0;
                CHECK(same, "%s bit for bit %s, activations of kind %d", fp4q_names[v], fp4q_names[v - 2], kind);
            }
            int bad = 0;
            for (int64_t r = 0; r < n; r++) {
                double sa = 0;
                for (int64_t c = 0; c < k; c++) sa += fabs((double)ldexpf(a[c], ex[c / 128]) * w_at(&w, r, c));
                if (isnan(yr[r]) ? !isnan(y[r]) : !(fabs((double)y[r] - yr[r]) <= 1e-6 * sa)) bad++;
            }
            CHECK(bad == 0 && isnan(y[6]), "integer FP4 kernel (%s) vs linear_ref, activations of kind %d: %d rows off",
                  fp4q_names[v], kind, bad);
        }
    }
    /* the second VNNI form (own preparation: base-256 digits over each
     * block's common power of two, 2 or 3 planes, transposed scaling) */
    {
        typedef int (*prep_fn)(const float *, const int8_t *, int64_t, void *);
        prep_fn preps[3] = { NULL, NULL, dsv4k_fp4v_prepare_avx2 };
        fp4q_fn rows[3] = { NULL, NULL, dsv4k_rows_fp4v_avx2 };
        const char *nm[3] = { "SIMDe emulation", "native", "AVX2" };
#ifdef DSV4K_HAVE_EMUL512
        preps[0] = dsv4k_fp4v_prepare_emul;
        rows[0] = dsv4k_rows_fp4v_avx512vnni_emul;
#endif
        if (dsv4k_have_avx512vnni()) {
            preps[1] = dsv4k_fp4v_prepare;
            rows[1] = dsv4k_rows_fp4v_avx512vnni;
        }
        void *vb = malloc((size_t)dsv4k_fp4v_bytes(k)), *vb2 = malloc((size_t)dsv4k_fp4v_bytes(k));
        int seen[4] = { 0 }, same_bytes = 1, compared = 0;
        /* kinds 4 and 5 without the extreme blocks, whose products would
         * hide an error in the others within the tolerance */
        for (int kind = 0; kind < 6; kind++) {
            for (int64_t i = 0; i < k; i++) {
                int blk = (int)(i / 128), ext = kind < 4;
                float v = frand() * 3;
                if (kind == 1 || kind == 5 || (ext && blk == 1))
                    v = ldexpf(frand() > 0 ? 1.0f : -1.0f, -(int)(rnd() % 21)) * (1 + frand() / 2);
                if (kind == 2 || (ext && blk == 2)) v = 448.0f - (float)(rnd() % 3) * 16;
                if (kind == 3 && blk >= 3) v = (float)(int)(frand() * 64) * 0.25f; /* few binades, common factor */
                if (ext && blk == 3) v *= 1e30f;
                if (ext && blk == 4) v *= 1e-30f;
                if (ext && blk == 5) v = 0;
                x[i] = v;
            }
            dsv4k_act_quant_dq(x, k, dq, ex, 1);
            dsv4k_linear_ref(&w, x, k, 1, yr, n, 1);
            dsv4k_act_quant_fp8_ref(x, k, 128, a, ex);
            int8_t ex2[64];
            dsv4k_act_quant_dq(x, k, dq, ex2, 1);
            /* the AVX2 preparation writes the AVX-512 one's bytes */
            prep_fn p512 = preps[1] ? preps[1] : preps[0];
            if (p512) {
                memset(vb, 0xa5, (size_t)dsv4k_fp4v_bytes(k));
                memset(vb2, 0x5a, (size_t)dsv4k_fp4v_bytes(k));
                T(p512(dq, ex2, k, vb) == 0 && dsv4k_fp4v_prepare_avx2(dq, ex2, k, vb2) == 0);
                const uint8_t *b1 = vb, *b2 = vb2, *np1 = b1 + 3 * k + 8 * (k / 32);
                for (int64_t j = 0; j < k / 128; j++)
                    same_bytes &= memcmp(b1 + 384 * j, b2 + 384 * j, (size_t)(128 * (np1[j] & 3))) == 0;
                same_bytes &= memcmp(b1 + 3 * k, b2 + 3 * k, (size_t)(8 * (k / 32) + k / 128)) == 0;
                compared++;
            }
            for (int f = 0; f < 3; f++) {
                if (!preps[f]) continue;
                T(preps[f](dq, ex2, k, vb) == 0);
                const uint8_t *np = (const uint8_t *)vb + 3 * k + 8 * (k / 32);
                for (int64_t j = 0; j < k / 128; j++) seen[np[j] & 3] = 1;
                for (int64_t r = 0; r < n; r++) y[r] = -7.0f;
                rows[f](&w, 0, 7, vb, y);
                rows[f](&w, 7, n, vb, y);
                int bad = 0;
                for (int64_t r = 0; r < n; r++) {
                    double sa = 0;
                    for (int64_t c = 0; c < k; c++) sa += fabs((double)ldexpf(a[c], ex[c / 128]) * w_at(&w, r, c));
                    if (isnan(yr[r]) ? !isnan(y[r]) : !(fabs((double)y[r] - yr[r]) <= 1e-6 * sa)) bad++;
                }
                CHECK(bad == 0 && isnan(y[6]), "FP4 VNNI second form (%s) vs linear_ref, activations of kind %d: %d rows off",
                      nm[f], kind, bad);
            }
        }
        CHECK(seen[2] && seen[3], "blocks of two and of three digit planes both occurred (%d %d)", seen[2], seen[3]);
        if (compared) CHECK(same_bytes, "the AVX2 preparation of the second form writes the AVX-512 one's bytes (%d activations)", compared);
        for (int f = 0; f < 3; f++) {
            prep_fn pf = preps[f];
            if (!pf) continue;
            float keep = dq[300];
            CHECK(pf(dq, ex, 640, vb) == -1, "the second form (%s) refuses k %% 512 != 0", nm[f]);
            dq[300] = NAN;
            CHECK(pf(dq, ex, k, vb) == -1, "the second form (%s) refuses a NaN value", nm[f]);
            dq[300] = INFINITY;
            CHECK(pf(dq, ex, k, vb) == -1, "the second form (%s) refuses an infinite value", nm[f]);
            dq[300] = keep;
        }
        free(vb);
        free(vb2);
    }
    /* a prepared value that is not finite is refused (dsv4k_linear then
     * takes the f32 kernels) */
    for (int t = 0; t < 2; t++) {
        dsv4k_act_quant_dq(x, k, dq, ex, 1);
        dq[200 + t] = t ? INFINITY : NAN;
        CHECK(dsv4k_fp4q_prepare(dq, ex, k, buf) == -1, "a %s value is refused by the integer kernel",
              t ? "infinite" : "NaN");
    }
    /* a NaN activation: the quantisation clamps it (to -448, as the
     * reference's fmaxf does), and dsv4k_linear agrees with the reference */
    dsv4k_pool *pl = dsv4k_pool_create(2);
    dsv4k_linear_ctx *lc = dsv4k_linear_ctx_create(pl, k, 1);
    x[200] = NAN;
    T(lc && dsv4k_linear(lc, &w, x, k, 1, y, n, 1) == 0);
    dsv4k_linear_ref(&w, x, k, 1, yr, n, 1);
    int same = 1;
    for (int64_t r = 0; r < n; r++)
        same &= isnan(yr[r]) ? isnan(y[r]) : fabs((double)y[r] - yr[r]) <= 1e-5 * fabs((double)yr[r]) + 1e-30;
    CHECK(same, "dsv4k_linear with a NaN activation agrees with the reference");
    dsv4k_linear_ctx_free(lc);
    dsv4k_pool_free(pl);
    free(wd); free(sd); free(x); free(y); free(yr); free(dq); free(a); free(buf);
}

/*
 * The FP8 kernel with integer weight decoding against the f32 kernel on the
 * same activation row, bit for bit, and against the reference product:
 * every byte code (subnormal ones included), E8M0 and F32 block scales, row
 * blocks whose scales send it back to the f32 kernel (E8M0 0, 255, 250, 3;
 * F32 1e30, 1e-30, NaN), rows [r0, r1) across row blocks; activations
 * quantised to e4m3 (dsv4k_fp8q_prepare) and as they are
 * (dsv4k_fp8x_prepare), with blocks spanning 2^-20 .. 1, scaled by 1e30 and
 * 1e-30, and zero. dsv4k_fp8x_prepare refuses subnormal and non-finite
 * values and blocks spanning more than 2^97; dsv4k_linear then agrees with
 * the reference through the f32 kernel.
 */
static void fp8q(void)
{
    if (!dsv4k_have_avx2()) return;
    fp8q_fn fp8q_fns[3] = { dsv4k_rows_fp8q_avx2, NULL, NULL };
    rows_fn f32_fns[3] = { dsv4k_rows_avx2, NULL, NULL };
#ifdef DSV4K_HAVE_EMUL512
    fp8q_fns[1] = dsv4k_rows_fp8q_avx512_emul;
    f32_fns[1] = dsv4k_rows_avx512_emul;
#endif
    if (dsv4k_have_avx512()) {
        fp8q_fns[2] = dsv4k_rows_fp8q_avx512;
        f32_fns[2] = dsv4k_rows_avx512;
    }
    const int64_t n = 128 * 5 + 9, k = 1024, nb = 6, kb = k / 128;
    uint8_t *wd = malloc((size_t)(n * k));
    for (int64_t i = 0; i < n * k; i++) wd[i] = (uint8_t)(i < 256 ? i : rnd()); /* row 0: every code */
    for (int64_t i = 0; i < n * k; i++) if ((wd[i] & 0x7f) == 0x7f) wd[i] = (uint8_t)(wd[i] & 0x80); /* no NaN */
    uint8_t se[6 * 8];
    float sf[6 * 8];
    for (int64_t i = 0; i < nb * kb; i++) { se[i] = (uint8_t)(118 + rnd() % 12); sf[i] = frand() * 0.01f; }
    se[1 * kb + 2] = 0; se[2 * kb + 5] = 255; se[3 * kb + 1] = 250; se[4 * kb + 7] = 3;
    sf[1 * kb + 2] = 1e30f; sf[2 * kb + 5] = 1e-30f; sf[3 * kb + 1] = NAN;
    float *x = malloc((size_t)k * 4), *dq = malloc((size_t)k * 4), *xp = malloc((size_t)k * 4);
    float *y = malloc((size_t)n * 4), *y2 = malloc((size_t)n * 4), *yr = malloc((size_t)n * 4);
    int8_t ex[8];
    int16_t sh[8];
    for (int f = 0; f < 2; f++) {
        dsv4k_weight w = { f ? DSV4K_W_FP8_F32S : DSV4K_W_FP8, n, k, wd, f ? (const void *)sf : (const void *)se, 0, 0 };
        for (int kind = 0; kind < 4; kind++) {
            int aq = kind < 2;
            for (int64_t i = 0; i < k; i++) {
                int blk = (int)(i / 128);
                float v = frand() * 3;
                if (kind % 2 == 1 || blk == 1) v = ldexpf(frand() > 0 ? 1.0f : -1.0f, -(int)(rnd() % 21)) * (1 + frand() / 2);
                if (blk == 3) v *= 1e30f;
                if (blk == 4) v *= 1e-30f;
                if (blk == 5) v = 0;
                x[i] = v;
            }
            if (aq) {
                dsv4k_act_quant_dq(x, k, dq, ex, 1);
                dsv4k_fp8q_prepare(dq, ex, k, xp, sh);
            } else {
                memcpy(dq, x, (size_t)k * 4);
                T(dsv4k_fp8x_prepare(x, k, xp, sh) == 0);
                /* xp = x · 2^sh exactly (zeros stay zero), the smallest nonzero of a block in [2^3, 2^4) */
                int off = 0;
                for (int64_t i = 0; i < k; i++) off += xp[i] != ldexpf(x[i], sh[i / 128]);
                for (int64_t b = 0; b < k / 128; b++) {
                    float lo = INFINITY;
                    for (int i = 0; i < 128; i++) if (xp[128 * b + i] != 0) lo = fminf(lo, fabsf(xp[128 * b + i]));
                    off += lo != INFINITY && !(lo >= 8.0f && lo < 16.0f);
                }
                CHECK(off == 0, "dsv4k_fp8x_prepare, kind %d: %d values or blocks not as specified", kind, off);
            }
            dsv4k_linear_ref(&w, x, k, 1, yr, n, aq);
            for (int v = 0; v < 3; v++) {
                if (!fp8q_fns[v]) continue;
                for (int64_t r = 0; r < n; r++) y[r] = y2[r] = -7.0f;
                int rc = fp8q_fns[v](&w, 0, 200, dq, xp, sh, y) | fp8q_fns[v](&w, 200, n, dq, xp, sh, y);
                T(f32_fns[v](&w, 0, n, dq, k, 1, y2, n) == 0);
                int diff = 0, bad = 0;
                for (int64_t r = 0; r < n; r++)
                    diff += memcmp(&y[r], &y2[r], 4) != 0 && !(isnan(y[r]) && isnan(y2[r]));
                for (int64_t r = 0; r < n; r++) {
                    double sa = 0;
                    for (int64_t c = 0; c < k; c++) sa += fabs((double)dq[c] * w_at(&w, r, c));
                    /* overflow (E8M0 250): not finite in both, inf - inf may be NaN in one */
                    if (!isfinite(yr[r]) ? isfinite(y[r]) : !(fabs((double)y[r] - yr[r]) <= 1e-6 * sa))
                        bad++;
                }
                CHECK(rc == 0 && diff == 0 && bad == 0,
                      "FP8 kernel with integer decoding (%s), %s scales, activations %s, kind %d: %d rows differ "
                      "from the f32 kernel, %d from the reference", fp4q_names[v], f ? "F32" : "E8M0",
                      aq ? "e4m3" : "f32", kind, diff, bad);
            }
            /* the vdpbf16ps kernel (AVX512-BF16; reference numerics only):
             * exact products, its own f32 summation order */
            typedef int (*fp8b_prep)(const float *, const int8_t *, int64_t, void *);
            typedef int (*fp8b_rows)(const dsv4k_weight *, int64_t, int64_t, const float *, const void *, float *);
            fp8b_prep bp[2] = { NULL, NULL };
            fp8b_rows br[2] = { NULL, NULL };
#ifdef DSV4K_HAVE_EMUL512
            bp[0] = dsv4k_fp8b_prepare_emul;
            br[0] = dsv4k_rows_fp8b_avx512bf16_emul;
#endif
            if (dsv4k_have_avx512bf16()) {
                bp[1] = dsv4k_fp8b_prepare;
                br[1] = dsv4k_rows_fp8b_avx512bf16;
            }
            for (int v = 0; v < 2 && aq; v++) {
                if (!bp[v]) continue;
                void *bb = malloc((size_t)dsv4k_fp8b_bytes(k));
                T(bp[v](dq, ex, k, bb) == 0);
                for (int64_t r = 0; r < n; r++) y[r] = -7.0f;
                int rc = br[v](&w, 0, 131, dq, bb, y) | br[v](&w, 131, n, dq, bb, y);
                int bad = 0;
                for (int64_t r = 0; r < n; r++) {
                    double sa = 0;
                    for (int64_t c = 0; c < k; c++) sa += fabs((double)dq[c] * w_at(&w, r, c));
                    if (!isfinite(yr[r]) ? isfinite(y[r]) : !(fabs((double)y[r] - yr[r]) <= 1e-6 * sa)) bad++;
                }
                CHECK(rc == 0 && bad == 0, "FP8 kernel by vdpbf16ps (%s), %s scales, kind %d: %d rows off the reference",
                      v ? "native" : "SIMDe emulation", f ? "F32" : "E8M0", kind, bad);
                free(bb);
            }
        }
    }
    /* the vdpbf16ps kernel's preparation refuses what it cannot keep exact */
    {
        int (*pf)(const float *, const int8_t *, int64_t, void *) = NULL;
#ifdef DSV4K_HAVE_EMUL512
        pf = dsv4k_fp8b_prepare_emul;
#endif
        if (dsv4k_have_avx512bf16()) pf = dsv4k_fp8b_prepare;
        if (pf) {
            void *bb = malloc((size_t)dsv4k_fp8b_bytes(k));
            for (int64_t i = 0; i < k; i++) x[i] = frand() * 3;
            dsv4k_act_quant_dq(x, k, dq, ex, 1);
            CHECK(pf(dq, ex, k, bb) == 0, "dsv4k_fp8b_prepare takes ordinary activations");
            CHECK(pf(dq, ex, 1000, bb) == -1, "dsv4k_fp8b_prepare refuses k %% 128 != 0");
            ex[3] = 101;
            CHECK(pf(dq, ex, k, bb) == -1, "dsv4k_fp8b_prepare refuses a block exponent above 100");
            ex[3] = -101;
            CHECK(pf(dq, ex, k, bb) == -1, "dsv4k_fp8b_prepare refuses a block exponent below -100");
            dsv4k_act_quant_dq(x, k, dq, ex, 1);
            dq[777] = NAN;
            CHECK(pf(dq, ex, k, bb) == -1, "dsv4k_fp8b_prepare refuses NaN");
            dq[777] = -INFINITY;
            CHECK(pf(dq, ex, k, bb) == -1, "dsv4k_fp8b_prepare refuses an infinity");
            free(bb);
        }
    }
    /* refusals of dsv4k_fp8x_prepare, and dsv4k_linear (float numerics) through the f32 kernel */
    {
        dsv4k_weight w = { DSV4K_W_FP8, n, k, wd, se, 0, 0 };
        dsv4k_pool *pl = dsv4k_pool_create(2);
        dsv4k_linear_ctx *lc = dsv4k_linear_ctx_create(pl, k, 1);
        const char *what[5] = { "none", "a subnormal", "NaN", "an infinity", "a block spanning 2^98" };
        for (int t = 0; t < 5; t++) {
            for (int64_t i = 0; i < k; i++) x[i] = frand() * 3;
            if (t == 1) x[300] = 1e-40f;
            if (t == 2) x[300] = NAN;
            if (t == 3) x[300] = INFINITY;
            if (t == 4) { x[300] = 0x1p60f; x[301] = 0x1p-38f; }
            CHECK((dsv4k_fp8x_prepare(x, k, xp, sh) == 0) == (t == 0), "dsv4k_fp8x_prepare with %s: %s", what[t],
                  t ? "refused" : "taken");
            T(lc && dsv4k_linear(lc, &w, x, k, 1, y, n, 0) == 0);
            dsv4k_linear_ref(&w, x, k, 1, yr, n, 0);
            int bad = 0;
            for (int64_t r = 0; r < n; r++) {
                double sa = 0;
                for (int64_t c = 0; c < k; c++) sa += fabs((double)x[c] * w_at(&w, r, c));
                if (!isfinite(yr[r]) ? isfinite(y[r]) : !(fabs((double)y[r] - yr[r]) <= 1e-6 * sa + 1e-37)) bad++;
            }
            CHECK(bad == 0, "dsv4k_linear (float numerics) with %s agrees with the reference (%d rows off)", what[t],
                  bad);
        }
        dsv4k_linear_ctx_free(lc);
        dsv4k_pool_free(pl);
    }
    dsv4k_weight w4 = { DSV4K_W_FP4, 1, k, wd, se, 0, 0 }, w5 = { DSV4K_W_FP8, 1, 1000, wd, se, 0, 0 };
    y[0] = -7.0f;
    for (int v = 0; v < 3; v++)
        if (fp8q_fns[v])
            CHECK(fp8q_fns[v](&w4, 0, 1, dq, xp, sh, y) == -1 && fp8q_fns[v](&w5, 0, 1, dq, xp, sh, y) == -1 &&
                      y[0] == -7.0f,
                  "the FP8 kernel with integer decoding (%s) declines FP4 and k %% 128 != 0, writing nothing",
                  fp4q_names[v]);
    free(wd); free(x); free(dq); free(xp); free(y); free(y2); free(yr);
}

/*
 * Row-interleaved weights (kernels.h, dsv4k_repack_rows): every kernel reads
 * them bit for bit as the plain layout — the four-row (AVX-512) and two-row
 * (AVX2) passes over a group keep each row's sums in the one-row order.
 * Checked for BF16 and FP8 (E8M0 and F32 scales) with every code, extreme
 * and odd scales, row counts that are not a multiple of 4 (a plain tail),
 * row views starting inside a group, ranges cutting groups, 1, 2 and 5
 * activation rows, both numerics, every kernel level and the reference.
 */
typedef int (*fp8b_fn)(const dsv4k_weight *, int64_t, int64_t, const float *, const void *, float *);
typedef int (*fp8b_prep_fn)(const float *, const int8_t *, int64_t, void *);

/* the same bits, or both NaN (which NaN an FMA passes on depends on the
 * operand order the compiler chose for the instruction) */
static int same_bits(const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, 4) && !(isnan(a[i]) && isnan(b[i]))) return 0;
    return 1;
}

static void interleaved_case(int fmt, int64_t n, int64_t k, int extreme)
{
    int64_t rb = dsv4k_ilv_row_bytes(fmt, k), kb = (k + 127) / 128, nb = (n + 127) / 128;
    CHECK(rb > 0, "fmt %d k %lld can be interleaved", fmt, (long long)k);
    if (rb <= 0) return;
    uint8_t *wd = malloc((size_t)(n * rb)), *wi = malloc((size_t)(n * rb));
    for (int64_t i = 0; i < n * rb; i++) wd[i] = (uint8_t)rnd();
    if (fmt == DSV4K_W_BF16) {
        /* mostly finite values, with every bit pattern in the first rows */
        for (int64_t i = 0; i < n * k; i++) {
            uint16_t h = i < 65536 && extreme ? (uint16_t)i : dsv4k_f32_to_bf16(frand() * (extreme ? 1e20f : 1.0f));
            memcpy(wd + 2 * i, &h, 2);
        }
    } else {
        for (int64_t i = 0; i < n * k; i++) {
            if (i < 256) wd[i] = (uint8_t)i; /* row 0: every code */
            else if (!extreme && (wd[i] & 0x7f) == 0x7f) wd[i] = 0x7e;
        }
    }
    uint8_t *se = malloc((size_t)(nb * kb));
    float *sf = malloc((size_t)(nb * kb) * 4);
    for (int64_t i = 0; i < nb * kb; i++) { se[i] = (uint8_t)(118 + rnd() % 12); sf[i] = frand() * 0.01f; }
    if (extreme && nb * kb > 5) {
        se[0] = 0; se[1] = 254; se[2] = 1; se[nb * kb - 1] = 255; se[3] = 20; se[4] = 230;
        sf[0] = 1e30f; sf[1] = 1e-30f; sf[2] = 0x1p-101f; sf[3] = 0x1p101f; sf[nb * kb - 1] = NAN;
    }
    const void *sd = fmt == DSV4K_W_FP8 ? (const void *)se : fmt == DSV4K_W_FP8_F32S ? (const void *)sf : NULL;
    int64_t ilv = dsv4k_repack_rows(wi, wd, n, rb);
    CHECK(ilv == n / 4 * 4, "repack of %lld rows interleaves %lld", (long long)n, (long long)ilv);
    dsv4k_weight wp = { fmt, n, k, wd, sd, 0, 0 }, wv = { fmt, n, k, wi, sd, 0, ilv };
    /* the layout: every byte where kernels.h says; the tail rows in place */
    int moved = 0;
    for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < rb; c++) moved += *dsv4k_row_byte(&wv, r, rb, c) != wd[r * rb + c];
    for (int64_t r = ilv; r < n; r++) moved += memcmp(wi + r * rb, wd + r * rb, (size_t)rb) != 0;
    if (ilv >= 4) moved += memcmp(wi + 64, wd + rb, 64) != 0; /* chunk 0 of row 1 second */
    CHECK(moved == 0, "interleaved layout of fmt %d n %lld k %lld: %d bytes misplaced", fmt, (long long)n,
          (long long)k, moved);
    /* rows decoded */
    float *d1 = malloc((size_t)k * 4), *d2 = malloc((size_t)k * 4);
    int dbad = 0;
    for (int64_t r = 0; r < n; r++) {
        dsv4k_decode_row(&wp, r, d1);
        dsv4k_decode_row(&wv, r, d2);
        dbad += !same_bits(d1, d2, k);
        if (dsv4k_have_avx2()) {
            int a = dsv4k_decode_row_avx2(&wp, r, d1), b = dsv4k_decode_row_avx2(&wv, r, d2);
            dbad += a != b || (a == 0 && !same_bits(d1, d2, k));
        }
    }
    CHECK(dbad == 0, "decode_row (portable, AVX2) of interleaved fmt %d: %d rows differ", fmt, dbad);
    int64_t ms[3] = { 1, 2, 5 };
    float *x = malloc((size_t)(5 * k) * 4), *y1 = malloc((size_t)(5 * n) * 4), *y2 = malloc((size_t)(5 * n) * 4);
    for (int64_t i = 0; i < 5 * k; i++) {
        x[i] = frand() * 3;
        if (extreme && i % 131 == 7) x[i] *= 1e25f;
        if (extreme && i % 137 == 9) x[i] *= 1e-25f;
    }
    dsv4k_pool *pl = dsv4k_pool_create(2);
    dsv4k_linear_ctx *lc = dsv4k_linear_ctx_create(pl, k, 5);
    dsv4k_gemm *gm = ONEDNN ? dsv4k_gemm_create(2, k, 5) : NULL;
    const int isas[4] = { DSV4K_ISA_BEST, DSV4K_ISA_AVX512, DSV4K_ISA_AVX2, DSV4K_ISA_PORTABLE };
    int bad = 0, runs = 0;
    for (int aq = 0; aq <= 1; aq++)
        for (int mi = 0; mi < 3; mi++) {
            int64_t m = ms[mi];
            dsv4k_linear_ref(&wp, x, k, m, y1, n, aq);
            dsv4k_linear_ref(&wv, x, k, m, y2, n, aq);
            bad += !same_bits(y1, y2, m * n);
            for (int is = 0; is < 4; is++)
                for (int iq = 0; iq <= 1; iq++) {
                    dsv4k_linear_set_isa(lc, isas[is]);
                    dsv4k_linear_set_intq(lc, iq);
                    for (int64_t i = 0; i < m * n; i++) y1[i] = y2[i] = -7.0f;
                    int a = dsv4k_linear(lc, &wp, x, k, m, y1, n, aq), b = dsv4k_linear(lc, &wv, x, k, m, y2, n, aq);
                    bad += a != 0 || b != 0 || !same_bits(y1, y2, m * n);
                    if (getenv("DSV4_TEST_DEBUG") && !same_bits(y1, y2, m * n))
                        for (int64_t i = 0; i < m * n; i++)
                            if (memcmp(y1 + i, y2 + i, 4)) printf("aq %d m %lld isa %d iq %d i %lld: %a %a\n", aq, (long long)m, isas[is], iq, (long long)i, y1[i], y2[i]);
                    runs++;
                    /* a view from inside a group to before the last row */
                    if (n > 6) {
                        dsv4k_weight vp = wp, vv = wv;
                        vp.row0 = vv.row0 = 1 + n % 3;
                        vp.n = vv.n = n - vp.row0 - 1;
                        for (int64_t i = 0; i < m * n; i++) y1[i] = y2[i] = -7.0f;
                        a = dsv4k_linear(lc, &vp, x, k, m, y1, n, aq);
                        b = dsv4k_linear(lc, &vv, x, k, m, y2, n, aq);
                        bad += a != 0 || b != 0 || !same_bits(y1, y2, m * n);
                    }
                }
            if (gm) {
                for (int64_t i = 0; i < m * n; i++) y1[i] = y2[i] = -7.0f;
                int a = dsv4k_gemm_run(gm, &wp, x, k, m, y1, n, aq), b = dsv4k_gemm_run(gm, &wv, x, k, m, y2, n, aq);
                bad += a != b || (a == 0 && !same_bits(y1, y2, m * n));
            }
        }
    dsv4k_linear_set_isa(lc, DSV4K_ISA_BEST);
    dsv4k_linear_set_intq(lc, 1);
    CHECK(bad == 0, "interleaved fmt %d n %lld k %lld%s: %d of %d products differ from the plain layout's bits", fmt,
          (long long)n, (long long)k, extreme ? " (extreme values)" : "", bad, runs);
    /* the row kernels called directly on ranges that cut groups: the
     * AVX-512 build on SIMDe (any x86-64) and natively */
    rows_fn fns[2] = { NULL, NULL };
    fp8b_fn bfns[2] = { NULL, NULL };
    fp8b_prep_fn bprep[2] = { NULL, NULL };
#ifdef DSV4K_HAVE_EMUL512
    fns[0] = dsv4k_rows_avx512_emul;
    bfns[0] = dsv4k_rows_fp8b_avx512bf16_emul;
    bprep[0] = dsv4k_fp8b_prepare_emul;
#endif
    if (dsv4k_have_avx512()) fns[1] = dsv4k_rows_avx512;
    if (dsv4k_have_avx512() && dsv4k_have_avx512bf16()) {
        bfns[1] = dsv4k_rows_fp8b_avx512bf16;
        bprep[1] = dsv4k_fp8b_prepare;
    }
    float *xs = malloc((size_t)k * 4), *dq = malloc((size_t)k * 4);
    void *b16 = malloc((size_t)dsv4k_fp8b_bytes(k) + 64);
    int8_t ex[128];
    int dbad2 = 0, checked = 0;
    int64_t cut[4] = { 0, n / 3, n / 3 + 5 < n ? n / 3 + 5 : n, n };
    for (int f = 0; f < 2; f++) {
        if (fns[f]) {
            if (fmt == DSV4K_W_BF16) dsv4k_split_even_odd(x, k, xs);
            else memcpy(xs, x, (size_t)k * 4);
            for (int c = 0; c < 3; c++) {
                int a = fns[f](&wp, cut[c], cut[c + 1], xs, k, 1, y1, n), b = fns[f](&wv, cut[c], cut[c + 1], xs, k, 1, y2, n);
                dbad2 += a != b;
            }
            dbad2 += !same_bits(y1, y2, n);
            checked++;
        }
        if (bfns[f] && fmt != DSV4K_W_BF16 && k % 128 == 0 && k <= 8192) {
            dsv4k_act_quant_dq(x, k, dq, ex, 0);
            if (bprep[f](dq, ex, k, b16) == 0) {
                for (int c = 0; c < 3; c++) {
                    int a = bfns[f](&wp, cut[c], cut[c + 1], dq, b16, y1), b = bfns[f](&wv, cut[c], cut[c + 1], dq, b16, y2);
                    dbad2 += a != 0 || b != 0;
                }
                dbad2 += !same_bits(y1, y2, n);
                checked++;
            }
        }
    }
    CHECK(dbad2 == 0, "AVX-512 row kernels (emulated and native) on interleaved fmt %d n %lld k %lld, ranges cutting "
          "groups: %d differences in %d checks", fmt, (long long)n, (long long)k, dbad2, checked);
    free(xs); free(dq); free(b16);
    dsv4k_gemm_free(gm);
    dsv4k_linear_ctx_free(lc);
    dsv4k_pool_free(pl);
    free(x); free(y1); free(y2); free(d1); free(d2);
    free(wd); free(wi); free(se); free(sf);
}

static void interleaved(void)
{
    uint8_t a[3 * 64], b[3 * 64];
    for (int i = 0; i < 3 * 64; i++) a[i] = (uint8_t)i;
    CHECK(dsv4k_repack_rows(b, a, 3, 64) == 0 && !memcmp(a, b, sizeof a), "3 rows: a plain copy");
    CHECK(dsv4k_repack_rows(b, a, 2, 96) == 0 && !memcmp(a, b, 192), "rows of 96 bytes: a plain copy");
    T(dsv4k_ilv_row_bytes(DSV4K_W_BF16, 48) == 0 && dsv4k_ilv_row_bytes(DSV4K_W_BF16, 64) == 128);
    T(dsv4k_ilv_row_bytes(DSV4K_W_FP8, 128) == 128 && dsv4k_ilv_row_bytes(DSV4K_W_FP4, 128) == 0);
    T(dsv4k_ilv_row_bytes(DSV4K_W_F32, 128) == 0 && dsv4k_ilv_row_bytes(DSV4K_W_FP8, 96) == 0);
    /* what the loader interleaves: BF16 rows of a multiple of 64 bytes */
    T(dsv4k_ilv_load_row_bytes(DSV4K_W_BF16, 4096) == (dsv4k_have_avx512() ? 8192 : 0));
    T(dsv4k_ilv_load_row_bytes(DSV4K_W_BF16, 40) == 0);
    T(dsv4k_ilv_load_row_bytes(DSV4K_W_FP8, 4096) == 0 && dsv4k_ilv_load_row_bytes(DSV4K_W_FP4, 4096) == 0);
    for (int extreme = 0; extreme <= 1; extreme++) {
        interleaved_case(DSV4K_W_BF16, 7, 64, extreme);
        interleaved_case(DSV4K_W_BF16, 13, 96, extreme);   /* a 32-tail after the 64-steps */
        interleaved_case(DSV4K_W_BF16, 9, 4096, extreme);  /* every bf16 code */
        interleaved_case(DSV4K_W_BF16, 66, 256, extreme);
        interleaved_case(DSV4K_W_FP8, 130, 256, extreme);  /* 2 row blocks, ragged */
        interleaved_case(DSV4K_W_FP8, 263, 1152, extreme); /* 3 row blocks, 9 column blocks */
        interleaved_case(DSV4K_W_FP8_F32S, 131, 384, extreme);
        interleaved_case(DSV4K_W_FP8, 6, 192, extreme);    /* k % 128: the f32 kernels */
    }
}

int main(void)
{
#ifndef DSV4K_HAVE_EMUL512
    if (!dsv4k_have_avx512()) printf("note: SIMDe headers missing and no AVX-512 here: AVX-512 kernels not checked\n");
#endif
    decode_rows();
    kv_codecs();
    formats();
    ops();
    attn512();
    int64_t ms[] = { 1, 3, 17 };
    for (int aq = 0; aq <= 1; aq++) {
        for (size_t i = 0; i < 3; i++) {
            linear_case(DSV4K_W_FP8, ms[i], 130, 256, aq);
            linear_case(DSV4K_W_FP8_F32S, ms[i], 5, 384, aq);
            linear_case(DSV4K_W_FP4, ms[i], 33, 128, aq);
            linear_case(DSV4K_W_BF16, ms[i], 7, aq ? 128 : 67, aq);
            linear_case(DSV4K_W_F32, ms[i], 1, aq ? 256 : 31, aq);
            if (i == 2) linear_case(DSV4K_W_FP4, 40, 300, 512, aq); /* several blocks of the oneDNN route */
            if (i == 0 && !aq) {
                linear_case(DSV4K_W_FP4, 1, 9, 96, aq);      /* a 32-block after the last pair */
                linear_case(DSV4K_W_BF16, 1, 5, 48, aq);     /* a 16-tail after the 32-steps */
                linear_case(DSV4K_W_BF16, 1, 5, 96, aq);     /* a 32-block after the 64-steps */
            }
            if (i == 0) linear_case(DSV4K_W_FP8, 1, 300, 1152, aq); /* 3 row blocks, 9 column blocks */
            if (i == 0 && aq) linear_case(DSV4K_W_FP4, 1, 70, 1024, aq); /* the integer FP4 kernel, 32 blocks */
        }
    }
    fp4q();
    fp8q();
    interleaved();
    pool();
    pool_spin();
    return test_summary();
}
