/* lib/core/utf8.c — strict UTF-8 decoding, checking, streaming validation
 * and repair (see utf8.h). */
#include "core/utf8.h"

#include <string.h>
#include "core/core.h"

/* Continuation bytes after lead byte c, and the range of the first one
 * (the rest are 0x80..0xBF); -1 for a byte that cannot lead. */
static int lead(unsigned c, uint8_t *lo, uint8_t *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (c < 0x80) return 0;
    if (c >= 0xC2 && c <= 0xDF) return 1;
    if (c == 0xE0) { *lo = 0xA0; return 2; }
    if (c == 0xED) { *hi = 0x9F; return 2; } /* no surrogates */
    if (c >= 0xE1 && c <= 0xEF) return 2;
    if (c == 0xF0) { *lo = 0x90; return 3; }
    if (c >= 0xF1 && c <= 0xF3) return 3;
    if (c == 0xF4) { *hi = 0x8F; return 3; } /* nothing above U+10FFFF */
    return -1;
}

size_t dsv4__utf8_decode(const char *s, size_t n, uint32_t *cp)
{
    const uint8_t *u = (const uint8_t *)s;
    if (n == 0) return 0;
    if (u[0] < 0x80) { *cp = u[0]; return 1; }
    uint8_t lo, hi;
    int need = lead(u[0], &lo, &hi);
    if (need < 0 || (size_t)need >= n || u[1] < lo || u[1] > hi) return 0;
    uint32_t v = u[0] & (0x7Fu >> (need + 1));
    for (int i = 1; i <= need; i++) {
        if ((u[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (u[i] & 0x3F);
    }
    *cp = v;
    return (size_t)need + 1;
}

size_t dsv4__utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp > 0x10FFFF) return 0;
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t dsv4__utf8_check(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if ((uint8_t)s[i] < 0x80) { i++; continue; }
        uint32_t cp;
        size_t l = dsv4__utf8_decode(s + i, n - i, &cp);
        if (!l) return i;
        i += l;
    }
    return n;
}

size_t dsv4__utf8_incomplete_tail(const char *s, size_t n)
{
    const uint8_t *u = (const uint8_t *)s;
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        if ((u[n - back] & 0xC0) == 0x80) continue; /* continuation: look further back */
        dsv4__utf8_dfa d = { 0, 0, 0 };
        for (size_t k = back; k > 0; k--)
            if (!dsv4__utf8_dfa_step(&d, u[n - k])) return 0;
        return d.need ? back : 0;
    }
    return 0;
}

int dsv4__utf8_owed(int owed, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (owed > 0 && (c & 0xC0) == 0x80) owed--;
        else owed = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    }
    return owed;
}

int dsv4__utf8_dfa_step(dsv4__utf8_dfa *d, unsigned b)
{
    if (d->need) {
        if (b < d->lo || b > d->hi) return 0;
        d->need--;
        d->lo = 0x80;
        d->hi = 0xBF;
        return 1;
    }
    uint8_t lo, hi;
    int need = b > 0xFF ? -1 : lead(b, &lo, &hi);
    if (need < 0) return 0;
    if (need > 0) {
        d->need = (uint8_t)need;
        d->lo = lo;
        d->hi = hi;
    }
    return 1;
}

char *dsv4__utf8_clean(const char *s, size_t n, size_t *out_len)
{
    char *o = dsv4__malloc(3 * n + 1), *w = o;
    if (!o) return NULL;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t l = dsv4__utf8_decode(s + i, n - i, &cp);
        if (l) {
            memcpy(w, s + i, l);
            w += l;
            i += l;
        } else {
            memcpy(w, "\xEF\xBF\xBD", 3);
            w += 3;
            i++;
        }
    }
    *w = 0;
    *out_len = (size_t)(w - o);
    return o;
}
