/*
 * tests/gen/test_constrain.c — output constraints (lib/gen/constrain.c):
 * a corpus of valid and invalid JSON fed whole and byte by byte (rejected
 * at the right byte, jansson agreeing); schema keywords; completions
 * (fixed cases, and no shorter completion exists for short ones); random
 * walks that feed only allowed pieces, stop anywhere, feed the completion
 * and check the result is complete, parses and satisfies the schema; the
 * same for DSML tool-call blocks with a checker written here; schema and
 * tools errors; allocation failures; clone independence; and the cost of
 * allows() over a synthetic 130 000-token vocabulary (printed, not
 * asserted).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core/core.h"
#include "gen/constrain.h"
#include "testutil.h"

#define FW "\xEF\xBD\x9C"
#define TAG "<" FW "DSML" FW
#define CTAG "</" FW "DSML" FW

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static size_t rndn(size_t n) { return (size_t)(rnd() % n); }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static dsv4__cons *mk_json(const char *schema, int object_only)
{
    dsv4__cons *c = NULL;
    dsv4__err err = { 0 };
    dsv4_status st = dsv4__cons_json(schema, schema ? strlen(schema) : 0, object_only, &c, &err);
    CHECK(st == DSV4_OK && c, "json constraint: %d %s", st, err.msg);
    return c;
}

static dsv4__cons *mk_dsml(const char *tools, int mode, const char *forced)
{
    dsv4__cons *c = NULL;
    dsv4__err err = { 0 };
    dsv4_status st = dsv4__cons_dsml(tools, tools ? strlen(tools) : 0, mode, forced, &c, &err);
    CHECK(st == DSV4_OK && c, "dsml constraint: %d %s", st, err.msg);
    return c;
}

/* completion as a malloc'd string; exercises the too-small-buffer path */
static char *completion(const dsv4__cons *c, size_t *len)
{
    char small[4];
    size_t n = dsv4__cons_completion(c, small, sizeof small);
    char *buf = malloc(n + 1);
    size_t m = dsv4__cons_completion(c, buf, n + 1);
    CHECK(m == n, "completion length stable %zu %zu", n, m);
    if (n < sizeof small) CHECK(!memcmp(small, buf, n + 1), "small buffer completion");
    if (len) *len = n;
    return buf;
}

/* Feed byte by byte (allows must agree with feed); the offset of the first
 * rejected byte, or n. */
static size_t feed_bytes(dsv4__cons *c, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int a = dsv4__cons_allows(c, s + i, 1);
        int f = dsv4__cons_feed(c, s + i, 1);
        if (a != f) CHECK(0, "allows %d != feed %d at %zu", a, f, i);
        if (!f) return i;
    }
    return n;
}

#define FEED(c, str) dsv4__cons_feed((c), (str), strlen(str))
#define ALLOWS(c, str) dsv4__cons_allows((c), (str), strlen(str))

/* jansson, strict about duplicates; integers beyond 64 bits (valid JSON,
 * up to 32 digits here) read as reals */
static json_t *parse_any(const char *s, size_t n)
{
    json_error_t e;
    size_t f = JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES;
    json_t *j = json_loadb(s, n, f, &e);
    if (!j && strstr(e.text, "too big")) j = json_loadb(s, n, f | JSON_DECODE_INT_AS_REAL, &e);
    return j;
}

/* ---- JSON corpus ---------------------------------------------------------- */

static void test_corpus(void)
{
    static const char *valid[] = {
        "0", "-0", "1", "-1", "12.5e+3", "1E5", "0.5", "-0.0e-0", "123456789", "true", "false", "null",
        "\"\"", "\"abc\"", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u00e9\\uD83D\\ude00\"", "\"\xC3\xA9\xF0\x9F\x98\x80\"",
        "\"\x7F\"", "\"\\u0000\"", "\"\\uDBFF\\uDFFF\"", "\"\xF4\x8F\xBF\xBF\"", "\"\xEF\xBF\xBF\"", "\"\xED\x9F\xBF\"",
        "[]", "{}", "[1,2,3]", "{\"a\":1,\"b\":[true,null,{}]}", "  {\"a\" : 1 }\n", "[ 1 , 2 ]", "{\"\":0}",
        "{\"a\":{\"a\":1}}", "[[[[]]]]", "{\"a\\nb\":1,\"a\\u0001\":2,\"\xC3\xA9\":3}", "[\"a\\/b\"]", "{\"a\":1,\"b\":2}\n",
        "[\n\t1,\r\n2]", "{\"x\":\"\\u12aF\"}", "-12.0E-07", "[{},[],\"\",0]",
    };
    static const struct { const char *s; size_t at; } invalid[] = {
        /* at: offset of the rejected byte; strlen: all accepted but incomplete */
        { "01", 1 }, { "-", 1 }, { "1.", 2 }, { "1.e5", 2 }, { ".5", 0 }, { "+1", 0 }, { "1e", 2 }, { "1e+", 3 },
        { "tru", 3 }, { "trux", 3 }, { "nul", 3 }, { "nulL", 3 }, { "\"abc", 4 }, { "\"a\x01\"", 2 },
        { "\"\\x\"", 2 }, { "\"\\u12g\"", 5 }, { "\"\\uDC00\"", 4 }, { "\"\\uD83D\"", 7 }, { "\"\\uD83D\\u0041\"", 9 },
        { "\"\\uD83D\\uD83D\"", 10 }, { "\"\xC0\x80\"", 1 }, { "\"\xE0\x80\x80\"", 2 }, { "\"\xED\xA0\x80\"", 2 },
        { "\"\xF4\x90\x80\x80\"", 2 }, { "\"\xF5\"", 1 }, { "\"\x80\"", 1 }, { "\"\xC3\"", 2 }, { "\"\xF0\x9F\x98\"", 4 },
        { "[1,]", 3 }, { "[,1]", 1 }, { "{,}", 1 }, { "{\"a\"}", 4 }, { "{\"a\":}", 5 }, { "{\"a\":1,}", 7 },
        { "{\"a\":1 \"b\":2}", 7 }, { "{\"a\":1,\"a\":2}", 9 }, { "[1]]", 3 }, { "1 2", 2 }, { "{} {}", 3 },
        { "1  ", 2 }, { "   1", 2 }, { "[1,   2]", 5 }, { "\"a\"\"", 3 }, { "{\"a\\/\":1}", 4 },
        { "{\"\\u0061\":1}", 6 }, { "{\"\\u000a\":1}", 7 }, { "{\"\\u001F\":1}", 7 }, { "{\"\\u0000\":1}", 7 }, { "1.2.3", 3 }, { "--1", 1 },
        { "-01", 2 }, { "1e5.0", 3 }, { "", 0 }, { "\t\t\t", 2 }, { " ", 1 }, { "[1 2]", 3 }, { "{1:2}", 1 },
        { "{'a':1}", 1 }, { "[true false]", 6 }, { "\"\t\"", 1 }, { "NaN", 0 }, { "Infinity", 0 }, { "[01]", 2 },
        { "{\"a\":1}x", 7 }, { "[\"\\u\"]", 4 },
    };
    for (size_t i = 0; i < DSV4__ARRAY_LEN(valid); i++) {
        const char *s = valid[i];
        size_t n = strlen(s);
        dsv4__cons *c = mk_json(NULL, 0);
        CHECK(dsv4__cons_allows(c, s, n), "valid allowed whole: %s", s);
        CHECK(dsv4__cons_feed(c, s, n) && dsv4__cons_complete(c), "valid fed whole: %s", s);
        size_t cl;
        char *comp = completion(c, &cl);
        CHECK(cl == 0, "complete value needs no completion: %s", s);
        free(comp);
        dsv4__cons_free(c);
        c = mk_json(NULL, 0);
        CHECK(feed_bytes(c, s, n) == n && dsv4__cons_complete(c), "valid byte by byte: %s", s);
        dsv4__cons_free(c);
        json_t *j = parse_any(s, n);
        CHECK(j != NULL, "jansson agrees valid: %s", s);
        json_decref(j);
    }
    for (size_t i = 0; i < DSV4__ARRAY_LEN(invalid); i++) {
        const char *s = invalid[i].s;
        size_t n = strlen(s);
        dsv4__cons *c = mk_json(NULL, 0);
        size_t at = feed_bytes(c, s, n);
        CHECK(at == invalid[i].at, "invalid %s: rejected at %zu, expected %zu", s, at, invalid[i].at);
        if (at == n) CHECK(!dsv4__cons_complete(c), "invalid %s: incomplete", s);
        dsv4__cons_free(c);
        c = mk_json(NULL, 0);
        CHECK(!(dsv4__cons_feed(c, s, n) && dsv4__cons_complete(c)), "invalid whole: %s", s);
        /* a rejected feed leaves the state unchanged */
        if (invalid[i].at < n) CHECK(dsv4__cons_feed(c, s, invalid[i].at), "prefix feeds: %s", s);
        dsv4__cons_free(c);
    }
    /* the RFC-invalid ones jansson also refuses (ws/whitespace limits aside) */
    static const char *rfc_bad[] = { "01", "\"\\uDC00\"", "\"\xC0\x80\"", "\"\xED\xA0\x80\"", "[1,]", "\"a\x01\"",
                                     "{\"a\":1,\"a\":2}", "1.e5" };
    for (size_t i = 0; i < DSV4__ARRAY_LEN(rfc_bad); i++) {
        json_t *j = parse_any(rfc_bad[i], strlen(rfc_bad[i]));
        CHECK(!j, "jansson agrees invalid: %s", rfc_bad[i]);
        json_decref(j);
    }

    /* limits: depth 32, 32 digits */
    char buf[128];
    dsv4__cons *c = mk_json(NULL, 0);
    memset(buf, '[', 33);
    CHECK(feed_bytes(c, buf, 33) == 32, "depth 33 rejected at the 33rd bracket");
    size_t cl;
    char *comp = completion(c, &cl);
    CHECK(cl == 32 && dsv4__cons_feed(c, comp, cl) && dsv4__cons_complete(c), "32 brackets closed");
    free(comp);
    dsv4__cons_free(c);
    c = mk_json(NULL, 0);
    memset(buf, '1', 40);
    /* integers stop at 18 digits (they must fit int64 for parsers such as
     * jansson); a fraction may carry the number on to 32 digits in all */
    CHECK(feed_bytes(c, buf, 40) == 18 && dsv4__cons_complete(c), "19th integer digit rejected");
    CHECK(dsv4__cons_feed(c, ".", 1) && feed_bytes(c, buf, 40) == 14, "33rd digit rejected");
    CHECK(!dsv4__cons_allows(c, "e", 1), "no exponent without room for a digit");
    dsv4__cons_free(c);
    c = mk_json(NULL, 0);
    memcpy(buf, "-1.", 3);
    memset(buf + 3, '5', 32);
    CHECK(feed_bytes(c, buf, 35) == 34, "digits counted across the fraction");
    dsv4__cons_free(c);

    /* object_only */
    c = mk_json(NULL, 1);
    CHECK(!dsv4__cons_allows(c, "[", 1) && !dsv4__cons_allows(c, "1", 1) && dsv4__cons_allows(c, " {", 2),
          "object_only: only an object");
    comp = completion(c, &cl);
    CHECK(!strcmp(comp, "{}"), "object_only completion %s", comp);
    free(comp);
    dsv4__cons_free(c);

    /* trailing newline then nothing */
    c = mk_json(NULL, 0);
    CHECK(dsv4__cons_feed(c, "{}\n", 3) && dsv4__cons_complete(c) && !dsv4__cons_allows(c, "\n", 1) &&
              !dsv4__cons_allows(c, "x", 1),
          "one trailing newline");
    CHECK(dsv4__cons_in_block(c) == 0, "in_block 0 for JSON");
    CHECK(dsv4__cons_allows(c, "", 0), "empty allowed");
    dsv4__cons_free(c);

    /* many free-form keys: duplicates detected, nested objects keep their own keys */
    c = mk_json(NULL, 0);
    CHECK(FEED(c, "{\"a\":{\"a\":1,\"b\":2},\"b\":3,"), "nested same keys");
    CHECK(!dsv4__cons_allows(c, "\"a\"", 3) && !dsv4__cons_allows(c, "\"b\"", 3) && dsv4__cons_allows(c, "\"c\"", 3),
          "duplicates of the outer keys only");
    CHECK(dsv4__cons_allows(c, "\"ab\"", 4) && dsv4__cons_allows(c, "\"a\\n\"", 5), "longer keys fine");
    dsv4__cons_free(c);

    /* the free-key log holds 128 names: then the object can only close */
    c = mk_json(NULL, 0);
    CHECK(FEED(c, "{"), "{");
    int fed = 1;
    for (int i = 0; i < 128 && fed; i++) {
        char k[32];
        snprintf(k, sizeof k, "%s\"k%d\":%d", i ? "," : "", i, i);
        fed = FEED(c, k);
    }
    CHECK(fed && !ALLOWS(c, ",") && ALLOWS(c, "}"), "128 free keys, then only '}'");
    comp = completion(c, &cl);
    CHECK(!strcmp(comp, "}"), "closes: %s", comp);
    free(comp);
    dsv4__cons_free(c);
    c = mk_json("{\"properties\":{\"req\":{}},\"required\":[\"req\"],\"additionalProperties\":true}", 0);
    CHECK(FEED(c, "{"), "{");
    for (int i = 0; i < 128 && fed; i++) {
        char k[32];
        snprintf(k, sizeof k, "\"k%d\":%d,", i, i);
        fed = FEED(c, k);
    }
    CHECK(fed && !ALLOWS(c, "\"k") && ALLOWS(c, "\"req\":1}"), "log full: only the declared key");
    comp = completion(c, &cl);
    CHECK(!strcmp(comp, "\"req\":0}"), "completes with the declared key: %s", comp);
    free(comp);
    dsv4__cons_free(c);
}

