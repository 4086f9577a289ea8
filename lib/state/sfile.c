/*
 * lib/state/sfile.c — the session file format (sfile.h, docs/sessions.md).
 *
 * Layout (little-endian):
 *   header, 96 bytes: magic "DSV4SESS", u32 format version (2; 1 is read
 *   too), u32 header bytes (96), u32 library version, u32 flags (1 MTP,
 *   2 logits, 4 checkpoints: version 2), u64 model
 *   fingerprint, i32 numerics, i32 revision, i64 context length, i64
 *   position, i32 vocab, u32 section count, 32 bytes reserved (zero);
 *   section table: per section u32 id, u32 codec (0 raw, 1 zstd), u64 raw
 *   bytes, u64 stored bytes, u64 checksum of the stored bytes;
 *   u64 checksum of the header and the table;
 *   the sections' stored bytes, in table order.
 * Sections, in this order: 1 tokens (i32 each), 2 call boundaries (a bit per
 * position), 3 the state image (lib/graph/kv.c), 4 the logits of position
 * pos-1 (f32, only with flag 2), 5 the checkpoints (only with flag 4): u32
 * count, u32 zero, then per checkpoint, ascending positions at most the
 * file's: i64 position, u32 flags (1: logits), u32 zero, i64 image bytes,
 * the state image at that position, the logits of the position before it
 * (f32, with flag 1). Version 1 is version 2 without flag 4.
 */
#include <math.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>
#include "state/sfile.h"

enum { SEC_TOKENS = 1, SEC_CUTS = 2, SEC_STATE = 3, SEC_LOGITS = 4, SEC_CKPTS = 5 };
enum { CODEC_RAW = 0, CODEC_ZSTD = 1 };
enum { FLAG_MTP = 1, FLAG_LOGITS = 2, FLAG_CKPTS = 4 };
#define CK_HEAD 24 /* a checkpoint's fields before its image */
#define ZSTD_LEVEL 1

/* ---- checksum and fingerprint ------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

uint64_t dsv4__hash64(const void *p, size_t n, uint64_t seed)
{
    const uint8_t *b = p;
    uint64_t h0 = seed ^ 0x9e3779b97f4a7c15ull, h1 = ~seed + (uint64_t)n, h2 = 0x2545f4914f6cdd1dull, h3 = n;
    size_t i = 0;
    /* four independent lanes: about a byte per cycle per lane */
    for (; i + 32 <= n; i += 32) {
        uint64_t w[4];
        memcpy(w, b + i, 32);
        h0 = (h0 ^ w[0]) * 0x9e3779b97f4a7c15ull; h0 ^= h0 >> 29;
        h1 = (h1 ^ w[1]) * 0xbf58476d1ce4e5b9ull; h1 ^= h1 >> 31;
        h2 = (h2 ^ w[2]) * 0x94d049bb133111ebull; h2 ^= h2 >> 30;
        h3 = (h3 ^ w[3]) * 0xd6e8feb86659fd93ull; h3 ^= h3 >> 32;
    }
    uint64_t h = mix64(h0) ^ mix64(h1 + 1) ^ mix64(h2 + 2) ^ mix64(h3 + 3);
    for (; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return mix64(h ^ n);
}

typedef struct hacc { uint64_t h; } hacc;
static void hadd(hacc *a, const void *p, size_t n) { a->h = dsv4__hash64(p, n, a->h); }
static void hadd_i64(hacc *a, int64_t v) { hadd(a, &v, 8); }
static void hadd_f64(hacc *a, double v) { hadd(a, &v, 8); }

