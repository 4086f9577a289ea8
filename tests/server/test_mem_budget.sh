#!/usr/bin/env bash
# test_mem_budget.sh SERVER MODEL_DIR — dsv4-server --mem-budget (docs/memory.md)
# on the trained demo model (models/tiny-chat, with its tokenizer):
#  - a budget below the model's minimum is refused: non-zero exit, a message
#    naming the minimum;
#  - at the minimum (parsed from that message, rounded up by less than one
#    expert slot) and with --mlock the server starts, reports the memory it locked, answers greedy requests, one at a time
#    and four at once (sessions sharing and evicting the expert cache), and
#    every answer equals the one of the server without a budget;
#  - /metrics: the expert cache's slots, hits, misses and bytes read (misses
#    and bytes read above zero after the requests).
# Needs curl; skipped (exit 77) without it unless CI=true.
# Ends with "N passed, N failed".
set -u
server=$1
model=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dsv4-mem-budget.XXXXXX")
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() {
    fail=$((fail + 1))
    echo "FAIL $1"
    shift
    for l in "$@"; do printf '     %s\n' "$l"; done
}
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}
if ! command -v curl >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then bad "curl not installed"; finish; fi
    echo "skipped: no curl"
    exit 77
fi
[ -f "$model/config.json" ] && [ -f "$model/tokenizer.json" ] || { bad "no model at $model"; finish; }

# --- below the minimum: refused ------------------------------------------------
"$server" --port 0 --mem-budget 1M "$model" >"$tmp/out" 2>&1
st=$?
min_txt=$(sed -n "s/.*below this model's minimum of \([0-9.]* [KMGT]iB\).*/\1/p" "$tmp/out" | head -1)
[ "$st" -ne 0 ] && [ -n "$min_txt" ] && ok "--mem-budget 1M refused (exit $st): minimum $min_txt" ||
    bad "--mem-budget 1M: exit $st, no minimum named" "$(tail -3 "$tmp/out")"
[ -n "$min_txt" ] || finish
# the message rounds to 0.01 of its unit: add 0.01 of it (at MiB, less than one expert slot of this model)
min=$(echo "$min_txt" | awk '{ u = $2 == "KiB" ? 1024 : $2 == "MiB" ? 1048576 : $2 == "GiB" ? 1073741824 : 1099511627776;
                               printf "%d", ($1 + 0.01) * u + 1 }')
"$server" --port 0 --mem-budget "$((min / 2))" "$model" >"$tmp/out" 2>&1
st=$?
[ "$st" -ne 0 ] && grep -q "minimum" "$tmp/out" && ok "half the minimum refused (exit $st)" ||
    bad "half the minimum: exit $st" "$(tail -3 "$tmp/out")"

# --- greedy answers with and without the budget -----------------------------------
start_server() {
    : >"$tmp/srv.out"
    "$server" --port 0 --parallel 4 --ctx 1024 --threads 1 "$@" "$model" >"$tmp/srv.out" 2>"$tmp/srv.err" &
    pid=$!
    url=
    for _ in $(seq 1 300); do
        url=$(grep -o 'http://[^ ]*' "$tmp/srv.out" 2>/dev/null | head -1)
        [ -n "$url" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    url=${url%/v1}
    [ -n "$url" ]
}
stop_server() { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=; }
prompts=("What is the capital of Peru?" "Who are you?" "What is 23 plus 45?" "Give the capital of Romania as JSON.")
ask() { # ask N: the content of prompt N's greedy answer
    local body
    body=$(printf '{"messages":[{"role":"user","content":"%s"}],"max_tokens":40,"temperature":0,"reasoning_effort":"none"}' \
        "${prompts[$1]}")
    curl -s -m 120 -H 'Content-Type: application/json' -d "$body" "$url/v1/chat/completions" |
        sed -n 's/.*"content": *"\(\([^"\\]\|\\.\)*\)".*/\1/p'
}
answers() { # answers TAG: the four one by one, then the four at once
    for i in 0 1 2 3; do ask "$i" >"$tmp/$1.seq.$i"; done
    local jobs=()
    for i in 0 1 2 3; do
        ask "$i" >"$tmp/$1.par.$i" &
        jobs+=($!)
    done
    wait "${jobs[@]}"
}
if start_server; then
    answers ref
    stop_server
else
    bad "server without a budget did not start" "$(tail -3 "$tmp/srv.err")"
    finish
fi
if start_server --mem-budget "$min" --mlock; then
    ok "server up with --mem-budget $min (the minimum, $min_txt) --mlock"
    grep -q -- '--mlock: .* locked in memory' "$tmp/srv.err" && ok "--mlock: $(grep -o -- '--mlock: .*' "$tmp/srv.err")" ||
        bad "--mlock: no report of the locked memory" "$(tail -3 "$tmp/srv.err")"
    answers bud
    m=$(curl -s -m 10 "$url/metrics")
    hits=$(echo "$m" | sed -n 's/^dsv4_expert_cache_hits_total \([0-9]*\)$/\1/p')
    misses=$(echo "$m" | sed -n 's/^dsv4_expert_cache_misses_total \([0-9]*\)$/\1/p')
    rd=$(echo "$m" | sed -n 's/^dsv4_disk_read_bytes_total \([0-9]*\)$/\1/p')
    slots=$(echo "$m" | sed -n 's/^dsv4_expert_cache_slots \([0-9]*\)$/\1/p')
    [ -n "$hits" ] && [ -n "$misses" ] && [ "${misses:-0}" -gt 0 ] && [ "${rd:-0}" -gt 0 ] && [ "${slots:-0}" -gt 0 ] &&
        ok "/metrics: expert cache $slots slots, $hits hits, $misses misses, $rd bytes read" ||
        bad "/metrics: no expert-cache figures after the requests" "$(echo "$m" | grep -i 'expert\|disk\|budget')"
    kill -0 "$pid" 2>/dev/null && ok "server alive after the budgeted requests" || bad "server died" "$(tail -3 "$tmp/srv.err")"
    stop_server
else
    bad "server with --mem-budget $min did not start" "$(tail -3 "$tmp/srv.err")"
    finish
fi
for mode in seq par; do
    for i in 0 1 2 3; do
        a=$(cat "$tmp/ref.$mode.$i")
        b=$(cat "$tmp/bud.$mode.$i")
        [ -n "$a" ] && [ "$a" = "$b" ] && ok "$mode prompt $i: same answer under the budget (${#a} chars)" ||
            bad "$mode prompt $i: answers differ" "without: $a" "with:    $b"
    done
done
finish
