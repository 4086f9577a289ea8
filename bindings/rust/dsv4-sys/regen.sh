#!/bin/sh
# bindings/rust/dsv4-sys/regen.sh [OUT] — generate the Rust declarations of the public headers with
# bindgen (Debian's `bindgen` package, 0.60) into OUT (default: src/bindings.rs, the checked-in
# copy). tests/regen.rs runs it into a temporary file and compares with the checked-in copy.
# Run after a public header change and commit the result. bindgen's own rustfmt pass is off (it
# depends on whether a rustfmt is installed); a line break after each item keeps it readable.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/src/bindings.rs}
bindgen "$here/wrapper.h" --no-layout-tests --no-doc-comments --no-rustfmt-bindings \
    --allowlist-function 'dsv4_.*' --allowlist-type 'dsv4_.*' --allowlist-var 'DSV4_.*' \
    --default-macro-constant-type signed --no-prepend-enum-name \
    -- -I"$here/../../../include" -std=c99 |
    sed -e 's/ ; / ;\
/g' -e 's/ } / }\
/g' -e 's/ {  *pub fn /{\
    pub fn /g' | sed -e 's/^} /}\
/' > "$out.tmp"
mv "$out.tmp" "$out"
