/*
 * lib/core/core.h — status, messages, allocation, logging and options
 * shared by every layer of libdsv4 (internal; names dsv4__*).
 */
#ifndef DSV4_CORE_H
#define DSV4_CORE_H

#include "dsv4/dsv4.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An error being built up: code + message. Used by every internal layer. */
typedef struct dsv4__err {
    dsv4_status code;
    char msg[1024];
} dsv4__err;

/* Record code + printf-style message in *e (e may be NULL) and return code. */
dsv4_status dsv4__fail(dsv4__err *e, dsv4_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix the existing message of *e with "prefix: " */
void dsv4__err_prefix(dsv4__err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hand an error to a public `char **err_msg` (NULL-safe); returns e->code. */
dsv4_status dsv4__err_out(const dsv4__err *e, char **err_msg);

/* Allocation. Every allocation in the library goes through these so tests
 * can fail the N-th allocation (dsv4__alloc_fail_after). */
void *dsv4__malloc(size_t n);
void *dsv4__calloc(size_t count, size_t size);
void *dsv4__realloc(void *p, size_t n);
void dsv4__free(void *p);
char *dsv4__strdup(const char *s);
/* Aligned (64 B) allocation, freed with dsv4__free_aligned. */
void *dsv4__malloc_aligned(size_t n);
void dsv4__free_aligned(void *p);
/* Test hook: the n-th allocation from now fails (n >= 1); 0 disables. */
void dsv4__alloc_fail_after(long n);
/* Test hook: allocations still to go before the failure (0: it happened,
 * or none is armed); a sweep over n stops when a call left it above 0. */
long dsv4__alloc_fail_remaining(void);

/* Logging sink carried by each object (copied from its options). */
typedef struct dsv4__log {
    dsv4_log_fn fn;
    void *user;
    int32_t min_level;
} dsv4__log;
void dsv4__logf(const dsv4__log *log, int32_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Options bag (public type dsv4_options). */
#define DSV4__OPT_SLOTS 13
/* DSV4_OPT_MAX_BATCH's default: a prompt's chunk. A chunk decodes every
 * weight it uses once, and a model of many experts gives each expert about
 * chunk · active / experts rows (docs/bench.md) */
#define DSV4__MAX_BATCH_DEFAULT 1024
/* ...but never above a context's length (a session feeds at most that much
 * at once) unless set, nor below this (batches of several sessions) */
#define DSV4__MAX_BATCH_FLOOR 256
/* the chunk of a context of n_ctx positions when DSV4_OPT_MAX_BATCH is unset */
static inline int64_t dsv4__default_chunk(int64_t n_ctx)
{
    if (n_ctx >= DSV4__MAX_BATCH_DEFAULT) return DSV4__MAX_BATCH_DEFAULT;
    return n_ctx > DSV4__MAX_BATCH_FLOOR ? n_ctx : DSV4__MAX_BATCH_FLOOR;
}
/* experimental option keys (DSV4_OPT_MEM_BUDGET, _PERCENT in the header) */
#define DSV4__OPT_MEM_BUDGET 4
#define DSV4__OPT_MEM_BUDGET_PERCENT 5
#define DSV4__OPT_MEM_LOCK 6
struct dsv4_options {
    int64_t val[DSV4__OPT_SLOTS];
    uint32_t set; /* bit i: slot i set */
    dsv4__log log;
    dsv4_progress_fn progress;
    void *progress_user;
};
/* Value of an integer option: the bag's if set, else the default. opts may be NULL. */
int64_t dsv4__opt_i64(const dsv4_options *opts, dsv4_option key);
/* 1 when the bag sets key (opts may be NULL) */
int dsv4__opt_is_set(const dsv4_options *opts, dsv4_option key);

/* Bytes of physical memory (0 when unknown); the environment variable
 * DSV4_PHYS_MEM_LIMIT (bytes, optional K/M/G/T suffix, powers of 1024)
 * replaces it when set to a valid size (DSV4_INFO_PHYSICAL_MEMORY). */
int64_t dsv4__phys_mem_bytes(void);
/* "12.3 GiB", "512 MiB", ... into buf (for messages); returns buf */
const char *dsv4__fmt_bytes(char *buf, size_t cap, int64_t bytes);
/* Log sink of a bag (silent when opts is NULL). */
dsv4__log dsv4__opt_log(const dsv4_options *opts);

/* Reference counting for the public objects. */
typedef struct dsv4__ref {
    atomic_int count;
} dsv4__ref;
static inline void dsv4__ref_init(dsv4__ref *r) { atomic_init(&r->count, 1); }
static inline void dsv4__ref_get(dsv4__ref *r) { atomic_fetch_add(&r->count, 1); }
/* true when the last reference was dropped */
static inline bool dsv4__ref_put(dsv4__ref *r) { return atomic_fetch_sub(&r->count, 1) == 1; }


/* Sessions, for the generator (lib/api/context.c). */
void dsv4__session_retain(dsv4_session *s);
int64_t dsv4__session_vocab(const dsv4_session *s);
int64_t dsv4__session_capacity(const dsv4_session *s);
/* one forward pass over several sessions of one context: count[i] tokens
 * for sess[i] (distinct sessions, n in [1, 256]); the last position's
 * logits kept for each (dsv4_session_logits). Statuses as
 * dsv4_session_eval; a refusal (checked first) changes no session. */
dsv4_status dsv4__session_eval_batch(dsv4_session *const *sess, const int32_t *const *tokens, const size_t *count,
                                     int n);
/* changes of the session's tokens so far (evaluations and resets, by anyone) */
uint64_t dsv4__session_edits(const dsv4_session *s);
/* speculative decoding (lib/api/session.c): mark the session at position p
 * (p >= 1, with MTP) so that, once tokens p and p+1 are fed, undo takes
 * token p+1 back exactly (dsv4__state_undo_mark); statuses as those */
dsv4_status dsv4__session_undo_mark(dsv4_session *s);
dsv4_status dsv4__session_undo(dsv4_session *s);
/* largest batch whose rows compute what one-row steps compute, bit for bit
 * (dsv4__rt_rows_identical) */
int dsv4__session_rows_identical(const dsv4_session *s);
/* 1 when the session keeps the MTP block's state (DSV4_OPT_MTP) */
int dsv4__session_has_mtp(const dsv4_session *s);
/* on (default): evaluations write the MTP logits rows (dsv4_session_mtp_logits);
 * off: the MTP block still runs (its state), its logits head does not */
void dsv4__session_mtp_rows(dsv4_session *s, int on);
/* the largest chunk one evaluation runs at once: its context's
 * DSV4_OPT_MAX_BATCH */
int64_t dsv4__session_max_batch(const dsv4_session *s);

#define DSV4__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
