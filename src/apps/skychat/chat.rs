//! The engine (design §4): a cache of connections per peer (either direction, any network),
//! one reader task per connection, sends that wait for `chat-ack` (redial once when the
//! cached connection is dead, fall back to the other network on `auto`, resend the same id
//! on timeout up to `retries` times), and inbound handling: per-peer rate limit, size limit,
//! dedupe by (peer, id), then the event, then the ack. A protocol error closes only the
//! connection it came on.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use async_executor::{Executor, Task};
use async_io::Timer;
use futures_lite::future::{self, poll_fn};
use futures_lite::io::{ReadHalf, WriteHalf};

use super::aliases::Aliases;
use super::events::{Channel, Dir, Event, Hub, Kind, now_ms};
use super::proto::{self, Envelope, MsgId};
use super::store::{self, Appended, NetKind, Record};
use super::writer::StoreHandle;
use crate::app::conn::{Conn, Network};
use crate::app::net::{Listen, Net, NetError, TcpNet, Via};
use crate::crypto::PublicKey;
use crate::spawn::Spawn;

/// Peer connections kept at once (the least recently used is closed first).
pub const MAX_CONNS: usize = 256;
/// Sends waiting for an ack from one peer.
pub const MAX_PENDING_PER_PEER: usize = 64;
/// How often `auto` tries skynet again for a peer it reaches over dmsg.
pub const UPGRADE_EVERY: Duration = Duration::from_secs(10);
/// Ids remembered for dedupe.
pub const DEDUPE_RING: usize = 4_096;
/// How long one frame write may take.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// The overlay port.
pub const PORT: u16 = super::PORT;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Ack wait when a request gives none.
    pub wait_default: Duration,
    /// Reserved: a send with wait 0 counts as success.
    pub fire_and_forget_ok: bool,
    /// Keys allowed in over TCP (empty = any authenticated key).
    pub tcp_whitelist: Vec<PublicKey>,
    /// Largest message body accepted or sent, bytes.
    pub max_message: usize,
    /// Messages accepted per 10 s from one peer (burst 2×); 0 = unlimited.
    pub per_peer_rate: u32,
    /// Messages are kept in the history store.
    pub history: bool,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            wait_default: Duration::from_secs(5),
            fire_and_forget_ok: true,
            tcp_whitelist: Vec::new(),
            max_message: 16_384,
            per_peer_rate: 200,
            history: false,
        }
    }
}

/// Which network a send should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetChoice {
    /// Whatever is up (tcp for tcp peers), with fallback.
    Auto,
    /// dmsg.
    Dmsg,
    /// A skynet route.
    Skynet,
    /// TCP direct.
    Tcp,
}

impl NetChoice {
    /// Parses `auto|dmsg|skynet|tcp`.
    pub fn parse(s: &str) -> Option<NetChoice> {
        match s {
            "auto" | "" => Some(NetChoice::Auto),
            "dmsg" => Some(NetChoice::Dmsg),
            "skynet" => Some(NetChoice::Skynet),
            "tcp" | "tcp-direct" => Some(NetChoice::Tcp),
            _ => None,
        }
    }

    /// The name.
    pub fn as_str(&self) -> &'static str {
        match self {
            NetChoice::Auto => "auto",
            NetChoice::Dmsg => "dmsg",
            NetChoice::Skynet => "skynet",
            NetChoice::Tcp => "tcp",
        }
    }

    fn matches(&self, n: Network) -> bool {
        match self {
            NetChoice::Auto => true,
            NetChoice::Dmsg => matches!(n, Network::Dmsg | Network::Local | Network::Mem),
            NetChoice::Skynet => n == Network::Skynet,
            NetChoice::Tcp => n == Network::Tcp,
        }
    }
}

/// The name a network is reported by.
pub fn net_name(n: Network) -> &'static str {
    match n {
        Network::Dmsg => "dmsg",
        Network::Skynet => "skynet",
        Network::Tcp => "tcp-direct",
        Network::Local | Network::Mem => "local",
    }
}

/// One send.
#[derive(Debug, Clone)]
pub struct SendReq {
    /// The recipient.
    pub to: PublicKey,
    /// The text.
    pub body: String,
    /// Which network.
    pub network: NetChoice,
    /// How long to wait for the ack (clamped 100 ms..=60 s); zero = fire and forget.
    pub wait: Duration,
    /// The message it answers.
    pub reply_to: Option<MsgId>,
    /// Resends of the same id after a timeout.
    pub retries: u32,
}

/// How a send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The peer stored it.
    Acked {
        /// The id.
        id: MsgId,
        /// Send → ack.
        ms: u64,
        /// The network it went over.
        network: &'static str,
        /// Who acked.
        by: PublicKey,
    },
    /// Written, not waited for.
    Sent {
        /// The id.
        id: MsgId,
        /// The network.
        network: &'static str,
    },
    /// Sent (or tried) but no ack: timeout, nack or the connection was lost.
    NotAcked {
        /// The id.
        id: MsgId,
        /// Why.
        reason: String,
        /// How long it waited.
        ms: u64,
    },
    /// Nothing sent: the peer is unreachable or the request is bad.
    Failed {
        /// Why.
        reason: String,
    },
}

