//! Invite links: `skychat:invite:` followed by base64url without padding (RFC 4648 §5) of a
//! compact JSON object, fields in this order:
//!
//! | field | value |
//! |---|---|
//! | `id` | the group id, 32 hex digits |
//! | `name` | the group's name (1 to 64 bytes, no control characters) |
//! | `owner_pk` | the owner's public key, 64 hex digits |
//! | `port` | the owner's group port, 1 to 65535 |
//! | `mode` | `"public"` or `"private"` |
//! | `key` | private only: the group key of the current epoch, 64 hex digits |
//! | `epoch` | private only: that epoch, 1 or more |
//! | `secret` | optional: 32 hex digits the owner remembers, shown in its `group-join` |
//!
//! An invite is not signed: holding the link is the trust (and, in a private group, the
//! key). [`decode`] never panics and says what is wrong: over [`MAX_INVITE`] bytes, another
//! prefix, not base64url (padding, a character outside the alphabet, a length or last
//! character no encoder makes), not UTF-8 JSON, a field missing, of the wrong type or
//! unknown, a key in a public invite or none in a private one. Blanks around the link are
//! ignored (a pasted link often has a newline).

use std::fmt;

use miniserde::json::{self, Value};

use super::crypt::GroupKey;
use super::entry::{self, GroupId, Mode};
use crate::crypto::PublicKey;
use crate::crypto::b64;
use crate::http::json::{Fields, JsonError, Ordered, Out};

/// What every invite starts with.
pub const PREFIX: &str = "skychat:invite:";
/// The longest invite accepted, in bytes.
pub const MAX_INVITE: usize = 4096;

/// Whether the invite carries the group key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// A public group: no key.
    Public,
    /// A private group: the key of the current epoch.
    Private {
        /// The group key.
        key: GroupKey,
        /// Its epoch.
        epoch: u32,
    },
}

/// A decoded invite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invite {
    /// The group.
    pub id: GroupId,
    /// Its name.
    pub name: String,
    /// Its owner.
    pub owner: PublicKey,
    /// The owner's group port.
    pub port: u16,
    /// Public, or private with the key.
    pub access: Access,
    /// The join secret the owner remembers (`group-join`).
    pub secret: Option<[u8; 16]>,
}

/// Why a string is not an invite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InviteError {
    /// Over [`MAX_INVITE`] bytes.
    TooLong(usize),
    /// It does not start with [`PREFIX`].
    Prefix,
    /// The rest is not base64url without padding.
    Base64(String),
    /// It decodes to bytes that are not UTF-8.
    NotUtf8,
    /// It decodes to text that is not a JSON object.
    NotJson,
    /// A field is missing, of the wrong type, or unknown.
    Field(JsonError),
    /// A field has a value an invite cannot have.
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A public invite with a key or epoch.
    KeyInPublic,
    /// A private invite without a key or epoch.
    KeyMissing(&'static str),
    /// Refused to encode: the name is not a valid group name.
    BadName(String),
}

impl fmt::Display for InviteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InviteError::TooLong(n) => {
                write!(f, "invite of {n} bytes, more than the {MAX_INVITE} allowed")
            }
            InviteError::Prefix => write!(f, "not an invite: it does not start with {PREFIX}"),
            InviteError::Base64(why) => write!(f, "invite is not base64url: {why}"),
            InviteError::NotUtf8 => f.write_str("invite does not decode to UTF-8 text"),
            InviteError::NotJson => f.write_str("invite does not decode to a JSON object"),
            InviteError::Field(e) => write!(f, "invite {e}"),
            InviteError::Invalid { field, why } => write!(f, "invite field `{field}`: {why}"),
            InviteError::KeyInPublic => {
                f.write_str("invite of a public group carries a key or epoch")
            }
            InviteError::KeyMissing(field) => {
                write!(f, "invite of a private group has no `{field}`")
            }
            InviteError::BadName(why) => write!(f, "cannot invite to this group: {why}"),
        }
    }
}

impl std::error::Error for InviteError {}

impl From<JsonError> for InviteError {
    fn from(e: JsonError) -> Self {
        InviteError::Field(e)
    }
}

impl Invite {
    /// Public or private.
    pub fn mode(&self) -> Mode {
        match self.access {
            Access::Public => Mode::Public,
            Access::Private { .. } => Mode::Private,
        }
    }

