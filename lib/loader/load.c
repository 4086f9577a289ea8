/*
 * lib/loader/load.c — read-only mmap of the safetensors shards, header
 * validation, the index, and the check of every tensor against the table
 * the config implies (spec §3).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "loader/loader.h"

static const struct { const char *name; int dt; int size; } dtypes[] = {
    { "BF16", DSV4__DT_BF16, 2 }, { "F32", DSV4__DT_F32, 4 }, { "F8_E4M3", DSV4__DT_F8_E4M3, 1 },
    { "F8_E8M0", DSV4__DT_F8_E8M0, 1 }, { "I8", DSV4__DT_I8, 1 }, { "I64", DSV4__DT_I64, 8 },
    { "F16", DSV4__DT_F16, 2 }, { "I32", DSV4__DT_I32, 4 }, { "U8", DSV4__DT_U8, 1 },
};

const char *dsv4__dtype_name(int dt)
{
    for (size_t i = 0; i < DSV4__ARRAY_LEN(dtypes); i++)
        if (dtypes[i].dt == dt) return dtypes[i].name;
    return "?";
}

int dsv4__dtype_size(int dt)
{
    for (size_t i = 0; i < DSV4__ARRAY_LEN(dtypes); i++)
        if (dtypes[i].dt == dt) return dtypes[i].size;
    return 0;
}

int64_t dsv4__tensor_bytes(int dtype, int ndim, const int64_t *shape)
{
    int64_t n = dsv4__dtype_size(dtype);
    if (n == 0) return -1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || __builtin_mul_overflow(n, shape[i], &n)) return -1;
    }
    return n;
}

/* Read a whole small file (config, index) into a NUL-terminated buffer. */
dsv4_status dsv4__read_file(const char *path, char **out, size_t *len, dsv4__err *e)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return dsv4__fail(e, DSV4_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return dsv4__fail(e, DSV4_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size > (64 << 20)) {
        fclose(f);
        return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "%s: too large for a JSON file (%lld bytes)", path,
                          (long long)sb.st_size);
    }
    char *b = dsv4__malloc((size_t)sb.st_size + 1);
    if (!b) { fclose(f); return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "%s: out of memory", path); }
    size_t n = fread(b, 1, (size_t)sb.st_size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n != (size_t)sb.st_size) {
        dsv4__free(b);
        return dsv4__fail(e, DSV4_ERR_IO, "%s: read failed", path);
    }
    b[n] = 0;
    *out = b;
    *len = n;
    return DSV4_OK;
}

typedef struct { uint64_t b, e; int64_t idx; } range;
static int range_cmp(const void *a, const void *b)
{
    const range *x = a, *y = b;
    return x->b < y->b ? -1 : x->b > y->b ? 1 : (x->e < y->e ? -1 : x->e > y->e);
}

