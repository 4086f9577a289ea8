#include "testutil.h"

#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int test_passed, test_failed;

int test_check(int ok, const char *file, int line, const char *fmt, ...)
{
    if (ok) {
        test_passed++;
        if (getenv("DSV4_TEST_VERBOSE")) {
            va_list ap;
            va_start(ap, fmt);
            printf("ok   %s:%d: ", file, line);
            vprintf(fmt, ap);
            printf("\n");
            va_end(ap);
        }
        return 1;
    }
    test_failed++;
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL %s:%d: ", file, line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    return 0;
}

int test_summary(void)
{
    printf("%d passed, %d failed\n", test_passed, test_failed);
    fflush(stdout);
    return test_failed ? 1 : 0;
}

const char *test_shared_dir(void)
{
    const char *e = getenv("DSV4_SHARED_DIR");
    if (e && *e) return e;
    if (access("../shared/golden/index.json", R_OK) == 0) return "../shared";
    return "../shared";
}

char *test_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char buf[4096];
    snprintf(buf, sizeof buf, "%s/dsv4-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(buf)) return NULL;
    return strdup(buf);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

void test_rmtree(const char *dir)
{
    if (dir) nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}
