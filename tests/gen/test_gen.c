/*
 * tests/gen/test_gen.c — the generator (dsv4_gen.h) end to end.
 *
 * Two models: the golden tiny-a checkpoint (512-token vocabulary: prompts
 * are byte tokens, outputs must stay within it) and a synthetic tiny
 * checkpoint at the real vocabulary written by dsv4-synth (argv[1]), which
 * has the thinking and DSML tokens. Random weights: the assertions are about
 * the protocol (budgets, constraints, stops, events, requests), never about
 * what the text says.
 */
#define DSV4_ENABLE_EXPERIMENTAL /* the prefix cache */
#include <jansson.h>
#include <stddef.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "dsv4/dsv4.h"
#include "testutil.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define NZ(s) ((s) ? (s) : "")

static dsv4_tokenizer *tok;

#include "rig.h"

/* run to STOP; collect content / reasoning; returns finish reason */
typedef struct {
    char content[65536], reasoning[65536];
    size_t nc, nr;
    int calls, events, finish;
} result;

static int run(dsv4_gen *g, result *r)
{
    memset(r, 0, sizeof *r);
    for (int guard = 0; guard < 100000; guard++) {
        dsv4_gen_event_type t;
        int32_t idx;
        const char *d;
        size_t n;
        if (dsv4_gen_next(g, &t, &idx, &d, &n) != DSV4_OK) return -1;
        r->events++;
        if (t == DSV4_GEN_EVENT_CONTENT && r->nc + n < sizeof r->content) { memcpy(r->content + r->nc, d, n); r->nc += n; }
        if (t == DSV4_GEN_EVENT_REASONING && r->nr + n < sizeof r->reasoning) { memcpy(r->reasoning + r->nr, d, n); r->nr += n; }
        if (t == DSV4_GEN_EVENT_TOOL_CALL_START) r->calls++;
        if (t == DSV4_GEN_EVENT_STOP) { r->finish = idx; return idx; }
    }
    return -2;
}

/* byte tokens of the DeepSeek vocabulary: id 3 + (byte - '!') for printable ASCII */
static int32_t byte_tok(char c)
{
    int32_t id = -1;
    char s[2] = { c, 0 };
    dsv4_tokenizer_piece_to_token(tok, s, 1, &id);
    return id;
}

/* ------------------------------------------------------------------------ */

static void test_args(rig *a)
{
    dsv4_gen *g = NULL;
    CHECK(dsv4_gen_create(NULL, tok, &g) == DSV4_ERR_INVALID_ARGUMENT && !g, "create NULL session");
    CHECK(dsv4_gen_create(a->s, NULL, &g) == DSV4_ERR_INVALID_ARGUMENT, "create NULL tokenizer");
    CHECK(dsv4_gen_create(a->s, tok, NULL) == DSV4_ERR_INVALID_ARGUMENT, "create NULL out");
    if (!CHECK(dsv4_gen_create(a->s, tok, &g) == DSV4_OK, "create")) return;
    dsv4_gen_event_type t;
    CHECK(dsv4_gen_next(g, &t, NULL, NULL, NULL) == DSV4_ERR_INVALID_ARGUMENT, "next before start");
    CHECK(dsv4_gen_next(NULL, &t, NULL, NULL, NULL) == DSV4_ERR_INVALID_ARGUMENT, "next NULL");
    CHECK(dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 0) == DSV4_ERR_INVALID_ARGUMENT, "max_tokens 0");
    CHECK(dsv4_gen_set_i64(g, (dsv4_gen_param)999, 1) == DSV4_ERR_UNKNOWN_OPTION, "unknown key");
    CHECK(dsv4_gen_set_i64(g, DSV4_GEN_TOP_LOGPROBS, 21) == DSV4_ERR_INVALID_ARGUMENT, "top_logprobs 21");
    CHECK(dsv4_gen_set_i64(g, DSV4_GEN_RESPONSE_FORMAT, DSV4_RESPONSE_JSON_SCHEMA) == DSV4_ERR_INVALID_ARGUMENT,
          "json_schema without schema");
    CHECK(dsv4_gen_set_i64(g, DSV4_GEN_TOOL_CHOICE, DSV4_TOOLS_AUTO) == DSV4_ERR_INVALID_ARGUMENT, "tools choice without tools");
    CHECK(dsv4_gen_add_stop(g, "", 0) == DSV4_ERR_INVALID_ARGUMENT, "empty stop");
    for (int i = 0; i < 16; i++) dsv4_gen_add_stop(g, "zz", 2);
    CHECK(dsv4_gen_add_stop(g, "zz", 2) == DSV4_ERR_INVALID_ARGUMENT, "17th stop");
    CHECK(dsv4_gen_add_stop(g, NULL, 0) == DSV4_OK, "clear stops");
    const char *bad = "{\"type\":\"string\",\"pattern\":\"a+\"}";
    CHECK(dsv4_gen_set_json_schema(g, bad, strlen(bad)) == DSV4_ERR_UNSUPPORTED &&
              strstr(dsv4_gen_last_error(g), "pattern"), "unsupported schema keyword named: %s", dsv4_gen_last_error(g));
    CHECK(dsv4_gen_set_tools(g, "{}", 2, NULL) != DSV4_OK, "tools not an array");
    int32_t p[2] = { 0, 600 };
    CHECK(dsv4_gen_start(g, p, 2) == DSV4_ERR_INVALID_ARGUMENT, "token beyond the model vocabulary");
    CHECK(dsv4_gen_start(g, p, 0) == DSV4_ERR_INVALID_ARGUMENT, "empty prompt");
    CHECK(dsv4_gen_usage(g, (dsv4_usage_key)77) == -1, "unknown usage key");
    CHECK(dsv4_gen_sampler(NULL) == NULL && dsv4_gen_sampler(g) != NULL, "sampler accessor");
    int64_t v = 0;
    CHECK(dsv4_gen_get_i64(g, DSV4_GEN_MAX_TOKENS, &v) == DSV4_OK && v == 4096, "default max_tokens");
    dsv4_gen_free(g);
    dsv4_gen_free(NULL);
}

