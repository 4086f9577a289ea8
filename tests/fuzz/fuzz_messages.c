/*
 * tests/fuzz/fuzz_messages.c — an Anthropic Messages request through a
 * generator (dsv4_gen_start_messages: the mapping to the chat request, then
 * dsv4_gen_start_request) on a tiny synthetic model with the real
 * vocabulary (dsv4-synth, written once per process; DSV4_FUZZ_MODEL names
 * another). The context holds 32 tokens, so long conversations stop at
 * CONTEXT_FULL after the whole request was mapped and checked; short ones
 * stream their Messages events (dsv4_gen_next_message_event) for a few
 * steps, are cancelled, and build their Messages response. Properties: a
 * refused request has a message; an accepted stream starts with
 * message_start and, once ended, has said message_stop; both texts are
 * JSON where they must be.
 */
#define DSV4_ENABLE_EXPERIMENTAL /* the experimental tier (docs/ABI.md) */
#include <jansson.h>
#include "fuzz_common.h"

static dsv4_gen *gen;

/* the model is written and loaded before the first input (outside its time limit) */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    gen = fuzz_synth_gen(32);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dsv4_status st = dsv4_gen_start_messages(gen, (const char *)data, size);
    if (st == DSV4_OK) {
        int stopped = 0;
        for (int i = 0; i < 8; i++) {
            char *ev = NULL;
            FUZZ_ASSERT(dsv4_gen_next_message_event(gen, &ev) == DSV4_OK, "next_message_event");
            if (!ev) { stopped = 1; break; }
            if (i == 0) FUZZ_ASSERT(!strncmp(ev, "event: message_start\n", 21), "first event: %.40s", ev);
            if (strstr(ev, "event: message_stop\n")) stopped = 2;
            dsv4_free(ev);
            if (i == 4) dsv4_gen_cancel(gen);
        }
        (void)stopped;
        char *js = NULL;
        FUZZ_ASSERT(dsv4_gen_message_response_json(gen, &js) == DSV4_OK && js, "message_response_json");
        json_t *j = json_loads(js, 0, NULL);
        FUZZ_ASSERT(json_is_object(j) && json_is_array(json_object_get(j, "content")), "response is not a message: %.80s", js);
        json_decref(j);
        dsv4_free(js);
    } else {
        FUZZ_ASSERT(dsv4_gen_last_error(gen)[0] != 0, "status %d without a message", st);
    }
    return 0;
}
