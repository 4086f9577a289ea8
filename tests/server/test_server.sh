#!/usr/bin/env bash
# test_server.sh SERVER SYNTH [TEST_MJS] — dsv4-server end to end on loopback:
# a tiny synthetic checkpoint with the real vocabulary (dsv4-synth) and the
# real DeepSeek-V4 tokenizer of the shared data; the server on a free port
# (--port 0) with an API key; the Node suite (server.test.mjs: the openai and
# @anthropic-ai/sdk npm clients, raw HTTP for bad inputs); a bounded wrk run
# (zero errors, the server still answering); then SIGTERM during a stream
# (the stream ends with an error event, the server exits promptly).
# Needs node + the npm clients (tests/server/ci-setup.sh; SERVER_NODE_MODULES)
# and wrk; without them the test is skipped (exit 77) unless CI=true.
# Ends with "N passed, N failed".
set -u
server=$1
synth=$2
here=$(cd "$(dirname "$0")" && pwd)
suite=${3:-$here/server.test.mjs}
shared=${DSV4_SHARED_DIR:-$(cd "$here/../../.." && pwd)/shared}
tok=$shared/tokenizers/deepseek-v4/tokenizer.json
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dsv4-server-test.XXXXXX")
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
skip() {
    if [ "${CI:-}" = true ]; then bad "$1"; finish; fi
    echo "skipped: $1"
    exit 77
}

modules=${SERVER_NODE_MODULES:-${HOME:-/tmp}/.cache/libdsv4-npm/node_modules}
command -v node >/dev/null 2>&1 || skip "no node"
[ -f "$modules/openai/package.json" ] && [ -f "$modules/@anthropic-ai/sdk/package.json" ] ||
    skip "no openai/@anthropic-ai/sdk in $modules (tests/server/ci-setup.sh installs them)"
[ -f "$tok" ] || skip "no tokenizer at $tok (set DSV4_SHARED_DIR)"

model=$tmp/model
if ! "$synth" --preset tiny --out "$model" --seed 7 >"$tmp/synth.log" 2>&1; then
    bad "dsv4-synth --preset tiny" "$(tail -n 5 "$tmp/synth.log")"
    finish
fi
cp "$tok" "$model/tokenizer.json"

# --- the command line ---------------------------------------------------------
"$server" --help >"$tmp/out" 2>&1 && grep -q -- '--parallel' "$tmp/out" && ok "--help" || bad "--help" "$(head -3 "$tmp/out")"
"$server" >"$tmp/out" 2>&1
[ $? -eq 2 ] && grep -q 'missing MODEL_DIR' "$tmp/out" && ok "no MODEL_DIR: exit 2" || bad "no MODEL_DIR" "$(cat "$tmp/out")"
"$server" --parallel 0 "$model" >"$tmp/out" 2>&1
[ $? -eq 2 ] && grep -q 'bad value for --parallel' "$tmp/out" && ok "--parallel 0: exit 2" || bad "--parallel 0" "$(cat "$tmp/out")"
"$server" --host nowhere "$model" >"$tmp/out" 2>&1
[ $? -eq 2 ] && grep -q 'numeric' "$tmp/out" && ok "--host not numeric: exit 2" || bad "--host nowhere" "$(cat "$tmp/out")"
"$server" "$tmp/no-model" >"$tmp/out" 2>&1
[ $? -eq 1 ] && grep -q 'no-model' "$tmp/out" && ok "missing model: exit 1" || bad "missing model" "$(cat "$tmp/out")"

# --- start ----------------------------------------------------------------------
key=test-key-$$
start_server() {
    : >"$tmp/srv.out"
    "$server" --port 0 --api-key "$key" --parallel 4 --queue 8 --timeout 2 --ctx 2048 --threads 1 "$@" "$model" \
        >"$tmp/srv.out" 2>"$tmp/srv.err" &
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
if start_server; then ok "server up at $url"; else
    bad "server did not start" "$(tail -5 "$tmp/srv.err")"
    finish
fi
grep -q 'loading' "$tmp/srv.err" && ok "load progress on stderr" || bad "no load progress" "$(head -3 "$tmp/srv.err")"

# --- the Node suite -------------------------------------------------------------
DSV4_URL=$url DSV4_KEY=$key DSV4_PARALLEL=4 DSV4_QUEUE=8 SERVER_NODE_MODULES=$modules \
    node --test --test-reporter=tap "$suite" >"$tmp/node.out" 2>&1
node_st=$?
np=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$tmp/node.out")
nf=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$tmp/node.out")
grep -E '^(not )?ok [0-9]+ - ' "$tmp/node.out"
if [ -n "$np" ] && [ -n "$nf" ]; then
    pass=$((pass + np))
    fail=$((fail + nf))
    [ "$nf" -gt 0 ] && grep -A 30 '^not ok' "$tmp/node.out" | head -120
    echo "node suite: $np passed, $nf failed"
else
    bad "node suite did not report (exit $node_st)" "$(tail -20 "$tmp/node.out")"
fi

# --- wrk: a bounded load, zero errors, the server still answering ---------------
if command -v wrk >/dev/null 2>&1; then
    cat >"$tmp/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":3,"reasoning_effort":"none"}'