uint64_t dsv4__model_fingerprint(const dsv4__checkpoint *ck)
{
    const dsv4__config *c = &ck->cfg;
    hacc a = { 0x64737634u };
    int64_t ints[] = { c->vocab_size, c->dim, c->n_layers, c->n_heads, c->head_dim, c->rope_head_dim,
                       c->q_lora_rank, c->o_groups, c->o_lora_rank, c->window, c->index_n_heads, c->index_head_dim,
                       c->index_topk, c->n_routed_experts, c->n_shared_experts, c->n_active_experts,
                       c->moe_inter_dim, c->n_hash_layers, c->hc_mult, c->hc_sinkhorn_iters, c->bos_id, c->eos_id,
                       c->original_seq_len, c->max_position, c->expert_fp8, c->scale_f32, c->variant };
    for (size_t i = 0; i < DSV4__ARRAY_LEN(ints); i++) hadd_i64(&a, ints[i]);
    for (int l = 0; l < c->n_layers; l++) hadd_i64(&a, c->compress_ratios[l]);
    double dbl[] = { c->rope_theta, c->compress_rope_theta, c->rope_factor, c->beta_fast, c->beta_slow, c->norm_eps,
                     c->hc_eps, c->route_scale, c->swiglu_limit };
    for (size_t i = 0; i < DSV4__ARRAY_LEN(dbl); i++) hadd_f64(&a, dbl[i]);
    for (int64_t i = 0; i < ck->n_tensors; i++) {
        const dsv4__tensor *t = &ck->tensors[i];
        if (!strncmp(t->name, "mtp.", 4)) continue;
        hadd(&a, t->name, strlen(t->name));
        hadd_i64(&a, t->dtype);
        hadd_i64(&a, t->ndim);
        for (int d = 0; d < t->ndim && d < 4; d++) hadd_i64(&a, t->shape[d]);
        hadd_i64(&a, (int64_t)t->nbytes);
        size_t k = t->nbytes < 64 ? (size_t)t->nbytes : 64;
        if (t->data && k) {
            hadd(&a, t->data, k);
            hadd(&a, t->data + t->nbytes - k, k);
        }
    }
    return a.h ? a.h : 1;
}

/* ---- little-endian fields ---------------------------------------------- */

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

typedef struct section {
    uint32_t id, codec;
    uint64_t raw, stored, sum;
    const uint8_t *data;    /* write: the raw bytes */
    uint8_t *buf;           /* write: compressed; read: stored bytes */
} section;

/* ---- writing ----------------------------------------------------------- */

