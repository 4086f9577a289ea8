/*
 * tests/chat/test_chat.c — the chat encoding, byte-exact (and id-exact
 * through the tokenizer) on the official encoder's 4 test cases and the 16
 * extra rendered cases; bad requests give clear statuses.
 */
#include <dsv4/dsv4.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"

void dsv4__alloc_fail_after(long n); /* lib/core: the n-th allocation from now fails */

#define T(c) CHECK((c), "%s", #c)

static dsv4_tokenizer *tok;

static int builder_checked, builder_same;

/* the same request through the C builder; returns 0 if not expressible there */
static int via_builder(json_t *req, const char *want, json_t *want_ids)
{
    json_t *msgs = json_object_get(req, "messages");
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        if (json_object_get(m, "task") || json_object_get(m, "title") || (i > 0 && json_object_get(m, "tools")))
            return 0;
    }
    dsv4_chat *c = NULL;
    if (dsv4_chat_create(&c) != DSV4_OK) return 0;
    int ok = 1;
    const char *tm = json_string_value(json_object_get(req, "thinking_mode"));
    if (tm) ok &= dsv4_chat_set_i64(c, DSV4_CHAT_THINKING, strcmp(tm, "thinking") == 0) == DSV4_OK;
    const char *re = json_string_value(json_object_get(req, "reasoning_effort"));
    if (re) ok &= dsv4_chat_set_i64(c, DSV4_CHAT_REASONING_EFFORT, strcmp(re, "max") == 0 ? DSV4_EFFORT_MAX : DSV4_EFFORT_HIGH) == DSV4_OK;
    json_t *dt = json_object_get(req, "drop_thinking");
    if (dt) ok &= dsv4_chat_set_i64(c, DSV4_CHAT_DROP_THINKING, json_is_true(dt)) == DSV4_OK;
    json_t *tools = json_object_get(req, "tools");
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (json_object_get(m, "tools")) tools = json_object_get(m, "tools");
        if (strcmp(role, "tool") == 0) {
            ok &= dsv4_chat_add_tool_result(c, json_string_value(json_object_get(m, "tool_call_id")),
                                            json_string_value(json_object_get(m, "content"))) == DSV4_OK;
            continue;
        }
        ok &= dsv4_chat_add_message(c, role, json_string_value(json_object_get(m, "content")),
                                    json_string_value(json_object_get(m, "reasoning_content"))) == DSV4_OK;
        json_t *calls = json_object_get(m, "tool_calls");
        for (size_t k = 0; k < json_array_size(calls); k++) {
            json_t *call = json_array_get(calls, k), *fn = json_object_get(call, "function");
            ok &= dsv4_chat_add_tool_call(c, json_string_value(json_object_get(call, "id")),
                                          json_string_value(json_object_get(fn, "name")),
                                          json_string_value(json_object_get(fn, "arguments"))) == DSV4_OK;
        }
        json_t *rf = json_object_get(m, "response_format");
        if (rf) {
            char *t = json_dumps(rf, JSON_PRESERVE_ORDER);
            ok &= dsv4_chat_set_json(c, DSV4_CHAT_RESPONSE_FORMAT, t) == DSV4_OK;
            free(t);
        }
        if (json_is_true(json_object_get(m, "prefix")) || json_is_true(json_object_get(m, "wo_eos")))
            ok &= dsv4_chat_set_i64(c, DSV4_CHAT_PREFIX, 1) == DSV4_OK;
    }
    if (tools) {
        char *t = json_dumps(tools, JSON_PRESERVE_ORDER);
        ok &= dsv4_chat_set_json(c, DSV4_CHAT_TOOLS, t) == DSV4_OK;
        free(t);
    }
    char *prompt = NULL;
    ok &= dsv4_chat_render_text(c, &prompt) == DSV4_OK && prompt && strcmp(prompt, want) == 0;
    if (ok && tok && want_ids) {
        size_t n = 0;
        dsv4_status st = dsv4_chat_render_ids(c, tok, NULL, 0, &n);
        int32_t *ids = malloc((n + 1) * sizeof *ids);
        ok &= st == DSV4_ERR_BUFFER_TOO_SMALL && n == json_array_size(want_ids) &&
              dsv4_chat_render_ids(c, tok, ids, n, &n) == DSV4_OK;
        for (size_t i = 0; ok && i < n; i++) ok = ids[i] == json_integer_value(json_array_get(want_ids, i));
        free(ids);
    }
    if (!ok) printf("  builder: %s\n", dsv4_chat_last_error(c));
    dsv4_free(prompt);
    dsv4_chat_free(c);
    builder_checked++;
    builder_same += ok;
    return 1;
}

static void compare(const char *name, json_t *req, const char *want, json_t *want_ids)
{
    via_builder(req, want, want_ids);
    char *s = json_dumps(req, JSON_PRESERVE_ORDER | JSON_COMPACT);
    char *prompt = NULL, *msg = NULL;
    dsv4_status st = dsv4_chat_render(s, strlen(s), &prompt, &msg);
    int same = st == DSV4_OK && prompt && strcmp(prompt, want) == 0;
    CHECK(same, "%s: status %d %s", name, st, msg ? msg : "");
    if (!same && prompt) {
        size_t i = 0;
        while (prompt[i] && prompt[i] == want[i]) i++;
        printf("  %s differs at byte %zu:\n  got:  %.120s\n  want: %.120s\n", name, i, prompt + i, want + i);
    }
    if (same && tok && want_ids) {
        size_t cap = strlen(prompt) + 16, n = 0;
        int32_t *ids = malloc(cap * sizeof *ids);
        st = dsv4_tokenizer_encode(tok, prompt, strlen(prompt), 0, ids, cap, &n, NULL);
        int ok = st == DSV4_OK && n == json_array_size(want_ids);
        for (size_t i = 0; ok && i < n; i++) ok = ids[i] == json_integer_value(json_array_get(want_ids, i));
        CHECK(ok, "%s: ids (%zu vs %zu)", name, n, json_array_size(want_ids));
        free(ids);
    }
    dsv4_free(prompt);
    dsv4_free(msg);
    free(s);
}

static char *slurp(const char *p)
{
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    if (b) b[n] = 0;
    fclose(f);
    return b;
}

static void official(void)
{
    static const char *modes[] = { "thinking", "thinking", "thinking", "chat" };
    for (int i = 1; i <= 4; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/tokenizers/deepseek-v4/encoding-tests/test_input_%d.json", test_shared_dir(), i);
        json_t *in = json_load_file(p, JSON_PRESERVE_ORDER, NULL);
        snprintf(p, sizeof p, "%s/tokenizers/deepseek-v4/encoding-tests/test_output_%d.txt", test_shared_dir(), i);
        char *want = slurp(p);
        snprintf(p, sizeof p, "%s/tokenizers/deepseek-v4/encoding-tests/test_output_%d.ids.json", test_shared_dir(), i);
        json_t *ids = json_load_file(p, 0, NULL);
        CHECK(in && want, "official case %d readable", i);
        if (in && want) {
            json_t *req = json_is_array(in) ? json_pack("{s:O}", "messages", in) : json_incref(in);
            json_object_set_new(req, "thinking_mode", json_string(modes[i - 1]));
            char name[32];
            snprintf(name, sizeof name, "official case %d", i);
            compare(name, req, want, json_is_array(ids) ? ids : json_object_get(ids, "ids"));
            json_decref(req);
        }
        json_decref(in);
        json_decref(ids);
        free(want);
    }
}

