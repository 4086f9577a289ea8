/*
 * tools/dsv4-soak.c — a soak run (not a test): many sessions on one model
 * generating, being cancelled and restarting for a fixed time, with the
 * process's resident memory printed along the way. Memory must not grow
 * once every kind of object has been made a few times: the verdict compares
 * the resident size at the end with the one after the warm-up.
 *
 *   dsv4-soak --model DIR --tokenizer FILE [--seconds 60] [--threads 2]
 *             [--sessions 8] [--warmup 10] [--tolerance-mib 4] [--requests]
 *
 * Each thread has a context of its own (one worker thread each) and its
 * share of the sessions, each with a generator. A round picks a session
 * and does one of: a generation to its end (random prompt of byte tokens,
 * random settings: greedy or sampled, JSON mode, stop strings, logprobs),
 * a generation cancelled after a random number of tokens (by another
 * thread, which cancels generators at random), a reset, or freeing the
 * session and its generator and making them again. With --requests (a
 * model with the chat tokens, e.g. one written by dsv4-synth) some rounds
 * start from a chat-completions request instead, and read the response
 * JSON. Exit status: 0 when memory stayed flat, 1 when it grew beyond the
 * tolerance, 2 on a usage or set-up error, 3 when a round failed.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "dsv4/dsv4.h"

typedef struct {
    pthread_mutex_t mu; /* the generator pointer, for the canceller */
    dsv4_session *s;
    dsv4_gen *g;
} slot;

typedef struct {
    int id;
    dsv4_context *c;
    slot *slots;
    int n_slots;
    unsigned seed;
    atomic_long gens; /* read by the main thread for the progress lines */
    long cancelled, resets, remade, requests, failures;
    char msg[512];
} worker;

static dsv4_model *model;
static dsv4_tokenizer *tok;
static int64_t vocab;
static int use_requests;
static atomic_int stop_all;
static worker *workers;
static int n_workers;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* resident and peak resident size in KiB (/proc/self/status) */
static void rss_kib(long *rss, long *hwm)
{
    char line[256];
    *rss = *hwm = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmRSS:", 6)) *rss = atol(line + 6);
        if (!strncmp(line, "VmHWM:", 6)) *hwm = atol(line + 6);
    }
    fclose(f);
}

static int make_slot(worker *w, slot *sl)
{
    dsv4_session *s = NULL;
    dsv4_gen *g = NULL;
    if (dsv4_session_create(w->c, NULL, &s, NULL) != DSV4_OK) return 0;
    if (dsv4_gen_create(s, tok, &g) != DSV4_OK) {
        dsv4_session_free(s);
        return 0;
    }
    pthread_mutex_lock(&sl->mu);
    sl->s = s;
    sl->g = g;
    pthread_mutex_unlock(&sl->mu);
    return 1;
}

static void drop_slot(slot *sl)
{
    pthread_mutex_lock(&sl->mu);
    dsv4_gen *g = sl->g;
    dsv4_session *s = sl->s;
    sl->g = NULL;
    sl->s = NULL;
    pthread_mutex_unlock(&sl->mu);
    dsv4_gen_free(g);
    dsv4_session_free(s);
}

static int fail(worker *w, const char *what, dsv4_status st, const char *detail)
{
    snprintf(w->msg, sizeof w->msg, "%s: %s (%s)", what, dsv4_status_string(st), detail ? detail : "");
    w->failures++;
    return 0;
}

