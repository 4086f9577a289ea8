/*
 * dsv4-server — an OpenAI- and Anthropic-compatible HTTP server on the
 * public libdsv4 API (docs/server.md).
 *
 *   dsv4-server [--host ADDR] [--port N] [--api-key KEY] [--parallel N]
 *               [--ctx N] [--threads N] [--queue N] [--timeout S]
 *               [--max-body BYTES] [--prompt-cache DIR] MODEL_DIR
 *
 * Threads: libmicrohttpd runs one thread per connection; those threads
 * parse requests, queue jobs and copy the bytes the engine produced to the
 * socket. One engine thread owns the context, its sessions and their
 * generators (a context is used by one thread at a time): it starts queued
 * jobs on free slots and advances every active slot by one step per round,
 * so all streams progress together. A client that goes away cancels its
 * generation (dsv4_gen_cancel) and its slot is free at the engine's next
 * round.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define DSV4_ENABLE_EXPERIMENTAL /* the experimental tier (docs/ABI.md) */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <dsv4/dsv4.h>
#include "../common/common.h"

#define PROG "dsv4-server"
#define EXIT_USAGE 2
#define EXIT_RUNTIME 1

/* ------------------------------------------------------------------------ */
/* small helpers                                                             */
/* ------------------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static int buf_add(buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + n + 1 > cap) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

static int buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int buf_printf(buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if ((size_t)n < sizeof tmp) return buf_add(b, tmp, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big) return -1;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int r = buf_add(b, big, (size_t)n);
    free(big);
    return r;
}

/* constant-time comparison (the time depends on the lengths only) */
static bool key_equal(const char *a, size_t an, const char *b, size_t bn)
{
    volatile unsigned char d = (unsigned char)(an != bn);
    for (size_t i = 0; i < bn; i++) d |= (unsigned char)(b[i] ^ (i < an ? a[i] : 0));
    return d == 0;
}

/* ------------------------------------------------------------------------ */
/* configuration                                                             */
/* ------------------------------------------------------------------------ */

typedef struct config {
    const char *host, *api_key, *model_dir, *prompt_cache, *tokenizer;
    int64_t port, parallel, ctx, threads, queue, timeout, max_body, prefill_chunk;
    int64_t mem_budget, mem_pct;   /* --mem-budget: bytes, or a percentage of the memory */
    bool mlock;                    /* --mlock */
    bool has_ctx, has_threads, quiet;
} config;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " PROG " [options] MODEL_DIR\n"
            "OpenAI- and Anthropic-compatible HTTP server for a DeepSeek-V4 checkpoint.\n\n"
            "  --host ADDR          address to listen on (default 127.0.0.1)\n"
            "  --port N             port (default 8080; 0 = any free port)\n"
            "  --api-key KEY        require this key (Authorization: Bearer KEY, or x-api-key: KEY)\n"
            "  --parallel N         generation slots served at once (default 4, at most 64)\n"
            "  --ctx N              context length of every slot (default: 8192, or the model's maximum)\n"
            "  --threads N          worker threads (default: the library's choice)\n"
            "  --queue N            requests waiting for a slot at most, then 429 (default 64)\n"
            "  --timeout S          seconds a connection may stay idle or take to send its request\n"
            "                       (default 30)\n"
            "  --max-body BYTES     largest request body accepted, then 413 (default 8388608)\n"
            "  --prefill-chunk N    prompt tokens fed per engine step beside the other streams' tokens\n"
            "                       (default 256; 0 = a prompt is fed whole when its request starts)\n"
            "  --tokenizer FILE     tokenizer.json (default MODEL_DIR/tokenizer.json)\n"
            "  --mem-budget SIZE|P%% keep the weights within SIZE bytes (K, M, G, T suffixes) or P%% of\n"
            "                       the memory: routed experts are read from the disk into a cache\n"
            "                       as needed (docs/memory.md; same outputs, slower)\n"
            "  --mlock              lock the weights held in memory (and the expert cache) so the\n"
            "                       system never pages them out (best effort: a warning if refused)\n"
            "  --prompt-cache DIR   back the slots' shared prefix cache (kept in memory, 1 GiB) with\n"
            "                       files in DIR, which later server processes reuse\n"
            "  --quiet              no progress lines and no libmicrohttpd messages on stderr\n"
            "  --help, --version\n\n"
            "Endpoints: POST /v1/chat/completions, POST /v1/completions, POST /v1/messages,\n"
            "GET /v1/models, GET /health, GET /metrics (docs/server.md).\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(" PROG " --help lists the options)\n");
    return EXIT_USAGE;
}

/* --mem-budget: "12G", "12GiB", "800M", bytes, or "50%" of the physical memory */
static bool parse_budget(const char *v, int64_t *bytes, int64_t *pct)
{
    if (dsv4p_parse_size(v, bytes, pct)) return true;
    fprintf(stderr, PROG ": bad value for --mem-budget: '%s' (bytes with an optional K, M, G or T suffix, or "
            "a percentage such as 50%%)\n", v);
    return false;
}

static bool parse_i64(const char *name, const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        usage_error("bad value for %s: '%s' (an integer in [%" PRId64 ", %" PRId64 "])", name, s, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

/* -1: go on; else the exit status */
static int parse_args(int argc, char **argv, config *c)
{
    *c = (config){ .host = "127.0.0.1", .port = 8080, .parallel = 4, .queue = 64, .timeout = 30,
                   .max_body = 8 << 20, .prefill_chunk = 256 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--version")) {
            printf(PROG " (libdsv4 %s)\n", dsv4_version_string());
            return 0;
        }
        if (!strcmp(a, "--quiet")) {
            c->quiet = true;
            continue;
        }
        if (!strcmp(a, "--mlock")) {
            c->mlock = true;
            continue;
        }
        if (a[0] == '-' && a[1] == '-') {
            if (i + 1 >= argc) return usage_error("%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--host")) c->host = v;
            else if (!strcmp(a, "--api-key")) {
                if (!*v) return usage_error("--api-key is empty");
                c->api_key = v;
            } else if (!strcmp(a, "--prompt-cache")) c->prompt_cache = v;
            else if (!strcmp(a, "--tokenizer")) c->tokenizer = v;
            else if (!strcmp(a, "--mem-budget")) { if (!parse_budget(v, &c->mem_budget, &c->mem_pct)) return EXIT_USAGE; }
            else if (!strcmp(a, "--port")) { if (!parse_i64(a, v, 0, 65535, &c->port)) return EXIT_USAGE; }
            else if (!strcmp(a, "--parallel")) { if (!parse_i64(a, v, 1, 64, &c->parallel)) return EXIT_USAGE; }
            else if (!strcmp(a, "--ctx")) {
                if (!parse_i64(a, v, 16, INT32_MAX, &c->ctx)) return EXIT_USAGE;
                c->has_ctx = true;
            } else if (!strcmp(a, "--threads")) {
                if (!parse_i64(a, v, 0, 1024, &c->threads)) return EXIT_USAGE;
                c->has_threads = true;
            } else if (!strcmp(a, "--queue")) { if (!parse_i64(a, v, 0, 100000, &c->queue)) return EXIT_USAGE; }
            else if (!strcmp(a, "--timeout")) { if (!parse_i64(a, v, 1, 86400, &c->timeout)) return EXIT_USAGE; }
            else if (!strcmp(a, "--prefill-chunk")) { if (!parse_i64(a, v, 0, 65536, &c->prefill_chunk)) return EXIT_USAGE; }
            else if (!strcmp(a, "--max-body")) { if (!parse_i64(a, v, 1024, (int64_t)1 << 30, &c->max_body)) return EXIT_USAGE; }
            else return usage_error("unknown option '%s'", a);
            continue;
        }
        if (a[0] == '-' && a[1]) return usage_error("unknown option '%s'", a);
        if (c->model_dir) return usage_error("one MODEL_DIR only ('%s' and '%s')", c->model_dir, a);
        c->model_dir = a;
    }
    if (!c->model_dir) return usage_error("missing MODEL_DIR");
    return -1;
}

