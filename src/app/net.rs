//! The network an app is handed (DESIGN.md §5): listen on a port, dial (pk, port), our PK.
//! Three implementations make the three modes:
//! - the visor's network ([`VisorNet`](super::services::VisorNet)): the services registry (the
//!   visor's one port table, fed by its carriers) for listens, the visor's dmsg client for
//!   dials;
//! - [`DmsgNet`]: an app-owned dmsg client with its own keys (`--mode dmsg`);
//! - [`TcpNet`]: Noise XK over direct TCP (`--mode tcp`): one listening socket per app, dials
//!   by an address book of `pk@host:port`.
//!
//! A fourth, [`MemNet`](super::mem::MemNet) (tests only), connects nodes in one process.
//! [`Tagged`] wraps any of them so every connection carries the owning app's name.
//!
//! Failures are a [`NetError`]: its variant says what kind of failure it was (so an app maps
//! it to a SOCKS5 reply, an HTTP status or a retry without reading the text), its text is the
//! one line the user sees.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_executor::Executor;
use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::BoxFut;
pub use super::conn::Network;
use super::conn::{Conn, ConnTable, Direction};
use crate::accept::{AcceptQueue, Refusal};
use crate::crypto::channel::{Channel, HANDSHAKE_TIMEOUT};
use crate::crypto::noise::{xk_initiator, xk_responder};
use crate::crypto::{Keypair, PublicKey};
use crate::dmsg::client::{DmsgClient, DmsgError, Listener};
use crate::mux::codec::{ChannelFrameReader, ChannelFrameWriter};
use crate::mux::{Config, Session, Side};
use crate::spawn::Spawn;
use crate::wire::dmsg::{PORT_HEADER_LEN, PortHeader, PortRepr, PortStatus};

/// Why a network operation failed. The variant is the kind of failure; the text (its
/// `Display`) is one line for the user, naming the peer, port or address concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    /// The peer cannot be reached: unknown to discovery, no relay in common, no address for
    /// it, or it is ourselves where that is not allowed.
    NoRoute(String),
    /// The peer (or a node on the way) refused the stream; its reason is in the text.
    Refused(String),
    /// The peer is reachable but nothing listens on the port.
    NoListener(String),
    /// The listener's backlog is full: trying again later may work.
    Busy(String),
    /// The operation did not finish in time.
    Timeout(String),
    /// The listener or the network has been closed.
    Closed(String),
    /// The port cannot be served here: in use, reserved, or no address to listen on.
    CannotListen(String),
    /// The connection failed underneath: connect, handshake, reset, or a protocol error.
    Io(String),
}

impl NetError {
    /// The one line for the user.
    pub fn message(&self) -> &str {
        match self {
            NetError::NoRoute(m)
            | NetError::Refused(m)
            | NetError::NoListener(m)
            | NetError::Busy(m)
            | NetError::Timeout(m)
            | NetError::Closed(m)
            | NetError::CannotListen(m)
            | NetError::Io(m) => m,
        }
    }

