#!/usr/bin/env bash
# test_cli.sh CLI SYNTH — end-to-end checks of dsv4-cli: one-shot answers,
# determinism, JSON mode, tool calls, interactive turns with prefix reuse,
# and the error paths (exit 2 for usage, 1 for runtime, a message each).
#
# The model is a tiny synthetic checkpoint with the real vocabulary size
# (dsv4-synth, written to a temporary directory) so that the real
# DeepSeek-V4 tokenizer of the shared data fits it; its weights are random,
# so the checks are about structure, never about the words.
# Ends with "N passed, N failed"; exits nonzero when a check failed.
set -u
cli=$1
synth=$2
shared=${DSV4_SHARED_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)/shared}
tok=$shared/tokenizers/deepseek-v4/tokenizer.json
golden=$shared/golden/tiny-a/ckpt
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dsv4-cli-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() {
    fail=$((fail + 1))
    echo "FAIL $1"
    shift
    for l in "$@"; do printf '     %s\n' "$l"; done
}
# run NAME STATUS ARGS...: run the CLI (stdin from /dev/null unless $input
# is set), stdout to $tmp/out, stderr to $tmp/err; check the exit status.
run() {
    local name=$1 want=$2 st
    shift 2
    if [ -n "${input:-}" ]; then
        printf '%s' "$input" | "$cli" "$@" >"$tmp/out" 2>"$tmp/err"
    else
        "$cli" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    fi
    st=$?
    if [ "$st" -eq "$want" ]; then
        ok "$name (exit $st)"
        return 0
    fi
    bad "$name: exit $st, expected $want" "$(tail -n 5 "$tmp/err")"
    return 1
}
# expect NAME FILE REGEX: FILE has a line matching REGEX (grep -E)
expect() {
    if grep -Eq -- "$3" "$2"; then ok "$1"; else bad "$1: no match for /$3/ in $(basename "$2")" "$(tail -n 5 "$2")"; fi
}
# pycheck NAME FILE CODE: python3 CODE with sys.argv[1] = FILE succeeds
pycheck() {
    local msg
    if msg=$(python3 -c "$3" "$2" 2>&1); then ok "$1"; else bad "$1" "$msg" "$(head -c 600 "$2")"; fi
}

if [ ! -f "$tok" ]; then
    bad "shared data: no tokenizer at $tok (set DSV4_SHARED_DIR)"
    echo "$pass passed, $fail failed"
    exit 1
fi
model=$tmp/model
if ! "$synth" --preset tiny --out "$model" --seed 7 >"$tmp/synth.log" 2>&1; then
    bad "dsv4-synth --preset tiny" "$(tail -n 5 "$tmp/synth.log")"
    echo "$pass passed, $fail failed"
    exit 1
fi
common=(--tokenizer "$tok" --threads 2)

# --- usage and the error paths ----------------------------------------------
run "--help" 0 --help && expect "--help lists the flags" "$tmp/out" '--think-budget'
run "--version" 0 --version && expect "--version names the library" "$tmp/out" 'libdsv4 [0-9]+\.[0-9]+'
run "unknown flag" 2 --no-such-flag "$model" hi && expect "unknown flag: message" "$tmp/err" "unknown option '--no-such-flag'"
run "bad number" 2 --max-tokens 0 "$model" hi && expect "bad number: message" "$tmp/err" 'bad value for --max-tokens'
run "bad effort" 2 --effort extreme "$model" hi && expect "bad effort: message" "$tmp/err" 'bad value for --effort'
run "missing value" 2 "$model" hi --seed && expect "missing value: message" "$tmp/err" '--seed needs a value'
run "no model dir" 2 && expect "no model dir: message" "$tmp/err" 'missing MODEL_DIR'
run "two prompts" 2 -p a "$model" b && expect "two prompts: message" "$tmp/err" 'give the prompt once'
run "missing model dir" 1 "${common[@]}" "$tmp/no-such-model" hi &&
    expect "missing model dir: message" "$tmp/err" 'no-such-model.*No such file'
run "model dir without tokenizer" 1 "$model" hi && expect "no tokenizer: message" "$tmp/err" 'no tokenizer.json.*--tokenizer'
mkdir -p "$tmp/empty-dir"
run "model dir without config.json" 1 "$tmp/empty-dir" hi &&
    expect "no config.json: message" "$tmp/err" 'empty-dir has no config.json'
run "too many threads" 2 --threads 1025 "$model" hi &&
    expect "too many threads: message" "$tmp/err" "bad value for --threads: '1025' \\(an integer in \\[0, 1024\\]\\)"
