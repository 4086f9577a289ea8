/*
 * tests/graph/test_experts.c — the memory budget and its expert cache
 * (lib/graph/experts.c, docs/memory.md).
 *
 *  - logits bit-identical to the model loaded without a budget, for budgets
 *    from "everything" down to the minimum, on the golden tiny models (both
 *    numerics, prefill and decode, MTP rows too) and on a synthetic
 *    many-expert model (dsv4-synth, path in argv[1]);
 *  - a budget one byte below the minimum is refused with
 *    DSV4_ERR_INVALID_ARGUMENT and a message naming the minimum;
 *  - the look-ahead predictor (off, scored only, prefetching its top-k or
 *    top-2k guess) and the per-layer quota policy: logits bit-identical to
 *    no budget at small budgets; the predictor's guesses were scored, its
 *    prefetches made and counted;
 *  - two threads, each with its own context and session on one model at the
 *    minimum budget (and at a few slots more with quotas and the predictor
 *    on), evicting each other's experts: both bit-identical;
 *  - the model info's memory keys;
 *  - a shard truncated after the load: DSV4_ERR_IO from eval, the session
 *    reset, no crash; a later eval fails the same way.
 * With --threads-only: the last two only. DSV4_TEST_LIGHT: tiny-a without
 * tiny-b (the same checks at larger widths).
 */
#define DSV4_ENABLE_EXPERIMENTAL
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dsv4/dsv4.h>
#include "testutil.h"
#include "api/api_int.h"
#include "graph/experts.h"

#define N_TOK 24
#define N_PRE 13

static dsv4_model *load(const char *dir, int64_t budget, dsv4_status *st, char **err)
{
    dsv4_options *o = NULL;
    dsv4_model *m = NULL;
    dsv4_options_create(&o);
    if (budget) dsv4_options_set_i64(o, DSV4_OPT_MEM_BUDGET, budget);
    dsv4_status s = dsv4_model_load(dir, o, &m, err);
    if (st) *st = s;
    dsv4_options_free(o);
    return m;
}

typedef struct out {
    float *lg;    /* [N_TOK][V]: prefill rows, then decode rows */
    float *mtp;   /* [N_TOK][V] MTP rows (when the model has MTP) */
    int64_t n_mtp;
} out;

/* prefill N_PRE tokens (all logits), decode the rest one by one */
static int run(dsv4_model *m, int numerics, const int32_t *tok, int64_t V, out *r)
{
    dsv4_options *o = NULL;
    dsv4_context *ctx = NULL;
    dsv4_session *s = NULL;
    dsv4_model_info *info = NULL;
    int64_t has_mtp = 0;
    dsv4_model_get_info(m, &info);
    dsv4_model_info_get_i64(info, DSV4_INFO_HAS_MTP, &has_mtp);
    dsv4_model_info_free(info);
    dsv4_options_create(&o);
    dsv4_options_set_i64(o, DSV4_OPT_NUMERICS, numerics);
    dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, 64);
    dsv4_options_set_i64(o, DSV4_OPT_THREADS, 2);
    int ok = dsv4_context_create(m, o, &ctx, NULL) == DSV4_OK;
    dsv4_options_set_i64(o, DSV4_OPT_MTP, has_mtp ? 1 : 0);
    ok = ok && dsv4_session_create(ctx, o, &s, NULL) == DSV4_OK;
    r->lg = calloc((size_t)(N_TOK * V), 4);
    r->mtp = calloc((size_t)(N_TOK * V), 4);
    r->n_mtp = 0;
    ok = ok && dsv4_session_eval(s, tok, N_PRE, DSV4_EVAL_ALL_LOGITS) == DSV4_OK;
    for (int64_t q = 0; ok && q < N_PRE; q++) ok = dsv4_session_logits(s, q, r->lg + q * V, (size_t)V) == DSV4_OK;
    for (int64_t q = 0; ok && has_mtp && q + 1 < N_PRE; q++, r->n_mtp++)
        ok = dsv4_session_mtp_logits(s, q, r->mtp + q * V, (size_t)V) == DSV4_OK;
    for (int64_t p = N_PRE; ok && p < N_TOK; p++) {
        ok = dsv4_session_eval(s, tok + p, 1, 0) == DSV4_OK;
        ok = ok && dsv4_session_logits(s, p, r->lg + p * V, (size_t)V) == DSV4_OK;
        if (ok && has_mtp) ok = dsv4_session_mtp_logits(s, p - 1, r->mtp + (p - 1) * V, (size_t)V) == DSV4_OK;
        r->n_mtp += ok && has_mtp;
    }
    if (!ok) printf("  run failed: %s\n", s ? dsv4_session_last_error(s) : "no session");
    dsv4_session_free(s);
    dsv4_context_free(ctx);
    dsv4_options_free(o);
    return ok;
}

