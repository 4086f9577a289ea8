/*
 * tests/api/test_alloc_fail.c — every public object's creation and use, and
 * a whole generation, with each of their allocations failing once in turn
 * (dsv4__alloc_fail_after): the call gives a clear status (OUT_OF_MEMORY,
 * no object, a message where the API has one), nothing leaks (the fast
 * suite runs under ASan's leak checker in CI), and a session is left as it
 * was: a failed generation start leaves the session's position and logits
 * as before the call, and a generation that fails part-way leaves the
 * session holding exactly the tokens it fed, with their logits.
 *
 * A sweep stops at the first k whose run made fewer than k allocations
 * (every allocation has then failed once). JSON documents are jansson's
 * allocations, which the hook does not reach.
 *
 * Usage: test_alloc_fail SMALL_TOKENIZER_JSON
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/core.h"
#include "testutil.h"

#define NZ(s) ((s) ? (s) : "")
#define VOCAB 512 /* tiny-a */

static char golden[4096], v4_path[4096];
static const char *small_tok;
static dsv4_model *model;
static dsv4_tokenizer *v4;

/* one run under the hook; *ok = 0 for a result that is not acceptable */
typedef dsv4_status (*op_fn)(void *arg, int *ok, char *why, size_t why_len);

static void sweep(const char *name, op_fn fn, void *arg, long max_k)
{
    long k;
    int oom = 0, recovered = 0, bad = 0;
    char why[512] = "";
    for (k = 1; k <= max_k; k++) {
        int ok = 1;
        char w[512] = "";
        dsv4__alloc_fail_after(k);
        dsv4_status st = fn(arg, &ok, w, sizeof w);
        long left = dsv4__alloc_fail_remaining();
        dsv4__alloc_fail_after(0);
        if (!ok || (st != DSV4_OK && st != DSV4_ERR_OUT_OF_MEMORY)) {
            if (!bad++) snprintf(why, sizeof why, "allocation %ld: %s (%s)", k, dsv4_status_string(st), w);
        }
        if (left > 0) break; /* fewer than k allocations: the sweep is complete */
        if (st == DSV4_ERR_OUT_OF_MEMORY) oom++;
        else if (st == DSV4_OK) recovered++;
    }
    CHECK(k <= max_k && bad == 0 && oom > 0,
          "%s: %ld allocations failed in turn: %d OUT_OF_MEMORY, %d recovered, %d bad%s%s", name, k - 1, oom,
          recovered, bad, bad ? ": first " : "", why);
}

/* ---- creation of each public object ------------------------------------ */

static dsv4_status op_options(void *arg, int *ok, char *why, size_t n)
{
    (void)arg; (void)why; (void)n;
    dsv4_options *o = NULL;
    dsv4_status st = dsv4_options_create(&o);
    if (st == DSV4_OK) st = dsv4_options_set_i64(o, DSV4_OPT_THREADS, 2);
    else *ok = !o;
    dsv4_options_free(o);
    return st;
}

static dsv4_status op_model(void *arg, int *ok, char *why, size_t n)
{
    (void)arg;
    dsv4_model *m = NULL;
    char *err = NULL;
    dsv4_status st = dsv4_model_load(golden, NULL, &m, &err);
    if (st != DSV4_OK && (m || !err || !err[0])) {
        *ok = 0;
        snprintf(why, n, "model %p, message '%s'", (void *)m, NZ(err));
    }
    dsv4_free(err);
    dsv4_model_free(m);
    return st;
}

/* a load under a memory budget (its expert cache, docs/memory.md) and a
 * first evaluation through the cache */
static dsv4_status op_model_budget(void *arg, int *ok, char *why, size_t n)
{
    (void)arg;
    dsv4_model *m = NULL;
    dsv4_context *c = NULL;
    dsv4_session *s = NULL;
    dsv4_options *o = NULL;
    char *err = NULL;
    dsv4_status st = dsv4_options_create(&o);
    if (st == DSV4_OK) st = dsv4_options_set_i64(o, DSV4__OPT_MEM_BUDGET, (int64_t)64 << 20);
    if (st == DSV4_OK) {
        st = dsv4_model_load(golden, o, &m, &err);
        if (st != DSV4_OK && (m || !err || !err[0])) {
            *ok = 0;
            snprintf(why, n, "model %p, message '%s'", (void *)m, NZ(err));
        }
    }
    if (st == DSV4_OK) st = dsv4_context_create(m, NULL, &c, NULL);
    if (st == DSV4_OK) st = dsv4_session_create(c, NULL, &s, NULL);
    const int32_t tok[4] = { 1, 7, 300, 42 };
    if (st == DSV4_OK) st = dsv4_session_eval(s, tok, 4, 0);
    dsv4_session_free(s);
    dsv4_context_free(c);
    dsv4_free(err);
    dsv4_model_free(m);
    dsv4_options_free(o);
    return st;
}

