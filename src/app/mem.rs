//! The in-memory network (DESIGN.md §9, tier 2): a [`Net`] for nodes in one process, carried
//! by the simulation harness ([`super::sim`]) — virtual clock, seeded loss, delay and
//! reordering — under the same cores a visor runs.
//!
//! Between two nodes runs, bottom up:
//!
//! 1. [`Arq`]: a reliable ordered message pipe over the lossy [`Fabric`] (it is what repairs
//!    the links; the cores above assume a byte pipe like TCP);
//! 2. Noise KK (`crypto::noise`, sans-IO): the node with the lower PK initiates (the other
//!    sends an empty "poke" so the first one starts), then each message is one sealed mux
//!    frame;
//! 3. the mux core (`mux::core`, sans-IO, stream ids by the same rule: initiator odd);
//! 4. per stream, dmsg's port header and status byte (`wire::dmsg`), answered from the node's
//!    [`PortTable`] like any carrier.
//!
//! Nothing runs by itself: the test calls [`MemWorld::step`] to move the virtual clock and
//! every core, and runs the apps' futures (which use the nodes' [`MemNet`]s through the `Net`
//! trait) on an executor in between; [`MemWorld::run`] does both until a condition holds or a
//! step bound is reached. A run is repeated exactly by its seed.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_executor::Executor;
use futures_lite::io::{AsyncRead, AsyncWrite};

use super::BoxFut;
use super::conn::{Conn, Direction, Network};
use super::net::{Listen, Net, NetError, accept_queued, open_port};
use super::sim::{Arq, ArqPacket, Fabric, FabricStats, Link};
use crate::accept::{AcceptQueue, Ephemeral, PortTable};
use crate::crypto::noise::{Handshake, TransportState, kk_initiator, kk_responder};
use crate::crypto::{Keypair, PublicKey};
use crate::mux::core::{Core, ReadResult, WriteResult};
use crate::mux::{Config, Side};
use crate::wire::dmsg::{PORT_HEADER_LEN, PortHeader, PortRepr, PortStatus};
use crate::wire::mux::{Frame, HEADER_LEN, Repr};

/// Streams waiting on one port of a node.
const BACKLOG: usize = 64;
/// The ARQ resend timeout (virtual time).
const RTO: Duration = Duration::from_millis(60);
/// Task polls [`MemWorld::run`] allows between two steps (a task that never waits cannot
/// hold the virtual clock still for ever).
pub const TICKS_PER_STEP: usize = 100_000;
/// Largest mux data frame: about a few datagrams' worth, so a stream is many packets.
const MAX_FRAME_DATA: usize = 4096;

enum Noise {
    Handshake(Box<Handshake>),
    Transport(Box<TransportState>),
    Failed,
}

/// One node's end of its link with one peer.
struct Peer {
    arq: Arq,
    noise: Noise,
    core: Core,
    /// Inbound streams whose port header has not been answered yet.
    unanswered: Vec<u32>,
    failure: Option<String>,
}

struct Node {
    keys: Keypair,
    ports: Arc<PortTable<Conn>>,
    ephemeral: Ephemeral,
    peers: BTreeMap<PublicKey, Peer>,
}

struct World {
    fabric: Fabric<ArqPacket>,
    nodes: BTreeMap<PublicKey, Node>,
    repair: bool,
    /// Tasks sleeping in virtual time: (deadline, waker).
    timers: Vec<(Duration, Waker)>,
}

/// The simulated network: its nodes, links and virtual clock. Cloning gives another handle.
#[derive(Clone)]
pub struct MemWorld {
    inner: Arc<Mutex<World>>,
}

impl std::fmt::Debug for MemWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w = self.lock();
        f.debug_struct("MemWorld")
            .field("now", &w.fabric.now())
            .field("nodes", &w.nodes.len())
            .finish()
    }
}

