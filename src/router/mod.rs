//! Skynet routing (DESIGN.md §3.7–3.9): the rule table, zero-copy forwarding, source-driven
//! route setup and route groups, driven over the transports of [`crate::transport`].
//!
//! - [`core`]: the sans-IO rule table and setup state machine (packets and `now` in, actions
//!   out).
//! - [`path`]: path search over the published transport graph.
//! - [`policy`]: the per-app route policy (`auto`, `dmsg`, `direct`, `hops:K`, `via:…`,
//!   `mux:N`).
//! - [`group`]: route groups (Noise KK end to end, the mux inside, `mux:N` legs).
//! - [`control`]: the control facade the RPC server and the CLI use.
//!
//! This file is the driver, [`Router`]: the skynet node of a visor. It owns the core (behind
//! one mutex), the transport [`Manager`] and the route groups, and is
//!
//! - the transports' [`PacketSink`]: a packet is handed to `Core::handle_packet` under the
//!   lock and, when it is to be forwarded, the same buffer goes straight to the next
//!   transport's queue (no channel hop, no allocation, no task switch); payloads for a local
//!   leg go to its group;
//! - the groups' [`LegTx`]: `Core::prepare_send` fills in the route id and names the
//!   transport;
//! - a timer task for the core's deadlines and the groups' housekeeping;
//! - the route setup: a path over the transport graph (built from discovery entries, see
//!   [`graph`]), tried in order, the next one disjoint from those that failed;
//! - dial by route policy ([`Router::dial`]) and accept: streams the peer opens in any group
//!   ask for a port with the dmsg port header and are handed to the visor's one port table
//!   through a [`PortSink`], exactly like dmsg streams.
//!
//! Lock order: the core, then the router state; never the other way, and neither is held
//! while calling into a group or a transport.

pub mod control;
pub mod core;
mod facade;
pub mod graph;
pub mod group;
pub mod path;
pub mod policy;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use async_executor::Executor;
use async_io::Timer;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use self::core::{Core, CoreConfig, Event, LegRef, TpHandle, Verdict};
use self::group::{GroupConfig, LegSendError, LegTx, RouteGroup};
use self::policy::RoutePolicy;
use crate::accept::{AcceptQueue, PortSink, Refusal};
use crate::crypto::{Keypair, PublicKey};
use crate::mux::Stream;
use crate::spawn::Spawn;
use crate::transport::{Manager, PacketSink, SendError, TpType, Transport};
use crate::wire::dmsg::{PORT_HEADER_LEN, PortHeader, PortRepr, PortStatus};

/// Paths tried per leg before giving up (each disjoint from the ones that failed).
pub const SETUP_ATTEMPTS: usize = 4;
/// How long an opened stream waits for the peer's answer to its port header, and an accepted
/// one for the header.
pub const PORT_TIMEOUT: Duration = Duration::from_secs(10);
/// An initiated group with no stream for this long is closed (its rules go at every hop).
pub const GROUP_IDLE: Duration = Duration::from_secs(60);
/// After a background (`auto`) setup to a peer failed, no other is tried for this long.
pub const AUTO_RETRY: Duration = Duration::from_secs(30);
/// Most route groups at once (initiated and accepted); beyond, a setup is refused and an
/// accepted leg is closed.
pub const MAX_GROUPS: usize = 1024;
/// Most route groups other nodes set up to us whose first leg arrived over one transport: a
/// quarter of [`MAX_GROUPS`], so one neighbour (minting fresh keys for every group, or
/// relaying for a crowd of them) cannot take every group slot from the rest.
pub const MAX_ACCEPTED_PER_TRANSPORT: usize = MAX_GROUPS / 4;
/// Accepted streams waiting for their port header, per router, at most.
pub const MAX_INCOMING: usize = 256;
/// Replacement attempts for a dead `mux:N` leg (0.5 s apart doubling to 8 s) before the group
/// carries on with fewer.
pub const REPLACE_ATTEMPTS: u32 = 12;
/// Bytes a group keeps in flight (sent, not yet acknowledged), at most: half a transport's
/// send queue, so one group alone never overfills the queue of its first hop — nor of a
/// forwarding hop, which sees at most this much of it at once. (The group resends what a
/// full queue dropped, but only on a timeout: a window larger than the queue turns every
/// burst into losses and the stream into a trickle.)
pub const GROUP_WINDOW: usize = 128 * 1024;