static dsv4_status op_info(void *arg, int *ok, char *why, size_t n)
{
    (void)arg;
    dsv4_model_info *a = NULL, *b = NULL;
    char *err = NULL, *js = NULL;
    dsv4_status st = dsv4_model_get_info(model, &a);
    if (st != DSV4_OK) *ok = !a;
    if (st == DSV4_OK) {
        st = dsv4_model_info_to_json(a, &js);
        if (st != DSV4_OK && js) *ok = 0;
    }
    if (st == DSV4_OK) {
        int64_t kv = 0, ram = 0;
        st = dsv4_model_info_memory(a, 4096, DSV4_NUMERICS_DEFAULT, &kv, &ram);
        if (st == DSV4_OK && (kv <= 0 || ram <= 0)) *ok = 0;
    }
    if (st == DSV4_OK) {
        st = dsv4_model_info_from_dir(golden, NULL, &b, &err);
        if (st != DSV4_OK && (b || !err || !err[0])) {
            *ok = 0;
            snprintf(why, n, "info_from_dir: message '%s'", NZ(err));
        }
    }
    dsv4_free(js);
    dsv4_free(err);
    dsv4_model_info_free(a);
    dsv4_model_info_free(b);
    return st;
}

static dsv4_status op_context_session(void *arg, int *ok, char *why, size_t n)
{
    (void)arg;
    dsv4_options *o = NULL;
    dsv4_context *c = NULL;
    dsv4_session *s = NULL;
    char *err = NULL;
    dsv4_status st = dsv4_options_create(&o);
    if (st == DSV4_OK) {
        dsv4_options_set_i64(o, DSV4_OPT_THREADS, 2);
        dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, 64);
        st = dsv4_context_create(model, o, &c, &err);
        if (st != DSV4_OK && (c || !err || !err[0])) {
            *ok = 0;
            snprintf(why, n, "context: message '%s'", NZ(err));
        }
    }
    if (st == DSV4_OK) {
        dsv4_free(err);
        err = NULL;
        st = dsv4_session_create(c, NULL, &s, &err);
        if (st != DSV4_OK && (s || !err || !err[0])) {
            *ok = 0;
            snprintf(why, n, "session: message '%s'", NZ(err));
        }
    }
    if (st == DSV4_OK) {
        /* the first evaluation sizes the session's state */
        int32_t t[3] = { 0, 40, 41 };
        st = dsv4_session_eval(s, t, 3, DSV4_EVAL_ALL_LOGITS);
        if (st != DSV4_OK && (dsv4_session_position(s) != 0 || !dsv4_session_last_error(s)[0])) {
            *ok = 0;
            snprintf(why, n, "failed eval: position %lld, message '%s'", (long long)dsv4_session_position(s),
                     dsv4_session_last_error(s));
        }
    }
    dsv4_free(err);
    dsv4_session_free(s);
    dsv4_context_free(c);
    dsv4_options_free(o);
    return st;
}

static dsv4_status op_tokenizer(void *arg, int *ok, char *why, size_t n)
{
    (void)arg;
    dsv4_tokenizer *t = NULL;
    char *err = NULL;
    dsv4_status st = dsv4_tokenizer_load(small_tok, NULL, &t, &err);
    if (st != DSV4_OK && (t || !err || !err[0])) {
        *ok = 0;
        snprintf(why, n, "load: message '%s'", NZ(err));
    }
    if (st == DSV4_OK) {
        int32_t ids[64];
        size_t m = 0, len = 0;
        char buf[256];
        st = dsv4_tokenizer_encode(t, "hello 12345 world", 17, 0, ids, 64, &m, NULL);
        if (st == DSV4_OK) st = dsv4_tokenizer_decode(t, ids, m, buf, sizeof buf, &len);
        if (st == DSV4_OK && (len != 17 || memcmp(buf, "hello 12345 world", 17))) *ok = 0;
    }
    dsv4_free(err);
    dsv4_tokenizer_free(t);
    return st;
}

