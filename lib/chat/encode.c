/*
 * lib/chat/encode.c — the DeepSeek-V4 chat encoding (text-protocol §3):
 * a chat request (JSON) → the exact prompt string the official encoder
 * renders, including Python-json.dumps-exact serialisation of tool schemas
 * and DSML tool-call arguments (chat/pyjson.c).
 *
 * Output goes to dsv4__sbuf strings through PUT/ADD, which record a failed
 * allocation in the caller's `oom` flag; the flag is checked once at the end.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include "chat/pyjson.h"
#include "core/core.h"
#include "core/effort.h"
#include "core/jsonf.h"
#include "core/sbuf.h"

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

#define ADD(b, s, n) (oom |= dsv4__sbuf_add((b), (s), (n)))
#define PUT(b, s) (oom |= dsv4__sbuf_puts((b), (s)))

/* ---- the encoder ---- */
typedef struct {
    const char *role;   /* system user assistant latest_reminder developer (tool results merged into user) */
    json_t *msg;        /* the source message (borrowed; for user turns the first one) */
    dsv4__sbuf user;    /* user turns: the joined text (tool results and user contents) */
    const char *task;   /* user turns: the task of the text message that closed the turn */
} turn;

static dsv4_status fail_at(dsv4__err *e, dsv4_status st, size_t i, const char *what)
{
    return dsv4__fail(e, st, "messages[%zu]: %s", i, what);
}

/* The parameters of one invoke (text-protocol §3.6): a JSON object as
 * Python's json.loads reads it gives one parameter per top-level key, in
 * order — strings raw with string="true", every other value json.dumps'd
 * with string="false"; anything else (not valid JSON, not an object) one
 * parameter "arguments" holding the raw value. Lines are joined by "\n",
 * so an invoke without parameters has an empty line as its body. */
static dsv4_status render_params(dsv4__sbuf *b, json_t *args, size_t mi, size_t ci, dsv4__err *e)
{
    int oom = 0;
    dsv4__pyjson pj;
    dsv4_status st = json_is_string(args) ? dsv4__pyjson_parse(json_string_value(args), json_string_length(args), &pj)
                                          : DSV4_ERR_BAD_FORMAT;
    if (st == DSV4_ERR_OUT_OF_MEMORY) return dsv4__fail(e, st, "out of memory");
    if (st == DSV4_OK && pj.v[0].type == DSV4__PY_OBJ) {
        for (int32_t k = pj.v[0].kid; k >= 0; k = pj.v[pj.v[k].next].next) {
            const dsv4__pyv *key = &pj.v[k], *v = &pj.v[key->next];
            const char *ks = pj.text.p + key->off;
            int is_str = v->type == DSV4__PY_STR;
            if (memchr(ks, 0, key->len) || (is_str && memchr(pj.text.p + v->off, 0, v->len))) {
                dsv4__pyjson_free(&pj);
                return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT,
                                  "messages[%zu]: tool_calls[%zu].function.arguments: a parameter name or string "
                                  "value holds U+0000, which a prompt cannot carry", mi, ci);
            }
            if (k != pj.v[0].kid) ADD(b, "\n", 1);
            PUT(b, "<" DSML "parameter name=\"");
            ADD(b, ks, key->len);
            PUT(b, is_str ? "\" string=\"true\">" : "\" string=\"false\">");
            if (is_str) ADD(b, pj.text.p + v->off, v->len);
            else oom |= dsv4__pyjson_dump(b, &pj, key->next);
            PUT(b, "</" DSML "parameter>");
        }
    } else {
        PUT(b, "<" DSML "parameter name=\"arguments\" string=\"true\">");
        if (json_is_string(args)) ADD(b, json_string_value(args), json_string_length(args));
        else if (args) oom |= dsv4__py_dumps(b, args);
        PUT(b, "</" DSML "parameter>");
    }
    if (st == DSV4_OK) dsv4__pyjson_free(&pj);
    return oom ? dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory") : DSV4_OK;
}

