"""dsv4 — Python binding of libdsv4 (DeepSeek-V4 on the CPU), pure Python over ctypes.

    import dsv4
    with dsv4.Model("models/tiny-chat") as model, model.context() as ctx, ctx.session() as s, \\
            dsv4.Generator(s, model.tokenizer()) as gen:
        for ev in gen.chat([{"role": "user", "content": "Hello"}], stream=True, max_tokens=32):
            print(ev.text, end="")

Objects: Model, Context, Session, Tokenizer (and Detokenizer), ChatBuilder, Generator (and its
Sampler). Each has close() and is a context manager; a finalizer frees it when it is garbage
collected. The library counts references (a session keeps its context and model alive, a generator
its session and tokenizer), so objects may be closed or collected in any order.

Threads: ctypes releases the GIL around every library call, so other Python threads run during
model loads, evaluation and generation. A context and everything created on it (sessions,
generators) is one thread at a time in the library (docs/THREADS.md); this binding serialises the
calls on one context with a lock, so sharing those objects between threads is safe (they take
turns); for parallel work give each thread its own context. Generator.cancel() may be called from
any thread at any time. Models and tokenizers may be used from any number of threads.

Errors: every failed status raises a dsv4.Error subclass carrying the status and the library's
message.
"""
import array
import itertools
import json as _json
import os
import sys
import threading
import weakref
from ctypes import (POINTER, byref, c_char, c_double, c_float, c_int32, c_int64, c_size_t, c_void_p, cast,
                    sizeof, string_at)

from . import _lib
from ._lib import ABI_VERSION, LoadError

try:  # numpy is optional: used only when asked for
    import numpy as _np
except ImportError:  # pragma: no cover
    _np = None

_L, LIBRARY_PATH = _lib.load()

__all__ = ["Model", "Context", "Session", "Tokenizer", "Detokenizer", "ChatBuilder", "Generator", "Sampler",
           "Event", "Error", "LoadError", "model_info", "render_chat", "version", "ABI_VERSION", "LIBRARY_PATH"]

# ---------------------------------------------------------------------------------------------
# constants (values copied from the headers; append-only there)
# ---------------------------------------------------------------------------------------------
OK = 0
STATUS_NAMES = {0: "OK", 1: "INVALID_ARGUMENT", 2: "OUT_OF_MEMORY", 3: "IO", 4: "BAD_FORMAT", 5: "BAD_CONFIG",
                6: "UNSUPPORTED", 7: "MISSING_TENSOR", 8: "TENSOR_MISMATCH", 9: "CONTEXT_FULL", 10: "ABORTED",
                11: "BUFFER_TOO_SMALL", 12: "UNKNOWN_OPTION", 13: "NOT_AVAILABLE", 14: "INTERNAL"}

OPT_LOAD_MTP, OPT_PREFETCH, OPT_RESIDENT = 1, 2, 3
OPT_THREADS, OPT_CONTEXT_LENGTH, OPT_NUMERICS, OPT_REVISION, OPT_MAX_BATCH, OPT_WORKER_SPIN = 100, 101, 102, 103, 104, 105
OPT_MTP = 200
NUMERICS_DEFAULT, NUMERICS_REFERENCE, NUMERICS_FLOAT = 0, 1, 2
REVISION_DEFAULT, REVISION_CURRENT, REVISION_INITIAL = 0, 1, 2
LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG = 1, 2, 3, 4
EVAL_ALL_LOGITS = 1
ENCODE_ADD_BOS, ENCODE_NO_SPECIAL = 1, 2

SPECIAL_TOKENS = {"bos": 0, "eos": 1, "pad": 2, "user": 3, "assistant": 4, "think_begin": 5, "think_end": 6,
                  "dsml": 7, "dsml_open": 8, "dsml_close": 9, "fim_begin": 10, "fim_hole": 11, "fim_end": 12,
                  "latest_reminder": 13, "eot": 14}
INFO_KEYS = {"variant": 1, "vocab_size": 2, "hidden_size": 3, "n_layers": 4, "n_mtp_layers": 5, "n_heads": 6,
             "head_dim": 7, "n_routed_experts": 8, "n_active_experts": 9, "moe_inter_size": 10, "window": 11,
             "index_topk": 12, "n_swa_layers": 13, "n_csa_layers": 14, "n_hca_layers": 15, "max_position": 16,
             "params_total": 17, "params_active": 18, "bytes_total": 19, "has_mtp": 28, "weights_loaded": 29}

SAMPLER_PARAMS = {"temperature": (1, float), "top_k": (2, int), "top_p": (3, float), "min_p": (4, float),
                  "repetition_penalty": (5, float), "frequency_penalty": (6, float), "presence_penalty": (7, float),
                  "penalty_last_n": (8, int), "seed": (9, int)}
GEN_PARAMS = {"max_tokens": 1, "reasoning_effort": 2, "reasoning_budget": 3, "thinking": 4, "response_format": 5,
              "tool_choice": 6, "logprobs": 7, "top_logprobs": 8, "reuse_prefix": 9}
CHAT_THINKING, CHAT_REASONING_EFFORT, CHAT_DROP_THINKING, CHAT_PREFIX = 1, 2, 3, 4
CHAT_TOOLS, CHAT_RESPONSE_FORMAT = 100, 101
EFFORTS = {"default": 0, "none": 1, "low": 2, "medium": 3, "high": 4, "max": 5}

