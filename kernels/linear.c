/*
 * kernels/linear.c — y = x · Wᵀ with weights in their stored formats: the
 * optimised twin of dsv4k_linear_ref (kernels/ref/linear.c), tested against
 * it in tests/kernels.
 *
 * Work is split over output rows on the context's pool. Each worker decodes
 * one weight row at a time to f32 through lookup tables (e4m3, e2m1, E8M0)
 * and takes its dot product with every activation row, with 16 independent
 * f32 accumulators the compiler vectorises. Decoding is exact; only the
 * summation order differs from the reference (which sums in double).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "linear.h"
#include "x86/gemv.h"
#include "x86/gemv_mrows.h"

float dsv4k_lut_e4m3[256], dsv4k_lut_e2m1[16], dsv4k_lut_e8m0[256];
static pthread_once_t lut_once = PTHREAD_ONCE_INIT;

static void lut_init(void)
{
    for (int i = 0; i < 256; i++) {
        dsv4k_lut_e4m3[i] = dsv4k_e4m3_to_f32((uint8_t)i);
        dsv4k_lut_e8m0[i] = dsv4k_e8m0_to_f32((uint8_t)i);
    }
    for (int i = 0; i < 16; i++) dsv4k_lut_e2m1[i] = dsv4k_e2m1_to_f32((uint8_t)i);
}

void dsv4k_tables_init(void) { pthread_once(&lut_once, lut_init); }

/* most activation rows the AVX2 FP4 kernel takes in one call */
#define SPLIT_M 64

struct dsv4k_linear_ctx {
    dsv4k_pool *pool;
    int n_threads;
    int64_t max_k, max_m;
    float *rows;     /* n_threads × max_k: one decoded weight row per thread */
    float *aq;       /* max_m × max_k: quantised activations */
    float *xs;       /* SPLIT_M × max_k: activations split even/odd (FP4 kernel), or
                      * the scaled activation row of the FP8 kernel (dsv4k_fp8q_prepare) */
    int8_t *ex;      /* exponents of one row */
    void *q4;        /* one prepared activation row of the integer FP4 kernel */
    void *q4v;       /* the same for the VNNI kernel's second form (dsv4k_fp4v_prepare) */
    void *b16;       /* one activation row as bf16 words for the FP8 vdpbf16ps kernel */
    int16_t *sh;     /* max_k/128 block shifts of the FP8 kernel's activation row */
    const float *fx; /* that row unscaled (the FP8 kernel's fallback rows) */
    int intq;        /* kernels with integer weight decoding allowed (dsv4k_linear_set_intq) */
    int mrows;       /* 2..DSV4K_MROWS_MAX rows by the one-row kernels (dsv4k_linear_set_mrows) */
    int64_t mr;      /* activation rows with their own prepared buffers: min(max_m, DSV4K_MROWS_MAX) */
    size_t q4s, q4vs, b16s; /* strides of those buffers (multiples of 64 bytes) */
    int isa;       /* highest kernel set allowed: DSV4K_ISA_* (dsv4k_linear_set_isa) */
    int nobatch;   /* dsv4k_linear_set_batch(c, 0) */
    void *barena;  /* dsv4k_linear_batch: its prepared rows (bsize bytes) */
    size_t bsize;
    void *bch;     /* and its chunk table (bch_cap entries) */
    int64_t bch_cap;
};

/* activation buffers start on a cache line: the 64-byte loads of the
 * AVX-512 kernels then never straddle two (measured: unaligned planes cost
 * the FP4 VNNI kernel a fifth of its speed) */
static void *alloc64(size_t n) { return aligned_alloc(64, (n + 64) / 64 * 64); }
static size_t round64(int64_t n) { return ((size_t)n + 63) / 64 * 64; }

dsv4k_linear_ctx *dsv4k_linear_ctx_create(dsv4k_pool *pool, int64_t max_k, int64_t max_m)
{
    dsv4k_tables_init();
    dsv4k_linear_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->pool = pool;
    c->n_threads = dsv4k_pool_threads(pool);
    c->max_k = max_k;
    c->max_m = max_m;
    c->isa = DSV4K_ISA_BEST;
    c->intq = 1;
    c->mrows = 1;
    c->mr = max_m < DSV4K_MROWS_MAX ? max_m : DSV4K_MROWS_MAX;
    if (c->mr < 1) c->mr = 1;
    c->q4s = round64(dsv4k_fp4q_bytes(max_k / 128 * 128));
    c->q4vs = round64(dsv4k_fp4v_bytes(max_k / 512 * 512));
    c->b16s = round64(dsv4k_fp8b_bytes(max_k));
    c->rows = malloc((size_t)(c->n_threads * max_k) * sizeof(float));
    c->aq = alloc64((size_t)(max_m * max_k) * sizeof(float));
    c->xs = alloc64((size_t)((max_m < SPLIT_M ? max_m : SPLIT_M) * max_k) * sizeof(float));
    c->ex = malloc((size_t)(c->mr * (max_k / 128 + 1)));
    c->q4 = alloc64((size_t)c->mr * c->q4s);
    c->q4v = alloc64((size_t)c->mr * c->q4vs);
    c->b16 = alloc64((size_t)c->mr * c->b16s);
    c->sh = malloc((size_t)(c->mr * (max_k / 128 + 1)) * sizeof(int16_t));
    if (!c->rows || !c->aq || !c->xs || !c->ex || !c->q4 || !c->q4v || !c->b16 || !c->sh) {
        dsv4k_linear_ctx_free(c);
        return NULL;
    }
    return c;
}

