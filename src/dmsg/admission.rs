//! Who may start a handshake with the relay, decided before any cryptography (sans-IO: the
//! caller passes the time in, so the rules are tested without a clock).
//!
//! A connection is admitted with a [`Gate::try_begin`] that reserves, all at once, one of the
//! `max_sessions` session slots, one of the `max_handshakes` handshake slots, and — per source
//! address — one of `max_handshakes_per_addr` handshake slots, one of `max_sessions_per_addr`
//! session slots and one token of a bucket refilled at `handshake_rate` per second (holding
//! at most `handshake_burst`). A refused connection is closed at once, unread. When every
//! global handshake slot is taken, up to `max_waiting` connections wait for one, in arrival
//! order and unread ([`Gate::try_run`]; the caller bounds the wait), so that a burst of
//! honest clients is served rather than refused. When the handshake ends the caller says how
//! ([`Gate::handshake_succeeded`] keeps the session slot, [`Gate::handshake_failed`] gives
//! everything back), and [`Gate::session_ended`] frees the session slot. The session limit
//! is thus enforced when the connection arrives, not after its handshake: a burst of clients
//! can never push the relay past `max_sessions`.
//!
//! The source address is an IPv4 address, or the /64 prefix of an IPv6 address (one host
//! usually holds a whole /64). Loopback peers share one address for every local process (and
//! for every client of a local TLS or TCP proxy), so the per-address limits leave them alone
//! unless `limit_loopback` is set; the global limits always apply.
//!
//! [`ReplayCache`] remembers the last first handshake messages seen: Noise XK message 1 carries
//! a fresh ephemeral key, so a second copy of one is a replay (which costs its sender no
//! cryptography) and is dropped before the relay does any Diffie-Hellman for it.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The relay's admission limits (DESIGN.md §3.5; docs/cli.md `dmsg server` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most client sessions at once, those still in their handshake included.
    pub max_sessions: usize,
    /// Most handshakes in progress at once.
    pub max_handshakes: usize,
    /// Connections waiting (unread) for a handshake slot when all are taken.
    pub max_waiting: usize,
    /// How long a connection may wait for a handshake slot (the relay's part of the limit).
    pub max_wait: Duration,
    /// Most handshakes in progress at once from one source address.
    pub max_handshakes_per_addr: usize,
    /// Most sessions (handshakes included) from one source address.
    pub max_sessions_per_addr: usize,
    /// Handshake starts per second allowed from one source address (the bucket's refill).
    pub handshake_rate: u32,
    /// Handshake starts one source address may make at once after a quiet spell.
    pub handshake_burst: u32,
    /// Apply the per-address limits to loopback peers too.
    pub limit_loopback: bool,
    /// Source addresses tracked at once; a new address beyond it is refused.
    pub max_tracked_addrs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 2048,
            max_handshakes: 64,
            max_waiting: 256,
            max_wait: Duration::from_secs(2),
            max_handshakes_per_addr: 8,
            max_sessions_per_addr: 128,
            handshake_rate: 16,
            handshake_burst: 32,
            limit_loopback: false,
            max_tracked_addrs: 16_384,
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every session slot is taken.
    Full,
    /// `max_handshakes` handshakes are already running and `max_waiting` connections wait.
    Handshakes,
    /// This address already runs `max_handshakes_per_addr` handshakes.
    AddrHandshakes,
    /// This address already holds `max_sessions_per_addr` sessions.
    AddrSessions,
    /// This address starts handshakes faster than `handshake_rate`.
    AddrRate,
    /// Too many addresses are tracked at once.
    Addrs,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Full => "every session slot is taken",
            Refusal::Handshakes => "too many handshakes in progress or waiting",
            Refusal::AddrHandshakes => "too many handshakes in progress from this address",
            Refusal::AddrSessions => "too many sessions from this address",
            Refusal::AddrRate => "handshakes started too fast from this address",
            Refusal::Addrs => "too many source addresses tracked",
        })
    }
}

/// The per-address key: an IPv4 address (also when mapped into IPv6), or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrKey(u128);

impl AddrKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> AddrKey {
        match ip {
            IpAddr::V4(v4) => AddrKey(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey(u128::from(u32::from(v4))),
                None => AddrKey(u128::from(v6) & !((1u128 << 64) - 1)),
            },
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v| v.is_loopback()),
    }
}

/// Tokens are counted in thousandths, so a rate below one per second still refills.
const MILLI: u64 = 1000;

