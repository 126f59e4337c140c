//! The server side of WebSocket (RFC 6455), for the hypervisor's browser terminal (feature
//! `hv-term`): the opening handshake on top of [`super::server`], a sans-IO frame codec, and
//! an async reader and writer over the upgraded connection.
//!
//! - Handshake: a handler calls [`check_upgrade`] on the request (GET, `Upgrade: websocket`,
//!   `Connection: upgrade`, `Sec-WebSocket-Version: 13`, a 16-byte `Sec-WebSocket-Key`) and
//!   answers [`upgrade_response`]; the server then hands the connection ([`Upgraded`]) to the
//!   closure. No subprotocol and no extension is ever agreed (so no RSV bit is allowed).
//!   `check_upgrade` does not look at `Origin`: browsers send WebSockets cross-site without
//!   asking, so the surface must refuse foreign origins itself (`super::guard`), and a
//!   browser cannot put a bearer token on a WebSocket request (use a cookie or the query).
//! - [`Decoder`]: bytes in ([`Decoder::feed`]), [`Event`]s out ([`Decoder::next_event`]). It
//!   reassembles fragmented messages, passes control frames that arrive between fragments,
//!   unmasks, and checks every rule a server must (client frames masked, no RSV bits, known
//!   opcodes, control frames ≤ 125 bytes and unfragmented, continuations only inside a
//!   message, UTF-8 text, close codes). A message over `max_message` is refused from its frame
//!   header, before any of its payload is held. The first error is final (sticky) and carries
//!   the close code to send ([`ProtocolError::code`]).
//! - [`encode`], [`encode_close`]: server frames (never masked, always final).
//! - [`WsReader`] and [`WsWriter`]: the two directions, usable on the two halves of
//!   `futures_lite::io::split(upgraded)`, so a bridge can read the browser in one task and
//!   write to it from another.
//!
//! Who does what after the handshake: **the caller answers**. `WsReader` yields `Ping` and
//! `Close` like any event; the caller passes them to [`WsWriter::reply`] (a `Pong` with the
//! same payload; the closing handshake's `Close` echoing the code, then the write side shut).
//! On a protocol error `read_event` returns `Err` (kind `InvalidData`, the error a
//! [`ProtocolError`], see [`ProtocolError::from_io`]); the caller sends the close frame with
//! [`WsWriter::fail`], which also shuts the write side. Keepalive pings and idle timeouts are
//! the caller's too (the server's HTTP timeouts no longer apply after the `101`).
//!
//! Memory: a reader holds its 4 KiB read buffer ([`READ_CHUNK`]), at most `max_message`
//! bytes of the message being assembled, 125 bytes of a control frame and the ≤ 13 bytes of
//! an unfinished frame header; payload bytes leave the input buffer as soon as they arrive.
//! A writer holds one encoded frame at a time.
//!
//! [`Upgraded`]: super::server::Upgraded

use std::fmt;
use std::future::Future;
use std::io;
use std::time::Duration;

use async_io::Timer;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::server::{Request, Response, UpgradeFn};
use crate::crypto::{b64, sha1};

/// The GUID appended to the client's key for the accept value (RFC 6455 §1.3).
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The one protocol version spoken (`Sec-WebSocket-Version`).
pub const VERSION: &str = "13";
/// The largest message (the payload of all its fragments) a reader takes unless told
/// otherwise: keystrokes and pastes into a terminal fit many times over.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;
/// The largest control-frame payload (RFC 6455 §5.5).
pub const MAX_CONTROL: usize = 125;
/// The longest frame header: 2 bytes, a 64-bit length, a 4-byte mask.
pub const MAX_HEADER: usize = 14;
/// How many bytes a [`WsReader`] reads from the connection at a time.
pub const READ_CHUNK: usize = 4096;
/// How long a [`WsWriter`] waits for one frame to be taken before it gives up on the peer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Close code: normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code: the endpoint is going away (server shutting down, page left).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: protocol error.
pub const CLOSE_PROTOCOL: u16 = 1002;
/// Close code: data of a kind the endpoint does not take.
pub const CLOSE_UNSUPPORTED: u16 = 1003;
/// Close code: the payload is inconsistent with its type (text that is not UTF-8).
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// Close code: a message breaks the endpoint's policy.
pub const CLOSE_POLICY: u16 = 1008;
/// Close code: a message is too big to process.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code: the server met an unexpected condition.
pub const CLOSE_INTERNAL: u16 = 1011;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xa;

