/*
 * tests/stress/test_stress.c — several contexts of one model, several
 * generators per context, each on its own thread, and one thread cancelling
 * them at random, for a bounded time. Written for the ThreadSanitizer build
 * (.ci/run, docs/THREADS.md) and run in the fast suite of the others too.
 *
 * The contexts are created concurrently (each by its first worker). The
 * generators of one context take turns through a mutex of the caller's, as
 * the API asks (one thread at a time per context), in slices of one or two
 * tokens, so their sessions interleave on the context's scratch and worker
 * pool. The canceller calls dsv4_gen_cancel() from its own thread at any
 * moment; workers also recreate their session and generator now and then
 * (under the canceller's lock), reset their session, and evaluate it
 * directly. The tokenizer is shared by every thread.
 *
 * Checks beyond "no report": greedy generations give exactly the tokens of
 * a reference run made alone before the threads start (a cancelled one a
 * prefix of them), no generation ends in an error, and cancellations
 * happened.
 *
 * Usage: test_stress [--seconds S] [--contexts N] [--gens N] [--threads N]
 * [--cancel-ms MS] (defaults 4 s, 2 contexts, 2 generators each, 2 threads
 * per context, a cancel every 0-20 ms).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "dsv4/dsv4.h"
#include "testutil.h"

#define MAX_CTX 8
#define MAX_GEN 8
#define N_PROMPTS 4
#define MAX_NEW 8
#define VOCAB 512 /* tiny-a */

static dsv4_model *model;
static dsv4_tokenizer *tok;
static double t_end;
static int n_threads = 2;
static int cancel_ms = 20; /* the canceller sleeps 0 to this many ms between calls */

/* greedy reference: tokens after each prompt, computed alone */
static int32_t prompts[N_PROMPTS][6];
static int32_t ref[N_PROMPTS][MAX_NEW];
static int64_t ref_n[N_PROMPTS];

typedef struct {
    pthread_mutex_t mu; /* one thread at a time on the context */
    int tried;
    dsv4_context *c;
    atomic_int failed;
} ctx_slot;

typedef struct {
    ctx_slot *cx;
    pthread_mutex_t gmu; /* the generator pointer (the canceller reads it) */
    dsv4_session *s;
    dsv4_gen *g;
    unsigned seed;
    int reuse;
    /* results (read after join) */
    long gens, cancelled, aborted, mismatches, errors, recreated, evals;
    char msg[256];
} worker;

static ctx_slot ctxs[MAX_CTX];
static worker workers[MAX_CTX * MAX_GEN];
static int n_workers;
static atomic_long cancels_sent;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int32_t byte_tok(char c)
{
    int32_t id = -1;
    char s[2] = { c, 0 };
    dsv4_tokenizer_piece_to_token(tok, s, 1, &id);
    return id;
}

static dsv4_options *ctx_options(void)
{
    dsv4_options *o = NULL;
    dsv4_options_create(&o);
    dsv4_options_set_i64(o, DSV4_OPT_THREADS, n_threads);
    dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, 128);
    dsv4_options_set_i64(o, DSV4_OPT_WORKER_SPIN, 64); /* short spins: many threads, few cores */
    return o;
}

static int setup_gen(worker *w)
{
    if (dsv4_session_create(w->cx->c, NULL, &w->s, NULL) != DSV4_OK) return 0;
    dsv4_gen *g = NULL;
    if (dsv4_gen_create(w->s, tok, &g) != DSV4_OK) return 0;
    dsv4_sampler_set_f64(dsv4_gen_sampler(g), DSV4_SAMPLER_TEMPERATURE, 0);
    dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, MAX_NEW);
    dsv4_gen_set_i64(g, DSV4_GEN_THINKING, 0);
    dsv4_gen_set_i64(g, DSV4_GEN_REUSE_PREFIX, w->reuse);
    pthread_mutex_lock(&w->gmu);
    w->g = g;
    pthread_mutex_unlock(&w->gmu);
    return 1;
}

static void drop_gen(worker *w)
{
    pthread_mutex_lock(&w->gmu);
    dsv4_gen *g = w->g;
    w->g = NULL;
    pthread_mutex_unlock(&w->gmu);
    dsv4_gen_free(g);
    dsv4_session_free(w->s);
    w->s = NULL;
}

/* contexts are made by their first worker, several at once (each under
 * its own slot's lock) */
