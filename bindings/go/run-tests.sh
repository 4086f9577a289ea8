#!/bin/sh
# bindings/go/run-tests.sh BUILD_DIR — `go test` of the Go binding (offline, standard library only)
# against the libdsv4 of BUILD_DIR: cgo finds it through BUILD_DIR/pkgconfig/dsv4-uninstalled.pc,
# the loader through LD_LIBRARY_PATH. Exit 77 (skipped) without the go command, except under
# CI=true, where that fails (Debian: golang-go). Ends with "N passed, N failed".
set -u
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v go >/dev/null 2>&1; then
    echo "bindings-go: no go command (Debian: golang-go)"
    if [ "${CI:-}" = true ]; then echo "0 passed, 1 failed"; exit 1; fi
    exit 77
fi
export PKG_CONFIG_PATH="$build/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="$build${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export DSV4_SHARED_DIR="${DSV4_SHARED_DIR:-$here/../../../shared}"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local GOTELEMETRY=off
export GOCACHE="$build/bindings/go-cache" GOPATH="$build/bindings/go-path"
DSV4_DEMO_MODEL=$(sh "$here/../demo-model.sh" "$build/tools/dsv4-synth" "$build/bindings/demo-tiny") ||
    { echo "bindings-go: the demo model could not be made"; echo "0 passed, 1 failed"; exit 1; }
export DSV4_DEMO_MODEL
log="$build/bindings/go-test.log"
cd "$here" && go test -count=1 -v ./... >"$log" 2>&1
rc=$?
cat "$log"
passed=$(grep -c -- '^--- PASS' "$log")
failed=$(grep -c -- '^--- FAIL' "$log")
[ "$rc" = 0 ] || [ "$failed" != 0 ] || failed=1
echo "$passed passed, $failed failed"
[ "$rc" = 0 ]
