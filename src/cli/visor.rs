//! `skywire visor` (the daemon), `skywire cli visor …` and `skywire app <name> …`: the
//! commands that run or talk to a visor. The talking ones use the visor's RPC (HTTP/JSON on
//! 127.0.0.1:3435 by default; `--rpc ADDR` or `$SKYWIRE_RPC` to change it), sending the token
//! the visor wrote to `<state dir>/rpc.token` (found through `-c`/`--state-dir` as the visor
//! finds its config).

use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;
use miniserde::json::{Number, Value};

use super::{CmdError, CmdResult, say};
use crate::http::client::{HttpUrl, request_with};
use crate::http::json::parse_object;
use crate::visor::config::DEFAULT_CLI_ADDR;
use crate::visor::run::{self, VisorOptions};

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "visor")]
/// run the visor daemon: with no -c, its config lives in the state directory (created with
/// fresh keys on first start) and, with no network configured, it hosts an embedded relay +
/// discovery.
pub struct VisorCmd {
    /// config file (default: <state dir>/skywire-config.json, created if missing)
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// state directory when -c is not given (default $SKYWIRE_STATE_DIR, else ./local)
    #[argh(option)]
    state_dir: Option<PathBuf>,
    /// RPC address (overrides the config's cli_addr)
    #[argh(option)]
    rpc: Option<String>,
    /// log level: error, warn, info, debug, trace (overrides the config)
    #[argh(option)]
    log_level: Option<String>,
}

impl VisorCmd {
    /// Runs the daemon until SIGINT/SIGTERM.
    pub fn run(self) -> CmdResult {
        let ex = std::sync::Arc::new(async_executor::Executor::new());
        let visor = run::start(
            VisorOptions {
                config: self.config,
                state_dir: self.state_dir,
                rpc: self.rpc,
                log_level: self.log_level,
            },
            ex.clone(),
        )
        .map_err(CmdError::fail)?;
        let s = &visor.started;
        say(&format!("visor {} up; RPC on http://{}", s.pk, s.rpc_addr));
        match (&s.hosted_relay, s.join_hint()) {
            (Some(r), Some(hint)) => {
                say(&format!(
                    "hosting the embedded relay ({r}) and discovery ({})",
                    s.discovery.as_deref().unwrap_or("")
                ));
                say(&format!("another board joins with: {hint}"));
            }
            _ => say(&format!("network: {}", s.network)),
        }
        async_io::block_on(ex.run(visor.run()));
        Ok(())
    }
}

/// Where the CLI finds the visor: its RPC address (`--rpc`, else `$SKYWIRE_RPC`, else the
/// default) and the config or state directory whose `rpc.token` it sends (`-c`, else
/// `--state-dir`, else `$SKYWIRE_STATE_DIR`, else `./local`, as `skywire visor` finds them).
#[derive(Debug, Clone, Default)]
pub struct Rpc {
    /// `--rpc ADDR`.
    pub addr: Option<String>,
    /// `-c FILE`: the visor's config.
    pub config: Option<PathBuf>,
    /// `--state-dir DIR`: the visor's state directory.
    pub state_dir: Option<PathBuf>,
}

impl From<&Option<String>> for Rpc {
    /// Only `--rpc`: the token is found through `$SKYWIRE_STATE_DIR`, else `./local`.
    fn from(addr: &Option<String>) -> Rpc {
        Rpc {
            addr: addr.clone(),
            ..Rpc::default()
        }
    }
}

impl Rpc {
    /// `host:port` of the RPC.
    fn addr(&self) -> String {
        let a = self
            .addr
            .clone()
            .or_else(|| std::env::var("SKYWIRE_RPC").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| DEFAULT_CLI_ADDR.to_string());
        a.strip_prefix("http://").unwrap_or(&a).to_string()
    }

