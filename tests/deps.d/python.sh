#!/usr/bin/env bash
# Python's `noiseprotocol` (PyPI), the independent Noise peer of tests/noise_interop.rs, and
# `pexpect` (drives the interactive pty client through a real terminal, DESIGN.md §9), and
# `sseclient-py` (the external SSE client of tests/http_stream.rs, DESIGN.md §9), in a
# venv at the repository root; `PySocks` (the external SOCKS5 client of tests/skysocks.rs) too, (.venv, ignored by git). Idempotent: creates the venv and
# installs the package only when missing. Needs python3 with the venv module.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=$root/.venv
py=$venv/bin/python

if [ -x "$py" ] && "$py" -c 'import noise.connection, cryptography, pexpect, sseclient, socks' 2>/dev/null; then
    echo "python.sh: noiseprotocol, pexpect, sseclient-py and PySocks already in $venv"
    exit 0
fi

command -v python3 >/dev/null 2>&1 || { echo "python.sh: python3 not found; install python3 and python3-venv" >&2; exit 1; }
if [ ! -x "$py" ]; then
    echo "python.sh: creating $venv"
    python3 -m venv "$venv" || { echo "python.sh: 'python3 -m venv' failed; install python3-venv" >&2; exit 1; }
fi
echo "python.sh: installing noiseprotocol, pexpect, sseclient-py and PySocks into $venv"
for attempt in 1 2 3; do
    if "$py" -m pip install -q --disable-pip-version-check 'noiseprotocol==0.3.1' 'pexpect==4.9.0' 'sseclient-py==1.9.0' 'PySocks==1.7.1'; then
        break
    fi
    [ "$attempt" -lt 3 ] || { echo "python.sh: pip install failed 3 times; check the PyPI mirror" >&2; exit 1; }
    sleep $((attempt * 5))
done
"$py" -c 'import noise.connection, cryptography, pexpect, sseclient, socks'
