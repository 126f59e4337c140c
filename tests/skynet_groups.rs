//! Route groups (`skywire::router::group`) between two endpoints in one process, on a virtual
//! clock: over fake legs (queues with a delay, killable), and over the simulation harness
//! (`app::sim`: each leg a chain of 4 hops on a lossy, reordering `Fabric`, repaired per link
//! by `Arq`, every node a real `router::core::Core` that set the legs up and forwards them).
//! An integration test because `router` must not import `app` (scripts/layers.sh).
#![cfg(feature = "skynet")]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use async_executor::Executor;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use std::future::Future;
use std::pin::Pin;

use futures_lite::future::poll_fn;
use skywire::app::sim::{Arq, ArqPacket, Fabric, Link, Rng};
use skywire::crypto::{Keypair, PublicKey};
use skywire::router::core::{Core, CoreConfig, Event, TpHandle, Verdict};
use skywire::router::group::legs::{FRAME_AT, Legs};
use skywire::router::group::{Clock, GroupConfig, LegRef, LegSendError, LegTx, RouteGroup};
use skywire::wire::leg::{Data, KeepAlive, Kind};
use skywire::wire::route::{HEADER_LEN, MAX_PAYLOAD_LEN, Packet, PacketType};

const MS: Duration = Duration::from_millis(1);

fn keys(n: u8) -> Keypair {
    Keypair::from_seed(&[n; 32])
}

/// The virtual clock.
#[derive(Default)]
struct VClock {
    inner: Mutex<(Duration, Vec<(Duration, Waker)>)>,
}

impl VClock {
    fn advance(&self, dt: Duration) {
        let due: Vec<Waker> = {
            let mut g = self.inner.lock().unwrap();
            g.0 += dt;
            let now = g.0;
            let (due, keep): (Vec<_>, Vec<_>) = g.1.drain(..).partition(|(d, _)| *d <= now);
            g.1 = keep;
            due.into_iter().map(|(_, w)| w).collect()
        };
        for w in due {
            w.wake();
        }
    }
}

/// The group's handle on the virtual clock.
struct ClockRef(Arc<VClock>);

impl Clock for ClockRef {
    fn now(&self) -> Duration {
        self.0.inner.lock().unwrap().0
    }

    fn sleep_until(&self, deadline: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let me = self.0.clone();
        Box::pin(poll_fn(move |cx| {
            let mut g = me.inner.lock().unwrap();
            if g.0 >= deadline {
                return Poll::Ready(());
            }
            g.1.push((deadline, cx.waker().clone()));
            Poll::Pending
        }))
    }
}

/// What carries packets between the two ends (side 0 = initiator, side 1 = responder).
trait Wire: Send + Sync + 'static {
    fn send(&self, side: usize, leg: LegRef, packet: Vec<u8>) -> Result<(), LegSendError>;
    /// Moves the network on to `now`; returns what arrives: (side, leg, packet).
    fn step(&self, now: Duration) -> Vec<(usize, LegRef, Vec<u8>)>;
    /// Legs the network found down since the last call: (side, leg, why).
    fn downs(&self) -> Vec<(usize, LegRef, String)> {
        Vec::new()
    }
}

struct Tx {
    wire: Arc<dyn Wire>,
    side: usize,
    dead: Mutex<Vec<LegRef>>,
}

impl LegTx for Tx {
    fn send(&self, leg: LegRef, packet: Vec<u8>) -> Result<(), LegSendError> {
        let p = Packet::new_checked(&packet[..]).expect("the group sends whole packets");
        assert_eq!(p.total_len(), packet.len());
        assert_eq!(p.route_id(), 0, "the route id is the driver's");
        self.wire.send(self.side, leg, packet)
    }

    fn leg_dead(&self, leg: LegRef, _why: &str) {
        self.dead.lock().unwrap().push(leg);
    }
}

/// Fake legs: a queue per direction with a fixed delay; a killed leg loses everything.
#[derive(Default)]
struct FakeWire {
    inner: Mutex<FakeInner>,
}

#[derive(Default)]
struct FakeInner {
    now: Duration,
    q: VecDeque<(Duration, usize, LegRef, Vec<u8>)>,
    killed: Vec<LegRef>,
    /// Packets sent, per (side, type byte).
    sent: HashMap<(usize, u8), u64>,
    /// A copy of every packet sent by side 0 (for replay tests).
    log: Vec<(LegRef, Vec<u8>)>,
}

impl Wire for FakeWire {
    fn send(&self, side: usize, leg: LegRef, packet: Vec<u8>) -> Result<(), LegSendError> {
        let mut g = self.inner.lock().unwrap();
        *g.sent.entry((side, packet[0])).or_insert(0) += 1;
        if side == 0 && g.log.len() < 4096 {
            g.log.push((leg, packet.clone()));
        }
        if g.killed.contains(&leg) {
            return Ok(());
        }
        let due = g.now + 2 * MS;
        g.q.push_back((due, 1 - side, leg, packet));
        Ok(())
    }

