#!/usr/bin/env bash
# Runs libFuzzer targets for a fixed time each and prints one table row per
# target: executions, executions per second, edges covered, features,
# corpus size, and the verdict. Usage: run.sh BINDIR SECONDS JOBS TARGET...
#
# JOBS targets run at a time (empty or 0: one per core), each for its own
# SECONDS; a line says when each one ends. Each target's output goes to
# BINDIR/logs/TARGET.log; the findings of a failed one are printed at the
# end. Exit status: 0 when every target passed, 1 when one failed, 2 when
# one is not built (checked before any starts).
#
# Each target starts from its committed seeds (tests/fuzz/corpus/TARGET)
# and a working corpus in BINDIR/corpus/TARGET that keeps what earlier runs
# found; new inputs go to the working corpus only. A crash, leak, timeout
# or out-of-memory leaves the input in BINDIR/artifacts/ and fails the run.
set -u
here=$(cd "$(dirname "$0")" && pwd)
bindir=$1
secs=$2
jobs=$3
shift 3
case $jobs in
'' | 0 | *[!0-9]*) jobs=$(nproc 2>/dev/null || echo 1) ;;
esac
for t in "$@"; do
    if [ ! -x "$bindir/$t" ]; then
        echo "fuzz: $bindir/$t is not built" >&2
        exit 2
    fi
done
mkdir -p "$bindir/logs" "$bindir/artifacts"

run_one() {
    local t=$1 t0=$SECONDS
    local work="$bindir/corpus/$t" seeds="$here/corpus/$t"
    local dict="" d
    mkdir -p "$work"
    # fuzz_convert_wink uses wink.dict, fuzz_bpe bpe.dict, ...
    for d in "$here/dict/${t#fuzz_}.dict" \
             "$here/dict/${t#fuzz_convert_}.dict"; do
        [ -f "$d" ] && dict="-dict=$d" && break
    done
    [ -d "$seeds" ] || seeds=""
    # libFuzzer ends with _Exit, so the targets' own clean-up never runs:
    # their temporary files go in a directory removed here
    local base=/dev/shm tmp
    [ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
    tmp=$(mktemp -d "$base/semd-fuzz-$t.XXXXXX") || return
    # -timeout: one input taking this long is a finding (a hang); the RSS
    # limit catches an input that makes us allocate without bound. One
    # BLAS and one OpenMP thread: the targets use none, and idle pool
    # threads would spin on the cores the fuzzers share.
    TMPDIR=$tmp OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
    "$bindir/$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$bindir/artifacts/$t-" \
        $dict "$work" $seeds >"$bindir/logs/$t.log" 2>&1 &
    local fuzzer=$! rc
    # stop_all signals this shell: pass it on to the fuzzer, then collect
    # it (wait returns early when a trap runs)
    trap 'kill "$fuzzer" 2>/dev/null' TERM
    wait "$fuzzer"
    rc=$?
    if [ "$rc" -gt 128 ] && kill -0 "$fuzzer" 2>/dev/null; then
        wait "$fuzzer"
        rc=$?
    fi
    echo "$rc" >"$bindir/logs/$t.rc"
    rm -rf "$tmp"
    echo "fuzz: $t ended after $((SECONDS - t0)) s (exit $rc)"
}

# An interrupted run stops the targets it started, and says so.
pids=()
stop_all() {
    trap - INT TERM
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null
    done
    wait
    echo "fuzz: interrupted" >&2
    exit 130
}
trap stop_all INT TERM

echo "fuzz: $# targets, $secs s each, $jobs at a time"
running=0
for t in "$@"; do
    rm -f "$bindir/logs/$t.rc" # an earlier run's may not count
    run_one "$t" &
    pids+=($!)
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait
trap - INT TERM

stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -n 1; }

printf '| %-26s | %7s | %12s | %9s | %6s | %8s | %6s | %-8s |\n' \
    target seconds executions "exec/s" edges features corpus verdict
printf '|%s|%s|\n' "----------------------------|---------|--------------" \
    "-----------|--------|----------|--------|----------"
bad=0
for t in "$@"; do
    log="$bindir/logs/$t.log"
    rc=$(cat "$bindir/logs/$t.rc" 2>/dev/null || echo 1)
    execs=$(stat number_of_executed_units "$log")
    eps=$(stat average_exec_per_sec "$log")
    # the last status line: "#N DONE cov: 1234 ft: 5678 corp: 90/12Kb ..."
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    verdict=pass
    if [ "$rc" -ne 0 ]; then
        verdict="FAIL($rc)"
        bad=1
    fi
    printf '| %-26s | %7s | %12s | %9s | %6s | %8s | %6s | %-8s |\n' \
        "$t" "$secs" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" \
        "${corp:-?}" "$verdict"
done
if [ "$bad" -ne 0 ]; then
    for t in "$@"; do
        rc=$(cat "$bindir/logs/$t.rc" 2>/dev/null || echo 1)
        [ "$rc" -eq 0 ] && continue
        echo
        echo "== $t (exit $rc): $bindir/logs/$t.log"
        grep -E 'ERROR|SUMMARY|property broken|Test unit written|^    #[0-9]' \
            "$bindir/logs/$t.log" | head -n 40 | grep . ||
            tail -n 20 "$bindir/logs/$t.log"
    done
    exit 1
fi
