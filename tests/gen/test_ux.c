/*
 * tests/gen/test_ux.c — what a new user reaches for first: the names of
 * finish reasons and events, the tokenizer path of a model directory, and
 * prefill progress (with cancellation) in dsv4_session_eval and the
 * generator (experimental tier), the chunk they run in: DSV4_OPT_MAX_BATCH
 * or its default, which a short context lowers to its length (at least 256).
 *
 * On the golden tiny-a checkpoint (512-token vocabulary: prompts are ids
 * below 512) with the real DeepSeek-V4 tokenizer for the generator.
 */
#define DSV4_ENABLE_EXPERIMENTAL 1
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dsv4/dsv4.h"
#include "testutil.h"
#include "core/core.h"

static dsv4_tokenizer *tok;

#include "rig.h"

static void test_names(void)
{
    static const struct { int32_t v; const char *name; } fin[] = {
        { DSV4_FINISH_NONE, "none" }, { DSV4_FINISH_STOP, "stop" }, { DSV4_FINISH_LENGTH, "length" },
        { DSV4_FINISH_TOOL_CALLS, "tool_calls" }, { DSV4_FINISH_ERROR, "error" },
        { DSV4_FINISH_CANCELLED, "cancelled" }, { 6, "unknown" }, { -1, "unknown" }, { INT32_MAX, "unknown" },
    };
    for (size_t i = 0; i < sizeof fin / sizeof fin[0]; i++)
        CHECK(!strcmp(dsv4_finish_reason_string(fin[i].v), fin[i].name), "finish %d: '%s'", fin[i].v,
              dsv4_finish_reason_string(fin[i].v));
    static const struct { int32_t v; const char *name; } ev[] = {
        { DSV4_GEN_EVENT_NONE, "none" }, { DSV4_GEN_EVENT_REASONING, "reasoning" },
        { DSV4_GEN_EVENT_CONTENT, "content" }, { DSV4_GEN_EVENT_TOOL_CALL_START, "tool_call_start" },
        { DSV4_GEN_EVENT_TOOL_CALL_ARGS, "tool_call_args" }, { DSV4_GEN_EVENT_TOOL_CALL_END, "tool_call_end" },
        { DSV4_GEN_EVENT_STOP, "stop" }, { 7, "unknown" }, { -3, "unknown" }, { INT32_MIN, "unknown" },
    };
    for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++)
        CHECK(!strcmp(dsv4_gen_event_name(ev[i].v), ev[i].name), "event %d: '%s'", ev[i].v,
              dsv4_gen_event_name(ev[i].v));
}

/* a copy of the golden checkpoint (symbolic links) with the tokenizer beside it */
static void test_tokenizer_path(const char *golden, const char *tok_path)
{
    dsv4_model *m = NULL;
    CHECK(dsv4_model_tokenizer_path(NULL) == NULL, "tokenizer path of NULL");
    if (CHECK(dsv4_model_load(golden, NULL, &m, NULL) == DSV4_OK, "load golden"))
        CHECK(dsv4_model_tokenizer_path(m) == NULL, "a directory without tokenizer.json: NULL");
    dsv4_model_free(m);
    m = NULL;
    char *dir = test_tmpdir("ux-tok");
    static const char *const files[] = { "config.json", "model.safetensors.index.json",
                                         "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors" };
    char a[4200], b[4200];
    int ok = 1;
    for (size_t i = 0; i < 4; i++) {
        snprintf(a, sizeof a, "%s/%s", golden, files[i]);
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        ok &= symlink(a, b) == 0;
    }
    snprintf(b, sizeof b, "%s/tokenizer.json", dir);
    ok &= symlink(tok_path, b) == 0;
    if (CHECK(ok, "links in %s", dir) && CHECK(dsv4_model_load(dir, NULL, &m, NULL) == DSV4_OK, "load the copy")) {
        const char *p = dsv4_model_tokenizer_path(m);
        CHECK(p && !strcmp(p, b), "tokenizer path '%s' (want '%s')", p ? p : "(null)", b);
        dsv4_tokenizer *t = NULL;
        CHECK(p && dsv4_tokenizer_load(p, NULL, &t, NULL) == DSV4_OK && dsv4_tokenizer_vocab_size(t) == 129280,
              "the tokenizer loads from the model's path");
        dsv4_tokenizer_free(t);
        /* valid while the model lives, whatever else is freed */
        CHECK(p && strlen(p) == strlen(b), "path still readable");
    }
    dsv4_model_free(m);
    test_rmtree(dir);
    free(dir);
}

