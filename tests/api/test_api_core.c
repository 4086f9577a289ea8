/* tests/api/test_api_core.c — misuse of the core public API: NULLs, bad
 * keys and values, out-params after failure. Public header only. */
#include <dsv4/dsv4.h>
#include <stdio.h>
#include <string.h>
#include "testutil.h"

#define T(c) CHECK((c), "%s", #c)

static int log_calls;
static void log_fn(void *user, int32_t level, const char *msg, size_t len)
{
    (void)user; (void)level; (void)msg; (void)len;
    log_calls++;
}
static int32_t progress_fn(void *user, double f) { (void)user; (void)f; return 0; }

int main(void)
{
    /* status strings: every code, plus unknown codes */
    for (dsv4_status s = 0; s <= DSV4_ERR_INCOMPATIBLE; s++) {
        const char *str = dsv4_status_string(s);
        T(str != NULL && str[0] != '\0' && strcmp(str, dsv4_status_string(100000)) != 0);
    }
    T(dsv4_status_string(-1) != NULL);
    T(dsv4_status_string(100000) != NULL);
    T(strcmp(dsv4_status_string(100000), dsv4_status_string(DSV4_OK)) != 0);

    /* free(NULL) no-ops */
    dsv4_free(NULL);
    dsv4_options_free(NULL);
    dsv4_model_free(NULL);
    dsv4_model_info_free(NULL);
    dsv4_context_free(NULL);
    dsv4_session_free(NULL);
    T(1);

    T(dsv4_options_create(NULL) == DSV4_ERR_INVALID_ARGUMENT);
    dsv4_options *o = NULL;
    T(dsv4_options_create(&o) == DSV4_OK && o != NULL);

    /* defaults */
    struct { dsv4_option k; int64_t def; } defs[] = {
        { DSV4_OPT_LOAD_MTP, 1 }, { DSV4_OPT_PREFETCH, 0 }, { DSV4_OPT_THREADS, 0 },
        { DSV4_OPT_CONTEXT_LENGTH, 4096 }, { DSV4_OPT_NUMERICS, DSV4_NUMERICS_REFERENCE },
        { DSV4_OPT_REVISION, DSV4_REVISION_CURRENT }, { DSV4_OPT_MAX_BATCH, 1024 },
        { DSV4_OPT_MTP, 0 }, { DSV4_OPT_WORKER_SPIN, -1 },
    };
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        int64_t v = -12345;
        T(dsv4_options_get_i64(o, defs[i].k, &v) == DSV4_OK);
        CHECK_EQ_INT(v, defs[i].def, "option default");
        T(dsv4_options_get_i64(NULL, defs[i].k, &v) == DSV4_ERR_INVALID_ARGUMENT);
        T(dsv4_options_get_i64(o, defs[i].k, NULL) == DSV4_ERR_INVALID_ARGUMENT);
    }
    /* unknown keys */
    int64_t v = 0;
    T(dsv4_options_set_i64(o, (dsv4_option)0, 1) == DSV4_ERR_UNKNOWN_OPTION);
    T(dsv4_options_set_i64(o, (dsv4_option)99, 1) == DSV4_ERR_UNKNOWN_OPTION);
    T(dsv4_options_set_i64(o, (dsv4_option)-5, 1) == DSV4_ERR_UNKNOWN_OPTION);
    T(dsv4_options_get_i64(o, (dsv4_option)12345, &v) == DSV4_ERR_UNKNOWN_OPTION);
    T(dsv4_options_set_i64(NULL, DSV4_OPT_THREADS, 1) == DSV4_ERR_INVALID_ARGUMENT);

    /* ranges; failures leave the bag unchanged */
    T(dsv4_options_set_i64(o, DSV4_OPT_LOAD_MTP, 2) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_options_set_i64(o, DSV4_OPT_LOAD_MTP, -1) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_options_set_i64(o, DSV4_OPT_THREADS, -1) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, 0) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_options_set_i64(o, DSV4_OPT_NUMERICS, 3) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_options_set_i64(o, DSV4_OPT_REVISION, 99) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_options_set_i64(o, DSV4_OPT_MAX_BATCH, 0) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_options_set_i64(o, DSV4_OPT_MTP, 7) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_options_set_i64(o, DSV4_OPT_WORKER_SPIN, -2) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_options_set_i64(o, DSV4_OPT_WORKER_SPIN, INT64_MIN) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_options_set_i64(o, DSV4_OPT_WORKER_SPIN, 5) == DSV4_OK);
    T(dsv4_options_set_i64(o, DSV4_OPT_WORKER_SPIN, -1) == DSV4_OK); /* adaptive */
    T(dsv4_options_get_i64(o, DSV4_OPT_WORKER_SPIN, &v) == DSV4_OK && v == -1);
    T(dsv4_options_set_i64(o, DSV4_OPT_WORKER_SPIN, 1 << 20) == DSV4_OK);
    T(dsv4_options_set_i64(o, DSV4_OPT_WORKER_SPIN, (1 << 20) + 1) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_options_set_i64(o, DSV4_OPT_WORKER_SPIN, 0) == DSV4_OK);
    T(dsv4_options_get_i64(o, DSV4_OPT_WORKER_SPIN, &v) == DSV4_OK && v == 0);
    T(dsv4_options_set_i64(o, DSV4_OPT_WORKER_SPIN, 4096) == DSV4_OK);
    T(dsv4_options_get_i64(o, DSV4_OPT_CONTEXT_LENGTH, &v) == DSV4_OK && v == 4096);
    T(dsv4_options_get_i64(o, DSV4_OPT_NUMERICS, &v) == DSV4_OK && v == DSV4_NUMERICS_REFERENCE);

    /* valid sets read back; 0 = default for enum options */
    T(dsv4_options_set_i64(o, DSV4_OPT_NUMERICS, DSV4_NUMERICS_FLOAT) == DSV4_OK);
    T(dsv4_options_get_i64(o, DSV4_OPT_NUMERICS, &v) == DSV4_OK && v == DSV4_NUMERICS_FLOAT);
    T(dsv4_options_set_i64(o, DSV4_OPT_NUMERICS, 0) == DSV4_OK);
    T(dsv4_options_get_i64(o, DSV4_OPT_NUMERICS, &v) == DSV4_OK && v == DSV4_NUMERICS_REFERENCE);
    T(dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, 70000) == DSV4_OK);
    T(dsv4_options_get_i64(o, DSV4_OPT_CONTEXT_LENGTH, &v) == DSV4_OK && v == 70000);
    T(dsv4_options_set_i64(o, DSV4_OPT_THREADS, 2) == DSV4_OK);

    /* callbacks */
    T(dsv4_options_set_log(NULL, log_fn, NULL, DSV4_LOG_INFO) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_options_set_log(o, log_fn, NULL, 0) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_options_set_log(o, log_fn, NULL, 99) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_options_set_log(o, log_fn, NULL, DSV4_LOG_DEBUG) == DSV4_OK);
    T(dsv4_options_set_log(o, NULL, NULL, DSV4_LOG_DEBUG) == DSV4_OK);
    T(dsv4_options_set_progress(NULL, progress_fn, NULL) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_options_set_progress(o, progress_fn, NULL) == DSV4_OK);

    /* objects: NULL arguments, out-params cleared on failure */
    dsv4_model *m = (dsv4_model *)o; /* poison: must be set to NULL */
    char *msg = (char *)o;
    T(dsv4_model_load(NULL, o, &m, &msg) == DSV4_ERR_INVALID_ARGUMENT);
    T(m == NULL);
    dsv4_free(msg);
    T(dsv4_model_load("/nonexistent/dir", NULL, NULL, NULL) == DSV4_ERR_INVALID_ARGUMENT);
    m = (dsv4_model *)o; msg = NULL;
    dsv4_status st = dsv4_model_load("/nonexistent/dir", NULL, &m, &msg);
    T(st == DSV4_ERR_IO);
    T(m == NULL);
    T(msg != NULL && strstr(msg, "/nonexistent/dir") != NULL);
    dsv4_free(msg);

    dsv4_model_info *info = (dsv4_model_info *)o;
    T(dsv4_model_info_from_dir(NULL, NULL, &info, NULL) == DSV4_ERR_INVALID_ARGUMENT && info == NULL);
    T(dsv4_model_get_info(NULL, &info) == DSV4_ERR_INVALID_ARGUMENT && info == NULL);
    T(dsv4_model_info_get_i64(NULL, DSV4_INFO_N_LAYERS, &v) == DSV4_ERR_INVALID_ARGUMENT);
    dsv4_layer_type lt = DSV4_LAYER_SWA;
    T(dsv4_model_info_layer_type(NULL, 0, &lt) == DSV4_ERR_INVALID_ARGUMENT);
    char *json = (char *)o;
    T(dsv4_model_info_to_json(NULL, &json) == DSV4_ERR_INVALID_ARGUMENT && json == NULL);

    dsv4_context *c = (dsv4_context *)o;
    T(dsv4_context_create(NULL, NULL, &c, NULL) == DSV4_ERR_INVALID_ARGUMENT && c == NULL);
    T(dsv4_context_last_error(NULL) != NULL);
    dsv4_session *s = (dsv4_session *)o;
    T(dsv4_session_create(NULL, NULL, &s, NULL) == DSV4_ERR_INVALID_ARGUMENT && s == NULL);
    T(dsv4_session_last_error(NULL) != NULL);
    int32_t tok = 1;
    float buf[4];
    T(dsv4_session_eval(NULL, &tok, 1, 0) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_session_logits(NULL, -1, buf, 4) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_session_mtp_logits(NULL, -1, buf, 4) == DSV4_ERR_INVALID_ARGUMENT);
    T(dsv4_session_position(NULL) < 0);
    T(dsv4_session_reset(NULL) == DSV4_ERR_INVALID_ARGUMENT);

    dsv4_options_free(o);
    (void)log_calls;
    return test_summary();
}
