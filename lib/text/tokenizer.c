/*
 * lib/text/tokenizer.c — byte-level BPE tokenizer loaded from tokenizer.json.
 *
 * Encode: added tokens are matched first (leftmost, longest); each remaining
 * span goes through the Split(Isolated) regex passes of the pre-tokenizer
 * (PCRE2, UTF + UCP); every piece is BPE-merged over raw bytes (the
 * byte-level character mapping only matters when reading the file).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/core.h"
#include "text/tokenizer_int.h"
#include "core/utf8.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SPLITS 8

typedef struct trie_node {
    int32_t child; /* first child index, -1 none */
    int32_t next;  /* next sibling, -1 none */
    int32_t id;    /* token id ending here, -1 none */
    uint8_t byte;
} trie_node;

typedef struct merge_slot {
    uint64_t key; /* left << 32 | right; 0xffff.. = empty */
    int32_t rank;
    int32_t merged;
} merge_slot;

struct dsv4_tokenizer {
    int32_t n_ids;
    /* bytes of every id: blob[off[i] .. off[i+1]) ; has[i] = present */
    char *blob;
    size_t *off;
    uint8_t *flags; /* bit0 present, bit1 added, bit2 special */
    /* raw-bytes -> BPE id (model vocab only) */
    int32_t *vmap;
    size_t vmap_mask;
    /* pair -> merge */
    merge_slot *mmap;
    size_t mmap_mask;
    int32_t byte_id[256];
    /* added tokens trie */
    trie_node *trie;
    int32_t n_trie;
    uint8_t first_byte[256];
    int32_t max_piece;
    /* pre-tokenizer */
    pcre2_code *re[MAX_SPLITS];
    int n_re;
    int32_t special[DSV4__N_SPECIAL];
    /* the caller's reference and one per generator / detokenizer using it
     * (mutable through const pointers: counting is not a change of the
     * tokenizer's meaning) */
    dsv4__ref ref;
};

struct dsv4_detok {
    const dsv4_tokenizer *tok;
    char pend[4];
    size_t n_pend;
};

/* ---- helpers ------------------------------------------------------------ */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

/* GPT-2 byte <-> unicode mapping: code point for each byte. */
static void byte_map(uint32_t cp_of_byte[256])
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
            cp_of_byte[b] = (uint32_t)b;
        else
            cp_of_byte[b] = 256u + (uint32_t)n++;
    }
}

static const char *tok_bytes(const dsv4_tokenizer *t, int32_t id, size_t *len)
{
    *len = t->off[id + 1] - t->off[id];
    return t->blob + t->off[id];
}

static int32_t vmap_find(const dsv4_tokenizer *t, const char *s, size_t n)
{
    size_t i = (size_t)hash_bytes(s, n) & t->vmap_mask;
    for (;;) {
        int32_t id = t->vmap[i];
        if (id < 0) return -1;
        size_t l;
        const char *b = tok_bytes(t, id, &l);
        if (l == n && memcmp(b, s, n) == 0) return id;
        i = (i + 1) & t->vmap_mask;
    }
}

static const merge_slot *mmap_find(const dsv4_tokenizer *t, int32_t a, int32_t b)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)hash_u64(key) & t->mmap_mask;
    for (;;) {
        const merge_slot *m = &t->mmap[i];
        if (m->key == UINT64_MAX) return NULL;
        if (m->key == key) return m;
        i = (i + 1) & t->mmap_mask;
    }
}

/* ---- loading ------------------------------------------------------------ */

/* Convert a byte-level string to raw bytes; returns length, or -1 if a char
 * is outside the mapping (then the caller keeps the UTF-8 as is). */
static long bytelevel_to_raw(const char *s, size_t n, const int16_t *byte_of_cp, char *out)
{
    size_t i = 0;
    long o = 0;
    while (i < n) {
        uint32_t cp;
        size_t l = dsv4__utf8_decode(s + i, n - i, &cp);
        if (!l || cp >= 512 || byte_of_cp[cp] < 0) return -1;
        out[o++] = (char)byte_of_cp[cp];
        i += l;
    }
    return o;
}

static dsv4_status trie_add(dsv4_tokenizer *t, int32_t *cap, const char *s, size_t n, int32_t id,
                            dsv4__err *e)
{
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = t->trie[node].child;
        while (c >= 0 && t->trie[c].byte != b) c = t->trie[c].next;
        if (c < 0) {
            if (t->n_trie == *cap) {
                int32_t nc = *cap * 2;
                trie_node *nt = dsv4__realloc(t->trie, (size_t)nc * sizeof *nt);
                if (!nt) return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory (added-token table)");
                t->trie = nt;
                *cap = nc;
            }
            c = t->n_trie++;
            t->trie[c] = (trie_node){.child = -1, .next = t->trie[node].child, .id = -1, .byte = b};
            t->trie[node].child = c;
        }
        node = c;
    }
    if (t->trie[node].id < 0) t->trie[node].id = id;
    if (n) t->first_byte[(uint8_t)s[0]] = 1;
    return DSV4_OK;
}

