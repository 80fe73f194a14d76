#!/usr/bin/env bash
# Runs every executable tests/bench/bench_*.sh in name order and prints one
# table. Each script prints rows "| name | measured | reference | ratio |
# target | verdict |" where the reference is measured in the same run, so
# ratios stay meaningful on a noisy machine. Scripts get BUILD, SEMD_BIN and
# SEMD_MODEL from the environment (see the Makefile's bench target).
set -u
here=$(cd "$(dirname "$0")" && pwd)
export BUILD=${BUILD:-build}
export SEMD_BIN=${SEMD_BIN:-$BUILD/semd}
export SEMD_MODEL=${SEMD_MODEL:-data/glove-6b-100d.semd}

echo "semd benchmarks: $(basename "$SEMD_MODEL"), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| name | measured | reference | ratio | target | verdict |"
echo "|---|---|---|---|---|---|"
status=0
for b in "$here"/bench_*.sh; do
    [ -x "$b" ] || continue
    if ! "$b"; then
        echo "| $(basename "$b") | failed | | | | FAIL |"
        status=1
    fi
done
exit $status