    /// True if the same request may succeed later without anything changing here (busy,
    /// timed out).
    pub fn is_transient(&self) -> bool {
        matches!(self, NetError::Busy(_) | NetError::Timeout(_))
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for NetError {}

impl From<DmsgError> for NetError {
    fn from(e: DmsgError) -> Self {
        let m = e.to_string();
        match e {
            DmsgError::PeerUnknown(_) | DmsgError::NoCommonRelay(..) => NetError::NoRoute(m),
            DmsgError::NoListener(..) => NetError::NoListener(m),
            DmsgError::Busy(..) => NetError::Busy(m),
            DmsgError::Timeout(_) => NetError::Timeout(m),
            DmsgError::PortInUse(_) => NetError::CannotListen(m),
            DmsgError::ListenerClosed => NetError::Closed(m),
            DmsgError::Other(_) => NetError::Io(m),
        }
    }
}

/// A network an app can use.
pub trait Net: Send + Sync {
    /// Our PK on this network.
    fn local_pk(&self) -> PublicKey;
    /// Which network this is.
    fn network(&self) -> Network;
    /// Listens on overlay `port`.
    fn listen(&self, port: u16) -> Result<Box<dyn Listen>, NetError>;
    /// Opens a connection to `pk`:`port`.
    fn dial(&self, pk: PublicKey, port: u16) -> BoxFut<'_, Result<Conn, NetError>>;
    /// Opens a connection to `pk`:`port` over the network `via` asks for, where this `Net`
    /// has a choice (the visor's: dmsg or a skynet route); others have one way and take it.
    fn dial_via(&self, pk: PublicKey, port: u16, via: Via) -> BoxFut<'_, Result<Conn, NetError>> {
        let _ = via;
        self.dial(pk, port)
    }
    /// [`Net::dial_via`], with `first` sent right behind the port header, before the peer's
    /// answer: the opening bytes of a protocol that does not wait for the answer (skysocks'
    /// SOCKS5 greeting and request) leave with the open and save a round trip; a refused
    /// dial discards them. Networks that cannot carry them early write them once the dial
    /// is answered (this default; TCP mode, whose listener takes nothing but the header
    /// before the app has accepted the connection).
    fn dial_first(
        &self,
        pk: PublicKey,
        port: u16,
        via: Via,
        first: Vec<u8>,
    ) -> BoxFut<'_, Result<Conn, NetError>> {
        Box::pin(async move {
            let mut c = self.dial_via(pk, port, via).await?;
            c.write_all(&first)
                .await
                .map_err(|e| NetError::Io(format!("{pk}:{port}: {e}")))?;
            Ok(c)
        })
    }
    /// The `host:port` addresses of servers this network needs besides its open
    /// connections (dmsg's discovery; TCP mode's peers): what a VPN client keeps reachable
    /// outside its tunnel. Empty where there are none.
    fn underlay(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Which network a dial should take, where there is a choice ([`Net::dial_via`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The app's route policy (in the visor: a live route, else dmsg).
    Auto,
    /// dmsg.
    Dmsg,
    /// A skynet route (the app's policy if it names a route shape, else any route).
    Skynet,
}

impl Via {
    /// `auto`, `dmsg` or `skynet`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Via::Auto => "auto",
            Via::Dmsg => "dmsg",
            Via::Skynet => "skynet",
        }
    }
}

/// A bound port.
pub trait Listen: Send + Sync {
    /// The port.
    fn port(&self) -> u16;
    /// The next connection.
    fn accept(&self) -> BoxFut<'_, Result<Conn, NetError>>;
}

/// Any network with its connections tagged with `app` in `table`.
pub struct Tagged {
    inner: Arc<dyn Net>,
    app: &'static str,
    table: ConnTable,
}

impl fmt::Debug for Tagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tagged").field("app", &self.app).finish()
    }
}

impl Tagged {
    /// Wraps `inner` for `app`.
    pub fn wrap(inner: Arc<dyn Net>, app: &'static str, table: ConnTable) -> Arc<dyn Net> {
        Arc::new(Tagged { inner, app, table })
    }
}

struct TaggedListen {
    inner: Box<dyn Listen>,
    app: &'static str,
    table: ConnTable,
}

impl Net for Tagged {
    fn local_pk(&self) -> PublicKey {
        self.inner.local_pk()
    }
    fn network(&self) -> Network {
        self.inner.network()
    }
    fn listen(&self, port: u16) -> Result<Box<dyn Listen>, NetError> {
        Ok(Box::new(TaggedListen {
            inner: self.inner.listen(port)?,
            app: self.app,
            table: self.table.clone(),
        }))
    }
    fn dial(&self, pk: PublicKey, port: u16) -> BoxFut<'_, Result<Conn, NetError>> {
        Box::pin(async move {
            let c = self.inner.dial(pk, port).await?;
            Ok(self.table.adopt(c, self.app))
        })
    }
    fn dial_via(&self, pk: PublicKey, port: u16, via: Via) -> BoxFut<'_, Result<Conn, NetError>> {
        Box::pin(async move {
            let c = self.inner.dial_via(pk, port, via).await?;
            Ok(self.table.adopt(c, self.app))
        })
    }
    fn dial_first(
        &self,
        pk: PublicKey,
        port: u16,
        via: Via,
        first: Vec<u8>,
    ) -> BoxFut<'_, Result<Conn, NetError>> {
        Box::pin(async move {
            let c = self.inner.dial_first(pk, port, via, first).await?;
            Ok(self.table.adopt(c, self.app))
        })
    }
    fn underlay(&self) -> Vec<String> {
        self.inner.underlay()
    }
}

