#!/usr/bin/env bash
# Rows for the query engine, on one core with one BLAS thread:
#  - one 3CosMul analogy against gensim's most_similar_cosmul on the same
#    vectors and the same 200 questions;
#  - `semd eval --restrict 30000` against gensim's evaluate_word_analogies
#    and evaluate_word_pairs, computed in this run on the word2vec binary
#    that `semd export` writes from the model: correct and evaluated counts
#    must be equal in every section, Spearman equal to 1e-4.
set -eu
: "${BUILD:=build}" "${SEMD_MODEL:=data/glove-6b-100d.semd}"
: "${SEMD_BIN:=$BUILD/semd}"
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
one="taskset -c 0"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
questions=$root/tests/data/questions-words.txt
pairs=$root/tests/data/wordsim353.tsv
work=$BUILD/bench/query
mkdir -p "$work"

# Debian's gensim and numpy, whatever python3 comes first on PATH.
py=/usr/bin/python3
if ! $py -c 'import gensim' 2>/dev/null; then
    apt-get install -y -q python3-gensim >/dev/null 2>&1 || true
fi
if ! $py -c 'import gensim' 2>/dev/null; then
    echo "| 3CosMul analogy, one query | - | gensim not installed | - | <= 0.50 | FAIL |"
    exit 1
fi

# The same vectors for gensim: exported once, redone when the model changes.
bin=$work/model.bin
if [ ! -f "$bin" ] || [ "$SEMD_MODEL" -nt "$bin" ]; then
    "$SEMD_BIN" export "$SEMD_MODEL" "$bin.tmp" --to word2vec-binary >/dev/null
    mv "$bin.tmp" "$bin"
fi

gensim_ms=$($one $py - "$bin" "$questions" <<'PY'
# most_similar_cosmul(positive=[b, c], negative=[a]) on 200 questions picked
# as bench_query.c picks them: lower-cased lines whose words are all known.
import sys, time, warnings
warnings.simplefilter('ignore')
import numpy as np
from gensim.models import KeyedVectors
kv = KeyedVectors.load_word2vec_format(sys.argv[1], binary=True)
kv.fill_norms()
qs = []
for line in open(sys.argv[2], encoding='utf8'):
    if line.startswith(':'):
        continue
    w = line.lower().split()
    if len(w) == 4 and all(x in kv.key_to_index for x in w):
        qs.append(w)
qs = [qs[i * len(qs) // 200] for i in range(200)]
for a, b, c, _ in qs[:5]:
    kv.most_similar_cosmul(positive=[b, c], negative=[a], topn=10)
med = []
for rep in range(3):
    t = []
    for a, b, c, _ in qs:
        t0 = time.perf_counter()
        kv.most_similar_cosmul(positive=[b, c], negative=[a], topn=10)
        t.append(time.perf_counter() - t0)
    med.append(float(np.median(t)))
print('%.3f' % (1e3 * float(np.median(med))))
PY
)
$one "$BUILD/bench/bench_query" "$SEMD_MODEL" "$questions" "$gensim_ms"

# Evaluation: ours, then gensim's, in this run.
t0=$(date +%s.%N)
$one "$SEMD_BIN" eval "$SEMD_MODEL" --analogies "$questions" --pairs "$pairs" \
    --restrict 30000 --json >"$work/semd-eval.json"
t1=$(date +%s.%N)
$one $py "$root/tests/gensim/reference.py" "$bin" --analogies "$questions" \
    --pairs "$pairs" --restrict 30000 >"$work/gensim-eval.json"
t2=$(date +%s.%N)
$py - "$work/semd-eval.json" "$work/gensim-eval.json" "$t0" "$t1" "$t2" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
g = json.load(open(sys.argv[2]))
t0, t1, t2 = map(float, sys.argv[3:6])
bad = []
sa, ga = s["analogies"], g["analogies"]
for name, gs in ga["sections"].items():
    ss = sa["sections"].get(name, {})
    for k in ("correct", "evaluated", "questions"):
        if ss.get(k) != gs[k]:
            bad.append("%s %s %s/%s" % (name, k, ss.get(k), gs[k]))
for k in ("correct", "evaluated", "questions"):
    if sa[k] != ga[k]:
        bad.append("total %s %s/%s" % (k, sa[k], ga[k]))
ds = abs(s["pairs"]["spearman"] - g["pairs"]["spearman"])
ok = not bad and ds <= 1e-4
ours, theirs = t1 - t0, t2 - t1
print("| eval --restrict 30000: %d/%d correct, Spearman %.4f | %.1f s | "
      "gensim %s: %d/%d, %.4f, %.1f s | %.2f | equal counts in all %d "
      "sections, |dSpearman| <= 1e-4 | %s |"
      % (sa["correct"], sa["evaluated"], s["pairs"]["spearman"], ours,
         g["gensim"], ga["correct"], ga["evaluated"], g["pairs"]["spearman"],
         theirs, ours / theirs, len(ga["sections"]),
         "PASS" if ok else "FAIL " + "; ".join(bad[:3])))
PY
