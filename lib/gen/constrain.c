/*
 * lib/gen/constrain.c — byte-level output constraints (see constrain.h and
 * docs/constraints.md): a strict JSON recogniser driven by a compiled
 * JSON-schema subset, and the DSML tool-call block recogniser.
 *
 * Design. Schemas and tool lists are compiled once into an immutable,
 * reference-counted program (schema nodes, sorted string sets in one byte
 * pool). A constraint is that program plus a fixed-size state: a header
 * and a bounded stack of small frames (one per open JSON container or
 * token), plus a bounded log of hashes of free-form object keys (duplicate
 * detection). Every transition goes through step(), which works on a
 * "sim": a copy of the header and an overlay holding only the frames it
 * touches, pulled lazily from the unchanged base state. allows() runs a
 * sim and throws it away (no allocation, a few dozen bytes copied per
 * call); feed() runs one and commits the touched frames back, so a
 * rejected feed leaves the state as it was. complete() asks whether a
 * pseudo-byte "end of output" would be accepted, and completion() drives a
 * sim with locally chosen cheapest pieces until that holds, so every byte
 * it returns has been accepted by the same step() the generator uses.
 *
 * The recogniser never accepts a byte that leads to a dead end: every
 * accepted prefix can still be completed (keys run out, digits run out,
 * nesting runs out and duplicate names are all checked before the byte
 * that would make completion impossible).
 */
#include "gen/constrain.h"
#include "core/utf8.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- limits ------------------------------------------------------------ */

#define MAX_NEST 32     /* open objects + arrays */
#define MAX_WS 2        /* consecutive whitespace bytes between JSON tokens */
#define MAX_TRAIL_WS 1  /* whitespace bytes after the top-level value */
#define MAX_DIGITS 32   /* digits of one number: integer + fraction + exponent */
#define MAX_PROPS 64    /* properties of one object schema / parameters of one tool (bit masks) */
#define LOG_CAP 128     /* free-form key hashes of the open objects (+ parameter names of the invoke) */
#define STACK_CAP (MAX_NEST + 4) /* root + containers + one token frame, with margin */

enum { T_NULL = 1, T_BOOL = 2, T_INT = 4, T_NUM = 8, T_STR = 16, T_ARR = 32, T_OBJ = 64, T_ALL = 127 };

/* Pseudo-bytes. B_END: the output ends here (complete() tests it).
 * B_VEND: end the open number/enum token here without a delimiter (used by
 * completion() to close a value whose end would otherwise be seen only at
 * the next byte). */
#define B_END 256
#define B_VEND 257

#define FNV_BASIS 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

/* ---- DSML literals --------------------------------------------------------- */

#define FW "\xEF\xBD\x9C" /* U+FF5C FULLWIDTH VERTICAL LINE */
#define OPEN_TAG "<" FW "DSML" FW
#define OPEN_TAG_LEN 11
#define CLOSE_TAG_LEN 12 /* "</" FW "DSML" FW */

enum {
    L_BLOCK_OPEN,   /* REQUIRED mode: the whole opening */
    L_TC_REST,      /* AUTO mode: after "\n\n<｜DSML｜" seen in content */
    L_INVOKE_OPEN,
    L_TC_CLOSE,
    L_NAME_END,     /* after the tool name and its '"' */
    L_PARAM_OPEN,
    L_INVOKE_CLOSE,
    L_PNAME_END,    /* after the parameter name and its '"' */
    L_TRUE_END,
    L_FALSE_END,
    L_PARAM_CLOSE,
    L_EMPTY_CLOSE,  /* an invoke without parameters: its body is one empty line */
    L_COUNT
};

static const char *const lit_text[L_COUNT] = {
    "\n\n" OPEN_TAG "tool_calls>\n",
    "tool_calls>\n",
    OPEN_TAG "invoke name=\"",
    "</" FW "DSML" FW "tool_calls>",
    ">\n",
    OPEN_TAG "parameter name=\"",
    "</" FW "DSML" FW "invoke>\n",
    " string=\"",
    "true\">",
    "false\">",
    "</" FW "DSML" FW "parameter>\n",
    "\n</" FW "DSML" FW "invoke>\n",
};
static uint32_t lit_len(int L) { return (uint32_t)strlen(lit_text[L]); }

/* ---- compiled program ------------------------------------------------------ */

/* One member of a sorted string set: pool[off, off+len), payload val. Sets
 * are sorted by bytes with a prefix before its extensions, and deduplicated,
 * so the members sharing a prefix form one contiguous range. */
typedef struct sitem {
    uint32_t off, len;
    int32_t val;
} sitem;

typedef struct snode {
    uint8_t types;
    uint8_t mintype;           /* T_ bit of the shortest value; 0 with an enum */
    int32_t items;             /* node of array elements */
    int32_t addl;              /* node of keys outside the properties; -1: none allowed */
    uint32_t pfirst, pcount;   /* properties: "\"key\"" texts (canonical), val = node */
    uint64_t required;         /* bits over the sorted properties */
    uint32_t efirst, ecount;   /* enum: compact JSON texts; ecount 0 = no enum */
    uint32_t emin;             /* the shortest enum member (item index) */
    uint32_t minlen;           /* bytes of the shortest valid value */
} snode;

typedef struct dparam {
    int32_t node;
    uint8_t allow_true, allow_false;
    uint32_t rfirst, rcount;   /* string="true" enum: raw text + parameter close tag */
    uint32_t rmin;
    uint32_t cost;             /* bytes of the shortest whole parameter element */
} dparam;

typedef struct dtool {
    uint32_t pfirst, pcount;   /* "name\"" texts, val = dparam index; 0 = free names */
    uint64_t required;
    uint32_t cost;             /* shortest invoke, from the name on */
} dtool;

typedef struct prog {
    dsv4__ref ref;
    int dsml, mode;
    int32_t root;              /* JSON: the top-level node */
    uint32_t tfirst, tcount;   /* DSML: "name\"" of the allowed tools, val = dtool index */
    int32_t free_param;        /* dparam used for names of tools without declared parameters */
    char *pool;
    sitem *items;
    snode *nodes;
    dparam *params;
    dtool *tools;
} prog;

#define NODE_ANY 0

/* ---- state --------------------------------------------------------------- */

/* JSON string scanner: escapes, \u with surrogate pairs, UTF-8 validity.
 * canon: object keys, which must be written in canonical form (raw UTF-8,
 * only the escapes \" \\ \b \f \n \r \t and lowercase \u00xx for the other
 * control characters) so that equal keys have equal bytes. */
typedef struct sst {
    uint8_t mode, k;
    dsv4__utf8_dfa utf;  /* the UTF-8 sequence being read */
    uint8_t canon;
    uint16_t cp;
    uint8_t guard, tm; /* DSML: bytes of "</｜DSML｜" matched (a DSML parser would end the parameter there) */
} sst;
enum { S_NORM, S_ESC, S_U, S_LBS, S_LU_U, S_LU };

enum { K_ROOT, K_OBJ, K_ARR, K_KEY, K_STR, K_NUM, K_LIT, K_ENUM };
enum { R_BEFORE, R_IN, R_AFTER };
enum { O_OPEN, O_INKEY, O_AFTER_KEY, O_COLON, O_INVAL, O_AFTER_VAL, O_COMMA };
enum { A_OPEN, A_INVAL, A_AFTER_VAL, A_COMMA };
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

typedef struct frame {
    uint8_t kind, st;
    uint8_t a;     /* NUM: digits; LIT: literal */
    uint8_t b;     /* NUM: integer only */
    int32_t node;
    union {
        struct { uint64_t seen; uint32_t log0; int32_t vnode; } o;            /* K_OBJ */
        struct { uint64_t seen, hash; uint32_t pos; uint8_t lo, hi; sst s; } k; /* K_KEY */
        struct { sst s; } s;                                                   /* K_STR */
        struct { uint32_t lo, hi, pos; } e;                                    /* K_ENUM */
        struct { uint32_t pos; } l;                                            /* K_LIT */
        struct { uint8_t k, neg; uint16_t ev; } n;                             /* K_NUM */
    } u;
} frame;

/* allows() copies a frame or two per call: keep them small */
_Static_assert(sizeof(frame) == 40, "frame size");

enum { D_CONTENT, D_LIT, D_NAME, D_PNAME, D_STRVAL, D_STRENUM, D_JSON, D_DONE };

typedef struct hdr {
    uint32_t depth, nest, log_n;
    uint8_t ws;                 /* consecutive whitespace outside strings */
    /* DSML */
    uint8_t phase, started;
    uint8_t cm, cnl, ctrail;    /* content: matched bytes of OPEN_TAG, newlines before it, trailing newlines */
    uint16_t lits;              /* D_LIT: candidate literals */
    uint32_t pos, lo, hi;       /* bytes matched; candidate range of a string set */
    int32_t tool, param;
    uint64_t seen, hash;        /* parameters given in this invoke; hash of a free name */
    sst u8;                     /* UTF-8 of a free name / free string value */
} hdr;

typedef struct cstate {
    hdr h;
    frame f[STACK_CAP];
    uint64_t log[LOG_CAP];
} cstate;

struct dsv4__cons {
    prog *p;
    cstate st;
};

/* Working copy: header plus the frames at [bdepth, h.depth) and log
 * entries at [blog, h.log_n); everything below is read from base. */
typedef struct sim {
    const prog *p;
    const cstate *base;
    hdr h;
    uint32_t bdepth, blog;
    frame ov[STACK_CAP];
    uint64_t ovlog[LOG_CAP];
} sim;

static void sim_init(sim *s, const dsv4__cons *c)
{
    s->p = c->p;
    s->base = &c->st;
    s->h = c->st.h;
    s->bdepth = s->h.depth;
    s->blog = s->h.log_n;
}

static void sim_commit(dsv4__cons *c, const sim *s)
{
    c->st.h = s->h;
    if (s->h.depth > s->bdepth)
        memcpy(&c->st.f[s->bdepth], &s->ov[s->bdepth], (s->h.depth - s->bdepth) * sizeof(frame));
    if (s->h.log_n > s->blog)
        memcpy(&c->st.log[s->blog], &s->ovlog[s->blog], (s->h.log_n - s->blog) * sizeof(uint64_t));
}

