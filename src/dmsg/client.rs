//! The dmsg client (DESIGN.md §3.4–3.5): keeps sessions to relays, publishes where it can be
//! reached, and gives end-to-end encrypted streams addressed by (pk, port).
//!
//! Layers, from the wire up:
//!
//! 1. a **session** to each relay: TCP → Noise XK (we are the initiator and know the relay's
//!    PK) → sealed mux session;
//! 2. a **channel** per peer: a stream through a relay both are connected to (requested with
//!    the control payload `0x01 ‖ peer pk`, answered by one relay status byte), then Noise KK
//!    end to end, then an inner mux session over the channel's frames. The relay splices the
//!    channel's ciphertext and sees nothing else;
//! 3. **streams** inside the channel, one per (port, port) conversation: the dialler sends
//!    `dst_port u16 ‖ src_port u16`, the listener answers one status byte ([`PortStatus`]:
//!    accepted, or why not); both are `wire::dmsg` views. Arrived streams go to the client's
//!    [`PortSink`]: its own port table ([`DmsgClient::listen`]), or the visor's services
//!    registry ([`DmsgClient::set_port_sink`]). A second stream to the same peer reuses the
//!    channel: no public-key operation.
//!
//! A maintenance task keeps `sessions` relay sessions up (from the configured relays, then
//! discovery), reconnects with backoff when one dies, and re-publishes the client entry
//! whenever the set changes and every `publish_interval`. Joining does not trust discovery's
//! relay entries (anyone can sign one, with any address and capacity): candidates come in the
//! [`RelayBook`] order (relays that answered before first, the rest at random), attempts
//! start staggered, up to `join_parallel` at once, and each must connect and finish its
//! handshake within `relay_timeout`, so relays that accept and never answer cost a few
//! seconds, not a join.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_executor::Executor;
use async_io::Timer;
use async_net::TcpStream;
use futures_lite::future::{self, poll_fn};
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::disc_client::DiscClient;
use super::entry::{Entry, Kind};
use super::relay::{session_config, session_max_data, unix_millis};
use super::relay_book::RelayBook;
use crate::crypto::channel::{Channel, HANDSHAKE_TIMEOUT, handshake_transport};
use crate::crypto::noise::{kk_initiator, kk_responder, xk_initiator};
use crate::crypto::{Keypair, PublicKey};
use crate::mux::chunked::channel_over_stream;
use crate::mux::codec::{FrameRead, InFrame, SealedReader, SealedWriter};
use crate::mux::{Config, MuxError, Session, Side, Stream};
use crate::spawn::Spawn;
use crate::wire::dmsg::{
    PORT_HEADER_LEN, PortHeader, PortRepr, PortStatus, RelayStatus, RequestRepr,
};

pub use crate::accept::EPHEMERAL_START;
use crate::accept::{AcceptQueue, Ephemeral, PortSink, PortTable, Refusal};

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Relay sessions to keep.
    pub sessions: usize,
    /// Relays to use first (`pk`, `host:port`), before discovery's list.
    pub relays: Vec<(PublicKey, String)>,
    /// How often the client entry is re-published.
    pub publish_interval: Duration,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
    /// How long a dial may take.
    pub dial_timeout: Duration,
    /// Streams waiting in one listener's backlog.
    pub listen_backlog: usize,
    /// How long connecting to a relay and its handshake may take together.
    pub relay_timeout: Duration,
    /// Relay connection attempts in flight at once while joining (beyond those needed).
    pub join_parallel: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            sessions: 1,
            relays: Vec::new(),
            publish_interval: Duration::from_secs(60),
            max_backoff: Duration::from_secs(30),
            dial_timeout: Duration::from_secs(10),
            listen_backlog: 64,
            relay_timeout: Duration::from_secs(3),
            join_parallel: 3,
        }
    }
}

/// Why a dmsg operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DmsgError {
    /// Discovery has no entry for the peer.
    PeerUnknown(PublicKey),
    /// No relay both sides can use (detail).
    NoCommonRelay(PublicKey, String),
    /// The peer is reachable but nothing listens on that port.
    NoListener(PublicKey, u16),
    /// The peer's listener is full.
    Busy(PublicKey, u16),
    /// The operation did not finish in time.
    Timeout(Duration),
    /// The port is already being listened on.
    PortInUse(u16),
    /// The listener was closed.
    ListenerClosed,
    /// Something else failed (detail).
    Other(String),
}

