//! The relay server (DESIGN.md §3.4–3.5, `skywire dmsg server`): accepts Noise XK sessions
//! from clients and relays channels between two clients it serves.
//!
//! A client asks for a channel by opening a stream on its session whose SYN carries the
//! control payload `0x01 ‖ destination pk (32)`. The relay answers with one status byte on
//! that stream — [`STATUS_OK`], or why not — and, if the destination has a session here,
//! opens a stream on it with `0x01 ‖ source pk` (the source as authenticated by XK) and
//! forwards between the two ([`crate::mux::forward`]). The bytes it forwards are the two
//! clients' end-to-end KK channel: the relay opens only the sealed session headers and hands
//! each data payload on as the same buffer under a freshly sealed header (encrypt-once, no
//! copy); it never sees plaintext and never runs an AEAD over bulk data.
//!
//! Bounds: a connection is admitted (or closed at once, unread) by the [`super::admission`] gate
//! before any cryptography: it reserves one of `max_sessions` session slots and one of the
//! global and per-address handshake slots, and spends a per-address rate token; a replayed
//! first handshake message is dropped before any Diffie-Hellman. Per relayed stream the mux
//! window (256 KiB each way) is all the relay buffers, and a slow destination only stops its
//! own stream: the forwarder takes from one stream only what the other accepts at once, so the
//! relay holds nothing per channel outside the two sessions' budgets (at most one payload per
//! direction, see [`crate::mux::forward`]). Sessions that stop
//! answering pings are dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use async_executor::Executor;
use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use futures_lite::future::{self, poll_fn};
use futures_lite::io::AsyncWriteExt;

use super::admission::{Gate, Limits, ReplayCache, Ticket};
use super::disc_client::DiscClient;
use super::entry::Entry;
use crate::crypto::channel::{ChannelError, HANDSHAKE_TIMEOUT, handshake_transport_admit};
use crate::crypto::noise::xk_responder;
use crate::crypto::{Keypair, PublicKey};
use crate::mux::codec::{SealedReader, SealedWriter};
use crate::mux::forward::forward_both;
use crate::mux::{Config, Session, Side, Stream};
use crate::spawn::Spawn;
use crate::wire::dmsg::{RelayStatus, RequestRepr};

/// Control payload version byte of a channel request.
pub const CONTROL_V1: u8 = crate::wire::dmsg::CONTROL_V1;
/// The channel is connected.
pub const STATUS_OK: u8 = RelayStatus::Ok.to_byte();
/// The destination has no session with this relay.
pub const STATUS_NOT_CONNECTED: u8 = RelayStatus::NotConnected.to_byte();
/// The destination's session refused the stream (busy or closing).
pub const STATUS_REFUSED: u8 = RelayStatus::Refused.to_byte();
/// The request was malformed.
pub const STATUS_BAD_REQUEST: u8 = RelayStatus::BadRequest.to_byte();

/// What a status byte means, for error messages.
pub fn status_text(s: u8) -> &'static str {
    RelayStatus::from_byte(s).text()
}

/// First handshake messages remembered to recognise replays (8 bytes each).
pub const REPLAY_CACHE: usize = 4096;

/// Relay settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Session, handshake and per-address limits (`max_sessions` is the most clients).
    pub limits: Limits,
    /// How often each session is pinged.
    pub ping_interval: Duration,
    /// A session whose ping is not answered within this is dropped.
    pub ping_timeout: Duration,
    /// The address published in discovery (`host:port`).
    pub public_addr: String,
    /// How often the relay entry is re-published.
    pub publish_interval: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            limits: Limits::default(),
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(30),
            public_addr: String::new(),
            publish_interval: Duration::from_secs(60),
        }
    }
}

/// The mux settings of a relay ↔ client session (both ends use these): frames of up to
/// 64 KiB, so one end-to-end channel frame (at most 65,537 bytes) crosses the relay in one or
/// two session frames, each with one 28-byte sealed header.
pub fn session_config() -> Config {
    Config {
        max_frame_data: 64 * 1024,
        ..Config::default()
    }
}

/// Largest data payload accepted in one sealed session frame.
pub fn session_max_data() -> usize {
    session_config().window as usize
}

/// Counters for logs and status.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Sessions accepted since start.
    pub sessions_total: AtomicU64,
    /// Channels relayed since start.
    pub channels_total: AtomicU64,
    /// Channel requests refused since start.
    pub refused_total: AtomicU64,
    /// Connections closed unread by the admission gate since start.
    pub connections_refused: AtomicU64,
    /// Replayed first handshake messages dropped since start.
    pub replays_refused: AtomicU64,
    /// Bytes forwarded since start (both directions).
    pub bytes: AtomicU64,
}

