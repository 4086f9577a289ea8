#!/usr/bin/env python3
"""dsv4-mca — the static model of the m = 1 kernels' inner loops.

Compiles the kernel sources to assembly with the library's own flags (taken
from the build's compile_commands.json) plus -DDSV4K_MCA=1, which turns the
marks of kernels/x86/mca.h into llvm-mca code regions, runs llvm-mca on them
for each CPU model and prints, per region and CPU, the cycles one pass takes
in llvm-mca's steady state and the cycles per 64 weights, against what the
target needs: 64 weights read at TARGET_GBS GB/s per core at GHZ GHz
(issue 17: FP4 <= 4.5, FP8 <= 8.7, BF16 <= 17.5 cycles at 27 GB/s and
3.7 GHz). "fits" means the model says the core can decode and multiply
faster than one core's share of memory delivers; it says nothing of how
well the loads overlap a stream from memory (docs/bench.md).

    tools/dsv4-mca.py [--build build] [--mca llvm-mca-16] [--json out.json] [--keep DIR]

Exit status: 0 when every region was found and modelled (whether or not it
fits), 1 when a region is missing or llvm-mca failed, 77 when llvm-mca is
not installed (Debian: apt-get install llvm-16).
"""
import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# source -> the CPU models its regions are read on
SOURCES = {
    "kernels/x86/gemv_avx512.c": ["znver4", "sapphirerapids"],
    "kernels/x86/gemv_avx2.c": ["znver3", "znver4"],
}
# bytes of weights per 64 weights, by the region name's format prefix
BYTES64 = {"fp4": 32, "fp8": 64, "bf16": 128}
# the thresholds in cycles per 64 weights (27 GB/s per core at 3.7 GHz)
NEED = {"fp4": 4.5, "fp8": 8.7, "bf16": 17.5}


def find_mca(given):
    for name in ([given] if given else []) + ["llvm-mca-16", "llvm-mca"]:
        path = shutil.which(name)
        if path:
            return path
    return None


def compile_command(build, src):
    """the build's command for src (the shared library's object), as argv"""
    with open(os.path.join(build, "compile_commands.json")) as f:
        db = json.load(f)
    want = os.path.realpath(os.path.join(ROOT, src))
    best = None
    for e in db:
        path = e["file"] if os.path.isabs(e["file"]) else os.path.join(e["directory"], e["file"])
        if os.path.realpath(path) != want:
            continue
        argv = e["arguments"] if "arguments" in e else shlex.split(e["command"])
        out = e.get("output", "")
        # the library's own object first (tests build emulated copies)
        if best is None or "libdsv4" in out:
            best = (e["directory"], argv)
    return best


