/*
 * tests/kernels/test_mrows.c — products of m = 1..8 activation rows whose
 * rows are bit for bit the one-row products (dsv4k_linear_set_mrows,
 * kernels/x86/gemv_mrows_avx512.c): every weight format and kernel route
 * (FP4 integer/VNNI, FP8 by vdpbf16ps, FP8 with f32 activations, BF16 plain
 * and interleaved, FP4 in f32, F32), every instruction-set level, 1 and 2
 * threads, ragged row counts, row views that cut interleaved groups,
 * extreme weight scales and activations the preparations refuse (rows that
 * take another route alone), contexts with fewer prepared rows than m; and
 * every result against the scalar reference within the usual tolerance.
 * The fused kernels also directly, natively and on SIMDe, against their
 * one-row twins.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"
#include "linear.h"
#include "x86/gemv.h"
#include "x86/gemv_mrows.h"
#include "pool.h"
#include "testutil.h"

#define MMAX DSV4K_MROWS_EXACT /* rows of the dsv4k_linear cases */
#define KMAX DSV4K_MROWS_MAX   /* rows of the kernels called directly */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)(rng >> 32); }
static float frand(void) { return (float)((rnd() >> 8) / 16777216.0 * 2.0 - 1.0); }

static int same_bits(const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, 4) && !(isnan(a[i]) && isnan(b[i]))) return 0;
    return 1;
}

typedef struct wbuf {
    dsv4k_weight w;
    uint8_t *wd, *wi;
    void *sd;
} wbuf;

/* random weights; extreme: scales at the edges (FP8 blocks and FP4 rows
 * that the fast kernels hand to the f32 ones, a NaN scale) */
static void make_weight(wbuf *b, int fmt, int64_t n, int64_t k, int extreme, int ilv)
{
    int64_t kb = (k + 127) / 128, nb = (n + 127) / 128;
    size_t es = fmt == DSV4K_W_BF16 ? 2 : fmt == DSV4K_W_F32 ? 4 : 1;
    size_t wbytes = fmt == DSV4K_W_FP4 ? (size_t)(n * k / 2) : (size_t)(n * k) * es;
    b->wd = malloc(wbytes + 64);
    b->wi = NULL;
    size_t sbytes = fmt == DSV4K_W_FP4 ? (size_t)(n * (k / 32)) : (size_t)(nb * kb) * 4;
    b->sd = malloc(sbytes + 8);
    for (size_t i = 0; i < wbytes; i++) b->wd[i] = (uint8_t)rnd();
    if (fmt == DSV4K_W_BF16)
        for (int64_t i = 0; i < n * k; i++) { uint16_t h = dsv4k_f32_to_bf16(frand()); memcpy(b->wd + 2 * i, &h, 2); }
    if (fmt == DSV4K_W_F32)
        for (int64_t i = 0; i < n * k; i++) ((float *)b->wd)[i] = frand();
    if (fmt == DSV4K_W_FP8 || fmt == DSV4K_W_FP8_F32S)
        for (int64_t i = 0; i < n * k; i++) if ((b->wd[i] & 0x7f) == 0x7f) b->wd[i] = 0x7e;
    if (fmt == DSV4K_W_FP8) {
        uint8_t *s = b->sd;
        for (int64_t i = 0; i < nb * kb; i++) s[i] = (uint8_t)(118 + rnd() % 12);
        if (extreme) { s[0] = 20; if (nb * kb > 2) s[nb * kb - 1] = 230; }
    }
    if (fmt == DSV4K_W_FP8_F32S) {
        float *s = b->sd;
        for (int64_t i = 0; i < nb * kb; i++) s[i] = frand() * 0.01f;
        if (extreme) { s[0] = 1e30f; if (nb * kb > 2) s[1] = 0x1p-101f; }
    }
    if (fmt == DSV4K_W_FP4) {
        uint8_t *s = b->sd;
        for (int64_t i = 0; i < n * (k / 32); i++) s[i] = (uint8_t)(118 + rnd() % 16);
        if (extreme && n > 3) { s[k / 32 + 1] = 0; s[2 * (k / 32)] = 254; s[3 * (k / 32) + 2] = 255; }
    }
    dsv4k_weight w = { fmt, n, k, b->wd, b->sd, 0, 0 };
    int64_t rb = dsv4k_ilv_row_bytes(fmt, k);
    if (ilv && rb > 0) {
        b->wi = malloc((size_t)(n * rb) + 64);
        w.ilv = dsv4k_repack_rows(b->wi, b->wd, n, rb);
        w.w = b->wi;
    }
    b->w = w;
}

