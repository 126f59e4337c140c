//! A raw-frame attack client for tests and benches: it runs the library's own handshake as a
//! key of its choosing, then writes whatever mux frames it likes, sealed as the real codecs
//! seal them — and reads nothing unless asked, like a peer that never reads.
//!
//! API (everything blocks the calling thread; every wait is bounded):
//!
//! - [`RawSession::relay`]`(addr, relay_pk, &keys)`: TCP to a relay (`skywire dmsg server`),
//!   Noise XK as `keys`, sealed session frames (DESIGN.md §3.4) from then on.
//! - [`RawSession::tcp_app`]`(addr, host_pk, &keys)`: TCP to a TCP-mode app host
//!   (`standalone <app> --listen`), Noise XK as `keys`, mux frames inside channel frames.
//! - [`RawSession::send`]`(header, control, data)` queues one frame (the codec batches up to
//!   64 KiB); [`RawSession::flush`] writes the batch. Both fail once the peer has dropped the
//!   connection. Shorthands: [`RawSession::syn`], [`RawSession::data`], [`RawSession::ping`].
//! - [`RawSession::ping_flood`]`(max_frames, max_time)`: ping SYNs in batches without ever
//!   reading; returns how many were written and whether the peer dropped the connection.
//! - [`RawSession::read_frame`]`(timeout)`: the next frame the peer sent (header and data).
//! - [`RawSession::wait_dropped`]`(timeout)`: reads and discards until the peer closes or
//!   resets the connection (`true`), or `timeout` passes (`false`).
//! - [`channel_request`]`(dst)`: the control payload of a relay channel request; [`rss_kib`]
//!   `(pid)`: a process's resident set; [`spawn_relay`]`(extra args)`: a relay process on
//!   127.0.0.1 without discovery ([`Relay`]: its process, key and address).

use std::io;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_net::TcpStream;
use futures_lite::future::{self, block_on};
use futures_lite::io::AsyncReadExt;
use skywire::crypto::channel::{Channel, HANDSHAKE_TIMEOUT, handshake_transport};
use skywire::crypto::noise::xk_initiator;
use skywire::crypto::{Keypair, PublicKey};
use skywire::mux::codec::{
    ChannelFrameReader, ChannelFrameWriter, FrameRead, FrameWrite, SealedReader, SealedWriter,
};
use skywire::mux::core::OutFrame;
use skywire::wire::mux::{Flags, Repr};

use super::ChildGuard;

/// How long one write or read may block before it counts as a failure.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn within<T>(d: Duration, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    block_on(future::or(f, async {
        async_io::Timer::after(d).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
    }))
}

/// A session with a peer whose every frame this side writes by hand.
pub struct RawSession<R, W> {
    reader: R,
    writer: W,
    /// The connection, to read raw bytes or shut it down.
    pub tcp: TcpStream,
    /// Our key.
    pub pk: PublicKey,
}

/// A raw session with a relay.
pub type RelaySession = RawSession<SealedReader<TcpStream>, SealedWriter<TcpStream>>;
/// A raw session with a TCP-mode app host.
pub type TcpAppSession = RawSession<
    ChannelFrameReader<futures_lite::io::ReadHalf<TcpStream>>,
    ChannelFrameWriter<futures_lite::io::WriteHalf<TcpStream>>,
>;

impl RelaySession {
    /// Connects to the relay at `addr` (whose key is `relay`) as `keys`.
    pub fn relay(addr: &str, relay: &PublicKey, keys: &Keypair) -> io::Result<RelaySession> {
        within(IO_TIMEOUT, async {
            let mut tcp = TcpStream::connect(addr).await?;
            let _ = tcp.set_nodelay(true);
            let (t, _) =
                handshake_transport(&mut tcp, xk_initiator(keys, relay), HANDSHAKE_TIMEOUT)
                    .await
                    .map_err(io::Error::other)?;
            Ok(RawSession {
                reader: SealedReader::new(tcp.clone(), t.recv, 1 << 20),
                writer: SealedWriter::new(tcp.clone(), t.send),
                tcp,
                pk: *keys.public(),
            })
        })
    }
}

impl TcpAppSession {
    /// Connects to the TCP-mode host at `addr` (whose key is `host`) as `keys`.
    pub fn tcp_app(addr: &str, host: &PublicKey, keys: &Keypair) -> io::Result<TcpAppSession> {
        within(IO_TIMEOUT, async {
            let tcp = TcpStream::connect(addr).await?;
            let _ = tcp.set_nodelay(true);
            let ch = Channel::handshake(tcp.clone(), xk_initiator(keys, host), HANDSHAKE_TIMEOUT)
                .await
                .map_err(io::Error::other)?;
            let (r, w) = ch.split();
            Ok(RawSession {
                reader: ChannelFrameReader::new(r),
                writer: ChannelFrameWriter::new(w),
                tcp,
                pk: *keys.public(),
            })
        })
    }
}

