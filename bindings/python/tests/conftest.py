"""Fixtures of the dsv4 binding tests.

Environment (set by bindings/python/run-tests.sh and the meson test 'bindings-python'):
  DSV4_LIBRARY     the libdsv4.so just built (else pkg-config / the system loader)
  DSV4_SHARED_DIR  the shared test material (golden/, tokenizers/); default ../shared beside the tree
  DSV4_DEMO_MODEL  the demo model folder (bindings/demo-model.sh makes it)
"""
import ast
import os
import struct

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def shared_dir():
    d = os.environ.get("DSV4_SHARED_DIR") or os.path.join(ROOT, "..", "shared")
    return os.path.abspath(d)


def load_npy(path):
    """(shape, list of float) of a little-endian float32 .npy file (no numpy needed)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:6] == b"\x93NUMPY", path
    major = data[6]
    hlen = struct.unpack("<H", data[8:10])[0] if major == 1 else struct.unpack("<I", data[8:12])[0]
    start = 10 if major == 1 else 12
    header = ast.literal_eval(data[start:start + hlen].decode("latin1"))  # a dict literal, by the format
    assert header["descr"] == "<f4" and not header["fortran_order"], header
    shape = header["shape"]
    body = data[start + hlen:]
    n = 1
    for s in shape:
        n *= s
    import array
    a = array.array("f")
    a.frombytes(body[:4 * n])
    return shape, a


@pytest.fixture(scope="session")
def shared():
    d = shared_dir()
    if not os.path.exists(os.path.join(d, "golden", "index.json")):
        pytest.fail("shared test material not found at %s (set DSV4_SHARED_DIR)" % d)
    return d


@pytest.fixture(scope="session")
def golden_dir(shared):
    return os.path.join(shared, "golden", "tiny-a")


@pytest.fixture(scope="session")
def demo_dir():
    d = os.environ.get("DSV4_DEMO_MODEL") or os.path.join(ROOT, "models", "tiny")
    if not os.path.exists(os.path.join(d, "tokenizer.json")):
        pytest.fail("demo model not found at %s (bindings/demo-model.sh makes it; set DSV4_DEMO_MODEL)" % d)
    return d


@pytest.fixture(scope="session")
def v4_tokenizer_path(shared):
    return os.path.join(shared, "tokenizers", "deepseek-v4", "tokenizer.json")


def write_small_tokenizer(src, dst):
    """The tokenizer.json `src` cut to its first 1000 ids (and the added tokens), written to `dst`: a
    valid tokenizer that loads in milliseconds, for tests that load many."""
    import json
    with open(src, encoding="utf-8") as f:
        t = json.load(f)
    vocab = {k: i for k, i in t["model"]["vocab"].items() if i < 1000}

    def keep(m):
        parts = m.split(" ") if isinstance(m, str) else m
        return all(p in vocab for p in parts) and "".join(parts) in vocab

    t["model"]["vocab"] = vocab
    t["model"]["merges"] = [m for m in t["model"]["merges"] if keep(m)]
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(t, f, ensure_ascii=False)
    return dst


@pytest.fixture(scope="session")
def small_tokenizer_path(v4_tokenizer_path, tmp_path_factory):
    return write_small_tokenizer(v4_tokenizer_path, str(tmp_path_factory.mktemp("tok") / "tokenizer.json"))


@pytest.fixture(scope="session")
def demo(demo_dir):
    import dsv4
    m = dsv4.Model(demo_dir)
    yield m
    m.close()


@pytest.fixture(scope="session")
def demo_tok(demo):
    t = demo.tokenizer()
    yield t
    t.close()


@pytest.fixture()
def gen(demo, demo_tok):
    """A fresh generator on the demo model (one thread, 2048 tokens of context)."""
    import dsv4
    with demo.context(threads=1, context_length=2048) as ctx, ctx.session() as s, dsv4.Generator(s, demo_tok) as g:
        yield g
