#!/usr/bin/env bash
# Release build of `skywire` for one board target, copied to dist/skywire-<short>.
#   cross/build.sh [--minimal | --only FEATURES] aarch64|aarch64-musl|armv7|riscv64|<full triple>
# --minimal builds with --no-default-features (no apps) into dist/skywire-<short>-minimal;
# --only app-pty (comma-separated features) builds the minimal set plus those into
# dist/skywire-<short>-only-app-pty (what `make size` measures each app's marginal cost with).
#
# Uses cross-rs (cross/Cross.toml) only when `cross` is installed AND `docker info` or
# `podman info` answers; otherwise cargo with the Debian cross toolchain that
# cross/setup.sh installs (linker settings in .cargo/config.toml).
#
# std is rebuilt from source with the binary (cargo's build-std, with std's
# `optimize_for_size` feature): the shipped std links the DWARF backtrace symboliser through
# its default panic hook (~180 KiB on armv7) and was built for speed, not size. build-std is
# an unstable cargo feature, so this sets RUSTC_BOOTSTRAP=1 for this one build of the pinned
# 1.95.0 toolchain and needs its `rust-src` component (rust-toolchain.toml lists it; rustup
# installs it). With it go two flags of the same kind: `-Zlocation-detail=none` (a panic
# prints its message without the source file and line: the file names of every panic site
# are not in the binary) and `-Cforce-unwind-tables=no` (panic = "abort" never unwinds, and
# std without its symboliser prints no backtrace). Panics still print their message.
# SKYWIRE_STD=prebuilt builds against the shipped std with neither (docs/benchmarks.md
# "Build profile" has both sizes): use it to get file:line in a panic message.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

features=() suffix="" only=""
if [ "${1:-}" = "--minimal" ]; then
    features=(--no-default-features) suffix="-minimal"
    shift
elif [ "${1:-}" = "--only" ]; then
    [ -n "${2:-}" ] || die "--only needs a feature list, e.g. --only app-pty"
    only=$2
    features=(--no-default-features --features "$2") suffix="-only-${2//,/+}"
    shift 2
fi
[ $# -eq 1 ] || die "usage: cross/build.sh [--minimal | --only FEATURES] $(cross_names)|<triple>"
cross_resolve "$1"
cd "$REPO_ROOT"

# The browser terminal (feature hv-term, in the default build) embeds xterm.js: fetch it here,
# on the host, so a container build finds it in the checkout (build.rs would need npm inside).
case ",$only," in *,hv-term,*) need_xterm=1 ;; *) need_xterm="" ;; esac
if [ ${#features[@]} -eq 0 ] || [ -n "$need_xterm" ]; then
    bash "$REPO_ROOT/scripts/xterm.sh"
fi

if cross_engine_ok; then
    say "building $T_TRIPLE with cross (container engine answers)"
    CROSS_CONFIG="$CROSS_DIR/Cross.toml" cross build --release --target "$T_TRIPLE" "${features[@]}"
else
    bash "$CROSS_DIR/setup.sh" "$T_SHORT"
    std_args=()
    case ${SKYWIRE_STD:-source} in
    source)
        std_rust_src
        std_args=(-Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size
            --config "target.$T_TRIPLE.rustflags=[\"-Zlocation-detail=none\", \"-Cforce-unwind-tables=no\"]")
        ;;
    prebuilt) ;;
    *) die "SKYWIRE_STD is '$SKYWIRE_STD'; use 'source' (the default: std built for size) or 'prebuilt'" ;;
    esac
    say "building $T_TRIPLE with cargo (no container engine; Debian cross toolchain; std: ${SKYWIRE_STD:-source})"
    if [ ${#std_args[@]} -gt 0 ]; then
        RUSTC_BOOTSTRAP=1 cargo build --release --target "$T_TRIPLE" "${features[@]}" "${std_args[@]}"
    else
        cargo build --release --target "$T_TRIPLE" "${features[@]}"
    fi
fi

out="dist/skywire-$T_SHORT$suffix"
mkdir -p dist
cp "$(cargo_target_dir)/$T_TRIPLE/release/skywire" "$out"
say "wrote $out ($(stat -c %s "$out") bytes)"
