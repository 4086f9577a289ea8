/*
 * lib/graph/weights.c — bind a checkpoint's tensors to the forward pass
 * (struct dsv4__weights). Runs once in dsv4_model_load, after the loader
 * has checked every tensor's dtype and shape against the config.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "weights.h"
#include "ops.h"

typedef struct binder {
    const dsv4__checkpoint *ck;
    struct dsv4__weights *w;
    dsv4__err *e;
    dsv4_status st;
    int resident;   /* copy the linear layers bound while `hot` is set (DSV4_OPT_RESIDENT) */
    int hot;
} binder;

static void *own(binder *b, size_t bytes)
{
    struct dsv4__weights *w = b->w;
    if (b->st) return NULL;
    if (w->n_owned == w->cap_owned) {
        int64_t cap = w->cap_owned ? 2 * w->cap_owned : 64;
        void **p = dsv4__realloc(w->owned, (size_t)cap * sizeof *p);
        if (p) w->owned = p;
        size_t *z = p ? dsv4__realloc(w->owned_sz, (size_t)cap * sizeof *z) : NULL;
        if (!z) { b->st = dsv4__fail(b->e, DSV4_ERR_OUT_OF_MEMORY, "binding weights: out of memory"); return NULL; }
        w->owned_sz = z;
        w->cap_owned = cap;
    }
    void *q = dsv4__malloc_aligned(bytes ? bytes : 1);
    if (!q) { b->st = dsv4__fail(b->e, DSV4_ERR_OUT_OF_MEMORY, "binding weights: out of memory"); return NULL; }
    w->owned_sz[w->n_owned] = bytes ? bytes : 1;
    w->owned[w->n_owned++] = q;
    w->owned_bytes += (int64_t)bytes;
    return q;
}

static const dsv4__tensor *tensor(binder *b, const char *name)
{
    if (b->st) return NULL;
    const dsv4__tensor *t = dsv4__checkpoint_tensor(b->ck, name);
    if (!t) b->st = dsv4__fail(b->e, DSV4_ERR_MISSING_TENSOR, "binding weights: tensor %s is missing", name);
    return t;
}

static int64_t numel(const dsv4__tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* a small BF16/F32 tensor as aligned f32 (copied) */
static const float *vecf(binder *b, const char *fmt, const char *p)
{
    char name[160];
    snprintf(name, sizeof name, fmt, p);
    const dsv4__tensor *t = tensor(b, name);
    if (!t) return NULL;
    int64_t n = numel(t);
    float *v = own(b, (size_t)n * sizeof *v);
    if (!v) return NULL;
    if (t->dtype == DSV4__DT_F32) {
        memcpy(v, t->data, (size_t)n * 4);
    } else if (t->dtype == DSV4__DT_BF16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, t->data + 2 * i, 2);
            v[i] = dsv4k_bf16_to_f32(h);
        }
    } else {
        b->st = dsv4__fail(b->e, DSV4_ERR_TENSOR_MISMATCH, "binding weights: %s has dtype %s, expected BF16 or F32",
                           name, dsv4__dtype_name(t->dtype));
        return NULL;
    }
    return v;
}

/* data pointer usable for `align`-byte loads: the mapping itself when
 * aligned, else an aligned copy */
static const void *aligned_data(binder *b, const dsv4__tensor *t, size_t align)
{
    if (((uintptr_t)t->data % align) == 0) return t->data;
    void *q = own(b, (size_t)t->nbytes);
    if (q) memcpy(q, t->data, (size_t)t->nbytes);
    return q;
}

/* data of a weight every token reads, copied out of the file mapping into
 * anonymous memory (transparent huge pages asked for before the copy
 * touches it, on the 2 MiB-aligned interior) when the binder is resident
 * and hot; else the mapping's bytes as they are */
