/*
 * lib/graph/weights.h — the forward pass's view of an opened checkpoint
 * (internal). Quantised matrices stay in the read-only mapping as
 * dsv4k_weight descriptors; small vectors (norm weights, mHC mixes, sinks,
 * biases, ape) are held as aligned f32; tid2eid as int32.
 */
#ifndef DSV4_GRAPH_WEIGHTS_H
#define DSV4_GRAPH_WEIGHTS_H

#include "loader/loader.h"
#include "kernels.h"

typedef struct dsv4__compressor_w {
    dsv4k_weight wkv, wgate;   /* [coff·d, dim], BF16 */
    const float *ape;          /* [ratio][coff·d] */
    const float *norm;         /* [d] */
    int32_t ratio, coff, d;
} dsv4__compressor_w;

typedef struct dsv4__layer_w {
    int32_t ratio;             /* 0 SWA, 4 CSA, other > 0 HCA */
    int32_t is_mtp;
    int32_t hash;              /* routed by tid2eid */
    const float *hc_fn[2], *hc_base[2], *hc_scale[2]; /* [0] attention site, [1] FFN site */
    const float *attn_norm, *ffn_norm, *q_norm, *kv_norm;
    dsv4k_weight wq_a, wq_b, wkv, wo_a, wo_b;
    const float *sink;         /* [n_heads] */
    dsv4__compressor_w comp;   /* ratio > 0 */
    dsv4k_weight iwq_b, iwproj; /* ratio == 4 */
    dsv4__compressor_w icomp;
    dsv4k_weight gate;         /* [n_experts, dim] BF16 */
    const float *gate_bias;    /* learned layers */
    int32_t *tid2eid;          /* hash layers: [vocab][n_active] */
    dsv4k_weight *w1, *w2, *w3; /* per routed expert */
    dsv4k_weight sw1, sw2, sw3; /* shared expert */
    const float *rope;         /* frequency table of this layer */
} dsv4__layer_w;

struct dsv4__weights {
    int32_t n_layers;
    dsv4__layer_w *layers;     /* n_layers */
    dsv4__layer_w *mtp;        /* NULL without MTP */
    dsv4k_weight embed, head;  /* BF16 [vocab, dim] */
    const float *norm, *hc_head_fn, *hc_head_base, *hc_head_scale;
    /* MTP wrapper */
    dsv4k_weight e_proj, h_proj;
    const float *enorm, *hnorm, *mtp_norm, *mtp_hc_fn, *mtp_hc_base, *mtp_hc_scale;
    float *rope_plain, *rope_comp; /* [rope_dim/2] each */
    void **owned;
    size_t *owned_sz;         /* their sizes */
    int64_t locked_bytes;      /* of them locked in memory (dsv4__weights_lock) */
    int64_t n_owned, cap_owned;
    int64_t resident_bytes;    /* copied out of the mapping (resident) */
    int64_t owned_bytes;       /* all owned memory (resident copies, vectors, tables) */
    struct dsv4__xcache *xc;   /* routed-expert cache under a memory budget (experts.h), or NULL;
                                * set and freed by the model (lib/api) */
};

/* Bind the tensors of an opened (and validated) checkpoint: the MTP block
 * when ck->has_mtp. The weights point into the checkpoint's mappings, so it
 * must outlive them; with `resident`, the linear layers every token reads
 * (all but the routed experts and the embedding) are copied into owned
 * anonymous memory instead (DSV4_OPT_RESIDENT; resident_bytes says how much). */
dsv4_status dsv4__weights_bind(const dsv4__checkpoint *ck, int resident, struct dsv4__weights **out, dsv4__err *e);
void dsv4__weights_free(struct dsv4__weights *w);
/* mlock the owned memory (DSV4_OPT_MEM_LOCK): bytes locked (locked_bytes);
 * at the first refusal stops and returns what was locked, *err_no its errno */
int64_t dsv4__weights_lock(struct dsv4__weights *w, int *err_no);

#endif
