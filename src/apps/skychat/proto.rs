//! The skychat peer protocol (docs/protocol.md "Skychat"): frames of `u32be length ‖ payload`
//! (1 ≤ length ≤ [`MAX_FRAME`]); a payload is plain UTF-8 text or a JSON envelope
//! (`chat-msg`, `chat-ack`, `chat-read`, `chat-nack`, the `group-*` envelopes of
//! [`GroupMsg`] and the `pair-*` ones of [`PairMsg`]). Sans-IO apart from the two small
//! async helpers at the end.

use std::fmt;
use std::io;

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use miniserde::json::{self, Value};

pub use super::group::wire::GroupMsg;
pub use super::pair::wire::PairMsg;
use crate::http::json::{Ordered, Out};

/// The largest payload a frame may carry.
pub const MAX_FRAME: usize = 65_536;

/// A message id: 8 random bytes, written as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct MsgId(pub u64);

impl MsgId {
    /// A fresh random id (never 0, which the store uses for "none").
    pub fn random() -> MsgId {
        loop {
            let mut b = [0u8; 8];
            if getrandom::fill(&mut b).is_err() {
                // No OS randomness: fall back on the clock and a counter (ids only need to be
                // unique per sender, not secret).
                use std::sync::atomic::{AtomicU64, Ordering};
                static N: AtomicU64 = AtomicU64::new(1);
                let t = crate::apps::skychat::events::now_ms();
                return MsgId(t.rotate_left(20) ^ N.fetch_add(1, Ordering::Relaxed));
            }
            let v = u64::from_be_bytes(b);
            if v != 0 {
                return MsgId(v);
            }
        }
    }

    /// Parses exactly 16 lowercase hex digits.
    pub fn parse(s: &str) -> Option<MsgId> {
        if s.len() != 16 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(MsgId)
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A decoded payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    /// Plain text (no id, never acked).
    Text(String),
    /// A chat message.
    Msg {
        /// Its id.
        id: MsgId,
        /// The text.
        body: String,
        /// The sender waits for a `chat-ack`.
        ack: bool,
        /// The message it answers.
        reply_to: Option<MsgId>,
    },
    /// Durably stored (or a duplicate of a stored one).
    Ack(MsgId),
    /// Displayed.
    Read(MsgId),
    /// Refused by the receiver.
    Nack {
        /// The message refused.
        id: MsgId,
        /// Why.
        reason: String,
    },
    /// A `group-*` envelope (docs/protocol.md "Skychat groups: messages").
    Group(GroupMsg),
    /// A `pair-*` envelope (docs/protocol.md "Skychat pairing").
    Pair(PairMsg),
    /// A JSON envelope of a type we do not know (its type).
    Unknown(String),
}

/// A frame or payload the protocol does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError(pub String);

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtoError {}

/// The payload bytes of `env` (JSON, or the text itself).
pub fn encode(env: &Envelope) -> Vec<u8> {
    let o = Ordered::new();
    let o = match env {
        Envelope::Text(t) => return t.as_bytes().to_vec(),
        Envelope::Msg {
            id,
            body,
            ack,
            reply_to,
        } => {
            let mut o = o
                .field("type", Out::Str("chat-msg".into()))
                .field("id", Out::Str(id.to_string()))
                .field("body", Out::Str(body.clone()));
            if *ack {
                o = o.field("ack", Out::Bool(true));
            }
            if let Some(r) = reply_to {
                o = o.field("reply_to", Out::Str(r.to_string()));
            }
            o
        }
        Envelope::Ack(id) => o
            .field("type", Out::Str("chat-ack".into()))
            .field("id", Out::Str(id.to_string())),
        Envelope::Read(id) => o
            .field("type", Out::Str("chat-read".into()))
            .field("id", Out::Str(id.to_string())),
        Envelope::Nack { id, reason } => o
            .field("type", Out::Str("chat-nack".into()))
            .field("id", Out::Str(id.to_string()))
            .field("reason", Out::Str(reason.clone())),
        Envelope::Group(g) => g.to_ordered(),
        Envelope::Pair(p) => p.to_ordered(),
        Envelope::Unknown(t) => o.field("type", Out::Str(t.clone())),
    };
    o.to_compact().into_bytes()
}

/// Decodes a payload. Invalid UTF-8, or a known envelope with a missing/bad field, is an
/// error; a `{` payload that is not a JSON object with a string `type` is plain text.
pub fn decode(payload: &[u8]) -> Result<Envelope, ProtoError> {
    let text = std::str::from_utf8(payload)
        .map_err(|e| ProtoError(format!("payload is not UTF-8: {e}")))?;
    if !text.starts_with('{') {
        return Ok(Envelope::Text(text.to_string()));
    }
    let Ok(Value::Object(o)) = json::from_str::<Value>(text) else {
        return Ok(Envelope::Text(text.to_string()));
    };
    let Some(Value::String(ty)) = o.get("type") else {
        return Ok(Envelope::Text(text.to_string()));
    };
    let id = || -> Result<MsgId, ProtoError> {
        match o.get("id") {
            Some(Value::String(s)) => MsgId::parse(s).ok_or_else(|| {
                ProtoError(format!("{ty}: id {s:?} is not 16 lowercase hex digits"))
            }),
            _ => Err(ProtoError(format!("{ty}: no string field id"))),
        }
    };
    Ok(match ty.as_str() {
        "chat-msg" => {
            let body = match o.get("body") {
                Some(Value::String(s)) => s.clone(),
                _ => return Err(ProtoError("chat-msg: no string field body".into())),
            };
            let ack = match o.get("ack") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                _ => return Err(ProtoError("chat-msg: ack is not a boolean".into())),
            };
            let reply_to = match o.get("reply_to") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.is_empty() => None,
                Some(Value::String(s)) => Some(MsgId::parse(s).ok_or_else(|| {
                    ProtoError(format!(
                        "chat-msg: reply_to {s:?} is not 16 lowercase hex digits"
                    ))
                })?),
                _ => return Err(ProtoError("chat-msg: reply_to is not a string".into())),
            };
            Envelope::Msg {
                id: id()?,
                body,
                ack,
                reply_to,
            }
        }
        "chat-ack" => Envelope::Ack(id()?),
        "chat-read" => Envelope::Read(id()?),
        "chat-nack" => Envelope::Nack {
            id: id()?,
            reason: match o.get("reason") {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            },
        },
        other => match GroupMsg::decode(other, &o) {
            Some(g) => Envelope::Group(g.map_err(ProtoError)?),
            None => match PairMsg::decode(other, &o) {
                Some(p) => Envelope::Pair(p.map_err(ProtoError)?),
                None => Envelope::Unknown(other.to_string()),
            },
        },
    })
}

