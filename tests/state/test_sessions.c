/*
 * tests/state — sessions that last (docs/sessions.md) on the golden tiny
 * checkpoints (../shared/golden/tiny-*), both numerics, MTP on:
 *
 *  - rewind: a session fed the 600-token golden sequence in calls of mixed
 *    sizes, with checkpoints, rewound to every position p (descending, then
 *    long jumps from the end) holds exactly the state, history, call
 *    boundaries and last logits of a session that received the same calls
 *    cut at p and never went beyond (compared as uncompressed saved files),
 *    and the next token's logits are bit-identical;
 *  - save/restore: buffer, fd and callbacks, raw and zstd; restore → continue
 *    gives the logits of the session that never stopped, bit for bit;
 *  - refusals, each leaving the session unchanged: every header field
 *    corrupted (checksum fixed, so the field's own check is hit), every
 *    truncation length, trailing bytes, corrupt sections, another model,
 *    other numerics, MTP setting, a context too small; allocation failure at
 *    every step of checkpoint, rewind, save and restore.
 *
 * Argument "full": every position of both models in both numerics (suite
 * golden); without it, tiny-a, every 5th position of the first 200, one
 * numerics each part (suite fast). DSV4_TEST_LIGHT (the ThreadSanitizer
 * tree): every 20th position, shorter continuations, a sparser sample of
 * flipped bytes and truncations past the first 512 bytes.
 */
#define DSV4_ENABLE_EXPERIMENTAL
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include <dsv4/dsv4.h>
#include "testutil.h"
#include "state/sfile.h"

static int full;
static int64_t V;

static int32_t *load_tokens(const char *path, size_t *n)
{
    json_t *a = json_load_file(path, 0, NULL);
    int32_t *t = NULL;
    *n = 0;
    if (a && json_is_array(a)) {
        *n = json_array_size(a);
        t = malloc(*n * sizeof *t + 1);
        for (size_t i = 0; t && i < *n; i++) t[i] = (int32_t)json_integer_value(json_array_get(a, i));
    }
    json_decref(a);
    return t;
}

static dsv4_context *mkctx(dsv4_model *m, int numerics, int64_t n_ctx)
{
    dsv4_options *o = NULL;
    dsv4_context *c = NULL;
    dsv4_options_create(&o);
    dsv4_options_set_i64(o, DSV4_OPT_NUMERICS, numerics);
    dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, n_ctx);
    dsv4_options_set_i64(o, DSV4_OPT_THREADS, 1);
    dsv4_options_set_i64(o, DSV4_OPT_MAX_BATCH, 32);
    dsv4_context_create(m, o, &c, NULL);
    dsv4_options_free(o);
    return c;
}

static dsv4_session *mksess(dsv4_context *c, int mtp)
{
    dsv4_options *o = NULL;
    dsv4_session *s = NULL;
    dsv4_options_create(&o);
    dsv4_options_set_i64(o, DSV4_OPT_MTP, mtp);
    dsv4_session_create(c, o, &s, NULL);
    dsv4_options_free(o);
    return s;
}

/* the call pattern: sizes 1..48, runs of single tokens in between */
static int call_size(int k)
{
    static const int pat[] = { 3, 1, 1, 17, 5, 1, 40, 2, 1, 1, 1, 9, 33, 1, 6, 48, 1, 1, 13, 4, 27, 1, 8, 1 };
    return pat[k % (int)(sizeof pat / sizeof pat[0])];
}

/* uncompressed saved file of a session without its checkpoints (malloc) */
static uint8_t *snap(dsv4_session *s, size_t *len)
{
    size_t n = 0;
    uint32_t fl = DSV4_SAVE_UNCOMPRESSED | DSV4_SAVE_NO_CHECKPOINTS; /* the state alone */
    dsv4_session_save_buffer(s, NULL, 0, &n, fl);
    uint8_t *b = malloc(n ? n : 1);
    if (dsv4_session_save_buffer(s, b, n, len, fl) != DSV4_OK) { free(b); return NULL; }
    return b;
}

static int same_snap(dsv4_session *s, const uint8_t *ref, size_t ref_len)
{
    size_t n = 0;
    uint8_t *b = snap(s, &n);
    int ok = b && n == ref_len && memcmp(b, ref, n) == 0;
    free(b);
    return ok;
}

/* logits of the last position, or a NaN row when not available */
static int last_logits(dsv4_session *s, float *dst)
{
    dsv4_status st = dsv4_session_logits(s, -1, dst, (size_t)V);
    if (st) for (int64_t i = 0; i < V; i++) dst[i] = 0.0f / 0.0f;
    return st;
}

/* feed tok[0..p) as the pattern's calls cut at p */
static int feed_calls(dsv4_session *s, const int32_t *tok, int64_t p)
{
    int64_t a = 0;
    for (int k = 0; a < p; k++) {
        int64_t n = call_size(k);
        if (a + n > p) n = p - a;
        if (dsv4_session_eval(s, tok + a, (size_t)n, 0)) return 0;
        a += n;
    }
    return 1;
}

/* ---- rewind ---------------------------------------------------------------------- */

