/*
 * lib/api/cache.c — the prefix cache (docs/sessions.md): session states
 * keyed by (model fingerprint, numerics, revision, MTP, token prefix), in
 * memory under a byte budget with LRU eviction, optionally backed by a
 * directory of session files (lib/state) that outlives the process, under a
 * disk budget with LRU eviction of its files.
 *
 * The directory may be shared by several processes at once: files are
 * written under a temporary name of their own and renamed (a reader never
 * sees half a file; a file is complete or absent), a file that vanished or
 * fails its checks is dropped from the index, and the time of last use is
 * the file's modification time, which the cache itself sets (utimensat with
 * the real-time clock) when it writes, restores or re-stores an entry: the
 * eviction order of every process sharing the directory, independent of the
 * mount's atime policy. Temporary files older than an hour (a writer that
 * died) are removed by the next trim.
 */
#define DSV4_ENABLE_EXPERIMENTAL
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "api/api_int.h"
#include "state/sfile.h"

#define MAX_FILE_TOKENS (1ll << 24)

typedef struct centry {
    dsv4__sfile_meta m;     /* fingerprint, numerics, revision, mtp, vocab */
    int64_t pos;
    int32_t *tokens;
    uint8_t *cuts;          /* NULL when only in the file */
    uint8_t *img;
    int64_t img_bytes;
    float *logits;
    int has_logits;         /* known for memory entries; files: assumed */
    char *path;             /* NULL: memory only */
    int64_t bytes;          /* memory held */
    uint64_t used;
} centry;

struct dsv4_prefix_cache {
    dsv4__ref ref;
    pthread_mutex_t mu;
    int64_t max_bytes, bytes;
    char *dir;
    centry *e;
    int n, cap;
    uint64_t tick;
    int64_t hits, misses, hit_tokens, evictions;
    int64_t disk_max, disk_bytes, disk_evictions;
};

/* temporary names unique within the process (pid, then this count) */
static atomic_uint tmp_seq;

/* record a use of an entry file: its modification time, now, to the ns */
static void touch_file(const char *path)
{
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[1] = t[0];
    utimensat(AT_FDCWD, path, t, 0); /* a file another process removed: nothing to record */
}

static void drop_state(dsv4_prefix_cache *c, centry *x)
{
    c->bytes -= x->bytes;
    dsv4__free(x->img);
    dsv4__free(x->cuts);
    dsv4__free(x->logits);
    x->img = NULL;
    x->cuts = NULL;
    x->logits = NULL;
    x->bytes = 0;
}

static void remove_entry(dsv4_prefix_cache *c, int i)
{
    drop_state(c, &c->e[i]);
    dsv4__free(c->e[i].tokens);
    dsv4__free(c->e[i].path);
    memmove(c->e + i, c->e + i + 1, (size_t)(c->n - i - 1) * sizeof *c->e);
    c->n--;
}

/* evict memory states, least recently used first, until within budget;
 * entries without a file go entirely */
static void evict(dsv4_prefix_cache *c)
{
    while (c->bytes > c->max_bytes) {
        int v = -1;
        for (int i = 0; i < c->n; i++)
            if (c->e[i].img && (v < 0 || c->e[i].used < c->e[v].used)) v = i;
        if (v < 0) break;
        c->evictions++;
        if (c->e[v].path) drop_state(c, &c->e[v]);
        else remove_entry(c, v);
    }
}

static dsv4_status grow(dsv4_prefix_cache *c)
{
    if (c->n < c->cap) return DSV4_OK;
    int cap = c->cap ? 2 * c->cap : 16;
    centry *e = dsv4__realloc(c->e, (size_t)cap * sizeof *e);
    if (!e) return DSV4_ERR_OUT_OF_MEMORY;
    c->e = e;
    c->cap = cap;
    return DSV4_OK;
}

/* index the session files of the directory */
static void scan_dir(dsv4_prefix_cache *c)
{
    DIR *d = opendir(c->dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 7 || strcmp(de->d_name + l - 6, ".dsv4s")) continue;
        size_t pl = strlen(c->dir) + l + 2;
        char *path = dsv4__malloc(pl);
        if (!path) break;
        snprintf(path, pl, "%s/%s", c->dir, de->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        dsv4__sfile_data fdat = { 0 };
        dsv4__err e = { 0, "" };
        if (fd < 0 || dsv4__sfile_peek(dsv4__fd_read, &fd, MAX_FILE_TOKENS, &fdat, &e) || grow(c)) {
            dsv4__free(fdat.tokens);
            if (fd >= 0) close(fd);
            dsv4__free(path);
            continue;
        }
        close(fd);
        centry *x = &c->e[c->n++];
        memset(x, 0, sizeof *x);
        x->m = fdat.file;
        x->pos = fdat.pos;
        x->tokens = fdat.tokens;
        x->has_logits = 1;
        x->path = path;
    }
    closedir(d);
}

