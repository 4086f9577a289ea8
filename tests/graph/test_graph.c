/*
 * tests/graph — the graph executor on its own: planning (simultaneously live
 * tensors never share bytes; the arena is smaller than the sum of the
 * tensors when lifetimes allow; a tensor read before any node writes it is
 * refused) and execution of generic operators (views, row counts below the
 * planned maximum, positions) against direct calls of the reference
 * functions.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "core/core.h"
#include "graph/graph.h"
#include "ops.h"

#define T(c) CHECK((c), "%s", #c)

static uint32_t st = 7;
static float frand(void) { st = st * 1664525u + 1013904223u; return (float)((st >> 8) & 0xffff) / 32768.0f - 1.0f; }

static int64_t bytes_of(const dsv4g_graph *g, const dsv4g_tensor *t)
{
    return t->mult * g->dom_max[t->dom] * t->ld * 4;
}

/* no two owners live at the same node overlap */
static int overlaps(const dsv4g_graph *g)
{
    int bad = 0;
    for (int32_t a = 0; a < g->n_t; a++)
        for (int32_t b = a + 1; b < g->n_t; b++) {
            const dsv4g_tensor *x = &g->t[a], *y = &g->t[b];
            if (x->base >= 0 || y->base >= 0 || x->first < 0 || y->first < 0) continue;
            int live = x->first <= y->last && y->first <= x->last;
            int share = x->off < y->off + bytes_of(g, y) && y->off < x->off + bytes_of(g, x);
            bad += live && share;
        }
    return bad;
}

int main(void)
{
    const int64_t R = 8, D = 64;
    int64_t dom[DSV4G_N_DOM] = { R, 0, 0, 0, 1 };
    dsv4g_graph g;
    /* a chain: A -> norm -> B; B + A -> C; linear C -> E; rope on a view of E;
     * scratch tensors in between die early and get reused */
    dsv4g_init(&g, dom);
    int32_t A = dsv4g_new(&g, "a", DSV4G_F32, DSV4G_TOK, 1, D);
    int32_t B = dsv4g_new(&g, "b", DSV4G_F32, DSV4G_TOK, 1, D);
    int32_t C = dsv4g_new(&g, "c", DSV4G_F32, DSV4G_TOK, 1, D);
    int32_t E = dsv4g_new(&g, "e", DSV4G_F32, DSV4G_TOK, 1, 2 * D);
    int32_t F = dsv4g_new(&g, "f", DSV4G_F32, DSV4G_TOK, 1, D);
    int32_t H = dsv4g_new(&g, "h", DSV4G_F32, DSV4G_TOK, 1, D);
    float *wn = malloc(D * 4), *freqs = malloc(D / 2 * 4);
    uint16_t *wl = malloc(2 * D * D * 2);
    for (int64_t i = 0; i < D; i++) wn[i] = 1.0f + 0.1f * frand();
    for (int64_t i = 0; i < 2 * D * D; i++) wl[i] = dsv4k_f32_to_bf16(frand() * 0.2f);
    dsv4k_rope_freqs(10000.0, 16, 0, 1.0, 32.0, 1.0, freqs);
    dsv4k_weight W = { DSV4K_W_BF16, 2 * D, D, wl, NULL, 0, 0 };
    /* A's producer: a node without inputs (standing in for the embedding);
     * the run below fills A itself and runs the nodes after it */
    dsv4g_node *seed = dsv4g_node_add(&g, NULL, "seed");
    dsv4g_out(&g, seed, A, -1, -1);
    dsv4g_rmsnorm(&g, A, wn, 1e-6f, B);
    dsv4g_add(&g, B, A, C);
    dsv4g_linear(&g, &W, C, E, 0);
    dsv4g_rope(&g, dsv4g_view(&g, E, DSV4G_TOK, 1, 16, 2 * D, D - 16), freqs, 0);
    dsv4g_rmsnorm(&g, dsv4g_view(&g, E, DSV4G_TOK, 2, D, D, 0), NULL, 1e-6f, dsv4g_view(&g, E, DSV4G_TOK, 2, D, D, 0));
    dsv4g_add(&g, dsv4g_view(&g, E, DSV4G_TOK, 1, D, 2 * D, 0), dsv4g_view(&g, E, DSV4G_TOK, 1, D, 2 * D, D), F);
    dsv4g_add(&g, F, F, H);
    T(dsv4g_plan(&g) == 0);
    int64_t sum = 0;
    for (int32_t t = 0; t < g.n_t; t++)
        if (g.t[t].base < 0) sum += bytes_of(&g, &g.t[t]);
    CHECK(overlaps(&g) == 0, "live tensors never share bytes");
    CHECK(g.arena_bytes < sum, "arena %lld B < %lld B of tensors (lifetimes reused)", (long long)g.arena_bytes,
          (long long)sum);

    /* run it with 5 of the 8 planned rows */
    uint8_t *arena = dsv4__malloc_aligned((size_t)g.arena_bytes);
    dsv4g_run r;
    memset(&r, 0, sizeof r);
    int64_t pos[8] = { 3, 4, 5, 6, 7, 100, 200, 300 };
    r.g = &g;
    r.arena = arena;
    r.dom_n[DSV4G_TOK] = 5;
    r.dom_n[DSV4G_FIXED] = 1;
    r.pos[DSV4G_TOK] = pos;
    r.ref = 1;
    float *a = dsv4g_f32(&r, A);
    float ref[5 * 64], e[5 * 128], f[5 * 64];
    for (int64_t i = 0; i < 5 * D; i++) a[i] = frand();
    for (int64_t t = 0; t < 5; t++) {
        dsv4k_rmsnorm_ref(a + t * D, wn, D, 1e-6f, ref + t * D);
        for (int64_t i = 0; i < D; i++) ref[t * D + i] += a[t * D + i];
    }
    dsv4k_linear_ref(&W, ref, D, 5, e, 2 * D, 0);
    for (int64_t t = 0; t < 5; t++) {
        dsv4k_rope_ref(e + t * 2 * D + D - 16, 16, pos[t], freqs, 0);
        dsv4k_rmsnorm_ref(e + t * 2 * D, NULL, D, 1e-6f, e + t * 2 * D);
        dsv4k_rmsnorm_ref(e + t * 2 * D + D, NULL, D, 1e-6f, e + t * 2 * D + D);
        for (int64_t i = 0; i < D; i++) f[t * D + i] = 2.0f * (e[t * 2 * D + i] + e[t * 2 * D + D + i]);
    }
    for (int32_t i = 1; i < g.n_n; i++) g.n[i].fn(&r, &g.n[i]);
    const float *h = dsv4g_f32(&r, H);
    double md = 0;
    for (int64_t i = 0; i < 5 * D; i++) md = fmax(md, fabs((double)h[i] - f[i]));
    CHECK(md < 1e-5, "graph result = direct reference calls (max |d| %.3g)", md);
    T(dsv4g_rows(&r, E) == 5 && dsv4g_row_pos(&r, dsv4g_view(&g, E, DSV4G_TOK, 2, D, D, 0), 7) == 6);
    dsv4__free_aligned(arena);
    dsv4g_free(&g);

    /* a tensor read before it is written */
    dsv4g_init(&g, dom);
    A = dsv4g_new(&g, "a", DSV4G_F32, DSV4G_TOK, 1, D);
    B = dsv4g_new(&g, "b", DSV4G_F32, DSV4G_TOK, 1, D);
    dsv4g_rmsnorm(&g, A, NULL, 1e-6f, B);
    T(dsv4g_plan(&g) == -1);
    dsv4g_free(&g);

    free(wn); free(freqs); free(wl);
    return test_summary();
}
