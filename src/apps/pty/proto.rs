//! The pty session protocol (docs/protocol.md, §10 "pty sessions").
//!
//! A pty session is one byte stream (an overlay stream to port 22, or Noise-XK-over-TCP in
//! TCP-standalone mode). Both directions carry the same frame layout:
//!
//! ```text
//!  0      1                3                     3+len
//!  +------+----------------+---------------------+
//!  | type | payload length | payload             |
//!  | u8   | u16be          | (len bytes)         |
//!  +------+----------------+---------------------+
//! ```
//!
//! | type | frame     | direction     | payload                                             |
//! |------|-----------|---------------|-----------------------------------------------------|
//! | 0x01 | Request   | client → host | see below                                           |
//! | 0x02 | Accepted  | host → client | empty                                               |
//! | 0x03 | Refused   | host → client | reason, UTF-8 (`not whitelisted: <pk>`)             |
//! | 0x04 | Stdin     | client → host | bytes for the pty                                   |
//! | 0x05 | StdinEof  | client → host | empty                                               |
//! | 0x06 | Stdout    | host → client | bytes read from the pty (stdout and stderr merged)  |
//! | 0x07 | Resize    | client → host | `rows u16be ‖ cols u16be`                           |
//! | 0x08 | Signal    | client → host | `signo u8` from a fixed set ([`Sig`])               |
//! | 0x09 | Exit      | host → client | `kind u8 (0 exited, 1 killed by signal) ‖ value u8` |
//!
//! The request payload:
//!
//! ```text
//! mode u8 (0 exec, 1 shell) ‖ rows u16be ‖ cols u16be
//! argc u16be ‖ argc × (len u16be ‖ UTF-8 argument)
//! envc u16be ‖ envc × (len u16be ‖ UTF-8 name ‖ len u16be ‖ UTF-8 value)
//! ```
//!
//! Exec has at least one argument; shell has none. Strings hold no NUL byte; an environment
//! name is non-empty and holds no `=`. Parsing is strict: a fixed-size frame with another
//! length, trailing bytes after the request, an unknown type, signal or mode are errors, so a
//! parsed frame re-emits to exactly the bytes it came from. Nothing here panics on input.
//!
//! The byte layout is the [`crate::wire::pty`] view ([`Frame`], [`FrameType`], [`Sig`],
//! re-exported here); this module adds the parsed form [`Repr`] with the rules above and its
//! errors ([`ProtoError`], whose layout errors are the view's [`WireError`]). Neither does
//! I/O; [`read_frame`] and [`write_frame`] at the end of the module move frames over any
//! `AsyncRead`/`AsyncWrite`.

use core::fmt;
use std::io;

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::PtyError;
use crate::wire::{WireError, check_len, get_u16, put_u16};

use crate::wire::pty::{self as view, EXIT_LEN, RESIZE_LEN, SIGNAL_LEN};
pub use crate::wire::pty::{ExitStatus, FrameType, HEADER_LEN, MAX_PAYLOAD_LEN, Sig, frame_len};

/// The [`crate::wire::pty::Frame`] view (every accessor and setter, through `Deref`) with
/// the checks answering in this app's [`ProtoError`], so a check and a parse chain with `?`
/// or `and_then`, and `Display` showing the parsed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>>(view::Frame<T>);

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame(view::Frame::new_unchecked(buffer))
    }

    /// Wraps untrusted bytes: [`view::Frame::new_checked`].
    pub fn new_checked(buffer: T) -> Result<Frame<T>, ProtoError> {
        Ok(Frame(view::Frame::new_checked(buffer)?))
    }

    /// [`view::Frame::check_len`].
    pub fn check_len(&self) -> Result<(), ProtoError> {
        Ok(self.0.check_len()?)
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.0.into_inner()
    }
}

impl<T: AsRef<[u8]>> core::ops::Deref for Frame<T> {
    type Target = view::Frame<T>;
    fn deref(&self) -> &view::Frame<T> {
        &self.0
    }
}

impl<T: AsRef<[u8]>> core::ops::DerefMut for Frame<T> {
    fn deref_mut(&mut self) -> &mut view::Frame<T> {
        &mut self.0
    }
}

