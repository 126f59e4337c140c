//! The transport manager: dials and accepts links, keeps persistent ones up, resolves
//! duplicates, hands packets to the [`PacketSink`] and publishes the live links in the
//! visor's discovery entry.

use core::fmt;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_executor::{Executor, Task};
use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use futures_lite::future;

use super::id::{TpId, TpType};
use super::link::{Codec, LinkParams, Timing, TpInfo, Transport};
use super::stcp;
use crate::addr::PkAddr;
use crate::crypto::{Keypair, PublicKey};
use crate::dmsg::client::{DmsgClient, DmsgStream};
use crate::dmsg::disc_client::DiscClient;
use crate::spawn::Spawn;

/// The dmsg port transports use.
pub const DMSG_PORT: u16 = 45;

/// Where the router gets a transport's packets and its ups and downs. Never block in these.
pub trait PacketSink: Send + Sync + 'static {
    /// A routing packet (header ‖ payload) that arrived on `tp` (transport-level id-0
    /// keep-alives and pings are answered below and never come here).
    fn packet(&self, tp: &Transport, buf: Vec<u8>);
    /// `tp` is up.
    fn up(&self, tp: &Transport);
    /// `tp` went down (after `up`).
    fn down(&self, tp: &Transport, why: &str);
}

/// Manager settings (the defaults are the design's).
#[derive(Debug, Clone)]
pub struct TpConfig {
    /// Bytes a transport's send queue holds before [`SendError::Full`](super::SendError).
    pub queue_bytes: usize,
    /// A transport ping goes out after this long with nothing sent.
    pub keepalive: Duration,
    /// A link with nothing received for this long is dead.
    pub dead_after: Duration,
    /// The stcp pre-handshake and Noise KK together.
    pub handshake_timeout: Duration,
    /// How long [`Manager::add`] waits for the first connect.
    pub add_timeout: Duration,
    /// Redial backoff of persistent transports: first and largest delay.
    pub backoff_min: Duration,
    /// See `backoff_min`.
    pub backoff_max: Duration,
    /// Live transports at most (both directions).
    pub max_transports: usize,
    /// Incoming stcp connections (handshaking or up) from one IP address at most.
    pub max_incoming_per_ip: usize,
    /// Incoming stcp handshakes in flight at most.
    pub max_handshakes: usize,
    /// Addresses (`host:port`) published as our stcp addresses; empty: the listen
    /// addresses that name a host (not `0.0.0.0`).
    pub public_addrs: Vec<String>,
}

impl Default for TpConfig {
    fn default() -> Self {
        TpConfig {
            queue_bytes: 256 * 1024,
            keepalive: Duration::from_secs(1),
            dead_after: Duration::from_secs(4),
            handshake_timeout: crate::crypto::channel::HANDSHAKE_TIMEOUT,
            add_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_transports: 256,
            max_incoming_per_ip: 8,
            max_handshakes: 32,
            public_addrs: Vec::new(),
        }
    }
}

/// Why a manager operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpError {
    /// The type is not available (no dmsg client).
    Unsupported(TpType),
    /// No stcp address known for the peer (config, `tp add` book, discovery).
    NoAddress(PublicKey),
    /// No transport with this id.
    NotFound(TpId),
    /// A limit was hit (which).
    Limit(String),
    /// Connecting failed (why).
    Failed(String),
}

impl fmt::Display for TpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TpError::Unsupported(t) => write!(f, "transport type {t} is not available here"),
            TpError::NoAddress(pk) => write!(
                f,
                "no stcp address for {pk}: not in the config and its discovery entry lists none"
            ),
            TpError::NotFound(id) => write!(f, "no transport {id}"),
            TpError::Limit(what) => write!(f, "limit reached: {what}"),
            TpError::Failed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for TpError {}

#[derive(Debug, Default)]
struct State {
    by_handle: HashMap<u32, Transport>,
    by_id: HashMap<TpId, u32>,
    /// Persistent transports (config, `tp add`), up or not.
    persistent: HashMap<TpId, (PublicKey, TpType)>,
    /// Persistent ids whose keeper task runs.
    keepers: HashSet<TpId>,
    /// Last dial failure of a persistent transport.
    last_err: HashMap<TpId, String>,
    book: HashMap<PublicKey, Vec<String>>,
    /// Incoming stcp per source address (handshaking or up), and which handle came from where.
    per_ip: HashMap<IpAddr, usize>,
    incoming_ip: HashMap<u32, IpAddr>,
    handshakes: usize,
    next_handle: u32,
    listen_addrs: Vec<SocketAddr>,
    listeners: Vec<Task<()>>,
    counters: HashMap<&'static str, u64>,
}

