//! A minimal HTTP/1.1 server on httparse, generic over the byte stream, so the same code serves
//! loopback TCP (RPC, discovery, hypervisor) and overlay streams (the log server over dmsg).
//!
//! What it does: keep-alive and pipelining, `Content-Length` request bodies, `Expect:
//! 100-continue`, and `Connection: close` / HTTP/1.0 semantics. What it refuses, with a status
//! and a JSON error body, then closes: malformed requests (400), chunked or otherwise encoded
//! request bodies (411), bodies over the limit (413, before reading them), header blocks over
//! the limit (431), and a client that is too slow to send its request (408). A connection that
//! goes idle between requests is closed quietly. Nothing a client sends can make it allocate
//! more than the header limit plus the body limit. `HEAD` is served as `GET` without the
//! body (handlers see `GET`).
//!
//! [`serve`] bounds connections in total and per source address, shedding idle ones first
//! when a limit is reached (see [`super::conns`]), so idle sockets cannot lock others out.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_executor::Executor;
use async_io::Timer;
use async_net::TcpListener;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::conns::{AddrKey, ConnTable, Slot};
use super::json::{Ordered, Out};
use super::stream::{self, BodyRx, BodyTx, SseTx, StreamOpts};
use crate::crypto::PublicKey;
use crate::spawn::Spawn;

/// Bounds on what one client may cost.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request line + header block.
    pub max_header_bytes: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Time allowed from the first byte of a request to the end of its body.
    pub request_timeout: Duration,
    /// How long a connection may wait for (the first byte of) a request before it is closed.
    pub idle_timeout: Duration,
    /// The idle timeout when the listener (or the client's address) is at three quarters of
    /// its connection limit or more.
    pub pressure_idle_timeout: Duration,
    /// Concurrent connections per listener. At the limit the longest-idle connection is
    /// closed to make room; when none is idle the new one is answered 503 and closed.
    pub max_connections: usize,
    /// Concurrent connections per source address (IPv4 address or IPv6 /64), with the same
    /// shedding: that address's longest-idle connection goes first.
    pub max_connections_per_addr: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 8 * 1024,
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            pressure_idle_timeout: Duration::from_secs(2),
            max_connections: 256,
            max_connections_per_addr: 32,
        }
    }
}

/// The largest number of headers a request may carry.
const MAX_HEADERS: usize = 48;

/// One parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method, as sent (`GET`, `POST`, …).
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The query string after `?`, if any (not decoded).
    pub query: Option<String>,
    /// Headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (empty when there is none).
    pub body: Vec<u8>,
    /// Who sent it, when the transport knows (TCP); `None` on overlay streams.
    pub peer: Option<SocketAddr>,
    /// The sender's public key on overlay streams; `None` on TCP.
    pub peer_pk: Option<PublicKey>,
}

impl Request {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of query parameter `key` (no percent-decoding; our parameters are hex and
    /// numbers).
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then_some(v)
        })
    }

    /// The path split into its non-empty segments.
    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }
}

/// A connection the server can serve: any byte stream (loopback TCP, an overlay stream).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Sets `TCP_NODELAY` where the stream is a TCP socket (a no-op on others).
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        let _ = on;
        Ok(())
    }
}

impl Stream for async_net::TcpStream {
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        async_net::TcpStream::set_nodelay(self, on)
    }
}

/// An upgraded connection: whatever stream the server was serving, after its `101`.
pub struct Upgraded(Box<dyn Stream>);

impl Upgraded {
    /// Wraps `s`.
    pub fn new(s: impl Stream) -> Upgraded {
        Upgraded(Box::new(s))
    }

    /// Sets `TCP_NODELAY` when the connection is TCP (a no-op on overlay streams).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.0.set_nodelay(on)
    }
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upgraded")
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_close(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_close(cx)
    }
}

/// What takes over a connection after a `101 Switching Protocols` response: it is handed
/// the connection, TCP or overlay alike (connections of [`serve`] and [`serve_on`]).
pub type UpgradeFn = Box<dyn FnOnce(Upgraded) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// An upgrade attached to a response (taken once).
#[derive(Clone, Default)]
pub struct Upgrade(Arc<std::sync::Mutex<Option<UpgradeFn>>>);

impl std::fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upgrade")
    }
}