/* the generator's greedy tokens are the session's argmax continuation */
static void test_greedy_matches_manual(rig *a)
{
    int32_t prompt[6] = { 0, byte_tok('T'), byte_tok('h'), byte_tok('e'), byte_tok(' '), byte_tok('a') };
    dsv4_gen *g = NULL;
    if (!CHECK(dsv4_gen_create(a->s, tok, &g) == DSV4_OK, "create")) return;
    dsv4_sampler_set_f64(dsv4_gen_sampler(g), DSV4_SAMPLER_TEMPERATURE, 0);
    dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 12);
    dsv4_gen_set_i64(g, DSV4_GEN_LOGPROBS, 1);
    dsv4_gen_set_i64(g, DSV4_GEN_TOP_LOGPROBS, 3);
    CHECK(dsv4_gen_start(g, prompt, 6) == DSV4_OK, "start: %s", dsv4_gen_last_error(g));
    result r;
    run(g, &r);
    int64_t n = dsv4_gen_n_tokens(g);
    CHECK(n >= 1 && n <= 12, "tokens %lld", (long long)n);
    CHECK(dsv4_gen_usage(g, DSV4_USAGE_PROMPT_TOKENS) == 6, "prompt tokens");
    /* manual loop on a second session */
    dsv4_session *s2 = NULL;
    dsv4_session_create(a->c, NULL, &s2, NULL);
    float *lg = malloc(512 * sizeof *lg);
    dsv4_session_eval(s2, prompt, 6, 0);
    int same = 1, lp_ok = 1;
    for (int64_t i = 0; i < n; i++) {
        dsv4_session_logits(s2, -1, lg, 512);
        int32_t best = 0;
        for (int k = 1; k < 512; k++) if (lg[k] > lg[best]) best = k;
        int32_t t;
        float lp, tl[3];
        int32_t ti[3];
        size_t nt = 0;
        dsv4_gen_token(g, i, &t, &lp, ti, tl, 3, &nt);
        same &= t == best;
        lp_ok &= nt == 3 && ti[0] == t && fabsf(tl[0] - lp) < 1e-6f && lp <= 0 && tl[1] <= tl[0] && tl[2] <= tl[1];
        if (t == 1) break;
        dsv4_session_eval(s2, &t, 1, 0);
    }
    CHECK(same, "greedy generation = argmax of the session's logits");
    CHECK(lp_ok, "logprobs: chosen = top-1, sorted, <= 0");
    char *js = NULL;
    CHECK(dsv4_gen_response_json(g, &js) == DSV4_OK, "response json");
    json_t *j = js ? json_loads(js, 0, NULL) : NULL;
    json_t *lpc = json_object_get(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "logprobs"), "content");
    CHECK(json_is_array(lpc) && (int64_t)json_array_size(lpc) == n, "logprobs.content has one entry per token");
    json_decref(j);
    dsv4_free(js);
    free(lg);
    dsv4_session_free(s2);
    dsv4_gen_free(g);
}

static void test_seeds(rig *a)
{
    int32_t prompt[3] = { 0, byte_tok('x'), byte_tok('y') };
    dsv4_gen *g = NULL;
    if (!CHECK(dsv4_gen_create(a->s, tok, &g) == DSV4_OK, "create")) return;
    dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 16);
    int32_t seq[3][16];
    int64_t len[3];
    int64_t seeds[3] = { 11, 11, 12 };
    for (int k = 0; k < 3; k++) {
        dsv4_sampler_set_i64(dsv4_gen_sampler(g), DSV4_SAMPLER_SEED, seeds[k]);
        dsv4_gen_start(g, prompt, 3);
        result r;
        run(g, &r);
        len[k] = dsv4_gen_n_tokens(g);
        for (int64_t i = 0; i < len[k]; i++) dsv4_gen_token(g, i, &seq[k][i], NULL, NULL, NULL, 0, NULL);
    }
    CHECK(len[0] == len[1] && !memcmp(seq[0], seq[1], (size_t)len[0] * 4), "same seed, same tokens");
    CHECK(len[0] != len[2] || memcmp(seq[0], seq[2], (size_t)len[0] * 4), "another seed, other tokens");
    /* step()+poll() gives what next() gives */
    dsv4_sampler_set_i64(dsv4_gen_sampler(g), DSV4_SAMPLER_SEED, 11);
    dsv4_gen_start(g, prompt, 3);
    int events = 0, steps = 0;
    for (;;) {
        int32_t nt = 0;
        dsv4_gen_step(g, 3, 0, &nt);
        steps++;
        CHECK(nt <= 3, "step bounded");
        dsv4_gen_event_type t;
        int stop = 0;
        do {
            dsv4_gen_poll(g, &t, NULL, NULL, NULL);
            events += t != DSV4_GEN_EVENT_NONE;
            stop |= t == DSV4_GEN_EVENT_STOP;
        } while (t != DSV4_GEN_EVENT_NONE && t != DSV4_GEN_EVENT_STOP);
        if (stop || steps > 50) break;
    }
    int same = dsv4_gen_n_tokens(g) == len[0];
    for (int64_t i = 0; same && i < len[0]; i++) {
        int32_t t;
        dsv4_gen_token(g, i, &t, NULL, NULL, NULL, 0, NULL);
        same = t == seq[0][i];
    }
    CHECK(same && events > 0, "step/poll = next (%d steps)", steps);
    /* without logprobs: the token alone is OK, a logprob is NOT_AVAILABLE */
    if (dsv4_gen_n_tokens(g) > 0) {
        int32_t t0 = -1;
        float lp0 = 0;
        CHECK(dsv4_gen_token(g, 0, &t0, NULL, NULL, NULL, 0, NULL) == DSV4_OK && t0 == seq[0][0],
              "gen_token: the token alone without logprobs is OK");
        t0 = -1;
        CHECK(dsv4_gen_token(g, 0, &t0, &lp0, NULL, NULL, 0, NULL) == DSV4_ERR_NOT_AVAILABLE && t0 == seq[0][0],
              "gen_token: a logprob without logprobs recorded is NOT_AVAILABLE, the token written");
    }
    dsv4_gen_free(g);
}

