/* lib/core/effort.c — reasoning_effort names (see effort.h). */
#include "core/effort.h"

#include <string.h>

static const struct { const char *name; int effort; } names[] = {
    { "none", DSV4_EFFORT_NONE },     { "minimal", DSV4_EFFORT_LOW }, { "low", DSV4_EFFORT_LOW },
    { "medium", DSV4_EFFORT_MEDIUM }, { "high", DSV4_EFFORT_HIGH },   { "xhigh", DSV4_EFFORT_MAX },
    { "max", DSV4_EFFORT_MAX },
};

int dsv4__effort_parse(const char *name)
{
    for (size_t i = 0; name && i < DSV4__ARRAY_LEN(names); i++)
        if (strcmp(name, names[i].name) == 0) return names[i].effort;
    return -1;
}

const char *dsv4__effort_name(int effort)
{
    switch (effort) {
    case DSV4_EFFORT_NONE: return "none";
    case DSV4_EFFORT_LOW: return "low";
    case DSV4_EFFORT_MEDIUM: return "medium";
    case DSV4_EFFORT_HIGH: return "high";
    case DSV4_EFFORT_MAX: return "max";
    default: return NULL;
    }
}

dsv4_status dsv4__effort_field(const json_t *obj, const char *key, int *out, dsv4__err *e)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    *out = DSV4_EFFORT_DEFAULT;
    if (!v || json_is_null(v)) return DSV4_OK;
    if (!json_is_string(v)) return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT, "%s must be a string", key);
    int r = dsv4__effort_parse(json_string_value(v));
    if (r < 0)
        return dsv4__fail(e, DSV4_ERR_INVALID_ARGUMENT,
                          "%s \"%.40s\" is not one of none, minimal, low, medium, high, xhigh, max", key,
                          json_string_value(v));
    *out = r;
    return DSV4_OK;
}
