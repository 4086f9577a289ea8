"""Tests of the dsv4 Python binding against the libdsv4 just built (see conftest.py)."""
import array
import gc
import itertools
import json
import os
import threading
import time

import pytest

import dsv4
from conftest import ROOT, load_npy

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"]}}},
    {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}, "required": ["x", "y"]}}},
]
HELLO = [{"role": "user", "content": "Hello!"}]


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------
def test_version_and_abi():
    assert dsv4.version() == "0.1.0"
    assert dsv4._L.dsv4_abi_version() == dsv4.ABI_VERSION
    if os.environ.get("DSV4_LIBRARY"):
        assert os.path.samefile(dsv4.LIBRARY_PATH, os.environ["DSV4_LIBRARY"])


def test_incompatible_library_refused(monkeypatch):
    """A library with another ABI major is refused with a message naming both versions."""
    from dsv4 import _lib
    real = _lib.ctypes.CDLL

    class Fake:
        def __init__(self, path):
            self._real = real(path)
            self.dsv4_abi_version = lambda: 7
            self.dsv4_version_number = lambda: 70000
            self.dsv4_version_string = lambda: b"7.0.0"

    monkeypatch.setattr(_lib.ctypes, "CDLL", Fake)
    with pytest.raises(dsv4.LoadError) as e:
        _lib.load()
    msg = str(e.value)
    assert "ABI version 7" in msg and "needs ABI version 0" in msg and "7.0.0" in msg


def test_library_not_found(monkeypatch):
    from dsv4 import _lib
    monkeypatch.setenv("DSV4_LIBRARY", "/nonexistent/libdsv4.so")
    with pytest.raises(dsv4.LoadError) as e:
        _lib.load()
    assert "DSV4_LIBRARY" in str(e.value) and "/nonexistent/libdsv4.so" in str(e.value)


def test_pkg_config_lookup(monkeypatch):
    """Without DSV4_LIBRARY the library is found through pkg-config (the uninstalled .pc of the build)."""
    from dsv4 import _lib
    if not os.environ.get("PKG_CONFIG_PATH"):
        pytest.skip("PKG_CONFIG_PATH not set")
    monkeypatch.delenv("DSV4_LIBRARY", raising=False)
    cands, explicit = _lib._candidates()
    assert not explicit and cands[0][0] == "pkg-config"
    lib, path = _lib.load()
    assert lib.dsv4_abi_version() == 0 and os.path.exists(path)


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------
def test_load_demo_and_golden(demo, golden_dir):
    assert demo.vocab_size == 129280
    assert demo.info()["weights_loaded"] in (1, True)
    with dsv4.Model(os.path.join(golden_dir, "ckpt"), resident=False, load_mtp=True) as g:
        assert g.get("vocab_size") == 512
        assert g.get("n_layers") == 4
    info = dsv4.model_info(os.path.join(golden_dir, "ckpt"))
    assert info["vocab_size"] == 512


def test_progress_callback_can_stop_load(golden_dir):
    seen = []
    dsv4.Model(os.path.join(golden_dir, "ckpt"), progress=seen.append).close()
    assert seen and seen[-1] == pytest.approx(1.0)
    with pytest.raises(dsv4.Aborted):
        dsv4.Model(os.path.join(golden_dir, "ckpt"), progress=lambda f: False)

    class Boom(Exception):
        pass

    def boom(f):
        raise Boom()

    with pytest.raises(Boom):  # an exception in the callback stops the load and comes back
        dsv4.Model(os.path.join(golden_dir, "ckpt"), progress=boom)