static dsv4_status load_json(dsv4_tokenizer *t, json_t *root, dsv4__err *e)
{
    uint32_t cp_of_byte[256];
    int16_t byte_of_cp[512];
    byte_map(cp_of_byte);
    for (int i = 0; i < 512; i++) byte_of_cp[i] = -1;
    for (int b = 0; b < 256; b++) byte_of_cp[cp_of_byte[b]] = (int16_t)b;

    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "no \"model\" object");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (!mtype || strcmp(mtype, "BPE") != 0)
        return dsv4__fail(e, DSV4_ERR_UNSUPPORTED, "model type %s is not supported (only BPE)",
                          mtype ? mtype : "(missing)");
    json_t *bf = json_object_get(model, "byte_fallback");
    if (json_is_true(bf)) return dsv4__fail(e, DSV4_ERR_UNSUPPORTED, "BPE byte_fallback is not supported");
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0.0)
        return dsv4__fail(e, DSV4_ERR_UNSUPPORTED, "BPE dropout is not supported");
    json_t *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab) || !json_is_array(merges))
        return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "model.vocab or model.merges missing");
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_array(added))
        return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "added_tokens is not an array");

    /* normalizer: none or an empty Sequence */
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        const char *nt = json_string_value(json_object_get(norm, "type"));
        json_t *list = json_object_get(norm, "normalizers");
        if (!nt || strcmp(nt, "Sequence") != 0 || !json_is_array(list) || json_array_size(list) != 0)
            return dsv4__fail(e, DSV4_ERR_UNSUPPORTED, "normalizers are not supported");
    }
    /* decoder: ByteLevel */
    json_t *dec = json_object_get(root, "decoder");
    const char *dt = json_string_value(json_object_get(dec, "type"));
    if (!dt || strcmp(dt, "ByteLevel") != 0)
        return dsv4__fail(e, DSV4_ERR_UNSUPPORTED, "decoder type %s is not supported (only ByteLevel)",
                          dt ? dt : "(missing)");

    /* ids */
    int32_t max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) > 16777216)
            return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "vocab entry with a bad id");
        if (json_integer_value(val) > max_id) max_id = (int32_t)json_integer_value(val);
    }
    size_t n_added = added ? json_array_size(added) : 0;
    for (size_t i = 0; i < n_added; i++) {
        json_t *a = json_array_get(added, i);
        json_t *id = json_object_get(a, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > 16777216 ||
            !json_is_string(json_object_get(a, "content")))
            return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "added_tokens[%zu] lacks id or content", i);
        if (json_is_true(json_object_get(a, "lstrip")) || json_is_true(json_object_get(a, "rstrip")) ||
            json_is_true(json_object_get(a, "single_word")))
            return dsv4__fail(e, DSV4_ERR_UNSUPPORTED,
                              "added_tokens[%zu]: lstrip/rstrip/single_word are not supported", i);
        if (json_integer_value(id) > max_id) max_id = (int32_t)json_integer_value(id);
    }
    if (max_id < 0) return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "empty vocabulary");
    t->n_ids = max_id + 1;

    /* byte blob: sizes first */
    size_t total = 0;
    json_object_foreach(vocab, key, val) total += strlen(key);
    for (size_t i = 0; i < n_added; i++)
        total += json_string_length(json_object_get(json_array_get(added, i), "content"));
    t->blob = dsv4__malloc(total + 1);
    t->off = dsv4__calloc((size_t)t->n_ids + 1, sizeof *t->off);
    t->flags = dsv4__calloc((size_t)t->n_ids, 1);
    size_t *len = dsv4__calloc((size_t)t->n_ids, sizeof *len);
    size_t *src = dsv4__calloc((size_t)t->n_ids, sizeof *src); /* temp: position in tmp */
    char *tmp = dsv4__malloc(total + 1);
    if (!t->blob || !t->off || !t->flags || !len || !src || !tmp) {
        dsv4__free(len); dsv4__free(src); dsv4__free(tmp);
        return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory (vocabulary)");
    }
    size_t tp = 0;
    dsv4_status st = DSV4_OK;
    json_object_foreach(vocab, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        size_t kl = strlen(key);
        long rl = bytelevel_to_raw(key, kl, byte_of_cp, tmp + tp);
        if (rl < 0) { memcpy(tmp + tp, key, kl); rl = (long)kl; }
        if (t->flags[id] & 1) { st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "id %d appears twice in vocab", id); break; }
        t->flags[id] = 1;
        src[id] = tp;
        len[id] = (size_t)rl;
        tp += (size_t)rl;
    }
    /* added tokens override the vocab's bytes with their literal content */
    for (size_t i = 0; st == DSV4_OK && i < n_added; i++) {
        json_t *a = json_array_get(added, i);
        int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
        json_t *c = json_object_get(a, "content");
        size_t cl = json_string_length(c);
        memcpy(tmp + tp, json_string_value(c), cl);
        t->flags[id] |= 1 | 2 | (json_is_true(json_object_get(a, "special")) ? 4 : 0);
        src[id] = tp;
        len[id] = cl;
        tp += cl;
    }
    if (st == DSV4_OK) {
        size_t o = 0;
        for (int32_t i = 0; i < t->n_ids; i++) {
            t->off[i] = o;
            memcpy(t->blob + o, tmp + src[i], len[i]);
            o += len[i];
        }
        t->off[t->n_ids] = o;
    }
    dsv4__free(len); dsv4__free(src); dsv4__free(tmp);
    if (st) return st;

    /* raw bytes -> id for BPE (non-added) tokens */
    t->vmap_mask = pow2_at_least((size_t)t->n_ids * 2) - 1;
    t->vmap = dsv4__malloc((t->vmap_mask + 1) * sizeof *t->vmap);
    if (!t->vmap) return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory (vocabulary map)");
    for (size_t i = 0; i <= t->vmap_mask; i++) t->vmap[i] = -1;
    json_object_foreach(vocab, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        if (t->flags[id] & 2) continue;
        size_t l;
        const char *b = tok_bytes(t, id, &l);
        if (vmap_find(t, b, l) >= 0) continue; /* duplicate bytes: first wins */
        size_t h = (size_t)hash_bytes(b, l) & t->vmap_mask;
        while (t->vmap[h] >= 0) h = (h + 1) & t->vmap_mask;
        t->vmap[h] = id;
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = vmap_find(t, &c, 1);
        if (t->byte_id[b] < 0)
            return dsv4__fail(e, DSV4_ERR_UNSUPPORTED, "vocabulary lacks the byte token for 0x%02x", b);
    }

    /* merges */
    size_t n_merges = json_array_size(merges);
    t->mmap_mask = pow2_at_least(n_merges * 2 + 2) - 1;
    t->mmap = dsv4__malloc((t->mmap_mask + 1) * sizeof *t->mmap);
    char *buf = dsv4__malloc(4096);
    if (!t->mmap || !buf) {
        dsv4__free(buf);
        return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory (merges)");
    }
    for (size_t i = 0; i <= t->mmap_mask; i++) t->mmap[i].key = UINT64_MAX;
    for (size_t r = 0; r < n_merges; r++) {
        json_t *m = json_array_get(merges, r);
        const char *ls, *rs;
        size_t ll, rl;
        if (json_is_string(m)) {
            const char *s = json_string_value(m);
            const char *sp = strchr(s + (s[0] ? 1 : 0), ' ');
            if (!sp) { st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "merges[%zu] is not \"a b\"", r); break; }
            ls = s; ll = (size_t)(sp - s); rs = sp + 1; rl = strlen(rs);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            ls = json_string_value(json_array_get(m, 0)); ll = json_string_length(json_array_get(m, 0));
            rs = json_string_value(json_array_get(m, 1)); rl = json_string_length(json_array_get(m, 1));
        } else {
            st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "merges[%zu] has a bad form", r);
            break;
        }
        if (ll > 2000 || rl > 2000) { st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "merges[%zu] too long", r); break; }
        long a = bytelevel_to_raw(ls, ll, byte_of_cp, buf);
        long b = a < 0 ? -1 : bytelevel_to_raw(rs, rl, byte_of_cp, buf + a);
        if (a < 0 || b < 0) { st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "merges[%zu] is not byte-level", r); break; }
        int32_t ia = vmap_find(t, buf, (size_t)a);
        int32_t ib = vmap_find(t, buf + a, (size_t)b);
        int32_t im = vmap_find(t, buf, (size_t)(a + b));
        if (ia < 0 || ib < 0 || im < 0) {
            st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "merges[%zu] refers to a token not in the vocabulary", r);
            break;
        }
        uint64_t k = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
        size_t h = (size_t)hash_u64(k) & t->mmap_mask;
        while (t->mmap[h].key != UINT64_MAX && t->mmap[h].key != k) h = (h + 1) & t->mmap_mask;
        if (t->mmap[h].key == k) continue; /* keep the lowest rank */
        t->mmap[h] = (merge_slot){.key = k, .rank = (int32_t)r, .merged = im};
    }
    dsv4__free(buf);
    if (st) return st;

    /* added tokens trie */
    int32_t cap = 1024;
    t->trie = dsv4__malloc((size_t)cap * sizeof *t->trie);
    if (!t->trie) return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory (added tokens)");
    t->trie[0] = (trie_node){.child = -1, .next = -1, .id = -1};
    t->n_trie = 1;
    for (size_t i = 0; i < n_added; i++) {
        json_t *a = json_array_get(added, i);
        int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
        json_t *c = json_object_get(a, "content");
        if (json_string_length(c) == 0) continue;
        st = trie_add(t, &cap, json_string_value(c), json_string_length(c), id, e);
        if (st) return st;
    }

    /* pre-tokenizer */
    json_t *pre = json_object_get(root, "pre_tokenizer");
    json_t *list = NULL;
    const char *pt = json_string_value(json_object_get(pre, "type"));
    if (pt && strcmp(pt, "Sequence") == 0) list = json_object_get(pre, "pretokenizers");
    size_t n_pre = json_is_array(list) ? json_array_size(list) : (pre && !json_is_null(pre) ? 1 : 0);
    for (size_t i = 0; i < n_pre; i++) {
        json_t *p = list ? json_array_get(list, i) : pre;
        const char *ty = json_string_value(json_object_get(p, "type"));
        if (ty && strcmp(ty, "ByteLevel") == 0) {
            if (json_is_true(json_object_get(p, "use_regex")) || json_is_true(json_object_get(p, "add_prefix_space")))
                return dsv4__fail(e, DSV4_ERR_UNSUPPORTED,
                                  "ByteLevel pre-tokenizer with use_regex/add_prefix_space is not supported");
            continue;
        }
        if (!ty || strcmp(ty, "Split") != 0)
            return dsv4__fail(e, DSV4_ERR_UNSUPPORTED, "pre-tokenizer type %s is not supported", ty ? ty : "(missing)");
        const char *beh = json_string_value(json_object_get(p, "behavior"));
        const char *rx = json_string_value(json_object_get(json_object_get(p, "pattern"), "Regex"));
        if (!beh || strcmp(beh, "Isolated") != 0 || json_is_true(json_object_get(p, "invert")) || !rx)
            return dsv4__fail(e, DSV4_ERR_UNSUPPORTED, "only Split(Regex, Isolated, invert=false) is supported");
        if (t->n_re == MAX_SPLITS) return dsv4__fail(e, DSV4_ERR_UNSUPPORTED, "too many Split pre-tokenizers");
        int errcode;
        PCRE2_SIZE erroff;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)rx, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                                       &errcode, &erroff, NULL);
        if (!re) {
            char msg[256];
            pcre2_get_error_message(errcode, (PCRE2_UCHAR *)msg, sizeof msg);
            return dsv4__fail(e, DSV4_ERR_UNSUPPORTED, "pre-tokenizer regex %zu does not compile at %zu: %s", i,
                              (size_t)erroff, msg);
        }
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* interpreter if JIT is unavailable */
        t->re[t->n_re++] = re;
    }

    static const char *const names[DSV4__N_SPECIAL] = {
        "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<｜User｜>", "<｜Assistant｜>",
        "<think>", "</think>", "｜DSML｜", "<dsml:", "</dsml:", "<｜fim▁begin｜>", "<｜fim▁hole｜>",
        "<｜fim▁end｜>", "<｜latest_reminder｜>", "<|EOT|>"};
    for (int i = 0; i < DSV4__N_SPECIAL; i++) {
        t->special[i] = -1;
        size_t nl = strlen(names[i]);
        int32_t node = 0;
        for (size_t k = 0; k < nl && node >= 0; k++) {
            int32_t c = t->trie[node].child;
            while (c >= 0 && t->trie[c].byte != (uint8_t)names[i][k]) c = t->trie[c].next;
            node = c;
        }
        if (node > 0) t->special[i] = t->trie[node].id;
    }
    for (int32_t i = 0; i < t->n_ids; i++) {
        size_t l = t->off[i + 1] - t->off[i];
        if ((int32_t)l > t->max_piece) t->max_piece = (int32_t)l;
    }
    return DSV4_OK;
}

