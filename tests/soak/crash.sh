#!/usr/bin/env bash
# The crash test, longer: SIGKILL `semd serve --train` at random moments
# while text is posted and trained, N times (default 25), checking after
# each restart that every acknowledged record was persisted or replayed
# and that every snapshot file verifies. It is test_online's test_crash
# with more iterations; run it after `make check`.
#
# usage: tests/soak/crash.sh [ITERATIONS]   (BUILD=build by default)
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-build}
case $build in /*) ;; *) build=$here/$build ;; esac
export SEMD_BIN=$build/semd SEMD_FIXTURE=$build/glove-20k.semd
export SEMD_CRASH_ITERATIONS=${1:-25}
for f in "$SEMD_BIN" "$SEMD_FIXTURE" "$build/tests/test_online"; do
    if [ ! -e "$f" ]; then
        echo "crash.sh: $f is missing; run make check" >&2
        exit 2
    fi
done
cd "$here/tests"
SEMD_TEST_FILTER=test_crash exec "$build/tests/test_online"
