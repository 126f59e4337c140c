//! The visor's RPC, typed: the requests ([`Request`]: method, path, timeout) and the JSON
//! bodies of the answers, in one place for the server (`visor::rpc`), the CLI and the
//! hypervisor, with the client in [`client`]. The wire is HTTP/JSON as `docs/cli.md` and
//! `visor::rpc` describe it: each body type writes the fields in the order the visor has
//! always sent them ([`Body::to_json`]) and reads them back by name ([`Body::read`], which
//! ignores fields it does not know, so an older CLI reads a newer visor's answer).
//!
//! Errors are `{"error": "…"}` with a 4xx/5xx status (see [`client::RpcError`]).

mod admin;
pub mod client;
#[cfg(feature = "skynet")]
pub mod skynet;

use std::borrow::Cow;
use std::time::Duration;

use miniserde::json::{Object, Value};

use crate::app::DepKind;
use crate::app::conn::{ConnRow, Direction};
use crate::app::launcher::{AppStatus, State};
use crate::crypto::PublicKey;
use crate::http::json::{Fields, JsonError, Ordered, Out, kind, str_array};

pub use admin::{
    AppSettings, AppSettingsSaved, Health, LOGS_DEFAULT, LOGS_MAX, LogLine, Logs, MAX_APP_ARGS,
    MAX_APP_ARGS_BYTES, Status,
};

/// The protocol name of the dial upgrade (`POST /v1/dial/<pk>/<port>`).
pub const DIAL_UPGRADE: &str = "skywire-stream";

/// One RPC call (every route but the dial upgrade, which [`dial_path`] names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `GET /health` → [`Health`].
    Health,
    /// `GET /v1/info` → [`Info`].
    Info,
    /// `GET /v1/ports` → items of [`Port`].
    Ports,
    /// `GET /v1/apps` → items of [`App`].
    Apps,
    /// `GET /v1/apps/<name>` → [`App`] with its connections.
    App(String),
    /// `POST /v1/apps/<name>/start` → [`App`].
    Start(String),
    /// `POST /v1/apps/<name>/stop[?force=1]` → [`Stopped`].
    Stop {
        /// The app.
        name: String,
        /// Stop it even if it is critical.
        force: bool,
    },
    /// `POST /v1/ping/<pk>?count=N[&route=P]` → [`Pong`].
    Ping {
        /// The peer, as given (hex).
        pk: String,
        /// Round trips (1-100).
        count: u32,
        /// A route policy: round trips over a skynet route (`None`, or `dmsg`: dmsgctrl).
        route: Option<String>,
    },
    /// `GET /v1/whitelist` → [`Whitelist`].
    Whitelist,
    /// `POST /v1/whitelist/<pk>` (add) or `DELETE` (remove) → [`Whitelist`].
    WhitelistEdit {
        /// The PK, as given (hex).
        pk: String,
        /// Add (else remove).
        add: bool,
    },
    /// `GET /v1/transports` → items of `skynet::TpView`.
    Transports,
    /// `GET /v1/transports/types` → `skynet::TpTypes`.
    TpTypes,
    /// `POST /v1/transports/<pk>[?type=T][&persistent=0]` → `skynet::TpView`.
    TpAdd {
        /// The peer, as given (hex).
        pk: String,
        /// `stcp` or `dmsg` (`None`: the visor's choice, stcp if it knows an address).
        kind: Option<String>,
        /// Redial it when it drops.
        persistent: bool,
    },
    /// `DELETE /v1/transports/<id>` → `skynet::Removed`.
    TpRm(String),
    /// `GET /v1/routes` → items of `skynet::RuleInfo`.
    Routes,
    /// `GET /v1/routes/drops` → `skynet::Drops`.
    Drops,
    /// `GET /v1/groups` (every route group) or `GET /v1/apps/<name>/routes` (one app's) →
    /// items of `skynet::GroupView`.
    Groups(Option<String>),
    /// `POST /v1/apps/<name>/control` with a JSON body → the app's JSON answer.
    Control {
        /// The app.
        app: String,
        /// The request body (JSON, the app's own vocabulary).
        body: String,
    },
    /// `GET /v1/logs[?since=SEQ][&n=N]` → [`Logs`].
    Logs {
        /// The oldest line wanted (a poller passes the last answer's `next`); `None`: the
        /// newest lines.
        since: Option<u64>,
        /// How many lines at most (1-[`LOGS_MAX`]; `None`: [`LOGS_DEFAULT`]).
        n: Option<u32>,
    },
    /// `POST /v1/apps/<name>/settings` with [`AppSettings`] → [`AppSettingsSaved`].
    SetApp {
        /// The app.
        name: String,
        /// What to change.
        settings: AppSettings,
    },
    /// `POST /v1/apps/<name>/restart[?force=1]` → [`App`].
    RestartApp {
        /// The app.
        name: String,
        /// Restart it even if it is critical.
        force: bool,
    },
    /// `POST /v1/shutdown` → 202 [`Status`] `shutting down`; then the visor stops.
    Shutdown,
    /// `POST /v1/restart` → 202 [`Status`] `restarting`; then the visor stops and runs again.
    Restart,
}

