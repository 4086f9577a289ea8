/*
 * lib/api/model.c — public model and model-info entry points. A model is
 * an opened checkpoint plus the weights bound from it (api_int.h).
 */
#define DSV4_ENABLE_EXPERIMENTAL /* the memory budget (docs/memory.md) */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api/api_int.h"
#include "graph/experts.h"

_Static_assert(DSV4__OPT_MEM_BUDGET == DSV4_OPT_MEM_BUDGET, "option key");
_Static_assert(DSV4__OPT_MEM_BUDGET_PERCENT == DSV4_OPT_MEM_BUDGET_PERCENT, "option key");
_Static_assert(DSV4__OPT_MEM_LOCK == DSV4_OPT_MEM_LOCK, "option key");

struct dsv4_model_info {
    dsv4__config cfg;
    int32_t loaded, has_mtp;
    int64_t params_total, params_active;
    int64_t bytes_total, bytes_by_dtype[16];
    int64_t bytes_per_token;
    /* a loaded model's memory (DSV4_INFO_RESIDENT_BYTES ..) */
    int64_t resident, budget, cache_bytes, slots, disk_per_token, hits, misses, bytes_read, locked;
};

static dsv4_status info_build(const dsv4__config *cfg, int loaded, int has_mtp, dsv4_model_info **out);

/* The routed experts (most of the bytes) stay mapped: a model larger than
 * the memory loads, then reads from the disk at every token. Say so at
 * load, before the weights are bound (DSV4_OPT_RESIDENT copies some). */
static void warn_memory(const dsv4_model *m, const char *dir)
{
    int64_t phys = dsv4__phys_mem_bytes(), bytes = 0;
    dsv4_model_info *info = NULL;
    if (phys <= 0 || info_build(&m->ck->cfg, 1, m->ck->has_mtp, &info)) return;
    dsv4_model_info_get_i64(info, DSV4_INFO_BYTES_TOTAL, &bytes);
    dsv4_model_info_free(info);
    if (bytes <= phys) return;
    char b1[32], b2[32];
    dsv4__logf(&m->ck->log, DSV4_LOG_WARN,
               "%s: the weights (%s) exceed the physical memory (%s%s): every token will read weights from the "
               "disk, seconds to minutes each", dir, dsv4__fmt_bytes(b1, sizeof b1, bytes),
               dsv4__fmt_bytes(b2, sizeof b2, phys), getenv("DSV4_PHYS_MEM_LIMIT") ? ", DSV4_PHYS_MEM_LIMIT" : "");
}

/* the memory budget of the options in bytes (0: none); -1 when only a
 * percentage is given and the physical memory is unknown */
static int64_t mem_budget(const dsv4_options *opts)
{
    int64_t bytes = dsv4__opt_i64(opts, DSV4_OPT_MEM_BUDGET), pct = dsv4__opt_i64(opts, DSV4_OPT_MEM_BUDGET_PERCENT);
    if (pct > 0) {
        int64_t phys = dsv4__phys_mem_bytes();
        if (phys <= 0) return -1;
        int64_t b = phys / 100 * pct;
        if (!bytes || b < bytes) bytes = b;
    }
    return bytes;
}

