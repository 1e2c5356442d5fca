"""GPT-2's pre-tokenizer (hp::data::gpt2_pretokenize) against the regex it reimplements, run by
the `regex` module (Debian python3-regex), on seeded random texts over characters whose classes
are easy to get wrong: white space outside ASCII (no-break, ideographic, next-line, line
separator), format and control characters, combining marks, letters and numbers of other
scripts, emoji, contractions. Usage: pretokenize_vs_regex.py PRETOKENIZE_TOOL [COUNT]"""
import random
import subprocess
import sys

import regex

GPT2 = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
ALPHABET = list("ab Z'sStrvemld 0123 .,!?-\t\n\r\x0b\x0c") + [
    "\u00a0", "\u2003", "\u3000", "\u0085", "\u1680", "\u200b", "\u00e9", "\u4e2d", "\u0663",
    "\u00b2", "\u2167", "\u0301", "\U0001F600", "\u00ad", "\u2028", "\x1c", "\x1f", "\ufeff",
    "\u02b0", "\u01c5"]


def main():
    tool, count = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    rng = random.Random(1)
    texts = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 30)))
             for _ in range(count)]
    out = subprocess.run([tool], input="\x01".join(texts).encode(), capture_output=True,
                         check=True, timeout=60).stdout.decode()
    got = out.split("\x01")[:-1]
    if len(got) != len(texts):
        sys.exit(f"FAIL: {len(got)} splits for {len(texts)} texts")
    bad = [(t, GPT2.findall(t), g.split("\x02") if g else [])
           for t, g in zip(texts, got) if GPT2.findall(t) != (g.split("\x02") if g else [])]
    for t, want, mine in bad[:5]:
        print(f"FAIL: {t!r}: regex {want}, ours {mine}")
    print(f"{len(texts)} texts, {len(bad)} splits differ from the regex")
    sys.exit(1 if bad else 0)


main()
