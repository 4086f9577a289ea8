/*
 * lib/graph/attention.c — the attention sublayer (spec §5.3–5.6): the
 * compressors (each span's rows in order, emitting compressed entries and
 * indexer keys into its session's state), the lightning indexer and its
 * top-k, attention over the window and the chosen entries, and the nodes of
 * the sublayer.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "forward_int.h"
#include "ops.h"

/* ---- compressor step, top-k -------------------------------------------- */

/* consume one token's projections v, g (coff·d each, gate without ape) at
 * position p; returns 1 and writes the pooled entry (d) when a block ends */
static int compress_step(const dsv4__compressor_w *cw, float *kvs, float *scs, const float *v, const float *g,
                         int64_t p, float *entry)
{
    int r = cw->ratio, coff = cw->coff;
    int64_t d = cw->d, width = coff * d;
    int slot = r == 4 ? 4 + (int)(p % 4) : (int)(p % r);
    const float *ape = cw->ape + (p % r) * width;
    for (int64_t c = 0; c < width; c++) {
        kvs[slot * width + c] = v[c];
        scs[slot * width + c] = g[c] + ape[c];
    }
    if ((p + 1) % r) return 0;
    int rows = comp_rows(r) <= 128 ? comp_rows(r) : 128; /* ratios above 128 are refused at context creation */
    int64_t off[128] = { 0 };
    for (int i = 0; i < rows; i++) off[i] = (r == 4 && i >= 4) ? d : 0;
    dsv4k_compress_pool_ref(kvs, scs, rows, width, off, d, entry);
    if (r == 4) {
        memcpy(kvs, kvs + 4 * width, (size_t)(4 * width) * 4);
        memcpy(scs, scs + 4 * width, (size_t)(4 * width) * 4);
    }
    return 1;
}

/* a total order even with NaN scores (ranked last): the partition loops of
 * select_topk rely on it to stay inside the array */
static int cmp_score(const float *sc, int64_t a, int64_t b)
{
    float x = sc[a], y = sc[b];
    int nx = x != x, ny = y != y;
    if (nx != ny) return nx ? 1 : -1;
    if (!nx && x != y) return x > y ? -1 : 1;
    return a < b ? -1 : a > b;
}

