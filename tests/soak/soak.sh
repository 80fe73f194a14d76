#!/usr/bin/env bash
# soak.sh - semd under load for a minute per daemon, with reloads,
# training and kills; not part of `make test` (it takes about a quarter
# of an hour).
#
# usage: tests/soak/soak.sh [MODEL]     (BUILD=build by default)
#
# MODEL (or SOAK_MODEL) defaults to data/glove-6b-100d.semd (`make model`);
# when it is missing the 20k-word test fixture is used instead, and the
# output says so. Builds nothing: it needs $BUILD/semd, the fixture and
# $BUILD/tests/test_online (`make BUILD=... check` makes them), curl,
# python3 and wrk (installed with apt-get when missing).
#
# The two daemons run one after the other, each on loopback, each under
# wrk at SOAK_CONNECTIONS (256) connections for SOAK_SECONDS (60) from
# SOAK_WRK_THREADS (2) threads with a 10 s timeout, running tests/soak/
# mix.lua: GET /v1/neighbors over the model's most frequent words (up to
# 1000 per initial letter) with k from 1 to 50, and 30 % GET /v1/analogy
# over the Google analogies whose words the model has.
#  A. read-only: `semd serve MODEL`, sent SIGHUP every SOAK_HUP_EVERY (5)
#     seconds, so the model and index are reloaded all through the run.
#  B. training: `semd serve COPY --train --data-dir DIR --token-file FILE`
#     on a copy of MODEL, publishing every SOAK_PUBLISH_INTERVAL (10) s and
#     persisting every SOAK_PERSIST_INTERVAL (20) s, while tests/soak/
#     post.py posts generated sentences to POST /v1/train, SOAK_POST_RATE
#     (20) posts a second on one connection (honouring 429 Retry-After),
#     and records the sequence number of every 202. (SIGHUP would be
#     ignored: a training daemon's versions come from its trainer.) After
#     the run the daemon is SIGKILLed while posting goes on, restarted on
#     its data directory, and every acknowledged record must be in the
#     snapshot it starts from or in the journal it replays; every
#     snapshot file must verify.
#  C. the kill-and-restart loop: tests/soak/crash.sh SOAK_KILLS (20), on
#     the fixture.
# RSS (VmRSS, /proc/PID/status) is read before and after each measured
# run in the same state. First a warm-up under the same load (and reloads
# or training): at least SOAK_WARMUP (20) s, then on until the result
# cache is full (--cache-size SOAK_CACHE_SIZE, 10000) and a trainer's
# retained versions (each a mapped model file, kept for drift queries)
# stop growing. Then the RSS is read after SOAK_SETTLE (10) s of the same
# load on one version: for A right after a SIGHUP, for B with posting
# paused and the backlog published. The growth of the cache, the
# allocator's arenas and the mapped pages is warm-up, not a leak.
# It prints, per daemon: requests served, responses by status, 5xx,
# connection errors (wrk's connect/read/write/timeout), p50/p99 latency,
# RSS before and after and its growth, versions published; records
# acknowledged and recovered; then one PASS/FAIL line per criterion and
# the load average. Exit status 0 when every criterion passes.
# SOAK_KEEP=1 keeps the temporary directory (logs, data) for a look.
#
# The whole script is one block, read before it runs, so that editing the
# file does not change a run in progress.
{
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
soak=$here/tests/soak
build=${BUILD:-build}
case $build in /*) ;; *) build=$here/$build ;; esac
seconds=${SOAK_SECONDS:-60}
conns=${SOAK_CONNECTIONS:-256}
wrk_threads=${SOAK_WRK_THREADS:-2}
warmup=${SOAK_WARMUP:-20}
warmup_max=${SOAK_WARMUP_MAX:-300}
cache_size=${SOAK_CACHE_SIZE:-10000}
hup_every=${SOAK_HUP_EVERY:-5}
publish_interval=${SOAK_PUBLISH_INTERVAL:-10}
post_rate=${SOAK_POST_RATE:-20}
settle=${SOAK_SETTLE:-10}
persist_interval=${SOAK_PERSIST_INTERVAL:-20}
kills=${SOAK_KILLS:-20}
per_ip=${SOAK_PER_IP:-$((${SOAK_CONNECTIONS:-256} + 64))}
semd=$build/semd
fixture=$build/glove-20k.semd

say() { printf 'soak: %s\n' "$*"; }
die() {
    printf 'soak.sh: %s\n' "$*" >&2
    exit 2
}

# ---------------------------------------------------------------- inputs
for f in "$semd" "$fixture" "$build/tests/test_online"; do
    [ -e "$f" ] || die "$f is missing; run make BUILD=${BUILD:-build} check"
done
for t in curl python3; do
    command -v $t >/dev/null || die "$t is missing; apt-get install $t"
done
if ! command -v wrk >/dev/null; then
    say "wrk is missing; installing it with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q wrk >/dev/null ||
        { apt-get update -q >/dev/null && apt-get install -y -q wrk; } ||
        die "cannot install wrk; apt-get install wrk"
fi
model=${1:-${SOAK_MODEL:-$here/data/glove-6b-100d.semd}}
if [ ! -f "$model" ]; then
    say "$model is missing (make model fetches it); using the 20k-word" \
        "fixture $fixture instead"
    model=$fixture
fi
# each connection is a descriptor in wrk and in the daemon
want_fd=$((conns + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $want_fd ]; then
    ulimit -n "$(ulimit -Hn)" 2>/dev/null
    [ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -n)" -ge $want_fd ] ||
        die "open files limit $(ulimit -n) is below $want_fd; raise" \
            "ulimit -n"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/semd-soak.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill -9 "$p" 2>/dev/null
    done
    wait 2>/dev/null
    if [ "${SOAK_KEEP:-0}" = 1 ]; then
        say "kept $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------- helpers
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# jget PATH: a value of the JSON document on stdin, by dotted path
jget() {
    python3 -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[k]
print("null" if v is None else v)' "$1"
}

# rss PID FIELD: a field of /proc/PID/status in kB (VmRSS, RssAnon...)
rss() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# start NAME ARGS...: starts `semd serve ARGS --listen 127.0.0.1:0` with
# its output in $tmp/NAME.out and log in $tmp/NAME.log; sets pid and port
# once it is ready. Every client here comes from 127.0.0.1: wrk's
# connections, the poster's and curl's must all fit under the cap per
# client address (default 256, the same as wrk's connections; past it a
# connection is closed at once, which wrk counts as a read error).
start() {
    local name=$1
    shift
    "$semd" serve "$@" --listen 127.0.0.1:0 \
        --max-connections-per-ip "$per_ip" >"$tmp/$name.out" \
        2>"$tmp/$name.log" &
    pid=$!
    pids+=("$pid")
    port=
    local i
    for ((i = 0; i < 1200; i++)); do
        port=$(sed -n 's/^semd: listening on http:.*:\([0-9]*\)$/\1/p' \
            "$tmp/$name.out" 2>/dev/null)
        [ -n "$port" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$port" ] || die "$name did not start: $(tail -3 "$tmp/$name.log")"
    for ((i = 0; i < 1200; i++)); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' \
            "http://127.0.0.1:$port/v1/ready")" = 200 ] && return 0
        sleep 0.1
    done
    die "$name did not become ready: $(tail -3 "$tmp/$name.log")"
}

# stop PID SIGNAL: the daemon's exit status (128 + signal when killed)
stop() {
    kill "-$2" "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

# hup_loop PID: SIGHUP every $hup_every s until killed
hup_loop() {
    while sleep "$hup_every"; do
        kill -HUP "$1" 2>/dev/null || break
    done
}

# load LABEL PORT SECONDS: wrk with mix.lua; its output in $tmp/LABEL.wrk
load() {
    wrk -t "$wrk_threads" -c "$conns" -d "${3}s" --timeout 10s --latency \
        -s "$soak/mix.lua" "http://127.0.0.1:$2" -- "$tmp/words" \
        "$tmp/analogies" 0.3 >"$tmp/$1.wrk" 2>&1
}

# metric PORT NAME: a figure of GET /metrics
metric() {
    curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n {
        print $2 }'
}

# retained PORT: how many published versions a trainer keeps
retained() {
    curl -s "http://127.0.0.1:$1/v1/train" | python3 -c 'import json, sys
print(len(json.load(sys.stdin)["result"]["retained_versions"]))'
}

# warm RUN PORT [train]: the warm-up. wrk for $warmup s, then on in
# 10 s runs until the result cache is full and, for a trainer, the number
# of retained versions has stopped growing while it publishes (each keeps
# its mapped pages); at most $warmup_max s. Sets warm_requests and
# warm_seconds.
warm() {
    local run=$1 port=$2 train=${3:-} entries kept=-1 now_kept p0 p1
    warm_requests=0
    warm_seconds=0
    p0=$(metric "$port" semd_train_publishes_total)
    load "$run-warmup" "$port" "$warmup"
    warm_seconds=$warmup
    warm_requests=$(mixval "$run-warmup" requests)
    while [ "$warm_seconds" -lt "$warmup_max" ]; do
        entries=$(metric "$port" semd_cache_entries)
        if [ -n "$train" ]; then
            # publishes first: one that lands between the two readings
            # then shows in the count and cannot pass for a plateau
            p1=$(metric "$port" semd_train_publishes_total)
            now_kept=$(retained "$port")
        fi
        if [ "${entries:-0}" -ge "$cache_size" ] && { [ -z "$train" ] ||
            { [ "$now_kept" = "$kept" ] && [ "$p1" -gt "$p0" ]; }; }; then
            break
        fi
        [ -n "$train" ] && kept=$now_kept p0=$p1
        load "$run-warmup" "$port" 10
        warm_seconds=$((warm_seconds + 10))
        warm_requests=$((warm_requests + $(mixval "$run-warmup" requests)))
    done
    warm_entries=$(metric "$port" semd_cache_entries)
    [ -n "$train" ] && warm_kept=$(retained "$port")
}

# sampler PID FILE: VmRSS and RssAnon (kB) every 10 s into FILE
sampler() {
    local t=0
    while :; do
        echo "$t $(rss "$1" VmRSS) $(rss "$1" RssAnon)" >>"$2"
        sleep 10
        t=$((t + 10))
    done
}

# version PORT: the version GET /v1/model answers on
version() {
    curl -s "http://127.0.0.1:$1/v1/model" | jget result.version
}

# settle_a RUN: the state in which A's RSS is read, the same at the start
# and at the end: one SIGHUP (a fresh mapping), then $settle s of the same
# load on that one version. Sets rss_now and anon_now.
settle_a() {
    local v i
    v=$(version "$port_a")
    kill -HUP "$pid_a"
    for ((i = 0; i < 300; i++)); do
        [ "$(version "$port_a")" -gt "$v" ] && break
        sleep 0.1
    done
    load "$1" "$port_a" "$settle"
    rss_now=$(rss "$pid_a" VmRSS)
    anon_now=$(rss "$pid_a" RssAnon)
}

# settle_b RUN: the same for B: posting paused (SIGSTOP), the backlog
# trained and published, then $settle s of the same load on that one
# version; posting resumes after. Sets rss_now and anon_now.
settle_b() {
    local i t
    kill -STOP "$post_pid"
    for ((i = 0; i < 1200; i++)); do
        t=$(curl -s "http://127.0.0.1:$port_b/v1/train")
        [ "$(jget result.journal.last_seq <<<"$t")" = \
            "$(jget result.journal.published_seq <<<"$t")" ] && break
        sleep 0.1
    done
    [ "$i" -lt 1200 ] || say "B: the backlog was not published in 120 s"
    load "$1" "$port_b" "$settle"
    rss_now=$(rss "$pid_b" VmRSS)
    anon_now=$(rss "$pid_b" RssAnon)
    kill -CONT "$post_pid"
}

# mapped PID: how many model files PID maps, and their resident MiB
mapped() {
    awk '/^[0-9a-f]+-[0-9a-f]+ / { f = ($6 ~ /\.semd( \(deleted\))?$/) }
        f && $1 == "Rss:" { kb += $2 }
        /^[0-9a-f]+-[0-9a-f]+ / && f { n[$6] = 1 }
        END { c = 0; for (k in n) c++; printf "%d files, %d MiB", c,
            kb / 1024 }' "/proc/$1/smaps"
}

# mixval LABEL KEY: a figure of mix.lua's summary line
mixval() {
    sed -n 's/^mix: requests=.*/&/p' "$tmp/$1.wrk" | tr ' ' '\n' |
        sed -n "s/^$2=//p"
}

