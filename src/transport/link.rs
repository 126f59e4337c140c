//! One live transport: its bounded send queue, its reader, writer and watchdog, and the
//! frame codec of each type (stcp: `wire::transport` frames; dmsg: plain routing packets on
//! the stream, which the dmsg channel seals).

use core::fmt;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::future::{self, poll_fn};
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::id::{TpId, TpType};
use crate::crypto::PublicKey;
use crate::crypto::channel::{FrameOpener, FrameSealer};
use crate::wire::route::{HEADER_LEN, Packet};
use crate::wire::transport::{
    PREFIX_LEN, SEALED_MAX, SEALED_MIN, TAG_LEN, frame_len, is_control, trailing_len,
};

/// Route payload type codes the transport itself answers on route id 0.
const T_KEEPALIVE: u8 = 2;
const T_PING: u8 = 4;
/// A link's RTT is measured again when it is older than this (`tp ls` shows it on both ends).
const RTT_REFRESH: Duration = Duration::from_secs(10);
const T_PONG: u8 = 5;
/// Payloads shorter than this are copied next to their sealed header (an iovec costs more).
const COPY_MAX: usize = 1024;
/// Slices handed to one vectored write at most.
const MAX_IOV: usize = 64;
/// What the writer's copy buffer keeps when the link is idle.
const IDLE_KEEP: usize = 512;
/// The reader's buffer.
const READ_BUF: usize = 2048;
/// The writer gives its copy buffer back after a write that left it larger than this.
const SHRINK_ABOVE: usize = 8 * 1024;

/// Why a packet was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The send queue holds its byte limit: drop the packet (and count it).
    Full,
    /// The transport is down.
    Closed,
    /// Not one whole routing packet, or too long for this transport.
    Malformed(String),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full => f.write_str("transport send queue full"),
            SendError::Closed => f.write_str("transport is down"),
            SendError::Malformed(why) => write!(f, "not a routing packet: {why}"),
        }
    }
}

impl std::error::Error for SendError {}

/// A transport's state as shown by `tp ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpInfo {
    /// The deterministic id.
    pub id: TpId,
    /// The local handle (0 for a persistent transport that is not up).
    pub handle: u32,
    /// The peer.
    pub peer: PublicKey,
    /// The type.
    pub kind: TpType,
    /// `up`, `down` or `connecting` (a persistent transport being redialled).
    pub state: &'static str,
    /// Whether this side dialled.
    pub initiator: bool,
    /// Whether it is redialled when it goes down.
    pub persistent: bool,
    /// Round-trip time of the last transport ping answered.
    pub rtt: Option<Duration>,
    /// Bytes received (whole frames).
    pub rx_bytes: u64,
    /// Bytes sent (whole frames).
    pub tx_bytes: u64,
    /// Time since it came up.
    pub age: Duration,
    /// Bytes its buffers hold allocated now (reader buffer, send queue, writer buffer).
    pub buffer_bytes: usize,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Vec<u8>>,
    bytes: usize,
    waker: Option<Waker>,
    closed: Option<String>,
}

/// Shared state of one link.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) handle: u32,
    pub(crate) id: TpId,
    pub(crate) peer: PublicKey,
    pub(crate) kind: TpType,
    pub(crate) initiator: bool,
    /// Who dialled (duplicate resolution: the link the smaller PK dialled wins).
    pub(crate) dialer: PublicKey,
    pub(crate) persistent: AtomicBool,
    created: Instant,
    cap: usize,
    q: Mutex<Queue>,
    rx: AtomicU64,
    tx: AtomicU64,
    /// Milliseconds since `created` of the last frame received / packet queued.
    last_rx_ms: AtomicU64,
    last_tx_ms: AtomicU64,
    /// Microseconds, 0 = none yet.
    rtt_us: AtomicU64,
    /// When (ms since created) `rtt_us` was last measured.
    rtt_at_ms: AtomicU64,
    /// Capacity of the writer's buffers.
    writer_bufs: AtomicUsize,
    /// Whether the writer is inside a write, and when it last got bytes out (ms since
    /// `created`): a peer that stops reading is found by this.
    writing: AtomicBool,
    last_progress_ms: AtomicU64,
    up: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A live transport. Cloning gives another handle to the same link.
#[derive(Debug, Clone)]
pub struct Transport {
    pub(crate) link: Arc<Link>,
}

