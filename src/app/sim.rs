//! The simulation harness (DESIGN.md §9, tier 2): a network of nodes addressed by PK in one
//! process, with a virtual clock, a seeded RNG and a link model that loses, delays and
//! reorders packets — and [`Arq`], the sans-IO core that repairs what the links do, so the
//! cores above it (Noise, the mux) see the reliable, ordered byte pipe they were written for.
//!
//! Nothing here does I/O or reads a clock: time is [`Fabric::now`], advanced by the test, and
//! every random choice comes from the [`Rng`] seeded at [`Fabric::new`], so a run is repeated
//! exactly by its seed. [`crate::app::mem`] builds the in-memory `Net` on it; the skynet
//! router's route tests (issue 13) drive their cores over a `Fabric<RoutePacket bytes>` the
//! same way: `send` what a core transmits, `advance`, then hand each `poll_deliver` result to
//! the core of the node it is addressed to.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use crate::crypto::PublicKey;

/// A small seeded PRNG (xorshift64*): deterministic, not for keys.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value; 0 is mapped to a fixed odd one).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p` (0.0 ..= 1.0).
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            c.copy_from_slice(&r[..c.len()]);
        }
    }
}

/// What a link does to the packets on it (one direction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a packet is held back by up to `jitter` more, so later ones overtake it.
    pub reorder: f64,
    /// Delay of every packet.
    pub delay: Duration,
    /// Largest extra delay of a held-back packet.
    pub jitter: Duration,
}

impl Link {
    /// A link that delivers everything in order after `delay`.
    pub const fn perfect(delay: Duration) -> Link {
        Link {
            loss: 0.0,
            reorder: 0.0,
            delay,
            jitter: Duration::ZERO,
        }
    }
}

/// What the fabric did, for tests to check that the faults really happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FabricStats {
    /// Packets handed to `send`.
    pub sent: u64,
    /// Packets the links lost.
    pub lost: u64,
    /// Packets delivered.
    pub delivered: u64,
    /// Packets delivered after a packet sent later on the same link.
    pub reordered: u64,
}

/// Packets in flight between nodes addressed by PK, under a virtual clock.
#[derive(Debug)]
pub struct Fabric<T> {
    now: Duration,
    rng: Rng,
    default_link: Link,
    links: HashMap<(PublicKey, PublicKey), Link>,
    /// (due, send order) → (from, to, packet).
    in_flight: BTreeMap<(Duration, u64), (PublicKey, PublicKey, T)>,
    sent: u64,
    /// Per link: the latest send order delivered so far.
    last_delivered: HashMap<(PublicKey, PublicKey), u64>,
    stats: FabricStats,
}