fails=0
criteria=()
check() { # check PASS|FAIL TEXT...
    criteria+=("$1  ${*:2}")
    [ "$1" = PASS ] || fails=$((fails + 1))
}

# report RUN RSS0 ANON0 RSS1 ANON1: prints the figures of wrk run RUN
# (a or b, named A or B) and the RSS read before and after it, checks
# the criteria
report() {
    local run=$1 label=${1^^} rss0=$2 anon0=$3 rss1=$4 anon1=$5 growth
    grep '^mix: status' "$tmp/$run.wrk" | sed "s/^mix: /  $label: /"
    local req s5 other ce cr cw ct
    req=$(mixval "$run" requests)
    s5=$(mixval "$run" 5xx)
    other=$(mixval "$run" other)
    ce=$(mixval "$run" connect)
    cr=$(mixval "$run" read)
    cw=$(mixval "$run" write)
    ct=$(mixval "$run" timeout)
    if [ -z "$req" ]; then
        say "$label: wrk printed no summary:"
        cat "$tmp/$run.wrk"
        check FAIL "$label: wrk ran"
        return
    fi
    growth=$(awk -v a="$rss0" -v b="$rss1" \
        'BEGIN { printf "%.2f", (b - a) * 100 / a }')
    say "$label: requests $req in $(mixval "$run" seconds) s" \
        "($(awk -v r="$req" -v s="$(mixval "$run" seconds)" \
            'BEGIN { printf "%.0f", r / s }')/s), 5xx $s5, other non-200" \
        "$other"
    say "$label: connection errors: connect $ce, read $cr, write $cw," \
        "timeout $ct"
    say "$label: latency p50 $(mixval "$run" p50_ms) ms, p99" \
        "$(mixval "$run" p99_ms) ms, max $(mixval "$run" max_ms) ms"
    say "$label: VmRSS $((rss0 / 1024)) MiB after warm-up, $((rss1 / 1024))" \
        "MiB after the run: growth $growth % (anonymous:" \
        "$((anon0 / 1024)) -> $((anon1 / 1024)) MiB; each read after" \
        "$settle s of load on one version)"
    [ -s "$tmp/$run.rss" ] && say "$label: VmRSS/anonymous MiB every 10 s" \
        "of the run:" \
        "$(awk '{ printf "%s%d/%d", (NR > 1 ? " " : ""), $2 / 1024,
            $3 / 1024 }' "$tmp/$run.rss")"
    [ "$s5" = 0 ] && check PASS "$label: zero 5xx ($req requests)" ||
        check FAIL "$label: zero 5xx (got $s5 of $req)"
    [ $((ce + cr + cw + ct)) = 0 ] &&
        check PASS "$label: zero connection errors" ||
        check FAIL "$label: zero connection errors (connect $ce, read" \
            "$cr, write $cw, timeout $ct)"
    awk -v g="$growth" 'BEGIN { exit !(g < 5) }' &&
        check PASS "$label: RSS growth $growth % < 5 %" ||
        check FAIL "$label: RSS growth $growth % < 5 %"
}

