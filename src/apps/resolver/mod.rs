//! The resolvers (`app-resolver`): two local SOCKS5 servers that resolve overlay names —
//! `127.0.0.1:4445` serves `[<vhost>.]<pk>.dmsg[:port]` by dialling the peer over dmsg,
//! `127.0.0.1:4446` serves `[<vhost>.]<pk>.skynet[:port]` over a skynet route (grammar in
//! [`name`]; the port is the overlay port, 80 — the log server — when a URL gives none).
//! Runs inside the visor (its identity, its dmsg and routes) or standalone on its own dmsg
//! client (`app resolver run --mode dmsg`: the dmsg resolver only, there are no routes); there
//! is no TCP mode (an overlay name needs an overlay). Clients must send names, not addresses
//! (`curl --socks5-hostname`, `socks5h://`).
//!
//! Names that are not overlay names (`example.com`, IP addresses) go to the `--upstream`
//! SOCKS5 server if one is given (e.g. skysocks-client's `127.0.0.1:1080`), else are refused
//! with the SOCKS5 reply "not allowed" and a log line. A malformed overlay name (a wrong PK
//! length, a bad label) is answered "host unreachable" and never sent upstream; a `.skynet`
//! name sent to the dmsg resolver (or the reverse) is answered "not allowed", naming the
//! other resolver in the log.
//!
//! **Virtual hosts.** With a label left of the PK (`www.<pk>.dmsg`), the first bytes the local
//! client sends on the connection are read (at most [`name::MAX_HEAD`], for at most
//! [`VHOST_WAIT`]) and, if they are a complete HTTP/1.x request head, every `Host:` header in
//! it is replaced by `Host: <label>` (one is added if there was none) before they go to the
//! peer. Nothing is rewritten when: there is no label; the bytes are not an HTTP/1.x request
//! head (TLS, SSH, …) or not complete within the size or the time (they go on unchanged);
//! and never in a later request on a kept-alive connection, nor in anything the peer sends.
//!
//! `skywire cli visor proxies` lists the resolvers through the app's control surface
//! (`POST /v1/apps/resolver/control`, body `{"op":"list"}` → `{"upstream":…,"items":[…]}`,
//! an item `name, addr, network, active, connections, refused, upstreamed, failed, bytes_up,
//! bytes_down`).
//!
//! Budgets (docs/architecture.md): at most `--max-conns` (default [`MAX_CONNS`]) local
//! connections per resolver, more closed at once; the SOCKS5 handshake within
//! [`socks5::HANDSHAKE_TIMEOUT`] in a [`socks5::HANDSHAKE_BUF`] buffer; a dial within
//! [`DIAL_TIMEOUT`]; a virtual-host head buffer of at most [`name::MAX_HEAD`]; two splice
//! buffers per served connection.

pub mod name;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argh::FromArgs;
use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::conn::Conn;
use crate::app::net::Via;
use crate::app::settings::RestartPolicy;
use crate::app::splice::{Counters, splice};
use crate::app::{AppCtx, AppDef, AppFuture, Mode};
use crate::apps::socks5::{self, Auth, HandshakeError, Host, Reply};
use crate::http::json::{Fields, JsonError, Ordered, Out, parse_object};
use crate::spawn::Spawn;
use name::{Rewrite, Tld};

/// The dmsg resolver's default address.
pub const DMSG_ADDR: &str = "127.0.0.1:4445";
/// The skynet resolver's default address.
pub const SKYNET_ADDR: &str = "127.0.0.1:4446";
/// Most local connections per resolver (default).
pub const MAX_CONNS: usize = 256;
/// How long one overlay dial may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a virtual-host connection waits for the client's first request head.
pub const VHOST_WAIT: Duration = Duration::from_secs(5);

#[derive(FromArgs, Debug)]
/// resolver arguments
struct Args {
    /// the .dmsg resolver's listen address (default 127.0.0.1:4445)
    #[argh(option, default = "DMSG_ADDR.to_string()")]
    dmsg_addr: String,
    /// the .skynet resolver's listen address (default 127.0.0.1:4446)
    #[argh(option, default = "SKYNET_ADDR.to_string()")]
    skynet_addr: String,
    /// serve only the .dmsg resolver
    #[argh(switch)]
    dmsg_only: bool,
    /// send names that are not overlay names to this SOCKS5 server (e.g. 127.0.0.1:1080)
    #[argh(option)]
    upstream: Option<String>,
    /// most local connections per resolver at once (default 256)
    #[argh(option, default = "MAX_CONNS")]
    max_conns: usize,
}

#[derive(Debug)]
struct Config {
    dmsg_addr: SocketAddr,
    skynet_addr: Option<SocketAddr>,
    upstream: Option<SocketAddr>,
    max_conns: usize,
}