typedef struct dfile {
    char *name;
    int64_t size;
    struct timespec used;
} dfile;

static int dfile_older(const void *a, const void *b)
{
    const dfile *x = a, *y = b;
    if (x->used.tv_sec != y->used.tv_sec) return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
    if (x->used.tv_nsec != y->used.tv_nsec) return x->used.tv_nsec < y->used.tv_nsec ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* the index forgets a file removed from the directory: a memory state stays
 * (memory only from now on), an entry without one goes */
static void forget_path(dsv4_prefix_cache *c, const char *path)
{
    for (int i = 0; i < c->n; i++) {
        if (!c->e[i].path || strcmp(c->e[i].path, path)) continue;
        if (c->e[i].img) {
            dsv4__free(c->e[i].path);
            c->e[i].path = NULL;
        } else {
            remove_entry(c, i);
        }
        return;
    }
}

/* keep the directory's entry files within the disk budget: remove the least
 * recently used ones (their recorded times) until the rest fit; `keep` (a
 * file just written, or NULL) goes last. Outside the cache's lock but for
 * the index update; another process removing the same files is fine. */
static void disk_trim(dsv4_prefix_cache *c, const char *keep)
{
    DIR *d = opendir(c->dir);
    if (!d) return;
    pthread_mutex_lock(&c->mu);
    int64_t max = c->disk_max;
    pthread_mutex_unlock(&c->mu);
    dfile *f = NULL;
    int nf = 0, cap = 0;
    int64_t total = 0;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        int entry = l >= 7 && !strcmp(de->d_name + l - 6, ".dsv4s"), tmp = l >= 5 && !strcmp(de->d_name + l - 4, ".tmp");
        if (!entry && !tmp) continue;
        struct stat sb;
        if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) || !S_ISREG(sb.st_mode)) continue;
        if (tmp) {
            /* a writer that died an hour ago or more */
            if (now.tv_sec - sb.st_mtim.tv_sec > 3600) unlinkat(dirfd(d), de->d_name, 0);
            continue;
        }
        total += (int64_t)sb.st_size;
        if (nf == cap) {
            int nc = cap ? 2 * cap : 64;
            dfile *g = dsv4__realloc(f, (size_t)nc * sizeof *g);
            if (!g) break;
            f = g;
            cap = nc;
        }
        char *name = dsv4__strdup(de->d_name);
        if (!name) break;
        f[nf++] = (dfile){ name, (int64_t)sb.st_size, sb.st_mtim };
    }
    const char *keep_name = keep ? strrchr(keep, '/') : NULL;
    keep_name = keep_name ? keep_name + 1 : keep;
    if (max > 0 && total > max && nf > 0) {
        qsort(f, (size_t)nf, sizeof *f, dfile_older);
        for (int pass = 0; pass < 2 && total > max; pass++)
            for (int i = 0; i < nf && total > max; i++) {
                if (!f[i].name[0] || (pass == 0 && keep_name && !strcmp(f[i].name, keep_name))) continue;
                if (unlinkat(dirfd(d), f[i].name, 0) == 0 || errno == ENOENT) {
                    total -= f[i].size;
                    size_t pl = strlen(c->dir) + strlen(f[i].name) + 2;
                    char *path = dsv4__malloc(pl);
                    if (path) {
                        snprintf(path, pl, "%s/%s", c->dir, f[i].name);
                        pthread_mutex_lock(&c->mu);
                        forget_path(c, path);
                        c->disk_evictions++;
                        pthread_mutex_unlock(&c->mu);
                        dsv4__free(path);
                    }
                    f[i].name[0] = 0;
                }
            }
    }
    closedir(d);
    pthread_mutex_lock(&c->mu);
    c->disk_bytes = total;
    pthread_mutex_unlock(&c->mu);
    for (int i = 0; i < nf; i++) dsv4__free(f[i].name);
    dsv4__free(f);
}

dsv4_status dsv4_prefix_cache_set_disk_limit(dsv4_prefix_cache *c, int64_t max_bytes)
{
    if (!c || max_bytes < 0) return DSV4_ERR_INVALID_ARGUMENT;
    pthread_mutex_lock(&c->mu);
    c->disk_max = max_bytes;
    pthread_mutex_unlock(&c->mu);
    if (c->dir) disk_trim(c, NULL);
    return DSV4_OK;
}

