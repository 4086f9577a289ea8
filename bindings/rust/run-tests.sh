#!/bin/sh
# bindings/rust/run-tests.sh BUILD_DIR — `cargo test --offline` of dsv4-sys (the checked-in bindgen
# output against a fresh run, ABI constants) and dsv4 (the safe API) against the libdsv4 of
# BUILD_DIR, then the README's example (dsv4/examples/stream.rs) on the demo model. Exit 77
# (skipped) without cargo, except under CI=true, where that fails (Debian: rustc, cargo, bindgen).
# Ends with "N passed, N failed".
set -u
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v cargo >/dev/null 2>&1; then
    echo "bindings-rust: no cargo (Debian: cargo, rustc, bindgen)"
    if [ "${CI:-}" = true ]; then echo "0 passed, 1 failed"; exit 1; fi
    exit 77
fi
export PKG_CONFIG_PATH="$build/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="$build${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export DSV4_SHARED_DIR="${DSV4_SHARED_DIR:-$here/../../../shared}"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export CARGO_TARGET_DIR="$build/bindings/rust-target" CARGO_TERM_COLOR=never
DSV4_DEMO_MODEL=$(sh "$here/../demo-model.sh" "$build/tools/dsv4-synth" "$build/bindings/demo-tiny") ||
    { echo "bindings-rust: the demo model could not be made"; echo "0 passed, 1 failed"; exit 1; }
export DSV4_DEMO_MODEL
log="$build/bindings/rust-test.log"
cd "$here" && cargo test --offline --locked >"$log" 2>&1
rc=$?
cat "$log"
passed=$(sed -n 's/^test result: .* \([0-9][0-9]*\) passed; \([0-9][0-9]*\) failed.*/\1/p' "$log" | awk '{s += $1} END {print s + 0}')
failed=$(sed -n 's/^test result: .* \([0-9][0-9]*\) passed; \([0-9][0-9]*\) failed.*/\2/p' "$log" | awk '{s += $1} END {print s + 0}')
[ "$rc" = 0 ] || [ "$failed" != 0 ] || failed=$((failed + 1))
# the README's example, run as written from a folder holding the committed demo model models/tiny-chat
ex=$(mktemp -d "${TMPDIR:-/tmp}/dsv4-rs-XXXXXX")
mkdir "$ex/models" && ln -s "$here/../../models/tiny-chat" "$ex/models/tiny-chat"
if (cd "$here" && cargo build --offline --locked --example stream >>"$log" 2>&1) &&
    (cd "$ex" && "$CARGO_TARGET_DIR/debug/examples/stream" >"$ex/out.txt" 2>&1) && [ "$(wc -c <"$ex/out.txt")" -gt 20 ]; then
    passed=$((passed + 1))
    echo "example stream: $(head -c 120 "$ex/out.txt" | tr '\n' ' ')..."
else
    echo "FAIL example stream: $(cat "$ex/out.txt" 2>/dev/null)"
    failed=$((failed + 1))
fi
rm -rf "$ex"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
