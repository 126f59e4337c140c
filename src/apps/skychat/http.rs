//! skychat's HTTP control surface (design14 §6): the routes the CLI and the page use, behind
//! the Host/Origin guard ([`LocalGuard`] with the page's own origin allowed) and skychat's
//! own credential check (bearer token, the `skychat` cookie, or HTTP basic with the password).
//!
//! Every body is parsed with [`crate::http::json`]: unknown fields, wrong types and missing
//! fields are a 400 whose one line names the field and what it accepts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use miniserde::json::Object;

use super::auth::{self, Credentials, Refusal};
use super::web;
use crate::crypto::identity::PublicKey;
use crate::http::guard::LocalGuard;
use crate::http::json::{Fields, Ordered, Out, parse_object};
use crate::http::server::{Handler, Request, Response};

/// Most bytes of a request body (a message is at most 64 KiB of text plus JSON escaping).
pub const MAX_BODY: usize = 96 * 1024;
/// `wait_ms` when the body does not say.
pub const WAIT_DEFAULT_MS: u64 = 5_000;
/// Largest `wait_ms`.
pub const WAIT_MAX_MS: u64 = 60_000;
/// Largest `retries`.
pub const RETRIES_MAX: u64 = 5;
/// `/history` `limit` default and maximum.
pub const HISTORY_DEFAULT: usize = 100;
/// Largest `/history` `limit`.
pub const HISTORY_MAX: usize = 1_000;
/// Events replayed on `/sse` without `Last-Event-ID`.
pub const SSE_SEED: usize = 50;

/// A peer as a request names it: a public key (64 hex) or an alias to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRef {
    /// A public key.
    Pk(PublicKey),
    /// An alias name.
    Alias(String),
}

impl PeerRef {
    /// A 64-hex string is a key; anything else is an alias (which must be a valid name).
    pub fn parse(s: &str) -> Result<PeerRef, String> {
        let s = s.trim();
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return PublicKey::from_hex(s)
                .map(PeerRef::Pk)
                .map_err(|e| format!("not a valid public key: {e}"));
        }
        check_alias(s)?;
        Ok(PeerRef::Alias(s.to_string()))
    }
}

/// An alias name: 1–64 characters of letters, digits, `-`, `_`, `.`.
pub fn check_alias(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err("expected a public key (64 hex) or an alias (1-64 of A-Z a-z 0-9 - _ .)".into())
    }
}

/// A message id: 16 lowercase hex digits.
pub fn parse_id(s: &str) -> Result<u64, String> {
    if s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        u64::from_str_radix(s, 16).map_err(|e| e.to_string())
    } else {
        Err("expected a message id (16 lowercase hex digits)".into())
    }
}

/// The networks a send may ask for.
pub const NETWORKS: [&str; 4] = ["auto", "dmsg", "skynet", "tcp"];

/// `POST /message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody {
    /// `recipient`.
    pub recipient: PeerRef,
    /// `message`.
    pub message: String,
    /// `network`: one of [`NETWORKS`].
    pub network: &'static str,
    /// `wait_ms` (0 = fire and forget).
    pub wait_ms: u64,
    /// `reply_to`.
    pub reply_to: Option<u64>,
    /// `retries`.
    pub retries: u32,
}

/// A 400 with one line.
fn bad(msg: impl std::fmt::Display) -> Response {
    Response::error(400, msg.to_string())
}

/// The body as a JSON object.
fn object(body: &[u8]) -> Result<Object, Response> {
    if body.len() > MAX_BODY {
        return Err(Response::error(413, format!("body over {MAX_BODY} bytes")));
    }
    let text = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8"))?;
    if text.trim().is_empty() {
        return Err(bad("a JSON object body is required"));
    }
    parse_object(text).map_err(bad)
}

fn field_err(f: &Fields<'_>, key: &str, msg: impl Into<String>) -> Response {
    bad(f.err(key, msg))
}

