//! The skychat app definition (`app-skychat`, overlay port 1, autostart, restart on
//! failure): inside the visor, `dmsg skychat` (own dmsg client) and `standalone skychat`
//! (Noise XK over TCP, listening on `:8800` unless `--listen`). Its files live in
//! `<state dir>/skychat` (visor), `skychat-dmsg` or `skychat-tcp` (standalone), so a
//! visor-hosted and a standalone skychat on one board never share them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;
use async_io::Timer;
use futures_lite::future;

use super::aliases::Aliases;
use super::chat::{Chat, ChatConfig};
use super::events::Hub;
use super::store::{Store, StoreLimits};
use super::writer::StoreHandle;
use super::{HTTP_STANDALONE, HTTP_VISOR, PORT, TCP_DEFAULT};
use crate::app::net::{TcpNet, parse_tcp_peer};
use crate::app::settings::RestartPolicy;
use crate::app::{AppCtx, AppDef, AppFuture, Mode};
use crate::crypto::PublicKey;
use crate::spawn::Spawn;

#[derive(FromArgs, Debug)]
/// skychat arguments
struct Args {
    /// HTTP surface address (default 127.0.0.1:8001 in a visor, 127.0.0.1:8002 standalone)
    #[argh(option)]
    addr: Option<String>,
    /// a password file (`skywire cli skychat passwd`) for HTTP basic access
    #[argh(option)]
    password_file: Option<PathBuf>,
    /// also listen for TCP-direct peers here (host:port)
    #[argh(option)]
    tcp_listen: Option<String>,
    /// a TCP-direct peer kept connected, tcp://<pk>@host:port (repeatable)
    #[argh(option)]
    tcp_peer: Vec<String>,
    /// PKs allowed in over TCP, comma-separated (default: any authenticated key)
    #[argh(option)]
    tcp_whitelist: Option<String>,
    /// keep no history on disk
    #[argh(switch)]
    no_history: bool,
    /// largest message, bytes (default 16384, at most 60000)
    #[argh(option, default = "16_384")]
    max_message: usize,
    /// messages kept per peer (default 1000)
    #[argh(option, default = "1_000")]
    history_per_peer: usize,
    /// history bytes kept in all (default 16 MiB)
    #[argh(option, default = "16 << 20")]
    history_max_bytes: u64,
    /// days a message is kept (default 30)
    #[argh(option, default = "30")]
    history_ttl_days: u64,
    /// ack wait when a request names none, ms (default 5000)
    #[argh(option, default = "5_000")]
    wait_default_ms: u64,
    /// messages accepted per 10 s from one peer, burst twice that (default 200; 0 = unlimited)
    #[argh(option, default = "200")]
    peer_rate: u32,
    /// turn pairing on (`skywire cli skychat pair …`; off by default: the /pair routes answer
    /// 503 and peers' pair envelopes are refused)
    #[argh(switch)]
    pair_enable: bool,
}

/// The parsed arguments.
#[derive(Debug)]
struct Opts {
    addr: Option<String>,
    password_file: Option<PathBuf>,
    tcp_listen: Option<String>,
    tcp_peers: Vec<(PublicKey, String)>,
    chat: ChatConfig,
    limits: StoreLimits,
    pair_enable: bool,
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let a: Args = crate::app::parse_args("skychat", args)?;
    if !(1..=60_000).contains(&a.max_message) {
        return Err("--max-message must be 1-60000 (a frame holds 65536 bytes)".into());
    }
    if a.history_per_peer == 0 || a.history_max_bytes == 0 || a.history_ttl_days == 0 {
        return Err("--history-per-peer, --history-max-bytes and --history-ttl-days must be at least 1 (use --no-history to keep none)".into());
    }
    if !(100..=60_000).contains(&a.wait_default_ms) {
        return Err("--wait-default-ms must be 100-60000".into());
    }
    if let Some(addr) = &a.addr {
        crate::addr::bind_addr(addr)
            .parse::<std::net::SocketAddr>()
            .map_err(|_| format!("--addr {addr}: expected host:port, e.g. 127.0.0.1:8001"))?;
    }
    let mut tcp_peers = Vec::new();
    for p in &a.tcp_peer {
        tcp_peers.push(parse_tcp_peer(p).map_err(|e| format!("--tcp-peer {e}"))?);
    }
    let mut whitelist = Vec::new();
    for w in a.tcp_whitelist.iter().flat_map(|s| s.split(',')) {
        let w = w.trim();
        if !w.is_empty() {
            whitelist
                .push(PublicKey::from_hex(w).map_err(|e| format!("--tcp-whitelist {w}: {e}"))?);
        }
    }
    Ok(Opts {
        addr: a.addr,
        password_file: a.password_file,
        tcp_listen: a.tcp_listen,
        tcp_peers,
        chat: ChatConfig {
            wait_default: Duration::from_millis(a.wait_default_ms),
            fire_and_forget_ok: true,
            tcp_whitelist: whitelist,
            max_message: a.max_message,
            per_peer_rate: a.peer_rate,
            history: !a.no_history,
        },
        limits: StoreLimits {
            max_message: a.max_message,
            per_peer_cap: a.history_per_peer,
            total_bytes: a.history_max_bytes,
            ttl: Duration::from_secs(a.history_ttl_days * 24 * 3600),
        },
        pair_enable: a.pair_enable,
    })
}

