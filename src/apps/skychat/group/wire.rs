//! The group envelopes carried on a skychat peer connection (docs/protocol.md "Skychat
//! groups: messages"): JSON objects like the other envelopes, `type` first, the group id as
//! 32 hex digits in `g`, binary entries as base64url without padding. Sans-IO.
//!
//! | type | direction | fields |
//! |---|---|---|
//! | `group-join` | member → owner | `g`, `owner` (64 hex), `secret` (32 hex, from the invite) |
//! | `group-sub` | member → owner | `g`, `since` (send every entry after this seq, then push) |
//! | `group-batch` | owner → member | `g`, `pruned` (pruned-through seq), `es` (entries) |
//! | `group-entry` | owner → member | `g`, `e` (one new entry) |
//! | `group-submit` | member → owner | `g`, `e` (an author part to sequence) |
//! | `group-ok` | owner → member | `g`, `id` (author entry id, 16 hex), `seq` |
//! | `group-refuse` | owner → member | `g`, `id`? (16 hex), `reason` |
//! | `group-key` | owner → member | `g`, `epoch`, `key` (64 hex) |

use miniserde::json::{Object, Value};

use super::crypt::GroupKey;
use super::entry::GroupId;
use crate::crypto::PublicKey;
use crate::crypto::b64;
use crate::crypto::hex;
use crate::http::json::{Fields, Ordered, Out};

/// Entries in one `group-batch`.
pub const BATCH_ENTRIES: usize = 64;
/// Entry bytes in one `group-batch` (base64 grows it by a third: it fits a 64 KiB frame).
pub const BATCH_BYTES: usize = 48 * 1024;
/// The length of a join secret.
pub const SECRET_LEN: usize = 16;

/// A group envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupMsg {
    /// Asks to join with an invite's secret (or as a member already on the roster).
    Join {
        /// The group.
        g: GroupId,
        /// Its owner, as the invite names it.
        owner: PublicKey,
        /// The invite's secret.
        secret: [u8; SECRET_LEN],
    },
    /// Asks for every entry after `since`, then live pushes on this connection.
    Sub {
        /// The group.
        g: GroupId,
        /// The last seq the member holds.
        since: u64,
    },
    /// Catch-up entries, in seq order.
    Batch {
        /// The group.
        g: GroupId,
        /// The owner's pruned-through mark.
        pruned: u64,
        /// Sequenced entries' bytes.
        es: Vec<Vec<u8>>,
    },
    /// One new sequenced entry.
    Entry {
        /// The group.
        g: GroupId,
        /// Its bytes.
        e: Vec<u8>,
    },
    /// An author part to sequence.
    Submit {
        /// The group.
        g: GroupId,
        /// Its bytes.
        e: Vec<u8>,
    },
    /// A submitted entry was sequenced (or had been).
    Ok {
        /// The group.
        g: GroupId,
        /// The author entry id.
        id: u64,
        /// Its seq.
        seq: u64,
    },
    /// A join, subscription or submission was refused.
    Refuse {
        /// The group.
        g: GroupId,
        /// The author entry id of a refused submission.
        id: Option<u64>,
        /// Why.
        reason: String,
    },
    /// A private group's key of one epoch.
    Key {
        /// The group.
        g: GroupId,
        /// The epoch.
        epoch: u32,
        /// The key.
        key: GroupKey,
    },
}