// --- Handshake (RFC 6455 §4.2) ---------------------------------------------------------------

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`: base64 (standard,
/// padded) of SHA-1(key ‖ [`GUID`]), the key taken as sent.
pub fn accept_key(sec_websocket_key: &str) -> String {
    b64::encode_std_padded(&sha1::sha1(&[
        sec_websocket_key.as_bytes(),
        GUID.as_bytes(),
    ]))
}

/// True when a header named `name` (lowercase) lists `token` (case-insensitive) among its
/// comma-separated values, on any of its lines.
fn lists_token(req: &Request, name: &str, token: &str) -> bool {
    req.headers
        .iter()
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks that `req` is a WebSocket opening handshake this server accepts; the value for
/// `Sec-WebSocket-Accept` if so, else the answer to send: 405 (with `Allow: GET`) for another
/// method, 400 without `Upgrade: websocket`, without `upgrade` in `Connection`, or without a
/// key of 16 bytes in base64, and 426 (with `Sec-WebSocket-Version: 13`) for a missing or
/// other version.
pub fn check_upgrade(req: &Request) -> Result<String, Response> {
    if req.method != "GET" {
        return Err(
            Response::error(405, "a WebSocket handshake is a GET").with_header("Allow", "GET")
        );
    }
    if !lists_token(req, "upgrade", "websocket") {
        return Err(Response::error(
            400,
            "not a WebSocket upgrade (`Upgrade: websocket`)",
        ));
    }
    if !lists_token(req, "connection", "upgrade") {
        return Err(Response::error(
            400,
            "a WebSocket handshake needs `Connection: Upgrade`",
        ));
    }
    if req.header("sec-websocket-version").map(str::trim) != Some(VERSION) {
        return Err(Response::error(426, "only WebSocket version 13 is spoken")
            .with_header("Sec-WebSocket-Version", VERSION));
    }
    let key = req.header("sec-websocket-key").map_or("", str::trim);
    match b64::decode_std_padded(key) {
        Some(nonce) if nonce.len() == 16 => Ok(accept_key(key)),
        _ => Err(Response::error(
            400,
            "Sec-WebSocket-Key must be 16 bytes in base64",
        )),
    }
}

/// The `101 Switching Protocols` answer to an accepted handshake (`accept` from
/// [`check_upgrade`]): `Connection: Upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Accept`;
/// then `f` gets the connection.
pub fn upgrade_response(accept: &str, f: UpgradeFn) -> Response {
    Response::switching("websocket", f).with_header("Sec-WebSocket-Accept", accept)
}

// --- Events and errors -----------------------------------------------------------------------

/// What a client sent: a whole message or a control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A text message (all its fragments), valid UTF-8.
    Text(String),
    /// A binary message (all its fragments).
    Binary(Vec<u8>),
    /// A ping; answer it with a pong of the same payload ([`WsWriter::reply`]).
    Ping(Vec<u8>),
    /// A pong (unsolicited ones are allowed).
    Pong(Vec<u8>),
    /// The closing handshake: the code (none when the frame was empty) and the reason. Nothing
    /// after it is read; echo it ([`WsWriter::reply`]).
    Close(Option<u16>, String),
}

/// A rule of RFC 6455 the client broke; the connection must be closed with [`Self::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// A client frame without a mask (§5.1).
    Unmasked,
    /// RSV1–3 set (these bits, shifted down: RSV1 = 4) with no extension agreed (§5.2).
    ReservedBits(u8),
    /// An opcode RFC 6455 reserves (3–7, 0xb–0xf).
    UnknownOpcode(u8),
    /// A control frame with more than 125 bytes of payload (§5.5).
    ControlTooLong,
    /// A control frame without FIN (§5.5).
    FragmentedControl,
    /// A continuation frame with no message under way (§5.4).
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is unfinished (§5.4).
    UnfinishedMessage,
    /// A close frame with a 1-byte payload (§5.5.1).
    BadCloseLength,
    /// A close code that may not be sent (§7.4: below 1000, 1004–1006, 1015–2999, 5000+).
    BadCloseCode(u16),
    /// Text (a message or a close reason) that is not UTF-8 (§8.1).
    InvalidUtf8,
    /// A message over the reader's limit, by its declared frame length (a 64-bit length with
    /// its top bit set included) or by its fragments together.
    TooBig {
        /// The limit (`max_message`).
        max: usize,
    },
}

