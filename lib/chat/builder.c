/*
 * lib/chat/builder.c — the conversation builder: the same request as the
 * JSON form, assembled by typed calls, rendered by the same encoder.
 */
#include <jansson.h>
#include <string.h>
#include "chat/pyjson.h"
#include "core/core.h"
#include "core/effort.h"
#include "core/jsonf.h"
#include "core/utf8.h"

dsv4_status dsv4__chat_render_json(json_t *req, char **prompt, dsv4__err *e);

struct dsv4_chat {
    json_t *req;    /* {"messages": [...], ...} */
    char err[512];
};

static dsv4_status set_err(dsv4_chat *c, dsv4_status st, const char *msg)
{
    if (c) snprintf(c->err, sizeof c->err, "%s", msg);
    return st;
}

static int utf8_ok(const char *s)
{
    size_t n = strlen(s);
    return dsv4__utf8_check(s, n) == n;
}

dsv4_status dsv4_chat_create(dsv4_chat **out)
{
    if (!out) return DSV4_ERR_INVALID_ARGUMENT;
    *out = NULL;
    dsv4_chat *c = dsv4__calloc(1, sizeof *c);
    if (!c) return DSV4_ERR_OUT_OF_MEMORY;
    c->req = json_pack("{s:[]}", "messages");
    if (!c->req) { dsv4__free(c); return DSV4_ERR_OUT_OF_MEMORY; }
    *out = c;
    return DSV4_OK;
}

void dsv4_chat_free(dsv4_chat *c)
{
    if (!c) return;
    json_decref(c->req);
    dsv4__free(c);
}

const char *dsv4_chat_last_error(const dsv4_chat *c)
{
    return c ? c->err : "dsv4_chat_last_error: chat is NULL";
}

dsv4_status dsv4_chat_add_message(dsv4_chat *c, const char *role, const char *content, const char *reasoning_content)
{
    if (c && json_object_get(c->req, "prompt"))
        return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_add_message: this is a FIM request");
    if (!c || !role) return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_add_message: NULL argument");
    static const char *roles[] = { "system", "user", "assistant", "latest_reminder", "developer" };
    int known = 0;
    for (size_t i = 0; i < DSV4__ARRAY_LEN(roles); i++) known |= strcmp(role, roles[i]) == 0;
    if (!known || !utf8_ok(role))
        return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_add_message: unknown role (system, user, assistant, "
                       "latest_reminder, developer; tool results go through dsv4_chat_add_tool_result)");
    if ((content && !utf8_ok(content)) || (reasoning_content && !utf8_ok(reasoning_content)))
        return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_add_message: text is not valid UTF-8");
    if (reasoning_content && strcmp(role, "assistant") != 0)
        return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_add_message: reasoning_content is for assistant messages");
    json_t *m = json_pack("{s:s}", "role", role);
    int bad = !m;
    if (m && content) bad |= json_object_set_new(m, "content", json_string(content));
    if (m && reasoning_content) bad |= json_object_set_new(m, "reasoning_content", json_string(reasoning_content));
    if (!bad) bad = json_array_append_new(json_object_get(c->req, "messages"), m) != 0;
    else json_decref(m);
    return bad ? set_err(c, DSV4_ERR_OUT_OF_MEMORY, "out of memory") : DSV4_OK;
}

static json_t *last_message(dsv4_chat *c, const char *role)
{
    json_t *ms = json_object_get(c->req, "messages");
    size_t n = json_array_size(ms);
    json_t *m = n ? json_array_get(ms, n - 1) : NULL;
    const char *r = dsv4__jsonf_str(m, "role");
    return r && strcmp(r, role) == 0 ? m : NULL;
}

dsv4_status dsv4_chat_add_tool_call(dsv4_chat *c, const char *id, const char *name, const char *arguments_json)
{
    if (!c || !name || !arguments_json) return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_add_tool_call: NULL argument");
    json_t *m = last_message(c, "assistant");
    if (!m) return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_add_tool_call: the last message is not an assistant message");
    /* read as the encoder reads it: integers of any size, NaN, ... */
    dsv4__pyjson args;
    dsv4_status st = dsv4__pyjson_parse(arguments_json, strlen(arguments_json), &args);
    if (st == DSV4_ERR_OUT_OF_MEMORY) return set_err(c, st, "out of memory");
    int is_obj = st == DSV4_OK && args.v[0].type == DSV4__PY_OBJ;
    if (st == DSV4_OK) dsv4__pyjson_free(&args);
    if (!is_obj) return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_add_tool_call: arguments are not a JSON object");
    if (!utf8_ok(name) || (id && !utf8_ok(id)))
        return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_add_tool_call: text is not valid UTF-8");
    json_t *calls = json_object_get(m, "tool_calls");
    if (!calls) { calls = json_array(); json_object_set_new(m, "tool_calls", calls); }
    json_t *call = json_pack("{s:s, s:{s:s, s:s}}", "type", "function", "function", "name", name, "arguments",
                             arguments_json);
    if (call && id) json_object_set_new(call, "id", json_string(id));
    if (!call || json_array_append_new(calls, call)) return set_err(c, DSV4_ERR_OUT_OF_MEMORY, "out of memory");
    return DSV4_OK;
}

