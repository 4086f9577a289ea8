#!/usr/bin/env python3
"""tools/train-tiny/data/make_corpus.py — the tiny model's chat corpus.

Question/answer conversations synthesised from two openly licensed data sets
(README.md beside this file):
  * WordNet 3.0 (Debian package wordnet-base, /usr/share/wordnet; WordNet 3.0
    licence): short definitions of common English words;
  * countries-list (npm package countries-list 3.4.1, MIT): countries with
    their capital, continent, currency, languages and calling code;
plus sums of small numbers made up here. Each conversation is rendered in the
DeepSeek-V4 chat encoding (chat_encode.py): system/user/assistant turns, chat
and thinking modes (short reasoning), JSON answers (some with a
response_format), tool calls in DSML with tool results, multi-turn chats.

Usage: make_corpus.py [--countries DIR] [--wordnet DIR] [--train N] [--heldout N]
                      [--seed S] OUT_DIR
  DIR of countries-list: its package folder (npm install countries-list@3.4.1).
Writes OUT_DIR/corpus-train.jsonl and OUT_DIR/corpus-heldout.jsonl, one sample a
line: {"kind", "request", "text", "spans"} where text is the rendered string
and spans the [start, end) character (code point) ranges of the assistant's
output (loss on these only). The held-out samples share no text with the
training ones. Same seed, same files.
"""
import argparse, json, os, random, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chat_encode  # noqa: E402

# ---------------------------------------------------------------------------
# sources


def load_countries(d):
    c = json.load(open(os.path.join(d, "countries.min.json"), encoding="utf-8"))
    cont = json.load(open(os.path.join(d, "continents.min.json"), encoding="utf-8"))
    lang = json.load(open(os.path.join(d, "languages.min.json"), encoding="utf-8"))
    cur = json.load(open(os.path.join(d, "currencies.min.json"), encoding="utf-8"))
    out = []
    for code, v in sorted(c.items()):
        if not v.get("capital") or not v.get("currency") or not v.get("languages"):
            continue
        langs = [lang[x]["name"] for x in v["languages"] if x in lang]
        ccy = v["currency"][0]
        if not langs or ccy not in cur:
            continue
        out.append({"code": code, "name": v["name"], "capital": v["capital"],
                    "continent": cont[v["continent"]], "currency": ccy,
                    "currency_name": cur[ccy]["name"], "languages": langs[:3],
                    "phone": "+%d" % v["phone"][0]})
    return out


POS = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
SS = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "s"}


def load_wordnet(d, min_count=4, max_gloss=80):
    """Common single words (sense 1 seen >= min_count times in WordNet's
    tagged texts) with the short definition of their first sense."""
    common = {}
    for line in open(os.path.join(d, "cntlist.rev"), encoding="utf-8"):
        key, num, cnt = line.split()
        if num != "1" or int(cnt) < min_count:
            continue
        lemma, rest = key.split("%")
        pos = SS[rest[0]]
        pos = "a" if pos == "s" else pos
        if not lemma.isalpha() or not lemma.islower() or not 3 <= len(lemma) <= 12:
            continue
        common[(lemma, pos)] = max(common.get((lemma, pos), 0), int(cnt))
    words = []
    for pos, fname in (("n", "noun"), ("v", "verb"), ("a", "adj"), ("r", "adv")):
        offsets = {}
        for line in open(os.path.join(d, "index." + fname), encoding="utf-8"):
            if line.startswith(" "):
                continue
            f = line.split()
            if (f[0], pos) in common:
                offsets[f[0]] = f[-int(f[2])]  # first synset = most frequent sense
        data = open(os.path.join(d, "data." + fname), "rb")
        for lemma, off in sorted(offsets.items()):
            data.seek(int(off))
            gloss = data.readline().decode("utf-8").split(" | ", 1)[1].strip()
            g = gloss.split(";")[0].strip().strip('"').strip()
            if not g or '"' in g or len(g) > max_gloss or len(g) < 8 or "(" in g:
                continue
            words.append({"word": lemma, "pos": POS[pos], "gloss": g, "count": common[(lemma, pos)]})
        data.close()
    return words


# ---------------------------------------------------------------------------
# helpers

SYSTEMS = ["", "You are a helpful assistant.", "You are a helpful assistant.",
           "You are a concise assistant. Answer in one sentence.",
           "You are a tiny demo model trained by the libdsv4 project."]


