//! skysocks-client (`app-skysocks-client`, app port 13): local SOCKS5 (and optionally HTTP)
//! proxies whose connections leave from a skysocks server on another visor. Runs in every
//! mode: inside the visor (driven by `skywire cli proxy`), `dmsg skysocks-client -- --srv
//! <pk>`, `standalone skysocks-client --peer tcp://<pk>@host:port -- --srv <pk>`.
//!
//! The app holds named **instances**, each a proxy to one server: its SOCKS5 listener
//! (`--addr`, default `127.0.0.1:1080`), an optional HTTP proxy listener (`--http`), a
//! passcode, and the network to dial by (`--via auto|dmsg|skynet`). Several instances to
//! different servers run at once. The app's arguments (`launcher.apps[].args`, or the run
//! arguments standalone) start one instance; inside the visor, `skywire cli proxy
//! start|stop|status|list` adds and removes more at run time through the app's control
//! surface (RPC `POST /v1/apps/skysocks-client/control`, see [`control`]).
//!
//! Each local connection is answered as a SOCKS5 server would (or parsed as an HTTP proxy
//! request), then becomes one overlay stream to the server's port 3, on which this side
//! makes the SOCKS5 client handshake (greeting, passcode and request pipelined and sent with
//! the stream's open, `Net::dial_first`: one round trip for both) and splices. The `Net` seam already multiplexes: over dmsg every stream to one
//! server runs in the one end-to-end channel to it, over skynet in the one route group, so
//! a new local connection costs no handshake; in TCP mode the streams share one Noise
//! connection to the server (a handshake only for the first). While the server cannot be reached, each local client
//! gets a SOCKS5 error reply (network unreachable, timed out, …; HTTP 502/504) after the
//! dial's retries (`--tries`, backoff from 250 ms), and the next connection tries again —
//! so the proxy works as soon as the server is back.
//!
//! Control requests (JSON bodies of `POST /v1/apps/skysocks-client/control`):
//!
//! - `{"op":"start","pk":"<hex>","name":…,"addr":…,"http":…,"passcode":…,"via":…,
//!   "tries":…,"max_conns":…}` (all but `pk` optional) → the instance;
//! - `{"op":"stop","name":…}` (`name` optional when one runs) → `{"stopped":"<name>"}`;
//! - `{"op":"list"}` → `{"items":[instance, …]}`.
//!
//! An instance is `name, server, addr, http, via, passcode (bool), server_state
//! (untried|reachable|unreachable|refused), state_secs, last_error, active, total, rejected, failed,
//! bytes_up, bytes_down, uptime_secs`.
//!
//! Budgets (docs/architecture.md): at most `--max-conns` (default [`MAX_CONNS`]) local
//! connections per instance, more closed at once; at most [`MAX_INSTANCES`] instances; the
//! local handshake or HTTP head ([`front::MAX_HTTP_HEAD`]) within 10 s; two splice buffers
//! per served connection.

pub mod front;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use argh::FromArgs;
use async_executor::Task;
use async_net::TcpListener;
use futures_lite::future;

use crate::app::net::Via;
use crate::app::settings::RestartPolicy;
use crate::app::splice::Counters;
use crate::app::{AppCtx, AppDef, AppFuture, Mode};
use crate::crypto::PublicKey;
use crate::http::json::{Fields, JsonError, Ordered, Out, parse_object};
use crate::spawn::Spawn;

/// The app's own overlay port (DESIGN.md §4; it dials out and listens on none).
pub const PORT: u16 = 13;
/// The skysocks server's overlay port (`apps::skysocks::PORT`, which a client-only build
/// does not compile).
pub const SERVER_PORT: u16 = 3;
/// The default SOCKS5 listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:1080";
/// Most local connections per instance (default).
pub const MAX_CONNS: usize = 256;
/// Most instances at once.
pub const MAX_INSTANCES: usize = 16;