dsv4_status dsv4_prefix_cache_create(int64_t max_bytes, const char *dir, dsv4_prefix_cache **out, char **err_msg)
{
    dsv4__err e = { 0, "" };
    if (out) *out = NULL;
    if (err_msg) *err_msg = NULL;
    if (!out || max_bytes < 0) {
        dsv4__fail(&e, DSV4_ERR_INVALID_ARGUMENT, "dsv4_prefix_cache_create: %s", !out ? "out is NULL" : "max_bytes < 0");
        return dsv4__err_out(&e, err_msg);
    }
    dsv4_prefix_cache *c = dsv4__calloc(1, sizeof *c);
    if (!c || (dir && !(c->dir = dsv4__strdup(dir)))) {
        dsv4__free(c);
        dsv4__fail(&e, DSV4_ERR_OUT_OF_MEMORY, "dsv4_prefix_cache_create: out of memory");
        return dsv4__err_out(&e, err_msg);
    }
    if (dir) {
        struct stat sb;
        if (mkdir(dir, 0777) && errno != EEXIST) {
            dsv4__fail(&e, DSV4_ERR_IO, "dsv4_prefix_cache_create: cannot create %s: %s", dir, strerror(errno));
        } else if (stat(dir, &sb) || !S_ISDIR(sb.st_mode) || access(dir, R_OK | W_OK | X_OK)) {
            dsv4__fail(&e, DSV4_ERR_IO, "dsv4_prefix_cache_create: %s is not a writable directory", dir);
        }
        if (e.code) {
            dsv4__free(c->dir);
            dsv4__free(c);
            return dsv4__err_out(&e, err_msg);
        }
    }
    pthread_mutex_init(&c->mu, NULL);
    dsv4__ref_init(&c->ref);
    c->max_bytes = max_bytes;
    c->disk_max = DSV4_PREFIX_CACHE_DISK_DEFAULT;
    if (c->dir) {
        disk_trim(c, NULL);
        scan_dir(c);
    }
    *out = c;
    return DSV4_OK;
}

static void cache_release(dsv4_prefix_cache *c)
{
    if (!c || !dsv4__ref_put(&c->ref)) return;
    while (c->n) remove_entry(c, c->n - 1);
    dsv4__free(c->e);
    dsv4__free(c->dir);
    pthread_mutex_destroy(&c->mu);
    dsv4__free(c);
}

void dsv4_prefix_cache_free(dsv4_prefix_cache *c) { cache_release(c); }

int64_t dsv4_prefix_cache_stat(const dsv4_prefix_cache *cc, dsv4_cache_stat key)
{
    if (!cc) return -1;
    dsv4_prefix_cache *c = (dsv4_prefix_cache *)cc;
    pthread_mutex_lock(&c->mu);
    int64_t v = -1;
    switch (key) {
    case DSV4_CACHE_ENTRIES: v = c->n; break;
    case DSV4_CACHE_BYTES: v = c->bytes; break;
    case DSV4_CACHE_HITS: v = c->hits; break;
    case DSV4_CACHE_MISSES: v = c->misses; break;
    case DSV4_CACHE_HIT_TOKENS: v = c->hit_tokens; break;
    case DSV4_CACHE_EVICTIONS: v = c->evictions; break;
    case DSV4_CACHE_DISK_BYTES: v = c->dir ? c->disk_bytes : 0; break;
    case DSV4_CACHE_DISK_EVICTIONS: v = c->disk_evictions; break;
    default: break;
    }
    pthread_mutex_unlock(&c->mu);
    return v;
}

static int same_kind(const dsv4__sfile_meta *a, const dsv4__sfile_meta *b)
{
    return a->fingerprint == b->fingerprint && a->numerics == b->numerics && a->revision == b->revision &&
           a->mtp == b->mtp && a->vocab == b->vocab;
}

static uint64_t key_hash(const dsv4__sfile_meta *m, const int32_t *tok, int64_t n)
{
    int64_t k[5] = { (int64_t)m->fingerprint, m->numerics, m->revision, m->mtp, m->vocab };
    return dsv4__hash64(tok, (size_t)n * 4, dsv4__hash64(k, sizeof k, 0));
}

