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
        "<" DS "invoke name=\"now\">\n"
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
    CHECK(builder_checked >= 16 && builder_same == builder_checked, "builder: %d of %d cases exact", builder_same,
          builder_checked);
    printf("builder: %d of %d cases exact (the others use encoder-internal fields)\n", builder_same, builder_checked);
    builder_misuse();
    parser();
    parser_splits();
    dsv4_tokenizer_free(tok);
    return test_summary();
}
