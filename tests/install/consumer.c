/* tests/install/consumer.c — built against the *installed* library with
 * nothing but `pkg-config --cflags --libs dsv4`. */
#include <dsv4/dsv4.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    dsv4_options *o = NULL;
    if (dsv4_options_create(&o) != DSV4_OK) return 1;
    int64_t v = -1;
    dsv4_status st = dsv4_options_get_i64(o, DSV4_OPT_THREADS, &v);
    dsv4_options_free(o);
    if (st != DSV4_OK || strcmp(dsv4_version_string(), DSV4_VERSION_STRING) != 0) return 1;
    /* the names every client needs, from the installed library */
    if (strcmp(dsv4_finish_reason_string(DSV4_FINISH_LENGTH), "length") != 0 ||
        strcmp(dsv4_gen_event_name(DSV4_GEN_EVENT_CONTENT), "content") != 0 || dsv4_model_tokenizer_path(NULL) != NULL)
        return 1;
    printf("libdsv4 %s\n", dsv4_version_string());
    return 0;
}
