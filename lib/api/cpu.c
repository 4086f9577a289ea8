/*
 * lib/api/cpu.c — dsv4_cpu_features(): the kernels own the question
 * (kernels/cpu.c reads cpuid and xgetbv once); their bits are the public ones.
 */
#include <dsv4/dsv4.h>
#include "kernels.h"

#define SAME_BIT(x) ((uint32_t)DSV4K_CPU_##x == (uint32_t)DSV4_CPU_##x)
_Static_assert(SAME_BIT(AVX2) && SAME_BIT(FMA) && SAME_BIT(F16C) && SAME_BIT(AVX512F) && SAME_BIT(AVX512BW) &&
                   SAME_BIT(AVX512VL) && SAME_BIT(AVX512VNNI) && SAME_BIT(AVX512BF16) && SAME_BIT(AMX) &&
                   SAME_BIT(AVX512VBMI),
               "kernel CPU bits match the public ones");

DSV4_API uint32_t dsv4_cpu_features(void) { return dsv4k_cpu_features(); }