wrk.headers["Content-Type"] = "application/json"
EOF
    secs=${DSV4_WRK_SECONDS:-20}
    wrk -t 2 -c 8 -d "${secs}s" --timeout 10s -H "Authorization: Bearer $key" -s "$tmp/post.lua" \
        "$url/v1/chat/completions" >"$tmp/wrk.out" 2>&1
    sed 's/^/     /' "$tmp/wrk.out"
    reqs=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$tmp/wrk.out")
    if [ -n "$reqs" ] && [ "$reqs" -gt 0 ] && ! grep -qE 'Socket errors|Non-2xx' "$tmp/wrk.out"; then
        ok "wrk ${secs} s: $reqs requests, no errors"
    else
        bad "wrk: errors or no requests"
    fi
    h=$(curl -s -m 5 "$url/health")
    case $h in *'"status":"ok"'*) ok "health after wrk: $h" ;; *) bad "health after wrk" "$h" ;; esac
else
    [ "${CI:-}" = true ] && bad "wrk not installed" || echo "skipped: wrk not installed"
fi

# --- --prompt-cache DIR: a second server process starts from the first's prompt state
pc_req='{"messages":[{"role":"system","content":"You answer in one word. Keep it short and plain, always."},{"role":"user","content":"Name a colour."}],"max_tokens":2,"reasoning_effort":"none"}'
pc_cached() { # the cached prompt tokens of one request to a server started with --prompt-cache
    start_server --prompt-cache "$tmp/pc" || { echo "no server: $(tail -3 "$tmp/srv.err")"; return; }
    curl -s -m 30 -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$pc_req" \
        "$url/v1/chat/completions" | sed -n 's/.*"cached_tokens": *\([0-9]*\).*/\1/p'
    kill -TERM "$pid"; wait "$pid"; pid=
}
kill -TERM "$pid"; wait "$pid"; pid=
c1=$(pc_cached)
n_files=$(find "$tmp/pc" -type f 2>/dev/null | wc -l)
c2=$(pc_cached)
[ "${c1:-x}" = 0 ] && [ "$n_files" -ge 1 ] && [ -n "$c2" ] && [ "$c2" -gt 0 ] &&
    ok "--prompt-cache DIR: first process fed the whole prompt ($n_files file), the next restored $c2 tokens" ||
    bad "--prompt-cache DIR: cached tokens '$c1' then '$c2', $n_files files" "$(tail -3 "$tmp/srv.err")"
start_server || bad "server did not restart" "$(tail -5 "$tmp/srv.err")"

# --- SIGTERM during a stream --------------------------------------------------
curl -sN -m 30 -H "Authorization: Bearer $key" -d '{"messages":[{"role":"user","content":"long"}],"max_tokens":4000,"stream":true,"reasoning_effort":"none"}' \
    "$url/v1/chat/completions" >"$tmp/stream.out" 2>&1 &
cpid=$!
for _ in $(seq 1 100); do grep -q 'content' "$tmp/stream.out" 2>/dev/null && break; sleep 0.05; done
t0=$(date +%s%N)
kill -TERM "$pid"
wait "$pid"
st=$?
pid=
t1=$(date +%s%N)
wait "$cpid"
ms=$(( (t1 - t0) / 1000000 ))
[ "$st" -eq 0 ] && [ "$ms" -lt 10000 ] && ok "SIGTERM: exit 0 in $ms ms" || bad "SIGTERM: exit $st in $ms ms" "$(tail -3 "$tmp/srv.err")"
tail -c 300 "$tmp/stream.out" | grep -q 'shutting down' && ok "SIGTERM: the stream ended with an error event" ||
    bad "SIGTERM: no error event" "$(tail -c 300 "$tmp/stream.out")"

finish