/* ---- schemas --------------------------------------------------------------- */

static const char *SCHEMA =
    "{\"type\":\"object\",\"description\":\"test\",\"title\":\"T\",\"$schema\":\"x\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"description\":\"who\"},"
    "\"age\":{\"type\":\"integer\"},"
    "\"score\":{\"type\":\"number\",\"default\":1},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"enum\":[\"a\",\"b\",\"c d\",\"\\u00e9\\n\"]}},"
    "\"kind\":{\"enum\":[\"x\",1,12,1.5,null,{\"k\":[1,2]},[]]},"
    "\"ok\":{\"type\":\"boolean\"},"
    "\"nested\":{\"type\":\"object\",\"properties\":{\"z\":{\"type\":\"null\"},\"y\":{}},\"required\":[\"z\"]},"
    "\"free\":{\"type\":\"object\",\"additionalProperties\":true},"
    "\"typed\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}},"
    "\"either\":{\"type\":[\"string\",\"null\"]},"
    "\"c\":{\"const\":\"fixed\"}},"
    "\"required\":[\"name\",\"age\"],\"additionalProperties\":false}";

/* A small validator for the subset, on jansson values. */
static int validate(json_t *schema, json_t *v)
{
    if (!schema || json_is_true(schema)) return 1;
    json_t *t = json_object_get(schema, "type");
    if (t) {
        int ok = 0;
        size_t n = json_is_array(t) ? json_array_size(t) : 1;
        for (size_t i = 0; i < n; i++) {
            const char *tn = json_string_value(json_is_array(t) ? json_array_get(t, i) : t);
            if (!strcmp(tn, "object")) ok |= json_is_object(v);
            if (!strcmp(tn, "array")) ok |= json_is_array(v);
            if (!strcmp(tn, "string")) ok |= json_is_string(v);
            if (!strcmp(tn, "number")) ok |= json_is_number(v);
            if (!strcmp(tn, "integer")) ok |= json_is_integer(v) || (json_is_real(v) && json_real_value(v) == (double)(long long)json_real_value(v));
            if (!strcmp(tn, "boolean")) ok |= json_is_boolean(v);
            if (!strcmp(tn, "null")) ok |= json_is_null(v);
        }
        if (!ok) return 0;
    }
    json_t *en = json_object_get(schema, "enum"), *cn = json_object_get(schema, "const");
    if (cn && !json_equal(cn, v)) return 0;
    if (en) {
        int ok = 0;
        for (size_t i = 0; i < json_array_size(en); i++) ok |= json_equal(json_array_get(en, i), v);
        if (!ok) return 0;
    }
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!validate(json_object_get(schema, "items"), json_array_get(v, i))) return 0;
    }
    if (json_is_object(v)) {
        json_t *props = json_object_get(schema, "properties"), *addl = json_object_get(schema, "additionalProperties");
        json_t *req = json_object_get(schema, "required");
        for (size_t i = 0; i < json_array_size(req); i++)
            if (!json_object_get(v, json_string_value(json_array_get(req, i)))) return 0;
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            json_t *ps = props ? json_object_get(props, k) : NULL;
            if (ps) {
                if (!validate(ps, x)) return 0;
            } else if (addl ? json_is_false(addl) : props != NULL) {
                int inreq = 0;
                for (size_t i = 0; i < json_array_size(req); i++) inreq |= !strcmp(k, json_string_value(json_array_get(req, i)));
                if (!inreq) return 0;
            } else if (addl && json_is_object(addl) && !validate(addl, x)) {
                return 0;
            }
        }
    }
    return 1;
}

