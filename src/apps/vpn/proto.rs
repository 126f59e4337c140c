//! Sans-IO: the VPN protocol on an overlay stream to port 44 (docs/protocol.md "VPN").
//!
//! Everything on the stream is a **frame**: `len (u16 big-endian) | body (len bytes)`. The
//! stream is a byte stream (dmsg, a skynet route group or TCP mode may coalesce or split
//! writes), so every frame says its length; nothing relies on write boundaries.
//!
//! 1. The client's first frame is the **hello**:
//!    `version (1) | flags (0) | p (u8) | passcode (p bytes, p ≤ 64) | n (u8, ≤ 32) |
//!    n × (IPv4 address (4) | prefix length (u8, ≤ 32))` — the networks the client already
//!    uses, which the server's allocation avoids.
//! 2. The server answers with the **welcome**:
//!    `version (1) | status (u8) | client address (4) | gateway (4) | prefix (u8) |
//!    mtu (u16) | m (u8) | reason (m bytes of UTF-8, m ≤ 200)`; addresses, prefix and mtu
//!    are zero unless the status is `Ok`, the reason is empty when it is. After any other
//!    status the server closes the stream.
//! 3. Then frames both ways. A body whose first byte's high nibble is 4 (IPv4) or 6 (IPv6)
//!    is an IP packet; one whose first byte is [`PING`] or [`PONG`] followed by 8 bytes is a
//!    keepalive and its echo (the client measures round-trip time with them); any other body
//!    is dropped and counted, as is a packet longer than the MTU.

use core::fmt;
use std::net::Ipv4Addr;

/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// The frame header: the body's length.
pub const LEN_PREFIX: usize = 2;
/// The longest passcode.
pub const MAX_PASSCODE: usize = 64;
/// Most in-use networks a hello may list.
pub const MAX_IN_USE: usize = 32;
/// The longest reason in a welcome.
pub const MAX_REASON: usize = 200;
/// The longest hello: version, flags, passcode and its length, the networks and their count.
pub const MAX_HELLO: usize = 3 + MAX_PASSCODE + 1 + MAX_IN_USE * 5;
/// The fixed part of a welcome (before the reason).
pub const WELCOME_FIXED: usize = 14;
/// A keepalive's first byte (then an 8-byte token).
pub const PING: u8 = 0x01;
/// A keepalive echo's first byte (then the ping's token).
pub const PONG: u8 = 0x02;
/// A keepalive's length.
pub const PING_LEN: usize = 9;

/// The server's answer to a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Addresses assigned: packets follow.
    Ok = 0,
    /// A hello this server does not understand.
    BadRequest = 1,
    /// No free address block is left that avoids the client's networks.
    NoFreeAddress = 2,
    /// The server failed to set the tunnel up (its log says why).
    Internal = 3,
    /// Wrong or missing passcode.
    Forbidden = 4,
    /// The server serves as many clients as it may.
    Busy = 5,
}

impl Status {
    /// From its byte.
    pub fn from_u8(b: u8) -> Option<Status> {
        Some(match b {
            0 => Status::Ok,
            1 => Status::BadRequest,
            2 => Status::NoFreeAddress,
            3 => Status::Internal,
            4 => Status::Forbidden,
            5 => Status::Busy,
            _ => return None,
        })
    }

    /// A phrase for logs and status lines.
    pub fn text(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::BadRequest => "bad request",
            Status::NoFreeAddress => "no free address",
            Status::Internal => "server error",
            Status::Forbidden => "wrong passcode",
            Status::Busy => "server full",
        }
    }
}