impl Request {
    /// The HTTP method.
    pub fn method(&self) -> &'static str {
        match self {
            Request::Start(_)
            | Request::Stop { .. }
            | Request::Ping { .. }
            | Request::TpAdd { .. }
            | Request::Control { .. }
            | Request::SetApp { .. }
            | Request::RestartApp { .. }
            | Request::Shutdown
            | Request::Restart => "POST",
            Request::WhitelistEdit { add: true, .. } => "POST",
            Request::WhitelistEdit { add: false, .. } | Request::TpRm(_) => "DELETE",
            _ => "GET",
        }
    }

    /// The path, with its query.
    pub fn path(&self) -> String {
        match self {
            Request::Health => "/health".into(),
            Request::Info => "/v1/info".into(),
            Request::Ports => "/v1/ports".into(),
            Request::Apps => "/v1/apps".into(),
            Request::App(n) => format!("/v1/apps/{n}"),
            Request::Start(n) => format!("/v1/apps/{n}/start"),
            Request::Stop { name, force } => {
                format!(
                    "/v1/apps/{name}/stop{}",
                    if *force { "?force=1" } else { "" }
                )
            }
            Request::Ping { pk, count, route } => match route {
                Some(r) => format!("/v1/ping/{pk}?count={count}&route={r}"),
                None => format!("/v1/ping/{pk}?count={count}"),
            },
            Request::Whitelist => "/v1/whitelist".into(),
            Request::WhitelistEdit { pk, .. } => format!("/v1/whitelist/{pk}"),
            Request::Transports => "/v1/transports".into(),
            Request::TpTypes => "/v1/transports/types".into(),
            Request::TpAdd {
                pk,
                kind,
                persistent,
            } => {
                let mut q = Vec::new();
                if let Some(k) = kind {
                    q.push(format!("type={k}"));
                }
                if !persistent {
                    q.push("persistent=0".into());
                }
                let q = if q.is_empty() {
                    String::new()
                } else {
                    format!("?{}", q.join("&"))
                };
                format!("/v1/transports/{pk}{q}")
            }
            Request::TpRm(id) => format!("/v1/transports/{id}"),
            Request::Routes => "/v1/routes".into(),
            Request::Drops => "/v1/routes/drops".into(),
            Request::Groups(None) => "/v1/groups".into(),
            Request::Groups(Some(app)) => format!("/v1/apps/{app}/routes"),
            Request::Control { app, .. } => format!("/v1/apps/{app}/control"),
            Request::Logs { since, n } => {
                let q: Vec<String> = since
                    .map(|s| format!("since={s}"))
                    .into_iter()
                    .chain(n.map(|n| format!("n={n}")))
                    .collect();
                if q.is_empty() {
                    "/v1/logs".into()
                } else {
                    format!("/v1/logs?{}", q.join("&"))
                }
            }
            Request::SetApp { name, .. } => format!("/v1/apps/{name}/settings"),
            Request::RestartApp { name, force } => format!(
                "/v1/apps/{name}/restart{}",
                if *force { "?force=1" } else { "" }
            ),
            Request::Shutdown => "/v1/shutdown".into(),
            Request::Restart => "/v1/restart".into(),
        }
    }

    /// The request body (empty but for [`Request::Control`] and [`Request::SetApp`]).
    pub fn body(&self) -> Cow<'_, [u8]> {
        match self {
            Request::Control { body, .. } => Cow::Borrowed(body.as_bytes()),
            Request::SetApp { settings, .. } => {
                Cow::Owned(settings.to_json().to_compact().into_bytes())
            }
            _ => Cow::Borrowed(b""),
        }
    }

    /// How long the answer may take: pings, transport dials and app starts wait on the
    /// network or the app.
    pub fn timeout(&self) -> Duration {
        match self {
            Request::Ping { .. }
            | Request::Start(_)
            | Request::RestartApp { .. }
            | Request::TpAdd { .. }
            | Request::Control { .. } => Duration::from_secs(30),
            _ => Duration::from_secs(10),
        }
    }
}