/// The route groups' settings: [`GROUP_WINDOW`] each way.
fn group_config() -> GroupConfig {
    use crate::wire::route::{HEADER_LEN, MAX_PAYLOAD_LEN};
    GroupConfig {
        max_unacked: GROUP_WINDOW,
        // A peer keeping to the same bound never has more unacknowledged: one frame of
        // slack for the one the reader holds.
        max_rx: GROUP_WINDOW + 2 * (HEADER_LEN + MAX_PAYLOAD_LEN),
        ..GroupConfig::default()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn short(pk: &PublicKey) -> String {
    path::short(pk)
}

/// Why a dial over skynet failed; the variant is the kind (the app layer maps it to its
/// `NetError`), the text one line for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No path satisfies the policy, or every setup along one failed (why).
    NoRoute(String),
    /// The peer serves no such port.
    NoListener(String),
    /// The peer's backlog for the port is full.
    Busy(String),
    /// The setup, the handshake or the port answer took too long.
    Timeout(String),
    /// The group or the stream failed underneath.
    Failed(String),
}

impl RouteError {
    /// The one line for the user.
    pub fn message(&self) -> &str {
        match self {
            RouteError::NoRoute(m)
            | RouteError::NoListener(m)
            | RouteError::Busy(m)
            | RouteError::Timeout(m)
            | RouteError::Failed(m) => m,
        }
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for RouteError {}

/// A stream in a route group, asked for a port (the dmsg port header). What dials return and
/// what the port table is handed.
pub struct RouteStream {
    /// The stream (a mux stream of the group).
    pub stream: Stream,
    /// The peer visor.
    pub peer: PublicKey,
    /// Our port.
    pub local_port: u16,
    /// The peer's port.
    pub remote_port: u16,
}

impl fmt::Debug for RouteStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteStream")
            .field("peer", &self.peer)
            .field("local_port", &self.local_port)
            .field("remote_port", &self.remote_port)
            .finish()
    }
}

/// Names the app serving a port (for `app routes`); the visor's port table.
pub type PortOwner = Box<dyn Fn(u16) -> Option<String> + Send + Sync>;

/// A route group as the driver knows it: `(peer, group id, initiated here)`; group ids are
/// the source's, so the two sides of one group have the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct GroupKey {
    peer: PublicKey,
    id: u64,
    initiator: bool,
}

/// One leg of a group, for the view.
#[derive(Debug, Clone)]
struct LegMeta {
    leg: LegRef,
    path: Vec<PublicKey>,
    down: Option<String>,
}

struct GroupEntry {
    group: RouteGroup,
    policy: RoutePolicy,
    legs: Vec<LegMeta>,
    apps: BTreeSet<String>,
    /// Last time a stream was opened on it or it had one.
    used: Instant,
    /// Legs being replaced.
    replacing: usize,
    /// For a group set up to us: the transport its first leg arrived over (the share of
    /// [`MAX_ACCEPTED_PER_TRANSPORT`] it counts against).
    arrived: Option<TpHandle>,
}

/// The answer to one setup this node started.
enum SetupDone {
    Up(LegRef),
    Failed(String),
}

type Waiters = Vec<Arc<AcceptQueue<Result<GroupKey, RouteError>>>>;

#[derive(Default)]
struct State {
    groups: HashMap<GroupKey, GroupEntry>,
    legs: HashMap<u32, GroupKey>,
    setups: HashMap<u32, Arc<AcceptQueue<SetupDone>>>,
    /// Group setups in progress, by (peer, policy): later dials for the same wait for it.
    dialing: HashMap<(PublicKey, RoutePolicy), Waiters>,
    /// Background setups that failed, by peer: when.
    auto_failed: HashMap<PublicKey, Instant>,
    next_group: u64,
    incoming: usize,
}

struct Inner {
    keys: Keypair,
    local: PublicKey,
    ex: Arc<Executor<'static>>,
    epoch: Instant,
    core: Mutex<Core>,
    tp: OnceLock<Manager>,
    st: Mutex<State>,
    /// Wakes the timer task (something new may have an earlier deadline).
    kick: AcceptQueue<()>,
    graph: graph::GraphCache,
    sink: OnceLock<Arc<dyn PortSink<RouteStream>>>,
    owner: OnceLock<PortOwner>,
    drops: Mutex<BTreeMap<&'static str, u64>>,
    group_cfg: GroupConfig,
    /// [`RouterConfig::accepted_per_transport`].
    accepted_share: usize,
}

/// The skynet node of a visor (module docs). Cloning gives another handle.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("pk", &self.inner.local)
            .finish_non_exhaustive()
    }
}

/// What [`Router::start`] needs besides its manager.
#[derive(Debug, Clone, Default)]
pub struct RouterConfig {
    /// The core's tunables.
    pub core: CoreConfig,
    /// Groups set up to us over one transport, at most (`None`: [`MAX_ACCEPTED_PER_TRANSPORT`]).
    pub accepted_per_transport: Option<usize>,
}

/// The transports' sink: a weak handle, so the manager does not keep the router alive.
struct Sink(Weak<Inner>);

/// One group's legs' way out.
struct GroupTx {
    router: Weak<Inner>,
    key: GroupKey,
}

impl Router {
    /// Starts the node of `keys` on `ex`: the core, the transport manager `manager` makes
    /// (handed the router's packet sink), the timer task. `links` gives the transport graph
    /// (each node's published links, from discovery).
    pub fn start(
        ex: Arc<Executor<'static>>,
        keys: Keypair,
        manager: impl FnOnce(Arc<dyn PacketSink>) -> Manager,
        links: Option<Arc<dyn graph::LinkSource>>,
        cfg: RouterConfig,
    ) -> Router {
        let local = *keys.public();
        let inner = Arc::new(Inner {
            keys: Keypair::from_seed(keys.seed()),
            local,
            ex: ex.clone(),
            epoch: Instant::now(),
            core: Mutex::new(Core::new(local, cfg.core)),
            tp: OnceLock::new(),
            st: Mutex::new(State {
                next_group: initial_group_id(&keys),
                ..State::default()
            }),
            kick: AcceptQueue::new(1),
            graph: graph::GraphCache::new(links),
            sink: OnceLock::new(),
            owner: OnceLock::new(),
            drops: Mutex::new(BTreeMap::new()),
            group_cfg: group_config(),
            accepted_share: cfg
                .accepted_per_transport
                .unwrap_or(MAX_ACCEPTED_PER_TRANSPORT),
        });
        let mgr = manager(Arc::new(Sink(Arc::downgrade(&inner))));
        let _ = inner.tp.set(mgr);
        ex.spawn_boxed(timer_task(inner.clone())).detach();
        Router { inner }
    }

