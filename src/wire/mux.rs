//! The mux frame: the yamux v0 header (DESIGN.md §3.4).
//!
//! ```text
//!  0         1       2          4              8              12
//!  +---------+-------+----------+--------------+--------------+-----------------+
//!  | version | type  | flags    | stream id    | length       | data (plain     |
//!  | u8 = 0  | u8    | u16be    | u32be        | u32be        | framing only)   |
//!  +---------+-------+----------+--------------+--------------+-----------------+
//! ```
//!
//! Types: 0 data, 1 window update, 2 ping, 3 go-away. Flags: SYN 1, ACK 2, FIN 4, RST 8.
//! `length` means, by type: data — the number of data bytes that follow; window update — the
//! credit added to the stream's send window; ping — an opaque value the reply echoes;
//! go-away — the reason code (0 normal, 1 protocol error, 2 internal error).
//!
//! In plain yamux framing (used against hashicorp/yamux) a data frame's bytes follow the
//! header directly and the other types have no payload; [`Frame`] is a view over that layout.
//! Inside a sealed session frame ([`super::session`]) the same 12 header bytes are parsed with
//! [`Repr::parse_header`]. This module checks layout only: the version, unknown types and
//! unknown flag bits are carried through unchanged, and the mux core decides what is a
//! protocol violation.

use core::fmt;

use super::{WireError, check_len, get_u16, get_u32, put_u16, put_u32};

mod field {
    use core::ops::{Range, RangeFrom};

    pub const VERSION: usize = 0;
    pub const TYPE: usize = 1;
    pub const FLAGS: Range<usize> = 2..4;
    pub const STREAM_ID: Range<usize> = 4..8;
    pub const LENGTH: Range<usize> = 8..12;
    pub const PAYLOAD: RangeFrom<usize> = 12..;
}

/// Length of the header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;
/// The only protocol version (yamux v0).
pub const VERSION: u8 = 0;

/// The frame type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Type {
    /// Stream data (`length` bytes follow).
    Data,
    /// Flow-control credit for a stream (`length` is the increment); also opens, accepts,
    /// half-closes or resets a stream through its flags.
    WindowUpdate,
    /// Keep-alive / round-trip probe (`length` is echoed; SYN asks, ACK answers).
    Ping,
    /// Session shutdown (`length` is a [`GoAwayCode`]).
    GoAway,
    /// A type code this version does not know; kept so the layer above can decide.
    Unknown(u8),
}

impl From<u8> for Type {
    fn from(v: u8) -> Type {
        match v {
            0 => Type::Data,
            1 => Type::WindowUpdate,
            2 => Type::Ping,
            3 => Type::GoAway,
            other => Type::Unknown(other),
        }
    }
}

impl From<Type> for u8 {
    fn from(t: Type) -> u8 {
        match t {
            Type::Data => 0,
            Type::WindowUpdate => 1,
            Type::Ping => 2,
            Type::GoAway => 3,
            Type::Unknown(v) => v,
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Data => f.write_str("data"),
            Type::WindowUpdate => f.write_str("window-update"),
            Type::Ping => f.write_str("ping"),
            Type::GoAway => f.write_str("go-away"),
            Type::Unknown(v) => write!(f, "unknown-type-{v}"),
        }
    }
}

/// The flags field: a set of SYN, ACK, FIN and RST. Unknown bits are preserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u16);

impl Flags {
    /// No flags.
    pub const NONE: Flags = Flags(0);
    /// Opens a stream (on data or window update); asks for a reply (on ping).
    pub const SYN: Flags = Flags(1);
    /// Accepts a stream; answers a ping.
    pub const ACK: Flags = Flags(2);
    /// Half-closes the sender's direction of a stream.
    pub const FIN: Flags = Flags(4);
    /// Resets a stream in both directions.
    pub const RST: Flags = Flags(8);

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// True if every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of two sets.
    #[must_use]
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// True if no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        self.with(rhs)
    }
}

impl core::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        let mut rest = self.0;
        for (flag, name) in [
            (Flags::SYN, "SYN"),
            (Flags::ACK, "ACK"),
            (Flags::FIN, "FIN"),
            (Flags::RST, "RST"),
        ] {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !flag.0;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{rest:#06x}")?;
        }
        Ok(())
    }
}

/// The reason code a go-away frame carries in its length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GoAwayCode {
    /// Normal shutdown: no new streams, existing ones may finish.
    Normal,
    /// The sender saw a protocol violation.
    ProtocolError,
    /// The sender failed internally.
    InternalError,
    /// A code this version does not know.
    Unknown(u32),
}