/// What is wrong with a pty frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoError {
    /// The layout: the buffer ends before the frame (or a field inside it) does, or a length
    /// does not fit its field when emitting (the [`crate::wire::pty`] view's errors).
    Wire(WireError),
    /// A type byte this protocol does not define.
    UnknownType(u8),
    /// A fixed-size frame whose payload has another length.
    BadLength {
        /// The frame.
        frame: &'static str,
        /// The payload length found.
        len: usize,
    },
    /// A field holds a value the protocol does not define (mode, signal, exit kind).
    BadValue {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u8,
    },
    /// A string field is not UTF-8.
    NotUtf8(&'static str),
    /// A string field holds a NUL byte (it could never reach `execve`).
    Nul(&'static str),
    /// A request that breaks a rule of the layout (empty exec argv, shell with arguments,
    /// environment name empty or holding `=`, bytes after the last field).
    BadRequest(&'static str),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::Wire(WireError::Truncated { need, have }) => {
                write!(f, "truncated pty frame: need {need} bytes, have {have}")
            }
            ProtoError::Wire(e) => e.fmt(f),
            ProtoError::UnknownType(t) => write!(f, "unknown pty frame type 0x{t:02x}"),
            ProtoError::BadLength { frame, len } => {
                write!(f, "pty {frame} frame with a {len}-byte payload")
            }
            ProtoError::BadValue { field, value } => write!(f, "invalid {field}: {value}"),
            ProtoError::NotUtf8(field) => write!(f, "{field} is not UTF-8"),
            ProtoError::Nul(field) => write!(f, "{field} holds a NUL byte"),
            ProtoError::BadRequest(why) => write!(f, "bad request: {why}"),
        }
    }
}

impl std::error::Error for ProtoError {}

impl From<WireError> for ProtoError {
    fn from(e: WireError) -> Self {
        ProtoError::Wire(e)
    }
}

fn too_long(field: &'static str, len: usize) -> ProtoError {
    ProtoError::Wire(WireError::TooLong {
        field,
        len,
        max: MAX_PAYLOAD_LEN,
    })
}

/// What the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Run `argv` (one element: through the login shell's `-c`; several: directly).
    Exec,
    /// Run the host user's login shell.
    Shell,
}

impl Mode {
    const fn to_u8(self) -> u8 {
        match self {
            Mode::Exec => 0,
            Mode::Shell => 1,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Exec => "exec",
            Mode::Shell => "shell",
        })
    }
}

/// The first frame of a session: what to run and on what size of terminal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Request {
    /// Exec or shell.
    pub mode: Mode,
    /// Terminal rows.
    pub rows: u16,
    /// Terminal columns.
    pub cols: u16,
    /// The command (exec; at least one element) or nothing (shell).
    pub argv: Vec<String>,
    /// Environment the client passes (the host keeps only `TERM`, `COLORTERM`, `LANG`,
    /// `LANGUAGE` and `LC_*`).
    pub env: Vec<(String, String)>,
}

/// Fixed part of a request payload: mode, rows, cols.
const REQUEST_FIXED_LEN: usize = 5;

impl Request {
    /// An exec request for `argv` on a `rows`×`cols` pty, no environment.
    pub fn exec(argv: Vec<String>, rows: u16, cols: u16) -> Request {
        Request {
            mode: Mode::Exec,
            rows,
            cols,
            argv,
            env: Vec::new(),
        }
    }