/// Fields a new link is made of.
#[derive(Debug)]
pub(crate) struct LinkParams {
    pub handle: u32,
    pub local: PublicKey,
    pub peer: PublicKey,
    pub kind: TpType,
    pub initiator: bool,
    pub persistent: bool,
    pub queue_bytes: usize,
}

impl Transport {
    pub(crate) fn new(p: LinkParams) -> Transport {
        let dialer = if p.initiator { p.local } else { p.peer };
        Transport {
            link: Arc::new(Link {
                handle: p.handle,
                id: TpId::derive(&p.local, &p.peer, p.kind),
                peer: p.peer,
                kind: p.kind,
                initiator: p.initiator,
                dialer,
                persistent: AtomicBool::new(p.persistent),
                created: Instant::now(),
                cap: p.queue_bytes,
                q: Mutex::new(Queue::default()),
                rx: AtomicU64::new(0),
                tx: AtomicU64::new(0),
                last_rx_ms: AtomicU64::new(0),
                last_tx_ms: AtomicU64::new(0),
                rtt_us: AtomicU64::new(0),
                rtt_at_ms: AtomicU64::new(0),
                writer_bufs: AtomicUsize::new(0),
                writing: AtomicBool::new(false),
                last_progress_ms: AtomicU64::new(0),
                up: AtomicBool::new(true),
            }),
        }
    }

    /// The local handle the router keys its rules by.
    pub fn handle(&self) -> u32 {
        self.link.handle
    }

    /// The deterministic id.
    pub fn id(&self) -> TpId {
        self.link.id
    }

    /// The peer.
    pub fn peer(&self) -> PublicKey {
        self.link.peer
    }

    /// The type.
    pub fn kind(&self) -> TpType {
        self.link.kind
    }

    /// True until the link has gone down.
    pub fn is_up(&self) -> bool {
        self.link.up.load(Ordering::Acquire)
    }

    /// Queues one whole routing packet (header ‖ payload). Never blocks: a full queue
    /// (`queue_bytes` of packets not yet written) gives [`SendError::Full`].
    pub fn send(&self, packet: Vec<u8>) -> Result<(), SendError> {
        check_packet(&packet, self.link.kind)?;
        self.push(packet)
    }

    /// Queues `packet` within the queue's byte limit (also pongs and keep-alive pings: a peer
    /// flooding pings it never reads the answers of fills only our bounded queue). Everything
    /// but a pong counts as traffic for the keep-alive timer (so both ends ping, and both
    /// learn the RTT).
    fn push(&self, packet: Vec<u8>) -> Result<(), SendError> {
        let mut q = lock(&self.link.q);
        if q.closed.is_some() {
            return Err(SendError::Closed);
        }
        if q.bytes + packet.len() > self.link.cap {
            return Err(SendError::Full);
        }
        let pong = packet[0] == T_PONG && packet[1..5] == [0; 4];
        q.bytes += packet.len();
        q.items.push_back(packet);
        if !pong {
            self.link
                .last_tx_ms
                .store(self.link.ms_since_created(), Ordering::Relaxed);
        }
        if let Some(w) = q.waker.take() {
            w.wake();
        }
        Ok(())
    }

    /// Ends the link (the writer stops, the tasks end, the manager reports it down).
    pub(crate) fn close(&self, why: &str) {
        let mut q = lock(&self.link.q);
        if q.closed.is_none() {
            q.closed = Some(why.to_string());
        }
        if let Some(w) = q.waker.take() {
            w.wake();
        }
    }

    pub(crate) fn mark_down(&self) {
        self.link.up.store(false, Ordering::Release);
        self.close("down");
        let mut q = lock(&self.link.q);
        q.items = VecDeque::new();
        q.bytes = 0;
    }

    /// The state for `tp ls`.
    pub fn info(&self) -> TpInfo {
        let l = &self.link;
        let rtt = l.rtt_us.load(Ordering::Relaxed);
        let queue_bytes = {
            let q = lock(&l.q);
            q.items.capacity() * std::mem::size_of::<Vec<u8>>()
                + q.items.iter().map(Vec::capacity).sum::<usize>()
        };
        TpInfo {
            id: l.id,
            handle: l.handle,
            peer: l.peer,
            kind: l.kind,
            state: if self.is_up() { "up" } else { "down" },
            initiator: l.initiator,
            persistent: l.persistent.load(Ordering::Relaxed),
            rtt: (rtt > 0).then(|| Duration::from_micros(rtt)),
            rx_bytes: l.rx.load(Ordering::Relaxed),
            tx_bytes: l.tx.load(Ordering::Relaxed),
            age: l.created.elapsed(),
            buffer_bytes: READ_BUF + queue_bytes + l.writer_bufs.load(Ordering::Relaxed),
        }
    }

