#!/usr/bin/env bash
# Command-line clients the integration tests drive our services with (DESIGN.md §9): curl;
# and dropbear (server + dbclient), the peer the pty bench measures against (PEERS.md).
# Idempotent: installs only what is missing.
set -euo pipefail
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v dropbear >/dev/null 2>&1 && command -v dbclient >/dev/null 2>&1 || missing+=(dropbear-bin)
if [ ${#missing[@]} -eq 0 ]; then
    echo "tools.sh: curl and dropbear already present"
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "tools.sh: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
