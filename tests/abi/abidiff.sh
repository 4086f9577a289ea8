#!/bin/sh
# tests/abi/abidiff.sh LIBDSV4_SO BASELINE [SUPPRESSIONS] — compare the built
# library's ABI with the checked-in baseline; any difference fails, except
# what the suppression file (default: libdsv4.abignore beside this script)
# declares not ABI: the opaque objects' private layouts and the experimental
# tier. An intended change regenerates the baseline in the same commit
# (tests/abi/update-baseline.sh).
so=$1; base=$2; supp=${3:-$(dirname "$0")/libdsv4.abignore}
if ! command -v abidiff >/dev/null 2>&1; then
    echo "abidiff not installed (apt-get install abigail-tools)"
    if [ -n "${CI:-}" ]; then echo "0 passed, 1 failed"; exit 1; fi
    echo "0 passed, 0 failed"; exit 77
fi
if [ ! -f "$base" ]; then
    echo "no baseline at $base: run tests/abi/update-baseline.sh"
    echo "0 passed, 1 failed"; exit 1
fi
if [ ! -f "$supp" ]; then
    echo "no suppression file at $supp"
    echo "0 passed, 1 failed"; exit 1
fi
if abidiff --no-show-locs --suppressions "$supp" "$base" "$so"; then
    echo "ok   abidiff: libdsv4.so matches tests/abi/libdsv4.abi"
    echo "1 passed, 0 failed"
else
    rc=$?
    echo "FAIL abidiff exit $rc: the ABI changed; if intended, run tests/abi/update-baseline.sh and say so in CHANGELOG.md"
    echo "0 passed, 1 failed"; exit 1
fi
