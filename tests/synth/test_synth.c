/* tests/synth/test_synth.c — runs the dsv4-synth tool (path in argv[1]) and
 * checks determinism, tensor inventory against golden tiny-a, and the
 * encoded data (E8M0 bytes, FP4 nibbles, exact data coverage). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../testutil.h"

typedef struct { char name[160]; char dtype[16]; long long shape[2]; int ndim; unsigned long long a, b; } ent_t;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) { free(p); p = NULL; }
    fclose(f);
    if (p) { p[n] = 0; *len = (size_t)n; }
    return p;
}

static int run(const char *tool, const char *args)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s >/dev/null 2>&1", tool, args);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* parse a safetensors file header; returns entries and data-section info */
static int parse(const char *path, ent_t **out, int *n, unsigned char **file, size_t *flen, size_t *dstart)
{
    size_t len;
    unsigned char *p = (unsigned char *)slurp(path, &len);
    if (!p || len < 8) { free(p); return -1; }
    unsigned long long hl = 0;
    for (int i = 0; i < 8; i++) hl |= (unsigned long long)p[i] << (8 * i);
    if (hl > len - 8) { free(p); return -1; }
    char *h = malloc(hl + 1);
    if (!h) { free(p); return -1; }
    memcpy(h, p + 8, hl); h[hl] = 0;
    int cap = 64, cnt = 0;
    ent_t *e = malloc(sizeof *e * (size_t)cap);
    char *s = h;
    while (e && (s = strstr(s, "\"dtype\"")) != NULL) {
        /* name: the quoted key before this object's '{' */
        char *brace = s;
        while (brace > h && *brace != '{') brace--;
        char *q2 = brace; while (q2 > h && *q2 != '"') q2--;
        char *q1 = q2 - 1; while (q1 > h && *q1 != '"') q1--;
        if (cnt == cap) { cap *= 2; ent_t *ne = realloc(e, sizeof *e * (size_t)cap); if (!ne) break; e = ne; }
        ent_t *t = &e[cnt++];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%.*s", (int)(q2 - q1 - 1), q1 + 1);
        sscanf(strchr(s + 7, '"') + 1, "%15[^\"]", t->dtype);
        char *sh = strchr(strstr(s, "\"shape\""), '[') + 1;
        t->ndim = sscanf(sh, "%lld , %lld", &t->shape[0], &t->shape[1]);
        if (strchr(sh, ']') < strchr(sh, ',')) t->ndim = 1;
        sscanf(strchr(strstr(s, "\"data_offsets\""), '[') + 1, "%llu , %llu", &t->a, &t->b);
        s++;
    }
    free(h);
    *out = e; *n = cnt; *file = p; *flen = len; *dstart = 8 + hl;
    return 0;
}

static int load_dir(const char *dir, int nshards, ent_t **all, int *nall, int check_data)
{
    *all = NULL; *nall = 0;
    for (int s = 1; s <= nshards; s++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, s, nshards);
        ent_t *e; int n; unsigned char *f; size_t flen, ds;
        if (parse(path, &e, &n, &f, &flen, &ds) != 0) { CHECK(0, "cannot parse %s", path); return -1; }
        if (check_data) {
            /* data section exactly covered: sort offsets, check contiguity */
            unsigned long long covered = 0, maxb = 0;
            int bad255 = 0;
            for (int i = 0; i < n; i++) {
                covered += e[i].b - e[i].a;
                if (e[i].b > maxb) maxb = e[i].b;
                if (!strcmp(e[i].dtype, "F8_E8M0"))
                    for (unsigned long long k = e[i].a; k < e[i].b; k++) bad255 += f[ds + k] == 255;
            }
            /* every e2m1 code decodes to a finite value; check the packing
             * fills both nibbles */
            int anylo = 0, anyhi = 0;
            for (int i = 0; i < n; i++)
                if (!strcmp(e[i].dtype, "I8"))
                    for (unsigned long long k = e[i].a; k < e[i].b; k++) {
                        anylo |= (f[ds + k] & 7) != 0; anyhi |= (f[ds + k] & 0x70) != 0;
                    }
            if (n && strstr(dir, "fp4")) CHECK(anylo && anyhi, "fp4 nibbles populated in %s", path);
            CHECK(bad255 == 0, "%d E8M0 bytes equal 255 in %s", bad255, path);
            CHECK(covered == maxb && maxb == flen - ds, "data section of %s covered exactly", path);
            for (int i = 0; i < n; i++)
                for (int j = i + 1; j < n; j++)
                    if (e[i].a < e[j].b && e[j].a < e[i].b && e[i].b > e[i].a && e[j].b > e[j].a)
                        CHECK(0, "overlap %s / %s", e[i].name, e[j].name);
        }
        free(f);
        ent_t *na = realloc(*all, sizeof(ent_t) * (size_t)(*nall + n));
        if (!na) { free(e); return -1; }
        *all = na;
        memcpy(*all + *nall, e, sizeof(ent_t) * (size_t)n);
        *nall += n;
        free(e);
    }
    return 0;
}