/// The app definition.
pub static DEF: AppDef = AppDef {
    name: "skychat",
    summary: "direct messages with delivery acks; HTTP surface and web page on 127.0.0.1:8001",
    modes: &[Mode::Visor, Mode::Dmsg, Mode::Tcp],
    port: Some(PORT),
    depends: &[],
    critical: false,
    autostart: true,
    restart: RestartPolicy::OnFailure,
    tcp_listen: Some(TCP_DEFAULT),
    check_args: |a| parse_args(a).map(|_| ()),
    start,
};

fn start(ctx: AppCtx) -> AppFuture {
    Box::pin(run(ctx))
}

/// The app's directory under the host's state dir, per mode.
pub fn app_dir(state_dir: &std::path::Path, mode: Mode) -> PathBuf {
    state_dir.join(match mode {
        Mode::Visor => "skychat",
        Mode::Dmsg => "skychat-dmsg",
        Mode::Tcp => "skychat-tcp",
    })
}

async fn run(ctx: AppCtx) -> Result<(), String> {
    let opts = parse_args(&ctx.args)?;
    let dir = app_dir(&ctx.host.state_dir, ctx.mode);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let aliases = Aliases::load(dir.join("aliases.json"))?;
    // The TCP-direct network beside the overlay: in TCP mode the overlay is TCP already
    // (this one only dials --tcp-peer); otherwise it exists when asked for.
    let want_tcp = ctx.mode == Mode::Tcp || opts.tcp_listen.is_some() || !opts.tcp_peers.is_empty();
    let tcp: Option<Arc<TcpNet>> = match (&ctx.host.tcp, want_tcp) {
        (Some(f), true) => Some(f(if ctx.mode == Mode::Tcp {
            None
        } else {
            opts.tcp_listen.clone()
        })),
        (None, true) => return Err("this host cannot make a TCP-direct network".into()),
        _ => None,
    };
    // History: the append-only log in the app's directory, its writer thread syncing every
    // batch before the acknowledgements of what it holds go out.
    let store = if opts.chat.history {
        let (store, report) = Store::open(&dir, opts.limits.clone())?;
        if report.torn_bytes > 0 {
            log::warn!(
                "skychat: the history log ended in a torn record ({} bytes, from a crash): cut off",
                report.torn_bytes
            );
        }
        if let Some(f) = &report.corrupt_file {
            log::warn!(
                "skychat: the history log had an unreadable record; the rest is kept in {}",
                f.display()
            );
        }
        log::info!(
            "skychat: history in {}: {} message(s){}",
            dir.display(),
            report.records,
            if report.expired > 0 {
                format!(", {} expired", report.expired)
            } else {
                String::new()
            }
        );
        Some(StoreHandle::start(store)?)
    } else {
        None
    };
    let hub = Hub::new(10_000, Duration::from_secs(24 * 3600));
    let chat = Chat::new(
        opts.chat.clone(),
        ctx.net.clone(),
        tcp.clone(),
        hub,
        aliases,
        ctx.ex.clone(),
    );
    if let Some(st) = store {
        chat.attach_store(st)?;
    }
    // Groups: only where the host lends its identity (the owner signs as the visor).
    if let Some(keys) = &ctx.host.keys {
        let g = super::groups::Groups::open(
            crate::crypto::Keypair::from_seed(keys.seed()),
            &dir,
            chat.hub().clone(),
            ctx.ex.clone(),
        )?;
        log::info!("skychat: {} group(s) restored", g.ids().len());
        chat.attach_groups(g.clone())?;
        g.start(&chat);
    }
    // Pairing: only when asked for (its book and inbox live in the app's directory).
    if opts.pair_enable {
        let p = super::pair::Pairs::open(&dir, chat.hub().clone(), ctx.ex.clone())?;
        log::info!("skychat: pairing on, {} pair(s) restored", p.list().len());
        chat.attach_pairs(p)?;
    }
    let overlay = ctx
        .net
        .listen(PORT)
        .map_err(|e| format!("port {PORT}: {e}"))?;
    let tcp_listener = match (&tcp, &opts.tcp_listen) {
        (Some(t), Some(a)) if ctx.mode != Mode::Tcp => Some(
            crate::app::net::Net::listen(t.as_ref(), PORT)
                .map_err(|e| format!("--tcp-listen {a}: {e}"))?,
        ),
        _ => None,
    };
    let addr = opts.addr.clone().unwrap_or_else(|| {
        if ctx.mode == Mode::Visor {
            HTTP_VISOR
        } else {
            HTTP_STANDALONE
        }
        .to_string()
    });
    let (http_l, served, http_opts) =
        super::http::bind(&addr, &ctx.host.state_dir, opts.password_file.as_deref()).await?;
    log::info!(
        "skychat: HTTP on {served}; token in {}",
        http_opts.token_file.display()
    );
    let http_task = ctx.ex.spawn_boxed(super::http::serve(
        http_l,
        served,
        chat.clone(),
        http_opts,
        ctx.ex.clone(),
    ));
    let addr = served.to_string();
    for (pk, a) in &opts.tcp_peers {
        chat.add_tcp_peer(*pk, a.clone());
    }
    let routes = super::http::routes(chat.clone(), Default::default(), ctx.ex.clone());
    ctx.set_control(Arc::new(move |body: String| {
        let routes = routes.clone();
        Box::pin(async move { super::http::control(&routes, &body).await })
    }));
    let c2 = chat.clone();
    let serve_overlay = ctx.ex.spawn_boxed(async move { c2.serve(overlay).await });
    let serve_tcp = tcp_listener.map(|l| {
        let c = chat.clone();
        ctx.ex.spawn_boxed(async move { c.serve(l).await })
    });
    ctx.ready();
    let status_loop = async {
        loop {
            let s = chat.status();
            ctx.set_status(format!(
                "http {addr}; {} peer conn(s); {} in, {} out",
                s.active_peer_conns, s.inbound_msg_count, s.outbound_msg_count
            ));
            Timer::after(Duration::from_secs(2)).await;
        }
    };
    let end = future::or(
        future::or(
            async {
                let r = serve_overlay.await;
                r.map_err(|e| format!("port {PORT}: {e}"))
            },
            http_task,
        ),
        future::or(status_loop, async {
            ctx.stopped().await;
            Ok(())
        }),
    )
    .await;
    drop(serve_tcp);
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_are_checked() {
        assert!(parse_args(&[]).is_ok());
        let pk = crate::crypto::Keypair::from_seed(&[2; 32])
            .public()
            .to_string();
        let o = parse_args(&args(&[
            "--tcp-peer",
            &format!("tcp://{pk}@127.0.0.1:8800"),
            "--tcp-whitelist",
            &format!("{pk},{pk}"),
            "--peer-rate",
            "0",
        ]))
        .unwrap();
        assert_eq!(o.tcp_peers.len(), 1);
        assert_eq!(o.chat.tcp_whitelist.len(), 2);
        assert_eq!(o.chat.per_peer_rate, 0);
        assert!(!o.pair_enable);
        assert!(parse_args(&args(&["--pair-enable"])).unwrap().pair_enable);
        for bad in [
            &["--max-message", "0"][..],
            &["--max-message", "70000"],
            &["--addr", "nope"],
            &["--tcp-peer", "x@y"],
            &["--tcp-whitelist", "zz"],
            &["--wait-default-ms", "5"],
            &["--bogus"],
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?}");
        }
    }
}