EVENT_KINDS = {1: "reasoning", 2: "content", 3: "tool_call_start", 4: "tool_call_args", 5: "tool_call_end",
               6: "stop"}
FINISH_REASONS = {0: None, 1: "stop", 2: "length", 3: "tool_calls", 4: "error", 5: "cancelled"}
USAGE_KEYS = {"prompt_tokens": 1, "cached_tokens": 2, "completion_tokens": 3, "reasoning_tokens": 4,
              "prompt_ns": 5, "decode_ns": 6}


def version():
    """Release string of the loaded library ("0.1.0")."""
    return _L.dsv4_version_string().decode()


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
class Error(Exception):
    """A libdsv4 call failed: .status (int), .status_name, .message (the library's message)."""

    def __init__(self, status, message=""):
        self.status = status
        self.status_name = STATUS_NAMES.get(status, "UNKNOWN")
        self.status_text = _L.dsv4_status_string(status).decode()
        self.message = message or ""
        super().__init__("%s: %s" % (self.status_text, self.message) if self.message else self.status_text)


class InvalidArgument(Error, ValueError): pass
class OutOfMemory(Error, MemoryError): pass
class IOFailure(Error): pass
class BadFormat(Error, ValueError): pass
class BadConfig(Error, ValueError): pass
class Unsupported(Error): pass
class MissingTensor(Error): pass
class TensorMismatch(Error): pass
class ContextFull(Error): pass
class Aborted(Error): pass
class BufferTooSmall(Error): pass
class UnknownOption(Error): pass
class NotAvailable(Error): pass
class Internal(Error): pass


_ERRORS = {1: InvalidArgument, 2: OutOfMemory, 3: IOFailure, 4: BadFormat, 5: BadConfig, 6: Unsupported,
           7: MissingTensor, 8: TensorMismatch, 9: ContextFull, 10: Aborted, 11: BufferTooSmall, 12: UnknownOption,
           13: NotAvailable, 14: Internal}


def _error(status, message=""):
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return _ERRORS.get(status, Error)(status, message)


def _check(status, message=""):
    if status != OK:
        if callable(message):
            message = message()
        raise _error(status, message)


def _take_string(p):
    """Copy a library string returned through char ** and free it."""
    if not p.value:
        return None
    try:
        return string_at(p.value)
    finally:
        _L.dsv4_free(p)


def _errmsg(p):
    s = _take_string(p)
    return s.decode("utf-8", "replace") if s else ""


def _b(s):
    if s is None:
        return None
    if isinstance(s, (bytes, bytearray)):
        return bytes(s)
    return str(s).encode("utf-8")


# ---------------------------------------------------------------------------------------------
# callbacks: module-level trampolines (never freed) dispatching on an integer id given as `user`
# ---------------------------------------------------------------------------------------------
_registry = {}
_registry_lock = threading.Lock()
_next_id = itertools.count(1)


def _register(obj):
    with _registry_lock:
        key = next(_next_id)
        _registry[key] = obj
    return key


def _unregister(key):
    with _registry_lock:
        return _registry.pop(key, None)


def _lookup(user):
    return _registry.get(user or 0)


@_lib.LOG_FN
def _log_tramp(user, level, msg, n):
    fn = _lookup(user)
    if fn is not None:
        try:
            fn(level, string_at(msg, n).decode("utf-8", "replace"))
        except Exception:  # a log callback cannot fail the library call
            pass


@_lib.PROGRESS_FN
def _progress_tramp(user, fraction):
    fn = _lookup(user)
    if fn is None:
        return 0
    try:
        return 1 if fn(fraction) is False else 0
    except BaseException as e:  # stop the load and re-raise after it
        _stash_exception(user, e)
        return 1


def _stash_exception(user, e):
    st = _registry.get(("exc", user))
    if st is None:
        with _registry_lock:
            _registry[("exc", user)] = e


def _pop_exception(user):
    with _registry_lock:
        return _registry.pop(("exc", user), None)


# ---------------------------------------------------------------------------------------------
# object base: handle, finalizer, per-context serialisation domain
# ---------------------------------------------------------------------------------------------
class _Domain:
    """Serialises the calls on one context and its sessions/generators (one thread at a time in the
    library). Finalizers that run while another call is in flight (another thread, or the garbage
    collector inside a callback) queue their free for the end of that call."""

    def __init__(self):
        self.lock = threading.RLock()
        self.busy = 0
        self.pending = []

    def __enter__(self):
        self.lock.acquire()
        self.busy += 1
        return self

    def __exit__(self, *exc):
        self.busy -= 1
        try:
            if self.busy == 0:
                self._drain()
        finally:
            self.lock.release()

    def _drain(self):
        while self.pending:
            fn, ptr = self.pending.pop()
            fn(ptr)

    def free(self, fn, ptr):
        if self.lock.acquire(blocking=False):
            try:
                if self.busy == 0:
                    fn(ptr)
                    self._drain()
                    return
            finally:
                self.lock.release()
        self.pending.append((fn, ptr))  # list.append is atomic under the GIL