static const void *hot_data(binder *b, const dsv4__tensor *t, const void *mapped, dsv4k_weight *lw)
{
    if (!b->resident || !b->hot || !mapped) return mapped;
    if (mapped != (const void *)t->data) return mapped; /* already an aligned copy */
    size_t n = (size_t)t->nbytes;
    uint8_t *q = own(b, n);
    if (!q) return NULL;
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t lo = ((uintptr_t)q + huge - 1) & ~(huge - 1), hi = ((uintptr_t)q + n) & ~(huge - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE); /* advice only: failure changes nothing */
#endif
    /* a linear's rows: interleaved in groups of 4 while copied where the
     * format allows (kernels.h; the kernels read either layout) */
    const char *env = getenv("DSV4_INTERLEAVE"); /* "0": plain copies (benchmarks' A/B) */
    int64_t rb = lw && !(env && !strcmp(env, "0")) ? dsv4k_ilv_load_row_bytes(lw->fmt, lw->k) : 0;
    if (rb && lw->n * rb == (int64_t)n) lw->ilv = dsv4k_repack_rows(q, t->data, lw->n, rb);
    else memcpy(q, t->data, n);
    b->w->resident_bytes += (int64_t)n;
    return q;
}

/* a linear layer `<base>.weight` (+ `<base>.scale`) */
static void lin(binder *b, dsv4k_weight *out, const char *fmt, const char *p, int idx)
{
    char base[160], name[176];
    snprintf(base, sizeof base, fmt, p, idx);
    snprintf(name, sizeof name, "%s.weight", base);
    memset(out, 0, sizeof *out);
    const dsv4__tensor *t = tensor(b, name);
    if (!t) return;
    out->n = t->shape[0];
    out->k = t->shape[1];
    const dsv4__tensor *s = NULL;
    if (t->dtype == DSV4__DT_F8_E4M3 || t->dtype == DSV4__DT_I8) {
        snprintf(name, sizeof name, "%s.scale", base);
        s = tensor(b, name);
        if (!s) return;
    }
    switch (t->dtype) {
    case DSV4__DT_BF16: out->fmt = DSV4K_W_BF16; out->w = hot_data(b, t, aligned_data(b, t, 2), out); break;
    case DSV4__DT_F32: out->fmt = DSV4K_W_F32; out->w = hot_data(b, t, aligned_data(b, t, 4), NULL); break;
    case DSV4__DT_F8_E4M3:
        out->fmt = s->dtype == DSV4__DT_F32 ? DSV4K_W_FP8_F32S : DSV4K_W_FP8;
        out->w = hot_data(b, t, t->data, out);
        out->s = s->dtype == DSV4__DT_F32 ? hot_data(b, s, aligned_data(b, s, 4), NULL) : hot_data(b, s, s->data, NULL);
        break;
    case DSV4__DT_I8:
        out->fmt = DSV4K_W_FP4;
        out->k = t->shape[1] * 2;
        out->w = hot_data(b, t, t->data, NULL);
        out->s = hot_data(b, s, s->data, NULL);
        break;
    default:
        b->st = dsv4__fail(b->e, DSV4_ERR_TENSOR_MISMATCH, "binding weights: %s has dtype %s, not a linear layer's",
                           name, dsv4__dtype_name(t->dtype));
    }
}

static void compressor(binder *b, dsv4__compressor_w *c, const char *p, const char *which, int ratio, int d)
{
    char f[96];
    c->ratio = ratio;
    c->coff = ratio == 4 ? 2 : 1;
    c->d = d;
    snprintf(f, sizeof f, "%%s%s.wkv", which);
    lin(b, &c->wkv, f, p, 0);
    snprintf(f, sizeof f, "%%s%s.wgate", which);
    lin(b, &c->wgate, f, p, 0);
    snprintf(f, sizeof f, "%%s%s.ape", which);
    c->ape = vecf(b, f, p);
    snprintf(f, sizeof f, "%%s%s.norm.weight", which);
    c->norm = vecf(b, f, p);
}

