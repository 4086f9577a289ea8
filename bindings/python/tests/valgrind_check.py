"""valgrind_check.py LOG — exit 1 when a valgrind memcheck log holds a lost block (definitely or
indirectly) or a memory error whose stack passes through libdsv4 (a frame named dsv4_*); prints
those records. Python's own records (interpreter, ctypes) are not the binding's business."""
import re
import sys


def main():
    text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
    if "ERROR SUMMARY" not in text:
        print("valgrind log incomplete (the program crashed?)")
        return 1
    bad = []
    for block in re.split(r"\n==\d+== \n", text):
        lines = [re.sub(r"^==\d+== ", "", ln) for ln in block.splitlines()]
        if not lines:
            continue
        head = lines[0]
        relevant = ("definitely lost" in head or "indirectly lost" in head or head.startswith("Invalid")
                    or "uninitialised" in head or head.startswith("Conditional jump") or "Mismatched" in head
                    or "overlap" in head)
        if relevant and re.search(r"\b(lib)?dsv4_\w*", block):
            bad.append("\n".join(lines[:20]))
    for b in bad:
        print(b + "\n")
    print("valgrind: %d record(s) through libdsv4" % len(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
