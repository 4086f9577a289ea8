/*
 * lib/gen/sampler.c — the sampler chain (see dsv4_sampler.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/core.h"
#include "gen/sampler_int.h"

typedef struct { int32_t token; float bias; } bias_entry;

struct dsv4_sampler {
    double temperature, top_p, min_p, rep, freq, pres;
    int64_t top_k, last_n, seed;
    uint64_t rng[4];
    bias_entry *bias;
    size_t n_bias, cap_bias;
    int32_t *hist;
    size_t n_hist, cap_hist;
    dsv4_sampler_callbacks cb; /* user stage; zeroed when none */
    void *cb_user;
    /* scratch */
    float *work;
    int32_t *order;
    size_t cap_work;
};

/* xoshiro256** seeded by splitmix64 */
static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static void reseed(dsv4_sampler *s)
{
    uint64_t x = (uint64_t)s->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix(&x);
}
static uint64_t rotl(uint64_t v, int k) { return (v << k) | (v >> (64 - k)); }
static uint64_t next64(dsv4_sampler *s)
{
    uint64_t *r = s->rng, out = rotl(r[1] * 5, 7) * 9, t = r[1] << 17;
    r[2] ^= r[0]; r[3] ^= r[1]; r[1] ^= r[2]; r[0] ^= r[3]; r[2] ^= t; r[3] = rotl(r[3], 45);
    return out;
}

dsv4_status dsv4_sampler_create(dsv4_sampler **out)
{
    if (!out) return DSV4_ERR_INVALID_ARGUMENT;
    *out = NULL;
    dsv4_sampler *s = dsv4__calloc(1, sizeof *s);
    if (!s) return DSV4_ERR_OUT_OF_MEMORY;
    s->temperature = 1.0;
    s->top_p = 1.0;
    s->rep = 1.0;
    s->last_n = 64;
    reseed(s);
    *out = s;
    return DSV4_OK;
}

/* the user stage is gone: its release callback, once */
static void drop_stage(dsv4_sampler *s)
{
    void (*release)(void *) = s->cb.release;
    void *user = s->cb_user;
    memset(&s->cb, 0, sizeof s->cb);
    s->cb_user = NULL;
    if (release) release(user);
}

void dsv4_sampler_free(dsv4_sampler *s)
{
    if (!s) return;
    drop_stage(s);
    dsv4__free(s->bias);
    dsv4__free(s->hist);
    dsv4__free(s->work);
    dsv4__free(s->order);
    dsv4__free(s);
}

static int is_f64(dsv4_sampler_param k)
{
    return k == DSV4_SAMPLER_TEMPERATURE || k == DSV4_SAMPLER_TOP_P || k == DSV4_SAMPLER_MIN_P ||
           k == DSV4_SAMPLER_REPETITION_PENALTY || k == DSV4_SAMPLER_FREQUENCY_PENALTY ||
           k == DSV4_SAMPLER_PRESENCE_PENALTY;
}
static int is_i64(dsv4_sampler_param k)
{
    return k == DSV4_SAMPLER_TOP_K || k == DSV4_SAMPLER_PENALTY_LAST_N || k == DSV4_SAMPLER_SEED;
}

dsv4_status dsv4_sampler_set_f64(dsv4_sampler *s, dsv4_sampler_param k, double v)
{
    if (!s) return DSV4_ERR_INVALID_ARGUMENT;
    if (!is_f64(k)) return is_i64(k) ? DSV4_ERR_INVALID_ARGUMENT : DSV4_ERR_UNKNOWN_OPTION;
    if (!isfinite(v)) return DSV4_ERR_INVALID_ARGUMENT;
    switch (k) {
    case DSV4_SAMPLER_TEMPERATURE: if (v < 0) return DSV4_ERR_INVALID_ARGUMENT; s->temperature = v; break;
    case DSV4_SAMPLER_TOP_P: if (v <= 0 || v > 1) return DSV4_ERR_INVALID_ARGUMENT; s->top_p = v; break;
    case DSV4_SAMPLER_MIN_P: if (v < 0 || v > 1) return DSV4_ERR_INVALID_ARGUMENT; s->min_p = v; break;
    case DSV4_SAMPLER_REPETITION_PENALTY: if (v <= 0) return DSV4_ERR_INVALID_ARGUMENT; s->rep = v; break;
    case DSV4_SAMPLER_FREQUENCY_PENALTY: if (v < -2 || v > 2) return DSV4_ERR_INVALID_ARGUMENT; s->freq = v; break;
    case DSV4_SAMPLER_PRESENCE_PENALTY: if (v < -2 || v > 2) return DSV4_ERR_INVALID_ARGUMENT; s->pres = v; break;
    default: return DSV4_ERR_UNKNOWN_OPTION;
    }
    return DSV4_OK;
}

