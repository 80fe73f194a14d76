#!/usr/bin/env bash
# Rows for the tokenizer:
#  - tokenizing the BPE test corpus repeated 40 times (about 3 MB, one call,
#    median of 5 runs, one core) against gpt-tokenizer under node on the same
#    text (the packages tests/bpe pins); the token counts must agree;
#  - opening a 50,257 x 768 model that carries the GPT-2 tokenizer and
#    tokenizing one short text, against opening the same model without a
#    tokenizer (median of 7): the tokenizer must keep opening far below
#    the 0.2 s a ready server is allowed.
set -eu
: "${BUILD:=build}"
bin=$BUILD/bench/bench_bpe
vocab=tests/data/gpt2/encoder.json
merges=tests/data/gpt2/vocab.bpe
one="taskset -c 0"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for i in $(seq 40); do cat tests/data/bpe-corpus.txt; done > "$work/text.txt"
bytes=$(stat -c %s "$work/text.txt")
read -r c_s c_n < <($one "$bin" encode "$vocab" "$merges" "$work/text.txt" 5)
if bash tests/bpe/reference.sh tests/data/bpe-corpus.txt "$work/ref.jsonl" \
        >/dev/null 2>&1; then
    cat > "$work/speed.js" <<'JS'
const fs = require('fs');
const r50k = require(process.argv[2] + '/node_modules/gpt-tokenizer/cjs/encoding/r50k_base');
const text = fs.readFileSync(process.argv[3], 'utf8');
const opt = { disallowedSpecial: new Set() };
r50k.encode(text.slice(0, 100000), opt);
const ts = [];
let n = 0;
for (let i = 0; i < 5; i++) {
    const t = process.hrtime.bigint();
    n = r50k.encode(text, opt).length;
    ts.push(Number(process.hrtime.bigint() - t) / 1e9);
}
ts.sort((a, b) => a - b);
console.log(ts[2].toFixed(6), n);
JS
    read -r j_s j_n < <($one node "$work/speed.js" "$(cd "$BUILD/bpe-node" && pwd)" "$work/text.txt")
    awk -v b="$bytes" -v c="$c_s" -v j="$j_s" -v cn="$c_n" -v jn="$j_n" 'BEGIN {
        r = j / c
        ok = r >= 1.0 && cn == jn
        printf "| BPE tokenize %.1f MB (%d tokens%s) vs gpt-tokenizer (node) | %.2f MB/s | %.2f MB/s | %.2f | >= 1.0 | %s |\n",
               b / 1e6, cn, cn == jn ? ", same count" : ", COUNTS DIFFER",
               b / c / 1e6, b / j / 1e6, r, ok ? "PASS" : "FAIL" }'
else
    echo "| BPE tokenize vs gpt-tokenizer (node) | $(awk -v b="$bytes" -v c="$c_s" 'BEGIN {printf "%.2f MB/s", b / c / 1e6}') | skipped: node/npm absent | | >= 1.0 | SKIP |"
fi

read -r o_with o_without < <($one "$bin" open "$vocab" "$merges" "$work" 50257 768 7)
awk -v a="$o_with" -v b="$o_without" 'BEGIN {
    printf "| open 50,257 x 768 model with GPT-2 tokenizer + tokenize, vs without tokenizer | %.2f ms | %.2f ms | %.2f | < 200 ms | %s |\n",
           a * 1e3, b * 1e3, a / b, a < 0.2 ? "PASS" : "FAIL" }'