impl Listen for TaggedListen {
    fn port(&self) -> u16 {
        self.inner.port()
    }
    fn accept(&self) -> BoxFut<'_, Result<Conn, NetError>> {
        Box::pin(async move {
            let c = self.inner.accept().await?;
            Ok(self.table.adopt(c, self.app))
        })
    }
}

/// Turns a dmsg stream into a connection.
pub fn dmsg_conn(s: crate::dmsg::client::DmsgStream, direction: Direction) -> Conn {
    let (peer, rp, lp) = (s.remote, s.remote_port, s.local_port);
    Conn::new(Box::new(s), peer, rp, lp, Network::Dmsg, direction)
}

/// A dmsg client as an app's network (the visor wraps the same client with its registry).
#[derive(Debug, Clone)]
pub struct DmsgNet {
    /// The client.
    pub client: DmsgClient,
}

/// A dmsg listener as a [`Listen`].
#[derive(Debug)]
pub struct DmsgListen(pub Listener);

impl Listen for DmsgListen {
    fn port(&self) -> u16 {
        self.0.port()
    }
    fn accept(&self) -> BoxFut<'_, Result<Conn, NetError>> {
        Box::pin(async move {
            let s = self.0.accept().await?;
            Ok(dmsg_conn(s, Direction::In))
        })
    }
}

impl Net for DmsgNet {
    fn local_pk(&self) -> PublicKey {
        *self.client.pk()
    }
    fn network(&self) -> Network {
        Network::Dmsg
    }
    fn listen(&self, port: u16) -> Result<Box<dyn Listen>, NetError> {
        Ok(Box::new(DmsgListen(self.client.listen(port)?)))
    }
    fn dial(&self, pk: PublicKey, port: u16) -> BoxFut<'_, Result<Conn, NetError>> {
        Box::pin(async move {
            let s = self.client.dial(&pk, port).await?;
            Ok(dmsg_conn(s, Direction::Out))
        })
    }
    fn dial_first(
        &self,
        pk: PublicKey,
        port: u16,
        _via: Via,
        first: Vec<u8>,
    ) -> BoxFut<'_, Result<Conn, NetError>> {
        Box::pin(async move {
            let s = self.client.dial_first(&pk, port, &first).await?;
            Ok(dmsg_conn(s, Direction::Out))
        })
    }
    fn underlay(&self) -> Vec<String> {
        self.client
            .discovery()
            .map(|d| vec![d.url().authority.clone()])
            .unwrap_or_default()
    }
}

/// Noise XK over direct TCP: `listen` binds the one TCP address this app was given; `dial`
/// looks the PK up in the address book (`tcp://<pk>@host:port`). A dialler keeps one TCP
/// connection per peer and opens every stream to that peer in it (a mux session, each stream
/// with the same port header and status byte as dmsg), so only the first dial pays the
/// handshake; a connection without streams for [`TCP_IDLE`] is closed. The listening side
/// answers a stream's port header when the app accepts the stream, and until then the peer
/// may send at most [`TCP_PREAUTH_BYTES`] on it (the header): a stranger cannot park data
/// before the app's whitelist decision; at most [`TCP_MAX_STREAMS`] streams per connection.
pub struct TcpNet {
    keys: Keypair,
    listen_addr: Option<String>,
    book: Mutex<HashMap<PublicKey, String>>,
    /// The live connection to each peer we dialled.
    conns: Arc<Mutex<HashMap<PublicKey, Session>>>,
    ex: Arc<Executor<'static>>,
    timeout: Duration,
    /// Connections a listener serves at once ([`TCP_MAX_CONNS`]).
    max_conns: usize,
}

