/*
 * lib/gen/messages.c — the Anthropic Messages form of a request and of its
 * answer (see dsv4_gen.h): a Messages request is mapped to the
 * chat-completions request dsv4_gen_start_request() takes, and the
 * generation is rendered back as a Messages response or as its
 * server-sent events.
 */
#define DSV4_ENABLE_EXPERIMENTAL /* the experimental tier (docs/ABI.md) */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/core.h"
#include "core/sbuf.h"
#include "core/utf8.h"
#include "gen/gen_int.h"

#define BAD(...) (dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, __VA_ARGS__))

static const char *const msg_fields[] = {
    "model", "messages", "system", "max_tokens", "tools", "tool_choice", "thinking", "stop_sequences",
    "temperature", "top_p", "top_k", "stream", "metadata", "service_tier",
};

/* Text of a "content" that is a string or an array of text blocks; NULL
 * with the error set otherwise. `where` names it in messages. */
static dsv4_status text_of(dsv4_gen *g, json_t *v, const char *where, dsv4__sbuf *out)
{
    if (json_is_string(v)) return dsv4__sbuf_add(out, json_string_value(v), json_string_length(v)) ? DSV4_ERR_OUT_OF_MEMORY : DSV4_OK;
    if (!json_is_array(v)) return BAD("request: \"%s\" must be a string or an array of text blocks", where);
    size_t i;
    json_t *b;
    json_array_foreach(v, i, b) {
        const char *t = json_is_object(b) ? json_string_value(json_object_get(b, "type")) : NULL;
        if (!t) return BAD("request: \"%s[%zu]\" must be a block with a \"type\"", where, i);
        if (strcmp(t, "text")) return BAD("request: \"%s[%zu]\": block type \"%.40s\" is not supported here (text only)", where, i, t);
        json_t *tx = json_object_get(b, "text");
        if (!json_is_string(tx)) return BAD("request: \"%s[%zu].text\" must be a string", where, i);
        if ((out->n && dsv4__sbuf_add(out, "\n", 1)) || dsv4__sbuf_add(out, json_string_value(tx), json_string_length(tx)))
            return DSV4_ERR_OUT_OF_MEMORY;
    }
    return DSV4_OK;
}

static json_t *sbuf_json(const dsv4__sbuf *b) { return json_stringn(b->p ? b->p : "", b->n); }

