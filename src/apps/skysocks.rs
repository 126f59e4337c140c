//! skysocks (`app-skysocks`, overlay port 3): a SOCKS5 server (RFC 1928) on every incoming
//! overlay stream, making TCP connections from this machine — CONNECT to IPv4, IPv6 and
//! domain names (resolved here). BIND and UDP ASSOCIATE are answered "command not
//! supported". Runs in every mode: inside the visor, `dmsg skysocks` (own dmsg client),
//! `standalone skysocks` (Noise XK over TCP, `:3003` unless `--listen`).
//!
//! Access: `--passcode P` requires RFC 1929 user/pass with `P` as the username or the
//! password (as Go's skysocks); `--whitelist <pk>` (repeatable) serves only those PKs (and
//! this host and its hypervisors), answering others "not allowed" after their request.
//!
//! Budgets (docs/architecture.md "Listeners and their budgets"): at most `--max-conns`
//! (default [`MAX_CONNS`]) streams at once and `--max-conns-per-peer` (default
//! [`MAX_CONNS_PER_PEER`]) per PK — a stream over either is closed at once; the handshake
//! reads into a fixed [`socks5::HANDSHAKE_BUF`] buffer within [`socks5::HANDSHAKE_TIMEOUT`];
//! the destination connect gets [`socks5::CONNECT_TIMEOUT`]; a served connection costs the
//! splice's two [`crate::app::splice::SPLICE_BUF`] buffers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use argh::FromArgs;
use futures_lite::future;
use futures_lite::io::AsyncWriteExt;

use super::socks5::{self, Auth, HandshakeError, Reply};
use crate::app::conn::Conn;
use crate::app::settings::RestartPolicy;
use crate::app::splice::splice;
use crate::app::{AppCtx, AppDef, AppFuture, Mode, is_trusted};
use crate::crypto::PublicKey;
use crate::spawn::Spawn;

/// The overlay port (DESIGN.md §4).
pub const PORT: u16 = 3;
/// Most streams served at once (default).
pub const MAX_CONNS: usize = 256;
/// Most streams from one PK at once (default).
pub const MAX_CONNS_PER_PEER: usize = 64;

#[derive(FromArgs, Debug)]
/// skysocks server arguments
struct Args {
    /// require this passcode (RFC 1929 user/pass: as the username or the password)
    #[argh(option)]
    passcode: Option<String>,
    /// serve only this PK (repeatable; this visor and its hypervisors always are)
    #[argh(option)]
    whitelist: Vec<String>,
    /// most streams at once (default 256)
    #[argh(option, default = "MAX_CONNS")]
    max_conns: usize,
    /// most streams from one PK at once (default 64)
    #[argh(option, default = "MAX_CONNS_PER_PEER")]
    max_conns_per_peer: usize,
}

#[derive(Debug)]
struct Config {
    auth: Auth,
    whitelist: Vec<PublicKey>,
    max_conns: usize,
    max_per_peer: usize,
}

fn parse_args(args: &[String]) -> Result<Config, String> {
    let a: Args = crate::app::parse_args("skysocks", args)?;
    let whitelist = a
        .whitelist
        .iter()
        .map(|s| PublicKey::from_hex(s).map_err(|e| format!("--whitelist {s}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if a.max_conns == 0 || a.max_conns_per_peer == 0 {
        return Err("--max-conns and --max-conns-per-peer must be at least 1".into());
    }
    let auth = match a.passcode {
        Some(p) if p.is_empty() || p.len() > 255 => {
            return Err("--passcode must be 1-255 bytes".into());
        }
        Some(p) => Auth::Passcode(p),
        None => Auth::Open,
    };
    Ok(Config {
        auth,
        whitelist,
        max_conns: a.max_conns,
        max_per_peer: a.max_conns_per_peer.min(a.max_conns),
    })
}

/// The app definition.
pub static DEF: AppDef = AppDef {
    name: "skysocks",
    summary: "SOCKS5 proxy server for overlay peers (CONNECT from this machine)",
    modes: &[Mode::Visor, Mode::Dmsg, Mode::Tcp],
    port: Some(PORT),
    depends: &[],
    critical: false,
    autostart: false,
    restart: RestartPolicy::OnFailure,
    tcp_listen: Some(":3003"),
    check_args: |a| parse_args(a).map(|_| ()),
    start,
};

fn start(ctx: AppCtx) -> AppFuture {
    Box::pin(run(ctx))
}

/// Streams open, total and per peer.
#[derive(Debug, Default)]
struct Counts {
    per_peer: HashMap<PublicKey, usize>,
    total: usize,
}

/// A served stream's place in [`Counts`]; given back when dropped.
#[derive(Debug)]
struct Slot {
    counts: Arc<Mutex<Counts>>,
    peer: PublicKey,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total -= 1;
        if let Some(n) = c.per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                c.per_peer.remove(&self.peer);
            }
        }
    }
}