/// The path of the dial upgrade to `pk`:`port`, with the route policy to dial by (the
/// visor's default, `auto`, when `None`).
pub fn dial_path(pk: &PublicKey, port: u16, route: Option<&str>) -> String {
    match route {
        Some(r) => format!("/v1/dial/{pk}/{port}?route={r}"),
        None => format!("/v1/dial/{pk}/{port}"),
    }
}

/// A JSON answer body.
pub trait Body: Sized {
    /// The body as the visor sends it (field order kept).
    fn to_json(&self) -> Ordered;
    /// Reads the body's fields (unknown ones are ignored).
    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError>;

    /// [`Body::read`] of a whole object.
    fn from_object(o: &Object) -> Result<Self, JsonError> {
        Self::read(&mut Fields::new(o, ""))
    }
}

/// A list answer, `{"items": […]}` (`Ports`, `Apps`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Items<T>(pub Vec<T>);

impl<T: Body> Body for Items<T> {
    fn to_json(&self) -> Ordered {
        Ordered::new().field(
            "items",
            Out::Arr(self.0.iter().map(|i| Out::Obj(i.to_json())).collect()),
        )
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        objects(f, "items").map(Items)
    }
}

fn objects<T: Body>(f: &mut Fields<'_>, key: &'static str) -> Result<Vec<T>, JsonError> {
    f.opt_array(key)?
        .into_iter()
        .map(|(path, v)| match v {
            Value::Object(o) => T::read(&mut Fields::new(o, path)),
            other => Err(JsonError {
                path,
                msg: format!("expected an object, got {}", kind(other)),
            }),
        })
        .collect()
}

fn num(f: &mut Fields<'_>, k: &'static str) -> Result<u64, JsonError> {
    f.opt_u64(k, u64::MAX)?
        .ok_or_else(|| f.err(k, "missing (required)"))
}

fn text(f: &mut Fields<'_>, k: &'static str) -> Result<String, JsonError> {
    f.str(k).map(String::from)
}

fn texts(f: &mut Fields<'_>, k: &'static str) -> Result<Vec<String>, JsonError> {
    Ok(f.opt_str_array(k)?
        .into_iter()
        .map(|(_, s)| s.to_string())
        .collect())
}

fn flag(f: &mut Fields<'_>, k: &'static str) -> Result<bool, JsonError> {
    Ok(f.opt_bool(k)?.unwrap_or(false))
}

