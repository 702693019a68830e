"""Writes assets/vocab/english.txt: the default auto-label vocabulary (SPEC §3).

The words are the most frequent English words of the `wordfreq` package (its
data ships inside the PyPI package, so nothing is downloaded): alphabetic words
of 3+ letters, function words removed, the first N (default 3000) kept, in
frequency order. No part-of-speech filter is applied (no tagger data is
available offline), so some verbs and adverbs remain. Deterministic for a given
wordfreq version; run from the repo root:

    python3 scripts/make_vocab.py [--n 3000]
"""
import argparse
import os

STOP = set("""
the and for with that this from you your are was were but not have has had they them their there then than
what when where which who whom why how all any can could would should will just into onto over under about
after before again also been being both each few more most other some such only own same too very off out
our ours she her hers his him its it's itself myself yourself himself herself ourselves themselves here
because while until does did doing done don't won't can't isn't aren't wasn't weren't shall may might must
one two three four five six seven eight nine ten via per yet nor whose these those upon onto amp http https
www com org net
""".split())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--out", default="assets/vocab/english.txt")
    a = ap.parse_args()
    from wordfreq import top_n_list

    words = []
    for w in top_n_list("en", 20 * a.n):
        if len(w) >= 3 and w.isascii() and w.isalpha() and w not in STOP:
            words.append(w)
        if len(words) == a.n:
            break
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write("\n".join(words) + "\n")
    print(f"{len(words)} words -> {a.out}")


if __name__ == "__main__":
    main()