static void free_weight(wbuf *b) { free(b->wd); free(b->wi); free(b->sd); }

/* Σ|a·w| per output, the activations as the reference sees them */
static void sum_abs(const dsv4k_weight *w, const float *x, int64_t m, int aq, double *sa)
{
    int64_t k = w->k;
    float *row = malloc((size_t)k * 4), *a = malloc((size_t)k * 4);
    int8_t ex[128];
    for (int64_t j = 0; j < w->n; j++) {
        dsv4k_decode_row(w, j, row);
        for (int64_t i = 0; i < m; i++) {
            if (aq && k % 128 == 0) dsv4k_act_quant_dq(x + i * k, k, a, ex, 0);
            else memcpy(a, x + i * k, (size_t)k * 4);
            double s = 0;
            for (int64_t c = 0; c < k; c++) s += fabs((double)a[c] * row[c]);
            sa[i * w->n + j] = s;
        }
    }
    free(row); free(a);
}

/*
 * One weight (or view) through dsv4k_linear for every m, level, intq and
 * mrows mode: each m-row product against the m one-row products (bits),
 * and against the reference (relative to Σ|a·w|, finite rows).
 * special: 0 plain activations, 1 large and tiny values mixed in, 2 one
 * row holding an infinity (the preparations refuse it: that row alone).
 */
static void linear_mcase(const char *what, const dsv4k_weight *w, int special, int threads, int64_t max_m,
                         int sensitive)
{
    int64_t n = w->n, k = w->k;
    float *x = malloc((size_t)(MMAX * k) * 4), *ym = malloc((size_t)(MMAX * n) * 4), *y1 = malloc((size_t)(MMAX * n) * 4);
    float *yr = malloc((size_t)(MMAX * n) * 4);
    double *sa = malloc((size_t)(MMAX * n) * sizeof(double));
    for (int64_t i = 0; i < MMAX * k; i++) {
        x[i] = frand() * 3;
        if (special == 1 && i % 131 == 7) x[i] *= 1e25f;
        if (special == 1 && i % 137 == 9) x[i] *= 1e-25f;
        if (special == 1 && i % 139 == 3) x[i] = 1e-40f; /* f32 subnormal: fp8x refuses the block */
    }
    if (special == 2) x[2 * k + 5] = INFINITY;
    dsv4k_pool *pl = threads > 1 ? dsv4k_pool_create(threads) : NULL;
    dsv4k_linear_ctx *lc = dsv4k_linear_ctx_create(pl, k, max_m);
    const int isas[4] = { DSV4K_ISA_BEST, DSV4K_ISA_AVX512, DSV4K_ISA_AVX2, DSV4K_ISA_PORTABLE };
    int bad = 0, far = 0, runs = 0, first = 1;
    double worst = 0;
    for (int aq = 0; aq <= 1; aq++) {
        dsv4k_linear_ref(w, x, k, MMAX, yr, n, aq);
        sum_abs(w, x, MMAX, aq, sa);
        for (int is = 0; is < 4; is++)
            for (int iq = 0; iq <= 1; iq++)
                for (int mode = 1; mode <= 3; mode++) {
                    /* DSV4_TEST_LIGHT (the ThreadSanitizer tree): the best and
                     * the AVX2 level, modes 1 and 3 (every kernel route and
                     * every thread still runs; the bits of the others are
                     * checked in the other trees) */
                    if (test_light() && (is == 1 || is == 3 || mode == 2)) continue;
                    dsv4k_linear_set_isa(lc, isas[is]);
                    dsv4k_linear_set_intq(lc, iq);
                    dsv4k_linear_set_mrows(lc, mode);
                    for (int64_t i = 0; i < MMAX; i++)
                        if (dsv4k_linear(lc, w, x + i * k, k, 1, y1 + i * n, n, aq) != 0) bad++;
                    for (int64_t m = 1; m <= MMAX; m++) {
                        if (m > max_m && aq && k % 128 == 0 && max_m < 1) continue;
                        for (int64_t i = 0; i < m * n; i++) ym[i] = -7.0f;
                        int rc = dsv4k_linear(lc, w, x, k, m, ym, n, aq);
                        int ok = rc == 0 && same_bits(ym, y1, m * n);
                        if (!ok && first) {
                            first = 0;
                            for (int64_t i = 0; i < m * n; i++)
                                if (memcmp(ym + i, y1 + i, 4)) {
                                    printf("  first difference: aq %d isa %d intq %d mode %d m %lld row %lld out %lld: %a vs %a\n",
                                           aq, isas[is], iq, mode, (long long)m, (long long)(i / n), (long long)(i % n),
                                           ym[i], y1[i]);
                                    break;
                                }
                        }
                        bad += !ok;
                        runs++;
                        for (int64_t i = 0; i < m * n; i++) {
                            if (!isfinite(yr[i]) || !isfinite(sa[i])) continue;
                            double d = fabs((double)ym[i] - yr[i]) / (sa[i] + 1e-30);
                            if (d > worst) worst = d;
                            far += !(d < 1e-5);
                        }
                    }
                }
    }
    if (sensitive) {
        /* the check can fail: the f32 kernels of many rows (mode 0) sum in
         * another order than the one-row kernels */
        int diff0 = 0;
        dsv4k_linear_set_isa(lc, DSV4K_ISA_BEST);
        dsv4k_linear_set_intq(lc, 1);
        dsv4k_linear_set_mrows(lc, 0);
        for (int aq = 0; aq <= 1; aq++) {
            for (int64_t i = 0; i < MMAX; i++) dsv4k_linear(lc, w, x + i * k, k, 1, y1 + i * n, n, aq);
            for (int64_t m = 2; m <= MMAX; m++)
                diff0 += dsv4k_linear(lc, w, x, k, m, ym, n, aq) == 0 && !same_bits(ym, y1, m * n);
        }
        CHECK(diff0 > 0, "%s: without the m-row route, %d of the m-row products differ from the one-row ones", what,
              diff0);
    }
    CHECK(bad == 0, "%s (%s, %d thread%s, max_m %lld): %d of %d m-row products differ from the one-row products",
          what, special == 2 ? "a row with inf" : special ? "extreme activations" : "plain", threads,
          threads > 1 ? "s" : "", (long long)max_m, bad, runs);
    CHECK(far == 0, "%s: m-row products vs linear_ref: %d outputs off (worst rel %.3g)", what, far, worst);
    dsv4k_linear_ctx_free(lc);
    dsv4k_pool_free(pl);
    free(x); free(ym); free(y1); free(yr); free(sa);
}