static void test_schema(void)
{
    dsv4__cons *c = mk_json(SCHEMA, 0);
    if (!c) return;
    static const char *ok[] = {
        "{\"name\":\"n\",\"age\":3}",
        "{\"age\":-3,\"name\":\"\",\"tags\":[\"a\",\"c d\",\"\xC3\xA9\\n\"],\"kind\":12}",
        "{\"name\":\"n\",\"age\":0,\"kind\":{\"k\":[1,2]},\"ok\":false,\"nested\":{\"z\":null,\"y\":[1]}}",
        "{\"name\":\"n\",\"age\":0,\"kind\":1.5,\"free\":{\"q\":[{}],\"r\":1},\"typed\":{\"a\":1,\"b\":-2}}",
        "{\"name\":\"n\",\"age\":0,\"kind\":1,\"either\":null,\"c\":\"fixed\",\"score\":-1.5e3}",
        "{\"name\":\"n\",\"age\":0,\"kind\":[],\"either\":\"s\"}",
    };
    for (size_t i = 0; i < DSV4__ARRAY_LEN(ok); i++) {
        dsv4__cons *d = dsv4__cons_clone(c);
        size_t n = strlen(ok[i]);
        CHECK(feed_bytes(d, ok[i], n) == n && dsv4__cons_complete(d), "schema accepts %s", ok[i]);
        dsv4__cons_free(d);
    }
    static const struct { const char *s; size_t at; } bad[] = {
        { "{\"name\":\"n\"}", 11 },               /* age required */
        { "{}", 1 },                              /* required */
        { "[]", 0 },                              /* type */
        { "{\"zz\":1}", 2 },                      /* additionalProperties false */
        { "{\"name\":1}", 8 },                    /* type string */
        { "{\"age\":1.5}", 8 },                   /* integer */
        { "{\"age\":1e3}", 8 },                   /* integer: no exponent */
        { "{\"tags\":[\"e\"]}", 10 },             /* enum */
        { "{\"tags\":[\"\\u00e9\\n\"]}", 10 },    /* enum texts: minimal escaping only */
        { "{\"kind\":13}", 9 },                   /* enum 1/12 but not 13 */
        { "{\"kind\":1.50}", 11 },
        { "{\"kind\":{\"k\":[1, 2]}}", 16 },      /* compact */
        { "{\"kind\":true}", 8 },
        { "{\"nested\":{}}", 11 },                /* nested required */
        { "{\"nested\":{\"w\":1}}", 12 },
        { "{\"typed\":{\"a\":\"s\"}}", 14 },      /* additionalProperties schema */
        { "{\"c\":\"fixe\"}", 10 },
        { "{\"either\":1}", 10 },
        { "{\"name\":\"n\",\"name\"", 14 },        /* duplicate declared key ("nested" left at 'n') */
        { "{\"ok\":tru ", 9 },
    };
    for (size_t i = 0; i < DSV4__ARRAY_LEN(bad); i++) {
        dsv4__cons *d = dsv4__cons_clone(c);
        size_t n = strlen(bad[i].s);
        size_t at = feed_bytes(d, bad[i].s, n);
        CHECK(at == bad[i].at, "schema rejects %s at %zu (expected %zu)", bad[i].s, at, bad[i].at);
        dsv4__cons_free(d);
    }
    /* enum of 1 and 12: "1" may end or continue */
    dsv4__cons *d = dsv4__cons_clone(c);
    CHECK(dsv4__cons_feed(d, "{\"name\":\"\",\"age\":0,\"kind\":1", 27), "enum prefix");
    CHECK(dsv4__cons_allows(d, "2}", 2) && dsv4__cons_allows(d, "}", 1) && dsv4__cons_allows(d, ".5}", 3) &&
              !dsv4__cons_allows(d, "3", 1) && !dsv4__cons_allows(d, ".6", 2),
          "enum continuation");
    dsv4__cons_free(d);
    /* all declared keys used: no more ',' */
    dsv4__cons *e = mk_json("{\"properties\":{\"a\":{}}}", 0);
    CHECK(dsv4__cons_feed(e, "{\"a\":1", 6) && !dsv4__cons_allows(e, ",", 1) && dsv4__cons_allows(e, "}", 1),
          "no comma when no key can follow");
    dsv4__cons_free(e);
    /* keys shared as prefixes: "a" seen, "ab" still possible */
    e = mk_json("{\"properties\":{\"a\":{},\"ab\":{}}}", 0);
    CHECK(dsv4__cons_feed(e, "{\"a\":1,\"a", 9) && !dsv4__cons_allows(e, "\"", 1) && dsv4__cons_allows(e, "b\"", 2),
          "prefix key");
    CHECK(dsv4__cons_feed(e, "b\":2", 4) && !dsv4__cons_allows(e, ",", 1), "both used");
    dsv4__cons_free(e);
    e = mk_json("{\"properties\":{\"ab\":{},\"ac\":{}},\"additionalProperties\":false}", 0);
    CHECK(dsv4__cons_feed(e, "{\"ab\":1,\"a", 10) && !dsv4__cons_allows(e, "b", 1) && dsv4__cons_allows(e, "c", 1),
          "a used key cannot be started again");
    dsv4__cons_free(e);
    /* required name outside properties */
    e = mk_json("{\"required\":[\"q\"]}", 0);
    CHECK(dsv4__cons_feed(e, "{\"x\":1", 6) && !dsv4__cons_allows(e, "}", 1), "required without properties");
    size_t n;
    char *comp = completion(e, &n);
    CHECK(!strcmp(comp, ",\"q\":0}"), "completion adds the required key: %s", comp);
    free(comp);
    dsv4__cons_free(e);
    /* "true" schema and object_only with a schema */
    e = mk_json("true", 0);
    CHECK(dsv4__cons_feed(e, "[1]", 3) && dsv4__cons_complete(e), "true schema");
    dsv4__cons_free(e);
    e = mk_json("{\"type\":[\"object\",\"array\"]}", 1);
    CHECK(!dsv4__cons_allows(e, "[", 1) && dsv4__cons_allows(e, "{", 1), "object_only narrows the type");
    dsv4__cons_free(e);
    e = mk_json("{\"enum\":[1,{\"a\":1},\"s\"]}", 1);
    CHECK(!dsv4__cons_allows(e, "1", 1) && dsv4__cons_feed(e, "{\"a\":1}", 7) && dsv4__cons_complete(e),
          "object_only filters the enum");
    dsv4__cons_free(e);
    dsv4__cons_free(c);
}

