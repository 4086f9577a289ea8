/*
 * lib/graph/moe.c — the MoE sublayer (spec §5.7): routing (learned gate
 * with bias, or the hash table of the first layers), the routed experts
 * grouped per expert, the shared expert, and the nodes of the sublayer.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "experts.h"
#include "forward_int.h"
#include "ops.h"

/* ---- the expert op's row work, split over the pool ---------------------- */

typedef struct xrows {
    const float *x;      /* the op's input rows */
    float *XE, *GE, *UE, *OE, *ACC;
    const int32_t *ROWS;
    const float *WR;
    int64_t dim, inter;
    float lim;
    int simd;
} xrows;

/* rows of one expert: gathered inputs */
static void xr_gather(void *arg, int64_t a, int64_t b, int thread)
{
    const xrows *j = arg;
    (void)thread;
    for (int64_t i = a; i < b; i++) memcpy(j->XE + i * j->dim, j->x + j->ROWS[i] * j->dim, (size_t)j->dim * 4);
}

static void xr_swiglu(void *arg, int64_t a, int64_t b, int thread)
{
    const xrows *j = arg;
    (void)thread;
    for (int64_t i = a; i < b; i++)
        dsv4k_swiglu(j->GE + i * j->inter, j->UE + i * j->inter, j->inter, j->lim, j->WR ? j->WR[i] : 1.0f, j->simd);
}

/* the expert's outputs added to their tokens' sums (a token at most once
 * per expert: rows never collide; experts in id order, as before) */
static void xr_add(void *arg, int64_t a, int64_t b, int thread)
{
    const xrows *j = arg;
    (void)thread;
    for (int64_t i = a; i < b; i++) {
        float *acc = j->ACC + j->ROWS[i] * j->dim;
        const float *o = j->OE + i * j->dim;
        for (int64_t d = 0; d < j->dim; d++) acc[d] += o[d];
    }
}

static void xr_zero(void *arg, int64_t a, int64_t b, int thread)
{
    const xrows *j = arg;
    (void)thread;
    memset(j->ACC + a * j->dim, 0, (size_t)((b - a) * j->dim) * 4);
}

/* in parallel where there are enough rows to pay for waking the pool */
static void xr_for(dsv4g_run *r, int64_t rows, dsv4k_task_fn fn, xrows *j)
{
    if (rows > 0) dsv4k_pool_for(rows >= 16 ? r->pool : NULL, rows, 4, fn, j);
}

/* ---- operators --------------------------------------------------------- */

/* routing (§5.7): scores sqrt(softplus(logit)), the K best of score + bias
 * (ties to the lower id) or the token's hash row, weights renormalised */
static void op_route(dsv4g_run *r, const dsv4g_node *n)
{
    dsv4__rt *rt = RT(r);
    const dsv4__config *c = rt->c;
    const dsv4__layer_w *lw = n->p[0];
    const rowset *rs = &rt->rs[n->i[1]];
    int64_t E = c->n_routed_experts, K = c->n_active_experts;
    float *GL = dsv4g_f32(r, n->in[0]), *SELW = dsv4g_f32(r, n->out[1]);
    int32_t *SEL = dsv4g_i32(r, n->out[0]);
    for (int64_t t = 0; t < rs->n; t++) {
        float *l = GL + t * E;
        for (int64_t e = 0; e < E; e++) l[e] = sqrtf(dsv4k_softplus(l[e]));
        int32_t *sel = SEL + t * K;
        if (lw->hash) {
            for (int64_t k = 0; k < K; k++) sel[k] = lw->tid2eid[(int64_t)rs->tok[t] * K + k];
        } else {
            for (int64_t k = 0; k < K; k++) {
                int32_t best = -1;
                float bv = 0;
                for (int64_t e = 0; e < E; e++) {
                    int taken = 0;
                    for (int64_t q = 0; q < k; q++) taken |= sel[q] == e;
                    if (taken) continue;
                    float v = l[e] + lw->gate_bias[e];
                    if (best < 0 || v > bv) { best = (int32_t)e; bv = v; }
                }
                sel[k] = best;
            }
        }
        double sum = 0.0;
        for (int64_t k = 0; k < K; k++) sum += l[sel[k]];
        for (int64_t k = 0; k < K; k++) SELW[t * K + k] = (float)(c->route_scale * l[sel[k]] / sum);
    }
    if (rt->debug && rs->n) rt->debug(rt->debug_user, (int)n->i[0], 0, rs->n, 0, SEL, SELW);
}