#[derive(Debug)]
struct AddrState {
    handshakes: usize,
    sessions: usize,
    /// Tokens × [`MILLI`] at `at`.
    tokens: u64,
    at: Instant,
}

impl AddrState {
    fn refill(&mut self, now: Instant, limits: &Limits) {
        let burst = u64::from(limits.handshake_burst) * MILLI;
        let elapsed = now.saturating_duration_since(self.at);
        // Milli-tokens gained: elapsed seconds × rate × 1000 = elapsed ms × rate.
        let gained = (elapsed.as_millis() as u64).saturating_mul(u64::from(limits.handshake_rate));
        self.tokens = self.tokens.saturating_add(gained).min(burst);
        self.at = now;
    }

    fn idle_and_full(&self, now: Instant, limits: &Limits) -> bool {
        if self.handshakes > 0 || self.sessions > 0 {
            return false;
        }
        let burst = u64::from(limits.handshake_burst) * MILLI;
        let elapsed = now.saturating_duration_since(self.at).as_millis() as u64;
        self.tokens
            .saturating_add(elapsed.saturating_mul(u64::from(limits.handshake_rate)))
            >= burst
    }
}

/// What one admitted connection holds, to give back through the [`Gate`].
#[derive(Debug, PartialEq, Eq)]
pub struct Ticket {
    id: u64,
    /// The per-address key, when the per-address limits apply to it.
    addr: Option<AddrKey>,
    /// Holds a global handshake slot (else it waits for one).
    running: bool,
}

impl Ticket {
    /// True once the connection holds a handshake slot and may start its handshake.
    pub fn running(&self) -> bool {
        self.running
    }
}

/// The admission state of one relay.
#[derive(Debug)]
pub struct Gate {
    limits: Limits,
    sessions: usize,
    handshakes: usize,
    peak_handshakes: usize,
    waiting: VecDeque<u64>,
    next_id: u64,
    addrs: HashMap<AddrKey, AddrState>,
}

