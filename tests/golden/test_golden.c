/*
 * tests/golden — the forward pass against the golden outputs of the official
 * reference forward pass (../shared/golden, read at run time).
 *
 * For every preset and sequence (or those named in DSV4_GOLDEN_PRESETS, e.g.
 * "tiny-a"):
 *  - float numerics vs the `noaq` oracle: max |Δlogit| <= 1e-3 and identical
 *    argmax at every position, main and MTP logits, for one prefill, chunked
 *    prefill (7 and 33 tokens per call, and an internal batch of 16) and
 *    token-by-token decode (short sequences; long ones decode their last 24);
 *  - reference numerics vs the `ref` oracle: argmax agreement >= 85 % (the
 *    official numerics are chaotic on random weights; figures printed);
 *  - expert choices and weights, and the indexer's top-k picks, layer by
 *    layer, vs debug_f32_prefill.npz (exact sets; weights within 1e-4).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <dsv4/dsv4.h>
#include "testutil.h"
#include "api/api_int.h"

static int32_t *load_tokens(const char *path, size_t *n)
{
    json_t *a = json_load_file(path, 0, NULL);
    int32_t *t = NULL;
    *n = 0;
    if (a && json_is_array(a)) {
        *n = json_array_size(a);
        t = malloc(*n * sizeof *t + 1);
        for (size_t i = 0; t && i < *n; i++) t[i] = (int32_t)json_integer_value(json_array_get(a, i));
    }
    json_decref(a);
    return t;
}

static int argmax(const float *x, int64_t n)
{
    int b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = (int)i;
    return b;
}

typedef struct result {
    float *logits, *mtp;
    size_t n_mtp;
} result;

/* run tokens through a fresh session fed `step` tokens per call */
static int run(dsv4_model *m, int numerics, const int32_t *tok, size_t n, size_t step, int max_batch, result *r)
{
    dsv4_options *o = NULL;
    dsv4_context *ctx = NULL;
    dsv4_session *s = NULL;
    int64_t V = 0;
    dsv4_model_info *info = NULL;
    dsv4_model_get_info(m, &info);
    dsv4_model_info_get_i64(info, DSV4_INFO_VOCAB_SIZE, &V);
    dsv4_model_info_free(info);
    dsv4_options_create(&o);
    dsv4_options_set_i64(o, DSV4_OPT_NUMERICS, numerics);
    dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, (int64_t)n);
    dsv4_options_set_i64(o, DSV4_OPT_MAX_BATCH, max_batch);
    dsv4_options_set_i64(o, DSV4_OPT_THREADS, 2);
    int ok = dsv4_context_create(m, o, &ctx, NULL) == DSV4_OK;
    dsv4_options_set_i64(o, DSV4_OPT_MTP, 1);
    ok = ok && dsv4_session_create(ctx, o, &s, NULL) == DSV4_OK;
    r->logits = malloc(n * (size_t)V * 4);
    r->mtp = malloc(n * (size_t)V * 4);
    r->n_mtp = 0;
    for (size_t p = 0; ok && p < n; p += step) {
        size_t k = n - p < step ? n - p : step;
        ok = dsv4_session_eval(s, tok + p, k, DSV4_EVAL_ALL_LOGITS) == DSV4_OK;
        for (size_t q = p; ok && q < p + k; q++)
            ok = dsv4_session_logits(s, (int64_t)q, r->logits + q * V, (size_t)V) == DSV4_OK;
        for (size_t q = p ? p - 1 : 0; ok && q + 1 < p + k; q++, r->n_mtp++)
            ok = dsv4_session_mtp_logits(s, (int64_t)q, r->mtp + q * V, (size_t)V) == DSV4_OK;
        ok = ok && dsv4_session_position(s) == (int64_t)(p + k);
    }
    dsv4_session_free(s);
    dsv4_context_free(ctx);
    dsv4_options_free(o);
    return ok;
}