static void out_free(out *r)
{
    free(r->lg);
    free(r->mtp);
}

static int same(const out *a, const out *b, int64_t V)
{
    return a->n_mtp == b->n_mtp && !memcmp(a->lg, b->lg, (size_t)(N_TOK * V) * 4) &&
           !memcmp(a->mtp, b->mtp, (size_t)(N_TOK * V) * 4);
}

static void tokens(int32_t *t, int n, int64_t V, uint32_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        t[i] = (int32_t)((seed >> 8) % (uint32_t)V);
    }
}

/* the minimum budget of a model directory (from a model loaded without one) */
static int64_t min_budget(const char *dir)
{
    dsv4_model *m = load(dir, 0, NULL, NULL);
    if (!m) return -1;
    int64_t b = dsv4__xcache_min_budget(m->ck, m->weights);
    dsv4_model_free(m);
    return b;
}

/* budgets from everything down to the minimum: bit-identical to no budget */
static void check_budgets(const char *name, const char *dir)
{
    int64_t mb = min_budget(dir);
    CHECK(mb > 0, "%s: minimum budget", name);
    if (mb <= 0) return;
    dsv4_model *m0 = load(dir, 0, NULL, NULL);
    const dsv4__config *c = dsv4__model_config(m0);
    int64_t V = c->vocab_size, E = c->n_routed_experts, K = c->n_active_experts;
    int32_t tok[N_TOK];
    tokens(tok, N_TOK, V, 7);
    /* below the minimum: refused, the message names it */
    dsv4_status st;
    char *err = NULL;
    dsv4_model *bad = load(dir, mb - 1, &st, &err);
    CHECK(!bad && st == DSV4_ERR_INVALID_ARGUMENT, "%s: budget below the minimum refused (status %d)", name, st);
    CHECK(err && strstr(err, "minimum"), "%s: message names the minimum: %s", name, err ? err : "(none)");
    dsv4_free(err);
    dsv4_model_free(bad);
    for (int numerics = 1; numerics <= 2; numerics++) {
        out ref;
        int ok0 = run(m0, numerics, tok, V, &ref);
        CHECK(ok0, "%s: run without a budget", name);
        /* everything, half the experts, 2K slots, the minimum (K slots) */
        int64_t slot = 0;
        {
            dsv4_model *mm = load(dir, mb, NULL, NULL);
            dsv4__xstats xs;
            if (mm) dsv4__xcache_stats(mm->weights->xc, &xs);
            slot = mm ? xs.slot_bytes : 0;
            dsv4_model_free(mm);
        }
        int64_t n_exp = E * (c->n_layers + 1);
        int64_t budgets[4] = { mb + n_exp * slot + (1 << 20), mb + (n_exp / 2 - K) * slot, mb + K * slot, mb };
        for (int b = 0; b < 4; b++) {
            dsv4_model *m = load(dir, budgets[b], &st, NULL);
            CHECK(m != NULL, "%s: load with budget %lld (status %d)", name, (long long)budgets[b], st);
            if (!m) continue;
            out r;
            int ok = run(m, numerics, tok, V, &r);
            dsv4_model_info *info = NULL;
            int64_t slots = 0, hits = 0, misses = 0, rd = 0, cb = 0, bud = 0, res = 0, dpt = -1;
            dsv4_model_get_info(m, &info);
            dsv4_model_info_get_i64(info, DSV4_INFO_EXPERT_CACHE_SLOTS, &slots);
            dsv4_model_info_get_i64(info, DSV4_INFO_EXPERT_HITS, &hits);
            dsv4_model_info_get_i64(info, DSV4_INFO_EXPERT_MISSES, &misses);
            dsv4_model_info_get_i64(info, DSV4_INFO_DISK_BYTES_READ, &rd);
            dsv4_model_info_get_i64(info, DSV4_INFO_EXPERT_CACHE_BYTES, &cb);
            dsv4_model_info_get_i64(info, DSV4_INFO_MEM_BUDGET, &bud);
            dsv4_model_info_get_i64(info, DSV4_INFO_RESIDENT_BYTES, &res);
            dsv4_model_info_get_i64(info, DSV4_INFO_DISK_BYTES_PER_TOKEN, &dpt);
            dsv4_model_info_free(info);
            CHECK(ok && ok0 && same(&r, &ref, V), "%s numerics %d budget %lld (%lld slots): logits bit-identical",
                  name, numerics, (long long)budgets[b], (long long)slots);
            CHECK(bud == budgets[b] && res > 0 && cb == slots * slot && res + cb <= bud,
                  "%s: info budget %lld, resident %lld, cache %lld", name, (long long)bud, (long long)res,
                  (long long)cb);
            CHECK(misses > 0 && rd > 0 && (b > 0 || dpt == 0) && (b == 0 || dpt > 0),
                  "%s: info misses %lld, bytes read %lld, expected disk bytes per token %lld", name,
                  (long long)misses, (long long)rd, (long long)dpt);
            if (b == 3) CHECK_EQ_INT(slots, K, "minimum budget: n_active slots");
            printf("  %s numerics %d: %4lld slots: hits %lld, misses %lld, %lld bytes read\n", name, numerics,
                   (long long)slots, (long long)hits, (long long)misses, (long long)rd);
            out_free(&r);
            dsv4_model_free(m);
        }
        out_free(&ref);
    }
    dsv4_model_free(m0);
}

