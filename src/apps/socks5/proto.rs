//! SOCKS5 (RFC 1928) and its username/password sub-negotiation (RFC 1929), sans-IO: parsers
//! of the byte strings each side sends and emitters of the answers. No I/O and no clock; the
//! async drivers in [`super`] feed them bytes.
//!
//! Every parser takes the bytes received so far and answers `Ok(None)` while a message is
//! incomplete, `Ok(Some((message, consumed)))` once it is whole (the bytes after `consumed`
//! belong to the next message), or an error that decides the connection's fate. No parser
//! panics on input, and none needs more than [`MAX_MESSAGE`] bytes.
//!
//! ```text
//! greeting   ver=5 ‖ nmethods u8 ‖ methods[nmethods]            client → server
//! choice     ver=5 ‖ method u8 (00 none, 02 user/pass, FF none acceptable)
//! user/pass  ver=1 ‖ ulen u8 ‖ user ‖ plen u8 ‖ pass            client → server
//! status     ver=1 ‖ status u8 (00 ok, else refused)
//! request    ver=5 ‖ cmd u8 ‖ rsv u8 ‖ atyp u8 ‖ addr ‖ port u16be
//! reply      ver=5 ‖ rep u8 ‖ rsv u8 ‖ atyp u8 ‖ addr ‖ port u16be
//! addr       atyp 01: 4 bytes · 03: len u8 ‖ name · 04: 16 bytes
//! ```
//!
//! The reserved byte is not checked (RFC 1928 says it is 0; clients differ). A domain name is
//! 1–255 bytes of printable ASCII without spaces; anything else is refused as a name that
//! cannot be resolved.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// The protocol version byte of every SOCKS5 message but the user/pass ones.
pub const VERSION: u8 = 5;
/// The version byte of the RFC 1929 sub-negotiation.
pub const USERPASS_VERSION: u8 = 1;
/// Method: no authentication.
pub const METHOD_NONE: u8 = 0x00;
/// Method: username/password (RFC 1929).
pub const METHOD_USERPASS: u8 = 0x02;
/// Method choice: none of the offered methods is acceptable.
pub const METHOD_UNACCEPTABLE: u8 = 0xFF;
/// The longest message of the handshake (a user/pass message: 3 + 255 + 255).
pub const MAX_MESSAGE: usize = 513;

/// Address type bytes.
const ATYP_V4: u8 = 1;
const ATYP_DOMAIN: u8 = 3;
const ATYP_V6: u8 = 4;

/// Why bytes are not a SOCKS5 message; each maps to what the server does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// The version byte is not 5 (or 1 for user/pass): not SOCKS5; close the connection.
    Version(u8),
    /// A greeting offering no method.
    NoMethods,
    /// An address type other than 1, 3, 4: reply "address type not supported".
    AddrType(u8),
    /// An empty or unprintable domain name: reply "host unreachable".
    BadName,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::Version(v) => write!(f, "not SOCKS5 (version byte {v:#04x})"),
            ProtoError::NoMethods => f.write_str("greeting offers no authentication method"),
            ProtoError::AddrType(t) => write!(f, "address type {t:#04x} not supported"),
            ProtoError::BadName => f.write_str("domain name empty or not printable ASCII"),
        }
    }
}

impl std::error::Error for ProtoError {}

/// A parse result: `None` while incomplete, else the message and the bytes it took.
pub type Parsed<T> = Result<Option<(T, usize)>, ProtoError>;

/// The methods a client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Greeting {
    /// It offers "no authentication".
    pub none: bool,
    /// It offers username/password.
    pub userpass: bool,
}

/// Parses a greeting.
pub fn parse_greeting(b: &[u8]) -> Parsed<Greeting> {
    let Some(&ver) = b.first() else {
        return Ok(None);
    };
    if ver != VERSION {
        return Err(ProtoError::Version(ver));
    }
    let Some(&n) = b.get(1) else {
        return Ok(None);
    };
    if n == 0 {
        return Err(ProtoError::NoMethods);
    }
    let end = 2 + usize::from(n);
    let Some(methods) = b.get(2..end) else {
        return Ok(None);
    };
    let g = Greeting {
        none: methods.contains(&METHOD_NONE),
        userpass: methods.contains(&METHOD_USERPASS),
    };
    Ok(Some((g, end)))
}