/* compare rows [r0, rows) of ours vs golden; returns argmax agreement */
static double compare(const char *what, const float *ours, const float *gold, int64_t rows, int64_t V, int64_t r0,
                      double tol, int strict)
{
    double maxd = 0;
    int64_t agree = 0, bad_row = -1;
    for (int64_t i = r0; i < rows; i++) {
        const float *a = ours + i * V, *b = gold + i * V;
        for (int64_t v = 0; v < V; v++) {
            double d = fabs((double)a[v] - b[v]);
            if (!(d <= maxd)) maxd = d;
            if (!(d <= tol) && bad_row < 0) bad_row = i;
        }
        agree += argmax(a, V) == argmax(b, V);
    }
    double frac = rows > r0 ? (double)agree / (double)(rows - r0) : 1.0;
    if (strict) {
        CHECK(maxd <= tol, "%s: max |dlogit| %.3g > %.1g (first at row %lld)", what, maxd, tol, (long long)bad_row);
        CHECK(agree == rows - r0, "%s: argmax differs at %lld of %lld rows", what, (long long)(rows - r0 - agree),
              (long long)(rows - r0));
    }
    printf("  %-44s rows %4lld  max|d| %.3g  argmax %.1f %%\n", what, (long long)(rows - r0), maxd, 100 * frac);
    return frac;
}

/* ---- routing and top-k vs the debug dump ---------------------------------------- */

typedef struct dbg {
    int32_t *route[8], *topk[8];
    float *route_w[8];
    int64_t T, K, topk_n, n_layers;
} dbg;