static void test_schema_errors(void)
{
    static const struct { const char *schema; int obj; dsv4_status st; const char *word; } cases[] = {
        { "{\"type\":\"string\",\"pattern\":\"x\"}", 0, DSV4_ERR_UNSUPPORTED, "pattern" },
        { "{\"$ref\":\"#/x\"}", 0, DSV4_ERR_UNSUPPORTED, "$ref" },
        { "{\"anyOf\":[{},{}]}", 0, DSV4_ERR_UNSUPPORTED, "anyOf" },
        { "{\"oneOf\":[{}]}", 0, DSV4_ERR_UNSUPPORTED, "oneOf" },
        { "{\"allOf\":[{}]}", 0, DSV4_ERR_UNSUPPORTED, "allOf" },
        { "{\"not\":{}}", 0, DSV4_ERR_UNSUPPORTED, "not" },
        { "{\"properties\":{\"a\":{\"minimum\":1}}}", 0, DSV4_ERR_UNSUPPORTED, "minimum" },
        { "{\"items\":{\"maxLength\":3}}", 0, DSV4_ERR_UNSUPPORTED, "maxLength" },
        { "{\"format\":\"date\"}", 0, DSV4_ERR_UNSUPPORTED, "format" },
        { "{\"items\":[{}]}", 0, DSV4_ERR_UNSUPPORTED, "items" },
        { "{\"additionalProperties\":{\"pattern\":\"a\"}}", 0, DSV4_ERR_UNSUPPORTED, "pattern" },
        { "{", 0, DSV4_ERR_INVALID_ARGUMENT, "malformed" },
        { "{\"type\":5}", 0, DSV4_ERR_INVALID_ARGUMENT, "type" },
        { "{\"type\":\"foo\"}", 0, DSV4_ERR_INVALID_ARGUMENT, "type" },
        { "{\"type\":[]}", 0, DSV4_ERR_INVALID_ARGUMENT, "type" },
        { "{\"enum\":[]}", 0, DSV4_ERR_INVALID_ARGUMENT, "enum" },
        { "{\"enum\":3}", 0, DSV4_ERR_INVALID_ARGUMENT, "enum" },
        { "{\"required\":\"a\"}", 0, DSV4_ERR_INVALID_ARGUMENT, "required" },
        { "{\"required\":[1]}", 0, DSV4_ERR_INVALID_ARGUMENT, "required" },
        { "{\"properties\":[]}", 0, DSV4_ERR_INVALID_ARGUMENT, "properties" },
        { "{\"additionalProperties\":1}", 0, DSV4_ERR_INVALID_ARGUMENT, "additionalProperties" },
        { "false", 0, DSV4_ERR_INVALID_ARGUMENT, "false" },
        { "[1]", 0, DSV4_ERR_INVALID_ARGUMENT, "schema" },
        { "{\"type\":\"string\",\"enum\":[1]}", 0, DSV4_ERR_INVALID_ARGUMENT, "enum" },
        { "{\"type\":\"string\"}", 1, DSV4_ERR_INVALID_ARGUMENT, "object" },
        { "{\"properties\":{\"a\":false}}", 0, DSV4_ERR_INVALID_ARGUMENT, "false" },
        { "{\"properties\":{},\"required\":[\"a\"],\"additionalProperties\":false}", 0, DSV4_ERR_INVALID_ARGUMENT, "\"a\"" },
        { "{\"const\":1,\"enum\":[2]}", 0, DSV4_ERR_INVALID_ARGUMENT, "const" },
    };
    for (size_t i = 0; i < DSV4__ARRAY_LEN(cases); i++) {
        dsv4__cons *c = (dsv4__cons *)1;
        dsv4__err err = { 0 };
        dsv4_status st = dsv4__cons_json(cases[i].schema, strlen(cases[i].schema), cases[i].obj, &c, &err);
        CHECK(st == cases[i].st && c == NULL, "schema %s: status %d (expected %d)", cases[i].schema, st, cases[i].st);
        CHECK(strstr(err.msg, cases[i].word) != NULL, "schema %s: message names %s: %s", cases[i].schema, cases[i].word,
              err.msg);
    }
    /* more than 64 properties; deeper than 32 levels */
    char big[4096];
    size_t n = (size_t)snprintf(big, sizeof big, "{\"properties\":{");
    for (int i = 0; i < 65; i++) n += (size_t)snprintf(big + n, sizeof big - n, "%s\"p%d\":{}", i ? "," : "", i);
    snprintf(big + n, sizeof big - n, "}}");
    dsv4__cons *c = NULL;
    dsv4__err err = { 0 };
    CHECK(dsv4__cons_json(big, strlen(big), 0, &c, &err) == DSV4_ERR_UNSUPPORTED, "65 properties: %s", err.msg);
    n = 0;
    for (int i = 0; i < 33; i++) n += (size_t)snprintf(big + n, sizeof big - n, "{\"items\":");
    n += (size_t)snprintf(big + n, sizeof big - n, "{}");
    for (int i = 0; i < 33; i++) big[n++] = '}';
    big[n] = 0;
    CHECK(dsv4__cons_json(big, n, 0, &c, &err) == DSV4_ERR_UNSUPPORTED, "33 levels: %s", err.msg);
    /* 31 nested items levels are fine */
    n = 0;
    for (int i = 0; i < 31; i++) n += (size_t)snprintf(big + n, sizeof big - n, "{\"type\":\"array\",\"items\":");
    n += (size_t)snprintf(big + n, sizeof big - n, "{\"type\":\"array\"}");
    for (int i = 0; i < 31; i++) big[n++] = '}';
    big[n] = 0;
    CHECK(dsv4__cons_json(big, n, 0, &c, &err) == DSV4_OK, "32 levels: %s", err.msg);
    if (c) {
        char deep[40];
        memset(deep, '[', 32);
        CHECK(dsv4__cons_feed(c, deep, 32), "32 arrays deep");
        size_t cl;
        char *comp = completion(c, &cl);
        CHECK(cl == 32 && dsv4__cons_feed(c, comp, cl) && dsv4__cons_complete(c), "closed");
        free(comp);
        dsv4__cons_free(c);
    }
    /* ignored descriptive keywords */
    c = mk_json("{\"title\":\"t\",\"description\":\"d\",\"$schema\":\"s\",\"default\":1,\"examples\":[1],"
                "\"strict\":true,\"x-extra\":1,\"$comment\":\"c\",\"type\":\"integer\"}",
                0);
    CHECK(c && dsv4__cons_feed(c, "12", 2) && !dsv4__cons_allows(c, ".", 1), "descriptive keywords ignored");
    dsv4__cons_free(c);
    CHECK(dsv4__cons_json(NULL, 0, 0, NULL, &err) == DSV4_ERR_INVALID_ARGUMENT, "out NULL");
}

/* ---- completions ----------------------------------------------------------- */

static void check_completion(const char *schema, int obj, const char *prefix, const char *expect)
{
    dsv4__cons *c = mk_json(schema, obj);
    if (!c) return;
    CHECK(dsv4__cons_feed(c, prefix, strlen(prefix)), "prefix accepted: %s", prefix);
    size_t n;
    char *comp = completion(c, &n);
    CHECK(!strcmp(comp, expect), "completion of %s: got '%s' expected '%s'", prefix, comp, expect);
    CHECK(dsv4__cons_feed(c, comp, n) && dsv4__cons_complete(c), "completion completes %s", prefix);
    free(comp);
    dsv4__cons_free(c);
}

static void test_completions(void)
{
    check_completion(NULL, 0, "", "0");
    check_completion(NULL, 0, "1.", "0");
    check_completion(NULL, 0, "-", "0");
    check_completion(NULL, 0, "1e+", "0");
    check_completion(NULL, 0, "12", "");
    check_completion(NULL, 0, "[1", "]");
    check_completion(NULL, 0, "[1,", "0]");
    check_completion(NULL, 0, "{\"a\"", ":0}");
    check_completion(NULL, 0, "{\"a\":[{\"b\":tr", "ue}]}");
    check_completion(NULL, 0, "\"ab\\u12", "00\"");
    check_completion(NULL, 0, "\"\\uD83D", "\\uDC00\"");
    check_completion(NULL, 0, "\"\\uD8", "00\\uDC00\"");
    check_completion(NULL, 0, "\"\\uD83D\\u", "DC00\"");
    check_completion(NULL, 0, "\"\\", "n\"");
    check_completion(NULL, 0, "\"\xF0\x9F", "\x80\x80\"");
    check_completion(NULL, 0, "\"\xE0", "\xA0\x80\"");
    check_completion(NULL, 0, "{\"a\":1,", "\"\":0}");
    check_completion(NULL, 0, "{\"\":1,", "\"a\":0}");
    check_completion(NULL, 0, "{\"\\u00", "01\":0}");
    check_completion(NULL, 0, "{\"\\u001", "0\":0}");
    check_completion(NULL, 1, "", "{}");
    const char *req = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"},\"b\":{\"type\":\"boolean\"}},"
                      "\"required\":[\"a\"]}";
    check_completion(req, 0, "{", "\"a\":\"\"}");
    check_completion(req, 0, "", "{\"a\":\"\"}");
    check_completion(req, 0, "{\"b\":false", ",\"a\":\"\"}");
    check_completion(req, 0, "{\"", "a\":\"\"}");
    check_completion(req, 0, "{\"b", "\":true,\"a\":\"\"}");
    check_completion(req, 0, "{\"a\":\"x\",", "\"b\":true}");
    check_completion("{\"enum\":[\"long one\",\"lo\",12345]}", 0, "", "\"lo\"");
    check_completion("{\"enum\":[\"long one\",\"lo\",12345]}", 0, "\"lon", "g one\"");
    check_completion("{\"enum\":[1,12]}", 0, "1", "");
    check_completion("{\"type\":\"array\",\"items\":{\"type\":\"object\",\"required\":[\"k\"]}}", 0, "[{\"k\":1},", "{\"k\":0}]");
    check_completion("{\"type\":\"array\",\"items\":{\"type\":\"object\",\"required\":[\"k\"]}}", 0, "[", "]");
    check_completion("{\"type\":\"array\",\"items\":{\"type\":\"null\"}}", 0, "[null,", "null]");
    check_completion("{\"type\":[\"null\",\"boolean\",\"string\"]}", 0, "", "\"\"");
    check_completion("{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"object\",\"properties\":{\"m\":"
                     "{\"type\":\"integer\"}},\"required\":[\"m\"]}},\"required\":[\"n\"]}",
                     0, "", "{\"n\":{\"m\":0}}");
}

/* No completion shorter than the one returned exists (all byte strings of
 * length < L, for L <= 3). */
