/*
 * lib/chat/parse.c — incremental parser of generated assistant text
 * (text-protocol §3.6): reasoning up to </think>, content up to the
 * end-of-sentence token or a DSML tool-call block, the block parsed
 * strictly into calls whose arguments are built as JSON (string="true"
 * values JSON-quoted, others inserted as written). Bytes may arrive split
 * anywhere; nothing is emitted that a later byte could change, so the events
 * are a function of the bytes alone (text events may be cut differently, their
 * concatenation is the same; tests/chat checks every split point).
 */
#include <string.h>
#include "core/core.h"
#include "core/utf8.h"

#define EOS_S "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define DSML "\xef\xbd\x9c" "DSML\xef\xbd\x9c"

static const char think_end[] = "</think>";
static const char eos[] = EOS_S;
static const char calls_open[] = "\n\n<" DSML "tool_calls>";
static const char invoke_open[] = "\n<" DSML "invoke name=\"";
static const char invoke_close[] = "</" DSML "invoke>";
static const char empty_invoke_close[] = "\n</" DSML "invoke>"; /* no parameters: an empty body line */
static const char param_open[] = "<" DSML "parameter name=\"";
static const char param_close[] = "</" DSML "parameter>\n";
static const char calls_close[] = "\n</" DSML "tool_calls>";

enum { S_REASONING, S_CONTENT, S_INVOKE_OPEN, S_PARAMS, S_AFTER_INVOKE, S_AFTER_CALLS, S_ERROR, S_END };

typedef struct { int32_t type, index; char *data; size_t len; } event;

struct dsv4_chat_parser {
    char *buf;
    size_t len, cap, pos;      /* unconsumed bytes are buf[pos, len) */
    int state, finished, n_params;
    int32_t call;              /* index of the current / next tool call */
    size_t block_start;        /* where the DSML block began (raw text for errors); kept in
                                  buf while the block is open */
    event q[8];
    int qh, qn;
    event cur;
    int oom;
};

static void push(dsv4_chat_parser *p, int32_t type, const char *d, size_t n)
{
    if (p->qn == 8) { p->oom = 1; return; }
    event *e = &p->q[(p->qh + p->qn) % 8];
    e->type = type;
    e->index = p->call;
    e->len = n;
    e->data = dsv4__malloc(n + 1);
    if (!e->data) { p->oom = 1; return; }
    if (n) memcpy(e->data, d, n);
    e->data[n] = 0;
    p->qn++;
}

/* the buffered bytes; never NULL (no offset is applied to a NULL pointer) */
static const char *bytes_of(const dsv4_chat_parser *p) { return p->buf ? p->buf : ""; }

static int in_block(const dsv4_chat_parser *p)
{
    return p->state == S_INVOKE_OPEN || p->state == S_PARAMS || p->state == S_AFTER_INVOKE;
}

/* longest suffix of s[0,n) that is a proper prefix of t */
static size_t partial(const char *s, size_t n, const char *t)
{
    size_t tl = strlen(t);
    for (size_t k = (n < tl - 1 ? n : tl - 1); k > 0; k--)
        if (memcmp(s + n - k, t, k) == 0) return k;
    return 0;
}

static const char *find(const char *s, size_t n, const char *t)
{
    size_t tl = strlen(t);
    for (size_t i = 0; i + tl <= n; i++)
        if (s[i] == t[0] && memcmp(s + i, t, tl) == 0) return s + i;
    return NULL;
}

/* does buf start with t (1), could it still (0 = need more), or not (-1) */
static int starts(const dsv4_chat_parser *p, const char *t)
{
    size_t tl = strlen(t), have = p->len - p->pos;
    size_t m = have < tl ? have : tl;
    if (memcmp(bytes_of(p) + p->pos, t, m) != 0) return -1;
    return have >= tl ? 1 : (p->finished ? -1 : 0);
}

static void to_error(dsv4_chat_parser *p)
{
    size_t from = p->block_start < p->pos ? p->block_start : p->pos;
    push(p, DSV4_CHAT_EVENT_ERROR, bytes_of(p) + from, p->len - from);
    p->pos = p->len;
    p->state = S_ERROR;
}

static void json_quote(const char *s, size_t n, char **out, size_t *on)
{
    /* worst case \u00XX per byte */
    char *o = dsv4__malloc(n * 6 + 3);
    size_t k = 0;
    if (!o) { *out = NULL; return; }
    o[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') { o[k++] = '\\'; o[k++] = (char)c; }
        else if (c == '\n') { o[k++] = '\\'; o[k++] = 'n'; }
        else if (c == '\r') { o[k++] = '\\'; o[k++] = 'r'; }
        else if (c == '\t') { o[k++] = '\\'; o[k++] = 't'; }
        else if (c < 0x20) { static const char hx[] = "0123456789abcdef";
            o[k++] = '\\'; o[k++] = 'u'; o[k++] = '0'; o[k++] = '0'; o[k++] = hx[c >> 4]; o[k++] = hx[c & 15]; }
        else o[k++] = (char)c;
    }
    o[k++] = '"';
    *out = o;
    *on = k;
}

