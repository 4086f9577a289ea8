/*
 * tests/gen/test_request.c — the request path and the generator's object
 * contracts, with the library's internal hooks (linked against the static
 * copy, as the constraint tests are):
 *  - each request is parsed once, its prompt encoded once and its content
 *    constraint compiled once (counted through the test hooks
 *    dsv4__tokenizer_encode_count and dsv4__cons_compile_count);
 *  - completion ("prompt") and fill-in-the-middle ("suffix") requests,
 *    streamed, leak nothing (the heap's bytes in use, from glibc's
 *    mallinfo2, are the same after a second identical request as after the
 *    first; the ASan build's leak check sees the same);
 *  - a sampler that removed every token ends the generation with its own
 *    message and status, not as a caller error;
 *  - a generator and a detokenizer keep their tokenizer alive (freed first
 *    here; the ASan build checks the memory);
 *  - the sampler callbacks' release slot runs once per stage, and a
 *    struct_size that cuts a function pointer is refused.
 * argv[1]: the dsv4-synth program (a tiny checkpoint at the real vocabulary).
 */
#include <jansson.h>
#include <malloc.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dsv4/dsv4.h"
#include "gen/constrain.h"
#include "testutil.h"
#include "text/tokenizer_int.h"

static char tok_path[4096];

/* heap bytes in use (0 where the allocator does not say, e.g. under ASan,
 * whose leak check then does the job) */
static long heap_in_use(void) { return (long)mallinfo2().uordblks; }

#include "rig.h"

static int run_to_stop(dsv4_gen *g, int *finish)
{
    for (int guard = 0; guard < 10000; guard++) {
        dsv4_gen_event_type t;
        int32_t idx;
        if (dsv4_gen_next(g, &t, &idx, NULL, NULL) != DSV4_OK) return -1;
        if (t == DSV4_GEN_EVENT_STOP) {
            *finish = idx;
            return 0;
        }
    }
    return -1;
}

/* ------------------------------------------------------------------------ */

static const char *TOOLS =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}}]";

static void one_request(dsv4_gen *g, const char *what, const char *req, unsigned long want_compiles)
{
    unsigned long e0 = dsv4__tokenizer_encode_count(), c0 = dsv4__cons_compile_count();
    dsv4_status st = dsv4_gen_start_request(g, req, strlen(req));
    unsigned long e1 = dsv4__tokenizer_encode_count(), c1 = dsv4__cons_compile_count();
    CHECK(st == DSV4_OK, "%s: start: %s", what, dsv4_gen_last_error(g));
    CHECK(e1 - e0 == 1, "%s: the prompt is encoded once (%lu runs)", what, e1 - e0);
    CHECK(c1 - c0 == want_compiles, "%s: %lu constraint compilation(s) (%lu)", what, want_compiles, c1 - c0);
    int fin = 0;
    CHECK(run_to_stop(g, &fin) == 0, "%s: runs to STOP", what);
    CHECK(dsv4__tokenizer_encode_count() == e1 && dsv4__cons_compile_count() == c1,
          "%s: generating encodes and compiles nothing more", what);
}

static void test_once_per_request(rig *b, dsv4_tokenizer *tok)
{
    dsv4_gen *g = NULL;
    if (!CHECK(dsv4_gen_create(b->s, tok, &g) == DSV4_OK, "create")) return;
    one_request(g, "chat", "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":3,\"seed\":1}", 0);
    one_request(g, "json_schema",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":24,\"seed\":1,"
                "\"thinking\":{\"type\":\"disabled\"},\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
                "{\"name\":\"x\",\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},"
                "\"required\":[\"a\"]}}}}",
                1);
    char req[2048];
    snprintf(req, sizeof req,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris?\"}],\"max_tokens\":40,\"seed\":3,"
             "\"thinking\":{\"type\":\"disabled\"},\"tools\":%s,\"tool_choice\":\"required\"}", TOOLS);
    one_request(g, "tools required", req, 1);
    snprintf(req, sizeof req,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather?\"}],\"max_tokens\":6,\"seed\":3,"
             "\"thinking\":{\"type\":\"disabled\"},\"tools\":%s}", TOOLS);
    one_request(g, "tools auto", req, 1);
    one_request(g, "json_object",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":12,"
                "\"thinking\":{\"type\":\"disabled\"},\"response_format\":{\"type\":\"json_object\"}}", 1);
    one_request(g, "completion", "{\"prompt\":\"def f(x):\",\"max_tokens\":3}", 0);

    /* a failing request compiles nothing it does not need, and changes nothing */
    unsigned long c0 = dsv4__cons_compile_count();
    const char *bad = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"response_format\":{\"type\":\"json_schema\","
                      "\"json_schema\":{\"schema\":{\"type\":\"string\",\"pattern\":\"a+\"}}}}";
    CHECK(dsv4_gen_start_request(g, bad, strlen(bad)) == DSV4_ERR_UNSUPPORTED &&
              strstr(dsv4_gen_last_error(g), "pattern"),
          "unsupported schema keyword named: %s", dsv4_gen_last_error(g));
    CHECK(dsv4__cons_compile_count() - c0 == 1, "the bad schema compiled once (%lu)", dsv4__cons_compile_count() - c0);
    /* a public start after a request still has the request's settings (tools) */
    int64_t v = -1;
    dsv4_gen_get_i64(g, DSV4_GEN_TOOL_CHOICE, &v);
    CHECK(v == DSV4_TOOLS_NONE, "the json_object request left no tools (tool choice %lld)", (long long)v);
    dsv4_gen_free(g);
}

