/*
 * tests/long — a long context on a tiny golden checkpoint: feed 69 990
 * tokens in chunks, then decode one token at a time to position 70 000 with
 * the capacity set to exactly that. Checks that every step succeeds, the
 * logits stay finite, the KV memory in use equals the figure the model info
 * reports for 70 000 tokens (reference numerics, compact storage), and that
 * one more token is refused with DSV4_ERR_CONTEXT_FULL, leaving the session
 * as it was.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <dsv4/dsv4.h>
#include "testutil.h"

#define T(c) CHECK((c), "%s", #c)

int main(void)
{
    const int64_t N = 70000;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/golden/tiny-a/ckpt", test_shared_dir());
    dsv4_model *m = NULL;
    char *err = NULL;
    if (!CHECK(dsv4_model_load(dir, NULL, &m, &err) == DSV4_OK, "load %s: %s", dir, err ? err : "")) {
        dsv4_free(err);
        return test_summary();
    }
    dsv4_options *o = NULL;
    dsv4_options_create(&o);
    dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, N);
    dsv4_options_set_i64(o, DSV4_OPT_MAX_BATCH, 512);
    dsv4_options_set_i64(o, DSV4_OPT_NUMERICS, DSV4_NUMERICS_REFERENCE);
    dsv4_context *ctx = NULL;
    dsv4_session *s = NULL;
    T(dsv4_context_create(m, o, &ctx, NULL) == DSV4_OK);
    T(ctx && dsv4_session_create(ctx, NULL, &s, NULL) == DSV4_OK);
    dsv4_model_info *info = NULL;
    int64_t V = 0, kv_info = 0;
    dsv4_model_get_info(m, &info);
    dsv4_model_info_get_i64(info, DSV4_INFO_VOCAB_SIZE, &V);
    T(dsv4_model_info_memory(info, N, DSV4_NUMERICS_REFERENCE, &kv_info, NULL) == DSV4_OK);
    dsv4_model_info_free(info);
    int32_t *tok = malloc(512 * sizeof *tok);
    float *lg = malloc((size_t)V * 4);
    uint32_t st = 12345;
    int ok = s != NULL, finite = 1;
    int64_t pos = 0;
    while (ok && pos < N) {
        int64_t k = N - pos > 10 ? (N - pos - 10 < 512 ? N - pos - 10 : 512) : 1;
        for (int64_t i = 0; i < k; i++) { st = st * 1103515245u + 12345u; tok[i] = (int32_t)((st >> 8) % (uint32_t)V); }
        ok = dsv4_session_eval(s, tok, (size_t)k, 0) == DSV4_OK && dsv4_session_logits(s, -1, lg, (size_t)V) == DSV4_OK;
        for (int64_t v = 0; ok && v < V; v++) finite &= isfinite(lg[v]) != 0;
        pos += k;
    }
    CHECK(ok && pos == N && dsv4_session_position(s) == N, "fed and decoded to position %lld", (long long)pos);
    CHECK(finite, "logits finite at every step");
    int64_t reserved = 0, used = 0;
    T(s && dsv4_session_memory(s, &reserved, &used) == DSV4_OK);
    CHECK(used == kv_info && used <= reserved, "KV in use %lld B = reported %lld B for %lld tokens (%.1f B/token); "
          "reserved %lld B", (long long)used, (long long)kv_info, (long long)N, (double)used / (double)N,
          (long long)reserved);
    printf("KV at %lld tokens: %lld B in use (%.2f B/token), %lld B reserved\n", (long long)N, (long long)used,
           (double)used / (double)N, (long long)reserved);
    float *lg2 = malloc((size_t)V * 4);
    T(s && dsv4_session_eval(s, tok, 1, 0) == DSV4_ERR_CONTEXT_FULL && dsv4_session_position(s) == N);
    T(s && dsv4_session_logits(s, -1, lg2, (size_t)V) == DSV4_OK && !memcmp(lg, lg2, (size_t)V * 4));
    free(lg2);
    free(lg);
    free(tok);
    dsv4_session_free(s);
    dsv4_context_free(ctx);
    dsv4_options_free(o);
    dsv4_model_free(m);
    return test_summary();
}