/* open and check the checkpoint, bind its weights (the work of dsv4_model_load) */
static dsv4_status model_open(const char *dir, const dsv4_options *opts, dsv4_model **out, dsv4__err *e)
{
    int64_t budget = mem_budget(opts);
    if (budget < 0)
        return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "%s: a memory budget as a percentage of the physical "
                          "memory, which is unknown here (give DSV4_OPT_MEM_BUDGET in bytes)", dir);
    dsv4_options nopf;
    if (budget && opts && dsv4__opt_i64(opts, DSV4_OPT_PREFETCH)) {
        /* the experts are read into the cache, never through the mapping */
        nopf = *opts;
        dsv4_options_set_i64(&nopf, DSV4_OPT_PREFETCH, 0);
        opts = &nopf;
    }
    dsv4_model *m = dsv4__calloc(1, sizeof *m);
    if (!m) return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory");
    dsv4__ref_init(&m->ref);
    dsv4_status st = dsv4__checkpoint_open(dir, opts, &m->ck, e);
    if (!st && !budget) warn_memory(m, dir); /* before the copies DSV4_OPT_RESIDENT makes */
    int resident = budget > 0 || dsv4__opt_i64(opts, DSV4_OPT_RESIDENT) != 0;
    if (!st) st = dsv4__weights_bind(m->ck, resident, &m->weights, e);
    if (!st && budget) {
        st = dsv4__xcache_create(m->ck, m->weights, budget, &m->weights->xc, e);
        if (st) {
            char msg[sizeof e->msg];
            snprintf(msg, sizeof msg, "%s", e->msg);
            dsv4__fail(e, st, "%s: %s", dir, msg);
        }
    }
    if (!st && dsv4__opt_i64(opts, DSV4__OPT_MEM_LOCK)) {
        int en = 0, en2 = 0;
        int64_t want = m->weights->owned_bytes, got = dsv4__weights_lock(m->weights, &en);
        if (m->weights->xc && !en) {
            dsv4__xstats xs;
            dsv4__xcache_stats(m->weights->xc, &xs);
            want += xs.slots * xs.slot_bytes;
            m->locked_cache = dsv4__xcache_lock(m->weights->xc, &en2);
        }
        if (en || en2) {
            char b1[32], b2[32];
            dsv4__logf(&m->ck->log, DSV4_LOG_WARN, "%s: locked %s of %s of weights in memory: mlock: %s%s", dir,
                       dsv4__fmt_bytes(b1, sizeof b1, got + m->locked_cache), dsv4__fmt_bytes(b2, sizeof b2, want),
                       strerror(en ? en : en2), (en ? en : en2) == ENOMEM || (en ? en : en2) == EPERM ?
                       " (RLIMIT_MEMLOCK: raise it, e.g. ulimit -l, or run with CAP_IPC_LOCK)" : "");
        }
    }
    dsv4_progress_fn progress = opts ? opts->progress : NULL;
    if (!st && progress && progress(opts->progress_user, 1.0) != 0)
        st = dsv4__fail(e, DSV4_ERR_ABORTED, "%s: load aborted by the progress callback", dir);
    if (st) {
        dsv4__model_release(m);
        return st;
    }
    const dsv4__checkpoint *ck = m->ck;
    dsv4__logf(&ck->log, DSV4_LOG_INFO, "%s: %d shards, %lld tensors, MTP %s, %.1f MiB of weights resident", dir,
               ck->n_shards, (long long)ck->n_tensors, ck->has_mtp ? "on" : "off",
               (double)m->weights->resident_bytes / (1 << 20));
    if (m->weights->xc) {
        dsv4__xstats xs;
        dsv4__xcache_stats(m->weights->xc, &xs);
        char b1[32], b2[32], b3[32];
        dsv4__logf(&ck->log, DSV4_LOG_INFO, "%s: memory budget %s: %s resident, expert cache of %lld slots of %s "
                   "(%lld of %lld experts)%s", dir, dsv4__fmt_bytes(b1, sizeof b1, xs.budget),
                   dsv4__fmt_bytes(b2, sizeof b2, xs.fixed_bytes), (long long)xs.slots,
                   dsv4__fmt_bytes(b3, sizeof b3, xs.slot_bytes), (long long)xs.slots, (long long)xs.n_experts,
                   xs.direct ? ", direct reads" : ", buffered reads (no O_DIRECT here)");
    }
    *out = m;
    return DSV4_OK;
}

dsv4_status dsv4_model_load(const char *path, const dsv4_options *opts, dsv4_model **out, char **err_msg)
{
    dsv4__err e = { 0, "" };
    if (err_msg) *err_msg = NULL;
    if (out) *out = NULL;
    if (!path || !out) {
        dsv4__fail(&e, DSV4_ERR_INVALID_ARGUMENT, "dsv4_model_load: %s is NULL", !path ? "path" : "out");
        return dsv4__err_out(&e, err_msg);
    }
    dsv4_status st = model_open(path, opts, out, &e);
    if (st) {
        dsv4__log lg = dsv4__opt_log(opts);
        dsv4__logf(&lg, DSV4_LOG_ERROR, "%s", e.msg);
        return dsv4__err_out(&e, err_msg);
    }
    return DSV4_OK;
}