DSV4_API dsv4_status dsv4_tokenizer_load(const char *path, const dsv4_options *opts, dsv4_tokenizer **out,
                                         char **err_msg)
{
    dsv4__err e = {0};
    if (err_msg) *err_msg = NULL;
    if (out) *out = NULL;
    if (!path || !out) {
        dsv4__fail(&e, DSV4_ERR_INVALID_ARGUMENT, "dsv4_tokenizer_load: path and out must not be NULL");
        return dsv4__err_out(&e, err_msg);
    }
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        FILE *f = fopen(path, "rb");
        if (!f)
            dsv4__fail(&e, DSV4_ERR_IO, "cannot open %s", path);
        else {
            fclose(f);
            dsv4__fail(&e, DSV4_ERR_BAD_FORMAT, "%s: JSON error at line %d: %s", path, jerr.line, jerr.text);
        }
        return dsv4__err_out(&e, err_msg);
    }
    dsv4_tokenizer *t = dsv4__calloc(1, sizeof *t);
    if (t) dsv4__ref_init(&t->ref);
    dsv4_status st;
    if (!t)
        st = dsv4__fail(&e, DSV4_ERR_OUT_OF_MEMORY, "out of memory");
    else
        st = load_json(t, root, &e);
    json_decref(root);
    if (st) {
        dsv4__err_prefix(&e, "%s", path);
        dsv4_tokenizer_free(t);
        return dsv4__err_out(&e, err_msg);
    }
    dsv4__log log = dsv4__opt_log(opts);
    dsv4__logf(&log, DSV4_LOG_INFO, "tokenizer %s: %d ids, %d regex passes", path, t->n_ids, t->n_re);
    *out = t;
    return DSV4_OK;
}