    fn step(&self, now: Duration) -> Vec<(usize, LegRef, Vec<u8>)> {
        let mut g = self.inner.lock().unwrap();
        g.now = now;
        let mut out = Vec::new();
        while g.q.front().is_some_and(|(d, ..)| *d <= now) {
            let (_, side, leg, p) = g.q.pop_front().unwrap();
            if !g.killed.contains(&leg) {
                out.push((side, leg, p));
            }
        }
        out
    }
}

/// Each leg a chain S → h1 → h2 → h3 → D of 4 transport links over a `Fabric` that loses
/// and reorders, each link repaired by an `Arq` pair; every node runs a real
/// `router::core::Core`, and the legs are set up through them (source-routed setup).
struct CoreWire {
    inner: Mutex<CoreInner>,
}

/// Node ids: 0 = S, 1 = D, then 3 hops per leg.
type Node = usize;

struct CoreInner {
    fabric: Fabric<ArqPacket>,
    pks: Vec<PublicKey>,
    cores: Vec<Core>,
    /// The Arq end at `.0` of the link to `.1`.
    arqs: BTreeMap<(Node, Node), Arq>,
    killed: Vec<Node>,
    /// Legs up at S (side 0) and D (side 1) with their index in the group, by index.
    up: [Vec<(u8, LegRef)>; 2],
    /// LegDown events at the endpoints: (side, leg, reason).
    downs: Vec<(usize, LegRef, String)>,
    forwarded: u64,
}

/// Node `j`'s transport handle at its neighbours.
fn tp_of(j: Node) -> TpHandle {
    100 + j as TpHandle
}

impl CoreWire {
    /// Builds the nodes and links and sets up `legs` node-disjoint 4-hop legs S → D.
    fn new(seed: u64, link: Link, legs: usize) -> CoreWire {
        let n = 2 + 3 * legs;
        let pks: Vec<PublicKey> = (0..n).map(|i| *keys(100 + i as u8).public()).collect();
        let mut s = CoreInner {
            fabric: Fabric::new(seed, link),
            cores: pks
                .iter()
                .map(|pk| Core::new(*pk, CoreConfig::default()))
                .collect(),
            pks,
            arqs: BTreeMap::new(),
            killed: Vec::new(),
            up: [Vec::new(), Vec::new()],
            downs: Vec::new(),
            forwarded: 0,
        };
        let paths: Vec<Vec<Node>> = (0..legs)
            .map(|l| vec![0, 2 + 3 * l, 3 + 3 * l, 4 + 3 * l, 1])
            .collect();
        for path in &paths {
            for w in path.windows(2) {
                let (a, b) = (w[0], w[1]);
                s.arqs.insert((a, b), Arq::new(Duration::from_millis(60)));
                s.arqs.insert((b, a), Arq::new(Duration::from_millis(60)));
                let (pa, pb) = (s.pks[a], s.pks[b]);
                s.cores[a].transport_up(tp_of(b), pb);
                s.cores[b].transport_up(tp_of(a), pa);
            }
        }
        for (l, path) in paths.iter().enumerate() {
            let pks: Vec<PublicKey> = path.iter().map(|&i| s.pks[i]).collect();
            s.cores[0]
                .start_setup(&pks, 42, l as u8, Duration::ZERO)
                .unwrap();
        }
        let w = CoreWire {
            inner: Mutex::new(s),
        };
        let mut now = Duration::ZERO;
        while w.inner.lock().unwrap().up.iter().any(|u| u.len() < legs) {
            assert!(now < Duration::from_secs(20), "legs not set up");
            now += MS;
            assert!(w.step(now).is_empty());
        }
        w
    }

    fn legs(&self, side: usize) -> Vec<LegRef> {
        self.inner.lock().unwrap().up[side]
            .iter()
            .map(|&(_, l)| l)
            .collect()
    }

    fn kill(&self, node: Node) {
        self.inner.lock().unwrap().killed.push(node);
    }
}

impl CoreInner {
    /// A packet node `at` sends on its transport to `to` (the Arq of that link).
    fn transmit(&mut self, at: Node, to: Node, packet: Vec<u8>) {
        if let Some(arq) = self.arqs.get_mut(&(at, to)) {
            arq.send(packet);
        }
    }

    fn events(&mut self, at: Node) {
        while let Some(ev) = self.cores[at].poll_event() {
            match ev {
                Event::Send { tp, packet } => self.transmit(at, (tp - 100) as Node, packet),
                Event::LegUp { leg, leg_index, .. } if at < 2 => {
                    // In leg-index order (setups may complete in any order).
                    let i = self.up[at].partition_point(|&(k, _)| k < leg_index);
                    self.up[at].insert(i, (leg_index, leg));
                }
                Event::LegDown { leg, reason } if at < 2 => self.downs.push((at, leg, reason)),
                Event::SetupFailed { reason, .. } => panic!("setup failed: {reason}"),
                _ => {}
            }
        }
    }
}

impl Wire for CoreWire {
    fn send(&self, side: usize, leg: LegRef, mut packet: Vec<u8>) -> Result<(), LegSendError> {
        let mut g = self.inner.lock().unwrap();
        let now = g.fabric.now();
        let Some(tp) = g.cores[side].prepare_send(leg, &mut packet, now) else {
            return Err(LegSendError::Gone);
        };
        g.transmit(side, (tp - 100) as Node, packet);
        g.events(side);
        Ok(())
    }