class _NoDomain:
    """For thread-safe objects (model, tokenizer) and standalone ones used as the caller wishes."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    @staticmethod
    def free(fn, ptr):
        fn(ptr)


_NODOMAIN = _NoDomain()


def _finalize(domain, fn, ptr, extra):
    domain.free(fn, ptr)
    for key in extra:
        _unregister(key)


class _Handle:
    _free_fn = None

    def _own(self, ptr, domain=_NODOMAIN, keys=()):
        self._ptr = ptr
        self._domain = domain
        self._fin = weakref.finalize(self, _finalize, domain, self._free_fn, c_void_p(ptr), list(keys))

    @property
    def _p(self):
        p = getattr(self, "_ptr", None)
        if not p:
            raise ValueError("%s is closed" % type(self).__name__)
        return p

    @property
    def closed(self):
        return not getattr(self, "_ptr", None)

    def close(self):
        """Release this object's reference now (objects created from it stay usable)."""
        fin = getattr(self, "_fin", None)
        if fin is not None:
            with self._domain:
                self._ptr = None
                fin()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<dsv4.%s %s>" % (type(self).__name__, "closed" if self.closed else hex(self._ptr))


class _Options:
    """A dsv4_options bag for one constructor call."""

    def __init__(self):
        p = c_void_p()
        _check(_L.dsv4_options_create(byref(p)))
        self.p = p
        self.keys = []

    def set(self, key, value, name=None):
        if value is None:
            return
        if isinstance(value, bool):
            value = int(value)
        st = _L.dsv4_options_set_i64(self.p, key, int(value))
        _check(st, lambda: "option %s=%r" % (name or key, value))

    def callbacks(self, log=None, log_level=LOG_INFO, progress=None):
        if log is not None:
            k = _register(log)
            self.keys.append(k)
            _check(_L.dsv4_options_set_log(self.p, _log_tramp, c_void_p(k), int(log_level)), "log level")
        if progress is not None:
            k = _register(progress)
            self.keys.append(k)
            _check(_L.dsv4_options_set_progress(self.p, _progress_tramp, c_void_p(k)))

    def free(self):
        _L.dsv4_options_free(self.p)
        self.p = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()


def _path(path):
    return os.fsencode(os.fspath(path))


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------
def model_info(path):
    """Facts of a checkpoint directory from its config.json alone (dict), without loading weights."""
    info, err = c_void_p(), c_void_p()
    st = _L.dsv4_model_info_from_dir(_path(path), None, byref(info), byref(err))
    _check(st, _errmsg(err))
    try:
        return _info_json(info)
    finally:
        _L.dsv4_model_info_free(info)


def _info_json(info):
    js = c_void_p()
    _check(_L.dsv4_model_info_to_json(info, byref(js)))
    return _json.loads(_take_string(js))


class Model(_Handle):
    """A checkpoint directory (official Hugging Face layout), mapped read-only. Thread-safe.

    Model(path, load_mtp=None, prefetch=None, resident=None, log=None, log_level=LOG_INFO, progress=None)
    log(level, line) receives the library's log lines for this model and the objects made from it;
    progress(fraction) is called during the load; returning False stops it (Aborted)."""
    _free_fn = _L.dsv4_model_free

    def __init__(self, path, load_mtp=None, prefetch=None, resident=None, log=None, log_level=LOG_INFO,
                 progress=None):
        self.path = os.fspath(path)
        with _Options() as o:
            o.set(OPT_LOAD_MTP, load_mtp, "load_mtp")
            o.set(OPT_PREFETCH, prefetch, "prefetch")
            o.set(OPT_RESIDENT, resident, "resident")
            o.callbacks(log, log_level, progress)
            m, err = c_void_p(), c_void_p()
            st = _L.dsv4_model_load(_path(path), o.p, byref(m), byref(err))
            msg = _errmsg(err)
            exc = [_pop_exception(k) for k in o.keys]
            if st != OK:
                for k in o.keys:
                    _unregister(k)
                e = _error(st, msg)
                cause = next((x for x in exc if x is not None), None)
                if cause is not None:
                    raise cause
                raise e
            # the log callback stays registered while the model lives (the library keeps using it)
            self._own(m.value, keys=o.keys)

    def info(self):
        """All facts of the loaded model (dict)."""
        info = c_void_p()
        _check(_L.dsv4_model_get_info(self._p, byref(info)))
        try:
            return _info_json(info)
        finally:
            _L.dsv4_model_info_free(info)

    def get(self, key):
        """One integer fact by name ("vocab_size", "n_layers", ...) or dsv4_info_key value."""
        info, v = c_void_p(), c_int64()
        _check(_L.dsv4_model_get_info(self._p, byref(info)))
        try:
            k = INFO_KEYS[key] if isinstance(key, str) else int(key)
            _check(_L.dsv4_model_info_get_i64(info, k, byref(v)), lambda: "info key %r" % (key,))
            return v.value
        finally:
            _L.dsv4_model_info_free(info)

    @property
    def vocab_size(self):
        return self.get("vocab_size")

    def context(self, **kw):
        """Context(self, **kw)."""
        return Context(self, **kw)

    def tokenizer(self):
        """The tokenizer.json of the model's directory."""
        return Tokenizer(os.path.join(self.path, "tokenizer.json"))


