/*
 * lib/chat/encode.c — the DeepSeek-V4 chat encoding (text-protocol §3):
 * a chat request (JSON) → the exact prompt string the official encoder
 * renders, including Python-json.dumps-exact serialisation of tool schemas
 * and DSML tool-call arguments.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/core.h"

#define BOS "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define EOS "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define USER "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define ASSISTANT "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"
#define REMINDER "<\xef\xbd\x9clatest_reminder\xef\xbd\x9c>"
#define DSML "\xef\xbd\x9c" "DSML\xef\xbd\x9c"

static const char effort_max[] =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the root "
    "cause, rigorously stress-testing your logic against all potential paths, edge cases, and adversarial "
    "scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, considered "
    "alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked.\n\n";

static const char tools_head[] =
    "## Tools\n\n"
    "You have access to a set of tools to help answer the user's question. You can invoke tools by writing a "
    "\"<" DSML "tool_calls>\" block like the following:\n\n"
    "<" DSML "tool_calls>\n"
    "<" DSML "invoke name=\"$TOOL_NAME\">\n"
    "<" DSML "parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</" DSML "parameter>\n"
    "...\n"
    "</" DSML "invoke>\n"
    "<" DSML "invoke name=\"$TOOL_NAME2\">\n"
    "...\n"
    "</" DSML "invoke>\n"
    "</" DSML "tool_calls>\n\n"
    "String parameters should be specified as is and set `string=\"true\"`. For all other types (numbers, "
    "booleans, arrays, objects), pass the value in JSON format and set `string=\"false\"`.\n\n"
    "If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning inside "
    "<think>...</think> BEFORE any tool calls or final response.\n\n"
    "Otherwise, output directly after </think> with tool calls or final response.\n\n"
    "### Available Tool Schemas\n\n";
static const char tools_tail[] =
    "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.\n";
static const char rf_head[] = "\n\n## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";

/* ---- growing string ---- */
typedef struct { char *p; size_t n, cap; int oom; } sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n + 1) c *= 2;
        char *q = dsv4__realloc(b->p, c);
        if (!q) { b->oom = 1; return; }
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_s(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* ---- Python json.dumps(obj, ensure_ascii=False) ---- */
static void py_str(sbuf *b, const char *s, size_t n)
{
    sb_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        switch (c) {
        case '"': sb_add(b, "\\\"", 2); break;
        case '\\': sb_add(b, "\\\\", 2); break;
        case '\n': sb_add(b, "\\n", 2); break;
        case '\r': sb_add(b, "\\r", 2); break;
        case '\t': sb_add(b, "\\t", 2); break;
        case '\b': sb_add(b, "\\b", 2); break;
        case '\f': sb_add(b, "\\f", 2); break;
        default:
            if (c < 0x20) { snprintf(e, sizeof e, "\\u%04x", c); sb_add(b, e, 6); }
            else sb_add(b, (const char *)&s[i], 1);
        }
    }
    sb_add(b, "\"", 1);
}

/* Python float repr: shortest round-trip digits; exponent form when the
 * decimal exponent is < -4 or >= 16; integral values keep ".0". */
static void py_float(sbuf *b, double v)
{
    char t[64];
    if (isnan(v)) { sb_s(b, "NaN"); return; }
    if (isinf(v)) { sb_s(b, v < 0 ? "-Infinity" : "Infinity"); return; }
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(t, sizeof t, "%.*e", p - 1, v);
        if (strtod(t, NULL) == v) break;
    }
    /* t = [-]d.ddde[+-]XX : split digits and exponent */
    char digits[32];
    int nd = 0, neg = t[0] == '-';
    const char *q = t + neg;
    for (; *q && *q != 'e'; q++) if (*q != '.') digits[nd++] = *q;
    digits[nd] = 0;
    int ex = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') digits[--nd] = 0;
    sbuf o = { 0 };
    if (neg) sb_add(&o, "-", 1);
    if (ex < -4 || ex >= 16) {
        sb_add(&o, digits, 1);
        if (nd > 1) { sb_add(&o, ".", 1); sb_add(&o, digits + 1, (size_t)nd - 1); }
        snprintf(t, sizeof t, "e%c%02d", ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
        sb_s(&o, t);
    } else if (ex < 0) {
        sb_s(&o, "0.");
        for (int i = 0; i < -ex - 1; i++) sb_add(&o, "0", 1);
        sb_add(&o, digits, (size_t)nd);
    } else {
        for (int i = 0; i <= ex; i++) sb_add(&o, i < nd ? &digits[i] : "0", 1);
        sb_add(&o, ".", 1);
        if (nd > ex + 1) sb_add(&o, digits + ex + 1, (size_t)(nd - ex - 1));
        else sb_add(&o, "0", 1);
    }
    if (o.p) sb_add(b, o.p, o.n);
    if (o.oom) b->oom = 1;
    dsv4__free(o.p);
}