const char *dsv4_model_tokenizer_path(const dsv4_model *model)
{
    return model ? model->ck->tokenizer_json : NULL;
}

void dsv4__model_release(dsv4_model *m)
{
    if (!m || !dsv4__ref_put(&m->ref)) return;
    if (m->weights) dsv4__xcache_free(m->weights->xc);
    dsv4__weights_free(m->weights);
    dsv4__checkpoint_close(m->ck);
    dsv4__free(m);
}

void dsv4_model_free(dsv4_model *model)
{
    dsv4__model_release(model);
}

const dsv4__config *dsv4__model_config(const dsv4_model *m) { return &m->ck->cfg; }
const struct dsv4__weights *dsv4__model_weights(const dsv4_model *m) { return m->weights; }

dsv4_status dsv4__model_rt_create(const dsv4_model *m, const dsv4__rt_opts *o, dsv4__rt **out, dsv4__err *e)
{
    return dsv4__rt_create(&m->ck->cfg, m->weights, o, out, e);
}

typedef struct { struct dsv4_model_info *info; } acc_ctx;

static int accumulate(void *user, const dsv4__expected *x)
{
    struct dsv4_model_info *in = ((acc_ctx *)user)->info;
    const dsv4__config *c = &in->cfg;
    int64_t bytes = dsv4__tensor_bytes(x->dtype, x->ndim, x->shape);
    if (bytes < 0) return 0;
    int64_t elems = x->shape[0] * (x->ndim == 2 ? x->shape[1] : 1);
    int fp4 = x->dtype == DSV4__DT_I8;
    int64_t params = (x->role & DSV4__ROLE_SCALE) ? 0 : (fp4 ? 2 * elems : elems);
    int d = x->dtype == DSV4__DT_I8 ? 0 : x->dtype; /* slot 0 = packed FP4 */
    in->bytes_by_dtype[d] += bytes;
    in->bytes_total += bytes;
    in->params_total += params;
    if (x->role & DSV4__ROLE_MTP) return 0; /* not used per decoded token */
    if (x->role & DSV4__ROLE_EXPERT) {
        /* n_active of n_routed experts per token */
        in->params_active += params / c->n_routed_experts * c->n_active_experts;
        in->bytes_per_token += bytes / c->n_routed_experts * c->n_active_experts;
    } else if (x->role & DSV4__ROLE_EMBED) {
        in->params_active += x->shape[1];
        in->bytes_per_token += bytes / x->shape[0];
    } else if (x->role & DSV4__ROLE_HASH) {
        in->bytes_per_token += (int64_t)c->n_active_experts * 8; /* one row */
    } else {
        in->params_active += params;
        in->bytes_per_token += bytes;
    }
    return 0;
}

static dsv4_status info_build(const dsv4__config *cfg, int loaded, int has_mtp, dsv4_model_info **out)
{
    struct dsv4_model_info *in = dsv4__calloc(1, sizeof *in);
    if (!in) return DSV4_ERR_OUT_OF_MEMORY;
    in->cfg = *cfg;
    in->loaded = loaded;
    in->has_mtp = has_mtp;
    acc_ctx a = { in };
    dsv4__expected_tensors(cfg, has_mtp, accumulate, &a);
    *out = in;
    return DSV4_OK;
}

dsv4_status dsv4_model_info_from_dir(const char *path, const dsv4_options *opts, dsv4_model_info **out,
                                     char **err_msg)
{
    (void)opts;
    dsv4__err e = { 0, "" };
    if (err_msg) *err_msg = NULL;
    if (out) *out = NULL;
    if (!path || !out) {
        dsv4__fail(&e, DSV4_ERR_INVALID_ARGUMENT, "dsv4_model_info_from_dir: %s is NULL", !path ? "path" : "out");
        return dsv4__err_out(&e, err_msg);
    }
    size_t n = strlen(path);
    char *cp = dsv4__malloc(n + 13);
    if (!cp) {
        dsv4__fail(&e, DSV4_ERR_OUT_OF_MEMORY, "out of memory");
        return dsv4__err_out(&e, err_msg);
    }
    memcpy(cp, path, n);
    memcpy(cp + n, "/config.json", 13);
    char *text = NULL;
    size_t len = 0;
    dsv4__config cfg;
    dsv4_status st = dsv4__read_file(cp, &text, &len, &e);
    if (!st) st = dsv4__config_parse(text, len, cp, &cfg, &e);
    dsv4__free(text);
    dsv4__free(cp);
    if (!st) {
        st = info_build(&cfg, 0, cfg.n_mtp_layers > 0, out);
        if (st) dsv4__fail(&e, st, "out of memory");
    }
    return st ? dsv4__err_out(&e, err_msg) : DSV4_OK;
}

