#!/bin/sh
# tests/install/install_test.sh BUILD_DIR SRC_DIR — `meson install --destdir`,
# then build tests/install/consumer.c against the installed tree using only
# `pkg-config --cflags --libs dsv4`, run it, check the version it prints.
# pkg-config sees dsv4.pc and nothing else (PKG_CONFIG_LIBDIR is that one
# folder): a consumer of the shared library must not need the .pc files of
# the library's private dependencies (jansson, pcre2, ... -dev packages).
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
pcdir="$(dirname "${pc:-/nonexistent}")"
export PKG_CONFIG_LIBDIR="$pcdir" PKG_CONFIG_PATH=""
export PKG_CONFIG_SYSROOT_DIR="$tmp/root"
if flags=$(pkg-config --cflags --libs dsv4 2>&1); then
    ok "pkg-config --cflags --libs dsv4 with only dsv4.pc visible"
else
    no "pkg-config --cflags --libs dsv4 with only dsv4.pc visible: $flags"
fi
ver=$(pkg-config --modversion dsv4 2>&1)
echo "pkg-config: $flags (version $ver)"
case " $flags " in
    *jansson*|*pcre2*|*zstd*|*dnnl*|*omp*) no "the dynamic flags name a private dependency: $flags" ;;
    *) ok "the dynamic flags name no private dependency" ;;
esac
if grep -q '^Requires' "$pc"; then no "dsv4.pc has no Requires lines"; else ok "dsv4.pc has no Requires lines"; fi
static=$(pkg-config --static --libs dsv4 2>&1)
case " $static " in
    *" -ljansson "*) ok "pkg-config --static lists the private libraries: $static" ;;
    *) no "pkg-config --static lists the private libraries: $static" ;;
esac
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