static void py_dumps(sbuf *b, const json_t *j)
{
    char t[32];
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        int first = 1;
        sb_add(b, "{", 1);
        json_object_foreach((json_t *)j, k, v) {
            if (!first) sb_add(b, ", ", 2);
            first = 0;
            py_str(b, k, strlen(k));
            sb_add(b, ": ", 2);
            py_dumps(b, v);
        }
        sb_add(b, "}", 1);
        break;
    }
    case JSON_ARRAY:
        sb_add(b, "[", 1);
        for (size_t i = 0; i < json_array_size(j); i++) {
            if (i) sb_add(b, ", ", 2);
            py_dumps(b, json_array_get(j, i));
        }
        sb_add(b, "]", 1);
        break;
    case JSON_STRING: py_str(b, json_string_value(j), json_string_length(j)); break;
    case JSON_INTEGER: snprintf(t, sizeof t, "%lld", (long long)json_integer_value(j)); sb_s(b, t); break;
    case JSON_REAL: py_float(b, json_real_value(j)); break;
    case JSON_TRUE: sb_s(b, "true"); break;
    case JSON_FALSE: sb_s(b, "false"); break;
    case JSON_NULL: sb_s(b, "null"); break;
    }
}

/* ---- the encoder ---- */
typedef struct {
    const char *role;   /* system user assistant latest_reminder (tool results merged into user) */
    json_t *msg;        /* the source message (borrowed) */
    sbuf user;          /* merged user text (tool results + text) */
    int merged;
} turn;

