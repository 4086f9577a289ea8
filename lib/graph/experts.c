/*
 * lib/graph/experts.c — the routed-expert cache under a memory budget
 * (experts.h, docs/memory.md).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_DIRECT */
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "experts.h"

#define XALIGN 4096u   /* O_DIRECT offsets, lengths and buffers */
#define XGAP (64u << 10) /* tensors of one expert this close are read as one run */
#define XMAX_IO 8

enum { S_EMPTY = 0, S_LOADING = 1, S_READY = 2, S_FAILED = 3 };

typedef struct xrun {
    int32_t shard;
    uint64_t off, len;     /* aligned file range */
    uint64_t need;         /* bytes from off that hold tensor data */
    uint64_t soff;         /* offset in the slot */
} xrun;

typedef struct xexp {
    int32_t slot;          /* -1: not in the cache (under the lock) */
    int32_t cached;        /* goes through the cache */
    int32_t n_runs;
    xrun runs[6];
    int64_t toff[6];       /* slot offsets of w1, w1 scale, w2, w2 scale, w3, w3 scale (-1 none) */
    int64_t bytes;         /* tensor bytes (what a product reads) */
} xexp;

typedef struct xslot {
    int32_t key;           /* layer·E + expert, -1 none */
    int32_t state;
    int32_t pins;
    int32_t pf;            /* filled by a prefetch, not acquired since */
    uint64_t tick, freq;
    char err[200];
} xslot;

struct dsv4__xcache {
    pthread_mutex_t mu;
    pthread_cond_t cv;     /* a slot became ready, failed or unpinned */
    pthread_cond_t qcv;    /* a read was queued, or stop */
    const dsv4__checkpoint *ck;
    int E, K, n_rows;      /* experts per layer, active, layers (+ MTP) */
    xexp *ex;              /* [n_rows][E] */
    xslot *slots;
    int32_t n_slots;
    int64_t slot_bytes;
    uint8_t *mem;
    size_t mem_bytes;
    int n_shards;
    int *fd;               /* plain descriptors */
    atomic_int *fdd;       /* O_DIRECT descriptors (-1: none, or refused) */
    int64_t *size, *mt_s, *mt_ns; /* at open */
    int32_t *q;            /* ring of slots to read */
    int32_t qh, qn;
    pthread_t io[XMAX_IO];
    int n_io, stop;
    uint64_t tick;
    int policy, prefetch, lookahead;
    int32_t *held;         /* [n_rows] slots holding each layer's experts (quotas) */
    uint8_t *pred;         /* [n_rows][E] the recorded guess: 1 top-k, 2 top-2k only */
    uint8_t *pred_on;      /* [n_rows] a guess is recorded */
    uint8_t *ctl;          /* [n_rows][E] the control guess: the previous layer's selection */
    uint8_t *ctl_on;       /* [n_rows] */
    int64_t budget, fixed, n_cached, bytes_cached;
    int64_t hits, misses, bytes_read, waits, prefetches, pf_used;
    int64_t pred_layers, pred_actual, pred_k, pred_2k, pred_tp_k, pred_tp_2k, ctl_n, ctl_tp;
};

/* slot s now holds key (-1: nothing): the per-layer counts follow */
static void set_key(dsv4__xcache *xc, int32_t s, int32_t key)
{
    xslot *v = &xc->slots[s];
    if (v->key >= 0) xc->held[v->key / xc->E]--;
    v->key = key;
    if (key >= 0) xc->held[key / xc->E]++;
}

/* ---- layout ------------------------------------------------------------ */

static const dsv4__layer_w *row_layer(const struct dsv4__weights *w, int row)
{
    return row < w->n_layers ? &w->layers[row] : w->mtp;
}

typedef struct piece { int32_t shard, idx; uint64_t off, n; } piece;

