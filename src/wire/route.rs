//! The routing packet carried on a transport (DESIGN.md §3.7).
//!
//! ```text
//!  0      1              5                7                     7+payload_len
//!  +------+--------------+----------------+---------------------+
//!  | type | route id     | payload length | payload             |
//!  | u8   | u32be        | u16be          | (payload_len bytes) |
//!  +------+--------------+----------------+---------------------+
//! ```
//!
//! A transport's byte stream is a concatenation of these packets. Forwarding is zero-copy: a
//! hop looks up the packet's route id, rewrites it in place with [`Packet::set_route_id`] and
//! writes the very same bytes to the next transport.
//!
//! Type codes follow Go Skywire's numbering where it has one (behaviour reference, not wire
//! compatibility): 0 data, 1 close, 2 keep-alive, 3 handshake, 4 ping, 5 pong, 6 error; skynet
//! route setup adds 7 setup request, 8 setup ack, 9 setup nack (payloads: [`super::setup`]).
//! Any other code parses as [`PacketType::Unknown`] and round-trips unchanged; the router
//! decides whether to drop it.

use core::fmt;

use super::{WireError, check_len, get_u16, get_u32, put_u16, put_u32};

mod field {
    use core::ops::{Range, RangeFrom};

    pub const TYPE: usize = 0;
    pub const ROUTE_ID: Range<usize> = 1..5;
    pub const PAYLOAD_LEN: Range<usize> = 5..7;
    pub const PAYLOAD: RangeFrom<usize> = 7..;
}

/// Length of the header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;
/// Largest payload a packet can carry.
pub const MAX_PAYLOAD_LEN: usize = u16::MAX as usize;

/// How many bytes the whole packet starting at `prefix` occupies, once its 7-byte header has
/// arrived; `None` before that.
pub fn packet_len(prefix: &[u8]) -> Option<usize> {
    if prefix.len() < HEADER_LEN {
        return None;
    }
    Some(HEADER_LEN + usize::from(get_u16(prefix, field::PAYLOAD_LEN.start)))
}

/// The packet type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// Route payload (end-to-end ciphertext of the route group).
    Data,
    /// Closes the route (payload: a close code).
    Close,
    /// Keeps an idle route's rules alive (empty payload).
    KeepAlive,
    /// Route-group handshake.
    Handshake,
    /// Latency probe.
    Ping,
    /// Answer to a ping (echoes its payload).
    Pong,
    /// An error report for the route (payload: message bytes).
    Error,
    /// Route setup request (route id 0; payload [`super::setup::Request`]).
    SetupRequest,
    /// Route setup acknowledgement (payload [`super::setup::Ack`]).
    SetupAck,
    /// Route setup refusal (payload [`super::setup::Nack`]).
    SetupNack,
    /// A type code this version does not know.
    Unknown(u8),
}

impl From<u8> for PacketType {
    fn from(v: u8) -> PacketType {
        match v {
            0 => PacketType::Data,
            1 => PacketType::Close,
            2 => PacketType::KeepAlive,
            3 => PacketType::Handshake,
            4 => PacketType::Ping,
            5 => PacketType::Pong,
            6 => PacketType::Error,
            7 => PacketType::SetupRequest,
            8 => PacketType::SetupAck,
            9 => PacketType::SetupNack,
            other => PacketType::Unknown(other),
        }
    }
}

impl From<PacketType> for u8 {
    fn from(t: PacketType) -> u8 {
        match t {
            PacketType::Data => 0,
            PacketType::Close => 1,
            PacketType::KeepAlive => 2,
            PacketType::Handshake => 3,
            PacketType::Ping => 4,
            PacketType::Pong => 5,
            PacketType::Error => 6,
            PacketType::SetupRequest => 7,
            PacketType::SetupAck => 8,
            PacketType::SetupNack => 9,
            PacketType::Unknown(v) => v,
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketType::Data => f.write_str("data"),
            PacketType::Close => f.write_str("close"),
            PacketType::KeepAlive => f.write_str("keep-alive"),
            PacketType::Handshake => f.write_str("handshake"),
            PacketType::Ping => f.write_str("ping"),
            PacketType::Pong => f.write_str("pong"),
            PacketType::Error => f.write_str("error"),
            PacketType::SetupRequest => f.write_str("setup-request"),
            PacketType::SetupAck => f.write_str("setup-ack"),
            PacketType::SetupNack => f.write_str("setup-nack"),
            PacketType::Unknown(v) => write!(f, "unknown-type-{v}"),
        }
    }
}

