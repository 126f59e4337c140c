//! The CLI's client of the skychat HTTP control surface: where it is (`--addr`,
//! `$SKYCHAT_ADDR`, 127.0.0.1:8001) and its token (`$SKYCHAT_TOKEN`, `--token-file`, else
//! `<state dir>/skychat-http-<port>.token`), JSON requests with the CLI's error messages,
//! and a Server-Sent Events reader ([`Follow`]) that reconnects (1 s → 10 s backoff),
//! resumes with `since=<seq>` and drops what it already gave (by seq, and by message id).

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use async_io::Timer;
use async_net::TcpStream;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use miniserde::json::{Number, Object, Value};

use super::CmdError;
/// Times as the skychat commands print them (the one copy is `out`'s).
pub use super::out::utc;
use crate::http::client::{HttpError, HttpUrl, request_with};
use crate::visor::config::{Config, DEFAULT_FILE};
use crate::visor::run::DEFAULT_STATE_DIR;

/// The visor-hosted surface's default address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8001";
/// Most bytes of one JSON answer read.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// Most bytes of one SSE line kept (a longer one ends the stream as broken).
const MAX_LINE: usize = 1024 * 1024;
/// A stream with nothing (not even a keep-alive comment) for this long is dead.
const IDLE: Duration = Duration::from_secs(45);

/// Where the CLI finds the surface (the common flags of `cli skychat`).
#[derive(Debug, Clone, Default)]
pub struct Where {
    /// `--addr`.
    pub addr: Option<String>,
    /// `--token-file`.
    pub token_file: Option<PathBuf>,
    /// `-c`: the visor's config (its state dir holds the token).
    pub config: Option<PathBuf>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
}

/// A located surface: its address and its token (or why there is none).
#[derive(Debug, Clone)]
pub struct Surface {
    /// `host:port`.
    pub addr: String,
    /// The token, or one line saying why it could not be read.
    pub token: Result<String, String>,
}

/// An answer: status and body text.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: String,
}

impl Reply {
    /// The body as a JSON value (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        miniserde::json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The `error` (or `reason`) the server gave, else the status.
    pub fn error(&self) -> String {
        match self.json() {
            Value::Object(o) => str_of(&o, "error")
                .or_else(|| str_of(&o, "reason"))
                .map(str::to_string),
            _ => None,
        }
        .unwrap_or_else(|| format!("HTTP {}", self.status))
    }
}