static dsv4_status op_detok(void *arg, int *ok, char *why, size_t n)
{
    (void)arg; (void)why; (void)n;
    dsv4_detok *d = NULL;
    dsv4_status st = dsv4_detok_create(v4, &d);
    if (st != DSV4_OK) *ok = !d;
    if (st == DSV4_OK) {
        int32_t ids[32];
        size_t m = 0, len;
        char buf[256];
        st = dsv4_tokenizer_encode(v4, "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 ok", 16, 0, ids, 32, &m, NULL);
        for (size_t i = 0; st == DSV4_OK && i < m; i++) st = dsv4_detok_feed(d, ids[i], buf, sizeof buf, &len);
        if (st == DSV4_OK) st = dsv4_detok_flush(d, buf, sizeof buf, &len);
    }
    dsv4_detok_free(d);
    return st;
}

static dsv4_status op_chat(void *arg, int *ok, char *why, size_t n)
{
    (void)arg;
    dsv4_chat *c = NULL;
    char *text = NULL;
    dsv4_status st = dsv4_chat_create(&c);
    if (st != DSV4_OK) *ok = !c;
    if (st == DSV4_OK) st = dsv4_chat_add_message(c, "system", "Be brief.", NULL);
    if (st == DSV4_OK) st = dsv4_chat_add_message(c, "user", "What is the weather in Paris?", NULL);
    if (st == DSV4_OK) st = dsv4_chat_add_message(c, "assistant", "", NULL);
    if (st == DSV4_OK) st = dsv4_chat_add_tool_call(c, "call_1", "get_weather", "{\"city\":\"Paris\"}");
    if (st == DSV4_OK) st = dsv4_chat_add_tool_result(c, "call_1", "{\"temp\":21}");
    if (st == DSV4_OK)
        st = dsv4_chat_set_json(c, DSV4_CHAT_TOOLS,
                                "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":"
                                "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]");
    if (st == DSV4_OK) {
        st = dsv4_chat_render_text(c, &text);
        if (st == DSV4_OK && (!text || !strstr(text, "Paris"))) *ok = 0;
    }
    if (st == DSV4_OK) {
        int32_t ids[2048];
        size_t m = 0;
        st = dsv4_chat_render_ids(c, v4, ids, 2048, &m);
        if (st == DSV4_OK && m < 10) *ok = 0;
    }
    if (st != DSV4_OK && st != DSV4_ERR_OUT_OF_MEMORY) snprintf(why, n, "%s", c ? dsv4_chat_last_error(c) : "");
    dsv4_free(text);
    dsv4_chat_free(c);
    return st;
}

static dsv4_status op_parser(void *arg, int *ok, char *why, size_t n)
{
    (void)arg; (void)why; (void)n;
    dsv4_chat_parser *p = NULL;
    static const char text[] = "thinking</think>The answer.<\xef\xbd\x9c" "DSML\xef\xbd\x9c" "function_calls>";
    dsv4_status st = dsv4_chat_parser_create(1, &p);
    if (st != DSV4_OK) *ok = !p;
    for (size_t i = 0; st == DSV4_OK && i < sizeof text - 1; i += 5)
        st = dsv4_chat_parser_feed(p, text + i, sizeof text - 1 - i < 5 ? sizeof text - 1 - i : 5);
    if (st == DSV4_OK) st = dsv4_chat_parser_finish(p);
    for (int guard = 0; st == DSV4_OK && guard < 100; guard++) {
        dsv4_chat_event_type t;
        st = dsv4_chat_parser_next(p, &t, NULL, NULL, NULL);
        if (t == DSV4_CHAT_EVENT_NONE) break;
    }
    dsv4_chat_parser_free(p);
    return st;
}

static dsv4_status op_sampler(void *arg, int *ok, char *why, size_t n)
{
    (void)arg; (void)why; (void)n;
    dsv4_sampler *s = NULL;
    static float lg[VOCAB];
    for (int i = 0; i < VOCAB; i++) lg[i] = (float)((i * 37) % 101) * 0.05f;
    dsv4_status st = dsv4_sampler_create(&s);
    if (st != DSV4_OK) *ok = !s;
    if (st == DSV4_OK) st = dsv4_sampler_set_i64(s, DSV4_SAMPLER_TOP_K, 40);
    if (st == DSV4_OK) st = dsv4_sampler_set_f64(s, DSV4_SAMPLER_REPETITION_PENALTY, 1.2);
    if (st == DSV4_OK) st = dsv4_sampler_set_logit_bias(s, 7, 2.0f);
    for (int i = 0; st == DSV4_OK && i < 4; i++) {
        int32_t t = -1;
        st = dsv4_sampler_sample(s, lg, VOCAB, &t);
        if (st == DSV4_OK) st = dsv4_sampler_accept(s, t);
    }
    dsv4_sampler_free(s);
    return st;
}

