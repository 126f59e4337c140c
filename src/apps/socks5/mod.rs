//! SOCKS5, shared by the apps that speak it (skysocks, skysocks-client, the resolvers):
//! [`proto`] is the sans-IO protocol (parsers and emitters); this module drives it over any
//! byte stream — the server side of the handshake ([`accept`]), the client side
//! ([`connect`]), the reply after a connect attempt ([`send_reply`]) — and maps failures to
//! reply codes ([`reply_for_net`] for overlay dials, [`reply_for_io`] for TCP connects,
//! [`connect_tcp`] resolving names where it runs).
//!
//! Everything is bounded: the handshake reads into a fixed buffer of [`HANDSHAKE_BUF`]
//! bytes (the longest pipelined greeting + user/pass + request fits), and callers run it
//! under [`HANDSHAKE_TIMEOUT`].

pub mod proto;

use core::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use async_io::Timer;
use async_net::TcpStream;
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::app::net::NetError;
pub use proto::{Command, Host, ProtoError, Reply};

/// How long a peer may take over its greeting, authentication and request together.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connect to the destination may take (then: TTL expired).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The handshake read buffer: a pipelined greeting (257), user/pass (513) and request (262).
pub const HANDSHAKE_BUF: usize = 1100;

/// How the server side of a handshake authenticates its client.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// No authentication required; a client that only offers user/pass is let in whatever
    /// it sends (a local proxy front: the overlay side does the authenticating).
    Open,
    /// RFC 1929 user/pass, with this code as the username or the password.
    Passcode(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Open => f.write_str("Open"),
            Auth::Passcode(_) => f.write_str("Passcode(..)"),
        }
    }
}

/// Why a handshake ended without a request to serve. The peer has been answered (method
/// "none acceptable", auth failure, or the reply code) where the protocol has an answer.
#[derive(Debug)]
pub enum HandshakeError {
    /// The stream failed or closed.
    Io(io::Error),
    /// Bytes that are not SOCKS5 (answered where they could be: see [`ProtoError`]).
    Proto(ProtoError),
    /// No offered method is acceptable (user/pass needed, not offered).
    NoMethod,
    /// Wrong user/pass.
    BadPasscode,
    /// A command other than CONNECT (answered "command not supported").
    Unsupported(Command),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "socks5: {e}"),
            HandshakeError::Proto(e) => write!(f, "socks5: {e}"),
            HandshakeError::NoMethod => {
                f.write_str("socks5: client offered no acceptable method (a passcode is needed)")
            }
            HandshakeError::BadPasscode => f.write_str("socks5: wrong passcode"),
            HandshakeError::Unsupported(c) => {
                write!(f, "socks5: command {} not supported", c.to_u8())
            }
        }
    }
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

/// A CONNECT request the handshake accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Where to.
    pub host: Host,
    /// Its port.
    pub port: u16,
    /// Bytes the client sent after its request (pipelined data for the destination).
    pub early: Vec<u8>,
    /// Answers not sent yet ([`accept_held`]: the method choice and passcode verdict of a
    /// client that pipelined its request), to go out with the reply.
    pub pending: Vec<u8>,
}

impl Accepted {
    /// Sends what is pending and the reply (`bound`: the address the server connected from,
    /// on success) in one write.
    pub async fn reply<S: AsyncWrite + Unpin>(
        &self,
        s: &mut S,
        r: Reply,
        bound: Option<SocketAddr>,
    ) -> io::Result<()> {
        send_held(s, &mut self.pending.clone(), &reply_bytes(r, bound)).await
    }
}

/// The handshake's read buffer.
struct Buf {
    data: [u8; HANDSHAKE_BUF],
    len: usize,
}

