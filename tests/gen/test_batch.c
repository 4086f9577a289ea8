/*
 * tests/gen/test_batch.c — continuous batching (dsv4_gen_step_batch) and the
 * Anthropic Messages form (dsv4_gen_start_messages and its renderings).
 *
 * Batching: several generators on sessions of one context, stepped
 * together, give token for token what each gives alone (greedy and
 * sampled, with prompts fed whole or in chunks beside the others' decode
 * steps), on the golden tiny checkpoint (512-token vocabulary, fast).
 * Messages: on a synthetic tiny checkpoint at the real vocabulary
 * (dsv4-synth, argv[1]), a Messages request and its hand-written
 * chat-completions equivalent give the same prompt and the same greedy
 * answer; the response and the event stream have the Messages shape; bad
 * requests are refused naming the field and leave the generator usable.
 */
#define DSV4_ENABLE_EXPERIMENTAL /* the experimental tier (docs/ABI.md) */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "rig.h"

#define NG 4

static dsv4_tokenizer *tok;

typedef struct run {
    int32_t toks[256];
    int64_t n;
    int32_t finish;
} run;

static void collect(dsv4_gen *g, run *r)
{
    r->n = dsv4_gen_n_tokens(g);
    for (int64_t i = 0; i < r->n && i < 256; i++) dsv4_gen_token(g, i, &r->toks[i], NULL, NULL, NULL, 0, NULL);
    r->finish = dsv4_gen_finish_reason(g);
}

static void prompt_of(int i, int32_t *p, size_t *n, size_t len)
{
    *n = len + (size_t)i * 5;
    for (size_t k = 0; k < *n; k++) p[k] = (int32_t)((k * 37 + (size_t)i * 101 + 3) % 500);
}

static void setup(dsv4_gen *g, double temp, int64_t seed, int64_t max, int64_t chunk)
{
    dsv4_sampler_set_f64(dsv4_gen_sampler(g), DSV4_SAMPLER_TEMPERATURE, temp);
    dsv4_sampler_set_i64(dsv4_gen_sampler(g), DSV4_SAMPLER_SEED, seed);
    dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, max);
    dsv4_gen_set_i64(g, DSV4_GEN_PREFILL_CHUNK, chunk);
    dsv4_gen_set_i64(g, DSV4_GEN_REUSE_PREFIX, 0);
}

/* the n generators' runs alone, then together; compare */
static void compare(const char *what, dsv4_gen **g, dsv4_session **s, double temp, size_t plen, int64_t chunk)
{
    run alone[NG], together[NG];
    int32_t p[400];
    size_t n;
    for (int i = 0; i < NG; i++) {
        setup(g[i], temp, 11 + i, 12 + 3 * i, 0);
        dsv4_session_reset(s[i]);
        prompt_of(i, p, &n, plen);
        if (!CHECK(dsv4_gen_start(g[i], p, n) == DSV4_OK, "%s: start alone %d: %s", what, i, dsv4_gen_last_error(g[i])))
            return;
        dsv4_gen_event_type t = DSV4_GEN_EVENT_NONE;
        while (t != DSV4_GEN_EVENT_STOP) dsv4_gen_next(g[i], &t, NULL, NULL, NULL);
        collect(g[i], &alone[i]);
    }
    for (int i = 0; i < NG; i++) {
        setup(g[i], temp, 11 + i, 12 + 3 * i, chunk);
        dsv4_session_reset(s[i]);
        prompt_of(i, p, &n, plen);
        if (!CHECK(dsv4_gen_start(g[i], p, n) == DSV4_OK, "%s: start batched %d", what, i)) return;
        if (chunk) CHECK(dsv4_session_position(s[i]) == 0, "%s: deferred prompt not fed at start (%lld)", what,
                         (long long)dsv4_session_position(s[i]));
    }
    int steps = 0, total = 0;
    for (;;) {
        dsv4_gen *live[NG];
        int nl = 0;
        for (int i = 0; i < NG; i++)
            if (dsv4_gen_finish_reason(g[i]) == DSV4_FINISH_NONE) live[nl++] = g[i];
        if (!nl || steps > 2000) break;
        int32_t nt = -1;
        CHECK(dsv4_gen_step_batch(live, nl, &nt) == DSV4_OK && nt >= 0, "%s: step_batch", what);
        total += nt;
        steps++;
    }
    int same = 1, sum = 0;
    for (int i = 0; i < NG; i++) {
        collect(g[i], &together[i]);
        sum += (int)together[i].n;
        if (together[i].n != alone[i].n || together[i].finish != alone[i].finish ||
            memcmp(together[i].toks, alone[i].toks, (size_t)alone[i].n * sizeof(int32_t)) != 0) {
            same = 0;
            fprintf(stderr, "  %s: generator %d: %lld tokens (finish %d) batched, %lld (finish %d) alone\n", what, i,
                    (long long)together[i].n, together[i].finish, (long long)alone[i].n, alone[i].finish);
        }
    }
    CHECK(same, "%s: every generator's batched run equals its run alone", what);
    CHECK(total == sum, "%s: n_tokens adds up (%d vs %d)", what, total, sum);
    if (chunk) {
        /* chunked prefill: the generator with the longest prompt produced
         * nothing while the others already did */
        CHECK(steps > (int)(plen / (size_t)chunk), "%s: the prompts took several steps (%d)", what, steps);
    }
}