/// The state directory for `w`: `-c`'s `local_path`, else `--state-dir`, else
/// `$SKYWIRE_STATE_DIR`, else `./local` (the config there, if any, says its `local_path`).
fn state_dir(w: &Where) -> Result<PathBuf, String> {
    if let Some(c) = &w.config {
        let cfg = Config::load(c).map_err(|e| format!("-c {}: {e}", c.display()))?;
        return Ok(cfg.state_dir(c));
    }
    let dir = w
        .state_dir
        .clone()
        .or_else(|| std::env::var_os("SKYWIRE_STATE_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    let file = dir.join(DEFAULT_FILE);
    Ok(match Config::load(&file) {
        Ok(cfg) => cfg.state_dir(&file),
        Err(_) => dir,
    })
}

/// `host:port` of an `--addr` (an `http://` prefix and a trailing `/` allowed).
pub fn normalize_addr(a: &str) -> Result<(String, u16), String> {
    let a = a.trim();
    let a = a.strip_prefix("http://").unwrap_or(a).trim_end_matches('/');
    let port = a
        .rsplit_once(':')
        .and_then(|(h, p)| (!h.is_empty()).then(|| p.parse::<u16>().ok()).flatten())
        .ok_or_else(|| format!("--addr {a}: expected host:port, e.g. {DEFAULT_ADDR}"))?;
    Ok((a.to_string(), port))
}

impl Surface {
    /// Finds the surface and its token.
    pub fn find(w: &Where) -> Result<Surface, CmdError> {
        let raw = w
            .addr
            .clone()
            .or_else(|| std::env::var("SKYCHAT_ADDR").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| DEFAULT_ADDR.to_string());
        let (addr, port) = normalize_addr(&raw).map_err(CmdError::usage)?;
        let token = match std::env::var("SKYCHAT_TOKEN") {
            Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
            _ => {
                let file = match &w.token_file {
                    Some(f) => Ok(f.clone()),
                    None => state_dir(w).map(|d| d.join(format!("skychat-http-{port}.token"))),
                };
                file.and_then(|f| read_token(&f))
            }
        };
        Ok(Surface { addr, token })
    }

    /// The `Authorization` header value, when there is a token.
    fn auth(&self) -> Option<String> {
        self.token.as_ref().ok().map(|t| format!("Bearer {t}"))
    }

    /// "No skychat answers …".
    pub fn unreachable(&self, why: &str) -> CmdError {
        let why = why.find(" (os error ").map_or(why, |i| &why[..i]);
        CmdError::fail(format!(
            "no skychat answers on {} ({why}): is the visor running with skychat? (skywire cli \
             visor app status skychat; a standalone one listens on 127.0.0.1:8002: --addr)",
            self.addr
        ))
    }

    /// What to say for a 401.
    pub fn unauthorized(&self) -> CmdError {
        CmdError::fail(match &self.token {
            Err(why) => why.clone(),
            Ok(_) => format!(
                "skychat on {} refused the token: it is another skychat's (or from an earlier \
                 start); give --token-file FILE, $SKYCHAT_TOKEN, or the -c FILE / --state-dir DIR \
                 of the visor that runs it",
                self.addr
            ),
        })
    }

    /// One request; transport failures and 401 are errors, any other status is returned.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        timeout: Duration,
    ) -> Result<Reply, CmdError> {
        let url = HttpUrl {
            authority: self.addr.clone(),
            path: path.to_string(),
        };
        let auth = self.auth();
        let hs: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| ("Authorization", a))
            .into_iter()
            .collect();
        let r = request_with(
            &url,
            method,
            &hs,
            body.map(str::as_bytes),
            MAX_BODY,
            timeout,
        )
        .await;
        match r {
            Ok(r) if r.status == 401 => Err(self.unauthorized()),
            Ok(r) => Ok(Reply {
                status: r.status,
                body: r.text(),
            }),
            Err(HttpError::Io(e)) | Err(HttpError::BadResponse(e)) => Err(self.unreachable(&e)),
            Err(HttpError::Timeout(d)) => Err(CmdError::fail(format!(
                "skychat on {} did not answer {method} {path} within {} s",
                self.addr,
                d.as_secs()
            ))),
            Err(e) => Err(CmdError::fail(format!("{method} {path}: {e}"))),
        }
    }

    /// A request whose answer must be 2xx; returns its JSON (`Null` for an empty body).
    pub async fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<Value, CmdError> {
        let r = self
            .call(method, path, body, Duration::from_secs(15))
            .await?;
        match r.status {
            200..=299 => Ok(r.json()),
            404 => Err(CmdError::fail(format!(
                "{} has no {path} (HTTP 404): is it a skychat of this version? ({})",
                self.addr,
                r.error()
            ))),
            503 => Err(CmdError::fail(format!("{path}: {}", r.error()))),
            _ => Err(CmdError::fail(format!(
                "{method} {path}: {} (HTTP {})",
                r.error(),
                r.status
            ))),
        }
    }

    /// Resolves a PK-or-alias argument: 64 hex digits are a PK, anything else is looked up in
    /// `GET /aliases`.
    pub async fn resolve(&self, who: &str) -> Result<String, CmdError> {
        if is_pk(who) {
            return Ok(who.to_ascii_lowercase());
        }
        let list = self.aliases().await?;
        list.into_iter()
            .find(|(n, _)| n == who)
            .map(|(_, pk)| pk)
            .ok_or_else(|| {
                CmdError::usage(format!(
                    "{who}: not a public key (64 hex digits) and no alias of that name \
                     (skywire cli skychat alias ls; alias add <name> <pk>)"
                ))
            })
    }

    /// The alias book, (name, pk).
    pub async fn aliases(&self) -> Result<Vec<(String, String)>, CmdError> {
        let v = self.json("GET", "/aliases", None).await?;
        Ok(array(&v)
            .iter()
            .filter_map(|a| match a {
                Value::Object(o) => Some((str_of(o, "name")?.to_string(), str_of(o, "pk")?.into())),
                _ => None,
            })
            .collect())
    }
}