/* (token, expert) pairs experts_few takes at most */
#define XF_PAIRS 128

/*
 * A few rows' routed experts (a decode step, a verification, a server's
 * batch of sessions), without the expert cache. An expert that one row
 * selected has one-row products: all of those go in two parallel loops
 * (every gate and up product, then every down product), each bit for bit
 * its dsv4g_linear_exec; an expert that several rows selected takes its
 * m-row products as op_experts runs them. The outputs are added in expert
 * id order, a token's rows in op_experts' order, so every bit is the one
 * op_experts gives.
 */
static void experts_few(dsv4g_run *r, const dsv4g_node *n, int64_t T, const float *x, const int32_t *SEL,
                        const float *SELW, float *ACC)
{
    dsv4__rt *rt = RT(r);
    const dsv4__config *c = rt->c;
    const dsv4__layer_w *lw = n->p[0];
    int64_t dim = c->dim, K = c->n_active_experts, inter = c->moe_inter_dim;
    float lim = (float)c->swiglu_limit;
    int P = (int)(T * K), pr[XF_PAIRS];
    /* the pairs by expert id, stable: within an id by token, then slot */
    for (int q = 0; q < P; q++) {
        int j = q;
        while (j > 0 && SEL[pr[j - 1]] > SEL[q]) {
            pr[j] = pr[j - 1];
            j--;
        }
        pr[j] = q;
    }
    float *GE = rt->x1ws, *UE = GE + P * inter, *OE = UE + P * inter, *XE = OE + P * dim;
    /* run[i]: at the first pair of an expert, how many pairs select it */
    int run[XF_PAIRS];
    for (int i = 0, m; i < P; i += m) {
        for (m = 1; i + m < P && SEL[pr[i + m]] == SEL[pr[i]]; m++) {}
        run[i] = m;
    }
    dsv4k_linear_job jb[2 * XF_PAIRS];
    int nj = 0;
    for (int i = 0, m; i < P; i += m) {
        int32_t e = SEL[pr[i]];
        m = run[i];
        if (m == 1) {
            const float *xt = x + pr[i] / K * dim;
            jb[nj++] = (dsv4k_linear_job){ &lw->w1[e], xt, GE + i * inter };
            jb[nj++] = (dsv4k_linear_job){ &lw->w3[e], xt, UE + i * inter };
            continue;
        }
        for (int j = 0; j < m; j++) memcpy(XE + (i + j) * dim, x + pr[i + j] / K * dim, (size_t)dim * 4);
        dsv4g_linear_exec(r, &lw->w1[e], XE + i * dim, dim, m, GE + i * inter, inter, r->aq);
        dsv4g_linear_exec(r, &lw->w3[e], XE + i * dim, dim, m, UE + i * inter, inter, r->aq);
    }
    if (nj) dsv4g_linear_batch(r, jb, nj, r->aq);
    for (int i = 0; i < P; i++) dsv4k_swiglu(GE + i * inter, UE + i * inter, inter, lim, SELW[pr[i]], rt->simd);
    nj = 0;
    for (int i = 0, m; i < P; i += m) {
        int32_t e = SEL[pr[i]];
        m = run[i];
        if (m == 1) jb[nj++] = (dsv4k_linear_job){ &lw->w2[e], GE + i * inter, OE + i * dim };
        else dsv4g_linear_exec(r, &lw->w2[e], GE + i * inter, inter, m, OE + i * dim, dim, r->aq);
    }
    if (nj) dsv4g_linear_batch(r, jb, nj, r->aq);
    memset(ACC, 0, (size_t)(T * dim) * 4);
    for (int i = 0; i < P; i++) {
        float *acc = ACC + pr[i] / K * dim;
        const float *o = OE + i * dim;
        for (int64_t d = 0; d < dim; d++) acc[d] += o[d];
    }
}

/* routed experts (§5.7): rows grouped per expert, in expert id order (so
 * each row's sum runs in id order too); ACC [rows][dim]; WS workspace
 * [rows][2·dim + 2·inter] */