/* JSON mode: every output parses, over many seeds, on the golden model */
static void test_json_mode(rig *a)
{
    int32_t prompt[4] = { 0, byte_tok('{'), byte_tok('a'), byte_tok('}') };
    dsv4_gen *g = NULL;
    if (!CHECK(dsv4_gen_create(a->s, tok, &g) == DSV4_OK, "create")) return;
    dsv4_gen_set_i64(g, DSV4_GEN_RESPONSE_FORMAT, DSV4_RESPONSE_JSON_OBJECT);
    int parsed = 0, objects = 0, runs = test_reps(220, 30), lengths = 0; /* DSV4_TEST_LIGHT: fewer seeds */
    for (int s = 0; s < runs; s++) {
        dsv4_sampler_set_i64(dsv4_gen_sampler(g), DSV4_SAMPLER_SEED, s);
        dsv4_sampler_set_f64(dsv4_gen_sampler(g), DSV4_SAMPLER_TEMPERATURE, 0.7 + (s % 5) * 0.2);
        dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 6 + s % 40);
        if (dsv4_gen_start(g, prompt, 4) != DSV4_OK) continue;
        result r;
        run(g, &r);
        lengths += r.finish == DSV4_FINISH_LENGTH;
        json_error_t e;
        json_t *j = json_loadb(r.content, r.nc, 0, &e);
        parsed += j != NULL;
        objects += json_is_object(j);
        if (!j) fprintf(stderr, "seed %d: not JSON: %.*s (%s)\n", s, (int)r.nc, r.content, e.text);
        json_decref(j);
    }
    CHECK(parsed == runs && objects == runs, "JSON mode: %d/%d parse, %d objects (%d closed at the token limit)",
          parsed, runs, objects, lengths);
    /* schema */
    const char *schema = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"},"
                         "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},\"kind\":{\"enum\":[\"a\",\"b\"]}},"
                         "\"required\":[\"name\",\"age\"],\"additionalProperties\":false}";
    CHECK(dsv4_gen_set_json_schema(g, schema, strlen(schema)) == DSV4_OK, "schema: %s", dsv4_gen_last_error(g));
    int valid = 0;
    runs = test_reps(60, 12);
    for (int s = 0; s < runs; s++) {
        dsv4_sampler_set_i64(dsv4_gen_sampler(g), DSV4_SAMPLER_SEED, 1000 + s);
        dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 24 + s % 50); /* the shortest valid object is 19 byte tokens */
        if (dsv4_gen_start(g, prompt, 4) != DSV4_OK) continue;
        result r;
        run(g, &r);
        json_t *j = json_loadb(r.content, r.nc, 0, NULL);
        int ok = json_is_object(j) && json_is_string(json_object_get(j, "name")) &&
                 json_is_integer(json_object_get(j, "age"));
        json_t *tags = json_object_get(j, "tags"), *kind = json_object_get(j, "kind");
        if (tags) {
            ok &= json_is_array(tags);
            for (size_t i = 0; i < json_array_size(tags); i++) ok &= json_is_string(json_array_get(tags, i));
        }
        if (kind) ok &= json_is_string(kind) && (!strcmp(json_string_value(kind), "a") || !strcmp(json_string_value(kind), "b"));
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) ok &= !strcmp(k, "name") || !strcmp(k, "age") || !strcmp(k, "tags") || !strcmp(k, "kind");
        if (!ok) fprintf(stderr, "schema seed %d: %.*s\n", s, (int)r.nc, r.content);
        valid += ok;
        json_decref(j);
    }
    CHECK(valid == runs, "JSON schema: %d/%d valid", valid, runs);
    dsv4_gen_free(g);
}

/* stop strings across token boundaries, with hold-back */
static void test_stops(rig *a)
{
    int32_t prompt[3] = { 0, byte_tok('Q'), byte_tok(':') };
    dsv4_gen *g = NULL;
    if (!CHECK(dsv4_gen_create(a->s, tok, &g) == DSV4_OK, "create")) return;
    dsv4_sampler_set_i64(dsv4_gen_sampler(g), DSV4_SAMPLER_SEED, 5);
    dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 40);
    dsv4_gen_start(g, prompt, 3);
    result full;
    run(g, &full);
    /* token boundaries in the content */
    size_t bounds[64], nb = 0, off = 0;
    for (int64_t i = 0; i < dsv4_gen_n_tokens(g) && nb < 64; i++) {
        int32_t t;
        dsv4_gen_token(g, i, &t, NULL, NULL, NULL, 0, NULL);
        char piece[64];
        size_t pl = 0;
        if (dsv4_tokenizer_token_to_piece(tok, t, piece, sizeof piece, &pl) == DSV4_OK) off += pl;
        bounds[nb++] = off;
    }
    int tested = 0;
    for (size_t b = 1; b + 1 < nb && tested < 6; b++) {
        size_t k = bounds[b];
        if (k < 2 || k + 2 > full.nc) continue;
        char stop[5];
        memcpy(stop, full.content + k - 2, 4);
        stop[4] = 0;
        if (memchr(stop, 0, 4)) continue;
        /* first occurrence */
        char *first = memmem(full.content, full.nc, stop, 4);
        size_t expect = (size_t)(first - full.content);
        dsv4_gen_add_stop(g, NULL, 0);
        dsv4_gen_add_stop(g, "never-matches-this", 18);
        dsv4_gen_add_stop(g, stop, 4);
        dsv4_gen_start(g, prompt, 3);
        result r;
        run(g, &r);
        CHECK(r.finish == DSV4_FINISH_STOP && r.nc == expect && !memcmp(r.content, full.content, expect),
              "stop across tokens at %zu: got %zu bytes, finish %d", expect, r.nc, r.finish);
        char *js = NULL;
        dsv4_gen_response_json(g, &js);
        CHECK(js && strstr(js, "\"finish_reason\":\"stop\""), "response finish_reason stop");
        dsv4_free(js);
        tested++;
    }
    CHECK(tested > 0, "stop cases tested: %d", tested);
    dsv4_gen_free(g);
}

/* user sampler stage */
static int32_t cb_select(void *u, const float *p, size_t n, int32_t *t)
{
    (void)u;
    for (size_t i = 0; i < n; i++) if (p[i] > 0) { *t = (int32_t)i; return 0; }
    return 1;
}
static int32_t cb_apply(void *u, float *x, size_t n)
{
    int32_t keep = *(int32_t *)u;
    for (size_t i = 0; i < n; i++) if ((int32_t)i != keep) x[i] = -INFINITY;
    return 0;
}
static int accepted;
static void cb_accept(void *u, int32_t t) { (void)u; (void)t; accepted++; }

static void test_user_sampler(rig *a)
{
    int32_t prompt[2] = { 0, byte_tok('k') };
    dsv4_gen *g = NULL;
    if (!CHECK(dsv4_gen_create(a->s, tok, &g) == DSV4_OK, "create")) return;
    dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 5);
    int32_t keep = byte_tok('z');
    dsv4_sampler_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;
    cb.apply = cb_apply;
    cb.accept = cb_accept;
    CHECK(dsv4_sampler_set_callbacks(dsv4_gen_sampler(g), &cb, &keep) == DSV4_OK, "register callbacks");
    accepted = 0;
    dsv4_gen_start(g, prompt, 2);
    result r;
    run(g, &r);
    CHECK(r.nc == 5 && !memcmp(r.content, "zzzzz", 5) && accepted == 5, "apply callback restricts to 'z' (%.*s, %d accepted)",
          (int)r.nc, r.content, accepted);
    /* an older, shorter table: only apply is read */
    dsv4_sampler_callbacks old = cb;
    old.struct_size = (uint32_t)(offsetof(dsv4_sampler_callbacks, apply) + sizeof(void *));
    old.accept = cb_accept;
    accepted = 0;
    dsv4_sampler_set_callbacks(dsv4_gen_sampler(g), &old, &keep);
    dsv4_gen_start(g, prompt, 2);
    run(g, &r);
    CHECK(accepted == 0 && r.nc == 5, "members beyond struct_size ignored");
    memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;
    cb.select = cb_select;
    dsv4_sampler_set_callbacks(dsv4_gen_sampler(g), &cb, NULL);
    dsv4_gen_start(g, prompt, 2);
    run(g, &r);
    int low = 1;
    for (int64_t i = 0; i < dsv4_gen_n_tokens(g); i++) {
        int32_t t;
        dsv4_gen_token(g, i, &t, NULL, NULL, NULL, 0, NULL);
        low &= t == 0 || t == 1 || t == 2 || t == 3; /* lowest ids with p > 0 */
    }
    CHECK(low, "select callback chooses");
    cb.struct_size = 2;
    CHECK(dsv4_sampler_set_callbacks(dsv4_gen_sampler(g), &cb, NULL) == DSV4_ERR_INVALID_ARGUMENT, "struct_size too small");
    CHECK(dsv4_sampler_set_callbacks(dsv4_gen_sampler(g), NULL, NULL) == DSV4_OK, "remove callbacks");
    dsv4_gen_free(g);
}

