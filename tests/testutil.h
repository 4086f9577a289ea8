/* tests/testutil.h — tiny test harness shared by the test programs.
 * Every program ends with test_summary(), which prints "N passed, N failed"
 * and returns the exit code. */
#ifndef DSV4_TESTUTIL_H
#define DSV4_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>

extern int test_passed, test_failed;

/* Record one check; prints a line for failures (and for passes if verbose). */
int test_check(int ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define CHECK(cond, ...) test_check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define CHECK_EQ_INT(a, b, what) \
    test_check((long long)(a) == (long long)(b), __FILE__, __LINE__, "%s: %lld != %lld", (what), \
               (long long)(a), (long long)(b))

/* Print "N passed, N failed" and return 0 if none failed, else 1. */
int test_summary(void);

/* Folder of the shared test data: $DSV4_SHARED_DIR, else ../shared relative
 * to the current directory, else the build-time default. Never NULL. */
const char *test_shared_dir(void);

/* DSV4_TEST_LIGHT=1 (the ThreadSanitizer tree in CI, docs/THREADS.md):
 * the numeric tests run fewer repetitions of the same checks (seeds,
 * positions, budgets) — every code path and every thread interaction
 * still runs once or more. test_reps(full, light) is full normally and
 * light under DSV4_TEST_LIGHT. */
int test_light(void);
int test_reps(int full, int light);

/* Make a fresh temporary directory (mkdtemp); returns a static-lifetime copy
 * the caller frees with free(). */
char *test_tmpdir(const char *tag);
/* rm -r of a directory made by test_tmpdir */
void test_rmtree(const char *dir);

/* Load a little-endian .npy array of kind 'f' (float32) or 'i' (int32),
 * up to 4 dims: returns malloc'd data (free()), shape/ndim set; NULL on
 * any error. test_load_npz reads member `name` (without ".npy") of a
 * stored or deflated .npz. */
void *test_load_npy(const char *path, char kind, int64_t *shape, int *ndim);
void *test_load_npz(const char *path, const char *name, char kind, int64_t *shape, int *ndim);

#endif
