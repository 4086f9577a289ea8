/*
 * lib/graph/forward.c — the DeepSeek-V4 forward pass (see forward.h).
 *
 * The model is one graph (graph.h) built and planned when the runtime is
 * created, for batches of up to max_batch token rows: embedding, every
 * block (mHC pre-mix, attention or MoE, mHC post-mix), the final head, then
 * the MTP block and its head. Generic operators live in graph.c; the ones
 * that touch session state or route rows are defined in this folder:
 * embedding, the MTP staging and the logit outputs here; session state, the
 * compact KV storage and the window ring in kv.c; compressors, the indexer
 * and attention in attention.c; routing and the experts in moe.c (shared
 * structs in forward_int.h).
 *
 * A batch carries spans: runs of consecutive positions of one session each
 * (one session per span, several sessions per batch). The projections of
 * all rows are single products; the compressors consume each span's rows in
 * order (emitting compressed entries into its session's cache); attention
 * runs for every row in parallel, each seeing its causal window (raw KV of
 * the batch or its session's ring) and the compressed entries complete at
 * its position; the ring is updated once attention is done. Decode is the
 * one-row case of the same graph, so prefill, chunked prefill and decode
 * agree.
 *
 * Numerics (spec §4): `float` keeps every activation in f32 with no
 * quantisation; `reference` quantises activations to FP8 before FP8/FP4
 * products, rounds KV to FP8 (current revision), applies the indexer's FP4
 * simulation and stores compressed entries compactly (lossless, §6.1):
 * e4m3 codes + E8M0 exponents for the non-RoPE dims, the RoPE dims as f32
 * (intermediates are f32 here, so bf16 storage of them would be lossy),
 * indexer keys as packed e2m1 + E8M0.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "forward_int.h"
#include "linear.h"
#include "ops.h"

/* ---- runtime ----------------------------------------------------------- */

static void *rt_alloc(dsv4__rt *rt, int64_t n_bytes)
{
    void *p = dsv4__malloc_aligned((size_t)(n_bytes > 0 ? n_bytes : 1));
    if (!p) return NULL;
    void **a = dsv4__realloc(rt->allocs, (size_t)(rt->n_allocs + 1) * sizeof *a);
    if (!a) { dsv4__free_aligned(p); return NULL; }
    rt->allocs = a;
    rt->allocs[rt->n_allocs++] = p;
    return p;
}

void dsv4__rt_free(dsv4__rt *rt)
{
    if (!rt) return;
    dsv4k_linear_ctx_free(rt->lin);
    dsv4k_gemm_free(rt->gemm);
    dsv4k_pool_free(rt->pool);
    dsv4g_free(&rt->g);
    dsv4g_free(&rt->gd);
    for (int i = 0; i < rt->n_allocs; i++) dsv4__free_aligned(rt->allocs[i]);
    dsv4__free(rt->allocs);
    dsv4__free(rt);
}

static int build_graphs(dsv4__rt *rt);

