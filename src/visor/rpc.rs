//! The visor's RPC: HTTP/JSON on `cli_addr` (127.0.0.1:3435 by default). The CLI and the
//! hypervisor use it; it is never served to the overlay. Routes (all JSON):
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/health` | `{"status":"ok","boot":…}` (`boot`: random, new at every start) |
//! | GET | `/v1/info` | identity, version, uptime, network, relays, RSS |
//! | GET | `/v1/ports` | the services registry |
//! | GET | `/v1/apps` | every app (state, port, uptime, restarts, last error) |
//! | GET | `/v1/apps/<name>` | one app, with its tagged connections |
//! | POST | `/v1/apps/<name>/start` | start it (and what it depends on) |
//! | POST | `/v1/apps/<name>/stop[?force=1]` | stop it (critical apps need `force`) |
//! | POST | `/v1/apps/<name>/control` | a JSON request for the running app's control surface; its JSON answer (skysocks-client: `docs/apps.md`) |
//! | POST | `/v1/apps/<name>/settings` | `{"args":[…],"auto_start":b,"route":P}` (any of them): saved to the config's `launcher.apps[]`, taken at the app's next start; the app plus `restart_needed` |
//! | POST | `/v1/apps/<name>/restart[?force=1]` | stop it (and what requires it), start them again (critical apps need `force`) |
//! | GET | `/v1/logs[?since=SEQ][&n=N]` | the visor's last log lines (`crate::logger`): the newest `n` (100, at most 512), or from `since` on; `next` to poll with |
//! | POST | `/v1/shutdown` | 202, then the visor stops as on SIGTERM (exit 0) |
//! | POST | `/v1/restart` | 202, then the visor stops as on SIGTERM and runs itself again (same PID and arguments) |
//! | POST | `/v1/ping/<pk>[?count=N][&route=P]` | dmsgctrl round trips to a peer, or (`route` other than `dmsg`) round trips over a skynet route |
//! | POST | `/v1/dial/<pk>/<port>[?route=P]` + `Upgrade: skywire-stream` | 101, then the connection is a stream to the peer's port, opened by the visor with its identity (by route policy `P`) |
//! | GET | `/v1/whitelist` | `pty.whitelist` |
//! | POST / DELETE | `/v1/whitelist/<pk>` | add / remove a PK (saved to the config file) |
//! | GET | `/v1/transports` | skynet transports |
//! | GET | `/v1/transports/types` | the transport types this visor dials |
//! | POST | `/v1/transports/<pk>[?type=stcp\|dmsg][&persistent=0]` | dial a transport (default: each type in turn) |
//! | DELETE | `/v1/transports/<id>` | close a transport, stop redialing it |
//! | GET | `/v1/routes` | the rule table |
//! | GET | `/v1/routes/drops` | the router's drop counters |
//! | GET | `/v1/groups` | every route group |
//! | GET | `/v1/apps/<name>/routes` | the route groups an app initiates or accepts |
//!
//! The skynet routes answer 501 from a visor built without the `skynet` feature and 503 from
//! one that runs no skynet node (no [`Control`](crate::router::control::Control) handed in).
//!
//! Every route is behind a [`LocalGuard`](crate::http::guard::LocalGuard) (see [`guarded`]):
//! a foreign `Host` or any `Origin` is refused (403), and every route but `/health` needs
//! `Authorization: Bearer <token>` (401), the token being the one in `<state dir>/rpc.token`.
//! `HEAD` is served on every `GET` route; a known path with a method it does not serve is
//! answered 405 with `Allow`. The answer bodies are the types of `crate::rpc` (shared with the
//! CLI and the hypervisor).

use std::sync::Arc;
use std::time::Instant;

use crate::app::launcher::{LaunchError, Launcher, State};
use crate::crypto::PublicKey;
use crate::http::guard::LocalGuard;
use crate::http::json::Ordered;
use crate::http::server::{Handler, Request, Response};
pub use crate::rpc::DIAL_UPGRADE;
use crate::rpc::{self as api, Body, Items};

mod skynet;

mod admin;

use super::config_writer::{ConfigWriter, EditError};
use super::stop::{StopKind, Stopper};
use crate::app::services::Services;

/// What the RPC serves from.
#[derive(Clone)]
pub struct RpcState {
    /// The launcher.
    pub launcher: Launcher,
    /// The services registry (and the dmsg client).
    pub services: Services,
    /// When the visor started.
    pub started: Instant,
    /// Network description for `info` (`embedded`, `joined`, `discovery`).
    pub network: String,
    /// `pk@host:port` of the relay this visor hosts, if any.
    pub hosted_relay: Option<String>,
    /// Discovery URL in use, if any.
    pub discovery: Option<String>,
    /// The RPC address.
    pub rpc_addr: String,
    /// The config file (whitelist edits are saved there).
    pub config_file: std::path::PathBuf,
    /// The `pty.whitelist` the apps see.
    pub whitelist: crate::app::SharedKeys,
    /// Saves whitelist edits (off the executor) and updates `whitelist`.
    pub editor: super::whitelist::WhitelistEditor,
    /// Saves app settings edits (the thread `editor` saves through).
    pub writer: ConfigWriter,
    /// Stops the visor (`/v1/shutdown`, `/v1/restart`).
    pub stopper: Stopper,
    /// This start's random id (`/health`).
    pub boot: String,
    /// The skynet node (`None`: the visor runs none; the routes answer 503).
    #[cfg(feature = "skynet")]
    pub control: Option<Arc<dyn crate::router::control::Control>>,
}

impl std::fmt::Debug for RpcState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("RpcState");
        d.field("rpc_addr", &self.rpc_addr)
            .field("network", &self.network)
            .field("config_file", &self.config_file);
        #[cfg(feature = "skynet")]
        d.field("skynet", &self.control.is_some());
        d.finish_non_exhaustive()
    }
}

/// The RPC handler, unguarded: [`guarded`] is what is served.
pub fn handler(state: Arc<RpcState>) -> Handler {
    Arc::new(move |req: Request| {
        let st = state.clone();
        Box::pin(async move { route(&st, req).await })
    })
}

/// The RPC handler behind the local guard: `Host` must name `served` (or loopback), no
/// `Origin`, and the token on every route but `/health`. `token_file` is named in the 401
/// answer.
pub fn guarded(
    state: Arc<RpcState>,
    served: std::net::SocketAddr,
    token: String,
    token_file: &std::path::Path,
) -> Handler {
    LocalGuard::new(served, Some(token))
        .open_path("/health")
        .hint(format!(
            "the skywire CLI reads it from {} (run it as the visor's user)",
            token_file.display()
        ))
        .wrap(handler(state))
}

/// The methods a known path serves (`HEAD` with every `GET`), for 405 and `Allow`.
fn allowed(segs: &[&str]) -> Option<&'static [&'static str]> {
    const GET: &[&str] = &["GET", "HEAD"];
    Some(match segs {
        ["health"]
        | ["v1", "info" | "ports" | "apps" | "whitelist" | "logs"]
        | ["v1", "apps", _] => GET,
        ["v1", "transports" | "routes" | "groups"]
        | ["v1", "transports", "types"]
        | ["v1", "routes", "drops"]
        | ["v1", "apps", _, "routes"] => GET,
        ["v1", "transports", _] => &["POST", "DELETE"],
        [
            "v1",
            "apps",
            _,
            "start" | "stop" | "control" | "settings" | "restart",
        ]
        | ["v1", "dial", _, _]
        | ["v1", "shutdown" | "restart"] => &["POST"],
        ["v1", "ping", _] => &["GET", "HEAD", "POST"],
        ["v1", "whitelist", _] => &["POST", "DELETE"],
        _ => return None,
    })
}

/// `"zz"` → `"zz" is not a public key (64 hex digits): …` / `… is not a valid public key: not a
/// point on the curve` (the reason is the key parser's).
fn bad_pk(text: &str, e: impl std::fmt::Display) -> Response {
    Response::error(400, format!("{text:?} is {e}"))
}

