/*
 * lib/graph/forward_int.h — what the sources of the forward pass share
 * (private to lib/graph): the runtime and session-state structs, the row
 * sets of a batch, and the functions one part calls in another.
 *
 *   forward.c    the runtime, the model graph, running batches
 *   kv.c         session state, compact KV storage, the window ring
 *   attention.c  compressors, the indexer and its top-k, attention
 *   moe.c        routing, the experts
 */
#ifndef DSV4_GRAPH_FORWARD_INT_H
#define DSV4_GRAPH_FORWARD_INT_H

#include "forward.h"
#include "graph.h"

typedef struct thread_buf {
    const float **kv;      /* window + compressed vectors of one query */
    float *dec;            /* decoded compressed entries [max_comp][hd] */
    float *scores;         /* indexer scores [n_ctx/4 + 1] */
    int64_t *idx;          /* [n_ctx/4 + 1] */
    float *key;            /* one decoded indexer key */
    float *att;            /* attention scores of the heads [n_heads][window + max_comp + 1] */
    void *q4;              /* one indexer query in integers (dsv4k_index_q4_query) */
} thread_buf;

/* consecutive rows [row0, row0 + n) of a row domain: positions p0.. of s */
typedef struct span {
    dsv4__state *s;
    int64_t p0, row0, n;
    float *out;            /* logits destination (logit domains), or NULL */
} span;

/* the rows of one domain in the batch being run */
typedef struct rowset {
    span *sp;
    int n_sp;
    int64_t n;
    int32_t *sp_of;        /* span of every row */
    int64_t *pos;          /* position of every row */
    int32_t *tok;          /* token of every row (TOK), next token (MTP) */
    int64_t *src;          /* logit domains: the row of TOK / MTP they read */
} rowset;

struct dsv4__rt {
    const dsv4__config *c;
    const struct dsv4__weights *w;
    dsv4__rt_opts o;
    int aq, kv_sim, fp4_sim, shared_clamp, compact;
    int simd;              /* SIMD twins of the indexer and attention allowed (kernels/ops.c) */
    int hc;
    dsv4k_pool *pool;
    dsv4k_linear_ctx *lin;
    dsv4k_gemm *gemm;      /* oneDNN route for many rows (NULL: unavailable) */
    int64_t max_comp;      /* most compressed entries one query attends */
    thread_buf *tb;
    dsv4g_graph g, gd;     /* the model; the MTP draft */
    uint8_t *arena;
    rowset rs[DSV4G_N_DOM];
    dsv4k_weight *wo_views; /* per layer (+MTP), per output group: rows of wo_a */
    int32_t *DBG;          /* [B][index_topk] selections, when debugging */
    dsv4__debug_fn debug;
    void *debug_user;
    int64_t *prof_ns;      /* per node of g, when profiling */
    void **allocs;
    int n_allocs;
    /* under a memory budget (experts.h): the cached experts the layer being
     * run selected, ascending, their slots, how many are pinned (a prefix)
     * and used; a failed read (x_fail, x_msg) fails the forward pass */
    int32_t *x_ids, *x_slots;  /* [n_routed_experts] */
    float *x1ws;               /* dsv4__experts_few_bytes: up to DSV4__XF_ROWS rows'
                                * experts at once (moe.c) */
    int x_n, x_acq, x_done;
    int x_fail;
    char x_msg[256];
};

typedef struct lstate {
    float *ring;           /* [window][hd] */
    float *ckv, *csc;      /* main compressor state [rows][coff·d] */
    float *ikv, *isc;      /* indexer compressor state [8][2·ihd] */
    uint8_t *cache;        /* compressed entries */
    uint8_t *icache;       /* indexer keys */
    int64_t cap;           /* entries the caches hold */
    int64_t n;             /* entries emitted */
} lstate;

struct dsv4__state {
    dsv4__rt *rt;
    lstate *L;             /* n_layers (+1 for MTP) */
    int mtp;
    int64_t pos;           /* tokens fed */
    float *last_x;         /* trunk streams at pos-1 (MTP input) */
    float *prev_x;         /* trunk streams at pos-2 (undoing the last position) */
    int64_t reserved;
    /* undo of one position (dsv4__state_undo_mark): what position
     * undo_pos + 1 overwrites, saved at position undo_pos (-1: no mark) */
    float *undo;
    int64_t undo_pos;
};

static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
/* rows of a compressor's running state */
static inline int comp_rows(int ratio) { return ratio == 4 ? 8 : ratio; }
/* the runtime of a run, a span's state of one layer */
static inline dsv4__rt *RT(const dsv4g_run *r) { return r->user; }
static inline lstate *span_layer(const span *sp, int64_t layer) { return &sp->s->L[layer]; }
/* a new f32 tensor of the graph */
static inline int32_t F(dsv4g_graph *g, const char *name, int dom, int64_t mult, int64_t cols)
{
    return dsv4g_new(g, name, DSV4G_F32, dom, mult, cols);
}

/* kv.c: compressed entries and indexer keys of a layer's state, stored in
 * the runtime's form (compact or f32) and read back as f32 (into buf when
 * decoded); the ring store node */
const float *dsv4__entry_get(const dsv4__rt *rt, const lstate *L, int64_t j, float *buf);
void dsv4__entry_put(const dsv4__rt *rt, lstate *L, int64_t j, float *v);
const float *dsv4__key_get(const dsv4__rt *rt, const lstate *L, int64_t j, float *buf);
void dsv4__key_put(const dsv4__rt *rt, lstate *L, int64_t j, float *v);
void dsv4__op_ring(dsv4g_run *r, const dsv4g_node *n);

/* attention.c: the attention sublayer (§5.3–5.6) of layer li on rows x
 * [dom][dim]; returns its output tensor */
int32_t dsv4__build_attention(dsv4__rt *rt, dsv4g_graph *g, int li, const dsv4__layer_w *lw, int dom, int32_t x);

/* moe.c: the MoE sublayer (§5.7), likewise */
int32_t dsv4__build_moe(dsv4__rt *rt, dsv4g_graph *g, int li, const dsv4__layer_w *lw, int dom, int32_t x);
/* moe.c: under a memory budget, start reading the experts of the hash-routed
 * layers for the batch's tokens (rt->rs) before the graph runs */
void dsv4__moe_prefetch(dsv4__rt *rt);

#endif