impl MemWorld {
    /// A world seeded with `seed` whose links are `link`.
    pub fn new(seed: u64, link: Link) -> MemWorld {
        MemWorld {
            inner: Arc::new(Mutex::new(World {
                fabric: Fabric::new(seed, link),
                nodes: BTreeMap::new(),
                repair: true,
                timers: Vec::new(),
            })),
        }
    }

    /// The same, but with links nothing repairs (see [`Arq::without_repair`]): for showing
    /// that a test's checks catch lost or reordered bytes.
    pub fn without_repair(seed: u64, link: Link) -> MemWorld {
        let w = MemWorld::new(seed, link);
        w.lock().repair = false;
        w
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a node with identity `keys`; returns its network.
    pub fn add_node(&self, keys: Keypair) -> Arc<MemNet> {
        let pk = *keys.public();
        self.lock().nodes.insert(
            pk,
            Node {
                keys,
                ports: Arc::new(PortTable::new(BACKLOG)),
                ephemeral: Ephemeral::new(),
                peers: BTreeMap::new(),
            },
        );
        Arc::new(MemNet {
            world: self.clone(),
            pk,
        })
    }

    /// Sets the link from `a` to `b`.
    pub fn set_link(&self, a: PublicKey, b: PublicKey, link: Link) {
        self.lock().fabric.set_link(a, b, link);
    }

    /// The virtual time.
    pub fn now(&self) -> Duration {
        self.lock().fabric.now()
    }

    /// Waits until the virtual clock has moved on by `d` (the apps' timers in a simulation).
    pub fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send + 'static {
        let inner = self.inner.clone();
        let deadline = self.now() + d;
        futures_lite::future::poll_fn(move |cx| {
            let mut w = inner.lock().unwrap_or_else(|p| p.into_inner());
            if w.fabric.now() >= deadline {
                return Poll::Ready(());
            }
            if !w.timers.iter().any(|(_, k)| k.will_wake(cx.waker())) {
                w.timers.push((deadline, cx.waker().clone()));
            }
            Poll::Pending
        })
    }

    /// What the links did so far.
    pub fn stats(&self) -> FabricStats {
        self.lock().fabric.stats()
    }

    /// Messages the ARQ ends sent again, in all.
    pub fn retransmits(&self) -> u64 {
        let w = self.lock();
        w.nodes
            .values()
            .flat_map(|n| n.peers.values())
            .map(|p| p.arq.retransmits)
            .sum()
    }

    /// Links whose session failed (`node → peer: why`).
    pub fn failures(&self) -> Vec<String> {
        let w = self.lock();
        let mut out = Vec::new();
        for (pk, n) in &w.nodes {
            for (peer, p) in &n.peers {
                if let Some(f) = &p.failure {
                    out.push(format!("{pk} -> {peer}: {f}"));
                }
            }
        }
        out
    }

    /// Moves the clock on by `dt`, delivers the packets due, and runs every core once.
    pub fn step(&self, dt: Duration) {
        // Connections refused after their stream was set up are dropped after the lock is
        // released (dropping one locks the world).
        let mut dropped: Vec<Conn> = Vec::new();
        let mut w = self.lock();
        w.fabric.advance(dt);
        let now = w.fabric.now();
        let World {
            fabric,
            nodes,
            repair,
            timers,
        } = &mut *w;
        timers.retain(|(at, waker)| {
            let due = *at <= now;
            if due {
                waker.wake_by_ref();
            }
            !due
        });
        while let Some((from, to, packet)) = fabric.poll_deliver() {
            let Some(node) = nodes.get_mut(&to) else {
                continue;
            };
            let keys = &node.keys;
            node.peers
                .entry(from)
                .or_insert_with(|| Peer::new(keys, from, *repair))
                .arq
                .handle(packet);
        }
        let mut out = Vec::new();
        for (&me, node) in nodes.iter_mut() {
            for (&remote, peer) in node.peers.iter_mut() {
                peer.pump(&self.inner, me, remote, &node.ports, &mut dropped);
                while let Some(p) = peer.arq.poll_transmit(now) {
                    out.push((me, remote, p));
                }
            }
        }
        for (a, b, p) in out {
            fabric.send(a, b, p);
        }
        drop(w);
        drop(dropped);
    }