static const char *jstr(json_t *m, const char *k)
{
    json_t *v = json_object_get(m, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static dsv4_status fail_at(dsv4__err *e, dsv4_status st, size_t i, const char *what)
{
    return dsv4__fail(e, st, "messages[%zu]: %s", i, what);
}

/* DSML of one assistant's tool_calls */
static dsv4_status render_calls(sbuf *b, json_t *calls, size_t mi, dsv4__err *e)
{
    sb_s(b, "\n\n<" DSML "tool_calls>\n");
    for (size_t c = 0; c < json_array_size(calls); c++) {
        json_t *call = json_array_get(calls, c), *fn = json_object_get(call, "function");
        const char *name = jstr(fn, "name");
        if (!name) return fail_at(e, DSV4_ERR_INVALID_ARGUMENT, mi, "tool_calls[].function.name missing");
        if (c) sb_s(b, "\n");
        sb_s(b, "<" DSML "invoke name=\"");
        sb_s(b, name);
        sb_s(b, "\">\n");
        json_t *args = json_object_get(fn, "arguments");
        json_t *parsed = json_is_string(args) ? json_loads(json_string_value(args), JSON_DECODE_ANY, NULL) : NULL;
        if (json_is_object(parsed)) {
            const char *k;
            json_t *v;
            json_object_foreach(parsed, k, v) {
                sb_s(b, "<" DSML "parameter name=\"");
                sb_s(b, k);
                if (json_is_string(v)) {
                    sb_s(b, "\" string=\"true\">");
                    sb_add(b, json_string_value(v), json_string_length(v));
                } else {
                    sb_s(b, "\" string=\"false\">");
                    py_dumps(b, v);
                }
                sb_s(b, "</" DSML "parameter>\n");
            }
        } else {
            /* not a JSON object: one parameter holding the raw value */
            sb_s(b, "<" DSML "parameter name=\"arguments\" string=\"true\">");
            if (json_is_string(args)) sb_add(b, json_string_value(args), json_string_length(args));
            else if (args) py_dumps(b, args);
            sb_s(b, "</" DSML "parameter>\n");
        }
        json_decref(parsed);
        sb_s(b, "</" DSML "invoke>");
    }
    sb_s(b, "\n</" DSML "tool_calls>");
    return DSV4_OK;
}

/* after a user/developer turn: the assistant opener when an answer follows */
static void transition(sbuf *out, const turn *t, size_t nt, size_t i, size_t last_user, int thinking, int drop,
                       const char *task)
{
    int last = i + 1 == nt;
    const char *next = last ? NULL : t[i + 1].role;
    if (last || strcmp(next, "assistant") == 0 || strcmp(next, "latest_reminder") == 0) {
        sb_s(out, ASSISTANT);
        sb_s(out, thinking && (i == last_user || !drop) ? "<think>" : "</think>");
        if (task) sb_s(out, "<\xef\xbd\x9c" "action\xef\xbd\x9c>");
    }
}

static dsv4_status render(json_t *req, sbuf *out, dsv4__err *e)
{
    json_t *pr = json_object_get(req, "prompt");
    if (pr && json_array_size(json_object_get(req, "messages")) == 0) {
        /* completion request: plain prefix, or fill-in-the-middle with a suffix */
        json_t *sf = json_object_get(req, "suffix");
        if (!json_is_string(pr) || (sf && !json_is_null(sf) && !json_is_string(sf)))
            return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "request: prompt and suffix must be strings");
        sb_s(out, BOS);
        if (json_is_string(sf)) {
            sb_s(out, "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>");
            sb_add(out, json_string_value(pr), json_string_length(pr));
            sb_s(out, "<\xef\xbd\x9c" "fim\xe2\x96\x81" "hole\xef\xbd\x9c>");
            sb_add(out, json_string_value(sf), json_string_length(sf));
            sb_s(out, "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>");
        } else {
            sb_add(out, json_string_value(pr), json_string_length(pr));
        }
        return out->oom ? dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory") : DSV4_OK;
    }
    json_t *msgs = json_object_get(req, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "request: \"messages\" must be a non-empty array");
    /* modes */
    int thinking = 1, effort_is_max = 0, drop = 1;
    json_t *th = json_object_get(req, "thinking");
    const char *tm = jstr(req, "thinking_mode");
    if (th) {
        const char *t = jstr(th, "type");
        if (!t || (strcmp(t, "enabled") && strcmp(t, "disabled")))
            return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "request: thinking.type must be \"enabled\" or \"disabled\"");
        thinking = strcmp(t, "enabled") == 0;
    } else if (tm) {
        if (strcmp(tm, "chat") && strcmp(tm, "thinking"))
            return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "request: thinking_mode must be \"chat\" or \"thinking\"");
        thinking = strcmp(tm, "thinking") == 0;
    }
    json_t *re = json_object_get(req, "reasoning_effort");
    if (re && !json_is_null(re)) {
        const char *r = json_string_value(re);
        if (!r) return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "request: reasoning_effort must be a string");
        if (strcmp(r, "none") == 0) thinking = 0;
        else if (strcmp(r, "max") == 0 || strcmp(r, "xhigh") == 0) effort_is_max = 1;
        else if (strcmp(r, "low") && strcmp(r, "medium") && strcmp(r, "high") && strcmp(r, "minimal"))
            return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT,
                              "request: reasoning_effort \"%s\" is not one of none, low, medium, high, max", r);
    }
    json_t *dt = json_object_get(req, "drop_thinking");
    if (dt) {
        if (!json_is_boolean(dt)) return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "request: drop_thinking must be a boolean");
        drop = json_is_true(dt);
    }
    json_t *tools = json_object_get(req, "tools");
    if (tools && !json_is_null(tools) && !json_is_array(tools))
        return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "request: tools must be an array");
    if (json_array_size(tools) == 0) tools = NULL;
    size_t n = json_array_size(msgs);
    int any_tools = tools != NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        if (!json_is_object(m)) return fail_at(e, DSV4_ERR_INVALID_ARGUMENT, i, "not an object");
        if (json_object_get(m, "tools")) any_tools = 1;
    }
    if (any_tools) drop = 0;

    turn *t = dsv4__calloc(n + 1, sizeof *t);
    if (!t) return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory");
    size_t nt = 0;
    dsv4_status st = DSV4_OK;
    json_t *last_calls = NULL;
    /* a system turn to carry request-level tools when the conversation has none */
    json_t *first = json_array_get(msgs, 0);
    int sys_first = strcmp(jstr(first, "role") ? jstr(first, "role") : "", "system") == 0;
    json_t *synth_sys = NULL;
    if (tools && !sys_first) {
        synth_sys = json_pack("{s:s, s:s}", "role", "system", "content", "");
        t[nt].role = "system";
        t[nt].msg = synth_sys;
        nt++;
    }
    for (size_t i = 0; i < n && !st; i++) {
        json_t *m = json_array_get(msgs, i);
        const char *role = jstr(m, "role");
        if (!role) { st = fail_at(e, DSV4_ERR_INVALID_ARGUMENT, i, "role missing"); break; }
        json_t *content = json_object_get(m, "content");
        if (content && !json_is_null(content) && !json_is_string(content)) {
            st = fail_at(e, DSV4_ERR_INVALID_ARGUMENT, i, "content must be a string");
            break;
        }
        if (strcmp(role, "system") == 0 || strcmp(role, "latest_reminder") == 0 || strcmp(role, "assistant") == 0 ||
            strcmp(role, "developer") == 0) {
            if (strcmp(role, "assistant") == 0) {
                json_t *calls = json_object_get(m, "tool_calls");
                if (calls && !json_is_null(calls) && !json_is_array(calls)) {
                    st = fail_at(e, DSV4_ERR_INVALID_ARGUMENT, i, "tool_calls must be an array");
                    break;
                }
                last_calls = json_array_size(calls) ? calls : NULL;
            }
            t[nt].role = role;
            t[nt].msg = m;
            nt++;
        } else if (strcmp(role, "user") == 0 || strcmp(role, "tool") == 0) {
            int is_tool = role[0] == 't';
            /* join onto a preceding merged user turn made of tool results */
            turn *u = (nt > 0 && t[nt - 1].merged) ? &t[nt - 1] : NULL;
            if (!is_tool || !u) {
                if (is_tool || !u) {
                    u = &t[nt++];
                    u->role = "user";
                    u->msg = m;
                    u->merged = is_tool;
                } else {
                    sb_s(&u->user, "\n\n");
                }
            }
            if (is_tool) {
                /* collect this run of tool messages, ordered by the calls */
                size_t j = i;
                while (j < n && strcmp(jstr(json_array_get(msgs, j), "role") ? jstr(json_array_get(msgs, j), "role") : "", "tool") == 0) j++;
                if (!last_calls) { st = fail_at(e, DSV4_ERR_INVALID_ARGUMENT, i, "tool result without a preceding assistant tool call"); break; }
                size_t used = 0;
                int by_id = 1;
                for (size_t c = 0; c < json_array_size(last_calls); c++)
                    if (!jstr(json_array_get(last_calls, c), "id")) by_id = 0;
                for (size_t k = i; k < j; k++)
                    if (!jstr(json_array_get(msgs, k), "tool_call_id")) by_id = 0;
                if (!by_id) {
                    /* no ids to match: the results in the order given */
                    for (size_t k = i; k < j; k++) {
                        if (used++) sb_s(&u->user, "\n\n");
                        sb_s(&u->user, "<tool_result>");
                        sb_s(&u->user, jstr(json_array_get(msgs, k), "content") ? jstr(json_array_get(msgs, k), "content") : "");
                        sb_s(&u->user, "</tool_result>");
                    }
                }
                for (size_t c = 0; by_id && c < json_array_size(last_calls) && !st; c++) {
                    const char *id = jstr(json_array_get(last_calls, c), "id");
                    for (size_t k = i; k < j; k++) {
                        json_t *tm2 = json_array_get(msgs, k);
                        const char *tid = jstr(tm2, "tool_call_id");
                        if (id && tid && strcmp(id, tid) == 0) {
                            if (used++) sb_s(&u->user, "\n\n");
                            sb_s(&u->user, "<tool_result>");
                            sb_s(&u->user, jstr(tm2, "content") ? jstr(tm2, "content") : "");
                            sb_s(&u->user, "</tool_result>");
                        }
                    }
                }
                if (used != j - i) {
                    st = fail_at(e, DSV4_ERR_INVALID_ARGUMENT, i, "tool_call_id does not match a call of the preceding assistant message");
                    break;
                }
                u->merged = 1;
                i = j - 1;
            } else {
                if (json_is_string(content)) sb_add(&u->user, json_string_value(content), json_string_length(content));
                u->merged = 0;
            }
        } else {
            char w[96];
            snprintf(w, sizeof w, "unknown role '%.40s'", role);
            st = fail_at(e, DSV4_ERR_INVALID_ARGUMENT, i, w);
        }
    }
    /* the last user turn */
    size_t last_user = (size_t)-1;
    for (size_t i = 0; i < nt; i++)
        if (strcmp(t[i].role, "user") == 0 || strcmp(t[i].role, "developer") == 0) last_user = i;

    if (!st) sb_s(out, BOS);
    for (size_t i = 0; i < nt && !st; i++) {
        json_t *m = t[i].msg;
        const char *role = t[i].role;
        if (i == 0 && thinking && effort_is_max) sb_s(out, effort_max);
        int is_dev = strcmp(role, "developer") == 0;
        if (is_dev && thinking && drop && i < last_user) continue; /* earlier developer turns are dropped */
        if (strcmp(role, "system") == 0 || is_dev) {
            if (is_dev) sb_s(out, USER);
            sb_s(out, jstr(m, "content") ? jstr(m, "content") : "");
            json_t *mt = json_object_get(m, "tools");
            if (json_array_size(mt) == 0 && i == 0) mt = tools;
            if (json_array_size(mt)) {
                sb_s(out, "\n\n");
                sb_s(out, tools_head);
                for (size_t k = 0; k < json_array_size(mt); k++) {
                    json_t *fn = json_object_get(json_array_get(mt, k), "function");
                    if (!fn) fn = json_array_get(mt, k);
                    if (k) sb_s(out, "\n");
                    py_dumps(out, fn);
                }
                sb_s(out, tools_tail);
            }
            json_t *rf = json_object_get(m, "response_format");
            if (rf) { sb_s(out, rf_head); py_dumps(out, rf); }
            if (is_dev) transition(out, t, nt, i, last_user, thinking, drop, NULL);
        } else if (strcmp(role, "latest_reminder") == 0) {
            sb_s(out, REMINDER);
            sb_s(out, jstr(m, "content") ? jstr(m, "content") : "");
        } else if (strcmp(role, "user") == 0) {
            sb_s(out, USER);
            if (t[i].user.p) sb_add(out, t[i].user.p, t[i].user.n);
            const char *task = t[i].merged ? NULL : jstr(m, "task");
            if (task && strcmp(task, "action") != 0) {
                if (strcmp(task, "query") && strcmp(task, "authority") && strcmp(task, "domain") && strcmp(task, "read_url")) {
                    st = fail_at(e, DSV4_ERR_INVALID_ARGUMENT, i, "task must be one of query, authority, domain, read_url, action");
                    break;
                }
                sb_s(out, "<\xef\xbd\x9c");
                sb_s(out, task);
                sb_s(out, "\xef\xbd\x9c>");
                task = NULL;
            }
            transition(out, t, nt, i, last_user, thinking, drop, task);
        } else { /* assistant */
            if (thinking && (i > last_user || !drop) && last_user != (size_t)-1) {
                sb_s(out, jstr(m, "reasoning_content") ? jstr(m, "reasoning_content") : "");
                sb_s(out, "</think>");
            }
            sb_s(out, jstr(m, "content") ? jstr(m, "content") : "");
            json_t *calls = json_object_get(m, "tool_calls");
            if (json_array_size(calls)) st = render_calls(out, calls, i, e);
            int open = json_is_true(json_object_get(m, "prefix")) || json_is_true(json_object_get(m, "wo_eos"));
            if (!open) sb_s(out, EOS);
            if (json_is_string(json_object_get(m, "title"))) sb_s(out, "<\xef\xbd\x9ctitle\xef\xbd\x9c>");
        }
    }
    for (size_t i = 0; i < nt; i++) dsv4__free(t[i].user.p);
    dsv4__free(t);
    json_decref(synth_sys);
    if (!st && out->oom) st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory");
    return st;
}