    /// This node's key.
    pub fn pk(&self) -> PublicKey {
        self.inner.local
    }

    /// The transport manager.
    pub fn transports(&self) -> &Manager {
        self.inner.mgr()
    }

    /// Where streams the peers open go (the visor's port table), and who serves each port.
    pub fn set_port_sink(&self, sink: Arc<dyn PortSink<RouteStream>>, owner: PortOwner) {
        let _ = self.inner.sink.set(sink);
        let _ = self.inner.owner.set(owner);
    }

    /// True if a group to `pk` is open now (any policy; either side set it up): an `auto`
    /// dial uses it without a setup.
    pub fn has_live(&self, pk: &PublicKey) -> bool {
        self.inner.find_group(pk, &RoutePolicy::Auto).is_some()
    }

    /// Sets up an `auto` group to `pk` in the background unless one is open or being set
    /// up, or one failed in the last [`AUTO_RETRY`].
    pub fn prepare(&self, pk: PublicKey, app: &str) {
        if pk == self.inner.local || self.has_live(&pk) {
            return;
        }
        {
            let mut st = lock(&self.inner.st);
            if st.dialing.contains_key(&(pk, RoutePolicy::Auto)) {
                return;
            }
            if let Some(t) = st.auto_failed.get(&pk) {
                if t.elapsed() < AUTO_RETRY {
                    return;
                }
                st.auto_failed.remove(&pk);
            }
        }
        let inner = self.inner.clone();
        let app = app.to_string();
        self.inner
            .ex
            .spawn_boxed(async move {
                if let Err(e) = inner.group_for(pk, &RoutePolicy::Auto, &app).await {
                    log::debug!("router: background route to {}: {e}", short(&pk));
                    lock(&inner.st).auto_failed.insert(pk, Instant::now());
                }
            })
            .detach();
    }

    /// Opens a stream to `pk`:`port` (from our `src_port`) over a route group chosen by
    /// `policy` (an open one, else one set up now; `auto` takes any open group to `pk` or
    /// sets up the shortest route) and asks for the port. `app` is named in the group's view.
    /// `first` (may be empty) goes out right behind the port header, before the answer (as
    /// `DmsgClient::dial_first`).
    pub async fn dial(
        &self,
        pk: PublicKey,
        port: u16,
        src_port: u16,
        policy: &RoutePolicy,
        app: &str,
        first: &[u8],
    ) -> Result<RouteStream, RouteError> {
        if pk == self.inner.local {
            return Err(RouteError::NoRoute(
                "a route to this visor itself is not needed".into(),
            ));
        }
        if *policy == RoutePolicy::Dmsg {
            return Err(RouteError::NoRoute(
                "route policy dmsg uses no route".into(),
            ));
        }
        let key = self.inner.group_for(pk, policy, app).await?;
        self.inner.open_port(key, port, src_port, first).await
    }

    /// Closes every group (Close on their legs) and takes the transports down.
    pub fn shutdown(&self) {
        let groups: Vec<RouteGroup> = lock(&self.inner.st)
            .groups
            .values()
            .map(|e| e.group.clone())
            .collect();
        for g in groups {
            g.close();
        }
        self.inner.mgr().shutdown();
    }
}

/// Group ids start at a value of this node's own (so a restarted node does not reuse the
/// ids its peers may still hold rules for), then count up.
fn initial_group_id(keys: &Keypair) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let h = crate::crypto::hmac::sha512(&[keys.public().as_bytes(), &t.to_le_bytes()]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    u64::from_le_bytes(b) >> 1
}

