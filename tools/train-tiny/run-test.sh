#!/bin/sh
# tools/train-tiny/run-test.sh BUILD_DIR — meson test 'train-tiny' (suite 'bindings'): runs
# test_tiny.py with Debian's python3-torch (/usr/bin/python3). Exit 77 (skipped) when that python has
# no torch or numpy — except under CI=true (scripts/deps.sh installs python3-torch), where that fails.
set -u
here=$(cd "$(dirname "$0")" && pwd)
py=${TRAIN_TINY_PYTHON:-/usr/bin/python3}
if ! "$py" -c 'import torch, numpy' 2>/dev/null; then
    echo "train-tiny: $py has no torch (Debian: python3-torch)"
    if [ "${CI:-}" = true ]; then echo "0 passed, 1 failed"; exit 1; fi
    exit 77
fi
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
exec "$py" "$here/test_tiny.py" "$1"