dsv4_status dsv4__sfile_write(const dsv4__sfile_meta *m, const dsv4__sfile_data *d, int compress,
                              dsv4_write_fn fn, void *user, dsv4__err *e)
{
    section sec[5];
    int ns = 0;
    uint8_t *ck_raw = NULL;
    /* tokens and boundaries as stored little-endian (the library runs on x86-64 only) */
    sec[ns++] = (section){ SEC_TOKENS, 0, (uint64_t)d->pos * 4, 0, 0, (const uint8_t *)d->tokens, NULL };
    sec[ns++] = (section){ SEC_CUTS, 0, (uint64_t)(d->pos + 7) / 8, 0, 0, d->cuts, NULL };
    sec[ns++] = (section){ SEC_STATE, 0, (uint64_t)d->img_bytes, 0, 0, d->img, NULL };
    if (d->logits) sec[ns++] = (section){ SEC_LOGITS, 0, (uint64_t)m->vocab * 4, 0, 0, (const uint8_t *)d->logits, NULL };
    dsv4_status st = DSV4_OK;
    if (d->n_ck > 0) {
        /* the checkpoints laid out in one buffer */
        uint64_t n = 8;
        for (int32_t i = 0; i < d->n_ck; i++)
            n += CK_HEAD + (uint64_t)d->ck[i].img_bytes + (d->ck[i].logits ? (uint64_t)m->vocab * 4 : 0);
        ck_raw = dsv4__malloc((size_t)n);
        if (!ck_raw) return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory for the checkpoints");
        uint8_t *p = ck_raw;
        put32(p, (uint32_t)d->n_ck);
        put32(p + 4, 0);
        p += 8;
        for (int32_t i = 0; i < d->n_ck; i++) {
            const dsv4__sfile_ckpt *c = &d->ck[i];
            put64(p, (uint64_t)c->pos);
            put32(p + 8, c->logits ? 1u : 0u);
            put32(p + 12, 0);
            put64(p + 16, (uint64_t)c->img_bytes);
            p += CK_HEAD;
            if (c->img_bytes) memcpy(p, c->img, (size_t)c->img_bytes);
            p += c->img_bytes;
            if (c->logits) {
                memcpy(p, c->logits, (size_t)m->vocab * 4);
                p += (size_t)m->vocab * 4;
            }
        }
        sec[ns++] = (section){ SEC_CKPTS, 0, n, 0, 0, ck_raw, NULL };
    }
    ZSTD_CCtx *cz = NULL;
    uint8_t *last_cuts = NULL;
    if (compress) {
        cz = ZSTD_createCCtx();
        if (!cz) { st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory for the compressor"); goto done; }
        ZSTD_CCtx_setParameter(cz, ZSTD_c_compressionLevel, ZSTD_LEVEL);
        ZSTD_CCtx_setParameter(cz, ZSTD_c_checksumFlag, 1);
    }
    /* the boundaries' last byte without bits at or above pos */
    if (d->pos % 8) {
        last_cuts = dsv4__malloc((size_t)sec[1].raw);
        if (!last_cuts) { st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory"); goto done; }
        memcpy(last_cuts, d->cuts, (size_t)sec[1].raw);
        last_cuts[sec[1].raw - 1] &= (uint8_t)((1u << (d->pos % 8)) - 1);
        sec[1].data = last_cuts;
    }
    for (int i = 0; i < ns; i++) {
        section *s = &sec[i];
        s->codec = CODEC_RAW;
        s->stored = s->raw;
        if (compress && s->raw > 0) {
            size_t bound = ZSTD_compressBound((size_t)s->raw);
            s->buf = dsv4__malloc(bound);
            if (!s->buf) { st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory for a compressed section"); goto done; }
            size_t z = ZSTD_compress2(cz, s->buf, bound, s->data, (size_t)s->raw);
            if (ZSTD_isError(z)) {
                st = dsv4__fail(e, ZSTD_getErrorCode(z) == ZSTD_error_memory_allocation ? DSV4_ERR_OUT_OF_MEMORY
                                : DSV4_ERR_INTERNAL, "zstd: %s", ZSTD_getErrorName(z));
                goto done;
            }
            s->codec = CODEC_ZSTD;
            s->stored = z;
        }
        s->sum = dsv4__hash64(s->buf ? s->buf : s->data, (size_t)s->stored, s->id);
    }
    uint8_t head[DSV4__SFILE_HEADER + DSV4__SFILE_MAX_SECTIONS * 32 + 8];
    memset(head, 0, sizeof head);
    memcpy(head, DSV4__SFILE_MAGIC, 8);
    put32(head + 8, DSV4__SFILE_VERSION);
    put32(head + 12, DSV4__SFILE_HEADER);
    put32(head + 16, m->lib_version);
    put32(head + 20, (m->mtp ? FLAG_MTP : 0) | (d->logits ? FLAG_LOGITS : 0) | (d->n_ck > 0 ? FLAG_CKPTS : 0));
    put64(head + 24, m->fingerprint);
    put32(head + 32, (uint32_t)m->numerics);
    put32(head + 36, (uint32_t)m->revision);
    put64(head + 40, (uint64_t)m->n_ctx);
    put64(head + 48, (uint64_t)d->pos);
    put32(head + 56, (uint32_t)m->vocab);
    put32(head + 60, (uint32_t)ns);
    uint8_t *t = head + DSV4__SFILE_HEADER;
    for (int i = 0; i < ns; i++, t += 32) {
        put32(t, sec[i].id);
        put32(t + 4, sec[i].codec);
        put64(t + 8, sec[i].raw);
        put64(t + 16, sec[i].stored);
        put64(t + 24, sec[i].sum);
    }
    put64(t, dsv4__hash64(head, (size_t)(t - head), 0));
    t += 8;
    if (fn(user, head, (size_t)(t - head))) { st = dsv4__fail(e, DSV4_ERR_IO, "writing the header failed"); goto done; }
    for (int i = 0; i < ns; i++) {
        const uint8_t *p = sec[i].buf ? sec[i].buf : sec[i].data;
        /* in pieces of at most 64 MiB (sinks that take an int) */
        for (uint64_t o = 0; o < sec[i].stored;) {
            uint64_t k = sec[i].stored - o < (64u << 20) ? sec[i].stored - o : (64u << 20);
            if (fn(user, p + o, (size_t)k)) {
                st = dsv4__fail(e, DSV4_ERR_IO, "writing section %u failed", (unsigned)sec[i].id);
                goto done;
            }
            o += k;
        }
    }
done:
    for (int i = 0; i < ns; i++) dsv4__free(sec[i].buf);
    dsv4__free(last_cuts);
    dsv4__free(ck_raw);
    ZSTD_freeCCtx(cz);
    return st;
}

/* ---- reading ----------------------------------------------------------- */

void dsv4__sfile_data_free(dsv4__sfile_data *d)
{
    dsv4__free(d->tokens);
    dsv4__free(d->cuts);
    dsv4__free(d->img);
    dsv4__free(d->logits);
    dsv4__free(d->ck);
    dsv4__free(d->ck_raw);
    d->tokens = NULL;
    d->cuts = NULL;
    d->img = NULL;
    d->logits = NULL;
    d->ck = NULL;
    d->ck_raw = NULL;
    d->n_ck = 0;
}

/* read exactly n bytes; 1 when the input ended first, -1 on a source error */
static int read_all(dsv4_read_fn fn, void *user, uint8_t *dst, uint64_t n)
{
    while (n > 0) {
        size_t want = n < (64u << 20) ? (size_t)n : (64u << 20);
        int64_t r = fn(user, dst, want);
        if (r < 0) return -1;
        if (r == 0) return 1;
        if ((uint64_t)r > want) return -1;
        dst += r;
        n -= (uint64_t)r;
    }
    return 0;
}

#define TRUNC(what) dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "truncated session file (in the %s)", what)

dsv4_status dsv4__sfile_read(const dsv4__sfile_meta *m, const dsv4__rt *rt, dsv4_read_fn fn, void *user,
                             dsv4__sfile_data *d, dsv4__err *e)
{
    memset(d, 0, sizeof *d);
    uint8_t head[DSV4__SFILE_HEADER + DSV4__SFILE_MAX_SECTIONS * 32 + 8];
    int r = read_all(fn, user, head, DSV4__SFILE_HEADER);
    if (r < 0) return dsv4__fail(e, DSV4_ERR_IO, "reading the header failed");
    if (r > 0) return TRUNC("header");
    if (memcmp(head, DSV4__SFILE_MAGIC, 8))
        return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "not a libdsv4 session file (magic)");
    uint32_t ver = get32(head + 8);
    if (ver < DSV4__SFILE_MIN_VERSION || ver > DSV4__SFILE_VERSION)
        return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "session format version %u; this library reads versions %u to %u",
                          (unsigned)ver, DSV4__SFILE_MIN_VERSION, DSV4__SFILE_VERSION);
    d->version = ver;
    if (get32(head + 12) != DSV4__SFILE_HEADER)
        return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "header size %u, %u expected", (unsigned)get32(head + 12),
                          (unsigned)DSV4__SFILE_HEADER);
    uint32_t ns = get32(head + 60);
    if (ns < 3 || ns > 5) return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "%u sections (3 to 5 expected)", (unsigned)ns);
    size_t tl = (size_t)ns * 32 + 8;
    r = read_all(fn, user, head + DSV4__SFILE_HEADER, tl);
    if (r < 0) return dsv4__fail(e, DSV4_ERR_IO, "reading the section table failed");
    if (r > 0) return TRUNC("section table");
    if (get64(head + DSV4__SFILE_HEADER + tl - 8) != dsv4__hash64(head, DSV4__SFILE_HEADER + tl - 8, 0))
        return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "header checksum mismatch");
    /* the header is what its writer wrote: now its fields */
    dsv4__sfile_meta *f = &d->file;
    f->lib_version = get32(head + 16);
    uint32_t flags = get32(head + 20);
    f->fingerprint = get64(head + 24);
    f->numerics = (int32_t)get32(head + 32);
    f->revision = (int32_t)get32(head + 36);
    f->n_ctx = (int64_t)get64(head + 40);
    int64_t pos = (int64_t)get64(head + 48);
    f->vocab = (int32_t)get32(head + 56);
    f->mtp = (flags & FLAG_MTP) != 0;
    for (int i = 64; i < DSV4__SFILE_HEADER; i++)
        if (head[i]) return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "reserved header byte %d is not zero", i);
    if (flags & ~(uint32_t)(FLAG_MTP | FLAG_LOGITS | (ver >= 2 ? FLAG_CKPTS : 0)))
        return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "unknown header flags 0x%x for format version %u", (unsigned)flags,
                          (unsigned)ver);
    if (f->fingerprint != m->fingerprint || f->vocab != m->vocab)
        return dsv4__fail(e, DSV4_ERR_INCOMPATIBLE, "saved by another model (fingerprint %016llx, this model's "
                          "%016llx)", (unsigned long long)f->fingerprint, (unsigned long long)m->fingerprint);
    if (f->numerics != m->numerics || f->revision != m->revision)
        return dsv4__fail(e, DSV4_ERR_INCOMPATIBLE, "saved with numerics %d revision %d; this context runs "
                          "numerics %d revision %d", f->numerics, f->revision, m->numerics, m->revision);
    if (f->mtp != m->mtp)
        return dsv4__fail(e, DSV4_ERR_INCOMPATIBLE, "saved by a session %s MTP; this session %s it",
                          f->mtp ? "with" : "without", m->mtp ? "has" : "does not have");
    if (pos < 0 || pos > f->n_ctx)
        return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "position %lld outside the saved context of %lld tokens",
                          (long long)pos, (long long)f->n_ctx);
    if (pos > m->n_ctx)
        return dsv4__fail(e, DSV4_ERR_CONTEXT_FULL, "saved at position %lld; this context holds %lld tokens",
                          (long long)pos, (long long)m->n_ctx);
    /* the sections: exactly the expected ones, sizes from this runtime */
    int with_logits = (flags & FLAG_LOGITS) != 0, with_ck = (flags & FLAG_CKPTS) != 0;
    if (ns != (uint32_t)(3 + with_logits + with_ck))
        return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "%u sections; the flags call for %d", (unsigned)ns,
                          3 + with_logits + with_ck);
    uint32_t ids[5] = { SEC_TOKENS, SEC_CUTS, SEC_STATE, SEC_LOGITS, SEC_CKPTS };
    if (!with_logits) ids[3] = SEC_CKPTS;
    /* checkpoints: at most the restorer's count, each at most this position's size */
    int32_t max_ck = m->max_ck > 0 ? m->max_ck : 0;
    uint64_t img_pos = (uint64_t)dsv4__state_image_bytes(rt, m->mtp, pos);
    uint64_t ck_max = 8 + (uint64_t)max_ck * (CK_HEAD + img_pos + (uint64_t)m->vocab * 4);
    section sec[5];
    memset(sec, 0, sizeof sec);
    dsv4_status st = DSV4_OK;
    uint8_t *raw[5] = { 0 };
    dsv4__sfile_ckpt *cks = NULL;
    const uint8_t *t = head + DSV4__SFILE_HEADER;
    for (uint32_t i = 0; i < ns; i++, t += 32) {
        section *s = &sec[i];
        s->id = get32(t);
        s->codec = get32(t + 4);
        s->raw = get64(t + 8);
        s->stored = get64(t + 16);
        s->sum = get64(t + 24);
        if (s->id != ids[i]) return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "section %u has id %u", i, (unsigned)s->id);
        uint64_t want = s->id == SEC_TOKENS ? (uint64_t)pos * 4
                        : s->id == SEC_CUTS ? (uint64_t)(pos + 7) / 8
                        : s->id == SEC_STATE ? img_pos
                        : s->id == SEC_LOGITS ? (uint64_t)m->vocab * 4 : s->raw;
        if (s->id == SEC_CKPTS && (s->raw < 8 + CK_HEAD || s->raw > ck_max)) {
            if (s->raw > ck_max && s->raw >= 8 + CK_HEAD)
                return dsv4__fail(e, DSV4_ERR_INCOMPATIBLE, "the checkpoints take %llu bytes, more than the %d "
                                  "this session keeps (dsv4_session_set_checkpoint_limit) can at position %lld",
                                  (unsigned long long)s->raw, (int)max_ck, (long long)pos);
            return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "checkpoint section of %llu bytes", (unsigned long long)s->raw);
        }
        if (s->raw != want)
            return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "section %u holds %llu bytes; %llu expected at position %lld",
                              (unsigned)s->id, (unsigned long long)s->raw, (unsigned long long)want, (long long)pos);
        if (s->codec == CODEC_RAW ? s->stored != s->raw
            : s->codec == CODEC_ZSTD ? s->stored > ZSTD_compressBound((size_t)s->raw) || (s->raw && !s->stored) : 1)
            return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "section %u: codec %u with %llu stored bytes for %llu",
                              (unsigned)s->id, (unsigned)s->codec, (unsigned long long)s->stored,
                              (unsigned long long)s->raw);
    }
    ZSTD_DCtx *dz = NULL;
    for (uint32_t i = 0; i < ns; i++) {
        section *s = &sec[i];
        raw[i] = dsv4__malloc((size_t)(s->raw ? s->raw : 1));
        if (!raw[i]) { st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory for a section"); goto fail; }
        uint8_t *dst = raw[i];
        if (s->codec == CODEC_ZSTD) {
            s->buf = dsv4__malloc((size_t)s->stored);
            if (!s->buf) { st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory for a section"); goto fail; }
            dst = s->buf;
        }
        r = read_all(fn, user, dst, s->stored);
        if (r) { st = r < 0 ? dsv4__fail(e, DSV4_ERR_IO, "reading section %u failed", (unsigned)s->id) : TRUNC("sections"); goto fail; }
        if (dsv4__hash64(dst, (size_t)s->stored, s->id) != s->sum) {
            st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "section %u: checksum mismatch", (unsigned)s->id);
            goto fail;
        }
        if (s->codec == CODEC_ZSTD) {
            if (!dz && !(dz = ZSTD_createDCtx())) {
                st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory for the decompressor");
                goto fail;
            }
            unsigned long long fcs = ZSTD_getFrameContentSize(s->buf, (size_t)s->stored);
            size_t z = fcs == s->raw ? ZSTD_decompressDCtx(dz, raw[i], (size_t)s->raw, s->buf, (size_t)s->stored) : 0;
            if (fcs != s->raw || ZSTD_isError(z) || z != s->raw) {
                st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "section %u: corrupt compressed data", (unsigned)s->id);
                goto fail;
            }
            dsv4__free(s->buf);
            s->buf = NULL;
        }
    }
    {
        uint8_t extra;
        r = read_all(fn, user, &extra, 1);
        if (r < 0) { st = dsv4__fail(e, DSV4_ERR_IO, "reading failed"); goto fail; }
        if (r == 0) { st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "bytes after the end of the session file"); goto fail; }
    }
    /* the contents */
    const int32_t *tok = (const int32_t *)raw[0];
    for (int64_t i = 0; i < pos; i++)
        if (tok[i] < 0 || tok[i] >= m->vocab) {
            st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "token %d at %lld outside the vocabulary", tok[i], (long long)i);
            goto fail;
        }
    if (pos % 8 && (raw[1][pos / 8] >> (pos % 8))) {
        st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "call boundaries beyond the position");
        goto fail;
    }
    st = dsv4__state_image_check(rt, m->mtp, pos, raw[2], (int64_t)sec[2].raw, e);
    if (st) goto fail;
    if (with_logits) {
        const float *lg = (const float *)raw[3];
        for (int64_t i = 0; i < m->vocab; i++)
            if (!isfinite(lg[i])) { st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "a logit that is not finite"); goto fail; }
        if (pos == 0) { st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "logits at position 0"); goto fail; }
    }
    if (with_ck) {
        /* each checkpoint whole and checked like the state itself */
        uint32_t ci = 3 + (uint32_t)with_logits;
        const uint8_t *p = raw[ci], *end = raw[ci] + sec[ci].raw;
        uint32_t n = get32(p);
        if (n == 0 || get32(p + 4) || n > (uint32_t)max_ck) {
            st = n > (uint32_t)max_ck && !get32(p + 4)
                     ? dsv4__fail(e, DSV4_ERR_INCOMPATIBLE, "%u checkpoints; this session keeps at most %d "
                                  "(dsv4_session_set_checkpoint_limit)", (unsigned)n, (int)max_ck)
                     : dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "checkpoint count %u", (unsigned)n);
            goto fail;
        }
        cks = dsv4__calloc(n, sizeof *cks);
        if (!cks) { st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory for the checkpoints"); goto fail; }
        p += 8;
        for (uint32_t i = 0; i < n; i++) {
            if ((size_t)(end - p) < CK_HEAD) { st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "checkpoint %u cut short", i); goto fail; }
            int64_t cp = (int64_t)get64(p);
            uint32_t cf = get32(p + 8);
            uint64_t ib = get64(p + 16);
            if (cp < 0 || cp > pos || (i > 0 && cp <= cks[i - 1].pos) || cf > 1 || get32(p + 12) || (cf && cp == 0)) {
                st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "checkpoint %u: position %lld, flags %u", i, (long long)cp, (unsigned)cf);
                goto fail;
            }
            uint64_t lb = cf ? (uint64_t)m->vocab * 4 : 0;
            p += CK_HEAD;
            if (ib != (uint64_t)dsv4__state_image_bytes(rt, m->mtp, cp) || (uint64_t)(end - p) < ib ||
                (uint64_t)(end - p) - ib < lb) {
                st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "checkpoint %u at %lld: %llu image bytes", i, (long long)cp,
                                (unsigned long long)ib);
                goto fail;
            }
            st = dsv4__state_image_check(rt, m->mtp, cp, p, (int64_t)ib, e);
            if (st) goto fail;
            cks[i] = (dsv4__sfile_ckpt){ cp, p, (int64_t)ib, NULL };
            p += ib;
            if (cf) {
                float f;
                for (int64_t k = 0; k < m->vocab; k++) {
                    memcpy(&f, p + 4 * k, 4);
                    if (!isfinite(f)) { st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "checkpoint %u: a logit that is not finite", i); goto fail; }
                }
                cks[i].logits = (const float *)p;
                p += lb;
            }
        }
        if (p != end) { st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "bytes after the checkpoints"); goto fail; }
        d->n_ck = (int32_t)n;
        d->ck = cks;
        d->ck_raw = raw[ci];
    }
    ZSTD_freeDCtx(dz);
    d->pos = pos;
    d->tokens = (int32_t *)raw[0];
    d->cuts = raw[1];
    d->img = raw[2];
    d->img_bytes = (int64_t)sec[2].raw;
    d->logits = with_logits ? (float *)raw[3] : NULL;
    return DSV4_OK;