void dsv4__tokenizer_retain(const dsv4_tokenizer *t) { dsv4__ref_get(&((dsv4_tokenizer *)t)->ref); }

void dsv4__tokenizer_release(const dsv4_tokenizer *t) { dsv4_tokenizer_free((dsv4_tokenizer *)t); }

static atomic_ulong n_encodes;

unsigned long dsv4__tokenizer_encode_count(void) { return atomic_load_explicit(&n_encodes, memory_order_relaxed); }

DSV4_API void dsv4_tokenizer_free(dsv4_tokenizer *t)
{
    if (!t || !dsv4__ref_put(&t->ref)) return;
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    dsv4__free(t->blob);
    dsv4__free(t->off);
    dsv4__free(t->flags);
    dsv4__free(t->vmap);
    dsv4__free(t->mmap);
    dsv4__free(t->trie);
    dsv4__free(t);
}

/* ---- encoding ----------------------------------------------------------- */

/* merge-queue entry: rank << 32 | position, so one integer comparison
 * orders by rank, then leftmost */
typedef uint64_t heap_ent;

typedef struct enc {
    const dsv4_tokenizer *t;
    int32_t *ids;
    size_t cap, n;
    pcre2_match_data *md;
    pcre2_match_context *mc; /* no step limit: the pre-tokenizer regexes are linear */
    int32_t *sym; /* scratch: symbol ids of the current piece */
    size_t sym_cap;
    int32_t *nxt, *prv; /* scratch for long pieces */
    heap_ent *heap;
    size_t long_cap;
    dsv4__err *e;
} enc;

