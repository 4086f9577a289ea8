/*
 * lib/graph/graph.h — the graph executor (internal).
 *
 * A graph is an ordered list of nodes (operators) over typed 2-D tensors.
 * It is built once per context for batches of up to a fixed number of rows
 * and planned once: every tensor that owns storage gets an offset in one
 * scratch arena, tensors whose lifetimes do not overlap share bytes. A run
 * binds the row counts of the batch at hand (any count up to the planned
 * maximum), the positions of its rows and the external buffers, then calls
 * the nodes in order; operators split their rows over the context's pool.
 *
 * Tensors: rows × cols values of one dtype, rows ld elements apart. The row
 * count is `mult` times the run-time count of the tensor's row domain (the
 * batch's tokens, its MTP rows, its logit rows) or a fixed number. A view
 * shares the storage of its base at an element offset (a column slice, or
 * the same bytes seen with other rows/cols). Positions: row r of a tensor of
 * domain d belongs to the batch row r / mult of that domain.
 *
 * Every operator's arithmetic is one of the scalar reference functions of
 * kernels/ (or the optimised twin tested against it); with `ref` set on the
 * run, the reference functions are used throughout.
 */
#ifndef DSV4_GRAPH_GRAPH_H
#define DSV4_GRAPH_GRAPH_H

#include <stdint.h>
#include "linear.h"
#include "gemm/gemm.h"
#include "pool.h"

enum { DSV4G_F32 = 0, DSV4G_I32 = 1 };
enum { DSV4G_TOK = 0, DSV4G_MTP = 1, DSV4G_LOGIT = 2, DSV4G_MTP_LOGIT = 3, DSV4G_FIXED = 4, DSV4G_N_DOM = 5 };

typedef struct dsv4g_tensor {
    int32_t dtype;
    int32_t dom;           /* row domain (DSV4G_FIXED: rows = mult) */
    int64_t mult;
    int64_t cols, ld;      /* values per row, elements between rows */
    int32_t base;          /* -1: owns storage, else the viewed tensor */
    int64_t off;           /* views: element offset into base; owners: arena byte offset */
    int32_t first, last;   /* first writer, last reader (planner) */
    const char *name;
} dsv4g_tensor;

typedef struct dsv4g_run dsv4g_run;
typedef struct dsv4g_node dsv4g_node;
typedef void (*dsv4g_op)(dsv4g_run *r, const dsv4g_node *n);

#define DSV4G_MAX_IN 5
struct dsv4g_node {
    dsv4g_op fn;
    const char *name;
    int32_t in[DSV4G_MAX_IN], out[3];  /* tensor ids, -1 unused */
    int64_t i[4];                      /* integer parameters */
    float f[2];                        /* float parameters */
    const void *p[3];                  /* weights, tables, model objects */
    int32_t layer;                     /* tag (profiling): layer id, -1 none */
    int32_t part;                      /* tag: DSV4G_PART_* */
};

/* what a node belongs to (set from the graph's current tag when added) */
enum { DSV4G_PART_OTHER = 0, DSV4G_PART_ATTN = 1, DSV4G_PART_FFN = 2, DSV4G_PART_HEAD = 3 };

typedef struct dsv4g_graph {
    dsv4g_tensor *t;
    int32_t n_t, cap_t;
    dsv4g_node *n;
    int32_t n_n, cap_n;
    int64_t dom_max[DSV4G_N_DOM];      /* row counts planned for */
    int64_t arena_bytes;               /* after dsv4g_plan */
    int failed;                        /* an allocation failed while building */
    int32_t tag_layer, tag_part;       /* given to nodes as they are added */
} dsv4g_graph;

/* one run of a graph */
struct dsv4g_run {
    const dsv4g_graph *g;
    uint8_t *arena;
    dsv4k_pool *pool;
    dsv4k_linear_ctx *lin;
    dsv4k_gemm *gemm;                  /* NULL: no oneDNN route */
    int64_t dom_n[DSV4G_N_DOM];        /* row counts of this run (<= dom_max) */
    const int64_t *pos[DSV4G_N_DOM];   /* position of every batch row, per domain */
    int ref;                           /* scalar reference operators throughout */
    int aq;                            /* activation quantisation (reference numerics) */
    int kv_sim, fp4_sim;               /* KV FP8 rounding, indexer FP4 simulation */
    void *user;                        /* the model-level runner */
    int64_t *prof_ns;                  /* NULL, or per node: nanoseconds added by each run */
};

void dsv4g_init(dsv4g_graph *g, const int64_t dom_max[DSV4G_N_DOM]);
void dsv4g_free(dsv4g_graph *g);