dsv4_status dsv4_sampler_set_i64(dsv4_sampler *s, dsv4_sampler_param k, int64_t v)
{
    if (!s) return DSV4_ERR_INVALID_ARGUMENT;
    if (!is_i64(k)) return is_f64(k) ? DSV4_ERR_INVALID_ARGUMENT : DSV4_ERR_UNKNOWN_OPTION;
    switch (k) {
    case DSV4_SAMPLER_TOP_K: if (v < 0) return DSV4_ERR_INVALID_ARGUMENT; s->top_k = v; break;
    case DSV4_SAMPLER_PENALTY_LAST_N: if (v < 0) return DSV4_ERR_INVALID_ARGUMENT; s->last_n = v; break;
    case DSV4_SAMPLER_SEED: s->seed = v; reseed(s); break;
    default: return DSV4_ERR_UNKNOWN_OPTION;
    }
    return DSV4_OK;
}

dsv4_status dsv4_sampler_get_f64(const dsv4_sampler *s, dsv4_sampler_param k, double *v)
{
    if (!s || !v) return DSV4_ERR_INVALID_ARGUMENT;
    switch (k) {
    case DSV4_SAMPLER_TEMPERATURE: *v = s->temperature; break;
    case DSV4_SAMPLER_TOP_P: *v = s->top_p; break;
    case DSV4_SAMPLER_MIN_P: *v = s->min_p; break;
    case DSV4_SAMPLER_REPETITION_PENALTY: *v = s->rep; break;
    case DSV4_SAMPLER_FREQUENCY_PENALTY: *v = s->freq; break;
    case DSV4_SAMPLER_PRESENCE_PENALTY: *v = s->pres; break;
    default: return is_i64(k) ? DSV4_ERR_INVALID_ARGUMENT : DSV4_ERR_UNKNOWN_OPTION;
    }
    return DSV4_OK;
}

dsv4_status dsv4_sampler_get_i64(const dsv4_sampler *s, dsv4_sampler_param k, int64_t *v)
{
    if (!s || !v) return DSV4_ERR_INVALID_ARGUMENT;
    switch (k) {
    case DSV4_SAMPLER_TOP_K: *v = s->top_k; break;
    case DSV4_SAMPLER_PENALTY_LAST_N: *v = s->last_n; break;
    case DSV4_SAMPLER_SEED: *v = s->seed; break;
    default: return is_f64(k) ? DSV4_ERR_INVALID_ARGUMENT : DSV4_ERR_UNKNOWN_OPTION;
    }
    return DSV4_OK;
}

dsv4_status dsv4_sampler_set_logit_bias(dsv4_sampler *s, int32_t token, float bias)
{
    if (!s || token < 0 || isnan(bias) || bias == INFINITY) return DSV4_ERR_INVALID_ARGUMENT;
    for (size_t i = 0; i < s->n_bias; i++) {
        if (s->bias[i].token == token) {
            if (bias == 0) s->bias[i] = s->bias[--s->n_bias];
            else s->bias[i].bias = bias;
            return DSV4_OK;
        }
    }
    if (bias == 0) return DSV4_OK;
    if (s->n_bias == s->cap_bias) {
        size_t c = s->cap_bias ? 2 * s->cap_bias : 16;
        bias_entry *b = dsv4__realloc(s->bias, c * sizeof *b);
        if (!b) return DSV4_ERR_OUT_OF_MEMORY;
        s->bias = b;
        s->cap_bias = c;
    }
    s->bias[s->n_bias].token = token;
    s->bias[s->n_bias].bias = bias;
    s->n_bias++;
    return DSV4_OK;
}

dsv4_status dsv4_sampler_accept(dsv4_sampler *s, int32_t token)
{
    if (!s || token < 0) return DSV4_ERR_INVALID_ARGUMENT;
    if (s->n_hist == s->cap_hist) {
        size_t c = s->cap_hist ? 2 * s->cap_hist : 64;
        int32_t *h = dsv4__realloc(s->hist, c * sizeof *h);
        if (!h) return DSV4_ERR_OUT_OF_MEMORY;
        s->hist = h;
        s->cap_hist = c;
    }
    s->hist[s->n_hist++] = token;
    if (s->cb.accept) s->cb.accept(s->cb_user, token);
    return DSV4_OK;
}