impl Inner {
    fn mgr(&self) -> &Manager {
        self.tp.get().expect("set in Router::start")
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn count(&self, what: &'static str) {
        let mut d = lock(&self.drops);
        let c = d.entry(what).or_insert(0);
        *c = c.saturating_add(1);
    }

    fn wake_timer(&self) {
        let _ = self.kick.try_push(());
    }

    /// Sends a routing packet on the transport with handle `h`.
    fn send_on(&self, h: u32, packet: Vec<u8>) -> Result<(), SendError> {
        match self.mgr().by_handle(h) {
            Some(t) => t.send(packet),
            None => Err(SendError::Closed),
        }
    }

    /// Drains the core's events (after any call into it) and acts on them, no lock held;
    /// then wakes the timer task (a deadline may have moved).
    fn pump(self: &Arc<Self>) {
        self.pump_quiet();
        self.wake_timer();
    }

    fn event(self: &Arc<Self>, ev: Event) {
        match ev {
            Event::Send { tp, packet } => {
                if self.send_on(tp, packet).is_err() {
                    self.count("control packet not sent (transport full or down)");
                }
            }
            Event::LegUp {
                leg,
                setup_id,
                group_id,
                peer,
                path,
                initiator,
                ..
            } => {
                if initiator {
                    let q = lock(&self.st).setups.remove(&setup_id);
                    match q {
                        Some(q) if q.try_push(SetupDone::Up(leg)).is_ok() => {}
                        _ => {
                            // Nobody waits for it any more (timed out): the rules go.
                            lock(&self.core).close_leg(leg, self.now());
                        }
                    }
                } else {
                    self.accepted_leg(leg, group_id, peer, path);
                }
            }
            Event::SetupFailed {
                setup_id, reason, ..
            } => {
                if let Some(q) = lock(&self.st).setups.remove(&setup_id) {
                    let _ = q.try_push(SetupDone::Failed(reason));
                }
            }
            Event::LegDown { leg, reason } => self.leg_gone(leg, &reason, false),
        }
    }

    /// A leg the peer set up to us: it joins the peer's group here, or starts one.
    fn accepted_leg(
        self: &Arc<Self>,
        leg: LegRef,
        group_id: u64,
        peer: PublicKey,
        path: Vec<PublicKey>,
    ) {
        let key = GroupKey {
            peer,
            id: group_id,
            initiator: false,
        };
        let arrived = lock(&self.core).leg_transport(leg);
        let mut share_full = false;
        let existing = {
            let mut st = lock(&self.st);
            let live = st
                .groups
                .get(&key)
                .is_some_and(|e| e.group.failure().is_none());
            if live {
                st.legs.insert(leg.0, key);
                let e = st.groups.get_mut(&key).expect("checked above");
                e.legs.push(LegMeta {
                    leg,
                    path: path.clone(),
                    down: None,
                });
                Some(Some(e.group.clone()))
            } else if st.groups.len() >= MAX_GROUPS {
                None
            } else if arrived.is_some_and(|tp| {
                st.groups.values().filter(|e| e.arrived == Some(tp)).count() >= self.accepted_share
            }) {
                share_full = true;
                None
            } else {
                st.groups.remove(&key);
                st.legs.insert(leg.0, key);
                Some(None)
            }
        };
        match existing {
            None if share_full => {
                self.count("accepted leg refused (group share of its transport full)");
                lock(&self.core).close_leg(leg, self.now());
            }
            None => {
                self.count("accepted leg refused (group limit)");
                lock(&self.core).close_leg(leg, self.now());
            }
            Some(Some(g)) => g.add_leg(group::LegRef(leg.0)),
            Some(None) => {
                let tx = Arc::new(GroupTx {
                    router: Arc::downgrade(self),
                    key,
                });
                let g = RouteGroup::responder(
                    &self.ex,
                    &self.keys,
                    peer,
                    group::LegRef(leg.0),
                    tx,
                    self.group_cfg.clone(),
                );
                lock(&self.st).groups.insert(
                    key,
                    GroupEntry {
                        group: g.clone(),
                        policy: RoutePolicy::Auto,
                        legs: vec![LegMeta {
                            leg,
                            path,
                            down: None,
                        }],
                        apps: BTreeSet::new(),
                        used: Instant::now(),
                        replacing: 0,
                        arrived,
                    },
                );
                self.spawn_accept(key, g);
            }
        }
    }

    /// A leg of ours is gone (`dead`: the group found it silent, else the core saw its route
    /// fail): the group hears of it, its rule goes, and a `mux:N` group gets a replacement.
    fn leg_gone(self: &Arc<Self>, leg: LegRef, why: &str, dead: bool) {
        let found = {
            let mut st = lock(&self.st);
            let Some(key) = st.legs.remove(&leg.0) else {
                return;
            };
            st.groups.get_mut(&key).map(|e| {
                if let Some(m) = e.legs.iter_mut().find(|m| m.leg == leg) {
                    m.down = Some(why.to_string());
                }
                let replace = key.initiator
                    && e.policy.legs() > 1
                    && e.group.failure().is_none()
                    && e.legs.iter().filter(|m| m.down.is_none()).count() + e.replacing
                        < e.policy.legs();
                if replace {
                    e.replacing += 1;
                }
                (key, e.group.clone(), replace)
            })
        };
        if dead {
            lock(&self.core).close_leg(leg, self.now());
            self.pump();
        }
        let Some((key, g, replace)) = found else {
            return;
        };
        if !dead {
            g.leg_down(group::LegRef(leg.0), why);
        }
        if replace {
            let me = self.clone();
            self.ex
                .spawn_boxed(async move { me.replace_leg(key).await })
                .detach();
        }
    }

    /// Sets up a leg for `key` disjoint from its live ones and adds it (a few tries).
    async fn replace_leg(self: Arc<Self>, key: GroupKey) {
        for attempt in 0..REPLACE_ATTEMPTS {
            let snapshot = {
                let st = lock(&self.st);
                st.groups.get(&key).map(|e| {
                    let live: Vec<PublicKey> = e
                        .legs
                        .iter()
                        .filter(|m| m.down.is_none())
                        .flat_map(|m| intermediates(&m.path))
                        .collect();
                    let dead: Vec<PublicKey> = e
                        .legs
                        .iter()
                        .filter(|m| m.down.is_some())
                        .flat_map(|m| intermediates(&m.path))
                        .collect();
                    let index = e.legs.len().min(255) as u8;
                    (
                        e.policy.clone(),
                        live,
                        dead,
                        index,
                        e.group.failure().is_some(),
                    )
                })
            };
            let Some((policy, live, dead, index, failed)) = snapshot else {
                return;
            };
            if failed {
                return;
            }
            let Some(spec) = policy.path_spec() else {
                return;
            };
            // Avoid the dead legs' hops too, while that leaves a path.
            let mut avoid = live.clone();
            avoid.extend(dead);
            let got = match self.setup_leg(key.peer, &spec, &avoid, key.id, index).await {
                Ok(x) => Ok(x),
                Err(_) => self.setup_leg(key.peer, &spec, &live, key.id, index).await,
            };
            match got {
                Ok((leg, path)) => {
                    let g = {
                        let mut st = lock(&self.st);
                        let g = st.groups.get_mut(&key).map(|e| {
                            e.replacing = e.replacing.saturating_sub(1);
                            e.legs.push(LegMeta {
                                leg,
                                path: path.clone(),
                                down: None,
                            });
                            e.group.clone()
                        });
                        if g.is_some() {
                            st.legs.insert(leg.0, key);
                        }
                        g
                    };
                    match g {
                        Some(g) => {
                            log::info!(
                                "router: group to {}: new leg {} via {}",
                                short(&key.peer),
                                leg.0,
                                path_text(&path)
                            );
                            g.add_leg(group::LegRef(leg.0));
                        }
                        None => lock(&self.core).close_leg(leg, self.now()),
                    }
                    self.pump();
                    return;
                }
                Err(e) => {
                    log::info!(
                        "router: group to {}: no replacement leg yet ({e})",
                        short(&key.peer)
                    );
                    // 0.5 s doubling to 8 s: about a minute and a half in all.
                    Timer::after(Duration::from_millis(500 << attempt.min(4))).await;
                }
            }
        }
        if let Some(e) = lock(&self.st).groups.get_mut(&key) {
            e.replacing = e.replacing.saturating_sub(1);
        }
    }

    /// An open group to `pk` for `policy`: `auto` takes any (either side's); the others only
    /// one this node set up with the same policy.
    fn find_group(&self, pk: &PublicKey, policy: &RoutePolicy) -> Option<GroupKey> {
        let st = lock(&self.st);
        let mut best: Option<(GroupKey, usize)> = None;
        for (k, e) in &st.groups {
            if k.peer != *pk || e.group.failure().is_some() || e.group.session().is_none() {
                continue;
            }
            let fits = match policy {
                RoutePolicy::Auto => true,
                p => k.initiator && e.policy == *p,
            };
            if !fits {
                continue;
            }
            // Prefer the one with the most live legs, then our own.
            let live =
                e.legs.iter().filter(|m| m.down.is_none()).count() * 2 + usize::from(k.initiator);
            if best.is_none_or(|(_, b)| live > b) {
                best = Some((*k, live));
            }
        }
        best.map(|(k, _)| k)
    }

    /// An open group for `policy` to `pk`, set up now if there is none (one setup per
    /// (peer, policy) at a time: later callers wait for it).
    async fn group_for(
        self: &Arc<Self>,
        pk: PublicKey,
        policy: &RoutePolicy,
        app: &str,
    ) -> Result<GroupKey, RouteError> {
        if let Some(k) = self.find_group(&pk, policy) {
            self.note_app(k, app);
            return Ok(k);
        }
        let wait = {
            let mut st = lock(&self.st);
            match st.dialing.get_mut(&(pk, policy.clone())) {
                Some(w) => {
                    let q = Arc::new(AcceptQueue::new(1));
                    w.push(q.clone());
                    Some(q)
                }
                None => {
                    st.dialing.insert((pk, policy.clone()), Vec::new());
                    None
                }
            }
        };
        if let Some(q) = wait {
            let got = q
                .accept()
                .await
                .unwrap_or_else(|| Err(RouteError::Failed("the route setup was abandoned".into())));
            if let Ok(k) = got {
                self.note_app(k, app);
            }
            return got;
        }
        let got = self.setup_group(pk, policy).await;
        let waiters = lock(&self.st)
            .dialing
            .remove(&(pk, policy.clone()))
            .unwrap_or_default();
        for w in waiters {
            let _ = w.try_push(got.clone());
        }
        if let Ok(k) = got {
            self.note_app(k, app);
        }
        got
    }

    fn note_app(&self, key: GroupKey, app: &str) {
        if let Some(e) = lock(&self.st).groups.get_mut(&key) {
            e.used = Instant::now();
            if !app.is_empty() && !e.apps.contains(app) {
                e.apps.insert(app.to_string());
            }
        }
    }

    /// Sets up every leg of a new group (node-disjoint for `mux:N`), then the group and its
    /// handshake.
    async fn setup_group(
        self: &Arc<Self>,
        pk: PublicKey,
        policy: &RoutePolicy,
    ) -> Result<GroupKey, RouteError> {
        let spec = policy
            .path_spec()
            .ok_or_else(|| RouteError::NoRoute("route policy dmsg uses no route".into()))?;
        let id = {
            let mut st = lock(&self.st);
            if st.groups.len() >= MAX_GROUPS {
                return Err(RouteError::Failed(format!(
                    "this visor has {MAX_GROUPS} route groups, the most it keeps"
                )));
            }
            st.next_group = st.next_group.wrapping_add(1);
            st.next_group
        };
        let want = policy.legs().max(1);
        let mut legs: Vec<LegMeta> = Vec::new();
        let mut avoid: Vec<PublicKey> = Vec::new();
        for i in 0..want {
            match self.setup_leg(pk, &spec, &avoid, id, i as u8).await {
                Ok((leg, path)) => {
                    avoid.extend(intermediates(&path));
                    legs.push(LegMeta {
                        leg,
                        path,
                        down: None,
                    });
                }
                Err(e) => {
                    {
                        let mut c = lock(&self.core);
                        for m in &legs {
                            c.close_leg(m.leg, self.now());
                        }
                    }
                    self.pump();
                    return Err(match e {
                        RouteError::NoRoute(m) if i > 0 => RouteError::NoRoute(format!(
                            "{policy}: {i} disjoint route(s) to {}, not {want}: {m}",
                            short(&pk)
                        )),
                        e => e,
                    });
                }
            }
        }
        let key = GroupKey {
            peer: pk,
            id,
            initiator: true,
        };
        {
            let mut st = lock(&self.st);
            for m in &legs {
                st.legs.insert(m.leg.0, key);
            }
        }
        let tx = Arc::new(GroupTx {
            router: Arc::downgrade(self),
            key,
        });
        let g = RouteGroup::initiator(
            &self.ex,
            &self.keys,
            pk,
            legs.iter().map(|m| group::LegRef(m.leg.0)).collect(),
            tx,
            self.group_cfg.clone(),
        );
        for m in &legs {
            log::info!(
                "router: route to {} ({policy}) leg {} via {}",
                short(&pk),
                m.leg.0,
                path_text(&m.path)
            );
        }
        lock(&self.st).groups.insert(
            key,
            GroupEntry {
                group: g.clone(),
                policy: policy.clone(),
                legs,
                apps: BTreeSet::new(),
                used: Instant::now(),
                replacing: 0,
                arrived: None,
            },
        );
        self.spawn_accept(key, g.clone());
        let limit = self.group_cfg.handshake_timeout + Duration::from_secs(1);
        let ready = future::or(g.ready(), async {
            Timer::after(limit).await;
            Err(group::GroupError(format!(
                "no end-to-end handshake within {} s",
                limit.as_secs()
            )))
        })
        .await;
        match ready {
            Ok(()) => Ok(key),
            Err(e) => {
                g.close();
                self.drop_group(key);
                Err(RouteError::Timeout(format!(
                    "route group to {}: {e}",
                    short(&pk)
                )))
            }
        }
    }

    /// One leg: paths over the graph (refreshed once when none fits or all failed), tried in
    /// order, each next one avoiding the hops of those that failed.
    async fn setup_leg(
        self: &Arc<Self>,
        pk: PublicKey,
        spec: &path::PathSpec,
        avoid: &[PublicKey],
        group_id: u64,
        index: u8,
    ) -> Result<(LegRef, Vec<PublicKey>), RouteError> {
        let mut failures: Vec<String> = Vec::new();
        let mut avoid = avoid.to_vec();
        let mut tried = 0;
        for fresh in [false, true] {
            let g = self.graph(fresh).await;
            let found = path::paths(&g, &self.local, &pk, spec, &avoid, SETUP_ATTEMPTS);
            let paths = match found {
                Ok(p) => p,
                Err(why) if fresh => {
                    failures.push(why);
                    break;
                }
                Err(_) => continue,
            };
            for p in paths {
                if tried >= SETUP_ATTEMPTS {
                    break;
                }
                tried += 1;
                match self.try_setup(&p, group_id, index).await {
                    Ok(leg) => return Ok((leg, p)),
                    Err(why) => {
                        log::info!("router: setup via {} failed: {why}", path_text(&p));
                        failures.push(why);
                        avoid.extend(intermediates(&p));
                    }
                }
            }
        }
        failures.dedup();
        Err(RouteError::NoRoute(format!(
            "no route to {}: {}",
            short(&pk),
            failures.join("; ")
        )))
    }

    /// One setup along `path`; its answer, bounded by the core's per-hop timeouts.
    async fn try_setup(
        self: &Arc<Self>,
        path: &[PublicKey],
        group_id: u64,
        index: u8,
    ) -> Result<LegRef, String> {
        let q = Arc::new(AcceptQueue::new(1));
        let sid = {
            let mut c = lock(&self.core);
            let sid = c
                .start_setup(path, group_id, index, self.now())
                .map_err(|e| format!("{}: {e}", short(&self.local)))?;
            lock(&self.st).setups.insert(sid, q.clone());
            sid
        };
        self.pump();
        let limit = core::PER_HOP_TIMEOUT * (path.len() as u32) + Duration::from_secs(1);
        let got = future::or(async { q.accept().await }, async {
            Timer::after(limit).await;
            None
        })
        .await;
        lock(&self.st).setups.remove(&sid);
        match got {
            Some(SetupDone::Up(leg)) => Ok(leg),
            Some(SetupDone::Failed(why)) => Err(why),
            None => Err(format!("no answer within {} s", limit.as_secs())),
        }
    }

    async fn graph(self: &Arc<Self>, fresh: bool) -> path::Graph {
        let own: Vec<(PublicKey, u8)> = self
            .mgr()
            .list()
            .into_iter()
            .filter(|t| t.state == "up")
            .map(|t| (t.peer, t.kind.to_byte()))
            .collect();
        self.graph.get(&self.ex, self.local, own, fresh).await
    }

    /// Opens a stream in `key`'s group and asks the peer for `port`, `first` behind the
    /// header.
    async fn open_port(
        self: &Arc<Self>,
        key: GroupKey,
        port: u16,
        src_port: u16,
        first: &[u8],
    ) -> Result<RouteStream, RouteError> {
        let g = lock(&self.st)
            .groups
            .get(&key)
            .map(|e| e.group.clone())
            .ok_or_else(|| RouteError::Failed("the route group ended".into()))?;
        let who = format!("{} (over skynet)", key.peer);
        let work = async {
            let mut s = g
                .open()
                .await
                .map_err(|e| RouteError::Failed(format!("{who}: {e}")))?;
            let to = PortRepr {
                dst_port: port,
                src_port,
            };
            let io = |e: io::Error| RouteError::Failed(format!("{who}: {e}"));
            s.write_all(&to.with_first(first)).await.map_err(io)?;
            let mut status = [0u8; 1];
            s.read_exact(&mut status).await.map_err(io)?;
            match PortStatus::from_byte(status[0]) {
                PortStatus::Ok => Ok(RouteStream {
                    stream: s,
                    peer: key.peer,
                    local_port: src_port,
                    remote_port: port,
                }),
                PortStatus::Closed => Err(RouteError::NoListener(format!(
                    "{who} serves no port {port}"
                ))),
                PortStatus::Busy => Err(RouteError::Busy(format!("{who} is busy; try again"))),
                PortStatus::Unknown(b) => Err(RouteError::Failed(format!(
                    "{who} answered unknown status {b}"
                ))),
            }
        };
        future::or(work, async {
            Timer::after(PORT_TIMEOUT).await;
            Err(RouteError::Timeout(format!(
                "{who}: no answer for port {port} within {} s",
                PORT_TIMEOUT.as_secs()
            )))
        })
        .await
    }

    /// Serves the streams the peer opens in `g` until it ends.
    fn spawn_accept(self: &Arc<Self>, key: GroupKey, g: RouteGroup) {
        let me = Arc::downgrade(self);
        self.ex
            .spawn_boxed(async move {
                while let Some(s) = g.accept().await {
                    let Some(inner) = me.upgrade() else {
                        return;
                    };
                    {
                        let mut st = lock(&inner.st);
                        if st.incoming >= MAX_INCOMING {
                            drop(st);
                            inner.count("incoming stream refused (too many waiting for a port)");
                            s.reset();
                            continue;
                        }
                        st.incoming += 1;
                    }
                    let i2 = inner.clone();
                    inner
                        .ex
                        .spawn_boxed(async move {
                            i2.incoming(key, s).await;
                            lock(&i2.st).incoming -= 1;
                        })
                        .detach();
                }
            })
            .detach();
    }

    /// A stream the peer opened: its port header, then the port table's answer.
    async fn incoming(self: &Arc<Self>, key: GroupKey, mut s: Stream) {
        let mut hdr = [0u8; PORT_HEADER_LEN];
        let got = future::or(async { s.read_exact(&mut hdr).await.ok() }, async {
            Timer::after(PORT_TIMEOUT).await;
            None
        })
        .await;
        let Some(()) = got else {
            self.count("incoming stream without a port header");
            s.reset();
            return;
        };
        let Ok(h) = PortHeader::new_checked(&hdr[..]).and_then(|h| PortRepr::parse(&h)) else {
            self.count("incoming stream with a bad port header");
            s.reset();
            return;
        };
        let slot = match self.sink.get() {
            Some(sink) => sink.reserve(h.dst_port),
            None => Err(Refusal::Closed),
        };
        let slot = match slot {
            Ok(slot) => slot,
            Err(r) => {
                let st = match r {
                    Refusal::Closed => PortStatus::Closed,
                    Refusal::Busy => PortStatus::Busy,
                };
                let _ = s.write_all(&[st.to_byte()]).await;
                // FIN, not a reset: a reset could overtake the status byte.
                let _ = s.close().await;
                return;
            }
        };
        if s.write_all(&[PortStatus::Ok.to_byte()]).await.is_err() {
            return;
        }
        if let Some(name) = self.owner.get().and_then(|f| f(h.dst_port)) {
            self.note_app(key, &name);
        }
        slot.deliver(RouteStream {
            stream: s,
            peer: key.peer,
            local_port: h.dst_port,
            remote_port: h.src_port,
        });
    }

    /// Forgets a group and closes its remaining legs' rules.
    fn drop_group(self: &Arc<Self>, key: GroupKey) {
        let legs: Vec<LegRef> = {
            let mut st = lock(&self.st);
            let Some(e) = st.groups.remove(&key) else {
                return;
            };
            let legs: Vec<LegRef> = e.legs.iter().map(|m| m.leg).collect();
            for l in &legs {
                if st.legs.get(&l.0) == Some(&key) {
                    st.legs.remove(&l.0);
                }
            }
            legs
        };
        {
            let mut c = lock(&self.core);
            for l in legs {
                c.close_leg(l, self.now());
            }
        }
        self.pump();
    }

    /// Once a second: ended groups go, idle initiated ones are closed.
    fn housekeeping(self: &Arc<Self>) {
        let (ended, idle) = {
            let mut st = lock(&self.st);
            let mut ended = Vec::new();
            let mut idle = Vec::new();
            for (k, e) in st.groups.iter_mut() {
                if e.group.failure().is_some() {
                    ended.push(*k);
                    continue;
                }
                if e.group.session().is_some_and(|s| s.stream_count() > 0) {
                    e.used = Instant::now();
                } else if k.initiator && e.used.elapsed() >= GROUP_IDLE {
                    idle.push((*k, e.group.clone()));
                }
            }
            st.auto_failed.retain(|_, t| t.elapsed() < AUTO_RETRY);
            (ended, idle)
        };
        for (k, g) in idle {
            log::debug!("router: closing idle group to {}", short(&k.peer));
            g.close();
            self.drop_group(k);
        }
        for k in ended {
            self.drop_group(k);
        }
    }
}

fn intermediates(path: &[PublicKey]) -> Vec<PublicKey> {
    if path.len() <= 2 {
        return Vec::new();
    }
    path[1..path.len() - 1].to_vec()
}

fn path_text(path: &[PublicKey]) -> String {
    path.iter().map(short).collect::<Vec<_>>().join(" → ")
}

/// The core's deadlines and the housekeeping. It holds the node for as long as the executor
/// runs it (a visor's node lives as long as the process).
async fn timer_task(inner: Arc<Inner>) {
    let mut housekeeping = Instant::now();
    loop {
        let next = lock(&inner.core).poll_timeout();
        let cap = Instant::now() + Duration::from_secs(1);
        let at = next.map_or(cap, |d| (inner.epoch + d).min(cap));
        // Woken early when something new may have an earlier deadline.
        future::or(
            async {
                Timer::at(at).await;
            },
            async {
                inner.kick.accept().await;
            },
        )
        .await;
        let now = inner.now();
        lock(&inner.core).handle_timeout(now);
        inner.pump_quiet();
        if housekeeping.elapsed() >= Duration::from_secs(1) {
            housekeeping = Instant::now();
            inner.housekeeping();
        }
    }
}

impl Inner {
    /// Drains the core's events and acts on them, no lock held (the timer task calls this;
    /// everyone else [`Inner::pump`]).
    fn pump_quiet(self: &Arc<Self>) {
        loop {
            let batch: Vec<Event> = {
                let mut c = lock(&self.core);
                std::iter::from_fn(|| c.poll_event()).collect()
            };
            if batch.is_empty() {
                return;
            }
            for ev in batch {
                self.event(ev);
            }
        }
    }
}

fn rank(kind: TpType) -> u8 {
    match kind {
        TpType::Stcp => 0,
        TpType::Dmsg => 1,
    }
}

impl PacketSink for Sink {
    fn packet(&self, tp: &Transport, mut buf: Vec<u8>) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let now = inner.now();
        let verdict = lock(&inner.core).handle_packet(tp.handle(), &mut buf, now);
        match verdict {
            Verdict::Forward(to) => {
                if let Err(e) = inner.send_on(to, buf) {
                    inner.count(match e {
                        SendError::Full => "forward: next transport full",
                        _ => "forward: next transport down",
                    });
                }
            }
            Verdict::Deliver(leg) => {
                let g = {
                    let st = lock(&inner.st);
                    st.legs
                        .get(&leg.0)
                        .and_then(|k| st.groups.get(k))
                        .map(|e| e.group.clone())
                };
                match g {
                    Some(g) => g.deliver(group::LegRef(leg.0), buf),
                    None => inner.count("packet for a leg with no group"),
                }
            }
            Verdict::Consumed => inner.pump(),
            Verdict::Drop(_) => {}
        }
    }