/* ---- the look-ahead predictor and the per-layer quotas -------------------- */

static void check_variants(const char *name, const char *dir)
{
    int64_t mb = min_budget(dir);
    dsv4_model *m0 = load(dir, 0, NULL, NULL), *m = load(dir, mb, NULL, NULL);
    CHECK(m0 && m, "%s variants: models loaded", name);
    if (!m0 || !m) {
        dsv4_model_free(m0);
        dsv4_model_free(m);
        return;
    }
    const dsv4__config *c = dsv4__model_config(m0);
    int64_t V = c->vocab_size, K = c->n_active_experts;
    int learned_next = 0; /* a layer whose next one routes by learned scores */
    for (int l = 0; l + 1 < c->n_layers; l++) learned_next |= !m0->weights->layers[l + 1].hash;
    dsv4__xstats xs;
    dsv4__xcache_stats(m->weights->xc, &xs);
    int64_t slot = xs.slot_bytes;
    dsv4_model_free(m);
    int32_t tok[N_TOK];
    tokens(tok, N_TOK, V, 11);
    out ref;
    int ok0 = run(m0, DSV4_NUMERICS_REFERENCE, tok, V, &ref);
    CHECK(ok0, "%s variants: run without a budget", name);
    /* the minimum, and room for 3 layers' selections (the predictor's reads fit) */
    int64_t budgets[2] = { mb, mb + 3 * K * slot };
    for (int b = 0; b < 2; b++) {
        for (int v = 0; v < 6; v++) {
            int policy = v == 5 ? 2 : v == 4 ? 1 : 0, la = v < 4 ? v : 2;
            m = load(dir, budgets[b], NULL, NULL);
            if (!m) { CHECK(0, "%s: load with budget %lld", name, (long long)budgets[b]); continue; }
            dsv4__xcache *xc = m->weights->xc;
            dsv4__xcache_set_policy(xc, policy);
            dsv4__xcache_set_lookahead(xc, la);
            CHECK_EQ_INT(dsv4__xcache_lookahead(xc), la, "lookahead mode set");
            out r;
            int ok = run(m, DSV4_NUMERICS_REFERENCE, tok, V, &r);
            dsv4__xcache_stats(xc, &xs);
            CHECK(ok && ok0 && same(&r, &ref, V),
                  "%s: budget %lld slots, policy %d, look-ahead %d: logits bit-identical", name, (long long)xs.slots,
                  policy, la);
            if (la && learned_next) {
                CHECK(xs.pred_layers > 0 && xs.pred_actual > 0 && xs.pred_tp_k <= xs.pred_tp_2k &&
                          xs.pred_tp_2k <= xs.pred_actual && xs.pred_k <= xs.pred_2k,
                      "%s look-ahead %d: %lld guesses scored (top-k %lld/%lld, top-2k %lld/%lld)", name, la,
                      (long long)xs.pred_layers, (long long)xs.pred_tp_k, (long long)xs.pred_actual,
                      (long long)xs.pred_tp_2k, (long long)xs.pred_actual);
                if (la >= 2 && b == 1)
                    CHECK(xs.prefetches > 0 && xs.pf_used <= xs.prefetches,
                          "%s look-ahead %d: %lld reads ahead, %lld used", name, la, (long long)xs.prefetches,
                          (long long)xs.pf_used);
            }
            if (!la) CHECK(xs.pred_layers == 0, "%s: look-ahead off, nothing scored", name);
            printf("  %s variants: %lld slots, policy %d, look-ahead %d: hits %lld, misses %lld, read ahead %lld "
                   "(%lld used), guesses %lld: top-k %lld of %lld selected, top-2k %lld\n", name, (long long)xs.slots,
                   policy, la, (long long)xs.hits, (long long)xs.misses, (long long)xs.prefetches,
                   (long long)xs.pf_used, (long long)xs.pred_layers, (long long)xs.pred_tp_k,
                   (long long)xs.pred_actual, (long long)xs.pred_tp_2k);
            out_free(&r);
            dsv4_model_free(m);
        }
    }
    out_free(&ref);
    dsv4_model_free(m0);
}

