"""tools/train-tiny/eval.py — what libdsv4 makes of a trained tiny model on held-out conversations.

  python3 tools/train-tiny/eval.py MODEL_DIR HELDOUT.jsonl [--n 200] [--numerics reference|float]

For each held-out sample (fields `ids`, `loss_spans`, as tools/train-tiny/data writes them) the library
evaluates the whole conversation with all logits (main and MTP) and the tool prints, over the tokens
the assistant writes (the loss spans):
  - perplexity of the main head;
  - MTP perplexity (the MTP head predicting the token after next);
  - MTP draft acceptance: how often the MTP head's top-1 equals the token after next, i.e. the rate at
    which a one-token greedy speculative draft would be accepted;
  - main top-1 accuracy.
Needs only the Python binding (bindings/python; numpy), not torch. DSV4_LIBRARY names libdsv4.so.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "bindings", "python"))
import dsv4  # noqa: E402


def logsumexp(x):
    m = x.max(-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[..., 0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("heldout")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--numerics", default="reference", choices=["reference", "float"])
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    samples = [json.loads(line) for line in open(a.heldout, encoding="utf-8")][: a.n]
    nll = mnll = 0.0
    n = nm = acc = macc = 0
    with dsv4.Model(a.model) as model, model.context(numerics=a.numerics, threads=a.threads,
                                                      context_length=1024) as ctx:
        for smp in samples:
            ids = smp["ids"]
            T = len(ids)
            want = np.zeros(T, bool)
            for lo, hi in smp["loss_spans"]:
                want[lo:hi] = True
            with ctx.session(mtp=True) as s:
                s.eval(ids, all_logits=True)
                lg = np.stack([s.logits(p, numpy=True) for p in range(T - 1)])
                ml = np.stack([s.logits(p, numpy=True, mtp=True) for p in range(T - 2)])
            tgt = np.array(ids)
            rows = np.nonzero(want[1:])[0]          # logits row p predicts ids[p + 1]
            lp = lg[rows, tgt[rows + 1]] - logsumexp(lg[rows])
            nll -= lp.sum()
            acc += int((lg[rows].argmax(-1) == tgt[rows + 1]).sum())
            n += len(rows)
            mrows = np.nonzero(want[2:])[0]         # MTP row p predicts ids[p + 2]
            mlp = ml[mrows, tgt[mrows + 2]] - logsumexp(ml[mrows])
            mnll -= mlp.sum()
            macc += int((ml[mrows].argmax(-1) == tgt[mrows + 2]).sum())
            nm += len(mrows)
    print(f"model {a.model}, {len(samples)} held-out samples, {n} assistant tokens, {a.numerics} numerics")
    print(f"perplexity          {math.exp(nll / n):.3f}   (top-1 accuracy {acc / n:.3f})")
    print(f"MTP perplexity      {math.exp(mnll / nm):.3f}")
    print(f"MTP draft acceptance {macc / nm:.3f}  (MTP top-1 == the token after next)")


if __name__ == "__main__":
    main()
