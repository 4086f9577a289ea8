/*
 * lib/core/utf8.h — UTF-8 for every layer (internal; names dsv4__utf8_*).
 *
 * "Valid" is strict UTF-8 throughout (RFC 3629): no overlong forms, no
 * surrogates (U+D800..U+DFFF), nothing above U+10FFFF. Byte strings are
 * (pointer, length) pairs and may hold NUL (valid, U+0000).
 */
#ifndef DSV4_CORE_UTF8_H
#define DSV4_CORE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decode the character at s[0, n): its length (1..4) with *cp set, or 0
 * when s is empty or does not start with a whole valid character. */
size_t dsv4__utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Encode code point cp into out (4 bytes): the length, or 0 when cp is a
 * surrogate or above U+10FFFF. */
size_t dsv4__utf8_encode(uint32_t cp, char out[4]);

/* Offset of the first byte of s[0, n) that does not begin a whole valid
 * character; n when all of it is valid. */
size_t dsv4__utf8_check(const char *s, size_t n);

/* Number of trailing bytes of s[0, n) that form an incomplete but so far
 * valid character (a later byte could complete it): 0..3. */
size_t dsv4__utf8_incomplete_tail(const char *s, size_t n);

/* Continuation bytes a stream still owes after bytes p[0, n), given `owed`
 * owed before them. A cheap count by byte class, not a validator: a
 * continuation byte pays one owed byte; any other byte sets the count its
 * lead class asks for (0 for ASCII and stray continuations, 1 for 0xC0..,
 * 2 for 0xE0.., 3 for 0xF0..). */
int dsv4__utf8_owed(int owed, const char *p, size_t n);

/* Strict validator fed one byte at a time. Zero-initialised = between
 * characters; need: continuation bytes still to come; [lo, hi]: the range
 * of the next one. */
typedef struct dsv4__utf8_dfa {
    uint8_t need, lo, hi;
} dsv4__utf8_dfa;
/* Feed byte b (0..255): 1 accepted, 0 rejected (the state is unchanged). */
int dsv4__utf8_dfa_step(dsv4__utf8_dfa *d, unsigned b);

/* A copy of s[0, n) with each byte that does not begin a whole valid
 * character replaced by U+FFFD (NUL kept), NUL-terminated; *out_len its
 * length. NULL when out of memory. Free with dsv4__free. */
char *dsv4__utf8_clean(const char *s, size_t n, size_t *out_len);

#endif