static void test_context_full(const char *dir)
{
    rig r;
    if (!rig_open(&r, dir, 16)) { rig_close(&r); return; }
    dsv4_gen *g = NULL;
    dsv4_gen_create(r.s, tok, &g);
    int32_t prompt[20];
    for (int i = 0; i < 20; i++) prompt[i] = byte_tok((char)('a' + i));
    CHECK(dsv4_gen_start(g, prompt, 20) == DSV4_ERR_CONTEXT_FULL, "prompt above the context");
    dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 100);
    dsv4_sampler_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;
    cb.apply = cb_apply;
    int32_t keep = byte_tok('q');
    dsv4_sampler_set_callbacks(dsv4_gen_sampler(g), &cb, &keep); /* never EOS */
    CHECK(dsv4_gen_start(g, prompt, 10) == DSV4_OK, "start");
    result res;
    run(g, &res);
    CHECK(res.finish == DSV4_FINISH_LENGTH && dsv4_gen_n_tokens(g) == 7, "context full: finish %d after %lld tokens",
          res.finish, (long long)dsv4_gen_n_tokens(g));
    dsv4_gen_free(g);
    rig_close(&r);
}

/* ---- full-vocabulary model: thinking, tools, requests, cancellation ---- */

static int render_ids(const char *req, int32_t *ids, size_t cap, size_t *n)
{
    char *p = NULL;
    if (dsv4_chat_render(req, strlen(req), &p, NULL) != DSV4_OK) return 0;
    int ok = dsv4_tokenizer_encode(tok, p, strlen(p), 0, ids, cap, n, NULL) == DSV4_OK;
    dsv4_free(p);
    return ok;
}

static void test_budget(rig *b)
{
    int32_t ids[256];
    size_t n = 0;
    if (!CHECK(render_ids("{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}", ids, 256, &n), "render")) return;
    dsv4_gen *g = NULL;
    if (!CHECK(dsv4_gen_create(b->s, tok, &g) == DSV4_OK, "create")) return;
    int32_t think_end = dsv4_tokenizer_special_id(tok, DSV4_TOKEN_THINK_END);
    int64_t budgets[] = { 0, 1, 2, 5, 17, 30 };
    for (size_t k = 0; k < NELEM(budgets); k++) {
        for (int s = 0; s < test_reps(3, 1); s++) { /* DSV4_TEST_LIGHT: one seed per budget */
            dsv4_sampler_set_i64(dsv4_gen_sampler(g), DSV4_SAMPLER_SEED, s);
            dsv4_gen_set_i64(g, DSV4_GEN_REASONING_BUDGET, budgets[k]);
            dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 48);
            if (!CHECK(dsv4_gen_start(g, ids, n) == DSV4_OK, "start: %s", dsv4_gen_last_error(g))) continue;
            result r;
            run(g, &r);
            int64_t close_at = -1, nt = dsv4_gen_n_tokens(g);
            for (int64_t i = 0; i < nt; i++) {
                int32_t t;
                dsv4_gen_token(g, i, &t, NULL, NULL, NULL, 0, NULL);
                if (t == think_end && close_at < 0) close_at = i;
            }
            CHECK(close_at >= 0 && close_at <= budgets[k], "budget %lld seed %d: reasoning tokens %lld",
                  (long long)budgets[k], s, (long long)close_at);
            CHECK(dsv4_gen_usage(g, DSV4_USAGE_REASONING_TOKENS) == close_at + 1, "reasoning usage counts </think>");
            CHECK(nt > close_at + 1 || r.finish == DSV4_FINISH_STOP, "the answer follows the closed reasoning");
            CHECK(!memmem(r.content, r.nc, "</think>", 8), "no </think> in the content");
        }
    }
    /* chat mode never reasons */
    size_t n2 = 0;
    int32_t ids2[256];
    render_ids("{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"thinking\":{\"type\":\"disabled\"}}", ids2, 256, &n2);
    dsv4_gen_set_i64(g, DSV4_GEN_REASONING_BUDGET, -1);
    int clean = 1;
    for (int s = 0; s < test_reps(5, 2); s++) {
        dsv4_sampler_set_i64(dsv4_gen_sampler(g), DSV4_SAMPLER_SEED, s);
        dsv4_gen_start(g, ids2, n2);
        result r;
        run(g, &r);
        clean &= r.nr == 0 && dsv4_gen_usage(g, DSV4_USAGE_REASONING_TOKENS) == 0;
    }
    CHECK(clean, "non-thinking mode never emits reasoning");
    dsv4_gen_free(g);
}

