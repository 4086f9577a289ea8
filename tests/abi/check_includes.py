#!/usr/bin/env python3
"""tests/abi/check_includes.py SOURCE_ROOT — the include rules of
docs/ARCHITECTURE.md, checked on every #include line of the tree.

Each #include of a file under include/, lib/, kernels/, examples/, programs/ or bindings/
(C files, and the cgo preambles of Go files) is
resolved as the build resolves it (quoted: the including file's folder
first; then include/, lib/, kernels/) and checked against the layer rules
below. Includes that resolve to no file of the tree (system headers) are
not checked. Before the tree, a small synthetic tree with one violation of
every rule is checked, so a checker that stopped finding violations fails
too. Prints one line per failure and a closing "N passed, N failed".
"""
import os
import re
import sys
import tempfile

SEARCH = ["include", "lib", "kernels"]  # meson's include_directories order
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
SOURCE_EXT = (".c", ".h", ".cpp", ".go")

# folder of the including file -> folders it may include from (below it)
ALLOWED = {
    "include": ["include"],
    "kernels": ["kernels"],
    "lib/core": ["include", "lib/core"],
    "lib/loader": ["include", "lib/core", "lib/loader"],
    "lib/graph": ["include", "lib/core", "lib/loader", "lib/graph", "kernels"],
    "lib/state": ["include", "lib/core", "lib/loader", "lib/graph", "lib/state"],
    "lib/api": ["include", "lib/core", "lib/loader", "lib/graph", "lib/state", "lib/api", "kernels"],
    "lib/text": ["include", "lib/core", "lib/text"],
    "lib/chat": ["include", "lib/core", "lib/chat"],
    "lib/gen": ["include", "lib/core", "lib/text", "lib/chat", "lib/gen"],
    "examples": ["include"],
    "programs": ["include", "programs/common"],
    "programs/common": ["include", "programs/common"],
    "bindings": ["include"],
}
# never, whatever the folder: (including folder prefix, included prefix, why)
FORBIDDEN = [
    ("lib/", "kernels/x86/", "lib/ never picks an instruction set (kernels/ops.c, kernels/linear.c do)"),
    ("kernels/ref/", "kernels/x86/", "reference kernels are scalar and never dispatch"),
]


def layer_of(rel):
    """the ALLOWED key a tree path belongs to, or None (tests, tools, ...)"""
    best = None
    for key in ALLOWED:
        if rel == key or rel.startswith(key + "/"):
            if best is None or len(key) > len(best):
                best = key
    return best


def resolve(root, rel_file, kind, name):
    """tree-relative path of the included file, or None (not in the tree)"""
    cands = []
    if kind == '"':
        cands.append(os.path.join(os.path.dirname(rel_file), name))
    cands += [os.path.join(d, name) for d in SEARCH]
    for c in cands:
        c = os.path.normpath(c)
        if not c.startswith("..") and os.path.isfile(os.path.join(root, c)):
            return c
    return None


def check_tree(root):
    """(passed, failures) for every checked include of the tree at root"""
    passed, failures = 0, []
    for top in ("include", "lib", "kernels", "examples", "programs", "bindings"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            dirnames.sort()
            for fn in sorted(filenames):
                if not fn.endswith(SOURCE_EXT):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, fn), root)
                layer = layer_of(rel)
                with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
                    lines = f.readlines()
                for no, line in enumerate(lines, 1):
                    m = INCLUDE_RE.match(line)
                    if not m:
                        continue
                    target = resolve(root, rel, m.group(1), m.group(2))
                    if target is None:
                        continue
                    why = None
                    if layer is not None and not any(
                            target == a or target.startswith(a + "/") for a in ALLOWED[layer]):
                        why = "%s may include only from %s" % (layer, ", ".join(ALLOWED[layer]))
                    for src, dst, reason in FORBIDDEN:
                        if rel.startswith(src) and target.startswith(dst):
                            why = reason
                    if why:
                        failures.append("%s:%d: #include %s%s%s -> %s: %s" % (
                            rel, no, m.group(1), m.group(2), '"' if m.group(1) == '"' else ">", target, why))
                    else:
                        passed += 1
    return passed, failures


def self_test():
    """(passed, failures): the checker finds each kind of violation"""
    files = {
        "include/dsv4/dsv4.h": "",
        "lib/core/core.h": '#include "dsv4/dsv4.h"\n',
        "lib/loader/loader.h": '#include "core/core.h"\n#include "graph/forward.h"\n',
        "lib/graph/forward.h": '#include "loader/loader.h"\n#include "api/api_int.h"\n',
        "lib/graph/forward.c": '#include "forward.h"\n#include "x86/gemv.h"\n#include "ops.h"\n',
        "lib/api/api_int.h": '#include "graph/forward.h"\n',
        "lib/text/tok_int.h": '#include "core/core.h"\n',
        "lib/chat/chat.c": '#include "text/tok_int.h"\n',
        "lib/gen/gen.c": '#include "api/api_int.h"\n#include "text/tok_int.h"\n',
        "kernels/ops.h": "",
        "kernels/x86/gemv.h": "",
        "kernels/ref/ops.c": '#include "ops.h"\n#include "x86/gemv.h"\n',
        "kernels/linear.c": '#include "core/core.h"\n#include <stdio.h>\n',
        "examples/demo.c": '#include <dsv4/dsv4.h>\n#include "loader/loader.h"\n',
        "bindings/go/dsv4.go": '/*\n#include <dsv4/dsv4.h>\n#include "api/api_int.h"\n*/\n',
    }
    # (file, included name) pairs that must be reported
    expect_bad = {
        ("lib/loader/loader.h", "graph/forward.h"), ("lib/graph/forward.h", "api/api_int.h"),
        ("lib/graph/forward.c", "x86/gemv.h"), ("lib/gen/gen.c", "api/api_int.h"),
        ("lib/chat/chat.c", "text/tok_int.h"),
        ("kernels/ref/ops.c", "x86/gemv.h"), ("kernels/linear.c", "core/core.h"),
        ("examples/demo.c", "loader/loader.h"), ("bindings/go/dsv4.go", "api/api_int.h"),
    }
    with tempfile.TemporaryDirectory() as d:
        for rel, text in files.items():
            os.makedirs(os.path.join(d, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(d, rel), "w") as f:
                f.write(text)
        ok, bad = check_tree(d)
    found = set()
    for line in bad:
        m = re.match(r"([^:]+):\d+: #include [<\"]([^>\"]+)", line)
        found.add((m.group(1), m.group(2)))
    passed, failures = 0, []
    for pair in sorted(expect_bad):
        if pair in found:
            passed += 1
        else:
            failures.append("self-test: %s including %s was not reported" % pair)
    for pair in sorted(found - expect_bad):
        failures.append("self-test: %s including %s reported but allowed" % pair)
    if ok != 11:  # the allowed includes of the synthetic tree that resolve
        failures.append("self-test: %d allowed includes counted, expected 11" % ok)
    else:
        passed += 1
    return passed, failures


def main():
    if len(sys.argv) != 2:
        print("usage: check_includes.py SOURCE_ROOT")
        print("0 passed, 1 failed")
        return 1
    sp, sf = self_test()
    tp, tf = check_tree(sys.argv[1])
    for line in sf + tf:
        print("FAIL " + line)
    print("ok   %d include lines follow docs/ARCHITECTURE.md (self-test: %d checks)" % (tp, sp))
    passed, failed = sp + tp, len(sf) + len(tf)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
