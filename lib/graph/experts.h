/*
 * lib/graph/experts.h — the routed-expert cache of a model loaded under a
 * memory budget (internal; docs/memory.md).
 *
 * The weights every token reads stay resident (weights.c copies them); the
 * routed experts live in fixed-size cache slots, one expert (its w1, w2, w3
 * and their scales) per slot. A miss is read from the shard files with
 * pread — O_DIRECT into 4 KiB-aligned slots where the file system allows,
 * so the page cache holds no second copy; else a plain pread followed by
 * POSIX_FADV_DONTNEED — by the cache's I/O threads, several at once. Each
 * read keeps the bytes' offset modulo 4096 as in the file (and so as in the
 * mapping): the products read a slot exactly as they would read the
 * mapping, and give the same bits.
 *
 * One cache per model, shared by every context (and so every session) of
 * it: a mutex guards the slots. A run pins the slots of the experts it is
 * about to use (acquire), waits for each to be filled (wait), and unpins
 * each after its products (release). Eviction takes the unpinned slot of
 * the least recently used expert (or, for measurements, the least
 * frequently used one, or the least recent under per-layer quotas). A
 * look-ahead predictor (moe.c; off by default) may start the next layer's
 * reads from a guess. An acquire never waits while its caller holds
 * pins, so runs sharing the cache cannot deadlock; the minimum budget is
 * one token's selected experts (n_active slots).
 */
#ifndef DSV4_GRAPH_EXPERTS_H
#define DSV4_GRAPH_EXPERTS_H

#include "weights.h"

typedef struct dsv4__xcache dsv4__xcache;

/* Create the cache of the bound weights w of ck within `budget` bytes (the
 * bytes the weights own, the mapped embedding and the slots all count).
 * DSV4_ERR_INVALID_ARGUMENT when the budget cannot hold the resident
 * weights plus n_active slots (the message gives the minimum);
 * DSV4_ERR_IO when a shard cannot be opened or has changed since it was
 * mapped; DSV4_ERR_OUT_OF_MEMORY. */
dsv4_status dsv4__xcache_create(const dsv4__checkpoint *ck, const struct dsv4__weights *w, int64_t budget,
                                dsv4__xcache **out, dsv4__err *e);
void dsv4__xcache_free(dsv4__xcache *xc);
/* mlock the slots (DSV4_OPT_MEM_LOCK): bytes locked, or 0 and *err_no */
int64_t dsv4__xcache_lock(dsv4__xcache *xc, int *err_no);
/* tests: the n-th shard read from now on (over every cache) fails with EIO; 0 none */
void dsv4__xcache_read_fail_after(long n);
long dsv4__xcache_read_fail_pending(void); /* reads left before the failure; 0 once it happened */

/* the smallest budget dsv4__xcache_create accepts for these weights */
int64_t dsv4__xcache_min_budget(const dsv4__checkpoint *ck, const struct dsv4__weights *w);

typedef struct dsv4__xstats {
    int64_t budget, fixed_bytes;   /* budget; resident weights + mapped embedding */
    int64_t slots, slot_bytes;     /* cache slots and their size */
    int64_t expert_bytes;          /* bytes one expert's products read (mean over cached experts) */
    int64_t n_experts;             /* experts that go through the cache */
    int64_t hits, misses, bytes_read, waits;
    int64_t prefetches;            /* reads started ahead (dsv4__xcache_prefetch) */
    int64_t pf_used;               /* experts read ahead that a run then acquired */
    /* the look-ahead predictor's record (dsv4__xcache_predicted / _score):
     * layers scored, the experts they selected, the predicted top-k and
     * top-2k sets' sizes and how many of the selected each held */
    int64_t pred_layers, pred_actual, pred_k, pred_2k, pred_tp_k, pred_tp_2k;
    /* the control: the previous layer's selection as the guess (scored
     * with the predictor's): guesses' sizes, how many of the selected they held */
    int64_t ctl_n, ctl_tp;
    int direct;                    /* 1: every shard read with O_DIRECT */
} dsv4__xstats;
void dsv4__xcache_stats(dsv4__xcache *xc, dsv4__xstats *s);
/* zero the hit/miss/byte counters (bench) */
void dsv4__xcache_reset_stats(dsv4__xcache *xc);
/* eviction policy: 0 LRU (default), 1 LFU (least used since loaded, ties
 * to the least recent), 2 LRU with per-layer quotas (each layer — the MTP
 * block counts as one — an equal share of the slots: a miss takes an
 * empty slot, else the least recent of its own layer when the layer holds
 * its share, else the least recent of a layer above its share; the global
 * least recent when none of those is free) */