static int cmp_piece(const void *a, const void *b)
{
    const piece *x = a, *y = b;
    if (x->shard != y->shard) return x->shard < y->shard ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* the runs and slot offsets of expert e of a layer (prefix p); 0 when it
 * cannot be cached (a tensor copied at bind, for alignment) */
static int expert_layout(const dsv4__checkpoint *ck, const dsv4__layer_w *lw, const char *p, int e, xexp *x)
{
    const dsv4k_weight *wt[3] = { &lw->w1[e], &lw->w2[e], &lw->w3[e] };
    piece pc[6];
    int np = 0;
    memset(x, 0, sizeof *x);
    x->slot = -1;
    for (int j = 0; j < 6; j++) x->toff[j] = -1;
    for (int j = 0; j < 3; j++) {
        for (int s = 0; s < 2; s++) {
            const void *ptr = s ? wt[j]->s : wt[j]->w;
            if (s && !ptr) continue;
            char name[192];
            snprintf(name, sizeof name, "%sffn.experts.%d.w%d.%s", p, e, j + 1, s ? "scale" : "weight");
            const dsv4__tensor *t = dsv4__checkpoint_tensor(ck, name);
            if (!t || (const void *)t->data != ptr) return 0;
            pc[np++] = (piece){ t->shard, 2 * j + s, t->offset, t->nbytes };
            x->bytes += (int64_t)t->nbytes;
        }
    }
    qsort(pc, (size_t)np, sizeof *pc, cmp_piece);
    uint64_t soff = 0;
    xrun *r = NULL;
    for (int i = 0; i < np; i++) {
        uint64_t a = pc[i].off & ~(uint64_t)(XALIGN - 1), end = pc[i].off + pc[i].n;
        if (!r || r->shard != pc[i].shard || a > r->off + r->len + XGAP) {
            if (r) soff += r->len;
            r = &x->runs[x->n_runs++];
            r->shard = pc[i].shard;
            r->off = a;
            r->soff = soff;
            r->need = 0;
        }
        if (end - r->off > r->need) r->need = end - r->off;
        r->len = (r->need + XALIGN - 1) & ~(uint64_t)(XALIGN - 1);
        x->toff[pc[i].idx] = (int64_t)(r->soff + (pc[i].off - r->off));
    }
    x->cached = 1;
    return 1;
}

static int64_t expert_slot_bytes(const xexp *x)
{
    int64_t n = 0;
    for (int i = 0; i < x->n_runs; i++) n += (int64_t)x->runs[i].len;
    return n;
}

static int64_t fixed_bytes(const dsv4__checkpoint *ck, const struct dsv4__weights *w)
{
    int64_t n = w->owned_bytes;
    const dsv4__tensor *t = dsv4__checkpoint_tensor(ck, "embed.weight");
    if (t && (const void *)t->data == w->embed.w) n += (int64_t)t->nbytes; /* mapped: counted whole */
    return n;
}

/* the table of every expert (xc->ex), the slot size; 0 or -1 (memory) */
static int build_table(dsv4__xcache *xc, const struct dsv4__weights *w)
{
    const dsv4__checkpoint *ck = xc->ck;
    xc->ex = dsv4__calloc((size_t)xc->n_rows * (size_t)xc->E, sizeof *xc->ex);
    if (!xc->ex) return -1;
    for (int l = 0; l < xc->n_rows; l++) {
        const dsv4__layer_w *lw = row_layer(w, l);
        char p[32];
        if (l < w->n_layers) snprintf(p, sizeof p, "layers.%d.", l);
        else snprintf(p, sizeof p, "mtp.0.");
        for (int e = 0; e < xc->E; e++) {
            xexp *x = &xc->ex[(size_t)l * xc->E + e];
            if (!expert_layout(ck, lw, p, e, x)) continue;
            int64_t sb = expert_slot_bytes(x);
            if (sb > xc->slot_bytes) xc->slot_bytes = sb;
            xc->n_cached++;
            xc->bytes_cached += x->bytes;
        }
    }
    return 0;
}

int64_t dsv4__xcache_min_budget(const dsv4__checkpoint *ck, const struct dsv4__weights *w)
{
    dsv4__xcache tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.ck = ck;
    tmp.E = ck->cfg.n_routed_experts;
    tmp.n_rows = w->n_layers + (w->mtp ? 1 : 0);
    if (build_table(&tmp, w)) return -1;
    dsv4__free(tmp.ex);
    return fixed_bytes(ck, w) + (int64_t)ck->cfg.n_active_experts * tmp.slot_bytes;
}

/* ---- reads ------------------------------------------------------------- */

/* tests: the n-th read of a shard run from now fails as an I/O error would
 * (0: none) */
static atomic_long read_countdown;
int64_t dsv4__xcache_lock(dsv4__xcache *xc, int *err_no)
{
    *err_no = 0;
    if (!xc->mem || !xc->mem_bytes) return 0;
    if (mlock(xc->mem, xc->mem_bytes) != 0) {
        *err_no = errno;
        return 0;
    }
    return (int64_t)xc->mem_bytes;
}

void dsv4__xcache_read_fail_after(long n) { atomic_store(&read_countdown, n); }
long dsv4__xcache_read_fail_pending(void) { return atomic_load(&read_countdown); }

static int read_should_fail(void)
{
    long c = atomic_load(&read_countdown);
    while (c > 0)
        if (atomic_compare_exchange_weak(&read_countdown, &c, c - 1)) return c == 1;
    return 0;
}

/* read expert x into slot memory dst; 0, or -1 with err */
static int read_expert(dsv4__xcache *xc, const xexp *x, uint8_t *dst, int64_t *bytes, char *err, size_t cap)
{
    *bytes = 0;
    for (int i = 0; i < x->n_runs; i++) {
        const xrun *r = &x->runs[i];
        const char *path = xc->ck->shards[r->shard].path;
        if (read_should_fail()) {
            snprintf(err, cap, "%s: read of %llu bytes at %llu failed: %s (injected)", path,
                     (unsigned long long)r->need, (unsigned long long)r->off, strerror(EIO));
            return -1;
        }
        struct stat sb;
        if (fstat(xc->fd[r->shard], &sb) != 0) {
            snprintf(err, cap, "%s: cannot stat: %s", path, strerror(errno));
            return -1;
        }
        if ((int64_t)sb.st_size != xc->size[r->shard] || (int64_t)sb.st_mtim.tv_sec != xc->mt_s[r->shard] ||
            (int64_t)sb.st_mtim.tv_nsec != xc->mt_ns[r->shard]) {
            snprintf(err, cap, "%s changed on disk since the model was loaded (size %lld, was %lld): reload the "
                     "model", path, (long long)sb.st_size, (long long)xc->size[r->shard]);
            return -1;
        }
        uint64_t got = 0;
        int fd = atomic_load(&xc->fdd[r->shard]);
        int direct = fd >= 0;
        if (!direct) fd = xc->fd[r->shard];
        while (got < r->need) {
            /* O_DIRECT: whole aligned blocks (the last may pass the file's end) */
            uint64_t want = direct ? r->len - got : r->need - got;
            ssize_t n = pread(fd, dst + r->soff + got, want, (off_t)(r->off + got));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && direct && errno == EINVAL && got == 0) {
                /* the file system refuses direct reads: plain ones from now on */
                atomic_store(&xc->fdd[r->shard], -1);
                fd = xc->fd[r->shard];
                direct = 0;
                continue;
            }
            if (n < 0) {
                snprintf(err, cap, "%s: read of %llu bytes at %llu failed: %s", path, (unsigned long long)want,
                         (unsigned long long)(r->off + got), strerror(errno));
                return -1;
            }
            if (n == 0) {
                snprintf(err, cap, "%s: the file ends at byte %llu, before the expert's data (to %llu): truncated "
                         "since the model was loaded?", path, (unsigned long long)(r->off + got),
                         (unsigned long long)(r->off + r->need));
                return -1;
            }
            got += (uint64_t)n;
        }
        if (!direct) (void)posix_fadvise(fd, (off_t)r->off, (off_t)r->need, POSIX_FADV_DONTNEED); /* no second copy */
        *bytes += (int64_t)r->need;
    }
    return 0;
}

