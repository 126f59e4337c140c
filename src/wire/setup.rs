//! Skynet route setup payloads (DESIGN.md §3.8, `docs/protocol.md` "Skynet: route setup"):
//! the payloads of routing packets of type 7 (setup request), 8 (setup ack) and 9 (setup
//! nack).
//!
//! ```text
//!  setup request (route id 0), 19 + 32·n bytes
//!  0          4          12    13    14    15           19
//!  +----------+----------+-----+-----+-----+------------+----------------------+
//!  | setup_id | group_id | leg | hop | n   | reverse_id | path: n × 32-byte PK |
//!  | u32be    | u64be    | u8  | u8  | u8  | u32be      | source … destination |
//!  +----------+----------+-----+-----+-----+------------+----------------------+
//!
//!  setup ack (route id = the receiver's own id), 8 bytes
//!  0          4
//!  +----------+-------+
//!  | setup_id | id    |   id: the route id the ack's sender allocated (packets towards
//!  | u32be    | u32be |       the destination go there)
//!  +----------+-------+
//!
//!  setup nack (route id = the receiver's own id), 5 + reason_len bytes
//!  0          4            5
//!  +----------+------------+-------------------+
//!  | setup_id | reason_len | reason (UTF-8)    |
//!  | u32be    | u8         | reason_len bytes  |
//!  +----------+------------+-------------------+
//! ```
//!
//! `hop` is the index in `path` of the node receiving the request (1 ..= n − 1), `n` the path
//! length counting source and destination (2 ..= 9: one to eight transport hops), and
//! `reverse_id` the route id the request's sender allocated (packets towards the source go
//! there). `new_checked` rejects a request whose `n` or `hop` is out of range or whose path is
//! not all present, and a nack whose reason is cut short or not UTF-8; bytes after the payload
//! are allowed by the views (the router checks the packet's exact length). The PKs are bytes
//! here: whether they are valid Ed25519 keys is the crypto layer's question.

use core::fmt;

use super::{WireError, check_len, get_u32, put_u32};

mod field {
    use core::ops::{Range, RangeFrom};

    pub const SETUP_ID: Range<usize> = 0..4;
    pub const GROUP_ID: Range<usize> = 4..12;
    pub const LEG: usize = 12;
    pub const HOP: usize = 13;
    pub const N: usize = 14;
    pub const REVERSE_ID: Range<usize> = 15..19;
    pub const PATH: RangeFrom<usize> = 19..;

    pub const ACK_ID: Range<usize> = 4..8;

    pub const REASON_LEN: usize = 4;
    pub const REASON: RangeFrom<usize> = 5..;
}

/// Length of a public key in a path.
pub const PK_LEN: usize = 32;
/// Fewest nodes in a path (source and destination: one hop).
pub const MIN_PATH: usize = 2;
/// Most nodes in a path (eight transport hops).
pub const MAX_PATH: usize = 9;
/// Length of a request before its path.
pub const REQUEST_HEADER_LEN: usize = field::PATH.start;
/// Largest request payload.
pub const MAX_REQUEST_LEN: usize = REQUEST_HEADER_LEN + MAX_PATH * PK_LEN;
/// Length of an ack payload.
pub const ACK_LEN: usize = field::ACK_ID.end;
/// Length of a nack before its reason.
pub const NACK_HEADER_LEN: usize = field::REASON.start;
/// Longest nack reason.
pub const MAX_REASON_LEN: usize = u8::MAX as usize;

fn get_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_be_bytes(b)
}

