#!/usr/bin/env bash
# Prints the stripped size of the release binary for this machine and every board target,
# plus a minimal feature set (--no-default-features: no apps) for the host and armv7, as a
# table; then each app's marginal cost on armv7: minimal + that one app (every `app-*`
# feature of Cargo.toml, found with cargo metadata), in bytes and KiB over minimal. Builds first (cargo makes that a no-op when nothing changed), so the numbers always
# describe the current source; build output goes to stderr, the table to stdout.
# The release profile strips (Cargo.toml); the table says so only after `file` agrees.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

mkdir -p dist
tdir=$(cargo_target_dir)
rows=()

# glibc floor: the highest GLIBC_x.y symbol version the binary needs ("static" / "-").
glibc_floor() {
    if file -b "$1" | grep -q 'statically linked'; then
        echo static
        return
    fi
    readelf -W -V "$1" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' |
        sort -uV | tail -n 1 | grep . || echo -
}

measure() { # label triple features file
    local label=$1 triple=$2 feats=$3 f=$4 bytes stripped
    bytes=$(stat -c %s "$f")
    stripped=yes
    file -b "$f" | grep -q ', stripped' || stripped=NO
    rows+=("$label|$triple|$feats|$bytes|$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1024 }')|$stripped|$(glibc_floor "$f")")
}

host_triple=$(rustc -vV | awk '/^host:/ { print $2 }')

say "host ($host_triple), default features"
cargo build --release >&2
cp "$tdir/release/skywire" dist/skywire-host
measure host "$host_triple" default dist/skywire-host

while read -r short _; do
    say "$short, default features"
    bash "$CROSS_DIR/build.sh" "$short" >&2
    cross_resolve "$short"
    measure "$short" "$T_TRIPLE" default "dist/skywire-$short"
done < <(awk '!/^#/ && NF' "$CROSS_DIR/targets")

say "host, minimal (--no-default-features)"
cargo build --release --no-default-features >&2
cp "$tdir/release/skywire" dist/skywire-host-minimal
measure host "$host_triple" minimal dist/skywire-host-minimal

say "armv7, minimal (--no-default-features)"
bash "$CROSS_DIR/build.sh" --minimal armv7 >&2
cross_resolve armv7
measure armv7 "$T_TRIPLE" minimal dist/skywire-armv7-minimal

# The skywire package's features: "default" -> its list, every app-* feature, and skynet.
skywire_features() {
    cargo metadata --no-deps --format-version 1 |
        python3 -c 'import json,sys; f=[p for p in json.load(sys.stdin)["packages"] if p["name"]=="skywire"][0]["features"]; print("default " + (",".join(f.get("default", [])) or "none")); [print("app " + k) for k in sorted(f) if k.startswith("app-") or k in ("skynet", "hv-term")]'
}
feature_lines=$(skywire_features) || die "cargo metadata / python3 could not list the features"
features=$(awk '$1 == "default" { gsub(",", ", ", $2); print $2 }' <<<"$feature_lines")
mapfile -t apps < <(awk '$1 == "app" { print $2 }' <<<"$feature_lines")

minimal_bytes=$(stat -c %s dist/skywire-armv7-minimal)
app_rows=()
for app in "${apps[@]}"; do
    say "armv7, minimal + $app (--no-default-features --features $app)"
    bash "$CROSS_DIR/build.sh" --only "$app" armv7 >&2
    b=$(stat -c %s "dist/skywire-armv7-only-$app")
    app_rows+=("$app|$b|$((b - minimal_bytes))")
done

echo
echo "Stripped release binary size (opt-level z with the crypto crates at 3, fat LTO, codegen-units 1, panic=abort)."
echo "default features: $features; minimal = --no-default-features"
echo
printf '| %-12s | %-30s | %-8s | %9s | %8s | %-8s | %-11s |\n' target triple features bytes KiB stripped "glibc floor"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' -------------- -------------------------------- ---------- ----------: ---------: ---------- -------------
for r in "${rows[@]}"; do
    IFS='|' read -r a b c d e f g <<<"$r"
    printf '| %-12s | %-30s | %-8s | %9s | %8s | %-8s | %-11s |\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g"
done

echo
echo "Marginal cost of each app (and of skynet) on armv7: minimal ($minimal_bytes bytes) + that one feature."
echo
printf '| %-16s | %9s | %8s | %17s | %17s |\n' app bytes KiB "over minimal, B" "over minimal, KiB"
printf '|%s|%s|%s|%s|%s|\n' ------------------ ----------: ---------: ------------------: ------------------:
for r in "${app_rows[@]}"; do
    IFS='|' read -r a b d <<<"$r"
    printf '| %-16s | %9s | %8s | %17s | %17s |\n' "$a" "$b" "$(awk -v b="$b" 'BEGIN { printf "%.1f", b / 1024 }')" "$d" "$(awk -v d="$d" 'BEGIN { printf "%+.1f", d / 1024 }')"
done
