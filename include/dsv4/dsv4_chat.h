/*
 * libdsv4 — chat encoding (included by dsv4.h; do not include directly).
 *
 * Renders a conversation to the exact prompt string of the official
 * DeepSeek-V4 encoder, so that no binding re-implements it. Tokenize the
 * result with dsv4_tokenizer_encode() (added tokens matched, no BOS flag:
 * the prompt already starts with BOS).
 */
#ifndef LIBDSV4_DSV4_CHAT_H
#define LIBDSV4_DSV4_CHAT_H
#ifndef LIBDSV4_DSV4_H
#error "include <dsv4/dsv4.h> instead"
#endif

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Render a chat request (JSON, OpenAI chat-completions style) to the prompt
 * string the official DeepSeek-V4 encoder produces.
 *
 * Request fields:
 *  - "messages" (required): objects with "role" ∈ system, user, assistant,
 *    tool, latest_reminder. system: "content", optional "tools" and
 *    "response_format" (rendered as the official blocks). user: "content".
 *    assistant: "content", "reasoning_content", "tool_calls" (OpenAI form,
 *    "arguments" a JSON string), "prefix": true (or "wo_eos": true) on the
 *    last message to continue it (chat-prefix completion: no end-of-sentence).
 *    tool: "tool_call_id", "content" — consecutive results are merged into
 *    one user turn in the order of the preceding assistant's calls.
 *  - "tools": request-level tool list, attached to the first system message
 *    (a system message with empty content is added when there is none).
 *  - "thinking": {"type": "enabled"|"disabled"} or "thinking_mode":
 *    "thinking"|"chat"; default thinking.
 *  - "reasoning_effort": "none" (= chat mode), "low"/"minimal"/"medium"/"high"
 *    (= high: no prompt change), "max"/"xhigh" (= the official max-effort
 *    paragraph, thinking mode only).
 *  - "drop_thinking": boolean, default true (reasoning of turns before the
 *    last user message is dropped); forced false when any tools are present.
 * A completion request — "prompt" (and optional "suffix") instead of
 * "messages" — renders BOS + prompt, or with a suffix the fill-in-the-middle
 * form BOS <｜fim▁begin｜>prompt<｜fim▁hole｜>suffix<｜fim▁end｜>.
 * A top-level "response_format" is not injected into the prompt (the
 * official service does not document doing so); constrain the output instead.
 *
 * @param request_json  the request bytes (need not be NUL-terminated), at
 *                      most 1 GiB; borrowed.
 * @param prompt        receives the UTF-8 prompt, to free with dsv4_free().
 * @param err_msg       optional; on failure a message naming the field.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL pointers, unknown role,
 *         wrong field types, tool result without a matching call, bad
 *         reasoning_effort); DSV4_ERR_BAD_FORMAT (not a JSON object);
 *         DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_chat_render(const char *request_json, size_t len, char **prompt, char **err_msg);

#ifdef __cplusplus
}
#endif

#endif