/* ---- two sessions on two threads sharing the cache at the minimum -------- */

typedef struct job {
    dsv4_model *m;
    const int32_t *tok;
    int64_t V;
    const out *ref;
    int ok, rounds;
} job;

static void *job_main(void *arg)
{
    job *j = arg;
    j->ok = 1;
    for (int i = 0; i < j->rounds; i++) {
        out r;
        int ok = run(j->m, DSV4_NUMERICS_REFERENCE, j->tok, j->V, &r);
        j->ok &= ok && same(&r, j->ref, j->V);
        out_free(&r);
    }
    return NULL;
}

/* variant 0: the minimum, LRU, no look-ahead; 1: a few slots more, quotas,
 * the look-ahead prefetching its top-2k guess */
static void check_threads(const char *dir, int variant)
{
    int64_t mb = min_budget(dir);
    if (variant) {
        dsv4_model *mm = load(dir, mb, NULL, NULL);
        dsv4__xstats xs;
        if (mm) {
            dsv4__xcache_stats(mm->weights->xc, &xs);
            mb += 3 * xs.slot_bytes;
        }
        dsv4_model_free(mm);
    }
    dsv4_model *m0 = load(dir, 0, NULL, NULL), *m = load(dir, mb, NULL, NULL);
    if (m && variant) {
        dsv4__xcache_set_policy(m->weights->xc, 2);
        dsv4__xcache_set_lookahead(m->weights->xc, 3);
    }
    CHECK(m0 && m, "threads: models loaded");
    if (!m0 || !m) {
        dsv4_model_free(m0);
        dsv4_model_free(m);
        return;
    }
    int64_t V = dsv4__model_config(m0)->vocab_size;
    int32_t tok[2][N_TOK];
    out ref[2];
    job jb[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        tokens(tok[i], N_TOK, V, 100 + (uint32_t)i);
        run(m0, DSV4_NUMERICS_REFERENCE, tok[i], V, &ref[i]);
        jb[i] = (job){ m, tok[i], V, &ref[i], 0, 3 };
    }
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, job_main, &jb[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++)
        CHECK(jb[i].ok, "threads: session %d bit-identical while sharing %lld bytes (%s)", i, (long long)mb,
              variant ? "quotas, look-ahead top-2k" : "LRU");
    for (int i = 0; i < 2; i++) out_free(&ref[i]);
    dsv4_model_free(m);
    dsv4_model_free(m0);
}