void dsv4__xcache_set_policy(dsv4__xcache *xc, int policy);
/* drop every unpinned expert (bench: a cold cache) */
void dsv4__xcache_drop(dsv4__xcache *xc);

/* 1 when expert e of layer (n_layers = the MTP block) goes through the cache */
int dsv4__xcache_cached(const dsv4__xcache *xc, int layer, int e);

/* Pin the experts ids[0 .. n) (ascending, all cached) of a layer, in order,
 * as many as free slots allow: hits are pinned, misses get a slot (the
 * least useful unpinned one) and their reads start. slots[i] receives the
 * slot of ids[i]. Returns how many were pinned; with `block` (the caller
 * holds no pin), waits until at least one can be (n > 0). */
int dsv4__xcache_acquire(dsv4__xcache *xc, int layer, const int32_t *ids, int n, int32_t *slots, int block);
/* wait until a pinned slot holds its expert; the expert's w1, w2, w3 bound
 * to the slot's bytes into w[0..3) (from lw's descriptors). Returns 0, or
 * -1 after a failed read (msg says why). */
int dsv4__xcache_wait(dsv4__xcache *xc, int32_t slot, const dsv4__layer_w *lw, dsv4k_weight w[3], char *msg,
                      size_t cap);
void dsv4__xcache_release(dsv4__xcache *xc, int32_t slot);
/* Start reading experts ids[0 .. n) of a layer ahead of their use (the
 * hash-routed layers know them from the token ids when the step starts):
 * misses get an unpinned slot whose read is queued (such a slot is never
 * evicted while being read), up to half the slots free of pins; no wait.
 * Returns the reads started. A later acquire finds them as hits. */
int dsv4__xcache_prefetch(dsv4__xcache *xc, int layer, const int32_t *ids, int n);
/* prefetching on (default) or off (bench) */
void dsv4__xcache_set_prefetch(dsv4__xcache *xc, int on);

/* The look-ahead predictor (lib/graph/moe.c): after a layer's router ran,
 * the next layer's gate (when that layer routes by learned scores) applied
 * to this layer's FFN input gives a guess of the next layer's experts.
 * Mode 0: off (no product); 1: the guess is scored only (dsv4__xcache_score,
 * for measurements), no read starts; 2: the top-k guess is prefetched; 3:
 * the top-2k guess is. The default is 0 (docs/memory.md: it did not pay);
 * DSV4_LOOKAHEAD=N in the environment at load sets it. */
void dsv4__xcache_set_lookahead(dsv4__xcache *xc, int mode);
int dsv4__xcache_lookahead(dsv4__xcache *xc);
/* record a guess for `layer`: its top-k (ids[0..nk)) and top-2k (ids2[0..n2))
 * experts, replacing any earlier one */
void dsv4__xcache_predicted(dsv4__xcache *xc, int layer, const int32_t *ids, int nk, const int32_t *ids2, int n2);
/* score the recorded guess for `layer` (if any) against the experts its
 * router selected (ids[0..n), distinct), then forget it; with the predictor
 * on, ids then stand as the control guess for layer + 1 */
void dsv4__xcache_score(dsv4__xcache *xc, int layer, const int32_t *ids, int n);

#endif
