//! Discovery entries (DESIGN.md §3.6): who a node is and how to reach it, signed by the node.
//!
//! An entry is signed over a canonical byte encoding ([`Entry::signed_bytes`]), never over
//! re-serialised JSON, so any implementation can verify it whatever its JSON library does with
//! field order or whitespace:
//!
//! ```text
//! "skywire-rs/disc/1\0" (18 bytes, domain separation)
//! pk (32) ‖ seq u64be ‖ timestamp u64be (unix seconds)
//! kind u8: 1 client, 2 relay
//!   client: n u8 ‖ n × relay pk (32)
//!   relay:  addr_len u8 ‖ addr (UTF-8 "host:port") ‖ available_sessions u32be
//! transports: n u8 ‖ n × (len u8 ‖ UTF-8 "host:port")
//! links (only when the entry has any): n u8 ‖ n × (peer pk (32) ‖ type u8: 1 stcp, 2 dmsg)
//! ```
//!
//! An entry without links signs exactly the bytes it signed before links existed, so old
//! entries still verify.
//!
//! A deletion is signed the same way over `"skywire-rs/disc-del/1\0" ‖ pk ‖ seq ‖ timestamp`,
//! with a sequence above the stored entry's, so an old deletion cannot be replayed against a
//! newer entry.
//!
//! The JSON form, for the HTTP API:
//!
//! ```json
//! {"pk":"<hex>","seq":7,"timestamp":1763800000,
//!  "client":{"relays":["<hex>"]},"transports":["192.0.2.1:7777"],
//!  "links":["stcp:<hex>","dmsg:<hex>"],"sig":"<hex>"}
//! {"pk":"<hex>","seq":1,"timestamp":1763800000,
//!  "relay":{"addr":"192.0.2.9:8080","available_sessions":1000},"sig":"<hex>"}
//! ```

use core::fmt;

use crate::crypto::identity::{Keypair, PublicKey, SIG_LEN};
use crate::crypto::{IdentityError, hex};
use crate::http::json::{Fields, JsonError, Ordered, Out, parse_object, str_array};

/// Domain separation for entry signatures.
const ENTRY_DOMAIN: &[u8] = b"skywire-rs/disc/1\0";
/// Domain separation for deletion signatures.
const DELETE_DOMAIN: &[u8] = b"skywire-rs/disc-del/1\0";

/// Most relays a client entry may list.
pub const MAX_RELAYS: usize = 16;
/// Most transport addresses an entry may list.
pub const MAX_TRANSPORTS: usize = 8;
/// Longest address string.
pub const MAX_ADDR_LEN: usize = 255;
/// Most live links (skynet transports) an entry may list.
pub const MAX_LINKS: usize = 32;
/// Link type byte of an stcp transport.
pub const LINK_STCP: u8 = 1;
/// Link type byte of a dmsg transport.
pub const LINK_DMSG: u8 = 2;

/// The JSON name of a link type byte: `stcp`, `dmsg`, or the number for a type this version
/// does not know (kept, so the signature still verifies).
fn link_type_name(t: u8) -> String {
    match t {
        LINK_STCP => "stcp".into(),
        LINK_DMSG => "dmsg".into(),
        n => n.to_string(),
    }
}

/// Parses `type:pk` of the JSON `links` list.
fn parse_link(s: &str) -> Result<(PublicKey, u8), String> {
    let (t, pk) = s.split_once(':').ok_or_else(|| {
        format!(
            "expected <type>:<pk>, got {:?}",
            s.chars().take(80).collect::<String>()
        )
    })?;
    let t = match t {
        "stcp" => LINK_STCP,
        "dmsg" => LINK_DMSG,
        n => n
            .parse::<u8>()
            .map_err(|_| format!("link type {n:?} is not stcp, dmsg or a number 0-255"))?,
    };
    let pk = PublicKey::from_hex(pk).map_err(|e| e.to_string())?;
    Ok((pk, t))
}