/// `GET /v1/info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The visor's PK (hex).
    pub pk: String,
    /// Its version.
    pub version: String,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// The RPC address.
    pub rpc_addr: String,
    /// `embedded`, `joined` or `discovery`.
    pub network: String,
    /// `pk@host:port` of the relay it hosts ("" for none).
    pub hosted_relay: String,
    /// The discovery URL in use ("" for none).
    pub discovery: String,
    /// The relays it has sessions with (hex PKs).
    pub relays: Vec<String>,
    /// Apps compiled in.
    pub apps: u64,
    /// Apps running.
    pub apps_running: u64,
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// The board's label: its hostname ("" when it has none; absent from older visors).
    pub label: String,
}

impl Body for Info {
    fn to_json(&self) -> Ordered {
        Ordered::new()
            .field("pk", Out::Str(self.pk.clone()))
            .field("version", Out::Str(self.version.clone()))
            .field("uptime_secs", Out::U64(self.uptime_secs))
            .field("rpc_addr", Out::Str(self.rpc_addr.clone()))
            .field("network", Out::Str(self.network.clone()))
            .field("hosted_relay", Out::Str(self.hosted_relay.clone()))
            .field("discovery", Out::Str(self.discovery.clone()))
            .field("relays", str_array(self.relays.iter().cloned()))
            .field("apps", Out::U64(self.apps))
            .field("apps_running", Out::U64(self.apps_running))
            .field("rss_kib", Out::U64(self.rss_kib))
            .field("label", Out::Str(self.label.clone()))
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        Ok(Info {
            pk: text(f, "pk")?,
            version: text(f, "version")?,
            uptime_secs: num(f, "uptime_secs")?,
            rpc_addr: text(f, "rpc_addr")?,
            network: text(f, "network")?,
            hosted_relay: text(f, "hosted_relay")?,
            discovery: text(f, "discovery")?,
            relays: texts(f, "relays")?,
            apps: num(f, "apps")?,
            apps_running: num(f, "apps_running")?,
            rss_kib: num(f, "rss_kib")?,
            label: f.opt_str("label")?.unwrap_or_default().to_string(),
        })
    }
}

/// One row of `GET /v1/ports`: an overlay port this visor serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The port.
    pub port: u64,
    /// Who serves it.
    pub owner: String,
    /// On which network.
    pub network: String,
    /// Seconds since it was bound.
    pub since_secs: u64,
}

impl Body for Port {
    fn to_json(&self) -> Ordered {
        Ordered::new()
            .field("port", Out::U64(self.port))
            .field("owner", Out::Str(self.owner.clone()))
            .field("network", Out::Str(self.network.clone()))
            .field("since_secs", Out::U64(self.since_secs))
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        Ok(Port {
            port: num(f, "port")?,
            owner: text(f, "owner")?,
            network: text(f, "network")?,
            since_secs: num(f, "since_secs")?,
        })
    }
}

/// One app (`GET /v1/apps` rows, `GET /v1/apps/<name>` with `connections`, and the answer
/// of `start`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Name.
    pub name: String,
    /// `visor` (the only mode the RPC reports).
    pub mode: String,
    /// `running`, `stopped`, …
    pub state: String,
    /// Overlay port ("" for none).
    pub port: String,
    /// Seconds running (0 unless running).
    pub uptime_secs: u64,
    /// Times restarted by policy.
    pub restarts: u64,
    /// The last failure ("" for none).
    pub last_error: String,
    /// The app's own status line.
    pub detail: String,
    /// Its start wave, from 1.
    pub wave: u64,
    /// Start order (0 = never started).
    pub start_seq: u64,
    /// `never`, `on-failure`, `always`.
    pub restart_policy: String,
    /// Starts with the visor.
    pub auto_start: bool,
    /// Stopping it needs force.
    pub critical: bool,
    /// Apps it requires.
    pub requires: Vec<String>,
    /// Apps it wants.
    pub wants: Vec<String>,
    /// One line about it.
    pub summary: String,
    /// The arguments it is (next) started with.
    pub args: Vec<String>,
    /// The route policy its dials take ("" from a build without skynet).
    pub route: String,
    /// Its tagged connections (`GET /v1/apps/<name>` only).
    pub connections: Option<Vec<Conn>>,
}

