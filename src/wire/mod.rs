//! Zero-copy views over frame bytes (DESIGN.md §2, §3).
//!
//! Every frame family on the wire has one module here, written in the smoltcp style:
//!
//! - a view `Frame<T: AsRef<[u8]>>` (or `Packet<T>`) over a byte buffer, with the byte ranges of
//!   its fields in a private `field` module;
//! - `new_unchecked` for buffers we built ourselves and `new_checked` for untrusted input, which
//!   verifies that every accessor is in bounds so none of them can panic afterwards;
//! - getters for `T: AsRef<[u8]>` and setters for `T: AsMut<[u8]>`, so a forwarder can rewrite
//!   a field in place without copying the frame;
//! - a `Repr`, the parsed high-level form, with `parse` (validating) and `emit` (writing into a
//!   view whose buffer the caller sized with `buffer_len`);
//! - `Display` for logs, and golden-byte tests that pin the layout (mirrored in
//!   `docs/protocol.md`).
//!
//! The families, each a separate module:
//!
//! | module      | layout                                                                  |
//! |-------------|-------------------------------------------------------------------------|
//! | [`noise`]   | `len u16be ‖ Noise message` — handshake and transport messages          |
//! | [`mux`]     | yamux v0: `version u8 ‖ type u8 ‖ flags u16be ‖ stream u32be ‖ length u32be` |
//! | [`session`] | `sealed_len u16be ‖ AEAD(mux header ‖ control) ‖ data` (DESIGN.md §3.4)  |
//! | [`route`]   | `type u8 ‖ route_id u32be ‖ payload_len u16be ‖ payload` (DESIGN.md §3.7) |
//! | [`setup`]   | skynet route setup request / ack / nack payloads (DESIGN.md §3.8)       |
//! | [`pty`]     | `type u8 ‖ len u16be ‖ payload` — pty sessions (docs/protocol.md §10)   |
//! | [`dmsg`]    | channel request `01 ‖ pk(32)`; port header `dst_port u16be ‖ src_port u16be` |
//!
//! Rules for this layer: no I/O, no allocation, no clock. Unknown type codes parse as
//! `Unknown(u8)` and survive a parse→emit round trip unchanged; only the layer above decides
//! to drop them. A parser never panics on input: out-of-range lengths are a [`WireError`].

pub mod dmsg;
pub mod mux;
pub mod noise;
pub mod pty;
pub mod route;
pub mod session;
pub mod setup;
pub mod transport;

use core::fmt;

pub use mux::{Flags as MuxFlags, Frame as MuxFrame, GoAwayCode, Repr as MuxRepr, Type as MuxType};
pub use noise::{Frame as NoiseFrame, Repr as NoiseRepr};
pub use route::{Packet as RoutePacket, PacketType as RouteType, Repr as RouteRepr};
pub use session::{Frame as SealedFrame, Repr as SealedRepr};

/// What is wrong with a buffer handed to a frame view or a `Repr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The buffer ends before the frame does: `need` bytes are required, `have` are present.
    Truncated {
        /// Bytes the frame needs, counted from its first byte.
        need: usize,
        /// Bytes the buffer holds.
        have: usize,
    },
    /// A length field holds a value the layout does not allow (for example a sealed length
    /// shorter than a header and a tag).
    BadLength {
        /// Which field.
        field: &'static str,
        /// The value found.
        value: usize,
    },
    /// A `Repr` cannot be encoded: a length does not fit its field.
    TooLong {
        /// Which field.
        field: &'static str,
        /// The length asked for.
        len: usize,
        /// The largest length the field can carry.
        max: usize,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated { need, have } => {
                write!(f, "truncated frame: need {need} bytes, have {have}")
            }
            WireError::BadLength { field, value } => {
                write!(f, "invalid {field}: {value}")
            }
            WireError::TooLong { field, len, max } => {
                write!(f, "{field} too long: {len} bytes, at most {max}")
            }
        }
    }
}

impl std::error::Error for WireError {}

/// Checks that `buf` holds at least `need` bytes.
#[inline]
pub(crate) fn check_len(buf: &[u8], need: usize) -> Result<(), WireError> {
    if buf.len() < need {
        Err(WireError::Truncated {
            need,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}

/// Reads a big-endian `u16` at `at` (the caller has bounds-checked).
#[inline]
pub(crate) fn get_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Reads a big-endian `u32` at `at` (the caller has bounds-checked).
#[inline]
pub(crate) fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Writes a big-endian `u16` at `at` (the caller has bounds-checked).
#[inline]
pub(crate) fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes a big-endian `u32` at `at` (the caller has bounds-checked).
#[inline]
pub(crate) fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Test helper: decodes hex with optional whitespace (golden bytes are written spaced).
#[cfg(test)]
pub(crate) fn unhex(s: &str) -> std::vec::Vec<u8> {
    let digits: std::vec::Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex length");
    digits
        .chunks(2)
        .map(|p| {
            let s = core::str::from_utf8(p).expect("ascii");
            u8::from_str_radix(s, 16).expect("hex digit")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_problem() {
        assert_eq!(
            WireError::Truncated { need: 12, have: 3 }.to_string(),
            "truncated frame: need 12 bytes, have 3"
        );
        assert_eq!(
            WireError::BadLength {
                field: "sealed length",
                value: 5
            }
            .to_string(),
            "invalid sealed length: 5"
        );
        assert_eq!(
            WireError::TooLong {
                field: "payload",
                len: 70000,
                max: 65535
            }
            .to_string(),
            "payload too long: 70000 bytes, at most 65535"
        );
    }

    #[test]
    fn big_endian_helpers() {
        let mut b = [0u8; 6];
        put_u16(&mut b, 0, 0x0102);
        put_u32(&mut b, 2, 0x0304_0506);
        assert_eq!(b, [1, 2, 3, 4, 5, 6]);
        assert_eq!(get_u16(&b, 0), 0x0102);
        assert_eq!(get_u32(&b, 2), 0x0304_0506);
        assert!(check_len(&b, 6).is_ok());
        assert_eq!(
            check_len(&b, 7),
            Err(WireError::Truncated { need: 7, have: 6 })
        );
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(unhex("00 ab\n10"), vec![0x00, 0xab, 0x10]);
    }
}