void dsv4k_act_quant_dq(const float *x, int64_t k, float *out, int8_t *ex, int simd)
{
    if (simd && dsv4k_have_avx2()) {
        dsv4k_act_quant_dq_avx2(x, k, out, ex);
        return;
    }
    dsv4k_act_quant_fp8_ref(x, k, 128, out, ex);
    for (int64_t j = 0; j < k; j++) out[j] *= dsv4k_pow2(ex[j / 128]);
}

void dsv4k_linear_set_isa(dsv4k_linear_ctx *c, int isa) { c->isa = isa; }
void dsv4k_linear_set_intq(dsv4k_linear_ctx *c, int on) { c->intq = on; }
void dsv4k_linear_set_mrows(dsv4k_linear_ctx *c, int on) { c->mrows = on; }
void dsv4k_linear_set_batch(dsv4k_linear_ctx *c, int on) { c->nobatch = !on; }
int dsv4k_linear_rows_exact(const dsv4k_linear_ctx *c) { return c->mrows ? DSV4K_MROWS_EXACT : 1; }

void dsv4k_linear_ctx_free(dsv4k_linear_ctx *c)
{
    if (!c) return;
    free(c->rows);
    free(c->aq);
    free(c->xs);
    free(c->ex);
    free(c->q4);
    free(c->q4v);
    free(c->b16);
    free(c->sh);
    free(c->barena);
    free(c->bch);
    free(c);
}

int64_t dsv4k_ilv_row_bytes(int32_t fmt, int64_t k)
{
    int64_t rb = fmt == DSV4K_W_BF16 ? 2 * k : fmt == DSV4K_W_FP8 || fmt == DSV4K_W_FP8_F32S ? k : 0;
    return rb > 0 && rb % 64 == 0 ? rb : 0;
}

int64_t dsv4k_ilv_load_row_bytes(int32_t fmt, int64_t k)
{
    /* AVX-512's four-row BF16 pass gains; AVX2's two-row pass measured
     * level with the plain kernel in cache, so AVX2-only CPUs keep it */
    return fmt == DSV4K_W_BF16 && dsv4k_have_avx512() ? dsv4k_ilv_row_bytes(fmt, k) : 0;
}

int64_t dsv4k_repack_rows(void *dst, const void *src, int64_t n, int64_t rb)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (rb <= 0 || rb % 64 || n < 4) {
        if (n > 0 && rb > 0) memcpy(d, s, (size_t)(n * rb));
        return 0;
    }
    int64_t ilv = n / 4 * 4, nc = rb / 64;
    for (int64_t g = 0; g < ilv; g += 4) {
        uint8_t *o = d + g * rb;
        const uint8_t *i0 = s + g * rb;
        for (int64_t c = 0; c < nc; c++, o += 256)
            for (int i = 0; i < 4; i++) memcpy(o + 64 * i, i0 + i * rb + 64 * c, 64);
    }
    if (n > ilv) memcpy(d + ilv * rb, s + ilv * rb, (size_t)((n - ilv) * rb));
    return ilv;
}

void dsv4k_decode_row(const dsv4k_weight *w, int64_t r, float *dst)
{
    int64_t k = w->k;
    r += w->row0;
    if (r < w->ilv && w->fmt == DSV4K_W_BF16) {
        /* interleaved: in 64-byte chunks (32 weights) */
        for (int64_t c = 0; c < k; c += 32) {
            const uint8_t *q = dsv4k_row_byte(w, r, 2 * k, 2 * c);
            for (int i = 0; i < 32; i++) {
                uint16_t h;
                memcpy(&h, q + 2 * i, 2);
                dst[c + i] = dsv4k_bits_f32((uint32_t)h << 16);
            }
        }
        return;
    }
    switch (w->fmt) {
    case DSV4K_W_BF16: {
        const uint16_t *p = (const uint16_t *)w->w + r * k;
        for (int64_t c = 0; c < k; c++) dst[c] = dsv4k_bits_f32((uint32_t)p[c] << 16);
        break;
    }
    case DSV4K_W_F32:
        memcpy(dst, (const float *)w->w + r * k, (size_t)k * sizeof(float));
        break;
    case DSV4K_W_FP8:
    case DSV4K_W_FP8_F32S: {
        const uint8_t *p = (const uint8_t *)w->w + r * k;
        int64_t kb = (k + 127) / 128;
        for (int64_t c0 = 0; c0 < k; c0 += 128) {
            float s = w->fmt == DSV4K_W_FP8 ? dsv4k_lut_e8m0[((const uint8_t *)w->s)[(r / 128) * kb + c0 / 128]]
                                            : ((const float *)w->s)[(r / 128) * kb + c0 / 128];
            int64_t c1 = c0 + 128 < k ? c0 + 128 : k;
            if (r < w->ilv) {
                /* interleaved (k % 64 == 0): a 64-byte chunk at a time */
                for (int64_t c = c0; c < c1; c += 64) {
                    const uint8_t *q = dsv4k_row_byte(w, r, k, c);
                    for (int i = 0; i < 64; i++) dst[c + i] = dsv4k_lut_e4m3[q[i]] * s;
                }
                continue;
            }
            for (int64_t c = c0; c < c1; c++) dst[c] = dsv4k_lut_e4m3[p[c]] * s;
        }
        break;
    }
    case DSV4K_W_FP4: {
        const uint8_t *p = (const uint8_t *)w->w + r * (k / 2);
        const uint8_t *sc = (const uint8_t *)w->s + r * (k / 32);
        for (int64_t c0 = 0; c0 < k; c0 += 32) {
            float s = dsv4k_lut_e8m0[sc[c0 / 32]];
            for (int64_t c = c0; c < c0 + 32; c += 2) {
                uint8_t b = p[c / 2];
                dst[c] = dsv4k_lut_e2m1[b & 15] * s;
                dst[c + 1] = dsv4k_lut_e2m1[b >> 4] * s;
            }
        }
        break;
    }
    default:
        for (int64_t c = 0; c < k; c++) dst[c] = 0.0f;
    }
}