/* Map one shard and append its tensors to m->tensors. */
static dsv4_status parse_shard(dsv4__checkpoint *m, int si, int prefetch, dsv4__err *e)
{
    dsv4__shard *sh = &m->shards[si];
    int fd = open(sh->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dsv4__fail(e, DSV4_ERR_IO, "%s: cannot open: %s", sh->path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return dsv4__fail(e, DSV4_ERR_IO, "%s: not a regular file", sh->path);
    }
    sh->size = (uint64_t)sb.st_size;
    if (sh->size < 8) {
        close(fd);
        return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "%s: truncated (%llu bytes, no safetensors header)",
                          sh->path, (unsigned long long)sh->size);
    }
    void *map = mmap(NULL, sh->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return dsv4__fail(e, DSV4_ERR_IO, "%s: mmap failed: %s", sh->path, strerror(errno));
    sh->map = map;
    if (prefetch) madvise(map, sh->size, MADV_WILLNEED);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | sh->map[i];
    if (hlen > sh->size - 8 || hlen < 2)
        return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "%s: header length %llu past the end of the file (%llu bytes)",
                          sh->path, (unsigned long long)hlen, (unsigned long long)sh->size);
    uint64_t data0 = 8 + hlen, dlen = sh->size - data0;
    json_error_t jerr;
    json_t *h = json_loadb((const char *)sh->map + 8, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!h || !json_is_object(h)) {
        json_decref(h);
        return dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "%s: invalid safetensors header JSON: %s", sh->path,
                          h ? "not an object" : jerr.text);
    }
    size_t nt = json_object_size(h);
    dsv4__tensor *nts = dsv4__realloc(m->tensors, (size_t)(m->n_tensors + (int64_t)nt + 1) * sizeof *nts);
    range *rg = dsv4__malloc((nt + 1) * sizeof *rg);
    if (!nts || !rg) {
        if (nts) m->tensors = nts;
        dsv4__free(rg);
        json_decref(h);
        return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "%s: out of memory", sh->path);
    }
    m->tensors = nts;
    size_t nr = 0;
    dsv4_status st = DSV4_OK;
    const char *key;
    json_t *v;
    json_object_foreach(h, key, v) {
        if (strcmp(key, "__metadata__") == 0) continue;
        json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
               *jo = json_object_get(v, "data_offsets");
        if (!json_is_object(v) || !json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) ||
            json_array_size(jo) != 2 || json_array_size(js) > 4) {
            st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "%s: tensor \"%s\": malformed header entry", sh->path, key);
            break;
        }
        int dt = 0;
        for (size_t i = 0; i < DSV4__ARRAY_LEN(dtypes); i++)
            if (strcmp(json_string_value(jd), dtypes[i].name) == 0) dt = dtypes[i].dt;
        if (!dt) {
            st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "%s: tensor \"%s\": unknown dtype \"%s\"", sh->path, key,
                            json_string_value(jd));
            break;
        }
        dsv4__tensor *t = &m->tensors[m->n_tensors];
        memset(t, 0, sizeof *t);
        t->dtype = dt;
        t->ndim = (int32_t)json_array_size(js);
        int okshape = 1;
        for (int i = 0; i < t->ndim; i++) {
            json_t *d = json_array_get(js, (size_t)i);
            if (!json_is_integer(d) || json_integer_value(d) < 0) okshape = 0;
            else t->shape[i] = json_integer_value(d);
        }
        json_t *b0 = json_array_get(jo, 0), *b1 = json_array_get(jo, 1);
        if (!okshape || !json_is_integer(b0) || !json_is_integer(b1) || json_integer_value(b0) < 0 ||
            json_integer_value(b1) < json_integer_value(b0)) {
            st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "%s: tensor \"%s\": invalid shape or data_offsets", sh->path, key);
            break;
        }
        uint64_t b = (uint64_t)json_integer_value(b0), en = (uint64_t)json_integer_value(b1);
        int64_t want = dsv4__tensor_bytes(dt, t->ndim, t->shape);
        if (want < 0 || (uint64_t)want != en - b) {
            st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT,
                            "%s: tensor \"%s\": byte range [%llu, %llu) holds %llu bytes, shape x %s needs %lld",
                            sh->path, key, (unsigned long long)b, (unsigned long long)en,
                            (unsigned long long)(en - b), json_string_value(jd), (long long)want);
            break;
        }
        if (en > dlen) {
            st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT,
                            "%s: tensor \"%s\": byte range [%llu, %llu) past the end of the data (%llu bytes; file truncated?)",
                            sh->path, key, (unsigned long long)b, (unsigned long long)en, (unsigned long long)dlen);
            break;
        }
        t->name = dsv4__strdup(key);
        if (!t->name) { st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory"); break; }
        t->nbytes = en - b;
        t->data = sh->map + data0 + b;
        t->offset = data0 + b;
        t->shard = si;
        rg[nr].b = b; rg[nr].e = en; rg[nr].idx = m->n_tensors;
        nr++;
        m->n_tensors++;
    }
    if (st == DSV4_OK) {
        qsort(rg, nr, sizeof *rg, range_cmp);
        for (size_t i = 1; i < nr; i++) {
            if (rg[i].b < rg[i - 1].e && rg[i].e > rg[i].b) {
                st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "%s: tensors \"%s\" and \"%s\" overlap at byte %llu",
                                sh->path, m->tensors[rg[i - 1].idx].name, m->tensors[rg[i].idx].name,
                                (unsigned long long)(data0 + rg[i].b));
                break;
            }
        }
    }
    dsv4__free(rg);
    json_decref(h);
    return st;
}

