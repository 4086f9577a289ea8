/*
 * lib/graph/graph.c — graph building, scratch planning, execution and the
 * generic operators (see graph.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "graph.h"
#include "core/core.h"
#include "ops.h"

/* ---- building --------------------------------------------------------------- */

void dsv4g_init(dsv4g_graph *g, const int64_t dom_max[DSV4G_N_DOM])
{
    memset(g, 0, sizeof *g);
    for (int d = 0; d < DSV4G_N_DOM; d++) g->dom_max[d] = dom_max[d];
    g->dom_max[DSV4G_FIXED] = 1;
    g->tag_layer = -1;
}

void dsv4g_free(dsv4g_graph *g)
{
    dsv4__free(g->t);
    dsv4__free(g->n);
    memset(g, 0, sizeof *g);
}

static int32_t push_tensor(dsv4g_graph *g, const dsv4g_tensor *t)
{
    if (g->failed) return -1;
    if (g->n_t == g->cap_t) {
        int32_t cap = g->cap_t ? 2 * g->cap_t : 256;
        dsv4g_tensor *p = dsv4__realloc(g->t, (size_t)cap * sizeof *p);
        if (!p) { g->failed = 1; return -1; }
        g->t = p;
        g->cap_t = cap;
    }
    g->t[g->n_t] = *t;
    return g->n_t++;
}

int32_t dsv4g_new(dsv4g_graph *g, const char *name, int32_t dtype, int32_t dom, int64_t mult, int64_t cols)
{
    dsv4g_tensor t = { dtype, dom, mult, cols, cols, -1, 0, -1, -1, name };
    return push_tensor(g, &t);
}

int32_t dsv4g_view(dsv4g_graph *g, int32_t base, int32_t dom, int64_t mult, int64_t cols, int64_t ld, int64_t off)
{
    if (base < 0 || g->failed) { g->failed = 1; return -1; }
    while (g->t[base].base >= 0) { off += g->t[base].off; base = g->t[base].base; }
    dsv4g_tensor t = { g->t[base].dtype, dom, mult, cols, ld, base, off, -1, -1, g->t[base].name };
    return push_tensor(g, &t);
}

static dsv4g_node dummy_node;

dsv4g_node *dsv4g_node_add(dsv4g_graph *g, dsv4g_op fn, const char *name)
{
    if (g->failed) return &dummy_node;
    if (g->n_n == g->cap_n) {
        int32_t cap = g->cap_n ? 2 * g->cap_n : 256;
        dsv4g_node *p = dsv4__realloc(g->n, (size_t)cap * sizeof *p);
        if (!p) { g->failed = 1; return &dummy_node; }
        g->n = p;
        g->cap_n = cap;
    }
    dsv4g_node *n = &g->n[g->n_n++];
    memset(n, 0, sizeof *n);
    n->fn = fn;
    n->name = name;
    n->layer = g->tag_layer;
    n->part = g->tag_part;
    for (int i = 0; i < DSV4G_MAX_IN; i++) n->in[i] = -1;
    n->out[0] = n->out[1] = n->out[2] = -1;
    return n;
}

void dsv4g_in(dsv4g_graph *g, dsv4g_node *n, int32_t a, int32_t b, int32_t c, int32_t d, int32_t e)
{
    if (n == &dummy_node) return;
    int32_t v[DSV4G_MAX_IN] = { a, b, c, d, e };
    for (int i = 0; i < DSV4G_MAX_IN; i++) n->in[i] = v[i];
    (void)g;
}

void dsv4g_out(dsv4g_graph *g, dsv4g_node *n, int32_t a, int32_t b, int32_t c)
{
    if (n == &dummy_node) return;
    n->out[0] = a;
    n->out[1] = b;
    n->out[2] = c;
    (void)g;
}

/* ---- planning ------------------------------------------------------------------ */

static int64_t owner_bytes(const dsv4g_graph *g, const dsv4g_tensor *t)
{
    int64_t rows = t->mult * g->dom_max[t->dom];
    return (rows * t->ld * 4 + 63) & ~(int64_t)63;
}

