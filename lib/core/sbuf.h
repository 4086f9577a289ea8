/*
 * lib/core/sbuf.h — the growable byte string of every layer (internal).
 * Zero-initialise ({0}) to start empty; p stays NUL-terminated after any
 * successful add (and may then be handed on: it is a dsv4__malloc block).
 */
#ifndef DSV4_CORE_SBUF_H
#define DSV4_CORE_SBUF_H

#include <stddef.h>

typedef struct dsv4__sbuf {
    char *p;        /* NULL until the first add */
    size_t n, cap;  /* bytes held (without the NUL), bytes allocated */
} dsv4__sbuf;

/* Append s[0, n) (NUL bytes allowed); 0, or -1 when out of memory (then b
 * is unchanged). Any add, even of 0 bytes, leaves p allocated. */
int dsv4__sbuf_add(dsv4__sbuf *b, const char *s, size_t n);
/* Append a NUL-terminated string; as dsv4__sbuf_add. */
int dsv4__sbuf_puts(dsv4__sbuf *b, const char *s);
/* Append printf-style text; as dsv4__sbuf_add (-1 also for a bad format). */
int dsv4__sbuf_printf(dsv4__sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Release the bytes; b is empty again. */
void dsv4__sbuf_free(dsv4__sbuf *b);

#endif
