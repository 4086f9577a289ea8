/*
 * dsv4-info — what a DeepSeek-V4 checkpoint is and what it needs.
 *
 *   dsv4-info MODEL_DIR [--ctx N] [--json] [--load]
 *
 * Without --load only config.json is read (planning before a download
 * finishes); with --load every shard is mapped and validated. Warns on
 * stderr when the weights, or the RAM the context needs, exceed the
 * physical memory (the environment variable DSV4_PHYS_MEM_LIMIT, in bytes
 * or with a K/M/G/T suffix, stands for another machine's memory).
 */
#include <dsv4/dsv4.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void)
{
    fprintf(stderr, "usage: dsv4-info MODEL_DIR [--ctx N] [--json] [--load]\n");
    return 2;
}

static int64_t get(const dsv4_model_info *in, dsv4_info_key k)
{
    int64_t v = 0;
    dsv4_model_info_get_i64(in, k, &v);
    return v;
}

/* The library's warnings (e.g. at load: weights larger than the memory). */
static void on_log(void *user, int32_t level, const char *msg, size_t len)
{
    (void)user;
    fprintf(stderr, "dsv4-info: %s: %.*s\n", level <= DSV4_LOG_ERROR ? "error" : "warning", (int)len, msg);
}

static const char *human(double b, char *buf, size_t n)
{
    const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    int i = 0;
    while (b >= 1024 && i < 4) { b /= 1024; i++; }
    snprintf(buf, n, "%.2f %s", b, u[i]);
    return buf;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int json = 0, load = 0;
    long long ctx = 4096;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (strcmp(argv[i], "--load") == 0) load = 1;
        else if (strcmp(argv[i], "--ctx") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            ctx = strtoll(argv[++i], &end, 10);
            if (*end || end == argv[i] || errno == ERANGE || ctx < 0) return usage();
        } else if (argv[i][0] == '-' || dir) return usage();
        else dir = argv[i];
    }
    if (!dir) return usage();
    dsv4_model *m = NULL;
    dsv4_model_info *in = NULL;
    char *err = NULL;
    dsv4_status st;
    dsv4_options *o = NULL;
    if (dsv4_options_create(&o) == DSV4_OK) dsv4_options_set_log(o, on_log, NULL, DSV4_LOG_WARN);
    if (load) {
        st = dsv4_model_load(dir, o, &m, &err);
        if (st == DSV4_OK) st = dsv4_model_get_info(m, &in);
    } else {
        st = dsv4_model_info_from_dir(dir, NULL, &in, &err);
    }
    dsv4_options_free(o);
    if (st != DSV4_OK) {
        fprintf(stderr, "dsv4-info: %s: %s\n", dsv4_status_string(st), err ? err : "");
        dsv4_free(err);
        dsv4_model_free(m);
        return 1;
    }
    if (json) {
        char *s = NULL;
        if (dsv4_model_info_to_json(in, &s) != DSV4_OK) return 1;
        printf("%s\n", s);
        dsv4_free(s);
    } else {
        static const char *vn[] = { "custom", "DeepSeek-V4-Flash", "DeepSeek-V4-Pro", "DeepSeek-V4-Flash-Base",
                                    "DeepSeek-V4-Flash-0731" };
        int64_t var = get(in, DSV4_INFO_VARIANT);
        char b1[32], b2[32], b3[32];
        printf("model        %s (%s)\n", dir, var >= 0 && var <= 4 ? vn[var] : "?");
        printf("weights      %s\n", load ? "mapped and validated" : "not read (config only; --load to validate)");
        printf("shape        vocab %lld, hidden %lld, %lld layers + %lld MTP, %lld heads x %lld\n",
               (long long)get(in, DSV4_INFO_VOCAB_SIZE), (long long)get(in, DSV4_INFO_HIDDEN_SIZE),
               (long long)get(in, DSV4_INFO_N_LAYERS), (long long)get(in, DSV4_INFO_N_MTP_LAYERS),
               (long long)get(in, DSV4_INFO_N_HEADS), (long long)get(in, DSV4_INFO_HEAD_DIM));
        printf("experts      %lld routed, %lld active + 1 shared, width %lld\n",
               (long long)get(in, DSV4_INFO_N_ROUTED_EXPERTS), (long long)get(in, DSV4_INFO_N_ACTIVE_EXPERTS),
               (long long)get(in, DSV4_INFO_MOE_INTER_SIZE));
        printf("schedule     ");
        int nl = (int)(get(in, DSV4_INFO_N_LAYERS) + get(in, DSV4_INFO_N_MTP_LAYERS));
        for (int l = 0; l < nl; l++) {
            dsv4_layer_type t = DSV4_LAYER_SWA;
            dsv4_model_info_layer_type(in, l, &t);
            printf("%s%s", l ? " " : "", t == DSV4_LAYER_SWA ? "SWA" : t == DSV4_LAYER_CSA ? "CSA" : "HCA");
        }
        printf("  (SWA %lld, CSA %lld, HCA %lld; last is MTP when present)\n",
               (long long)get(in, DSV4_INFO_N_SWA_LAYERS), (long long)get(in, DSV4_INFO_N_CSA_LAYERS),
               (long long)get(in, DSV4_INFO_N_HCA_LAYERS));
        printf("parameters   %.3f B total, %.3f B active per token\n", get(in, DSV4_INFO_PARAMS_TOTAL) / 1e9,
               get(in, DSV4_INFO_PARAMS_ACTIVE) / 1e9);
        printf("bytes        total %s: bf16 %s, f32 %s", human((double)get(in, DSV4_INFO_BYTES_TOTAL), b1, 32),
               human((double)get(in, DSV4_INFO_BYTES_BF16), b2, 32), human((double)get(in, DSV4_INFO_BYTES_F32), b3, 32));
        printf(", fp8 %s", human((double)get(in, DSV4_INFO_BYTES_F8), b1, 32));
        printf(", e8m0 %s", human((double)get(in, DSV4_INFO_BYTES_E8M0), b1, 32));
        printf(", fp4 %s", human((double)get(in, DSV4_INFO_BYTES_FP4), b1, 32));
        printf(", i64 %s\n", human((double)get(in, DSV4_INFO_BYTES_I64), b1, 32));
        printf("per token    %s of weights read to decode one token\n",
               human((double)get(in, DSV4_INFO_BYTES_PER_TOKEN), b1, 32));
        int64_t kvr = 0, ramr = 0, kvf = 0;
        if (dsv4_model_info_memory(in, ctx, DSV4_NUMERICS_REFERENCE, &kvr, &ramr) != DSV4_OK ||
            dsv4_model_info_memory(in, ctx, DSV4_NUMERICS_FLOAT, &kvf, NULL) != DSV4_OK) {
            fprintf(stderr, "dsv4-info: --ctx %lld: the memory of so long a context does not fit in 64 bits\n", ctx);
            dsv4_model_info_free(in);
            dsv4_model_free(m);
            return 1;
        }
        printf("KV cache     %.1f B per token (reference numerics); at %lld tokens: %s (float numerics %s)\n",
               get(in, DSV4_INFO_KV_BYTES_PER_1K) / 1024.0, ctx, human((double)kvr, b1, 32), human((double)kvf, b2, 32));
        printf("RAM          about %s at %lld tokens of context\n", human((double)ramr, b1, 32), ctx);
    }
    /* Does it fit? (The weights are mapped, not read: a model larger than
     * the memory loads, then reads the disk at every token.) With --load
     * the library has already said so about the weights. */
    int64_t phys = get(in, DSV4_INFO_PHYSICAL_MEMORY), wbytes = get(in, DSV4_INFO_BYTES_TOTAL), ram = 0;
    dsv4_model_info_memory(in, ctx, DSV4_NUMERICS_REFERENCE, NULL, &ram);
    if (phys > 0) {
        char b1[32], b2[32], b3[32];
        const char *src = getenv("DSV4_PHYS_MEM_LIMIT") ? " (DSV4_PHYS_MEM_LIMIT)" : "";
        if (!json) printf("memory       %s physical%s\n", human((double)phys, b1, 32), src);
        if (wbytes > phys && !load)
            fprintf(stderr, "dsv4-info: warning: the weights (%s) exceed the physical memory (%s%s): every token "
                            "would read weights from the disk, seconds to minutes each\n",
                    human((double)wbytes, b1, 32), human((double)phys, b2, 32), src);
        else if (wbytes <= phys && ram > phys)
            fprintf(stderr, "dsv4-info: warning: about %s of RAM are needed at %lld tokens of context, more than the "
                            "%s of physical memory%s: expect weights read from the disk (a shorter context needs "
                            "less)\n", human((double)ram, b1, 32), ctx, human((double)phys, b3, 32), src);
    }
    dsv4_model_info_free(in);
    dsv4_model_free(m);
    return 0;
}