/// A malformed frame, hello or welcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// Another protocol version.
    Version(u8),
    /// Nonzero reserved flags.
    Flags(u8),
    /// A passcode longer than [`MAX_PASSCODE`].
    Passcode(usize),
    /// More than [`MAX_IN_USE`] networks, or a prefix over 32.
    Networks,
    /// Bytes after the hello's last network.
    Trailing,
    /// A status byte not in [`Status`].
    Status(u8),
    /// A reason longer than [`MAX_REASON`] or not UTF-8, or addresses that make no sense.
    Welcome,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::Version(v) => {
                write!(f, "vpn protocol version {v} (this side speaks {VERSION})")
            }
            ProtoError::Flags(b) => write!(f, "vpn hello with unknown flags {b:#04x}"),
            ProtoError::Passcode(n) => {
                write!(f, "vpn passcode of {n} bytes (at most {MAX_PASSCODE})")
            }
            ProtoError::Networks => f.write_str("vpn hello with a malformed network list"),
            ProtoError::Trailing => f.write_str("vpn hello with bytes after its end"),
            ProtoError::Status(s) => write!(f, "unknown vpn status {s}"),
            ProtoError::Welcome => f.write_str("malformed vpn welcome"),
        }
    }
}

/// An IPv4 network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net4 {
    /// Any address in it.
    pub addr: Ipv4Addr,
    /// Its prefix length, 0-32.
    pub prefix: u8,
}

impl Net4 {
    /// The network's mask.
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix.min(32)))
        }
    }

    /// True if the two networks share an address.
    pub fn overlaps(&self, other: &Net4) -> bool {
        let m = self.mask() & other.mask();
        (u32::from(self.addr) & m) == (u32::from(other.addr) & m)
    }

    /// True if `a` is in this network.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        self.overlaps(&Net4 {
            addr: a,
            prefix: 32,
        })
    }
}

impl fmt::Display for Net4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = Ipv4Addr::from(u32::from(self.addr) & self.mask());
        write!(f, "{base}/{}", self.prefix)
    }
}

/// The client's hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The passcode (empty: none).
    pub passcode: Vec<u8>,
    /// The networks the client uses already.
    pub in_use: Vec<Net4>,
}

/// The server's welcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The answer.
    pub status: Status,
    /// The client's tunnel address.
    pub client: Ipv4Addr,
    /// The server's end of the tunnel (the client's gateway).
    pub gateway: Ipv4Addr,
    /// The tunnel network's prefix length.
    pub prefix: u8,
    /// The largest packet either side sends.
    pub mtu: u16,
    /// Why not, when the status is not `Ok`.
    pub reason: String,
}

impl Welcome {
    /// A refusal.
    pub fn refuse(status: Status, reason: &str) -> Welcome {
        Welcome {
            status,
            client: Ipv4Addr::UNSPECIFIED,
            gateway: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
            mtu: 0,
            reason: reason.to_string(),
        }
    }
}