/// The method choice the server sends.
pub fn choice(method: u8) -> [u8; 2] {
    [VERSION, method]
}

/// Parses the server's method choice (client side): the method byte.
pub fn parse_choice(b: &[u8]) -> Parsed<u8> {
    two(b, VERSION)
}

/// The user/pass status the server sends.
pub fn auth_status(ok: bool) -> [u8; 2] {
    [USERPASS_VERSION, if ok { 0 } else { 1 }]
}

/// Parses the server's user/pass status (client side): true if accepted.
pub fn parse_auth_status(b: &[u8]) -> Parsed<bool> {
    Ok(two(b, USERPASS_VERSION)?.map(|(s, n)| (s == 0, n)))
}

fn two(b: &[u8], ver: u8) -> Parsed<u8> {
    match b {
        [] => Ok(None),
        [v, ..] if *v != ver => Err(ProtoError::Version(*v)),
        [_] => Ok(None),
        [_, x, ..] => Ok(Some((*x, 2))),
    }
}

/// A username and password (RFC 1929), borrowed from the received bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UserPass<'a> {
    /// The username.
    pub user: &'a [u8],
    /// The password.
    pub pass: &'a [u8],
}

impl fmt::Debug for UserPass<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret itself, in logs or panics.
        write!(
            f,
            "UserPass({} + {} bytes)",
            self.user.len(),
            self.pass.len()
        )
    }
}

impl UserPass<'_> {
    /// True if `code` is the username or the password (Go's skysocks accepts either),
    /// compared without an early exit on the first differing byte.
    pub fn matches(&self, code: &[u8]) -> bool {
        ct_eq(self.user, code) | ct_eq(self.pass, code)
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses a user/pass message.
pub fn parse_userpass(b: &[u8]) -> Parsed<UserPass<'_>> {
    let Some(&ver) = b.first() else {
        return Ok(None);
    };
    if ver != USERPASS_VERSION {
        return Err(ProtoError::Version(ver));
    }
    let Some(&ul) = b.get(1) else {
        return Ok(None);
    };
    let ue = 2 + usize::from(ul);
    let (Some(user), Some(&pl)) = (b.get(2..ue), b.get(ue)) else {
        return Ok(None);
    };
    let pe = ue + 1 + usize::from(pl);
    let Some(pass) = b.get(ue + 1..pe) else {
        return Ok(None);
    };
    Ok(Some((UserPass { user, pass }, pe)))
}

/// Appends a user/pass message (client side); each field is cut at 255 bytes.
pub fn emit_userpass(user: &[u8], pass: &[u8], out: &mut Vec<u8>) {
    let (user, pass) = (&user[..user.len().min(255)], &pass[..pass.len().min(255)]);
    out.push(USERPASS_VERSION);
    out.push(user.len() as u8);
    out.extend_from_slice(user);
    out.push(pass.len() as u8);
    out.extend_from_slice(pass);
}

/// Appends a greeting offering `methods` (client side; at most 255 of them).
pub fn emit_greeting(methods: &[u8], out: &mut Vec<u8>) {
    let m = &methods[..methods.len().min(255)];
    out.push(VERSION);
    out.push(m.len() as u8);
    out.extend_from_slice(m);
}

/// A request's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// CONNECT (1): a TCP connection to the address.
    Connect,
    /// BIND (2): not served.
    Bind,
    /// UDP ASSOCIATE (3): not served.
    UdpAssociate,
    /// Any other byte: not served.
    Other(u8),
}

impl Command {
    /// The command byte.
    pub fn to_u8(self) -> u8 {
        match self {
            Command::Connect => 1,
            Command::Bind => 2,
            Command::UdpAssociate => 3,
            Command::Other(b) => b,
        }
    }