static int32_t root(const dsv4g_graph *g, int32_t t) { return g->t[t].base >= 0 ? g->t[t].base : t; }

int dsv4g_plan(dsv4g_graph *g)
{
    if (g->failed) return 1;
    for (int32_t t = 0; t < g->n_t; t++) g->t[t].first = g->t[t].last = -1;
    /* lifetimes of owners: first node touching them (a write, or the check
     * fails) to the last node touching them */
    for (int32_t i = 0; i < g->n_n; i++) {
        const dsv4g_node *n = &g->n[i];
        for (int k = 0; k < DSV4G_MAX_IN + 3; k++) {
            int32_t id = k < DSV4G_MAX_IN ? n->in[k] : n->out[k - DSV4G_MAX_IN];
            if (id < 0) continue;
            dsv4g_tensor *o = &g->t[root(g, id)];
            if (o->first < 0) {
                if (k < DSV4G_MAX_IN) {
                    /* read before written: allowed only for a node that also writes it */
                    int writes = 0;
                    for (int q = 0; q < 3; q++) writes |= n->out[q] >= 0 && root(g, n->out[q]) == root(g, id);
                    if (!writes) return -1;
                }
                o->first = i;
            }
            o->last = i;
        }
    }
    /* first fit over live blocks sorted by offset */
    int32_t *live = dsv4__malloc((size_t)(g->n_t > 0 ? g->n_t : 1) * sizeof *live);
    if (!live) return 1;
    int32_t n_live = 0;
    int64_t top = 0;
    for (int32_t i = 0; i < g->n_n; i++) {
        for (int32_t t = 0; t < g->n_t; t++) {
            dsv4g_tensor *o = &g->t[t];
            if (o->base >= 0 || o->first != i) continue;
            int64_t need = owner_bytes(g, o), at = 0;
            int32_t k = 0;
            for (; k < n_live; k++) {
                const dsv4g_tensor *b = &g->t[live[k]];
                if (b->off - at >= need) break;
                int64_t end = b->off + owner_bytes(g, b);
                if (end > at) at = end;
            }
            o->off = at;
            memmove(live + k + 1, live + k, (size_t)(n_live - k) * sizeof *live);
            live[k] = t;
            n_live++;
            if (at + need > top) top = at + need;
        }
        for (int32_t k = 0; k < n_live;) {
            if (g->t[live[k]].last == i) {
                memmove(live + k, live + k + 1, (size_t)(n_live - k - 1) * sizeof *live);
                n_live--;
            } else {
                k++;
            }
        }
    }
    dsv4__free(live);
    g->arena_bytes = top > 0 ? top : 64;
    return 0;
}

/* ---- running -------------------------------------------------------------------- */

static void *tensor_ptr(const dsv4g_run *r, int32_t id)
{
    const dsv4g_tensor *t = &r->g->t[id];
    if (t->base < 0) return r->arena + t->off;
    return r->arena + r->g->t[t->base].off + t->off * 4;
}

float *dsv4g_f32(const dsv4g_run *r, int32_t t) { return tensor_ptr(r, t); }
int32_t *dsv4g_i32(const dsv4g_run *r, int32_t t) { return tensor_ptr(r, t); }

int64_t dsv4g_rows(const dsv4g_run *r, int32_t t)
{
    const dsv4g_tensor *x = &r->g->t[t];
    return x->dom == DSV4G_FIXED ? x->mult : x->mult * r->dom_n[x->dom];
}