impl Buf {
    /// Reads more; end of stream is an error (the handshake is not finished).
    async fn fill<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> io::Result<()> {
        if self.len == self.data.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "handshake too long",
            ));
        }
        let n = s.read(&mut self.data[self.len..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.len += n;
        Ok(())
    }

    fn consume(&mut self, n: usize) {
        self.data.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// Parses the next message with `p`, reading until it is whole.
    async fn next<S, T>(
        &mut self,
        s: &mut S,
        p: impl Fn(&[u8]) -> proto::Parsed<T>,
    ) -> Result<Result<T, ProtoError>, io::Error>
    where
        S: AsyncRead + Unpin,
    {
        loop {
            match p(&self.data[..self.len]) {
                Ok(Some((t, n))) => {
                    self.consume(n);
                    return Ok(Ok(t));
                }
                Ok(None) => self.fill(s).await?,
                Err(e) => return Ok(Err(e)),
            }
        }
    }
}

/// The server side of a handshake: greeting, authentication per `auth`, the request. A
/// CONNECT is returned for the caller to attempt and answer with [`send_reply`]; anything
/// else has been answered (where SOCKS5 has an answer) and is an error. The caller bounds
/// the time ([`HANDSHAKE_TIMEOUT`]).
pub async fn accept<S>(s: &mut S, auth: &Auth) -> Result<Accepted, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_inner(s, auth, false).await
}

/// [`accept`], but when the client pipelined (its next message is already here) the method
/// choice and passcode verdict are held back and returned in [`Accepted::pending`], to leave
/// with the reply ([`Accepted::reply`]): over the overlay that is one frame for the whole
/// answer instead of three. A client that waits for each answer gets it at once.
pub async fn accept_held<S>(s: &mut S, auth: &Auth) -> Result<Accepted, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_inner(s, auth, true).await
}

/// Holds `bytes` back behind what is held when `hold`, else sends it all now.
async fn answer<S: AsyncWrite + Unpin>(
    s: &mut S,
    held: &mut Vec<u8>,
    bytes: &[u8],
    hold: bool,
) -> io::Result<()> {
    if hold {
        held.extend_from_slice(bytes);
        Ok(())
    } else {
        send_held(s, held, bytes).await
    }
}

/// Writes `held` and then `more`, in one write; `held` is emptied.
async fn send_held<S: AsyncWrite + Unpin>(
    s: &mut S,
    held: &mut Vec<u8>,
    more: &[u8],
) -> io::Result<()> {
    held.extend_from_slice(more);
    let r = s.write_all(held).await;
    held.clear();
    r?;
    s.flush().await
}

async fn accept_inner<S>(s: &mut S, auth: &Auth, hold: bool) -> Result<Accepted, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut held = Vec::new();
    let mut b = Buf {
        data: [0; HANDSHAKE_BUF],
        len: 0,
    };
    let g = match b.next(s, proto::parse_greeting).await? {
        Ok(g) => g,
        Err(ProtoError::NoMethods) => {
            let _ = s
                .write_all(&proto::choice(proto::METHOD_UNACCEPTABLE))
                .await;
            return Err(HandshakeError::NoMethod);
        }
        Err(e) => return Err(HandshakeError::Proto(e)),
    };
    let method = match auth {
        Auth::Open if g.none => proto::METHOD_NONE,
        Auth::Open if g.userpass => proto::METHOD_USERPASS,
        Auth::Passcode(_) if g.userpass => proto::METHOD_USERPASS,
        _ => proto::METHOD_UNACCEPTABLE,
    };
    if method == proto::METHOD_UNACCEPTABLE {
        let _ = send_held(s, &mut held, &proto::choice(method)).await;
        return Err(HandshakeError::NoMethod);
    }
    // Held only while the client's next message is (at least partly) here already: it
    // pipelines, so it does not wait for this answer.
    answer(s, &mut held, &proto::choice(method), hold && b.len > 0).await?;
    if method == proto::METHOD_USERPASS {
        let ok = loop {
            match proto::parse_userpass(&b.data[..b.len]) {
                Ok(Some((up, n))) => {
                    let ok = match auth {
                        Auth::Passcode(code) => up.matches(code.as_bytes()),
                        Auth::Open => true,
                    };
                    b.consume(n);
                    break ok;
                }
                Ok(None) => b.fill(s).await?,
                Err(e) => return Err(HandshakeError::Proto(e)),
            }
        };
        if !ok {
            let _ = send_held(s, &mut held, &proto::auth_status(ok)).await;
            return Err(HandshakeError::BadPasscode);
        }
        answer(s, &mut held, &proto::auth_status(ok), hold && b.len > 0).await?;
    }
    let req = match b.next(s, proto::parse_request).await? {
        Ok(r) => r,
        Err(e @ ProtoError::AddrType(_)) => {
            send_held(
                s,
                &mut held,
                &reply_bytes(Reply::AddrTypeNotSupported, None),
            )
            .await?;
            return Err(HandshakeError::Proto(e));
        }
        Err(e @ ProtoError::BadName) => {
            send_held(s, &mut held, &reply_bytes(Reply::HostUnreachable, None)).await?;
            return Err(HandshakeError::Proto(e));
        }
        Err(e) => return Err(HandshakeError::Proto(e)),
    };
    if req.cmd != Command::Connect {
        send_held(s, &mut held, &reply_bytes(Reply::CommandNotSupported, None)).await?;
        return Err(HandshakeError::Unsupported(req.cmd));
    }
    Ok(Accepted {
        host: req.host,
        port: req.port,
        early: b.data[..b.len].to_vec(),
        pending: held,
    })
}

