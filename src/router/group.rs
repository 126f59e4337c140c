//! Route groups (DESIGN.md §3.9, design13 §4): the app-visible connection between two visors
//! over one or more routes ("legs"). Bottom up:
//!
//! 1. the legs: the group never sees a transport; it hands packets to a [`LegTx`] (the router
//!    driver) and is handed what arrives on its legs ([`RouteGroup::deliver`]);
//! 2. Noise KK end to end (prologue `skywire-rs/1`, at most [`HANDSHAKE_TIMEOUT`]), its two
//!    messages in Handshake packets — the initiator (the source) sends message 1 again every
//!    second until message 2 comes, the responder answers a repeated message 1 with its
//!    message 2 again;
//! 3. the sequenced leg layer ([`legs`]): channel frames (`crypto::channel` layout, sealed in
//!    place with [`FrameSealer`]) numbered and acknowledged across the legs, re-sent on loss
//!    and moved to a survivor when a leg dies — for one leg exactly as for four;
//! 4. a [`mux::Session`](crate::mux::Session) whose frames are packed into the channel frames:
//!    streams (with the dmsg port header, opened by the app layer) cost no handshake and no
//!    public-key operation once the group is up.
//!
//! A frame that does not authenticate is dropped and counted (its sender's copy comes again),
//! not fatal: only the legs' next hops can inject packets into a route, and they could drop
//! everything anyway, so a forged packet costs the group nothing but a retransmission.
//! Inbound memory is bounded by the leg layer (frames early or waiting for the reader, at most
//! [`GroupConfig::max_rx`] bytes; beyond that a frame is dropped unacknowledged); outbound by
//! [`GroupConfig::max_unacked`] (the mux's writer waits, and so do its streams).
//!
//! Loss of the last leg fails the group: the mux session fails and every stream's read or
//! write returns an error. [`RouteGroup::close`] sends Close on every leg; the peer's streams
//! then fail too.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_executor::Executor;
use futures_lite::future::poll_fn;

use crate::crypto::channel::{FrameSealer, LEN_PREFIX};
use crate::crypto::noise::protocol::MAX_HANDSHAKE_MESSAGE_LEN;
use crate::crypto::noise::{CipherState, Handshake, TAG_LEN, kk_initiator, kk_responder};
use crate::crypto::{Keypair, PublicKey};
use crate::mux::codec::{FrameRead, FrameWrite, InFrame, next_in_channel_frame};
use crate::mux::core::{MuxError, OutFrame, Payload};
use crate::mux::{Config as MuxConfig, Session, Side, Stream};
use crate::spawn::Spawn;
use crate::wire::leg::{DATA_HEADER_LEN, close};
use crate::wire::mux::HEADER_LEN as MUX_HEADER_LEN;
use crate::wire::noise::Frame as NoiseFrame;
use crate::wire::route::{HEADER_LEN, MAX_PAYLOAD_LEN, Packet, PacketType};

pub mod legs;

use legs::{FRAME_AT, Legs, Opened};

pub use legs::{DEAD_AFTER, Drops, KEEPALIVE_INTERVAL};

/// How long the end-to-end handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = crate::crypto::channel::HANDSHAKE_TIMEOUT;
/// How often the initiator sends handshake message 1 again while it has no answer.
pub const HANDSHAKE_RESEND: Duration = Duration::from_secs(1);
/// The largest plaintext of one channel frame: a Data packet's payload (leg header ‖ length
/// prefix ‖ plaintext ‖ tag) fills at most a routing packet.
pub const MAX_FRAME_PLAIN: usize = MAX_PAYLOAD_LEN - DATA_HEADER_LEN - LEN_PREFIX - TAG_LEN;

/// One leg of a group: the local route id of the leg's rule at this endpoint.
pub use super::core::LegRef;

/// Why a packet could not be handed to a leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegSendError {
    /// The leg's route is gone: the group stops using it.
    Gone,
    /// The next transport's queue is full: the packet is lost (the group sends it again).
    Full,
}

/// The legs' side of the driver.
pub trait LegTx: Send + Sync {
    /// `packet` = 7 header bytes (type and payload_len set by the group, route id 0 for the
    /// driver to fill via `Core::prepare_send`) ‖ payload. Never blocks.
    fn send(&self, leg: LegRef, packet: Vec<u8>) -> Result<(), LegSendError>;
    /// The group found `leg` dead (silent for [`DEAD_AFTER`]) or stopped using it; the
    /// driver may close its route and set up a replacement ([`RouteGroup::add_leg`]).
    fn leg_dead(&self, _leg: LegRef, _why: &str) {}
    /// The group ended (closed by either side, or failed): the driver drops it and closes
    /// its legs.
    fn ended(&self, _why: &str) {}
}