run "--help: the threads cap" 0 --help && expect "--help: the threads cap" "$tmp/out" 'at most 1024'
run "missing prompt file" 1 "${common[@]}" -f "$tmp/nope.txt" "$model" &&
    expect "missing prompt file: message" "$tmp/err" 'cannot open .*nope.txt'
printf '{"type": "object", ' >"$tmp/broken.json"
run "broken schema file" 1 "${common[@]}" --schema "$tmp/broken.json" "$model" hi &&
    expect "broken schema: message" "$tmp/err" 'schema .*broken.json'
echo '{"type": "function"}' >"$tmp/notarray.json"
run "tools not an array" 1 "${common[@]}" --tools "$tmp/notarray.json" "$model" hi &&
    expect "tools not an array: message" "$tmp/err" 'expected a JSON array'
if [ -f "$golden/config.json" ]; then
    # the golden checkpoints' 512-token vocabulary does not fit the real tokenizer
    run "golden model with the real tokenizer" 1 "${common[@]}" --quiet "$golden" hi &&
        expect "vocabulary mismatch: message" "$tmp/err" 'vocabulary of 512'
fi

# --- one-shot ------------------------------------------------------------------
if run "one-shot" 0 "${common[@]}" --max-tokens 8 --seed 1 "$model" 'Hello, who are you?'; then
    cp "$tmp/out" "$tmp/first.out"
    expect "stats line" "$tmp/err" '^prompt: [0-9]+ tokens \([0-9]+ cached\) in [0-9.]+ s, [0-9.]+ tok/s \| decode: [0-9]+ tokens \([0-9]+ reasoning\) in [0-9.]+ s, [0-9.]+ tok/s \| finish: (stop|length)$'
    expect "loading line (stderr not a terminal)" "$tmp/err" '^loading .* \.\.\. done'
    expect "reasoning header (thinking by default, stdout not a terminal)" "$tmp/out" '^\[reasoning\]$'
    if run "one-shot again, same seed" 0 "${common[@]}" --max-tokens 8 --seed 1 "$model" 'Hello, who are you?'; then
        if cmp -s "$tmp/first.out" "$tmp/out"; then ok "same seed, same output"; else
            bad "same seed, different output" "$(head -c 300 "$tmp/first.out")" "$(head -c 300 "$tmp/out")"; fi
    fi
fi
# --- a memory budget (docs/memory.md): the same output; bad and too small budgets refused --------
if [ -f "$tmp/first.out" ] && run "--mem-budget 69M" 0 "${common[@]}" --mem-budget 69M --max-tokens 8 --seed 1 "$model" \
    'Hello, who are you?'; then
    if cmp -s "$tmp/first.out" "$tmp/out"; then ok "--mem-budget: same output"; else
        bad "--mem-budget: different output" "$(head -c 300 "$tmp/first.out")" "$(head -c 300 "$tmp/out")"; fi
fi
run "bad --mem-budget" 2 --mem-budget 12X "$model" hi && expect "bad --mem-budget: message" "$tmp/err" 'bad value for --mem-budget'
for v in 0 -5G +5G 0% 101% 5%x 1GX 1GiBs 99999999999T 18446744073709551616 '' ' 5G'; do
    run "bad --mem-budget '$v'" 2 --mem-budget "$v" "$model" hi &&
        expect "bad --mem-budget '$v': message" "$tmp/err" 'bad value for --mem-budget'
done
if [ -f "$tmp/first.out" ] && run "--mlock" 0 "${common[@]}" --mlock --max-tokens 8 --seed 1 "$model" 'Hello, who are you?'; then
    if cmp -s "$tmp/first.out" "$tmp/out"; then ok "--mlock: same output"; else
        bad "--mlock: different output" "$(head -c 300 "$tmp/first.out")" "$(head -c 300 "$tmp/out")"; fi
fi
run "--mem-budget too small" 1 "${common[@]}" --mem-budget 1M "$model" hi &&
    expect "--mem-budget too small: message" "$tmp/err" "below this model's minimum"
run "--hide-reasoning --quiet" 0 "${common[@]}" --max-tokens 6 --seed 1 --hide-reasoning --quiet "$model" hi &&
    if grep -q '\[reasoning\]' "$tmp/out" || [ -s "$tmp/err" ]; then
        bad "--hide-reasoning --quiet printed reasoning or stderr" "$(head -c 300 "$tmp/out")" "$(head -c 300 "$tmp/err")"
    else ok "--hide-reasoning --quiet: no reasoning, nothing on stderr"; fi