class Context(_Handle):
    """Worker threads, scratch memory, numerics and KV capacity of its sessions.

    Context(model, threads=None, context_length=None, numerics=None, revision=None, max_batch=None,
            worker_spin=None, log=None, log_level=LOG_INFO); None = the library's default."""
    _free_fn = _L.dsv4_context_free

    def __init__(self, model, threads=None, context_length=None, numerics=None, revision=None, max_batch=None,
                 worker_spin=None, log=None, log_level=LOG_INFO):
        self.model = model
        self._vocab = model.vocab_size  # sessions need it after the model may have been closed
        if isinstance(numerics, str):
            numerics = {"default": 0, "reference": 1, "float": 2}[numerics]
        with _Options() as o:
            for key, name, v in ((OPT_THREADS, "threads", threads), (OPT_CONTEXT_LENGTH, "context_length",
                                 context_length), (OPT_NUMERICS, "numerics", numerics),
                                 (OPT_REVISION, "revision", revision), (OPT_MAX_BATCH, "max_batch", max_batch),
                                 (OPT_WORKER_SPIN, "worker_spin", worker_spin)):
                o.set(key, v, name)
            o.callbacks(log, log_level)
            c, err = c_void_p(), c_void_p()
            st = _L.dsv4_context_create(model._p, o.p, byref(c), byref(err))
            if st != OK:
                for k in o.keys:
                    _unregister(k)
                raise _error(st, _errmsg(err))
            self._own(c.value, _Domain(), o.keys)

    @property
    def last_error(self):
        return _L.dsv4_context_last_error(self._p).decode("utf-8", "replace")

    def session(self, **kw):
        return Session(self, **kw)


class Session(_Handle):
    """One conversation (position and KV state) on a context. Session(context, mtp=False)."""
    _free_fn = _L.dsv4_session_free

    def __init__(self, context, mtp=None):
        self.context = context
        self.model = context.model
        with _Options() as o, context._domain:
            o.set(OPT_MTP, mtp, "mtp")
            s, err = c_void_p(), c_void_p()
            st = _L.dsv4_session_create(context._p, o.p, byref(s), byref(err))
            _check(st, lambda: _errmsg(err))
            self._own(s.value, context._domain)
        self._vocab = context._vocab

    def _fail(self, st):
        raise _error(st, _L.dsv4_session_last_error(self._p))

    def eval(self, tokens, all_logits=False):
        """Feed token ids (any sequence of ints, or an array('i')) at the current position."""
        ids, n = _ids(tokens)
        with self._domain:
            st = _L.dsv4_session_eval(self._p, ids, n, EVAL_ALL_LOGITS if all_logits else 0)
            if st != OK:
                self._fail(st)

    def logits_into(self, out, pos=-1, mtp=False):
        """Copy the next-token logits after absolute position `pos` (-1: the last fed) into a writable
        buffer of float32 (array('f'), bytearray, numpy array...) of at least vocab_size floats."""
        mv = memoryview(out).cast("B")
        if mv.readonly:
            raise ValueError("logits_into: the buffer is read-only")
        n = mv.nbytes // 4
        ptr = (c_char * mv.nbytes).from_buffer(mv)
        fn = _L.dsv4_session_mtp_logits if mtp else _L.dsv4_session_logits
        with self._domain:
            st = fn(self._p, int(pos), ptr, n)
            if st != OK:
                self._fail(st)
        return out

    def logits(self, pos=-1, numpy=False, mtp=False):
        """The next-token logits after `pos` as array('f') (numpy=True: a numpy float32 array)."""
        if numpy:
            if _np is None:
                raise ImportError("numpy is not installed")
            out = _np.empty(self._vocab, dtype=_np.float32)
        else:
            out = array.array("f", bytes(4 * self._vocab))
        return self.logits_into(out, pos, mtp)

    @property
    def position(self):
        with self._domain:
            return _L.dsv4_session_position(self._p)

    def reset(self):
        with self._domain:
            st = _L.dsv4_session_reset(self._p)
            if st != OK:
                self._fail(st)

    def memory(self):
        """(reserved_bytes, used_bytes) of the KV cache."""
        r, u = c_int64(), c_int64()
        with self._domain:
            _check(_L.dsv4_session_memory(self._p, byref(r), byref(u)))
        return r.value, u.value

    @property
    def last_error(self):
        return _L.dsv4_session_last_error(self._p).decode("utf-8", "replace")


def _ids(tokens):
    """A ctypes int32 array of token ids (copied) and its length."""
    a = array.array("i", tokens)
    if a.itemsize != 4:  # pragma: no cover
        a = array.array("l", tokens)
    if len(a) == 0:
        return (c_int32 * 1)(), 0
    return (c_int32 * len(a)).from_buffer(a), len(a)


