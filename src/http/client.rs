//! A minimal HTTP/1.1 client on httparse, generic over the stream (TCP now; dmsg streams for
//! `skywire dmsg curl`). One request per connection (`Connection: close`); response bodies
//! by `Content-Length`, chunked, or to the end of the stream, bounded by a limit.

use std::fmt;
use std::time::Duration;

use async_io::Timer;
use async_net::TcpStream;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest response header block accepted.
const MAX_HEAD: usize = 16 * 1024;

/// A parsed `http://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host:port` (port defaulted to 80).
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses an `http://` URL; `https` is refused (the overlay encrypts, loopback needs no
    /// TLS), as is anything that is not a plain authority and path.
    pub fn parse(url: &str) -> Result<HttpUrl, HttpError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| HttpError::Url(format!("{url}: only http:// URLs are supported")))?;
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if auth.is_empty() || auth.contains('@') || auth.chars().any(char::is_whitespace) {
            return Err(HttpError::Url(format!("{url}: bad host")));
        }
        let authority = if auth
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            auth.to_string()
        } else {
            format!("{auth}:80")
        };
        Ok(HttpUrl {
            authority,
            path: path.to_string(),
        })
    }

    /// The URL joined with `path` (which starts with `/`).
    pub fn join(&self, path: &str) -> HttpUrl {
        let base = self.path.trim_end_matches('/');
        HttpUrl {
            authority: self.authority.clone(),
            path: format!("{base}{path}"),
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

/// Why a request failed.
#[derive(Debug)]
pub enum HttpError {
    /// The URL is not usable.
    Url(String),
    /// Connecting or talking failed.
    Io(String),
    /// The server's answer is not valid HTTP (what is wrong).
    BadResponse(String),
    /// The answer is bigger than the limit.
    TooLarge(usize),
    /// No complete answer in time.
    Timeout(Duration),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Url(m) => write!(f, "{m}"),
            HttpError::Io(m) => write!(f, "{m}"),
            HttpError::BadResponse(m) => write!(f, "bad HTTP response: {m}"),
            HttpError::TooLarge(n) => write!(f, "response larger than {n} bytes"),
            HttpError::Timeout(d) => write!(f, "no response within {} s", d.as_secs()),
        }
    }
}

impl std::error::Error for HttpError {}

/// A response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request over `stream` and reads the response (at most `max_body` bytes of body).
pub async fn request_on<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    method: &str,
    host: &str,
    path: &str,
    body: Option<&[u8]>,
    max_body: usize,
) -> Result<HttpResponse, HttpError> {
    request_on_with(stream, method, host, path, &[], body, max_body).await
}

/// [`request_on`] with extra request headers (names and values are ours: no CR/LF).
pub async fn request_on_with<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    max_body: usize,
) -> Result<HttpResponse, HttpError> {
    exchange(stream, method, host, path, "close", headers, body, max_body).await
}

/// One request (with `Connection: connection`) and its response.
#[allow(clippy::too_many_arguments)]
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    method: &str,
    host: &str,
    path: &str,
    connection: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    max_body: usize,
) -> Result<HttpResponse, HttpError> {
    let out = request_bytes(method, host, path, connection, headers, body)?;
    send_request(stream, &out).await?;
    let (status, headers, rest) = read_head(stream).await?;
    let body = read_body(stream, method, status, &headers, rest, max_body).await?;
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// [`request_on`] on a connection kept open for the next request (`Connection:
/// keep-alive`): the answer must be framed by its length, as our server's are.
pub async fn request_keep_alive<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    method: &str,
    host: &str,
    path: &str,
    body: Option<&[u8]>,
    max_body: usize,
) -> Result<HttpResponse, HttpError> {
    exchange(
        stream,
        method,
        host,
        path,
        "keep-alive",
        &[],
        body,
        max_body,
    )
    .await
}

