/*
 * lib/gen/request.c — the OpenAI-style request JSON in (settings and
 * prompt), the response / chunk JSON out (see dsv4_gen.h).
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "chat/chat_int.h"
#include "core/core.h"
#include "core/effort.h"
#include "core/jsonf.h"
#include "core/utf8.h"
#include "gen/gen_int.h"
#include "gen/sampler_int.h"

/* ------------------------------------------------------------------------ */
/* request                                                                   */
/* ------------------------------------------------------------------------ */

/* fields dsv4_chat_render reads, and the generation fields read here */
static const char *const known_fields[] = {
    "messages", "prompt", "suffix", "tools", "thinking", "thinking_mode", "reasoning_effort", "drop_thinking",
    "model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
    "min_p", "seed", "frequency_penalty", "presence_penalty", "repetition_penalty", "logit_bias", "stop",
    "response_format", "tool_choice", "logprobs", "top_logprobs", "thinking_budget", "n", "user",
    "parallel_tool_calls", "echo",
};

static int is_number(const json_t *v) { return json_is_integer(v) || json_is_real(v); }

#define BAD(...) (dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, __VA_ARGS__))

/* typed optional fields (core/jsonf.h), their errors as the generator's */
static dsv4_status field_err(dsv4_gen *g, dsv4_status st, const dsv4__err *e)
{
    return st ? dsv4__gen_fail(g, st, "request: %s", e->msg) : DSV4_OK;
}

static dsv4_status num_field(dsv4_gen *g, json_t *req, const char *k, double lo, double hi, double *out, int *has)
{
    dsv4__err e = { 0, "" };
    return field_err(g, dsv4__jsonf_num(req, k, lo, hi, out, has, &e), &e);
}

static dsv4_status int_field(dsv4_gen *g, json_t *req, const char *k, int64_t lo, int64_t hi, int64_t *out, int *has)
{
    dsv4__err e = { 0, "" };
    return field_err(g, dsv4__jsonf_int(req, k, lo, hi, out, has, &e), &e);
}

static dsv4_status bool_field(dsv4_gen *g, json_t *req, const char *k, int *out, int *has)
{
    dsv4__err e = { 0, "" };
    return field_err(g, dsv4__jsonf_bool(req, k, out, has, &e), &e);
}

/* Validate and apply everything; on failure the generator's settings are
 * left as they were (they are staged in locals and applied at the end).
 * Each step happens once: the request is parsed once, the prompt rendered
 * from the parsed request and encoded once, the content constraint
 * compiled once (handed back in *cons for dsv4__gen_start). */
