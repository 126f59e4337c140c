//! The VPN (`app-vpn`): **vpn-server** (overlay port 44) gives each client a TUN device of its
//! own and NATs its traffic out of an egress interface; **vpn-client** (port 43) brings up a
//! TUN device and routes all of this machine's IPv4 traffic through a server. Both run in
//! every mode: inside the visor (the client driven by `skywire cli vpn`), `dmsg vpn-server` /
//! `dmsg vpn-client -- --srv <pk>`, and `standalone` (TCP: the server on `:4044`).
//!
//! - [`proto`]: the frames on the stream (hello, welcome, packets, keepalives).
//! - [`sys`]: the TUN device (the one `unsafe` ioctl).
//! - [`netcfg`]: `ip`/`nft`/`iptables` commands, `/proc` reads, and the undo journal that restores every
//!   setting on exit and on the next start after a crash.
//! - [`server`], [`client`]: the two apps.
//!
//! This module is the data path both share ([`pump`]): packets read from the TUN device are
//! framed into one write buffer (as many as are queued, up to [`WRITE_BATCH`] bytes) and
//! written to the stream at once; frames read from the stream are checked ([`proto::classify`]
//! and the addresses the session allows) and written to the TUN device one packet each.
//! Keepalives go both ways every [`KEEPALIVE`]; a side that hears nothing for
//! [`DEAD_AFTER`] ends the session (the client then reconnects).

pub mod client;
pub mod netcfg;
pub mod proto;
pub mod server;
pub mod sys;

use std::io;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::future::{self, poll_fn};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use self::proto::Body;
use self::sys::Tun;
use crate::app::conn::Conn;

/// The default MTU of the tunnel (as Go Skywire's): a packet and its 2-byte length fit a
/// mux data frame many times over, and the TCP inside sees the MSS of an Ethernet path.
pub const DEFAULT_MTU: u16 = 1500;
/// The largest MTU either side accepts (`--mtu`): a frame body is at most 65,535 bytes, and
/// beyond 16 KiB larger packets only grow the per-session buffers.
pub const MAX_MTU: u16 = 16384;
/// Bytes of framed packets gathered into one stream write.
pub const WRITE_BATCH: usize = 32 * 1024;
/// The stream read buffer: one frame of the largest length (65,535 + 2) always fits.
pub const READ_BUF: usize = 66 * 1024;
/// How often each side sends a keepalive.
pub const KEEPALIVE: Duration = Duration::from_secs(5);
/// Silence after which a side ends the session.
pub const DEAD_AFTER: Duration = Duration::from_secs(20);
/// How long the hello or the welcome may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Packets handled before the data path yields to other tasks (a flooding client cannot
/// starve the others).
const YIELD_EVERY: u32 = 64;

/// One session's counters ("tx": toward the peer, "rx": from it).
#[derive(Debug, Default)]
pub struct Stats {
    /// Packets sent to the peer.
    pub tx_packets: AtomicU64,
    /// Their bytes.
    pub tx_bytes: AtomicU64,
    /// Packets from the peer written to the TUN device.
    pub rx_packets: AtomicU64,
    /// Their bytes.
    pub rx_bytes: AtomicU64,
    /// Frames dropped as not IP, not whole, IPv6, or longer than the MTU.
    pub dropped_malformed: AtomicU64,
    /// Packets dropped for an address the session does not own (spoofed source, or a
    /// destination that is not this client).
    pub dropped_addr: AtomicU64,
    /// The last keepalive's round trip, in microseconds (0: none yet).
    pub rtt_us: AtomicU64,
}

impl Stats {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// What a session lets through from the peer.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    /// Packets must come from this address (the server's check on its client).
    pub src: Option<Ipv4Addr>,
    /// Packets must go to this address (the client's check on what the server sends).
    pub dst: Option<Ipv4Addr>,
    /// The largest packet accepted.
    pub mtu: u16,
}

