/*
 * dsv4-logits — run a model over a list of token ids and write the logits
 * of every position (and the MTP logits) as .npy files.
 *
 *   dsv4-logits [options] MODEL_DIR TOKENS.json OUT_PREFIX
 *
 * TOKENS.json is a JSON array of token ids. Writes OUT_PREFIX.logits.npy
 * (float32 [n, vocab]: row i = next-token logits after tokens[0..i]) and,
 * with --mtp, OUT_PREFIX.mtp.npy (float32 [n-1, vocab]: row i = the MTP
 * prediction of token i+2 from the state at i and token i+1).
 *
 * Options:
 *   --numerics reference|float   (default reference)
 *   --revision current|initial   (default current)
 *   --chunk N      feed the tokens in pieces of N (default: all at once)
 *   --decode       feed them one at a time (same as --chunk 1)
 *   --max-batch N  the context's largest internal batch (default 1024)
 *   --threads N    worker threads (default: one per core)
 *   --mtp          also write the MTP logits
 *   --ctx N        context capacity (default: the number of tokens)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <dsv4/dsv4.h>

static void usage(void)
{
    fprintf(stderr, "usage: dsv4-logits [--numerics reference|float] [--revision current|initial] [--chunk N] "
                    "[--decode] [--max-batch N] [--threads N] [--mtp] [--ctx N] MODEL_DIR TOKENS.json OUT_PREFIX\n");
}

static int write_npy(const char *path, const float *data, int64_t rows, int64_t cols)
{
    FILE *f = fopen(path, "wb");
    if (!f) { fprintf(stderr, "dsv4-logits: %s: %s\n", path, strerror(errno)); return -1; }
    char hdr[128];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                     (long long)rows, (long long)cols);
    int total = 10 + n + 1, pad = (64 - total % 64) % 64;
    unsigned char pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0 };
    unsigned hl = (unsigned)(n + pad + 1);
    pre[8] = (unsigned char)(hl & 255);
    pre[9] = (unsigned char)(hl >> 8);
    fwrite(pre, 1, 10, f);
    fwrite(hdr, 1, (size_t)n, f);
    for (int i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    size_t cnt = (size_t)(rows * cols);
    if (cnt && fwrite(data, sizeof *data, cnt, f) != cnt) {
        fclose(f);
        fprintf(stderr, "dsv4-logits: %s: write failed\n", path);
        return -1;
    }
    if (fclose(f)) { fprintf(stderr, "dsv4-logits: %s: %s\n", path, strerror(errno)); return -1; }
    return 0;
}

static int parse_i64(const char *s, long long lo, long long *v)
{
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || *end || end == s || x < lo) return -1;
    *v = x;
    return 0;
}

int main(int argc, char **argv)
{
    long long chunk = 0, max_batch = 1024, threads = 0, n_ctx = 0;
    int numerics = DSV4_NUMERICS_REFERENCE, revision = DSV4_REVISION_CURRENT, mtp = 0;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--decode")) { chunk = 1; continue; }
        if (!strcmp(a, "--mtp")) { mtp = 1; continue; }
        if (!v) { usage(); return 2; }
        i++;
        if (!strcmp(a, "--numerics")) {
            if (!strcmp(v, "reference")) numerics = DSV4_NUMERICS_REFERENCE;
            else if (!strcmp(v, "float")) numerics = DSV4_NUMERICS_FLOAT;
            else { fprintf(stderr, "dsv4-logits: --numerics takes reference or float\n"); return 2; }
        } else if (!strcmp(a, "--revision")) {
            if (!strcmp(v, "current")) revision = DSV4_REVISION_CURRENT;
            else if (!strcmp(v, "initial")) revision = DSV4_REVISION_INITIAL;
            else { fprintf(stderr, "dsv4-logits: --revision takes current or initial\n"); return 2; }
        } else if (!strcmp(a, "--chunk")) {
            if (parse_i64(v, 1, &chunk)) { fprintf(stderr, "dsv4-logits: bad --chunk %s\n", v); return 2; }
        } else if (!strcmp(a, "--max-batch")) {
            if (parse_i64(v, 1, &max_batch)) { fprintf(stderr, "dsv4-logits: bad --max-batch %s\n", v); return 2; }
        } else if (!strcmp(a, "--threads")) {
            if (parse_i64(v, 0, &threads)) { fprintf(stderr, "dsv4-logits: bad --threads %s\n", v); return 2; }
        } else if (!strcmp(a, "--ctx")) {
            if (parse_i64(v, 1, &n_ctx)) { fprintf(stderr, "dsv4-logits: bad --ctx %s\n", v); return 2; }
        } else {
            usage();
            return 2;
        }
    }
    if (argc - i != 3) { usage(); return 2; }
    const char *dir = argv[i], *tok_path = argv[i + 1], *prefix = argv[i + 2];

    json_error_t jerr;
    json_t *arr = json_load_file(tok_path, 0, &jerr);
    if (!arr || !json_is_array(arr) || json_array_size(arr) == 0) {
        fprintf(stderr, "dsv4-logits: %s: expected a non-empty JSON array of token ids%s%s\n", tok_path,
                arr ? "" : ": ", arr ? "" : jerr.text);
        json_decref(arr);
        return 1;
    }
    size_t n = json_array_size(arr);
    int32_t *tokens = malloc(n * sizeof *tokens);
    if (!tokens) { json_decref(arr); return 1; }
    for (size_t k = 0; k < n; k++) {
        json_t *t = json_array_get(arr, k);
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > INT32_MAX) {
            fprintf(stderr, "dsv4-logits: %s: element %zu is not a token id\n", tok_path, k);
            json_decref(arr);
            free(tokens);
            return 1;
        }
        tokens[k] = (int32_t)json_integer_value(t);
    }
    json_decref(arr);

    int rc = 1;
    char *err = NULL;
    dsv4_model *model = NULL;
    dsv4_context *ctx = NULL;
    dsv4_session *s = NULL;
    dsv4_options *opts = NULL;
    float *logits = NULL, *mlog = NULL;
    dsv4_status st;
    if ((st = dsv4_options_create(&opts))) goto fail_status;
    if ((st = dsv4_model_load(dir, NULL, &model, &err))) goto fail;
    dsv4_options_set_i64(opts, DSV4_OPT_NUMERICS, numerics);
    dsv4_options_set_i64(opts, DSV4_OPT_REVISION, revision);
    dsv4_options_set_i64(opts, DSV4_OPT_CONTEXT_LENGTH, n_ctx ? n_ctx : (long long)n);
    dsv4_options_set_i64(opts, DSV4_OPT_MAX_BATCH, max_batch);
    dsv4_options_set_i64(opts, DSV4_OPT_THREADS, threads);
    if ((st = dsv4_context_create(model, opts, &ctx, &err))) goto fail;
    dsv4_options_set_i64(opts, DSV4_OPT_MTP, mtp);
    if ((st = dsv4_session_create(ctx, opts, &s, &err))) goto fail;
    int64_t V = 0;
    dsv4_model_info *info = NULL;
    if ((st = dsv4_model_get_info(model, &info))) goto fail_status;
    dsv4_model_info_get_i64(info, DSV4_INFO_VOCAB_SIZE, &V);
    dsv4_model_info_free(info);
    logits = malloc(n * (size_t)V * sizeof *logits);
    mlog = malloc(n * (size_t)V * sizeof *mlog);
    if (!logits || !mlog) { fprintf(stderr, "dsv4-logits: out of memory\n"); goto out; }
    size_t step = chunk ? (size_t)chunk : n, n_mtp = 0;
    for (size_t p = 0; p < n; p += step) {
        size_t m = n - p < step ? n - p : step;
        if ((st = dsv4_session_eval(s, tokens + p, m, DSV4_EVAL_ALL_LOGITS))) {
            fprintf(stderr, "dsv4-logits: eval at %zu: %s (%s)\n", p, dsv4_session_last_error(s), dsv4_status_string(st));
            goto out;
        }
        for (size_t q = p; q < p + m; q++)
            if ((st = dsv4_session_logits(s, (int64_t)q, logits + q * (size_t)V, (size_t)V))) goto fail_status;
        if (mtp)
            for (size_t q = p ? p - 1 : 0; q + 1 < p + m; q++, n_mtp++)
                if ((st = dsv4_session_mtp_logits(s, (int64_t)q, mlog + q * (size_t)V, (size_t)V))) goto fail_status;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s.logits.npy", prefix);
    if (write_npy(path, logits, (int64_t)n, V)) goto out;
    if (mtp) {
        snprintf(path, sizeof path, "%s.mtp.npy", prefix);
        if (write_npy(path, mlog, (int64_t)n_mtp, V)) goto out;
    }
    rc = 0;
    goto out;
fail_status:
    fprintf(stderr, "dsv4-logits: %s\n", dsv4_status_string(st));
    goto out;
fail:
    fprintf(stderr, "dsv4-logits: %s\n", err ? err : dsv4_status_string(st));
out:
    dsv4_free(err);
    free(logits);
    free(mlog);
    free(tokens);
    dsv4_session_free(s);
    dsv4_context_free(ctx);
    dsv4_model_free(model);
    dsv4_options_free(opts);
    return rc;
}