say "model $model; $conns connections for $seconds s per daemon" \
    "(warm-up $warmup s), $wrk_threads wrk threads, $(nproc) cores"
say "load average at start: $(loadavg)"

# -------------------------------------------------- A: read-only, SIGHUP
start a "$model" --cache-size "$cache_size"
pid_a=$pid
port_a=$port
say "A: semd serve $(basename "$model") on port $port_a (pid $pid_a)," \
    "SIGHUP every $hup_every s"
# the words: the most frequent of each initial letter, as the model has
# them; the analogies: Google's, where the model has all three words
for l in a b c d e f g h i j k l m n o p q r s t u v w x y z; do
    curl -s "http://127.0.0.1:$port_a/v1/words?prefix=$l&limit=1000"
    echo
done | python3 -c 'import json, sys
for line in sys.stdin:
    for w in json.loads(line)["result"]["words"]:
        print(w["word"])' >"$tmp/words"
python3 - "$here/tests/data/questions-words.txt" "$tmp/words" \
    >"$tmp/analogies" <<'EOF'
import sys
known = set(open(sys.argv[2]).read().split())
for line in open(sys.argv[1]):
    w = line.lower().split()
    if len(w) == 4 and not line.startswith(":") and \
            all(x in known for x in w[:3]):
        print(" ".join(w[:3]))
