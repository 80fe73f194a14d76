#!/usr/bin/env bash
# Rows for the HTTP daemon, measured with wrk over loopback for
# SEMD_BENCH_SECONDS (default 20) per run, at 8 and 64 connections, on
# GET /v1/neighbors with a mix of words (k=10):
#  - semd, exact index, against gensim's most_similar behind gunicorn with
#    2 workers (tests/bench/peer_gensim.py, same vectors): target >= 10x;
#  - semd --index HNSW32 against semd's own /v1/health: target >= 0.5x;
#  - non-2xx responses over every semd run: target 0;
#  - time from `semd serve` start to the first answered neighbours query,
#    HNSW32 index already saved beside the model: target <= 0.2 s.
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

cat > "$work/mix.lua" <<'LUA'
local words = {"the", "cat", "king", "paris", "music", "water", "computer",
  "river", "happy", "science", "house", "car", "money", "war", "school",
  "green", "france", "doctor", "book", "city", "game", "love", "government",
  "bank", "film", "summer", "coffee", "soldier", "piano", "island"}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/v1/neighbors?k=10&word=" .. words[(i % #words) + 1])
end
LUA

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
# run_wrk URL CONNS [lua] [semd]: sets rps; with "semd" adds the run's
# non-2xx responses and socket errors to non2xx_total
run_wrk() {
    local out bad errs
    out=$(wrk -t2 -c"$2" -d"${dur}s" ${3:+-s "$3"} "$1")
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
# semd, exact
start_semd exact --threads "$threads"
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

# semd, HNSW32 (built and saved on first use), against its own /v1/health
start_semd hnsw --threads "$threads" --index HNSW32
url="http://127.0.0.1:$port"
run_wrk "$url" 8 "$work/mix.lua" semd; hnsw8=$rps
run_wrk "$url" 64 "$work/mix.lua" semd; hnsw64=$rps
run_wrk "$url/v1/health" 8 "" semd; health8=$rps
run_wrk "$url/v1/health" 64 "" semd; health64=$rps
stop_pid "$semd_pid"

# start to first answered neighbours query, index saved: median of 5
starts=()
for i in 1 2 3 4 5; do
    port=$(free_port)
    t0=$(date +%s%N)
    "$SEMD_BIN" serve "$model" --listen "127.0.0.1:$port" --index HNSW32 \
        >/dev/null 2>&1 &
    p=$!
    until [ "$(curl -s -o /dev/null -w '%{http_code}' \
        "http://127.0.0.1:$port/v1/neighbors?word=king&k=10")" = 200 ]; do
        kill -0 "$p" 2>/dev/null || break
    done
    t1=$(date +%s%N)
    stop_pid "$p"
    starts+=($(( (t1 - t0) / 1000000 )))
done
start_ms=$(printf '%s\n' "${starts[@]}" | sort -n | sed -n 3p)

for c in 8 64; do
    eval "s=\$exact$c g=\$gensim$c"
    r=$(ratio "$s" "$g")
    row "http neighbours exact, $c conns (mean batch $batches)" "$s req/s" \
        "gensim+gunicorn $g req/s" "$r" ">= 10" "$(verdict "$r" ">=" 10)"
done
for c in 8 64; do
    eval "s=\$hnsw$c h=\$health$c"
    r=$(ratio "$s" "$h")
    row "http neighbours HNSW32, $c conns" "$s req/s" \
        "semd /v1/health $h req/s" "$r" ">= 0.5" "$(verdict "$r" ">=" 0.5)"
done
row "http non-2xx or failed responses, all semd runs" "$non2xx_total" "0" "" \
    "= 0" "$(verdict "$non2xx_total" "<=" 0)"
row "http serve start to first neighbours answer (HNSW32 saved)" \
    "${start_ms} ms" "" "" "<= 200 ms" "$(verdict "$start_ms" "<=" 200)"
