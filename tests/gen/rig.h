/*
 * tests/gen/rig.h — a model, a context and a session on one thread for the
 * generation tests (test_gen.c, test_request.c); include after testutil.h.
 */
#ifndef DSV4_TEST_RIG_H
#define DSV4_TEST_RIG_H

#include <string.h>
#include <dsv4/dsv4.h>

typedef struct {
    dsv4_model *m;
    dsv4_context *c;
    dsv4_session *s;
} rig;

static inline int rig_open(rig *r, const char *dir, int64_t n_ctx)
{
    memset(r, 0, sizeof *r);
    char *err = NULL;
    dsv4_options *o = NULL;
    dsv4_options_create(&o);
    dsv4_options_set_i64(o, DSV4_OPT_THREADS, 1); /* tiny models: thread hand-offs cost more than they save */
    dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, n_ctx);
    int ok = CHECK(dsv4_model_load(dir, NULL, &r->m, &err) == DSV4_OK, "load %s: %s", dir, err ? err : "");
    dsv4_free(err);
    ok = ok && CHECK(dsv4_context_create(r->m, o, &r->c, NULL) == DSV4_OK, "context");
    ok = ok && CHECK(dsv4_session_create(r->c, NULL, &r->s, NULL) == DSV4_OK, "session");
    dsv4_options_free(o);
    return ok;
}

static inline void rig_close(rig *r)
{
    dsv4_session_free(r->s);
    dsv4_context_free(r->c);
    dsv4_model_free(r->m);
}

#endif