    fn step(&self, now: Duration) -> Vec<(usize, LegRef, Vec<u8>)> {
        let mut g = self.inner.lock().unwrap();
        let g = &mut *g;
        let dt = now.saturating_sub(g.fabric.now());
        g.fabric.advance(dt);
        let idx: HashMap<PublicKey, Node> =
            g.pks.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        while let Some((from, to, p)) = g.fabric.poll_deliver() {
            let (from, to) = (idx[&from], idx[&to]);
            if !g.killed.contains(&to) {
                g.arqs.get_mut(&(to, from)).unwrap().handle(p);
            }
        }
        let mut out = Vec::new();
        let links: Vec<(Node, Node)> = g.arqs.keys().copied().collect();
        for &(at, from) in &links {
            while let Some(mut m) = g.arqs.get_mut(&(at, from)).unwrap().poll_recv() {
                match g.cores[at].handle_packet(tp_of(from), &mut m, now) {
                    Verdict::Forward(tp) => {
                        g.forwarded += 1;
                        g.transmit(at, (tp - 100) as Node, m);
                    }
                    Verdict::Deliver(leg) => out.push((at, leg, m)),
                    Verdict::Consumed => {}
                    Verdict::Drop(r) => panic!("node {at} dropped a packet: {r:?}"),
                }
                g.events(at);
            }
        }
        for at in 0..g.cores.len() {
            if !g.killed.contains(&at) && g.cores[at].poll_timeout().is_some_and(|t| t <= now) {
                g.cores[at].handle_timeout(now);
            }
            g.events(at);
        }
        for (a, b) in links {
            if g.killed.contains(&a) {
                continue;
            }
            while let Some(p) = g.arqs.get_mut(&(a, b)).unwrap().poll_transmit(now) {
                let (pa, pb) = (g.pks[a], g.pks[b]);
                g.fabric.send(pa, pb, p);
            }
        }
        out
    }

    fn downs(&self) -> Vec<(usize, LegRef, String)> {
        std::mem::take(&mut self.inner.lock().unwrap().downs)
    }
}

/// Two groups, the wire between them, the executor and the virtual clock.
struct World {
    ex: Arc<Executor<'static>>,
    clock: Arc<VClock>,
    wire: Arc<dyn Wire>,
    groups: [RouteGroup; 2],
    txs: [Arc<Tx>; 2],
}

impl World {
    fn new(wire: Arc<dyn Wire>, legs: &[LegRef]) -> World {
        World::with_config(wire, legs, legs, |_| {})
    }

    fn with_config(
        wire: Arc<dyn Wire>,
        legs: &[LegRef],
        peer_legs: &[LegRef],
        tune: impl Fn(&mut GroupConfig),
    ) -> World {
        let ex = Arc::new(Executor::new());
        let clock = Arc::new(VClock::default());
        let mut cfg = GroupConfig {
            clock: Arc::new(ClockRef(clock.clone())),
            ..GroupConfig::default()
        };
        tune(&mut cfg);
        let tx = |side| {
            Arc::new(Tx {
                wire: wire.clone(),
                side,
                dead: Mutex::new(Vec::new()),
            })
        };
        let (t0, t1) = (tx(0), tx(1));
        let (a, b) = (keys(1), keys(2));
        let g0 =
            RouteGroup::initiator(&ex, &a, *b.public(), legs.to_vec(), t0.clone(), cfg.clone());
        let g1 = RouteGroup::responder(&ex, &b, *a.public(), peer_legs[0], t1.clone(), cfg);
        for &l in &peer_legs[1..] {
            g1.add_leg(l);
        }
        World {
            ex,
            clock,
            wire,
            groups: [g0, g1],
            txs: [t0, t1],
        }
    }

    fn now(&self) -> Duration {
        self.clock.inner.lock().unwrap().0
    }

    /// One millisecond: tasks, then packets, then the clock.
    fn step(&self) {
        for _ in 0..100_000 {
            if !self.ex.try_tick() {
                break;
            }
        }
        let arrived = self.wire.step(self.now());
        for (side, leg, p) in arrived {
            self.groups[side].deliver(leg, p);
        }
        for (side, leg, why) in self.wire.downs() {
            self.groups[side].leg_down(leg, &why);
        }
        for _ in 0..100_000 {
            if !self.ex.try_tick() {
                break;
            }
        }
        self.clock.advance(MS);
    }

    /// Steps until `done` or `limit` of virtual time; true if `done`.
    fn run_until(&self, limit: Duration, mut done: impl FnMut() -> bool) -> bool {
        let end = self.now() + limit;
        while self.now() < end {
            if done() {
                return true;
            }
            self.step();
        }
        done()
    }
}

/// The counting pattern: byte `k` of a stream is byte `k % 4` of `k / 4` (u32be), salted per
/// stream, so a lost, duplicated or reordered byte shows.
fn pattern(salt: u32, from: usize, len: usize) -> Vec<u8> {
    (from..from + len)
        .map(|k| ((k / 4) as u32 ^ salt.wrapping_mul(0x9e37_79b9)).to_be_bytes()[k % 4])
        .collect()
}

