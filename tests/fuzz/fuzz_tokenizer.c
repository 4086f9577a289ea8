/*
 * tests/fuzz/fuzz_tokenizer.c — the DeepSeek-V4 tokenizer on any bytes.
 * Byte 0 picks the mode, the rest is the input:
 *  - even: the input as text (flags from byte 0): encode; valid UTF-8 must
 *    encode, decode back to the same bytes (without BOS) and give the same
 *    bytes through the streaming detokenizer, each chunk whole characters;
 *  - odd: the input as token ids (3 bytes each): decode and the streaming
 *    detokenizer (feed, flush) must agree; bad ids are refused by both.
 */
#include "fuzz_common.h"

/* strict UTF-8: no overlong forms, surrogates or code points over U+10FFFF */
static size_t utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t k = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!k || i + k > n) return 0;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return 0;
        uint8_t d = s[i + 1];
        if ((c == 0xE0 && d < 0xA0) || (c == 0xED && d >= 0xA0) || (c == 0xF0 && d < 0x90) || (c == 0xF4 && d >= 0x90))
            return 0;
        i += k;
    }
    return 1;
}

/* the streaming detokenizer's output for ids; NULL if an id is refused */
static char *stream(dsv4_tokenizer *tok, const int32_t *ids, size_t n, size_t *len)
{
    dsv4_detok *d = NULL;
    FUZZ_ASSERT(dsv4_detok_create(tok, &d) == DSV4_OK, "detok_create");
    size_t mc = dsv4_detok_max_chunk(d), o = 0;
    char *out = malloc(n * mc + mc + 1);
    for (size_t i = 0; i < n; i++) {
        size_t l = 0;
        if (dsv4_detok_feed(d, ids[i], out + o, mc, &l) != DSV4_OK) {
            dsv4_detok_free(d);
            free(out);
            return NULL;
        }
        o += l;
    }
    size_t l = 0;
    FUZZ_ASSERT(dsv4_detok_flush(d, out + o, mc, &l) == DSV4_OK, "flush");
    o += l;
    dsv4_detok_free(d);
    *len = o;
    return out;
}

/* the tokenizer loads before the first input (outside its time limit) */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_tokenizer();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dsv4_tokenizer *tok = fuzz_tokenizer();
    if (size < 1) return 0;
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    if (!(data[0] & 1)) {
        uint32_t flags = (data[0] & 2 ? DSV4_ENCODE_NO_SPECIAL : 0) | (data[0] & 4 ? DSV4_ENCODE_ADD_BOS : 0);
        size_t cap = n + 2, cnt = 0;
        int32_t *ids = malloc(cap * sizeof *ids);
        dsv4_status st = dsv4_tokenizer_encode(tok, (const char *)in, n, flags, ids, cap, &cnt, NULL);
        FUZZ_ASSERT(st == DSV4_OK || (st == DSV4_ERR_INVALID_ARGUMENT && !utf8_ok(in, n)), "encode status %d", st);
        if (st == DSV4_OK) {
            size_t skip = (flags & DSV4_ENCODE_ADD_BOS) ? 1 : 0, dl = 0;
            char *dec = malloc(n + 1);
            dsv4_status ds = dsv4_tokenizer_decode(tok, ids + skip, cnt - skip, dec, n + 1, &dl);
            FUZZ_ASSERT(ds == DSV4_OK && dl == n && memcmp(dec, in, n) == 0, "decode round trip (status %d)", ds);
            size_t sl = 0;
            char *s = stream(tok, ids + skip, cnt - skip, &sl);
            FUZZ_ASSERT(s && sl == n && memcmp(s, in, n) == 0, "streaming round trip");
            free(s);
            free(dec);
        }
        free(ids);
    } else {
        size_t cnt = n / 3;
        int32_t *ids = malloc((cnt + 1) * sizeof *ids);
        int32_t V = dsv4_tokenizer_vocab_size(tok);
        for (size_t i = 0; i < cnt; i++) {
            uint32_t v = (uint32_t)in[3 * i] << 16 | (uint32_t)in[3 * i + 1] << 8 | in[3 * i + 2];
            ids[i] = (int32_t)(v % (uint32_t)(V + 16)) - 8; /* a few out of range both ways */
        }
        size_t need = 0;
        char one[1];
        dsv4_status st = dsv4_tokenizer_decode(tok, ids, cnt, one, 0, &need);
        char *dec = NULL;
        if (st == DSV4_ERR_BUFFER_TOO_SMALL || st == DSV4_OK) {
            dec = malloc(need + 1);
            size_t dl = 0;
            st = dsv4_tokenizer_decode(tok, ids, cnt, dec, need + 1, &dl);
            FUZZ_ASSERT(st == DSV4_OK && dl == need, "decode with the size it asked for: %d", st);
        }
        size_t sl = 0;
        char *s = stream(tok, ids, cnt, &sl);
        FUZZ_ASSERT((s != NULL) == (st == DSV4_OK), "streaming and decode disagree on refusing (%d)", st);
        if (s) FUZZ_ASSERT(sl == need && memcmp(s, dec, sl) == 0, "streaming bytes differ from decode");
        free(s);
        free(dec);
        free(ids);
    }
    return 0;
}
