/*
 * tests/fuzz/fuzz_request.c — an OpenAI-style request through a generator
 * (dsv4_gen_start_request) on a tiny synthetic model with the real
 * vocabulary (dsv4-synth, written once per process; DSV4_FUZZ_MODEL names
 * another). The context holds 4 tokens, so most rendered prompts stop
 * at CONTEXT_FULL after the whole request was parsed and checked; short ones
 * are evaluated and generate until the context is full or a few events
 * passed, then the generation is cancelled and its response built. Any
 * input: a status, never a crash, leak or hang; a refused request leaves
 * the generator usable.
 */
#include "fuzz_common.h"

#ifndef DSV4_FUZZ_SYNTH
#define DSV4_FUZZ_SYNTH "dsv4-synth"
#endif

static dsv4_gen *gen;

static void setup(void)
{
    char dir[4200];
    const char *m = getenv("DSV4_FUZZ_MODEL");
    if (m && *m) snprintf(dir, sizeof dir, "%s", m);
    else {
        snprintf(dir, sizeof dir, "%s/model", fuzz_tmpdir());
        char cmd[9000];
        snprintf(cmd, sizeof cmd, "'%s' --preset tiny --out '%s' --seed 7 >/dev/null", DSV4_FUZZ_SYNTH, dir);
        if (system(cmd) != 0) { fprintf(stderr, "fuzz: %s failed (set DSV4_FUZZ_MODEL)\n", cmd); exit(2); }
    }
    dsv4_options *o = NULL;
    dsv4_options_create(&o);
    dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, 4);
    dsv4_options_set_i64(o, DSV4_OPT_THREADS, 1);
    dsv4_model *model = NULL;
    dsv4_context *ctx = NULL;
    dsv4_session *s = NULL;
    char *err = NULL;
    if (dsv4_model_load(dir, o, &model, &err) || dsv4_context_create(model, o, &ctx, &err) ||
        dsv4_session_create(ctx, NULL, &s, &err) || dsv4_gen_create(s, fuzz_tokenizer(), &gen)) {
        fprintf(stderr, "fuzz: model %s: %s\n", dir, err ? err : "cannot create a generator");
        exit(2);
    }
    /* the generator keeps its session, context and model alive */
    dsv4_session_free(s);
    dsv4_context_free(ctx);
    dsv4_model_free(model);
    dsv4_options_free(o);
}

/* the model is written and loaded before the first input (outside its time limit) */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setup();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dsv4_status st = dsv4_gen_start_request(gen, (const char *)data, size);
    if (st == DSV4_OK) {
        for (int i = 0; i < 6; i++) {
            dsv4_gen_event_type t;
            FUZZ_ASSERT(dsv4_gen_next(gen, &t, NULL, NULL, NULL) == DSV4_OK, "next");
            if (t == DSV4_GEN_EVENT_STOP) break;
            if (i == 3) dsv4_gen_cancel(gen);
        }
        char *js = NULL;
        dsv4_status rs = dsv4_gen_response_json(gen, &js);
        FUZZ_ASSERT(rs == DSV4_OK || rs == DSV4_ERR_INVALID_ARGUMENT, "response_json %d", rs);
        dsv4_free(js);
    } else {
        FUZZ_ASSERT(dsv4_gen_last_error(gen)[0] != 0, "status %d without a message", st);
    }
    return 0;
}