static void on_debug(void *user, int layer, int kind, int64_t T, int64_t p0, const int32_t *ids, const float *w)
{
    dbg *d = user;
    (void)p0;
    if (layer >= 8 || T != d->T) return;
    if (kind == 0) {
        if (!d->route[layer]) {
            d->route[layer] = malloc((size_t)(T * d->K) * 4);
            d->route_w[layer] = malloc((size_t)(T * d->K) * 4);
        }
        memcpy(d->route[layer], ids, (size_t)(T * d->K) * 4);
        memcpy(d->route_w[layer], w, (size_t)(T * d->K) * 4);
    } else {
        if (!d->topk[layer]) d->topk[layer] = malloc((size_t)(T * d->topk_n) * 4);
        memcpy(d->topk[layer], ids, (size_t)(T * d->topk_n) * 4);
    }
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

/* same sets per row (order-free) */
static int64_t set_mismatches(const int32_t *a, const int32_t *b, int64_t rows, int64_t k)
{
    int64_t bad = 0;
    int32_t x[64], y[64];
    for (int64_t i = 0; i < rows; i++) {
        memcpy(x, a + i * k, (size_t)k * 4);
        memcpy(y, b + i * k, (size_t)k * 4);
        qsort(x, (size_t)k, 4, cmp_i32);
        qsort(y, (size_t)k, 4, cmp_i32);
        bad += memcmp(x, y, (size_t)k * 4) != 0;
    }
    return bad;
}

static void debug_choices(dsv4_model *m, const char *seqdir, const int32_t *tok, size_t n)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/noaq/debug_f32_prefill.npz", seqdir);
    dsv4_model_info *info = NULL;
    int64_t nl = 0, K = 0, topk = 0;
    dsv4_model_get_info(m, &info);
    dsv4_model_info_get_i64(info, DSV4_INFO_N_LAYERS, &nl);
    dsv4_model_info_get_i64(info, DSV4_INFO_N_ACTIVE_EXPERTS, &K);
    dsv4_model_info_get_i64(info, DSV4_INFO_INDEX_TOPK, &topk);
    dsv4_model_info_free(info);
    dbg d;
    memset(&d, 0, sizeof d);
    d.T = (int64_t)n;
    d.K = K;
    d.topk_n = topk;
    d.n_layers = nl;
    dsv4__rt_opts o = { 2, (int64_t)n, (int32_t)n, DSV4_NUMERICS_FLOAT, DSV4_REVISION_CURRENT, 0 };
    dsv4__rt *rt = NULL;
    dsv4__state *st = NULL;
    dsv4__err e = { 0, "" };
    int ok = dsv4__model_rt_create(m, &o, &rt, &e) == DSV4_OK && dsv4__state_create(rt, 1, &st, &e) == DSV4_OK;
    CHECK(ok, "internal runtime: %s", e.msg);
    if (ok) {
        dsv4__rt_set_debug(rt, on_debug, &d);
        ok = dsv4__forward(st, tok, (int64_t)n, NULL, 0, NULL, NULL, &e) == DSV4_OK;
        CHECK(ok, "forward: %s", e.msg);
    }
    for (int l = 0; ok && l <= nl && l < 8; l++) {
        char name[64];
        int64_t shape[4];
        int nd;
        const char *pre = l == nl ? "MTP0" : NULL;
        char lname[16];
        snprintf(lname, sizeof lname, "L%d", l);
        if (!pre) pre = lname;
        snprintf(name, sizeof name, "%s.route_idx", pre);
        int32_t *gi = test_load_npz(path, name, 'i', shape, &nd);
        snprintf(name, sizeof name, "%s.route_w", pre);
        float *gw = test_load_npz(path, name, 'f', shape, &nd);
        if (l < nl) {
            CHECK(gi && d.route[l], "%s: routing dump present", pre);
            if (gi && d.route[l]) {
                int64_t bad = set_mismatches(d.route[l], gi, (int64_t)n, K);
                CHECK(bad == 0, "%s: expert choices differ on %lld of %zu tokens", pre, (long long)bad, n);
                double maxd = 0;
                for (int64_t i = 0; gw && i < (int64_t)n; i++)
                    for (int64_t a = 0; a < K; a++)
                        for (int64_t b = 0; b < K; b++)
                            if (d.route[l][i * K + a] == gi[i * K + b])
                                maxd = fmax(maxd, fabs((double)d.route_w[l][i * K + a] - gw[i * K + b]));
                CHECK(maxd <= 1e-4, "%s: routing weights differ by %.3g", pre, maxd);
            }
        }
        free(gi);
        free(gw);
        snprintf(name, sizeof name, "%s.indexer_topk", pre);
        int32_t *gt = test_load_npz(path, name, 'i', shape, &nd);
        if (gt && l < nl) {
            CHECK(d.topk[l] != NULL, "%s: top-k dump present", pre);
            if (d.topk[l] && shape[1] == topk) {
                int64_t bad = set_mismatches(d.topk[l], gt, (int64_t)n, topk);
                CHECK(bad == 0, "%s: indexer top-k differs on %lld of %zu tokens", pre, (long long)bad, n);
            }
        }
        free(gt);
    }
    for (int l = 0; l < 8; l++) { free(d.route[l]); free(d.route_w[l]); free(d.topk[l]); }
    dsv4__state_free(st);
    dsv4__rt_free(rt);
}

/* ---- several sessions in one batch; reference operators ------------------------ */

/* run the internal forward of one or two requests; logits of every row */
static int internal_run(dsv4__rt *rt, dsv4__state **st, const int32_t **tok, const int64_t *n, int nr, float **lg,
                        float **mtp)
{
    dsv4__req q[2];
    for (int i = 0; i < nr; i++) q[i] = (dsv4__req){ st[i], tok[i], n[i], lg[i], n[i], mtp[i], 0 };
    dsv4__err e = { 0, "" };
    int ok = dsv4__forward_batch(rt, q, nr, &e) == DSV4_OK;
    CHECK(ok, "forward_batch: %s", e.msg);
    return ok;
}

/*
 * Session A (the sequence) and session B (the sequence rotated by 5) run
 * alone, then together: A first fed 10 tokens alone, then one batch with A's
 * remaining tokens and all of B, in internal batches of 16 rows (so spans of
 * both sessions share batches). Every row's arithmetic is independent of the
 * other rows up to the summation order of the batched products, so the
 * logits must agree to 1e-5 (float numerics). Then the whole forward with
 * the scalar reference operators against the optimised ones.
 */