    /// The token and its file, or why it cannot be had (one line: which file, what to do).
    fn token(&self) -> Result<(String, PathBuf), String> {
        let file = run::rpc_token_file(&VisorOptions {
            config: self.config.clone(),
            state_dir: self.state_dir.clone(),
            ..VisorOptions::default()
        })?;
        match std::fs::read_to_string(&file) {
            Ok(t) if !t.trim().is_empty() => Ok((t.trim().to_string(), file)),
            Ok(_) => Err(format!("{}: the RPC token file is empty", file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
                "{}: no RPC token; is the visor running with this state directory? (give the \
                 -c FILE or --state-dir DIR it was started with)",
                file.display()
            )),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(format!(
                "{}: permission denied; run the CLI as the visor's user",
                file.display()
            )),
            Err(e) => Err(format!("{}: {e}", file.display())),
        }
    }

    /// The `Authorization` value (none when the token cannot be read: the request is still
    /// sent, so that "no visor answers" is said when that is the problem).
    fn auth(&self) -> (Option<String>, Result<(String, PathBuf), String>) {
        let t = self.token();
        (t.as_ref().ok().map(|(t, _)| format!("Bearer {t}")), t)
    }
}

/// What to say when the visor answers 401.
fn unauthorized(token: &Result<(String, PathBuf), String>, addr: &str) -> CmdError {
    CmdError::fail(match token {
        Err(why) => why.clone(),
        Ok((_, file)) => format!(
            "the visor on {addr} refused the token in {}: it is another visor's (or from an \
             earlier start); give the -c FILE or --state-dir DIR this visor runs with",
            file.display()
        ),
    })
}

/// Calls the visor's RPC; `Ok` is the parsed JSON body of a 2xx answer.
pub fn call(rpc: &Rpc, method: &str, path: &str) -> Result<Value, CmdError> {
    let addr = rpc.addr();
    let url = HttpUrl::parse(&format!("http://{addr}{path}"))
        .map_err(|e| CmdError::usage(format!("--rpc {addr}: {e}")))?;
    let body: Option<&[u8]> = (method != "GET").then_some(b"");
    let timeout = if path.contains("/ping/") || path.ends_with("/start") {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(10)
    };
    let (auth, token) = rpc.auth();
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let resp = async_io::block_on(request_with(&url, method, &headers, body, 1 << 20, timeout))
        .map_err(|e| {
            CmdError::fail(format!(
                "no visor answers on {addr} ({e}); start one with 'skywire visor', or point to \
                 it with --rpc ADDR or SKYWIRE_RPC"
            ))
        })?;
    if resp.status == 401 {
        return Err(unauthorized(&token, &addr));
    }
    let text = resp.text();
    let obj = parse_object(&text)
        .map_err(|e| CmdError::fail(format!("visor sent a body that is not JSON ({e})")))?;
    if !(200..300).contains(&resp.status) {
        let msg = match obj.get("error") {
            Some(Value::String(s)) => s.clone(),
            _ => format!("HTTP {}", resp.status),
        };
        return Err(CmdError::fail(msg));
    }
    Ok(Value::Object(obj))
}

/// Field `k` of an object as text ("" when absent).
pub fn field(v: &Value, k: &str) -> String {
    let Value::Object(o) = v else {
        return String::new();
    };
    match o.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(Number::U64(n))) => n.to_string(),
        Some(Value::Number(Number::I64(n))) => n.to_string(),
        Some(Value::Number(Number::F64(n))) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| match x {
                Value::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    }
}

