/*
 * lib/chat/chat_int.h — what the rest of the library uses of the chat layer
 * beyond the public calls (internal; names dsv4__chat_*).
 */
#ifndef DSV4_CHAT_CHAT_INT_H
#define DSV4_CHAT_CHAT_INT_H

#include <jansson.h>
#include "core/core.h"

/* dsv4_chat_render() of a request already parsed (a JSON object, borrowed):
 * *prompt receives the prompt (dsv4_free), e the message on failure. */
dsv4_status dsv4__chat_render_json(json_t *req, char **prompt, dsv4__err *e);

#endif