async fn route(st: &RpcState, req: Request) -> Response {
    let segs: Vec<String> = req.segments().into_iter().map(String::from).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    // The server hands HEAD over as GET (and drops the body).
    let m = req.method.as_str();
    match allowed(&segs) {
        None => return Response::error(404, format!("no route {m} {}", req.path)),
        Some(ms) if !ms.contains(&m) => {
            return Response::error(
                405,
                format!("{} serves {}, not {m}", req.path, ms.join(", ")),
            )
            .with_header("Allow", ms.join(", "));
        }
        Some(_) => {}
    }
    match (m, segs.as_slice()) {
        ("GET", ["health"]) => ok(api::Health {
            status: "ok".into(),
            boot: st.boot.clone(),
        }
        .to_json()),
        ("GET", ["v1", "info"]) => ok(info(st)),
        ("GET", ["v1", "ports"]) => ok(Items(ports(st)).to_json()),
        ("GET", ["v1", "apps"]) => {
            ok(Items(st.launcher.list().iter().map(api::App::from).collect()).to_json())
        }
        ("GET", ["v1", "apps", name]) => match st.launcher.status(name) {
            Ok(a) => {
                let conns = st.launcher.conns().list(Some(name));
                ok(api::App {
                    connections: Some(conns.iter().map(api::Conn::from).collect()),
                    ..api::App::from(&a)
                }
                .to_json())
            }
            Err(e) => launch_err(e),
        },
        ("POST", ["v1", "apps", name, "start"]) => match st.launcher.start(name).await {
            Ok(a) => ok(api::App::from(&a).to_json()),
            Err(e) => launch_err(e),
        },
        ("POST", ["v1", "apps", name, "stop"]) => {
            let force = matches!(req.query_param("force"), Some("1" | "true"));
            match st.launcher.stop(name, force).await {
                Ok(stopped) => ok(api::Stopped { stopped }.to_json()),
                Err(e) => launch_err(e),
            }
        }
        ("POST", ["v1", "apps", name, "restart"]) => {
            let force = matches!(req.query_param("force"), Some("1" | "true"));
            match st.launcher.restart(name, force).await {
                Ok(a) => ok(api::App::from(&a).to_json()),
                Err(e) => launch_err(e),
            }
        }
        ("POST", ["v1", "apps", name, "settings"]) => admin::set_app(st, name, &req).await,
        ("GET", ["v1", "logs"]) => admin::logs(&req),
        ("POST", ["v1", "shutdown"]) => admin::stop(st, StopKind::Shutdown),
        ("POST", ["v1", "restart"]) => admin::stop(st, StopKind::Restart),
        ("POST", ["v1", "apps", name, "control"]) => {
            let body = String::from_utf8_lossy(&req.body).into_owned();
            match st.launcher.control(name, body).await {
                Ok(answer) => Response::json(200, answer),
                Err(e) => launch_err(e),
            }
        }
        ("POST" | "GET", ["v1", "ping", pk]) => {
            let pk = match PublicKey::from_hex(pk) {
                Ok(k) => k,
                Err(e) => return bad_pk(pk, e),
            };
            let count = match req.query_param("count").map(str::parse::<u32>) {
                None => 1,
                Some(Ok(n)) if (1..=100).contains(&n) => n,
                Some(_) => return Response::error(400, "count must be 1-100"),
            };
            let route = match skynet::policy(req.query_param("route")) {
                Ok(r) => r,
                Err(r) => return r,
            };
            let t0 = Instant::now();
            let rtts = match &route {
                Some(r) => skynet::ping(st, pk, r, count).await,
                None => st
                    .services
                    .ping(pk, count)
                    .await
                    .map_err(|e| Response::error(502, e.to_string())),
            };
            match rtts {
                Ok(rtts) => ok(api::Pong {
                    pk: pk.to_hex(),
                    route: route.unwrap_or_else(|| "dmsg".into()),
                    rtt_us: rtts.iter().map(|d| d.as_micros() as u64).collect(),
                    total_ms: t0.elapsed().as_millis() as u64,
                }
                .to_json()),
                Err(r) => r,
            }
        }
        ("POST", ["v1", "dial", pk, port]) => dial(st, &req, pk, port).await,
        ("GET", ["v1", "whitelist"]) => ok(whitelist_json(st)),
        ("POST" | "DELETE", ["v1", "whitelist", pk]) => {
            let pk = match PublicKey::from_hex(pk) {
                Ok(k) => k,
                Err(e) => return bad_pk(pk, e),
            };
            match st.editor.edit(pk, m == "POST").await {
                Ok(()) => ok(whitelist_json(st)),
                Err(e) => edit_err(e),
            }
        }
        (_, ["v1", "transports" | "routes" | "groups", ..])
        | ("GET", ["v1", "apps", _, "routes"]) => skynet::route(st, &req, &segs).await,
        _ => Response::error(500, format!("{m} {}: route table out of step", req.path)),
    }
}