static void test_batching(const char *golden)
{
    rig r;
    if (!rig_open(&r, golden, 512)) {
        rig_close(&r);
        return;
    }
    dsv4_session *s[NG] = { r.s };
    dsv4_gen *g[NG] = { 0 };
    int ok = 1;
    for (int i = 1; i < NG; i++) ok &= CHECK(dsv4_session_create(r.c, NULL, &s[i], NULL) == DSV4_OK, "session %d", i);
    for (int i = 0; i < NG && ok; i++) ok &= CHECK(dsv4_gen_create(s[i], tok, &g[i]) == DSV4_OK, "gen %d", i);
    if (ok) {
        /* arguments */
        int32_t nt = 7;
        CHECK(dsv4_gen_step_batch(NULL, 1, &nt) == DSV4_ERR_INVALID_ARGUMENT && nt == 0, "NULL gens");
        CHECK(dsv4_gen_step_batch(g, 0, NULL) == DSV4_ERR_INVALID_ARGUMENT, "n 0");
        CHECK(dsv4_gen_step_batch(g, 300, NULL) == DSV4_ERR_INVALID_ARGUMENT, "n 300");
        CHECK(dsv4_gen_step_batch(g, 2, NULL) == DSV4_ERR_INVALID_ARGUMENT, "not started");
        int32_t p[4] = { 1, 2, 3, 4 };
        dsv4_gen_start(g[0], p, 4);
        dsv4_gen *twice[2] = { g[0], g[0] };
        CHECK(dsv4_gen_step_batch(twice, 2, NULL) == DSV4_ERR_INVALID_ARGUMENT, "a generator twice");
        CHECK(dsv4_gen_queued_events(NULL) == -1, "queued_events(NULL)");
        CHECK(dsv4_gen_set_i64(g[0], DSV4_GEN_PREFILL_CHUNK, -1) == DSV4_ERR_INVALID_ARGUMENT, "prefill_chunk -1");
        int64_t v = -1;
        CHECK(dsv4_gen_get_i64(g[0], DSV4_GEN_PREFILL_CHUNK, &v) == DSV4_OK && v == 0, "prefill_chunk default 0");

        compare("greedy, whole prompts", g, s, 0.0, 6, 0);
        compare("sampled, whole prompts", g, s, 1.0, 6, 0);
        compare("greedy, prompts in chunks of 16", g, s, 0.0, 120, 16);
        compare("sampled, prompts in chunks of 7", g, s, 0.8, 50, 7);

        /* dsv4_gen_next with a deferred prompt feeds it at once */
        setup(g[1], 0.0, 1, 5, 8);
        dsv4_session_reset(s[1]);
        int32_t q[40];
        size_t qn;
        prompt_of(1, q, &qn, 30);
        dsv4_gen_start(g[1], q, qn);
        dsv4_gen_event_type t = DSV4_GEN_EVENT_NONE;
        while (t != DSV4_GEN_EVENT_STOP) dsv4_gen_next(g[1], &t, NULL, NULL, NULL);
        CHECK(dsv4_gen_n_tokens(g[1]) >= 1 && dsv4_session_position(s[1]) >= (int64_t)qn, "next() after a deferred start");
        CHECK(dsv4_gen_usage(g[1], DSV4_USAGE_PROMPT_TOKENS) == (int64_t)qn, "prompt tokens of a deferred start");

        /* a cancel while the prompt is fed in chunks */
        setup(g[2], 0.0, 1, 5, 4);
        dsv4_session_reset(s[2]);
        dsv4_gen_start(g[2], q, qn);
        dsv4_gen_step_batch(&g[2], 1, NULL);
        dsv4_gen_cancel(g[2]);
        dsv4_gen_step_batch(&g[2], 1, NULL);
        CHECK(dsv4_gen_finish_reason(g[2]) == DSV4_FINISH_CANCELLED, "cancel during a chunked prompt: %d",
              dsv4_gen_finish_reason(g[2]));
    }
    for (int i = 0; i < NG; i++) dsv4_gen_free(g[i]);
    for (int i = 1; i < NG; i++) dsv4_session_free(s[i]);
    rig_close(&r);
}