impl From<&AppStatus> for App {
    fn from(a: &AppStatus) -> App {
        let deps = |k: DepKind| {
            a.deps
                .iter()
                .filter(|d| d.kind == k)
                .map(|d| d.name.clone())
                .collect()
        };
        let running = a.state == State::Running;
        App {
            name: a.name.into(),
            mode: "visor".into(),
            state: a.state.as_str().into(),
            port: a.port.map(|p| p.to_string()).unwrap_or_default(),
            uptime_secs: if running { a.since_secs } else { 0 },
            restarts: a.restarts.into(),
            last_error: a.last_error.clone().unwrap_or_default(),
            detail: a.detail.clone(),
            wave: a.wave as u64 + 1,
            start_seq: a.start_seq,
            restart_policy: a.policy.as_str().into(),
            auto_start: a.auto_start,
            critical: a.critical,
            requires: deps(DepKind::Requires),
            wants: deps(DepKind::Wants),
            summary: a.summary.into(),
            args: a.args.clone(),
            #[cfg(feature = "skynet")]
            route: a.route.to_string(),
            #[cfg(not(feature = "skynet"))]
            route: String::new(),
            connections: None,
        }
    }
}

impl Body for App {
    fn to_json(&self) -> Ordered {
        let o = Ordered::new()
            .field("name", Out::Str(self.name.clone()))
            .field("mode", Out::Str(self.mode.clone()))
            .field("state", Out::Str(self.state.clone()))
            .field("port", Out::Str(self.port.clone()))
            .field("uptime_secs", Out::U64(self.uptime_secs))
            .field("restarts", Out::U64(self.restarts))
            .field("last_error", Out::Str(self.last_error.clone()))
            .field("detail", Out::Str(self.detail.clone()))
            .field("wave", Out::U64(self.wave))
            .field("start_seq", Out::U64(self.start_seq))
            .field("restart_policy", Out::Str(self.restart_policy.clone()))
            .field("auto_start", Out::Bool(self.auto_start))
            .field("critical", Out::Bool(self.critical))
            .field("requires", str_array(self.requires.iter().cloned()))
            .field("wants", str_array(self.wants.iter().cloned()))
            .field("summary", Out::Str(self.summary.clone()))
            .field("args", str_array(self.args.iter().cloned()))
            .field("route", Out::Str(self.route.clone()));
        match &self.connections {
            Some(c) => o.field(
                "connections",
                Out::Arr(c.iter().map(|c| Out::Obj(c.to_json())).collect()),
            ),
            None => o,
        }
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        Ok(App {
            name: text(f, "name")?,
            mode: text(f, "mode")?,
            state: text(f, "state")?,
            port: text(f, "port")?,
            uptime_secs: num(f, "uptime_secs")?,
            restarts: num(f, "restarts")?,
            last_error: text(f, "last_error")?,
            detail: text(f, "detail")?,
            wave: num(f, "wave")?,
            start_seq: num(f, "start_seq")?,
            restart_policy: text(f, "restart_policy")?,
            auto_start: flag(f, "auto_start")?,
            critical: flag(f, "critical")?,
            requires: texts(f, "requires")?,
            wants: texts(f, "wants")?,
            summary: text(f, "summary")?,
            // Visors from before settings edits send neither.
            args: texts(f, "args")?,
            route: f.opt_str("route")?.unwrap_or_default().to_string(),
            connections: Some(objects(f, "connections")?),
        })
    }