/* streamed completion and FIM requests: the heap after the run */
static long stream_run(dsv4_gen *g, const char *req)
{
    if (dsv4_gen_start_request(g, req, strlen(req)) != DSV4_OK) return -1000;
    int chunks = 0;
    for (int guard = 0; guard < 1000; guard++) {
        char *c = NULL;
        if (dsv4_gen_next_chunk(g, &c) != DSV4_OK) return -1001;
        if (!c) break;
        chunks++;
        dsv4_free(c);
    }
    char *resp = NULL;
    if (dsv4_gen_response_json(g, &resp) != DSV4_OK) return -1002;
    dsv4_free(resp);
    return chunks >= 2 ? heap_in_use() : -1003;
}

static void test_completion_leak(rig *b, dsv4_tokenizer *tok)
{
    dsv4_gen *g = NULL;
    if (!CHECK(dsv4_gen_create(b->s, tok, &g) == DSV4_OK, "create")) return;
    const char *reqs[] = {
        "{\"prompt\":\"def add(a, b):\",\"max_tokens\":4,\"stream\":true,\"seed\":5}",
        "{\"prompt\":\"def add(a, b):\",\"suffix\":\"    return c\\n\",\"max_tokens\":4,\"stream\":true,\"seed\":5}",
        "{\"prompt\":\"x = \",\"max_tokens\":3,\"seed\":5}",
    };
    for (size_t i = 0; i < sizeof reqs / sizeof *reqs; i++) {
        /* the session behind the generator keeps growing buffers (its token
         * history doubles now and then), so the heap may step up in a few
         * runs; a leak per request (the one this guards against: 80 bytes)
         * raises it in every run */
        long a = stream_run(g, reqs[i]);
        long prev = stream_run(g, reqs[i]), first = prev;
        int grew = 0, ok = a >= 0 && prev >= 0;
        for (int r = 0; r < 8 && ok; r++) {
            long c = stream_run(g, reqs[i]);
            ok = c >= 0;
            grew += c > prev;
            prev = c;
        }
        CHECK(ok && grew <= 3, "request %zu streamed to the end: the heap grew in %d of 8 repeats (%ld bytes)", i, grew,
              prev - first);
    }
    dsv4_gen_free(g);
}

/* ---- the sampler removing every token ---- */
static int32_t remove_all(void *u, float *x, size_t n)
{
    (void)u;
    for (size_t i = 0; i < n; i++) x[i] = -INFINITY;
    return 0;
}

static int32_t select_removed(void *u, const float *p, size_t n, int32_t *t)
{
    (void)u;
    for (size_t i = 0; i < n; i++) if (!(p[i] > 0)) { *t = (int32_t)i; return 0; }
    *t = -5;
    return 0;
}

