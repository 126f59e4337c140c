//! The sealed session frame (DESIGN.md §3.4): how mux frames travel on a client ↔ relay
//! session and inside an end-to-end channel.
//!
//! ```text
//!  0            2                                   2+sealed_len          +data_len
//!  +------------+-----------------------------------+---------------------+
//!  | sealed_len | AEAD(mux header ‖ control) ‖ tag  | data                |
//!  | u16be      | 12 + control_len + 16 bytes       | (already e2e sealed |
//!  |            |                                   |  or plain app data) |
//!  +------------+-----------------------------------+---------------------+
//! ```
//!
//! Everything the session itself says — the 12-byte yamux header and a small control payload
//! (a stream open's destination, an error code) — is sealed with the session key. A data
//! frame's bytes follow the sealed part *outside* the AEAD: on a relay they are the end-to-end
//! ciphertext of a channel between two clients, so the relay opens only the header, learns the
//! data length from it, and forwards the data bytes unchanged under a freshly sealed header
//! (encrypt-once). The data length is therefore unknown until the header has been opened:
//! [`Frame`] covers the sealed part, and [`Frame::total_len`] takes the opened data length.
//!
//! `sealed_len` must be at least 28 (a header and a tag); a shorter value is a
//! [`WireError::BadLength`] before any decryption is attempted.

use core::fmt;

use super::{WireError, check_len, get_u16, mux, put_u16};

mod field {
    use core::ops::{Range, RangeFrom};

    /// Length of the sealed part (header ‖ control ‖ tag), big-endian.
    pub const SEALED_LEN: Range<usize> = 0..2;
    /// The sealed part, then the data.
    pub const SEALED: RangeFrom<usize> = 2..;
}

/// Length of the prefix.
pub const PREFIX_LEN: usize = field::SEALED.start;
/// Length of the AEAD tag at the end of the sealed part.
pub const TAG_LEN: usize = 16;
/// The smallest sealed part: a mux header and a tag, no control payload.
pub const MIN_SEALED_LEN: usize = mux::HEADER_LEN + TAG_LEN;
/// The largest control payload a frame can carry.
pub const MAX_CONTROL_LEN: usize = u16::MAX as usize - MIN_SEALED_LEN;

/// How many bytes the sealed part of the frame starting at `prefix` occupies, prefix
/// included, once the 2-byte prefix is known; `None` while fewer than 2 bytes have arrived.
/// A stream reader reads this much, opens it, then reads the data length the header names.
pub fn sealed_frame_len(prefix: &[u8]) -> Option<usize> {
    if prefix.len() < PREFIX_LEN {
        return None;
    }
    Some(PREFIX_LEN + usize::from(get_u16(prefix, field::SEALED_LEN.start)))
}