/// Parses `POST /message`.
pub fn parse_message(body: &[u8]) -> Result<MessageBody, Response> {
    let obj = object(body)?;
    let mut f = Fields::new(&obj, "");
    let recipient = f.str("recipient").map_err(bad)?;
    let recipient = PeerRef::parse(recipient).map_err(|e| field_err(&f, "recipient", e))?;
    let message = f.str("message").map_err(bad)?;
    if message.is_empty() {
        return Err(field_err(&f, "message", "must not be empty"));
    }
    let network = match f.opt_str("network").map_err(bad)? {
        None => "auto",
        Some(n) => NETWORKS.into_iter().find(|k| *k == n).ok_or_else(|| {
            field_err(
                &f,
                "network",
                format!("expected one of {}, got {n:?}", NETWORKS.join("|")),
            )
        })?,
    };
    let wait_ms = f
        .opt_u64("wait_ms", WAIT_MAX_MS)
        .map_err(bad)?
        .unwrap_or(WAIT_DEFAULT_MS);
    let reply_to = match f.opt_str("reply_to").map_err(bad)? {
        None => None,
        Some(s) => Some(parse_id(s).map_err(|e| field_err(&f, "reply_to", e))?),
    };
    let retries = f.opt_u64("retries", RETRIES_MAX).map_err(bad)?.unwrap_or(0) as u32;
    f.deny_unknown().map_err(bad)?;
    Ok(MessageBody {
        recipient,
        message: message.to_string(),
        network,
        wait_ms,
        reply_to,
        retries,
    })
}

/// Parses `POST /read {"peer","id"}`.
pub fn parse_read(body: &[u8]) -> Result<(PeerRef, u64), Response> {
    let obj = object(body)?;
    let mut f = Fields::new(&obj, "");
    let peer = f.str("peer").map_err(bad)?;
    let peer = PeerRef::parse(peer).map_err(|e| field_err(&f, "peer", e))?;
    let id = f.str("id").map_err(bad)?;
    let id = parse_id(id).map_err(|e| field_err(&f, "id", e))?;
    f.deny_unknown().map_err(bad)?;
    Ok((peer, id))
}

/// Parses `POST /aliases {"name","pk"}`.
pub fn parse_alias_add(body: &[u8]) -> Result<(String, PublicKey), Response> {
    let obj = object(body)?;
    let mut f = Fields::new(&obj, "");
    let name = f.str("name").map_err(bad)?;
    let name_ok = check_alias(name).is_ok()
        && !(name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()));
    if !name_ok {
        return Err(field_err(
            &f,
            "name",
            "expected 1-64 of A-Z a-z 0-9 - _ . (not a key)",
        ));
    }
    let pk = f.str("pk").map_err(bad)?;
    let pk = PublicKey::from_hex(pk.trim())
        .map_err(|e| field_err(&f, "pk", format!("expected a public key (64 hex): {e}")))?;
    f.deny_unknown().map_err(bad)?;
    Ok((name.to_string(), pk))
}

/// Parses `POST /aliases/rm {"name"}`.
pub fn parse_alias_rm(body: &[u8]) -> Result<String, Response> {
    let obj = object(body)?;
    let mut f = Fields::new(&obj, "");
    let name = f.str("name").map_err(bad)?;
    check_alias(name).map_err(|_| field_err(&f, "name", "expected an alias name"))?;
    f.deny_unknown().map_err(bad)?;
    Ok(name.to_string())
}

/// Parses `POST /history/forget {"peer"?}` (an empty body forgets everything).
pub fn parse_forget(body: &[u8]) -> Result<Option<PeerRef>, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let obj = object(body)?;
    let mut f = Fields::new(&obj, "");
    let peer = match f.opt_str("peer").map_err(bad)? {
        None => None,
        Some(p) => Some(PeerRef::parse(p).map_err(|e| field_err(&f, "peer", e))?),
    };
    f.deny_unknown().map_err(bad)?;
    Ok(peer)
}

/// Percent-decodes a query value (`+` is a space); `None` on a bad escape or non-UTF-8.
pub fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn query(req: &Request, key: &str) -> Result<Option<String>, Response> {
    match req.query_param(key) {
        None => Ok(None),
        Some(v) => pct_decode(v)
            .map(Some)
            .ok_or_else(|| bad(format!("query `{key}`: bad percent-encoding"))),
    }
}