    /// `connections` is `None` when the answer has no such field (app rows, `start`).
    fn from_object(o: &Object) -> Result<Self, JsonError> {
        let mut a = Self::read(&mut Fields::new(o, ""))?;
        if !o.contains_key("connections") {
            a.connections = None;
        }
        Ok(a)
    }
}

/// One tagged connection of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conn {
    /// The peer (hex).
    pub peer: String,
    /// The peer's port.
    pub remote_port: u64,
    /// Our port.
    pub local_port: u64,
    /// `dmsg` or `tcp`.
    pub network: String,
    /// `in` or `out`.
    pub direction: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Seconds open.
    pub age_secs: u64,
}

impl From<&ConnRow> for Conn {
    fn from(c: &ConnRow) -> Conn {
        Conn {
            peer: c.peer.to_hex(),
            remote_port: c.remote_port.into(),
            local_port: c.local_port.into(),
            network: c.network.into(),
            direction: match c.direction {
                Direction::In => "in",
                Direction::Out => "out",
            }
            .into(),
            rx_bytes: c.rx,
            tx_bytes: c.tx,
            age_secs: c.age_secs,
        }
    }
}

impl Body for Conn {
    fn to_json(&self) -> Ordered {
        Ordered::new()
            .field("peer", Out::Str(self.peer.clone()))
            .field("remote_port", Out::U64(self.remote_port))
            .field("local_port", Out::U64(self.local_port))
            .field("network", Out::Str(self.network.clone()))
            .field("direction", Out::Str(self.direction.clone()))
            .field("rx_bytes", Out::U64(self.rx_bytes))
            .field("tx_bytes", Out::U64(self.tx_bytes))
            .field("age_secs", Out::U64(self.age_secs))
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        Ok(Conn {
            peer: text(f, "peer")?,
            remote_port: num(f, "remote_port")?,
            local_port: num(f, "local_port")?,
            network: text(f, "network")?,
            direction: text(f, "direction")?,
            rx_bytes: num(f, "rx_bytes")?,
            tx_bytes: num(f, "tx_bytes")?,
            age_secs: num(f, "age_secs")?,
        })
    }
}

/// `POST /v1/apps/<name>/stop`: the apps stopped (it and what requires it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Their names.
    pub stopped: Vec<String>,
}

impl Body for Stopped {
    fn to_json(&self) -> Ordered {
        Ordered::new().field("stopped", str_array(self.stopped.iter().cloned()))
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        Ok(Stopped {
            stopped: texts(f, "stopped")?,
        })
    }
}

/// `POST /v1/ping/<pk>`: dmsgctrl round trips, or round trips over a skynet route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pong {
    /// The peer (hex).
    pub pk: String,
    /// `dmsg` (dmsgctrl), else the route policy the round trips took.
    pub route: String,
    /// Each round trip, µs.
    pub rtt_us: Vec<u64>,
    /// The whole call, ms.
    pub total_ms: u64,
}