dsv4_status dsv4__gen_apply_request(dsv4_gen *g, const char *json, size_t len, int32_t **ids_out, size_t *n_out,
                                    dsv4__cons **cons_out)
{
    *ids_out = NULL;
    *n_out = 0;
    *cons_out = NULL;
    json_error_t je;
    json_t *req = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!req) return dsv4__gen_fail(g, DSV4_ERR_BAD_FORMAT, "request is not JSON: %s (line %d)", je.text, je.line);
    dsv4_status st = DSV4_OK;
    char *prompt = NULL;
    char *tools_txt = NULL, *schema_txt = NULL;
    json_t *schema = NULL, *tools_arr = NULL;
    dsv4__cons *cons = NULL, *tools_cons = NULL;
    int32_t *ids = NULL;
    if (!json_is_object(req)) { st = BAD("request: not a JSON object"); goto out; }
    const char *key;
    json_t *val;
    json_object_foreach(req, key, val) {
        size_t k = 0;
        while (k < DSV4__ARRAY_LEN(known_fields) && strcmp(known_fields[k], key)) k++;
        if (k == DSV4__ARRAY_LEN(known_fields)) { st = BAD("request: unknown field \"%.60s\"", key); goto out; }
    }
    int has;
    int64_t i64;
    /* staged settings */
    struct {
        int has_max, has_temp, has_top_p, has_top_k, has_min_p, has_seed, has_freq, has_pres, has_rep;
        int64_t max, top_k, seed;
        double temp, top_p, min_p, freq, pres, rep;
        int stream, include_usage, logprobs, has_logprobs, top_lp_has;
        int64_t top_lp, budget;
        int has_budget, fmt, tool_choice, effort;
        char *forced;
    } s;
    memset(&s, 0, sizeof s);
    s.fmt = -1;
    s.tool_choice = -1;
    if ((st = int_field(g, req, "max_tokens", 1, INT32_MAX, &s.max, &s.has_max))) goto out;
    if (!s.has_max && (st = int_field(g, req, "max_completion_tokens", 1, INT32_MAX, &s.max, &s.has_max))) goto out;
    if ((st = num_field(g, req, "temperature", 0, 2, &s.temp, &s.has_temp))) goto out;
    if ((st = num_field(g, req, "top_p", 0, 1, &s.top_p, &s.has_top_p))) goto out;
    if (s.has_top_p && s.top_p == 0) s.top_p = 1e-9; /* OpenAI accepts 0: the most likely token only */
    if ((st = int_field(g, req, "top_k", 0, INT32_MAX, &s.top_k, &s.has_top_k))) goto out;
    if ((st = num_field(g, req, "min_p", 0, 1, &s.min_p, &s.has_min_p))) goto out;
    if ((st = int_field(g, req, "seed", INT64_MIN, INT64_MAX, &s.seed, &s.has_seed))) goto out;
    if ((st = num_field(g, req, "frequency_penalty", -2, 2, &s.freq, &s.has_freq))) goto out;
    if ((st = num_field(g, req, "presence_penalty", -2, 2, &s.pres, &s.has_pres))) goto out;
    if ((st = num_field(g, req, "repetition_penalty", 1e-6, 1e6, &s.rep, &s.has_rep))) goto out;
    if ((st = bool_field(g, req, "stream", &s.stream, &has))) goto out;
    if ((st = bool_field(g, req, "logprobs", &s.logprobs, &s.has_logprobs))) goto out;
    if ((st = int_field(g, req, "top_logprobs", 0, 20, &s.top_lp, &s.top_lp_has))) goto out;
    if ((st = int_field(g, req, "thinking_budget", -1, INT32_MAX, &s.budget, &s.has_budget))) goto out;
    if ((st = int_field(g, req, "n", 1, 1, &i64, &has))) goto out;
    {
        dsv4__err e = { 0, "" };
        if ((st = field_err(g, dsv4__effort_field(req, "reasoning_effort", &s.effort, &e), &e))) goto out;
    }
    json_t *so = json_object_get(req, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) { st = BAD("request: \"stream_options\" must be an object"); goto out; }
        json_object_foreach(so, key, val) {
            if (strcmp(key, "include_usage")) { st = BAD("request: unknown field \"stream_options.%.40s\"", key); goto out; }
            if (!json_is_boolean(val)) { st = BAD("request: \"stream_options.include_usage\" must be a boolean"); goto out; }
            s.include_usage = json_is_true(val);
        }
    }
    json_t *m = json_object_get(req, "model");
    if (m && !json_is_null(m) && !json_is_string(m)) { st = BAD("request: \"model\" must be a string"); goto out; }
    json_t *lb = json_object_get(req, "logit_bias");
    if (lb && !json_is_null(lb)) {
        if (!json_is_object(lb)) { st = BAD("request: \"logit_bias\" must be an object"); goto out; }
        json_object_foreach(lb, key, val) {
            char *end;
            long id = strtol(key, &end, 10);
            if (*key == 0 || *end || id < 0 || id >= g->n_vocab) { st = BAD("request: logit_bias key \"%.20s\" is not a token id", key); goto out; }
            if (!is_number(val) || json_number_value(val) < -100 || json_number_value(val) > 100) {
                st = BAD("request: logit_bias values must be numbers in [-100, 100]");
                goto out;
            }
        }
    }
    json_t *stop = json_object_get(req, "stop");
    if (stop && !json_is_null(stop)) {
        if (json_is_string(stop)) {
            if (json_string_length(stop) < 1 || json_string_length(stop) > DSV4__GEN_MAX_STOP_LEN) { st = BAD("request: a stop string has 1 to 256 bytes"); goto out; }
        } else if (json_is_array(stop)) {
            if (json_array_size(stop) > DSV4__GEN_MAX_STOPS) { st = BAD("request: at most 16 stop strings"); goto out; }
            size_t k;
            json_array_foreach(stop, k, val) {
                if (!json_is_string(val)) { st = BAD("request: \"stop\" entries must be strings"); goto out; }
                if (json_string_length(val) < 1 || json_string_length(val) > DSV4__GEN_MAX_STOP_LEN) { st = BAD("request: a stop string has 1 to 256 bytes"); goto out; }
            }
        } else {
            st = BAD("request: \"stop\" must be a string or an array of strings");
            goto out;
        }
    }
    json_t *rf = json_object_get(req, "response_format");
    if (rf && !json_is_null(rf)) {
        const char *t = json_is_object(rf) ? json_string_value(json_object_get(rf, "type")) : NULL;
        if (!t) { st = BAD("request: \"response_format\" must be an object with a \"type\""); goto out; }
        if (!strcmp(t, "text")) s.fmt = DSV4_RESPONSE_TEXT;
        else if (!strcmp(t, "json_object")) s.fmt = DSV4_RESPONSE_JSON_OBJECT;
        else if (!strcmp(t, "json_schema")) {
            json_t *js = json_object_get(rf, "json_schema"), *sc = json_is_object(js) ? json_object_get(js, "schema") : NULL;
            if (!json_is_object(sc)) { st = BAD("request: response_format json_schema needs \"json_schema\": {\"schema\": {...}}"); goto out; }
            schema = sc;
            s.fmt = DSV4_RESPONSE_JSON_SCHEMA;
        } else {
            st = BAD("request: response_format type \"%.40s\" is not text, json_object or json_schema", t);
            goto out;
        }
    }
    json_t *tools = json_object_get(req, "tools");
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) { st = BAD("request: \"tools\" must be an array"); goto out; }
        if (json_array_size(tools)) tools_arr = tools;
    }
    json_t *tc = json_object_get(req, "tool_choice");
    if (tc && !json_is_null(tc)) {
        if (json_is_string(tc)) {
            const char *t = json_string_value(tc);
            if (!strcmp(t, "none")) s.tool_choice = DSV4_TOOLS_NONE;
            else if (!strcmp(t, "auto")) s.tool_choice = DSV4_TOOLS_AUTO;
            else if (!strcmp(t, "required")) s.tool_choice = DSV4_TOOLS_REQUIRED;
            else { st = BAD("request: tool_choice \"%.40s\" is not none, auto or required", t); goto out; }
        } else if (json_is_object(tc)) {
            json_t *fn = json_object_get(tc, "function");
            const char *nm = json_is_object(fn) ? json_string_value(json_object_get(fn, "name")) : NULL;
            if (!nm) { st = BAD("request: tool_choice object needs function.name"); goto out; }
            s.forced = (char *)nm;
            s.tool_choice = DSV4_TOOLS_REQUIRED;
        } else {
            st = BAD("request: \"tool_choice\" must be a string or an object");
            goto out;
        }
        if (s.tool_choice != DSV4_TOOLS_NONE && !tools_arr) { st = BAD("request: tool_choice without tools"); goto out; }
    }
    if (s.fmt >= DSV4_RESPONSE_JSON_OBJECT && s.tool_choice == DSV4_TOOLS_REQUIRED) {
        st = BAD("request: a JSON response_format and required tool calls exclude each other");
        goto out;
    }
    /* the prompt: rendered from the parsed request, encoded once (a token
     * covers at least one byte, so the prompt's length in bytes bounds the
     * ids) */
    dsv4__err e = { 0 };
    st = dsv4__chat_render_json(req, &prompt, &e);
    if (st) { dsv4__gen_fail(g, st, "%s", e.msg[0] ? e.msg : "request: cannot render the prompt"); goto out; }
    size_t n = 0, plen = strlen(prompt), cap = plen ? plen : 1;
    ids = dsv4__malloc(cap * sizeof *ids);
    if (!ids) { st = DSV4_ERR_OUT_OF_MEMORY; goto out; }
    st = dsv4_tokenizer_encode(g->tok, prompt, plen, 0, ids, cap, &n, NULL);
    if (st == DSV4_ERR_BUFFER_TOO_SMALL) {
        /* not reached (the bound above holds); kept so a tokenizer change cannot overflow */
        int32_t *big = dsv4__realloc(ids, n * sizeof *ids);
        if (!big) { st = DSV4_ERR_OUT_OF_MEMORY; goto out; }
        ids = big;
        st = dsv4_tokenizer_encode(g->tok, prompt, plen, 0, ids, n, &n, NULL);
    }
    if (st) { dsv4__gen_fail(g, st, "request: cannot tokenize the prompt"); goto out; }
    dsv4_free(prompt);
    prompt = NULL;

    /* compile the constraints (once) before changing anything: the schema's,
     * and the tools' whenever tools are given (their check; kept as the
     * content constraint when it is the one the settings select) */
    int eff_choice = s.tool_choice >= 0 ? s.tool_choice : s.forced ? DSV4_TOOLS_REQUIRED : DSV4_TOOLS_AUTO;
    if (s.fmt == DSV4_RESPONSE_JSON_SCHEMA) {
        st = dsv4__cons_json_value(schema, 0, &cons, &e);
        if (st) { dsv4__gen_fail(g, st, "request: %s", e.msg); goto out; }
    }
    if (tools_arr) {
        st = dsv4__cons_dsml_value(tools_arr, eff_choice == DSV4_TOOLS_REQUIRED ? DSV4__TOOLS_REQUIRED : DSV4__TOOLS_AUTO,
                                   s.forced, &tools_cons, &e);
        if (st) { dsv4__gen_fail(g, st, "request: %s", e.msg); goto out; }
        if (s.fmt < DSV4_RESPONSE_JSON_OBJECT && eff_choice != DSV4_TOOLS_NONE) {
            cons = tools_cons;
            tools_cons = NULL;
        }
    }
    /* the generator keeps the texts, for later starts with the same settings */
    if (schema && !(schema_txt = json_dumps(schema, JSON_COMPACT | JSON_PRESERVE_ORDER))) { st = DSV4_ERR_OUT_OF_MEMORY; goto out; }
    if (tools_arr && !(tools_txt = json_dumps(tools_arr, JSON_COMPACT | JSON_PRESERVE_ORDER))) { st = DSV4_ERR_OUT_OF_MEMORY; goto out; }

    /* apply: the request is self-contained, so what it does not say takes
     * the defaults (a server may reuse one generator for many requests) */
    dsv4_sampler *sp = g->sampler;
    dsv4__sampler_defaults(sp);
    g->max_tokens = 4096;
    g->budget = -1;
    g->effort = DSV4_EFFORT_DEFAULT;
    g->logprobs = g->top_logprobs = 0;
    g->resp_fmt = DSV4_RESPONSE_TEXT;
    dsv4_gen_add_stop(g, NULL, 0);
    dsv4_gen_set_tools(g, NULL, 0, NULL);
    dsv4_gen_set_json_schema(g, NULL, 0);
    if (s.has_temp) dsv4_sampler_set_f64(sp, DSV4_SAMPLER_TEMPERATURE, s.temp);
    if (s.has_top_p) dsv4_sampler_set_f64(sp, DSV4_SAMPLER_TOP_P, s.top_p);
    if (s.has_top_k) dsv4_sampler_set_i64(sp, DSV4_SAMPLER_TOP_K, s.top_k);
    if (s.has_min_p) dsv4_sampler_set_f64(sp, DSV4_SAMPLER_MIN_P, s.min_p);
    if (s.has_seed) dsv4_sampler_set_i64(sp, DSV4_SAMPLER_SEED, s.seed);
    if (s.has_freq) dsv4_sampler_set_f64(sp, DSV4_SAMPLER_FREQUENCY_PENALTY, s.freq);
    if (s.has_pres) dsv4_sampler_set_f64(sp, DSV4_SAMPLER_PRESENCE_PENALTY, s.pres);
    if (s.has_rep) dsv4_sampler_set_f64(sp, DSV4_SAMPLER_REPETITION_PENALTY, s.rep);
    if (lb && json_is_object(lb)) {
        json_object_foreach(lb, key, val) {
            st = dsv4_sampler_set_logit_bias(sp, (int32_t)strtol(key, NULL, 10), (float)json_number_value(val));
            if (st) goto out;
        }
    }
    if (s.has_max) g->max_tokens = s.max;
    if (s.has_budget) g->budget = s.budget;
    g->effort = s.effort;
    if (s.has_logprobs) g->logprobs = s.logprobs;
    if (s.top_lp_has) g->top_logprobs = s.top_lp;
    if (stop && !json_is_null(stop)) {
        if (json_is_string(stop)) st = dsv4_gen_add_stop(g, json_string_value(stop), json_string_length(stop));
        else {
            size_t k;
            json_array_foreach(stop, k, val) {
                st = dsv4_gen_add_stop(g, json_string_value(val), json_string_length(val));
                if (st) break;
            }
        }
        if (st) goto out;
    }
    if (s.fmt == DSV4_RESPONSE_JSON_SCHEMA) {
        if ((st = dsv4__gen_store_schema(g, schema_txt, strlen(schema_txt)))) goto out;
    } else if (s.fmt >= 0) {
        g->resp_fmt = s.fmt;
    }
    if (tools_txt) {
        if ((st = dsv4__gen_store_tools(g, tools_txt, strlen(tools_txt), s.forced))) goto out;
        if (s.tool_choice >= 0) g->tool_choice = s.tool_choice;
    }
    g->from_request = 1;
    g->stream = s.stream;
    g->include_usage = s.include_usage;
    g->is_completion = json_object_get(req, "prompt") && json_array_size(json_object_get(req, "messages")) == 0;
    dsv4__free(g->model_name);
    g->model_name = dsv4__strdup(json_is_string(m) ? json_string_value(m) : "deepseek-v4");
    if (!g->model_name) { st = DSV4_ERR_OUT_OF_MEMORY; goto out; }
    *ids_out = ids;
    *n_out = n;
    *cons_out = cons;
    ids = NULL;
    cons = NULL;