static void test_completion_minimal(void)
{
    static const char *schemas[] = { NULL, "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"},\"bb\":{}},"
                                           "\"required\":[\"a\"]}" };
    static const char *pieces[] = { "{", "}", "[", "]", "\"", ":", ",", "1", ".", "e", "-", "a", "\\", "u", "0", "t",
                                    "n", "\"a\"", "\"bb\"", " " };
    int checked = 0;
    for (int trial = 0; trial < 400 && checked < 60; trial++) {
        const char *schema = schemas[trial % 2];
        dsv4__cons *c = mk_json(schema, 0);
        int len = (int)rndn(8);
        for (int k = 0; k < len; k++) {
            const char *p = pieces[rndn(DSV4__ARRAY_LEN(pieces))];
            dsv4__cons_feed(c, p, strlen(p));
        }
        size_t L;
        char *comp = completion(c, &L);
        free(comp);
        if (L == 0 || L > 3) {
            dsv4__cons_free(c);
            continue;
        }
        checked++;
        int shorter = 0;
        unsigned char b[2];
        if (dsv4__cons_complete(c)) shorter = 1;
        for (int x = 0; x < 256 && !shorter && L >= 2; x++) {
            b[0] = (unsigned char)x;
            dsv4__cons *d = dsv4__cons_clone(c);
            if (dsv4__cons_feed(d, (char *)b, 1)) {
                if (dsv4__cons_complete(d)) shorter = 1;
                for (int y = 0; y < 256 && !shorter && L >= 3; y++) {
                    b[1] = (unsigned char)y;
                    if (dsv4__cons_allows(d, (char *)b + 1, 1)) {
                        dsv4__cons *e = dsv4__cons_clone(d);
                        dsv4__cons_feed(e, (char *)b + 1, 1);
                        if (dsv4__cons_complete(e)) shorter = 1;
                        dsv4__cons_free(e);
                    }
                }
            }
            dsv4__cons_free(d);
        }
        CHECK(!shorter, "a completion shorter than %zu exists", L);
        dsv4__cons_free(c);
    }
    CHECK(checked >= 20, "minimality checked on %d states", checked);
}

/* ---- random walks: JSON ---------------------------------------------------------- */

static const char *json_pieces[] = {
    "{", "}", "[", "]", "\"", ":", ",", " ", "\n", "\t", "\r", "0", "1", "9", "-", ".", "e", "E", "+", "t", "true",
    "false", "null", "\\", "u", "n", "\\n", "\\u", "D83D", "DC00", "00e9", "001f", "a", "b", "x", "\xC3\xA9",
    "\xF0\x9F\x98", "\x80", "\"name\"", "\"age\"", "\"tags\"", "\"kind\"", "\"nested\"", "\"free\"", "\"typed\"",
    "\"either\"", "\"c\"", "\"z\"", "\"fixed\"", "\"x\"", "\"c d\"", "\"k\":[1,2]", "12", "1.5", "\"a\"", "\"b\"",
    "\"\\u00e9\\n\"", "\"score\":", "\"ok\":", "}}", "]]", "\":", "\",\"", "\"y\"", "\"q\"",
};

static void random_piece(char *buf, size_t *n, const char *const *pieces, size_t np)
{
    uint64_t r = rnd() % 100;
    if (r < 8) {
        buf[0] = (char)rndn(256);
        *n = 1;
    } else if (r < 12) {
        *n = 1 + rndn(4);
        for (size_t i = 0; i < *n; i++) buf[i] = (char)rndn(256);
    } else {
        const char *p = pieces[rndn(np)];
        *n = strlen(p);
        memcpy(buf, p, *n);
    }
}

/* One walk: pieces fed only when allowed (allows agreeing with feed, and a
 * multi-byte allows agreeing with byte-wise feeding), stop at a random
 * length, feed the completion. Returns the text (malloc'd). */
static char *walk(dsv4__cons *c, const char *const *pieces, size_t np, size_t maxlen, size_t *outlen, int *ok)
{
    size_t cap = maxlen + 4096, n = 0;
    char *text = malloc(cap);
    size_t target = rndn(maxlen);
    *ok = 1;
    while (n < target) {
        char piece[64];
        size_t pn = 0;
        int fed = 0;
        for (int tries = 0; tries < 60 && !fed; tries++) {
            random_piece(piece, &pn, pieces, np);
            int a = dsv4__cons_allows(c, piece, pn);
            if ((rnd() & 15) == 0) {
                /* allows on several bytes == feeding them one by one */
                dsv4__cons *d = dsv4__cons_clone(c);
                size_t i = 0;
                while (i < pn && dsv4__cons_feed(d, piece + i, 1)) i++;
                if ((i == pn) != a) {
                    CHECK(0, "allows(%zu bytes) = %d disagrees with byte-wise feeding", pn, a);
                    *ok = 0;
                }
                dsv4__cons_free(d);
            }
            if (a) {
                if (!dsv4__cons_feed(c, piece, pn)) {
                    CHECK(0, "allowed piece not fed");
                    *ok = 0;
                }
                fed = 1;
            } else if ((rnd() & 31) == 0) {
                int comp_before = dsv4__cons_complete(c);
                if (dsv4__cons_feed(c, piece, pn) || dsv4__cons_complete(c) != comp_before) {
                    CHECK(0, "refused piece changed the state");
                    *ok = 0;
                }
            }
        }
        if (!fed) {
            /* like a masked sampler: any allowed piece or single byte, if one exists */
            size_t start = rndn(np + 256);
            for (size_t j = 0; j < np + 256 && !fed; j++) {
                size_t x = (start + j) % (np + 256);
                if (x < np) {
                    pn = strlen(pieces[x]);
                    memcpy(piece, pieces[x], pn);
                } else {
                    piece[0] = (char)(x - np);
                    pn = 1;
                }
                if (dsv4__cons_allows(c, piece, pn)) {
                    fed = dsv4__cons_feed(c, piece, pn);
                    if (!fed) CHECK(0, "allowed piece not fed");
                }
            }
        }
        if (!fed) {
            /* nothing at all may follow: the text must be complete */
            if (!dsv4__cons_complete(c)) {
                CHECK(0, "dead end: nothing allowed but not complete");
                *ok = 0;
            }
            break;
        }
        if (n + pn > cap) break;
        memcpy(text + n, piece, pn);
        n += pn;
    }
    size_t cl;
    char *comp = completion(c, &cl);
    if (n + cl + 1 > cap) text = realloc(text, n + cl + 1);
    memcpy(text + n, comp, cl);
    int fed = dsv4__cons_feed(c, comp, cl);
    int complete = dsv4__cons_complete(c);
    if (!fed || !complete) {
        CHECK(0, "completion (%zu bytes) fed %d complete %d after %.*s", cl, fed, complete, (int)n, text);
        *ok = 0;
    }
    free(comp);
    n += cl;
    text[n] = 0;
    *outlen = n;
    return text;
}

static void test_json_walks(void)
{
    static const struct { const char *schema; int obj; int count; } cfg[] = {
        { NULL, 0, 3000 }, { NULL, 1, 1500 }, { NULL, 0, 0 }, /* placeholder for SCHEMA */
        { "{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},"
          "\"b\":{\"enum\":[\"x\",\"y\",null]}},\"required\":[\"b\"]}}",
          0, 1500 },
    };
    int fails = 0, total = 0, nonempty = 0;
    double tl = 0;
    for (size_t k = 0; k < DSV4__ARRAY_LEN(cfg); k++) {
        const char *schema = k == 2 ? SCHEMA : cfg[k].schema;
        int count = k == 2 ? 4000 : cfg[k].count;
        json_t *js = schema ? parse_any(schema, strlen(schema)) : NULL;
        dsv4__cons *proto = mk_json(schema, cfg[k].obj);
        for (int i = 0; i < count && proto; i++) {
            dsv4__cons *c = dsv4__cons_clone(proto);
            size_t n;
            int ok;
            char *text = walk(c, json_pieces, DSV4__ARRAY_LEN(json_pieces), 200, &n, &ok);
            json_t *v = parse_any(text, n);
            if (!v || !validate(js, v) || (cfg[k].obj && !json_is_object(v))) ok = 0;
            if (!ok) {
                if (fails++ < 10) CHECK(0, "walk result invalid: %s", text);
            }
            total++;
            tl += (double)n;
            if (n > 10) nonempty++;
            json_decref(v);
            free(text);
            dsv4__cons_free(c);
        }
        dsv4__cons_free(proto);
        json_decref(js);
    }
    CHECK(fails == 0, "%d of %d JSON walks failed", fails, total);
    CHECK(nonempty > total / 2, "walks produce text (%d of %d longer than 10 bytes)", nonempty, total);
    printf("JSON random walks: %d, mean length %.1f bytes, %d longer than 10\n", total, tl / total, nonempty);
}

/* ---- DSML ------------------------------------------------------------------------ */

static const char *TOOLS =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"d\",\"parameters\":{"
    "\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"},"
    "\"unit\":{\"type\":\"string\",\"enum\":[\"celsius\",\"fahrenheit\"]},"
    "\"opts\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"boolean\"}},\"required\":[\"a\"]},"
    "\"any\":{\"pattern\":\"x\"}},\"required\":[\"city\",\"opts\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"parameters\":{\"type\":\"object\",\"properties\":{"
    "\"tz\":{\"type\":[\"string\",\"null\"]},\"n\":{\"type\":\"number\"}}}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"ping\"}}]";

