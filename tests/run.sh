#!/usr/bin/env bash
# Runs each test program with a timeout and prints the totals as one line
# "N passed, N failed". A program that crashes or times out counts as failed.
set -u
timeout_s=${SEMD_TEST_TIMEOUT:-300}
passed=0
failed=0
bad=()
for t in "$@"; do
    name=$(basename "$t")
    out=$(mktemp)
    timeout -k 10 "$timeout_s" "$t" >"$out" 2>&1
    rc=$?
    cat "$out"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' "$out" | tail -n 1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s),.*/\1/p' "$out" | tail -n 1)
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
    if [ "$rc" -ne 0 ]; then
        bad+=("$name (exit $rc)")
        # a crash or timeout loses cmocka's own count of the failure
        [ -z "$f" ] && failed=$((failed + 1))
    fi
    rm -f "$out"
done
echo
[ ${#bad[@]} -gt 0 ] && printf 'failed programs: %s\n' "${bad[*]}"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ ${#bad[@]} -eq 0 ]