/* one generation on a slot; cancel_after >= 0: cancel after that many tokens */
static int generate(worker *w, slot *sl, int cancel_after)
{
    dsv4_gen *g = sl->g;
    unsigned r = rand_r(&w->seed);
    dsv4_sampler *smp = dsv4_gen_sampler(g);
    dsv4_sampler_set_f64(smp, DSV4_SAMPLER_TEMPERATURE, (r & 1) ? 0.0 : 0.8);
    dsv4_sampler_set_i64(smp, DSV4_SAMPLER_SEED, (int64_t)(r >> 8));
    dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, 1 + (int64_t)((r >> 1) % 24));
    dsv4_gen_set_i64(g, DSV4_GEN_THINKING, 0);
    dsv4_gen_set_i64(g, DSV4_GEN_LOGPROBS, (r >> 6) & 1);
    dsv4_gen_set_i64(g, DSV4_GEN_RESPONSE_FORMAT, ((r >> 7) % 4) == 0 ? DSV4_RESPONSE_JSON_OBJECT : DSV4_RESPONSE_TEXT);
    if (((r >> 9) % 8) == 0) dsv4_gen_add_stop(g, "e", 1);
    dsv4_status st;
    if (use_requests && ((r >> 10) % 3) == 0) {
        static const char *reqs[] = {
            "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":12}",
            "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Name a "
            "colour.\"}],\"max_tokens\":8,\"temperature\":0.7,\"stop\":[\"\\n\"]}",
            "{\"messages\":[{\"role\":\"user\",\"content\":\"JSON please\"}],\"response_format\":{\"type\":"
            "\"json_object\"},\"max_tokens\":16}",
            "{\"prompt\":\"def f(x):\",\"suffix\":\"return y\",\"max_tokens\":6}",
            "{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"}],\"tools\":[{\"type\":\"function\",\"function\":"
            "{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":"
            "\"string\"}}}}}],\"max_tokens\":16,\"logprobs\":true,\"top_logprobs\":2}",
        };
        const char *q = reqs[(r >> 12) % (sizeof reqs / sizeof reqs[0])];
        st = dsv4_gen_start_request(g, q, strlen(q));
        w->requests++;
    } else {
        int32_t prompt[48];
        size_t n = 1 + (size_t)((r >> 13) % 40);
        prompt[0] = 0;
        for (size_t i = 1; i < n; i++) prompt[i] = (int32_t)(3 + rand_r(&w->seed) % 94); /* byte tokens */
        for (size_t i = 0; i < n; i++) if (prompt[i] >= vocab) prompt[i] = 0;
        st = dsv4_gen_start(g, prompt, n);
    }
    if (st == DSV4_ERR_ABORTED) { w->cancelled++; return 1; }
    if (st != DSV4_OK) return fail(w, "start", st, dsv4_gen_last_error(g));
    for (int guard = 0; guard < 10000; guard++) {
        dsv4_gen_event_type t;
        int32_t idx;
        if (cancel_after >= 0 && dsv4_gen_n_tokens(g) >= cancel_after) dsv4_gen_cancel(g);
        st = dsv4_gen_next(g, &t, &idx, NULL, NULL);
        if (st != DSV4_OK) return fail(w, "next", st, dsv4_gen_last_error(g));
        if (t == DSV4_GEN_EVENT_STOP) {
            if (idx == DSV4_FINISH_ERROR) return fail(w, "generation", st, dsv4_gen_last_error(g));
            if (idx == DSV4_FINISH_CANCELLED) w->cancelled++;
            break;
        }
    }
    char *js = NULL;
    if (dsv4_gen_response_json(g, &js) != DSV4_OK) return fail(w, "response", DSV4_ERR_INTERNAL, NULL);
    dsv4_free(js);
    w->gens++;
    return 1;
}

static void *work(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < w->n_slots; i++)
        if (!make_slot(w, &w->slots[i])) {
            fail(w, "session", DSV4_ERR_OUT_OF_MEMORY, "creation");
            atomic_store(&stop_all, 1);
            return NULL;
        }
    while (!atomic_load(&stop_all)) {
        slot *sl = &w->slots[rand_r(&w->seed) % (unsigned)w->n_slots];
        unsigned r = rand_r(&w->seed) % 16;
        int ok = 1;
        if (r < 10) ok = generate(w, sl, -1);
        else if (r < 13) ok = generate(w, sl, (int)(rand_r(&w->seed) % 6));
        else if (r < 15) { dsv4_session_reset(sl->s); w->resets++; }
        else {
            drop_slot(sl);
            ok = make_slot(w, sl);
            if (!ok) fail(w, "re-creation", DSV4_ERR_OUT_OF_MEMORY, NULL);
            w->remade++;
        }
        if (!ok) { atomic_store(&stop_all, 1); break; }
    }
    for (int i = 0; i < w->n_slots; i++) drop_slot(&w->slots[i]);
    return NULL;
}

