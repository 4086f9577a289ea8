/*
 * kernels/ref/ops.c — scalar references of the model's operators (see
 * kernels/ops.h; spec ../shared/spec/architecture.md §4–§5). Sums are taken
 * in double and rounded once, so these are the oracle for faster twins.
 */
#include <math.h>
#include <stddef.h>
#include "kernels.h"
#include "ops.h"

float dsv4k_softplus(float x) { return x > 20.0f ? x : (float)log1p(exp((double)x)); }

static float sigmoidf_(float x) { return (float)(1.0 / (1.0 + exp(-(double)x))); }

void dsv4k_rmsnorm_ref(const float *x, const float *w, int64_t n, float eps, float *y)
{
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (int64_t i = 0; i < n; i++) y[i] = (w ? w[i] : 1.0f) * (x[i] * r);
}

void dsv4k_rope_freqs(double base, int rope_dim, int64_t orig_len, double factor, double beta_fast,
                      double beta_slow, float *f)
{
    int half = rope_dim / 2;
    for (int i = 0; i < half; i++) f[i] = (float)(1.0 / pow(base, (double)(2 * i) / rope_dim));
    if (orig_len <= 0 || factor <= 0) return;
    /* dimension index at which a wavelength makes `rot` turns over orig_len */
    double lo_c = rope_dim * log((double)orig_len / (beta_fast * 2.0 * M_PI)) / (2.0 * log(base));
    double hi_c = rope_dim * log((double)orig_len / (beta_slow * 2.0 * M_PI)) / (2.0 * log(base));
    double lo = floor(lo_c), hi = ceil(hi_c);
    if (lo < 0) lo = 0;
    if (hi > rope_dim - 1) hi = rope_dim - 1;
    if (lo == hi) hi += 0.001;
    for (int i = 0; i < half; i++) {
        double ramp = ((double)i - lo) / (hi - lo);
        if (ramp < 0) ramp = 0;
        if (ramp > 1) ramp = 1;
        f[i] = (float)((double)f[i] / factor * ramp + (double)f[i] * (1.0 - ramp));
    }
}

void dsv4k_rope_ref(float *x, int rope_dim, int64_t pos, const float *f, int inverse)
{
    float t = (float)pos;
    for (int i = 0; i < rope_dim / 2; i++) {
        float ang = t * f[i];
        float c = (float)cos((double)ang), s = (float)sin((double)ang);
        if (inverse) s = -s;
        float a = x[2 * i], b = x[2 * i + 1];
        x[2 * i] = a * c - b * s;
        x[2 * i + 1] = a * s + b * c;
    }
}

void dsv4k_rope_table(int rope_dim, int64_t pos, const float *f, int inverse, float *cs)
{
    float t = (float)pos;
    for (int i = 0; i < rope_dim / 2; i++) {
        float ang = t * f[i];
        float c = (float)cos((double)ang), s = (float)sin((double)ang);
        cs[2 * i] = c;
        cs[2 * i + 1] = inverse ? -s : s;
    }
}

void dsv4k_rope_apply_ref(float *x, int rope_dim, const float *cs)
{
    for (int i = 0; i < rope_dim / 2; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        float a = x[2 * i], b = x[2 * i + 1];
        x[2 * i] = a * c - b * s;
        x[2 * i + 1] = a * s + b * c;
    }
}

