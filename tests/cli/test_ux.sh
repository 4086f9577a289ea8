#!/usr/bin/env bash
# test_ux.sh CLI INFO CHAT SYNTH — the first hour of a user, on the demo
# model (what run-demo.sh makes: dsv4-synth --preset tiny --seed 1, with
# the real DeepSeek-V4 tokenizer in the model directory):
#  - `dsv4-cli MODEL 'question'` with the defaults (thinking on, no budget)
#    ends with a non-empty answer within --max-tokens;
#  - --spin values accepted and refused;
#  - the memory warnings of dsv4-info, model load and dsv4-cli when the
#    weights (or the context's RAM) exceed DSV4_PHYS_MEM_LIMIT;
#  - the README's example (examples/dsv4-chat.c) answers;
#  - on a terminal (script(1)), a long prompt shows its prefill progress.
# Random weights: the checks are about structure, never about the words.
# Ends with "N passed, N failed"; exits nonzero when a check failed.
set -u
cli=$1 info=$2 chat=$3 synth=$4
shared=${DSV4_SHARED_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)/shared}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dsv4-ux-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() {
    fail=$((fail + 1))
    echo "FAIL $1"
    shift
    for l in "$@"; do printf '     %s\n' "$l"; done
}
# run NAME STATUS CMD...: stdout to $tmp/out, stderr to $tmp/err
run() {
    local name=$1 want=$2 st
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    st=$?
    if [ "$st" -eq "$want" ]; then ok "$name (exit $st)"; return 0; fi
    bad "$name: exit $st, expected $want" "$(tail -n 5 "$tmp/err")"
    return 1
}
expect() { if grep -Eq -- "$3" "$2"; then ok "$1"; else bad "$1: no match for /$3/" "$(tail -n 5 "$2")"; fi; }
refuse() { if grep -Eq -- "$3" "$2"; then bad "$1" "$(grep -E -- "$3" "$2" | head -3)"; else ok "$1"; fi; }

model=$tmp/tiny
if ! "$synth" --preset tiny --out "$model" --seed 1 >"$tmp/synth.log" 2>&1 ||
    ! cp "$shared/tokenizers/deepseek-v4/tokenizer.json" "$model/"; then
    bad "the demo model" "$(tail -n 5 "$tmp/synth.log")"
    echo "$pass passed, $fail failed"
    exit 1
fi

# --- the defaults answer ---------------------------------------------------------
# stats: "decode: N tokens (R reasoning) ..."; the answer follows "[answer]"
answer_check() { # NAME MAX
    local stats n r body
    stats=$(grep '^prompt: ' "$tmp/err" | tail -1)
    n=$(printf '%s' "$stats" | sed -E 's/.*decode: ([0-9]+) tokens \(([0-9]+) reasoning\).*/\1/')
    r=$(printf '%s' "$stats" | sed -E 's/.*decode: ([0-9]+) tokens \(([0-9]+) reasoning\).*/\2/')
    body=$(sed -n '/^\[answer\]$/,$p' "$tmp/out" | tail -n +2 | tr -d ' \n\t')
    if [ -n "$n" ] && [ "$n" -le "$2" ] 2>/dev/null && [ "$r" -lt "$n" ] && [ -n "$body" ]; then
        ok "$1: $n tokens (at most $2), $r of them reasoning, then a non-empty answer"
    else
        bad "$1: no answer within $2 tokens" "$stats" "$(tail -c 300 "$tmp/out")"
    fi
}
if run "dsv4-cli MODEL 'question' (the defaults)" 0 "$cli" "$model" 'Explain what a mixture-of-experts model is.'; then
    expect "thinking is on by default" "$tmp/out" '^\[reasoning\]$'
    answer_check "default max tokens (256)" 256
fi
run "--max-tokens 8: still an answer" 0 "$cli" --max-tokens 8 "$model" 'Why is the sky blue?' &&
    answer_check "--max-tokens 8" 8
run "--effort low --max-tokens 16" 0 "$cli" --effort low --max-tokens 16 "$model" 'Hi' && answer_check "--effort low" 16
run "--think-budget beyond --max-tokens: a warning" 0 "$cli" --think-budget 40 --max-tokens 20 "$model" hi &&
    expect "the warning names both flags" "$tmp/err" 'warning: --think-budget 40 leaves no room for an answer within --max-tokens 20'
run "--help says thinking is on by default" 0 "$cli" --help && expect "--help: thinking on" "$tmp/out" 'thinking \(on by default\)'

# --- --spin ----------------------------------------------------------------------
for v in auto 0 100 1048576; do
    run "--spin $v accepted" 0 "$cli" --spin "$v" --max-tokens 2 --no-think --quiet "$model" hi
done
for v in -1 x 1048577 ''; do
    run "--spin '$v' refused" 2 "$cli" --spin "$v" --max-tokens 2 --no-think --quiet "$model" hi &&
        expect "--spin '$v': message" "$tmp/err" 'spin'
done
run "--help lists --spin" 0 "$cli" --help && expect "--help: --spin" "$tmp/out" '--spin N\|auto'

