#!/usr/bin/env bash
# Runs the unit tests (library and binary targets) for one board target under qemu-user,
# through the runner in .cargo/config.toml (or inside cross-rs's container when a container
# engine answers).
#   cross/test.sh aarch64|aarch64-musl|armv7|riscv64|<full triple>
# Integration tests under tests/ spawn the real binary and talk to it over loopback; they run
# on the host (`make test`), not here.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 1 ] || die "usage: cross/test.sh $(cross_names)|<triple>"
cross_resolve "$1"
cd "$REPO_ROOT"

if cross_engine_ok; then
    say "testing $T_TRIPLE with cross (container engine answers)"
    CROSS_CONFIG="$CROSS_DIR/Cross.toml" cross test --target "$T_TRIPLE" --lib --bins
else
    bash "$CROSS_DIR/setup.sh" "$T_SHORT"
    say "testing $T_TRIPLE under $T_QEMU (runner from .cargo/config.toml)"
    cargo test --target "$T_TRIPLE" --lib --bins
fi
