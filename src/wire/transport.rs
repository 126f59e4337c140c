//! The stcp transport frame (skynet, docs/protocol.md "Skynet: transports").
//!
//! ```text
//!  0             2                              2+sealed_len         +trailing
//!  +-------------+------------------------------+--------------------+
//!  | sealed_len  | AEAD(routing header 7 bytes  | data payload       |
//!  | u16be       |      ‖ control payload) ‖ tag| (unsealed)         |
//!  +-------------+------------------------------+--------------------+
//! ```
//!
//! A routing packet (`wire::route`) whose route id is 0 (the transport itself) or whose type
//! is not a route payload type (anything but 0–6: the setup messages 7/8/9 and unknown types)
//! is **control**: its whole packet is sealed and nothing trails. Any other packet (Data,
//! Close, KeepAlive, Handshake, Ping, Pong, Error on a route) has only its 7-byte header
//! sealed; its payload — the route group's end-to-end ciphertext — trails as it is, so a
//! forwarding hop opens 23 bytes and passes the payload through.
//!
//! The AEAD is ChaCha20-Poly1305 with the Noise transport CipherState of the link (implicit
//! nonce counter, empty associated data), exactly as in `crypto::channel` frames.

use super::route::HEADER_LEN;
use super::{WireError, check_len, get_u16, get_u32};

/// Length of the sealed-length prefix.
pub const PREFIX_LEN: usize = 2;
/// Length of the AEAD tag.
pub const TAG_LEN: usize = 16;
/// The shortest sealed part: a routing header and a tag.
pub const SEALED_MIN: usize = HEADER_LEN + TAG_LEN;
/// The longest sealed part (what the u16 prefix can say).
pub const SEALED_MAX: usize = u16::MAX as usize;

/// True when a packet of type byte `packet_type` with `route_id` is a control packet (sealed
/// whole; see the module docs).
pub fn is_control(packet_type: u8, route_id: u32) -> bool {
    route_id == 0 || packet_type > 6
}

/// Length of the sealed part for a routing packet with this header.
pub fn sealed_len_for(packet_type: u8, route_id: u32, payload_len: usize) -> usize {
    if is_control(packet_type, route_id) {
        SEALED_MIN + payload_len
    } else {
        SEALED_MIN
    }
}

/// How many unsealed payload bytes follow the sealed part, given the opened routing header
/// (its first 7 bytes) and the frame's `sealed_len`; an inconsistent pair is an error.
pub fn trailing_len(header: &[u8], sealed_len: usize) -> Result<usize, WireError> {
    check_len(header, HEADER_LEN)?;
    let (t, id, len) = (
        header[0],
        get_u32(header, 1),
        usize::from(get_u16(header, 5)),
    );
    if is_control(t, id) {
        if sealed_len != SEALED_MIN + len {
            return Err(WireError::BadLength {
                field: "sealed length of a control packet",
                value: sealed_len,
            });
        }
        Ok(0)
    } else {
        if sealed_len != SEALED_MIN {
            return Err(WireError::BadLength {
                field: "sealed length of a route packet",
                value: sealed_len,
            });
        }
        Ok(len)
    }
}

/// How many bytes the prefix and sealed part of the frame at `prefix` occupy, once its two
/// prefix bytes are there (`Ok(None)` before); a sealed length below [`SEALED_MIN`] is an
/// error.
pub fn frame_len(prefix: &[u8]) -> Result<Option<usize>, WireError> {
    if prefix.len() < PREFIX_LEN {
        return Ok(None);
    }
    let n = usize::from(get_u16(prefix, 0));
    if n < SEALED_MIN {
        return Err(WireError::BadLength {
            field: "sealed length",
            value: n,
        });
    }
    Ok(Some(PREFIX_LEN + n))
}

/// A view of the prefix and sealed part of one stcp frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps untrusted bytes: the sealed length must be at least [`SEALED_MIN`] and the
    /// buffer must hold the whole sealed part (trailing bytes are allowed).
    pub fn new_checked(buffer: T) -> Result<Frame<T>, WireError> {
        let f = Frame { buffer };
        let buf = f.buffer.as_ref();
        check_len(buf, PREFIX_LEN)?;
        let total = frame_len(buf)?.unwrap_or(PREFIX_LEN);
        check_len(buf, total)?;
        Ok(f)
    }

    /// The sealed length field.
    pub fn sealed_len(&self) -> usize {
        usize::from(get_u16(self.buffer.as_ref(), 0))
    }

    /// The sealed bytes (ciphertext ‖ tag).
    pub fn sealed(&self) -> &[u8] {
        &self.buffer.as_ref()[PREFIX_LEN..PREFIX_LEN + self.sealed_len()]
    }

    /// Prefix and sealed part.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..PREFIX_LEN + self.sealed_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the sealed length field.
    pub fn set_sealed_len(&mut self, len: u16) {
        super::put_u16(self.buffer.as_mut(), 0, len);
    }

    /// The sealed bytes, writable (to open them in place).
    pub fn sealed_mut(&mut self) -> &mut [u8] {
        let n = self.sealed_len();
        &mut self.buffer.as_mut()[PREFIX_LEN..PREFIX_LEN + n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::unhex;

    #[test]
    fn control_or_route() {
        assert!(is_control(0, 0));
        assert!(is_control(7, 5));
        assert!(is_control(200, 5));
        assert!(!is_control(0, 5));
        assert!(!is_control(6, 1));
        assert_eq!(sealed_len_for(0, 9, 1000), 23);
        assert_eq!(sealed_len_for(4, 0, 8), 31);
    }

    #[test]
    fn trailing_lengths() {
        // Data on route 9, 1000 payload bytes: only the header sealed.
        let data = unhex("00 00000009 03e8");
        assert_eq!(trailing_len(&data, 23), Ok(1000));
        assert!(trailing_len(&data, 24).is_err());
        // Ping on route 0 with 8 bytes: sealed whole.
        let ping = unhex("04 00000000 0008");
        assert_eq!(trailing_len(&ping, 31), Ok(0));
        assert!(trailing_len(&ping, 23).is_err());
        assert!(trailing_len(&ping[..6], 31).is_err());
    }

    #[test]
    fn view_checks() {
        assert_eq!(frame_len(&[0]), Ok(None));
        assert!(frame_len(&[0, 22]).is_err());
        assert_eq!(frame_len(&[0, 23]), Ok(Some(25)));
        let mut buf = [0u8; 25];
        buf[1] = 23;
        let f = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!((f.sealed_len(), f.sealed().len()), (23, 23));
        assert!(Frame::new_checked(&buf[..24]).is_err());
        assert!(Frame::new_checked(&buf[..1]).is_err());
        buf[1] = 3;
        assert!(Frame::new_checked(&buf[..]).is_err());
        let mut buf = [0u8; 30];
        let mut f = Frame::new_unchecked(&mut buf[..]);
        f.set_sealed_len(23);
        f.sealed_mut()[0] = 7;
        assert_eq!(f.as_bytes().len(), 25);
        assert_eq!(buf[2], 7);
    }
}
