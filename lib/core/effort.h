/*
 * lib/core/effort.h — the one mapping of "reasoning_effort" names onto
 * dsv4_reasoning_effort (internal), for the chat encoder (which prompt) and
 * the generator (which default thinking budget).
 *
 * The rule (text-protocol §3.1, §4, §5; docs/chat.md): "none" → NONE
 * (non-thinking); "minimal" and "low" → LOW; "medium" → MEDIUM; "high" →
 * HIGH; "xhigh" and "max" → MAX. Any other name is an error. The official
 * encoder knows only high and max: NONE renders the non-thinking prompt,
 * MAX the max-effort paragraph, every other value the plain thinking
 * prompt; LOW and MEDIUM differ only in the generator's budget.
 */
#ifndef DSV4_CORE_EFFORT_H
#define DSV4_CORE_EFFORT_H

#include <jansson.h>
#include "core/core.h"

/* The dsv4_reasoning_effort value of a name, or -1 for an unknown name. */
int dsv4__effort_parse(const char *name);
/* The canonical name of a value (DSV4_EFFORT_NONE.._MAX); NULL for
 * DSV4_EFFORT_DEFAULT and out-of-range values. */
const char *dsv4__effort_name(int effort);
/* obj[key] as an effort: absent or null → DSV4_EFFORT_DEFAULT; a string
 * other than the names above, or a non-string, → DSV4_ERR_INVALID_ARGUMENT
 * with a message naming the key (e may be NULL). */
dsv4_status dsv4__effort_field(const json_t *obj, const char *key, int *out, dsv4__err *e);

#endif