/// Display names: the alias of a PK if it has one.
#[derive(Default)]
pub struct Names(Vec<(String, String)>);

impl Names {
    /// The alias book, or none when it cannot be read.
    pub async fn load(s: &Surface) -> Names {
        Names(s.aliases().await.unwrap_or_default())
    }

    /// `alias` or the PK.
    pub fn of<'a>(&'a self, pk: &'a str) -> &'a str {
        self.0
            .iter()
            .find(|(_, p)| p.eq_ignore_ascii_case(pk))
            .map_or(pk, |(n, _)| n.as_str())
    }
}

fn read_token(file: &std::path::Path) -> Result<String, String> {
    match std::fs::read_to_string(file) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        Ok(_) => Err(format!(
            "{}: the skychat token file is empty",
            file.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "{}: no skychat token; is skychat running with this state directory? (give the -c \
             FILE or --state-dir DIR of its visor, --token-file, or $SKYCHAT_TOKEN)",
            file.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(format!(
            "{}: permission denied; run the CLI as the visor's user",
            file.display()
        )),
        Err(e) => Err(format!("{}: {e}", file.display())),
    }
}

/// A public key: 64 hex digits of a valid Ed25519 point.
pub fn is_pk(s: &str) -> bool {
    s.len() == 64 && crate::crypto::PublicKey::from_hex(s).is_ok()
}

/// A string field.
pub fn str_of<'a>(o: &'a Object, k: &str) -> Option<&'a str> {
    match o.get(k) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// An unsigned number field (a decimal string counts too).
pub fn u64_of(o: &Object, k: &str) -> Option<u64> {
    match o.get(k) {
        Some(Value::Number(Number::U64(n))) => Some(*n),
        Some(Value::Number(Number::I64(n))) => u64::try_from(*n).ok(),
        Some(Value::Number(Number::F64(f))) if *f >= 0.0 => Some(*f as u64),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
}

/// The items of a JSON array (none for anything else).
pub fn array(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        _ => &[],
    }
}

/// A JSON string literal.
pub fn quote(s: &str) -> String {
    miniserde::json::to_string(&s.to_string())
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// `id:`.
    pub id: Option<String>,
    /// `event:`.
    pub event: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

/// An incremental SSE parser (bytes in, events out).
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    cur: SseEvent,
    has_data: bool,
}

impl SseParser {
    /// Feeds bytes; complete events are appended to `out`. A line over [`MAX_LINE`] is an
    /// error.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), String> {
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() >= MAX_LINE {
                    return Err(format!("an event line longer than {MAX_LINE} bytes"));
                }
                self.line.push(b);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if self.has_data {
                    out.push(std::mem::take(&mut self.cur));
                } else {
                    self.cur = SseEvent::default();
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_str(), ""),
            };
            match field {
                "data" => {
                    if self.has_data {
                        self.cur.data.push('\n');
                    }
                    self.cur.data.push_str(value);
                    self.has_data = true;
                }
                "id" => self.cur.id = Some(value.to_string()),
                "event" => self.cur.event = Some(value.to_string()),
                _ => {}
            }
        }
        Ok(())
    }
}

/// An incremental decoder of a chunked body.
#[derive(Debug)]
enum Body {
    /// Bytes as they come (HTTP/1.0 or no framing): the body ends at EOF.
    Raw,
    /// Chunked: the size line being read, or the bytes left in the chunk (+2 for its CRLF).
    Chunked { line: Vec<u8>, left: usize },
    /// The last chunk was seen.
    Done,
}