/// Counters and state for `/status`.
#[derive(Debug, Clone)]
pub struct Status {
    /// Our PK.
    pub pk: PublicKey,
    /// When the engine started.
    pub started: Instant,
    /// Live event subscribers.
    pub sse_subscribers: usize,
    /// Open peer connections.
    pub active_peer_conns: usize,
    /// Peers with a connection, and its network.
    pub peers: Vec<(PublicKey, &'static str)>,
    /// History on.
    pub persistence_enabled: bool,
    #[allow(missing_docs)]
    pub inbound_msg_count: u64,
    #[allow(missing_docs)]
    pub outbound_msg_count: u64,
    #[allow(missing_docs)]
    pub inbound_drop_count: u64,
    #[allow(missing_docs)]
    pub outbound_fail_count: u64,
    #[allow(missing_docs)]
    pub outbound_retry_count: u64,
    #[allow(missing_docs)]
    pub outbound_fallback_count: u64,
    #[allow(missing_docs)]
    pub sse_drop_count: u64,
    #[allow(missing_docs)]
    pub protocol_error_count: u64,
    #[allow(missing_docs)]
    pub duplicate_count: u64,
    /// Last message received (unix ms).
    pub last_rx_ts_ms: Option<u64>,
    /// Last message sent (unix ms).
    pub last_send_ts_ms: Option<u64>,
}

#[derive(Default)]
struct Counters {
    inbound: AtomicU64,
    outbound: AtomicU64,
    in_drop: AtomicU64,
    out_fail: AtomicU64,
    retry: AtomicU64,
    fallback: AtomicU64,
    proto_err: AtomicU64,
    dup: AtomicU64,
    last_rx: AtomicU64,
    last_send: AtomicU64,
    unread: AtomicU64,
}

/// A tiny async slot: one user of the writer at a time.
struct Slot<W> {
    inner: Mutex<(Option<W>, Vec<Waker>)>,
}

impl<W> Slot<W> {
    fn new(w: W) -> Slot<W> {
        Slot {
            inner: Mutex::new((Some(w), Vec::new())),
        }
    }
    async fn take(&self) -> W {
        poll_fn(|cx| {
            let mut g = lock(&self.inner);
            match g.0.take() {
                Some(w) => Poll::Ready(w),
                None => {
                    g.1.push(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
    fn put(&self, w: W) {
        let mut g = lock(&self.inner);
        g.0 = Some(w);
        for w in g.1.drain(..) {
            w.wake();
        }
    }
}

struct PeerConn {
    id: u64,
    peer: PublicKey,
    network: Network,
    writer: Slot<WriteHalf<Conn>>,
    last_used: Mutex<Instant>,
    reader: Mutex<Option<Task<()>>>,
}

enum Answer {
    Acked(PublicKey),
    Nacked(String),
    Lost,
}

struct Pending {
    peer: PublicKey,
    conn: u64,
    answer: Option<Answer>,
    waker: Option<Waker>,
}

/// A per-peer token bucket: `rate` per 10 s, bursts of twice that.
pub(super) struct Bucket {
    tokens: f64,
    /// The last refill.
    pub(super) at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub(super) fn new(rate: f64) -> Bucket {
        Bucket {
            tokens: 2.0 * rate,
            at: Instant::now(),
        }
    }

    /// Refills for the time since the last call and takes one token if there is one.
    pub(super) fn take(&mut self, rate: f64) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * rate / 10.0).min(2.0 * rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Ids seen (for dedupe) and their order (oldest first).
type Seen = (HashSet<(PublicKey, MsgId)>, VecDeque<(PublicKey, MsgId)>);
/// A persistent tcp peer: its address and its redial task.
type TcpPeer = (String, Option<Task<()>>);

struct Inner {
    cfg: ChatConfig,
    net: Arc<dyn Net>,
    tcp: Option<Arc<TcpNet>>,
    hub: Hub,
    ex: Arc<Executor<'static>>,
    aliases: Aliases,
    started: Instant,
    conns: Mutex<HashMap<PublicKey, Vec<Arc<PeerConn>>>>,
    pending: Mutex<HashMap<MsgId, Pending>>,
    seen: Mutex<Seen>,
    rate: Mutex<HashMap<PublicKey, Bucket>>,
    tcp_peers: Mutex<HashMap<PublicKey, TcpPeer>>,
    dialing: Mutex<HashSet<PublicKey>>,
    /// When `auto` last tried skynet for a peer it reaches over another network.
    upgrade_tried: Mutex<HashMap<PublicKey, Instant>>,
    next_conn: AtomicU64,
    c: Counters,
    /// The history store, when the app keeps one: received messages are in it before they
    /// are acknowledged.
    store: std::sync::OnceLock<StoreHandle>,
    /// The group service, when the host lends the app its identity.
    groups: std::sync::OnceLock<super::groups::Groups>,
    /// The pairing service, with `--pair-enable`.
    pairs: std::sync::OnceLock<super::pair::Pairs>,
}

/// The engine (cheap to clone).
#[derive(Clone)]
pub struct Chat(Arc<Inner>);

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat")
            .field("pk", &self.local_pk())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ms_since(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

impl Chat {
    /// An engine on `net` (the app's overlay network) and, if given, a TCP-direct network.
    pub fn new(
        cfg: ChatConfig,
        net: Arc<dyn Net>,
        tcp: Option<Arc<TcpNet>>,
        hub: Hub,
        aliases: Aliases,
        ex: Arc<Executor<'static>>,
    ) -> Chat {
        Chat(Arc::new(Inner {
            cfg,
            net,
            tcp,
            hub,
            ex,
            aliases,
            started: Instant::now(),
            conns: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            seen: Mutex::new((HashSet::new(), VecDeque::new())),
            rate: Mutex::new(HashMap::new()),
            tcp_peers: Mutex::new(HashMap::new()),
            dialing: Mutex::new(HashSet::new()),
            upgrade_tried: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            c: Counters::default(),
            store: std::sync::OnceLock::new(),
            groups: std::sync::OnceLock::new(),
            pairs: std::sync::OnceLock::new(),
        }))
    }

    /// Keeps history in `store` from now on (once; a second store is refused).
    pub fn attach_store(&self, store: StoreHandle) -> Result<(), String> {
        self.0
            .store
            .set(store)
            .map_err(|_| "a history store is attached already".to_string())
    }

    /// Serves groups with `g` from now on (once).
    pub fn attach_groups(&self, g: super::groups::Groups) -> Result<(), String> {
        self.0
            .groups
            .set(g)
            .map_err(|_| "a group service is attached already".to_string())
    }

    /// The group service, if any.
    pub fn groups(&self) -> Option<&super::groups::Groups> {
        self.0.groups.get()
    }

    /// Serves pairing with `p` from now on (once).
    pub fn attach_pairs(&self, p: super::pair::Pairs) -> Result<(), String> {
        self.0
            .pairs
            .set(p)
            .map_err(|_| "a pairing service is attached already".to_string())
    }

    /// The pairing service, if pairing is on.
    pub fn pairs(&self) -> Option<&super::pair::Pairs> {
        self.0.pairs.get()
    }

    /// A connection to `peer` (cached, else dialled) for the group service.
    pub async fn link_to(&self, peer: PublicKey) -> Result<Link, String> {
        if let Some(pc) = self.cached(&peer, NetChoice::Auto) {
            return Ok(Link(self.clone(), pc));
        }
        let pc = self
            .dial(peer, NetChoice::Auto)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Link(self.clone(), pc))
    }

    /// The history store, if the app keeps one.
    pub fn store(&self) -> Option<&StoreHandle> {
        self.0.store.get()
    }

    /// Our PK.
    pub fn local_pk(&self) -> PublicKey {
        self.0.net.local_pk()
    }

    /// The event hub.
    pub fn hub(&self) -> &Hub {
        &self.0.hub
    }

    /// The alias book.
    pub fn aliases(&self) -> &Aliases {
        &self.0.aliases
    }

    /// The settings.
    pub fn config(&self) -> &ChatConfig {
        &self.0.cfg
    }

    /// Messages received since the last reset.
    pub fn unread(&self) -> u64 {
        self.0.c.unread.load(Ordering::Relaxed)
    }

    /// Resets the unread count.
    pub fn reset_unread(&self) {
        self.0.c.unread.store(0, Ordering::Relaxed);
    }

    /// Counters and state.
    pub fn status(&self) -> Status {
        let c = &self.0.c;
        let conns = lock(&self.0.conns);
        let mut peers: Vec<(PublicKey, &'static str)> = conns
            .iter()
            .filter_map(|(pk, v)| v.last().map(|pc| (*pk, net_name(pc.network))))
            .collect();
        peers.sort_by_key(|p| p.0.to_string());
        let opt = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|v| *v != 0);
        Status {
            pk: self.local_pk(),
            started: self.0.started,
            sse_subscribers: self.0.hub.subscribers(),
            active_peer_conns: conns.values().map(Vec::len).sum(),
            peers,
            persistence_enabled: self.store().is_some(),
            inbound_msg_count: c.inbound.load(Ordering::Relaxed),
            outbound_msg_count: c.outbound.load(Ordering::Relaxed),
            inbound_drop_count: c.in_drop.load(Ordering::Relaxed),
            outbound_fail_count: c.out_fail.load(Ordering::Relaxed),
            outbound_retry_count: c.retry.load(Ordering::Relaxed),
            outbound_fallback_count: c.fallback.load(Ordering::Relaxed),
            sse_drop_count: self.0.hub.drop_count(),
            protocol_error_count: c.proto_err.load(Ordering::Relaxed),
            duplicate_count: c.dup.load(Ordering::Relaxed),
            last_rx_ts_ms: opt(&c.last_rx),
            last_send_ts_ms: opt(&c.last_send),
        }
    }

    /// Accepts connections on `l` until it fails; TCP ones from keys off a non-empty
    /// whitelist are closed before a byte is read.
    pub async fn serve(&self, l: Box<dyn Listen>) -> Result<(), String> {
        loop {
            let conn = match l.accept().await {
                Ok(c) => c,
                Err(NetError::Closed(m)) => return Err(m),
                Err(e) => {
                    log::debug!("skychat: accept: {e}");
                    Timer::after(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let info = conn.info();
            if info.network == Network::Tcp
                && !self.0.cfg.tcp_whitelist.is_empty()
                && !self.0.cfg.tcp_whitelist.contains(&info.peer)
            {
                log::info!("skychat: refused {} over tcp: not whitelisted", info.peer);
                self.0.c.in_drop.fetch_add(1, Ordering::Relaxed);
                drop(conn);
                continue;
            }
            self.adopt(conn);
        }
    }

    /// Keeps a connection to `pk` at `addr` over TCP: dialled now and redialled 1 s → 60 s
    /// after it drops (reset when one works). No-op without a TCP network.
    pub fn add_tcp_peer(&self, pk: PublicKey, addr: String) {
        let Some(tcp) = self.0.tcp.clone() else {
            log::warn!("skychat: tcp peer {pk}@{addr} ignored: no TCP network");
            return;
        };
        tcp.add_peer(pk, addr.clone());
        let me = Arc::downgrade(&self.0);
        let task = self.0.ex.spawn_boxed(async move {
            let mut backoff = Duration::from_secs(1);
            loop {
                let Some(inner) = me.upgrade() else { return };
                let chat = Chat(inner);
                let live = lock(&chat.0.conns)
                    .get(&pk)
                    .is_some_and(|v| v.iter().any(|c| c.network == Network::Tcp));
                if live {
                    backoff = Duration::from_secs(1);
                } else {
                    match chat.dial(pk, NetChoice::Tcp).await {
                        Ok(_) => {
                            backoff = Duration::from_secs(1);
                        }
                        Err(e) => {
                            log::debug!("skychat: tcp peer {pk}: {e}; again in {backoff:?}");
                            drop(chat);
                            Timer::after(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(60));
                            continue;
                        }
                    }
                }
                drop(chat);
                Timer::after(Duration::from_secs(1)).await;
            }
        });
        lock(&self.0.tcp_peers).insert(pk, (addr, Some(task)));
    }

    /// Takes a fresh connection into the cache and starts its reader.
    fn adopt(&self, conn: Conn) -> Arc<PeerConn> {
        let (peer, network) = (conn.info().peer, conn.info().network);
        let (r, w) = futures_lite::io::split(conn);
        let pc = Arc::new(PeerConn {
            id: self.0.next_conn.fetch_add(1, Ordering::Relaxed),
            peer,
            network,
            writer: Slot::new(w),
            last_used: Mutex::new(Instant::now()),
            reader: Mutex::new(None),
        });
        let evicted = {
            let mut conns = lock(&self.0.conns);
            conns.entry(peer).or_default().push(pc.clone());
            let total: usize = conns.values().map(Vec::len).sum();
            if total > MAX_CONNS {
                let oldest = conns
                    .values()
                    .flatten()
                    .filter(|c| c.id != pc.id)
                    .min_by_key(|c| *lock(&c.last_used))
                    .cloned();
                if let Some(o) = &oldest {
                    if let Some(v) = conns.get_mut(&o.peer) {
                        v.retain(|c| c.id != o.id);
                    }
                    conns.retain(|_, v| !v.is_empty());
                }
                oldest
            } else {
                None
            }
        };
        if let Some(o) = evicted {
            self.fail_pending_on(o.id);
            drop(lock(&o.reader).take());
        }
        let me = self.clone();
        let pc2 = pc.clone();
        let task = self.0.ex.spawn_boxed(async move {
            let why = me.read_loop(&pc2, r).await;
            log::debug!("skychat: connection to {} ended: {why}", pc2.peer);
            me.forget_conn(&pc2);
            if let Some(t) = lock(&pc2.reader).take() {
                t.detach();
            }
        });
        *lock(&pc.reader) = Some(task);
        pc
    }

    fn forget_conn(&self, pc: &PeerConn) {
        {
            let mut conns = lock(&self.0.conns);
            if let Some(v) = conns.get_mut(&pc.peer) {
                v.retain(|c| c.id != pc.id);
                if v.is_empty() {
                    conns.remove(&pc.peer);
                }
            }
        }
        self.fail_pending_on(pc.id);
    }

    fn fail_pending_on(&self, conn: u64) {
        for p in lock(&self.0.pending).values_mut() {
            if p.conn == conn && p.answer.is_none() {
                p.answer = Some(Answer::Lost);
                if let Some(w) = p.waker.take() {
                    w.wake();
                }
            }
        }
    }

    async fn read_loop(&self, pc: &Arc<PeerConn>, mut r: ReadHalf<Conn>) -> String {
        loop {
            let payload = match proto::read_frame(&mut r).await {
                Ok(Some(p)) => p,
                Ok(None) => return "closed by the peer".into(),
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    self.0.c.proto_err.fetch_add(1, Ordering::Relaxed);
                    return format!("protocol error: {e}");
                }
                Err(e) => return e.to_string(),
            };
            *lock(&pc.last_used) = Instant::now();
            match proto::decode(&payload) {
                Ok(env) => self.on_envelope(pc, env).await,
                Err(e) => {
                    self.0.c.proto_err.fetch_add(1, Ordering::Relaxed);
                    return format!("protocol error: {e}");
                }
            }
        }
    }

    fn rate_ok(&self, peer: PublicKey) -> bool {
        let rate = self.0.cfg.per_peer_rate;
        if rate == 0 {
            return true;
        }
        let mut g = lock(&self.0.rate);
        if g.len() > 4 * MAX_CONNS {
            g.retain(|_, b| b.at.elapsed() < Duration::from_secs(60));
        }
        g.entry(peer)
            .or_insert_with(|| Bucket::new(rate as f64))
            .take(rate as f64)
    }

    /// True if (peer, id) was new (and remembers it).
    fn first_time(&self, peer: PublicKey, id: MsgId) -> bool {
        let mut g = lock(&self.0.seen);
        if !g.0.insert((peer, id)) {
            return false;
        }
        g.1.push_back((peer, id));
        if g.1.len() > DEDUPE_RING
            && let Some(old) = g.1.pop_front()
        {
            g.0.remove(&old);
        }
        true
    }

    /// Forgets (peer, id) in the dedupe ring (a copy that could not be stored: a resend
    /// must be tried again).
    fn not_seen(&self, peer: PublicKey, id: MsgId) {
        let mut g = lock(&self.0.seen);
        g.0.remove(&(peer, id));
        g.1.retain(|x| *x != (peer, id));
    }

    /// Stores one message; `Err` is the reason to give the sender.
    async fn keep(
        &self,
        peer: PublicKey,
        id: MsgId,
        dir: Dir,
        network: Network,
        reply_to: Option<MsgId>,
        body: &str,
    ) -> Result<Appended, String> {
        let Some(st) = self.store() else {
            return Ok(Appended::Stored);
        };
        st.append(Record {
            id: id.0,
            peer,
            dir: match dir {
                Dir::In => store::Dir::In,
                Dir::Out => store::Dir::Out,
            },
            ts_ms: now_ms(),
            net: match network {
                Network::Dmsg => NetKind::Dmsg,
                Network::Skynet => NetKind::Skynet,
                Network::Tcp => NetKind::Tcp,
                Network::Local | Network::Mem => NetKind::Local,
            },
            reply_to: reply_to.map(|r| r.0),
            body: body.to_string(),
        })
        .await
    }

    async fn on_envelope(&self, pc: &Arc<PeerConn>, env: Envelope) {
        let peer = pc.peer;
        let me = self.local_pk();
        let ev = |id: MsgId, text: String, reply_to: Option<MsgId>| Event {
            seq: 0,
            ts_ms: 0,
            channel: Channel::Dm,
            kind: Kind::Message,
            id,
            dir: Dir::In,
            from: peer,
            to: me,
            transport: net_name(pc.network),
            text,
            reply_to,
            status: None,
            history: false,
            group: None,
        };
        match env {
            Envelope::Text(t) => {
                if t.len() > self.0.cfg.max_message || !self.rate_ok(peer) {
                    self.0.c.in_drop.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let id = MsgId::random();
                if let Err(e) = self.keep(peer, id, Dir::In, pc.network, None, &t).await {
                    log::warn!("skychat: a message from {peer} not stored: {e}");
                }
                self.received();
                self.0.hub.publish(ev(id, t, None));
            }
            Envelope::Msg {
                id,
                body,
                ack,
                reply_to,
            } => {
                let refuse = if body.len() > self.0.cfg.max_message {
                    Some(format!(
                        "message of {} bytes is over the limit of {}",
                        body.len(),
                        self.0.cfg.max_message
                    ))
                } else if !self.rate_ok(peer) {
                    Some(format!(
                        "too many messages: at most {} per 10 s",
                        self.0.cfg.per_peer_rate
                    ))
                } else {
                    None
                };
                if let Some(reason) = refuse {
                    self.0.c.in_drop.fetch_add(1, Ordering::Relaxed);
                    let _ = self.write(pc, &Envelope::Nack { id, reason }).await;
                    return;
                }
                // Acknowledged only once stored (synced): a copy already in the store is
                // acked again and not shown; a copy of one still being stored is not acked
                // (the first copy's ack follows, or its nack).
                if self.store().is_some_and(|st| st.contains(&peer, id.0)) {
                    self.0.c.dup.fetch_add(1, Ordering::Relaxed);
                } else if !self.first_time(peer, id) {
                    self.0.c.dup.fetch_add(1, Ordering::Relaxed);
                    if self.store().is_some() {
                        return;
                    }
                } else {
                    // Stored, counted and published in a task of its own: the connection (and
                    // this reader with it) may be dropped while the store syncs, and a stored
                    // message must still be counted and shown.
                    let (me, net, event) =
                        (self.clone(), pc.network, ev(id, body.clone(), reply_to));
                    let work = async move {
                        let r = me.keep(peer, id, Dir::In, net, reply_to, &body).await;
                        match &r {
                            Ok(Appended::Stored) => {
                                me.received();
                                me.0.hub.publish(event);
                            }
                            Ok(Appended::Duplicate) => {
                                me.0.c.dup.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {
                                me.not_seen(peer, id);
                                me.0.c.in_drop.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        r
                    };
                    let mut task = DetachOnDrop(Some(self.0.ex.spawn_boxed(work)));
                    let stored = match task.0.as_mut() {
                        Some(t) => t.await,
                        None => return,
                    };
                    match stored {
                        Ok(_) => {}
                        Err(e) => {
                            log::warn!("skychat: a message from {peer} not stored: {e}");
                            let reason = format!("the receiver could not store it: {e}");
                            let _ = self.write(pc, &Envelope::Nack { id, reason }).await;
                            return;
                        }
                    }
                }
                if ack {
                    let _ = self.write(pc, &Envelope::Ack(id)).await;
                }
            }
            Envelope::Ack(id) => self.answer(peer, id, Answer::Acked(peer)),
            Envelope::Nack { id, reason } => self.answer(peer, id, Answer::Nacked(reason)),
            Envelope::Read(id) => {
                let mut e = ev(id, String::new(), None);
                e.kind = Kind::Status;
                e.dir = Dir::Out;
                e.from = me;
                e.to = peer;
                e.status = Some("read");
                self.0.hub.publish(e);
            }
            Envelope::Group(m) => match self.groups() {
                Some(g) => g.on_msg(Link(self.clone(), pc.clone()), m).await,
                None => {
                    log::debug!("skychat: {peer} sent {}: groups are off", m.type_name());
                    self.0.c.in_drop.fetch_add(1, Ordering::Relaxed);
                }
            },
            Envelope::Pair(m) => {
                let answer = match self.pairs() {
                    Some(p) => p.on_msg(self, peer, net_name(pc.network), m).await,
                    None => {
                        self.0.c.in_drop.fetch_add(1, Ordering::Relaxed);
                        Envelope::Nack {
                            id: m.id(),
                            reason: super::pair::OFF_FOR_PEERS.into(),
                        }
                    }
                };
                let _ = self.write(pc, &answer).await;
            }
            Envelope::Unknown(t) => {
                log::debug!("skychat: {peer} sent an envelope of unknown type {t:?}");
                self.0.c.in_drop.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn received(&self) {
        self.0.c.inbound.fetch_add(1, Ordering::Relaxed);
        self.0.c.unread.fetch_add(1, Ordering::Relaxed);
        self.0.c.last_rx.store(now_ms(), Ordering::Relaxed);
    }

    fn answer(&self, peer: PublicKey, id: MsgId, a: Answer) {
        let mut g = lock(&self.0.pending);
        if let Some(p) = g.get_mut(&id)
            && p.peer == peer
            && p.answer.is_none()
        {
            p.answer = Some(a);
            if let Some(w) = p.waker.take() {
                w.wake();
            }
        }
    }

    /// Writes one envelope on `pc` within [`WRITE_DEADLINE`]; a failed write closes it.
    async fn write(&self, pc: &Arc<PeerConn>, env: &Envelope) -> Result<(), String> {
        let payload = proto::encode(env);
        let res = future::or(
            async {
                let mut w = pc.writer.take().await;
                let r = proto::write_frame(&mut w, &payload).await;
                pc.writer.put(w);
                r.map_err(|e| e.to_string())
            },
            async {
                Timer::after(WRITE_DEADLINE).await;
                Err(format!(
                    "write timed out after {} s",
                    WRITE_DEADLINE.as_secs()
                ))
            },
        )
        .await;
        match &res {
            Ok(()) => *lock(&pc.last_used) = Instant::now(),
            Err(_) => {
                self.forget_conn(pc);
                if let Some(t) = lock(&pc.reader).take() {
                    drop(t);
                }
            }
        }
        res
    }

    fn cached(&self, peer: &PublicKey, choice: NetChoice) -> Option<Arc<PeerConn>> {
        let conns = lock(&self.0.conns);
        let v = conns.get(peer)?;
        let tcp_peer = lock(&self.0.tcp_peers).contains_key(peer);
        let pick = |f: &dyn Fn(&PeerConn) -> bool| v.iter().rev().find(|c| f(c)).cloned();
        match choice {
            NetChoice::Auto if tcp_peer => pick(&|c| c.network == Network::Tcp).or(pick(&|_| true)),
            NetChoice::Auto => pick(&|c| c.network == Network::Skynet).or(pick(&|_| true)),
            c => pick(&|pc| c.matches(pc.network)),
        }
    }

    /// `auto` prefers skynet: a peer reached only over dmsg is tried over skynet again (at
    /// most every [`UPGRADE_EVERY`]), since a transport to it may have come up since.
    async fn maybe_upgrade(&self, peer: PublicKey) {
        let Some(pc) = self.cached(&peer, NetChoice::Auto) else {
            return;
        };
        if pc.network != Network::Dmsg || lock(&self.0.tcp_peers).contains_key(&peer) {
            return;
        }
        {
            let mut g = lock(&self.0.upgrade_tried);
            if g.get(&peer).is_some_and(|t| t.elapsed() < UPGRADE_EVERY) {
                return;
            }
            if g.len() >= 4 * MAX_CONNS {
                g.retain(|_, t| t.elapsed() < UPGRADE_EVERY);
            }
            g.insert(peer, Instant::now());
        }
        match self.0.net.dial_via(peer, PORT, Via::Skynet).await {
            Ok(c) => {
                log::debug!("skychat: {peer} now over skynet");
                self.adopt(c);
            }
            Err(e) => log::debug!("skychat: {peer} still over dmsg: {e}"),
        }
    }

    /// A connection to `peer` by `choice`: one dial per peer at a time (a send racing the
    /// persistent dialler waits for it and takes its connection).
    async fn dial(&self, peer: PublicKey, choice: NetChoice) -> Result<Arc<PeerConn>, NetError> {
        let deadline = Instant::now() + Duration::from_secs(12);
        loop {
            if lock(&self.0.dialing).insert(peer) {
                break;
            }
            if Instant::now() > deadline {
                return Err(NetError::Timeout(format!(
                    "another dial to {peer} is stuck"
                )));
            }
            Timer::after(Duration::from_millis(20)).await;
        }
        let _done = DialGuard(self, peer);
        if let Some(pc) = self.cached(&peer, choice) {
            return Ok(pc);
        }
        self.dial_new(peer, choice).await
    }

    async fn dial_new(
        &self,
        peer: PublicKey,
        choice: NetChoice,
    ) -> Result<Arc<PeerConn>, NetError> {
        let over = |c: NetChoice| async move {
            match c {
                NetChoice::Tcp => match &self.0.tcp {
                    Some(t) => t.dial(peer, PORT).await,
                    None => Err(NetError::NoRoute(
                        "this skychat has no TCP-direct network (give --tcp-listen or --tcp-peer)"
                            .into(),
                    )),
                },
                NetChoice::Dmsg => self.0.net.dial_via(peer, PORT, Via::Dmsg).await,
                NetChoice::Skynet => self.0.net.dial_via(peer, PORT, Via::Skynet).await,
                NetChoice::Auto => self.0.net.dial_via(peer, PORT, Via::Auto).await,
            }
        };
        if choice != NetChoice::Auto {
            return over(choice).await.map(|c| self.adopt(c));
        }
        let tcp_peer = lock(&self.0.tcp_peers).contains_key(&peer);
        let overlay_is_tcp = self.0.net.network() == Network::Tcp;
        let (first, second) = if tcp_peer {
            (
                NetChoice::Tcp,
                Some(NetChoice::Auto).filter(|_| !overlay_is_tcp),
            )
        } else if self.0.tcp.is_some() && !overlay_is_tcp {
            (NetChoice::Auto, Some(NetChoice::Tcp))
        } else {
            (NetChoice::Auto, None)
        };
        match over(first).await {
            Ok(c) => Ok(self.adopt(c)),
            Err(e) => match second {
                Some(s) if !matches!(e, NetError::NoListener(_)) || tcp_peer => {
                    self.0.c.fallback.fetch_add(1, Ordering::Relaxed);
                    log::debug!(
                        "skychat: {peer} over {}: {e}; trying {}",
                        first.as_str(),
                        s.as_str()
                    );
                    over(s).await.map(|c| self.adopt(c)).map_err(|e2| {
                        NetError::NoRoute(format!("{e}; then over {}: {e2}", s.as_str()))
                    })
                }
                _ => Err(e),
            },
        }
    }

    /// Writes `env` to `peer`: on a cached connection (redialling once if that write fails),
    /// else on a new one. Returns the connection used.
    async fn deliver(
        &self,
        peer: PublicKey,
        choice: NetChoice,
        env: &Envelope,
    ) -> Result<Arc<PeerConn>, String> {
        if choice == NetChoice::Auto {
            self.maybe_upgrade(peer).await;
        }
        if let Some(pc) = self.cached(&peer, choice) {
            match self.write(&pc, env).await {
                Ok(()) => return Ok(pc),
                Err(e) => {
                    log::debug!("skychat: write to {peer}: {e}; redialling");
                    self.0.c.retry.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let pc = self.dial(peer, choice).await.map_err(|e| e.to_string())?;
        self.write(&pc, env).await.map(|_| pc)
    }

    /// Sends a message and (unless `wait` is zero) waits for its ack.
    pub async fn send(&self, req: SendReq) -> SendOutcome {
        let t0 = Instant::now();
        if req.body.is_empty() {
            return SendOutcome::Failed {
                reason: "the message is empty".into(),
            };
        }
        if req.body.len() > self.0.cfg.max_message {
            return SendOutcome::Failed {
                reason: format!(
                    "the message is {} bytes; at most {}",
                    req.body.len(),
                    self.0.cfg.max_message
                ),
            };
        }
        let waiting = lock(&self.0.pending)
            .values()
            .filter(|p| p.peer == req.to)
            .count();
        if req.wait > Duration::ZERO && waiting >= MAX_PENDING_PER_PEER {
            self.0.c.out_fail.fetch_add(1, Ordering::Relaxed);
            return SendOutcome::Failed {
                reason: format!(
                    "{MAX_PENDING_PER_PEER} messages to {} are already waiting for an ack",
                    req.to
                ),
            };
        }
        let wait = if req.wait.is_zero() {
            Duration::ZERO
        } else {
            req.wait
                .clamp(Duration::from_millis(100), Duration::from_secs(60))
        };
        let id = MsgId::random();
        let env = Envelope::Msg {
            id,
            body: req.body.clone(),
            ack: !wait.is_zero(),
            reply_to: req.reply_to,
        };
        let guard = PendingGuard(self, id);
        let mut network = "unknown";
        let mut last_reason = String::new();
        for attempt in 0..=req.retries.min(5) {
            if attempt > 0 {
                self.0.c.retry.fetch_add(1, Ordering::Relaxed);
            }
            let pc = match self.deliver(req.to, req.network, &env).await {
                Ok(pc) => pc,
                Err(reason) if attempt == 0 => {
                    self.0.c.out_fail.fetch_add(1, Ordering::Relaxed);
                    return SendOutcome::Failed {
                        reason: format!("peer unreachable: {reason}"),
                    };
                }
                Err(reason) => {
                    last_reason = reason;
                    continue;
                }
            };
            if attempt == 0 {
                network = net_name(pc.network);
                // Into the history beside the wait, not before it: the ack may arrive while
                // the store syncs.
                let (me, to, net, rt, body) = (
                    self.clone(),
                    req.to,
                    pc.network,
                    req.reply_to,
                    req.body.clone(),
                );
                self.0
                    .ex
                    .spawn_boxed(async move {
                        if let Err(e) = me.keep(to, id, Dir::Out, net, rt, &body).await {
                            log::warn!("skychat: a message to {to} not stored: {e}");
                        }
                    })
                    .detach();
                self.0.c.outbound.fetch_add(1, Ordering::Relaxed);
                self.0.c.last_send.store(now_ms(), Ordering::Relaxed);
                self.0.hub.publish(Event {
                    seq: 0,
                    ts_ms: 0,
                    channel: Channel::Dm,
                    kind: Kind::Message,
                    id,
                    dir: Dir::Out,
                    from: self.local_pk(),
                    to: req.to,
                    transport: network,
                    text: req.body.clone(),
                    reply_to: req.reply_to,
                    status: None,
                    history: false,
                    group: None,
                });
            }
            if wait.is_zero() {
                return SendOutcome::Sent { id, network };
            }
            lock(&self.0.pending).insert(
                id,
                Pending {
                    peer: req.to,
                    conn: pc.id,
                    answer: None,
                    waker: None,
                },
            );
            let answer = future::or(
                poll_fn(|cx| {
                    let mut g = lock(&self.0.pending);
                    let Some(p) = g.get_mut(&id) else {
                        return Poll::Ready(None);
                    };
                    match p.answer.take() {
                        Some(a) => Poll::Ready(Some(a)),
                        None => {
                            p.waker = Some(cx.waker().clone());
                            Poll::Pending
                        }
                    }
                }),
                async {
                    Timer::after(wait).await;
                    None
                },
            )
            .await;
            match answer {
                Some(Answer::Acked(by)) => {
                    drop(guard);
                    self.status_event(id, req.to, network, "received");
                    return SendOutcome::Acked {
                        id,
                        ms: ms_since(t0),
                        network: net_name(pc.network),
                        by,
                    };
                }
                Some(Answer::Nacked(reason)) => {
                    self.0.c.out_fail.fetch_add(1, Ordering::Relaxed);
                    self.status_event(id, req.to, network, "failed");
                    return SendOutcome::NotAcked {
                        id,
                        reason: format!("refused by the peer: {reason}"),
                        ms: ms_since(t0),
                    };
                }
                Some(Answer::Lost) => last_reason = "the connection was lost".into(),
                None => {
                    last_reason = format!("no ack within {} ms", wait.as_millis());
                }
            }
        }
        drop(guard);
        self.0.c.out_fail.fetch_add(1, Ordering::Relaxed);
        self.status_event(id, req.to, network, "failed");
        SendOutcome::NotAcked {
            id,
            reason: last_reason,
            ms: ms_since(t0),
        }
    }

    fn status_event(&self, id: MsgId, peer: PublicKey, transport: &'static str, s: &'static str) {
        self.0.hub.publish(Event {
            seq: 0,
            ts_ms: 0,
            channel: Channel::Dm,
            kind: Kind::Status,
            id,
            dir: Dir::Out,
            from: self.local_pk(),
            to: peer,
            transport,
            text: String::new(),
            reply_to: None,
            status: Some(s),
            history: false,
            group: None,
        });
    }

    /// Tells `peer` its message `id` was displayed (`chat-read`).
    pub async fn mark_read(&self, peer: PublicKey, id: MsgId) -> Result<(), String> {
        self.deliver(peer, NetChoice::Auto, &Envelope::Read(id))
            .await
            .map(|_| ())
    }
}

/// One peer connection, as the group service holds it.
#[derive(Clone)]
pub struct Link(Chat, Arc<PeerConn>);

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("peer", &self.1.peer)
            .field("id", &self.1.id)
            .finish()
    }
}

impl Link {
    /// The peer.
    pub fn peer(&self) -> PublicKey {
        self.1.peer
    }

    /// The connection's id.
    pub fn id(&self) -> u64 {
        self.1.id
    }

    /// Still in the cache (not closed).
    pub fn alive(&self) -> bool {
        lock(&self.0.0.conns)
            .get(&self.1.peer)
            .is_some_and(|v| v.iter().any(|c| c.id == self.1.id))
    }

    /// Writes `env` on it (a failed write closes it).
    pub async fn send(&self, env: &Envelope) -> Result<(), String> {
        self.0.write(&self.1, env).await
    }
}

/// Ends a dial's turn.
/// A task that runs to the end even when whoever awaits it is dropped.
struct DetachOnDrop<T>(Option<Task<T>>);

impl<T> Drop for DetachOnDrop<T> {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.detach();
        }
    }
}

struct DialGuard<'a>(&'a Chat, PublicKey);

impl Drop for DialGuard<'_> {
    fn drop(&mut self) {
        lock(&self.0.0.dialing).remove(&self.1);
    }
}

/// Removes a send's pending entry however the send ends (also when its future is dropped).
struct PendingGuard<'a>(&'a Chat, MsgId);

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.0.0.pending).remove(&self.1);
    }
}

#[path = "chat_request.rs"]
mod request;
pub use request::ReqFail;

#[cfg(test)]
#[path = "chat_tests.rs"]
mod tests;
