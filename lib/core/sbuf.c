/* lib/core/sbuf.c — the growable byte string (see sbuf.h). */
#include "core/sbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "core/core.h"

/* room for n more bytes and the NUL */
static int reserve(dsv4__sbuf *b, size_t n)
{
    if (n > SIZE_MAX / 4 - b->n) return -1;
    if (b->n + n + 1 <= b->cap) return 0;
    size_t c = b->cap ? b->cap : 64;
    while (c < b->n + n + 1) c *= 2;
    char *p = dsv4__realloc(b->p, c);
    if (!p) return -1;
    b->p = p;
    b->cap = c;
    return 0;
}

int dsv4__sbuf_add(dsv4__sbuf *b, const char *s, size_t n)
{
    if (reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

int dsv4__sbuf_puts(dsv4__sbuf *b, const char *s) { return dsv4__sbuf_add(b, s, strlen(s)); }

int dsv4__sbuf_printf(dsv4__sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0 || reserve(b, (size_t)k)) return -1;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
    return 0;
}

void dsv4__sbuf_free(dsv4__sbuf *b)
{
    dsv4__free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}
