/*
 * kernels/cpu.c — which of the optimised kernel sets this CPU and its OS
 * can run (dsv4k_have_avx2, dsv4k_have_avx512; declared in x86/gemv.h).
 *
 * Read from cpuid and xgetbv directly rather than through the compilers'
 * __builtin_cpu_supports, whose feature names differ between GCC and clang
 * (clang 14 has no "f16c"). The answer is computed on first use and cached
 * in an atomic: worker threads of several contexts may ask at once, and all
 * compute the same value, so a relaxed load and store suffice.
 */
#include <stdatomic.h>
#include "x86/gemv.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

enum { HAVE_AVX2 = 1, HAVE_AVX512 = 2, KNOWN = 4 };

static int detect(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    /* OSXSAVE (the OS saves extended state), AVX, FMA, F16C */
    if (!(c & (1u << 27)) || !(c & (1u << 28)) || !(c & (1u << 12)) || !(c & (1u << 29))) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0x6) != 0x6) return 0; /* XMM and YMM state */
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if (!(b & (1u << 5))) return 0; /* AVX2 */
    int f = HAVE_AVX2;
    /* AVX-512 F, BW, VL, and the OS saving opmask and all 32 ZMM registers */
    if ((b & (1u << 16)) && (b & (1u << 30)) && (b & (1u << 31)) && (lo & 0xe0) == 0xe0) f |= HAVE_AVX512;
    return f;
}
#else
enum { HAVE_AVX2 = 1, HAVE_AVX512 = 2, KNOWN = 4 };
static int detect(void) { return 0; }
#endif

static atomic_int cached; /* 0 until detected, then KNOWN | features */

static int features(void)
{
    int f = atomic_load_explicit(&cached, memory_order_relaxed);
    if (!f) {
        f = detect() | KNOWN;
        atomic_store_explicit(&cached, f, memory_order_relaxed);
    }
    return f;
}

int dsv4k_have_avx2(void) { return (features() & HAVE_AVX2) != 0; }

int dsv4k_have_avx512(void) { return (features() & HAVE_AVX512) != 0; }