/// Opens a stream from the visor to `pk`:`port` and hands the RPC connection over to it
/// (HTTP upgrade), so local tools use the visor's identity and network without a dmsg
/// client of their own (a second client with the visor's key would fight it for its relay
/// sessions). Errors before the stream is open are ordinary JSON answers.
async fn dial(st: &RpcState, req: &Request, pk: &str, port: &str) -> Response {
    let pk = match PublicKey::from_hex(pk) {
        Ok(k) => k,
        Err(e) => return bad_pk(pk, e),
    };
    let Some(port) = Some(port)
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|p| p.parse::<u16>().ok())
    else {
        return Response::error(400, format!("{port:?} is not a port (0-65535)"));
    };
    if !req
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case(DIAL_UPGRADE))
    {
        return Response::error(400, format!("send Upgrade: {DIAL_UPGRADE}"));
    }
    // By the route policy asked for (`auto`, the visor's default, when none).
    #[cfg(feature = "skynet")]
    let dialed = {
        let route = req.query_param("route").unwrap_or("auto");
        match route.parse::<crate::router::policy::RoutePolicy>() {
            Ok(p) => st.services.dial_by(pk, port, &p, "cli", &[]).await,
            Err(e) => return Response::error(400, format!("route {route:?}: {e}")),
        }
    };
    #[cfg(not(feature = "skynet"))]
    let dialed = match skynet::policy(req.query_param("route")) {
        Ok(_) => st.services.dial(pk, port).await,
        Err(r) => return r,
    };
    let conn = match dialed {
        Ok(c) => st.launcher.conns().adopt(c, "cli"),
        Err(e) => return Response::error(502, e.to_string()),
    };
    Response::switching(
        DIAL_UPGRADE,
        Box::new(move |tcp| {
            Box::pin(async move {
                let _ = tcp.set_nodelay(true);
                crate::app::net::pipe(tcp, conn).await;
            })
        }),
    )
}

