//! The sans-IO router core (DESIGN.md §3.7–3.8, `docs/protocol.md` "Skynet: route setup"):
//! the rule table, zero-copy forwarding and the source-driven route setup. Routing packets and
//! `now` go in ([`Core::handle_packet`], [`Core::handle_timeout`], [`Core::transport_down`]),
//! verdicts and [`Event`]s come out. No I/O, no clock, no locks.
//!
//! **Rules.** Route ids are chosen by the receiver: a packet arriving here carries an id this
//! node allocated. Each node of a route holds one rule per leg, keyed by its own id:
//!
//! - source: `id → Consume{leg}`, forward pointer `towards_dst = (tp_next, id_next)`;
//! - intermediary: `towards_src = (tp_a, id_a)`, `towards_dst = (tp_b, id_b)`; a packet on
//!   `tp_a` goes to `(tp_b, id_b)`, one on `tp_b` to `(tp_a, id_a)`, one on any other
//!   transport is dropped ([`DropReason::WrongTransport`]);
//! - destination: `id → Consume{leg}`, back pointer `towards_src = (tp_prev, id_prev)`.
//!
//! Forwarding ([`Verdict::Forward`]) rewrites the route id of the caller's buffer in place and
//! names the transport to write that same buffer to: no allocation, no copy.
//!
//! **Setup.** [`Core::start_setup`] installs a pending source rule and sends a setup request
//! to the path's second node; each intermediary checks it is `path[hop]`, that the request came
//! from `path[hop − 1]` and that no key repeats, reserves an id, installs a pending rule and
//! passes the request on; the destination installs its rule, reports [`Event::LegUp`] and
//! acks; each hop completes its rule on the ack and acks back with its own id. A hop that
//! cannot go on answers a nack whose reason names it by the first 8 hex digits of its key;
//! every hop on the way back deletes its pending rule and relays the nack. A pending rule
//! expires after `per_hop_timeout × hops still ahead`, and the node then nacks "no answer
//! from X within N s" (its upstream waits one hop longer, so the nearest node to a silent hop
//! reports it); an ack that arrives after its rule gave up is answered with a Close, so the
//! hops that completed behind it let go at once. Complete rules expire after `idle_timeout` without a packet (checked by a
//! sweep at the earliest possible expiry, so a rule goes at most one sweep late); Close and
//! Error packets are forwarded like data and remove the rule at each hop. When a transport
//! goes down, every rule through it goes: legs ending here report [`Event::LegDown`] (or
//! [`Event::SetupFailed`] while pending), intermediaries send an Error packet towards the
//! surviving side (so the endpoint learns at once) or a nack upstream for a pending setup.
//!
//! **Bounds.** At most `max_rules` rules (a setup beyond is nacked "route table full"), of
//! which at most `max_rules_per_transport` set up by requests from one transport; setup
//! requests per transport limited by a token bucket (`setup_rate`/s, burst `setup_burst`;
//! beyond are dropped, counted); [`Core::poll_event`] must be drained by the driver after each
//! call (each input queues at most two events; a transport going down queues one per rule
//! through it). Everything dropped is counted under a named [`DropReason`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

use crate::crypto::PublicKey;
use crate::router::path::short;
use crate::wire::route::{HEADER_LEN, Packet, PacketType, Repr};
use crate::wire::setup::{
    ACK_LEN, Ack, AckRepr, Nack, NackRepr, PK_LEN, Request, RequestRepr, clip_reason,
};

#[cfg(test)]
mod tests;

/// A small local handle the transport layer gives each link.
pub type TpHandle = u32;

/// A leg ending at this node: the local route id of its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegRef(pub u32);

impl fmt::Display for LegRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "leg {}", self.0)
    }
}

/// Rules a node holds at most by default.
pub const MAX_RULES: usize = 8192;
/// Default share of the rule table that setups arriving over one transport may hold: a single
/// neighbour (or a pair of colluding ones) cannot fill the table for everybody else.
pub const MAX_RULES_PER_TRANSPORT: usize = MAX_RULES / 4;
/// How long a pending rule waits per hop still ahead of it.
pub const PER_HOP_TIMEOUT: Duration = Duration::from_secs(2);
/// A complete rule without a packet for this long is removed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Setup requests per second a transport may send (token bucket rate).
pub const SETUP_RATE: u32 = 20;
/// Setup requests a transport may send at once (token bucket size).
pub const SETUP_BURST: u32 = 40;

/// Tunables of a core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Most rules at once; a setup beyond is nacked "route table full".
    pub max_rules: usize,
    /// Most rules set up by requests that arrived over one transport; a setup beyond is
    /// nacked "route table share of this transport full".
    pub max_rules_per_transport: usize,
    /// Wait per hop still ahead for a setup answer.
    pub per_hop_timeout: Duration,
    /// Idle time after which a complete rule is removed.
    pub idle_timeout: Duration,
    /// Setup requests per second per transport.
    pub setup_rate: u32,
    /// Setup request burst per transport.
    pub setup_burst: u32,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            max_rules: MAX_RULES,
            max_rules_per_transport: MAX_RULES_PER_TRANSPORT,
            per_hop_timeout: PER_HOP_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            setup_rate: SETUP_RATE,
            setup_burst: SETUP_BURST,
        }
    }
}

