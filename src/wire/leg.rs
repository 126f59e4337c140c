//! The leg header of a route group (docs/protocol.md, "Skynet: route groups"): the small
//! header at the start of the payload of a route's Data, Ping and Pong packets, by which the
//! group's sequenced leg layer numbers, acknowledges and re-sends channel frames across the
//! legs of a `mux:N` group.
//!
//! ```text
//! Data payload:       seq u32be ‖ ack u32be ‖ channel frame (u16be len ‖ ciphertext ‖ tag)
//! Ping/Pong payload:  kind u8 (0 ping, 1 pong, 2 ack) ‖ ack u32be ‖ stamp u32be
//!                     (pings and acks in Ping packets, pongs in Pong packets: the router
//!                     core consumes KeepAlive at an endpoint, and hands Ping/Pong on)
//! Close payload:      code u8 (0 closed by the application, 1 failed) ‖ token (16 bytes)
//! Handshake payload:  one Noise KK message (48 bytes each way)
//! ```
//!
//! `seq` numbers the channel frames a side sends (the n-th frame sealed has seq n, mod 2^32);
//! `ack` is cumulative: every frame before it has been taken by the receiver. A ping's `stamp`
//! (the sender's clock in milliseconds, mod 2^32) comes back in the pong: the leg's round
//! trip. Neither field is authenticated; the channel frame is (a frame that does not open is
//! dropped, counted, and re-sent by its sender). A Close counts only with the sender's token
//! (HMAC-SHA-512 of the handshake hash, "skywire-rs/route-close" and a byte saying whether the
//! initiator sent it, first 16 bytes): a hop cannot close a group.

use core::fmt;

use super::{WireError, check_len, get_u32, put_u32};

mod field {
    use core::ops::{Range, RangeFrom};

    pub const SEQ: Range<usize> = 0..4;
    pub const ACK: Range<usize> = 4..8;
    pub const FRAME: RangeFrom<usize> = 8..;

    pub const KIND: usize = 0;
    pub const KA_ACK: Range<usize> = 1..5;
    pub const STAMP: Range<usize> = 5..9;
}

/// Bytes of the Data leg header.
pub const DATA_HEADER_LEN: usize = field::FRAME.start;
/// Bytes of a KeepAlive payload.
pub const KEEPALIVE_LEN: usize = field::STAMP.end;

/// A read/write view of a Data payload: leg header, then one channel frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Data<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Data<T> {
        Data { buffer }
    }

    /// Wraps untrusted bytes: fails unless the header is all there.
    pub fn new_checked(buffer: T) -> Result<Data<T>, WireError> {
        check_len(buffer.as_ref(), DATA_HEADER_LEN)?;
        Ok(Data { buffer })
    }

    /// The frame's sequence number.
    pub fn seq(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ.start)
    }

    /// The cumulative acknowledgement.
    pub fn ack(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK.start)
    }

    /// The channel frame.
    pub fn frame(&self) -> &[u8] {
        &self.buffer.as_ref()[field::FRAME]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Data<T> {
    /// Sets the sequence number.
    pub fn set_seq(&mut self, v: u32) {
        put_u32(self.buffer.as_mut(), field::SEQ.start, v);
    }

    /// Sets the acknowledgement (rewritten in place each time a frame is sent again).
    pub fn set_ack(&mut self, v: u32) {
        put_u32(self.buffer.as_mut(), field::ACK.start, v);
    }

    /// The channel frame, writable (opened in place).
    pub fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::FRAME]
    }
}

impl<T: AsRef<[u8]>> fmt::Display for Data<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "leg data seq={} ack={} frame={}",
            self.seq(),
            self.ack(),
            self.frame().len()
        )
    }
}

/// What a leg keep-alive (a Ping or Pong packet) asks or answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Asks for a pong (every 500 ms on every leg of an open group).
    Ping,
    /// Answers a ping, echoing its stamp.
    Pong,
    /// Only carries the acknowledgement.
    Ack,
    /// A kind this version does not know (dropped by the group).
    Unknown(u8),
}

impl From<u8> for Kind {
    fn from(v: u8) -> Kind {
        match v {
            0 => Kind::Ping,
            1 => Kind::Pong,
            2 => Kind::Ack,
            other => Kind::Unknown(other),
        }
    }
}

impl From<Kind> for u8 {
    fn from(k: Kind) -> u8 {
        match k {
            Kind::Ping => 0,
            Kind::Pong => 1,
            Kind::Ack => 2,
            Kind::Unknown(v) => v,
        }
    }
}

/// The parsed keep-alive payload of a Ping or Pong packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeepAlive {
    /// Ping, pong or ack.
    pub kind: Kind,
    /// The cumulative acknowledgement.
    pub ack: u32,
    /// The pinger's clock in milliseconds (mod 2^32), echoed by the pong.
    pub stamp: u32,
}