static int tensor_cmp(const void *a, const void *b)
{
    return strcmp(((const dsv4__tensor *)a)->name, ((const dsv4__tensor *)b)->name);
}

const dsv4__tensor *dsv4__checkpoint_tensor(const dsv4__checkpoint *m, const char *name)
{
    int64_t lo = 0, hi = m->n_tensors - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->tensors[mid].name, name);
        if (c == 0) return &m->tensors[mid];
        if (c < 0) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

static char *path_join(const char *dir, const char *file)
{
    size_t a = strlen(dir), b = strlen(file);
    char *p = dsv4__malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, file, b + 1);
    return p;
}

void dsv4__checkpoint_close(dsv4__checkpoint *m)
{
    if (!m) return;
    for (int64_t i = 0; i < m->n_tensors; i++) dsv4__free((void *)m->tensors[i].name);
    dsv4__free(m->tensors);
    for (int i = 0; i < m->n_shards; i++) {
        if (m->shards[i].map) munmap((void *)m->shards[i].map, m->shards[i].size);
        dsv4__free(m->shards[i].path);
    }
    dsv4__free(m->shards);
    dsv4__free(m->dir);
    dsv4__free(m->tokenizer_json);
    dsv4__free(m->tokenizer_config_json);
    dsv4__free(m);
}

