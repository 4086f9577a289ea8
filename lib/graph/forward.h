/*
 * lib/graph/forward.h — the DeepSeek-V4 forward pass (internal).
 *
 * A runtime (one per dsv4_context) owns the worker pool, the model graph
 * (graph.h) and its planned scratch for batches of up to max_batch rows. A state (one per
 * dsv4_session) owns the decode state of every layer: the window ring, the
 * compressors' running states, the compressed entries and indexer keys,
 * plus the MTP block's window and the last trunk state MTP needs.
 *
 * Spec: ../shared/spec/architecture.md §4–§6.
 */
#ifndef DSV4_GRAPH_FORWARD_H
#define DSV4_GRAPH_FORWARD_H

#include "weights.h"
#include "pool.h"
#include "linear.h"

typedef struct dsv4__rt dsv4__rt;
typedef struct dsv4__state dsv4__state;

typedef struct dsv4__rt_opts {
    int32_t threads;       /* >= 1 */
    int64_t n_ctx;         /* capacity of every state, tokens */
    int32_t max_batch;     /* largest chunk run at once */
    int32_t numerics;      /* DSV4_NUMERICS_REFERENCE / _FLOAT */
    int32_t revision;      /* DSV4_REVISION_CURRENT / _INITIAL */
    int32_t ref_ops;       /* scalar reference operators throughout (tests) */
} dsv4__rt_opts;

/* A runtime over a config and its bound weights (both must outlive it). */
/* rows whose routed experts go in two parallel loops (moe.c), and the
 * scratch a context holds for them: [rows·K][2·inter + 2·dim] floats */
#define DSV4__XF_ROWS 16
int64_t dsv4__experts_few_bytes(const dsv4__config *c);

dsv4_status dsv4__rt_create(const dsv4__config *c, const struct dsv4__weights *w, const dsv4__rt_opts *o,
                            dsv4__rt **out, dsv4__err *e);
void dsv4__rt_free(dsv4__rt *rt);

/* bytes of one stored compressed entry (indexer 0) or indexer key
 * (indexer 1): compact (FP8/FP4 codes + E8M0, RoPE dims f32) or f32 */
int64_t dsv4__kv_entry_bytes(const dsv4__config *c, int indexer, int compact);
/* the same under this runtime's numerics */
int64_t dsv4__rt_entry_bytes(const dsv4__rt *rt, int indexer);

dsv4_status dsv4__state_create(dsv4__rt *rt, int with_mtp, dsv4__state **out, dsv4__err *e);
void dsv4__state_free(dsv4__state *s);
void dsv4__state_reset(dsv4__state *s);
int64_t dsv4__state_pos(const dsv4__state *s);
/* benchmarks: pretend pos tokens were fed (random window rings, compressed
 * entries and indexer keys; compressor running states left as they are) */
void dsv4__state_fill_synthetic(dsv4__state *s, int64_t pos, uint32_t seed);
/* bytes reserved for the full capacity / in use at the current position */
void dsv4__state_memory(const dsv4__state *s, int64_t *reserved, int64_t *used);
int dsv4__state_mtp(const dsv4__state *s);
const dsv4__rt *dsv4__state_rt(const dsv4__state *s);

/*
 * Images (docs/sessions.md): the exact decode state at its position, only
 * what that position uses — per layer the valid window-ring rows, the
 * compressors' running states, the compressed entries and indexer keys
 * emitted so far (runtime's storage form), then the MTP input when the
 * state keeps the MTP block. The layout depends on the config, numerics,
 * MTP flag and position only (not on the context length).
 *
 * image_bytes: size of the image at pos; image_write: the image of s at its
 * position; image_check: DSV4_OK when img (n bytes) is a well-formed image
 * at pos for this runtime (size, every float finite, no NaN FP8 code or
 * scale) — DSV4_ERR_CONTEXT_FULL when pos exceeds the capacity,
 * DSV4_ERR_BAD_FORMAT otherwise; image_read: make s the state of a checked
 * image (cannot fail).
 */
int64_t dsv4__state_image_bytes(const dsv4__rt *rt, int mtp, int64_t pos);
void dsv4__state_image_write(const dsv4__state *s, uint8_t *dst);
dsv4_status dsv4__state_image_check(const dsv4__rt *rt, int mtp, int64_t pos, const uint8_t *img, int64_t n,
                                    dsv4__err *e);
void dsv4__state_image_read(dsv4__state *s, int64_t pos, const uint8_t *img);

/*
 * Feed n tokens (any n >= 1; split into chunks of max_batch internally).
 * logits: NULL, or room for `n_logit_rows` × vocab floats receiving the
 * logits of the last n_logit_rows positions (1 = last only, n = all).
 * mtp_logits: NULL, or room for n × vocab floats receiving the MTP rows
 * computed by this call (*n_mtp_rows set; rows are positions pos0-1 ..
 * pos0+n-2, the first omitted at position 0). Tokens must already be
 * validated. Returns DSV4_ERR_CONTEXT_FULL, with the state unchanged, when
 * the tokens do not fit the capacity.
 */