def to_asm(directory, argv, out):
    args, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MQ", "-MT"):
            skip = True
            continue
        if a in ("-c", "-MD", "-MMD", "-g") or a.startswith("-g") or a.startswith("-fsanitize"):
            continue
        args.append(a)
    args += ["-S", "-DDSV4K_MCA=1", "-o", out]
    r = subprocess.run(args, cwd=directory, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        return False
    return True


LABEL = re.compile(r"^([.\w$]+):")
JUMP = re.compile(r"^\s*jmp\s+([.\w$]+)\s*$")
COND = re.compile(r"^\s*j[a-z]+\s+[.\w$]+\s*$")


def traces(asm, out):
    """Each marked region as llvm-mca must see it: the path from its
    BEGIN to its END following the unconditional jumps, conditional
    branches taken as not taken (the compiler may have laid a loop body out
    in pieces), written to out as straight code between region comments.
    Returns the region names found, or None when a path does not end."""
    with open(asm) as f:
        lines = f.read().split("\n")
    labels = {}
    for i, l in enumerate(lines):
        m = LABEL.match(l)
        if m:
            labels[m.group(1)] = i
    names, body = [], []
    for i, l in enumerate(lines):
        m = re.search(r"LLVM-MCA-BEGIN\s+(\S+)", l)
        if not m or m.group(1) in names:
            continue  # a region the compiler duplicated: its first copy
        name, j, steps, code, seen = m.group(1), i + 1, 0, [], set()
        while True:
            if j >= len(lines) or steps > 20000:
                return None
            l2, steps = lines[j].strip(), steps + 1
            if re.search(r"LLVM-MCA-END\s+" + re.escape(name) + r"\s*$", l2):
                break
            lm = LABEL.match(l2)
            if lm:
                seen.add(lm.group(1))
            jm = JUMP.match(l2)
            if jm and jm.group(1) in labels:
                j = labels[jm.group(1)] + 1
                continue
            j += 1
            if COND.match(l2) and l2.split()[-1] in seen:
                # a branch back into the path: a loop inside the region,
                # whose passes the straight path would count once
                raise ValueError("region %s holds a loop (unroll it, or mark the inner loop)" % name)
            if (not l2 or l2.startswith(("#", ".", "/")) or lm or COND.match(l2)):
                continue
            code.append("\t" + l2)
        names.append(name)
        body += ["# LLVM-MCA-BEGIN " + name] + code + ["# LLVM-MCA-END " + name]
    with open(out, "w") as f:
        f.write("\n".join(body) + "\n")
    return names


def run_mca(mca, cpu, asm):
    r = subprocess.run([mca, "-mtriple=x86_64-unknown-linux-gnu", "-mcpu=" + cpu, "-iterations=300", asm],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr[-2000:])
        return None
    out = {}
    # a report per region: "[k] Code Region - name", then its summary
    parts = re.split(r"\n\[\d+\] Code Region - (\S+)\n", "\n" + r.stdout)
    for name, body in zip(parts[1::2], parts[2::2]):
        it = re.search(r"Iterations:\s+(\d+)", body)
        cyc = re.search(r"Total Cycles:\s+(\d+)", body)
        uops = re.search(r"Total uOps:\s+(\d+)", body)
        rt = re.search(r"Block RThroughput:\s+([\d.]+)", body)
        ins = re.search(r"Instructions:\s+(\d+)", body)
        if not (it and cyc):
            continue
        n = int(it.group(1))
        rec = {"cycles": int(cyc.group(1)) / n, "rthroughput": float(rt.group(1)) if rt else None,
               "uops": int(uops.group(1)) / n if uops else None, "instructions": int(ins.group(1)) / n if ins else None}
        out[name] = rec  # one region per name: traces() keeps a duplicated loop's first copy
    return out


def main():
    ap = argparse.ArgumentParser(description="llvm-mca model of the kernels' inner loops")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--mca", default=None, help="llvm-mca binary (default llvm-mca-16, then llvm-mca)")
    ap.add_argument("--ghz", type=float, default=3.7, help="clock for the GB/s column (default 3.7)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--check", action="store_true",
                    help="end with the test line 'N passed, N failed' (regions modelled, problems)")
    ap.add_argument("--keep", default=None, metavar="DIR",
                    help="keep the assembly and the traced regions (SOURCE.s.mca, llvm-mca's input) in DIR")
    a = ap.parse_args()
    mca = find_mca(a.mca)
    if not mca:
        print("dsv4-mca: llvm-mca not found (Debian: apt-get install llvm-16)")
        return 77
    if not os.path.exists(os.path.join(a.build, "compile_commands.json")):
        print("dsv4-mca: no compile_commands.json in %s (meson setup it first)" % a.build)
        return 1
    rows, bad = [], 0
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = a.keep or tmpd
        if a.keep:
            os.makedirs(a.keep, exist_ok=True)
        for src, cpus in SOURCES.items():
            cmd = compile_command(a.build, src)
            if not cmd:
                print("dsv4-mca: %s is not in the build's compile_commands.json" % src)
                bad += 1
                continue
            asm = os.path.join(tmp, os.path.basename(src) + ".s")
            if not to_asm(cmd[0], cmd[1], asm):
                print("dsv4-mca: compiling %s to assembly failed" % src)
                bad += 1
                continue
            try:
                names = traces(asm, asm + ".mca")
            except ValueError as e:
                print("dsv4-mca: %s: %s" % (src, e))
                bad += 1
                continue
            if names is None:
                print("dsv4-mca: a marked region of %s has no path to its end" % src)
                bad += 1
                continue
            if not names:
                print("dsv4-mca: no marked region in %s" % src)
                bad += 1
            for cpu in cpus:
                res = run_mca(mca, cpu, asm + ".mca")
                if res is None:
                    print("dsv4-mca: llvm-mca failed on %s for %s" % (src, cpu))
                    bad += 1
                    continue
                for name in names:
                    if name not in res:
                        print("dsv4-mca: region %s missing from llvm-mca's report (%s)" % (name, cpu))
                        bad += 1
                        continue
                    label, _, w = name.partition(":")
                    fmt = label.split("_")[0]
                    r = res[name]
                    c64 = r["cycles"] * 64.0 / float(w)
                    gbs = BYTES64[fmt] / c64 * a.ghz
                    rows.append({"region": label, "weights": int(w), "cpu": cpu, "cycles_per_pass": r["cycles"],
                                 "rthroughput": r["rthroughput"], "uops_per_pass": r["uops"],
                                 "cycles_per_64": c64, "need_per_64": NEED[fmt], "gbs_per_core": gbs,
                                 "fits": c64 <= NEED[fmt]})
    print("static model (%s), cycles per 64 weights against the need at 27 GB/s per core, %.1f GHz:" %
          (os.path.basename(mca), a.ghz))
    print("%-28s %-15s %9s %9s %8s %8s %6s %9s" %
          ("region", "cpu", "weights", "cyc/pass", "uops", "cyc/64w", "need", "GB/s/core"))
    for r in rows:
        print("%-28s %-15s %9d %9.2f %8.1f %8.2f %6.1f %9.1f  %s" %
              (r["region"], r["cpu"], r["weights"], r["cycles_per_pass"], r["uops_per_pass"] or 0,
               r["cycles_per_64"], r["need_per_64"], r["gbs_per_core"], "fits" if r["fits"] else "FAIL"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"mca": mca, "ghz": a.ghz, "regions": rows}, f, indent=1)
    if a.check:
        print("%d passed, %d failed" % (len(rows), bad))
    else:
        print("%d regions modelled, %d problems" % (len(rows), bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
