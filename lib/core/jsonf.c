/* lib/core/jsonf.c — typed optional JSON fields (see jsonf.h). */
#include "core/jsonf.h"

const char *dsv4__jsonf_str(const json_t *obj, const char *key)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* the field, or NULL when absent or null (*has = 0) */
static json_t *given(const json_t *obj, const char *key, int *has)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    *has = 0;
    return v && !json_is_null(v) ? v : NULL;
}

dsv4_status dsv4__jsonf_num(const json_t *obj, const char *key, double lo, double hi, double *out, int *has,
                            dsv4__err *e)
{
    json_t *v = given(obj, key, has);
    if (!v) return DSV4_OK;
    if (!json_is_number(v)) return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "\"%s\" must be a number", key);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi))
        return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "\"%s\" = %g is outside [%g, %g]", key, d, lo, hi);
    *out = d;
    *has = 1;
    return DSV4_OK;
}

dsv4_status dsv4__jsonf_int(const json_t *obj, const char *key, int64_t lo, int64_t hi, int64_t *out, int *has,
                            dsv4__err *e)
{
    json_t *v = given(obj, key, has);
    if (!v) return DSV4_OK;
    if (!json_is_integer(v)) return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "\"%s\" must be an integer", key);
    json_int_t d = json_integer_value(v);
    if (d < lo || d > hi)
        return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "\"%s\" = %lld is outside [%lld, %lld]", key, (long long)d,
                          (long long)lo, (long long)hi);
    *out = d;
    *has = 1;
    return DSV4_OK;
}

dsv4_status dsv4__jsonf_bool(const json_t *obj, const char *key, int *out, int *has, dsv4__err *e)
{
    json_t *v = given(obj, key, has);
    if (!v) return DSV4_OK;
    if (!json_is_boolean(v)) return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "\"%s\" must be a boolean", key);
    *out = json_is_true(v);
    *has = 1;
    return DSV4_OK;
}