/* ------------------------------------------------------------------------ */
/* jobs and slots                                                            */
/* ------------------------------------------------------------------------ */

enum api { API_CHAT, API_COMPLETIONS, API_MESSAGES };

typedef struct job {
    enum api api;
    bool stream;
    char *body;
    size_t len;
    /* guarded by srv.mu */
    pthread_cond_t cv;
    int refs;          /* the connection's and the engine's */
    int started;       /* 0 waiting, 1 started, -1 start failed */
    dsv4_status start_status;
    char start_err[600];
    buf out;           /* bytes produced, not yet sent */
    size_t out_off;
    bool finished;     /* no more bytes will be produced */
    bool abandoned;    /* the client went away */
    struct slot *slot; /* while running */
    struct job *next;  /* queue link */
    double t0;
} job;

typedef struct slot {
    dsv4_session *sess;
    dsv4_gen *gen;
    job *j;
    double t_start;
    char *last_body;   /* the last request served, to send a resent conversation back here */
    size_t last_len;
} slot;

static size_t common_prefix(const char *a, size_t an, const char *b, size_t bn)
{
    size_t n = an < bn ? an : bn, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

static struct server {
    config cfg;
    dsv4_model *model;
    dsv4_tokenizer *tok;
    dsv4_context *ctx;
    slot *slots;
    int n_slots;
    char model_name[256];
    int64_t n_ctx;
    struct MHD_Daemon *d;

    pthread_mutex_t mu;
    pthread_cond_t engine_cv;
    job *q_head, *q_tail;
    int q_len;
    bool stopping;
    pthread_t engine;

    /* metrics (guarded by mu) */
    uint64_t req[3], req_other, resp_2xx, resp_4xx, resp_5xx, rejected_429, cancelled;
    uint64_t prompt_tokens, cached_tokens, completion_tokens, cache_hits;
    double busy_s, prompt_s;
    double started_at;
    dsv4_prefix_cache *cache; /* shared by every slot's session (docs/sessions.md) */
} S;

static void job_release(job *j) /* with S.mu held */
{
    if (--j->refs > 0) return;
    pthread_cond_destroy(&j->cv);
    free(j->body);
    free(j->out.p);
    free(j);
}

static void job_emit(job *j, const char *s, size_t n) /* with S.mu held */
{
    if (!j->abandoned && buf_add(&j->out, s, n) != 0) j->abandoned = true;
    pthread_cond_signal(&j->cv);
}

/* The JSON of an error in the API's own form. */
static char *error_json(enum api api, int http, const char *msg)
{
    const char *type = http == 401 ? "authentication_error"
                       : http == 404 ? "not_found_error"
                       : http == 413 ? "request_too_large"
                       : http == 429 ? "rate_limit_error"
                       : http >= 500 ? (api == API_MESSAGES ? "api_error" : "server_error")
                                     : "invalid_request_error";
    if (api != API_MESSAGES && http == 401) type = "invalid_request_error";
    json_t *root;
    if (api == API_MESSAGES) {
        root = json_pack("{ss s{ss ss}}", "type", "error", "error", "type", type, "message", msg);
    } else {
        /* the field the message names (the library quotes it first) */
        json_t *param = json_null();
        const char *q = strchr(msg, '"');
        const char *e = q ? strchr(q + 1, '"') : NULL;
        if (q && e && e - q - 1 > 0 && e - q - 1 < 64) param = json_stringn(q + 1, (size_t)(e - q - 1));
        const char *code = http == 401 ? "invalid_api_key" : http == 429 ? "rate_limit_exceeded" : NULL;
        root = json_pack("{s{ss ss so so}}", "error", "message", msg, "type", type, "param", param, "code",
                         code ? json_string(code) : json_null());
    }
    char *txt = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    return txt;
}

/* the end of a stream that could not finish normally */
static void job_emit_stream_error(job *j, const char *msg)
{
    char *e = error_json(j->api, 500, msg);
    if (!e) return;
    buf b = { 0 };
    if (j->api == API_MESSAGES) buf_printf(&b, "event: error\ndata: %s\n\n", e);
    else buf_printf(&b, "data: %s\n\n", e);
    free(e);
    if (b.p) job_emit(j, b.p, b.n);
    free(b.p);
}

/* ------------------------------------------------------------------------ */
/* the engine thread                                                         */
/* ------------------------------------------------------------------------ */

static void account_finished(slot *s) /* with S.mu held */
{
    dsv4_gen *g = s->gen;
    int64_t p = dsv4_gen_usage(g, DSV4_USAGE_PROMPT_TOKENS), c = dsv4_gen_usage(g, DSV4_USAGE_CACHED_TOKENS);
    S.prompt_tokens += p > 0 ? (uint64_t)p : 0;
    S.cached_tokens += c > 0 ? (uint64_t)c : 0;
    if (c > 0) S.cache_hits++;
    int64_t n = dsv4_gen_n_tokens(g);
    S.completion_tokens += n > 0 ? (uint64_t)n : 0;
    S.prompt_s += dsv4_gen_usage(g, DSV4_USAGE_PROMPT_NS) * 1e-9;
}

static void slot_free_job(slot *s) /* with S.mu held */
{
    job *j = s->j;
    s->j = NULL;
    j->slot = NULL;
    j->finished = true;
    pthread_cond_signal(&j->cv);
    job_release(j);
}

/* Start a job on a slot (engine thread, S.mu not held). */
static void engine_start(slot *s, job *j)
{
    dsv4_status st;
    if (j->api == API_MESSAGES) st = dsv4_gen_start_messages(s->gen, j->body, j->len);
    else st = dsv4_gen_start_request(s->gen, j->body, j->len);
    pthread_mutex_lock(&S.mu);
    if (st != DSV4_OK) {
        j->start_status = st;
        snprintf(j->start_err, sizeof j->start_err, "%s", dsv4_gen_last_error(s->gen)[0] ? dsv4_gen_last_error(s->gen)
                                                                                           : dsv4_status_string(st));
        j->started = -1;
        if (st == DSV4_ERR_ABORTED) S.cancelled++;
        slot_free_job(s);
    } else {
        j->started = 1;
        pthread_cond_signal(&j->cv);
    }
    pthread_mutex_unlock(&S.mu);
}

/* Hand a running slot's queued output to its connection (engine thread,
 * S.mu not held): the chunks or events its generator has ready — taken only
 * while events are queued or the generation has ended, so this never
 * generates — and, at the end, the whole response. */
static void engine_drain(slot *s)
{
    job *j = s->j;
    dsv4_gen *g = s->gen;
    buf b = { 0 };
    bool done = false;
    dsv4_status st = DSV4_OK;
    /* stopping: the generations were cancelled; the streams end with an
     * error event (engine_main), not with a normal finish */
    pthread_mutex_lock(&S.mu);
    bool stopping = S.stopping;
    pthread_mutex_unlock(&S.mu);
    if (stopping) return;
    if (j->stream) {
        while (st == DSV4_OK && (dsv4_gen_queued_events(g) > 0 || dsv4_gen_finish_reason(g) != DSV4_FINISH_NONE)) {
            char *out = NULL;
            if (j->api == API_MESSAGES) st = dsv4_gen_next_message_event(g, &out);
            else st = dsv4_gen_next_chunk(g, &out);
            if (st) break;
            if (!out) {
                if (j->api != API_MESSAGES) buf_add(&b, "data: [DONE]\n\n", 14);
                done = true;
                break;
            }
            if (j->api == API_MESSAGES) buf_add(&b, out, strlen(out));
            else buf_printf(&b, "data: %s\n\n", out);
            dsv4_free(out);
        }
    } else {
        dsv4_gen_event_type t = DSV4_GEN_EVENT_NONE;
        while (dsv4_gen_queued_events(g) > 0 && dsv4_gen_poll(g, &t, NULL, NULL, NULL) == DSV4_OK && t != DSV4_GEN_EVENT_NONE) {
        }
        if (dsv4_gen_finish_reason(g) != DSV4_FINISH_NONE) {
            char *out = NULL;
            if (j->api == API_MESSAGES) st = dsv4_gen_message_response_json(g, &out);
            else st = dsv4_gen_response_json(g, &out);
            if (out) buf_add(&b, out, strlen(out));
            dsv4_free(out);
            done = true;
        }
    }
    if (st) done = true;
    pthread_mutex_lock(&S.mu);
    if (st != DSV4_OK) {
        if (j->stream) job_emit_stream_error(j, dsv4_status_string(st));
        else {
            j->start_status = st;
            snprintf(j->start_err, sizeof j->start_err, "%s", dsv4_status_string(st));
        }
    } else if (b.n) {
        job_emit(j, b.p, b.n);
    }
    if (done) {
        if (j->abandoned) S.cancelled++;
        account_finished(s);
        slot_free_job(s);
    }
    pthread_mutex_unlock(&S.mu);
    free(b.p);
}

/* The first chunk of a stream (the role chunk, or message_start), which
 * generates nothing, right after the start. */
static void engine_first(slot *s)
{
    if (!s->j || !s->j->stream || s->j->started != 1) return;
    char *out = NULL;
    dsv4_status st = s->j->api == API_MESSAGES ? dsv4_gen_next_message_event(s->gen, &out)
                                               : dsv4_gen_next_chunk(s->gen, &out);
    if (st || !out) return;
    pthread_mutex_lock(&S.mu);
    if (s->j->api == API_MESSAGES) job_emit(s->j, out, strlen(out));
    else {
        job_emit(s->j, "data: ", 6);
        job_emit(s->j, out, strlen(out));
        job_emit(s->j, "\n\n", 2);
    }
    pthread_mutex_unlock(&S.mu);
    dsv4_free(out);
}

static void *engine_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&S.mu);
    for (;;) {
        int active = 0;
        for (int i = 0; i < S.n_slots; i++) active += S.slots[i].j != NULL;
        if (S.stopping) break;
        if (!active && !S.q_head) {
            pthread_cond_wait(&S.engine_cv, &S.mu);
            continue;
        }
        double t0 = now_s();
        /* hand queued jobs to free slots and start them (the prompt is fed by
         * the steps below, --prefill-chunk tokens at a time) */
        for (;;) {
            job *j = S.q_head;
            if (!j) break;
            /* the free slot whose last request shares the longest start with
             * this one (a conversation resent with a new turn finds the
             * session that holds its beginning; the session's tokens then
             * decide what is reused) */
            slot *s = NULL;
            size_t best = 0;
            for (int i = 0; i < S.n_slots; i++) {
                slot *c = &S.slots[i];
                if (c->j) continue;
                size_t cp = c->last_body ? common_prefix(c->last_body, c->last_len, j->body, j->len) : 0;
                if (cp < 64) cp = 0; /* a few shared bytes ("{\"model\":") say nothing */
                /* ties: the slot used least recently (an unused one first) */
                if (!s || cp > best || (cp == best && c->t_start < s->t_start)) { s = c; best = cp; }
            }
            if (!s) break;
            S.q_head = j->next;
            if (!S.q_head) S.q_tail = NULL;
            S.q_len--;
            if (j->abandoned) { /* gone while waiting */
                j->finished = true;
                job_release(j);
                continue;
            }
            char *copy = malloc(j->len ? j->len : 1);
            if (copy) {
                memcpy(copy, j->body, j->len);
                free(s->last_body);
                s->last_body = copy;
                s->last_len = j->len;
            }
            s->j = j;
            j->slot = s;
            s->t_start = now_s();
            pthread_mutex_unlock(&S.mu);
            engine_start(s, j);
            engine_first(s);
            pthread_mutex_lock(&S.mu);
            if (S.stopping) break;
        }
        /* clients gone: their slots are free now */
        dsv4_gen *gens[64];
        slot *run[64];
        int n = 0;
        for (int i = 0; i < S.n_slots && !S.stopping; i++) {
            slot *s = &S.slots[i];
            if (!s->j || s->j->started != 1) continue;
            if (s->j->abandoned) {
                dsv4_gen_cancel(s->gen);
                account_finished(s);
                S.cancelled++;
                slot_free_job(s);
                continue;
            }
            run[n] = s;
            gens[n++] = s->gen;
        }
        if (S.stopping) break;
        /* one step of every running slot, as one batch through the model
         * (a prompt being fed advances by one chunk beside the others) */
        if (n) {
            pthread_mutex_unlock(&S.mu);
            int32_t nt = 0;
            dsv4_gen_step_batch(gens, n, &nt);
            for (int i = 0; i < n; i++) engine_drain(run[i]);
            pthread_mutex_lock(&S.mu);
        }
        S.busy_s += now_s() - t0;
    }
    /* stopping: running streams end with an error event, queued jobs fail */
    for (int i = 0; i < S.n_slots; i++) {
        slot *s = &S.slots[i];
        if (!s->j) continue;
        if (s->j->stream && s->j->started == 1) job_emit_stream_error(s->j, "the server is shutting down");
        if (!s->j->stream || s->j->started != 1) {
            s->j->started = -1;
            s->j->start_status = DSV4_ERR_ABORTED;
            snprintf(s->j->start_err, sizeof s->j->start_err, "the server is shutting down");
        }
        slot_free_job(s);
    }
    while (S.q_head) {
        job *j = S.q_head;
        S.q_head = j->next;
        j->started = -1;
        j->start_status = DSV4_ERR_ABORTED;
        snprintf(j->start_err, sizeof j->start_err, "the server is shutting down");
        j->finished = true;
        pthread_cond_signal(&j->cv);
        job_release(j);
    }
    S.q_tail = NULL;
    S.q_len = 0;
    pthread_mutex_unlock(&S.mu);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* HTTP                                                                      */