struct Transfer {
    /// Bytes verified in order at the receiver.
    got: Arc<AtomicU64>,
    /// Receivers done (all bytes, then EOF).
    done: Arc<AtomicUsize>,
    /// Errors seen by either end.
    errors: Arc<Mutex<Vec<String>>>,
}

/// Starts `n` streams from side `from` to the other, each carrying `len` bytes of the
/// pattern and then closing; the receivers check every byte.
fn transfer(w: &World, from: usize, n: usize, len: usize, chunk: usize) -> Transfer {
    let t = Transfer {
        got: Arc::new(AtomicU64::new(0)),
        done: Arc::new(AtomicUsize::new(0)),
        errors: Arc::new(Mutex::new(Vec::new())),
    };
    let (src, dst) = (w.groups[from].clone(), w.groups[1 - from].clone());
    let errors = t.errors.clone();
    let ex = w.ex.clone();
    w.ex.spawn(async move {
        for i in 0..n {
            let mut st = match src.open().await {
                Ok(s) => s,
                Err(e) => {
                    errors.lock().unwrap().push(format!("open: {e}"));
                    return;
                }
            };
            let salt = (from * 1000 + i) as u32;
            st.write_all(&salt.to_be_bytes()).await.unwrap();
            let errors = errors.clone();
            // The writer of each stream runs on its own.
            let mut at = 0;
            let task = async move {
                while at < len {
                    let k = chunk.min(len - at);
                    if let Err(e) = st.write_all(&pattern(salt, at, k)).await {
                        errors.lock().unwrap().push(format!("write: {e}"));
                        return;
                    }
                    at += k;
                }
                let _ = st.close().await;
                // Keep the stream until the peer has read it all.
                let mut rest = Vec::new();
                let _ = st.read_to_end(&mut rest).await;
            };
            ex.spawn(task).detach();
        }
    })
    .detach();
    let (got, done, errors) = (t.got.clone(), t.done.clone(), t.errors.clone());
    let ex = w.ex.clone();
    w.ex.spawn(async move {
        for _ in 0..n {
            let Some(mut st) = dst.accept().await else {
                errors.lock().unwrap().push("accept: group ended".into());
                return;
            };
            let (got, done, errors) = (got.clone(), done.clone(), errors.clone());
            let task = async move {
                let mut salt = [0u8; 4];
                if let Err(e) = st.read_exact(&mut salt).await {
                    errors.lock().unwrap().push(format!("read: {e}"));
                    return;
                }
                let salt = u32::from_be_bytes(salt);
                let mut at = 0;
                let mut buf = vec![0u8; 8192];
                loop {
                    match st.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(k) => {
                            if buf[..k] != pattern(salt, at, k)[..] {
                                errors
                                    .lock()
                                    .unwrap()
                                    .push(format!("stream {salt}: wrong bytes at {at}"));
                                return;
                            }
                            at += k;
                            got.fetch_add(k as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            errors.lock().unwrap().push(format!("read: {e}"));
                            return;
                        }
                    }
                }
                if at != len {
                    errors
                        .lock()
                        .unwrap()
                        .push(format!("stream {salt}: {at} bytes, want {len}"));
                    return;
                }
                let _ = st.close().await;
                done.fetch_add(1, Ordering::Relaxed);
            };
            ex.spawn(task).detach();
        }
    })
    .detach();
    t
}

fn errors(t: &Transfer) -> Vec<String> {
    t.errors.lock().unwrap().clone()
}

/// One fake leg with `n` streams of `len` bytes (in writes of `chunk`) from the initiator,
/// once `after` bytes have arrived.
fn flowing(n: usize, len: usize, chunk: usize, after: u64) -> (World, Arc<FakeWire>, Transfer) {
    let (w, wire) = fake(&[LegRef(1)]);
    let t = transfer(&w, 0, n, len, chunk);
    let moving = w.run_until(Duration::from_secs(5), || {
        t.got.load(Ordering::Relaxed) > after
    });
    assert!(moving, "{:?}", errors(&t));
    (w, wire, t)
}

fn fake(legs: &[LegRef]) -> (World, Arc<FakeWire>) {
    let wire = Arc::new(FakeWire::default());
    (World::new(wire.clone(), legs), wire)
}

#[test]
fn handshake_opens_both_sides_and_info_says_so() {
    let (w, wire) = fake(&[LegRef(7)]);
    assert!(w.run_until(Duration::from_secs(1), || {
        w.groups[0].session().is_some() && w.groups[1].session().is_some()
    }));
    for (i, g) in w.groups.iter().enumerate() {
        let info = g.info();
        assert_eq!(info.state, "open");
        assert_eq!(info.initiator, i == 0);
        assert_eq!(info.legs.len(), 1);
        assert_eq!(info.legs[0].leg, LegRef(7));
        assert_eq!(info.legs[0].state, "up");
        assert!(info.bytes_in > 0 && info.bytes_out > 0);
        assert!(info.failure.is_none());
    }
    assert_eq!(w.groups[0].peer(), *keys(2).public());
    // Keep-alives give a round trip (2 ms each way on the fake legs).
    w.run_until(Duration::from_secs(1), || false);
    let rtt = w.groups[0].info().legs[0].rtt.expect("pongs came");
    assert!(rtt >= 3 * MS && rtt <= 10 * MS, "{rtt:?}");
    // One message each way (Handshake = type 3).
    let g = wire.inner.lock().unwrap();
    assert_eq!(g.sent[&(0, 3)], 1);
    assert_eq!(g.sent[&(1, 3)], 1);
}

