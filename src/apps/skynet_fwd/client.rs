//! skynet-client: local TCP ports forwarded to ports exposed by skynet-srv on other visors
//! (see the parent module). Arguments: `--srv <pk> --remote P --local L [--name N] [--via
//! skynet|dmsg|auto]` (one forward at launch; `--local` binds 127.0.0.1:L).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use argh::FromArgs;
use async_executor::Task;
use async_net::{TcpListener, TcpStream};
use futures_lite::future;
use futures_lite::io::AsyncWriteExt;

use super::proto::{self, Status};
use super::{HEADER_TIMEOUT, MAX_CONNS, MAX_INSTANCES, PORT, check_name};
use crate::app::net::Via;
use crate::app::settings::RestartPolicy;
use crate::app::splice::{Counters, splice};
use crate::app::{AppCtx, AppDef, AppFuture, Mode};
use crate::apps::socks5::within;
use crate::crypto::PublicKey;
use crate::http::json::{Fields, JsonError, Ordered, Out, parse_object};
use crate::spawn::Spawn;

/// The app's own overlay port (it dials out and listens on none).
pub const APP_PORT: u16 = 58;

#[derive(FromArgs, Debug)]
/// skynet-client arguments (one forward; without --srv the app starts with none)
struct Args {
    /// the skynet-srv visor's PK
    #[argh(option)]
    srv: Option<String>,
    /// the port exposed there
    #[argh(option)]
    remote: Option<u16>,
    /// the local port to bind (127.0.0.1)
    #[argh(option)]
    local: Option<u16>,
    /// the forward's name (default: the remote port)
    #[argh(option)]
    name: Option<String>,
    /// dial by skynet (default), dmsg or auto
    #[argh(option, default = "String::from(\"skynet\")")]
    via: String,
}

/// One forward's settings.
#[derive(Debug, Clone)]
struct Fwd {
    name: String,
    srv: PublicKey,
    remote: u16,
    local: u16,
    via: Via,
}

fn fwd(srv: &str, remote: u16, local: u16, name: Option<&str>, via: &str) -> Result<Fwd, String> {
    let srv = PublicKey::from_hex(srv).map_err(|e| format!("--pk {srv:?}: {e}"))?;
    if remote == 0 {
        return Err("--remote must be 1-65535".into());
    }
    let name = name.map_or_else(|| format!("fwd-{remote}"), String::from);
    check_name(&name)?;
    let via = match via {
        "skynet" => Via::Skynet,
        "dmsg" => Via::Dmsg,
        "auto" => Via::Auto,
        _ => return Err(format!("--via {via:?}: expected skynet, dmsg or auto")),
    };
    Ok(Fwd {
        name,
        srv,
        remote,
        local,
        via,
    })
}

fn parse_args(args: &[String]) -> Result<Option<Fwd>, String> {
    let a: Args = crate::app::parse_args("skynet-client", args)?;
    match (a.srv, a.remote, a.local) {
        (None, None, None) if a.name.is_none() => Ok(None),
        (Some(s), Some(r), Some(l)) => {
            // The argument is --srv here (--pk in the CLI and the control request).
            PublicKey::from_hex(&s).map_err(|e| format!("--srv {s:?}: {e}"))?;
            fwd(&s, r, l, a.name.as_deref(), &a.via).map(Some)
        }
        _ => Err("--srv, --remote and --local go together".into()),
    }
}