/* ------------------------------------------------------------------------ */

typedef struct conn {
    double last_sent;  /* when the stream last sent bytes */
    buf body;
    bool too_big, counted;
    job *j;
    struct MHD_Connection *c;
} conn;

/* true when the peer closed its side (or the socket failed) */
static bool peer_gone(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd p = { .fd = ci->connect_fd, .events = POLLIN | POLLRDHUP };
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
    if (p.revents & POLLIN) {
        char ch;
        ssize_t r = recv(ci->connect_fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
        return r == 0;
    }
    return false;
}

static void count_status(int code) /* with S.mu held */
{
    if (code < 400) S.resp_2xx++;
    else if (code < 500) S.resp_4xx++;
    else S.resp_5xx++;
}

static enum MHD_Result reply(struct MHD_Connection *c, int code, const char *type, const char *body, size_t n)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(n, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    if (code == 429) MHD_add_response_header(r, "Retry-After", "1");
    if (code == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)code, r);
    MHD_destroy_response(r);
    pthread_mutex_lock(&S.mu);
    count_status(code);
    pthread_mutex_unlock(&S.mu);
    return ret;
}

static enum MHD_Result reply_error(struct MHD_Connection *c, enum api api, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static enum MHD_Result reply_error(struct MHD_Connection *c, enum api api, int code, const char *fmt, ...)
{
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *e = error_json(api, code, msg);
    enum MHD_Result r = reply(c, code, "application/json", e ? e : "{}", e ? strlen(e) : 2);
    free(e);
    return r;
}

static int status_http(dsv4_status st)
{
    switch (st) {
    case DSV4_ERR_INVALID_ARGUMENT:
    case DSV4_ERR_BAD_FORMAT:
    case DSV4_ERR_UNSUPPORTED:
    case DSV4_ERR_CONTEXT_FULL: return 400;
    case DSV4_ERR_ABORTED: return 503;
    default: return 500;
    }
}

/* the SSE stream: bytes as the engine produces them */
static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    conn *cc = cls;
    job *j = cc->j;
    pthread_mutex_lock(&S.mu);
    for (;;) {
        if (j->out.n > j->out_off) {
            size_t k = j->out.n - j->out_off;
            if (k > max) k = max;
            memcpy(out, j->out.p + j->out_off, k);
            j->out_off += k;
            if (j->out_off == j->out.n) j->out.n = j->out_off = 0;
            pthread_mutex_unlock(&S.mu);
            cc->last_sent = now_s();
            return (ssize_t)k;
        }
        if (j->finished) {
            pthread_mutex_unlock(&S.mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        if (pthread_cond_timedwait(&j->cv, &S.mu, &ts) == ETIMEDOUT && !j->finished && j->out.n == j->out_off) {
            pthread_mutex_unlock(&S.mu);
            bool gone = peer_gone(cc->c);
            pthread_mutex_lock(&S.mu);
            if (gone) {
                j->abandoned = true;
                if (j->slot) dsv4_gen_cancel(j->slot->gen);
                pthread_cond_signal(&S.engine_cv);
                pthread_mutex_unlock(&S.mu);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            /* silence (a long prompt being fed, text held back): a keep-alive
             * before the idle timeout closes the connection, only between
             * whole events (the buffer is empty here) */
            double ka = S.cfg.timeout / 2.0 < 5.0 ? S.cfg.timeout / 2.0 : 5.0;
            if (now_s() - cc->last_sent >= ka) {
                static const char ping_a[] = "event: ping\ndata: {\"type\":\"ping\"}\n\n", ping_o[] = ": keep-alive\n\n";
                const char *p = j->api == API_MESSAGES ? ping_a : ping_o;
                size_t k = strlen(p);
                if (k <= max) {
                    memcpy(out, p, k);
                    pthread_mutex_unlock(&S.mu);
                    cc->last_sent = now_s();
                    return (ssize_t)k;
                }
            }
        }
    }
}

/* the end of a request, whatever the reason (the response, and so the
 * stream reader, may outlive it: the reader gets no free callback) */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    conn *cc = *con_cls;
    if (!cc) return;
    pthread_mutex_lock(&S.mu);
    if (cc->j) {
        if (!cc->j->finished) {
            cc->j->abandoned = true;
            if (cc->j->slot) dsv4_gen_cancel(cc->j->slot->gen);
            pthread_cond_signal(&S.engine_cv);
        }
        job_release(cc->j);
    }
    pthread_mutex_unlock(&S.mu);
    free(cc->body.p);
    free(cc);
    *con_cls = NULL;
}

static bool authorized(struct MHD_Connection *c)
{
    if (!S.cfg.api_key) return true;
    size_t kn = strlen(S.cfg.api_key);
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key");
    bool ok = false;
    if (h && key_equal(h, strlen(h), S.cfg.api_key, kn)) ok = true;
    h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (h && !strncasecmp(h, "Bearer ", 7)) {
        const char *k = h + 7;
        while (*k == ' ') k++;
        if (key_equal(k, strlen(k), S.cfg.api_key, kn)) ok = true;
    }
    return ok;
}

/* the expert cache of a model loaded with --mem-budget (docs/memory.md):
 * nothing when the model has none */
static void metrics_expert_cache(buf *b)
{
    dsv4_model_info *info = NULL;
    int64_t budget = 0, bytes = 0, slots = 0, hits = 0, misses = 0, read = 0, resident = 0, per_tok = 0;
    if (dsv4_model_get_info(S.model, &info) != DSV4_OK) return;
    dsv4_model_info_get_i64(info, DSV4_INFO_MEM_BUDGET, &budget);
    dsv4_model_info_get_i64(info, DSV4_INFO_EXPERT_CACHE_BYTES, &bytes);
    dsv4_model_info_get_i64(info, DSV4_INFO_EXPERT_CACHE_SLOTS, &slots);
    dsv4_model_info_get_i64(info, DSV4_INFO_EXPERT_HITS, &hits);
    dsv4_model_info_get_i64(info, DSV4_INFO_EXPERT_MISSES, &misses);
    dsv4_model_info_get_i64(info, DSV4_INFO_DISK_BYTES_READ, &read);
    dsv4_model_info_get_i64(info, DSV4_INFO_RESIDENT_BYTES, &resident);
    dsv4_model_info_get_i64(info, DSV4_INFO_DISK_BYTES_PER_TOKEN, &per_tok);
    dsv4_model_info_free(info);
    if (budget <= 0) return;
    buf_printf(b, "# HELP dsv4_mem_budget_bytes The memory budget (--mem-budget).\n# TYPE dsv4_mem_budget_bytes gauge\n"
                  "dsv4_mem_budget_bytes %" PRId64 "\n", budget);
    buf_printf(b, "# HELP dsv4_resident_bytes Weights kept in memory.\n# TYPE dsv4_resident_bytes gauge\n"
                  "dsv4_resident_bytes %" PRId64 "\n", resident);
    buf_printf(b, "# HELP dsv4_expert_cache_bytes Memory of the expert cache.\n# TYPE dsv4_expert_cache_bytes gauge\n"
                  "dsv4_expert_cache_bytes %" PRId64 "\n", bytes);
    buf_printf(b, "# HELP dsv4_expert_cache_slots Experts the cache holds.\n# TYPE dsv4_expert_cache_slots gauge\n"
                  "dsv4_expert_cache_slots %" PRId64 "\n", slots);
    buf_printf(b, "# HELP dsv4_expert_cache_hits_total Expert uses found in the cache.\n# TYPE dsv4_expert_cache_hits_total counter\n"
                  "dsv4_expert_cache_hits_total %" PRId64 "\n", hits);
    buf_printf(b, "# HELP dsv4_expert_cache_misses_total Expert uses read from disk.\n# TYPE dsv4_expert_cache_misses_total counter\n"
                  "dsv4_expert_cache_misses_total %" PRId64 "\n", misses);
    buf_printf(b, "# HELP dsv4_disk_read_bytes_total Bytes of experts read from the shards.\n# TYPE dsv4_disk_read_bytes_total counter\n"
                  "dsv4_disk_read_bytes_total %" PRId64 "\n", read);
    buf_printf(b, "# HELP dsv4_disk_bytes_per_token_expected Expected disk bytes per token at the cache's size.\n"
                  "# TYPE dsv4_disk_bytes_per_token_expected gauge\ndsv4_disk_bytes_per_token_expected %" PRId64 "\n", per_tok);
}

static enum MHD_Result serve_metrics(struct MHD_Connection *c)
{
    buf b = { 0 };
    pthread_mutex_lock(&S.mu);
    int busy = 0;
    for (int i = 0; i < S.n_slots; i++) busy += S.slots[i].j != NULL;
    static const char *names[] = { "chat_completions", "completions", "messages" };
    buf_printf(&b, "# HELP dsv4_requests_total Requests received, by endpoint.\n# TYPE dsv4_requests_total counter\n");
    for (int i = 0; i < 3; i++) buf_printf(&b, "dsv4_requests_total{endpoint=\"%s\"} %" PRIu64 "\n", names[i], S.req[i]);
    buf_printf(&b, "dsv4_requests_total{endpoint=\"other\"} %" PRIu64 "\n", S.req_other);
    buf_printf(&b, "# HELP dsv4_responses_total Responses sent, by status class.\n# TYPE dsv4_responses_total counter\n");
    buf_printf(&b, "dsv4_responses_total{class=\"2xx\"} %" PRIu64 "\ndsv4_responses_total{class=\"4xx\"} %" PRIu64
                   "\ndsv4_responses_total{class=\"5xx\"} %" PRIu64 "\n", S.resp_2xx, S.resp_4xx, S.resp_5xx);
    buf_printf(&b, "# HELP dsv4_rejected_total Requests refused with 429 (queue full).\n# TYPE dsv4_rejected_total counter\n"
                   "dsv4_rejected_total %" PRIu64 "\n", S.rejected_429);
    buf_printf(&b, "# HELP dsv4_cancelled_total Generations cancelled (client gone).\n# TYPE dsv4_cancelled_total counter\n"
                   "dsv4_cancelled_total %" PRIu64 "\n", S.cancelled);
    buf_printf(&b, "# HELP dsv4_prompt_tokens_total Prompt tokens of finished requests.\n# TYPE dsv4_prompt_tokens_total counter\n"
                   "dsv4_prompt_tokens_total %" PRIu64 "\n", S.prompt_tokens);
    buf_printf(&b, "# HELP dsv4_completion_tokens_total Tokens generated.\n# TYPE dsv4_completion_tokens_total counter\n"
                   "dsv4_completion_tokens_total %" PRIu64 "\n", S.completion_tokens);
    buf_printf(&b, "# HELP dsv4_prompt_cache_hits_total Requests that reused cached prompt tokens.\n# TYPE dsv4_prompt_cache_hits_total counter\n"
                   "dsv4_prompt_cache_hits_total %" PRIu64 "\n", S.cache_hits);
    buf_printf(&b, "# HELP dsv4_prompt_cache_tokens_total Prompt tokens served from the cache.\n# TYPE dsv4_prompt_cache_tokens_total counter\n"
                   "dsv4_prompt_cache_tokens_total %" PRIu64 "\n", S.cached_tokens);
    buf_printf(&b, "# HELP dsv4_queue_length Requests waiting for a slot.\n# TYPE dsv4_queue_length gauge\n"
                   "dsv4_queue_length %d\n", S.q_len);
    buf_printf(&b, "# HELP dsv4_slots_busy Slots generating.\n# TYPE dsv4_slots_busy gauge\ndsv4_slots_busy %d\n", busy);
    buf_printf(&b, "# HELP dsv4_slots_total Slots.\n# TYPE dsv4_slots_total gauge\ndsv4_slots_total %d\n", S.n_slots);
    buf_printf(&b, "# HELP dsv4_tokens_per_second Tokens generated per second of engine busy time.\n"
                   "# TYPE dsv4_tokens_per_second gauge\ndsv4_tokens_per_second %.3f\n",
               S.busy_s > 0 ? (double)S.completion_tokens / S.busy_s : 0.0);
    buf_printf(&b, "# HELP dsv4_uptime_seconds Seconds since the server started.\n# TYPE dsv4_uptime_seconds gauge\n"
                   "dsv4_uptime_seconds %.1f\n", now_s() - S.started_at);
    pthread_mutex_unlock(&S.mu);
    metrics_expert_cache(&b);
    enum MHD_Result r = b.p ? reply(c, 200, "text/plain; version=0.0.4", b.p, b.n) : MHD_NO;
    free(b.p);
    return r;
}

static enum MHD_Result serve_models(struct MHD_Connection *c)
{
    json_t *o = json_pack("{ss s[{ss ss sI ss sI}]}", "object", "list", "data", "id", S.model_name, "object", "model",
                          "created", (json_int_t)time(NULL), "owned_by", "libdsv4", "context_length",
                          (json_int_t)S.n_ctx);
    char *t = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    enum MHD_Result r = t ? reply(c, 200, "application/json", t, strlen(t)) : MHD_NO;
    free(t);
    return r;
}

/* Wait (connection thread) until the job has started or failed; false when
 * the client went away meanwhile. */
static bool wait_started(conn *cc)
{
    job *j = cc->j;
    pthread_mutex_lock(&S.mu);
    while (j->started == 0 && !j->finished) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        if (pthread_cond_timedwait(&j->cv, &S.mu, &ts) == ETIMEDOUT && j->started == 0) {
            pthread_mutex_unlock(&S.mu);
            bool gone = peer_gone(cc->c);
            pthread_mutex_lock(&S.mu);
            if (gone) {
                j->abandoned = true;
                if (j->slot) dsv4_gen_cancel(j->slot->gen);
                pthread_cond_signal(&S.engine_cv);
                pthread_mutex_unlock(&S.mu);
                return false;
            }
        }
    }
    pthread_mutex_unlock(&S.mu);
    return true;
}

static enum MHD_Result serve_generation(conn *cc, enum api api)
{
    struct MHD_Connection *c = cc->c;
    if (cc->too_big)
        return reply_error(c, api, 413, "request body above %" PRId64 " bytes (--max-body)", S.cfg.max_body);
    /* a first look: JSON object, stream flag and the endpoint's own field */
    json_error_t je;
    json_t *req = json_loadb(cc->body.p ? cc->body.p : "", cc->body.n, 0, &je);
    if (!req) return reply_error(c, api, 400, "request is not JSON: %s (line %d, column %d)", je.text, je.line, je.column);
    if (!json_is_object(req)) {
        json_decref(req);
        return reply_error(c, api, 400, "request: not a JSON object");
    }
    json_t *stream = json_object_get(req, "stream");
    if (stream && !json_is_boolean(stream) && !json_is_null(stream)) {
        json_decref(req);
        return reply_error(c, api, 400, "request: \"stream\" must be a boolean");
    }
    bool is_stream = json_is_true(stream);
    const char *missing = NULL, *wrong = NULL;
    if (api == API_CHAT) {
        if (!json_object_get(req, "messages")) missing = "messages";
        else if (json_object_get(req, "prompt")) wrong = "prompt";
    } else if (api == API_COMPLETIONS) {
        json_t *p = json_object_get(req, "prompt");
        if (!p) missing = "prompt";
        else if (!json_is_string(p)) wrong = "prompt";
        else if (json_object_get(req, "messages")) wrong = "messages";
    }
    json_decref(req);
    if (missing) return reply_error(c, api, 400, "request: \"%s\" is required", missing);
    if (wrong)
        return reply_error(c, api, 400, api == API_COMPLETIONS && !strcmp(wrong, "prompt")
                                            ? "request: \"%s\" must be a string"
                                            : "request: \"%s\" does not belong to this endpoint", wrong);

    job *j = calloc(1, sizeof *j);
    if (!j) return reply_error(c, api, 500, "out of memory");
    pthread_cond_init(&j->cv, NULL);
    j->api = api;
    j->stream = is_stream;
    j->body = cc->body.p;
    j->len = cc->body.n;
    cc->body = (buf){ 0 };
    j->refs = 2;
    j->t0 = now_s();
    pthread_mutex_lock(&S.mu);
    int busy = 0;
    for (int i = 0; i < S.n_slots; i++) busy += S.slots[i].j != NULL;
    if (S.stopping || busy + S.q_len >= S.n_slots + S.cfg.queue) {
        bool stopping = S.stopping;
        if (!stopping) S.rejected_429++;
        j->refs = 1;
        job_release(j);
        pthread_mutex_unlock(&S.mu);
        if (stopping) return reply_error(c, api, 503, "the server is shutting down");
        return reply_error(c, api, 429, "all %d slots are busy and %d requests are waiting; retry later", S.n_slots,
                           (int)S.cfg.queue);
    }
    if (S.q_tail) S.q_tail->next = j;
    else S.q_head = j;
    S.q_tail = j;
    S.q_len++;
    cc->j = j;
    pthread_cond_signal(&S.engine_cv);
    pthread_mutex_unlock(&S.mu);

    if (!wait_started(cc)) return MHD_NO;
    pthread_mutex_lock(&S.mu);
    int started = j->started;
    pthread_mutex_unlock(&S.mu);
    if (started != 1) {
        int code = status_http(j->start_status);
        return reply_error(c, api, code, "%s", j->start_err);
    }
    if (is_stream) {
        cc->last_sent = now_s();
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, cc, NULL);
        if (!r) return MHD_NO;
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        pthread_mutex_lock(&S.mu);
        count_status(200);
        pthread_mutex_unlock(&S.mu);
        return ret;
    }
    /* whole response: wait for the engine */
    pthread_mutex_lock(&S.mu);
    while (!j->finished) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        if (pthread_cond_timedwait(&j->cv, &S.mu, &ts) == ETIMEDOUT && !j->finished) {
            pthread_mutex_unlock(&S.mu);
            bool gone = peer_gone(c);
            pthread_mutex_lock(&S.mu);
            if (gone) {
                j->abandoned = true;
                if (j->slot) dsv4_gen_cancel(j->slot->gen);
                pthread_cond_signal(&S.engine_cv);
                pthread_mutex_unlock(&S.mu);
                return MHD_NO;
            }
        }
    }
    bool ok = j->out.n > 0 && j->start_status == DSV4_OK;
    pthread_mutex_unlock(&S.mu);
    if (!ok) return reply_error(c, api, j->start_status == DSV4_ERR_ABORTED ? 503 : 500, "%s",
                                j->start_err[0] ? j->start_err : "the generation failed");
    return reply(c, 200, "application/json", j->out.p, j->out.n);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)cls;
    (void)version;
    enum api api = !strncmp(url, "/v1/messages", 12) ? API_MESSAGES
                   : !strcmp(url, "/v1/completions") ? API_COMPLETIONS
                                                      : API_CHAT;
    bool gen_route = !strcmp(url, "/v1/chat/completions") || !strcmp(url, "/v1/completions") ||
                     !strcmp(url, "/v1/messages");
    conn *cc = *con_cls;
    if (!cc) {
        cc = calloc(1, sizeof *cc);
        if (!cc) return MHD_NO;
        cc->c = c;
        *con_cls = cc;
        pthread_mutex_lock(&S.mu);
        if (gen_route && !strcmp(method, "POST")) S.req[api]++;
        else S.req_other++;
        pthread_mutex_unlock(&S.mu);
        /* refuse an announced oversized body before reading it */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (gen_route && cl && strtoull(cl, NULL, 10) > (unsigned long long)S.cfg.max_body) cc->too_big = true;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cc->too_big && cc->body.n + *upload_size > (size_t)S.cfg.max_body) {
            cc->too_big = true;
            free(cc->body.p);
            cc->body = (buf){ 0 };
        }
        if (!cc->too_big && buf_add(&cc->body, upload, *upload_size) != 0) cc->too_big = true;
        *upload_size = 0;
        return MHD_YES;
    }
    if (!strcmp(url, "/health")) {
        if (strcmp(method, "GET") && strcmp(method, "HEAD"))
            return reply_error(c, API_CHAT, 405, "method %s not allowed on %s", method, url);
        char b[160];
        pthread_mutex_lock(&S.mu);
        int busy = 0;
        for (int i = 0; i < S.n_slots; i++) busy += S.slots[i].j != NULL;
        snprintf(b, sizeof b, "{\"status\":\"ok\",\"slots_idle\":%d,\"slots_busy\":%d,\"queue\":%d}", S.n_slots - busy,
                 busy, S.q_len);
        pthread_mutex_unlock(&S.mu);
        return reply(c, 200, "application/json", b, strlen(b));
    }
    bool known = gen_route || !strcmp(url, "/v1/models") || !strcmp(url, "/metrics");
    if (!known) return reply_error(c, api, 404, "no route %s %s", method, url);
    if (!authorized(c)) return reply_error(c, api, 401, "invalid or missing API key");
    if (!strcmp(url, "/v1/models")) {
        if (strcmp(method, "GET")) return reply_error(c, api, 405, "method %s not allowed on %s", method, url);
        return serve_models(c);
    }
    if (!strcmp(url, "/metrics")) {
        if (strcmp(method, "GET")) return reply_error(c, api, 405, "method %s not allowed on %s", method, url);
        return serve_metrics(c);
    }
    if (strcmp(method, "POST")) return reply_error(c, api, 405, "method %s not allowed on %s (POST)", method, url);
    return serve_generation(cc, api);
}