#[derive(FromArgs, Debug)]
/// skysocks-client arguments (one instance; without --srv the app starts with none)
struct Args {
    /// the skysocks server's PK
    #[argh(option)]
    srv: Option<String>,
    /// the instance's name (default: the first 8 hex digits of --srv)
    #[argh(option)]
    name: Option<String>,
    /// SOCKS5 listen address (default 127.0.0.1:1080)
    #[argh(option, default = "DEFAULT_ADDR.to_string()")]
    addr: String,
    /// also serve an HTTP proxy (CONNECT and absolute URIs) here
    #[argh(option)]
    http: Option<String>,
    /// the server's passcode
    #[argh(option)]
    passcode: Option<String>,
    /// dial by auto (the app's route policy), dmsg or skynet (default auto)
    #[argh(option, default = "String::from(\"auto\")")]
    via: String,
    /// dial attempts per local connection before it gets an error (default 3)
    #[argh(option, default = "3")]
    tries: u32,
    /// most local connections at once (default 256)
    #[argh(option, default = "MAX_CONNS")]
    max_conns: usize,
}

/// One instance's settings.
#[derive(Debug, Clone)]
pub struct InstanceCfg {
    /// Its name.
    pub name: String,
    /// The skysocks server.
    pub server: PublicKey,
    /// SOCKS5 listen address.
    pub addr: String,
    /// HTTP proxy listen address.
    pub http: Option<String>,
    /// The server's passcode.
    pub passcode: Option<String>,
    /// The network to dial by.
    pub via: Via,
    /// Dial attempts per local connection.
    pub tries: u32,
    /// Most local connections at once.
    pub max_conns: usize,
}

fn parse_via(s: &str) -> Result<Via, String> {
    match s {
        "auto" => Ok(Via::Auto),
        "dmsg" => Ok(Via::Dmsg),
        "skynet" => Ok(Via::Skynet),
        _ => Err(format!("--via {s:?}: expected auto, dmsg or skynet")),
    }
}

fn check_name(n: &str) -> Result<(), String> {
    if (1..=32).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(format!(
            "name {n:?}: 1-32 of a-z, 0-9, '-' and '_' (e.g. --name home)"
        ))
    }
}

fn check_addr(flag: &str, a: &str) -> Result<(), String> {
    a.parse::<SocketAddr>()
        .map(|_| ())
        .map_err(|_| format!("{flag} {a:?}: expected an IP address and port, e.g. 127.0.0.1:1080"))
}

impl InstanceCfg {
    /// Checks and builds an instance's settings; errors name the flag.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        server: &str,
        name: Option<&str>,
        addr: &str,
        http: Option<&str>,
        passcode: Option<&str>,
        via: &str,
        tries: u32,
        max_conns: usize,
    ) -> Result<InstanceCfg, String> {
        let server = PublicKey::from_hex(server).map_err(|e| {
            format!("--srv {server:?}: {e} (give the skysocks server's 64-hex-digit PK)")
        })?;
        let name = name.map_or_else(|| server.to_hex()[..8].to_string(), String::from);
        check_name(&name)?;
        check_addr("--addr", addr)?;
        if let Some(h) = http {
            check_addr("--http", h)?;
        }
        if let Some(p) = passcode
            && !(1..=255).contains(&p.len())
        {
            return Err("--passcode must be 1-255 bytes".into());
        }
        if !(1..=10).contains(&tries) {
            return Err("--tries must be 1-10".into());
        }
        if max_conns == 0 {
            return Err("--max-conns must be at least 1".into());
        }
        Ok(InstanceCfg {
            name,
            server,
            addr: addr.to_string(),
            http: http.map(String::from),
            passcode: passcode.map(String::from),
            via: parse_via(via)?,
            tries,
            max_conns,
        })
    }
}

fn parse_args(args: &[String]) -> Result<Option<InstanceCfg>, String> {
    let a: Args = crate::app::parse_args("skysocks-client", args)?;
    let Some(srv) = a.srv else {
        if a.name.is_some() || a.http.is_some() || a.passcode.is_some() {
            return Err("--name, --http and --passcode need --srv <pk>".into());
        }
        return Ok(None);
    };
    InstanceCfg::new(
        &srv,
        a.name.as_deref(),
        &a.addr,
        a.http.as_deref(),
        a.passcode.as_deref(),
        &a.via,
        a.tries,
        a.max_conns,
    )
    .map(Some)
}