/// The app definition.
pub static DEF: AppDef = AppDef {
    name: "skynet-client",
    summary: "local TCP ports forwarded to skynet-srv exposures ('skywire cli skynet')",
    modes: &[Mode::Visor, Mode::Dmsg, Mode::Tcp],
    port: Some(APP_PORT),
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

#[derive(Default)]
struct Stats {
    active: AtomicU64,
    total: AtomicU64,
    failed: AtomicU64,
    bytes: Counters,
    last_error: Mutex<Option<String>>,
}

struct Inst {
    fwd: Fwd,
    local: std::net::SocketAddr,
    stats: Arc<Stats>,
    _task: Task<()>,
}

struct Mgr {
    ctx: AppCtx,
    list: Mutex<Vec<Inst>>,
}

impl Mgr {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Inst>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn add(&self, f: Fwd) -> Result<Ordered, (u16, String)> {
        {
            let l = self.lock();
            if l.iter().any(|i| i.fwd.name == f.name) {
                return Err((
                    409,
                    format!(
                        "a forward named {:?} is already running; give another --name",
                        f.name
                    ),
                ));
            }
            if l.len() >= MAX_INSTANCES {
                return Err((409, format!("{MAX_INSTANCES} forwards running (the limit)")));
            }
        }
        let lis = TcpListener::bind(("127.0.0.1", f.local))
            .await
            .map_err(|e| {
                (
                    409,
                    format!(
                        "cannot listen on 127.0.0.1:{}: {e}; give another --local",
                        f.local
                    ),
                )
            })?;
        let local = lis.local_addr().map_err(|e| (500, e.to_string()))?;
        let stats = Arc::new(Stats::default());
        let task =
            self.ctx
                .ex
                .spawn_boxed(accept_loop(self.ctx.clone(), f.clone(), stats.clone(), lis));
        log::info!(
            "skynet-client {}: 127.0.0.1:{} -> {}:{} (via {})",
            f.name,
            local.port(),
            f.srv,
            f.remote,
            f.via.as_str()
        );
        let inst = Inst {
            fwd: f,
            local,
            stats,
            _task: task,
        };
        let j = json(&inst);
        self.lock().push(inst);
        self.status();
        Ok(j)
    }

    fn remove(&self, name: Option<&str>) -> Result<Ordered, (u16, String)> {
        let mut l = self.lock();
        let names = l
            .iter()
            .map(|i| i.fwd.name.clone())
            .collect::<Vec<_>>()
            .join(", ");
        let i = match name {
            Some(n) => l.iter().position(|i| i.fwd.name == n).ok_or_else(|| {
                (
                    404,
                    format!(
                        "no forward named {n:?}; running: {}",
                        if names.is_empty() { "none" } else { &names }
                    ),
                )
            })?,
            None if l.len() == 1 => 0,
            None if l.is_empty() => return Err((404, "no forward is running".into())),
            None => {
                return Err((
                    400,
                    format!("several forwards run ({names}); say which with --name"),
                ));
            }
        };
        let inst = l.remove(i);
        drop(l);
        log::info!("skynet-client {}: stopped", inst.fwd.name);
        self.status();
        Ok(Ordered::new().field("stopped", Out::Str(inst.fwd.name.clone())))
    }

    fn status(&self) {
        let l = self.lock();
        let line = if l.is_empty() {
            "no forwards (skywire cli skynet start --pk <pk> --remote <p> --local <l>)".to_string()
        } else {
            l.iter()
                .map(|i| {
                    format!(
                        "{} {} -> {}:{} ({} open)",
                        i.fwd.name,
                        i.local,
                        &i.fwd.srv.to_hex()[..8],
                        i.fwd.remote,
                        i.stats.active.load(Ordering::Relaxed)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        drop(l);
        self.ctx.set_status(line);
    }

    async fn control(&self, body: &str) -> Result<Ordered, (u16, String)> {
        let bad = |e: JsonError| (400, format!("control request: {e}"));
        let obj = parse_object(body).map_err(bad)?;
        let mut f = Fields::new(&obj, "");
        match f.str("op").map_err(bad)? {
            "list" => Ok(Ordered::new().field(
                "items",
                Out::Arr(self.lock().iter().map(|i| Out::Obj(json(i))).collect()),
            )),
            "stop" => {
                let n = f.opt_str("name").map_err(bad)?;
                f.deny_unknown().map_err(bad)?;
                self.remove(n)
            }
            "start" => {
                let need = |v: Option<u64>, k: &str| {
                    v.ok_or((400, format!("control request: {k} is required")))
                };
                let fw = fwd(
                    f.str("pk").map_err(bad)?,
                    need(f.opt_u64("remote", 65_535).map_err(bad)?, "remote")? as u16,
                    need(f.opt_u64("local", 65_535).map_err(bad)?, "local")? as u16,
                    f.opt_str("name").map_err(bad)?,
                    f.opt_str("via").map_err(bad)?.unwrap_or("skynet"),
                )
                .map_err(|e| (400, e))?;
                f.deny_unknown().map_err(bad)?;
                self.add(fw).await
            }
            op => Err((
                400,
                format!("control request: unknown op {op:?} (start, stop, list)"),
            )),
        }
    }
}

fn json(i: &Inst) -> Ordered {
    let s = &i.stats;
    Ordered::new()
        .field("name", Out::Str(i.fwd.name.clone()))
        .field("server", Out::Str(i.fwd.srv.to_hex()))
        .field("remote", Out::U64(i.fwd.remote.into()))
        .field("local", Out::Str(i.local.to_string()))
        .field("via", Out::Str(i.fwd.via.as_str().into()))
        .field("active", Out::U64(s.active.load(Ordering::Relaxed)))
        .field("total", Out::U64(s.total.load(Ordering::Relaxed)))
        .field("failed", Out::U64(s.failed.load(Ordering::Relaxed)))
        .field("bytes_up", Out::U64(s.bytes.a_to_b.load(Ordering::Relaxed)))
        .field(
            "bytes_down",
            Out::U64(s.bytes.b_to_a.load(Ordering::Relaxed)),
        )
        .field(
            "last_error",
            s.last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .map_or(Out::Null, Out::Str),
        )
}

async fn accept_loop(ctx: AppCtx, f: Fwd, stats: Arc<Stats>, lis: TcpListener) {
    loop {
        let tcp = match lis.accept().await {
            Ok((t, _)) => t,
            Err(e) => {
                log::warn!("skynet-client {}: accept: {e}", f.name);
                async_io::Timer::after(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        if stats.active.load(Ordering::Relaxed) >= MAX_CONNS as u64 {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            drop(tcp);
            continue;
        }
        stats.active.fetch_add(1, Ordering::Relaxed);
        stats.total.fetch_add(1, Ordering::Relaxed);
        let (ctx2, f2, st) = (ctx.clone(), f.clone(), stats.clone());
        ctx.ex
            .spawn_boxed(async move {
                future::or(forward(&ctx2, &f2, &st, tcp), ctx2.stopped()).await;
                st.active.fetch_sub(1, Ordering::Relaxed);
            })
            .detach();
    }
}

/// One local connection: dial, header, splice. A refusal closes the local connection; its
/// reason goes to the log and the status.
async fn forward(ctx: &AppCtx, f: &Fwd, st: &Stats, tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    let fail = |why: String| {
        log::info!("skynet-client {}: {}:{}: {why}", f.name, f.srv, f.remote);
        st.failed.fetch_add(1, Ordering::Relaxed);
        *st.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    };
    let mut conn = match within(HEADER_TIMEOUT, ctx.net.dial_via(f.srv, PORT, f.via)).await {
        Some(Ok(c)) => c,
        Some(Err(e)) => return fail(e.to_string()),
        None => return fail("dial timed out".into()),
    };
    let hs = async {
        conn.write_all(&proto::encode_request(f.remote))
            .await
            .map_err(|e| e.to_string())?;
        conn.flush().await.map_err(|e| e.to_string())?;
        super::read_msg(&mut conn, 2 + proto::MAX_REASON, proto::parse_response).await
    };
    match within(HEADER_TIMEOUT, hs).await {
        Some(Ok((Status::Ok, _))) => {
            splice(tcp, conn, Some(&st.bytes)).await;
        }
        Some(Ok((s, why))) => {
            fail(format!("refused: {} ({why})", s.text()));
            let _ = conn.close().await;
        }
        Some(Err(e)) => fail(e),
        None => fail("the server did not answer the forwarding request in time".into()),
    }
}

async fn run(ctx: AppCtx) -> Result<(), String> {
    let first = parse_args(&ctx.args)?;
    let mgr = Arc::new(Mgr {
        ctx: ctx.clone(),
        list: Mutex::new(Vec::new()),
    });
    if let Some(f) = first {
        mgr.add(f).await.map_err(|(_, e)| e)?;
    }
    let m2 = mgr.clone();
    ctx.set_control(Arc::new(move |body: String| {
        let m = m2.clone();
        Box::pin(async move { m.control(&body).await.map(|o| o.to_pretty()) })
    }));
    mgr.status();
    ctx.ready();
    let refresh = async {
        loop {
            async_io::Timer::after(std::time::Duration::from_secs(2)).await;
            mgr.status();
        }
    };
    future::or(refresh, ctx.stopped()).await;
    mgr.lock().clear();
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
        assert!(parse_args(&[]).unwrap().is_none());
        let pk = crate::crypto::Keypair::from_seed(&[5; 32])
            .public()
            .to_hex();
        let f = parse_args(&args(&[
            "--srv", &pk, "--remote", "8080", "--local", "9000",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (f.name.as_str(), f.remote, f.local, f.via),
            ("fwd-8080", 8080, 9000, Via::Skynet)
        );
        for (a, want) in [
            (vec!["--srv", &pk, "--remote", "80"], "go together"),
            (
                vec!["--srv", "zz", "--remote", "80", "--local", "1"],
                "--srv \"zz\"",
            ),
            (
                vec!["--srv", &pk, "--remote", "0", "--local", "1"],
                "--remote",
            ),
            (
                vec!["--srv", &pk, "--remote", "8", "--local", "1", "--via", "x"],
                "--via",
            ),
        ] {
            let e = parse_args(&args(&a)).unwrap_err();
            assert!(e.contains(want), "{a:?}: {e}");
        }
    }
}