    /// Runs `ex` until it is idle (at most [`TICKS_PER_STEP`] task polls) and then steps the
    /// world by `dt`, over and over, until `done` holds (true) or `max_steps` steps have
    /// passed (false).
    pub fn run(
        &self,
        ex: &Executor<'_>,
        dt: Duration,
        max_steps: usize,
        mut done: impl FnMut() -> bool,
    ) -> bool {
        let tick = || {
            for _ in 0..TICKS_PER_STEP {
                if !ex.try_tick() {
                    break;
                }
            }
        };
        for _ in 0..max_steps {
            tick();
            if done() {
                return true;
            }
            self.step(dt);
        }
        tick();
        done()
    }
}

impl Peer {
    /// The link of `keys`' node with `remote`: Noise initiator and mux client if our PK is
    /// the lower one, else responder and server (which pokes the initiator to start).
    fn new(keys: &Keypair, remote: PublicKey, repair: bool) -> Peer {
        let initiator = keys.public() < &remote;
        let mut arq = if repair {
            Arq::new(RTO)
        } else {
            Arq::without_repair()
        };
        let hs = if initiator {
            kk_initiator(keys, &remote)
        } else {
            arq.send(Vec::new());
            kk_responder(keys, &remote)
        };
        let side = if initiator {
            Side::Client
        } else {
            Side::Server
        };
        let mut p = Peer {
            arq,
            noise: Noise::Handshake(Box::new(hs)),
            core: Core::new(
                side,
                Config {
                    max_frame_data: MAX_FRAME_DATA,
                    ..Config::default()
                },
            ),
            unanswered: Vec::new(),
            failure: None,
        };
        p.advance_handshake();
        p
    }

    fn fail(&mut self, why: String) {
        if self.failure.is_none() {
            self.failure = Some(why.clone());
        }
        self.noise = Noise::Failed;
        self.core.fail(crate::mux::MuxError::Protocol(why));
    }

    /// Writes our next handshake message if it is our turn; enters transport when done.
    fn advance_handshake(&mut self) {
        let Noise::Handshake(hs) = &mut self.noise else {
            return;
        };
        if hs.is_my_turn() {
            let mut msg = vec![0u8; hs.next_message_len().unwrap_or(0)];
            match hs.write_message(&mut msg) {
                Ok(n) => {
                    msg.truncate(n);
                    self.arq.send(msg);
                }
                Err(e) => return self.fail(format!("handshake: {e}")),
            }
        }
        let Noise::Handshake(hs) = &mut self.noise else {
            return;
        };
        if hs.is_finished() {
            let Noise::Handshake(hs) = std::mem::replace(&mut self.noise, Noise::Failed) else {
                return;
            };
            match hs.into_transport() {
                Ok((t, _)) => self.noise = Noise::Transport(Box::new(t)),
                Err(e) => self.fail(format!("handshake: {e}")),
            }
        }
    }

