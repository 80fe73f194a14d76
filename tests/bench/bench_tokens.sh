#!/usr/bin/env bash
# Rows for LLM token matrices, on a safetensors file of GPT-2's shape
# (50,257 x 768, f16, fixed-seed random rows) with GPT-2's tokenizer files
# (tests/data/gpt2):
#  - converting it with the tokenizer (--vocab, --merges) against
#    converting it without (median of 3): the tokenizer's share;
#  - from `semd serve` start to /v1/ready answering 200 on the converted
#    model, against `semd info` of the same model (a process that only opens
#    it; median of 5): target < 0.2 s;
#  - the token health report (norms, near-duplicates by hashing,
#    unreachable tokens; median of 3), for information;
#  - POST /v1/tokenize of "From numbers to meaning" on the served model:
#    median latency over one keep-alive connection against GET /v1/health
#    on the same connection (the HTTP round trip alone): target < 2 ms;
#  - GET /v1/tokens/report answered from the cache against its first,
#    computing, call.
set -eu
: "${BUILD:=build}"
: "${SEMD_BIN:=$BUILD/semd}"
vocab=tests/data/gpt2/encoder.json
merges=tests/data/gpt2/vocab.bpe
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

row() { # name measured reference ratio target verdict
    printf '| %s | %s | %s | %s | %s | %s |\n' "$@"
}
now_ns() { date +%s%N; }
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (b - a) / 1e6}'; }
ratio() { # a b [format]
    awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN {printf f, a / b}'
}
under() { awk -v a="$1" -v t="$2" 'BEGIN {print a < t ? "PASS" : "FAIL"}'; }

# f16 rows with exponents 11..14 (|x| in [2^-4, 1)): random mantissas and
# signs, always finite and normal
/usr/bin/python3 - "$work/gpt2.safetensors" <<'PY'
import json, random, struct, sys
rows, dims = 50257, 768
n = rows * dims * 2
hdr = json.dumps({"wte.weight": {"dtype": "F16", "shape": [rows, dims],
                                 "data_offsets": [0, n]}}).encode()
hdr += b" " * (-len(hdr) % 8)
data = bytearray(random.Random(1).randbytes(n))
table = bytes((b & 0x83) | ((11 + ((b >> 2) & 3)) << 2) for b in range(256))
data[1::2] = data[1::2].translate(table)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(hdr)) + hdr + data)
PY
st=$work/gpt2.safetensors
model=$work/gpt2.semd

with=()
without=()
for i in 1 2 3; do
    t0=$(now_ns)
    "$SEMD_BIN" convert "$st" "$model" --tensor wte.weight --vocab "$vocab" \
        --merges "$merges" >/dev/null
    t1=$(now_ns)
    "$SEMD_BIN" convert "$st" "$work/plain.semd" --tensor wte.weight \
        --vocab "$vocab" >/dev/null
    t2=$(now_ns)
    with+=("$(ms "$t0" "$t1")")
    without+=("$(ms "$t1" "$t2")")
done
cw=$(printf '%s\n' "${with[@]}" | median)
co=$(printf '%s\n' "${without[@]}" | median)
row "convert 50,257 x 768 f16 safetensors with the GPT-2 tokenizer vs without" \
    "$cw ms" "$co ms" "$(ratio "$cw" "$co")" \
    "" "INFO"