void dsv4k_hadamard_ref(float *x, int n)
{
    for (int h = 1; h < n; h *= 2)
        for (int i = 0; i < n; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
    float s = (float)(1.0 / sqrt((double)n));
    for (int i = 0; i < n; i++) x[i] *= s;
}

/* m[o] = (F[o]·x) · rsqrt(mean(x²) + eps) for o < rows */
void dsv4k_hc_mix_ref(const float *X, int64_t width, const float *fn, int rows, float norm_eps, double *m)
{
    double ss = 0.0;
    for (int64_t i = 0; i < width; i++) ss += (double)X[i] * X[i];
    double r = (double)(float)(1.0 / sqrt(ss / (double)width + (double)norm_eps));
    for (int o = 0; o < rows; o++) {
        const float *fo = fn + (int64_t)o * width;
        double acc = 0.0;
        for (int64_t i = 0; i < width; i++) acc += (double)fo[i] * X[i];
        m[o] = (double)(float)acc * r;
    }
}

void dsv4k_hc_pre_ref(const float *X, int hc, int64_t dim, const float *fn, const float *base,
                      const float *scale, int iters, float norm_eps, float hc_eps, float *u,
                      float *post, float *comb)
{
    double m[64];
    dsv4k_hc_mix_ref(X, hc * dim, fn, (2 + hc) * hc, norm_eps, m);
    dsv4k_hc_pre_from_mix_ref(X, hc, dim, m, base, scale, iters, hc_eps, u, post, comb);
}

void dsv4k_hc_pre_weights_ref(int hc, const double *m, const float *base, const float *scale, int iters,
                              float hc_eps, float *pre, float *post, float *comb)
{
    for (int j = 0; j < hc; j++) {
        pre[j] = sigmoidf_((float)m[j] * scale[0] + base[j]) + hc_eps;
        post[j] = 2.0f * sigmoidf_((float)m[hc + j] * scale[1] + base[hc + j]);
    }
    /* comb: row softmax + eps, column normalisation, then (row, column) x (iters-1) */
    for (int j = 0; j < hc; j++) {
        float *row = comb + j * hc;
        float mx = -INFINITY;
        for (int k = 0; k < hc; k++) {
            row[k] = (float)m[2 * hc + j * hc + k] * scale[2] + base[2 * hc + j * hc + k];
            if (row[k] > mx) mx = row[k];
        }
        double s = 0.0;
        for (int k = 0; k < hc; k++) { row[k] = (float)exp((double)(row[k] - mx)); s += row[k]; }
        for (int k = 0; k < hc; k++) row[k] = (float)(row[k] / s) + hc_eps;
    }
    for (int it = 0; it < iters; it++) {
        if (it > 0)
            for (int j = 0; j < hc; j++) {
                float s = 0.0f;
                for (int k = 0; k < hc; k++) s += comb[j * hc + k];
                for (int k = 0; k < hc; k++) comb[j * hc + k] /= s + hc_eps;
            }
        for (int k = 0; k < hc; k++) {
            float s = 0.0f;
            for (int j = 0; j < hc; j++) s += comb[j * hc + k];
            for (int j = 0; j < hc; j++) comb[j * hc + k] /= s + hc_eps;
        }
    }
}

void dsv4k_hc_sum_ref(const float *X, int hc, int64_t dim, const float *w, float *y)
{
    for (int64_t c = 0; c < dim; c++) {
        double acc = 0.0;
        for (int j = 0; j < hc; j++) acc += (double)w[j] * X[j * dim + c];
        y[c] = (float)acc;
    }
}

void dsv4k_hc_pre_from_mix_ref(const float *X, int hc, int64_t dim, const double *m, const float *base,
                               const float *scale, int iters, float hc_eps, float *u, float *post, float *comb)
{
    float pre[8];
    dsv4k_hc_pre_weights_ref(hc, m, base, scale, iters, hc_eps, pre, post, comb);
    dsv4k_hc_sum_ref(X, hc, dim, pre, u);
}

void dsv4k_hc_post_ref(const float *X, const float *o, const float *post, const float *comb, int hc,
                       int64_t dim, float *Xo)
{
    for (int k = 0; k < hc; k++)
        for (int64_t c = 0; c < dim; c++) {
            double acc = (double)post[k] * o[c];
            for (int j = 0; j < hc; j++) acc += (double)comb[j * hc + k] * X[j * dim + c];
            Xo[k * dim + c] = (float)acc;
        }
}

void dsv4k_hc_head_ref(const float *X, int hc, int64_t dim, const float *fn, const float *base,
                       const float *scale, float norm_eps, float hc_eps, float *y)
{
    double m[8];
    dsv4k_hc_mix_ref(X, hc * dim, fn, hc, norm_eps, m);
    dsv4k_hc_head_from_mix_ref(X, hc, dim, m, base, scale, hc_eps, y);
}

void dsv4k_hc_head_weights_ref(int hc, const double *m, const float *base, const float *scale, float hc_eps,
                               float *w)
{
    for (int j = 0; j < hc; j++) w[j] = sigmoidf_((float)m[j] * scale[0] + base[j]) + hc_eps;
}

void dsv4k_hc_head_from_mix_ref(const float *X, int hc, int64_t dim, const double *m, const float *base,
                                const float *scale, float hc_eps, float *y)
{
    float w[8];
    dsv4k_hc_head_weights_ref(hc, m, base, scale, hc_eps, w);
    dsv4k_hc_sum_ref(X, hc, dim, w, y);
}

void dsv4k_attn_head_ref(const float *q, const float *const *kv, int64_t n, int64_t d, float scale,
                         float sink, float *out)
{
    double mx = sink;
    /* two passes over the keys: max, then exp-weighted sum (no score buffer) */
    for (int64_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int64_t c = 0; c < d; c++) s += (double)q[c] * kv[i][c];
        s = (double)(float)s * scale;
        if (s > mx) mx = s;
    }
    double den = exp((double)sink - mx);
    for (int64_t c = 0; c < d; c++) out[c] = 0.0f;
    double acc[1024];
    double *a = d <= 1024 ? acc : NULL;
    if (!a) { /* heads wider than 1024 are not produced by any config we accept */
        for (int64_t c = 0; c < d; c++) out[c] = NAN;
        return;
    }
    for (int64_t c = 0; c < d; c++) a[c] = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int64_t c = 0; c < d; c++) s += (double)q[c] * kv[i][c];
        s = (double)(float)s * scale;
        double p = exp(s - mx);
        den += p;
        for (int64_t c = 0; c < d; c++) a[c] += p * kv[i][c];
    }
    for (int64_t c = 0; c < d; c++) out[c] = (float)(a[c] / den);
}