    fn pump(
        &mut self,
        world: &Arc<Mutex<World>>,
        me: PublicKey,
        remote: PublicKey,
        ports: &PortTable<Conn>,
        dropped: &mut Vec<Conn>,
    ) {
        while let Some(msg) = self.arq.poll_recv() {
            if msg.is_empty() {
                continue; // a poke
            }
            match &mut self.noise {
                Noise::Handshake(hs) => {
                    if let Err(e) = hs.read_message(&msg) {
                        self.fail(format!("handshake: {e}"));
                    }
                    self.advance_handshake();
                }
                Noise::Transport(t) => match t.recv.open(&[], &msg) {
                    Ok(plain) => self.handle_frame(&plain),
                    Err(e) => self.fail(format!("channel frame refused: {e}")),
                },
                Noise::Failed => {}
            }
        }
        if let Noise::Transport(t) = &mut self.noise {
            while let Some(f) = self.core.poll_transmit() {
                let mut bytes = Vec::with_capacity(HEADER_LEN + f.data.len());
                bytes.extend_from_slice(&f.header.to_bytes());
                bytes.extend_from_slice(&f.data);
                match t.send.seal(&[], &bytes) {
                    Ok(sealed) => self.arq.send(sealed),
                    Err(e) => return self.fail(format!("seal: {e}")),
                }
            }
            self.core.mark_flushed();
        }
        let noop = Waker::noop();
        while let Ok(Some(id)) = self.core.accept(noop) {
            self.unanswered.push(id);
        }
        let mut waiting = std::mem::take(&mut self.unanswered);
        waiting.retain(|&id| self.answer(world, me, remote, id, ports, dropped));
        self.unanswered = waiting;
    }

    fn handle_frame(&mut self, plain: &[u8]) {
        let parsed = Frame::new_checked(plain).and_then(|f| Ok((Repr::parse(&f)?, f)));
        match parsed {
            Ok((h, f)) => {
                let data = &f.payload()[..h.payload_len()];
                if let Err(e) = self.core.handle_frame(h, &[], data) {
                    self.fail(format!("mux: {e}"));
                }
            }
            Err(e) => self.fail(format!("mux frame: {e}")),
        }
    }

    /// Answers the port header of inbound stream `id` once it has arrived; false when the
    /// stream needs nothing more from us.
    fn answer(
        &mut self,
        world: &Arc<Mutex<World>>,
        me: PublicKey,
        remote: PublicKey,
        id: u32,
        ports: &PortTable<Conn>,
        dropped: &mut Vec<Conn>,
    ) -> bool {
        match self.core.buffered(id) {
            None => return false,
            Some(n) if n < PORT_HEADER_LEN => return true,
            Some(_) => {}
        }
        let noop = Waker::noop();
        let mut hdr = [0u8; PORT_HEADER_LEN];
        if self.core.read(id, &mut hdr, noop) != Ok(ReadResult::Data(PORT_HEADER_LEN)) {
            self.core.reset(id);
            return false;
        }
        let Ok(h) = PortRepr::parse(&PortHeader::new_unchecked(&hdr[..])) else {
            self.core.reset(id);
            return false;
        };
        let place = match ports.reserve_in(h.dst_port) {
            Ok(p) => p,
            Err(why) => {
                let status = match why {
                    crate::accept::Refusal::Closed => PortStatus::Closed,
                    crate::accept::Refusal::Busy => PortStatus::Busy,
                };
                let _ = self.core.write(id, &[status.to_byte()], noop);
                self.core.close(id);
                self.core.detach(id);
                return false;
            }
        };
        let _ = self.core.write(id, &[PortStatus::Ok.to_byte()], noop);
        let stream = MemStream {
            world: world.clone(),
            me,
            remote,
            id,
        };
        let conn = Conn::new(
            Box::new(stream),
            remote,
            h.src_port,
            h.dst_port,
            Network::Mem,
            Direction::In,
        );
        if let Err(c) = place.deliver(conn) {
            dropped.push(c);
        }
        false
    }
}

/// One node's network.
pub struct MemNet {
    world: MemWorld,
    pk: PublicKey,
}

impl std::fmt::Debug for MemNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemNet").field("pk", &self.pk).finish()
    }
}

/// A bound port of a node.
struct MemListen {
    port: u16,
    ports: Arc<PortTable<Conn>>,
    queue: Arc<AcceptQueue<Conn>>,
}

impl Drop for MemListen {
    fn drop(&mut self) {
        self.ports.unbind(self.port, &self.queue);
    }
}

impl Listen for MemListen {
    fn port(&self) -> u16 {
        self.port
    }
    fn accept(&self) -> BoxFut<'_, Result<Conn, NetError>> {
        accept_queued(&self.queue, self.port)
    }
}