/// A slot for a stream from `peer`, or why not.
fn take_slot(counts: &Arc<Mutex<Counts>>, cfg: &Config, peer: PublicKey) -> Result<Slot, String> {
    let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
    if c.total >= cfg.max_conns {
        return Err(format!("{} streams open (the limit)", c.total));
    }
    let n = c.per_peer.entry(peer).or_insert(0);
    if *n >= cfg.max_per_peer {
        return Err(format!("{n} streams open from {peer} (the per-peer limit)"));
    }
    *n += 1;
    c.total += 1;
    Ok(Slot {
        counts: counts.clone(),
        peer,
    })
}

/// Served totals, for the status line.
#[derive(Debug, Default)]
struct Totals {
    served: AtomicU64,
    refused: AtomicU64,
}

async fn run(ctx: AppCtx) -> Result<(), String> {
    let cfg = Arc::new(parse_args(&ctx.args)?);
    let listener = ctx
        .net
        .listen(PORT)
        .map_err(|e| format!("port {PORT}: {e}"))?;
    ctx.ready();
    let counts = Arc::new(Mutex::new(Counts::default()));
    let totals = Arc::new(Totals::default());
    let status = {
        let (cfg, counts, totals, ctx) = (cfg.clone(), counts.clone(), totals.clone(), ctx.clone());
        Arc::new(move || {
            let c = counts.lock().unwrap_or_else(|p| p.into_inner());
            ctx.set_status(format!(
                "{} stream(s) from {} peer(s) (at most {}, {} per peer); {} served, {} refused; passcode {}; {}",
                c.total,
                c.per_peer.len(),
                cfg.max_conns,
                cfg.max_per_peer,
                totals.served.load(Ordering::Relaxed),
                totals.refused.load(Ordering::Relaxed),
                if cfg.auth == Auth::Open { "off" } else { "on" },
                if cfg.whitelist.is_empty() {
                    "open to every PK".to_string()
                } else {
                    format!("{} PK(s) whitelisted", cfg.whitelist.len())
                }
            ));
        })
    };
    status();
    let serve = async {
        loop {
            let mut conn = listener.accept().await.map_err(|e| e.to_string())?;
            let peer = *conn.peer();
            let slot = match take_slot(&counts, &cfg, peer) {
                Ok(s) => s,
                Err(why) => {
                    log::info!("skysocks: stream from {peer} closed: {why}");
                    totals.refused.fetch_add(1, Ordering::Relaxed);
                    let _ = conn.close().await;
                    continue;
                }
            };
            let allowed = cfg.whitelist.is_empty() || is_trusted(&ctx.host, &cfg.whitelist, &peer);
            let (cfg, totals, st, c2) = (cfg.clone(), totals.clone(), status.clone(), ctx.clone());
            ctx.ex
                .spawn_boxed(async move {
                    // Stopping the app ends the connections it serves.
                    let serve = serve_stream(conn, peer, allowed, &cfg);
                    let ok = future::or(serve, async {
                        c2.stopped().await;
                        false
                    })
                    .await;
                    let t = if ok { &totals.served } else { &totals.refused };
                    t.fetch_add(1, Ordering::Relaxed);
                    drop(slot);
                    st();
                })
                .detach();
            status();
        }
    };
    future::or(serve, async {
        ctx.stopped().await;
        Ok(())
    })
    .await
}

