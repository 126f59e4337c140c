#!/usr/bin/env bash
# Command-line clients the integration tests drive our services with (DESIGN.md §9): curl;
# dropbear (server + dbclient), the peer the pty bench measures against (PEERS.md); and tmux, the
# real terminal the skychat chat UI is tested in (tests/skychat.rs).
# Idempotent: installs only what is missing.
set -euo pipefail
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v dropbear >/dev/null 2>&1 && command -v dbclient >/dev/null 2>&1 || missing+=(dropbear-bin)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
if [ ${#missing[@]} -eq 0 ]; then
    echo "tools.sh: curl, dropbear and tmux already present"
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "tools.sh: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