EOF
say "A: $(wc -l <"$tmp/words") words, $(wc -l <"$tmp/analogies") analogies"
v0=$(version "$port_a")
hup_loop "$pid_a" &
hup_pid=$!
pids+=("$hup_pid")
warm a "$port_a"
say "A: warm-up: $warm_requests requests in $warm_seconds s, cache" \
    "$warm_entries of $cache_size entries"
kill "$hup_pid" 2>/dev/null
wait "$hup_pid" 2>/dev/null
settle_a a-settle0
rss0=$rss_now
anon0=$anon_now
hup_loop "$pid_a" &
hup_pid=$!
pids+=("$hup_pid")
sampler "$pid_a" "$tmp/a.rss" &
sampler_pid=$!
pids+=("$sampler_pid")
load a "$port_a" "$seconds"
kill "$sampler_pid"
say "A: load average after the run: $(loadavg)"
kill "$hup_pid" 2>/dev/null
wait "$hup_pid" 2>/dev/null
settle_a a-settle1
v1=$(version "$port_a")
report a "$rss0" "$anon0" "$rss_now" "$anon_now"
say "A: versions $v0 -> $v1 ($(grep -c 'msg=reloading' "$tmp/a.log")" \
    "reloads logged, $(grep -c 'level=error' "$tmp/a.log") errors logged)"
