#!/usr/bin/env bash
# Every app builds alone: clippy (-D warnings) on the lib and bins of the minimal build plus
# each one `app-*` feature (and `skynet`) of the skywire package, found with cargo metadata —
# what `make size` builds for the marginal-cost table, checked in seconds instead of release
# builds. A module used by one app but not gated behind its feature fails here.
#   scripts/features.sh [extra cargo args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mapfile -t feats < <(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
f = [p for p in json.load(sys.stdin)["packages"] if p["name"] == "skywire"][0]["features"]
for k in sorted(f):
    if k.startswith("app-") or k == "skynet":
        print(k)')
[ ${#feats[@]} -gt 0 ] || { echo "features.sh: no app features found" >&2; exit 1; }
for f in "${feats[@]}"; do
    echo "features.sh: --no-default-features --features $f" >&2
    cargo clippy -p skywire --lib --bins --no-default-features --features "$f" "$@" -- -D warnings
done