impl Body for Pong {
    fn to_json(&self) -> Ordered {
        Ordered::new()
            .field("pk", Out::Str(self.pk.clone()))
            .field(
                "rtt_us",
                Out::Arr(self.rtt_us.iter().map(|r| Out::U64(*r)).collect()),
            )
            .field("total_ms", Out::U64(self.total_ms))
            .field("route", Out::Str(self.route.clone()))
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        let rtt_us = f
            .opt_array("rtt_us")?
            .into_iter()
            .map(|(path, v)| match v {
                Value::Number(miniserde::json::Number::U64(n)) => Ok(*n),
                other => Err(JsonError {
                    path,
                    msg: format!("expected a number of µs, got {}", kind(other)),
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Pong {
            pk: text(f, "pk")?,
            // Visors from before skynet ping over dmsg only.
            route: f.opt_str("route")?.unwrap_or("dmsg").to_string(),
            rtt_us,
            total_ms: num(f, "total_ms")?,
        })
    }
}

/// `GET|POST|DELETE /v1/whitelist…`: `pty.whitelist` and the file it is saved in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whitelist {
    /// The PKs (hex).
    pub whitelist: Vec<String>,
    /// The config file.
    pub config: String,
}

impl Body for Whitelist {
    fn to_json(&self) -> Ordered {
        Ordered::new()
            .field("whitelist", str_array(self.whitelist.iter().cloned()))
            .field("config", Out::Str(self.config.clone()))
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        Ok(Whitelist {
            whitelist: texts(f, "whitelist")?,
            config: text(f, "config")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::json::parse_object;

    fn round_trip<T: Body + PartialEq + std::fmt::Debug>(v: T) {
        let text = v.to_json().to_pretty();
        let back = T::from_object(&parse_object(&text).unwrap()).unwrap();
        assert_eq!(back, v, "{text}");
    }

    fn app() -> App {
        App {
            name: "pty".into(),
            mode: "visor".into(),
            state: "running".into(),
            port: "22".into(),
            uptime_secs: 5,
            restarts: 1,
            last_error: String::new(),
            detail: "2 sessions".into(),
            wave: 2,
            start_seq: 3,
            restart_policy: "on-failure".into(),
            auto_start: true,
            critical: true,
            requires: vec!["logserver".into()],
            wants: Vec::new(),
            summary: "remote shell".into(),
            args: vec!["--x".into()],
            route: "auto".into(),
            connections: None,
        }
    }

    #[test]
    fn bodies_round_trip() {
        round_trip(app());
        round_trip(App {
            connections: Some(Vec::new()),
            ..app()
        });
        round_trip(App {
            connections: Some(vec![Conn {
                peer: "ab".into(),
                remote_port: 1,
                local_port: 2,
                network: "dmsg".into(),
                direction: "in".into(),
                rx_bytes: 3,
                tx_bytes: 4,
                age_secs: 5,
            }]),
            ..app()
        });
        round_trip(Pong {
            pk: "ab".into(),
            route: "hops:2".into(),
            rtt_us: vec![1, 2],
            total_ms: 3,
        });
        round_trip(Stopped {
            stopped: vec!["a".into(), "b".into()],
        });
        let ports = vec![Port {
            port: 7,
            owner: "dmsgctrl".into(),
            network: "dmsg".into(),
            since_secs: 9,
        }];
        round_trip(Items(ports));
    }

    /// The wire form is the one docs/cli.md shows: field names and order, ports as strings
    /// in app rows, numbers as numbers.
    #[test]
    fn app_json_keeps_its_wire_form() {
        assert_eq!(
            app().to_json().to_compact(),
            r#"{"name":"pty","mode":"visor","state":"running","port":"22","uptime_secs":5,"restarts":1,"last_error":"","detail":"2 sessions","wave":2,"start_seq":3,"restart_policy":"on-failure","auto_start":true,"critical":true,"requires":["logserver"],"wants":[],"summary":"remote shell","args":["--x"],"route":"auto"}"#
        );
    }

    #[test]
    fn missing_and_wrong_fields_are_named() {
        let o = parse_object(r#"{"pk":"ab","rtt_us":[1,"x"],"total_ms":3}"#).unwrap();
        assert_eq!(
            Pong::from_object(&o).unwrap_err().to_string(),
            "field `rtt_us[1]`: expected a number of µs, got a string"
        );
        let o = parse_object(r#"{"stopped":["a"],"extra":1}"#).unwrap();
        assert_eq!(Stopped::from_object(&o).unwrap().stopped, vec!["a"]);
        let o = parse_object(r#"{"whitelist":[]}"#).unwrap();
        assert!(
            Whitelist::from_object(&o)
                .unwrap_err()
                .to_string()
                .contains("`config`: missing")
        );
    }

    #[test]
    fn requests_name_their_routes() {
        let stop = Request::Stop {
            name: "pty".into(),
            force: true,
        };
        assert_eq!(
            (stop.method(), stop.path()),
            ("POST", "/v1/apps/pty/stop?force=1".into())
        );
        let rm = Request::WhitelistEdit {
            pk: "ab".into(),
            add: false,
        };
        assert_eq!(
            (rm.method(), rm.path()),
            ("DELETE", "/v1/whitelist/ab".into())
        );
        assert_eq!(Request::Info.method(), "GET");
        assert!(Request::Start("x".into()).timeout() > Request::Apps.timeout());
        let logs = |since, n| Request::Logs { since, n }.path();
        assert_eq!(logs(None, None), "/v1/logs");
        assert_eq!(logs(Some(7), Some(5)), "/v1/logs?since=7&n=5");
        assert_eq!(logs(None, Some(5)), "/v1/logs?n=5");
        let set = Request::SetApp {
            name: "pty".into(),
            settings: AppSettings {
                args: Some(Vec::new()),
                auto_start: Some(false),
                route: None,
            },
        };
        assert_eq!(
            (set.method(), set.path()),
            ("POST", "/v1/apps/pty/settings".into())
        );
        assert_eq!(&*set.body(), br#"{"args":[],"auto_start":false}"#);
        let r = Request::RestartApp {
            name: "pty".into(),
            force: true,
        };
        assert_eq!(
            (r.method(), r.path()),
            ("POST", "/v1/apps/pty/restart?force=1".into())
        );
        assert_eq!(
            (Request::Shutdown.method(), Request::Shutdown.path()),
            ("POST", "/v1/shutdown".into())
        );
        assert_eq!(Request::Restart.path(), "/v1/restart");
    }

    #[test]
    fn admin_bodies_round_trip() {
        round_trip(Logs {
            lines: vec![LogLine {
                seq: 3,
                time: 1_700_000_000,
                level: "INFO".into(),
                text: "[visor] up".into(),
            }],
            next: 4,
        });
        round_trip(Status {
            status: "restarting".into(),
        });
        round_trip(Health {
            status: "ok".into(),
            boot: "0123456789abcdef".into(),
        });
        round_trip(AppSettingsSaved {
            app: app(),
            restart_needed: true,
        });
        round_trip(AppSettings {
            args: Some(vec!["a".into()]),
            auto_start: None,
            route: Some("dmsg".into()),
        });
        // An older visor's health has no boot id; an older app row no args or route.
        let o = parse_object(r#"{"status":"ok"}"#).unwrap();
        assert_eq!(Health::from_object(&o).unwrap().boot, "");
    }

    /// The visor reads a settings body strictly, and says what is wrong.
    #[test]
    fn app_settings_bodies_are_checked() {
        let p = AppSettings::parse;
        assert_eq!(
            p(r#"{"args":[]}"#).unwrap().args,
            Some(Vec::<String>::new())
        );
        assert_eq!(p(r#"{"auto_start":true}"#).unwrap().args, None);
        assert_eq!(p(r#"{"args":null,"route":"dmsg"}"#).unwrap().args, None);
        let err = |b: &str| p(b).unwrap_err();
        assert!(err("nope").contains("not a JSON object"), "{}", err("nope"));
        assert!(err("[1]").contains("not a JSON object"));
        assert!(err(r#"{"argz":[]}"#).contains("`argz`: unknown field"));
        assert!(err(r#"{"args":"a b"}"#).contains("`args`: expected an array"));
        assert!(err(r#"{"args":["a",1]}"#).contains("`args[1]`: expected a string"));
        assert!(err(r#"{"auto_start":"yes"}"#).contains("`auto_start`"));
        assert!(err("{}").contains("nothing to change"));
        let many = format!("{{\"args\":[{}]}}", vec!["\"x\""; 65].join(","));
        assert!(err(&many).contains("65 arguments, at most 64"));
        let long = format!("{{\"args\":[\"{}\"]}}", "x".repeat(4097));
        assert!(err(&long).contains("4097 bytes in all, at most 4096"));
    }
}