[ "$v1" -gt "$v0" ] && check PASS "A: reloaded while loaded ($v0 -> $v1)" ||
    check FAIL "A: reloaded while loaded ($v0 -> $v1)"
stop "$pid_a" TERM
st=$?
[ $st = 0 ] && check PASS "A: SIGTERM stops it with status 0" ||
    check FAIL "A: SIGTERM stops it with status 0 (got $st)"

# ------------------------------------------------------- B: training
mkdir -p "$tmp/train/data"
cp "$model" "$tmp/train/model.semd"
printf 'soak-%s\n' "$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')" \
    >"$tmp/train/token"
chmod 600 "$tmp/train/token"
train_flags=(--train --data-dir "$tmp/train/data" --token-file
    "$tmp/train/token" --publish-interval "$publish_interval"
    --persist-interval "$persist_interval" --cache-size "$cache_size")
start b "$tmp/train/model.semd" "${train_flags[@]}"
pid_b=$pid
port_b=$port
say "B: semd serve --train on a copy of $(basename "$model"), port" \
    "$port_b (pid $pid_b), publishing every $publish_interval s"
python3 "$soak/post.py" "$port_b" "$tmp/train/token" "$tmp/seqs" \
    "$post_rate" >"$tmp/post.out" 2>"$tmp/post.err" &
post_pid=$!
pids+=("$post_pid")
warm b "$port_b" train
say "B: warm-up: $warm_requests requests in $warm_seconds s, cache" \
    "$warm_entries of $cache_size entries, $warm_kept versions retained"