/// The clock a group's timers run on: real time in a visor, virtual time in a simulation.
pub trait Clock: Send + Sync + 'static {
    /// Time since some fixed start.
    fn now(&self) -> Duration;
    /// Resolves once [`Clock::now`] has reached `deadline`.
    fn sleep_until(&self, deadline: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The real clock (async-io timers).
#[derive(Debug, Clone, Copy)]
pub struct RealClock {
    epoch: Instant,
}

impl Default for RealClock {
    fn default() -> Self {
        RealClock {
            epoch: Instant::now(),
        }
    }
}

impl Clock for RealClock {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn sleep_until(&self, deadline: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let at = self.epoch + deadline;
        Box::pin(async move {
            async_io::Timer::at(at).await;
        })
    }
}

/// Tunables of a group.
#[derive(Clone)]
pub struct GroupConfig {
    /// The timers' clock.
    pub clock: Arc<dyn Clock>,
    /// Longest handshake.
    pub handshake_timeout: Duration,
    /// Bytes of sent frames kept until acknowledged; the writer waits beyond it.
    pub max_unacked: usize,
    /// Bytes of received frames held (early, or waiting for the reader); beyond it a frame is
    /// dropped unacknowledged.
    pub max_rx: usize,
    /// The mux inside.
    pub mux: MuxConfig,
}

impl fmt::Debug for GroupConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupConfig")
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_unacked", &self.max_unacked)
            .field("max_rx", &self.max_rx)
            .finish_non_exhaustive()
    }
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            clock: Arc::new(RealClock::default()),
            handshake_timeout: HANDSHAKE_TIMEOUT,
            max_unacked: 1024 * 1024,
            // A peer keeping to the same bound never has more unacknowledged: one frame of
            // slack for the one the reader holds.
            max_rx: 1024 * 1024 + 2 * (HEADER_LEN + MAX_PAYLOAD_LEN),
            // Like a dmsg channel: many app streams share the group.
            mux: MuxConfig {
                accept_backlog: 1024,
                max_streams: 2048,
                ..MuxConfig::default()
            },
        }
    }
}

/// Why a group is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupError(pub String);

impl fmt::Display for GroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GroupError {}

/// One leg in [`GroupInfo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegInfo {
    /// The leg.
    pub leg: LegRef,
    /// `up`, or `down: <why>`.
    pub state: String,
    /// Round trip from keep-alive echoes (none before the first pong).
    pub rtt: Option<Duration>,
    /// Routing-packet bytes received on it.
    pub bytes_in: u64,
    /// Routing-packet bytes sent on it.
    pub bytes_out: u64,
}

/// What [`RouteGroup::info`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The other visor.
    pub peer: PublicKey,
    /// True on the side that set the group up.
    pub initiator: bool,
    /// `handshake`, `open`, `closed` or `failed`.
    pub state: &'static str,
    /// The legs, in the order they joined.
    pub legs: Vec<LegInfo>,
    /// Bytes received, all legs.
    pub bytes_in: u64,
    /// Bytes sent, all legs.
    pub bytes_out: u64,
    /// Since the group was made.
    pub age: Duration,
    /// Mux streams open.
    pub streams: usize,
    /// Why it failed or ended.
    pub failure: Option<String>,
    /// Dropped inbound packets by reason.
    pub drops: Vec<(String, u64)>,
    /// Frames sent again (loss or a dead leg).
    pub resent: u64,
    /// Bytes of sent frames not yet acknowledged (bounded by `max_unacked` + one frame).
    pub unacked: usize,
    /// Bytes of received frames held, early or waiting for the mux (bounded by `max_rx`).
    pub held: usize,
}

enum Phase {
    /// Initiator: message 1 sent, waiting for message 2. Responder: waiting for message 1.
    Handshake {
        hs: Box<Handshake>,
        /// Initiator: message 1, to send again.
        msg1: Vec<u8>,
        next_resend: Duration,
        deadline: Duration,
        /// Responder: our keys, for a fresh handshake after a message 1 that failed.
        keys: Option<Box<Keypair>>,
    },
    Open {
        /// Responder: the message 1 answered and our message 2 (sent again for a repeat).
        answered: Option<(Vec<u8>, Vec<u8>)>,
        /// When message 2 may be sent again.
        resend_ok: Duration,
    },
    /// Closed by either side (`failure` says why) or failed.
    Ended,
}

