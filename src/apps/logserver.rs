//! The log server (`app-logserver`, overlay port 80): HTTP over the overlay.
//!
//! - `GET /health` — open to every peer: version, uptime.
//! - `GET /node-info` — only for trusted peers (this visor's own PK, its hypervisors, and the
//!   PKs given with `--whitelist`): architecture, memory, uptimes, apps and their states.
//!
//! Runs inside the visor or standalone on its own dmsg client (`dmsg logserver`); there is
//! no TCP mode (DESIGN.md §5 matrix).
//!
//! Connections are admitted by [`Slots`]: at most [`MAX_CONNS`] at once and at most
//! [`MAX_CONNS_PER_PEER`] per peer PK. A connection is *busy* from the moment a request of
//! it is handled until the server reads from it again (while its response is written), and
//! *idle* otherwise (before its first request, between requests, or mid-way through a
//! request that trickles in). A new connection at a limit sheds an idle one instead of being
//! refused: at the per-peer limit the peer's own least recently active idle connection, at
//! the global limit the least recently active idle connection of the peer holding the most.
//! Only when every candidate is busy is the new connection closed. So one key holding idle
//! streams costs others nothing, and many keys holding idle streams lose them to readers.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use argh::FromArgs;
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite};

use crate::app::settings::RestartPolicy;
use crate::app::{AppCtx, AppDef, AppFuture, HostInfo, Mode, Signal, is_trusted};
use crate::crypto::PublicKey;
use crate::http::json::{Ordered, Out};
use crate::http::server::{self, Limits, Request, Response};

/// Overlay port.
pub const PORT: u16 = 80;

/// Most concurrent HTTP connections the log server serves.
pub const MAX_CONNS: usize = 32;

/// Most concurrent HTTP connections from one peer PK.
pub const MAX_CONNS_PER_PEER: usize = 4;

/// What the serving task and the admission share about one connection.
#[derive(Debug, Default)]
struct SlotState {
    /// A request is being answered (set by the handler, cleared by the next read).
    busy: AtomicBool,
    /// Activity stamp (a counter, not a clock): higher is more recent.
    stamp: AtomicU64,
    /// Raised to shed the connection.
    kill: Signal,
}

#[derive(Debug)]
struct Slot {
    peer: PublicKey,
    state: Arc<SlotState>,
}

/// The admission of connections (module docs); cheap to clone, shared by the tasks.
#[derive(Debug, Clone)]
pub struct Slots {
    inner: Arc<Mutex<SlotsInner>>,
    max: usize,
    per_peer: usize,
}

#[derive(Debug, Default)]
struct SlotsInner {
    next_id: u64,
    tick: u64,
    conns: HashMap<u64, Slot>,
    shed: u64,
}

/// An admitted connection: its id and shared state.
#[derive(Debug, Clone)]
pub struct Admitted {
    id: u64,
    state: Arc<SlotState>,
    slots: Slots,
}

impl Admitted {
    /// Marks a request as being answered (busy, most recent).
    fn request(&self) {
        self.state.busy.store(true, Ordering::Relaxed);
        self.state.stamp.store(self.slots.tick(), Ordering::Relaxed);
    }

    /// Resolves when the connection is shed.
    async fn shed(&self) {
        self.state.kill.wait().await
    }
}

impl Drop for SlotsGuard {
    fn drop(&mut self) {
        self.0.slots.release(self.0.id);
    }
}

/// Releases the slot when the serving task ends, however it ends.
struct SlotsGuard(Admitted);