out:
    dsv4__free(ids);
    dsv4__cons_free(cons);
    dsv4__cons_free(tools_cons);
    dsv4_free(prompt);
    free(tools_txt);
    free(schema_txt);
    json_decref(req);
    return st;
}

dsv4_status dsv4_gen_start_request(dsv4_gen *g, const char *request_json, size_t len)
{
    if (!g) return DSV4_ERR_INVALID_ARGUMENT;
    g->err[0] = 0;
    if (!request_json) return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "request is NULL");
    if (len > ((size_t)1 << 30)) return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "request above 1 GiB");
    int32_t *ids = NULL;
    size_t n = 0;
    dsv4__cons *cons = NULL;
    dsv4_status st = dsv4__gen_apply_request(g, request_json, len, &ids, &n, &cons);
    if (st) return st;
    st = dsv4__gen_start(g, ids, n, cons);
    dsv4__free(ids);
    if (!st) {
        static atomic_uint seq;
        g->created = (int64_t)time(NULL);
        snprintf(g->id, sizeof g->id, "chatcmpl-dsv4-%llx-%x", (unsigned long long)g->created,
                 atomic_fetch_add(&seq, 1) + 1);
        g->chunk_state = 0;
        g->msg_form = 0;
    }
    return st;
}

/* ------------------------------------------------------------------------ */
/* response                                                                  */
/* ------------------------------------------------------------------------ */