impl Gate {
    /// A gate with nothing admitted.
    pub fn new(limits: Limits) -> Gate {
        Gate {
            limits,
            sessions: 0,
            handshakes: 0,
            peak_handshakes: 0,
            waiting: VecDeque::new(),
            next_id: 0,
            addrs: HashMap::new(),
        }
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Session slots taken (sessions up, and handshakes that would become one).
    pub fn sessions(&self) -> usize {
        self.sessions
    }

    /// Handshakes in progress.
    pub fn handshakes(&self) -> usize {
        self.handshakes
    }

    /// Connections waiting for a handshake slot.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The most handshakes that were ever in progress at once.
    pub fn peak_handshakes(&self) -> usize {
        self.peak_handshakes
    }

    /// Source addresses tracked now.
    pub fn tracked_addrs(&self) -> usize {
        self.addrs.len()
    }

    /// Admits a connection from `ip` arriving at `now`, reserving its session and handshake
    /// slots (or a place in the wait for a handshake slot: see [`Ticket::running`]), or says
    /// why not (nothing is reserved then).
    pub fn try_begin(&mut self, ip: IpAddr, now: Instant) -> Result<Ticket, Refusal> {
        if self.sessions >= self.limits.max_sessions {
            return Err(Refusal::Full);
        }
        // First come, first served: a newcomer does not pass connections already waiting.
        let run_now = self.handshakes < self.limits.max_handshakes && self.waiting.is_empty();
        if !run_now && self.waiting.len() >= self.limits.max_waiting {
            return Err(Refusal::Handshakes);
        }
        let per_addr = self.limits.limit_loopback || !is_loopback(ip);
        let addr = if per_addr {
            let key = AddrKey::of(ip);
            if !self.addrs.contains_key(&key) && self.addrs.len() >= self.limits.max_tracked_addrs {
                self.prune(now);
                if self.addrs.len() >= self.limits.max_tracked_addrs {
                    return Err(Refusal::Addrs);
                }
            }
            let limits = &self.limits;
            let st = self.addrs.entry(key).or_insert_with(|| AddrState {
                handshakes: 0,
                sessions: 0,
                tokens: u64::from(limits.handshake_burst) * MILLI,
                at: now,
            });
            st.refill(now, limits);
            let refusal = if st.handshakes >= limits.max_handshakes_per_addr {
                Some(Refusal::AddrHandshakes)
            } else if st.sessions >= limits.max_sessions_per_addr {
                Some(Refusal::AddrSessions)
            } else if st.tokens < MILLI {
                Some(Refusal::AddrRate)
            } else {
                None
            };
            if let Some(r) = refusal {
                if st.idle_and_full(now, limits) {
                    self.addrs.remove(&key);
                }
                return Err(r);
            }
            st.tokens -= MILLI;
            st.handshakes += 1;
            st.sessions += 1;
            Some(key)
        } else {
            None
        };
        self.sessions += 1;
        let id = self.next_id;
        self.next_id += 1;
        if run_now {
            self.handshakes += 1;
            self.peak_handshakes = self.peak_handshakes.max(self.handshakes);
        } else {
            self.waiting.push_back(id);
        }
        Ok(Ticket {
            id,
            addr,
            running: run_now,
        })
    }

    /// Gives the waiting `t` a handshake slot if one is free and `t` is first in line; true
    /// if `t` holds one now.
    pub fn try_run(&mut self, t: &mut Ticket) -> bool {
        if t.running {
            return true;
        }
        if self.handshakes < self.limits.max_handshakes && self.waiting.front() == Some(&t.id) {
            self.waiting.pop_front();
            self.handshakes += 1;
            self.peak_handshakes = self.peak_handshakes.max(self.handshakes);
            t.running = true;
        }
        t.running
    }

    fn end_handshake(&mut self, t: &mut Ticket) {
        if t.running {
            self.handshakes = self.handshakes.saturating_sub(1);
            t.running = false;
        } else if let Some(i) = self.waiting.iter().position(|id| *id == t.id) {
            self.waiting.remove(i);
        }
        if let Some(st) = t.addr.and_then(|k| self.addrs.get_mut(&k)) {
            st.handshakes = st.handshakes.saturating_sub(1);
        }
    }

    /// The handshake of `t` succeeded: its handshake slots are free, its session slots kept.
    pub fn handshake_succeeded(&mut self, t: &mut Ticket) {
        self.end_handshake(t);
    }

    /// The handshake of `t` failed, was abandoned, or never got a slot: everything it held is
    /// free.
    pub fn handshake_failed(&mut self, t: &mut Ticket, now: Instant) {
        self.end_handshake(t);
        self.session_ended(t, now);
    }

    /// The session of `t` ended: its session slots are free.
    pub fn session_ended(&mut self, t: &Ticket, now: Instant) {
        self.sessions = self.sessions.saturating_sub(1);
        if let Some(k) = t.addr
            && let Some(st) = self.addrs.get_mut(&k)
        {
            st.sessions = st.sessions.saturating_sub(1);
            if st.idle_and_full(now, &self.limits) {
                self.addrs.remove(&k);
            }
        }
    }

    /// Forgets the addresses that hold nothing and whose bucket has refilled (forgetting
    /// them changes nothing: a new entry starts full).
    fn prune(&mut self, now: Instant) {
        let limits = &self.limits;
        self.addrs.retain(|_, st| !st.idle_and_full(now, limits));
    }
}

/// The last `cap` first handshake messages seen (as keyed 64-bit hashes; the key is random
/// per process, so nobody can make two messages collide on purpose).
#[derive(Debug)]
pub struct ReplayCache {
    cap: usize,
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    hasher: RandomState,
}

impl ReplayCache {
    /// Remembers up to `cap` messages (8 bytes each, plus the set's overhead).
    pub fn new(cap: usize) -> ReplayCache {
        ReplayCache {
            cap: cap.max(1),
            seen: HashSet::new(),
            order: VecDeque::new(),
            hasher: RandomState::new(),
        }
    }

    /// Records `msg`; false if it was seen before (a replay).
    pub fn fresh(&mut self, msg: &[u8]) -> bool {
        let h = self.hasher.hash_one(msg);
        if !self.seen.insert(h) {
            return false;
        }
        self.order.push_back(h);
        if self.order.len() > self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }

    /// Messages remembered now.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True if nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limits() -> Limits {
        Limits {
            max_sessions: 100,
            max_handshakes: 10,
            max_handshakes_per_addr: 3,
            max_sessions_per_addr: 5,
            handshake_rate: 2,
            handshake_burst: 4,
            limit_loopback: false,
            max_tracked_addrs: 4,
            max_waiting: 0,
            max_wait: Duration::from_secs(2),
        }
    }

