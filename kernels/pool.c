/*
 * kernels/pool.c — the context's worker pool (see pool.h).
 *
 * A loop is published by bumping a generation counter; workers watch it
 * for a short spin, then sleep on a condition variable; they take chunks
 * through an atomic cursor, and the last one to finish tells the caller
 * (which also takes chunks, then spins briefly before sleeping itself).
 */
#ifdef _OPENMP
#include <omp.h>
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include "pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* pause instructions a thread spends watching for the next loop (workers)
 * or for the workers to finish (caller) before it sleeps on the condition
 * variable: about 0.1-0.3 ms, far less than a oneDNN product, far more than
 * the gap between two loops of a decode step, where a futex wake-up would
 * cost tens of microseconds per loop */
#define SPIN_PAUSES 4096

struct dsv4k_pool {
    int n_threads;                 /* including the caller */
    int n_started;                 /* workers actually running */
    pthread_t *tids;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    atomic_ullong gen;             /* bumped per loop (under mu) */
    atomic_int quit;
    int sleepers;                  /* workers waiting on wake (under mu) */
    int caller_waits;              /* the caller waits on done (under mu) */
    atomic_int spin;               /* pauses before sleeping (dsv4k_pool_set_spin) */
    int omp;                       /* loops on OpenMP's threads (dsv4k_pool_set_omp) */
    /* the current loop: written before gen is bumped, read after */
    dsv4k_task_fn fn;
    void *arg;
    int64_t n, chunk;
    atomic_llong next;
    atomic_int busy;               /* workers still inside the loop */
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
    unsigned long long seen = 0;
    for (;;) {
        /* spin a little, then sleep until the generation moves */
        for (int i = 0, sp = atomic_load(&p->spin); i < sp && atomic_load(&p->gen) == seen && !atomic_load(&p->quit); i++) CPU_RELAX();
        if (atomic_load(&p->gen) == seen && !atomic_load(&p->quit)) {
            pthread_mutex_lock(&p->mu);
            p->sleepers++;
            while (!atomic_load(&p->quit) && atomic_load(&p->gen) == seen) pthread_cond_wait(&p->wake, &p->mu);
            p->sleepers--;
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) break;
        seen = atomic_load(&p->gen);
        run_chunks(p, wa.id);
        if (atomic_fetch_sub(&p->busy, 1) == 1) {
            /* the last one out wakes the caller if it went to sleep */
            pthread_mutex_lock(&p->mu);
            if (p->caller_waits) pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
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
    atomic_init(&p->gen, 0);
    atomic_init(&p->quit, 0);
    atomic_init(&p->busy, 0);
    atomic_init(&p->spin, SPIN_PAUSES);
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
    atomic_store(&p->quit, 1);
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
    p->fn = fn; p->arg = arg; p->n = n; p->chunk = chunk;
    atomic_store(&p->next, 0);
#ifdef _OPENMP
    if (p->omp) {
        /* the same chunks on OpenMP's team; our workers stay asleep */
#pragma omp parallel num_threads(t)
        run_chunks(p, omp_get_thread_num());
        return;
    }
#endif
    atomic_store(&p->busy, p->n_started);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->gen, 1); /* publishes the loop (sequentially consistent) */
    if (p->sleepers) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_chunks(p, 0);
    for (int i = 0, sp = atomic_load(&p->spin); i < sp && atomic_load(&p->busy) > 0; i++) CPU_RELAX();
    if (atomic_load(&p->busy) > 0) {
        pthread_mutex_lock(&p->mu);
        p->caller_waits = 1;
        while (atomic_load(&p->busy) > 0) pthread_cond_wait(&p->done, &p->mu);
        p->caller_waits = 0;
        pthread_mutex_unlock(&p->mu);
    }
}

void dsv4k_pool_set_spin(dsv4k_pool *p, int pauses)
{
    if (p) atomic_store(&p->spin, pauses < 0 ? SPIN_PAUSES : pauses);
}

void dsv4k_pool_set_omp(dsv4k_pool *p, int on)
{
    if (p) p->omp = on != 0;
}