/// A read/write view of a setup request payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Request<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> Request<T> {
        Request { buffer }
    }

    /// Wraps untrusted bytes: fails unless `n` is 2..=9, `hop` is 1..n and the path is all
    /// present.
    pub fn new_checked(buffer: T) -> Result<Request<T>, WireError> {
        let r = Request::new_unchecked(buffer);
        r.check_len()?;
        Ok(r)
    }

    /// Verifies the fields are in range and the buffer holds the whole path.
    pub fn check_len(&self) -> Result<(), WireError> {
        let buf = self.buffer.as_ref();
        check_len(buf, REQUEST_HEADER_LEN)?;
        let n = usize::from(buf[field::N]);
        if !(MIN_PATH..=MAX_PATH).contains(&n) {
            return Err(WireError::BadLength {
                field: "setup path length",
                value: n,
            });
        }
        let hop = usize::from(buf[field::HOP]);
        if hop == 0 || hop >= n {
            return Err(WireError::BadLength {
                field: "setup hop index",
                value: hop,
            });
        }
        check_len(buf, self.total_len())
    }

    /// The setup id the source chose.
    pub fn setup_id(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SETUP_ID.start)
    }

    /// The route group the leg belongs to.
    pub fn group_id(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::GROUP_ID.start)
    }

    /// The leg's index in its group.
    pub fn leg(&self) -> u8 {
        self.buffer.as_ref()[field::LEG]
    }

    /// Index in the path of the receiving node.
    pub fn hop(&self) -> u8 {
        self.buffer.as_ref()[field::HOP]
    }

    /// Nodes in the path, source and destination included.
    pub fn n(&self) -> u8 {
        self.buffer.as_ref()[field::N]
    }

    /// The id the sender allocated (packets towards the source go there).
    pub fn reverse_id(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::REVERSE_ID.start)
    }

    /// Bytes the payload occupies.
    pub fn total_len(&self) -> usize {
        REQUEST_HEADER_LEN + PK_LEN * usize::from(self.n())
    }

    /// The path, source first.
    pub fn path(&self) -> &[[u8; PK_LEN]] {
        let end = self.total_len();
        self.buffer.as_ref()[field::PATH.start..end].as_chunks().0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Request<T> {
    /// Sets the hop index (what a forwarding hop changes, with the reverse id).
    pub fn set_hop(&mut self, hop: u8) {
        self.buffer.as_mut()[field::HOP] = hop;
    }

    /// Sets the reverse id.
    pub fn set_reverse_id(&mut self, id: u32) {
        put_u32(self.buffer.as_mut(), field::REVERSE_ID.start, id);
    }
}

/// A parsed setup request; the path stays in the buffer it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRepr<'a> {
    /// The setup id.
    pub setup_id: u32,
    /// The route group.
    pub group_id: u64,
    /// The leg's index in its group.
    pub leg: u8,
    /// Index in `path` of the receiving node.
    pub hop: u8,
    /// The id the sender allocated.
    pub reverse_id: u32,
    /// The path, source first (2 ..= 9 keys).
    pub path: &'a [[u8; PK_LEN]],
}

impl<'a> RequestRepr<'a> {
    /// Parses a checked view.
    pub fn parse(view: &Request<&'a [u8]>) -> Result<RequestRepr<'a>, WireError> {
        view.check_len()?;
        Ok(RequestRepr {
            setup_id: view.setup_id(),
            group_id: view.group_id(),
            leg: view.leg(),
            hop: view.hop(),
            reverse_id: view.reverse_id(),
            path: view.path_ref(),
        })
    }

    /// Bytes needed to emit the payload.
    pub fn buffer_len(&self) -> usize {
        REQUEST_HEADER_LEN + PK_LEN * self.path.len()
    }

    /// Writes the payload; fails if the path length or hop is out of range or the buffer is
    /// short.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, r: &mut Request<T>) -> Result<(), WireError> {
        let n = self.path.len();
        if !(MIN_PATH..=MAX_PATH).contains(&n) {
            return Err(WireError::BadLength {
                field: "setup path length",
                value: n,
            });
        }
        if self.hop == 0 || usize::from(self.hop) >= n {
            return Err(WireError::BadLength {
                field: "setup hop index",
                value: usize::from(self.hop),
            });
        }
        let buf = r.buffer.as_mut();
        check_len(buf, self.buffer_len())?;
        put_u32(buf, field::SETUP_ID.start, self.setup_id);
        buf[field::GROUP_ID].copy_from_slice(&self.group_id.to_be_bytes());
        buf[field::LEG] = self.leg;
        buf[field::HOP] = self.hop;
        buf[field::N] = n as u8;
        put_u32(buf, field::REVERSE_ID.start, self.reverse_id);
        for (i, pk) in self.path.iter().enumerate() {
            let at = field::PATH.start + i * PK_LEN;
            buf[at..at + PK_LEN].copy_from_slice(pk);
        }
        Ok(())
    }
}

impl<'a> Request<&'a [u8]> {
    fn path_ref(&self) -> &'a [[u8; PK_LEN]] {
        let end = self.total_len();
        self.buffer[field::PATH.start..end].as_chunks().0
    }
}

