/*
 * tests/gen/test_sampler.c — each sampler stage against a plain reference
 * computed here on fixed logits; greedy ties; seeded reproducibility; draw
 * frequencies against the distribution; bad arguments.
 */
#include <dsv4/dsv4.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"

#define T(c) CHECK((c), "%s", #c)
#define N 8

static const float L[N] = { 1.0f, 2.5f, -0.5f, 2.5f, 0.3f, -3.0f, 1.7f, 0.0f };

static void softmax(const double *x, double t, double *p)
{
    double m = -INFINITY, s = 0;
    for (int i = 0; i < N; i++) if (x[i] > m) m = x[i];
    for (int i = 0; i < N; i++) { p[i] = isinf(x[i]) && x[i] < 0 ? 0 : exp((x[i] - m) / t); s += p[i]; }
    for (int i = 0; i < N; i++) p[i] /= s;
}

static void renorm(double *p)
{
    double s = 0;
    for (int i = 0; i < N; i++) s += p[i];
    for (int i = 0; i < N; i++) p[i] /= s;
}

static int close_to(const float *got, const double *want, const char *what)
{
    double e = 0;
    for (int i = 0; i < N; i++) e = fmax(e, fabs(got[i] - want[i]));
    return CHECK(e < 1e-6, "%s: max error %g", what, e);
}

/* order by probability, ties to the lower id */
static void sorted(const double *p, int *o)
{
    for (int i = 0; i < N; i++) o[i] = i;
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            if (p[o[j]] > p[o[i]] || (p[o[j]] == p[o[i]] && o[j] < o[i])) { int t = o[i]; o[i] = o[j]; o[j] = t; }
}

/* a large vocabulary: top-p and top-k against a full sort (the sampler
 * sorts only the tokens above a threshold) */
static const double *lk;
static int by_desc(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return lk[x] > lk[y] ? -1 : lk[x] < lk[y] ? 1 : (x > y) - (x < y);
}

static void large_vocab(void)
{
    enum { V = 50000 };
    float *lg = malloc(V * sizeof *lg), *got = malloc(V * sizeof *got);
    double *p = malloc(V * sizeof *p);
    int *o = malloc(V * sizeof *o);
    uint32_t st = 5;
    dsv4_sampler *s = NULL;
    T(dsv4_sampler_create(&s) == DSV4_OK);
    for (int rep = 0; rep < 8; rep++) {
        /* the last two nearly flat: almost every token is sorted */
        double spread = rep < 3 ? 2.0 : rep < 6 ? 8.0 : 0.05;
        for (int i = 0; i < V; i++) {
            st = st * 1664525u + 1013904223u;
            lg[i] = (float)(spread * ((st >> 8) / 16777216.0 - 0.5));
            if (i % 97 == 0) lg[i] = lg[i - (i > 0)]; /* some ties */
        }
        double topp = rep % 3 == 0 ? 0.5 : rep % 3 == 1 ? 0.9 : 0.999;
        int topk = rep % 2 ? 40 : 0;
        dsv4_sampler_set_f64(s, DSV4_SAMPLER_TOP_P, topp);
        dsv4_sampler_set_i64(s, DSV4_SAMPLER_TOP_K, topk);
        dsv4_sampler_probs(s, lg, V, got);
        double mx = lg[0], sum = 0;
        for (int i = 0; i < V; i++) mx = fmax(mx, lg[i]);
        for (int i = 0; i < V; i++) sum += p[i] = exp(lg[i] - mx);
        for (int i = 0; i < V; i++) { p[i] /= sum; p[i] = (float)p[i]; o[i] = i; }
        lk = p;
        qsort(o, V, sizeof *o, by_desc);
        int keep = topk ? topk : V;
        double c = 0;
        int k = 0;
        while (k < keep && c < topp) c += p[o[k++]];
        for (int i = k; i < V; i++) p[o[i]] = 0;
        double z = 0;
        for (int i = 0; i < V; i++) z += p[i];
        int same_set = 1;
        double md = 0;
        for (int i = 0; i < V; i++) {
            same_set &= (got[i] > 0) == (p[i] > 0);
            md = fmax(md, fabs(got[i] - p[i] / z));
        }
        CHECK(same_set && md < 1e-6, "vocabulary %d, top-p %.3f, top-k %d: kept set of a full sort (%d tokens), "
              "max |d| %.2g", V, topp, topk, k, md);
    }
    dsv4_sampler_free(s);
    free(lg); free(got); free(p); free(o);
}

