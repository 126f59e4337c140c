//! The operating-system calls of the VPN apps: the one module of them allowed `unsafe` (one
//! block, the `TUNSETIFF` ioctl in [`Tun::open`]); everything else is rustix's safe wrappers
//! or the `ip`/`nft` commands in [`super::netcfg`].
//!
//! A [`Tun`] is a layer-3 TUN device without packet information (`IFF_TUN | IFF_NO_PI`): each
//! read returns one IP packet, each write injects one. The file descriptor is non-blocking and
//! registered with the reactor (async-io), so reading and writing never block the executor.
//! The device lives as long as the descriptor: when the process exits (or is killed) the
//! kernel removes it together with its addresses and routes.

#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, Read, Write};

use async_io::Async;
use rustix::fs::{Mode, OFlags};
use rustix::ioctl::{Updater, opcode};

/// `TUNSETIFF` = `_IOW('T', 202, int)` (linux/if_tun.h).
const TUNSETIFF: rustix::ioctl::Opcode = opcode::write::<core::ffi::c_int>(b'T', 202);
/// `IFF_TUN`: layer 3 (IP packets, no Ethernet header).
const IFF_TUN: u16 = 0x0001;
/// `IFF_NO_PI`: no 4-byte packet-information prefix.
const IFF_NO_PI: u16 = 0x1000;
/// `IFNAMSIZ`.
const IFNAMSIZ: usize = 16;

/// `struct ifreq` as `TUNSETIFF` reads it: the name, then `ifr_flags` (a native-endian
/// `short`) at the start of the union. 40 bytes is its size on 64-bit targets and more than
/// its 32 bytes on 32-bit ones (the kernel copies only its own size).
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: u16,
    _pad: [u8; 22],
}

/// An open TUN device.
#[derive(Debug)]
pub struct Tun {
    file: Async<File>,
    name: String,
}

impl Tun {
    /// Creates a TUN device named after `pattern` (`%d` is replaced by the kernel with the
    /// first free number, e.g. `swvpnc%d` → `swvpnc0`). Fails with a message that says what
    /// is missing: `/dev/net/tun`, or the `CAP_NET_ADMIN` capability.
    pub fn open(pattern: &str) -> Result<Tun, String> {
        if pattern.is_empty() || pattern.len() >= IFNAMSIZ {
            return Err(format!("interface name {pattern:?}: 1-15 bytes (IFNAMSIZ)"));
        }
        let fd = rustix::fs::open(
            "/dev/net/tun",
            OFlags::RDWR | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOENT => "no /dev/net/tun on this machine: load the tun module \
                                         (modprobe tun) or use a kernel with CONFIG_TUN"
                .to_string(),
            rustix::io::Errno::ACCESS | rustix::io::Errno::PERM => {
                "cannot open /dev/net/tun: the VPN needs CAP_NET_ADMIN (run the visor as \
                 root, or install boards/common/dropins/vpn.conf for the systemd unit)"
                    .to_string()
            }
            e => format!("cannot open /dev/net/tun: {e}"),
        })?;
        let mut req = IfReq {
            name: [0; IFNAMSIZ],
            flags: IFF_TUN | IFF_NO_PI,
            _pad: [0; 22],
        };
        req.name[..pattern.len()].copy_from_slice(pattern.as_bytes());
        // SAFETY: TUNSETIFF reads a `struct ifreq` (name, then the flags `short` at offset
        // 16) and writes the chosen name back into it; `IfReq` is `repr(C)` with that layout
        // and at least the kernel's `sizeof(struct ifreq)` (40 bytes on 64-bit targets, 32
        // on 32-bit ones), so every byte the kernel touches is inside `req`, which outlives
        // the call. The descriptor is a freshly opened /dev/net/tun.
        unsafe { rustix::ioctl::ioctl(&fd, Updater::<TUNSETIFF, IfReq>::new(&mut req)) }.map_err(
            |e| match e {
                rustix::io::Errno::PERM | rustix::io::Errno::ACCESS => {
                    "cannot create a TUN interface: the VPN needs CAP_NET_ADMIN (run the \
                     visor as root, or install boards/common/dropins/vpn.conf for the systemd \
                     unit)"
                        .to_string()
                }
                e => format!("cannot create a TUN interface ({pattern}): {e}"),
            },
        )?;
        let end = req.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        let name = String::from_utf8_lossy(&req.name[..end]).into_owned();
        let file = Async::new(File::from(fd)).map_err(|e| format!("TUN {name}: {e}"))?;
        // IPv4 only: without IPv6 on the device the kernel sends no router solicitations
        // or MLD reports into it (best effort: a kernel without IPv6 has no such file).
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        Ok(Tun { file, name })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one packet, waiting for one.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read_with(|mut f| f.read(buf)).await
    }

    /// Reads one packet if one is queued (`WouldBlock` if none).
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut f = self.file.get_ref();
        f.read(buf)
    }

    /// Writes one packet. The kernel takes or drops it at once; only a full socket buffer
    /// makes it wait.
    pub async fn send(&self, pkt: &[u8]) -> io::Result<()> {
        let n = self.file.write_with(|mut f| f.write(pkt)).await?;
        if n != pkt.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "TUN took part of a packet",
            ));
        }
        Ok(())
    }
}
