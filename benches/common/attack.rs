//! Hostile peers for `benches/hostile.rs`, built only on the library's public API: a throwaway
//! [`Keypair`], the Noise handshakes (`handshake_transport` with `xk_initiator` /
//! `kk_initiator`), the session and channel codecs (`SealedWriter`, `ChannelFrameWriter`) and
//! hand-made mux headers ([`Repr`]). Frame layouts: `docs/protocol.md` §4, §5, §7.
//!
//! Each attack runs until its future is dropped (the bench runs it in a child process and ends
//! it by PID). Progress goes to stdout, one line each: `ready` once the first hostile session
//! is up, `up` for every session set up, `down <why>` when one ended, `sent <n>` now and then
//! (frames, streams or replays, by attack).
//!
//! None of these peers reads what the target sends back, except where it must to exist at all
//! (the relay session under an end-to-end channel is an ordinary library `Session`; its
//! channel stream is never read), so the target can only keep up by holding, dropping or
//! refusing.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_executor::Executor;
use async_io::Timer;
use async_net::TcpStream;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use skywire::crypto::channel::{Channel, ChannelReader, HANDSHAKE_TIMEOUT, handshake_transport};
use skywire::crypto::noise::{TransportState, kk_initiator, xk_initiator};
use skywire::crypto::{Keypair, PublicKey};
use skywire::dmsg::relay::{CONTROL_V1, STATUS_OK, session_config, session_max_data};
use skywire::mux::codec::{ChannelFrameWriter, FrameWrite, SealedReader, SealedWriter};
use skywire::mux::core::OutFrame;
use skywire::mux::{Session, Side, Stream};
use skywire::wire::mux::{Flags, Repr};

/// The per-stream window of the mux (`docs/protocol.md` §5): the most a peer may send on a
/// stream before it is credited.
pub const WINDOW: usize = 256 * 1024;
/// dmsgctrl's port on a visor and its ping byte (`src/visor/services.rs`).
pub const DMSGCTRL_PORT: u16 = 7;
const DMSGCTRL_PING: u8 = 0x09;
/// The pty app's overlay port, which its TCP listener serves.
pub const PTY_PORT: u16 = 22;

/// Which hostile peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// (a) XK session to the relay writing ping SYNs, never reading.
    PingRelay,
    /// (b) KK channel to a visor through the relay, ping SYNs on the inner mux, never read.
    PingVisor,
    /// (c) one session opens streams to the relay (channel requests to a sink session of ours
    /// that never reads) and fills each with a window of data.
    StreamsRelay,
    /// (c) inner streams to a visor's dmsgctrl port, each filled with a window of pings.
    StreamsVisor,
    /// (d) 1-byte data frames on relay streams (to the never-reading sink).
    TinyRelay,
    /// (d) 1-byte data frames on inner streams to a visor's dmsgctrl port.
    TinyVisor,
    /// (e) a stranger's TCP-mode connection to a pty host: many streams, each with a window.
    ParkedTcp,
    /// (f) one captured XK message 1 replayed from many connections.
    Replay,
}