static frame *top(sim *s)
{
    if (s->h.depth == s->bdepth) {
        s->bdepth--;
        s->ov[s->bdepth] = s->base->f[s->bdepth];
    }
    return &s->ov[s->h.depth - 1];
}

static frame *push(sim *s)
{
    if (s->h.depth >= STACK_CAP) return NULL;
    frame *f = &s->ov[s->h.depth++];
    memset(f, 0, sizeof *f);
    return f;
}

static void pop(sim *s) { s->h.depth--; }

static uint64_t log_get(const sim *s, uint32_t i) { return i < s->blog ? s->base->log[i] : s->ovlog[i]; }
static void log_trunc(sim *s, uint32_t n)
{
    s->h.log_n = n;
    if (n < s->blog) s->blog = n;
}
static void log_push(sim *s, uint64_t v) { s->ovlog[s->h.log_n++] = v; }

/* ---- small helpers --------------------------------------------------------- */

static int is_ws(int b) { return b == ' ' || b == '\n' || b == '\t' || b == '\r'; }

static uint64_t fnv(uint64_t h, unsigned b) { return (h ^ b) * FNV_PRIME; }

/* bits [a, z) of a 64-bit mask */
static uint64_t range_mask(uint32_t a, uint32_t z)
{
    uint64_t hi = z >= 64 ? ~0ull : (1ull << z) - 1;
    uint64_t lo = a >= 64 ? ~0ull : (1ull << a) - 1;
    return hi & ~lo;
}

static uint8_t item_byte(const prog *p, uint32_t i, uint32_t pos) { return (uint8_t)p->pool[p->items[i].off + pos]; }

/* Keep the members of [lo, hi) (which share their first pos bytes) whose
 * byte pos is b; 0 when none. Binary search: the cost of allows() must not
 * grow with the size of an enum or tool list. */
static int narrow(const prog *p, uint32_t *lo, uint32_t *hi, uint32_t pos, int b)
{
    uint32_t l = *lo, h = *hi;
    if (b > 255) return 0;
    if (l < h && p->items[l].len == pos) l++; /* the member equal to the prefix sorts first */
    uint32_t a = l, z = h;
    while (a < z) {
        uint32_t m = a + (z - a) / 2;
        if (item_byte(p, m, pos) < b) a = m + 1; else z = m;
    }
    uint32_t first = a;
    z = h;
    while (a < z) {
        uint32_t m = a + (z - a) / 2;
        if (item_byte(p, m, pos) <= (unsigned)b) a = m + 1; else z = m;
    }
    if (first == a) return 0;
    *lo = first;
    *hi = a;
    return 1;
}

static int hexval(int b, int lower_only)
{
    if (b >= '0' && b <= '9') return b - '0';
    if (b >= 'a' && b <= 'f') return b - 'a' + 10;
    if (!lower_only && b >= 'A' && b <= 'F') return b - 'A' + 10;
    return -1;
}

/* One byte inside a JSON string (after the opening quote): 0 rejected,
 * 1 consumed, 2 the closing quote. */
static int sst_step_raw(sst *s, int b)
{
    if (b > 255) return 0;
    if (s->utf.need) return dsv4__utf8_dfa_step(&s->utf, (unsigned)b);
    switch (s->mode) {
    case S_NORM:
        if (b == '"') return 2;
        if (b == '\\') { s->mode = S_ESC; return 1; }
        if (b < 0x20) return 0;
        return dsv4__utf8_dfa_step(&s->utf, (unsigned)b);
    case S_ESC:
        switch (b) {
        case '"': case '\\': case 'b': case 'f': case 'n': case 'r': case 't':
            s->mode = S_NORM;
            return 1;
        case '/':
            if (s->canon) return 0;
            s->mode = S_NORM;
            return 1;
        case 'u':
            s->mode = S_U;
            s->k = 0;
            s->cp = 0;
            return 1;
        }
        return 0;
    case S_U:
    case S_LU: {
        int h = hexval(b, s->canon);
        if (h < 0) return 0;
        unsigned cp = ((unsigned)s->cp << 4) | (unsigned)h, k = s->k + 1u;
        if (s->canon) {
            /* only control characters without a short escape */
            if ((k <= 2 && h != 0) || (k == 3 && h > 1)) return 0;
            /* (and no NUL: jansson, like many C consumers, cannot hold it in a key) */
            if (k == 4 && (cp == 0 || cp == 8 || cp == 9 || cp == 10 || cp == 12 || cp == 13)) return 0;
        } else if (s->mode == S_U) {
            if (k == 2 && cp >= 0xDC && cp <= 0xDF) return 0; /* a low surrogate without a high one */
        } else {
            if (k == 1 && cp != 0xD) return 0;                /* the low half of a pair */
            if (k == 2 && (cp < 0xDC || cp > 0xDF)) return 0;
        }
        s->cp = (uint16_t)cp;
        s->k = (uint8_t)k;
        if (k == 4) s->mode = (s->mode == S_U && !s->canon && cp >= 0xD800 && cp <= 0xDBFF) ? S_LBS : S_NORM;
        return 1;
    }
    case S_LBS:
        if (b != '\\') return 0;
        s->mode = S_LU_U;
        return 1;
    case S_LU_U:
        if (b != 'u') return 0;
        s->mode = S_LU;
        s->k = 0;
        s->cp = 0;
        return 1;
    }
    return 0;
}

static const char close_tag[] = "</" FW "DSML" FW;

static int sst_step(sst *s, int b)
{
    int r = sst_step_raw(s, b);
    if (r == 1 && s->guard) {
        if (b == (uint8_t)close_tag[s->tm]) {
            if (++s->tm == CLOSE_TAG_LEN) return 0;
        } else {
            s->tm = b == '<';
        }
    }
    return r;
}

/* Shortest bytes that bring a string scanner back to plain text (an open
 * UTF-8 sequence or escape finished); out needs 12 bytes. */
static size_t sst_finish(const sst *s, char *out)
{
    size_t n = 0;
    if (s->utf.need) {
        out[n++] = (char)s->utf.lo;
        for (int i = 1; i < s->utf.need; i++) out[n++] = (char)0x80;
        return n;
    }
    switch (s->mode) {
    case S_ESC:
        out[n++] = 'n';
        break;
    case S_U: {
        unsigned cp = s->cp;
        for (int i = s->k; i < 4; i++) {
            out[n++] = '0';
            cp <<= 4;
        }
        if (s->canon && cp == 0) out[n - 1] = '1'; /* \u0001: keys hold no NUL */
        if (!s->canon && cp >= 0xD800 && cp <= 0xDBFF) {
            memcpy(out + n, "\\uDC00", 6);
            n += 6;
        }
        break;
    }
    case S_LBS:
        memcpy(out, "\\uDC00", 6);
        n = 6;
        break;
    case S_LU_U:
        memcpy(out, "uDC00", 5);
        n = 5;
        break;
    case S_LU:
        for (int i = s->k; i < 4; i++) out[n++] = "DC00"[i];
        break;
    }
    return n;
}

static int sst_plain(const sst *s) { return !s->utf.need && s->mode == S_NORM; }

static const char *const json_lits[3] = { "true", "false", "null" };

/* ---- the step function ----------------------------------------------------- */

static int dsml_step(sim *s, int b);

static void value_done(sim *s)
{
    if (s->h.depth == 0) return;
    frame *F = top(s);
    if (F->kind == K_ROOT) F->st = R_AFTER;
    else if (F->kind == K_OBJ) F->st = O_AFTER_VAL;
    else if (F->kind == K_ARR) F->st = A_AFTER_VAL;
}

static void close_container(sim *s, frame *F)
{
    if (F->kind == K_OBJ) log_trunc(s, F->u.o.log0);
    s->h.nest--;
    pop(s);
    value_done(s);
}

static int keys_possible(const sim *s, const frame *F)
{
    const snode *N = &s->p->nodes[F->node];
    if (~F->u.o.seen & range_mask(0, N->pcount)) return 1;
    return N->addl >= 0 && s->h.log_n < LOG_CAP;
}

/* The first byte b of a value of schema node `node`; the parent has already
 * marked itself as waiting for the value. */
static int start_value(sim *s, int32_t node, int b)
{
    const prog *p = s->p;
    const snode *N = &p->nodes[node];
    frame *F;
    if (b > 255) return 0;
    if (N->ecount) {
        uint32_t lo = N->efirst, hi = N->efirst + N->ecount;
        if (!narrow(p, &lo, &hi, 0, b)) return 0;
        if (hi - lo == 1 && p->items[lo].len == 1) {
            value_done(s);
            return 1;
        }
        if (!(F = push(s))) return 0;
        F->kind = K_ENUM;
        F->node = node;
        F->u.e.lo = lo;
        F->u.e.hi = hi;
        F->u.e.pos = 1;
        return 1;
    }
    switch (b) {
    case '{':
    case '[':
        if (!(N->types & (b == '{' ? T_OBJ : T_ARR)) || s->h.nest >= MAX_NEST) return 0;
        if (!(F = push(s))) return 0;
        s->h.nest++;
        if (b == '{') {
            F->kind = K_OBJ;
            F->node = node;
            F->st = O_OPEN;
            F->u.o.log0 = s->h.log_n;
        } else {
            F->kind = K_ARR;
            F->node = N->items;
            F->st = A_OPEN;
        }
        return 1;
    case '"':
        if (!(N->types & T_STR) || !(F = push(s))) return 0;
        F->kind = K_STR;
        F->u.s.s.guard = (uint8_t)p->dsml;
        return 1;
    case 't':
    case 'f':
    case 'n':
        if (!(N->types & (b == 'n' ? T_NULL : T_BOOL)) || !(F = push(s))) return 0;
        F->kind = K_LIT;
        F->a = b == 't' ? 0 : b == 'f' ? 1 : 2;
        F->u.l.pos = 1;
        return 1;
    default:
        if (b != '-' && (b < '0' || b > '9')) return 0;
        if (!(N->types & (T_INT | T_NUM)) || !(F = push(s))) return 0;
        F->kind = K_NUM;
        F->b = !(N->types & T_NUM);
        F->st = b == '-' ? N_MINUS : b == '0' ? N_ZERO : N_INT;
        F->a = b != '-';
        F->u.n.k = b >= '1' && b <= '9'; /* integer-part digits (a leading 0 counts none) */
        return 1;
    }
}

