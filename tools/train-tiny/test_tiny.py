"""tools/train-tiny/test_tiny.py — the training script's model against the official goldens and
against libdsv4 (meson test 'train-tiny', run by run-test.sh).

  1. model.py on the golden checkpoints (../shared/golden tiny-a, tiny-b, short sequences) equals the
     official reference's `noaq` logits (float activations, the checkpoint's FP8/FP4 weights) within
     1e-3: main and MTP, prefill and decode goldens;
  2. libdsv4 (float numerics, through the Python binding) on tiny-a equals model.py within 1e-3:
     main and MTP logits at every position, one prefill, chunked prefill and token-by-token decode;
  3. a freshly initialised model exported to the official format (FP8 e4m3 + E8M0, FP4 e2m1 experts):
     the model quantised in place equals the exported-and-reloaded checkpoint (and fake quantisation
     leaves quantised weights unchanged), and
     libdsv4 on the export equals model.py on it within 1e-3 (main and MTP, prefill and decode);
  4. train.py runs a few steps from a seed and exports a checkpoint libdsv4 loads;
  5. the committed demo model models/tiny-chat: at most 16 MiB, and libdsv4's logits equal model.py's
     within 1e-3 (main and MTP, prefill and decode) on a chat prompt and the model's own answer;
  6. the demo: greedy answers to questions like the training data's have the trained form, and a
     question with a tool (tool_choice required) gives a call the library parses.

Argument: the build dir (libdsv4.so). Environment: DSV4_SHARED_DIR. Prints "N passed, N failed".
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import model as M  # noqa: E402

torch.set_num_threads(2)
build = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(here, "..", "..", "build")
shared = os.environ.get("DSV4_SHARED_DIR", os.path.join(here, "..", "..", "..", "shared"))
os.environ.setdefault("DSV4_LIBRARY", os.path.join(build, "libdsv4.so"))
sys.path.insert(0, os.path.join(here, "..", "..", "bindings", "python"))
import dsv4  # noqa: E402

passed = failed = 0
TOL = 1e-3
# questions like those of the training data, and what the demo model's greedy answer holds
# (the committed model learnt the forms of the answers, not yet the facts: docs/tiny-model.md)
DEMO_QA = [("What is the capital of Peru?", "The capital of "), ("Who are you?", "tiny language model")]


def check(ok, msg):
    global passed, failed
    if ok:
        passed += 1
        print("ok   ", msg)
    else:
        failed += 1
        print("FAIL ", msg)


def maxdiff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max())


def py_logits(m, tokens):
    with torch.no_grad():
        lg, ml = m(torch.tensor(tokens)[None])
    return lg[0].numpy(), ml[0].numpy()


def lib_logits(ckpt, tokens, step):
    """libdsv4 float numerics: logits at every position and MTP logits for rows 0..n-2, feeding
    `step` tokens per call"""
    n = len(tokens)
    with dsv4.Model(ckpt) as model, model.context(numerics="float", context_length=n, threads=2,
                                                    max_batch=max(step, 1)) as ctx, ctx.session(mtp=True) as s:
        V = model.vocab_size
        lg = np.zeros((n, V), np.float32)
        ml = np.zeros((n - 1, V), np.float32)
        for p in range(0, n, step):
            k = min(step, n - p)
            s.eval(tokens[p: p + k], all_logits=True)
            for q in range(p, p + k):
                lg[q] = s.logits(q, numpy=True)
            for q in range(p - 1 if p else 0, p + k - 1):
                ml[q] = s.logits(q, numpy=True, mtp=True)
    return lg, ml


def compare_lib(name, ckpt, m, tokens, steps=(None, 7, 1)):
    pl, pm = py_logits(m, tokens)
    for step in steps:
        st = step or len(tokens)
        ll, lm = lib_logits(ckpt, tokens, st)
        what = "prefill" if step is None else ("decode" if step == 1 else f"chunks of {step}")
        d, dm = maxdiff(ll, pl), maxdiff(lm, pm)
        agree = bool((ll.argmax(-1) == pl.argmax(-1)).all())
        check(d <= TOL and dm <= TOL and agree,
              f"{name}: libdsv4 ({what}) vs model.py: max|d| {d:.2e}, MTP {dm:.2e}, argmax equal {agree}")


# ---- 1. the golden checkpoints ------------------------------------------------------------------
golden = os.path.join(shared, "golden")
if not os.path.exists(os.path.join(golden, "tiny-a", "ckpt", "config.json")):
    print(f"note: no golden checkpoints in {golden} (DSV4_SHARED_DIR): parts 1 and 2 not run")
for preset in ("tiny-a", "tiny-b") if os.path.exists(os.path.join(golden, "tiny-a", "ckpt", "config.json")) else ():
    ckpt = os.path.join(golden, preset, "ckpt")
    d = os.path.join(golden, preset, "short")
    m = M.load_model(ckpt)
    tokens = json.load(open(os.path.join(d, "tokens.json")))
    pl, pm = py_logits(m, tokens)
    for kind in ("prefill", "decode"):
        gl = np.load(os.path.join(d, "noaq", f"logits_f32_{kind}.npy"))
        gm = np.load(os.path.join(d, "noaq", f"mtp_logits_f32_{kind}.npy"))
        dl, dm = maxdiff(pl, gl), maxdiff(pm, gm)
        check(dl <= TOL and dm <= TOL, f"{preset} model.py vs official noaq {kind}: max|d| {dl:.2e}, MTP {dm:.2e}")
    if preset == "tiny-a":
        # ---- 2. libdsv4 on the same checkpoint ----------------------------------------------------
        compare_lib(preset, ckpt, m, tokens)

# ---- 3. a fresh model through the exporter ------------------------------------------------------
tmp = tempfile.mkdtemp(prefix="train-tiny-test-")
cfg = M.make_config(vocab=320, dim=128, n_layers=3, ratios=(0, 4, 8, 0), n_hash=1, n_heads=2, q_lora=128,
                    o_groups=2, o_lora=64, n_experts=4, topk=2, inter=128, ih=2, index_topk=3, window=16)
fresh = M.init_weights(M.Model(cfg), seed=7, test_spread=True)
ck = M.export(fresh, os.path.join(tmp, "fresh"))
back = M.load_model(ck)
rng = np.random.default_rng(3)
tokens = [int(t) for t in rng.integers(0, 320, 45)]
M.quantise_in_place(fresh)
fl, fm = py_logits(fresh, tokens)
bl, bm = py_logits(back, tokens)
d, dm = maxdiff(fl, bl), maxdiff(fm, bm)
check(d <= 1e-5 and dm <= 1e-5, f"export: the quantised model vs the exported checkpoint reloaded: max|d| {d:.2e}, "
      f"MTP {dm:.2e}")
M.set_fake_quant(fresh, True)
ql, qm = py_logits(fresh, tokens)
d, dm = maxdiff(ql, bl), maxdiff(qm, bm)
check(d <= 1e-5 and dm <= 1e-5, f"export: fake quantisation (training) on quantised weights is the identity: "
      f"max|d| {d:.2e}, MTP {dm:.2e}")
check(maxdiff(back.layers[0].ffn.gate.tid2eid.numpy(), fresh.layers[0].ffn.gate.tid2eid.numpy()) == 0,
      "export: the hash table survives the round trip")
compare_lib("export", ck, back, tokens)

# ---- 4. train.py for a few steps ----------------------------------------------------------------
if os.path.exists(os.path.join(here, "train.py")):
    out = os.path.join(tmp, "trained")
    r = subprocess.run([sys.executable, os.path.join(here, "train.py"), "--smoke", "--out", out],
                       capture_output=True, text=True, timeout=600)
    sys.stdout.write(r.stdout[-2000:])
    sys.stderr.write(r.stderr[-2000:])
    check(r.returncode == 0 and os.path.exists(os.path.join(out, "config.json")),
          f"train.py --smoke exits 0 and exports a checkpoint (status {r.returncode})")
    if r.returncode == 0:
        m = M.load_model(out)
        compare_lib("train.py --smoke", out, m, [int(t) for t in rng.integers(0, m.cfg.vocab, 20)], steps=(None, 1))

# ---- 5. the committed demo model ---------------------------------------------------------------
demo = os.path.join(here, "..", "..", "models", "tiny-chat")
if os.path.exists(os.path.join(demo, "config.json")):
    size = sum(os.path.getsize(os.path.join(demo, f)) for f in os.listdir(demo))
    check(size <= 16 * 1024 * 1024, f"models/tiny-chat: {size / 1e6:.2f} MB (<= 16 MiB)")
    m = M.load_model(demo)
    tok = dsv4.Tokenizer(os.path.join(demo, "tokenizer.json"))
    text = ("<\uff5cbegin\u2581of\u2581sentence\uff5c>You are a helpful assistant.<\uff5cUser\uff5c>"
            "What is the capital of Peru?<\uff5cAssistant\uff5c><think>")
    ids = tok.encode(text)
    # a prompt, then the model's own greedy continuation, so the decode runs where the model is sure
    with torch.no_grad():
        for _ in range(12):
            ids.append(int(m(torch.tensor(ids)[None], mtp=False)[0][0, -1].argmax()))
    compare_lib("models/tiny-chat", demo, m, ids, steps=(None, 1))
    # ---- 6. what the demo shows: answers through the generation API (greedy) ------------------
    tools = [{"type": "function", "function": {"name": "define_word",
              "description": "Look up the meaning of an English word.",
              "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}}}]
    with dsv4.Model(demo) as model, model.context(threads=2) as ctx, ctx.session() as s, \
            dsv4.Generator(s, model.tokenizer()) as gen:
        for q, want in DEMO_QA:
            r = gen.chat([{"role": "user", "content": q}], max_tokens=80, temperature=0, seed=1)
            msg = r["choices"][0]["message"]
            ans = msg.get("content") or ""
            print(f"      Q: {q}\n      reasoning: {msg.get('reasoning_content')!r}\n      A: {ans!r}")
            check(want in ans, f"demo: the answer to {q!r} holds {want!r}")
        r = gen.chat([{"role": "system", "content": "You are a helpful assistant."},
                      {"role": "user", "content": "What does dimly mean?"}], tools=tools, tool_choice="required",
                     max_tokens=80, temperature=0, seed=1)
        msg = r["choices"][0]["message"]
        calls = msg.get("tool_calls") or []
        print(f"      tool call: {calls!r} (finish {r['choices'][0]['finish_reason']})")
        ok = len(calls) >= 1 and calls[0]["function"]["name"] == "define_word" and \
            isinstance(json.loads(calls[0]["function"]["arguments"]), dict)
        check(ok, "demo: a question with a tool (tool_choice required) gives a parsed call of define_word")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