/// The `items` array of a list answer.
fn items(v: &Value) -> Vec<Value> {
    match v {
        Value::Object(o) => match o.get("items") {
            Some(Value::Array(a)) => a.iter().cloned().collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Prints a JSON value compactly.
fn print_json(v: &Value) {
    say(&miniserde::json::to_string(v));
}

/// `3d4h`, `5m12s`, `40s`.
fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

fn table(rows: &[Vec<String>]) {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == cols {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        say(line.trim_end());
    }
}

fn print_app(v: &Value) {
    let state = field(v, "state");
    say(&format!("{}: {}", field(v, "name"), state));
    let port = field(v, "port");
    say(&format!(
        "  mode {}, port {}, wave {}, restart {}, restarts {}{}",
        field(v, "mode"),
        if port.is_empty() { "-".into() } else { port },
        field(v, "wave"),
        field(v, "restart_policy"),
        field(v, "restarts"),
        if field(v, "critical") == "true" {
            ", critical"
        } else {
            ""
        }
    ));
    if state == "running" {
        say(&format!(
            "  up {}",
            human_secs(field(v, "uptime_secs").parse().unwrap_or(0))
        ));
    }
    for (k, label) in [("requires", "requires"), ("wants", "wants")] {
        let d = field(v, k);
        if !d.is_empty() {
            say(&format!("  {label} {d}"));
        }
    }
    let e = field(v, "last_error");
    if !e.is_empty() {
        say(&format!("  last error: {e}"));
    }
    let d = field(v, "detail");
    if !d.is_empty() {
        say(&format!("  {d}"));
    }
    if let Value::Object(o) = v
        && let Some(Value::Array(conns)) = o.get("connections")
    {
        if conns.is_empty() {
            say("  no connections");
        } else {
            let mut rows = vec![vec![
                "PEER".to_string(),
                "PORT".into(),
                "NET".into(),
                "DIR".into(),
                "RX".into(),
                "TX".into(),
                "AGE".into(),
            ]];
            for c in conns {
                rows.push(vec![
                    field(c, "peer"),
                    format!("{}→{}", field(c, "local_port"), field(c, "remote_port")),
                    field(c, "network"),
                    field(c, "direction"),
                    field(c, "rx_bytes"),
                    field(c, "tx_bytes"),
                    human_secs(field(c, "age_secs").parse().unwrap_or(0)),
                ]);
            }
            table(&rows);
        }
    }
}

// ---- skywire cli visor … -----------------------------------------------------------------

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "cli")]
/// talk to a running visor over its RPC.
pub struct CliCmd {
    #[argh(subcommand)]
    cmd: CliSub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum CliSub {
    Visor(CliVisor),
    #[cfg(feature = "app-pty")]
    Pty(super::pty::PtyCmd),
}

impl CliCmd {
    /// Runs the subcommand.
    pub fn run(self) -> CmdResult {
        match self.cmd {
            CliSub::Visor(c) => c.run(),
            #[cfg(feature = "app-pty")]
            CliSub::Pty(c) => c.run(),
        }
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "visor")]
/// the visor: info, ping, ports, apps.
struct CliVisor {
    /// visor RPC address (default $SKYWIRE_RPC, else 127.0.0.1:3435)
    #[argh(option)]
    rpc: Option<String>,
    /// the visor's config file, to find its RPC token (as given to 'skywire visor -c')
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// the visor's state directory, to find its RPC token (default $SKYWIRE_STATE_DIR, else
    /// ./local)
    #[argh(option)]
    state_dir: Option<PathBuf>,
    #[argh(subcommand)]
    cmd: CliVisorSub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum CliVisorSub {
    Info(InfoCmd),
    Ping(PingCmd),
    Ports(PortsCmd),
    App(CliAppCmd),
}

impl CliVisor {
    fn run(self) -> CmdResult {
        let rpc = Rpc {
            addr: self.rpc,
            config: self.config,
            state_dir: self.state_dir,
        };
        match self.cmd {
            CliVisorSub::Info(c) => c.run(&rpc),
            CliVisorSub::Ping(c) => c.run(&rpc),
            CliVisorSub::Ports(c) => c.run(&rpc),
            CliVisorSub::App(c) => c.run(&rpc),
        }
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "info")]
/// the visor's identity, network and uptime.
struct InfoCmd {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl InfoCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        let v = call(rpc, "GET", "/v1/info")?;
        if self.json {
            print_json(&v);
            return Ok(());
        }
        say(&format!("pk:        {}", field(&v, "pk")));
        say(&format!("version:   {}", field(&v, "version")));
        say(&format!(
            "uptime:    {}",
            human_secs(field(&v, "uptime_secs").parse().unwrap_or(0))
        ));
        say(&format!("network:   {}", field(&v, "network")));
        let hosted = field(&v, "hosted_relay");
        if !hosted.is_empty() {
            say(&format!("hosting:   relay {hosted}"));
            say(&format!("join with: skywire config gen --join {hosted}"));
        }
        let d = field(&v, "discovery");
        if !d.is_empty() {
            say(&format!("discovery: {d}"));
        }
        let r = field(&v, "relays");
        say(&format!(
            "relays:    {}",
            if r.is_empty() { "none connected" } else { &r }
        ));
        say(&format!(
            "apps:      {} running of {}",
            field(&v, "apps_running"),
            field(&v, "apps")
        ));
        say(&format!("rss:       {} KiB", field(&v, "rss_kib")));
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "ping")]
/// round trips to a peer's dmsgctrl (port 7) through the visor.
struct PingCmd {
    /// the peer's public key
    #[argh(positional)]
    pk: String,
    /// how many pings (default 3, at most 100)
    #[argh(option, short = 'n', default = "3")]
    count: u32,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl PingCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        crate::crypto::PublicKey::from_hex(&self.pk)
            .map_err(|e| CmdError::usage(format!("{}: {e}", self.pk)))?;
        let v = call(
            rpc,
            "POST",
            &format!("/v1/ping/{}?count={}", self.pk, self.count),
        )?;
        if self.json {
            print_json(&v);
            return Ok(());
        }
        let rtts: Vec<u64> = match &v {
            Value::Object(o) => match o.get("rtt_us") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|x| match x {
                        Value::Number(Number::U64(n)) => Some(*n),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        for (i, r) in rtts.iter().enumerate() {
            say(&format!(
                "pong from {}: seq={} rtt={:.3} ms",
                self.pk,
                i + 1,
                *r as f64 / 1000.0
            ));
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "ports")]
/// the overlay ports this visor serves, and who serves them.
struct PortsCmd {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl PortsCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        let v = call(rpc, "GET", "/v1/ports")?;
        if self.json {
            print_json(&v);
            return Ok(());
        }
        let mut rows = vec![vec![
            "PORT".to_string(),
            "SERVED BY".into(),
            "NETWORK".into(),
            "SINCE".into(),
        ]];
        for p in items(&v) {
            rows.push(vec![
                field(&p, "port"),
                field(&p, "owner"),
                field(&p, "network"),
                human_secs(field(&p, "since_secs").parse().unwrap_or(0)),
            ]);
        }
        table(&rows);
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "app")]
/// the visor's apps: ls, start, stop, status.
struct CliAppCmd {
    #[argh(subcommand)]
    cmd: CliAppSub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum CliAppSub {
    Ls(LsCmd),
    Start(NamedStart),
    Stop(NamedStop),
    Status(NamedStatus),
}

impl CliAppCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        match self.cmd {
            CliAppSub::Ls(c) => c.run(rpc),
            CliAppSub::Start(c) => app_start(rpc.clone(), &c.name, c.json),
            CliAppSub::Stop(c) => app_stop(rpc.clone(), &c.name, c.i_know_what_im_doing, c.json),
            CliAppSub::Status(c) => app_status(rpc.clone(), &c.name, c.json),
        }
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "ls")]
/// every app: name, mode, state, port, uptime, restarts, last error.
struct LsCmd {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl LsCmd {
    fn run(self, rpc: &Rpc) -> CmdResult {
        let v = call(rpc, "GET", "/v1/apps")?;
        if self.json {
            print_json(&v);
            return Ok(());
        }
        let mut rows = vec![vec![
            "NAME".to_string(),
            "MODE".into(),
            "STATE".into(),
            "PORT".into(),
            "UPTIME".into(),
            "RESTARTS".into(),
            "LAST ERROR".into(),
        ]];
        for a in items(&v) {
            let up: u64 = field(&a, "uptime_secs").parse().unwrap_or(0);
            let port = field(&a, "port");
            rows.push(vec![
                field(&a, "name"),
                field(&a, "mode"),
                field(&a, "state"),
                if port.is_empty() { "-".into() } else { port },
                if field(&a, "state") == "running" {
                    human_secs(up)
                } else {
                    "-".into()
                },
                field(&a, "restarts"),
                field(&a, "last_error"),
            ]);
        }
        table(&rows);
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "start")]
/// start an app (and what it depends on).
struct NamedStart {
    /// the app
    #[argh(positional)]
    name: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "stop")]
/// stop an app (and what requires it).
struct NamedStop {
    /// the app
    #[argh(positional)]
    name: String,
    /// stop it even if it is critical (you may lose remote access)
    #[argh(switch)]
    i_know_what_im_doing: bool,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
/// one app's state and its connections.
struct NamedStatus {
    /// the app
    #[argh(positional)]
    name: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// `app start`.
pub fn app_start(rpc: impl Into<Rpc>, name: &str, json: bool) -> CmdResult {
    let v = call(&rpc.into(), "POST", &format!("/v1/apps/{name}/start"))?;
    if json {
        print_json(&v);
    } else {
        say(&format!("{name}: {}", field(&v, "state")));
    }
    Ok(())
}

/// `app stop`.
pub fn app_stop(rpc: impl Into<Rpc>, name: &str, force: bool, json: bool) -> CmdResult {
    let q = if force { "?force=1" } else { "" };
    let v = call(&rpc.into(), "POST", &format!("/v1/apps/{name}/stop{q}"))?;
    if json {
        print_json(&v);
    } else {
        say(&format!(
            "stopped: {}",
            field(&v, "stopped").replace(',', ", ")
        ));
    }
    Ok(())
}

/// `app status`.
pub fn app_status(rpc: impl Into<Rpc>, name: &str, json: bool) -> CmdResult {
    let v = call(&rpc.into(), "GET", &format!("/v1/apps/{name}"))?;
    if json {
        print_json(&v);
    } else {
        print_app(&v);
    }
    Ok(())
}

/// Opens a stream to `pk`:`port` through the running visor (RPC `POST /v1/dial`, HTTP
/// upgrade): the visor dials with its own identity and the RPC connection becomes the stream.
#[cfg(feature = "app-pty")]
pub async fn dial_via_visor(
    rpc: &Rpc,
    pk: &crate::crypto::PublicKey,
    port: u16,
) -> Result<async_net::TcpStream, CmdError> {
    use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
    let addr = rpc.addr();
    let (auth, token) = rpc.auth();
    let no_visor = |e: &dyn std::fmt::Display| {
        CmdError::fail(format!(
            "no visor answers on {addr} ({e}); start one with 'skywire visor', point to it with \
             --rpc ADDR or SKYWIRE_RPC, or reach the peer directly with --via tcp://<pk>@host:port"
        ))
    };
    let mut s = async_net::TcpStream::connect(addr.as_str())
        .await
        .map_err(|e| no_visor(&e))?;
    let _ = s.set_nodelay(true);
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST /v1/dial/{pk}/{port} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: Upgrade\r\nUpgrade: {}\r\nContent-Length: 0\r\n\r\n",
        crate::visor::rpc::DIAL_UPGRADE
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| no_visor(&e))?;
    // The response head, a byte at a time: nothing after it may be consumed.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(CmdError::fail("the visor sent an oversize response head"));
        }
        match s.read(&mut b).await {
            Ok(1) => head.push(b[0]),
            Ok(_) => return Err(CmdError::fail("the visor closed the connection")),
            Err(e) => return Err(no_visor(&e)),
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if status == 101 {
        return Ok(s);
    }
    if status == 401 {
        return Err(unauthorized(&token, &addr));
    }
    let len: usize = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
        .min(64 * 1024);
    let mut body = vec![0u8; len];
    let _ = s.read_exact(&mut body).await;
    let msg = parse_object(&String::from_utf8_lossy(&body))
        .ok()
        .and_then(|o| match o.get("error") {
            Some(Value::String(m)) => Some(m.clone()),
            _ => None,
        })
        .unwrap_or_else(|| format!("the visor answered HTTP {status}"));
    Err(CmdError::fail(msg))
}
