#!/bin/sh
# scripts/deps.sh — install the Debian packages libdsv4 needs to build and
# test (bookworm); clang, its sanitizer and libFuzzer runtimes and LLVM's
# OpenMP are for the clang build and the fuzz targets (tests/fuzz); pytest, pip, valgrind,
# Go, bindgen (which loads clang's libclang) and Rust for the binding tests (bindings/, suite
# 'bindings'); libmicrohttpd is dsv4-server's HTTP library, wrk and curl drive its test
# (tests/server); python3-regex for the tiny model's tokenizer tools
# (tools/train-tiny/data, checked by tests/text/tiny_tokenizer_check.py);
# python3-torch runs the tiny model's training script test (tools/train-tiny);
# llvm-16 gives llvm-mca, the static model of the kernels' loops (tools/dsv4-mca.py,
# test mca-model).
# Does nothing when everything is already installed.
# Runs apt-get directly as root, through sudo otherwise.
set -eu
pkgs="build-essential g++ meson ninja-build pkg-config python3 python3-numpy python3-regex
      libdnnl-dev libjansson-dev libzstd-dev zlib1g-dev libpcre2-dev
      abigail-tools ca-certificates libsimde-dev
      clang libclang-rt-14-dev libomp-dev
      python3-pytest python3-pip python3-torch valgrind golang-go bindgen
      libmicrohttpd-dev wrk curl llvm-16"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
# node + npm (tokenizer cross-checks, the demo tokenizer): any install that
# provides both commands will do (Debian's packages, or a bundled npm)
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
# Rust (bindings/rust): Debian's rustc and cargo unless a toolchain is already on the PATH
command -v cargo >/dev/null 2>&1 || missing="$missing rustc cargo"
[ -z "$missing" ] && exit 0
echo "deps.sh: installing:$missing" >&2
if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
# shellcheck disable=SC2086
$sudo apt-get install -y -q --no-install-recommends $missing
