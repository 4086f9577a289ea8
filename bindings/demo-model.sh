#!/bin/sh
# bindings/demo-model.sh SYNTH OUT — make the demo model of run-demo.sh for the binding tests:
# dsv4-synth --preset tiny --seed 1 (random weights, the real vocabulary) plus the DeepSeek-V4
# tokenizer that tools/dsv4-tokenizer-v4.py builds from the DeepSeek-V3 file ($DSV4_V3_TOKENIZER,
# the npm copy run-demo.sh uses, else the shared copy in $DSV4_SHARED_DIR/tokenizers/deepseek-v3).
# Nothing is done when OUT already holds it; built in a temporary folder and renamed, so test
# scripts running side by side may call it at once. Prints OUT.
set -eu
synth=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
if [ -f "$out/config.json" ] && [ -f "$out/tokenizer.json" ]; then echo "$out"; exit 0; fi
shared=${DSV4_SHARED_DIR:-$here/../../shared}
v3=${DSV4_V3_TOKENIZER:-}
[ -n "$v3" ] && [ -f "$v3" ] || v3=$shared/tokenizers/deepseek-v3/tokenizer.json
mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d "$out.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$synth" --preset tiny --out "$tmp/m" --seed 1 >/dev/null
python3 "$here/../tools/dsv4-tokenizer-v4.py" "$v3" "$tmp/m" >/dev/null
mv -T "$tmp/m" "$out" 2>/dev/null || [ -f "$out/tokenizer.json" ]
echo "$out"