/* one step; returns 1 if progress was made */
static int step(dsv4_chat_parser *p)
{
    const char *s = bytes_of(p) + p->pos;
    size_t n = p->len - p->pos;
    switch (p->state) {
    case S_REASONING:
    case S_CONTENT: {
        int reasoning = p->state == S_REASONING;
        const char *a = find(s, n, eos), *b = find(s, n, reasoning ? think_end : calls_open);
        const char *hit = a && (!b || a < b) ? a : b;
        size_t emit = hit ? (size_t)(hit - s) : n;
        if (!hit && !p->finished) {
            size_t hold = partial(s, n, eos);
            size_t h2 = partial(s, n, reasoning ? think_end : calls_open);
            if (h2 > hold) hold = h2;
            emit = n - hold;
            emit -= dsv4__utf8_incomplete_tail(s, emit);
        }
        if (emit) push(p, reasoning ? DSV4_CHAT_EVENT_REASONING : DSV4_CHAT_EVENT_CONTENT, s, emit);
        p->pos += emit;
        if (hit == a && a) { p->pos += strlen(eos); p->state = S_END; push(p, DSV4_CHAT_EVENT_END, "", 0); return 1; }
        if (hit) {
            if (reasoning) { p->pos += strlen(think_end); p->state = S_CONTENT; }
            else { p->block_start = p->pos; p->pos += strlen(calls_open); p->state = S_INVOKE_OPEN; }
            return 1;
        }
        if (p->finished && p->pos == p->len) { p->state = S_END; push(p, DSV4_CHAT_EVENT_END, "", 0); return 1; }
        return emit > 0;
    }
    case S_INVOKE_OPEN: {
        int r = starts(p, invoke_open);
        if (r < 0) { to_error(p); return 1; }
        if (r == 0) return 0;
        /* the name runs to the first newline, which must follow '">' (a name
         * never holds a newline, whether the bytes come at once or split) */
        const char *name = s + strlen(invoke_open);
        const char *nl = memchr(name, '\n', n - strlen(invoke_open));
        if (!nl) {
            if (p->finished) { to_error(p); return 1; }
            return 0;
        }
        if (nl - name < 2 || memcmp(nl - 2, "\">", 2) != 0) { to_error(p); return 1; }
        const char *q = nl - 2;
        push(p, DSV4_CHAT_EVENT_TOOL_CALL_START, name, (size_t)(q - name));
        p->pos += (size_t)(q + 3 - s);
        p->state = S_PARAMS;
        p->n_params = 0;
        return 1;
    }
    case S_PARAMS: {
        /* the official form of an invoke without parameters has an empty
         * line as its body; the bare close is taken too */
        int r = starts(p, invoke_close), re = p->n_params ? -1 : starts(p, empty_invoke_close);
        if (r > 0 || re > 0) {
            push(p, DSV4_CHAT_EVENT_TOOL_CALL_ARGS, p->n_params ? "}" : "{}", p->n_params ? 1 : 2);
            push(p, DSV4_CHAT_EVENT_TOOL_CALL_END, "", 0);
            p->call++;
            p->pos += strlen(r > 0 ? invoke_close : empty_invoke_close);
            p->state = S_AFTER_INVOKE;
            return 1;
        }
        int r2 = starts(p, param_open);
        if (r < 0 && r2 < 0 && re < 0) { to_error(p); return 1; }
        if (r2 <= 0) return 0;
        const char *k = s + strlen(param_open);
        const char *ke = find(k, n - strlen(param_open), "\" string=\"");
        const char *close = find(s, n, param_close);
        if (!ke || !close || ke > close) {
            if (p->finished || (close && (!ke || ke > close))) { to_error(p); return 1; }
            return 0;
        }
        const char *ty = ke + 10;
        int is_str;
        if ((size_t)(close - ty) >= 6 && memcmp(ty, "true\">", 6) == 0) is_str = 1;
        else if ((size_t)(close - ty) >= 7 && memcmp(ty, "false\">", 7) == 0) is_str = 0;
        else { to_error(p); return 1; }
        const char *v = ty + (is_str ? 6 : 7);
        char *kq = NULL, *vq = NULL;
        size_t kn = 0, vn = 0;
        json_quote(k, (size_t)(ke - k), &kq, &kn);
        if (is_str) json_quote(v, (size_t)(close - v), &vq, &vn);
        if (!kq || (is_str && !vq)) { dsv4__free(kq); dsv4__free(vq); p->oom = 1; return 0; }
        size_t vl = is_str ? vn : (size_t)(close - v);
        char *d = dsv4__malloc(kn + vl + 4);
        if (!d) { dsv4__free(kq); dsv4__free(vq); p->oom = 1; return 0; }
        size_t dn = 0;
        d[dn++] = p->n_params ? ',' : '{';
        if (p->n_params) d[dn++] = ' ';
        memcpy(d + dn, kq, kn); dn += kn;
        d[dn++] = ':'; d[dn++] = ' ';
        memcpy(d + dn, is_str ? vq : v, vl); dn += vl;
        push(p, DSV4_CHAT_EVENT_TOOL_CALL_ARGS, d, dn);
        dsv4__free(d); dsv4__free(kq); dsv4__free(vq);
        p->n_params++;
        p->pos += (size_t)(close + strlen(param_close) - s);
        return 1;
    }
    case S_AFTER_INVOKE: {
        int a = starts(p, invoke_open), b = starts(p, calls_close);
        if (a > 0) { p->state = S_INVOKE_OPEN; return 1; }
        if (b > 0) { p->pos += strlen(calls_close); p->state = S_AFTER_CALLS; return 1; }
        if (a < 0 && b < 0) { to_error(p); return 1; }
        return 0;
    }
    case S_AFTER_CALLS: {
        if (n == 0 && p->finished) { p->state = S_END; push(p, DSV4_CHAT_EVENT_END, "", 0); return 1; }
        int r = starts(p, eos);
        if (r > 0) { p->pos += strlen(eos); p->state = S_END; push(p, DSV4_CHAT_EVENT_END, "", 0); return 1; }
        if (r < 0) { p->block_start = p->pos; to_error(p); return 1; }
        return 0;
    }
    case S_ERROR:
        if (n) { push(p, DSV4_CHAT_EVENT_ERROR, s, n); p->pos = p->len; return 1; }
        if (p->finished) { p->state = S_END; push(p, DSV4_CHAT_EVENT_END, "", 0); return 1; }
        return 0;
    default: /* S_END: anything after the message is kept as an error */
        if (n) { push(p, DSV4_CHAT_EVENT_ERROR, s, n); p->pos = p->len; return 1; }
        return 0;
    }
}