int64_t dsv4g_row_pos(const dsv4g_run *r, int32_t t, int64_t row)
{
    const dsv4g_tensor *x = &r->g->t[t];
    return r->pos[x->dom][row / x->mult];
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void dsv4g_exec(dsv4g_run *r)
{
    if (!r->prof_ns) {
        for (int32_t i = 0; i < r->g->n_n; i++) r->g->n[i].fn(r, &r->g->n[i]);
        return;
    }
    for (int32_t i = 0; i < r->g->n_n; i++) {
        int64_t t0 = now_ns();
        r->g->n[i].fn(r, &r->g->n[i]);
        r->prof_ns[i] += now_ns() - t0;
    }
}

/* ---- row-parallel operators --------------------------------------------------------- */

typedef struct rows_job {
    dsv4g_run *r;
    const dsv4g_node *n;
    void (*row)(dsv4g_run *r, const dsv4g_node *n, int64_t i);
} rows_job;

static void rows_task(void *arg, int64_t a, int64_t b, int thread)
{
    rows_job *j = arg;
    (void)thread;
    for (int64_t i = a; i < b; i++) j->row(j->r, j->n, i);
}

/* call row(r, n, i) for every row i of the node's first input, in parallel */
static void for_rows(dsv4g_run *r, const dsv4g_node *n, int64_t rows,
                     void (*row)(dsv4g_run *r, const dsv4g_node *n, int64_t i))
{
    if (rows <= 0) return;
    rows_job j = { r, n, row };
    dsv4k_pool_for(rows > 1 ? r->pool : NULL, rows, 1, rows_task, &j);
}

static float *row_f32(const dsv4g_run *r, int32_t t, int64_t i)
{
    return dsv4g_f32(r, t) + i * r->g->t[t].ld;
}

typedef struct span_job {
    dsv4g_run *r;
    const dsv4g_node *n;
} span_job;

/* groups [a, b) of 8 rows at once: the twin takes 8 rows side by side */
static void rmsnorm_span(void *arg, int64_t a, int64_t b, int thread)
{
    span_job *j = arg;
    const dsv4g_node *n = j->n;
    const dsv4g_tensor *x = &j->r->g->t[n->in[0]], *y = &j->r->g->t[n->out[0]];
    int64_t rows = dsv4g_rows(j->r, n->in[0]), end = 8 * b < rows ? 8 * b : rows;
    (void)thread;
    dsv4k_rmsnorm_rows(row_f32(j->r, n->in[0], 8 * a), x->ld, n->p[0], x->cols, n->f[0],
                       row_f32(j->r, n->out[0], 8 * a), y->ld, end - 8 * a, !j->r->ref);
}
static void op_rmsnorm(dsv4g_run *r, const dsv4g_node *n)
{
    int64_t groups = (dsv4g_rows(r, n->in[0]) + 7) / 8;
    span_job j = { r, n };
    if (groups > 0) dsv4k_pool_for(groups > 1 ? r->pool : NULL, groups, 1, rmsnorm_span, &j);
}

void dsv4g_rmsnorm(dsv4g_graph *g, int32_t x, const float *w, float eps, int32_t y)
{
    dsv4g_node *n = dsv4g_node_add(g, op_rmsnorm, "rmsnorm");
    dsv4g_in(g, n, x, -1, -1, -1, -1);
    dsv4g_out(g, n, y, -1, -1);
    n->p[0] = w;
    n->f[0] = eps;
}

void dsv4g_linear_exec(dsv4g_run *r, const dsv4k_weight *w, const float *x, int64_t ldx, int64_t m, float *y,
                       int64_t ldy, int aq)
{
    if (m <= 0) return;
    if (r->ref) {
        dsv4k_linear_ref(w, x, ldx, m, y, ldy, aq);
        return;
    }
    if (r->gemm && m >= DSV4G_GEMM_MIN_ROWS && dsv4k_gemm_run(r->gemm, w, x, ldx, m, y, ldy, aq) == 0) return;
    if (dsv4k_linear(r->lin, w, x, ldx, m, y, ldy, aq) != 0) dsv4k_linear_ref(w, x, ldx, m, y, ldy, aq);
}

void dsv4g_linear_batch(dsv4g_run *r, const dsv4k_linear_job *jobs, int n, int aq)
{
    if (!r->ref && dsv4k_linear_batch(r->lin, jobs, n, aq) == 0) return;
    /* the reference route, or a job the context does not take (all again) */
    for (int i = 0; i < n; i++) dsv4g_linear_exec(r, jobs[i].w, jobs[i].x, jobs[i].w->k, 1, jobs[i].y, jobs[i].w->n, aq);
}

static void op_linear(dsv4g_run *r, const dsv4g_node *n)
{
    const dsv4g_tensor *x = &r->g->t[n->in[0]], *y = &r->g->t[n->out[0]];
    dsv4g_linear_exec(r, n->p[0], dsv4g_f32(r, n->in[0]), x->ld, dsv4g_rows(r, n->in[0]), dsv4g_f32(r, n->out[0]),
                      y->ld, n->i[0] && r->aq);
}

void dsv4g_linear(dsv4g_graph *g, const dsv4k_weight *w, int32_t x, int32_t y, int aq)
{
    dsv4g_node *n = dsv4g_node_add(g, op_linear, "linear");
    dsv4g_in(g, n, x, -1, -1, -1, -1);
    dsv4g_out(g, n, y, -1, -1);
    n->p[0] = w;
    n->i[0] = aq;
}

/* up to three products of rows in one domain: for one row, one parallel
 * loop (dsv4g_linear_batch); for more, one after another */
static void op_linear_group(dsv4g_run *r, const dsv4g_node *n)
{
    int cnt = (int)n->i[1], aq = n->i[0] && r->aq;
    int64_t m = dsv4g_rows(r, n->in[0]);
    if (m == 1) {
        dsv4k_linear_job jb[3];
        for (int i = 0; i < cnt; i++)
            jb[i] = (dsv4k_linear_job){ n->p[i], dsv4g_f32(r, n->in[i]), dsv4g_f32(r, n->out[i]) };
        dsv4g_linear_batch(r, jb, cnt, aq);
        return;
    }
    for (int i = 0; i < cnt; i++)
        dsv4g_linear_exec(r, n->p[i], dsv4g_f32(r, n->in[i]), r->g->t[n->in[i]].ld, m, dsv4g_f32(r, n->out[i]),
                          r->g->t[n->out[i]].ld, aq);
}

void dsv4g_linear_group(dsv4g_graph *g, int cnt, const dsv4k_weight *const *w, const int32_t *x, const int32_t *y,
                        int aq)
{
    if (cnt == 1) {
        dsv4g_linear(g, w[0], x[0], y[0], aq);
        return;
    }
    dsv4g_node *n = dsv4g_node_add(g, op_linear_group, "linear_group");
    dsv4g_in(g, n, x[0], x[1], cnt > 2 ? x[2] : -1, -1, -1);
    dsv4g_out(g, n, y[0], y[1], cnt > 2 ? y[2] : -1);
    for (int i = 0; i < cnt; i++) n->p[i] = w[i];
    n->i[0] = aq;
    n->i[1] = cnt;
}

/* the rows of a token share its position: one table of cosines and sines
 * per token (dsv4k_rope_table), then each row rotated by it */
static void rope_tokens(void *arg, int64_t a, int64_t b, int thread)
{
    span_job *j = arg;
    const dsv4g_node *n = j->n;
    const dsv4g_tensor *x = &j->r->g->t[n->in[0]];
    int rd = (int)x->cols;
    float cs[1024];
    (void)thread;
    for (int64_t t = a; t < b; t++) {
        int64_t row = t * x->mult;
        int64_t pos = dsv4g_row_pos(j->r, n->in[0], row);
        if (rd > 1024) {
            for (int64_t k = 0; k < x->mult; k++)
                dsv4k_rope_ref(row_f32(j->r, n->in[0], row + k), rd, pos, n->p[0], (int)n->i[0]);
            continue;
        }
        dsv4k_rope_table(rd, pos, n->p[0], (int)n->i[0], cs);
        for (int64_t k = 0; k < x->mult; k++) dsv4k_rope_apply(row_f32(j->r, n->in[0], row + k), rd, cs, !j->r->ref);
    }
}
static void op_rope(dsv4g_run *r, const dsv4g_node *n)
{
    int64_t rows = dsv4g_rows(r, n->in[0]), mult = r->g->t[n->in[0]].mult;
    int64_t toks = mult > 0 ? rows / mult : 0;
    span_job j = { r, n };
    if (toks > 0) dsv4k_pool_for(toks > 1 ? r->pool : NULL, toks, 1, rope_tokens, &j);
}

void dsv4g_rope(dsv4g_graph *g, int32_t x, const float *freqs, int inverse)
{
    dsv4g_node *n = dsv4g_node_add(g, op_rope, inverse ? "rope_inv" : "rope");
    dsv4g_in(g, n, x, -1, -1, -1, -1);
    dsv4g_out(g, n, x, -1, -1);
    n->p[0] = freqs;
    n->i[0] = inverse;
}

static void hadamard_row(dsv4g_run *r, const dsv4g_node *n, int64_t i)
{
    dsv4k_hadamard(row_f32(r, n->in[0], i), (int)r->g->t[n->in[0]].cols, !r->ref);
}
static void op_hadamard(dsv4g_run *r, const dsv4g_node *n) { for_rows(r, n, dsv4g_rows(r, n->in[0]), hadamard_row); }

void dsv4g_hadamard(dsv4g_graph *g, int32_t x)
{
    dsv4g_node *n = dsv4g_node_add(g, op_hadamard, "hadamard");
    dsv4g_in(g, n, x, -1, -1, -1, -1);
    dsv4g_out(g, n, x, -1, -1);
}

static void sim_row(dsv4g_run *r, const dsv4g_node *n, int64_t i)
{
    float *x = row_f32(r, n->in[0], i);
    int64_t c = r->g->t[n->in[0]].cols;
    if (n->i[0]) dsv4k_fp4_sim(x, c, 32, !r->ref);
    else dsv4k_fp8_sim(x, c, 64, !r->ref);
}
static void op_sim(dsv4g_run *r, const dsv4g_node *n)
{
    if (n->i[0] ? r->fp4_sim : r->kv_sim) for_rows(r, n, dsv4g_rows(r, n->in[0]), sim_row);
}

void dsv4g_sim(dsv4g_graph *g, int32_t x, int kind)
{
    dsv4g_node *n = dsv4g_node_add(g, op_sim, kind ? "fp4_sim" : "fp8_sim");
    dsv4g_in(g, n, x, -1, -1, -1, -1);
    dsv4g_out(g, n, x, -1, -1);
    n->i[0] = kind;
}

static void scale_row(dsv4g_run *r, const dsv4g_node *n, int64_t i)
{
    float *x = row_f32(r, n->in[0], i);
    for (int64_t c = 0; c < r->g->t[n->in[0]].cols; c++) x[c] *= n->f[0];
}
static void op_scale(dsv4g_run *r, const dsv4g_node *n) { for_rows(r, n, dsv4g_rows(r, n->in[0]), scale_row); }

void dsv4g_scale(dsv4g_graph *g, int32_t x, float s)
{
    dsv4g_node *n = dsv4g_node_add(g, op_scale, "scale");
    dsv4g_in(g, n, x, -1, -1, -1, -1);
    dsv4g_out(g, n, x, -1, -1);
    n->f[0] = s;
}

static void add_row(dsv4g_run *r, const dsv4g_node *n, int64_t i)
{
    const float *a = row_f32(r, n->in[0], i), *b = row_f32(r, n->in[1], i);
    float *y = row_f32(r, n->out[0], i);
    for (int64_t c = 0; c < r->g->t[n->in[0]].cols; c++) y[c] = a[c] + b[c];
}
static void op_add(dsv4g_run *r, const dsv4g_node *n) { for_rows(r, n, dsv4g_rows(r, n->in[0]), add_row); }

void dsv4g_add(dsv4g_graph *g, int32_t a, int32_t b, int32_t y)
{
    dsv4g_node *n = dsv4g_node_add(g, op_add, "add");
    dsv4g_in(g, n, a, b, -1, -1, -1);
    dsv4g_out(g, n, y, -1, -1);
}

/* mHC: X rows are tokens (hc·dim values) */
static void hc_pre_span(void *arg, int64_t a, int64_t b, int thread)
{
    span_job *j = arg;
    const dsv4g_node *n = j->n;
    const dsv4g_tensor *t = j->r->g->t;
    int hc = (int)n->i[0];
    (void)thread;
    dsv4k_hc_pre_rows(row_f32(j->r, n->in[0], a), t[n->in[0]].ld, b - a, hc, t[n->in[0]].cols / hc, n->p[0], n->p[1],
                      n->p[2], (int)n->i[1], n->f[0], n->f[1], row_f32(j->r, n->out[0], a), t[n->out[0]].ld,
                      row_f32(j->r, n->out[1], a), t[n->out[1]].ld, row_f32(j->r, n->out[2], a), t[n->out[2]].ld,
                      !j->r->ref);
}
/* tokens in groups of 4: the mix reads fn once per group */
static void op_hc_pre(dsv4g_run *r, const dsv4g_node *n)
{
    int64_t rows = dsv4g_rows(r, n->in[0]);
    span_job j = { r, n };
    if (rows > 0) dsv4k_pool_for(rows > 4 ? r->pool : NULL, rows, 4, hc_pre_span, &j);
}

void dsv4g_hc_pre(dsv4g_graph *g, int32_t X, const float *fn, const float *base, const float *scale, int hc,
                  int iters, float eps, float hc_eps, int32_t u, int32_t post, int32_t comb)
{
    dsv4g_node *n = dsv4g_node_add(g, op_hc_pre, "hc_pre");
    dsv4g_in(g, n, X, -1, -1, -1, -1);
    dsv4g_out(g, n, u, post, comb);
    n->p[0] = fn; n->p[1] = base; n->p[2] = scale;
    n->i[0] = hc; n->i[1] = iters;
    n->f[0] = eps; n->f[1] = hc_eps;
}

static void hc_post_row(dsv4g_run *r, const dsv4g_node *n, int64_t i)
{
    int hc = (int)n->i[0];
    dsv4k_hc_post(row_f32(r, n->in[0], i), row_f32(r, n->in[1], i), row_f32(r, n->in[2], i), row_f32(r, n->in[3], i),
                  hc, r->g->t[n->in[0]].cols / hc, row_f32(r, n->out[0], i), !r->ref);
}
static void op_hc_post(dsv4g_run *r, const dsv4g_node *n) { for_rows(r, n, dsv4g_rows(r, n->in[0]), hc_post_row); }

void dsv4g_hc_post(dsv4g_graph *g, int32_t X, int32_t o, int32_t post, int32_t comb, int hc, int32_t Xo)
{
    dsv4g_node *n = dsv4g_node_add(g, op_hc_post, "hc_post");
    dsv4g_in(g, n, X, o, post, comb, -1);
    dsv4g_out(g, n, Xo, -1, -1);
    n->i[0] = hc;
}

static void hc_head_row(dsv4g_run *r, const dsv4g_node *n, int64_t i)
{
    int hc = (int)n->i[0];
    dsv4k_hc_head(row_f32(r, n->in[0], i), hc, r->g->t[n->in[0]].cols / hc, n->p[0], n->p[1], n->p[2], n->f[0],
                  n->f[1], row_f32(r, n->out[0], i), !r->ref);
}
static void op_hc_head(dsv4g_run *r, const dsv4g_node *n) { for_rows(r, n, dsv4g_rows(r, n->in[0]), hc_head_row); }

void dsv4g_hc_head(dsv4g_graph *g, int32_t X, const float *fn, const float *base, const float *scale, int hc,
                   float eps, float hc_eps, int32_t y)
{
    dsv4g_node *n = dsv4g_node_add(g, op_hc_head, "hc_head");
    dsv4g_in(g, n, X, -1, -1, -1, -1);
    dsv4g_out(g, n, y, -1, -1);
    n->p[0] = fn; n->p[1] = base; n->p[2] = scale;
    n->i[0] = hc;
    n->f[0] = eps; n->f[1] = hc_eps;
}