/// A reply's bytes (`bound`: the address the server connected from, on success).
fn reply_bytes(r: Reply, bound: Option<SocketAddr>) -> Vec<u8> {
    let mut out = Vec::with_capacity(22);
    proto::emit_reply(r, bound, &mut out);
    out
}

/// Sends a reply (`bound`: the address the server connected from, on success).
pub async fn send_reply<S: AsyncWrite + Unpin>(
    s: &mut S,
    r: Reply,
    bound: Option<SocketAddr>,
) -> io::Result<()> {
    s.write_all(&reply_bytes(r, bound)).await?;
    s.flush().await
}

/// Why the client side of a handshake failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The stream failed or closed before the reply.
    Io(io::Error),
    /// The server sent bytes that are not SOCKS5.
    Proto(ProtoError),
    /// The server wants a passcode and none was given.
    PasscodeNeeded,
    /// The server refused the passcode.
    BadPasscode,
    /// The server answered the request with this failure.
    Refused(Reply),
}

impl ConnectError {
    /// The reply to give a local client on whose behalf the connect was made.
    pub fn reply(&self) -> Reply {
        match self {
            ConnectError::Io(_) | ConnectError::Proto(_) => Reply::GeneralFailure,
            ConnectError::PasscodeNeeded | ConnectError::BadPasscode => Reply::NotAllowed,
            ConnectError::Refused(r) => *r,
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Io(e) => write!(f, "proxy server: {e}"),
            ConnectError::Proto(e) => write!(f, "proxy server: {e}"),
            ConnectError::PasscodeNeeded => {
                f.write_str("the proxy server needs a passcode (give --passcode)")
            }
            ConnectError::BadPasscode => f.write_str("the proxy server refused the passcode"),
            ConnectError::Refused(r) => write!(f, "the proxy server answered: {}", r.text()),
        }
    }
}

impl From<io::Error> for ConnectError {
    fn from(e: io::Error) -> Self {
        ConnectError::Io(e)
    }
}

/// The client side of a handshake: asks the server on `s` to CONNECT to `host`:`port`,
/// authenticating with `passcode` (sent as both username and password) if given. The
/// greeting, user/pass and request go out in one write (one round trip), which a server
/// that reads message by message, as RFC 1928 servers do, answers in order. The caller
/// bounds the time.
pub async fn connect<S>(
    s: &mut S,
    host: &Host,
    port: u16,
    passcode: Option<&str>,
) -> Result<(), ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    s.write_all(&connect_request(host, port, passcode)).await?;
    s.flush().await?;
    connect_answer(s, passcode).await
}

/// The client's side of [`connect`] as bytes: greeting, user/pass (with `passcode`) and the
/// CONNECT request, to be sent in one write (or ahead of the stream's open,
/// `Net::dial_first`).
pub fn connect_request(host: &Host, port: u16, passcode: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(600);
    match passcode {
        Some(p) => {
            proto::emit_greeting(&[proto::METHOD_USERPASS], &mut out);
            proto::emit_userpass(p.as_bytes(), p.as_bytes(), &mut out);
        }
        None => proto::emit_greeting(&[proto::METHOD_NONE], &mut out),
    }
    proto::emit_request(Command::Connect, host, port, &mut out);
    out
}