struct Core {
    phase: Phase,
    legs: Legs,
    opener: Option<CipherState>,
    sealer: Option<FrameSealer>,
    /// The tokens that make a Close ours (`.0`, sent) or the peer's (`.1`, expected).
    close_tokens: Option<([u8; CLOSE_TOKEN_LEN], [u8; CLOSE_TOKEN_LEN])>,
    initiator: bool,
    /// Why the group ended (closed or failed).
    failure: Option<String>,
    /// Ended by a Close (ours or the peer's), not a failure.
    clean: bool,
    ready_wakers: Vec<Waker>,
    rx_waker: Option<Waker>,
    room_waker: Option<Waker>,
    timer_waker: Option<Waker>,
    timer_kick: bool,
    /// The deadline the timer task sleeps until (`None`: it is not sleeping on one); a
    /// change that leaves every deadline at or after it needs no kick.
    armed: Option<Duration>,
    /// `ended` was reported to the driver.
    reported: bool,
}

/// What the caller must do after a state change, outside the lock.
#[derive(Default)]
struct After {
    out: Vec<(LegRef, Vec<u8>)>,
    died: Vec<legs::LegDied>,
    wake: Vec<Waker>,
    /// The handshake just finished: start the mux.
    opened: bool,
    /// The group just ended: tell the driver why.
    ended: Option<String>,
}

fn wake_opt(w: &mut Option<Waker>, into: &mut Vec<Waker>) {
    if let Some(w) = w.take() {
        into.push(w);
    }
}