static const char *dsml_pieces[] = {
    "\n\n" TAG "tool_calls>\n", "\n", "\n\n", TAG, "<", FW, "DSML", "tool_calls>\n", TAG "invoke name=\"", "get_weather",
    "get_time", "get_", "ping", "\">\n", TAG "parameter name=\"", "city", "days", "unit", "opts", "any", "tz", "n",
    "x", "\" string=\"", "true\">", "false\">", "celsius", "fahrenheit", "Paris", " ", CTAG "parameter>\n", CTAG,
    "parameter>\n", CTAG "invoke>\n", CTAG "tool_calls>", "{\"a\":", "true", "false", "null", "}", "[", "]", "1",
    "2.5", "\"", "\"s\"", ",", "hello", "\xC3\xA9", "\xE2\x82", "</", "<" FW, "\"a\"", "0",
};

/* Parse a tools array the way the checker needs it. */
static json_t *tool_params(json_t *tools, const char *name)
{
    for (size_t i = 0; i < json_array_size(tools); i++) {
        json_t *fn = json_object_get(json_array_get(tools, i), "function");
        if (!strcmp(json_string_value(json_object_get(fn, "name")), name)) {
            json_t *p = json_object_get(fn, "parameters");
            return p ? p : json_null();
        }
    }
    return NULL;
}

static int starts(const char **p, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(end - *p) < n || memcmp(*p, lit, n)) return 0;
    *p += n;
    return 1;
}

static int utf8_valid(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n); /* jansson validates UTF-8 */
    int ok = j != NULL;
    json_decref(j);
    return ok;
}

/* Check a whole DSML output; returns 1 when every call parses and fits. */
static int check_dsml(const char *text, size_t n, json_t *tools, int mode, const char *forced, int *ninvokes)
{
    const char *p = text, *end = text + n;
    const char *tag = memmem(text, n, TAG, strlen(TAG));
    *ninvokes = 0;
    if (!tag) return mode == DSV4__TOOLS_AUTO;
    if (mode == DSV4__TOOLS_REQUIRED && tag != text + 2) return 0;
    if (tag - text < 2 || tag[-1] != '\n' || tag[-2] != '\n') return 0;
    p = tag;
    if (!starts(&p, end, TAG "tool_calls>\n")) return 0;
    for (;;) {
        if (!starts(&p, end, TAG "invoke name=\"")) return 0;
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q) return 0;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(q - p), p);
        if (forced && strcmp(name, forced)) return 0;
        json_t *params = tool_params(tools, name);
        if (!params) return 0;
        p = q;
        if (!starts(&p, end, "\">\n")) return 0;
        json_t *props = json_object_get(params, "properties"), *req = json_object_get(params, "required");
        json_t *given = json_object();
        int ok = 1;
        while (ok && starts(&p, end, TAG "parameter name=\"")) {
            q = memchr(p, '"', (size_t)(end - p));
            if (!q) { ok = 0; break; }
            char pname[128];
            snprintf(pname, sizeof pname, "%.*s", (int)(q - p), p);
            p = q;
            if (json_object_get(given, pname)) ok = 0;
            json_object_set_new(given, pname, json_true());
            json_t *ps = props ? json_object_get(props, pname) : NULL;
            if (props && !ps) ok = 0;
            int is_str;
            if (starts(&p, end, "\" string=\"true\">")) is_str = 1;
            else if (starts(&p, end, "\" string=\"false\">")) is_str = 0;
            else { ok = 0; break; }
            const char *v = memmem(p, (size_t)(end - p), CTAG "parameter>\n", strlen(CTAG "parameter>\n"));
            if (!v) { ok = 0; break; }
            if (memmem(p, (size_t)(v - p), CTAG, strlen(CTAG))) ok = 0;
            json_t *type = ps ? json_object_get(ps, "type") : NULL;
            int supported = ps && !json_object_get(ps, "pattern");
            if (is_str) {
                if (!utf8_valid(p, (size_t)(v - p))) ok = 0;
                if (supported && type && json_is_string(type) && strcmp(json_string_value(type), "string")) ok = 0;
                json_t *en = ps ? json_object_get(ps, "enum") : NULL;
                if (en) {
                    json_t *sv = json_stringn(p, (size_t)(v - p));
                    int member = 0;
                    for (size_t i = 0; i < json_array_size(en); i++) member |= json_equal(sv, json_array_get(en, i));
                    json_decref(sv);
                    if (!member) ok = 0;
                }
            } else {
                json_t *jv = parse_any(p, (size_t)(v - p));
                if (!jv) ok = 0;
                else if (supported && !validate(ps, jv)) ok = 0;
                if (supported && type && json_is_string(type) && !strcmp(json_string_value(type), "string")) ok = 0;
                json_decref(jv);
            }
            p = v + strlen(CTAG "parameter>\n");
        }
        for (size_t i = 0; ok && i < json_array_size(req); i++)
            if (!json_object_get(given, json_string_value(json_array_get(req, i)))) ok = 0;
        /* no parameter: the body is one empty line, as the chat encoding renders it */
        if (ok && !json_object_size(given) && !starts(&p, end, "\n")) ok = 0;
        json_decref(given);
        if (!ok || !starts(&p, end, CTAG "invoke>\n")) return 0;
        ++*ninvokes;
        if (starts(&p, end, CTAG "tool_calls>")) return p == end;
    }
}

static void test_dsml_walks(void)
{
    json_t *tools = parse_any(TOOLS, strlen(TOOLS));
    static const struct { int mode; const char *forced; int count; } cfg[] = {
        { DSV4__TOOLS_AUTO, NULL, 3000 }, { DSV4__TOOLS_REQUIRED, NULL, 2500 }, { DSV4__TOOLS_AUTO, "get_time", 1000 },
    };
    int fails = 0, total = 0, blocks = 0, invokes = 0;
    for (size_t k = 0; k < DSV4__ARRAY_LEN(cfg); k++) {
        dsv4__cons *proto = mk_dsml(TOOLS, cfg[k].mode, cfg[k].forced);
        int mode = cfg[k].forced ? DSV4__TOOLS_REQUIRED : cfg[k].mode;
        for (int i = 0; i < cfg[k].count && proto; i++) {
            dsv4__cons *c = dsv4__cons_clone(proto);
            size_t n;
            int ok, ni;
            char *text = walk(c, dsml_pieces, DSV4__ARRAY_LEN(dsml_pieces), 400, &n, &ok);
            if (!check_dsml(text, n, tools, mode, cfg[k].forced, &ni)) ok = 0;
            if (dsv4__cons_in_block(c) != (memmem(text, n, TAG, strlen(TAG)) != NULL)) ok = 0;
            if (!ok && fails++ < 10) CHECK(0, "DSML walk result invalid (mode %d):\n%s", mode, text);
            total++;
            blocks += ni > 0;
            invokes += ni;
            free(text);
            dsv4__cons_free(c);
        }
        dsv4__cons_free(proto);
    }
    CHECK(fails == 0, "%d of %d DSML walks failed", fails, total);
    CHECK(blocks > total / 2, "walks reach blocks: %d of %d", blocks, total);
    printf("DSML random walks: %d, %d with a block, %d invokes\n", total, blocks, invokes);
    json_decref(tools);
}

