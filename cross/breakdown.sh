#!/usr/bin/env bash
# Where the bytes of a release binary go: builds it unstripped (same profile otherwise, with
# v0 symbol names so generic instantiations show their arguments), then groups the symbol
# sizes of `nm --size-sort -S` by crate, by skywire module and by kind (spawned-task glue,
# drop glue, formatting, the rest), and lists the largest symbols.
#   cross/breakdown.sh [TARGET] [cargo feature flags...]
#   cross/breakdown.sh armv7 --no-default-features     # the minimal armv7 build (default)
#   cross/breakdown.sh host --no-default-features --features app-pty
# TARGET is a short name of cross/targets, a triple, or `host`. The build goes to
# <target dir>/breakdown (its own directory, so the normal builds stay incremental). Symbol
# sizes are of the unstripped binary; they add up to a little less than the stripped file
# (headers, relocations, unwind tables and the dynamic symbol table are not symbols).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

target=${1:-armv7}
[ $# -eq 0 ] || shift
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(--no-default-features)

out_dir=$(cargo_target_dir)/breakdown
nm=nm
if [ "$target" = host ]; then
    triple=$(rustc -vV | awk '/^host:/ { print $2 }')
    target_args=()
    bin=$out_dir/release/skywire
else
    cross_resolve "$target"
    triple=$T_TRIPLE
    bash "$CROSS_DIR/setup.sh" "$T_SHORT" >&2
    target_args=(--target "$T_TRIPLE")
    bin=$out_dir/$T_TRIPLE/release/skywire
    [ "$T_GCC" = "-" ] || ! command -v "${T_GCC%gcc}nm" >/dev/null 2>&1 || nm=${T_GCC%gcc}nm
fi

# Board targets build std from source for size, exactly as cross/build.sh does (unless
# SKYWIRE_STD=prebuilt), so the breakdown describes the binary `make size` measures. RUSTFLAGS
# overrides a target's rustflags from .cargo/config.toml, so cross/build.sh's two flags go here.
# The flags go in as --config target rustflags, which cargo joins to the target's own list in
# .cargo/config.toml (armv7's Thumb-2 flag); RUSTFLAGS would replace that list.
std_args=() rustflags='"-Csymbol-mangling-version=v0"'
if [ "$target" != host ] && [ "${SKYWIRE_STD:-source}" = source ]; then
    std_rust_src
    std_args=(-Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size)
    rustflags+=', "-Zlocation-detail=none", "-Cforce-unwind-tables=no"'
fi
say "building $triple ${flags[*]} unstripped into $out_dir (std: ${std_args[*]:-shipped})"
CARGO_TARGET_DIR=$out_dir CARGO_PROFILE_RELEASE_STRIP=none RUSTC_BOOTSTRAP=${std_args[*]:+1} \
    cargo build --release "${target_args[@]}" "${flags[@]}" "${std_args[@]}" \
    --config "target.$triple.rustflags=[$rustflags]" >&2

stripped=$(mktemp)
trap 'rm -f "$stripped"' EXIT
"${nm%nm}strip" -o "$stripped" "$bin" 2>/dev/null || strip -o "$stripped" "$bin"

echo "Breakdown of $triple ${flags[*]}: stripped $(stat -c %s "$stripped") bytes" \
    "($(awk -v b="$(stat -c %s "$stripped")" 'BEGIN { printf "%.1f", b / 1024 }') KiB)"
echo
echo "Sections (bytes):"
"${nm%nm}size" -A "$bin" 2>/dev/null | awk '$1 ~ /^\.(text|rodata|data|data\.rel\.ro|ARM\.exidx|ARM\.extab|eh_frame|eh_frame_hdr|gcc_except_table|rel\.dyn|rela\.dyn|bss)$/ { printf "  %-18s %9d\n", $1, $2 }'
echo

"$nm" -C --size-sort -S "$bin" | python3 -c '
import re, sys
from collections import defaultdict

rows = []
for line in sys.stdin:
    parts = line.rstrip("\n").split(" ", 3)
    if len(parts) < 4 or parts[2] in "bBuUvVwW":
        continue  # .bss, undefined and weak-undefined symbols take no file bytes
    rows.append((int(parts[1], 16), parts[3]))
total = sum(s for s, _ in rows) or 1

CRATE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?=::)")
SKY = re.compile(r"skywire(?:\[[0-9a-f]+\])?((?:::[a-z_][a-z0-9_]*){0,2})")