static void linear_all(void)
{
    struct { int fmt; int64_t n, k; int ilv; const char *what; } cs[] = {
        { DSV4K_W_FP4, 37, 1024, 0, "FP4 k 1024 (VNNI second form)" },
        { DSV4K_W_FP4, 21, 1152, 0, "FP4 k 1152 (integer first form)" },
        { DSV4K_W_FP4, 9, 96, 0, "FP4 k 96 (f32 kernels)" },
        { DSV4K_W_FP8, 130, 256, 0, "FP8 E8M0 130x256" },
        { DSV4K_W_FP8, 263, 1152, 1, "FP8 E8M0 interleaved 263x1152" },
        { DSV4K_W_FP8_F32S, 131, 384, 0, "FP8 f32 scales 131x384" },
        { DSV4K_W_FP8, 6, 192, 0, "FP8 k 192 (f32 kernels)" },
        { DSV4K_W_BF16, 23, 256, 0, "BF16 plain 23x256" },
        { DSV4K_W_BF16, 66, 96, 1, "BF16 interleaved 66x96" },
        { DSV4K_W_BF16, 13, 4096, 1, "BF16 interleaved 13x4096" },
        { DSV4K_W_BF16, 5, 48, 0, "BF16 k 48" },
        { DSV4K_W_F32, 7, 256, 0, "F32 7x256" },
    };
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++)
        for (int extreme = 0; extreme <= 1; extreme++) {
            wbuf b;
            make_weight(&b, cs[c].fmt, cs[c].n, cs[c].k, extreme, cs[c].ilv);
            char what[160];
            snprintf(what, sizeof what, "%s%s", cs[c].what, extreme ? ", extreme scales" : "");
            /* where a one-row kernel sums in its own order (AVX-512 here) */
            int sens = !extreme && dsv4k_have_avx512() && cs[c].fmt != DSV4K_W_F32 && cs[c].k % 128 == 0;
            linear_mcase(what, &b.w, 0, 2, MMAX, sens);
            if (!extreme) {
                linear_mcase(what, &b.w, 1, 2, MMAX, 0);
                linear_mcase(what, &b.w, 2, 1, MMAX, 0);
                linear_mcase(what, &b.w, 0, 1, 3, 0); /* 8 rows in pieces of 3 */
            }
            /* a view from inside an interleaved group to before the last row */
            if (cs[c].n > 6) {
                dsv4k_weight v = b.w;
                v.row0 = 1 + cs[c].n % 3;
                v.n = cs[c].n - v.row0 - 1;
                snprintf(what, sizeof what, "%s%s, rows [%lld, +%lld)", cs[c].what, extreme ? ", extreme scales" : "",
                         (long long)v.row0, (long long)v.n);
                linear_mcase(what, &v, 0, 2, MMAX, 0);
            }
            free_weight(&b);
        }
}