    /// Runs the link over `r`/`w` until it ends; returns why. Packets go to `deliver`.
    pub(crate) async fn run<R, W>(
        &self,
        codec: Codec,
        r: R,
        w: W,
        timing: Timing,
        deliver: &(dyn Fn(&Transport, Vec<u8>) + Send + Sync),
    ) -> String
    where
        R: AsyncRead + Unpin + Send,
        W: AsyncWrite + Unpin + Send,
    {
        let (opener, sealer) = match codec {
            Codec::Stcp { opener, sealer } => (Some(opener), Some(sealer)),
            Codec::Dmsg => (None, None),
        };
        // A small read buffer: a frame's prefix and sealed header come in one read with the
        // previous payload's tail; large payloads bypass it (read straight into the packet).
        let r = futures_lite::io::BufReader::with_capacity(READ_BUF, r);
        let reader = self.read_loop(r, opener, deliver);
        let writer = self.write_loop(w, sealer, timing);
        let watchdog = self.watchdog(timing);
        // Each polled only when woken: a packet queued for the writer costs no failed read.
        let why = crate::spawn::race(reader, crate::spawn::race(writer, watchdog)).await;
        self.close(&why);
        why
    }

    async fn read_loop<R: AsyncRead + Unpin>(
        &self,
        mut r: R,
        mut opener: Option<FrameOpener>,
        deliver: &(dyn Fn(&Transport, Vec<u8>) + Send + Sync),
    ) -> String {
        loop {
            let got = match opener.as_mut() {
                Some(o) => read_stcp(&mut r, o).await,
                None => read_plain(&mut r).await,
            };
            let (packet, wire_len) = match got {
                Ok(Some(p)) => p,
                Ok(None) => return "peer closed the transport".into(),
                Err(e) => return e,
            };
            let l = &self.link;
            l.rx.fetch_add(wire_len as u64, Ordering::Relaxed);
            l.last_rx_ms.store(l.ms_since_created(), Ordering::Relaxed);
            let view = Packet::new_unchecked(&packet[..]);
            if view.route_id() == 0 {
                match packet[0] {
                    T_KEEPALIVE => continue,
                    T_PING => {
                        let mut pong = packet;
                        pong[0] = T_PONG;
                        let _ = self.push(pong);
                        continue;
                    }
                    T_PONG => {
                        if let Ok(sent) = <[u8; 8]>::try_from(view.payload()) {
                            let now = l.created.elapsed().as_micros() as u64;
                            let rtt = now.saturating_sub(u64::from_be_bytes(sent)).max(1);
                            l.rtt_us.store(rtt, Ordering::Relaxed);
                            l.rtt_at_ms.store(l.ms_since_created(), Ordering::Relaxed);
                        }
                        continue;
                    }
                    _ => {}
                }
            }
            deliver(self, packet);
        }
    }

    async fn write_loop<W: AsyncWrite + Unpin>(
        &self,
        mut w: W,
        mut sealer: Option<FrameSealer>,
        timing: Timing,
    ) -> String {
        let mut batch: VecDeque<Vec<u8>> = VecDeque::new();
        let mut out = Out::default();
        // One timer for the writer's life, re-armed only when it fires: a timer made per
        // wait would be registered with the reactor (an eventfd write and an extra turn of
        // the poll loop) before nearly every packet of a quiet link.
        let mut idle = Timer::after(timing.idle);
        let mut last_batch = Instant::now();
        loop {
            let closed = self.take_batch(&mut batch, &mut idle).await;
            if let Some(why) = closed {
                return why;
            }
            if batch.is_empty() {
                let since = last_batch.elapsed();
                if since < timing.idle {
                    idle.set_after(timing.idle - since);
                    continue;
                }
                // Idle: give buffers back.
                batch.shrink_to(0);
                out.shrink();
                self.link
                    .writer_bufs
                    .store(out.capacity(), Ordering::Relaxed);
                idle.set_after(timing.idle);
                continue;
            }
            last_batch = Instant::now();
            let mut n = 0usize;
            for packet in batch.drain(..) {
                let res = match sealer.as_mut() {
                    Some(s) => out.push_stcp(s, packet),
                    None => {
                        out.push_plain(packet);
                        Ok(())
                    }
                };
                if let Err(e) = res {
                    return format!("cannot seal: {e}");
                }
                n += 1;
                if n >= MAX_IOV / 2 {
                    if let Err(e) = self.write_out(&mut out, &mut w).await {
                        return format!("write failed: {e}");
                    }
                    self.count_tx(&mut out);
                    n = 0;
                }
            }
            if let Err(e) = self.write_out(&mut out, &mut w).await {
                return format!("write failed: {e}");
            }
            self.count_tx(&mut out);
            // Keep a burst's buffers only while they are needed: data payloads are never
            // copied (only 25-byte sealed headers are), so this shrinks after bursts of
            // large control packets or many small packets.
            if out.capacity() > SHRINK_ABOVE {
                out.shrink();
            }
            if batch.capacity() > 64 {
                batch.shrink_to(16);
            }
            self.link
                .writer_bufs
                .store(out.capacity() + batch.capacity() * 24, Ordering::Relaxed);
        }
    }

