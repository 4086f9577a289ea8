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
    T(sizeof(dsv4_sampler_callbacks) == 5 * sizeof(void *));
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
