/*
 * tests/fuzz/fuzz_schema.c — compiling a JSON schema (response_format) or
 * an OpenAI tools array (DSML tool calls) into a constraint, on any text.
 * Byte 0 picks what (bit 0: tools; bit 1: object_only / REQUIRED; bit 2:
 * force the first tool name "f"). A compiled constraint must accept its own
 * completion and then be complete; a clone must behave as the original.
 */
#include "fuzz_common.h"
#include "gen/constrain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    dsv4__cons *c = NULL;
    dsv4__err e = { 0, "" };
    dsv4_status st;
    if (data[0] & 1)
        st = dsv4__cons_dsml(text, n, data[0] & 2 ? DSV4__TOOLS_REQUIRED : DSV4__TOOLS_AUTO,
                             data[0] & 4 ? "f" : NULL, &c, &e);
    else
        st = dsv4__cons_json(text, n, (data[0] >> 1) & 1, &c, &e);
    FUZZ_ASSERT(st == DSV4_OK ? c != NULL : e.msg[0] != 0, "status %d", st);
    if (!c) return 0;
    size_t need = dsv4__cons_completion(c, NULL, 0);
    char *comp = malloc(need + 1);
    FUZZ_ASSERT(dsv4__cons_completion(c, comp, need + 1) == need, "completion length");
    dsv4__cons *k = dsv4__cons_clone(c);
    FUZZ_ASSERT(dsv4__cons_allows(c, comp, need), "own completion not allowed");
    FUZZ_ASSERT(dsv4__cons_feed(c, comp, need) && dsv4__cons_complete(c), "own completion does not complete");
    if (k) {
        FUZZ_ASSERT(dsv4__cons_feed(k, comp, need) && dsv4__cons_complete(k), "clone differs");
        dsv4__cons_free(k);
    }
    free(comp);
    dsv4__cons_free(c);
    return 0;
}