dsv4_status dsv4_chat_add_tool_result(dsv4_chat *c, const char *tool_call_id, const char *content)
{
    if (!c || !content) return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_add_tool_result: NULL argument");
    if (!utf8_ok(content) || (tool_call_id && !utf8_ok(tool_call_id)))
        return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_add_tool_result: text is not valid UTF-8");
    json_t *m = json_pack("{s:s, s:s}", "role", "tool", "content", content);
    if (m && tool_call_id) json_object_set_new(m, "tool_call_id", json_string(tool_call_id));
    if (!m || json_array_append_new(json_object_get(c->req, "messages"), m))
        return set_err(c, DSV4_ERR_OUT_OF_MEMORY, "out of memory");
    return DSV4_OK;
}

dsv4_status dsv4_chat_set_json(dsv4_chat *c, dsv4_chat_field field, const char *json)
{
    if (!c) return DSV4_ERR_INVALID_ARGUMENT;
    const char *key = field == DSV4_CHAT_TOOLS ? "tools" : field == DSV4_CHAT_RESPONSE_FORMAT ? "response_format" : NULL;
    if (!key) return set_err(c, DSV4_ERR_UNKNOWN_OPTION, "dsv4_chat_set_json: unknown field");
    if (!json) { json_object_del(c->req, key); return DSV4_OK; }
    json_t *v = json_loads(json, JSON_DECODE_ANY, NULL);
    int ok = field == DSV4_CHAT_TOOLS ? json_is_array(v) : json_is_object(v);
    if (!ok) {
        json_decref(v);
        return set_err(c, DSV4_ERR_INVALID_ARGUMENT, field == DSV4_CHAT_TOOLS ? "dsv4_chat_set_json: tools must be a JSON array"
                                                                                : "dsv4_chat_set_json: response_format must be a JSON object");
    }
    if (field == DSV4_CHAT_RESPONSE_FORMAT) {
        /* rendered on the system message, as the official encoder does */
        json_t *ms = json_object_get(c->req, "messages"), *m0 = json_array_get(ms, 0);
        const char *r = dsv4__jsonf_str(m0, "role");
        if (!r || strcmp(r, "system") != 0) {
            json_decref(v);
            return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_set_json: add the system message before a response format");
        }
        json_object_set_new(m0, key, v);
        return DSV4_OK;
    }
    json_object_set_new(c->req, key, v);
    return DSV4_OK;
}

dsv4_status dsv4_chat_set_i64(dsv4_chat *c, dsv4_chat_field field, int64_t value)
{
    if (!c) return DSV4_ERR_INVALID_ARGUMENT;
    switch (field) {
    case DSV4_CHAT_THINKING:
        if (value != 0 && value != 1) return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "thinking must be 0 or 1");
        json_object_set_new(c->req, "thinking_mode", json_string(value ? "thinking" : "chat"));
        return DSV4_OK;
    case DSV4_CHAT_REASONING_EFFORT: {
        if (value < DSV4_EFFORT_DEFAULT || value > DSV4_EFFORT_MAX)
            return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "reasoning effort out of range");
        if (value == DSV4_EFFORT_DEFAULT) json_object_del(c->req, "reasoning_effort");
        else json_object_set_new(c->req, "reasoning_effort", json_string(dsv4__effort_name((int)value)));
        return DSV4_OK;
    }
    case DSV4_CHAT_DROP_THINKING:
        if (value != 0 && value != 1) return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "drop_thinking must be 0 or 1");
        json_object_set_new(c->req, "drop_thinking", json_boolean(value));
        return DSV4_OK;
    case DSV4_CHAT_PREFIX: {
        json_t *m = last_message(c, "assistant");
        if (!m) return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "prefix: the last message is not an assistant message");
        if (value != 0 && value != 1) return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "prefix must be 0 or 1");
        json_object_set_new(m, "prefix", json_boolean(value));
        return DSV4_OK;
    }
    default:
        return set_err(c, DSV4_ERR_UNKNOWN_OPTION, "dsv4_chat_set_i64: unknown field");
    }
}

dsv4_status dsv4_chat_set_fim(dsv4_chat *c, const char *prefix, const char *suffix)
{
    if (!c || !prefix) return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_set_fim: NULL argument");
    if (json_array_size(json_object_get(c->req, "messages")))
        return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_set_fim: a FIM request has no messages");
    if (!utf8_ok(prefix) || (suffix && !utf8_ok(suffix)))
        return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_set_fim: text is not valid UTF-8");
    json_object_set_new(c->req, "prompt", json_string(prefix));
    if (suffix) json_object_set_new(c->req, "suffix", json_string(suffix));
    else json_object_del(c->req, "suffix");
    return DSV4_OK;
}

dsv4_status dsv4_chat_render_text(dsv4_chat *c, char **prompt)
{
    if (prompt) *prompt = NULL;
    if (!c || !prompt) return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_render_text: NULL argument");
    dsv4__err e = { 0, "" };
    dsv4_status st = dsv4__chat_render_json(c->req, prompt, &e);
    if (st) set_err(c, st, e.msg);
    return st;
}

dsv4_status dsv4_chat_render_ids(dsv4_chat *c, const dsv4_tokenizer *tok, int32_t *ids, size_t cap, size_t *n_ids)
{
    if (n_ids) *n_ids = 0;
    if (!c || !tok || !n_ids || (!ids && cap)) return set_err(c, DSV4_ERR_INVALID_ARGUMENT, "dsv4_chat_render_ids: NULL argument");
    char *prompt = NULL;
    dsv4_status st = dsv4_chat_render_text(c, &prompt);
    if (st) return st;
    char *msg = NULL;
    st = dsv4_tokenizer_encode(tok, prompt, strlen(prompt), 0, ids, cap, n_ids, &msg);
    if (st) set_err(c, st, msg ? msg : dsv4_status_string(st));
    dsv4_free(msg);
    dsv4_free(prompt);
    return st;
}