# ---------------------------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------------------------
class Tokenizer(_Handle):
    """A tokenizer.json (byte-level BPE). Immutable after load: any number of threads may use it."""
    _free_fn = _L.dsv4_tokenizer_free

    def __init__(self, path):
        t, err = c_void_p(), c_void_p()
        st = _L.dsv4_tokenizer_load(_path(path), None, byref(t), byref(err))
        _check(st, lambda: _errmsg(err))
        self._own(t.value)

    def encode(self, text, add_bos=False, special=True):
        """Token ids (list of int) of a str or UTF-8 bytes. special=False encodes "<think>" and the
        other added tokens as plain text (for untrusted input)."""
        data = _b(text)
        flags = (ENCODE_ADD_BOS if add_bos else 0) | (0 if special else ENCODE_NO_SPECIAL)
        cap = len(data) + 2
        for _ in range(2):
            buf = (c_int32 * cap)()
            n, err = c_size_t(), c_void_p()
            st = _L.dsv4_tokenizer_encode(self._p, data, len(data), flags, buf, cap, byref(n), byref(err))
            if st == 11 and n.value > cap:
                _take_string(err)
                cap = n.value
                continue
            _check(st, lambda: _errmsg(err))
            return list(buf[:n.value])
        raise Internal(14, "encode: size changed")

    def decode_bytes(self, ids):
        a, count = _ids(ids)
        cap = 16 * count + 16
        for _ in range(2):
            buf = (c_char * cap)()
            n = c_size_t()
            st = _L.dsv4_tokenizer_decode(self._p, a, count, buf, cap, byref(n))
            if st == 11:
                cap = n.value
                continue
            _check(st, "decode: an id is out of range or not in the vocabulary")
            return buf.raw[:n.value]
        raise Internal(14, "decode: size changed")

    def decode(self, ids, errors="replace"):
        """Text of token ids (invalid UTF-8 handled by `errors`, as bytes.decode)."""
        return self.decode_bytes(ids).decode("utf-8", errors)

    def token_to_piece(self, id):
        """The bytes of one token."""
        buf, n = (c_char * 256)(), c_size_t()
        st = _L.dsv4_tokenizer_token_to_piece(self._p, int(id), buf, 256, byref(n))
        if st == 11:
            buf = (c_char * n.value)()
            st = _L.dsv4_tokenizer_token_to_piece(self._p, int(id), buf, n.value, byref(n))
        _check(st, lambda: "token %d is out of range or not in the vocabulary" % id)
        return buf.raw[:n.value]

    def piece_to_token(self, piece):
        d, i = _b(piece), c_int32()
        _check(_L.dsv4_tokenizer_piece_to_token(self._p, d, len(d), byref(i)), lambda: "no token %r" % (piece,))
        return i.value

    @property
    def vocab_size(self):
        return _L.dsv4_tokenizer_vocab_size(self._p)

    def special_id(self, which):
        """Id of a named special token ("bos", "eos", "think_end", ... or its dsv4_special_token value);
        None when the tokenizer has none."""
        k = SPECIAL_TOKENS[which] if isinstance(which, str) else int(which)
        i = _L.dsv4_tokenizer_special_id(self._p, k)
        return None if i < 0 else i

    def is_special(self, id):
        return bool(_L.dsv4_tokenizer_is_special(self._p, int(id)))

    def detokenizer(self):
        return Detokenizer(self)


class Detokenizer(_Handle):
    """Streaming detokenizer: feed ids, get text that never ends inside a UTF-8 character.
    One thread at a time."""
    _free_fn = _L.dsv4_detok_free

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        d = c_void_p()
        _check(_L.dsv4_detok_create(tokenizer._p, byref(d)))
        self._own(d.value, _Domain())
        self._cap = _L.dsv4_detok_max_chunk(d)
        self._buf = (c_char * self._cap)()

    def feed_bytes(self, id):
        n = c_size_t()
        with self._domain:
            _check(_L.dsv4_detok_feed(self._p, int(id), self._buf, self._cap, byref(n)),
                   lambda: "token %d is out of range or not in the vocabulary" % id)
            return self._buf.raw[:n.value]

    def feed(self, id):
        return self.feed_bytes(id).decode("utf-8", "replace")

    def flush(self):
        n = c_size_t()
        with self._domain:
            _check(_L.dsv4_detok_flush(self._p, self._buf, self._cap, byref(n)))
            return self._buf.raw[:n.value].decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# chat
# ---------------------------------------------------------------------------------------------
def _request_bytes(request):
    if isinstance(request, (bytes, bytearray)):
        return bytes(request)
    if isinstance(request, str):
        return request.encode("utf-8")
    return _json.dumps(request, ensure_ascii=False).encode("utf-8")


def render_chat(request):
    """The official DeepSeek-V4 prompt string of a chat request (dict, or JSON str/bytes)."""
    data = _request_bytes(request)
    out, err = c_void_p(), c_void_p()
    _check(_L.dsv4_chat_render(data, len(data), byref(out), byref(err)), lambda: _errmsg(err))
    return _take_string(out).decode("utf-8")