/* ---- a shard truncated after the load ------------------------------------- */

/* every shard read of a run failing in turn (the n-th read from the start,
 * n = 1, 2, ..., 32, then ~12 % apart, until a run needs fewer): the eval that meets it returns
 * DSV4_ERR_IO naming the failure, the session is reset, nothing crashes or
 * leaks; then, reads working again, a fresh run on the same model (same
 * cache) is bit-identical to the model without a budget */
static void check_read_failures(const char *name, const char *dir)
{
    int64_t mb = min_budget(dir);
    dsv4_model *m0 = load(dir, 0, NULL, NULL), *m1 = mb > 0 ? load(dir, mb, NULL, NULL) : NULL;
    CHECK(m0 && m1, "%s: read failures: models loaded", name);
    if (!m0 || !m1) {
        dsv4_model_free(m0);
        dsv4_model_free(m1);
        return;
    }
    int64_t V = dsv4__model_config(m0)->vocab_size;
    int32_t tok[N_TOK];
    tokens(tok, N_TOK, V, 11);
    out ref = { 0 }, got = { 0 };
    int ok0 = run(m0, DSV4_NUMERICS_REFERENCE, tok, V, &ref);
    CHECK(ok0, "%s: read failures: reference run", name);
    int failed_runs = 0, bad_status = 0, not_reset = 0, not_named = 0, differ = 0;
    long n = 1, tried = 0;
    for (; ok0 && n <= 4000; n += test_light() ? n : n < 32 ? 1 : n / 8, tried++) {
        dsv4_context *ctx = NULL;
        dsv4_session *s = NULL;
        dsv4__xcache_drop(m1->weights->xc); /* every expert a miss again */
        if (dsv4_context_create(m1, NULL, &ctx, NULL) != DSV4_OK || dsv4_session_create(ctx, NULL, &s, NULL) != DSV4_OK) {
            dsv4_session_free(s);
            dsv4_context_free(ctx);
            CHECK(0, "%s: read failures: context and session", name);
            break;
        }
        dsv4__xcache_read_fail_after(n);
        dsv4_status st = dsv4_session_eval(s, tok, N_PRE, 0);
        for (int64_t p = N_PRE; st == DSV4_OK && p < N_TOK; p++) st = dsv4_session_eval(s, tok + p, 1, 0);
        int hit = dsv4__xcache_read_fail_pending() == 0;
        dsv4__xcache_read_fail_after(0);
        if (st != DSV4_OK) {
            failed_runs++;
            bad_status += st != DSV4_ERR_IO;
            not_named += strstr(dsv4_session_last_error(s), "injected") == NULL;
            not_reset += dsv4_session_position(s) != 0;
        }
        dsv4_session_free(s);
        dsv4_context_free(ctx);
        if (st == DSV4_OK && !hit) break; /* the run made fewer than n reads */
        if (n % 4 == 1 || st == DSV4_OK) {
            differ += !run(m1, DSV4_NUMERICS_REFERENCE, tok, V, &got) || !same(&ref, &got, V);
            out_free(&got);
        }
    }
    printf("  %s: %ld read positions tried (up to the %ld-th read), %d evals failed\n", name, tried, n, failed_runs);
    CHECK(failed_runs > 0, "%s: read failures: some eval met an injected failure", name);
    CHECK(bad_status == 0, "%s: read failures: every failed eval gave DSV4_ERR_IO (%d did not)", name, bad_status);
    CHECK(not_named == 0, "%s: read failures: every message names the failure (%d did not)", name, not_named);
    CHECK(not_reset == 0, "%s: read failures: every failed session was reset (%d were not)", name, not_reset);
    CHECK(differ == 0, "%s: read failures: later runs bit-identical to no budget (%d differ)", name, differ);
    CHECK(n <= 4000, "%s: read failures: the runs end (fewer than 4000 reads)", name);
    out_free(&ref);
    dsv4_model_free(m0);
    dsv4_model_free(m1);
}

