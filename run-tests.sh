#!/usr/bin/env bash
# run-tests.sh — set up and run every libdsv4 test on Debian bookworm:
# installs the build dependencies (apt, npm), builds a release-like tree and
# an ASan+UBSan tree, runs all suites except 'slow' in the first and the
# 'fast' and 'golden' suites in the second, then prints the total of the
# "N passed, N failed" lines every test program ends with.
# Environment: DSV4_SHARED_DIR (default ../shared), DSV4_TEST_SLOW=1 adds the
# 'slow' suite, DSV4_NO_ASAN=1 skips the sanitizer tree.
set -euo pipefail
cd "$(dirname "$0")"
root=$(pwd)
shared=${DSV4_SHARED_DIR:-$root/../shared}
step() { printf '\n== %s (%ds)\n' "$1" "$SECONDS"; }

step "dependencies"
sh scripts/deps.sh
for s in tests/*/ci-setup.sh; do
    [ -f "$s" ] && . "$s" "${HOME:-/tmp}/.cache/libdsv4-npm"
done

status=0
suites=(--no-suite slow)
[ "${DSV4_TEST_SLOW:-0}" = 1 ] && suites=()

step "build (debugoptimized)"
if [ -d build/meson-private ]; then
    meson setup --reconfigure build -Dshared_dir="$shared" >/dev/null
else
    meson setup build --buildtype=debugoptimized -Dshared_dir="$shared" >/dev/null
fi
ninja -C build

step "tests (debugoptimized)"
meson test -C build --print-errorlogs --num-processes 2 "${suites[@]}" || status=1
logs=(build/meson-logs/testlog.txt)

if [ "${DSV4_NO_ASAN:-0}" != 1 ]; then
    step "build (ASan+UBSan)"
    if [ ! -d build-asan/meson-private ]; then
        meson setup build-asan --buildtype=debugoptimized -Db_sanitize=address,undefined \
            -Db_lundef=false -Dshared_dir="$shared" >/dev/null
    fi
    ninja -C build-asan
    step "tests (ASan+UBSan: fast, golden)"
    meson test -C build-asan --print-errorlogs --num-processes 2 --timeout-multiplier 4 \
        --suite fast --suite golden || status=1
    logs+=(build-asan/meson-logs/testlog.txt)
fi

step "summary"
awk '/^[0-9]+ passed, [0-9]+ failed$/ { p += $1; f += $3; n++ }
     END { if (n == 0) { print "no test summaries found"; exit 1 }
           printf "%d test programs\n%d passed, %d failed\n", n, p, f; if (f) exit 1 }' \
    "${logs[@]}" || status=1
exit $status
