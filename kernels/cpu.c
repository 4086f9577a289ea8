/*
 * kernels/cpu.c — which of the optimised kernel sets this CPU and its OS
 * can run: one reading of cpuid and xgetbv (the same answer under GCC and
 * clang, whose __builtin_cpu_supports feature names differ), taken once
 * under pthread_once, so the worker threads of several contexts may ask at
 * the same time without a data race. The AVX-512 bits require the OS to
 * save the opmask and ZMM state, AMX its tile state. lib/core answers the
 * public dsv4_cpu_features() from here.
 */
#include <cpuid.h>
#include <pthread.h>
#include <stdbool.h>
#include "kernels.h"
#include "x86/gemv.h"

static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;
static uint32_t cpu_bits;

static void cpu_detect(void)
{
    unsigned a, b, c, d;
    uint32_t f = 0;
    unsigned long long xcr0 = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    if (c & (1u << 27)) { /* OSXSAVE */
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = ((unsigned long long)hi << 32) | lo;
    }
    bool ymm = (xcr0 & 6) == 6, zmm = (xcr0 & 0xe6) == 0xe6;
    bool amx = (xcr0 & 0x60000) == 0x60000;
    if (ymm && (c & (1u << 12))) f |= DSV4K_CPU_FMA;
    if (ymm && (c & (1u << 29))) f |= DSV4K_CPU_F16C;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        if (ymm && (b & (1u << 5))) f |= DSV4K_CPU_AVX2;
        if (zmm && (b & (1u << 16))) f |= DSV4K_CPU_AVX512F;
        if (zmm && (b & (1u << 30))) f |= DSV4K_CPU_AVX512BW;
        if (zmm && (b & (1u << 31))) f |= DSV4K_CPU_AVX512VL;
        if (zmm && (c & (1u << 1))) f |= DSV4K_CPU_AVX512VBMI;
        if (zmm && (c & (1u << 11))) f |= DSV4K_CPU_AVX512VNNI;
        if (amx && (d & (1u << 24))) f |= DSV4K_CPU_AMX;
        if (__get_cpuid_count(7, 1, &a, &b, &c, &d) && zmm && (a & (1u << 5))) f |= DSV4K_CPU_AVX512BF16;
    }
    cpu_bits = f;
}

uint32_t dsv4k_cpu_features(void)
{
    pthread_once(&cpu_once, cpu_detect);
    return cpu_bits;
}

static int has(uint32_t need) { return (dsv4k_cpu_features() & need) == need; }

int dsv4k_have_avx2(void) { return has(DSV4K_CPU_AVX2 | DSV4K_CPU_FMA | DSV4K_CPU_F16C); }

int dsv4k_have_avx512(void)
{
    return has(DSV4K_CPU_AVX2 | DSV4K_CPU_FMA | DSV4K_CPU_F16C | DSV4K_CPU_AVX512F | DSV4K_CPU_AVX512BW |
               DSV4K_CPU_AVX512VL);
}

/* the FP4 kernels on vpdpbusd (they decode with vpermb) */
int dsv4k_have_avx512vnni(void) { return dsv4k_have_avx512() && has(DSV4K_CPU_AVX512VNNI | DSV4K_CPU_AVX512VBMI); }

/* the FP8 kernel on vdpbf16ps (it decodes with vpermt2b) */
int dsv4k_have_avx512bf16(void) { return dsv4k_have_avx512() && has(DSV4K_CPU_AVX512BF16 | DSV4K_CPU_AVX512VBMI); }