static int ws_ok(sim *s, int limit)
{
    if (s->h.ws >= limit) return 0;
    s->h.ws++;
    return 1;
}

static int key_step(sim *s, frame *F, int b)
{
    const prog *p = s->p;
    const snode *N = &p->nodes[F->node];
    sst ns = F->u.k.s;
    int r = sst_step(&ns, b);
    if (!r) return 0;
    uint32_t base = N->pfirst, lo = base + F->u.k.lo, hi = base + F->u.k.hi;
    int alive = lo < hi && narrow(p, &lo, &hi, F->u.k.pos, b);
    if (!alive) lo = hi = base;
    int free_ok = N->addl >= 0 && s->h.log_n < LOG_CAP;
    if (r == 2) {
        if (alive && p->items[lo].len == F->u.k.pos + 1) {
            uint32_t i = lo - base;
            if (F->u.k.seen >> i & 1) return 0; /* duplicate key */
            pop(s);
            frame *O = top(s);
            O->u.o.seen |= 1ull << i;
            O->u.o.vnode = p->items[lo].val;
            O->st = O_AFTER_KEY;
            return 1;
        }
        if (!free_ok) return 0;
        uint64_t h = F->u.k.hash;
        pop(s);
        frame *O = top(s);
        for (uint32_t i = O->u.o.log0; i < s->h.log_n; i++)
            if (log_get(s, i) == h) return 0; /* duplicate key */
        log_push(s, h);
        O->u.o.vnode = N->addl;
        O->st = O_AFTER_KEY;
        return 1;
    }
    if (!free_ok) {
        /* only declared keys: one not yet given must remain reachable */
        if (!alive || !(range_mask(lo - base, hi - base) & ~F->u.k.seen)) return 0;
    }
    F->u.k.s = ns;
    F->u.k.lo = (uint8_t)(lo - base);
    F->u.k.hi = (uint8_t)(hi - base);
    F->u.k.pos++;
    F->u.k.hash = fnv(F->u.k.hash, (unsigned)b);
    return 1;
}

static int step(sim *s, int b)
{
    const prog *p = s->p;
    if (b < 256 && !is_ws(b)) s->h.ws = 0;
    for (;;) {
        if (s->h.depth == 0) return dsml_step(s, b);
        frame *F = top(s);
        switch (F->kind) {
        case K_ROOT:
            if (F->st == R_BEFORE) {
                if (is_ws(b)) return ws_ok(s, MAX_WS);
                F->st = R_IN;
                return start_value(s, F->node, b);
            }
            if (is_ws(b)) return ws_ok(s, MAX_TRAIL_WS);
            if (!p->dsml) return b == B_END;
            /* inside a DSML parameter: the value is over, the close tag follows */
            pop(s);
            s->h.phase = D_LIT;
            s->h.lits = 1u << L_PARAM_CLOSE;
            s->h.pos = 0;
            if (b == B_VEND) return 1;
            continue;

        case K_OBJ:
            if (F->st != O_INKEY && F->st != O_INVAL && is_ws(b)) return ws_ok(s, MAX_WS);
            switch (F->st) {
            case O_OPEN:
            case O_AFTER_VAL:
                if (b == '}') {
                    if (p->nodes[F->node].required & ~F->u.o.seen) return 0;
                    close_container(s, F);
                    return 1;
                }
                if (F->st == O_AFTER_VAL) {
                    if (b != ',' || !keys_possible(s, F)) return 0;
                    F->st = O_COMMA;
                    return 1;
                }
                __attribute__((fallthrough)); /* a key after '{' */
            case O_COMMA: {
                if (b != '"' || !keys_possible(s, F)) return 0;
                F->st = O_INKEY;
                frame *K = push(s);
                if (!K) return 0;
                K->kind = K_KEY;
                K->node = F->node;
                K->u.k.seen = F->u.o.seen;
                K->u.k.hash = FNV_BASIS;
                K->u.k.pos = 1;
                K->u.k.lo = 0;
                K->u.k.hi = (uint8_t)p->nodes[F->node].pcount;
                K->u.k.s.canon = 1;
                K->u.k.s.guard = (uint8_t)p->dsml;
                return 1;
            }
            case O_AFTER_KEY:
                if (b != ':') return 0;
                F->st = O_COLON;
                return 1;
            case O_COLON:
                F->st = O_INVAL;
                return start_value(s, F->u.o.vnode, b);
            }
            return 0;

        case K_ARR:
            if (F->st != A_INVAL && is_ws(b)) return ws_ok(s, MAX_WS);
            if (b == ']' && (F->st == A_OPEN || F->st == A_AFTER_VAL)) {
                close_container(s, F);
                return 1;
            }
            if (F->st == A_AFTER_VAL) {
                if (b != ',') return 0;
                F->st = A_COMMA;
                return 1;
            }
            if (F->st == A_INVAL) return 0;
            F->st = A_INVAL;
            return start_value(s, F->node, b);

        case K_KEY:
            return key_step(s, F, b);

        case K_STR: {
            int r = sst_step(&F->u.s.s, b);
            if (r == 2) {
                pop(s);
                value_done(s);
            }
            return r != 0;
        }

        case K_NUM:
            if (b >= '0' && b <= '9') {
                if (F->a >= MAX_DIGITS) return 0;
                switch (F->st) {
                case N_MINUS:
                    F->st = b == '0' ? N_ZERO : N_INT;
                    F->u.n.k = b != '0';
                    break;
                case N_ZERO: return 0; /* no leading zeros */
                case N_INT:
                    /* at most 18 integer digits: an integer then fits int64,
                     * which parsers such as jansson require of integers */
                    if (F->u.n.k >= 18) return 0;
                    F->u.n.k++;
                    break;
                case N_DOT: F->st = N_FRAC; break;
                case N_E: case N_ESIGN: F->st = N_EXP; /* fall through */
                case N_EXP: {
                    /* value < 10^(k + exponent): keep it a finite double (below
                     * 1e308), which every consumer can parse; '0' always fits */
                    unsigned ev = F->u.n.ev * 10u + (unsigned)(b - '0');
                    if (!F->u.n.neg && F->u.n.k + ev > 308) return 0;
                    F->u.n.ev = (uint16_t)(ev > 999 ? 999 : ev);
                    break;
                }
                default: break;
                }
                F->a++;
                return 1;
            }
            if (b == '.' || b == 'e' || b == 'E') {
                /* room for at least one more digit, or the number could not end */
                if (F->b || F->a >= MAX_DIGITS) return 0;
                if (b == '.' && (F->st == N_ZERO || F->st == N_INT)) { F->st = N_DOT; return 1; }
                if (b != '.' && (F->st == N_ZERO || F->st == N_INT || F->st == N_FRAC)) { F->st = N_E; return 1; }
                return 0;
            }
            if (b == '+' || b == '-') {
                if (F->st != N_E) return 0;
                F->st = N_ESIGN;
                F->u.n.neg = b == '-';
                return 1;
            }
            if (F->st != N_ZERO && F->st != N_INT && F->st != N_FRAC && F->st != N_EXP) return 0;
            pop(s);
            value_done(s);
            if (b == B_VEND) return 1;
            continue; /* the byte belongs to the parent */

        case K_LIT: {
            const char *t = json_lits[F->a];
            if (b > 255 || (uint8_t)t[F->u.l.pos] != b) return 0;
            if (t[++F->u.l.pos] == 0) {
                pop(s);
                value_done(s);
            }
            return 1;
        }

        case K_ENUM: {
            uint32_t lo = F->u.e.lo, hi = F->u.e.hi;
            if (narrow(p, &lo, &hi, F->u.e.pos, b)) {
                F->u.e.lo = lo;
                F->u.e.hi = hi;
                F->u.e.pos++;
                if (hi - lo == 1 && p->items[lo].len == F->u.e.pos) {
                    pop(s);
                    value_done(s);
                }
                return 1;
            }
            if (p->items[F->u.e.lo].len != F->u.e.pos) return 0;
            /* a complete member that no byte b extends: the value ended */
            pop(s);
            value_done(s);
            if (b == B_VEND) return 1;
            continue;
        }
        }
        return 0;
    }
}

/* ---- DSML -------------------------------------------------------------------- */

static void set_lits(hdr *H, unsigned lits)
{
    H->phase = D_LIT;
    H->lits = (uint16_t)lits;
    H->pos = 0;
}

static uint64_t dsml_missing(const sim *s) { return s->p->tools[s->h.tool].required & ~s->h.seen; }

/* what may follow the invoke header or a parameter */
static unsigned body_lits(const sim *s)
{
    const dtool *t = &s->p->tools[s->h.tool];
    int can_add = t->pcount ? (~s->h.seen & range_mask(0, t->pcount)) != 0 : s->h.log_n < LOG_CAP;
    /* the chat encoding joins parameters with "\n" inside "\n...\n": with none, the body is one empty line */
    int none = !s->h.seen && !s->h.log_n;
    return (can_add ? 1u << L_PARAM_OPEN : 0) | (dsml_missing(s) ? 0 : 1u << (none ? L_EMPTY_CLOSE : L_INVOKE_CLOSE));
}

