//! skynet-srv: exposes local TCP ports to overlay peers on port 57 (see the parent module).
//! Arguments: `--port P [--name N] [--wl <pk>[,<pk>…]]` (one exposure at launch).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use argh::FromArgs;
use futures_lite::future;
use futures_lite::io::AsyncWriteExt;

use super::proto::{self, Status};
use super::{HEADER_TIMEOUT, MAX_CONNS, MAX_CONNS_PER_PEER, MAX_INSTANCES, PORT, check_name};
use crate::app::conn::Conn;
use crate::app::settings::RestartPolicy;
use crate::app::splice::{Counters, splice};
use crate::app::{AppCtx, AppDef, AppFuture, Mode, is_trusted};
use crate::apps::socks5::within;
use crate::crypto::PublicKey;
use crate::http::json::{Fields, JsonError, Ordered, Out, parse_object};
use crate::spawn::Spawn;

#[derive(FromArgs, Debug)]
/// skynet-srv arguments (one exposure; without --port the app starts with none)
struct Args {
    /// expose 127.0.0.1:<port>
    #[argh(option)]
    port: Option<u16>,
    /// the exposure's name (default: port-<port>)
    #[argh(option)]
    name: Option<String>,
    /// only these PKs, comma-separated (this visor and its hypervisors always are)
    #[argh(option)]
    wl: Option<String>,
}

/// One exposure's settings.
#[derive(Debug, Clone)]
struct Exposure {
    name: String,
    port: u16,
    wl: Vec<PublicKey>,
}

fn exposure(port: u16, name: Option<&str>, wl: Option<&str>) -> Result<Exposure, String> {
    if port == 0 {
        return Err("--port must be 1-65535".into());
    }
    let name = name.map_or_else(|| format!("port-{port}"), String::from);
    check_name(&name)?;
    let wl = match wl {
        None => Vec::new(),
        Some(s) => s
            .split(',')
            .filter(|x| !x.is_empty())
            .map(|x| PublicKey::from_hex(x.trim()).map_err(|e| format!("--wl {x:?}: {e}")))
            .collect::<Result<_, _>>()?,
    };
    Ok(Exposure { name, port, wl })
}

fn parse_args(args: &[String]) -> Result<Option<Exposure>, String> {
    let a: Args = crate::app::parse_args("skynet-srv", args)?;
    match a.port {
        Some(p) => exposure(p, a.name.as_deref(), a.wl.as_deref()).map(Some),
        None if a.name.is_some() || a.wl.is_some() => Err("--name and --wl need --port".into()),
        None => Ok(None),
    }
}

/// The app definition.
pub static DEF: AppDef = AppDef {
    name: "skynet-srv",
    summary: "exposes local TCP ports to overlay peers ('skywire cli skynet srv')",
    modes: &[Mode::Visor, Mode::Dmsg, Mode::Tcp],
    port: Some(PORT),
    depends: &[],
    critical: false,
    autostart: false,
    restart: RestartPolicy::OnFailure,
    tcp_listen: Some(":3057"),
    check_args: |a| parse_args(a).map(|_| ()),
    start,
};

fn start(ctx: AppCtx) -> AppFuture {
    Box::pin(run(ctx))
}

struct Live {
    exp: Exposure,
    served: AtomicU64,
    refused: AtomicU64,
    bytes: Counters,
}

#[derive(Default)]
struct State {
    live: Vec<Arc<Live>>,
    per_peer: HashMap<PublicKey, usize>,
    total: usize,
    /// Requests for ports not exposed, or refused by the limits.
    refused: u64,
}

struct Srv {
    ctx: AppCtx,
    st: Mutex<State>,
}

struct Slot<'a>(&'a Srv, PublicKey);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.total -= 1;
        if let Some(n) = s.per_peer.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                s.per_peer.remove(&self.1);
            }
        }
    }
}