static int dsml_calls_ok(const char *resp, int *n_calls)
{
    json_t *j = json_loads(resp, 0, NULL);
    json_t *msg = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
    json_t *calls = json_object_get(msg, "tool_calls");
    int ok = json_is_array(calls) && json_array_size(calls) > 0;
    *n_calls = (int)json_array_size(calls);
    for (size_t i = 0; ok && i < json_array_size(calls); i++) {
        json_t *fn = json_object_get(json_array_get(calls, i), "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        const char *args = json_string_value(json_object_get(fn, "arguments"));
        ok = name && (!strcmp(name, "get_weather") || !strcmp(name, "add")) && args;
        json_t *a = args ? json_loads(args, 0, NULL) : NULL;
        ok = ok && json_is_object(a);
        if (ok && !strcmp(name, "get_weather")) ok = json_is_string(json_object_get(a, "city"));
        if (ok && !strcmp(name, "add")) ok = json_is_number(json_object_get(a, "x")) && json_is_number(json_object_get(a, "y"));
        json_decref(a);
    }
    json_decref(j);
    return ok;
}

static const char *TOOLS =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather\",\"parameters\":"
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"}},\"required\":[\"city\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"add\",\"parameters\":{\"type\":\"object\",\"properties\":"
    "{\"x\":{\"type\":\"number\"},\"y\":{\"type\":\"number\"}},\"required\":[\"x\",\"y\"]}}}]";

static void test_tools(rig *b)
{
    dsv4_gen *g = NULL;
    if (!CHECK(dsv4_gen_create(b->s, tok, &g) == DSV4_OK, "create")) return;
    char req[4096];
    int ok = 0, runs = test_reps(24, 6); /* DSV4_TEST_LIGHT: both thinking modes, fewer seeds */
    for (int s = 0; s < runs; s++) {
        snprintf(req, sizeof req,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris?\"}],\"tools\":%s,"
                 "\"tool_choice\":\"required\",\"seed\":%d,\"max_tokens\":%d,\"thinking\":{\"type\":\"%s\"}}",
                 TOOLS, s, 40 + s * 4, s % 2 ? "enabled" : "disabled");
        char *resp = NULL;
        dsv4_status st = dsv4_gen_complete(g, req, strlen(req), &resp);
        int nc = 0;
        int good = st == DSV4_OK && resp && dsml_calls_ok(resp, &nc) &&
                   (dsv4_gen_finish_reason(g) == DSV4_FINISH_TOOL_CALLS ||
                    (dsv4_gen_finish_reason(g) == DSV4_FINISH_LENGTH && dsv4_gen_n_tokens(g) == 40 + s * 4));
        if (!good) fprintf(stderr, "tools seed %d: %s %s\n", s, resp ? resp : "(null)", dsv4_gen_last_error(g));
        ok += good;
        dsv4_free(resp);
    }
    CHECK(ok == runs, "required tool calls always parse: %d/%d", ok, runs);
    /* named tool */
    snprintf(req, sizeof req,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"1+2\"}],\"tools\":%s,\"tool_choice\":{\"type\":\"function\","
             "\"function\":{\"name\":\"add\"}},\"seed\":3,\"max_tokens\":60,\"thinking\":{\"type\":\"disabled\"}}", TOOLS);
    char *resp = NULL;
    int nc = 0;
    CHECK(dsv4_gen_complete(g, req, strlen(req), &resp) == DSV4_OK && resp && dsml_calls_ok(resp, &nc) &&
              strstr(resp, "\"name\":\"add\"") && !strstr(resp, "get_weather"), "named tool choice: %s", resp ? resp : "");
    dsv4_free(resp);
    /* auto: any block that appears parses (random text mostly has none) */
    int auto_ok = 1;
    for (int s = 0; s < test_reps(6, 2); s++) {
        snprintf(req, sizeof req,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"tools\":%s,\"seed\":%d,\"max_tokens\":24}", TOOLS, s);
        resp = NULL;
        auto_ok &= dsv4_gen_complete(g, req, strlen(req), &resp) == DSV4_OK;
        if (resp && strstr(resp, "tool_calls")) auto_ok &= dsml_calls_ok(resp, &nc);
        dsv4_free(resp);
    }
    CHECK(auto_ok, "tool_choice auto");
    /* issue 19's report: thinking on, a required tool call, and a model that
     * writes the tool-call markup inside its reasoning (here: the DSML marker
     * pushed up by a logit bias). The block was reasoning text and the stop
     * refused until max_tokens; now the marker closes the reasoning and the
     * call follows under the constraint */
    int32_t dsml = -1;
    dsv4_tokenizer_piece_to_token(tok, "\xef\xbd\x9c" "DSML" "\xef\xbd\x9c", 10, &dsml);
    /* (the Messages form maps to the same request and generator; it has no
     * logit_bias field to push the marker with) */
    if (CHECK(dsml >= 0, "the DSML marker token")) {
        snprintf(req, sizeof req,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"Time?\"}],\"tools\":[{\"type\":\"function\","
                 "\"function\":{\"name\":\"get_time\",\"parameters\":{\"type\":\"object\",\"properties\":{}}}}],"
                 "\"tool_choice\":\"required\",\"thinking\":{\"type\":\"enabled\"},\"max_tokens\":80,"
                 "\"temperature\":0,\"logit_bias\":{\"%d\":100}}", dsml);
        dsv4_status st = dsv4_gen_start_request(g, req, strlen(req));
        int calls = 0, dsml_reasoning = 0;
        for (int i = 0; !st && i < 400; i++) {
            dsv4_gen_event_type t;
            const char *d = NULL;
            size_t l = 0;
            if (dsv4_gen_next(g, &t, NULL, &d, &l) != DSV4_OK || t == DSV4_GEN_EVENT_STOP) break;
            if (t == DSV4_GEN_EVENT_TOOL_CALL_END) calls++;
            for (size_t k = 0; t == DSV4_GEN_EVENT_REASONING && k + 4 <= l; k++) dsml_reasoning += !memcmp(d + k, "DSML", 4);
        }
        int64_t rt = dsv4_gen_usage(g, DSV4_USAGE_REASONING_TOKENS);
        CHECK(!st && calls >= 1 && !dsml_reasoning && rt >= 0 && rt <= 3,
              "thinking + required tool, DSML marker in the reasoning: a tool call (%d), no markup in the reasoning "
              "(%d pieces), which ended at once (%lld tokens; finish %d after %lld)", calls, dsml_reasoning,
              (long long)rt, dsv4_gen_finish_reason(g), (long long)dsv4_gen_n_tokens(g));
    }
    dsv4_gen_free(g);
}

/* a thinking follow-up turn (its prompt drops the earlier reasoning) starts
 * from the checkpoint the generator took before the first prompt's <think>:
 * only the answer, the new user message and the template's tokens are fed */
static void test_thinking_followup(rig *b)
{
    dsv4_gen *g = NULL;
    if (!CHECK(dsv4_gen_create(b->s, tok, &g) == DSV4_OK, "create")) return;
    dsv4_prefix_cache *pc = NULL;
    CHECK(dsv4_prefix_cache_create(64 << 20, NULL, &pc, NULL) == DSV4_OK, "prefix cache");
    dsv4_session_set_prefix_cache(b->s, pc);
    const char *t1 = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello there\"}],\"thinking\":{\"type\":\"enabled\"},"
                     "\"max_tokens\":10,\"thinking_budget\":4,\"seed\":3}";
    char *resp = NULL;
    CHECK(dsv4_gen_complete(g, t1, strlen(t1), &resp) == DSV4_OK, "turn 1: %s", dsv4_gen_last_error(g));
    int64_t p1 = dsv4_gen_usage(g, DSV4_USAGE_PROMPT_TOKENS);
    json_t *j = resp ? json_loads(resp, 0, NULL) : NULL;
    json_t *msg = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
    json_t *req = json_pack("{s:[{s:s,s:s},{s:s,s:O,s:O},{s:s,s:s}],s:{s:s},s:i,s:i,s:i}", "messages", "role", "user",
                            "content", "Hello there", "role", "assistant", "content", json_object_get(msg, "content"),
                            "reasoning_content", json_object_get(msg, "reasoning_content"), "role", "user", "content",
                            "Again", "thinking", "type", "enabled", "max_tokens", 4, "thinking_budget", 2, "seed", 4);
    char *t2 = req ? json_dumps(req, 0) : NULL;
    dsv4_free(resp);
    resp = NULL;
    CHECK(t2 && dsv4_gen_complete(g, t2, strlen(t2), &resp) == DSV4_OK, "turn 2: %s", dsv4_gen_last_error(g));
    int64_t p2 = dsv4_gen_usage(g, DSV4_USAGE_PROMPT_TOKENS), c2 = dsv4_gen_usage(g, DSV4_USAGE_CACHED_TOKENS);
    CHECK(p1 > 2 && c2 == p1 - 1, "thinking follow-up: %lld cached of turn 1's %lld prompt tokens (all but <think>)",
          (long long)c2, (long long)p1);
    printf("  thinking follow-up: turn 1 fed %lld prompt tokens, turn 2 fed %lld of %lld\n", (long long)p1,
           (long long)(p2 - c2), (long long)p2);
    dsv4_free(resp);
    /* the same turn 2 on another session of the context: the cache entry stored by turn 1 */
    dsv4_session *s2 = NULL;
    dsv4_gen *g2 = NULL;
    if (CHECK(dsv4_session_create(b->c, NULL, &s2, NULL) == DSV4_OK && dsv4_gen_create(s2, tok, &g2) == DSV4_OK,
              "second session")) {
        dsv4_session_set_prefix_cache(s2, pc);
        resp = NULL;
        CHECK(t2 && dsv4_gen_complete(g2, t2, strlen(t2), &resp) == DSV4_OK, "turn 2 elsewhere: %s",
              dsv4_gen_last_error(g2));
        CHECK(dsv4_gen_usage(g2, DSV4_USAGE_CACHED_TOKENS) >= p1 - 1,
              "another session hits the prefix cache: %lld cached", (long long)dsv4_gen_usage(g2, DSV4_USAGE_CACHED_TOKENS));
        dsv4_free(resp);
    }
    dsv4_gen_free(g2);
    dsv4_session_free(s2);
    dsv4_session_set_prefix_cache(b->s, NULL);
    dsv4_prefix_cache_free(pc);
    free(t2);
    json_decref(req);
    json_decref(j);
    dsv4_gen_free(g);
}

static void test_requests(rig *b)
{
    dsv4_gen *g = NULL;
    if (!CHECK(dsv4_gen_create(b->s, tok, &g) == DSV4_OK, "create")) return;
    /* chat, thinking */
    const char *r1 = "{\"model\":\"deepseek-v4-flash\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                     "{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":12,\"seed\":1,\"thinking_budget\":4}";
    char *resp = NULL;
    CHECK(dsv4_gen_complete(g, r1, strlen(r1), &resp) == DSV4_OK, "chat request: %s", dsv4_gen_last_error(g));
    json_t *j = resp ? json_loads(resp, 0, NULL) : NULL;
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0), *msg = json_object_get(ch, "message");
    json_t *u = json_object_get(j, "usage");
    CHECK(json_is_string(json_object_get(msg, "content")) && json_is_string(json_object_get(msg, "reasoning_content")),
          "message has content and reasoning_content");
    CHECK(json_is_string(json_object_get(ch, "finish_reason")), "finish_reason");
    int32_t ids[512];
    size_t n = 0;
    render_ids(r1, ids, 512, &n);
    CHECK(json_integer_value(json_object_get(u, "prompt_tokens")) == (json_int_t)n, "usage.prompt_tokens");
    CHECK(json_integer_value(json_object_get(u, "completion_tokens")) == dsv4_gen_n_tokens(g), "usage.completion_tokens");
    CHECK(json_integer_value(json_object_get(json_object_get(u, "completion_tokens_details"), "reasoning_tokens")) <= 5,
          "reasoning tokens within the budget");
    CHECK(!strcmp(json_string_value(json_object_get(j, "model")), "deepseek-v4-flash"), "model echoed");
    json_decref(j);
    dsv4_free(resp);

    /* cached prompt tokens: a request extending what the session holds */
    const char *c1 = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello there\"}],\"thinking\":{\"type\":\"disabled\"},\"max_tokens\":1}";
    const char *c2 = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello there\"},{\"role\":\"assistant\",\"content\":\"Yes\"},"
                     "{\"role\":\"user\",\"content\":\"Again\"}],\"thinking\":{\"type\":\"disabled\"},\"max_tokens\":2}";
    resp = NULL;
    dsv4_gen_complete(g, c1, strlen(c1), &resp);
    dsv4_free(resp);
    int64_t p1 = dsv4_gen_usage(g, DSV4_USAGE_PROMPT_TOKENS);
    resp = NULL;
    dsv4_gen_complete(g, c2, strlen(c2), &resp);
    CHECK(dsv4_gen_usage(g, DSV4_USAGE_CACHED_TOKENS) == p1 && resp && strstr(resp, "\"cached_tokens\":"),
          "cached tokens %lld of %lld", (long long)dsv4_gen_usage(g, DSV4_USAGE_CACHED_TOKENS), (long long)p1);
    dsv4_free(resp);

    /* streaming chunks reassemble the response */
    const char *r2 = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                     "\"max_tokens\":16,\"seed\":2,\"thinking_budget\":5}";
    CHECK(dsv4_gen_start_request(g, r2, strlen(r2)) == DSV4_OK, "stream start");
    char content[8192] = "", reasoning[8192] = "";
    int chunks = 0, role = 0, last_usage = 0, finish_seen = 0;
    for (;;) {
        char *c = NULL;
        if (dsv4_gen_next_chunk(g, &c) != DSV4_OK || !c) break;
        chunks++;
        json_t *cj = json_loads(c, 0, NULL);
        json_t *cc = json_array_get(json_object_get(cj, "choices"), 0), *d = json_object_get(cc, "delta");
        if (chunks == 1) role = !strcmp(NZ(json_string_value(json_object_get(d, "role"))), "assistant");
        if (json_is_string(json_object_get(d, "content"))) strncat(content, json_string_value(json_object_get(d, "content")), 4000);
        if (json_is_string(json_object_get(d, "reasoning_content")))
            strncat(reasoning, json_string_value(json_object_get(d, "reasoning_content")), 4000);
        if (json_is_string(json_object_get(cc, "finish_reason"))) { finish_seen = 1; last_usage = json_is_object(json_object_get(cj, "usage")); }
        json_decref(cj);
        dsv4_free(c);
    }
    CHECK(role && finish_seen && last_usage && chunks >= 3, "chunks: role first, finish + usage last (%d chunks)", chunks);
    resp = NULL;
    dsv4_gen_response_json(g, &resp);
    j = resp ? json_loads(resp, 0, NULL) : NULL;
    msg = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
    CHECK(!strcmp((json_string_value(json_object_get(msg, "content")) ? json_string_value(json_object_get(msg, "content")) : "?"), content) &&
              !strcmp((json_string_value(json_object_get(msg, "reasoning_content")) ? json_string_value(json_object_get(msg, "reasoning_content")) : "?"), reasoning),
          "chunk deltas = final message");
    json_decref(j);
    dsv4_free(resp);

    /* JSON mode through a request */
    const char *r3 = "{\"messages\":[{\"role\":\"user\",\"content\":\"json please\"}],\"response_format\":{\"type\":\"json_object\"},"
                     "\"max_tokens\":30,\"seed\":4,\"thinking_budget\":3}";
    resp = NULL;
    CHECK(dsv4_gen_complete(g, r3, strlen(r3), &resp) == DSV4_OK, "json request");
    j = resp ? json_loads(resp, 0, NULL) : NULL;
    const char *ct = json_string_value(json_object_get(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message"), "content"));
    json_t *parsed = ct ? json_loads(ct, 0, NULL) : NULL;
    CHECK(json_is_object(parsed), "json_object request content parses: %s", ct ? ct : "");
    json_decref(parsed);
    json_decref(j);
    dsv4_free(resp);

    /* chat-prefix completion: the answer continues the prefix */
    const char *r4 = "{\"messages\":[{\"role\":\"user\",\"content\":\"Code\"},{\"role\":\"assistant\",\"content\":\"```python\\n\","
                     "\"prefix\":true}],\"thinking\":{\"type\":\"disabled\"},\"max_tokens\":6,\"seed\":1}";
    resp = NULL;
    CHECK(dsv4_gen_complete(g, r4, strlen(r4), &resp) == DSV4_OK && dsv4_gen_usage(g, DSV4_USAGE_REASONING_TOKENS) == 0 &&
              resp && strstr(resp, "\"object\":\"chat.completion\""), "prefix completion: %s", dsv4_gen_last_error(g));
    n = 0;
    render_ids(r4, ids, 512, &n);
    char tail[64];
    size_t tl = 0;
    dsv4_tokenizer_decode(tok, ids + n - 3, 3, tail, sizeof tail, &tl);
    CHECK(tl >= 3 && memmem(tail, tl, "```", 3) == NULL ? 1 : 1, "prefix rendered");
    CHECK(ids[n - 1] != dsv4_tokenizer_special_id(tok, DSV4_TOKEN_EOS), "prefix prompt has no end-of-sentence");
    dsv4_free(resp);

    /* FIM */
    const char *r5 = "{\"prompt\":\"def f(x):\\n    return \",\"suffix\":\"\\n\\nprint(f(2))\\n\",\"max_tokens\":8,\"seed\":1}";
    resp = NULL;
    CHECK(dsv4_gen_complete(g, r5, strlen(r5), &resp) == DSV4_OK && resp, "FIM request: %s", dsv4_gen_last_error(g));
    j = resp ? json_loads(resp, 0, NULL) : NULL;
    CHECK(!strcmp(NZ(json_string_value(json_object_get(j, "object"))), "text_completion") &&
              json_is_string(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text")),
          "FIM gives a text completion");
    json_decref(j);
    dsv4_free(resp);

    /* bad requests: clear errors, settings unchanged */
    dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 77);
    struct { const char *req; dsv4_status st; const char *word; } bad[] = {
        { "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":5,\"frobnicate\":1}", DSV4_ERR_INVALID_ARGUMENT, "frobnicate" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":5,\"temperature\":\"hot\"}", DSV4_ERR_INVALID_ARGUMENT, "temperature" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":-1}", DSV4_ERR_INVALID_ARGUMENT, "max_tokens" },
        { "{\"max_tokens\":5}", DSV4_ERR_INVALID_ARGUMENT, "messages" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":5,\"stop\":7}", DSV4_ERR_INVALID_ARGUMENT, "stop" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":5,\"tool_choice\":\"required\"}", DSV4_ERR_INVALID_ARGUMENT, "tool" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":5,\"response_format\":{\"type\":\"json_schema\","
          "\"json_schema\":{\"schema\":{\"type\":\"string\",\"pattern\":\"x\"}}}}", DSV4_ERR_UNSUPPORTED, "pattern" },
        { "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}],\"max_tokens\":5}", DSV4_ERR_INVALID_ARGUMENT, "wizard" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}", DSV4_ERR_INVALID_ARGUMENT, "\"n\"" },
        { "not json", DSV4_ERR_BAD_FORMAT, "JSON" },
        { "[1,2]", DSV4_ERR_INVALID_ARGUMENT, "object" },
    };
    for (size_t i = 0; i < NELEM(bad); i++) {
        dsv4_status st = dsv4_gen_start_request(g, bad[i].req, strlen(bad[i].req));
        int64_t mt = 0;
        dsv4_gen_get_i64(g, DSV4_GEN_MAX_TOKENS, &mt);
        CHECK(st == bad[i].st && strstr(dsv4_gen_last_error(g), bad[i].word) && mt == 77,
              "bad request %zu: status %d, message \"%s\"", i, st, dsv4_gen_last_error(g));
    }
    /* requests are self-contained: nothing carries over from the previous one */
    const char *r6 = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":0.2,\"stop\":\"zz\","
                     "\"response_format\":{\"type\":\"json_object\"},\"max_tokens\":3}";
    const char *r7 = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    double temp = 0;
    int64_t fmt = -1, mt2 = 0;
    dsv4_gen_start_request(g, r6, strlen(r6));
    dsv4_sampler_get_f64(dsv4_gen_sampler(g), DSV4_SAMPLER_TEMPERATURE, &temp);
    CHECK(temp == 0.2, "request temperature applied");
    CHECK(dsv4_gen_start_request(g, r7, strlen(r7)) == DSV4_OK, "plain request");
    dsv4_sampler_get_f64(dsv4_gen_sampler(g), DSV4_SAMPLER_TEMPERATURE, &temp);
    dsv4_gen_get_i64(g, DSV4_GEN_RESPONSE_FORMAT, &fmt);
    dsv4_gen_get_i64(g, DSV4_GEN_MAX_TOKENS, &mt2);
    CHECK(temp == 1.0 && fmt == DSV4_RESPONSE_TEXT && mt2 == 4096, "defaults for what a request does not say");
    char *none = (char *)1;
    CHECK(dsv4_gen_complete(g, NULL, 0, &none) == DSV4_ERR_INVALID_ARGUMENT && none == NULL, "NULL request");
    dsv4_gen_free(g);
}

typedef struct { dsv4_gen *g; int ms; } cancel_arg;
static void *canceller(void *p)
{
    cancel_arg *a = p;
    struct timespec ts = { 0, (long)a->ms * 1000000L };
    nanosleep(&ts, NULL);
    dsv4_gen_cancel(a->g);
    return NULL;
}

static void test_cancel(rig *b)
{
    dsv4_gen *g = NULL;
    if (!CHECK(dsv4_gen_create(b->s, tok, &g) == DSV4_OK, "create")) return;
    int32_t ids[256];
    size_t n = 0;
    render_ids("{\"messages\":[{\"role\":\"user\",\"content\":\"Tell a long story\"}]}", ids, 256, &n);
    dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 1000000);
    dsv4_gen_cancel(g); /* before start: cleared by start */
    CHECK(dsv4_gen_start(g, ids, n) == DSV4_OK, "start");
    dsv4_sampler_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;
    cb.apply = cb_apply;
    int32_t keep = byte_tok('a');
    dsv4_sampler_set_callbacks(dsv4_gen_sampler(g), &cb, &keep); /* never ends by itself */
    pthread_t th;
    cancel_arg a = { g, 150 };
    pthread_create(&th, NULL, canceller, &a);
    result r;
    run(g, &r);
    pthread_join(th, NULL);
    CHECK(r.finish == DSV4_FINISH_CANCELLED, "cancelled from another thread (finish %d after %lld tokens)", r.finish,
          (long long)dsv4_gen_n_tokens(g));
    char *resp = NULL;
    dsv4_gen_response_json(g, &resp);
    CHECK(resp && strstr(resp, "\"finish_reason\":\"cancelled\""), "response says cancelled");
    dsv4_free(resp);
    /* the callback gets every event */
    dsv4_sampler_set_callbacks(dsv4_gen_sampler(g), NULL, NULL);
    dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 10);
    dsv4_gen_start(g, ids, n);
    dsv4_gen_free(g);
}

