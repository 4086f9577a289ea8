/*
 * kernels/pool.c — the context's worker pool (see pool.h).
 *
 * A loop is published under the mutex with a generation counter; workers
 * wake on a condition variable, take chunks through an atomic cursor, and
 * the last one to finish signals the caller, which also takes chunks.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include "pool.h"

struct dsv4k_pool {
    int n_threads;                 /* including the caller */
    int n_started;                 /* workers actually running */
    pthread_t *tids;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    uint64_t gen;                  /* bumped per loop */
    int quit;
    /* the current loop */
    dsv4k_task_fn fn;
    void *arg;
    int64_t n, chunk;
    atomic_llong next;
    int busy;                      /* workers still inside the loop */
};

typedef struct { dsv4k_pool *p; int id; } worker_arg;

static void run_chunks(dsv4k_pool *p, int thread)
{
    for (;;) {
        int64_t b = atomic_fetch_add(&p->next, p->chunk);
        if (b >= p->n) break;
        int64_t e = b + p->chunk < p->n ? b + p->chunk : p->n;
        p->fn(p->arg, b, e, thread);
    }
}

static void *worker(void *varg)
{
    worker_arg wa = *(worker_arg *)varg;
    free(varg);
    dsv4k_pool *p = wa.p;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->gen == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit) break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        run_chunks(p, wa.id);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

dsv4k_pool *dsv4k_pool_create(int n_threads)
{
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 1024) n_threads = 1024;
    dsv4k_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    atomic_init(&p->next, 0);
    if (pthread_mutex_init(&p->mu, NULL)) { free(p); return NULL; }
    if (pthread_cond_init(&p->wake, NULL)) {
        pthread_mutex_destroy(&p->mu); free(p); return NULL;
    }
    if (pthread_cond_init(&p->done, NULL)) {
        pthread_cond_destroy(&p->wake); pthread_mutex_destroy(&p->mu); free(p); return NULL;
    }
    if (n_threads > 1) {
        p->tids = calloc((size_t)n_threads - 1, sizeof *p->tids);
        if (!p->tids) { dsv4k_pool_free(p); return NULL; }
        for (int i = 1; i < n_threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa) { dsv4k_pool_free(p); return NULL; }
            wa->p = p; wa->id = i;
            if (pthread_create(&p->tids[i - 1], NULL, worker, wa)) {
                free(wa); dsv4k_pool_free(p); return NULL;
            }
            p->n_started++;
        }
    }
    return p;
}

void dsv4k_pool_free(dsv4k_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->tids[i], NULL);
    free(p->tids);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int dsv4k_pool_threads(const dsv4k_pool *p)
{
    return p ? 1 + p->n_started : 1;
}

void dsv4k_pool_for(dsv4k_pool *p, int64_t n, int64_t grain, dsv4k_task_fn fn, void *arg)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int t = dsv4k_pool_threads(p);
    if (t == 1 || n <= grain) {
        fn(arg, 0, n, 0);
        return;
    }
    /* about 4 chunks per thread for balance, never below the grain */
    int64_t chunk = (n + 4 * t - 1) / (4 * t);
    if (chunk < grain) chunk = grain;
    pthread_mutex_lock(&p->mu);
    p->fn = fn; p->arg = arg; p->n = n; p->chunk = chunk;
    atomic_store(&p->next, 0);
    p->busy = p->n_started;
    p->gen++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_chunks(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->busy > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
