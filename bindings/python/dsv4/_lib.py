"""Loading libdsv4 and declaring its functions (ctypes).

The library is looked up, in this order:
  1. $DSV4_LIBRARY: a path to libdsv4.so (or a name the loader resolves);
  2. pkg-config: `pkg-config --variable=libdir dsv4` (PKG_CONFIG_PATH is
     honoured, so an uninstalled build tree works through BUILD/pkgconfig/dsv4-uninstalled.pc);
  3. the system loader: libdsv4.so.<ABI>, then ctypes.util.find_library.
The loaded library's ABI major (dsv4_abi_version()) must equal ABI_VERSION.

ctypes.CDLL releases the GIL around every foreign call and takes it back in
callbacks, so long calls (model load, eval, generation) let other Python
threads run.
"""
import ctypes
import ctypes.util
import os
import shutil
import subprocess
from ctypes import (CFUNCTYPE, POINTER, c_char_p, c_double, c_float, c_int, c_int32, c_int64,
                    c_size_t, c_uint32, c_void_p)

#: ABI major this binding is written against (DSV4_ABI_VERSION of the header).
ABI_VERSION = 0
#: Oldest library release providing every function declared here (0.1.0).
MIN_VERSION_NUMBER = 100


class LoadError(ImportError):
    """libdsv4 could not be found or is incompatible with this binding."""


def _candidates():
    env = os.environ.get("DSV4_LIBRARY")
    if env:
        return [("DSV4_LIBRARY", env)], True
    out = []
    if shutil.which("pkg-config"):
        # the -L folders of `pkg-config --libs` (an uninstalled build's .pc names the build
        # folder there), then the libdir variable
        dirs = []
        for args in (["--libs-only-L"], ["--variable=libdir"]):
            try:
                r = subprocess.run(["pkg-config"] + args + ["dsv4"], capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.SubprocessError):
                continue
            if r.returncode == 0:
                dirs += [w[2:] if w.startswith("-L") else w for w in r.stdout.split()]
        for d in dirs:
            p = next((os.path.join(d, n) for n in ("libdsv4.so.%d" % ABI_VERSION, "libdsv4.so", "libdsv4.dylib")
                      if os.path.exists(os.path.join(d, n))), None)
            if p:
                out.append(("pkg-config", p))
                break
    out.append(("system loader", "libdsv4.so.%d" % ABI_VERSION))
    found = ctypes.util.find_library("dsv4")
    if found:
        out.append(("system loader", found))
    return out, False


def load():
    """Find, load and check the library; returns (CDLL, path)."""
    cands, explicit = _candidates()
    errors = []
    for how, path in cands:
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            errors.append("%s: %s" % (how, e))
            if explicit:
                break
            continue
        try:
            lib.dsv4_abi_version.restype = c_uint32
            lib.dsv4_abi_version.argtypes = []
            lib.dsv4_version_number.restype = c_uint32
            lib.dsv4_version_number.argtypes = []
            lib.dsv4_version_string.restype = c_char_p
            lib.dsv4_version_string.argtypes = []
        except AttributeError:
            raise LoadError("%s (%s) is not libdsv4: no dsv4_abi_version()" % (path, how))
        abi = lib.dsv4_abi_version()
        ver = lib.dsv4_version_number()
        vs = lib.dsv4_version_string().decode()
        if abi != ABI_VERSION:
            raise LoadError("libdsv4 at %s (found through %s) has ABI version %d (release %s); this binding "
                            "needs ABI version %d" % (path, how, abi, vs, ABI_VERSION))
        if ver < MIN_VERSION_NUMBER:
            raise LoadError("libdsv4 at %s (found through %s) is release %s; this binding needs %d.%d.%d or "
                            "newer within ABI %d" % (path, how, vs, MIN_VERSION_NUMBER // 10000,
                                                      MIN_VERSION_NUMBER // 100 % 100, MIN_VERSION_NUMBER % 100,
                                                      ABI_VERSION))
        _declare(lib)
        return lib, path
    raise LoadError("libdsv4 not found (set DSV4_LIBRARY to the path of libdsv4.so, or make pkg-config find "
                    "dsv4): " + "; ".join(errors))