/* ---- dsv4k_linear_batch: each job bit for bit its dsv4k_linear ---- */

#define BX 4096 /* stride of the shared activation rows */

static void batch_case(const char *what, wbuf *wb, int nw, int threads, int64_t max_k, int njobs, int special)
{
    float *X = malloc((size_t)(5 * BX + 128) * 4);
    for (int64_t i = 0; i < 5 * BX + 128; i++) {
        X[i] = frand() * 3;
        if (special && i % 131 == 7) X[i] *= 1e25f;
        if (special && i % 139 == 3) X[i] = 1e-40f;
    }
    X[3 * BX + 9] = INFINITY; /* row 3: every preparation refuses it */
    dsv4k_linear_job *jobs = malloc((size_t)njobs * sizeof *jobs);
    float **ye = malloc((size_t)njobs * sizeof(float *));
    for (int j = 0; j < njobs; j++) {
        const dsv4k_weight *w = &wb[(j * 7 + j / nw) % nw].w;
        int xr = (int)(rnd() % 5);
        jobs[j].w = w;
        jobs[j].x = X + xr * BX + (xr == 4 ? 128 : 0); /* row 4 shifted: a pointer no other row has */
        jobs[j].y = malloc((size_t)w->n * 4);
        ye[j] = malloc((size_t)w->n * 4);
    }
    dsv4k_pool *pl = threads > 1 ? dsv4k_pool_create(threads) : NULL;
    dsv4k_linear_ctx *lc = dsv4k_linear_ctx_create(pl, max_k, 4);
    const int isas[3] = { DSV4K_ISA_BEST, DSV4K_ISA_AVX512, DSV4K_ISA_AVX2 };
    int bad = 0, badrc = 0, runs = 0, first = 1;
    for (int aq = 0; aq <= 1; aq++)
        for (int is = 0; is < 3; is++)
            for (int iq = 0; iq <= 1; iq++) {
                dsv4k_linear_set_isa(lc, isas[is]);
                dsv4k_linear_set_intq(lc, iq);
                int want = 0;
                for (int j = 0; j < njobs; j++) {
                    for (int64_t i = 0; i < jobs[j].w->n; i++) ye[j][i] = -5.0f;
                    if (dsv4k_linear(lc, jobs[j].w, jobs[j].x, jobs[j].w->k, 1, ye[j], jobs[j].w->n, aq) != 0) want = -1;
                    for (int64_t i = 0; i < jobs[j].w->n; i++) jobs[j].y[i] = -7.0f;
                }
                int rc = dsv4k_linear_batch(lc, jobs, njobs, aq);
                badrc += rc != want;
                for (int j = 0; j < njobs; j++) {
                    int64_t n = jobs[j].w->n;
                    if (jobs[j].w->k > max_k) {
                        /* refused alone: untouched in both */
                        int untouched = 1;
                        for (int64_t i = 0; i < n; i++) untouched &= jobs[j].y[i] == -7.0f;
                        bad += !untouched;
                        continue;
                    }
                    int ok = same_bits(jobs[j].y, ye[j], n);
                    if (!ok && first) {
                        first = 0;
                        int64_t i = 0;
                        while (i < n && (!memcmp(jobs[j].y + i, ye[j] + i, 4) || (isnan(jobs[j].y[i]) && isnan(ye[j][i]))))
                            i++;
                        printf("  first difference: %s aq %d isa %d intq %d job %d (fmt %d, %lldx%lld) out %lld: %a vs %a\n",
                               what, aq, isas[is], iq, j, jobs[j].w->fmt, (long long)n, (long long)jobs[j].w->k,
                               (long long)i, jobs[j].y[i], ye[j][i]);
                    }
                    bad += !ok;
                    runs++;
                }
            }
    CHECK(bad == 0 && badrc == 0 && runs > 0,
          "batch %s (%d jobs, %d thread%s, max_k %lld): %d of %d products differ from dsv4k_linear's, %d return codes",
          what, njobs, threads, threads > 1 ? "s" : "", (long long)max_k, bad, runs, badrc);
    dsv4k_linear_ctx_free(lc);
    dsv4k_pool_free(pl);
    for (int j = 0; j < njobs; j++) { free(jobs[j].y); free(ye[j]); }
    free(jobs); free(ye); free(X);
}