static void op_experts(dsv4g_run *r, const dsv4g_node *n)
{
    dsv4__rt *rt = RT(r);
    const dsv4__config *c = rt->c;
    const dsv4__layer_w *lw = n->p[0];
    int64_t dim = c->dim, E = c->n_routed_experts, K = c->n_active_experts, inter = c->moe_inter_dim;
    int64_t T = dsv4g_rows(r, n->in[0]);
    const float *x = dsv4g_f32(r, n->in[0]), *SELW = dsv4g_f32(r, n->in[2]);
    const int32_t *SEL = dsv4g_i32(r, n->in[1]);
    float *ACC = dsv4g_f32(r, n->out[0]), *WS = dsv4g_f32(r, n->out[1]);
    float *XE = WS, *GE = XE + T * dim, *UE = GE + T * inter, *OE = UE + T * inter;
    int32_t *ROWS = (int32_t *)(OE + T * dim);
    float *WR = (float *)(ROWS + T);
    float lim = (float)c->swiglu_limit;
    dsv4__xcache *xc = rt->w->xc;
    int li = (int)n->i[0];
    int few = T * K <= XF_PAIRS && T <= DSV4__XF_ROWS && !xc;
    for (int64_t k = 0; few && k < T * K; k++) few = SEL[k] >= 0 && SEL[k] < E;
    if (few) {
        experts_few(r, n, T, x, SEL, SELW, ACC);
        return;
    }
    xrows xr = { x, XE, GE, UE, OE, ACC, ROWS, WR, dim, inter, lim, rt->simd };
    xr_for(r, T, xr_zero, &xr);
    for (int64_t e = 0; e < E; e++) {
        int64_t m = 0;
        for (int64_t t = 0; t < T; t++)
            for (int64_t k = 0; k < K; k++)
                if (SEL[t * K + k] == e) {
                    ROWS[m] = (int32_t)t;
                    WR[m] = SELW[t * K + k];
                    m++;
                }
        if (!m) continue;
        xr_for(r, m, xr_gather, &xr);
        const dsv4k_weight *w1 = &lw->w1[e], *w2 = &lw->w2[e], *w3 = &lw->w3[e];
        dsv4k_weight cw[3];
        int32_t held = -1;
        if (xc && dsv4__xcache_cached(xc, li, (int)e)) {
            /* the experts' slots in id order (op_fetch pinned a prefix):
             * pin the rest once every slot before was released */
            int j = rt->x_done;
            if (rt->x_fail || j >= rt->x_n || rt->x_ids[j] != e) {
                if (!rt->x_fail) {
                    rt->x_fail = 1;
                    snprintf(rt->x_msg, sizeof rt->x_msg, "expert cache: expert %lld of layer %d not pinned",
                             (long long)e, li);
                }
                continue;
            }
            if (j >= rt->x_acq) rt->x_acq = j + dsv4__xcache_acquire(xc, li, rt->x_ids + j, rt->x_n - j,
                                                                      rt->x_slots + j, 1);
            held = rt->x_slots[j];
            rt->x_done++;
            if (dsv4__xcache_wait(xc, held, lw, cw, rt->x_msg, sizeof rt->x_msg)) {
                rt->x_fail = 1;
                dsv4__xcache_release(xc, held);
                continue;
            }
            w1 = &cw[0], w2 = &cw[1], w3 = &cw[2];
        }
        dsv4g_linear_exec(r, w1, XE, dim, m, GE, inter, r->aq);
        dsv4g_linear_exec(r, w3, XE, dim, m, UE, inter, r->aq);
        xr_for(r, m, xr_swiglu, &xr);
        dsv4g_linear_exec(r, w2, GE, inter, m, OE, dim, r->aq);
        if (held >= 0) dsv4__xcache_release(xc, held);
        xr_for(r, m, xr_add, &xr);
    }
    /* after a failure: the pins not used */
    for (int j = rt->x_done; xc && j < rt->x_acq; j++) dsv4__xcache_release(xc, rt->x_slots[j]);
    rt->x_n = rt->x_acq = rt->x_done = 0;
}

/* under a memory budget (experts.h): the distinct cached experts the rows
 * selected, ascending, and their reads started (as many as free slots
 * allow) before the shared expert's products run */