dsv4_status dsv4__rt_create(const dsv4__config *c, const struct dsv4__weights *w, const dsv4__rt_opts *o,
                            dsv4__rt **out, dsv4__err *e)
{
    *out = NULL;
    if (!w) return dsv4__fail(e, DSV4_ERR_INTERNAL, "model has no bound weights");
    dsv4__rt *rt = dsv4__calloc(1, sizeof *rt);
    if (!rt) return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "context: out of memory");
    rt->c = c;
    rt->w = w;
    rt->o = *o;
    rt->aq = o->numerics == DSV4_NUMERICS_REFERENCE;
    rt->fp4_sim = rt->aq;
    rt->kv_sim = rt->aq && o->revision == DSV4_REVISION_CURRENT;
    rt->compact = rt->kv_sim;
    rt->shared_clamp = o->revision == DSV4_REVISION_CURRENT;
    rt->hc = c->hc_mult;
    rt->simd = !o->ref_ops && c->index_head_dim % 32 == 0 && c->head_dim % 8 == 0;
    int64_t B = o->max_batch, hd = c->head_dim, H = c->n_heads;
    int64_t ihd = c->index_head_dim, inter = c->moe_inter_dim, dim = c->dim;
    int64_t qlr = c->q_lora_rank, oz = (int64_t)c->o_groups * c->o_lora_rank;
    rt->pool = dsv4k_pool_create(o->threads);
    int64_t max_k = max64(max64(max64(dim, qlr), max64(oz, inter)), H * hd / c->o_groups);
    rt->lin = rt->pool ? dsv4k_linear_ctx_create(rt->pool, max_k, B * rt->hc) : NULL;
    if (!rt->lin) goto oom;
    /* products of max_batch rows of hc streams at most (the MTP h_proj) */
    if (B * rt->hc >= DSV4G_GEMM_MIN_ROWS) rt->gemm = dsv4k_gemm_create(o->threads, max_k, B * rt->hc);
    rt->max_comp = 0;
    for (int l = 0; l <= c->n_layers; l++) {
        int r = c->compress_ratios[l];
        if (r == 4) rt->max_comp = max64(rt->max_comp, c->index_topk);
        else if (r > 0) rt->max_comp = max64(rt->max_comp, o->n_ctx / r + 1);
    }
    int nt = dsv4k_pool_threads(rt->pool);
    rt->tb = rt_alloc(rt, (int64_t)nt * (int64_t)sizeof *rt->tb);
    if (!rt->tb) goto oom;
    for (int t = 0; t < nt; t++) {
        thread_buf *b = &rt->tb[t];
        b->kv = rt_alloc(rt, (c->window + rt->max_comp) * (int64_t)sizeof(float *));
        b->dec = rt_alloc(rt, rt->max_comp * hd * 4);
        b->scores = rt_alloc(rt, (o->n_ctx / 4 + 1) * 4);
        b->idx = rt_alloc(rt, (o->n_ctx / 4 + 1) * 8);
        b->key = rt_alloc(rt, ihd * 4);
        b->att = rt_alloc(rt, c->n_heads * (c->window + rt->max_comp + 1) * 4);
        b->q4 = rt_alloc(rt, dsv4k_index_q4_query_bytes((int)c->index_n_heads, ihd) + 64);
        if (!b->kv || !b->dec || !b->scores || !b->idx || !b->key || !b->att || !b->q4) goto oom;
    }
    for (int d = 0; d < DSV4G_N_DOM; d++) {
        rowset *s = &rt->rs[d];
        if (!(s->sp = rt_alloc(rt, B * (int64_t)sizeof *s->sp)) || !(s->sp_of = rt_alloc(rt, B * 4)) ||
            !(s->pos = rt_alloc(rt, B * 8)) || !(s->tok = rt_alloc(rt, B * 4)) || !(s->src = rt_alloc(rt, B * 8)))
            goto oom;
    }
    if (!(rt->DBG = rt_alloc(rt, B * c->index_topk * 4))) goto oom;
    if (!(rt->wo_views = rt_alloc(rt, (int64_t)(c->n_layers + 1) * c->o_groups * (int64_t)sizeof(dsv4k_weight))))
        goto oom;
    if (!(rt->x1ws = rt_alloc(rt, dsv4__experts_few_bytes(c)))) goto oom;
    if (w->xc && (!(rt->x_ids = rt_alloc(rt, c->n_routed_experts * 4)) ||
                  !(rt->x_slots = rt_alloc(rt, c->n_routed_experts * 4))))
        goto oom;
    int b = build_graphs(rt);
    if (b < 0) {
        dsv4__rt_free(rt);
        return dsv4__fail(e, DSV4_ERR_INTERNAL, "context: the forward graph is inconsistent");
    }
    if (b > 0) goto oom;
    *out = rt;
    return DSV4_OK;
oom:
    dsv4__rt_free(rt);
    return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "context: out of memory for %d-token scratch", o->max_batch);
}

void dsv4__rt_set_debug(dsv4__rt *rt, dsv4__debug_fn fn, void *user)
{
    rt->debug = fn;
    rt->debug_user = user;
}

const dsv4g_graph *dsv4__rt_graph(const dsv4__rt *rt) { return &rt->g; }
dsv4k_pool *dsv4__rt_pool(dsv4__rt *rt) { return rt->pool; }
dsv4k_linear_ctx *dsv4__rt_linear(dsv4__rt *rt) { return rt->lin; }

int64_t dsv4__experts_few_bytes(const dsv4__config *c)
{
    return DSV4__XF_ROWS * (int64_t)c->n_active_experts * (2 * (int64_t)c->moe_inter_dim + 2 * (int64_t)c->dim) * 4;
}

void dsv4__rt_set_profile(dsv4__rt *rt, int64_t *ns_per_node) { rt->prof_ns = ns_per_node; }