dsv4_status dsv4_model_get_info(const dsv4_model *model, dsv4_model_info **out)
{
    if (out) *out = NULL;
    if (!model || !out) return DSV4_ERR_INVALID_ARGUMENT;
    dsv4_status st = info_build(&model->ck->cfg, 1, model->ck->has_mtp, out);
    if (st) return st;
    struct dsv4_model_info *in = *out;
    const struct dsv4__weights *w = model->weights;
    in->resident = w->owned_bytes;
    in->locked = w->locked_bytes + model->locked_cache;
    if (w->xc) {
        dsv4__xstats xs;
        dsv4__xcache_stats(w->xc, &xs);
        const dsv4__config *c = &model->ck->cfg;
        double miss = xs.n_experts > 0 ? 1.0 - (double)xs.slots / (double)xs.n_experts : 0.0;
        in->budget = xs.budget;
        in->cache_bytes = xs.slots * xs.slot_bytes;
        in->slots = xs.slots;
        in->disk_per_token = (int64_t)((double)c->n_layers * c->n_active_experts * (double)xs.expert_bytes *
                                       (miss > 0 ? miss : 0.0));
        in->hits = xs.hits;
        in->misses = xs.misses;
        in->bytes_read = xs.bytes_read;
    }
    return DSV4_OK;
}

void dsv4_model_info_free(dsv4_model_info *info)
{
    dsv4__free(info);
}

static dsv4_layer_type layer_type(const dsv4__config *c, int l)
{
    int r = c->compress_ratios[l];
    return r == 0 ? DSV4_LAYER_SWA : r == 4 ? DSV4_LAYER_CSA : DSV4_LAYER_HCA;
}

/* KV bytes of one stored entry (main) and one indexer key, per numerics */
static void entry_bytes(const dsv4__config *c, int numerics, int64_t *entry, int64_t *ikey)
{
    int compact = numerics != DSV4_NUMERICS_FLOAT;
    *entry = dsv4__kv_entry_bytes(c, 0, compact);
    *ikey = dsv4__kv_entry_bytes(c, 1, compact);
}

/* KV bytes at n_ctx tokens; -1 when the count does not fit in int64 */
static int64_t kv_bytes_at(const dsv4__config *c, int numerics, int64_t n_ctx)
{
    int64_t entry, ikey, total = 0;
    entry_bytes(c, numerics, &entry, &ikey);
    for (int l = 0; l < c->n_layers; l++) {
        int r = c->compress_ratios[l];
        int64_t t;
        if (r <= 0) continue;
        if (__builtin_mul_overflow(n_ctx / r, r == 4 ? entry + ikey : entry, &t) ||
            __builtin_add_overflow(total, t, &total))
            return -1;
    }
    return total;
}

/* fixed per session: window rings and compressor running states */
static int64_t fixed_state_bytes(const dsv4__config *c, int numerics, int has_mtp)
{
    int64_t entry, ikey, total = 0;
    entry_bytes(c, numerics, &entry, &ikey);
    int nl = c->n_layers + (has_mtp ? c->n_mtp_layers : 0);
    total += (int64_t)nl * c->window * entry;
    for (int l = 0; l < c->n_layers; l++) {
        int64_t r = c->compress_ratios[l];
        if (r == 4) {
            total += 2 * (2 * r) * (2 * (int64_t)c->head_dim) * 4;
            total += 2 * (2 * r) * (2 * (int64_t)c->index_head_dim) * 4;
        } else if (r > 0) {
            total += 2 * r * (int64_t)c->head_dim * 4;
        }
    }
    return total;
}