/// A read/write view of one routing packet at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps untrusted bytes: fails unless the buffer holds the header and the whole payload
    /// it announces. Bytes after the packet are allowed (the next packet).
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Verifies the buffer holds the whole packet, so no accessor can panic.
    pub fn check_len(&self) -> Result<(), WireError> {
        let buf = self.buffer.as_ref();
        check_len(buf, HEADER_LEN)?;
        check_len(buf, self.total_len())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The packet type.
    pub fn packet_type(&self) -> PacketType {
        PacketType::from(self.buffer.as_ref()[field::TYPE])
    }

    /// The route id, which selects the rule at the receiving hop.
    pub fn route_id(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ROUTE_ID.start)
    }

    /// The payload length field.
    pub fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PAYLOAD_LEN.start)
    }

    /// Bytes the whole packet occupies.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// The payload (exactly `payload_len` bytes).
    pub fn payload(&self) -> &[u8] {
        let end = self.total_len();
        &self.buffer.as_ref()[field::PAYLOAD.start..end]
    }

    /// The whole packet, header and payload, as it goes on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        let end = self.total_len();
        &self.buffer.as_ref()[..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the type.
    pub fn set_packet_type(&mut self, t: PacketType) {
        self.buffer.as_mut()[field::TYPE] = t.into();
    }

    /// Rewrites the route id in place: the forwarding step of the zero-copy router.
    pub fn set_route_id(&mut self, id: u32) {
        put_u32(self.buffer.as_mut(), field::ROUTE_ID.start, id);
    }

    /// Sets the payload length field.
    pub fn set_payload_len(&mut self, len: u16) {
        put_u16(self.buffer.as_mut(), field::PAYLOAD_LEN.start, len);
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[field::PAYLOAD.start..end]
    }
}

impl<T: AsRef<[u8]>> fmt::Display for Packet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Repr::parse(self) {
            Ok(repr) => write!(f, "{repr}"),
            Err(e) => write!(f, "route packet ({e})"),
        }
    }
}

/// The parsed routing-packet header. The payload stays in the buffer
/// ([`Packet::payload`] / [`Packet::payload_mut`]); it is never copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Packet type.
    pub packet_type: PacketType,
    /// Route id.
    pub route_id: u32,
    /// Payload length.
    pub payload_len: u16,
}

impl Repr {
    /// A header for a payload of `len` bytes; fails if `len` exceeds 65,535.
    pub fn new(packet_type: PacketType, route_id: u32, len: usize) -> Result<Repr, WireError> {
        let payload_len = u16::try_from(len).map_err(|_| WireError::TooLong {
            field: "route payload",
            len,
            max: MAX_PAYLOAD_LEN,
        })?;
        Ok(Repr {
            packet_type,
            route_id,
            payload_len,
        })
    }