# ----------------------------------------------------------------------------------------------
# tokenizer
# ----------------------------------------------------------------------------------------------
def _golden_ids(shared):
    with open(os.path.join(shared, "tokenizers", "deepseek-v4", "golden-ids.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.parametrize("which", ["shared-v4", "demo"])
def test_tokenizer_golden_round_trip(shared, which, v4_tokenizer_path, demo_tok):
    tok = dsv4.Tokenizer(v4_tokenizer_path) if which == "shared-v4" else demo_tok
    cases = _golden_ids(shared)
    assert len(cases) > 200
    bad = [c["text"] for c in cases if tok.encode(c["text"]) != c["ids"]]
    assert not bad, "%d/%d texts encode differently, first: %r" % (len(bad), len(cases), bad[:1])
    bad = [c["text"] for c in cases if tok.decode(c["ids"]) != c["text"]]
    assert not bad, "%d/%d id lists decode differently, first: %r" % (len(bad), len(cases), bad[:1])
    assert tok.vocab_size == 129280


def test_tokenizer_details(demo_tok):
    t = demo_tok
    eos = t.special_id("eos")
    assert eos is not None and t.is_special(eos)
    assert t.token_to_piece(eos) == "<｜end▁of▁sentence｜>".encode()
    assert t.piece_to_token("<think>") == t.special_id("think_begin")
    assert t.encode("<think>", special=False) != [t.special_id("think_begin")]
    assert t.encode("hi", add_bos=True)[0] == t.special_id("bos")
    # streaming detokenizer: pieces concatenate to the text, never cutting a character
    text = "你好，世界！ Καλημέρα 🌍 done"
    with t.detokenizer() as d:
        out = "".join(d.feed(i) for i in t.encode(text)) + d.flush()
    assert out == text
    with pytest.raises(dsv4.InvalidArgument):
        t.decode([10 ** 9])
    with pytest.raises(dsv4.InvalidArgument) as e:
        t.encode(b"\xff\xfe bad utf-8")
    assert "byte" in e.value.message or "UTF-8" in e.value.message


# ----------------------------------------------------------------------------------------------
# logits
# ----------------------------------------------------------------------------------------------
def test_golden_logits_within_1e5(golden_dir):
    with open(os.path.join(golden_dir, "short", "tokens.json")) as f:
        toks = json.load(f)
    shape, gl = load_npy(os.path.join(golden_dir, "short", "noaq", "logits_f32_prefill.npy"))
    n, V = shape
    assert n == len(toks)
    with dsv4.Model(os.path.join(golden_dir, "ckpt")) as m, m.context(numerics="float", threads=1) as c, \
            c.session() as s:
        s.eval(toks, all_logits=True)
        assert s.position == n
        worst = 0.0
        for p in range(n):
            row = s.logits(p)
            assert isinstance(row, array.array) and len(row) == V
            worst = max(worst, max(abs(row[v] - gl[p * V + v]) for v in range(V)))
        assert worst <= 1e-5, "max |logit - golden| = %g" % worst
        # into a caller buffer (memoryview of a bytearray), and numpy when present
        buf = bytearray(4 * V)
        s.logits_into(buf, pos=n - 1)
        assert memoryview(buf).cast("f").tolist() == s.logits().tolist()
        with pytest.raises(dsv4.BufferTooSmall):
            s.logits_into(bytearray(4 * (V - 1)))
        with pytest.raises(dsv4.NotAvailable):
            s.logits(pos=n + 5)
        try:
            import numpy as np
        except ImportError:
            np = None
        if np is not None:
            a = s.logits(numpy=True)
            assert a.dtype == np.float32 and a.tolist() == s.logits().tolist()
        # decode token by token gives the same figures
        s.reset()
        assert s.position == 0
        worst = 0.0
        for p, t in enumerate(toks):
            s.eval([t])
            row = s.logits()
            worst = max(worst, max(abs(row[v] - gl[p * V + v]) for v in range(V)))
        assert worst <= 1e-5


# ----------------------------------------------------------------------------------------------
# chat
# ----------------------------------------------------------------------------------------------
def test_streamed_chat_concatenates_to_response(gen):
    kinds = {}
    events = list(gen.chat(HELLO, stream=True, max_tokens=48, seed=3, thinking_budget=12))
    assert events[-1].kind == "stop" and events[-1].finish_reason in ("stop", "length")
    assert sum(e.kind == "stop" for e in events) == 1
    for e in events:
        kinds.setdefault(e.kind, []).append(e.text)
    resp = gen.response()
    msg = resp["choices"][0]["message"]
    assert "".join(kinds.get("content", [])) == msg["content"]
    assert "".join(kinds.get("reasoning", [])) == msg.get("reasoning_content", "")
    assert kinds.get("reasoning"), "thinking mode reasons first"
    assert resp["choices"][0]["finish_reason"] == events[-1].finish_reason
    assert resp["usage"]["completion_tokens"] == gen.n_tokens == gen.usage()["completion_tokens"]
    # the same request without streaming gives the same response body
    again = gen.chat(HELLO, max_tokens=48, seed=3, thinking_budget=12)
    assert again["choices"] == resp["choices"]
    # and as OpenAI chunks
    gen.start_request({"messages": HELLO, "max_tokens": 48, "seed": 3, "thinking_budget": 12})
    chunks = list(gen.chunks())
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert text == msg["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == resp["choices"][0]["finish_reason"]


def test_chat_request_json_and_builder(gen, demo_tok):
    req = {"messages": [{"role": "system", "content": "Be brief."}] + HELLO, "max_tokens": 8, "seed": 1,
           "thinking": {"type": "disabled"}}
    r1 = gen.chat(request=json.dumps(req))
    r2 = gen.chat(request=req)
    assert r1["choices"] == r2["choices"]
    assert "reasoning_content" not in r1["choices"][0]["message"] or not r1["choices"][0]["message"]["reasoning_content"]
    with dsv4.ChatBuilder(req["messages"], thinking=False) as cb:
        text = cb.render()
        assert text == dsv4.render_chat(req)
        ids = cb.render_ids(demo_tok)
    assert ids == demo_tok.encode(text)
    # the generator started from ids gives the same answer as from the request
    gen.set(max_tokens=8, thinking=0)
    gen.sampler.set(seed=1)
    gen.start(ids)
    content = "".join(e.text for e in gen.events() if e.kind == "content")
    assert content == r1["choices"][0]["message"]["content"]


def test_json_mode_parses(gen):
    for seed in range(4):
        resp = gen.chat(HELLO, max_tokens=10 + 9 * seed, seed=seed, response_format={"type": "json_object"},
                        thinking={"type": "disabled"})
        obj = json.loads(resp["choices"][0]["message"]["content"])
        assert isinstance(obj, dict)
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    resp = gen.chat(HELLO, max_tokens=60, seed=5, thinking={"type": "disabled"},
                    response_format={"type": "json_schema", "json_schema": {"schema": schema}})
    obj = json.loads(resp["choices"][0]["message"]["content"])
    assert set(obj) == {"name", "age"} and isinstance(obj["age"], int)


def test_tool_call_parses(gen):
    for seed in range(3):
        events = list(gen.chat([{"role": "user", "content": "Weather in Paris?"}], stream=True, tools=TOOLS,
                               tool_choice="required", seed=seed, max_tokens=80, thinking={"type": "disabled"}))
        resp = gen.response()
        calls = resp["choices"][0]["message"]["tool_calls"]
        assert calls, resp
        for i, call in enumerate(calls):
            args = json.loads(call["function"]["arguments"])
            assert call["function"]["name"] in ("get_weather", "add") and isinstance(args, dict)
            # the tool-call deltas of the stream rebuild the call
            name = [e.text for e in events if e.kind == "tool_call_start" and e.index == i]
            pieces = "".join(e.text for e in events if e.kind == "tool_call_args" and e.index == i)
            assert name == [call["function"]["name"]]
            assert json.loads(pieces) == args
            assert any(e.kind == "tool_call_end" and e.index == i for e in events)
        assert events[-1].finish_reason in ("tool_calls", "length")


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------
def test_errors_keep_the_library_message(demo, gen, tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(dsv4.Error) as e:
        dsv4.Model(missing)
    assert isinstance(e.value, dsv4.IOFailure) and e.value.status == 3
    assert "no-such-model" in e.value.message
    # bad requests: not JSON, an unknown field, a wrong type (the message names the field)
    with pytest.raises(dsv4.BadFormat):
        gen.start_request(b"{not json")
    with pytest.raises(dsv4.InvalidArgument) as e:
        gen.chat(HELLO, max_tokenz=3)
    assert "max_tokenz" in e.value.message and "max_tokenz" in str(e.value)
    with pytest.raises(dsv4.InvalidArgument) as e:
        gen.chat(HELLO, temperature="hot")
    assert "temperature" in e.value.message
    with pytest.raises(dsv4.InvalidArgument) as e:
        gen.chat([{"role": "wizard", "content": "x"}])
    assert "wizard" in e.value.message or "role" in e.value.message
    # wrong options
    with pytest.raises(dsv4.InvalidArgument) as e:
        demo.context(context_length=0)
    assert "context_length" in e.value.message
    with pytest.raises(dsv4.InvalidArgument) as e:
        demo.context(context_length=10 ** 9)
    assert e.value.message
    with pytest.raises(dsv4.InvalidArgument) as e:
        gen.sampler.set(temperature=-1.0)
    assert "temperature" in e.value.message
    with pytest.raises(dsv4.UnknownOption):
        gen.sampler.set(warmth=1.0)
    with pytest.raises(dsv4.InvalidArgument):
        gen.set(max_tokens=0)
    # a session error keeps the session's message
    with demo.context(threads=1, context_length=8) as c, c.session() as s:
        with pytest.raises(dsv4.ContextFull) as e:
            s.eval(list(range(1, 10)))
        assert e.value.message == s.last_error and e.value.message
        with pytest.raises(dsv4.InvalidArgument):
            s.eval([])
        with pytest.raises(dsv4.InvalidArgument):
            s.eval([-1])
    with pytest.raises(dsv4.Error):
        dsv4.Tokenizer(str(tmp_path / "missing.json"))
    # a closed object says so instead of crashing
    t = dsv4.Tokenizer  # noqa
    c = demo.context(threads=1, context_length=16)
    c.close()
    with pytest.raises(ValueError):
        c.session()


# ----------------------------------------------------------------------------------------------
# lifetimes
# ----------------------------------------------------------------------------------------------
def _make_all(golden_ckpt, tok_path):
    m = dsv4.Model(golden_ckpt)
    t = dsv4.Tokenizer(tok_path)
    c = m.context(threads=1, context_length=64)
    s = c.session()
    g = dsv4.Generator(s, t)
    return {"model": m, "tokenizer": t, "context": c, "session": s, "generator": g}


def test_close_in_every_order(golden_dir, small_tokenizer_path):
    ckpt = os.path.join(golden_dir, "ckpt")
    names = ["model", "tokenizer", "context", "session", "generator"]
    for order in itertools.permutations(names):
        objs = _make_all(ckpt, small_tokenizer_path)
        for name in order:
            objs[name].close()
            assert objs[name].closed
            objs[name].close()  # twice is harmless
    # a closed model's context still makes sessions, and they work
    with dsv4.Model(ckpt) as m:
        c = m.context(threads=1, context_length=16)
    with c, c.session() as s:
        s.eval([1, 2, 3])
        assert len(s.logits()) == 512
    # children outlive closed parents and still work
    objs = _make_all(ckpt, small_tokenizer_path)
    for name in ("model", "tokenizer", "context", "session"):
        objs[name].close()
    g = objs["generator"]
    g.set(max_tokens=5)
    g.start([0, 100, 200])
    evs = list(g.events())
    assert evs[-1].kind == "stop" and g.n_tokens == 5
    g.close()


def test_garbage_collected_in_any_order(golden_dir, small_tokenizer_path):
    ckpt = os.path.join(golden_dir, "ckpt")
    for order in itertools.islice(itertools.permutations(range(5)), 0, 120, 7):
        objs = list(_make_all(ckpt, small_tokenizer_path).values())
        objs[4].set(max_tokens=2)
        objs[4].start([0, 1, 2])
        for i in order:
            objs[i] = None
            gc.collect()
    gc.collect()


# ----------------------------------------------------------------------------------------------
# threads
# ----------------------------------------------------------------------------------------------
def _ban_eos(gen):
    eos = gen.tokenizer.special_id("eos")
    gen.sampler.logit_bias(eos, float("-inf"))


def test_cancel_from_another_thread(gen):
    started = threading.Event()
    done = threading.Event()

    class Stage:  # runs on the generating thread; tells the other thread generation is under way
        def apply(self, logits):
            started.set()

    gen.sampler.set_stage(Stage())

    def canceller():
        started.wait(30)
        time.sleep(0.05)
        gen.cancel()
        done.set()

    th = threading.Thread(target=canceller)
    th.start()
    gen.set(max_tokens=2000, thinking=0)
    gen.start(gen.tokenizer.encode("<｜begin▁of▁sentence｜><｜User｜>Count.<｜Assistant｜></think>"))
    _ban_eos(gen)
    events = list(gen.events())
    th.join(30)
    assert done.is_set()
    assert events[-1].finish_reason == "cancelled", events[-1]
    assert gen.n_tokens < 2000
    # the next start clears the cancellation
    gen.set(max_tokens=3)
    gen.start([0, 5, 6])
    assert list(gen.events())[-1].finish_reason in ("length", "stop")


def test_cancel_closed_generator_is_harmless(gen):
    gen.close()
    gen.cancel()


def test_two_sessions_in_two_threads(demo, demo_tok):
    def run(out, i):
        with demo.context(threads=1, context_length=512) as c, c.session() as s, dsv4.Generator(s, demo_tok) as g:
            r = g.chat(HELLO, max_tokens=24, seed=11, temperature=0.8)
            out[i] = r["choices"][0]["message"]
    seq, par = {}, {}
    run(seq, 0)
    ths = [threading.Thread(target=run, args=(par, i)) for i in range(2)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(120)
    assert par[0] == seq[0] and par[1] == seq[0]


def test_shared_context_calls_take_turns(demo, demo_tok):
    """Two sessions of one context used from two threads: the binding serialises them (no crash, the
    same answers as one after the other)."""
    with demo.context(threads=1, context_length=512) as c:
        out = {}

        def run(i):
            with c.session() as s, dsv4.Generator(s, demo_tok) as g:
                out[i] = g.chat(HELLO, max_tokens=12, seed=2)["choices"][0]["message"]

        ths = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(120)
        assert out[0] == out[1]


def test_gil_released_during_long_calls(demo):
    count = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1

    th = threading.Thread(target=spin)
    th.start()
    try:
        with demo.context(threads=1, context_length=1024) as c, c.session() as s:
            ids = list(range(1000, 1600))
            t0 = time.perf_counter()
            before = count[0]
            s.eval(ids)
            after = count[0]
            dt = time.perf_counter() - t0
    finally:
        stop.set()
        th.join()
    # with the GIL held for the whole call the other thread could not have counted at all
    assert dt > 0.02 and after - before > 1000, (dt, after - before)


# ----------------------------------------------------------------------------------------------
# sampler stage
# ----------------------------------------------------------------------------------------------
def test_python_sampler_stage(gen):
    allowed = [gen.tokenizer.encode(w)[0] for w in (" yes", " no", " maybe")]
    calls = {"apply": 0, "accept": [], "release": 0}

    class Stage:
        def apply(self, logits):
            calls["apply"] += 1
            keep = {i: logits[i] for i in allowed}
            for i in range(len(logits)):
                logits[i] = float("-inf")
            for i, v in keep.items():
                logits[i] = v

        def accept(self, token):
            calls["accept"].append(token)

        def release(self):
            calls["release"] += 1

    gen.sampler.set_stage(Stage())
    gen.set(max_tokens=6, thinking=0)
    gen.start(gen.tokenizer.encode("<｜begin▁of▁sentence｜><｜User｜>?<｜Assistant｜></think>"))
    list(gen.events())
    assert calls["apply"] == 6 and len(calls["accept"]) == 6
    assert set(calls["accept"]) <= set(allowed)
    # replacing the stage releases the old one; a plain callable works too
    seen = []
    gen.sampler.set_stage(lambda logits: seen.append(len(logits)))
    assert calls["release"] == 1
    gen.start([0, 1, 2])
    list(gen.events())
    assert seen and seen[0] == 129280
    # an exception in the stage stops the generation and is re-raised
    class Boom(Exception):
        pass

    def boom(logits):
        raise Boom("from the stage")

    gen.sampler.set_stage(boom)
    gen.start([0, 1, 2])
    with pytest.raises(Boom):
        list(gen.events())
    assert gen.finish_reason == "error"
    # select(probs) chooses the token instead of the seeded draw
    chosen = allowed[1]

    class Picker:
        def apply(self, logits):
            pass

        def select(self, probs):
            assert len(probs) == 129280 and abs(sum(probs) - 1.0) < 1e-3
            return chosen

    gen.sampler.set_stage(Picker())
    gen.set(max_tokens=4, thinking=0)
    gen.start(gen.tokenizer.encode("<｜begin▁of▁sentence｜><｜User｜>?<｜Assistant｜></think>"))
    text = "".join(e.text for e in gen.events() if e.kind == "content")
    assert gen.n_tokens == 4 and text == gen.tokenizer.decode([chosen] * 4)
    # closing the generator releases the stage
    calls2 = {"release": 0}

    class S2:
        def apply(self, logits):
            pass

        def release(self):
            calls2["release"] += 1

    gen.sampler.set_stage(S2())
    gen.close()
    assert calls2["release"] == 1
    assert not [k for k in dsv4._registry if not isinstance(k, tuple) and isinstance(dsv4._registry[k], dsv4._Stage)]


def test_sampler_settings_roundtrip(gen):
    gen.sampler.set(temperature=0.5, top_k=40, top_p=0.9, seed=42)
    assert gen.sampler.get("temperature") == 0.5
    assert gen.sampler.get("top_k") == 40
    assert gen.sampler.get("seed") == 42


def test_readme_example_runs_as_written(demo_dir, tmp_path):
    """The streaming example of README.md, run as written in a folder holding the committed demo model models/tiny-chat."""
    import re
    import subprocess
    import sys
    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")
    with open(readme, encoding="utf-8") as f:
        code = re.search(r"```python\n(.*?)```", f.read(), re.S).group(1)
    assert len([ln for ln in code.splitlines() if ln.strip()]) <= 10
    (tmp_path / "models").mkdir()
    os.symlink(os.path.join(ROOT, "models", "tiny-chat"), str(tmp_path / "models" / "tiny-chat"))
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    r = subprocess.run([sys.executable, "example.py"], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "[finish: length]" in r.stdout or "[finish: stop]" in r.stdout
    assert len(r.stdout) > 40