impl fmt::Display for DmsgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmsgError::PeerUnknown(pk) => {
                write!(
                    f,
                    "peer {pk} is unknown to discovery (not online, or wrong pk)"
                )
            }
            DmsgError::NoCommonRelay(pk, d) => write!(
                f,
                "no relay reaches peer {pk} ({d}); check that it is online and uses a relay or \
                 discovery this side also uses"
            ),
            DmsgError::NoListener(pk, p) => write!(f, "peer {pk} has no listener on port {p}"),
            DmsgError::Busy(pk, p) => write!(f, "peer {pk} port {p} is busy; try again"),
            DmsgError::Timeout(d) => write!(f, "timed out after {} s", d.as_secs()),
            DmsgError::PortInUse(p) => write!(f, "port {p} is already in use"),
            DmsgError::ListenerClosed => f.write_str("listener closed"),
            DmsgError::Other(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for DmsgError {}

/// A stream to or from a peer.
#[derive(Debug)]
pub struct DmsgStream {
    stream: Stream,
    /// The channel the stream runs in.
    channel: PeerChannel,
    /// The peer.
    pub remote: PublicKey,
    /// The peer's port.
    pub remote_port: u16,
    /// Our port.
    pub local_port: u16,
}

impl DmsgStream {
    /// Resets the stream (RST): the peer's reads and writes on it fail, so it knows that we
    /// stopped before the end.
    pub fn reset(self) {
        self.stream.reset();
    }

    /// True once the end-to-end channel this stream runs in has ended because the peer closed
    /// it cleanly (its end of the channel reached us after everything it sent before). A
    /// channel the relay reset, or that failed, or that is still open, gives false: after our
    /// own graceful close ([`DmsgClient::shutdown`]) this says whether the peer's side read
    /// what we sent up to the close and answered it.
    pub fn channel_closed_by_peer(&self) -> bool {
        self.channel.session.failure().is_some()
            && self.channel.closed_by_peer.load(Ordering::Acquire)
    }

    /// Why the channel ended, if it has.
    pub fn channel_failure(&self) -> Option<String> {
        self.channel.session.failure().map(|e| e.to_string())
    }
}

/// An end-to-end channel with a peer: its inner mux session, and whether the peer closed it
/// cleanly.
#[derive(Debug, Clone)]
struct PeerChannel {
    session: Session,
    closed_by_peer: Arc<std::sync::atomic::AtomicBool>,
}

/// Notes a clean end of the frames it reads (the peer closed the channel between frames).
struct EofWatch<R> {
    inner: R,
    clean_eof: Arc<std::sync::atomic::AtomicBool>,
}

impl<R: FrameRead> FrameRead for EofWatch<R> {
    async fn read_frame(&mut self) -> Result<Option<InFrame<'_>>, MuxError> {
        let r = self.inner.read_frame().await;
        if matches!(r, Ok(None)) {
            self.clean_eof.store(true, Ordering::Release);
        }
        r
    }
}

impl AsyncRead for DmsgStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for DmsgStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}

/// Streams arriving on one port.
#[derive(Debug)]
pub struct Listener {
    port: u16,
    queue: Arc<AcceptQueue<DmsgStream>>,
    client: Arc<Inner>,
}

impl Listener {
    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next stream.
    pub async fn accept(&self) -> Result<DmsgStream, DmsgError> {
        self.queue.accept().await.ok_or(DmsgError::ListenerClosed)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.client.listeners.unbind(self.port, &self.queue);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug)]
struct RelaySession {
    session: Session,
    addr: String,
}

#[derive(Debug)]
struct Inner {
    keys: Keypair,
    disc: Option<DiscClient>,
    ex: Arc<Executor<'static>>,
    cfg: ClientConfig,
    relays: Mutex<HashMap<PublicKey, RelaySession>>,
    peers: Mutex<HashMap<PublicKey, PeerChannel>>,
    /// The ports [`DmsgClient::listen`] binds.
    listeners: Arc<PortTable<DmsgStream>>,
    /// Where arrived streams go: `listeners`, or a table set with
    /// [`DmsgClient::set_port_sink`].
    sink: Mutex<Arc<dyn PortSink<DmsgStream>>>,
    /// Whether `sink` was replaced (then `listen` is not ours to serve).
    external_sink: std::sync::atomic::AtomicBool,
    ephemeral: Ephemeral,
    /// How each relay's last attempt went and when it may be tried again.
    book: Mutex<RelayBook>,
    /// Relays the maintenance task is connecting to now, with when each attempt started.
    joining: Mutex<HashMap<PublicKey, Instant>>,
    /// Wakes the maintenance task early (an attempt finished).
    wake: Notify,
    /// Relays named in the last entry discovery accepted.
    published: Mutex<Vec<PublicKey>>,
    /// Peers a channel is being set up to, with the dials waiting for it: concurrent dials
    /// to one peer share one channel (one handshake).
    connecting: Mutex<HashMap<PublicKey, Vec<Waker>>>,
    /// Set by [`DmsgClient::shutdown`]: no more reconnecting.
    stopping: std::sync::atomic::AtomicBool,
    /// What the entry says besides relays: stcp addresses and live skynet links
    /// ([`DmsgClient::set_transports`]).
    advert: Mutex<Advert>,
}

/// The transport part of our entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Advert {
    transports: Vec<String>,
    links: Vec<(PublicKey, u8)>,
}