impl fmt::Display for RequestRepr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "setup request id={} group={} leg={} hop={}/{} reverse={}",
            self.setup_id,
            self.group_id,
            self.leg,
            self.hop,
            self.path.len(),
            self.reverse_id
        )
    }
}

/// A read/write view of a setup ack payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ack<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Ack<T> {
        Ack { buffer }
    }

    /// Wraps untrusted bytes: fails unless all 8 bytes are present.
    pub fn new_checked(buffer: T) -> Result<Ack<T>, WireError> {
        check_len(buffer.as_ref(), ACK_LEN)?;
        Ok(Ack { buffer })
    }

    /// The setup id.
    pub fn setup_id(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SETUP_ID.start)
    }

    /// The id the ack's sender allocated.
    pub fn id(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK_ID.start)
    }
}

/// A parsed setup ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckRepr {
    /// The setup id.
    pub setup_id: u32,
    /// The id the ack's sender allocated.
    pub id: u32,
}

impl AckRepr {
    /// Parses a view.
    pub fn parse<T: AsRef<[u8]>>(a: &Ack<T>) -> Result<AckRepr, WireError> {
        check_len(a.buffer.as_ref(), ACK_LEN)?;
        Ok(AckRepr {
            setup_id: a.setup_id(),
            id: a.id(),
        })
    }

    /// Bytes needed to emit.
    pub const fn buffer_len(&self) -> usize {
        ACK_LEN
    }

    /// Writes the payload.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, a: &mut Ack<T>) -> Result<(), WireError> {
        let buf = a.buffer.as_mut();
        check_len(buf, ACK_LEN)?;
        put_u32(buf, field::SETUP_ID.start, self.setup_id);
        put_u32(buf, field::ACK_ID.start, self.id);
        Ok(())
    }
}

impl fmt::Display for AckRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "setup ack id={} route={}", self.setup_id, self.id)
    }
}

/// A read/write view of a setup nack payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nack<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Nack<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Nack<T> {
        Nack { buffer }
    }

    /// Wraps untrusted bytes: fails unless the whole reason is present and is UTF-8.
    pub fn new_checked(buffer: T) -> Result<Nack<T>, WireError> {
        let n = Nack { buffer };
        let buf = n.buffer.as_ref();
        check_len(buf, NACK_HEADER_LEN)?;
        check_len(buf, n.total_len())?;
        if core::str::from_utf8(&buf[field::REASON.start..n.total_len()]).is_err() {
            return Err(WireError::BadLength {
                field: "nack reason (not UTF-8)",
                value: usize::from(buf[field::REASON_LEN]),
            });
        }
        Ok(n)
    }

    /// The setup id.
    pub fn setup_id(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SETUP_ID.start)
    }

    /// Bytes the payload occupies.
    pub fn total_len(&self) -> usize {
        NACK_HEADER_LEN + usize::from(self.buffer.as_ref()[field::REASON_LEN])
    }

    /// The reason (empty if a view built unchecked holds bytes that are not UTF-8).
    pub fn reason(&self) -> &str {
        let end = self.total_len();
        core::str::from_utf8(&self.buffer.as_ref()[field::REASON.start..end]).unwrap_or("")
    }
}

/// A parsed setup nack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NackRepr<'a> {
    /// The setup id.
    pub setup_id: u32,
    /// Why the setup failed, naming the failing node.
    pub reason: &'a str,
}

