"""peer_gensim.py - the peer for the HTTP benchmark: gensim's most_similar
behind Flask, run by gunicorn (`gunicorn -w 2 --preload peer_gensim:app`).

It serves GET /v1/neighbors?word=&k= and GET /v1/health like semd, on the
same vectors: it reads the semd model file named by SEMD_MODEL directly
(layout atop core/model.c) into a KeyedVectors, so both servers answer from
identical data.
"""
import os
import struct
import warnings

import numpy as np
from flask import Flask, jsonify, request
from gensim.models import KeyedVectors

warnings.simplefilter("ignore")


def load(path):
    head = open(path, "rb").read(4096)
    rows, = struct.unpack_from("<Q", head, 16)
    dims, = struct.unpack_from("<I", head, 24)
    nsec, = struct.unpack_from("<I", head, 36)
    sec = {}
    for i in range(nsec):
        kind, _, off, size, _ = struct.unpack_from("<IIQQQ", head, 256 + 32 * i)
        sec[kind] = (off, size)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    mat = np.frombuffer(mm, dtype="<f4", count=rows * dims,
                        offset=sec[1][0]).reshape(rows, dims)
    wo = np.frombuffer(mm, dtype="<u8", count=rows + 1,
                       offset=sec[4][0]).tolist()
    s = bytes(mm[sec[5][0]:sec[5][0] + sec[5][1]])
    words = [s[wo[i]:wo[i + 1] - 1].decode() for i in range(rows)]
    kv = KeyedVectors(dims, count=rows)
    kv.add_vectors(words, np.array(mat))
    kv.fill_norms()
    return kv


kv = load(os.environ["SEMD_MODEL"])
app = Flask(__name__)


@app.get("/v1/health")
def health():
    return jsonify(result={"status": "ok"})


@app.get("/v1/neighbors")
def neighbors():
    word = request.args.get("word", "")
    k = int(request.args.get("k", "10"))
    try:
        sims = kv.most_similar(word, topn=k)
    except KeyError:
        return jsonify(error={"code": "unknown_word", "words": [word]}), 404
    return jsonify(result={"neighbors": [
        {"word": w, "similarity": float(s)} for w, s in sims]})