static void make_context(ctx_slot *cx)
{
    pthread_mutex_lock(&cx->mu);
    if (!cx->tried) {
        cx->tried = 1;
        dsv4_options *o = ctx_options();
        if (dsv4_context_create(model, o, &cx->c, NULL) != DSV4_OK) atomic_store(&cx->failed, 1);
        dsv4_options_free(o);
    }
    pthread_mutex_unlock(&cx->mu);
}

/* one generation: start, then steps of 1-2 tokens with the context lock
 * taken per slice; returns 0 on a failure recorded in w */
static int generate(worker *w)
{
    int p = (int)(rand_r(&w->seed) % N_PROMPTS);
    pthread_mutex_lock(&w->cx->mu);
    dsv4_status st = dsv4_gen_start(w->g, prompts[p], 6);
    pthread_mutex_unlock(&w->cx->mu);
    if (st == DSV4_ERR_ABORTED) { w->aborted++; return 1; }
    if (st != DSV4_OK) {
        snprintf(w->msg, sizeof w->msg, "start: %s (%s)", dsv4_status_string(st), dsv4_gen_last_error(w->g));
        w->errors++;
        return 0;
    }
    int finish = -1;
    for (int guard = 0; guard < 10 * MAX_NEW && finish < 0; guard++) {
        pthread_mutex_lock(&w->cx->mu);
        st = dsv4_gen_step(w->g, 1 + (int32_t)(rand_r(&w->seed) % 2), 0, NULL);
        for (;;) {
            dsv4_gen_event_type t;
            int32_t idx;
            if (st != DSV4_OK || dsv4_gen_poll(w->g, &t, &idx, NULL, NULL) != DSV4_OK || t == DSV4_GEN_EVENT_NONE)
                break;
            if (t == DSV4_GEN_EVENT_STOP) { /* the last event (polled again, it repeats) */
                finish = idx;
                break;
            }
        }
        pthread_mutex_unlock(&w->cx->mu);
        if (st != DSV4_OK) break;
    }
    w->gens++;
    if (finish == DSV4_FINISH_CANCELLED) w->cancelled++;
    if (finish != DSV4_FINISH_CANCELLED && finish != DSV4_FINISH_LENGTH && finish != DSV4_FINISH_STOP) {
        snprintf(w->msg, sizeof w->msg, "generation ended with %d (step %s): %s", finish, dsv4_status_string(st),
                 dsv4_gen_last_error(w->g));
        w->errors++;
        return 0;
    }
    /* the tokens: the reference's (a prefix of them when cancelled) */
    int64_t n = dsv4_gen_n_tokens(w->g);
    int same = finish == DSV4_FINISH_CANCELLED ? n <= ref_n[p] : n == ref_n[p];
    int64_t at = -1;
    int32_t t = -1;
    for (int64_t i = 0; same && i < n; i++) {
        /* NOT_AVAILABLE: the token is given, logprobs were not recorded */
        dsv4_status ts = dsv4_gen_token(w->g, i, &t, NULL, NULL, NULL, 0, NULL);
        same = (ts == DSV4_OK || ts == DSV4_ERR_NOT_AVAILABLE) && t == ref[p][i];
        if (!same) at = i;
    }
    if (!same) {
        w->mismatches++;
        snprintf(w->msg, sizeof w->msg,
                 "prompt %d: %lld tokens (finish %d, cached %lld) differ from the reference (%lld): token %lld is %d, "
                 "not %d", p, (long long)n, finish, (long long)dsv4_gen_usage(w->g, DSV4_USAGE_CACHED_TOKENS),
                 (long long)ref_n[p], (long long)at, t, at >= 0 ? ref[p][at] : -1);
    }
    return 1;
}

/* the session directly: reset, feed a prompt, read the last logits */
static void eval_direct(worker *w)
{
    float lg[VOCAB];
    int p = (int)(rand_r(&w->seed) % N_PROMPTS);
    pthread_mutex_lock(&w->cx->mu);
    dsv4_session_reset(w->s);
    if (dsv4_session_eval(w->s, prompts[p], 6, 0) != DSV4_OK ||
        dsv4_session_logits(w->s, -1, lg, VOCAB) != DSV4_OK) {
        snprintf(w->msg, sizeof w->msg, "eval: %s", dsv4_session_last_error(w->s));
        w->errors++;
    } else {
        int32_t best = 0;
        for (int k = 1; k < VOCAB; k++) if (lg[k] > lg[best]) best = k;
        if (ref_n[p] > 0 && best != ref[p][0]) {
            w->mismatches++;
            snprintf(w->msg, sizeof w->msg, "eval of prompt %d: argmax %d, reference %d", p, best, ref[p][0]);
        }
    }
    pthread_mutex_unlock(&w->cx->mu);
    w->evals++;
}