class ChatBuilder(_Handle):
    """A conversation built by calls (the C form of the request JSON). One thread at a time."""
    _free_fn = _L.dsv4_chat_free

    def __init__(self, messages=None, thinking=None, reasoning_effort=None, tools=None):
        c = c_void_p()
        _check(_L.dsv4_chat_create(byref(c)))
        self._own(c.value, _Domain())
        if thinking is not None:
            self.set(CHAT_THINKING, int(bool(thinking)))
        if reasoning_effort is not None:
            self.set(CHAT_REASONING_EFFORT, EFFORTS[reasoning_effort] if isinstance(reasoning_effort, str)
                     else reasoning_effort)
        for m in messages or ():
            self.add(**m)
        if tools is not None:
            self.set_tools(tools)

    def _c(self, st):
        if st != OK:
            raise _error(st, _L.dsv4_chat_last_error(self._p))
        return self

    def add_message(self, role, content=None, reasoning_content=None):
        with self._domain:
            return self._c(_L.dsv4_chat_add_message(self._p, _b(role), _b(content), _b(reasoning_content)))

    def add(self, role, content=None, reasoning_content=None, tool_calls=None, tool_call_id=None, **extra):
        """Add one OpenAI-style message (as a dict's items)."""
        if role == "tool":
            return self.add_tool_result(tool_call_id, content)
        self.add_message(role, content, reasoning_content)
        for call in tool_calls or ():
            f = call.get("function", call)
            args = f.get("arguments", "{}")
            self.add_tool_call(call.get("id"), f["name"], args if isinstance(args, str) else _json.dumps(args))
        if extra.get("prefix"):
            self.set(CHAT_PREFIX, 1)
        return self

    def add_tool_call(self, id, name, arguments_json):
        if not isinstance(arguments_json, (str, bytes)):
            arguments_json = _json.dumps(arguments_json)
        with self._domain:
            return self._c(_L.dsv4_chat_add_tool_call(self._p, _b(id), _b(name), _b(arguments_json)))

    def add_tool_result(self, tool_call_id, content):
        with self._domain:
            return self._c(_L.dsv4_chat_add_tool_result(self._p, _b(tool_call_id), _b(content)))

    def set(self, field, value):
        with self._domain:
            return self._c(_L.dsv4_chat_set_i64(self._p, int(field), int(value)))

    def set_tools(self, tools):
        js = None if tools is None else (tools if isinstance(tools, (str, bytes)) else _json.dumps(tools))
        with self._domain:
            return self._c(_L.dsv4_chat_set_json(self._p, CHAT_TOOLS, _b(js)))

    def set_response_format(self, fmt):
        js = fmt if isinstance(fmt, (str, bytes)) else _json.dumps(fmt)
        with self._domain:
            return self._c(_L.dsv4_chat_set_json(self._p, CHAT_RESPONSE_FORMAT, _b(js)))

    def set_fim(self, prefix, suffix=None):
        with self._domain:
            return self._c(_L.dsv4_chat_set_fim(self._p, _b(prefix), _b(suffix)))

    def render(self):
        """The prompt string."""
        out = c_void_p()
        with self._domain:
            self._c(_L.dsv4_chat_render_text(self._p, byref(out)))
        return _take_string(out).decode("utf-8")

    def render_ids(self, tokenizer):
        """The prompt's token ids."""
        n = c_size_t()
        with self._domain:
            st = _L.dsv4_chat_render_ids(self._p, tokenizer._p, None, 0, byref(n))
            if st != 11:
                self._c(st)
            buf = (c_int32 * max(n.value, 1))()
            self._c(_L.dsv4_chat_render_ids(self._p, tokenizer._p, buf, n.value, byref(n)))
        return list(buf[:n.value])


# ---------------------------------------------------------------------------------------------
# sampler stage (Python callables behind the C callback table)
# ---------------------------------------------------------------------------------------------
class _Stage:
    def __init__(self, obj):
        self.apply = obj if callable(obj) and not hasattr(obj, "apply") else getattr(obj, "apply", None)
        self.select = getattr(obj, "select", None)
        self.accept = getattr(obj, "accept", None)
        self.reset = getattr(obj, "reset", None)
        self.release = getattr(obj, "release", None)
        self.error = None


def _float_view(ptr, n):
    return memoryview(cast(ptr, POINTER(c_float * n)).contents).cast("B").cast("f")


def _numpy_or_view(ptr, n, want_numpy):
    v = _float_view(ptr, n)
    return _np.frombuffer(v, dtype=_np.float32) if want_numpy and _np is not None else v


@_lib.APPLY_FN
def _apply_tramp(user, logits, n):
    st = _lookup(user)
    if st is None or st.apply is None:
        return 0
    try:
        st.apply(_numpy_or_view(logits, n, st.numpy))
        return 0
    except BaseException as e:
        st.error = e
        return 1


@_lib.SELECT_FN
def _select_tramp(user, probs, n, token):
    st = _lookup(user)
    try:
        r = st.select(_numpy_or_view(probs, n, st.numpy))
        token[0] = int(r)
        return 0
    except BaseException as e:
        st.error = e
        return 1


@_lib.ACCEPT_FN
def _accept_tramp(user, token):
    st = _lookup(user)
    if st is not None and st.accept is not None:
        try:
            st.accept(token)
        except BaseException as e:
            st.error = e


@_lib.RESET_FN
def _reset_tramp(user):
    st = _lookup(user)
    if st is not None and st.reset is not None:
        try:
            st.reset()
        except BaseException as e:
            st.error = e


@_lib.RELEASE_FN
def _release_tramp(user):
    st = _unregister(user)
    if st is not None and st.release is not None:
        try:
            st.release()
        except Exception:
            pass


