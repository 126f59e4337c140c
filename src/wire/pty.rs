//! pty session frames (docs/protocol.md §10): `type u8 ‖ len u16be ‖ payload`.
//!
//! ```text
//!  0      1                3                     3+len
//!  +------+----------------+---------------------+
//!  | type | payload length | payload             |
//!  | u8   | u16be          | (len bytes)         |
//!  +------+----------------+---------------------+
//! ```
//!
//! This module is the byte layout: the [`Frame`] view over one frame (the type byte and the
//! length, checked by [`Frame::new_checked`] so no accessor can panic), the type codes
//! ([`FrameType`]), the signal codes ([`Sig`]) and the exit status ([`ExitStatus`]), and the
//! sizes of the fixed payloads (resize, signal, exit). The parsed form
//! with its rules (a request's argv and environment, owned strings) is
//! `apps::pty::proto::Repr`, which reads through this view. No I/O, no allocation.

use core::fmt;

use super::{WireError, check_len, get_u16, put_u16};

mod field {
    use core::ops::{Range, RangeFrom};

    pub const TYPE: usize = 0;
    pub const LEN: Range<usize> = 1..3;
    pub const PAYLOAD: RangeFrom<usize> = 3..;
}

/// Length of the frame header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;
/// Largest payload a frame can carry.
pub const MAX_PAYLOAD_LEN: usize = u16::MAX as usize;
/// Payload length of a resize frame (`rows u16be ‖ cols u16be`).
pub const RESIZE_LEN: usize = 4;
/// Payload length of a signal frame (`signo u8`).
pub const SIGNAL_LEN: usize = 1;
/// Payload length of an exit frame (`kind u8 ‖ value u8`).
pub const EXIT_LEN: usize = 2;

/// How many bytes the frame starting at `prefix` occupies, once its 3-byte header has arrived;
/// `None` before that.
pub fn frame_len(prefix: &[u8]) -> Option<usize> {
    if prefix.len() < HEADER_LEN {
        return None;
    }
    Some(HEADER_LEN + usize::from(get_u16(prefix, field::LEN.start)))
}

/// The frame type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// Client → host: what to run.
    Request,
    /// Host → client: the session runs.
    Accepted,
    /// Host → client: the session is refused, with the reason.
    Refused,
    /// Client → host: input for the pty.
    Stdin,
    /// Client → host: no more input (the host sends the pty's EOF character).
    StdinEof,
    /// Host → client: output of the pty.
    Stdout,
    /// Client → host: the terminal's new size.
    Resize,
    /// Client → host: a signal for the foreground process group.
    Signal,
    /// Host → client: the exit status; the last frame of a session.
    Exit,
}

impl FrameType {
    /// The type for a byte, `None` for a byte the protocol does not define.
    pub const fn from_u8(v: u8) -> Option<FrameType> {
        Some(match v {
            0x01 => FrameType::Request,
            0x02 => FrameType::Accepted,
            0x03 => FrameType::Refused,
            0x04 => FrameType::Stdin,
            0x05 => FrameType::StdinEof,
            0x06 => FrameType::Stdout,
            0x07 => FrameType::Resize,
            0x08 => FrameType::Signal,
            0x09 => FrameType::Exit,
            _ => return None,
        })
    }

    /// The byte on the wire.
    pub const fn to_u8(self) -> u8 {
        match self {
            FrameType::Request => 0x01,
            FrameType::Accepted => 0x02,
            FrameType::Refused => 0x03,
            FrameType::Stdin => 0x04,
            FrameType::StdinEof => 0x05,
            FrameType::Stdout => 0x06,
            FrameType::Resize => 0x07,
            FrameType::Signal => 0x08,
            FrameType::Exit => 0x09,
        }
    }

    /// The frame's name, for logs and errors.
    pub const fn name(self) -> &'static str {
        match self {
            FrameType::Request => "request",
            FrameType::Accepted => "accepted",
            FrameType::Refused => "refused",
            FrameType::Stdin => "stdin",
            FrameType::StdinEof => "stdin-eof",
            FrameType::Stdout => "stdout",
            FrameType::Resize => "resize",
            FrameType::Signal => "signal",
            FrameType::Exit => "exit",
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A read/write view of one pty frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps untrusted bytes: fails unless the buffer holds the header and the whole payload
    /// it announces. Bytes after the frame are allowed (the next frame). The type byte is
    /// checked by [`Repr::parse`].
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

    /// The whole underlying buffer (the frame and whatever follows it).
    pub fn as_inner(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The raw type byte.
    pub fn type_byte(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// The frame type, `None` if the byte is not one this protocol defines.
    pub fn frame_type(&self) -> Option<FrameType> {
        FrameType::from_u8(self.type_byte())
    }

    /// The payload length field.
    pub fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LEN.start)
    }

    /// Bytes the whole frame occupies.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// The payload (exactly `payload_len` bytes).
    pub fn payload(&self) -> &[u8] {
        let end = self.total_len();
        &self.buffer.as_ref()[field::PAYLOAD.start..end]
    }

    /// The whole frame as it goes on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        let end = self.total_len();
        &self.buffer.as_ref()[..end]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Frame<&'a T> {
    /// The payload, borrowed for as long as the buffer (so a parsed form can keep it).
    pub fn payload_ref(&self) -> &'a [u8] {
        let end = self.total_len();
        &self.buffer.as_ref()[field::PAYLOAD.start..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the type byte.
    pub fn set_frame_type(&mut self, t: FrameType) {
        self.buffer.as_mut()[field::TYPE] = t.to_u8();
    }

    /// Sets the payload length field.
    pub fn set_payload_len(&mut self, len: u16) {
        put_u16(self.buffer.as_mut(), field::LEN.start, len);
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[field::PAYLOAD.start..end]
    }
}

/// The signals a client may ask for. Codes on the wire are the Linux numbers (the same on
/// x86, ARM and RISC-V); the host maps them to its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sig {
    /// `SIGHUP` (1).
    Hup,
    /// `SIGINT` (2).
    Int,
    /// `SIGQUIT` (3).
    Quit,
    /// `SIGKILL` (9).
    Kill,
    /// `SIGUSR1` (10).
    Usr1,
    /// `SIGUSR2` (12).
    Usr2,
    /// `SIGTERM` (15).
    Term,
    /// `SIGCONT` (18).
    Cont,
    /// `SIGSTOP` (19).
    Stop,
    /// `SIGTSTP` (20).
    Tstp,
    /// `SIGWINCH` (28).
    Winch,
}

impl Sig {
    /// The signal for a wire code, `None` outside the set.
    pub const fn from_u8(v: u8) -> Option<Sig> {
        Some(match v {
            1 => Sig::Hup,
            2 => Sig::Int,
            3 => Sig::Quit,
            9 => Sig::Kill,
            10 => Sig::Usr1,
            12 => Sig::Usr2,
            15 => Sig::Term,
            18 => Sig::Cont,
            19 => Sig::Stop,
            20 => Sig::Tstp,
            28 => Sig::Winch,
            _ => return None,
        })
    }

