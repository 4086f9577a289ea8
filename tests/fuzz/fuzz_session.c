/*
 * tests/fuzz/fuzz_session.c — the session file reader (lib/state/sfile.c,
 * docs/sessions.md). Byte 0 bit 0: restore the rest as is; set: first
 * rewrite its header checksum and every section checksum (sections laid out
 * by their declared stored sizes) so the fuzzer gets past them. The session
 * (golden tiny-a, MTP on, 64-token context, at position 5, checkpoints at
 * 3 and 5; the comparison below includes them) must either
 * accept the input — then it evaluates a token and saves again — or refuse
 * it with a status and a message, byte-for-byte unchanged.
 *
 * "Unchanged" is checked on the session itself, against copies taken once
 * at setup: position, token history, call boundaries (the whole buffer),
 * the state image (written into a buffer of this process), the last logits
 * and every checkpoint (position, image, logits) — everything a save
 * writes. Saving the session for each refused input to compare the files
 * took over half the time (two large allocations per save, each a fresh
 * mapping under ASan); every 64th refusal still compares the saved file
 * too. DSV4_FUZZ_VERBOSE=1: print at exit how many inputs were accepted.
 */
#define DSV4_ENABLE_EXPERIMENTAL
#include "fuzz_common.h"
#include "state/sfile.h"
#include "api/api_int.h"

static dsv4_model *model;
static dsv4_context *ctx;
static dsv4_session *sess;
static uint8_t *base;
static size_t base_len;

/* the base session's parts, copied at setup (see above) */
static struct {
    int64_t pos, img_bytes, vocab, n_cuts;
    int32_t *hist;
    uint8_t *cuts, *img, *now; /* now: room for the image written at each check */
    float *logits;             /* NULL: none */
    int n_ck;
    dsv4__ckpt *ck;            /* deep copies */
} ref;

static const float *last_logits(const dsv4_session *s)
{
    int64_t pos = dsv4__state_pos(s->st);
    if (s->lg_n > 0 && s->lg_first + s->lg_n == pos) return s->logits + (s->lg_n - 1) * ref.vocab;
    return NULL;
}

static void *dup_bytes(const void *p, size_t n)
{
    void *q = malloc(n ? n : 1);
    FUZZ_ASSERT(q, "out of memory");
    if (n) memcpy(q, p, n);
    return q;
}

static void take_ref(void)
{
    ref.vocab = sess->ctx->model->ck->cfg.vocab_size;
    ref.pos = dsv4__state_pos(sess->st);
    ref.n_cuts = sess->ctx->n_ctx / 8 + 1;
    ref.hist = dup_bytes(sess->hist, (size_t)ref.pos * sizeof *ref.hist);
    ref.cuts = dup_bytes(sess->cuts, (size_t)ref.n_cuts);
    ref.img_bytes = dsv4__state_image_bytes(sess->ctx->rt, sess->has_mtp, ref.pos);
    ref.img = malloc((size_t)ref.img_bytes);
    ref.now = malloc((size_t)ref.img_bytes);
    FUZZ_ASSERT(ref.img && ref.now, "out of memory");
    dsv4__state_image_write(sess->st, ref.img);
    const float *lg = last_logits(sess);
    ref.logits = lg ? dup_bytes(lg, (size_t)ref.vocab * 4) : NULL;
    ref.n_ck = sess->n_ck;
    ref.ck = calloc((size_t)(ref.n_ck ? ref.n_ck : 1), sizeof *ref.ck);
    FUZZ_ASSERT(ref.ck, "out of memory");
    for (int i = 0; i < ref.n_ck; i++) {
        const dsv4__ckpt *c = &sess->ck[i];
        ref.ck[i].pos = c->pos;
        ref.ck[i].img_bytes = c->img_bytes;
        ref.ck[i].img = dup_bytes(c->img, (size_t)c->img_bytes);
        ref.ck[i].logits = c->logits ? dup_bytes(c->logits, (size_t)ref.vocab * 4) : NULL;
    }
    FUZZ_ASSERT(ref.pos == 5 && ref.n_ck == 2, "base session at %lld with %d checkpoints", (long long)ref.pos,
                ref.n_ck);
}

/* NULL when the session is the base session, else what differs */
static const char *differs(void)
{
    const dsv4_session *s = sess;
    if (dsv4__state_pos(s->st) != ref.pos) return "position";
    if (memcmp(s->hist, ref.hist, (size_t)ref.pos * sizeof *ref.hist)) return "token history";
    if (memcmp(s->cuts, ref.cuts, (size_t)ref.n_cuts)) return "call boundaries";
    dsv4__state_image_write(s->st, ref.now);
    if (memcmp(ref.now, ref.img, (size_t)ref.img_bytes)) return "state image";
    const float *lg = last_logits(s);
    if (!lg != !ref.logits || (lg && memcmp(lg, ref.logits, (size_t)ref.vocab * 4))) return "last logits";
    if (s->n_ck != ref.n_ck) return "number of checkpoints";
    for (int i = 0; i < ref.n_ck; i++) {
        const dsv4__ckpt *a = &s->ck[i], *b = &ref.ck[i];
        if (a->pos != b->pos || a->img_bytes != b->img_bytes || memcmp(a->img, b->img, (size_t)b->img_bytes) ||
            !a->logits != !b->logits || (a->logits && memcmp(a->logits, b->logits, (size_t)ref.vocab * 4)))
            return "a checkpoint";
    }
    return NULL;
}