static json_t *jstr(const char *s, size_t n)
{
    size_t len = 0;
    char *c = dsv4__utf8_clean(s, n, &len);
    if (!c) return NULL;
    json_t *j = json_stringn(c, len);
    dsv4__free(c);
    return j;
}

static const char *finish_name(int f)
{
    switch (f) {
    case DSV4_FINISH_STOP: return "stop";
    case DSV4_FINISH_LENGTH: return "length";
    case DSV4_FINISH_TOOL_CALLS: return "tool_calls";
    case DSV4_FINISH_CANCELLED: return "cancelled";
    case DSV4_FINISH_ERROR: return "error";
    default: return NULL;
    }
}

static json_t *usage_json(const dsv4_gen *g)
{
    return json_pack("{sI sI sI sI sI s{sI} s{sI}}", "prompt_tokens", (json_int_t)g->prompt_tokens,
                     "completion_tokens", (json_int_t)g->n_gen, "total_tokens", (json_int_t)(g->prompt_tokens + g->n_gen),
                     "prompt_cache_hit_tokens", (json_int_t)g->cached, "prompt_cache_miss_tokens",
                     (json_int_t)(g->prompt_tokens - g->cached), "prompt_tokens_details", "cached_tokens",
                     (json_int_t)g->cached, "completion_tokens_details", "reasoning_tokens", (json_int_t)g->n_reason);
}