def cap(s):
    return s[0].upper() + s[1:]


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def join_and(xs):
    return xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + " and " + xs[-1]


def msg(role, content, **kw):
    m = {"role": role, "content": content}
    m.update(kw)
    return m


class Gen:
    def __init__(self, rng, countries, words):
        self.r = rng
        self.c = countries
        self.w = words
        self.call_n = 0

    def country(self):
        return self.r.choice(self.c)

    def word(self):
        return self.r.choice(self.w)

    def system(self, msgs, p=0.6):
        s = self.r.choice(SYSTEMS) if self.r.random() < p else None
        return ([msg("system", s)] if s is not None else []) + msgs

    # -- facts: question and answer about a country --------------------
    def country_fact(self, c=None):
        c = c or self.country()
        k = self.r.randrange(6)
        n = c["name"]
        if k == 0:
            q = self.r.choice(["What is the capital of %s?", "What's the capital of %s?",
                               "Which city is the capital of %s?", "Tell me the capital of %s.",
                               "capital of %s?"]) % n
            a = "The capital of %s is %s." % (n, c["capital"])
        elif k == 1:
            q = self.r.choice(["Which continent is %s in?", "Where is %s?", "On which continent is %s?",
                               "Is %s in Europe, Asia, Africa, the Americas or Oceania?"]) % n
            a = "%s is in %s." % (n, c["continent"])
        elif k == 2:
            q = self.r.choice(["What currency is used in %s?", "What is the currency of %s?",
                               "Which money do people use in %s?"]) % n
            a = "The currency of %s is the %s (%s)." % (n, c["currency_name"], c["currency"])
        elif k == 3:
            q = self.r.choice(["What language is spoken in %s?", "Which languages do people speak in %s?",
                               "What is the official language of %s?"]) % n
            ls = c["languages"]
            a = ("People in %s speak %s." % (n, join_and(ls)))
        elif k == 4:
            q = self.r.choice(["What is the calling code of %s?", "What is the phone code for %s?",
                               "Which dialling code does %s use?"]) % n
            a = "The calling code of %s is %s." % (n, c["phone"])
        else:
            q = self.r.choice(["%s is the capital of which country?", "Which country has %s as its capital?",
                               "Where is %s?"]) % c["capital"]
            a = "%s is the capital of %s, in %s." % (c["capital"], n, c["continent"])
        return q, a

    # -- definitions ------------------------------------------------------
    def word_fact(self, w=None):
        w = w or self.word()
        q = self.r.choice(['What does the word "%s" mean?', "Define %s.", 'What is the meaning of "%s"?',
                           "What does %s mean?", 'Explain the word "%s".']) % w["word"]
        a = '"%s" is %s %s: %s.' % (cap(w["word"]), article(w["pos"]), w["pos"], w["gloss"])
        return q, a

    # -- sums -------------------------------------------------------------
    def sum_parts(self, hi=99):
        a, b = self.r.randrange(hi + 1), self.r.randrange(hi + 1)
        return a, b, a + b

    def sum_reasoning(self, a, b):
        if a < 10 or b < 10:
            return "%d + %d = %d." % (a, b, a + b)
        ta, ua, tb, ub = a // 10 * 10, a % 10, b // 10 * 10, b % 10
        return "%d + %d = %d. %d + %d = %d. %d + %d = %d." % (ta, tb, ta + tb, ua, ub, ua + ub, ta + tb,
                                                             ua + ub, a + b)

    # ---------------------------------------------------------------------
    # sample kinds: each returns (kind, request)

    def chat_fact(self):
        q, a = self.country_fact() if self.r.random() < 0.65 else self.word_fact()
        return "chat", {"thinking": {"type": "disabled"},
                        "messages": self.system([msg("user", q), msg("assistant", a)])}

    def think_fact(self):
        """thinking mode: a short chain over two facts"""
        r = self.r
        k = r.randrange(4)
        c = self.country()
        if k == 0:
            conts = sorted({x["continent"] for x in self.c})
            asked = c["continent"] if r.random() < 0.5 else r.choice(conts)
            q = "Is %s in %s?" % (c["capital"], asked)
            rs = "%s is the capital of %s. %s is in %s." % (c["capital"], c["name"], c["name"], c["continent"])
            a = ("Yes, %s is in %s." % (c["capital"], asked) if asked == c["continent"]
                 else "No, %s is in %s, not in %s." % (c["capital"], c["continent"], asked))
        elif k == 1:
            d = self.country() if r.random() < 0.6 else r.choice(
                [x for x in self.c if x["currency"] == c["currency"]])
            q = "Do %s and %s use the same currency?" % (c["name"], d["name"])
            rs = "%s uses the %s. %s uses the %s." % (c["name"], c["currency_name"], d["name"], d["currency_name"])
            a = ("Yes, both use the %s." % c["currency_name"] if c["currency"] == d["currency"]
                 else "No. %s uses the %s and %s uses the %s." % (c["name"], c["currency_name"], d["name"],
                                                                  d["currency_name"]))
            if c is d:
                q = "Does %s use the %s?" % (c["name"], c["currency_name"])
                rs = "%s uses the %s." % (c["name"], c["currency_name"])
                a = "Yes, %s uses the %s." % (c["name"], c["currency_name"])
        elif k == 2:
            a_, b_, s = self.sum_parts()
            q = r.choice(["What is %d + %d?", "What is %d plus %d?", "Add %d and %d.", "%d + %d = ?"]) % (a_, b_)
            rs = self.sum_reasoning(a_, b_)
            a = "%d + %d = %d." % (a_, b_, s)
        else:
            w = self.word()
            q = 'Is "%s" a noun, a verb, an adjective or an adverb?' % w["word"]
            rs = '"%s" means: %s. That describes %s %s.' % (w["word"], w["gloss"], article(w["pos"]), w["pos"])
            a = '"%s" is %s %s.' % (cap(w["word"]), article(w["pos"]), w["pos"])
        if r.random() < 0.3:  # a plain fact in thinking mode: a short generic reasoning
            q, a = self.country_fact() if r.random() < 0.7 else self.word_fact()
            rs = r.choice(["The user asks a simple question. I know this.", "This is a short fact question.",
                           "I can answer this in one sentence."])
        return "think", {"thinking": {"type": "enabled"},
                         "messages": self.system([msg("user", q), msg("assistant", a, reasoning_content=rs)])}

    def json_answer(self):
        r = self.r
        k = r.randrange(3)
        if k == 0:
            c = self.country()
            fields = r.choice([["capital"], ["capital", "continent"], ["continent", "currency"],
                               ["capital", "currency", "languages"], ["phone"]])
            q = "Give the %s of %s as JSON." % (join_and([f.replace("phone", "calling code") for f in fields]),
                                                c["name"])
            obj = {"country": c["name"]}
            for f in fields:
                obj[f] = c[f]
        elif k == 1:
            w = self.word()
            q = 'Return a JSON object with the part of speech and the definition of "%s".' % w["word"]
            obj = {"word": w["word"], "part_of_speech": w["pos"], "definition": w["gloss"]}
        else:
            a, b, s = self.sum_parts(999)
            q = "Add %d and %d. Answer in JSON with the keys a, b and sum." % (a, b)
            obj = {"a": a, "b": b, "sum": s}
        ans = chat_encode.dumps(obj)
        msgs = [msg("user", q)]
        sysmsg = None
        if r.random() < 0.5:
            sysmsg = msg("system", r.choice(["You are a helpful assistant.", "Reply with JSON only.", ""]),
                         response_format={"type": "json_object"})
        elif r.random() < 0.5:
            sysmsg = msg("system", "Reply with JSON only.")
        if sysmsg:
            msgs.insert(0, sysmsg)
        thinking = r.random() < 0.3
        am = msg("assistant", ans)
        if thinking:
            am["reasoning_content"] = "The user wants JSON. I will write one object with the keys asked for."
        msgs.append(am)
        return "json", {"thinking": {"type": "enabled" if thinking else "disabled"}, "messages": msgs}

    TOOLS = {
        "get_country": {"type": "function", "function": {
            "name": "get_country", "description": "Look up facts about a country.",
            "parameters": {"type": "object", "properties": {"name": {"type": "string", "description":
                                                                     "The country's English name"}},
                           "required": ["name"]}}},
        "define_word": {"type": "function", "function": {
            "name": "define_word", "description": "Look up the meaning of an English word.",
            "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}}},
        "add": {"type": "function", "function": {
            "name": "add", "description": "Add two integers.",
            "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                           "required": ["a", "b"]}}},
    }

    def tool_call(self):
        r = self.r
        which = r.choice(["get_country", "get_country", "define_word", "add"])
        others = [t for t in self.TOOLS if t != which]
        names = [which] + r.sample(others, r.randrange(len(others) + 1))
        names.sort(key=list(self.TOOLS).index)
        tools = [self.TOOLS[n] for n in names]
        self.call_n += 1
        cid = "call_%d" % self.call_n
        if which == "get_country":
            c = self.country()
            q, a = self.country_fact(c)
            while "capital of which" in q or "as its capital" in q or q.startswith(c["capital"]):
                q, a = self.country_fact(c)
            args = {"name": c["name"]}
            result = {k: c[k] for k in ("name", "capital", "continent", "currency", "languages", "phone")}
            why = "The user asks about %s. I will look it up with get_country." % c["name"]
            after = "The tool gave the facts about %s." % c["name"]
        elif which == "define_word":
            w = self.word()
            q, a = self.word_fact(w)
            args = {"word": w["word"]}
            result = {"word": w["word"], "part_of_speech": w["pos"], "definition": w["gloss"]}
            why = 'The user asks what "%s" means. I will call define_word.' % w["word"]
            after = "The tool gave the definition."
        else:
            x, y, s = self.sum_parts(9999)
            q = r.choice(["What is %d + %d?", "Please add %d and %d.", "What is %d plus %d?"]) % (x, y)
            a = "%d + %d = %d." % (x, y, s)
            args = {"a": x, "b": y}
            result = {"sum": s}
            why = "These are big numbers. I will use the add tool."
            after = "The tool says the sum is %d." % s
        thinking = r.random() < 0.6
        call = {"id": cid, "type": "function",
                "function": {"name": which, "arguments": json.dumps(args, ensure_ascii=False)}}
        m1 = msg("assistant", "", tool_calls=[call])
        m2 = msg("assistant", a)
        if thinking:
            m1["reasoning_content"] = why
            m2["reasoning_content"] = after
        msgs = self.system([msg("user", q), m1,
                            msg("tool", chat_encode.dumps(result), tool_call_id=cid), m2], p=0.5)
        return "tool", {"thinking": {"type": "enabled" if thinking else "disabled"}, "tools": tools,
                        "messages": msgs}

    GREET = [("Hello!", "Hello! How can I help you today?"), ("Hi", "Hi! What would you like to know?"),
             ("Good morning.", "Good morning! How can I help?"), ("Thanks!", "You are welcome."),
             ("Thank you.", "You are welcome. Ask me anything else."),
             ("Who are you?", "I am a tiny language model with the DeepSeek-V4 architecture, trained by the "
                              "libdsv4 project for demos and tests."),
             ("What can you do?", "I can answer short questions about countries, English words and sums, "
                                  "reply in JSON and call tools."),
             ("Are you DeepSeek?", "No. I am a tiny model with the DeepSeek-V4 architecture, trained by the "
                                   "libdsv4 project. I am not DeepSeek's model."),
             ("Tell me a joke.", "I am a very small model, so my jokes are small too.")]
    ABOUT = [("Explain what a mixture-of-experts model is.",
              "A mixture-of-experts model has many small expert networks. A router sends each token to a few of "
              "them, so only a part of the model works on each token."),
             ("What is a mixture-of-experts model?",
              "It is a model with many expert networks and a router that picks a few experts for each token."),
             ("What is DeepSeek-V4?", "DeepSeek-V4 is a family of large mixture-of-experts language models made "
                                      "by DeepSeek. I use its architecture at a tiny size."),
             ("What is libdsv4?", "libdsv4 is a C library that runs DeepSeek-V4 models on the CPU."),
             ("How big are you?", "I am tiny: a few million parameters, small enough to ship with libdsv4."),
             ("What is a token?", "A token is a piece of text, such as a word or a part of a word, that a "
                                  "language model reads and writes."),
             ("What is a language model?", "A language model reads text as tokens and predicts the next token, "
                                           "one token at a time."),
             ("What is attention in a transformer?", "Attention lets each token look at earlier tokens and take "
                                                     "in what it needs from them."),
             ("What does thinking mode do?", "In thinking mode I first write my reasoning between think tags, "
                                             "then the answer.")]

    def multi_turn(self):
        r = self.r
        turns = []
        if r.random() < 0.5:
            turns.append(r.choice(self.GREET))
        c = self.country()
        for _ in range(r.randrange(1, 4)):
            if r.random() < 0.7:
                q, a = self.country_fact(c if r.random() < 0.6 else None)
            else:
                q, a = self.word_fact()
            turns.append((q, a))
        if r.random() < 0.3:
            turns.append(r.choice(self.GREET[3:5]))
        thinking = r.random() < 0.4
        msgs = []
        for i, (q, a) in enumerate(turns):
            msgs.append(msg("user", q))
            am = msg("assistant", a)
            if thinking and i == len(turns) - 1:
                am["reasoning_content"] = "The user asks a short question. I answer in one sentence."
            msgs.append(am)
        return "multi", {"thinking": {"type": "enabled" if thinking else "disabled"}, "messages": self.system(msgs)}

    def greet(self):
        about = self.r.random() < 0.5
        q, a = self.r.choice(self.ABOUT if about else self.GREET)
        thinking = self.r.random() < 0.4
        am = msg("assistant", a)
        if thinking:
            am["reasoning_content"] = ("The user asks a general question. I explain it in simple words."
                                       if about else "The user is talking to me. I answer politely.")
        return "greet", {"thinking": {"type": "enabled" if thinking else "disabled"},
                         "messages": self.system([msg("user", q), am])}

    def text(self):
        """plain text after BOS: a few facts about one country, or a few definitions"""
        r = self.r
        if r.random() < 0.7:
            c = self.country()
            n = c["name"]
            facts = ["%s is a country in %s." % (n, c["continent"]),
                     "The capital of %s is %s." % (n, c["capital"]),
                     "People in %s speak %s." % (n, join_and(c["languages"])),
                     "The currency of %s is the %s (%s)." % (n, c["currency_name"], c["currency"]),
                     "The calling code of %s is %s." % (n, c["phone"])]
            first = facts[r.randrange(2)]
            rest = [f for f in facts if f != first]
            p = " ".join([first] + r.sample(rest, r.randrange(1, len(rest) + 1)))
        else:
            ws = [self.word() for _ in range(r.randrange(2, 5))]
            p = " ".join('"%s" is %s %s: %s.' % (cap(w["word"]), article(w["pos"]), w["pos"], w["gloss"])
                         for w in ws)
        return "text", {"prompt": p}

    MIX = [("chat_fact", 32), ("think_fact", 21), ("json_answer", 13), ("tool_call", 8), ("multi_turn", 15),
           ("greet", 5), ("text", 6)]

    def sample(self):
        names = [n for n, _ in self.MIX]
        weights = [w for _, w in self.MIX]
        return getattr(self, self.r.choices(names, weights)[0])()


def make(gen, n, seen, fh):
    k = 0
    tries = 0
    while k < n:
        tries += 1
        if tries > 50 * n:
            raise SystemExit("make_corpus: cannot find %d distinct samples" % n)
        kind, req = gen.sample()
        text, spans = chat_encode.render(req)
        if text in seen:
            continue
        seen.add(text)
        fh.write(json.dumps({"kind": kind, "request": req, "text": text, "spans": spans}, ensure_ascii=False)
                 + "\n")
        k += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--countries", default="node_modules/countries-list")
    ap.add_argument("--wordnet", default="/usr/share/wordnet")
    ap.add_argument("--train", type=int, default=30000)
    ap.add_argument("--heldout", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("out")
    a = ap.parse_args()
    countries = load_countries(a.countries)
    words = load_wordnet(a.wordnet)
    os.makedirs(a.out, exist_ok=True)
    seen = set()
    # held-out first, from its own stream, so the training samples skip its texts
    with open(os.path.join(a.out, "corpus-heldout.jsonl"), "w", encoding="utf-8") as f:
        make(Gen(random.Random(a.seed * 1000 + 1), countries, words), a.heldout, seen, f)
    with open(os.path.join(a.out, "corpus-train.jsonl"), "w", encoding="utf-8") as f:
        make(Gen(random.Random(a.seed), countries, words), a.train, seen, f)
    print("make_corpus: %d countries, %d words; %d training and %d held-out samples in %s"
          % (len(countries), len(words), a.train, a.heldout, a.out))


if __name__ == "__main__":
    main()