/* DSML of one assistant's tool_calls */
static dsv4_status render_calls(dsv4__sbuf *b, json_t *calls, size_t mi, dsv4__err *e)
{
    int oom = 0;
    PUT(b, "\n\n<" DSML "tool_calls>\n");
    for (size_t c = 0; c < json_array_size(calls); c++) {
        json_t *call = json_array_get(calls, c), *fn = json_object_get(call, "function");
        const char *name = dsv4__jsonf_str(fn, "name");
        if (!name) return fail_at(e, DSV4_ERR_INVALID_ARGUMENT, mi, "tool_calls[].function.name missing");
        if (c) PUT(b, "\n");
        PUT(b, "<" DSML "invoke name=\"");
        PUT(b, name);
        PUT(b, "\">\n");
        dsv4_status st = render_params(b, json_object_get(fn, "arguments"), mi, c, e);
        if (st) return st;
        PUT(b, "\n</" DSML "invoke>");
    }
    PUT(b, "\n</" DSML "tool_calls>");
    return oom ? dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory") : DSV4_OK;
}

/* after a user/developer turn: the assistant opener when an answer follows */
static int transition(dsv4__sbuf *out, const turn *t, size_t nt, size_t i, size_t last_user, int thinking, int drop,
                      const char *task)
{
    int oom = 0;
    int last = i + 1 == nt;
    const char *next = last ? NULL : t[i + 1].role;
    if (last || strcmp(next, "assistant") == 0 || strcmp(next, "latest_reminder") == 0) {
        PUT(out, ASSISTANT);
        PUT(out, thinking && (i == last_user || !drop) ? "<think>" : "</think>");
        if (task) PUT(out, "<\xef\xbd\x9c" "action\xef\xbd\x9c>");
    }
    return oom;
}