static void *io_main(void *arg)
{
    dsv4__xcache *xc = arg;
    char err[200];
    pthread_mutex_lock(&xc->mu);
    for (;;) {
        while (!xc->stop && xc->qn == 0) pthread_cond_wait(&xc->qcv, &xc->mu);
        if (xc->stop) break;
        int32_t s = xc->q[xc->qh];
        xc->qh = (xc->qh + 1) % xc->n_slots;
        xc->qn--;
        int32_t key = xc->slots[s].key;
        const xexp *x = &xc->ex[key];
        pthread_mutex_unlock(&xc->mu);
        int64_t bytes = 0;
        err[0] = 0;
        int rc = read_expert(xc, x, xc->mem + (size_t)s * (size_t)xc->slot_bytes, &bytes, err, sizeof err);
        pthread_mutex_lock(&xc->mu);
        xslot *sl = &xc->slots[s];
        xc->bytes_read += bytes;
        if (rc == 0) {
            sl->state = S_READY;
        } else {
            sl->state = S_FAILED;
            snprintf(sl->err, sizeof sl->err, "%s", err);
            xc->ex[key].slot = -1;
            set_key(xc, s, -1);
        }
        pthread_cond_broadcast(&xc->cv);
    }
    pthread_mutex_unlock(&xc->mu);
    return NULL;
}