static float dot(const float *a, const float *b, int64_t k)
{
    float acc[16] = { 0 };
    int64_t c = 0;
    for (; c + 16 <= k; c += 16)
        for (int j = 0; j < 16; j++) acc[j] += a[c + j] * b[c + j];
    float s = 0.0f;
    for (; c < k; c++) s += a[c] * b[c];
    for (int j = 0; j < 16; j++) s += acc[j];
    return s;
}

typedef struct task {
    dsv4k_linear_ctx *c;
    const dsv4k_weight *w;
    const float *x;
    int64_t ldx, m;
    float *y;
    int64_t ldy;
} task;

static void run_avx2(void *arg, int64_t r0, int64_t r1, int thread)
{
    task *t = arg;
    (void)thread;
    dsv4k_rows_avx2(t->w, r0, r1, t->x, t->ldx, t->m, t->y, t->ldy);
}

static void run_avx512(void *arg, int64_t r0, int64_t r1, int thread)
{
    task *t = arg;
    (void)thread;
    dsv4k_rows_avx512(t->w, r0, r1, t->x, t->ldx, t->m, t->y, t->ldy);
}

static void run_fp4q(void *arg, int64_t r0, int64_t r1, int thread)
{
    task *t = arg;
    (void)thread;
    dsv4k_rows_fp4q_avx2(t->w, r0, r1, t->c->q4, t->y);
}

static void run_fp4q512(void *arg, int64_t r0, int64_t r1, int thread)
{
    task *t = arg;
    (void)thread;
    if (t->c->isa >= DSV4K_ISA_AVX512X && dsv4k_have_avx512vnni())
        dsv4k_rows_fp4q_avx512vnni(t->w, r0, r1, t->c->q4, t->y);
    else
        dsv4k_rows_fp4q_avx512(t->w, r0, r1, t->c->q4, t->y);
}

static void run_fp4v(void *arg, int64_t r0, int64_t r1, int thread)
{
    task *t = arg;
    (void)thread;
    dsv4k_rows_fp4v_avx512vnni(t->w, r0, r1, t->c->q4v, t->y);
}

static void run_fp4v2(void *arg, int64_t r0, int64_t r1, int thread)
{
    task *t = arg;
    (void)thread;
    dsv4k_rows_fp4v_avx2(t->w, r0, r1, t->c->q4v, t->y);
}

static void run_fp8b(void *arg, int64_t r0, int64_t r1, int thread)
{
    task *t = arg;
    (void)thread;
    dsv4k_rows_fp8b_avx512bf16(t->w, r0, r1, t->c->aq, t->c->b16, t->y);
}

static void run_fp8q512(void *arg, int64_t r0, int64_t r1, int thread)
{
    task *t = arg;
    (void)thread;
    dsv4k_rows_fp8q_avx512(t->w, r0, r1, t->c->fx, t->x, t->c->sh, t->y);
}

static void run_fp8q(void *arg, int64_t r0, int64_t r1, int thread)
{
    task *t = arg;
    (void)thread;
    dsv4k_rows_fp8q_avx2(t->w, r0, r1, t->c->fx, t->x, t->c->sh, t->y);
}

static void run(void *arg, int64_t r0, int64_t r1, int thread)
{
    task *t = arg;
    const dsv4k_weight *w = t->w;
    float *row = t->c->rows + thread * t->c->max_k;
    for (int64_t r = r0; r < r1; r++) {
        dsv4k_decode_row(w, r, row);
        for (int64_t i = 0; i < t->m; i++) t->y[i * t->ldy + r] = dot(t->x + i * t->ldx, row, w->k);
    }
}

/* rows of a weight with interleaved groups are handed out in whole groups
 * of the stored tensor (a unit of the pool is one group), so the kernels'
 * four-row passes are never cut by a chunk boundary */
typedef struct groups {
    dsv4k_task_fn fn;
    void *arg;
    int64_t off, n; /* the view's first row within its group; its rows */
} groups;

static void run_groups(void *arg, int64_t u0, int64_t u1, int thread)
{
    groups *g = arg;
    int64_t a = 4 * u0 - g->off, b = 4 * u1 - g->off;
    if (a < 0) a = 0;
    if (b > g->n) b = g->n;
    if (a < b) g->fn(g->arg, a, b, thread);
}

static void pool_rows(dsv4k_linear_ctx *c, const dsv4k_weight *w, int64_t grain, dsv4k_task_fn fn, void *arg)
{
    if (w->ilv <= w->row0) {
        dsv4k_pool_for(c->pool, w->n, grain, fn, arg);
        return;
    }
    groups g = { fn, arg, w->row0 & 3, w->n };
    dsv4k_pool_for(c->pool, (g.off + w->n + 3) / 4, (grain + 3) / 4, run_groups, &g);
}


/* ---- 2..DSV4K_MROWS_MAX activation rows, each as its one-row product ----
 *
 * Every activation row takes the route dsv4k_linear would give it alone
 * (its own prepared buffers), and every weight row's result for it is the
 * one-row kernel's, bit for bit: the rows of a route go through a kernel of
 * gemv_mrows_*.c that decodes each weight once for all of them, or, where
 * there is none, through the one-row kernel row after row over blocks of
 * weight rows small enough to stay in cache (so the weights are still read
 * from memory once). Rows whose one-row product takes another route (an
 * activation a preparation refuses) are computed alone afterwards.
 */