static void rewind_checks(dsv4_model *m, const char *preset, int numerics, const int32_t *tok, int64_t N, int step)
{
    dsv4_context *c = mkctx(m, numerics, N + 8);
    dsv4_session *A = mksess(c, 1), *B = mksess(c, 1);
    if (!CHECK(c && A && B, "%s: context and sessions", preset)) goto out;
    CHECK(dsv4_session_set_checkpoint_limit(A, 4096, 0) == DSV4_OK, "checkpoint limit");
    /* A: the calls, a checkpoint after every third */
    int64_t a = 0;
    for (int k = 0; a < N; k++) {
        int64_t n = call_size(k);
        if (a + n > N) n = N - a;
        if (!CHECK(dsv4_session_eval(A, tok + a, (size_t)n, 0) == DSV4_OK, "eval")) goto out;
        a += n;
        if (k % 3 == 2) CHECK(dsv4_session_checkpoint(A) == DSV4_OK, "checkpoint at %lld", (long long)a);
    }
    size_t nck = 0, nh = 0;
    dsv4_session_checkpoints(A, NULL, 0, &nck);
    CHECK(nck > 10, "%zu checkpoints", nck);
    int32_t *h = malloc((size_t)N * 4);
    CHECK(dsv4_session_tokens(A, h, (size_t)N, &nh) == DSV4_OK && nh == (size_t)N && !memcmp(h, tok, (size_t)N * 4),
          "the session's history is the tokens fed");
    CHECK(dsv4_session_tokens(A, h, (size_t)N - 1, &nh) == DSV4_ERR_BUFFER_TOO_SMALL, "history: buffer too small");
    free(h);
    /* the reference: a session at every call boundary of the pattern, saved
     * (restore → continue is checked against a session that never stopped
     * in save_checks), from which a session never ahead of p is made */
    int64_t bnd[700];
    uint8_t *bfile[700];
    size_t blen[700];
    int nb = 0;
    dsv4_session_reset(B);
    for (int64_t q = 0, k = 0;; k++) {
        bnd[nb] = q;
        bfile[nb] = snap(B, &blen[nb]);
        nb++;
        if (q >= N) break;
        int64_t n = call_size((int)k);
        if (q + n > N) n = N - q;
        dsv4_session_eval(B, tok + q, (size_t)n, 0);
        q += n;
    }
    float *la = malloc((size_t)V * 4), *lb = malloc((size_t)V * 4);
    int bad_state = 0, bad_logits = 0, bad_next = 0, n_pos = 0;
    int64_t first_bad = -1;
    for (int64_t p = N; p >= 0; p--) {
        if (p % step && p != N) continue;
        if (p > (full ? N : 200) && p != N) continue;
        n_pos++;
        if (dsv4_session_rewind(A, p, 0) != DSV4_OK || dsv4_session_position(A) != p) {
            bad_state++;
            if (first_bad < 0) first_bad = p;
            continue;
        }
        int kb = nb - 1;
        while (bnd[kb] > p) kb--;
        dsv4_session_restore_buffer(B, bfile[kb], blen[kb]);
        if (p > bnd[kb]) dsv4_session_eval(B, tok + bnd[kb], (size_t)(p - bnd[kb]), 0);
        size_t ln = 0;
        uint8_t *ref = snap(B, &ln);
        int same = ref && same_snap(A, ref, ln);
        free(ref);
        int sa = last_logits(A, la), sb = last_logits(B, lb);
        int lsame = sa == sb && (sa || !memcmp(la, lb, (size_t)V * 4));
        int nsame = 1;
        if (p < N) {
            dsv4_session_eval(A, tok + p, 1, 0);
            dsv4_session_eval(B, tok + p, 1, 0);
            last_logits(A, la);
            last_logits(B, lb);
            nsame = !memcmp(la, lb, (size_t)V * 4);
        }
        bad_state += !same;
        bad_logits += !lsame;
        bad_next += !nsame;
        if ((!same || !lsame || !nsame) && first_bad < 0) first_bad = p;
    }
    CHECK(!bad_state && !bad_logits && !bad_next, "%s numerics %d: rewind to %d positions: %d states, %d logits, %d "
          "next logits differ from a session never ahead (first at %lld)", preset, numerics, n_pos, bad_state,
          bad_logits, bad_next, (long long)first_bad);
    printf("  %s numerics %d: rewound to %d positions, bit-identical\n", preset, numerics, n_pos);
    /* long jumps: back to the end through the calls, then far back */
    dsv4_session_reset(A);
    feed_calls(A, tok, N);
    dsv4_session_checkpoint(A);
    int64_t targets[] = { N - 1, N / 2 + 3, 129, 128, 33, 4, 1, 0 };
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        int64_t p = targets[i];
        CHECK(dsv4_session_rewind(A, p, 0) == DSV4_OK, "rewind to %lld", (long long)p);
        dsv4_session_reset(B);
        feed_calls(B, tok, p);
        size_t ln = 0;
        uint8_t *ref = snap(B, &ln);
        CHECK(ref && same_snap(A, ref, ln), "%s: jump back to %lld: same state as a session never ahead", preset,
              (long long)p);
        free(ref);
    }
    /* batched re-feed: the same position and history, logits close */
    dsv4_session_reset(A);
    feed_calls(A, tok, 120);
    CHECK(dsv4_session_rewind(A, 77, DSV4_REWIND_BATCHED) == DSV4_OK && dsv4_session_position(A) == 77,
          "batched rewind");
    CHECK(dsv4_session_rewind(A, 78, 0) == DSV4_ERR_INVALID_ARGUMENT, "rewind forward refused");
    CHECK(dsv4_session_rewind(A, -1, 0) == DSV4_ERR_INVALID_ARGUMENT, "rewind to -1 refused");
    CHECK(dsv4_session_rewind(A, 5, 4) == DSV4_ERR_INVALID_ARGUMENT, "unknown rewind flag refused");
    CHECK(dsv4_session_rewind(NULL, 0, 0) == DSV4_ERR_INVALID_ARGUMENT, "rewind NULL");
    free(la);
    free(lb);
    for (int i = 0; i < nb; i++) free(bfile[i]);
out:
    dsv4_session_free(A);
    dsv4_session_free(B);
    dsv4_context_free(c);
}

/* checkpoint limits: count and bytes, least recently used dropped */
static void limit_checks(dsv4_model *m, const int32_t *tok)
{
    dsv4_context *c = mkctx(m, DSV4_NUMERICS_REFERENCE, 256);
    dsv4_session *s = mksess(c, 0);
    int64_t pos[8];
    size_t n = 0;
    for (int i = 0; i < 6; i++) {
        dsv4_session_eval(s, tok + i * 10, 10, 0);
        CHECK(dsv4_session_checkpoint(s) == DSV4_OK, "checkpoint %d", i);
    }
    CHECK(dsv4_session_checkpoints(s, pos, 8, &n) == DSV4_OK && n == 4 && pos[0] == 30 && pos[3] == 60,
          "default limit 4 keeps the 4 most recent (%zu: %lld..)", n, (long long)pos[0]);
    CHECK(dsv4_session_checkpoints(s, pos, 3, &n) == DSV4_ERR_BUFFER_TOO_SMALL, "list: buffer too small");
    CHECK(dsv4_session_rewind(s, 35, 0) == DSV4_OK, "rewind to 35");
    CHECK(dsv4_session_checkpoints(s, pos, 8, &n) == DSV4_OK && n == 1 && pos[0] == 30, "checkpoints above 35 dropped");
    dsv4_session_eval(s, tok + 35, 10, 0);
    dsv4_session_checkpoint(s);
    dsv4_session_eval(s, tok + 45, 10, 0);
    dsv4_session_checkpoint(s);
    dsv4_session_rewind(s, 40, 0); /* uses 30: most recent now */
    dsv4_session_eval(s, tok + 40, 2, 0);
    dsv4_session_checkpoint(s);    /* 30, 45, 42 -> limit 2 drops 45? no: 45 was dropped by the rewind */
    CHECK(dsv4_session_set_checkpoint_limit(s, 1, 0) == DSV4_OK, "limit 1");
    CHECK(dsv4_session_checkpoints(s, pos, 8, &n) == DSV4_OK && n == 1 && pos[0] == 42, "LRU kept the newest (%lld)",
          (long long)pos[0]);
    CHECK(dsv4_session_set_checkpoint_limit(s, 4, 1) == DSV4_OK, "byte limit 1");
    CHECK(dsv4_session_checkpoints(s, NULL, 0, &n) == DSV4_OK && n == 0, "byte limit drops all");
    CHECK(dsv4_session_checkpoint(s) == DSV4_ERR_NOT_AVAILABLE, "one checkpoint above the byte limit refused");
    CHECK(dsv4_session_set_checkpoint_limit(s, 0, 0) == DSV4_OK && dsv4_session_checkpoint(s) == DSV4_ERR_NOT_AVAILABLE,
          "limit 0: checkpoints off");
    CHECK(dsv4_session_set_checkpoint_limit(s, -1, 0) == DSV4_ERR_INVALID_ARGUMENT &&
          dsv4_session_set_checkpoint_limit(s, 1, -1) == DSV4_ERR_INVALID_ARGUMENT, "bad limits refused");
    dsv4_session_free(s);
    dsv4_context_free(c);
}

/* ---- save / restore ---------------------------------------------------------------- */

