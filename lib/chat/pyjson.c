/*
 * lib/chat/pyjson.c — Python's json.loads / json.dumps(ensure_ascii=False)
 * for the chat encoder (see pyjson.h).
 */
#include "chat/pyjson.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/utf8.h"

#define MAX_DEPTH 512

/* ---- json.dumps ---------------------------------------------------------- */

int dsv4__py_str(dsv4__sbuf *b, const char *s, size_t n)
{
    int r = dsv4__sbuf_add(b, "\"", 1);
    size_t run = 0; /* bytes copied as they are, pending */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c >= 0x20) { run++; continue; }
        }
        r |= dsv4__sbuf_add(b, s + i - run, run);
        run = 0;
        if (esc) r |= dsv4__sbuf_puts(b, esc);
        else r |= dsv4__sbuf_printf(b, "\\u%04x", c);
    }
    r |= dsv4__sbuf_add(b, s + n - run, run);
    return r | dsv4__sbuf_add(b, "\"", 1);
}

/* nd decimal digits d[] times 10^e10 (e10 of the last digit) as a double */
static double read_digits(const char *d, int nd, int e10)
{
    char t[48];
    snprintf(t, sizeof t, "%.*se%d", nd, d, e10);
    return strtod(t, NULL); /* no decimal point: the same in every locale */
}

/* The shortest digits of a > 0 that read back as a: d[0, *nd) with the
 * decimal exponent *ex of d[0]. At each precision the correctly rounded
 * digits are tried, then (when they miss) their neighbour on the other side
 * of a: near a power of two the rounding interval is lopsided, and the
 * neighbour can read back where the nearest does not. */
static void shortest(double a, char *d, int *nd, int *ex)
{
    for (int p = 1; p <= 17; p++) {
        char t[48];
        int n = 0, e;
        snprintf(t, sizeof t, "%.*e", p - 1, a);
        const char *q = t;
        for (; *q && *q != 'e'; q++)
            if (*q >= '0' && *q <= '9') d[n++] = *q;
        e = atoi(q + 1);
        double r = read_digits(d, n, e - n + 1);
        if (r == a || p == 17) { *nd = n; *ex = e; return; }
        char c[24];
        int ce = e;
        memcpy(c, d, (size_t)n);
        if (r < a) { /* one unit up */
            int k = n - 1;
            while (k >= 0 && c[k] == '9') c[k--] = '0';
            if (k < 0) { c[0] = '1'; ce++; }
            else c[k]++;
        } else {     /* one unit down */
            int k = n - 1;
            while (k >= 0 && c[k] == '0') c[k--] = '9';
            c[k]--;
            if (c[0] == '0') { memset(c, '9', (size_t)n); ce--; } /* 10^e - one unit of the decade below */
        }
        if (read_digits(c, n, ce - n + 1) == a) { memcpy(d, c, (size_t)n); *nd = n; *ex = ce; return; }
    }
}

int dsv4__py_float(dsv4__sbuf *b, double v)
{
    if (isnan(v)) return dsv4__sbuf_puts(b, "NaN");
    if (isinf(v)) return dsv4__sbuf_puts(b, v < 0 ? "-Infinity" : "Infinity");
    char d[24];
    int nd = 1, ex = 0, r = 0;
    d[0] = '0';
    if (v != 0) shortest(fabs(v), d, &nd, &ex);
    while (nd > 1 && d[nd - 1] == '0') nd--;
    if (signbit(v)) r |= dsv4__sbuf_add(b, "-", 1);
    if (ex < -4 || ex >= 16) {
        r |= dsv4__sbuf_add(b, d, 1);
        if (nd > 1) r |= dsv4__sbuf_add(b, ".", 1) | dsv4__sbuf_add(b, d + 1, (size_t)nd - 1);
        r |= dsv4__sbuf_printf(b, "e%c%02d", ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
    } else if (ex < 0) {
        r |= dsv4__sbuf_add(b, "0.", 2);
        for (int i = 0; i < -ex - 1; i++) r |= dsv4__sbuf_add(b, "0", 1);
        r |= dsv4__sbuf_add(b, d, (size_t)nd);
    } else {
        for (int i = 0; i <= ex; i++) r |= dsv4__sbuf_add(b, i < nd ? &d[i] : "0", 1);
        r |= dsv4__sbuf_add(b, ".", 1);
        if (nd > ex + 1) r |= dsv4__sbuf_add(b, d + ex + 1, (size_t)(nd - ex - 1));
        else r |= dsv4__sbuf_add(b, "0", 1);
    }
    return r;
}

int dsv4__py_dumps(dsv4__sbuf *b, const json_t *j)
{
    int r = 0;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        int first = 1;
        r |= dsv4__sbuf_add(b, "{", 1);
        json_object_foreach((json_t *)j, k, v) {
            if (!first) r |= dsv4__sbuf_add(b, ", ", 2);
            first = 0;
            r |= dsv4__py_str(b, k, strlen(k)) | dsv4__sbuf_add(b, ": ", 2) | dsv4__py_dumps(b, v);
        }
        return r | dsv4__sbuf_add(b, "}", 1);
    }
    case JSON_ARRAY:
        r |= dsv4__sbuf_add(b, "[", 1);
        for (size_t i = 0; i < json_array_size(j); i++) {
            if (i) r |= dsv4__sbuf_add(b, ", ", 2);
            r |= dsv4__py_dumps(b, json_array_get(j, i));
        }
        return r | dsv4__sbuf_add(b, "]", 1);
    case JSON_STRING: return dsv4__py_str(b, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: return dsv4__sbuf_printf(b, "%lld", (long long)json_integer_value(j));
    case JSON_REAL: return dsv4__py_float(b, json_real_value(j));
    case JSON_TRUE: return dsv4__sbuf_puts(b, "true");
    case JSON_FALSE: return dsv4__sbuf_puts(b, "false");
    case JSON_NULL: return dsv4__sbuf_puts(b, "null");
    }
    return 0;
}

