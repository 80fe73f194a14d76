#!/usr/bin/python3
"""Reference numbers from gensim for `semd eval`, as JSON on stdout.

Loads a word2vec binary (the same vectors as a semd model: `semd export`
writes one, and tests/data/glove-20k.bin is the fixture's source) and runs
KeyedVectors.evaluate_word_analogies and evaluate_word_pairs with
case_insensitive=True. The output has the shape of `semd eval --json`, plus
the gensim version:

    /usr/bin/python3 tests/gensim/reference.py VECTORS.bin --analogies FILE \
        --pairs FILE [--restrict N] [--pairs-restrict N] \
        [--method 3cosadd|3cosmul] [--also-3cosmul]

--also-3cosmul adds "analogies_3cosmul", the same test by 3CosMul.
tests/data/gensim-reference.json is this script's output for the fixture:

    /usr/bin/python3 tests/gensim/reference.py tests/data/glove-20k.bin \
        --analogies tests/data/questions-words.txt \
        --pairs tests/data/wordsim353.tsv --restrict 30000 --also-3cosmul

gensim 4.2 ignores evaluate_word_analogies' similarity_function, so for
3cosmul this script passes most_similar_cosmul's formula in place of
most_similar, computed over the same first N rows (gensim's own
most_similar_cosmul ignores restrict_vocab).
"""
import argparse
import json
import sys

import gensim
import numpy as np
from gensim.models import KeyedVectors


def cosmul_restricted(kv, restrict):
    """most_similar_cosmul over the first `restrict` rows only."""

    def most_similar(positive=None, negative=None, topn=10,
                     restrict_vocab=None):
        positive = list(positive or [])
        negative = list(negative or [])
        kv.fill_norms()
        n = min(restrict, len(kv.vectors))
        vecs, norms = kv.vectors[:n], kv.norms[:n]
        all_words = {kv.get_index(w) for w in positive + negative
                     if w in kv.key_to_index}
        pos = [kv.get_vector(w, norm=True) for w in positive]
        neg = [kv.get_vector(w, norm=True) for w in negative]
        pos_d = [((1 + np.dot(vecs, t) / norms) / 2) for t in pos]
        neg_d = [((1 + np.dot(vecs, t) / norms) / 2) for t in neg]
        dists = np.prod(pos_d, axis=0) / (np.prod(neg_d, axis=0) + 0.000001)
        best = gensim.matutils.argsort(dists, topn=topn + len(all_words),
                                       reverse=True)
        result = [(kv.index_to_key[i], float(dists[i])) for i in best
                  if i not in all_words]
        return result[:topn]

    return most_similar


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("vectors")
    ap.add_argument("--analogies")
    ap.add_argument("--pairs")
    ap.add_argument("--restrict", type=int, default=300000)
    ap.add_argument("--pairs-restrict", type=int, default=300000)
    ap.add_argument("--method", choices=["3cosadd", "3cosmul"],
                    default="3cosadd")
    ap.add_argument("--also-3cosmul", action="store_true")
    a = ap.parse_args()

    kv = KeyedVectors.load_word2vec_format(a.vectors, binary=True)
    out = {"gensim": gensim.__version__, "numpy": np.__version__,
           "rows": len(kv.index_to_key), "dims": kv.vector_size}
    if a.analogies:
        out["analogies"] = analogies(kv, a.analogies, a.restrict, a.method)
        if a.also_3cosmul:
            out["analogies_3cosmul"] = analogies(kv, a.analogies, a.restrict,
                                                 "3cosmul")
    if a.pairs:
        pearson, spearman, oov = kv.evaluate_word_pairs(
            a.pairs, restrict_vocab=a.pairs_restrict, case_insensitive=True)
        out["pairs"] = {"spearman": float(spearman[0]),
                        "pearson": float(pearson[0]),
                        "oov_ratio": float(oov)}
    json.dump(out, sys.stdout, indent=1)
    print()


def analogies(kv, path, restrict, method):
    """evaluate_word_analogies, reported as `semd eval --json` does."""
    if method == "3cosmul":
        kv.most_similar = cosmul_restricted(kv, restrict)
    try:
        score, sections = kv.evaluate_word_analogies(
            path, restrict_vocab=restrict, case_insensitive=True)
    finally:
        if method == "3cosmul":
            del kv.most_similar
    # questions per section are not reported by gensim: count them as
    # it does (lines of exactly 4 words)
    counts, name = {}, None
    with open(path, encoding="utf8") as f:
        for line in f:
            if line.startswith(": "):
                name = line.lstrip(": ").strip()
                counts.setdefault(name, 0)
            elif len(line.split()) == 4:
                counts[name] += 1
    secs = {}
    for s in sections[:-1]:
        c, i = len(s["correct"]), len(s["incorrect"])
        secs[s["section"]] = {
            "correct": c, "evaluated": c + i,
            "questions": counts.get(s["section"], 0),
            "accuracy": c / (c + i) if c + i else 0.0}
    total = sections[-1]
    c, i = len(total["correct"]), len(total["incorrect"])
    return {
        "method": method, "restrict": restrict, "correct": c,
        "evaluated": c + i, "questions": sum(counts.values()),
        "accuracy": score, "sections": secs}


if __name__ == "__main__":
    main()