typedef struct sink { uint8_t *p; size_t n, cap; int fail_at; } sink;
static int32_t sink_write(void *u, const void *d, size_t len)
{
    sink *k = u;
    if (k->fail_at >= 0 && k->n + len > (size_t)k->fail_at) return -1;
    if (k->n + len > k->cap) {
        k->cap = (k->n + len) * 2;
        k->p = realloc(k->p, k->cap);
    }
    memcpy(k->p + k->n, d, len);
    k->n += len;
    return 0;
}
typedef struct src { const uint8_t *p; size_t n, off, chunk; } src;
static int64_t src_read(void *u, void *d, size_t len)
{
    src *s = u;
    size_t k = s->n - s->off;
    if (k > len) k = len;
    if (k > s->chunk) k = s->chunk;
    memcpy(d, s->p + s->off, k);
    s->off += k;
    return (int64_t)k;
}
static int64_t src_fail(void *u, void *d, size_t len) { (void)u; (void)d; (void)len; return -1; }

/* restore must fail with `want` (or any error when want < 0) and leave s as `before` */
static int refused(dsv4_session *s, const uint8_t *buf, size_t len, dsv4_status want, const uint8_t *before,
                   size_t blen)
{
    static unsigned calls;
    dsv4_status st = dsv4_session_restore_buffer(s, buf, len);
    int ok = want < 0 ? st != DSV4_OK : st == want;
    if (!ok) printf("    got status %d (%s): %s\n", st, dsv4_status_string(st), dsv4_session_last_error(s));
    /* unchanged: position and history always, the whole saved state (a
     * save of it) for one refusal in 16 — the sanitizer build's cost */
    uint64_t pos;
    uint32_t ns;
    memcpy(&pos, before + 48, 8);
    memcpy(&ns, before + 60, 4);
    size_t nh = 0;
    int32_t h[64];
    ok = ok && dsv4_session_position(s) == (int64_t)pos && pos <= 64 && dsv4_session_tokens(s, h, 64, &nh) == DSV4_OK &&
         nh == pos && !memcmp(h, before + DSV4__SFILE_HEADER + ns * 32 + 8, nh * 4);
    return ok && (calls++ % 16 || same_snap(s, before, blen));
}

static void refix_header(uint8_t *b)
{
    uint32_t ns;
    memcpy(&ns, b + 60, 4);
    if (ns > DSV4__SFILE_MAX_SECTIONS) return;
    size_t at = DSV4__SFILE_HEADER + ns * 32;
    uint64_t h = dsv4__hash64(b, at, 0);
    memcpy(b + at, &h, 8);
}