impl<R: FrameRead, W: FrameWrite> RawSession<R, W> {
    /// Queues one frame (written when the batch fills or at [`RawSession::flush`]).
    pub fn send(&mut self, header: Repr, control: &[u8], data: &[u8]) -> io::Result<()> {
        let f = OutFrame::new(header, control.to_vec(), data.to_vec());
        within(IO_TIMEOUT, self.writer.write_frame(&f))
    }

    /// Writes everything queued.
    pub fn flush(&mut self) -> io::Result<()> {
        within(IO_TIMEOUT, self.writer.flush())
    }

    /// Opens stream `id` (SYN on a window update) with `control`.
    pub fn syn(&mut self, id: u32, control: &[u8]) -> io::Result<()> {
        self.send(Repr::window_update(id, Flags::SYN, 0), control, &[])
    }

    /// Data on stream `id`.
    pub fn data(&mut self, id: u32, data: &[u8]) -> io::Result<()> {
        self.send(Repr::data(id, Flags::NONE, data.len() as u32), &[], data)
    }

    /// A ping asking for an answer.
    pub fn ping(&mut self, opaque: u32) -> io::Result<()> {
        self.send(Repr::ping(Flags::SYN, opaque), &[], &[])
    }

    /// Sends ping SYNs, flushing every 1,000, never reading, until `max_frames` are written,
    /// `max_time` has passed, or the peer drops the connection. Returns the frames written
    /// and whether the peer dropped us.
    pub fn ping_flood(&mut self, max_frames: u64, max_time: Duration) -> (u64, bool) {
        let t0 = Instant::now();
        let mut n = 0;
        while n < max_frames && t0.elapsed() < max_time {
            let batch = (0..1000u32).try_for_each(|i| self.ping(n as u32 + i));
            if batch.and_then(|()| self.flush()).is_err() {
                return (n, true);
            }
            n += 1000;
        }
        (n, false)
    }

    /// The next frame from the peer: its header and data.
    pub fn read_frame(&mut self, timeout: Duration) -> io::Result<(Repr, Vec<u8>)> {
        within(timeout, async {
            match self.reader.read_frame().await {
                Ok(Some(f)) => Ok((f.header, f.data.to_vec())),
                Ok(None) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed")),
                Err(e) => Err(io::Error::other(e)),
            }
        })
    }

    /// Reads and discards raw bytes until the peer closes or resets the connection (`true`)
    /// or `timeout` passes (`false`).
    pub fn wait_dropped(&mut self, timeout: Duration) -> bool {
        let t0 = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        while t0.elapsed() < timeout {
            let left = timeout.saturating_sub(t0.elapsed());
            match within(left, self.tcp.read(&mut buf)) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return false,
                Err(_) => return true,
            }
        }
        false
    }
}

/// The control payload of a relay channel request to `dst`: `01 ‖ dst`.
pub fn channel_request(dst: &PublicKey) -> Vec<u8> {
    let mut c = vec![1u8];
    c.extend_from_slice(dst.as_bytes());
    c
}

/// The resident set of process `pid` in KiB (Linux `/proc`).
pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// A relay process started by [`spawn_relay`].
pub struct Relay {
    /// The process (killed when dropped).
    pub proc: ChildGuard,
    /// Its key.
    pub pk: PublicKey,
    /// Its address (`127.0.0.1:port`).
    pub addr: String,
    /// Kept open so the relay's later output has somewhere to go.
    _out: std::io::BufReader<std::process::ChildStdout>,
}

impl Relay {
    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.proc.0.as_ref().expect("running").id()
    }
}

/// A relay (`skywire dmsg server`) on 127.0.0.1 with no discovery and `extra` arguments.
pub fn spawn_relay(extra: &[&str]) -> Relay {
    use std::io::BufRead;
    let mut child = Command::new(super::skywire_bin())
        .args([
            "dmsg",
            "server",
            "--addr",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // relay <pk> listening on <addr>
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts.first(), Some(&"relay"), "{line}");
    Relay {
        pk: PublicKey::from_hex(parts[1]).unwrap(),
        addr: parts[4].to_string(),
        proc: ChildGuard(Some(child)),
        _out: out,
    }
}
