#!/usr/bin/env python3
"""Generates tests/data/bpe-corpus.txt: the lines that test_bpe.c encodes
with semd's BPE and with independent implementations, which must agree.

Deterministic (fixed seed). Run from the top of the tree:

    python3 tests/bpe/gen_corpus.py > tests/data/bpe-corpus.txt

Random characters come from blocks filled by Unicode 9.0 (POOLS), whose
general categories are the same in the Unicode versions on both sides of
the comparison (the C table's and the JavaScript engine's). U+0085 and U+FEFF are left out: they
are White_Space differently in JavaScript's \\s (the reference C follows
White_Space, as Python's regex module and Rust's regex do).
"""
import random
import sys

rng = random.Random(20240909)

WORDS = """the of and to in is was for on that with as by at from his her
it an were are which this be or has had not but what all when there can
been one would will who more no if out so said up its about into than them
only other new some could time these two may then do first any my now such
like our over man even most made after also did many before must through
back years where much your way well down should because each just those
people how too little state good very make world still own see men work
long here get both between life being under never day same another know
while last might us great old year off come since against go came right
used take three king queen meaning numbers tokenizer embedding unbelievable
antidisestablishmentarianism supercalifragilistic naïve café résumé
coöperate façade Zürich Ångström jalapeño São Paulo""".split()

CONTRACTIONS = ["I'm", "you're", "they've", "we'll", "he'd", "it's",
                "don't", "can't", "won't", "DON'T", "I'M", "'s", "'t",
                "'re", "'ve", "'m", "'ll", "'d", "o'clock", "rock'n'roll",
                "'quoted'", "''s", "'S", "y'all'd've", "ma'am"]

PUNCT = list(".,;:!?-()[]{}\"'/\\@#$%^&*_+=<>|~`") + [
    "...", "--", "—", "–", "«", "»", "“", "”", "‘", "’", "…", "•", "§",
    "©", "®", "™", "°", "±", "×", "÷", "€", "£", "¥", "¢", "¶", "†"]

SCRIPTS = {
    "cjk": "日本語の文章です。中文句子和汉字。한국어 문장입니다。東京都渋谷区",
    "kana": "ひらがなカタカナｶﾀｶﾅーッ",
    "arabic": "مرحبا بالعالم، هذه جملة عربية. ١٢٣٤٥٦٧٨٩٠",
    "hebrew": "שלום עולם, זה משפט בעברית.",
    "cyrillic": "Привет мир, это русское предложение. Ёжик",
    "greek": "Γειά σου κόσμε, αυτή είναι μια ελληνική πρόταση. Ωμέγα",
    "devanagari": "नमस्ते दुनिया, यह हिंदी वाक्य है। १२३",
    "thai": "สวัสดีชาวโลก นี่คือประโยคภาษาไทย ๑๒๓",
    "combining": "e\u0301 a\u0300 o\u0308 n\u0303 c\u0327 Z\u0335\u0327a\u0336\u0328l\u0337g\u0338o",
    "math": "∀x∈ℝ: x²≥0 ∑ ∫ √2 ≈ 1.414 ½ ¼ ¾ Ⅻ ⅷ ① ⑩ ₀₁₂ ∞ ≠ ≤",
    "emoji": "😀 😃 👍🏽 👨‍👩‍👧‍👦 🇫🇷 🇯🇵 ❤️ ✨ 🎉 🤖 🧠 🏳️‍🌈 ☕",
    "spaces": "\u00a0\u2002\u2003\u2009\u200a\u3000\u202f\u205f\u1680",
    "zero-width": "a\u200bb\u200cc\u200dd\u2060e",
}

CODE = [
    'int main(int argc, char **argv) { return argc > 1 ? 0 : 1; }',
    'for (size_t i = 0; i < n; i++) sum += a[i] * b[i];',
    'def encode(text: str) -> list[int]:',
    '    return [self.encoder[t] for t in self.bpe(token).split(" ")]',
    '{"name": "semd", "version": "0.1.0", "tags": ["a","b","c"]}',
    '[{"id":1,"text":"x"},{"id":2,"text":"y"}]',
    "x = {'a': 1, 'b': [1, 2, 3]}",
    '<div class="main"><p>Hello &amp; welcome</p></div>',
    'SELECT id, name FROM users WHERE age >= 21 ORDER BY name;',
    'git commit -m "fix: off-by-one" && make -j2 test',
    'https://example.com/path?q=king%20-man&k=10#frag',
    'user@example.org, admin+tag@sub.example.co.uk',
    '#include <stdio.h>\t// comment',
    'if (x != NULL && *x == \'\\0\') return -EINVAL;',
    'const f = (a, b) => a ?? b || c && !d;',
    '$ echo $HOME | sed \'s/\\//-/g\'',
    '0x7FFFFFFF 0b1010 0o777 1e-9 3.14159 -42 +7 1_000_000',
    '<|endoftext|> <|im_start|>user',
]