static void save_checks(dsv4_model *m, dsv4_model *other, const char *preset, int numerics, const int32_t *tok,
                        int64_t N)
{
    dsv4_context *c = mkctx(m, numerics, N);
    dsv4_session *A = mksess(c, 1), *R = mksess(c, 1), *X = mksess(c, 1);
    float *la = malloc((size_t)V * 4), *lb = malloc((size_t)V * 4);
    int64_t cuts[] = { 0, 1, 3, 4, 31, 33, 128, 129, 257, N / 2 + 1, N - 1 };
    int n_ok = 0, n_cut = 0;
    for (size_t ci = 0; ci < sizeof cuts / sizeof cuts[0]; ci++) {
        int64_t p = cuts[ci];
        if (!full && ci % 2) continue;
        n_cut++;
        dsv4_session_reset(A);
        feed_calls(A, tok, p);
        /* through callbacks, zstd; and raw; and an fd */
        sink k = { NULL, 0, 0, -1 }, kr = { NULL, 0, 0, -1 };
        int ok = dsv4_session_save(A, sink_write, &k, 0) == DSV4_OK &&
                 dsv4_session_save(A, sink_write, &kr, DSV4_SAVE_UNCOMPRESSED) == DSV4_OK;
        src in = { k.p, k.n, 0, 1000 };
        ok = ok && dsv4_session_restore(R, src_read, &in) == DSV4_OK && dsv4_session_position(R) == p;
        size_t ln = 0;
        uint8_t *ref = snap(A, &ln);
        ok = ok && same_snap(R, ref, ln);
        ok = ok && dsv4_session_restore_buffer(R, kr.p, kr.n) == DSV4_OK && same_snap(R, ref, ln);
        FILE *f = tmpfile();
        ok = ok && f && dsv4_session_save_fd(A, fileno(f), 0) == DSV4_OK;
        if (f) rewind(f);
        ok = ok && f && dsv4_session_restore_fd(R, fileno(f)) == DSV4_OK && same_snap(R, ref, ln);
        if (f) fclose(f);
        /* continue both through the rest of the calls: the same logits */
        int64_t a = 0;
        int k2 = 0;
        for (; a < p; k2++) a += call_size(k2);
        int cont = 1;
        for (int64_t q = p; q < N && q < p + test_reps(160, 40); q++) {
            dsv4_session_eval(A, tok + q, 1, 0);
            dsv4_session_eval(R, tok + q, 1, 0);
            last_logits(A, la);
            last_logits(R, lb);
            cont &= !memcmp(la, lb, (size_t)V * 4);
        }
        n_ok += CHECK(ok && cont, "%s numerics %d: save at %lld → restore → continue bit-identical (%s)", preset,
                      numerics, (long long)p, ok ? "continuation differs" : "roundtrip failed");
        if (ci == 8) printf("  %s numerics %d: at %lld saved %zu bytes zstd, %zu raw\n", preset, numerics,
                            (long long)p, k.n, kr.n);
        free(ref);
        free(k.p);
        free(kr.p);
    }
    printf("  %s numerics %d: save/restore/continue at %d positions\n", preset, numerics, n_ok);
    (void)n_cut;

    /* refusals on a session X holding its own state */
    feed_calls(X, tok, 20);
    size_t bl = 0;
    uint8_t *before = snap(X, &bl);
    dsv4_session_reset(A);
    feed_calls(A, tok, 37);
    sink k = { NULL, 0, 0, -1 }, kr = { NULL, 0, 0, -1 };
    dsv4_session_save(A, sink_write, &k, 0);
    dsv4_session_save(A, sink_write, &kr, DSV4_SAVE_UNCOMPRESSED);
    uint8_t *b = malloc(k.n + 1);
    /* every header field, checksum fixed: offset, bytes, expected status */
    struct { int off, len; dsv4_status want; const char *what; } fields[] = {
        { 0, 8, DSV4_ERR_BAD_FORMAT, "magic" }, { 8, 4, DSV4_ERR_BAD_FORMAT, "format version" },
        { 12, 4, DSV4_ERR_BAD_FORMAT, "header size" }, { 20, 4, DSV4_ERR_BAD_FORMAT, "flags (unknown bit)" },
        { 24, 8, DSV4_ERR_INCOMPATIBLE, "fingerprint" }, { 32, 4, DSV4_ERR_INCOMPATIBLE, "numerics" },
        { 36, 4, DSV4_ERR_INCOMPATIBLE, "revision" }, { 40, 8, DSV4_ERR_BAD_FORMAT, "context length" },
        { 48, 8, -1, "position" }, { 56, 4, DSV4_ERR_INCOMPATIBLE, "vocab" },
        { 60, 4, DSV4_ERR_BAD_FORMAT, "section count" }, { 64, 32, DSV4_ERR_BAD_FORMAT, "reserved" },
    };
    int nf = 0;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        memcpy(b, k.p, k.n);
        if (fields[i].off == 20) b[20] |= 0x80;
        else if (fields[i].off == 40) b[40] = 1, memset(b + 41, 0, 7); /* context 1 < position 37 */
        else b[fields[i].off] ^= 0x5a;
        refix_header(b);
        nf += CHECK(refused(X, b, k.n, fields[i].want, before, bl), "corrupt %s refused, session unchanged",
                    fields[i].what);
    }
    /* flags: MTP flip -> incompatible; logits flag flip -> bad format */
    memcpy(b, k.p, k.n); b[20] ^= 1; refix_header(b);
    CHECK(refused(X, b, k.n, DSV4_ERR_INCOMPATIBLE, before, bl), "MTP flag flipped: incompatible");
    memcpy(b, k.p, k.n); b[20] ^= 2; refix_header(b);
    CHECK(refused(X, b, k.n, DSV4_ERR_BAD_FORMAT, before, bl), "logits flag flipped: bad format");
    /* every section table field */
    for (int sct = 0; sct < 4; sct++)
        for (int fo = 0; fo < 32; fo += 4) {
            memcpy(b, k.p, k.n);
            b[DSV4__SFILE_HEADER + sct * 32 + fo] ^= 0x21;
            refix_header(b);
            nf += CHECK(refused(X, b, k.n, -1, before, bl), "section %d field at %d corrupted: refused", sct, fo);
        }
    /* library version: informational, accepted */
    memcpy(b, k.p, k.n); b[16] ^= 1; refix_header(b);
    CHECK(dsv4_session_restore_buffer(X, b, k.n) == DSV4_OK, "another library version of the same format accepted");
    dsv4_session_restore_buffer(X, before, bl);
    /* any flipped byte anywhere: refused (header checksum, section checksums) —
     * every byte and every truncation length of a file at position 1, a
     * sample of them at position 37 */
    sink k1 = { NULL, 0, 0, -1 };
    {
        dsv4_session *one = mksess(c, 1);
        dsv4_session_eval(one, tok, 1, 0);
        dsv4_session_save(one, sink_write, &k1, 0);
        dsv4_session_free(one);
    }
    int flips = 0, flip_ok = 0, tr = 0, tr_ok = 0;
    for (int f = 0; f < 2; f++) {
        const sink *src_ = f ? &k : &k1;
        /* DSV4_TEST_LIGHT: every byte of the first 512 (header, section
         * table, the start of the sections), a sparser sample after */
        size_t step = f == 0 ? (size_t)test_reps(1, 7) : (size_t)test_reps(29, 97);
        uint8_t *fb = malloc(src_->n + 1);
        for (size_t i = 0; i < src_->n; i += (i < 512 ? 1 : step)) {
            memcpy(fb, src_->p, src_->n);
            fb[i] ^= 0x10;
            flips++;
            flip_ok += refused(X, fb, src_->n, -1, before, bl) || (i >= 16 && i < 20); /* library version */
        }
        for (size_t len = 0; len < src_->n; len += (len < 512 ? 1 : step)) {
            tr++;
            tr_ok += refused(X, src_->p, len, DSV4_ERR_BAD_FORMAT, before, bl);
        }
        free(fb);
    }
    free(k1.p);
    CHECK(flip_ok == flips, "%d of %d single-byte corruptions refused, session unchanged", flip_ok, flips);
    CHECK(tr_ok == tr, "%d of %d truncations refused as bad format, session unchanged", tr_ok, tr);
    memcpy(b, k.p, k.n);
    b[k.n] = 0;
    CHECK(refused(X, b, k.n + 1, DSV4_ERR_BAD_FORMAT, before, bl), "trailing byte refused");
    /* a hostile but well-checksummed raw file: NaN in the state, a bad token */
    {
        uint8_t *r = malloc(kr.n);
        uint64_t off = DSV4__SFILE_HEADER + 4 * 32 + 8, sizes[4];
        for (int i = 0; i < 4; i++) memcpy(&sizes[i], kr.p + DSV4__SFILE_HEADER + i * 32 + 16, 8);
        uint64_t st_off = off + sizes[0] + sizes[1];
        memcpy(r, kr.p, kr.n);
        float nan = 0.0f / 0.0f;
        memcpy(r + st_off + 8, &nan, 4);
        uint64_t h = dsv4__hash64(r + st_off, sizes[2], 3);
        memcpy(r + DSV4__SFILE_HEADER + 2 * 32 + 24, &h, 8);
        refix_header(r);
        CHECK(refused(X, r, kr.n, DSV4_ERR_BAD_FORMAT, before, bl), "NaN in the state refused");
        memcpy(r, kr.p, kr.n);
        int32_t badtok = (int32_t)V;
        memcpy(r + off + 4, &badtok, 4);
        h = dsv4__hash64(r + off, sizes[0], 1);
        memcpy(r + DSV4__SFILE_HEADER + 24, &h, 8);
        refix_header(r);
        CHECK(refused(X, r, kr.n, DSV4_ERR_BAD_FORMAT, before, bl), "token outside the vocabulary refused");
        free(r);
    }
    /* source errors, sink errors */
    CHECK(dsv4_session_restore(X, src_fail, NULL) == DSV4_ERR_IO && same_snap(X, before, bl), "source error: IO");
    sink kf = { NULL, 0, 0, 100 };
    CHECK(dsv4_session_save(A, sink_write, &kf, 0) == DSV4_ERR_IO, "sink error: IO");
    free(kf.p);
    size_t need = 0;
    CHECK(dsv4_session_save_buffer(A, b, 10, &need, 0) == DSV4_ERR_BUFFER_TOO_SMALL && need == k.n,
          "buffer too small: size reported (%zu)", need);
    /* another model, numerics, MTP setting, context too small, larger context fine */
    dsv4_context *co = mkctx(other, numerics, N), *cn = mkctx(m, 3 - numerics, N), *cs = mkctx(m, numerics, 30),
                 *cl = mkctx(m, numerics, 2 * N);
    dsv4_session *so = mksess(co, 1), *sn = mksess(cn, 1), *sm = mksess(c, 0), *ss = mksess(cs, 1), *sl = mksess(cl, 1);
    CHECK(dsv4_session_restore_buffer(so, k.p, k.n) == DSV4_ERR_INCOMPATIBLE, "another model refused: %s",
          dsv4_session_last_error(so));
    CHECK(dsv4_session_restore_buffer(sn, k.p, k.n) == DSV4_ERR_INCOMPATIBLE, "other numerics refused");
    CHECK(dsv4_session_restore_buffer(sm, k.p, k.n) == DSV4_ERR_INCOMPATIBLE, "session without MTP refused");
    CHECK(dsv4_session_restore_buffer(ss, k.p, k.n) == DSV4_ERR_CONTEXT_FULL, "context too small refused");
    CHECK(dsv4_session_restore_buffer(sl, k.p, k.n) == DSV4_OK && dsv4_session_position(sl) == 37,
          "a longer context restores");
    dsv4_session_eval(sl, tok + 37, 1, 0);
    dsv4_session_eval(A, tok + 37, 1, 0);
    last_logits(sl, la);
    last_logits(A, lb);
    CHECK(!memcmp(la, lb, (size_t)V * 4), "restored into a longer context: continues bit-identically");
    dsv4_session_free(so); dsv4_session_free(sn); dsv4_session_free(sm); dsv4_session_free(ss); dsv4_session_free(sl);
    dsv4_context_free(co); dsv4_context_free(cn); dsv4_context_free(cs); dsv4_context_free(cl);

    /* allocation failure at every step: checkpoint, rewind, save, restore */
    if (numerics == (full ? DSV4_NUMERICS_REFERENCE : DSV4_NUMERICS_FLOAT)) {
        int fails = 0, good = 0;
        for (long n = 1; n < 200; n++) {
            dsv4__alloc_fail_after(n);
            dsv4_status st = dsv4_session_restore_buffer(X, k.p, k.n);
            dsv4__alloc_fail_after(0);
            if (st == DSV4_OK) { good = 1; break; }
            fails++;
            if (!CHECK(st == DSV4_ERR_OUT_OF_MEMORY && same_snap(X, before, bl),
                       "restore, allocation %ld fails: status %d, session unchanged", n, st)) break;
        }
        CHECK(good && fails > 3, "restore: %d allocation failures refused cleanly, then success", fails);
        dsv4_session_restore_buffer(X, before, bl);
        fails = 0; good = 0;
        for (long n = 1; n < 200; n++) {
            size_t len = 0;
            dsv4__alloc_fail_after(n);
            dsv4_status st = dsv4_session_save_buffer(X, b, k.n + 1, &len, 0);
            dsv4__alloc_fail_after(0);
            if (st == DSV4_OK) { good = 1; break; }
            fails++;
            if (!CHECK(st == DSV4_ERR_OUT_OF_MEMORY, "save, allocation %ld fails: status %d", n, st)) break;
        }
        CHECK(good && fails > 2 && same_snap(X, before, bl), "save: %d allocation failures, then success", fails);
        fails = 0; good = 0;
        for (long n = 1; n < 100; n++) {
            dsv4__alloc_fail_after(n);
            dsv4_status st = dsv4_session_checkpoint(X);
            dsv4__alloc_fail_after(0);
            if (st == DSV4_OK) { good = 1; break; }
            fails++;
            size_t nc = 1;
            dsv4_session_checkpoints(X, NULL, 0, &nc);
            if (!CHECK(st == DSV4_ERR_OUT_OF_MEMORY && nc == 0 && same_snap(X, before, bl),
                       "checkpoint, allocation %ld fails", n)) break;
        }
        CHECK(good && fails >= 2, "checkpoint: %d allocation failures, then success", fails);
        dsv4_session_eval(X, tok + 20, 9, 0);
        size_t al = 0;
        uint8_t *at29 = snap(X, &al);
        fails = 0; good = 0;
        for (long n = 1; n < 100; n++) {
            dsv4__alloc_fail_after(n);
            dsv4_status st = dsv4_session_rewind(X, 25, 0);
            dsv4__alloc_fail_after(0);
            if (st == DSV4_OK) { good = 1; break; }
            fails++;
            if (!CHECK(st == DSV4_ERR_OUT_OF_MEMORY && same_snap(X, at29, al), "rewind, allocation %ld fails", n)) break;
        }
        CHECK(good && dsv4_session_position(X) == 25, "rewind: %d allocation failures, then success", fails);
        free(at29);
    }
    printf("  %s numerics %d: %d header fields corrupted, %d flips, %d truncations refused\n", preset, numerics, nf,
           flips, tr);
    free(b);
    free(k.p);
    free(kr.p);
    free(before);
    free(la);
    free(lb);
    dsv4_session_free(A);
    dsv4_session_free(R);
    dsv4_session_free(X);
    dsv4_context_free(c);
}

