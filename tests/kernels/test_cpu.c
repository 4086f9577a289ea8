/*
 * tests/kernels/test_cpu.c — the CPU-feature answers (kernels/cpu.c): the
 * same from every thread asking at once on first use (a ThreadSanitizer
 * build reports any unsynchronised cache), and, when built by GCC, the
 * same as libgcc's own checks.
 */
#include <pthread.h>
#include <stdio.h>
#include "testutil.h"
#include "x86/gemv.h"

#define N_THREADS 8
static pthread_barrier_t start;
static int answers[N_THREADS][2];

static void *ask(void *arg)
{
    int *a = arg;
    pthread_barrier_wait(&start);
    for (int i = 0; i < 1000; i++) {
        a[0] = dsv4k_have_avx512();
        a[1] = dsv4k_have_avx2();
    }
    return NULL;
}

int main(void)
{
    pthread_t t[N_THREADS];
    pthread_barrier_init(&start, NULL, N_THREADS);
    for (int i = 0; i < N_THREADS; i++) pthread_create(&t[i], NULL, ask, answers[i]);
    for (int i = 0; i < N_THREADS; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    int same = 1;
    for (int i = 1; i < N_THREADS; i++) same &= answers[i][0] == answers[0][0] && answers[i][1] == answers[0][1];
    CHECK(same, "every thread gets the same answers");
    CHECK(!answers[0][0] || answers[0][1], "AVX-512 implies AVX2");
    CHECK(dsv4k_have_avx2() == answers[0][1] && dsv4k_have_avx512() == answers[0][0], "answers stay the same");
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__clang__)
    int gcc2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    int gcc512 = gcc2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl");
    CHECK(dsv4k_have_avx2() == gcc2, "AVX2: %d, libgcc %d", dsv4k_have_avx2(), gcc2);
    CHECK(dsv4k_have_avx512() == gcc512, "AVX-512: %d, libgcc %d", dsv4k_have_avx512(), gcc512);
#endif
    printf("cpu: avx2 %d, avx512 %d\n", dsv4k_have_avx2(), dsv4k_have_avx512());
    return test_summary();
}
