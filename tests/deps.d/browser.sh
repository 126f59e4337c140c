#!/usr/bin/env bash
# Browser tests (tests/skychat_web.rs): Debian's chromium at /usr/bin/chromium, and
# playwright-core (the version pinned in tests/js/package.json) in tests/js/node_modules to
# drive it. No browser is downloaded: playwright-core is only the driver.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
js=$root/tests/js

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ! -x /usr/bin/chromium ]; then
    echo "browser.sh: installing chromium (Debian)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends chromium
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "browser.sh: installing nodejs and npm (Debian)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends nodejs npm
fi
want=$(sed -n 's/.*"playwright-core": *"\([^"]*\)".*/\1/p' "$js/package.json")
have=""
if [ -f "$js/node_modules/playwright-core/package.json" ]; then
    have=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$js/node_modules/playwright-core/package.json" | head -n 1)
fi
if [ "$have" = "$want" ]; then
    echo "browser.sh: chromium and playwright-core $want already present"
    exit 0
fi
echo "browser.sh: installing playwright-core $want into $js/node_modules"
for attempt in 1 2 3; do
    if (cd "$js" && npm ci --no-audit --no-fund --loglevel=error); then
        exit 0
    fi
    [ "$attempt" -lt 3 ] || { echo "browser.sh: npm ci failed 3 times; check the npm registry mirror" >&2; exit 1; }
    sleep $((attempt * 5))
done
