/*
 * lib/loader/tensors.c — the tensor table a configuration implies (spec §3.2
 * generalised to any config): name, dtype and shape of every tensor, and the
 * role each plays in the per-token byte and parameter counts.
 */
#include <stdio.h>
#include <string.h>
#include "loader/loader.h"

typedef struct {
    dsv4__expect_fn fn;
    void *user;
    const dsv4__config *cfg;
    int stop;
} emitter;

static void emit(emitter *em, int role, int dtype, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void emit(emitter *em, int role, int dtype, int64_t d0, int64_t d1, const char *fmt, ...)
{
    if (em->stop) return;
    dsv4__expected t;
    memset(&t, 0, sizeof t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t.name, sizeof t.name, fmt, ap);
    va_end(ap);
    t.dtype = dtype;
    t.role = role;
    t.ndim = d1 < 0 ? 1 : 2;
    t.shape[0] = d0;
    t.shape[1] = d1 < 0 ? 0 : d1;
    if (em->fn(em->user, &t)) em->stop = 1;
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* an FP8 linear: e4m3 weight + 128x128 block scales (E8M0, or F32 for Flash-Base) */
static void fp8(emitter *em, int role, const char *base, int64_t out, int64_t in)
{
    emit(em, role, DSV4__DT_F8_E4M3, out, in, "%s.weight", base);
    emit(em, role | DSV4__ROLE_SCALE, em->cfg->scale_f32 ? DSV4__DT_F32 : DSV4__DT_F8_E8M0,
         cdiv(out, 128), cdiv(in, 128), "%s.scale", base);
}

static void expert_linear(emitter *em, int role, const char *base, int64_t out, int64_t in)
{
    if (em->cfg->expert_fp8) {
        fp8(em, role, base, out, in);
        return;
    }
    emit(em, role, DSV4__DT_I8, out, in / 2, "%s.weight", base);
    emit(em, role | DSV4__ROLE_SCALE, DSV4__DT_F8_E8M0, out, in / 32, "%s.scale", base);
}

static void block(emitter *em, const char *p, int layer, int is_mtp)
{
    const dsv4__config *c = em->cfg;
    int ratio = c->compress_ratios[layer];
    int r = is_mtp ? DSV4__ROLE_MTP : 0;
    int64_t hc = c->hc_mult, mix = (2 + hc) * hc, hd = c->head_dim, ihd = c->index_head_dim;
    char b[160];
    emit(em, r, DSV4__DT_F32, mix, hc * c->dim, "%shc_attn_fn", p);
    emit(em, r, DSV4__DT_F32, mix, -1, "%shc_attn_base", p);
    emit(em, r, DSV4__DT_F32, 3, -1, "%shc_attn_scale", p);
    emit(em, r, DSV4__DT_F32, mix, hc * c->dim, "%shc_ffn_fn", p);
    emit(em, r, DSV4__DT_F32, mix, -1, "%shc_ffn_base", p);
    emit(em, r, DSV4__DT_F32, 3, -1, "%shc_ffn_scale", p);
    emit(em, r, DSV4__DT_BF16, c->dim, -1, "%sattn_norm.weight", p);
    emit(em, r, DSV4__DT_BF16, c->dim, -1, "%sffn_norm.weight", p);
    snprintf(b, sizeof b, "%sattn.wq_a", p); fp8(em, r, b, c->q_lora_rank, c->dim);
    emit(em, r, DSV4__DT_BF16, c->q_lora_rank, -1, "%sattn.q_norm.weight", p);
    snprintf(b, sizeof b, "%sattn.wq_b", p); fp8(em, r, b, (int64_t)c->n_heads * hd, c->q_lora_rank);
    snprintf(b, sizeof b, "%sattn.wkv", p); fp8(em, r, b, hd, c->dim);
    emit(em, r, DSV4__DT_BF16, hd, -1, "%sattn.kv_norm.weight", p);
    snprintf(b, sizeof b, "%sattn.wo_a", p);
    fp8(em, r, b, (int64_t)c->o_groups * c->o_lora_rank, (int64_t)c->n_heads * hd / c->o_groups);
    snprintf(b, sizeof b, "%sattn.wo_b", p); fp8(em, r, b, c->dim, (int64_t)c->o_groups * c->o_lora_rank);
    emit(em, r, DSV4__DT_F32, c->n_heads, -1, "%sattn.attn_sink", p);
    if (ratio > 0) {
        int64_t coff = ratio == 4 ? 2 : 1;
        emit(em, r, DSV4__DT_BF16, coff * hd, c->dim, "%sattn.compressor.wkv.weight", p);
        emit(em, r, DSV4__DT_BF16, coff * hd, c->dim, "%sattn.compressor.wgate.weight", p);
        emit(em, r, DSV4__DT_F32, ratio, coff * hd, "%sattn.compressor.ape", p);
        emit(em, r, DSV4__DT_BF16, hd, -1, "%sattn.compressor.norm.weight", p);
        if (ratio == 4) {
            snprintf(b, sizeof b, "%sattn.indexer.wq_b", p);
            fp8(em, r, b, (int64_t)c->index_n_heads * ihd, c->q_lora_rank);
            emit(em, r, DSV4__DT_BF16, c->index_n_heads, c->dim, "%sattn.indexer.weights_proj.weight", p);
            emit(em, r, DSV4__DT_BF16, 2 * ihd, c->dim, "%sattn.indexer.compressor.wkv.weight", p);
            emit(em, r, DSV4__DT_BF16, 2 * ihd, c->dim, "%sattn.indexer.compressor.wgate.weight", p);
            emit(em, r, DSV4__DT_F32, 4, 2 * ihd, "%sattn.indexer.compressor.ape", p);
            emit(em, r, DSV4__DT_BF16, ihd, -1, "%sattn.indexer.compressor.norm.weight", p);
        }
    }
    emit(em, r, DSV4__DT_BF16, c->n_routed_experts, c->dim, "%sffn.gate.weight", p);
    if (!is_mtp && layer < c->n_hash_layers)
        emit(em, r | DSV4__ROLE_HASH, DSV4__DT_I64, c->vocab_size, c->n_active_experts, "%sffn.gate.tid2eid", p);
    else
        emit(em, r, DSV4__DT_F32, c->n_routed_experts, -1, "%sffn.gate.bias", p);
    for (int e = 0; e < c->n_routed_experts && !em->stop; e++) {
        snprintf(b, sizeof b, "%sffn.experts.%d.w1", p, e);
        expert_linear(em, r | DSV4__ROLE_EXPERT, b, c->moe_inter_dim, c->dim);
        snprintf(b, sizeof b, "%sffn.experts.%d.w3", p, e);
        expert_linear(em, r | DSV4__ROLE_EXPERT, b, c->moe_inter_dim, c->dim);
        snprintf(b, sizeof b, "%sffn.experts.%d.w2", p, e);
        expert_linear(em, r | DSV4__ROLE_EXPERT, b, c->dim, c->moe_inter_dim);
    }
    snprintf(b, sizeof b, "%sffn.shared_experts.w1", p); fp8(em, r, b, c->moe_inter_dim, c->dim);
    snprintf(b, sizeof b, "%sffn.shared_experts.w3", p); fp8(em, r, b, c->moe_inter_dim, c->dim);
    snprintf(b, sizeof b, "%sffn.shared_experts.w2", p); fp8(em, r, b, c->dim, c->moe_inter_dim);
}

int dsv4__expected_tensors(const dsv4__config *c, int with_mtp, dsv4__expect_fn fn, void *user)
{
    emitter em = { fn, user, c, 0 };
    int64_t hc = c->hc_mult;
    emit(&em, DSV4__ROLE_EMBED, DSV4__DT_BF16, c->vocab_size, c->dim, "embed.weight");
    emit(&em, 0, DSV4__DT_BF16, c->vocab_size, c->dim, "head.weight");
    emit(&em, 0, DSV4__DT_BF16, c->dim, -1, "norm.weight");
    emit(&em, 0, DSV4__DT_F32, hc, hc * c->dim, "hc_head_fn");
    emit(&em, 0, DSV4__DT_F32, hc, -1, "hc_head_base");
    emit(&em, 0, DSV4__DT_F32, 1, -1, "hc_head_scale");
    char p[32];
    for (int l = 0; l < c->n_layers && !em.stop; l++) {
        snprintf(p, sizeof p, "layers.%d.", l);
        block(&em, p, l, 0);
    }
    if (with_mtp) {
        for (int i = 0; i < c->n_mtp_layers && !em.stop; i++) {
            snprintf(p, sizeof p, "mtp.%d.", i);
            block(&em, p, c->n_layers + i, 1);
            char b[64];
            snprintf(b, sizeof b, "mtp.%d.e_proj", i); fp8(&em, DSV4__ROLE_MTP, b, c->dim, c->dim);
            snprintf(b, sizeof b, "mtp.%d.h_proj", i); fp8(&em, DSV4__ROLE_MTP, b, c->dim, c->dim);
            emit(&em, DSV4__ROLE_MTP, DSV4__DT_BF16, c->dim, -1, "mtp.%d.enorm.weight", i);
            emit(&em, DSV4__ROLE_MTP, DSV4__DT_BF16, c->dim, -1, "mtp.%d.hnorm.weight", i);
            emit(&em, DSV4__ROLE_MTP, DSV4__DT_BF16, c->dim, -1, "mtp.%d.norm.weight", i);
            emit(&em, DSV4__ROLE_MTP, DSV4__DT_F32, hc, hc * c->dim, "mtp.%d.hc_head_fn", i);
            emit(&em, DSV4__ROLE_MTP, DSV4__DT_F32, hc, -1, "mtp.%d.hc_head_base", i);
            emit(&em, DSV4__ROLE_MTP, DSV4__DT_F32, 1, -1, "mtp.%d.hc_head_scale", i);
        }
    }
    return em.stop;
}
