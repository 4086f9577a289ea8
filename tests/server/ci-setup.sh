#!/bin/sh
# tests/server/ci-setup.sh — install the real SDK clients the server test
# drives (npm: openai, @anthropic-ai/sdk) into a folder.
# Use:  . tests/server/ci-setup.sh [DIR]     (sourcing exports SERVER_NODE_MODULES)
# DIR defaults to $HOME/.cache/libdsv4-npm.
srv_dir=${1:-${HOME:-/tmp}/.cache/libdsv4-npm}
mkdir -p "$srv_dir"
if [ ! -f "$srv_dir/node_modules/openai/package.json" ] || [ ! -f "$srv_dir/node_modules/@anthropic-ai/sdk/package.json" ]; then
    npm install --prefix "$srv_dir" --no-audit --no-fund openai @anthropic-ai/sdk >&2 ||
        echo "ci-setup.sh: npm install of openai/@anthropic-ai/sdk failed; the server test will fail under CI=true" >&2
fi
SERVER_NODE_MODULES="$srv_dir/node_modules"
export SERVER_NODE_MODULES
