#!/usr/bin/env python3
"""tools/train-tiny/data/bpe.py — a small byte-level BPE tokenizer for the tiny
model: trainer, encoder, decoder and tokenizer.json writer.

The tokenizer has DeepSeek-V4's structure (../shared/spec/text-protocol.md §1):
added tokens matched first (leftmost, longest), the same three Split(Isolated)
pre-tokenizer regexes, ByteLevel bytes, rank-ordered merges, ByteLevel
decoder; only the vocabulary and merges are its own, learnt from the corpus.
Ids 0, 1, 2 are BOS, EOS and pad as in V4; the other special tokens of the
chat encoding take the top ids. The library loads the file like V4's own.

Usage:
  bpe.py train [--vocab N] CORPUS.jsonl [...] OUT_TOKENIZER_JSON
      learn merges from the "text" of each JSONL line (the rendered samples)
  bpe.py encode TOKENIZER_JSON < text      print the ids of stdin's text
As a module: Tokenizer.load(path).encode(text) / .decode(ids), train(texts, n).
Needs the regex module (Debian python3-regex) for \\p{..} classes.
"""
import json, sys
from collections import Counter, defaultdict

import regex

# The added tokens: V4's ids 0-2, then every other token the chat encoding or
# the library names (lib/text/tokenizer.c), with V4's flags.
# (content, normalized, special)
ADDED_LOW = [("<｜begin▁of▁sentence｜>", False, True), ("<｜end▁of▁sentence｜>", False, True),
             ("<｜▁pad▁｜>", False, True)]
ADDED_HIGH = [("<｜fim▁hole｜>", True, False), ("<｜fim▁begin｜>", True, False), ("<｜fim▁end｜>", True, False),
              ("<｜User｜>", True, False), ("<｜Assistant｜>", True, False), ("<|EOT|>", True, True),
              ("<think>", True, False), ("</think>", True, False), ("｜DSML｜", True, False),
              ("<｜latest_reminder｜>", True, False), ("<｜action｜>", True, False), ("<｜query｜>", True, False),
              ("<｜authority｜>", True, False), ("<｜domain｜>", True, False), ("<｜title｜>", True, False),
              ("<dsml:", True, False), ("</dsml:", True, False), ("<｜read_url｜>", True, False)]

# DeepSeek-V3/V4's pre-tokenizer regexes (text-protocol §1.3)
SPLITS = [r"\p{N}{1,3}", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
          "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
          " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"]


def byte_chars():
    """GPT-2's byte -> printable character map"""
    m, n = {}, 0
    for b in range(256):
        if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255:
            m[b] = chr(b)
        else:
            m[b] = chr(256 + n)
            n += 1
    return m


BYTE_CHAR = byte_chars()
CHAR_BYTE = {c: b for b, c in BYTE_CHAR.items()}
BYTE_ORDER = sorted(range(256), key=lambda b: ord(BYTE_CHAR[b]))  # ids 3.. in character order, like V3


def to_chars(bs):
    return "".join(BYTE_CHAR[b] for b in bs)


class PreTokenizer:
    def __init__(self, added):
        self.res = [regex.compile(p) for p in SPLITS]
        # leftmost, longest: alternation of the contents, longest first
        alts = sorted(added, key=len, reverse=True)
        self.added_re = regex.compile("|".join(regex.escape(a) for a in alts)) if alts else None

    def _split(self, level, s, out):
        if not s:
            return
        if level == len(self.res):
            out.append(s)
            return
        gap = 0
        for m in self.res[level].finditer(s):
            if m.end() == m.start():
                continue
            self._split(level + 1, s[gap:m.start()], out)
            self._split(level + 1, m.group(), out)
            gap = m.end()
        self._split(level + 1, s[gap:], out)

    def pieces(self, text):
        """[(str, is_added)] in order"""
        out = []
        pos = 0
        if self.added_re:
            for m in self.added_re.finditer(text):
                ps = []
                self._split(0, text[pos:m.start()], ps)
                out += [(p, False) for p in ps]
                out.append((m.group(), True))
                pos = m.end()
        ps = []
        self._split(0, text[pos:], ps)
        return out + [(p, False) for p in ps]


