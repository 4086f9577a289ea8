/*
 * kernels/cpu.c — which of the optimised kernel sets this CPU and its OS
 * can run (dsv4k_have_avx2, dsv4k_have_avx512; declared in x86/gemv.h).
 *
 * Both answer from the library's one CPU-feature reading
 * (dsv4__cpu_features in lib/core: cpuid and xgetbv, so the same answer
 * under GCC and clang, whose __builtin_cpu_supports feature names differ;
 * read once under pthread_once, so worker threads of several contexts may
 * ask at the same time without a data race). The AVX-512 answer includes
 * the OS's saving of the opmask and ZMM state.
 */
#include "core/core.h"
#include "x86/gemv.h"

int dsv4k_have_avx2(void)
{
    const uint32_t need = DSV4_CPU_AVX2 | DSV4_CPU_FMA | DSV4_CPU_F16C;
    return (dsv4__cpu_features() & need) == need;
}

int dsv4k_have_avx512(void)
{
    const uint32_t need = DSV4_CPU_AVX2 | DSV4_CPU_FMA | DSV4_CPU_F16C | DSV4_CPU_AVX512F | DSV4_CPU_AVX512BW |
                          DSV4_CPU_AVX512VL;
    return (dsv4__cpu_features() & need) == need;
}
