//! The control facade of the skynet node: what the visor's RPC (and through it the CLI) asks
//! the router and the transport manager, in plain views — strings and numbers only, so that
//! `rpc`, `visor::rpc` and `cli` need nothing from `transport` or the router's internals.
//! `router::Router` (the driver) implements [`Control`]; the visor hands it to its RPC server
//! as an `Option<Arc<dyn Control>>` (`None`: it runs no skynet node; the RPC answers 503).
//!
//! Identifiers as shown: PKs and transport ids in lowercase hex (64 and 32 digits), route ids
//! as numbers, transport types `stcp`/`dmsg`, route policies in the form
//! `router::policy::RoutePolicy` parses and displays (`auto`, `dmsg`, `direct`, `hops:K`,
//! `via:<pk>[,<pk>…]`, `mux:N`).

use core::future::Future;
use core::pin::Pin;
use std::time::Duration;

use crate::crypto::PublicKey;

/// A boxed future borrowing the facade (the shape of `app::BoxFut`; the router is below the
/// app layer, so it has its own).
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the RPC asks the skynet node. Every method answers promptly (the futures wait on the
/// network, bounded: `add_transport` ≤ ~10 s, `ping` ≤ ~count × 5 s); errors are one line
/// for an operator ("no transport type `udp` (known: stcp, dmsg)", "no route to 3f2a9c1b:
/// no path with ≥ 3 hops").
pub trait Control: Send + Sync {
    /// Every transport, up or redialing.
    fn transports(&self) -> Vec<TpView>;
    /// The transport types this node can dial (`stcp`, `dmsg`).
    fn transport_types(&self) -> Vec<String>;
    /// Dials a transport of `kind` to `pk` (waits for the first connect); `persistent` ones
    /// redial when they drop.
    fn add_transport(
        &self,
        pk: PublicKey,
        kind: String,
        persistent: bool,
    ) -> BoxFut<'_, Result<TpView, String>>;
    /// Closes the transport with id `id` (32 hex digits) and stops redialing it.
    fn remove_transport(&self, id: &str) -> Result<(), String>;
    /// The rule table.
    fn rules(&self) -> Vec<RuleInfo>;
    /// The route groups, every one or those an app (by name) initiates or accepts.
    fn groups(&self, app: Option<&str>) -> Vec<GroupView>;
    /// `count` round trips to `pk` over a route chosen by `policy` (the text of a route
    /// policy); each round trip's time.
    fn ping(
        &self,
        pk: PublicKey,
        policy: String,
        count: u32,
    ) -> BoxFut<'_, Result<Vec<Duration>, String>>;
    /// The drop counters: reason → packets dropped for it (reasons with a count only, or
    /// all; sorted by reason).
    fn drops(&self) -> Vec<(String, u64)>;
}

/// One transport.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TpView {
    /// The transport id (32 hex digits).
    pub id: String,
    /// The peer (hex PK).
    pub peer: String,
    /// `stcp` or `dmsg`.
    pub kind: String,
    /// `up`, `connecting`, `backoff`, … (the transport layer's word).
    pub state: String,
    /// This end dialed it.
    pub initiator: bool,
    /// It is redialed when it drops (config or `tp add`).
    pub persistent: bool,
    /// The last keep-alive round trip, µs (0: none measured yet).
    pub rtt_us: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Seconds since it came up (or was added, while not up).
    pub age_secs: u64,
    /// Bytes its buffers hold allocated now (send queue, writer buffer; the transport
    /// layer's accounting).
    pub buffer_bytes: u64,
}

/// Where a rule sends packets in one direction: a transport and the route id the node at its
/// other end allocated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleHop {
    /// The transport id (32 hex digits).
    pub tp: String,
    /// The peer at its other end (hex PK).
    pub peer: String,
    /// The route id packets carry on it.
    pub route_id: u32,
}

/// One rule of the table, keyed by the id this node allocated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleInfo {
    /// The local route id.
    pub id: u32,
    /// `source`, `intermediary` or `destination`.
    pub kind: String,
    /// `pending` (set up, not acknowledged) or `ready`.
    pub state: String,
    /// Towards the route's source (`None` at the source).
    pub towards_src: Option<RuleHop>,
    /// Towards the route's destination (`None` at the destination, and while pending).
    pub towards_dst: Option<RuleHop>,
    /// The route group it belongs to (as the source numbered it).
    pub group_id: u64,
    /// The leg of that group.
    pub leg: u8,
    /// Seconds since it was installed.
    pub age_secs: u64,
    /// Seconds since a packet used it.
    pub idle_secs: u64,
    /// Packets that used it.
    pub packets: u64,
    /// Bytes that used it (whole routing packets).
    pub bytes: u64,
}

/// One leg (a route) of a route group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LegView {
    /// The local route id of the leg's rule.
    pub id: u32,
    /// The path as this visor sees it: every node's PK (hex) from this visor to the peer
    /// (reversed at the destination).
    pub hops: Vec<String>,
    /// The type of each transport hop, in the order of `hops` (`hops.len() - 1` of them;
    /// `?` where the published links do not say).
    pub tp_types: Vec<String>,
    /// The last measured round trip, µs (0: none yet).
    pub rtt_us: u64,
    /// `setting-up`, `up`, `down`, … (the group's word).
    pub state: String,
}

/// One route group: the app-visible connection to a peer over one or more legs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupView {
    /// The peer (hex PK).
    pub peer: String,
    /// The route policy it was set up with (`auto` for accepted groups).
    pub policy: String,
    /// This node set it up (else the peer did).
    pub initiator: bool,
    /// The apps whose streams use it.
    pub apps: Vec<String>,
    /// `handshake`, `open`, `closed`, `failed: …` (the group's word).
    pub state: String,
    /// Its legs.
    pub legs: Vec<LegView>,
    /// Application bytes received.
    pub rx_bytes: u64,
    /// Application bytes sent.
    pub tx_bytes: u64,
    /// Seconds since it was set up.
    pub age_secs: u64,
    /// Streams open on it.
    pub streams: u64,
}