impl Core {
    fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open { .. })
    }

    fn fail(&mut self, why: String, clean: bool) {
        if self.failure.is_some() {
            return;
        }
        log::debug!("route group: {why}");
        self.failure = Some(why);
        self.clean = clean;
        self.phase = Phase::Ended;
        self.kick();
    }

    fn kick(&mut self) {
        self.timer_kick = true;
    }

    /// Kicks the timer task only if `due` comes before the deadline it sleeps until (or it
    /// sleeps on none): most new deadlines come after one already armed.
    fn kick_before(&mut self, due: Duration) {
        if self.armed.is_none_or(|a| due < a) {
            self.kick();
        }
    }

    /// Collects what the state change left to do.
    fn after(&mut self, opened: bool) -> After {
        let mut a = After {
            out: self.legs.take_out(),
            died: self.legs.take_died(),
            opened,
            ..After::default()
        };
        if self.is_open() && !self.legs.any_up() {
            let last = a
                .died
                .last()
                .map(|d| format!(" (last: {}: {})", d.leg, d.why))
                .unwrap_or_default();
            self.fail(format!("route lost: every leg is down{last}"), false);
        }
        if self.failure.is_some() && !self.reported {
            self.reported = true;
            a.ended = self.failure.clone();
        }
        if self.failure.is_some() || opened {
            a.wake.append(&mut self.ready_wakers);
        }
        if self.failure.is_some() || self.legs.ready_len() > 0 {
            wake_opt(&mut self.rx_waker, &mut a.wake);
        }
        if self.failure.is_some() || self.legs.has_room() {
            wake_opt(&mut self.room_waker, &mut a.wake);
        }
        if self.timer_kick {
            // The timer task clears the flag when it sees it.
            wake_opt(&mut self.timer_waker, &mut a.wake);
        }
        a
    }

    /// Finishes the handshake: the transport keys, the leg layer's clocks.
    fn open(&mut self, hs: Box<Handshake>, answered: Option<(Vec<u8>, Vec<u8>)>, now: Duration) {
        match hs.into_transport() {
            Ok((t, _)) => {
                let mine = close_token(&t.handshake_hash, self.initiator);
                let theirs = close_token(&t.handshake_hash, !self.initiator);
                self.close_tokens = Some((mine, theirs));
                self.opener = Some(t.recv);
                self.sealer = Some(FrameSealer::new(t.send));
                self.legs.start(now);
                self.phase = Phase::Open {
                    answered,
                    resend_ok: now,
                };
                self.kick();
            }
            Err(e) => self.fail(format!("handshake failed: {e}"), false),
        }
    }

    fn handle_handshake(&mut self, leg: LegRef, msg: &[u8], now: Duration) -> bool {
        match &mut self.phase {
            Phase::Handshake { hs, keys, .. } => {
                if hs.next_message_len() != Some(msg.len()) {
                    self.legs
                        .drops
                        .count("handshake message of the wrong length");
                    return false;
                }
                let responder = keys.is_some();
                if let Err(e) = hs.read_message(msg) {
                    if let Some(k) = keys {
                        // Not from our peer: wait on for the real message 1.
                        let peer = peer_of(hs);
                        **hs = kk_responder(k, &peer);
                        self.legs
                            .drops
                            .count("handshake message does not authenticate");
                        return false;
                    }
                    self.fail(format!("handshake failed: {e}"), false);
                    return false;
                }
                let Phase::Handshake { hs, .. } = std::mem::replace(&mut self.phase, Phase::Ended)
                else {
                    unreachable!("matched above")
                };
                let mut hs = hs;
                let mut answered = None;
                if responder {
                    let mut buf = [0u8; MAX_HANDSHAKE_MESSAGE_LEN];
                    match hs.write_message(&mut buf) {
                        Ok(n) => {
                            self.legs.send_on(leg, PacketType::Handshake, &buf[..n]);
                            answered = Some((msg.to_vec(), buf[..n].to_vec()));
                        }
                        Err(e) => {
                            self.fail(format!("handshake failed: {e}"), false);
                            return false;
                        }
                    }
                }
                self.open(hs, answered, now);
                self.is_open()
            }
            Phase::Open {
                answered: Some((m1, m2)),
                resend_ok,
            } if m1.as_slice() == msg => {
                // Our message 2 was lost: again, at most twice a second.
                if now >= *resend_ok {
                    *resend_ok = now + KEEPALIVE_INTERVAL;
                    let m2 = m2.clone();
                    self.legs.send_on(leg, PacketType::Handshake, &m2);
                } else {
                    self.legs.drops.count("repeated handshake message");
                }
                false
            }
            _ => {
                self.legs.drops.count("handshake on an open group");
                false
            }
        }
    }

    fn deliver(&mut self, leg: LegRef, packet: Vec<u8>, now: Duration) -> bool {
        let (ty, len) = match Packet::new_checked(&packet[..]) {
            Ok(p) => (p.packet_type(), p.total_len()),
            Err(_) => {
                self.legs.drops.count("malformed packet");
                return false;
            }
        };
        if len != packet.len() {
            self.legs.drops.count("bytes after the packet");
            return false;
        }
        if self.failure.is_some() {
            self.legs.drops.count("group ended");
            return false;
        }
        match ty {
            PacketType::Handshake => {
                if !self.legs.note_rx(leg, len, now) {
                    self.legs.drops.count("unknown leg");
                    return false;
                }
                self.handle_handshake(leg, &packet[HEADER_LEN..], now)
            }
            PacketType::Close => {
                if !self.legs.note_rx(leg, len, now) {
                    self.legs.drops.count("unknown leg");
                    return false;
                }
                let payload = &packet[HEADER_LEN..];
                let genuine = match (&self.close_tokens, payload.split_first()) {
                    (Some((_, theirs)), Some((_, token))) => {
                        token.len() == CLOSE_TOKEN_LEN
                            && token.iter().zip(theirs).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
                    }
                    _ => false,
                };
                if !genuine {
                    self.legs.drops.count("close without the group's token");
                    return false;
                }
                let code = payload[0];
                let why = if code == close::FAILED {
                    "closed by the peer (it failed)"
                } else {
                    "closed by the peer"
                };
                self.fail(why.to_string(), code != close::FAILED);
                false
            }
            PacketType::Data | PacketType::Ping | PacketType::Pong => {
                let Some(cipher) = self.opener.as_mut() else {
                    self.legs.drops.count("data before the handshake");
                    return false;
                };
                let mut open = |frame: &mut [u8]| open_frame(cipher, frame);
                self.legs.handle(leg, packet, now, &mut open);
                false
            }
            _ => {
                self.legs.drops.count("unexpected packet type");
                false
            }
        }
    }

    fn handle_timeout(&mut self, now: Duration, initiator: bool) {
        match &mut self.phase {
            Phase::Handshake {
                msg1,
                next_resend,
                deadline,
                ..
            } => {
                if now >= *deadline {
                    self.fail("handshake did not finish in time".to_string(), false);
                } else if initiator && now >= *next_resend {
                    *next_resend = now + HANDSHAKE_RESEND;
                    let m = msg1.clone();
                    if let Some(&leg) = self.legs.up_legs().first() {
                        self.legs.send_on(leg, PacketType::Handshake, &m);
                    }
                }
            }
            Phase::Open { .. } => self.legs.handle_timeout(now),
            Phase::Ended => {}
        }
    }

    fn poll_timeout(&self, initiator: bool) -> Option<Duration> {
        match &self.phase {
            Phase::Handshake {
                next_resend,
                deadline,
                ..
            } => Some(if initiator {
                (*next_resend).min(*deadline)
            } else {
                *deadline
            }),
            Phase::Open { .. } => self.legs.poll_timeout(),
            Phase::Ended => None,
        }
    }

    fn state(&self) -> &'static str {
        match self.phase {
            Phase::Handshake { .. } => "handshake",
            Phase::Open { .. } => "open",
            Phase::Ended if self.clean => "closed",
            Phase::Ended => "failed",
        }
    }
}

