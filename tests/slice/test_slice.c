/*
 * tests/slice — the forward pass at the real V4-Flash widths: a flash-slice
 * synthetic checkpoint (3 layers of the real schedule, 6 routed experts,
 * the real vocabulary) written by dsv4-synth in the official format, run
 * with the optimised operators (oneDNN for the 18-row prefill products, the
 * row-decoding kernel for the experts and decode) and with the scalar
 * reference operators throughout; float numerics, then reference numerics.
 *
 * usage: test_slice DSV4-SYNTH [DIR]  (DIR default: $DSV4_SLICE_DIR, else
 * ./flash-slice.tmp, written if absent and removed afterwards unless it
 * was there before)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dsv4/dsv4.h>
#include "testutil.h"
#include "api/api_int.h"

#define T(c) CHECK((c), "%s", #c)
enum { P = 18, D = 2, N = P + D };

static int argmax(const float *x, int64_t n)
{
    int b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = (int)i;
    return b;
}

/* prefill P tokens (all logits, MTP), then decode D: logits [N][V], MTP [N-1][V] */
static int run(dsv4_model *m, int numerics, int ref_ops, const int32_t *tok, float *lg, float *mtp)
{
    int64_t V = dsv4__model_config(m)->vocab_size;
    dsv4__rt_opts o = { 2, 64, 32, numerics, DSV4_REVISION_CURRENT, ref_ops };
    dsv4__rt *rt = NULL;
    dsv4__state *s = NULL;
    dsv4__err e = { 0, "" };
    int64_t nm = 0, k = 0;
    int ok = dsv4__model_rt_create(m, &o, &rt, &e) == DSV4_OK && dsv4__state_create(rt, 1, &s, &e) == DSV4_OK &&
             dsv4__forward(s, tok, P, lg, P, mtp, &nm, &e) == DSV4_OK;
    for (int i = 0; ok && i < D; i++) {
        ok = dsv4__forward(s, tok + P + i, 1, lg + (P + i) * V, 1, mtp + (nm + k) * V, &k, &e) == DSV4_OK;
        nm += k;
    }
    CHECK(ok && nm == N - 1, "flash-slice %s numerics, %s operators: %s", numerics == DSV4_NUMERICS_FLOAT ? "float" : "reference",
          ref_ops ? "reference" : "optimised", ok ? "ran" : e.msg);
    dsv4__state_free(s);
    dsv4__rt_free(rt);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_slice DSV4-SYNTH [DIR]\n");
        return 2;
    }
    const char *dir = argc > 2 ? argv[2] : getenv("DSV4_SLICE_DIR");
    if (!dir || !*dir) dir = "flash-slice.tmp";
    char path[2048], cmd[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    struct stat sb;
    int made = 0;
    if (stat(path, &sb) != 0) {
        snprintf(cmd, sizeof cmd, "'%s' --preset flash-slice --layers 3 --experts 6 --out '%s'", argv[1], dir);
        if (!CHECK(system(cmd) == 0, "%s", cmd)) return test_summary();
        made = 1;
    }
    dsv4_model *m = NULL;
    char *err = NULL;
    if (CHECK(dsv4_model_load(dir, NULL, &m, &err) == DSV4_OK, "load %s: %s", dir, err ? err : "")) {
        int64_t V = dsv4__model_config(m)->vocab_size;
        printf("flash-slice: dim %d, %d heads x %d, %d layers (ratios", dsv4__model_config(m)->dim, dsv4__model_config(m)->n_heads,
               dsv4__model_config(m)->head_dim, dsv4__model_config(m)->n_layers);
        for (int l = 0; l < dsv4__model_config(m)->n_layers; l++) printf(" %d", dsv4__model_config(m)->compress_ratios[l]);
        printf("), %d experts, vocab %lld\n", dsv4__model_config(m)->n_routed_experts, (long long)V);
        int32_t tok[N];
        uint32_t st = 99;
        for (int i = 0; i < N; i++) { st = st * 1103515245u + 12345u; tok[i] = (int32_t)((st >> 8) % (uint32_t)V); }
        size_t bytes = (size_t)N * (size_t)V * 4;
        float *l0 = malloc(bytes), *l1 = malloc(bytes), *m0 = malloc(bytes), *m1 = malloc(bytes);
        for (int numerics = DSV4_NUMERICS_FLOAT; numerics >= DSV4_NUMERICS_REFERENCE; numerics--) {
            if (!run(m, numerics, 0, tok, l0, m0) || !run(m, numerics, 1, tok, l1, m1)) continue;
            double md = 0, scale = 0, mdm = 0;
            int agree = 0, agree_m = 0, finite = 1;
            for (int64_t i = 0; i < (int64_t)N * V; i++) {
                md = fmax(md, fabs((double)l0[i] - l1[i]));
                scale = fmax(scale, fabs((double)l1[i]));
                finite &= isfinite(l0[i]) != 0;
            }
            for (int64_t i = 0; i < (int64_t)(N - 1) * V; i++) mdm = fmax(mdm, fabs((double)m0[i] - m1[i]));
            for (int t = 0; t < N; t++) agree += argmax(l0 + t * V, V) == argmax(l1 + t * V, V);
            for (int t = 0; t < N - 1; t++) agree_m += argmax(m0 + t * V, V) == argmax(m1 + t * V, V);
            printf("flash-slice %s numerics: optimised vs reference operators over %d positions: max|d| %.3g "
                   "(logits up to %.3g), MTP max|d| %.3g, argmax %d/%d, MTP %d/%d\n",
                   numerics == DSV4_NUMERICS_FLOAT ? "float" : "reference", N, md, scale, mdm, agree, N, agree_m, N - 1);
            CHECK(finite, "logits finite");
            if (numerics == DSV4_NUMERICS_FLOAT) {
                CHECK(md <= 1e-4 * fmax(scale, 1.0) && mdm <= 1e-4 * fmax(scale, 1.0) && agree == N &&
                      agree_m == N - 1, "float: optimised = reference operators within 1e-4 of the logit scale, "
                      "argmax identical");
            } else {
                /* activation FP8 rounding turns summation-order differences
                 * into occasional code flips: a statistical check */
                CHECK(agree >= N * 85 / 100, "reference numerics: argmax agreement %d/%d >= 85 %%", agree, N);
            }
        }
        free(l0); free(l1); free(m0); free(m1);
        dsv4_model_free(m);
    } else {
        dsv4_free(err);
    }
    if (made) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        T(system(cmd) == 0);
    }
    return test_summary();
}