/* ---- the prefix cache ---------------------------------------------------------------- */

/* ---- checkpoints in the session file (format version 2) ------------------------------ */

/* the offset of section `want` (id) in an uncompressed file, its size in *n */
static size_t section_at(const uint8_t *b, uint32_t want, uint64_t *n)
{
    uint32_t ns;
    memcpy(&ns, b + 60, 4);
    size_t off = DSV4__SFILE_HEADER + (size_t)ns * 32 + 8;
    for (uint32_t i = 0; i < ns; i++) {
        uint32_t id;
        uint64_t st;
        memcpy(&id, b + DSV4__SFILE_HEADER + i * 32, 4);
        memcpy(&st, b + DSV4__SFILE_HEADER + i * 32 + 16, 8);
        if (id == want) { *n = st; return off; }
        off += st;
    }
    *n = 0;
    return 0;
}

/* recompute the checksum of section `id` and of the header */
static void refix_section(uint8_t *b, uint32_t id)
{
    uint32_t ns;
    memcpy(&ns, b + 60, 4);
    uint64_t n = 0;
    size_t off = section_at(b, id, &n);
    for (uint32_t i = 0; off && i < ns; i++) {
        uint32_t x;
        memcpy(&x, b + DSV4__SFILE_HEADER + i * 32, 4);
        if (x != id) continue;
        uint64_t h = dsv4__hash64(b + off, (size_t)n, id);
        memcpy(b + DSV4__SFILE_HEADER + i * 32 + 24, &h, 8);
    }
    refix_header(b);
}

