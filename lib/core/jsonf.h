/*
 * lib/core/jsonf.h — typed optional fields of a JSON object (jansson),
 * for every layer that reads request or file JSON (internal).
 *
 * A field that is absent or null is "not given": DSV4_OK with *has = 0 and
 * *out untouched. A field of the wrong type or out of range gives
 * DSV4_ERR_INVALID_ARGUMENT with a message naming the key (e may be NULL);
 * callers prefix their own context ("request: ").
 */
#ifndef DSV4_CORE_JSONF_H
#define DSV4_CORE_JSONF_H

#include <jansson.h>
#include <stdint.h>
#include "core/core.h"

/* The string value of obj[key], or NULL (absent, not a string, obj not an
 * object or NULL). */
const char *dsv4__jsonf_str(const json_t *obj, const char *key);

/* A number (integer or real) in [lo, hi]. */
dsv4_status dsv4__jsonf_num(const json_t *obj, const char *key, double lo, double hi, double *out, int *has,
                            dsv4__err *e);
/* An integer in [lo, hi]. */
dsv4_status dsv4__jsonf_int(const json_t *obj, const char *key, int64_t lo, int64_t hi, int64_t *out, int *has,
                            dsv4__err *e);
/* A boolean (*out 0 or 1). */
dsv4_status dsv4__jsonf_bool(const json_t *obj, const char *key, int *out, int *has, dsv4__err *e);

#endif