/// What kind of node an entry describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A client (visor, tool, standalone app), reachable through these relays.
    Client {
        /// The relays the client keeps sessions with.
        relays: Vec<PublicKey>,
    },
    /// A relay server.
    Relay {
        /// Where clients connect, `host:port`.
        addr: String,
        /// How many more client sessions it accepts.
        available_sessions: u32,
    },
}

/// A signed discovery entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The node's identity.
    pub pk: PublicKey,
    /// Strictly increasing per node.
    pub seq: u64,
    /// When it was signed, unix seconds.
    pub timestamp: u64,
    /// Client or relay.
    pub kind: Kind,
    /// Direct transport addresses (visors with stcp), `host:port`.
    pub transports: Vec<String>,
    /// The node's live skynet transports: (peer, type byte, [`LINK_STCP`] or [`LINK_DMSG`]).
    pub links: Vec<(PublicKey, u8)>,
    /// Ed25519 signature over [`Entry::signed_bytes`].
    pub sig: [u8; SIG_LEN],
}

/// Why an entry is not acceptable as bytes or JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryError {
    /// The JSON is malformed or a field is wrong (path and reason).
    Json(JsonError),
    /// A limit is exceeded.
    TooMany {
        /// Which list.
        field: &'static str,
        /// How many were given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An address is not `host:port`.
    BadAddr(String),
    /// The signature does not verify for this PK.
    BadSignature,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryError::Json(e) => write!(f, "{e}"),
            EntryError::TooMany { field, len, max } => {
                write!(f, "{field}: {len} items, at most {max} allowed")
            }
            EntryError::BadAddr(a) => write!(f, "address {a:?} is not host:port"),
            EntryError::BadSignature => write!(f, "signature does not verify for this pk"),
        }
    }
}

impl std::error::Error for EntryError {}

impl From<JsonError> for EntryError {
    fn from(e: JsonError) -> Self {
        EntryError::Json(e)
    }
}

/// Checks an address: `host:port`, port 1–65535, printable, bounded.
pub fn check_addr(a: &str) -> Result<(), EntryError> {
    let bad = || EntryError::BadAddr(a.chars().take(80).collect());
    if a.is_empty() || a.len() > MAX_ADDR_LEN || a.chars().any(|c| c.is_control() || c == ' ') {
        return Err(bad());
    }
    let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !host.is_empty() => Ok(()),
        _ => Err(bad()),
    }
}

impl Entry {
    /// Builds and signs a client entry.
    pub fn client(
        keys: &Keypair,
        seq: u64,
        timestamp: u64,
        relays: Vec<PublicKey>,
        transports: Vec<String>,
    ) -> Result<Entry, EntryError> {
        Self::client_with_links(keys, seq, timestamp, relays, transports, Vec::new())
    }

    /// Builds and signs a client entry that also lists its live skynet links.
    pub fn client_with_links(
        keys: &Keypair,
        seq: u64,
        timestamp: u64,
        relays: Vec<PublicKey>,
        transports: Vec<String>,
        links: Vec<(PublicKey, u8)>,
    ) -> Result<Entry, EntryError> {
        Self::signed(
            keys,
            seq,
            timestamp,
            Kind::Client { relays },
            transports,
            links,
        )
    }

    /// Builds and signs a relay entry.
    pub fn relay(
        keys: &Keypair,
        seq: u64,
        timestamp: u64,
        addr: String,
        available_sessions: u32,
    ) -> Result<Entry, EntryError> {
        let kind = Kind::Relay {
            addr,
            available_sessions,
        };
        Self::signed(keys, seq, timestamp, kind, Vec::new(), Vec::new())
    }

    fn signed(
        keys: &Keypair,
        seq: u64,
        timestamp: u64,
        kind: Kind,
        transports: Vec<String>,
        links: Vec<(PublicKey, u8)>,
    ) -> Result<Entry, EntryError> {
        let mut e = Entry {
            pk: *keys.public(),
            seq,
            timestamp,
            kind,
            transports,
            links,
            sig: [0; SIG_LEN],
        };
        e.check_shape()?;
        e.sig = keys.sign(&e.signed_bytes());
        Ok(e)
    }