static void extra(void)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/tokenizers/deepseek-v4/encoding-tests/extra_cases.jsonl", test_shared_dir());
    FILE *f = fopen(p, "rb");
    CHECK(f != NULL, "%s", p);
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *c = json_loads(line, JSON_PRESERVE_ORDER, NULL);
        if (!c) continue;
        n++;
        json_t *req = json_pack("{s:O}", "messages", json_object_get(c, "messages"));
        json_t *kw = json_object_get(c, "encode_kwargs");
        const char *k;
        json_t *v;
        json_object_foreach(kw, k, v) json_object_set(req, k, v);
        compare(json_string_value(json_object_get(c, "name")), req, json_string_value(json_object_get(c, "prompt")),
                json_object_get(c, "ids"));
        json_decref(req);
        json_decref(c);
    }
    free(line);
    fclose(f);
    CHECK(n == 16, "16 extra cases, read %d", n);
}

static void expect_err(const char *req, dsv4_status want, const char *needle)
{
    char *prompt = (char *)1, *msg = NULL;
    dsv4_status st = dsv4_chat_render(req, strlen(req), &prompt, &msg);
    CHECK(st == want && prompt == NULL && msg && strstr(msg, needle), "%s -> %d (%s)", req, st, msg ? msg : "");
    dsv4_free(msg);
}

static void bad(void)
{
    char *prompt = NULL;
    T(dsv4_chat_render(NULL, 0, &prompt, NULL) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_chat_render("{}", 2, NULL, NULL) == DSV4_ERR_INVALID_ARGUMENT);
    expect_err("{", DSV4_ERR_BAD_FORMAT, "JSON");
    expect_err("[1]", DSV4_ERR_BAD_FORMAT, "JSON object");
    expect_err("{}", DSV4_ERR_INVALID_ARGUMENT, "messages");
    expect_err("{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", DSV4_ERR_INVALID_ARGUMENT, "messages[0]: unknown role 'robot'");
    expect_err("{\"messages\":[{\"content\":\"x\"}]}", DSV4_ERR_INVALID_ARGUMENT, "role");
    expect_err("{\"messages\":[{\"role\":\"user\",\"content\":5}]}", DSV4_ERR_INVALID_ARGUMENT, "content");
    expect_err("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"tool\",\"tool_call_id\":\"x\",\"content\":\"r\"}]}",
               DSV4_ERR_INVALID_ARGUMENT, "messages[1]: tool result without");
    expect_err("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"zz\",\"content\":\"r\"}]}",
               DSV4_ERR_INVALID_ARGUMENT, "tool_call_id");
    expect_err("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"reasoning_effort\":\"extreme\"}", DSV4_ERR_INVALID_ARGUMENT, "reasoning_effort");
    expect_err("{\"messages\":[{\"role\":\"user\",\"content\":\"\\u00e9\\ud800\"}]}", DSV4_ERR_BAD_FORMAT, "JSON");
    const char inv[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}";
    expect_err(inv, DSV4_ERR_BAD_FORMAT, "JSON");
    /* Python float formatting and escapes in tool schemas */
    const char *req = "{\"thinking_mode\":\"chat\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"x\":[1.0,1e100,-0.0,0.5,1e-05,123456789012345678,2.5e16,\"\\u00e9\\n\\\"\\u0001\"]}}],\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}";
    char *msg = NULL;
    prompt = NULL;
    T(dsv4_chat_render(req, strlen(req), &prompt, &msg) == DSV4_OK);
    const char *want = "{\"name\": \"f\", \"x\": [1.0, 1e+100, -0.0, 0.5, 1e-05, 123456789012345678, 2.5e+16, \"\xc3\xa9\\n\\\"\\u0001\"]}";
    CHECK(prompt && strstr(prompt, want), "python json.dumps formatting: %s", prompt ? strstr(prompt, "{\"name\"") : "(none)");
    dsv4_free(prompt);
    dsv4_free(msg);
}

static void builder_misuse(void)
{
    dsv4_chat *c = NULL;
    T(dsv4_chat_create(NULL) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_chat_create(&c) == DSV4_OK);
    T(dsv4_chat_add_message(c, "robot", "x", NULL) == DSV4_ERR_INVALID_ARGUMENT && strstr(dsv4_chat_last_error(c), "role"));
    T(dsv4_chat_add_message(c, "user", "\xff", NULL) == DSV4_ERR_INVALID_ARGUMENT && strstr(dsv4_chat_last_error(c), "UTF-8"));
    T(dsv4_chat_add_message(c, "user", "q", "r") == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_chat_add_tool_call(c, "a", "f", "{}") == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_chat_add_message(c, "user", "q", NULL) == DSV4_OK);
    T(dsv4_chat_add_message(c, "assistant", NULL, NULL) == DSV4_OK);
    T(dsv4_chat_add_tool_call(c, "a", "f", "[1]") == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_chat_add_tool_call(c, "a", "f", "{\"x\": 1}") == DSV4_OK);
    T(dsv4_chat_add_tool_result(c, "zz", "r") == DSV4_OK);
    char *p = (char *)1;
    T(dsv4_chat_render_text(c, &p) == DSV4_ERR_INVALID_ARGUMENT && p == NULL && strstr(dsv4_chat_last_error(c), "tool_call_id"));
    T(dsv4_chat_set_i64(c, DSV4_CHAT_THINKING, 2) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_chat_set_i64(c, (dsv4_chat_field)77, 1) == DSV4_ERR_UNKNOWN_OPTION);
    T(dsv4_chat_set_json(c, DSV4_CHAT_TOOLS, "{}") == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_chat_set_json(c, DSV4_CHAT_RESPONSE_FORMAT, "{\"type\": \"json_object\"}") == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_chat_set_fim(c, "a", "b") == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_chat_render_text(NULL, &p) == DSV4_ERR_INVALID_ARGUMENT);
    size_t n;
    T(dsv4_chat_render_ids(c, NULL, NULL, 0, &n) == DSV4_ERR_INVALID_ARGUMENT);
    dsv4_chat_free(c);
    dsv4_chat_free(NULL);
    T(dsv4_chat_create(&c) == DSV4_OK);
    T(dsv4_chat_set_fim(c, "def f():\n", "\n") == DSV4_OK);
    p = NULL;
    T(dsv4_chat_render_text(c, &p) == DSV4_OK && p && strstr(p, "fim"));
    dsv4_free(p);
    dsv4_chat_free(c);
}

