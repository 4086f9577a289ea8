/* examples/dsv4-chat.c — one question to a model, the answer streamed (the README's example).
 * dsv4-chat MODEL_DIR 'question': reasoning to stderr, the answer to stdout, then the usage. */
#include <dsv4/dsv4.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    dsv4_model *m = NULL; dsv4_tokenizer *tok = NULL; dsv4_context *c = NULL; dsv4_session *s = NULL; dsv4_gen *g = NULL;
    char *err = NULL, q[2048], req[4096];
    size_t k = 0;
    if (argc != 3) return fprintf(stderr, "usage: dsv4-chat MODEL_DIR 'question'\n"), 2;
    for (const char *p = argv[2]; *p && k < sizeof q - 2; p++) /* the question as a JSON string */
        if ((unsigned char)*p >= 0x20) { if (*p == '"' || *p == '\\') q[k++] = '\\'; q[k++] = *p; }
    q[k] = 0;
    snprintf(req, sizeof req, "{\"messages\": [{\"role\": \"user\", \"content\": \"%s\"}], \"max_tokens\": 256, "
             "\"thinking_budget\": 128}", q);
    if (dsv4_model_load(argv[1], NULL, &m, &err) || dsv4_tokenizer_load(dsv4_model_tokenizer_path(m), NULL, &tok, &err) ||
        dsv4_context_create(m, NULL, &c, &err) || dsv4_session_create(c, NULL, &s, &err) || dsv4_gen_create(s, tok, &g) ||
        dsv4_gen_start_request(g, req, strlen(req)))
        return fprintf(stderr, "dsv4-chat: %s\n", err ? err : g ? dsv4_gen_last_error(g) : "failed"), 1;
    dsv4_gen_event_type t; int32_t i; const char *d; size_t n;
    while (dsv4_gen_next(g, &t, &i, &d, &n) == DSV4_OK && t != DSV4_GEN_EVENT_STOP)
        fwrite(d, 1, n, t == DSV4_GEN_EVENT_REASONING ? stderr : stdout);
    printf("\n[finish: %s; %lld prompt tokens, %lld completion tokens (%lld reasoning)]\n", dsv4_finish_reason_string(i),
           (long long)dsv4_gen_usage(g, DSV4_USAGE_PROMPT_TOKENS), (long long)dsv4_gen_usage(g, DSV4_USAGE_COMPLETION_TOKENS),
           (long long)dsv4_gen_usage(g, DSV4_USAGE_REASONING_TOKENS));
    dsv4_gen_free(g); dsv4_session_free(s); dsv4_context_free(c); dsv4_tokenizer_free(tok); dsv4_model_free(m);
    return i == DSV4_FINISH_ERROR;
}
