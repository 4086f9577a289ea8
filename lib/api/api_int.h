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
};

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