dsv4_status dsv4_chat_parser_create(int32_t thinking, dsv4_chat_parser **out)
{
    if (out) *out = NULL;
    if (!out || (thinking != 0 && thinking != 1)) return DSV4_ERR_INVALID_ARGUMENT;
    dsv4_chat_parser *p = dsv4__calloc(1, sizeof *p);
    if (!p) return DSV4_ERR_OUT_OF_MEMORY;
    p->state = thinking ? S_REASONING : S_CONTENT;
    *out = p;
    return DSV4_OK;
}

void dsv4_chat_parser_free(dsv4_chat_parser *p)
{
    if (!p) return;
    for (int i = 0; i < p->qn; i++) dsv4__free(p->q[(p->qh + i) % 8].data);
    dsv4__free(p->cur.data);
    dsv4__free(p->buf);
    dsv4__free(p);
}

dsv4_status dsv4_chat_parser_feed(dsv4_chat_parser *p, const char *bytes, size_t n)
{
    if (!p || (!bytes && n)) return DSV4_ERR_INVALID_ARGUMENT;
    if (p->finished) return DSV4_ERR_INVALID_ARGUMENT;
    if (n == 0) return DSV4_OK;
    /* drop consumed bytes, but keep an open DSML block: an error event
     * carries it whole from its opening tag; moved once they are at least
     * half of the buffer, so the cost stays linear */
    size_t keep = in_block(p) && p->block_start < p->pos ? p->block_start : p->pos;
    if (keep > 0 && keep >= p->len - keep) {
        memmove(p->buf, p->buf + keep, p->len - keep);
        p->len -= keep;
        p->pos -= keep;
        p->block_start = p->block_start > keep ? p->block_start - keep : 0;
    }
    if (p->len + n + 1 > p->cap) {
        size_t c = p->cap ? p->cap : 256;
        while (c < p->len + n + 1) c *= 2;
        char *b = dsv4__realloc(p->buf, c);
        if (!b) return DSV4_ERR_OUT_OF_MEMORY;
        p->buf = b;
        p->cap = c;
    }
    if (n) memcpy(p->buf + p->len, bytes, n);
    p->len += n;
    return DSV4_OK;
}

dsv4_status dsv4_chat_parser_finish(dsv4_chat_parser *p)
{
    if (!p) return DSV4_ERR_INVALID_ARGUMENT;
    p->finished = 1;
    return DSV4_OK;
}

dsv4_status dsv4_chat_parser_next(dsv4_chat_parser *p, dsv4_chat_event_type *type, int32_t *index,
                                  const char **data, size_t *len)
{
    if (type) *type = DSV4_CHAT_EVENT_NONE;
    if (index) *index = -1;
    if (data) *data = "";
    if (len) *len = 0;
    if (!p || !type) return DSV4_ERR_INVALID_ARGUMENT;
    dsv4__free(p->cur.data);
    p->cur.data = NULL;
    while (p->qn == 0 && !p->oom && step(p)) {}
    if (p->oom) return DSV4_ERR_OUT_OF_MEMORY;
    if (p->qn == 0) return DSV4_OK;
    p->cur = p->q[p->qh];
    p->qh = (p->qh + 1) % 8;
    p->qn--;
    *type = (dsv4_chat_event_type)p->cur.type;
    if (index) *index = p->cur.type >= DSV4_CHAT_EVENT_TOOL_CALL_START && p->cur.type <= DSV4_CHAT_EVENT_TOOL_CALL_END ? p->cur.index : -1;
    if (data) *data = p->cur.data;
    if (len) *len = p->cur.len;
    return DSV4_OK;
}