/* the sanitizers' runtimes take mlock(2) over and do nothing (a lock
 * "succeeds", VmLck stays 0, RLIMIT_MEMLOCK never refuses): there only
 * the library's side is checked */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MLOCK_REAL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define MLOCK_REAL 0
#endif
#endif
#ifndef MLOCK_REAL
#define MLOCK_REAL 1
#endif

/* kB of memory locked by this process (VmLck), -1 when unknown */
static long vm_locked_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmLck:", 6)) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

static int lock_warned;
static void lock_log(void *user, int32_t level, const char *msg, size_t len)
{
    (void)user;
    (void)len;
    if (level == DSV4_LOG_WARN && strstr(msg, "mlock")) lock_warned = 1;
}

/* DSV4_OPT_MEM_LOCK: the weights in memory (and the cache's slots under a
 * budget) locked, DSV4_INFO_LOCKED_BYTES says how much; where the system
 * refuses (no CAP_IPC_LOCK and a small RLIMIT_MEMLOCK) a warning and a
 * smaller figure; unlocked again when the model is freed */
static void check_lock_refused(const char *name, const char *dir, int64_t budget);

static void check_lock(const char *name, const char *dir, int64_t budget)
{
    long before = vm_locked_kb();
    dsv4_options *o = NULL;
    dsv4_model *m = NULL;
    dsv4_options_create(&o);
    CHECK(dsv4_options_set_i64(o, DSV4_OPT_MEM_LOCK, 2) == DSV4_ERR_INVALID_ARGUMENT, "%s: lock: 2 refused", name);
    dsv4_options_set_i64(o, DSV4_OPT_MEM_LOCK, 1);
    if (budget) dsv4_options_set_i64(o, DSV4_OPT_MEM_BUDGET, budget);
    dsv4_options_set_log(o, lock_log, NULL, DSV4_LOG_WARN);
    lock_warned = 0;
    dsv4_status st = dsv4_model_load(dir, o, &m, NULL);
    dsv4_options_free(o);
    CHECK(st == DSV4_OK, "%s: lock: loaded (%d)", name, st);
    if (st) return;
    dsv4_model_info *info = NULL;
    int64_t locked = -1, resident = -1, cache = -1;
    dsv4_model_get_info(m, &info);
    dsv4_model_info_get_i64(info, DSV4_INFO_LOCKED_BYTES, &locked);
    dsv4_model_info_get_i64(info, DSV4_INFO_RESIDENT_BYTES, &resident);
    dsv4_model_info_get_i64(info, DSV4_INFO_EXPERT_CACHE_BYTES, &cache);
    dsv4_model_info_free(info);
    long during = vm_locked_kb();
    printf("  %s: budget %lld: locked %lld of %lld + %lld bytes, VmLck %ld -> %ld kB%s\n", name, (long long)budget,
           (long long)locked, (long long)resident, (long long)cache, before, during, lock_warned ? " (warned)" : "");
    if (!lock_warned) {
        CHECK(locked == resident + cache, "%s: lock: everything in memory locked (%lld of %lld)", name,
              (long long)locked, (long long)(resident + cache));
        CHECK(!MLOCK_REAL || before < 0 || during - before >= locked / 1024, "%s: lock: VmLck grew by the locked bytes",
              name);
    } else {
        CHECK(locked < resident + cache, "%s: lock: a warning only when something stayed unlocked", name);
    }
    dsv4_model_free(m);
    long after = vm_locked_kb();
    CHECK(!MLOCK_REAL || before < 0 || after <= before + 8, "%s: lock: unlocked when freed (VmLck %ld -> %ld kB)", name,
          before, after);
    /* without the option: nothing locked */
    m = load(dir, budget, NULL, NULL);
    info = NULL;
    locked = -1;
    if (m && dsv4_model_get_info(m, &info) == DSV4_OK) dsv4_model_info_get_i64(info, DSV4_INFO_LOCKED_BYTES, &locked);
    dsv4_model_info_free(info);
    CHECK(locked == 0, "%s: lock: 0 bytes locked without the option (%lld)", name, (long long)locked);
    dsv4_model_free(m);
    if (MLOCK_REAL) check_lock_refused(name, dir, budget);
    else printf("  %s: a sanitizer's mlock does nothing: the refused lock is checked in plain builds\n", name);
}