/// A read/write view of one sealed session frame at the start of a buffer. It covers the
/// prefix and the sealed part; data bytes, if the opened header announces any, follow.
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

    /// Wraps untrusted bytes: fails unless `sealed_len` is at least [`MIN_SEALED_LEN`] and the
    /// buffer holds the whole sealed part. Bytes after it (the data, the next frame) are
    /// allowed.
    pub fn new_checked(buffer: T) -> Result<Frame<T>, WireError> {
        let frame = Frame::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Verifies the prefix is sane and the sealed part is present, so no accessor can panic.
    pub fn check_len(&self) -> Result<(), WireError> {
        let buf = self.buffer.as_ref();
        check_len(buf, PREFIX_LEN)?;
        let sealed = usize::from(self.sealed_len());
        if sealed < MIN_SEALED_LEN {
            return Err(WireError::BadLength {
                field: "sealed length",
                value: sealed,
            });
        }
        check_len(buf, PREFIX_LEN + sealed)
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The prefix: bytes in the sealed part, tag included.
    pub fn sealed_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SEALED_LEN.start)
    }

    /// Bytes of control payload inside the sealed part.
    pub fn control_len(&self) -> usize {
        usize::from(self.sealed_len()).saturating_sub(MIN_SEALED_LEN)
    }

    /// End of the sealed part, counted from the start of the frame.
    pub fn sealed_end(&self) -> usize {
        PREFIX_LEN + usize::from(self.sealed_len())
    }

    /// The sealed part (ciphertext ‖ tag).
    pub fn sealed(&self) -> &[u8] {
        &self.buffer.as_ref()[field::SEALED.start..self.sealed_end()]
    }

    /// Bytes the whole frame occupies once the opened header says `data_len` bytes follow.
    pub fn total_len(&self, data_len: usize) -> usize {
        self.sealed_end().saturating_add(data_len)
    }

    /// The data bytes after the sealed part; fails if the buffer does not hold `data_len`.
    pub fn data(&self, data_len: usize) -> Result<&[u8], WireError> {
        let buf = self.buffer.as_ref();
        let end = self.total_len(data_len);
        check_len(buf, end)?;
        Ok(&buf[self.sealed_end()..end])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the prefix.
    pub fn set_sealed_len(&mut self, len: u16) {
        put_u16(self.buffer.as_mut(), field::SEALED_LEN.start, len);
    }

    /// The sealed part, writable (sealed or opened in place).
    pub fn sealed_mut(&mut self) -> &mut [u8] {
        let end = self.sealed_end();
        &mut self.buffer.as_mut()[field::SEALED.start..end]
    }

    /// The data bytes, writable; fails if the buffer does not hold `data_len`.
    pub fn data_mut(&mut self, data_len: usize) -> Result<&mut [u8], WireError> {
        let start = self.sealed_end();
        let end = self.total_len(data_len);
        let buf = self.buffer.as_mut();
        check_len(buf, end)?;
        Ok(&mut buf[start..end])
    }
}

impl<T: AsRef<[u8]>> fmt::Display for Frame<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Repr::parse(self) {
            Ok(repr) => write!(f, "{repr}"),
            Err(e) => write!(f, "sealed frame ({e})"),
        }
    }
}

/// The outer shape of a sealed frame, as far as it is visible before opening: how much
/// control payload rides in the sealed part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Bytes of control payload after the mux header, inside the AEAD.
    pub control_len: usize,
}

impl Repr {
    /// A frame whose sealed part carries `control_len` control bytes.
    pub fn new(control_len: usize) -> Result<Repr, WireError> {
        if control_len > MAX_CONTROL_LEN {
            return Err(WireError::TooLong {
                field: "control payload",
                len: control_len,
                max: MAX_CONTROL_LEN,
            });
        }
        Ok(Repr { control_len })
    }

    /// Parses the prefix of an untrusted frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr, WireError> {
        frame.check_len()?;
        Ok(Repr {
            control_len: frame.control_len(),
        })
    }

    /// Bytes in the sealed part: header, control, tag.
    pub const fn sealed_len(&self) -> usize {
        MIN_SEALED_LEN + self.control_len
    }

    /// Bytes the prefix and sealed part occupy (the data, if any, follows).
    pub const fn buffer_len(&self) -> usize {
        PREFIX_LEN + self.sealed_len()
    }

    /// Writes the prefix into a buffer of at least [`Repr::buffer_len`] bytes; the caller then
    /// writes `mux header ‖ control` into the sealed part and seals it in place, leaving the
    /// last [`TAG_LEN`] bytes for the tag.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        frame: &mut Frame<T>,
    ) -> Result<(), WireError> {
        let sealed = u16::try_from(self.sealed_len()).map_err(|_| WireError::TooLong {
            field: "control payload",
            len: self.control_len,
            max: MAX_CONTROL_LEN,
        })?;
        check_len(frame.buffer.as_ref(), self.buffer_len())?;
        frame.set_sealed_len(sealed);
        Ok(())
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sealed frame: {} sealed bytes ({} control)",
            self.sealed_len(),
            self.control_len
        )
    }
}