/* scratch of a context of n_ctx positions: activations of its default
 * DSV4_OPT_MAX_BATCH tokens */
static int64_t scratch_bytes(const dsv4__config *c, int64_t n_ctx)
{
    int64_t per_tok = 16 * (int64_t)c->dim + 3 * (int64_t)c->n_heads * c->head_dim + c->vocab_size +
                      2 * (int64_t)c->moe_inter_dim + c->q_lora_rank;
    /* and the routed experts of a few rows at once (graph/moe.c) */
    return dsv4__default_chunk(n_ctx) * per_tok * 4 + dsv4__experts_few_bytes(c);
}

dsv4_status dsv4_model_info_get_i64(const dsv4_model_info *info, dsv4_info_key key, int64_t *value)
{
    if (!info || !value) return DSV4_ERR_INVALID_ARGUMENT;
    const dsv4__config *c = &info->cfg;
    int64_t v, n[4] = { 0, 0, 0, 0 };
    for (int l = 0; l < c->n_layers; l++) n[layer_type(c, l)]++;
    switch (key) {
    case DSV4_INFO_VARIANT: v = c->variant; break;
    case DSV4_INFO_VOCAB_SIZE: v = c->vocab_size; break;
    case DSV4_INFO_HIDDEN_SIZE: v = c->dim; break;
    case DSV4_INFO_N_LAYERS: v = c->n_layers; break;
    case DSV4_INFO_N_MTP_LAYERS: v = c->n_mtp_layers; break;
    case DSV4_INFO_N_HEADS: v = c->n_heads; break;
    case DSV4_INFO_HEAD_DIM: v = c->head_dim; break;
    case DSV4_INFO_N_ROUTED_EXPERTS: v = c->n_routed_experts; break;
    case DSV4_INFO_N_ACTIVE_EXPERTS: v = c->n_active_experts; break;
    case DSV4_INFO_MOE_INTER_SIZE: v = c->moe_inter_dim; break;
    case DSV4_INFO_WINDOW: v = c->window; break;
    case DSV4_INFO_INDEX_TOPK: v = c->index_topk; break;
    case DSV4_INFO_N_SWA_LAYERS: v = n[DSV4_LAYER_SWA]; break;
    case DSV4_INFO_N_CSA_LAYERS: v = n[DSV4_LAYER_CSA]; break;
    case DSV4_INFO_N_HCA_LAYERS: v = n[DSV4_LAYER_HCA]; break;
    case DSV4_INFO_MAX_POSITION: v = c->max_position; break;
    case DSV4_INFO_PARAMS_TOTAL: v = info->params_total; break;
    case DSV4_INFO_PARAMS_ACTIVE: v = info->params_active; break;
    case DSV4_INFO_BYTES_TOTAL: v = info->bytes_total; break;
    case DSV4_INFO_BYTES_BF16: v = info->bytes_by_dtype[DSV4__DT_BF16]; break;
    case DSV4_INFO_BYTES_F32: v = info->bytes_by_dtype[DSV4__DT_F32]; break;
    case DSV4_INFO_BYTES_F8: v = info->bytes_by_dtype[DSV4__DT_F8_E4M3]; break;
    case DSV4_INFO_BYTES_E8M0: v = info->bytes_by_dtype[DSV4__DT_F8_E8M0]; break;
    case DSV4_INFO_BYTES_FP4: v = info->bytes_by_dtype[0]; break;
    case DSV4_INFO_BYTES_I64: v = info->bytes_by_dtype[DSV4__DT_I64]; break;
    case DSV4_INFO_BYTES_PER_TOKEN: v = info->bytes_per_token; break;
    case DSV4_INFO_KV_BYTES_PER_1K: v = kv_bytes_at(c, DSV4_NUMERICS_REFERENCE, 1024); break;
    case DSV4_INFO_HAS_MTP: v = info->has_mtp; break;
    case DSV4_INFO_WEIGHTS_LOADED: v = info->loaded; break;
    case DSV4_INFO_PHYSICAL_MEMORY: v = dsv4__phys_mem_bytes(); break;
    case DSV4_INFO_RESIDENT_BYTES: v = info->resident; break;
    case DSV4_INFO_MEM_BUDGET: v = info->budget; break;
    case DSV4_INFO_EXPERT_CACHE_BYTES: v = info->cache_bytes; break;
    case DSV4_INFO_EXPERT_CACHE_SLOTS: v = info->slots; break;
    case DSV4_INFO_DISK_BYTES_PER_TOKEN: v = info->disk_per_token; break;
    case DSV4_INFO_EXPERT_HITS: v = info->hits; break;
    case DSV4_INFO_EXPERT_MISSES: v = info->misses; break;
    case DSV4_INFO_DISK_BYTES_READ: v = info->bytes_read; break;
    case DSV4_INFO_LOCKED_BYTES: v = info->locked; break;
    default: return DSV4_ERR_UNKNOWN_OPTION;
    }
    *value = v;
    return DSV4_OK;
}