    fn up(&self, tp: &Transport) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        lock(&inner.core).transport_up_ranked(tp.handle(), tp.peer(), rank(tp.kind()));
        inner.graph.invalidate();
    }

    fn down(&self, tp: &Transport, _why: &str) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let now = inner.now();
        lock(&inner.core).transport_down(tp.handle(), now);
        inner.graph.invalidate();
        inner.pump();
    }
}

impl LegTx for GroupTx {
    fn send(&self, leg: group::LegRef, mut packet: Vec<u8>) -> Result<(), LegSendError> {
        let Some(inner) = self.router.upgrade() else {
            return Err(LegSendError::Gone);
        };
        let now = inner.now();
        let to = lock(&inner.core).prepare_send(LegRef(leg.0), &mut packet, now);
        let Some(to) = to else {
            return Err(LegSendError::Gone);
        };
        match inner.send_on(to, packet) {
            Ok(()) => Ok(()),
            Err(SendError::Full) => {
                inner.count("leg: transport full");
                Err(LegSendError::Full)
            }
            Err(_) => Err(LegSendError::Gone),
        }
    }

    fn leg_dead(&self, leg: group::LegRef, why: &str) {
        let Some(inner) = self.router.upgrade() else {
            return;
        };
        // Not from inside the group's call: a task of its own.
        let why = why.to_string();
        let i2 = inner.clone();
        inner
            .ex
            .spawn_boxed(async move { i2.leg_gone(LegRef(leg.0), &why, true) })
            .detach();
    }

    fn ended(&self, why: &str) {
        let Some(inner) = self.router.upgrade() else {
            return;
        };
        log::info!("router: group to {} ended: {why}", short(&self.key.peer));
        let key = self.key;
        let i2 = inner.clone();
        inner
            .ex
            .spawn_boxed(async move { i2.drop_group(key) })
            .detach();
    }
}
