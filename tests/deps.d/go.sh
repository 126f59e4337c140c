#!/usr/bin/env bash
# Go toolchain and hashicorp/yamux source for tests/mux_interop.rs (DESIGN.md §9 tier 4).
# Idempotent: installs only what is missing; the Go peer is built offline against Debian's
# GOPATH tree (/usr/share/gocode), so no Go module proxy is ever contacted.
set -euo pipefail

yamux_src=/usr/share/gocode/src/github.com/hashicorp/yamux
missing=()
command -v go >/dev/null 2>&1 || missing+=(golang-go)
[ -f "$yamux_src/session.go" ] || missing+=(golang-github-hashicorp-yamux-dev)

if [ ${#missing[@]} -eq 0 ]; then
    echo "go.sh: go and hashicorp/yamux already present"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "go.sh: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
