/*
 * tests/fuzz/fuzz_common.h — helpers shared by the libFuzzer targets: the
 * shared data folder, the DeepSeek-V4 tokenizer loaded once, a private
 * temporary folder, writing a file, and a failure that libFuzzer reports.
 */
#ifndef DSV4_FUZZ_COMMON_H
#define DSV4_FUZZ_COMMON_H

#include <dsv4/dsv4.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef DSV4_FUZZ_SHARED_DIR
#define DSV4_FUZZ_SHARED_DIR "../shared"
#endif

/* a broken property: print why and stop (libFuzzer saves the input) */
#define FUZZ_ASSERT(c, ...)                                                  \
    do {                                                                     \
        if (!(c)) {                                                          \
            fprintf(stderr, "fuzz property failed: %s: ", #c);               \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, "\n");                                           \
            abort();                                                         \
        }                                                                    \
    } while (0)

static inline const char *fuzz_shared_dir(void)
{
    const char *d = getenv("DSV4_SHARED_DIR");
    return d && *d ? d : DSV4_FUZZ_SHARED_DIR;
}

static inline dsv4_tokenizer *fuzz_tokenizer(void)
{
    static dsv4_tokenizer *tok;
    if (!tok) {
        char p[4096];
        snprintf(p, sizeof p, "%s/tokenizers/deepseek-v4/tokenizer.json", fuzz_shared_dir());
        char *err = NULL;
        if (dsv4_tokenizer_load(p, NULL, &tok, &err) != DSV4_OK) {
            fprintf(stderr, "fuzz: cannot load %s: %s (set DSV4_SHARED_DIR)\n", p, err ? err : "");
            exit(2);
        }
    }
    return tok;
}

/* a folder of this process's own, removed by nobody (under $TMPDIR) */
static inline const char *fuzz_tmpdir(void)
{
    static char dir[4096];
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/dsv4-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir)) { perror("mkdtemp"); exit(2); }
    }
    return dir;
}

static inline int fuzz_write(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return fclose(f) == 0 && w == n ? 0 : -1;
}

#endif