/*
 * One request of a batch: n tokens for session s (distinct sessions of one
 * runtime per batch); logits / mtp_logits as for dsv4__forward; n_mtp is
 * set to the MTP rows written. The requests' tokens are run together, in
 * batches of up to max_batch rows, so weights are read once per batch for
 * all sessions. Returns DSV4_ERR_CONTEXT_FULL (no state changed) when any
 * request does not fit its session.
 */
typedef struct dsv4__req {
    dsv4__state *s;
    const int32_t *tokens;
    int64_t n;
    float *logits;
    int64_t n_logit_rows;
    float *mtp_logits;
    int64_t n_mtp;
} dsv4__req;
dsv4_status dsv4__forward_batch(dsv4__rt *rt, dsv4__req *reqs, int n_reqs, dsv4__err *e);

/* the model graph (bench: node tags), and per-node time accounting: with
 * ns_per_node (room for every node of the graph, zeroed by the caller),
 * every run adds each node's wall time to its slot; NULL stops */
struct dsv4g_graph;
const struct dsv4g_graph *dsv4__rt_graph(const dsv4__rt *rt);
void dsv4__rt_set_profile(dsv4__rt *rt, int64_t *ns_per_node);
/* the runtime's worker pool (bench) */
dsv4k_pool *dsv4__rt_pool(dsv4__rt *rt);
/* its products' context (benchmarks: dsv4k_linear_set_batch) */
dsv4k_linear_ctx *dsv4__rt_linear(dsv4__rt *rt);

/* the options the runtime was created with */
dsv4__rt_opts dsv4__rt_options(const dsv4__rt *rt);

/* bytes of the planned scratch arena */
int64_t dsv4__rt_scratch_bytes(const dsv4__rt *rt);

dsv4_status dsv4__forward(dsv4__state *s, const int32_t *tokens, int64_t n, float *logits,
                          int64_t n_logit_rows, float *mtp_logits, int64_t *n_mtp_rows, dsv4__err *e);

/* The reference numerics' KV FP8 rounding (spec §4.7, blocks of 64) and the
 * indexer's FP4 simulation (§4.8, blocks of 32), in place; with dst, also the
 * compact codes: n e4m3 bytes + n/64 E8M0 bytes, resp. n/2 packed e2m1 bytes
 * (low nibble first) + n/32 E8M0 bytes. */
void dsv4__kv_fp8(float *x, int64_t n, uint8_t *dst);
void dsv4__key_fp4(float *x, int64_t n, uint8_t *dst);

/*
 * Debug hook (tests): called after each layer's routing with kind 0 —
 * ids int32 [T][n_active], weights float [T][n_active] — and after each CSA
 * layer's top-k selection with kind 1 — ids int32 [T][index_topk], -1 where
 * fewer entries were visible (then all visible ones are listed). layer is
 * the trunk layer id, n_layers for the MTP block.
 */
typedef void (*dsv4__debug_fn)(void *user, int layer, int kind, int64_t T, int64_t p0, const int32_t *ids,
                               const float *w);
void dsv4__rt_set_debug(dsv4__rt *rt, dsv4__debug_fn fn, void *user);

/*
 * Undoing one position (speculative decoding: a rejected draft). A mark at
 * position p (p >= 1, MTP state kept) saves what feeding position p+1
 * overwrites and what later positions cannot touch (the window-ring rows,
 * the compressors' running-state slots of p+1, the MTP block's ring row);
 * after tokens p and p+1 are fed (one call or two), undo makes the state
 * exactly what it was after token p alone: image_write gives the same bytes.
 * mark: DSV4_ERR_NOT_AVAILABLE without MTP or at position 0,
 * DSV4_ERR_OUT_OF_MEMORY. undo: DSV4_ERR_INVALID_ARGUMENT unless the state
 * is at mark + 2 with the mark unused (any reset, image read or other undo
 * drops the mark). Both leave the state as it was on failure.
 */
dsv4_status dsv4__state_undo_mark(dsv4__state *s);
dsv4_status dsv4__state_undo(dsv4__state *s);

/*
 * Largest m for which a product over m rows gives every row the bytes the
 * same product over that row alone gives (so a batch of m tokens computes
 * what m single-token steps compute), under this runtime's numerics; 1 when
 * the batched products use another summation order than the one-row
 * kernels. The generator's speculative verify step batches the drafted
 * token only when this is at least 2 (else it runs two one-row steps).
 */
int dsv4__rt_rows_identical(const dsv4__rt *rt);

/* MTP logits for (trunk state at pos-1, next_token) without advancing. */
dsv4_status dsv4__forward_mtp_draft(dsv4__state *s, int32_t next_token, float *logits, dsv4__err *e);

#endif