static void fim(void)
{
    const char *req = "{\"prompt\":\"def f(x):\\n    \",\"suffix\":\"\\n    return y\\n\"}";
    char *prompt = NULL;
    T(dsv4_chat_render(req, strlen(req), &prompt, NULL) == DSV4_OK);
    const char *want = "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
                       "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>def f(x):\n    "
                       "<\xef\xbd\x9c" "fim\xe2\x96\x81" "hole\xef\xbd\x9c>\n    return y\n"
                       "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>";
    CHECK(prompt && strcmp(prompt, want) == 0, "FIM: %s", prompt ? prompt : "(none)");
    if (prompt && tok) {
        int32_t ids[64];
        size_t n = 0;
        T(dsv4_tokenizer_encode(tok, prompt, strlen(prompt), 0, ids, 64, &n, NULL) == DSV4_OK);
        /* BOS, fim begin 128801 ... hole 128800 ... end 128802 */
        int begin = 0, hole = 0, end = 0;
        for (size_t i = 0; i < n; i++) {
            begin += ids[i] == 128801;
            hole += ids[i] == 128800;
            end += ids[i] == 128802;
        }
        T(n > 4 && ids[0] == 0 && ids[1] == 128801 && begin == 1 && hole == 1 && end == 1 && ids[n - 1] == 128802);
    }
    dsv4_free(prompt);
}

/* ---- output parser ---- */
typedef struct {
    char reasoning[4096], content[4096], error[4096], names[8][64], args[8][1024], order[256];
    int ends, n_calls;
} parsed;

static void cat(char *dst, size_t cap, const char *s, size_t n)
{
    size_t l = strlen(dst);
    if (l + n + 1 > cap) n = cap - l - 1;
    memcpy(dst + l, s, n);
    dst[l + n] = 0;
}

static void drain(dsv4_chat_parser *p, parsed *r)
{
    for (;;) {
        dsv4_chat_event_type t;
        int32_t idx;
        const char *d;
        size_t n;
        if (dsv4_chat_parser_next(p, &t, &idx, &d, &n) != DSV4_OK || t == DSV4_CHAT_EVENT_NONE) return;
        char tc = (char)('0' + t);
        size_t ol = strlen(r->order);
        if ((ol == 0 || r->order[ol - 1] != tc || t == DSV4_CHAT_EVENT_TOOL_CALL_START) && ol + 2 < sizeof r->order) {
            r->order[ol] = tc;
            r->order[ol + 1] = 0;
        }
        switch (t) {
        case DSV4_CHAT_EVENT_REASONING: cat(r->reasoning, sizeof r->reasoning, d, n); break;
        case DSV4_CHAT_EVENT_CONTENT: cat(r->content, sizeof r->content, d, n); break;
        case DSV4_CHAT_EVENT_ERROR: cat(r->error, sizeof r->error, d, n); break;
        case DSV4_CHAT_EVENT_TOOL_CALL_START:
            if (idx >= 0 && idx < 8) { cat(r->names[idx], 64, d, n); if (idx + 1 > r->n_calls) r->n_calls = idx + 1; }
            break;
        case DSV4_CHAT_EVENT_TOOL_CALL_ARGS: if (idx >= 0 && idx < 8) cat(r->args[idx], 1024, d, n); break;
        case DSV4_CHAT_EVENT_END: r->ends++; break;
        default: break;
        }
    }
}

static void parse_split(const char *text, int thinking, size_t split, size_t chunk, parsed *r)
{
    memset(r, 0, sizeof *r);
    dsv4_chat_parser *p = NULL;
    if (dsv4_chat_parser_create(thinking, &p) != DSV4_OK) return;
    size_t n = strlen(text);
    if (chunk) {
        for (size_t i = 0; i < n; i += chunk) {
            dsv4_chat_parser_feed(p, text + i, i + chunk <= n ? chunk : n - i);
            drain(p, r);
        }
    } else {
        dsv4_chat_parser_feed(p, text, split);
        drain(p, r);
        dsv4_chat_parser_feed(p, text + split, n - split);
        drain(p, r);
    }
    dsv4_chat_parser_finish(p);
    drain(p, r);
    dsv4_chat_parser_free(p);
}

#define DS "\xef\xbd\x9c" "DSML\xef\xbd\x9c"
#define EOSS "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"