fail:
    ZSTD_freeDCtx(dz);
    dsv4__free(cks);
    for (int i = 0; i < 5; i++) {
        dsv4__free(raw[i]);
        dsv4__free(sec[i].buf);
    }
    return st;
}

dsv4_status dsv4__sfile_peek(dsv4_read_fn fn, void *user, int64_t max_pos, dsv4__sfile_data *d, dsv4__err *e)
{
    memset(d, 0, sizeof *d);
    uint8_t head[DSV4__SFILE_HEADER + DSV4__SFILE_MAX_SECTIONS * 32 + 8];
    int r = read_all(fn, user, head, DSV4__SFILE_HEADER);
    if (r) return r < 0 ? dsv4__fail(e, DSV4_ERR_IO, "read failed") : TRUNC("header");
    if (memcmp(head, DSV4__SFILE_MAGIC, 8) || get32(head + 8) < DSV4__SFILE_MIN_VERSION ||
        get32(head + 8) > DSV4__SFILE_VERSION || get32(head + 12) != DSV4__SFILE_HEADER)
        return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "not a session file of format version %u to %u",
                          DSV4__SFILE_MIN_VERSION, DSV4__SFILE_VERSION);
    d->version = get32(head + 8);
    uint32_t ns = get32(head + 60);
    if (ns < 3 || ns > 5) return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "%u sections", (unsigned)ns);
    size_t tl = (size_t)ns * 32 + 8;
    r = read_all(fn, user, head + DSV4__SFILE_HEADER, tl);
    if (r) return r < 0 ? dsv4__fail(e, DSV4_ERR_IO, "read failed") : TRUNC("section table");
    if (get64(head + DSV4__SFILE_HEADER + tl - 8) != dsv4__hash64(head, DSV4__SFILE_HEADER + tl - 8, 0))
        return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "header checksum mismatch");
    dsv4__sfile_meta *f = &d->file;
    f->lib_version = get32(head + 16);
    f->mtp = (get32(head + 20) & FLAG_MTP) != 0;
    f->fingerprint = get64(head + 24);
    f->numerics = (int32_t)get32(head + 32);
    f->revision = (int32_t)get32(head + 36);
    f->n_ctx = (int64_t)get64(head + 40);
    f->vocab = (int32_t)get32(head + 56);
    int64_t pos = (int64_t)get64(head + 48);
    const uint8_t *t = head + DSV4__SFILE_HEADER;
    uint32_t codec = get32(t + 4);
    uint64_t raw = get64(t + 8), stored = get64(t + 16), sum = get64(t + 24);
    if (pos < 0 || pos > max_pos || get32(t) != SEC_TOKENS || raw != (uint64_t)pos * 4 ||
        (codec == CODEC_RAW ? stored != raw : codec != CODEC_ZSTD || stored > ZSTD_compressBound((size_t)raw)))
        return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "bad token section");
    uint8_t *st = dsv4__malloc((size_t)(stored ? stored : 1)), *tok = dsv4__malloc((size_t)(raw ? raw : 1));
    dsv4_status rc = DSV4_OK;
    if (!st || !tok) { rc = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory"); goto out; }
    r = read_all(fn, user, st, stored);
    if (r) { rc = r < 0 ? dsv4__fail(e, DSV4_ERR_IO, "read failed") : TRUNC("tokens"); goto out; }
    if (dsv4__hash64(st, (size_t)stored, SEC_TOKENS) != sum) { rc = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "checksum"); goto out; }
    if (codec == CODEC_ZSTD) {
        size_t z = ZSTD_getFrameContentSize(st, (size_t)stored) == raw ? ZSTD_decompress(tok, (size_t)raw, st, (size_t)stored) : 0;
        if (ZSTD_isError(z) || z != raw) { rc = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "corrupt tokens"); goto out; }
    } else {
        memcpy(tok, st, (size_t)raw);
    }
    d->pos = pos;
    d->tokens = (int32_t *)tok;
    tok = NULL;
out:
    dsv4__free(st);
    dsv4__free(tok);
    return rc;
}