dsv4__rt_opts dsv4__rt_options(const dsv4__rt *rt) { return rt->o; }

int64_t dsv4__rt_scratch_bytes(const dsv4__rt *rt)
{
    return max64(rt->g.arena_bytes, rt->gd.arena_bytes);
}

/* ---- model operators --------------------------------------------------- */

/* X[row] = hc copies of the token's embedding */
typedef struct embed_job {
    dsv4__rt *rt;
    const rowset *rs;
    float *X;
    int64_t dim, width, copies;
    int ref;
} embed_job;

static void embed_span(void *arg, int64_t a, int64_t b, int thread)
{
    embed_job *j = arg;
    (void)thread;
    for (int64_t t = a; t < b; t++) {
        float *x = j->X + t * j->width;
        /* the same exact values either way; the reference decodes value by value */
        if (j->ref) dsv4k_weight_rows_f32_ref(&j->rt->w->embed, j->rs->tok[t], j->rs->tok[t] + 1, x);
        else dsv4k_decode_row(&j->rt->w->embed, j->rs->tok[t], x);
        for (int64_t k = 1; k < j->copies; k++) memcpy(x + k * j->dim, x, (size_t)j->dim * 4);
    }
}

static void op_embed(dsv4g_run *r, const dsv4g_node *n)
{
    dsv4__rt *rt = RT(r);
    const rowset *rs = &rt->rs[n->i[0]];
    embed_job j = { rt, rs, dsv4g_f32(r, n->out[0]), rt->c->dim, r->g->t[n->out[0]].ld, n->i[1], r->ref };
    if (rs->n > 0) dsv4k_pool_for(rs->n > 1 ? r->pool : NULL, rs->n, 1, embed_span, &j);
}

static void add_embed(dsv4g_graph *g, int dom, int64_t copies, int32_t X)
{
    dsv4g_node *n = dsv4g_node_add(g, op_embed, "embed");
    dsv4g_out(g, n, X, -1, -1);
    n->i[0] = dom;
    n->i[1] = copies;
}

/* the rows of X a logit domain reads */
static void op_gather(dsv4g_run *r, const dsv4g_node *n)
{
    const rowset *rs = &RT(r)->rs[n->i[0]];
    int64_t w = r->g->t[n->in[0]].ld;
    const float *X = dsv4g_f32(r, n->in[0]);
    float *Y = dsv4g_f32(r, n->out[0]);
    for (int64_t i = 0; i < rs->n; i++) memcpy(Y + i * w, X + rs->src[i] * w, (size_t)w * 4);
}

/* logits of each span of a logit domain straight into its destination */
static void op_head(dsv4g_run *r, const dsv4g_node *n)
{
    dsv4__rt *rt = RT(r);
    const rowset *rs = &rt->rs[n->i[0]];
    const float *Y = dsv4g_f32(r, n->in[0]);
    int64_t dim = rt->c->dim, V = rt->c->vocab_size;
    for (int i = 0; i < rs->n_sp; i++) {
        const span *sp = &rs->sp[i];
        if (sp->out) dsv4g_linear_exec(r, &rt->w->head, Y + sp->row0 * dim, dim, sp->n, sp->out, V, 0);
    }
}

/* MTP input rows (§5.8) of each session: its trunk streams at positions
 * first .. first+m-1 (the saved row at p0-1, then the batch's rows) */
static void op_mtp_stage(dsv4g_run *r, const dsv4g_node *n)
{
    dsv4__rt *rt = RT(r);
    const rowset *tr = &rt->rs[DSV4G_TOK], *mr = &rt->rs[DSV4G_MTP];
    int64_t w = r->g->t[n->in[0]].ld;
    const float *X = dsv4g_f32(r, n->in[0]);
    float *Hs = dsv4g_f32(r, n->out[0]);
    for (int i = 0; i < mr->n_sp; i++) {
        const span *ms = &mr->sp[i];
        const span *ts = NULL;
        for (int k = 0; k < tr->n_sp; k++)
            if (tr->sp[k].s == ms->s) ts = &tr->sp[k];
        int64_t o = 0;
        if (ts->p0 > 0) memcpy(Hs + ms->row0 * w, ms->s->last_x, (size_t)w * 4), o = 1;
        for (int64_t t = 0; t + o < ms->n; t++)
            memcpy(Hs + (ms->row0 + o + t) * w, X + (ts->row0 + t) * w, (size_t)w * 4);
    }
    /* every session keeps its last trunk row for the next batch, and the
     * one before it (dsv4__state_undo) */
    for (int k = 0; k < tr->n_sp; k++) {
        const span *ts = &tr->sp[k];
        const float *prev = ts->n >= 2 ? X + (ts->row0 + ts->n - 2) * w : ts->s->last_x;
        memcpy(ts->s->prev_x, prev, (size_t)w * 4);
        memcpy(ts->s->last_x, X + (ts->row0 + ts->n - 1) * w, (size_t)w * 4);
    }
}