dsv4_status dsv4__chat_render_json(json_t *req, char **prompt, dsv4__err *e);
dsv4_status dsv4__chat_render_json(json_t *req, char **prompt, dsv4__err *e)
{
    sbuf out = { 0 };
    dsv4_status st = render(req, &out, e);
    if (st) { dsv4__free(out.p); return st; }
    *prompt = out.p;
    return DSV4_OK;
}

dsv4_status dsv4_chat_render(const char *request_json, size_t len, char **prompt, char **err_msg)
{
    dsv4__err e = { 0, "" };
    if (prompt) *prompt = NULL;
    if (err_msg) *err_msg = NULL;
    if (!request_json || !prompt) {
        dsv4__fail(&e, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_render: %s is NULL", !prompt ? "prompt" : "request_json");
        return dsv4__err_out(&e, err_msg);
    }
    if (len > ((size_t)1 << 30)) {
        dsv4__fail(&e, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_render: request of %zu bytes is above the 1 GiB limit", len);
        return dsv4__err_out(&e, err_msg);
    }
    json_error_t jerr;
    json_t *req = json_loadb(request_json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!req || !json_is_object(req)) {
        dsv4__fail(&e, DSV4_ERR_BAD_FORMAT, "dsv4_chat_render: request is not a JSON object%s%s",
                   req ? "" : ": ", req ? "" : jerr.text);
        json_decref(req);
        return dsv4__err_out(&e, err_msg);
    }
    sbuf out = { 0 };
    dsv4_status st = render(req, &out, &e);
    json_decref(req);
    if (st) {
        dsv4__free(out.p);
        return dsv4__err_out(&e, err_msg);
    }
    *prompt = out.p;
    return DSV4_OK;
}