impl Upgrade {
    fn take(&self) -> Option<UpgradeFn> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// A streaming body attached to a response (taken once; see [`super::stream`]).
#[derive(Debug, Clone)]
pub struct StreamBody(Arc<std::sync::Mutex<Option<BodyRx>>>);

impl StreamBody {
    fn take(&self) -> Option<BodyRx> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// A response to send.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Set by [`Response::switching`]: the connection is handed over after the response.
    pub upgrade: Option<Upgrade>,
    /// Set by [`Response::streaming`] and [`Response::sse`]: the body is written as it is
    /// produced (`body` is then unused).
    pub stream: Option<StreamBody>,
}

impl Response {
    /// `101 Switching Protocols` to `protocol`; then `f` gets the connection. On a
    /// connection that cannot be upgraded (not from [`serve`]) it is closed instead.
    pub fn switching(protocol: &str, f: UpgradeFn) -> Response {
        Response {
            status: 101,
            content_type: "application/octet-stream",
            headers: vec![("Upgrade", protocol.to_string())],
            body: Vec::new(),
            upgrade: Some(Upgrade(Arc::new(std::sync::Mutex::new(Some(f))))),
            stream: None,
        }
    }

    /// A body written as it is produced (chunked on HTTP/1.1): the returned sender feeds it,
    /// typically from a task the handler spawns; the body ends when every sender is gone.
    /// `opts` is the connection's budget (see [`super::stream`]); its keep-alive is unused.
    pub fn streaming(
        status: u16,
        content_type: &'static str,
        opts: &StreamOpts,
    ) -> (Response, BodyTx) {
        Self::stream_with(status, content_type, opts, None)
    }

    /// An NDJSON stream (`application/x-ndjson`): send one JSON text and `\n` per item.
    pub fn ndjson(opts: &StreamOpts) -> (Response, BodyTx) {
        Self::streaming(200, "application/x-ndjson", opts)
    }

    /// A Server-Sent Events stream (`text/event-stream`), with a `: keep-alive` comment after
    /// `opts.keepalive` without an event.
    pub fn sse(opts: &StreamOpts) -> (Response, SseTx) {
        let (r, tx) = Self::stream_with(200, "text/event-stream", opts, Some(stream::KEEPALIVE));
        (r.with_header("Cache-Control", "no-cache"), tx.into())
    }

    fn stream_with(
        status: u16,
        content_type: &'static str,
        opts: &StreamOpts,
        keepalive: Option<&'static [u8]>,
    ) -> (Response, BodyTx) {
        let (tx, rx) = stream::channel(opts, keepalive);
        let resp = Response {
            status,
            content_type,
            headers: Vec::new(),
            body: Vec::new(),
            upgrade: None,
            stream: Some(StreamBody(Arc::new(std::sync::Mutex::new(Some(rx))))),
        };
        (resp, tx)
    }