enum { R_FP4V, R_FP4Q, R_FP8B, R_FP8Q, R_GEN512, R_GEN2, R_FP4V2, R_N };

/* weight bytes of one block of rows per one-row call of the blocked loop */
#define MROWS_BLOCK_BYTES 49152

typedef struct mtask {
    dsv4k_linear_ctx *c;
    const dsv4k_weight *w;
    int route, n, fused;
    int64_t ldx, blk;
    const void *buf[DSV4K_MROWS_MAX];
    const float *x[DSV4K_MROWS_MAX];  /* the f32 kernels' activation row */
    const float *xp[DSV4K_MROWS_MAX]; /* FP8 kernels: the scaled row */
    const int16_t *sh[DSV4K_MROWS_MAX];
    float *y[DSV4K_MROWS_MAX];
} mtask;

static void one_route(const mtask *t, int i, int64_t a, int64_t b)
{
    const dsv4k_weight *w = t->w;
    const dsv4k_linear_ctx *c = t->c;
    switch (t->route) {
    case R_FP4V:
        dsv4k_rows_fp4v_avx512vnni(w, a, b, t->buf[i], t->y[i]);
        break;
    case R_FP4V2:
        dsv4k_rows_fp4v_avx2(w, a, b, t->buf[i], t->y[i]);
        break;
    case R_FP4Q:
        if (c->isa >= DSV4K_ISA_AVX512 && dsv4k_have_avx512()) {
            if (c->isa >= DSV4K_ISA_AVX512X && dsv4k_have_avx512vnni())
                dsv4k_rows_fp4q_avx512vnni(w, a, b, t->buf[i], t->y[i]);
            else
                dsv4k_rows_fp4q_avx512(w, a, b, t->buf[i], t->y[i]);
        } else {
            dsv4k_rows_fp4q_avx2(w, a, b, t->buf[i], t->y[i]);
        }
        break;
    case R_FP8B:
        dsv4k_rows_fp8b_avx512bf16(w, a, b, t->x[i], t->buf[i], t->y[i]);
        break;
    case R_FP8Q:
        if (c->isa >= DSV4K_ISA_AVX512 && dsv4k_have_avx512())
            dsv4k_rows_fp8q_avx512(w, a, b, t->x[i], t->xp[i], t->sh[i], t->y[i]);
        else
            dsv4k_rows_fp8q_avx2(w, a, b, t->x[i], t->xp[i], t->sh[i], t->y[i]);
        break;
    case R_GEN512:
        dsv4k_rows_avx512(w, a, b, t->x[i], t->ldx, 1, t->y[i], 0);
        break;
    case R_GEN2:
        dsv4k_rows_avx2(w, a, b, t->x[i], t->ldx, 1, t->y[i], 0);
        break;
    }
}

/* the fused kernels of gemv_mrows_*.c where there is one: 1 when done */
static int fused_route(const mtask *t, int64_t a, int64_t b)
{
    const dsv4k_weight *w = t->w;
    switch (t->route) {
    case R_FP4V:
        dsv4k_rows_fp4v_mrows_avx512vnni(w, a, b, t->n, t->buf, t->y);
        return 1;
    case R_FP8B:
        return dsv4k_rows_fp8b_mrows_avx512bf16(w, a, b, t->n, t->x, t->buf, t->y) == 0;
    case R_FP8Q:
        return t->c->isa >= DSV4K_ISA_AVX512 && dsv4k_have_avx512() &&
               dsv4k_rows_fp8q_mrows_avx512(w, a, b, t->n, t->x, t->xp, t->sh, t->y) == 0;
    case R_GEN512:
        return dsv4k_rows_mrows_avx512(w, a, b, t->n, t->x, t->y) == 0;
    }
    return 0;
}

static void run_mrows(void *arg, int64_t r0, int64_t r1, int thread)
{
    mtask *t = arg;
    (void)thread;
    if (t->fused && fused_route(t, r0, r1)) return;
    for (int64_t a = r0, b; a < r1; a = b) {
        /* blocks end on a whole interleaved group */
        b = a + t->blk;
        if (b < r1) {
            int64_t e = ((t->w->row0 + b) & ~(int64_t)3) - t->w->row0;
            if (e > a) b = e;
        } else {
            b = r1;
        }
        for (int i = 0; i < t->n; i++) one_route(t, i, a, b);
    }
}

static int64_t weight_row_bytes(const dsv4k_weight *w)
{
    switch (w->fmt) {
    case DSV4K_W_FP4: return w->k / 2 + w->k / 32;
    case DSV4K_W_FP8:
    case DSV4K_W_FP8_F32S: return w->k;
    case DSV4K_W_BF16: return 2 * w->k;
    }
    return 4 * w->k;
}

static void mtask_init(mtask *t, dsv4k_linear_ctx *c, const dsv4k_weight *w, int route)
{
    memset(t, 0, sizeof *t);
    t->c = c;
    t->w = w;
    t->route = route;
    /* the m-row kernels where they measured faster than the blocked
     * one-row calls (FP4 on VNNI; BF16 and FP8 measured level or slower in
     * thread CPU time on Zen 5), all of them with mode 3 */
    t->fused = c->mrows == 3 || (c->mrows == 1 && route == R_FP4V);
    int64_t blk = MROWS_BLOCK_BYTES / weight_row_bytes(w) / 4 * 4;
    t->blk = blk < 4 ? 4 : blk;
}

