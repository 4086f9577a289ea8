/* dsv4-synth: writes synthetic DeepSeek-V4 checkpoints in the Hugging Face
 * layout (config.json, model.safetensors.index.json, sharded safetensors).
 * Standalone: depends on libc and libm only. Deterministic from --seed. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    int hidden, heads, head_dim, rope, q_lora, o_groups, o_lora, window;
    int index_heads, index_head_dim, index_topk, moe_inter, experts, topk;
    int shared, layers, hash_layers, vocab, mtp, hc, expert_fp8;
    int ratios[256];
    double routed_scale;
} cfg_t;

enum { DT_I64, DT_F32, DT_BF16, DT_E4M3, DT_E8M0, DT_I8, DT_SCALE_F32 };
static const char *dt_name[] = {"I64", "F32", "BF16", "F8_E4M3", "F8_E8M0", "I8", "F32"};
static const int dt_size[] = {8, 4, 2, 1, 1, 1, 4};

/* how a tensor's contents are produced */
enum { G_NORMAL, G_NORM1, G_UNIFORM, G_TID2EID, G_FP8W, G_FP8S, G_FP4W, G_FP4S };

typedef struct {
    char name[160];
    int dtype, gen, shard;
    int64_t shape[2];
    int ndim;
    double p0, p1;      /* std / mean / range */
    uint64_t stream;    /* PRNG stream for this tensor (weight+scale share it) */
    uint64_t off;       /* byte offset inside shard data section */
    int64_t wout, win;  /* logical [out, in] of the linear a weight/scale belongs to */
} tensor_t;

static tensor_t *T;
static int nT, capT;
static cfg_t C;
static uint64_t g_seed = 1;

static void die_oom(void) { fprintf(stderr, "dsv4-synth: out of memory\n"); exit(1); }