void dsv4k_compress_pool_ref(const float *v, const float *g, int rows, int64_t stride,
                             const int64_t *off, int64_t d, float *out)
{
    for (int64_t c = 0; c < d; c++) {
        double mx = -INFINITY;
        for (int r = 0; r < rows; r++) {
            double x = g[r * stride + off[r] + c];
            if (x > mx) mx = x;
        }
        double den = 0.0, acc = 0.0;
        if (mx == -INFINITY) { out[c] = 0.0f; continue; }
        for (int r = 0; r < rows; r++) {
            double p = exp((double)g[r * stride + off[r] + c] - mx);
            den += p;
            acc += p * v[r * stride + off[r] + c];
        }
        out[c] = (float)(acc / den);
    }
}

float dsv4k_index_score_ref(const float *q, const float *w, int heads, int64_t d, const float *k)
{
    double s = 0.0;
    for (int h = 0; h < heads; h++) {
        double dot = 0.0;
        for (int64_t c = 0; c < d; c++) dot += (double)q[h * d + c] * k[c];
        if (dot > 0) s += (double)w[h] * dot;
    }
    return (float)s;
}

void dsv4k_key_fp4_decode_ref(const uint8_t *p, int64_t d, float *dst)
{
    for (int64_t b = 0; b < d; b += 32) {
        float s = dsv4k_pow2((int)p[d / 2 + b / 32] - 127);
        for (int64_t i = b; i < b + 32; i += 2) {
            uint8_t byte = p[i / 2];
            dst[i] = dsv4k_lut_e2m1[byte & 15] * s;
            dst[i + 1] = dsv4k_lut_e2m1[byte >> 4] * s;
        }
    }
}

/* ---- SwiGLU ------------------------------------------------------------ */

static float silu_ref(float x) { return (float)((double)x / (1.0 + exp(-(double)x))); }

void dsv4k_swiglu_ref(float *g, const float *u, int64_t n, float lim, float w)
{
    for (int64_t i = 0; i < n; i++) {
        float gv = g[i], uv = u[i];
        if (lim > 0) {
            gv = gv > lim ? lim : gv;
            uv = uv > lim ? lim : uv < -lim ? -lim : uv;
        }
        g[i] = w * (silu_ref(gv) * uv);
    }
}
