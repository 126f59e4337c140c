//! The local side of a skysocks-client instance: a SOCKS5 front (every local TCP connection
//! is answered as a SOCKS5 server would, then carried as one overlay stream to the skysocks
//! server, whose SOCKS5 handshake this side makes) and an optional HTTP proxy front (CONNECT,
//! and absolute-URI requests rewritten to origin form). [`upstream`] is the one way both
//! reach the server: a dial with retries and backoff, then the SOCKS5 client handshake.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::{InstanceCfg, Stats};
use crate::app::conn::Conn;
use crate::app::splice::splice;
use crate::app::{AppCtx, Signal};
use crate::apps::socks5::{self, Auth, HandshakeError, Host, Reply};
use crate::spawn::Spawn;

/// How long one dial of the server may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait between dial attempts; doubled per attempt.
pub const RETRY_START: Duration = Duration::from_millis(250);
/// The largest HTTP request head the HTTP front reads.
pub const MAX_HTTP_HEAD: usize = 8 * 1024;

/// What one accept loop needs.
pub(super) struct Front {
    pub cfg: Arc<InstanceCfg>,
    pub stats: Arc<Stats>,
    /// The app (its network, executor, and stop signal).
    pub ctx: AppCtx,
    /// Raised when the instance stops.
    pub stop: Signal,
}