dsv4_status dsv4_prefix_cache_store(dsv4_prefix_cache *c, dsv4_session *s)
{
    if (!c || !s) return DSV4_ERR_INVALID_ARGUMENT;
    s->err[0] = 0;
    int64_t pos = dsv4__state_pos(s->st);
    if (pos == 0) return DSV4_OK;
    dsv4__sfile_meta m;
    dsv4__session_meta(s, &m);
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->n; i++)
        if (c->e[i].pos == pos && same_kind(&c->e[i].m, &m) && !memcmp(c->e[i].tokens, s->hist, (size_t)pos * 4)) {
            c->e[i].used = ++c->tick;
            if (c->e[i].path) touch_file(c->e[i].path);
            pthread_mutex_unlock(&c->mu);
            return DSV4_OK;
        }
    pthread_mutex_unlock(&c->mu);
    /* the entry, built outside the lock */
    centry x;
    memset(&x, 0, sizeof x);
    x.m = m;
    x.pos = pos;
    x.tokens = dsv4__malloc((size_t)pos * 4);
    x.cuts = dsv4__malloc((size_t)(pos + 7) / 8);
    dsv4_status st = DSV4_OK;
    if (!x.tokens || !x.cuts || dsv4__session_image(s, &x.img, &x.img_bytes, &x.logits)) {
        st = DSV4_ERR_OUT_OF_MEMORY;
        snprintf(s->err, sizeof s->err, "dsv4_prefix_cache_store: out of memory");
        goto fail;
    }
    memcpy(x.tokens, s->hist, (size_t)pos * 4);
    memcpy(x.cuts, s->cuts, (size_t)(pos + 7) / 8);
    if (pos % 8) x.cuts[pos / 8] &= (uint8_t)((1u << (pos % 8)) - 1);
    x.has_logits = x.logits != NULL;
    x.bytes = x.img_bytes + pos * 4 + (pos + 7) / 8 + (x.logits ? m.vocab * 4 : 0);
    if (!c->dir && x.bytes > c->max_bytes) {
        st = DSV4_ERR_NOT_AVAILABLE;
        snprintf(s->err, sizeof s->err, "dsv4_prefix_cache_store: a state of %lld bytes is above the budget of %lld",
                 (long long)x.bytes, (long long)c->max_bytes);
        goto fail;
    }
    dsv4_status io = DSV4_OK;
    if (c->dir) {
        size_t pl = strlen(c->dir) + 64;
        char *path = dsv4__malloc(pl), *tmp = dsv4__malloc(pl + 32);
        if (!path || !tmp) {
            dsv4__free(path);
            dsv4__free(tmp);
            st = DSV4_ERR_OUT_OF_MEMORY;
            goto fail;
        }
        snprintf(path, pl, "%s/%016llx.dsv4s", c->dir, (unsigned long long)key_hash(&m, x.tokens, pos));
        snprintf(tmp, pl + 32, "%s.%ld.%u.tmp", path, (long)getpid(), atomic_fetch_add(&tmp_seq, 1u));
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        dsv4__sfile_data d = { .pos = pos, .tokens = x.tokens, .cuts = x.cuts, .img = x.img,
                               .img_bytes = x.img_bytes, .logits = x.logits };
        dsv4__err e = { 0, "" };
        if (fd < 0 || dsv4__sfile_write(&m, &d, 1, dsv4__fd_write, &fd, &e) || close(fd) || rename(tmp, path)) {
            io = DSV4_ERR_IO;
            snprintf(s->err, sizeof s->err, "dsv4_prefix_cache_store: writing %s failed", path);
            if (fd >= 0) unlink(tmp);
            dsv4__free(path);
        } else {
            x.path = path;
            touch_file(path);
        }
        dsv4__free(tmp);
    }
    pthread_mutex_lock(&c->mu);
    if (grow(c)) {
        pthread_mutex_unlock(&c->mu);
        dsv4__free(x.path);
        st = DSV4_ERR_OUT_OF_MEMORY;
        goto fail;
    }
    x.used = ++c->tick;
    /* the file replaced one of the same name (same key): one index entry */
    if (x.path) forget_path(c, x.path);
    c->e[c->n++] = x;
    c->bytes += x.bytes;
    evict(c);
    char *written = x.path ? dsv4__strdup(x.path) : NULL;
    pthread_mutex_unlock(&c->mu);
    if (written) {
        disk_trim(c, written);
        dsv4__free(written);
    }
    return io;
fail:
    dsv4__free(x.tokens);
    dsv4__free(x.cuts);
    dsv4__free(x.img);
    dsv4__free(x.logits);
    return st;
}