impl GroupMsg {
    /// The envelope type.
    pub fn type_name(&self) -> &'static str {
        match self {
            GroupMsg::Join { .. } => "group-join",
            GroupMsg::Sub { .. } => "group-sub",
            GroupMsg::Batch { .. } => "group-batch",
            GroupMsg::Entry { .. } => "group-entry",
            GroupMsg::Submit { .. } => "group-submit",
            GroupMsg::Ok { .. } => "group-ok",
            GroupMsg::Refuse { .. } => "group-refuse",
            GroupMsg::Key { .. } => "group-key",
        }
    }

    /// The group concerned.
    pub fn group(&self) -> GroupId {
        match self {
            GroupMsg::Join { g, .. }
            | GroupMsg::Sub { g, .. }
            | GroupMsg::Batch { g, .. }
            | GroupMsg::Entry { g, .. }
            | GroupMsg::Submit { g, .. }
            | GroupMsg::Ok { g, .. }
            | GroupMsg::Refuse { g, .. }
            | GroupMsg::Key { g, .. } => *g,
        }
    }

    /// The JSON object, `type` first.
    pub fn to_ordered(&self) -> Ordered {
        let o = Ordered::new()
            .field("type", Out::Str(self.type_name().into()))
            .field("g", Out::Str(self.group().to_hex()));
        match self {
            GroupMsg::Join { owner, secret, .. } => o
                .field("owner", Out::Str(owner.to_hex()))
                .field("secret", Out::Str(hex::encode(secret))),
            GroupMsg::Sub { since, .. } => o.field("since", Out::U64(*since)),
            GroupMsg::Batch { pruned, es, .. } => o.field("pruned", Out::U64(*pruned)).field(
                "es",
                Out::Arr(es.iter().map(|e| Out::Str(b64::encode_url(e))).collect()),
            ),
            GroupMsg::Entry { e, .. } | GroupMsg::Submit { e, .. } => {
                o.field("e", Out::Str(b64::encode_url(e)))
            }
            GroupMsg::Ok { id, seq, .. } => o
                .field("id", Out::Str(format!("{id:016x}")))
                .field("seq", Out::U64(*seq)),
            GroupMsg::Refuse { id, reason, .. } => {
                let o = match id {
                    Some(id) => o.field("id", Out::Str(format!("{id:016x}"))),
                    None => o,
                };
                o.field("reason", Out::Str(reason.clone()))
            }
            GroupMsg::Key { epoch, key, .. } => o
                .field("epoch", Out::U64((*epoch).into()))
                .field("key", Out::Str(key.to_hex())),
        }
    }

    /// Decodes the object of a `group-*` envelope of type `ty`: `None` for a type that is not
    /// one of these (the caller treats it as unknown), `Some(Err)` for a bad field.
    pub fn decode(ty: &str, obj: &Object) -> Option<Result<GroupMsg, String>> {
        if !matches!(
            ty,
            "group-join"
                | "group-sub"
                | "group-batch"
                | "group-entry"
                | "group-submit"
                | "group-ok"
                | "group-refuse"
                | "group-key"
        ) {
            return None;
        }
        Some(decode_known(ty, obj).map_err(|e| format!("{ty}: {e}")))
    }
}

fn entry_id(s: &str) -> Result<u64, String> {
    if s.len() != 16 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!("id {s:?} is not 16 lowercase hex digits"));
    }
    u64::from_str_radix(s, 16).map_err(|e| e.to_string())
}

fn bytes(s: &str, field: &str) -> Result<Vec<u8>, String> {
    b64::decode_url(s).map_err(|e| format!("field `{field}`: not base64url: {e}"))
}