impl From<u32> for GoAwayCode {
    fn from(v: u32) -> GoAwayCode {
        match v {
            0 => GoAwayCode::Normal,
            1 => GoAwayCode::ProtocolError,
            2 => GoAwayCode::InternalError,
            other => GoAwayCode::Unknown(other),
        }
    }
}

impl From<GoAwayCode> for u32 {
    fn from(c: GoAwayCode) -> u32 {
        match c {
            GoAwayCode::Normal => 0,
            GoAwayCode::ProtocolError => 1,
            GoAwayCode::InternalError => 2,
            GoAwayCode::Unknown(v) => v,
        }
    }
}

impl fmt::Display for GoAwayCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GoAwayCode::Normal => f.write_str("normal"),
            GoAwayCode::ProtocolError => f.write_str("protocol error"),
            GoAwayCode::InternalError => f.write_str("internal error"),
            GoAwayCode::Unknown(v) => write!(f, "unknown code {v}"),
        }
    }
}

/// A read/write view of a plain yamux frame (header, then a data frame's payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps untrusted bytes: fails unless the buffer holds the header and, for a data frame,
    /// all `length` data bytes. Bytes after the frame are allowed.
    pub fn new_checked(buffer: T) -> Result<Frame<T>, WireError> {
        let frame = Frame::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Verifies the buffer holds the whole frame, so no accessor can panic.
    pub fn check_len(&self) -> Result<(), WireError> {
        let buf = self.buffer.as_ref();
        check_len(buf, HEADER_LEN)?;
        check_len(buf, self.total_len())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version byte (0 for yamux v0).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    /// The frame type.
    pub fn frame_type(&self) -> Type {
        Type::from(self.buffer.as_ref()[field::TYPE])
    }

    /// The flags.
    pub fn flags(&self) -> Flags {
        Flags(get_u16(self.buffer.as_ref(), field::FLAGS.start))
    }

    /// The stream id (0 for session frames: ping, go-away).
    pub fn stream_id(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::STREAM_ID.start)
    }

    /// The length field (meaning depends on the type; see the module docs).
    pub fn length(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Data bytes that follow the header in plain framing: `length` for a data frame, else 0.
    pub fn payload_len(&self) -> usize {
        payload_len(self.frame_type(), self.length())
    }

    /// Bytes the whole plain frame occupies.
    pub fn total_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.payload_len())
    }

    /// A data frame's payload (empty for the other types).
    pub fn payload(&self) -> &[u8] {
        let end = self.total_len();
        &self.buffer.as_ref()[field::PAYLOAD.start..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the version byte.
    pub fn set_version(&mut self, v: u8) {
        self.buffer.as_mut()[field::VERSION] = v;
    }

    /// Sets the type.
    pub fn set_frame_type(&mut self, t: Type) {
        self.buffer.as_mut()[field::TYPE] = t.into();
    }

    /// Sets the flags.
    pub fn set_flags(&mut self, flags: Flags) {
        put_u16(self.buffer.as_mut(), field::FLAGS.start, flags.0);
    }

    /// Sets the stream id.
    pub fn set_stream_id(&mut self, id: u32) {
        put_u32(self.buffer.as_mut(), field::STREAM_ID.start, id);
    }

    /// Sets the length field.
    pub fn set_length(&mut self, len: u32) {
        put_u32(self.buffer.as_mut(), field::LENGTH.start, len);
    }

    /// A data frame's payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[field::PAYLOAD.start..end]
    }
}

impl<T: AsRef<[u8]>> fmt::Display for Frame<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Repr::parse(self) {
            Ok(repr) => write!(f, "{repr}"),
            Err(e) => write!(f, "mux frame ({e})"),
        }
    }
}

fn payload_len(t: Type, length: u32) -> usize {
    match t {
        // A u32 always fits a usize on the 32- and 64-bit targets we build for.
        Type::Data => usize::try_from(length).unwrap_or(usize::MAX),
        _ => 0,
    }
}

/// The parsed mux header. Every 12-byte header parses; the version and unknown types and
/// flags are kept as they are so a round trip is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Protocol version (0).
    pub version: u8,
    /// Frame type.
    pub frame_type: Type,
    /// Flags.
    pub flags: Flags,
    /// Stream id; 0 for session frames.
    pub stream_id: u32,
    /// Length field (see the module docs for its meaning per type).
    pub length: u32,
}

impl Repr {
    /// A data frame header for `len` bytes.
    pub const fn data(stream_id: u32, flags: Flags, len: u32) -> Repr {
        Repr {
            version: VERSION,
            frame_type: Type::Data,
            flags,
            stream_id,
            length: len,
        }
    }