static void log_mhd(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (S.cfg.quiet) return;
    /* a handler that gave up on a client that went away: expected, not news */
    if (strstr(fmt, "Application reported internal error")) return;
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
}

/* ------------------------------------------------------------------------ */
/* loading and main                                                          */
/* ------------------------------------------------------------------------ */

static int32_t on_progress(void *user, double fraction)
{
    int *last = user;
    int pct = (int)(fraction * 100.0 + 0.5);
    if (pct / 10 == *last / 10 && pct != 100) return 0;
    if (pct == *last) return 0;
    *last = pct;
    bool tty = isatty(2);
    fprintf(stderr, tty ? "\rloading %s: %3d%%" : "loading %s: %3d%%\n", S.model_name, pct);
    if (tty && pct == 100) fputc('\n', stderr);
    return 0;
}

static int load(void)
{
    const config *c = &S.cfg;
    struct stat sb;
    if (stat(c->model_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, PROG ": model directory %s: %s\n", c->model_dir, errno ? strerror(errno) : "not a directory");
        return EXIT_RUNTIME;
    }
    const char *b = c->model_dir + strlen(c->model_dir);
    while (b > c->model_dir && b[-1] == '/') b--;
    const char *e = b;
    while (b > c->model_dir && b[-1] != '/') b--;
    snprintf(S.model_name, sizeof S.model_name, "%.*s", (int)(e - b), b);
    char tok_path[4096];
    if (c->tokenizer) snprintf(tok_path, sizeof tok_path, "%s", c->tokenizer);
    else snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", c->model_dir);
    if (access(tok_path, R_OK) != 0) {
        fprintf(stderr, PROG ": tokenizer %s: %s (give one with --tokenizer FILE)\n", tok_path, strerror(errno));
        return EXIT_RUNTIME;
    }
    dsv4_options *o = NULL;
    char *err = NULL;
    if (dsv4_options_create(&o)) return EXIT_RUNTIME;
    int last = -100;
    if (!c->quiet) dsv4_options_set_progress(o, on_progress, &last);
    if (c->mem_budget) dsv4_options_set_i64(o, DSV4_OPT_MEM_BUDGET, c->mem_budget);
    if (c->mem_pct) dsv4_options_set_i64(o, DSV4_OPT_MEM_BUDGET_PERCENT, c->mem_pct);
    if (c->mlock) dsv4_options_set_i64(o, DSV4_OPT_MEM_LOCK, 1);
    double t0 = now_s();
    dsv4_status st = dsv4_model_load(c->model_dir, o, &S.model, &err);
    if (!st) st = dsv4_tokenizer_load(tok_path, NULL, &S.tok, &err);
    if (st) {
        fprintf(stderr, PROG ": cannot load %s: %s\n", S.model ? tok_path : c->model_dir, err ? err : dsv4_status_string(st));
        dsv4_free(err);
        dsv4_options_free(o);
        return EXIT_RUNTIME;
    }
    dsv4_model_info *info = NULL;
    int64_t max_pos = 0;
    int64_t locked = 0, resident = 0, cache = 0;
    if (!dsv4_model_get_info(S.model, &info)) {
        dsv4_model_info_get_i64(info, DSV4_INFO_MAX_POSITION, &max_pos);
        dsv4_model_info_get_i64(info, DSV4_INFO_LOCKED_BYTES, &locked);
        dsv4_model_info_get_i64(info, DSV4_INFO_RESIDENT_BYTES, &resident);
        dsv4_model_info_get_i64(info, DSV4_INFO_EXPERT_CACHE_BYTES, &cache);
    }
    dsv4_model_info_free(info);
    if (c->mlock && locked < resident + cache)
        fprintf(stderr, PROG ": --mlock: only %.1f of %.1f MiB locked in memory (RLIMIT_MEMLOCK: raise it with "
                "ulimit -l, or run with CAP_IPC_LOCK)\n", locked / 1048576.0, (resident + cache) / 1048576.0);
    else if (c->mlock && !c->quiet)
        fprintf(stderr, PROG ": --mlock: %.1f MiB locked in memory\n", locked / 1048576.0);
    S.n_ctx = c->has_ctx ? c->ctx : (max_pos > 0 && max_pos < 8192 ? max_pos : 8192);
    if ((st = dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, S.n_ctx)) ||
        (c->has_threads && (st = dsv4_options_set_i64(o, DSV4_OPT_THREADS, c->threads))) ||
        (st = dsv4_context_create(S.model, o, &S.ctx, &err))) {
        fprintf(stderr, PROG ": cannot create the context (--ctx %" PRId64 "): %s\n", S.n_ctx, err ? err : dsv4_status_string(st));
        dsv4_free(err);
        dsv4_options_free(o);
        return EXIT_RUNTIME;
    }
    dsv4_options_free(o);
    /* one prefix cache for all slots: a request that resends a conversation
     * another slot served feeds only its new tokens */
    if ((st = dsv4_prefix_cache_create((int64_t)1 << 30, c->prompt_cache, &S.cache, &err))) {
        fprintf(stderr, PROG ": cannot open the prompt cache%s%s: %s\n", c->prompt_cache ? " " : "",
                c->prompt_cache ? c->prompt_cache : "", err ? err : dsv4_status_string(st));
        dsv4_free(err);
        return EXIT_RUNTIME;
    }
    S.n_slots = (int)c->parallel;
    S.slots = calloc((size_t)S.n_slots, sizeof *S.slots);
    if (!S.slots) return EXIT_RUNTIME;
    for (int i = 0; i < S.n_slots; i++) {
        st = dsv4_session_create(S.ctx, NULL, &S.slots[i].sess, &err);
        if (!st) st = dsv4_session_set_prefix_cache(S.slots[i].sess, S.cache);
        if (!st) st = dsv4_gen_create(S.slots[i].sess, S.tok, &S.slots[i].gen);
        if (!st) st = dsv4_gen_set_i64(S.slots[i].gen, DSV4_GEN_PREFILL_CHUNK, c->prefill_chunk);
        if (st) {
            fprintf(stderr, PROG ": cannot create slot %d of %d: %s\n", i + 1, S.n_slots, err ? err : dsv4_status_string(st));
            dsv4_free(err);
            return EXIT_RUNTIME;
        }
    }
    if (!c->quiet)
        fprintf(stderr, "loaded %s in %.1f s: %d slots of %" PRId64 " tokens\n", c->model_dir, now_s() - t0, S.n_slots,
                S.n_ctx);
    return 0;
}