impl ProtocolError {
    /// The close code to send (§7.4.1): 1007 for bad UTF-8, 1009 for a message too big, 1002
    /// for the rest.
    pub fn code(&self) -> u16 {
        match self {
            ProtocolError::InvalidUtf8 => CLOSE_INVALID_DATA,
            ProtocolError::TooBig { .. } => CLOSE_TOO_BIG,
            _ => CLOSE_PROTOCOL,
        }
    }

    /// A short reason for the close frame.
    pub fn reason(&self) -> &'static str {
        match self {
            ProtocolError::Unmasked => "unmasked client frame",
            ProtocolError::ReservedBits(_) => "reserved bits set",
            ProtocolError::UnknownOpcode(_) => "unknown opcode",
            ProtocolError::ControlTooLong => "control frame over 125 bytes",
            ProtocolError::FragmentedControl => "fragmented control frame",
            ProtocolError::UnexpectedContinuation => "continuation without a message",
            ProtocolError::UnfinishedMessage => "new message inside a fragmented one",
            ProtocolError::BadCloseLength => "close payload of 1 byte",
            ProtocolError::BadCloseCode(_) => "invalid close code",
            ProtocolError::InvalidUtf8 => "invalid UTF-8",
            ProtocolError::TooBig { .. } => "message too big",
        }
    }

    /// The protocol error inside an error of [`WsReader::read_event`], if that is what it is.
    pub fn from_io(e: &io::Error) -> Option<ProtocolError> {
        e.get_ref()?.downcast_ref::<ProtocolError>().copied()
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedBits(b) => write!(f, "reserved bits set ({b:#x})"),
            ProtocolError::UnknownOpcode(op) => write!(f, "unknown opcode {op:#x}"),
            ProtocolError::BadCloseCode(c) => write!(f, "invalid close code {c}"),
            ProtocolError::TooBig { max } => write!(f, "message over {max} bytes"),
            e => f.write_str(e.reason()),
        }?;
        write!(f, " (close code {})", self.code())
    }
}

impl std::error::Error for ProtocolError {}

impl From<ProtocolError> for io::Error {
    fn from(e: ProtocolError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Whether a peer may send close code `code` (RFC 6455 §7.4.1 and the IANA registry:
/// 1012–1014 were registered later; 3000–4999 are for libraries and applications).
fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

// --- Decoder ---------------------------------------------------------------------------------

/// A frame header that passed every check.
#[derive(Debug, Clone, Copy)]
struct Head {
    fin: bool,
    opcode: u8,
    /// Payload length (≤ the room left in the message, or ≤ 125 for a control frame).
    len: usize,
    mask: [u8; 4],
}

impl Head {
    fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Where the decoder is in the byte stream.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Waiting for (the rest of) a frame header.
    Head,
    /// Inside the payload of `head`; `done` bytes of it unmasked so far.
    Payload { head: Head, done: usize },
}

/// A text or binary message being assembled from its fragments.
#[derive(Debug)]
struct Message {
    text: bool,
    data: Vec<u8>,
    /// For text: the length of the prefix of `data` known to be valid UTF-8 (an incomplete
    /// character may follow at a fragment's end).
    utf8_ok: usize,
}

/// The sans-IO frame decoder for client-to-server frames (see the module doc).
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// Bytes fed and not decoded yet start at `pos`.
    input: Vec<u8>,
    pos: usize,
    state: State,
    message: Option<Message>,
    /// The payload of the control frame being read.
    control: Vec<u8>,
    /// A close frame was decoded: nothing after it is read.
    closed: bool,
    /// The first error, returned for good.
    failed: Option<ProtocolError>,
}

impl Decoder {
    /// A decoder taking messages of at most `max_message` bytes (all fragments together).
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            max_message,
            input: Vec::new(),
            pos: 0,
            state: State::Head,
            message: None,
            control: Vec::new(),
            closed: false,
            failed: None,
        }
    }