/// Bytes of the token that authenticates a Close.
pub const CLOSE_TOKEN_LEN: usize = 16;

/// The token a side puts in its Close: only the two ends know the handshake hash, so a hop
/// cannot close a group; a replayed Close of the same group closes only what is closed.
fn close_token(handshake_hash: &[u8; 64], from_initiator: bool) -> [u8; CLOSE_TOKEN_LEN] {
    let h = crate::crypto::hmac::hmac_sha512(
        handshake_hash,
        &[b"skywire-rs/route-close", &[u8::from(from_initiator)]],
    );
    let mut t = [0u8; CLOSE_TOKEN_LEN];
    t.copy_from_slice(&h[..CLOSE_TOKEN_LEN]);
    t
}

/// The responder's peer, from the handshake it was built with.
fn peer_of(hs: &Handshake) -> PublicKey {
    *hs.remote().expect("a KK handshake knows its peer")
}

/// Opens one channel frame (`u16 len ‖ ciphertext ‖ tag`, filling `frame` exactly) in place
/// under the receive CipherState; its plaintext length, or `None` if it is malformed or does
/// not authenticate (the counter then stays where it was).
fn open_frame(cipher: &mut CipherState, frame: &mut [u8]) -> Option<usize> {
    let total = frame.len();
    let mut view = NoiseFrame::new_checked(frame).ok()?;
    if view.total_len() != total {
        return None;
    }
    let msg = view.payload_mut();
    let body = msg.len().checked_sub(TAG_LEN)?;
    let (data, tag) = msg.split_at_mut(body);
    let tag: [u8; TAG_LEN] = (&*tag).try_into().ok()?;
    cipher.open_in_place(&[], data, &tag).ok()?;
    Some(body)
}

struct Inner {
    core: Mutex<Core>,
    tx: Arc<dyn LegTx>,
    clock: Arc<dyn Clock>,
    ex: Arc<Executor<'static>>,
    session: OnceLock<Session>,
    peer: PublicKey,
    initiator: bool,
    created: Duration,
    mux: MuxConfig,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the core, then does what it left to do outside the lock.
    fn with<T>(self: &Arc<Self>, f: impl FnOnce(&mut Core, Duration) -> (T, bool)) -> T {
        let now = self.clock.now();
        let (t, a) = {
            let mut core = self.lock();
            let (t, opened) = f(&mut core, now);
            (t, core.after(opened))
        };
        self.finish(a);
        t
    }

    fn finish(self: &Arc<Self>, mut a: After) {
        loop {
            let mut gone = Vec::new();
            for (leg, p) in a.out.drain(..) {
                match self.tx.send(leg, p) {
                    Ok(()) => {}
                    Err(LegSendError::Full) => {}
                    Err(LegSendError::Gone) => gone.push(leg),
                }
            }
            for d in &a.died {
                self.tx.leg_dead(d.leg, &d.why);
            }
            if a.opened {
                self.start_session();
            }
            for w in a.wake.drain(..) {
                w.wake();
            }
            if let Some(why) = a.ended.take() {
                // The mux learns it from its reader (woken above): streams fail with `why`.
                self.tx.ended(&why);
            }
            if gone.is_empty() {
                return;
            }
            let now = self.clock.now();
            let mut core = self.lock();
            for leg in gone {
                core.legs.leg_down(leg, "its route is gone", now);
            }
            a = core.after(false);
        }
    }

    /// Close on every live leg; the group ends ("closed by this side").
    fn close(self: &Arc<Self>) {
        self.with(|c, _| {
            if c.failure.is_none() {
                if let Some((mine, _)) = c.close_tokens {
                    let mut payload = vec![close::CLOSED];
                    payload.extend_from_slice(&mine);
                    c.legs.broadcast(PacketType::Close, &payload);
                }
                c.fail("closed by this side".into(), true);
            }
            ((), false)
        });
    }

    fn start_session(self: &Arc<Self>) {
        let Some(sealer) = self.lock().sealer.take() else {
            return;
        };
        let reader = GroupReader {
            g: self.clone(),
            cur: None,
            pos: 0,
        };
        let writer = GroupWriter {
            g: self.clone(),
            sealer,
            buf: Vec::new(),
        };
        let side = if self.initiator {
            Side::Client
        } else {
            Side::Server
        };
        let s = Session::new(&self.ex, reader, writer, side, self.mux.clone());
        let _ = self.session.set(s);
        let wakers = std::mem::take(&mut self.lock().ready_wakers);
        for w in wakers {
            w.wake();
        }
    }
}

