//! The two small headers of dmsg (DESIGN.md §3.5, `docs/protocol.md` §7): the relay's channel
//! request and the port header of every stream inside a channel, each with its one-byte
//! answer.
//!
//! ```text
//!  channel request (the SYN control payload on a client ↔ relay session, 33 bytes)
//!  0         1                                  33
//!  +---------+----------------------------------+
//!  | version | pk (32): the destination when a  |     answered by one relay status byte:
//!  | u8 = 01 | client asks, the source when the |     00 connected, 01 not connected,
//!  |         | relay opens the other side       |     02 refused, 03 bad request
//!  +---------+----------------------------------+
//!
//!  port header (the first bytes of a stream inside an end-to-end channel, 4 bytes)
//!  0          2          4
//!  +----------+----------+
//!  | dst_port | src_port |    answered by one port status byte:
//!  | u16be    | u16be    |    00 accepted, 01 nothing listens, 02 backlog full
//!  +----------+----------+
//! ```
//!
//! A channel request is the whole control payload, so its length is exactly
//! [`REQUEST_LEN`]; a different length is a [`WireError::BadLength`]. An unknown version parses
//! (and survives a round trip): the relay answers it with [`RelayStatus::BadRequest`]. The
//! public key is carried as bytes: whether it is a valid Ed25519 key is the crypto layer's
//! question. Status bytes this build does not know parse as `Unknown(u8)`.

use core::fmt;

use super::{WireError, check_len, get_u16, put_u16};

mod field {
    use core::ops::Range;

    /// Channel request: the version byte.
    pub const VERSION: usize = 0;
    /// Channel request: the public key.
    pub const PK: Range<usize> = 1..33;

    /// Port header: the port asked for.
    pub const DST_PORT: Range<usize> = 0..2;
    /// Port header: the asking side's port.
    pub const SRC_PORT: Range<usize> = 2..4;
}

/// The only channel request version.
pub const CONTROL_V1: u8 = 1;
/// Length of a channel request.
pub const REQUEST_LEN: usize = field::PK.end;
/// Length of a port header.
pub const PORT_HEADER_LEN: usize = field::SRC_PORT.end;

/// A read/write view of a channel request (a stream's whole SYN control payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Request<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> Request<T> {
        Request { buffer }
    }

    /// Wraps untrusted bytes: fails unless they are exactly [`REQUEST_LEN`] long.
    pub fn new_checked(buffer: T) -> Result<Request<T>, WireError> {
        let r = Request::new_unchecked(buffer);
        r.check_len()?;
        Ok(r)
    }

    /// Verifies the length, so no accessor can panic.
    pub fn check_len(&self) -> Result<(), WireError> {
        let buf = self.buffer.as_ref();
        check_len(buf, REQUEST_LEN)?;
        if buf.len() != REQUEST_LEN {
            return Err(WireError::BadLength {
                field: "channel request",
                value: buf.len(),
            });
        }
        Ok(())
    }

    /// The version byte.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    /// The public key's bytes.
    pub fn pk(&self) -> &[u8; 32] {
        self.buffer.as_ref()[field::PK]
            .try_into()
            .expect("field::PK is 32 bytes")
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Request<T> {
    /// Sets the version byte.
    pub fn set_version(&mut self, v: u8) {
        self.buffer.as_mut()[field::VERSION] = v;
    }

    /// Sets the public key.
    pub fn set_pk(&mut self, pk: &[u8; 32]) {
        self.buffer.as_mut()[field::PK].copy_from_slice(pk);
    }
}

impl<T: AsRef<[u8]>> fmt::Display for Request<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match RequestRepr::parse(self) {
            Ok(r) => write!(f, "{r}"),
            Err(e) => write!(f, "channel request ({e})"),
        }
    }
}

/// A parsed channel request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRepr {
    /// The version byte ([`CONTROL_V1`]; others parse, and are refused above).
    pub version: u8,
    /// The destination (client → relay) or the source (relay → client).
    pub pk: [u8; 32],
}

impl RequestRepr {
    /// A version-1 request naming `pk`.
    pub const fn v1(pk: [u8; 32]) -> RequestRepr {
        RequestRepr {
            version: CONTROL_V1,
            pk,
        }
    }

    /// Parses an untrusted request.
    pub fn parse<T: AsRef<[u8]>>(r: &Request<T>) -> Result<RequestRepr, WireError> {
        r.check_len()?;
        Ok(RequestRepr {
            version: r.version(),
            pk: *r.pk(),
        })
    }

    /// The pk named by `control` if it is a version-1 request, else `None` (the relay answers
    /// that with [`RelayStatus::BadRequest`]; a client drops the stream).
    pub fn v1_pk(control: &[u8]) -> Option<[u8; 32]> {
        let r = RequestRepr::parse(&Request::new_checked(control).ok()?).ok()?;
        (r.version == CONTROL_V1).then_some(r.pk)
    }

    /// Bytes the request occupies.
    pub const fn buffer_len(&self) -> usize {
        REQUEST_LEN
    }