# Callback types (int32_t enums are plain 4-byte integers at the boundary).
LOG_FN = CFUNCTYPE(None, c_void_p, c_int32, c_void_p, c_size_t)
PROGRESS_FN = CFUNCTYPE(c_int32, c_void_p, c_double)
APPLY_FN = CFUNCTYPE(c_int32, c_void_p, POINTER(c_float), c_size_t)
SELECT_FN = CFUNCTYPE(c_int32, c_void_p, POINTER(c_float), c_size_t, POINTER(c_int32))
ACCEPT_FN = CFUNCTYPE(None, c_void_p, c_int32)
RESET_FN = CFUNCTYPE(None, c_void_p)
RELEASE_FN = CFUNCTYPE(None, c_void_p)


class SamplerCallbacks(ctypes.Structure):
    """dsv4_sampler_callbacks: struct_size, then function pointers at multiples of sizeof(void *)."""
    _fields_ = [("struct_size", c_uint32), ("apply", APPLY_FN), ("select", SELECT_FN), ("accept", ACCEPT_FN),
                ("reset", RESET_FN), ("release", RELEASE_FN)]


P = c_void_p
PP = POINTER(c_void_p)
S = c_int32  # dsv4_status
I32P = POINTER(c_int32)
SZP = POINTER(c_size_t)
I64P = POINTER(c_int64)

