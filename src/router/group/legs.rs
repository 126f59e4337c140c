//! The sequenced leg layer of a route group (sans-IO: packets and `now` in, packets out).
//!
//! Every channel frame a side sends gets the next sequence number and goes out in a Data
//! packet on one live leg (the one with the fewest bytes in flight); a copy stays in the
//! unacknowledged buffer until the peer's cumulative ack covers it. The buffer is bounded
//! ([`Legs::has_room`]: the group's writer waits, which backs up into the mux and its
//! streams). The receiver holds frames that arrive early (bounded in frames and bytes), drops
//! duplicates, and opens frames strictly in order; it acknowledges a frame once the group's
//! reader has taken it, so the ack window is also the receiver's flow control.
//!
//! Every live leg is pinged every [`KEEPALIVE_INTERVAL`]; the pong gives its round trip. A leg
//! that has carried nothing for [`DEAD_AFTER`] is dead, and every frame last sent on it goes
//! out again at once on a survivor. A frame not acknowledged within its leg's retransmission
//! timeout is also sent again (a hop dropped it: a full transport queue), with the timeout
//! doubling per try. The same code runs for one leg and for four.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::LegRef;
use crate::wire::leg::{DATA_HEADER_LEN, Data, KEEPALIVE_LEN, KeepAlive, Kind};
use crate::wire::route::{HEADER_LEN, Packet, PacketType};

/// How often every live leg is pinged.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);
/// A leg that has carried nothing for this long is dead.
pub const DEAD_AFTER: Duration = Duration::from_millis(1500);
/// Shortest retransmission timeout.
pub const MIN_RTO: Duration = Duration::from_millis(250);
/// Longest retransmission timeout of a first send.
pub const MAX_RTO: Duration = Duration::from_secs(2);
/// The retransmission timeout before a leg's first round trip is known.
pub const FIRST_RTO: Duration = Duration::from_secs(1);
/// How long the receiver waits before acknowledging a frame on its own: an answer sent
/// within it carries the ack (request and response cost two packets, not four); well below
/// [`MIN_RTO`], so the sender never resends for it. Bulk data is acknowledged every second
/// frame at once.
pub const ACK_DELAY: Duration = Duration::from_millis(5);
/// Bytes of frames (at least two) taken by the reader that are acknowledged at once.
pub const ACK_BYTES: usize = 16 * 1024;
/// Frames taken by the reader that are acknowledged at once, whatever their size.
pub const ACK_FRAMES: u32 = 32;
/// Frames the receiver accepts ahead of the first missing one.
pub const RX_WINDOW_FRAMES: u32 = 1024;
/// Offset of the channel frame in a whole Data routing packet.
pub const FRAME_AT: usize = HEADER_LEN + DATA_HEADER_LEN;