    /// Writes the batch, noting progress for the watchdog.
    async fn write_out<W: AsyncWrite + Unpin>(&self, out: &mut Out, w: &mut W) -> io::Result<()> {
        let l = &self.link;
        l.last_progress_ms
            .store(l.ms_since_created(), Ordering::Relaxed);
        l.writing.store(true, Ordering::Release);
        let progress = || {
            l.last_progress_ms
                .store(l.ms_since_created(), Ordering::Relaxed)
        };
        let r = out.write_to(w, &progress).await;
        l.writing.store(false, Ordering::Release);
        r
    }

    fn count_tx(&self, out: &mut Out) {
        self.link
            .tx
            .fetch_add(out.written as u64, Ordering::Relaxed);
        out.written = 0;
    }

    /// Waits (until `idle` fires, leaving `batch` empty) for queued packets and moves them
    /// into `batch`; `Some(why)` once the link is closed.
    async fn take_batch(&self, batch: &mut VecDeque<Vec<u8>>, idle: &mut Timer) -> Option<String> {
        let ready = poll_fn(|cx| {
            let mut q = lock(&self.link.q);
            if let Some(why) = &q.closed {
                return Poll::Ready(Some(why.clone()));
            }
            if !q.items.is_empty() {
                std::mem::swap(&mut q.items, batch);
                q.bytes = 0;
                return Poll::Ready(None);
            }
            q.waker = Some(cx.waker().clone());
            Poll::Pending
        });
        future::or(ready, async {
            idle.await;
            None
        })
        .await
    }

    /// Sends a transport ping when nothing was queued for `timing.idle`, and ends the link
    /// when nothing arrived for `timing.dead`.
    async fn watchdog(&self, timing: Timing) -> String {
        let l = &self.link;
        let tick = (timing.idle / 4).max(Duration::from_millis(10));
        let mut last_ping = 0u64;
        loop {
            Timer::after(tick).await;
            let now = l.ms_since_created();
            let silent = now.saturating_sub(l.last_rx_ms.load(Ordering::Relaxed));
            if silent >= timing.dead.as_millis() as u64 {
                return format!("nothing received for {} ms", silent);
            }
            let stuck = now.saturating_sub(l.last_progress_ms.load(Ordering::Relaxed));
            if l.writing.load(Ordering::Acquire) && stuck >= timing.dead.as_millis() as u64 {
                return format!("peer stopped reading: nothing written for {stuck} ms");
            }
            let quiet = now.saturating_sub(l.last_tx_ms.load(Ordering::Relaxed));
            let idle = timing.idle.as_millis() as u64;
            // Our pongs keep us from going quiet when only the peer pings, so the RTT is
            // also refreshed on its own: measured, at most one ping per idle period, while
            // unknown or older than RTT_REFRESH.
            let rtt_age = if l.rtt_us.load(Ordering::Relaxed) == 0 {
                u64::MAX
            } else {
                now.saturating_sub(l.rtt_at_ms.load(Ordering::Relaxed))
            };
            let stale =
                rtt_age >= RTT_REFRESH.as_millis() as u64 && now.saturating_sub(last_ping) >= idle;
            if quiet >= idle || stale {
                last_ping = now;
                let stamp = l.created.elapsed().as_micros() as u64;
                let mut ping = vec![T_PING, 0, 0, 0, 0, 0, 8];
                ping.extend_from_slice(&stamp.to_be_bytes());
                let _ = self.push(ping);
            }
        }
    }
}

impl Link {
    fn ms_since_created(&self) -> u64 {
        self.created.elapsed().as_millis() as u64
    }
}

