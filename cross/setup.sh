#!/usr/bin/env bash
# Prepares this machine to build and test one board target without containers:
#   - the Rust standard library for the target (rustup target add, retried);
#   - Debian's cross gcc and its libc6-dev-<arch>-cross (the linker and the C runtime);
#   - qemu-user, which runs the foreign binaries (cargo's runner, see .cargo/config.toml).
# Idempotent: checks first and installs only what is missing. Never updates the toolchain or
# rustup itself (the pinned 1.95.0 in rust-toolchain.toml is the one whose board std libs the
# registry mirror serves).
#
# Usage: cross/setup.sh aarch64|aarch64-musl|armv7|riscv64|<full triple>
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 1 ] || die "usage: cross/setup.sh $(cross_names)|<triple>"
cross_resolve "$1"
cd "$REPO_ROOT" # so rustup picks the toolchain pinned in rust-toolchain.toml

# --- Rust target -----------------------------------------------------------------------
command -v rustup >/dev/null 2>&1 ||
    die "rustup not found; install Rust with rustup (the toolchain is pinned in rust-toolchain.toml)"
toolchain=$(rustup show active-toolchain 2>/dev/null | awk '{ print $1; exit }')
[ -n "$toolchain" ] ||
    die "no active Rust toolchain here; run 'rustup toolchain install --no-self-update --profile minimal 1.95.0'"

target_installed() { rustup target list --installed 2>/dev/null | grep -qx "$T_TRIPLE"; }

if target_installed; then
    say "rust target $T_TRIPLE: already installed ($toolchain)"
else
    for attempt in 1 2 3 4 5; do
        say "rust target $T_TRIPLE: installing for $toolchain (attempt $attempt/5)"
        if rustup target add "$T_TRIPLE" && target_installed; then
            break
        fi
        [ "$attempt" -lt 5 ] || die "could not install rust target $T_TRIPLE after 5 attempts; check the rustup mirror, then rerun cross/setup.sh $T_SHORT"
        sleep $((attempt * 5))
    done
fi

# --- Debian packages -------------------------------------------------------------------
have_pkg() { dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'; }

missing=()
if [ "$T_GCC" != "-" ]; then
    # gcc-<triple> provides <triple>-gcc; libc6-dev-<arch>-cross is only a Recommends of it, so
    # it is named explicitly (with --no-install-recommends it would be left out).
    gnu=${T_GCC%-gcc}
    command -v "$T_GCC" >/dev/null 2>&1 || missing+=("gcc-$gnu")
    have_pkg "libc6-dev-$T_DEBARCH-cross" || missing+=("libc6-dev-$T_DEBARCH-cross")
fi
command -v "$T_QEMU" >/dev/null 2>&1 || missing+=("qemu-user")

if [ ${#missing[@]} -eq 0 ]; then
    say "debian packages for $T_SHORT: already installed"
else
    command -v apt-get >/dev/null 2>&1 ||
        die "missing ${missing[*]} and no apt-get here; install them with your package manager"
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "missing ${missing[*]}; run as root or install sudo"
        sudo=(sudo)
    fi
    apt_opts=(-o DPkg::Lock::Timeout=600 -q)
    # `apt-get update` once before the first install (a fresh machine's package lists may be
    # empty or old); the stamp spares the next targets in the same hour a second update.
    stamp=/tmp/skywire-apt-updated
    if [ -z "$(find "$stamp" -mmin -60 2>/dev/null)" ]; then
        say "apt-get update"
        "${sudo[@]}" apt-get "${apt_opts[@]}" update >/dev/null || die "apt-get update failed; check the Debian mirror"
        : >"$stamp"
    fi
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get "${apt_opts[@]}" install -y \
        --no-install-recommends "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed; run it by hand to see why"
fi

# --- Check -----------------------------------------------------------------------------
[ "$T_GCC" = "-" ] || command -v "$T_GCC" >/dev/null 2>&1 || die "$T_GCC still missing after install"
command -v "$T_QEMU" >/dev/null 2>&1 || die "$T_QEMU still missing after installing qemu-user"
say "ready: $T_SHORT ($T_TRIPLE)"
