#!/usr/bin/env bash
# The VPN tests (tests/vpn.rs) and bench (benches/vpn.rs): network namespaces and routes
# (iproute2), the firewalls the apps and the tests load rules into (nftables; iptables for
# the server without nft), and the clients nobody here wrote that go through the tunnel
# (ping from iputils-ping, iperf3).
# Idempotent: installs only what is missing.
set -euo pipefail
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v ping >/dev/null 2>&1 || missing+=(iputils-ping)
command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
if [ ${#missing[@]} -eq 0 ]; then
    echo "vpn.sh: ip, nft, iptables, ping and iperf3 already present"
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "vpn.sh: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