    /// A login-shell request on a `rows`×`cols` pty, no environment.
    pub fn shell(rows: u16, cols: u16) -> Request {
        Request {
            mode: Mode::Shell,
            rows,
            cols,
            argv: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Adds environment variables.
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Request {
        self.env = env;
        self
    }

    /// Checks the rules of the layout (the same ones [`Repr::parse`] enforces).
    pub fn validate(&self) -> Result<(), ProtoError> {
        match self.mode {
            Mode::Exec if self.argv.is_empty() => {
                return Err(ProtoError::BadRequest("exec without a command"));
            }
            Mode::Shell if !self.argv.is_empty() => {
                return Err(ProtoError::BadRequest("shell request with arguments"));
            }
            _ => {}
        }
        for a in &self.argv {
            check_str(a, "argument")?;
        }
        if self.argv.len() > usize::from(u16::MAX) {
            return Err(too_long("argv", self.argv.len()));
        }
        if self.env.len() > usize::from(u16::MAX) {
            return Err(too_long("environment", self.env.len()));
        }
        for (k, v) in &self.env {
            check_str(k, "environment name")?;
            check_str(v, "environment value")?;
            if k.is_empty() || k.contains('=') {
                return Err(ProtoError::BadRequest(
                    "environment name empty or holding '='",
                ));
            }
        }
        Ok(())
    }

    /// Bytes the payload occupies.
    pub fn payload_len(&self) -> usize {
        let strs = |n: usize| 2 + n;
        REQUEST_FIXED_LEN
            + 2
            + self.argv.iter().map(|a| strs(a.len())).sum::<usize>()
            + 2
            + self
                .env
                .iter()
                .map(|(k, v)| strs(k.len()) + strs(v.len()))
                .sum::<usize>()
    }

    fn parse(payload: &[u8]) -> Result<Request, ProtoError> {
        let mut r = Reader {
            buf: payload,
            at: 0,
        };
        let mode = match r.u8()? {
            0 => Mode::Exec,
            1 => Mode::Shell,
            other => {
                return Err(ProtoError::BadValue {
                    field: "request mode",
                    value: other,
                });
            }
        };
        let rows = r.u16()?;
        let cols = r.u16()?;
        let argc = r.u16()?;
        let mut argv = Vec::new();
        for _ in 0..argc {
            argv.push(r.string("argument")?);
        }
        let envc = r.u16()?;
        let mut env = Vec::new();
        for _ in 0..envc {
            let k = r.string("environment name")?;
            let v = r.string("environment value")?;
            env.push((k, v));
        }
        if r.at != payload.len() {
            return Err(ProtoError::BadRequest("bytes after the environment"));
        }
        let req = Request {
            mode,
            rows,
            cols,
            argv,
            env,
        };
        req.validate()?;
        Ok(req)
    }

    /// Writes the payload into `out`, which holds exactly [`Request::payload_len`] bytes.
    fn emit(&self, out: &mut [u8]) {
        let mut w = Writer { buf: out, at: 0 };
        w.u8(self.mode.to_u8());
        w.u16(self.rows);
        w.u16(self.cols);
        w.u16(self.argv.len() as u16);
        for a in &self.argv {
            w.string(a);
        }
        w.u16(self.env.len() as u16);
        for (k, v) in &self.env {
            w.string(k);
            w.string(v);
        }
    }
}

fn check_str(s: &str, field: &'static str) -> Result<(), ProtoError> {
    if s.len() > MAX_PAYLOAD_LEN {
        return Err(too_long(field, s.len()));
    }
    if s.as_bytes().contains(&0) {
        return Err(ProtoError::Nul(field));
    }
    Ok(())
}

/// A bounds-checked cursor over a request payload.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ProtoError> {
        let end = self.at.saturating_add(n);
        check_len(self.buf, end)?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, ProtoError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, ProtoError> {
        Ok(get_u16(self.take(2)?, 0))
    }

    fn string(&mut self, field: &'static str) -> Result<String, ProtoError> {
        let n = usize::from(self.u16()?);
        let bytes = self.take(n)?;
        let s = core::str::from_utf8(bytes).map_err(|_| ProtoError::NotUtf8(field))?;
        check_str(s, field)?;
        Ok(s.to_owned())
    }
}

/// A cursor writing into a buffer the caller sized exactly.
struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.buf[self.at] = v;
        self.at += 1;
    }

    fn u16(&mut self, v: u16) {
        put_u16(self.buf, self.at, v);
        self.at += 2;
    }

    fn string(&mut self, s: &str) {
        self.u16(s.len() as u16);
        self.buf[self.at..self.at + s.len()].copy_from_slice(s.as_bytes());
        self.at += s.len();
    }
}