typedef struct {
    int calls, bad;
    int64_t last_done, total, stop_at; /* stop when done >= stop_at (-1 never) */
    int64_t seen[64];
} prog;

static int32_t on_progress(void *user, int64_t done, int64_t total)
{
    prog *p = user;
    if (p->calls < 64) p->seen[p->calls] = done;
    if (p->calls == 0 ? done != 0 : done < p->last_done) p->bad++;
    if (p->calls && total != p->total) p->bad++;
    if (done > total || done < 0) p->bad++;
    p->calls++;
    p->last_done = done;
    p->total = total;
    return p->stop_at >= 0 && done >= p->stop_at;
}

static float max_diff(const float *a, const float *b, size_t n)
{
    float d = 0;
    for (size_t i = 0; i < n; i++) d = fmaxf(d, fabsf(a[i] - b[i]));
    return d;
}

static int open_batch(rig *r, const char *dir, int64_t max_batch)
{
    memset(r, 0, sizeof *r);
    dsv4_options *o = NULL;
    dsv4_options_create(&o);
    dsv4_options_set_i64(o, DSV4_OPT_THREADS, 1);
    dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, 1024);
    dsv4_options_set_i64(o, DSV4_OPT_MAX_BATCH, max_batch);
    int ok = CHECK(dsv4_model_load(dir, NULL, &r->m, NULL) == DSV4_OK, "load") &&
             CHECK(dsv4_context_create(r->m, o, &r->c, NULL) == DSV4_OK, "context") &&
             CHECK(dsv4_session_create(r->c, NULL, &r->s, NULL) == DSV4_OK, "session");
    dsv4_options_free(o);
    return ok;
}