static void parser(void)
{
    const char *gen =
        "Need \xe5\xa4\xa9\xe6\xb0\x94 tool.</think>Checking.\n\n<" DS "tool_calls>\n"
        "<" DS "invoke name=\"get_weather\">\n"
        "<" DS "parameter name=\"city\" string=\"true\">Paris \"north\"\n</" DS "parameter>\n"
        "<" DS "parameter name=\"days\" string=\"false\">2</" DS "parameter>\n"
        "<" DS "parameter name=\"opts\" string=\"false\">{\"a\": [1, 2.5]}</" DS "parameter>\n"
        "</" DS "invoke>\n"
        "<" DS "invoke name=\"now\">\n\n"
        "</" DS "invoke>\n"
        "</" DS "tool_calls>" EOSS;
    parsed whole, part;
    parse_split(gen, 1, strlen(gen), 0, &whole);
    CHECK(strcmp(whole.reasoning, "Need \xe5\xa4\xa9\xe6\xb0\x94 tool.") == 0, "reasoning '%s'", whole.reasoning);
    CHECK(strcmp(whole.content, "Checking.") == 0, "content '%s'", whole.content);
    T(whole.n_calls == 2 && strcmp(whole.names[0], "get_weather") == 0 && strcmp(whole.names[1], "now") == 0);
    json_t *a0 = json_loads(whole.args[0], 0, NULL), *a1 = json_loads(whole.args[1], 0, NULL);
    CHECK(a0 && strcmp(json_string_value(json_object_get(a0, "city")), "Paris \"north\"\n") == 0 &&
          json_integer_value(json_object_get(a0, "days")) == 2 &&
          json_real_value(json_array_get(json_object_get(json_object_get(a0, "opts"), "a"), 1)) == 2.5,
          "arguments 0: %s", whole.args[0]);
    CHECK(a1 && json_object_size(a1) == 0, "arguments 1: %s", whole.args[1]);
    json_decref(a0);
    json_decref(a1);
    CHECK(whole.ends == 1 && whole.error[0] == 0, "ends %d order %s error [%s]", whole.ends, whole.order, whole.error);
    /* every split point and byte-by-byte feeding give the same result */
    int diff = 0;
    for (size_t k = 0; k <= strlen(gen); k++) {
        parse_split(gen, 1, k, 0, &part);
        if (memcmp(&part, &whole, sizeof part) != 0) diff++;
    }
    parse_split(gen, 1, 0, 1, &part);
    diff += memcmp(&part, &whole, sizeof part) != 0;
    parse_split(gen, 1, 0, 3, &part);
    diff += memcmp(&part, &whole, sizeof part) != 0;
    CHECK(diff == 0, "parser: %d of %zu splits differ from feeding the whole text", diff, strlen(gen) + 3);
    /* the bare form of an empty invoke (no body line) reads the same */
    {
        char bare[2048];
        const char *cut = strstr(gen, "now\">\n\n");
        size_t at = (size_t)(cut - gen) + 6;
        snprintf(bare, sizeof bare, "%.*s%s", (int)at, gen, gen + at + 1);
        parse_split(bare, 1, strlen(bare), 0, &part);
        CHECK(memcmp(&part, &whole, sizeof part) == 0, "bare empty invoke: calls %d args1 [%s] error [%s]", part.n_calls,
              part.args[1], part.error);
    }

    /* round trip: rendering the parsed turn reproduces the generated text */
    json_t *calls = json_array();
    for (int i = 0; i < whole.n_calls; i++) {
        char id[16];
        snprintf(id, sizeof id, "call_%d", i);
        json_array_append_new(calls, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function", "function",
                                               "name", whole.names[i], "arguments", whole.args[i]));
    }
    json_t *req = json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:s, s:s, s:o}]}", "thinking_mode", "thinking", "messages",
                            "role", "user", "content", "q", "role", "assistant", "reasoning_content", whole.reasoning,
                            "content", whole.content, "tool_calls", calls);
    char *rs = json_dumps(req, JSON_COMPACT), *prompt = NULL;
    T(dsv4_chat_render(rs, strlen(rs), &prompt, NULL) == DSV4_OK);
    const char *opener = "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c><think>";
    const char *tail = prompt ? strstr(prompt, opener) : NULL;
    CHECK(tail && strcmp(tail + strlen(opener), gen) == 0, "round trip:\n got  %s\n want %s", tail ? tail : "(none)", gen);
    dsv4_free(prompt);
    free(rs);
    json_decref(req);

    /* chat mode; stop at the length limit (finish without EOS) */
    parse_split("Hi there" EOSS, 0, 3, 0, &part);
    T(strcmp(part.content, "Hi there") == 0 && part.ends == 1 && strcmp(part.order, "27") == 0);
    parse_split("cut </thi", 1, 4, 0, &part);
    T(strcmp(part.reasoning, "cut </thi") == 0 && part.ends == 1);
    /* malformed DSML: an error event with the raw text, nothing lost */
    const char *badgen = "r</think>c\n\n<" DS "tool_calls>\n<" DS "invokx name=\"f\">\n" EOSS;
    for (size_t k = 0; k <= strlen(badgen); k += 5) {
        parse_split(badgen, 1, k, 0, &part);
        char joined[4096] = "";
        joined[0] = 0;
        cat(joined, sizeof joined, part.reasoning, strlen(part.reasoning));
        cat(joined, sizeof joined, "</think>", 8);
        cat(joined, sizeof joined, part.content, strlen(part.content));
        cat(joined, sizeof joined, part.error, strlen(part.error));
        if (strcmp(joined, badgen) != 0 || part.error[0] == 0 || part.ends != 1) { diff++; break; }
    }
    CHECK(diff == 0, "malformed DSML keeps the raw text in an error event");
    parse_split("a</think>b" EOSS "trailing", 1, 4, 0, &part);
    T(strcmp(part.content, "b") == 0 && strcmp(part.error, "trailing") == 0);
    const char *badparam = "x</think>\n\n<" DS "tool_calls>\n<" DS "invoke name=\"f\">\n<" DS "parameter name=\"k\" string=\"maybe\">1</" DS "parameter>\n";
    parse_split(badparam, 1, 7, 0, &part);
    T(part.error[0] != 0 && strstr(badparam, part.error) != NULL);
    /* bad arguments */
    dsv4_chat_parser *p = (dsv4_chat_parser *)1;
    T(dsv4_chat_parser_create(2, &p) == DSV4_ERR_INVALID_ARGUMENT && p == NULL);
    T(dsv4_chat_parser_create(1, NULL) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_chat_parser_feed(NULL, "a", 1) == DSV4_ERR_INVALID_ARGUMENT);
    dsv4_chat_event_type et;
    T(dsv4_chat_parser_next(NULL, &et, NULL, NULL, NULL) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_chat_parser_finish(NULL) == DSV4_ERR_INVALID_ARGUMENT);
    dsv4_chat_parser_free(NULL);
    T(dsv4_chat_parser_create(0, &p) == DSV4_OK);
    T(dsv4_chat_parser_feed(p, NULL, 1) == DSV4_ERR_INVALID_ARGUMENT);
    dsv4_chat_parser_finish(p);
    T(dsv4_chat_parser_feed(p, "a", 1) == DSV4_ERR_INVALID_ARGUMENT);
    dsv4_chat_parser_free(p);
}

/* ---- the official encoder's rules beyond ../shared's cases ---- */
#define BOSS "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define USR "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define ASST "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"
#define CALLS_OPEN "\n\n<" DS "tool_calls>\n"
#define CALLS_CLOSE "\n</" DS "tool_calls>"
#define INVOKE(name) "<" DS "invoke name=\"" name "\">\n"
#define INVOKE_END "\n</" DS "invoke>"
#define PARAM(name, str, v) "<" DS "parameter name=\"" name "\" string=\"" str "\">" v "</" DS "parameter>"

/* request text → want, through dsv4_chat_render and (when expressible) the builder */
static void case_json(const char *name, const char *req_text, const char *want)
{
    json_error_t je;
    json_t *req = json_loads(req_text, JSON_PRESERVE_ORDER, &je);
    CHECK(req != NULL, "%s: test request parses: %s", name, je.text);
    if (req) compare(name, req, want, NULL);
    json_decref(req);
}

/* request text → want through dsv4_chat_render only */
static void case_render(const char *name, const char *req, const char *want)
{
    char *prompt = NULL, *msg = NULL;
    dsv4_status st = dsv4_chat_render(req, strlen(req), &prompt, &msg);
    int same = st == DSV4_OK && prompt && strcmp(prompt, want) == 0;
    CHECK(same, "%s: status %d %s", name, st, msg ? msg : "");
    if (!same && prompt) {
        size_t i = 0;
        while (prompt[i] && prompt[i] == want[i]) i++;
        printf("  %s differs at byte %zu:\n  got:  %.160s\n  want: %.160s\n", name, i, prompt + i, want + i);
    }
    dsv4_free(prompt);
    dsv4_free(msg);
}

/* an assistant turn with one tool call of these arguments (a JSON string
 * literal's contents), rendered in chat mode */
static void case_args(const char *name, const char *args_literal, const char *want_params)
{
    char req[4096], want[4096];
    snprintf(req, sizeof req,
             "{\"thinking_mode\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},"
             "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
             "\"function\":{\"name\":\"f\",\"arguments\":\"%s\"}}]}]}", args_literal);
    snprintf(want, sizeof want, BOSS USR "q" ASST "</think>" CALLS_OPEN INVOKE("f") "%s" INVOKE_END CALLS_CLOSE EOSS,
             want_params);
    case_json(name, req, want);
}

