/*
 * tests/fuzz/fuzz_tokenizer_load.c — dsv4_tokenizer_load on any file
 * content: a status, never a crash, leak or hang; a tokenizer that loads
 * encodes and decodes a short text with specials and multibyte characters.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[4200];
    if (!path[0]) snprintf(path, sizeof path, "%s/tokenizer.json", fuzz_tmpdir());
    if (fuzz_write(path, data, size)) return 0;
    dsv4_tokenizer *tok = NULL;
    char *err = NULL;
    dsv4_status st = dsv4_tokenizer_load(path, NULL, &tok, &err);
    FUZZ_ASSERT(st == DSV4_OK ? tok != NULL : tok == NULL, "status %d", st);
    if (tok) {
        static const char text[] = "Hello, world! 123 \xe5\xa4\xa9\xe6\xb0\x94 <think></think>\n\n  x";
        int32_t ids[256];
        size_t n = 0;
        if (dsv4_tokenizer_encode(tok, text, sizeof text - 1, 0, ids, 256, &n, NULL) == DSV4_OK) {
            char out[512];
            size_t l = 0;
            dsv4_tokenizer_decode(tok, ids, n, out, sizeof out, &l);
        }
        for (int32_t id = -1; id < 300; id++) {
            char piece[64];
            size_t l = 0;
            dsv4_tokenizer_token_to_piece(tok, id, piece, sizeof piece, &l);
        }
    }
    dsv4_tokenizer_free(tok);
    dsv4_free(err);
    return 0;
}