struct Inner {
    ex: Arc<Executor<'static>>,
    keys: Keypair,
    cfg: TpConfig,
    dmsg: Option<DmsgClient>,
    disc: Mutex<Option<DiscClient>>,
    sink: Arc<dyn PacketSink>,
    st: Mutex<State>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("pk", self.keys.public())
            .field("transports", &lock(&self.st).by_handle.len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The transport manager. Cloning gives another handle.
#[derive(Debug, Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

impl Manager {
    /// A manager for identity `keys`; tasks run on `ex`; dmsg transports need `dmsg`.
    pub fn new(
        ex: Arc<Executor<'static>>,
        keys: Keypair,
        cfg: TpConfig,
        dmsg: Option<DmsgClient>,
        sink: Arc<dyn PacketSink>,
    ) -> Manager {
        Manager {
            inner: Arc::new(Inner {
                ex,
                keys,
                cfg,
                dmsg,
                disc: Mutex::new(None),
                sink,
                st: Mutex::new(State {
                    next_handle: 1,
                    ..State::default()
                }),
            }),
        }
    }

    /// Our PK.
    pub fn pk(&self) -> PublicKey {
        *self.inner.keys.public()
    }

    /// Accepts stcp transports on `addr` (`host:port`, `:port` = every interface); returns
    /// the bound address.
    pub async fn listen_stcp(&self, addr: &str) -> Result<SocketAddr, TpError> {
        let bind = crate::addr::bind_addr(addr);
        let l = TcpListener::bind(bind.as_str())
            .await
            .map_err(|e| TpError::Failed(format!("cannot listen for stcp on {bind}: {e}")))?;
        let local = l
            .local_addr()
            .map_err(|e| TpError::Failed(format!("stcp listener: {e}")))?;
        let inner = self.inner.clone();
        let task = self.inner.ex.spawn_boxed(accept_loop(inner, l));
        {
            let mut st = lock(&self.inner.st);
            st.listen_addrs.push(local);
            st.listeners.push(task);
        }
        log::info!("transport: stcp listening on {local}");
        self.inner.publish_links();
        Ok(local)
    }

    /// Stops every stcp listener (live transports stay).
    pub fn stop_listening(&self) {
        let mut st = lock(&self.inner.st);
        st.listeners.clear();
        st.listen_addrs.clear();
    }

    /// Accepts dmsg transports on our dmsg port 45 (the client's own port table).
    pub fn serve_dmsg(&self) -> Result<(), TpError> {
        let dmsg = self
            .inner
            .dmsg
            .as_ref()
            .ok_or(TpError::Unsupported(TpType::Dmsg))?;
        let l = dmsg
            .listen(DMSG_PORT)
            .map_err(|e| TpError::Failed(format!("dmsg port {DMSG_PORT}: {e}")))?;
        let me = self.clone();
        self.inner
            .ex
            .spawn_boxed(async move {
                while let Ok(s) = l.accept().await {
                    me.accept_dmsg(s);
                }
            })
            .detach();
        Ok(())
    }

    /// Takes a dmsg stream that arrived on port 45 some other way (the visor's services
    /// registry) as an incoming dmsg transport.
    pub fn accept_dmsg(&self, s: DmsgStream) {
        let peer = s.remote;
        let (r, w) = futures_lite::io::split(s);
        if let Err(e) = self
            .inner
            .register(peer, TpType::Dmsg, false, Codec::Dmsg, r, w, None)
        {
            log::debug!("transport: dmsg from {peer} refused: {e}");
        }
    }

    /// Sets where peers' stcp listeners are (`pk@host:port`; several per peer allowed),
    /// replacing the book.
    pub fn set_addr_book(&self, book: &[PkAddr]) {
        let mut m: HashMap<PublicKey, Vec<String>> = HashMap::new();
        for a in book {
            m.entry(a.pk).or_default().push(a.addr.clone());
        }
        lock(&self.inner.st).book = m;
    }

    /// Adds one stcp address for `pk` to the book.
    pub fn add_addr(&self, a: &PkAddr) {
        let mut st = lock(&self.inner.st);
        let v = st.book.entry(a.pk).or_default();
        if !v.contains(&a.addr) {
            v.push(a.addr.clone());
        }
    }

    /// Looks peers' stcp addresses up in this discovery (default: the dmsg client's).
    pub fn set_discovery(&self, disc: DiscClient) {
        *lock(&self.inner.disc) = Some(disc);
    }

    /// Brings a `kind` transport to `pk` up (or returns the live one), waiting at most
    /// `add_timeout`. A persistent one is kept up from now on (redialled with backoff), also
    /// when this first attempt fails.
    pub async fn add(
        &self,
        pk: PublicKey,
        kind: TpType,
        persistent: bool,
    ) -> Result<TpInfo, TpError> {
        if pk == self.pk() {
            return Err(TpError::Failed(
                "cannot add a transport to ourselves".into(),
            ));
        }
        if kind == TpType::Dmsg && self.inner.dmsg.is_none() {
            return Err(TpError::Unsupported(kind));
        }
        let id = TpId::derive(&self.pk(), &pk, kind);
        if persistent {
            let start = {
                let mut st = lock(&self.inner.st);
                st.persistent.insert(id, (pk, kind));
                st.last_err.remove(&id);
                if let Some(tp) = st.by_id.get(&id).and_then(|h| st.by_handle.get(h)) {
                    tp.link
                        .persistent
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                st.keepers.insert(id)
            };
            if start {
                let inner = self.inner.clone();
                self.inner.ex.spawn_boxed(keeper(inner, id)).detach();
            }
            let t0 = Instant::now();
            loop {
                if let Some(tp) = self.inner.up_by_id(&id) {
                    return Ok(tp.info());
                }
                if t0.elapsed() >= self.inner.cfg.add_timeout {
                    let why = lock(&self.inner.st).last_err.get(&id).cloned();
                    return Err(TpError::Failed(format!(
                        "{kind} transport to {pk} not up within {} s ({}); it stays configured and is retried",
                        self.inner.cfg.add_timeout.as_secs(),
                        why.unwrap_or_else(|| "still connecting".into())
                    )));
                }
                Timer::after(Duration::from_millis(50)).await;
            }
        }
        if let Some(tp) = self.inner.up_by_id(&id) {
            return Ok(tp.info());
        }
        let timeout = self.inner.cfg.add_timeout;
        let got = future::or(self.inner.clone().connect(pk, kind), async move {
            Timer::after(timeout).await;
            Err(TpError::Failed(format!(
                "{kind} transport to {pk} not up within {} s",
                timeout.as_secs()
            )))
        })
        .await;
        match got {
            Ok(tp) => Ok(self.inner.up_by_id(&id).unwrap_or(tp).info()),
            Err(e) => self.inner.up_by_id(&id).map(|t| t.info()).ok_or(e),
        }
    }

    /// Takes a transport down and forgets it (no more redialling).
    pub fn remove(&self, id: &TpId) -> Result<(), TpError> {
        let (was, tp) = {
            let mut st = lock(&self.inner.st);
            let was = st.persistent.remove(id).is_some();
            st.last_err.remove(id);
            let tp = st.by_id.get(id).and_then(|h| st.by_handle.get(h)).cloned();
            (was, tp)
        };
        match tp {
            Some(tp) => {
                tp.close("removed");
                Ok(())
            }
            None if was => Ok(()),
            None => Err(TpError::NotFound(*id)),
        }
    }

    /// Every live transport, and the persistent ones being redialled (state `connecting`).
    pub fn list(&self) -> Vec<TpInfo> {
        let st = lock(&self.inner.st);
        let mut v: Vec<TpInfo> = st.by_handle.values().map(Transport::info).collect();
        for (id, (pk, kind)) in &st.persistent {
            if !st.by_id.contains_key(id) {
                v.push(TpInfo {
                    id: *id,
                    handle: 0,
                    peer: *pk,
                    kind: *kind,
                    state: "connecting",
                    initiator: true,
                    persistent: true,
                    rtt: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                    age: Duration::ZERO,
                    buffer_bytes: 0,
                });
            }
        }
        crate::sort::sort_by_cmp(&mut v, |a, b| {
            (a.peer.as_bytes(), a.kind).cmp(&(b.peer.as_bytes(), b.kind))
        });
        v
    }

    /// The live transport with this handle.
    pub fn by_handle(&self, h: u32) -> Option<Transport> {
        lock(&self.inner.st).by_handle.get(&h).cloned()
    }

    /// A live transport to `pk`, stcp first.
    pub fn to_peer(&self, pk: &PublicKey) -> Option<Transport> {
        let st = lock(&self.inner.st);
        TpType::ALL.iter().find_map(|k| {
            let id = TpId::derive(self.inner.keys.public(), pk, *k);
            st.by_id.get(&id).and_then(|h| st.by_handle.get(h)).cloned()
        })
    }

    /// The transport types this manager can use.
    pub fn types(&self) -> Vec<TpType> {
        TpType::ALL
            .into_iter()
            .filter(|t| *t == TpType::Stcp || self.inner.dmsg.is_some())
            .collect()
    }

    /// Counted reasons for refused connections and ended links.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = lock(&self.inner.st)
            .counters
            .iter()
            .map(|(k, n)| (k.to_string(), *n))
            .collect();
        crate::sort::sort(&mut v);
        v
    }

    /// Takes every transport down, forgets the persistent ones and stops listening.
    pub fn shutdown(&self) {
        let tps: Vec<Transport> = {
            let mut st = lock(&self.inner.st);
            st.persistent.clear();
            st.listeners.clear();
            st.listen_addrs.clear();
            st.by_handle.values().cloned().collect()
        };
        for tp in tps {
            tp.close("shut down");
        }
    }
}

impl Inner {
    fn count(&self, what: &'static str) {
        *lock(&self.st).counters.entry(what).or_insert(0) += 1;
    }

    fn up_by_id(&self, id: &TpId) -> Option<Transport> {
        let st = lock(&self.st);
        st.by_id.get(id).and_then(|h| st.by_handle.get(h)).cloned()
    }

    fn timing(&self) -> Timing {
        Timing {
            idle: self.cfg.keepalive,
            dead: self.cfg.dead_after,
        }
    }

    /// Dials one `kind` transport to `pk`.
    async fn connect(self: Arc<Self>, pk: PublicKey, kind: TpType) -> Result<Transport, TpError> {
        match kind {
            TpType::Dmsg => {
                let dmsg = self.dmsg.as_ref().ok_or(TpError::Unsupported(kind))?;
                let s = dmsg
                    .dial(&pk, DMSG_PORT)
                    .await
                    .map_err(|e| TpError::Failed(format!("dmsg transport to {pk}: {e}")))?;
                let (r, w) = futures_lite::io::split(s);
                self.register(pk, kind, true, Codec::Dmsg, r, w, None)
            }
            TpType::Stcp => {
                let mut addrs = lock(&self.st).book.get(&pk).cloned().unwrap_or_default();
                if addrs.is_empty() {
                    addrs = self.discovered_addrs(&pk).await?;
                }
                if addrs.is_empty() {
                    return Err(TpError::NoAddress(pk));
                }
                let mut last = String::new();
                for a in &addrs {
                    match stcp::dial(a, &self.keys, &pk, self.cfg.handshake_timeout).await {
                        Ok((s, codec)) => {
                            return self.register(pk, kind, true, codec, s.clone(), s, None);
                        }
                        Err(e) => last = e,
                    }
                }
                Err(TpError::Failed(last))
            }
        }
    }

    async fn discovered_addrs(&self, pk: &PublicKey) -> Result<Vec<String>, TpError> {
        let disc = lock(&self.disc).clone();
        let disc = match disc {
            Some(d) => d,
            None => match self.dmsg.as_ref().and_then(|d| d.discovery()) {
                Some(d) => d.clone(),
                None => return Ok(Vec::new()),
            },
        };
        match disc.entry(pk).await {
            Ok(Some(e)) => Ok(e.transports),
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(TpError::Failed(format!(
                "looking up {pk}'s stcp address in discovery: {e}"
            ))),
        }
    }

    /// Makes a link of a finished handshake live: duplicate resolution, limits, the sink's
    /// `up`, its tasks.
    #[allow(clippy::too_many_arguments)]
    fn register<R, W>(
        self: &Arc<Self>,
        peer: PublicKey,
        kind: TpType,
        initiator: bool,
        codec: Codec,
        r: R,
        w: W,
        from_ip: Option<IpAddr>,
    ) -> Result<Transport, TpError>
    where
        R: futures_lite::io::AsyncRead + Unpin + Send + 'static,
        W: futures_lite::io::AsyncWrite + Unpin + Send + 'static,
    {
        let mut replaced = None;
        let tp = {
            let mut st = lock(&self.st);
            if st.by_handle.len() >= self.cfg.max_transports {
                *st.counters.entry("transport limit").or_insert(0) += 1;
                return Err(TpError::Limit(format!(
                    "{} transports",
                    self.cfg.max_transports
                )));
            }
            let handle = st.next_handle;
            st.next_handle = st.next_handle.checked_add(1).unwrap_or(1).max(1);
            let id = TpId::derive(self.keys.public(), &peer, kind);
            let tp = Transport::new(LinkParams {
                handle,
                local: *self.keys.public(),
                peer,
                kind,
                initiator,
                persistent: st.persistent.contains_key(&id),
                queue_bytes: self.cfg.queue_bytes,
            });
            if let Some(old) = st.by_id.get(&id).and_then(|h| st.by_handle.get(h)).cloned() {
                let (o, n) = (old.link.dialer, tp.link.dialer);
                let keep_new = o == n || n.as_bytes() < o.as_bytes();
                *st.counters.entry("duplicate link").or_insert(0) += 1;
                if !keep_new {
                    return Err(TpError::Failed(format!(
                        "duplicate of {id}: the link {o} dialled wins"
                    )));
                }
                st.by_handle.remove(&old.handle());
                replaced = Some(old);
            }
            st.by_id.insert(id, handle);
            st.by_handle.insert(handle, tp.clone());
            if let Some(ip) = from_ip {
                st.incoming_ip.insert(handle, ip);
                *st.per_ip.entry(ip).or_insert(0) += 1;
            }
            tp
        };
        if let Some(old) = replaced {
            old.close("replaced by a duplicate link");
        }
        log::info!(
            "transport: {} {kind} {} with {peer} up",
            tp.id(),
            if initiator { "to" } else { "from" }
        );
        self.sink.up(&tp);
        let me = self.clone();
        let run = tp.clone();
        let timing = self.timing();
        self.ex
            .spawn_boxed(async move {
                let sink = me.sink.clone();
                let deliver = move |t: &Transport, buf: Vec<u8>| sink.packet(t, buf);
                let why = run.run(codec, r, w, timing, &deliver).await;
                me.on_down(&run, &why);
            })
            .detach();
        self.publish_links();
        Ok(tp)
    }

    fn on_down(&self, tp: &Transport, why: &str) {
        {
            let mut st = lock(&self.st);
            if st
                .by_handle
                .get(&tp.handle())
                .is_some_and(|t| Arc::ptr_eq(&t.link, &tp.link))
            {
                st.by_handle.remove(&tp.handle());
                if st.by_id.get(&tp.id()) == Some(&tp.handle()) {
                    st.by_id.remove(&tp.id());
                }
            }
            if let Some(ip) = st.incoming_ip.remove(&tp.handle()) {
                release_ip(&mut st, ip);
            }
            let what = if why.starts_with("bad frame") {
                "bad frame"
            } else if why.starts_with("nothing received") {
                "dead link (silent)"
            } else if why.starts_with("peer stopped reading") {
                "dead link (not reading)"
            } else {
                "link ended"
            };
            *st.counters.entry(what).or_insert(0) += 1;
        }
        tp.mark_down();
        log::info!(
            "transport: {} {} with {} down: {why}",
            tp.id(),
            tp.kind(),
            tp.peer()
        );
        self.sink.down(tp, why);
        self.publish_links();
    }

    /// Tells the dmsg client our stcp addresses and live links (it republishes promptly).
    fn publish_links(&self) {
        let Some(dmsg) = &self.dmsg else {
            return;
        };
        let (addrs, links) = {
            let st = lock(&self.st);
            let addrs: Vec<String> = if self.cfg.public_addrs.is_empty() {
                st.listen_addrs
                    .iter()
                    .filter(|a| !a.ip().is_unspecified())
                    .map(|a| a.to_string())
                    .collect()
            } else {
                self.cfg.public_addrs.clone()
            };
            let links = st
                .by_handle
                .values()
                .map(|t| (t.peer(), t.kind().to_byte()))
                .collect();
            (addrs, links)
        };
        dmsg.set_transports(addrs, links);
    }
}

fn release_ip(st: &mut State, ip: IpAddr) {
    if let Some(n) = st.per_ip.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            st.per_ip.remove(&ip);
        }
    }
}