/// One end of a rule: a transport and the route id the node behind it allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hop {
    /// The transport.
    pub tp: TpHandle,
    /// The route id to write on packets sent there.
    pub id: u32,
}

/// What role this node plays on a rule's route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// The leg starts here.
    Source,
    /// Packets are forwarded.
    Intermediary,
    /// The leg ends here.
    Destination,
}

impl fmt::Display for RuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleKind::Source => "source",
            RuleKind::Intermediary => "intermediary",
            RuleKind::Destination => "destination",
        })
    }
}

/// What [`Core::handle_packet`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The buffer's route id was rewritten in place: write the same buffer to this transport.
    Forward(TpHandle),
    /// The payload is for a local leg (Data, Handshake, Ping, Pong on a route).
    Deliver(LegRef),
    /// A control packet was handled (see [`Core::poll_event`]); a refused setup is also
    /// counted in [`Core::drops`].
    Consumed,
    /// Dropped and counted.
    Drop(DropReason),
}

/// Something the driver must do or learn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Send this control packet (a whole routing packet) on the transport.
    Send {
        /// The transport.
        tp: TpHandle,
        /// Header ‖ payload.
        packet: Vec<u8>,
    },
    /// A leg is ready at this end.
    LegUp {
        /// The leg.
        leg: LegRef,
        /// The setup that made it.
        setup_id: u32,
        /// Its route group.
        group_id: u64,
        /// Its index in the group.
        leg_index: u8,
        /// The other end of the leg.
        peer: PublicKey,
        /// The path, source first.
        path: Vec<PublicKey>,
        /// True at the source.
        initiator: bool,
    },
    /// A setup this node started failed.
    SetupFailed {
        /// The setup.
        setup_id: u32,
        /// Its route group.
        group_id: u64,
        /// Its index in the group.
        leg_index: u8,
        /// Why, naming the failing node.
        reason: String,
    },
    /// A leg ending here is gone.
    LegDown {
        /// The leg.
        leg: LegRef,
        /// Why.
        reason: String,
    },
}

/// Why a packet was dropped or a setup refused (each counted in [`DropCounters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than its header or the payload it announces.
    Malformed,
    /// Bytes after the packet.
    Oversize,
    /// A type code this version does not know.
    UnknownType,
    /// A route packet with route id 0 (transport-level packets never reach the router).
    RouteZero,
    /// No rule has this route id.
    UnknownRoute,
    /// The packet came on a transport the rule does not use.
    WrongTransport,
    /// A route packet for a rule whose setup is not complete.
    NotReady,
    /// A setup payload that fails its view, or a request not meant for this node.
    BadSetup,
    /// A transport sent setups faster than its token bucket allows.
    SetupRate,
    /// A setup refused because the rule table is full.
    TableFull,
    /// A setup refused: a key repeats in its path.
    Loop,
    /// A setup refused: no live transport to the next hop.
    NoTransport,
    /// An ack or nack that matches no pending setup.
    UnexpectedControl,
    /// A packet from a transport handle that is not up.
    UnknownTransport,
}

const REASONS: [DropReason; 14] = [
    DropReason::Malformed,
    DropReason::Oversize,
    DropReason::UnknownType,
    DropReason::RouteZero,
    DropReason::UnknownRoute,
    DropReason::WrongTransport,
    DropReason::NotReady,
    DropReason::BadSetup,
    DropReason::SetupRate,
    DropReason::TableFull,
    DropReason::Loop,
    DropReason::NoTransport,
    DropReason::UnexpectedControl,
    DropReason::UnknownTransport,
];

impl DropReason {
    /// The name shown by `route ls` / the drop counters.
    pub fn as_str(&self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Oversize => "oversize",
            DropReason::UnknownType => "unknown type",
            DropReason::RouteZero => "route id 0",
            DropReason::UnknownRoute => "unknown route id",
            DropReason::WrongTransport => "wrong transport",
            DropReason::NotReady => "route not ready",
            DropReason::BadSetup => "bad setup",
            DropReason::SetupRate => "setup rate",
            DropReason::TableFull => "route table full",
            DropReason::Loop => "loop in path",
            DropReason::NoTransport => "no transport",
            DropReason::UnexpectedControl => "unexpected control",
            DropReason::UnknownTransport => "unknown transport",
        }
    }

    fn index(self) -> usize {
        REASONS.iter().position(|r| *r == self).unwrap_or(0)
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts per [`DropReason`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropCounters {
    counts: [u64; REASONS.len()],
}

impl DropCounters {
    /// The count of one reason.
    pub fn get(&self, r: DropReason) -> u64 {
        self.counts[r.index()]
    }

    /// Every reason with its count (zeros included), in a fixed order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REASONS.iter().map(|r| (r.as_str(), self.get(*r)))
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn count(&mut self, r: DropReason) {
        let c = &mut self.counts[r.index()];
        *c = c.saturating_add(1);
    }
}

/// Why [`Core::start_setup`] refused to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupError {
    /// The path is not 2..=9 keys starting here.
    BadPath(String),
    /// A key repeats in the path.
    Loop(PublicKey),
    /// No live transport to the second node.
    NoTransport(PublicKey),
    /// The rule table is full.
    TableFull,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::BadPath(why) => f.write_str(why),
            SetupError::Loop(pk) => write!(f, "loop in path ({} repeated)", short(pk)),
            SetupError::NoTransport(pk) => write!(f, "no transport to {}", short(pk)),
            SetupError::TableFull => f.write_str("route table full"),
        }
    }
}