/* ---- create, free ------------------------------------------------------ */

void dsv4__xcache_free(dsv4__xcache *xc)
{
    if (!xc) return;
    if (xc->n_io) {
        pthread_mutex_lock(&xc->mu);
        xc->stop = 1;
        pthread_cond_broadcast(&xc->qcv);
        pthread_mutex_unlock(&xc->mu);
        for (int i = 0; i < xc->n_io; i++) pthread_join(xc->io[i], NULL);
    }
    for (int i = 0; xc->fd && i < xc->n_shards; i++) {
        if (xc->fd[i] >= 0) close(xc->fd[i]);
        int d = xc->fdd ? atomic_load(&xc->fdd[i]) : -1;
        if (d >= 0) close(d);
    }
    if (xc->mem) munmap(xc->mem, xc->mem_bytes);
    pthread_cond_destroy(&xc->qcv);
    pthread_cond_destroy(&xc->cv);
    pthread_mutex_destroy(&xc->mu);
    dsv4__free(xc->fd);
    dsv4__free(xc->fdd);
    dsv4__free(xc->size);
    dsv4__free(xc->mt_s);
    dsv4__free(xc->mt_ns);
    dsv4__free(xc->q);
    dsv4__free(xc->slots);
    dsv4__free(xc->held);
    dsv4__free(xc->pred);
    dsv4__free(xc->pred_on);
    dsv4__free(xc->ctl);
    dsv4__free(xc->ctl_on);
    dsv4__free(xc->ex);
    dsv4__free(xc);
}