/* a new tensor owning storage; returns its id (-1 after an allocation failure) */
int32_t dsv4g_new(dsv4g_graph *g, const char *name, int32_t dtype, int32_t dom, int64_t mult, int64_t cols);
/* a view of base: rows mult × dom, cols values ld apart, from element off */
int32_t dsv4g_view(dsv4g_graph *g, int32_t base, int32_t dom, int64_t mult, int64_t cols, int64_t ld, int64_t off);
/* append a node (NULL after an allocation failure; the graph is then marked
 * failed and dsv4g_plan refuses it); dsv4g_in/_out set its tensors */
dsv4g_node *dsv4g_node_add(dsv4g_graph *g, dsv4g_op fn, const char *name);
void dsv4g_in(dsv4g_graph *g, dsv4g_node *n, int32_t a, int32_t b, int32_t c, int32_t d, int32_t e);
void dsv4g_out(dsv4g_graph *g, dsv4g_node *n, int32_t a, int32_t b, int32_t c);

/* lifetimes and arena offsets; 0, -1 when the graph is inconsistent (a
 * tensor read before any node writes it), or 1 when building or planning
 * ran out of memory */
int dsv4g_plan(dsv4g_graph *g);
/* run every node (row counts etc. set in r) */
void dsv4g_exec(dsv4g_run *r);

/* storage of a tensor in a run, its row count, its position array */
float *dsv4g_f32(const dsv4g_run *r, int32_t t);
int32_t *dsv4g_i32(const dsv4g_run *r, int32_t t);
int64_t dsv4g_rows(const dsv4g_run *r, int32_t t);
int64_t dsv4g_row_pos(const dsv4g_run *r, int32_t t, int64_t row);

/* ---- generic operators (node builders) ----------------------------------- */

/* y = rmsnorm(x) · w (w NULL: no weight) per row; y may be x */
void dsv4g_rmsnorm(dsv4g_graph *g, int32_t x, const float *w, float eps, int32_t y);
/* y = x · Wᵀ (activations FP8-quantised first when aq and the run's aq) */
void dsv4g_linear(dsv4g_graph *g, const dsv4k_weight *w, int32_t x, int32_t y, int aq);
/* cnt (1..3) independent products y[i] = x[i] · w[i]ᵀ of rows in one
 * domain, as cnt dsv4g_linear nodes would give them (for one row in one
 * parallel loop) */
void dsv4g_linear_group(dsv4g_graph *g, int cnt, const dsv4k_weight *const *w, const int32_t *x, const int32_t *y,
                        int aq);
/* rotate the rope dims (the whole row) by the row's position; in place */
void dsv4g_rope(dsv4g_graph *g, int32_t x, const float *freqs, int inverse);
void dsv4g_hadamard(dsv4g_graph *g, int32_t x);
/* in place: the KV FP8 rounding per 64 (kind 0, in runs with kv_sim) or the
 * indexer's FP4 simulation per 32 (kind 1, in runs with fp4_sim) */
void dsv4g_sim(dsv4g_graph *g, int32_t x, int kind);
/* x *= s */
void dsv4g_scale(dsv4g_graph *g, int32_t x, float s);
/* y = a + b */
void dsv4g_add(dsv4g_graph *g, int32_t a, int32_t b, int32_t y);
/* mHC (§5.2): pre → u, post, comb; post → Xo; head → y */
void dsv4g_hc_pre(dsv4g_graph *g, int32_t X, const float *fn, const float *base, const float *scale, int hc,
                  int iters, float eps, float hc_eps, int32_t u, int32_t post, int32_t comb);
void dsv4g_hc_post(dsv4g_graph *g, int32_t X, int32_t o, int32_t post, int32_t comb, int hc, int32_t Xo);
void dsv4g_hc_head(dsv4g_graph *g, int32_t X, const float *fn, const float *base, const float *scale, int hc,
                   float eps, float hc_eps, int32_t y);
/* products of at least this many rows go through oneDNN (fewer: the
 * row-decoding kernel, which reads each weight once for all rows) */
#define DSV4G_GEMM_MIN_ROWS 16

/* shared helpers for operators defined elsewhere */
void dsv4g_linear_exec(dsv4g_run *r, const dsv4k_weight *w, const float *x, int64_t ldx, int64_t m, float *y,
                       int64_t ldy, int aq);
/* one-row products of independent jobs (dsv4k_linear_batch): each result
 * what dsv4g_linear_exec gives it alone, the pool woken once */
void dsv4g_linear_batch(dsv4g_run *r, const dsv4k_linear_job *jobs, int n, int aq);

#endif
