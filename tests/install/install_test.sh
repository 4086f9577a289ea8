#!/bin/sh
# tests/install/install_test.sh BUILD_DIR SRC_DIR — `meson install --destdir`,
# then build tests/install/consumer.c against the installed tree using only
# `pkg-config --cflags --libs dsv4`, run it, check the version it prints.
set -u
b=$1; src=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
no() { echo "FAIL $1"; fail=$((fail + 1)); }
if meson install -C "$b" --destdir "$tmp/root" --no-rebuild >"$tmp/install.log" 2>&1; then
    ok "meson install --destdir"
else
    no "meson install --destdir"; cat "$tmp/install.log"
fi
pc=$(find "$tmp/root" -name dsv4.pc | head -1)
if [ -n "$pc" ]; then ok "dsv4.pc installed"; else no "dsv4.pc installed"; fi
export PKG_CONFIG_PATH="$(dirname "${pc:-/nonexistent}")"
export PKG_CONFIG_SYSROOT_DIR="$tmp/root"
flags=$(pkg-config --cflags --libs dsv4 2>&1)
ver=$(pkg-config --modversion dsv4 2>&1)
echo "pkg-config: $flags (version $ver)"
# shellcheck disable=SC2086
if cc -std=c99 -Wall -Werror -o "$tmp/consumer" "$src/tests/install/consumer.c" $flags 2>"$tmp/cc.log"; then
    ok "consumer builds with pkg-config flags only"
else
    no "consumer builds with pkg-config flags only"; cat "$tmp/cc.log"
fi
libdir=$(pkg-config --variable=libdir dsv4)   # sysroot already applied
out=$(LD_LIBRARY_PATH="$libdir" "$tmp/consumer" 2>&1)
if [ "$out" = "libdsv4 $ver" ]; then ok "consumer runs against the installed library: $out"; else no "consumer output '$out' (want 'libdsv4 $ver')"; fi
if [ -L "$libdir/libdsv4.so.0" ] && ls "$libdir"/libdsv4.so.0.* >/dev/null 2>&1; then ok "SONAME link installed"; else no "SONAME link installed"; fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