dsv4_status dsv4__xcache_create(const dsv4__checkpoint *ck, const struct dsv4__weights *w, int64_t budget,
                                dsv4__xcache **out, dsv4__err *e)
{
    *out = NULL;
    dsv4__xcache *xc = dsv4__calloc(1, sizeof *xc);
    if (!xc) return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "expert cache: out of memory");
    pthread_mutex_init(&xc->mu, NULL);
    pthread_cond_init(&xc->cv, NULL);
    pthread_cond_init(&xc->qcv, NULL);
    xc->ck = ck;
    xc->E = ck->cfg.n_routed_experts;
    xc->K = ck->cfg.n_active_experts;
    xc->n_rows = w->n_layers + (w->mtp ? 1 : 0);
    xc->budget = budget;
    xc->prefetch = 1;
    const char *la = getenv("DSV4_LOOKAHEAD");
    xc->lookahead = la && *la >= '0' && *la <= '3' ? *la - '0' : 0;
    dsv4_status st = DSV4_OK;
    char b1[32], b2[32], b3[32], b4[32];
    if (build_table(xc, w)) {
        st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "expert cache: out of memory");
        goto fail;
    }
    xc->fixed = fixed_bytes(ck, w);
    int64_t min = xc->fixed + (int64_t)xc->K * xc->slot_bytes;
    if (budget < min) {
        st = dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT,
                        "memory budget %s is below this model's minimum of %s: the resident weights (%s) plus one "
                        "token's %d routed experts (%s each)", dsv4__fmt_bytes(b1, sizeof b1, budget),
                        dsv4__fmt_bytes(b2, sizeof b2, min), dsv4__fmt_bytes(b3, sizeof b3, xc->fixed), xc->K,
                        dsv4__fmt_bytes(b4, sizeof b4, xc->slot_bytes));
        goto fail;
    }
    int64_t n = (budget - xc->fixed) / (xc->slot_bytes ? xc->slot_bytes : 1);
    if (n > xc->n_cached) n = xc->n_cached;
    if (n < 1) n = 1;
    xc->n_slots = (int32_t)n;
    xc->slots = dsv4__calloc((size_t)n, sizeof *xc->slots);
    xc->q = dsv4__calloc((size_t)n, sizeof *xc->q);
    xc->n_shards = ck->n_shards;
    xc->fd = dsv4__calloc((size_t)ck->n_shards, sizeof *xc->fd);
    xc->fdd = dsv4__calloc((size_t)ck->n_shards, sizeof *xc->fdd);
    xc->size = dsv4__calloc((size_t)ck->n_shards, sizeof *xc->size);
    xc->mt_s = dsv4__calloc((size_t)ck->n_shards, sizeof *xc->mt_s);
    xc->mt_ns = dsv4__calloc((size_t)ck->n_shards, sizeof *xc->mt_ns);
    xc->held = dsv4__calloc((size_t)xc->n_rows, sizeof *xc->held);
    xc->pred = dsv4__calloc((size_t)xc->n_rows * (size_t)xc->E, 1);
    xc->pred_on = dsv4__calloc((size_t)xc->n_rows, 1);
    xc->ctl = dsv4__calloc((size_t)xc->n_rows * (size_t)xc->E, 1);
    xc->ctl_on = dsv4__calloc((size_t)xc->n_rows, 1);
    if (!xc->held || !xc->ctl || !xc->ctl_on || !xc->pred || !xc->pred_on || !xc->slots || !xc->q || !xc->fd || !xc->fdd || !xc->size || !xc->mt_s || !xc->mt_ns) {
        dsv4__free(xc->fd);
        xc->fd = NULL;
        st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "expert cache: out of memory");
        goto fail;
    }
    for (int32_t i = 0; i < xc->n_slots; i++) xc->slots[i].key = -1;
    for (int i = 0; i < ck->n_shards; i++) {
        xc->fd[i] = -1;
        atomic_init(&xc->fdd[i], -1);
    }
    for (int i = 0; i < ck->n_shards; i++) {
        const dsv4__shard *sh = &ck->shards[i];
        struct stat sb;
        xc->fd[i] = open(sh->path, O_RDONLY | O_CLOEXEC);
        if (xc->fd[i] < 0 || fstat(xc->fd[i], &sb) != 0) {
            st = dsv4__fail(e, DSV4_ERR_IO, "expert cache: %s: cannot open: %s", sh->path, strerror(errno));
            goto fail;
        }
        if ((uint64_t)sb.st_size != sh->size) {
            st = dsv4__fail(e, DSV4_ERR_IO, "expert cache: %s changed on disk during the load", sh->path);
            goto fail;
        }
        xc->size[i] = (int64_t)sb.st_size;
        xc->mt_s[i] = (int64_t)sb.st_mtim.tv_sec;
        xc->mt_ns[i] = (int64_t)sb.st_mtim.tv_nsec;
        (void)posix_fadvise(xc->fd[i], 0, 0, POSIX_FADV_RANDOM);
#ifdef O_DIRECT
        if (!getenv("DSV4_NO_DIRECT_IO")) atomic_store(&xc->fdd[i], open(sh->path, O_RDONLY | O_CLOEXEC | O_DIRECT));
#endif
    }
    xc->mem_bytes = (size_t)xc->n_slots * (size_t)xc->slot_bytes;
    void *mem = mmap(NULL, xc->mem_bytes ? xc->mem_bytes : XALIGN, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        xc->mem_bytes = 0;
        st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "expert cache: cannot map %s of slots",
                        dsv4__fmt_bytes(b1, sizeof b1, (int64_t)xc->n_slots * xc->slot_bytes));
        goto fail;
    }
    if (!xc->mem_bytes) xc->mem_bytes = XALIGN;
    xc->mem = mem;
    /* one reader per selected expert of a layer (4 to 8): a layer's misses are read at once */
    int n_io = xc->K < 4 ? 4 : xc->K > XMAX_IO ? XMAX_IO : xc->K;
    if (n_io > xc->n_slots) n_io = xc->n_slots;
    for (int i = 0; i < n_io; i++) {
        if (pthread_create(&xc->io[i], NULL, io_main, xc) != 0) {
            st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "expert cache: cannot start its reading threads");
            goto fail;
        }
        xc->n_io++;
    }
    *out = xc;
    return DSV4_OK;