static void batch_checks(dsv4_model *m, const char *preset, const int32_t *tok, size_t n, int64_t V)
{
    int32_t *tb = malloc(n * sizeof *tb);
    for (size_t i = 0; i < n; i++) tb[i] = tok[(i + 5) % n];
    size_t rows = n * (size_t)V;
    float *la = malloc(rows * 4), *lb = malloc(rows * 4), *ma = malloc(rows * 4), *mb = malloc(rows * 4);
    float *la2 = malloc(rows * 4), *lb2 = malloc(rows * 4), *ma2 = malloc(rows * 4), *mb2 = malloc(rows * 4);
    dsv4__rt_opts o = { 2, 2 * (int64_t)n, 16, DSV4_NUMERICS_FLOAT, DSV4_REVISION_CURRENT, 0 };
    dsv4__rt *rt = NULL;
    dsv4__state *st[4] = { 0 };
    dsv4__err e = { 0, "" };
    int ok = dsv4__model_rt_create(m, &o, &rt, &e) == DSV4_OK;
    for (int i = 0; ok && i < 4; i++) ok = dsv4__state_create(rt, 1, &st[i], &e) == DSV4_OK;
    CHECK(ok, "internal runtime: %s", e.msg);
    int64_t N = (int64_t)n;
    if (ok) {
        const int32_t *ta[1] = { tok }, *tbb[1] = { tb };
        float *l1[1] = { la }, *m1[1] = { ma }, *l2[1] = { lb }, *m2[1] = { mb };
        ok = internal_run(rt, &st[0], ta, &N, 1, l1, m1) && internal_run(rt, &st[1], tbb, &N, 1, l2, m2);
    }
    if (ok) {
        int64_t first = 10, ns[2] = { N - 10, N };
        const int32_t *ta[1] = { tok }, *tt[2] = { tok + 10, tb };
        float *l1[1] = { la2 }, *m1[1] = { ma2 };
        ok = internal_run(rt, &st[2], ta, &first, 1, l1, m1);
        float *l2[2] = { la2 + 10 * V, lb2 }, *m2[2] = { ma2 + 9 * V, mb2 };
        dsv4__state *pair[2] = { st[2], st[3] };
        ok = ok && internal_run(rt, pair, tt, ns, 2, l2, m2);
    }
    if (ok) {
        double md = 0;
        int agree = 1;
        for (size_t i = 0; i < rows; i++)
            md = fmax(md, fmax(fabs((double)la[i] - la2[i]), fabs((double)lb[i] - lb2[i])));
        for (size_t i = 0; i + (size_t)V < rows; i++)
            md = fmax(md, fmax(fabs((double)ma[i] - ma2[i]), fabs((double)mb[i] - mb2[i])));
        for (size_t t = 0; t < n; t++)
            agree &= argmax(la + t * V, V) == argmax(la2 + t * V, V) && argmax(lb + t * V, V) == argmax(lb2 + t * V, V);
        CHECK(md <= 1e-5 && agree, "%s: two sessions in shared batches give the logits (and MTP logits) of separate "
              "runs: max|d| %.3g (<= 1e-5), argmax %s", preset, md, agree ? "equal" : "differs");
        printf("  %s two sessions batched vs alone       max|d| %.3g\n", preset, md);
        CHECK(dsv4__state_pos(st[2]) == N && dsv4__state_pos(st[3]) == N, "positions advanced per session");
        dsv4__req dup[2] = { { st[0], tok, 1, NULL, 0, NULL, 0 }, { st[0], tok, 1, NULL, 0, NULL, 0 } };
        CHECK(dsv4__forward_batch(rt, dup, 2, &e) == DSV4_ERR_INVALID_ARGUMENT, "a session twice in one batch "
              "is refused");
    }
    for (int i = 0; i < 4; i++) dsv4__state_free(st[i]);
    dsv4__rt_free(rt);
    /* reference operators throughout vs the optimised ones (float numerics) */
    for (int ref = 0; ref < 2; ref++) {
        dsv4__rt_opts ro = { 2, N, 64, DSV4_NUMERICS_FLOAT, DSV4_REVISION_CURRENT, ref };
        dsv4__state *s = NULL;
        rt = NULL;
        ok = dsv4__model_rt_create(m, &ro, &rt, &e) == DSV4_OK && dsv4__state_create(rt, 1, &s, &e) == DSV4_OK;
        const int32_t *ta[1] = { tok };
        float *l1[1] = { ref ? la2 : la }, *m1[1] = { ref ? ma2 : ma };
        ok = ok && internal_run(rt, &s, ta, &N, 1, l1, m1);
        dsv4__state_free(s);
        dsv4__rt_free(rt);
        if (!ok) break;
    }
    if (ok) {
        double md = 0;
        int agree = 1;
        for (size_t i = 0; i < rows; i++) md = fmax(md, fabs((double)la[i] - la2[i]));
        for (size_t i = 0; i + (size_t)V < rows; i++) md = fmax(md, fabs((double)ma[i] - ma2[i]));
        for (size_t t = 0; t < n; t++) agree &= argmax(la + t * V, V) == argmax(la2 + t * V, V);
        CHECK(md <= 1e-4 && agree, "%s: optimised vs reference operators: max|d| %.3g (<= 1e-4), argmax %s", preset,
              md, agree ? "equal" : "differs");
        printf("  %s optimised vs reference operators    max|d| %.3g\n", preset, md);
    }
    free(tb);
    free(la); free(lb); free(ma); free(mb); free(la2); free(lb2); free(ma2); free(mb2);
}

