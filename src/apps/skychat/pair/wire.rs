//! The pairing envelopes carried on a skychat peer connection (docs/protocol.md "Skychat
//! pairing"): JSON objects like the `chat-*` ones, `type` first, then `id` (16 lowercase hex
//! digits, fresh per envelope). The sender is the connection's authenticated peer; every one
//! is answered with `chat-ack` (applied) or `chat-nack` (refused, with a reason) of the same
//! id. Sans-IO.
//!
//! | type | fields | meaning |
//! |---|---|---|
//! | `pair-invite` | `id` | the sender asks to pair |
//! | `pair-accept` | `id` | the sender accepts our invite |
//! | `pair-decline` | `id` | the sender declines our invite |
//! | `pair-msg` | `id`, `text` (1..=[`MAX_TEXT`] bytes) | a message between paired visors |
//! | `pair-remove` | `id` | the sender drops the pair (or withdraws its invite) |

use miniserde::json::Object;

use crate::apps::skychat::proto::MsgId;
use crate::http::json::{Fields, Ordered, Out};

/// The largest `pair-msg` text, bytes.
pub const MAX_TEXT: usize = 4_096;

/// A pairing envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PairMsg {
    /// `pair-invite`.
    Invite(MsgId),
    /// `pair-accept`.
    Accept(MsgId),
    /// `pair-decline`.
    Decline(MsgId),
    /// `pair-remove`.
    Remove(MsgId),
    /// `pair-msg`.
    Msg {
        /// Its id (the receiver dedupes on it).
        id: MsgId,
        /// The text (its length is checked by the receiver, which nacks an oversize one).
        text: String,
    },
}

impl PairMsg {
    /// The envelope type.
    pub fn type_name(&self) -> &'static str {
        match self {
            PairMsg::Invite(_) => "pair-invite",
            PairMsg::Accept(_) => "pair-accept",
            PairMsg::Decline(_) => "pair-decline",
            PairMsg::Remove(_) => "pair-remove",
            PairMsg::Msg { .. } => "pair-msg",
        }
    }

    /// Its id (the ack or nack names it).
    pub fn id(&self) -> MsgId {
        match self {
            PairMsg::Invite(id)
            | PairMsg::Accept(id)
            | PairMsg::Decline(id)
            | PairMsg::Remove(id)
            | PairMsg::Msg { id, .. } => *id,
        }
    }

    /// The JSON object, `type` first.
    pub fn to_ordered(&self) -> Ordered {
        let o = Ordered::new()
            .field("type", Out::Str(self.type_name().into()))
            .field("id", Out::Str(self.id().to_string()));
        match self {
            PairMsg::Msg { text, .. } => o.field("text", Out::Str(text.clone())),
            _ => o,
        }
    }

    /// Decodes the object of an envelope of type `ty`: `None` when `ty` is not a pairing
    /// type, `Some(Err)` for a missing or bad field.
    pub fn decode(ty: &str, obj: &Object) -> Option<Result<PairMsg, String>> {
        if !matches!(
            ty,
            "pair-invite" | "pair-accept" | "pair-decline" | "pair-msg" | "pair-remove"
        ) {
            return None;
        }
        Some(decode_known(ty, obj).map_err(|e| format!("{ty}: {e}")))
    }
}

fn decode_known(ty: &str, obj: &Object) -> Result<PairMsg, String> {
    let mut f = Fields::new(obj, "");
    let s = |e: crate::http::json::JsonError| e.to_string();
    let raw = f.str("id").map_err(s)?;
    let id = MsgId::parse(raw)
        .ok_or_else(|| format!("field `id`: {raw:?} is not 16 lowercase hex digits"))?;
    Ok(match ty {
        "pair-invite" => PairMsg::Invite(id),
        "pair-accept" => PairMsg::Accept(id),
        "pair-decline" => PairMsg::Decline(id),
        "pair-remove" => PairMsg::Remove(id),
        _ => PairMsg::Msg {
            id,
            text: f.str("text").map_err(s)?.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::skychat::proto::{Envelope, decode, encode};

    #[test]
    fn golden_bytes_match_the_docs_and_round_trip() {
        let id = MsgId(0x0123_4567_89ab_cdef);
        let golden: [(PairMsg, &str); 5] = [
            (
                PairMsg::Invite(id),
                r#"{"type":"pair-invite","id":"0123456789abcdef"}"#,
            ),
            (
                PairMsg::Accept(id),
                r#"{"type":"pair-accept","id":"0123456789abcdef"}"#,
            ),
            (
                PairMsg::Decline(id),
                r#"{"type":"pair-decline","id":"0123456789abcdef"}"#,
            ),
            (
                PairMsg::Msg {
                    id,
                    text: "hi \"B\"".into(),
                },
                r#"{"type":"pair-msg","id":"0123456789abcdef","text":"hi \"B\""}"#,
            ),
            (
                PairMsg::Remove(id),
                r#"{"type":"pair-remove","id":"0123456789abcdef"}"#,
            ),
        ];
        let doc = include_str!("../../../../docs/protocol.md");
        for (m, bytes) in golden {
            let env = Envelope::Pair(m.clone());
            assert_eq!(String::from_utf8(encode(&env)).unwrap(), bytes);
            assert_eq!(decode(bytes.as_bytes()).unwrap(), env);
            assert!(doc.contains(bytes), "docs/protocol.md lacks {bytes}");
        }
    }

    #[test]
    fn bad_fields_are_errors() {
        for bad in [
            &br#"{"type":"pair-invite"}"#[..],
            br#"{"type":"pair-invite","id":"XYZ"}"#,
            br#"{"type":"pair-accept","id":7}"#,
            br#"{"type":"pair-msg","id":"0123456789abcdef"}"#,
            br#"{"type":"pair-msg","id":"0123456789abcdef","text":5}"#,
        ] {
            let e = decode(bad).unwrap_err();
            assert!(e.0.starts_with("pair-"), "{e}");
        }
        assert_eq!(
            decode(br#"{"type":"pair-ack","id":"0123456789abcdef"}"#).unwrap(),
            Envelope::Unknown("pair-ack".into())
        );
    }
}
