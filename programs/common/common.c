/* programs/common/common.c — see common.h */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include "common.h"

bool dsv4p_parse_size(const char *v, int64_t *bytes, int64_t *pct)
{
    char *end;
    *bytes = *pct = 0;
    if (!v || !*v || v[0] == '-' || v[0] == '+' || v[0] == ' ') return false;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v) return false;
    if (*end == '%' && end[1] == 0) {
        if (x < 1 || x > 100) return false;
        *pct = (int64_t)x;
        return true;
    }
    int shift = 0;
    if (*end == 'K' || *end == 'k') shift = 10;
    else if (*end == 'M' || *end == 'm') shift = 20;
    else if (*end == 'G' || *end == 'g') shift = 30;
    else if (*end == 'T' || *end == 't') shift = 40;
    if (shift) end++;
    if (shift && *end == 'i') end++;
    if (shift && (*end == 'B' || *end == 'b')) end++;
    if (*end || x == 0 || x > (unsigned long long)INT64_MAX >> shift) return false;
    *bytes = (int64_t)(x << shift);
    return true;
}

void dsv4p_omp_passive(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
    execv("/proc/self/exe", argv);
    /* no restart: this process keeps the runtime's setting; children
     * inherit the variable */
}
