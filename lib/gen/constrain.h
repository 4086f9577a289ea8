/*
 * lib/gen/constrain.h — byte-level output constraints for generation
 * (internal; names dsv4__cons_*).
 *
 * A constraint is an incremental recogniser over the bytes of generated
 * text: it says whether some bytes may come next, advances over accepted
 * bytes, tells whether the text so far is complete (the end-of-sentence
 * token may follow), and gives the shortest bytes that complete it (used to
 * close the output when the token budget runs out). The generator applies
 * it to the content part of an assistant message (after "</think>").
 *
 * Kinds:
 *  - JSON: one JSON value (RFC 8259), optionally restricted by a JSON-schema
 *    subset (type, properties, required, enum, items, additionalProperties),
 *    followed by at most a short run of whitespace.
 *  - DSML tools: free content text, optionally followed by one DSML
 *    tool-calls block ("\n\n<｜DSML｜tool_calls>\n" ... "</｜DSML｜tool_calls>")
 *    whose structure, tool names, parameter names and string="false" JSON
 *    values are valid, so that every call parses; string="true" values are
 *    free text.
 *
 * States are plain values: a constraint can be copied with
 * dsv4__cons_clone() and costs nothing to query. Not thread-safe; one
 * generation owns each.
 */
#ifndef DSV4_GEN_CONSTRAIN_H
#define DSV4_GEN_CONSTRAIN_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "core/core.h"

typedef struct dsv4__cons dsv4__cons;

/* JSON. schema: NULL (any JSON value; with object_only 1, a top-level
 * object as response_format json_object requires) or a JSON-schema text of
 * the supported subset; unsupported keywords that would change validity
 * ("pattern", "$ref", "anyOf", ...) fail with DSV4_ERR_UNSUPPORTED naming
 * the keyword, malformed schemas with DSV4_ERR_INVALID_ARGUMENT.
 * A NULL or empty (len 0) schema means "no schema". Details, limits and
 * the exact subset: docs/constraints.md. */
dsv4_status dsv4__cons_json(const char *schema, size_t len, int object_only, dsv4__cons **out, dsv4__err *err);
/* The same from a parsed schema (borrowed; NULL: no schema). */
dsv4_status dsv4__cons_json_value(json_t *schema, int object_only, dsv4__cons **out, dsv4__err *err);

/* DSML tool calls. tools: the request's "tools" array (OpenAI function
 * form) as JSON text; names and parameters (function.parameters.properties,
 * required) restrict the block. mode: DSV4__TOOLS_AUTO (text, then optionally
 * a block), DSV4__TOOLS_REQUIRED (the content is a block, nothing before it
 * but the "\n\n" that opens it); forced_name non-NULL: required, and every
 * invoke names this tool (mode is then taken as REQUIRED). NULL or empty
 * tools: no tools (AUTO: plain content only). A parameter schema outside
 * the JSON-schema subset does not fail: that parameter takes any JSON. */
enum { DSV4__TOOLS_AUTO = 1, DSV4__TOOLS_REQUIRED = 2 };
dsv4_status dsv4__cons_dsml(const char *tools, size_t len, int mode, const char *forced_name, dsv4__cons **out,
                            dsv4__err *err);
/* The same from a parsed "tools" array (borrowed; NULL: no tools). */
dsv4_status dsv4__cons_dsml_value(json_t *tools, int mode, const char *forced_name, dsv4__cons **out, dsv4__err *err);

/* Test hook: constraints compiled (dsv4__cons_json*, dsv4__cons_dsml*) since
 * the process started, counted whether or not the compilation succeeded. */
unsigned long dsv4__cons_compile_count(void);

void dsv4__cons_free(dsv4__cons *c);
/* A copy of the constraint with its current state; NULL when out of memory. */
dsv4__cons *dsv4__cons_clone(const dsv4__cons *c);

/* 1 when the bytes may come next (state unchanged), 0 when not. n 0 → 1. */
int dsv4__cons_allows(const dsv4__cons *c, const char *bytes, size_t n);
/* Advance over bytes; returns 1, or 0 (and leaves the state unchanged) if
 * they are not allowed. */
int dsv4__cons_feed(dsv4__cons *c, const char *bytes, size_t n);
/* 1 when the text so far is complete: the output may end here. */
int dsv4__cons_complete(const dsv4__cons *c);
/* The shortest bytes that make the text complete (possibly none), written to
 * buf (NUL-terminated when cap > len); returns their length (which may
 * exceed cap - 1: then call again with a larger buffer; as much as fits is
 * written meanwhile). Feeding the returned bytes always succeeds and leaves
 * the constraint complete. */
size_t dsv4__cons_completion(const dsv4__cons *c, char *buf, size_t cap);
/* 1 when the DSML block has started (tool calls are being emitted); always
 * 0 for JSON. Set once the "<｜DSML｜" of the opening has been fed (in
 * REQUIRED mode too: the leading "\n\n" alone does not start it). */
int dsv4__cons_in_block(const dsv4__cons *c);
/* 1 when a and b are the same program in the same state byte for byte (a
 * clone, or a constraint that a refused feed left alone); for tests. */
int dsv4__cons_same_state(const dsv4__cons *a, const dsv4__cons *b);

#endif