impl Filter {
    fn allows(&self, body: &[u8], stats: &Stats) -> bool {
        if body.len() > usize::from(self.mtu) {
            Stats::add(&stats.dropped_malformed, 1);
            return false;
        }
        match proto::classify(body) {
            Body::Ipv4 { src, dst } => {
                if self.src.is_some_and(|s| s != src) || self.dst.is_some_and(|d| d != dst) {
                    Stats::add(&stats.dropped_addr, 1);
                    return false;
                }
                true
            }
            _ => {
                Stats::add(&stats.dropped_malformed, 1);
                false
            }
        }
    }
}

/// Reads one frame body from `conn` into `buf` within `timeout` (a hello or a welcome);
/// longer than `max` is an error.
pub async fn read_frame(conn: &mut Conn, max: usize, timeout: Duration) -> Result<Vec<u8>, String> {
    let read = async {
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).await?;
        let n = usize::from(u16::from_be_bytes(len));
        if n > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a {n}-byte handshake frame (at most {max})"),
            ));
        }
        let mut b = vec![0u8; n];
        conn.read_exact(&mut b).await?;
        Ok(b)
    };
    let t = async {
        Timer::after(timeout).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no handshake in time",
        ))
    };
    future::or(read, t).await.map_err(|e| e.to_string())
}

/// Writes one frame with `body` to `conn`.
pub async fn write_frame(conn: &mut Conn, body: &[u8]) -> Result<(), String> {
    let mut f = Vec::with_capacity(body.len() + 2);
    proto::put_frame(body, &mut f);
    conn.write_all(&f).await.map_err(|e| e.to_string())?;
    conn.flush().await.map_err(|e| e.to_string())
}

