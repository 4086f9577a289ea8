/*
 * lib/text/tokenizer_int.h — what the rest of the library uses of the
 * tokenizer beyond the public calls (internal; names dsv4__tokenizer_*).
 */
#ifndef DSV4_TEXT_TOKENIZER_INT_H
#define DSV4_TEXT_TOKENIZER_INT_H

#include "core/core.h"

/* A tokenizer is reference counted: dsv4_tokenizer_load gives the caller's
 * reference, dsv4_tokenizer_free drops it, and every generator and
 * detokenizer holds one of its own, so they may outlive the caller's. */
void dsv4__tokenizer_retain(const dsv4_tokenizer *t);
void dsv4__tokenizer_release(const dsv4_tokenizer *t);

/* Named special tokens this version knows: ids 0 .. DSV4__N_SPECIAL - 1
 * (DSV4_TOKEN_EOT is the last; the public DSV4_TOKEN_COUNT_ is deprecated). */
#define DSV4__N_SPECIAL (DSV4_TOKEN_EOT + 1)

/* Test hook: dsv4_tokenizer_encode calls since the process started. */
unsigned long dsv4__tokenizer_encode_count(void);

#endif