    /// The command of byte `b`.
    pub fn from_u8(b: u8) -> Command {
        match b {
            1 => Command::Connect,
            2 => Command::Bind,
            3 => Command::UdpAssociate,
            b => Command::Other(b),
        }
    }
}

/// A destination: an IP address or a name to resolve where the connection is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// IPv4.
    V4(Ipv4Addr),
    /// IPv6.
    V6(Ipv6Addr),
    /// A domain name (printable ASCII, 1–255 bytes).
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

impl Host {
    /// Parses `name`, an IPv4 or IPv6 literal (brackets allowed) or a domain name, as an
    /// HTTP proxy or a command line gives it.
    pub fn parse(name: &str) -> Result<Host, ProtoError> {
        let bare = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        if let Ok(a) = bare.parse::<Ipv4Addr>() {
            return Ok(Host::V4(a));
        }
        if let Ok(a) = bare.parse::<Ipv6Addr>() {
            return Ok(Host::V6(a));
        }
        if valid_name(name.as_bytes()) {
            Ok(Host::Name(name.to_string()))
        } else {
            Err(ProtoError::BadName)
        }
    }
}

fn valid_name(b: &[u8]) -> bool {
    (1..=255).contains(&b.len()) && b.iter().all(|c| c.is_ascii_graphic())
}

/// A request (client → server) or a reply (server → client): both have this layout, with
/// the command byte or the reply code in the second place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The command (in a reply: the reply code, as [`Command::from_u8`] of it).
    pub cmd: Command,
    /// The destination host (in a reply: the bound address).
    pub host: Host,
    /// The destination port.
    pub port: u16,
}

/// Parses a request.
pub fn parse_request(b: &[u8]) -> Parsed<Request> {
    let Some(&ver) = b.first() else {
        return Ok(None);
    };
    if ver != VERSION {
        return Err(ProtoError::Version(ver));
    }
    let (Some(&cmd), Some(&atyp)) = (b.get(1), b.get(3)) else {
        return Ok(None);
    };
    let (host, end) = match atyp {
        ATYP_V4 => {
            let Some(a) = b.get(4..8) else {
                return Ok(None);
            };
            (Host::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])), 8)
        }
        ATYP_V6 => {
            let Some(a) = b.get(4..20) else {
                return Ok(None);
            };
            let mut o = [0u8; 16];
            o.copy_from_slice(a);
            (Host::V6(Ipv6Addr::from(o)), 20)
        }
        ATYP_DOMAIN => {
            let Some(&n) = b.get(4) else {
                return Ok(None);
            };
            let end = 5 + usize::from(n);
            let Some(name) = b.get(5..end) else {
                return Ok(None);
            };
            if !valid_name(name) {
                // Still a whole message: the caller answers it, then closes.
                return Err(ProtoError::BadName);
            }
            let name = name.iter().map(|&c| char::from(c)).collect();
            (Host::Name(name), end)
        }
        t => return Err(ProtoError::AddrType(t)),
    };
    let Some(p) = b.get(end..end + 2) else {
        return Ok(None);
    };
    let port = u16::from_be_bytes([p[0], p[1]]);
    Ok(Some((
        Request {
            cmd: Command::from_u8(cmd),
            host,
            port,
        },
        end + 2,
    )))
}

/// Parses a reply (client side): its code and bound address.
pub fn parse_reply(b: &[u8]) -> Parsed<(u8, Host, u16)> {
    Ok(parse_request(b)?.map(|(r, n)| ((r.cmd.to_u8(), r.host, r.port), n)))
}

/// Appends a request (client side): `cmd` to `host`:`port` (a name longer than 255 bytes is
/// cut; [`Host::parse`] never makes one).
pub fn emit_request(cmd: Command, host: &Host, port: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(&[VERSION, cmd.to_u8(), 0]);
    emit_addr(host, out);
    out.extend_from_slice(&port.to_be_bytes());
}

