/*
 * tests/core/test_core.c — the shared helpers of lib/core: UTF-8 (checked
 * exhaustively against a plain reference decoder over every sequence of up
 * to 3 bytes and a sample of 4-byte ones), the growable string (including
 * failed allocations), typed JSON fields and the reasoning_effort mapping.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/core.h"
#include "core/effort.h"
#include "core/jsonf.h"
#include "core/sbuf.h"
#include "core/utf8.h"
#include "testutil.h"

#define T(c) CHECK((c), "%s", #c)

/* reference: the definition of UTF-8 written out (length by lead-byte bit
 * pattern, then the code point's range) */
static size_t ref_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0) return 0;
    unsigned c = s[0];
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!len || len > n) return 0;
    uint32_t v = len == 1 ? c : c & (0xFFu >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
    if (v < min[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

/* reference: is s[0, n) the start of some valid sequence (not complete)?
 * Only the byte after the lead has a lead-dependent range, so trying every
 * continuation byte next and 0x80 after it covers all completions. */
static int ref_incomplete(const unsigned char *s, size_t n)
{
    unsigned char t[4];
    memcpy(t, s, n);
    for (unsigned a = 0x80; a <= 0xBF; a++) {
        t[n] = (unsigned char)a;
        for (size_t k = n + 1; k < 4; k++) t[k] = 0x80;
        for (size_t len = n + 1; len <= 4; len++) {
            uint32_t cp;
            if (ref_decode(t, len, &cp) == len) return 1;
        }
    }
    return 0;
}

static void utf8_decode_all(void)
{
    int bad = 0;
    unsigned char s[4];
    /* every 1-, 2- and 3-byte string; 4-byte strings with a sampled tail */
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            for (unsigned c = 0; c < 256; c += (a >= 0xE0 ? 1 : 64)) {
                static const unsigned char ds[] = { 0x7F, 0x80, 0x8F, 0x90, 0xBF, 0xC0 };
                for (size_t di = 0; di < (a >= 0xF0 ? sizeof ds : 1); di++) {
                    unsigned d = ds[di];
                    s[0] = (unsigned char)a, s[1] = (unsigned char)b, s[2] = (unsigned char)c, s[3] = (unsigned char)d;
                    for (size_t n = 1; n <= 4; n++) {
                        uint32_t c1 = 0xFFFFFFFF, c2 = 0xFFFFFFFF;
                        size_t l1 = dsv4__utf8_decode((const char *)s, n, &c1), l2 = ref_decode(s, n, &c2);
                        if (l1 != l2 || (l1 && c1 != c2)) {
                            if (bad++ < 5) printf("  decode %02x %02x %02x %02x (n %zu): %zu/%x vs %zu/%x\n", a, b, c, d, n, l1, c1, l2, c2);
                        }
                    }
                }
            }
        }
    }
    CHECK(bad == 0, "utf8_decode agrees with the reference: %d differ", bad);
}

static void utf8_encode_all(void)
{
    int bad = 0;
    for (uint32_t cp = 0; cp <= 0x110001; cp++) {
        char o[4];
        uint32_t back = 0;
        size_t l = dsv4__utf8_encode(cp, o);
        int want = !(cp >= 0xD800 && cp <= 0xDFFF) && cp <= 0x10FFFF;
        if (want != (l != 0) || (l && (dsv4__utf8_decode(o, l, &back) != l || back != cp))) bad++;
    }
    CHECK(bad == 0, "utf8_encode round-trips every code point and refuses surrogates and > U+10FFFF: %d bad", bad);
}

static void utf8_stream(void)
{
    /* the DFA accepts exactly the valid strings, byte by byte; incomplete_tail
     * is the reference's "a valid prefix" on the last 1..3 bytes */
    int bad_dfa = 0, bad_tail = 0;
    unsigned char s[4];
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            for (unsigned c = 0x70; c < 0xD0; c += 0x0F) {
                s[0] = (unsigned char)a, s[1] = (unsigned char)b, s[2] = (unsigned char)c;
                for (size_t n = 1; n <= 3; n++) {
                    dsv4__utf8_dfa d = { 0, 0, 0 };
                    int ok = 1;
                    for (size_t i = 0; i < n && ok; i++) ok = dsv4__utf8_dfa_step(&d, s[i]);
                    int whole = ok && d.need == 0;
                    int valid = dsv4__utf8_check((const char *)s, n) == n;
                    if (whole != valid) bad_dfa++;
                    /* tail: the last k bytes after a complete prefix */
                    size_t tail = dsv4__utf8_incomplete_tail((const char *)s, n);
                    size_t want = 0;
                    for (size_t k = 1; k <= n && k <= 3; k++) {
                        if ((s[n - k] & 0xC0) == 0x80) continue;
                        want = ref_incomplete(s + n - k, k) ? k : 0;
                        break;
                    }
                    if (tail != want && bad_tail++ < 5)
                        printf("  tail %02x %02x %02x (n %zu): %zu, want %zu\n", a, b, c, n, tail, want);
                }
            }
        }
    }
    CHECK(bad_dfa == 0, "utf8_dfa accepts exactly the valid strings: %d differ", bad_dfa);
    CHECK(bad_tail == 0, "utf8_incomplete_tail: %d differ", bad_tail);
    /* a rejected byte leaves the state as it was */
    dsv4__utf8_dfa d = { 0, 0, 0 };
    T(dsv4__utf8_dfa_step(&d, 0xE0) && d.need == 2 && d.lo == 0xA0);
    T(!dsv4__utf8_dfa_step(&d, 0x80) && d.need == 2 && d.lo == 0xA0);
    T(dsv4__utf8_dfa_step(&d, 0xA0) && d.need == 1 && d.lo == 0x80 && !dsv4__utf8_dfa_step(&d, 0x41));
    T(dsv4__utf8_dfa_step(&d, 0x80) && d.need == 0);
    T(!dsv4__utf8_dfa_step(&d, 0x100) && !dsv4__utf8_dfa_step(&d, 0xC0) && !dsv4__utf8_dfa_step(&d, 0xF5));
    T(dsv4__utf8_dfa_step(&d, 0xED) && !dsv4__utf8_dfa_step(&d, 0xA0)); /* no surrogates */
    T(dsv4__utf8_dfa_step(&d, 0x9F) && dsv4__utf8_dfa_step(&d, 0xBF) && d.need == 0);

    /* check: offset of the first bad byte */
    T(dsv4__utf8_check("abc", 3) == 3);
    T(dsv4__utf8_check("a\0b", 3) == 3);
    T(dsv4__utf8_check("ab\xc3", 3) == 2);
    T(dsv4__utf8_check("\xe4\xb8\xad\xff", 4) == 3);
    T(dsv4__utf8_check("\xf0\x9f\x98\x80" "x\xc0\x80", 7) == 5);
    T(dsv4__utf8_check("", 0) == 0);

    /* owed: a count by byte class (the generator's whole-character test) */
    T(dsv4__utf8_owed(0, "a", 1) == 0);
    T(dsv4__utf8_owed(0, "\xe4", 1) == 2 && dsv4__utf8_owed(2, "\xb8", 1) == 1 && dsv4__utf8_owed(1, "\xad", 1) == 0);
    T(dsv4__utf8_owed(0, "\xf0\x9f", 2) == 2 && dsv4__utf8_owed(0, "\xf0\x9f\x98\x80", 4) == 0);
    T(dsv4__utf8_owed(0, "\x80", 1) == 0 && dsv4__utf8_owed(0, "\xc0", 1) == 1 && dsv4__utf8_owed(3, "a", 1) == 0);
    T(dsv4__utf8_owed(2, "\xe4", 1) == 2); /* a new lead restarts the count */
}