static int same_file(const char *a, const char *b)
{
    size_t la, lb;
    char *x = slurp(a, &la), *y = slurp(b, &lb);
    int same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x); free(y);
    return same;
}

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: test_synth PATH-TO-dsv4-synth\n"); return 2; }
    const char *tool = argv[1];
    char *tmp = test_tmpdir("synth");
    CHECK(tmp != NULL, "tmpdir");
    if (!tmp) return test_summary();
    char args[8192], d1[4096], d2[4096], d3[4096], d4[4096];
    snprintf(d1, sizeof d1, "%s/fp4a", tmp);
    snprintf(d2, sizeof d2, "%s/fp4b", tmp);
    snprintf(d3, sizeof d3, "%s/fp4c", tmp);
    snprintf(d4, sizeof d4, "%s/f8", tmp);
    snprintf(args, sizeof args, "--preset tiny --vocab 512 --seed 5 --out '%s'", d1);
    CHECK_EQ_INT(run(tool, args), 0, "tiny run 1");
    snprintf(args, sizeof args, "--preset tiny --vocab 512 --seed 5 --out '%s'", d2);
    CHECK_EQ_INT(run(tool, args), 0, "tiny run 2");
    snprintf(args, sizeof args, "--preset tiny --vocab 512 --seed 6 --out '%s'", d3);
    CHECK_EQ_INT(run(tool, args), 0, "tiny run 3");
    const char *files[] = {"config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
                           "model-00002-of-00002.safetensors"};
    for (int i = 0; i < 4; i++) {
        char a[4200], b[4200], c[4200];
        snprintf(a, sizeof a, "%s/%s", d1, files[i]);
        snprintf(b, sizeof b, "%s/%s", d2, files[i]);
        snprintf(c, sizeof c, "%s/%s", d3, files[i]);
        CHECK(same_file(a, b), "same seed gives identical %s", files[i]);
        if (i >= 2) CHECK(!same_file(a, c), "different seed gives different %s", files[i]);
    }
    /* inventory vs golden tiny-a */
    char gdir[4096];
    snprintf(gdir, sizeof gdir, "%s/golden/tiny-a/ckpt", test_shared_dir());
    ent_t *g, *m; int ng, nm;
    if (load_dir(gdir, 2, &g, &ng, 0) == 0 && load_dir(d1, 2, &m, &nm, 1) == 0) {
        CHECK(ng > 100, "golden has %d tensors", ng);
        CHECK_EQ_INT(nm, ng, "tensor count");
        int miss = 0;
        for (int i = 0; i < ng; i++) {
            int found = 0;
            for (int j = 0; j < nm; j++)
                if (!strcmp(g[i].name, m[j].name)) {
                    found = !strcmp(g[i].dtype, m[j].dtype) && g[i].ndim == m[j].ndim &&
                            g[i].shape[0] == m[j].shape[0] && (g[i].ndim == 1 || g[i].shape[1] == m[j].shape[1]);
                    break;
                }
            if (!found) { miss++; CHECK(0, "no counterpart for %s", g[i].name); }
        }
        CHECK(miss == 0, "every golden tensor matched");
        free(g); free(m);
    }
    /* fp8 experts + more shards */
    snprintf(args, sizeof args, "--preset tiny --vocab 512 --expert-dtype fp8 --shards 3 --no-mtp --out '%s'", d4);
    CHECK_EQ_INT(run(tool, args), 0, "fp8 run");
    if (load_dir(d4, 3, &m, &nm, 1) == 0) {
        int fp4 = 0, f32s = 0, mtp = 0;
        for (int j = 0; j < nm; j++) {
            fp4 += !strcmp(m[j].dtype, "I8");
            mtp += !strncmp(m[j].name, "mtp.", 4);
            f32s += strstr(m[j].name, ".scale") && !strcmp(m[j].dtype, "F32");
        }
        CHECK(fp4 == 0 && mtp == 0 && f32s > 0, "fp8 experts: %d I8, %d mtp, %d F32 scales", fp4, mtp, f32s);
        free(m);
    }
    /* bad arguments */
    CHECK_EQ_INT(run(tool, "--preset nope --out /tmp/x"), 2, "bad preset");
    CHECK_EQ_INT(run(tool, "--preset tiny"), 2, "missing --out");
    snprintf(args, sizeof args, "--preset tiny --experts 1 --out '%s/bad'", tmp);
    CHECK_EQ_INT(run(tool, args), 2, "too few experts");
    test_rmtree(tmp);
    free(tmp);
    return test_summary();
}