fn emit_addr(host: &Host, out: &mut Vec<u8>) {
    match host {
        Host::V4(a) => {
            out.push(ATYP_V4);
            out.extend_from_slice(&a.octets());
        }
        Host::V6(a) => {
            out.push(ATYP_V6);
            out.extend_from_slice(&a.octets());
        }
        Host::Name(n) => {
            let n = &n.as_bytes()[..n.len().min(255)];
            out.push(ATYP_DOMAIN);
            out.push(n.len() as u8);
            out.extend_from_slice(n);
        }
    }
}

/// The reply codes of RFC 1928 §6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// 00 succeeded.
    Succeeded,
    /// 01 general SOCKS server failure.
    GeneralFailure,
    /// 02 connection not allowed by ruleset (whitelist, passcode).
    NotAllowed,
    /// 03 network unreachable.
    NetworkUnreachable,
    /// 04 host unreachable (includes a name that does not resolve).
    HostUnreachable,
    /// 05 connection refused.
    ConnectionRefused,
    /// 06 TTL expired (we use it for timeouts).
    TtlExpired,
    /// 07 command not supported (BIND, UDP ASSOCIATE).
    CommandNotSupported,
    /// 08 address type not supported.
    AddrTypeNotSupported,
}

impl Reply {
    /// The code byte.
    pub fn code(self) -> u8 {
        match self {
            Reply::Succeeded => 0,
            Reply::GeneralFailure => 1,
            Reply::NotAllowed => 2,
            Reply::NetworkUnreachable => 3,
            Reply::HostUnreachable => 4,
            Reply::ConnectionRefused => 5,
            Reply::TtlExpired => 6,
            Reply::CommandNotSupported => 7,
            Reply::AddrTypeNotSupported => 8,
        }
    }

    /// The reply of code `c` (an unknown code is a general failure).
    pub fn from_code(c: u8) -> Reply {
        match c {
            0 => Reply::Succeeded,
            2 => Reply::NotAllowed,
            3 => Reply::NetworkUnreachable,
            4 => Reply::HostUnreachable,
            5 => Reply::ConnectionRefused,
            6 => Reply::TtlExpired,
            7 => Reply::CommandNotSupported,
            8 => Reply::AddrTypeNotSupported,
            _ => Reply::GeneralFailure,
        }
    }

    /// What the code means, for logs and CLI messages.
    pub fn text(self) -> &'static str {
        match self {
            Reply::Succeeded => "succeeded",
            Reply::GeneralFailure => "general failure",
            Reply::NotAllowed => "not allowed",
            Reply::NetworkUnreachable => "network unreachable",
            Reply::HostUnreachable => "host unreachable",
            Reply::ConnectionRefused => "connection refused",
            Reply::TtlExpired => "timed out",
            Reply::CommandNotSupported => "command not supported",
            Reply::AddrTypeNotSupported => "address type not supported",
        }
    }
}