fail:
    dsv4__xcache_free(xc);
    return st;
}

/* ---- use --------------------------------------------------------------- */

int dsv4__xcache_cached(const dsv4__xcache *xc, int layer, int e)
{
    return xc->ex[(size_t)layer * xc->E + e].cached;
}

/* the unpinned slot to refill for an expert of layer `row`: an empty one,
 * else the least recently (LRU) or least often (LFU) used; with quotas
 * (policy 2) the least recent of the preferred class (experts.h); -1 when
 * every slot is pinned */
static int32_t victim(dsv4__xcache *xc, int row)
{
    int32_t best = -1, quota = xc->n_slots / xc->n_rows;
    int bclass = 3, own_full = quota > 0 && xc->held[row] >= quota;
    for (int32_t i = 0; i < xc->n_slots; i++) {
        const xslot *s = &xc->slots[i];
        if (s->pins || s->state == S_LOADING) continue; /* a prefetch being read has no pin */
        if (s->key < 0) return i;
        int cls = 0;
        if (xc->policy == 2 && quota > 0) {
            int r = s->key / xc->E;
            cls = own_full ? (r == row ? 1 : 2) : (xc->held[r] > quota ? 1 : 2);
        }
        if (best < 0 || cls < bclass) { best = i; bclass = cls; continue; }
        if (cls > bclass) continue;
        const xslot *b = &xc->slots[best];
        int better = xc->policy == 1 ? (s->freq < b->freq || (s->freq == b->freq && s->tick < b->tick))
                                     : s->tick < b->tick;
        if (better) best = i;
    }
    return best;
}

int dsv4__xcache_acquire(dsv4__xcache *xc, int layer, const int32_t *ids, int n, int32_t *slots, int block)
{
    pthread_mutex_lock(&xc->mu);
    int i;
    for (;;) {
        for (i = 0; i < n; i++) {
            int32_t key = layer * xc->E + ids[i];
            xexp *x = &xc->ex[key];
            int32_t s = x->slot;
            if (s >= 0) {
                xc->hits++;
                if (xc->slots[s].state == S_LOADING) xc->waits++;
                if (xc->slots[s].pf) xc->pf_used++;
                xc->slots[s].pf = 0;
            } else {
                s = victim(xc, layer);
                if (s < 0) break;
                xslot *v = &xc->slots[s];
                if (v->key >= 0) xc->ex[v->key].slot = -1;
                set_key(xc, s, key);
                v->state = S_LOADING;
                v->freq = 0;
                v->pf = 0;
                x->slot = s;
                xc->misses++;
                xc->q[(xc->qh + xc->qn) % xc->n_slots] = s;
                xc->qn++;
                pthread_cond_signal(&xc->qcv);
            }
            xslot *sl = &xc->slots[s];
            sl->pins++;
            sl->freq++;
            sl->tick = ++xc->tick;
            slots[i] = s;
        }
        if (i > 0 || !block || n == 0) break;
        pthread_cond_wait(&xc->cv, &xc->mu);
    }
    pthread_mutex_unlock(&xc->mu);
    return i;
}