/// Parses `GET /history?peer=&limit=`.
pub fn parse_history_query(req: &Request) -> Result<(Option<PeerRef>, usize), Response> {
    let peer = match query(req, "peer")? {
        None => None,
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PeerRef::parse(&p).map_err(|e| bad(format!("query `peer`: {e}")))?),
    };
    let limit = match query(req, "limit")? {
        None => HISTORY_DEFAULT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=HISTORY_MAX).contains(&n) => n,
            _ => {
                return Err(bad(format!(
                    "query `limit`: expected an integer from 1 to {HISTORY_MAX}, got {l:?}"
                )));
            }
        },
    };
    Ok((peer, limit))
}

/// The channels a `/events` request asks for.
pub const CHANNELS: [&str; 4] = ["dm", "system", "group", "pair"];

/// Parses `GET /events?channel=dm,system,group|all&since=` (and `Last-Event-ID`): the channel
/// names (default all) and the resume point.
pub fn parse_events_query(req: &Request) -> Result<(Vec<&'static str>, Option<u64>), Response> {
    let channels = match query(req, "channel")? {
        None => CHANNELS.to_vec(),
        Some(c) if c == "all" || c.is_empty() => CHANNELS.to_vec(),
        Some(c) => {
            let mut v = Vec::new();
            for name in c.split(',') {
                let ch = CHANNELS.into_iter().find(|k| *k == name).ok_or_else(|| {
                    bad(format!(
                        "query `channel`: expected all or a list of {}, got {name:?}",
                        CHANNELS.join(",")
                    ))
                })?;
                if !v.contains(&ch) {
                    v.push(ch);
                }
            }
            v
        }
    };
    Ok((channels, resume_point(req)?))
}

/// `Last-Event-ID` (what an `EventSource` sends when it reconnects), else `?since=`.
pub fn resume_point(req: &Request) -> Result<Option<u64>, Response> {
    if let Some(v) = req.header("last-event-id") {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        return v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| bad(format!("Last-Event-ID: expected an event seq, got {v:?}")));
    }
    match query(req, "since")? {
        None => Ok(None),
        Some(s) => s
            .parse::<u64>()
            .map(Some)
            .map_err(|_| bad(format!("query `since`: expected an event seq, got {s:?}"))),
    }
}

/// Options of [`serve`].
#[derive(Debug, Clone)]
pub struct HttpOpts {
    /// The bearer token (64 hex).
    pub token: String,
    /// Where the token was written (named in the 401 answer).
    pub token_file: std::path::PathBuf,
    /// The basic password, from `--password-file`.
    pub password: Option<auth::PasswordHash>,
}

/// The app's control surface (`POST /v1/apps/skychat/control`, so the hypervisor and the
/// CLI reach a remote visor's chat through its RPC): `{"op":"http","method":"GET"|"POST",
/// "path":"/history?limit=50","body":{…}}` runs that request on skychat's own routes, in
/// process, and answers `{"status":N,"body":<its JSON>}`. The event streams (`/sse`,
/// `/events`) and the page are not served this way.
pub async fn control(handler: &Handler, body: &str) -> Result<String, (u16, String)> {
    use miniserde::json::Value;
    let bad = |m: &str| {
        (
            400,
            format!("{m}; expected {{\"op\":\"http\",\"method\":\"GET\",\"path\":\"/history\"}}"),
        )
    };
    let Ok(Value::Object(o)) = miniserde::json::from_str::<Value>(body) else {
        return Err(bad("not a JSON object"));
    };
    let text = |k: &str| match o.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    if text("op").as_deref() != Some("http") {
        return Err(bad("unknown op"));
    }
    let method = text("method").unwrap_or_else(|| "GET".into());
    if method != "GET" && method != "POST" {
        return Err(bad("method is GET or POST"));
    }
    let target = text("path").ok_or_else(|| bad("no path"))?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.clone(), None),
    };
    if !path.starts_with('/') || matches!(path.as_str(), "/" | "/sse" | "/events" | "/login") {
        return Err((400, format!("{path:?} is not served through control")));
    }
    let body = match o.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => miniserde::json::to_string(v).into_bytes(),
    };
    let resp = handler(Request {
        method,
        path,
        query,
        headers: Vec::new(),
        body,
        peer: None,
        peer_pk: None,
    })
    .await;
    let raw = String::from_utf8_lossy(&resp.body).into_owned();
    let body = if raw.trim().is_empty() {
        Out::Null
    } else if miniserde::json::from_str::<Value>(&raw).is_ok() {
        Out::Raw(raw)
    } else {
        Out::Str(raw)
    };
    Ok(Ordered::new()
        .field("status", Out::U64(resp.status.into()))
        .field("body", body)
        .to_compact())
}

