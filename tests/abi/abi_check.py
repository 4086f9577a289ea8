#!/usr/bin/env python3
"""tests/abi/abi_check.py — the public ABI guard.

Checks, each counted as one test:
  * exported dynamic symbols of libdsv4.so == names in lib/libdsv4.map ==
    DSV4_API function declarations in include/dsv4/*.h; all dsv4_[a-z]..., no "__";
  * every DSV4_API declaration has a doc comment with @since;
  * public headers declare no struct/union with a body (opaque types only),
    except size-versioned callback tables (first member uint32_t
    struct_size) whose layout header_c99.c pins;
  * enumerated types at the boundary are fixed-width integer typedefs (no
    "typedef enum"), and every public enumerator has an explicit value;
  * the experimental tier: DSV4_EXPERIMENTAL_API declarations (inside
    "#ifdef DSV4_ENABLE_EXPERIMENTAL") == the DSV4_EXPERIMENTAL map node,
    and no other node lists them;
  * every dsv4_status code has a distinct, non-fallback dsv4_status_string;
  * meson project version == DSV4_VERSION_STRING == dsv4_version_string();
    SONAME == libdsv4.so.<DSV4_ABI_VERSION> == dsv4_abi_version().
Usage: abi_check.py LIBDSV4_SO MAP_FILE INCLUDE_DIR PROJECT_VERSION
Ends with "N passed, N failed".
"""
import ctypes, glob, os, re, subprocess, sys

passed = failed = 0