/* shard list from the index (unique file names, in order of first use) */
static dsv4_status read_index(dsv4__checkpoint *m, json_t **index_out, dsv4__err *e)
{
    *index_out = NULL;
    char *ip = path_join(m->dir, "model.safetensors.index.json");
    if (!ip) return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory");
    dsv4_status st = DSV4_OK;
    if (access(ip, F_OK) != 0) {
        /* a single unsharded file */
        m->shards = dsv4__calloc(1, sizeof *m->shards);
        char *sp = path_join(m->dir, "model.safetensors");
        if (!m->shards || !sp) { dsv4__free(sp); dsv4__free(ip); return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory"); }
        if (access(sp, F_OK) != 0) {
            st = dsv4__fail(e, DSV4_ERR_IO, "%s: neither model.safetensors.index.json nor model.safetensors exists",
                            m->dir);
            dsv4__free(sp);
        } else {
            m->shards[0].path = sp;
            m->n_shards = 1;
        }
        dsv4__free(ip);
        return st;
    }
    char *text = NULL;
    size_t len = 0;
    if ((st = dsv4__read_file(ip, &text, &len, e))) { dsv4__free(ip); return st; }
    json_error_t jerr;
    json_t *idx = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    dsv4__free(text);
    json_t *wm = idx ? json_object_get(idx, "weight_map") : NULL;
    if (!json_is_object(wm)) {
        st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "%s: %s", ip, idx ? "no \"weight_map\" object" : jerr.text);
        json_decref(idx);
        dsv4__free(ip);
        return st;
    }
    size_t n = json_object_size(wm);
    m->shards = dsv4__calloc(n ? n : 1, sizeof *m->shards);
    if (!m->shards) { json_decref(idx); dsv4__free(ip); return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory"); }
    const char *key;
    json_t *v;
    json_object_foreach(wm, key, v) {
        const char *f = json_string_value(v);
        if (!f || strchr(f, '/') || strcmp(f, "..") == 0 || !*f) {
            st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "%s: weight_map[\"%s\"] is not a file name in the directory", ip, key);
            break;
        }
        int found = 0;
        for (int i = 0; i < m->n_shards && !found; i++) {
            const char *base = strrchr(m->shards[i].path, '/') + 1;
            found = strcmp(base, f) == 0;
        }
        if (!found) {
            char *sp = path_join(m->dir, f);
            if (!sp) { st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory"); break; }
            m->shards[m->n_shards++].path = sp;
        }
    }
    dsv4__free(ip);
    if (st) { json_decref(idx); return st; }
    *index_out = idx;
    return DSV4_OK;
}

typedef struct {
    dsv4__checkpoint *m;
    uint8_t *seen;
    int with_mtp;
    dsv4_status st;
    dsv4__err *e;
    int keep_going;   /* record the first error, go on marking the tensors seen */
    int failed;
} check_ctx;

static int check_one_(check_ctx *c, const dsv4__expected *x);
static int check_one(void *user, const dsv4__expected *x)
{
    check_ctx *c = user;
    if (!c->keep_going) return check_one_(c, x);
    dsv4__err scratch = { 0, "" }, *keep = c->e;
    if (c->failed) c->e = &scratch;
    dsv4_status st0 = c->st;
    if (check_one_(c, x)) {
        if (c->failed) c->st = st0;
        c->failed = 1;
    }
    c->e = keep;
    return 0;
}

static int check_one_(check_ctx *c, const dsv4__expected *x)
{
    const dsv4__tensor *t = dsv4__checkpoint_tensor(c->m, x->name);
    if (!t) {
        c->st = dsv4__fail(c->e, DSV4_ERR_MISSING_TENSOR, "%s: tensor \"%s\" (%s [%lld%s%.0lld]) is missing",
                           c->m->dir, x->name, dsv4__dtype_name(x->dtype), (long long)x->shape[0],
                           x->ndim == 2 ? ", " : "", x->ndim == 2 ? (long long)x->shape[1] : 0LL);
        return 1;
    }
    c->seen[t - c->m->tensors] = 1;
    int ok = t->dtype == x->dtype && t->ndim == x->ndim && t->shape[0] == x->shape[0] &&
             (x->ndim == 1 || t->shape[1] == x->shape[1]);
    if (!ok) {
        c->st = dsv4__fail(c->e, DSV4_ERR_TENSOR_MISMATCH,
                           "%s (byte %llu): tensor \"%s\" is %s [%lld, %lld] (ndim %d), expected %s [%lld, %lld] (ndim %d)",
                           c->m->shards[t->shard].path, (unsigned long long)t->offset, x->name,
                           dsv4__dtype_name(t->dtype), (long long)t->shape[0], (long long)t->shape[1], t->ndim,
                           dsv4__dtype_name(x->dtype), (long long)x->shape[0], (long long)x->shape[1], x->ndim);
        return 1;
    }
    if (x->dtype == DSV4__DT_I64 && (x->role & DSV4__ROLE_HASH)) {
        int64_t n = t->shape[0] * t->shape[1];
        for (int64_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, t->data + i * 8, 8);
            if (v < 0 || v >= c->m->cfg.n_routed_experts) {
                c->st = dsv4__fail(c->e, DSV4_ERR_TENSOR_MISMATCH,
                                   "%s (byte %llu): tensor \"%s\" entry %lld = %lld is not an expert id < %d",
                                   c->m->shards[t->shard].path, (unsigned long long)(t->offset + (uint64_t)i * 8),
                                   x->name, (long long)i, (long long)v, c->m->cfg.n_routed_experts);
                return 1;
            }
        }
    }
    return 0;
}

static int probe_scale(void *user, const dsv4__expected *x)
{
    /* Flash-Base style F32 block scales: detected from the first FP8 scale */
    dsv4__checkpoint *m = user;
    if ((x->role & DSV4__ROLE_SCALE) && !(x->role & DSV4__ROLE_EXPERT && !m->cfg.expert_fp8)) {
        const dsv4__tensor *t = dsv4__checkpoint_tensor(m, x->name);
        if (t) m->cfg.scale_f32 = t->dtype == DSV4__DT_F32;
        return 1;
    }
    return 0;
}

