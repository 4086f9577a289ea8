/*
 * tests/fuzz/fuzz_chat_parser.c — the chat output parser fed the same bytes
 * whole and cut at up to 8 points chosen by the input: the events (text
 * pieces of one kind merged) must be the same, whatever the cuts.
 * Input: byte 0 = thinking (bit 0) and number of cuts (bits 1-3); then one
 * byte per cut (its position, scaled to the text); then the text.
 */
#include "fuzz_common.h"

typedef struct { char *s; size_t n, cap; int last_type, last_index; } evlog;

static void add(evlog *l, const char *d, size_t n)
{
    if (l->n + n + 1 > l->cap) {
        while (l->n + n + 1 > l->cap) l->cap = l->cap ? 2 * l->cap : 256;
        l->s = realloc(l->s, l->cap);
        if (!l->s) abort();
    }
    if (n) memcpy(l->s + l->n, d, n);
    l->n += n;
    l->s[l->n] = 0;
}

static void drain(dsv4_chat_parser *p, evlog *l)
{
    for (;;) {
        dsv4_chat_event_type t;
        int32_t idx;
        const char *d;
        size_t n;
        FUZZ_ASSERT(dsv4_chat_parser_next(p, &t, &idx, &d, &n) == DSV4_OK, "next");
        if (t == DSV4_CHAT_EVENT_NONE) return;
        int text = t == DSV4_CHAT_EVENT_REASONING || t == DSV4_CHAT_EVENT_CONTENT || t == DSV4_CHAT_EVENT_ERROR ||
                   t == DSV4_CHAT_EVENT_TOOL_CALL_ARGS;
        if (!text || (int)t != l->last_type || idx != l->last_index) {
            char h[32];
            int hn = snprintf(h, sizeof h, "<%d/%d>", (int)t, (int)idx);
            add(l, h, (size_t)hn);
        }
        add(l, d, n);
        l->last_type = (int)t;
        l->last_index = idx;
    }
}

static char *events(const char *text, size_t n, int thinking, const size_t *cuts, int nc, size_t *len)
{
    evlog l = { NULL, 0, 0, -1, -2 };
    add(&l, "", 0);
    dsv4_chat_parser *p = NULL;
    FUZZ_ASSERT(dsv4_chat_parser_create(thinking, &p) == DSV4_OK, "create");
    size_t at = 0;
    for (int i = 0; i <= nc; i++) {
        size_t to = i < nc ? cuts[i] : n;
        FUZZ_ASSERT(dsv4_chat_parser_feed(p, text + at, to - at) == DSV4_OK, "feed");
        drain(p, &l);
        at = to;
    }
    FUZZ_ASSERT(dsv4_chat_parser_finish(p) == DSV4_OK, "finish");
    drain(p, &l);
    dsv4_chat_parser_free(p);
    *len = l.n;
    return l.s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int thinking = data[0] & 1, nc = (data[0] >> 1) & 7;
    if (size < 1 + (size_t)nc) return 0;
    const char *text = (const char *)data + 1 + nc;
    size_t n = size - 1 - (size_t)nc;
    size_t cuts[8];
    for (int i = 0; i < nc; i++) {
        size_t c = (size_t)data[1 + i] * (n + 1) / 256;
        size_t j = (size_t)i;
        while (j > 0 && cuts[j - 1] > c) { cuts[j] = cuts[j - 1]; j--; } /* keep sorted */
        cuts[j] = c;
    }
    size_t lw, lc;
    char *whole = events(text, n, thinking, NULL, 0, &lw);
    char *cut = events(text, n, thinking, cuts, nc, &lc);
    FUZZ_ASSERT(lw == lc && memcmp(whole, cut, lw) == 0, "events depend on the cuts:\n whole: %s\n cut:   %s", whole,
                cut);
    free(whole);
    free(cut);
    return 0;
}