fn whitelist_json(st: &RpcState) -> Ordered {
    api::Whitelist {
        whitelist: st.whitelist.get().iter().map(|p| p.to_hex()).collect(),
        config: st.config_file.display().to_string(),
    }
    .to_json()
}

fn ok(o: Ordered) -> Response {
    Response::json(200, o.to_pretty() + "\n")
}

fn edit_err(e: EditError) -> Response {
    let status = match &e {
        EditError::Invalid(_) => 400,
        EditError::Full => 409,
        EditError::Busy => 503,
        EditError::Failed(_) => 500,
    };
    Response::error(status, e.to_string())
}

fn launch_err(e: LaunchError) -> Response {
    let status = match &e {
        LaunchError::Invalid(_) => 400,
        LaunchError::Unknown(_) => 404,
        LaunchError::Critical(_) => 403,
        LaunchError::Blocked(..) | LaunchError::Failed(..) => 409,
        LaunchError::ShuttingDown => 503,
        LaunchError::NotRunning(..) => 409,
        LaunchError::NoControl(_) => 501,
        LaunchError::Control(status, _) => *status,
    };
    Response::error(status, e.to_string())
}

fn info(st: &RpcState) -> Ordered {
    let dmsg = st.services.dmsg();
    let apps = st.launcher.list();
    api::Info {
        pk: dmsg.pk().to_hex(),
        version: crate::VERSION.into(),
        uptime_secs: st.started.elapsed().as_secs(),
        rpc_addr: st.rpc_addr.clone(),
        network: st.network.clone(),
        hosted_relay: st.hosted_relay.clone().unwrap_or_default(),
        discovery: st.discovery.clone().unwrap_or_default(),
        relays: dmsg.relays().iter().map(|p| p.to_hex()).collect(),
        apps: apps.len() as u64,
        apps_running: apps.iter().filter(|a| a.state == State::Running).count() as u64,
        rss_kib: crate::app::proc_kib("/proc/self/status", "VmRSS:"),
        label: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().chars().take(64).collect())
            .unwrap_or_default(),
    }
    .to_json()
}

fn ports(st: &RpcState) -> Vec<api::Port> {
    st.services
        .list()
        .into_iter()
        .map(|s| api::Port {
            port: s.port.into(),
            owner: s.owner,
            network: s.network.into(),
            since_secs: s.since.elapsed().as_secs(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::allowed;

    /// The skynet routes are known paths (so a wrong method is 405 with `Allow`, in every
    /// build: one without skynet answers them 501) and do not shadow the older ones.
    #[test]
    fn skynet_paths_and_their_methods() {
        let get: &[&str] = &["GET", "HEAD"];
        for p in [
            &["v1", "transports"][..],
            &["v1", "transports", "types"],
            &["v1", "routes"],
            &["v1", "routes", "drops"],
            &["v1", "groups"],
            &["v1", "apps", "pty", "routes"],
        ] {
            assert_eq!(allowed(p), Some(get), "{p:?}");
        }
        assert_eq!(
            allowed(&["v1", "transports", "ab"]),
            Some(&["POST", "DELETE"][..])
        );
        assert_eq!(
            allowed(&["v1", "apps", "pty", "start"]),
            Some(&["POST"][..])
        );
        assert_eq!(allowed(&["v1", "apps", "pty"]), Some(get));
        assert_eq!(allowed(&["v1", "routes", "x"]), None);
        for p in [
            &["v1", "apps", "pty", "settings"][..],
            &["v1", "apps", "pty", "restart"],
            &["v1", "shutdown"],
            &["v1", "restart"],
        ] {
            assert_eq!(allowed(p), Some(&["POST"][..]), "{p:?}");
        }
        assert_eq!(allowed(&["v1", "logs"]), Some(get));
        assert_eq!(allowed(&["v1", "logs", "x"]), None);
        assert_eq!(allowed(&["v1", "transports", "a", "b"]), None);
    }
}
