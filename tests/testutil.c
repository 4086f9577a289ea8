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

int test_light(void)
{
    const char *e = getenv("DSV4_TEST_LIGHT");
    return e && *e && strcmp(e, "0") != 0;
}

int test_reps(int full, int light)
{
    return test_light() ? light : full;
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

/* ---- .npy / .npz (golden data) ------------------------------------------ */

#include <zlib.h>

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = n > 0 ? malloc((size_t)n) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    *len = b ? (size_t)n : 0;
    return b;
}

/* parse an .npy image: f4 or i4, C order, 1-3 dims; returns a malloc'd copy of the data */
static void *npy_parse(const unsigned char *b, size_t len, char kind, int64_t *shape, int *ndim)
{
    if (len < 10 || memcmp(b, "\x93NUMPY", 6)) return NULL;
    size_t hl, off;
    if (b[6] == 1) { hl = b[8] | (size_t)b[9] << 8; off = 10; }
    else { if (len < 12) return NULL; hl = b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24; off = 12; }
    if (off + hl > len) return NULL;
    char hdr[1024];
    size_t n = hl < sizeof hdr - 1 ? hl : sizeof hdr - 1;
    memcpy(hdr, b + off, n);
    hdr[n] = 0;
    const char *want = kind == 'f' ? "'<f4'" : "'<i4'";
    if (!strstr(hdr, want) || strstr(hdr, "'fortran_order': True")) return NULL;
    const char *s = strstr(hdr, "'shape': (");
    if (!s) return NULL;
    s += 10;
    int d = 0;
    int64_t count = 1;
    while (*s && *s != ')' && d < 4) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s) break;
        shape[d++] = v;
        count *= v;
        s = end;
        while (*s == ',' || *s == ' ') s++;
    }
    *ndim = d;
    off += hl;
    if (off + (size_t)count * 4 > len) return NULL;
    void *out = malloc((size_t)count * 4 + 1);
    if (out) memcpy(out, b + off, (size_t)count * 4);
    return out;
}

void *test_load_npy(const char *path, char kind, int64_t *shape, int *ndim)
{
    size_t len;
    unsigned char *b = read_all(path, &len);
    if (!b) return NULL;
    void *out = npy_parse(b, len, kind, shape, ndim);
    free(b);
    return out;
}

static uint32_t le32(const unsigned char *p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

void *test_load_npz(const char *path, const char *member, char kind, int64_t *shape, int *ndim)
{
    size_t len;
    unsigned char *b = read_all(path, &len);
    if (!b) return NULL;
    void *out = NULL;
    char want[256];
    snprintf(want, sizeof want, "%s.npy", member);
    /* walk the central directory from the end-of-central-directory record */
    size_t eocd = len >= 22 ? len - 22 : 0;
    while (eocd > 0 && le32(b + eocd) != 0x06054b50) eocd--;
    if (le32(b + eocd) != 0x06054b50) goto done;
    size_t cd = le32(b + eocd + 16), entries = le16(b + eocd + 10);
    for (size_t i = 0; i < entries && cd + 46 <= len; i++) {
        if (le32(b + cd) != 0x02014b50) break;
        uint16_t method = le16(b + cd + 10), nl = le16(b + cd + 28), xl = le16(b + cd + 30), cl = le16(b + cd + 32);
        uint32_t csize = le32(b + cd + 20), usize = le32(b + cd + 24), lho = le32(b + cd + 42);
        if (nl == strlen(want) && !memcmp(b + cd + 46, want, nl) && lho + 30 <= len) {
            size_t data = lho + 30 + le16(b + lho + 26) + le16(b + lho + 28);
            if (data + csize > len) break;
            unsigned char *raw = malloc(usize ? usize : 1);
            if (!raw) break;
            int ok = 0;
            if (method == 0 && csize == usize) { memcpy(raw, b + data, usize); ok = 1; }
            else if (method == 8) {
                z_stream z;
                memset(&z, 0, sizeof z);
                if (inflateInit2(&z, -15) == Z_OK) {
                    z.next_in = b + data;
                    z.avail_in = csize;
                    z.next_out = raw;
                    z.avail_out = usize;
                    ok = inflate(&z, Z_FINISH) == Z_STREAM_END;
                    inflateEnd(&z);
                }
            }
            if (ok) out = npy_parse(raw, usize, kind, shape, ndim);
            free(raw);
            break;
        }
        cd += 46 + nl + xl + cl;
    }
done:
    free(b);
    return out;
}
