#!/usr/bin/env bash
# Rows for the HTTP daemon, measured with wrk over loopback for
# SEMD_BENCH_SECONDS (default 20) per run, at 8 and 64 connections, on
# GET /v1/neighbors with a mix of 10,000 distinct words (every 5th of
# the 50,000 most frequent, k=10), each request a word in turn:
#  - semd, exact index, result cache off, against gensim's most_similar
#    behind gunicorn with 2 workers (tests/bench/peer_gensim.py, same
#    vectors): target >= 10x;
#  - semd --index HNSW32 against semd's own /v1/health: target >= 0.5x,
#    measured twice: result cache off, on the mix above (every request
#    searches), and result cache on (the defaults) on words drawn the way
#    requests for words arrive, by a Zipf law (probability 1/rank) over
#    the 30,000 most frequent plain words, a fixed draw per wrk thread, in
#    the steady state of a running service: after a warm-up run of the
#    same length (not counted; it is where the first request for each word
#    searches) with draws of its own seeds, so the measured requests are
#    not a replay of it. The rows name their hit ratios. The last line says which
#    rows meet the target;
#  - for information, the daemon's CPU time per request, HNSW32 with the
#    cache off against /v1/health: what the throughput ratio comes to on
#    an idle machine, and far steadier than it on a busy one;
#  - non-2xx responses over every semd run: target 0;
#  - time from `semd serve` start to the first answered neighbours query,
#    HNSW32 index already saved beside the model: target <= 0.2 s (the
#    exact index answers while HNSW32 loads in the background), and, for
#    information, the time until HNSW32 is swapped in.
# The HNSW32 index is built (and saved) first if it is missing; that build
# is not timed. Installs wrk, python3-gensim, python3-flask and gunicorn
# from Debian when missing.
set -eu
: "${BUILD:=build}" "${SEMD_MODEL:=data/glove-6b-100d.semd}"
: "${SEMD_BIN:=$BUILD/semd}"
dur=${SEMD_BENCH_SECONDS:-20}
here=$(cd "$(dirname "$0")" && pwd)
model=$(cd "$(dirname "$SEMD_MODEL")" && pwd)/$(basename "$SEMD_MODEL")
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v gunicorn >/dev/null || missing+=(gunicorn)
/usr/bin/python3 -c 'import gensim' 2>/dev/null || missing+=(python3-gensim)
/usr/bin/python3 -c 'import flask' 2>/dev/null || missing+=(python3-flask)
if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || true
fi
command -v wrk >/dev/null || { echo "| http | wrk missing | | | | FAIL |"; exit 1; }

# the word mix: every 5th of the 50,000 most frequent words (plain
# lower-case ones, so they need no escaping in a URL)
"$SEMD_BIN" export "$model" - --to word2vec-text --limit 50000 |
    awk 'NR > 1 && NR % 5 == 0 && $1 ~ /^[a-z]+$/ {print $1}' >"$work/words"
