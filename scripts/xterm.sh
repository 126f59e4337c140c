#!/usr/bin/env bash
# Fetches the browser terminal's emulator for the `hv-term` feature: xterm.js and its fit
# addon from npm, at the pinned versions, each tarball checked against its pinned SHA-512
# (npm's `integrity`), unpacked into vendor/xterm/ (not committed; build.rs gzips the three
# files it embeds). Installs nodejs/npm from Debian when npm is missing. Idempotent: exits at
# once when the files are present. Both packages are MIT-licensed; their LICENSE files are
# kept beside them and docs/dependencies.md lists them.
#
#   bash scripts/xterm.sh [DEST]       (default: vendor/xterm beside this script's parent)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/vendor/xterm}

XTERM=@xterm/xterm@5.5.0
XTERM_SHA512=86a24761a41be4ea6d36e9e7c809e41f233c6828d9d4c1080d342ed6221b6d30ffc68a6cf75341e72ab564afdd0b62436d55ad176df352d97d244d8dab04fcec
FIT=@xterm/addon-fit@0.10.0
FIT_SHA512=5056240e6e0751a85fda59c4c87be2a39d5334688b2baea6a8fd89a004f2ee14597976863110ebd34262485ee6eb7bd1e562804c5eb4e721208092acc3426931

if [ -f "$dest/xterm.js" ] && [ -f "$dest/xterm.css" ] && [ -f "$dest/addon-fit.js" ]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "xterm.sh: installing nodejs and npm (Debian), for npm pack" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends nodejs npm >&2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fetch() { # spec sha512 -> unpacked package dir
    local spec=$1 want=$2 tgz have
    for attempt in 1 2 3; do
        if tgz=$(cd "$tmp" && npm pack --silent "$spec" 2>"$tmp/err" | tail -n 1) && [ -f "$tmp/$tgz" ]; then
            break
        fi
        [ "$attempt" -lt 3 ] || { echo "xterm.sh: npm pack $spec failed 3 times: $(cat "$tmp/err")" >&2; exit 1; }
        sleep $((attempt * 5))
    done
    have=$(sha512sum "$tmp/$tgz" | cut -d' ' -f1)
    if [ "$have" != "$want" ]; then
        echo "xterm.sh: $spec: SHA-512 $have is not the pinned $want; refusing it" >&2
        exit 1
    fi
    mkdir -p "$tmp/${tgz%.tgz}"
    tar -xzf "$tmp/$tgz" -C "$tmp/${tgz%.tgz}"
    echo "$tmp/${tgz%.tgz}/package"
}
x=$(fetch "$XTERM" "$XTERM_SHA512")
f=$(fetch "$FIT" "$FIT_SHA512")
mkdir -p "$dest"
cp "$x/lib/xterm.js" "$x/css/xterm.css" "$dest/"
cp "$x/LICENSE" "$dest/LICENSE.xterm"
cp "$f/lib/addon-fit.js" "$dest/"
cp "$f/LICENSE" "$dest/LICENSE.addon-fit"
echo "xterm.sh: $XTERM and $FIT in $dest" >&2