# serve: start to ready, median of 5, timed by one Python process that
# starts semd and polls over a raw socket (a curl per poll would cost more
# than what is measured); the reference only opens the model
ready_row="semd serve start to /v1/ready on the converted GPT-2-sized model"
ready_row="$ready_row vs semd info"
read -r rd im < <(/usr/bin/python3 - "$SEMD_BIN" "$model" <<'PY'
import socket, statistics, subprocess, sys, time
semd, model = sys.argv[1], sys.argv[2]
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    s.close(); return p
def ready(port):
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=1)
    except OSError:
        return False
    try:
        c.sendall(b"GET /v1/ready HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        return c.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
    finally:
        c.close()
rd, im = [], []
for i in range(5):
    port = free_port()
    t0 = time.perf_counter()
    p = subprocess.Popen([semd, "serve", model, "--listen",
                          f"127.0.0.1:{port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not ready(port):
        if p.poll() is not None:
            sys.exit(1)
        time.sleep(0.001)
    rd.append(time.perf_counter() - t0)
    p.terminate(); p.wait()
    t0 = time.perf_counter()
    subprocess.run([semd, "info", model], stdout=subprocess.DEVNULL, check=True)
    im.append(time.perf_counter() - t0)
print(f"{statistics.median(rd) * 1e3:.1f} {statistics.median(im) * 1e3:.1f}")
PY
) || { row "$ready_row" "semd serve failed" "" "" "< 200 ms" "FAIL"; exit 1; }
row "$ready_row" "$rd ms" "$im ms" "$(ratio "$rd" "$im")" "< 200 ms" \
    "$(under "$rd" 200)"

# the health report (norms, near-duplicates by hashing, unreachable
# tokens), median of 3; exact near-duplicate search (--exact) costs
# rows^2 x dims and is left out of the bench
rep=()
for i in 1 2 3; do
    t0=$(now_ns)
    "$SEMD_BIN" tokens-report "$model" --json >"$work/report.json"
    t1=$(now_ns)
    rep+=("$(ms "$t0" "$t1")")
done
rh=$(printf '%s\n' "${rep[@]}" | median)
row "tokens-report on the GPT-2-sized model (hashing)" "$rh ms" "" "" "" "INFO"

# the routes, timed by one Python process over one keep-alive connection:
# 500 tokenize requests interleaved with 500 health requests (medians), then
# the report's first call and the median of 20 cached calls
tok_row="POST /v1/tokenize \"From numbers to meaning\" (median latency)"
tok_row="$tok_row vs GET /v1/health"
read -r tk hl r1 r2 < <(/usr/bin/python3 - "$SEMD_BIN" "$model" <<'PY'
import http.client, json, socket, statistics, subprocess, sys, time
semd, model = sys.argv[1], sys.argv[2]
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
s.close()
p = subprocess.Popen([semd, "serve", model, "--listen", f"127.0.0.1:{port}"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(3000):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("GET", "/v1/ready")
            r = c.getresponse()
            r.read()
            if r.status == 200:
                break
        except OSError:
            time.sleep(0.01)
    else:
        sys.exit(1)
    body = json.dumps({"text": "From numbers to meaning"})
    hdr = {"Content-Type": "application/json"}
    def timed(method, path, data=None, headers={}):
        t0 = time.perf_counter()
        c.request(method, path, data, headers)
        r = c.getresponse()
        out = r.read()
        if r.status != 200:
            sys.exit(1)
        return time.perf_counter() - t0, out
    tk, hl = [], []
    for i in range(500):
        t, out = timed("POST", "/v1/tokenize", body, hdr)
        ids = [x["id"] for x in json.loads(out)["result"]["tokens"]]
        if ids != [4863, 3146, 284, 3616]:
            sys.exit(1)
        tk.append(t)
        hl.append(timed("GET", "/v1/health")[0])
    r1, out = timed("GET", "/v1/tokens/report")
    if json.loads(out)["result"]["cached"]:
        sys.exit(1)
    r2 = [timed("GET", "/v1/tokens/report")[0] for _ in range(20)]
    print(f"{statistics.median(tk) * 1e3:.3f} "
          f"{statistics.median(hl) * 1e3:.3f} "
          f"{r1 * 1e3:.1f} {statistics.median(r2) * 1e3:.2f}")
finally:
    p.terminate(); p.wait()
PY
) || { row "$tok_row" "semd serve failed" "" "" "< 2 ms" "FAIL"; exit 1; }
row "$tok_row" "$tk ms" "$hl ms" "$(ratio "$tk" "$hl")" "< 2 ms" \
    "$(under "$tk" 2)"
row "GET /v1/tokens/report from the cache (median) vs its first call" \
    "$r2 ms" "$r1 ms" "$(ratio "$r2" "$r1" %.2g)" "" "INFO"
