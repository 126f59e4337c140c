#!/usr/bin/env bash
# Installs what the test suite needs beyond cargo: runs every tests/deps.d/*.sh in order.
# Each script is idempotent (checks before installing) and prints one line per action.
# Called by `make test`; safe to run by hand.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for s in "$here"/deps.d/*.sh; do
    [ -e "$s" ] || continue
    bash "$s"
done