echo 'Tell me about the sea.' >"$tmp/prompt.txt"
run "prompt from -f FILE" 0 "${common[@]}" --max-tokens 4 --no-think --quiet -f "$tmp/prompt.txt" "$model"
input='Tell me about the sea.' run "prompt from stdin (-)" 0 "${common[@]}" --max-tokens 4 --no-think --quiet "$model" -

# --- the response JSON -----------------------------------------------------------
if run "--raw-json --no-think" 0 "${common[@]}" --max-tokens 8 --seed 1 --no-think --raw-json --quiet "$model" hi; then
    pycheck "raw JSON: a chat completion with usage" "$tmp/out" '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["object"] == "chat.completion", r["object"]
m = r["choices"][0]["message"]
assert m["role"] == "assistant" and isinstance(m["content"], str)
assert "reasoning_content" not in m or not m["reasoning_content"], "reasoning without thinking"
assert r["choices"][0]["finish_reason"] in ("stop", "length")
assert r["usage"]["completion_tokens"] <= 8'
fi
if run "--json --raw-json" 0 "${common[@]}" --max-tokens 96 --seed 1 --no-think --json --raw-json --quiet "$model" \
    'Reply with a JSON object.'; then
    pycheck "--json: the content parses as a JSON object" "$tmp/out" '
import json, sys
r = json.load(open(sys.argv[1]))
c = r["choices"][0]["message"]["content"]
assert isinstance(json.loads(c), dict), c'
fi
cat >"$tmp/schema.json" <<'EOF'
{"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}, "sunny": {"type": "boolean"}},
 "required": ["city", "sunny"], "additionalProperties": false}
EOF
if run "--schema --raw-json" 0 "${common[@]}" --max-tokens 64 --seed 1 --no-think --schema "$tmp/schema.json" \
    --raw-json --quiet "$model" 'Weather?'; then
    pycheck "--schema: the content follows the schema" "$tmp/out" '
import json, sys
r = json.load(open(sys.argv[1]))
v = json.loads(r["choices"][0]["message"]["content"])
assert set(v) == {"city", "sunny"} and v["city"] in ("Paris", "Rome") and isinstance(v["sunny"], bool), v'
fi
cat >"$tmp/tools.json" <<'EOF'
[{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
  "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
                 "required": ["city"]}}}]
EOF
if run "--tools --tool-choice NAME (streamed)" 0 "${common[@]}" --max-tokens 64 --seed 1 --no-think \
    --tools "$tmp/tools.json" --tool-choice get_weather --quiet "$model" 'Weather in Paris?'; then
    expect "tool call printed" "$tmp/out" '^\[tool call #0\] get_weather\(\{.*\}\)$'
fi
if run "--tools --tool-choice NAME --raw-json" 0 "${common[@]}" --max-tokens 64 --seed 1 --no-think \
    --tools "$tmp/tools.json" --tool-choice get_weather --raw-json --quiet "$model" 'Weather in Paris?'; then
    pycheck "tool call in the response JSON" "$tmp/out" '
import json, sys
r = json.load(open(sys.argv[1]))
ch = r["choices"][0]
calls = ch["message"]["tool_calls"]
# "length" too: the generator may have closed the calls early for lack of
# an allowed token with nonzero probability (random weights)
assert ch["finish_reason"] in ("tool_calls", "length"), ch["finish_reason"]
assert calls and all(c["function"]["name"] == "get_weather" for c in calls), calls
assert json.loads(calls[0]["function"]["arguments"])["city"] in ("Paris", "Rome"), calls'
fi
run "--tool-choice without --tools" 2 "${common[@]}" --tool-choice auto "$model" hi

# --- interactive ---------------------------------------------------------------
input=$'Hello there.\nAnd a second question?\n/reset\nAfter the reset.\n/exit\nnot read\n' \
    run "interactive: three turns, /reset, /exit" 0 "${common[@]}" --max-tokens 4 --seed 1 --no-think "$model"
n=$(grep -c '^prompt: ' "$tmp/err")
if [ "$n" -eq 3 ]; then ok "interactive: three answers"; else bad "interactive: $n answers, expected 3" "$(cat "$tmp/err")"; fi
# the second turn starts with the first: the generator reuses those tokens
second=$(grep '^prompt: ' "$tmp/err" | sed -n 2p)
cached=$(printf '%s' "$second" | sed -E 's/^prompt: [0-9]+ tokens \(([0-9]+) cached\).*/\1/')
if [ -n "$cached" ] && [ "$cached" -gt 0 ] 2>/dev/null; then ok "interactive: second turn reuses $cached cached tokens"; else
    bad "interactive: second turn reused no tokens" "$second"; fi