    /// The wire code.
    pub const fn to_u8(self) -> u8 {
        match self {
            Sig::Hup => 1,
            Sig::Int => 2,
            Sig::Quit => 3,
            Sig::Kill => 9,
            Sig::Usr1 => 10,
            Sig::Usr2 => 12,
            Sig::Term => 15,
            Sig::Cont => 18,
            Sig::Stop => 19,
            Sig::Tstp => 20,
            Sig::Winch => 28,
        }
    }

    /// The usual name without `SIG`.
    pub const fn name(self) -> &'static str {
        match self {
            Sig::Hup => "HUP",
            Sig::Int => "INT",
            Sig::Quit => "QUIT",
            Sig::Kill => "KILL",
            Sig::Usr1 => "USR1",
            Sig::Usr2 => "USR2",
            Sig::Term => "TERM",
            Sig::Cont => "CONT",
            Sig::Stop => "STOP",
            Sig::Tstp => "TSTP",
            Sig::Winch => "WINCH",
        }
    }
}

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIG{}", self.name())
    }
}

/// How the remote command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(u8),
    /// It was killed by this signal (the host's number, 1–127).
    Signal(u8),
}

impl ExitStatus {
    /// The status a shell would report: the code, or 128 + the signal number.
    pub const fn code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c as i32,
            ExitStatus::Signal(s) => 128 + s as i32,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::unhex;

    // Golden bytes of docs/protocol.md §10 (the full set, parsed, is in apps::pty::proto).
    const STDOUT: &str = "06 0003 34320a";
    const RESIZE: &str = "07 0004 0028 0064";

    #[test]
    fn golden_header_fields() {
        let bytes = unhex(STDOUT);
        let f = Frame::new_checked(&bytes[..]).unwrap();
        assert_eq!(f.type_byte(), 0x06);
        assert_eq!(f.frame_type(), Some(FrameType::Stdout));
        assert_eq!(f.payload_len(), 3);
        assert_eq!(f.total_len(), 6);
        assert_eq!(f.payload(), b"42\n");
        assert_eq!(f.payload_ref(), b"42\n");
        assert_eq!(f.as_bytes(), &bytes[..]);
        assert_eq!(frame_len(&bytes[..2]), None);
        assert_eq!(frame_len(&bytes), Some(6));
        let r = unhex(RESIZE);
        let f = Frame::new_checked(&r[..]).unwrap();
        assert_eq!(f.payload().len(), RESIZE_LEN);
        assert_eq!(get_u16(f.payload(), 0), 40);
        assert_eq!(get_u16(f.payload(), 2), 100);
    }

    #[test]
    fn setters_build_the_golden_bytes() {
        let mut out = [0u8; 7];
        let mut f = Frame::new_unchecked(&mut out[..]);
        f.set_frame_type(FrameType::Resize);
        f.set_payload_len(4);
        f.payload_mut().copy_from_slice(&[0, 40, 0, 100]);
        assert_eq!(&out[..], &unhex(RESIZE)[..]);
    }

    #[test]
    fn checked_views_reject_short_buffers() {
        assert_eq!(
            Frame::new_checked(&[6u8, 0][..]),
            Err(WireError::Truncated { need: 3, have: 2 })
        );
        let cut = unhex("06 0005 3432");
        assert_eq!(
            Frame::new_checked(&cut[..]),
            Err(WireError::Truncated { need: 8, have: 5 })
        );
        // Bytes after the frame (the next one) are allowed.
        let mut two = unhex(STDOUT);
        two.extend(unhex(RESIZE));
        let f = Frame::new_checked(&two[..]).unwrap();
        assert_eq!(f.as_bytes(), &unhex(STDOUT)[..]);
    }

    #[test]
    fn codes_round_trip() {
        for v in 0..=255u8 {
            if let Some(t) = FrameType::from_u8(v) {
                assert_eq!(t.to_u8(), v);
                assert_eq!(t.to_string(), t.name());
            }
            if let Some(s) = Sig::from_u8(v) {
                assert_eq!(s.to_u8(), v);
            }
        }
        assert_eq!(FrameType::from_u8(0), None);
        assert_eq!(FrameType::from_u8(0x0a), None);
        assert_eq!(Sig::Int.to_string(), "SIGINT");
        assert_eq!(ExitStatus::Signal(9).code(), 137);
    }
}