/// A parsed frame. Byte payloads and the refusal reason borrow from the buffer; a request is
/// decoded into owned strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repr<'a> {
    /// What to run.
    Request(Request),
    /// The session runs.
    Accepted,
    /// The session is refused.
    Refused(&'a str),
    /// Input for the pty.
    Stdin(&'a [u8]),
    /// No more input.
    StdinEof,
    /// Output of the pty.
    Stdout(&'a [u8]),
    /// New terminal size.
    Resize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// A signal for the foreground process group.
    Signal(Sig),
    /// The exit status.
    Exit(ExitStatus),
}

impl<'a> Repr<'a> {
    /// The frame type.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Repr::Request(_) => FrameType::Request,
            Repr::Accepted => FrameType::Accepted,
            Repr::Refused(_) => FrameType::Refused,
            Repr::Stdin(_) => FrameType::Stdin,
            Repr::StdinEof => FrameType::StdinEof,
            Repr::Stdout(_) => FrameType::Stdout,
            Repr::Resize { .. } => FrameType::Resize,
            Repr::Signal(_) => FrameType::Signal,
            Repr::Exit(_) => FrameType::Exit,
        }
    }

    /// Parses a frame, verifying its type, its length and every field.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &Frame<&'a T>) -> Result<Repr<'a>, ProtoError> {
        frame.check_len()?;
        let ty = frame
            .frame_type()
            .ok_or(ProtoError::UnknownType(frame.type_byte()))?;
        let payload: &'a [u8] = frame.payload_ref();
        let fixed = |n: usize| {
            if payload.len() == n {
                Ok(())
            } else {
                Err(ProtoError::BadLength {
                    frame: ty.name(),
                    len: payload.len(),
                })
            }
        };
        Ok(match ty {
            FrameType::Request => Repr::Request(Request::parse(payload)?),
            FrameType::Accepted => {
                fixed(0)?;
                Repr::Accepted
            }
            FrameType::Refused => Repr::Refused(
                core::str::from_utf8(payload).map_err(|_| ProtoError::NotUtf8("refusal reason"))?,
            ),
            FrameType::Stdin => Repr::Stdin(payload),
            FrameType::StdinEof => {
                fixed(0)?;
                Repr::StdinEof
            }
            FrameType::Stdout => Repr::Stdout(payload),
            FrameType::Resize => {
                fixed(RESIZE_LEN)?;
                Repr::Resize {
                    rows: get_u16(payload, 0),
                    cols: get_u16(payload, 2),
                }
            }
            FrameType::Signal => {
                fixed(SIGNAL_LEN)?;
                Repr::Signal(Sig::from_u8(payload[0]).ok_or(ProtoError::BadValue {
                    field: "signal",
                    value: payload[0],
                })?)
            }
            FrameType::Exit => {
                fixed(EXIT_LEN)?;
                let value = payload[1];
                Repr::Exit(match payload[0] {
                    0 => ExitStatus::Code(value),
                    1 if (1..=127).contains(&value) => ExitStatus::Signal(value),
                    1 => {
                        return Err(ProtoError::BadValue {
                            field: "exit signal",
                            value,
                        });
                    }
                    other => {
                        return Err(ProtoError::BadValue {
                            field: "exit kind",
                            value: other,
                        });
                    }
                })
            }
        })
    }

    /// Bytes the payload occupies.
    pub fn payload_len(&self) -> usize {
        match self {
            Repr::Request(r) => r.payload_len(),
            Repr::Accepted | Repr::StdinEof => 0,
            Repr::Refused(s) => s.len(),
            Repr::Stdin(b) | Repr::Stdout(b) => b.len(),
            Repr::Resize { .. } => 4,
            Repr::Signal(_) => 1,
            Repr::Exit(_) => 2,
        }
    }

    /// Bytes needed to emit the whole frame.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    /// Writes the frame, header and payload, into a buffer of at least
    /// [`Repr::buffer_len`] bytes. Fails if the payload does not fit the length field, or
    /// for a request that breaks the layout's rules.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        frame: &mut Frame<T>,
    ) -> Result<(), ProtoError> {
        let len = self.payload_len();
        if len > MAX_PAYLOAD_LEN {
            return Err(too_long("pty frame payload", len));
        }
        if let Repr::Request(r) = self {
            r.validate()?;
        }
        check_len(frame.as_inner(), HEADER_LEN + len)?;
        frame.set_frame_type(self.frame_type());
        frame.set_payload_len(len as u16);
        let p = frame.payload_mut();
        match self {
            Repr::Request(r) => r.emit(p),
            Repr::Accepted | Repr::StdinEof => {}
            Repr::Refused(s) => p.copy_from_slice(s.as_bytes()),
            Repr::Stdin(b) | Repr::Stdout(b) => p.copy_from_slice(b),
            Repr::Resize { rows, cols } => {
                put_u16(p, 0, *rows);
                put_u16(p, 2, *cols);
            }
            Repr::Signal(s) => p[0] = s.to_u8(),
            Repr::Exit(ExitStatus::Code(c)) => p.copy_from_slice(&[0, *c]),
            Repr::Exit(ExitStatus::Signal(s)) => p.copy_from_slice(&[1, *s]),
        }
        Ok(())
    }

    /// The frame as a new byte vector.
    pub fn to_vec(&self) -> Result<Vec<u8>, ProtoError> {
        let mut out = vec![0u8; self.buffer_len()];
        self.emit(&mut Frame::new_unchecked(&mut out[..]))?;
        Ok(out)
    }
}