static void ckpt_file_checks(dsv4_model *m, const int32_t *tok)
{
    const int64_t N = 150;
    dsv4_context *c = mkctx(m, 1, 200);
    dsv4_session *A = mksess(c, 1), *R = mksess(c, 1), *B = mksess(c, 1), *small = mksess(c, 1);
    float *la = malloc((size_t)V * 4), *lb = malloc((size_t)V * 4);
    dsv4_session_set_checkpoint_limit(A, 16, 0);
    dsv4_session_set_checkpoint_limit(R, 16, 0);
    /* A: the calls, a checkpoint after every second */
    int64_t a = 0;
    for (int k = 0; a < N; k++) {
        int64_t n = call_size(k);
        if (a + n > N) n = N - a;
        dsv4_session_eval(A, tok + a, (size_t)n, 0);
        a += n;
        if (k % 2 == 1) dsv4_session_checkpoint(A);
    }
    int64_t pa[32], pr[32];
    size_t na = 0, nr = 0;
    dsv4_session_checkpoints(A, pa, 32, &na);
    sink k = { NULL, 0, 0, -1 }, kr = { NULL, 0, 0, -1 }, k0 = { NULL, 0, 0, -1 };
    CHECK(dsv4_session_save(A, sink_write, &k, 0) == DSV4_OK &&
          dsv4_session_save(A, sink_write, &kr, DSV4_SAVE_UNCOMPRESSED) == DSV4_OK &&
          dsv4_session_save(A, sink_write, &k0, DSV4_SAVE_UNCOMPRESSED | DSV4_SAVE_NO_CHECKPOINTS) == DSV4_OK,
          "save with and without checkpoints");
    uint32_t ver = 0, flags = 0;
    memcpy(&ver, k.p + 8, 4);
    memcpy(&flags, k.p + 20, 4);
    CHECK(ver == 2 && (flags & 4) && k0.n < kr.n, "format version 2 with a checkpoint section (%zu bytes raw, %zu "
          "without checkpoints)", kr.n, k0.n);
    CHECK(dsv4_session_restore_buffer(R, k.p, k.n) == DSV4_OK && dsv4_session_checkpoints(R, pr, 32, &nr) == DSV4_OK &&
          nr == na && na >= 5 && !memcmp(pa, pr, na * sizeof *pa), "restored: the same %zu checkpoints", na);
    /* rewind the restored session to positions between and at checkpoints:
     * bit-identical to a session fed the same calls that never went ahead */
    int64_t targets[] = { N - 1, 131, 100, pa[2], pa[2] + 1, 57, 20, 3, 0 };
    int ok = 0, nt = (int)(sizeof targets / sizeof targets[0]);
    for (int i = 0; i < nt; i++) {
        int64_t p = targets[i];
        int r = dsv4_session_restore_buffer(R, kr.p, kr.n) == DSV4_OK && dsv4_session_rewind(R, p, 0) == DSV4_OK;
        dsv4_session_reset(B);
        feed_calls(B, tok, p);
        size_t ln = 0;
        uint8_t *ref = snap(B, &ln);
        r = r && ref && same_snap(R, ref, ln);
        free(ref);
        int sa = last_logits(R, la), sb = last_logits(B, lb);
        r = r && sa == sb && (sa || !memcmp(la, lb, (size_t)V * 4));
        dsv4_session_eval(R, tok + p, 1, 0);
        dsv4_session_eval(B, tok + p, 1, 0);
        last_logits(R, la);
        last_logits(B, lb);
        r = r && !memcmp(la, lb, (size_t)V * 4);
        ok += r;
    }
    CHECK(ok == nt, "save with checkpoints → restore → rewind: %d of %d positions bit-identical", ok, nt);
    /* without checkpoints: none restored (and R's own are replaced) */
    CHECK(dsv4_session_restore_buffer(R, k0.p, k0.n) == DSV4_OK && dsv4_session_checkpoints(R, NULL, 0, &nr) == DSV4_OK &&
          nr == 0, "a file without checkpoints leaves none");
    /* a version 1 file (no checkpoint section) still reads */
    uint8_t *b = malloc(kr.n + 1);
    memcpy(b, k0.p, k0.n);
    b[8] = 1;
    refix_header(b);
    CHECK(dsv4_session_restore_buffer(R, b, k0.n) == DSV4_OK && dsv4_session_position(R) == N,
          "format version 1 read: %s", dsv4_session_last_error(R));
    /* refusals, the session unchanged */
    dsv4_session_restore_buffer(R, kr.p, kr.n);
    dsv4_session_rewind(R, 60, 0); /* (refused() reads at most 64 tokens) */
    size_t bl = 0;
    uint8_t *before = snap(R, &bl);
    dsv4_session_checkpoints(R, NULL, 0, &na);
    memcpy(b, kr.p, kr.n);
    b[8] = 1; /* version 1 with the checkpoint flag */
    refix_header(b);
    CHECK(refused(R, b, kr.n, DSV4_ERR_BAD_FORMAT, before, bl), "version 1 with checkpoints refused");
    memcpy(b, kr.p, kr.n);
    b[8] = 3;
    refix_header(b);
    CHECK(refused(R, b, kr.n, DSV4_ERR_BAD_FORMAT, before, bl) && strstr(dsv4_session_last_error(R), "version 3"),
          "version 3 refused: %s", dsv4_session_last_error(R));
    uint64_t sn = 0;
    size_t so = section_at(kr.p, 5, &sn);
    CHECK(so && sn > 40, "checkpoint section found (%llu bytes)", (unsigned long long)sn);
    struct { size_t at; int64_t v; const char *what; } bad[] = {
        { 0, 0, "count 0" }, { 0, 1000, "count above the limit" }, { 8, N + 1, "position beyond the file's" },
        { 8, -1, "negative position" }, { 16, 2, "unknown checkpoint flag" }, { 24, 5, "image size" },
    };
    for (size_t i = 0; so && i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(b, kr.p, kr.n);
        if (bad[i].at == 0 || bad[i].at == 16) {
            uint32_t v = (uint32_t)bad[i].v;
            memcpy(b + so + bad[i].at, &v, 4);
        } else {
            memcpy(b + so + bad[i].at, &bad[i].v, 8);
        }
        refix_section(b, 5);
        CHECK(refused(R, b, kr.n, bad[i].at == 0 && bad[i].v ? DSV4_ERR_INCOMPATIBLE : DSV4_ERR_BAD_FORMAT, before, bl),
              "checkpoint %s refused, session unchanged: %s", bad[i].what, dsv4_session_last_error(R));
    }
    /* a NaN in a checkpoint's image */
    memcpy(b, kr.p, kr.n);
    float nan = 0.0f / 0.0f;
    memcpy(b + so + 8 + 24 + 4, &nan, 4);
    refix_section(b, 5);
    CHECK(refused(R, b, kr.n, DSV4_ERR_BAD_FORMAT, before, bl), "NaN in a checkpoint refused");
    /* more checkpoints than a session keeps (default 4): refused clearly */
    size_t bl2 = 0;
    uint8_t *before2 = snap(small, &bl2);
    CHECK(refused(small, k.p, k.n, DSV4_ERR_INCOMPATIBLE, before2, bl2), "%zu checkpoints into a session keeping 4: "
          "refused: %s", na, dsv4_session_last_error(small));
    dsv4_session_set_checkpoint_limit(small, 16, 0);
    CHECK(dsv4_session_restore_buffer(small, k.p, k.n) == DSV4_OK, "accepted after raising the limit");
    free(before2);
    /* after every refusal: R still holds its checkpoints */
    CHECK(dsv4_session_checkpoints(R, NULL, 0, &nr) == DSV4_OK && nr == na, "checkpoints kept through refusals");
    free(before);
    free(b);
    free(k.p);
    free(kr.p);
    free(k0.p);
    free(la);
    free(lb);
    dsv4_session_free(A);
    dsv4_session_free(R);
    dsv4_session_free(B);
    dsv4_session_free(small);
    dsv4_context_free(c);
}

/* the directory's disk budget: least recently used files go, by the times
 * the cache records; caches (processes) sharing it; half-written files */