typedef struct {
    dsv4_context *c;
    dsv4_session *s;
} gen_arg;

static dsv4_status op_generator(void *arg, int *ok, char *why, size_t n)
{
    gen_arg *a = arg;
    dsv4_gen *g = NULL;
    dsv4_status st = dsv4_gen_create(a->s, v4, &g);
    if (st != DSV4_OK) *ok = !g;
    if (st == DSV4_OK) st = dsv4_gen_add_stop(g, "stop", 4);
    static const char schema[] = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}}}";
    if (st == DSV4_OK) st = dsv4_gen_set_json_schema(g, schema, sizeof schema - 1);
    if (st != DSV4_OK && st != DSV4_ERR_OUT_OF_MEMORY && g) snprintf(why, n, "%s", dsv4_gen_last_error(g));
    dsv4_gen_free(g);
    return st;
}

/* ---- a whole generation ----------------------------------------------------- */

#define P0 3
#define PN 6
#define MAXTOK 4

typedef struct {
    dsv4_session *s;
    dsv4_gen *g;
    int32_t prompt[PN];
    int32_t ref[MAXTOK];
    int64_t ref_n;
    float *ref_lg; /* logits after position p, p in [P0, PN + MAXTOK] (index p) */
    float before[VOCAB], now[VOCAB];
    int64_t pos_before;
} whole_arg;

/* the session holds the prompt's first P0 tokens, fed by the generator */
static int prime(whole_arg *a)
{
    dsv4_gen_set_i64(a->g, DSV4_GEN_MAX_TOKENS, 1);
    if (dsv4_gen_start(a->g, a->prompt, P0) != DSV4_OK) return 0;
    dsv4_gen_event_type t;
    for (int guard = 0; guard < 100; guard++)
        if (dsv4_gen_next(a->g, &t, NULL, NULL, NULL) != DSV4_OK || t == DSV4_GEN_EVENT_STOP) break;
    a->pos_before = dsv4_session_position(a->s);
    dsv4_gen_set_i64(a->g, DSV4_GEN_MAX_TOKENS, MAXTOK);
    return a->pos_before == P0 && dsv4_session_logits(a->s, -1, a->before, VOCAB) == DSV4_OK;
}

static dsv4_status op_whole(void *arg, int *ok, char *why, size_t n)
{
    whole_arg *a = arg;
    dsv4_status st = dsv4_gen_start(a->g, a->prompt, PN);
    int64_t pos = dsv4_session_position(a->s);
    if (st != DSV4_OK) {
        /* nothing fed: the session as before the call */
        int same = pos == a->pos_before && dsv4_session_logits(a->s, -1, a->now, VOCAB) == DSV4_OK &&
                   !memcmp(a->now, a->before, sizeof a->now);
        if (!same || !dsv4_gen_last_error(a->g)[0]) {
            *ok = 0;
            snprintf(why, n, "failed start: session position %lld (was %lld), logits %s, message '%s'",
                     (long long)pos, (long long)a->pos_before, same ? "kept" : "changed", dsv4_gen_last_error(a->g));
        }
        return st;
    }
    int finish = -1;
    for (int guard = 0; guard < 100; guard++) {
        dsv4_gen_event_type t;
        int32_t idx;
        st = dsv4_gen_next(a->g, &t, &idx, NULL, NULL);
        if (st != DSV4_OK) break;
        if (t == DSV4_GEN_EVENT_STOP) { finish = idx; break; }
    }
    if (st != DSV4_OK || finish < 0) {
        *ok = 0;
        snprintf(why, n, "next: %s, finish %d", dsv4_status_string(st), finish);
        return st;
    }
    char *js = NULL;
    dsv4_status rs = dsv4_gen_response_json(a->g, &js);
    if (rs != DSV4_OK && rs != DSV4_ERR_OUT_OF_MEMORY) *ok = 0;
    if (rs != DSV4_OK && js) *ok = 0;
    dsv4_free(js);
    /* the tokens so far are the reference's */
    int64_t ng = dsv4_gen_n_tokens(a->g);
    int same = finish == DSV4_FINISH_ERROR ? ng <= a->ref_n : ng == a->ref_n;
    for (int64_t i = 0; same && i < ng; i++) {
        int32_t t = -1;
        dsv4_gen_token(a->g, i, &t, NULL, NULL, NULL, 0, NULL);
        same = t == a->ref[i];
    }
    if (!same) {
        *ok = 0;
        snprintf(why, n, "finish %d after %lld tokens: not the reference's", finish, (long long)ng);
        return DSV4_ERR_INTERNAL;
    }
    if (finish == DSV4_FINISH_ERROR) {
        /* the session holds what was fed (the prompt and some of the
         * tokens), with the logits of its last position */
        int lg_ok = pos >= P0 && dsv4_session_position(a->s) >= PN &&
                    dsv4_session_position(a->s) <= PN + ng &&
                    dsv4_session_logits(a->s, -1, a->now, VOCAB) == DSV4_OK &&
                    !memcmp(a->now, a->ref_lg + dsv4_session_position(a->s) * VOCAB, sizeof a->now);
        const char *msg = dsv4_gen_last_error(a->g);
        if (!lg_ok || !msg[0]) {
            *ok = 0;
            snprintf(why, n, "failed generation: session position %lld after %lld tokens, logits %s, message '%s'",
                     (long long)dsv4_session_position(a->s), (long long)ng, lg_ok ? "right" : "wrong", msg);
        }
        return strstr(msg, "memory") ? DSV4_ERR_OUT_OF_MEMORY : DSV4_ERR_INTERNAL;
    }
    return DSV4_OK;
}