/* put s at the state of a memory entry (already checked: made here) */
static void apply_entry(dsv4_session *s, const centry *x)
{
    int64_t cur = dsv4__state_pos(s->st), same = 0;
    while (same < cur && same < x->pos && s->hist[same] == x->tokens[same]) same++;
    dsv4__session_drop_checkpoints(s, same);
    memcpy(s->hist, x->tokens, (size_t)x->pos * 4);
    memset(s->cuts, 0, (size_t)s->ctx->n_ctx / 8 + 1);
    memcpy(s->cuts, x->cuts, (size_t)(x->pos + 7) / 8);
    dsv4__session_apply(s, x->pos, x->img, x->logits);
}

dsv4_status dsv4_prefix_cache_restore(dsv4_prefix_cache *c, dsv4_session *s, const int32_t *tokens, size_t n,
                                      size_t at_least, size_t *restored)
{
    if (restored) *restored = 0;
    if (!c || !s || (!tokens && n) || !restored) return DSV4_ERR_INVALID_ARGUMENT;
    s->err[0] = 0;
    dsv4__sfile_meta m;
    dsv4__session_meta(s, &m);
    if (dsv4__session_reserve(&s->logits, &s->lg_cap, 1, m.vocab)) return DSV4_ERR_OUT_OF_MEMORY;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        int best = -1;
        for (int i = 0; i < c->n; i++) {
            centry *x = &c->e[i];
            if (!same_kind(&x->m, &m) || x->pos > (int64_t)n || x->pos > s->ctx->n_ctx || x->pos <= (int64_t)at_least)
                continue;
            if (x->pos == (int64_t)n && !x->has_logits) continue;
            if (best >= 0 && x->pos <= c->e[best].pos) continue;
            if (memcmp(x->tokens, tokens, (size_t)x->pos * 4)) continue;
            best = i;
        }
        if (best < 0) {
            c->misses++;
            pthread_mutex_unlock(&c->mu);
            return DSV4_OK;
        }
        centry *x = &c->e[best];
        if (x->img) {
            apply_entry(s, x);
            x->used = ++c->tick;
            if (x->path) touch_file(x->path);
        } else {
            /* from the file, checked in full; a bad file leaves the index */
            int fd = open(x->path, O_RDONLY | O_CLOEXEC);
            dsv4__sfile_data d;
            dsv4__err e = { 0, "" };
            m.n_ctx = s->ctx->n_ctx;
            if (fd < 0 || dsv4__sfile_read(&m, s->ctx->rt, dsv4__fd_read, &fd, &d, &e)) {
                if (fd >= 0) close(fd);
                if (e.code == DSV4_ERR_OUT_OF_MEMORY) {
                    pthread_mutex_unlock(&c->mu);
                    snprintf(s->err, sizeof s->err, "dsv4_prefix_cache_restore: %s", e.msg);
                    return DSV4_ERR_OUT_OF_MEMORY;
                }
                remove_entry(c, best);
                continue;
            }
            close(fd);
            if (d.pos != x->pos || memcmp(d.tokens, x->tokens, (size_t)d.pos * 4) || (d.pos == (int64_t)n && !d.logits)) {
                dsv4__sfile_data_free(&d);
                remove_entry(c, best);
                continue;
            }
            /* keep it in memory again */
            x->cuts = d.cuts;
            x->img = d.img;
            x->img_bytes = d.img_bytes;
            x->logits = d.logits;
            x->has_logits = d.logits != NULL;
            x->bytes = x->img_bytes + x->pos * 4 + (x->pos + 7) / 8 + (x->logits ? m.vocab * 4 : 0);
            dsv4__free(d.tokens);
            dsv4__free(d.ck); /* an entry's file holds no checkpoints; a session file put there may */
            dsv4__free(d.ck_raw);
            c->bytes += x->bytes;
            x->used = ++c->tick;
            touch_file(x->path);
            apply_entry(s, x);
            int64_t got = x->pos;
            evict(c);
            c->hits++;
            c->hit_tokens += got;
            *restored = (size_t)got;
            pthread_mutex_unlock(&c->mu);
            return DSV4_OK;
        }
        c->hits++;
        c->hit_tokens += x->pos;
        *restored = (size_t)x->pos;
        pthread_mutex_unlock(&c->mu);
        return DSV4_OK;
    }
}

dsv4_status dsv4_session_set_prefix_cache(dsv4_session *s, dsv4_prefix_cache *c)
{
    if (!s) return DSV4_ERR_INVALID_ARGUMENT;
    if (c) dsv4__ref_get(&c->ref);
    cache_release(s->cache);
    s->cache = c;
    return DSV4_OK;
}

dsv4_prefix_cache *dsv4_session_prefix_cache(const dsv4_session *s) { return s ? s->cache : NULL; }

void dsv4__session_cache_release(dsv4_session *s)
{
    cache_release(s->cache);
    s->cache = NULL;
}