    /// A window update granting `delta` more bytes.
    pub const fn window_update(stream_id: u32, flags: Flags, delta: u32) -> Repr {
        Repr {
            version: VERSION,
            frame_type: Type::WindowUpdate,
            flags,
            stream_id,
            length: delta,
        }
    }

    /// A ping (flags SYN to ask, ACK to answer) carrying `opaque`.
    pub const fn ping(flags: Flags, opaque: u32) -> Repr {
        Repr {
            version: VERSION,
            frame_type: Type::Ping,
            flags,
            stream_id: 0,
            length: opaque,
        }
    }

    /// A go-away with a reason.
    pub fn go_away(code: GoAwayCode) -> Repr {
        Repr {
            version: VERSION,
            frame_type: Type::GoAway,
            flags: Flags::NONE,
            stream_id: 0,
            length: code.into(),
        }
    }

    /// Parses the 12 header bytes at the start of `bytes` (the sealed layout, where no data
    /// follows the header).
    pub fn parse_header(bytes: &[u8]) -> Result<Repr, WireError> {
        check_len(bytes, HEADER_LEN)?;
        let frame = Frame::new_unchecked(bytes);
        Ok(Repr {
            version: frame.version(),
            frame_type: frame.frame_type(),
            flags: frame.flags(),
            stream_id: frame.stream_id(),
            length: frame.length(),
        })
    }