static void emit(enc *c, int32_t id)
{
    if (c->n < c->cap) c->ids[c->n] = id;
    c->n++;
}

/* Pieces longer than this use the O(n log n) merge queue; shorter ones a
 * plain scan. Both merge the lowest-rank pair first, leftmost on ties. */
#define BPE_SCAN_MAX 32

static void heap_sift_down(heap_ent *h, size_t n, size_t i)
{
    heap_ent x = h[i];
    for (;;) {
        size_t l = 2 * i + 1, m = l;
        if (l >= n) break;
        if (l + 1 < n && h[l + 1] < h[l]) m = l + 1;
        if (h[m] >= x) break;
        h[i] = h[m];
        i = m;
    }
    h[i] = x;
}

static void heap_push(heap_ent *h, size_t *n, heap_ent x)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (x >= h[p]) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static heap_ent heap_pop(heap_ent *h, size_t *n)
{
    heap_ent top = h[0];
    h[0] = h[--*n];
    if (*n) heap_sift_down(h, *n, 0);
    return top;
}

static void push_pair(enc *c, size_t *hn, int32_t a, int32_t b)
{
    const merge_slot *ms = mmap_find(c->t, c->sym[a], c->sym[b]);
    if (ms) heap_push(c->heap, hn, (uint64_t)(uint32_t)ms->rank << 32 | (uint32_t)a);
}

static dsv4_status bpe_long(enc *c, size_t n)
{
    if (n > c->long_cap) {
        int32_t *nx = dsv4__realloc(c->nxt, n * sizeof *nx);
        if (nx) c->nxt = nx;
        int32_t *pv = nx ? dsv4__realloc(c->prv, n * sizeof *pv) : NULL;
        if (pv) c->prv = pv;
        heap_ent *h = pv ? dsv4__realloc(c->heap, 3 * n * sizeof *h) : NULL;
        if (!h) return dsv4__fail(c->e, DSV4_ERR_OUT_OF_MEMORY, "out of memory (BPE of a %zu-byte piece)", n);
        c->heap = h;
        c->long_cap = n;
    }
    int32_t *sym = c->sym, *nxt = c->nxt, *prv = c->prv;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        nxt[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        prv[i] = (int32_t)i - 1;
    }
    /* the initial pairs, heapified in linear time */
    for (size_t i = 0; i + 1 < n; i++) {
        const merge_slot *ms = mmap_find(c->t, sym[i], sym[i + 1]);
        if (ms) c->heap[hn++] = (uint64_t)(uint32_t)ms->rank << 32 | (uint32_t)i;
    }
    for (size_t i = hn / 2; i-- > 0;) heap_sift_down(c->heap, hn, i);
    while (hn) {
        heap_ent m = heap_pop(c->heap, &hn);
        int32_t a = (int32_t)(uint32_t)m, b = nxt[a];
        /* stale when a or its right neighbour has changed since the push: a
         * symbol only ever grows, so the pair then has another rank or none */
        if (sym[a] < 0 || b < 0) continue;
        const merge_slot *ms = mmap_find(c->t, sym[a], sym[b]);
        if (!ms || ms->rank != (int32_t)(m >> 32)) continue;
        sym[a] = ms->merged;
        sym[b] = -1;
        nxt[a] = nxt[b];
        if (nxt[a] >= 0) prv[nxt[a]] = a;
        if (prv[a] >= 0) push_pair(c, &hn, prv[a], a);
        if (nxt[a] >= 0) push_pair(c, &hn, a, nxt[a]);
    }
    for (int32_t i = 0; i >= 0; i = nxt[i]) emit(c, sym[i]);
    return DSV4_OK;
}