/* one Messages message → chat messages appended to `out` */
static dsv4_status map_message(dsv4_gen *g, json_t *m, size_t mi, json_t *out)
{
    char where[96];
    if (!json_is_object(m)) return BAD("request: \"messages[%zu]\" must be an object", mi);
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) {
        if (strcmp(k, "role") && strcmp(k, "content")) return BAD("request: \"messages[%zu].%.40s\" is not a known field", mi, k);
    }
    const char *role = json_string_value(json_object_get(m, "role"));
    if (!role || (strcmp(role, "user") && strcmp(role, "assistant")))
        return BAD("request: \"messages[%zu].role\" must be \"user\" or \"assistant\"", mi);
    int user = role[0] == 'u';
    json_t *content = json_object_get(m, "content");
    if (json_is_string(content))
        return json_array_append_new(out, json_pack("{ss sO}", "role", role, "content", content)) ? DSV4_ERR_OUT_OF_MEMORY : DSV4_OK;
    if (!json_is_array(content)) return BAD("request: \"messages[%zu].content\" must be a string or an array of blocks", mi);
    dsv4__sbuf text = { 0 }, reasoning = { 0 };
    json_t *calls = json_array();
    dsv4_status st = calls ? DSV4_OK : DSV4_ERR_OUT_OF_MEMORY;
    size_t bi;
    json_t *b;
    json_array_foreach(content, bi, b) {
        if (st) break;
        const char *t = json_is_object(b) ? json_string_value(json_object_get(b, "type")) : NULL;
        if (!t) { st = BAD("request: \"messages[%zu].content[%zu]\" must be a block with a \"type\"", mi, bi); break; }
        if (!strcmp(t, "text")) {
            json_t *tx = json_object_get(b, "text");
            if (!json_is_string(tx)) { st = BAD("request: \"messages[%zu].content[%zu].text\" must be a string", mi, bi); break; }
            if ((text.n && dsv4__sbuf_add(&text, "\n", 1)) || dsv4__sbuf_add(&text, json_string_value(tx), json_string_length(tx)))
                st = DSV4_ERR_OUT_OF_MEMORY;
        } else if (!strcmp(t, "tool_result") && user) {
            const char *id = json_string_value(json_object_get(b, "tool_use_id"));
            if (!id) { st = BAD("request: \"messages[%zu].content[%zu].tool_use_id\" must be a string", mi, bi); break; }
            dsv4__sbuf r = { 0 };
            json_t *rc = json_object_get(b, "content");
            snprintf(where, sizeof where, "messages[%zu].content[%zu].content", mi, bi);
            if (json_is_true(json_object_get(b, "is_error")) && dsv4__sbuf_add(&r, "Error: ", 7)) st = DSV4_ERR_OUT_OF_MEMORY;
            if (!st && rc && !json_is_null(rc)) st = text_of(g, rc, where, &r);
            if (!st && json_array_append_new(out, json_pack("{ss ss so}", "role", "tool", "tool_call_id", id, "content", sbuf_json(&r))))
                st = DSV4_ERR_OUT_OF_MEMORY;
            dsv4__sbuf_free(&r);
        } else if (!strcmp(t, "tool_use") && !user) {
            const char *id = json_string_value(json_object_get(b, "id"));
            const char *name = json_string_value(json_object_get(b, "name"));
            json_t *input = json_object_get(b, "input");
            if (!id || !name || !json_is_object(input)) {
                st = BAD("request: \"messages[%zu].content[%zu]\": a tool_use block needs \"id\", \"name\" and an object \"input\"", mi, bi);
                break;
            }
            char *args = json_dumps(input, JSON_COMPACT | JSON_PRESERVE_ORDER);
            if (!args || json_array_append_new(calls, json_pack("{ss ss s{ss ss}}", "id", id, "type", "function", "function",
                                                                "name", name, "arguments", args)))
                st = DSV4_ERR_OUT_OF_MEMORY;
            free(args);
        } else if (!strcmp(t, "thinking") && !user) {
            json_t *th = json_object_get(b, "thinking");
            if (!json_is_string(th)) { st = BAD("request: \"messages[%zu].content[%zu].thinking\" must be a string", mi, bi); break; }
            if (dsv4__sbuf_add(&reasoning, json_string_value(th), json_string_length(th))) st = DSV4_ERR_OUT_OF_MEMORY;
        } else if (!strcmp(t, "redacted_thinking") && !user) {
            /* nothing to render */
        } else {
            st = BAD("request: \"messages[%zu].content[%zu]\": block type \"%.40s\" is not supported in a%s %s message", mi, bi, t,
                     user ? "" : "n", role);
        }
    }
    if (!st && user && text.n && json_array_append_new(out, json_pack("{ss so}", "role", "user", "content", sbuf_json(&text))))
        st = DSV4_ERR_OUT_OF_MEMORY;
    if (!st && !user) {
        json_t *a = json_pack("{ss so}", "role", "assistant", "content", sbuf_json(&text));
        if (a && reasoning.n) json_object_set_new(a, "reasoning_content", sbuf_json(&reasoning));
        if (a && json_array_size(calls)) json_object_set(a, "tool_calls", calls);
        if (!a || json_array_append_new(out, a)) st = DSV4_ERR_OUT_OF_MEMORY;
    }
    json_decref(calls);
    dsv4__sbuf_free(&text);
    dsv4__sbuf_free(&reasoning);
    return st;
}