/* k-th allocation of the whole generation; the session is primed before each run */
static void sweep_whole(whole_arg *a, long max_k)
{
    long k;
    int oom = 0, recovered = 0, bad = 0, primed = 1;
    char why[512] = "";
    for (k = 1; k <= max_k; k++) {
        if (!(primed = prime(a))) break;
        int ok = 1;
        char w[512] = "";
        dsv4__alloc_fail_after(k);
        dsv4_status st = op_whole(a, &ok, w, sizeof w);
        long left = dsv4__alloc_fail_remaining();
        dsv4__alloc_fail_after(0);
        if (!ok || (st != DSV4_OK && st != DSV4_ERR_OUT_OF_MEMORY))
            if (!bad++) snprintf(why, sizeof why, "allocation %ld: %s (%s)", k, dsv4_status_string(st), w);
        if (left > 0) break;
        if (st == DSV4_ERR_OUT_OF_MEMORY) oom++;
        else if (st == DSV4_OK) recovered++;
    }
    CHECK(primed, "the session is primed before each run");
    CHECK(k <= max_k && bad == 0 && oom > 0,
          "whole generation: %ld allocations failed in turn: %d clean failures, %d recovered, %d bad%s%s", k - 1, oom,
          recovered, bad, bad ? ": first " : "", why);
    /* and the generator works as before */
    int ok = prime(a), ok2 = 1;
    int fin = -1;
    ok = ok && dsv4_gen_start(a->g, a->prompt, PN) == DSV4_OK;
    for (int guard = 0; ok && guard < 100; guard++) {
        dsv4_gen_event_type t;
        int32_t idx;
        if (dsv4_gen_next(a->g, &t, &idx, NULL, NULL) != DSV4_OK) break;
        if (t == DSV4_GEN_EVENT_STOP) { fin = idx; break; }
    }
    ok2 = dsv4_gen_n_tokens(a->g) == a->ref_n;
    for (int64_t i = 0; ok2 && i < a->ref_n; i++) {
        int32_t t = -1;
        dsv4_gen_token(a->g, i, &t, NULL, NULL, NULL, 0, NULL);
        ok2 = t == a->ref[i];
    }
    CHECK(ok && ok2 && fin != DSV4_FINISH_ERROR, "after the sweep the generator gives the reference again");
}

