/*
 * libdsv4 — sampling and constrained decoding (included by dsv4.h; do not include directly).
 */
#ifndef LIBDSV4_DSV4_SAMPLER_H
#define LIBDSV4_DSV4_SAMPLER_H
#ifndef LIBDSV4_DSV4_H
#error "include <dsv4/dsv4.h> instead"
#endif

#endif