static void mtask_run(dsv4k_linear_ctx *c, const dsv4k_weight *w, int64_t grain, mtask *t)
{
    if (t->n > 0) pool_rows(c, w, grain, run_mrows, t);
}

/* the one-row routes of the integer kernels for m rows (2 <= m <= c->mr);
 * returns 0 when it took the product, 1 when the rows take the f32 path */
static int linear_mrows_int(dsv4k_linear_ctx *c, const dsv4k_weight *w, const float *x, int64_t ldx, int64_t m,
                            float *y, int64_t ldy, int aq, int64_t grain)
{
    int64_t k = w->k, kb = k / 128 + 1;
    int on512 = c->isa >= DSV4K_ISA_AVX512 && dsv4k_have_avx512();
    int alone[DSV4K_MROWS_MAX], na = 0;
    mtask t[R_N];
    for (int r = 0; r < R_N; r++) mtask_init(&t[r], c, w, r);
    if (w->fmt == DSV4K_W_FP4 && aq) {
        for (int64_t i = 0; i < m; i++) {
            float *dq = c->aq + i * k;
            int8_t *ex = c->ex + i * kb;
            void *qv = (uint8_t *)c->q4v + i * c->q4vs, *q = (uint8_t *)c->q4 + i * c->q4s;
            dsv4k_act_quant_dq(x + i * ldx, k, dq, ex, 1);
            mtask *u = NULL;
            if (k % 512 == 0 && c->isa >= DSV4K_ISA_AVX512X && dsv4k_have_avx512vnni() &&
                dsv4k_fp4v_prepare(dq, ex, k, qv) == 0) {
                u = &t[R_FP4V];
                u->buf[u->n] = qv;
            } else if (k % 512 == 0 && !on512 && dsv4k_fp4v_prepare_avx2(dq, ex, k, qv) == 0) {
                u = &t[R_FP4V2];
                u->buf[u->n] = qv;
            } else if (dsv4k_fp4q_prepare(dq, ex, k, q) == 0) {
                u = &t[R_FP4Q];
                u->buf[u->n] = q;
            }
            if (!u) {
                alone[na++] = (int)i;
                continue;
            }
            u->y[u->n++] = y + i * ldy;
        }
    } else if ((w->fmt == DSV4K_W_FP8 || w->fmt == DSV4K_W_FP8_F32S) && k <= 8192) {
        for (int64_t i = 0; i < m; i++) {
            float *dq = c->aq + i * k, *xp = c->xs + i * k;
            int8_t *ex = c->ex + i * kb;
            int16_t *sh = c->sh + i * kb;
            void *b16 = (uint8_t *)c->b16 + i * c->b16s;
            mtask *u = &t[R_FP8Q];
            if (aq) {
                dsv4k_act_quant_dq(x + i * ldx, k, dq, ex, 1);
                if (c->isa >= DSV4K_ISA_AVX512X && dsv4k_have_avx512bf16() && dsv4k_fp8b_prepare(dq, ex, k, b16) == 0) {
                    u = &t[R_FP8B];
                    u->buf[u->n] = b16;
                } else {
                    dsv4k_fp8q_prepare(dq, ex, k, xp, sh);
                }
                u->x[u->n] = dq;
            } else {
                if (dsv4k_fp8x_prepare(x + i * ldx, k, xp, sh) != 0) {
                    alone[na++] = (int)i;
                    continue;
                }
                u->x[u->n] = x + i * ldx;
            }
            u->xp[u->n] = xp;
            u->sh[u->n] = sh;
            u->y[u->n++] = y + i * ldy;
        }
    } else {
        return 1;
    }
    (void)on512;
    for (int r = 0; r < R_N; r++) mtask_run(c, w, grain, &t[r]);
    for (int j = 0; j < na; j++)
        if (dsv4k_linear(c, w, x + alone[j] * ldx, ldx, 1, y + alone[j] * ldy, ldy, aq) != 0) return -1;
    return 0;
}

