#!/bin/sh
# tests/abi/update-baseline.sh — regenerate tests/abi/libdsv4.abi from a
# plain (non-sanitizer) debugoptimized build. Commit it together with the
# API change and a CHANGELOG entry.
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
b=${1:-$src/build-abi}
if [ -d "$b/meson-private" ]; then meson setup --reconfigure "$b" "$src" >/dev/null; else meson setup "$b" "$src" --buildtype=debugoptimized >/dev/null; fi
ninja -C "$b" >/dev/null
abidw --no-show-locs --no-comp-dir-path --no-corpus-path \
      --headers-dir "$src/include/dsv4" "$b/libdsv4.so" > "$src/tests/abi/libdsv4.abi"
echo "wrote tests/abi/libdsv4.abi"