static void official_rules(void)
{
    /* 1. consecutive user-side messages are one user turn, joined by "\n\n" */
    case_json("two users",
              "{\"thinking_mode\":\"chat\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
              "{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":\"b\"}]}",
              BOSS "S" USR "a\n\nb" ASST "</think>");
    case_json("three users, thinking, two turns",
              "{\"thinking_mode\":\"thinking\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
              "{\"role\":\"user\",\"content\":\"b\"},{\"role\":\"assistant\",\"reasoning_content\":\"r\",\"content\":\"x\"},"
              "{\"role\":\"user\",\"content\":\"c\"},{\"role\":\"user\",\"content\":\"\"},{\"role\":\"user\",\"content\":\"d\"}]}",
              BOSS USR "a\n\nb" ASST "</think>x" EOSS USR "c\n\n\n\nd" ASST "<think>");
    case_json("tool results then two users",
              "{\"thinking_mode\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},"
              "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"a\",\"type\":\"function\","
              "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"k\\\": 1}\"}}]},"
              "{\"role\":\"tool\",\"tool_call_id\":\"a\",\"content\":\"R\"},"
              "{\"role\":\"user\",\"content\":\"u1\"},{\"role\":\"user\",\"content\":\"u2\"}]}",
              BOSS USR "q" ASST "</think>" CALLS_OPEN INVOKE("f") PARAM("k", "false", "1") INVOKE_END CALLS_CLOSE EOSS
              USR "<tool_result>R</tool_result>\n\nu1\n\nu2" ASST "</think>");

    /* 2. an invoke without parameters has an empty body line */
    case_args("empty arguments", "{}", "");
    case_args("empty arguments with blanks", " { \\n } ", "");
    case_json("empty and non-empty invokes",
              "{\"thinking_mode\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},"
              "{\"role\":\"assistant\",\"content\":\"ok\",\"tool_calls\":["
              "{\"id\":\"a\",\"type\":\"function\",\"function\":{\"name\":\"now\",\"arguments\":\"{}\"}},"
              "{\"id\":\"b\",\"type\":\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"{\\\"x\\\": \\\"y\\\"}\"}}]}]}",
              BOSS USR "q" ASST "</think>ok" CALLS_OPEN INVOKE("now") INVOKE_END "\n" INVOKE("get")
              PARAM("x", "true", "y") INVOKE_END CALLS_CLOSE EOSS);

    /* 3. valid JSON arguments are always rendered parameter by parameter */
    case_args("nested and literal values",
              "{\\\"obj\\\": {\\\"a\\\": [1, {\\\"b\\\": null}], \\\"c\\\": \\\"x\\\\ny\\\"}, \\\"t\\\": true, "
              "\\\"f\\\": false, \\\"n\\\": null, \\\"e\\\": [], \\\"o\\\": {}}",
              PARAM("obj", "false", "{\"a\": [1, {\"b\": null}], \"c\": \"x\\ny\"}") "\n"
              PARAM("t", "false", "true") "\n" PARAM("f", "false", "false") "\n" PARAM("n", "false", "null") "\n"
              PARAM("e", "false", "[]") "\n" PARAM("o", "false", "{}"));
    case_args("big integers and -0",
              "{\\\"big\\\": 123456789012345678901234567890, \\\"neg\\\": -98765432109876543210, "
              "\\\"i64\\\": 9223372036854775808, \\\"z\\\": -0, \\\"fz\\\": -0.0, \\\"in\\\": [0, -0, 18446744073709551616]}",
              PARAM("big", "false", "123456789012345678901234567890") "\n"
              PARAM("neg", "false", "-98765432109876543210") "\n" PARAM("i64", "false", "9223372036854775808") "\n"
              PARAM("z", "false", "0") "\n" PARAM("fz", "false", "-0.0") "\n"
              PARAM("in", "false", "[0, 0, 18446744073709551616]"));
    case_args("floats as Python writes them",
              "{\\\"a\\\": 1000.0, \\\"b\\\": 0.00000025, \\\"c\\\": 1E16, \\\"d\\\": [1e-5, 123.456e2, 2.50, 1e+2], "
              "\\\"e\\\": 1e400, \\\"f\\\": -1e400, \\\"g\\\": NaN, \\\"h\\\": -Infinity}",
              PARAM("a", "false", "1000.0") "\n" PARAM("b", "false", "2.5e-07") "\n" PARAM("c", "false", "1e+16") "\n"
              PARAM("d", "false", "[1e-05, 12345.6, 2.5, 100.0]") "\n" PARAM("e", "false", "Infinity") "\n"
              PARAM("f", "false", "-Infinity") "\n" PARAM("g", "false", "NaN") "\n" PARAM("h", "false", "-Infinity"));
    case_args("escapes and surrogate pairs",
              "{\\\"s\\\": \\\"caf\\\\u00e9 \\\\ud83d\\\\ude00 \\\\\\\"q\\\\\\\" \\\\/ \\\\t\\\", "
              "\\\"l\\\": [\\\"\\\\u00e9\\\\n\\\\u0001\\\\u001f\\\\u007f\\\", \\\"\\\\uD83D\\\\uDE00\\\"], "
              "\\\"k\\\\u00e9\\\": \\\"\\\\u0041\\\"}",
              PARAM("s", "true", "caf\xc3\xa9 \xf0\x9f\x98\x80 \"q\" / \t") "\n"
              PARAM("l", "false", "[\"\xc3\xa9\\n\\u0001\\u001f\x7f\", \"\xf0\x9f\x98\x80\"]") "\n"
              PARAM("k\xc3\xa9", "true", "A"));
    case_args("a repeated key keeps its place and takes the last value",
              "{\\\"a\\\": 1, \\\"b\\\": {\\\"x\\\": 1, \\\"y\\\": 2, \\\"x\\\": [3]}, \\\"a\\\": \\\"last\\\"}",
              PARAM("a", "true", "last") "\n" PARAM("b", "false", "{\"x\": [3], \"y\": 2}"));
    /* float repr: shortest digits that read back, exponent form below 1e-4
     * and from 1e16 (expected values are Python's repr of each literal) */
    static const char *const floats[][2] = {
        { "0.1", "0.1" }, { "1e22", "1e+22" }, { "5e-324", "5e-324" },
        { "1.7976931348623157e308", "1.7976931348623157e+308" }, { "9007199254740993.0", "9007199254740992.0" },
        { "1e15", "1000000000000000.0" }, { "0.0001", "0.0001" }, { "100e-2", "1.0" },
        { "123456789012345678.0", "1.2345678901234568e+17" }, { "0.30000000000000004", "0.30000000000000004" },
        { "1e-7", "1e-07" }, { "1.5e300", "1.5e+300" }, { "4.9406564584124654e-324", "5e-324" },
        { "2.2250738585072014e-308", "2.2250738585072014e-308" },
        { "4.0903797403389369e+270", "4.090379740338937e+270" }, { "3.3741267476088731e-29", "3.374126747608873e-29" },
        { "-5.3499206984238764e+128", "-5.349920698423876e+128" }, { "2.0677287901783428e-34", "2.067728790178343e-34" },
        { "-4.1632464946701499e-103", "-4.16324649467015e-103" }, { "-9.7197343369038048e+248", "-9.719734336903805e+248" },
        { "2.5567919043181389e-281", "2.556791904318139e-281" }, { "5.8464794981852184e+57", "5.8464794981852184e+57" },
        /* powers of two whose nearest 16-digit decimal misses but the next one up reads back */
        { "7.12023634722304443e-307", "7.120236347223045e-307" }, { "-7.2911220195563975e-304", "-7.291122019556398e-304" },
        { "8.20907360259675250e-289", "8.209073602596753e-289" }, { "5.85819067927980842e-244", "5.858190679279809e-244" },
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) {
        char req[1024], want[1024], *prompt = NULL;
        snprintf(req, sizeof req,
                 "{\"thinking_mode\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
                 "\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\": %s}\"}}]}]}", floats[i][0]);
        snprintf(want, sizeof want, PARAM("x", "false", "%s"), floats[i][1]);
        if (dsv4_chat_render(req, strlen(req), &prompt, NULL) != DSV4_OK || !strstr(prompt, want)) {
            printf("  float %s: want %s in %s\n", floats[i][0], floats[i][1], prompt ? strstr(prompt, "x\"") : "(none)");
            bad++;
        }
        dsv4_free(prompt);
    }
    CHECK(bad == 0, "Python float repr: %d of %zu differ", bad, sizeof floats / sizeof floats[0]);

    /* what is not a JSON object stays one "arguments" parameter, raw */
    static const char *const raw[] = { "[1, 2]", "5", "{\\\"a\\\": 1,}", "{\\\"a\\\": 01}", "{\\\"a\\\": 1.}",
                                       "{\\\"a\\\": \\\"\\\\ud800\\\"}", "{\\\"a\\\": \\\"\\\\udc00\\\\ud800\\\"}",
                                       "{\\\"a\\\": +1}", "{\\\"a\\\": 1} x", "{\\\"a\\\": \\\"\\t\\\"}", "" };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        char req[1024], want[1024], lit[256];
        snprintf(req, sizeof req,
                 "{\"thinking_mode\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
                 "\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"%s\"}}]}]}", raw[i]);
        /* the raw value: the literal's contents unescaped */
        char lj[300];
        snprintf(lj, sizeof lj, "\"%s\"", raw[i]);
        json_t *v = json_loads(lj, JSON_DECODE_ANY, NULL);
        snprintf(lit, sizeof lit, "%s", v ? json_string_value(v) : "?");
        json_decref(v);
        snprintf(want, sizeof want, BOSS USR "q" ASST "</think>" CALLS_OPEN INVOKE("f") PARAM("arguments", "true", "%s")
                 INVOKE_END CALLS_CLOSE EOSS, lit);
        char name[64];
        snprintf(name, sizeof name, "raw arguments %zu", i);
        case_render(name, req, want);
    }
    /* a string parameter holding U+0000 cannot be written into a prompt */
    expect_err("{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"tool_calls\":[{\"function\":"
               "{\"name\":\"f\",\"arguments\":\"{\\\"a\\\": \\\"x\\\\u0000\\\"}\"}}]}]}",
               DSV4_ERR_INVALID_ARGUMENT, "U+0000");
    case_args("U+0000 inside a JSON value is escaped", "{\\\"a\\\": [\\\"x\\\\u0000\\\"]}",
              PARAM("a", "false", "[\"x\\u0000\"]"));

    /* the builder reads arguments the same way */
    dsv4_chat *c = NULL;
    T(dsv4_chat_create(&c) == DSV4_OK);
    T(dsv4_chat_set_i64(c, DSV4_CHAT_THINKING, 0) == DSV4_OK);
    T(dsv4_chat_add_message(c, "user", "q", NULL) == DSV4_OK);
    T(dsv4_chat_add_message(c, "user", "r", NULL) == DSV4_OK);
    T(dsv4_chat_add_message(c, "assistant", NULL, NULL) == DSV4_OK);
    T(dsv4_chat_add_tool_call(c, "a", "f", "{\"n\": 123456789012345678901234567890, \"x\": NaN}") == DSV4_OK);
    T(dsv4_chat_add_tool_call(c, "b", "g", "{}") == DSV4_OK);
    T(dsv4_chat_add_tool_call(c, "c", "h", "{\"a\": \"\\ud800\"}") == DSV4_ERR_INVALID_ARGUMENT);
    char *p = NULL;
    T(dsv4_chat_render_text(c, &p) == DSV4_OK);
    const char *want = BOSS USR "q\n\nr" ASST "</think>" CALLS_OPEN INVOKE("f")
                       PARAM("n", "false", "123456789012345678901234567890") "\n" PARAM("x", "false", "NaN") INVOKE_END "\n"
                       INVOKE("g") INVOKE_END CALLS_CLOSE EOSS;
    CHECK(p && strcmp(p, want) == 0, "builder: %s", p ? p : "(none)");
    dsv4_free(p);
    dsv4_chat_free(c);
}

