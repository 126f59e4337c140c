#!/usr/bin/env bash
# Installs skywire on this machine (a board), or stages it into DESTDIR for an image/package.
#
#   boards/install.sh [--prefix DIR] [--destdir DIR] [--gen-config] [path-to-binary]
#
#   path-to-binary  the skywire binary to install (default: release/skywire under
#                   $CARGO_TARGET_DIR, else under target/ of this checkout; for a board
#                   build e.g. dist/skywire-armv7)
#   --prefix DIR    where bin/ goes (default /usr/local; also PREFIX=)
#   --destdir DIR   stage everything under DIR instead of / (also DESTDIR=); no user is
#                   created, nothing is chowned, and no keys are generated unless --gen-config
#   --gen-config    with DESTDIR: generate the config (keys) into the staged tree anyway
#
# What it installs:
#   PREFIX/bin/skywire, PREFIX/bin/dmsg -> skywire, PREFIX/bin/standalone -> skywire
#   /etc/systemd/system/skywire-visor.service   (boards/common, ExecStart adjusted to PREFIX)
#   /etc/sysusers.d/skywire.conf                 (the `skywire` system user, for first boot)
#   /var/lib/skywire/                            (mode 0700, owned by skywire)
#   /var/lib/skywire/skywire-config.json         generated ONLY if none exists: keys are never
#                                                overwritten
# It does not enable or start the service; it prints the command for that.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

prefix=${PREFIX:-/usr/local}
destdir=${DESTDIR:-}
gen_config=auto
bin=""
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#*=}; shift ;;
        --destdir) [ $# -ge 2 ] || die "--destdir needs a directory"; destdir=$2; shift 2 ;;
        --destdir=*) destdir=${1#*=}; shift ;;
        --gen-config) gen_config=yes; shift ;;
        -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option '$1'; see boards/install.sh --help" ;;
        *) [ -z "$bin" ] || die "more than one binary given ('$bin', '$1')"; bin=$1; shift ;;
    esac
done

case $prefix in /*) ;; *) die "--prefix must be an absolute path (got '$prefix')" ;; esac
prefix=${prefix%/}
if [ -n "$destdir" ]; then
    mkdir -p "$destdir"
    destdir=$(cd "$destdir" && pwd)
fi
live=yes
[ -z "$destdir" ] || live=no

if [ -z "$bin" ]; then
    bin=${CARGO_TARGET_DIR:-$repo/target}/release/skywire
    [ -e "$bin" ] || die "no binary given and $bin does not exist; run 'make build' (or 'make cross TARGET=…') first, or pass the path, e.g. boards/install.sh dist/skywire-armv7"
fi
[ -f "$bin" ] || die "binary '$bin' not found"
[ -x "$bin" ] || die "binary '$bin' is not executable"
if [ "$live" = yes ] && [ "$(id -u)" -ne 0 ]; then
    die "installing into the live system needs root: run it with sudo, or stage with DESTDIR=/some/dir"
fi

bindir=$prefix/bin
statedir=/var/lib/skywire
config=$statedir/skywire-config.json
user=skywire

# Can this machine run the binary? (No for a board build on a PC.) Used for the config and
# for the check that this build has the `visor` command the unit starts.
runnable=no
"$bin" --version >/dev/null 2>&1 && runnable=yes

# --- binary and multicall links --------------------------------------------------------
install -d -m 0755 "$destdir$bindir"
install -m 0755 "$bin" "$destdir$bindir/skywire"
ln -sfn skywire "$destdir$bindir/dmsg"
ln -sfn skywire "$destdir$bindir/standalone"
say "installed $destdir$bindir/skywire (+ dmsg, standalone links)"

# --- systemd unit and user -------------------------------------------------------------
install -d -m 0755 "$destdir/etc/systemd/system" "$destdir/etc/sysusers.d"
sed "s|/usr/local/bin/skywire|$bindir/skywire|g" "$here/common/skywire-visor.service" \
    >"$destdir/etc/systemd/system/skywire-visor.service"
chmod 0644 "$destdir/etc/systemd/system/skywire-visor.service"
install -m 0644 "$here/common/sysusers-skywire.conf" "$destdir/etc/sysusers.d/skywire.conf"
say "installed $destdir/etc/systemd/system/skywire-visor.service and $destdir/etc/sysusers.d/skywire.conf"

if [ "$live" = yes ]; then
    if id -u "$user" >/dev/null 2>&1; then
        say "user $user exists"
    elif command -v systemd-sysusers >/dev/null 2>&1 &&
        systemd-sysusers /etc/sysusers.d/skywire.conf && id -u "$user" >/dev/null 2>&1; then
        say "created system user $user (systemd-sysusers)"
    else
        command -v useradd >/dev/null 2>&1 ||
            die "cannot create user $user: neither systemd-sysusers nor useradd works here; create it, then rerun"
        nologin=$(command -v nologin || echo /usr/sbin/nologin)
        useradd --system --user-group --home-dir "$statedir" --no-create-home \
            --shell "$nologin" --comment "Skywire visor" "$user"
        say "created system user $user (useradd)"
    fi
fi

# --- state directory and config ----------------------------------------------------------
install -d -m 0700 "$destdir$statedir"
[ "$live" = no ] || chown "$user:$user" "$statedir"

if [ -e "$destdir$config" ]; then
    say "kept existing $destdir$config (keys untouched)"
elif [ "$live" = no ] && [ "$gen_config" != yes ]; then
    say "no config generated in the staged tree: every board needs its own keys; the unit generates $config at first start (or pass --gen-config)"
elif [ "$runnable" = no ]; then
    say "cannot run $bin on this machine (built for another architecture?), so no config was generated; the unit generates $config at first start"
else
    "$bin" config gen -o "$destdir$config" >/dev/null
    [ "$live" = no ] || chown "$user:$user" "$config"
    say "generated $destdir$config (new keys, mode 0600)"
fi

# --- next steps --------------------------------------------------------------------------
if [ "$runnable" = yes ] && ! "$bin" visor --help >/dev/null 2>&1; then
    say "note: this build has no 'skywire visor' command yet (it arrives with the visor issue); the unit will fail to start until a build with it is installed"
fi
if [ "$live" = yes ]; then
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        say "done; start it with: systemctl enable --now skywire-visor"
    else
        say "done; systemd is not running here, so the unit was installed but not loaded"
    fi
else
    say "done; staged under $destdir"
fi