nwords=$(wc -l <"$work/words")
{
    echo "local words = {"
    sed 's/.*/"&",/' "$work/words"
    cat <<'LUA'
}
local i = 0
setup = function(thread)
  -- threads start at different places of the list
  thread:set("start", math.random(#words))
end
init = function()
  i = start or 0
end
request = function()
  i = i + 1
  return wrk.format("GET", "/v1/neighbors?k=10&word=" .. words[(i % #words) + 1])
end
LUA
} >"$work/mix.lua"

# the Zipf mix: the 30,000 most frequent plain words, most frequent first;
# each wrk thread draws from its own fixed seed, so runs are comparable
"$SEMD_BIN" export "$model" - --to word2vec-text --limit 100000 |
    awk 'NR > 1 && $1 ~ /^[a-z]+$/ {print $1}' | head -n 30000 \
    >"$work/zipf.words"
nzipf=$(wc -l <"$work/zipf.words")
# zipf_lua FILE BASE: the draw, seeded BASE + thread number
zipf_lua() {
cat >"$1" <<LUA
local path = "$work/zipf.words"
local base = $2
local n = 0
setup = function(thread)
  n = n + 1
  thread:set("seed", n)
end
local words, cdf = {}, {}
init = function()
  math.randomseed(base + (seed or 0))
  local total = 0
  for w in io.lines(path) do
    words[#words + 1] = w
    total = total + 1 / #words
    cdf[#words] = total
  end
  for i = 1, #cdf do cdf[i] = cdf[i] / total end
end
request = function()
  local u, lo, hi = math.random(), 1, #cdf
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return wrk.format("GET", "/v1/neighbors?k=10&word=" .. words[lo])
end
LUA
}
# each run draws its own words from the same law: the warm-up and the two
# measured runs are not replays of one another
zipf_lua "$work/zipf.lua" 1000
zipf_lua "$work/zipf-64.lua" 3000
zipf_lua "$work/zipf-warm.lua" 5000

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http URL SECONDS: until URL answers 200
wait_http() {
    local t=0
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ]; do
        sleep 0.2
        t=$((t + 1))
        [ "$t" -lt $(($2 * 5)) ] || return 1
    done
}

# start_semd NAME FLAGS...: serves the model; sets port
start_semd() {
    local name=$1
    shift
    port=$(free_port)
    "$SEMD_BIN" serve "$model" --listen "127.0.0.1:$port" "$@" \
        >"$work/$name.out" 2>"$work/$name.log" &
    pids+=($!)
    semd_pid=$!
    wait_http "http://127.0.0.1:$port/v1/ready" 3600
}

stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

non2xx_total=0
# CPU time semd_pid has used, in microseconds (user + system)
cpu_us() {
    awk -v t="$(getconf CLK_TCK)" '{printf "%.0f", ($14 + $15) * 1e6 / t}' \
        "/proc/$semd_pid/stat"
}
# run_wrk URL CONNS [lua] [semd]: sets rps; with "semd" adds the run's
# non-2xx responses and socket errors to non2xx_total and sets cpu_req, the
# daemon's CPU time per request (microseconds): unlike requests per second
# it hardly depends on what else the machine runs
run_wrk() {
    local out bad errs c0 n
    [ "${4:-}" = semd ] && c0=$(cpu_us)
    out=$(wrk -t2 -c"$2" -d"${dur}s" ${3:+-s "$3"} "$1")
    if [ "${4:-}" = semd ]; then
        n=$(echo "$out" | awk '/ requests in / {print $1}')
        cpu_req=$(awk -v c=$(($(cpu_us) - c0)) -v n="${n:-0}" \
            'BEGIN {printf "%.0f", (n > 0 ? c / n : 0)}')
    fi
    bad=$(echo "$out" | sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p')
    errs=$(echo "$out" | sed -n 's/.*Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1 \2 \3 \4/p' \
        | awk '{print $1 + $2 + $3 + $4}')
    [ "${4:-}" = semd ] && non2xx_total=$((non2xx_total + ${bad:-0} + ${errs:-0}))
    rps=$(echo "$out" | sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p')
    rps=${rps:-0}
}

row() { # name measured reference ratio target verdict
    printf '| %s | %s | %s | %s | %s | %s |\n' "$@"
}
verdict() { # value op bound
    awk -v v="$1" -v b="$3" -v op="$2" 'BEGIN {
        ok = (op == ">=") ? v >= b : v <= b; print ok ? "PASS" : "FAIL" }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

threads=$(nproc)
# semd, exact, every request searched
start_semd exact --threads "$threads" --cache-size 0
url="http://127.0.0.1:$port"
run_wrk "$url" 8 "$work/mix.lua" semd; exact8=$rps
run_wrk "$url" 64 "$work/mix.lua" semd; exact64=$rps
batches=$(curl -s "$url/metrics" | awk '/^semd_batches_total/ {b=$2} /^semd_batched_queries_total/ {q=$2} END {printf "%.1f", b ? q / b : 0}')
stop_pid "$semd_pid"

# the peer: gensim most_similar behind gunicorn, 2 workers
gport=$(free_port)
(cd "$here" && SEMD_MODEL="$model" OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
    exec gunicorn -w 2 --preload -b "127.0.0.1:$gport" peer_gensim:app \
    >"$work/peer.log" 2>&1) &
pids+=($!)
peer_pid=$!
gensim8=0
gensim64=0
if wait_http "http://127.0.0.1:$gport/v1/health" 600; then
    run_wrk "http://127.0.0.1:$gport" 8 "$work/mix.lua"; gensim8=$rps
    run_wrk "http://127.0.0.1:$gport" 64 "$work/mix.lua"; gensim64=$rps
fi
stop_pid "$peer_pid"

# wait_index URL SECONDS: until the HNSW32 index answers (it loads, or
# the first time is built, in the background while the exact one answers)
wait_index() {
    local t=0
    until curl -s "$1/v1/model" | grep -q '"state":"ready"'; do
        sleep 0.5
        t=$((t + 1))
        [ "$t" -lt $(($2 * 2)) ] || return 1
    done
}

# semd, HNSW32 (built and saved on first use), against its own /v1/health,
# cache off then on
start_semd hnsw --threads "$threads" --index HNSW32 --cache-size 0
url="http://127.0.0.1:$port"
wait_index "$url" 3600
run_wrk "$url" 8 "$work/mix.lua" semd; hnsw8=$rps hnswcpu8=$cpu_req
run_wrk "$url" 64 "$work/mix.lua" semd; hnsw64=$rps hnswcpu64=$cpu_req
run_wrk "$url/v1/health" 8 "" semd; health8=$rps healthcpu8=$cpu_req
run_wrk "$url/v1/health" 64 "" semd; health64=$rps healthcpu64=$cpu_req
stop_pid "$semd_pid"
start_semd hnswc --threads "$threads" --index HNSW32
url="http://127.0.0.1:$port"
wait_index "$url" 3600
hits() {
    curl -s "$url/metrics" | awk '/^semd_cache_hits_total/ {h=$2}
        /^semd_cache_misses_total/ {m=$2} END {print h + 0, m + 0}'
}
# warm-up: the same draw, not counted (its errors are)
read -r hw mw <<<"$(hits)"
run_wrk "$url" 64 "$work/zipf-warm.lua" semd; warm=$rps
read -r h0 m0 <<<"$(hits)"
hitw=$(awk -v h=$((h0 - hw)) -v m=$((m0 - mw)) 'BEGIN {printf "%.0f", h + m ? 100 * h / (h + m) : 0}')
run_wrk "$url" 8 "$work/zipf.lua" semd; hnswc8=$rps
read -r h1 m1 <<<"$(hits)"
run_wrk "$url" 64 "$work/zipf-64.lua" semd; hnswc64=$rps
read -r h2 m2 <<<"$(hits)"
hit8=$(awk -v h=$((h1 - h0)) -v m=$((m1 - m0)) 'BEGIN {printf "%.0f", h + m ? 100 * h / (h + m) : 0}')
hit64=$(awk -v h=$((h2 - h1)) -v m=$((m2 - m1)) 'BEGIN {printf "%.0f", h + m ? 100 * h / (h + m) : 0}')
stop_pid "$semd_pid"

# start to first answered neighbours query, index saved: median of 5;
# then, for information, until HNSW32 answers. A small Python client
# polls over one process (spawning curl per attempt costs 60-100 ms on a
# busy two-core machine, which would be measured as start-up time).
cat >"$work/startup.py" <<'PY'
import http.client, json, subprocess, sys, time
semd, model, port = sys.argv[1], sys.argv[2], sys.argv[3]
def get(path):
    try:
        c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=5)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body
    except OSError:
        return 0, b""
t0 = time.monotonic()
p = subprocess.Popen([semd, "serve", model, "--listen", "127.0.0.1:" + port,
                      "--index", "HNSW32"], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
while get("/v1/neighbors?word=king&k=10")[0] != 200 and p.poll() is None:
    pass
t1 = time.monotonic()
while p.poll() is None:
    st, body = get("/v1/model")
    if st == 200 and json.loads(body)["result"]["index"]["state"] != "loading":
        break
    time.sleep(0.05)
t2 = time.monotonic()
p.terminate()
p.wait()
print(int((t1 - t0) * 1000), int((t2 - t0) * 1000))
PY
starts=()
swaps=()
for i in 1 2 3 4 5; do
    read -r a b <<<"$(/usr/bin/python3 "$work/startup.py" "$SEMD_BIN" "$model" "$(free_port)")"
    starts+=("$a")
    swaps+=("$b")
done
start_ms=$(printf '%s\n' "${starts[@]}" | sort -n | sed -n 3p)
swap_ms=$(printf '%s\n' "${swaps[@]}" | sort -n | sed -n 3p)

for c in 8 64; do
    eval "s=\$exact$c g=\$gensim$c"
    r=$(ratio "$s" "$g")
    row "http neighbours exact, $nwords words, $c conns, cache off (mean batch $batches)" "$s req/s" \
        "gensim+gunicorn $g req/s" "$r" ">= 10" "$(verdict "$r" ">=" 10)"
done
meets=()
for c in 8 64; do
    eval "s=\$hnsw$c h=\$health$c"
    r=$(ratio "$s" "$h")
    v=$(verdict "$r" ">=" 0.5)
    [ "$v" = PASS ] && meets+=("cache off, $c conns")
    row "http neighbours HNSW32, $nwords words, $c conns, cache off" \
        "$s req/s" "semd /v1/health $h req/s" "$r" ">= 0.5" "$v"
done
for c in 8 64; do
    eval "s=\$hnswcpu$c h=\$healthcpu$c"
    row "http daemon CPU per request, HNSW32 cache off, $c conns" \
        "$s us" "semd /v1/health $h us" "$(ratio "$s" "$h")" "" "-"
done
for c in 8 64; do
    eval "s=\$hnswc$c h=\$health$c hr=\$hit$c"
    r=$(ratio "$s" "$h")
    v=$(verdict "$r" ">=" 0.5)
    [ "$v" = PASS ] && meets+=("cache on, $c conns")
    row "http neighbours HNSW32, Zipf draw over $nzipf words, $c conns, cache on, after warm-up ($hr% hits)" \
        "$s req/s" "semd /v1/health $h req/s" "$r" ">= 0.5" "$v"
done
row "http neighbours HNSW32, Zipf warm-up run, 64 conns, cache on from empty ($hitw% hits)" \
    "$warm req/s" "semd /v1/health $health64 req/s" "$(ratio "$warm" "$health64")" "" "-"
if [ ${#meets[@]} -gt 0 ]; then
    m=$(IFS=';'; echo "${meets[*]}")
else
    m=none
fi
row "http HNSW32 rows meeting >= 0.5x of /v1/health" "$m" "" "" "" "-"
row "http machine load (1-min average, $(nproc) cores) after the runs" \
    "$(cut -d' ' -f1 /proc/loadavg)" "" "" "" "-"
row "http non-2xx or failed responses, all semd runs" "$non2xx_total" "0" "" \
    "= 0" "$(verdict "$non2xx_total" "<=" 0)"
row "http serve start to first neighbours answer (HNSW32 saved; exact answers while it loads)" \
    "${start_ms} ms" "" "" "<= 200 ms" "$(verdict "$start_ms" "<=" 200)"
row "http serve start to HNSW32 swapped in (information)" "${swap_ms} ms" \
    "" "" "" "-"