int dsv4__xcache_prefetch(dsv4__xcache *xc, int layer, const int32_t *ids, int n)
{
    int started = 0;
    pthread_mutex_lock(&xc->mu);
    int64_t free_slots = 0;
    for (int32_t i = 0; i < xc->n_slots; i++) free_slots += !xc->slots[i].pins && xc->slots[i].state != S_LOADING;
    /* never more than half the slots a run could take: prefetches must not
     * evict each other (or what this step's other layers hold) */
    for (int i = 0; xc->prefetch && i < n && started < free_slots / 2; i++) {
        int32_t key = layer * xc->E + ids[i];
        xexp *x = &xc->ex[key];
        if (!x->cached || x->slot >= 0) continue;
        int32_t s = victim(xc, layer);
        if (s < 0) break;
        xslot *v = &xc->slots[s];
        if (v->key >= 0) xc->ex[v->key].slot = -1;
        set_key(xc, s, key);
        v->state = S_LOADING;
        v->freq = 0;
        v->pf = 1;
        v->tick = ++xc->tick;
        x->slot = s;
        xc->prefetches++;
        xc->q[(xc->qh + xc->qn) % xc->n_slots] = s;
        xc->qn++;
        pthread_cond_signal(&xc->qcv);
        started++;
    }
    pthread_mutex_unlock(&xc->mu);
    return started;
}

void dsv4__xcache_set_prefetch(dsv4__xcache *xc, int on)
{
    pthread_mutex_lock(&xc->mu);
    xc->prefetch = on;
    pthread_mutex_unlock(&xc->mu);
}

int dsv4__xcache_wait(dsv4__xcache *xc, int32_t slot, const dsv4__layer_w *lw, dsv4k_weight w[3], char *msg,
                      size_t cap)
{
    pthread_mutex_lock(&xc->mu);
    xslot *s = &xc->slots[slot];
    while (s->state == S_LOADING) pthread_cond_wait(&xc->cv, &xc->mu);
    if (s->state != S_READY) {
        snprintf(msg, cap, "%s", s->err[0] ? s->err : "expert read failed");
        pthread_mutex_unlock(&xc->mu);
        return -1;
    }
    int32_t key = s->key;
    pthread_mutex_unlock(&xc->mu);
    const xexp *x = &xc->ex[key];
    int e = key % xc->E;
    const uint8_t *base = xc->mem + (size_t)slot * (size_t)xc->slot_bytes;
    const dsv4k_weight *src[3] = { &lw->w1[e], &lw->w2[e], &lw->w3[e] };
    for (int j = 0; j < 3; j++) {
        w[j] = *src[j];
        w[j].w = base + x->toff[2 * j];
        if (x->toff[2 * j + 1] >= 0) w[j].s = base + x->toff[2 * j + 1];
    }
    return 0;
}

void dsv4__xcache_release(dsv4__xcache *xc, int32_t slot)
{
    pthread_mutex_lock(&xc->mu);
    xslot *s = &xc->slots[slot];
    if (--s->pins == 0) {
        if (s->state == S_FAILED) s->state = S_EMPTY;
        pthread_cond_broadcast(&xc->cv);
    }
    pthread_mutex_unlock(&xc->mu);
}

void dsv4__xcache_stats(dsv4__xcache *xc, dsv4__xstats *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&xc->mu);
    s->budget = xc->budget;
    s->fixed_bytes = xc->fixed;
    s->slots = xc->n_slots;
    s->slot_bytes = xc->slot_bytes;
    s->n_experts = xc->n_cached;
    s->expert_bytes = xc->n_cached ? xc->bytes_cached / xc->n_cached : 0;
    s->hits = xc->hits;
    s->misses = xc->misses;
    s->bytes_read = xc->bytes_read;
    s->waits = xc->waits;
    s->prefetches = xc->prefetches;
    s->pf_used = xc->pf_used;
    s->pred_layers = xc->pred_layers;
    s->pred_actual = xc->pred_actual;
    s->pred_k = xc->pred_k;
    s->pred_2k = xc->pred_2k;
    s->pred_tp_k = xc->pred_tp_k;
    s->pred_tp_2k = xc->pred_tp_2k;
    s->ctl_n = xc->ctl_n;
    s->ctl_tp = xc->ctl_tp;
    s->direct = 1;
    for (int i = 0; i < xc->n_shards; i++) s->direct &= atomic_load(&xc->fdd[i]) >= 0;
    pthread_mutex_unlock(&xc->mu);
}