impl fmt::Debug for TcpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpNet")
            .field("pk", self.keys.public())
            .field("listen_addr", &self.listen_addr)
            .finish()
    }
}

impl TcpNet {
    /// A TCP network with identity `keys`, listening (when an app listens) on `listen_addr`.
    pub fn new(
        keys: Keypair,
        listen_addr: Option<String>,
        ex: Arc<Executor<'static>>,
    ) -> Arc<TcpNet> {
        Arc::new(TcpNet {
            keys,
            listen_addr,
            book: Mutex::new(HashMap::new()),
            conns: Arc::new(Mutex::new(HashMap::new())),
            ex,
            timeout: Duration::from_secs(10),
            max_conns: TCP_MAX_CONNS,
        })
    }

    /// Remembers where `pk` listens (`host:port`).
    pub fn add_peer(&self, pk: PublicKey, addr: String) {
        lock(&self.book).insert(pk, addr);
    }

    async fn dial_inner(&self, pk: PublicKey, port: u16) -> Result<Conn, NetError> {
        let live = lock(&self.conns)
            .get(&pk)
            .filter(|s| s.failure().is_none())
            .cloned();
        if let Some(session) = live {
            match self.open_in(&session, pk, port, &pk.to_string()).await {
                Ok(c) => return Ok(c),
                // The port's answer is the peer's, whatever the connection.
                Err(e @ (NetError::NoListener(_) | NetError::Busy(_))) => return Err(e),
                // The connection ended under us (the peer closed it idle): a fresh one.
                Err(e) => log::debug!("tcp: {pk}: kept connection failed ({e}); redialling"),
            }
        }
        let addr = lock(&self.book).get(&pk).cloned().ok_or_else(|| {
            NetError::NoRoute(format!(
                "no TCP address for {pk}; give it as tcp://{pk}@<host>:<port>"
            ))
        })?;
        let tcp = TcpStream::connect(addr.as_str())
            .await
            .map_err(|e| NetError::Io(format!("cannot connect to {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let ch = Channel::handshake(tcp, xk_initiator(&self.keys, &pk), HANDSHAKE_TIMEOUT)
            .await
            .map_err(|e| NetError::Io(format!("handshake with {pk} at {addr}: {e}")))?;
        let session = mux_over(&self.ex, ch, Side::Client);
        let conns = self.conns.clone();
        let ours = session.clone();
        close_when_idle(&self.ex, session.clone(), TCP_IDLE, move || {
            let mut c = lock(&conns);
            if c.get(&pk).is_some_and(|s| s.same(&ours)) {
                c.remove(&pk);
            }
        });
        lock(&self.conns).insert(pk, session.clone());
        self.open_in(&session, pk, port, &format!("{pk} at {addr}"))
            .await
    }

    /// Opens a stream to `port` in the connection `session` to `pk` (`who` in errors).
    async fn open_in(
        &self,
        session: &Session,
        pk: PublicKey,
        port: u16,
        who: &str,
    ) -> Result<Conn, NetError> {
        let stream = session
            .open()
            .await
            .map_err(|e| NetError::Refused(format!("{who}: {e}")))?;
        let st = SessionStream {
            stream,
            session: session.clone(),
        };
        let to = PortRepr {
            dst_port: port,
            src_port: 0,
        };
        open_port(st, pk, to, Network::Tcp, who).await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Asks the listener at the other end of a fresh stream for a port — the port header `to`,
/// then its status byte (`docs/protocol.md` §7) — and, if it accepted, makes the stream a
/// connection to `pk`. `who` names the peer in errors.
pub(crate) async fn open_port<S: super::conn::AsyncIo + 'static>(
    mut st: S,
    pk: PublicKey,
    to: PortRepr,
    network: Network,
    who: &str,
) -> Result<Conn, NetError> {
    let io = |e: std::io::Error| NetError::Io(format!("{who}: {e}"));
    st.write_all(&to.to_bytes()).await.map_err(io)?;
    let mut status = [0u8; 1];
    st.read_exact(&mut status).await.map_err(io)?;
    let port = to.dst_port;
    match PortStatus::from_byte(status[0]) {
        PortStatus::Ok => Ok(Conn::new(
            Box::new(st),
            pk,
            port,
            to.src_port,
            network,
            Direction::Out,
        )),
        PortStatus::Closed => Err(NetError::NoListener(format!("{who} serves no port {port}"))),
        PortStatus::Busy => Err(NetError::Busy(format!("{who} is busy; try again"))),
        PortStatus::Unknown(s) => Err(NetError::Io(format!("{who} answered unknown status {s}"))),
    }
}

/// `accept` of a listener whose connections wait in `queue` (registry, in-memory network).
pub(crate) fn accept_queued(
    queue: &AcceptQueue<Conn>,
    port: u16,
) -> BoxFut<'_, Result<Conn, NetError>> {
    Box::pin(async move {
        queue
            .accept()
            .await
            .ok_or_else(|| NetError::Closed(format!("port {port} closed")))
    })
}

/// A stream of a TCP-mode connection, holding the connection (its session) while it lives;
/// the connection itself ends when it has had no stream for a while ([`close_when_idle`]).
struct SessionStream {
    stream: crate::mux::Stream,
    session: Session,
}

/// Shuts `session` down (gracefully, so nothing queued is lost) once it has had no stream
/// for `idle` (looked at every `idle` / 6), or ends with it; then calls `done`.
fn close_when_idle(
    ex: &Arc<Executor<'static>>,
    session: Session,
    idle: Duration,
    done: impl FnOnce() + Send + 'static,
) {
    ex.spawn_boxed(async move {
        let mut quiet_since = Instant::now();
        loop {
            Timer::after(idle / 6).await;
            if session.failure().is_some() {
                break;
            }
            if session.stream_count() > 0 {
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= idle {
                session.shutdown(Duration::from_secs(1)).await;
                break;
            }
        }
        done();
    })
    .detach();
}

impl futures_lite::io::AsyncRead for SessionStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl futures_lite::io::AsyncWrite for SessionStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_close(cx)
    }
}

/// Bytes the peer of a listening TCP-mode connection may send on a stream before the app
/// accepts it: the 4-byte port header, with room to spare. More resets the stream.
pub const TCP_PREAUTH_BYTES: u32 = 1024;

/// Streams one TCP-mode connection carries at once; a SYN beyond them is answered RST.
pub const TCP_MAX_STREAMS: usize = 64;

/// A dialler closes its connection to a peer after this long without a stream; the
/// listening side waits twice as long, so the dialler (which knows) is normally first.
pub const TCP_IDLE: Duration = Duration::from_secs(30);

/// The mux settings of a TCP-mode connection: streams opened by the dialling side only.
fn tcp_mux_config(side: Side) -> Config {
    Config {
        max_streams: TCP_MAX_STREAMS,
        accept_backlog: 16,
        preauth_rx_limit: (side == Side::Server).then_some(TCP_PREAUTH_BYTES),
        ..Config::default()
    }
}

fn mux_over(ex: &Arc<Executor<'static>>, ch: Channel<TcpStream>, side: Side) -> Session {
    let (r, w) = ch.split();
    Session::new(
        ex,
        ChannelFrameReader::new(r),
        ChannelFrameWriter::new(w),
        side,
        tcp_mux_config(side),
    )
}

/// A stream whose port header was checked, waiting for the app's `accept` (which answers it
/// and lets the peer's data in).
struct Parked {
    stream: SessionStream,
    peer: PublicKey,
    src: u16,
}

impl Parked {
    /// The peer is still there.
    fn alive(&self) -> bool {
        self.stream.session.failure().is_none()
    }
}

/// Most streams waiting for `accept` (more are answered busy).
const TCP_BACKLOG: usize = 64;

/// Connections a TCP-mode listener serves at once (handshaking or open); more are closed
/// before any cryptography. A kept connection lives until 60 s without a stream, so this is
/// what bounds the peers that hold connections open.
pub const TCP_MAX_CONNS: usize = 512;

/// Counts a connection of a listener while it lives.
struct Live(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A bound TCP port serving one overlay port. Handshakes run in their own tasks, so a
/// silent or slow peer never delays another; dropping this stops the accept loop.
struct TcpListen {
    port: u16,
    queue: Arc<AcceptQueue<Parked>>,
    _task: async_executor::Task<()>,
}

/// One connection: the handshake, then every stream the peer opens in it, each with its port
/// header checked (answered by `accept`) within `timeout`, parked in `queue`.
async fn tcp_incoming(
    tcp: TcpStream,
    keys: Arc<Keypair>,
    port: u16,
    ex: Arc<Executor<'static>>,
    timeout: Duration,
    queue: Arc<AcceptQueue<Parked>>,
) {
    let _ = tcp.set_nodelay(true);
    let ch = match Channel::handshake(tcp, xk_responder(&keys), HANDSHAKE_TIMEOUT).await {
        Ok(ch) => ch,
        Err(e) => {
            log::info!("tcp: handshake failed: {e}");
            return;
        }
    };
    let peer = *ch.remote();
    let session = mux_over(&ex, ch, Side::Server);
    // A connection that opens no stream in time is dropped (as one that sends no header).
    let first = future::or(async { session.accept().await.ok() }, async {
        Timer::after(timeout).await;
        None
    })
    .await;
    let Some(mut st) = first else {
        log::info!(
            "tcp: {peer} opened no stream within {} s",
            timeout.as_secs()
        );
        session.shutdown(Duration::from_secs(1)).await;
        return;
    };
    close_when_idle(&ex, session.clone(), 2 * TCP_IDLE, || {});
    loop {
        let (kept, queue) = (session.clone(), queue.clone());
        ex.spawn_boxed(async move {
            let Some((st, src)) = port_header(st, peer, port, timeout).await else {
                return;
            };
            let parked = Parked {
                stream: SessionStream {
                    stream: st,
                    session: kept,
                },
                peer,
                src,
            };
            queue.retain(Parked::alive);
            if let Err((Refusal::Busy, mut p)) = queue.try_push(parked) {
                log::warn!("tcp: port {port} backlog full; stream refused");
                let _ = p.stream.write_all(&[PortStatus::Busy.to_byte()]).await;
                let _ = p.stream.close().await;
            }
        })
        .detach();
        st = match session.accept().await {
            Ok(st) => st,
            Err(_) => return,
        };
    }
}

/// Reads a new stream's port header (within `timeout`): the stream and the peer's port if it
/// asks for `port`; anything else is answered (or reset) and logged.
async fn port_header(
    mut st: crate::mux::Stream,
    peer: PublicKey,
    port: u16,
    timeout: Duration,
) -> Option<(crate::mux::Stream, u16)> {
    let mut hdr = [0u8; PORT_HEADER_LEN];
    let got = future::or(async { st.read_exact(&mut hdr).await.ok() }, async {
        Timer::after(timeout).await;
        None
    })
    .await;
    got?;
    let h = PortRepr::parse(&PortHeader::new_checked(&hdr[..]).ok()?).ok()?;
    let (dst, src) = (h.dst_port, h.src_port);
    if dst != port {
        let _ = st.write_all(&[PortStatus::Closed.to_byte()]).await;
        // FIN, not a reset: a reset could overtake the status byte.
        let _ = st.close().await;
        log::info!("tcp: {peer} asked for port {dst}; this listener serves {port}");
        return None;
    }
    Some((st, src))
}

async fn tcp_accept_loop(
    listener: TcpListener,
    keys: Arc<Keypair>,
    port: u16,
    ex: Arc<Executor<'static>>,
    (timeout, max_conns): (Duration, usize),
    queue: Arc<AcceptQueue<Parked>>,
) {
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let tcp = match listener.accept().await {
            Ok((t, _)) => t,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                log::warn!("tcp: accept: {e}");
                Timer::after(Duration::from_millis(200)).await;
                continue;
            }
        };
        if live.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= max_conns {
            live.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            log::debug!("tcp: {max_conns} connections open on port {port}; one more closed");
            continue;
        }
        let guard = Live(live.clone());
        let (keys, ex2, q) = (keys.clone(), ex.clone(), queue.clone());
        ex.spawn_boxed(async move {
            tcp_incoming(tcp, keys, port, ex2, timeout, q).await;
            drop(guard);
        })
        .detach();
    }
}

impl Listen for TcpListen {
    fn port(&self) -> u16 {
        self.port
    }
    fn accept(&self) -> BoxFut<'_, Result<Conn, NetError>> {
        Box::pin(async move {
            loop {
                let Some(mut p) = self.queue.accept().await else {
                    return Err(NetError::Closed(format!("port {} closed", self.port)));
                };
                if !p.alive() {
                    continue;
                }
                // Only now may the peer send more than its port header: the app decides.
                p.stream.stream.authorise();
                if p.stream
                    .write_all(&[PortStatus::Ok.to_byte()])
                    .await
                    .is_err()
                {
                    continue;
                }
                return Ok(Conn::new(
                    Box::new(p.stream),
                    p.peer,
                    p.src,
                    self.port,
                    Network::Tcp,
                    Direction::In,
                ));
            }
        })
    }
}