    /// The message limit.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Appends bytes read from the connection. After a close frame or an error they are
    /// dropped. Call [`Self::next_event`] until it returns `Ok(None)` before feeding more, so
    /// that the input buffer holds no more than one feed.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.closed || self.failed.is_some() {
            return;
        }
        if self.pos > 0 {
            let pos = self.pos.min(self.input.len());
            self.input.drain(..pos);
            self.pos = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// The next event, `Ok(None)` when more bytes are needed (or after a close frame), or the
    /// protocol error, which every later call returns again.
    pub fn next_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.closed {
            return Ok(None);
        }
        match self.step() {
            Ok(ev) => {
                if self.closed {
                    self.release();
                }
                Ok(ev)
            }
            Err(e) => {
                self.failed = Some(e);
                self.release();
                Err(e)
            }
        }
    }

    /// True once a close frame was decoded.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True between frames with no message under way and nothing buffered: an end of the
    /// stream here loses nothing.
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Head) && self.message.is_none() && self.pending() == 0
    }

    /// Bytes held: undecoded input plus the message and control frame being assembled.
    pub fn buffered(&self) -> usize {
        self.pending() + self.message.as_ref().map_or(0, |m| m.data.len()) + self.control.len()
    }

    fn pending(&self) -> usize {
        self.input.len().saturating_sub(self.pos)
    }

    /// Frees every buffer (after a close frame or an error).
    fn release(&mut self) {
        self.input = Vec::new();
        self.pos = 0;
        self.message = None;
        self.control = Vec::new();
        self.state = State::Head;
    }

    fn step(&mut self) -> Result<Option<Event>, ProtocolError> {
        loop {
            let input = self.input.get(self.pos..).unwrap_or(&[]);
            match &mut self.state {
                State::Head => {
                    let Some((head, used)) =
                        parse_head(input, self.message.as_ref(), self.max_message)?
                    else {
                        return Ok(None);
                    };
                    self.pos += used;
                    if head.is_control() {
                        self.control.clear();
                    } else if head.opcode != OP_CONTINUATION {
                        self.message = Some(Message {
                            text: head.opcode == OP_TEXT,
                            data: Vec::new(),
                            utf8_ok: 0,
                        });
                    }
                    self.state = State::Payload { head, done: 0 };
                }
                State::Payload { head, done } => {
                    let take = head.len.saturating_sub(*done).min(input.len());
                    let src = input.get(..take).unwrap_or(&[]);
                    let dst = if head.is_control() {
                        &mut self.control
                    } else {
                        match self.message.as_mut() {
                            Some(m) => &mut m.data,
                            None => return Err(ProtocolError::UnexpectedContinuation),
                        }
                    };
                    let (mask, start) = (head.mask, *done);
                    dst.extend(
                        src.iter()
                            .enumerate()
                            .map(|(i, b)| b ^ mask[(start + i) % 4]),
                    );
                    *done += take;
                    self.pos += take;
                    if *done < head.len {
                        return Ok(None);
                    }
                    let head = *head;
                    self.state = State::Head;
                    if let Some(ev) = self.finish(head)? {
                        return Ok(Some(ev));
                    }
                }
            }
        }
    }

    /// A frame's payload is complete: its event, if it ends something.
    fn finish(&mut self, head: Head) -> Result<Option<Event>, ProtocolError> {
        match head.opcode {
            OP_CLOSE => {
                let ev = parse_close(&self.control)?;
                self.closed = true;
                Ok(Some(ev))
            }
            OP_PING => Ok(Some(Event::Ping(std::mem::take(&mut self.control)))),
            OP_PONG => Ok(Some(Event::Pong(std::mem::take(&mut self.control)))),
            _ => {
                let Some(m) = self.message.as_mut() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                if m.text {
                    check_utf8(m, head.fin)?;
                }
                if !head.fin {
                    return Ok(None);
                }
                let Some(m) = self.message.take() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                Ok(Some(if m.text {
                    Event::Text(String::from_utf8(m.data).map_err(|_| ProtocolError::InvalidUtf8)?)
                } else {
                    Event::Binary(m.data)
                }))
            }
        }
    }
}