static void utf8_clean(void)
{
    size_t n = 0;
    char *c = dsv4__utf8_clean("a\xff" "b\xe4\xb8\xad\xe4\xb8" "\0z\xed\xa0\x80", 13, &n);
    static const char want[] = "a\xef\xbf\xbd" "b\xe4\xb8\xad\xef\xbf\xbd\xef\xbf\xbd" "\0z\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd";
    CHECK(c && n == sizeof want - 1 && memcmp(c, want, n) == 0 && c[n] == 0, "utf8_clean: %zu bytes", n);
    dsv4__free(c);
    c = dsv4__utf8_clean("", 0, &n);
    T(c && n == 0 && c[0] == 0);
    dsv4__free(c);
    dsv4__alloc_fail_after(1);
    T(dsv4__utf8_clean("x", 1, &n) == NULL);
    dsv4__alloc_fail_after(0);
}

static void sbuf(void)
{
    dsv4__sbuf b = { 0 };
    T(dsv4__sbuf_add(&b, NULL, 0) == 0 && b.p && b.n == 0 && b.p[0] == 0);
    T(dsv4__sbuf_puts(&b, "ab") == 0 && dsv4__sbuf_add(&b, "c\0d", 3) == 0 && b.n == 5 && memcmp(b.p, "abc\0d", 6) == 0);
    T(dsv4__sbuf_printf(&b, "-%d-%s", 42, "x") == 0 && b.n == 10 && strcmp(b.p + 5, "-42-x") == 0);
    /* growth past many doublings keeps every byte */
    char big[5000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)('a' + i % 26);
    int ok = 1;
    for (int k = 0; k < 40; k++) ok &= dsv4__sbuf_add(&b, big, sizeof big) == 0;
    ok &= b.n == 10 + 40 * sizeof big && b.cap > b.n && b.p[b.n] == 0;
    for (int k = 0; k < 40 && ok; k++) ok = memcmp(b.p + 10 + (size_t)k * sizeof big, big, sizeof big) == 0;
    CHECK(ok, "sbuf: 200 000 bytes appended in pieces, all kept (n %zu)", b.n);
    /* long printf output goes straight into the buffer */
    size_t before = b.n;
    T(dsv4__sbuf_printf(&b, "%.*s%s", (int)sizeof big, big, "!") == 0 && b.n == before + sizeof big + 1 && b.p[b.n - 1] == '!');
    /* a failed allocation reports -1 and leaves the string as it was */
    dsv4__sbuf s = { 0 };
    T(dsv4__sbuf_puts(&s, "keep") == 0);
    size_t cap = s.cap;
    char *p = s.p;
    dsv4__alloc_fail_after(1);
    T(dsv4__sbuf_add(&s, big, sizeof big) == -1 && s.p == p && s.n == 4 && s.cap == cap && strcmp(s.p, "keep") == 0);
    dsv4__alloc_fail_after(1);
    T(dsv4__sbuf_printf(&s, "%.*s", (int)sizeof big, big) == -1 && s.n == 4 && strcmp(s.p, "keep") == 0);
    dsv4__alloc_fail_after(0);
    T(dsv4__sbuf_add(&s, "!", 1) == 0 && strcmp(s.p, "keep!") == 0);
    dsv4__sbuf_free(&s);
    T(s.p == NULL && s.n == 0 && s.cap == 0);
    dsv4__sbuf_free(&b);
    dsv4__sbuf_free(&b); /* twice is harmless */
}