static void batch_all(void)
{
    struct { int fmt; int64_t n, k; int ilv; } cs[] = {
        { DSV4K_W_FP4, 37, 1024, 0 },  { DSV4K_W_FP4, 300, 2048, 0 }, { DSV4K_W_FP4, 21, 1152, 0 },
        { DSV4K_W_FP8, 130, 256, 0 },  { DSV4K_W_FP8, 263, 1152, 1 }, { DSV4K_W_FP8_F32S, 131, 384, 0 },
        { DSV4K_W_FP8, 6, 192, 0 },    { DSV4K_W_BF16, 23, 256, 0 },  { DSV4K_W_BF16, 66, 96, 1 },
        { DSV4K_W_BF16, 13, 4096, 1 }, { DSV4K_W_F32, 7, 256, 0 },
    };
    enum { NW = sizeof cs / sizeof cs[0] };
    for (int extreme = 0; extreme <= 1; extreme++) {
        wbuf b[NW + 1];
        for (int c = 0; c < NW; c++) make_weight(&b[c], cs[c].fmt, cs[c].n, cs[c].k, extreme, cs[c].ilv);
        /* a view from inside an interleaved group */
        b[NW] = b[4];
        b[NW].w.row0 = 2;
        b[NW].w.n = 250;
        const char *what = extreme ? "extreme scales" : "plain";
        batch_case(what, b, NW + 1, 2, 4096, 12, 0);
        if (!extreme) {
            batch_case("extreme activations", b, NW + 1, 2, 4096, 12, 1);
            batch_case(what, b, NW + 1, 1, 4096, 5, 0);
            batch_case("more jobs than one loop takes", b, NW + 1, 2, 4096, DSV4K_BATCH_MAX + 9, 0);
            batch_case("jobs wider than the context", b, NW + 1, 2, 1024, 12, 0);
        }
        for (int c = 0; c < NW; c++) free_weight(&b[c]);
    }
    CHECK(dsv4k_linear_batch(NULL, NULL, 1, 0) == -1 && dsv4k_linear_batch(NULL, NULL, 0, 0) == 0,
          "batch: NULL arguments give -1, no jobs 0");
}

/* ---- the fused kernels directly: native and SIMDe builds ---- */

typedef void (*fp4v_fn)(const dsv4k_weight *, int64_t, int64_t, const void *, float *);
typedef void (*fp4v_m_fn)(const dsv4k_weight *, int64_t, int64_t, int, const void *const *, float *const *);
typedef int (*fp4v_prep_fn)(const float *, const int8_t *, int64_t, void *);
typedef int (*fp8b_fn)(const dsv4k_weight *, int64_t, int64_t, const float *, const void *, float *);
typedef int (*fp8b_m_fn)(const dsv4k_weight *, int64_t, int64_t, int, const float *const *, const void *const *,
                         float *const *);
typedef int (*fp8q_fn)(const dsv4k_weight *, int64_t, int64_t, const float *, const float *, const int16_t *, float *);
typedef int (*fp8q_m_fn)(const dsv4k_weight *, int64_t, int64_t, int, const float *const *, const float *const *,
                         const int16_t *const *, float *const *);
typedef int (*rows_fn)(const dsv4k_weight *, int64_t, int64_t, const float *, int64_t, int64_t, float *, int64_t);
typedef int (*rows_m_fn)(const dsv4k_weight *, int64_t, int64_t, int, const float *const *, float *const *);

