/*
 * kernels/ref/linear.c — scalar reference of the quantised linear operator
 * (spec §3.3, §4.3–4.5). The oracle for every optimised twin: weights are
 * decoded exactly and products are accumulated in double, then rounded once
 * to f32. Weight bytes are found through dsv4k_row_byte, so rows in the
 * interleaved layout (kernels.h) read as plain ones.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"

/* value of weight element (r, c) */
static float weight_at(const dsv4k_weight *w, int64_t r, int64_t c)
{
    int64_t kb = (w->k + 127) / 128;
    r += w->row0;
    switch (w->fmt) {
    case DSV4K_W_BF16: {
        uint16_t h;
        memcpy(&h, dsv4k_row_byte(w, r, 2 * w->k, 2 * c), 2);
        return dsv4k_bf16_to_f32(h);
    }
    case DSV4K_W_F32:
        return ((const float *)w->w)[r * w->k + c];
    case DSV4K_W_FP8: {
        uint8_t s = ((const uint8_t *)w->s)[(r / 128) * kb + c / 128];
        return dsv4k_e4m3_to_f32(*dsv4k_row_byte(w, r, w->k, c)) * dsv4k_e8m0_to_f32(s);
    }
    case DSV4K_W_FP8_F32S: {
        float s = ((const float *)w->s)[(r / 128) * kb + c / 128];
        return dsv4k_e4m3_to_f32(*dsv4k_row_byte(w, r, w->k, c)) * s;
    }
    case DSV4K_W_FP4: {
        uint8_t byte = ((const uint8_t *)w->w)[r * (w->k / 2) + c / 2];
        uint8_t code = (c & 1) ? (uint8_t)(byte >> 4) : (uint8_t)(byte & 15);
        uint8_t s = ((const uint8_t *)w->s)[r * (w->k / 32) + c / 32];
        return dsv4k_e2m1_to_f32(code) * dsv4k_e8m0_to_f32(s);
    }
    default:
        return NAN;
    }
}

void dsv4k_weight_rows_f32_ref(const dsv4k_weight *w, int64_t r0, int64_t r1, float *dst)
{
    for (int64_t r = r0; r < r1; r++)
        for (int64_t c = 0; c < w->k; c++)
            dst[(r - r0) * w->k + c] = weight_at(w, r, c);
}

void dsv4k_linear_ref(const dsv4k_weight *w, const float *x, int64_t ldx, int64_t m, float *y, int64_t ldy, int aq)
{
    int64_t k = w->k, n = w->n;
    if (m <= 0 || n <= 0) return;
    float *a = malloc((size_t)(m * k > 0 ? m * k : 1) * sizeof *a);
    float *wr = malloc((size_t)(k > 0 ? k : 1) * sizeof *wr);
    int8_t *ex = malloc((size_t)(k / 128 + 1));
    if (!a || !wr || !ex) {
        /* the reference has no error channel: poison the output instead */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) y[i * ldy + j] = NAN;
        free(a); free(wr); free(ex);
        return;
    }
    /* activations as the product sees them: a = q * 2^e (aq) or x */
    for (int64_t i = 0; i < m; i++) {
        const float *xi = x + i * ldx;
        float *ai = a + i * k;
        if (aq && k % 128 == 0) {
            dsv4k_act_quant_fp8_ref(xi, k, 128, ai, ex);
            for (int64_t c = 0; c < k; c++) ai[c] *= dsv4k_pow2(ex[c / 128]);
        } else {
            for (int64_t c = 0; c < k; c++) ai[c] = xi[c];
        }
    }
    for (int64_t j = 0; j < n; j++) {
        dsv4k_weight_rows_f32_ref(w, j, j + 1, wr);
        for (int64_t i = 0; i < m; i++) {
            const float *ai = a + i * k;
            double acc = 0.0;
            for (int64_t c = 0; c < k; c++) acc += (double)ai[c] * (double)wr[c];
            y[i * ldy + j] = (float)acc;
        }
    }
    free(a); free(wr); free(ex);
}
