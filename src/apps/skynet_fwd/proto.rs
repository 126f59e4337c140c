//! Sans-IO: the forwarding header on an overlay stream to port 57 (docs/protocol.md
//! "Skynet port forwarding"). The client opens with a request, the server answers; after an
//! `Ok` answer the stream carries the TCP bytes both ways, after any other it is closed.
//!
//! - request, 3 bytes: `version (1) | port (u16 big-endian, 1-65535)`;
//! - response, 2 + n bytes: `status (u8) | n (u8) | reason (n bytes of UTF-8, n ≤ 200)`,
//!   `n = 0` for `Ok`.

use core::fmt;

/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// The request's length.
pub const REQUEST_LEN: usize = 3;
/// The longest reason in a response.
pub const MAX_REASON: usize = 200;

/// The server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Forwarding: TCP bytes follow.
    Ok = 0,
    /// Nothing is exposed on that port here.
    NotExposed = 1,
    /// The port is exposed, but not to this PK (whitelist).
    NotAllowed = 2,
    /// The port is exposed but nothing answered on it locally.
    ConnectFailed = 3,
    /// A request this server does not understand (version).
    BadRequest = 4,
    /// The server is at its connection limit.
    Busy = 5,
}

impl Status {
    /// From its byte.
    pub fn from_u8(b: u8) -> Option<Status> {
        Some(match b {
            0 => Status::Ok,
            1 => Status::NotExposed,
            2 => Status::NotAllowed,
            3 => Status::ConnectFailed,
            4 => Status::BadRequest,
            5 => Status::Busy,
            _ => return None,
        })
    }

    /// A word for logs and status lines.
    pub fn text(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NotExposed => "port not exposed",
            Status::NotAllowed => "not allowed",
            Status::ConnectFailed => "local connect failed",
            Status::BadRequest => "bad request",
            Status::Busy => "busy",
        }
    }
}

/// A header that is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// A request of another version.
    Version(u8),
    /// Port 0.
    PortZero,
    /// A status byte not in [`Status`].
    Status(u8),
    /// A reason longer than [`MAX_REASON`], or not UTF-8, or on an `Ok`.
    Reason,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::Version(v) => write!(
                f,
                "forwarding request version {v} (this side speaks {VERSION})"
            ),
            ProtoError::PortZero => f.write_str("forwarding request for port 0"),
            ProtoError::Status(s) => write!(f, "unknown forwarding status {s}"),
            ProtoError::Reason => f.write_str("malformed forwarding reason"),
        }
    }
}

/// A parse result: `Ok(None)` means more bytes are needed; `Ok(Some((v, n)))` consumed `n`.
pub type Parsed<T> = Result<Option<(T, usize)>, ProtoError>;

/// The request for `port`.
pub fn encode_request(port: u16) -> [u8; REQUEST_LEN] {
    let p = port.to_be_bytes();
    [VERSION, p[0], p[1]]
}

/// Parses a request: the port.
pub fn parse_request(b: &[u8]) -> Parsed<u16> {
    match b.first() {
        None => return Ok(None),
        Some(&v) if v != VERSION => return Err(ProtoError::Version(v)),
        _ => {}
    }
    if b.len() < REQUEST_LEN {
        return Ok(None);
    }
    match u16::from_be_bytes([b[1], b[2]]) {
        0 => Err(ProtoError::PortZero),
        p => Ok(Some((p, REQUEST_LEN))),
    }
}

/// Appends a response (the reason cut to [`MAX_REASON`] bytes at a character boundary;
/// none for `Ok`).
pub fn encode_response(status: Status, reason: &str, out: &mut Vec<u8>) {
    let reason = if status == Status::Ok { "" } else { reason };
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out.push(status as u8);
    out.push(end as u8);
    out.extend_from_slice(&reason.as_bytes()[..end]);
}

/// Parses a response: the status and its reason.
pub fn parse_response(b: &[u8]) -> Parsed<(Status, String)> {
    let Some(&s) = b.first() else {
        return Ok(None);
    };
    let status = Status::from_u8(s).ok_or(ProtoError::Status(s))?;
    let Some(&n) = b.get(1) else {
        return Ok(None);
    };
    let n = n as usize;
    if n > MAX_REASON || (status == Status::Ok && n != 0) {
        return Err(ProtoError::Reason);
    }
    if b.len() < 2 + n {
        return Ok(None);
    }
    let reason = core::str::from_utf8(&b[2..2 + n]).map_err(|_| ProtoError::Reason)?;
    Ok(Some(((status, reason.to_string()), 2 + n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_and_errors() {
        assert_eq!(encode_request(8080), [1, 0x1f, 0x90]);
        assert_eq!(parse_request(&[1, 0x1f, 0x90, 9]), Ok(Some((8080, 3))));
        assert_eq!(parse_request(&[]), Ok(None));
        assert_eq!(parse_request(&[1, 0x1f]), Ok(None));
        assert_eq!(parse_request(&[2, 0, 80]), Err(ProtoError::Version(2)));
        assert_eq!(parse_request(&[1, 0, 0]), Err(ProtoError::PortZero));
    }

    #[test]
    fn response_round_trip_and_errors() {
        let mut out = Vec::new();
        encode_response(Status::Ok, "ignored", &mut out);
        assert_eq!(out, [0, 0]);
        assert_eq!(
            parse_response(&out),
            Ok(Some(((Status::Ok, String::new()), 2)))
        );
        out.clear();
        encode_response(Status::NotExposed, "port 81 is not exposed", &mut out);
        assert_eq!(&out[..2], &[1, 22]);
        assert_eq!(
            parse_response(&out),
            Ok(Some((
                (Status::NotExposed, "port 81 is not exposed".into()),
                24
            )))
        );
        assert_eq!(parse_response(&out[..10]), Ok(None));
        // Long reasons are cut at a character boundary.
        out.clear();
        encode_response(Status::ConnectFailed, &"é".repeat(150), &mut out);
        assert_eq!(out[1] as usize, MAX_REASON);
        assert!(parse_response(&out).unwrap().is_some());
        assert_eq!(parse_response(&[9, 0]), Err(ProtoError::Status(9)));
        assert_eq!(parse_response(&[0, 1, b'x']), Err(ProtoError::Reason));
        assert_eq!(parse_response(&[1, 201]), Err(ProtoError::Reason));
        assert_eq!(parse_response(&[1, 1, 0xff]), Err(ProtoError::Reason));
    }
}