static void *work(void *arg)
{
    worker *w = arg;
    make_context(w->cx);
    if (atomic_load(&w->cx->failed) || !w->cx->c) {
        snprintf(w->msg, sizeof w->msg, "context creation failed");
        w->errors++;
        return NULL;
    }
    pthread_mutex_lock(&w->cx->mu);
    int ok = setup_gen(w);
    pthread_mutex_unlock(&w->cx->mu);
    if (!ok) {
        snprintf(w->msg, sizeof w->msg, "session/generator creation failed");
        w->errors++;
        return NULL;
    }
    /* past the end, a worker that has not finished a generation yet goes on
     * (up to a minute) while the others stop: two generators share a
     * context's mutex, which is not fair, so under a sanitizer on a loaded
     * machine one of them can wait out a short run; the check below is
     * that each one can complete, not that the lock is shared fairly */
    while (now() < t_end || (w->gens == 0 && now() < t_end + 60)) {
        if (!generate(w)) break;
        unsigned r = rand_r(&w->seed) % 16;
        if (r == 0) {
            pthread_mutex_lock(&w->cx->mu);
            drop_gen(w);
            ok = setup_gen(w);
            pthread_mutex_unlock(&w->cx->mu);
            w->recreated++;
            if (!ok) { w->errors++; snprintf(w->msg, sizeof w->msg, "re-creation failed"); break; }
        } else if (r == 1) {
            eval_direct(w);
        }
    }
    pthread_mutex_lock(&w->cx->mu);
    drop_gen(w);
    pthread_mutex_unlock(&w->cx->mu);
    return NULL;
}

