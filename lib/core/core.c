/* lib/core/core.c — errors, allocation (with failure injection), logging,
 * options and CPU feature detection. */
#include "core/core.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

dsv4_status dsv4__fail(dsv4__err *e, dsv4_status code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

void dsv4__err_prefix(dsv4__err *e, const char *fmt, ...)
{
    char pre[512], old[sizeof e->msg];
    va_list ap;
    if (!e) return;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    /* a message longer than the buffer is cut (the start says where) */
    if (snprintf(e->msg, sizeof e->msg, "%s: %s", pre, old) >= (int)sizeof e->msg)
        e->msg[sizeof e->msg - 1] = '\0';
}

dsv4_status dsv4__err_out(const dsv4__err *e, char **err_msg)
{
    if (err_msg) {
        /* plain malloc: freed by dsv4_free(); a failed copy leaves NULL */
        size_t n = strlen(e->msg) + 1;
        *err_msg = malloc(n);
        if (*err_msg) memcpy(*err_msg, e->msg, n);
    }
    return e->code;
}

/* ---- allocation -------------------------------------------------------- */

static _Atomic long alloc_countdown; /* 0 = off */

void dsv4__alloc_fail_after(long n) { atomic_store(&alloc_countdown, n); }
long dsv4__alloc_fail_remaining(void) { return atomic_load(&alloc_countdown); }

static bool alloc_should_fail(void)
{
    long c = atomic_load(&alloc_countdown);
    while (c > 0) {
        if (atomic_compare_exchange_weak(&alloc_countdown, &c, c - 1))
            return c == 1;
    }
    return false;
}

void *dsv4__malloc(size_t n) { return alloc_should_fail() ? NULL : malloc(n ? n : 1); }
void *dsv4__calloc(size_t count, size_t size)
{
    return alloc_should_fail() ? NULL : calloc(count ? count : 1, size ? size : 1);
}
void *dsv4__realloc(void *p, size_t n) { return alloc_should_fail() ? NULL : realloc(p, n ? n : 1); }
void dsv4__free(void *p) { free(p); }
char *dsv4__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = dsv4__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
void *dsv4__malloc_aligned(size_t n)
{
    void *p = NULL;
    if (alloc_should_fail()) return NULL;
    n = (n + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, n ? n : 64) != 0) return NULL;
    return p;
}
void dsv4__free_aligned(void *p) { free(p); }

void dsv4_free(void *ptr) { free(ptr); }

/* ---- logging ----------------------------------------------------------- */

void dsv4__logf(const dsv4__log *log, int32_t level, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    int n;
    if (!log || !log->fn || level > log->min_level) return;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
    while (n > 0 && buf[n - 1] == '\n') buf[--n] = 0;
    log->fn(log->user, level, buf, (size_t)n);
}

/* ---- physical memory --------------------------------------------------- */

int64_t dsv4__phys_mem_bytes(void)
{
    const char *env = getenv("DSV4_PHYS_MEM_LIMIT");
    if (env && *env) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(env, &end, 10);
        int shift = 0;
        if (*end == 'K' || *end == 'k') shift = 10;
        else if (*end == 'M' || *end == 'm') shift = 20;
        else if (*end == 'G' || *end == 'g') shift = 30;
        else if (*end == 'T' || *end == 't') shift = 40;
        if (shift) end++;
        if (*end == 'i' && shift) end++; /* "GiB"-style suffixes too */
        if ((*end == 'B' || *end == 'b') && shift) end++;
        if (!errno && end != env && *end == 0 && env[0] != '-' && v > 0 && v <= (unsigned long long)INT64_MAX >> shift)
            return (int64_t)(v << shift);
    }
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return 0;
    return (int64_t)pages * page;
}

const char *dsv4__fmt_bytes(char *buf, size_t cap, int64_t bytes)
{
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 4) { v /= 1024; u++; }
    if (u == 0) snprintf(buf, cap, "%lld B", (long long)bytes);
    else snprintf(buf, cap, "%.2f %s", v, unit[u]);
    return buf;
}

/* ---- status strings ---------------------------------------------------- */

const char *dsv4_status_string(dsv4_status s)
{
    switch (s) {
    case DSV4_OK: return "ok";
    case DSV4_ERR_INVALID_ARGUMENT: return "invalid argument";
    case DSV4_ERR_OUT_OF_MEMORY: return "out of memory";
    case DSV4_ERR_IO: return "input/output error";
    case DSV4_ERR_BAD_FORMAT: return "bad file format";
    case DSV4_ERR_BAD_CONFIG: return "bad model configuration";
    case DSV4_ERR_UNSUPPORTED: return "unsupported";
    case DSV4_ERR_MISSING_TENSOR: return "missing tensor";
    case DSV4_ERR_TENSOR_MISMATCH: return "tensor dtype or shape mismatch";
    case DSV4_ERR_CONTEXT_FULL: return "context full";
    case DSV4_ERR_ABORTED: return "aborted";
    case DSV4_ERR_BUFFER_TOO_SMALL: return "buffer too small";
    case DSV4_ERR_UNKNOWN_OPTION: return "unknown option";
    case DSV4_ERR_NOT_AVAILABLE: return "not available";
    case DSV4_ERR_INTERNAL: return "internal error";
    case DSV4_ERR_INCOMPATIBLE: return "saved state of another model, numerics, revision or session kind";
    }
    return "unknown status";
}