/* in a child without CAP_IPC_LOCK and with RLIMIT_MEMLOCK of 64 KiB: the
 * load succeeds, warns, and reports less than everything locked */
static void check_lock_refused(const char *name, const char *dir, int64_t budget)
{
    pid_t pid = fork();
    if (pid == 0) {
        struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
        struct __user_cap_data_struct d[2];
        if (syscall(SYS_capget, &h, d) == 0) {
            d[0].effective &= ~(1u << CAP_IPC_LOCK);
            d[0].permitted &= ~(1u << CAP_IPC_LOCK);
            d[0].inheritable &= ~(1u << CAP_IPC_LOCK);
            (void)syscall(SYS_capset, &h, d);
        }
        struct rlimit rl = { 64 << 10, 64 << 10 };
        if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0) _exit(3);
        dsv4_options *o = NULL;
        dsv4_model *m = NULL;
        dsv4_options_create(&o);
        dsv4_options_set_i64(o, DSV4_OPT_MEM_LOCK, 1);
        if (budget) dsv4_options_set_i64(o, DSV4_OPT_MEM_BUDGET, budget);
        dsv4_options_set_log(o, lock_log, NULL, DSV4_LOG_WARN);
        lock_warned = 0;
        if (dsv4_model_load(dir, o, &m, NULL) != DSV4_OK) _exit(4);
        dsv4_model_info *info = NULL;
        int64_t locked = -1, resident = -1, cache = 0;
        dsv4_model_get_info(m, &info);
        dsv4_model_info_get_i64(info, DSV4_INFO_LOCKED_BYTES, &locked);
        dsv4_model_info_get_i64(info, DSV4_INFO_RESIDENT_BYTES, &resident);
        dsv4_model_info_get_i64(info, DSV4_INFO_EXPERT_CACHE_BYTES, &cache);
        dsv4_model_info_free(info);
        dsv4_model_free(m);
        dsv4_options_free(o);
        _exit(!lock_warned ? 5 : locked >= resident + cache ? 6 : 0);
    }
    int ws = 0;
    CHECK(pid > 0 && waitpid(pid, &ws, 0) == pid, "%s: lock refused: child ran", name);
    CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "%s: lock refused (64 KiB limit): load OK, a warning, less locked "
          "(child exit %d: 4 load failed, 5 no warning, 6 all locked)", name, WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
}

