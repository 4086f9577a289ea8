/*
 * tests/fuzz/fuzz_constraint.c — the constraint machine driven by bytes.
 * Input: byte 0 (bit 0: tools, else JSON schema; bit 1: object_only /
 * REQUIRED), then a schema or tools text up to the first NUL, then the
 * bytes to feed, in pieces of 1 to 8 bytes. Properties: allows() answers
 * as feed() does and never changes the state; a refused piece leaves the
 * state unchanged (byte for byte the clone taken before); at every state
 * met at a refusal, every 64th step and at the end, the completion is
 * accepted and completes (each such state checked once). With no NUL the schema is empty
 * (any JSON) and all bytes are fed.
 */
#include "fuzz_common.h"
#include "gen/constrain.h"

static void check_completion(const dsv4__cons *c)
{
    char buf[256];
    size_t need = dsv4__cons_completion(c, buf, sizeof buf);
    char *comp = need < sizeof buf ? buf : malloc(need + 1);
    if (comp != buf) dsv4__cons_completion(c, comp, need + 1);
    dsv4__cons *k = dsv4__cons_clone(c);
    if (k) {
        FUZZ_ASSERT(dsv4__cons_feed(k, comp, need) && dsv4__cons_complete(k), "completion (%zu bytes) fails", need);
        dsv4__cons_free(k);
    }
    if (comp != buf) free(comp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    const char *nul = memchr(s, 0, n);
    size_t sl = nul ? (size_t)(nul - s) : 0;
    const char *text = nul ? nul + 1 : s;
    size_t tl = n - (size_t)(text - s);
    dsv4__cons *c = NULL;
    dsv4__err e = { 0, "" };
    dsv4_status st = (data[0] & 1) ? dsv4__cons_dsml(s, sl, data[0] & 2 ? DSV4__TOOLS_REQUIRED : DSV4__TOOLS_AUTO,
                                                     NULL, &c, &e)
                                   : dsv4__cons_json(sl ? s : NULL, sl, (data[0] >> 1) & 1, &c, &e);
    if (st) return 0;
    size_t at = 0;
    unsigned piece = 1;
    int steps = 0, changed = 1;
    while (at < tl) {
        piece = (piece * 5 + (unsigned char)text[at]) % 8 + 1;
        size_t k = piece < tl - at ? piece : tl - at;
        int allowed = dsv4__cons_allows(c, text + at, k);
        dsv4__cons *before = allowed ? NULL : dsv4__cons_clone(c);
        int fed = dsv4__cons_feed(c, text + at, k);
        FUZZ_ASSERT(allowed == fed, "allows %d, feed %d at byte %zu", allowed, fed, at);
        /* refused: the state is that of before, byte for byte */
        if (!fed && before) FUZZ_ASSERT(dsv4__cons_same_state(c, before), "refused feed moved the state");
        dsv4__cons_free(before);
        changed |= fed;
        /* the completion of every state met at a refusal, of every 64th
         * step and of the last one; a state is checked once (the check is
         * a function of the state, and refusals leave it unchanged) */
        int due = (++steps & 63) == 0 || !fed;
        if (changed && due) {
            check_completion(c);
            changed = 0;
        }
        at += fed ? k : 1; /* a refused piece: skip one byte and go on */
    }
    if (changed) check_completion(c);
    dsv4__cons_free(c);
    return 0;
}