static void test_session_progress(const char *golden)
{
    enum { V = 512, N = 10 };
    rig r, ref;
    if (!open_batch(&r, golden, 4) || !open_batch(&ref, golden, 4)) {
        rig_close(&r);
        rig_close(&ref);
        return;
    }
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = 3 + (i * 37) % 500;
    static float a[N * V], b[N * V];
    CHECK(dsv4_session_set_progress(NULL, on_progress, NULL) == DSV4_ERR_INVALID_ARGUMENT, "set_progress(NULL)");

    /* every chunk of MAX_BATCH 4 is reported: 0, 4, 8, 10 */
    prog p = { .stop_at = -1 };
    CHECK(dsv4_session_set_progress(r.s, on_progress, &p) == DSV4_OK, "set_progress");
    CHECK(dsv4_session_eval(r.s, ids, N, DSV4_EVAL_ALL_LOGITS) == DSV4_OK, "eval with progress");
    CHECK(p.calls == 4 && p.bad == 0 && p.seen[0] == 0 && p.seen[1] == 4 && p.seen[2] == 8 && p.seen[3] == 10 &&
          p.total == N, "progress events: %d calls (0, 4, 8, 10 of 10), %d bad", p.calls, p.bad);
    CHECK(dsv4_session_eval(ref.s, ids, N, DSV4_EVAL_ALL_LOGITS) == DSV4_OK, "eval without progress");
    int same = 1;
    for (int i = 0; i < N; i++) {
        same &= dsv4_session_logits(r.s, i, a + i * V, V) == DSV4_OK;
        same &= dsv4_session_logits(ref.s, i, b + i * V, V) == DSV4_OK;
    }
    float d = max_diff(a, b, (size_t)N * V);
    CHECK(same && d <= 1e-5f, "every position's logits the same with progress reports (max diff %g)", d);

    /* stop after the first chunk: 4 tokens kept, their last logits readable */
    dsv4_session_reset(r.s);
    dsv4_session_reset(ref.s);
    p = (prog){ .stop_at = 4 };
    CHECK(dsv4_session_eval(r.s, ids, N, 0) == DSV4_ERR_ABORTED, "a nonzero return stops the eval");
    CHECK(dsv4_session_position(r.s) == 4, "the chunk already run is kept (position %lld, want 4)",
          (long long)dsv4_session_position(r.s));
    CHECK(p.calls == 2, "no report after the stop (%d calls)", p.calls);
    CHECK(strstr(dsv4_session_last_error(r.s), "progress") != NULL, "message: %s", dsv4_session_last_error(r.s));
    dsv4_session_eval(ref.s, ids, 4, 0);
    CHECK(dsv4_session_logits(r.s, -1, a, V) == DSV4_OK && dsv4_session_logits(ref.s, -1, b, V) == DSV4_OK &&
          max_diff(a, b, V) <= 1e-5f, "the kept logits are those of the 4 tokens fed");
    /* ... and the eval goes on from there as if it had been one call */
    p = (prog){ .stop_at = -1 };
    CHECK(dsv4_session_eval(r.s, ids + 4, N - 4, 0) == DSV4_OK && dsv4_session_eval(ref.s, ids + 4, N - 4, 0) == DSV4_OK,
          "go on");
    CHECK(dsv4_session_logits(r.s, -1, a, V) == DSV4_OK && dsv4_session_logits(ref.s, -1, b, V) == DSV4_OK &&
          max_diff(a, b, V) <= 1e-5f, "same logits after the rest");

    /* stop before any work: the session is unchanged */
    int64_t pos = dsv4_session_position(r.s);
    dsv4_session_logits(r.s, -1, b, V);
    p = (prog){ .stop_at = 0 };
    CHECK(dsv4_session_eval(r.s, ids, 3, 0) == DSV4_ERR_ABORTED && dsv4_session_position(r.s) == pos && p.calls == 1,
          "a stop at 0 leaves the session as it was");
    CHECK(dsv4_session_logits(r.s, -1, a, V) == DSV4_OK && max_diff(a, b, V) == 0, "and its logits");
    /* cleared: no more reports */
    dsv4_session_set_progress(r.s, NULL, NULL);
    p = (prog){ .stop_at = 0 };
    CHECK(dsv4_session_eval(r.s, ids, 3, 0) == DSV4_OK && p.calls == 0, "cleared callback: no reports");
    rig_close(&r);
    rig_close(&ref);
}

/* a rig of that chunk and a generator on its session; 0 (r closed) on failure */
static int open_gen(rig *r, const char *golden, int64_t max_batch, dsv4_gen **g)
{
    *g = NULL;
    if (open_batch(r, golden, max_batch) && CHECK(dsv4_gen_create(r->s, tok, g) == DSV4_OK, "gen")) return 1;
    rig_close(r);
    return 0;
}