/* the draft's single MTP row: the saved trunk row at pos-1 */
static void op_draft_stage(dsv4g_run *r, const dsv4g_node *n)
{
    const rowset *mr = &RT(r)->rs[DSV4G_MTP];
    int64_t w = r->g->t[n->out[0]].ld;
    memcpy(dsv4g_f32(r, n->out[0]), mr->sp[0].s->last_x, (size_t)w * 4);
}

/* Z[row][j] = EP[row] + HP[row·hc + j] for every stream j */
static void op_mtp_mix(dsv4g_run *r, const dsv4g_node *n)
{
    int64_t rows = dsv4g_rows(r, n->in[0]), dim = r->g->t[n->in[0]].cols, hc = n->i[0];
    const float *EP = dsv4g_f32(r, n->in[0]), *HP = dsv4g_f32(r, n->in[1]);
    float *Z = dsv4g_f32(r, n->out[0]);
    for (int64_t t = 0; t < rows; t++)
        for (int64_t j = 0; j < hc; j++)
            for (int64_t d = 0; d < dim; d++)
                Z[(t * hc + j) * dim + d] = EP[t * dim + d] + HP[(t * hc + j) * dim + d];
}

/* ---- the graph --------------------------------------------------------- */

/* one block with hyper-connections (§5.2): streams X [dom][hc·dim] → new X */
static int32_t build_block(dsv4__rt *rt, dsv4g_graph *g, int li, const dsv4__layer_w *lw, int dom, int32_t X)
{
    const dsv4__config *c = rt->c;
    int hc = rt->hc;
    int64_t dim = c->dim;
    float eps = (float)c->norm_eps;
    for (int site = 0; site < 2; site++) {
        g->tag_layer = li;
        g->tag_part = site ? DSV4G_PART_FFN : DSV4G_PART_ATTN;
        int32_t U = F(g, "hc_in", dom, 1, dim), POST = F(g, "hc_post", dom, 1, hc);
        int32_t COMB = F(g, "hc_comb", dom, 1, (int64_t)hc * hc), XN = F(g, "normed", dom, 1, dim);
        dsv4g_hc_pre(g, X, lw->hc_fn[site], lw->hc_base[site], lw->hc_scale[site], hc, c->hc_sinkhorn_iters, eps,
                     (float)c->hc_eps, U, POST, COMB);
        dsv4g_rmsnorm(g, U, site ? lw->ffn_norm : lw->attn_norm, eps, XN);
        int32_t AO = site ? dsv4__build_moe(rt, g, li, lw, dom, XN) : dsv4__build_attention(rt, g, li, lw, dom, XN);
        int32_t X2 = F(g, "streams", dom, 1, hc * dim);
        dsv4g_hc_post(g, X, AO, POST, COMB, hc, X2);
        X = X2;
    }
    g->tag_layer = -1;
    g->tag_part = DSV4G_PART_OTHER;
    return X;
}

/* final stream reduction, norm and LM head of the rows of logit domain ldom */
static void build_head(dsv4__rt *rt, dsv4g_graph *g, int32_t X, int ldom, const float *fn, const float *base,
                       const float *scale, const float *norm)
{
    const dsv4__config *c = rt->c;
    int64_t dim = c->dim;
    int32_t XL = F(g, "logit_streams", ldom, 1, rt->hc * dim), YH = F(g, "head_in", ldom, 1, dim);
    g->tag_part = DSV4G_PART_HEAD;
    dsv4g_node *n = dsv4g_node_add(g, op_gather, "gather");
    dsv4g_in(g, n, X, -1, -1, -1, -1);
    dsv4g_out(g, n, XL, -1, -1);
    n->i[0] = ldom;
    dsv4g_hc_head(g, XL, fn, base, scale, rt->hc, (float)c->norm_eps, (float)c->hc_eps, YH);
    dsv4g_rmsnorm(g, YH, norm, (float)c->norm_eps, YH);
    n = dsv4g_node_add(g, op_head, "head");
    dsv4g_in(g, n, YH, -1, -1, -1, -1);
    n->i[0] = ldom;
    g->tag_part = DSV4G_PART_OTHER;
}