static json_t *token_entry(const dsv4_gen *g, int32_t id, float lp)
{
    size_t n;
    const char *p = dsv4__gen_piece(g, id, &n);
    json_t *bytes = json_array(), *o = json_object();
    if (!bytes || !o) { json_decref(bytes); json_decref(o); return NULL; }
    for (size_t i = 0; i < n; i++) json_array_append_new(bytes, json_integer((unsigned char)p[i]));
    json_object_set_new(o, "token", jstr(p, n));
    json_object_set_new(o, "logprob", json_real(isfinite(lp) ? lp : -9999.0));
    json_object_set_new(o, "bytes", bytes);
    return o;
}

/* logprobs of tokens [from, to) */
static json_t *logprobs_json(const dsv4_gen *g, int64_t from, int64_t to)
{
    if (!g->logprobs && !g->top_logprobs) return json_null();
    json_t *arr = json_array();
    for (int64_t i = from; i < to && arr; i++) {
        json_t *e = token_entry(g, g->tok_ids[i], g->tok_lp[i]), *tops = json_array();
        for (int k = 0; k < g->n_top[i] && tops; k++)
            json_array_append_new(tops, token_entry(g, g->top_ids[i * DSV4__GEN_MAX_TOP + k],
                                                    g->top_lp[i * DSV4__GEN_MAX_TOP + k]));
        if (e) json_object_set_new(e, "top_logprobs", tops ? tops : json_array());
        json_array_append_new(arr, e);
    }
    return arr ? json_pack("{so}", "content", arr) : NULL;
}