static void unload(void)
{
    for (int i = 0; i < S.n_slots; i++) {
        dsv4_gen_free(S.slots[i].gen);
        dsv4_session_free(S.slots[i].sess);
        free(S.slots[i].last_body);
    }
    free(S.slots);
    dsv4_prefix_cache_free(S.cache);
    dsv4_context_free(S.ctx);
    dsv4_tokenizer_free(S.tok);
    dsv4_model_free(S.model);
}

int main(int argc, char **argv)
{
    dsv4p_omp_passive(argv); /* before any thread: common.h */
    int rc = parse_args(argc, argv, &S.cfg);
    if (rc >= 0) return rc;
    /* SIGINT/SIGTERM are taken by sigwait() below; every thread inherits the mask */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_PASSIVE };
    struct addrinfo *ai = NULL;
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%" PRId64, S.cfg.port);
    if (getaddrinfo(S.cfg.host, port_s, &hints, &ai) != 0 || !ai) {
        fprintf(stderr, PROG ": --host %s is not a numeric IPv4 or IPv6 address\n", S.cfg.host);
        return EXIT_USAGE;
    }
    if ((rc = load()) != 0) {
        freeaddrinfo(ai);
        unload();
        return rc;
    }
    pthread_mutex_init(&S.mu, NULL);
    pthread_cond_init(&S.engine_cv, NULL);
    S.started_at = now_s();
    if (pthread_create(&S.engine, NULL, engine_main, NULL) != 0) {
        fprintf(stderr, PROG ": cannot start the engine thread\n");
        freeaddrinfo(ai);
        unload();
        return EXIT_RUNTIME;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    S.d = MHD_start_daemon(flags, (uint16_t)S.cfg.port, NULL, NULL, on_request, NULL,
                           MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL,
                           MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                           MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)S.cfg.timeout,
                           MHD_OPTION_CONNECTION_LIMIT, (unsigned int)(S.cfg.parallel + S.cfg.queue + 64),
                           MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                           MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                           MHD_OPTION_END);
    freeaddrinfo(ai);
    int status = 0;
    if (!S.d) {
        fprintf(stderr, PROG ": cannot listen on %s port %" PRId64 ": %s\n", S.cfg.host, S.cfg.port,
                errno ? strerror(errno) : "libmicrohttpd refused");
        status = EXIT_RUNTIME;
    } else {
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(S.d, MHD_DAEMON_INFO_BIND_PORT);
        unsigned port = di ? di->port : (unsigned)S.cfg.port;
        bool v6 = strchr(S.cfg.host, ':') != NULL;
        printf("listening on http://%s%s%s:%u/v1 (model %s)\n", v6 ? "[" : "", S.cfg.host, v6 ? "]" : "", port,
               S.model_name);
        fflush(stdout);
        int sig = 0;
        sigwait(&sigs, &sig);
        if (!S.cfg.quiet) fprintf(stderr, PROG ": %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    }
    /* stop: cancel every generation, end the streams, close the listener */
    pthread_mutex_lock(&S.mu);
    S.stopping = true;
    for (int i = 0; i < S.n_slots; i++)
        if (S.slots[i].j) dsv4_gen_cancel(S.slots[i].gen);
    pthread_cond_signal(&S.engine_cv);
    pthread_mutex_unlock(&S.mu);
    pthread_join(S.engine, NULL);
    if (S.d) MHD_stop_daemon(S.d);
    unload();
    return status;
}