SYMBOLISER = ("gimli", "addr2line", "backtrace_rs", "miniz_oxide", "rustc_demangle")

def is_symboliser(n):
    return any(w in n for w in SYMBOLISER)

def crate_of(name):
    n = re.sub(r"\[[0-9a-f]+\]", "", name)  # v0 crate disambiguators
    if is_symboliser(n):
        return "std backtrace symboliser (gimli, addr2line, miniz, demangle)"
    if "skywire" in n and not n.startswith(("<std::", "std::")):
        return "skywire"
    m = CRATE.search(n.lstrip("<&*"))
    return m.group(0) if m else "(other)"

def module_of(name):
    m = SKY.search(name)
    if not m:
        return None
    mod = m.group(1).lstrip(":")
    # keep two levels for the big trees, one level otherwise
    parts = mod.split("::")
    return "::".join(parts[:2]) if parts and parts[0] in ("cli", "dmsg", "visor", "apps", "app", "mux", "http", "wire", "crypto") else (parts[0] or "(root)")

def kind_of(name):
    n = re.sub(r"\[[0-9a-f]+\]", "", name)
    if is_symboliser(n):
        return "backtrace symboliser (default panic hook)"
    if n.startswith(("async_task::", "<async_task::", "async_executor::", "<async_executor::")) and "skywire" in n:
        return "spawned-task glue (async_task/async_executor per future type)"
    if "core::slice::sort" in n:
        return "slice sorts (one per element type and comparator)"
    if "drop_in_place" in n:
        return "drop glue (drop_in_place)"
    if "argh" in n:
        return "argh command-line parsers (derive output)"
    if re.search(r"as core::fmt::(Debug|Display|Write)>|core::fmt::|alloc::fmt::format|flt2dec", n):
        return "formatting (fmt impls, format!)"
    if "{closure" in n or "{async" in n or "as core::future::future::Future>::poll" in n:
        return "async fn / closure bodies"
    return "other code and data"

def table(title, d, limit=None):
    print(title)
    print("| %-58s | %9s | %8s | %5s |" % ("", "bytes", "KiB", "%"))
    print("|%s|%s|%s|%s|" % ("-" * 60, "-" * 10 + ":", "-" * 9 + ":", "-" * 6 + ":"))
    items = sorted(d.items(), key=lambda kv: -kv[1])
    for k, v in items[:limit]:
        print("| %-58s | %9d | %8.1f | %5.1f |" % (k[:58], v, v / 1024, 100 * v / total))
    if limit and len(items) > limit:
        rest = sum(v for _, v in items[limit:])
        print("| %-58s | %9d | %8.1f | %5.1f |" % ("(%d more)" % (len(items) - limit), rest, rest / 1024, 100 * rest / total))
    print()

crates, mods, kinds = defaultdict(int), defaultdict(int), defaultdict(int)
for size, name in rows:
    crates[crate_of(name)] += size
    kinds[kind_of(name)] += size
    mod = module_of(name)
    if mod is not None:
        mods[mod] += size
print("Symbols: %d bytes (%.1f KiB) in %d symbols\n" % (total, total / 1024, len(rows)))
table("By crate (a generic instantiated with a skywire type counts as skywire):", crates, 20)
table("By skywire module (first skywire path in the symbol):", mods, 30)
table("By kind:", kinds)
print("Largest symbols:")
for size, name in sorted(rows, reverse=True)[:30]:
    print("  %7d  %s" % (size, re.sub(r"\[[0-9a-f]+\]", "", name)[:150]))
'