static char *call_id(const dsv4_gen *g, size_t i)
{
    char buf[96];
    snprintf(buf, sizeof buf, "call_%s_%zu", g->id[0] ? g->id + 9 : "dsv4", i);
    return dsv4__strdup(buf);
}

dsv4_status dsv4_gen_response_json(const dsv4_gen *g, char **out)
{
    if (out) *out = NULL;
    if (!g || !out) return DSV4_ERR_INVALID_ARGUMENT;
    json_t *root = json_object(), *choice = json_object(), *choices = json_array();
    if (!root || !choice || !choices) goto oom;
    json_object_set_new(root, "id", json_string(g->id[0] ? g->id : "chatcmpl-dsv4"));
    json_object_set_new(root, "object", json_string(g->is_completion ? "text_completion" : "chat.completion"));
    json_object_set_new(root, "created", json_integer(g->created));
    json_object_set_new(root, "model", json_string(g->model_name ? g->model_name : "deepseek-v4"));
    json_object_set_new(choice, "index", json_integer(0));
    if (g->is_completion) {
        json_object_set_new(choice, "text", jstr(g->content.p ? g->content.p : "", g->content.n));
    } else {
        json_t *msg = json_object();
        if (!msg) goto oom;
        json_object_set_new(msg, "role", json_string("assistant"));
        json_object_set_new(msg, "content", jstr(g->content.p ? g->content.p : "", g->content.n));
        if (g->thinking) json_object_set_new(msg, "reasoning_content", jstr(g->reasoning.p ? g->reasoning.p : "", g->reasoning.n));
        if (g->n_calls) {
            json_t *calls = json_array();
            for (size_t i = 0; i < g->n_calls && calls; i++) {
                char *id = call_id(g, i);
                json_t *c = json_pack("{ss ss s{so so}}", "id", id ? id : "call", "type", "function", "function", "name",
                                      jstr(g->calls[i].name, strlen(g->calls[i].name)), "arguments",
                                      jstr(g->calls[i].args.p ? g->calls[i].args.p : "", g->calls[i].args.n));
                dsv4__free(id);
                json_array_append_new(calls, c);
            }
            json_object_set_new(msg, "tool_calls", calls);
        }
        json_object_set_new(choice, "message", msg);
    }
    json_object_set_new(choice, "logprobs", logprobs_json(g, 0, g->n_gen));
    const char *fr = finish_name(g->finish);
    json_object_set_new(choice, "finish_reason", fr ? json_string(fr) : json_null());
    json_array_append_new(choices, choice);
    choice = NULL;
    json_object_set_new(root, "choices", choices);
    choices = NULL;
    json_object_set_new(root, "usage", usage_json(g));
    char *txt = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!txt) return DSV4_ERR_OUT_OF_MEMORY;
    *out = dsv4__strdup(txt);
    free(txt);
    return *out ? DSV4_OK : DSV4_ERR_OUT_OF_MEMORY;
oom:
    json_decref(root);
    json_decref(choice);
    json_decref(choices);
    return DSV4_ERR_OUT_OF_MEMORY;
}