    /// Parses a packet, verifying its payload is all present.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, WireError> {
        packet.check_len()?;
        Ok(Repr {
            packet_type: packet.packet_type(),
            route_id: packet.route_id(),
            payload_len: packet.payload_len(),
        })
    }

    /// Bytes needed to emit the packet.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize
    }

    /// Writes the header into a buffer of at least [`Repr::buffer_len`] bytes; the caller
    /// then fills [`Packet::payload_mut`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
    ) -> Result<(), WireError> {
        check_len(packet.buffer.as_ref(), self.buffer_len())?;
        packet.set_packet_type(self.packet_type);
        packet.set_route_id(self.route_id);
        packet.set_payload_len(self.payload_len);
        Ok(())
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "route {} id={} len={}",
            self.packet_type, self.route_id, self.payload_len
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::unhex;

    // Golden examples (docs/protocol.md, "Routing packet").
    /// Data on route 0x01020304 carrying "ping!".
    const DATA: &str = "00 01020304 0005 70696e6721";
    /// Keep-alive on route 7, no payload.
    const KEEPALIVE: &str = "02 00000007 0000";
    /// Close on route 42 with close code 0.
    const CLOSE: &str = "01 0000002a 0001 00";

    fn round_trip(hex: &str, expect: Repr, payload: &[u8], text: &str) {
        let bytes = unhex(hex);
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(repr, expect);
        assert_eq!(packet.payload(), payload);
        assert_eq!(packet.to_string(), text);
        assert_eq!(packet_len(&bytes), Some(bytes.len()));

        let mut out = vec![0u8; repr.buffer_len()];
        let mut p = Packet::new_unchecked(&mut out[..]);
        repr.emit(&mut p).unwrap();
        p.payload_mut().copy_from_slice(payload);
        assert_eq!(out, bytes);
    }

    #[test]
    fn golden_data() {
        round_trip(
            DATA,
            Repr::new(PacketType::Data, 0x0102_0304, 5).unwrap(),
            b"ping!",
            "route data id=16909060 len=5",
        );
    }

    #[test]
    fn golden_keepalive() {
        round_trip(
            KEEPALIVE,
            Repr::new(PacketType::KeepAlive, 7, 0).unwrap(),
            b"",
            "route keep-alive id=7 len=0",
        );
    }

    #[test]
    fn golden_close() {
        round_trip(
            CLOSE,
            Repr::new(PacketType::Close, 42, 1).unwrap(),
            &[0],
            "route close id=42 len=1",
        );
    }

    #[test]
    fn forwarding_rewrites_route_id_in_place() {
        let mut bytes = unhex(DATA);
        let before = bytes.as_ptr();
        {
            let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
            packet.set_route_id(0xdead_beef);
            assert_eq!(packet.as_bytes().as_ptr(), before);
        }
        assert_eq!(bytes, unhex("00 deadbeef 0005 70696e6721"));
    }

    #[test]
    fn setup_types_have_codes_7_8_9() {
        for (v, t, name) in [
            (7u8, PacketType::SetupRequest, "setup-request"),
            (8, PacketType::SetupAck, "setup-ack"),
            (9, PacketType::SetupNack, "setup-nack"),
        ] {
            assert_eq!(PacketType::from(v), t);
            assert_eq!(u8::from(t), v);
            assert_eq!(t.to_string(), name);
        }
        assert_eq!(PacketType::from(10), PacketType::Unknown(10));
    }

    #[test]
    fn unknown_type_round_trips() {
        let bytes = unhex("c8 00000001 0002 abcd");
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(repr.packet_type, PacketType::Unknown(200));
        let mut out = vec![0u8; repr.buffer_len()];
        let mut p = Packet::new_unchecked(&mut out[..]);
        repr.emit(&mut p).unwrap();
        p.payload_mut().copy_from_slice(packet.payload());
        assert_eq!(out, bytes);
        for v in 0..=255u8 {
            assert_eq!(u8::from(PacketType::from(v)), v);
        }
    }

    #[test]
    fn truncation_and_limits() {
        let bytes = unhex(DATA);
        assert_eq!(
            Packet::new_checked(&bytes[..6]),
            Err(WireError::Truncated { need: 7, have: 6 })
        );
        assert_eq!(
            Packet::new_checked(&bytes[..10]),
            Err(WireError::Truncated { need: 12, have: 10 })
        );
        assert_eq!(packet_len(&bytes[..6]), None);
        assert!(Repr::new(PacketType::Data, 1, MAX_PAYLOAD_LEN).is_ok());
        assert_eq!(
            Repr::new(PacketType::Data, 1, MAX_PAYLOAD_LEN + 1),
            Err(WireError::TooLong {
                field: "route payload",
                len: 65_536,
                max: 65_535
            })
        );
    }

    #[test]
    fn consecutive_packets_on_a_stream() {
        let mut stream = unhex(DATA);
        stream.extend(unhex(KEEPALIVE));
        let first = Packet::new_checked(&stream[..]).unwrap();
        let n = first.total_len();
        let second = Packet::new_checked(&stream[n..]).unwrap();
        assert_eq!(second.packet_type(), PacketType::KeepAlive);
        assert_eq!(second.route_id(), 7);
        assert_eq!(n + second.total_len(), stream.len());
    }
}