impl Srv {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, e: Exposure) -> Result<Ordered, (u16, String)> {
        let mut s = self.lock();
        if let Some(x) = s
            .live
            .iter()
            .find(|l| l.exp.name == e.name || l.exp.port == e.port)
        {
            return Err((
                409,
                format!(
                    "{:?} already exposes port {}; stop it first",
                    x.exp.name, x.exp.port
                ),
            ));
        }
        if s.live.len() >= MAX_INSTANCES {
            return Err((409, format!("{MAX_INSTANCES} ports exposed (the limit)")));
        }
        log::info!(
            "skynet-srv {}: exposing 127.0.0.1:{} on port {PORT} ({})",
            e.name,
            e.port,
            if e.wl.is_empty() {
                "to every PK".to_string()
            } else {
                format!("{} PK(s)", e.wl.len())
            }
        );
        let l = Arc::new(Live {
            exp: e,
            served: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            bytes: Counters::default(),
        });
        let j = json(&l);
        s.live.push(l);
        drop(s);
        self.status();
        Ok(j)
    }

    fn remove(&self, name: Option<&str>) -> Result<Ordered, (u16, String)> {
        let mut s = self.lock();
        let names = s
            .live
            .iter()
            .map(|l| l.exp.name.clone())
            .collect::<Vec<_>>()
            .join(", ");
        let i = match name {
            Some(n) => s.live.iter().position(|l| l.exp.name == n).ok_or_else(|| {
                (
                    404,
                    format!(
                        "no exposure named {n:?}; exposed: {}",
                        if names.is_empty() { "none" } else { &names }
                    ),
                )
            })?,
            None if s.live.len() == 1 => 0,
            None if s.live.is_empty() => return Err((404, "no port is exposed".into())),
            None => {
                return Err((
                    400,
                    format!("several exposures ({names}); say which with --name"),
                ));
            }
        };
        let l = s.live.remove(i);
        drop(s);
        log::info!("skynet-srv {}: stopped", l.exp.name);
        self.status();
        Ok(Ordered::new().field("stopped", Out::Str(l.exp.name.clone())))
    }

    fn status(&self) {
        let s = self.lock();
        let line = if s.live.is_empty() {
            "no ports exposed (skywire cli skynet srv start --port <p>)".to_string()
        } else {
            let v: Vec<String> = s
                .live
                .iter()
                .map(|l| format!("{} 127.0.0.1:{}", l.exp.name, l.exp.port))
                .collect();
            format!("{}; {} stream(s) open", v.join(", "), s.total)
        };
        drop(s);
        self.ctx.set_status(line);
    }

    fn list(&self) -> Ordered {
        let s = self.lock();
        Ordered::new()
            .field("open", Out::U64(s.total as u64))
            .field("refused", Out::U64(s.refused))
            .field(
                "items",
                Out::Arr(s.live.iter().map(|l| Out::Obj(json(l))).collect()),
            )
    }

    fn control(&self, body: &str) -> Result<Ordered, (u16, String)> {
        let bad = |e: JsonError| (400, format!("control request: {e}"));
        let obj = parse_object(body).map_err(bad)?;
        let mut f = Fields::new(&obj, "");
        match f.str("op").map_err(bad)? {
            "list" => Ok(self.list()),
            "stop" => {
                let n = f.opt_str("name").map_err(bad)?;
                f.deny_unknown().map_err(bad)?;
                self.remove(n)
            }
            "start" => {
                let port = f
                    .opt_u64("port", 65_535)
                    .map_err(bad)?
                    .ok_or((400, "control request: port is required".to_string()))?;
                let e = exposure(
                    port as u16,
                    f.opt_str("name").map_err(bad)?,
                    f.opt_str("wl").map_err(bad)?,
                )
                .map_err(|e| (400, e))?;
                f.deny_unknown().map_err(bad)?;
                self.add(e)
            }
            op => Err((
                400,
                format!("control request: unknown op {op:?} (start, stop, list)"),
            )),
        }
    }

    /// Answers `conn`'s request; the local connection to splice, if granted.
    async fn answer(
        &self,
        conn: &mut Conn,
        peer: PublicKey,
    ) -> Option<(async_net::TcpStream, Arc<Live>)> {
        let port = match within(
            HEADER_TIMEOUT,
            super::read_msg(conn, proto::REQUEST_LEN, proto::parse_request),
        )
        .await
        {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                log::info!("skynet-srv: {peer}: {e}");
                reply(conn, Status::BadRequest, &e).await;
                return None;
            }
            None => return None,
        };
        let live = self
            .lock()
            .live
            .iter()
            .find(|l| l.exp.port == port)
            .cloned();
        let Some(live) = live else {
            self.lock().refused += 1;
            log::info!("skynet-srv: {peer} asked for port {port}, which is not exposed; refused");
            reply(
                conn,
                Status::NotExposed,
                &format!("port {port} is not exposed on this visor"),
            )
            .await;
            return None;
        };
        if !live.exp.wl.is_empty() && !is_trusted(&self.ctx.host, &live.exp.wl, &peer) {
            live.refused.fetch_add(1, Ordering::Relaxed);
            log::info!(
                "skynet-srv {}: {peer} is not whitelisted; refused",
                live.exp.name
            );
            reply(
                conn,
                Status::NotAllowed,
                &format!("port {port} is not exposed to {peer}"),
            )
            .await;
            return None;
        }
        // Bounded too: a local listener with a full backlog would otherwise hold the stream.
        let connect = within(
            HEADER_TIMEOUT,
            async_net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        .unwrap_or_else(|| Err(std::io::ErrorKind::TimedOut.into()));
        match connect {
            Ok(t) => {
                let _ = t.set_nodelay(true);
                reply(conn, Status::Ok, "").await;
                Some((t, live))
            }
            Err(e) => {
                live.refused.fetch_add(1, Ordering::Relaxed);
                let why = format!("127.0.0.1:{port}: {e}");
                log::info!("skynet-srv {}: {peer}: {why}", live.exp.name);
                reply(conn, Status::ConnectFailed, &why).await;
                None
            }
        }
    }
}