static int lit_done(sim *s, int L)
{
    const prog *p = s->p;
    hdr *H = &s->h;
    switch (L) {
    case L_BLOCK_OPEN:
    case L_TC_REST:
        set_lits(H, 1u << L_INVOKE_OPEN);
        return 1;
    case L_INVOKE_OPEN:
        H->phase = D_NAME;
        H->lo = p->tfirst;
        H->hi = p->tfirst + p->tcount;
        H->pos = 0;
        return 1;
    case L_NAME_END:
        H->seen = 0;
        log_trunc(s, 0);
        set_lits(H, body_lits(s));
        return 1;
    case L_PARAM_OPEN: {
        const dtool *t = &p->tools[H->tool];
        H->phase = D_PNAME;
        H->pos = 0;
        H->lo = t->pfirst;
        H->hi = t->pfirst + t->pcount;
        H->hash = FNV_BASIS;
        memset(&H->u8, 0, sizeof H->u8);
        return 1;
    }
    case L_PNAME_END: {
        const dparam *dp = &p->params[H->param];
        set_lits(H, (dp->allow_true ? 1u << L_TRUE_END : 0) | (dp->allow_false ? 1u << L_FALSE_END : 0));
        return 1;
    }
    case L_TRUE_END: {
        const dparam *dp = &p->params[H->param];
        H->pos = 0;
        memset(&H->u8, 0, sizeof H->u8);
        if (dp->rcount) {
            H->phase = D_STRENUM;
            H->lo = dp->rfirst;
            H->hi = dp->rfirst + dp->rcount;
        } else {
            H->phase = D_STRVAL;
        }
        return 1;
    }
    case L_FALSE_END: {
        frame *R = push(s);
        if (!R) return 0;
        R->kind = K_ROOT;
        R->st = R_BEFORE;
        R->node = p->params[H->param].node;
        H->phase = D_JSON;
        H->ws = 0;
        return 1;
    }
    case L_PARAM_CLOSE:
        set_lits(H, body_lits(s));
        return 1;
    case L_INVOKE_CLOSE:
    case L_EMPTY_CLOSE:
        set_lits(H, (1u << L_INVOKE_OPEN) | (1u << L_TC_CLOSE));
        return 1;
    case L_TC_CLOSE:
        H->phase = D_DONE;
        return 1;
    }
    return 0;
}

static int dsml_step(sim *s, int b)
{
    const prog *p = s->p;
    hdr *H = &s->h;
    if (!p->dsml) return 0;
    switch (H->phase) {
    case D_CONTENT:
        if (b == B_END) return 1;
        if (b > 255) return 0;
        if (H->cm && b == (uint8_t)OPEN_TAG[H->cm]) {
            if (++H->cm < OPEN_TAG_LEN) return 1;
            /* "<｜DSML｜" only as the start of a block, right after "\n\n" */
            if (H->cnl < 2 || p->tcount == 0) return 0;
            H->started = 1;
            set_lits(H, 1u << L_TC_REST);
            return 1;
        }
        if (b == '<') {
            H->cnl = H->cm ? 0 : H->ctrail;
            H->cm = 1;
            H->ctrail = 0;
        } else if (b == '\n') {
            H->ctrail = H->cm ? 1 : (H->ctrail < 2 ? H->ctrail + 1 : 2);
            H->cm = 0;
        } else {
            H->ctrail = 0;
            H->cm = 0;
        }
        return 1;

    case D_LIT: {
        if (b > 255) return 0;
        unsigned keep = 0;
        int done = -1;
        for (unsigned m = H->lits; m; m &= m - 1) {
            int L = __builtin_ctz(m);
            if ((uint8_t)lit_text[L][H->pos] == b && b != 0) {
                keep |= 1u << L;
                if (lit_text[L][H->pos + 1] == 0) done = L;
            }
        }
        if (!keep) return 0;
        H->lits = (uint16_t)keep;
        H->pos++;
        if (keep == 1u << L_BLOCK_OPEN && H->pos >= 2 + OPEN_TAG_LEN) H->started = 1;
        return done >= 0 ? lit_done(s, done) : 1;
    }

    case D_NAME: {
        uint32_t lo = H->lo, hi = H->hi;
        if (!narrow(p, &lo, &hi, H->pos, b)) return 0;
        H->lo = lo;
        H->hi = hi;
        if (p->items[lo].len == ++H->pos) {
            H->tool = p->items[lo].val;
            set_lits(H, 1u << L_NAME_END);
        }
        return 1;
    }

    case D_PNAME: {
        const dtool *t = &p->tools[H->tool];
        if (b > 255) return 0;
        if (t->pcount) {
            uint32_t lo = H->lo, hi = H->hi;
            if (!narrow(p, &lo, &hi, H->pos, b)) return 0;
            if (!(range_mask(lo - t->pfirst, hi - t->pfirst) & ~H->seen)) return 0; /* only given names left */
            H->lo = lo;
            H->hi = hi;
            if (p->items[lo].len == ++H->pos) {
                H->seen |= 1ull << (lo - t->pfirst);
                H->param = p->items[lo].val;
                set_lits(H, 1u << L_PNAME_END);
            }
            return 1;
        }
        if (b == '"') {
            if (H->pos == 0 || H->u8.utf.need || H->log_n >= LOG_CAP) return 0;
            for (uint32_t i = 0; i < H->log_n; i++)
                if (log_get(s, i) == H->hash) return 0; /* duplicate parameter */
            log_push(s, H->hash);
            H->param = p->free_param;
            set_lits(H, 1u << L_PNAME_END);
            return 1;
        }
        if (b < 0x20 || b == '<' || b == '>' || !dsv4__utf8_dfa_step(&H->u8.utf, (unsigned)b)) return 0;
        H->hash = fnv(H->hash, (unsigned)b);
        H->pos++;
        return 1;
    }

    case D_STRVAL: {
        const char *close = lit_text[L_PARAM_CLOSE];
        if (b > 255) return 0;
        if (H->pos >= CLOSE_TAG_LEN) {
            /* "</｜DSML｜" inside a value must be the parameter's close tag */
            if ((uint8_t)close[H->pos] != b) return 0;
            if (close[++H->pos] == 0) set_lits(H, body_lits(s));
            return 1;
        }
        if (!dsv4__utf8_dfa_step(&H->u8.utf, (unsigned)b)) return 0;
        if (b == (uint8_t)close[H->pos]) H->pos++;
        else H->pos = b == '<';
        return 1;
    }

    case D_STRENUM: {
        uint32_t lo = H->lo, hi = H->hi;
        if (!narrow(p, &lo, &hi, H->pos, b)) return 0;
        H->lo = lo;
        H->hi = hi;
        if (p->items[lo].len == ++H->pos) set_lits(H, body_lits(s));
        return 1;
    }

    case D_DONE:
        return b == B_END;
    }
    return 0;
}

/* ---- public queries ------------------------------------------------------ */

int dsv4__cons_allows(const dsv4__cons *c, const char *bytes, size_t n)
{
    if (!c) return 0;
    if (n == 0) return 1;
    sim s;
    sim_init(&s, c);
    for (size_t i = 0; i < n; i++)
        if (!step(&s, (uint8_t)bytes[i])) return 0;
    return 1;
}

int dsv4__cons_feed(dsv4__cons *c, const char *bytes, size_t n)
{
    if (!c) return 0;
    if (n == 0) return 1;
    sim s;
    sim_init(&s, c);
    for (size_t i = 0; i < n; i++)
        if (!step(&s, (uint8_t)bytes[i])) return 0;
    sim_commit(c, &s);
    return 1;
}

static int sim_complete(const sim *s)
{
    sim t = *s;
    return step(&t, B_END);
}

int dsv4__cons_complete(const dsv4__cons *c)
{
    if (!c) return 0;
    sim s;
    sim_init(&s, c);
    return step(&s, B_END);
}

int dsv4__cons_in_block(const dsv4__cons *c) { return c && c->p->dsml && c->st.h.started; }

int dsv4__cons_same_state(const dsv4__cons *a, const dsv4__cons *b)
{
    return a && b && a->p == b->p && !memcmp(&a->st, &b->st, sizeof a->st);
}

/* ---- completion ---------------------------------------------------------- */

/* Bytes are fed to the sim as they are emitted: every choice below is made
 * on the state the previous bytes produced, and a byte step() refuses
 * (which would be a bug) stops the completion instead of corrupting it. */
typedef struct ectx {
    sim *s;
    char *buf;
    size_t cap, n;
    int bad;
} ectx;

static void emit(ectx *e, const char *b, size_t n)
{
    for (size_t i = 0; i < n && !e->bad; i++) {
        if (!step(e->s, (uint8_t)b[i])) {
            e->bad = 1;
            return;
        }
        if (e->n + 1 < e->cap) e->buf[e->n] = b[i];
        e->n++;
    }
}
static void emits(ectx *e, const char *t) { emit(e, t, strlen(t)); }
static void emit_item(ectx *e, uint32_t i, uint32_t from)
{
    const sitem *it = &e->s->p->items[i];
    emit(e, e->s->p->pool + it->off + from, it->len - from);
}

/* The shortest value of a node: the shortest enum member, else the
 * shortest type's minimal value (objects with their required keys). */
static void emit_min(ectx *e, int32_t node)
{
    const prog *p = e->s->p;
    const snode *N = &p->nodes[node];
    if (N->ecount) {
        emit_item(e, N->emin, 0);
        return;
    }
    switch (N->mintype) {
    case T_INT: case T_NUM: emits(e, "0"); break;
    case T_STR: emits(e, "\"\""); break;
    case T_ARR: emits(e, "[]"); break;
    case T_BOOL: emits(e, "true"); break;
    case T_NULL: emits(e, "null"); break;
    case T_OBJ: {
        int first = 1;
        emits(e, "{");
        for (uint32_t i = 0; i < N->pcount; i++) {
            if (!(N->required >> i & 1)) continue;
            if (!first) emits(e, ",");
            first = 0;
            emit_item(e, N->pfirst + i, 0);
            emits(e, ":");
            emit_min(e, p->items[N->pfirst + i].val);
        }
        emits(e, "}");
        break;
    }
    }
}

/* Does the sim accept these bytes (on a copy)? */
static int sim_accepts(const sim *s, const char *b, size_t n)
{
    sim t = *s;
    for (size_t i = 0; i < n; i++)
        if (!step(&t, (uint8_t)b[i])) return 0;
    return 1;
}

/* A free-form name/key continues with the shortest suffix (then the
 * closing quote) that is accepted: "" first, then one and two characters. */
