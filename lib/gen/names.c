/*
 * lib/gen/names.c — the names of finish reasons and event types
 * (dsv4_finish_reason_string, dsv4_gen_event_name), so that no client
 * keeps its own table. The finish names are those of the response JSON.
 */
#include "core/core.h"

const char *dsv4_finish_reason_string(dsv4_finish_reason reason)
{
    switch (reason) {
    case DSV4_FINISH_NONE: return "none";
    case DSV4_FINISH_STOP: return "stop";
    case DSV4_FINISH_LENGTH: return "length";
    case DSV4_FINISH_TOOL_CALLS: return "tool_calls";
    case DSV4_FINISH_ERROR: return "error";
    case DSV4_FINISH_CANCELLED: return "cancelled";
    default: return "unknown";
    }
}

const char *dsv4_gen_event_name(dsv4_gen_event_type type)
{
    switch (type) {
    case DSV4_GEN_EVENT_NONE: return "none";
    case DSV4_GEN_EVENT_REASONING: return "reasoning";
    case DSV4_GEN_EVENT_CONTENT: return "content";
    case DSV4_GEN_EVENT_TOOL_CALL_START: return "tool_call_start";
    case DSV4_GEN_EVENT_TOOL_CALL_ARGS: return "tool_call_args";
    case DSV4_GEN_EVENT_TOOL_CALL_END: return "tool_call_end";
    case DSV4_GEN_EVENT_STOP: return "stop";
    default: return "unknown";
    }
}