impl<T> Fabric<T> {
    /// A fabric at virtual time zero whose links are `link` unless set otherwise.
    pub fn new(seed: u64, link: Link) -> Fabric<T> {
        Fabric {
            now: Duration::ZERO,
            rng: Rng::new(seed),
            default_link: link,
            links: HashMap::new(),
            in_flight: BTreeMap::new(),
            sent: 0,
            last_delivered: HashMap::new(),
            stats: FabricStats::default(),
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Moves the clock on by `dt`.
    pub fn advance(&mut self, dt: Duration) {
        self.now += dt;
    }

    /// The fabric's RNG (for anything else in the run that must be seeded).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Sets the link from `a` to `b`.
    pub fn set_link(&mut self, a: PublicKey, b: PublicKey, link: Link) {
        self.links.insert((a, b), link);
    }

    /// What has happened so far.
    pub fn stats(&self) -> FabricStats {
        self.stats
    }

    /// Packets in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Sends `packet` from `from` to `to` over their link: lost, or due after its delay.
    pub fn send(&mut self, from: PublicKey, to: PublicKey, packet: T) {
        let link = *self.links.get(&(from, to)).unwrap_or(&self.default_link);
        self.stats.sent += 1;
        self.sent += 1;
        if self.rng.chance(link.loss) {
            self.stats.lost += 1;
            return;
        }
        let mut due = self.now + link.delay;
        if self.rng.chance(link.reorder) && !link.jitter.is_zero() {
            let extra = self.rng.below(link.jitter.as_micros() as u64 + 1);
            due += Duration::from_micros(extra);
        }
        self.in_flight.insert((due, self.sent), (from, to, packet));
    }

    /// The next packet due by now, with its sender and addressee.
    pub fn poll_deliver(&mut self) -> Option<(PublicKey, PublicKey, T)> {
        let (&(due, order), _) = self.in_flight.first_key_value()?;
        if due > self.now {
            return None;
        }
        let (from, to, packet) = self.in_flight.remove(&(due, order))?;
        self.stats.delivered += 1;
        let last = self.last_delivered.entry((from, to)).or_insert(0);
        if order < *last {
            self.stats.reordered += 1;
        } else {
            *last = order;
        }
        Some((from, to, packet))
    }

    /// When the next packet is due.
    pub fn next_due(&self) -> Option<Duration> {
        self.in_flight.keys().next().map(|(d, _)| *d)
    }
}

/// A packet of [`Arq`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArqPacket {
    /// Message `seq`.
    Data {
        /// Its sequence number.
        seq: u32,
        /// The message.
        msg: Vec<u8>,
    },
    /// Everything before `next` arrived, and of the 64 after it those whose bit is set.
    Ack {
        /// The first message not yet received in order.
        next: u32,
        /// Bit `i`: message `next + 1 + i` was received.
        sack: u64,
    },
}

/// Messages in flight at most (and the receiver's reordering room).
pub const ARQ_WINDOW: usize = 64;

/// A reliable, ordered message pipe over a lossy, reordering link (selective repeat): the
/// sender numbers messages and resends those not acknowledged within `rto`; the receiver
/// buffers what arrives early and hands messages on in order, acknowledging cumulatively
/// with a selective bitmap. Sans-IO: packets and `now` in, packets and messages out. (A
/// simulation sends fewer than 2^32 messages on one pipe; the numbers do not wrap.)
#[derive(Debug)]
pub struct Arq {
    rto: Duration,
    repair: bool,
    next_seq: u32,
    /// Sent, not acknowledged: seq → (message, last sent at).
    unacked: BTreeMap<u32, (Vec<u8>, Duration)>,
    waiting: VecDeque<Vec<u8>>,
    expect: u32,
    early: BTreeMap<u32, Vec<u8>>,
    received: VecDeque<Vec<u8>>,
    ack_due: bool,
    /// Messages sent again.
    pub retransmits: u64,
}

impl Arq {
    /// A pipe resending after `rto`.
    pub fn new(rto: Duration) -> Arq {
        Arq {
            rto,
            repair: true,
            next_seq: 0,
            unacked: BTreeMap::new(),
            waiting: VecDeque::new(),
            expect: 0,
            early: BTreeMap::new(),
            received: VecDeque::new(),
            ack_due: false,
            retransmits: 0,
        }
    }

    /// A pipe that repairs nothing: every message is sent once and handed on in the order it
    /// arrives (so tests can show that their checks catch an unrepaired link).
    pub fn without_repair() -> Arq {
        Arq {
            repair: false,
            ..Arq::new(Duration::MAX)
        }
    }

    /// Queues a message.
    pub fn send(&mut self, msg: Vec<u8>) {
        self.waiting.push_back(msg);
    }

    /// Messages queued or in flight.
    pub fn pending(&self) -> usize {
        self.waiting.len() + self.unacked.len()
    }

    /// Handles a packet from the peer.
    pub fn handle(&mut self, p: ArqPacket) {
        match p {
            ArqPacket::Data { seq, msg } => {
                if !self.repair {
                    self.received.push_back(msg);
                    return;
                }
                self.ack_due = true;
                let ahead = seq.wrapping_sub(self.expect);
                if ahead as usize >= ARQ_WINDOW {
                    return; // old (a duplicate) or beyond the window
                }
                self.early.insert(seq, msg);
                while let Some(m) = self.early.remove(&self.expect) {
                    self.received.push_back(m);
                    self.expect = self.expect.wrapping_add(1);
                }
            }
            ArqPacket::Ack { next, sack } => {
                // Everything before `next` arrived (sequence numbers compare modulo 2^32).
                self.unacked.retain(|&s, _| s.wrapping_sub(next) < 1 << 31);
                for i in 0..64u32 {
                    if sack & (1 << i) != 0 {
                        self.unacked.remove(&next.wrapping_add(1 + i));
                    }
                }
            }
        }
    }

    /// The next message received in order.
    pub fn poll_recv(&mut self) -> Option<Vec<u8>> {
        self.received.pop_front()
    }