static void emit_free_suffix(ectx *e)
{
    static const char alpha[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    char buf[4];
    if (sim_accepts(e->s, "\"", 1)) {
        emits(e, "\"");
        return;
    }
    for (int len = 1; len <= 2; len++) {
        int total = len == 1 ? 36 : 36 * 36;
        for (int i = 0; i < total; i++) {
            buf[0] = alpha[len == 1 ? i : i / 36];
            if (len == 2) buf[1] = alpha[i % 36];
            buf[len] = '"';
            if (sim_accepts(e->s, buf, (size_t)len + 1)) {
                emit(e, buf, (size_t)len + 1);
                return;
            }
        }
    }
    e->bad = 1; /* cannot happen: the key log holds fewer than 36 + 36^2 names */
}

static void choose_key(ectx *e, frame *F)
{
    sim *s = e->s;
    const prog *p = s->p;
    const snode *N = &p->nodes[F->node];
    char tmp[16];
    if (!sst_plain(&F->u.k.s)) {
        emit(e, tmp, sst_finish(&F->u.k.s, tmp));
        return;
    }
    /* a declared key, counting what it saves when it is a missing required one */
    uint64_t missing = N->required & ~F->u.k.seen;
    long best = 0;
    uint32_t besti = UINT32_MAX;
    for (uint32_t i = F->u.k.lo; i < F->u.k.hi; i++) {
        if (F->u.k.seen >> i & 1) continue;
        const sitem *it = &p->items[N->pfirst + i];
        long vmin = p->nodes[it->val].minlen;
        long c = (long)(it->len - F->u.k.pos) + 1 + vmin;
        if (missing >> i & 1) c -= (long)it->len + 2 + vmin;
        if (besti == UINT32_MAX || c < best) best = c, besti = i;
    }
    if (N->addl >= 0 && s->h.log_n < LOG_CAP) {
        long c = 2 + (long)p->nodes[N->addl].minlen; /* at least the quote */
        if (besti == UINT32_MAX || c < best) {
            emit_free_suffix(e);
            return;
        }
    }
    if (besti == UINT32_MAX) {
        e->bad = 1;
        return;
    }
    emit_item(e, N->pfirst + besti, F->u.k.pos);
}

static void choose_json(ectx *e, frame *F)
{
    sim *s = e->s;
    const prog *p = s->p;
    char tmp[16];
    switch (F->kind) {
    case K_ROOT:
        if (F->st == R_BEFORE) emit_min(e, F->node);
        else if (!step(s, B_VEND)) e->bad = 1;
        return;
    case K_OBJ: {
        uint64_t missing = p->nodes[F->node].required & ~F->u.o.seen;
        switch (F->st) {
        case O_OPEN: emits(e, missing ? "\"" : "}"); return;
        case O_COMMA: emits(e, "\""); return; /* the key is chosen inside it */
        case O_AFTER_KEY: emits(e, ":"); return;
        case O_COLON: emit_min(e, F->u.o.vnode); return;
        case O_AFTER_VAL: emits(e, missing ? "," : "}"); return;
        }
        break;
    }
    case K_ARR:
        if (F->st == A_COMMA) emit_min(e, F->node);
        else emits(e, "]");
        return;
    case K_KEY:
        choose_key(e, F);
        return;
    case K_STR: {
        size_t n = sst_finish(&F->u.s.s, tmp);
        tmp[n++] = '"';
        emit(e, tmp, n);
        return;
    }
    case K_NUM:
        if (F->st == N_ZERO || F->st == N_INT || F->st == N_FRAC || F->st == N_EXP) {
            if (!step(s, B_VEND)) e->bad = 1;
        } else {
            emits(e, "0");
        }
        return;
    case K_LIT:
        emits(e, json_lits[F->a] + F->u.l.pos);
        return;
    case K_ENUM: {
        if (p->items[F->u.e.lo].len == F->u.e.pos) {
            if (!step(s, B_VEND)) e->bad = 1;
            return;
        }
        uint32_t best = F->u.e.lo;
        for (uint32_t i = F->u.e.lo; i < F->u.e.hi; i++)
            if (p->items[i].len < p->items[best].len) best = i;
        emit_item(e, best, F->u.e.pos);
        return;
    }
    }
    e->bad = 1;
}

/* cost of a string="true"/"false" choice from the attribute value on */
static uint32_t dparam_true_cost(const prog *p, const dparam *dp)
{
    return lit_len(L_TRUE_END) + (dp->rcount ? p->items[dp->rmin].len : lit_len(L_PARAM_CLOSE));
}
static uint32_t dparam_false_cost(const prog *p, const dparam *dp)
{
    return lit_len(L_FALSE_END) + p->nodes[dp->node].minlen + lit_len(L_PARAM_CLOSE);
}

static void choose_dsml(ectx *e)
{
    sim *s = e->s;
    const prog *p = s->p;
    hdr *H = &s->h;
    char tmp[16];
    switch (H->phase) {
    case D_LIT: {
        unsigned m = H->lits;
        int L;
        if (!(m & (m - 1))) L = __builtin_ctz(m);
        else if (m & (1u << L_TC_CLOSE)) L = L_TC_CLOSE;
        else if (m & (1u << L_PARAM_OPEN)) {
            int close = m & (1u << L_INVOKE_CLOSE) ? L_INVOKE_CLOSE : m & (1u << L_EMPTY_CLOSE) ? L_EMPTY_CLOSE : -1;
            L = dsml_missing(s) || close < 0 ? L_PARAM_OPEN : close;
        }
        else {
            const dparam *dp = &p->params[H->param];
            L = dparam_true_cost(p, dp) <= dparam_false_cost(p, dp) ? L_TRUE_END : L_FALSE_END;
        }
        emits(e, lit_text[L] + H->pos);
        return;
    }
    case D_NAME: {
        uint32_t best = H->lo;
        for (uint32_t i = H->lo; i < H->hi; i++)
            if (p->tools[p->items[i].val].cost < p->tools[p->items[best].val].cost) best = i;
        emit_item(e, best, H->pos);
        return;
    }
    case D_PNAME: {
        const dtool *t = &p->tools[H->tool];
        if (!t->pcount) {
            if (!sst_plain(&H->u8)) emit(e, tmp, sst_finish(&H->u8, tmp));
            else emit_free_suffix(e);
            return;
        }
        uint64_t missing = dsml_missing(s);
        long best = 0;
        uint32_t besti = UINT32_MAX;
        for (uint32_t i = H->lo; i < H->hi; i++) {
            uint32_t bit = i - t->pfirst;
            if (H->seen >> bit & 1) continue;
            long cost = (long)p->params[p->items[i].val].cost;
            long c = (missing >> bit & 1) ? 0 : cost; /* the rest of the element is common to all */
            if (besti == UINT32_MAX || c < best) best = c, besti = i;
        }
        if (besti == UINT32_MAX) {
            e->bad = 1;
            return;
        }
        emit_item(e, besti, H->pos);
        return;
    }
    case D_STRVAL:
        if (H->pos == 0 && !sst_plain(&H->u8)) emit(e, tmp, sst_finish(&H->u8, tmp));
        else emits(e, lit_text[L_PARAM_CLOSE] + H->pos);
        return;
    case D_STRENUM: {
        uint32_t best = H->lo;
        for (uint32_t i = H->lo; i < H->hi; i++)
            if (p->items[i].len < p->items[best].len) best = i;
        emit_item(e, best, H->pos);
        return;
    }
    }
    e->bad = 1;
}

size_t dsv4__cons_completion(const dsv4__cons *c, char *buf, size_t cap)
{
    if (!c) return 0;
    sim s;
    sim_init(&s, c);
    ectx e = { &s, buf, buf ? cap : 0, 0, 0 };
    /* each round emits at least one byte or pops a frame; the bound only
     * guards against a bug turning into an endless loop */
    for (long round = 0; round < (1L << 22) && !e.bad; round++) {
        if (sim_complete(&s)) break;
        if (s.h.depth) choose_json(&e, top(&s));
        else choose_dsml(&e);
    }
    if (e.cap) buf[e.n < e.cap ? e.n : e.cap - 1] = 0;
    return e.n;
}

/* ---- lifetime ---------------------------------------------------------------- */

static void prog_free(prog *p)
{
    if (!p) return;
    dsv4__free(p->pool);
    dsv4__free(p->items);
    dsv4__free(p->nodes);
    dsv4__free(p->params);
    dsv4__free(p->tools);
    dsv4__free(p);
}

void dsv4__cons_free(dsv4__cons *c)
{
    if (!c) return;
    if (dsv4__ref_put(&c->p->ref)) prog_free(c->p);
    dsv4__free(c);
}

dsv4__cons *dsv4__cons_clone(const dsv4__cons *c)
{
    if (!c) return NULL;
    dsv4__cons *d = dsv4__malloc(sizeof *d);
    if (!d) return NULL;
    memcpy(d, c, sizeof *d);
    dsv4__ref_get(&c->p->ref);
    return d;
}

/* ---- compiler -------------------------------------------------------------- */

typedef struct build {
    char *pool;
    size_t npool, cpool;
    sitem *items;
    size_t nitems, citems;
    snode *nodes;
    size_t nnodes, cnodes;
    dparam *params;
    size_t nparams, cparams;
    dtool *tools;
    size_t ntools, ctools;
    dsv4__err *err;
} build;

/* an entry of a set being built; s points into the pool once it stops moving */
typedef struct tent {
    const char *s;
    uint32_t off, len;
    int32_t val;
    int32_t aux;
} tent;

static int reserve(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 1;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    void *q = dsv4__realloc(*p, nc * elem);
    if (!q) return 0;
    *p = q;
    *cap = nc;
    return 1;
}

static dsv4_status oom(build *B) { return dsv4__fail(B->err, DSV4_ERR_OUT_OF_MEMORY, "out of memory compiling a constraint"); }

static dsv4_status pool_add(build *B, const void *b, size_t n)
{
    if (B->npool + n > UINT32_MAX / 2) return dsv4__fail(B->err, DSV4_ERR_UNSUPPORTED, "constraint text too large");
    if (!reserve((void **)&B->pool, &B->cpool, B->npool + n, 1)) return oom(B);
    memcpy(B->pool + B->npool, b, n);
    B->npool += n;
    return DSV4_OK;
}

/* JSON string text with minimal escaping: \" \\ \b \f \n \r \t, \u00xx
 * (lowercase) for the other control characters, everything else raw. */
static dsv4_status ser_string(build *B, const char *v, size_t n)
{
    dsv4_status st = pool_add(B, "\"", 1);
    for (size_t i = 0; i < n && !st; i++) {
        uint8_t c = (uint8_t)v[i];
        char esc[8];
        const char *e = NULL;
        switch (c) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                e = esc;
            }
        }
        st = e ? pool_add(B, e, strlen(e)) : pool_add(B, v + i, 1);
    }
    return st ? st : pool_add(B, "\"", 1);
}