static void sequence(dsv4_model *m, const char *preset, const char *seqdir, const char *seq)
{
    char path[1200];
    size_t n;
    snprintf(path, sizeof path, "%s/tokens.json", seqdir);
    int32_t *tok = load_tokens(path, &n);
    if (!CHECK(tok && n > 2, "%s: tokens", path)) { free(tok); return; }
    int64_t shape[4], V;
    int nd;
    snprintf(path, sizeof path, "%s/noaq/logits_f32_prefill.npy", seqdir);
    float *gl = test_load_npy(path, 'f', shape, &nd);
    V = shape[1];
    snprintf(path, sizeof path, "%s/noaq/mtp_logits_f32_prefill.npy", seqdir);
    float *gm = test_load_npy(path, 'f', shape, &nd);
    if (!CHECK(gl && gm, "%s: golden logits", seqdir)) { free(tok); free(gl); free(gm); return; }
    int is_long = n > 100;
    struct { const char *name; size_t step; int batch; } runs[] = {
        { "prefill", n, (int)n }, { "chunks of 7", 7, 256 }, { "chunks of 33", 33, 256 },
        { "internal batch 16", n, 16 }, { "decode", 1, 256 },
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        result r;
        size_t step = runs[i].step;
        char what[128];
        if (is_long && step == 1) continue;
        int ok = run(m, DSV4_NUMERICS_FLOAT, tok, n, step, runs[i].batch, &r);
        CHECK(ok, "%s %s float %s: run", preset, seq, runs[i].name);
        if (ok) {
            snprintf(what, sizeof what, "%s %s float %s", preset, seq, runs[i].name);
            compare(what, r.logits, gl, (int64_t)n, V, 0, 1e-3, 1);
            snprintf(what, sizeof what, "%s %s float %s MTP", preset, seq, runs[i].name);
            CHECK(r.n_mtp == n - 1, "%s: %zu MTP rows", what, r.n_mtp);
            compare(what, r.mtp, gm, (int64_t)n - 1, V, 0, 1e-3, 1);
        }
        free(r.logits);
        free(r.mtp);
    }
    if (is_long) {
        /* decode the last 24 tokens one by one after a prefill of the rest */
        result r;
        dsv4_options *o = NULL;
        dsv4_context *ctx = NULL;
        dsv4_session *s = NULL;
        dsv4_options_create(&o);
        dsv4_options_set_i64(o, DSV4_OPT_NUMERICS, DSV4_NUMERICS_FLOAT);
        dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, (int64_t)n);
        dsv4_options_set_i64(o, DSV4_OPT_THREADS, 2);
        /* workers that sleep at once between loops (the other runs spin first) */
        dsv4_options_set_i64(o, DSV4_OPT_WORKER_SPIN, 0);
        int ok = dsv4_context_create(m, o, &ctx, NULL) == DSV4_OK;
        dsv4_options_set_i64(o, DSV4_OPT_MTP, 1);
        ok = ok && dsv4_session_create(ctx, o, &s, NULL) == DSV4_OK;
        r.logits = malloc((size_t)V * 4);
        r.mtp = malloc((size_t)V * 4);
        size_t pre = n - 24;
        ok = ok && dsv4_session_eval(s, tok, pre, 0) == DSV4_OK;
        double maxd = 0, maxm = 0;
        int agree = 1;
        for (size_t p = pre; ok && p < n; p++) {
            ok = dsv4_session_eval(s, tok + p, 1, 0) == DSV4_OK &&
                 dsv4_session_logits(s, -1, r.logits, (size_t)V) == DSV4_OK &&
                 dsv4_session_mtp_logits(s, (int64_t)p - 1, r.mtp, (size_t)V) == DSV4_OK;
            for (int64_t v = 0; ok && v < V; v++) {
                maxd = fmax(maxd, fabs((double)r.logits[v] - gl[p * V + v]));
                maxm = fmax(maxm, fabs((double)r.mtp[v] - gm[(p - 1) * V + v]));
            }
            agree &= ok && argmax(r.logits, V) == argmax(gl + p * V, V) &&
                     argmax(r.mtp, V) == argmax(gm + (p - 1) * V, V);
        }
        CHECK(ok, "%s %s: decode tail ran", preset, seq);
        CHECK(maxd <= 1e-3 && maxm <= 1e-3 && agree, "%s %s float decode tail: max|d| %.3g, MTP %.3g, argmax %s",
              preset, seq, maxd, maxm, agree ? "equal" : "differs");
        printf("  %s %s float decode of the last 24        max|d| %.3g  MTP %.3g\n", preset, seq, maxd, maxm);
        free(r.logits);
        free(r.mtp);
        dsv4_session_free(s);
        dsv4_context_free(ctx);
        dsv4_options_free(o);
    } else {
        /* the oracle's own decode logits */
        snprintf(path, sizeof path, "%s/noaq/logits_f32_decode.npy", seqdir);
        float *gd = test_load_npy(path, 'f', shape, &nd);
        result r;
        if (CHECK(gd != NULL, "%s: decode golden", seqdir) && run(m, DSV4_NUMERICS_FLOAT, tok, n, 1, 256, &r)) {
            char what[128];
            snprintf(what, sizeof what, "%s %s float decode vs oracle decode", preset, seq);
            compare(what, r.logits, gd, (int64_t)n, V, 0, 1e-3, 1);
            free(r.logits);
            free(r.mtp);
        }
        free(gd);
    }
    /* reference numerics: statistical agreement */
    snprintf(path, sizeof path, "%s/ref/logits_f32_prefill.npy", seqdir);
    float *rl = test_load_npy(path, 'f', shape, &nd);
    snprintf(path, sizeof path, "%s/ref/mtp_logits_f32_prefill.npy", seqdir);
    float *rm = test_load_npy(path, 'f', shape, &nd);
    result r;
    if (CHECK(rl && rm, "%s: ref golden", seqdir) && run(m, DSV4_NUMERICS_REFERENCE, tok, n, 33, 256, &r)) {
        char what[128];
        snprintf(what, sizeof what, "%s %s reference (chunks of 33)", preset, seq);
        double a = compare(what, r.logits, rl, (int64_t)n, V, 0, 0, 0);
        CHECK(a >= 0.85, "%s: argmax agreement %.1f %% < 85 %%", what, 100 * a);
        snprintf(what, sizeof what, "%s %s reference MTP", preset, seq);
        a = compare(what, r.mtp, rm, (int64_t)n - 1, V, 0, 0, 0);
        CHECK(a >= 0.85, "%s: argmax agreement %.1f %% < 85 %%", what, 100 * a);
        free(r.logits);
        free(r.mtp);
    }
    free(rl);
    free(rm);
    debug_choices(m, seqdir, tok, n);
    if (!strcmp(seq, "short")) batch_checks(m, preset, tok, n, V);
    free(gl);
    free(gm);
    free(tok);
}