impl Net for TcpNet {
    fn local_pk(&self) -> PublicKey {
        *self.keys.public()
    }
    fn network(&self) -> Network {
        Network::Tcp
    }
    fn listen(&self, port: u16) -> Result<Box<dyn Listen>, NetError> {
        let addr = self.listen_addr.as_deref().ok_or_else(|| {
            NetError::CannotListen("no TCP listen address given (use --listen <host:port>)".into())
        })?;
        let bind = crate::addr::bind_addr(addr);
        let listener = future::block_on(TcpListener::bind(bind.as_str()))
            .map_err(|e| NetError::CannotListen(format!("cannot listen on {addr}: {e}")))?;
        if let Ok(a) = listener.local_addr() {
            log::info!("tcp: {} listening on {a}", self.keys.public());
        }
        let queue = Arc::new(AcceptQueue::new(TCP_BACKLOG));
        let task = self.ex.spawn_boxed(tcp_accept_loop(
            listener,
            Arc::new(Keypair::from_seed(self.keys.seed())),
            port,
            self.ex.clone(),
            (self.timeout, self.max_conns),
            queue.clone(),
        ));
        Ok(Box::new(TcpListen {
            port,
            queue,
            _task: task,
        }))
    }
    fn dial(&self, pk: PublicKey, port: u16) -> BoxFut<'_, Result<Conn, NetError>> {
        Box::pin(async move {
            let t = self.timeout;
            future::or(self.dial_inner(pk, port), async move {
                Timer::after(t).await;
                Err(NetError::Timeout(format!(
                    "dial {pk}: timed out after {} s",
                    t.as_secs()
                )))
            })
            .await
        })
    }
    fn underlay(&self) -> Vec<String> {
        lock(&self.book).values().cloned().collect()
    }
}