/// Appends one frame holding `body` (at most 65,535 bytes; callers keep to the MTU).
pub fn put_frame(body: &[u8], out: &mut Vec<u8>) {
    debug_assert!(body.len() <= u16::MAX as usize);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// The first whole frame in `b`: its body's range, and the bytes it takes; `None` until
/// the frame is whole. Every length is valid framing (a body the receiver does not accept
/// is dropped by [`classify`], not a reason to lose the stream).
pub fn next_frame(b: &[u8]) -> Option<(core::ops::Range<usize>, usize)> {
    if b.len() < LEN_PREFIX {
        return None;
    }
    let n = u16::from_be_bytes([b[0], b[1]]) as usize;
    (b.len() >= LEN_PREFIX + n).then_some((LEN_PREFIX..LEN_PREFIX + n, LEN_PREFIX + n))
}

/// The hello's body.
pub fn encode_hello(h: &Hello) -> Vec<u8> {
    let n = h.in_use.len().min(MAX_IN_USE);
    let p = h.passcode.len().min(MAX_PASSCODE);
    let mut b = Vec::with_capacity(4 + p + n * 5);
    b.extend_from_slice(&[VERSION, 0, p as u8]);
    b.extend_from_slice(&h.passcode[..p]);
    b.push(n as u8);
    for net in &h.in_use[..n] {
        b.extend_from_slice(&net.addr.octets());
        b.push(net.prefix);
    }
    b
}

/// Parses a hello's body (the whole frame body: trailing bytes are an error).
pub fn parse_hello(b: &[u8]) -> Result<Hello, ProtoError> {
    let short = ProtoError::Networks;
    let v = *b.first().ok_or(ProtoError::Version(0))?;
    if v != VERSION {
        return Err(ProtoError::Version(v));
    }
    let flags = *b.get(1).ok_or(short.clone())?;
    if flags != 0 {
        return Err(ProtoError::Flags(flags));
    }
    let p = *b.get(2).ok_or(short.clone())? as usize;
    if p > MAX_PASSCODE {
        return Err(ProtoError::Passcode(p));
    }
    let passcode = b.get(3..3 + p).ok_or(short.clone())?.to_vec();
    let n = *b.get(3 + p).ok_or(short.clone())? as usize;
    if n > MAX_IN_USE {
        return Err(short);
    }
    let list = b.get(4 + p..4 + p + n * 5).ok_or(short.clone())?;
    if b.len() != 4 + p + n * 5 {
        return Err(ProtoError::Trailing);
    }
    let mut in_use = Vec::with_capacity(n);
    for c in list.chunks_exact(5) {
        if c[4] > 32 {
            return Err(short);
        }
        in_use.push(Net4 {
            addr: Ipv4Addr::new(c[0], c[1], c[2], c[3]),
            prefix: c[4],
        });
    }
    Ok(Hello { passcode, in_use })
}

/// The welcome's body (the reason cut to [`MAX_REASON`] bytes at a character boundary).
pub fn encode_welcome(w: &Welcome) -> Vec<u8> {
    let ok = w.status == Status::Ok;
    let reason = if ok { "" } else { w.reason.as_str() };
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let z = Ipv4Addr::UNSPECIFIED;
    let mut b = Vec::with_capacity(WELCOME_FIXED + end);
    b.extend_from_slice(&[VERSION, w.status as u8]);
    b.extend_from_slice(&if ok { w.client } else { z }.octets());
    b.extend_from_slice(&if ok { w.gateway } else { z }.octets());
    b.push(if ok { w.prefix } else { 0 });
    b.extend_from_slice(&if ok { w.mtu } else { 0 }.to_be_bytes());
    b.push(end as u8);
    b.extend_from_slice(&reason.as_bytes()[..end]);
    b
}

/// Parses a welcome's body.
pub fn parse_welcome(b: &[u8]) -> Result<Welcome, ProtoError> {
    let v = *b.first().ok_or(ProtoError::Welcome)?;
    if v != VERSION {
        return Err(ProtoError::Version(v));
    }
    if b.len() < WELCOME_FIXED {
        return Err(ProtoError::Welcome);
    }
    let status = Status::from_u8(b[1]).ok_or(ProtoError::Status(b[1]))?;
    let client = Ipv4Addr::new(b[2], b[3], b[4], b[5]);
    let gateway = Ipv4Addr::new(b[6], b[7], b[8], b[9]);
    let prefix = b[10];
    let mtu = u16::from_be_bytes([b[11], b[12]]);
    let m = b[13] as usize;
    if m > MAX_REASON || b.len() != WELCOME_FIXED + m {
        return Err(ProtoError::Welcome);
    }
    let reason = core::str::from_utf8(&b[14..14 + m]).map_err(|_| ProtoError::Welcome)?;
    if status != Status::Ok && (b[2..13].iter().any(|&x| x != 0)) {
        return Err(ProtoError::Welcome);
    }
    if status == Status::Ok {
        let net = Net4 {
            addr: gateway,
            prefix,
        };
        if m != 0
            || !(1..=30).contains(&prefix)
            || client == gateway
            || !net.contains(client)
            || !(576..=crate::apps::vpn::MAX_MTU).contains(&mtu)
        {
            return Err(ProtoError::Welcome);
        }
    }
    Ok(Welcome {
        status,
        client,
        gateway,
        prefix,
        mtu,
        reason: reason.to_string(),
    })
}

/// What a frame's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// An IPv4 packet whose header is whole and whose total length is the body's length:
    /// its source and destination.
    Ipv4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
    },
    /// An IPv6 packet (this VPN assigns IPv4 only; the receiver drops it).
    Ipv6,
    /// A keepalive with its token.
    Ping(u64),
    /// A keepalive's echo with its token.
    Pong(u64),
    /// Anything else: dropped and counted.
    Junk,
}