impl std::error::Error for SetupError {}

/// One rule as `route ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleView {
    /// This node's route id.
    pub id: u32,
    /// Role of this node.
    pub kind: RuleKind,
    /// Still waiting for the setup's answer.
    pub pending: bool,
    /// Where packets towards the source go (none at the source).
    pub towards_src: Option<Hop>,
    /// Where packets towards the destination go (none at the destination, or while pending).
    pub towards_dst: Option<Hop>,
    /// The neighbour towards the source.
    pub src_peer: Option<PublicKey>,
    /// The neighbour towards the destination.
    pub dst_peer: Option<PublicKey>,
    /// The leg's other end (endpoints only).
    pub remote: Option<PublicKey>,
    /// The setup that made it.
    pub setup_id: u32,
    /// The route group.
    pub group_id: u64,
    /// The leg's index in its group.
    pub leg_index: u8,
    /// Since the rule was installed.
    pub age: Duration,
    /// Since its last packet.
    pub idle: Duration,
    /// Packets through it.
    pub packets: u64,
    /// Bytes through it (whole routing packets).
    pub bytes: u64,
}

#[derive(Debug)]
struct Pending {
    deadline: Duration,
    timeout: Duration,
    next_tp: TpHandle,
}

#[derive(Debug)]
struct Rule {
    kind: RuleKind,
    setup_id: u32,
    group_id: u64,
    leg_index: u8,
    src: Option<Hop>,
    dst: Option<Hop>,
    src_pk: Option<PublicKey>,
    dst_pk: Option<PublicKey>,
    /// The whole path at endpoints; empty at intermediaries.
    path: Vec<PublicKey>,
    pending: Option<Pending>,
    created: Duration,
    last: Duration,
    packets: u64,
    bytes: u64,
}

impl Rule {
    fn new(kind: RuleKind, setup_id: u32, group_id: u64, leg_index: u8, now: Duration) -> Rule {
        Rule {
            kind,
            setup_id,
            group_id,
            leg_index,
            src: None,
            dst: None,
            src_pk: None,
            dst_pk: None,
            path: Vec::new(),
            pending: None,
            created: now,
            last: now,
            packets: 0,
            bytes: 0,
        }
    }

    fn remote(&self) -> Option<PublicKey> {
        match self.kind {
            RuleKind::Source => self.path.last().copied(),
            RuleKind::Destination => self.path.first().copied(),
            RuleKind::Intermediary => None,
        }
    }

    fn uses(&self, tp: TpHandle) -> bool {
        self.src.is_some_and(|h| h.tp == tp)
            || self.dst.is_some_and(|h| h.tp == tp)
            || self.pending.as_ref().is_some_and(|p| p.next_tp == tp)
    }
}

#[derive(Debug)]
struct TpState {
    peer: PublicKey,
    rank: u8,
    /// Setup tokens in thousandths.
    milli_tokens: u64,
    refilled: Duration,
}

/// The router core of one node.
#[derive(Debug)]
pub struct Core {
    local: PublicKey,
    me: String,
    cfg: CoreConfig,
    transports: HashMap<TpHandle, TpState>,
    rules: HashMap<u32, Rule>,
    /// Pending deadlines: (deadline, rule id).
    timers: BTreeSet<(Duration, u32)>,
    /// The earliest time a complete rule may have gone idle.
    sweep_at: Option<Duration>,
    next_id: u32,
    next_setup: u32,
    events: VecDeque<Event>,
    drops: DropCounters,
}

fn packet(ty: PacketType, route_id: u32, len: usize, fill: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let repr = Repr::new(ty, route_id, len).expect("control payloads are small");
    let mut buf = vec![0u8; repr.buffer_len()];
    let mut p = Packet::new_unchecked(&mut buf[..]);
    repr.emit(&mut p).expect("sized by buffer_len");
    fill(p.payload_mut());
    buf
}

fn nack_packet(route_id: u32, setup_id: u32, reason: &str) -> Vec<u8> {
    let repr = NackRepr::new(setup_id, clip_reason(reason)).expect("clipped");
    packet(PacketType::SetupNack, route_id, repr.buffer_len(), |b| {
        repr.emit(&mut Nack::new_unchecked(b)).expect("sized")
    })
}