int dsv4__pyjson_dump(dsv4__sbuf *b, const dsv4__pyjson *j, int32_t i)
{
    const dsv4__pyv *v = &j->v[i];
    int r = 0;
    switch (v->type) {
    case DSV4__PY_OBJ:
        r |= dsv4__sbuf_add(b, "{", 1);
        for (int32_t k = v->kid; k >= 0; k = j->v[j->v[k].next].next) {
            if (k != v->kid) r |= dsv4__sbuf_add(b, ", ", 2);
            r |= dsv4__py_str(b, j->text.p + j->v[k].off, j->v[k].len) | dsv4__sbuf_add(b, ": ", 2) |
                 dsv4__pyjson_dump(b, j, j->v[k].next);
        }
        return r | dsv4__sbuf_add(b, "}", 1);
    case DSV4__PY_ARR:
        r |= dsv4__sbuf_add(b, "[", 1);
        for (int32_t k = v->kid; k >= 0; k = j->v[k].next) {
            if (k != v->kid) r |= dsv4__sbuf_add(b, ", ", 2);
            r |= dsv4__pyjson_dump(b, j, k);
        }
        return r | dsv4__sbuf_add(b, "]", 1);
    case DSV4__PY_STR: return dsv4__py_str(b, j->text.p + v->off, v->len);
    case DSV4__PY_INT: /* Python's int: -0 is 0, every other integer keeps its digits */
        if (v->len == 2 && memcmp(j->src + v->off, "-0", 2) == 0) return dsv4__sbuf_add(b, "0", 1);
        return dsv4__sbuf_add(b, j->src + v->off, v->len);
    case DSV4__PY_FLOAT: return dsv4__py_float(b, v->d);
    case DSV4__PY_TRUE: return dsv4__sbuf_puts(b, "true");
    case DSV4__PY_FALSE: return dsv4__sbuf_puts(b, "false");
    default: return dsv4__sbuf_puts(b, "null");
    }
}

/* ---- json.loads ---------------------------------------------------------- */

typedef struct {
    dsv4__pyjson *j;
    const char *s;
    size_t n, i;
    int oom;
} parser;

#define BAD (-1)

static int32_t new_node(parser *p, uint8_t type)
{
    dsv4__pyjson *j = p->j;
    if (j->n == j->cap) {
        size_t c = j->cap ? 2 * j->cap : 16;
        dsv4__pyv *v = c < INT32_MAX ? dsv4__realloc(j->v, c * sizeof *v) : NULL;
        if (!v) { p->oom = 1; return -1; }
        j->v = v;
        j->cap = c;
    }
    dsv4__pyv *v = &j->v[j->n];
    memset(v, 0, sizeof *v);
    v->type = type;
    v->kid = v->next = -1;
    return (int32_t)j->n++;
}

static void skip_ws(parser *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')) p->i++;
}

static int lit(parser *p, const char *w)
{
    size_t l = strlen(w);
    if (p->n - p->i < l || memcmp(p->s + p->i, w, l) != 0) return 0;
    p->i += l;
    return 1;
}

static int hex4(parser *p, uint32_t *out)
{
    uint32_t v = 0;
    if (p->n - p->i < 4) return 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i + (size_t)k];
        int h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (h < 0) return 0;
        v = v << 4 | (uint32_t)h;
    }
    p->i += 4;
    *out = v;
    return 1;
}