/// Classifies a frame body (never fails: what is not understood is [`Body::Junk`]).
pub fn classify(b: &[u8]) -> Body {
    let Some(&first) = b.first() else {
        return Body::Junk;
    };
    match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if b.len() < 20 || ihl < 20 || b.len() < ihl {
                return Body::Junk;
            }
            let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
            if total != b.len() {
                return Body::Junk;
            }
            Body::Ipv4 {
                src: Ipv4Addr::new(b[12], b[13], b[14], b[15]),
                dst: Ipv4Addr::new(b[16], b[17], b[18], b[19]),
            }
        }
        6 if b.len() >= 40 => Body::Ipv6,
        0 if b.len() == PING_LEN && (first == PING || first == PONG) => {
            let mut t = [0u8; 8];
            t.copy_from_slice(&b[1..9]);
            let t = u64::from_be_bytes(t);
            if first == PING {
                Body::Ping(t)
            } else {
                Body::Pong(t)
            }
        }
        _ => Body::Junk,
    }
}

/// A keepalive (or its echo, `pong`) with `token`, as a whole frame.
pub fn keepalive(pong: bool, token: u64) -> [u8; LEN_PREFIX + PING_LEN] {
    let mut f = [0u8; LEN_PREFIX + PING_LEN];
    f[1] = PING_LEN as u8;
    f[2] = if pong { PONG } else { PING };
    f[3..].copy_from_slice(&token.to_be_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(a: [u8; 4], p: u8) -> Net4 {
        Net4 {
            addr: Ipv4Addr::from(a),
            prefix: p,
        }
    }

    /// Golden bytes (docs/protocol.md "VPN").
    #[test]
    fn hello_golden_round_trip_and_errors() {
        let h = Hello {
            passcode: b"pw".to_vec(),
            in_use: vec![net([192, 168, 1, 20], 24), net([10, 0, 0, 1], 8)],
        };
        let b = encode_hello(&h);
        assert_eq!(
            b,
            [1, 0, 2, b'p', b'w', 2, 192, 168, 1, 20, 24, 10, 0, 0, 1, 8]
        );
        assert_eq!(parse_hello(&b), Ok(h));
        assert_eq!(
            parse_hello(&[1, 0, 0, 0]),
            Ok(Hello {
                passcode: vec![],
                in_use: vec![]
            })
        );
        assert_eq!(parse_hello(&[]), Err(ProtoError::Version(0)));
        assert_eq!(parse_hello(&[2, 0, 0, 0]), Err(ProtoError::Version(2)));
        assert_eq!(parse_hello(&[1, 1, 0, 0]), Err(ProtoError::Flags(1)));
        assert_eq!(parse_hello(&[1, 0, 65]), Err(ProtoError::Passcode(65)));
        assert_eq!(parse_hello(&[1, 0, 2, b'p']), Err(ProtoError::Networks));
        assert_eq!(parse_hello(&[1, 0, 0, 33]), Err(ProtoError::Networks));
        assert_eq!(
            parse_hello(&[1, 0, 0, 1, 10, 0, 0]),
            Err(ProtoError::Networks)
        );
        assert_eq!(
            parse_hello(&[1, 0, 0, 1, 10, 0, 0, 0, 33]),
            Err(ProtoError::Networks)
        );
        assert_eq!(parse_hello(&[1, 0, 0, 0, 9]), Err(ProtoError::Trailing));
    }

    #[test]
    fn welcome_golden_round_trip_and_errors() {
        let w = Welcome {
            status: Status::Ok,
            client: Ipv4Addr::new(192, 168, 2, 2),
            gateway: Ipv4Addr::new(192, 168, 2, 1),
            prefix: 29,
            mtu: 1500,
            reason: String::new(),
        };
        let b = encode_welcome(&w);
        assert_eq!(b, [1, 0, 192, 168, 2, 2, 192, 168, 2, 1, 29, 0x05, 0xdc, 0]);
        assert_eq!(parse_welcome(&b), Ok(w.clone()));
        let r = Welcome::refuse(Status::Forbidden, "wrong passcode");
        let b = encode_welcome(&r);
        assert_eq!(&b[..14], &[1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 14]);
        assert_eq!(parse_welcome(&b), Ok(r));
        // Long reasons are cut at a character boundary.
        let b = encode_welcome(&Welcome::refuse(Status::Internal, &"é".repeat(150)));
        assert_eq!(b[13] as usize, MAX_REASON);
        assert!(parse_welcome(&b).is_ok());
        assert_eq!(parse_welcome(&[1, 9]), Err(ProtoError::Welcome));
        let mut bad = encode_welcome(&w);
        bad[1] = 9;
        assert_eq!(parse_welcome(&bad), Err(ProtoError::Status(9)));
        for (i, v) in [(10usize, 31u8), (5, 1), (11, 0)] {
            let mut bad = encode_welcome(&w);
            bad[i] = v;
            assert_eq!(parse_welcome(&bad), Err(ProtoError::Welcome), "byte {i}");
        }
        let mut addressed = encode_welcome(&Welcome::refuse(Status::Busy, "full"));
        addressed[5] = 1;
        assert_eq!(parse_welcome(&addressed), Err(ProtoError::Welcome));
        let mut long = encode_welcome(&w);
        long.push(0);
        assert_eq!(parse_welcome(&long), Err(ProtoError::Welcome));
    }

    #[test]
    fn frames_and_bodies() {
        let mut out = Vec::new();
        put_frame(&[0x45, 1, 2], &mut out);
        assert_eq!(out, [0, 3, 0x45, 1, 2]);
        assert_eq!(next_frame(&out), Some((2..5, 5)));
        assert_eq!(next_frame(&out[..4]), None);
        assert_eq!(next_frame(&[0]), None);
        assert_eq!(next_frame(&[0, 0]), Some((2..2, 2)));
        // A minimal IPv4 header: 10.0.0.2 -> 8.8.8.8, total length 20.
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[3] = 20;
        ip[12..16].copy_from_slice(&[10, 0, 0, 2]);
        ip[16..20].copy_from_slice(&[8, 8, 8, 8]);
        assert_eq!(
            classify(&ip),
            Body::Ipv4 {
                src: Ipv4Addr::new(10, 0, 0, 2),
                dst: Ipv4Addr::new(8, 8, 8, 8)
            }
        );
        let mut short = ip;
        short[3] = 40;
        assert_eq!(classify(&short), Body::Junk);
        let mut ihl = ip;
        ihl[0] = 0x44;
        assert_eq!(classify(&ihl), Body::Junk);
        assert_eq!(classify(&ip[..19]), Body::Junk);
        assert_eq!(classify(&[]), Body::Junk);
        assert_eq!(classify(&[0x60; 40]), Body::Ipv6);
        assert_eq!(classify(&[0x60; 39]), Body::Junk);
        let k = keepalive(false, 7);
        assert_eq!(k, [0, 9, 1, 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(classify(&k[2..]), Body::Ping(7));
        assert_eq!(classify(&keepalive(true, 7)[2..]), Body::Pong(7));
        assert_eq!(classify(&k[2..10]), Body::Junk);
        assert_eq!(classify(&[0x03; 9]), Body::Junk);
    }

    #[test]
    fn networks() {
        let a = net([192, 168, 2, 0], 29);
        assert!(a.overlaps(&net([192, 168, 2, 5], 32)));
        assert!(!a.overlaps(&net([192, 168, 2, 8], 29)));
        assert!(a.overlaps(&net([192, 168, 0, 0], 16)));
        assert!(net([0, 0, 0, 0], 0).overlaps(&a));
        assert!(a.contains(Ipv4Addr::new(192, 168, 2, 7)));
        assert!(!a.contains(Ipv4Addr::new(192, 168, 2, 8)));
        assert_eq!(net([192, 168, 2, 5], 29).to_string(), "192.168.2.0/29");
    }
}