fn ack_packet(route_id: u32, setup_id: u32, id: u32) -> Vec<u8> {
    let repr = AckRepr { setup_id, id };
    packet(PacketType::SetupAck, route_id, ACK_LEN, |b| {
        repr.emit(&mut Ack::new_unchecked(b)).expect("sized")
    })
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    format!("{s}")
}

impl Core {
    /// A core for the node `local`.
    pub fn new(local: PublicKey, cfg: CoreConfig) -> Core {
        Core {
            me: short(&local),
            local,
            cfg,
            transports: HashMap::new(),
            rules: HashMap::new(),
            timers: BTreeSet::new(),
            sweep_at: None,
            next_id: 1,
            next_setup: 1,
            events: VecDeque::new(),
            drops: DropCounters::default(),
        }
    }

    /// This node's key.
    pub fn local(&self) -> &PublicKey {
        &self.local
    }

    /// A transport to `peer` is up (rank 0: preferred).
    pub fn transport_up(&mut self, tp: TpHandle, peer: PublicKey) {
        self.transport_up_ranked(tp, peer, 0);
    }

    /// A transport to `peer` is up; of several to one peer, setups use the lowest `rank` (the
    /// driver gives stcp 0 and dmsg 1), then the lowest handle.
    pub fn transport_up_ranked(&mut self, tp: TpHandle, peer: PublicKey, rank: u8) {
        self.transports.insert(
            tp,
            TpState {
                peer,
                rank,
                milli_tokens: u64::from(self.cfg.setup_burst) * 1000,
                refilled: Duration::ZERO,
            },
        );
    }

    /// A transport is gone: every rule through it is removed (module docs).
    pub fn transport_down(&mut self, tp: TpHandle, _now: Duration) {
        let Some(state) = self.transports.remove(&tp) else {
            return;
        };
        let dead = short(&state.peer);
        let mut ids: Vec<u32> = self
            .rules
            .iter()
            .filter(|(_, r)| r.uses(tp))
            .map(|(id, _)| *id)
            .collect();
        crate::sort::sort(&mut ids);
        for id in ids {
            let Some(rule) = self.remove_rule(id) else {
                continue;
            };
            let why = format!("{}: transport to {dead} down", self.me);
            match (rule.kind, rule.pending.is_some()) {
                (RuleKind::Source, true) => self.events.push_back(Event::SetupFailed {
                    setup_id: rule.setup_id,
                    group_id: rule.group_id,
                    leg_index: rule.leg_index,
                    reason: why,
                }),
                (RuleKind::Source | RuleKind::Destination, _) => {
                    self.events.push_back(Event::LegDown {
                        leg: LegRef(id),
                        reason: why,
                    })
                }
                (RuleKind::Intermediary, true) => {
                    // The downstream side went away: tell the source side. (If the source
                    // side went away, nobody is left to tell; downstream rules expire.)
                    if let Some(src) = rule.src.filter(|s| s.tp != tp) {
                        self.send(src.tp, nack_packet(src.id, rule.setup_id, &why));
                    }
                }
                (RuleKind::Intermediary, false) => {
                    let survivor = if rule.src.is_some_and(|s| s.tp == tp) {
                        rule.dst
                    } else {
                        rule.src
                    };
                    if let Some(h) = survivor {
                        let msg = why.into_bytes();
                        self.send(
                            h.tp,
                            packet(PacketType::Error, h.id, msg.len(), |b| {
                                b.copy_from_slice(&msg)
                            }),
                        );
                    }
                }
            }
        }
    }

    /// Every packet from a transport: `buf` is the whole routing packet (header ‖ payload).
    pub fn handle_packet(&mut self, from: TpHandle, buf: &mut [u8], now: Duration) -> Verdict {
        let v = self.handle_inner(from, buf, now);
        if let Verdict::Drop(r) = v {
            self.drops.count(r);
        }
        v
    }

    fn handle_inner(&mut self, from: TpHandle, buf: &mut [u8], now: Duration) -> Verdict {
        if !self.transports.contains_key(&from) {
            return Verdict::Drop(DropReason::UnknownTransport);
        }
        let Ok(pkt) = Packet::new_checked(&*buf) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        if pkt.total_len() != buf.len() {
            return Verdict::Drop(DropReason::Oversize);
        }
        let (ty, id) = (pkt.packet_type(), pkt.route_id());
        match ty {
            PacketType::SetupRequest if id == 0 => self.on_request(from, &buf[HEADER_LEN..], now),
            PacketType::SetupRequest => Verdict::Drop(DropReason::BadSetup),
            PacketType::SetupAck => self.on_ack(from, id, &buf[HEADER_LEN..], now),
            PacketType::SetupNack => self.on_nack(from, id, buf, now),
            PacketType::Unknown(_) => Verdict::Drop(DropReason::UnknownType),
            _ if id == 0 => Verdict::Drop(DropReason::RouteZero),
            _ => self.on_route_packet(from, id, ty, buf, now),
        }
    }