int main(void)
{
    dsv4_sampler *s = NULL;
    float got[N];
    double x[N], want[N];
    for (int i = 0; i < N; i++) x[i] = L[i];
    T(dsv4_sampler_create(&s) == DSV4_OK);
    double d;
    int64_t v;
    T(dsv4_sampler_get_f64(s, DSV4_SAMPLER_TEMPERATURE, &d) == DSV4_OK && d == 1.0);
    T(dsv4_sampler_get_f64(s, DSV4_SAMPLER_TOP_P, &d) == DSV4_OK && d == 1.0);
    T(dsv4_sampler_get_i64(s, DSV4_SAMPLER_PENALTY_LAST_N, &v) == DSV4_OK && v == 64);

    /* defaults: plain softmax */
    T(dsv4_sampler_probs(s, L, N, got) == DSV4_OK);
    softmax(x, 1.0, want);
    close_to(got, want, "softmax");
    /* temperature */
    dsv4_sampler_set_f64(s, DSV4_SAMPLER_TEMPERATURE, 0.5);
    dsv4_sampler_probs(s, L, N, got);
    softmax(x, 0.5, want);
    close_to(got, want, "temperature 0.5");
    /* top-k 3 (ties 1 and 3 both kept, then 6) */
    dsv4_sampler_set_f64(s, DSV4_SAMPLER_TEMPERATURE, 1.0);
    dsv4_sampler_set_i64(s, DSV4_SAMPLER_TOP_K, 3);
    dsv4_sampler_probs(s, L, N, got);
    softmax(x, 1.0, want);
    int o[N];
    sorted(want, o);
    for (int i = 3; i < N; i++) want[o[i]] = 0;
    renorm(want);
    close_to(got, want, "top-k 3");
    /* top-p 0.75 */
    dsv4_sampler_set_i64(s, DSV4_SAMPLER_TOP_K, 0);
    dsv4_sampler_set_f64(s, DSV4_SAMPLER_TOP_P, 0.75);
    dsv4_sampler_probs(s, L, N, got);
    softmax(x, 1.0, want);
    sorted(want, o);
    double c = 0;
    int k = 0;
    while (k < N && c < 0.75) c += want[o[k++]];
    for (int i = k; i < N; i++) want[o[i]] = 0;
    renorm(want);
    close_to(got, want, "top-p 0.75");
    /* min-p 0.2 */
    dsv4_sampler_set_f64(s, DSV4_SAMPLER_TOP_P, 1.0);
    dsv4_sampler_set_f64(s, DSV4_SAMPLER_MIN_P, 0.2);
    dsv4_sampler_probs(s, L, N, got);
    softmax(x, 1.0, want);
    double top = 0;
    for (int i = 0; i < N; i++) top = fmax(top, want[i]);
    for (int i = 0; i < N; i++) if (want[i] < 0.2 * top) want[i] = 0;
    renorm(want);
    close_to(got, want, "min-p 0.2");
    /* min-p 1 keeps every token tied with the top one (p < min_p · top drops) */
    {
        float tl[4] = { 1.0f, 3.0f, 3.0f, -2.0f };
        float tp[4];
        dsv4_sampler_set_f64(s, DSV4_SAMPLER_MIN_P, 1.0);
        CHECK(dsv4_sampler_probs(s, tl, 4, tp) == DSV4_OK && tp[1] == 0.5f && tp[2] == 0.5f && tp[0] == 0 && tp[3] == 0,
              "min-p 1 keeps the two tied top tokens at 1/2 each (%g %g %g %g)", tp[0], tp[1], tp[2], tp[3]);
    }
    dsv4_sampler_set_f64(s, DSV4_SAMPLER_MIN_P, 0);
    /* penalties over history [2, 2, 5, 1] with last_n 3 -> window [2, 5, 1] */
    dsv4_sampler_set_f64(s, DSV4_SAMPLER_REPETITION_PENALTY, 1.3);
    dsv4_sampler_set_f64(s, DSV4_SAMPLER_FREQUENCY_PENALTY, 0.5);
    dsv4_sampler_set_f64(s, DSV4_SAMPLER_PRESENCE_PENALTY, 0.25);
    dsv4_sampler_set_i64(s, DSV4_SAMPLER_PENALTY_LAST_N, 3);
    int hist[] = { 2, 2, 5, 1 };
    for (int i = 0; i < 4; i++) dsv4_sampler_accept(s, hist[i]);
    dsv4_sampler_probs(s, L, N, got);
    double y[N];
    for (int i = 0; i < N; i++) y[i] = L[i];
    int win[] = { 2, 5, 1 };
    for (int i = 0; i < 3; i++) {
        int t = win[i];
        y[t] = y[t] > 0 ? y[t] / 1.3 : y[t] * 1.3;
        y[t] -= 0.5 * 1 + 0.25;
    }
    softmax(y, 1.0, want);
    close_to(got, want, "penalties");
    dsv4_sampler_reset(s);
    dsv4_sampler_set_f64(s, DSV4_SAMPLER_REPETITION_PENALTY, 1.0);
    dsv4_sampler_set_f64(s, DSV4_SAMPLER_FREQUENCY_PENALTY, 0);
    dsv4_sampler_set_f64(s, DSV4_SAMPLER_PRESENCE_PENALTY, 0);
    /* logit bias */
    T(dsv4_sampler_set_logit_bias(s, 6, 10.0f) == DSV4_OK);
    T(dsv4_sampler_set_logit_bias(s, 1, -INFINITY) == DSV4_OK);
    dsv4_sampler_probs(s, L, N, got);
    for (int i = 0; i < N; i++) y[i] = L[i];
    y[6] += 10;
    y[1] = -INFINITY;
    softmax(y, 1.0, want);
    close_to(got, want, "logit bias");
    T(got[1] == 0.0f);
    dsv4_sampler_set_logit_bias(s, 6, 0);
    dsv4_sampler_set_logit_bias(s, 1, 0);
    /* greedy: ties go to the lower id */
    dsv4_sampler_set_f64(s, DSV4_SAMPLER_TEMPERATURE, 0);
    int32_t tok = -1;
    T(dsv4_sampler_sample(s, L, N, &tok) == DSV4_OK && tok == 1);
    dsv4_sampler_set_f64(s, DSV4_SAMPLER_TEMPERATURE, 1.0);
    /* seeded reproducibility */
    int32_t a[64], b[64];
    dsv4_sampler_set_i64(s, DSV4_SAMPLER_SEED, 1234);
    for (int i = 0; i < 64; i++) dsv4_sampler_sample(s, L, N, &a[i]);
    dsv4_sampler_reset(s);
    for (int i = 0; i < 64; i++) dsv4_sampler_sample(s, L, N, &b[i]);
    T(memcmp(a, b, sizeof a) == 0);
    dsv4_sampler_set_i64(s, DSV4_SAMPLER_SEED, 1235);
    for (int i = 0; i < 64; i++) dsv4_sampler_sample(s, L, N, &b[i]);
    T(memcmp(a, b, sizeof a) != 0);
    /* draw frequencies follow the distribution */
    dsv4_sampler_set_f64(s, DSV4_SAMPLER_TOP_P, 0.9);
    dsv4_sampler_probs(s, L, N, got);
    int cnt[N] = { 0 };
    const int draws = 40000;
    for (int i = 0; i < draws; i++) { dsv4_sampler_sample(s, L, N, &tok); if (tok >= 0 && tok < N) cnt[tok]++; }
    double worst = 0;
    for (int i = 0; i < N; i++) worst = fmax(worst, fabs(cnt[i] / (double)draws - got[i]));
    CHECK(worst < 0.012, "draw frequencies within 0.012 of the distribution (worst %.4f)", worst);
    for (int i = 0; i < N; i++) if (got[i] == 0) T(cnt[i] == 0);

    /* bad arguments leave the settings unchanged */
    T(dsv4_sampler_set_f64(s, DSV4_SAMPLER_TEMPERATURE, -1) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_sampler_set_f64(s, DSV4_SAMPLER_TEMPERATURE, NAN) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_sampler_set_f64(s, DSV4_SAMPLER_TOP_P, 0) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_sampler_set_f64(s, DSV4_SAMPLER_TOP_K, 3) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_sampler_set_i64(s, DSV4_SAMPLER_TOP_K, -1) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_sampler_set_i64(s, (dsv4_sampler_param)99, 1) == DSV4_ERR_UNKNOWN_OPTION);
    T(dsv4_sampler_get_f64(s, DSV4_SAMPLER_TEMPERATURE, &d) == DSV4_OK && d == 1.0);
    T(dsv4_sampler_set_logit_bias(s, -1, 1) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_sampler_set_logit_bias(s, 1, NAN) == DSV4_ERR_INVALID_ARGUMENT);
    tok = 7;
    T(dsv4_sampler_sample(s, L, 0, &tok) == DSV4_ERR_INVALID_ARGUMENT && tok == -1);
    T(dsv4_sampler_sample(s, NULL, N, &tok) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_sampler_sample(NULL, L, N, &tok) == DSV4_ERR_INVALID_ARGUMENT);
    float nanl[N];
    memcpy(nanl, L, sizeof nanl);
    nanl[3] = NAN;
    T(dsv4_sampler_sample(s, nanl, N, &tok) == DSV4_ERR_INVALID_ARGUMENT);
    for (int i = 0; i < N; i++) dsv4_sampler_set_logit_bias(s, i, -INFINITY);
    T(dsv4_sampler_sample(s, L, N, &tok) == DSV4_ERR_NOT_AVAILABLE); /* nothing left to draw from: not a caller error */
    T(dsv4_sampler_accept(s, -3) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_sampler_create(NULL) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_sampler_reset(NULL) == DSV4_ERR_INVALID_ARGUMENT);
    dsv4_sampler_free(NULL);
    dsv4_sampler_free(s);
    large_vocab();
    return test_summary();
}