/// Appends a reply with code `r` and bound address `bound` (`0.0.0.0:0` when `None`, as for
/// every failure).
pub fn emit_reply(r: Reply, bound: Option<SocketAddr>, out: &mut Vec<u8>) {
    out.extend_from_slice(&[VERSION, r.code(), 0]);
    let (host, port) = match bound {
        Some(SocketAddr::V4(a)) => (Host::V4(*a.ip()), a.port()),
        Some(SocketAddr::V6(a)) => (Host::V6(*a.ip()), a.port()),
        None => (Host::V4(Ipv4Addr::UNSPECIFIED), 0),
    };
    emit_addr(&host, out);
    out.extend_from_slice(&port.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every strict prefix of a whole message is incomplete, never an error or a panic.
    fn prefixes_incomplete<T: fmt::Debug>(msg: &[u8], p: impl Fn(&[u8]) -> Parsed<T>) {
        for n in 0..msg.len() {
            assert!(
                matches!(p(&msg[..n]), Ok(None)),
                "prefix {n} of {msg:02x?}: {:?}",
                p(&msg[..n])
            );
        }
    }

    #[test]
    fn greeting_golden_and_truncated() {
        let g = [5, 2, 0, 2];
        assert_eq!(
            parse_greeting(&g),
            Ok(Some((
                Greeting {
                    none: true,
                    userpass: true
                },
                4
            )))
        );
        prefixes_incomplete(&g, parse_greeting);
        // Extra bytes stay for the next message.
        assert_eq!(parse_greeting(&[5, 1, 2, 1, 0]).unwrap().unwrap().1, 3);
        assert_eq!(
            parse_greeting(&[5, 1, 0x80]).unwrap().unwrap().0,
            Greeting {
                none: false,
                userpass: false
            }
        );
        let mut out = Vec::new();
        emit_greeting(&[0, 2], &mut out);
        assert_eq!(out, g);
    }

    #[test]
    fn garbage_greetings_are_errors() {
        assert_eq!(
            parse_greeting(b"GET / HTTP/1.1"),
            Err(ProtoError::Version(b'G'))
        );
        assert_eq!(parse_greeting(&[4, 1, 0]), Err(ProtoError::Version(4)));
        assert_eq!(parse_greeting(&[5, 0]), Err(ProtoError::NoMethods));
        assert_eq!(
            parse_greeting(&[0x16, 3, 1]),
            Err(ProtoError::Version(0x16))
        );
    }

    #[test]
    fn userpass_golden_and_passcode() {
        let m = [1, 3, b'b', b'o', b'b', 2, b'p', b'w'];
        let (up, n) = parse_userpass(&m).unwrap().unwrap();
        assert_eq!((up.user, up.pass, n), (&b"bob"[..], &b"pw"[..], 8));
        prefixes_incomplete(&m, |b| Ok(parse_userpass(b)?.map(|(_, n)| ((), n))));
        assert!(up.matches(b"bob"), "the passcode as username");
        assert!(up.matches(b"pw"), "the passcode as password");
        assert!(!up.matches(b"bo"), "a prefix is wrong");
        assert!(!up.matches(b"bobx"));
        assert!(!up.matches(b""));
        // Empty fields are legal and match only an empty code (never configured).
        let (e, _) = parse_userpass(&[1, 0, 0]).unwrap().unwrap();
        assert!(!e.matches(b"secret"));
        assert_eq!(parse_userpass(&[5, 1, 0]), Err(ProtoError::Version(5)));
        let mut out = Vec::new();
        emit_userpass(b"bob", b"pw", &mut out);
        assert_eq!(out, m);
        assert_eq!(format!("{up:?}"), "UserPass(3 + 2 bytes)");
    }

    #[test]
    fn requests_golden() {
        let v4 = [5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90];
        let (r, n) = parse_request(&v4).unwrap().unwrap();
        assert_eq!(n, 10);
        assert_eq!(r.cmd, Command::Connect);
        assert_eq!(r.host, Host::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(r.port, 8080);
        prefixes_incomplete(&v4, parse_request);

        let mut v6 = vec![5, 1, 0, 4];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0, 80]);
        let (r, n) = parse_request(&v6).unwrap().unwrap();
        assert_eq!(
            (n, r.host.clone(), r.port),
            (22, Host::V6(Ipv6Addr::LOCALHOST), 80)
        );
        prefixes_incomplete(&v6, parse_request);

        let dom = b"\x05\x01\x00\x03\x0bexample.com\x01\xbb";
        let (r, n) = parse_request(dom).unwrap().unwrap();
        assert_eq!((n, r.port), (dom.len(), 443));
        assert_eq!(r.host, Host::Name("example.com".into()));
        prefixes_incomplete(dom, parse_request);

        for (req, want) in [(&v4[..], &r), (&v6[..], &r), (&dom[..], &r)] {
            let (p, _) = parse_request(req).unwrap().unwrap();
            let mut out = Vec::new();
            emit_request(p.cmd, &p.host, p.port, &mut out);
            assert_eq!(out, req, "{want:?}");
        }
    }

    #[test]
    fn unsupported_commands_parse_for_an_answer() {
        let (r, _) = parse_request(&[5, 2, 0, 1, 1, 2, 3, 4, 0, 1])
            .unwrap()
            .unwrap();
        assert_eq!(r.cmd, Command::Bind);
        let (r, _) = parse_request(&[5, 3, 0, 1, 1, 2, 3, 4, 0, 1])
            .unwrap()
            .unwrap();
        assert_eq!(r.cmd, Command::UdpAssociate);
        let (r, _) = parse_request(&[5, 9, 0, 1, 1, 2, 3, 4, 0, 1])
            .unwrap()
            .unwrap();
        assert_eq!(r.cmd, Command::Other(9));
    }

    #[test]
    fn bad_addresses_are_errors() {
        assert_eq!(
            parse_request(&[5, 1, 0, 2, 1, 2, 3, 4, 0, 1]),
            Err(ProtoError::AddrType(2))
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 3, 0, 0, 80]),
            Err(ProtoError::BadName)
        );
        assert_eq!(
            parse_request(b"\x05\x01\x00\x03\x03a b\x00\x50"),
            Err(ProtoError::BadName)
        );
        assert_eq!(
            parse_request(b"\x05\x01\x00\x03\x02a\x00\x00\x50"),
            Err(ProtoError::BadName)
        );
        assert_eq!(parse_request(&[4, 1, 0, 1]), Err(ProtoError::Version(4)));
    }

    #[test]
    fn replies_golden() {
        let mut out = Vec::new();
        emit_reply(Reply::CommandNotSupported, None, &mut out);
        assert_eq!(out, [5, 7, 0, 1, 0, 0, 0, 0, 0, 0]);
        let (r, n) = parse_reply(&out).unwrap().unwrap();
        assert_eq!((Reply::from_code(r.0), n), (Reply::CommandNotSupported, 10));
        out.clear();
        emit_reply(
            Reply::Succeeded,
            Some("[::1]:1080".parse().unwrap()),
            &mut out,
        );
        assert_eq!(out.len(), 22);
        assert_eq!(&out[..4], [5, 0, 0, 4]);
        assert_eq!(&out[20..], [0x04, 0x38]);
        for c in 0..=8 {
            assert_eq!(Reply::from_code(c).code(), c);
        }
        assert_eq!(Reply::from_code(0x42), Reply::GeneralFailure);
        assert_eq!(choice(METHOD_USERPASS), [5, 2]);
        assert_eq!(parse_choice(&[5, 0xff]), Ok(Some((0xff, 2))));
        assert_eq!(parse_choice(&[5]), Ok(None));
        assert_eq!(parse_auth_status(&auth_status(false)), Ok(Some((false, 2))));
        assert_eq!(parse_auth_status(&auth_status(true)), Ok(Some((true, 2))));
    }

    #[test]
    fn hosts_from_text() {
        assert_eq!(
            Host::parse("10.0.0.1"),
            Ok(Host::V4(Ipv4Addr::new(10, 0, 0, 1)))
        );
        assert_eq!(Host::parse("[::1]"), Ok(Host::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(Host::parse("::1"), Ok(Host::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(Host::parse("a.example"), Ok(Host::Name("a.example".into())));
        assert_eq!(Host::parse(""), Err(ProtoError::BadName));
        assert_eq!(Host::parse("a b"), Err(ProtoError::BadName));
        assert_eq!(Host::parse(&"x".repeat(256)), Err(ProtoError::BadName));
        assert_eq!(Host::V6(Ipv6Addr::LOCALHOST).to_string(), "[::1]");
    }

    /// Arbitrary bytes never panic any parser (the fuzz target does this at scale).
    #[test]
    fn no_panics_on_small_inputs() {
        let mut x: u32 = 0x1234_5678;
        for len in 0..64 {
            for _ in 0..200 {
                let b: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        // Mostly small bytes so versions and types hit the valid values.
                        (x % 9) as u8
                    })
                    .collect();
                let _ = parse_greeting(&b);
                let _ = parse_userpass(&b);
                let _ = parse_request(&b);
                let _ = parse_choice(&b);
                if let Ok(Some((_, n))) = parse_request(&b) {
                    assert!(n <= b.len());
                }
            }
        }
    }
}