dsv4_status dsv4_model_info_layer_type(const dsv4_model_info *info, int32_t layer, dsv4_layer_type *type)
{
    if (!info || !type || layer < 0 || layer >= info->cfg.n_layers + info->cfg.n_mtp_layers)
        return DSV4_ERR_INVALID_ARGUMENT;
    *type = layer_type(&info->cfg, layer);
    return DSV4_OK;
}

dsv4_status dsv4_model_info_memory(const dsv4_model_info *info, int64_t n_ctx, dsv4_numerics numerics,
                                   int64_t *kv_bytes, int64_t *ram_bytes)
{
    if (!info || n_ctx < 0 || numerics < 0 || numerics > DSV4_NUMERICS_FLOAT) return DSV4_ERR_INVALID_ARGUMENT;
    if (numerics == DSV4_NUMERICS_DEFAULT) numerics = DSV4_NUMERICS_REFERENCE;
    int64_t kv = kv_bytes_at(&info->cfg, numerics, n_ctx), ram;
    if (kv < 0 || __builtin_add_overflow(info->bytes_total, kv, &ram) ||
        __builtin_add_overflow(ram, fixed_state_bytes(&info->cfg, numerics, info->has_mtp), &ram) ||
        __builtin_add_overflow(ram, scratch_bytes(&info->cfg, n_ctx), &ram))
        return DSV4_ERR_INVALID_ARGUMENT; /* n_ctx so large that a byte count overflows */
    if (kv_bytes) *kv_bytes = kv;
    if (ram_bytes) *ram_bytes = ram;
    return DSV4_OK;
}

static const char *variant_name(int v)
{
    switch (v) {
    case DSV4_VARIANT_FLASH: return "DeepSeek-V4-Flash";
    case DSV4_VARIANT_PRO: return "DeepSeek-V4-Pro";
    case DSV4_VARIANT_FLASH_BASE: return "DeepSeek-V4-Flash-Base";
    case DSV4_VARIANT_FLASH_0731: return "DeepSeek-V4-Flash-0731";
    default: return "custom";
    }
}