#[test]
fn many_streams_both_ways_arrive_intact() {
    let (w, _) = fake(&[LegRef(1)]);
    let a = transfer(&w, 0, 40, 50_000, 7_000);
    let b = transfer(&w, 1, 40, 30_000, 3_000);
    let ok = w.run_until(Duration::from_secs(60), || {
        a.done.load(Ordering::Relaxed) == 40 && b.done.load(Ordering::Relaxed) == 40
    });
    assert!(
        ok,
        "a {} b {} errors {:?} {:?}",
        a.done.load(Ordering::Relaxed),
        b.done.load(Ordering::Relaxed),
        errors(&a),
        errors(&b)
    );
    assert!(errors(&a).is_empty() && errors(&b).is_empty());
    assert_eq!(a.got.load(Ordering::Relaxed), 40 * 50_000);
    assert_eq!(b.got.load(Ordering::Relaxed), 40 * 30_000);
    // Nothing was lost on these legs: nothing needed sending again, and the buffers drained.
    w.run_until(Duration::from_secs(1), || false);
    for g in &w.groups {
        assert_eq!(g.info().resent, 0);
        assert_eq!((g.info().unacked, g.info().held), (0, 0));
    }
}

#[test]
fn a_new_stream_costs_no_handshake() {
    let (w, wire) = fake(&[LegRef(1)]);
    let first = transfer(&w, 0, 1, 1000, 1000);
    assert!(w.run_until(
        Duration::from_secs(5),
        || first.done.load(Ordering::Relaxed) == 1
    ));
    let more = transfer(&w, 0, 20, 1000, 1000);
    assert!(
        w.run_until(Duration::from_secs(5), || more.done.load(Ordering::Relaxed)
            == 20)
    );
    let g = wire.inner.lock().unwrap();
    assert_eq!(
        g.sent[&(0, 3)] + g.sent[&(1, 3)],
        2,
        "one handshake for 21 streams"
    );
}

#[test]
fn the_unacked_buffer_is_bounded_and_backpressures() {
    let wire = Arc::new(FakeWire::default());
    let w = World::with_config(wire, &[LegRef(1)], &[LegRef(1)], |c| {
        c.max_unacked = 128 * 1024
    });
    let t = transfer(&w, 0, 4, 2_000_000, 60_000);
    let mut peak = 0;
    let ok = w.run_until(Duration::from_secs(120), || {
        peak = peak.max(w.groups[0].info().unacked);
        t.done.load(Ordering::Relaxed) == 4
    });
    assert!(ok, "{:?}", errors(&t));
    let frame = HEADER_LEN + MAX_PAYLOAD_LEN;
    assert!(peak > 0 && peak <= 128 * 1024 + frame, "peak {peak}");
}

#[test]
fn close_ends_streams_on_both_sides() {
    let (w, wire) = fake(&[LegRef(1)]);
    let (g0, g1) = (w.groups[0].clone(), w.groups[1].clone());
    let res: Arc<Mutex<Vec<String>>> = Arc::default();
    let r = res.clone();
    w.ex.spawn(async move {
        let mut st = g0.open().await.unwrap();
        st.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 8];
        let e = st.read(&mut buf).await;
        r.lock()
            .unwrap()
            .push(format!("opener: {}", e.is_err() || e.unwrap() == 0));
    })
    .detach();
    let r = res.clone();
    w.ex.spawn(async move {
        let mut st = g1.accept().await.unwrap();
        let mut buf = [0u8; 2];
        st.read_exact(&mut buf).await.unwrap();
        r.lock().unwrap().push("accepted".into());
        let e = st.read(&mut buf).await;
        r.lock()
            .unwrap()
            .push(format!("acceptor: {}", e.is_err() || e.unwrap() == 0));
    })
    .detach();
    assert!(w.run_until(Duration::from_secs(2), || res.lock().unwrap().len() == 1));
    w.groups[0].close();
    assert!(
        w.run_until(Duration::from_millis(100), || res.lock().unwrap().len()
            == 3)
    );
    let mut got = res.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, ["accepted", "acceptor: true", "opener: true"]);
    assert_eq!(w.groups[0].info().state, "closed");
    assert_eq!(w.groups[1].info().state, "closed");
    assert_eq!(w.groups[1].failure().as_deref(), Some("closed by the peer"));
    assert_eq!(wire.inner.lock().unwrap().sent[&(0, 1)], 1, "one Close");
}

