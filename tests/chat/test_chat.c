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

static void compare(const char *name, json_t *req, const char *want, json_t *want_ids)
{
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

int main(void)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/tokenizers/deepseek-v4/tokenizer.json", test_shared_dir());
    CHECK(dsv4_tokenizer_load(p, NULL, &tok, NULL) == DSV4_OK, "load %s", p);
    official();
    extra();
    bad();
    fim();
    dsv4_tokenizer_free(tok);
    return test_summary();
}