int dsv4k_linear(dsv4k_linear_ctx *c, const dsv4k_weight *w, const float *x, int64_t ldx, int64_t m, float *y,
                 int64_t ldy, int aq)
{
    if (m <= 0 || w->n <= 0) return 0;
    if (w->k > c->max_k) return -1;
    if (c->mrows && m >= 2 && m <= DSV4K_MROWS_EXACT && m > c->mr) {
        /* more rows than prepared buffers: in pieces, each row still as alone */
        for (int64_t i = 0; i < m; i += c->mr) {
            int64_t n = m - i < c->mr ? m - i : c->mr;
            if (dsv4k_linear(c, w, x + i * ldx, ldx, n, y + i * ldy, ldy, aq) != 0) return -1;
        }
        return 0;
    }
    int64_t grain = w->n / (4 * c->n_threads);
    if (grain < 1) grain = 1;
    int multi = c->mrows && m >= 2 && m <= DSV4K_MROWS_MAX;
    if (multi && c->intq && w->k % 128 == 0 && c->isa >= DSV4K_ISA_AVX2 && dsv4k_have_avx2()) {
        int rc = linear_mrows_int(c, w, x, ldx, m, y, ldy, aq, grain);
        if (rc <= 0) return rc;
    }
    int on512 = c->isa >= DSV4K_ISA_AVX512 && dsv4k_have_avx512();
    if (c->intq && m == 1 && c->max_m >= 1 && w->k % 128 == 0 && c->isa >= DSV4K_ISA_AVX2 && dsv4k_have_avx2()) {
        /* one activation row: the kernels with integer weight decoding (see
         * gemv.h), on AVX-512 where the CPU has it; FP4 in reference
         * numerics only (its activations must be e4m3) */
        if (w->fmt == DSV4K_W_FP4 && aq) {
            dsv4k_act_quant_dq(x, w->k, c->aq, c->ex, 1);
            if (w->k % 512 == 0 && c->isa >= DSV4K_ISA_AVX512X && dsv4k_have_avx512vnni() &&
                dsv4k_fp4v_prepare(c->aq, c->ex, w->k, c->q4v) == 0) {
                task tq = { c, w, NULL, w->k, 1, y, ldy };
                pool_rows(c, w, grain, run_fp4v, &tq);
                return 0;
            }
            /* AVX2: the second form's layout, on vpmaddubsw */
            if (w->k % 512 == 0 && !on512 && dsv4k_fp4v_prepare_avx2(c->aq, c->ex, w->k, c->q4v) == 0) {
                task tq = { c, w, NULL, w->k, 1, y, ldy };
                pool_rows(c, w, grain, run_fp4v2, &tq);
                return 0;
            }
            if (dsv4k_fp4q_prepare(c->aq, c->ex, w->k, c->q4) == 0) {
                task tq = { c, w, NULL, w->k, 1, y, ldy };
                pool_rows(c, w, grain, on512 ? run_fp4q512 : run_fp4q, &tq);
                return 0;
            }
            /* a value that is not finite: the f32 kernels carry it through */
        } else if ((w->fmt == DSV4K_W_FP8 || w->fmt == DSV4K_W_FP8_F32S) && w->k <= 8192) {
            int ok = 1;
            if (aq) {
                dsv4k_act_quant_dq(x, w->k, c->aq, c->ex, 1);
                if (c->isa >= DSV4K_ISA_AVX512X && dsv4k_have_avx512bf16() &&
                    dsv4k_fp8b_prepare(c->aq, c->ex, w->k, c->b16) == 0) {
                    task tq = { c, w, NULL, w->k, 1, y, ldy };
                    pool_rows(c, w, grain, run_fp8b, &tq);
                    return 0;
                }
                dsv4k_fp8q_prepare(c->aq, c->ex, w->k, c->xs, c->sh);
                c->fx = c->aq;
            } else {
                /* refused for subnormal or non-finite values and extreme
                 * ranges: the f32 kernel below takes those */
                ok = dsv4k_fp8x_prepare(x, w->k, c->xs, c->sh) == 0;
                c->fx = x;
            }
            if (ok) {
                task tq = { c, w, c->xs, w->k, 1, y, ldy };
                pool_rows(c, w, grain, on512 ? run_fp8q512 : run_fp8q, &tq);
                return 0;
            }
        }
    }
    const float *in = x;
    if (aq && w->k % 128 == 0) {
        if (m > c->max_m) return -1;
        for (int64_t i = 0; i < m; i++) dsv4k_act_quant_dq(x + i * ldx, w->k, c->aq + i * w->k, c->ex, c->isa > 0);
        in = c->aq;
        ldx = w->k;
    }
    task t = { c, w, in, ldx, m, y, ldy };
    dsv4k_task_fn fn = run;
    int split = 0;
    if (c->isa >= DSV4K_ISA_AVX512 && dsv4k_have_avx512() &&
        (w->fmt == DSV4K_W_BF16 || w->fmt == DSV4K_W_FP4 ? w->k % 32 == 0 && m <= SPLIT_M
                                                         : w->fmt != DSV4K_W_F32 && w->k % 128 == 0)) {
        split = w->fmt != DSV4K_W_FP8 && w->fmt != DSV4K_W_FP8_F32S;
        fn = run_avx512;
    } else if (c->isa >= DSV4K_ISA_AVX2 && dsv4k_have_avx2() &&
               (w->fmt == DSV4K_W_FP4 ? w->k % 32 == 0 && m <= SPLIT_M :
                w->fmt == DSV4K_W_BF16 ? w->k % 16 == 0 && (w->k % 32 || m <= SPLIT_M) :
                w->fmt != DSV4K_W_F32 && w->k % 128 == 0)) {
        split = w->fmt == DSV4K_W_FP4 || (w->fmt == DSV4K_W_BF16 && w->k % 32 == 0);
        fn = run_avx2;
    }
    if (fn != run) {
        if (split) {
            for (int64_t i = 0; i < m; i++) dsv4k_split_even_odd(t.x + i * t.ldx, w->k, c->xs + i * w->k);
            t.x = c->xs;
            t.ldx = w->k;
        }
        if (multi) {
            /* every activation row as the one-row product the kernels give it */
            mtask u;
            mtask_init(&u, c, w, fn == run_avx512 ? R_GEN512 : R_GEN2);
            u.ldx = t.ldx;
            for (int64_t i = 0; i < m; i++) {
                u.x[i] = t.x + i * t.ldx;
                u.y[i] = y + i * ldy;
            }
            u.n = (int)m;
            mtask_run(c, w, grain, &u);
            return 0;
        }
    }
    pool_rows(c, w, grain, fn, &t);
    return 0;
}

/* ---- several one-row products in one parallel loop -----------------------
 *
 * A decode step's products are small (4–8 MB: 70–140 µs from memory), and
 * each dsv4k_linear call prepares its activation and wakes and joins the
 * pool. Independent products of one activation row each (the experts of a
 * token, the projections of one input) go here together: the activations
 * are prepared once per distinct row (same pointer, width and route), and
 * every job's weight rows are cut into chunks of one table that a single
 * dsv4k_pool_for runs. Each job's rows go through the very kernel, with the
 * very prepared activation, that dsv4k_linear gives them alone, so every
 * result is bit for bit the same; a job whose route is not one of those
 * below runs through dsv4k_linear first.
 */