static void check_truncated(const char *synth, const char *tmp)
{
    char dir[1024], cmd[4096], path[1200];
    snprintf(dir, sizeof dir, "%s/trunc", tmp);
    snprintf(cmd, sizeof cmd, "'%s' --preset tiny --experts 16 --vocab 512 --shards 2 --out '%s' >/dev/null 2>&1",
             synth, dir);
    CHECK(system(cmd) == 0, "truncated: synthetic model written");
    int64_t mb = min_budget(dir);
    dsv4_model *m = load(dir, mb, NULL, NULL);
    CHECK(m != NULL, "truncated: loaded at the minimum budget");
    if (!m) return;
    dsv4_context *ctx = NULL;
    dsv4_session *s = NULL;
    CHECK(dsv4_context_create(m, NULL, &ctx, NULL) == DSV4_OK && dsv4_session_create(ctx, NULL, &s, NULL) == DSV4_OK,
          "truncated: context and session");
    int32_t tok[N_TOK];
    tokens(tok, N_TOK, 512, 3);
    CHECK(dsv4_session_eval(s, tok, 4, 0) == DSV4_OK, "truncated: eval before the truncation");
    /* the second shard holds the last layers' experts (not the embedding) */
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    FILE *f = fopen(path, "rb");
    long size = 0;
    if (f) { fseek(f, 0, SEEK_END); size = ftell(f); fclose(f); }
    CHECK(size > 0 && truncate(path, size / 2) == 0, "truncated: shard cut to half");
    /* enough tokens that some expert of the later layers misses */
    dsv4_status st = dsv4_session_eval(s, tok + 4, 16, 0);
    const char *msg = dsv4_session_last_error(s);
    CHECK(st == DSV4_ERR_IO, "truncated: eval gives DSV4_ERR_IO (%d): %s", st, msg);
    CHECK(strstr(msg, "model-00002-of-00002.safetensors") != NULL, "truncated: the message names the shard");
    CHECK(dsv4_session_position(s) == 0, "truncated: the session was reset");
    st = dsv4_session_eval(s, tok, 20, 0);
    CHECK(st == DSV4_ERR_IO, "truncated: a later eval fails too (%d)", st);
    dsv4_session_free(s);
    dsv4_context_free(ctx);
    dsv4_model_free(m);
}

int main(int argc, char **argv)
{
    const char *synth = argc > 1 ? argv[1] : NULL;
    int threads_only = argc > 2 && !strcmp(argv[2], "--threads-only"); /* ThreadSanitizer tree (suite tsan) */
    char dir[1024];
    static const char *golden[] = { "tiny-a", "tiny-b" };
    /* DSV4_TEST_LIGHT (the ThreadSanitizer tree): tiny-a only — tiny-b has
     * the same layers and options at larger widths */
    for (int i = 0; i < (test_light() ? 1 : 2) && !threads_only; i++) {
        snprintf(dir, sizeof dir, "%s/golden/%s/ckpt", test_shared_dir(), golden[i]);
        if (access(dir, R_OK) != 0) {
            printf("  %s: not found, skipped\n", dir);
            continue;
        }
        check_budgets(golden[i], dir);
        check_variants(golden[i], dir);
        check_read_failures(golden[i], dir);
        check_lock(golden[i], dir, 0);
        check_lock(golden[i], dir, min_budget(dir));
    }
    char *tmp = test_tmpdir("experts");
    CHECK(synth && tmp, "dsv4-synth given, temporary directory");
    if (synth && tmp) {
        char cmd[4096];
        snprintf(dir, sizeof dir, "%s/many", tmp);
        snprintf(cmd, sizeof cmd, "'%s' --preset tiny --experts 64 --vocab 512 --shards 3 --out '%s' >/dev/null 2>&1",
                 synth, dir);
        CHECK(system(cmd) == 0, "synthetic many-expert model written");
        if (!threads_only) check_budgets("synthetic 64 experts", dir);
        if (!threads_only) check_variants("synthetic 64 experts", dir);
        check_threads(dir, 0);
        check_threads(dir, 1);
        check_truncated(synth, tmp);
        test_rmtree(tmp);
    }
    free(tmp);
    return test_summary();
}