/// Big-endian unsigned integer of up to 8 bytes.
fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |n, &b| n << 8 | u64::from(b))
}

/// Parses and checks the frame header at the start of `b`: the header and its length, or
/// `None` when more bytes are needed. Each check runs as soon as its bytes are there, so a
/// bad frame fails on its first byte or two, and a message too big before its payload.
fn parse_head(
    b: &[u8],
    message: Option<&Message>,
    max_message: usize,
) -> Result<Option<(Head, usize)>, ProtocolError> {
    let Some(&b0) = b.first() else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 {
        return Err(ProtocolError::ReservedBits((b0 & 0x70) >> 4));
    }
    let opcode = b0 & 0x0f;
    let control = match opcode {
        OP_CONTINUATION | OP_TEXT | OP_BINARY => false,
        OP_CLOSE | OP_PING | OP_PONG => true,
        _ => return Err(ProtocolError::UnknownOpcode(opcode)),
    };
    if control && !fin {
        return Err(ProtocolError::FragmentedControl);
    }
    match (opcode, message.is_some()) {
        (OP_CONTINUATION, false) => return Err(ProtocolError::UnexpectedContinuation),
        (OP_TEXT | OP_BINARY, true) => return Err(ProtocolError::UnfinishedMessage),
        _ => {}
    }
    let Some(&b1) = b.get(1) else {
        return Ok(None);
    };
    if b1 & 0x80 == 0 {
        return Err(ProtocolError::Unmasked);
    }
    let len7 = b1 & 0x7f;
    if control && usize::from(len7) > MAX_CONTROL {
        return Err(ProtocolError::ControlTooLong);
    }
    // The extended length (not required to be minimal; a 64-bit one with its top bit set,
    // which §5.2 forbids, is simply over any limit).
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let len = if ext == 0 {
        u64::from(len7)
    } else {
        match b.get(2..2 + ext) {
            Some(x) => be(x),
            None => return Ok(None),
        }
    };
    let room = if control {
        MAX_CONTROL
    } else {
        max_message.saturating_sub(message.map_or(0, |m| m.data.len()))
    };
    let too_big = ProtocolError::TooBig { max: max_message };
    if len >> 63 != 0 {
        return Err(too_big);
    }
    let len = usize::try_from(len).map_err(|_| too_big)?;
    if len > room {
        return Err(too_big);
    }
    let at = 2 + ext;
    let Some(m) = b.get(at..at + 4) else {
        return Ok(None);
    };
    let mask = [m[0], m[1], m[2], m[3]];
    let head = Head {
        fin,
        opcode,
        len,
        mask,
    };
    Ok(Some((head, at + 4)))
}

/// Checks the text assembled so far: invalid bytes fail at once; an incomplete character is
/// allowed at the end of a fragment, not at the end of the message.
fn check_utf8(m: &mut Message, fin: bool) -> Result<(), ProtocolError> {
    let rest = m.data.get(m.utf8_ok..).unwrap_or(&[]);
    match std::str::from_utf8(rest) {
        Ok(_) => m.utf8_ok = m.data.len(),
        Err(e) if e.error_len().is_none() && !fin => m.utf8_ok += e.valid_up_to(),
        Err(_) => return Err(ProtocolError::InvalidUtf8),
    }
    Ok(())
}