static dsv4_status render(json_t *req, dsv4__sbuf *out, dsv4__err *e)
{
    int oom = 0;
    json_t *pr = json_object_get(req, "prompt");
    if (pr && json_array_size(json_object_get(req, "messages")) == 0) {
        /* completion request: plain prefix, or fill-in-the-middle with a suffix */
        json_t *sf = json_object_get(req, "suffix");
        if (!json_is_string(pr) || (sf && !json_is_null(sf) && !json_is_string(sf)))
            return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "request: prompt and suffix must be strings");
        PUT(out, BOS);
        if (json_is_string(sf)) {
            PUT(out, "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>");
            ADD(out, json_string_value(pr), json_string_length(pr));
            PUT(out, "<\xef\xbd\x9c" "fim\xe2\x96\x81" "hole\xef\xbd\x9c>");
            ADD(out, json_string_value(sf), json_string_length(sf));
            PUT(out, "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>");
        } else {
            ADD(out, json_string_value(pr), json_string_length(pr));
        }
        return oom ? dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory") : DSV4_OK;
    }
    json_t *msgs = json_object_get(req, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "request: \"messages\" must be a non-empty array");
    /* modes */
    int thinking = 1, effort_is_max = 0, drop = 1;
    json_t *th = json_object_get(req, "thinking");
    const char *tm = dsv4__jsonf_str(req, "thinking_mode");
    if (th) {
        const char *t = dsv4__jsonf_str(th, "type");
        if (!t || (strcmp(t, "enabled") && strcmp(t, "disabled")))
            return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "request: thinking.type must be \"enabled\" or \"disabled\"");
        thinking = strcmp(t, "enabled") == 0;
    } else if (tm) {
        if (strcmp(tm, "chat") && strcmp(tm, "thinking"))
            return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "request: thinking_mode must be \"chat\" or \"thinking\"");
        thinking = strcmp(tm, "thinking") == 0;
    }
    /* reasoning_effort (core/effort.h): none → non-thinking, max → the
     * max-effort paragraph (thinking mode only), the rest → no change */
    int effort;
    if (dsv4__effort_field(req, "reasoning_effort", &effort, e)) {
        dsv4__err_prefix(e, "request");
        return e ? e->code : DSV4_ERR_INVALID_ARGUMENT;
    }
    if (effort == DSV4_EFFORT_NONE) thinking = 0;
    effort_is_max = effort == DSV4_EFFORT_MAX;
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
    const char *role0 = dsv4__jsonf_str(json_array_get(msgs, 0), "role");
    int sys_first = role0 && strcmp(role0, "system") == 0;
    json_t *synth_sys = NULL;
    if (tools && !sys_first) {
        synth_sys = json_pack("{s:s, s:s}", "role", "system", "content", "");
        if (!synth_sys) { dsv4__free(t); return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory"); }
        t[nt].role = "system";
        t[nt].msg = synth_sys;
        nt++;
    }
    for (size_t i = 0; i < n && !st; i++) {
        json_t *m = json_array_get(msgs, i);
        const char *role = dsv4__jsonf_str(m, "role");
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
            /* consecutive user-side messages (user texts, runs of tool
             * results) are one user turn, their parts joined by "\n\n"; a
             * turn whose text carried a task ends there */
            turn *u = nt > 0 && strcmp(t[nt - 1].role, "user") == 0 && !t[nt - 1].task ? &t[nt - 1] : NULL;
            if (u) {
                ADD(&u->user, "\n\n", 2);
            } else {
                u = &t[nt++];
                u->role = "user";
                u->msg = m;
            }
            if (is_tool) {
                /* collect this run of tool messages, ordered by the calls */
                size_t j = i;
                while (j < n) {
                    const char *r = dsv4__jsonf_str(json_array_get(msgs, j), "role");
                    if (!r || strcmp(r, "tool") != 0) break;
                    j++;
                }
                if (!last_calls) { st = fail_at(e, DSV4_ERR_INVALID_ARGUMENT, i, "tool result without a preceding assistant tool call"); break; }
                size_t used = 0;
                int by_id = 1;
                for (size_t c = 0; c < json_array_size(last_calls); c++)
                    if (!dsv4__jsonf_str(json_array_get(last_calls, c), "id")) by_id = 0;
                for (size_t k = i; k < j; k++)
                    if (!dsv4__jsonf_str(json_array_get(msgs, k), "tool_call_id")) by_id = 0;
                if (!by_id) {
                    /* no ids to match: the results in the order given */
                    for (size_t k = i; k < j; k++) {
                        const char *rc = dsv4__jsonf_str(json_array_get(msgs, k), "content");
                        if (used++) ADD(&u->user, "\n\n", 2);
                        PUT(&u->user, "<tool_result>");
                        PUT(&u->user, rc ? rc : "");
                        PUT(&u->user, "</tool_result>");
                    }
                }
                for (size_t c = 0; by_id && c < json_array_size(last_calls) && !st; c++) {
                    const char *id = dsv4__jsonf_str(json_array_get(last_calls, c), "id");
                    for (size_t k = i; k < j; k++) {
                        json_t *tm2 = json_array_get(msgs, k);
                        const char *tid = dsv4__jsonf_str(tm2, "tool_call_id"), *rc = dsv4__jsonf_str(tm2, "content");
                        if (id && tid && strcmp(id, tid) == 0) {
                            if (used++) ADD(&u->user, "\n\n", 2);
                            PUT(&u->user, "<tool_result>");
                            PUT(&u->user, rc ? rc : "");
                            PUT(&u->user, "</tool_result>");
                        }
                    }
                }
                if (used != j - i) {
                    st = fail_at(e, DSV4_ERR_INVALID_ARGUMENT, i, "tool_call_id does not match a call of the preceding assistant message");
                    break;
                }
                i = j - 1;
            } else {
                if (json_is_string(content)) ADD(&u->user, json_string_value(content), json_string_length(content));
                else ADD(&u->user, "", 0);
                u->task = dsv4__jsonf_str(m, "task");
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

    if (!st) PUT(out, BOS);
    for (size_t i = 0; i < nt && !st; i++) {
        json_t *m = t[i].msg;
        const char *role = t[i].role;
        if (i == 0 && thinking && effort_is_max) PUT(out, effort_max);
        int is_dev = strcmp(role, "developer") == 0;
        if (is_dev && thinking && drop && i < last_user) continue; /* earlier developer turns are dropped */
        if (strcmp(role, "system") == 0 || is_dev) {
            const char *c = dsv4__jsonf_str(m, "content");
            if (is_dev) PUT(out, USER);
            PUT(out, c ? c : "");
            json_t *mt = json_object_get(m, "tools");
            if (json_array_size(mt) == 0 && i == 0) mt = tools;
            if (json_array_size(mt)) {
                PUT(out, "\n\n");
                PUT(out, tools_head);
                for (size_t k = 0; k < json_array_size(mt); k++) {
                    json_t *fn = json_object_get(json_array_get(mt, k), "function");
                    if (!fn) fn = json_array_get(mt, k);
                    if (k) PUT(out, "\n");
                    oom |= dsv4__py_dumps(out, fn);
                }
                PUT(out, tools_tail);
            }
            json_t *rf = json_object_get(m, "response_format");
            if (rf) { PUT(out, rf_head); oom |= dsv4__py_dumps(out, rf); }
            if (is_dev) oom |= transition(out, t, nt, i, last_user, thinking, drop, NULL);
        } else if (strcmp(role, "latest_reminder") == 0) {
            const char *c = dsv4__jsonf_str(m, "content");
            PUT(out, REMINDER);
            PUT(out, c ? c : "");
        } else if (strcmp(role, "user") == 0) {
            PUT(out, USER);
            if (t[i].user.p) ADD(out, t[i].user.p, t[i].user.n);
            const char *task = t[i].task;
            if (task && strcmp(task, "action") != 0) {
                if (strcmp(task, "query") && strcmp(task, "authority") && strcmp(task, "domain") && strcmp(task, "read_url")) {
                    st = fail_at(e, DSV4_ERR_INVALID_ARGUMENT, i, "task must be one of query, authority, domain, read_url, action");
                    break;
                }
                PUT(out, "<\xef\xbd\x9c");
                PUT(out, task);
                PUT(out, "\xef\xbd\x9c>");
                task = NULL;
            }
            oom |= transition(out, t, nt, i, last_user, thinking, drop, task);
        } else { /* assistant */
            if (thinking && (i > last_user || !drop) && last_user != (size_t)-1) {
                const char *rc = dsv4__jsonf_str(m, "reasoning_content");
                PUT(out, rc ? rc : "");
                PUT(out, "</think>");
            }
            const char *c = dsv4__jsonf_str(m, "content");
            PUT(out, c ? c : "");
            json_t *calls = json_object_get(m, "tool_calls");
            if (json_array_size(calls)) st = render_calls(out, calls, i, e);
            int open = json_is_true(json_object_get(m, "prefix")) || json_is_true(json_object_get(m, "wo_eos"));
            if (!open) PUT(out, EOS);
            if (json_is_string(json_object_get(m, "title"))) PUT(out, "<\xef\xbd\x9ctitle\xef\xbd\x9c>");
        }
    }
    for (size_t i = 0; i < nt; i++) dsv4__sbuf_free(&t[i].user);
    dsv4__free(t);
    json_decref(synth_sys);
    if (!st && oom) st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory");
    return st;
}

dsv4_status dsv4__chat_render_json(json_t *req, char **prompt, dsv4__err *e);
dsv4_status dsv4__chat_render_json(json_t *req, char **prompt, dsv4__err *e)
{
    dsv4__sbuf out = { 0 };
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
    dsv4__sbuf out = { 0 };
    dsv4_status st = render(req, &out, &e);
    json_decref(req);
    if (st) {
        dsv4__free(out.p);
        return dsv4__err_out(&e, err_msg);
    }
    *prompt = out.p;
    return DSV4_OK;
}