fn addr(flag: &str, a: &str) -> Result<SocketAddr, String> {
    a.parse()
        .map_err(|_| format!("{flag} {a:?}: expected an IP address and port, e.g. 127.0.0.1:4445"))
}

fn parse_args(args: &[String]) -> Result<Config, String> {
    let a: Args = crate::app::parse_args("resolver", args)?;
    if a.max_conns == 0 {
        return Err("--max-conns must be at least 1".into());
    }
    Ok(Config {
        dmsg_addr: addr("--dmsg-addr", &a.dmsg_addr)?,
        skynet_addr: if a.dmsg_only {
            None
        } else {
            Some(addr("--skynet-addr", &a.skynet_addr)?)
        },
        upstream: a
            .upstream
            .as_deref()
            .map(|u| addr("--upstream", u))
            .transpose()?,
        max_conns: a.max_conns,
    })
}

/// The app definition.
pub static DEF: AppDef = AppDef {
    name: "resolver",
    summary: "local SOCKS5 resolvers for <pk>.dmsg (:4445) and <pk>.skynet (:4446) names",
    modes: &[Mode::Visor, Mode::Dmsg],
    port: None,
    depends: &[],
    critical: false,
    autostart: false,
    restart: RestartPolicy::OnFailure,
    tcp_listen: None,
    check_args: |a| parse_args(a).map(|_| ()),
    start,
};

fn start(ctx: AppCtx) -> AppFuture {
    Box::pin(run(ctx))
}

/// One resolver's counters.
#[derive(Debug, Default)]
struct Stats {
    active: AtomicU64,
    connections: AtomicU64,
    refused: AtomicU64,
    upstreamed: AtomicU64,
    failed: AtomicU64,
    bytes: Counters,
}

/// One resolver (a listener for one TLD).
struct Resolver {
    tld: Tld,
    addr: SocketAddr,
    upstream: Option<SocketAddr>,
    max_conns: usize,
    stats: Stats,
    ctx: AppCtx,
}

/// A slot among a resolver's connections; given back when dropped.
struct Active<'a>(&'a Stats);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Resolver {
    fn to_json(&self) -> Ordered {
        let s = &self.stats;
        let ld = |a: &AtomicU64| Out::U64(a.load(Ordering::Relaxed));
        Ordered::new()
            .field("name", Out::Str(self.tld.as_str().into()))
            .field("addr", Out::Str(self.addr.to_string()))
            .field("network", Out::Str(self.tld.as_str().into()))
            .field("active", ld(&s.active))
            .field("connections", ld(&s.connections))
            .field("refused", ld(&s.refused))
            .field("upstreamed", ld(&s.upstreamed))
            .field("failed", ld(&s.failed))
            .field("bytes_up", ld(&s.bytes.a_to_b))
            .field("bytes_down", ld(&s.bytes.b_to_a))
    }

    fn label(&self) -> String {
        format!("resolver {} ({})", self.tld.as_str(), self.addr)
    }