/// A close frame's payload: empty, or a code and a UTF-8 reason (§5.5.1).
fn parse_close(p: &[u8]) -> Result<Event, ProtocolError> {
    match p {
        [] => Ok(Event::Close(None, String::new())),
        [_] => Err(ProtocolError::BadCloseLength),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close_code_allowed(code) {
                return Err(ProtocolError::BadCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Event::Close(Some(code), reason.to_string()))
        }
    }
}

// --- Encoder ---------------------------------------------------------------------------------

/// The kinds of frame a server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// A text message (the payload must be UTF-8).
    Text,
    /// A binary message.
    Binary,
    /// A close frame (payload: code ‖ reason; see [`encode_close`]).
    Close,
    /// A ping.
    Ping,
    /// A pong.
    Pong,
}

impl Opcode {
    /// The opcode's 4-bit value.
    pub fn value(self) -> u8 {
        match self {
            Opcode::Text => OP_TEXT,
            Opcode::Binary => OP_BINARY,
            Opcode::Close => OP_CLOSE,
            Opcode::Ping => OP_PING,
            Opcode::Pong => OP_PONG,
        }
    }

    /// Close, ping and pong.
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// The header of an unmasked final frame of `len` payload bytes.
fn put_head(opcode: u8, len: usize, out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match len {
        0..=125 => out.push(len as u8),
        126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// Appends one server frame to `out`: final, unmasked, the shortest length encoding. A
/// control frame's payload is cut to 125 bytes (the most it may carry).
pub fn encode(opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) {
    let payload = if opcode.is_control() {
        payload.get(..MAX_CONTROL).unwrap_or(payload)
    } else {
        payload
    };
    put_head(opcode.value(), payload.len(), out);
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason` (cut at a character boundary to the 123
/// bytes that fit). `code` should be one a peer may send (1000–1003, 1007–1014, 3000–4999).
pub fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut cut = reason.len().min(MAX_CONTROL - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = reason.get(..cut).unwrap_or("");
    put_head(OP_CLOSE, 2 + reason.len(), out);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
}

// --- Async reader and writer -----------------------------------------------------------------

/// The client-to-server direction: frames read from `R` (the upgraded connection or its read
/// half) and decoded into events.
#[derive(Debug)]
pub struct WsReader<R> {
    inner: R,
    decoder: Decoder,
    chunk: Vec<u8>,
    eof: bool,
}

impl<R: AsyncRead + Unpin> WsReader<R> {
    /// A reader of messages up to `max_message` bytes ([`DEFAULT_MAX_MESSAGE`] is the usual).
    pub fn new(inner: R, max_message: usize) -> WsReader<R> {
        WsReader {
            inner,
            decoder: Decoder::new(max_message),
            chunk: vec![0; READ_CHUNK],
            eof: false,
        }
    }

    /// The next event. `Ok(None)` when the stream is over: after a [`Event::Close`], or
    /// when the peer closed the connection between frames (an abnormal closure, 1006, but
    /// nothing is lost). `Err` for a protocol error (kind `InvalidData`, see
    /// [`ProtocolError::from_io`]; every later call returns it again), a connection that
    /// ends inside a frame (`UnexpectedEof`), or a read error.
    ///
    /// Cancel-safe: the only wait is the read of the connection, and what was read is kept
    /// in the reader, so it may lose a race (`futures_lite::future::or`) without losing bytes.
    pub async fn read_event(&mut self) -> io::Result<Option<Event>> {
        loop {
            if let Some(ev) = self.decoder.next_event()? {
                return Ok(Some(ev));
            }
            if self.decoder.is_closed() || self.eof {
                return Ok(None);
            }
            let n = self.inner.read(&mut self.chunk).await?;
            let Some(got) = self.chunk.get(..n) else {
                return Err(io::Error::other(
                    "read reported more bytes than it was given",
                ));
            };
            if n == 0 {
                self.eof = true;
                if self.decoder.at_boundary() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection ended inside a WebSocket frame",
                ));
            }
            self.decoder.feed(got);
        }
    }

    /// The decoder (its limit, what it holds).
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The connection.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// The server-to-client direction: frames written to `W` (the upgraded connection or its
/// write half), each within a write timeout ([`WRITE_TIMEOUT`] unless set), so a browser that
/// stops reading cannot hold the writer for good. After a close frame, or after a write
/// failed or timed out (a frame may be half written), every send fails with `BrokenPipe`.
#[derive(Debug)]
pub struct WsWriter<W> {
    inner: W,
    buf: Vec<u8>,
    write_timeout: Duration,
    closed: bool,
}

/// Runs `fut`, or fails with `TimedOut` after `d`.
async fn within<T>(d: Duration, fut: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    futures_lite::future::or(fut, async {
        Timer::after(d).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the WebSocket peer took no data within the write timeout",
        ))
    })
    .await
}

impl<W: AsyncWrite + Unpin> WsWriter<W> {
    /// A writer on `inner`.
    pub fn new(inner: W) -> WsWriter<W> {
        WsWriter {
            inner,
            buf: Vec::new(),
            write_timeout: WRITE_TIMEOUT,
            closed: false,
        }
    }

    /// Sets the time one frame may take to be written.
    pub fn with_write_timeout(mut self, d: Duration) -> WsWriter<W> {
        self.write_timeout = d;
        self
    }

    /// True once a close frame was sent or a write failed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Sends one frame (see [`encode`]) and flushes it. A close frame sent this way ends the
    /// writer without shutting the connection; [`Self::close`] does both.
    pub async fn send(&mut self, opcode: Opcode, payload: &[u8]) -> io::Result<()> {
        if self.closed {
            return Err(closed_error());
        }
        self.buf.clear();
        encode(opcode, payload, &mut self.buf);
        let r = self.write_buf().await;
        if opcode == Opcode::Close {
            self.closed = true;
        }
        r
    }

    /// A text message.
    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send(Opcode::Text, text.as_bytes()).await
    }

    /// A binary message.
    pub async fn send_binary(&mut self, data: &[u8]) -> io::Result<()> {
        self.send(Opcode::Binary, data).await
    }

    /// The answer to a control event: a pong for a ping (none once closed), the echo of a
    /// close ([`Self::close`] with its code, 1000 when it had none); nothing for the rest.
    pub async fn reply(&mut self, event: &Event) -> io::Result<()> {
        match event {
            Event::Ping(p) if !self.closed => self.send(Opcode::Pong, p).await,
            Event::Close(code, _) => self.close(code.unwrap_or(CLOSE_NORMAL), "").await,
            _ => Ok(()),
        }
    }

    /// Sends a close frame with `code` and `reason` (see [`encode_close`]) and shuts the
    /// write side of the connection. Once closed, it does nothing.
    pub async fn close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        self.buf.clear();
        encode_close(code, reason, &mut self.buf);
        let sent = self.write_buf().await;
        self.closed = true;
        let shut = within(self.write_timeout, self.inner.close()).await;
        sent.and(shut)
    }

    /// Closes after a protocol error of the peer: the close frame with the error's code.
    pub async fn fail(&mut self, err: &ProtocolError) -> io::Result<()> {
        self.close(err.code(), err.reason()).await
    }

    /// The connection.
    pub fn into_inner(self) -> W {
        self.inner
    }

    async fn write_buf(&mut self) -> io::Result<()> {
        let (inner, buf) = (&mut self.inner, &self.buf);
        let r = within(self.write_timeout, async {
            inner.write_all(buf).await?;
            inner.flush().await
        })
        .await;
        if r.is_err() {
            self.closed = true;
        }
        // Do not keep the buffer of one large frame around.
        if self.buf.capacity() > DEFAULT_MAX_MESSAGE + MAX_HEADER {
            self.buf = Vec::new();
        }
        r
    }
}

fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the WebSocket is closed")
}

#[cfg(test)]
#[path = "ws_tests.rs"]
mod tests;