enum { B_FP4V, B_FP8B, B_FP8Q, B_BF16, B_FP4V2, B_FP8Q2, B_FP8Q2A, B_BF16_2 };

typedef struct bprep { /* one prepared activation row */
    const float *x;
    int64_t k;
    int route;
    float *dq;  /* FP8B, FP8Q2A: the quantised row; FP8Q, FP8Q2: the scaled row; BF16: split */
    int8_t *ex;
    int16_t *sh;
    void *buf;  /* FP4V, FP4V2, FP8B buffer; FP8Q2A: the scaled row */
} bprep;

typedef struct bchunk {
    int job, prep;
    int64_t r0, r1;
} bchunk;

typedef struct btask {
    const dsv4k_linear_job *jobs;
    const bprep *prep;
    const bchunk *ch;
} btask;

static size_t bprep_bytes(int64_t k)
{
    size_t a = round64(dsv4k_fp4v_bytes(k / 512 * 512)), b = round64(dsv4k_fp8b_bytes(k)), f = round64(4 * k);
    if (b > a) a = b;
    if (f > a) a = f;
    return round64(4 * k) + round64(k / 128 + 1) + round64(2 * (k / 128 + 1)) + a;
}

static void run_batch(void *arg, int64_t c0, int64_t c1, int thread)
{
    const btask *t = arg;
    (void)thread;
    for (int64_t i = c0; i < c1; i++) {
        const bchunk *h = &t->ch[i];
        const dsv4k_linear_job *j = &t->jobs[h->job];
        const bprep *p = &t->prep[h->prep];
        switch (p->route) {
        case B_FP4V:
            dsv4k_rows_fp4v_avx512vnni(j->w, h->r0, h->r1, p->buf, j->y);
            break;
        case B_FP8B:
            dsv4k_rows_fp8b_avx512bf16(j->w, h->r0, h->r1, p->dq, p->buf, j->y);
            break;
        case B_FP8Q:
            dsv4k_rows_fp8q_avx512(j->w, h->r0, h->r1, j->x, p->dq, p->sh, j->y);
            break;
        case B_BF16:
            dsv4k_rows_avx512(j->w, h->r0, h->r1, p->dq, j->w->k, 1, j->y, 0);
            break;
        case B_FP4V2:
            dsv4k_rows_fp4v_avx2(j->w, h->r0, h->r1, p->buf, j->y);
            break;
        case B_FP8Q2:
            dsv4k_rows_fp8q_avx2(j->w, h->r0, h->r1, j->x, p->dq, p->sh, j->y);
            break;
        case B_FP8Q2A:
            dsv4k_rows_fp8q_avx2(j->w, h->r0, h->r1, p->dq, (const float *)p->buf, p->sh, j->y);
            break;
        case B_BF16_2:
            dsv4k_rows_avx2(j->w, h->r0, h->r1, p->dq, j->w->k, 1, j->y, 0);
            break;
        }
    }
}

/* the route dsv4k_linear gives one row of this job on AVX-512 with the
 * VNNI/BF16 extensions, or where it takes the AVX2 kernels (-1: none here) */
static int batch_route(const dsv4k_linear_ctx *c, const dsv4k_weight *w, int aq)
{
    if (!c->intq || w->k % 128 || w->k > c->max_k || w->n <= 0 || c->max_m < 1) return -1;
    if (c->isa < DSV4K_ISA_AVX512X || !dsv4k_have_avx512()) {
        /* AVX2: not where AVX-512 (F, BW) kernels run */
        if ((c->isa >= DSV4K_ISA_AVX512 && dsv4k_have_avx512()) || c->isa < DSV4K_ISA_AVX2 || !dsv4k_have_avx2())
            return -1;
        if (w->fmt == DSV4K_W_FP4) return aq && w->k % 512 == 0 ? B_FP4V2 : -1;
        if (w->fmt == DSV4K_W_FP8 || w->fmt == DSV4K_W_FP8_F32S) return w->k > 8192 ? -1 : aq ? B_FP8Q2A : B_FP8Q2;
        if (w->fmt == DSV4K_W_BF16) return aq ? -1 : B_BF16_2;
        return -1;
    }
    if (w->fmt == DSV4K_W_FP4)
        return aq && w->k % 512 == 0 && dsv4k_have_avx512vnni() ? B_FP4V : -1;
    if (w->fmt == DSV4K_W_FP8 || w->fmt == DSV4K_W_FP8_F32S) {
        if (w->k > 8192) return -1;
        if (!aq) return B_FP8Q;
        return dsv4k_have_avx512bf16() ? B_FP8B : -1;
    }
    if (w->fmt == DSV4K_W_BF16) return aq ? -1 : B_BF16;
    return -1;
}

/* prepares p (its x, k, route set) in its buffers; 0, or -1 when the
 * preparation refuses the row (dsv4k_linear then takes another route) */
static int bprep_fill(bprep *p)
{
    int64_t k = p->k;
    switch (p->route) {
    case B_FP4V:
        dsv4k_act_quant_dq(p->x, k, p->dq, p->ex, 1);
        return dsv4k_fp4v_prepare(p->dq, p->ex, k, p->buf) == 0 ? 0 : -1;
    case B_FP8B:
        dsv4k_act_quant_dq(p->x, k, p->dq, p->ex, 1);
        return dsv4k_fp8b_prepare(p->dq, p->ex, k, p->buf) == 0 ? 0 : -1;
    case B_FP8Q:
        return dsv4k_fp8x_prepare(p->x, k, p->dq, p->sh) == 0 ? 0 : -1;
    case B_BF16:
    case B_BF16_2:
        dsv4k_split_even_odd(p->x, k, p->dq);
        return 0;
    case B_FP4V2:
        dsv4k_act_quant_dq(p->x, k, p->dq, p->ex, 1);
        return dsv4k_fp4v_prepare_avx2(p->dq, p->ex, k, p->buf) == 0 ? 0 : -1;
    case B_FP8Q2:
        return dsv4k_fp8x_prepare(p->x, k, p->dq, p->sh) == 0 ? 0 : -1;
    case B_FP8Q2A:
        dsv4k_act_quant_dq(p->x, k, p->dq, p->ex, 1);
        dsv4k_fp8q_prepare(p->dq, p->ex, k, (float *)p->buf, p->sh);
        return 0;
    }
    return -1;
}