/// Parses `tcp://<pk>@<host>:<port>` (the `tcp://` prefix optional).
pub fn parse_tcp_peer(s: &str) -> Result<(PublicKey, String), String> {
    let rest = s.strip_prefix("tcp://").unwrap_or(s);
    let a = crate::addr::PkAddr::parse(rest)
        .map_err(|e| format!("{s}: {e} (expected tcp://<pk>@<host>:<port>)"))?;
    Ok((a.pk, a.addr))
}

/// Copies `a` to `b` and `b` to `a` until both directions have ended; an end of input in one
/// direction is passed on as a half-close (FIN) on the other side ([`super::splice`]).
pub async fn pipe<A, B>(a: A, b: B)
where
    A: futures_lite::io::AsyncRead + futures_lite::io::AsyncWrite + Unpin,
    B: futures_lite::io::AsyncRead + futures_lite::io::AsyncWrite + Unpin,
{
    super::splice::splice(a, b, None).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spawn::Spawn;

    /// Dials to one peer share one TCP connection (one handshake): both streams live in the
    /// one session the dialler keeps; a port the peer does not serve is refused without
    /// ending it; a stream to it works after that.
    #[test]
    fn tcp_mode_streams_share_one_connection() {
        let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let (a, b) = (Keypair::from_seed(&[61; 32]), Keypair::from_seed(&[62; 32]));
        let a_pk = *a.public();
        let server = TcpNet::new(a, Some(addr.clone()), ex.clone());
        let client = TcpNet::new(b, None, ex.clone());
        client.add_peer(a_pk, addr);
        let l = server.listen(7).unwrap();
        let ex2 = ex.clone();
        ex.spawn_boxed(async move {
            while let Ok(mut c) = l.accept().await {
                ex2.spawn_boxed(async move {
                    let mut b = [0u8; 64];
                    while let Ok(n) = c.read(&mut b).await {
                        if n == 0 || c.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = c.close().await;
                })
                .detach();
            }
        })
        .detach();
        async_io::block_on(ex.run(async {
            let mut c1 = client.dial(a_pk, 7).await.unwrap();
            let mut c2 = client.dial(a_pk, 7).await.unwrap();
            for (c, msg) in [(&mut c1, &b"one"[..]), (&mut c2, b"two")] {
                c.write_all(msg).await.unwrap();
                let mut back = vec![0u8; msg.len()];
                c.read_exact(&mut back).await.unwrap();
                assert_eq!(back, msg);
            }
            let kept = lock(&client.conns).get(&a_pk).cloned().unwrap();
            assert_eq!(lock(&client.conns).len(), 1);
            assert_eq!(kept.stream_count(), 2, "both streams in the one connection");
            let e = client.dial(a_pk, 8).await.unwrap_err();
            assert!(matches!(e, NetError::NoListener(_)), "{e}");
            assert!(kept.failure().is_none());
            // The first stream still echoes.
            c1.write_all(b"again").await.unwrap();
            let mut back = [0u8; 5];
            c1.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"again");
            // A third dial after the others closed reuses it too.
            drop((c1, c2));
            let mut c3 = client.dial(a_pk, 7).await.unwrap();
            c3.write_all(b"3").await.unwrap();
            let mut one = [0u8; 1];
            c3.read_exact(&mut one).await.unwrap();
            assert!(lock(&client.conns).get(&a_pk).unwrap().same(&kept));
        }));
    }

    /// A listener serves at most `max_conns` connections at once: one more is closed before
    /// its handshake, and the one it has keeps working.
    #[test]
    fn a_listener_serves_at_most_max_conns_connections() {
        let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let a = Keypair::from_seed(&[63; 32]);
        let a_pk = *a.public();
        let server = Arc::new(TcpNet {
            keys: a,
            listen_addr: Some(addr.clone()),
            book: Mutex::new(HashMap::new()),
            conns: Arc::new(Mutex::new(HashMap::new())),
            ex: ex.clone(),
            timeout: Duration::from_secs(10),
            max_conns: 1,
        });
        let l = server.listen(7).unwrap();
        ex.spawn_boxed(async move {
            let mut held = Vec::new();
            while let Ok(c) = l.accept().await {
                held.push(c);
            }
        })
        .detach();
        let first = TcpNet::new(Keypair::from_seed(&[64; 32]), None, ex.clone());
        let second = TcpNet::new(Keypair::from_seed(&[65; 32]), None, ex.clone());
        first.add_peer(a_pk, addr.clone());
        second.add_peer(a_pk, addr);
        async_io::block_on(ex.run(async {
            let _c1 = first.dial(a_pk, 7).await.unwrap();
            let e = second.dial(a_pk, 7).await.unwrap_err();
            assert!(e.to_string().contains("handshake"), "{e}");
            let _c2 = first.dial(a_pk, 7).await.unwrap();
        }));
    }
}