/// The request line, headers (`Connection: connection`, then `headers`) and body.
fn request_bytes(
    method: &str,
    host: &str,
    path: &str,
    connection: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Vec<u8>, HttpError> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: skywire-rs/{}\r\nAccept: */*\r\nConnection: {connection}\r\n",
        crate::VERSION
    );
    for (k, v) in headers {
        if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
            return Err(HttpError::Url(format!("header {k:?} is not sendable")));
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
    Ok(out)
}

fn io_err(e: std::io::Error) -> HttpError {
    HttpError::Io(e.to_string())
}

async fn send_request<S: AsyncWrite + Unpin>(stream: &mut S, out: &[u8]) -> Result<(), HttpError> {
    stream.write_all(out).await.map_err(io_err)?;
    stream.flush().await.map_err(io_err)
}

/// Status, headers (names lowercased) and the bytes read past the head.
type Head = (u16, Vec<(String, String)>, Vec<u8>);

/// Reads a response head (at most [`MAX_HEAD`] bytes).
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Head, HttpError> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await.map_err(io_err)?;
        if n == 0 {
            return Err(HttpError::BadResponse(
                "connection closed before a response".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut hs);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).trim().to_string(),
                        )
                    })
                    .collect();
                let status = resp.code.unwrap_or(0);
                return Ok((status, headers, buf.split_off(len)));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => return Err(HttpError::TooLarge(MAX_HEAD)),
            Err(e) => return Err(HttpError::BadResponse(e.to_string())),
        }
    }
}

/// Reads the body of a response to `method` whose head said `status` and `headers`, `rest`
/// being what was read past the head.
async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    method: &str,
    status: u16,
    headers: &[(String, String)],
    mut rest: Vec<u8>,
    max_body: usize,
) -> Result<Vec<u8>, HttpError> {
    let mut chunk = [0u8; 8192];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let no_body =
        method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    if no_body {
        Ok(Vec::new())
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        read_chunked(stream, rest, max_body).await
    } else if let Some(len) = find("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| HttpError::BadResponse(format!("Content-Length {len:?}")))?;
        if len > max_body {
            return Err(HttpError::TooLarge(max_body));
        }
        while rest.len() < len {
            let n = stream.read(&mut chunk).await.map_err(io_err)?;
            if n == 0 {
                return Err(HttpError::BadResponse(format!(
                    "body ended after {} of {len} bytes",
                    rest.len()
                )));
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        Ok(rest)
    } else {
        loop {
            if rest.len() > max_body {
                return Err(HttpError::TooLarge(max_body));
            }
            let n = stream.read(&mut chunk).await.map_err(io_err)?;
            if n == 0 {
                return Ok(rest);
            }
            rest.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A connection switched to another protocol by `101 Switching Protocols`: reads give the
/// bytes the server sent right after the response head first (they came with it), then the
/// stream's; writes go to the stream.
#[derive(Debug)]
pub struct Switched<S> {
    stream: S,
    rest: Vec<u8>,
    off: usize,
}

impl<S> Switched<S> {
    /// The stream, and the bytes read past the response head that nobody has read yet.
    pub fn into_parts(mut self) -> (S, Vec<u8>) {
        self.rest.drain(..self.off);
        (self.stream, self.rest)
    }

    /// The stream (for socket options).
    pub fn get_ref(&self) -> &S {
        &self.stream
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Switched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.off < this.rest.len() {
            let n = buf.len().min(this.rest.len() - this.off);
            buf[..n].copy_from_slice(&this.rest[this.off..this.off + n]);
            this.off += n;
            if this.off == this.rest.len() {
                this.rest = Vec::new();
                this.off = 0;
            }
            return std::task::Poll::Ready(Ok(n));
        }
        std::pin::Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Switched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_close(cx)
    }
}

/// What an upgrade request got.
#[derive(Debug)]
pub enum Upgrade<S> {
    /// `101 Switching Protocols` to the protocol asked for: the connection is now that.
    Switched(Switched<S>),
    /// Any other answer, with its body (at most the `max_body` given): the connection is
    /// closed.
    Refused(HttpResponse),
}

/// Asks the server at the other end of `stream` to switch to `protocol`: `method path` with
/// `Connection: Upgrade`, `Upgrade: protocol`, an empty body and `headers`. A `101` naming
/// `protocol` gives the connection back as [`Switched`] (with whatever the server sent after
/// the head); a `101` to another protocol is an error; any other status is
/// [`Upgrade::Refused`] with its body. No timeout: the caller bounds the exchange.
pub async fn upgrade_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    host: &str,
    path: &str,
    protocol: &str,
    headers: &[(&str, &str)],
    max_body: usize,
) -> Result<Upgrade<S>, HttpError> {
    let mut hs: Vec<(&str, &str)> = vec![("Upgrade", protocol), ("Content-Length", "0")];
    hs.extend_from_slice(headers);
    let out = request_bytes(method, host, path, "Upgrade", &hs, None)?;
    send_request(&mut stream, &out).await?;
    let (status, headers, rest) = read_head(&mut stream).await?;
    if status == 101 {
        let to = headers.iter().find(|(k, _)| k == "upgrade").map(|(_, v)| v);
        if !to.is_some_and(|v| v.eq_ignore_ascii_case(protocol)) {
            return Err(HttpError::BadResponse(format!(
                "101 to {:?}, not {protocol:?}",
                to.map_or("nothing", |v| v.as_str())
            )));
        }
        return Ok(Upgrade::Switched(Switched {
            stream,
            rest,
            off: 0,
        }));
    }
    let body = read_body(&mut stream, method, status, &headers, rest, max_body).await?;
    Ok(Upgrade::Refused(HttpResponse {
        status,
        headers,
        body,
    }))
}

async fn read_chunked<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut buf: Vec<u8>,
    max_body: usize,
) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        // Size line.
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            if buf.len() > 1024 {
                return Err(HttpError::BadResponse("chunk size line too long".into()));
            }
            more(stream, &mut buf).await?;
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| HttpError::BadResponse(format!("chunk size {size_hex:?}")))?;
        buf.drain(..line_end + 2);
        if size == 0 {
            return Ok(body);
        }
        if body.len() + size > max_body {
            return Err(HttpError::TooLarge(max_body));
        }
        while buf.len() < size + 2 {
            more(stream, &mut buf).await?;
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

/// Reads more of a chunked body into `buf`.
async fn more<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Result<(), HttpError> {
    let mut chunk = [0u8; 8192];
    let n = stream
        .read(&mut chunk)
        .await
        .map_err(|e| HttpError::Io(e.to_string()))?;
    if n == 0 {
        return Err(HttpError::BadResponse("chunked body ended early".into()));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// One request to an `http://` URL over TCP, bounded by `timeout`.
pub async fn request(
    url: &HttpUrl,
    method: &str,
    body: Option<&[u8]>,
    max_body: usize,
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    request_with(url, method, &[], body, max_body, timeout).await
}

/// [`request`] with extra request headers.
pub async fn request_with(
    url: &HttpUrl,
    method: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    max_body: usize,
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    let work = async {
        let mut s = TcpStream::connect(url.authority.as_str())
            .await
            .map_err(|e| HttpError::Io(format!("cannot connect to {}: {e}", url.authority)))?;
        request_on_with(
            &mut s,
            method,
            &url.authority,
            &url.path,
            headers,
            body,
            max_body,
        )
        .await
    };
    futures_lite::future::or(work, async {
        Timer::after(timeout).await;
        Err(HttpError::Timeout(timeout))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use futures_lite::io::Cursor;

    /// A fake connection: the request goes to `sent`, the canned response is read back.
    #[derive(Debug)]
    struct Fake {
        sent: Vec<u8>,
        resp: Cursor<Vec<u8>>,
    }

    impl AsyncRead for Fake {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            // Dribble a few bytes at a time to exercise the partial paths.
            let n = buf.len().min(7);
            std::pin::Pin::new(&mut self.resp).poll_read(cx, &mut buf[..n])
        }
    }

    impl AsyncWrite for Fake {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.sent.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn run(resp: &str, max: usize) -> (Result<HttpResponse, HttpError>, String) {
        let mut f = Fake {
            sent: Vec::new(),
            resp: Cursor::new(resp.as_bytes().to_vec()),
        };
        let r = block_on(request_on(&mut f, "POST", "h:1", "/x", Some(b"{}"), max));
        (r, String::from_utf8(f.sent).unwrap())
    }

    #[test]
    fn content_length_chunked_and_eof_bodies() {
        let (r, sent) = run(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA",
            100,
        );
        assert!(
            sent.starts_with("POST /x HTTP/1.1\r\nHost: h:1\r\n"),
            "{sent}"
        );
        assert!(sent.ends_with("Content-Length: 2\r\n\r\n{}"), "{sent}");
        let r = r.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        let (r, _) = run(
            "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            100,
        );
        assert_eq!(r.unwrap().body, b"abcde");
        let (r, _) = run("HTTP/1.0 404 Not Found\r\n\r\nto the end", 100);
        let r = r.unwrap();
        assert_eq!((r.status, r.text().as_str()), (404, "to the end"));
    }

    #[test]
    fn limits_and_garbage() {
        let (r, _) = run("HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n", 100);
        assert!(matches!(r, Err(HttpError::TooLarge(100))));
        let (r, _) = run("SSH-2.0-OpenSSH\r\n\r\n", 100);
        assert!(matches!(r, Err(HttpError::BadResponse(_))));
        let (r, _) = run("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", 100);
        assert!(matches!(r, Err(HttpError::BadResponse(_))));
        let (r, _) = run(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            100,
        );
        assert!(matches!(r, Err(HttpError::BadResponse(_))));
    }

    #[test]
    fn upgrades_keep_the_bytes_after_the_head_and_refusals_their_body() {
        let up = |resp: &str| {
            let f = Fake {
                sent: Vec::new(),
                resp: Cursor::new(resp.as_bytes().to_vec()),
            };
            block_on(upgrade_on(
                f,
                "POST",
                "h:1",
                "/v1/dial/x/1",
                "skywire-stream",
                &[("Authorization", "Bearer t")],
                1024,
            ))
        };
        let r = up(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: Skywire-Stream\r\n\r\nearly bytes",
        );
        let Ok(Upgrade::Switched(mut s)) = r else {
            panic!("{r:?}")
        };
        let sent = String::from_utf8(s.get_ref().sent.clone()).unwrap();
        assert!(
            sent.starts_with("POST /v1/dial/x/1 HTTP/1.1\r\nHost: h:1\r\n"),
            "{sent}"
        );
        for h in [
            "Connection: Upgrade\r\n",
            "Upgrade: skywire-stream\r\n",
            "Content-Length: 0\r\n",
            "Authorization: Bearer t\r\n",
        ] {
            assert!(sent.contains(h), "{h}: {sent}");
        }
        let mut b = [0u8; 5];
        block_on(s.read_exact(&mut b)).unwrap();
        assert_eq!(&b, b"early");
        // The rest comes from what was read with the head, then from the stream.
        let mut tail = Vec::new();
        block_on(s.read_to_end(&mut tail)).unwrap();
        assert_eq!(tail, b" bytes");
        assert!(s.into_parts().1.is_empty());

        let r = up("HTTP/1.1 401 Unauthorized\r\nContent-Length: 17\r\n\r\n{\"error\":\"token\"}");
        let Ok(Upgrade::Refused(resp)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (401, r#"{"error":"token"}"#)
        );
        let r = up("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
        assert!(matches!(r, Err(HttpError::BadResponse(_))), "{r:?}");
        let r = up("HTTP/1.1 101 Switching Protocols\r\n\r\n");
        assert!(matches!(r, Err(HttpError::BadResponse(_))), "{r:?}");
    }

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://127.0.0.1:9090").unwrap();
        assert_eq!(u.authority, "127.0.0.1:9090");
        assert_eq!(u.path, "/");
        assert_eq!(
            u.join("/health").to_string(),
            "http://127.0.0.1:9090/health"
        );
        let u = HttpUrl::parse("http://disc.example/api/").unwrap();
        assert_eq!(u.authority, "disc.example:80");
        assert_eq!(u.join("/entries").path, "/api/entries");
        for bad in ["https://x", "ftp://x", "http://", "http://u@h/"] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