impl<'a> NackRepr<'a> {
    /// A nack; fails if the reason is longer than 255 bytes.
    pub fn new(setup_id: u32, reason: &'a str) -> Result<NackRepr<'a>, WireError> {
        if reason.len() > MAX_REASON_LEN {
            return Err(WireError::TooLong {
                field: "nack reason",
                len: reason.len(),
                max: MAX_REASON_LEN,
            });
        }
        Ok(NackRepr { setup_id, reason })
    }

    /// Parses a view.
    pub fn parse(n: &Nack<&'a [u8]>) -> Result<NackRepr<'a>, WireError> {
        let buf: &'a [u8] = n.buffer;
        let view = Nack::new_checked(buf)?;
        let end = view.total_len();
        let reason = core::str::from_utf8(&buf[field::REASON.start..end]).unwrap_or("");
        Ok(NackRepr {
            setup_id: view.setup_id(),
            reason,
        })
    }

    /// Bytes needed to emit.
    pub fn buffer_len(&self) -> usize {
        NACK_HEADER_LEN + self.reason.len()
    }

    /// Writes the payload; fails if the reason is too long or the buffer short.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, n: &mut Nack<T>) -> Result<(), WireError> {
        let len = self.reason.len();
        if len > MAX_REASON_LEN {
            return Err(WireError::TooLong {
                field: "nack reason",
                len,
                max: MAX_REASON_LEN,
            });
        }
        let buf = n.buffer.as_mut();
        check_len(buf, self.buffer_len())?;
        put_u32(buf, field::SETUP_ID.start, self.setup_id);
        buf[field::REASON_LEN] = len as u8;
        buf[field::REASON.start..field::REASON.start + len].copy_from_slice(self.reason.as_bytes());
        Ok(())
    }
}

impl fmt::Display for NackRepr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "setup nack id={}: {}", self.setup_id, self.reason)
    }
}