static void test_whole_generation(dsv4_context *c)
{
    whole_arg *a = calloc(1, sizeof *a);
    static const char text[PN] = "The a";
    a->prompt[0] = 0;
    for (int i = 1; i < PN; i++) {
        char s[2] = { text[i - 1], 0 };
        dsv4_tokenizer_piece_to_token(v4, s, 1, &a->prompt[i]);
    }
    a->ref_lg = calloc((size_t)(PN + MAXTOK + 1) * VOCAB, sizeof(float));
    dsv4_session *s2 = NULL;
    int ok = CHECK(dsv4_session_create(c, NULL, &a->s, NULL) == DSV4_OK, "session") &&
             CHECK(dsv4_session_create(c, NULL, &s2, NULL) == DSV4_OK, "second session") &&
             CHECK(dsv4_gen_create(a->s, v4, &a->g) == DSV4_OK, "generator");
    if (ok) {
        dsv4_sampler_set_f64(dsv4_gen_sampler(a->g), DSV4_SAMPLER_TEMPERATURE, 0);
        dsv4_gen_set_i64(a->g, DSV4_GEN_THINKING, 0);
        /* the reference: tokens, then the same evaluations on a second session
         * (prefix, rest of the prompt, one token at a time) for the logits */
        ok = CHECK(prime(a), "prime") && CHECK(dsv4_gen_start(a->g, a->prompt, PN) == DSV4_OK, "reference start");
        for (int guard = 0; ok && guard < 100; guard++) {
            dsv4_gen_event_type t;
            if (dsv4_gen_next(a->g, &t, NULL, NULL, NULL) != DSV4_OK || t == DSV4_GEN_EVENT_STOP) break;
        }
        a->ref_n = dsv4_gen_n_tokens(a->g);
        for (int64_t i = 0; i < a->ref_n && i < MAXTOK; i++)
            dsv4_gen_token(a->g, i, &a->ref[i], NULL, NULL, NULL, 0, NULL);
        ok = ok && CHECK(a->ref_n >= 2, "reference: %lld tokens", (long long)a->ref_n);
        ok = ok && dsv4_session_eval(s2, a->prompt, P0, 0) == DSV4_OK &&
             dsv4_session_eval(s2, a->prompt + P0, PN - P0, 0) == DSV4_OK &&
             dsv4_session_logits(s2, -1, a->ref_lg + PN * VOCAB, VOCAB) == DSV4_OK;
        for (int64_t i = 0; ok && i < a->ref_n; i++)
            ok = dsv4_session_eval(s2, &a->ref[i], 1, 0) == DSV4_OK &&
                 dsv4_session_logits(s2, -1, a->ref_lg + (PN + 1 + i) * VOCAB, VOCAB) == DSV4_OK;
        ok = CHECK(ok, "reference logits");
        if (ok) sweep_whole(a, 100000);
    }
    dsv4_gen_free(a->g);
    dsv4_session_free(a->s);
    dsv4_session_free(s2);
    free(a->ref_lg);
    free(a);
}

int main(int argc, char **argv)
{
    if (!CHECK(argc > 1, "usage: test_alloc_fail SMALL_TOKENIZER_JSON")) return test_summary();
    small_tok = argv[1];
    snprintf(golden, sizeof golden, "%s/golden/tiny-a/ckpt", test_shared_dir());
    snprintf(v4_path, sizeof v4_path, "%s/tokenizers/deepseek-v4/tokenizer.json", test_shared_dir());
    char *err = NULL;
    if (!CHECK(dsv4_model_load(golden, NULL, &model, &err) == DSV4_OK, "load %s: %s", golden, NZ(err)) ||
        !CHECK(dsv4_tokenizer_load(v4_path, NULL, &v4, &err) == DSV4_OK, "tokenizer %s: %s", v4_path, NZ(err))) {
        dsv4_free(err);
        dsv4_model_free(model);
        return test_summary();
    }
    sweep("options", op_options, NULL, 1000);
    sweep("model load", op_model, NULL, 100000);
    sweep("model load under a memory budget, first evaluation", op_model_budget, NULL, 100000);
    sweep("model info", op_info, NULL, 100000);
    sweep("context, session and first evaluation", op_context_session, NULL, 100000);
    sweep("tokenizer load, encode, decode", op_tokenizer, NULL, 100000);
    sweep("detokenizer", op_detok, NULL, 100000);
    sweep("chat builder and rendering", op_chat, NULL, 100000);
    sweep("chat output parser", op_parser, NULL, 100000);
    sweep("sampler", op_sampler, NULL, 100000);

    dsv4_options *o = NULL;
    dsv4_context *c = NULL;
    dsv4_options_create(&o);
    dsv4_options_set_i64(o, DSV4_OPT_THREADS, 1);
    dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, 64);
    if (CHECK(dsv4_context_create(model, o, &c, NULL) == DSV4_OK, "context")) {
        gen_arg ga = { c, NULL };
        if (CHECK(dsv4_session_create(c, NULL, &ga.s, NULL) == DSV4_OK, "session")) {
            sweep("generator", op_generator, &ga, 100000);
            dsv4_session_free(ga.s);
        }
        test_whole_generation(c);
    }
    dsv4_context_free(c);
    dsv4_options_free(o);
    dsv4_tokenizer_free(v4);
    dsv4_model_free(model);
    return test_summary();
}
