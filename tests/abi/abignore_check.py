#!/usr/bin/env python3
"""tests/abi/abignore_check.py — the suppression file does what it says.

From the checked-in baseline, makes two altered copies and compares each
with the baseline through abidiff and tests/abi/libdsv4.abignore:
  * a private layout change (a data member appended to the opaque
    struct dsv4_sampler, its size grown): reported without the file, must
    pass with it;
  * a public layout change (struct dsv4_sampler_callbacks shrunk by its
    last member): must still fail.
Usage: abignore_check.py BASELINE SUPPRESSIONS. Ends with "N passed, N failed".
"""
import os, re, shutil, subprocess, sys, tempfile

def main():
    base, supp = sys.argv[1:3]
    if not shutil.which("abidiff"):
        print("abidiff not installed (apt-get install abigail-tools)")
        print("0 passed, 0 failed")
        return 77
    text = open(base).read()
    passed = failed = 0

    def check(ok, what):
        nonlocal passed, failed
        passed += ok
        failed += not ok
        print(("ok   " if ok else "FAIL ") + what)

    def abidiff(altered, suppress=True):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "altered.abi")
            open(p, "w").write(altered)
            args = ["abidiff", "--no-show-locs"] + (["--suppressions", supp] if suppress else []) + [base, p]
            return subprocess.run(args, capture_output=True, text=True).returncode

    def grow(m):
        size = int(m.group(2))
        member = ("\n      <data-member access='public' layout-offset-in-bits='%d'>\n"
                  "        <var-decl name='probe' type-id='%s' visibility='default'/>\n"
                  "      </data-member>" % (size, m.group(4)))
        return "%s%d%s%s" % (m.group(1), size + 64, m.group(3), member)

    # the opaque struct: a member appended, size grown (every definition of it)
    priv, n = re.subn(r"(<class-decl name='dsv4_sampler' size-in-bits=')(\d+)('[^>]*>)(?=\s*<data-member[^>]*>\s*"
                      r"<var-decl name='temperature' type-id='([^']+)')", grow, text)
    check(n > 0 and abidiff(priv, False) != 0, "the altered opaque struct is an ABI change without the suppressions")
    check(n > 0 and abidiff(priv) == 0, "a private layout change of an opaque struct is suppressed (%d definitions altered)" % n)

    # the public table: its last member (release) removed, size shrunk
    m = re.search(r"<class-decl name='dsv4_sampler_callbacks' size-in-bits='(\d+)'.*?</class-decl>", text, flags=re.S)
    ok = False
    if m:
        body = m.group(0)
        members = list(re.finditer(r"\n\s*<data-member.*?</data-member>", body, flags=re.S))
        size = int(m.group(1))
        shrunk = body.replace(members[-1].group(0), "").replace("size-in-bits='%d'" % size,
                                                                  "size-in-bits='%d'" % (size - 64), 1)
        ok = abidiff(text.replace(body, shrunk)) != 0
    check(ok, "a public layout change (dsv4_sampler_callbacks) is still reported")
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
