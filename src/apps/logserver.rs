//! The log server (`app-logserver`, overlay port 80): HTTP over the overlay.
//!
//! - `GET /health` — open to every peer: version, uptime.
//! - `GET /node-info` — only for trusted peers (this visor's own PK, its hypervisors, and the
//!   PKs given with `--whitelist`): architecture, memory, uptimes, apps and their states.
//!
//! Runs inside the visor or standalone on its own dmsg client (`dmsg logserver`); there is
//! no TCP mode (DESIGN.md §5 matrix).
//!
//! Connections go through the shared HTTP accept loop ([`server::serve_on`], the same one
//! as the TCP surfaces), counted per peer PK: at most [`MAX_CONNS`] at once and at most
//! [`MAX_CONNS_PER_PEER`] per key. A connection is *busy* from the first byte of a request
//! until its response is written and *idle* otherwise. A new connection at a limit sheds an
//! idle one instead of being refused: at the per-peer limit the key's own longest-idle one,
//! at the global limit the longest-idle one of the key holding the most (see
//! [`crate::http::conns`]). Only when every candidate is busy is the new connection answered
//! 503 and closed. So one key holding idle streams costs others nothing, and many keys
//! holding idle streams lose them to readers.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;
use futures_lite::future;

use crate::app::conn::Conn;
use crate::app::net::Listen;
use crate::app::settings::RestartPolicy;
use crate::app::{AppCtx, AppDef, AppFuture, HostInfo, Mode, is_trusted};
use crate::crypto::PublicKey;
use crate::http::json::{Ordered, Out};
use crate::http::server::{self, Limits, Peer, Request, Response};

/// Overlay port.
pub const PORT: u16 = 80;

/// Most concurrent HTTP connections the log server serves.
pub const MAX_CONNS: usize = 32;

/// Most concurrent HTTP connections from one peer PK.
pub const MAX_CONNS_PER_PEER: usize = 4;

/// The log server's overlay port as a listener of the HTTP server.
struct Overlay(Box<dyn Listen>);

impl server::Accept for Overlay {
    type Conn = Conn;

    async fn accept(&self) -> io::Result<(Conn, Peer)> {
        let c = self.0.accept().await;
        let c = c.map_err(|e| io::Error::other(e.to_string()))?;
        let peer = Peer::Key(*c.peer());
        Ok((c, peer))
    }
}

/// The log server's limits: the shared defaults with its own caps, and no shortened idle
/// wait under pressure (a key is held to its share by the per-key cap instead).
fn limits() -> Limits {
    Limits {
        request_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
        pressure_idle_timeout: Duration::from_secs(30),
        max_connections: MAX_CONNS,
        max_connections_per_addr: MAX_CONNS_PER_PEER,
        ..Limits::default()
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
    let (host, wl) = (ctx.host.clone(), whitelist.clone());
    let handler = server::sync_handler(move |req| match req.peer_pk {
        Some(peer) => handle(&host, &wl, &peer, &req),
        None => Response::error(403, "the log server is served over the overlay only"),
    });
    let serve = async {
        server::serve_on(Overlay(listener), ctx.ex.clone(), handler, limits())
            .await
            .map_err(|e| e.to_string())
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

/// The whole seconds of a `/proc/uptime` field (`12345.67`): parsed as an integer, which
/// keeps the float parser (and its 10 KiB table) out of the binary.
fn whole_seconds(field: &str) -> Option<u64> {
    field.split('.').next()?.parse().ok()
}

/// Basic facts about this machine and visor.
pub fn node_info(host: &HostInfo) -> Ordered {
    let kib = |key: &str| crate::app::proc_kib("/proc/meminfo", key);
    let rss = crate::app::proc_kib("/proc/self/status", "VmRSS:");
    let sys_uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| whole_seconds(s.split_whitespace().next()?))
        .unwrap_or(0);
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
    use super::whole_seconds;

    #[test]
    fn uptime_seconds_are_the_integer_part() {
        assert_eq!(whole_seconds("12345.67"), Some(12345));
        assert_eq!(whole_seconds("7"), Some(7));
        assert_eq!(whole_seconds("x.5"), None);
        assert_eq!(whole_seconds(""), None);
    }
}