/// A slot among the instance's local connections; given back when dropped.
struct Active(Arc<Stats>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Front {
    fn take(&self) -> Option<Active> {
        let n = self.stats.active.fetch_add(1, Ordering::Relaxed);
        if n >= self.cfg.max_conns as u64 {
            self.stats.active.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        self.stats.total.fetch_add(1, Ordering::Relaxed);
        Some(Active(self.stats.clone()))
    }

    /// Accepts local connections forever, serving each in its own task (`http`: the HTTP
    /// front, else SOCKS5).
    pub async fn run(self: Arc<Self>, listener: TcpListener, http: bool) {
        loop {
            let tcp = match listener.accept().await {
                Ok((t, _)) => t,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    log::warn!("skysocks-client {}: accept: {e}", self.cfg.name);
                    Timer::after(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let Some(slot) = self.take() else {
                // At the cap: closed at once, so the ones being served go on unaffected.
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let me = self.clone();
            self.ctx
                .ex
                .spawn_boxed(async move {
                    let serve = async {
                        if http {
                            me.serve_http(tcp).await;
                        } else {
                            me.serve_socks(tcp).await;
                        }
                    };
                    // Stopping the instance or the app ends its connections.
                    future::or(serve, future::or(me.stop.wait(), me.ctx.stopped())).await;
                    drop(slot);
                })
                .detach();
        }
    }

    async fn serve_socks(&self, mut tcp: TcpStream) {
        let acc = match socks5::within(
            socks5::HANDSHAKE_TIMEOUT,
            socks5::accept(&mut tcp, &Auth::Open),
        )
        .await
        {
            Some(Ok(a)) => a,
            Some(Err(HandshakeError::Io(_))) | None => return,
            Some(Err(e)) => {
                log::info!("skysocks-client {}: local client: {e}", self.cfg.name);
                return;
            }
        };
        let mut up = match self.upstream(&acc.host, acc.port).await {
            Ok(c) => c,
            Err(r) => {
                let _ = socks5::send_reply(&mut tcp, r, None).await;
                return;
            }
        };
        if socks5::send_reply(&mut tcp, Reply::Succeeded, None)
            .await
            .is_err()
        {
            return;
        }
        if !acc.early.is_empty() && up.write_all(&acc.early).await.is_err() {
            return;
        }
        splice(tcp, up, Some(&self.stats.bytes)).await;
    }

    /// A stream to the server with its SOCKS5 handshake for `host`:`port` done, or the reply
    /// to give the local client. Dials are retried with backoff (`tries` in all) unless the
    /// server answered: then its answer is final.
    pub async fn upstream(&self, host: &Host, port: u16) -> Result<Conn, Reply> {
        let cfg = &self.cfg;
        let mut wait = RETRY_START;
        let mut attempt = 1;
        // The SOCKS5 greeting, passcode and request leave with the stream's open (one round
        // trip for the open and the server's CONNECT together).
        let request = socks5::connect_request(host, port, cfg.passcode.as_deref());
        let mut conn = loop {
            let dial =
                self.ctx
                    .net
                    .dial_first(cfg.server, super::SERVER_PORT, cfg.via, request.clone());
            let err = match socks5::within(DIAL_TIMEOUT, dial).await {
                Some(Ok(c)) => break c,
                Some(Err(e)) => (socks5::reply_for_net(&e), e.to_string(), e.is_transient()),
                None => (
                    Reply::TtlExpired,
                    format!(
                        "dial {}: timed out after {} s",
                        cfg.server,
                        DIAL_TIMEOUT.as_secs()
                    ),
                    true,
                ),
            };
            // Nothing listens there (no skysocks on the peer) will not change by retrying.
            let final_ = err.0 == Reply::ConnectionRefused || err.0 == Reply::NotAllowed;
            if final_ || attempt >= cfg.tries {
                if err.0 == Reply::NotAllowed {
                    self.stats.refused(&err.1);
                } else {
                    self.stats.down(&err.1);
                }
                log::info!(
                    "skysocks-client {}: server {} unreachable ({} tries): {}",
                    cfg.name,
                    cfg.server,
                    attempt,
                    err.1
                );
                return Err(err.0);
            }
            Timer::after(wait).await;
            wait = wait.saturating_mul(2);
            attempt += 1;
        };
        let hs = socks5::connect_answer(&mut conn, cfg.passcode.as_deref());
        let res = socks5::within(socks5::HANDSHAKE_TIMEOUT, hs).await;
        if !matches!(res, Some(Ok(()))) {
            let _ = conn.close().await;
        }
        match res {
            Some(Ok(())) => {
                self.stats.up(None);
                Ok(conn)
            }
            Some(Err(e)) => {
                let r = e.reply();
                let why = format!("{host}:{port}: {e}");
                // The server is there; only its refusals of us mark it as a problem.
                if r == Reply::NotAllowed {
                    self.stats.refused(&why);
                } else {
                    self.stats.up(Some(&why));
                }
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                log::info!("skysocks-client {}: {host}:{port}: {e}", cfg.name);
                Err(r)
            }
            None => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .down("the server did not answer the SOCKS5 handshake in time");
                Err(Reply::TtlExpired)
            }
        }
    }

    async fn serve_http(&self, mut tcp: TcpStream) {
        let head = match socks5::within(socks5::HANDSHAKE_TIMEOUT, read_head(&mut tcp)).await {
            Some(Ok(h)) => h,
            Some(Err(HeadError::Io)) => return,
            Some(Err(HeadError::TooLarge)) => {
                let _ = respond(&mut tcp, 431, "request head larger than 8 KiB").await;
                return;
            }
            None => {
                let _ = respond(&mut tcp, 408, "request head not sent in time").await;
                return;
            }
        };
        let req = match parse_http(&head.bytes[..head.len]) {
            Ok(r) => r,
            Err((status, why)) => {
                let _ = respond(&mut tcp, status, &why).await;
                return;
            }
        };
        let mut up = match self.upstream(&req.host, req.port).await {
            Ok(c) => c,
            Err(r) => {
                let status = match r {
                    Reply::NotAllowed => 403,
                    Reply::TtlExpired => 504,
                    _ => 502,
                };
                let why = format!(
                    "skysocks-client {}: {}:{} through {}: {}",
                    self.cfg.name,
                    req.host,
                    req.port,
                    self.cfg.server,
                    r.text()
                );
                let _ = respond(&mut tcp, status, &why).await;
                return;
            }
        };
        let rest = &head.bytes[req.head_len..head.len];
        let sent = match &req.forward {
            None => {
                tcp.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_ok()
                    && up.write_all(rest).await.is_ok()
            }
            Some(h) => up.write_all(h).await.is_ok() && up.write_all(rest).await.is_ok(),
        };
        if sent {
            splice(tcp, up, Some(&self.stats.bytes)).await;
        }
    }
}

/// A request head as read.
struct Head {
    bytes: Box<[u8; MAX_HTTP_HEAD]>,
    len: usize,
}

#[derive(Debug)]
enum HeadError {
    Io,
    TooLarge,
}

/// Reads until the end of the head (`\r\n\r\n`) is in the buffer.
async fn read_head(tcp: &mut TcpStream) -> Result<Head, HeadError> {
    let mut h = Head {
        bytes: Box::new([0; MAX_HTTP_HEAD]),
        len: 0,
    };
    loop {
        if h.len == MAX_HTTP_HEAD {
            return Err(HeadError::TooLarge);
        }
        let n = tcp
            .read(&mut h.bytes[h.len..])
            .await
            .map_err(|_| HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Io);
        }
        let from = h.len.saturating_sub(3);
        h.len += n;
        if h.bytes[from..h.len].windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(h);
        }
    }
}

/// A parsed proxy request.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpReq {
    /// Where to.
    pub host: Host,
    /// Its port.
    pub port: u16,
    /// The head to send there (`None`: CONNECT, nothing to send).
    pub forward: Option<Vec<u8>>,
    /// How long the received head was (the bytes after it are the body's start).
    pub head_len: usize,
}

/// Headers that are about the hop to the proxy, not for the origin server.
const HOP_HEADERS: &[&str] = &[
    "proxy-connection",
    "proxy-authorization",
    "connection",
    "keep-alive",
];

/// Parses a proxy request head: CONNECT `host:port`, or an absolute `http://` URI whose
/// request is rewritten to origin form with `Connection: close` (one request per
/// connection). Errors are the status and the reason to answer.
pub fn parse_http(b: &[u8]) -> Result<HttpReq, (u16, String)> {
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Request::new(&mut hs);
    let head_len = match r.parse(b) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err((400, "incomplete request head".into())),
        Err(e) => return Err((400, format!("not an HTTP request: {e}"))),
    };
    let (Some(method), Some(target)) = (r.method, r.path) else {
        return Err((400, "no request line".into()));
    };
    if method == "CONNECT" {
        let (host, port) = host_port(target, None)?;
        return Ok(HttpReq {
            host,
            port,
            forward: None,
            head_len,
        });
    }
    let Some(rest) = target.strip_prefix("http://") else {
        return Err(if target.starts_with("https://") {
            (400, "https:// through this proxy: use CONNECT".into())
        } else {
            (
                400,
                "this is a proxy: send an absolute URI (http://host/path) or CONNECT host:port"
                    .into(),
            )
        });
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = host_port(authority, Some(80))?;
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let mut out = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    let mut has_host = false;
    for h in r.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        if HOP_HEADERS.contains(&name.as_str()) {
            continue;
        }
        has_host |= name == "host";
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if !has_host {
        out.extend_from_slice(format!("Host: {authority}\r\n").as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    Ok(HttpReq {
        host,
        port,
        forward: Some(out),
        head_len,
    })
}

/// `host:port` (IPv6 in brackets); `default` when the port is absent (absolute URIs).
fn host_port(s: &str, default: Option<u16>) -> Result<(Host, u16), (u16, String)> {
    let bad = || (400, format!("{s:?} is not host:port"));
    let (h, p) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or_else(bad)?;
        let after = &rest[end + 1..];
        let p = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(bad()),
        };
        (&s[..end + 2], p)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match p {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
        None => default.ok_or_else(bad)?,
    };
    let host = Host::parse(h).map_err(|_| bad())?;
    Ok((host, port))
}

/// A short plain-text answer, then the connection closes.
async fn respond(tcp: &mut TcpStream, status: u16, why: &str) -> io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    let body = format!("{why}\n");
    let msg = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(msg.as_bytes()).await?;
    tcp.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_requests() {
        let r = parse_http(b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\nhello").unwrap();
        assert_eq!(r.host, Host::Name("example.com".into()));
        assert_eq!((r.port, r.forward.is_none()), (443, true));
        assert_eq!(r.head_len, 45);
        let r = parse_http(b"CONNECT [::1]:8080 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!((r.host.to_string(), r.port), ("[::1]".into(), 8080));
        let e = parse_http(b"CONNECT example.com HTTP/1.1\r\n\r\n").unwrap_err();
        assert_eq!(e.0, 400);
    }

    #[test]
    fn absolute_uris_rewritten() {
        let r = parse_http(
            b"GET http://10.0.0.1:8000/a/b?c=1 HTTP/1.1\r\nHost: 10.0.0.1:8000\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.host.to_string(), r.port), ("10.0.0.1".into(), 8000));
        assert_eq!(
            String::from_utf8(r.forward.unwrap()).unwrap(),
            "GET /a/b?c=1 HTTP/1.1\r\nHost: 10.0.0.1:8000\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        let r = parse_http(b"GET http://example.com HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(r.port, 80);
        assert_eq!(
            String::from_utf8(r.forward.unwrap()).unwrap(),
            "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn hostile_requests_refused() {
        for (req, want) in [
            (&b"GET /index.html HTTP/1.1\r\n\r\n"[..], "absolute URI"),
            (b"GET https://x/ HTTP/1.1\r\n\r\n", "use CONNECT"),
            (b"\x05\x01\x00\r\n\r\n", "not an HTTP request"),
            (b"GET http://a b/ HTTP/1.1\r\n\r\n", "not an HTTP request"),
            (b"GET http://host:99999/ HTTP/1.1\r\n\r\n", "not host:port"),
            (b"GET http://:80/ HTTP/1.1\r\n\r\n", "not host:port"),
            (b"CONNECT [::1 HTTP/1.1\r\n\r\n", "not host:port"),
        ] {
            let e = parse_http(req).unwrap_err();
            assert_eq!(e.0, 400);
            assert!(
                e.1.contains(want),
                "{}: {}",
                String::from_utf8_lossy(req),
                e.1
            );
        }
    }
}