/// Least time between two publishes caused by [`DmsgClient::set_transports`].
pub const ADVERT_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Ends a channel setup: wakes the dials waiting for it, also when the setup is cancelled.
struct Connecting {
    inner: Arc<Inner>,
    pk: PublicKey,
}

impl Drop for Connecting {
    fn drop(&mut self) {
        if let Some(waiters) = lock(&self.inner.connecting).remove(&self.pk) {
            for w in waiters {
                w.wake();
            }
        }
    }
}

/// A dmsg client. Cloning gives another handle.
#[derive(Debug, Clone)]
pub struct DmsgClient {
    inner: Arc<Inner>,
}

impl DmsgClient {
    /// Starts a client with identity `keys`: its maintenance task runs on `ex`. `disc` is the
    /// discovery service (optional when `cfg.relays` names relays).
    pub fn start(
        ex: Arc<Executor<'static>>,
        keys: Keypair,
        disc: Option<DiscClient>,
        cfg: ClientConfig,
    ) -> DmsgClient {
        let listeners = Arc::new(PortTable::new(cfg.listen_backlog));
        let inner = Arc::new(Inner {
            keys,
            disc,
            ex: ex.clone(),
            cfg,
            relays: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            listeners: listeners.clone(),
            sink: Mutex::new(listeners),
            external_sink: std::sync::atomic::AtomicBool::new(false),
            ephemeral: Ephemeral::new(),
            book: Mutex::new(RelayBook::new()),
            joining: Mutex::new(HashMap::new()),
            wake: Notify::default(),
            published: Mutex::new(Vec::new()),
            connecting: Mutex::new(HashMap::new()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            advert: Mutex::new(Advert::default()),
        });
        ex.spawn_boxed(maintain(Arc::downgrade(&inner))).detach();
        DmsgClient { inner }
    }

    /// Our PK.
    pub fn pk(&self) -> &PublicKey {
        self.inner.keys.public()
    }

    /// The relays we have sessions with.
    pub fn relays(&self) -> Vec<PublicKey> {
        lock(&self.inner.relays).keys().copied().collect()
    }

    /// Waits until at least one relay session is up and (with discovery) our entry naming it
    /// is published, so peers can reach us; fails after `timeout` saying what is missing.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), DmsgError> {
        let t0 = Instant::now();
        loop {
            let up = !lock(&self.inner.relays).is_empty();
            let published = self.inner.disc.is_none() || !lock(&self.inner.published).is_empty();
            if up && published {
                return Ok(());
            }
            if t0.elapsed() > timeout {
                let what = if !up {
                    "no relay session came up (is a relay running and in discovery? see --disc / --relay)"
                } else {
                    "could not publish our entry to discovery"
                };
                return Err(DmsgError::Other(format!(
                    "not ready after {} s: {what}",
                    timeout.as_secs()
                )));
            }
            Timer::after(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most `timeout`) until everything written on every channel and relay session
    /// has reached the network: call before the process exits.
    pub async fn flush(&self, timeout: Duration) {
        let peers: Vec<Session> = lock(&self.inner.peers)
            .values()
            .map(|c| c.session.clone())
            .collect();
        let relays: Vec<Session> = lock(&self.inner.relays)
            .values()
            .map(|r| r.session.clone())
            .collect();
        let work = async {
            for s in peers {
                s.flush().await;
            }
            for s in relays {
                s.flush().await;
            }
        };
        future::or(work, async {
            Timer::after(timeout).await;
        })
        .await;
    }

    /// Flushes, then ends every channel and relay session gracefully (go-away, our half
    /// closed, the peer's close awaited), all within `timeout`. Call before the process
    /// exits: a plain exit can make the kernel reset a relay connection, and the relay then
    /// loses what it had received from us but not yet forwarded.
    pub async fn shutdown(&self, timeout: Duration) {
        let t0 = Instant::now();
        self.inner.stopping.store(true, Ordering::Relaxed);
        self.flush(timeout).await;
        let left = timeout.saturating_sub(t0.elapsed());
        let peers: Vec<Session> = lock(&self.inner.peers)
            .drain()
            .map(|(_, c)| c.session)
            .collect();
        let relays: Vec<Session> = lock(&self.inner.relays)
            .drain()
            .map(|(_, r)| r.session)
            .collect();
        let work = async {
            for s in &peers {
                s.shutdown(left).await;
            }
            for s in &relays {
                s.shutdown(left).await;
            }
        };
        future::or(work, async {
            Timer::after(left).await;
        })
        .await;
    }

    /// Listens on `port` (in the client's own port table; see [`set_port_sink`]).
    ///
    /// [`set_port_sink`]: DmsgClient::set_port_sink
    pub fn listen(&self, port: u16) -> Result<Listener, DmsgError> {
        if self.inner.external_sink.load(Ordering::Acquire) {
            return Err(DmsgError::Other(format!(
                "cannot listen on port {port}: this client's ports are served by another table"
            )));
        }
        let queue = self
            .inner
            .listeners
            .bind(port)
            .ok_or(DmsgError::PortInUse(port))?;
        Ok(Listener {
            port,
            queue,
            client: self.inner.clone(),
        })
    }

    /// Hands every stream that arrives from now on to `sink` (the visor's services
    /// registry) instead of the client's own port table; [`listen`](Self::listen) then
    /// fails.
    pub fn set_port_sink(&self, sink: Arc<dyn PortSink<DmsgStream>>) {
        self.inner.external_sink.store(true, Ordering::Release);
        *lock(&self.inner.sink) = sink;
    }

    /// Sets the stcp addresses (`host:port`) and live skynet links (peer, type byte: see
    /// [`super::entry::LINK_STCP`]) our entry publishes. A change is published within about
    /// a second (at most one such publish per [`ADVERT_MIN_INTERVAL`]); lists beyond the
    /// entry's limits are cut to them.
    pub fn set_transports(&self, mut transports: Vec<String>, mut links: Vec<(PublicKey, u8)>) {
        transports.retain(|a| super::entry::check_addr(a).is_ok());
        transports.truncate(super::entry::MAX_TRANSPORTS);
        crate::sort::sort(&mut links);
        links.dedup();
        links.truncate(super::entry::MAX_LINKS);
        let new = Advert { transports, links };
        let mut a = lock(&self.inner.advert);
        if *a != new {
            *a = new;
            drop(a);
            self.inner.wake.notify();
        }
    }

    /// The discovery service this client publishes to, if any.
    pub fn discovery(&self) -> Option<&DiscClient> {
        self.inner.disc.as_ref()
    }

    /// Opens a stream to `pk`:`port`.
    pub async fn dial(&self, pk: &PublicKey, port: u16) -> Result<DmsgStream, DmsgError> {
        self.dial_first(pk, port, &[]).await
    }

    /// [`DmsgClient::dial`], with `first` sent right behind the port header, before the
    /// listener's answer (in the same frame): the opening bytes of a protocol that does not
    /// wait for the answer save a round trip. A refused dial discards them.
    pub async fn dial_first(
        &self,
        pk: &PublicKey,
        port: u16,
        first: &[u8],
    ) -> Result<DmsgStream, DmsgError> {
        let timeout = self.inner.cfg.dial_timeout;
        let inner = self.inner.clone();
        let pk = *pk;
        future::or(
            async move { inner.dial(pk, port, first).await },
            async move {
                Timer::after(timeout).await;
                Err(DmsgError::Timeout(timeout))
            },
        )
        .await
    }
}

impl Inner {
    fn ephemeral_port(&self) -> u16 {
        let sink = lock(&self.sink).clone();
        self.ephemeral.next(|p| sink.serves(p))
    }

    async fn dial(
        self: Arc<Self>,
        pk: PublicKey,
        port: u16,
        first: &[u8],
    ) -> Result<DmsgStream, DmsgError> {
        if pk == *self.keys.public() {
            return Err(DmsgError::Other("cannot dial our own pk".into()));
        }
        let channel = self.clone().channel_to(pk).await?;
        let local_port = self.ephemeral_port();
        let mut st = channel
            .session
            .open()
            .await
            .map_err(|e| DmsgError::Other(format!("channel to {pk}: {e}")))?;
        let hdr = PortRepr {
            dst_port: port,
            src_port: local_port,
        };
        let io = |e: io::Error| DmsgError::Other(format!("channel to {pk}: {e}"));
        st.write_all(&hdr.with_first(first)).await.map_err(io)?;
        let mut status = [0u8; 1];
        st.read_exact(&mut status).await.map_err(io)?;
        match PortStatus::from_byte(status[0]) {
            PortStatus::Ok => Ok(DmsgStream {
                stream: st,
                channel,
                remote: pk,
                remote_port: port,
                local_port,
            }),
            PortStatus::Closed => Err(DmsgError::NoListener(pk, port)),
            PortStatus::Busy => Err(DmsgError::Busy(pk, port)),
            PortStatus::Unknown(s) => Err(DmsgError::Other(format!(
                "peer answered unknown status {s}"
            ))),
        }
    }

    /// The live channel to `pk`, or a new one through a relay we share. Concurrent calls for
    /// one peer wait for a single setup.
    async fn channel_to(self: Arc<Self>, pk: PublicKey) -> Result<PeerChannel, DmsgError> {
        loop {
            {
                let mut peers = lock(&self.peers);
                match peers.get(&pk) {
                    Some(c) if c.session.failure().is_none() => return Ok(c.clone()),
                    Some(_) => {
                        peers.remove(&pk);
                    }
                    None => {}
                }
            }
            let busy = match lock(&self.connecting).entry(pk) {
                std::collections::hash_map::Entry::Occupied(_) => true,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(Vec::new());
                    false
                }
            };
            if !busy {
                let _done = Connecting {
                    inner: self.clone(),
                    pk,
                };
                return self.clone().new_channel(pk).await;
            }
            // Another dial is setting the channel up: wait for it, then look again.
            poll_fn(|cx| match lock(&self.connecting).get_mut(&pk) {
                Some(w) => {
                    w.push(cx.waker().clone());
                    Poll::Pending
                }
                None => Poll::Ready(()),
            })
            .await;
        }
    }

    /// Sets up a new channel to `pk`.
    async fn new_channel(self: Arc<Self>, pk: PublicKey) -> Result<PeerChannel, DmsgError> {
        // Which relays reach the peer: its discovery entry, else every relay we are on.
        let mut candidates: Vec<PublicKey> = Vec::new();
        let mut detail = String::new();
        if let Some(disc) = &self.disc {
            match disc.entry(&pk).await {
                Ok(Some(Entry {
                    kind: Kind::Client { relays },
                    ..
                })) => candidates = relays,
                Ok(Some(_)) => {
                    return Err(DmsgError::Other(format!("{pk} is a relay, not a client")));
                }
                Ok(None) if lock(&self.relays).is_empty() => {
                    return Err(DmsgError::PeerUnknown(pk));
                }
                Ok(None) => detail = "discovery has no entry for it; ".into(),
                Err(e) => detail = format!("{e}; "),
            }
        }
        let ours: Vec<PublicKey> = lock(&self.relays).keys().copied().collect();
        if candidates.is_empty() {
            if self.disc.is_some() && detail.is_empty() {
                return Err(DmsgError::PeerUnknown(pk));
            }
            candidates = ours.clone();
        }
        // Shared relays first (a stable partition: no sort to link for it).
        let (mut shared, others): (Vec<PublicKey>, Vec<PublicKey>) =
            candidates.into_iter().partition(|r| ours.contains(r));
        shared.extend(others);
        let candidates = shared;
        for relay_pk in candidates {
            let session = match self.clone().relay_session(relay_pk).await {
                Ok(s) => s,
                Err(e) => {
                    detail.push_str(&format!("relay {relay_pk}: {e}; "));
                    continue;
                }
            };
            match self.clone().open_channel(&session, pk).await {
                Ok(ch) => return Ok(ch),
                Err(e) => detail.push_str(&format!("relay {relay_pk}: {e}; ")),
            }
        }
        if detail.is_empty() {
            detail = "we have no relay session".into();
        }
        Err(DmsgError::NoCommonRelay(
            pk,
            detail.trim_end_matches("; ").to_string(),
        ))
    }

    /// Our session with `relay`, connecting (via its discovery entry) if we have none.
    async fn relay_session(self: Arc<Self>, relay: PublicKey) -> Result<Session, String> {
        if let Some(r) = lock(&self.relays).get(&relay)
            && r.session.failure().is_none()
        {
            return Ok(r.session.clone());
        }
        let addr = match self.cfg.relays.iter().find(|(pk, _)| *pk == relay) {
            Some((_, a)) => a.clone(),
            None => {
                let disc = self.disc.as_ref().ok_or("unknown relay address")?;
                match disc.entry(&relay).await.map_err(|e| e.to_string())? {
                    Some(Entry {
                        kind: Kind::Relay { addr, .. },
                        ..
                    }) => addr,
                    _ => return Err("relay not in discovery".into()),
                }
            }
        };
        self.connect_relay(relay, addr).await
    }

    /// Connects to `relay` at `addr` for a dial (the peer is on it): a session, recorded in
    /// the relay book either way.
    async fn connect_relay(
        self: Arc<Self>,
        relay: PublicKey,
        addr: String,
    ) -> Result<Session, String> {
        match self.handshake_relay(relay, &addr).await {
            Ok(session) => {
                lock(&self.book).succeeded(relay, Instant::now());
                self.adopt_relay(relay, addr, session, false)
                    .ok_or_else(|| "client is shutting down".to_string())
            }
            Err(e) => {
                self.note_failure(relay, &e);
                Err(e)
            }
        }
    }

    /// TCP connection and XK handshake with `relay` at `addr`, both within `relay_timeout`.
    async fn handshake_relay(&self, relay: PublicKey, addr: &str) -> Result<Session, String> {
        let timeout = self.cfg.relay_timeout;
        let work = async {
            let mut tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let (t, _) = handshake_transport(
                &mut tcp,
                xk_initiator(&self.keys, &relay),
                timeout.min(HANDSHAKE_TIMEOUT),
            )
            .await
            .map_err(|e| format!("handshake with {addr}: {e}"))?;
            Ok::<_, String>(Session::new(
                &self.ex,
                SealedReader::new(tcp.clone(), t.recv, session_max_data()),
                SealedWriter::new(tcp, t.send),
                Side::Client,
                session_config(),
            ))
        };
        future::or(work, async {
            Timer::after(timeout).await;
            Err(format!(
                "{addr} did not connect and complete the handshake within {} s",
                tenths(timeout)
            ))
        })
        .await
    }

    /// Keeps `session` with `relay` and serves the channels it brings; closes it instead (and
    /// returns `None`) if the client is stopping, or if `only_if_needed` and the client
    /// already has the sessions it wants.
    fn adopt_relay(
        self: &Arc<Self>,
        relay: PublicKey,
        addr: String,
        session: Session,
        only_if_needed: bool,
    ) -> Option<Session> {
        {
            let mut relays = lock(&self.relays);
            let surplus = only_if_needed && relays.len() >= self.cfg.sessions;
            if self.stopping.load(Ordering::Relaxed) || surplus {
                drop(relays);
                session.close();
                return None;
            }
            relays.insert(
                relay,
                RelaySession {
                    session: session.clone(),
                    addr,
                },
            );
        }
        log::info!("dmsg: session with relay {relay} up");
        let me = self.clone();
        let s2 = session.clone();
        self.ex
            .spawn_boxed(async move {
                while let Ok(st) = s2.accept().await {
                    let me = me.clone();
                    me.ex.clone().spawn_boxed(me.incoming_channel(st)).detach();
                }
            })
            .detach();
        Some(session)
    }

    /// Records a failed attempt with `relay`; it is not tried again (by the maintenance task)
    /// before its backoff has passed.
    fn note_failure(&self, relay: PublicKey, e: &str) {
        let jitter = (random_u64() % 1000) as f64 / 1000.0;
        let wait = lock(&self.book).failed(relay, Instant::now(), self.cfg.max_backoff, jitter);
        log::warn!("dmsg: relay {relay}: {e}; retrying in {} s", tenths(wait));
    }

    /// Starts a background attempt to join `relay` at `addr` (maintenance).
    fn spawn_join(self: &Arc<Self>, relay: PublicKey, addr: String) {
        lock(&self.joining).insert(relay, Instant::now());
        let me = self.clone();
        self.ex
            .spawn_boxed(async move {
                let r = me.handshake_relay(relay, &addr).await;
                lock(&me.joining).remove(&relay);
                match r {
                    Ok(session) => {
                        lock(&me.book).succeeded(relay, Instant::now());
                        if me.adopt_relay(relay, addr, session, true).is_none() {
                            log::debug!("dmsg: relay {relay} answered but is not needed now");
                        }
                    }
                    Err(e) => me.note_failure(relay, &e),
                }
                me.wake.notify();
            })
            .detach();
    }

    /// Starts the join attempts due now, given the relays discovery lists: as many as
    /// sessions are missing, and one more each [`JOIN_STAGGER`] while attempts are in flight
    /// (up to `join_parallel` beyond those needed). Configured relays go first: others are
    /// tried only once every configured one is connected or waiting out a backoff.
    fn start_joins(self: &Arc<Self>, discovered: &[(PublicKey, String, u32)]) {
        let have: HashSet<PublicKey> = lock(&self.relays).keys().copied().collect();
        let need = self.cfg.sessions.saturating_sub(have.len());
        if need == 0 || self.stopping.load(Ordering::Relaxed) {
            return;
        }
        let joining: HashMap<PublicKey, Instant> = lock(&self.joining).clone();
        let in_flight = joining.len();
        let room = need + self.cfg.join_parallel.saturating_sub(1);
        let mut start = need.saturating_sub(in_flight);
        let newest = joining.values().max().copied();
        if start == 0 && in_flight < room && newest.is_none_or(|t| t.elapsed() >= JOIN_STAGGER) {
            start = 1;
        }
        if start == 0 {
            return;
        }
        let mut order = lock(&self.book).order(
            &self.cfg.relays,
            discovered.to_vec(),
            |pk| have.contains(pk) || joining.contains_key(pk),
            Instant::now(),
            random_u64,
        );
        // The relays we were told to use come first: while one of them is being tried, or
        // may be tried, nothing else is.
        let configured = |pk: &PublicKey| self.cfg.relays.iter().any(|(c, _)| c == pk);
        if joining.keys().any(configured) || order.iter().any(|(pk, _)| configured(pk)) {
            order.retain(|(pk, _)| configured(pk));
        }
        for (pk, addr) in order.into_iter().take(start) {
            self.spawn_join(pk, addr);
        }
    }

    async fn open_channel(
        self: Arc<Self>,
        relay: &Session,
        pk: PublicKey,
    ) -> Result<PeerChannel, String> {
        let ctl = RequestRepr::v1(*pk.as_bytes()).to_bytes();
        let mut st = relay.open_with(&ctl).await.map_err(|e| e.to_string())?;
        let mut status = [0u8; 1];
        st.read_exact(&mut status)
            .await
            .map_err(|e| format!("no answer from the relay: {e}"))?;
        let status = RelayStatus::from_byte(status[0]);
        if status != RelayStatus::Ok {
            return Err(status.text().to_string());
        }
        let ch = Channel::handshake(st, kk_initiator(&self.keys, &pk), HANDSHAKE_TIMEOUT)
            .await
            .map_err(|e| format!("end-to-end handshake: {e}"))?;
        Ok(self.adopt_channel(pk, ch, Side::Client))
    }

    /// A relay opened a channel to us: authenticate the caller with KK, then serve it.
    async fn incoming_channel(self: Arc<Self>, st: Stream) {
        let control = st.control();
        let src =
            RequestRepr::v1_pk(control.as_slice()).and_then(|b| PublicKey::from_bytes(&b).ok());
        let Some(src) = src else {
            log::debug!("dmsg: malformed channel request from a relay");
            return;
        };
        match Channel::handshake(st, kk_responder(&self.keys, &src), HANDSHAKE_TIMEOUT).await {
            Ok(ch) => {
                self.adopt_channel(src, ch, Side::Server);
            }
            Err(e) => log::info!("dmsg: channel from {src} failed its handshake: {e}"),
        }
    }

    /// Runs the inner mux over an established channel and serves its inbound streams.
    fn adopt_channel(
        self: Arc<Self>,
        pk: PublicKey,
        ch: Channel<Stream>,
        side: Side,
    ) -> PeerChannel {
        // Owned frames between the inner mux and the relay session (`mux::chunked`).
        let (r, w) = channel_over_stream(ch);
        // Streams opened inside a channel are accepted by our own loop right away, so the
        // backlog only absorbs bursts (a thousand dials at once). Whatever the peer opens,
        // the session's memory budget (`Config::max_session_bytes`) bounds what it holds.
        let cfg = Config {
            accept_backlog: 1024,
            max_streams: 2048,
            ..Config::default()
        };
        let closed_by_peer = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = EofWatch {
            inner: r,
            clean_eof: closed_by_peer.clone(),
        };
        let session = Session::new(&self.ex, reader, w, side, cfg);
        let channel = PeerChannel {
            session: session.clone(),
            closed_by_peer,
        };
        lock(&self.peers).insert(pk, channel.clone());
        log::debug!("dmsg: channel with {pk} up");
        let c2 = channel.clone();
        let me = self.clone();
        self.ex
            .spawn_boxed(async move {
                while let Ok(st) = c2.session.accept().await {
                    me.ex
                        .clone()
                        .spawn_boxed(me.clone().incoming_stream(pk, c2.clone(), st))
                        .detach();
                }
            })
            .detach();
        channel
    }

    async fn incoming_stream(self: Arc<Self>, pk: PublicKey, channel: PeerChannel, mut st: Stream) {
        let mut hdr = [0u8; PORT_HEADER_LEN];
        let read = future::or(async { st.read_exact(&mut hdr).await.is_ok() }, async {
            Timer::after(HANDSHAKE_TIMEOUT).await;
            false
        })
        .await;
        if !read {
            return;
        }
        let Ok(h) = PortHeader::new_checked(&hdr[..]).and_then(|h| PortRepr::parse(&h)) else {
            return;
        };
        let sink = lock(&self.sink).clone();
        let slot = match sink.reserve(h.dst_port) {
            Ok(slot) => slot,
            Err(why) => {
                let status = match why {
                    Refusal::Closed => PortStatus::Closed,
                    Refusal::Busy => PortStatus::Busy,
                };
                let _ = st.write_all(&[status.to_byte()]).await;
                let _ = st.close().await;
                return;
            }
        };
        if st.write_all(&[PortStatus::Ok.to_byte()]).await.is_err() {
            return;
        }
        slot.deliver(DmsgStream {
            stream: st,
            channel,
            remote: pk,
            remote_port: h.src_port,
            local_port: h.dst_port,
        });
    }

    /// Publishes our entry; false if discovery could not be reached or refused it.
    async fn publish(&self) -> bool {
        let Some(disc) = &self.disc else {
            return true;
        };
        let relays: Vec<PublicKey> = lock(&self.relays).keys().copied().collect();
        let now = super::disc::unix_now();
        let Advert { transports, links } = lock(&self.advert).clone();
        let entry = Entry::client_with_links(
            &self.keys,
            unix_millis(),
            now,
            relays.clone(),
            transports,
            links,
        );
        match entry {
            Ok(e) => match disc.put(&e).await {
                Ok(()) => {
                    log::debug!("dmsg: published entry with {} relays", relays.len());
                    *lock(&self.published) = relays;
                    true
                }
                Err(err) => {
                    log::warn!("dmsg: cannot publish to {}: {err}", disc.url());
                    false
                }
            },
            Err(err) => {
                log::error!("dmsg: cannot build our entry: {err}");
                false
            }
        }
    }
}

/// Keeps relay sessions up and the entry published, until the client is dropped.
async fn maintain(weak: std::sync::Weak<Inner>) {
    let mut last_set: Vec<PublicKey> = Vec::new();
    let mut last_advert = Advert::default();
    let mut last_publish: Option<Instant> = None;
    // After a failed publish: when to try again (with jitter, so that many clients refused
    // at once by a busy discovery do not all come back together).
    let mut retry_at: Option<Instant> = None;
    let mut failures: u32 = 0;
    // Discovery's relays (pk, address, advertised free sessions), refreshed at most every
    // DISC_REFRESH while sessions are missing.
    let mut discovered: Vec<(PublicKey, String, u32)> = Vec::new();
    let mut discovered_at: Option<Instant> = None;
    loop {
        let Some(me) = weak.upgrade() else {
            return;
        };
        if me.stopping.load(Ordering::Relaxed) {
            return;
        }
        // Forget dead sessions.
        lock(&me.relays).retain(|pk, r| {
            let alive = r.session.failure().is_none();
            if !alive {
                log::info!("dmsg: session with relay {pk} ({}) lost", r.addr);
            }
            alive
        });
        lock(&me.peers).retain(|_, c| c.session.failure().is_none());
        let have = lock(&me.relays).len();
        if have < me.cfg.sessions {
            let stale = discovered_at.is_none_or(|t| t.elapsed() >= DISC_REFRESH);
            if let Some(disc) = &me.disc
                && stale
            {
                match disc.relays().await {
                    Ok(list) => {
                        discovered = list
                            .into_iter()
                            .filter_map(|e| match e.kind {
                                Kind::Relay {
                                    addr,
                                    available_sessions,
                                } => Some((e.pk, addr, available_sessions)),
                                Kind::Client { .. } => None,
                            })
                            .collect();
                        discovered_at = Some(Instant::now());
                    }
                    Err(e) => log::debug!("dmsg: cannot list relays: {e}"),
                }
            }
            me.start_joins(&discovered);
        }
        let mut set: Vec<PublicKey> = lock(&me.relays).keys().copied().collect();
        crate::sort::sort(&mut set);
        let due = last_publish.is_none_or(|t| t.elapsed() >= me.cfg.publish_interval);
        let retry_now = retry_at.is_none_or(|t| Instant::now() >= t);
        // Nothing to say before the first session is up (an entry naming no relay reaches
        // nobody).
        let nothing = set.is_empty() && last_publish.is_none();
        let advert = lock(&me.advert).clone();
        let advert_due = advert != last_advert
            && last_publish.is_none_or(|t| t.elapsed() >= ADVERT_MIN_INTERVAL);
        if (set != last_set || due || advert_due) && retry_now && !nothing {
            if me.publish().await {
                last_set = set;
                last_advert = advert;
                last_publish = Some(Instant::now());
                retry_at = None;
                failures = 0;
            } else {
                failures = failures.saturating_add(1);
                let base = Duration::from_millis(500) * (1u32 << failures.min(6));
                let base = base.min(me.cfg.max_backoff);
                // Jitter of up to the base delay, from our key and the attempt count.
                let salt = u32::from(me.keys.public().as_bytes()[0])
                    .wrapping_mul(2654435761)
                    .wrapping_add(failures.wrapping_mul(40503));
                let jitter = base.mul_f64(f64::from(salt % 1000) / 1000.0);
                retry_at = Some(Instant::now() + base + jitter);
            }
        }
        // Sleep until the next tick, or until a join attempt ends.
        me.wake.wait(Duration::from_millis(500)).await;
        drop(me);
    }
}

/// How often the maintenance task asks discovery for relays while it needs sessions.
const DISC_REFRESH: Duration = Duration::from_secs(5);

/// While join attempts are in flight and none has answered, another starts this often.
pub const JOIN_STAGGER: Duration = Duration::from_millis(500);

/// A wake-up for one waiting task; a notification while nobody waits is kept for the next wait.
#[derive(Debug, Default)]
struct Notify {
    flag: std::sync::atomic::AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Notify {
    fn notify(&self) {
        self.flag.store(true, Ordering::Release);
        if let Some(w) = lock(&self.waker).take() {
            w.wake();
        }
    }

    /// Waits for a notification, at most `timeout`.
    async fn wait(&self, timeout: Duration) {
        let notified = poll_fn(|cx| {
            if self.flag.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            *lock(&self.waker) = Some(cx.waker().clone());
            if self.flag.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        future::or(notified, async {
            Timer::after(timeout).await;
        })
        .await;
    }
}

/// 64 random bits (for shuffles and jitter; not for keys).
fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        return t.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    u64::from_le_bytes(b)
}

/// Seconds with one decimal (truncated), without float formatting: `2.5`.
fn tenths(d: Duration) -> String {
    let ms = d.as_millis();
    format!("{}.{}", ms / 1000, ms % 1000 / 100)
}