/// A running relay.
pub struct Relay {
    keys: Keypair,
    cfg: RelayConfig,
    ex: Arc<Executor<'static>>,
    sessions: Mutex<HashMap<PublicKey, Session>>,
    gate: Mutex<Gate>,
    /// Connections waiting for a handshake slot.
    waiters: Mutex<Vec<Waker>>,
    replays: Mutex<ReplayCache>,
    /// Counters.
    pub stats: RelayStats,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("pk", self.keys.public())
            .field("sessions", &self.session_count())
            .finish()
    }
}

impl Relay {
    /// A relay with identity `keys`, running its tasks on `ex`.
    pub fn new(keys: Keypair, cfg: RelayConfig, ex: Arc<Executor<'static>>) -> Arc<Relay> {
        let gate = Gate::new(cfg.limits.clone());
        Arc::new(Relay {
            keys,
            cfg,
            ex,
            sessions: Mutex::new(HashMap::new()),
            gate: Mutex::new(gate),
            waiters: Mutex::new(Vec::new()),
            replays: Mutex::new(ReplayCache::new(REPLAY_CACHE)),
            stats: RelayStats::default(),
        })
    }

    /// The relay's PK.
    pub fn pk(&self) -> &PublicKey {
        self.keys.public()
    }

    /// Connected clients.
    pub fn session_count(&self) -> usize {
        self.lock().len()
    }

    /// Handshakes in progress now.
    pub fn handshakes_in_progress(&self) -> usize {
        self.gate().handshakes()
    }

    /// The most handshakes that were ever in progress at once.
    pub fn peak_handshakes(&self) -> usize {
        self.gate().peak_handshakes()
    }

    /// Session slots taken: sessions up plus handshakes in progress.
    pub fn slots_taken(&self) -> usize {
        self.gate().sessions()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PublicKey, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A handshake slot was freed (or the line changed): the waiting connections look again.
    fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *lock_waiters(self));
        for w in waiters {
            w.wake();
        }
    }

    /// Publishes the relay entry now and then every `publish_interval`, forever.
    pub async fn publish_loop(self: Arc<Self>, disc: DiscClient) {
        loop {
            let now = super::disc::unix_now();
            let avail = self
                .cfg
                .limits
                .max_sessions
                .saturating_sub(self.slots_taken()) as u32;
            let seq = unix_millis();
            match Entry::relay(&self.keys, seq, now, self.cfg.public_addr.clone(), avail) {
                Ok(e) => match disc.put(&e).await {
                    Ok(()) => log::debug!("relay: published ({avail} sessions free)"),
                    Err(err) => log::warn!("relay: cannot publish to {}: {err}", disc.url()),
                },
                Err(err) => log::error!("relay: bad public address: {err}"),
            }
            Timer::after(self.cfg.publish_interval).await;
        }
    }

    /// Accepts clients on `listener` forever. A connection the admission gate refuses is
    /// closed at once, before reading a byte of it.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("relay: accept failed: {e}");
                    Timer::after(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let admitted = self.gate().try_begin(peer.ip(), Instant::now());
            match admitted {
                Ok(ticket) => {
                    let slot = Slot {
                        relay: self.clone(),
                        ticket,
                        handshaking: true,
                    };
                    let relay = self.clone();
                    self.ex
                        .spawn_boxed(async move {
                            if let Err(e) = relay.handle_conn(tcp, slot).await {
                                log::debug!("relay: connection from {peer}: {e}");
                            }
                        })
                        .detach();
                }
                Err(why) => {
                    self.stats
                        .connections_refused
                        .fetch_add(1, Ordering::Relaxed);
                    log::debug!("relay: refused {peer}: {why}");
                    drop(tcp);
                }
            }
            // Let the handshakes just admitted run before the next accept, so that a burst of
            // connections is served as it comes rather than refused wholesale.
            future::yield_now().await;
        }
    }

    async fn handle_conn(
        self: Arc<Self>,
        mut tcp: TcpStream,
        mut slot: Slot,
    ) -> Result<(), String> {
        if !slot.wait_turn().await {
            self.stats
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            return Err(format!(
                "no handshake slot within {} ms",
                self.cfg.limits.max_wait.as_millis()
            ));
        }
        let _ = tcp.set_nodelay(true);
        let admit = |msg1: &[u8]| {
            let fresh = self
                .replays
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .fresh(msg1);
            if !fresh {
                self.stats.replays_refused.fetch_add(1, Ordering::Relaxed);
            }
            fresh
        };
        let (transport, client) =
            handshake_transport_admit(&mut tcp, xk_responder(&self.keys), HANDSHAKE_TIMEOUT, admit)
                .await
                .map_err(|e| match e {
                    ChannelError::Refused => "handshake: replayed message 1 dropped".to_string(),
                    e => format!("handshake: {e}"),
                })?;
        slot.handshake_done();
        let session = Session::new(
            &self.ex,
            SealedReader::new(tcp.clone(), transport.recv, session_max_data()),
            SealedWriter::new(tcp, transport.send),
            Side::Server,
            session_config(),
        );
        if let Some(old) = self.lock().insert(client, session.clone()) {
            // The client reconnected: its old session is dead or about to be.
            old.close();
        }
        self.stats.sessions_total.fetch_add(1, Ordering::Relaxed);
        log::info!(
            "relay: client {client} connected ({} sessions)",
            self.session_count()
        );

        // Keep-alive: a session that stops answering is dropped.
        let pinger = {
            let session = session.clone();
            let (interval, timeout) = (self.cfg.ping_interval, self.cfg.ping_timeout);
            self.ex.spawn_boxed(async move {
                loop {
                    Timer::after(interval).await;
                    let pong = future::or(async { session.ping().await.is_ok() }, async {
                        Timer::after(timeout).await;
                        false
                    })
                    .await;
                    if !pong {
                        log::info!("relay: client {client} stopped answering pings; dropping");
                        session.close();
                        return;
                    }
                }
            })
        };

        while let Ok(stream) = session.accept().await {
            let relay = self.clone();
            self.ex
                .spawn_boxed(async move { relay.relay_stream(client, stream).await })
                .detach();
        }
        drop(pinger);
        let mut sessions = self.lock();
        if sessions.get(&client).is_some_and(|s| s.same(&session)) {
            sessions.remove(&client);
        }
        let n = sessions.len();
        drop(sessions);
        log::info!(
            "relay: client {client} disconnected ({}); {n} sessions",
            session.failure().map(|e| e.to_string()).unwrap_or_default()
        );
        Ok(())
    }

    async fn relay_stream(self: Arc<Self>, src: PublicKey, mut stream: Stream) {
        let control = stream.control();
        let refuse = |status: u8| {
            self.stats.refused_total.fetch_add(1, Ordering::Relaxed);
            status
        };
        let dst =
            RequestRepr::v1_pk(control.as_slice()).and_then(|b| PublicKey::from_bytes(&b).ok());
        let outcome = match dst {
            None => Err(refuse(STATUS_BAD_REQUEST)),
            Some(dst) if dst == src => Err(refuse(STATUS_BAD_REQUEST)),
            Some(dst) => {
                let target = self.lock().get(&dst).cloned();
                match target {
                    None => Err(refuse(STATUS_NOT_CONNECTED)),
                    Some(t) => {
                        let ctl = RequestRepr::v1(*src.as_bytes()).to_bytes();
                        t.open_with(&ctl).await.map_err(|_| refuse(STATUS_REFUSED))
                    }
                }
            }
        };
        let other = match outcome {
            Ok(o) => o,
            Err(status) => {
                log::debug!("relay: {src} -> {dst:?}: {}", status_text(status));
                let _ = stream.write_all(&[status]).await;
                let _ = stream.close().await;
                return;
            }
        };
        if stream.write_all(&[STATUS_OK]).await.is_err() {
            return;
        }
        self.stats.channels_total.fetch_add(1, Ordering::Relaxed);
        // Owned frames, both ways: each payload crosses as the buffer it arrived in. A clean
        // end (FIN) in one direction leaves the other running; an error in either drops both
        // streams, which resets them, so neither end hangs.
        let _ = forward_both(&stream, &other, &self.stats.bytes).await;
    }
}