static void disk_checks(dsv4_session *s1, dsv4_session *s2, const int32_t *tok)
{
    char *dir = test_tmpdir("pcache-disk");
    char cmd[4400];
    size_t got = 0;
    dsv4_prefix_cache *e1 = NULL, *e2 = NULL, *e3 = NULL;
    /* memory budget 1 byte: every entry lives in its file only */
    CHECK(dsv4_prefix_cache_create(1, dir, &e1, NULL) == DSV4_OK, "cache on %s", dir);
    CHECK(dsv4_prefix_cache_set_disk_limit(e1, -1) == DSV4_ERR_INVALID_ARGUMENT &&
          dsv4_prefix_cache_set_disk_limit(NULL, 0) == DSV4_ERR_INVALID_ARGUMENT, "bad disk limits refused");
    CHECK(dsv4_prefix_cache_stat(e1, DSV4_CACHE_DISK_BYTES) == 0, "empty directory: 0 bytes");
    for (int p = 30; p <= 40; p += 10) {
        dsv4_session_reset(s1);
        feed_calls(s1, tok, p);
        CHECK(dsv4_prefix_cache_store(e1, s1) == DSV4_OK, "store %d", p);
    }
    int64_t two = dsv4_prefix_cache_stat(e1, DSV4_CACHE_DISK_BYTES), limit = two + two * 3 / 10;
    CHECK(two > 0 && dsv4_prefix_cache_set_disk_limit(e1, limit) == DSV4_OK &&
          dsv4_prefix_cache_stat(e1, DSV4_CACHE_DISK_EVICTIONS) == 0, "two files, %lld bytes, within %lld",
          (long long)two, (long long)limit);
    /* use the entry at 30, then store one at 50: the one at 40 is the least recently used */
    dsv4_session_reset(s2);
    CHECK(dsv4_prefix_cache_restore(e1, s2, tok, 35, 0, &got) == DSV4_OK && got == 30, "hit at 30 (%zu)", got);
    dsv4_session_reset(s1);
    feed_calls(s1, tok, 50);
    CHECK(dsv4_prefix_cache_store(e1, s1) == DSV4_OK, "store 50");
    int64_t now = dsv4_prefix_cache_stat(e1, DSV4_CACHE_DISK_BYTES);
    CHECK(dsv4_prefix_cache_stat(e1, DSV4_CACHE_DISK_EVICTIONS) == 1 && now <= limit && now > two / 2,
          "over the budget: one file removed (%lld), %lld bytes left", (long long)dsv4_prefix_cache_stat(e1, DSV4_CACHE_DISK_EVICTIONS),
          (long long)now);
    /* another cache (as another process would) sees 30 and 50, not 40 */
    CHECK(dsv4_prefix_cache_create(64 << 20, dir, &e2, NULL) == DSV4_OK &&
          dsv4_prefix_cache_stat(e2, DSV4_CACHE_ENTRIES) == 2, "a second cache indexes the 2 files left");
    dsv4_session_reset(s2);
    CHECK(dsv4_prefix_cache_restore(e2, s2, tok, 45, 0, &got) == DSV4_OK && got == 30, "least recently used went: "
          "40 is gone, 30 is there (%zu)", got);
    CHECK(dsv4_prefix_cache_restore(e2, s2, tok, 80, 0, &got) == DSV4_OK && got == 50, "the newest is there (%zu)", got);
    /* a half-written file under an entry's name (not by the cache, which
     * renames): the next best entry is restored, the bad file dropped */
    snprintf(cmd, sizeof cmd, "cd '%s' && f=$(ls -S *.dsv4s | head -n 1) && head -c 3000 \"$f\" > 0000half.dsv4s && "
             "rm \"$f\"", dir);
    CHECK(system(cmd) == 0, "half-written file made");
    CHECK(dsv4_prefix_cache_create(1 << 20, dir, &e3, NULL) == DSV4_OK, "third cache");
    dsv4_session_reset(s2);
    int64_t e3n = dsv4_prefix_cache_stat(e3, DSV4_CACHE_ENTRIES);
    CHECK(dsv4_prefix_cache_restore(e3, s2, tok, 80, 0, &got) == DSV4_OK && got == 30 &&
          dsv4_prefix_cache_stat(e3, DSV4_CACHE_ENTRIES) == 1, "half-written file (indexed: %lld): skipped, 30 "
          "restored (%zu)", (long long)e3n, got);
    /* e1's file of 50 vanished (removed above, as by another process): a miss down to 30, no crash */
    dsv4_session_reset(s2);
    CHECK(dsv4_prefix_cache_restore(e1, s2, tok, 80, 0, &got) == DSV4_OK && got == 30, "a vanished file: the next "
          "best (%zu)", got);
    /* temporary files: a live writer's stays, a dead one's (over an hour old) goes */
    snprintf(cmd, sizeof cmd, "cd '%s' && echo x > a.dsv4s.1.0.tmp && echo x > b.dsv4s.2.0.tmp && "
             "touch -d '2 hours ago' b.dsv4s.2.0.tmp", dir);
    CHECK(system(cmd) == 0, "temporary files made");
    dsv4_prefix_cache_set_disk_limit(e2, 0);
    snprintf(cmd, sizeof cmd, "cd '%s' && test -f a.dsv4s.1.0.tmp && test ! -e b.dsv4s.2.0.tmp", dir);
    CHECK(system(cmd) == 0, "a fresh temporary file kept, an old one removed");
    /* a tiny budget from another cache empties the directory under e1 */
    CHECK(dsv4_prefix_cache_set_disk_limit(e2, 1) == DSV4_OK && dsv4_prefix_cache_stat(e2, DSV4_CACHE_DISK_BYTES) == 0,
          "budget 1 byte: every entry file removed");
    dsv4_session_reset(s2);
    CHECK(dsv4_prefix_cache_restore(e1, s2, tok, 80, 0, &got) == DSV4_OK && got == 0 && dsv4_session_position(s2) == 0,
          "every file gone under the cache: a clean miss");
    dsv4_session_reset(s1);
    feed_calls(s1, tok, 20);
    dsv4_status sst = dsv4_prefix_cache_store(e2, s1);
    int64_t db = dsv4_prefix_cache_stat(e2, DSV4_CACHE_DISK_BYTES);
    dsv4_session_reset(s2);
    dsv4_status rst = dsv4_prefix_cache_restore(e2, s2, tok, 25, 0, &got);
    CHECK(sst == DSV4_OK && db == 0 && rst == DSV4_OK && got == 20,
          "a file alone above the budget goes too; the entry stays in memory (store %d, %lld bytes on disk, %zu "
          "restored)", sst, (long long)db, got);
    dsv4_prefix_cache_free(e1);
    dsv4_prefix_cache_free(e2);
    dsv4_prefix_cache_free(e3);
    test_rmtree(dir);
    free(dir);
}