    /// Writes the request into `r`, whose buffer is [`buffer_len`](Self::buffer_len) long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, r: &mut Request<T>) -> Result<(), WireError> {
        r.check_len()?;
        r.set_version(self.version);
        r.set_pk(&self.pk);
        Ok(())
    }

    /// The request as the 33 bytes of a control payload.
    pub fn to_bytes(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        let mut r = Request::new_unchecked(&mut b[..]);
        r.set_version(self.version);
        r.set_pk(&self.pk);
        b
    }
}

impl fmt::Display for RequestRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "channel request v{} pk ", self.version)?;
        for b in &self.pk[..4] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

/// The relay's answer to a channel request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayStatus {
    /// `00`: the channel is connected.
    Ok,
    /// `01`: the destination has no session with this relay.
    NotConnected,
    /// `02`: the destination's session refused the stream (busy or closing).
    Refused,
    /// `03`: the request was malformed.
    BadRequest,
    /// A byte this build does not know.
    Unknown(u8),
}

impl RelayStatus {
    /// The status of a byte.
    pub const fn from_byte(b: u8) -> RelayStatus {
        match b {
            0 => RelayStatus::Ok,
            1 => RelayStatus::NotConnected,
            2 => RelayStatus::Refused,
            3 => RelayStatus::BadRequest,
            b => RelayStatus::Unknown(b),
        }
    }

    /// The byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            RelayStatus::Ok => 0,
            RelayStatus::NotConnected => 1,
            RelayStatus::Refused => 2,
            RelayStatus::BadRequest => 3,
            RelayStatus::Unknown(b) => b,
        }
    }

    /// What it means, for error messages.
    pub const fn text(self) -> &'static str {
        match self {
            RelayStatus::Ok => "connected",
            RelayStatus::NotConnected => "the peer is not connected to this relay",
            RelayStatus::Refused => "the peer's session refused the channel (busy or closing)",
            RelayStatus::BadRequest => "the relay refused a malformed request",
            RelayStatus::Unknown(_) => "unknown relay status",
        }
    }
}

impl fmt::Display for RelayStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// A read/write view of a port header (the first bytes of an inner stream; data follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> PortHeader<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> PortHeader<T> {
        PortHeader { buffer }
    }

    /// Wraps untrusted bytes: fails unless they hold [`PORT_HEADER_LEN`] bytes (more may
    /// follow: the stream's data).
    pub fn new_checked(buffer: T) -> Result<PortHeader<T>, WireError> {
        let h = PortHeader::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// Verifies the length, so no accessor can panic.
    pub fn check_len(&self) -> Result<(), WireError> {
        check_len(self.buffer.as_ref(), PORT_HEADER_LEN)
    }

    /// The port asked for.
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// The asking side's port.
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> PortHeader<T> {
    /// Sets the port asked for.
    pub fn set_dst_port(&mut self, p: u16) {
        put_u16(self.buffer.as_mut(), field::DST_PORT.start, p);
    }

    /// Sets the asking side's port.
    pub fn set_src_port(&mut self, p: u16) {
        put_u16(self.buffer.as_mut(), field::SRC_PORT.start, p);
    }
}

impl<T: AsRef<[u8]>> fmt::Display for PortHeader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match PortRepr::parse(self) {
            Ok(r) => write!(f, "{r}"),
            Err(e) => write!(f, "port header ({e})"),
        }
    }
}

/// A parsed port header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRepr {
    /// The port asked for.
    pub dst_port: u16,
    /// The asking side's port.
    pub src_port: u16,
}

impl PortRepr {
    /// Parses an untrusted header.
    pub fn parse<T: AsRef<[u8]>>(h: &PortHeader<T>) -> Result<PortRepr, WireError> {
        h.check_len()?;
        Ok(PortRepr {
            dst_port: h.dst_port(),
            src_port: h.src_port(),
        })
    }

    /// Bytes the header occupies.
    pub const fn buffer_len(&self) -> usize {
        PORT_HEADER_LEN
    }

    /// Writes the header into `h`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        h: &mut PortHeader<T>,
    ) -> Result<(), WireError> {
        h.check_len()?;
        h.set_dst_port(self.dst_port);
        h.set_src_port(self.src_port);
        Ok(())
    }

    /// The header as its 4 bytes.
    pub fn to_bytes(&self) -> [u8; PORT_HEADER_LEN] {
        let mut b = [0u8; PORT_HEADER_LEN];
        let mut h = PortHeader::new_unchecked(&mut b[..]);
        h.set_dst_port(self.dst_port);
        h.set_src_port(self.src_port);
        b
    }

    /// The header followed by `first`, the stream's first bytes sent before the answer, for
    /// one write (so they leave in one frame).
    pub fn with_first(&self, first: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(PORT_HEADER_LEN + first.len());
        v.extend_from_slice(&self.to_bytes());
        v.extend_from_slice(first);
        v
    }
}

impl fmt::Display for PortRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port header dst={} src={}", self.dst_port, self.src_port)
    }
}

/// The listener's answer to a port header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortStatus {
    /// `00`: accepted; the stream is the application's from the next byte.
    Ok,
    /// `01`: nothing listens on `dst_port`.
    Closed,
    /// `02`: the listener's backlog is full.
    Busy,
    /// A byte this build does not know.
    Unknown(u8),
}