impl Slots {
    /// At most `max` connections, `per_peer` from one PK.
    pub fn new(max: usize, per_peer: usize) -> Slots {
        Slots {
            inner: Arc::default(),
            max,
            per_peer: per_peer.min(max),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tick(&self) -> u64 {
        let mut g = self.lock();
        g.tick += 1;
        g.tick
    }

    /// Connections held now, and by `peer`.
    pub fn held(&self, peer: &PublicKey) -> (usize, usize) {
        let g = self.lock();
        let mine = g.conns.values().filter(|s| s.peer == *peer).count();
        (g.conns.len(), mine)
    }

    /// Connections shed so far.
    pub fn shed_total(&self) -> u64 {
        self.lock().shed
    }

    /// Admits a connection from `peer`, shedding an idle one if a limit is reached; `None`
    /// when every candidate is busy (the new connection is to be closed).
    pub fn admit(&self, peer: PublicKey) -> Option<Admitted> {
        let mut g = self.lock();
        let mut count: HashMap<PublicKey, usize> = HashMap::new();
        for s in g.conns.values() {
            *count.entry(s.peer).or_default() += 1;
        }
        let idle = |s: &Slot| !s.state.busy.load(Ordering::Relaxed);
        let stamp = |s: &Slot| s.state.stamp.load(Ordering::Relaxed);
        let victim = if count.get(&peer).copied().unwrap_or(0) >= self.per_peer {
            // The peer's own least recently active idle connection.
            let v = g
                .conns
                .iter()
                .filter(|(_, s)| s.peer == peer && idle(s))
                .min_by_key(|(id, s)| (stamp(s), **id));
            match v {
                Some((id, _)) => Some(*id),
                None => return None, // all of them busy: refuse the new one
            }
        } else if g.conns.len() >= self.max {
            // The least recently active idle connection of the peer holding the most.
            let v = g
                .conns
                .iter()
                .filter(|(_, s)| idle(s))
                .min_by_key(|(id, s)| {
                    (
                        std::cmp::Reverse(count.get(&s.peer).copied().unwrap_or(0)),
                        stamp(s),
                        **id,
                    )
                });
            match v {
                Some((id, _)) => Some(*id),
                None => return None, // all of them busy: refuse the new one
            }
        } else {
            None
        };
        if let Some(id) = victim
            && let Some(s) = g.conns.remove(&id)
        {
            log::info!(
                "logserver: shedding an idle connection of {} for one of {peer}",
                s.peer
            );
            s.state.kill.raise();
            g.shed += 1;
        }
        g.next_id += 1;
        g.tick += 1;
        let id = g.next_id;
        let state = Arc::new(SlotState::default());
        state.stamp.store(g.tick, Ordering::Relaxed);
        g.conns.insert(
            id,
            Slot {
                peer,
                state: state.clone(),
            },
        );
        Some(Admitted {
            id,
            state,
            slots: self.clone(),
        })
    }

    fn release(&self, id: u64) {
        self.lock().conns.remove(&id);
    }
}

/// The connection as the HTTP server sees it: a read clears the busy mark.
struct Tracked<S> {
    io: S,
    state: Arc<SlotState>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.state.busy.store(false, Ordering::Relaxed);
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_close(cx)
    }
}

#[derive(FromArgs, Debug)]
/// log server arguments
struct Args {
    /// a PK allowed to read /node-info (repeatable; this visor and its hypervisors always are)
    #[argh(option)]
    whitelist: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Vec<PublicKey>, String> {
    let a: Args = crate::app::parse_args("logserver", args)?;
    a.whitelist
        .iter()
        .map(|s| PublicKey::from_hex(s).map_err(|e| format!("--whitelist {s}: {e}")))
        .collect()
}

/// The app definition.
pub static DEF: AppDef = AppDef {
    name: "logserver",
    summary: "HTTP over the overlay: /health for all, /node-info for whitelisted PKs",
    modes: &[Mode::Visor, Mode::Dmsg],
    port: Some(PORT),
    depends: &[],
    critical: false,
    autostart: true,
    restart: RestartPolicy::OnFailure,
    tcp_listen: None,
    check_args: |a| parse_args(a).map(|_| ()),
    start,
};

fn start(ctx: AppCtx) -> AppFuture {
    Box::pin(run(ctx))
}

async fn run(ctx: AppCtx) -> Result<(), String> {
    let whitelist = Arc::new(parse_args(&ctx.args)?);
    let listener = ctx
        .net
        .listen(PORT)
        .map_err(|e| format!("port {PORT}: {e}"))?;
    ctx.ready();
    ctx.set_status(format!(
        "serving /health and /node-info on port {PORT} ({} whitelisted)",
        whitelist.len()
    ));
    let slots = Slots::new(MAX_CONNS, MAX_CONNS_PER_PEER);
    let serve = async {
        loop {
            let conn = listener.accept().await.map_err(|e| e.to_string())?;
            let peer = *conn.peer();
            let Some(slot) = slots.admit(peer) else {
                log::warn!("logserver: every connection is busy; closing a new one from {peer}");
                continue;
            };
            let (host, wl) = (ctx.host.clone(), whitelist.clone());
            let marker = slot.clone();
            let handler = server::sync_handler(move |req| {
                marker.request();
                handle(&host, &wl, &peer, &req)
            });
            let limits = Limits {
                request_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(30),
                ..Limits::default()
            };
            let io = Tracked {
                io: conn,
                state: slot.state.clone(),
            };
            ctx.ex
                .spawn(async move {
                    let guard = SlotsGuard(slot);
                    future::or(server::serve_connection(io, None, handler, limits), async {
                        guard.0.shed().await
                    })
                    .await;
                })
                .detach();
        }
    };
    future::or(serve, async {
        ctx.stopped().await;
        Ok(())
    })
    .await
}

fn handle(host: &HostInfo, whitelist: &[PublicKey], peer: &PublicKey, req: &Request) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::error(405, "only GET is served here");
    }
    match req.path.as_str() {
        "/health" => Response::json(
            200,
            Ordered::new()
                .field("status", Out::Str("ok".into()))
                .field("version", Out::Str(crate::VERSION.into()))
                .field("pk", Out::Str(host.pk.to_hex()))
                .field("uptime_secs", Out::U64(host.started.elapsed().as_secs()))
                .to_compact()
                + "\n",
        ),
        "/node-info" if !is_trusted(host, whitelist, peer) => {
            log::info!("logserver: /node-info refused to {peer} (not whitelisted)");
            Response::error(
                403,
                format!("{peer} is not whitelisted for /node-info on this visor"),
            )
        }
        "/node-info" => Response::json(200, node_info(host).to_pretty() + "\n"),
        _ => Response::error(404, "not found; try /health or /node-info"),
    }
}

