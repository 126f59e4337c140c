# Shared helpers for the cross/ scripts. Source it; it defines:
#   cross_resolve NAME   short name or full triple -> sets T_SHORT T_TRIPLE T_DEBARCH T_GCC T_QEMU
#   cross_engine_ok      true when the cross-rs path may be used (cross + a working engine)
#   cross_names          prints the known short names, one line
#   cargo_target_dir     prints cargo's output directory (absolute): CARGO_TARGET_DIR when set,
#                        else build.target-dir of .cargo/config.toml, else target/ (cargo decides)
#   std_rust_src         makes sure the toolchain's rust-src component (std's source, for
#                        build-std) is installed; rustup adds it from the registry mirror
#   say / die            one-line progress and error messages

CROSS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$CROSS_DIR/.." && pwd)

say() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { printf '%s: error: %s\n' "${0##*/}" "$*" >&2; exit 1; }

cross_names() {
    awk '!/^#/ && NF { printf "%s%s", sep, $1; sep = "|" } END { print "" }' "$CROSS_DIR/targets"
}

cargo_target_dir() {
    local dir
    dir=$(cd "$REPO_ROOT" && cargo metadata --no-deps --format-version 1 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    [ -n "$dir" ] || die "cargo metadata did not say where the target directory is"
    printf '%s\n' "$dir"
}

std_rust_src() {
    local sysroot
    sysroot=$(cd "$REPO_ROOT" && rustc --print sysroot)
    [ -f "$sysroot/lib/rustlib/src/rust/library/Cargo.lock" ] && return 0
    say "installing the toolchain's rust-src component (std's source, for build-std)"
    (cd "$REPO_ROOT" && rustup component add rust-src) >&2 ||
        die "could not install rust-src; build against the shipped std with SKYWIRE_STD=prebuilt"
}

cross_resolve() {
    local name=$1 line
    [ -n "$name" ] || die "no target given; use one of $(cross_names) or its full triple"
    line=$(awk -v n="$name" '!/^#/ && NF && ($1 == n || $2 == n) { print; exit }' "$CROSS_DIR/targets")
    [ -n "$line" ] || die "unknown target '$name'; use one of $(cross_names) or its full triple (see cross/targets)"
    # shellcheck disable=SC2034  # used by the scripts that source this file
    read -r T_SHORT T_TRIPLE T_DEBARCH T_GCC T_QEMU <<<"$line"
}

# The cross-rs path needs the `cross` tool AND a container engine that answers: a docker
# client with no engine behind it is common (this project's machines are like that).
cross_engine_ok() {
    command -v cross >/dev/null 2>&1 || return 1
    if command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then
        return 0
    fi
    if command -v podman >/dev/null 2>&1 && timeout 20 podman info >/dev/null 2>&1; then
        return 0
    fi
    return 1
}