impl PortStatus {
    /// The status of a byte.
    pub const fn from_byte(b: u8) -> PortStatus {
        match b {
            0 => PortStatus::Ok,
            1 => PortStatus::Closed,
            2 => PortStatus::Busy,
            b => PortStatus::Unknown(b),
        }
    }

    /// The byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            PortStatus::Ok => 0,
            PortStatus::Closed => 1,
            PortStatus::Busy => 2,
            PortStatus::Unknown(b) => b,
        }
    }
}

impl fmt::Display for PortStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortStatus::Ok => f.write_str("accepted"),
            PortStatus::Closed => f.write_str("nothing listens on that port"),
            PortStatus::Busy => f.write_str("the listener is busy"),
            PortStatus::Unknown(b) => write!(f, "unknown port status {b}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::unhex;

    // Golden bytes, mirrored in docs/protocol.md §7.
    const REQUEST: &str =
        "01 a1a2a3a4 00000000 00000000 00000000 00000000 00000000 00000000 000000ff";
    const PORT: &str = "1452 c000";

    fn pk() -> [u8; 32] {
        let mut pk = [0u8; 32];
        pk[..4].copy_from_slice(&[0xa1, 0xa2, 0xa3, 0xa4]);
        pk[31] = 0xff;
        pk
    }

    #[test]
    fn request_golden_bytes() {
        let bytes = unhex(REQUEST);
        let r = Request::new_checked(&bytes[..]).unwrap();
        assert_eq!(r.version(), CONTROL_V1);
        let repr = RequestRepr::parse(&r).unwrap();
        assert_eq!(repr, RequestRepr::v1(pk()));
        assert_eq!(repr.to_bytes().as_slice(), &bytes[..]);
        let mut out = [0u8; REQUEST_LEN];
        repr.emit(&mut Request::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(out.as_slice(), &bytes[..]);
        assert_eq!(r.to_string(), "channel request v1 pk a1a2a3a4…");
    }

    #[test]
    fn request_must_be_exactly_33_bytes() {
        let bytes = unhex(REQUEST);
        assert_eq!(
            Request::new_checked(&bytes[..32]).unwrap_err(),
            WireError::Truncated { need: 33, have: 32 }
        );
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            Request::new_checked(&long[..]).unwrap_err(),
            WireError::BadLength {
                field: "channel request",
                value: 34
            }
        );
        assert!(Request::new_checked(&[][..]).is_err());
    }

    #[test]
    fn unknown_request_version_round_trips() {
        let mut bytes = unhex(REQUEST);
        bytes[0] = 7;
        let repr = RequestRepr::parse(&Request::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(repr.version, 7);
        assert_eq!(repr.to_bytes().as_slice(), &bytes[..]);
        assert_eq!(RequestRepr::v1_pk(&bytes), None);
        bytes[0] = CONTROL_V1;
        assert_eq!(RequestRepr::v1_pk(&bytes), Some(pk()));
        assert_eq!(RequestRepr::v1_pk(&bytes[..32]), None);
    }

    #[test]
    fn port_header_golden_bytes() {
        let bytes = unhex(PORT);
        let h = PortHeader::new_checked(&bytes[..]).unwrap();
        let repr = PortRepr::parse(&h).unwrap();
        assert_eq!(
            repr,
            PortRepr {
                dst_port: 5202,
                src_port: 49152
            }
        );
        assert_eq!(repr.to_bytes().as_slice(), &bytes[..]);
        assert_eq!(h.to_string(), "port header dst=5202 src=49152");
        // Data may follow the header.
        let mut more = bytes.clone();
        more.extend_from_slice(b"hello");
        assert_eq!(
            PortRepr::parse(&PortHeader::new_checked(&more[..]).unwrap()).unwrap(),
            repr
        );
        assert_eq!(
            PortHeader::new_checked(&bytes[..3]).unwrap_err(),
            WireError::Truncated { need: 4, have: 3 }
        );
    }

    #[test]
    fn status_bytes() {
        for b in 0..=255u8 {
            assert_eq!(PortStatus::from_byte(b).to_byte(), b);
            assert_eq!(RelayStatus::from_byte(b).to_byte(), b);
        }
        assert_eq!(PortStatus::from_byte(0), PortStatus::Ok);
        assert_eq!(PortStatus::from_byte(1), PortStatus::Closed);
        assert_eq!(PortStatus::from_byte(2), PortStatus::Busy);
        assert_eq!(PortStatus::from_byte(9), PortStatus::Unknown(9));
        assert_eq!(RelayStatus::from_byte(0), RelayStatus::Ok);
        assert_eq!(RelayStatus::from_byte(1), RelayStatus::NotConnected);
        assert_eq!(RelayStatus::from_byte(2), RelayStatus::Refused);
        assert_eq!(RelayStatus::from_byte(3), RelayStatus::BadRequest);
        assert_eq!(
            RelayStatus::NotConnected.to_string(),
            "the peer is not connected to this relay"
        );
    }
}
