/*
 * lib/chat/pyjson.h — JSON as the official (Python) chat encoder reads and
 * writes it (internal): json.loads of tool-call arguments, keeping what a C
 * JSON library cannot (integers of any size, last-wins duplicate keys in
 * first position), and json.dumps(..., ensure_ascii=False) output.
 */
#ifndef DSV4_CHAT_PYJSON_H
#define DSV4_CHAT_PYJSON_H

#include <jansson.h>
#include <stdint.h>
#include "core/core.h"
#include "core/sbuf.h"

enum { DSV4__PY_OBJ, DSV4__PY_ARR, DSV4__PY_STR, DSV4__PY_INT, DSV4__PY_FLOAT, DSV4__PY_TRUE, DSV4__PY_FALSE,
       DSV4__PY_NULL };

/* One value. Objects and arrays chain their members through `next` from
 * `kid` (objects: key, value, key, value, ...); -1 ends a chain. */
typedef struct dsv4__pyv {
    uint8_t type;
    int32_t kid, next;
    size_t off, len;    /* STR: decoded UTF-8 in the tree's text; INT: digits as written in the source */
    double d;           /* FLOAT */
} dsv4__pyv;

/* A parsed value: v[0] is the root. */
typedef struct dsv4__pyjson {
    dsv4__pyv *v;
    size_t n, cap;
    dsv4__sbuf text;    /* decoded strings (may hold NUL) */
    const char *src;    /* the parsed text (borrowed; INT digits point into it) */
} dsv4__pyjson;

/* Parse s[0, n) as Python's json.loads does: the JSON grammar plus NaN,
 * Infinity and -Infinity; numbers with a fraction or exponent become
 * doubles (correctly rounded, overflow to infinity), others integers of any
 * size; \u escapes with surrogate pairs joined; a repeated key keeps its
 * first position and takes the last value. A lone surrogate, nesting
 * deeper than 512 or anything else outside the grammar is
 * DSV4_ERR_BAD_FORMAT. s must stay alive while j is used. */
dsv4_status dsv4__pyjson_parse(const char *s, size_t n, dsv4__pyjson *j);
void dsv4__pyjson_free(dsv4__pyjson *j);

/* json.dumps(value, ensure_ascii=False) of node i of j: 0, -1 out of memory. */
int dsv4__pyjson_dump(dsv4__sbuf *b, const dsv4__pyjson *j, int32_t i);
/* the same for a jansson value */
int dsv4__py_dumps(dsv4__sbuf *b, const json_t *v);
/* a JSON string literal of s[0, n) as json.dumps writes it */
int dsv4__py_str(dsv4__sbuf *b, const char *s, size_t n);
/* float.__repr__ (and json.dumps' NaN, Infinity, -Infinity): the shortest
 * digits that read back as v, exponent form when the decimal exponent is
 * below -4 or at least 16, integral values with ".0" */
int dsv4__py_float(dsv4__sbuf *b, double v);

#endif