/* Compact JSON text of a value (the form enum members are matched in). */
static dsv4_status ser_json(build *B, json_t *v)
{
    char num[40];
    dsv4_status st = DSV4_OK;
    switch (json_typeof(v)) {
    case JSON_NULL: return pool_add(B, "null", 4);
    case JSON_TRUE: return pool_add(B, "true", 4);
    case JSON_FALSE: return pool_add(B, "false", 5);
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return pool_add(B, num, strlen(num));
    case JSON_REAL: {
        /* the shortest %g form that reads back as the same double */
        double d = json_real_value(v);
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(num, sizeof num, "%.*g", prec, d);
            if (strtod(num, NULL) == d) break;
        }
        return pool_add(B, num, strlen(num));
    }
    case JSON_STRING: return ser_string(B, json_string_value(v), json_string_length(v));
    case JSON_ARRAY:
        st = pool_add(B, "[", 1);
        for (size_t i = 0; i < json_array_size(v) && !st; i++) {
            if (i) st = pool_add(B, ",", 1);
            if (!st) st = ser_json(B, json_array_get(v, i));
        }
        return st ? st : pool_add(B, "]", 1);
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        int first = 1;
        st = pool_add(B, "{", 1);
        json_object_foreach(v, k, x) {
            if (st) break;
            if (!first) st = pool_add(B, ",", 1);
            first = 0;
            if (!st) st = ser_string(B, k, strlen(k));
            if (!st) st = pool_add(B, ":", 1);
            if (!st) st = ser_json(B, x);
        }
        return st ? st : pool_add(B, "}", 1);
    }
    }
    return DSV4_OK;
}

static int tent_cmp(const void *a, const void *b)
{
    const tent *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* Sort the entries (their texts in the pool), drop repeats (dup_is_error:
 * fail instead), and append them as a set; *first = its first item. */
static dsv4_status append_set(build *B, tent *t, size_t *n, uint32_t *first, const char *dup_what)
{
    for (size_t i = 0; i < *n; i++) t[i].s = B->pool + t[i].off;
    qsort(t, *n, sizeof *t, tent_cmp);
    size_t m = 0;
    for (size_t i = 0; i < *n; i++) {
        if (m && tent_cmp(&t[m - 1], &t[i]) == 0) {
            if (dup_what)
                return dsv4__fail(B->err, DSV4_ERR_INVALID_ARGUMENT, "duplicate %s \"%.*s\"", dup_what,
                                  (int)t[i].len - 1, t[i].s);
            continue;
        }
        t[m++] = t[i];
    }
    *n = m;
    if (!reserve((void **)&B->items, &B->citems, B->nitems + m, sizeof(sitem))) return oom(B);
    *first = (uint32_t)B->nitems;
    for (size_t i = 0; i < m; i++) B->items[B->nitems++] = (sitem){ t[i].off, t[i].len, t[i].val };
    return DSV4_OK;
}

static dsv4_status add_node(build *B, const snode *n, int32_t *out)
{
    if (!reserve((void **)&B->nodes, &B->cnodes, B->nnodes + 1, sizeof(snode))) return oom(B);
    B->nodes[B->nnodes] = *n;
    *out = (int32_t)B->nnodes++;
    return DSV4_OK;
}

static uint32_t sat_add(uint32_t a, uint32_t b) { return a > UINT32_MAX / 4 - b ? UINT32_MAX / 4 : a + b; }

/* the shortest value of a node with the given types (no enum) */
static void node_minimum(const build *B, snode *n)
{
    static const uint8_t order[] = { T_INT, T_NUM, T_STR, T_ARR, T_OBJ, T_BOOL, T_NULL };
    uint32_t objlen = 2;
    int nreq = 0;
    for (uint32_t i = 0; i < n->pcount; i++) {
        if (!(n->required >> i & 1)) continue;
        const sitem *it = &B->items[n->pfirst + i];
        objlen = sat_add(objlen, sat_add(it->len + 1 + (nreq > 0), B->nodes[it->val].minlen));
        nreq++;
    }
    n->minlen = UINT32_MAX;
    for (size_t i = 0; i < sizeof order; i++) {
        uint8_t t = order[i];
        if (!(n->types & t)) continue;
        uint32_t len = t == T_INT || t == T_NUM ? 1 : t == T_STR || t == T_ARR ? 2 : t == T_OBJ ? objlen : 4;
        if (len < n->minlen) n->minlen = len, n->mintype = t;
    }
}

static uint8_t value_types(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_NULL: return T_NULL;
    case JSON_TRUE: case JSON_FALSE: return T_BOOL;
    case JSON_INTEGER: return T_INT | T_NUM;
    case JSON_REAL: {
        /* an integral real prints without a fraction ("%g"), so it is an integer text */
        double d = json_real_value(v);
        return (d > -1e15 && d < 1e15 && d == (double)(long long)d) ? (T_INT | T_NUM) : T_NUM;
    }
    case JSON_STRING: return T_STR;
    case JSON_ARRAY: return T_ARR;
    case JSON_OBJECT: return T_OBJ;
    }
    return 0;
}

static int kw_in(const char *k, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(k, *list)) return 1;
    return 0;
}

static const char *const kw_supported[] = { "type", "properties", "required", "additionalProperties", "enum",
                                            "items", "const", NULL };
/* descriptive keywords that do not change which values are valid */
static const char *const kw_ignored[] = { "description", "title", "$schema", "$id", "$comment", "default",
                                          "examples", "strict", "deprecated", "readOnly", "writeOnly",
                                          "$defs", "definitions", NULL };

static dsv4_status comp_node(build *B, json_t *js, int depth, uint8_t tmask, int32_t *out);

/* enum/const members allowed by the types, as a sorted set of compact texts */
static dsv4_status comp_enum(build *B, json_t *en, json_t *cn, snode *n)
{
    size_t cnt = cn ? 1 : json_array_size(en), m = 0;
    dsv4_status st = DSV4_OK;
    tent *t = dsv4__calloc(cnt, sizeof *t);
    if (!t) return oom(B);
    for (size_t i = 0; i < cnt && !st; i++) {
        json_t *v = cn ? cn : json_array_get(en, i);
        if (!(value_types(v) & n->types)) continue;
        if (cn && en) {
            /* const and enum together: the const must be a member */
            int found = 0;
            for (size_t j = 0; j < json_array_size(en); j++) found |= json_equal(v, json_array_get(en, j));
            if (!found) continue;
        }
        t[m].off = (uint32_t)B->npool;
        st = ser_json(B, v);
        t[m].len = (uint32_t)(B->npool - t[m].off);
        m++;
    }
    if (!st && m == 0)
        st = dsv4__fail(B->err, DSV4_ERR_INVALID_ARGUMENT, "JSON schema: no \"%s\" value matches the allowed types",
                        cn ? "const" : "enum");
    if (!st) st = append_set(B, t, &m, &n->efirst, NULL);
    if (!st) {
        n->ecount = (uint32_t)m;
        n->emin = n->efirst;
        for (uint32_t i = n->efirst; i < n->efirst + m; i++)
            if (B->items[i].len < B->items[n->emin].len) n->emin = i;
        n->minlen = B->items[n->emin].len;
        n->mintype = 0;
    }
    dsv4__free(t);
    return st;
}

static dsv4_status comp_object(build *B, json_t *js, int depth, snode *n)
{
    json_t *props = json_object_get(js, "properties"), *req = json_object_get(js, "required");
    json_t *addl = json_object_get(js, "additionalProperties");
    dsv4_status st = DSV4_OK;
    if (props && !json_is_object(props))
        return dsv4__fail(B->err, DSV4_ERR_INVALID_ARGUMENT, "JSON schema: \"properties\" must be an object");
    if (req && !json_is_array(req))
        return dsv4__fail(B->err, DSV4_ERR_INVALID_ARGUMENT, "JSON schema: \"required\" must be an array");
    for (size_t i = 0; req && i < json_array_size(req); i++)
        if (!json_is_string(json_array_get(req, i)))
            return dsv4__fail(B->err, DSV4_ERR_INVALID_ARGUMENT, "JSON schema: \"required\" must list strings");
    /* additionalProperties: absent means "only the properties" when there
     * are properties (a strict reading that suits generation), any key otherwise */
    if (!addl) n->addl = props ? -1 : NODE_ANY;
    else if (json_is_false(addl)) n->addl = -1;
    else if (json_is_true(addl)) n->addl = NODE_ANY;
    else if (json_is_object(addl)) {
        if ((st = comp_node(B, addl, depth + 1, T_ALL, &n->addl))) return st;
    } else
        return dsv4__fail(B->err, DSV4_ERR_INVALID_ARGUMENT,
                          "JSON schema: \"additionalProperties\" must be a boolean or a schema");

    size_t cap = json_object_size(props) + json_array_size(req), m = 0;
    tent *t = dsv4__calloc(cap, sizeof *t);
    if (!t) return oom(B);
    const char *k;
    json_t *v;
    if (props) {
        json_object_foreach(props, k, v) {
            if ((st = comp_node(B, v, depth + 1, T_ALL, &t[m].val))) break;
            t[m].off = (uint32_t)B->npool;
            if ((st = ser_string(B, k, strlen(k)))) break;
            t[m].len = (uint32_t)(B->npool - t[m].off);
            m++;
        }
    }
    /* required names that are not properties: any value, unless only the
     * properties are allowed explicitly (then the schema is unsatisfiable) */
    for (size_t i = 0; !st && req && i < json_array_size(req); i++) {
        const char *name = json_string_value(json_array_get(req, i));
        if (props && json_object_get(props, name)) continue;
        if (addl && json_is_false(addl)) {
            st = dsv4__fail(B->err, DSV4_ERR_INVALID_ARGUMENT,
                            "JSON schema: required \"%s\" is not a property and additionalProperties is false", name);
            break;
        }
        int again = 0;
        for (size_t j = 0; j < i; j++) again |= !strcmp(name, json_string_value(json_array_get(req, j)));
        if (again) continue;
        t[m].val = NODE_ANY;
        t[m].off = (uint32_t)B->npool;
        if ((st = ser_string(B, name, strlen(name)))) break;
        t[m].len = (uint32_t)(B->npool - t[m].off);
        m++;
    }
    if (!st && m > MAX_PROPS)
        st = dsv4__fail(B->err, DSV4_ERR_UNSUPPORTED, "JSON schema: more than %d properties in one object", MAX_PROPS);
    if (!st) st = append_set(B, t, &m, &n->pfirst, NULL);
    if (!st) {
        n->pcount = (uint32_t)m;
        for (size_t i = 0; req && i < json_array_size(req); i++) {
            const char *name = json_string_value(json_array_get(req, i));
            size_t len = strlen(name);
            for (uint32_t j = 0; j < n->pcount; j++) {
                const sitem *it = &B->items[n->pfirst + j];
                /* plain names compare directly; escaped ones never equal an unescaped name */
                if (it->len == len + 2 && !memcmp(B->pool + it->off + 1, name, len)) n->required |= 1ull << j;
            }
        }
    }
    dsv4__free(t);
    return st;
}