# --- memory warnings ---------------------------------------------------------------
run "dsv4-info on the idle machine" 0 "$info" "$model"
refuse "no warning when the model fits" "$tmp/err" 'warning'
expect "dsv4-info prints the physical memory" "$tmp/out" '^memory +[0-9.]+ [KMGT]?i?B physical$'
run "dsv4-info, weights above DSV4_PHYS_MEM_LIMIT=1M" 0 env DSV4_PHYS_MEM_LIMIT=1M "$info" "$model"
expect "dsv4-info warns (config only)" "$tmp/err" 'warning: the weights \(.*\) exceed the physical memory \(1.00 MiB \(DSV4_PHYS_MEM_LIMIT\)\)'
run "dsv4-info --load, limit 1M" 0 env DSV4_PHYS_MEM_LIMIT=1M "$info" --load "$model"
expect "model load warns" "$tmp/err" 'warning: .*the weights \(.*\) exceed the physical memory \(1.00 MiB, DSV4_PHYS_MEM_LIMIT\)'
run "dsv4-cli, limit 1M" 0 env DSV4_PHYS_MEM_LIMIT=1M "$cli" --max-tokens 2 --no-think "$model" hi
expect "dsv4-cli shows the load warning" "$tmp/err" 'dsv4-cli: warning: .*exceed the physical memory'
run "a bad DSV4_PHYS_MEM_LIMIT is ignored" 0 env DSV4_PHYS_MEM_LIMIT=lots "$info" "$model"
refuse "no warning with a bad limit" "$tmp/err" 'warning'
# weights that fit, a context that does not: the limit between the two
if run "dsv4-info --json" 0 "$info" --json "$model"; then
    w=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_total"])' "$tmp/out")
    limit=$((w + w / 8))
    run "dsv4-info --ctx 1048576, limit just above the weights" 0 env DSV4_PHYS_MEM_LIMIT=$limit "$info" --ctx 1048576 "$model"
    expect "dsv4-info warns about the context's RAM" "$tmp/err" 'warning: about .* of RAM are needed at 1048576 tokens'
    run "dsv4-cli --ctx 1048576, same limit" 0 env DSV4_PHYS_MEM_LIMIT=$limit "$cli" --ctx 1048576 --max-tokens 2 --no-think "$model" hi
    expect "dsv4-cli warns about the context's RAM" "$tmp/err" 'warning: about .* GiB are needed at 1048576 tokens'
fi

# --- the README's example ------------------------------------------------------------
run "examples/dsv4-chat: usage" 2 "$chat"
if run "examples/dsv4-chat MODEL 'question'" 0 "$chat" "$model" 'What is a "mixture" of experts?'; then
    expect "dsv4-chat: finish and usage" "$tmp/out" '^\[finish: (stop|length); [0-9]+ prompt tokens, [0-9]+ completion tokens \([0-9]+ reasoning\)\]$'
    body=$(grep -v '^\[finish' "$tmp/out" | tr -d ' \n\t')
    if [ -n "$body" ]; then ok "dsv4-chat: an answer on stdout"; else bad "dsv4-chat: empty answer" "$(cat "$tmp/out")"; fi
    if [ -s "$tmp/err" ]; then ok "dsv4-chat: reasoning on stderr"; else bad "dsv4-chat: no reasoning on stderr"; fi
fi
readme=$(dirname "$0")/../../README.md
src=$(dirname "$0")/../../examples/dsv4-chat.c
if python3 -c 'import sys; sys.exit(open(sys.argv[2]).read() not in open(sys.argv[1]).read())' "$readme" "$src"; then
    ok "the README's API example is examples/dsv4-chat.c, verbatim"
else
    bad "the README's API example differs from examples/dsv4-chat.c"
fi
mkdir -p "$tmp/notok" && cp "$model"/*.json "$model"/*.safetensors "$tmp/notok/" 2>/dev/null && rm -f "$tmp/notok/tokenizer.json"
run "examples/dsv4-chat without tokenizer.json" 1 "$chat" "$tmp/notok" hi &&
    expect "dsv4-chat: says why" "$tmp/err" 'dsv4_tokenizer_load'

# --- prefill progress on a terminal -------------------------------------------------------
if command -v script >/dev/null 2>&1; then
    for i in $(seq 1 60); do printf 'The quick brown fox jumps over the lazy dog number %d. ' "$i"; done >"$tmp/long.txt"
    script -qec "'$cli' --max-tokens 2 --no-think -f '$tmp/long.txt' '$model'" /dev/null >"$tmp/tty.out" 2>&1 </dev/null
    expect "a long prompt shows its prefill progress on a terminal" "$tmp/tty.out" 'prefill [0-9]+/[0-9]+ tokens'
    run "no progress lines when stderr is not a terminal" 0 "$cli" --max-tokens 2 --no-think -f "$tmp/long.txt" "$model"
    refuse "no prefill line in a log" "$tmp/err" 'prefill'
else
    echo "skip prefill progress: no script(1)"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