/* the MTP block (§5.8) on staged trunk rows Hs [MTP][hc·dim] */
static void build_mtp(dsv4__rt *rt, dsv4g_graph *g, int32_t Hs)
{
    const struct dsv4__weights *w = rt->w;
    const dsv4__config *c = rt->c;
    int hc = rt->hc;
    int64_t dim = c->dim;
    float eps = (float)c->norm_eps;
    int32_t Em = F(g, "mtp_embed", DSV4G_MTP, 1, dim), HN = F(g, "mtp_hnorm", DSV4G_MTP, hc, dim);
    int32_t EP = F(g, "mtp_eproj", DSV4G_MTP, 1, dim), HP = F(g, "mtp_hproj", DSV4G_MTP, hc, dim);
    int32_t Z = F(g, "mtp_streams", DSV4G_MTP, 1, hc * dim);
    add_embed(g, DSV4G_MTP, 1, Em);
    dsv4g_rmsnorm(g, Em, w->enorm, eps, Em);
    dsv4g_rmsnorm(g, dsv4g_view(g, Hs, DSV4G_MTP, hc, dim, dim, 0), w->hnorm, eps, HN);
    dsv4g_linear(g, &w->e_proj, Em, EP, 1);
    dsv4g_linear(g, &w->h_proj, HN, HP, 1);
    dsv4g_node *n = dsv4g_node_add(g, op_mtp_mix, "mtp_mix");
    dsv4g_in(g, n, EP, HP, -1, -1, -1);
    dsv4g_out(g, n, Z, -1, -1);
    n->i[0] = hc;
    Z = build_block(rt, g, c->n_layers, w->mtp, DSV4G_MTP, Z);
    build_head(rt, g, Z, DSV4G_MTP_LOGIT, w->mtp_hc_fn, w->mtp_hc_base, w->mtp_hc_scale, w->mtp_norm);
}

/* 0, 1 out of memory, -1 inconsistent */
static int build_graphs(dsv4__rt *rt)
{
    const dsv4__config *c = rt->c;
    const struct dsv4__weights *w = rt->w;
    int64_t B = rt->o.max_batch, width = (int64_t)rt->hc * c->dim;
    int64_t full[DSV4G_N_DOM] = { B, B, B, B, 1 }, one[DSV4G_N_DOM] = { 0, 1, 0, 1, 1 };
    dsv4g_graph *g = &rt->g;
    dsv4g_init(g, full);
    int32_t X = F(g, "streams", DSV4G_TOK, 1, width);
    add_embed(g, DSV4G_TOK, rt->hc, X);
    for (int l = 0; l < c->n_layers; l++) X = build_block(rt, g, l, &w->layers[l], DSV4G_TOK, X);
    build_head(rt, g, X, DSV4G_LOGIT, w->hc_head_fn, w->hc_head_base, w->hc_head_scale, w->norm);
    int32_t Hs = F(g, "mtp_in", DSV4G_MTP, 1, width);
    dsv4g_node *n = dsv4g_node_add(g, op_mtp_stage, "mtp_stage");
    dsv4g_in(g, n, X, -1, -1, -1, -1);
    dsv4g_out(g, n, Hs, -1, -1);
    if (w->mtp) build_mtp(rt, g, Hs);
    dsv4g_graph *d = &rt->gd;
    dsv4g_init(d, one);
    if (w->mtp) {
        Hs = F(d, "mtp_in", DSV4G_MTP, 1, width);
        n = dsv4g_node_add(d, op_draft_stage, "draft_stage");
        dsv4g_out(d, n, Hs, -1, -1);
        build_mtp(rt, d, Hs);
    }
    if (g->failed || d->failed) return 1;
    int pg = dsv4g_plan(g), pd = pg ? pg : dsv4g_plan(d);
    if (pg < 0 || pd < 0) return -1;
    if (pg || pd) return 1; /* out of memory */
    rt->arena = rt_alloc(rt, dsv4__rt_scratch_bytes(rt));
    return rt->arena ? 0 : 1;
}