    fn on_route_packet(
        &mut self,
        from: TpHandle,
        id: u32,
        ty: PacketType,
        buf: &mut [u8],
        now: Duration,
    ) -> Verdict {
        let Some(rule) = self.rules.get_mut(&id) else {
            return Verdict::Drop(DropReason::UnknownRoute);
        };
        let terminal = matches!(ty, PacketType::Close | PacketType::Error);
        if rule.kind == RuleKind::Intermediary {
            let (Some(src), Some(dst)) = (rule.src, rule.dst) else {
                return Verdict::Drop(DropReason::NotReady);
            };
            let next = if from == src.tp {
                dst
            } else if from == dst.tp {
                src
            } else {
                return Verdict::Drop(DropReason::WrongTransport);
            };
            rule.last = now;
            rule.packets += 1;
            rule.bytes += buf.len() as u64;
            Packet::new_unchecked(&mut *buf).set_route_id(next.id);
            if terminal {
                self.remove_rule(id);
            }
            return Verdict::Forward(next.tp);
        }
        let near = if rule.kind == RuleKind::Source {
            rule.dst
        } else {
            rule.src
        };
        let Some(near) = near else {
            return Verdict::Drop(DropReason::NotReady);
        };
        if from != near.tp {
            return Verdict::Drop(DropReason::WrongTransport);
        }
        rule.last = now;
        rule.packets += 1;
        rule.bytes += buf.len() as u64;
        match ty {
            PacketType::KeepAlive => Verdict::Consumed,
            PacketType::Close | PacketType::Error => {
                let remote = rule.remote().map(|pk| short(&pk)).unwrap_or_default();
                let reason = if ty == PacketType::Close {
                    format!("closed by {remote}")
                } else {
                    let text = String::from_utf8_lossy(&buf[HEADER_LEN..]);
                    clip_reason(&text).to_string()
                };
                self.remove_rule(id);
                self.events.push_back(Event::LegDown {
                    leg: LegRef(id),
                    reason,
                });
                Verdict::Consumed
            }
            _ => Verdict::Deliver(LegRef(id)),
        }
    }

    fn refuse(
        &mut self,
        tp: TpHandle,
        reverse_id: u32,
        setup_id: u32,
        r: DropReason,
        why: &str,
    ) -> Verdict {
        self.drops.count(r);
        let reason = format!("{}: {why}", self.me);
        self.send(tp, nack_packet(reverse_id, setup_id, &reason));
        Verdict::Consumed
    }