/* ---- versions ---------------------------------------------------------- */

uint32_t dsv4_version_number(void) { return DSV4_VERSION_NUMBER; }
const char *dsv4_version_string(void) { return DSV4_VERSION_STRING; }
uint32_t dsv4_abi_version(void) { return DSV4_ABI_VERSION; }

/* ---- options ----------------------------------------------------------- */

/* One row per key: slot in the bag, default, range. Append-only. */
static const struct opt_desc {
    dsv4_option key;
    int slot;
    int64_t def, lo, hi;
} opt_table[] = {
    {DSV4_OPT_LOAD_MTP, 0, 1, 0, 1},
    {DSV4_OPT_PREFETCH, 1, 0, 0, 1},
    {DSV4_OPT_THREADS, 2, 0, 0, 1024},
    {DSV4_OPT_CONTEXT_LENGTH, 3, 4096, 1, (int64_t)1 << 40},
    {DSV4_OPT_NUMERICS, 4, DSV4_NUMERICS_REFERENCE, 0, 2},
    {DSV4_OPT_REVISION, 5, DSV4_REVISION_CURRENT, 0, 2},
    {DSV4_OPT_MAX_BATCH, 6, DSV4__MAX_BATCH_DEFAULT, 1, 1 << 20},
    {DSV4_OPT_MTP, 7, 0, 0, 1},
    {DSV4_OPT_WORKER_SPIN, 8, -1, -1, 1 << 20},
    {DSV4_OPT_RESIDENT, 9, 1, 0, 1},
    {DSV4__OPT_MEM_BUDGET, 10, 0, 0, INT64_MAX},
    {DSV4__OPT_MEM_BUDGET_PERCENT, 11, 0, 0, 100},
    {DSV4__OPT_MEM_LOCK, 12, 0, 0, 1},
};

static const struct opt_desc *opt_find(dsv4_option key)
{
    for (size_t i = 0; i < DSV4__ARRAY_LEN(opt_table); i++)
        if (opt_table[i].key == key) return &opt_table[i];
    return NULL;
}

dsv4_status dsv4_options_create(dsv4_options **out)
{
    if (!out) return DSV4_ERR_INVALID_ARGUMENT;
    *out = dsv4__calloc(1, sizeof **out);
    if (!*out) return DSV4_ERR_OUT_OF_MEMORY;
    (*out)->log.min_level = DSV4_LOG_WARN;
    return DSV4_OK;
}

void dsv4_options_free(dsv4_options *opts) { dsv4__free(opts); }

dsv4_status dsv4_options_set_i64(dsv4_options *opts, dsv4_option key, int64_t value)
{
    const struct opt_desc *d = opt_find(key);
    if (!opts) return DSV4_ERR_INVALID_ARGUMENT;
    if (!d) return DSV4_ERR_UNKNOWN_OPTION;
    if (value < d->lo || value > d->hi) return DSV4_ERR_INVALID_ARGUMENT;
    opts->val[d->slot] = value;
    opts->set |= 1u << d->slot;
    return DSV4_OK;
}

dsv4_status dsv4_options_get_i64(const dsv4_options *opts, dsv4_option key, int64_t *value)
{
    if (value) *value = 0;
    if (!opts || !value) return DSV4_ERR_INVALID_ARGUMENT;
    if (!opt_find(key)) return DSV4_ERR_UNKNOWN_OPTION;
    *value = dsv4__opt_i64(opts, key);
    return DSV4_OK;
}

int64_t dsv4__opt_i64(const dsv4_options *opts, dsv4_option key)
{
    const struct opt_desc *d = opt_find(key);
    int64_t v;
    if (!d) return 0;
    v = (opts && (opts->set & (1u << d->slot))) ? opts->val[d->slot] : d->def;
    /* 0 means "default" for the enum-valued options */
    if (v == 0 && (key == DSV4_OPT_NUMERICS || key == DSV4_OPT_REVISION)) v = d->def;
    return v;
}

int dsv4__opt_is_set(const dsv4_options *opts, dsv4_option key)
{
    const struct opt_desc *d = opt_find(key);
    return d && opts && (opts->set & (1u << d->slot)) != 0;
}

dsv4_status dsv4_options_set_log(dsv4_options *opts, dsv4_log_fn fn, void *user, int32_t min_level)
{
    if (!opts || min_level < DSV4_LOG_ERROR || min_level > DSV4_LOG_DEBUG)
        return DSV4_ERR_INVALID_ARGUMENT;
    opts->log.fn = fn;
    opts->log.user = user;
    opts->log.min_level = min_level;
    return DSV4_OK;
}

dsv4_status dsv4_options_set_progress(dsv4_options *opts, dsv4_progress_fn fn, void *user)
{
    if (!opts) return DSV4_ERR_INVALID_ARGUMENT;
    opts->progress = fn;
    opts->progress_user = user;
    return DSV4_OK;
}

dsv4__log dsv4__opt_log(const dsv4_options *opts)
{
    dsv4__log l = {0};
    if (opts) l = opts->log;
    return l;
}