/// Counts refused and malformed requests (`http_error_count` in `/status`).
#[derive(Debug, Default)]
pub struct ErrorCount(AtomicU64);

impl ErrorCount {
    /// Counts one.
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// `GET /login?token=<t>`: with the right token sets the cookie and 303s to `/`.
fn login(req: &Request, creds: &Credentials) -> Response {
    let given = req
        .query_param("token")
        .and_then(pct_decode)
        .unwrap_or_default();
    if crate::http::guard::ct_eq(given.trim().as_bytes(), creds.token.as_bytes()) {
        Response::text(303, "logged in; go to /\n")
            .with_header("Location", "/")
            .with_header("Set-Cookie", auth::set_cookie(&creds.token))
            .with_header("Cache-Control", "no-store")
    } else {
        Response::error(
            401,
            "wrong or missing token: open the link that `skywire cli skychat web` prints",
        )
    }
}

/// `inner` behind the Host/Origin guard and the credential check. `/health` is open;
/// `/login` checks the token in its query; `GET /` without a credential gets a short page
/// saying how to log in.
pub fn gate(
    served: SocketAddr,
    opts: &HttpOpts,
    errors: Arc<ErrorCount>,
    inner: Handler,
) -> Handler {
    let guard = LocalGuard::new(served, None).allow_same_origin();
    let creds = Credentials {
        token: opts.token.clone(),
        password: opts.password.clone(),
    };
    let hint = format!(
        "the token is in {} (readable by the visor's user only); `skywire cli skychat web` \
         prints a login link",
        opts.token_file.display()
    );
    Arc::new(move |req: Request| {
        if let Err(resp) = guard.check(&req) {
            errors.bump();
            return Box::pin(async move { resp });
        }
        let path = req.path.as_str();
        if path == "/health" {
            return Box::pin(async { Response::json(200, "{\"ok\":true}\n".into()) });
        }
        if path == "/login" {
            let resp = if req.method == "GET" {
                login(&req, &creds)
            } else {
                Response::error(405, "GET /login?token=<token>")
            };
            if resp.status >= 400 {
                errors.bump();
            }
            return Box::pin(async move { resp });
        }
        let all = |name: &'static str| {
            req.headers
                .iter()
                .filter(move |(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        match creds.check(all("authorization"), all("cookie")) {
            Ok(()) => inner(req),
            Err(r) => {
                errors.bump();
                let resp = if path == "/" && req.method == "GET" && r == Refusal::Missing {
                    let mut p = Response::text(401, web::NO_CREDENTIAL);
                    p.content_type = "text/html; charset=utf-8";
                    p
                } else {
                    let what = match r {
                        Refusal::Missing => {
                            "this request needs the token (Authorization: \
                                             Bearer <token>, or the skychat cookie)"
                        }
                        Refusal::Wrong(w) => w,
                    };
                    Response::error(401, format!("{what}; {hint}"))
                };
                let resp = if creds.password.is_some() {
                    resp.with_header("WWW-Authenticate", "Basic realm=\"skychat\"")
                } else {
                    resp.with_header("WWW-Authenticate", "Bearer")
                };
                Box::pin(async move { resp })
            }
        }
    })
}

pub mod groups;
pub mod pair;
mod routes;
pub mod sse;

pub use routes::{bind, routes, serve};

#[cfg(test)]
mod tests;