def digits(n):
    return "".join(rng.choice("0123456789") for _ in range(n))


def ws():
    return rng.choice([" ", "  ", "   ", "\t", " \t ", "\t\t", "    ",
                       " " * rng.randint(5, 40), "\r", "\x0b", "\x0c",
                       "\u3000", "\u00a0", " \u00a0 "])


def sentence():
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
    if rng.random() < 0.5:
        words.insert(rng.randrange(len(words)), rng.choice(CONTRACTIONS))
    if rng.random() < 0.3:
        words[0] = words[0].capitalize()
    if rng.random() < 0.2:
        words = [w.upper() for w in words]
    s = ""
    for w in words:
        sep = " " if rng.random() < 0.85 else ws()
        s += (sep if s else "") + w
        if rng.random() < 0.15:
            s += rng.choice(PUNCT)
    return s + rng.choice([".", "!", "?", "", "...", ".\"", ");"])


def numbers():
    parts = []
    for _ in range(rng.randint(1, 6)):
        k = rng.random()
        if k < 0.3:
            parts.append(digits(rng.randint(1, 40)))
        elif k < 0.5:
            parts.append(f"{rng.randint(0, 10**6)}.{digits(rng.randint(1, 6))}")
        elif k < 0.6:
            parts.append(f"{rng.randint(1900, 2100)}-{rng.randint(1, 12):02}-{rng.randint(1, 28):02}")
        elif k < 0.7:
            parts.append(f"${rng.randint(1, 999)},{digits(3)},{digits(3)}")
        elif k < 0.8:
            parts.append("+" + digits(2) + " " + digits(3) + "-" + digits(4))
        else:
            parts.append(rng.choice(WORDS) + digits(rng.randint(1, 5)))
    return rng.choice([" ", "  ", ", ", "\t"]).join(parts)


def script_line():
    name = rng.choice(list(SCRIPTS))
    text = SCRIPTS[name]
    a = rng.randrange(len(text))
    b = min(len(text), a + rng.randint(1, 30))
    s = text[a:b]
    if rng.random() < 0.5:
        s = sentence() + " " + s
    if rng.random() < 0.3:
        s += ws() + numbers()
    return s


# Ranges of code points assigned by Unicode 9.0 or earlier, by kind.
POOLS = [
    (0x0021, 0x007E), (0x00A1, 0x024F), (0x0370, 0x03FF), (0x0400, 0x04FF),
    (0x0591, 0x05F4), (0x0600, 0x06FF), (0x0900, 0x097F), (0x0E01, 0x0E5B),
    (0x1E00, 0x1EFF), (0x2010, 0x2027), (0x2030, 0x205E), (0x2070, 0x209C),
    (0x20A0, 0x20BE), (0x2100, 0x218B), (0x2190, 0x23FE), (0x2460, 0x24FF),
    (0x2500, 0x27FF), (0x3041, 0x3096), (0x30A1, 0x30FA), (0x4E00, 0x9FD5),
    (0xAC00, 0xD7A3), (0xFF01, 0xFF60), (0x1F300, 0x1F6D2),
    (0x1D400, 0x1D6A5), (0x10400, 0x1044F),
]


def assigned(cp):
    # Skips code points unassigned in Python's own Unicode data: the gaps
    # of the blocks above and the noncharacters.
    import unicodedata
    return unicodedata.category(chr(cp)) != "Cn"


def random_line():
    out = []
    for _ in range(rng.randint(1, 25)):
        lo, hi = rng.choice(POOLS)
        cp = rng.randint(lo, hi)
        if not assigned(cp) or cp in (0x0085, 0xFEFF):
            continue
        out.append(chr(cp))
        if rng.random() < 0.25:
            out.append(ws())
    return "".join(out)


def whitespace_line():
    parts = []
    for _ in range(rng.randint(1, 6)):
        parts.append(rng.choice([rng.choice(WORDS), numbers(), rng.choice(PUNCT), ""]))
    s = ""
    for p in parts:
        s += ws() + p
    if rng.random() < 0.5:
        s += ws()
    return s


lines = []
lines += CODE
lines += CONTRACTIONS
lines += list(SCRIPTS.values())
makers = [(sentence, 300), (numbers, 150), (script_line, 200),
          (random_line, 200), (whitespace_line, 150)]
for make, count in makers:
    for _ in range(count):
        lines.append(make())
for _ in range(60):
    # mixtures of everything, long lines
    lines.append(" ".join(rng.choice([sentence, numbers, script_line,
                                      random_line, whitespace_line])()
                          for _ in range(rng.randint(2, 6))))
for _ in range(20):
    lines.append("")  # blank lines: newline runs in the whole-file text
rng.shuffle(lines)
out = "\n".join(lines) + "\n"
assert "\n" not in "".join(lines)
sys.stdout.write(out)
