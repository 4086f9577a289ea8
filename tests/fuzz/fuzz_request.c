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

static dsv4_gen *gen;

/* the model is written and loaded before the first input (outside its time limit) */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    gen = fuzz_synth_gen(4);
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