static void layer(binder *b, dsv4__layer_w *L, const char *p, int l, int is_mtp)
{
    const dsv4__config *c = &b->ck->cfg;
    L->ratio = c->compress_ratios[l];
    L->is_mtp = is_mtp;
    L->hash = !is_mtp && l < c->n_hash_layers;
    L->rope = L->ratio > 0 ? b->w->rope_comp : b->w->rope_plain;
    L->hc_fn[0] = vecf(b, "%shc_attn_fn", p);
    L->hc_base[0] = vecf(b, "%shc_attn_base", p);
    L->hc_scale[0] = vecf(b, "%shc_attn_scale", p);
    L->hc_fn[1] = vecf(b, "%shc_ffn_fn", p);
    L->hc_base[1] = vecf(b, "%shc_ffn_base", p);
    L->hc_scale[1] = vecf(b, "%shc_ffn_scale", p);
    L->attn_norm = vecf(b, "%sattn_norm.weight", p);
    L->ffn_norm = vecf(b, "%sffn_norm.weight", p);
    L->q_norm = vecf(b, "%sattn.q_norm.weight", p);
    L->kv_norm = vecf(b, "%sattn.kv_norm.weight", p);
    lin(b, &L->wq_a, "%sattn.wq_a", p, 0);
    lin(b, &L->wq_b, "%sattn.wq_b", p, 0);
    lin(b, &L->wkv, "%sattn.wkv", p, 0);
    lin(b, &L->wo_a, "%sattn.wo_a", p, 0);
    lin(b, &L->wo_b, "%sattn.wo_b", p, 0);
    L->sink = vecf(b, "%sattn.attn_sink", p);
    if (L->ratio > 0) compressor(b, &L->comp, p, "attn.compressor", L->ratio, c->head_dim);
    if (L->ratio == 4) {
        lin(b, &L->iwq_b, "%sattn.indexer.wq_b", p, 0);
        lin(b, &L->iwproj, "%sattn.indexer.weights_proj", p, 0);
        compressor(b, &L->icomp, p, "attn.indexer.compressor", 4, c->index_head_dim);
    }
    lin(b, &L->gate, "%sffn.gate", p, 0);
    if (L->hash) {
        char name[160];
        snprintf(name, sizeof name, "%sffn.gate.tid2eid", p);
        const dsv4__tensor *t = tensor(b, name);
        int64_t n = (int64_t)c->vocab_size * c->n_active_experts;
        if (t && numel(t) != n)
            b->st = dsv4__fail(b->e, DSV4_ERR_TENSOR_MISMATCH, "binding weights: %s has the wrong size", name);
        int32_t *ids = t && !b->st ? own(b, (size_t)n * sizeof *ids) : NULL;
        for (int64_t i = 0; ids && i < n; i++) {
            int64_t v;
            memcpy(&v, t->data + 8 * i, 8);
            if (v < 0 || v >= c->n_routed_experts) {
                b->st = dsv4__fail(b->e, DSV4_ERR_TENSOR_MISMATCH, "binding weights: %s holds expert id %lld, "
                                   "outside [0, %d)", name, (long long)v, c->n_routed_experts);
                return;
            }
            ids[i] = (int32_t)v;
        }
        L->tid2eid = ids;
    } else {
        L->gate_bias = vecf(b, "%sffn.gate.bias", p);
    }
    int ne = c->n_routed_experts;
    L->w1 = own(b, (size_t)ne * sizeof *L->w1);
    L->w2 = own(b, (size_t)ne * sizeof *L->w2);
    L->w3 = own(b, (size_t)ne * sizeof *L->w3);
    b->hot = 0; /* a token reads n_active of the routed experts: they stay mapped */
    for (int e = 0; e < ne && !b->st; e++) {
        lin(b, &L->w1[e], "%sffn.experts.%d.w1", p, e);
        lin(b, &L->w2[e], "%sffn.experts.%d.w2", p, e);
        lin(b, &L->w3[e], "%sffn.experts.%d.w3", p, e);
    }
    b->hot = 1;
    lin(b, &L->sw1, "%sffn.shared_experts.w1", p, 0);
    lin(b, &L->sw2, "%sffn.shared_experts.w2", p, 0);
    lin(b, &L->sw3, "%sffn.shared_experts.w3", p, 0);
}