    /// A JSON response.
    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.into_bytes(),
            upgrade: None,
            stream: None,
        }
    }

    /// `{"error": msg}` with `status`.
    pub fn error(status: u16, msg: impl Into<String>) -> Response {
        let body = Ordered::new().field("error", Out::Str(msg.into()));
        Response::json(status, body.to_compact() + "\n")
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.into().into_bytes(),
            upgrade: None,
            stream: None,
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// The reason phrase for the statuses we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// A boxed response future.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response> + Send + 'static>>;

/// What serves requests: called once per request.
pub type Handler = Arc<dyn Fn(Request) -> ResponseFuture + Send + Sync + 'static>;

/// Wraps a synchronous function as a [`Handler`].
pub fn sync_handler<F>(f: F) -> Handler
where
    F: Fn(Request) -> Response + Send + Sync + 'static,
{
    Arc::new(move |req| {
        let resp = f(req);
        Box::pin(async move { resp })
    })
}

/// Why a request could not be read; each maps to a status (or to a quiet close).
#[derive(Debug)]
enum ReadError {
    /// The peer closed or went idle between requests: close without a response.
    Quiet,
    /// Answer with this status and message, then close.
    Reply(u16, String),
}

/// Reads one request from `stream`, using and refilling `buf` (which may already hold
/// pipelined bytes). Returns the request and leaves any following bytes in `buf`.
async fn read_request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    limits: &Limits,
    peer: Option<Peer>,
    slot: Option<&Slot>,
) -> Result<(Request, Conn), ReadError> {
    // Wait for the first byte of the next request under the idle timeout (shorter under
    // pressure; the wait ends early when the connection is shed), then give the whole request
    // the request timeout.
    let mut chunk = [0u8; 4096];
    if buf.is_empty() {
        let idle = match slot {
            Some(s) if s.under_pressure() => limits.pressure_idle_timeout.min(limits.idle_timeout),
            _ => limits.idle_timeout,
        };
        if let Some(s) = slot {
            s.idle();
        }
        let shed = async {
            match slot {
                Some(s) => s.shed().await,
                None => futures_lite::future::pending().await,
            }
            None
        };
        let n = futures_lite::future::or(with_timeout(idle, stream.read(&mut chunk)), shed)
            .await
            .ok_or(ReadError::Quiet)?
            .map_err(|_| ReadError::Quiet)?;
        if n == 0 {
            return Err(ReadError::Quiet);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if slot.is_some_and(|s| !s.busy()) {
        return Err(ReadError::Quiet);
    }
    let deadline = Timer::after(limits.request_timeout);
    let read_rest = async {
        // Header block.
        let (head_len, mut req, conn, body_len, expect_continue) = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Request::new(&mut headers);
            let status = parsed.parse(buf).map_err(|e| {
                let msg = match e {
                    httparse::Error::TooManyHeaders => {
                        return ReadError::Reply(
                            431,
                            format!("more than {MAX_HEADERS} header fields"),
                        );
                    }
                    other => format!("malformed request: {other}"),
                };
                ReadError::Reply(400, msg)
            })?;
            match status {
                httparse::Status::Complete(n) => {
                    let head = head_of(&parsed, peer)?;
                    break (n, head.0, head.1, head.2, head.3);
                }
                httparse::Status::Partial => {
                    if buf.len() >= limits.max_header_bytes {
                        return Err(ReadError::Reply(
                            431,
                            format!(
                                "request header block over {} bytes",
                                limits.max_header_bytes
                            ),
                        ));
                    }
                    let n = stream
                        .read(&mut chunk)
                        .await
                        .map_err(|_| ReadError::Quiet)?;
                    if n == 0 {
                        return Err(ReadError::Quiet);
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        };
        if head_len > limits.max_header_bytes {
            return Err(ReadError::Reply(
                431,
                format!(
                    "request header block over {} bytes",
                    limits.max_header_bytes
                ),
            ));
        }
        if body_len > limits.max_body_bytes {
            return Err(ReadError::Reply(
                413,
                format!(
                    "request body of {body_len} bytes is over the limit of {}",
                    limits.max_body_bytes
                ),
            ));
        }
        buf.drain(..head_len);
        if expect_continue && body_len > buf.len() {
            stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(|_| ReadError::Quiet)?;
        }
        while buf.len() < body_len {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|_| ReadError::Quiet)?;
            if n == 0 {
                return Err(ReadError::Quiet);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        req.body = buf.drain(..body_len).collect();
        Ok((req, conn))
    };
    let timeout = async {
        deadline.await;
        Err(ReadError::Reply(
            408,
            "request not received in time".to_string(),
        ))
    };
    futures_lite::future::or(read_rest, timeout).await
}

/// What the request says about its connection.
#[derive(Debug, Clone, Copy)]
struct Conn {
    keep_alive: bool,
    /// An HTTP/1.0 client: no chunked responses.
    http10: bool,
}

/// The request head: the request, the connection, body length, `Expect: 100-continue`.
type Head = (Request, Conn, usize, bool);

fn head_of(parsed: &httparse::Request<'_, '_>, peer: Option<Peer>) -> Result<Head, ReadError> {
    let method = parsed.method.unwrap_or("").to_string();
    let target = parsed.path.unwrap_or("");
    if !target.starts_with('/') {
        return Err(ReadError::Reply(
            400,
            format!("request target must be a path, got {target:?}"),
        ));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    let http10 = parsed.version == Some(0);
    let mut keep_alive = !http10;
    let mut body_len = 0usize;
    let mut seen_length = false;
    let mut expect_continue = false;
    let mut headers = Vec::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let Ok(value) = std::str::from_utf8(h.value) else {
            return Err(ReadError::Reply(400, format!("header {name} is not UTF-8")));
        };
        // Optional whitespace around a field value is not part of it (RFC 9110 §5.5).
        let value = value.trim_matches([' ', '\t']).to_string();
        match name.as_str() {
            "content-length" => {
                // 1*DIGIT and nothing else: no sign, no inner spaces, no list.
                let n = Some(&value)
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or_else(|| {
                        ReadError::Reply(400, format!("invalid Content-Length {value:?}"))
                    })?;
                if seen_length && n != body_len {
                    return Err(ReadError::Reply(
                        400,
                        "conflicting Content-Length headers".to_string(),
                    ));
                }
                seen_length = true;
                body_len = n;
            }
            "transfer-encoding" => {
                return Err(ReadError::Reply(
                    411,
                    "request bodies must be sent with Content-Length, not Transfer-Encoding"
                        .to_string(),
                ));
            }
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.split(',').any(|t| t.trim() == "close") {
                    keep_alive = false;
                } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                    keep_alive = true;
                }
            }
            "expect" => expect_continue = value.eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
        headers.push((name, value));
    }
    let req = Request {
        method,
        path,
        query,
        headers,
        body: Vec::new(),
        peer: match peer {
            Some(Peer::Addr(a)) => Some(a),
            _ => None,
        },
        peer_pk: match peer {
            Some(Peer::Key(k)) => Some(k),
            _ => None,
        },
    };
    let conn = Conn { keep_alive, http10 };
    Ok((req, conn, body_len, expect_continue))
}

/// Runs `fut`, or gives up after `d` (`None`).
async fn with_timeout<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        Timer::after(d).await;
        None
    })
    .await
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Content-Length: n`.
    Length(usize),
    /// `Transfer-Encoding: chunked` (a streaming body to an HTTP/1.1 client).
    Chunked,
    /// Neither: the body ends with the connection (a streaming body to an HTTP/1.0 client).
    UntilClose,
}

/// The status line and headers of `resp`.
fn head_of_response(resp: &Response, keep_alive: bool, framing: Framing) -> String {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type
    );
    match framing {
        Framing::Length(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
        Framing::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
        Framing::UntilClose => {}
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n"
    } else {
        "Connection: close\r\n"
    });
    push_headers(&mut head, resp);
    head
}

/// `resp`'s extra headers and the blank line.
fn push_headers(head: &mut String, resp: &Response) {
    for (k, v) in &resp.headers {
        // Header values we send never carry CR/LF (they are ours), but make sure.
        let v: String = v.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
}

/// Writes `resp`; `keep_alive` decides the `Connection` header. A streaming response gets
/// its head only (`Transfer-Encoding: chunked`); its body is written by the server.
pub async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    resp: &Response,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let framing = if resp.stream.is_some() {
        Framing::Chunked
    } else {
        Framing::Length(resp.body.len())
    };
    write_framed(stream, resp, keep_alive, head_only, framing).await
}

async fn write_framed<S: AsyncWrite + Unpin>(
    stream: &mut S,
    resp: &Response,
    keep_alive: bool,
    head_only: bool,
    framing: Framing,
) -> io::Result<()> {
    if resp.status == 101 {
        let mut head = String::from("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n");
        push_headers(&mut head, resp);
        stream.write_all(head.as_bytes()).await?;
        return stream.flush().await;
    }
    let mut out = head_of_response(resp, keep_alive, framing).into_bytes();
    if !head_only && resp.stream.is_none() {
        out.extend_from_slice(&resp.body);
    }
    stream.write_all(&out).await?;
    stream.flush().await
}

/// Serves requests on one connection until it closes, errs, or asks to close. A connection
/// cannot be upgraded here (an upgrade response closes it); [`serve`]'s and [`serve_on`]'s
/// can.
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: Option<SocketAddr>,
    handler: Handler,
    limits: Limits,
) {
    let peer = peer.map(Peer::Addr);
    if let Some((mut s, _)) = serve_until_upgrade(stream, peer, handler, limits, None).await {
        let _ = s.close().await;
    }
}

/// [`serve_connection`] for a connection from a known peer (an overlay stream: handlers see
/// its key in [`Request::peer_pk`]). A `101` answer hands the connection to its upgrade,
/// which runs before this returns; true then.
pub async fn serve_connection_from<S: Stream>(
    stream: S,
    peer: Peer,
    handler: Handler,
    limits: Limits,
) -> bool {
    match serve_until_upgrade(stream, Some(peer), handler, limits, None).await {
        Some((s, f)) => {
            f(Upgraded::new(s)).await;
            true
        }
        None => false,
    }
}

/// Writes `resp` unless the client does not take it within the request timeout (a client
/// that never reads must not hold its connection busy for good).
async fn send<S: AsyncWrite + Unpin>(
    stream: &mut S,
    resp: &Response,
    keep_alive: bool,
    head_only: bool,
    limits: &Limits,
) -> io::Result<()> {
    let framing = Framing::Length(resp.body.len());
    send_framed(stream, resp, keep_alive, head_only, framing, limits).await
}

async fn send_framed<S: AsyncWrite + Unpin>(
    stream: &mut S,
    resp: &Response,
    keep_alive: bool,
    head_only: bool,
    framing: Framing,
    limits: &Limits,
) -> io::Result<()> {
    with_timeout(
        limits.request_timeout,
        write_framed(stream, resp, keep_alive, head_only, framing),
    )
    .await
    .unwrap_or_else(|| Err(io::ErrorKind::TimedOut.into()))
}

/// Writes a streaming response: the head, then the body as it is produced. `Ok(true)` when
/// the connection may serve another request; `Err` says why the stream was cut.
async fn send_stream<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    resp: &Response,
    body: BodyRx,
    conn: Conn,
    head_only: bool,
    buf: &mut Vec<u8>,
    limits: &Limits,
) -> Result<bool, String> {
    // An HTTP/1.0 client cannot take chunks: the body runs until the close.
    let (keep_alive, framing) = if conn.http10 {
        (false, Framing::UntilClose)
    } else {
        (conn.keep_alive, Framing::Chunked)
    };
    if let Err(e) = send_framed(stream, resp, keep_alive, head_only, framing, limits).await {
        body.close("the response head was not taken");
        return Err(format!("head not taken: {e}"));
    }
    if head_only {
        body.close("a HEAD request");
        return Ok(keep_alive);
    }
    let chunked = framing == Framing::Chunked;
    body.write_to(stream, chunked, buf, limits.max_header_bytes)
        .await
        .map(|()| keep_alive)
}

/// [`serve_connection`], returning the stream and the upgrade when a handler answered
/// `101 Switching Protocols`. The client must wait for the 101 before sending more: bytes
/// that came with the request are refused (400). With a `slot`, the connection is marked
/// idle while it waits for a request and closes when it is shed.
async fn serve_until_upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: Option<Peer>,
    handler: Handler,
    limits: Limits,
    slot: Option<&Slot>,
) -> Option<(S, UpgradeFn)> {
    let mut buf = Vec::new();
    loop {
        match read_request(&mut stream, &mut buf, &limits, peer, slot).await {
            Ok((mut req, conn)) => {
                // HEAD is GET without the body (the headers, Content-Length included, are
                // those of the GET answer).
                let head_only = req.method == "HEAD";
                if head_only {
                    req.method = "GET".to_string();
                }
                let mut resp = handler(req).await;
                if let Some(up) = resp.upgrade.take().and_then(|u| u.take()) {
                    if !buf.is_empty() {
                        let r = Response::error(400, "data sent before 101 Switching Protocols");
                        let _ = send(&mut stream, &r, false, false, &limits).await;
                        break;
                    }
                    if send(&mut stream, &resp, false, false, &limits)
                        .await
                        .is_err()
                    {
                        break;
                    }
                    return Some((stream, up));
                }
                if let Some(body) = resp.stream.take().and_then(|b| b.take()) {
                    let (s, b, l) = (&mut stream, &mut buf, &limits);
                    match send_stream(s, &resp, body, conn, head_only, b, l).await {
                        Ok(true) => continue,
                        Ok(false) => break,
                        Err(why) => {
                            log::debug!("http: streaming response to {peer:?} cut: {why}");
                            break;
                        }
                    }
                }
                if send(&mut stream, &resp, conn.keep_alive, head_only, &limits)
                    .await
                    .is_err()
                    || !conn.keep_alive
                {
                    break;
                }
            }
            Err(ReadError::Quiet) => break,
            Err(ReadError::Reply(status, msg)) => {
                log::debug!("http: {status} to {peer:?}: {msg}");
                let r = Response::error(status, msg);
                let _ = send(&mut stream, &r, false, false, &limits).await;
                break;
            }
        }
    }
    let _ = stream.close().await;
    None
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client's address.
    Addr(SocketAddr),
    /// An overlay peer's public key.
    Key(PublicKey),
}

impl Peer {
    /// The unit the connection limits count this peer in.
    pub fn limit_key(&self) -> AddrKey {
        match self {
            Peer::Addr(a) => AddrKey::of(a.ip()),
            Peer::Key(k) => AddrKey::Key(*k),
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Addr(a) => write!(f, "{a}"),
            Peer::Key(k) => write!(f, "{k}"),
        }
    }
}

/// Where a server's connections come from: a TCP listener, an overlay port.
pub trait Accept: Send + Sync + 'static {
    /// The connections it yields.
    type Conn: Stream;
    /// The next connection and who it is from. An error that [`serve_on`] cannot ride out
    /// (anything but a transient accept error) ends the server.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Conn, Peer)>> + Send;
}

impl Accept for TcpListener {
    type Conn = async_net::TcpStream;

    async fn accept(&self) -> io::Result<(Self::Conn, Peer)> {
        let (s, a) = TcpListener::accept(self).await?;
        // Responses go out in one write each, but a stream's events are small writes that
        // must not wait for the previous one's ACK (Nagle).
        let _ = s.set_nodelay(true);
        Ok((s, Peer::Addr(a)))
    }
}

/// Accepts connections on `listener` forever, serving each on its own task of `ex`, within
/// `limits.max_connections` in total and `limits.max_connections_per_addr` per source
/// address: at a limit an idle connection is closed to make room, and when none is idle the
/// new one is answered 503 and closed.
pub async fn serve(
    listener: TcpListener,
    ex: Arc<Executor<'static>>,
    handler: Handler,
    limits: Limits,
) -> io::Result<()> {
    serve_on(listener, ex, handler, limits).await
}

/// [`serve`] on any listener: TCP, or an overlay port (then `max_connections_per_addr`
/// counts per peer key, and handlers see the key in [`Request::peer_pk`]). Upgrades hand the
/// connection over whatever it is.
pub async fn serve_on<L: Accept>(
    listener: L,
    ex: Arc<Executor<'static>>,
    handler: Handler,
    limits: Limits,
) -> io::Result<()> {
    let table = ConnTable::new(limits.max_connections, limits.max_connections_per_addr);
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) if is_transient(&e) => {
                log::warn!("http: accept failed: {e}; retrying");
                Timer::after(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let slot = match table.admit_key(peer.limit_key()) {
            Ok(s) => s,
            Err(msg) => {
                log::debug!("http: refused {peer}: {msg}");
                let limits = limits.clone();
                ex.spawn_boxed(async move {
                    let resp = Response::error(503, msg);
                    let _ = send(&mut stream, &resp, false, false, &limits).await;
                })
                .detach();
                continue;
            }
        };
        let (handler, limits) = (handler.clone(), limits.clone());
        ex.spawn_boxed(async move {
            let up = serve_until_upgrade(stream, Some(peer), handler, limits, Some(&slot)).await;
            // An upgraded connection is no longer HTTP: it leaves the table.
            drop(slot);
            if let Some((stream, f)) = up {
                f(Upgraded::new(stream)).await;
            }
        })
        .detach();
    }
}

/// Accept errors that a server should ride out (out of descriptors, aborted handshakes).
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e.raw_os_error() == Some(24) // EMFILE
        || e.raw_os_error() == Some(23) // ENFILE
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use std::io::{Read, Write};

    fn echo_handler() -> Handler {
        sync_handler(|req| {
            let body = Ordered::new()
                .field("method", Out::Str(req.method.clone()))
                .field("path", Out::Str(req.path.clone()))
                .field("q", Out::Str(req.query_param("x").unwrap_or("").into()))
                .field("len", Out::U64(req.body.len() as u64));
            Response::json(200, body.to_compact())
        })
    }

    /// Starts a server with `limits` on a background executor thread; returns its address.
    fn start(limits: Limits) -> SocketAddr {
        let ex = Arc::new(Executor::new());
        let listener = block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let ex2 = ex.clone();
        std::thread::spawn(move || {
            block_on(ex2.run(serve(listener, ex2.clone(), echo_handler(), limits))).ok();
        });
        addr
    }

    fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(raw).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn get_post_keepalive_and_pipelining() {
        let addr = start(Limits::default());
        let out = exchange(
            addr,
            b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /p HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        );
        let first = out.find(r#"{"method":"GET","path":"/a/b","q":"1","len":0}"#);
        let second = out.find(r#"{"method":"POST","path":"/p","q":"","len":3}"#);
        assert!(
            first.is_some() && second.is_some() && first < second,
            "{out}"
        );
        assert!(out.contains("Connection: keep-alive"), "{out}");
        assert!(out.ends_with(r#""len":3}"#), "{out}");
    }

    #[test]
    fn hostile_requests_get_a_status_and_a_close() {
        let limits = Limits {
            max_header_bytes: 512,
            max_body_bytes: 100,
            request_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let addr = start(limits);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"\x16\x03\x01garbage\r\n\r\n".to_vec(), "400 Bad Request"),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n".to_vec(),
                "413 Content Too Large",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n".to_vec(),
                "400 Bad Request",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
                "411 Length Required",
            ),
            (
                format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(600)).into_bytes(),
                "431 ",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: slow".to_vec(),
                "408 Request Timeout",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc".to_vec(),
                "408 Request Timeout",
            ),
            (
                b"GET http://x/ HTTP/1.1\r\n\r\n".to_vec(),
                "400 Bad Request",
            ),
        ];
        // Content-Length is 1*DIGIT: no sign, no inner space, no list, no other digits.
        let mut cases = cases;
        for cl in [
            "+5", "-0", "5 5", "5,5", "0x5", "5a", "a5", "", "\u{0665}", "1e1",
        ] {
            cases.push((
                format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\nhello").into_bytes(),
                "400 Bad Request",
            ));
        }
        for (raw, want) in cases {
            let out = exchange(addr, &raw);
            assert!(
                out.starts_with(&format!("HTTP/1.1 {want}")),
                "{want}: {out}"
            );
            assert!(out.contains("\"error\":"), "{out}");
        }
        // The server still answers a well-behaved client afterwards.
        let out = exchange(addr, b"GET /ok HTTP/1.0\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(out.contains("Connection: close"), "{out}");
    }

    #[test]
    fn expect_continue() {
        let addr = start(Limits::default());
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"POST /x HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut first = [0u8; 25];
        s.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
        s.write_all(b"hi").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 200 OK") && out.contains("\"len\":2"),
            "{out}"
        );
    }

    #[test]
    fn content_length_with_whitespace_around_it_is_fine() {
        let addr = start(Limits::default());
        let out = exchange(
            addr,
            b"POST /p HTTP/1.1\r\nContent-Length: \t3 \r\nConnection: close\r\n\r\nabc",
        );
        assert!(
            out.starts_with("HTTP/1.1 200") && out.contains("\"len\":3"),
            "{out}"
        );
    }

    #[test]
    fn head_is_get_without_the_body() {
        let addr = start(Limits::default());
        let out = exchange(addr, b"HEAD /h HTTP/1.1\r\nConnection: close\r\n\r\n");
        let get = r#"{"method":"GET","path":"/h","q":"","len":0}"#;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(
            out.contains(&format!("Content-Length: {}\r\n", get.len())),
            "{out}"
        );
        assert!(out.ends_with("\r\n\r\n"), "{out}");
    }

    /// An overlay-like listener: Unix sockets, every peer the same key.
    struct Unix(async_net::unix::UnixListener, PublicKey);

    impl Stream for async_net::unix::UnixStream {}

    impl Accept for Unix {
        type Conn = async_net::unix::UnixStream;

        async fn accept(&self) -> io::Result<(Self::Conn, Peer)> {
            let (s, _) = self.0.accept().await?;
            Ok((s, Peer::Key(self.1)))
        }
    }

    /// Sends `raw` on a fresh Unix connection to `path`; everything read until the close.
    fn unix_exchange(path: &std::path::Path, raw: &[u8]) -> String {
        let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(raw).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// The payload of the chunked body at the start of `s`, and what follows it.
    fn dechunk(mut s: &str) -> (String, &str) {
        let mut body = String::new();
        loop {
            let (size, rest) = s.split_once("\r\n").unwrap();
            let n = usize::from_str_radix(size, 16).unwrap();
            let (data, rest) = rest.split_at(n);
            body.push_str(data);
            s = rest.strip_prefix("\r\n").unwrap();
            if n == 0 {
                return (body, s);
            }
        }
    }

    #[test]
    fn streams_keep_alive_and_upgrades_work_on_any_stream() {
        let dir = std::env::temp_dir().join(format!("skywire-http-unix-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let pk = *crate::crypto::Keypair::from_seed(&[3; 32]).public();
        let listener = Unix(async_net::unix::UnixListener::bind(&dir).unwrap(), pk);
        let handler = sync_handler(move |req| match req.path.as_str() {
            "/count" => {
                assert_eq!(req.peer_pk, Some(pk));
                let n: usize = req.query_param("n").unwrap_or("0").parse().unwrap();
                let (resp, tx) = Response::ndjson(&StreamOpts::default());
                std::thread::spawn(move || {
                    for i in 0..n {
                        std::thread::sleep(Duration::from_millis(5));
                        tx.send(format!("{{\"i\":{i}}}\n")).unwrap();
                    }
                });
                resp
            }
            "/up" => Response::switching(
                "echo",
                Box::new(|mut s| {
                    Box::pin(async move {
                        let _ = s.set_nodelay(true);
                        let _ = s.write_all(b"hi\n").await;
                        let mut b = [0u8; 64];
                        while let Ok(n @ 1..) = s.read(&mut b).await {
                            let _ = s.write_all(&b[..n]).await;
                        }
                    })
                }),
            ),
            _ => Response::error(404, "no"),
        });
        let ex = Arc::new(Executor::new());
        let ex2 = ex.clone();
        std::thread::spawn(move || {
            block_on(ex2.run(serve_on(listener, ex2.clone(), handler, Limits::default()))).ok();
        });

        // Two pipelined requests: the second is read while the first streams, and answered
        // after the first's last chunk on the same connection.
        let out = unix_exchange(
            &dir,
            b"GET /count?n=3 HTTP/1.1\r\n\r\nGET /count?n=1 HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        let (head, rest) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(
            head.ends_with("Transfer-Encoding: chunked\r\nConnection: keep-alive"),
            "{out}"
        );
        let (body, rest) = dechunk(rest);
        assert_eq!(body, "{\"i\":0}\n{\"i\":1}\n{\"i\":2}\n");
        let (head, rest) = rest.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(head.ends_with("Connection: close"), "{out}");
        assert_eq!(dechunk(rest), ("{\"i\":0}\n".to_string(), ""));

        // HEAD of a stream: the head alone, and the connection goes on.
        let out = unix_exchange(
            &dir,
            b"HEAD /count?n=2 HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(
            out.contains("chunked\r\nConnection: keep-alive\r\n\r\nHTTP/1.1 404"),
            "{out}"
        );

        // The upgrade helper of the client against the server's upgrade, on a Unix socket.
        block_on(async {
            let c = async_net::unix::UnixStream::connect(&dir).await.unwrap();
            let up = super::super::client::upgrade_on(c, "POST", "x", "/up", "echo", &[], 1024);
            let super::super::client::Upgrade::Switched(mut s) = up.await.unwrap() else {
                panic!("not switched")
            };
            let mut b = [0u8; 3];
            s.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"hi\n");
            s.write_all(b"ping").await.unwrap();
            let mut b = [0u8; 4];
            s.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"ping");
        });
        let _ = std::fs::remove_file(&dir);
    }

    /// Reads until EOF or `secs`; true on EOF (the server closed the connection).
    fn closed_by_server(s: &mut std::net::TcpStream, secs: u64) -> bool {
        s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
        let mut b = [0u8; 512];
        loop {
            match s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }

    #[test]
    fn at_the_limit_idle_connections_are_shed_and_busy_ones_kept() {
        let limits = Limits {
            max_connections: 2,
            max_connections_per_addr: 2,
            ..Limits::default()
        };
        let addr = start(limits);
        // Two idle connections fill the listener; a third client is served anyway, and
        // the longest-idle connection is the one closed for it.
        let mut idle1 = std::net::TcpStream::connect(addr).unwrap();
        let out = exchange(addr, b"GET /warm HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        let mut idle2 = std::net::TcpStream::connect(addr).unwrap();
        // Make sure idle2 is accepted after idle1 before the next one arrives.
        idle2.write_all(b"GET /a HTTP/1.1\r\n\r\n").unwrap();
        let mut b = [0u8; 256];
        assert!(idle2.read(&mut b).unwrap() > 0);
        let out = exchange(addr, b"GET /b HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(
            closed_by_server(&mut idle1, 5),
            "the oldest idle one is shed"
        );
        // Busy connections (a request under way) are not shed: with two of them, the
        // next client is refused.
        // (The 100 Continue shows the server has read the head, so the connection is busy.)
        let busy: Vec<_> = (0..2)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s.write_all(
                    b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
                )
                .unwrap();
                let mut first = [0u8; 25];
                s.read_exact(&mut first).unwrap();
                assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
                s
            })
            .collect();
        assert!(
            closed_by_server(&mut idle2, 5),
            "idle2 made room for a busy one"
        );
        let out = exchange(addr, b"GET /c HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 503"), "{out}");
        assert!(out.contains("too many connections"), "{out}");
        drop(busy);
    }
}
