"""tools/train-tiny/train.py — train the tiny DeepSeek-V4-architecture model (docs/tiny-model.md).

CPU only, Debian's python3-torch; reproducible from --seed (the same seed, steps, data and thread count
give the same weights, unless --minutes, a time budget, is what ends the run). The corpus is the data helper's output
(tools/train-tiny/data: corpus-train.jsonl / corpus-heldout.jsonl with the token ids of chat
conversations in the official DeepSeek-V4 encoding, made with the model's tokenizer.json, and the
`loss_spans` the assistant writes). A training window packs whole conversations back to back from a
random one (so every window starts with BOS, as at inference) and is cut to --seq tokens; the loss is
next-token cross-entropy on the loss spans, plus 0.3 x the MTP block's (the token after next), plus
0.1 x the indexer's distillation loss (its scores follow the attention mass the heads put on the
compressed entries). Learned routers balance with the auxiliary-loss-free bias update; the first
layers route by a fixed seeded token hash. The last --qat fraction of the steps runs
quantisation-aware (weights as exported: FP8 e4m3 + E8M0 128x128, FP4 e2m1 + E8M0 1x32, BF16;
straight-through gradients); the export quantises and writes the official format, with the
tokenizer.json beside it.

  /usr/bin/python3 tools/train-tiny/train.py --data DIR --out models/NAME [--steps N] [--seed S]
  /usr/bin/python3 tools/train-tiny/train.py --smoke --out /tmp/x      (a few steps, for the test)

One thread by default: on a loaded machine, torch's two-thread parallel regions wait for each other
and ran 10x slower than one thread here. Torch's matrix products go through the system BLAS; Debian's
default (netlib) is slow — with libopenblas0 installed (or its library on LD_LIBRARY_PATH) training is
about 5x faster.
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import model as M  # noqa: E402


def model_config(vocab, smoke=False, bos=0, eos=1):
    if smoke:
        return M.make_config(vocab=vocab, dim=128, n_layers=2, ratios=(4, 8, 0), n_hash=1, n_heads=2,
                             q_lora=128, o_groups=2, o_lora=64, n_experts=4, topk=2, inter=128, ih=2,
                             index_topk=2, window=16, bos=bos, eos=eos)
    return M.make_config(vocab=vocab, dim=256, n_layers=4, ratios=(0, 4, 32, 4, 0), n_hash=2, n_heads=4,
                         q_lora=128, o_groups=2, o_lora=128, n_experts=8, topk=2, inter=256, ih=4,
                         index_topk=16, window=64, bos=bos, eos=eos)


def load_samples(path):
    """(ids, weights) of a corpus JSONL (fields ids, loss_spans): weight 1 on the ids to predict"""
    ids, wts = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            o = json.loads(line)
            w = np.zeros(len(o["ids"]), np.float32)
            for a, b in o["loss_spans"]:
                w[a:b] = 1.0
            ids.append(np.array(o["ids"], np.int64))
            wts.append(w)
    return ids, wts


def pack(ids, wts, start, seq):
    """samples from index start on, back to back, cut to seq + 1 ids (each window starts with a BOS)"""
    x, w, i = [], [], start
    n = 0
    while n < seq + 1:
        x.append(ids[i % len(ids)])
        w.append(wts[i % len(ids)])
        n += len(x[-1])
        i += 1
    return np.concatenate(x)[: seq + 1], np.concatenate(w)[: seq + 1]


def batches(ids, wts, seq, batch, rng):
    while True:
        xs, ws = zip(*[pack(ids, wts, rng.randrange(len(ids)), seq) for _ in range(batch)])
        yield torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ws))


def loss_of(model, x, w, mtp_w=0.3, aux_w=0.1):
    """x [B, S+1] ids, w [B, S+1] weights of predicting each id (w[:, 0] unused)"""
    inp = x[:, :-1]
    rows = w[:, 1:] > 0
    mrows = w[:, 2:] > 0
    logits, ml = model(inp, rows=rows, mtp_rows=mrows)
    main = F.cross_entropy(logits, x[:, 1:][rows])
    mtp = F.cross_entropy(ml, x[:, 2:][mrows]) if ml is not None and mrows.any() else main * 0
    aux = [a.aux_loss for a in model.modules() if isinstance(a, M.Attention) and getattr(a, "aux_loss", None) is not None]
    for a in model.modules():
        if isinstance(a, M.Attention):
            a.aux_loss = None
    aux = torch.stack(aux).mean() if aux else main * 0
    return main + mtp_w * mtp + aux_w * aux, main, mtp, aux


@torch.no_grad()
def evaluate(model, ids, wts, seq, n_windows=40):
    """held-out loss (main and MTP) on the loss spans of the first n_windows packed windows, and how
    often the MTP head's top-1 equals the token after next (draft acceptance with greedy decoding)"""
    model.eval()
    tot = mt = acc = 0.0
    n = nm = 0
    i = 0
    for _ in range(n_windows):
        x, w = pack(ids, wts, i, seq)
        i += 3
        x, w = torch.from_numpy(x)[None], torch.from_numpy(w)[None]
        rows, mrows = w[:, 1:] > 0, w[:, 2:] > 0
        logits, ml = model(x[:, :-1], rows=rows, mtp_rows=mrows)
        tot += F.cross_entropy(logits, x[:, 1:][rows], reduction="sum").item()
        n += int(rows.sum())
        mt += F.cross_entropy(ml, x[:, 2:][mrows], reduction="sum").item()
        acc += (ml.argmax(-1) == x[:, 2:][mrows]).sum().item()
        nm += int(mrows.sum())
    model.train()
    return tot / max(n, 1), mt / max(nm, 1), acc / max(nm, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/tiny-artifacts")
    ap.add_argument("--tokenizer", default=None, help="default: DATA/tokenizer.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--qat", type=float, default=0.2, help="fraction of the steps run quantisation-aware")
    ap.add_argument("--minutes", type=float, default=0,
                    help="a time budget: the schedule (learning rate, quantisation-aware phase) follows the larger "
                         "of the step and time fractions, and the run stops (and exports) when either ends")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--smoke", action="store_true", help="a tiny model, random tokens, 4 steps")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    tok_path = a.tokenizer or os.path.join(a.data, "tokenizer.json")
    bos, eos = 0, 1
    if a.smoke:
        vocab = 300
        g = np.random.default_rng(a.seed)
        ids = [g.integers(0, vocab, int(g.integers(10, 40))) for _ in range(200)]
        wts = [np.ones(len(x), np.float32) for x in ids]
        v_ids, v_wts = ids[:20], wts[:20]
        ids, wts = ids[20:], wts[20:]
        a.steps, a.seq, a.batch, a.log_every, a.save_every, a.qat = 4, 48, 2, 1, 0, 0.5
    else:
        tj = json.load(open(tok_path, encoding="utf-8"))
        vocab = max([len(tj["model"]["vocab"])] + [t["id"] + 1 for t in tj.get("added_tokens", [])])
        for t in tj.get("added_tokens", []):
            if t["content"] == "<\uff5cbegin\u2581of\u2581sentence\uff5c>":
                bos = t["id"]
            if t["content"] == "<\uff5cend\u2581of\u2581sentence\uff5c>":
                eos = t["id"]
        ids, wts = load_samples(os.path.join(a.data, "corpus-train.jsonl"))
        v_ids, v_wts = load_samples(os.path.join(a.data, "corpus-heldout.jsonl"))
    print(f"train.py: {len(ids)} training samples ({sum(len(x) for x in ids)} tokens), {len(v_ids)} held out, "
          f"vocab {vocab}", flush=True)

    cfg = model_config(vocab, a.smoke, bos, eos)
    model = M.init_weights(M.Model(cfg), a.seed)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"train.py: {n_params / 1e6:.2f} M parameters", flush=True)
    for mo in model.modules():
        if isinstance(mo, M.MoE) and not mo.hash:
            mo.gate.bias.requires_grad_(False)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() == 2 and "hc_" not in n]
    other = [p for n, p in model.named_parameters() if p.requires_grad and not (p.dim() == 2 and "hc_" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    warm = max(1, min(30, a.steps // 10))

    def progress(s):
        """fraction of the run done: by steps, or by time when --minutes runs out first"""
        p = s / a.steps
        if a.minutes:
            p = max(p, (time.time() - t0) / (a.minutes * 60))
        return min(p, 1.0)

    def lr_at(s, p):
        if s < warm:
            return a.lr * (s + 1) / warm
        p0 = warm / a.steps
        t = min(1.0, max(0.0, (p - p0) / max(1e-9, 1 - p0)))
        return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    rng = random.Random(a.seed)
    it = batches(ids, wts, a.seq, a.batch, rng)
    t0 = time.time()
    ema = None
    qat_on = False
    for step in range(a.steps):
        p = progress(step)
        if p >= 1.0:
            print(f"train.py: stopping at step {step} (--minutes {a.minutes})", flush=True)
            break
        if not qat_on and a.qat > 0 and p >= 1 - a.qat:
            qat_on = True
            M.set_fake_quant(model, True)
            print(f"train.py: step {step}: quantisation-aware from here", flush=True)
        lr = lr_at(step, p)
        for gparam in opt.param_groups:
            gparam["lr"] = lr
        x, w = next(it)
        loss, main_l, mtp_l, aux_l = loss_of(model, x, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            # auxiliary-loss-free balancing of the learned routers
            for mo in model.modules():
                if isinstance(mo, M.MoE) and not mo.hash and hasattr(mo, "load"):
                    ld = mo.load.float()
                    mo.gate.bias += 1e-3 * torch.sign(ld.mean() - ld)
        ema = main_l.item() if ema is None else 0.95 * ema + 0.05 * main_l.item()
        if step % a.log_every == 0 or step == a.steps - 1:
            el = time.time() - t0
            print(f"step {step:5d}  loss {main_l.item():.3f} (ema {ema:.3f})  mtp {mtp_l.item():.3f}  "
                  f"indexer {aux_l.item():.3f}  lr {lr:.2e}  {el / (step + 1):.2f} s/step  "
                  f"{el / 60:.1f} min", flush=True)
        if a.save_every and step and step % a.save_every == 0:
            torch.save({"step": step, "model": model.state_dict(), "cfg": cfg}, os.path.join(a.out, "..",
                       f".{os.path.basename(a.out)}-state.pt"))
    M.set_fake_quant(model, False)
    model.eval()
    M.quantise_in_place(model)
    vl, vm, vacc = evaluate(model, v_ids, v_wts, a.seq, 4 if a.smoke else 40)
    print(f"train.py: held-out loss {vl:.3f} (perplexity {math.exp(vl):.2f}), MTP loss {vm:.3f} "
          f"(perplexity {math.exp(vm):.2f}), MTP top-1 {vacc:.3f}; {(time.time() - t0) / 60:.1f} min", flush=True)
    M.export(model, a.out)
    if not a.smoke and os.path.exists(tok_path):
        shutil.copy(tok_path, os.path.join(a.out, "tokenizer.json"))
    with open(os.path.join(a.out, "training.json"), "w") as f:
        json.dump({"seed": a.seed, "steps": a.steps, "seq": a.seq, "batch": a.batch, "lr": a.lr, "qat": a.qat,
                   "threads": a.threads, "train_samples": len(ids), "held_out_samples": len(v_ids),
                   "held_out_loss": vl, "held_out_mtp_loss": vm, "held_out_mtp_top1": vacc, "minutes": (time.time() - t0) / 60,
                   "parameters": n_params}, f, indent=1)
    print(f"train.py: exported {a.out}", flush=True)


if __name__ == "__main__":
    main()
