#!/bin/sh
# tools/train-tiny/data/build.sh — make the tiny model's corpus and tokenizer.
#
# Usage: build.sh OUT_DIR [VOCAB]        (VOCAB: 4096 unless given)
# Needs: Debian packages wordnet-base, python3-regex and python3-numpy, npm (countries-list is
# installed into OUT_DIR/.npm). Checks everything against libdsv4 when
# DSV4_LIBRARY names a built libdsv4.so (check_library.py).
# Writes to OUT_DIR:
#   tokenizer.json         byte-level BPE, VOCAB ids, DeepSeek-V4 special tokens
#   corpus-train.jsonl     training samples: kind, request, text, spans, ids, loss_spans
#   corpus-heldout.jsonl   held-out samples, same fields, no text shared with training
#   corpus-train.npz, corpus-heldout.npz   the same as arrays: ids, loss (mask), starts
#   corpus.txt             all the texts back to back: training ones, then held-out ones
# Same inputs and seed, same files.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT_DIR [VOCAB]}
vocab=${2:-4096}
mkdir -p "$out"
# Debian's python3 (python3-regex, python3-numpy) unless $PYTHON says otherwise
py=${PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=python3
for p in wordnet-base python3-regex; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        { echo "build.sh: needs the Debian package $p (apt-get install $p)" >&2; exit 1; }
done
cl="$out/.npm/node_modules/countries-list"
[ -f "$cl/countries.min.json" ] || npm install --silent --no-save --prefix "$out/.npm" countries-list@3.4.1
tmp="$out/.tmp"
mkdir -p "$tmp"
"$py" "$here/make_corpus.py" --countries "$cl" --wordnet /usr/share/wordnet "$tmp"
"$py" "$here/bpe.py" train --vocab "$vocab" "$tmp/corpus-train.jsonl" "$out/tokenizer.json"
for f in corpus-train corpus-heldout; do
    "$py" "$here/tokenize_corpus.py" "$out/tokenizer.json" "$tmp/$f.jsonl" "$out/$f.jsonl"
done
rm -rf "$tmp"
for f in corpus-train corpus-heldout; do
    "$py" "$here/tokenize_corpus.py" --arrays "$out/$f.npz" "$out/$f.jsonl"
done
# every text in one file for stream training: the training texts, then the held-out ones
"$py" -c '
import json, sys
with open(sys.argv[1], "w", encoding="utf-8") as out:
    for f in sys.argv[2:]:
        for line in open(f, encoding="utf-8"):
            out.write(json.loads(line)["text"])
' "$out/corpus.txt" "$out/corpus-train.jsonl" "$out/corpus-heldout.jsonl"
if [ -n "${DSV4_LIBRARY:-}" ]; then
    "$py" "$here/check_library.py" "$out/tokenizer.json" "$out/corpus-heldout.jsonl" "$out/corpus-train.jsonl"
fi