static const char *build_name[2] = { "SIMDe emulation", "native" };

static void direct(void)
{
    fp4v_fn f4[2] = { 0 }; fp4v_m_fn f4m[2] = { 0 }; fp4v_prep_fn f4p[2] = { 0 };
    fp8b_fn f8b[2] = { 0 }; fp8b_m_fn f8bm[2] = { 0 }; fp4v_prep_fn f8bp[2] = { 0 };
    fp8q_fn f8q[2] = { 0 }; fp8q_m_fn f8qm[2] = { 0 };
    rows_fn fr[2] = { 0 }; rows_m_fn frm[2] = { 0 };
#ifdef DSV4K_HAVE_EMUL512
    f4[0] = dsv4k_rows_fp4v_avx512vnni_emul; f4m[0] = dsv4k_rows_fp4v_mrows_avx512vnni_emul;
    f4p[0] = dsv4k_fp4v_prepare_emul;
    f8b[0] = dsv4k_rows_fp8b_avx512bf16_emul; f8bm[0] = dsv4k_rows_fp8b_mrows_avx512bf16_emul;
    f8bp[0] = dsv4k_fp8b_prepare_emul;
    f8q[0] = dsv4k_rows_fp8q_avx512_emul; f8qm[0] = dsv4k_rows_fp8q_mrows_avx512_emul;
    fr[0] = dsv4k_rows_avx512_emul; frm[0] = dsv4k_rows_mrows_avx512_emul;
#else
    printf("note: SIMDe headers missing: the emulated build of the m-row kernels not checked\n");
#endif
    if (dsv4k_have_avx512vnni()) { f4[1] = dsv4k_rows_fp4v_avx512vnni; f4m[1] = dsv4k_rows_fp4v_mrows_avx512vnni; f4p[1] = dsv4k_fp4v_prepare; }
    if (dsv4k_have_avx512bf16()) { f8b[1] = dsv4k_rows_fp8b_avx512bf16; f8bm[1] = dsv4k_rows_fp8b_mrows_avx512bf16; f8bp[1] = dsv4k_fp8b_prepare; }
    if (dsv4k_have_avx512()) { f8q[1] = dsv4k_rows_fp8q_avx512; f8qm[1] = dsv4k_rows_fp8q_mrows_avx512; fr[1] = dsv4k_rows_avx512; frm[1] = dsv4k_rows_mrows_avx512; }
    if (!dsv4k_have_avx2()) return; /* the activation preparations below */
    const int64_t k = 1024, n = 45;
    float *x = malloc((size_t)(KMAX * k) * 4), *dq = malloc((size_t)(KMAX * k) * 4), *xp = malloc((size_t)(KMAX * k) * 4);
    float *xs = malloc((size_t)(KMAX * k) * 4), *y1 = malloc((size_t)(KMAX * n) * 4), *ym = malloc((size_t)(KMAX * n) * 4);
    int8_t ex[KMAX][16];
    int16_t sh[KMAX][16];
    int64_t bb = dsv4k_fp4v_bytes(k) > dsv4k_fp8b_bytes(k) ? dsv4k_fp4v_bytes(k) : dsv4k_fp8b_bytes(k);
    bb = (bb + 63) / 64 * 64;
    uint8_t *bufs = aligned_alloc(64, (size_t)(KMAX * bb));
    for (int64_t i = 0; i < KMAX * k; i++) x[i] = frand() * (i % 97 == 5 ? 300.0f : 3.0f);
    for (int i = 0; i < KMAX; i++) {
        dsv4k_act_quant_dq(x + i * k, k, dq + i * k, ex[i], 1);
        dsv4k_split_even_odd(x + i * k, k, xs + i * k);
    }
    const void *bp[KMAX];
    const float *xa[KMAX], *pa[KMAX];
    const int16_t *sa[KMAX];
    float *ya[KMAX];
    for (int i = 0; i < KMAX; i++) { bp[i] = bufs + i * bb; ya[i] = ym + i * n; }
    int64_t cut[4] = { 0, n / 3, n / 3 + 5, n };
    for (int extreme = 0; extreme <= 1; extreme++)
        for (int f = 0; f < 2; f++) {
            int fmts[4] = { DSV4K_W_FP4, DSV4K_W_FP8, DSV4K_W_FP8_F32S, DSV4K_W_BF16 };
            for (int fi = 0; fi < 4; fi++)
                for (int ilv = 0; ilv <= (fmts[fi] == DSV4K_W_FP4 ? 0 : 1); ilv++) {
                    wbuf b;
                    make_weight(&b, fmts[fi], n, k, extreme, ilv);
                    int bad = 0, checks = 0;
                    for (int m = 1; m <= KMAX; m++) {
                        /* DSV4_TEST_LIGHT (the ThreadSanitizer tree; no threads
                         * here): 1-4, 8 and the most rows only */
                        if (test_light() && m > 4 && m != 8 && m != KMAX) continue;
                        int kinds = 0;
                        for (int kind = 0; kind < 4; kind++) {
                            /* kind 0: fp4v, 1: fp8b, 2: fp8q (float numerics), 3: f32 one-row kernels */
                            int prep = 1;
                            if (kind == 0 && (fmts[fi] != DSV4K_W_FP4 || !f4[f])) continue;
                            if (kind == 1 && (fmts[fi] == DSV4K_W_FP4 || fmts[fi] == DSV4K_W_BF16 || !f8b[f])) continue;
                            if (kind == 2 && (fmts[fi] == DSV4K_W_FP4 || fmts[fi] == DSV4K_W_BF16 || !f8q[f])) continue;
                            if (kind == 3 && (fmts[fi] == DSV4K_W_FP8 || fmts[fi] == DSV4K_W_FP8_F32S || !fr[f])) continue;
                            for (int i = 0; i < m; i++) {
                                if (kind == 0) prep &= f4p[f](dq + i * k, ex[i], k, bufs + i * bb) == 0;
                                if (kind == 1) prep &= f8bp[f](dq + i * k, ex[i], k, bufs + i * bb) == 0;
                                if (kind == 2) prep &= dsv4k_fp8x_prepare(x + i * k, k, xp + i * k, sh[i]) == 0;
                                xa[i] = kind == 1 || kind == 2 ? (kind == 1 ? dq : x) + i * k : xs + i * k;
                                pa[i] = xp + i * k;
                                sa[i] = sh[i];
                            }
                            if (!prep) { bad++; continue; }
                            for (int64_t i = 0; i < m * n; i++) ym[i] = -7.0f, y1[i] = -8.0f;
                            for (int c = 0; c < 3; c++) {
                                int rc = 0;
                                if (kind == 0) f4m[f](&b.w, cut[c], cut[c + 1], m, bp, ya);
                                if (kind == 1) rc = f8bm[f](&b.w, cut[c], cut[c + 1], m, xa, bp, ya);
                                if (kind == 2) rc = f8qm[f](&b.w, cut[c], cut[c + 1], m, xa, pa, sa, ya);
                                if (kind == 3) rc = frm[f](&b.w, cut[c], cut[c + 1], m, xa, ya);
                                for (int i = 0; i < m; i++) {
                                    if (kind == 0) f4[f](&b.w, cut[c], cut[c + 1], bp[i], y1 + i * n);
                                    if (kind == 1) rc |= f8b[f](&b.w, cut[c], cut[c + 1], xa[i], bp[i], y1 + i * n);
                                    if (kind == 2) rc |= f8q[f](&b.w, cut[c], cut[c + 1], xa[i], pa[i], sa[i], y1 + i * n);
                                    if (kind == 3) rc |= fr[f](&b.w, cut[c], cut[c + 1], xa[i], k, 1, y1 + i * n, n);
                                }
                                bad += rc != 0;
                            }
                            bad += !same_bits(ym, y1, m * n);
                            checks++;
                            kinds++;
                        }
                        (void)kinds;
                    }
                    if (checks)
                        CHECK(bad == 0, "m-row kernels (%s) fmt %d%s%s n %lld k %lld, ranges cutting groups: %d of %d "
                              "differ from the one-row kernels", build_name[f], fmts[fi], ilv ? " interleaved" : "",
                              extreme ? " extreme scales" : "", (long long)n, (long long)k, bad, checks);
                    free_weight(&b);
                }
        }
    free(x); free(dq); free(xp); free(xs); free(y1); free(ym); free(bufs);
}

int main(void)
{
    direct();
    linear_all();
    batch_all();
    return test_summary();
}
