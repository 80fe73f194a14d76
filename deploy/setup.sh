#!/usr/bin/env bash
# Prepares a Debian machine to build, test and run semd. Idempotent: it
# installs only the Debian packages that are missing and builds the FAISS C API
# only when neither the distribution nor an earlier run provides it.
#
# Usage: deploy/setup.sh [--build-dir DIR] [--with-node]
#   --build-dir DIR  where the FAISS C API library goes (default: build)
#   --with-node      also install Node.js and npm (`make model` fetches the
#                    default model with npm; the HTTP contract test runs on node)
#   --with-browser   also install Chromium (Debian package chromium) for the
#                    web page's browser test; where it cannot be installed
#                    that test skips, saying so, and setup goes on
#
# Debian 12 ships FAISS's C API headers but not the compiled C API. We fetch
# the Debian source package of exactly the installed FAISS version (apt checks
# it against the archive's signatures), compile its c_api/ sources against the
# installed headers and archive them as BUILD/faiss_c/libfaiss_c.a. Debian 13
# ships libfaiss_c itself, and then nothing is built.
set -euo pipefail

build=build
with_node=0
with_browser=0
while [ $# -gt 0 ]; do
    case "$1" in
        --build-dir) build=$2; shift 2 ;;
        --with-node) with_node=1; shift ;;
        --with-browser) with_browser=1; shift ;;
        -h|--help) # the comment at the top of this file
            awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' \
                "$0"
            exit 0 ;;
        *) echo "setup: unknown option '$1'" >&2; exit 2 ;;
    esac
done

say() { printf 'setup: %s\n' "$*"; }
fail() { printf 'setup: %s\n' "$*" >&2; exit 1; }

packages=(gcc g++ make pkg-config libc6-dev
          libmicrohttpd-dev libjansson-dev libopenblas-dev libfaiss-dev
          libcmocka-dev ca-certificates xz-utils openssl curl)
# Node.js packages from elsewhere (e.g. NodeSource) bundle npm and conflict
# with Debian's npm package: ask Debian only for the commands missing.
if [ "$with_node" = 1 ]; then
    command -v node >/dev/null || packages+=(nodejs)
    command -v npm >/dev/null || packages+=(npm)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' \
        || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: missing Debian packages: ${missing[*]}" >&2
        echo "setup: run as root, or install them with apt-get" >&2
        exit 1
    fi
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || fail "apt-get update failed (network or sources?)"
    apt-get install -y -q --no-install-recommends "${missing[@]}" ||
        fail "could not install: ${missing[*]}"
else
    say "Debian packages present"
fi

# Chromium is large and not on every architecture or mirror: a failure here
# is a warning, and the browser test then skips with the reason.
if [ "$with_browser" = 1 ] && ! [ -x /usr/bin/chromium ]; then
    if [ "$(id -u)" != 0 ]; then
        say "warning: chromium is missing and installing it needs root;" \
            "the browser test will skip"
    else
        say "installing chromium for the browser test"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends chromium ||
            { apt-get update -q &&
              apt-get install -y -q --no-install-recommends chromium; } ||
            say "warning: could not install chromium; the browser test" \
                "will skip"
    fi
fi

multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
if ls "/usr/lib/$multiarch"/libfaiss_c.* >/dev/null 2>&1; then
    say "using the distribution's libfaiss_c: nothing to build"
    exit 0
fi

lib="$build/faiss_c/libfaiss_c.a"
version=$(dpkg-query -W -f='${source:Version}' libfaiss-dev)
stamp="$build/faiss_c/VERSION"
# The stamp names the flags too: -DNDEBUG keeps FAISS from printing every
# error it also returns to us, and a library built without it is rebuilt.
want="$version NDEBUG"
if [ -f "$lib" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    say "FAISS C API $version already built in $lib: nothing to do"
    exit 0
fi

say "building the FAISS C API from Debian's source package faiss $version"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A private deb-src list mirroring the system's deb lines: the system's own
# sources are left as they are.
mkdir -p "$work/lists/partial" "$work/parts"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -n 's/^deb \(.*\)$/deb-src \1/p' "$f"
done > "$work/src.list"
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    sed 's/^Types:.*$/Types: deb-src/' "$f" > "$work/parts/$(basename "$f")"
done
aptopts=(-o "Dir::Etc::sourcelist=$work/src.list"
         -o "Dir::Etc::sourceparts=$work/parts"
         -o "Dir::State::Lists=$work/lists"
         -o "APT::Sandbox::User=root")
apt-get "${aptopts[@]}" update -q >/dev/null ||
    fail "apt-get update of the deb-src lists failed"
(cd "$work" && apt-get "${aptopts[@]}" source --download-only -q \
    "faiss=$version" >/dev/null) ||
    fail "could not fetch Debian's source package faiss=$version"
orig=$(ls "$work"/faiss_*.orig.tar.* 2>/dev/null | head -n 1)
[ -n "$orig" ] || fail "no faiss_*.orig.tar.* in the source package"
tar -C "$work" -xf "$orig"
src=$(ls -d "$work"/faiss-*/c_api 2>/dev/null | head -n 1)
[ -n "$src" ] || fail "no c_api/ directory in $(basename "$orig")"

obj="$build/faiss_c/obj"
mkdir -p "$obj"
rm -f "$obj"/*.o
# One compiler per core. xargs exits non-zero when any compile fails, and
# then set -e stops here: no library and no stamp from a partial build.
printf '%s\0' "$src"/*.cpp "$src"/impl/*.cpp "$src"/utils/*.cpp |
    xargs -0 -n 1 -P "$(nproc)" sh -c \
        'g++ -std=c++17 -O2 -DNDEBUG -fPIC -fopenmp -w -c "$1" \
             -o "$0/$(basename "${1%.cpp}").o"' "$obj" ||
    fail "compiling the FAISS C API failed"
rm -f "$lib"
ar rcs "$lib" "$obj"/*.o
echo "$want" > "$stamp"
say "built $lib ($(ls "$obj" | wc -l) objects)"