    #[test]
    fn session_slots_are_reserved_before_the_handshake() {
        let mut g = Gate::new(Limits {
            max_sessions: 5,
            ..Limits::default()
        });
        let t0 = Instant::now();
        // 20 arrive at once, none has finished its handshake yet: 5 admitted.
        let mut tickets: Vec<_> = (0..20)
            .filter_map(|_| g.try_begin(ip("127.0.0.1"), t0).ok())
            .collect();
        assert_eq!(tickets.len(), 5);
        assert_eq!(g.try_begin(ip("127.0.0.1"), t0).unwrap_err(), Refusal::Full);
        // A failed handshake gives its slot back; a finished one keeps it.
        g.handshake_failed(&mut tickets[0], t0);
        g.handshake_succeeded(&mut tickets[1]);
        assert_eq!(g.sessions(), 4);
        assert_eq!(g.handshakes(), 3);
        let mut again = g.try_begin(ip("127.0.0.1"), t0).unwrap();
        assert_eq!(g.try_begin(ip("127.0.0.1"), t0), Err(Refusal::Full));
        g.session_ended(&tickets[1], t0);
        g.handshake_succeeded(&mut again);
        assert_eq!(g.sessions(), 4);
    }

    #[test]
    fn global_handshake_limit() {
        let mut g = Gate::new(Limits {
            max_tracked_addrs: 1000,
            ..limits()
        });
        let t0 = Instant::now();
        let mut ok = Vec::new();
        for i in 0..30u8 {
            match g.try_begin(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), t0) {
                Ok(t) => ok.push(t),
                Err(r) => assert_eq!(r, Refusal::Handshakes),
            }
        }
        assert_eq!(ok.len(), 10);
        assert_eq!(g.peak_handshakes(), 10);
        // One finishes: one more may start.
        g.handshake_succeeded(&mut ok[0]);
        assert!(g.try_begin(ip("10.0.0.200"), t0).is_ok());
        assert_eq!(g.try_begin(ip("10.0.0.201"), t0), Err(Refusal::Handshakes));
        assert_eq!(g.peak_handshakes(), 10);
    }

    #[test]
    fn a_burst_waits_in_arrival_order_for_handshake_slots() {
        let mut g = Gate::new(Limits {
            max_waiting: 3,
            max_tracked_addrs: 1000,
            ..limits()
        });
        let t0 = Instant::now();
        let addr = |i: u8| IpAddr::V4(Ipv4Addr::new(10, 9, 0, i));
        let mut running: Vec<_> = (0..10).map(|i| g.try_begin(addr(i), t0).unwrap()).collect();
        assert!(running.iter().all(Ticket::running));
        let mut waiting: Vec<_> = (10..13)
            .map(|i| g.try_begin(addr(i), t0).unwrap())
            .collect();
        assert!(waiting.iter().all(|t| !t.running()));
        assert_eq!(g.waiting(), 3);
        // The wait is full: the next is refused at once.
        assert_eq!(g.try_begin(addr(13), t0), Err(Refusal::Handshakes));
        // No slot yet.
        assert!(!g.try_run(&mut waiting[0]));
        g.handshake_succeeded(&mut running[0]);
        // One slot: only the first in line gets it.
        assert!(!g.try_run(&mut waiting[1]));
        assert!(g.try_run(&mut waiting[0]));
        assert!(!g.try_run(&mut waiting[1]));
        assert_eq!(g.handshakes(), 10);
        // The second gives up waiting: the third is first in line now.
        g.handshake_failed(&mut waiting[1], t0);
        g.handshake_failed(&mut running[1], t0);
        assert!(g.try_run(&mut waiting[2]));
        assert_eq!(g.waiting(), 0);
        assert_eq!(g.peak_handshakes(), 10);
        // A newcomer may run at once again when a slot is free and nobody waits.
        g.handshake_failed(&mut running[2], t0);
        assert!(g.try_begin(addr(14), t0).unwrap().running());
        // Waiting connections hold their session and per-address slots.
        assert_eq!(g.sessions(), 11);
    }

    #[test]
    fn per_address_handshakes_sessions_and_rate() {
        let mut g = Gate::new(Limits {
            handshake_burst: 100,
            ..limits()
        });
        let a = ip("192.0.2.7");
        let t0 = Instant::now();
        let mut t: Vec<_> = (0..3).map(|_| g.try_begin(a, t0).unwrap()).collect();
        assert_eq!(g.try_begin(a, t0), Err(Refusal::AddrHandshakes));
        // Another address is not affected.
        let mut other = g.try_begin(ip("192.0.2.8"), t0).unwrap();
        for x in &mut t {
            g.handshake_succeeded(x);
        }
        g.handshake_succeeded(&mut other);
        // 3 sessions held; 2 more handshakes may start, then the session cap holds.
        let mut u: Vec<_> = (0..2).map(|_| g.try_begin(a, t0).unwrap()).collect();
        assert_eq!(g.try_begin(a, t0), Err(Refusal::AddrSessions));
        for x in &mut u {
            g.handshake_failed(x, t0);
        }
        assert!(g.try_begin(a, t0).is_ok());
    }

    #[test]
    fn token_bucket_refills_at_the_rate() {
        let mut g = Gate::new(Limits {
            max_handshakes_per_addr: 1000,
            max_sessions_per_addr: 1000,
            max_handshakes: 1000,
            ..limits()
        });
        let a = ip("198.51.100.1");
        let t0 = Instant::now();
        let mut run = |now: Instant| {
            let mut n = 0;
            while let Ok(mut t) = g.try_begin(a, now) {
                g.handshake_failed(&mut t, now);
                n += 1;
                assert!(n < 1000);
            }
            assert_eq!(g.try_begin(a, now), Err(Refusal::AddrRate));
            n
        };
        assert_eq!(run(t0), 4); // the burst
        assert_eq!(run(t0 + Duration::from_millis(400)), 0); // 0.8 tokens
        assert_eq!(run(t0 + Duration::from_millis(500)), 1); // 1.0
        assert_eq!(run(t0 + Duration::from_millis(1500)), 2);
        // A long quiet spell refills to the burst, no more.
        assert_eq!(run(t0 + Duration::from_secs(3600)), 4);
    }

    #[test]
    fn loopback_is_exempt_from_per_address_limits_unless_asked() {
        let t0 = Instant::now();
        let mut g = Gate::new(limits());
        let n = (0..20)
            .filter(|_| g.try_begin(ip("127.0.0.1"), t0).is_ok())
            .count();
        assert_eq!(n, 10); // only the global handshake limit
        let mut g = Gate::new(Limits {
            limit_loopback: true,
            ..limits()
        });
        let n = (0..20)
            .filter(|_| g.try_begin(ip("127.0.0.1"), t0).is_ok())
            .count();
        assert_eq!(n, 3);
        let n = (0..20)
            .filter(|_| g.try_begin(ip("::1"), t0).is_ok())
            .count();
        assert_eq!(n, 3);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let t0 = Instant::now();
        let mut g = Gate::new(limits());
        let base = Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 0);
        let n = (0..20u16)
            .filter(|i| {
                let mut s = base.segments();
                s[7] = *i;
                s[4] = i.wrapping_mul(77);
                g.try_begin(IpAddr::V6(Ipv6Addr::from(s)), t0).is_ok()
            })
            .count();
        assert_eq!(n, 3);
        assert_eq!(
            AddrKey::of(ip("::ffff:192.0.2.1")),
            AddrKey::of(ip("192.0.2.1"))
        );
    }

    #[test]
    fn tracked_addresses_are_bounded_and_pruned() {
        let t0 = Instant::now();
        let mut g = Gate::new(limits());
        for i in 0..4u8 {
            let mut t = g
                .try_begin(IpAddr::V4(Ipv4Addr::new(10, 1, 0, i)), t0)
                .unwrap();
            g.handshake_failed(&mut t, t0);
        }
        // Each spent a token: still tracked until the bucket refills.
        assert_eq!(g.tracked_addrs(), 4);
        assert_eq!(g.try_begin(ip("10.2.0.1"), t0), Err(Refusal::Addrs));
        // Half a second later every bucket is full again: pruned on demand.
        let t1 = t0 + Duration::from_millis(500);
        assert!(g.try_begin(ip("10.2.0.1"), t1).is_ok());
        assert_eq!(g.tracked_addrs(), 1);
    }

    #[test]
    fn replay_cache_drops_second_copies_and_forgets_the_oldest() {
        let mut c = ReplayCache::new(3);
        assert!(c.fresh(b"m1"));
        assert!(!c.fresh(b"m1"));
        assert!(c.fresh(b"m2"));
        assert!(c.fresh(b"m3"));
        assert!(c.fresh(b"m4")); // m1 forgotten
        assert_eq!(c.len(), 3);
        assert!(c.fresh(b"m1"));
        assert!(!c.fresh(b"m4"));
    }
}
