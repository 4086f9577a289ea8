/* tests/text/test_tokenizer_ref.c — cross-check against the reference
 * runner (node shared/tools/tokenize.mjs, both engines) on a generated
 * corpus of a few hundred varied texts. Needs node and the npm packages
 * (TOK_NODE_MODULES, see tests/text/ci-setup.sh); prints a skip when they
 * are missing, which is a failure when CI=true. */
#include <dsv4/dsv4.h>

#include "../testutil.h"
#include "corpus.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_TEXTS 400

static void put_json(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

int main(void)
{
    const char *ci = getenv("CI");
    int in_ci = ci && strcmp(ci, "true") == 0;
    char tokp[1100], runner[1100], cases[1200];
    snprintf(tokp, sizeof tokp, "%s/tokenizers/deepseek-v4/tokenizer.json", test_shared_dir());
    snprintf(runner, sizeof runner, "%s/tools/tokenize.mjs", test_shared_dir());
    dsv4_tokenizer *tok = NULL;
    char *err = NULL;
    if (!CHECK(dsv4_tokenizer_load(tokp, NULL, &tok, &err) == DSV4_OK, "load: %s", err ? err : "")) {
        dsv4_free(err);
        return test_summary();
    }
    char *dir = test_tmpdir("t1ref");
    snprintf(cases, sizeof cases, "%s/cases.jsonl", dir);
    FILE *f = fopen(cases, "wb");
    char (*texts)[4096] = malloc(N_TEXTS * sizeof *texts);
    size_t *lens = malloc(N_TEXTS * sizeof *lens);
    for (int i = 0; i < N_TEXTS; i++) {
        lens[i] = corpus_text((uint64_t)i, texts[i]);
        put_json(f, texts[i], lens[i]);
        fputc('\n', f);
    }
    fclose(f);

    /* our own round trip on every text, runner or not */
    int32_t *ids = malloc(8192 * sizeof *ids);
    char *dec = malloc(4096);
    int rt_ok = 0;
    for (int i = 0; i < N_TEXTS; i++) {
        size_t n = 0, dl = 0;
        if (dsv4_tokenizer_encode(tok, texts[i], lens[i], 0, ids, 8192, &n, NULL) == DSV4_OK &&
            dsv4_tokenizer_decode(tok, ids, n, dec, 4096, &dl) == DSV4_OK && dl == lens[i] &&
            memcmp(dec, texts[i], dl) == 0)
            rt_ok++;
    }
    CHECK(rt_ok == N_TEXTS, "decode(encode(x)) == x for %d/%d corpus texts", rt_ok, N_TEXTS);

    static const char *const engines[] = {"js", "rust"};
    for (int e = 0; e < 2; e++) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "node '%s' '%s' '%s' --jsonl --engine=%s 2>/dev/null", runner, tokp, cases,
                 engines[e]);
        FILE *p = popen(cmd, "r");
        char *line = NULL;
        size_t lcap = 0;
        ssize_t ll;
        int got = 0, same = 0;
        while (p && (ll = getline(&line, &lcap, p)) > 0 && got < N_TEXTS) {
            json_t *o = json_loadb(line, (size_t)ll, 0, NULL);
            json_t *ji = json_object_get(o, "ids");
            size_t n = 0;
            int eq = 0;
            if (json_is_array(ji) &&
                dsv4_tokenizer_encode(tok, texts[got], lens[got], 0, ids, 8192, &n, NULL) == DSV4_OK &&
                n == json_array_size(ji)) {
                eq = 1;
                for (size_t k = 0; k < n && eq; k++) eq = ids[k] == json_integer_value(json_array_get(ji, k));
            }
            if (!eq && same + 5 > got) {
                fprintf(stderr, "  %s engine differs on text %d: ", engines[e], got);
                put_json(stderr, texts[got], lens[got]);
                fputc('\n', stderr);
            }
            same += eq;
            got++;
            json_decref(o);
        }
        free(line);
        int rc = p ? pclose(p) : -1;
        if (got == 0) {
            printf("SKIP: reference runner (node + npm packages, engine %s) not available%s\n", engines[e],
                   in_ci ? " -- required when CI=true" : "; run tests/text/ci-setup.sh and set TOK_NODE_MODULES");
            if (in_ci) CHECK(0, "reference runner missing in CI (engine %s)", engines[e]);
            continue;
        }
        CHECK(rc == 0 && got == N_TEXTS, "runner %s answered %d/%d texts (exit %d)", engines[e], got, N_TEXTS, rc);
        CHECK(same == N_TEXTS, "ids equal to the %s engine on %d/%d texts", engines[e], same, got);
        printf("reference %s engine: %d/%d texts identical\n", engines[e], same, got);
    }
    free(ids);
    free(dec);
    free(texts);
    free(lens);
    test_rmtree(dir);
    free(dir);
    dsv4_tokenizer_free(tok);
    return test_summary();
}