/* the session saved (uncompressed) into a buffer of this process: one
 * save when it fits (it does after the first), two otherwise */
static uint8_t *snap_buf;
static size_t snap_cap;

static const uint8_t *snap(size_t *n)
{
    dsv4_status st = dsv4_session_save_buffer(sess, snap_buf, snap_cap, n, DSV4_SAVE_UNCOMPRESSED);
    if (st == DSV4_ERR_BUFFER_TOO_SMALL) {
        free(snap_buf);
        snap_cap = *n + *n / 2;
        snap_buf = malloc(snap_cap);
        FUZZ_ASSERT(snap_buf, "out of memory");
        st = dsv4_session_save_buffer(sess, snap_buf, snap_cap, n, DSV4_SAVE_UNCOMPRESSED);
    }
    FUZZ_ASSERT(st == DSV4_OK, "save: %d", st);
    return snap_buf;
}

static void setup(void)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/golden/tiny-a/ckpt", DSV4_FUZZ_SHARED_DIR);
    dsv4_options *o = NULL;
    dsv4_options_create(&o);
    dsv4_options_set_i64(o, DSV4_OPT_THREADS, 1);
    dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, 64);
    FUZZ_ASSERT(dsv4_model_load(dir, NULL, &model, NULL) == DSV4_OK, "load %s", dir);
    FUZZ_ASSERT(dsv4_context_create(model, o, &ctx, NULL) == DSV4_OK, "context");
    dsv4_options_set_i64(o, DSV4_OPT_MTP, 1);
    FUZZ_ASSERT(dsv4_session_create(ctx, o, &sess, NULL) == DSV4_OK, "session");
    dsv4_options_free(o);
    /* at position 5 with checkpoints at 3 and 5 (format version 2's section) */
    static const int32_t t[5] = { 1, 7, 300, 42, 9 };
    dsv4_session_eval(sess, t, 3, 0);
    dsv4_session_checkpoint(sess);
    dsv4_session_eval(sess, t + 3, 2, 0);
    dsv4_session_checkpoint(sess);
    const uint8_t *b = snap(&base_len);
    base = malloc(base_len);
    FUZZ_ASSERT(base, "out of memory");
    memcpy(base, b, base_len);
    take_ref();
}

static void fix_sums(uint8_t *b, size_t n)
{
    if (n < DSV4__SFILE_HEADER) return;
    uint32_t ns;
    memcpy(&ns, b + 60, 4);
    if (ns > DSV4__SFILE_MAX_SECTIONS) return;
    size_t at = DSV4__SFILE_HEADER + (size_t)ns * 32;
    if (at + 8 > n) return;
    size_t off = at + 8;
    for (uint32_t i = 0; i < ns; i++) {
        uint8_t *t = b + DSV4__SFILE_HEADER + i * 32;
        uint32_t id;
        uint64_t stored;
        memcpy(&id, t, 4);
        memcpy(&stored, t + 16, 8);
        if (stored > n - off) break;
        uint64_t h = dsv4__hash64(b + off, (size_t)stored, id);
        memcpy(t + 24, &h, 8);
        off += (size_t)stored;
    }
    uint64_t h = dsv4__hash64(b, at, 0);
    memcpy(b + at, &h, 8);
}

static unsigned long accepted, inputs;

static void report(void)
{
    if (getenv("DSV4_FUZZ_VERBOSE")) fprintf(stderr, "fuzz_session: %lu of %lu inputs accepted\n", accepted, inputs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!model) {
        setup();
        atexit(report);
    }
    inputs++;
    if (size < 1) return 0;
    size_t n = size - 1;
    uint8_t *in = malloc(n ? n : 1);
    memcpy(in, data + 1, n);
    if (data[0] & 1) fix_sums(in, n);
    dsv4_status st = dsv4_session_restore_buffer(sess, in, n);
    if (st == DSV4_OK) {
        int32_t t = 3;
        if (dsv4_session_position(sess) < 64)
            FUZZ_ASSERT(dsv4_session_eval(sess, &t, 1, 0) == DSV4_OK, "eval after restore");
        size_t len = 0;
        snap(&len);
        /* back to the base state for the next input */
        FUZZ_ASSERT(dsv4_session_restore_buffer(sess, base, base_len) == DSV4_OK, "restore base");
        const char *d = differs();
        FUZZ_ASSERT(!d, "the base file restored differs from the base session: %s", d);
        accepted++;
    } else {
        FUZZ_ASSERT(dsv4_session_last_error(sess)[0] != 0, "status %d without a message", st);
        const char *d = differs();
        FUZZ_ASSERT(!d, "refused input (status %d) changed the session: %s", st, d);
        static unsigned refusals;
        if (refusals++ % 64 == 0) {
            size_t len = 0;
            const uint8_t *now = snap(&len);
            FUZZ_ASSERT(len == base_len && !memcmp(now, base, len), "refused input (status %d) changed the saved "
                        "session", st);
        }
    }
    free(in);
    return 0;
}
