#!/usr/bin/env bash
# Rows for the index module: exact single query against gensim's
# most_similar and against one read of the matrix, a batch of 1,000 against
# one bare SGEMM, HNSW32 recall and latency, HNSW32 one query per FAISS
# call against batches of queries in one call, resident memory. All on one
# core with one BLAS thread; the HNSW index is built once with every core
# and saved beside the model, so later runs only load it.
set -eu
: "${BUILD:=build}" "${SEMD_MODEL:=data/glove-6b-100d.semd}"
bin=$BUILD/bench/bench_search
one="taskset -c 0"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

# Debian's gensim and numpy, whatever python3 comes first on PATH.
py=/usr/bin/python3
if ! $py -c 'import gensim' 2>/dev/null; then
    apt-get install -y -q python3-gensim >/dev/null 2>&1 || true
fi

gensim_ms=0
if $py -c 'import gensim' 2>/dev/null; then
    gensim_ms=$($one $py - "$SEMD_MODEL" <<'PY'
# gensim most_similar on the same vectors, read straight from the model
# file (layout atop core/model.c), for the same query words as the C side.
import struct, sys, time, warnings
warnings.simplefilter('ignore')
import numpy as np
from gensim.models import KeyedVectors
path = sys.argv[1]
h = open(path, 'rb').read(4096)
rows, = struct.unpack_from('<Q', h, 16)
dims, = struct.unpack_from('<I', h, 24)
nsec, = struct.unpack_from('<I', h, 36)
sec = {}
for i in range(nsec):
    kind, _, off, size, _ = struct.unpack_from('<IIQQQ', h, 256 + 32 * i)
    sec[kind] = (off, size)
mm = np.memmap(path, dtype=np.uint8, mode='r')
mat = np.frombuffer(mm, dtype='<f4', count=rows * dims,
                    offset=sec[1][0]).reshape(rows, dims)
wo = np.frombuffer(mm, dtype="<u8", count=rows + 1, offset=sec[4][0]).tolist()
s = bytes(mm[sec[5][0]:sec[5][0] + sec[5][1]])
words = [s[wo[i]:wo[i + 1] - 1].decode() for i in range(rows)]
kv = KeyedVectors(dims, count=rows)
kv.add_vectors(words, np.array(mat))
kv.fill_norms()
qs = [words[(100 + i * 37) % rows] for i in range(200)]
med = []
for rep in range(5):
    t = []
    for w in qs:
        t0 = time.perf_counter()
        kv.most_similar(w, topn=10)
        t.append(time.perf_counter() - t0)
    med.append(float(np.median(t)))
print('%.3f' % (1e3 * float(np.median(med))))
PY
)
fi

$one "$bin" "$SEMD_MODEL" single "$gensim_ms"
$one "$bin" "$SEMD_MODEL" batch
# built with every core on the first run (minutes), loaded afterwards
OMP_NUM_THREADS=$(nproc) "$bin" "$SEMD_MODEL" hnsw-build >&2
$one "$bin" "$SEMD_MODEL" hnsw
$one "$bin" "$SEMD_MODEL" hnsw-batch
$one "$bin" "$SEMD_MODEL" rss