/* a string at s[i] == '"': decoded into the text buffer */
static int32_t string(parser *p)
{
    dsv4__sbuf *t = &p->j->text;
    size_t off = t->n;
    p->i++;
    for (;;) {
        size_t run = p->i;
        while (p->i < p->n && p->s[p->i] != '"' && p->s[p->i] != '\\' && (unsigned char)p->s[p->i] >= 0x20) p->i++;
        if (p->i > run) {
            if (dsv4__utf8_check(p->s + run, p->i - run) != p->i - run) return BAD;
            if (dsv4__sbuf_add(t, p->s + run, p->i - run)) { p->oom = 1; return BAD; }
        }
        if (p->i >= p->n || (unsigned char)p->s[p->i] < 0x20) return BAD; /* unterminated; raw control character */
        if (p->s[p->i++] == '"') break;
        if (p->i >= p->n) return BAD;
        char c = p->s[p->i++], u[4];
        const char *esc = c == '"' ? "\"" : c == '\\' ? "\\" : c == '/' ? "/" : c == 'b' ? "\b" : c == 'f' ? "\f"
                        : c == 'n' ? "\n" : c == 'r' ? "\r" : c == 't' ? "\t" : NULL;
        size_t ul = 0;
        if (esc) {
            u[0] = esc[0];
            ul = 1;
        } else if (c == 'u') {
            uint32_t cp, lo;
            if (!hex4(p, &cp)) return BAD;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                /* a pair; a lone half has no UTF-8 form */
                if (!lit(p, "\\u") || !hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF) return BAD;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            ul = dsv4__utf8_encode(cp, u);
            if (!ul) return BAD;
        } else {
            return BAD;
        }
        if (dsv4__sbuf_add(t, u, ul)) { p->oom = 1; return BAD; }
    }
    if (dsv4__sbuf_add(t, "", 0)) { p->oom = 1; return BAD; }
    int32_t k = new_node(p, DSV4__PY_STR);
    if (k < 0) return BAD;
    p->j->v[k].off = off;
    p->j->v[k].len = t->n - off;
    return k;
}

static int is_digit(parser *p) { return p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9'; }

static int32_t number(parser *p)
{
    size_t start = p->i;
    int neg = p->s[p->i] == '-';
    if (neg) p->i++;
    if (neg && lit(p, "Infinity")) {
        int32_t k = new_node(p, DSV4__PY_FLOAT);
        if (k >= 0) p->j->v[k].d = -INFINITY;
        return k < 0 ? BAD : k;
    }
    if (!is_digit(p)) return BAD;
    size_t int0 = p->i;
    if (p->s[p->i] == '0') p->i++;
    else while (is_digit(p)) p->i++;
    size_t int1 = p->i, frac0 = 0, frac1 = 0;
    long exp10 = 0;
    int is_float = 0;
    if (p->i + 1 < p->n && p->s[p->i] == '.' && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9') {
        frac0 = ++p->i;
        while (is_digit(p)) p->i++;
        frac1 = p->i;
        is_float = 1;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        size_t save = p->i++;
        int eneg = 0;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) eneg = p->s[p->i++] == '-';
        if (!is_digit(p)) {
            p->i = save; /* not an exponent: what follows is not JSON either */
        } else {
            while (is_digit(p)) {
                if (exp10 < 100000000) exp10 = exp10 * 10 + (p->s[p->i] - '0');
                p->i++;
            }
            if (eneg) exp10 = -exp10;
            is_float = 1;
        }
    }
    if (!is_float) {
        int32_t k = new_node(p, DSV4__PY_INT);
        if (k < 0) return BAD;
        p->j->v[k].off = start;
        p->j->v[k].len = p->i - start;
        return k;
    }
    /* float(): the digits as one integer and a power of ten, no decimal point
     * (strtod reads that alike in every locale) */
    size_t nint = int1 - int0, nfrac = frac1 - frac0;
    char small[128], *t = nint + nfrac + 24 <= sizeof small ? small : dsv4__malloc(nint + nfrac + 24);
    if (!t) { p->oom = 1; return BAD; }
    size_t w = 0;
    if (neg) t[w++] = '-';
    memcpy(t + w, p->s + int0, nint);
    w += nint;
    if (nfrac) memcpy(t + w, p->s + frac0, nfrac);
    w += nfrac;
    long e = exp10 - (long)(nfrac < 200000000 ? nfrac : 200000000);
    snprintf(t + w, 24, "e%ld", e);
    double d = strtod(t, NULL); /* correctly rounded; overflow gives ±inf as Python's float() does */
    if (t != small) dsv4__free(t);
    int32_t k = new_node(p, DSV4__PY_FLOAT);
    if (k < 0) return BAD;
    p->j->v[k].d = d;
    return k;
}