void dsv4__xcache_reset_stats(dsv4__xcache *xc)
{
    pthread_mutex_lock(&xc->mu);
    xc->hits = xc->misses = xc->bytes_read = xc->waits = xc->prefetches = xc->pf_used = 0;
    xc->pred_layers = xc->pred_actual = xc->pred_k = xc->pred_2k = xc->pred_tp_k = xc->pred_tp_2k = 0;
    xc->ctl_n = xc->ctl_tp = 0;
    pthread_mutex_unlock(&xc->mu);
}

void dsv4__xcache_set_policy(dsv4__xcache *xc, int policy)
{
    pthread_mutex_lock(&xc->mu);
    xc->policy = policy;
    pthread_mutex_unlock(&xc->mu);
}

void dsv4__xcache_drop(dsv4__xcache *xc)
{
    pthread_mutex_lock(&xc->mu);
    for (int32_t i = 0; i < xc->n_slots; i++) {
        xslot *s = &xc->slots[i];
        if (s->pins || s->key < 0 || s->state == S_LOADING) continue;
        xc->ex[s->key].slot = -1;
        set_key(xc, i, -1);
        s->state = S_EMPTY;
        s->pf = 0;
        s->freq = 0;
        s->tick = 0;
    }
    pthread_mutex_unlock(&xc->mu);
}

void dsv4__xcache_set_lookahead(dsv4__xcache *xc, int mode)
{
    pthread_mutex_lock(&xc->mu);
    xc->lookahead = mode;
    pthread_mutex_unlock(&xc->mu);
}

int dsv4__xcache_lookahead(dsv4__xcache *xc)
{
    pthread_mutex_lock(&xc->mu);
    int m = xc->lookahead;
    pthread_mutex_unlock(&xc->mu);
    return m;
}

void dsv4__xcache_predicted(dsv4__xcache *xc, int layer, const int32_t *ids, int nk, const int32_t *ids2, int n2)
{
    pthread_mutex_lock(&xc->mu);
    uint8_t *p = xc->pred + (size_t)layer * xc->E;
    memset(p, 0, (size_t)xc->E);
    for (int i = 0; i < n2; i++) p[ids2[i]] = 2;
    for (int i = 0; i < nk; i++) p[ids[i]] = 1;
    xc->pred_on[layer] = 1;
    pthread_mutex_unlock(&xc->mu);
}

void dsv4__xcache_score(dsv4__xcache *xc, int layer, const int32_t *ids, int n)
{
    pthread_mutex_lock(&xc->mu);
    if (xc->pred_on[layer]) {
        const uint8_t *p = xc->pred + (size_t)layer * xc->E;
        xc->pred_layers++;
        xc->pred_actual += n;
        for (int e = 0; e < xc->E; e++) {
            xc->pred_k += p[e] == 1;
            xc->pred_2k += p[e] != 0;
        }
        for (int i = 0; i < n; i++) {
            xc->pred_tp_k += p[ids[i]] == 1;
            xc->pred_tp_2k += p[ids[i]] != 0;
        }
        xc->pred_on[layer] = 0;
        /* the control, scored on the same layer steps */
        if (xc->ctl_on[layer]) {
            const uint8_t *q = xc->ctl + (size_t)layer * xc->E;
            for (int e = 0; e < xc->E; e++) xc->ctl_n += q[e];
            for (int i = 0; i < n; i++) xc->ctl_tp += q[ids[i]];
        }
    }
    xc->ctl_on[layer] = 0;
    if (xc->lookahead && layer + 1 < xc->n_rows) {
        uint8_t *q = xc->ctl + (size_t)(layer + 1) * xc->E;
        memset(q, 0, (size_t)xc->E);
        for (int i = 0; i < n; i++) q[ids[i]] = 1;
        xc->ctl_on[layer + 1] = 1;
    }
    pthread_mutex_unlock(&xc->mu);
}
