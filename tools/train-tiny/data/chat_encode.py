"""tools/train-tiny/data/chat_encode.py — the DeepSeek-V4 chat encoding of a
request, as (text, is_answer) segments, so a training sample knows which
characters are the model's own output (the loss spans).

It renders the subset of the official encoding the tiny corpus uses
(docs: ../shared/spec/text-protocol.md §3; the library's renderer is
lib/chat/encode.c): system / user / assistant / tool messages, thinking and
chat modes, request-level tools (DSML tool calls, tool results merged into the
next user turn), response_format on the system message, and dropping earlier
reasoning in thinking mode unless tools are present. check_library.py renders
every sample with the library too and compares the bytes.

A request is a dict: {"thinking": {"type": "enabled"|"disabled"},
"messages": [...], "tools": [...]} in the OpenAI form the library reads, or
{"prompt": TEXT} for plain text: BOS + TEXT + EOS (the library renders the
completion request as BOS + TEXT; the EOS is the sample's end).
"""
import json

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK = "<think>"
END_THINK = "</think>"
DSML = "｜DSML｜"

TOOLS_HEAD = (
    "## Tools\n\n"
    "You have access to a set of tools to help answer the user's question. You can invoke tools by writing a "
    "\"<" + DSML + "tool_calls>\" block like the following:\n\n"
    "<" + DSML + "tool_calls>\n"
    "<" + DSML + "invoke name=\"$TOOL_NAME\">\n"
    "<" + DSML + "parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</" + DSML
    + "parameter>\n"
    "...\n"
    "</" + DSML + "invoke>\n"
    "<" + DSML + "invoke name=\"$TOOL_NAME2\">\n"
    "...\n"
    "</" + DSML + "invoke>\n"
    "</" + DSML + "tool_calls>\n\n"
    "String parameters should be specified as is and set `string=\"true\"`. For all other types (numbers, "
    "booleans, arrays, objects), pass the value in JSON format and set `string=\"false\"`.\n\n"
    "If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning inside "
    "<think>...</think> BEFORE any tool calls or final response.\n\n"
    "Otherwise, output directly after </think> with tool calls or final response.\n\n"
    "### Available Tool Schemas\n\n")
TOOLS_TAIL = "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.\n"
RF_HEAD = "\n\n## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n"


def dumps(v):
    """Python's json.dumps with its default separators and raw non-ASCII, as the encoder uses."""
    return json.dumps(v, ensure_ascii=False)


def dsml_calls(calls):
    out = "\n\n<" + DSML + "tool_calls>\n"
    for k, call in enumerate(calls):
        fn = call["function"]
        if k:
            out += "\n"
        out += "<" + DSML + "invoke name=\"" + fn["name"] + "\">\n"
        args = json.loads(fn["arguments"])
        lines = []
        for name, v in args.items():
            if isinstance(v, str):
                lines.append("<%sparameter name=\"%s\" string=\"true\">%s</%sparameter>" % (DSML, name, v, DSML))
            else:
                lines.append("<%sparameter name=\"%s\" string=\"false\">%s</%sparameter>"
                             % (DSML, name, dumps(v), DSML))
        out += "\n".join(lines) + "\n</" + DSML + "invoke>"
    return out + "\n</" + DSML + "tool_calls>"


def render_segments(req):
    """The rendered conversation as a list of (text, is_answer): is_answer marks
    what an assistant turn outputs after its opener (reasoning, </think>,
    content, tool calls, EOS)."""
    if "prompt" in req:  # plain text after BOS (a completion request), all of it learnt, ending on EOS
        return [(BOS, False), (req["prompt"] + EOS, True)]
    thinking = req.get("thinking", {}).get("type", "enabled") == "enabled"
    msgs = req["messages"]
    tools = req.get("tools") or []
    drop = not tools
    # turns: tool results and user texts that follow them merge into one user turn
    turns = []
    if tools and (not msgs or msgs[0]["role"] != "system"):
        turns.append({"role": "system", "content": ""})
    # (the library puts tool results in the order of the calls they answer; the
    # samples give them in that order already)
    for m in msgs:
        r = m["role"]
        if r in ("user", "tool"):
            text = m["content"] if r == "user" else "<tool_result>" + m["content"] + "</tool_result>"
            prev = turns[-1] if turns else None
            if prev and prev["role"] == "user" and not prev.get("merge"):
                raise ValueError("two user messages in a row are not used by the tiny corpus")
            if prev and prev["role"] == "user" and prev.get("merge"):
                prev["content"] += "\n\n" + text
            else:
                turns.append({"role": "user", "content": text, "merge": r == "tool"})
            if r == "user":
                turns[-1]["merge"] = False
        else:
            turns.append(dict(m))
    last_user = max((i for i, t in enumerate(turns) if t["role"] == "user"), default=-1)
    segs = [(BOS, False)]
    for i, t in enumerate(turns):
        r = t["role"]
        if r == "system":
            s = t.get("content") or ""
            if i == 0 and tools:
                s += "\n\n" + TOOLS_HEAD + "\n".join(dumps(x["function"]) for x in tools) + TOOLS_TAIL
            if "response_format" in t:
                s += RF_HEAD + dumps(t["response_format"])
            segs.append((s, False))
        elif r == "user":
            s = USER + t["content"]
            last = i + 1 == len(turns)
            if last or turns[i + 1]["role"] == "assistant":
                s += ASSISTANT + (THINK if thinking and (i == last_user or not drop) else END_THINK)
            segs.append((s, False))
        elif r == "assistant":
            s = ""
            if thinking and (i > last_user or not drop) and last_user >= 0:
                s += (t.get("reasoning_content") or "") + END_THINK
            s += t.get("content") or ""
            if t.get("tool_calls"):
                s += dsml_calls(t["tool_calls"])
            segs.append((s + EOS, True))
        else:
            raise ValueError("role %r not used by the tiny corpus" % r)
    return segs


def library_rendering(req, text):
    """what dsv4_chat_render gives for req: text, less the final EOS of a plain-text sample"""
    return text[:-len(EOS)] if "prompt" in req else text


def render(req):
    """(text, spans): the whole string and the [start, end) character spans of the answers."""
    text, spans, pos = "", [], 0
    for s, ans in render_segments(req):
        if ans:
            spans.append([pos, pos + len(s)])
        text += s
        pos += len(s)
    return text, spans