class Sampler:
    """The sampler of a generator (owned by it; keeps the generator alive)."""

    def __init__(self, gen):
        self.generator = gen
        self._stage_key = None

    @property
    def _p(self):
        return _L.dsv4_gen_sampler(self.generator._p)

    def set(self, **params):
        """Set settings by name: temperature, top_k, top_p, min_p, repetition_penalty,
        frequency_penalty, presence_penalty, penalty_last_n, seed."""
        with self.generator._domain:
            for name, value in params.items():
                if name not in SAMPLER_PARAMS:
                    raise UnknownOption(12, "unknown sampler setting %r" % name)
                key, kind = SAMPLER_PARAMS[name]
                if kind is float:
                    st = _L.dsv4_sampler_set_f64(self._p, key, float(value))
                else:
                    st = _L.dsv4_sampler_set_i64(self._p, key, int(value))
                _check(st, lambda: "sampler setting %s=%r" % (name, value))
        return self

    def get(self, name):
        key, kind = SAMPLER_PARAMS[name]
        with self.generator._domain:
            if kind is float:
                v = c_double()
                _check(_L.dsv4_sampler_get_f64(self._p, key, byref(v)))
            else:
                v = c_int64()
                _check(_L.dsv4_sampler_get_i64(self._p, key, byref(v)))
        return v.value

    def logit_bias(self, token, bias):
        with self.generator._domain:
            _check(_L.dsv4_sampler_set_logit_bias(self._p, int(token), float(bias)),
                   lambda: "logit bias %r for token %r" % (bias, token))
        return self

    def set_stage(self, stage, numpy=False):
        """Register a user stage: a callable apply(logits) changing the float32 logits in place
        (a memoryview, or a numpy array with numpy=True; -inf removes a token), or an object with
        any of apply(logits), select(probs) -> token, accept(token), reset(), release().
        The stage runs on the thread calling the generator; an exception in it stops the generation
        (finish reason "error") and is re-raised by the generator. None removes the stage."""
        with self.generator._domain:
            if stage is None:
                _check(_L.dsv4_sampler_set_callbacks(self._p, None, None))
                return self
            st = _Stage(stage)
            st.numpy = bool(numpy)
            key = _register(st)
            cb = _lib.SamplerCallbacks()
            cb.struct_size = sizeof(_lib.SamplerCallbacks)
            cb.apply = _apply_tramp if st.apply else _lib.APPLY_FN()
            cb.select = _select_tramp if st.select else _lib.SELECT_FN()
            cb.accept = _accept_tramp
            cb.reset = _reset_tramp
            cb.release = _release_tramp
            status = _L.dsv4_sampler_set_callbacks(self._p, byref(cb), c_void_p(key))
            if status != OK:
                _unregister(key)
                _check(status, "sampler stage")
            self.generator._stage = st
        return self


# ---------------------------------------------------------------------------------------------
# generation
# ---------------------------------------------------------------------------------------------
class Event:
    """One generation event: kind ("reasoning", "content", "tool_call_start", "tool_call_args",
    "tool_call_end", "stop"), data (bytes), text (str), index (tool-call index, -1 otherwise),
    finish_reason (for "stop": "stop", "length", "tool_calls", "error", "cancelled")."""
    __slots__ = ("kind", "data", "index", "finish_reason")

    def __init__(self, kind, data, index, finish_reason=None):
        self.kind, self.data, self.index, self.finish_reason = kind, data, index, finish_reason

    @property
    def text(self):
        return self.data.decode("utf-8", "replace")

    def __repr__(self):
        if self.kind == "stop":
            return "Event(stop, %s)" % self.finish_reason
        return "Event(%s, %r%s)" % (self.kind, self.text, "" if self.index < 0 else ", index=%d" % self.index)


