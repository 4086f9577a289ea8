/*
 * kernels/pool.h — the worker thread pool owned by a context.
 *
 * The caller's thread takes part in every parallel loop. Between loops the
 * workers spin for a fraction of a millisecond (a decode step runs loops
 * back to back, and a futex wake-up per loop would cost more than many of
 * the loops), then sleep, so that oneDNN's OpenMP threads, which run on the
 * caller's thread between our loops, get the cores for their products.
 */
#ifndef DSV4_POOL_H
#define DSV4_POOL_H

#include <stdint.h>

typedef struct dsv4k_pool dsv4k_pool;

/* n_threads total, caller included (1 = no worker threads). NULL on failure. */
dsv4k_pool *dsv4k_pool_create(int n_threads);
void dsv4k_pool_free(dsv4k_pool *pool);
/* number of threads taking part in a loop (>= 1); 1 for NULL */
int dsv4k_pool_threads(const dsv4k_pool *pool);

/* fn(arg, begin, end, thread) over [0, n) split into chunks of at least
 * `grain` items, thread in [0, threads). Returns when every chunk is done.
 * pool NULL runs serially on the caller. Not re-entrant: fn must not call
 * dsv4k_pool_for on the same pool. */
typedef void (*dsv4k_task_fn)(void *arg, int64_t begin, int64_t end, int thread);
void dsv4k_pool_for(dsv4k_pool *pool, int64_t n, int64_t grain, dsv4k_task_fn fn, void *arg);

/* pauses a thread spins before sleeping (0: sleep at once; < 0: adaptive,
 * the default: each thread spins up to 4096 pauses while its waits end
 * within the spin and backs off to sleeping at once while they do not);
 * for benchmarks and callers that must not burn CPU */
void dsv4k_pool_set_spin(dsv4k_pool *pool, int pauses);
/* the setting (-1 adaptive); -1 for NULL */
int dsv4k_pool_get_spin(const dsv4k_pool *pool);
/* adaptive waits since creation that ended within the spin / went to sleep */
void dsv4k_pool_spin_stats(const dsv4k_pool *pool, int64_t *hits, int64_t *sleeps);

/* on: loops run on OpenMP's team (the threads oneDNN's products use, as
 * many as the pool has, thread = omp_get_thread_num()) while the pool's
 * workers stay asleep. For batches that alternate our loops with oneDNN
 * products: OpenMP's idle threads spin for milliseconds after a product and
 * would compete for the cores with a second set of threads. Off (the
 * default): the pool's own workers, whose wake-up is cheaper for the short
 * loops of a decode step. Set only between loops. */
void dsv4k_pool_set_omp(dsv4k_pool *pool, int on);

#endif