    async fn run(self: Arc<Self>, listener: TcpListener) {
        loop {
            let tcp = match listener.accept().await {
                Ok((t, _)) => t,
                Err(e) => {
                    log::warn!("{}: accept: {e}", self.label());
                    Timer::after(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let n = self.stats.active.fetch_add(1, Ordering::Relaxed);
            if n >= self.max_conns as u64 {
                // At the cap: closed at once; the connections being served go on.
                self.stats.active.fetch_sub(1, Ordering::Relaxed);
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                drop(tcp);
                continue;
            }
            self.stats.connections.fetch_add(1, Ordering::Relaxed);
            let _ = tcp.set_nodelay(true);
            let me = self.clone();
            self.ctx
                .ex
                .spawn_boxed(async move {
                    let slot = Active(&me.stats);
                    future::or(me.serve(tcp), me.ctx.stopped()).await;
                    drop(slot);
                })
                .detach();
        }
    }

    fn refuse_count(&self) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
    }

    async fn serve(&self, mut tcp: TcpStream) {
        let acc = match socks5::within(
            socks5::HANDSHAKE_TIMEOUT,
            socks5::accept(&mut tcp, &Auth::Open),
        )
        .await
        {
            Some(Ok(a)) => a,
            Some(Err(HandshakeError::Io(_))) | None => return,
            Some(Err(e)) => {
                log::info!("{}: local client: {e}", self.label());
                return;
            }
        };
        let parsed = match &acc.host {
            Host::Name(n) => name::parse(n, acc.port),
            _ => Ok(None),
        };
        match parsed {
            Ok(Some(o)) if o.tld == self.tld => self.overlay(tcp, o, acc.early).await,
            Ok(Some(o)) => {
                log::info!(
                    "{}: {}: a .{} name; refused (the .{} resolver serves it)",
                    self.label(),
                    acc.host,
                    o.tld.as_str(),
                    o.tld.as_str()
                );
                self.refuse_count();
                let _ = socks5::send_reply(&mut tcp, Reply::NotAllowed, None).await;
            }
            Err(e) => {
                log::info!("{}: {}: {e}; refused", self.label(), acc.host);
                self.refuse_count();
                let _ = socks5::send_reply(&mut tcp, Reply::HostUnreachable, None).await;
            }
            Ok(None) => match self.upstream {
                Some(up) => self.upstream(tcp, up, &acc.host, acc.port, acc.early).await,
                None => {
                    log::info!(
                        "{}: {}:{} is not a .{} name and there is no --upstream; refused",
                        self.label(),
                        acc.host,
                        acc.port,
                        self.tld.as_str()
                    );
                    self.refuse_count();
                    let _ = socks5::send_reply(&mut tcp, Reply::NotAllowed, None).await;
                }
            },
        }
    }

    async fn overlay(&self, mut tcp: TcpStream, o: name::OverlayName, early: Vec<u8>) {
        let via = match self.tld {
            Tld::Dmsg => Via::Dmsg,
            Tld::Skynet => Via::Skynet,
        };
        let dial = self.ctx.net.dial_via(o.pk, o.port, via);
        let mut conn: Conn = match socks5::within(DIAL_TIMEOUT, dial).await {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                log::info!("{}: {}:{}: {e}", self.label(), o.pk, o.port);
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                let _ = socks5::send_reply(&mut tcp, socks5::reply_for_net(&e), None).await;
                return;
            }
            None => {
                log::info!("{}: {}:{}: dial timed out", self.label(), o.pk, o.port);
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                let _ = socks5::send_reply(&mut tcp, Reply::TtlExpired, None).await;
                return;
            }
        };
        if socks5::send_reply(&mut tcp, Reply::Succeeded, None)
            .await
            .is_err()
        {
            let _ = conn.close().await;
            return;
        }
        let first = match &o.vhost {
            Some(v) => first_head(&mut tcp, early, v).await,
            None => Some(early),
        };
        let Some(first) = first else {
            let _ = conn.close().await;
            return;
        };
        if !first.is_empty() && conn.write_all(&first).await.is_err() {
            return;
        }
        self.stats
            .bytes
            .a_to_b
            .fetch_add(first.len() as u64, Ordering::Relaxed);
        splice(tcp, conn, Some(&self.stats.bytes)).await;
    }

    async fn upstream(
        &self,
        mut tcp: TcpStream,
        up: SocketAddr,
        host: &Host,
        port: u16,
        early: Vec<u8>,
    ) {
        let work = async {
            let mut s = TcpStream::connect(up)
                .await
                .map_err(|e| (socks5::reply_for_io(&e), format!("upstream {up}: {e}")))?;
            let _ = s.set_nodelay(true);
            socks5::connect(&mut s, host, port, None)
                .await
                .map_err(|e| (e.reply(), format!("upstream {up}: {e}")))?;
            Ok::<_, (Reply, String)>(s)
        };
        let res = socks5::within(socks5::CONNECT_TIMEOUT, work).await;
        let mut s = match res {
            Some(Ok(s)) => s,
            Some(Err((r, why))) => {
                log::info!("{}: {host}:{port}: {why}", self.label());
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                let _ = socks5::send_reply(&mut tcp, r, None).await;
                return;
            }
            None => {
                log::info!("{}: {host}:{port}: upstream {up} timed out", self.label());
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                let _ = socks5::send_reply(&mut tcp, Reply::TtlExpired, None).await;
                return;
            }
        };
        self.stats.upstreamed.fetch_add(1, Ordering::Relaxed);
        if socks5::send_reply(&mut tcp, Reply::Succeeded, None)
            .await
            .is_err()
        {
            return;
        }
        if !early.is_empty() && s.write_all(&early).await.is_err() {
            return;
        }
        splice(tcp, s, Some(&self.stats.bytes)).await;
    }
}

/// The client's first bytes with the virtual host rewritten in (see the module docs), or
/// `None` if the client went away first.
async fn first_head(tcp: &mut TcpStream, mut buf: Vec<u8>, vhost: &str) -> Option<Vec<u8>> {
    let deadline = Instant::now() + VHOST_WAIT;
    let mut chunk = [0u8; 2048];
    loop {
        match name::rewrite_host(&buf, vhost) {
            Rewrite::Done(out) => return Some(out),
            Rewrite::NotHttp => return Some(buf),
            Rewrite::Partial => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let want = chunk
            .len()
            .min(name::MAX_HEAD + 1 - buf.len().min(name::MAX_HEAD));
        match socks5::within(left, tcp.read(&mut chunk[..want.max(1)])).await {
            Some(Ok(0)) if buf.is_empty() => return None,
            // The client half-closed, or the time is up: what came goes on unchanged.
            Some(Ok(0)) | None => return Some(buf),
            Some(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Some(Err(_)) => return None,
        }
    }
}

async fn bind(a: SocketAddr, flag: &str) -> Result<TcpListener, String> {
    TcpListener::bind(a).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            format!("; give another {flag}")
        } else {
            String::new()
        };
        format!("cannot listen on {a}: {e}{hint}")
    })
}