/// Splits an opened sealed part (`mux header ‖ control`, tag already removed) into the parsed
/// header and the control bytes.
pub fn split_opened(plain: &[u8]) -> Result<(mux::Repr, &[u8]), WireError> {
    let header = mux::Repr::parse_header(plain)?;
    Ok((header, &plain[mux::HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::unhex;

    // A frame with 3 control bytes: prefix 0x001f = 12 + 3 + 16 = 31, then 31 sealed bytes
    // (stand-in ciphertext), then 4 data bytes the opened header would announce.
    const GOLDEN: &str = "001f
        000102030405060708090a0b 616263 f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff
        deadbeef";

    #[test]
    fn golden_parse() {
        let bytes = unhex(GOLDEN);
        let frame = Frame::new_checked(&bytes[..]).unwrap();
        assert_eq!(frame.sealed_len(), 31);
        assert_eq!(Repr::parse(&frame).unwrap(), Repr { control_len: 3 });
        assert_eq!(frame.sealed().len(), 31);
        assert_eq!(frame.sealed()[12..15], *b"abc");
        assert_eq!(frame.data(4).unwrap(), &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(frame.total_len(4), bytes.len());
        assert_eq!(
            frame.data(5),
            Err(WireError::Truncated { need: 38, have: 37 })
        );
    }

    #[test]
    fn golden_emit() {
        let repr = Repr::new(3).unwrap();
        let mut buf = vec![0u8; repr.buffer_len() + 4];
        let mut frame = Frame::new_unchecked(&mut buf[..]);
        repr.emit(&mut frame).unwrap();
        frame.sealed_mut()[..15].copy_from_slice(&unhex("000102030405060708090a0b 616263"));
        frame.sealed_mut()[15..].copy_from_slice(&unhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"));
        frame
            .data_mut(4)
            .unwrap()
            .copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(buf, unhex(GOLDEN));
    }

    #[test]
    fn short_sealed_length_is_refused_before_decrypting() {
        let mut bytes = [0u8; 64];
        bytes[1] = 27;
        assert_eq!(
            Frame::new_checked(&bytes[..]),
            Err(WireError::BadLength {
                field: "sealed length",
                value: 27
            })
        );
        bytes[1] = 28;
        let frame = Frame::new_checked(&bytes[..]).unwrap();
        assert_eq!(frame.control_len(), 0);
    }

    #[test]
    fn truncated_sealed_part() {
        let bytes = unhex("0020 00");
        assert_eq!(
            Frame::new_checked(&bytes[..]),
            Err(WireError::Truncated { need: 34, have: 3 })
        );
        assert_eq!(
            Frame::new_checked(&[0u8][..]),
            Err(WireError::Truncated { need: 2, have: 1 })
        );
        assert_eq!(sealed_frame_len(&[0x00]), None);
        assert_eq!(sealed_frame_len(&[0x01, 0x00]), Some(258));
    }

    #[test]
    fn control_limit() {
        assert!(Repr::new(MAX_CONTROL_LEN).is_ok());
        assert_eq!(
            Repr::new(MAX_CONTROL_LEN + 1),
            Err(WireError::TooLong {
                field: "control payload",
                len: MAX_CONTROL_LEN + 1,
                max: MAX_CONTROL_LEN
            })
        );
        let repr = Repr::new(MAX_CONTROL_LEN).unwrap();
        assert_eq!(repr.sealed_len(), 65535);
    }

    #[test]
    fn split_opened_header_and_control() {
        let plain = unhex("00 00 0001 00000003 00000400 0102");
        let (hdr, control) = split_opened(&plain).unwrap();
        assert_eq!(hdr, mux::Repr::data(3, mux::Flags::SYN, 1024));
        assert_eq!(control, &[1, 2]);
        assert!(split_opened(&plain[..11]).is_err());
    }

    #[test]
    fn display() {
        let bytes = unhex(GOLDEN);
        let frame = Frame::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            frame.to_string(),
            "sealed frame: 31 sealed bytes (3 control)"
        );
    }
}