_PROTOS = {
    # versions, statuses, memory
    "dsv4_status_string": (c_char_p, [S]),
    "dsv4_free": (None, [P]),
    "dsv4_cpu_features": (c_uint32, []),
    # options
    "dsv4_options_create": (S, [PP]),
    "dsv4_options_free": (None, [P]),
    "dsv4_options_set_i64": (S, [P, c_int32, c_int64]),
    "dsv4_options_get_i64": (S, [P, c_int32, I64P]),
    "dsv4_options_set_log": (S, [P, LOG_FN, P, c_int32]),
    "dsv4_options_set_progress": (S, [P, PROGRESS_FN, P]),
    # model
    "dsv4_model_load": (S, [c_char_p, P, PP, PP]),
    "dsv4_model_free": (None, [P]),
    "dsv4_model_info_from_dir": (S, [c_char_p, P, PP, PP]),
    "dsv4_model_get_info": (S, [P, PP]),
    "dsv4_model_info_free": (None, [P]),
    "dsv4_model_info_get_i64": (S, [P, c_int32, I64P]),
    "dsv4_model_info_to_json": (S, [P, PP]),
    "dsv4_model_info_memory": (S, [P, c_int64, c_int32, I64P, I64P]),
    # context, session
    "dsv4_context_create": (S, [P, P, PP, PP]),
    "dsv4_context_free": (None, [P]),
    "dsv4_context_last_error": (c_char_p, [P]),
    "dsv4_session_create": (S, [P, P, PP, PP]),
    "dsv4_session_free": (None, [P]),
    "dsv4_session_last_error": (c_char_p, [P]),
    "dsv4_session_eval": (S, [P, I32P, c_size_t, c_uint32]),
    "dsv4_session_logits": (S, [P, c_int64, P, c_size_t]),
    "dsv4_session_mtp_logits": (S, [P, c_int64, P, c_size_t]),
    "dsv4_session_position": (c_int64, [P]),
    "dsv4_session_reset": (S, [P]),
    "dsv4_session_memory": (S, [P, I64P, I64P]),
    # tokenizer
    "dsv4_tokenizer_load": (S, [c_char_p, P, PP, PP]),
    "dsv4_tokenizer_free": (None, [P]),
    "dsv4_tokenizer_encode": (S, [P, c_char_p, c_size_t, c_uint32, I32P, c_size_t, SZP, PP]),
    "dsv4_tokenizer_decode": (S, [P, I32P, c_size_t, P, c_size_t, SZP]),
    "dsv4_tokenizer_token_to_piece": (S, [P, c_int32, P, c_size_t, SZP]),
    "dsv4_tokenizer_piece_to_token": (S, [P, c_char_p, c_size_t, I32P]),
    "dsv4_tokenizer_vocab_size": (c_int32, [P]),
    "dsv4_tokenizer_special_id": (c_int32, [P, c_int32]),
    "dsv4_tokenizer_is_special": (c_int, [P, c_int32]),
    "dsv4_detok_create": (S, [P, PP]),
    "dsv4_detok_free": (None, [P]),
    "dsv4_detok_feed": (S, [P, c_int32, P, c_size_t, SZP]),
    "dsv4_detok_flush": (S, [P, P, c_size_t, SZP]),
    "dsv4_detok_max_chunk": (c_size_t, [P]),
    # chat
    "dsv4_chat_render": (S, [c_char_p, c_size_t, PP, PP]),
    "dsv4_chat_create": (S, [PP]),
    "dsv4_chat_free": (None, [P]),
    "dsv4_chat_last_error": (c_char_p, [P]),
    "dsv4_chat_add_message": (S, [P, c_char_p, c_char_p, c_char_p]),
    "dsv4_chat_add_tool_call": (S, [P, c_char_p, c_char_p, c_char_p]),
    "dsv4_chat_add_tool_result": (S, [P, c_char_p, c_char_p]),
    "dsv4_chat_set_i64": (S, [P, c_int32, c_int64]),
    "dsv4_chat_set_json": (S, [P, c_int32, c_char_p]),
    "dsv4_chat_set_fim": (S, [P, c_char_p, c_char_p]),
    "dsv4_chat_render_text": (S, [P, PP]),
    "dsv4_chat_render_ids": (S, [P, P, I32P, c_size_t, SZP]),
    # sampler
    "dsv4_sampler_set_f64": (S, [P, c_int32, c_double]),
    "dsv4_sampler_set_i64": (S, [P, c_int32, c_int64]),
    "dsv4_sampler_get_f64": (S, [P, c_int32, POINTER(c_double)]),
    "dsv4_sampler_get_i64": (S, [P, c_int32, I64P]),
    "dsv4_sampler_set_logit_bias": (S, [P, c_int32, c_float]),
    "dsv4_sampler_set_callbacks": (S, [P, POINTER(SamplerCallbacks), P]),
    # generation
    "dsv4_gen_create": (S, [P, P, PP]),
    "dsv4_gen_free": (None, [P]),
    "dsv4_gen_last_error": (c_char_p, [P]),
    "dsv4_gen_sampler": (P, [P]),
    "dsv4_gen_set_i64": (S, [P, c_int32, c_int64]),
    "dsv4_gen_get_i64": (S, [P, c_int32, I64P]),
    "dsv4_gen_add_stop": (S, [P, c_char_p, c_size_t]),
    "dsv4_gen_set_json_schema": (S, [P, c_char_p, c_size_t]),
    "dsv4_gen_set_tools": (S, [P, c_char_p, c_size_t, c_char_p]),
    "dsv4_gen_start": (S, [P, I32P, c_size_t]),
    "dsv4_gen_start_request": (S, [P, c_char_p, c_size_t]),
    "dsv4_gen_next": (S, [P, I32P, I32P, PP, SZP]),
    "dsv4_gen_cancel": (None, [P]),
    "dsv4_gen_finish_reason": (c_int32, [P]),
    "dsv4_gen_usage": (c_int64, [P, c_int32]),
    "dsv4_gen_n_tokens": (c_int64, [P]),
    "dsv4_gen_response_json": (S, [P, PP]),
    "dsv4_gen_next_chunk": (S, [P, PP]),
}


def _declare(lib):
    for name, (res, args) in _PROTOS.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