/// Basic facts about this machine and visor.
pub fn node_info(host: &HostInfo) -> Ordered {
    let kib = |key: &str| crate::app::proc_kib("/proc/meminfo", key);
    let rss = crate::app::proc_kib("/proc/self/status", "VmRSS:");
    let sys_uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |f| f as u64);
    let apps = (host.apps)()
        .into_iter()
        .map(|(n, s)| {
            Out::Obj(
                Ordered::new()
                    .field("name", Out::Str(n))
                    .field("state", Out::Str(s)),
            )
        })
        .collect();
    Ordered::new()
        .field("pk", Out::Str(host.pk.to_hex()))
        .field("version", Out::Str(crate::VERSION.into()))
        .field("arch", Out::Str(std::env::consts::ARCH.into()))
        .field("os", Out::Str(std::env::consts::OS.into()))
        .field("mem_total_kib", Out::U64(kib("MemTotal:")))
        .field("mem_available_kib", Out::U64(kib("MemAvailable:")))
        .field("visor_rss_kib", Out::U64(rss))
        .field("system_uptime_secs", Out::U64(sys_uptime))
        .field(
            "visor_uptime_secs",
            Out::U64(host.started.elapsed().as_secs()),
        )
        .field("apps", Out::Arr(apps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn pk(n: u8) -> PublicKey {
        *Keypair::from_seed(&[n; 32]).public()
    }

    fn shed(a: &Admitted) -> bool {
        a.state.kill.is_raised()
    }

    #[test]
    fn one_peer_holds_at_most_its_share_and_sheds_its_own() {
        let s = Slots::new(8, 3);
        let a: Vec<Admitted> = (0..3).map(|_| s.admit(pk(1)).unwrap()).collect();
        assert_eq!(s.held(&pk(1)), (3, 3));
        // A 4th from the same key sheds its own oldest idle one, not anyone else's.
        let b = s.admit(pk(2)).unwrap();
        let a4 = s.admit(pk(1)).unwrap();
        assert!(shed(&a[0]) && !shed(&a[1]) && !shed(&b) && !shed(&a4));
        assert_eq!(s.held(&pk(1)), (4, 3));
        // A busy one is not shed: a[1] answers a request, so a[2] goes next.
        a[1].request();
        s.admit(pk(1)).unwrap();
        assert!(!shed(&a[1]) && shed(&a[2]));
        // All of the peer's busy: the new connection is refused.
        let now: Vec<Admitted> = (0..2).map(|_| s.admit(pk(1)).unwrap()).collect();
        for x in &now {
            x.request();
        }
        a[1].request();
        assert!(s.admit(pk(1)).is_none());
        assert_eq!(s.held(&pk(2)), (4, 1));
        // Released slots are free again.
        drop(SlotsGuard(now[0].clone()));
        assert_eq!(s.held(&pk(1)), (3, 2));
    }

    #[test]
    fn when_full_the_most_connected_peer_loses_an_idle_one() {
        let s = Slots::new(6, 3);
        let reader = s.admit(pk(9)).unwrap();
        let x: Vec<Admitted> = (0..3).map(|_| s.admit(pk(1)).unwrap()).collect();
        let y: Vec<Admitted> = (0..2).map(|_| s.admit(pk(2)).unwrap()).collect();
        assert_eq!(s.held(&pk(9)).0, 6);
        // The oldest connection is the reader's, but pk(1) holds the most.
        let newcomer = s.admit(pk(3)).unwrap();
        assert!(shed(&x[0]) && !shed(&reader));
        // Now pk(1) and pk(2) hold 2 each: the least recently active of theirs goes.
        s.admit(pk(4)).unwrap();
        assert!(shed(&x[1]));
        s.admit(pk(5)).unwrap();
        assert!(shed(&y[0]));
        assert!(!shed(&reader) && !shed(&newcomer));
        assert_eq!(s.shed_total(), 3);
        assert_eq!(s.held(&pk(9)).0, 6);
    }
}