class Generator(_Handle):
    """Streams the assistant's answer on a session. Generator(session, tokenizer).
    One thread at a time (with its context), except cancel(), which any thread may call."""
    _free_fn = _L.dsv4_gen_free

    def __init__(self, session, tokenizer):
        self.session = session
        self.tokenizer = tokenizer
        self._stage = None
        self._cancel_lock = threading.Lock()
        g = c_void_p()
        with session._domain:
            _check(_L.dsv4_gen_create(session._p, tokenizer._p, byref(g)))
            self._own(g.value, session._domain)

    @property
    def sampler(self):
        """The generator's Sampler (settings, logit biases, the user stage)."""
        return Sampler(self)

    def close(self):
        fin = getattr(self, "_fin", None)
        if fin is not None:
            # wait for a call in flight (another thread), then free; cancel() only waits for the free
            with self._domain, self._cancel_lock:
                self._ptr = None
                fin()

    def _fail(self, st):
        raise _error(st, _L.dsv4_gen_last_error(self._p))

    def cancel(self):
        """Stop the generation in progress (from any thread): the token being computed finishes, then
        the stream ends with finish reason "cancelled"; a prompt being fed stops (Aborted)."""
        with self._cancel_lock:
            p = getattr(self, "_ptr", None)
            if p:
                _L.dsv4_gen_cancel(p)

    def set(self, **params):
        """Integer settings by name: max_tokens, reasoning_effort, reasoning_budget, thinking,
        response_format, tool_choice, logprobs, top_logprobs, reuse_prefix (applied at the next start)."""
        with self._domain:
            for name, value in params.items():
                if name not in GEN_PARAMS:
                    raise UnknownOption(12, "unknown generator setting %r" % name)
                if name == "reasoning_effort" and isinstance(value, str):
                    value = EFFORTS[value]
                st = _L.dsv4_gen_set_i64(self._p, GEN_PARAMS[name], int(value))
                if st != OK:
                    raise _error(st, _L.dsv4_gen_last_error(self._p) or "generator setting %s=%r" % (name, value))
        return self

    def add_stop(self, stop):
        d = _b(stop)
        with self._domain:
            st = _L.dsv4_gen_add_stop(self._p, d, 0 if d is None else len(d))
            if st != OK:
                self._fail(st)

    def set_json_schema(self, schema):
        d = None if schema is None else _b(schema if isinstance(schema, (str, bytes)) else _json.dumps(schema))
        with self._domain:
            st = _L.dsv4_gen_set_json_schema(self._p, d, 0 if d is None else len(d))
            if st != OK:
                self._fail(st)

    def set_tools(self, tools, forced_name=None):
        d = None if tools is None else _b(tools if isinstance(tools, (str, bytes)) else _json.dumps(tools))
        with self._domain:
            st = _L.dsv4_gen_set_tools(self._p, d, 0 if d is None else len(d), _b(forced_name))
            if st != OK:
                self._fail(st)

    # -- starting ---------------------------------------------------------------------------
    def start(self, prompt_ids):
        """Start after a prompt of token ids (e.g. ChatBuilder.render_ids())."""
        ids, n = _ids(prompt_ids)
        with self._domain:
            self._start_stage()
            st = _L.dsv4_gen_start(self._p, ids, n)
            if st != OK:
                self._raise_stage_error()
                self._fail(st)

    def start_request(self, request):
        """Start from an OpenAI chat-completions request (dict, or JSON str/bytes)."""
        data = _request_bytes(request)
        with self._domain:
            self._start_stage()
            st = _L.dsv4_gen_start_request(self._p, data, len(data))
            if st != OK:
                self._raise_stage_error()
                self._fail(st)

    def chat(self, messages=None, request=None, stream=False, **fields):
        """A chat completion. messages: OpenAI-style list of dicts; request: a whole request (dict or
        JSON), to which `messages` and the other keyword fields (max_tokens, temperature, seed,
        tools, tool_choice, response_format, reasoning_effort, thinking, stop, ...) are added.
        stream=False: returns the response (dict, OpenAI "chat.completion"); stream=True: returns an
        iterator of Event (the response is then available from response())."""
        if request is None:
            req = {}
        elif isinstance(request, dict):
            req = dict(request)
        else:
            req = _json.loads(request)
        if messages is not None:
            req["messages"] = list(messages)
        req.update(fields)
        self.start_request(req)
        if stream:
            return self.events()
        for _ in self.events():
            pass
        return self.response()

    # -- pulling ----------------------------------------------------------------------------
    def _start_stage(self):
        if self._stage is not None:
            self._stage.error = None

    def _raise_stage_error(self):
        st = self._stage
        if st is not None and st.error is not None:
            e, st.error = st.error, None
            raise e

    def next_event(self):
        """The next event (generating as needed); after "stop" it returns "stop" again."""
        t, idx, d, n = c_int32(), c_int32(), c_void_p(), c_size_t()
        with self._domain:
            st = _L.dsv4_gen_next(self._p, byref(t), byref(idx), byref(d), byref(n))
            if st != OK:
                self._fail(st)
            data = string_at(d.value, n.value) if d.value and n.value else b""
            kind = EVENT_KINDS.get(t.value, "unknown")
            if kind == "stop":
                reason = FINISH_REASONS.get(idx.value, str(idx.value))
                ev = Event(kind, data, -1, reason)
                if reason == "error":
                    self._raise_stage_error()
                return ev
            return Event(kind, data, idx.value)

    def events(self):
        """Iterator of the events of the current generation, ending with (and including) "stop"."""
        while True:
            ev = self.next_event()
            yield ev
            if ev.kind == "stop":
                return

    def chunks(self):
        """Iterator of the OpenAI "chat.completion.chunk" dicts of the current generation."""
        while True:
            p = c_void_p()
            with self._domain:
                st = _L.dsv4_gen_next_chunk(self._p, byref(p))
                if st != OK:
                    self._fail(st)
            s = _take_string(p)
            if s is None:
                return
            yield _json.loads(s)

    def response(self):
        """The chat-completion response (dict) of the generation so far (complete after "stop")."""
        p = c_void_p()
        with self._domain:
            st = _L.dsv4_gen_response_json(self._p, byref(p))
            if st != OK:
                self._fail(st)
        return _json.loads(_take_string(p))

    @property
    def finish_reason(self):
        with self._domain:
            return FINISH_REASONS.get(_L.dsv4_gen_finish_reason(self._p))

    def usage(self):
        with self._domain:
            return {k: _L.dsv4_gen_usage(self._p, v) for k, v in USAGE_KEYS.items()}

    @property
    def n_tokens(self):
        with self._domain:
            return _L.dsv4_gen_n_tokens(self._p)