typedef struct { const char *k; size_t len, pos; int32_t key, val; } member;

static int by_key(const void *a, const void *b)
{
    const member *x = a, *y = b;
    size_t l = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->k, y->k, l);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* a repeated key keeps its first position and takes the last value (a
 * Python dict filled in order) */
static int dedup(parser *p, int32_t obj, size_t count)
{
    dsv4__pyjson *j = p->j;
    member *m = dsv4__malloc(count * sizeof *m);
    int32_t *order = dsv4__malloc(count * sizeof *order);
    if (!m || !order) { dsv4__free(m); dsv4__free(order); p->oom = 1; return BAD; }
    size_t c = 0;
    for (int32_t k = j->v[obj].kid; k >= 0; k = j->v[j->v[k].next].next, c++) {
        m[c] = (member){ j->text.p + j->v[k].off, j->v[k].len, c, k, j->v[k].next };
        order[c] = k;
    }
    qsort(m, count, sizeof *m, by_key);
    int dup = 0;
    for (size_t a = 0, b; a < count; a = b) {
        for (b = a + 1; b < count && m[b].len == m[a].len && memcmp(m[b].k, m[a].k, m[a].len) == 0; b++) {
            order[m[b].pos] = -1;
            dup = 1;
        }
        j->v[m[a].key].next = m[b - 1].val;
    }
    if (dup) {
        int32_t last = -1;
        j->v[obj].kid = -1;
        for (size_t q = 0; q < count; q++) {
            if (order[q] < 0) continue;
            if (last < 0) j->v[obj].kid = order[q];
            else j->v[last].next = order[q];
            last = j->v[order[q]].next;
            j->v[last].next = -1;
        }
    }
    dsv4__free(m);
    dsv4__free(order);
    return 0;
}

static int32_t value(parser *p, int depth)
{
    skip_ws(p);
    if (p->i >= p->n || depth > MAX_DEPTH) return BAD;
    char c = p->s[p->i];
    if (c == '"') return string(p);
    if (c == '-' || (c >= '0' && c <= '9')) return number(p);
    if (c == '{' || c == '[') {
        int obj = c == '{';
        int32_t self = new_node(p, obj ? DSV4__PY_OBJ : DSV4__PY_ARR), last = -1;
        if (self < 0) return BAD;
        size_t count = 0;
        p->i++;
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == (obj ? '}' : ']')) { p->i++; return self; }
        for (;;) {
            int32_t key = -1;
            if (obj) {
                skip_ws(p);
                if (p->i >= p->n || p->s[p->i] != '"' || (key = string(p)) < 0) return BAD;
                skip_ws(p);
                if (p->i >= p->n || p->s[p->i] != ':') return BAD;
                p->i++;
            }
            int32_t v = value(p, depth + 1);
            if (v < 0) return BAD;
            int32_t head = obj ? key : v;
            if (last < 0) p->j->v[self].kid = head;
            else p->j->v[last].next = head;
            if (obj) p->j->v[key].next = v;
            last = v;
            count++;
            skip_ws(p);
            if (p->i < p->n && p->s[p->i] == ',') { p->i++; continue; }
            if (p->i < p->n && p->s[p->i] == (obj ? '}' : ']')) { p->i++; break; }
            return BAD;
        }
        if (obj && count > 1 && dedup(p, self, count)) return BAD;
        return self;
    }
    uint8_t t = lit(p, "true") ? DSV4__PY_TRUE : lit(p, "false") ? DSV4__PY_FALSE : lit(p, "null") ? DSV4__PY_NULL
              : lit(p, "NaN") || lit(p, "Infinity") ? DSV4__PY_FLOAT : 255;
    if (t == 255) return BAD;
    int32_t k = new_node(p, t);
    if (k >= 0 && t == DSV4__PY_FLOAT) p->j->v[k].d = p->s[p->i - 1] == 'N' ? NAN : INFINITY;
    return k < 0 ? BAD : k;
}

dsv4_status dsv4__pyjson_parse(const char *s, size_t n, dsv4__pyjson *j)
{
    memset(j, 0, sizeof *j);
    j->src = s;
    parser p = { j, s, n, 0, 0 };
    int32_t root = value(&p, 1);
    skip_ws(&p);
    if (root == 0 && p.i == n) return DSV4_OK;
    dsv4__pyjson_free(j);
    return p.oom ? DSV4_ERR_OUT_OF_MEMORY : DSV4_ERR_BAD_FORMAT;
}

void dsv4__pyjson_free(dsv4__pyjson *j)
{
    dsv4__free(j->v);
    dsv4__sbuf_free(&j->text);
    memset(j, 0, sizeof *j);
}