static void test_dsml_fixed(void)
{
    dsv4__cons *c = mk_dsml(TOOLS, DSV4__TOOLS_AUTO, NULL);
    if (!c) return;
    CHECK(dsv4__cons_complete(c) && !dsv4__cons_in_block(c), "empty content complete");
    CHECK(dsv4__cons_feed(c, "Hi <b> a < " FW " x", 15) && dsv4__cons_complete(c), "free content");
    CHECK(!dsv4__cons_allows(c, TAG, strlen(TAG)), "tag not after a blank line");
    CHECK(dsv4__cons_allows(c, "\n\n" TAG, 2 + strlen(TAG)), "tag after a blank line");
    CHECK(!dsv4__cons_allows(c, "\n\n" TAG "tool_call>", 2 + strlen(TAG) + 10), "exact opening");
    CHECK(dsv4__cons_feed(c, "\n\n" TAG "tool_calls>\n" TAG "invoke name=\"get_w", 2 + 11 + 12 + 11 + 13 + 5),
          "into a name");
    CHECK(dsv4__cons_in_block(c) && !dsv4__cons_complete(c), "in block");
    size_t n;
    char *comp = completion(c, &n);
    const char *expect = "eather\">\n" TAG "parameter name=\"city\" string=\"true\">" CTAG "parameter>\n" TAG
                         "parameter name=\"opts\" string=\"false\">{\"a\":true}" CTAG "parameter>\n" CTAG "invoke>\n" CTAG
                         "tool_calls>";
    CHECK(!strcmp(comp, expect), "name completion:\n%s", comp);
    free(comp);
    CHECK(!dsv4__cons_allows(c, "x", 1) && dsv4__cons_allows(c, "eather\"", 7), "names only");
    CHECK(dsv4__cons_feed(c, "eather\">\n" TAG "parameter name=\"city\" string=\"", 9 + 11 + 16 + 14), "param");
    CHECK(!dsv4__cons_allows(c, "false", 5) && dsv4__cons_allows(c, "true\">", 6), "string type: string=\"true\" only");
    CHECK(dsv4__cons_feed(c, "true\">a</b>" CTAG, 11 + 12), "value with a close tag start");
    CHECK(!dsv4__cons_allows(c, "x", 1) && !dsv4__cons_allows(c, "invoke>", 7) && dsv4__cons_allows(c, "parameter>\n", 11),
          "close tag inside a value must close the parameter");
    CHECK(dsv4__cons_feed(c, "parameter>\n", 11), "closed");
    CHECK(!dsv4__cons_allows(c, CTAG "invoke>\n", 12 + 8), "required opts missing");
    CHECK(!dsv4__cons_allows(c, TAG "parameter name=\"city\"", 11 + 16 + 5), "no duplicate parameter");
    CHECK(!dsv4__cons_allows(c, TAG "parameter name=\"cityx", 11 + 16 + 5), "declared names only");
    CHECK(dsv4__cons_feed(c, TAG "parameter name=\"days\" string=\"", 11 + 16 + 14), "days");
    CHECK(!dsv4__cons_allows(c, "true", 4) && dsv4__cons_allows(c, "false\">12", 9) &&
              !dsv4__cons_allows(c, "false\">1.5", 10) && dsv4__cons_allows(c, "false\"> 1\n" CTAG, 10 + 12),
          "integer: string=\"false\" and an integer");
    CHECK(dsv4__cons_feed(c, "false\">7" CTAG "parameter>\n", 8 + 23), "days given");
    CHECK(dsv4__cons_feed(c, TAG "parameter name=\"unit\" string=\"true\">c", 11 + 16 + 20 + 1), "enum value");
    CHECK(!dsv4__cons_allows(c, "x", 1) && dsv4__cons_allows(c, "elsius" CTAG "parameter>\n", 6 + 23) &&
              !dsv4__cons_allows(c, "elsiu" CTAG, 5 + 12),
          "raw enum members only");
    comp = completion(c, &n);
    CHECK(dsv4__cons_feed(c, comp, n) && dsv4__cons_complete(c), "completes");
    free(comp);
    dsv4__cons_free(c);

    /* REQUIRED: the block first; empty completion = shortest call */
    c = mk_dsml(TOOLS, DSV4__TOOLS_REQUIRED, NULL);
    CHECK(!dsv4__cons_complete(c) && !dsv4__cons_allows(c, "Hi", 2) && dsv4__cons_allows(c, "\n\n<", 3), "required");
    comp = completion(c, &n);
    CHECK(!strcmp(comp, "\n\n" TAG "tool_calls>\n" TAG "invoke name=\"ping\">\n\n" CTAG "invoke>\n" CTAG "tool_calls>"),
          "shortest call:\n%s", comp);
    free(comp);
    CHECK(dsv4__cons_feed(c, "\n\n" TAG, 13) && dsv4__cons_in_block(c), "in block once the tag is written");
    dsv4__cons_free(c);

    /* an invoke without parameters has one empty line as its body (the chat encoding's form) */
    c = mk_dsml(TOOLS, DSV4__TOOLS_AUTO, NULL);
    CHECK(FEED(c, "\n\n" TAG "tool_calls>\n" TAG "invoke name=\"ping\">\n"), "parameterless invoke");
    CHECK(!ALLOWS(c, CTAG "invoke>") && ALLOWS(c, "\n" CTAG "invoke>\n") && ALLOWS(c, TAG "parameter"),
          "empty body line required");
    CHECK(FEED(c, TAG "parameter name=\"a\" string=\"true\">x" CTAG "parameter>\n"), "one free parameter");
    CHECK(ALLOWS(c, CTAG "invoke>\n") && !ALLOWS(c, "\n" CTAG "invoke>"), "no empty line after a parameter");
    dsv4__cons_free(c);

    /* free parameter names (no declared properties): no duplicates, no quotes */
    c = mk_dsml(TOOLS, DSV4__TOOLS_AUTO, NULL);
    CHECK(dsv4__cons_feed(c, "\n\n" TAG "tool_calls>\n" TAG "invoke name=\"ping\">\n" TAG "parameter name=\"",
                          13 + 12 + 11 + 13 + 7 + 11 + 16),
          "free names");
    CHECK(!dsv4__cons_allows(c, "\"", 1) && !dsv4__cons_allows(c, "a<", 2) && dsv4__cons_allows(c, "x y\xC3\xA9\"", 6),
          "free name bytes");
    CHECK(dsv4__cons_feed(c, "q\" string=\"true\">v" CTAG "parameter>\n" TAG "parameter name=\"", 18 + 23 + 27),
          "first free param");
    CHECK(!dsv4__cons_allows(c, "q\"", 2) && dsv4__cons_allows(c, "qq\"", 3), "duplicate free name");
    comp = completion(c, &n);
    CHECK(!strncmp(comp, "a\" string=\"true\">", 17), "free name completion: %s", comp);
    CHECK(dsv4__cons_feed(c, comp, n) && dsv4__cons_complete(c), "free completes");
    free(comp);
    CHECK(!dsv4__cons_allows(c, "\n", 1), "nothing after the block");
    dsv4__cons_free(c);

    /* JSON strings inside a parameter never contain a close tag */
    c = mk_dsml(TOOLS, DSV4__TOOLS_AUTO, NULL);
    CHECK(FEED(c, "\n\n" TAG "tool_calls>\n" TAG "invoke name=\"get_time\">\n" TAG "parameter name=\"tz\" string=\"false\">\"a</"),
          "JSON string in a parameter");
    CHECK(!ALLOWS(c, FW "DSML" FW) && ALLOWS(c, FW "DSML" "\xEF\xBD\x80") && ALLOWS(c, FW "DSML\""), "no close tag in a JSON string");
    CHECK(FEED(c, "x\"" CTAG "parameter>\n"), "value closed");
    CHECK(FEED(c, CTAG "invoke>\n" TAG "invoke name=\"ping\">\n" TAG "parameter name=\"p\" string=\"false\">{\"</" FW "DSML"),
          "JSON key in a parameter");
    CHECK(!ALLOWS(c, FW) && ALLOWS(c, "\":1}"), "no close tag in a key");
    dsv4__cons_free(c);

    /* AUTO with no tools: content only */
    c = mk_dsml("[]", DSV4__TOOLS_AUTO, NULL);
    CHECK(c && !dsv4__cons_allows(c, "\n\n" TAG, 13) && dsv4__cons_allows(c, "\n\n<", 3), "no tools, no block");
    dsv4__cons_free(c);
    c = mk_dsml(NULL, DSV4__TOOLS_AUTO, NULL);
    CHECK(c && dsv4__cons_complete(c), "NULL tools");
    dsv4__cons_free(c);

    /* forced name */
    c = mk_dsml(TOOLS, DSV4__TOOLS_AUTO, "get_time");
    CHECK(c && !dsv4__cons_allows(c, "Hi", 2), "forced implies required");
    CHECK(dsv4__cons_feed(c, "\n\n" TAG "tool_calls>\n" TAG "invoke name=\"", 13 + 12 + 24), "forced");
    CHECK(!dsv4__cons_allows(c, "get_w", 5) && dsv4__cons_allows(c, "get_t", 5), "only the forced name");
    dsv4__cons_free(c);

    /* errors */
    static const struct { const char *tools; int mode; const char *forced; dsv4_status st; } bad[] = {
        { "{}", DSV4__TOOLS_AUTO, NULL, DSV4_ERR_INVALID_ARGUMENT },
        { "[", DSV4__TOOLS_AUTO, NULL, DSV4_ERR_INVALID_ARGUMENT },
        { "[1]", DSV4__TOOLS_AUTO, NULL, DSV4_ERR_INVALID_ARGUMENT },
        { "[{\"function\":{}}]", DSV4__TOOLS_AUTO, NULL, DSV4_ERR_INVALID_ARGUMENT },
        { "[{\"function\":{\"name\":\"a\\\"b\"}}]", DSV4__TOOLS_AUTO, NULL, DSV4_ERR_INVALID_ARGUMENT },
        { "[{\"function\":{\"name\":\"a\"}},{\"function\":{\"name\":\"a\"}}]", DSV4__TOOLS_AUTO, NULL,
          DSV4_ERR_INVALID_ARGUMENT },
        { "[{\"function\":{\"name\":\"a\"}}]", DSV4__TOOLS_AUTO, "b", DSV4_ERR_INVALID_ARGUMENT },
        { "[]", DSV4__TOOLS_REQUIRED, NULL, DSV4_ERR_INVALID_ARGUMENT },
        { "[{\"function\":{\"name\":\"a\"}}]", 7, NULL, DSV4_ERR_INVALID_ARGUMENT },
        { "[{\"function\":{\"name\":\"a\",\"parameters\":{\"properties\":{\"x<\":{}}}}}]", DSV4__TOOLS_AUTO, NULL,
          DSV4_ERR_INVALID_ARGUMENT },
    };
    for (size_t i = 0; i < DSV4__ARRAY_LEN(bad); i++) {
        dsv4__cons *d = NULL;
        dsv4__err err = { 0 };
        dsv4_status st = dsv4__cons_dsml(bad[i].tools, strlen(bad[i].tools), bad[i].mode, bad[i].forced, &d, &err);
        CHECK(st == bad[i].st && !d && err.msg[0], "tools error %zu: %d %s", i, st, err.msg);
    }
}