/// The rest of [`connect`] once [`connect_request`] has been sent on `s`: the server's
/// method choice, its passcode verdict and its reply.
pub async fn connect_answer<S>(s: &mut S, passcode: Option<&str>) -> Result<(), ConnectError>
where
    S: AsyncRead + Unpin,
{
    let mut b = Buf {
        data: [0; HANDSHAKE_BUF],
        len: 0,
    };
    let m = b.next(s, proto::parse_choice).await?;
    match m.map_err(ConnectError::Proto)? {
        proto::METHOD_NONE if passcode.is_none() => {}
        proto::METHOD_USERPASS if passcode.is_some() => {
            let ok = b.next(s, proto::parse_auth_status).await?;
            if !ok.map_err(ConnectError::Proto)? {
                return Err(ConnectError::BadPasscode);
            }
        }
        _ if passcode.is_none() => return Err(ConnectError::PasscodeNeeded),
        _ => return Err(ConnectError::BadPasscode),
    }
    let (code, _, _) = b
        .next(s, proto::parse_reply)
        .await?
        .map_err(ConnectError::Proto)?;
    match Reply::from_code(code) {
        Reply::Succeeded => Ok(()),
        r => Err(ConnectError::Refused(r)),
    }
}

/// The reply for an overlay dial that failed: the peer cannot be reached (network
/// unreachable), refused us (not allowed), serves nothing there (connection refused), or
/// did not answer in time (TTL expired); anything else is a general failure.
pub fn reply_for_net(e: &NetError) -> Reply {
    match e {
        NetError::NoRoute(_) => Reply::NetworkUnreachable,
        NetError::Refused(_) => Reply::NotAllowed,
        NetError::NoListener(_) => Reply::ConnectionRefused,
        NetError::Timeout(_) => Reply::TtlExpired,
        NetError::Busy(_) | NetError::Closed(_) | NetError::CannotListen(_) | NetError::Io(_) => {
            Reply::GeneralFailure
        }
    }
}

/// The reply for a TCP connect that failed.
pub fn reply_for_io(e: &io::Error) -> Reply {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Reply::ConnectionRefused,
        io::ErrorKind::HostUnreachable | io::ErrorKind::AddrNotAvailable => Reply::HostUnreachable,
        io::ErrorKind::NetworkUnreachable => Reply::NetworkUnreachable,
        io::ErrorKind::TimedOut => Reply::TtlExpired,
        io::ErrorKind::PermissionDenied => Reply::NotAllowed,
        _ => Reply::GeneralFailure,
    }
}

/// Connects to `host`:`port` over TCP from here, resolving a name here, trying each address
/// in turn within [`CONNECT_TIMEOUT`]. The error is the reply to send and a line for the log.
pub async fn connect_tcp(host: &Host, port: u16) -> Result<TcpStream, (Reply, String)> {
    let work = async {
        let addrs: Vec<SocketAddr> = match host {
            Host::V4(a) => vec![SocketAddr::from((*a, port))],
            Host::V6(a) => vec![SocketAddr::from((*a, port))],
            Host::Name(n) => match async_net::resolve((n.as_str(), port)).await {
                Ok(v) if !v.is_empty() => v,
                Ok(_) => {
                    return Err((Reply::HostUnreachable, format!("{n}: no address")));
                }
                Err(e) => {
                    return Err((Reply::HostUnreachable, format!("{n}: cannot resolve: {e}")));
                }
            },
        };
        let mut last = (Reply::HostUnreachable, format!("{host}: no address"));
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(t) => {
                    let _ = t.set_nodelay(true);
                    return Ok(t);
                }
                Err(e) => last = (reply_for_io(&e), format!("{a}: {e}")),
            }
        }
        Err(last)
    };
    future::or(work, async {
        Timer::after(CONNECT_TIMEOUT).await;
        Err((
            Reply::TtlExpired,
            format!(
                "{host}:{port}: connect timed out after {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
        ))
    })
    .await
}