    fn take_token(&mut self, tp: TpHandle, now: Duration) -> bool {
        let (rate, burst) = (
            u64::from(self.cfg.setup_rate),
            u64::from(self.cfg.setup_burst),
        );
        let Some(t) = self.transports.get_mut(&tp) else {
            return false;
        };
        let elapsed = now.saturating_sub(t.refilled).as_micros() as u64;
        t.refilled = t.refilled.max(now);
        t.milli_tokens = t
            .milli_tokens
            .saturating_add(elapsed.saturating_mul(rate) / 1000)
            .min(burst * 1000);
        if t.milli_tokens >= 1000 {
            t.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }

    fn on_request(&mut self, from: TpHandle, payload: &[u8], now: Duration) -> Verdict {
        if !self.take_token(from, now) {
            return Verdict::Drop(DropReason::SetupRate);
        }
        let Ok(view) = Request::new_checked(payload) else {
            return Verdict::Drop(DropReason::BadSetup);
        };
        if view.total_len() != payload.len() || view.reverse_id() == 0 {
            return Verdict::Drop(DropReason::BadSetup);
        }
        let Ok(req) = RequestRepr::parse(&view) else {
            return Verdict::Drop(DropReason::BadSetup);
        };
        let (hop, n) = (usize::from(req.hop), req.path.len());
        let (rev, sid) = (req.reverse_id, req.setup_id);
        let peer = self.transports[&from].peer;
        if req.path[hop] != *self.local.as_bytes() {
            return self.refuse(
                from,
                rev,
                sid,
                DropReason::BadSetup,
                &format!("not hop {hop} of the path"),
            );
        }
        if req.path[hop - 1] != *peer.as_bytes() {
            let why = format!(
                "setup from {} but the path names {}",
                short(&peer),
                crate::crypto::hex::encode(&req.path[hop - 1][..4])
            );
            return self.refuse(from, rev, sid, DropReason::BadSetup, &why);
        }
        if let Some(dup) = repeated(req.path) {
            let why = format!(
                "loop in path ({} repeated)",
                crate::crypto::hex::encode(&dup[..4])
            );
            return self.refuse(from, rev, sid, DropReason::Loop, &why);
        }
        if self.rules.len() >= self.cfg.max_rules {
            return self.refuse(from, rev, sid, DropReason::TableFull, "route table full");
        }
        // O(rules), paid only by setups, which the token bucket above already limits.
        let held = (self.rules.values())
            .filter(|r| r.src.is_some_and(|h| h.tp == from))
            .count();
        if held >= self.cfg.max_rules_per_transport {
            let why = format!(
                "route table share of this transport full (limit {})",
                self.cfg.max_rules_per_transport
            );
            return self.refuse(from, rev, sid, DropReason::TableFull, &why);
        }
        if hop == n - 1 {
            let mut path = Vec::with_capacity(n);
            for pk in req.path {
                match PublicKey::from_bytes(pk) {
                    Ok(pk) => path.push(pk),
                    Err(_) => {
                        return self.refuse(
                            from,
                            rev,
                            sid,
                            DropReason::BadSetup,
                            "invalid key in path",
                        );
                    }
                }
            }
            let id = self.alloc_id();
            self.rules.insert(
                id,
                Rule {
                    src: Some(Hop { tp: from, id: rev }),
                    src_pk: Some(peer),
                    path: path.clone(),
                    ..Rule::new(RuleKind::Destination, sid, req.group_id, req.leg, now)
                },
            );
            self.arm_sweep(now);
            self.send(from, ack_packet(rev, sid, id));
            self.events.push_back(Event::LegUp {
                leg: LegRef(id),
                setup_id: sid,
                group_id: req.group_id,
                leg_index: req.leg,
                peer: path[0],
                path,
                initiator: false,
            });
            return Verdict::Consumed;
        }
        let next = req.path[hop + 1];
        let Some((next_tp, next_pk)) = self.best_transport(&next) else {
            let why = format!("no transport to {}", crate::crypto::hex::encode(&next[..4]));
            return self.refuse(from, rev, sid, DropReason::NoTransport, &why);
        };
        let id = self.alloc_id();
        let timeout = self.cfg.per_hop_timeout * (n - 1 - hop) as u32;
        let deadline = now + timeout;
        self.rules.insert(
            id,
            Rule {
                src: Some(Hop { tp: from, id: rev }),
                src_pk: Some(peer),
                dst_pk: Some(next_pk),
                pending: Some(Pending {
                    deadline,
                    timeout,
                    next_tp,
                }),
                ..Rule::new(RuleKind::Intermediary, sid, req.group_id, req.leg, now)
            },
        );
        self.timers.insert((deadline, id));
        let len = payload.len();
        let pkt = packet(PacketType::SetupRequest, 0, len, |b| {
            b.copy_from_slice(payload);
            let mut v = Request::new_unchecked(b);
            v.set_hop(req.hop + 1);
            v.set_reverse_id(id);
        });
        self.send(next_tp, pkt);
        Verdict::Consumed
    }

    fn on_ack(&mut self, from: TpHandle, id: u32, payload: &[u8], now: Duration) -> Verdict {
        let Ok(view) = Ack::new_checked(payload) else {
            return Verdict::Drop(DropReason::BadSetup);
        };
        let Ok(ack) = AckRepr::parse(&view) else {
            return Verdict::Drop(DropReason::BadSetup);
        };
        if payload.len() != ACK_LEN || ack.id == 0 {
            return Verdict::Drop(DropReason::BadSetup);
        }
        let Some(rule) = self.rules.get_mut(&id) else {
            // A late ack for a setup this node gave up on (timed out, abandoned): the hops
            // behind it completed their rules, so close them now rather than leave them to
            // expire. The Close can only reach rules that run through this transport.
            // Paid from the setup token bucket, so acks with made-up ids cannot make this
            // node answer faster than it accepts setups.
            if self.take_token(from, now) {
                self.send(from, packet(PacketType::Close, ack.id, 1, |b| b[0] = 0));
            }
            return Verdict::Drop(DropReason::UnknownRoute);
        };
        let Some(p) = &rule.pending else {
            return Verdict::Drop(DropReason::UnexpectedControl);
        };
        if rule.setup_id != ack.setup_id {
            return Verdict::Drop(DropReason::UnexpectedControl);
        }
        if p.next_tp != from {
            return Verdict::Drop(DropReason::WrongTransport);
        }
        let deadline = p.deadline;
        rule.pending = None;
        rule.dst = Some(Hop {
            tp: from,
            id: ack.id,
        });
        rule.last = now;
        let (kind, src, sid) = (rule.kind, rule.src, rule.setup_id);
        let up = (kind == RuleKind::Source).then(|| Event::LegUp {
            leg: LegRef(id),
            setup_id: sid,
            group_id: rule.group_id,
            leg_index: rule.leg_index,
            peer: *rule.path.last().expect("a source rule holds its path"),
            path: rule.path.clone(),
            initiator: true,
        });
        self.timers.remove(&(deadline, id));
        self.arm_sweep(now);
        match (up, src) {
            (Some(ev), _) => self.events.push_back(ev),
            (None, Some(src)) => self.send(src.tp, ack_packet(src.id, sid, id)),
            (None, None) => {}
        }
        Verdict::Consumed
    }

    fn on_nack(&mut self, from: TpHandle, id: u32, buf: &[u8], _now: Duration) -> Verdict {
        let Ok(view) = Nack::new_checked(&buf[HEADER_LEN..]) else {
            return Verdict::Drop(DropReason::BadSetup);
        };
        if view.total_len() != buf.len() - HEADER_LEN {
            return Verdict::Drop(DropReason::BadSetup);
        }
        let Some(rule) = self.rules.get(&id) else {
            return Verdict::Drop(DropReason::UnknownRoute);
        };
        let Some(p) = &rule.pending else {
            return Verdict::Drop(DropReason::UnexpectedControl);
        };
        if rule.setup_id != view.setup_id() {
            return Verdict::Drop(DropReason::UnexpectedControl);
        }
        if p.next_tp != from {
            return Verdict::Drop(DropReason::WrongTransport);
        }
        let rule = self.remove_rule(id).expect("looked up above");
        match (rule.kind, rule.src) {
            (RuleKind::Source, _) => self.events.push_back(Event::SetupFailed {
                setup_id: rule.setup_id,
                group_id: rule.group_id,
                leg_index: rule.leg_index,
                reason: view.reason().to_string(),
            }),
            (_, Some(src)) => {
                let mut relay = buf.to_vec();
                Packet::new_unchecked(&mut relay[..]).set_route_id(src.id);
                self.send(src.tp, relay);
            }
            (_, None) => {}
        }
        Verdict::Consumed
    }

    /// Starts setting up a leg along `path` (this node first, 2..=9 keys). The answer comes as
    /// [`Event::LegUp`] or [`Event::SetupFailed`] with the returned setup id.
    pub fn start_setup(
        &mut self,
        path: &[PublicKey],
        group_id: u64,
        leg: u8,
        now: Duration,
    ) -> Result<u32, SetupError> {
        let n = path.len();
        if !(2..=9).contains(&n) {
            return Err(SetupError::BadPath(format!(
                "a path has 2 to 9 nodes (1 to 8 hops), not {n}"
            )));
        }
        if path[0] != self.local {
            return Err(SetupError::BadPath(format!(
                "the path starts at {}, not at this node",
                short(&path[0])
            )));
        }
        let raw: Vec<[u8; PK_LEN]> = path.iter().map(|pk| *pk.as_bytes()).collect();
        if let Some(dup) = repeated(&raw) {
            let pk = *path
                .iter()
                .find(|p| *p.as_bytes() == dup)
                .expect("from path");
            return Err(SetupError::Loop(pk));
        }
        if self.rules.len() >= self.cfg.max_rules {
            return Err(SetupError::TableFull);
        }
        let Some((tp, _)) = self.best_transport(path[1].as_bytes()) else {
            return Err(SetupError::NoTransport(path[1]));
        };
        let setup_id = self.next_setup;
        self.next_setup = self.next_setup.wrapping_add(1).max(1);
        let id = self.alloc_id();
        let timeout = self.cfg.per_hop_timeout * (n - 1) as u32;
        let deadline = now + timeout;
        self.rules.insert(
            id,
            Rule {
                dst_pk: Some(path[1]),
                path: path.to_vec(),
                pending: Some(Pending {
                    deadline,
                    timeout,
                    next_tp: tp,
                }),
                ..Rule::new(RuleKind::Source, setup_id, group_id, leg, now)
            },
        );
        self.timers.insert((deadline, id));
        let repr = RequestRepr {
            setup_id,
            group_id,
            leg,
            hop: 1,
            reverse_id: id,
            path: &raw,
        };
        let pkt = packet(PacketType::SetupRequest, 0, repr.buffer_len(), |b| {
            repr.emit(&mut Request::new_unchecked(b))
                .expect("checked path")
        });
        self.send(tp, pkt);
        Ok(setup_id)
    }

    /// To send on a leg: sets the route id in the 7-byte header of `buf` (type and payload
    /// length are the caller's) and returns the transport to write it to; `None` if the leg
    /// is not up here or `buf` is shorter than a header. Sending a Close or Error removes the
    /// leg's rule here too (as it does at every hop it passes).
    pub fn prepare_send(&mut self, leg: LegRef, buf: &mut [u8], now: Duration) -> Option<TpHandle> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        let rule = self.rules.get_mut(&leg.0)?;
        let hop = match rule.kind {
            RuleKind::Source => rule.dst?,
            RuleKind::Destination => rule.src?,
            RuleKind::Intermediary => return None,
        };
        rule.last = now;
        rule.packets += 1;
        rule.bytes += buf.len() as u64;
        let mut p = Packet::new_unchecked(buf);
        p.set_route_id(hop.id);
        if matches!(p.packet_type(), PacketType::Close | PacketType::Error) {
            self.remove_rule(leg.0);
        }
        Some(hop.tp)
    }

