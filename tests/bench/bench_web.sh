#!/usr/bin/env bash
# Row for the web page: navigation start to the load event of GET / in
# headless Chromium from a local `semd serve` (fresh browser context each
# run, so nothing is cached; median of 15), against the same for
# /v1/health. Target: the page loads in under 200 ms. Also where the time
# goes (first byte, response end, DOMContentLoaded), how many requests and
# bytes the page needs before its load event, and the machine's load
# average, which the figures depend on. Serves the 20k-word
# fixture: the page does not depend on the model's size. Installs chromium
# (deploy/setup.sh --with-browser) and the test's pinned playwright-core
# when missing.
set -eu
: "${BUILD:=build}" "${SEMD_BIN:=$BUILD/semd}"
fixture=$BUILD/glove-20k.semd
work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

[ -x /usr/bin/chromium ] || bash deploy/setup.sh --with-browser >&2 || true
if ! [ -x /usr/bin/chromium ]; then
    echo "| page load (GET /, headless Chromium) | skipped: no chromium | | | < 200 ms | SKIP |"
    exit 0
fi
[ -f tests/browser/node_modules/.package-lock.json ] ||
    (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
        npm ci --no-audit --no-fund --loglevel=error) >&2
[ -f "$fixture" ] || "$SEMD_BIN" convert tests/data/glove-20k.bin "$fixture" >/dev/null

"$SEMD_BIN" serve "$fixture" --listen 127.0.0.1:0 >"$work/out" 2>&1 &
pid=$!
url=
for _ in $(seq 100); do
    url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/out" | head -n 1)
    [ -n "$url" ] && break
    sleep 0.1
done
[ -n "$url" ] || { echo "bench_web: semd serve did not start" >&2; exit 1; }

load0=$(cut -d' ' -f1 /proc/loadavg)
node tests/browser/bench_load.mjs "$url" 15 >"$work/times"
load1=$(cut -d' ' -f1 /proc/loadavg)
read -r page ref <"$work/times"
read -r ttfb resp dcl reqs wire decoded < <(sed -n 2p "$work/times")
ratio=$(awk -v a="$page" -v b="$ref" 'BEGIN { printf "%.2fx", (b > 0) ? a / b : 0 }')
verdict=$(awk -v a="$page" 'BEGIN { print (a < 200) ? "PASS" : "FAIL" }')
echo "| page load (GET /, headless Chromium, median of 15) | $page ms | $ref ms (/v1/health) | $ratio | < 200 ms | $verdict |"
echo "| page load breakdown: first byte, response end, DOMContentLoaded; requests before load; bytes on the wire (decoded) | $ttfb, $resp, $dcl ms; $reqs; $wire B ($decoded B) | | | | - |"
echo "| page load machine load (1-min average, $(nproc) cores) before, after | $load0, $load1 | | | | - |"