    /// Checks the limits and address syntax (not the signature).
    pub fn check_shape(&self) -> Result<(), EntryError> {
        match &self.kind {
            Kind::Client { relays } if relays.len() > MAX_RELAYS => {
                return Err(EntryError::TooMany {
                    field: "client.relays",
                    len: relays.len(),
                    max: MAX_RELAYS,
                });
            }
            Kind::Relay { addr, .. } => check_addr(addr)?,
            Kind::Client { .. } => {}
        }
        if self.transports.len() > MAX_TRANSPORTS {
            return Err(EntryError::TooMany {
                field: "transports",
                len: self.transports.len(),
                max: MAX_TRANSPORTS,
            });
        }
        if self.links.len() > MAX_LINKS {
            return Err(EntryError::TooMany {
                field: "links",
                len: self.links.len(),
                max: MAX_LINKS,
            });
        }
        self.transports.iter().try_for_each(|t| check_addr(t))
    }

    /// The canonical bytes the signature covers (see the module docs).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(ENTRY_DOMAIN);
        b.extend_from_slice(self.pk.as_bytes());
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.timestamp.to_be_bytes());
        match &self.kind {
            Kind::Client { relays } => {
                b.push(1);
                // check_shape bounds the counts and lengths below u8.
                b.push(relays.len().min(255) as u8);
                for r in relays {
                    b.extend_from_slice(r.as_bytes());
                }
            }
            Kind::Relay {
                addr,
                available_sessions,
            } => {
                b.push(2);
                push_short(&mut b, addr);
                b.extend_from_slice(&available_sessions.to_be_bytes());
            }
        }
        b.push(self.transports.len().min(255) as u8);
        for t in &self.transports {
            push_short(&mut b, t);
        }
        // Absent when empty: an entry without links signs what it signed before links.
        if !self.links.is_empty() {
            b.push(self.links.len().min(255) as u8);
            for (pk, t) in &self.links {
                b.extend_from_slice(pk.as_bytes());
                b.push(*t);
            }
        }
        b
    }

    /// Checks shape and signature.
    pub fn verify(&self) -> Result<(), EntryError> {
        self.check_shape()?;
        self.pk
            .verify(&self.signed_bytes(), &self.sig)
            .map_err(|_: IdentityError| EntryError::BadSignature)
    }

    /// True for relay entries.
    pub fn is_relay(&self) -> bool {
        matches!(self.kind, Kind::Relay { .. })
    }

    /// The JSON form.
    pub fn to_json(&self) -> Ordered {
        let mut o = Ordered::new()
            .field("pk", Out::Str(self.pk.to_hex()))
            .field("seq", Out::U64(self.seq))
            .field("timestamp", Out::U64(self.timestamp));
        o = match &self.kind {
            Kind::Client { relays } => o.field(
                "client",
                Out::Obj(
                    Ordered::new().field("relays", str_array(relays.iter().map(|r| r.to_hex()))),
                ),
            ),
            Kind::Relay {
                addr,
                available_sessions,
            } => o.field(
                "relay",
                Out::Obj(Ordered::new().field("addr", Out::Str(addr.clone())).field(
                    "available_sessions",
                    Out::U64(u64::from(*available_sessions)),
                )),
            ),
        };
        o = o.field("transports", str_array(self.transports.iter().cloned()));
        if !self.links.is_empty() {
            let links = self
                .links
                .iter()
                .map(|(pk, t)| format!("{}:{}", link_type_name(*t), pk.to_hex()));
            o = o.field("links", str_array(links));
        }
        o.field("sig", Out::Str(hex::encode(&self.sig)))
    }

    /// Parses the JSON form (shape checked, signature not; call [`Entry::verify`]).
    pub fn from_json(text: &str) -> Result<Entry, EntryError> {
        let obj = parse_object(text)?;
        let mut f = Fields::new(&obj, "");
        Self::from_fields(&mut f)
    }

    /// Parses an entry from an object reader (used for lists too).
    pub fn from_fields(f: &mut Fields<'_>) -> Result<Entry, EntryError> {
        let pk = parse_pk(f, "pk")?;
        let seq = f
            .opt_u64("seq", u64::MAX)?
            .ok_or_else(|| f.err("seq", "missing (required)"))?;
        let timestamp = f
            .opt_u64("timestamp", u64::MAX)?
            .ok_or_else(|| f.err("timestamp", "missing (required)"))?;
        let client = f.opt_object("client")?;
        let relay = f.opt_object("relay")?;
        let kind = match (client, relay) {
            (Some(mut c), None) => {
                let items = bounded_strs(&mut c, "relays", "client.relays", MAX_RELAYS)?;
                let mut relays = Vec::with_capacity(items.len());
                for (path, s) in items {
                    relays.push(PublicKey::from_hex(s).map_err(|e| {
                        EntryError::Json(JsonError {
                            path,
                            msg: e.to_string(),
                        })
                    })?);
                }
                c.deny_unknown()?;
                Kind::Client { relays }
            }
            (None, Some(mut r)) => {
                let addr = r.str("addr")?.to_string();
                let avail = r
                    .opt_u64("available_sessions", u64::from(u32::MAX))?
                    .unwrap_or(0) as u32;
                r.deny_unknown()?;
                Kind::Relay {
                    addr,
                    available_sessions: avail,
                }
            }
            (Some(_), Some(_)) => {
                return Err(f
                    .err("relay", "an entry is a client or a relay, not both")
                    .into());
            }
            (None, None) => {
                return Err(f
                    .err("client", "missing: an entry needs \"client\" or \"relay\"")
                    .into());
            }
        };
        let items = bounded_strs(f, "transports", "transports", MAX_TRANSPORTS)?;
        let transports = items.into_iter().map(|(_, s)| s.to_string()).collect();
        let items = bounded_strs(f, "links", "links", MAX_LINKS)?;
        let mut links = Vec::with_capacity(items.len());
        for (path, s) in items {
            links.push(parse_link(s).map_err(|msg| EntryError::Json(JsonError { path, msg }))?);
        }
        let sig = parse_sig(f, "sig")?;
        f.deny_unknown()?;
        let e = Entry {
            pk,
            seq,
            timestamp,
            kind,
            transports,
            links,
            sig,
        };
        e.check_shape()?;
        Ok(e)
    }
}