/* DSV4_OPT_RESIDENT moves bytes, not numbers: a model loaded with every
 * weight mapped gives the same logits, bit for bit, as the default load */
static void resident_check(dsv4_model *m, const char *dir, const char *preset)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/../short/tokens.json", dir);
    size_t n = 0;
    int32_t *tok = load_tokens(path, &n);
    if (!CHECK(tok && n > 0, "%s: tokens of the short sequence", preset)) { free(tok); return; }
    if (n > 64) n = 64;
    dsv4_options *o = NULL;
    dsv4_model *mm = NULL;
    dsv4_options_create(&o);
    int ok = dsv4_options_set_i64(o, DSV4_OPT_RESIDENT, 0) == DSV4_OK &&
             dsv4_options_set_i64(o, DSV4_OPT_RESIDENT, 2) == DSV4_ERR_INVALID_ARGUMENT &&
             dsv4_model_load(dir, o, &mm, NULL) == DSV4_OK;
    if (ok) {
        const struct dsv4__weights *wr = dsv4__model_weights(m), *wm = dsv4__model_weights(mm);
        const dsv4__tensor *head = dsv4__checkpoint_tensor(m->ck, "head.weight");
        const dsv4__tensor *mhead = dsv4__checkpoint_tensor(mm->ck, "head.weight");
        CHECK(wr->resident_bytes > 0 && wm->resident_bytes == 0 && head && mhead &&
                  wr->head.w != (const void *)head->data && wm->head.w == (const void *)mhead->data,
              "%s: the default load copies the head out of the mapping (%lld bytes resident), RESIDENT 0 copies none",
              preset, (long long)wr->resident_bytes);
    }
    int64_t V = 0;
    dsv4_model_info *info = NULL;
    dsv4_model_get_info(m, &info);
    dsv4_model_info_get_i64(info, DSV4_INFO_VOCAB_SIZE, &V);
    dsv4_model_info_free(info);
    for (int num = 0; ok && num < 2; num++) {
        result a = { 0 }, b = { 0 };
        int numerics = num ? DSV4_NUMERICS_FLOAT : DSV4_NUMERICS_REFERENCE;
        ok = run(m, numerics, tok, n, 7, 16, &a) && run(mm, numerics, tok, n, 7, 16, &b);
        CHECK(ok && !memcmp(a.logits, b.logits, n * (size_t)V * 4) && a.n_mtp == b.n_mtp &&
                  !memcmp(a.mtp, b.mtp, a.n_mtp * (size_t)V * 4),
              "%s: resident and mapped weights give identical logits (%s numerics)", preset,
              num ? "float" : "reference");
        free(a.logits); free(a.mtp); free(b.logits); free(b.mtp);
    }
    CHECK(ok, "%s: a model loaded with DSV4_OPT_RESIDENT 0 runs", preset);
    dsv4_model_free(mm);
    dsv4_options_free(o);
    free(tok);
}

int main(void)
{
    const char *presets = getenv("DSV4_GOLDEN_PRESETS");
    const char *all[] = { "tiny-a", "tiny-b" };
    for (size_t i = 0; i < 2; i++) {
        if (presets && !strstr(presets, all[i])) continue;
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/golden/%s/ckpt", test_shared_dir(), all[i]);
        dsv4_model *m = NULL;
        char *err = NULL;
        if (!CHECK(dsv4_model_load(dir, NULL, &m, &err) == DSV4_OK, "load %s: %s", dir, err ? err : "")) {
            dsv4_free(err);
            continue;
        }
        const char *seqs[] = { "short", "long" };
        for (int s = 0; s < 2; s++) {
            char sd[1024];
            snprintf(sd, sizeof sd, "%s/golden/%s/%s", test_shared_dir(), all[i], seqs[s]);
            sequence(m, all[i], sd, seqs[s]);
        }
        resident_check(m, dir, all[i]);
        dsv4_model_free(m);
    }
    return test_summary();
}