/* reasoning_effort, the one rule (core/effort.h): none → non-thinking;
 * minimal, low, medium, high → the plain thinking prompt; xhigh, max → the
 * max-effort paragraph (thinking mode only); anything else is an error */
static char *render_effort(const char *mode, const char *effort_json)
{
    char req[512], *prompt = NULL;
    if (effort_json)
        snprintf(req, sizeof req, "{\"thinking_mode\":\"%s\",\"reasoning_effort\":%s,\"messages\":[{\"role\":\"user\","
                 "\"content\":\"Hi\"}]}", mode, effort_json);
    else
        snprintf(req, sizeof req, "{\"thinking_mode\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}", mode);
    if (dsv4_chat_render(req, strlen(req), &prompt, NULL) != DSV4_OK) return NULL;
    return prompt;
}

static void effort_rule(void)
{
    char *plain = render_effort("thinking", NULL), *chat = render_effort("chat", NULL),
         *max = render_effort("thinking", "\"max\"");
    T(plain && chat && max && strcmp(plain, BOSS USR "Hi" ASST "<think>") == 0 &&
      strcmp(chat, BOSS USR "Hi" ASST "</think>") == 0 && strncmp(max, BOSS "Reasoning Effort: Absolute maximum", 40) == 0);
    static const char *const as_plain[] = { "\"minimal\"", "\"low\"", "\"medium\"", "\"high\"", "null" };
    for (size_t i = 0; i < sizeof as_plain / sizeof as_plain[0]; i++) {
        char *p = render_effort("thinking", as_plain[i]);
        CHECK(p && plain && strcmp(p, plain) == 0, "reasoning_effort %s renders the plain thinking prompt", as_plain[i]);
        dsv4_free(p);
    }
    char *p = render_effort("thinking", "\"xhigh\"");
    CHECK(p && max && strcmp(p, max) == 0, "reasoning_effort xhigh = max");
    dsv4_free(p);
    p = render_effort("thinking", "\"none\"");
    CHECK(p && chat && strcmp(p, chat) == 0, "reasoning_effort none = non-thinking");
    dsv4_free(p);
    p = render_effort("chat", "\"xhigh\"");
    CHECK(p && chat && strcmp(p, chat) == 0, "max effort changes nothing in chat mode");
    dsv4_free(p);
    expect_err("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"reasoning_effort\":5}", DSV4_ERR_INVALID_ARGUMENT,
               "reasoning_effort must be a string");
    expect_err("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"reasoning_effort\":\"ultra\"}", DSV4_ERR_INVALID_ARGUMENT,
               "reasoning_effort \"ultra\" is not one of");
    /* the builder's values map the same way */
    static const int32_t values[] = { DSV4_EFFORT_DEFAULT, DSV4_EFFORT_NONE, DSV4_EFFORT_LOW, DSV4_EFFORT_MEDIUM,
                                      DSV4_EFFORT_HIGH, DSV4_EFFORT_MAX };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        dsv4_chat *c = NULL;
        char *q = NULL;
        int ok = dsv4_chat_create(&c) == DSV4_OK && dsv4_chat_set_i64(c, DSV4_CHAT_REASONING_EFFORT, values[i]) == DSV4_OK &&
                 dsv4_chat_add_message(c, "user", "Hi", NULL) == DSV4_OK && dsv4_chat_render_text(c, &q) == DSV4_OK;
        const char *want = values[i] == DSV4_EFFORT_NONE ? chat : values[i] == DSV4_EFFORT_MAX ? max : plain;
        CHECK(ok && q && want && strcmp(q, want) == 0, "builder effort %d", (int)values[i]);
        dsv4_free(q);
        dsv4_chat_free(c);
    }
    dsv4_free(plain);
    dsv4_free(chat);
    dsv4_free(max);
}

