//! The length-prefixed Noise frame (DESIGN.md §3.3).
//!
//! On a byte stream every Noise message — the handshake messages and the transport messages
//! after it — travels as
//!
//! ```text
//!  0      2                       2+len
//!  +------+-----------------------+
//!  | len  | Noise message (len B) |
//!  +------+-----------------------+
//!  u16be
//! ```
//!
//! `len` counts the message bytes only (not itself), so the largest frame is 65,537 bytes and
//! the largest message 65,535 bytes, the Noise maximum. For a transport message the bytes are
//! the ciphertext followed by the 16-byte Poly1305 tag; the nonce is the implicit
//! per-direction counter and never appears on the wire. A zero length is a valid *frame*; the
//! crypto layer rejects messages too short to hold a tag.

use core::fmt;

use super::{WireError, check_len, get_u16, put_u16};

mod field {
    use core::ops::{Range, RangeFrom};

    /// The message length, big-endian.
    pub const LENGTH: Range<usize> = 0..2;
    /// The Noise message.
    pub const PAYLOAD: RangeFrom<usize> = 2..;
}

/// Length of the prefix.
pub const HEADER_LEN: usize = field::PAYLOAD.start;
/// Largest Noise message a frame can carry (the Noise protocol's own limit).
pub const MAX_PAYLOAD_LEN: usize = u16::MAX as usize;

/// How many bytes the whole frame starting at `prefix` occupies, once at least the 2-byte
/// prefix is known; `None` while fewer than 2 bytes have arrived. Lets a stream reader know
/// how much to read before building a view.
pub fn frame_len(prefix: &[u8]) -> Option<usize> {
    if prefix.len() < HEADER_LEN {
        return None;
    }
    Some(HEADER_LEN + usize::from(get_u16(prefix, field::LENGTH.start)))
}

/// A read/write view of one length-prefixed Noise frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is too short. Use only on
    /// buffers this process built.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps untrusted bytes: fails unless the buffer holds the prefix and the whole message
    /// it announces. Trailing bytes beyond the frame are allowed (the next frame).
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

    /// The length field: how many message bytes follow the prefix.
    pub fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Bytes the whole frame occupies: prefix plus message.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// The Noise message (exactly `payload_len` bytes; bytes after the frame are excluded).
    pub fn payload(&self) -> &[u8] {
        let end = self.total_len();
        &self.buffer.as_ref()[field::PAYLOAD.start..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the length field.
    pub fn set_payload_len(&mut self, len: u16) {
        put_u16(self.buffer.as_mut(), field::LENGTH.start, len);
    }

    /// The Noise message, writable (for encrypting or decrypting in place).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[field::PAYLOAD.start..end]
    }
}

impl<T: AsRef<[u8]>> fmt::Display for Frame<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Repr::parse(self) {
            Ok(repr) => write!(f, "{repr}"),
            Err(e) => write!(f, "noise frame ({e})"),
        }
    }
}

/// The parsed form of a Noise frame: how long its message is. The message bytes themselves
/// are read and written through [`Frame::payload`] / [`Frame::payload_mut`] so they are never
/// copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Length of the Noise message in bytes.
    pub payload_len: u16,
}

impl Repr {
    /// A frame for a message of `len` bytes; fails if `len` exceeds the Noise maximum.
    pub fn new(len: usize) -> Result<Repr, WireError> {
        let payload_len = u16::try_from(len).map_err(|_| WireError::TooLong {
            field: "noise message",
            len,
            max: MAX_PAYLOAD_LEN,
        })?;
        Ok(Repr { payload_len })
    }

    /// Parses a frame, verifying it is complete.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr, WireError> {
        frame.check_len()?;
        Ok(Repr {
            payload_len: frame.payload_len(),
        })
    }

    /// Bytes needed to emit this frame.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize
    }

    /// Writes the prefix; the caller then fills [`Frame::payload_mut`]. Fails if the buffer is
    /// shorter than [`Repr::buffer_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        frame: &mut Frame<T>,
    ) -> Result<(), WireError> {
        check_len(frame.buffer.as_ref(), self.buffer_len())?;
        frame.set_payload_len(self.payload_len);
        Ok(())
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "noise frame len={}", self.payload_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::unhex;

    /// Golden example (docs/protocol.md): a 5-byte message "hello".
    const GOLDEN: &str = "0005 68656c6c6f";

    #[test]
    fn golden_parse() {
        let bytes = unhex(GOLDEN);
        let frame = Frame::new_checked(&bytes[..]).unwrap();
        assert_eq!(frame.payload_len(), 5);
        assert_eq!(frame.total_len(), 7);
        assert_eq!(frame.payload(), b"hello");
        assert_eq!(Repr::parse(&frame).unwrap(), Repr { payload_len: 5 });
        assert_eq!(frame.to_string(), "noise frame len=5");
    }

    #[test]
    fn golden_emit() {
        let repr = Repr::new(5).unwrap();
        let mut buf = vec![0u8; repr.buffer_len()];
        let mut frame = Frame::new_unchecked(&mut buf[..]);
        repr.emit(&mut frame).unwrap();
        frame.payload_mut().copy_from_slice(b"hello");
        assert_eq!(buf, unhex(GOLDEN));
    }

    #[test]
    fn largest_message() {
        let repr = Repr::new(MAX_PAYLOAD_LEN).unwrap();
        assert_eq!(repr.buffer_len(), 65_537);
        assert_eq!(
            Repr::new(MAX_PAYLOAD_LEN + 1),
            Err(WireError::TooLong {
                field: "noise message",
                len: 65_536,
                max: 65_535
            })
        );
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Frame::new_unchecked(&mut buf[..])).unwrap();
        assert_eq!(&buf[..2], &[0xff, 0xff]);
        assert_eq!(
            Frame::new_checked(&buf[..]).unwrap().payload().len(),
            65_535
        );
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert_eq!(
            Frame::new_checked(&[0x00][..]),
            Err(WireError::Truncated { need: 2, have: 1 })
        );
        let short = unhex("0005 6865");
        assert_eq!(
            Frame::new_checked(&short[..]),
            Err(WireError::Truncated { need: 7, have: 4 })
        );
        assert_eq!(frame_len(&short[..1]), None);
        assert_eq!(frame_len(&short), Some(7));
    }

    #[test]
    fn trailing_bytes_belong_to_the_next_frame() {
        let bytes = unhex("0002 abcd 0001 ee");
        let first = Frame::new_checked(&bytes[..]).unwrap();
        assert_eq!(first.payload(), &[0xab, 0xcd]);
        let second = Frame::new_checked(&bytes[first.total_len()..]).unwrap();
        assert_eq!(second.payload(), &[0xee]);
    }

    #[test]
    fn empty_message_is_a_frame() {
        let frame = Frame::new_checked(&[0u8, 0][..]).unwrap();
        assert_eq!(frame.payload(), b"");
    }

    #[test]
    fn emit_into_short_buffer_fails() {
        let repr = Repr::new(4).unwrap();
        let mut buf = [0u8; 5];
        assert_eq!(
            repr.emit(&mut Frame::new_unchecked(&mut buf[..])),
            Err(WireError::Truncated { need: 6, have: 5 })
        );
    }
}