dsv4_status dsv4_sampler_set_callbacks(dsv4_sampler *s, const dsv4_sampler_callbacks *cb, void *user)
{
    if (!s) return DSV4_ERR_INVALID_ARGUMENT;
    if (!cb) {
        drop_stage(s);
        return DSV4_OK;
    }
    /* every member after struct_size is a function pointer, at a multiple of
     * the pointer size: any other size would cut one in half (refused) */
    if (cb->struct_size < sizeof(void *) || cb->struct_size > 65536 || cb->struct_size % sizeof(void *))
        return DSV4_ERR_INVALID_ARGUMENT;
    /* members the caller's (older) table does not have stay NULL; members a
     * newer caller has beyond ours are ignored */
    dsv4_sampler_callbacks c;
    memset(&c, 0, sizeof c);
    memcpy(&c, cb, cb->struct_size < sizeof c ? cb->struct_size : sizeof c);
    c.struct_size = (uint32_t)sizeof c;
    /* the same user data with the same release registered again stays owned
     * by the stage (not released); anything else replaces the stage */
    if (s->cb.release && !(s->cb_user == user && s->cb.release == c.release)) drop_stage(s);
    s->cb = c;
    s->cb_user = user;
    return DSV4_OK;
}

dsv4_status dsv4_sampler_reset(dsv4_sampler *s)
{
    if (!s) return DSV4_ERR_INVALID_ARGUMENT;
    s->n_hist = 0;
    reseed(s);
    if (s->cb.reset) s->cb.reset(s->cb_user);
    return DSV4_OK;
}

static _Thread_local const float *tl_keys;
static int by_prob_desc(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    float px = tl_keys[x], py = tl_keys[y];
    return px > py ? -1 : px < py ? 1 : (x < y ? -1 : x > y);
}

/* o[0..m) (ids in ascending order, p[id] in (0, 1]) sorted by p descending,
 * ties keeping ascending ids: a stable LSD radix sort over three 11-bit
 * digits of 0x3f800000 - bits(p) (which orders as -p); tmp: room for m ids.
 * The order of qsort with by_prob_desc, in linear time. */
static void sort_by_prob_desc(const float *p, int32_t *o, size_t m, int32_t *tmp)
{
    size_t cnt[2048];
    for (int pass = 0; pass < 3; pass++) {
        int sh = 11 * pass;
        memset(cnt, 0, sizeof cnt);
        for (size_t i = 0; i < m; i++) {
            uint32_t b;
            memcpy(&b, &p[o[i]], 4);
            cnt[((0x3f800000u - b) >> sh) & 2047]++;
        }
        size_t at = 0;
        for (int d = 0; d < 2048; d++) {
            size_t c = cnt[d];
            cnt[d] = at;
            at += c;
        }
        for (size_t i = 0; i < m; i++) {
            uint32_t b;
            memcpy(&b, &p[o[i]], 4);
            tmp[cnt[((0x3f800000u - b) >> sh) & 2047]++] = o[i];
        }
        memcpy(o, tmp, m * sizeof *o);
    }
}