/// Counted reasons for dropped packets.
#[derive(Debug, Default, Clone)]
pub struct Drops(BTreeMap<&'static str, u64>);

impl Drops {
    /// Counts one drop.
    pub fn count(&mut self, why: &'static str) {
        *self.0.entry(why).or_insert(0) += 1;
    }

    /// Reason → count.
    pub fn list(&self) -> Vec<(String, u64)> {
        self.0.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    /// Count for one reason.
    pub fn get(&self, why: &str) -> u64 {
        self.0.get(why).copied().unwrap_or(0)
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// One leg as the layer sees it.
#[derive(Debug, Clone)]
pub struct LegStats {
    /// The leg.
    pub leg: LegRef,
    /// `None` while it is up; why it went down.
    pub down: Option<String>,
    /// Smoothed round trip from keep-alive echoes.
    pub rtt: Option<Duration>,
    /// Routing-packet bytes received on it.
    pub bytes_in: u64,
    /// Routing-packet bytes sent on it.
    pub bytes_out: u64,
}

#[derive(Debug)]
struct Leg {
    stats: LegStats,
    last_rx: Duration,
    next_ping: Duration,
    /// Bytes of unacknowledged frames last sent on it.
    in_flight: usize,
}

impl Leg {
    fn up(&self) -> bool {
        self.stats.down.is_none()
    }

    fn rto(&self) -> Duration {
        match self.stats.rtt {
            Some(rtt) => (rtt * 2 + Duration::from_millis(100)).clamp(MIN_RTO, MAX_RTO),
            None => FIRST_RTO,
        }
    }
}

#[derive(Debug)]
struct Sent {
    seq: u32,
    /// The whole routing packet (header ‖ leg header ‖ channel frame).
    packet: Vec<u8>,
    leg: LegRef,
    due: Duration,
    rto: Duration,
}

/// A frame opened in order, waiting for the group's reader: its plaintext is
/// `buf[start..end]`.
#[derive(Debug)]
pub struct Opened {
    /// The routing packet it came in.
    pub buf: Vec<u8>,
    /// Plaintext start.
    pub start: usize,
    /// Plaintext end.
    pub end: usize,
}

/// A leg the layer has found dead (the driver is told, and may add a replacement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegDied {
    /// The leg.
    pub leg: LegRef,
    /// Why.
    pub why: String,
}

/// The sequenced leg layer of one group.
#[derive(Debug)]
pub struct Legs {
    legs: Vec<Leg>,
    next_seq: u32,
    unacked: VecDeque<Sent>,
    unacked_bytes: usize,
    max_unacked: usize,
    /// Next seq to open.
    expect: u32,
    /// Everything before it was taken by the reader (what we acknowledge).
    ack: u32,
    /// The last ack the peer was sent.
    ack_sent: u32,
    /// When the ack not yet sent goes out on its own ([`ACK_DELAY`]).
    ack_due: Option<Duration>,
    /// Channel-frame bytes taken by the reader since the last ack sent.
    rx_unacked: usize,
    early: BTreeMap<u32, Vec<u8>>,
    ready: VecDeque<(u32, Opened)>,
    rx_bytes: usize,
    max_rx: usize,
    out: Vec<(LegRef, Vec<u8>)>,
    died: Vec<LegDied>,
    /// Dropped packets by reason.
    pub drops: Drops,
    /// Frames sent again (timeout or dead leg).
    pub resent: u64,
}

fn ms32(now: Duration) -> u32 {
    now.as_millis() as u32
}

/// `a` comes before `b` in sequence space.
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl Legs {
    /// A layer over `legs` (all up at `now`), keeping at most `max_unacked` bytes of sent
    /// frames and `max_rx` bytes of received ones.
    pub fn new(legs: &[LegRef], max_unacked: usize, max_rx: usize, now: Duration) -> Legs {
        let mut l = Legs {
            legs: Vec::new(),
            next_seq: 0,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            max_unacked,
            expect: 0,
            ack: 0,
            ack_sent: 0,
            ack_due: None,
            rx_unacked: 0,
            early: BTreeMap::new(),
            ready: VecDeque::new(),
            rx_bytes: 0,
            max_rx,
            out: Vec::new(),
            died: Vec::new(),
            drops: Drops::default(),
            resent: 0,
        };
        for &leg in legs {
            l.add_leg(leg, now);
        }
        l
    }

    /// Joins a leg (a replacement the driver set up); an existing live one is left alone.
    pub fn add_leg(&mut self, leg: LegRef, now: Duration) {
        if let Some(l) = self.legs.iter_mut().find(|l| l.stats.leg == leg) {
            if l.up() {
                return;
            }
            l.stats.down = None;
            l.last_rx = now;
            l.next_ping = now;
            return;
        }
        self.legs.push(Leg {
            stats: LegStats {
                leg,
                down: None,
                rtt: None,
                bytes_in: 0,
                bytes_out: 0,
            },
            last_rx: now,
            next_ping: now,
            in_flight: 0,
        });
    }

    /// Marks `leg` down (the driver saw its route fail, or it fell silent): its frames go out
    /// again on a survivor.
    pub fn leg_down(&mut self, leg: LegRef, why: &str, now: Duration) {
        let Some(l) = self.legs.iter_mut().find(|l| l.stats.leg == leg && l.up()) else {
            return;
        };
        l.stats.down = Some(why.to_string());
        l.in_flight = 0;
        self.died.push(LegDied {
            leg,
            why: why.to_string(),
        });
        // Everything last sent on it: again, now, elsewhere.
        for s in self.unacked.iter_mut().filter(|s| s.leg == leg) {
            s.due = now;
        }
        self.retransmit(now);
    }

    /// The handshake is done at `now`: keep-alives start, silence is counted from here.
    pub fn start(&mut self, now: Duration) {
        for l in self.legs.iter_mut().filter(|l| l.up()) {
            l.last_rx = now;
            l.next_ping = now;
        }
    }

    /// Legs that died since the last call.
    pub fn take_died(&mut self) -> Vec<LegDied> {
        std::mem::take(&mut self.died)
    }

    /// True while at least one leg is up.
    pub fn any_up(&self) -> bool {
        self.legs.iter().any(Leg::up)
    }

    /// The legs' state.
    pub fn stats(&self) -> Vec<LegStats> {
        self.legs.iter().map(|l| l.stats.clone()).collect()
    }

    /// Live legs.
    pub fn up_legs(&self) -> Vec<LegRef> {
        self.legs
            .iter()
            .filter(|l| l.up())
            .map(|l| l.stats.leg)
            .collect()
    }

    /// Packets to send.
    pub fn take_out(&mut self) -> Vec<(LegRef, Vec<u8>)> {
        std::mem::take(&mut self.out)
    }

    /// Bytes of frames sent and not acknowledged.
    pub fn unacked_bytes(&self) -> usize {
        self.unacked_bytes
    }

    /// Bytes of received frames held (early or waiting for the reader).
    pub fn rx_bytes(&self) -> usize {
        self.rx_bytes
    }

    /// True if another frame may be sent now: within the byte bound, and within the frames
    /// the receiver takes ahead of a gap.
    pub fn has_room(&self) -> bool {
        self.unacked_bytes < self.max_unacked && self.unacked.len() < RX_WINDOW_FRAMES as usize
    }

    fn best_leg(&self) -> Option<usize> {
        (0..self.legs.len())
            .filter(|&i| self.legs[i].up())
            .min_by_key(|&i| {
                let l = &self.legs[i];
                (l.in_flight, l.stats.rtt.unwrap_or(MAX_RTO))
            })
    }

    fn emit(&mut self, i: usize, packet: Vec<u8>) {
        let l = &mut self.legs[i];
        l.stats.bytes_out += packet.len() as u64;
        self.out.push((l.stats.leg, packet));
    }

    /// A packet of `ty` with `payload` (the route id is left 0 for the driver).
    pub fn packet(ty: PacketType, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_LEN + payload.len()];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_packet_type(ty);
        p.set_payload_len(payload.len() as u16);
        buf[HEADER_LEN..].copy_from_slice(payload);
        buf
    }

    fn keepalive(&mut self, i: usize, kind: Kind, stamp: u32) {
        let ka = KeepAlive {
            kind,
            ack: self.ack,
            stamp,
        };
        self.ack_carried();
        // The router core consumes KeepAlive and Close at an endpoint: a leg's keep-alives
        // ride as Ping (pings and acks) and Pong, which it hands to the group.
        let ty = if kind == Kind::Pong {
            PacketType::Pong
        } else {
            PacketType::Ping
        };
        let p = Legs::packet(ty, &ka.to_bytes());
        self.emit(i, p);
    }

    /// Sends one channel frame: `packet` is `FRAME_AT` bytes of room ‖ the sealed channel
    /// frame (at most 65,535 − 8 bytes). Call only when [`Legs::has_room`]; `false` if no
    /// leg is up.
    pub fn submit(&mut self, mut packet: Vec<u8>, now: Duration) -> bool {
        let Some(i) = self.best_leg() else {
            return false;
        };
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        let payload = packet.len() - HEADER_LEN;
        {
            let mut p = Packet::new_unchecked(&mut packet[..]);
            p.set_packet_type(PacketType::Data);
            p.set_route_id(0);
            p.set_payload_len(payload as u16);
            let mut d = Data::new_unchecked(&mut packet[HEADER_LEN..]);
            d.set_seq(seq);
            d.set_ack(self.ack);
        }
        self.ack_carried();
        let leg = &mut self.legs[i];
        let rto = leg.rto();
        leg.in_flight += packet.len();
        self.unacked_bytes += packet.len();
        self.unacked.push_back(Sent {
            seq,
            packet: packet.clone(),
            leg: leg.stats.leg,
            due: now + rto,
            rto,
        });
        self.emit(i, packet);
        true
    }

    /// The resend deadline of the frame submitted last, while it is unacknowledged.
    pub fn last_due(&self) -> Option<Duration> {
        self.unacked.back().map(|s| s.due)
    }

    fn leg_index(&self, leg: LegRef) -> Option<usize> {
        self.legs.iter().position(|l| l.stats.leg == leg)
    }

    /// The peer took every frame before `ack`. True if room was freed.
    fn handle_ack(&mut self, ack: u32) -> bool {
        // An ack beyond what was ever sent is forged or corrupt.
        if before(self.next_seq, ack) {
            self.drops.count("ack beyond what was sent");
            return false;
        }
        let mut freed = false;
        while self.unacked.front().is_some_and(|s| before(s.seq, ack)) {
            let s = self.unacked.pop_front().expect("front checked");
            self.unacked_bytes -= s.packet.len();
            if let Some(i) = self.leg_index(s.leg) {
                let l = &mut self.legs[i];
                l.in_flight = l.in_flight.saturating_sub(s.packet.len());
            }
            freed = true;
        }
        freed
    }

    /// Handles a Data, Ping or Pong packet from `leg` (`buf` = the whole routing packet, its
    /// header already checked). `open` opens a channel frame in place and returns its
    /// plaintext length, `None` if it does not authenticate. Returns true if room was freed
    /// for the writer or a frame became ready for the reader.
    pub fn handle(
        &mut self,
        leg: LegRef,
        buf: Vec<u8>,
        now: Duration,
        open: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> bool {
        let Some(i) = self.leg_index(leg) else {
            self.drops.count("unknown leg");
            return false;
        };
        let l = &mut self.legs[i];
        l.stats.bytes_in += buf.len() as u64;
        l.last_rx = now;
        let ty = Packet::new_unchecked(&buf[..]).packet_type();
        match ty {
            PacketType::Ping | PacketType::Pong => {
                let Ok(ka) = KeepAlive::parse(&buf[HEADER_LEN..]) else {
                    self.drops.count("bad keep-alive");
                    return false;
                };
                if (ka.kind == Kind::Pong) != (ty == PacketType::Pong) {
                    self.drops
                        .count("keep-alive kind does not match its packet type");
                    return false;
                }
                match ka.kind {
                    Kind::Ping => self.keepalive(i, Kind::Pong, ka.stamp),
                    Kind::Pong => {
                        let sample = ms32(now).wrapping_sub(ka.stamp);
                        // An echo from the future or older than a minute is not ours.
                        if sample <= 60_000 {
                            let sample = Duration::from_millis(u64::from(sample));
                            let l = &mut self.legs[i];
                            l.stats.rtt = Some(match l.stats.rtt {
                                Some(r) => (r * 7 + sample) / 8,
                                None => sample,
                            });
                        } else {
                            self.drops.count("pong with a stamp we did not send");
                        }
                    }
                    Kind::Ack => {}
                    Kind::Unknown(_) => {
                        self.drops.count("unknown keep-alive kind");
                        return false;
                    }
                }
                self.handle_ack(ka.ack)
            }
            PacketType::Data => self.handle_data(buf, open),
            _ => {
                self.drops.count("unexpected packet type");
                false
            }
        }
    }

    fn handle_data(
        &mut self,
        buf: Vec<u8>,
        open: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> bool {
        let Ok(d) = Data::new_checked(&buf[HEADER_LEN..]) else {
            self.drops.count("data shorter than its leg header");
            return false;
        };
        let (seq, ack) = (d.seq(), d.ack());
        let mut woke = self.handle_ack(ack);
        let ahead = seq.wrapping_sub(self.expect);
        if ahead >= 1 << 31 || self.early.contains_key(&seq) {
            // Sent again after our ack was lost: acknowledge again.
            self.drops.count("duplicate frame");
            if let Some(i) = self.best_leg() {
                self.keepalive(i, Kind::Ack, 0);
            }
            return woke;
        }
        if ahead >= RX_WINDOW_FRAMES {
            self.drops.count("frame beyond the receive window");
            return woke;
        }
        if self.rx_bytes + buf.len() > self.max_rx {
            // Not acknowledged: the sender sends it again later.
            self.drops.count("receive buffer full");
            return woke;
        }
        self.rx_bytes += buf.len();
        self.early.insert(seq, buf);
        while let Some(mut buf) = self.early.remove(&self.expect) {
            match open(&mut buf[FRAME_AT..]) {
                Some(n) => {
                    let start = FRAME_AT + crate::crypto::channel::LEN_PREFIX;
                    let seq = self.expect;
                    self.ready.push_back((
                        seq,
                        Opened {
                            buf,
                            start,
                            end: start + n,
                        },
                    ));
                    self.expect = self.expect.wrapping_add(1);
                    woke = true;
                }
                None => {
                    // Forged or corrupt: the sender's copy comes again (it is not acked).
                    self.rx_bytes -= buf.len();
                    self.drops.count("frame does not authenticate");
                    break;
                }
            }
        }
        woke
    }

    /// The next frame opened in order, for the reader; taking it acknowledges it: at once
    /// once [`ACK_BYTES`] (in two frames or more) or [`ACK_FRAMES`] are unacknowledged, else
    /// by [`ACK_DELAY`] after `now` unless something we send carries the ack first.
    pub fn pop_ready(&mut self, now: Duration) -> Option<Opened> {
        let (seq, f) = self.ready.pop_front()?;
        self.rx_bytes -= f.buf.len();
        self.ack = seq.wrapping_add(1);
        self.rx_unacked += f.end - f.start;
        let frames = self.ack.wrapping_sub(self.ack_sent);
        if (frames >= 2 && self.rx_unacked >= ACK_BYTES) || frames >= ACK_FRAMES {
            if let Some(i) = self.best_leg() {
                self.keepalive(i, Kind::Ack, 0);
            }
        } else if self.ready.is_empty() && self.ack_due.is_none() {
            self.ack_due = Some(now + ACK_DELAY);
        }
        Some(f)
    }

    /// A packet carrying `ack` is going out: nothing is left to acknowledge on its own.
    fn ack_carried(&mut self) {
        self.ack_sent = self.ack;
        self.ack_due = None;
        self.rx_unacked = 0;
    }

    /// When the pending ack goes out on its own, if one is pending.
    pub fn ack_due(&self) -> Option<Duration> {
        self.ack_due
    }

    /// Frames waiting for the reader.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    fn retransmit(&mut self, now: Duration) {
        for k in 0..self.unacked.len() {
            if self.unacked[k].due > now {
                continue;
            }
            let Some(i) = self.best_leg_for(self.unacked[k].leg) else {
                return;
            };
            let ack = self.ack;
            let s = &mut self.unacked[k];
            let mut p = s.packet.clone();
            Data::new_unchecked(&mut p[HEADER_LEN..]).set_ack(ack);
            let len = p.len();
            let old = s.leg;
            let new = self.legs[i].stats.leg;
            s.leg = new;
            s.rto = if old == new {
                (s.rto * 2).min(MAX_RTO * 4)
            } else {
                self.legs[i].rto()
            };
            s.due = now + s.rto;
            if old != new {
                if let Some(j) = self.leg_index(old) {
                    self.legs[j].in_flight = self.legs[j].in_flight.saturating_sub(len);
                }
                self.legs[i].in_flight += len;
            }
            self.resent += 1;
            self.ack_carried();
            self.emit(i, p);
        }
    }

    /// The leg to send a frame again on: its own while up, else the best survivor.
    fn best_leg_for(&self, leg: LegRef) -> Option<usize> {
        match self.leg_index(leg) {
            Some(i) if self.legs[i].up() => Some(i),
            _ => self.best_leg(),
        }
    }

    /// Pings, dead-leg checks and retransmissions due by `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        if self.ack_due.is_some_and(|d| now >= d) {
            self.ack_due = None;
            if self.ack != self.ack_sent
                && let Some(i) = self.best_leg()
            {
                self.keepalive(i, Kind::Ack, 0);
            }
        }
        for i in 0..self.legs.len() {
            let l = &self.legs[i];
            if !l.up() {
                continue;
            }
            if now.saturating_sub(l.last_rx) >= DEAD_AFTER {
                let leg = l.stats.leg;
                let why = format!("nothing received for {} ms", DEAD_AFTER.as_millis());
                self.leg_down(leg, &why, now);
                continue;
            }
            if now >= l.next_ping {
                self.legs[i].next_ping = now + KEEPALIVE_INTERVAL;
                self.keepalive(i, Kind::Ping, ms32(now));
            }
        }
        self.retransmit(now);
    }

    /// When [`Legs::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let legs = self
            .legs
            .iter()
            .filter(|l| l.up())
            .map(|l| l.next_ping.min(l.last_rx + DEAD_AFTER));
        let resend = self.unacked.iter().map(|s| s.due);
        legs.chain(resend).chain(self.ack_due).min()
    }

    /// Sends `ty` with `payload` on every live leg (Close).
    pub fn broadcast(&mut self, ty: PacketType, payload: &[u8]) {
        for i in 0..self.legs.len() {
            if self.legs[i].up() {
                let p = Legs::packet(ty, payload);
                self.emit(i, p);
            }
        }
    }

    /// Sends `ty` with `payload` on `leg` (handshake messages), or on the best leg if it is
    /// not up. False if no leg is up.
    pub fn send_on(&mut self, leg: LegRef, ty: PacketType, payload: &[u8]) -> bool {
        let Some(i) = self.best_leg_for(leg) else {
            return false;
        };
        let p = Legs::packet(ty, payload);
        self.emit(i, p);
        true
    }

    /// Counts received bytes on `leg` for a packet the layer does not handle itself.
    pub fn note_rx(&mut self, leg: LegRef, len: usize, now: Duration) -> bool {
        match self.leg_index(leg) {
            Some(i) => {
                let l = &mut self.legs[i];
                l.stats.bytes_in += len as u64;
                l.last_rx = now;
                true
            }
            None => false,
        }
    }

    /// The legs' keep-alive length (for docs and tests).
    pub const KEEPALIVE_PACKET_LEN: usize = HEADER_LEN + KEEPALIVE_LEN;
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::ZERO;

    /// A Data packet carrying an unsealed "frame" of `body` (the tests' `open` checks it).
    fn frame(body: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; FRAME_AT];
        p.extend_from_slice(&(body.len() as u16).to_be_bytes());
        p.extend_from_slice(body);
        p
    }

    /// "Opens" frames whose first byte is not 0xff.
    fn open(f: &mut [u8]) -> Option<usize> {
        (f.get(2) != Some(&0xff)).then(|| f.len() - 2)
    }

    fn pair() -> (Legs, Legs) {
        let legs = [LegRef(1), LegRef(2)];
        (
            Legs::new(&legs, 64 * 1024, 64 * 1024, T),
            Legs::new(&legs, 64 * 1024, 64 * 1024, T),
        )
    }

    fn sent_data(l: &mut Legs) -> Vec<(LegRef, Vec<u8>)> {
        l.take_out()
            .into_iter()
            .filter(|(_, p)| p[0] == u8::from(PacketType::Data))
            .collect()
    }

    #[test]
    fn reorders_deduplicates_and_acks_what_the_reader_took() {
        let (mut a, mut b) = pair();
        for i in 0..5u8 {
            assert!(a.submit(frame(&[i; 10]), T));
        }
        let mut out = sent_data(&mut a);
        assert_eq!(out.len(), 5);
        // Spread over both legs (fewest bytes in flight first).
        assert!(
            out.iter().any(|(l, _)| *l == LegRef(1)) && out.iter().any(|(l, _)| *l == LegRef(2))
        );
        out.reverse();
        let dup = out[0].clone();
        for (leg, p) in out {
            b.handle(leg, p, T, &mut open);
        }
        b.handle(dup.0, dup.1, T, &mut open);
        assert_eq!(b.drops.get("duplicate frame"), 1);
        let mut got = Vec::new();
        while let Some(f) = b.pop_ready(T) {
            got.push(f.buf[f.start]);
        }
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert_eq!(b.rx_bytes(), 0);
        // Five small frames are acknowledged after ACK_DELAY (at once only from ACK_BYTES or
        // ACK_FRAMES on): what went out so far (the duplicate's ack) frees nothing.
        for (leg, p) in b.take_out() {
            a.handle(leg, p, T, &mut open);
        }
        assert_eq!(a.unacked_bytes(), 5 * frame(&[0; 10]).len());
        assert_eq!(b.ack_due(), Some(T + ACK_DELAY));
        b.handle_timeout(T + ACK_DELAY);
        assert_eq!(b.ack_due(), None);
        // The acks free the sender.
        for (leg, p) in b.take_out() {
            a.handle(leg, p, T, &mut open);
        }
        assert_eq!(a.unacked_bytes(), 0);
    }

    /// Bulk data is acknowledged at once every ACK_BYTES, tiny frames every ACK_FRAMES.
    #[test]
    fn bulk_is_acknowledged_at_once() {
        let (mut a, mut b) = pair();
        for i in 0..2u8 {
            assert!(a.submit(frame(&[i; 9000]), T));
        }
        for i in 0..(ACK_FRAMES as u8) {
            assert!(a.submit(frame(&[i; 4]), T));
        }
        for (leg, p) in sent_data(&mut a) {
            b.handle(leg, p, T, &mut open);
        }
        let mut acks = 0;
        while b.pop_ready(T).is_some() {
            acks += b.take_out().len();
        }
        // One after the two big frames, one after 32 more frames.
        assert_eq!(acks, 2);
        for (leg, p) in b.take_out() {
            a.handle(leg, p, T, &mut open);
        }
    }

    /// An answer sent within ACK_DELAY carries the ack: no ack packet of its own.
    #[test]
    fn an_answer_carries_the_delayed_ack() {
        let (mut a, mut b) = pair();
        // Started, first pings sent: the next are due a keep-alive interval from now.
        for l in [&mut a, &mut b] {
            l.start(T);
            l.handle_timeout(T);
            l.take_out();
        }
        assert_eq!(b.poll_timeout(), Some(T + KEEPALIVE_INTERVAL));
        assert!(a.submit(frame(b"request"), T));
        for (leg, p) in sent_data(&mut a) {
            b.handle(leg, p, T, &mut open);
        }
        assert!(b.pop_ready(T).is_some());
        assert!(b.take_out().is_empty(), "no ack at once for a lone frame");
        assert!(b.submit(frame(b"answer"), T));
        assert_eq!(b.ack_due(), None);
        let out = b.take_out();
        assert_eq!(out.len(), 1, "only the answer goes out");
        for (leg, p) in out {
            a.handle(leg, p, T, &mut open);
        }
        assert_eq!(a.unacked_bytes(), 0);
        // Nothing left to send when the delay has passed.
        b.handle_timeout(T + ACK_DELAY);
        assert!(b.take_out().is_empty());
    }

    #[test]
    fn a_dead_leg_resends_its_frames_elsewhere_and_loss_is_resent() {
        let (mut a, mut b) = pair();
        a.start(T);
        for i in 0..4u8 {
            a.submit(frame(&[i; 100]), T);
        }
        let out = sent_data(&mut a);
        let on_one = out.iter().filter(|(l, _)| *l == LegRef(1)).count();
        // Leg 1 goes silent: after DEAD_AFTER its frames go out on leg 2.
        a.handle_timeout(DEAD_AFTER);
        let died = a.take_died();
        assert_eq!(died.len(), 2, "both legs were silent: {died:?}");
        assert!(!a.any_up());
        // With one leg kept alive, only the silent one dies.
        let (mut a, _) = pair();
        a.start(T);
        for i in 0..4u8 {
            a.submit(frame(&[i; 100]), T);
        }
        let _ = a.take_out();
        a.note_rx(LegRef(2), 10, DEAD_AFTER - MIN_RTO);
        a.handle_timeout(DEAD_AFTER);
        assert_eq!(
            a.take_died(),
            [LegDied {
                leg: LegRef(1),
                why: "nothing received for 1500 ms".into()
            }]
        );
        let again = sent_data(&mut a);
        assert!(
            again.len() >= on_one && again.iter().all(|(l, _)| *l == LegRef(2)),
            "{again:?}"
        );
        assert_eq!(a.up_legs(), [LegRef(2)]);
        // Nothing acknowledged: sent again after the timeout, on the survivor.
        let before = a.resent;
        a.note_rx(LegRef(2), 10, DEAD_AFTER + FIRST_RTO);
        a.handle_timeout(DEAD_AFTER + FIRST_RTO);
        assert!(a.resent > before);
        // The receiver takes each once.
        for (leg, p) in again.into_iter().chain(sent_data(&mut a)) {
            b.handle(leg, p, T, &mut open);
        }
        let mut n = 0;
        while b.pop_ready(T).is_some() {
            n += 1;
        }
        assert_eq!(n, 4);
    }

    #[test]
    fn bounds_and_bad_input_are_counted() {
        let (mut a, mut b) = pair();
        // The sender stops at its byte bound.
        let mut n = 0;
        while a.has_room() {
            a.submit(frame(&[1; 4000]), T);
            n += 1;
        }
        assert!(n * 4000 >= 64 * 1024 && a.unacked_bytes() <= 64 * 1024 + 4100);
        let out = sent_data(&mut a);
        // The receiver's reader takes nothing: beyond its bound frames are dropped unacked.
        for (leg, p) in out.iter().cloned() {
            b.handle(leg, p, T, &mut open);
        }
        for (leg, p) in out.iter().cloned() {
            b.handle(leg, p, T, &mut open);
        }
        assert!(b.rx_bytes() <= 64 * 1024);
        assert!(b.drops.get("duplicate frame") >= 1);
        // A frame far ahead, one that does not open, a forged ack, an unknown leg.
        let mut far = frame(b"x");
        Data::new_unchecked(&mut far[HEADER_LEN..]).set_seq(1_000_000);
        far[0] = 0;
        let mut c = Legs::new(&[LegRef(1)], 1024, 1024, T);
        let fix = |mut p: Vec<u8>| {
            let n = (p.len() - HEADER_LEN) as u16;
            Packet::new_unchecked(&mut p[..]).set_payload_len(n);
            p
        };
        c.handle(LegRef(1), fix(far), T, &mut open);
        assert_eq!(c.drops.get("frame beyond the receive window"), 1);
        c.handle(LegRef(1), fix(frame(&[0xff, 1])), T, &mut open);
        assert_eq!(c.drops.get("frame does not authenticate"), 1);
        assert_eq!((c.rx_bytes(), c.ready_len()), (0, 0));
        let mut forged = fix(frame(b"ok"));
        Data::new_unchecked(&mut forged[HEADER_LEN..]).set_ack(77);
        c.handle(LegRef(1), forged, T, &mut open);
        assert_eq!(c.drops.get("ack beyond what was sent"), 1);
        assert_eq!(c.ready_len(), 1, "the frame itself is fine");
        c.handle(LegRef(9), fix(frame(b"ok")), T, &mut open);
        assert_eq!(c.drops.get("unknown leg"), 1);
    }
}