/* ---- allocation failures, clones ---------------------------------------------------- */

static void test_alloc_failures(void)
{
    int n, ok = 0;
    for (n = 1; n < 500 && !ok; n++) {
        dsv4__cons *c = NULL;
        dsv4__err err = { 0 };
        dsv4__alloc_fail_after(n);
        dsv4_status st = dsv4__cons_json(SCHEMA, strlen(SCHEMA), 0, &c, &err);
        dsv4__alloc_fail_after(0);
        if (st == DSV4_OK) {
            ok = 1;
            CHECK(dsv4__cons_feed(c, "{\"name\":\"", 9), "works after failures");
            dsv4__cons_free(c);
        } else {
            CHECK(st == DSV4_ERR_OUT_OF_MEMORY && !c, "json: failure %d gives OOM (%d %s)", n, st, err.msg);
        }
    }
    CHECK(ok && n > 3, "json compile succeeded after %d failures", n - 1);
    ok = 0;
    for (n = 1; n < 500 && !ok; n++) {
        dsv4__cons *c = NULL;
        dsv4__err err = { 0 };
        dsv4__alloc_fail_after(n);
        dsv4_status st = dsv4__cons_dsml(TOOLS, strlen(TOOLS), DSV4__TOOLS_AUTO, NULL, &c, &err);
        dsv4__alloc_fail_after(0);
        if (st == DSV4_OK) {
            ok = 1;
            dsv4__cons_free(c);
        } else {
            CHECK(st == DSV4_ERR_OUT_OF_MEMORY && !c, "dsml: failure %d gives OOM (%d %s)", n, st, err.msg);
        }
    }
    CHECK(ok && n > 3, "dsml compile succeeded after %d failures", n - 1);
    dsv4__cons *c = mk_json(NULL, 0);
    dsv4__alloc_fail_after(1);
    dsv4__cons *d = dsv4__cons_clone(c);
    dsv4__alloc_fail_after(0);
    CHECK(d == NULL, "clone fails cleanly");
    dsv4__cons_free(c);
}

static void test_clone(void)
{
    dsv4__cons *a = mk_json(SCHEMA, 0);
    if (!a) return;
    CHECK(dsv4__cons_feed(a, "{\"name\":\"x\",\"age\":", 18), "prefix");
    dsv4__cons *b = dsv4__cons_clone(a);
    CHECK(b && dsv4__cons_feed(b, "1}", 2) && dsv4__cons_complete(b), "clone advances");
    CHECK(!dsv4__cons_complete(a), "original unchanged");
    size_t n;
    char *comp = completion(a, &n);
    CHECK(!strcmp(comp, "0}"), "original completion %s", comp);
    free(comp);
    dsv4__cons_free(a); /* the clone keeps the shared program alive */
    CHECK(!dsv4__cons_allows(b, " ", 1) || dsv4__cons_allows(b, "\n", 1), "clone usable after the original is freed");
    dsv4__cons *c = dsv4__cons_clone(b);
    dsv4__cons_free(b);
    CHECK(c && dsv4__cons_complete(c), "clone of clone");
    dsv4__cons_free(c);
    dsv4__cons_free(NULL);
    CHECK(dsv4__cons_clone(NULL) == NULL && !dsv4__cons_allows(NULL, "a", 1) && !dsv4__cons_feed(NULL, "a", 1) &&
              !dsv4__cons_complete(NULL) && dsv4__cons_completion(NULL, NULL, 0) == 0 && !dsv4__cons_in_block(NULL),
          "NULL-safe");
}

/* ---- cost of allows() ------------------------------------------------------------------ */

static void test_speed(void)
{
    enum { V = 130000 };
    static const char *frags[] = { "the", " and", "ing", "\":", "\",\"", "{\"", "}", "],", " {", "\n", "  ", "name",
                                   "\\n", "123", ".5", "true", "<", "｜", "DSML", "</", "\xC3\xA9", "\xE4\xB8\xAD",
                                   "_", "(", ")", "=", " string", "param" };
    char *pool = malloc((size_t)V * 16);
    uint32_t *off = malloc(sizeof(uint32_t) * (V + 1));
    size_t used = 0;
    for (int i = 0; i < V; i++) {
        off[i] = (uint32_t)used;
        int kind = (int)rndn(10);
        if (kind < 2) { /* random bytes */
            int len = 1 + (int)rndn(6);
            for (int k = 0; k < len; k++) pool[used++] = (char)rndn(256);
        } else if (kind < 8) { /* ASCII words */
            int len = 2 + (int)rndn(7);
            if (rnd() & 1) pool[used++] = ' ';
            for (int k = 0; k < len; k++) pool[used++] = (char)('a' + rndn(26));
        } else { /* pieces */
            int m = 1 + (int)rndn(3);
            for (int k = 0; k < m; k++) {
                const char *f = frags[rndn(DSV4__ARRAY_LEN(frags))];
                size_t fl = strlen(f);
                if (used - off[i] + fl > 15) break;
                memcpy(pool + used, f, fl);
                used += fl;
            }
            if (used == off[i]) pool[used++] = 'x';
        }
    }
    off[V] = (uint32_t)used;
    printf("synthetic vocabulary: %d tokens, mean %.2f bytes\n", V, (double)used / V);

    struct { const char *what; dsv4__cons *c; } st[6];
    int ns = 0;
    st[ns].what = "JSON, start of a value";
    st[ns++].c = mk_json(NULL, 0);
    st[ns].what = "JSON schema, inside a string value";
    st[ns].c = mk_json(SCHEMA, 0);
    dsv4__cons_feed(st[ns++].c, "{\"name\":\"ab", 11);
    st[ns].what = "JSON schema, after {";
    st[ns].c = mk_json(SCHEMA, 0);
    dsv4__cons_feed(st[ns++].c, "{", 1);
    st[ns].what = "DSML, content";
    st[ns].c = mk_dsml(TOOLS, DSV4__TOOLS_AUTO, NULL);
    dsv4__cons_feed(st[ns++].c, "Let me check.", 13);
    st[ns].what = "DSML, string=\"true\" value";
    st[ns].c = mk_dsml(TOOLS, DSV4__TOOLS_AUTO, NULL);
    dsv4__cons_feed(st[ns++].c, "\n\n" TAG "tool_calls>\n" TAG "invoke name=\"get_weather\">\n" TAG
                                  "parameter name=\"city\" string=\"true\">Par",
                    13 + 12 + 11 + 13 + 14 + 11 + 16 + 20 + 3);
    st[ns].what = "DSML, JSON value in an object";
    st[ns].c = mk_dsml(TOOLS, DSV4__TOOLS_AUTO, NULL);
    dsv4__cons_feed(st[ns++].c, "\n\n" TAG "tool_calls>\n" TAG "invoke name=\"get_weather\">\n" TAG
                                  "parameter name=\"opts\" string=\"false\">{\"a\":",
                    13 + 12 + 11 + 13 + 14 + 11 + 16 + 21 + 5);
    double worst = 0;
    for (int k = 0; k < ns; k++) {
        if (!st[k].c) continue;
        long allowed = 0;
        double best = 1e9;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = now_s();
            long a = 0;
            for (int i = 0; i < V; i++) a += dsv4__cons_allows(st[k].c, pool + off[i], off[i + 1] - off[i]);
            double t = now_s() - t0;
            if (t < best) best = t;
            allowed = a;
        }
        if (best > worst) worst = best;
        printf("allows() %-36s %6.1f ns/token, %6.2f ms per %d-token scan (%ld allowed)\n", st[k].what,
               best * 1e9 / V, best * 1e3, V, allowed);
        dsv4__cons_free(st[k].c);
    }
    CHECK(worst > 0, "timed");
    free(pool);
    free(off);
}

int main(void)
{
    test_corpus();
    test_schema();
    test_schema_errors();
    test_completions();
    test_completion_minimal();
    test_json_walks();
    test_dsml_fixed();
    test_dsml_walks();
    test_alloc_failures();
    test_clone();
    test_speed();
    return test_summary();
}