static tensor_t *add(const char *name, int dtype, int gen, int64_t d0, int64_t d1, int ndim,
                     double p0, double p1, uint64_t stream)
{
    if (nT == capT) {
        capT = capT ? capT * 2 : 1024;
        T = realloc(T, (size_t)capT * sizeof *T);
        if (!T) die_oom();
    }
    tensor_t *t = &T[nT++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype; t->gen = gen; t->shape[0] = d0; t->shape[1] = d1; t->ndim = ndim;
    t->p0 = p0; t->p1 = p1; t->stream = stream;
    return t;
}

static int64_t nelem(const tensor_t *t) { return t->ndim == 1 ? t->shape[0] : t->shape[0] * t->shape[1]; }
static int64_t nbytes(const tensor_t *t) { return nelem(t) * dt_size[t->dtype]; }
static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

static uint64_t stream_ctr;

static void lin_fp8(const char *pfx, int64_t out, int64_t in)
{
    char n[160];
    uint64_t s = ++stream_ctr;
    snprintf(n, sizeof n, "%s.scale", pfx);
    tensor_t *t = add(n, C.expert_fp8 ? DT_SCALE_F32 : DT_E8M0, G_FP8S, cdiv(out, 128), cdiv(in, 128), 2,
        1.0 / sqrt((double)in), 0, s);
    t->wout = out; t->win = in;
    snprintf(n, sizeof n, "%s.weight", pfx);
    t = add(n, DT_E4M3, G_FP8W, out, in, 2, 1.0 / sqrt((double)in), 0, s);
    t->wout = out; t->win = in;
}

static void lin_expert(const char *pfx, int64_t out, int64_t in)
{
    if (C.expert_fp8) { lin_fp8(pfx, out, in); return; }
    char n[160];
    uint64_t s = ++stream_ctr;
    snprintf(n, sizeof n, "%s.scale", pfx);
    tensor_t *t = add(n, DT_E8M0, G_FP4S, out, in / 32, 2, 1.0 / sqrt((double)in), 0, s);
    t->wout = out; t->win = in;
    snprintf(n, sizeof n, "%s.weight", pfx);
    t = add(n, DT_I8, G_FP4W, out, in / 2, 2, 1.0 / sqrt((double)in), 0, s);
    t->wout = out; t->win = in;
}

static void simple(const char *pfx, const char *suffix, int dt, int gen, int64_t d0, int64_t d1,
                   int ndim, double p0, double p1)
{
    char n[160];
    snprintf(n, sizeof n, "%s%s", pfx, suffix);
    add(n, dt, gen, d0, d1, ndim, p0, p1, ++stream_ctr);
}

static void compressor(const char *pfx, int ratio, int hd)
{
    int coff = ratio == 4 ? 2 : 1;
    int64_t H = C.hidden;
    simple(pfx, ".ape", DT_F32, G_NORMAL, ratio, (int64_t)coff * hd, 2, 0.1, 0);
    simple(pfx, ".norm.weight", DT_BF16, G_NORM1, hd, 0, 1, 0.1, 0);
    simple(pfx, ".wgate.weight", DT_BF16, G_NORMAL, (int64_t)coff * hd, H, 2, 1.0 / sqrt((double)H), 0);
    simple(pfx, ".wkv.weight", DT_BF16, G_NORMAL, (int64_t)coff * hd, H, 2, 1.0 / sqrt((double)H), 0);
}

static void hc_block(const char *pfx, const char *what, int mix)
{
    char s[64];
    int64_t hcH = (int64_t)C.hc * C.hidden;
    int64_t n = mix ? (int64_t)(2 + C.hc) * C.hc : C.hc;
    snprintf(s, sizeof s, "hc_%s_base", what);
    simple(pfx, s, DT_F32, G_NORMAL, n, 0, 1, 0.5, 0);
    snprintf(s, sizeof s, "hc_%s_fn", what);
    simple(pfx, s, DT_F32, G_NORMAL, n, hcH, 2, 0.01, 0);
    snprintf(s, sizeof s, "hc_%s_scale", what);
    simple(pfx, s, DT_F32, G_UNIFORM, mix ? 3 : 1, 0, 1, 0.5, 1.5);
}

static void block(const char *pfx, int ratio, int hash)
{
    char p[160];
    int64_t H = C.hidden, hd = C.head_dim, qd = (int64_t)C.heads * C.head_dim;
    simple(pfx, "attn.attn_sink", DT_F32, G_NORMAL, C.heads, 0, 1, 1.0, 0);
    simple(pfx, "attn.kv_norm.weight", DT_BF16, G_NORM1, hd, 0, 1, 0.1, 0);
    simple(pfx, "attn.q_norm.weight", DT_BF16, G_NORM1, C.q_lora, 0, 1, 0.1, 0);
    snprintf(p, sizeof p, "%sattn.wq_a", pfx); lin_fp8(p, C.q_lora, H);
    snprintf(p, sizeof p, "%sattn.wq_b", pfx); lin_fp8(p, qd, C.q_lora);
    snprintf(p, sizeof p, "%sattn.wkv", pfx); lin_fp8(p, hd, H);
    snprintf(p, sizeof p, "%sattn.wo_a", pfx); lin_fp8(p, (int64_t)C.o_groups * C.o_lora, qd / C.o_groups);
    snprintf(p, sizeof p, "%sattn.wo_b", pfx); lin_fp8(p, H, (int64_t)C.o_groups * C.o_lora);
    if (ratio > 0) {
        snprintf(p, sizeof p, "%sattn.compressor", pfx); compressor(p, ratio, (int)hd);
    }
    if (ratio == 4) {
        snprintf(p, sizeof p, "%sattn.indexer.compressor", pfx); compressor(p, ratio, C.index_head_dim);
        snprintf(p, sizeof p, "%sattn.indexer.wq_b", pfx);
        lin_fp8(p, (int64_t)C.index_heads * C.index_head_dim, C.q_lora);
        simple(pfx, "attn.indexer.weights_proj.weight", DT_BF16, G_NORMAL, C.index_heads, H, 2,
               1.0 / sqrt((double)H), 0);
    }
    simple(pfx, "attn_norm.weight", DT_BF16, G_NORM1, H, 0, 1, 0.1, 0);
    simple(pfx, "ffn_norm.weight", DT_BF16, G_NORM1, H, 0, 1, 0.1, 0);
    simple(pfx, "ffn.gate.weight", DT_BF16, G_NORMAL, C.experts, H, 2, 1.0 / sqrt((double)H), 0);
    if (hash)
        simple(pfx, "ffn.gate.tid2eid", DT_I64, G_TID2EID, C.vocab, C.topk, 2, 0, 0);
    else
        simple(pfx, "ffn.gate.bias", DT_F32, G_NORMAL, C.experts, 0, 1, 0.05, 0);
    for (int e = 0; e < C.experts; e++) {
        snprintf(p, sizeof p, "%sffn.experts.%d.w1", pfx, e); lin_expert(p, C.moe_inter, H);
        snprintf(p, sizeof p, "%sffn.experts.%d.w2", pfx, e); lin_expert(p, H, C.moe_inter);
        snprintf(p, sizeof p, "%sffn.experts.%d.w3", pfx, e); lin_expert(p, C.moe_inter, H);
    }
    int64_t si = (int64_t)C.moe_inter * C.shared;
    snprintf(p, sizeof p, "%sffn.shared_experts.w1", pfx); lin_fp8(p, si, H);
    snprintf(p, sizeof p, "%sffn.shared_experts.w2", pfx); lin_fp8(p, H, si);
    snprintf(p, sizeof p, "%sffn.shared_experts.w3", pfx); lin_fp8(p, si, H);
    hc_block(pfx, "attn", 1);
    hc_block(pfx, "ffn", 1);
}

/* ---- PRNG: xoshiro256** seeded per tensor stream via splitmix64 ---- */
typedef struct { uint64_t s[4]; int has; double spare; } rng_t;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static void rng_init(rng_t *r, uint64_t stream)
{
    uint64_t x = g_seed * 0xD1B54A32D192ED03ull ^ stream;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix(&x);
    r->has = 0;
}
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t rng_u64(rng_t *r)
{
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
    return res;
}
static double rng_unit(rng_t *r) { return ((rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static double rng_normal(rng_t *r)
{
    if (r->has) { r->has = 0; return r->spare; }
    double u = rng_unit(r), v = rng_unit(r);
    double m = sqrt(-2.0 * log(u));
    r->spare = m * sin(6.283185307179586 * v); r->has = 1;
    return m * cos(6.283185307179586 * v);
}

/* ---- number formats ---- */
static uint16_t f32_to_bf16(float f)
{
    uint32_t u; memcpy(&u, &f, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
/* nearest-even e4m3 code of v (|v| <= 448 expected; larger values clamp to 448) */
static uint8_t e4m3_code(float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80);
    u &= 0x7FFFFFFFu;
    float a;
    memcpy(&a, &u, 4);
    if (a < 0.015625f) {                      /* subnormal range: step 2^-9 */
        float m = nearbyintf(a * 512.0f);     /* 0..8; 8 is the smallest normal */
        return (uint8_t)(sign | (uint8_t)m);
    }
    u += 0x7FFFFu + ((u >> 20) & 1u);         /* round mantissa to 3 bits, ties to even */
    int e = (int)(u >> 23) - 127 + 7;
    int mant = (int)((u >> 20) & 7u);
    if (e > 15 || (e == 15 && mant == 7)) { e = 15; mant = 6; } /* 448 */
    return (uint8_t)(sign | (uint8_t)(e << 3) | (uint8_t)mant);
}
static const double e2m1_val[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
static uint8_t e2m1_code(double v)
{
    uint8_t sign = v < 0 ? 8 : 0;
    double a = fabs(v), best = 1e30;
    int bi = 0;
    for (int i = 0; i < 8; i++) {
        double d = fabs(a - e2m1_val[i]);
        if (d < best || (d == best && (i & 1) == 0 && (bi & 1))) { best = d; bi = i; }
    }
    return (uint8_t)(sign | bi);
}
/* smallest power-of-two exponent x with amax / 2^x <= lim */
static int pow2_exp(double amax, double lim)
{
    if (!(amax > 0)) return 0;
    int x = (int)ceil(log2(amax / lim));
    while (ldexp(lim, x) < amax) x++;
    if (x < -126) x = -126;
    if (x > 126) x = 126;
    return x;
}

/* ---- tensor data generation ---- */
static FILE *g_out;
static int g_werr;
static void put(const void *p, size_t n) { if (fwrite(p, 1, n, g_out) != n) g_werr = 1; }

static float *g_buf;
static size_t g_bufcap;
static float *buf_get(size_t n)
{
    if (n > g_bufcap) {
        free(g_buf);
        g_buf = malloc(n * sizeof(float));
        if (!g_buf) die_oom();
        g_bufcap = n;
    }
    return g_buf;
}

static void gen_fp8(const tensor_t *t, int want_scale)
{
    rng_t r; rng_init(&r, t->stream);
    int64_t out = t->wout, in = t->win;
    int64_t ncb = cdiv(in, 128);
    int ex[4096];
    float inv[4096];
    uint8_t *row = malloc((size_t)in);
    if (!row) die_oom();
    for (int64_t r0 = 0; r0 < out; r0 += 128) {
        int64_t nr = out - r0 < 128 ? out - r0 : 128;
        float *b = buf_get((size_t)(nr * in));
        for (int64_t i = 0; i < nr * in; i++) b[i] = (float)(rng_normal(&r) * t->p0);
        for (int64_t cb = 0; cb < ncb; cb++) {
            double amax = 0;
            int64_t c1 = (cb + 1) * 128 < in ? (cb + 1) * 128 : in;
            for (int64_t i = 0; i < nr; i++)
                for (int64_t c = cb * 128; c < c1; c++) {
                    double a = fabs(b[i * in + c]);
                    if (a > amax) amax = a;
                }
            ex[cb] = pow2_exp(amax, 448.0);
            inv[cb] = (float)ldexp(1.0, -ex[cb]);
        }
        if (want_scale) {
            for (int64_t cb = 0; cb < ncb; cb++) {
                if (t->dtype == DT_SCALE_F32) {
                    float f = (float)ldexp(1.0, ex[cb]);
                    put(&f, 4);
                } else {
                    uint8_t c = (uint8_t)(ex[cb] + 127);
                    put(&c, 1);
                }
            }
        } else {
            for (int64_t i = 0; i < nr; i++) {
                for (int64_t c = 0; c < in; c++)
                    row[c] = e4m3_code(b[i * in + c] * inv[c / 128]);
                put(row, (size_t)in);
            }
        }
    }
    free(row);
}

static void gen_fp4(const tensor_t *t, int want_scale)
{
    rng_t r; rng_init(&r, t->stream);
    int64_t out = t->wout, in = t->win;
    float *b = buf_get((size_t)in);
    uint8_t *o = malloc((size_t)in);
    if (!o) die_oom();
    for (int64_t i = 0; i < out; i++) {
        for (int64_t c = 0; c < in; c++) b[c] = (float)(rng_normal(&r) * t->p0);
        for (int64_t blk = 0; blk < in / 32; blk++) {
            double amax = 0;
            for (int c = 0; c < 32; c++) { double a = fabs(b[blk * 32 + c]); if (a > amax) amax = a; }
            int x = pow2_exp(amax, 6.0);
            if (want_scale) {
                o[blk] = (uint8_t)(x + 127);
            } else {
                for (int c = 0; c < 32; c += 2) {
                    uint8_t lo = e2m1_code(ldexp(b[blk * 32 + c], -x));
                    uint8_t hi = e2m1_code(ldexp(b[blk * 32 + c + 1], -x));
                    o[(blk * 32 + c) / 2] = (uint8_t)(lo | (hi << 4));
                }
            }
        }
        put(o, (size_t)(want_scale ? in / 32 : in / 2));
    }
    free(o);
}

static void gen_tensor(const tensor_t *t)
{
    rng_t r; rng_init(&r, t->stream);
    int64_t n = nelem(t);
    switch (t->gen) {
    case G_FP8S: gen_fp8(t, 1); return;
    case G_FP8W: gen_fp8(t, 0); return;
    case G_FP4S: gen_fp4(t, 1); return;
    case G_FP4W: gen_fp4(t, 0); return;
    case G_TID2EID: {
        int64_t *row = malloc(sizeof(int64_t) * (size_t)C.experts);
        if (!row) die_oom();
        for (int64_t i = 0; i < t->shape[0]; i++) {
            for (int e = 0; e < C.experts; e++) row[e] = e;
            for (int k = 0; k < C.topk; k++) {
                int j = k + (int)(rng_u64(&r) % (uint64_t)(C.experts - k));
                int64_t tmp = row[k]; row[k] = row[j]; row[j] = tmp;
            }
            put(row, sizeof(int64_t) * (size_t)C.topk);
        }
        free(row);
        return;
    }
    default: break;
    }
    const int64_t chunk = 1 << 16;
    uint8_t tmp[4 * (1 << 16)];
    for (int64_t i0 = 0; i0 < n; i0 += chunk) {
        int64_t m = n - i0 < chunk ? n - i0 : chunk;
        for (int64_t i = 0; i < m; i++) {
            double v;
            if (t->gen == G_NORMAL) v = rng_normal(&r) * t->p0;
            else if (t->gen == G_NORM1) v = 1.0 + (2.0 * rng_unit(&r) - 1.0) * t->p0;
            else v = t->p0 + (t->p1 - t->p0) * rng_unit(&r);
            if (t->dtype == DT_BF16) {
                uint16_t h = f32_to_bf16((float)v);
                memcpy(tmp + 2 * i, &h, 2);
            } else {
                float f = (float)v;
                memcpy(tmp + 4 * i, &f, 4);
            }
        }
        put(tmp, (size_t)(m * dt_size[t->dtype]));
    }
}

/* ---- output ---- */
static char g_dir[4096];
static int g_nshards;
static char **g_written;
static int g_nwritten;

static void remember(const char *path)
{
    char **w = realloc(g_written, sizeof(char *) * (size_t)(g_nwritten + 1));
    if (!w) die_oom();
    g_written = w;
    g_written[g_nwritten] = strdup(path);
    if (!g_written[g_nwritten]) die_oom();
    g_nwritten++;
}

static void fail_cleanup(const char *what, const char *path)
{
    fprintf(stderr, "dsv4-synth: %s %s: %s\n", what, path, strerror(errno ? errno : EIO));
    for (int i = 0; i < g_nwritten; i++) remove(g_written[i]);
    exit(1);
}

static FILE *open_out(const char *name, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) fail_cleanup("cannot create", path);
    remember(path);
    return f;
}

static void close_out(FILE *f, const char *path)
{
    errno = 0;
    if (g_werr || ferror(f)) { fclose(f); fail_cleanup("write failed for", path); }
    if (fclose(f) != 0) fail_cleanup("write failed for", path);
}

static void write_config(int full_kind /* 0 = synthetic, 1 flash, 2 pro, 3 flash-base */)
{
    char path[4200];
    FILE *f = open_out("config.json", path, sizeof path);
    g_out = f;
    fprintf(f, "{\n  \"architectures\": [\n    \"DeepseekV4ForCausalLM\"\n  ],\n"
               "  \"attention_bias\": false,\n  \"attention_dropout\": 0.0,\n"
               "  \"bos_token_id\": 0,\n  \"eos_token_id\": 1,\n");
    if (full_kind || C.expert_fp8)
        fprintf(f, "  \"expert_dtype\": \"%s\",\n", C.expert_fp8 ? "fp8" : "fp4");
    fprintf(f, "  \"hc_eps\": 1e-06,\n  \"hc_mult\": %d,\n  \"hc_sinkhorn_iters\": 20,\n"
               "  \"head_dim\": %d,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": %d,\n"
               "  \"index_head_dim\": %d,\n  \"index_n_heads\": %d,\n  \"index_topk\": %d,\n"
               "  \"initializer_range\": 0.02,\n  \"max_position_embeddings\": 1048576,\n"
               "  \"model_type\": \"deepseek_v4\",\n  \"moe_intermediate_size\": %d,\n"
               "  \"n_routed_experts\": %d,\n  \"n_shared_experts\": %d,\n"
               "  \"norm_topk_prob\": true,\n  \"num_attention_heads\": %d,\n"
               "  \"num_experts_per_tok\": %d,\n  \"num_hidden_layers\": %d,\n"
               "  \"num_hash_layers\": %d,\n  \"num_key_value_heads\": 1,\n"
               "  \"num_nextn_predict_layers\": %d,\n  \"o_groups\": %d,\n  \"o_lora_rank\": %d,\n"
               "  \"q_lora_rank\": %d,\n  \"qk_rope_head_dim\": %d,\n",
            C.hc, C.head_dim, C.hidden, C.index_head_dim, C.index_heads, C.index_topk,
            C.moe_inter, C.experts, C.shared, C.heads, C.topk, C.layers, C.hash_layers,
            C.mtp, C.o_groups, C.o_lora, C.q_lora, C.rope);
    fprintf(f, "  \"quantization_config\": {\n    \"activation_scheme\": \"dynamic\",\n"
               "    \"fmt\": \"e4m3\",\n    \"quant_method\": \"fp8\",\n"
               "    \"scale_fmt\": \"ue8m0\",\n    \"weight_block_size\": [\n      128,\n      128\n    ]\n  },\n"
               "  \"rms_norm_eps\": 1e-06,\n  \"rope_scaling\": {\n    \"beta_fast\": 32,\n"
               "    \"beta_slow\": 1,\n    \"factor\": 16,\n"
               "    \"original_max_position_embeddings\": 65536,\n    \"type\": \"yarn\"\n  },\n"
               "  \"rope_theta\": 10000,\n  \"routed_scaling_factor\": %.1f,\n"
               "  \"scoring_func\": \"sqrtsoftplus\",\n  \"sliding_window\": %d,\n"
               "  \"swiglu_limit\": 10.0,\n  \"tie_word_embeddings\": false,\n"
               "  \"topk_method\": \"noaux_tc\",\n  \"torch_dtype\": \"bfloat16\",\n"
               "  \"transformers_version\": \"4.57.1\",\n  \"use_cache\": true,\n"
               "  \"vocab_size\": %d,\n  \"compress_rope_theta\": 160000,\n"
               "  \"compress_ratios\": [\n",
            C.routed_scale, C.window, C.vocab);
    int n = C.layers + C.mtp;
    for (int i = 0; i < n; i++)
        fprintf(f, "    %d%s\n", C.ratios[i], i + 1 < n ? "," : "");
    fprintf(f, "  ]\n}\n");
    close_out(f, path);
}

static int cmp_idx(const void *a, const void *b)
{
    const tensor_t *x = &T[*(const int *)a], *y = &T[*(const int *)b];
    if (x->shard != y->shard) return x->shard - y->shard;
    if (dt_size[x->dtype] != dt_size[y->dtype]) return dt_size[y->dtype] - dt_size[x->dtype];
    return strcmp(x->name, y->name);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(T[*(const int *)a].name, T[*(const int *)b].name);
}

static void write_checkpoint(void)
{
    int *ord = malloc(sizeof(int) * (size_t)nT);
    if (!ord) die_oom();
    for (int i = 0; i < nT; i++) ord[i] = i;
    qsort(ord, (size_t)nT, sizeof(int), cmp_idx);
    uint64_t total = 0;
    size_t iocap = 16u << 20;
    char *iobuf = malloc(iocap);
    if (!iobuf) die_oom();
    int k = 0;
    for (int s = 0; s < g_nshards; s++) {
        int k0 = k;
        uint64_t off = 0;
        while (k < nT && T[ord[k]].shard == s) {
            T[ord[k]].off = off;
            off += (uint64_t)nbytes(&T[ord[k]]);
            k++;
        }
        total += off;
        /* header */
        size_t hcap = 256 + (size_t)(k - k0) * 320, hl = 0;
        char *h = malloc(hcap);
        if (!h) die_oom();
        hl += (size_t)snprintf(h + hl, hcap - hl, "{\"__metadata__\":{\"format\":\"pt\"}");
        for (int j = k0; j < k; j++) {
            const tensor_t *t = &T[ord[j]];
            hl += (size_t)snprintf(h + hl, hcap - hl, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld", t->name,
                                   dt_name[t->dtype], (long long)t->shape[0]);
            if (t->ndim == 2) hl += (size_t)snprintf(h + hl, hcap - hl, ",%lld", (long long)t->shape[1]);
            hl += (size_t)snprintf(h + hl, hcap - hl, "],\"data_offsets\":[%llu,%llu]}",
                                   (unsigned long long)t->off,
                                   (unsigned long long)(t->off + (uint64_t)nbytes(t)));
        }
        hl += (size_t)snprintf(h + hl, hcap - hl, "}");
        while (hl % 8) h[hl++] = ' ';
        char name[64], path[4200];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, g_nshards);
        FILE *f = open_out(name, path, sizeof path);
        setvbuf(f, iobuf, _IOFBF, iocap);
        g_out = f; g_werr = 0;
        uint64_t hl64 = hl;
        uint8_t le[8];
        for (int b = 0; b < 8; b++) le[b] = (uint8_t)(hl64 >> (8 * b));
        put(le, 8);
        put(h, hl);
        free(h);
        for (int j = k0; j < k && !g_werr; j++) gen_tensor(&T[ord[j]]);
        close_out(f, path);
    }
    free(iobuf);
    /* index */
    char path[4200];
    FILE *f = open_out("model.safetensors.index.json", path, sizeof path);
    g_out = f; g_werr = 0;
    fprintf(f, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {\n",
            (unsigned long long)total);
    for (int i = 0; i < nT; i++) ord[i] = i;
    qsort(ord, (size_t)nT, sizeof(int), cmp_name);
    for (int i = 0; i < nT; i++) {
        const tensor_t *t = &T[ord[i]];
        fprintf(f, "    \"%s\": \"model-%05d-of-%05d.safetensors\"%s\n", t->name, t->shard + 1,
                g_nshards, i + 1 < nT ? "," : "");
    }
    fprintf(f, "  }\n}\n");
    close_out(f, path);
    free(ord);
}

/* ---- presets and command line ---- */
static void usage(void)
{
    fprintf(stderr,
            "usage: dsv4-synth --preset tiny|flash-slice|pro-slice --out DIR [--seed N] [--layers N]\n"
            "                  [--experts N] [--vocab N] [--no-mtp] [--shards N] [--expert-dtype fp4|fp8]\n"
            "       dsv4-synth --config-only flash|pro|flash-base --out DIR\n");
    exit(2);
}

static int ratio_for(int kind, int i)
{
    if (kind == 0) return i == 0 ? 0 : (i % 2 ? 4 : 128);           /* tiny */
    if (kind == 1) return i < 2 ? 0 : (i % 2 ? 128 : 4);             /* flash */
    return i < 2 ? 128 : (i % 2 ? 128 : 4);                          /* pro */
}

static void preset(int kind)
{
    memset(&C, 0, sizeof C);
    C.hc = 4; C.shared = 1; C.mtp = 1; C.vocab = 129280; C.rope = 64; C.index_head_dim = 128;
    if (kind == 0) {
        C.hidden = 128; C.heads = 4; C.head_dim = 128; C.q_lora = 256; C.o_groups = 2; C.o_lora = 64;
        C.window = 32; C.index_heads = 8; C.index_topk = 8; C.moe_inter = 128; C.experts = 8;
        C.topk = 2; C.layers = 4; C.hash_layers = 2; C.routed_scale = 1.5;
    } else if (kind == 1) {
        C.hidden = 4096; C.heads = 64; C.head_dim = 512; C.q_lora = 1024; C.o_groups = 8; C.o_lora = 1024;
        C.window = 128; C.index_heads = 64; C.index_topk = 512; C.moe_inter = 2048; C.experts = 8;
        C.topk = 6; C.layers = 4; C.hash_layers = 3; C.routed_scale = 1.5;
    } else {
        C.hidden = 7168; C.heads = 128; C.head_dim = 512; C.q_lora = 1536; C.o_groups = 16; C.o_lora = 1024;
        C.window = 128; C.index_heads = 64; C.index_topk = 1024; C.moe_inter = 3072; C.experts = 8;
        C.topk = 6; C.layers = 4; C.hash_layers = 3; C.routed_scale = 2.5;
    }
}

static long parse_num(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s ? s : "", &end, 10);
    if (!s || errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "dsv4-synth: bad number '%s'\n", s ? s : "");
        usage();
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *pre = NULL, *cfgonly = NULL, *out = NULL;
    long layers = -1, experts = -1, vocab = -1, shards = 2;
    int nomtp = 0, fp8 = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-mtp")) { nomtp = 1; continue; }
        if (!v) usage();
        i++;
        if (!strcmp(a, "--preset")) pre = v;
        else if (!strcmp(a, "--config-only")) cfgonly = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--seed")) {
            char *end; errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || *end || end == v || v[0] == '-') usage();
            g_seed = s;
        }
        else if (!strcmp(a, "--layers")) layers = parse_num(v, 1, 200);
        else if (!strcmp(a, "--experts")) experts = parse_num(v, 1, 4096);
        else if (!strcmp(a, "--vocab")) vocab = parse_num(v, 2, 1 << 24);
        else if (!strcmp(a, "--shards")) shards = parse_num(v, 1, 999);
        else if (!strcmp(a, "--expert-dtype")) {
            if (!strcmp(v, "fp8")) fp8 = 1;
            else if (strcmp(v, "fp4")) usage();
        } else usage();
    }
    if (!out || (!pre == !cfgonly) || strlen(out) >= sizeof g_dir - 64) usage();
    snprintf(g_dir, sizeof g_dir, "%s", out);
    if (mkdir(out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "dsv4-synth: cannot create directory %s: %s\n", out, strerror(errno));
        return 1;
    }
    if (cfgonly) {
        int kind;
        if (!strcmp(cfgonly, "flash")) kind = 1;
        else if (!strcmp(cfgonly, "pro")) kind = 2;
        else if (!strcmp(cfgonly, "flash-base")) kind = 3;
        else usage();
        if (layers != -1 || experts != -1 || vocab != -1 || nomtp || fp8) usage();
        preset(kind == 2 ? 2 : 1);
        C.layers = kind == 2 ? 61 : 43;
        C.experts = kind == 2 ? 384 : 256;
        C.expert_fp8 = kind == 3;
        for (int i = 0; i <= C.layers; i++) C.ratios[i] = i == C.layers ? 0 : ratio_for(kind == 2 ? 2 : 1, i);
        write_config(kind);
        return 0;
    }
    int kind;
    if (!strcmp(pre, "tiny")) kind = 0;
    else if (!strcmp(pre, "flash-slice")) kind = 1;
    else if (!strcmp(pre, "pro-slice")) kind = 2;
    else usage();
    preset(kind);
    if (layers > 0) C.layers = (int)layers;
    if (experts > 0) C.experts = (int)experts;
    if (vocab > 0) C.vocab = (int)vocab;
    if (nomtp) C.mtp = 0;
    C.expert_fp8 = fp8;
    if (C.experts < C.topk) {
        fprintf(stderr, "dsv4-synth: --experts must be >= %d (experts per token)\n", C.topk);
        usage();
    }
    if (C.hash_layers > C.layers) C.hash_layers = C.layers;
    for (int i = 0; i < C.layers; i++) C.ratios[i] = ratio_for(kind, i);
    if (C.mtp) C.ratios[C.layers] = 0;
    g_nshards = (int)shards;

    /* tensor list, grouped: globals, each layer, mtp */
    int ngroups = 1 + C.layers + C.mtp, g = 0, first;
    int64_t H = C.hidden;
    first = nT;
    simple("", "embed.weight", DT_BF16, G_NORMAL, C.vocab, H, 2, 1.0, 0);
    simple("", "head.weight", DT_BF16, G_NORMAL, C.vocab, H, 2, 1.0 / sqrt((double)H), 0);
    simple("", "norm.weight", DT_BF16, G_NORM1, H, 0, 1, 0.1, 0);
    hc_block("", "head", 0);
    for (int i = first; i < nT; i++) T[i].shard = (int)((int64_t)g * g_nshards / ngroups);
    g++;
    for (int l = 0; l < C.layers; l++, g++) {
        char p[32];
        snprintf(p, sizeof p, "layers.%d.", l);
        first = nT;
        block(p, C.ratios[l], l < C.hash_layers);
        for (int i = first; i < nT; i++) T[i].shard = (int)((int64_t)g * g_nshards / ngroups);
    }
    if (C.mtp) {
        const char *p = "mtp.0.";
        char q[32];
        first = nT;
        block(p, 0, 0);
        snprintf(q, sizeof q, "%se_proj", p); lin_fp8(q, H, H);
        snprintf(q, sizeof q, "%sh_proj", p); lin_fp8(q, H, H);
        simple(p, "enorm.weight", DT_BF16, G_NORM1, H, 0, 1, 0.1, 0);
        simple(p, "hnorm.weight", DT_BF16, G_NORM1, H, 0, 1, 0.1, 0);
        simple(p, "norm.weight", DT_BF16, G_NORM1, H, 0, 1, 0.1, 0);
        hc_block(p, "head", 0);
        for (int i = first; i < nT; i++) T[i].shard = (int)((int64_t)g * g_nshards / ngroups);
    }
    write_config(0);
    write_checkpoint();
    free(T); free(g_buf);
    for (int i = 0; i < g_nwritten; i++) free(g_written[i]);
    free(g_written);
    return 0;
}
