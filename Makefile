# skywire-rs — the one entry point. `make help` lists what is here.
#
#   make / make build          release build for this machine (<target dir>/release/skywire)
#   make run                   build, create local/skywire-config.json if missing, check it
#   make test                  install test needs (tests/deps.sh), then cargo test --all-targets
#                              (with the test-only `test-apps` feature: tests/visor.rs drives them)
#   make cross TARGET=…        board build -> dist/skywire-<short name>
#   make cross-test TARGET=…   unit tests for a board target under qemu-user
#   make size                  stripped binary size per target, and each app's cost on armv7
#   make lint                  layer check (scripts/layers.sh), rustfmt check, clippy -D warnings
#   make bench                 benchmarks -> docs/benchmarks.md (the command is recorded there)
#   make fuzz                  every fuzz target for FUZZ_TIME seconds (default 60)
#   make install               boards/install.sh for this machine's build (PREFIX, DESTDIR)
#
# TARGET is aarch64 | aarch64-musl | armv7 | riscv64, or the full Rust triple (cross/targets).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

CARGO  ?= cargo
TARGET ?=
PREFIX ?= /usr/local
# cargo's output directory: CARGO_TARGET_DIR when set (as cargo reads it), else target/.
BIN    := $(or $(CARGO_TARGET_DIR),target)/release/skywire
STATE  := local

.PHONY: build run test cross cross-test size lint bench fuzz install clean help

build:
	$(CARGO) build --release

# The visor on its embedded default: state (config with fresh keys on first start) in
# $(STATE); with no network configured it hosts its own relay + discovery. Ctrl-C stops it.
run: build
	$(BIN) visor --state-dir $(STATE)

test:
	bash tests/deps.sh
	$(CARGO) test --workspace --all-targets --features skywire/test-apps

cross:
	@[ -n "$(TARGET)" ] || { echo "make cross: set TARGET, e.g. make cross TARGET=armv7 (one of: $$(source cross/lib.sh && cross_names))" >&2; exit 2; }
	bash cross/build.sh $(TARGET)

cross-test:
	@[ -n "$(TARGET)" ] || { echo "make cross-test: set TARGET, e.g. make cross-test TARGET=armv7 (one of: $$(source cross/lib.sh && cross_names))" >&2; exit 2; }
	bash cross/test.sh $(TARGET)

size:
	bash cross/size.sh

lint:
	@# No import from a lower layer to a higher one, no import circle (docs/architecture.md "Layers").
	bash scripts/layers.sh
	@rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
	$(CARGO) fmt --check
	@# The fuzz crate is its own workspace; `make fuzz` runs it on nightly, but the targets
	@# type-check on the pinned toolchain, so an API change cannot leave them broken unseen.
	$(CARGO) check --manifest-path fuzz/Cargo.toml --bins
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --all-targets --features skywire/test-apps -- -D warnings
	$(CARGO) clippy -p skywire --lib --bins --no-default-features -- -D warnings
	@# Each app alone on the minimal build (every app-* feature and skynet).
	bash scripts/features.sh

bench:
	$(CARGO) bench -- --write docs/benchmarks.md
	@# skynet's routes end at a test app (`test-a --echo`), so its bench builds with them; the
	@# benches above measure the shipped build (cargo skips skynet there: required-features).
	$(CARGO) bench --features skywire/test-apps --bench skynet -- --write docs/benchmarks.md

FUZZ_TIME ?= 60
fuzz:
	bash fuzz/run.sh $(FUZZ_TIME)

# DESTDIR (environment or make variable) stages into a directory instead of the live system.
install: build
	DESTDIR="$(DESTDIR)" bash boards/install.sh --prefix "$(PREFIX)" $(BIN)

clean:
	$(CARGO) clean
	rm -rf dist

help:
	@sed -n '3,14p' Makefile | sed 's/^# \{0,1\}//'