/// Keep-alive timing of a link.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// A transport ping goes out after this long without anything queued.
    pub idle: Duration,
    /// The link is dead after this long without anything received, or with a write that
    /// has not moved for as long.
    pub dead: Duration,
}

/// How a link's bytes are framed.
#[derive(Debug)]
pub(crate) enum Codec {
    /// `wire::transport` frames sealed with the link's Noise CipherStates.
    Stcp {
        opener: FrameOpener,
        sealer: FrameSealer,
    },
    /// Plain routing packets (the dmsg stream is already end-to-end sealed).
    Dmsg,
}

/// Checks that `p` is one whole routing packet this transport type can carry.
pub(crate) fn check_packet(p: &[u8], kind: TpType) -> Result<(), SendError> {
    let view = Packet::new_checked(p).map_err(|e| SendError::Malformed(e.to_string()))?;
    if view.total_len() != p.len() {
        return Err(SendError::Malformed(format!(
            "{} bytes after the packet",
            p.len() - view.total_len()
        )));
    }
    if kind == TpType::Stcp
        && is_control(p[0], view.route_id())
        && SEALED_MIN + usize::from(view.payload_len()) > SEALED_MAX
    {
        return Err(SendError::Malformed(format!(
            "a control packet carries at most {} payload bytes",
            SEALED_MAX - SEALED_MIN
        )));
    }
    Ok(())
}

/// Reads one stcp frame: `Ok(None)` at a clean end before it; the packet and its wire length.
async fn read_stcp<R: AsyncRead + Unpin>(
    r: &mut R,
    opener: &mut FrameOpener,
) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut head = [0u8; PREFIX_LEN + SEALED_MIN];
    if !read_first(r, &mut head[..PREFIX_LEN]).await? {
        return Ok(None);
    }
    let total = match frame_len(&head[..PREFIX_LEN]) {
        Ok(Some(t)) => t,
        Ok(None) => return Err("bad frame: no length prefix".into()),
        Err(e) => return Err(format!("bad frame: {e}")),
    };
    let sealed_len = total - PREFIX_LEN;
    if sealed_len == SEALED_MIN {
        read_all(r, &mut head[PREFIX_LEN..]).await?;
        opener
            .open_frame(&mut head)
            .map_err(|e| format!("bad frame: {e}"))?;
        let header = &head[PREFIX_LEN..PREFIX_LEN + HEADER_LEN];
        let trailing = trailing_len(header, sealed_len).map_err(|e| format!("bad frame: {e}"))?;
        // `vec![0; n]` is one zeroed allocation (calloc); `resize` is a byte loop in the
        // size-optimised build and cost a forwarding hop a quarter of its CPU (benches/skynet).
        let mut packet = vec![0u8; HEADER_LEN + trailing];
        packet[..HEADER_LEN].copy_from_slice(header);
        read_all(r, &mut packet[HEADER_LEN..]).await?;
        return Ok(Some((packet, total + trailing)));
    }
    // A control packet: all of it sealed.
    let mut buf = vec![0u8; total];
    buf[..PREFIX_LEN].copy_from_slice(&head[..PREFIX_LEN]);
    read_all(r, &mut buf[PREFIX_LEN..]).await?;
    opener
        .open_frame(&mut buf)
        .map_err(|e| format!("bad frame: {e}"))?;
    let trailing =
        trailing_len(&buf[PREFIX_LEN..], sealed_len).map_err(|e| format!("bad frame: {e}"))?;
    debug_assert_eq!(trailing, 0);
    buf.truncate(total - TAG_LEN);
    buf.drain(..PREFIX_LEN);
    Ok(Some((buf, total)))
}

/// Reads one plain routing packet (dmsg transport).
async fn read_plain<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut head = [0u8; HEADER_LEN];
    if !read_first(r, &mut head).await? {
        return Ok(None);
    }
    let total = crate::wire::route::packet_len(&head).unwrap_or(HEADER_LEN);
    let mut packet = vec![0u8; total.max(HEADER_LEN)];
    packet[..HEADER_LEN].copy_from_slice(&head);
    read_all(r, &mut packet[HEADER_LEN..]).await?;
    Ok(Some((packet, total)))
}

/// Fills `buf`; false at a clean end of stream before its first byte.
async fn read_first<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<bool, String> {
    loop {
        match r.read(&mut buf[..1]).await {
            Ok(0) => return Ok(false),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
    read_all(r, &mut buf[1..]).await?;
    Ok(true)
}

async fn read_all<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<(), String> {
    r.read_exact(buf).await.map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            "stream ended inside a frame".to_string()
        } else {
            format!("read failed: {e}")
        }
    })
}