/// The app definition.
pub static DEF: AppDef = AppDef {
    name: "skysocks-client",
    summary: "local SOCKS5/HTTP proxies through skysocks servers ('skywire cli proxy')",
    modes: &[Mode::Visor, Mode::Dmsg, Mode::Tcp],
    port: Some(PORT),
    depends: &[],
    critical: false,
    autostart: false,
    restart: RestartPolicy::OnFailure,
    tcp_listen: None,
    check_args: |a| parse_args(a).map(|_| ()),
    start,
};

/// An instance's counters and its view of the server.
#[derive(Debug)]
pub struct Stats {
    /// Local connections open.
    pub active: AtomicU64,
    /// Local connections accepted in all.
    pub total: AtomicU64,
    /// Local connections closed at once (at the cap).
    pub rejected: AtomicU64,
    /// Connections the server reached but refused (its reply) or that failed.
    pub failed: AtomicU64,
    /// Bytes local → server and server → local.
    pub bytes: Counters,
    server: Mutex<ServerState>,
}

#[derive(Debug)]
struct ServerState {
    /// `untried`, `reachable`, `unreachable`, or `refused` (reachable, refusing us).
    state: &'static str,
    since: Instant,
    last_error: Option<String>,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes: Counters::default(),
            server: Mutex::new(ServerState {
                state: "untried",
                since: Instant::now(),
                last_error: None,
            }),
        }
    }

    fn set(&self, state: &'static str, err: Option<&str>) {
        let mut s = self.server.lock().unwrap_or_else(|p| p.into_inner());
        if s.state != state {
            s.state = state;
            s.since = Instant::now();
        }
        if let Some(e) = err {
            s.last_error = Some(e.to_string());
        }
    }

    /// The server answered (`err`: it refused the destination, for the status line).
    pub fn up(&self, err: Option<&str>) {
        self.set("reachable", err);
    }

    /// The server could not be reached.
    pub fn down(&self, why: &str) {
        self.set("unreachable", Some(why));
    }

    /// The server refused us (passcode, whitelist).
    pub fn refused(&self, why: &str) {
        self.set("refused", Some(why));
    }
}

/// A running instance: dropping it stops its listeners (connections being served end with
/// the app).
struct Instance {
    stop: crate::app::Signal,
    cfg: Arc<InstanceCfg>,
    stats: Arc<Stats>,
    socks: SocketAddr,
    http: Option<SocketAddr>,
    started: Instant,
    _tasks: Vec<Task<()>>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Ends the connections it serves (its listeners end with its tasks).
        self.stop.raise();
    }
}

impl Instance {
    fn to_json(&self) -> Ordered {
        let st = &self.stats;
        let s = st.server.lock().unwrap_or_else(|p| p.into_inner());
        let state = s.state;
        Ordered::new()
            .field("name", Out::Str(self.cfg.name.clone()))
            .field("server", Out::Str(self.cfg.server.to_hex()))
            .field("addr", Out::Str(self.socks.to_string()))
            .field(
                "http",
                self.http.map_or(Out::Null, |h| Out::Str(h.to_string())),
            )
            .field("via", Out::Str(self.cfg.via.as_str().into()))
            .field("passcode", Out::Bool(self.cfg.passcode.is_some()))
            .field("server_state", Out::Str(state.into()))
            .field("state_secs", Out::U64(s.since.elapsed().as_secs()))
            .field(
                "last_error",
                s.last_error.clone().map_or(Out::Null, Out::Str),
            )
            .field("active", Out::U64(st.active.load(Ordering::Relaxed)))
            .field("total", Out::U64(st.total.load(Ordering::Relaxed)))
            .field("rejected", Out::U64(st.rejected.load(Ordering::Relaxed)))
            .field("failed", Out::U64(st.failed.load(Ordering::Relaxed)))
            .field(
                "bytes_up",
                Out::U64(st.bytes.a_to_b.load(Ordering::Relaxed)),
            )
            .field(
                "bytes_down",
                Out::U64(st.bytes.b_to_a.load(Ordering::Relaxed)),
            )
            .field("uptime_secs", Out::U64(self.started.elapsed().as_secs()))
    }
}