impl fmt::Display for Repr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repr::Request(r) => write!(
                f,
                "pty request {} {}x{} argc={} envc={}",
                r.mode,
                r.rows,
                r.cols,
                r.argv.len(),
                r.env.len()
            ),
            Repr::Accepted => f.write_str("pty accepted"),
            Repr::Refused(why) => write!(f, "pty refused ({why})"),
            Repr::Stdin(b) => write!(f, "pty stdin {} bytes", b.len()),
            Repr::StdinEof => f.write_str("pty stdin-eof"),
            Repr::Stdout(b) => write!(f, "pty stdout {} bytes", b.len()),
            Repr::Resize { rows, cols } => write!(f, "pty resize {rows}x{cols}"),
            Repr::Signal(s) => write!(f, "pty signal {s}"),
            Repr::Exit(st) => write!(f, "pty exit ({st})"),
        }
    }
}

impl<T: AsRef<[u8]>> fmt::Display for Frame<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Repr::parse(&Frame::new_unchecked(self.as_inner())) {
            Ok(repr) => write!(f, "{repr}"),
            Err(e) => write!(f, "pty frame ({e})"),
        }
    }
}

// ---- Moving frames over a byte stream ------------------------------------------------------

/// Reads one frame into `buf` and parses it. `Ok(None)` is a clean end of stream (before the
/// first byte of a frame); an end inside a frame is an error. The type is checked as soon as
/// its byte arrives and the length before any payload is read: a frame longer than
/// `max_payload` is [`PtyError::TooLarge`] and nothing is allocated for it.
pub async fn read_frame<'b, R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &'b mut Vec<u8>,
    max_payload: usize,
) -> Result<Option<Repr<'b>>, PtyError> {
    let mut header = [0u8; HEADER_LEN];
    loop {
        match r.read(&mut header[..1]).await {
            Ok(0) => return Ok(None),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let ty = FrameType::from_u8(header[0]).ok_or(ProtoError::UnknownType(header[0]))?;
    r.read_exact(&mut header[1..])
        .await
        .map_err(eof_is_closed)?;
    let len = frame_len(&header).map_or(0, |n| n - HEADER_LEN);
    if len > max_payload {
        return Err(PtyError::TooLarge {
            frame: ty.name(),
            len,
            max: max_payload,
        });
    }
    buf.clear();
    buf.extend_from_slice(&header);
    buf.resize(HEADER_LEN + len, 0);
    r.read_exact(&mut buf[HEADER_LEN..])
        .await
        .map_err(eof_is_closed)?;
    let frame = Frame::new_checked(&buf[..])?;
    Ok(Some(Repr::parse(&frame)?))
}

/// Emits `repr` and writes it (no flush: callers flush when they wait for an answer).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    repr: &Repr<'_>,
) -> Result<(), PtyError> {
    let bytes = repr.to_vec()?;
    w.write_all(&bytes).await?;
    Ok(())
}