/* Pre-tokens longer than this (runs of one letter, space or symbol class;
 * never natural text) are merged in pieces of at most this many bytes, cut
 * at character boundaries: the merge queue then stays cache-sized, so the
 * cost per byte is bounded (the ids of such a pre-token may differ from a
 * whole-piece BPE; stated in dsv4_text.h). */
#define BPE_PIECE_MAX 65536

static dsv4_status bpe_piece(enc *c, const char *s, size_t n);

static dsv4_status bpe(enc *c, const char *s, size_t n)
{
    while (n > BPE_PIECE_MAX) {
        size_t k = BPE_PIECE_MAX;
        while (k > 1 && ((uint8_t)s[k] & 0xC0) == 0x80) k--;
        dsv4_status st = bpe_piece(c, s, k);
        if (st) return st;
        s += k;
        n -= k;
    }
    return bpe_piece(c, s, n);
}

static dsv4_status bpe_piece(enc *c, const char *s, size_t n)
{
    const dsv4_tokenizer *t = c->t;
    if (n == 0) return DSV4_OK;
    if (n == 1) { emit(c, t->byte_id[(uint8_t)s[0]]); return DSV4_OK; }
    if (n > c->sym_cap) {
        size_t nc = n < 256 ? 256 : n;
        int32_t *ns = dsv4__realloc(c->sym, nc * sizeof *ns);
        if (!ns) return dsv4__fail(c->e, DSV4_ERR_OUT_OF_MEMORY, "out of memory (BPE of a %zu-byte piece)", n);
        c->sym = ns;
        c->sym_cap = nc;
    }
    int32_t *sym = c->sym;
    size_t m = n;
    for (size_t i = 0; i < n; i++) sym[i] = t->byte_id[(uint8_t)s[i]];
    if (n > BPE_SCAN_MAX) return bpe_long(c, n);
    for (;;) {
        int32_t best = INT32_MAX, merged = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < m; i++) {
            const merge_slot *ms = mmap_find(t, sym[i], sym[i + 1]);
            if (ms && ms->rank < best) { best = ms->rank; at = i; merged = ms->merged; }
        }
        if (merged < 0) break;
        sym[at] = merged;
        memmove(sym + at + 1, sym + at + 2, (m - at - 2) * sizeof *sym);
        m--;
    }
    for (size_t i = 0; i < m; i++) emit(c, sym[i]);
    return DSV4_OK;
}

