#!/bin/sh
# tests/abi/abidiff.sh LIBDSV4_SO BASELINE — compare the built library's ABI
# with the checked-in baseline; any difference fails. An intended change
# regenerates the baseline in the same commit (tests/abi/update-baseline.sh).
so=$1; base=$2
if ! command -v abidiff >/dev/null 2>&1; then
    echo "abidiff not installed (apt-get install abigail-tools)"
    if [ -n "${CI:-}" ]; then echo "0 passed, 1 failed"; exit 1; fi
    echo "0 passed, 0 failed"; exit 77
fi
if [ ! -f "$base" ]; then
    echo "no baseline at $base: run tests/abi/update-baseline.sh"
    echo "0 passed, 1 failed"; exit 1
fi
if abidiff --no-show-locs "$base" "$so"; then
    echo "ok   abidiff: libdsv4.so matches tests/abi/libdsv4.abi"
    echo "1 passed, 0 failed"
else
    rc=$?
    echo "FAIL abidiff exit $rc: the ABI changed; if intended, run tests/abi/update-baseline.sh and say so in CHANGELOG.md"
    echo "0 passed, 1 failed"; exit 1
fi