/* ------------------------------------------------------------------------ */
/* the Messages form                                                         */
/* ------------------------------------------------------------------------ */

static json_t *parse(const char *s)
{
    json_t *j = s ? json_loads(s, 0, NULL) : NULL;
    return j;
}

static char *answer(dsv4_gen *g, int messages)
{
    dsv4_gen_event_type t = DSV4_GEN_EVENT_NONE;
    while (t != DSV4_GEN_EVENT_STOP) dsv4_gen_next(g, &t, NULL, NULL, NULL);
    char *out = NULL;
    if (messages) dsv4_gen_message_response_json(g, &out);
    else dsv4_gen_response_json(g, &out);
    return out;
}

static void test_messages(rig *r)
{
    dsv4_gen *g = NULL;
    if (!CHECK(dsv4_gen_create(r->s, tok, &g) == DSV4_OK, "gen")) return;
    static const char *tools_a =
        "[{\"name\":\"get_weather\",\"description\":\"Weather\",\"input_schema\":{\"type\":\"object\","
        "\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}]";
    static const char *tools_o =
        "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\","
        "\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]},\"description\":\"Weather\"}}]";
    char a[4096], o[4096];
    /* a conversation with every block kind, and its chat-completions twin */
    snprintf(a, sizeof a,
             "{\"model\":\"x\",\"max_tokens\":24,\"temperature\":0,\"system\":[{\"type\":\"text\",\"text\":\"Be brief.\"}],"
             "\"tools\":%s,\"tool_choice\":{\"type\":\"auto\"},\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":5},"
             "\"stop_sequences\":[\"zzz\"],\"metadata\":{\"user_id\":\"u\"},\"messages\":["
             "{\"role\":\"user\",\"content\":\"Weather in Oslo?\"},"
             "{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"Use the tool.\",\"signature\":\"s\"},"
             "{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"get_weather\",\"input\":{\"city\":\"Oslo\"}}]},"
             "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\",\"content\":[{\"type\":\"text\",\"text\":\"Rain\"}]},"
             "{\"type\":\"text\",\"text\":\"And tomorrow?\"}]}]}",
             tools_a);
    snprintf(o, sizeof o,
             "{\"model\":\"x\",\"max_tokens\":24,\"temperature\":0,\"tools\":%s,\"tool_choice\":\"auto\","
             "\"thinking\":{\"type\":\"enabled\"},\"thinking_budget\":5,\"stop\":[\"zzz\"],\"messages\":["
             "{\"role\":\"system\",\"content\":\"Be brief.\"},"
             "{\"role\":\"user\",\"content\":\"Weather in Oslo?\"},"
             "{\"role\":\"assistant\",\"content\":\"\",\"reasoning_content\":\"Use the tool.\",\"tool_calls\":[{\"id\":\"t1\","
             "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}}]},"
             "{\"role\":\"tool\",\"tool_call_id\":\"t1\",\"content\":\"Rain\"},"
             "{\"role\":\"user\",\"content\":\"And tomorrow?\"}]}",
             tools_o);
    dsv4_gen_set_i64(g, DSV4_GEN_REUSE_PREFIX, 0);
    int ok = CHECK(dsv4_gen_start_request(g, o, strlen(o)) == DSV4_OK, "chat twin: %s", dsv4_gen_last_error(g));
    char *ro = ok ? answer(g, 0) : NULL;
    int64_t po = dsv4_gen_usage(g, DSV4_USAGE_PROMPT_TOKENS);
    ok = CHECK(dsv4_gen_start_messages(g, a, strlen(a)) == DSV4_OK, "messages: %s", dsv4_gen_last_error(g));
    char *ra = ok ? answer(g, 1) : NULL;
    int64_t pa = dsv4_gen_usage(g, DSV4_USAGE_PROMPT_TOKENS);
    CHECK(po > 0 && pa == po, "the same prompt (%lld vs %lld tokens)", (long long)pa, (long long)po);
    json_t *jo = parse(ro), *ja = parse(ra);
    if (CHECK(jo && ja, "responses parse")) {
        json_t *msg = json_object_get(json_array_get(json_object_get(jo, "choices"), 0), "message");
        json_t *content = json_object_get(ja, "content");
        CHECK(!strcmp(json_string_value(json_object_get(ja, "type")), "message") &&
                  !strcmp(json_string_value(json_object_get(ja, "role")), "assistant") &&
                  !strncmp(json_string_value(json_object_get(ja, "id")), "msg_", 4),
              "message shape");
        json_t *b0 = json_array_get(content, 0);
        CHECK(b0 && !strcmp(json_string_value(json_object_get(b0, "type")), "thinking"), "thinking block first");
        CHECK(b0 && json_equal(json_object_get(b0, "thinking"), json_object_get(msg, "reasoning_content")),
              "the same reasoning as the chat answer (greedy)");
        const char *text = "";
        size_t ntool = 0;
        size_t i;
        json_t *b;
        json_array_foreach(content, i, b) {
            const char *ty = json_string_value(json_object_get(b, "type"));
            if (!strcmp(ty, "text")) text = json_string_value(json_object_get(b, "text"));
            if (!strcmp(ty, "tool_use")) {
                ntool++;
                CHECK(json_is_object(json_object_get(b, "input")), "tool_use input is an object");
            }
        }
        CHECK(!strcmp(text, json_string_value(json_object_get(msg, "content"))), "the same text as the chat answer");
        CHECK(ntool == json_array_size(json_object_get(msg, "tool_calls")), "as many tool_use blocks as tool calls");
        const char *sr = json_string_value(json_object_get(ja, "stop_reason"));
        const char *fr = json_string_value(json_object_get(json_array_get(json_object_get(jo, "choices"), 0), "finish_reason"));
        CHECK(sr && fr && ((!strcmp(fr, "length") && !strcmp(sr, "max_tokens")) || (!strcmp(fr, "stop") && !strcmp(sr, "end_turn")) ||
                           (!strcmp(fr, "tool_calls") && !strcmp(sr, "tool_use"))),
              "stop_reason %s for finish_reason %s", sr ? sr : "?", fr ? fr : "?");
        json_t *u = json_object_get(ja, "usage");
        CHECK(json_integer_value(json_object_get(u, "input_tokens")) + json_integer_value(json_object_get(u, "cache_read_input_tokens")) == pa &&
                  json_integer_value(json_object_get(u, "output_tokens")) == dsv4_gen_n_tokens(g) &&
                  json_is_integer(json_object_get(u, "cache_creation_input_tokens")),
              "usage");
    }
    json_decref(jo);
    json_decref(ja);
    dsv4_free(ro);

    /* the event stream gives the same content as the whole response */
    if (CHECK(dsv4_gen_start_messages(g, a, strlen(a)) == DSV4_OK, "messages again")) {
        char *ev = NULL;
        int n = 0, first_ok = 0, last_ok = 0, starts = 0, stops = 0, deltas = 0;
        const char *want_first = "event: message_start\n";
        char last[64] = "";
        for (;;) {
            if (!CHECK(dsv4_gen_next_message_event(g, &ev) == DSV4_OK, "next_message_event")) break;
            if (!ev) break;
            if (n++ == 0) first_ok = !strncmp(ev, want_first, strlen(want_first));
            for (const char *p = ev; (p = strstr(p, "event: ")); p++) {
                if (!strncmp(p, "event: content_block_start", 26)) starts++;
                if (!strncmp(p, "event: content_block_stop", 25)) stops++;
                if (!strncmp(p, "event: content_block_delta", 26)) deltas++;
                snprintf(last, sizeof last, "%.*s", (int)strcspn(p, "\n"), p);
            }
            dsv4_free(ev);
            if (n > 10000) break;
        }
        last_ok = !strcmp(last, "event: message_stop");
        CHECK(first_ok && last_ok, "stream: message_start first, message_stop last (%s)", last);
        CHECK(starts >= 1 && starts == stops && deltas >= 1, "stream: blocks open and close (%d/%d, %d deltas)", starts, stops, deltas);
        ev = (char *)"x";
        CHECK(dsv4_gen_next_message_event(g, &ev) == DSV4_OK && ev == NULL, "stream: NULL after the end");
        char *again = NULL;
        dsv4_gen_message_response_json(g, &again);
        json_t *j1 = parse(again), *j2 = parse(ra);
        CHECK(j1 && j2 && json_equal(json_object_get(j1, "content"), json_object_get(j2, "content")),
              "the streamed run's response equals the first (greedy)");
        json_decref(j1);
        json_decref(j2);
        dsv4_free(again);
    }
    dsv4_free(ra);

    /* refusals name the field and change nothing */
    static const struct { const char *req, *needle; } bad[] = {
        { "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "max_tokens" },
        { "{\"max_tokens\":4,\"messages\":[]}", "messages" },
        { "{\"max_tokens\":4,\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}", "messages[0].role" },
        { "{\"max_tokens\":4,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\"}]}]}", "image" },
        { "{\"max_tokens\":4,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\"}]}]}", "messages[0].content[0].tool_use_id" },
        { "{\"max_tokens\":4,\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"a\",\"name\":\"f\",\"input\":3}]}]}", "tool_use" },
        { "{\"max_tokens\":4,\"frob\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "frob" },
        { "{\"max_tokens\":4,\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":9},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "budget_tokens" },
        { "{\"max_tokens\":4,\"tool_choice\":{\"type\":\"sometimes\"},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "tool_choice" },
        { "{\"max_tokens\":4,\"tools\":[{\"name\":\"f\"}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "tools[0].input_schema" },
        { "{\"max_tokens\":4,\"temperature\":1.5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "temperature" },
        { "{\"max_tokens\":4,\"stop_sequences\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "stop_sequences" },
        { "[1]", "not a JSON object" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dsv4_status st = dsv4_gen_start_messages(g, bad[i].req, strlen(bad[i].req));
        CHECK(st == DSV4_ERR_INVALID_ARGUMENT && strstr(dsv4_gen_last_error(g), bad[i].needle),
              "bad request %zu refused naming %s: %s (%s)", i, bad[i].needle, dsv4_status_string(st), dsv4_gen_last_error(g));
    }
    CHECK(dsv4_gen_start_messages(g, "{", 1) == DSV4_ERR_BAD_FORMAT, "not JSON");
    CHECK(dsv4_gen_start_messages(NULL, "{}", 2) == DSV4_ERR_INVALID_ARGUMENT, "NULL gen");
    CHECK(dsv4_gen_start_messages(g, NULL, 2) == DSV4_ERR_INVALID_ARGUMENT, "NULL request");
    char *out = (char *)"x";
    CHECK(dsv4_gen_message_response_json(NULL, &out) == DSV4_ERR_INVALID_ARGUMENT && out == NULL, "response NULL gen");
    /* still usable: a plain request with a stop sequence that matches nothing */
    static const char *ok_req = "{\"max_tokens\":3,\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},"
                                "{\"role\":\"assistant\",\"content\":\"Well\"}]}";
    if (CHECK(dsv4_gen_start_messages(g, ok_req, strlen(ok_req)) == DSV4_OK, "after refusals: %s", dsv4_gen_last_error(g))) {
        char *r = answer(g, 1);
        json_t *j = parse(r);
        json_t *b0 = json_array_get(json_object_get(j, "content"), 0);
        CHECK(b0 && !strcmp(json_string_value(json_object_get(b0, "type")), "text"), "no thinking block in chat mode");
        json_decref(j);
        dsv4_free(r);
    }
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
    test_batching(golden);
    if (argc > 1) {
        char *dir = test_tmpdir("batch");
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "'%s' --preset tiny --out '%s/m' --seed 7 >/dev/null", argv[1], dir);
        if (CHECK(system(cmd) == 0, "%s", cmd)) {
            char m[4096];
            snprintf(m, sizeof m, "%s/m", dir);
            rig b;
            if (rig_open(&b, m, 2048)) test_messages(&b);
            rig_close(&b);
        }
        test_rmtree(dir);
        free(dir);
    } else {
        CHECK(0, "usage: test_batch DSV4_SYNTH");
    }
    dsv4_tokenizer_free(tok);
    return test_summary();
}
