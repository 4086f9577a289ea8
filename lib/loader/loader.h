/*
 * lib/loader/loader.h — config.json, safetensors shards (read-only mmap) and
 * the tensor table of a DeepSeek-V4 checkpoint (internal).
 *
 * The loader is a pure reader: it opens, maps and validates a checkpoint
 * directory and answers tensor look-ups. It knows nothing of the forward
 * pass (lib/graph binds its weights from a checkpoint) or of the public
 * objects (lib/api: a dsv4_model is a checkpoint plus its bound weights).
 * Spec: ../shared/spec/architecture.md §1–3.
 */
#ifndef DSV4_LOADER_H
#define DSV4_LOADER_H

#include "core/core.h"

#define DSV4__MAX_LAYERS 256

/* Parsed and validated config.json (HF key names noted). */
typedef struct dsv4__config {
    int32_t vocab_size;          /* vocab_size */
    int32_t dim;                 /* hidden_size */
    int32_t n_layers;            /* num_hidden_layers */
    int32_t n_mtp_layers;        /* num_nextn_predict_layers (0 or 1 supported) */
    int32_t n_heads;             /* num_attention_heads */
    int32_t head_dim;            /* head_dim */
    int32_t rope_head_dim;       /* qk_rope_head_dim */
    int32_t q_lora_rank;         /* q_lora_rank */
    int32_t o_groups;            /* o_groups */
    int32_t o_lora_rank;         /* o_lora_rank */
    int32_t window;              /* sliding_window */
    int32_t index_n_heads;       /* index_n_heads */
    int32_t index_head_dim;      /* index_head_dim */
    int32_t index_topk;          /* index_topk */
    int32_t n_routed_experts;    /* n_routed_experts */
    int32_t n_shared_experts;    /* n_shared_experts (must be 1) */
    int32_t n_active_experts;    /* num_experts_per_tok */
    int32_t moe_inter_dim;       /* moe_intermediate_size */
    int32_t n_hash_layers;       /* num_hash_layers */
    int32_t hc_mult;             /* hc_mult (must be 4) */
    int32_t hc_sinkhorn_iters;   /* hc_sinkhorn_iters */
    int32_t bos_id, eos_id;      /* bos_token_id, eos_token_id */
    int32_t compress_ratios[DSV4__MAX_LAYERS + 1]; /* n_layers + n_mtp_layers entries */
    double rope_theta;           /* rope_theta (ratio-0 layers) */
    double compress_rope_theta;  /* compress_rope_theta (ratio>0 layers) */
    double rope_factor;          /* rope_scaling.factor */
    double beta_fast, beta_slow; /* rope_scaling.beta_fast / beta_slow */
    int64_t original_seq_len;    /* rope_scaling.original_max_position_embeddings */
    int64_t max_position;        /* max_position_embeddings */
    double norm_eps;             /* rms_norm_eps */
    double hc_eps;               /* hc_eps */
    double route_scale;          /* routed_scaling_factor */
    double swiglu_limit;         /* swiglu_limit (0 = none) */
    int32_t expert_fp8;          /* 1: routed experts FP8 (V4-Flash-Base), 0: FP4 */
    int32_t scale_f32;           /* 1: FP8 block scales stored F32 (Flash-Base), 0: E8M0 */
    int32_t variant;             /* dsv4_variant */
} dsv4__config;

/* safetensors dtypes the loader knows */
enum dsv4__dtype {
    DSV4__DT_BF16 = 1,
    DSV4__DT_F32 = 2,
    DSV4__DT_F8_E4M3 = 3,
    DSV4__DT_F8_E8M0 = 4,
    DSV4__DT_I8 = 5,     /* packed FP4 e2m1 for expert weights */
    DSV4__DT_I64 = 6,
    DSV4__DT_F16 = 7,    /* known, not used by the model */
    DSV4__DT_I32 = 8,
    DSV4__DT_U8 = 9
};
const char *dsv4__dtype_name(int dtype);
int dsv4__dtype_size(int dtype);

typedef struct dsv4__tensor {
    const char *name;
    int32_t dtype;          /* enum dsv4__dtype */
    int32_t ndim;
    int64_t shape[4];
    const uint8_t *data;    /* inside the shard's read-only mapping */
    uint64_t nbytes;
    int32_t shard;          /* index into the checkpoint's shards */
    uint64_t offset;        /* byte offset of data inside the shard file */
} dsv4__tensor;

typedef struct dsv4__shard {
    char *path;
    const uint8_t *map;     /* whole file, PROT_READ */
    uint64_t size;
} dsv4__shard;

/* An opened checkpoint directory: config, mapped shards, tensor table. */
typedef struct dsv4__checkpoint {
    dsv4__log log;
    char *dir;
    dsv4__config cfg;
    dsv4__shard *shards;
    int32_t n_shards;
    dsv4__tensor *tensors;  /* sorted by name */
    int64_t n_tensors;
    int32_t has_mtp;        /* MTP tensors present and checked (DSV4_OPT_LOAD_MTP) */
    char *tokenizer_json;   /* path or NULL */
    char *tokenizer_config_json;
} dsv4__checkpoint;

/* Parse config.json text; validates fields and consistency (spec §1, §7.1). */
dsv4_status dsv4__config_parse(const char *json_text, size_t len, const char *path,
                               dsv4__config *cfg, dsv4__err *e);

/* Tensor lookup by exact name (binary search); NULL when absent. */
const dsv4__tensor *dsv4__checkpoint_tensor(const dsv4__checkpoint *ck, const char *name);


/* ---- the tensor table a config implies (lib/loader/tensors.c) ---- */
enum {
    DSV4__ROLE_SCALE = 1,   /* a quantisation scale (not a parameter) */
    DSV4__ROLE_EXPERT = 2,  /* a routed expert's tensor */
    DSV4__ROLE_HASH = 4,    /* hash-routing table */
    DSV4__ROLE_MTP = 8,     /* part of the MTP block */
    DSV4__ROLE_EMBED = 16   /* the embedding table (one row read per token) */
};
typedef struct dsv4__expected {
    char name[96];
    int32_t dtype;
    int32_t role;
    int32_t ndim;
    int64_t shape[2];
} dsv4__expected;
/* Called once per expected tensor; return non-zero to stop. */
typedef int (*dsv4__expect_fn)(void *user, const dsv4__expected *t);
/* Enumerate the tensors of `c` (MTP block included when with_mtp). Returns 1 if stopped. */
int dsv4__expected_tensors(const dsv4__config *c, int with_mtp, dsv4__expect_fn fn, void *user);
/* Bytes of a tensor of this dtype and shape; -1 on overflow or unknown dtype. */
int64_t dsv4__tensor_bytes(int dtype, int ndim, const int64_t *shape);

/* Open, map and validate a checkpoint directory: config.json, the shards
 * and every tensor against the table the config implies. The progress
 * callback of opts sees fractions up to 0.9 (one step per shard); the rest
 * is the caller's (binding). */
dsv4_status dsv4__checkpoint_open(const char *dir, const dsv4_options *opts, dsv4__checkpoint **out, dsv4__err *e);
/* Unmap and free (NULL is a no-op). */
void dsv4__checkpoint_close(dsv4__checkpoint *ck);
/* Read a small file (JSON) whole, NUL-terminated; free with dsv4__free. */
dsv4_status dsv4__read_file(const char *path, char **out, size_t *len, dsv4__err *e);

#endif