/// Moves packets between `tun` and `conn` until either fails, the peer is silent for
/// [`DEAD_AFTER`], or `stop` resolves; the reason it ended is returned.
pub async fn pump(
    tun: &Tun,
    conn: Conn,
    filter: Filter,
    stats: &Stats,
    stop: impl std::future::Future<Output = ()>,
) -> String {
    let (mut rd, mut wr) = futures_lite::io::split(conn);
    let last_rx = Mutex::new(Instant::now());
    let pong = PongSlot::default();
    let started = Instant::now();
    let touch = || *last_rx.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();

    // Stream → TUN.
    let down = async {
        let mut buf = vec![0u8; READ_BUF];
        let mut have = 0usize;
        let mut turn = 0u32;
        loop {
            let n = match rd.read(&mut buf[have..]).await {
                Ok(0) => return "the peer closed the tunnel".to_string(),
                Ok(n) => n,
                Err(e) => return format!("tunnel stream: {e}"),
            };
            have += n;
            touch();
            let mut at = 0usize;
            while let Some((body, used)) = proto::next_frame(&buf[at..have]) {
                let body = &buf[at + body.start..at + body.end];
                match proto::classify(body) {
                    Body::Ping(t) => pong.put(t),
                    Body::Pong(t) => {
                        let now = started.elapsed().as_micros() as u64;
                        stats
                            .rtt_us
                            .store(now.saturating_sub(t).max(1), Ordering::Relaxed);
                    }
                    _ if filter.allows(body, stats) => {
                        if let Err(e) = tun.send(body).await {
                            return format!("TUN {}: {e}", tun.name());
                        }
                        Stats::add(&stats.rx_packets, 1);
                        Stats::add(&stats.rx_bytes, body.len() as u64);
                    }
                    _ => {}
                }
                at += used;
                turn += 1;
                if turn >= YIELD_EVERY {
                    turn = 0;
                    future::yield_now().await;
                }
            }
            buf.copy_within(at..have, 0);
            have -= at;
        }
    };

    // TUN → stream, with the keepalives.
    let up = async {
        let mut pkt = vec![0u8; usize::from(filter.mtu).max(proto::MAX_HELLO)];
        let mut out: Vec<u8> = Vec::with_capacity(WRITE_BATCH + usize::from(filter.mtu) + 2);
        let mut next_ping = Instant::now() + KEEPALIVE;
        // One timer, moved when it fires: a timer made per packet would be registered with
        // the reactor (an eventfd write and a turn of its loop) for every batch sent.
        let mut tick = Timer::at(next_ping);
        loop {
            enum Ev {
                Packet(io::Result<usize>),
                Tick,
                Pong(u64),
            }
            let ev = future::or(
                async { Ev::Packet(tun.recv(&mut pkt).await) },
                future::or(async { Ev::Pong(pong.take().await) }, async {
                    (&mut tick).await;
                    Ev::Tick
                }),
            )
            .await;
            match ev {
                Ev::Packet(Err(e)) => return format!("TUN {}: {e}", tun.name()),
                Ev::Packet(Ok(n)) => {
                    let mut n = n;
                    loop {
                        // IPv4 only (the tunnel has no IPv6 addresses to answer to).
                        if n >= 20 && n <= usize::from(filter.mtu) && pkt[0] >> 4 == 4 {
                            proto::put_frame(&pkt[..n], &mut out);
                            Stats::add(&stats.tx_packets, 1);
                            Stats::add(&stats.tx_bytes, n as u64);
                        }
                        if out.len() >= WRITE_BATCH {
                            break;
                        }
                        n = match tun.try_recv(&mut pkt) {
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return format!("TUN {}: {e}", tun.name()),
                        };
                    }
                }
                Ev::Pong(t) => out.extend_from_slice(&proto::keepalive(true, t)),
                Ev::Tick => {
                    let silent = last_rx.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
                    if silent >= DEAD_AFTER {
                        return format!("no answer from the peer for {} s", silent.as_secs());
                    }
                    let t = started.elapsed().as_micros() as u64;
                    out.extend_from_slice(&proto::keepalive(false, t));
                    next_ping = Instant::now() + KEEPALIVE;
                    tick.set_at(next_ping);
                }
            }
            if !out.is_empty() {
                // A peer that stops reading holds this write; past DEAD_AFTER the session
                // ends (its keepalive check cannot run meanwhile).
                let write = async {
                    wr.write_all(&out).await?;
                    wr.flush().await
                };
                let deadline = async {
                    Timer::after(DEAD_AFTER).await;
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the peer read nothing for {} s", DEAD_AFTER.as_secs()),
                    ))
                };
                if let Err(e) = future::or(write, deadline).await {
                    return format!("tunnel stream: {e}");
                }
                out.clear();
            }
        }
    };
    let stop = async {
        stop.await;
        "stopped".to_string()
    };
    // Each polled only when woken: a packet one way costs the other way no failed read.
    let why = crate::spawn::race(stop, crate::spawn::race(down, up)).await;
    let _ = wr.close().await;
    why
}

/// The token of the last keepalive heard, for the writer to echo (a newer one replaces an
/// older one not yet echoed).
#[derive(Debug, Default)]
struct PongSlot(Mutex<(Option<u64>, Option<Waker>)>);

impl PongSlot {
    fn put(&self, token: u64) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.0 = Some(token);
        if let Some(w) = g.1.take() {
            w.wake();
        }
    }

    async fn take(&self) -> u64 {
        poll_fn(|cx| {
            let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
            match g.0.take() {
                Some(t) => Poll::Ready(t),
                None => {
                    g.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// Constant-time equality of two passcodes (no early exit on the first differing byte).
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let mut d = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        d |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    d == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compared_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(same_secret(b"", b""));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }

    #[test]
    fn filter_drops_and_counts() {
        let s = Stats::default();
        let f = Filter {
            src: Some(Ipv4Addr::new(10, 0, 0, 2)),
            dst: None,
            mtu: 100,
        };
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[3] = 20;
        ip[12..16].copy_from_slice(&[10, 0, 0, 2]);
        assert!(f.allows(&ip, &s));
        ip[15] = 3;
        assert!(!f.allows(&ip, &s));
        assert!(!f.allows(&[0x45; 101], &s));
        assert!(!f.allows(b"hello", &s));
        assert_eq!(Stats::get(&s.dropped_addr), 1);
        assert_eq!(Stats::get(&s.dropped_malformed), 2);
    }
}
