//! The log server (`app-logserver`, overlay port 80): HTTP over the overlay.
//!
//! - `GET /health` — open to every peer: version, uptime.
//! - `GET /node-info` — only for trusted peers (this visor's own PK, its hypervisors, and the
//!   PKs given with `--whitelist`): architecture, memory, uptimes, apps and their states.
//!
//! Runs inside the visor or standalone on its own dmsg client (`dmsg logserver`); there is
//! no TCP mode (DESIGN.md §5 matrix).

use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;
use futures_lite::future;

use crate::app::{AppCtx, AppDef, AppFuture, HostInfo, Mode, is_trusted};
use crate::crypto::PublicKey;
use crate::http::json::{Ordered, Out};
use crate::http::server::{self, Limits, Request, Response};
use crate::visor::config::RestartPolicy;

/// Overlay port.
pub const PORT: u16 = 80;

/// Most concurrent HTTP connections the log server serves.
const MAX_CONNS: usize = 32;

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
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let serve = async {
        loop {
            let conn = listener.accept().await.map_err(|e| e.to_string())?;
            let peer = *conn.peer();
            if active.load(std::sync::atomic::Ordering::Relaxed) >= MAX_CONNS {
                log::warn!("logserver: too many connections; dropping one from {peer}");
                continue;
            }
            active.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (host, wl, active) = (ctx.host.clone(), whitelist.clone(), active.clone());
            let handler = server::sync_handler(move |req| handle(&host, &wl, &peer, &req));
            let limits = Limits {
                request_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(30),
                ..Limits::default()
            };
            ctx.ex
                .spawn(async move {
                    server::serve_connection(conn, None, handler, limits).await;
                    active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
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