class Tokenizer:
    def __init__(self, vocab, merges, added):
        """vocab: byte-level string -> id (BPE tokens); merges: [(a, b)] byte-level
        strings in rank order; added: [(id, content, normalized, special)]"""
        self.vocab = vocab
        self.merges = merges
        self.added = added
        self.added_id = {c: i for i, c, _, _ in added}
        self.pre = PreTokenizer([c for _, c, _, _ in added])
        self.rank = {}
        for r, (a, b) in enumerate(merges):
            key = (vocab[a], vocab[b])
            if key not in self.rank:
                self.rank[key] = (r, vocab[a + b])
        self.byte_id = [vocab[BYTE_CHAR[b]] for b in range(256)]
        n = max(list(vocab.values()) + [i for i, _, _, _ in added]) + 1
        self.piece = [b""] * n
        for s, i in vocab.items():
            self.piece[i] = bytes(CHAR_BYTE[c] for c in s)
        for i, c, _, _ in added:
            self.piece[i] = c.encode("utf-8")
        self.cache = {}

    @classmethod
    def load(cls, path):
        t = json.load(open(path, encoding="utf-8"))
        m = t["model"]
        added = [(a["id"], a["content"], a["normalized"], a["special"]) for a in t["added_tokens"]]
        addset = {a[1] for a in added}
        vocab = {k: v for k, v in m["vocab"].items() if k not in addset}
        merges = [tuple(x.split(" ", 1)) if isinstance(x, str) else tuple(x) for x in m["merges"]]
        return cls(vocab, merges, added)

    def bpe(self, piece):
        ids = self.cache.get(piece)
        if ids is not None:
            return ids
        sym = [self.byte_id[b] for b in piece.encode("utf-8")]
        while len(sym) > 1:
            best, at = None, -1
            for i in range(len(sym) - 1):
                r = self.rank.get((sym[i], sym[i + 1]))
                if r is not None and (best is None or r[0] < best[0]):
                    best, at = r, i
            if best is None:
                break
            sym[at:at + 2] = [best[1]]
        self.cache[piece] = sym
        return sym

    def encode(self, text):
        ids = []
        for p, is_added in self.pre.pieces(text):
            if is_added:
                ids.append(self.added_id[p])
            else:
                ids += self.bpe(p)
        return ids

    def decode_bytes(self, ids):
        return b"".join(self.piece[i] for i in ids)

    def decode(self, ids):
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def vocab_size(self):
        return len(self.piece)

    def to_json(self):
        added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": norm, "special": spec} for i, c, norm, spec in self.added]
        vocab = {c: i for i, c, _, _ in self.added if i < 3}  # V3/V4 keep ids 0-2 in the vocab too
        vocab.update(self.vocab)
        vocab = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
        return {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": {"type": "Sequence", "normalizers": []},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": p}, "behavior": "Isolated", "invert": False} for p in SPLITS]
                + [{"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
            "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                               "use_regex": True},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "vocab": vocab, "merges": ["%s %s" % m for m in self.merges]}}

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, ensure_ascii=False, indent=2)
            f.write("\n")


def train(texts, vocab_size=4096, log=None):
    """Byte-level BPE over the pre-tokenized pieces of texts: merge the most
    frequent adjacent pair (ties: the pair that sorts first as byte-level
    strings) until the vocabulary holds vocab_size ids, added tokens included."""
    added = [c for c, _, _ in ADDED_LOW + ADDED_HIGH]
    n_merges_max = vocab_size - len(added) - 256
    if n_merges_max < 0:
        raise ValueError("vocab_size %d is below %d (bytes and added tokens)" % (vocab_size, 256 + len(added)))
    pre = PreTokenizer(added)
    counts = Counter()
    for t in texts:
        for p, is_added in pre.pieces(t):
            if not is_added:
                counts[p] += 1
    words = []  # [symbols (list of str), count]
    for p, c in counts.items():
        words.append([[BYTE_CHAR[b] for b in p.encode("utf-8")], c])
    pair_count = defaultdict(int)
    where = defaultdict(set)
    for wi, (sym, c) in enumerate(words):
        for a, b in zip(sym, sym[1:]):
            pair_count[(a, b)] += c
            where[(a, b)].add(wi)
    vocab_tokens = [BYTE_CHAR[b] for b in BYTE_ORDER]
    known = set(vocab_tokens)
    merges = []
    while len(vocab_tokens) < 256 + n_merges_max and pair_count:
        best = min(pair_count.items(), key=lambda kv: (-kv[1], kv[0]))
        (a, b), n = best
        if n < 2:
            break
        new = a + b
        merges.append((a, b))
        if new not in known:
            known.add(new)
            vocab_tokens.append(new)
        for wi in list(where[(a, b)]):
            sym, c = words[wi]
            i, out = 0, []
            changed = False
            while i < len(sym):
                if i + 1 < len(sym) and sym[i] == a and sym[i + 1] == b:
                    out.append(new)
                    i += 2
                    changed = True
                else:
                    out.append(sym[i])
                    i += 1
            if not changed:
                continue
            for x, y in zip(sym, sym[1:]):
                pair_count[(x, y)] -= c
                if pair_count[(x, y)] <= 0:
                    del pair_count[(x, y)]
                where[(x, y)].discard(wi)
            for x, y in zip(out, out[1:]):
                pair_count[(x, y)] += c
                where[(x, y)].add(wi)
            words[wi][0] = out
        pair_count.pop((a, b), None)
        where.pop((a, b), None)
        if log and len(merges) % 500 == 0:
            log("bpe: %d merges, last %r (%d)" % (len(merges), bytes(CHAR_BYTE[ch] for ch in new), n))
    vocab = {}
    for i, s in enumerate(vocab_tokens):
        vocab[s] = len(ADDED_LOW) + i
    top = len(ADDED_LOW) + len(vocab_tokens)
    added_list = [(i, c, nm, sp) for i, (c, nm, sp) in enumerate(ADDED_LOW)]
    added_list += [(top + k, c, nm, sp) for k, (c, nm, sp) in enumerate(ADDED_HIGH)]
    return Tokenizer(vocab, merges, added_list)


def main(argv):
    if len(argv) >= 2 and argv[1] == "train":
        args = argv[2:]
        n = 4096
        if len(args) >= 2 and args[0] == "--vocab":
            n = int(args[1])
            args = args[2:]
        if len(args) < 2:
            sys.stderr.write(__doc__)
            return 2
        texts = []
        for path in args[:-1]:
            for line in open(path, encoding="utf-8"):
                if line.strip():
                    texts.append(json.loads(line)["text"])
        tok = train(texts, n, log=lambda s: print(s, file=sys.stderr))
        tok.save(args[-1])
        print("bpe: %d ids (%d merges) from %d texts -> %s" % (tok.vocab_size(), len(tok.merges), len(texts),
                                                              args[-1]))
        return 0
    if len(argv) == 3 and argv[1] == "encode":
        tok = Tokenizer.load(argv[2])
        print(" ".join(map(str, tok.encode(sys.stdin.read()))))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