impl Body {
    /// Decodes `input` into `out`.
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        while !input.is_empty() {
            match self {
                Body::Raw => {
                    out.extend_from_slice(input);
                    return Ok(());
                }
                Body::Done => return Ok(()),
                Body::Chunked { line, left } if *left == 0 => {
                    let b = input[0];
                    input = &input[1..];
                    if b != b'\n' {
                        if line.len() > 256 {
                            return Err("chunk size line too long".into());
                        }
                        line.push(b);
                        continue;
                    }
                    let text = String::from_utf8_lossy(line).into_owned();
                    let hex = text
                        .trim()
                        .split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    line.clear();
                    if hex.is_empty() {
                        continue; // the CRLF after a chunk's data
                    }
                    let n = usize::from_str_radix(&hex, 16)
                        .map_err(|_| format!("chunk size {hex:?}"))?;
                    if n == 0 {
                        *self = Body::Done;
                        return Ok(());
                    }
                    *left = n;
                }
                Body::Chunked { left, .. } => {
                    let n = (*left).min(input.len());
                    out.extend_from_slice(&input[..n]);
                    *left -= n;
                    input = &input[n..];
                }
            }
        }
        Ok(())
    }
}

/// Why a stream could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Try again later (connection refused, reset, 5xx).
    Retry(String),
    /// Trying again will not help (401, 400, 404 …).
    Fatal(CmdError),
}

/// One open SSE stream.
#[derive(Debug)]
pub struct SseConn {
    stream: TcpStream,
    body: Body,
    parser: SseParser,
    ready: VecDeque<SseEvent>,
}

impl SseConn {
    /// `GET path` as an event stream (with `Last-Event-ID` when given), within 10 s.
    pub async fn open(s: &Surface, path: &str, last_id: Option<u64>) -> Result<SseConn, OpenError> {
        let work = Self::open_inner(s, path, last_id);
        futures_lite::future::or(work, async {
            Timer::after(Duration::from_secs(10)).await;
            Err(OpenError::Retry("no answer within 10 s".into()))
        })
        .await
    }