/// Checks a frame's payload length.
pub fn check_len(len: usize) -> Result<(), ProtoError> {
    if len == 0 || len > MAX_FRAME {
        return Err(ProtoError(format!(
            "frame length {len} is outside 1..={MAX_FRAME}"
        )));
    }
    Ok(())
}

/// `u32be length ‖ payload`.
pub fn frame(payload: &[u8]) -> Result<Vec<u8>, ProtoError> {
    check_len(payload.len())?;
    let mut v = Vec::with_capacity(4 + payload.len());
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    Ok(v)
}

/// Reads one frame: `None` on a clean EOF before a header; `InvalidData` on a bad length.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut h = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut h[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    let len = u32::from_be_bytes(h) as usize;
    check_len(len).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

/// Writes one frame (and flushes).
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, payload: &[u8]) -> io::Result<()> {
    let f = frame(payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    w.write_all(&f).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let id = MsgId(0x0123_4567_89ab_cdef);
        assert_eq!(id.to_string(), "0123456789abcdef");
        assert_eq!(MsgId::parse("0123456789abcdef"), Some(id));
        assert_eq!(MsgId::parse("0123456789ABCDEF"), None);
        for env in [
            Envelope::Msg {
                id,
                body: "a \"q\" \\ \n\u{1} é 🙂".into(),
                ack: true,
                reply_to: Some(MsgId(1)),
            },
            Envelope::Msg {
                id,
                body: String::new(),
                ack: false,
                reply_to: None,
            },
            Envelope::Ack(id),
            Envelope::Read(id),
            Envelope::Nack {
                id,
                reason: "too big".into(),
            },
            Envelope::Text("hello".into()),
        ] {
            assert_eq!(decode(&encode(&env)).unwrap(), env);
        }
        assert_eq!(
            encode(&Envelope::Ack(id)),
            br#"{"type":"chat-ack","id":"0123456789abcdef"}"#
        );
    }

    #[test]
    fn odd_payloads() {
        assert!(decode(&[0xff, 0xfe]).is_err());
        assert_eq!(decode(b"{nope").unwrap(), Envelope::Text("{nope".into()));
        assert_eq!(decode(b"{}").unwrap(), Envelope::Text("{}".into()));
        assert_eq!(
            decode(br#"{"type":"group-x"}"#).unwrap(),
            Envelope::Unknown("group-x".into())
        );
        assert!(decode(br#"{"type":"chat-ack","id":"xyz"}"#).is_err());
        assert!(frame(&[]).is_err());
        assert!(frame(&vec![0; MAX_FRAME + 1]).is_err());
        assert_eq!(frame(b"ab").unwrap(), [0, 0, 0, 2, b'a', b'b']);
        futures_lite::future::block_on(async {
            let mut r: &[u8] = &[0, 1, 0, 1];
            assert!(read_frame(&mut r).await.is_err());
            let mut r: &[u8] = &[0, 0, 0, 2, b'h', b'i'];
            assert_eq!(read_frame(&mut r).await.unwrap(), Some(b"hi".to_vec()));
            assert_eq!(read_frame(&mut r).await.unwrap(), None);
        });
    }
}