static void cache_checks(dsv4_model *m, const int32_t *tok)
{
    dsv4_context *c = mkctx(m, DSV4_NUMERICS_REFERENCE, 256), *c2 = mkctx(m, DSV4_NUMERICS_REFERENCE, 128),
                 *cf = mkctx(m, DSV4_NUMERICS_FLOAT, 256);
    dsv4_session *s1 = mksess(c, 0), *s2 = mksess(c, 0), *s3 = mksess(c2, 0), *sf = mksess(cf, 0);
    dsv4_prefix_cache *pc = NULL;
    float *la = malloc((size_t)V * 4), *lb = malloc((size_t)V * 4);
    size_t got = 99, ln = 0;
    CHECK(dsv4_prefix_cache_create(-1, NULL, &pc, NULL) == DSV4_ERR_INVALID_ARGUMENT && !pc, "negative budget refused");
    CHECK(dsv4_prefix_cache_create(64 << 20, NULL, &pc, NULL) == DSV4_OK, "cache");
    feed_calls(s1, tok, 50);
    CHECK(dsv4_prefix_cache_store(pc, s1) == DSV4_OK, "store at 50");
    CHECK(dsv4_prefix_cache_store(pc, s1) == DSV4_OK && dsv4_prefix_cache_stat(pc, DSV4_CACHE_ENTRIES) == 1,
          "storing the same state again adds nothing");
    uint8_t *at50 = snap(s1, &ln);
    /* another session of the context */
    CHECK(dsv4_prefix_cache_restore(pc, s2, tok, 80, 0, &got) == DSV4_OK && got == 50, "hit across sessions: %zu", got);
    CHECK(same_snap(s2, at50, ln), "the restored session is the stored one, byte for byte");
    dsv4_session_eval(s1, tok + 50, 30, 0);
    dsv4_session_eval(s2, tok + 50, 30, 0);
    last_logits(s1, la);
    last_logits(s2, lb);
    CHECK(!memcmp(la, lb, (size_t)V * 4), "continuing from the cache: bit-identical logits");
    /* another context of the model; other numerics miss */
    CHECK(dsv4_prefix_cache_restore(pc, s3, tok, 80, 0, &got) == DSV4_OK && got == 50, "hit across contexts");
    dsv4_session_eval(s3, tok + 50, 30, 0);
    last_logits(s3, lb);
    CHECK(!memcmp(la, lb, (size_t)V * 4), "continuing in another context: bit-identical logits");
    CHECK(dsv4_prefix_cache_restore(pc, sf, tok, 80, 0, &got) == DSV4_OK && got == 0 &&
          dsv4_session_position(sf) == 0, "other numerics: miss, session unchanged");
    int32_t other[60];
    memcpy(other, tok, sizeof other);
    other[10] ^= 1;
    CHECK(dsv4_prefix_cache_restore(pc, sf, other, 60, 0, &got) == DSV4_OK && got == 0, "another prefix: miss");
    CHECK(dsv4_prefix_cache_restore(pc, s2, tok, 80, 50, &got) == DSV4_OK && got == 0 &&
          dsv4_session_position(s2) == 80, "nothing longer than at_least: the session keeps its state");
    CHECK(dsv4_prefix_cache_restore(pc, s2, tok, 50, 0, &got) == DSV4_OK && got == 50,
          "a whole-prompt hit when the entry has its logits");
    CHECK(dsv4_prefix_cache_stat(pc, DSV4_CACHE_HITS) == 3 && dsv4_prefix_cache_stat(pc, DSV4_CACHE_MISSES) == 3,
          "hits %lld misses %lld", (long long)dsv4_prefix_cache_stat(pc, DSV4_CACHE_HITS),
          (long long)dsv4_prefix_cache_stat(pc, DSV4_CACHE_MISSES));
    /* the session holds a reference: the cache outlives the caller's */
    CHECK(dsv4_session_set_prefix_cache(s2, pc) == DSV4_OK && dsv4_session_prefix_cache(s2) == pc, "attach");
    dsv4_prefix_cache_free(pc);
    CHECK(dsv4_prefix_cache_stat(dsv4_session_prefix_cache(s2), DSV4_CACHE_ENTRIES) == 1, "alive through the session");
    dsv4_session_set_prefix_cache(s2, NULL);

    /* eviction under a tiny budget: room for one state */
    dsv4_prefix_cache *tiny = NULL;
    dsv4_prefix_cache_create((int64_t)ln + (int64_t)ln / 2, NULL, &tiny, NULL);
    int stored = 0;
    for (int p = 30; p <= 50; p += 10) {
        dsv4_session_reset(s1);
        feed_calls(s1, tok, p);
        stored += dsv4_prefix_cache_store(tiny, s1) == DSV4_OK;
    }
    CHECK(stored == 3 && dsv4_prefix_cache_stat(tiny, DSV4_CACHE_ENTRIES) == 1 &&
          dsv4_prefix_cache_stat(tiny, DSV4_CACHE_EVICTIONS) == 2, "tiny budget: %lld entry, %lld evicted",
          (long long)dsv4_prefix_cache_stat(tiny, DSV4_CACHE_ENTRIES),
          (long long)dsv4_prefix_cache_stat(tiny, DSV4_CACHE_EVICTIONS));
    CHECK(dsv4_prefix_cache_restore(tiny, s2, tok, 80, 0, &got) == DSV4_OK && got == 50, "the newest survives");
    dsv4_prefix_cache_free(tiny);
    dsv4_prefix_cache_create(1000, NULL, &tiny, NULL);
    CHECK(dsv4_prefix_cache_store(tiny, s1) == DSV4_ERR_NOT_AVAILABLE, "a state above the budget is refused");
    dsv4_prefix_cache_free(tiny);

    /* a directory: entries survive the cache object (a new process sees the same files) */
    char *dir = test_tmpdir("pcache");
    dsv4_prefix_cache *d1 = NULL, *d2 = NULL;
    CHECK(dsv4_prefix_cache_create(0, dir, &d1, NULL) == DSV4_OK, "cache on %s", dir);
    dsv4_session_reset(s1);
    feed_calls(s1, tok, 50);
    CHECK(dsv4_prefix_cache_store(d1, s1) == DSV4_OK, "store to the directory: %s", dsv4_session_last_error(s1));
    dsv4_prefix_cache_free(d1);
    CHECK(dsv4_prefix_cache_create(1 << 20, dir, &d2, NULL) == DSV4_OK &&
          dsv4_prefix_cache_stat(d2, DSV4_CACHE_ENTRIES) == 1, "a new cache on the directory indexes the entry");
    dsv4_session_reset(s2);
    CHECK(dsv4_prefix_cache_restore(d2, s2, tok, 80, 0, &got) == DSV4_OK && got == 50 && same_snap(s2, at50, ln),
          "restored from the file, byte for byte");
    dsv4_prefix_cache_free(d2);
    /* a corrupted file is skipped */
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "for f in '%s'/*.dsv4s; do printf 'XXXX' | dd of=\"$f\" bs=1 seek=200 conv=notrunc 2>/dev/null; done", dir);
    CHECK(system(cmd) == 0, "corrupt the file");
    dsv4_prefix_cache_create(1 << 20, dir, &d2, NULL);
    dsv4_session_reset(s2);
    CHECK(dsv4_prefix_cache_restore(d2, s2, tok, 80, 0, &got) == DSV4_OK && got == 0 && dsv4_session_position(s2) == 0 &&
          dsv4_prefix_cache_stat(d2, DSV4_CACHE_ENTRIES) == 0, "a corrupt file: miss, dropped from the index");
    dsv4_prefix_cache_free(d2);
    test_rmtree(dir);
    free(dir);
    disk_checks(s1, s2, tok);
    free(at50);
    free(la);
    free(lb);
    dsv4_session_free(s1); dsv4_session_free(s2); dsv4_session_free(s3); dsv4_session_free(sf);
    dsv4_context_free(c); dsv4_context_free(c2); dsv4_context_free(cf);
}

int main(int argc, char **argv)
{
    full = argc > 1 && !strcmp(argv[1], "full");
    const char *presets[] = { "tiny-a", "tiny-b" };
    dsv4_model *m[2] = { NULL, NULL };
    for (int i = 0; i < 2; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/golden/%s/ckpt", test_shared_dir(), presets[i]);
        char *err = NULL;
        CHECK(dsv4_model_load(dir, NULL, &m[i], &err) == DSV4_OK, "load %s: %s", dir, err ? err : "");
        dsv4_free(err);
    }
    if (!m[0] || !m[1]) return test_summary();
    CHECK(dsv4_session_checkpoint(NULL) == DSV4_ERR_INVALID_ARGUMENT, "checkpoint NULL");
    CHECK(dsv4_session_restore_buffer(NULL, "", 0) == DSV4_ERR_INVALID_ARGUMENT, "restore NULL");
    for (int i = 0; i < (full ? 2 : 1); i++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/golden/%s/long/tokens.json", test_shared_dir(), presets[i]);
        size_t n = 0;
        int32_t *tok = load_tokens(path, &n);
        if (!CHECK(tok && n >= 200, "%s: tokens", path)) { free(tok); continue; }
        dsv4_model_info *info = NULL;
        dsv4_model_get_info(m[i], &info);
        dsv4_model_info_get_i64(info, DSV4_INFO_VOCAB_SIZE, &V);
        dsv4_model_info_free(info);
        if (i == 0) limit_checks(m[i], tok);
        if (i == 0) cache_checks(m[i], tok);
        if (i == 0) ckpt_file_checks(m[i], tok);
        for (int num = 1; num <= 2; num++) {
            if (full || num == 1) rewind_checks(m[i], presets[i], num, tok, (int64_t)n, full ? 1 : test_reps(5, 20));
            if (full || num == 2) save_checks(m[i], m[1 - i], presets[i], num, tok, (int64_t)n);
        }
        free(tok);
    }
    dsv4_model_free(m[0]);
    dsv4_model_free(m[1]);
    return test_summary();
}