/* The chat-completions request of a Messages request. */
static dsv4_status map_request(dsv4_gen *g, json_t *req, json_t **out)
{
    *out = NULL;
    if (!json_is_object(req)) return BAD("request: not a JSON object");
    const char *k;
    json_t *v;
    json_object_foreach(req, k, v) {
        size_t i = 0;
        while (i < DSV4__ARRAY_LEN(msg_fields) && strcmp(k, msg_fields[i])) i++;
        if (i == DSV4__ARRAY_LEN(msg_fields)) return BAD("request: \"%.60s\" is not a known field", k);
    }
    json_t *r = json_object(), *msgs = json_array();
    if (!r || !msgs) { json_decref(r); json_decref(msgs); return DSV4_ERR_OUT_OF_MEMORY; }
    json_object_set_new(r, "messages", msgs);
    dsv4_status st = DSV4_OK;
    json_t *model = json_object_get(req, "model");
    if (model && !json_is_string(model)) { st = BAD("request: \"model\" must be a string"); goto out; }
    if (model) json_object_set(r, "model", model);
    json_t *mt = json_object_get(req, "max_tokens");
    if (!mt) { st = BAD("request: \"max_tokens\" is required"); goto out; }
    if (!json_is_integer(mt) || json_integer_value(mt) < 1) { st = BAD("request: \"max_tokens\" must be an integer >= 1"); goto out; }
    json_object_set(r, "max_tokens", mt);
    json_t *sys = json_object_get(req, "system");
    if (sys && !json_is_null(sys)) {
        dsv4__sbuf s = { 0 };
        st = text_of(g, sys, "system", &s);
        if (!st && json_array_append_new(msgs, json_pack("{ss so}", "role", "system", "content", sbuf_json(&s)))) st = DSV4_ERR_OUT_OF_MEMORY;
        dsv4__sbuf_free(&s);
        if (st) goto out;
    }
    json_t *ms = json_object_get(req, "messages");
    if (!json_is_array(ms) || !json_array_size(ms)) { st = BAD("request: \"messages\" must be a non-empty array"); goto out; }
    size_t i;
    json_array_foreach(ms, i, v) {
        if ((st = map_message(g, v, i, msgs))) goto out;
    }
    /* the last message an assistant's: the answer continues it */
    json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
    if (!strcmp(json_string_value(json_object_get(last, "role")), "assistant")) json_object_set_new(last, "prefix", json_true());
    json_t *tools = json_object_get(req, "tools");
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) { st = BAD("request: \"tools\" must be an array"); goto out; }
        json_t *ot = json_array();
        json_object_set_new(r, "tools", ot);
        json_array_foreach(tools, i, v) {
            const char *name = json_is_object(v) ? json_string_value(json_object_get(v, "name")) : NULL;
            json_t *schema = json_is_object(v) ? json_object_get(v, "input_schema") : NULL;
            const char *type = json_is_object(v) ? json_string_value(json_object_get(v, "type")) : NULL;
            if (type && strcmp(type, "custom")) { st = BAD("request: \"tools[%zu].type\" \"%.40s\" is not supported (client tools only)", i, type); goto out; }
            if (!name) { st = BAD("request: \"tools[%zu].name\" must be a string", i); goto out; }
            if (!json_is_object(schema)) { st = BAD("request: \"tools[%zu].input_schema\" must be an object", i); goto out; }
            json_t *fn = json_pack("{ss sO}", "name", name, "parameters", schema);
            json_t *d = json_object_get(v, "description");
            if (fn && json_is_string(d)) json_object_set(fn, "description", d);
            if (!fn || json_array_append_new(ot, json_pack("{ss so}", "type", "function", "function", fn))) { st = DSV4_ERR_OUT_OF_MEMORY; goto out; }
        }
    }
    json_t *tc = json_object_get(req, "tool_choice");
    if (tc && !json_is_null(tc)) {
        const char *t = json_is_object(tc) ? json_string_value(json_object_get(tc, "type")) : NULL;
        if (!t) { st = BAD("request: \"tool_choice\" must be an object with a \"type\""); goto out; }
        if (!strcmp(t, "auto")) json_object_set_new(r, "tool_choice", json_string("auto"));
        else if (!strcmp(t, "any")) json_object_set_new(r, "tool_choice", json_string("required"));
        else if (!strcmp(t, "none")) json_object_set_new(r, "tool_choice", json_string("none"));
        else if (!strcmp(t, "tool")) {
            const char *n = json_string_value(json_object_get(tc, "name"));
            if (!n) { st = BAD("request: \"tool_choice.name\" must be a string"); goto out; }
            json_object_set_new(r, "tool_choice", json_pack("{ss s{ss}}", "type", "function", "function", "name", n));
        } else {
            st = BAD("request: \"tool_choice.type\" \"%.40s\" is not auto, any, tool or none", t);
            goto out;
        }
    }
    json_t *th = json_object_get(req, "thinking");
    int thinking = 0;
    if (th && !json_is_null(th)) {
        const char *t = json_is_object(th) ? json_string_value(json_object_get(th, "type")) : NULL;
        if (!t || (strcmp(t, "enabled") && strcmp(t, "disabled"))) { st = BAD("request: \"thinking.type\" must be \"enabled\" or \"disabled\""); goto out; }
        thinking = t[0] == 'e';
        if (thinking) {
            json_t *bt = json_object_get(th, "budget_tokens");
            if (!json_is_integer(bt) || json_integer_value(bt) < 0) { st = BAD("request: \"thinking.budget_tokens\" must be an integer >= 0"); goto out; }
            if (json_integer_value(bt) >= json_integer_value(mt)) { st = BAD("request: \"thinking.budget_tokens\" must be less than \"max_tokens\""); goto out; }
            json_object_set(r, "thinking_budget", bt);
        }
    }
    json_object_set_new(r, "thinking", json_pack("{ss}", "type", thinking ? "enabled" : "disabled"));
    json_t *ss = json_object_get(req, "stop_sequences");
    if (ss && !json_is_null(ss)) {
        if (!json_is_array(ss)) { st = BAD("request: \"stop_sequences\" must be an array of strings"); goto out; }
        if (json_array_size(ss)) json_object_set(r, "stop", ss);
    }
    static const char *const same[] = { "temperature", "top_p", "top_k", "stream" };
    for (size_t s = 0; s < DSV4__ARRAY_LEN(same); s++) {
        json_t *x = json_object_get(req, same[s]);
        if (x && !json_is_null(x)) json_object_set(r, same[s], x);
    }
    json_t *temp = json_object_get(req, "temperature");
    if (json_is_number(temp) && json_number_value(temp) > 1.0) { st = BAD("request: \"temperature\" must be in [0, 1]"); goto out; }
    json_t *md = json_object_get(req, "metadata");
    if (md && !json_is_null(md) && !json_is_object(md)) { st = BAD("request: \"metadata\" must be an object"); goto out; }
    json_t *tier = json_object_get(req, "service_tier");
    if (tier && !json_is_null(tier) && !json_is_string(tier)) { st = BAD("request: \"service_tier\" must be a string"); goto out; }