/// An optional array of strings of at most `max` items (`field` names it in the error).
fn bounded_strs<'a>(
    f: &mut Fields<'a>,
    key: &'a str,
    field: &'static str,
    max: usize,
) -> Result<Vec<(String, &'a str)>, EntryError> {
    let items = f.opt_str_array(key)?;
    if items.len() > max {
        return Err(EntryError::TooMany {
            field,
            len: items.len(),
            max,
        });
    }
    Ok(items)
}

fn push_short(b: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(MAX_ADDR_LEN)];
    b.push(bytes.len() as u8);
    b.extend_from_slice(bytes);
}

/// Reads a hex PK field.
pub fn parse_pk(f: &mut Fields<'_>, key: &'static str) -> Result<PublicKey, EntryError> {
    let s = f.str(key)?;
    PublicKey::from_hex(s).map_err(|e| f.err(key, e.to_string()).into())
}

/// Reads a hex signature field.
pub fn parse_sig(f: &mut Fields<'_>, key: &'static str) -> Result<[u8; SIG_LEN], EntryError> {
    let s = f.str(key)?;
    hex::decode_array::<SIG_LEN>(s).map_err(|e| f.err(key, e.to_string()).into())
}

/// A signed request to delete an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// Whose entry.
    pub pk: PublicKey,
    /// Above the stored entry's sequence.
    pub seq: u64,
    /// When it was signed, unix seconds.
    pub timestamp: u64,
    /// Signature over [`Deletion::signed_bytes`].
    pub sig: [u8; SIG_LEN],
}