static void jsonf(void)
{
    json_t *o = json_loads("{\"s\": \"x\", \"i\": 7, \"big\": 9000000000, \"r\": 0.5, \"b\": true, \"z\": null, \"a\": [1]}", 0, NULL);
    T(o != NULL);
    T(dsv4__jsonf_str(o, "s") && strcmp(dsv4__jsonf_str(o, "s"), "x") == 0);
    T(!dsv4__jsonf_str(o, "i") && !dsv4__jsonf_str(o, "nope") && !dsv4__jsonf_str(NULL, "s"));
    T(!dsv4__jsonf_str(json_object_get(o, "a"), "s")); /* not an object */
    dsv4__err e = { 0, "" };
    double d = -1;
    int64_t i = -1;
    int b = -1, has = -1;
    T(dsv4__jsonf_num(o, "r", 0, 1, &d, &has, &e) == DSV4_OK && has == 1 && d == 0.5);
    T(dsv4__jsonf_num(o, "i", 0, 10, &d, &has, &e) == DSV4_OK && has == 1 && d == 7);
    d = -1;
    T(dsv4__jsonf_num(o, "z", 0, 1, &d, &has, &e) == DSV4_OK && has == 0 && d == -1);
    T(dsv4__jsonf_num(o, "nope", 0, 1, &d, &has, &e) == DSV4_OK && has == 0 && d == -1);
    T(dsv4__jsonf_num(o, "s", 0, 1, &d, &has, &e) == DSV4_ERR_INVALID_ARGUMENT && has == 0 &&
      strcmp(e.msg, "\"s\" must be a number") == 0);
    T(dsv4__jsonf_num(o, "i", 0, 1, &d, &has, &e) == DSV4_ERR_INVALID_ARGUMENT && d == -1 &&
      strcmp(e.msg, "\"i\" = 7 is outside [0, 1]") == 0);
    T(dsv4__jsonf_int(o, "i", 0, 10, &i, &has, &e) == DSV4_OK && has == 1 && i == 7);
    T(dsv4__jsonf_int(o, "big", 0, INT32_MAX, &i, &has, &e) == DSV4_ERR_INVALID_ARGUMENT && i == 7 &&
      strstr(e.msg, "9000000000 is outside"));
    T(dsv4__jsonf_int(o, "r", 0, 1, &i, &has, &e) == DSV4_ERR_INVALID_ARGUMENT && strcmp(e.msg, "\"r\" must be an integer") == 0);
    T(dsv4__jsonf_int(o, "z", 0, 1, &i, &has, NULL) == DSV4_OK && has == 0);
    T(dsv4__jsonf_bool(o, "b", &b, &has, &e) == DSV4_OK && has == 1 && b == 1);
    T(dsv4__jsonf_bool(o, "i", &b, &has, &e) == DSV4_ERR_INVALID_ARGUMENT && strcmp(e.msg, "\"i\" must be a boolean") == 0);
    T(dsv4__jsonf_bool(o, "i", &b, &has, NULL) == DSV4_ERR_INVALID_ARGUMENT); /* e may be NULL */
    T(dsv4__jsonf_bool(NULL, "b", &b, &has, &e) == DSV4_OK && has == 0);
    json_decref(o);
}