/// Runs `f` for at most `limit`; `None` if the time ran out first.
pub async fn within<F: core::future::Future>(limit: Duration, f: F) -> Option<F::Output> {
    future::or(async { Some(f.await) }, async {
        Timer::after(limit).await;
        None
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use futures_lite::io::Cursor;

    /// A stream that reads from `input` and records what is written.
    struct Duplex {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl AsyncRead for Duplex {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            std::pin::Pin::new(&mut self.input).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Duplex {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            self.output.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn run(input: &[u8], auth: &Auth) -> (Result<Accepted, HandshakeError>, Vec<u8>) {
        let mut d = Duplex {
            input: Cursor::new(input.to_vec()),
            output: Vec::new(),
        };
        let r = block_on(accept(&mut d, auth));
        (r, d.output)
    }

    const CONNECT_V4: [u8; 10] = [5, 1, 0, 1, 127, 0, 0, 1, 0, 80];

    #[test]
    fn open_connect_with_early_data() {
        let mut i = vec![5, 1, 0];
        i.extend_from_slice(&CONNECT_V4);
        i.extend_from_slice(b"GET /");
        let (r, out) = run(&i, &Auth::Open);
        let a = r.unwrap();
        assert_eq!((a.host.to_string(), a.port), ("127.0.0.1".into(), 80));
        assert_eq!(a.early, b"GET /");
        assert_eq!(out, [5, 0]);
    }

    /// `accept_held`: a pipelining client's answers wait for the reply and leave in one
    /// write with it; one that sends its greeting alone is answered at once; a refusal still
    /// carries what was held.
    #[test]
    fn pipelined_answers_leave_with_the_reply() {
        let auth = Auth::Passcode("pw".into());
        let mut i = vec![5, 1, 2, 1, 2, b'p', b'w', 1, b'x'];
        i.extend_from_slice(&CONNECT_V4);
        let mut d = Duplex {
            input: Cursor::new(i),
            output: Vec::new(),
        };
        let a = block_on(accept_held(&mut d, &auth)).unwrap();
        assert!(d.output.is_empty(), "{:?}", d.output);
        assert_eq!(a.pending, [5, 2, 1, 0]);
        block_on(a.reply(&mut d, Reply::Succeeded, None)).unwrap();
        assert_eq!(d.output, [5, 2, 1, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);

        let mut d = Duplex {
            input: Cursor::new(vec![5, 1, 0]),
            output: Vec::new(),
        };
        assert!(block_on(accept_held(&mut d, &Auth::Open)).is_err());
        assert_eq!(d.output, [5, 0], "the greeting alone is answered at once");

        let mut i = vec![5, 1, 2, 1, 1, b'a', 1, b'b'];
        i.extend_from_slice(&CONNECT_V4);
        let mut d = Duplex {
            input: Cursor::new(i),
            output: Vec::new(),
        };
        let r = block_on(accept_held(&mut d, &auth));
        assert!(matches!(r, Err(HandshakeError::BadPasscode)), "{r:?}");
        assert_eq!(d.output, [5, 2, 1, 1]);

        let mut i = vec![5, 1, 0];
        i.extend_from_slice(&[5, 2, 0, 1, 127, 0, 0, 1, 0, 80]);
        let mut d = Duplex {
            input: Cursor::new(i),
            output: Vec::new(),
        };
        assert!(block_on(accept_held(&mut d, &Auth::Open)).is_err());
        assert_eq!(d.output, [5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn passcode_as_user_or_password() {
        for up in [
            &[1, 2, b'p', b'w', 1, b'x'][..],
            &[1, 1, b'x', 2, b'p', b'w'],
        ] {
            let mut i = vec![5, 2, 0, 2];
            i.extend_from_slice(up);
            i.extend_from_slice(&CONNECT_V4);
            let (r, out) = run(&i, &Auth::Passcode("pw".into()));
            assert!(r.is_ok(), "{r:?}");
            assert_eq!(out, [5, 2, 1, 0]);
        }
    }

    #[test]
    fn wrong_passcode_refused() {
        let mut i = vec![5, 1, 2, 1, 1, b'a', 1, b'b'];
        i.extend_from_slice(&CONNECT_V4);
        let (r, out) = run(&i, &Auth::Passcode("pw".into()));
        assert!(matches!(r, Err(HandshakeError::BadPasscode)), "{r:?}");
        assert_eq!(out, [5, 2, 1, 1]);
        // Offering only "no authentication" to a server with a passcode.
        let (r, out) = run(&[5, 1, 0], &Auth::Passcode("pw".into()));
        assert!(matches!(r, Err(HandshakeError::NoMethod)), "{r:?}");
        assert_eq!(out, [5, 0xff]);
    }

    #[test]
    fn bind_and_udp_are_not_supported() {
        for cmd in [2u8, 3, 0x7f] {
            let (r, out) = run(&[5, 1, 0, 5, cmd, 0, 1, 1, 2, 3, 4, 0, 1], &Auth::Open);
            assert!(matches!(r, Err(HandshakeError::Unsupported(_))), "{r:?}");
            assert_eq!(out, [5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0]);
        }
    }

    #[test]
    fn bad_address_type_answered() {
        let (r, out) = run(&[5, 1, 0, 5, 1, 0, 9, 1, 2], &Auth::Open);
        assert!(matches!(
            r,
            Err(HandshakeError::Proto(ProtoError::AddrType(9)))
        ));
        assert_eq!(out, [5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn garbage_and_truncation_close_without_a_reply() {
        let (r, out) = run(b"GET / HTTP/1.1\r\n\r\n", &Auth::Open);
        assert!(matches!(
            r,
            Err(HandshakeError::Proto(ProtoError::Version(b'G')))
        ));
        assert!(out.is_empty());
        // Truncated greeting, then the stream ends.
        let (r, out) = run(&[5, 3, 0], &Auth::Open);
        assert!(matches!(r, Err(HandshakeError::Io(_))), "{r:?}");
        assert!(out.is_empty());
        // Truncated request.
        let (r, _) = run(&[5, 1, 0, 5, 1, 0, 3, 10, b'a'], &Auth::Open);
        assert!(matches!(r, Err(HandshakeError::Io(_))), "{r:?}");
    }

    /// The client side against the server side, through the recorded bytes.
    #[test]
    fn client_handshake_against_server() {
        let host = Host::Name("example.com".into());
        // What the client sends, captured, is what the server accepts.
        let mut c = Duplex {
            input: Cursor::new(vec![5, 2, 1, 0, 5, 0, 0, 1, 1, 2, 3, 4, 0, 9]),
            output: Vec::new(),
        };
        block_on(connect(&mut c, &host, 443, Some("pw"))).unwrap();
        let (r, _) = run(&c.output, &Auth::Passcode("pw".into()));
        let a = r.unwrap();
        assert_eq!((a.host, a.port), (host.clone(), 443));
        // The failures a server can answer.
        for (input, want) in [
            (vec![5, 2, 1, 1], "refused the passcode"),
            (vec![5, 0xff], "refused the passcode"),
            (
                vec![5, 2, 1, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0],
                "connection refused",
            ),
        ] {
            let mut c = Duplex {
                input: Cursor::new(input),
                output: Vec::new(),
            };
            let e = block_on(connect(&mut c, &host, 443, Some("pw"))).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
        let mut c = Duplex {
            input: Cursor::new(vec![5, 0xff]),
            output: Vec::new(),
        };
        let e = block_on(connect(&mut c, &host, 443, None)).unwrap_err();
        assert!(matches!(e, ConnectError::PasscodeNeeded));
        assert_eq!(e.reply(), Reply::NotAllowed);
    }

    #[test]
    fn net_errors_map_to_replies() {
        assert_eq!(
            reply_for_net(&NetError::NoRoute("x".into())),
            Reply::NetworkUnreachable
        );
        assert_eq!(
            reply_for_net(&NetError::NoListener("x".into())),
            Reply::ConnectionRefused
        );
        assert_eq!(
            reply_for_net(&NetError::Timeout("x".into())),
            Reply::TtlExpired
        );
        assert_eq!(
            reply_for_net(&NetError::Refused("x".into())),
            Reply::NotAllowed
        );
        assert_eq!(
            reply_for_io(&io::ErrorKind::ConnectionRefused.into()),
            Reply::ConnectionRefused
        );
    }

    #[test]
    fn tcp_connect_refused_and_resolved() {
        // A port nobody listens on: bind, learn the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = block_on(connect_tcp(&Host::V4([127, 0, 0, 1].into()), port));
        assert_eq!(r.err().map(|e| e.0), Some(Reply::ConnectionRefused));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let r = block_on(connect_tcp(&Host::Name("localhost".into()), port));
        // localhost may resolve to ::1 first, where nothing listens; 127.0.0.1 follows.
        assert!(r.is_ok(), "{:?}", r.err());
    }
}