/// The app's instances.
struct Manager {
    ctx: AppCtx,
    instances: Mutex<Vec<Instance>>,
}

impl Manager {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        self.instances.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn status_line(&self) {
        let l = self.list();
        let line = if l.is_empty() {
            "no proxies (start one: skywire cli proxy start --pk <pk>)".to_string()
        } else {
            l.iter()
                .map(|i| {
                    format!(
                        "{} {} -> {} ({} open)",
                        i.cfg.name,
                        i.socks,
                        &i.cfg.server.to_hex()[..8],
                        i.stats.active.load(Ordering::Relaxed)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        drop(l);
        self.ctx.set_status(line);
    }

    /// Starts an instance; the error is for the user (status 400 or 409).
    async fn start(&self, cfg: InstanceCfg) -> Result<Ordered, (u16, String)> {
        {
            let l = self.list();
            if l.iter().any(|i| i.cfg.name == cfg.name) {
                return Err((
                    409,
                    format!(
                        "a proxy named {:?} is already running; stop it first or give another --name",
                        cfg.name
                    ),
                ));
            }
            if l.len() >= MAX_INSTANCES {
                return Err((409, format!("{MAX_INSTANCES} proxies running (the limit)")));
            }
        }
        let bind = |addr: String, flag: &'static str| async move {
            TcpListener::bind(addr.as_str()).await.map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                    format!("; give another {flag}")
                } else {
                    String::new()
                };
                (409, format!("cannot listen on {addr}: {e}{hint}"))
            })
        };
        let socks = bind(cfg.addr.clone(), "--addr").await?;
        let http = match &cfg.http {
            Some(h) => Some(bind(h.clone(), "--http").await?),
            None => None,
        };
        let cfg = Arc::new(cfg);
        let stats = Arc::new(Stats::new());
        let stop = crate::app::Signal::default();
        let front = Arc::new(front::Front {
            cfg: cfg.clone(),
            stats: stats.clone(),
            ctx: self.ctx.clone(),
            stop: stop.clone(),
        });
        let socks_addr = socks
            .local_addr()
            .map_err(|e| (500, format!("listener address: {e}")))?;
        let http_addr = http.as_ref().and_then(|h| h.local_addr().ok());
        let mut tasks = vec![self.ctx.ex.spawn_boxed(front.clone().run(socks, false))];
        if let Some(h) = http {
            tasks.push(self.ctx.ex.spawn_boxed(front.run(h, true)));
        }
        log::info!(
            "skysocks-client {}: SOCKS5 on {socks_addr}{} -> {} (via {})",
            cfg.name,
            http_addr
                .map(|h| format!(", HTTP on {h}"))
                .unwrap_or_default(),
            cfg.server,
            cfg.via.as_str()
        );
        let inst = Instance {
            stop,
            cfg,
            stats,
            socks: socks_addr,
            http: http_addr,
            started: Instant::now(),
            _tasks: tasks,
        };
        let json = inst.to_json();
        self.list().push(inst);
        self.status_line();
        Ok(json)
    }