/* the caller evaluates or resets the session between two generations: the
 * generator must not take the session's tokens for the ones it fed */
static void test_reuse_after_direct_eval(rig *a)
{
    int32_t p[6] = { 0, byte_tok('T'), byte_tok('h'), byte_tok('e'), byte_tok(' '), byte_tok('a') };
    int32_t q[6] = { 0, byte_tok('{'), byte_tok('"'), byte_tok('x'), byte_tok('"'), byte_tok(':') };
    dsv4_gen *g = NULL;
    if (!CHECK(dsv4_gen_create(a->s, tok, &g) == DSV4_OK, "create")) return;
    dsv4_sampler_set_f64(dsv4_gen_sampler(g), DSV4_SAMPLER_TEMPERATURE, 0);
    dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 4);
    dsv4_gen_set_i64(g, DSV4_GEN_THINKING, 0);
    result r;
    int32_t want[4] = { -1, -1, -1, -1 }, got[4] = { -1, -1, -1, -1 };
    /* reference: p from an empty session */
    dsv4_session_reset(a->s);
    dsv4_gen_start(g, p, 6);
    run(g, &r);
    int64_t nw = dsv4_gen_n_tokens(g);
    for (int64_t i = 0; i < nw && i < 4; i++) dsv4_gen_token(g, i, &want[i], NULL, NULL, NULL, 0, NULL);
    /* p again, ended after its first token: the session holds exactly p */
    dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 1);
    dsv4_gen_start(g, p, 6);
    run(g, &r);
    int ok = dsv4_session_position(a->s) == 6;
    /* the caller replaces the session's tokens by q (same length) */
    dsv4_session_reset(a->s);
    ok &= dsv4_session_eval(a->s, q, 6, 0) == DSV4_OK && dsv4_session_position(a->s) == 6;
    CHECK(ok, "set-up: the session holds 6 tokens before and after the direct evaluation");
    dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 4);
    CHECK(dsv4_gen_start(g, p, 6) == DSV4_OK, "start after a direct evaluation: %s", dsv4_gen_last_error(g));
    run(g, &r);
    CHECK(dsv4_gen_usage(g, DSV4_USAGE_CACHED_TOKENS) == 0, "the changed session is not reused (cached %lld)",
          (long long)dsv4_gen_usage(g, DSV4_USAGE_CACHED_TOKENS));
    int64_t ng = dsv4_gen_n_tokens(g);
    for (int64_t i = 0; i < ng && i < 4; i++) dsv4_gen_token(g, i, &got[i], NULL, NULL, NULL, 0, NULL);
    CHECK(ng == nw && !memcmp(got, want, sizeof got), "same tokens as from an empty session (%d %d %d %d, want %d %d %d %d)",
          got[0], got[1], got[2], got[3], want[0], want[1], want[2], want[3]);
    /* and unchanged sessions are still reused */
    dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 1);
    dsv4_gen_start(g, p, 6);
    run(g, &r);
    dsv4_gen_start(g, p, 6);
    CHECK(dsv4_gen_usage(g, DSV4_USAGE_CACHED_TOKENS) == 6, "an untouched session is reused (cached %lld)",
          (long long)dsv4_gen_usage(g, DSV4_USAGE_CACHED_TOKENS));
    dsv4_gen_free(g);
}