/* cancels generators of other threads at random (any thread may) */
static void *cancel_loop(void *arg)
{
    unsigned seed = 4242;
    (void)arg;
    while (!atomic_load(&stop_all)) {
        worker *w = &workers[rand_r(&seed) % (unsigned)n_workers];
        slot *sl = &w->slots[rand_r(&seed) % (unsigned)w->n_slots];
        pthread_mutex_lock(&sl->mu);
        if (sl->g) dsv4_gen_cancel(sl->g);
        pthread_mutex_unlock(&sl->mu);
        struct timespec ts = { 0, 5000000 + (long)(rand_r(&seed) % 45000000) };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: dsv4-soak --model DIR --tokenizer FILE [--seconds 60] [--threads 2] [--sessions 8]\n"
                    "                 [--warmup SECONDS] [--tolerance-mib 4] [--interval 10] [--requests]\n");
}

int main(int argc, char **argv)
{
    const char *mdir = NULL, *tpath = NULL;
    double seconds = 60, warmup = -1, tol_mib = 4, interval = 10;
    int threads = 2, sessions = 8;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--requests")) { use_requests = 1; continue; }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(); return 0; }
        if (!v) { usage(); return 2; }
        i++;
        if (!strcmp(a, "--model")) mdir = v;
        else if (!strcmp(a, "--tokenizer")) tpath = v;
        else if (!strcmp(a, "--seconds")) seconds = atof(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--sessions")) sessions = atoi(v);
        else if (!strcmp(a, "--warmup")) warmup = atof(v);
        else if (!strcmp(a, "--tolerance-mib")) tol_mib = atof(v);
        else if (!strcmp(a, "--interval")) interval = atof(v);
        else { fprintf(stderr, "dsv4-soak: unknown option %s\n", a); usage(); return 2; }
    }
    if (warmup < 0) warmup = seconds / 6;
    if (!mdir || !tpath || !(seconds > 0) || threads < 1 || threads > 64 || sessions < threads || sessions > 4096 ||
        !(warmup < seconds) || !(tol_mib >= 0) || !(interval > 0)) {
        usage();
        return 2;
    }
    long rss0, hwm;
    rss_kib(&rss0, &hwm);
    char *err = NULL;
    if (dsv4_tokenizer_load(tpath, NULL, &tok, &err) != DSV4_OK) {
        fprintf(stderr, "dsv4-soak: tokenizer %s: %s\n", tpath, err ? err : "");
        dsv4_free(err);
        return 2;
    }
    if (dsv4_model_load(mdir, NULL, &model, &err) != DSV4_OK) {
        fprintf(stderr, "dsv4-soak: model %s: %s\n", mdir, err ? err : "");
        dsv4_free(err);
        dsv4_tokenizer_free(tok);
        return 2;
    }
    dsv4_model_info *info = NULL;
    dsv4_model_get_info(model, &info);
    dsv4_model_info_get_i64(info, DSV4_INFO_VOCAB_SIZE, &vocab);
    dsv4_model_info_free(info);

    n_workers = threads;
    workers = calloc((size_t)threads, sizeof *workers);
    slot *slots = calloc((size_t)sessions, sizeof *slots);
    dsv4_options *o = NULL;
    dsv4_options_create(&o);
    dsv4_options_set_i64(o, DSV4_OPT_THREADS, 1);
    dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, 256);
    int ok = workers && slots;
    for (int i = 0; i < sessions; i++) pthread_mutex_init(&slots[i].mu, NULL);
    for (int t = 0; ok && t < threads; t++) {
        worker *w = &workers[t];
        w->id = t;
        w->seed = 77u + (unsigned)t;
        w->slots = slots + (sessions * t) / threads;
        w->n_slots = (sessions * (t + 1)) / threads - (sessions * t) / threads;
        if (dsv4_context_create(model, o, &w->c, &err) != DSV4_OK) {
            fprintf(stderr, "dsv4-soak: context: %s\n", err ? err : "");
            dsv4_free(err);
            ok = 0;
        }
    }
    dsv4_options_free(o);
    long rss_loaded;
    rss_kib(&rss_loaded, &hwm);
    printf("dsv4-soak: %s, %d threads, %d sessions, %.0f s (warm-up %.0f s)%s\n", mdir, threads, sessions, seconds,
           warmup, use_requests ? ", with requests" : "");
    printf("rss at start %.1f MiB; model and contexts loaded %.1f MiB\n", rss0 / 1024.0, rss_loaded / 1024.0);
    fflush(stdout);

    int status = 2;
    if (ok) {
        pthread_t th[64], canc;
        double t0 = now(), next = t0 + interval;
        for (int t = 0; t < threads; t++) pthread_create(&th[t], NULL, work, &workers[t]);
        pthread_create(&canc, NULL, cancel_loop, NULL);
        long rss_warm = -1, rss_max_after = 0, rss;
        while (!atomic_load(&stop_all)) {
            struct timespec ts = { 0, 100000000 };
            nanosleep(&ts, NULL);
            double t = now() - t0;
            if (rss_warm < 0 && t >= warmup) {
                rss_kib(&rss_warm, &hwm);
                printf("%6.0f s  rss after warm-up %.1f MiB\n", t, rss_warm / 1024.0);
                fflush(stdout);
            }
            if (rss_warm >= 0) {
                rss_kib(&rss, &hwm);
                if (rss > rss_max_after) rss_max_after = rss;
            }
            if (now() >= next) {
                long gens = 0;
                for (int i = 0; i < threads; i++) gens += workers[i].gens;
                rss_kib(&rss, &hwm);
                printf("%6.0f s  rss %.1f MiB  generations %ld\n", t, rss / 1024.0, gens);
                fflush(stdout);
                next += interval;
            }
            if (t >= seconds) atomic_store(&stop_all, 1);
        }
        long rss_end;
        rss_kib(&rss_end, &hwm); /* while every session still exists (threads finishing their round) */
        for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
        pthread_join(canc, NULL);
        long gens = 0, canc_n = 0, resets = 0, remade = 0, reqs = 0, fails = 0;
        for (int t = 0; t < threads; t++) {
            worker *w = &workers[t];
            gens += w->gens; canc_n += w->cancelled; resets += w->resets; remade += w->remade;
            reqs += w->requests; fails += w->failures;
            if (w->msg[0]) fprintf(stderr, "dsv4-soak: thread %d: %s\n", t, w->msg);
        }
        long rss_after;
        rss_kib(&rss_after, &hwm);
        printf("%ld generations (%ld cancelled, %ld from requests), %ld resets, %ld sessions re-made, %ld failures\n",
               gens, canc_n, reqs, resets, remade, fails);
        double growth = rss_warm >= 0 ? (rss_end - rss_warm) / 1024.0 : 0;
        printf("rss: start %.1f MiB, after warm-up %.1f MiB, end %.1f MiB (max after warm-up %.1f MiB, peak %.1f MiB)"
               ", sessions freed %.1f MiB\n",
               rss0 / 1024.0, rss_warm / 1024.0, rss_end / 1024.0, rss_max_after / 1024.0, hwm / 1024.0,
               rss_after / 1024.0);
        if (fails) {
            printf("verdict: FAILED (%ld rounds failed)\n", fails);
            status = 3;
        } else if (rss_warm < 0) {
            printf("verdict: too short to judge (no warm-up sample)\n");
            status = 2;
        } else if (growth > tol_mib) {
            printf("verdict: memory GREW by %.1f MiB after warm-up (tolerance %.1f MiB)\n", growth, tol_mib);
            status = 1;
        } else {
            printf("verdict: memory flat (%+.1f MiB after warm-up, tolerance %.1f MiB)\n", growth, tol_mib);
            status = 0;
        }
    }
    for (int t = 0; t < threads; t++) dsv4_context_free(workers[t].c);
    for (int i = 0; i < sessions; i++) pthread_mutex_destroy(&slots[i].mu);
    free(slots);
    free(workers);
    dsv4_model_free(model);
    dsv4_tokenizer_free(tok);
    return status;
}