dsv4_status dsv4_model_info_to_json(const dsv4_model_info *info, char **json)
{
    if (json) *json = NULL;
    if (!info || !json) return DSV4_ERR_INVALID_ARGUMENT;
    static const struct { int key; const char *name; } keys[] = {
        { DSV4_INFO_VOCAB_SIZE, "vocab_size" }, { DSV4_INFO_HIDDEN_SIZE, "hidden_size" },
        { DSV4_INFO_N_LAYERS, "n_layers" }, { DSV4_INFO_N_MTP_LAYERS, "n_mtp_layers" },
        { DSV4_INFO_N_HEADS, "n_heads" }, { DSV4_INFO_HEAD_DIM, "head_dim" },
        { DSV4_INFO_N_ROUTED_EXPERTS, "n_routed_experts" }, { DSV4_INFO_N_ACTIVE_EXPERTS, "n_active_experts" },
        { DSV4_INFO_MOE_INTER_SIZE, "moe_intermediate_size" }, { DSV4_INFO_WINDOW, "sliding_window" },
        { DSV4_INFO_INDEX_TOPK, "index_topk" }, { DSV4_INFO_N_SWA_LAYERS, "n_swa_layers" },
        { DSV4_INFO_N_CSA_LAYERS, "n_csa_layers" }, { DSV4_INFO_N_HCA_LAYERS, "n_hca_layers" },
        { DSV4_INFO_MAX_POSITION, "max_position_embeddings" }, { DSV4_INFO_PARAMS_TOTAL, "params_total" },
        { DSV4_INFO_PARAMS_ACTIVE, "params_active" }, { DSV4_INFO_BYTES_TOTAL, "bytes_total" },
        { DSV4_INFO_BYTES_BF16, "bytes_bf16" }, { DSV4_INFO_BYTES_F32, "bytes_f32" },
        { DSV4_INFO_BYTES_F8, "bytes_f8_e4m3" }, { DSV4_INFO_BYTES_E8M0, "bytes_f8_e8m0" },
        { DSV4_INFO_BYTES_FP4, "bytes_fp4" }, { DSV4_INFO_BYTES_I64, "bytes_i64" },
        { DSV4_INFO_BYTES_PER_TOKEN, "bytes_per_token" }, { DSV4_INFO_KV_BYTES_PER_1K, "kv_bytes_per_1k" },
        { DSV4_INFO_HAS_MTP, "has_mtp" }, { DSV4_INFO_WEIGHTS_LOADED, "weights_loaded" },
        { DSV4_INFO_PHYSICAL_MEMORY, "physical_memory" }, { DSV4_INFO_RESIDENT_BYTES, "resident_bytes" },
        { DSV4_INFO_MEM_BUDGET, "mem_budget" }, { DSV4_INFO_EXPERT_CACHE_BYTES, "expert_cache_bytes" },
        { DSV4_INFO_EXPERT_CACHE_SLOTS, "expert_cache_slots" },
        { DSV4_INFO_DISK_BYTES_PER_TOKEN, "disk_bytes_per_token" }, { DSV4_INFO_EXPERT_HITS, "expert_hits" },
        { DSV4_INFO_EXPERT_MISSES, "expert_misses" }, { DSV4_INFO_DISK_BYTES_READ, "disk_bytes_read" },
        { DSV4_INFO_LOCKED_BYTES, "locked_bytes" },
    };
    json_t *o = json_object(), *sched = json_array();
    int bad = !o || !sched;
    bad |= json_object_set_new(o, "variant", json_string(variant_name(info->cfg.variant)));
    for (size_t i = 0; i < DSV4__ARRAY_LEN(keys) && !bad; i++) {
        int64_t v = 0;
        dsv4_model_info_get_i64(info, (dsv4_info_key)keys[i].key, &v);
        bad |= json_object_set_new(o, keys[i].name, json_integer(v));
    }
    for (int l = 0; l < info->cfg.n_layers + info->cfg.n_mtp_layers && !bad; l++) {
        static const char *tn[] = { "?", "swa", "csa", "hca" };
        json_t *L = json_pack("{s:i, s:s, s:i, s:b}", "layer", l, "type", tn[layer_type(&info->cfg, l)],
                              "compress_ratio", info->cfg.compress_ratios[l], "mtp", l >= info->cfg.n_layers);
        bad |= !L || json_array_append_new(sched, L);
    }
    bad |= json_object_set(o, "layers", sched);
    json_t *mem = json_object();
    bad |= !mem;
    static const int64_t ctxs[] = { 4096, 65536, 1048576 };
    for (size_t i = 0; i < 3 && !bad; i++) {
        int64_t kv = 0, ram = 0;
        dsv4_model_info_memory(info, ctxs[i], DSV4_NUMERICS_REFERENCE, &kv, &ram);
        json_t *e = json_pack("{s:I, s:I, s:I}", "n_ctx", (json_int_t)ctxs[i], "kv_bytes", (json_int_t)kv,
                              "ram_bytes", (json_int_t)ram);
        char k[24];
        snprintf(k, sizeof k, "%lld", (long long)ctxs[i]);
        bad |= !e || json_object_set_new(mem, k, e);
    }
    if (!bad) bad |= json_object_set(o, "memory_reference", mem);
    char *s = bad ? NULL : json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(mem);
    json_decref(sched);
    json_decref(o);
    if (!s) return DSV4_ERR_OUT_OF_MEMORY;
    *json = dsv4__strdup(s);
    free(s);
    return *json ? DSV4_OK : DSV4_ERR_OUT_OF_MEMORY;
}