    /// The transport a leg ending here leaves by (towards the other end); `None` if the leg
    /// is not up here or is an intermediary's.
    pub fn leg_transport(&self, leg: LegRef) -> Option<TpHandle> {
        let rule = self.rules.get(&leg.0)?;
        match rule.kind {
            RuleKind::Source => rule.dst.map(|h| h.tp),
            RuleKind::Destination => rule.src.map(|h| h.tp),
            RuleKind::Intermediary => None,
        }
    }

    /// Closes a leg ending here: a Close packet goes towards the other end (removing the rule
    /// at each hop) and the local rule goes. A setup still pending is abandoned (the hops
    /// ahead expire their rules).
    pub fn close_leg(&mut self, leg: LegRef, _now: Duration) {
        let Some(rule) = self.rules.get(&leg.0) else {
            return;
        };
        if rule.kind == RuleKind::Intermediary {
            return;
        }
        let rule = self.remove_rule(leg.0).expect("looked up above");
        let hop = if rule.kind == RuleKind::Source {
            rule.dst
        } else {
            rule.src
        };
        if let Some(h) = hop {
            self.send(h.tp, packet(PacketType::Close, h.id, 1, |b| b[0] = 0));
        }
    }

    /// The next thing the driver must do or learn.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Core::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let first = self.timers.first().map(|(d, _)| *d);
        match (first, self.sweep_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expires pending setups whose deadline passed and complete rules idle too long.
    pub fn handle_timeout(&mut self, now: Duration) {
        while let Some(&(deadline, id)) = self.timers.first() {
            if deadline > now {
                break;
            }
            self.timers.pop_first();
            let Some(rule) = self.remove_rule(id) else {
                continue;
            };
            let Some(p) = &rule.pending else { continue };
            let next = rule.dst_pk.map(|pk| short(&pk)).unwrap_or_default();
            let reason = format!(
                "{}: no answer from {next} within {} s",
                self.me,
                secs(p.timeout)
            );
            match (rule.kind, rule.src) {
                (RuleKind::Source, _) => self.events.push_back(Event::SetupFailed {
                    setup_id: rule.setup_id,
                    group_id: rule.group_id,
                    leg_index: rule.leg_index,
                    reason,
                }),
                (_, Some(src)) => self.send(src.tp, nack_packet(src.id, rule.setup_id, &reason)),
                (_, None) => {}
            }
        }
        if self.sweep_at.is_some_and(|t| t <= now) {
            self.sweep(now);
        }
    }

    fn sweep(&mut self, now: Duration) {
        let idle = self.cfg.idle_timeout;
        let mut expired: Vec<u32> = self
            .rules
            .iter()
            .filter(|(_, r)| r.pending.is_none() && r.last + idle <= now)
            .map(|(id, _)| *id)
            .collect();
        crate::sort::sort(&mut expired);
        for id in expired {
            if let Some(rule) = self.remove_rule(id)
                && rule.kind != RuleKind::Intermediary
            {
                self.events.push_back(Event::LegDown {
                    leg: LegRef(id),
                    reason: format!("{}: idle for {} s", self.me, secs(idle)),
                });
            }
        }
        self.sweep_at = self
            .rules
            .values()
            .filter(|r| r.pending.is_none())
            .map(|r| r.last + idle)
            .min();
    }

    fn arm_sweep(&mut self, now: Duration) {
        let at = now + self.cfg.idle_timeout;
        self.sweep_at = Some(self.sweep_at.map_or(at, |t| t.min(at)));
    }

    /// The rule table, for `route ls` (ages and idle times as of `now`).
    pub fn rules(&self, now: Duration) -> impl Iterator<Item = RuleView> + '_ {
        self.rules.iter().map(move |(id, r)| RuleView {
            id: *id,
            kind: r.kind,
            pending: r.pending.is_some(),
            towards_src: r.src,
            towards_dst: r.dst,
            src_peer: r.src_pk,
            dst_peer: r.dst_pk,
            remote: r.remote(),
            setup_id: r.setup_id,
            group_id: r.group_id,
            leg_index: r.leg_index,
            age: now.saturating_sub(r.created),
            idle: now.saturating_sub(r.last),
            packets: r.packets,
            bytes: r.bytes,
        })
    }