settle_b b-settle0
rss0=$rss_now
anon0=$anon_now
map0=$(mapped "$pid_b")
t0=$(curl -s "http://127.0.0.1:$port_b/v1/train")
sampler "$pid_b" "$tmp/b.rss" &
sampler_pid=$!
pids+=("$sampler_pid")
load b "$port_b" "$seconds"
kill "$sampler_pid"
say "B: load average after the run: $(loadavg)"
t1=$(curl -s "http://127.0.0.1:$port_b/v1/train")
settle_b b-settle1
report b "$rss0" "$anon0" "$rss_now" "$anon_now"
say "B: model files mapped (the served version and the retained ones):" \
    "$map0 after warm-up, $(mapped "$pid_b") after the run"
p0=$(jget result.publishes <<<"$t0")
p1=$(jget result.publishes <<<"$t1")
say "B: versions $(jget result.version <<<"$t0") ->" \
    "$(jget result.version <<<"$t1") ($((p1 - p0)) published during the" \
    "run), words trained $(jget result.words_trained <<<"$t1")," \
    "$(jget result.words_per_sec <<<"$t1") words/s, loss" \
    "$(jget result.loss <<<"$t1"), queued $(jget result.queued_records \
        <<<"$t1") records, persists $(jget result.persists <<<"$t1")"
[ $((p1 - p0)) -gt 0 ] && check PASS "B: published while loaded" \
    "($((p1 - p0)) versions)" ||
    check FAIL "B: published while loaded (0 versions)"
# the kill comes while the poster posts and the trainer trains
stop "$pid_b" KILL
kill -TERM "$post_pid"
wait "$post_pid"
say "B: SIGKILL during training; $(cat "$tmp/post.out")"
acked=$(wc -l <"$tmp/seqs")
start b2 "$tmp/train/model.semd" "${train_flags[@]}"
t2=$(curl -s "http://127.0.0.1:$port/v1/train")
inc=$(jget result.start.included_seq <<<"$t2")
from=$(jget result.start.replay_from <<<"$t2")
to=$(jget result.start.replay_to <<<"$t2")
covered=$((to > inc ? to : inc))
recovered=$(awk -v c="$covered" '$1 <= c' "$tmp/seqs" | wc -l)
say "B: restart: $acked records acknowledged, $recovered recovered" \
    "(persisted to $inc, replayed $from..$to)"
[ "$acked" -gt 0 ] && [ "$recovered" = "$acked" ] &&
    check PASS "B: $recovered of $acked acknowledged records recovered" \
        "after SIGKILL" ||
    check FAIL "B: $recovered of $acked acknowledged records recovered" \
        "after SIGKILL"
stop "$pid" TERM
st=$?
bad=0
for f in "$tmp"/train/data/snapshots/*.semd; do
    [ -e "$f" ] || continue
    "$semd" verify "$f" >/dev/null 2>&1 || {
        say "B: $f does not verify"
        bad=$((bad + 1))
    }
done
[ $st = 0 ] && [ $bad = 0 ] &&
    check PASS "B: restarted daemon stops with status 0; snapshots verify" ||
    check FAIL "B: restarted daemon stops with status $st; $bad snapshots" \
        "do not verify"

# -------------------------------------------- C: kill-and-restart loop
say "C: tests/soak/crash.sh $kills (SIGKILL during training, on the fixture)"
BUILD=$build bash "$soak/crash.sh" "$kills" >"$tmp/crash.out" 2>&1
st=$?
grep '^crash test:' "$tmp/crash.out" | tail -3 | sed 's/^/  /'
line=$(grep 'restarts after SIGKILL passed' "$tmp/crash.out")
if [ $st = 0 ] && [ -n "$line" ]; then
    check PASS "C: ${line#crash test: }"
else
    tail -20 "$tmp/crash.out"
    check FAIL "C: crash.sh $kills failed (status $st)"
fi

# --------------------------------------------------------------- verdict
say "load average at the end: $(loadavg)"
for c in "${criteria[@]}"; do
    printf '%s\n' "$c"
done
if [ $fails = 0 ]; then
    say "PASS: every criterion"
    exit 0
fi
say "FAIL: $fails criteria failed (SOAK_KEEP=1 keeps the logs)"
exit 1
}
