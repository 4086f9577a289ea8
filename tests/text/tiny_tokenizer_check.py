#!/usr/bin/env python3
"""tests/text/tiny_tokenizer_check.py — the tiny model's tokenizer tools
(tools/train-tiny/data) against the library.

Trains a small byte-level BPE (bpe.py) on the corpus sample checked into
tools/train-tiny/data/sample.jsonl, then checks that
  * the Python side is consistent: chat_encode.py renders each sample's request
    to its text, the loss spans fall on token boundaries, bpe.py decodes its
    ids to the exact bytes, the saved tokenizer.json loads back to the same
    encoder, every added token is one id;
  * the library (test_tokenizer --ids) loads the tokenizer.json with no special
    case, encodes the sample texts and a set of edge texts (added tokens glued
    to text, non-ASCII, digits, whitespace runs) to bpe.py's ids, decodes them
    to the exact bytes, and its chat renderer gives each sample's text;
  * the reference engines (Hugging Face tokenizers in Rust and in JS, through
    ../shared/tools/tokenize.mjs with $TOK_NODE_MODULES, tests/text/ci-setup.sh)
    give the same ids: the file is a valid tokenizer.json, not only one the
    library reads (skipped without node and the packages, a failure when
    CI=true);
and the same for every models/*/tokenizer.json of a small vocabulary (the tiny
model's, once committed).

Usage: tiny_tokenizer_check.py TEST_TOKENIZER DATA_DIR REPO_ROOT
Needs the regex module (Debian python3-regex; scripts/deps.sh installs it).
"""
import glob, json, os, shutil, subprocess, sys, tempfile

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL " + what)


EDGE = [
    "Hello, world! 123\nsecond line", "  leading and trailing spaces   ", "a  b   c    d", "\n\n\n",
    "\t\ttabs\tand\nnewlines\r\n\r\nCRLF", "1234567890 3.14159 and 1,000,000", "don't can't we've I'll",
    "Chișinău, Reykjavík, Asunción, São Tomé", "Καλημέρα κόσμε", "你好，世界！日本語のテキスト", "emoji 😀👍🏽 🇫🇷",
    "def f(a, b):\n    return a + b  # comment\n", '{"a": 1, "b": [true, null], "c": "x"}',
    "<｜User｜>hi<｜Assistant｜><think>why</think>because<｜end▁of▁sentence｜>",
    "text<think>glued</think>text<｜User｜><｜User｜>", "<｜DSML｜invoke name=\"f\">", "｜DSML｜｜DSML｜",
    "<<think>>", "</think", "<｜User", "<tool_result>{\"sum\": 42}</tool_result>",
]