static void test_gen_progress(const char *golden)
{
    enum { N = 600 };
    rig r;
    dsv4_gen *g;
    if (!open_gen(&r, golden, 256, &g)) return;
    CHECK(dsv4_gen_set_progress(NULL, on_progress, NULL) == DSV4_ERR_INVALID_ARGUMENT, "gen_set_progress(NULL)");
    static int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = 3 + (i * 101) % 500;
    dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 2);
    dsv4_gen_set_i64(g, DSV4_GEN_THINKING, 0);

    /* stopped after the first chunk of 256: ABORTED, 256 tokens kept */
    prog p = { .stop_at = 256 };
    CHECK(dsv4_gen_set_progress(g, on_progress, &p) == DSV4_OK, "gen_set_progress");
    CHECK(dsv4_gen_start(g, ids, N) == DSV4_ERR_ABORTED, "a nonzero return stops the prefill: %s",
          dsv4_gen_last_error(g));
    CHECK(p.calls == 2 && p.bad == 0 && p.total == N, "reports before the stop: %d (0, 256 of 600)", p.calls);
    CHECK(dsv4_session_position(r.s) == 256, "256 tokens stay in the session (%lld)",
          (long long)dsv4_session_position(r.s));

    /* the next start goes on from there: 344 tokens left, in chunks 0, 256, 344 */
    p = (prog){ .stop_at = -1 };
    CHECK(dsv4_gen_start(g, ids, N) == DSV4_OK, "start again: %s", dsv4_gen_last_error(g));
    CHECK(dsv4_gen_usage(g, DSV4_USAGE_CACHED_TOKENS) == 256, "cached %lld (want 256)",
          (long long)dsv4_gen_usage(g, DSV4_USAGE_CACHED_TOKENS));
    CHECK(p.calls == 3 && p.bad == 0 && p.seen[0] == 0 && p.seen[1] == 256 && p.seen[2] == 344 && p.total == 344,
          "progress of the rest: %d calls, %d bad, total %lld", p.calls, p.bad, (long long)p.total);
    int32_t fin = -1;
    dsv4_gen_event_type t;
    for (int i = 0; i < 100 && dsv4_gen_next(g, &t, &fin, NULL, NULL) == DSV4_OK && t != DSV4_GEN_EVENT_STOP; i++) {}
    CHECK(fin == DSV4_FINISH_LENGTH || fin == DSV4_FINISH_STOP, "then generates (finish %s)",
          dsv4_finish_reason_string(fin));
    /* the finish name is the response JSON's */
    char *resp = NULL, want[64];
    snprintf(want, sizeof want, "\"finish_reason\":\"%s\"", dsv4_finish_reason_string(dsv4_gen_finish_reason(g)));
    CHECK(dsv4_gen_response_json(g, &resp) == DSV4_OK && strstr(resp, want), "response JSON has %s", want);
    dsv4_free(resp);

    /* a fresh prompt of 600: 0, 256, 512, 600; a stop on the last report still aborts */
    ids[0] = 4;
    p = (prog){ .stop_at = 600 };
    CHECK(dsv4_gen_start(g, ids, N) == DSV4_ERR_ABORTED && p.calls == 4 && p.seen[2] == 512 && p.seen[3] == 600,
          "a stop on the last report: ABORTED after 4 reports (%d)", p.calls);
    /* cleared */
    dsv4_gen_set_progress(g, NULL, NULL);
    p = (prog){ .stop_at = 0 };
    ids[0] = 5;
    CHECK(dsv4_gen_start(g, ids, 10) == DSV4_OK && p.calls == 0, "cleared: no reports");
    dsv4_gen_free(g);
    rig_close(&r);
}

/* the generator feeds a prompt in chunks of its context's DSV4_OPT_MAX_BATCH */
static void test_gen_chunk(const char *golden)
{
    enum { N = 250 };
    rig r;
    dsv4_gen *g;
    if (!open_gen(&r, golden, 100, &g)) return;
    static int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = 3 + (i * 53) % 500;
    dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 1);
    dsv4_gen_set_i64(g, DSV4_GEN_THINKING, 0);
    prog p = { .stop_at = -1 };
    dsv4_gen_set_progress(g, on_progress, &p);
    CHECK(dsv4_gen_start(g, ids, N) == DSV4_OK, "start: %s", dsv4_gen_last_error(g));
    CHECK(p.calls == 4 && p.bad == 0 && p.seen[1] == 100 && p.seen[2] == 200 && p.seen[3] == 250,
          "a 250-token prompt at MAX_BATCH 100: reports at 0, 100, 200, 250 (%d reports, second at %lld)", p.calls,
          (long long)p.seen[1]);
    dsv4_gen_free(g);
    rig_close(&r);
}