    /// The next packet to send at `now`: an acknowledgement, a resend, or a new message
    /// within the window.
    pub fn poll_transmit(&mut self, now: Duration) -> Option<ArqPacket> {
        if self.ack_due {
            self.ack_due = false;
            let mut sack = 0u64;
            for &s in self.early.keys() {
                let d = s.wrapping_sub(self.expect).wrapping_sub(1);
                if d < 64 {
                    sack |= 1 << d;
                }
            }
            return Some(ArqPacket::Ack {
                next: self.expect,
                sack,
            });
        }
        let rto = self.rto;
        if let Some((&seq, (msg, at))) = self
            .unacked
            .iter_mut()
            .find(|(_, (_, at))| now.saturating_sub(*at) >= rto)
        {
            *at = now;
            self.retransmits += 1;
            return Some(ArqPacket::Data {
                seq,
                msg: msg.clone(),
            });
        }
        // The receiver buffers at most the window past its first missing message: send
        // nothing beyond the oldest unacknowledged one plus the window.
        let oldest = self.unacked.keys().next().copied().unwrap_or(self.next_seq);
        if self.next_seq.wrapping_sub(oldest) as usize >= ARQ_WINDOW {
            return None;
        }
        let msg = self.waiting.pop_front()?;
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        if self.repair {
            self.unacked.insert(seq, (msg.clone(), now));
        }
        Some(ArqPacket::Data { seq, msg })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn pk(n: u8) -> PublicKey {
        *Keypair::from_seed(&[n; 32]).public()
    }

    #[test]
    fn rng_is_seeded() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(Rng::new(8).next_u64(), xs[0]);
        let hits = (0..10_000).filter(|_| a.chance(0.25)).count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
    }

    #[test]
    fn fabric_delays_loses_and_reorders() {
        let (a, b) = (pk(1), pk(2));
        let link = Link {
            loss: 0.2,
            reorder: 0.3,
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(30),
        };
        let mut f = Fabric::new(42, link);
        for i in 0..1000u32 {
            f.send(a, b, i);
        }
        assert!(
            f.poll_deliver().is_none(),
            "nothing is due before the delay"
        );
        f.advance(Duration::from_millis(100));
        let mut got = Vec::new();
        while let Some((from, to, i)) = f.poll_deliver() {
            assert_eq!((from, to), (a, b));
            got.push(i);
        }
        let s = f.stats();
        assert_eq!(s.sent, 1000);
        assert_eq!(s.delivered as usize, got.len());
        assert_eq!(s.lost + s.delivered, 1000);
        assert!((120..280).contains(&s.lost), "{s:?}");
        assert!(s.reordered > 50, "{s:?}");
        assert!(got.windows(2).any(|w| w[0] > w[1]));
    }

    /// Runs two ARQ ends over `link` until `n` messages crossed (or the step bound), and
    /// returns what arrived.
    fn run_arq(link: Link, n: u32, repair: bool) -> Vec<Vec<u8>> {
        let (a, b) = (pk(1), pk(2));
        let mut f = Fabric::new(9, link);
        let mk = || {
            if repair {
                Arq::new(Duration::from_millis(40))
            } else {
                Arq::without_repair()
            }
        };
        let (mut tx, mut rx) = (mk(), mk());
        for i in 0..n {
            tx.send(i.to_be_bytes().to_vec());
        }
        let mut got = Vec::new();
        for _ in 0..20_000 {
            while let Some((_, to, p)) = f.poll_deliver() {
                if to == b { rx.handle(p) } else { tx.handle(p) }
            }
            while let Some(m) = rx.poll_recv() {
                got.push(m);
            }
            let now = f.now();
            while let Some(p) = tx.poll_transmit(now) {
                f.send(a, b, p);
            }
            while let Some(p) = rx.poll_transmit(now) {
                f.send(b, a, p);
            }
            if got.len() == n as usize && tx.pending() == 0 {
                break;
            }
            f.advance(Duration::from_millis(1));
        }
        got
    }

    const BAD: Link = Link {
        loss: 0.15,
        reorder: 0.3,
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(20),
    };

    #[test]
    fn arq_repairs_loss_and_reordering() {
        let got = run_arq(BAD, 2000, true);
        let want: Vec<Vec<u8>> = (0..2000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn without_repair_the_faults_show() {
        let got = run_arq(BAD, 2000, false);
        assert!(got.len() < 2000);
        assert!(got.windows(2).any(|w| w[0] > w[1]));
    }
}