/* all stages; p receives the final distribution; returns the greedy token too */
static dsv4_status distribution(dsv4_sampler *s, const float *logits, size_t n, float *p, int32_t *greedy)
{
    if (!s || !logits || !p || n == 0 || n > ((size_t)1 << 31)) return DSV4_ERR_INVALID_ARGUMENT;
    if (n > s->cap_work) {
        float *w = dsv4__realloc(s->work, n * sizeof *w);
        if (!w) return DSV4_ERR_OUT_OF_MEMORY;
        s->work = w;
        /* one more than n: the branch-free compaction below writes each id
         * before it knows whether it keeps it */
        int32_t *o = dsv4__realloc(s->order, (n + 1) * sizeof *o);
        if (!o) return DSV4_ERR_OUT_OF_MEMORY;
        s->order = o;
        s->cap_work = n;
    }
    float *x = s->work;
    /* the passes over the vocabulary are written without branches on the
     * values (copies, flags, selects), so they cost the same whatever the
     * distribution; sums keep their order, so results are unchanged */
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        bad |= logits[i] != logits[i];
        x[i] = logits[i];
    }
    if (bad) return DSV4_ERR_INVALID_ARGUMENT;
    for (size_t i = 0; i < s->n_bias; i++)
        if ((size_t)s->bias[i].token < n) x[s->bias[i].token] += s->bias[i].bias;
    /* penalties over the last N accepted tokens */
    size_t h0 = s->last_n == 0 || (size_t)s->last_n >= s->n_hist ? 0 : s->n_hist - (size_t)s->last_n;
    if (s->rep != 1.0 || s->freq != 0 || s->pres != 0) {
        for (size_t i = h0; i < s->n_hist; i++) {
            int32_t t = s->hist[i];
            if ((size_t)t >= n) continue;
            /* count once per distinct token: handle it at its first occurrence in the window */
            size_t j = h0;
            while (s->hist[j] != t) j++;
            if (j != i) continue;
            size_t count = 0;
            for (size_t k = h0; k < s->n_hist; k++) count += s->hist[k] == t;
            float v = x[t];
            if (s->rep != 1.0) v = v > 0 ? (float)(v / s->rep) : (float)(v * s->rep);
            v -= (float)(s->freq * (double)count + s->pres);
            x[t] = v;
        }
    }
    if (s->cb.apply && s->cb.apply(s->cb_user, x, n) != 0) return DSV4_ERR_ABORTED;
    /* greedy choice (lowest id on ties) */
    size_t best = 0;
    bad = x[0] != x[0];
    for (size_t i = 1; i < n; i++) {
        bad |= x[i] != x[i];
        if (x[i] > x[best]) best = i;
    }
    if (bad) return DSV4_ERR_INVALID_ARGUMENT; /* the user stage wrote a NaN */
    /* every token removed (bias, penalties, the user stage): nothing to draw
     * from, which is not a caller error */
    if (x[best] == -INFINITY) return DSV4_ERR_NOT_AVAILABLE;
    *greedy = (int32_t)best;
    if (s->temperature == 0) {
        memset(p, 0, n * sizeof *p);
        p[best] = 1.0f;
        return DSV4_OK;
    }
    /* softmax at temperature */
    double mx = x[best], sum = 0;
    for (size_t i = 0; i < n; i++) {
        double e = x[i] == -INFINITY ? 0.0 : exp(((double)x[i] - mx) / s->temperature);
        p[i] = (float)e;
        sum += e;
    }
    for (size_t i = 0; i < n; i++) p[i] = (float)(p[i] / sum);
    /* top-k, top-p, min-p over tokens sorted by probability (ties: lower id first) */
    int need_sort = (s->top_k > 0 && (size_t)s->top_k < n) || s->top_p < 1.0;
    size_t keep = n;
    if (need_sort) {
        /* Only the tokens at or above a power of two τ are sorted: the
         * largest τ below which no token of the kept set can lie (the tokens
         * >= τ number top_k or more and hold top_p of the mass), found from a
         * histogram of the probabilities' binary exponents. Every other token
         * is below all of them, so the sorted prefix — and the kept set — is
         * the one a full sort gives. */
        int32_t *o = s->order;
        /* four interleaved histograms: consecutive tokens of one binade do
         * not wait on each other's sums (bucket 0: zeros and subnormals,
         * never needed: τ is a normal power of two) */
        double bm4[4][256] = { { 0 } };
        size_t bc4[4][256] = { { 0 } }, m = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t bits;
            memcpy(&bits, &p[i], 4);
            unsigned b = (bits >> 23) & 255;
            bm4[i & 3][b] += p[i];
            bc4[i & 3][b]++;
        }
        double bmass[256];
        size_t bcnt[256];
        for (int b = 0; b < 256; b++) {
            bmass[b] = (bm4[0][b] + bm4[1][b]) + (bm4[2][b] + bm4[3][b]);
            bcnt[b] = bc4[0][b] + bc4[1][b] + bc4[2][b] + bc4[3][b];
        }
        int e = 255;
        double cm = 0;
        size_t cc = 0;
        for (; e > 0; e--) {
            cm += bmass[e];
            cc += bcnt[e];
            int enough_k = !(s->top_k > 0 && (size_t)s->top_k < n) || cc >= (size_t)s->top_k;
            int enough_p = !(s->top_p < 1.0) || cm >= s->top_p + 1e-6; /* margin over summation order */
            if (enough_k && enough_p) break;
        }
        float tau = 0;
        if (e > 0) {
            uint32_t tb = (uint32_t)e << 23;
            memcpy(&tau, &tb, 4);
        }
        for (size_t i = 0; i < n; i++) {
            o[m] = (int32_t)i;
            m += p[i] > 0 && p[i] >= tau;
        }
        if (m < n) {
            /* the rest (below τ or zero) after them, in id order; x, no longer
             * needed, serves as the membership flags */
            char *in = (char *)s->work;
            size_t q = m;
            memset(in, 0, n);
            for (size_t i = 0; i < m; i++) in[o[i]] = 1;
            for (size_t i = 0; i < n; i++) {
                o[q] = (int32_t)i;
                q += !in[i];
            }
        }
        if (m > 256) {
            sort_by_prob_desc(p, o, m, (int32_t *)s->work);
        } else {
            tl_keys = p;
            qsort(o, m, sizeof *o, by_prob_desc);
        }
        if (s->top_k > 0 && (size_t)s->top_k < keep) keep = (size_t)s->top_k;
        if (s->top_p < 1.0) {
            double c = 0;
            size_t k;
            for (k = 0; k < keep; k++) {
                c += p[o[k]];
                if (c >= s->top_p) { k++; break; }
            }
            if (k < keep) keep = k;
        }
        for (size_t i = keep; i < n; i++) p[o[i]] = 0;
    }
    if (s->min_p > 0) {
        float top = p[best] > 0 ? p[best] : 0;
        float thr = (float)(s->min_p * top);
        for (size_t i = 0; i < n; i++) p[i] = p[i] < thr ? 0 : p[i];
    }
    sum = 0;
    for (size_t i = 0; i < n; i++) sum += p[i];
    if (!(sum > 0)) return DSV4_ERR_NOT_AVAILABLE;
    for (size_t i = 0; i < n; i++) p[i] = (float)(p[i] / sum);
    return DSV4_OK;
}