static dsv4_status split(enc *c, int level, const char *s, size_t n)
{
    if (n == 0) return DSV4_OK;
    if (level >= c->t->n_re) return bpe(c, s, n);
    pcre2_code *re = c->t->re[level];
    size_t pos = 0, gap = 0;
    while (pos < n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, c->md, c->mc);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            char msg[256];
            pcre2_get_error_message(rc, (PCRE2_UCHAR *)msg, sizeof msg);
            return dsv4__fail(c->e, DSV4_ERR_INTERNAL, "pre-tokenizer regex failed: %s", msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* empty match: step one character */
            pos = ms + 1;
            while (pos < n && ((uint8_t)s[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        dsv4_status st = split(c, level + 1, s + gap, ms - gap);
        if (!st) st = split(c, level + 1, s + ms, me - ms);
        if (st) return st;
        pos = gap = me;
    }
    return split(c, level + 1, s + gap, n - gap);
}

DSV4_API dsv4_status dsv4_tokenizer_encode(const dsv4_tokenizer *t, const char *text, size_t len, uint32_t flags,
                                           int32_t *ids, size_t cap, size_t *n_out, char **err_msg)
{
    dsv4__err e = {0};
    atomic_fetch_add_explicit(&n_encodes, 1, memory_order_relaxed);
    if (err_msg) *err_msg = NULL;
    if (n_out) *n_out = 0;
    if (!t || !n_out || (!text && len) || (!ids && cap)) {
        dsv4__fail(&e, DSV4_ERR_INVALID_ARGUMENT, "dsv4_tokenizer_encode: NULL argument");
        return dsv4__err_out(&e, err_msg);
    }
    if (flags & ~(uint32_t)(DSV4_ENCODE_ADD_BOS | DSV4_ENCODE_NO_SPECIAL)) {
        dsv4__fail(&e, DSV4_ERR_INVALID_ARGUMENT, "dsv4_tokenizer_encode: unknown flags 0x%x", flags);
        return dsv4__err_out(&e, err_msg);
    }
    if (len > DSV4_TOKENIZER_MAX_TEXT) {
        dsv4__fail(&e, DSV4_ERR_INVALID_ARGUMENT, "dsv4_tokenizer_encode: text of %zu bytes exceeds the limit of %zu",
                   len, (size_t)DSV4_TOKENIZER_MAX_TEXT);
        return dsv4__err_out(&e, err_msg);
    }
    size_t bad = dsv4__utf8_check(text, len);
    if (bad != len) {
        dsv4__fail(&e, DSV4_ERR_INVALID_ARGUMENT, "dsv4_tokenizer_encode: invalid UTF-8 at byte offset %zu", bad);
        return dsv4__err_out(&e, err_msg);
    }
    if ((flags & DSV4_ENCODE_ADD_BOS) && t->special[DSV4_TOKEN_BOS] < 0) {
        dsv4__fail(&e, DSV4_ERR_INVALID_ARGUMENT, "dsv4_tokenizer_encode: this tokenizer has no BOS token");
        return dsv4__err_out(&e, err_msg);
    }
    enc c = {.t = t, .ids = ids, .cap = cap, .e = &e};
    c.md = pcre2_match_data_create(1, NULL);
    /* the default limit of 10 M backtracking steps refused a run of 10 M
     * spaces (the whitespace alternatives scan the run once each) */
    c.mc = c.md ? pcre2_match_context_create(NULL) : NULL;
    if (c.mc) pcre2_set_match_limit(c.mc, UINT32_MAX);
    if (!c.mc) {
        pcre2_match_data_free(c.md);
        dsv4__fail(&e, DSV4_ERR_OUT_OF_MEMORY, "out of memory");
        return dsv4__err_out(&e, err_msg);
    }
    if (flags & DSV4_ENCODE_ADD_BOS) emit(&c, t->special[DSV4_TOKEN_BOS]);
    dsv4_status st = DSV4_OK;
    size_t span = 0, i = 0;
    int match_added = !(flags & DSV4_ENCODE_NO_SPECIAL);
    while (match_added && i < len) {
        if (!t->first_byte[(uint8_t)text[i]]) { i++; continue; }
        int32_t node = 0, best = -1;
        size_t best_end = 0;
        for (size_t k = i; k < len; k++) {
            int32_t ch = t->trie[node].child;
            while (ch >= 0 && t->trie[ch].byte != (uint8_t)text[k]) ch = t->trie[ch].next;
            if (ch < 0) break;
            node = ch;
            if (t->trie[node].id >= 0) { best = t->trie[node].id; best_end = k + 1; }
        }
        if (best < 0) { i++; continue; }
        st = split(&c, 0, text + span, i - span);
        if (st) break;
        emit(&c, best);
        i = span = best_end;
    }
    if (!st) st = split(&c, 0, text + span, len - span);
    pcre2_match_data_free(c.md);
    pcre2_match_context_free(c.mc);
    dsv4__free(c.sym);
    dsv4__free(c.nxt);
    dsv4__free(c.prv);
    dsv4__free(c.heap);
    if (st) return dsv4__err_out(&e, err_msg);
    *n_out = c.n;
    if (c.n > cap) {
        dsv4__fail(&e, DSV4_ERR_BUFFER_TOO_SMALL, "dsv4_tokenizer_encode: %zu ids do not fit in %zu", c.n, cap);
        return dsv4__err_out(&e, err_msg);
    }
    return DSV4_OK;
}

/* ---- decoding ----------------------------------------------------------- */

static int valid_id(const dsv4_tokenizer *t, int32_t id)
{
    return t && id >= 0 && id < t->n_ids && (t->flags[id] & 1);
}

DSV4_API dsv4_status dsv4_tokenizer_decode(const dsv4_tokenizer *t, const int32_t *ids, size_t n, char *buf,
                                           size_t cap, size_t *len_out)
{
    if (len_out) *len_out = 0;
    if (!t || !len_out || (!ids && n) || (!buf && cap)) return DSV4_ERR_INVALID_ARGUMENT;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!valid_id(t, ids[i])) return DSV4_ERR_INVALID_ARGUMENT;
        total += t->off[ids[i] + 1] - t->off[ids[i]];
    }
    *len_out = total;
    if (total > cap) return DSV4_ERR_BUFFER_TOO_SMALL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const char *b = tok_bytes(t, ids[i], &l);
        memcpy(buf + o, b, l);
        o += l;
    }
    return DSV4_OK;
}