/// A route group. Cloning gives another handle to the same group; when the last handle is
/// dropped the group is closed (its tasks would otherwise keep it, and its legs, alive).
#[derive(Clone)]
pub struct RouteGroup {
    inner: Arc<Handle>,
}

/// The owners' share of a group: dropping the last one closes it.
struct Handle(Arc<Inner>);

impl std::ops::Deref for Handle {
    type Target = Arc<Inner>;
    fn deref(&self) -> &Arc<Inner> {
        &self.0
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // On the executor, not here: the driver may drop its last handle while holding a lock
        // that `LegTx::send`/`ended` take.
        let inner = self.0.clone();
        self.0.ex.spawn_boxed(async move { inner.close() }).detach();
    }
}

impl fmt::Debug for RouteGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteGroup")
            .field("peer", &self.inner.peer)
            .field("initiator", &self.inner.initiator)
            .finish_non_exhaustive()
    }
}

impl RouteGroup {
    /// The source's side: sends handshake message 1 on the first leg at once.
    pub fn initiator(
        ex: &Arc<Executor<'static>>,
        keys: &Keypair,
        peer: PublicKey,
        legs: Vec<LegRef>,
        tx: Arc<dyn LegTx>,
        cfg: GroupConfig,
    ) -> RouteGroup {
        let mut hs = Box::new(kk_initiator(keys, &peer));
        let mut buf = [0u8; MAX_HANDSHAKE_MESSAGE_LEN];
        let msg1 = match hs.write_message(&mut buf) {
            Ok(n) => buf[..n].to_vec(),
            Err(_) => Vec::new(),
        };
        let g = RouteGroup::build(ex, peer, true, hs, msg1, None, legs, tx, cfg);
        g.inner.with(|c, _now| {
            if let Phase::Handshake { msg1, .. } = &c.phase {
                let m = msg1.clone();
                if m.is_empty() {
                    c.fail("handshake failed: cannot write message 1".into(), false);
                } else if let Some(&leg) = c.legs.up_legs().first() {
                    c.legs.send_on(leg, PacketType::Handshake, &m);
                } else {
                    c.fail("a route group needs at least one leg".into(), false);
                }
            }
            ((), false)
        });
        g
    }

