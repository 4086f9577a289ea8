#!/usr/bin/env python3
"""tools/train-tiny/data/tokenize_corpus.py — add token ids and token loss
spans to corpus files made by make_corpus.py.

Usage: tokenize_corpus.py TOKENIZER_JSON IN.jsonl OUT.jsonl
       tokenize_corpus.py --arrays OUT.npz IN.jsonl [...]   (files with ids and loss_spans)
Each output line is the input sample plus
  "ids":         the token ids of "text" (bpe.py; the library gives the same),
  "loss_spans":  [start, end) token index ranges of the assistant's output
                 (the character "spans" mapped to tokens: every span starts
                 right after an added token and ends with EOS, so the token
                 boundaries fall exactly there).
Prints the token counts.

--arrays writes the samples back to back as two numpy arrays: "ids" (int32)
and "loss" (uint8, 1 where the token is one the model is trained to predict,
i.e. inside a loss span); "starts" (int64) holds each sample's first index.
"""
import json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402


def tokenize(tok, s):
    text, spans = s["text"], s["spans"]
    ids, loss, pos = [], [], 0
    for a, b in spans:
        ids += tok.encode(text[pos:a])
        t0 = len(ids)
        ids += tok.encode(text[a:b])
        loss.append([t0, len(ids)])
        pos = b
    ids += tok.encode(text[pos:])
    if ids != tok.encode(text):
        raise SystemExit("tokenize_corpus: spans of %r cut a token" % text[:80])
    return ids, loss


def arrays(out, paths):
    import numpy as np
    ids, loss, starts = [], [], []
    for path in paths:
        for line in open(path, encoding="utf-8"):
            s = json.loads(line)
            starts.append(len(ids))
            m = [0] * len(s["ids"])
            for a, b in s["loss_spans"]:
                m[a:b] = [1] * (b - a)
            ids += s["ids"]
            loss += m
    np.savez(out, ids=np.array(ids, np.int32), loss=np.array(loss, np.uint8), starts=np.array(starts, np.int64))
    print("%s: %d samples, %d tokens, %d with loss" % (os.path.basename(out), len(starts), len(ids), sum(loss)))


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "--arrays":
        arrays(sys.argv[2], sys.argv[3:])
        return 0
    if len(sys.argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    tok = bpe.Tokenizer.load(sys.argv[1])
    n = n_tok = n_loss = longest = 0
    with open(sys.argv[3], "w", encoding="utf-8") as out:
        for line in open(sys.argv[2], encoding="utf-8"):
            s = json.loads(line)
            s["ids"], s["loss_spans"] = tokenize(tok, s)
            out.write(json.dumps(s, ensure_ascii=False) + "\n")
            n += 1
            n_tok += len(s["ids"])
            n_loss += sum(b - a for a, b in s["loss_spans"])
            longest = max(longest, len(s["ids"]))
    print("%s: %d samples, %d tokens (%d in loss spans), longest %d, mean %.1f"
          % (os.path.basename(sys.argv[3]), n, n_tok, n_loss, longest, n_tok / max(n, 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