/// Cuts `reason` to at most 255 bytes on a character boundary (what a nack can carry).
pub fn clip_reason(reason: &str) -> &str {
    if reason.len() <= MAX_REASON_LEN {
        return reason;
    }
    let mut end = MAX_REASON_LEN;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::unhex;

    // Golden examples (docs/protocol.md, "Skynet: route setup"). Path keys are 32 bytes of
    // 0xaa (source), 0xbb (intermediary), 0xcc (destination).
    fn pk_hex(b: &str) -> String {
        b.repeat(32)
    }

    /// Setup 1, group 0x0102030405060708, leg 0, received by hop 1 of a 3-node path, reverse
    /// id 5.
    fn request_hex() -> String {
        format!(
            "00000001 0102030405060708 00 01 03 00000005 {} {} {}",
            pk_hex("aa"),
            pk_hex("bb"),
            pk_hex("cc")
        )
    }
    /// Ack of setup 1: the sender allocated route id 9.
    const ACK: &str = "00000001 00000009";
    /// Nack of setup 1: "bbbbbbbb: route table full".
    const NACK: &str = "00000001 1a 62626262626262623a20726f757465207461626c652066756c6c";

    #[test]
    fn golden_request() {
        let bytes = unhex(&request_hex());
        assert_eq!(bytes.len(), 19 + 96);
        let view = Request::new_checked(&bytes[..]).unwrap();
        let repr = RequestRepr::parse(&view).unwrap();
        let path = [[0xaa; 32], [0xbb; 32], [0xcc; 32]];
        let want = RequestRepr {
            setup_id: 1,
            group_id: 0x0102_0304_0506_0708,
            leg: 0,
            hop: 1,
            reverse_id: 5,
            path: &path,
        };
        assert_eq!(repr, want);
        assert_eq!(
            repr.to_string(),
            "setup request id=1 group=72623859790382856 leg=0 hop=1/3 reverse=5"
        );
        let mut out = vec![0u8; want.buffer_len()];
        want.emit(&mut Request::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(out, bytes);

        // A forwarding hop advances hop and sets its own reverse id in place.
        let mut fwd = bytes.clone();
        let mut v = Request::new_checked(&mut fwd[..]).unwrap();
        v.set_hop(2);
        v.set_reverse_id(0x77);
        assert_eq!(v.hop(), 2);
        assert_eq!(v.reverse_id(), 0x77);
        assert_eq!(v.path(), &path);
    }

    #[test]
    fn request_ranges_are_checked() {
        let bytes = unhex(&request_hex());
        assert_eq!(
            Request::new_checked(&bytes[..18]),
            Err(WireError::Truncated { need: 19, have: 18 })
        );
        assert_eq!(
            Request::new_checked(&bytes[..100]),
            Err(WireError::Truncated {
                need: 115,
                have: 100
            })
        );
        for (n, ok) in [
            (0u8, false),
            (1, false),
            (2, true),
            (3, true),
            (9, true),
            (10, false),
        ] {
            let mut b = bytes.clone();
            b[14] = n;
            b[13] = 1;
            b.resize(19 + 32 * usize::from(n.max(3)), 0);
            assert_eq!(Request::new_checked(&b[..]).is_ok(), ok, "n={n}");
        }
        for (hop, ok) in [(0u8, false), (1, true), (2, true), (3, false), (200, false)] {
            let mut b = bytes.clone();
            b[13] = hop;
            assert_eq!(Request::new_checked(&b[..]).is_ok(), ok, "hop={hop}");
        }
        let one = [[1u8; 32]];
        let bad = RequestRepr {
            setup_id: 1,
            group_id: 1,
            leg: 0,
            hop: 1,
            reverse_id: 1,
            path: &one,
        };
        let mut out = [0u8; 64];
        assert!(bad.emit(&mut Request::new_unchecked(&mut out[..])).is_err());
        let ten = [[1u8; 32]; 10];
        let bad = RequestRepr { path: &ten, ..bad };
        let mut out = vec![0u8; bad.buffer_len()];
        assert!(bad.emit(&mut Request::new_unchecked(&mut out[..])).is_err());
        assert_eq!(MAX_REQUEST_LEN, 19 + 9 * 32);
    }

    #[test]
    fn golden_ack() {
        let bytes = unhex(ACK);
        let repr = AckRepr::parse(&Ack::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(repr, AckRepr { setup_id: 1, id: 9 });
        assert_eq!(repr.to_string(), "setup ack id=1 route=9");
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Ack::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, bytes);
        assert_eq!(
            Ack::new_checked(&bytes[..7]),
            Err(WireError::Truncated { need: 8, have: 7 })
        );
    }

    #[test]
    fn golden_nack() {
        let bytes = unhex(NACK);
        let view = Nack::new_checked(&bytes[..]).unwrap();
        let repr = NackRepr::parse(&view).unwrap();
        assert_eq!(
            repr,
            NackRepr::new(1, "bbbbbbbb: route table full").unwrap()
        );
        assert_eq!(
            repr.to_string(),
            "setup nack id=1: bbbbbbbb: route table full"
        );
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Nack::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, bytes);

        assert!(Nack::new_checked(&bytes[..4]).is_err());
        assert_eq!(
            Nack::new_checked(&bytes[..20]),
            Err(WireError::Truncated { need: 31, have: 20 })
        );
        let mut bad = bytes.clone();
        bad[5] = 0xff;
        assert!(Nack::new_checked(&bad[..]).is_err(), "not UTF-8");
        let long = "x".repeat(256);
        assert!(NackRepr::new(1, &long).is_err());
        assert_eq!(clip_reason(&long).len(), 255);
        let multi = "é".repeat(200);
        let clipped = clip_reason(&multi);
        assert!(clipped.len() <= 255 && clipped.len() == 254);
    }

    /// The whole routing packets of docs/protocol.md "Skynet: route setup", rebuilt from the
    /// views; each must appear in the document (whitespace aside).
    #[test]
    fn golden_packets_are_in_the_protocol_doc() {
        use crate::wire::route::{Packet, PacketType, Repr};
        fn whole(ty: PacketType, id: u32, payload: &[u8]) -> String {
            let repr = Repr::new(ty, id, payload.len()).unwrap();
            let mut out = vec![0u8; repr.buffer_len()];
            let mut p = Packet::new_unchecked(&mut out[..]);
            repr.emit(&mut p).unwrap();
            p.payload_mut().copy_from_slice(payload);
            out.iter().map(|b| format!("{b:02x}")).collect()
        }
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md"))
            .unwrap();
        let doc: String = doc.chars().filter(|c| !c.is_whitespace()).collect();
        let ack = |id: u32| {
            let repr = AckRepr { setup_id: 1, id };
            let mut b = vec![0u8; ACK_LEN];
            repr.emit(&mut Ack::new_unchecked(&mut b[..])).unwrap();
            b
        };
        let nack = NackRepr::new(1, "bbbbbbbb: route table full").unwrap();
        let mut nb = vec![0u8; nack.buffer_len()];
        nack.emit(&mut Nack::new_unchecked(&mut nb[..])).unwrap();
        for (what, hex) in [
            (
                "setup request",
                whole(PacketType::SetupRequest, 0, &unhex(&request_hex())),
            ),
            ("ack D to H", whole(PacketType::SetupAck, 6, &ack(9))),
            ("ack H to S", whole(PacketType::SetupAck, 5, &ack(6))),
            ("nack", whole(PacketType::SetupNack, 5, &nb)),
        ] {
            assert!(
                doc.contains(&hex),
                "docs/protocol.md lacks the {what}: {hex}"
            );
        }
    }
}
