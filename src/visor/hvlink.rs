//! The visor's side of the hypervisor link: for each PK in `hypervisors`, the visor dials
//! that PK's overlay port 46 (over dmsg) and serves its RPC on the stream, so a hypervisor
//! manages it without anything on this visor listening for management (the remote RPC port
//! 65 stays unregistered). [`LINKS`] streams are kept per hypervisor, redialed with a
//! backoff of 1 s doubling to 30 s while it cannot be reached.
//!
//! A hypervisor listed as `pk@host:port` runs TCP-standalone (`standalone hypervisor`): its
//! links are Noise-XK over TCP to that address, with this visor's keys.
//!
//! Only a stream this visor dialed to a listed PK is served, and every request on it is
//! checked again against the list (a PK removed from the config stops being served at the
//! next restart; its open links end then too). The link serves every RPC route but the dial
//! upgrade (`/v1/dial`), which would let the hypervisor open streams with this visor's
//! identity. One more route is the link's own: `POST /v1/pty` with `Upgrade:
//! skywire-stream` hands the link to this visor's pty app (port 22) as a connection from the
//! hypervisor's PK (the pty admits the `hypervisors`): the browser terminal reaches a visor
//! this way whichever way the link came, over dmsg or TCP. The link is then the pty's, and
//! a fresh one is dialed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_executor::Executor;
use async_io::Timer;

use crate::app::conn::{Conn, Direction, Network};
use crate::app::net::{Net, Via};
use crate::app::services::Ports;
use crate::crypto::PublicKey;
use crate::http::server::{self, Handler, Limits, Peer, Request, Response};
use crate::spawn::Spawn;

/// The hypervisor's overlay port (DESIGN.md §4).
pub const PORT: u16 = 46;
/// Streams kept to each hypervisor (the hypervisor's `LINKS_PER_VISOR`).
pub const LINKS: usize = 2;
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The link's HTTP limits: a hypervisor polls every 2 s, so a link idle for 2 minutes is a
/// hypervisor gone quiet; it is closed and redialed.
fn limits() -> Limits {
    Limits {
        idle_timeout: Duration::from_secs(120),
        pressure_idle_timeout: Duration::from_secs(120),
        request_timeout: Duration::from_secs(30),
        max_connections: LINKS,
        max_connections_per_addr: LINKS,
        ..Limits::default()
    }
}

/// The pty app's overlay port (DESIGN.md §4).
const PTY_PORT: u16 = 22;

/// The RPC as served on a link: only to `hypervisors`, without the dial upgrade; plus
/// `POST /v1/pty`, the link handed to the pty on `ports` (a link over `network`).
pub fn link_handler(
    rpc: Handler,
    hypervisors: Arc<Vec<PublicKey>>,
    ports: Arc<Ports>,
    network: Network,
) -> Handler {
    Arc::new(move |req: Request| {
        let (rpc, hv, ports) = (rpc.clone(), hypervisors.clone(), ports.clone());
        Box::pin(async move {
            let from = match req.peer_pk {
                Some(pk) if hv.contains(&pk) => pk,
                Some(pk) => {
                    return Response::error(
                        403,
                        format!("{pk} is not in this visor's `hypervisors`; it may not manage it"),
                    );
                }
                None => return Response::error(403, "management is served to hypervisors only"),
            };
            if req.path.starts_with("/v1/dial") {
                return Response::error(403, "the dial upgrade is not served to a hypervisor");
            }
            if req.path == "/v1/pty" {
                return to_pty(&req, &ports, from, network);
            }
            rpc(req).await
        })
    })
}