static void *cancel_loop(void *arg)
{
    unsigned seed = 12345;
    (void)arg;
    while (now() < t_end) {
        worker *w = &workers[rand_r(&seed) % (unsigned)n_workers];
        pthread_mutex_lock(&w->gmu);
        if (w->g) {
            dsv4_gen_cancel(w->g);
            atomic_fetch_add(&cancels_sent, 1);
        }
        pthread_mutex_unlock(&w->gmu);
        /* the shared tokenizer, meanwhile */
        int32_t ids[64];
        size_t n = 0;
        dsv4_tokenizer_encode(tok, "The quick brown fox", 19, 0, ids, 64, &n, NULL);
        struct timespec ts = { 0, (long)(rand_r(&seed) % (1000000u * (unsigned)cancel_ms + 1)) };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* the reference, alone on one context */
static int make_reference(void)
{
    const char *text[N_PROMPTS] = { "The a", "Hello", "x = 1", "{\"a\":" };
    for (int p = 0; p < N_PROMPTS; p++) {
        prompts[p][0] = 0;
        for (int i = 0; i < 5; i++) prompts[p][1 + i] = byte_tok(text[p][i] ? text[p][i] : ' ');
    }
    dsv4_options *o = ctx_options();
    dsv4_context *c = NULL;
    dsv4_session *s = NULL;
    dsv4_gen *g = NULL;
    int ok = CHECK(dsv4_context_create(model, o, &c, NULL) == DSV4_OK, "reference context") &&
             CHECK(dsv4_session_create(c, NULL, &s, NULL) == DSV4_OK, "reference session") &&
             CHECK(dsv4_gen_create(s, tok, &g) == DSV4_OK, "reference generator");
    dsv4_options_free(o);
    if (ok) {
        dsv4_sampler_set_f64(dsv4_gen_sampler(g), DSV4_SAMPLER_TEMPERATURE, 0);
        dsv4_gen_set_i64(g, DSV4_GEN_MAX_TOKENS, MAX_NEW);
        dsv4_gen_set_i64(g, DSV4_GEN_THINKING, 0);
        for (int p = 0; p < N_PROMPTS && ok; p++) {
            ok = CHECK(dsv4_gen_start(g, prompts[p], 6) == DSV4_OK, "reference start: %s", dsv4_gen_last_error(g));
            for (int guard = 0; ok && guard < 100; guard++) {
                dsv4_gen_event_type t;
                if (dsv4_gen_next(g, &t, NULL, NULL, NULL) != DSV4_OK || t == DSV4_GEN_EVENT_STOP) break;
            }
            ref_n[p] = dsv4_gen_n_tokens(g);
            for (int64_t i = 0; i < ref_n[p] && i < MAX_NEW; i++)
                dsv4_gen_token(g, i, &ref[p][i], NULL, NULL, NULL, 0, NULL);
        }
        ok = ok && CHECK(ref_n[0] >= 1, "reference generations produce tokens (%lld)", (long long)ref_n[0]);
    }
    dsv4_gen_free(g);
    dsv4_session_free(s);
    dsv4_context_free(c);
    return ok;
}

int main(int argc, char **argv)
{
    double seconds = 4;
    int n_ctx = 2, n_gen = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--contexts")) n_ctx = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--gens")) n_gen = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) n_threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--cancel-ms")) cancel_ms = atoi(argv[i + 1]);
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    if (n_ctx < 1 || n_ctx > MAX_CTX || n_gen < 1 || n_gen > MAX_GEN || n_threads < 1 || seconds <= 0 || cancel_ms < 0 || cancel_ms > 1000) {
        fprintf(stderr, "usage: test_stress [--seconds S] [--contexts 1-8] [--gens 1-8] [--threads N] [--cancel-ms 0-1000]\n");
        return 2;
    }
    char path[4096], *err = NULL;
    snprintf(path, sizeof path, "%s/tokenizers/deepseek-v4/tokenizer.json", test_shared_dir());
    if (!CHECK(dsv4_tokenizer_load(path, NULL, &tok, &err) == DSV4_OK, "tokenizer %s: %s", path, err ? err : ""))
        return dsv4_free(err), test_summary();
    snprintf(path, sizeof path, "%s/golden/tiny-a/ckpt", test_shared_dir());
    if (!CHECK(dsv4_model_load(path, NULL, &model, &err) == DSV4_OK, "load %s: %s", path, err ? err : "")) {
        dsv4_free(err);
        dsv4_tokenizer_free(tok);
        return test_summary();
    }
    if (make_reference()) {
        n_workers = n_ctx * n_gen;
        for (int c = 0; c < n_ctx; c++) {
            pthread_mutex_init(&ctxs[c].mu, NULL);
        }
        for (int i = 0; i < n_workers; i++) {
            worker *w = &workers[i];
            w->cx = &ctxs[i % n_ctx];
            pthread_mutex_init(&w->gmu, NULL);
            w->seed = 1000u + (unsigned)i;
            w->reuse = i % 2;
        }
        t_end = now() + seconds;
        pthread_t th[MAX_CTX * MAX_GEN], canc;
        for (int i = 0; i < n_workers; i++) pthread_create(&th[i], NULL, work, &workers[i]);
        pthread_create(&canc, NULL, cancel_loop, NULL);
        for (int i = 0; i < n_workers; i++) pthread_join(th[i], NULL);
        pthread_join(canc, NULL);

        long gens = 0, canc_n = 0, abort_n = 0, mism = 0, errs = 0, rec = 0, evals = 0;
        int idle = 0;
        for (int i = 0; i < n_workers; i++) {
            worker *w = &workers[i];
            gens += w->gens; canc_n += w->cancelled; abort_n += w->aborted; mism += w->mismatches;
            errs += w->errors; rec += w->recreated; evals += w->evals;
            idle += w->gens == 0;
            if (w->msg[0]) fprintf(stderr, "worker %d: %s\n", i, w->msg);
        }
        printf("%d contexts x %d generators, %d threads each, %.1f s: %ld generations (%ld cancelled, "
               "%ld aborted in the prompt), %ld cancel calls, %ld re-creations, %ld direct evals\n",
               n_ctx, n_gen, n_threads, seconds, gens, canc_n, abort_n, atomic_load(&cancels_sent), rec, evals);
        CHECK(errs == 0, "no generation, start or evaluation failed (%ld did)", errs);
        CHECK(mism == 0, "greedy outputs equal the reference made alone (%ld differ)", mism);
        CHECK(idle == 0, "every worker completed generations (%d did none)", idle);
        CHECK(canc_n + abort_n > 0, "some generations were cancelled (%ld)", canc_n + abort_n);
        for (int c = 0; c < n_ctx; c++) {
            dsv4_context_free(ctxs[c].c);
            pthread_mutex_destroy(&ctxs[c].mu);
        }
        for (int i = 0; i < n_workers; i++) pthread_mutex_destroy(&workers[i].gmu);
    }
    dsv4_model_free(model);
    dsv4_tokenizer_free(tok);
    return test_summary();
}
