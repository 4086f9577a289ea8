/*
 * tests/fuzz/fuzz_checkpoint.c — a checkpoint folder built from the input:
 * config.json, model.safetensors.index.json and one safetensors shard, cut
 * from the input at lines "--8<--". dsv4_model_info_from_dir and
 * dsv4_model_load must give a status (never a crash, leak or hang); what
 * loads gives consistent facts and memory figures.
 */
#include "fuzz_common.h"

static const char *part(const char *s, size_t n, size_t *len, const char **rest, size_t *rest_n)
{
    static const char cut[] = "\n--8<--\n";
    for (size_t i = 0; i + sizeof cut - 1 <= n; i++)
        if (memcmp(s + i, cut, sizeof cut - 1) == 0) {
            *len = i;
            *rest = s + i + sizeof cut - 1;
            *rest_n = n - i - (sizeof cut - 1);
            return s;
        }
    *len = n;
    *rest = s + n;
    *rest_n = 0;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dir = fuzz_tmpdir();
    const char *r0 = (const char *)data, *r1, *r2, *r3;
    size_t n0 = size, l1, l2, l3, n1, n2, n3;
    const char *cfg = part(r0, n0, &l1, &r1, &n1);
    const char *idx = part(r1, n1, &l2, &r2, &n2);
    const char *shard = part(r2, n2, &l3, &r3, &n3);
    char p[4300];
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (fuzz_write(p, cfg, l1)) return 0;
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    if (l2 || n2) { if (fuzz_write(p, idx, l2)) return 0; }
    else unlink(p);
    snprintf(p, sizeof p, "%s/model-00001-of-00001.safetensors", dir);
    if (fuzz_write(p, shard, l3)) return 0;

    dsv4_model_info *in = NULL;
    char *err = NULL;
    dsv4_status st = dsv4_model_info_from_dir(dir, NULL, &in, &err);
    FUZZ_ASSERT(st == DSV4_OK ? in != NULL : in == NULL && err != NULL, "info status %d", st);
    if (in) {
        static const int64_t ctxs[] = { 0, 1, 4096, (int64_t)1 << 40, INT64_MAX };
        for (int i = 0; i < 5; i++) {
            int64_t kv = -1, ram = -1;
            dsv4_status ms = dsv4_model_info_memory(in, ctxs[i], DSV4_NUMERICS_FLOAT, &kv, &ram);
            FUZZ_ASSERT(ms == DSV4_ERR_INVALID_ARGUMENT || (ms == DSV4_OK && kv >= 0 && ram >= kv),
                        "memory at %lld: status %d kv %lld ram %lld", (long long)ctxs[i], ms, (long long)kv,
                        (long long)ram);
        }
        char *js = NULL;
        FUZZ_ASSERT(dsv4_model_info_to_json(in, &js) == DSV4_OK, "to_json");
        dsv4_free(js);
    }
    dsv4_model_info_free(in);
    dsv4_free(err);
    err = NULL;
    dsv4_model *m = NULL;
    st = dsv4_model_load(dir, NULL, &m, &err);
    FUZZ_ASSERT(st == DSV4_OK ? m != NULL : m == NULL && err != NULL, "load status %d", st);
    dsv4_model_free(m);
    dsv4_free(err);
    return 0;
}