/* deep nesting, and every allocation failing in turn: a clear status, no
 * crash, no leak (the sanitizer build checks the last) */
static void robustness(void)
{
    static char args[8192], req[9000], want[9000];
    for (int depth = 400; depth <= 600; depth += 200) {
        size_t n = 0;
        n += (size_t)snprintf(args + n, sizeof args - n, "{\\\"a\\\": ");
        for (int i = 0; i < depth; i++) args[n++] = '[';
        for (int i = 0; i < depth; i++) args[n++] = ']';
        n += (size_t)snprintf(args + n, sizeof args - n, "}");
        args[n] = 0;
        snprintf(req, sizeof req,
                 "{\"thinking_mode\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
                 "\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"%s\"}}]}]}", args);
        char *prompt = NULL;
        T(dsv4_chat_render(req, strlen(req), &prompt, NULL) == DSV4_OK && prompt);
        /* up to 512 levels: parameters; deeper: the raw arguments */
        snprintf(want, sizeof want, depth <= 512 ? "<" DS "parameter name=\"a\" string=\"false\">[[[" :
                                                   "<" DS "parameter name=\"arguments\" string=\"true\">{\"a\": [[[");
        CHECK(prompt && strstr(prompt, want), "nesting %d", depth);
        dsv4_free(prompt);
    }
    const char *big =
        "{\"thinking_mode\":\"thinking\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"x\":[1.5,1e100]}}],"
        "\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\","
        "\"content\":\"b\"},{\"role\":\"assistant\",\"reasoning_content\":\"r\",\"content\":\"c\",\"tool_calls\":["
        "{\"id\":\"1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\": [1, 2.5e-7, "
        "123456789012345678901234567890], \\\"b\\\": \\\"s\\\", \\\"a\\\": {\\\"k\\\": null}, \\\"c\\\": 3}\"}},"
        "{\"id\":\"2\",\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"2\",\"content\":\"R2\"},{\"role\":\"tool\",\"tool_call_id\":\"1\",\"content\":\"R1\"},"
        "{\"role\":\"user\",\"content\":\"d\"}]}";
    char *full = NULL;
    T(dsv4_chat_render(big, strlen(big), &full, NULL) == DSV4_OK && full);
    int fails = 0, oom = 0;
    for (long k = 1; k < 400; k++) {
        char *prompt = (char *)1, *msg = NULL;
        dsv4__alloc_fail_after(k);
        dsv4_status st = dsv4_chat_render(big, strlen(big), &prompt, &msg);
        dsv4__alloc_fail_after(0);
        if (st == DSV4_OK) {
            fails += !prompt || !full || strcmp(prompt, full) != 0;
            dsv4_free(prompt);
            dsv4_free(msg);
            break;
        }
        oom++;
        fails += st != DSV4_ERR_OUT_OF_MEMORY || prompt != NULL || !msg || !strstr(msg, "out of memory");
        dsv4_free(msg);
    }
    CHECK(fails == 0 && oom > 10, "allocation failures: %d bad of %d failed renders", fails, oom);
    dsv4_free(full);
}

/* ---- the parser's events are a function of the bytes, not of how they are split ---- */
typedef struct { char *s; size_t n, cap; int last_type, last_index; } evlog;

static void evlog_add(evlog *l, const char *d, size_t n)
{
    if (l->n + n + 1 > l->cap) {
        while (l->n + n + 1 > l->cap) l->cap = l->cap ? 2 * l->cap : 256;
        l->s = realloc(l->s, l->cap);
        if (!l->s) abort();
    }
    memcpy(l->s + l->n, d, n);
    l->n += n;
    l->s[l->n] = 0;
}

/* every event as "<type/index>data"; consecutive text pieces of one kind merged */
static int evlog_drain(dsv4_chat_parser *p, evlog *l)
{
    for (;;) {
        dsv4_chat_event_type t;
        int32_t idx;
        const char *d;
        size_t n;
        if (dsv4_chat_parser_next(p, &t, &idx, &d, &n) != DSV4_OK) return -1;
        if (t == DSV4_CHAT_EVENT_NONE) return 0;
        int text = t == DSV4_CHAT_EVENT_REASONING || t == DSV4_CHAT_EVENT_CONTENT || t == DSV4_CHAT_EVENT_ERROR ||
                   t == DSV4_CHAT_EVENT_TOOL_CALL_ARGS;
        if (!text || (int)t != l->last_type || idx != l->last_index) {
            char h[32];
            int hn = snprintf(h, sizeof h, "<%d/%d>", (int)t, (int)idx);
            evlog_add(l, h, (size_t)hn);
        }
        evlog_add(l, d, n);
        l->last_type = (int)t;
        l->last_index = idx;
    }
}

/* events of `text` fed in the pieces cut at cuts[0..nc) (ascending) */
static char *events_cut(const char *text, size_t n, int thinking, const size_t *cuts, int nc)
{
    evlog l = { NULL, 0, 0, -1, -2 };
    evlog_add(&l, "", 0);
    dsv4_chat_parser *p = NULL;
    if (dsv4_chat_parser_create(thinking, &p) != DSV4_OK) { free(l.s); return NULL; }
    size_t at = 0;
    int bad = 0;
    for (int i = 0; i <= nc && !bad; i++) {
        size_t to = i < nc ? cuts[i] : n;
        bad |= dsv4_chat_parser_feed(p, text + at, to - at) != DSV4_OK;
        bad |= evlog_drain(p, &l) != 0;
        at = to;
    }
    bad |= dsv4_chat_parser_finish(p) != DSV4_OK || evlog_drain(p, &l) != 0;
    dsv4_chat_parser_free(p);
    if (bad) { free(l.s); return NULL; }
    return l.s;
}