dsv4_status dsv4_sampler_probs(dsv4_sampler *s, const float *logits, size_t n, float *probs)
{
    int32_t g;
    return distribution(s, logits, n, probs, &g);
}

void dsv4__sampler_defaults(dsv4_sampler *s)
{
    s->temperature = 1.0;
    s->top_p = 1.0;
    s->min_p = 0;
    s->rep = 1.0;
    s->freq = s->pres = 0;
    s->top_k = 0;
    s->last_n = 64;
    s->seed = 0;
    s->n_bias = 0;
    s->n_hist = 0;
    reseed(s);
}

double dsv4__sampler_uniform(dsv4_sampler *s)
{
    return (double)(next64(s) >> 11) * (1.0 / 9007199254740992.0);
}

int dsv4__sampler_has_user(const dsv4_sampler *s) { return s->cb.apply || s->cb.select; }

int dsv4__sampler_is_greedy(const dsv4_sampler *s) { return s->temperature == 0 && !s->cb.select; }

dsv4_status dsv4__sampler_dist(dsv4_sampler *s, const float *logits, size_t n, float *p, int32_t *greedy)
{
    return distribution(s, logits, n, p, greedy);
}

dsv4_status dsv4__sampler_pick(dsv4_sampler *s, const float *p, size_t n, int32_t *token)
{
    *token = -1;
    if (s->cb.select) {
        int32_t t = -1;
        if (s->cb.select(s->cb_user, p, n, &t) != 0) return DSV4_ERR_ABORTED;
        if (t < 0 || (size_t)t >= n || !(p[t] > 0)) return DSV4_ERR_INVALID_ARGUMENT;
        *token = t;
        return DSV4_OK;
    }
    double mass = 0;
    for (size_t i = 0; i < n; i++) mass += p[i] > 0 ? p[i] : 0;
    if (!(mass > 0)) return DSV4_ERR_NOT_AVAILABLE;
    double u = dsv4__sampler_uniform(s) * mass, c = 0;
    size_t last = 0;
    /* adding 0 for the tokens left out keeps c, and u < c cannot turn true
     * there (it would have at the token before), so the token is the one of
     * the loop over kept tokens alone */
    for (size_t i = 0; i < n; i++) {
        int kept = p[i] > 0;
        last = kept ? i : last;
        c += kept ? p[i] : 0;
        if (u < c) { *token = (int32_t)i; return DSV4_OK; }
    }
    *token = (int32_t)last; /* rounding at the top end */
    return DSV4_OK;
}

dsv4_status dsv4_sampler_sample(dsv4_sampler *s, const float *logits, size_t n, int32_t *token)
{
    if (token) *token = -1;
    if (!s || !token || !logits || n == 0 || n > ((size_t)1 << 31)) return DSV4_ERR_INVALID_ARGUMENT;
    float *p = dsv4__malloc(n * sizeof *p);
    if (!p) return DSV4_ERR_OUT_OF_MEMORY;
    int32_t g = 0;
    dsv4_status st = distribution(s, logits, n, p, &g);
    if (!st) {
        if (s->temperature == 0 && !s->cb.select) *token = g;
        else st = dsv4__sampler_pick(s, p, n, token);
    }
    dsv4__free(p);
    return st;
}