/* the default chunk follows the context length: unset, min(1024, max(256,
 * length)); set, the value given whatever the length */
static void test_default_chunk(const char *golden)
{
    dsv4_model *m = NULL;
    if (!CHECK(dsv4_model_load(golden, NULL, &m, NULL) == DSV4_OK, "load")) return;
    struct { int64_t n_ctx, set, want; } cs[] = { { 128, 0, 256 }, { 255, 0, 256 }, { 700, 0, 700 },
                                                   { 1024, 0, 1024 }, { 128, 1000, 1000 }, { 700, 64, 64 } };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        dsv4_options *o = NULL;
        dsv4_options_create(&o);
        dsv4_options_set_i64(o, DSV4_OPT_THREADS, 1);
        dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, cs[i].n_ctx);
        if (cs[i].set) dsv4_options_set_i64(o, DSV4_OPT_MAX_BATCH, cs[i].set);
        dsv4_context *c = NULL;
        dsv4_session *s = NULL;
        if (CHECK(dsv4_context_create(m, o, &c, NULL) == DSV4_OK && dsv4_session_create(c, NULL, &s, NULL) == DSV4_OK,
                  "context of %lld", (long long)cs[i].n_ctx))
            CHECK(dsv4__session_max_batch(s) == cs[i].want, "length %lld, MAX_BATCH %lld: chunk %lld (want %lld)",
                  (long long)cs[i].n_ctx, (long long)cs[i].set, (long long)dsv4__session_max_batch(s),
                  (long long)cs[i].want);
        dsv4_session_free(s);
        dsv4_context_free(c);
        dsv4_options_free(o);
    }
    dsv4_model_free(m);
    /* and the memory estimate counts that chunk's scratch: the RAM beyond
     * the KV grows from 128 to 700 positions (256 to 700 rows), then stays
     * from 1024 to 2048 (1024 rows both) */
    dsv4_model_info *info = NULL;
    if (CHECK(dsv4_model_info_from_dir(golden, NULL, &info, NULL) == DSV4_OK, "model info")) {
        int64_t kv[4], ram[4], at[4] = { 128, 700, 1024, 2048 };
        int ok = 1;
        for (int i = 0; i < 4; i++)
            ok &= dsv4_model_info_memory(info, at[i], DSV4_NUMERICS_DEFAULT, &kv[i], &ram[i]) == DSV4_OK;
        CHECK(ok && ram[1] - kv[1] > ram[0] - kv[0] && ram[3] - kv[3] == ram[2] - kv[2],
              "memory estimate beyond the KV at 128 / 700 / 1024 / 2048 positions: %lld %lld %lld %lld",
              (long long)(ram[0] - kv[0]), (long long)(ram[1] - kv[1]), (long long)(ram[2] - kv[2]),
              (long long)(ram[3] - kv[3]));
    }
    dsv4_model_info_free(info);
}

int main(void)
{
    char path[4096], golden[4096];
    snprintf(path, sizeof path, "%s/tokenizers/deepseek-v4/tokenizer.json", test_shared_dir());
    snprintf(golden, sizeof golden, "%s/golden/tiny-a/ckpt", test_shared_dir());
    test_names();
    char *err = NULL;
    if (!CHECK(dsv4_tokenizer_load(path, NULL, &tok, &err) == DSV4_OK, "tokenizer %s: %s", path, err ? err : ""))
        return test_summary();
    test_tokenizer_path(golden, path);
    test_session_progress(golden);
    test_gen_progress(golden);
    test_gen_chunk(golden);
    test_default_chunk(golden);
    dsv4_tokenizer_free(tok);
    return test_summary();
}
