/*
 * lib/loader/config.c — config.json → dsv4__config, with every field checked
 * for presence, type and range, and the shape constraints of spec §7.1.
 */
#include <jansson.h>
#include <math.h>
#include <string.h>
#include "loader/loader.h"

typedef struct {
    json_t *root;
    const char *path;
    dsv4__err *e;
} cfgctx;

static dsv4_status get_int(cfgctx *c, const char *key, int64_t lo, int64_t hi, int optional,
                           int64_t def, int64_t *out)
{
    json_t *v = json_object_get(c->root, key);
    if (!v || json_is_null(v)) {
        if (optional) { *out = def; return DSV4_OK; }
        return dsv4__fail(c->e, DSV4_ERR_BAD_CONFIG, "%s: missing field \"%s\"", c->path, key);
    }
    if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v))) {
        /* range first: converting a double outside int64's range is undefined */
        double d = json_real_value(v);
        if (!(d >= (double)lo && d <= (double)hi && d < 0x1p63))
            return dsv4__fail(c->e, DSV4_ERR_BAD_CONFIG, "%s: field \"%s\" = %g out of range [%lld, %lld]",
                              c->path, key, d, (long long)lo, (long long)hi);
        *out = (int64_t)d;
    } else if (json_is_integer(v)) {
        *out = json_integer_value(v);
    } else {
        return dsv4__fail(c->e, DSV4_ERR_BAD_CONFIG, "%s: field \"%s\" must be an integer", c->path, key);
    }
    if (*out < lo || *out > hi)
        return dsv4__fail(c->e, DSV4_ERR_BAD_CONFIG, "%s: field \"%s\" = %lld out of range [%lld, %lld]",
                          c->path, key, (long long)*out, (long long)lo, (long long)hi);
    return DSV4_OK;
}

static dsv4_status get_num(cfgctx *c, json_t *obj, const char *key, double lo, double hi,
                           int optional, double def, double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (optional) { *out = def; return DSV4_OK; }
        return dsv4__fail(c->e, DSV4_ERR_BAD_CONFIG, "%s: missing field \"%s\"", c->path, key);
    }
    if (!json_is_number(v))
        return dsv4__fail(c->e, DSV4_ERR_BAD_CONFIG, "%s: field \"%s\" must be a number", c->path, key);
    *out = json_number_value(v);
    if (!(*out >= lo && *out <= hi))
        return dsv4__fail(c->e, DSV4_ERR_BAD_CONFIG, "%s: field \"%s\" = %g out of range [%g, %g]",
                          c->path, key, *out, lo, hi);
    return DSV4_OK;
}

#define GI(key, lo, hi, dst) do { int64_t v_; \
    if ((st = get_int(&c, key, lo, hi, 0, 0, &v_))) goto out; \
    (dst) = (int32_t)v_; } while (0)
#define GIO(key, lo, hi, def, dst) do { int64_t v_; \
    if ((st = get_int(&c, key, lo, hi, 1, def, &v_))) goto out; \
    (dst) = (int32_t)v_; } while (0)