static dsv4_status comp_node(build *B, json_t *js, int depth, uint8_t tmask, int32_t *out)
{
    snode n;
    memset(&n, 0, sizeof n);
    n.items = NODE_ANY;
    n.addl = NODE_ANY;
    dsv4_status st;
    if (depth >= MAX_NEST)
        return dsv4__fail(B->err, DSV4_ERR_UNSUPPORTED, "JSON schema nested deeper than %d levels", MAX_NEST);
    if (json_is_true(js) || (json_is_object(js) && json_object_size(js) == 0)) {
        if (tmask == T_ALL) {
            *out = NODE_ANY;
            return DSV4_OK;
        }
        n.types = tmask;
        node_minimum(B, &n);
        return add_node(B, &n, out);
    }
    if (json_is_false(js))
        return dsv4__fail(B->err, DSV4_ERR_INVALID_ARGUMENT, "JSON schema: false matches no value");
    if (!json_is_object(js))
        return dsv4__fail(B->err, DSV4_ERR_INVALID_ARGUMENT, "JSON schema: a schema must be an object or a boolean");

    const char *k;
    json_t *v;
    json_object_foreach(js, k, v) {
        if (kw_in(k, kw_supported) || kw_in(k, kw_ignored) || !strncmp(k, "x-", 2)) continue;
        return dsv4__fail(B->err, DSV4_ERR_UNSUPPORTED, "JSON schema keyword \"%s\" is not supported", k);
    }

    json_t *type = json_object_get(js, "type");
    n.types = T_ALL;
    if (type) {
        static const struct { const char *name; uint8_t bits; } tn[] = {
            { "null", T_NULL }, { "boolean", T_BOOL }, { "integer", T_INT }, { "number", T_INT | T_NUM },
            { "string", T_STR }, { "array", T_ARR }, { "object", T_OBJ },
        };
        size_t cnt = json_is_array(type) ? json_array_size(type) : 1;
        n.types = 0;
        for (size_t i = 0; i < cnt; i++) {
            json_t *x = json_is_array(type) ? json_array_get(type, i) : type;
            size_t j;
            for (j = 0; j < DSV4__ARRAY_LEN(tn); j++)
                if (json_is_string(x) && !strcmp(json_string_value(x), tn[j].name)) break;
            if (j == DSV4__ARRAY_LEN(tn))
                return dsv4__fail(B->err, DSV4_ERR_INVALID_ARGUMENT, "JSON schema: bad \"type\"");
            n.types |= tn[j].bits;
        }
    }
    n.types &= tmask;
    if (!n.types)
        return dsv4__fail(B->err, DSV4_ERR_INVALID_ARGUMENT, "JSON schema: no value type is allowed%s",
                          tmask == T_OBJ ? " (an object is required)" : "");

    json_t *items = json_object_get(js, "items");
    if (items) {
        if (json_is_array(items))
            return dsv4__fail(B->err, DSV4_ERR_UNSUPPORTED, "JSON schema keyword \"items\" with an array is not supported");
        if ((st = comp_node(B, items, depth + 1, T_ALL, &n.items))) return st;
    }
    if ((st = comp_object(B, js, depth, &n))) return st;
    node_minimum(B, &n);

    json_t *en = json_object_get(js, "enum"), *cn = json_object_get(js, "const");
    if (en && (!json_is_array(en) || json_array_size(en) == 0))
        return dsv4__fail(B->err, DSV4_ERR_INVALID_ARGUMENT, "JSON schema: \"enum\" must be a non-empty array");
    if ((en || cn) && (st = comp_enum(B, en, cn, &n))) return st;
    return add_node(B, &n, out);
}

static dsv4_status build_init(build *B, dsv4__err *err)
{
    memset(B, 0, sizeof *B);
    B->err = err;
    snode any;
    memset(&any, 0, sizeof any);
    any.types = T_ALL;
    any.items = NODE_ANY;
    any.addl = NODE_ANY;
    any.minlen = 1;
    any.mintype = T_INT;
    int32_t idx;
    return add_node(B, &any, &idx);
}

static void build_free(build *B)
{
    dsv4__free(B->pool);
    dsv4__free(B->items);
    dsv4__free(B->nodes);
    dsv4__free(B->params);
    dsv4__free(B->tools);
}

/* Move the built arrays into a program and wrap it in a constraint. */
static dsv4_status finish(build *B, prog *tmpl, dsv4__cons **out)
{
    dsv4__cons *c = dsv4__calloc(1, sizeof *c);
    prog *p = dsv4__calloc(1, sizeof *p);
    if (!c || !p) {
        dsv4__free(c);
        dsv4__free(p);
        build_free(B);
        return oom(B);
    }
    *p = *tmpl;
    dsv4__ref_init(&p->ref);
    p->pool = B->pool;
    p->items = B->items;
    p->nodes = B->nodes;
    p->params = B->params;
    p->tools = B->tools;
    c->p = p;
    if (p->dsml) {
        if (p->mode == DSV4__TOOLS_REQUIRED) set_lits(&c->st.h, 1u << L_BLOCK_OPEN);
        else c->st.h.phase = D_CONTENT;
    } else {
        c->st.h.depth = 1;
        c->st.f[0].kind = K_ROOT;
        c->st.f[0].st = R_BEFORE;
        c->st.f[0].node = p->root;
    }
    *out = c;
    return DSV4_OK;
}

/* constraint compilations since the process started (test hook) */
static atomic_ulong n_compiles;

unsigned long dsv4__cons_compile_count(void) { return atomic_load_explicit(&n_compiles, memory_order_relaxed); }

dsv4_status dsv4__cons_json_value(json_t *schema, int object_only, dsv4__cons **out, dsv4__err *err)
{
    build B;
    dsv4_status st;
    if (!out) return dsv4__fail(err, DSV4_ERR_INVALID_ARGUMENT, "constraint: out is NULL");
    *out = NULL;
    atomic_fetch_add_explicit(&n_compiles, 1, memory_order_relaxed);
    if ((st = build_init(&B, err))) {
        build_free(&B);
        return st;
    }
    prog tmpl;
    memset(&tmpl, 0, sizeof tmpl);
    uint8_t tmask = object_only ? T_OBJ : T_ALL;
    if (schema) {
        st = comp_node(&B, schema, 0, tmask, &tmpl.root);
    } else if (tmask == T_ALL) {
        tmpl.root = NODE_ANY;
        st = DSV4_OK;
    } else {
        json_t *js = json_true();
        st = comp_node(&B, js, 0, tmask, &tmpl.root);
    }
    if (st) {
        build_free(&B);
        return st;
    }
    return finish(&B, &tmpl, out);
}

dsv4_status dsv4__cons_json(const char *schema, size_t len, int object_only, dsv4__cons **out, dsv4__err *err)
{
    if (!out) return dsv4__fail(err, DSV4_ERR_INVALID_ARGUMENT, "constraint: out is NULL");
    *out = NULL;
    json_t *js = NULL;
    if (schema && len) {
        json_error_t jerr;
        js = json_loadb(schema, len, JSON_DECODE_ANY, &jerr);
        if (!js) return dsv4__fail(err, DSV4_ERR_INVALID_ARGUMENT, "malformed JSON schema: %s (line %d)", jerr.text, jerr.line);
    }
    dsv4_status st = dsv4__cons_json_value(js, object_only, out, err);
    json_decref(js);
    return st;
}

/* ---- tools ----------------------------------------------------------------- */

/* Names appear raw inside name="..." attributes. */
static int dsml_name_ok(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if ((uint8_t)*s < 0x20 || *s == '"' || *s == '<' || *s == '>') return 0;
    return 1;
}

static dsv4_status add_param(build *B, json_t *schema, int32_t *out)
{
    dparam d;
    memset(&d, 0, sizeof d);
    d.node = NODE_ANY;
    dsv4_status st;
    if (schema) {
        /* a parameter schema outside the subset constrains nothing (any JSON) */
        dsv4__err scratch;
        dsv4__err *keep = B->err;
        size_t nn = B->nnodes, ni = B->nitems, np = B->npool;
        B->err = &scratch;
        st = comp_node(B, schema, 0, T_ALL, &d.node);
        B->err = keep;
        if (st == DSV4_ERR_OUT_OF_MEMORY) return oom(B);
        if (st) {
            d.node = NODE_ANY;
            B->nnodes = nn, B->nitems = ni, B->npool = np;
        }
    }
    const snode *n = &B->nodes[d.node];
    uint8_t enum_types = 0;
    for (uint32_t i = n->efirst; i < n->efirst + n->ecount; i++)
        enum_types |= B->pool[B->items[i].off] == '"' ? T_STR : T_NUM;
    /* string="true" carries raw text: with an enum, the raw strings of its
     * string members (those that do not contain a close tag) */
    if (n->ecount && (enum_types & T_STR)) {
        json_t *en = json_object_get(schema, "enum"), *cn = json_object_get(schema, "const");
        size_t cnt = cn ? 1 : json_array_size(en), m = 0;
        tent *t = dsv4__calloc(cnt, sizeof *t);
        if (!t) return oom(B);
        st = DSV4_OK;
        for (size_t i = 0; i < cnt && !st; i++) {
            json_t *v = cn ? cn : json_array_get(en, i);
            if (!json_is_string(v)) continue;
            const char *raw = json_string_value(v);
            size_t rl = json_string_length(v);
            if (memmem(raw, rl, lit_text[L_PARAM_CLOSE], CLOSE_TAG_LEN)) continue;
            t[m].off = (uint32_t)B->npool;
            st = pool_add(B, raw, rl);
            if (!st) st = pool_add(B, lit_text[L_PARAM_CLOSE], lit_len(L_PARAM_CLOSE));
            t[m].len = (uint32_t)(B->npool - t[m].off);
            m++;
        }
        if (!st) st = append_set(B, t, &m, &d.rfirst, NULL);
        dsv4__free(t);
        if (st) return st;
        d.rcount = (uint32_t)m;
        d.rmin = d.rfirst;
        for (uint32_t i = d.rfirst; i < d.rfirst + m; i++)
            if (B->items[i].len < B->items[d.rmin].len) d.rmin = i;
        n = &B->nodes[d.node];
    }
    /* a string type gives string="true", other types string="false" */
    if (n->ecount) {
        d.allow_true = d.rcount > 0;
        d.allow_false = (enum_types & ~T_STR) != 0;
    } else {
        d.allow_true = (n->types & T_STR) != 0;
        d.allow_false = n->types != T_STR;
    }
    if (!d.allow_true && !d.allow_false) d.allow_false = 1; /* enum strings that all contain a close tag */
    if (!reserve((void **)&B->params, &B->cparams, B->nparams + 1, sizeof(dparam))) return oom(B);
    B->params[B->nparams] = d;
    *out = (int32_t)B->nparams++;
    return DSV4_OK;
}

