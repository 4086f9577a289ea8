/*
 * tests/fuzz/fuzz_size.c — the programs' size parser (--mem-budget,
 * programs/common/common.h) on any bytes: never undefined behaviour; a
 * refusal sets nothing; an accepted value sets exactly one of bytes (> 0)
 * and a percentage (1..100), and bytes printed back in decimal, or in the
 * largest binary unit dividing them, parse to the same bytes.
 */
#include "fuzz_common.h"
#include "../../programs/common/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char v[64], w[64];
    if (size >= sizeof v) return 0;
    memcpy(v, data, size);
    v[size] = 0;
    int64_t bytes = -1, pct = -1, b2 = -1, p2 = -1;
    bool ok = dsv4p_parse_size(v, &bytes, &pct);
    if (!ok) {
        FUZZ_ASSERT(bytes == 0 && pct == 0, "refused '%s' but set %lld / %lld", v, (long long)bytes, (long long)pct);
        return 0;
    }
    FUZZ_ASSERT((bytes > 0) != (pct > 0), "'%s': bytes %lld, pct %lld", v, (long long)bytes, (long long)pct);
    FUZZ_ASSERT(pct >= 0 && pct <= 100, "'%s': pct %lld", v, (long long)pct);
    if (pct) {
        snprintf(w, sizeof w, "%lld%%", (long long)pct);
        FUZZ_ASSERT(dsv4p_parse_size(w, &b2, &p2) && p2 == pct && b2 == 0, "'%s' -> '%s'", v, w);
        return 0;
    }
    snprintf(w, sizeof w, "%lld", (long long)bytes);
    FUZZ_ASSERT(dsv4p_parse_size(w, &b2, &p2) && b2 == bytes && p2 == 0, "'%s' -> '%s'", v, w);
    static const char unit[] = "KMGT";
    int u = -1;
    while (u < 3 && bytes % ((int64_t)1 << (10 * (u + 2))) == 0) u++;
    if (u >= 0) {
        snprintf(w, sizeof w, "%lld%ciB", (long long)(bytes >> (10 * (u + 1))), unit[u]);
        FUZZ_ASSERT(dsv4p_parse_size(w, &b2, &p2) && b2 == bytes && p2 == 0, "'%s' -> '%s'", v, w);
    }
    return 0;
}