/// The admission slots one connection holds; given back when it is dropped (handshake failed
/// or session ended).
struct Slot {
    relay: Arc<Relay>,
    ticket: Ticket,
    handshaking: bool,
}

impl Slot {
    fn handshake_done(&mut self) {
        self.relay.gate().handshake_succeeded(&mut self.ticket);
        self.handshaking = false;
        self.relay.wake_waiters();
    }

    /// Waits (at most `max_wait`) until this connection holds a handshake slot; false if it
    /// did not get one in time.
    async fn wait_turn(&mut self) -> bool {
        let relay = self.relay.clone();
        let ticket = &mut self.ticket;
        let turn = poll_fn(|cx| {
            if relay.gate().try_run(ticket) {
                return Poll::Ready(true);
            }
            lock_waiters(&relay).push(cx.waker().clone());
            // A slot freed between the check and the push woke nobody: look again.
            if relay.gate().try_run(ticket) {
                Poll::Ready(true)
            } else {
                Poll::Pending
            }
        });
        let wait = relay.cfg.limits.max_wait;
        future::or(turn, async {
            Timer::after(wait).await;
            false
        })
        .await
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut gate = self.relay.gate();
        if self.handshaking {
            gate.handshake_failed(&mut self.ticket, now);
            drop(gate);
            self.relay.wake_waiters();
        } else {
            gate.session_ended(&self.ticket, now);
        }
    }
}

fn lock_waiters(relay: &Relay) -> std::sync::MutexGuard<'_, Vec<Waker>> {
    relay.waiters.lock().unwrap_or_else(|p| p.into_inner())
}

/// Milliseconds since the epoch: a sequence number that keeps increasing across restarts.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