fn eof_is_closed(e: io::Error) -> PtyError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        PtyError::Closed
    } else {
        PtyError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::unhex;

    // Golden examples, mirrored in docs/protocol.md ("pty sessions") and fuzz/seeds/pty_frame.
    /// Exec `echo $((6*7))` on a 24×80 pty with TERM=xterm.
    pub(crate) const REQUEST_EXEC: &str = "01 0025 00 0018 0050 0001 000d 6563686f20242828362a372929 \
                                           0001 0004 5445524d 0005 787465726d";
    /// Shell on a 50×132 pty, no environment.
    pub(crate) const REQUEST_SHELL: &str = "01 0009 01 0032 0084 0000 0000";
    pub(crate) const ACCEPTED: &str = "02 0000";
    /// Refused "not whitelisted: ab".
    pub(crate) const REFUSED: &str = "03 0013 6e6f742077686974656c69737465643a206162";
    /// Stdin "ls\r".
    pub(crate) const STDIN: &str = "04 0003 6c730d";
    pub(crate) const STDIN_EOF: &str = "05 0000";
    /// Stdout "42\n".
    pub(crate) const STDOUT: &str = "06 0003 34320a";
    /// Resize to 40 rows × 100 columns.
    pub(crate) const RESIZE: &str = "07 0004 0028 0064";
    /// Signal SIGINT.
    pub(crate) const SIGNAL: &str = "08 0001 02";
    /// Exit with code 3.
    pub(crate) const EXIT_CODE: &str = "09 0002 00 03";
    /// Killed by signal 9.
    pub(crate) const EXIT_SIGNAL: &str = "09 0002 01 09";

    pub(crate) const GOLDEN: [(&str, &str); 12] = [
        ("request_exec", REQUEST_EXEC),
        ("request_shell", REQUEST_SHELL),
        ("accepted", ACCEPTED),
        ("refused", REFUSED),
        ("stdin", STDIN),
        ("stdin_eof", STDIN_EOF),
        ("stdout", STDOUT),
        ("resize", RESIZE),
        ("signal", SIGNAL),
        ("exit_code", EXIT_CODE),
        ("exit_signal", EXIT_SIGNAL),
        ("exit_code_255", "09 0002 00 ff"),
    ];

    fn round_trip(hex: &str, expect: Repr<'_>, text: &str) {
        let bytes = unhex(hex);
        let frame = Frame::new_checked(&bytes[..]).unwrap();
        assert_eq!(frame_len(&bytes), Some(bytes.len()));
        let repr = Repr::parse(&frame).unwrap();
        assert_eq!(repr, expect);
        assert_eq!(repr.to_string(), text);
        assert_eq!(frame.to_string(), text);
        assert_eq!(repr.buffer_len(), bytes.len());
        assert_eq!(repr.to_vec().unwrap(), bytes);
        assert_eq!(expect.to_vec().unwrap(), bytes);
    }

    #[test]
    fn golden_request_exec() {
        let req = Request::exec(vec!["echo $((6*7))".into()], 24, 80)
            .with_env(vec![("TERM".into(), "xterm".into())]);
        round_trip(
            REQUEST_EXEC,
            Repr::Request(req),
            "pty request exec 24x80 argc=1 envc=1",
        );
    }

    #[test]
    fn golden_request_shell() {
        round_trip(
            REQUEST_SHELL,
            Repr::Request(Request::shell(50, 132)),
            "pty request shell 50x132 argc=0 envc=0",
        );
    }

    #[test]
    fn golden_small_frames() {
        round_trip(ACCEPTED, Repr::Accepted, "pty accepted");
        round_trip(
            REFUSED,
            Repr::Refused("not whitelisted: ab"),
            "pty refused (not whitelisted: ab)",
        );
        round_trip(STDIN, Repr::Stdin(b"ls\r"), "pty stdin 3 bytes");
        round_trip(STDIN_EOF, Repr::StdinEof, "pty stdin-eof");
        round_trip(STDOUT, Repr::Stdout(b"42\n"), "pty stdout 3 bytes");
        round_trip(
            RESIZE,
            Repr::Resize {
                rows: 40,
                cols: 100,
            },
            "pty resize 40x100",
        );
        round_trip(SIGNAL, Repr::Signal(Sig::Int), "pty signal SIGINT");
        round_trip(
            EXIT_CODE,
            Repr::Exit(ExitStatus::Code(3)),
            "pty exit (exit code 3)",
        );
        round_trip(
            EXIT_SIGNAL,
            Repr::Exit(ExitStatus::Signal(9)),
            "pty exit (killed by signal 9)",
        );
        assert_eq!(ExitStatus::Code(3).code(), 3);
        assert_eq!(ExitStatus::Signal(9).code(), 137);
    }

    #[test]
    fn every_golden_round_trips() {
        for (name, hex) in GOLDEN {
            let bytes = unhex(hex);
            let repr = Repr::parse(&Frame::new_checked(&bytes[..]).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(repr.to_vec().unwrap(), bytes, "{name}");
        }
    }

    #[test]
    fn docs_show_the_golden_bytes() {
        let doc = include_str!("../../../docs/protocol.md");
        let section = &doc[doc.find("## 10. pty sessions").expect("pty section")..];
        let squash = |s: &str| s.split_ascii_whitespace().collect::<String>();
        let lines: Vec<String> = section.lines().map(squash).collect();
        for (name, hex) in GOLDEN.iter().take(11) {
            assert!(
                lines.contains(&squash(hex)),
                "{name} missing from docs/protocol.md"
            );
        }
    }

    #[test]
    fn type_and_signal_codes() {
        for v in 0..=255u8 {
            if let Some(t) = FrameType::from_u8(v) {
                assert_eq!(t.to_u8(), v);
            }
            if let Some(s) = Sig::from_u8(v) {
                assert_eq!(s.to_u8(), v);
            }
        }
    }

    #[test]
    fn bad_frames_are_errors() {
        let parse = |hex: &str| {
            let bytes = unhex(hex);
            Frame::new_checked(&bytes[..]).and_then(|f| Repr::parse(&f).map(|_| ()))
        };
        assert_eq!(
            parse("06 00"),
            Err(WireError::Truncated { need: 3, have: 2 }.into())
        );
        assert_eq!(
            parse("06 0005 3432"),
            Err(WireError::Truncated { need: 8, have: 5 }.into())
        );
        assert_eq!(parse("00 0000"), Err(ProtoError::UnknownType(0)));
        assert_eq!(parse("ff 0000"), Err(ProtoError::UnknownType(0xff)));
        assert_eq!(
            parse("02 0001 00"),
            Err(ProtoError::BadLength {
                frame: "accepted",
                len: 1
            })
        );
        assert_eq!(
            parse("07 0003 000000"),
            Err(ProtoError::BadLength {
                frame: "resize",
                len: 3
            })
        );
        assert_eq!(
            parse("08 0001 05"),
            Err(ProtoError::BadValue {
                field: "signal",
                value: 5
            })
        );
        assert_eq!(
            parse("09 0002 02 00"),
            Err(ProtoError::BadValue {
                field: "exit kind",
                value: 2
            })
        );
        assert_eq!(
            parse("09 0002 01 00"),
            Err(ProtoError::BadValue {
                field: "exit signal",
                value: 0
            })
        );
        assert_eq!(
            parse("03 0002 c328"),
            Err(ProtoError::NotUtf8("refusal reason"))
        );
        // Requests: bad mode, exec without argv, shell with argv, NUL, '=' in a name,
        // trailing byte, truncated string.
        assert_eq!(
            parse("01 0009 02 0018 0050 0000 0000"),
            Err(ProtoError::BadValue {
                field: "request mode",
                value: 2
            })
        );
        assert_eq!(
            parse("01 0009 00 0018 0050 0000 0000"),
            Err(ProtoError::BadRequest("exec without a command"))
        );
        assert_eq!(
            parse("01 000c 01 0018 0050 0001 0001 61 0000"),
            Err(ProtoError::BadRequest("shell request with arguments"))
        );
        assert_eq!(
            parse("01 000c 00 0018 0050 0001 0001 00 0000"),
            Err(ProtoError::Nul("argument"))
        );
        assert_eq!(
            parse("01 0010 01 0018 0050 0000 0001 0002 613d 0001 62"),
            Err(ProtoError::BadRequest(
                "environment name empty or holding '='"
            ))
        );
        assert_eq!(
            parse("01 000a 01 0018 0050 0000 0000 00"),
            Err(ProtoError::BadRequest("bytes after the environment"))
        );
        assert_eq!(
            parse("01 000a 00 0018 0050 0001 0005 61"),
            Err(WireError::Truncated { need: 14, have: 10 }.into())
        );
        assert_eq!(
            parse("01 000c 00 0018 0050 0001 0001 ff 0000"),
            Err(ProtoError::NotUtf8("argument"))
        );
    }

    #[test]
    fn emit_limits() {
        let big = vec![0u8; MAX_PAYLOAD_LEN + 1];
        assert_eq!(
            Repr::Stdout(&big).to_vec(),
            Err(ProtoError::Wire(WireError::TooLong {
                field: "pty frame payload",
                len: MAX_PAYLOAD_LEN + 1,
                max: MAX_PAYLOAD_LEN
            }))
        );
        assert!(Repr::Stdout(&big[1..]).to_vec().is_ok());
        assert_eq!(
            Repr::Request(Request::exec(vec![], 1, 1)).to_vec(),
            Err(ProtoError::BadRequest("exec without a command"))
        );
        let mut small = [0u8; 4];
        assert_eq!(
            Repr::Stdout(b"abcd").emit(&mut Frame::new_unchecked(&mut small[..])),
            Err(WireError::Truncated { need: 7, have: 4 }.into())
        );
    }

    #[test]
    fn frames_follow_each_other_on_a_stream() {
        let mut stream = unhex(STDIN);
        stream.extend(unhex(RESIZE));
        let first = Frame::new_checked(&stream[..]).unwrap();
        let n = first.total_len();
        let second = Frame::new_checked(&stream[n..]).unwrap();
        assert_eq!(second.frame_type(), Some(FrameType::Resize));
        assert_eq!(n + second.total_len(), stream.len());
    }

    #[test]
    fn reading_frames_from_a_stream() {
        use futures_lite::future::block_on;
        use futures_lite::io::Cursor;

        let mut bytes = unhex(STDOUT);
        bytes.extend(unhex(EXIT_CODE));
        let mut r = Cursor::new(bytes);
        let mut buf = Vec::new();
        block_on(async {
            assert_eq!(
                read_frame(&mut r, &mut buf, 16).await.unwrap(),
                Some(Repr::Stdout(b"42\n"))
            );
            assert_eq!(
                read_frame(&mut r, &mut buf, 16).await.unwrap(),
                Some(Repr::Exit(ExitStatus::Code(3)))
            );
            assert_eq!(read_frame(&mut r, &mut buf, 16).await.unwrap(), None);
        });
        // Too large: refused from the header alone.
        let mut r = Cursor::new(unhex(STDOUT));
        let err = block_on(read_frame(&mut r, &mut buf, 2)).unwrap_err();
        assert!(matches!(
            err,
            PtyError::TooLarge {
                frame: "stdout",
                len: 3,
                max: 2
            }
        ));
        // Cut inside a frame: closed; unknown type: error before reading on.
        let mut r = Cursor::new(unhex("06 0003 34"));
        assert!(matches!(
            block_on(read_frame(&mut r, &mut buf, 16)),
            Err(PtyError::Closed)
        ));
        let mut r = Cursor::new(unhex("7f 0003 343434"));
        assert!(matches!(
            block_on(read_frame(&mut r, &mut buf, 16)),
            Err(PtyError::Proto(ProtoError::UnknownType(0x7f)))
        ));
    }
}