#[test]
fn dropping_the_last_handle_closes_the_group() {
    let (w, wire) = fake(&[LegRef(1)]);
    assert!(w.run_until(Duration::from_secs(1), || w.groups[1].session().is_some()));
    let extra = w.groups[0].clone();
    drop(extra);
    w.run_until(Duration::from_millis(50), || false);
    assert!(
        w.groups[1].failure().is_none(),
        "another handle is still there"
    );
    let World {
        ex,
        clock,
        groups: [g0, g1],
        ..
    } = w;
    drop(g0);
    let mut t = 0;
    while g1.failure().is_none() && t < 100 {
        while ex.try_tick() {}
        for (side, leg, p) in wire.step(Clock::now(&ClockRef(clock.clone()))) {
            assert_eq!(side, 1);
            g1.deliver(leg, p);
        }
        clock.advance(MS);
        t += 1;
    }
    assert_eq!(g1.failure().as_deref(), Some("closed by the peer"));
}

#[test]
fn losing_the_last_leg_fails_streams_in_bounded_time() {
    let (w, wire, t) = flowing(2, 100_000_000, 16_000, 1_000_000);
    let killed_at = w.now();
    wire.inner.lock().unwrap().killed.push(LegRef(1));
    // Both readers and both writers see an error.
    let ok = w.run_until(Duration::from_secs(3), || errors(&t).len() >= 4);
    assert!(
        ok,
        "{:?} {:?} {:?}",
        errors(&t),
        w.groups[0].info(),
        w.groups[1].info()
    );
    assert!(
        w.now() - killed_at <= Duration::from_millis(2100),
        "{:?}",
        w.now() - killed_at
    );
    for g in &w.groups {
        let f = g.failure().expect("failed");
        assert!(f.starts_with("route lost: every leg is down"), "{f}");
        assert_eq!(g.info().state, "failed");
    }
    assert_eq!(*w.txs[0].dead.lock().unwrap(), [LegRef(1)]);
    // A stream opened now fails at once rather than hanging.
    let g = w.groups[0].clone();
    let r: Arc<Mutex<Option<bool>>> = Arc::default();
    let r2 = r.clone();
    w.ex.spawn(async move { *r2.lock().unwrap() = Some(g.open().await.is_err()) })
        .detach();
    assert!(w.run_until(Duration::from_millis(10), || r.lock().unwrap().is_some()));
    assert_eq!(*r.lock().unwrap(), Some(true));
}

#[test]
fn handshake_times_out_without_a_peer() {
    let wire = Arc::new(FakeWire::default());
    wire.inner.lock().unwrap().killed.push(LegRef(1));
    let w = World::new(wire.clone(), &[LegRef(1)]);
    assert!(w.run_until(Duration::from_secs(11), || w.groups[0].failure().is_some()));
    assert!(w.now() >= Duration::from_secs(10));
    assert_eq!(
        w.groups[0].failure().as_deref(),
        Some("handshake did not finish in time")
    );
    // Message 1 went out again every second.
    assert!(wire.inner.lock().unwrap().sent[&(0, 3)] >= 9);
}

#[test]
fn garbage_oversize_and_replays_are_dropped_and_counted() {
    let (w, wire, t) = flowing(1, 300_000, 10_000, 50_000);
    let g1 = &w.groups[1];
    let mut rng = Rng::new(5);
    // Garbage of every length, as the driver would hand it over.
    for n in 0..200 {
        let mut b = vec![0u8; n];
        rng.fill(&mut b);
        g1.deliver(LegRef(1), b);
    }
    // Well-framed packets of every type with random payloads.
    for ty in 0..8u8 {
        for n in [0usize, 1, 8, 9, 30, 1000] {
            let mut payload = vec![0u8; n];
            rng.fill(&mut payload);
            let mut p = Legs::packet(PacketType::from(ty), &payload);
            if ty == 0 && n >= 8 {
                // A plausible seq just ahead of the receiver.
                Data::new_unchecked(&mut p[HEADER_LEN..]).set_ack(0);
            }
            g1.deliver(LegRef(1), p);
        }
    }
    // A packet announcing more than it has, one with bytes after it, one on an unknown leg.
    let mut p = Legs::packet(PacketType::Data, &[0u8; 20]);
    p.truncate(15);
    g1.deliver(LegRef(1), p);
    let mut p = Legs::packet(
        PacketType::KeepAlive,
        &KeepAlive {
            kind: Kind::Ping,
            ack: 0,
            stamp: 0,
        }
        .to_bytes(),
    );
    p.push(0);
    g1.deliver(LegRef(1), p);
    g1.deliver(LegRef(99), Legs::packet(PacketType::Ping, &[0u8; 9]));
    // Every packet the initiator sent so far, again (replays): handshake, data, keep-alives.
    let log: Vec<(LegRef, Vec<u8>)> = wire.inner.lock().unwrap().log.clone();
    for (leg, p) in &log {
        g1.deliver(*leg, p.clone());
    }
    let d = g1.drops();
    assert!(d.get("malformed packet") >= 190, "{:?}", d.list());
    assert!(d.get("bytes after the packet") >= 1, "{:?}", d.list());
    assert!(d.get("unknown leg") >= 1, "{:?}", d.list());
    assert!(d.get("duplicate frame") >= 1, "{:?}", d.list());
    assert!(d.get("repeated handshake message") + d.get("handshake on an open group") >= 1);
    assert!(d.get("unexpected packet type") >= 1, "{:?}", d.list());
    assert!(
        d.get("close without the group's token") >= 1,
        "{:?}",
        d.list()
    );
    // And the stream goes on, intact.
    assert!(
        w.run_until(Duration::from_secs(20), || t.done.load(Ordering::Relaxed)
            == 1),
        "{:?} {:?}",
        errors(&t),
        d.list()
    );
    assert!(errors(&t).is_empty());
    assert!(g1.failure().is_none());
}