/* ---- running batches ------------------------------------------------------------------ */

static void run_graph(dsv4__rt *rt, const dsv4g_graph *g)
{
    dsv4g_run r;
    memset(&r, 0, sizeof r);
    r.g = g;
    r.arena = rt->arena;
    r.pool = rt->pool;
    r.lin = rt->lin;
    r.gemm = rt->gemm;
    r.ref = rt->o.ref_ops;
    r.aq = rt->aq;
    r.kv_sim = rt->kv_sim;
    r.fp4_sim = rt->fp4_sim;
    r.user = rt;
    r.prof_ns = g == &rt->g ? rt->prof_ns : NULL;
    for (int d = 0; d < DSV4G_FIXED; d++) {
        r.dom_n[d] = rt->rs[d].n;
        r.pos[d] = rt->rs[d].pos;
    }
    r.dom_n[DSV4G_FIXED] = 1;
    dsv4g_exec(&r);
}

static void rs_clear(rowset *rs) { rs->n = 0; rs->n_sp = 0; }

/* append rows p0 .. p0+n-1 of session s to a rowset */
static span *rs_push(rowset *rs, dsv4__state *s, int64_t p0, int64_t n, float *out)
{
    span *sp = &rs->sp[rs->n_sp];
    *sp = (span){ s, p0, rs->n, n, out };
    for (int64_t i = 0; i < n; i++) {
        rs->sp_of[rs->n + i] = rs->n_sp;
        rs->pos[rs->n + i] = p0 + i;
    }
    rs->n_sp++;
    rs->n += n;
    return sp;
}

/* one part of a request inside a batch */
typedef struct part {
    dsv4__req *q;
    int64_t i, n;          /* tokens [i, i+n) of the request */
} part;

/* run one batch of parts (distinct sessions, total <= max_batch rows) */
static void run_batch(dsv4__rt *rt, const part *pt, int n_parts)
{
    int64_t V = rt->c->vocab_size;
    rowset *tr = &rt->rs[DSV4G_TOK], *lr = &rt->rs[DSV4G_LOGIT];
    rowset *mr = &rt->rs[DSV4G_MTP], *ml = &rt->rs[DSV4G_MTP_LOGIT];
    rs_clear(tr); rs_clear(lr); rs_clear(mr); rs_clear(ml);
    for (int k = 0; k < n_parts; k++) {
        const part *p = &pt[k];
        dsv4__req *q = p->q;
        dsv4__state *s = q->s;
        int64_t p0 = s->pos;
        span *ts = rs_push(tr, s, p0, p->n, NULL);
        memcpy(tr->tok + ts->row0, q->tokens + p->i, (size_t)p->n * 4);
        /* logit rows wanted from this part: those among the request's last n_logit_rows */
        int64_t after = q->n - (p->i + p->n), want = q->n_logit_rows - after;
        if (want > p->n) want = p->n;
        if (q->logits && want > 0) {
            span *ls = rs_push(lr, s, p0 + p->n - want, want, q->logits + (q->n_logit_rows - after - want) * V);
            for (int64_t i = 0; i < want; i++) lr->src[ls->row0 + i] = ts->row0 + p->n - want + i;
        }
        if (s->mtp) {
            /* MTP rows at positions first .. p0+n-2: trunk row, next token */
            int64_t o = p0 > 0, m = p->n - 1 + o, first = p0 - o;
            if (m <= 0) continue;
            span *ms = rs_push(mr, s, first, m, NULL);
            memcpy(mr->tok + ms->row0, q->tokens + p->i + 1 - o, (size_t)m * 4);
            if (q->mtp_logits) {
                span *mo = rs_push(ml, s, first, m, q->mtp_logits + q->n_mtp * V);
                for (int64_t i = 0; i < m; i++) ml->src[mo->row0 + i] = ms->row0 + i;
            }
            q->n_mtp += m;
        }
    }
    /* a batch whose products go to oneDNN runs all its loops on OpenMP's
     * threads too (one set of threads on the cores, see pool.h) */
    int omp = rt->gemm && tr->n >= DSV4G_GEMM_MIN_ROWS;
    dsv4k_pool_set_omp(rt->pool, omp);
    dsv4__moe_prefetch(rt);
    run_graph(rt, &rt->g);
    dsv4k_pool_set_omp(rt->pool, 0);
    for (int k = 0; k < n_parts; k++) pt[k].q->s->pos += pt[k].n;
}