def check(ok, what, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok   " + what)
    else:
        failed += 1
        print("FAIL " + what + (": " + detail if detail else ""))

def strip_comments(text):
    return re.sub(r"/\*.*?\*/|//[^\n]*", lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=re.S)

def main():
    so, mapfile, incdir, version = sys.argv[1:5]
    headers = sorted(glob.glob(os.path.join(incdir, "dsv4", "*.h")))

    # exported symbols
    out = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True, text=True, check=True).stdout
    exported = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TtWwDdBbRr" and not parts[2].startswith("DSV4_"):
            exported.add(parts[2].split("@")[0])
    # version script (all nodes), and the experimental node alone
    maptext = re.sub(r"#[^\n]*", "", open(mapfile).read())
    mapped = set(re.findall(r"^\s*(dsv4_[A-Za-z0-9_]+)\s*;", maptext, flags=re.M))
    node = re.search(r"\bDSV4_EXPERIMENTAL\s*\{(.*?)\}", maptext, flags=re.S)
    exp_mapped = set(re.findall(r"^\s*(dsv4_[A-Za-z0-9_]+)\s*;", node.group(1), flags=re.M)) if node else None
    # header declarations
    declared, undocumented, experimental, unguarded = set(), [], set(), []
    for h in headers:
        raw = open(h).read()
        code = strip_comments(raw)
        for m in re.finditer(r"^[ \t]*(DSV4_API|DSV4_EXPERIMENTAL_API)\b[^;{#]*?\b(dsv4_[A-Za-z0-9_]+)\s*\(", code, flags=re.M):
            name = m.group(2)
            declared.add(name)
            if m.group(1) == "DSV4_EXPERIMENTAL_API":
                experimental.add(name)
                # inside an "#ifdef DSV4_ENABLE_EXPERIMENTAL" block: the last
                # preprocessor conditional opened before it is that one
                conds = re.findall(r"^[ \t]*#[ \t]*(if.*|endif)", code[:m.start()], flags=re.M)
                stack = []
                for c in conds:
                    if c.startswith("if"):
                        stack.append(c)
                    elif stack:
                        stack.pop()
                if not any(re.match(r"ifdef\s+DSV4_ENABLE_EXPERIMENTAL\b|if\s+defined\(DSV4_ENABLE_EXPERIMENTAL\)", c)
                           for c in stack):
                    unguarded.append(name)
            # the doc comment must close right before the declaration
            before = raw[:m.start()].rstrip()
            if not before.endswith("*/"):
                undocumented.append(name)
                continue
            doc = before[before.rfind("/**"):]
            if "@since" not in doc:
                undocumented.append(name)
    check(exported == mapped, "exported symbols == version script",
          "only exported: %s; only in map: %s" % (sorted(exported - mapped), sorted(mapped - exported)))
    check(mapped == declared, "version script == header declarations",
          "only in map: %s; only declared: %s" % (sorted(mapped - declared), sorted(declared - mapped)))
    bad = sorted(n for n in exported | mapped | declared if not re.match(r"^dsv4_[a-z]", n) or "__" in n)
    check(not bad, "public names are dsv4_[a-z]... without '__'", str(bad))
    check(len(declared) > 0 and not undocumented, "every DSV4_API declaration documented with @since",
          str(undocumented))
    check(exp_mapped is not None and exp_mapped == experimental and not unguarded,
          "experimental tier: DSV4_EXPERIMENTAL_API declarations (%d) == map node DSV4_EXPERIMENTAL" % len(experimental),
          "node present: %s; only declared: %s; only in the node: %s; outside #ifdef DSV4_ENABLE_EXPERIMENTAL: %s" %
          (exp_mapped is not None, sorted(experimental - (exp_mapped or set())),
           sorted((exp_mapped or set()) - experimental), unguarded))

    # enumerated types: int32_t/uint32_t typedefs, explicit values
    typedef_enums, implicit = [], []
    for h in headers:
        code = strip_comments(open(h).read())
        typedef_enums += ["%s: %s" % (os.path.basename(h), m.group(0)[:40])
                          for m in re.finditer(r"\btypedef\s+enum\b", code)]
        for m in re.finditer(r"\benum\s*[A-Za-z_0-9]*\s*\{(.*?)\}", code, flags=re.S):
            body = re.sub(r"^\s*#.*$", "", m.group(1), flags=re.M)
            for item in body.split(","):
                item = item.strip()
                if item and "=" not in item:
                    implicit.append("%s: %s" % (os.path.basename(h), item))
    check(not typedef_enums, "no enum types at the boundary (int32_t typedefs instead)", str(typedef_enums))
    check(not implicit, "every public enumerator has an explicit value", str(implicit))

    # no struct/union bodies in public headers, except the size-versioned
    # callback tables whose layout header_c99.c pins (append-only members)
    pinned = {"dsv4_sampler_callbacks"}
    bodies = []
    for h in headers:
        code = strip_comments(open(h).read())
        for m in re.finditer(r"\b(struct|union)\s+([A-Za-z_0-9]*)\s*\{", code):
            if m.group(2) in pinned and re.search(r"\buint32_t\s+struct_size\s*;", code[m.end():m.end() + 200]):
                continue
            bodies.append("%s: %s %s" % (os.path.basename(h), m.group(1), m.group(2)))
    check(not bodies, "public headers declare no struct/union layout but the pinned callback tables", str(bodies))

    lib = ctypes.CDLL(so)
    lib.dsv4_status_string.restype = ctypes.c_char_p
    lib.dsv4_status_string.argtypes = [ctypes.c_int32]
    main_h = open(os.path.join(incdir, "dsv4", "dsv4.h")).read()
    enum = re.search(r"enum\s+dsv4_status_code\s*\{(.*?)\}", main_h, flags=re.S) or \
           re.search(r"\{([^{}]*DSV4_OK\s*=\s*0[^{}]*)\}", main_h, flags=re.S)
    codes = dict((n, int(v)) for n, v in re.findall(r"\b(DSV4_(?:OK|ERR_[A-Z_]+))\s*=\s*(-?\d+)", enum.group(1)))
    check(len(codes) >= 2 and len(set(codes.values())) == len(codes), "status codes distinct", str(codes))
    unknown = lib.dsv4_status_string(987654).decode()
    strings = {n: lib.dsv4_status_string(v).decode() for n, v in codes.items()}
    check(all(s and s != unknown for s in strings.values()) and len(set(strings.values())) == len(strings),
          "every status code has its own string (%d codes)" % len(codes), str(strings))

    hv = re.search(r'#define\s+DSV4_VERSION_STRING\s+"([^"]+)"', main_h).group(1)
    lib.dsv4_version_string.restype = ctypes.c_char_p
    rv = lib.dsv4_version_string().decode()
    check(version == hv == rv, "version: meson %s, header %s, runtime %s" % (version, hv, rv))
    abi = int(re.search(r"#define\s+DSV4_ABI_VERSION\s+(\d+)", main_h).group(1))
    lib.dsv4_abi_version.restype = ctypes.c_uint32
    dyn = subprocess.run(["objdump", "-p", so], capture_output=True, text=True, check=True).stdout
    soname = re.search(r"SONAME\s+(\S+)", dyn)
    check(soname is not None and soname.group(1) == "libdsv4.so.%d" % abi and lib.dsv4_abi_version() == abi,
          "SONAME %s == libdsv4.so.%d == dsv4_abi_version()" % (soname.group(1) if soname else None, abi))

    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
