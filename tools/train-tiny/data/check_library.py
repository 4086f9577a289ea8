#!/usr/bin/env python3
"""tools/train-tiny/data/check_library.py — check corpus files and a tokenizer
against libdsv4 itself (through bindings/python):
  * the library's chat renderer (dsv4_chat_render) turns each sample's request
    into exactly its text;
  * the library's tokenizer, loading the tokenizer.json with no special case,
    encodes each text to the ids of bpe.py, and decodes them back to the
    exact bytes; every added token is one id both ways;
  * the loss spans start right after an assistant opener and end on EOS.

Usage: DSV4_LIBRARY=build/libdsv4.so check_library.py TOKENIZER_JSON CORPUS.jsonl [...]
Prints "N passed, N failed" (one check per sample and property).
"""
import json, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "bindings", "python"))
import bpe  # noqa: E402
import chat_encode  # noqa: E402
import dsv4  # noqa: E402

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        if failed <= 20:
            print("FAIL " + what)


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    ref = bpe.Tokenizer.load(sys.argv[1])
    lib = dsv4.Tokenizer(sys.argv[1])
    check(lib.vocab_size == ref.vocab_size(), "vocab size %d (library) vs %d" % (lib.vocab_size,
                                                                                  ref.vocab_size()))
    for i, c, _, _ in ref.added:
        check(lib.encode(c) == [i] and ref.encode(c) == [i], "added token %s is the single id %d" % (c, i))
        check(lib.decode_bytes([i]) == c.encode("utf-8"), "added token %d decodes to its text" % i)
    n = 0
    for path in sys.argv[2:]:
        for k, line in enumerate(open(path, encoding="utf-8")):
            s = json.loads(line)
            where = "%s:%d" % (os.path.basename(path), k + 1)
            text = s["text"]
            check(dsv4.render_chat(s["request"]) == chat_encode.library_rendering(s["request"], text), where + ": library renders the request to the text")
            ids = ref.encode(text)
            lids = list(lib.encode(text))
            check(lids == ids, where + ": library ids equal bpe.py's")
            check(lib.decode_bytes(lids) == text.encode("utf-8"), where + ": library decodes to the exact bytes")
            check(ref.decode_bytes(ids) == text.encode("utf-8"), where + ": bpe.py decodes to the exact bytes")
            ok = bool(s["spans"])
            for a, b in s["spans"]:
                opener = (chat_encode.BOS,) if "prompt" in s["request"] else (chat_encode.THINK, chat_encode.END_THINK)
                ok = ok and text[:a].endswith(opener) and text[:b].endswith(chat_encode.EOS)
            check(ok, where + ": loss spans follow an assistant opener and end on EOS")
            n += 1
    print("%d samples checked" % n)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