static void op_fetch(dsv4g_run *r, const dsv4g_node *n)
{
    dsv4__rt *rt = RT(r);
    dsv4__xcache *xc = rt->w->xc;
    int li = (int)n->i[0];
    int64_t E = rt->c->n_routed_experts, K = rt->c->n_active_experts, T = dsv4g_rows(r, n->in[0]);
    const int32_t *SEL = dsv4g_i32(r, n->in[0]);
    int32_t *mark = rt->x_slots;
    memset(mark, 0, (size_t)E * sizeof *mark);
    for (int64_t i = 0; i < T * K; i++) mark[SEL[i]] = 1;
    int cnt = 0, all = 0;
    for (int64_t e = 0; e < E; e++)
        if (mark[e]) rt->x_ids[all++] = (int32_t)e;
    /* the look-ahead predictor's guess for this layer, if one was made (and
     * this selection as the control guess for the next) */
    dsv4__xcache_score(xc, li, rt->x_ids, all);
    for (int j = 0; j < all; j++)
        if (dsv4__xcache_cached(xc, li, rt->x_ids[j])) rt->x_ids[cnt++] = rt->x_ids[j];
    rt->x_n = rt->x_fail ? 0 : cnt;
    rt->x_acq = rt->x_done = 0;
    if (rt->x_n) rt->x_acq = dsv4__xcache_acquire(xc, li, rt->x_ids, rt->x_n, rt->x_slots, 1);
}

/* the look-ahead predictor (experts.h, docs/memory.md): the next layer's
 * gate (p[0]: that layer) applied to this layer's FFN input x gives, per
 * row, its top-k and top-2k experts by score + bias as the router would
 * choose them; their union over the rows is recorded for scoring, and in
 * modes 2 and 3 the top-k (or top-2k) union's reads start. Only the cache's
 * reads depend on it: the sums are the same with it on or off. */
static void op_predict(dsv4g_run *r, const dsv4g_node *n)
{
    dsv4__rt *rt = RT(r);
    dsv4__xcache *xc = rt->w->xc;
    int mode = dsv4__xcache_lookahead(xc);
    if (!mode || rt->x_fail) return;
    const dsv4__layer_w *nl = n->p[0];
    int64_t dim = rt->c->dim, E = rt->c->n_routed_experts, K = rt->c->n_active_experts, T = dsv4g_rows(r, n->in[0]);
    if (!T) return;
    const float *x = dsv4g_f32(r, n->in[0]);
    float *PL = dsv4g_f32(r, n->out[0]);
    int32_t *mark = dsv4g_i32(r, n->out[1]), *ids = mark + E, *ids2 = ids + E; /* [3E] of the [T][3E] */
    int64_t K2 = 2 * K < E ? 2 * K : E;
    dsv4g_linear_exec(r, &nl->gate, x, dim, T, PL, E, 0);
    memset(mark, 0, (size_t)E * sizeof *mark);
    for (int64_t t = 0; t < T; t++) {
        float *l = PL + t * E;
        for (int64_t e = 0; e < E; e++) l[e] = sqrtf(dsv4k_softplus(l[e])) + nl->gate_bias[e];
        for (int64_t k = 0; k < K2; k++) {
            int32_t best = -1;
            for (int64_t e = 0; e < E; e++)
                if (!isnan(l[e]) && (best < 0 || l[e] > l[best])) best = (int32_t)e;
            if (best < 0) break;
            l[best] = NAN; /* taken */
            int v = k < K ? 2 : 1;
            if (mark[best] < v) mark[best] = v;
        }
    }
    int nk = 0, n2 = 0;
    for (int64_t e = 0; e < E; e++) {
        if (mark[e] == 2) ids[nk++] = (int32_t)e;
        if (mark[e]) ids2[n2++] = (int32_t)e;
    }
    int li = (int)n->i[0];
    dsv4__xcache_predicted(xc, li, ids, nk, ids2, n2);
    if (mode == 2) dsv4__xcache_prefetch(xc, li, ids, nk);
    else if (mode == 3) dsv4__xcache_prefetch(xc, li, ids2, n2);
}

/* g = silu(min(g, lim)) · clamp(u, ±lim) (lim 0: no clamp) */
static void op_swiglu(dsv4g_run *r, const dsv4g_node *n)
{
    int64_t rows = dsv4g_rows(r, n->in[0]), cols = r->g->t[n->in[0]].cols;
    /* rows cols apart, unit weights (WR NULL) */
    xrows j = { NULL, NULL, dsv4g_f32(r, n->in[0]), (float *)dsv4g_f32(r, n->in[1]), NULL, NULL, NULL, NULL, 0,
                cols, n->f[0], RT(r)->simd };
    xr_for(r, rows, xr_swiglu, &j);
}

/* under a memory budget: the hash-routed layers' experts are known from the
 * batch's tokens before the step runs; their reads start now (first layers
 * first) */