#[test]
fn forged_frames_are_dropped_not_fatal() {
    let (w, _, t) = flowing(1, 200_000, 10_000, 20_000);
    // Frames with plausible sequence numbers (the next ones) that do not authenticate.
    let g1 = &w.groups[1];
    for seq in 0..2000u32 {
        let mut payload = vec![0u8; 8 + 2 + 40];
        payload[10..].fill(0xab);
        let mut p = Legs::packet(PacketType::Data, &payload);
        {
            let mut d = Data::new_unchecked(&mut p[HEADER_LEN..]);
            d.set_seq(seq);
            d.set_ack(0);
        }
        p[FRAME_AT..FRAME_AT + 2].copy_from_slice(&40u16.to_be_bytes());
        g1.deliver(LegRef(1), p);
    }
    assert!(
        w.run_until(Duration::from_secs(30), || t.done.load(Ordering::Relaxed)
            == 1),
        "{:?}",
        errors(&t)
    );
    let d = g1.drops();
    assert!(d.get("frame does not authenticate") >= 1, "{:?}", d.list());
    assert!(g1.failure().is_none());
}

const LOSSY: Link = Link {
    loss: 0.05,
    reorder: 0.25,
    delay: Duration::from_millis(5),
    jitter: Duration::from_millis(20),
};

#[test]
fn sim_four_hop_legs_with_loss_and_reordering_deliver_intact_in_order() {
    let wire = Arc::new(CoreWire::new(13, LOSSY, 1));
    let w = World::with_config(wire.clone(), &wire.legs(0), &wire.legs(1), |_| {});
    let a = transfer(&w, 0, 3, 400_000, 20_000);
    let b = transfer(&w, 1, 3, 200_000, 5_000);
    let ok = w.run_until(Duration::from_secs(120), || {
        a.done.load(Ordering::Relaxed) == 3 && b.done.load(Ordering::Relaxed) == 3
    });
    assert!(ok, "{:?} {:?}", errors(&a), errors(&b));
    let g = wire.inner.lock().unwrap();
    let s = g.fabric.stats();
    assert!(
        s.lost >= 10 && s.reordered >= 10,
        "the faults happened: {s:?}"
    );
    assert!(g.forwarded > 100);
}

#[test]
fn sim_mux2_survives_a_killed_middle_node() {
    let wire = Arc::new(CoreWire::new(21, LOSSY, 2));
    let (legs, peer_legs) = (wire.legs(0), wire.legs(1));
    let w = World::with_config(wire.clone(), &legs, &peer_legs, |_| {});
    let t = transfer(&w, 0, 4, 3_000_000, 16_000);
    let back = transfer(&w, 1, 2, 1_000_000, 16_000);
    assert!(
        w.run_until(Duration::from_secs(30), || t.got.load(Ordering::Relaxed)
            > 1_000_000)
    );
    // Both legs carry data (frames go to the leg with less in flight).
    let info = w.groups[0].info();
    assert!(info.legs.iter().all(|l| l.bytes_out > 100_000), "{info:?}");
    let before = t.got.load(Ordering::Relaxed);
    let killed_at = w.now();
    wire.kill(3); // the middle hop of leg 1 (nodes 2, 3, 4)
    // Within 2 s of virtual time both ends have moved off the dead leg and data flows on.
    let moved = w.run_until(Duration::from_secs(2), || {
        w.groups.iter().all(|g| g.info().legs[0].state != "up")
            && t.got.load(Ordering::Relaxed) > before + 200_000
    });
    assert!(
        moved,
        "after {:?}: {:?} {:?} {:?} got {} before {before}",
        w.now() - killed_at,
        w.groups[0].info(),
        w.groups[1].info(),
        errors(&t),
        t.got.load(Ordering::Relaxed),
    );
    let ok = w.run_until(Duration::from_secs(120), || {
        t.done.load(Ordering::Relaxed) == 4 && back.done.load(Ordering::Relaxed) == 2
    });
    assert!(ok, "{:?} {:?}", errors(&t), errors(&back));
    assert!(errors(&t).is_empty() && errors(&back).is_empty());
    assert_eq!(t.got.load(Ordering::Relaxed), 4 * 3_000_000);
    assert!(w.groups[0].info().resent > 0);
    assert_eq!(w.groups[0].legs(), [legs[1]]);
    assert_eq!(w.groups[1].legs(), [peer_legs[1]]);
    assert!(w.groups[0].failure().is_none());
    assert_eq!(*w.txs[0].dead.lock().unwrap(), [legs[0]]);
}