DSV4_API dsv4_status dsv4_tokenizer_token_to_piece(const dsv4_tokenizer *t, int32_t id, char *buf, size_t cap,
                                                   size_t *len_out)
{
    return dsv4_tokenizer_decode(t, &id, 1, buf, cap, len_out);
}

DSV4_API dsv4_status dsv4_tokenizer_piece_to_token(const dsv4_tokenizer *t, const char *piece, size_t len,
                                                   int32_t *id)
{
    if (id) *id = -1;
    if (!t || !id || (!piece && len)) return DSV4_ERR_INVALID_ARGUMENT;
    int32_t v = len ? vmap_find(t, piece, len) : -1;
    if (v < 0 && len) {
        int32_t node = 0;
        for (size_t k = 0; k < len && node >= 0; k++) {
            int32_t ch = t->trie[node].child;
            while (ch >= 0 && t->trie[ch].byte != (uint8_t)piece[k]) ch = t->trie[ch].next;
            node = ch;
        }
        if (node > 0) v = t->trie[node].id;
    }
    if (v < 0) return DSV4_ERR_INVALID_ARGUMENT;
    *id = v;
    return DSV4_OK;
}

DSV4_API int32_t dsv4_tokenizer_vocab_size(const dsv4_tokenizer *t) { return t ? t->n_ids : -1; }

DSV4_API int32_t dsv4_tokenizer_special_id(const dsv4_tokenizer *t, dsv4_special_token which)
{
    if (!t || (int)which < 0 || (int)which >= DSV4__N_SPECIAL) return -1;
    return t->special[which];
}

DSV4_API int dsv4_tokenizer_is_special(const dsv4_tokenizer *t, int32_t id)
{
    return valid_id(t, id) && (t->flags[id] & 4) ? 1 : 0;
}

/* ---- streaming detokenizer --------------------------------------------- */

DSV4_API dsv4_status dsv4_detok_create(const dsv4_tokenizer *t, dsv4_detok **out)
{
    if (out) *out = NULL;
    if (!t || !out) return DSV4_ERR_INVALID_ARGUMENT;
    dsv4_detok *d = dsv4__calloc(1, sizeof *d);
    if (!d) return DSV4_ERR_OUT_OF_MEMORY;
    dsv4__tokenizer_retain(t);
    d->tok = t;
    *out = d;
    return DSV4_OK;
}

DSV4_API void dsv4_detok_free(dsv4_detok *d)
{
    if (!d) return;
    dsv4__tokenizer_release(d->tok);
    dsv4__free(d);
}

DSV4_API size_t dsv4_detok_max_chunk(const dsv4_detok *d)
{
    return d ? (size_t)d->tok->max_piece + 4 : 0;
}

DSV4_API dsv4_status dsv4_detok_feed(dsv4_detok *d, int32_t id, char *buf, size_t cap, size_t *len_out)
{
    if (len_out) *len_out = 0;
    if (!d || !len_out || (!buf && cap) || !valid_id(d->tok, id)) return DSV4_ERR_INVALID_ARGUMENT;
    size_t l;
    const char *p = tok_bytes(d->tok, id, &l);
    size_t total = d->n_pend + l;
    /* the held-back tail of pend+p: compute on a small window */
    uint8_t win[8];
    size_t wn = 0;
    for (size_t k = total > 3 ? total - 3 : 0; k < total; k++)
        win[wn++] = (uint8_t)(k < d->n_pend ? d->pend[k] : p[k - d->n_pend]);
    size_t hold = dsv4__utf8_incomplete_tail((const char *)win, wn);
    size_t outn = total - hold;
    if (outn > cap) {
        *len_out = outn;
        return DSV4_ERR_BUFFER_TOO_SMALL;
    }
    char newpend[4];
    for (size_t k = 0; k < hold; k++) {
        size_t g = outn + k;
        newpend[k] = g < d->n_pend ? d->pend[g] : p[g - d->n_pend];
    }
    size_t o = 0;
    for (size_t k = 0; k < d->n_pend && o < outn; k++) buf[o++] = d->pend[k];
    if (o < outn) {
        memcpy(buf + o, p, outn - o);
        o = outn;
    }
    memcpy(d->pend, newpend, hold);
    d->n_pend = hold;
    *len_out = outn;
    return DSV4_OK;
}

DSV4_API dsv4_status dsv4_detok_flush(dsv4_detok *d, char *buf, size_t cap, size_t *len_out)
{
    if (len_out) *len_out = 0;
    if (!d || !len_out || (!buf && cap)) return DSV4_ERR_INVALID_ARGUMENT;
    if (d->n_pend > cap) {
        *len_out = d->n_pend;
        return DSV4_ERR_BUFFER_TOO_SMALL;
    }
    memcpy(buf, d->pend, d->n_pend);
    *len_out = d->n_pend;
    d->n_pend = 0;
    return DSV4_OK;
}