out:
    if (st) json_decref(r);
    else *out = r;
    return st;
}

dsv4_status dsv4_gen_start_messages(dsv4_gen *g, const char *request_json, size_t len)
{
    if (!g) return DSV4_ERR_INVALID_ARGUMENT;
    g->err[0] = 0;
    if (!request_json) return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "request is NULL");
    if (len > ((size_t)1 << 30)) return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "request above 1 GiB");
    json_error_t je;
    json_t *req = json_loadb(request_json, len, JSON_REJECT_DUPLICATES, &je);
    if (!req) return dsv4__gen_fail(g, DSV4_ERR_BAD_FORMAT, "request is not JSON: %s (line %d)", je.text, je.line);
    json_t *chat = NULL;
    dsv4_status st = map_request(g, req, &chat);
    json_decref(req);
    if (st) return st;
    char *txt = json_dumps(chat, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(chat);
    if (!txt) return DSV4_ERR_OUT_OF_MEMORY;
    st = dsv4_gen_start_request(g, txt, strlen(txt));
    free(txt);
    if (!st) {
        g->msg_form = 1;
        g->msg_state = 0;
        g->msg_block = 0;
        g->msg_index = -1;
    }
    return st;
}

/* ------------------------------------------------------------------------ */
/* the answer                                                                */
/* ------------------------------------------------------------------------ */

static json_t *jstr(const char *s, size_t n)
{
    size_t len = 0;
    char *c = dsv4__utf8_clean(s ? s : "", s ? n : 0, &len);
    if (!c) return NULL;
    json_t *j = json_stringn(c, len);
    dsv4__free(c);
    return j;
}

static void msg_id(const dsv4_gen *g, char *buf, size_t cap)
{
    snprintf(buf, cap, "msg_%s", g->id[0] ? g->id + 9 : "dsv4");
}

static void tool_id(const dsv4_gen *g, size_t i, char *buf, size_t cap)
{
    snprintf(buf, cap, "toolu_%s_%zu", g->id[0] ? g->id + 9 : "dsv4", i);
}

static const char *stop_reason(const dsv4_gen *g)
{
    switch (g->finish) {
    case DSV4_FINISH_NONE: return NULL;
    case DSV4_FINISH_LENGTH: return "max_tokens";
    case DSV4_FINISH_TOOL_CALLS: return "tool_use";
    case DSV4_FINISH_STOP: return g->stopped_by_string ? "stop_sequence" : "end_turn";
    default: return "end_turn";
    }
}

