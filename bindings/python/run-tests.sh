#!/bin/sh
# bindings/python/run-tests.sh BUILD_DIR — test the Python binding against the libdsv4 of BUILD_DIR
# (meson test 'bindings-python', suite 'bindings'):
#  1. `pip install` of bindings/python (offline, no build isolation needed: a plain setup.py) into
#     a temporary folder, and the tests (pytest) run on that installed copy;
#  2. tests/leakcheck.py under valgrind: no block lost and no memory error through libdsv4.
# Exit 77 (skipped) when python3 with pytest, or valgrind, is missing — except under CI=true, where
# a missing tool is a failure. Ends with "N passed, N failed".
set -u
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
ci=${CI:-}
missing() {
    echo "bindings-python: $1"
    if [ "$ci" = true ]; then echo "0 passed, 1 failed"; exit 1; fi
    exit 77
}
py=""
for c in ${PYTHON:-} python3 /usr/bin/python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import pytest' 2>/dev/null; then py=$c; break; fi
done
[ -n "$py" ] || missing "no python3 with pytest (Debian: python3-pytest)"
"$py" -m pip --version >/dev/null 2>&1 || missing "no pip for $py (Debian: python3-pip)"
export DSV4_LIBRARY="$build/libdsv4.so"
export PKG_CONFIG_PATH="$build/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export DSV4_SHARED_DIR="${DSV4_SHARED_DIR:-$here/../../../shared}"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
DSV4_DEMO_MODEL=$(sh "$here/../demo-model.sh" "$build/tools/dsv4-synth" "$build/bindings/demo-tiny") ||
    { echo "bindings-python: the demo model could not be made"; echo "0 passed, 1 failed"; exit 1; }
export DSV4_DEMO_MODEL
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dsv4-py-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

# 1. install offline, then the tests on the installed package
cp -r "$here" "$tmp/src"
rm -rf "$tmp/src/build" "$tmp/src"/*.egg-info
if "$py" -m pip install --quiet --no-index --no-deps --target "$tmp/site" "$tmp/src" >"$tmp/pip.log" 2>&1 &&
    [ -f "$tmp/site/dsv4/__init__.py" ]; then
    passed=$((passed + 1))
else
    cat "$tmp/pip.log"
    echo "FAIL pip install bindings/python (offline)"
    failed=$((failed + 1))
fi
cd "$tmp"
PYTHONPATH="$tmp/site" PYTHONDONTWRITEBYTECODE=1 "$py" -m pytest -p no:cacheprovider -q \
    --rootdir "$tmp" "$here/tests/test_dsv4.py" >"$tmp/pytest.log" 2>&1
rc=$?
cat "$tmp/pytest.log"
line=$(tail -n 1 "$tmp/pytest.log")
p=$(echo "$line" | sed -n 's/.* \([0-9][0-9]*\) passed.*/\1/p; s/^\([0-9][0-9]*\) passed.*/\1/p' | head -n 1)
f=$(echo "$line" | sed -n 's/.* \([0-9][0-9]*\) failed.*/\1/p; s/^\([0-9][0-9]*\) failed.*/\1/p' | head -n 1)
e=$(echo "$line" | sed -n 's/.* \([0-9][0-9]*\) error.*/\1/p' | head -n 1)
passed=$((passed + ${p:-0}))
failed=$((failed + ${f:-0} + ${e:-0}))
[ "$rc" = 0 ] || [ "${f:-0}${e:-0}" != 00 ] || failed=$((failed + 1))

# 2. lifetimes under valgrind
if command -v valgrind >/dev/null 2>&1; then
    "$py" -c 'import sys; sys.path.insert(0, sys.argv[1]); from conftest import write_small_tokenizer as w; w(sys.argv[2], sys.argv[3])' \
        "$here/tests" "$DSV4_SHARED_DIR/tokenizers/deepseek-v4/tokenizer.json" "$tmp/tokenizer.json"
    PYTHONPATH="$tmp/site" PYTHONMALLOC=malloc PYTHONDONTWRITEBYTECODE=1 valgrind --leak-check=full \
        --show-leak-kinds=definite,indirect --num-callers=40 --log-file="$tmp/vg.log" \
        "$py" "$here/tests/leakcheck.py" "$DSV4_SHARED_DIR/golden/tiny-a/ckpt" \
        "$tmp/tokenizer.json" >"$tmp/leak.out" 2>&1
    rc=$?
    cat "$tmp/leak.out"
    if "$py" "$here/tests/valgrind_check.py" "$tmp/vg.log" && [ "$rc" = 0 ]; then
        passed=$((passed + 1))
    else
        echo "FAIL leakcheck.py under valgrind (exit $rc)"
        failed=$((failed + 1))
    fi
elif [ "$ci" = true ]; then
    echo "FAIL valgrind missing (Debian: valgrind)"
    failed=$((failed + 1))
else
    echo "valgrind missing: the leak check is skipped"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
