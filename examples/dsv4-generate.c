/*
 * dsv4-generate — continue a text with a model: tokenize, prefill, then
 * sample token by token, printing the text as it is produced.
 *
 *   dsv4-generate [options] MODEL_DIR "prompt text"
 *
 * Options: --tokens N (default 32), --temperature T (default 0.8; 0 =
 * greedy), --top-p P (default 0.95), --seed S (default 1), --numerics
 * reference|float, --threads N. The prompt is encoded with the BOS token
 * first; generation stops at EOS or after N tokens.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dsv4/dsv4.h>
#include <dsv4/dsv4_sampler.h>
#include <dsv4/dsv4_text.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    long long n_gen = 32, seed = 1, threads = 0;
    double temp = 0.8, top_p = 0.95;
    int numerics = DSV4_NUMERICS_REFERENCE, i = 1;
    for (; i + 1 < argc && !strncmp(argv[i], "--", 2); i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        char *end;
        errno = 0;
        if (!strcmp(a, "--tokens")) n_gen = strtoll(v, &end, 10);
        else if (!strcmp(a, "--seed")) seed = strtoll(v, &end, 10);
        else if (!strcmp(a, "--threads")) threads = strtoll(v, &end, 10);
        else if (!strcmp(a, "--temperature")) temp = strtod(v, &end);
        else if (!strcmp(a, "--top-p")) top_p = strtod(v, &end);
        else if (!strcmp(a, "--numerics")) {
            numerics = !strcmp(v, "float") ? DSV4_NUMERICS_FLOAT : DSV4_NUMERICS_REFERENCE;
            end = (char *)v + strlen(v);
        } else {
            fprintf(stderr, "dsv4-generate: unknown option %s\n", a);
            return 2;
        }
        if (errno || *end || n_gen < 1 || n_gen > 1000000) {
            fprintf(stderr, "dsv4-generate: bad value for %s: %s\n", a, v);
            return 2;
        }
    }
    if (argc - i != 2) {
        fprintf(stderr, "usage: dsv4-generate [--tokens N] [--temperature T] [--top-p P] [--seed S] "
                        "[--numerics reference|float] [--threads N] MODEL_DIR \"prompt\"\n");
        return 2;
    }
    const char *dir = argv[i], *prompt = argv[i + 1];
    int rc = 1;
    char *err = NULL, path[4096];
    dsv4_status st = DSV4_OK;
    dsv4_model *m = NULL;
    dsv4_tokenizer *tok = NULL;
    dsv4_context *ctx = NULL;
    dsv4_session *s = NULL;
    dsv4_options *o = NULL;
    dsv4_sampler *smp = NULL;
    dsv4_detok *dt = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    char *out = NULL;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if ((st = dsv4_model_load(dir, NULL, &m, &err)) || (st = dsv4_tokenizer_load(path, NULL, &tok, &err))) goto fail;
    size_t n = 0, len = strlen(prompt);
    st = dsv4_tokenizer_encode(tok, prompt, len, DSV4_ENCODE_ADD_BOS, NULL, 0, &n, &err);
    if (st && st != DSV4_ERR_BUFFER_TOO_SMALL) goto fail;
    ids = malloc((n + 1) * sizeof *ids);
    if (!ids) goto out;
    if ((st = dsv4_tokenizer_encode(tok, prompt, len, DSV4_ENCODE_ADD_BOS, ids, n, &n, &err))) goto fail;
    if ((st = dsv4_options_create(&o))) goto fail;
    dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, (int64_t)(n + (size_t)n_gen));
    dsv4_options_set_i64(o, DSV4_OPT_NUMERICS, numerics);
    dsv4_options_set_i64(o, DSV4_OPT_THREADS, threads);
    if ((st = dsv4_context_create(m, o, &ctx, &err)) || (st = dsv4_session_create(ctx, NULL, &s, &err))) goto fail;
    if ((st = dsv4_sampler_create(&smp))) goto fail;
    dsv4_sampler_set_f64(smp, DSV4_SAMPLER_TEMPERATURE, temp);
    dsv4_sampler_set_f64(smp, DSV4_SAMPLER_TOP_P, top_p);
    dsv4_sampler_set_i64(smp, DSV4_SAMPLER_SEED, seed);
    if ((st = dsv4_detok_create(tok, &dt))) goto fail;
    size_t V = (size_t)dsv4_tokenizer_vocab_size(tok), cap = dsv4_detok_max_chunk(dt);
    logits = malloc(V * sizeof *logits);
    out = malloc(cap + 1);
    if (!logits || !out) goto out;
    printf("%s", prompt);
    fflush(stdout);
    double t0 = now();
    if ((st = dsv4_session_eval(s, ids, n, 0))) goto fail_session;
    double t1 = now();
    long long made = 0;
    for (; made < n_gen; made++) {
        int32_t next;
        size_t w = 0;
        if ((st = dsv4_session_logits(s, -1, logits, V)) || (st = dsv4_sampler_sample(smp, logits, V, &next)) ||
            (st = dsv4_sampler_accept(smp, next)))
            goto fail_session;
        if (next == dsv4_tokenizer_special_id(tok, DSV4_TOKEN_EOS)) break;
        if ((st = dsv4_detok_feed(dt, next, out, cap, &w))) goto fail_session;
        fwrite(out, 1, w, stdout);
        fflush(stdout);
        if (made + 1 < n_gen && (st = dsv4_session_eval(s, &next, 1, 0))) goto fail_session;
    }
    size_t w = 0;
    if (dsv4_detok_flush(dt, out, cap, &w) == DSV4_OK) fwrite(out, 1, w, stdout);
    double t2 = now();
    fprintf(stderr, "\n[prompt %zu tokens in %.3f s; generated %lld tokens in %.3f s (%.1f tokens/s)]\n", n, t1 - t0,
            made, t2 - t1, made / (t2 - t1 > 0 ? t2 - t1 : 1e-9));
    rc = 0;
    goto out;
fail_session:
    fprintf(stderr, "dsv4-generate: %s (%s)\n", s ? dsv4_session_last_error(s) : "", dsv4_status_string(st));
    goto out;
fail:
    fprintf(stderr, "dsv4-generate: %s\n", err ? err : dsv4_status_string(st));
out:
    dsv4_free(err);
    free(ids);
    free(logits);
    free(out);
    dsv4_detok_free(dt);
    dsv4_sampler_free(smp);
    dsv4_session_free(s);
    dsv4_context_free(ctx);
    dsv4_options_free(o);
    dsv4_tokenizer_free(tok);
    dsv4_model_free(m);
    return rc;
}