impl KeepAlive {
    /// Parses untrusted bytes: exactly [`KEEPALIVE_LEN`] of them.
    pub fn parse(buf: &[u8]) -> Result<KeepAlive, WireError> {
        check_len(buf, KEEPALIVE_LEN)?;
        if buf.len() != KEEPALIVE_LEN {
            return Err(WireError::BadLength {
                field: "leg keep-alive length",
                value: buf.len(),
            });
        }
        Ok(KeepAlive {
            kind: Kind::from(buf[field::KIND]),
            ack: get_u32(buf, field::KA_ACK.start),
            stamp: get_u32(buf, field::STAMP.start),
        })
    }

    /// Writes the payload into `buf` (at least [`KEEPALIVE_LEN`] bytes).
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        check_len(buf, KEEPALIVE_LEN)?;
        buf[field::KIND] = self.kind.into();
        put_u32(buf, field::KA_ACK.start, self.ack);
        put_u32(buf, field::STAMP.start, self.stamp);
        Ok(())
    }

    /// The payload bytes.
    pub fn to_bytes(&self) -> [u8; KEEPALIVE_LEN] {
        let mut b = [0u8; KEEPALIVE_LEN];
        self.emit(&mut b).expect("sized");
        b
    }
}

impl fmt::Display for KeepAlive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Ping => "ping".to_string(),
            Kind::Pong => "pong".to_string(),
            Kind::Ack => "ack".to_string(),
            Kind::Unknown(v) => format!("unknown-kind-{v}"),
        };
        write!(f, "leg {kind} ack={} stamp={}", self.ack, self.stamp)
    }
}

/// Close codes.
pub mod close {
    /// The group was closed by its application (or driver).
    pub const CLOSED: u8 = 0;
    /// The group failed (handshake or protocol).
    pub const FAILED: u8 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::route::{Packet, PacketType};
    use crate::wire::unhex;

    // Golden examples (docs/protocol.md, "Skynet: route groups"); whole routing packets with
    // the route id the driver filled in.
    /// Data on route 9: seq 5, ack 3, a channel frame of 17 bytes (1 byte sealed + tag).
    const DATA: &str = "00 00000009 001b 00000005 00000003 0011 aa \
                        00112233445566778899aabbccddeeff";
    /// A ping on route 9 acknowledging everything before 7, stamped 1000 ms.
    const PING: &str = "04 00000009 0009 00 00000007 000003e8";
    /// Its pong.
    const PONG: &str = "05 00000009 0009 01 00000007 000003e8";

    #[test]
    fn golden_data() {
        let bytes = unhex(DATA);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.packet_type(), PacketType::Data);
        let d = Data::new_checked(p.payload()).unwrap();
        assert_eq!((d.seq(), d.ack(), d.frame().len()), (5, 3, 19));
        assert_eq!(d.to_string(), "leg data seq=5 ack=3 frame=19");
        let mut out = bytes.clone();
        {
            let mut d = Data::new_checked(&mut out[7..]).unwrap();
            d.set_seq(0);
            d.set_ack(0);
            d.set_seq(5);
            d.set_ack(3);
        }
        assert_eq!(out, bytes);
    }

    #[test]
    fn golden_keepalives() {
        for (hex, kind, ty) in [
            (PING, Kind::Ping, PacketType::Ping),
            (PONG, Kind::Pong, PacketType::Pong),
        ] {
            let bytes = unhex(hex);
            let p = Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(p.packet_type(), ty);
            let k = KeepAlive::parse(p.payload()).unwrap();
            assert_eq!(
                k,
                KeepAlive {
                    kind,
                    ack: 7,
                    stamp: 1000
                }
            );
            assert_eq!(&k.to_bytes()[..], p.payload());
        }
        assert_eq!(
            KeepAlive::parse(&unhex("02 00000001 00000002"))
                .unwrap()
                .to_string(),
            "leg ack ack=1 stamp=2"
        );
    }

    #[test]
    fn the_golden_bytes_are_those_in_the_protocol_doc() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md"))
            .expect("docs/protocol.md");
        let section = doc
            .split("## Skynet: route groups")
            .nth(1)
            .expect("the section");
        let squash = |s: &str| -> String {
            s.chars()
                .filter(|c| c.is_ascii_hexdigit() || *c == '\n')
                .collect()
        };
        let lines: Vec<String> = section.lines().map(squash).collect();
        for golden in [DATA, PING, PONG] {
            let want = squash(golden);
            assert!(lines.contains(&want), "{golden} not in the doc");
        }
    }

    #[test]
    fn truncated_and_odd_sizes_are_errors() {
        assert_eq!(
            Data::new_checked(&[0u8; 7][..]),
            Err(WireError::Truncated { need: 8, have: 7 })
        );
        assert!(Data::new_checked(&[0u8; 8][..]).unwrap().frame().is_empty());
        assert_eq!(
            KeepAlive::parse(&[0u8; 8]),
            Err(WireError::Truncated { need: 9, have: 8 })
        );
        assert_eq!(
            KeepAlive::parse(&[0u8; 10]),
            Err(WireError::BadLength {
                field: "leg keep-alive length",
                value: 10
            })
        );
        for v in 0..=255u8 {
            assert_eq!(u8::from(Kind::from(v)), v);
        }
        assert!(KeepAlive::parse(&[9u8; 9]).is_ok_and(|k| k.kind == Kind::Unknown(9)));
    }
}