fn decode_known(ty: &str, obj: &Object) -> Result<GroupMsg, String> {
    let mut f = Fields::new(obj, "");
    let s = |e: crate::http::json::JsonError| e.to_string();
    let g = GroupId::from_hex(f.str("g").map_err(s)?).map_err(|e| format!("field `g`: {e}"))?;
    Ok(match ty {
        "group-join" => {
            let owner = PublicKey::from_hex(f.str("owner").map_err(s)?)
                .map_err(|e| format!("field `owner`: {e}"))?;
            let secret = hex::decode_array(f.str("secret").map_err(s)?)
                .map_err(|e| format!("field `secret`: {e}"))?;
            GroupMsg::Join { g, owner, secret }
        }
        "group-sub" => GroupMsg::Sub {
            g,
            since: f
                .opt_u64("since", u64::MAX)
                .map_err(s)?
                .ok_or("field `since`: missing (required)")?,
        },
        "group-batch" => {
            let pruned = f.opt_u64("pruned", u64::MAX).map_err(s)?.unwrap_or(0);
            let mut es = Vec::new();
            for (path, v) in f.opt_array("es").map_err(s)? {
                match v {
                    Value::String(t) => es.push(bytes(t, &path)?),
                    _ => return Err(format!("field `{path}`: expected a string")),
                }
            }
            GroupMsg::Batch { g, pruned, es }
        }
        "group-entry" | "group-submit" => {
            let e = bytes(f.str("e").map_err(s)?, "e")?;
            if ty == "group-entry" {
                GroupMsg::Entry { g, e }
            } else {
                GroupMsg::Submit { g, e }
            }
        }
        "group-ok" => GroupMsg::Ok {
            g,
            id: entry_id(f.str("id").map_err(s)?)?,
            seq: f
                .opt_u64("seq", u64::MAX)
                .map_err(s)?
                .ok_or("field `seq`: missing (required)")?,
        },
        "group-refuse" => GroupMsg::Refuse {
            g,
            id: match f.opt_str("id").map_err(s)? {
                None => None,
                Some(i) => Some(entry_id(i)?),
            },
            reason: f.opt_str("reason").map_err(s)?.unwrap_or("").to_string(),
        },
        _ => GroupMsg::Key {
            g,
            epoch: f
                .opt_u64("epoch", u32::MAX.into())
                .map_err(s)?
                .ok_or("field `epoch`: missing (required)")? as u32,
            key: GroupKey::from_hex(f.str("key").map_err(s)?)
                .map_err(|e| format!("field `key`: {e}"))?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::skychat::proto::{Envelope, decode, encode};

    /// docs/protocol.md "Skychat groups: messages": the golden entry's author part, submitted.
    pub(crate) const GOLDEN_SUBMIT: &str = r#"{"type":"group-submit","g":"101112131415161718191a1b1c1d1e1f","e":"AQIQERITFBUWFxgZGhscHR4fA6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbgprLrhQbzK8LIuGpTTTQvHNh5SbQv-EsiXlLyTIpZt1wAAAYvP5WgAASNFZ4mrze8AAAAAAAAAAmhp5ksYZdHpaRsr7YgvrGippCq_XAT1nAygJSLK0IitpgfIDJEA4BvZapZ2eZ7QAEDRTv6tTclGUUzyY1Y1yZJJCA"}"#;

    fn golden_submit() -> GroupMsg {
        let e = crate::apps::skychat::group::entry::tests::golden();
        GroupMsg::Submit {
            g: e.entry.group,
            e: e.entry.encode(),
        }
    }

    #[test]
    fn golden_submit_matches_the_docs() {
        let env = Envelope::Group(golden_submit());
        let text = String::from_utf8(encode(&env)).unwrap();
        assert_eq!(text, GOLDEN_SUBMIT);
        assert_eq!(decode(text.as_bytes()).unwrap(), env);
        let docs = include_str!("../../../../docs/protocol.md");
        assert!(
            docs.contains(GOLDEN_SUBMIT),
            "docs/protocol.md lacks the golden group-submit"
        );
    }

    #[test]
    fn every_envelope_round_trips() {
        let g = GroupId([7; 16]);
        let owner = *crate::crypto::Keypair::from_seed(&[1; 32]).public();
        for m in [
            GroupMsg::Join {
                g,
                owner,
                secret: [9; 16],
            },
            GroupMsg::Sub { g, since: 0 },
            GroupMsg::Sub { g, since: u64::MAX },
            GroupMsg::Batch {
                g,
                pruned: 3,
                es: vec![vec![1, 2, 3], vec![]],
            },
            GroupMsg::Batch {
                g,
                pruned: 0,
                es: vec![],
            },
            GroupMsg::Entry {
                g,
                e: vec![0xff; 300],
            },
            GroupMsg::Ok {
                g,
                id: 0x0123_4567_89ab_cdef,
                seq: 9,
            },
            GroupMsg::Refuse {
                g,
                id: Some(1),
                reason: "no".into(),
            },
            GroupMsg::Refuse {
                g,
                id: None,
                reason: String::new(),
            },
            GroupMsg::Key {
                g,
                epoch: 2,
                key: GroupKey::from_bytes([5; 32]),
            },
            golden_submit(),
        ] {
            let env = Envelope::Group(m);
            assert_eq!(decode(&encode(&env)).unwrap(), env);
        }
    }

    #[test]
    fn bad_fields_are_errors_not_panics() {
        for bad in [
            r#"{"type":"group-sub","g":"00"}"#,
            r#"{"type":"group-sub","g":"07070707070707070707070707070707"}"#,
            r#"{"type":"group-entry","g":"07070707070707070707070707070707","e":"=="}"#,
            r#"{"type":"group-ok","g":"07070707070707070707070707070707","id":"XYZ","seq":1}"#,
            r#"{"type":"group-key","g":"07070707070707070707070707070707","epoch":1,"key":"00"}"#,
            r#"{"type":"group-join","g":"07070707070707070707070707070707","owner":"00","secret":"00"}"#,
            r#"{"type":"group-batch","g":"07070707070707070707070707070707","es":[1]}"#,
        ] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad}");
        }
        assert_eq!(
            decode(br#"{"type":"group-nope","g":"x"}"#).unwrap(),
            Envelope::Unknown("group-nope".into())
        );
    }
}