static void effort(void)
{
    static const struct { const char *name; int want; } cases[] = {
        { "none", DSV4_EFFORT_NONE }, { "minimal", DSV4_EFFORT_LOW }, { "low", DSV4_EFFORT_LOW },
        { "medium", DSV4_EFFORT_MEDIUM }, { "high", DSV4_EFFORT_HIGH }, { "xhigh", DSV4_EFFORT_MAX },
        { "max", DSV4_EFFORT_MAX }, { "ultra", -1 }, { "High", -1 }, { "", -1 }, { NULL, -1 },
    };
    int bad = 0;
    for (size_t k = 0; k < DSV4__ARRAY_LEN(cases); k++) bad += dsv4__effort_parse(cases[k].name) != cases[k].want;
    CHECK(bad == 0, "effort names: %d wrong", bad);
    /* names round-trip through parse */
    for (int v = DSV4_EFFORT_NONE; v <= DSV4_EFFORT_MAX; v++)
        CHECK(dsv4__effort_name(v) && dsv4__effort_parse(dsv4__effort_name(v)) == v, "effort %d name", v);
    T(dsv4__effort_name(DSV4_EFFORT_DEFAULT) == NULL && dsv4__effort_name(6) == NULL && dsv4__effort_name(-1) == NULL);
    json_t *o = json_loads("{\"a\": \"xhigh\", \"b\": null, \"c\": 3, \"d\": \"extreme\"}", 0, NULL);
    dsv4__err e = { 0, "" };
    int v = -7;
    T(dsv4__effort_field(o, "a", &v, &e) == DSV4_OK && v == DSV4_EFFORT_MAX);
    T(dsv4__effort_field(o, "b", &v, &e) == DSV4_OK && v == DSV4_EFFORT_DEFAULT);
    T(dsv4__effort_field(o, "nope", &v, &e) == DSV4_OK && v == DSV4_EFFORT_DEFAULT);
    T(dsv4__effort_field(o, "c", &v, &e) == DSV4_ERR_INVALID_ARGUMENT && strcmp(e.msg, "c must be a string") == 0);
    T(dsv4__effort_field(o, "d", &v, &e) == DSV4_ERR_INVALID_ARGUMENT && strstr(e.msg, "d \"extreme\" is not one of"));
    json_decref(o);
}

int main(void)
{
    utf8_decode_all();
    utf8_encode_all();
    utf8_stream();
    utf8_clean();
    sbuf();
    jsonf();
    effort();
    return test_summary();
}