#[test]
fn a_replacement_leg_joins() {
    let (w, wire, t) = flowing(1, 2_000_000, 16_000, 100_000);
    for g in &w.groups {
        g.add_leg(LegRef(2));
    }
    wire.inner.lock().unwrap().killed.push(LegRef(1));
    assert!(
        w.run_until(Duration::from_secs(30), || t.done.load(Ordering::Relaxed)
            == 1),
        "{:?}",
        errors(&t)
    );
    assert!(errors(&t).is_empty());
    assert_eq!(w.groups[0].legs(), [LegRef(2)]);
}

/// Direct legs on the real clock: what is sent is queued, and a pump task delivers it.
struct DirectWire {
    q: Mutex<VecDeque<(usize, LegRef, Vec<u8>)>>,
}

struct DirectTx {
    wire: Arc<DirectWire>,
    side: usize,
}

impl LegTx for DirectTx {
    fn send(&self, leg: LegRef, packet: Vec<u8>) -> Result<(), LegSendError> {
        self.wire
            .q
            .lock()
            .unwrap()
            .push_back((1 - self.side, leg, packet));
        Ok(())
    }
}

#[test]
fn real_clock_groups_carry_a_stream_both_ways() {
    let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
    let wire = Arc::new(DirectWire {
        q: Mutex::new(VecDeque::new()),
    });
    let (a, b) = (keys(1), keys(2));
    let tx = |side| {
        Arc::new(DirectTx {
            wire: wire.clone(),
            side,
        })
    };
    let g0 = RouteGroup::initiator(
        &ex,
        &a,
        *b.public(),
        vec![LegRef(3)],
        tx(0),
        GroupConfig::default(),
    );
    let g1 = RouteGroup::responder(
        &ex,
        &b,
        *a.public(),
        LegRef(3),
        tx(1),
        GroupConfig::default(),
    );
    let groups = [g0.clone(), g1.clone()];
    let pump = {
        let wire = wire.clone();
        async move {
            loop {
                let batch: Vec<_> = wire.q.lock().unwrap().drain(..).collect();
                for (side, leg, p) in batch {
                    groups[side].deliver(leg, p);
                }
                async_io::Timer::after(Duration::from_millis(1)).await;
            }
        }
    };
    ex.spawn(pump).detach();
    let work = async {
        let echo = async {
            let mut st = g1.accept().await.expect("a stream");
            let mut buf = vec![0u8; 1 << 20];
            st.read_exact(&mut buf).await.unwrap();
            st.write_all(&buf).await.unwrap();
            st.close().await.unwrap();
        };
        let client = async {
            let mut st = g0.open().await.unwrap();
            let data = pattern(9, 0, 1 << 20);
            st.write_all(&data).await.unwrap();
            let mut back = Vec::new();
            st.read_to_end(&mut back).await.unwrap();
            assert!(back == data, "the echo differs");
        };
        futures_lite::future::zip(echo, client).await;
    };
    let bounded = futures_lite::future::or(
        async {
            work.await;
            true
        },
        async {
            async_io::Timer::after(Duration::from_secs(20)).await;
            false
        },
    );
    let done = futures_lite::future::block_on(ex.run(bounded));
    assert!(done, "no echo within 20 s: {:?}", g0.info());
    let info = g0.info();
    assert_eq!(info.state, "open");
    assert!(info.bytes_out > 1 << 20 && info.bytes_in > 1 << 20);
    g0.close();
    let ended = futures_lite::future::block_on(ex.run(async {
        for _ in 0..200 {
            if g1.failure().is_some() {
                return true;
            }
            async_io::Timer::after(Duration::from_millis(5)).await;
        }
        false
    }));
    assert!(ended);
    assert_eq!(g1.failure().as_deref(), Some("closed by the peer"));
}

#[test]
fn sim_mux4_loses_two_legs_one_after_the_other() {
    let wire = Arc::new(CoreWire::new(34, LOSSY, 4));
    let (legs, peer_legs) = (wire.legs(0), wire.legs(1));
    let w = World::with_config(wire.clone(), &legs, &peer_legs, |_| {});
    let t = transfer(&w, 0, 3, 2_000_000, 16_000);
    assert!(
        w.run_until(Duration::from_secs(30), || t.got.load(Ordering::Relaxed)
            > 500_000)
    );
    wire.kill(3); // leg 0's middle hop
    w.run_until(Duration::from_millis(700), || false);
    wire.kill(9); // leg 2's middle hop (nodes 8, 9, 10)
    let ok = w.run_until(Duration::from_secs(120), || {
        t.done.load(Ordering::Relaxed) == 3
    });
    assert!(ok, "{:?} {:?}", errors(&t), w.groups[0].info());
    assert!(errors(&t).is_empty());
    assert_eq!(t.got.load(Ordering::Relaxed), 3 * 2_000_000);
    for (side, mine) in [(0, &legs), (1, &peer_legs)] {
        assert_eq!(w.groups[side].legs(), [mine[1], mine[3]], "side {side}");
        assert_eq!(*w.txs[side].dead.lock().unwrap(), [mine[0], mine[2]]);
    }
}