/// Serves one stream: handshake, policy, connect, reply, splice. True if a connection was
/// made. A refused stream is closed gracefully (FIN), so the answer is not overtaken by a
/// reset.
async fn serve_stream(mut conn: Conn, peer: PublicKey, allowed: bool, cfg: &Config) -> bool {
    let served = serve_inner(&mut conn, peer, allowed, cfg).await;
    match served {
        Some(tcp) => {
            log::debug!("skysocks: {peer}: connected");
            let (up, down) = splice(conn, tcp, None).await;
            log::debug!("skysocks: {peer}: done ({up} B up, {down} B down)");
            true
        }
        None => {
            let _ = conn.close().await;
            false
        }
    }
}

/// The handshake and the connect: the destination, or `None` (answered) if refused.
async fn serve_inner(
    conn: &mut Conn,
    peer: PublicKey,
    allowed: bool,
    cfg: &Config,
) -> Option<async_net::TcpStream> {
    let acc = match socks5::within(
        socks5::HANDSHAKE_TIMEOUT,
        socks5::accept_held(conn, &cfg.auth),
    )
    .await
    {
        Some(Ok(a)) => a,
        Some(Err(HandshakeError::Io(_))) => return None,
        Some(Err(e)) => {
            log::info!("skysocks: {peer}: {e}");
            return None;
        }
        None => {
            log::info!("skysocks: {peer}: handshake timed out");
            return None;
        }
    };
    if !allowed {
        log::info!("skysocks: {peer} is not whitelisted; refused");
        let _ = acc.reply(conn, Reply::NotAllowed, None).await;
        return None;
    }
    let mut tcp = match socks5::connect_tcp(&acc.host, acc.port).await {
        Ok(t) => t,
        Err((reply, why)) => {
            log::info!("skysocks: {peer} -> {}:{}: {why}", acc.host, acc.port);
            let _ = acc.reply(conn, reply, None).await;
            return None;
        }
    };
    let bound = tcp.local_addr().ok();
    acc.reply(conn, Reply::Succeeded, bound).await.ok()?;
    if !acc.early.is_empty() {
        tcp.write_all(&acc.early).await.ok()?;
    }
    log::debug!("skysocks: {peer} -> {}:{}", acc.host, acc.port);
    Some(tcp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_checked() {
        assert!(parse_args(&[]).is_ok());
        assert!(parse_args(&args(&["--passcode", "x"])).is_ok());
        let e = parse_args(&args(&["--passcode", ""])).unwrap_err();
        assert!(e.contains("1-255"), "{e}");
        let e = parse_args(&args(&["--whitelist", "zz"])).unwrap_err();
        assert!(e.contains("--whitelist zz"), "{e}");
        assert!(parse_args(&args(&["--max-conns", "0"])).is_err());
    }

    #[test]
    fn caps_per_peer_and_total() {
        let cfg = Config {
            auth: Auth::Open,
            whitelist: vec![],
            max_conns: 3,
            max_per_peer: 2,
        };
        let counts = Arc::new(Mutex::new(Counts::default()));
        let a = crate::crypto::Keypair::from_seed(&[1; 32])
            .public()
            .to_owned();
        let b = crate::crypto::Keypair::from_seed(&[2; 32])
            .public()
            .to_owned();
        let s1 = take_slot(&counts, &cfg, a).unwrap();
        let _s2 = take_slot(&counts, &cfg, a).unwrap();
        assert!(
            take_slot(&counts, &cfg, a)
                .unwrap_err()
                .contains("per-peer")
        );
        let _s3 = take_slot(&counts, &cfg, b).unwrap();
        assert!(
            take_slot(&counts, &cfg, b)
                .unwrap_err()
                .contains("the limit")
        );
        drop(s1);
        let _s4 = take_slot(&counts, &cfg, b).unwrap();
        assert_eq!(counts.lock().unwrap().total, 3);
        drop(_s4);
        assert_eq!(counts.lock().unwrap().per_peer.get(&b), Some(&1));
    }
}