void dsv4__moe_prefetch(dsv4__rt *rt)
{
    dsv4__xcache *xc = rt->w->xc;
    const rowset *rs = &rt->rs[DSV4G_TOK];
    int64_t E = rt->c->n_routed_experts, K = rt->c->n_active_experts;
    if (!xc || !rs->n) return;
    for (int l = 0; l < rt->w->n_layers; l++) {
        const dsv4__layer_w *lw = &rt->w->layers[l];
        if (!lw->hash) continue;
        int32_t *mark = rt->x_slots;
        memset(mark, 0, (size_t)E * sizeof *mark);
        for (int64_t t = 0; t < rs->n; t++)
            for (int64_t k = 0; k < K; k++) mark[lw->tid2eid[(int64_t)rs->tok[t] * K + k]] = 1;
        int cnt = 0;
        for (int64_t e = 0; e < E; e++)
            if (mark[e]) rt->x_ids[cnt++] = (int32_t)e;
        if (dsv4__xcache_prefetch(xc, l, rt->x_ids, cnt) < cnt) break; /* no room for more */
    }
}

/* ---- the MoE sublayer -------------------------------------------------- */

/* MoE sublayer (§5.7) */
int32_t dsv4__build_moe(dsv4__rt *rt, dsv4g_graph *g, int li, const dsv4__layer_w *lw, int dom, int32_t x)
{
    const dsv4__config *c = rt->c;
    int64_t dim = c->dim, E = c->n_routed_experts, K = c->n_active_experts, inter = c->moe_inter_dim;
    int32_t GL = F(g, "gate_logits", dom, 1, E), SEL = dsv4g_new(g, "experts", DSV4G_I32, dom, 1, K);
    int32_t SELW = F(g, "expert_w", dom, 1, K);
    dsv4g_linear(g, &lw->gate, x, GL, 0);
    dsv4g_node *n = dsv4g_node_add(g, op_route, "route");
    dsv4g_in(g, n, GL, -1, -1, -1, -1);
    dsv4g_out(g, n, SEL, SELW, -1);
    n->p[0] = lw;
    n->i[0] = li; n->i[1] = dom;
    int32_t ACC = F(g, "routed_out", dom, 1, dim), WS = F(g, "expert_ws", dom, 1, 2 * dim + 2 * inter + 2);
    /* under a memory budget the routed experts' reads start first and run
     * while the shared expert computes (the same sums either way) */
    int cached = rt->w->xc != NULL;
    if (cached) {
        n = dsv4g_node_add(g, op_fetch, "expert_fetch");
        dsv4g_in(g, n, SEL, -1, -1, -1, -1);
        n->i[0] = li;
        /* the look-ahead predictor for the next layer, when it routes by
         * learned scores (its reads queue behind this layer's) */
        if (li + 1 < rt->w->n_layers && !rt->w->layers[li + 1].hash) {
            int32_t PL = F(g, "lookahead_logits", dom, 1, E);
            int32_t PM = dsv4g_new(g, "lookahead_ids", DSV4G_I32, dom, 1, 3 * E);
            n = dsv4g_node_add(g, op_predict, "expert_lookahead");
            dsv4g_in(g, n, x, -1, -1, -1, -1);
            dsv4g_out(g, n, PL, PM, -1);
            n->p[0] = &rt->w->layers[li + 1];
            n->i[0] = li + 1;
        }
    } else {
        n = dsv4g_node_add(g, op_experts, "experts");
        dsv4g_in(g, n, x, SEL, SELW, -1, -1);
        dsv4g_out(g, n, ACC, WS, -1);
        n->p[0] = lw;
        n->i[0] = li;
    }
    int32_t SG = F(g, "shared_gate", dom, 1, inter), SU = F(g, "shared_up", dom, 1, inter);
    int32_t SO = F(g, "shared_out", dom, 1, dim), out = F(g, "ffn_out", dom, 1, dim);
    dsv4g_linear(g, &lw->sw1, x, SG, 1);
    dsv4g_linear(g, &lw->sw3, x, SU, 1);
    n = dsv4g_node_add(g, op_swiglu, "swiglu");
    dsv4g_in(g, n, SG, SU, -1, -1, -1);
    dsv4g_out(g, n, SG, -1, -1);
    n->f[0] = rt->shared_clamp ? (float)c->swiglu_limit : 0.0f;
    dsv4g_linear(g, &lw->sw2, SG, SO, 1);
    if (cached) {
        n = dsv4g_node_add(g, op_experts, "experts");
        dsv4g_in(g, n, x, SEL, SELW, -1, -1);
        dsv4g_out(g, n, ACC, WS, -1);
        n->p[0] = lw;
        n->i[0] = li;
    }
    dsv4g_add(g, ACC, SO, out);
    return out;
}