static int is_pow2(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

dsv4_status dsv4__config_parse(const char *text, size_t len, const char *path, dsv4__config *cfg,
                               dsv4__err *e)
{
    memset(cfg, 0, sizeof *cfg);
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "%s: invalid JSON at line %d: %s", path, jerr.line,
                          jerr.text);
    cfgctx c = { root, path, e };
    dsv4_status st = DSV4_OK;
    if (!json_is_object(root)) {
        st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "%s: not a JSON object", path);
        goto out;
    }
    /* architecture first: a clear UNSUPPORTED for other models */
    json_t *mt = json_object_get(root, "model_type");
    json_t *ar = json_object_get(root, "architectures");
    const char *arch = (json_is_array(ar) && json_array_size(ar) > 0)
                           ? json_string_value(json_array_get(ar, 0)) : NULL;
    if (!json_is_string(mt) && !arch) {
        st = dsv4__fail(e, DSV4_ERR_BAD_CONFIG, "%s: missing field \"model_type\"", path);
        goto out;
    }
    if ((json_is_string(mt) && strcmp(json_string_value(mt), "deepseek_v4") != 0) ||
        (arch && strcmp(arch, "DeepseekV4ForCausalLM") != 0)) {
        st = dsv4__fail(e, DSV4_ERR_UNSUPPORTED,
                        "%s: model_type \"%s\" / architecture \"%s\" is not DeepSeek-V4 "
                        "(deepseek_v4 / DeepseekV4ForCausalLM); this library runs DeepSeek-V4 only",
                        path, json_is_string(mt) ? json_string_value(mt) : "?", arch ? arch : "?");
        goto out;
    }
    GI("vocab_size", 2, 1 << 24, cfg->vocab_size);
    GI("hidden_size", 128, 65536, cfg->dim);
    GI("num_hidden_layers", 1, DSV4__MAX_LAYERS, cfg->n_layers);
    GIO("num_nextn_predict_layers", 0, 1, 0, cfg->n_mtp_layers);
    GI("num_attention_heads", 1, 1024, cfg->n_heads);
    GI("head_dim", 64, 4096, cfg->head_dim);
    GI("qk_rope_head_dim", 2, 1024, cfg->rope_head_dim);
    GI("q_lora_rank", 128, 65536, cfg->q_lora_rank);
    GI("o_groups", 1, 1024, cfg->o_groups);
    GI("o_lora_rank", 1, 65536, cfg->o_lora_rank);
    GI("sliding_window", 1, 1 << 20, cfg->window);
    GI("index_n_heads", 1, 1024, cfg->index_n_heads);
    GI("index_head_dim", 32, 4096, cfg->index_head_dim);
    GI("index_topk", 1, 1 << 20, cfg->index_topk);
    GI("n_routed_experts", 1, 4096, cfg->n_routed_experts);
    GI("n_shared_experts", 1, 1, cfg->n_shared_experts);
    GI("num_experts_per_tok", 1, 4096, cfg->n_active_experts);
    GI("moe_intermediate_size", 128, 1 << 20, cfg->moe_inter_dim);
    GIO("num_hash_layers", 0, DSV4__MAX_LAYERS, 0, cfg->n_hash_layers);
    GI("hc_mult", 4, 4, cfg->hc_mult);
    GIO("hc_sinkhorn_iters", 1, 1000, 20, cfg->hc_sinkhorn_iters);
    GIO("bos_token_id", 0, 1 << 24, 0, cfg->bos_id);
    GIO("eos_token_id", 0, 1 << 24, 1, cfg->eos_id);
    {
        int64_t v;
        if ((st = get_int(&c, "max_position_embeddings", 1, (int64_t)1 << 40, 0, 0, &v))) goto out;
        cfg->max_position = v;
    }
    if ((st = get_num(&c, root, "rope_theta", 1, 1e12, 0, 0, &cfg->rope_theta))) goto out;
    if ((st = get_num(&c, root, "compress_rope_theta", 1, 1e12, 0, 0, &cfg->compress_rope_theta))) goto out;
    if ((st = get_num(&c, root, "rms_norm_eps", 0, 1, 0, 0, &cfg->norm_eps))) goto out;
    if ((st = get_num(&c, root, "hc_eps", 0, 1, 1, 1e-6, &cfg->hc_eps))) goto out;
    if ((st = get_num(&c, root, "routed_scaling_factor", 0, 1e6, 0, 0, &cfg->route_scale))) goto out;
    if ((st = get_num(&c, root, "swiglu_limit", 0, 1e9, 1, 0, &cfg->swiglu_limit))) goto out;
    json_t *rs = json_object_get(root, "rope_scaling");
    if (!json_is_object(rs)) {
        st = dsv4__fail(e, DSV4_ERR_BAD_CONFIG, "%s: missing object \"rope_scaling\"", path);
        goto out;
    }
    if ((st = get_num(&c, rs, "factor", 1, 1e6, 0, 0, &cfg->rope_factor))) goto out;
    if ((st = get_num(&c, rs, "beta_fast", 0, 1e6, 0, 0, &cfg->beta_fast))) goto out;
    if ((st = get_num(&c, rs, "beta_slow", 0, 1e6, 0, 0, &cfg->beta_slow))) goto out;
    {
        double v;
        if ((st = get_num(&c, rs, "original_max_position_embeddings", 1, 1e12, 0, 0, &v))) goto out;
        cfg->original_seq_len = (int64_t)v;
    }
    json_t *sf = json_object_get(root, "scoring_func");
    if (sf && (!json_is_string(sf) || strcmp(json_string_value(sf), "sqrtsoftplus") != 0)) {
        st = dsv4__fail(e, DSV4_ERR_UNSUPPORTED, "%s: scoring_func must be \"sqrtsoftplus\"", path);
        goto out;
    }
    json_t *ed = json_object_get(root, "expert_dtype");
    if (ed && !json_is_null(ed)) {
        const char *s = json_string_value(ed);
        if (s && strcmp(s, "fp4") == 0) cfg->expert_fp8 = 0;
        else if (s && strcmp(s, "fp8") == 0) cfg->expert_fp8 = 1;
        else {
            st = dsv4__fail(e, DSV4_ERR_BAD_CONFIG, "%s: field \"expert_dtype\" must be \"fp4\" or \"fp8\"", path);
            goto out;
        }
    }
    cfg->scale_f32 = cfg->expert_fp8; /* Flash-Base stores F32 block scales; checked at load */
    json_t *cr = json_object_get(root, "compress_ratios");
    int nr = cfg->n_layers + cfg->n_mtp_layers;
    if (!json_is_array(cr) || (int)json_array_size(cr) != nr) {
        st = dsv4__fail(e, DSV4_ERR_BAD_CONFIG,
                        "%s: field \"compress_ratios\" must be an array of num_hidden_layers + "
                        "num_nextn_predict_layers = %d integers", path, nr);
        goto out;
    }
    for (int i = 0; i < nr; i++) {
        json_t *v = json_array_get(cr, (size_t)i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 20)) {
            st = dsv4__fail(e, DSV4_ERR_BAD_CONFIG, "%s: compress_ratios[%d] must be an integer >= 0", path, i);
            goto out;
        }
        cfg->compress_ratios[i] = (int32_t)json_integer_value(v);
        if (i >= cfg->n_layers && cfg->compress_ratios[i] != 0) {
            st = dsv4__fail(e, DSV4_ERR_UNSUPPORTED, "%s: compress_ratios[%d]: the MTP block must be a "
                            "sliding-window layer (ratio 0)", path, i);
            goto out;
        }
    }
    /* consistency (spec §7.1) */
    struct { int ok; const char *what; } rules[] = {
        { cfg->dim % 128 == 0, "hidden_size % 128 == 0" },
        { cfg->q_lora_rank % 128 == 0, "q_lora_rank % 128 == 0" },
        { ((int64_t)cfg->o_groups * cfg->o_lora_rank) % 128 == 0, "(o_groups * o_lora_rank) % 128 == 0" },
        { cfg->moe_inter_dim % 128 == 0, "moe_intermediate_size % 128 == 0" },
        { cfg->rope_head_dim < cfg->head_dim && (cfg->head_dim - cfg->rope_head_dim) % 64 == 0,
          "(head_dim - qk_rope_head_dim) % 64 == 0" },
        { cfg->rope_head_dim % 2 == 0 && cfg->rope_head_dim <= cfg->index_head_dim,
          "qk_rope_head_dim even and <= index_head_dim" },
        { is_pow2(cfg->index_head_dim) && cfg->index_head_dim % 32 == 0,
          "index_head_dim a power of two and % 32 == 0" },
        { ((int64_t)cfg->n_heads * cfg->head_dim) % cfg->o_groups == 0, "(num_attention_heads * head_dim) % o_groups == 0" },
        { cfg->n_hash_layers <= cfg->n_layers, "num_hash_layers <= num_hidden_layers" },
        { cfg->n_active_experts <= cfg->n_routed_experts, "num_experts_per_tok <= n_routed_experts" },
        { cfg->bos_id < cfg->vocab_size && cfg->eos_id < cfg->vocab_size, "bos/eos token ids < vocab_size" },
    };
    for (size_t i = 0; i < DSV4__ARRAY_LEN(rules); i++) {
        if (!rules[i].ok) {
            st = dsv4__fail(e, DSV4_ERR_BAD_CONFIG, "%s: inconsistent configuration: %s does not hold",
                            path, rules[i].what);
            goto out;
        }
    }
    /* variants by their published shapes */
    cfg->variant = DSV4_VARIANT_CUSTOM;
    if (cfg->dim == 4096 && cfg->n_layers == 43 && cfg->n_routed_experts == 256)
        cfg->variant = cfg->expert_fp8 ? DSV4_VARIANT_FLASH_BASE : DSV4_VARIANT_FLASH;
    else if (cfg->dim == 7168 && cfg->n_layers == 61 && cfg->n_routed_experts == 384)
        cfg->variant = DSV4_VARIANT_PRO;
out:
    json_decref(root);
    return st;
}