dsv4_status dsv4__forward_batch(dsv4__rt *rt, dsv4__req *reqs, int n_reqs, dsv4__err *e)
{
    int64_t B = rt->o.max_batch;
    for (int i = 0; i < n_reqs; i++) {
        dsv4__req *q = &reqs[i];
        q->n_mtp = 0;
        if (q->s->rt != rt)
            return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "batch: a session of another context");
        for (int j = 0; j < i; j++)
            if (reqs[j].s == q->s) return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "batch: a session appears twice");
        if (q->n < 1) return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "batch: a request without tokens");
        if (q->s->pos + q->n > rt->o.n_ctx)
            return dsv4__fail(e, DSV4_ERR_CONTEXT_FULL, "context full: position %lld + %lld tokens exceeds the "
                              "capacity %lld", (long long)q->s->pos, (long long)q->n, (long long)rt->o.n_ctx);
    }
    /* fill batches of up to B rows, request by request */
    part pt[64];
    int np = 0;
    int64_t rows = 0;
    rt->x_fail = 0;
    for (int i = 0; i < n_reqs && !rt->x_fail; i++) {
        for (int64_t done = 0; done < reqs[i].n && !rt->x_fail;) {
            int64_t take = reqs[i].n - done < B - rows ? reqs[i].n - done : B - rows;
            pt[np++] = (part){ &reqs[i], done, take };
            rows += take;
            done += take;
            if (rows == B || np == 64) {
                run_batch(rt, pt, np);
                np = 0;
                rows = 0;
            }
        }
    }
    if (np && !rt->x_fail) run_batch(rt, pt, np);
    if (rt->x_fail) {
        /* a routed expert could not be read (memory budget): the states ran
         * part of a step, so none is kept */
        for (int i = 0; i < n_reqs; i++) dsv4__state_reset(reqs[i].s);
        rt->x_fail = 0;
        return dsv4__fail(e, DSV4_ERR_IO, "%s (the session was reset to position 0)", rt->x_msg);
    }
    return DSV4_OK;
}

dsv4_status dsv4__forward(dsv4__state *s, const int32_t *tokens, int64_t n, float *logits, int64_t n_logit_rows,
                          float *mtp_logits, int64_t *n_mtp_rows, dsv4__err *e)
{
    dsv4__req q = { s, tokens, n, logits, n_logit_rows, mtp_logits, 0 };
    dsv4_status st = dsv4__forward_batch(s->rt, &q, 1, e);
    if (st == DSV4_OK && n_mtp_rows) *n_mtp_rows = q.n_mtp;
    return st;
}

int dsv4__rt_rows_identical(const dsv4__rt *rt)
{
    /* products of up to DSV4K_MROWS_EXACT rows give every row bit for bit
     * its one-row product (kernels/linear.c; tests kernels-mrows and
     * mrows-session); 16 rows or more may go to oneDNN, which sums in
     * another order */
    return dsv4k_linear_rows_exact(rt->lin);
}

dsv4_status dsv4__forward_mtp_draft(dsv4__state *s, int32_t next_token, float *logits, dsv4__err *e)
{
    dsv4__rt *rt = s->rt;
    if (!s->mtp) return dsv4__fail(e, DSV4_ERR_NOT_AVAILABLE, "MTP is not enabled on this session");
    if (s->pos == 0) return dsv4__fail(e, DSV4_ERR_NOT_AVAILABLE, "MTP draft needs at least one token fed");
    /* the MTP block is window-only: its ring slot for row pos-1 is rewritten
     * when that row is computed for real, so a draft leaves no trace */
    for (int d = 0; d < DSV4G_FIXED; d++) rs_clear(&rt->rs[d]);
    span *ms = rs_push(&rt->rs[DSV4G_MTP], s, s->pos - 1, 1, NULL);
    rt->rs[DSV4G_MTP].tok[ms->row0] = next_token;
    span *mo = rs_push(&rt->rs[DSV4G_MTP_LOGIT], s, s->pos - 1, 1, logits);
    rt->rs[DSV4G_MTP_LOGIT].src[mo->row0] = 0;
    rt->x_fail = 0;
    run_graph(rt, &rt->gd);
    if (rt->x_fail) {
        rt->x_fail = 0;
        return dsv4__fail(e, DSV4_ERR_IO, "%s", rt->x_msg);
    }
    return DSV4_OK;
}
