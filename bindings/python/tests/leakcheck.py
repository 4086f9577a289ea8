"""bindings/python/tests/leakcheck.py — the binding's object lifetimes, run under valgrind by
run-tests.sh: every object freed in many orders (close() and garbage collection), generators
outliving their parents, a sampler stage released, failed calls. The runner fails on any
definitely/indirectly lost block or memory error whose stack passes through libdsv4.
Usage: leakcheck.py GOLDEN_CKPT SMALL_TOKENIZER_JSON (conftest.write_small_tokenizer makes one)"""
import gc
import itertools
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dsv4  # noqa: E402

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL " + what)


def make(ckpt, tok):
    m = dsv4.Model(ckpt)
    t = dsv4.Tokenizer(tok)
    c = m.context(threads=1, context_length=32)
    s = c.session()
    g = dsv4.Generator(s, t)
    return [m, t, c, s, g]


def main():
    ckpt, tok = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as d:
        orders = list(itertools.permutations(range(5)))[::17]  # 8 orders, each object first and last
        for order in orders:  # close() in these orders
            objs = make(ckpt, tok)
            objs[4].set(max_tokens=2)
            objs[4].start([0, 1, 2])
            for i in order:
                objs[i].close()
            check(all(o.closed for o in objs), "closed in order %s" % (order,))
        for order in orders[::3]:  # dropped in these orders
            objs = make(ckpt, tok)
            for i in order:
                objs[i] = None
            gc.collect()
        # a generator outliving everything else, with a stage, a stop string and a schema
        objs = make(ckpt, tok)
        g = objs[4]
        released = []

        class Stage:
            def apply(self, logits):
                pass

            def release(self):
                released.append(1)

        g.sampler.set_stage(Stage())
        g.add_stop("zz")
        g.set_json_schema({"type": "object"})
        del objs
        gc.collect()
        g.set(max_tokens=4)
        g.start([0, 1, 2])
        evs = list(g.events())
        check(evs[-1].kind == "stop", "generation after the parents were dropped")
        g.sampler.set_stage(Stage())  # replaces (releases) the first
        check(len(released) == 1, "replaced stage released")
        del g
        gc.collect()
        check(len(released) == 2, "stage released with the generator")
        # failures free what they made
        for bad in (lambda: dsv4.Model(os.path.join(d, "nothing")), lambda: dsv4.Tokenizer(os.path.join(d, "no.json")),
                    lambda: dsv4.render_chat(b"{bad"), lambda: dsv4.render_chat({"messages": [{"role": "x"}]})):
            try:
                bad()
                check(False, "an error was raised")
            except dsv4.Error as e:
                check(bool(e.message), "error message kept: %s" % e)
        objs = make(ckpt, tok)
        try:
            objs[4].start_request({"messages": [{"role": "user", "content": "x"}], "bogus": 1})
            check(False, "bad request refused")
        except dsv4.InvalidArgument as e:
            check("bogus" in e.message, "bad request message")
        with dsv4.ChatBuilder([{"role": "user", "content": "hi"}]) as cb:
            check(len(cb.render_ids(objs[1])) > 3, "chat builder")
        with objs[1].detokenizer() as dt:
            dt.feed(5)
        del objs
        gc.collect()
    print("leakcheck: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