    /// Rules held.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// What was dropped, by reason.
    pub fn drops(&self) -> &DropCounters {
        &self.drops
    }

    fn send(&mut self, tp: TpHandle, packet: Vec<u8>) {
        self.events.push_back(Event::Send { tp, packet });
    }

    fn remove_rule(&mut self, id: u32) -> Option<Rule> {
        let rule = self.rules.remove(&id)?;
        if let Some(p) = &rule.pending {
            self.timers.remove(&(p.deadline, id));
        }
        Some(rule)
    }

    fn alloc_id(&mut self) -> u32 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if id != 0 && !self.rules.contains_key(&id) {
                return id;
            }
        }
    }

    fn best_transport(&self, peer: &[u8; PK_LEN]) -> Option<(TpHandle, PublicKey)> {
        self.transports
            .iter()
            .filter(|(_, t)| t.peer.as_bytes() == peer)
            .min_by_key(|(h, t)| (t.rank, **h))
            .map(|(h, t)| (*h, t.peer))
    }
}

/// The first key that appears twice in `path`.
fn repeated(path: &[[u8; PK_LEN]]) -> Option<[u8; PK_LEN]> {
    path.iter()
        .enumerate()
        .find(|(i, pk)| path[..*i].contains(pk))
        .map(|(_, pk)| *pk)
}