static void test_sampler_empty(rig *b, dsv4_tokenizer *tok)
{
    /* the sampler alone: "nothing to draw from" is its own status */
    dsv4_sampler *s = NULL;
    dsv4_sampler_create(&s);
    float logits[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, probs[8];
    int32_t t = 0;
    for (int i = 0; i < 8; i++) dsv4_sampler_set_logit_bias(s, i, -INFINITY);
    CHECK(dsv4_sampler_sample(s, logits, 8, &t) == DSV4_ERR_NOT_AVAILABLE && t == -1,
          "every token banned: NOT_AVAILABLE, not INVALID_ARGUMENT");
    CHECK(dsv4_sampler_probs(s, logits, 8, probs) == DSV4_ERR_NOT_AVAILABLE, "probs: NOT_AVAILABLE");
    dsv4_sampler_set_logit_bias(s, 3, 0);
    CHECK(dsv4_sampler_sample(s, logits, 8, &t) == DSV4_OK && t == 3, "one token left: chosen");
    float nanl[8] = { 1, NAN, 3, 4, 5, 6, 7, 8 };
    CHECK(dsv4_sampler_sample(s, nanl, 8, &t) == DSV4_ERR_INVALID_ARGUMENT, "a NaN logit stays a caller error");
    dsv4_sampler_free(s);

    /* in a generation: STOP with an error finish and a message naming the sampler */
    dsv4_gen *g = NULL;
    if (!CHECK(dsv4_gen_create(b->s, tok, &g) == DSV4_OK, "create")) return;
    dsv4_sampler_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;
    cb.apply = remove_all;
    dsv4_sampler_set_callbacks(dsv4_gen_sampler(g), &cb, NULL);
    const char *req = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":4}";
    int fin = -1;
    CHECK(dsv4_gen_start_request(g, req, strlen(req)) == DSV4_OK, "start: %s", dsv4_gen_last_error(g));
    CHECK(run_to_stop(g, &fin) == 0 && fin == DSV4_FINISH_ERROR, "ends with FINISH_ERROR (%d)", fin);
    CHECK(strstr(dsv4_gen_last_error(g), "removed every token") != NULL, "message: %s", dsv4_gen_last_error(g));
    CHECK(dsv4_gen_n_tokens(g) == 0, "no token generated");
    /* with a JSON constraint too (the constrained fallback path) */
    const char *jreq = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":4,"
                       "\"thinking\":{\"type\":\"disabled\"},\"response_format\":{\"type\":\"json_object\"}}";
    CHECK(dsv4_gen_start_request(g, jreq, strlen(jreq)) == DSV4_OK, "start json");
    fin = -1;
    run_to_stop(g, &fin);
    CHECK(fin == DSV4_FINISH_LENGTH || fin == DSV4_FINISH_STOP ||
              (fin == DSV4_FINISH_ERROR && !strstr(dsv4_gen_last_error(g), "output constraint")),
          "constrained: closed or named, never 'no token satisfies the output constraint' (%d: %s)", fin,
          dsv4_gen_last_error(g));
    /* a select callback choosing a removed token: the generation names it */
    memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;
    cb.select = select_removed;
    dsv4_sampler_set_callbacks(dsv4_gen_sampler(g), &cb, NULL);
    CHECK(dsv4_gen_start_request(g, req, strlen(req)) == DSV4_OK, "start");
    fin = -1;
    CHECK(run_to_stop(g, &fin) == 0 && fin == DSV4_FINISH_ERROR && strstr(dsv4_gen_last_error(g), "user stage chose"),
          "a select callback choosing a removed token is named (%d: %s)", fin, dsv4_gen_last_error(g));
    dsv4_gen_free(g);
}

/* ---- free order ---- */
static void test_free_order(rig *b)
{
    dsv4_tokenizer *t1 = NULL;
    if (!CHECK(dsv4_tokenizer_load(tok_path, NULL, &t1, NULL) == DSV4_OK, "load")) return;
    dsv4_gen *g = NULL;
    dsv4_detok *d = NULL;
    CHECK(dsv4_gen_create(b->s, t1, &g) == DSV4_OK, "create generator");
    CHECK(dsv4_detok_create(t1, &d) == DSV4_OK, "create detokenizer");
    dsv4_tokenizer_free(t1); /* the caller's reference only */
    const char *req = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":3,\"seed\":2}";
    char *resp = NULL;
    CHECK(dsv4_gen_complete(g, req, strlen(req), &resp) == DSV4_OK && resp, "generator works after its tokenizer was freed: %s",
          dsv4_gen_last_error(g));
    dsv4_free(resp);
    int32_t id = 0;
    char buf[64];
    size_t n = 0;
    CHECK(dsv4_detok_feed(d, 33, buf, sizeof buf, &n) == DSV4_OK, "detokenizer works after its tokenizer was freed");
    CHECK(dsv4_detok_max_chunk(d) > 4, "detokenizer reads the tokenizer");
    (void)id;
    dsv4_gen_free(g);
    dsv4_detok_free(d); /* the last reference: the tokenizer goes now */

    /* the other orders */
    dsv4_tokenizer *t2 = NULL;
    dsv4_tokenizer_load(tok_path, NULL, &t2, NULL);
    d = NULL;
    g = NULL;
    dsv4_detok_create(t2, &d);
    dsv4_gen_create(b->s, t2, &g);
    dsv4_detok_free(d);
    dsv4_tokenizer_free(t2);
    dsv4_gen_free(g);
    CHECK(1, "detokenizer, tokenizer, generator freed in that order");
    dsv4_tokenizer_free(NULL);
    dsv4_detok_free(NULL);
}

/* ---- the release slot ---- */
static int released[4];
static void rel(void *u) { released[*(int *)u]++; }

static void test_release(rig *b, dsv4_tokenizer *tok)
{
    int u0 = 0, u1 = 1, u2 = 2, u3 = 3;
    dsv4_sampler_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;
    cb.release = rel;
    memset(released, 0, sizeof released);
    dsv4_sampler *s = NULL;
    dsv4_sampler_create(&s);
    CHECK(dsv4_sampler_set_callbacks(s, &cb, &u0) == DSV4_OK, "register");
    CHECK(dsv4_sampler_set_callbacks(s, &cb, &u0) == DSV4_OK && released[0] == 0,
          "same user and release again: kept, not released");
    CHECK(dsv4_sampler_set_callbacks(s, &cb, &u1) == DSV4_OK && released[0] == 1, "replaced: the old user released once");
    /* refused sizes: nothing changes, the new user is not released */
    dsv4_sampler_callbacks half = cb;
    half.struct_size = (uint32_t)(offsetof(dsv4_sampler_callbacks, release) + sizeof(void *) / 2);
    CHECK(dsv4_sampler_set_callbacks(s, &half, &u2) == DSV4_ERR_INVALID_ARGUMENT, "struct_size cutting release in half refused");
    half.struct_size = (uint32_t)(offsetof(dsv4_sampler_callbacks, select) + 3);
    CHECK(dsv4_sampler_set_callbacks(s, &half, &u2) == DSV4_ERR_INVALID_ARGUMENT, "struct_size cutting select refused");
    half.struct_size = 4;
    CHECK(dsv4_sampler_set_callbacks(s, &half, &u2) == DSV4_ERR_INVALID_ARGUMENT || sizeof(void *) == 4,
          "struct_size below one pointer refused");
    half.struct_size = 65536 + (uint32_t)sizeof(void *);
    CHECK(dsv4_sampler_set_callbacks(s, &half, &u2) == DSV4_ERR_INVALID_ARGUMENT, "struct_size above 64 KiB refused");
    CHECK(released[1] == 0 && released[2] == 0, "refusals release nothing");
    /* a table of the 0.1.0 size without release: accepted, release unread */
    dsv4_sampler_callbacks older = cb;
    older.struct_size = (uint32_t)offsetof(dsv4_sampler_callbacks, release);
    CHECK(dsv4_sampler_set_callbacks(s, &older, &u2) == DSV4_OK && released[1] == 1, "older table: the previous user released");
    CHECK(dsv4_sampler_set_callbacks(s, &cb, &u3) == DSV4_OK && released[2] == 0, "a stage without release is not released");
    dsv4_sampler_free(s);
    CHECK(released[3] == 1, "freeing the sampler releases its stage once");
    s = NULL;
    dsv4_sampler_create(&s);
    dsv4_sampler_set_callbacks(s, &cb, &u0);
    dsv4_sampler_set_callbacks(s, NULL, NULL);
    CHECK(released[0] == 2, "removing the stage releases it");
    dsv4_sampler_free(s);
    CHECK(released[0] == 2, "and only once");

    /* a generator's sampler: released by dsv4_gen_free */
    dsv4_gen *g = NULL;
    if (!CHECK(dsv4_gen_create(b->s, tok, &g) == DSV4_OK, "create")) return;
    memset(released, 0, sizeof released);
    dsv4_sampler_set_callbacks(dsv4_gen_sampler(g), &cb, &u1);
    const char *req = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":2}";
    char *resp = NULL;
    dsv4_gen_complete(g, req, strlen(req), &resp);
    dsv4_free(resp);
    CHECK(released[1] == 0, "a request keeps the user stage");
    dsv4_gen_free(g);
    CHECK(released[1] == 1, "dsv4_gen_free releases the user stage once");
}

int main(int argc, char **argv)
{
    snprintf(tok_path, sizeof tok_path, "%s/tokenizers/deepseek-v4/tokenizer.json", test_shared_dir());
    dsv4_tokenizer *tok = NULL;
    char *err = NULL;
    if (!CHECK(dsv4_tokenizer_load(tok_path, NULL, &tok, &err) == DSV4_OK, "tokenizer %s: %s", tok_path, err ? err : ""))
        return test_summary();
    if (!CHECK(argc > 1, "usage: test_request DSV4_SYNTH")) return test_summary();
    char *dir = test_tmpdir("request");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' --preset tiny --out '%s/m' --seed 7 >/dev/null", argv[1], dir);
    if (CHECK(system(cmd) == 0, "%s", cmd)) {
        char m[4096];
        snprintf(m, sizeof m, "%s/m", dir);
        rig b;
        if (rig_open(&b, m, 1024)) {
            test_once_per_request(&b, tok);
            test_completion_leak(&b, tok);
            test_sampler_empty(&b, tok);
            test_free_order(&b);
            test_release(&b, tok);
        }
        rig_close(&b);
    }
    test_rmtree(dir);
    free(dir);
    dsv4_tokenizer_free(tok);
    return test_summary();
}