impl Deletion {
    /// Builds and signs a deletion.
    pub fn new(keys: &Keypair, seq: u64, timestamp: u64) -> Deletion {
        let mut d = Deletion {
            pk: *keys.public(),
            seq,
            timestamp,
            sig: [0; SIG_LEN],
        };
        d.sig = keys.sign(&d.signed_bytes());
        d
    }

    /// The canonical bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(80);
        b.extend_from_slice(DELETE_DOMAIN);
        b.extend_from_slice(self.pk.as_bytes());
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.timestamp.to_be_bytes());
        b
    }

    /// Checks the signature.
    pub fn verify(&self) -> Result<(), EntryError> {
        self.pk
            .verify(&self.signed_bytes(), &self.sig)
            .map_err(|_| EntryError::BadSignature)
    }

    /// The JSON form.
    pub fn to_json(&self) -> Ordered {
        Ordered::new()
            .field("pk", Out::Str(self.pk.to_hex()))
            .field("seq", Out::U64(self.seq))
            .field("timestamp", Out::U64(self.timestamp))
            .field("sig", Out::Str(hex::encode(&self.sig)))
    }

    /// Parses the JSON form (signature not checked).
    pub fn from_json(text: &str) -> Result<Deletion, EntryError> {
        let obj = parse_object(text)?;
        let mut f = Fields::new(&obj, "");
        let pk = parse_pk(&mut f, "pk")?;
        let seq = f
            .opt_u64("seq", u64::MAX)?
            .ok_or_else(|| f.err("seq", "missing (required)"))?;
        let timestamp = f
            .opt_u64("timestamp", u64::MAX)?
            .ok_or_else(|| f.err("timestamp", "missing (required)"))?;
        let sig = parse_sig(&mut f, "sig")?;
        f.deny_unknown()?;
        Ok(Deletion {
            pk,
            seq,
            timestamp,
            sig,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: u8) -> Keypair {
        Keypair::from_seed(&[n; 32])
    }

    #[test]
    fn client_round_trip_and_verify() {
        let k = keys(1);
        let relays = vec![*keys(2).public(), *keys(3).public()];
        let e = Entry::client(&k, 5, 1_763_800_000, relays, vec!["192.0.2.1:7777".into()]).unwrap();
        e.verify().unwrap();
        let text = e.to_json().to_compact();
        let back = Entry::from_json(&text).unwrap();
        assert_eq!(back, e);
        back.verify().unwrap();
    }

    #[test]
    fn relay_round_trip_and_tamper() {
        let k = keys(9);
        let e = Entry::relay(&k, 1, 1_763_800_000, "127.0.0.1:8080".into(), 1000).unwrap();
        e.verify().unwrap();
        let back = Entry::from_json(&e.to_json().to_pretty()).unwrap();
        assert_eq!(back, e);
        // Changing any signed field breaks the signature.
        let mut t = e.clone();
        t.seq += 1;
        assert_eq!(t.verify(), Err(EntryError::BadSignature));
        let mut t = e.clone();
        t.kind = Kind::Relay {
            addr: "127.0.0.1:8081".into(),
            available_sessions: 1000,
        };
        assert_eq!(t.verify(), Err(EntryError::BadSignature));
        let mut t = e.clone();
        t.pk = *keys(10).public();
        assert_eq!(t.verify(), Err(EntryError::BadSignature));
    }

    #[test]
    fn canonical_bytes_golden() {
        let k = keys(1);
        let e = Entry::relay(&k, 2, 3, "h:1".into(), 4).unwrap();
        let b = e.signed_bytes();
        let mut want = b"skywire-rs/disc/1\0".to_vec();
        want.extend_from_slice(k.public().as_bytes());
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3]);
        want.extend_from_slice(&[2, 3, b'h', b':', b'1', 0, 0, 0, 4, 0]);
        assert_eq!(b, want);
    }

    #[test]
    fn bad_json_names_the_field() {
        let k = keys(1);
        let e = Entry::client(&k, 1, 1, vec![], vec![]).unwrap();
        let good = e.to_json().to_compact();
        let cases = [
            (good.replace("\"seq\":1", "\"seq\":\"1\""), "seq"),
            (good.replace(&k.public().to_hex(), "zz"), "pk"),
            (good.replace("\"client\"", "\"clint\""), "client"),
            (
                good.replace("\"transports\":[]", "\"transports\":[\"nope\"]"),
                "nope",
            ),
            ("[]".to_string(), "object"),
        ];
        for (text, want) in cases {
            let err = Entry::from_json(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{text} -> {err}");
        }
        let many: Vec<String> = (0..=MAX_TRANSPORTS)
            .map(|i| format!("h:{}", i + 1))
            .collect();
        assert!(matches!(
            Entry::client(&k, 1, 1, vec![], many),
            Err(EntryError::TooMany { .. })
        ));
    }

    #[test]
    fn links_are_signed_and_round_trip() {
        let k = keys(1);
        let links = vec![(*keys(2).public(), LINK_STCP), (*keys(3).public(), 9)];
        let e =
            Entry::client_with_links(&k, 5, 6, vec![], vec!["h:1".into()], links.clone()).unwrap();
        e.verify().unwrap();
        let text = e.to_json().to_compact();
        assert!(
            text.contains(&format!("\"stcp:{}\"", keys(2).public())),
            "{text}"
        );
        assert!(
            text.contains(&format!("\"9:{}\"", keys(3).public())),
            "{text}"
        );
        let back = Entry::from_json(&text).unwrap();
        assert_eq!(back, e);
        back.verify().unwrap();
        // The links are inside the signature.
        let mut t = e.clone();
        t.links[0].1 = LINK_DMSG;
        assert_eq!(t.verify(), Err(EntryError::BadSignature));
        let mut t = e.clone();
        t.links.pop();
        assert_eq!(t.verify(), Err(EntryError::BadSignature));
        // Golden tail of the canonical bytes: n ‖ (pk ‖ type)…
        let b = e.signed_bytes();
        let tail = &b[b.len() - 67..];
        assert_eq!(tail[0], 2);
        assert_eq!(&tail[1..33], keys(2).public().as_bytes());
        assert_eq!((tail[33], tail[66]), (1, 9));
        // Without links: the old bytes (no count byte), and no JSON field.
        let old = Entry::client(&k, 5, 6, vec![], vec!["h:1".into()]).unwrap();
        assert_eq!(old.signed_bytes().len(), b.len() - 67);
        assert!(!old.to_json().to_compact().contains("links"));
        let too_many = vec![(*keys(2).public(), 1); MAX_LINKS + 1];
        assert!(matches!(
            Entry::client_with_links(&k, 1, 1, vec![], vec![], too_many),
            Err(EntryError::TooMany { field: "links", .. })
        ));
        for bad in ["stcp", "tcp:00", "stcp:zz", "300:00"] {
            let text = text.replace(&format!("stcp:{}", keys(2).public()), bad);
            let err = Entry::from_json(&text).unwrap_err().to_string();
            assert!(err.contains("links[0]"), "{bad} -> {err}");
        }
    }

    #[test]
    fn addresses() {
        for ok in ["127.0.0.1:80", "[::1]:8080", "relay.example:65535"] {
            check_addr(ok).unwrap();
        }
        for bad in ["", "host", ":80", "h:0", "h:65536", "h :1", "h:1\n"] {
            assert!(check_addr(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deletion_round_trip() {
        let k = keys(4);
        let d = Deletion::new(&k, 9, 100);
        d.verify().unwrap();
        let back = Deletion::from_json(&d.to_json().to_compact()).unwrap();
        assert_eq!(back, d);
        let mut t = d.clone();
        t.seq = 10;
        assert!(t.verify().is_err());
    }
}