impl MemNet {
    async fn dial_inner(&self, pk: PublicKey, port: u16) -> Result<Conn, NetError> {
        let (id, local_port) = {
            let mut w = self.world.lock();
            let repair = w.repair;
            if pk == self.pk || !w.nodes.contains_key(&pk) {
                return Err(NetError::NoRoute(format!(
                    "no node {pk} to dial in this simulation"
                )));
            }
            let node = w
                .nodes
                .get_mut(&self.pk)
                .ok_or_else(|| NetError::Closed(format!("node {} left the simulation", self.pk)))?;
            let keys = &node.keys;
            let peer = node
                .peers
                .entry(pk)
                .or_insert_with(|| Peer::new(keys, pk, repair));
            if let Some(f) = &peer.failure {
                return Err(NetError::Io(format!("link to {pk} failed: {f}")));
            }
            let id = peer
                .core
                .open(&[])
                .map_err(|e| NetError::Refused(format!("stream to {pk}: {e}")))?;
            let ports = node.ports.clone();
            (id, node.ephemeral.next(|p| ports.contains(p)))
        };
        let st = MemStream {
            world: self.world.inner.clone(),
            me: self.pk,
            remote: pk,
            id,
        };
        let to = PortRepr {
            dst_port: port,
            src_port: local_port,
        };
        open_port(st, pk, to, Network::Mem, &format!("peer {pk}")).await
    }
}

impl Net for MemNet {
    fn local_pk(&self) -> PublicKey {
        self.pk
    }
    fn network(&self) -> Network {
        Network::Mem
    }
    fn listen(&self, port: u16) -> Result<Box<dyn Listen>, NetError> {
        let w = self.world.lock();
        let node = w
            .nodes
            .get(&self.pk)
            .ok_or_else(|| NetError::Closed(format!("node {} left the simulation", self.pk)))?;
        let queue = node
            .ports
            .bind(port)
            .ok_or_else(|| NetError::CannotListen(format!("port {port} is already in use")))?;
        Ok(Box::new(MemListen {
            port,
            ports: node.ports.clone(),
            queue,
        }))
    }
    fn dial(&self, pk: PublicKey, port: u16) -> BoxFut<'_, Result<Conn, NetError>> {
        Box::pin(self.dial_inner(pk, port))
    }
}

/// A stream between two nodes: the mux core's stream `id` on `me`'s link with `remote`.
struct MemStream {
    world: Arc<Mutex<World>>,
    me: PublicKey,
    remote: PublicKey,
    id: u32,
}

impl MemStream {
    fn with_core<R>(&self, f: impl FnOnce(&mut Core) -> io::Result<R>) -> io::Result<R> {
        let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
        let core = w
            .nodes
            .get_mut(&self.me)
            .and_then(|n| n.peers.get_mut(&self.remote))
            .map(|p| &mut p.core)
            .ok_or_else(|| io::Error::from(io::ErrorKind::ConnectionReset))?;
        f(core)
    }
}

impl AsyncRead for MemStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let r = self.with_core(|c| c.read(self.id, buf, cx.waker()).map_err(io::Error::other));
        match r {
            Ok(ReadResult::Data(n)) => Poll::Ready(Ok(n)),
            Ok(ReadResult::Eof) => Poll::Ready(Ok(0)),
            Ok(ReadResult::Pending) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for MemStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = self.with_core(|c| c.write(self.id, buf, cx.waker()).map_err(io::Error::other));
        match r {
            Ok(WriteResult::Written(n)) => Poll::Ready(Ok(n)),
            Ok(WriteResult::Pending) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // What is queued goes out at the next step.
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.with_core(|c| {
            c.close(self.id);
            Ok(())
        }))
    }
}

impl Drop for MemStream {
    fn drop(&mut self) {
        let _ = self.with_core(|c| {
            c.detach(self.id);
            Ok(())
        });
    }
}