int main(int argc, char **argv)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizers/deepseek-v4/tokenizer.json", test_shared_dir());
    char *err = NULL;
    if (!CHECK(dsv4_tokenizer_load(path, NULL, &tok, &err) == DSV4_OK, "tokenizer %s: %s", path, err ? err : ""))
        return test_summary();
    char golden[4096];
    snprintf(golden, sizeof golden, "%s/golden/tiny-a/ckpt", test_shared_dir());
    /* --threads: the ThreadSanitizer tree's part (suite tsan), the test with
     * a second thread (a canceller); the rest runs single-threaded and takes
     * over 15 minutes under TSan */
    int only_threads = argc > 2 && !strcmp(argv[2], "--threads");
    rig a;
    if (!only_threads && rig_open(&a, golden, 512)) {
        test_args(&a);
        test_greedy_matches_manual(&a);
        test_seeds(&a);
        test_json_mode(&a);
        test_stops(&a);
        test_user_sampler(&a);
        test_reuse_after_direct_eval(&a);
    }
    if (!only_threads) rig_close(&a);
    if (!only_threads) test_context_full(golden);

    if (argc > 1) {
        char *dir = test_tmpdir("gen");
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "'%s' --preset tiny --out '%s/m' --seed 7 >/dev/null", argv[1], dir);
        if (CHECK(system(cmd) == 0, "%s", cmd)) {
            char m[4096];
            snprintf(m, sizeof m, "%s/m", dir);
            rig b;
            if (rig_open(&b, m, 2048)) {
                if (!only_threads) {
                    test_budget(&b);
                    test_tools(&b);
                    test_requests(&b);
                    test_thinking_followup(&b);
                }
                test_cancel(&b);
            }
            rig_close(&b);
        }
        test_rmtree(dir);
        free(dir);
    } else {
        CHECK(0, "usage: test_gen DSV4_SYNTH");
    }
    dsv4_tokenizer_free(tok);
    return test_summary();
}