    /// Stops `name`, or the only instance when `None`.
    fn stop(&self, name: Option<&str>) -> Result<Ordered, (u16, String)> {
        let mut l = self.list();
        let names = || {
            l.iter()
                .map(|i| i.cfg.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let idx = match name {
            Some(n) => l.iter().position(|i| i.cfg.name == n).ok_or_else(|| {
                (
                    404,
                    if l.is_empty() {
                        format!("no proxy named {n:?}; none is running")
                    } else {
                        format!("no proxy named {n:?}; running: {}", names())
                    },
                )
            })?,
            None if l.len() == 1 => 0,
            None if l.is_empty() => return Err((404, "no proxy is running".into())),
            None => {
                return Err((
                    400,
                    format!("several proxies run ({}); say which with --name", names()),
                ));
            }
        };
        let inst = l.remove(idx);
        drop(l);
        log::info!("skysocks-client {}: stopped", inst.cfg.name);
        let out = Ordered::new().field("stopped", Out::Str(inst.cfg.name.clone()));
        drop(inst);
        self.status_line();
        Ok(out)
    }

    fn list_json(&self) -> Ordered {
        Ordered::new().field(
            "items",
            Out::Arr(self.list().iter().map(|i| Out::Obj(i.to_json())).collect()),
        )
    }

    /// One control request (see [`control`]).
    async fn control(&self, body: &str) -> Result<Ordered, (u16, String)> {
        let bad = |e: JsonError| (400, format!("control request: {e}"));
        let obj = parse_object(body).map_err(bad)?;
        let mut f = Fields::new(&obj, "");
        match f.str("op").map_err(bad)? {
            "list" => Ok(self.list_json()),
            "stop" => {
                let name = f.opt_str("name").map_err(bad)?;
                f.deny_unknown().map_err(bad)?;
                self.stop(name)
            }
            "start" => {
                let cfg = InstanceCfg::new(
                    f.str("pk").map_err(bad)?,
                    f.opt_str("name").map_err(bad)?,
                    f.opt_str("addr").map_err(bad)?.unwrap_or(DEFAULT_ADDR),
                    f.opt_str("http").map_err(bad)?,
                    f.opt_str("passcode").map_err(bad)?,
                    f.opt_str("via").map_err(bad)?.unwrap_or("auto"),
                    f.opt_u64("tries", 10).map_err(bad)?.unwrap_or(3) as u32,
                    f.opt_u64("max_conns", 65_535)
                        .map_err(bad)?
                        .unwrap_or(MAX_CONNS as u64) as usize,
                )
                .map_err(|e| (400, e))?;
                f.deny_unknown().map_err(bad)?;
                self.start(cfg).await
            }
            op => Err((
                400,
                format!("control request: unknown op {op:?} (start, stop, list)"),
            )),
        }
    }
}

fn start(ctx: AppCtx) -> AppFuture {
    Box::pin(run(ctx))
}

async fn run(ctx: AppCtx) -> Result<(), String> {
    let first = parse_args(&ctx.args)?;
    let mgr = Arc::new(Manager {
        ctx: ctx.clone(),
        instances: Mutex::new(Vec::new()),
    });
    if let Some(cfg) = first {
        mgr.start(cfg).await.map_err(|(_, e)| e)?;
    }
    let m2 = mgr.clone();
    ctx.set_control(Arc::new(move |body: String| {
        let m = m2.clone();
        Box::pin(async move { m.control(&body).await.map(|o| o.to_pretty()) })
    }));
    mgr.status_line();
    ctx.ready();
    // The status line follows the open-connection counts.
    let refresh = async {
        loop {
            async_io::Timer::after(std::time::Duration::from_secs(2)).await;
            mgr.status_line();
        }
    };
    future::or(refresh, ctx.stopped()).await;
    mgr.list().clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_checked() {
        let pk = crate::crypto::Keypair::from_seed(&[7; 32])
            .public()
            .to_hex();
        assert!(parse_args(&[]).unwrap().is_none());
        let c = parse_args(&args(&["--srv", &pk])).unwrap().unwrap();
        assert_eq!((c.name.as_str(), c.addr.as_str()), (&pk[..8], DEFAULT_ADDR));
        assert_eq!(c.via, Via::Auto);
        for (a, want) in [
            (vec!["--srv", "02d3e1"], "--srv"),
            (vec!["--srv", &pk, "--addr", "localhost"], "--addr"),
            (vec!["--srv", &pk, "--http", "nope"], "--http"),
            (vec!["--srv", &pk, "--name", "Bad Name"], "name"),
            (vec!["--srv", &pk, "--via", "carrier-pigeon"], "--via"),
            (vec!["--srv", &pk, "--tries", "0"], "--tries"),
            (vec!["--srv", &pk, "--passcode", ""], "--passcode"),
            (vec!["--name", "x"], "need --srv"),
        ] {
            let e = parse_args(&args(&a)).unwrap_err();
            assert!(e.contains(want), "{a:?}: {e}");
        }
    }
}