static uint64_t prop_rng = 0x9e3779b97f4a7c15u;
static size_t prop_rand(size_t n)
{
    prop_rng ^= prop_rng << 13;
    prop_rng ^= prop_rng >> 7;
    prop_rng ^= prop_rng << 17;
    return n ? (size_t)(prop_rng % n) : 0;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* whole feed vs every single split point, byte by byte and `multi` random multi-splits;
 * returns the number of feedings that differ */
static int split_property(const char *text, size_t n, int thinking, int multi)
{
    char *whole = events_cut(text, n, thinking, NULL, 0);
    if (!whole) return 1;
    int diff = 0;
    size_t *cuts = malloc((n + 1) * sizeof *cuts);
    for (size_t k = 0; k <= n; k++) {
        cuts[0] = k;
        char *e = events_cut(text, n, thinking, cuts, 1);
        if (!e || strcmp(e, whole) != 0) {
            if (!diff) printf("split at %zu of %zu differs:\n  whole: %s\n  split: %s\n", k, n, whole, e ? e : "(failed)");
            diff++;
        }
        free(e);
    }
    for (size_t k = 0; k < n; k++) cuts[k] = k;
    char *e = events_cut(text, n, thinking, cuts, (int)n);
    if (!e || strcmp(e, whole) != 0) diff++;
    free(e);
    for (int r = 0; r < multi; r++) {
        int nc = (int)prop_rand(n < 12 ? n + 1 : 12);
        for (int i = 0; i < nc; i++) cuts[i] = prop_rand(n + 1);
        qsort(cuts, (size_t)nc, sizeof *cuts, cmp_size);
        e = events_cut(text, n, thinking, cuts, nc);
        if (!e || strcmp(e, whole) != 0) diff++;
        free(e);
    }
    free(cuts);
    free(whole);
    return diff;
}

static void parser_splits(void)
{
    /* short inputs: nothing fed, an empty feed, finish at once (an offset applied to the
     * parser's NULL buffer before the first bytes: undefined behaviour, caught by clang's UBSan) */
    for (int th = 0; th <= 1; th++) {
        dsv4_chat_parser *p = NULL;
        dsv4_chat_event_type t = DSV4_CHAT_EVENT_END;
        T(dsv4_chat_parser_create(th, &p) == DSV4_OK);
        T(dsv4_chat_parser_next(p, &t, NULL, NULL, NULL) == DSV4_OK && t == DSV4_CHAT_EVENT_NONE);
        T(dsv4_chat_parser_feed(p, "", 0) == DSV4_OK);
        T(dsv4_chat_parser_next(p, &t, NULL, NULL, NULL) == DSV4_OK && t == DSV4_CHAT_EVENT_NONE);
        T(dsv4_chat_parser_finish(p) == DSV4_OK);
        T(dsv4_chat_parser_next(p, &t, NULL, NULL, NULL) == DSV4_OK && t == DSV4_CHAT_EVENT_END);
        T(dsv4_chat_parser_next(p, &t, NULL, NULL, NULL) == DSV4_OK && t == DSV4_CHAT_EVENT_NONE);
        dsv4_chat_parser_free(p);
    }

    /* a malformed block fed in pieces keeps its opening tag in the error event */
    const char *bad = "c\n\n<" DS "tool_calls>\n<" DS "invokx name=\"f\">\n";
    size_t cuts[64];
    for (size_t k = 0; k < strlen(bad); k++) cuts[k] = k;
    char *e = events_cut(bad, strlen(bad), 0, cuts, (int)strlen(bad));
    CHECK(e && strstr(e, "<6/-1>\n\n<" DS "tool_calls>\n<" DS "invokx") != NULL,
          "malformed block fed byte by byte: error event keeps the block from its opening tag: %s", e ? e : "(failed)");
    free(e);
    /* a tool name with a newline is refused whole and split alike */
    const char *nl = "\n\n<" DS "tool_calls>\n<" DS "invoke name=\"a\nb\">\n</" DS "invoke>\n</" DS "tool_calls>" EOSS;
    e = events_cut(nl, strlen(nl), 0, NULL, 0);
    CHECK(e && strncmp(e, "<6/-1>", 6) == 0 && !strstr(e, "<3/"), "tool name with a newline refused: %s",
          e ? e : "(failed)");
    free(e);

    static const char *cases[] = {
        "",
        "a",
        "<",
        "Hi there" EOSS,
        "Hi \xe5\xa4\xa9\xe6\xb0\x94 there",
        "cut </thi",
        "r</think>c" EOSS "trailing bytes",
        "x</think>\n\n<" DS "tool_calls>\n<" DS "invoke name=\"f\">\n<" DS "parameter name=\"k\" string=\"maybe\">1</" DS "parameter>\n",
        "r</think>c\n\n<" DS "tool_calls>\n<" DS "invokx name=\"f\">\n" EOSS,
        "\n\n<" DS "tool_calls>\n<" DS "invoke name=\"a\nb\">\n</" DS "invoke>\n</" DS "tool_calls>" EOSS,
        "\n\n<" DS "tool_calls>\n<" DS "invoke name=\"a\">b\">\n</" DS "invoke>\n</" DS "tool_calls>" EOSS,
        "\n\n<" DS "tool_calls>\n<" DS "invoke name=\"\">\n</" DS "invoke>\n</" DS "tool_calls>",
        "t</think>ok\n\n<" DS "tool_calls>\n<" DS "invoke name=\"f\">\n"
        "<" DS "parameter name=\"k\" string=\"true\">v \"q\"\n</" DS "parameter>\n"
        "<" DS "parameter name=\"n\" string=\"false\">[1, 2]</" DS "parameter>\n"
        "</" DS "invoke>\n<" DS "invoke name=\"g\">\n<" DS "parameter name=\"x\" string=\"true\">"
        "</" DS "parameter>\n</" DS "invoke>\n</" DS "tool_calls>" EOSS,
        "\n\n<" DS "tool_calls>\n<" DS "invoke name=\"f\">\n</" DS "invoke>\n<" DS "invoke name=\"g\">\n"
        "<" DS "parameter name=\"k\" string=\"true\">v</" DS "invoke>\n",
        "\n\n<" DS "tool_calls>\n<" DS "invoke name=\"f\">\n</" DS "invoke>\n</" DS "tool_calls>junk",
        "\n\n<" DS "tool_calls>\n<" DS "invoke name=\"f\">\n<" DS "parameter name=\"k\" string=\"true\">"
        "</" DS "parameter></" DS "parameter>\n</" DS "invoke>\n</" DS "tool_calls>",
        "\n\n<" DS "tool_calls>\n<" DS "invoke name=\"f\">\n<" DS "parameter name=\"k\nj\" string=\"true\">v"
        "</" DS "parameter>\n</" DS "invoke>\n</" DS "tool_calls>" EOSS "more" EOSS,
        "\n\n\n\n<" DS "tool_calls\n\n<" DS "tool_calls>\n\n<" DS "invoke name=\"",
        "a</think></think>\n\n<" DS "tool_calls>" EOSS "x",
        "\xe5\xa4",
        ("\xff\xfe<\xef\xbd\x9c" "end\xe2\x96\x81"), /* the start of the end marker */
    };
    int diff = 0, fed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int th = 0; th <= 1; th++) {
            int d = split_property(cases[i], strlen(cases[i]), th, 40);
            if (d) printf("case %zu (thinking %d): %d feedings differ\n", i, th, d);
            diff += d;
            fed += (int)strlen(cases[i]) + 42;
        }
    CHECK(diff == 0, "parser: %d of %d feedings differ from the whole feed", diff, fed);
    printf("parser: %d feedings of %zu inputs compared with the whole feed\n", fed, 2 * (sizeof cases / sizeof *cases));
}

int main(void)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/tokenizers/deepseek-v4/tokenizer.json", test_shared_dir());
    CHECK(dsv4_tokenizer_load(p, NULL, &tok, NULL) == DSV4_OK, "load %s", p);
    official();
    extra();
    bad();
    fim();
    official_rules();
    effort_rule();
    robustness();
    CHECK(builder_checked >= 16 && builder_same == builder_checked, "builder: %d of %d cases exact", builder_same,
          builder_checked);
    printf("builder: %d of %d cases exact (the others use encoder-internal fields)\n", builder_same, builder_checked);
    builder_misuse();
    parser();
    parser_splits();
    dsv4_tokenizer_free(tok);
    return test_summary();
}