    /// The destination's side, for the first leg the peer set up: waits for message 1.
    pub fn responder(
        ex: &Arc<Executor<'static>>,
        keys: &Keypair,
        peer: PublicKey,
        first_leg: LegRef,
        tx: Arc<dyn LegTx>,
        cfg: GroupConfig,
    ) -> RouteGroup {
        let hs = Box::new(kk_responder(keys, &peer));
        let keys = Some(Box::new(Keypair::from_seed(keys.seed())));
        RouteGroup::build(
            ex,
            peer,
            false,
            hs,
            Vec::new(),
            keys,
            vec![first_leg],
            tx,
            cfg,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        ex: &Arc<Executor<'static>>,
        peer: PublicKey,
        initiator: bool,
        hs: Box<Handshake>,
        msg1: Vec<u8>,
        keys: Option<Box<Keypair>>,
        legs: Vec<LegRef>,
        tx: Arc<dyn LegTx>,
        cfg: GroupConfig,
    ) -> RouteGroup {
        let now = cfg.clock.now();
        let core = Core {
            phase: Phase::Handshake {
                hs,
                msg1,
                next_resend: now + HANDSHAKE_RESEND,
                deadline: now + cfg.handshake_timeout,
                keys,
            },
            legs: Legs::new(&legs, cfg.max_unacked, cfg.max_rx, now),
            opener: None,
            sealer: None,
            close_tokens: None,
            initiator,
            failure: None,
            clean: false,
            ready_wakers: Vec::new(),
            rx_waker: None,
            room_waker: None,
            timer_waker: None,
            timer_kick: false,
            armed: None,
            reported: false,
        };
        let inner = Arc::new(Inner {
            core: Mutex::new(core),
            tx,
            clock: cfg.clock.clone(),
            ex: ex.clone(),
            session: OnceLock::new(),
            peer,
            initiator,
            created: now,
            mux: cfg.mux.clone(),
        });
        ex.spawn_boxed(timer_task(Arc::downgrade(&inner))).detach();
        RouteGroup {
            inner: Arc::new(Handle(inner)),
        }
    }

    /// A packet from one of the group's legs (the whole routing packet). Never blocks: what
    /// does not fit the group's bounds, or is malformed, is dropped and counted.
    pub fn deliver(&self, leg: LegRef, packet: Vec<u8>) {
        self.inner.with(|c, now| ((), c.deliver(leg, packet, now)));
    }

    /// Joins a leg (a replacement the driver set up).
    pub fn add_leg(&self, leg: LegRef) {
        self.inner.with(|c, now| {
            c.legs.add_leg(leg, now);
            c.kick();
            ((), false)
        });
    }

    /// The driver saw `leg`'s route fail: its frames go out again on the others; without
    /// another leg the group fails.
    pub fn leg_down(&self, leg: LegRef, why: &str) {
        self.inner.with(|c, now| {
            c.legs.leg_down(leg, why, now);
            if !c.is_open() && !c.legs.any_up() {
                c.fail(format!("route lost: {leg}: {why}"), false);
            }
            ((), false)
        });
    }

    /// Resolves once the handshake is done (or with why it failed).
    pub async fn ready(&self) -> Result<(), GroupError> {
        poll_fn(|cx| {
            if self.inner.session.get().is_some() {
                return Poll::Ready(Ok(()));
            }
            let mut c = self.inner.lock();
            if let Some(f) = &c.failure {
                return Poll::Ready(Err(GroupError(f.clone())));
            }
            if !c.ready_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                c.ready_wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// The mux (once [`RouteGroup::ready`]): open streams here.
    pub fn session(&self) -> Option<Session> {
        self.inner.session.get().cloned()
    }

    /// Opens a stream (after waiting for the handshake).
    pub async fn open(&self) -> Result<Stream, GroupError> {
        self.ready().await?;
        let s = self
            .session()
            .ok_or_else(|| GroupError("no session".into()))?;
        s.open().await.map_err(|e| GroupError(e.to_string()))
    }

    /// The next stream the peer opens; `None` once the group has ended.
    pub async fn accept(&self) -> Option<Stream> {
        self.ready().await.ok()?;
        self.session()?.accept().await.ok()
    }

    /// Where the group stands.
    pub fn info(&self) -> GroupInfo {
        let now = self.inner.clock.now();
        let c = self.inner.lock();
        let legs: Vec<LegInfo> = c
            .legs
            .stats()
            .into_iter()
            .map(|s| LegInfo {
                leg: s.leg,
                state: match &s.down {
                    None => "up".to_string(),
                    Some(why) => format!("down: {why}"),
                },
                rtt: s.rtt,
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
            })
            .collect();
        GroupInfo {
            peer: self.inner.peer,
            initiator: self.inner.initiator,
            state: c.state(),
            bytes_in: legs.iter().map(|l| l.bytes_in).sum(),
            bytes_out: legs.iter().map(|l| l.bytes_out).sum(),
            legs,
            age: now.saturating_sub(self.inner.created),
            streams: self.inner.session.get().map_or(0, Session::stream_count),
            failure: c.failure.clone(),
            drops: c.legs.drops.list(),
            resent: c.legs.resent,
            unacked: c.legs.unacked_bytes(),
            held: c.legs.rx_bytes(),
        }
    }

    /// Dropped inbound packets by reason.
    pub fn drops(&self) -> Drops {
        self.inner.lock().legs.drops.clone()
    }

    /// Ends the group: Close on every leg; streams on both sides fail.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Why the group ended (closed or failed), once it has.
    pub fn failure(&self) -> Option<String> {
        self.inner.lock().failure.clone()
    }

    /// The peer.
    pub fn peer(&self) -> PublicKey {
        self.inner.peer
    }

    /// True on the side that set the group up.
    pub fn is_initiator(&self) -> bool {
        self.inner.initiator
    }

    /// The live legs.
    pub fn legs(&self) -> Vec<LegRef> {
        self.inner.lock().legs.up_legs()
    }
}

/// Pings, dead legs, resends and the handshake's deadline, on the group's clock. Ends with
/// the group (or when the last handle is dropped).
async fn timer_task(weak: std::sync::Weak<Inner>) {
    loop {
        let Some(g) = weak.upgrade() else {
            return;
        };
        let deadline = g.with(|c, now| {
            c.handle_timeout(now, g.initiator);
            c.armed = c.poll_timeout(g.initiator);
            (c.armed, false)
        });
        let Some(deadline) = deadline else {
            return;
        };
        let sleep = g.clock.sleep_until(deadline);
        let kicked = {
            let g2 = g.clone();
            poll_fn(move |cx| {
                let mut c = g2.lock();
                if c.timer_kick {
                    c.timer_kick = false;
                    return Poll::Ready(());
                }
                c.timer_waker = Some(cx.waker().clone());
                Poll::Pending
            })
        };
        drop(g);
        futures_lite::future::or(sleep, kicked).await;
    }
}

/// The mux's reader: mux frames from the channel frames the leg layer opened in order.
struct GroupReader {
    g: Arc<Inner>,
    cur: Option<Opened>,
    pos: usize,
}

impl GroupReader {
    /// The next opened frame; `None` after a clean close (never: a closed group is an error
    /// to the mux, so its streams see why).
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Opened>, MuxError>> {
        let g = self.g.clone();
        let (r, a) = {
            let mut c = g.lock();
            let r = if let Some(f) = c.legs.pop_ready(g.clock.now()) {
                if let Some(due) = c.legs.ack_due() {
                    c.kick_before(due);
                }
                Poll::Ready(Ok(Some(f)))
            } else if let Some(why) = &c.failure {
                Poll::Ready(Err(MuxError::Closed(why.clone())))
            } else {
                c.rx_waker = Some(cx.waker().clone());
                Poll::Pending
            };
            (r, c.after(false))
        };
        g.finish(a);
        r
    }
}

impl FrameRead for GroupReader {
    async fn read_frame(&mut self) -> Result<Option<InFrame<'_>>, MuxError> {
        while self.cur.as_ref().is_none_or(|f| self.pos >= f.end) {
            if let Some(old) = self.cur.take() {
                crate::mux::pool::give(old.buf);
            }
            match poll_fn(|cx| self.poll_next(cx)).await? {
                Some(f) => {
                    if f.start == f.end {
                        return Err(MuxError::Protocol("empty channel frame".into()));
                    }
                    self.pos = f.start;
                    self.cur = Some(f);
                }
                None => return Ok(None),
            }
        }
        let f = self.cur.as_ref().expect("checked above");
        let (header, start, n) = next_in_channel_frame(&f.buf[..f.end], self.pos)?;
        self.pos = start + n;
        Ok(Some(InFrame {
            header,
            control: &[],
            data: Payload::Borrowed(&f.buf[start..start + n]),
        }))
    }
}

/// The mux's writer: packs mux frames into a channel frame behind room for the routing and
/// leg headers, seals it in place and hands it to the leg layer (waiting while the
/// unacknowledged buffer is full).
struct GroupWriter {
    g: Arc<Inner>,
    sealer: FrameSealer,
    /// `FRAME_AT + LEN_PREFIX` bytes of room, then the packed mux frames.
    buf: Vec<u8>,
}

fn closed_io(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, why.to_string())
}

impl GroupWriter {
    fn plain_len(&self) -> usize {
        self.buf.len().saturating_sub(FRAME_AT + LEN_PREFIX)
    }
}

impl FrameWrite for GroupWriter {
    async fn write_frame(&mut self, f: &OutFrame) -> io::Result<()> {
        let size = MUX_HEADER_LEN + f.data.len();
        if size > MAX_FRAME_PLAIN {
            return Err(io::Error::other(format!(
                "mux frame of {size} bytes does not fit a route frame"
            )));
        }
        if self.plain_len() + size > MAX_FRAME_PLAIN {
            self.flush().await?;
        }
        if self.buf.is_empty() {
            self.buf = crate::mux::pool::take(FRAME_AT + LEN_PREFIX + size + TAG_LEN);
            self.buf.resize(FRAME_AT + LEN_PREFIX, 0);
        }
        self.buf.extend_from_slice(&f.header.to_bytes());
        self.buf.extend_from_slice(&f.data);
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.plain_len() == 0 {
            return Ok(());
        }
        // Room in the unacknowledged buffer (or the group's end).
        let g = self.g.clone();
        poll_fn(|cx| {
            let mut c = g.lock();
            if let Some(why) = &c.failure {
                return Poll::Ready(Err(closed_io(why)));
            }
            if c.legs.has_room() {
                return Poll::Ready(Ok(()));
            }
            c.room_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        let mut frame = std::mem::take(&mut self.buf);
        self.sealer
            .seal_frame(&mut frame, FRAME_AT)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let sent = self.g.with(|c, now| {
            if c.failure.is_some() {
                return (false, false);
            }
            let ok = c.legs.submit(frame, now);
            match c.legs.last_due() {
                Some(due) if ok => c.kick_before(due),
                _ => c.kick(),
            }
            (ok, false)
        });
        if sent {
            Ok(())
        } else {
            Err(closed_io("route group ended"))
        }
    }

    async fn close(&mut self) -> io::Result<()> {
        self.flush().await
    }
}