    /// The link. Fails only on a name no group can have.
    pub fn encode(&self) -> Result<String, InviteError> {
        entry::check_name(&self.name).map_err(InviteError::BadName)?;
        let mut o = Ordered::new()
            .field("id", Out::Str(self.id.to_hex()))
            .field("name", Out::Str(self.name.clone()))
            .field("owner_pk", Out::Str(self.owner.to_hex()))
            .field("port", Out::U64(self.port.into()))
            .field("mode", Out::Str(self.mode().as_str().into()));
        if let Access::Private { key, epoch } = &self.access {
            o = o
                .field("key", Out::Str(key.to_hex()))
                .field("epoch", Out::U64((*epoch).into()));
        }
        if let Some(sec) = &self.secret {
            o = o.field("secret", Out::Str(crate::crypto::hex::encode(sec)));
        }
        Ok(format!(
            "{PREFIX}{}",
            b64::encode_url(o.to_compact().as_bytes())
        ))
    }

    /// Parses a link.
    pub fn decode(s: &str) -> Result<Invite, InviteError> {
        let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
        if s.len() > MAX_INVITE {
            return Err(InviteError::TooLong(s.len()));
        }
        let b64 = s.strip_prefix(PREFIX).ok_or(InviteError::Prefix)?;
        let raw = b64::decode_url(b64).map_err(InviteError::Base64)?;
        let text = std::str::from_utf8(&raw).map_err(|_| InviteError::NotUtf8)?;
        let Ok(Value::Object(obj)) = json::from_str::<Value>(text) else {
            return Err(InviteError::NotJson);
        };
        let mut f = Fields::new(&obj, "");
        let invalid = |field: &'static str, why: String| InviteError::Invalid { field, why };
        let id = GroupId::from_hex(f.str("id")?).map_err(|e| invalid("id", e.to_string()))?;
        let name = f.str("name")?.to_string();
        entry::check_name(&name).map_err(|e| invalid("name", e))?;
        let owner = PublicKey::from_hex(f.str("owner_pk")?)
            .map_err(|e| invalid("owner_pk", e.to_string()))?;
        let port = f
            .opt_u64("port", u16::MAX.into())?
            .ok_or_else(|| f.err("port", "missing (required)"))?;
        if port == 0 {
            return Err(invalid("port", "0 is not a port".into()));
        }
        let mode = f.str("mode")?;
        let mode = Mode::parse(mode)
            .ok_or_else(|| invalid("mode", format!("{mode:?}, want \"public\" or \"private\"")))?;
        let key = f.opt_str("key")?;
        let epoch = f.opt_u64("epoch", u32::MAX.into())?;
        let secret = match f.opt_str("secret")? {
            None => None,
            Some(h) => Some(
                crate::crypto::hex::decode_array::<16>(h)
                    .map_err(|e| invalid("secret", e.to_string()))?,
            ),
        };
        f.deny_unknown()?;
        let access = match mode {
            Mode::Public => {
                if key.is_some() || epoch.is_some() {
                    return Err(InviteError::KeyInPublic);
                }
                Access::Public
            }
            Mode::Private => {
                let key = key.ok_or(InviteError::KeyMissing("key"))?;
                let key = GroupKey::from_hex(key).map_err(|e| invalid("key", e.to_string()))?;
                let epoch = epoch.ok_or(InviteError::KeyMissing("epoch"))? as u32;
                if epoch == 0 {
                    return Err(invalid("epoch", "0, a private group starts at 1".into()));
                }
                Access::Private { key, epoch }
            }
        };
        Ok(Invite {
            id,
            name,
            owner,
            port: port as u16,
            access,
            secret,
        })
    }
}

/// The link of `invite`: [`Invite::encode`].
pub fn encode(invite: &Invite) -> Result<String, InviteError> {
    invite.encode()
}