    async fn open_inner(
        s: &Surface,
        path: &str,
        last_id: Option<u64>,
    ) -> Result<SseConn, OpenError> {
        let mut stream = TcpStream::connect(s.addr.as_str())
            .await
            .map_err(|e| OpenError::Retry(format!("cannot connect: {e}")))?;
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: \
             no-cache\r\nUser-Agent: skywire-rs/{}\r\n",
            s.addr,
            crate::VERSION
        );
        if let Some(a) = s.auth() {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        if let Some(id) = last_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        req.push_str("\r\n");
        let io = |e: std::io::Error| OpenError::Retry(e.to_string());
        stream.write_all(req.as_bytes()).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.map_err(io)?;
            if n == 0 {
                return Err(OpenError::Retry("closed before answering".into()));
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut hs = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut hs);
            let len = match resp.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) if buf.len() < 16 * 1024 => continue,
                Ok(httparse::Status::Partial) => {
                    return Err(OpenError::Retry("answer head too large".into()));
                }
                Err(e) => return Err(OpenError::Retry(format!("not HTTP: {e}"))),
            };
            let status = resp.code.unwrap_or(0);
            let chunked = resp.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("transfer-encoding")
                    && String::from_utf8_lossy(h.value)
                        .to_ascii_lowercase()
                        .contains("chunked")
            });
            let mut body = if chunked {
                Body::Chunked {
                    line: Vec::new(),
                    left: 0,
                }
            } else {
                Body::Raw
            };
            let rest = buf.split_off(len);
            if status != 200 {
                let mut text = Vec::new();
                let _ = body.feed(&rest, &mut text);
                let r = Reply {
                    status,
                    body: String::from_utf8_lossy(&text).into_owned(),
                };
                return Err(match status {
                    401 => OpenError::Fatal(s.unauthorized()),
                    500..=599 => OpenError::Retry(format!("HTTP {status}: {}", r.error())),
                    _ => OpenError::Fatal(CmdError::fail(format!(
                        "GET {path}: {} (HTTP {status})",
                        r.error()
                    ))),
                });
            }
            let mut conn = SseConn {
                stream,
                body,
                parser: SseParser::default(),
                ready: VecDeque::new(),
            };
            conn.take(&rest).map_err(OpenError::Retry)?;
            return Ok(conn);
        }
    }

    fn take(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut plain = Vec::new();
        self.body.feed(bytes, &mut plain)?;
        let mut evs = Vec::new();
        self.parser.push(&plain, &mut evs)?;
        self.ready.extend(evs);
        Ok(())
    }

    /// The next event; `Err` when the stream ended or broke (why).
    pub async fn next(&mut self) -> Result<SseEvent, String> {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Ok(ev);
            }
            if matches!(self.body, Body::Done) {
                return Err("the stream ended".into());
            }
            let read = futures_lite::future::or(
                async { self.stream.read(&mut chunk).await.map(Some) },
                async {
                    Timer::after(IDLE).await;
                    Ok(None)
                },
            )
            .await;
            match read {
                Ok(Some(0)) => return Err("the server closed the stream".into()),
                Ok(Some(n)) => {
                    let bytes = chunk[..n].to_vec();
                    self.take(&bytes)?;
                }
                Ok(None) => return Err(format!("nothing for {} s", IDLE.as_secs())),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// Remembers the last `cap` ids seen.
#[derive(Debug)]
pub struct Dedupe {
    set: HashSet<String>,
    order: VecDeque<String>,
    cap: usize,
}

impl Dedupe {
    /// Keeps at most `cap` ids.
    pub fn new(cap: usize) -> Dedupe {
        Dedupe {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// True the first time `id` is seen.
    pub fn first(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(id.to_string());
        self.order.push_back(id.to_string());
        true
    }
}

/// A structured event from `/events`: its JSON text and object.
#[derive(Debug, Clone)]
pub struct Structured {
    /// The `data:` text as sent.
    pub raw: String,
    /// It parsed.
    pub obj: Object,
}

impl Structured {
    /// `seq` (from the JSON, else the SSE id).
    pub fn seq(&self) -> Option<u64> {
        u64_of(&self.obj, "seq")
    }
    /// The field `k` as text ("" when absent).
    pub fn get(&self, k: &str) -> &str {
        str_of(&self.obj, k).unwrap_or("")
    }
    /// A message (not a receipt or a system note).
    pub fn is_message(&self) -> bool {
        matches!(self.get("type"), "" | "message")
    }
}

/// A followed `/events` stream: reconnects with backoff (1 s doubling to 10 s, reset by a
/// successful connection), resumes with `since=<last seq>`, and never gives an event twice
/// (seq at or below the last one given; a message id given before).
#[derive(Debug)]
pub struct Follow {
    surface: Surface,
    /// `/events?channel=…` without `since`.
    base: String,
    since: Option<u64>,
    conn: Option<SseConn>,
    backoff: Duration,
    connected: bool,
    /// Stop at the first broken stream instead of reconnecting.
    pub once: bool,
    ids: Dedupe,
}

impl Follow {
    /// Follows `channel` from after `since` (`None`: from now).
    pub fn new(surface: Surface, channel: &str, since: Option<u64>) -> Follow {
        Follow {
            surface,
            base: format!("/events?channel={channel}"),
            since,
            conn: None,
            backoff: Duration::from_secs(1),
            connected: false,
            once: false,
            ids: Dedupe::new(4096),
        }
    }

    fn path(&self) -> String {
        match self.since {
            Some(s) => format!("{}&since={s}", self.base),
            None => self.base.clone(),
        }
    }

    /// The next new event. The first connection failing is an error (nothing answers); a
    /// later loss is reported on stderr and retried (unless `once`).
    pub async fn next(&mut self) -> Result<Structured, CmdError> {
        loop {
            if self.conn.is_none() {
                match SseConn::open(&self.surface, &self.path(), self.since).await {
                    Ok(c) => {
                        self.conn = Some(c);
                        self.connected = true;
                        self.backoff = Duration::from_secs(1);
                    }
                    Err(OpenError::Fatal(e)) => return Err(e),
                    Err(OpenError::Retry(why)) if !self.connected => {
                        return Err(self.surface.unreachable(&why));
                    }
                    Err(OpenError::Retry(why)) => {
                        self.wait(&why).await?;
                        continue;
                    }
                }
            }
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            match conn.next().await {
                Ok(ev) => {
                    let Ok(Value::Object(obj)) = miniserde::json::from_str::<Value>(&ev.data)
                    else {
                        continue; // not a structured event (a newer server's extra)
                    };
                    let mut s = Structured { raw: ev.data, obj };
                    if s.seq().is_none()
                        && let Some(id) = ev.id.as_deref().and_then(|i| i.parse::<u64>().ok())
                    {
                        s.obj.insert("seq".into(), Value::Number(Number::U64(id)));
                    }
                    if let (Some(seq), Some(last)) = (s.seq(), self.since)
                        && seq <= last
                    {
                        continue;
                    }
                    if let Some(seq) = s.seq() {
                        self.since = Some(seq);
                    }
                    if s.is_message() && !s.get("id").is_empty() && !self.ids.first(s.get("id")) {
                        continue;
                    }
                    return Ok(s);
                }
                Err(why) => {
                    self.conn = None;
                    self.wait(&why).await?;
                }
            }
        }
    }

    async fn wait(&mut self, why: &str) -> Result<(), CmdError> {
        if self.once {
            return Err(CmdError::fail(format!(
                "the event stream from {} ended: {why}",
                self.surface.addr
            )));
        }
        super::say_err(&format!(
            "skychat: event stream lost ({why}); reconnecting in {} s",
            self.backoff.as_secs()
        ));
        Timer::after(self.backoff).await;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(10));
        Ok(())
    }
}

/// A timestamp field as ms (numbers above 10^11 are ms, smaller ones seconds).
pub fn ts_ms(o: &Object, k: &str) -> Option<u64> {
    u64_of(o, k).map(|t| if t > 100_000_000_000 { t } else { t * 1000 })
}

/// Parses `5s`, `500ms`, `1m`, `0` or a plain number of seconds.
pub fn parse_wait(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s}: expected a duration such as 5s, 500ms, 1m or 0"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!(
            "{s}: unit {unit:?} is not ms, s or m (e.g. 5s, 500ms, 1m)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    #[test]
    fn sse_parser_splits_events_across_reads() {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        let text =
            ": connected\n\nid: 7\ndata: {\"a\":1}\r\n\nevent: x\ndata: l1\ndata:l2\n\n: ping\n\n";
        for b in text.as_bytes().chunks(3) {
            p.push(b, &mut out).unwrap();
        }
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].id.as_deref(), Some("7"));
        assert_eq!(out[0].data, "{\"a\":1}");
        assert_eq!(out[1].event.as_deref(), Some("x"));
        assert_eq!(out[1].data, "l1\nl2");
        let mut huge = SseParser::default();
        assert!(huge.push(&vec![b'a'; MAX_LINE + 1], &mut out).is_err());
    }

    #[test]
    fn chunked_bodies_decode_incrementally() {
        let mut b = Body::Chunked {
            line: Vec::new(),
            left: 0,
        };
        let mut out = Vec::new();
        for piece in "5\r\nhello\r\n3;ext\r\n ab\r\n0\r\n\r\n"
            .as_bytes()
            .chunks(2)
        {
            b.feed(piece, &mut out).unwrap();
        }
        assert_eq!(out, b"hello ab");
        assert!(matches!(b, Body::Done));
        let mut bad = Body::Chunked {
            line: Vec::new(),
            left: 0,
        };
        assert!(bad.feed(b"zz\r\n", &mut out).is_err());
    }

    #[test]
    fn addresses_times_and_dedupe() {
        assert_eq!(
            normalize_addr("http://127.0.0.1:8002/").unwrap(),
            ("127.0.0.1:8002".to_string(), 8002)
        );
        assert!(normalize_addr("localhost").is_err());
        assert!(normalize_addr(":80").is_err());
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_796_198_142_000), "2026-12-02 07:55:42");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        let mut d = Dedupe::new(2);
        assert!(d.first("a") && d.first("b") && !d.first("a"));
        assert!(d.first("c"));
        assert!(d.first("a"), "the oldest id was forgotten at the cap");
    }

    /// A fake skychat: each connection gets the next canned answer; the request heads are
    /// recorded.
    fn fake(answers: Vec<String>) -> (String, std::sync::mpsc::Receiver<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for a in answers {
                let Ok((mut s, _)) = l.accept() else { return };
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let _ = tx.send(head);
                let _ = s.write_all(a.as_bytes());
            }
        });
        (addr, rx)
    }

    fn chunk(s: &str) -> String {
        format!("{:x}\r\n{s}\r\n", s.len())
    }

    fn msg(seq: u64, id: &str, text: &str) -> String {
        chunk(&format!(
            "id: {seq}\ndata: {{\"seq\":{seq},\"id\":\"{id}\",\"type\":\"message\",\"text\":\"{text}\"}}\n\n"
        ))
    }

    #[test]
    fn follow_reconnects_resumes_with_since_and_gives_each_event_once() {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
        let first = format!(
            "{head}{}{}{}",
            chunk(": connected\n\n"),
            msg(10, "a1", "one"),
            msg(11, "a2", "two")
        );
        // The first stream breaks (no last chunk); the second replays seq 11, then a
        // message id already given under a new seq, then a new one.
        let second = format!(
            "{head}{}{}{}0\r\n\r\n",
            msg(11, "a2", "two"),
            msg(12, "a2", "two again"),
            msg(13, "a3", "three")
        );
        let (addr, heads) = fake(vec![first, second]);
        let s = Surface {
            addr,
            token: Ok("tok".into()),
        };
        let mut f = Follow::new(s, "dm", None);
        let got: Vec<String> = async_io::block_on(async {
            let mut v = Vec::new();
            for _ in 0..3 {
                v.push(f.next().await.unwrap().get("text").to_string());
            }
            v
        });
        assert_eq!(got, ["one", "two", "three"]);
        let h1 = heads.recv().unwrap();
        assert!(
            h1.starts_with("GET /events?channel=dm HTTP/1.1\r\n"),
            "{h1}"
        );
        assert!(h1.contains("Authorization: Bearer tok\r\n"), "{h1}");
        let h2 = heads.recv().unwrap();
        assert!(
            h2.starts_with("GET /events?channel=dm&since=11 HTTP/1.1\r\n"),
            "{h2}"
        );
        assert!(h2.contains("Last-Event-ID: 11\r\n"), "{h2}");
    }

    #[test]
    fn errors_say_what_to_do() {
        // Nothing listens: "no skychat answers", at the first connection.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = Surface {
            addr: format!("127.0.0.1:{port}"),
            token: Err("no token file".into()),
        };
        let e = async_io::block_on(s.json("GET", "/status", None)).unwrap_err();
        assert!(
            e.msg.contains("no skychat answers on 127.0.0.1:"),
            "{}",
            e.msg
        );
        assert!(e.msg.contains("app status skychat"), "{}", e.msg);
        let mut f = Follow::new(s, "dm", None);
        let e = async_io::block_on(f.next()).unwrap_err();
        assert!(e.msg.contains("no skychat answers"), "{}", e.msg);
        // 401 explains the token; 400 passes the server's error on; not retried.
        let (addr, _h) = fake(vec![
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".into(),
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 33\r\n\r\n{\"error\":\"channel: dm or system\"}".into(),
        ]);
        let s = Surface {
            addr,
            token: Err("/x/skychat-http-8001.token: no skychat token".into()),
        };
        let e = async_io::block_on(s.json("GET", "/status", None)).unwrap_err();
        assert!(e.msg.contains("no skychat token"), "{}", e.msg);
        let mut f = Follow::new(s, "bogus", None);
        let e = async_io::block_on(f.next()).unwrap_err();
        assert!(e.msg.contains("channel: dm or system"), "{}", e.msg);
    }
}
