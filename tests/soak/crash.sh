#!/usr/bin/env bash
# The crash test, longer: SIGKILL `semd serve --train` at random moments
# while text is posted and trained, KILLS times (default 25), checking
# after each restart that every acknowledged record was persisted or
# replayed and that every snapshot file verifies; one last run then stops
# cleanly and the snapshot CURRENT names must hold every acknowledged
# record. It is test_online's test_crash with more iterations (KILLS + 1);
# it prints, per restart and at the end, the records acknowledged and the
# records recovered. Run it after `make check`.
#
# usage: tests/soak/crash.sh [KILLS]   (BUILD=build by default)
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-build}
case $build in /*) ;; *) build=$here/$build ;; esac
kills=${1:-25}
case $kills in
'' | *[!0-9]*)
    echo "crash.sh: KILLS must be a number, not '$kills'" >&2
    exit 2
    ;;
esac
export SEMD_BIN=$build/semd SEMD_FIXTURE=$build/glove-20k.semd
export SEMD_CRASH_ITERATIONS=$((kills + 1))
for f in "$SEMD_BIN" "$SEMD_FIXTURE" "$build/tests/test_online"; do
    if [ ! -e "$f" ]; then
        echo "crash.sh: $f is missing; run make BUILD=${BUILD:-build}" \
            "check" >&2
        exit 2
    fi
done
cd "$here/tests"
SEMD_TEST_FILTER=test_crash exec "$build/tests/test_online"
