/*
 * lib/api/api_int.h — the public objects' structs (internal).
 *
 * lib/api is the composition root: it owns dsv4_model (here), dsv4_context
 * and dsv4_session (lib/api/context.c). A model is an opened checkpoint
 * (lib/loader, a pure reader) plus the weights bound from it (lib/graph);
 * a context's runtime is created from the model's config and weights.
 */
#ifndef DSV4_API_INT_H
#define DSV4_API_INT_H

#include "loader/loader.h"
#include "graph/forward.h"

struct dsv4_model {
    dsv4__ref ref;
    dsv4__checkpoint *ck;          /* config, mapped shards, tensor table */
    struct dsv4__weights *weights; /* bound from ck at load */
    int64_t locked_cache;          /* bytes of the expert cache locked (DSV4_OPT_MEM_LOCK) */
};

struct dsv4_context {
    dsv4__ref ref;
    struct dsv4_model *model;
    dsv4__rt *rt;
    int64_t n_ctx;
    int64_t max_batch;             /* DSV4_OPT_MAX_BATCH: the chunks progress reports */
    uint64_t fingerprint;          /* of the model (session.c), 0 until asked for */
    char err[512];
};

/* a checkpoint of a session (session.c): the image of its state at pos,
 * and the logits of position pos-1 when the session had them */
typedef struct dsv4__ckpt {
    int64_t pos;
    uint8_t *img;
    int64_t img_bytes;
    float *logits;
    uint64_t used;                 /* LRU tick */
} dsv4__ckpt;

struct dsv4_session {
    dsv4__ref ref;
    dsv4_context *ctx;
    dsv4__state *st;
    float *logits;          /* rows for positions [lg_first, lg_first + lg_n) */
    int64_t lg_first, lg_n, lg_cap;
    float *mtp;             /* MTP rows for positions [mtp_first, mtp_first + mtp_n) */
    int64_t mtp_first, mtp_n, mtp_cap;
    int has_mtp;
    int mtp_rows_off;              /* no MTP logits rows (the MTP block still runs): dsv4__session_mtp_rows */
    uint64_t edits;                /* changes of its tokens, by anyone (dsv4__session_edits) */
    /* the tokens fed [0, pos) and where each eval call started (bit p set:
     * a call began at position p), room for the full capacity */
    int32_t *hist;
    uint8_t *cuts;
    dsv4__ckpt *ck;                /* ascending positions */
    int n_ck, max_ck;
    int64_t max_ck_bytes;
    uint64_t tick;
    struct dsv4_prefix_cache *cache; /* NULL, or a reference */
    int32_t (*progress)(void *, int64_t, int64_t); /* dsv4_session_set_progress (a dsv4_eval_progress_fn) */
    void *progress_user;
    char err[512];
};

/* session.c: a session's bookkeeping around eval, create, reset, free */
dsv4_status dsv4__session_init_extra(dsv4_session *s, dsv4__err *e);
void dsv4__session_free_extra(dsv4_session *s);
void dsv4__session_note_eval(dsv4_session *s, int64_t pos0, const int32_t *tokens, int64_t n);
void dsv4__session_drop_checkpoints(dsv4_session *s, int64_t above);
/* the image of the session's state at its position and its last logits
 * (NULL when it has none); dsv4__free both */
dsv4_status dsv4__session_image(const dsv4_session *s, uint8_t **img, int64_t *bytes, float **logits);
/* put the session at a checked image of position pos (its history right up
 * to pos), logits of pos-1 or NULL; cannot fail */
void dsv4__session_apply(dsv4_session *s, int64_t pos, const uint8_t *img, const float *logits);
/* session.c: the read and write callbacks of a file descriptor (user: an
 * int *), retrying EINTR; for the session files of session.c and cache.c */
int64_t dsv4__fd_read(void *user, void *dst, size_t len);
int32_t dsv4__fd_write(void *user, const void *data, size_t len);
/* session.c: the session-file header fields of a session (its model,
 * numerics, revision, context size, MTP, vocabulary, library version) */
struct dsv4__sfile_meta;
void dsv4__session_meta(dsv4_session *s, struct dsv4__sfile_meta *m);
/* cache.c: drop the session's reference to its prefix cache */
void dsv4__session_cache_release(dsv4_session *s);
/* the model fingerprint of a context (computed once) */
uint64_t dsv4__context_fingerprint(dsv4_context *ctx);
/* reserve the logits buffer of rows × vocab (context.c) */
int dsv4__session_reserve(float **buf, int64_t *cap, int64_t rows, int64_t vocab);

/* the model's config and bound weights (tests, tools) */
const dsv4__config *dsv4__model_config(const dsv4_model *m);
const struct dsv4__weights *dsv4__model_weights(const dsv4_model *m);
/* a runtime over the model's config and weights (the model must outlive it) */
dsv4_status dsv4__model_rt_create(const dsv4_model *m, const dsv4__rt_opts *o, dsv4__rt **out, dsv4__err *e);
/* release one reference (contexts hold references to their model) */
void dsv4__model_release(dsv4_model *m);
/* the context's worker pool (bench: its waiting statistics) */
dsv4k_pool *dsv4__context_pool(dsv4_context *ctx);

#endif