# --- sessions (docs/sessions.md): a thinking chat feeds only each new turn; --session, --prompt-cache
# turn N > 1 restores the checkpoint before turn N-1's <think>: cached = the previous prompt minus one
cached_of() { grep '^prompt: ' "$tmp/err" | sed -n "${1}p" | sed -E 's/^prompt: ([0-9]+) tokens \(([0-9]+) cached\).*/\1 \2/'; }
input=$'Hello there.\nAnd a second question?\n' \
    run "thinking chat with --session" 0 "${common[@]}" --max-tokens 8 --think-budget 3 --seed 1 --session "$tmp/s" "$model"
read -r p1 c1 <<<"$(cached_of 1)"; read -r p2 c2 <<<"$(cached_of 2)"
if [ "${c2:-0}" -eq $((p1 - 1)) ] 2>/dev/null; then ok "thinking chat: turn 2 feeds $((p2 - c2)) of $p2 prompt tokens"; else
    bad "thinking chat: turn 2 cached ${c2:-?}, expected $((p1 - 1))" "$(cat "$tmp/err")"; fi
input=$'A third one.\n' run "--session restored" 0 "${common[@]}" --max-tokens 8 --think-budget 3 --seed 1 --session "$tmp/s" "$model"
expect "--session: restored" "$tmp/err" 'restored .*: [0-9]+ tokens, 4 messages'
read -r p3 c3 <<<"$(cached_of 1)"
if [ "${c3:-0}" -eq $((p2 - 1)) ] 2>/dev/null; then ok "restored session: turn 3 feeds $((p3 - c3)) of $p3"; else
    bad "restored session: turn 3 cached ${c3:-?}, expected $((p2 - 1))" "$(cat "$tmp/err")"; fi
printf 'garbage' >"$tmp/bad"
run "--session with a bad file" 0 "${common[@]}" --max-tokens 2 --seed 1 --session "$tmp/bad" "$model" hi
expect "--session bad file: reported" "$tmp/err" 'not restored'
for i in 1 2; do
    run "--prompt-cache run $i" 0 "${common[@]}" --max-tokens 2 --seed 1 --no-think --prompt-cache "$tmp/pc" --system "Be brief and careful." "$model" "Hello there"
done
read -r p4 c4 <<<"$(cached_of 1)"
if [ "${c4:-0}" -ge $((p4 - 1)) ] 2>/dev/null; then ok "--prompt-cache: a new process restores $c4 of $p4"; else
    bad "--prompt-cache: second run cached ${c4:-?} of ${p4:-?}" "$(cat "$tmp/err")"; fi

# --- OpenMP's wait policy (programs/common/common.h): without OMP_WAIT_POLICY and GOMP_SPINCOUNT the
# program restarts itself with OMP_WAIT_POLICY=passive; a setting of the caller's is kept -----------
wait_env() { # wait_env VAR=VALUE...: start dsv4-cli on a FIFO prompt under that environment, print its environment
    rm -f "$tmp/fifo"
    mkfifo "$tmp/fifo"
    env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$@" "$cli" "${common[@]}" --max-tokens 1 -f "$tmp/fifo" "$model" \
        >/dev/null 2>&1 &
    local p=$! e= i
    # once the process is dsv4-cli (not env) and shows a setting (the restart adds one), up to 20 s
    for i in $(seq 1 100); do
        case "$(readlink "/proc/$p/exe" 2>/dev/null)" in
        *dsv4-cli*) e=$(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -E '^(OMP_WAIT_POLICY|GOMP_SPINCOUNT)=')
                    [ -n "$e" ] && break ;;
        esac
        sleep 0.2
    done
    echo "$e"
    echo hi >"$tmp/fifo"
    wait "$p"
}
if [ -d /proc/self ] && command -v mkfifo >/dev/null; then
    e=$(wait_env)
    [ "$e" = "OMP_WAIT_POLICY=passive" ] && ok "no OpenMP setting: restarted with OMP_WAIT_POLICY=passive" ||
        bad "no OpenMP setting: environment '$e'"
    e=$(wait_env OMP_WAIT_POLICY=active)
    [ "$e" = "OMP_WAIT_POLICY=active" ] && ok "OMP_WAIT_POLICY=active kept" || bad "OMP_WAIT_POLICY=active: environment '$e'"
    e=$(wait_env GOMP_SPINCOUNT=1000)
    [ "$e" = "GOMP_SPINCOUNT=1000" ] && ok "GOMP_SPINCOUNT=1000 kept, no policy added" || bad "GOMP_SPINCOUNT: environment '$e'"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