static uint32_t param_cost(const build *B, const dparam *d, uint32_t name_len)
{
    uint32_t tc = lit_len(L_TRUE_END) + (d->rcount ? B->items[d->rmin].len : lit_len(L_PARAM_CLOSE));
    uint32_t fc = sat_add(lit_len(L_FALSE_END) + lit_len(L_PARAM_CLOSE), B->nodes[d->node].minlen);
    uint32_t v = d->allow_true && (!d->allow_false || tc <= fc) ? tc : fc;
    return sat_add(lit_len(L_PARAM_OPEN) + name_len + lit_len(L_PNAME_END), v);
}

static dsv4_status add_tool(build *B, json_t *el, tent *name_out)
{
    json_t *fn = json_object_get(el, "function");
    if (!json_is_object(fn)) fn = el;
    json_t *jname = json_object_get(fn, "name"), *params = json_object_get(fn, "parameters");
    if (!json_is_string(jname) || !dsml_name_ok(json_string_value(jname)))
        return dsv4__fail(B->err, DSV4_ERR_INVALID_ARGUMENT, "tools: a function name is missing or not writable in DSML");
    if (params && !json_is_null(params) && !json_is_object(params))
        return dsv4__fail(B->err, DSV4_ERR_INVALID_ARGUMENT, "tools: \"parameters\" of %s must be an object",
                          json_string_value(jname));
    json_t *props = json_is_object(params) ? json_object_get(params, "properties") : NULL;
    json_t *req = json_is_object(params) ? json_object_get(params, "required") : NULL;
    if (props && !json_is_object(props)) props = NULL;
    if (req && !json_is_array(req)) req = NULL;

    dtool t;
    memset(&t, 0, sizeof t);
    size_t cap = json_object_size(props) + json_array_size(req), m = 0;
    tent *e = dsv4__calloc(cap, sizeof *e);
    if (!e) return oom(B);
    dsv4_status st = DSV4_OK;
    /* declared names: the properties, plus required names that are not properties */
    for (size_t pass = 0; pass < 2 && !st; pass++) {
        size_t cnt = pass ? json_array_size(req) : json_object_size(props);
        void *it = pass || !props ? NULL : json_object_iter(props);
        for (size_t i = 0; i < cnt && !st; i++) {
            const char *name;
            json_t *schema = NULL;
            if (pass) {
                name = json_string_value(json_array_get(req, i));
                if (!name || (props && json_object_get(props, name))) continue;
                int again = 0;
                for (size_t j = 0; j < i; j++) {
                    const char *o = json_string_value(json_array_get(req, j));
                    again |= o && !strcmp(name, o);
                }
                if (again) continue;
            } else {
                name = json_object_iter_key(it);
                schema = json_object_iter_value(it);
                it = json_object_iter_next(props, it);
            }
            if (!dsml_name_ok(name)) {
                st = dsv4__fail(B->err, DSV4_ERR_INVALID_ARGUMENT, "tools: parameter name of %s not writable in DSML",
                                json_string_value(jname));
                break;
            }
            if ((st = add_param(B, schema, &e[m].val))) break;
            e[m].off = (uint32_t)B->npool;
            if ((st = pool_add(B, name, strlen(name))) || (st = pool_add(B, "\"", 1))) break;
            e[m].len = (uint32_t)(B->npool - e[m].off);
            m++;
        }
    }
    if (!st && m > MAX_PROPS)
        st = dsv4__fail(B->err, DSV4_ERR_UNSUPPORTED, "tools: %s has more than %d parameters", json_string_value(jname),
                        MAX_PROPS);
    if (!st) st = append_set(B, e, &m, &t.pfirst, NULL);
    if (!st) {
        t.pcount = (uint32_t)m;
        uint32_t cost = lit_len(L_NAME_END) + lit_len(L_INVOKE_CLOSE);
        for (uint32_t j = 0; j < t.pcount; j++) {
            const sitem *it = &B->items[t.pfirst + j];
            for (size_t i = 0; i < json_array_size(req); i++) {
                const char *name = json_string_value(json_array_get(req, i));
                if (name && strlen(name) + 1 == it->len && !memcmp(B->pool + it->off, name, it->len - 1)) {
                    t.required |= 1ull << j;
                    B->params[it->val].cost = param_cost(B, &B->params[it->val], it->len);
                    cost = sat_add(cost, B->params[it->val].cost);
                    break;
                }
            }
            if (!(t.required >> j & 1)) B->params[it->val].cost = param_cost(B, &B->params[it->val], it->len);
        }
        if (!t.required) cost = sat_add(cost, lit_len(L_EMPTY_CLOSE) - lit_len(L_INVOKE_CLOSE));
        name_out->off = (uint32_t)B->npool;
        const char *nm = json_string_value(jname);
        if (!(st = pool_add(B, nm, strlen(nm))) && !(st = pool_add(B, "\"", 1))) {
            name_out->len = (uint32_t)(B->npool - name_out->off);
            t.cost = sat_add(cost, name_out->len);
            name_out->val = (int32_t)B->ntools;
            if (!reserve((void **)&B->tools, &B->ctools, B->ntools + 1, sizeof(dtool))) st = oom(B);
            else B->tools[B->ntools++] = t;
        }
    }
    dsv4__free(e);
    return st;
}

dsv4_status dsv4__cons_dsml(const char *tools, size_t len, int mode, const char *forced_name, dsv4__cons **out,
                            dsv4__err *err)
{
    if (!out) return dsv4__fail(err, DSV4_ERR_INVALID_ARGUMENT, "constraint: out is NULL");
    *out = NULL;
    json_t *js = NULL;
    if (tools && len) {
        json_error_t jerr;
        js = json_loadb(tools, len, JSON_DECODE_ANY, &jerr);
        if (!js) return dsv4__fail(err, DSV4_ERR_INVALID_ARGUMENT, "malformed tools JSON: %s (line %d)", jerr.text, jerr.line);
    }
    dsv4_status st = dsv4__cons_dsml_value(js, mode, forced_name, out, err);
    json_decref(js);
    return st;
}

dsv4_status dsv4__cons_dsml_value(json_t *js, int mode, const char *forced_name, dsv4__cons **out, dsv4__err *err)
{
    build B;
    dsv4_status st;
    if (!out) return dsv4__fail(err, DSV4_ERR_INVALID_ARGUMENT, "constraint: out is NULL");
    *out = NULL;
    if (mode != DSV4__TOOLS_AUTO && mode != DSV4__TOOLS_REQUIRED)
        return dsv4__fail(err, DSV4_ERR_INVALID_ARGUMENT, "constraint: bad tool mode %d", mode);
    if (forced_name) mode = DSV4__TOOLS_REQUIRED;
    if (js && !json_is_array(js)) return dsv4__fail(err, DSV4_ERR_INVALID_ARGUMENT, "tools must be a JSON array");
    atomic_fetch_add_explicit(&n_compiles, 1, memory_order_relaxed);
    size_t ntools = json_array_size(js), m = 0;
    tent *names = NULL;
    prog tmpl;
    memset(&tmpl, 0, sizeof tmpl);
    tmpl.dsml = 1;
    tmpl.mode = mode;
    if ((st = build_init(&B, err))) goto done;
    /* free parameter names take any value */
    if ((st = add_param(&B, NULL, &tmpl.free_param))) goto done;
    if (!(names = dsv4__calloc(ntools, sizeof *names))) {
        st = oom(&B);
        goto done;
    }
    for (size_t i = 0; i < ntools; i++) {
        json_t *el = json_array_get(js, i);
        if (!json_is_object(el)) {
            st = dsv4__fail(err, DSV4_ERR_INVALID_ARGUMENT, "tools[%zu] is not an object", i);
            goto done;
        }
        if ((st = add_tool(&B, el, &names[m]))) goto done;
        m++;
    }
    if ((st = append_set(&B, names, &m, &tmpl.tfirst, "tool name"))) goto done;
    tmpl.tcount = (uint32_t)m;
    if (forced_name) {
        /* the invokes may only name the forced tool: a one-member set */
        size_t fl = strlen(forced_name), j, one = 1;
        for (j = 0; j < m; j++)
            if (names[j].len == fl + 1 && !memcmp(B.pool + names[j].off, forced_name, fl)) break;
        if (j == m) {
            st = dsv4__fail(err, DSV4_ERR_INVALID_ARGUMENT, "forced tool \"%s\" is not among the tools", forced_name);
            goto done;
        }
        names[0] = names[j];
        if ((st = append_set(&B, names, &one, &tmpl.tfirst, NULL))) goto done;
        tmpl.tcount = 1;
    }
    if (mode == DSV4__TOOLS_REQUIRED && m == 0) {
        st = dsv4__fail(err, DSV4_ERR_INVALID_ARGUMENT, "tool calls required but no tools given");
        goto done;
    }
done:
    dsv4__free(names);
    if (st) {
        build_free(&B);
        return st;
    }
    return finish(&B, &tmpl, out);
}