/// `POST /v1/pty`: a place in the pty's accept queue now (so a visor without a pty, or
/// with its backlog full, answers an error instead of switching), then the 101 and the
/// link delivered there.
fn to_pty(req: &Request, ports: &Ports, from: PublicKey, network: Network) -> Response {
    if req.method != "POST" {
        return Response::error(405, "POST /v1/pty");
    }
    let proto = crate::rpc::DIAL_UPGRADE;
    if !req
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case(proto))
    {
        return Response::error(400, format!("send Upgrade: {proto}"));
    }
    let place = match ports.reserve(PTY_PORT) {
        Ok(p) => p,
        Err(crate::accept::Refusal::Closed) => {
            return Response::error(503, "this visor runs no pty app (port 22)");
        }
        Err(crate::accept::Refusal::Busy) => {
            return Response::error(503, "this visor's pty is busy; try again");
        }
    };
    Response::switching(
        proto,
        Box::new(move |link| {
            Box::pin(async move {
                let conn = Conn::new(Box::new(link), from, 0, PTY_PORT, network, Direction::In);
                // A pty that stopped meanwhile drops the connection, which ends it.
                let _ = place.deliver(conn);
            })
        }),
    )
}

/// Starts the links to every hypervisor in `hypervisors` but `own` (a hypervisor app in
/// this visor reaches it in-process): over `net` (dmsg), or over `tcp` (Noise-XK over TCP,
/// with this visor's keys) to the ones `addrs` gives an address for.
#[allow(clippy::too_many_arguments)]
pub fn start(
    ex: &Arc<Executor<'static>>,
    net: Arc<dyn Net>,
    tcp: Arc<crate::app::net::TcpNet>,
    own: PublicKey,
    hypervisors: Vec<PublicKey>,
    addrs: &[(PublicKey, String)],
    rpc: Handler,
    ports: Arc<Ports>,
) {
    let list = Arc::new(hypervisors.clone());
    let over_dmsg = link_handler(rpc.clone(), list.clone(), ports.clone(), Network::Dmsg);
    let over_tcp = link_handler(rpc, list, ports, Network::Tcp);
    for (pk, addr) in addrs {
        tcp.add_peer(*pk, addr.clone());
    }
    for hv in hypervisors.into_iter().filter(|h| *h != own) {
        let (via, carrier, handler): (Arc<dyn Net>, Via, &Handler) =
            if addrs.iter().any(|(k, _)| *k == hv) {
                (tcp.clone(), Via::Auto, &over_tcp)
            } else {
                (net.clone(), Via::Dmsg, &over_dmsg)
            };
        for n in 0..LINKS {
            let (net, handler) = (via.clone(), handler.clone());
            ex.spawn_boxed(keep_link(net, carrier, hv, n, handler))
                .detach();
        }
    }
}

async fn keep_link(net: Arc<dyn Net>, via: Via, hv: PublicKey, n: usize, handler: Handler) {
    let mut backoff = BACKOFF_MIN;
    // The first dials race the dmsg session coming up: only a third failure in a row is
    // worth a warning.
    let mut failures = 0u32;
    loop {
        match net.dial_via(hv, PORT, via).await {
            Ok(conn) => {
                if n == 0 {
                    log::info!("hypervisor {hv}: link up");
                }
                failures = 0;
                let t = Instant::now();
                let h = handler.clone();
                if server::serve_connection_from(conn, Peer::Key(hv), h, limits()).await {
                    // Handed to the pty: the hypervisor is there, so a fresh link at once
                    // (it would show this visor offline while it has none).
                    backoff = BACKOFF_MIN;
                    continue;
                }
                if n == 0 {
                    log::info!("hypervisor {hv}: link closed after {:?}", t.elapsed());
                }
                if t.elapsed() > Duration::from_secs(10) {
                    backoff = BACKOFF_MIN;
                }
            }
            Err(e) => {
                failures += 1;
                if n == 0 && failures == 3 {
                    log::warn!(
                        "hypervisor {hv}: cannot reach its port {PORT}: {e}; retrying every \
                         {}s at most",
                        BACKOFF_MAX.as_secs()
                    );
                }
            }
        }
        Timer::after(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}
