/*
 * lib/gen/sampler_int.h — what the generator needs of the sampler beyond
 * the public calls (internal; names dsv4__sampler_*).
 */
#ifndef DSV4_GEN_SAMPLER_INT_H
#define DSV4_GEN_SAMPLER_INT_H

#include "core/core.h"

/* Every stage (bias, penalties, user stage, temperature, top-k/p, min-p):
 * p[n] receives the distribution, *greedy the argmax token.
 * DSV4_ERR_NOT_AVAILABLE: the stages removed every token (no distribution);
 * DSV4_ERR_INVALID_ARGUMENT: a NaN logit (from the caller or the user stage);
 * DSV4_ERR_ABORTED: the user stage failed. */
dsv4_status dsv4__sampler_dist(dsv4_sampler *s, const float *logits, size_t n, float *p, int32_t *greedy);
/* Draw from p (need not sum to 1; zeros never chosen) with the seeded
 * generator, or the user's select callback. DSV4_ERR_NOT_AVAILABLE: p has
 * no mass; DSV4_ERR_INVALID_ARGUMENT: the select callback chose a token of
 * probability 0 or out of range; DSV4_ERR_ABORTED: it failed. */
dsv4_status dsv4__sampler_pick(dsv4_sampler *s, const float *p, size_t n, int32_t *token);
/* Default settings, no logit biases, empty history (user callbacks stay). */
void dsv4__sampler_defaults(dsv4_sampler *s);
/* A uniform double in [0, 1) from the seeded generator. */
double dsv4__sampler_uniform(dsv4_sampler *s);
/* 1 when a user stage or select callback is set */
int dsv4__sampler_has_user(const dsv4_sampler *s);
/* 1 when the choice is the argmax (temperature 0, no select callback). */
int dsv4__sampler_is_greedy(const dsv4_sampler *s);

#endif
