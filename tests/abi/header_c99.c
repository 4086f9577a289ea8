/* tests/abi/header_c99.c — the public header compiles alone as C99 with
 * -pedantic -Werror, and its macros work. Ends with "N passed, N failed". */
#include <dsv4/dsv4.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#if !DSV4_AT_LEAST_VERSION(0, 1, 0)
#error "DSV4_AT_LEAST_VERSION(0, 1, 0) must hold"
#endif
#if DSV4_AT_LEAST_VERSION(DSV4_VERSION_MAJOR + 1, 0, 0)
#error "DSV4_AT_LEAST_VERSION of a later major must not hold"
#endif

int main(void)
{
    int passed = 0, failed = 0;
#define T(c) do { if (c) passed++; else { failed++; printf("FAIL %s\n", #c); } } while (0)
    T(dsv4_version_number() == DSV4_VERSION_NUMBER);
    T(strcmp(dsv4_version_string(), DSV4_VERSION_STRING) == 0);
    T(dsv4_abi_version() == DSV4_ABI_VERSION);
    T(sizeof(dsv4_status) == 4);
    T(dsv4_status_string(DSV4_OK) != NULL);
    dsv4_free(NULL);
    /* the sampler callback table: members are only appended, so these
     * offsets never change within ABI major 0 */
    T(offsetof(dsv4_sampler_callbacks, struct_size) == 0);
    T(offsetof(dsv4_sampler_callbacks, apply) == sizeof(void *));
    T(offsetof(dsv4_sampler_callbacks, select) == 2 * sizeof(void *));
    T(offsetof(dsv4_sampler_callbacks, accept) == 3 * sizeof(void *));
    T(offsetof(dsv4_sampler_callbacks, reset) == 4 * sizeof(void *));
    T(offsetof(dsv4_sampler_callbacks, release) == 5 * sizeof(void *));
    T(sizeof(dsv4_sampler_callbacks) == 6 * sizeof(void *));
    /* enumerated types at the boundary: 4-byte integers, as every binding
     * declares them; values pinned (append-only, never renumbered) */
    T(sizeof(dsv4_option) == 4 && sizeof(dsv4_numerics) == 4 && sizeof(dsv4_revision) == 4);
    T(sizeof(dsv4_variant) == 4 && sizeof(dsv4_layer_type) == 4 && sizeof(dsv4_info_key) == 4);
    T(sizeof(dsv4_encode_flag) == 4 && sizeof(dsv4_special_token) == 4);
    T(sizeof(dsv4_chat_field) == 4 && sizeof(dsv4_reasoning_effort) == 4 && sizeof(dsv4_chat_event_type) == 4);
    T(sizeof(dsv4_sampler_param) == 4 && sizeof(dsv4_gen_param) == 4 && sizeof(dsv4_response_format) == 4);
    T(sizeof(dsv4_tool_choice) == 4 && sizeof(dsv4_gen_event_type) == 4 && sizeof(dsv4_finish_reason) == 4);
    T(sizeof(dsv4_usage_key) == 4);
    T((dsv4_special_token)-1 < 0 && (dsv4_encode_flag)-1 > 0); /* int32_t; flags uint32_t */
    T(DSV4_TOKEN_BOS == 0 && DSV4_TOKEN_EOS == 1 && DSV4_TOKEN_DSML == 7 && DSV4_TOKEN_EOT == 14);
    T(DSV4_TOKEN_COUNT_ == 15); /* deprecated, frozen */
    T(DSV4_OPT_THREADS == 100 && DSV4_OPT_MTP == 200 && DSV4_GEN_EVENT_STOP == 6 && DSV4_CHAT_EVENT_END == 7);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