dsv4_status dsv4__checkpoint_open(const char *dir, const dsv4_options *opts, dsv4__checkpoint **out, dsv4__err *e)
{
    *out = NULL;
    dsv4__checkpoint *m = dsv4__calloc(1, sizeof *m);
    if (!m) return dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory");
    m->log = dsv4__opt_log(opts);
    m->dir = dsv4__strdup(dir);
    json_t *idx = NULL;
    uint8_t *seen = NULL;
    dsv4_status st = DSV4_OK;
    dsv4_progress_fn progress = opts ? opts->progress : NULL;
    void *puser = opts ? opts->progress_user : NULL;
    if (!m->dir) { st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory"); goto fail; }
    {
        char *cp = path_join(dir, "config.json"), *text = NULL;
        size_t len = 0;
        if (!cp) { st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory"); goto fail; }
        st = dsv4__read_file(cp, &text, &len, e);
        if (!st) st = dsv4__config_parse(text, len, cp, &m->cfg, e);
        dsv4__free(text);
        dsv4__free(cp);
        if (st) goto fail;
    }
    if ((st = read_index(m, &idx, e))) goto fail;
    int prefetch = (int)dsv4__opt_i64(opts, DSV4_OPT_PREFETCH);
    for (int i = 0; i < m->n_shards; i++) {
        if ((st = parse_shard(m, i, prefetch, e))) goto fail;
        if (progress && progress(puser, 0.9 * (i + 1) / m->n_shards) != 0) {
            st = dsv4__fail(e, DSV4_ERR_ABORTED, "%s: load aborted by the progress callback", dir);
            goto fail;
        }
    }
    qsort(m->tensors, (size_t)m->n_tensors, sizeof *m->tensors, tensor_cmp);
    for (int64_t i = 1; i < m->n_tensors; i++) {
        if (strcmp(m->tensors[i].name, m->tensors[i - 1].name) == 0) {
            st = dsv4__fail(e, DSV4_ERR_BAD_FORMAT, "%s: tensor \"%s\" is stored twice (%s and %s)", dir,
                            m->tensors[i].name, m->shards[m->tensors[i - 1].shard].path,
                            m->shards[m->tensors[i].shard].path);
            goto fail;
        }
    }
    if (idx) {
        /* every indexed tensor is in the shard the index names */
        const char *key;
        json_t *v;
        json_object_foreach(json_object_get(idx, "weight_map"), key, v) {
            const dsv4__tensor *t = dsv4__checkpoint_tensor(m, key);
            const char *base = t ? strrchr(m->shards[t->shard].path, '/') + 1 : NULL;
            if (!t || strcmp(base, json_string_value(v)) != 0) {
                st = dsv4__fail(e, t ? DSV4_ERR_BAD_FORMAT : DSV4_ERR_MISSING_TENSOR,
                                "%s/model.safetensors.index.json: tensor \"%s\" is not in %s%s%s", dir, key,
                                json_string_value(v), t ? " but in " : "", t ? base : "");
                goto fail;
            }
        }
        if ((int64_t)json_object_size(json_object_get(idx, "weight_map")) != m->n_tensors) {
            for (int64_t i = 0; i < m->n_tensors; i++) {
                if (!json_object_get(json_object_get(idx, "weight_map"), m->tensors[i].name)) {
                    st = dsv4__fail(e, DSV4_ERR_TENSOR_MISMATCH,
                                    "%s (byte %llu): tensor \"%s\" is not listed in model.safetensors.index.json",
                                    m->shards[m->tensors[i].shard].path, (unsigned long long)m->tensors[i].offset,
                                    m->tensors[i].name);
                    goto fail;
                }
            }
        }
    }
    dsv4__expected_tensors(&m->cfg, 0, probe_scale, m);
    /* unexpected tensors first: another MTP layout disables MTP */
    int want_mtp = m->cfg.n_mtp_layers > 0 && dsv4__opt_i64(opts, DSV4_OPT_LOAD_MTP) != 0;
    seen = dsv4__calloc((size_t)m->n_tensors + 1, 1);
    if (!seen) { st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory"); goto fail; }
    check_ctx cc = { m, seen, want_mtp, DSV4_OK, e, 0, 0 };
    if (dsv4__expected_tensors(&m->cfg, 0, check_one, &cc)) { st = cc.st; goto fail; }
    int other_mtp = 0;
    if (want_mtp) {
        uint8_t *seen2 = dsv4__malloc((size_t)m->n_tensors + 1);
        if (!seen2) { st = dsv4__fail(e, DSV4_ERR_OUT_OF_MEMORY, "out of memory"); goto fail; }
        memcpy(seen2, seen, (size_t)m->n_tensors + 1);
        check_ctx mc = { m, seen2, 1, DSV4_OK, e, 1, 0 };
        dsv4__err e2 = { 0, "" };
        mc.e = &e2;
        /* trunk again (cheap) plus the MTP block */
        dsv4__expected_tensors(&m->cfg, 1, check_one, &mc);
        int failed = mc.failed;
        /* mtp.* tensors the MTP table does not explain */
        int any_mtp_extra = 0;
        for (int64_t i = 0; i < m->n_tensors && !any_mtp_extra; i++) {
            const char *n = m->tensors[i].name;
            size_t ln = strlen(n);
            if (strncmp(n, "mtp.", 4) == 0 && !seen2[i] && !strstr(n, "emb") &&
                !(ln >= 11 && strcmp(n + ln - 11, "head.weight") == 0))
                any_mtp_extra = 1;
        }
        if (any_mtp_extra) {
            other_mtp = 1;
            /* the V4-Flash-0731 trunk ships a drafter of another layout in place of the MTP block */
            if (m->cfg.variant == DSV4_VARIANT_FLASH) m->cfg.variant = DSV4_VARIANT_FLASH_0731;
            dsv4__logf(&m->log, DSV4_LOG_WARN, "%s: the checkpoint's MTP block has another layout; MTP disabled",
                       dir);
        } else if (failed) {
            *e = e2; /* a genuine problem in the MTP block */
            st = mc.st;
            dsv4__free(seen2);
            goto fail;
        } else {
            memcpy(seen, seen2, (size_t)m->n_tensors + 1);
            m->has_mtp = 1;
        }
        dsv4__free(seen2);
    }
    for (int64_t i = 0; i < m->n_tensors; i++) {
        if (seen[i]) continue;
        const char *n = m->tensors[i].name;
        if (strncmp(n, "mtp.", 4) == 0) {
            if (!want_mtp || other_mtp || strstr(n, "emb") ||
                (strlen(n) >= 11 && strcmp(n + strlen(n) - 11, "head.weight") == 0))
                continue; /* skipped, or duplicates of the shared embedding/head */
        }
        st = dsv4__fail(e, DSV4_ERR_TENSOR_MISMATCH, "%s (byte %llu): unexpected tensor \"%s\" (%s)",
                        m->shards[m->tensors[i].shard].path, (unsigned long long)m->tensors[i].offset, n,
                        dsv4__dtype_name(m->tensors[i].dtype));
        goto fail;
    }
    /* tokenizer files, when present */
    {
        char *tp = path_join(dir, "tokenizer.json"), *tc = path_join(dir, "tokenizer_config.json");
        if (tp && access(tp, R_OK) == 0) m->tokenizer_json = tp; else dsv4__free(tp);
        if (tc && access(tc, R_OK) == 0) m->tokenizer_config_json = tc; else dsv4__free(tc);
    }
    dsv4__free(seen);
    json_decref(idx);
    *out = m;
    return DSV4_OK;
fail:
    dsv4__free(seen);
    json_decref(idx);
    dsv4__checkpoint_close(m);
    return st;
}