def reference_ids(tok_path, texts, d):
    """{engine: [ids per text]} from the reference runner, or None when it is not set up"""
    runner = os.path.join(os.environ.get("DSV4_SHARED_DIR", "../shared"), "tools", "tokenize.mjs")
    nm = os.environ.get("TOK_NODE_MODULES", "")
    if not os.path.exists(runner) or not nm or not os.path.isdir(nm) or not shutil.which("node"):
        return None
    tf = os.path.join(d, "texts.jsonl")
    with open(tf, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    out = {}
    for engine in ("rust", "js"):
        r = subprocess.run(["node", runner, tok_path, tf, "--jsonl", "--engine=" + engine], capture_output=True,
                           text=True, timeout=300)
        lines = [json.loads(l) for l in r.stdout.splitlines() if l.strip()] if r.returncode == 0 else []
        out[engine] = [o["ids"] for o in lines] if len(lines) == len(texts) else None
        if out[engine] is None:
            print("reference runner (%s) failed: %s" % (engine, r.stderr.strip()[-500:]))
    return out


def main():
    tok_bin, data, root = sys.argv[1:4]
    sys.path.insert(0, data)
    try:
        import bpe, chat_encode, tokenize_corpus
    except ImportError as e:
        # the python3 on the PATH may not be Debian's, which python3-regex serves
        deb = "/usr/bin/python3"
        if os.path.exists(deb) and os.path.realpath(sys.executable) != os.path.realpath(deb) \
                and not os.environ.get("TINY_CHECK_REEXEC"):
            os.environ["TINY_CHECK_REEXEC"] = "1"
            os.execv(deb, [deb] + sys.argv)
        print("cannot import the tokenizer tools: %s (Debian python3-regex, see scripts/deps.sh)" % e)
        check(False, "tools import")
        print("%d passed, %d failed" % (passed, failed))
        return 1
    samples = [json.loads(l) for l in open(os.path.join(data, "sample.jsonl"), encoding="utf-8") if l.strip()]
    check(len(samples) >= 100, "sample.jsonl has %d samples" % len(samples))
    check({s["kind"] for s in samples} >= {"chat", "think", "multi", "json", "tool", "text"},
          "the sample holds every kind of conversation")
    for k, s in enumerate(samples):
        text, spans = chat_encode.render(s["request"])
        check(text == s["text"] and spans == s["spans"], "sample %d: chat_encode.py renders the request" % k)

    with tempfile.TemporaryDirectory() as d:
        small = bpe.train([s["text"] for s in samples], 700)
        check(small.vocab_size() == 700, "trained tokenizer has 700 ids (%d)" % small.vocab_size())
        path = os.path.join(d, "tokenizer.json")
        small.save(path)
        toks = [("trained", path, small)]
        for p in sorted(glob.glob(os.path.join(root, "models", "*", "tokenizer.json"))):
            # small vocabularies only: run-demo.sh may have put V4's own there (the golden tests cover it)
            if len(json.load(open(p, encoding="utf-8"))["model"]["merges"]) < 65536:
                toks.append((os.path.relpath(p, root), p, bpe.Tokenizer.load(p)))
        for name, p, tok in toks:
            again = bpe.Tokenizer.load(p)
            cases = []
            for k, s in enumerate(samples):
                ids = tok.encode(s["text"])
                ok = tok.decode_bytes(ids) == s["text"].encode("utf-8") and again.encode(s["text"]) == ids
                check(ok, "%s: sample %d: bpe.py round trip, same ids after loading the file" % (name, k))
                try:
                    tids, spans = tokenize_corpus.tokenize(tok, s)
                    check(tids == ids and all(ids[b - 1] == 1 for _, b in spans),
                          "%s: sample %d: loss spans on token boundaries, ending on EOS" % (name, k))
                except SystemExit as e:
                    check(False, "%s: sample %d: %s" % (name, k, e))
                cases.append({"text": s["text"], "ids": ids, "request": s["request"],
                              "rendered": chat_encode.library_rendering(s["request"], s["text"])})
            for i, c, _, _ in tok.added:
                check(tok.encode(c) == [i], "%s: added token %s is one id" % (name, c))
                cases.append({"text": c, "ids": [i]})
            for t in EDGE:
                ids = tok.encode(t)
                check(tok.decode_bytes(ids) == t.encode("utf-8"), "%s: bpe.py round trip of %r" % (name, t))
                cases.append({"text": t, "ids": ids})
            ref = reference_ids(p, [c["text"] for c in cases], d)
            if ref is None:
                in_ci = os.environ.get("CI") == "true"
                print("%s: reference engines not set up (TOK_NODE_MODULES, tests/text/ci-setup.sh)%s"
                      % (name, ": required when CI=true" if in_ci else "; skipped"))
                if in_ci:
                    check(False, "%s: reference engines present" % name)
            else:
                for engine, got in ref.items():
                    same = got is not None and all(g == c["ids"] for g, c in zip(got, cases))
                    check(same, "%s: the %s reference engine gives bpe.py's ids" % (name, engine))
            cf = os.path.join(d, "cases.jsonl")
            with open(cf, "w", encoding="utf-8") as f:
                for c in cases:
                    f.write(json.dumps(c, ensure_ascii=False) + "\n")
            r = subprocess.run([tok_bin, "--ids", p, cf], capture_output=True, text=True)
            out = (r.stdout + r.stderr).strip().splitlines()
            for line in out:
                if "FAIL" in line or "texts exact" in line:
                    print("  " + line)
            check(r.returncode == 0 and out and out[-1].endswith(" 0 failed"),
                  "%s: the library gives bpe.py's ids and the renderer's texts (%s)"
                  % (name, out[-1] if out else "no output"))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