static json_t *stop_sequence(const dsv4_gen *g)
{
    int i = g->stopped_by_string - 1;
    if (g->finish != DSV4_FINISH_STOP || i < 0 || i >= g->n_stops) return json_null();
    return jstr(g->stops[i], g->stop_len[i]);
}

static json_t *usage(const dsv4_gen *g)
{
    return json_pack("{sI sI sI sI}", "input_tokens", (json_int_t)(g->prompt_tokens - g->cached), "output_tokens",
                     (json_int_t)g->n_gen, "cache_read_input_tokens", (json_int_t)g->cached,
                     "cache_creation_input_tokens", (json_int_t)0);
}

static json_t *tool_input(const dsv4__gen_call *c)
{
    json_t *in = c->args.n ? json_loadb(c->args.p, c->args.n, 0, NULL) : NULL;
    if (!json_is_object(in)) {
        json_decref(in);
        in = json_object();
    }
    return in;
}

static dsv4_status dump(json_t *root, char **out)
{
    if (!root) return DSV4_ERR_OUT_OF_MEMORY;
    char *txt = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!txt) return DSV4_ERR_OUT_OF_MEMORY;
    *out = dsv4__strdup(txt);
    free(txt);
    return *out ? DSV4_OK : DSV4_ERR_OUT_OF_MEMORY;
}

dsv4_status dsv4_gen_message_response_json(const dsv4_gen *g, char **out)
{
    if (out) *out = NULL;
    if (!g || !out) return DSV4_ERR_INVALID_ARGUMENT;
    json_t *content = json_array();
    if (!content) return DSV4_ERR_OUT_OF_MEMORY;
    if (g->thinking)
        json_array_append_new(content, json_pack("{ss so ss}", "type", "thinking", "thinking",
                                                 jstr(g->reasoning.p, g->reasoning.n), "signature", ""));
    if (g->content.n || !g->n_calls)
        json_array_append_new(content, json_pack("{ss so}", "type", "text", "text", jstr(g->content.p, g->content.n)));
    for (size_t i = 0; i < g->n_calls; i++) {
        char id[96];
        tool_id(g, i, id, sizeof id);
        json_array_append_new(content, json_pack("{ss ss so so}", "type", "tool_use", "id", id, "name",
                                                 jstr(g->calls[i].name, strlen(g->calls[i].name)), "input",
                                                 tool_input(&g->calls[i])));
    }
    char id[96];
    msg_id(g, id, sizeof id);
    const char *sr = stop_reason(g);
    return dump(json_pack("{ss ss ss ss so so so so}", "id", id, "type", "message", "role", "assistant", "model",
                          g->model_name ? g->model_name : "deepseek-v4", "content", content, "stop_reason",
                          sr ? json_string(sr) : json_null(), "stop_sequence", stop_sequence(g), "usage", usage(g)),
                out);
}