    /// Parses a plain frame, verifying a data frame's payload is all present.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr, WireError> {
        frame.check_len()?;
        Repr::parse_header(frame.buffer.as_ref())
    }

    /// Data bytes that follow the header in plain framing (`length` for data, else 0).
    pub fn payload_len(&self) -> usize {
        payload_len(self.frame_type, self.length)
    }

    /// Bytes a plain frame with this header occupies.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.payload_len())
    }

    /// Writes the 12 header bytes at the start of `out`.
    pub fn emit_header(&self, out: &mut [u8]) -> Result<(), WireError> {
        check_len(out, HEADER_LEN)?;
        let mut frame = Frame::new_unchecked(out);
        frame.set_version(self.version);
        frame.set_frame_type(self.frame_type);
        frame.set_flags(self.flags);
        frame.set_stream_id(self.stream_id);
        frame.set_length(self.length);
        Ok(())
    }

    /// Writes the header into a plain frame whose buffer holds [`Repr::buffer_len`] bytes; the
    /// caller then fills [`Frame::payload_mut`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        frame: &mut Frame<T>,
    ) -> Result<(), WireError> {
        check_len(frame.buffer.as_ref(), self.buffer_len())?;
        self.emit_header(frame.buffer.as_mut())
    }

    /// The header as 12 bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        // Cannot fail: the array is exactly one header long.
        let _ = self.emit_header(&mut out);
        out
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mux ")?;
        if self.version != VERSION {
            write!(f, "v{} ", self.version)?;
        }
        write!(
            f,
            "{} {} stream={} ",
            self.frame_type, self.flags, self.stream_id
        )?;
        match self.frame_type {
            Type::Data => write!(f, "len={}", self.length),
            Type::WindowUpdate => write!(f, "delta={}", self.length),
            Type::Ping => write!(f, "opaque={}", self.length),
            Type::GoAway => write!(f, "code={}", GoAwayCode::from(self.length)),
            Type::Unknown(_) => write!(f, "length={}", self.length),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::unhex;

    // Golden examples (docs/protocol.md, "Mux frame").
    /// Data on stream 1 opening it (SYN), 5 bytes "hello".
    const DATA_SYN: &str = "00 00 0001 00000001 00000005 68656c6c6f";
    /// Window update on stream 2 with ACK, 262144 bytes of credit (256 KiB).
    const WINDOW_ACK: &str = "00 01 0002 00000002 00040000";
    /// Ping request with opaque value 7.
    const PING_SYN: &str = "00 02 0001 00000000 00000007";
    /// Go-away, protocol error.
    const GO_AWAY_PROTO: &str = "00 03 0000 00000000 00000001";
    /// FIN|RST on stream 3 as a window update with zero credit.
    const WINDOW_FIN_RST: &str = "00 01 000c 00000003 00000000";

    fn round_trip(hex: &str, expect: Repr, payload: &[u8], text: &str) {
        let bytes = unhex(hex);
        let frame = Frame::new_checked(&bytes[..]).unwrap();
        let repr = Repr::parse(&frame).unwrap();
        assert_eq!(repr, expect);
        assert_eq!(frame.payload(), payload);
        assert_eq!(frame.total_len(), bytes.len());
        assert_eq!(repr.to_string(), text);

        let mut out = vec![0u8; repr.buffer_len()];
        let mut f = Frame::new_unchecked(&mut out[..]);
        repr.emit(&mut f).unwrap();
        f.payload_mut().copy_from_slice(payload);
        assert_eq!(out, bytes);
        assert_eq!(&repr.to_bytes()[..], &bytes[..HEADER_LEN]);
    }

    #[test]
    fn golden_data_syn() {
        round_trip(
            DATA_SYN,
            Repr::data(1, Flags::SYN, 5),
            b"hello",
            "mux data SYN stream=1 len=5",
        );
    }

    #[test]
    fn golden_window_update_ack() {
        round_trip(
            WINDOW_ACK,
            Repr::window_update(2, Flags::ACK, 256 * 1024),
            b"",
            "mux window-update ACK stream=2 delta=262144",
        );
    }

    #[test]
    fn golden_ping() {
        round_trip(
            PING_SYN,
            Repr::ping(Flags::SYN, 7),
            b"",
            "mux ping SYN stream=0 opaque=7",
        );
    }

    #[test]
    fn golden_go_away() {
        round_trip(
            GO_AWAY_PROTO,
            Repr::go_away(GoAwayCode::ProtocolError),
            b"",
            "mux go-away - stream=0 code=protocol error",
        );
    }

    #[test]
    fn golden_fin_rst() {
        round_trip(
            WINDOW_FIN_RST,
            Repr::window_update(3, Flags::FIN | Flags::RST, 0),
            b"",
            "mux window-update FIN|RST stream=3 delta=0",
        );
    }

    #[test]
    fn unknown_type_version_and_flags_survive() {
        let bytes = unhex("07 2a 8011 ffffffff 00000009");
        let frame = Frame::new_checked(&bytes[..]).unwrap();
        let repr = Repr::parse(&frame).unwrap();
        assert_eq!(repr.version, 7);
        assert_eq!(repr.frame_type, Type::Unknown(42));
        assert_eq!(repr.flags, Flags(0x8011));
        assert_eq!(repr.stream_id, u32::MAX);
        // Unknown types carry no plain payload: the frame is the header alone.
        assert_eq!(frame.total_len(), HEADER_LEN);
        assert_eq!(&repr.to_bytes()[..], &bytes[..]);
        assert_eq!(
            repr.to_string(),
            "mux v7 unknown-type-42 SYN|0x8010 stream=4294967295 length=9"
        );
    }

    #[test]
    fn truncated_header_and_payload() {
        let bytes = unhex(DATA_SYN);
        assert_eq!(
            Frame::new_checked(&bytes[..11]),
            Err(WireError::Truncated { need: 12, have: 11 })
        );
        assert_eq!(
            Frame::new_checked(&bytes[..15]),
            Err(WireError::Truncated { need: 17, have: 15 })
        );
        // The header alone still parses for the sealed layout.
        assert_eq!(
            Repr::parse_header(&bytes[..12]).unwrap(),
            Repr::data(1, Flags::SYN, 5)
        );
    }

    #[test]
    fn huge_data_length_is_truncation_not_panic() {
        let bytes = unhex("00 00 0000 00000001 ffffffff");
        assert!(matches!(
            Frame::new_checked(&bytes[..]),
            Err(WireError::Truncated { have: 12, .. })
        ));
    }

    #[test]
    fn codes_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(Type::from(v)), v);
        }
        for v in [0u32, 1, 2, 3, u32::MAX] {
            assert_eq!(u32::from(GoAwayCode::from(v)), v);
        }
        assert_eq!(Flags::NONE.to_string(), "-");
        assert_eq!((Flags::SYN | Flags::ACK).to_string(), "SYN|ACK");
        assert!((Flags::SYN | Flags::FIN).contains(Flags::FIN));
        assert!(!Flags::SYN.contains(Flags::ACK));
    }

    #[test]
    fn setters_rewrite_in_place() {
        let mut bytes = unhex(DATA_SYN);
        let mut frame = Frame::new_checked(&mut bytes[..]).unwrap();
        frame.set_stream_id(9);
        frame.set_flags(Flags::FIN);
        frame.payload_mut()[0] = b'j';
        assert_eq!(frame.stream_id(), 9);
        assert_eq!(frame.flags(), Flags::FIN);
        assert_eq!(frame.payload(), b"jello");
        assert_eq!(frame.to_string(), "mux data FIN stream=9 len=5");
    }
}