/* put the k best of idx[0..n) (by score desc, then index asc) first */
static void select_topk(const float *sc, int64_t *idx, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int64_t piv = idx[lo + (hi - lo) / 2], i = lo, j = hi;
        while (i <= j) {
            while (cmp_score(sc, idx[i], piv) < 0) i++;
            while (cmp_score(sc, idx[j], piv) > 0) j--;
            if (i <= j) { int64_t t = idx[i]; idx[i] = idx[j]; idx[j] = t; i++; j--; }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- operators --------------------------------------------------------- */

/* compressor (§5.4, §5.5 step 2): each span's rows in order */
typedef struct comp_job { dsv4g_run *r; const dsv4g_node *n; } comp_job;

static void comp_spans(void *arg, int64_t a, int64_t b, int thread)
{
    comp_job *j = arg;
    const dsv4g_node *n = j->n;
    dsv4__rt *rt = RT(j->r);
    (void)thread;
    const dsv4__layer_w *lw = n->p[0];
    int indexer = (int)n->i[1];
    const dsv4__compressor_w *cw = indexer ? &lw->icomp : &lw->comp;
    const rowset *rs = &rt->rs[n->i[2]];
    int64_t d = cw->d, rd = rt->c->rope_head_dim;
    const float *V = dsv4g_f32(j->r, n->in[0]), *G = dsv4g_f32(j->r, n->in[1]);
    int64_t ldv = j->r->g->t[n->in[0]].ld, ldg = j->r->g->t[n->in[1]].ld;
    float e[1024];
    for (int64_t si = a; si < b; si++) {
        const span *sp = &rs->sp[si];
        lstate *ls = span_layer(sp, n->i[0]);
        float *kvs = indexer ? ls->ikv : ls->ckv, *scs = indexer ? ls->isc : ls->csc;
        for (int64_t t = 0; t < sp->n; t++) {
            int64_t p = sp->p0 + t, row = sp->row0 + t;
            if (!compress_step(cw, kvs, scs, V + row * ldv, G + row * ldg, p, e)) continue;
            int64_t jj = (p + 1) / cw->ratio - 1;
            dsv4k_rmsnorm_ref(e, cw->norm, d, (float)rt->c->norm_eps, e);
            dsv4k_rope_ref(e + d - rd, (int)rd, jj * cw->ratio, lw->rope, 0);
            if (jj >= ls->cap) continue;
            if (indexer) {
                dsv4k_hadamard_ref(e, (int)d);
                dsv4__key_put(rt, ls, jj, e);
            } else {
                dsv4__entry_put(rt, ls, jj, e);
            }
        }
        if (!indexer) {
            int64_t done = (sp->p0 + sp->n) / cw->ratio;
            ls->n = done < ls->cap ? done : ls->cap;
        }
    }
}

static void op_compress(dsv4g_run *r, const dsv4g_node *n)
{
    comp_job j = { r, n };
    const rowset *rs = &RT(r)->rs[n->i[2]];
    dsv4k_pool_for(rs->n_sp > 1 ? r->pool : NULL, rs->n_sp, 1, comp_spans, &j);
}

/* attention (§5.3–5.6) of one row t: O [rows][H·hd] from Q, the batch's KV,
 * the session's ring and compressed entries (CSA: indexer QI, WT first).
 * The row's lists live in the buffers of thread `owner`; the three loops
 * inside (indexer scores over the entries, decoding of the chosen entries,
 * the heads) run on `pool` when given (a single row, as in decode, would
 * otherwise leave every other core idle), else on the calling thread. The
 * results are the same either way. */
typedef struct att_job {
    dsv4g_run *r;
    const dsv4g_node *n;
    int64_t t, cnt, base;   /* row; vectors listed; where the compressed ones start */
    const lstate *ls;
    thread_buf *own;
    int topk;               /* entries come from own->idx */
    int q4;                 /* the indexer query is in own->q4: integer scores */
} att_job;

static void att_scores(void *arg, int64_t e0, int64_t e1, int thread)
{
    att_job *j = arg;
    dsv4__rt *rt = RT(j->r);
    const dsv4__config *c = rt->c;
    int64_t ih = c->index_n_heads, ihd = c->index_head_dim;
    const float *qi = dsv4g_f32(j->r, j->n->in[2]) + j->t * ih * ihd, *wt = dsv4g_f32(j->r, j->n->in[3]) + j->t * ih;
    float *kb = rt->tb[thread].key;
    if (j->q4) {
        int64_t eb = dsv4__rt_entry_bytes(rt, 1);
        for (int64_t e = e0; e < e1; e++) {
            j->own->scores[e] = dsv4k_index_score_q4(j->own->q4, wt, (int)ih, ihd, j->ls->icache + e * eb);
            j->own->idx[e] = e;
        }
        return;
    }
    for (int64_t e = e0; e < e1; e++) {
        const float *k = dsv4__key_get(rt, j->ls, e, kb);
        j->own->scores[e] = j->r->ref ? dsv4k_index_score_ref(qi, wt, (int)ih, ihd, k)
                                      : dsv4k_index_score_fast(qi, wt, (int)ih, ihd, k, rt->simd);
        j->own->idx[e] = e;
    }
}

static void att_entries(void *arg, int64_t i0, int64_t i1, int thread)
{
    att_job *j = arg;
    dsv4__rt *rt = RT(j->r);
    int64_t hd = rt->c->head_dim;
    (void)thread;
    for (int64_t i = i0; i < i1; i++)
        j->own->kv[j->base + i] = dsv4__entry_get(rt, j->ls, j->topk ? j->own->idx[i] : i, j->own->dec + i * hd);
}

static void att_heads(void *arg, int64_t h0, int64_t h1, int thread)
{
    att_job *j = arg;
    dsv4__rt *rt = RT(j->r);
    const dsv4__config *c = rt->c;
    const dsv4__layer_w *lw = j->n->p[0];
    int64_t hd = c->head_dim, H = c->n_heads;
    const float *Q = dsv4g_f32(j->r, j->n->in[0]);
    float *O = dsv4g_f32(j->r, j->n->out[0]);
    float scale = (float)(1.0 / sqrt((double)hd));
    /* the heads together (SIMD: each vector read once per 4 heads) */
    dsv4k_attn_heads(Q + (j->t * H + h0) * hd, hd, h1 - h0, j->own->kv, j->cnt, hd, scale, lw->sink + h0,
                     O + (j->t * H + h0) * hd, hd, rt->tb[thread].att, rt->simd);
}

/* fn over [0, n) on the pool, or on the calling thread */
static void att_loop(dsv4k_pool *pool, int64_t n, int64_t grain, dsv4k_task_fn fn, att_job *j, int thread)
{
    if (pool) dsv4k_pool_for(pool, n, grain, fn, j);
    else if (n > 0) fn(j, 0, n, thread);
}

static void attn_row(dsv4g_run *r, const dsv4g_node *n, int64_t t, int thread, dsv4k_pool *pool)
{
    dsv4__rt *rt = RT(r);
    const dsv4__config *c = rt->c;
    const dsv4__layer_w *lw = n->p[0];
    const rowset *rs = &rt->rs[n->i[1]];
    thread_buf *tb = &rt->tb[thread];
    int64_t hd = c->head_dim, W = c->window;
    const float *KV = dsv4g_f32(r, n->in[1]);
    const span *sp = &rs->sp[rs->sp_of[t]];
    lstate *ls = span_layer(sp, n->i[0]);
    int64_t p = rs->pos[t], cnt = 0;
    int64_t first = p - W + 1 < 0 ? 0 : p - W + 1;
    for (int64_t q = first; q <= p; q++)
        tb->kv[cnt++] = q >= sp->p0 ? KV + (sp->row0 + q - sp->p0) * hd : ls->ring + (q % W) * hd;
    att_job j = { r, n, t, 0, cnt, ls, tb, 0, 0 };
    int ratio = lw->ratio;
    if (ratio > 0) {
        int64_t nvis = (p + 1) / ratio;
        if (nvis > ls->n) nvis = ls->n;   /* cannot happen: entries are emitted first */
        if (ratio == 4 && nvis > c->index_topk) {
            /* FP4-simulated query and keys (reference numerics): integer scores */
            int64_t ih = c->index_n_heads, ihd = c->index_head_dim;
            if (rt->fp4_sim && !r->ref)
                j.q4 = dsv4k_index_q4_query(dsv4g_f32(r, n->in[2]) + t * ih * ihd, (int)ih, ihd, tb->q4, rt->simd);
            att_loop(pool, nvis, 64, att_scores, &j, thread);
            select_topk(tb->scores, tb->idx, nvis, c->index_topk);
            qsort(tb->idx, (size_t)c->index_topk, sizeof *tb->idx, cmp_i64);
            j.topk = 1;
            att_loop(pool, c->index_topk, 16, att_entries, &j, thread);
            cnt += c->index_topk;
            if (rt->debug)
                for (int64_t e = 0; e < c->index_topk; e++) rt->DBG[t * c->index_topk + e] = (int32_t)tb->idx[e];
        } else {
            att_loop(pool, nvis, 16, att_entries, &j, thread);
            cnt += nvis;
            if (rt->debug && ratio == 4)
                for (int64_t e = 0; e < c->index_topk; e++)
                    rt->DBG[t * c->index_topk + e] = e < nvis ? (int32_t)e : -1;
        }
    }
    j.cnt = cnt;
    att_loop(pool, c->n_heads, 4, att_heads, &j, thread);
}

static void attn_rows(void *arg, int64_t t0, int64_t t1, int thread)
{
    comp_job *j = arg;
    for (int64_t t = t0; t < t1; t++) attn_row(j->r, j->n, t, thread, NULL);
}

static void op_attend(dsv4g_run *r, const dsv4g_node *n)
{
    dsv4__rt *rt = RT(r);
    const rowset *rs = &rt->rs[n->i[1]];
    comp_job j = { r, n };
    if (rs->n < dsv4k_pool_threads(r->pool)) {
        /* fewer rows than threads: each row over the whole pool */
        for (int64_t t = 0; t < rs->n; t++) attn_row(r, n, t, 0, r->pool);
    } else {
        dsv4k_pool_for(r->pool, rs->n, 1, attn_rows, &j);
    }
    const dsv4__layer_w *lw = n->p[0];
    if (rt->debug && lw->ratio == 4 && rs->n)
        rt->debug(rt->debug_user, (int)n->i[0], 1, rs->n, rs->n_sp ? rs->sp[0].p0 : 0, rt->DBG, NULL);
}

/* ---- the attention sublayer -------------------------------------------- */

/* attention sublayer (§5.3–5.6) of layer `li` on rows x [dom][dim] → out */
int32_t dsv4__build_attention(dsv4__rt *rt, dsv4g_graph *g, int li, const dsv4__layer_w *lw, int dom, int32_t x)
{
    const dsv4__config *c = rt->c;
    int64_t hd = c->head_dim, H = c->n_heads, rd = c->rope_head_dim, qlr = c->q_lora_rank, nope = hd - rd;
    int64_t ih = c->index_n_heads, ihd = c->index_head_dim, dim = c->dim;
    float eps = (float)c->norm_eps;
    /* queries: low rank, per-head norm without weight, rope */
    int32_t QL = F(g, "q_lora", dom, 1, qlr), Q = F(g, "q", dom, 1, H * hd), KV = F(g, "kv", dom, 1, hd);
    int32_t QI = -1, WT = -1;
    if (lw->ratio == 4) {
        QI = F(g, "index_q", dom, 1, ih * ihd);
        WT = F(g, "index_w", dom, 1, ih);
    }
    /* the products of x, then those of the query's low rank, each set in one
     * node (for one row: one parallel loop) */
    {
        const dsv4k_weight *w[2] = { &lw->wq_a, &lw->wkv };
        int32_t xs[2] = { x, x }, ys[2] = { QL, KV };
        dsv4g_linear_group(g, 2, w, xs, ys, 1);
    }
    int ncomp = lw->ratio == 4 ? 2 : lw->ratio > 0;
    int32_t CV[2] = { -1, -1 }, CG[2] = { -1, -1 };
    {
        const dsv4k_weight *w[5];
        int32_t xs[5] = { x, x, x, x, x }, ys[5];
        int cnt = 0;
        for (int ix = 0; ix < ncomp; ix++) {
            const dsv4__compressor_w *cw = ix ? &lw->icomp : &lw->comp;
            int64_t wd = (int64_t)cw->coff * cw->d;
            CV[ix] = F(g, "comp_kv", dom, 1, wd);
            CG[ix] = F(g, "comp_gate", dom, 1, wd);
            w[cnt] = &cw->wkv, ys[cnt++] = CV[ix];
            w[cnt] = &cw->wgate, ys[cnt++] = CG[ix];
        }
        if (lw->ratio == 4) w[cnt] = &lw->iwproj, ys[cnt++] = WT;
        for (int i = 0; i < cnt; i += 3) dsv4g_linear_group(g, cnt - i < 3 ? cnt - i : 3, w + i, xs + i, ys + i, 0);
    }
    /* queries: low rank, per-head norm without weight, rope */
    dsv4g_rmsnorm(g, QL, lw->q_norm, eps, QL);
    {
        const dsv4k_weight *w[2] = { &lw->wq_b, &lw->iwq_b };
        int32_t xs[2] = { QL, QL }, ys[2] = { Q, QI };
        dsv4g_linear_group(g, lw->ratio == 4 ? 2 : 1, w, xs, ys, 1);
    }
    dsv4g_rmsnorm(g, dsv4g_view(g, Q, dom, H, hd, hd, 0), NULL, eps, dsv4g_view(g, Q, dom, H, hd, hd, 0));
    dsv4g_rope(g, dsv4g_view(g, Q, dom, H, rd, hd, nope), lw->rope, 0);
    /* the one key=value vector per row */
    dsv4g_rmsnorm(g, KV, lw->kv_norm, eps, KV);
    dsv4g_rope(g, dsv4g_view(g, KV, dom, 1, rd, hd, nope), lw->rope, 0);
    dsv4g_sim(g, dsv4g_view(g, KV, dom, 1, nope, hd, 0), 0);
    for (int ix = 0; ix < ncomp; ix++) {
        dsv4g_node *n = dsv4g_node_add(g, op_compress, ix ? "compress_indexer" : "compress");
        dsv4g_in(g, n, CV[ix], CG[ix], -1, -1, -1);
        n->p[0] = lw;
        n->i[0] = li; n->i[1] = ix; n->i[2] = dom;
    }
    if (lw->ratio == 4) {
        /* indexer queries and head weights (§5.5) */
        int32_t QIh = dsv4g_view(g, QI, dom, ih, ihd, ihd, 0);
        dsv4g_rope(g, dsv4g_view(g, QI, dom, ih, rd, ihd, ihd - rd), lw->rope, 0);
        dsv4g_hadamard(g, QIh);
        dsv4g_sim(g, QIh, 1);
        dsv4g_scale(g, WT, (float)(1.0 / sqrt((double)ihd) / sqrt((double)ih)));
    }
    int32_t O = F(g, "attn_o", dom, 1, H * hd);
    dsv4g_node *n = dsv4g_node_add(g, op_attend, "attend");
    dsv4g_in(g, n, Q, KV, QI, WT, -1);
    dsv4g_out(g, n, O, -1, -1);
    n->p[0] = lw;
    n->i[0] = li; n->i[1] = dom;
    dsv4g_rope(g, dsv4g_view(g, O, dom, H, rd, hd, nope), lw->rope, 1);
    n = dsv4g_node_add(g, dsv4__op_ring, "ring_store");
    dsv4g_in(g, n, KV, -1, -1, -1, -1);
    n->i[0] = li; n->i[1] = dom;
    /* grouped low-rank output (§5.6): group q reads heads [q·H/G, (q+1)·H/G)
     * and rows [q·olr, (q+1)·olr) of wo_a (used unquantised, as BF16) */
    int64_t G = c->o_groups, olr = c->o_lora_rank, gin = H * hd / G;
    int32_t Z = F(g, "o_lora", dom, 1, G * olr), out = F(g, "attn_out", dom, 1, dim);
    for (int64_t q0 = 0; q0 < G; q0 += 3) {
        const dsv4k_weight *w[3];
        int32_t xs[3], ys[3];
        int cnt = 0;
        for (int64_t q = q0; q < G && q < q0 + 3; q++, cnt++) {
            dsv4k_weight *wv = &rt->wo_views[(int64_t)li * G + q];
            *wv = lw->wo_a;
            wv->row0 = q * olr;
            wv->n = olr;
            w[cnt] = wv;
            xs[cnt] = dsv4g_view(g, O, dom, 1, gin, H * hd, q * gin);
            ys[cnt] = dsv4g_view(g, Z, dom, 1, olr, G * olr, q * olr);
        }
        dsv4g_linear_group(g, cnt, w, xs, ys, 0);
    }
    dsv4g_linear(g, &lw->wo_b, Z, out, 1);
    return out;
}