static int job_alone(dsv4k_linear_ctx *c, const dsv4k_linear_job *j, int aq)
{
    return dsv4k_linear(c, j->w, j->x, j->w->k, 1, j->y, j->w->n, aq);
}

int dsv4k_linear_batch(dsv4k_linear_ctx *c, const dsv4k_linear_job *jobs, int n, int aq)
{
    if (n <= 0) return 0;
    if (!c || !jobs) return -1;
    if (n > DSV4K_BATCH_MAX) {
        int rc = 0;
        for (int i = 0; i < n; i += DSV4K_BATCH_MAX)
            if (dsv4k_linear_batch(c, jobs + i, n - i < DSV4K_BATCH_MAX ? n - i : DSV4K_BATCH_MAX, aq) != 0) rc = -1;
        return rc;
    }
    int nt = c->n_threads;
    int route[DSV4K_BATCH_MAX], pj[DSV4K_BATCH_MAX];
    bprep prep[DSV4K_BATCH_MAX];
    int np = 0, rc = 0;
    if (c->nobatch) {
        for (int i = 0; i < n; i++)
            if (job_alone(c, &jobs[i], aq) != 0) rc = -1;
        return rc;
    }
    /* the distinct activation rows and their buffers' size */
    size_t need = 0;
    for (int i = 0; i < n; i++) {
        route[i] = batch_route(c, jobs[i].w, aq);
        pj[i] = -1;
        if (route[i] < 0) continue;
        int q = 0;
        while (q < np && !(prep[q].x == jobs[i].x && prep[q].k == jobs[i].w->k && prep[q].route == route[i])) q++;
        if (q == np) {
            prep[np].x = jobs[i].x;
            prep[np].k = jobs[i].w->k;
            prep[np].route = route[i];
            need += bprep_bytes(jobs[i].w->k);
            np++;
        }
        pj[i] = q;
    }
    if (need > c->bsize) {
        free(c->barena);
        c->barena = alloc64(need);
        c->bsize = c->barena ? need : 0;
    }
    uint8_t *a = c->barena;
    for (int q = 0; q < np; q++) {
        int64_t k = prep[q].k;
        if (!a) {
            prep[q].route = -1;
            continue;
        }
        prep[q].dq = (float *)(void *)a;
        prep[q].ex = (int8_t *)(a + round64(4 * k));
        prep[q].sh = (int16_t *)(void *)(a + round64(4 * k) + round64(k / 128 + 1));
        prep[q].buf = a + round64(4 * k) + round64(k / 128 + 1) + round64(2 * (k / 128 + 1));
        a += bprep_bytes(k);
    }
    /* jobs no batch route takes first, through dsv4k_linear (whose own
     * buffers are not the batch's) */
    int64_t rows = 0;
    for (int i = 0; i < n; i++) {
        if (pj[i] >= 0 && prep[pj[i]].route >= 0) {
            rows += jobs[i].w->n;
            continue;
        }
        pj[i] = -1;
        if (job_alone(c, &jobs[i], aq) != 0) rc = -1;
    }
    for (int q = 0; q < np; q++)
        if (prep[q].route >= 0 && bprep_fill(&prep[q]) != 0) prep[q].route = -1;
    /* the chunk table: every job cut into pieces of about rows / (8 · threads)
     * rows (at least 16), ending on whole interleaved groups */
    int64_t piece = rows / (8 * nt);
    if (piece < 16) piece = 16;
    piece = (piece + 3) / 4 * 4;
    int64_t nch = 0;
    for (int i = 0; i < n; i++)
        if (pj[i] >= 0) nch += jobs[i].w->n / piece + 2;
    if (nch > c->bch_cap) {
        free(c->bch);
        c->bch = malloc((size_t)nch * sizeof(bchunk));
        c->bch_cap = c->bch ? nch : 0;
    }
    bchunk *ch = c->bch;
    int64_t m = 0;
    for (int i = 0; i < n; i++) {
        if (pj[i] < 0) continue;
        const dsv4k_weight *w = jobs[i].w;
        if (prep[pj[i]].route < 0 || !ch) {
            /* a refused preparation (a value that is not finite, an extreme
             * block range) or no memory: the job alone */
            if (job_alone(c, &jobs[i], aq) != 0) rc = -1;
            continue;
        }
        for (int64_t r = 0; r < w->n;) {
            int64_t e = r + piece;
            if (e < w->n) e = ((w->row0 + e) & ~(int64_t)3) - w->row0;
            if (e <= r || e > w->n || w->n - e < piece / 2) e = w->n;
            ch[m].job = i;
            ch[m].prep = pj[i];
            ch[m].r0 = r;
            ch[m].r1 = e;
            m++;
            r = e;
        }
    }
    if (m > 0) {
        btask t = { jobs, prep, ch };
        dsv4k_pool_for(c->pool, m, 1, run_batch, &t);
    }
    return rc;
}