impl Kind {
    /// Every attack, in table order.
    pub const ALL: [Kind; 8] = [
        Kind::PingRelay,
        Kind::PingVisor,
        Kind::StreamsRelay,
        Kind::StreamsVisor,
        Kind::TinyRelay,
        Kind::TinyVisor,
        Kind::ParkedTcp,
        Kind::Replay,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::PingRelay => "ping-relay",
            Kind::PingVisor => "ping-visor",
            Kind::StreamsRelay => "streams-relay",
            Kind::StreamsVisor => "streams-visor",
            Kind::TinyRelay => "tiny-relay",
            Kind::TinyVisor => "tiny-visor",
            Kind::ParkedTcp => "parked-tcp",
            Kind::Replay => "replay",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// Where the attack goes.
#[derive(Debug, Clone)]
pub struct Params {
    /// The relay: PK and `host:port`.
    pub relay: (PublicKey, String),
    /// The visor to reach through the relay (visor attacks).
    pub victim: Option<PublicKey>,
    /// A TCP-mode host: PK and `host:port` (parked streams).
    pub host: Option<(PublicKey, String)>,
    /// Streams per session (stream attacks).
    pub streams: usize,
    /// Concurrent connections (replay).
    pub conns: usize,
    /// Most replays in all (each leaves a socket in the kernel's tables for a while).
    pub max_replays: u64,
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Says `ready` the first time.
struct Ready(AtomicBool);

impl Ready {
    fn up(&self) {
        if !self.0.swap(true, Ordering::Relaxed) {
            say("ready");
        }
        say("up");
    }
}

type Res<T> = Result<T, String>;

/// Frames, pings or replays sent, over every session of the attack.
static SENT: AtomicU64 = AtomicU64::new(0);

/// Counts one more and reports the total every `every`.
fn count(every: u64) {
    let n = SENT.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_multiple_of(every) {
        say(&format!("sent {n}"));
    }
}

/// Reports the total now.
fn report_sent() {
    say(&format!("sent {}", SENT.load(Ordering::Relaxed)));
}

fn e2s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A TCP connection and an XK session from a fresh throwaway key to `relay`.
async fn xk(relay: &(PublicKey, String)) -> Res<(TcpStream, TransportState, Keypair)> {
    let keys = Keypair::generate().map_err(e2s)?;
    let mut tcp = TcpStream::connect(relay.1.as_str()).await.map_err(e2s)?;
    let _ = tcp.set_nodelay(true);
    let (t, _) = handshake_transport(&mut tcp, xk_initiator(&keys, &relay.0), HANDSHAKE_TIMEOUT)
        .await
        .map_err(|e| format!("XK: {e}"))?;
    Ok((tcp, t, keys))
}

/// The frame that opens relay stream `id` with a channel request for `dst`.
fn channel_request(id: u32, dst: &PublicKey) -> OutFrame {
    let mut control = vec![CONTROL_V1];
    control.extend_from_slice(dst.as_bytes());
    OutFrame::new(Repr::window_update(id, Flags::SYN, 0), control, Vec::new())
}

fn data_frame(id: u32, flags: Flags, data: Vec<u8>) -> OutFrame {
    OutFrame::new(Repr::data(id, flags, data.len() as u32), Vec::new(), data)
}

/// An end-to-end channel to `victim` through `relay`, from a fresh throwaway key: our relay
/// session is an ordinary library session (it answers the relay's pings), the channel stream
/// on it is never read. Returns what must be kept alive and the channel's frame writer (inner
/// mux frames, client side: odd stream ids).
async fn channel_to(
    ex: &Arc<Executor<'static>>,
    relay: &(PublicKey, String),
    victim: &PublicKey,
) -> Res<(
    Session,
    ChannelReader<futures_lite::io::ReadHalf<Stream>>,
    ChannelFrameWriter<futures_lite::io::WriteHalf<Stream>>,
)> {
    let (tcp, t, keys) = xk(relay).await?;
    let session = Session::new(
        ex,
        SealedReader::new(tcp.clone(), t.recv, session_max_data()),
        SealedWriter::new(tcp, t.send),
        Side::Client,
        session_config(),
    );
    let mut ctl = vec![CONTROL_V1];
    ctl.extend_from_slice(victim.as_bytes());
    let mut st = session.open_with(&ctl).await.map_err(e2s)?;
    let mut status = [0u8; 1];
    st.read_exact(&mut status)
        .await
        .map_err(|e| format!("relay status: {e}"))?;
    if status[0] != STATUS_OK {
        return Err(format!(
            "relay refused the channel: {}",
            skywire::dmsg::relay::status_text(status[0])
        ));
    }
    let (tt, _) = handshake_transport(&mut st, kk_initiator(&keys, victim), HANDSHAKE_TIMEOUT)
        .await
        .map_err(|e| format!("KK: {e}"))?;
    let (r, w) = Channel::from_parts(st, tt, *victim).split();
    Ok((session, r, ChannelFrameWriter::new(w)))
}

/// Runs `attack` over and over (a new throwaway identity each time) until dropped.
async fn repeat<F, Fut>(mut attack: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Res<()>>,
{
    loop {
        if let Err(e) = attack().await {
            say(&format!("down {e}"));
        }
        // A target that refuses at once must not turn this into a busy loop.
        Timer::after(Duration::from_millis(20)).await;
    }
}

/// Runs attack `kind` until the returned future is dropped.
pub async fn run(ex: Arc<Executor<'static>>, kind: Kind, p: Params) {
    let ready = Ready(AtomicBool::new(false));
    let ready = &ready;
    let p = &p;
    let ex = &ex;
    match kind {
        Kind::PingRelay => repeat(|| ping_relay(ready, p)).await,
        Kind::PingVisor => repeat(|| ping_visor(ready, ex, p)).await,
        Kind::StreamsRelay => repeat(|| relay_streams(ready, p, false)).await,
        Kind::TinyRelay => repeat(|| relay_streams(ready, p, true)).await,
        Kind::StreamsVisor => repeat(|| visor_streams(ready, ex, p, false)).await,
        Kind::TinyVisor => repeat(|| visor_streams(ready, ex, p, true)).await,
        Kind::ParkedTcp => repeat(|| parked_tcp(ready, ex, p)).await,
        Kind::Replay => replay(ready, ex, p).await,
    }
}

/// (a) Ping SYNs on a relay session, as fast as the relay takes them; never reads.
async fn ping_relay(ready: &Ready, p: &Params) -> Res<()> {
    let (tcp, t, _keys) = xk(&p.relay).await?;
    let mut w = SealedWriter::new(tcp, t.send);
    ready.up();
    let mut f = OutFrame::new(Repr::ping(Flags::SYN, 0), Vec::new(), Vec::new());
    for n in 0u32.. {
        f.header.length = n;
        w.write_frame(&f).await.map_err(e2s)?;
        count(1 << 20);
    }
    Err("ping ids exhausted".into())
}

/// (b) Ping SYNs on the inner mux of a channel to the visor; the channel is never read.
async fn ping_visor(ready: &Ready, ex: &Arc<Executor<'static>>, p: &Params) -> Res<()> {
    let victim = p.victim.ok_or("no visor to attack")?;
    let (_session, _r, mut w) = channel_to(ex, &p.relay, &victim).await?;
    ready.up();
    let mut f = OutFrame::new(Repr::ping(Flags::SYN, 0), Vec::new(), Vec::new());
    for n in 0u32.. {
        f.header.length = n;
        w.write_frame(&f).await.map_err(e2s)?;
        count(1 << 20);
    }
    Err("ping ids exhausted".into())
}

/// Writes `per_stream` data bytes on each of `ids`, round robin, in frames of `chunk` bytes
/// (the last one of a stream shorter), every byte `fill`.
async fn fill_streams<W: FrameWrite>(
    w: &mut W,
    ids: &[u32],
    per_stream: usize,
    chunk: usize,
    fill: u8,
) -> Res<()> {
    let mut left = vec![per_stream; ids.len()];
    let mut full = data_frame(0, Flags::NONE, vec![fill; chunk]);
    loop {
        let mut any = false;
        for (i, &id) in ids.iter().enumerate() {
            if left[i] == 0 {
                continue;
            }
            any = true;
            let n = left[i].min(chunk);
            left[i] -= n;
            if n == chunk {
                full.header.stream_id = id;
                w.write_frame(&full).await.map_err(e2s)?;
            } else {
                w.write_frame(&data_frame(id, Flags::NONE, vec![fill; n]))
                    .await
                    .map_err(e2s)?;
            }
            count(1024);
        }
        if !any {
            break;
        }
    }
    w.flush().await.map_err(e2s)
}

/// (c)/(d) against the relay: a sink session that never reads (a second throwaway key), and a
/// session that asks for `streams` channels to it and fills each with a window of data. With
/// 64 KiB frames each stream is opened and filled before the next (a burst of SYNs would
/// mostly be refused by the accept backlog, which is not the point here); with 1-byte frames
/// (`tiny`) all are opened, then filled round robin. Then it holds everything open.
async fn relay_streams(ready: &Ready, p: &Params, tiny: bool) -> Res<()> {
    let (sink_tcp, _sink_t, sink_keys) = xk(&p.relay).await?;
    // Let the relay register the sink's session (it does so right after the handshake).
    Timer::after(Duration::from_millis(100)).await;
    let (tcp, t, _keys) = xk(&p.relay).await?;
    let mut w = SealedWriter::new(tcp.clone(), t.send);
    ready.up();
    let ids: Vec<u32> = (0..p.streams as u32).map(|i| 2 * i + 1).collect();
    let open = |id| channel_request(id, sink_keys.public());
    if tiny {
        for &id in &ids {
            w.write_frame(&open(id)).await.map_err(e2s)?;
        }
        w.flush().await.map_err(e2s)?;
        fill_streams(&mut w, &ids, WINDOW, 1, 0x5a).await?;
    } else {
        for &id in &ids {
            w.write_frame(&open(id)).await.map_err(e2s)?;
            fill_streams(&mut w, &[id], WINDOW, 64 * 1024, 0x5a).await?;
        }
    }
    report_sent();
    // Hold both sessions: whatever the relay kept, it keeps.
    let _hold = (sink_tcp, tcp);
    future::pending::<Res<()>>().await
}

/// The frame that opens inner stream `id` to `port`: a data frame with SYN carrying the
/// stream header `dst_port ‖ src_port` (`docs/protocol.md` §7).
fn port_open(id: u32, port: u16) -> OutFrame {
    let src = 49152 + ((id / 2) as u16 % 16384);
    let mut hdr = port.to_be_bytes().to_vec();
    hdr.extend_from_slice(&src.to_be_bytes());
    data_frame(id, Flags::SYN, hdr)
}

/// (c)/(d) against a visor: inner streams to its dmsgctrl port, each filled with a window of
/// ping bytes (which dmsgctrl answers with pongs nobody reads). With 16 KiB frames each stream
/// is opened and filled before the next; with 1-byte frames (`tiny`) all are opened (paced,
/// so that the port's accept backlog of 64 keeps up), then filled round robin. Then it holds
/// the channel open.
async fn visor_streams(
    ready: &Ready,
    ex: &Arc<Executor<'static>>,
    p: &Params,
    tiny: bool,
) -> Res<()> {
    let victim = p.victim.ok_or("no visor to attack")?;
    let (_session, _r, mut w) = channel_to(ex, &p.relay, &victim).await?;
    ready.up();
    let ids: Vec<u32> = (0..p.streams as u32).map(|i| 2 * i + 1).collect();
    if tiny {
        for &id in &ids {
            w.write_frame(&port_open(id, DMSGCTRL_PORT))
                .await
                .map_err(e2s)?;
            w.flush().await.map_err(e2s)?;
            Timer::after(Duration::from_millis(2)).await;
        }
        fill_streams(&mut w, &ids, WINDOW - 4, 1, DMSGCTRL_PING).await?;
    } else {
        for &id in &ids {
            w.write_frame(&port_open(id, DMSGCTRL_PORT))
                .await
                .map_err(e2s)?;
            fill_streams(&mut w, &[id], WINDOW - 4, 16 * 1024, DMSGCTRL_PING).await?;
        }
    }
    report_sent();
    future::pending::<Res<()>>().await
}

/// (e) A stranger (fresh key, on no whitelist) connects to a TCP-mode pty host and opens
/// `streams` streams on the one connection, each with the pty port header and a window of data
/// in 16 KiB frames. It reads its socket only to notice when the host ends the connection,
/// then comes back with a new key.
async fn parked_tcp(ready: &Ready, ex: &Arc<Executor<'static>>, p: &Params) -> Res<()> {
    let (host_pk, addr) = p.host.clone().ok_or("no TCP host to attack")?;
    let keys = Keypair::generate().map_err(e2s)?;
    let tcp = TcpStream::connect(addr.as_str()).await.map_err(e2s)?;
    let _ = tcp.set_nodelay(true);
    let ch = Channel::handshake(tcp, xk_initiator(&keys, &host_pk), HANDSHAKE_TIMEOUT)
        .await
        .map_err(|e| format!("XK: {e}"))?;
    let (mut r, w) = ch.split();
    let mut w = ChannelFrameWriter::new(w);
    ready.up();
    let ended = ex.spawn(async move {
        loop {
            if let Err(e) = r.recv().await {
                return e.to_string();
            }
        }
    });
    let work = async {
        let ids: Vec<u32> = (0..p.streams as u32).map(|i| 2 * i + 1).collect();
        for &id in &ids {
            w.write_frame(&port_open(id, PTY_PORT)).await.map_err(e2s)?;
        }
        w.flush().await.map_err(e2s)?;
        fill_streams(&mut w, &ids, WINDOW - 4, 16 * 1024, 0x5a).await?;
        report_sent();
        future::pending::<Res<()>>().await
    };
    future::or(work, async {
        Err(format!("host ended it: {}", ended.await))
    })
    .await
}

/// (f) One valid XK message 1 (captured once) sent again and again from `conns` concurrent
/// connections: the relay answers each with message 2 (two X25519 operations and a key
/// generation), the attacker computes nothing. After message 2 it sends a message 3 of the
/// wrong length, so the relay refuses at once and closes first.
async fn replay(ready: &Ready, ex: &Arc<Executor<'static>>, p: &Params) {
    let keys = Keypair::generate().expect("random key");
    let mut hs = xk_initiator(&keys, &p.relay.0);
    let mut msg1 = vec![0u8; 2 + 256];
    let n = hs.write_message(&mut msg1[2..]).expect("XK message 1");
    msg1.truncate(2 + n);
    msg1[..2].copy_from_slice(&(n as u16).to_be_bytes());
    let msg1: Arc<[u8]> = msg1.into();
    let tried = Arc::new(AtomicU64::new(0));
    ready.up();
    let mut tasks = Vec::new();
    for _ in 0..p.conns.max(1) {
        let (msg1, tried) = (msg1.clone(), tried.clone());
        let (addr, max) = (p.relay.1.clone(), p.max_replays);
        tasks.push(ex.spawn(async move {
            while tried.fetch_add(1, Ordering::Relaxed) < max {
                let once = async {
                    let mut tcp = TcpStream::connect(addr.as_str()).await.ok()?;
                    tcp.write_all(&msg1).await.ok()?;
                    let mut msg2 = [0u8; 2 + 48];
                    tcp.read_exact(&mut msg2).await.ok()?;
                    count(256);
                    // A message 3 announced as 1 byte long: refused before any cryptography.
                    let _ = tcp.write_all(&[0, 1, 0]).await;
                    let mut b = [0u8; 1];
                    let _ = tcp.read(&mut b).await;
                    Some(())
                };
                let _ = future::or(once, async {
                    Timer::after(Duration::from_secs(2)).await;
                    None
                })
                .await;
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    report_sent();
    say("down replay budget spent");
    future::pending::<()>().await;
}
