/*
 * tests/fuzz/fuzz_chat_render.c — a chat-completions request (JSON) rendered
 * into a prompt (dsv4_chat_render) and, when it renders, tokenized: any input
 * gives a status, never a crash, leak or hang; a rendered prompt is valid
 * UTF-8 text the tokenizer takes.
 */
#include "fuzz_common.h"

/* the tokenizer loads before the first input (outside its time limit) */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_tokenizer();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dsv4_tokenizer *tok = fuzz_tokenizer();
    char *prompt = NULL, *err = NULL;
    dsv4_status st = dsv4_chat_render((const char *)data, size, &prompt, &err);
    FUZZ_ASSERT(st == DSV4_OK ? prompt != NULL : prompt == NULL, "status %d", st);
    if (prompt) {
        size_t n = 0;
        dsv4_status es = dsv4_tokenizer_encode(tok, prompt, strlen(prompt), 0, NULL, 0, &n, NULL);
        FUZZ_ASSERT(es == DSV4_OK || es == DSV4_ERR_BUFFER_TOO_SMALL, "rendered prompt not encodable: %d", es);
    }
    dsv4_free(prompt);
    dsv4_free(err);
    return 0;
}
