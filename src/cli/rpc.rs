//! The CLI's side of the visor RPC (on top of `crate::rpc`): where the visor is (`--rpc`,
//! `$SKYWIRE_RPC`, the default) and its token (found through `-c`/`--state-dir` as the visor
//! finds its config), calls with the CLI's error messages, `app start|stop|status`, and the
//! dial upgrade that turns an RPC connection into a stream to a peer.

use std::path::PathBuf;

use miniserde::json::Object;

use super::out::{print_app, print_json, say};
use super::{CmdError, CmdResult};
use crate::rpc::client::{RpcClient, RpcError};
use crate::rpc::{App, Body, Request, Stopped};
use crate::visor::config::DEFAULT_CLI_ADDR;
use crate::visor::run::{self, VisorOptions};

/// Where the CLI finds the visor: its RPC address (`--rpc`, else `$SKYWIRE_RPC`, else the
/// `cli_addr` of the visor's config, else the default) and the config or state directory
/// whose `rpc.token` it sends (`-c`, else `--state-dir`, else `$SKYWIRE_STATE_DIR`, else
/// `./local`, as `skywire visor` finds them).
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
            .or_else(|| {
                run::cli_addr_of(&VisorOptions {
                    config: self.config.clone(),
                    state_dir: self.state_dir.clone(),
                    ..VisorOptions::default()
                })
            })
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

#[cfg(any(
    feature = "app-skysocks-client",
    feature = "app-skynet-fwd",
    feature = "app-vpn"
))]
/// One control request to app `app` (RPC `POST /v1/apps/<app>/control`); `Ok` is its answer.
pub fn app_control(
    rpc: &Rpc,
    app: &str,
    body: crate::http::json::Ordered,
) -> Result<Object, CmdError> {
    call(
        rpc,
        &Request::Control {
            app: app.into(),
            body: body.to_compact(),
        },
    )
}

/// Calls the visor's RPC; `Ok` is the JSON object of a 2xx answer.
pub fn call(rpc: &Rpc, req: &Request) -> Result<Object, CmdError> {
    let addr = rpc.addr();
    let token = rpc.token();
    let client = RpcClient::new(addr.as_str(), token.as_ref().ok().map(|(t, _)| t.as_str()));
    async_io::block_on(client.call(req)).map_err(|e| match e {
        RpcError::Address(e) => CmdError::usage(format!("--rpc {addr}: {e}")),
        RpcError::Unreachable(e) => CmdError::fail(format!(
            "no visor answers on {addr} ({e}); start one with 'skywire visor', or point to it \
             with --rpc ADDR or SKYWIRE_RPC"
        )),
        RpcError::Unauthorized => unauthorized(&token, &addr),
        other => CmdError::fail(other.to_string()),
    })
}

/// [`call`], then the answer: with `json`, printed as the visor sent it (`None`); else read
/// as a `T` for the caller to print.
pub fn fetch<T: Body>(rpc: &Rpc, req: &Request, json: bool) -> Result<Option<T>, CmdError> {
    match call_or_print(rpc, req, json)? {
        None => Ok(None),
        Some(o) => T::from_object(&o)
            .map(Some)
            .map_err(|e| CmdError::fail(RpcError::Body(e).to_string())),
    }
}

/// The part of [`fetch`] that is the same for every answer type (one copy in the binary).
fn call_or_print(rpc: &Rpc, req: &Request, json: bool) -> Result<Option<Object>, CmdError> {
    let o = call(rpc, req)?;
    if json {
        print_json(o);
        return Ok(None);
    }
    Ok(Some(o))
}

/// `app start`.
pub fn app_start(rpc: impl Into<Rpc>, name: &str, json: bool) -> CmdResult {
    if let Some(a) = fetch::<App>(&rpc.into(), &Request::Start(name.into()), json)? {
        say(&format!("{name}: {}", a.state));
    }
    Ok(())
}

/// `app stop`.
pub fn app_stop(rpc: impl Into<Rpc>, name: &str, force: bool, json: bool) -> CmdResult {
    let req = Request::Stop {
        name: name.into(),
        force,
    };
    if let Some(s) = fetch::<Stopped>(&rpc.into(), &req, json)? {
        say(&format!("stopped: {}", s.stopped.join(", ")));
    }
    Ok(())
}

/// `app status`.
pub fn app_status(rpc: impl Into<Rpc>, name: &str, json: bool) -> CmdResult {
    if let Some(a) = fetch::<App>(&rpc.into(), &Request::App(name.into()), json)? {
        print_app(&a);
    }
    Ok(())
}

/// Opens a stream to `pk`:`port` through the running visor (RPC `POST /v1/dial`, HTTP
/// upgrade): the visor dials with its own identity (by the route policy `route`, else its
/// default) and the RPC connection becomes the stream.
#[cfg(feature = "app-pty")]
pub async fn dial_via_visor(
    rpc: &Rpc,
    pk: &crate::crypto::PublicKey,
    port: u16,
    route: Option<&str>,
) -> Result<crate::http::client::Switched<async_net::TcpStream>, CmdError> {
    use crate::http::client::{HttpError, Upgrade, upgrade_on};
    use crate::http::json::parse_object;
    use miniserde::json::Value;
    let addr = rpc.addr();
    // No token: the request is still sent, so that "no visor answers" is said when that is
    // the problem.
    let token = rpc.token();
    let auth = token.as_ref().ok().map(|(t, _)| format!("Bearer {t}"));
    let no_visor = |e: &dyn std::fmt::Display| {
        CmdError::fail(format!(
            "no visor answers on {addr} ({e}); start one with 'skywire visor', point to it with \
             --rpc ADDR or SKYWIRE_RPC, or reach the peer directly with --via tcp://<pk>@host:port"
        ))
    };
    let s = async_net::TcpStream::connect(addr.as_str())
        .await
        .map_err(|e| no_visor(&e))?;
    let _ = s.set_nodelay(true);
    let hs: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect();
    let path = crate::rpc::dial_path(pk, port, route);
    match upgrade_on(
        s,
        "POST",
        &addr,
        &path,
        crate::rpc::DIAL_UPGRADE,
        &hs,
        64 * 1024,
    )
    .await
    {
        Ok(Upgrade::Switched(s)) => Ok(s),
        Ok(Upgrade::Refused(r)) if r.status == 401 => Err(unauthorized(&token, &addr)),
        Ok(Upgrade::Refused(r)) => Err(CmdError::fail(
            parse_object(&r.text())
                .ok()
                .and_then(|o| match o.get("error") {
                    Some(Value::String(m)) => Some(m.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| format!("the visor answered HTTP {}", r.status)),
        )),
        Err(HttpError::Io(e)) => Err(no_visor(&e)),
        Err(e) => Err(CmdError::fail(e.to_string())),
    }
}
