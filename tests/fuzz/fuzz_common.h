/*
 * tests/fuzz/fuzz_common.h — helpers shared by the libFuzzer targets: the
 * shared data folder, the DeepSeek-V4 tokenizer loaded once, a private
 * temporary folder, writing a file, a failure that libFuzzer reports, and
 * a generator on a synthetic model (the request and messages targets).
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

/* a folder of this process's own, removed at exit: under $TMPDIR when set,
 * else in memory (/dev/shm) when there is one, else /tmp. The targets that
 * write an input to files every run (checkpoint, tokenizer_load) spent most
 * of their time in the disk filesystem's truncate and write-back */
static char fuzz_tmpdir_path[4096];

static inline void fuzz_tmpdir_remove(void)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_tmpdir_path);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", fuzz_tmpdir_path);
}

static inline const char *fuzz_tmpdir(void)
{
    if (!fuzz_tmpdir_path[0]) {
        const char *t = getenv("TMPDIR");
        if (!(t && *t)) t = access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fuzz_tmpdir_path, sizeof fuzz_tmpdir_path, "%s/dsv4-fuzz-XXXXXX", t);
        if (!mkdtemp(fuzz_tmpdir_path)) { perror("mkdtemp"); exit(2); }
        atexit(fuzz_tmpdir_remove);
    }
    return fuzz_tmpdir_path;
}

static inline int fuzz_write(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return fclose(f) == 0 && w == n ? 0 : -1;
}

#ifndef DSV4_FUZZ_SYNTH
#define DSV4_FUZZ_SYNTH "dsv4-synth"
#endif

/* A generator on a tiny synthetic model with the real vocabulary, made
 * once per process (fuzz_request, fuzz_messages): dsv4-synth writes the
 * model into the private folder, or DSV4_FUZZ_MODEL names one. The context
 * holds n_ctx tokens; one thread. Exits on failure (before any input). */
static inline dsv4_gen *fuzz_synth_gen(int64_t n_ctx)
{
    char dir[4200];
    const char *m = getenv("DSV4_FUZZ_MODEL");
    if (m && *m) snprintf(dir, sizeof dir, "%s", m);
    else {
        snprintf(dir, sizeof dir, "%s/model", fuzz_tmpdir());
        char cmd[9000];
        snprintf(cmd, sizeof cmd, "'%s' --preset tiny --out '%s' --seed 7 >/dev/null", DSV4_FUZZ_SYNTH, dir);
        if (system(cmd) != 0) { fprintf(stderr, "fuzz: %s failed (set DSV4_FUZZ_MODEL)\n", cmd); exit(2); }
    }
    dsv4_options *o = NULL;
    dsv4_options_create(&o);
    dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, n_ctx);
    dsv4_options_set_i64(o, DSV4_OPT_THREADS, 1);
    dsv4_model *model = NULL;
    dsv4_context *ctx = NULL;
    dsv4_session *s = NULL;
    dsv4_gen *gen = NULL;
    char *err = NULL;
    if (dsv4_model_load(dir, o, &model, &err) || dsv4_context_create(model, o, &ctx, &err) ||
        dsv4_session_create(ctx, NULL, &s, &err) || dsv4_gen_create(s, fuzz_tokenizer(), &gen)) {
        fprintf(stderr, "fuzz: model %s: %s\n", dir, err ? err : "cannot create a generator");
        exit(2);
    }
    /* the generator keeps its session, context and model alive */
    dsv4_session_free(s);
    dsv4_context_free(ctx);
    dsv4_model_free(model);
    dsv4_options_free(o);
    return gen;
}

#endif
