/* tests/text/bench_tokenizer.c — tokenizer throughput (not a test).
 *
 *   bench_tokenizer [TOKENIZER_JSON] [MB]
 *
 * Encodes a few MB of generated mixed text (the cross-check corpus: many
 * scripts, emoji, code, whitespace, digits) and prints MB/s, then times the
 * reference runner (node shared/tools/tokenize.mjs, js engine; needs
 * TOK_NODE_MODULES) on the same file in the same run. The runner's time is
 * shown both in total and minus its start-up (a run on a 1-byte file). */
#include <dsv4/dsv4.h>

#include "../testutil.h"
#include "corpus.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double run_node(const char *runner, const char *tokp, const char *file)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "node '%s' '%s' '%s' --engine=js >/dev/null 2>&1", runner, tokp, file);
    double t0 = now();
    int rc = system(cmd);
    double t = now() - t0;
    return rc == 0 ? t : -1.0;
}

int main(int argc, char **argv)
{
    char tokp[1100], runner[1100];
    snprintf(tokp, sizeof tokp, "%s/tokenizers/deepseek-v4/tokenizer.json", test_shared_dir());
    snprintf(runner, sizeof runner, "%s/tools/tokenize.mjs", test_shared_dir());
    const char *tp = argc > 1 && argv[1][0] ? argv[1] : tokp;
    double mb = argc > 2 ? atof(argv[2]) : 4.0;
    if (mb <= 0 || mb > 256) mb = 4.0;
    size_t want = (size_t)(mb * 1e6);
    char *text = malloc(want + 4096);
    size_t n = 0;
    for (uint64_t k = 0; n < want; k++) {
        n += corpus_text(k, text + n);
        text[n++] = '\n';
    }
    dsv4_tokenizer *tok = NULL;
    char *err = NULL;
    double t0 = now();
    dsv4_status st = dsv4_tokenizer_load(tp, NULL, &tok, &err);
    double t_load = now() - t0;
    if (st) {
        fprintf(stderr, "bench_tokenizer: %s\n", err ? err : dsv4_status_string(st));
        dsv4_free(err);
        free(text);
        return 1;
    }
    size_t cap = n + 1, n_ids = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        t0 = now();
        st = dsv4_tokenizer_encode(tok, text, n, 0, ids, cap, &n_ids, NULL);
        double t = now() - t0;
        if (t < best) best = t;
    }
    printf("libdsv4 tokenizer: load %.2f s; encode %.2f MB -> %zu ids in %.3f s = %.2f MB/s (status %d)\n", t_load,
           (double)n / 1e6, n_ids, best, (double)n / 1e6 / best, st);
    t0 = now();
    size_t dl = 0;
    char *dec = malloc(n + 1);
    st = dsv4_tokenizer_decode(tok, ids, n_ids, dec, n + 1, &dl);
    double td = now() - t0;
    printf("libdsv4 decode: %.2f MB/s (round trip %s)\n", (double)dl / 1e6 / td,
           st == DSV4_OK && dl == n && memcmp(dec, text, n) == 0 ? "exact" : "FAILED");
    free(dec);

    char *dir = test_tmpdir("t1bench");
    char fbig[1200], fsmall[1200];
    snprintf(fbig, sizeof fbig, "%s/text.txt", dir);
    snprintf(fsmall, sizeof fsmall, "%s/one.txt", dir);
    FILE *f = fopen(fbig, "wb");
    if (f) { fwrite(text, 1, n, f); fclose(f); }
    f = fopen(fsmall, "wb");
    if (f) { fputc('a', f); fclose(f); }
    double tb = run_node(runner, tokp, fbig);
    double ts = tb >= 0 ? run_node(runner, tokp, fsmall) : -1.0;
    if (tb < 0 || ts < 0) {
        printf("reference runner (node, js engine): not available (set TOK_NODE_MODULES, see tests/text/ci-setup.sh)\n");
    } else {
        double net = tb - ts > 1e-3 ? tb - ts : 1e-3;
        printf("reference js runner: %.2f s total (%.2f MB/s), %.2f s start-up, %.2f s encoding = %.2f MB/s\n", tb,
               (double)n / 1e6 / tb, ts, net, (double)n / 1e6 / net);
        printf("speed-up over the js runner's encoding: %.1fx (goal >= 10x)\n", ((double)n / 1e6 / best) / ((double)n / 1e6 / net));
    }
    test_rmtree(dir);
    free(dir);
    free(ids);
    free(text);
    dsv4_tokenizer_free(tok);
    return 0;
}