/* one "event: NAME\ndata: JSON\n\n" frame */
static int frame(dsv4__sbuf *b, const char *name, json_t *data)
{
    if (!data) return -1;
    char *t = json_dumps(data, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(data);
    if (!t) return -1;
    int r = dsv4__sbuf_printf(b, "event: %s\ndata: %s\n\n", name, t);
    free(t);
    return r;
}

static int close_block(dsv4_gen *g, dsv4__sbuf *b)
{
    if (!g->msg_block) return 0;
    int r = 0;
    if (g->msg_block == 1)
        r = frame(b, "content_block_delta", json_pack("{ss sI s{ss ss}}", "type", "content_block_delta", "index",
                                                      (json_int_t)g->msg_index, "delta", "type", "signature_delta",
                                                      "signature", ""));
    g->msg_block = 0;
    return r ? r : frame(b, "content_block_stop", json_pack("{ss sI}", "type", "content_block_stop", "index", (json_int_t)g->msg_index));
}

/* open a block of `kind` (1 thinking, 2 text, 3 tool use) unless it is open */
static int open_block(dsv4_gen *g, dsv4__sbuf *b, int kind, json_t *block)
{
    if (g->msg_block == kind && kind != 3) {
        json_decref(block);
        return 0;
    }
    if (close_block(g, b)) { json_decref(block); return -1; }
    g->msg_block = kind;
    g->msg_index++;
    return frame(b, "content_block_start", json_pack("{ss sI so}", "type", "content_block_start", "index",
                                                     (json_int_t)g->msg_index, "content_block", block));
}

static int delta(dsv4_gen *g, dsv4__sbuf *b, const char *type, const char *key, const char *d, size_t n)
{
    return frame(b, "content_block_delta", json_pack("{ss sI s{ss so}}", "type", "content_block_delta", "index",
                                                     (json_int_t)g->msg_index, "delta", "type", type, key, jstr(d, n)));
}

dsv4_status dsv4_gen_next_message_event(dsv4_gen *g, char **out)
{
    if (out) *out = NULL;
    if (!g || !out) return DSV4_ERR_INVALID_ARGUMENT;
    if (!g->started) return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "no generation started");
    if (g->msg_state == 2) return DSV4_OK;
    dsv4__sbuf b = { 0 };
    int r = 0;
    if (g->msg_state == 0) {
        g->msg_state = 1;
        g->msg_block = 0;
        g->msg_index = -1;
        char id[96];
        msg_id(g, id, sizeof id);
        /* thinking mode: the thinking block comes first, even when empty
         * (as in dsv4_gen_message_response_json) */
        r = frame(&b, "message_start",
                  json_pack("{ss s{ss ss ss ss s[] sn sn so}}", "type", "message_start", "message", "id", id, "type",
                            "message", "role", "assistant", "model", g->model_name ? g->model_name : "deepseek-v4",
                            "content", "stop_reason", "stop_sequence", "usage", usage(g)));
        if (!r && g->thinking)
            r = open_block(g, &b, 1, json_pack("{ss ss ss}", "type", "thinking", "thinking", "", "signature", ""));
        if (r) goto oom;
        *out = b.p;
        return DSV4_OK;
    }
    for (;;) {
        dsv4_gen_event_type t;
        int32_t idx;
        const char *d;
        size_t n;
        dsv4_status st = dsv4_gen_next(g, &t, &idx, &d, &n);
        if (st) {
            dsv4__sbuf_free(&b);
            return st;
        }
        switch (t) {
        case DSV4_GEN_EVENT_REASONING:
            r = open_block(g, &b, 1, json_pack("{ss ss ss}", "type", "thinking", "thinking", "", "signature", ""));
            if (!r) r = delta(g, &b, "thinking_delta", "thinking", d, n);
            break;
        case DSV4_GEN_EVENT_CONTENT:
            r = open_block(g, &b, 2, json_pack("{ss ss}", "type", "text", "text", ""));
            if (!r) r = delta(g, &b, "text_delta", "text", d, n);
            break;
        case DSV4_GEN_EVENT_TOOL_CALL_START: {
            char id[96];
            tool_id(g, (size_t)idx, id, sizeof id);
            r = open_block(g, &b, 3, json_pack("{ss ss so s{}}", "type", "tool_use", "id", id, "name", jstr(d, n), "input"));
            break;
        }
        case DSV4_GEN_EVENT_TOOL_CALL_ARGS:
            r = delta(g, &b, "input_json_delta", "partial_json", d, n);
            break;
        case DSV4_GEN_EVENT_TOOL_CALL_END:
            r = close_block(g, &b);
            break;
        case DSV4_GEN_EVENT_STOP: {
            g->msg_state = 2;
            /* an answer with no block at all still gets an (empty) text block */
            if (g->msg_index < 0) r = open_block(g, &b, 2, json_pack("{ss ss}", "type", "text", "text", ""));
            if (!r) r = close_block(g, &b);
            const char *sr = stop_reason(g);
            if (!r) r = frame(&b, "message_delta",
                              json_pack("{ss s{ss so} so}", "type", "message_delta", "delta", "stop_reason",
                                        sr ? sr : "end_turn", "stop_sequence", stop_sequence(g), "usage", usage(g)));
            if (!r) r = frame(&b, "message_stop", json_pack("{ss}", "type", "message_stop"));
            break;
        }
        default:
            break;
        }
        if (r) goto oom;
        if (b.n) {
            *out = b.p;
            return DSV4_OK;
        }
    }
oom:
    dsv4__sbuf_free(&b);
    return DSV4_ERR_OUT_OF_MEMORY;
}
