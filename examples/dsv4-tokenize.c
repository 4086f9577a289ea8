/*
 * dsv4-tokenize — encode text to token ids or decode ids to text.
 *
 *   dsv4-tokenize TOKENIZER_JSON encode FILE|- [--bos] [--no-special] [--pieces]
 *       prints {"ids":[...]} (with --pieces also "pieces":[...], each the
 *       token's bytes as a JSON string; bytes that are not valid UTF-8 on
 *       their own are written as \u00XX escapes of the raw byte values)
 *   dsv4-tokenize TOKENIZER_JSON decode IDS.json|-
 *   dsv4-tokenize TOKENIZER_JSON chat REQUEST.json|-
 *       renders a chat request (OpenAI chat-completions style, see
 *       dsv4_chat_render) to the exact prompt; prints {"prompt":...,"ids":[...]}
 *       IDS.json holds a JSON array of ids, or an object with an "ids" array;
 *       prints the decoded bytes
 */
#include <dsv4/dsv4.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void)
{
    fprintf(stderr, "usage: dsv4-tokenize TOKENIZER_JSON encode FILE|- [--bos] [--no-special] [--pieces]\n"
                    "       dsv4-tokenize TOKENIZER_JSON decode IDS.json|-\n"
                    "       dsv4-tokenize TOKENIZER_JSON chat REQUEST.json|-\n");
    return 2;
}

static char *read_all(const char *path, size_t *n)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap);
    while (b) {
        if (len == cap) {
            char *nb = realloc(b, cap * 2);
            if (!nb) { free(b); b = NULL; break; }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
    }
    if (f != stdin) fclose(f);
    *n = len;
    return b;
}

static void put_json_string(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c < 0x20) printf("\\u%04x", c);
        else if (c >= 0x80) {
            /* copy a complete valid sequence, else escape the byte */
            size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
            size_t k = 1;
            while (need && k < need && i + k < n && ((unsigned char)s[i + k] & 0xC0) == 0x80) k++;
            if (need && k == need && c <= 0xF4) {
                fwrite(s + i, 1, need, stdout);
                i += need - 1;
            } else {
                printf("\\u%04x", c);
            }
        } else putchar(c);
    }
    putchar('"');
}

static int do_encode(dsv4_tokenizer *tok, const char *path, int bos, int nospecial, int pieces)
{
    size_t n;
    char *text = read_all(path, &n);
    if (!text) { fprintf(stderr, "dsv4-tokenize: cannot read %s\n", path); return 1; }
    uint32_t flags = (bos ? DSV4_ENCODE_ADD_BOS : 0) | (nospecial ? DSV4_ENCODE_NO_SPECIAL : 0);
    size_t cap = n + 2, n_ids = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    char *err = NULL;
    dsv4_status st = ids ? dsv4_tokenizer_encode(tok, text, n, flags, ids, cap, &n_ids, &err) : DSV4_ERR_OUT_OF_MEMORY;
    if (st) {
        fprintf(stderr, "dsv4-tokenize: %s: %s\n", dsv4_status_string(st), err ? err : "");
        dsv4_free(err);
        free(ids);
        free(text);
        return 1;
    }
    fputs("{\"ids\":[", stdout);
    for (size_t i = 0; i < n_ids; i++) printf(i ? ",%d" : "%d", ids[i]);
    putchar(']');
    if (pieces) {
        fputs(",\"pieces\":[", stdout);
        char buf[4096];
        for (size_t i = 0; i < n_ids; i++) {
            size_t l = 0;
            if (i) putchar(',');
            if (dsv4_tokenizer_token_to_piece(tok, ids[i], buf, sizeof buf, &l) == DSV4_OK)
                put_json_string(buf, l);
            else
                fputs("null", stdout);
        }
        putchar(']');
    }
    fputs("}\n", stdout);
    free(ids);
    free(text);
    return 0;
}