fn json(l: &Live) -> Ordered {
    Ordered::new()
        .field("name", Out::Str(l.exp.name.clone()))
        .field("port", Out::U64(l.exp.port.into()))
        .field(
            "whitelist",
            Out::Arr(l.exp.wl.iter().map(|p| Out::Str(p.to_hex())).collect()),
        )
        .field("served", Out::U64(l.served.load(Ordering::Relaxed)))
        .field("refused", Out::U64(l.refused.load(Ordering::Relaxed)))
        .field("bytes_in", Out::U64(l.bytes.a_to_b.load(Ordering::Relaxed)))
        .field(
            "bytes_out",
            Out::U64(l.bytes.b_to_a.load(Ordering::Relaxed)),
        )
}

async fn reply(conn: &mut Conn, st: Status, why: &str) {
    let mut out = Vec::with_capacity(2 + why.len().min(proto::MAX_REASON));
    proto::encode_response(st, why, &mut out);
    let _ = conn.write_all(&out).await;
    let _ = conn.flush().await;
}

async fn run(ctx: AppCtx) -> Result<(), String> {
    let first = parse_args(&ctx.args)?;
    let listener = ctx
        .net
        .listen(PORT)
        .map_err(|e| format!("port {PORT}: {e}"))?;
    let srv = Arc::new(Srv {
        ctx: ctx.clone(),
        st: Mutex::new(State::default()),
    });
    if let Some(e) = first {
        srv.add(e).map_err(|(_, e)| e)?;
    }
    let s2 = srv.clone();
    ctx.set_control(Arc::new(move |body: String| {
        let s = s2.clone();
        Box::pin(async move { s.control(&body).map(|o| o.to_pretty()) })
    }));
    srv.status();
    ctx.ready();
    let serve = async {
        loop {
            let mut conn = listener.accept().await.map_err(|e| e.to_string())?;
            let peer = *conn.peer();
            let over = {
                let mut s = srv.lock();
                let n = s.per_peer.get(&peer).copied().unwrap_or(0);
                if s.total >= MAX_CONNS || n >= MAX_CONNS_PER_PEER {
                    s.refused += 1;
                    true
                } else {
                    s.total += 1;
                    *s.per_peer.entry(peer).or_insert(0) += 1;
                    false
                }
            };
            let me = srv.clone();
            ctx.ex
                .spawn_boxed(async move {
                    if over {
                        reply(
                            &mut conn,
                            Status::Busy,
                            "at the connection limit; try later",
                        )
                        .await;
                        let _ = conn.close().await;
                        return;
                    }
                    let slot = Slot(&me, peer);
                    let work = async {
                        match me.answer(&mut conn, peer).await {
                            Some((tcp, live)) => {
                                live.served.fetch_add(1, Ordering::Relaxed);
                                splice(conn, tcp, Some(&live.bytes)).await;
                            }
                            None => {
                                let _ = conn.close().await;
                            }
                        }
                    };
                    future::or(work, me.ctx.stopped()).await;
                    drop(slot);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_checked() {
        assert!(parse_args(&[]).unwrap().is_none());
        let e = parse_args(&args(&["--port", "8080"])).unwrap().unwrap();
        assert_eq!((e.name.as_str(), e.port), ("port-8080", 8080));
        let pk = crate::crypto::Keypair::from_seed(&[3; 32])
            .public()
            .to_hex();
        let e = parse_args(&args(&["--port", "80", "--wl", &format!("{pk},{pk}")]))
            .unwrap()
            .unwrap();
        assert_eq!(e.wl.len(), 2);
        for (a, want) in [
            (vec!["--port", "0"], "--port"),
            (vec!["--port", "80", "--wl", "zz"], "--wl"),
            (vec!["--port", "80", "--name", "A B"], "name"),
            (vec!["--name", "x"], "need --port"),
        ] {
            let e = parse_args(&args(&a)).unwrap_err();
            assert!(e.contains(want), "{a:?}: {e}");
        }
    }
}