/// Parses a link: [`Invite::decode`].
pub fn decode(s: &str) -> Result<Invite, InviteError> {
    Invite::decode(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn invite(access: Access) -> Invite {
        Invite {
            id: GroupId(std::array::from_fn(|i| 0x10 + i as u8)),
            name: "Pi club \"β\"".into(),
            owner: *Keypair::from_seed(&[0; 32]).public(),
            port: 12_345,
            access,
            secret: None,
        }
    }

    #[test]
    fn the_secret_round_trips_and_is_checked() {
        let mut i = invite(Access::Public);
        i.secret = Some([0xab; 16]);
        let link = i.encode().unwrap();
        assert_eq!(decode(&link).unwrap(), i);
        let json = r#"{"id":"101112131415161718191a1b1c1d1e1f","name":"x","owner_pk":"PK","port":1,"mode":"public","secret":"zz"}"#
            .replace("PK", &i.owner.to_hex());
        let bad = format!("{PREFIX}{}", b64::encode_url(json.as_bytes()));
        assert!(decode(&bad).unwrap_err().to_string().contains("secret"));
    }

    #[test]
    fn invites_round_trip() {
        let public = invite(Access::Public);
        let link = public.encode().unwrap();
        assert!(link.starts_with(PREFIX));
        assert_eq!(decode(&link).unwrap(), public);
        assert_eq!(decode(&format!("  {link}\n")).unwrap(), public);
        let json = String::from_utf8(b64::decode_url(&link[PREFIX.len()..]).unwrap()).unwrap();
        assert_eq!(
            json,
            format!(
                "{{\"id\":\"101112131415161718191a1b1c1d1e1f\",\"name\":\"Pi club \\\"β\\\"\",\
                 \"owner_pk\":\"{}\",\"port\":12345,\"mode\":\"public\"}}",
                public.owner
            )
        );
        let private = invite(Access::Private {
            key: GroupKey::from_bytes([0xab; 32]),
            epoch: 7,
        });
        let link = private.encode().unwrap();
        assert_eq!(decode(&link).unwrap(), private);
        assert!(
            String::from_utf8(b64::decode_url(&link[PREFIX.len()..]).unwrap())
                .unwrap()
                .ends_with(&format!(
                    "\"mode\":\"private\",\"key\":\"{}\",\"epoch\":7}}",
                    "ab".repeat(32)
                ))
        );
        let mut bad = invite(Access::Public);
        bad.name = String::new();
        assert!(bad.encode().is_err());
    }

    fn link_of(json: &str) -> String {
        format!("{PREFIX}{}", b64::encode_url(json.as_bytes()))
    }

    #[test]
    fn bad_invites_are_refused_with_a_reason() {
        let pk = Keypair::from_seed(&[0; 32]).public().to_hex();
        let id = "101112131415161718191a1b1c1d1e1f";
        let ok =
            format!(r#"{{"id":"{id}","name":"g","owner_pk":"{pk}","port":1,"mode":"public"}}"#);
        assert!(decode(&link_of(&ok)).is_ok());
        let key = "ab".repeat(32);
        let cases: Vec<(String, &str)> = vec![
            ("skychat:invit:e30".into(), "does not start with"),
            (format!("{PREFIX}e30="), "padding"),
            (format!("{PREFIX}e3*"), "character"),
            (
                format!("{PREFIX}{}", "A".repeat(MAX_INVITE)),
                "more than the 4096",
            ),
            (format!("{PREFIX}_w"), "UTF-8"),
            (link_of("[1]"), "JSON object"),
            (link_of("{\"id\":"), "JSON object"),
            (link_of(&ok.replace("\"port\":1,", "")), "`port`: missing"),
            (
                link_of(&ok.replace("\"port\":1", "\"port\":70000")),
                "`port`",
            ),
            (
                link_of(&ok.replace("\"port\":1", "\"port\":0")),
                "0 is not a port",
            ),
            (
                link_of(&ok.replace("\"port\":1", "\"port\":\"1\"")),
                "a number",
            ),
            (link_of(&ok.replace(id, "1011")), "`id`"),
            (link_of(&ok.replace(&pk, &"00".repeat(32))), "`owner_pk`"),
            (link_of(&ok.replace("\"g\"", "\"\"")), "`name`"),
            (
                link_of(&ok.replace("\"g\"", &format!("\"{}\"", "n".repeat(65)))),
                "`name`",
            ),
            (link_of(&ok.replace("public", "secret")), "`mode`"),
            (
                link_of(&ok.replace("}", &format!(",\"key\":\"{key}\",\"epoch\":1}}"))),
                "public group carries a key",
            ),
            (link_of(&ok.replace("public", "private")), "no `key`"),
            (
                link_of(
                    &ok.replace("public", "private")
                        .replace("}", &format!(",\"key\":\"{key}\"}}")),
                ),
                "no `epoch`",
            ),
            (
                link_of(
                    &ok.replace("public", "private")
                        .replace("}", ",\"key\":\"zz\",\"epoch\":1}"),
                ),
                "`key`",
            ),
            (
                link_of(
                    &ok.replace("public", "private")
                        .replace("}", &format!(",\"key\":\"{key}\",\"epoch\":0}}")),
                ),
                "starts at 1",
            ),
            (
                link_of(&ok.replace("}", ",\"aes_key\":\"00\"}")),
                "unknown field",
            ),
        ];
        for (link, want) in cases {
            let err = decode(&link).expect_err(&link).to_string();
            assert!(err.contains(want), "{link}: {err:?} does not say {want:?}");
        }
        // Every flipped character of a valid link: refused or (rarely) another valid invite,
        // never a panic.
        let link = invite(Access::Public).encode().unwrap();
        for i in 0..link.len() {
            let mut b = link.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let _ = decode(&String::from_utf8(b).unwrap());
        }
        // A tampered byte inside the JSON is caught.
        let tampered = link_of(&ok.replace(&pk[..2], "zz"));
        assert!(decode(&tampered).is_err());
    }
}