async fn run(ctx: AppCtx) -> Result<(), String> {
    let cfg = parse_args(&ctx.args)?;
    let mut want = vec![(Tld::Dmsg, cfg.dmsg_addr, "--dmsg-addr")];
    let mut note = String::new();
    match cfg.skynet_addr {
        // Standalone there is only dmsg: no routes to dial a .skynet name by.
        Some(_) if ctx.mode == Mode::Dmsg => {
            note = "; .skynet resolver off (dmsg mode has no routes)".into();
        }
        Some(a) => want.push((Tld::Skynet, a, "--skynet-addr")),
        None => note = "; .skynet resolver off (--dmsg-only)".into(),
    }
    let mut resolvers = Vec::new();
    let mut tasks = Vec::new();
    for (tld, a, flag) in want {
        let l = bind(a, flag).await?;
        let addr = l.local_addr().map_err(|e| format!("{a}: {e}"))?;
        let r = Arc::new(Resolver {
            tld,
            addr,
            upstream: cfg.upstream,
            max_conns: cfg.max_conns,
            stats: Stats::default(),
            ctx: ctx.clone(),
        });
        log::info!("resolver: .{} names on {addr}", tld.as_str());
        tasks.push(ctx.ex.spawn_boxed(r.clone().run(l)));
        resolvers.push(r);
    }
    let resolvers = Arc::new(resolvers);
    let upstream = cfg.upstream;
    let up_text = upstream.map_or_else(
        || "other names refused".to_string(),
        |u| format!("other names to {u}"),
    );
    let status = {
        let (rs, ctx, up_text) = (resolvers.clone(), ctx.clone(), up_text.clone());
        move || {
            let parts: Vec<String> = rs
                .iter()
                .map(|r| {
                    format!(
                        ".{} on {} ({} open, {} in all)",
                        r.tld.as_str(),
                        r.addr,
                        r.stats.active.load(Ordering::Relaxed),
                        r.stats.connections.load(Ordering::Relaxed)
                    )
                })
                .collect();
            ctx.set_status(format!("{}; {up_text}{note}", parts.join(", ")));
        }
    };
    let rs = resolvers.clone();
    ctx.set_control(Arc::new(move |body: String| {
        let rs = rs.clone();
        Box::pin(async move { control(&rs, upstream, &body).map(|o| o.to_pretty()) })
    }));
    status();
    ctx.ready();
    let refresh = async {
        loop {
            Timer::after(Duration::from_secs(2)).await;
            status();
        }
    };
    future::or(refresh, ctx.stopped()).await;
    drop(tasks);
    Ok(())
}

/// One control request: `{"op":"list"}`.
fn control(
    rs: &[Arc<Resolver>],
    upstream: Option<SocketAddr>,
    body: &str,
) -> Result<Ordered, (u16, String)> {
    let bad = |e: JsonError| (400, format!("control request: {e}"));
    let obj = parse_object(body).map_err(bad)?;
    let mut f = Fields::new(&obj, "");
    match f.str("op").map_err(bad)? {
        "list" => {
            f.deny_unknown().map_err(bad)?;
            Ok(Ordered::new()
                .field(
                    "upstream",
                    upstream.map_or(Out::Null, |u| Out::Str(u.to_string())),
                )
                .field(
                    "items",
                    Out::Arr(rs.iter().map(|r| Out::Obj(r.to_json())).collect()),
                ))
        }
        op => Err((400, format!("control request: unknown op {op:?} (list)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_checked() {
        let c = parse_args(&[]).unwrap();
        assert_eq!(c.dmsg_addr.to_string(), DMSG_ADDR);
        assert_eq!(c.skynet_addr.unwrap().to_string(), SKYNET_ADDR);
        assert!(c.upstream.is_none());
        let c = parse_args(&args(&["--dmsg-only", "--upstream", "127.0.0.1:1080"])).unwrap();
        assert!(c.skynet_addr.is_none());
        assert_eq!(c.upstream.unwrap().port(), 1080);
        for (a, want) in [
            (vec!["--dmsg-addr", "localhost"], "--dmsg-addr"),
            (vec!["--skynet-addr", "x:1"], "--skynet-addr"),
            (vec!["--upstream", "1080"], "--upstream"),
            (vec!["--max-conns", "0"], "--max-conns"),
        ] {
            let e = parse_args(&args(&a)).unwrap_err();
            assert!(e.contains(want), "{a:?}: {e}");
        }
    }
}