int64_t dsv4__weights_lock(struct dsv4__weights *w, int *err_no)
{
    *err_no = 0;
    for (int64_t i = 0; i < w->n_owned; i++) {
        if (mlock(w->owned[i], w->owned_sz[i]) != 0) {
            *err_no = errno;
            break;
        }
        w->locked_bytes += (int64_t)w->owned_sz[i];
    }
    return w->locked_bytes;
}

void dsv4__weights_free(struct dsv4__weights *w)
{
    if (!w) return;
    for (int64_t i = 0; i < w->n_owned; i++) {
        if (w->locked_bytes) (void)munlock(w->owned[i], w->owned_sz[i]);
        dsv4__free_aligned(w->owned[i]);
    }
    dsv4__free(w->owned);
    dsv4__free(w->owned_sz);
    dsv4__free(w);
}

dsv4_status dsv4__weights_bind(const dsv4__checkpoint *ck, int resident, struct dsv4__weights **out, dsv4__err *e)
{
    *out = NULL;
    const dsv4__config *c = &ck->cfg;
    struct dsv4__weights *w = dsv4__calloc(1, sizeof *w);
    if (!w) return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "binding weights: out of memory");
    binder b = { ck, w, e, DSV4_OK, resident != 0, 1 };
    int half = c->rope_head_dim / 2;
    w->rope_plain = own(&b, (size_t)half * sizeof(float));
    w->rope_comp = own(&b, (size_t)half * sizeof(float));
    if (!b.st) {
        dsv4k_rope_freqs(c->rope_theta, c->rope_head_dim, 0, 0, 0, 0, w->rope_plain);
        dsv4k_rope_freqs(c->compress_rope_theta, c->rope_head_dim, c->original_seq_len, c->rope_factor,
                         c->beta_fast, c->beta_slow, w->rope_comp);
    }
    w->n_layers = c->n_layers;
    w->layers = own(&b, (size_t)c->n_layers * sizeof *w->layers);
    if (w->layers) memset(w->layers, 0, (size_t)c->n_layers * sizeof *w->layers);
    b.hot = 0; /* a token reads one row of the embedding */
    lin(&b, &w->embed, "%sembed", "", 0);
    b.hot = 1;
    lin(&b, &w->head, "%shead", "", 0);
    w->norm = vecf(&b, "%snorm.weight", "");
    w->hc_head_fn = vecf(&b, "%shc_head_fn", "");
    w->hc_head_base = vecf(&b, "%shc_head_base", "");
    w->hc_head_scale = vecf(&b, "%shc_head_scale", "");
    char p[32];
    for (int l = 0; l < c->n_layers && !b.st; l++) {
        snprintf(p, sizeof p, "layers.%d.", l);
        layer(&b, &w->layers[l], p, l, 0);
    }
    if (ck->has_mtp && !b.st) {
        w->mtp = own(&b, sizeof *w->mtp);
        if (w->mtp) {
            memset(w->mtp, 0, sizeof *w->mtp);
            layer(&b, w->mtp, "mtp.0.", c->n_layers, 1);
        }
        lin(&b, &w->e_proj, "%se_proj", "mtp.0.", 0);
        lin(&b, &w->h_proj, "%sh_proj", "mtp.0.", 0);
        w->enorm = vecf(&b, "%senorm.weight", "mtp.0.");
        w->hnorm = vecf(&b, "%shnorm.weight", "mtp.0.");
        w->mtp_norm = vecf(&b, "%snorm.weight", "mtp.0.");
        w->mtp_hc_fn = vecf(&b, "%shc_head_fn", "mtp.0.");
        w->mtp_hc_base = vecf(&b, "%shc_head_base", "mtp.0.");
        w->mtp_hc_scale = vecf(&b, "%shc_head_scale", "mtp.0.");
    }
    if (b.st) {
        dsv4__weights_free(w);
        return b.st;
    }
    *out = w;
    return DSV4_OK;
}