static dsv4_status chunk_text(const dsv4_gen *g, json_t *delta, const char *finish, int with_usage, char **out)
{
    json_t *root = json_object(), *choice = json_object(), *choices = json_array();
    if (!root || !choice || !choices || !delta) {
        json_decref(root); json_decref(choice); json_decref(choices); json_decref(delta);
        return DSV4_ERR_OUT_OF_MEMORY;
    }
    json_object_set_new(root, "id", json_string(g->id[0] ? g->id : "chatcmpl-dsv4"));
    json_object_set_new(root, "object", json_string(g->is_completion ? "text_completion" : "chat.completion.chunk"));
    json_object_set_new(root, "created", json_integer(g->created));
    json_object_set_new(root, "model", json_string(g->model_name ? g->model_name : "deepseek-v4"));
    json_object_set_new(choice, "index", json_integer(0));
    if (g->is_completion) {
        /* the text of a completion chunk: the delta's content, "" for the
         * others (a new reference either way, handed to the choice) */
        json_t *t = json_object_get(delta, "content");
        json_object_set_new(choice, "text", t ? json_incref(t) : json_string(""));
        json_decref(delta);
    } else {
        json_object_set_new(choice, "delta", delta);
    }
    json_object_set_new(choice, "logprobs", json_null());
    json_object_set_new(choice, "finish_reason", finish ? json_string(finish) : json_null());
    json_array_append_new(choices, choice);
    json_object_set_new(root, "choices", choices);
    if (with_usage) json_object_set_new(root, "usage", usage_json(g));
    char *txt = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!txt) return DSV4_ERR_OUT_OF_MEMORY;
    *out = dsv4__strdup(txt);
    free(txt);
    return *out ? DSV4_OK : DSV4_ERR_OUT_OF_MEMORY;
}

dsv4_status dsv4_gen_next_chunk(dsv4_gen *g, char **out)
{
    if (out) *out = NULL;
    if (!g || !out) return DSV4_ERR_INVALID_ARGUMENT;
    if (!g->started) return dsv4__gen_fail(g, DSV4_ERR_INVALID_ARGUMENT, "no generation started");
    if (g->chunk_state == 2) return DSV4_OK;
    if (g->chunk_state == 0) {
        g->chunk_state = 1;
        json_t *d = g->thinking ? json_pack("{ss ss}", "role", "assistant", "reasoning_content", "")
                                : json_pack("{ss ss}", "role", "assistant", "content", "");
        return chunk_text(g, d, NULL, 0, out);
    }
    for (;;) {
        dsv4_gen_event_type t;
        int32_t idx;
        const char *d;
        size_t n;
        dsv4_status st = dsv4_gen_next(g, &t, &idx, &d, &n);
        if (st) return st;
        switch (t) {
        case DSV4_GEN_EVENT_REASONING:
            return chunk_text(g, json_pack("{so}", "reasoning_content", jstr(d, n)), NULL, 0, out);
        case DSV4_GEN_EVENT_CONTENT:
            return chunk_text(g, json_pack("{so}", "content", jstr(d, n)), NULL, 0, out);
        case DSV4_GEN_EVENT_TOOL_CALL_START: {
            char *id = call_id(g, (size_t)idx);
            json_t *delta = json_pack("{s[{sI ss ss s{so ss}}]}", "tool_calls", "index", (json_int_t)idx, "id",
                                      id ? id : "call", "type", "function", "function", "name", jstr(d, n), "arguments", "");
            dsv4__free(id);
            return chunk_text(g, delta, NULL, 0, out);
        }
        case DSV4_GEN_EVENT_TOOL_CALL_ARGS:
            return chunk_text(g, json_pack("{s[{sI s{so}}]}", "tool_calls", "index", (json_int_t)idx, "function",
                                           "arguments", jstr(d, n)), NULL, 0, out);
        case DSV4_GEN_EVENT_STOP: {
            g->chunk_state = 2;
            const char *fr = finish_name(idx);
            return chunk_text(g, json_object(), fr ? fr : "stop", g->include_usage || !g->from_request, out);
        }
        default:
            break; /* TOOL_CALL_END: nothing to send */
        }
    }
}

dsv4_status dsv4_gen_complete(dsv4_gen *g, const char *request_json, size_t len, char **response_json)
{
    if (response_json) *response_json = NULL;
    if (!g || !response_json) return DSV4_ERR_INVALID_ARGUMENT;
    dsv4_status st = dsv4_gen_start_request(g, request_json, len);
    if (st) return st;
    dsv4_gen_event_type t = DSV4_GEN_EVENT_NONE;
    while (t != DSV4_GEN_EVENT_STOP) {
        st = dsv4_gen_next(g, &t, NULL, NULL, NULL);
        if (st) return st;
    }
    return dsv4_gen_response_json(g, response_json);
}
