#!/usr/bin/env bash
# `make fuzz`: runs every fuzz target for a bounded time (FUZZ_TIME seconds each, default 60),
# starting from the committed seed corpora (fuzz/seeds/<target>, golden bytes of
# docs/protocol.md) plus whatever earlier runs found (fuzz/corpus, not committed).
# Needs the nightly toolchain and cargo-fuzz; installs cargo-fuzz if it is missing.
#   bash fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
secs=${1:-${FUZZ_TIME:-60}}
shift || true

rustup toolchain list | grep -q '^nightly' || {
    echo "fuzz: no nightly toolchain; cargo-fuzz needs one (rustup toolchain install --no-self-update --profile minimal nightly)" >&2
    exit 1
}
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo +nightly install --locked cargo-fuzz
fi

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
echo "fuzz: ${#targets[@]} targets, ${secs}s each: ${targets[*]}"
cargo +nightly fuzz build -O

# Logs beside the fuzz build: cargo's target directory for this (fuzz/) workspace, which is
# CARGO_TARGET_DIR when that is set.
logs=$(cargo metadata --no-deps --format-version 1 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
logs=${logs:-target}
mkdir -p "$logs"

failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    echo "fuzz: $t for ${secs}s"
    if cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"$logs/$t.log" 2>&1; then
        execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$' || echo '?')
        cov=$(grep -o 'cov: [0-9]*' "$logs/$t.log" | tail -1 || true)
        echo "fuzz: $t ok: $execs runs, $cov, corpus $(find "corpus/$t" -type f | wc -l) inputs"
    else
        echo "fuzz: $t FAILED; log $logs/$t.log, crash input under fuzz/artifacts/$t/" >&2
        tail -30 "$logs/$t.log" >&2
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: failures in ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${secs}s without a finding"