async fn accept_loop(inner: Arc<Inner>, l: TcpListener) {
    loop {
        let (s, from) = match l.accept().await {
            Ok(x) => x,
            Err(e) => {
                log::warn!("transport: stcp accept: {e}");
                Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ip = from.ip();
        {
            let mut st = lock(&inner.st);
            let why = if st.per_ip.get(&ip).copied().unwrap_or(0) >= inner.cfg.max_incoming_per_ip {
                Some("stcp per-ip limit")
            } else if st.handshakes >= inner.cfg.max_handshakes {
                Some("stcp handshake limit")
            } else if st.by_handle.len() + st.handshakes >= inner.cfg.max_transports {
                Some("transport limit")
            } else {
                None
            };
            if let Some(why) = why {
                *st.counters.entry(why).or_insert(0) += 1;
                log::debug!("transport: stcp from {from} refused: {why}");
                continue;
            }
            *st.per_ip.entry(ip).or_insert(0) += 1;
            st.handshakes += 1;
        }
        let me = inner.clone();
        inner
            .ex
            .spawn_boxed(async move { incoming(me, s, ip).await })
            .detach();
    }
}

async fn incoming(inner: Arc<Inner>, s: TcpStream, ip: IpAddr) {
    let got = stcp::accept(s, &inner.keys, inner.cfg.handshake_timeout).await;
    {
        let mut st = lock(&inner.st);
        st.handshakes -= 1;
        // The reservation moves to the link in `register`.
        release_ip(&mut st, ip);
    }
    match got {
        Ok((s, peer, codec)) => {
            if let Err(e) = inner.register(peer, TpType::Stcp, false, codec, s.clone(), s, Some(ip))
            {
                log::debug!("transport: stcp from {peer} refused: {e}");
            }
        }
        Err(e) => {
            inner.count("stcp handshake failed");
            log::debug!("transport: stcp from {ip}: {e}");
        }
    }
}

/// Keeps the persistent transport `id` up until it is removed.
async fn keeper(inner: Arc<Inner>, id: TpId) {
    let mut failures: u32 = 0;
    loop {
        let (pk, kind) = {
            let mut st = lock(&inner.st);
            match st.persistent.get(&id) {
                Some(x) => *x,
                None => {
                    st.keepers.remove(&id);
                    return;
                }
            }
        };
        if inner.up_by_id(&id).is_some() {
            failures = 0;
            Timer::after(Duration::from_millis(100)).await;
            continue;
        }
        match inner.clone().connect(pk, kind).await {
            Ok(_) => {
                failures = 0;
                lock(&inner.st).last_err.remove(&id);
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                log::debug!("transport: redial {kind} to {pk}: {e}");
                lock(&inner.st).last_err.insert(id, e.to_string());
                Timer::after(backoff(&inner.cfg, failures)).await;
            }
        }
    }
}

/// The delay after `failures` failed dials: `backoff_min · 2^(failures-1)` up to
/// `backoff_max`, of which a random part of up to half is taken off (so peers do not redial
/// in step), never below `backoff_min`.
pub fn backoff(cfg: &TpConfig, failures: u32) -> Duration {
    let base = cfg
        .backoff_min
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(cfg.backoff_max);
    let mut b = [0u8; 4];
    let r = if getrandom::fill(&mut b).is_ok() {
        u32::from_le_bytes(b) % 1000
    } else {
        500
    };
    (base / 2 + (base / 2).mul_f64(f64::from(r) / 1000.0)).max(cfg.backoff_min)
}
