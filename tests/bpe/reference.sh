#!/usr/bin/env bash
# Encodes a corpus with the independent JavaScript tokenizers pinned in
# package-lock.json (see encode.js for the output).
#
# usage: tests/bpe/reference.sh CORPUS OUT
# The packages are installed with `npm ci` into $BUILD/bpe-node (BUILD
# defaults to build) and reused while the lock file is unchanged.
# Exit status 77: node or npm is not installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v node >/dev/null && command -v npm >/dev/null || {
    echo "node and npm are not installed (deploy/setup.sh --with-node)" >&2
    exit 77
}
dir=${BUILD:-build}/bpe-node
mkdir -p "$dir"
if ! cmp -s "$here/package-lock.json" "$dir/package-lock.json" ||
   [ ! -d "$dir/node_modules/gpt-tokenizer" ] ||
   [ ! -d "$dir/node_modules/gpt-3-encoder" ]; then
    cp "$here/package.json" "$here/package-lock.json" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
cp "$here/encode.js" "$dir/"
node "$dir/encode.js" "$1" > "$2"