/// One piece of a batch: a range of the copy buffer, or an owned packet's bytes from `skip`.
#[derive(Debug)]
enum Piece {
    Head(usize, usize),
    Owned(Vec<u8>, usize),
}

/// Sealed headers and small payloads copied into `head`, large payloads kept owned, written
/// in order with vectored writes.
#[derive(Debug, Default)]
pub(crate) struct Out {
    head: Vec<u8>,
    pieces: Vec<Piece>,
    written: usize,
}

impl Out {
    fn capacity(&self) -> usize {
        self.head.capacity() + self.pieces.capacity() * std::mem::size_of::<Piece>()
    }

    fn shrink(&mut self) {
        self.head.clear();
        self.head.shrink_to(IDLE_KEEP);
        self.pieces.shrink_to(0);
    }

    /// Notes `head[from..]` as the next piece (merged with a head piece just before it).
    fn head_piece(&mut self, from: usize) {
        let to = self.head.len();
        if let Some(Piece::Head(_, end)) = self.pieces.last_mut()
            && *end == from
        {
            *end = to;
            return;
        }
        self.pieces.push(Piece::Head(from, to));
    }

    fn push_plain(&mut self, packet: Vec<u8>) {
        if packet.len() < COPY_MAX {
            let from = self.head.len();
            self.head.extend_from_slice(&packet);
            self.head_piece(from);
        } else {
            self.pieces.push(Piece::Owned(packet, 0));
        }
    }

    pub(crate) fn push_stcp(
        &mut self,
        sealer: &mut FrameSealer,
        packet: Vec<u8>,
    ) -> Result<(), crate::crypto::channel::ChannelError> {
        let view = Packet::new_unchecked(&packet[..]);
        let control = is_control(packet[0], view.route_id());
        let from = self.head.len();
        self.head.extend_from_slice(&[0; PREFIX_LEN]);
        if control {
            self.head.extend_from_slice(&packet);
            sealer.seal_frame(&mut self.head, from)?;
            self.head_piece(from);
            return Ok(());
        }
        self.head.extend_from_slice(&packet[..HEADER_LEN]);
        sealer.seal_frame(&mut self.head, from)?;
        if packet.len() - HEADER_LEN < COPY_MAX {
            self.head.extend_from_slice(&packet[HEADER_LEN..]);
            self.head_piece(from);
        } else {
            self.head_piece(from);
            self.pieces.push(Piece::Owned(packet, HEADER_LEN));
        }
        Ok(())
    }

    /// Every queued byte in order (tests).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> Vec<u8> {
        (0..self.pieces.len())
            .flat_map(|i| self.piece(i).to_vec())
            .collect()
    }

    fn piece(&self, i: usize) -> &[u8] {
        match &self.pieces[i] {
            Piece::Head(a, b) => &self.head[*a..*b],
            Piece::Owned(v, skip) => &v[*skip..],
        }
    }

    /// Writes every piece and empties the batch (also on an error).
    async fn write_to<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        progress: &(dyn Fn() + Sync),
    ) -> io::Result<()> {
        let res = self.write_inner(w, progress).await;
        self.head.clear();
        self.pieces.clear();
        res
    }

    async fn write_inner<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        progress: &(dyn Fn() + Sync),
    ) -> io::Result<()> {
        let (mut i, mut off) = (0usize, 0usize);
        let count = self.pieces.len();
        while i < count {
            let mut iov: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
            let mut k = 0;
            let mut o = off;
            for j in i..count {
                if k == MAX_IOV {
                    break;
                }
                iov[k] = IoSlice::new(&self.piece(j)[o..]);
                k += 1;
                o = 0;
            }
            let iov = &iov[..k];
            let mut n = match poll_fn(|cx| Pin::new(&mut *w).poll_write_vectored(cx, iov)).await {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.written += n;
            progress();
            while n > 0 && i < count {
                let left = self.piece(i).len() - off;
                if n >= left {
                    n -= left;
                    i += 1;
                    off = 0;
                } else {
                    off += n;
                    n = 0;
                }
            }
            while i < count && self.piece(i).len() == off {
                i += 1;
                off = 0;
            }
        }
        poll_fn(|cx| Pin::new(&mut *w).poll_flush(cx)).await
    }
}
