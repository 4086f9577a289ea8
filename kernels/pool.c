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

/* Adaptive waiting (spin < 0, the default): each waiting thread keeps the
 * share of its recent spins that paid (the awaited loop, or the workers'
 * end, came within the spin), as a moving average over about 8 spins. At
 * 3/4 or more it spins the full SPIN_PAUSES before sleeping; below, it
 * sleeps at once, except that one wait in 64 still spins (a probe), so that
 * the share can recover when the spins would pay again. On a machine whose
 * cores another busy process takes, the threads are descheduled in turn and
 * the gaps between loops outlast the spins: the share falls and the waiting
 * threads give their cores away instead of spinning against the working
 * ones. A caller that pauses between calls costs one missed spin per pause,
 * which the many short gaps inside a call outweigh. */
#define RATE_ONE 1024               /* the share, in 1/1024 */
#define RATE_ON 768                 /* spin while the share is at least this */
#define PROBE_EVERY 64              /* below it, spin on one wait in this many */
typedef struct waiter { int rate; unsigned n; } waiter;

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
    atomic_int spin;               /* pauses before sleeping, -1 adaptive (dsv4k_pool_set_spin) */
    waiter caller_w;               /* the caller's adaptive waiting */
    atomic_llong n_spin_hits, n_sleeps; /* adaptive waits that ended in the spin / slept (statistics) */
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

/* pauses to spin for this wait: the fixed setting, or the adaptive choice */
static int spin_for(const dsv4k_pool *p, waiter *w)
{
    int sp = atomic_load(&p->spin);
    if (sp >= 0) return sp;
    if (w->rate >= RATE_ON) return SPIN_PAUSES;
    return ++w->n % PROBE_EVERY == 0 ? SPIN_PAUSES : 0;
}

/* after a wait that spun `spun` pauses: it ended within the spin (hit) or not */
static void adapt(dsv4k_pool *p, waiter *w, int spun, int hit)
{
    if (atomic_load(&p->spin) >= 0) return;
    atomic_fetch_add_explicit(hit ? &p->n_spin_hits : &p->n_sleeps, 1, memory_order_relaxed);
    if (!spun) return;
    /* a probe counts more: there are few of them */
    int sh = w->rate >= RATE_ON ? 3 : 2;
    w->rate += hit ? (RATE_ONE - w->rate) >> sh : -(w->rate >> sh);
}

static void *worker(void *varg)
{
    worker_arg wa = *(worker_arg *)varg;
    free(varg);
    dsv4k_pool *p = wa.p;
    unsigned long long seen = 0;
    waiter w = { RATE_ONE, 0 };
    for (;;) {
        /* spin a little, then sleep until the generation moves */
        int sp = spin_for(p, &w);
        for (int i = 0; i < sp && atomic_load(&p->gen) == seen && !atomic_load(&p->quit); i++) CPU_RELAX();
        if (atomic_load(&p->gen) == seen && !atomic_load(&p->quit)) {
            pthread_mutex_lock(&p->mu);
            p->sleepers++;
            while (!atomic_load(&p->quit) && atomic_load(&p->gen) == seen) pthread_cond_wait(&p->wake, &p->mu);
            p->sleepers--;
            pthread_mutex_unlock(&p->mu);
            adapt(p, &w, sp, 0);
        } else {
            adapt(p, &w, sp, 1);
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
    atomic_init(&p->spin, -1);
    p->caller_w.rate = RATE_ONE;
    atomic_init(&p->n_spin_hits, 0);
    atomic_init(&p->n_sleeps, 0);
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
    int sp = spin_for(p, &p->caller_w);
    for (int i = 0; i < sp && atomic_load(&p->busy) > 0; i++) CPU_RELAX();
    if (atomic_load(&p->busy) > 0) {
        pthread_mutex_lock(&p->mu);
        p->caller_waits = 1;
        while (atomic_load(&p->busy) > 0) pthread_cond_wait(&p->done, &p->mu);
        p->caller_waits = 0;
        pthread_mutex_unlock(&p->mu);
        adapt(p, &p->caller_w, sp, 0);
    } else {
        adapt(p, &p->caller_w, sp, 1);
    }
}

void dsv4k_pool_set_spin(dsv4k_pool *p, int pauses)
{
    if (p) atomic_store(&p->spin, pauses < 0 ? -1 : pauses);
}

int dsv4k_pool_get_spin(const dsv4k_pool *p)
{
    return p ? atomic_load(&((dsv4k_pool *)p)->spin) : -1;
}

void dsv4k_pool_spin_stats(const dsv4k_pool *p, int64_t *hits, int64_t *sleeps)
{
    dsv4k_pool *q = (dsv4k_pool *)p;
    if (hits) *hits = q ? atomic_load(&q->n_spin_hits) : 0;
    if (sleeps) *sleeps = q ? atomic_load(&q->n_sleeps) : 0;
}

void dsv4k_pool_set_omp(dsv4k_pool *p, int on)
{
    if (p) p->omp = on != 0;
}