static int do_chat(dsv4_tokenizer *tok, const char *path)
{
    size_t n;
    char *req = read_all(path, &n);
    if (!req) { fprintf(stderr, "dsv4-tokenize: cannot read %s\n", path); return 1; }
    char *prompt = NULL, *err = NULL;
    dsv4_status st = dsv4_chat_render(req, n, &prompt, &err);
    free(req);
    if (st) {
        fprintf(stderr, "dsv4-tokenize: %s: %s\n", dsv4_status_string(st), err ? err : "");
        dsv4_free(err);
        return 1;
    }
    size_t len = strlen(prompt), cap = len + 2, n_ids = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    st = ids ? dsv4_tokenizer_encode(tok, prompt, len, 0, ids, cap, &n_ids, &err) : DSV4_ERR_OUT_OF_MEMORY;
    if (st) {
        fprintf(stderr, "dsv4-tokenize: %s: %s\n", dsv4_status_string(st), err ? err : "");
        dsv4_free(err);
        dsv4_free(prompt);
        free(ids);
        return 1;
    }
    fputs("{\"prompt\":", stdout);
    put_json_string(prompt, len);
    fputs(",\"ids\":[", stdout);
    for (size_t i = 0; i < n_ids; i++) printf(i ? ",%d" : "%d", ids[i]);
    fputs("]}\n", stdout);
    dsv4_free(prompt);
    free(ids);
    return 0;
}

static int do_decode(dsv4_tokenizer *tok, const char *path)
{
    size_t n;
    char *text = read_all(path, &n);
    if (!text) { fprintf(stderr, "dsv4-tokenize: cannot read %s\n", path); return 1; }
    /* accept [1,2,3] or {"ids":[1,2,3], ...}: take the first [...] list of integers */
    char *p = memchr(text, '[', n);
    size_t cap = n / 2 + 1, m = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    int ok = p && ids;
    if (ok) {
        char *end = text + n;
        p++;
        for (;;) {
            while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t' || *p == ',')) p++;
            if (p < end && *p == ']') break;
            if (p >= end || m == cap) { ok = 0; break; }
            char *q;
            long v = strtol(p, &q, 10);
            if (q == p || q > end || v < 0 || v > INT32_MAX) { ok = 0; break; }
            ids[m++] = (int32_t)v;
            p = q;
        }
    }
    free(text);
    if (!ok) {
        fprintf(stderr, "dsv4-tokenize: %s: expected a JSON array of token ids\n", path);
        free(ids);
        return 1;
    }
    size_t len = 0;
    dsv4_status st = dsv4_tokenizer_decode(tok, ids, m, NULL, 0, &len);
    char *out = NULL;
    if (st == DSV4_ERR_BUFFER_TOO_SMALL || st == DSV4_OK) {
        out = malloc(len + 1);
        st = out ? dsv4_tokenizer_decode(tok, ids, m, out, len, &len) : DSV4_ERR_OUT_OF_MEMORY;
    }
    if (st) {
        fprintf(stderr, "dsv4-tokenize: decode: %s (an id is out of range?)\n", dsv4_status_string(st));
        free(out);
        free(ids);
        return 1;
    }
    fwrite(out, 1, len, stdout);
    free(out);
    free(ids);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) return usage();
    int bos = 0, nospecial = 0, pieces = 0;
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--bos") == 0) bos = 1;
        else if (strcmp(argv[i], "--no-special") == 0) nospecial = 1;
        else if (strcmp(argv[i], "--pieces") == 0) pieces = 1;
        else return usage();
    }
    const char *cmd = argv[2];
    if (strcmp(cmd, "encode") != 0 && strcmp(cmd, "decode") != 0 && strcmp(cmd, "chat") != 0)
        return usage();
    dsv4_tokenizer *tok = NULL;
    char *err = NULL;
    dsv4_status st = dsv4_tokenizer_load(argv[1], NULL, &tok, &err);
    if (st) {
        fprintf(stderr, "dsv4-tokenize: %s: %s\n", dsv4_status_string(st), err ? err : "");
        dsv4_free(err);
        return 1;
    }
    int rc = strcmp(cmd, "encode") == 0 ? do_encode(tok, argv[3], bos, nospecial, pieces)
             : strcmp(cmd, "chat") == 0 ? do_chat(tok, argv[3]) : do_decode(tok, argv[3]);
    dsv4_tokenizer_free(tok);
    return rc;
}
