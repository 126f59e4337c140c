//! The canonical bytes of a group feed entry (docs/protocol.md "Skychat groups").
//!
//! An entry is written by its author, who signs it, and then sequenced by the group's owner,
//! who countersigns it with its place in the feed. All integers are big-endian; `n` is the
//! body length.
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 1 | version, [`VERSION`] (1) |
//! | 1 | 1 | kind ([`Kind`]: 1 create, 2 post, 3 add, 4 remove, 5 promote, 6 demote, 7 leave, 8 rename, 9 rotate, 10 delete) |
//! | 2 | 16 | group id (random) |
//! | 18 | 32 | owner public key |
//! | 50 | 32 | author public key |
//! | 82 | 8 | author timestamp, unix ms (u64) |
//! | 90 | 8 | author entry id (u64, random; a resend keeps it) |
//! | 98 | 4 | key epoch (u32; 0 in a public group) |
//! | 102 | 4 | body length `n` (u32, at most [`MAX_BODY`]) |
//! | 106 | n | body (by kind, below) |
//! | 106 + n | 64 | author signature over `"skychat-group-entry-v1\0"` ‖ bytes `0 .. 106+n` |
//! | 170 + n | 8 | seq (u64, 1-based, assigned by the owner) |
//! | 178 + n | 64 | owner signature over `"skychat-group-seq-v1\0"` ‖ bytes `0 .. 178+n` (the whole author part, its signature included, and the seq) |
//!
//! The author part alone (bytes `0 .. 170+n`, [`UnsequencedEntry`]) is what a member sends
//! the owner; the whole (`242 + n` bytes, [`SequencedEntry`]) is what the feed holds.
//!
//! Bodies, by kind (names are UTF-8, 1 to [`MAX_NAME`] bytes, no control characters):
//!
//! | kind | body |
//! |---|---|
//! | 1 create | mode u8 (0 public, 1 private) ‖ name |
//! | 2 post | public: the text (UTF-8); private: nonce [12] ‖ ChaCha20-Poly1305 ciphertext ‖ tag [16] |
//! | 3 add, 4 remove, 5 promote, 6 demote | the member's public key [32] |
//! | 7 leave, 10 delete | empty |
//! | 8 rename | name |
//! | 9 rotate | the new key epoch (u32) |
//!
//! [`decode`] checks the shape only (lengths, version, kind, body by kind, keys that are valid
//! points) and never panics; the signatures are checked by [`SequencedEntry::verify`], and
//! who may write what by the roster. A decoded entry re-encodes to exactly its input bytes.

use std::fmt;

use crate::crypto::hex;
use crate::crypto::{Keypair, PublicKey};

/// The entry version this code writes and reads.
pub const VERSION: u8 = 1;
/// The largest body, in bytes (a private post's nonce and tag included).
pub const MAX_BODY: usize = 16 * 1024;
/// The longest group name, in bytes of UTF-8.
pub const MAX_NAME: usize = 64;
/// Bytes of an author part before the body.
pub const HEAD_LEN: usize = 1 + 1 + 16 + 32 + 32 + 8 + 8 + 4 + 4;
/// Bytes of a signature.
pub const SIG_LEN: usize = 64;
/// Bytes of an unsequenced entry besides its body.
pub const UNSEQ_OVERHEAD: usize = HEAD_LEN + SIG_LEN;
/// Bytes of a sequenced entry besides its body.
pub const SEQ_OVERHEAD: usize = UNSEQ_OVERHEAD + 8 + SIG_LEN;
/// The largest sequenced entry.
pub const MAX_ENTRY: usize = SEQ_OVERHEAD + MAX_BODY;
/// Domain separation of the author's signature.
pub const AUTHOR_DOMAIN: &[u8] = b"skychat-group-entry-v1\0";
/// Domain separation of the owner's signature.
pub const OWNER_DOMAIN: &[u8] = b"skychat-group-seq-v1\0";

/// A group's id: 16 random bytes, written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub [u8; 16]);

impl GroupId {
    /// A fresh random id (ids must be unique, not secret: without OS randomness it falls back
    /// on [`random_id`]'s clock and counter).
    pub fn random() -> GroupId {
        let mut b = [0u8; 16];
        if getrandom::fill(&mut b).is_err() {
            b[..8].copy_from_slice(&random_id().to_be_bytes());
            b[8..].copy_from_slice(&random_id().to_be_bytes());
        }
        GroupId(b)
    }

    /// Parses 32 hex digits.
    pub fn from_hex(s: &str) -> Result<GroupId, hex::HexError> {
        hex::decode_array(s).map(GroupId)
    }

    /// 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({})", self.to_hex())
    }
}

/// Who can read a group's posts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Mode {
    /// Posts are plain text; anyone holding an entry can read it.
    Public,
    /// Posts are encrypted with the group key of their epoch.
    Private,
}

impl Mode {
    /// `"public"` or `"private"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Public => "public",
            Mode::Private => "private",
        }
    }

    /// The inverse of [`Mode::as_str`].
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "public" => Some(Mode::Public),
            "private" => Some(Mode::Private),
            _ => None,
        }
    }

    fn byte(self) -> u8 {
        match self {
            Mode::Public => 0,
            Mode::Private => 1,
        }
    }
}

/// An entry's kind: the byte at offset 1.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Kind {
    /// The first entry: the group's name and mode.
    Create,
    /// A message.
    Post,
    /// A member joins the roster.
    Add,
    /// A member is taken off the roster.
    Remove,
    /// A member becomes an admin.
    Promote,
    /// An admin becomes a member again.
    Demote,
    /// The author leaves.
    Leave,
    /// A new name.
    Rename,
    /// A new key epoch (private groups).
    Rotate,
    /// The owner ends the group.
    Delete,
}

impl Kind {
    /// The wire byte.
    pub fn byte(self) -> u8 {
        match self {
            Kind::Create => 1,
            Kind::Post => 2,
            Kind::Add => 3,
            Kind::Remove => 4,
            Kind::Promote => 5,
            Kind::Demote => 6,
            Kind::Leave => 7,
            Kind::Rename => 8,
            Kind::Rotate => 9,
            Kind::Delete => 10,
        }
    }

    /// The kind of a wire byte.
    pub fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Create,
            2 => Kind::Post,
            3 => Kind::Add,
            4 => Kind::Remove,
            5 => Kind::Promote,
            6 => Kind::Demote,
            7 => Kind::Leave,
            8 => Kind::Rename,
            9 => Kind::Rotate,
            10 => Kind::Delete,
            _ => return None,
        })
    }

    /// Lowercase name (`"post"`), for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Post => "post",
            Kind::Add => "add",
            Kind::Remove => "remove",
            Kind::Promote => "promote",
            Kind::Demote => "demote",
            Kind::Leave => "leave",
            Kind::Rename => "rename",
            Kind::Rotate => "rotate",
            Kind::Delete => "delete",
        }
    }
}

/// An entry's body, by kind.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Body {
    /// The group's name and mode.
    Create {
        /// The name.
        name: String,
        /// Public or private.
        mode: Mode,
    },
    /// A message: UTF-8 text in a public group, `nonce ‖ ciphertext ‖ tag` in a private one
    /// (`crypt`).
    Post(Vec<u8>),
    /// Adds a member.
    Add(PublicKey),
    /// Removes a member.
    Remove(PublicKey),
    /// Makes a member an admin.
    Promote(PublicKey),
    /// Makes an admin a member.
    Demote(PublicKey),
    /// The author leaves the group.
    Leave,
    /// Renames the group.
    Rename(String),
    /// Starts a new key epoch (the number only; the key travels out of band).
    Rotate(u32),
    /// Ends the group.
    Delete,
}

impl Body {
    /// The kind this body belongs to.
    pub fn kind(&self) -> Kind {
        match self {
            Body::Create { .. } => Kind::Create,
            Body::Post(_) => Kind::Post,
            Body::Add(_) => Kind::Add,
            Body::Remove(_) => Kind::Remove,
            Body::Promote(_) => Kind::Promote,
            Body::Demote(_) => Kind::Demote,
            Body::Leave => Kind::Leave,
            Body::Rename(_) => Kind::Rename,
            Body::Rotate(_) => Kind::Rotate,
            Body::Delete => Kind::Delete,
        }
    }

    /// The body's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Body::Create { name, mode } => {
                let mut v = Vec::with_capacity(1 + name.len());
                v.push(mode.byte());
                v.extend_from_slice(name.as_bytes());
                v
            }
            Body::Post(b) => b.clone(),
            Body::Add(pk) | Body::Remove(pk) | Body::Promote(pk) | Body::Demote(pk) => {
                pk.as_bytes().to_vec()
            }
            Body::Leave | Body::Delete => Vec::new(),
            Body::Rename(name) => name.as_bytes().to_vec(),
            Body::Rotate(epoch) => epoch.to_be_bytes().to_vec(),
        }
    }

    /// Parses the body of an entry of kind `kind`.
    pub fn decode(kind: Kind, b: &[u8]) -> Result<Body, EntryError> {
        let bad = |why: String| EntryError::Body { kind, why };
        let pk = |b: &[u8]| -> Result<PublicKey, EntryError> {
            let arr: [u8; 32] = b
                .try_into()
                .map_err(|_| bad(format!("{} bytes, want a 32-byte public key", b.len())))?;
            PublicKey::from_bytes(&arr).map_err(|e| bad(format!("member key: {e}")))
        };
        Ok(match kind {
            Kind::Create => {
                let Some((&m, name)) = b.split_first() else {
                    return Err(bad("empty, want mode and name".into()));
                };
                let mode = match m {
                    0 => Mode::Public,
                    1 => Mode::Private,
                    other => return Err(bad(format!("mode {other}, want 0 or 1"))),
                };
                Body::Create {
                    name: parse_name(name).map_err(bad)?,
                    mode,
                }
            }
            Kind::Post => Body::Post(b.to_vec()),
            Kind::Add => Body::Add(pk(b)?),
            Kind::Remove => Body::Remove(pk(b)?),
            Kind::Promote => Body::Promote(pk(b)?),
            Kind::Demote => Body::Demote(pk(b)?),
            Kind::Leave | Kind::Delete => {
                if !b.is_empty() {
                    return Err(bad(format!("{} bytes, want none", b.len())));
                }
                if kind == Kind::Leave {
                    Body::Leave
                } else {
                    Body::Delete
                }
            }
            Kind::Rename => Body::Rename(parse_name(b).map_err(bad)?),
            Kind::Rotate => {
                let arr: [u8; 4] = b
                    .try_into()
                    .map_err(|_| bad(format!("{} bytes, want a u32 epoch", b.len())))?;
                Body::Rotate(u32::from_be_bytes(arr))
            }
        })
    }
}

/// Checks a group name: UTF-8, 1 to [`MAX_NAME`] bytes, no control characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "the name is {} bytes, more than {MAX_NAME}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("the name has a control character".into());
    }
    Ok(())
}

fn parse_name(b: &[u8]) -> Result<String, String> {
    let s = std::str::from_utf8(b).map_err(|_| "the name is not UTF-8".to_string())?;
    check_name(s)?;
    Ok(s.to_string())
}

/// Why bytes are not an entry, or an entry cannot be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryError {
    /// The bytes end inside a field.
    Short {
        /// The field cut off.
        field: &'static str,
        /// Bytes needed up to the end of that field.
        need: usize,
        /// Bytes there are.
        have: usize,
    },
    /// Bytes after the last field.
    Trailing(usize),
    /// A version this code does not read.
    Version(u8),
    /// An unknown kind byte.
    Kind(u8),
    /// A body length over [`MAX_BODY`].
    BodyTooLong(usize),
    /// A body that does not fit its kind.
    Body {
        /// The kind.
        kind: Kind,
        /// What is wrong.
        why: String,
    },
    /// The owner or author field is not a valid public key.
    Key {
        /// `"owner"` or `"author"`.
        field: &'static str,
        /// Why.
        why: String,
    },
    /// Seq 0 (seqs start at 1).
    SeqZero,
    /// The author's signature does not verify.
    AuthorSignature,
    /// The owner's signature does not verify.
    OwnerSignature,
    /// Sequencing with keys that are not the entry's owner.
    NotOwner,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryError::Short { field, need, have } => write!(
                f,
                "entry cut short in the {field} field ({have} bytes, need {need})"
            ),
            EntryError::Trailing(n) => write!(f, "{n} bytes after the end of the entry"),
            EntryError::Version(v) => write!(f, "entry version {v}, this code reads {VERSION}"),
            EntryError::Kind(k) => write!(f, "unknown entry kind {k}"),
            EntryError::BodyTooLong(n) => {
                write!(f, "body of {n} bytes, more than the {MAX_BODY} allowed")
            }
            EntryError::Body { kind, why } => write!(f, "bad {} body: {why}", kind.name()),
            EntryError::Key { field, why } => write!(f, "bad {field} key: {why}"),
            EntryError::SeqZero => f.write_str("seq 0 (seqs start at 1)"),
            EntryError::AuthorSignature => f.write_str("the author's signature does not verify"),
            EntryError::OwnerSignature => f.write_str("the owner's signature does not verify"),
            EntryError::NotOwner => f.write_str("these keys are not the group owner's"),
        }
    }
}

impl std::error::Error for EntryError {}

/// What an author fills in before signing (the author is the signing key).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Draft {
    /// The group.
    pub group: GroupId,
    /// The group's owner.
    pub owner: PublicKey,
    /// The author's clock, unix ms.
    pub ts_ms: u64,
    /// Random, kept by a resend so the owner can tell it apart.
    pub entry_id: u64,
    /// The key epoch the author is at (0 in a public group).
    pub epoch: u32,
    /// The body.
    pub body: Body,
}

impl Draft {
    /// A draft with a fresh random entry id.
    pub fn new(group: GroupId, owner: PublicKey, epoch: u32, body: Body, ts_ms: u64) -> Draft {
        Draft {
            group,
            owner,
            ts_ms,
            entry_id: random_id(),
            epoch,
            body,
        }
    }
}

/// A random u64 (the clock and a counter if the OS has no randomness: ids need only differ,
/// not be secret).
pub fn random_id() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_ok() {
        return u64::from_be_bytes(b);
    }
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t.rotate_left(17) ^ N.fetch_add(1, Ordering::Relaxed)
}

/// An entry as its author signed it, before the owner gave it a seq.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct UnsequencedEntry {
    /// The group.
    pub group: GroupId,
    /// The group's owner.
    pub owner: PublicKey,
    /// The author.
    pub author: PublicKey,
    /// The author's clock, unix ms.
    pub ts_ms: u64,
    /// The author's entry id.
    pub entry_id: u64,
    /// The key epoch.
    pub epoch: u32,
    /// The body.
    pub body: Body,
    /// The author's signature.
    pub author_sig: [u8; SIG_LEN],
}

impl UnsequencedEntry {
    /// Signs `draft` as `keys`. Fails when the body is over [`MAX_BODY`] or a name is bad.
    pub fn sign(keys: &Keypair, draft: Draft) -> Result<UnsequencedEntry, EntryError> {
        check_body(&draft.body)?;
        let mut e = UnsequencedEntry {
            group: draft.group,
            owner: draft.owner,
            author: *keys.public(),
            ts_ms: draft.ts_ms,
            entry_id: draft.entry_id,
            epoch: draft.epoch,
            body: draft.body,
            author_sig: [0; SIG_LEN],
        };
        let mut msg = AUTHOR_DOMAIN.to_vec();
        e.write_head_and_body(&mut msg);
        e.author_sig = keys.sign(&msg);
        Ok(e)
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.body.kind()
    }

    fn write_head_and_body(&self, out: &mut Vec<u8>) {
        let body = self.body.encode();
        out.reserve(body.len() + SEQ_OVERHEAD);
        out.push(VERSION);
        out.push(self.kind().byte());
        out.extend_from_slice(&self.group.0);
        out.extend_from_slice(self.owner.as_bytes());
        out.extend_from_slice(self.author.as_bytes());
        out.extend_from_slice(&self.ts_ms.to_be_bytes());
        out.extend_from_slice(&self.entry_id.to_be_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
    }

    /// The author part's bytes (what a member sends the owner).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_head_and_body(&mut v);
        v.extend_from_slice(&self.author_sig);
        v
    }

    /// Parses an author part; exactly the bytes of one, nothing after.
    pub fn decode(b: &[u8]) -> Result<UnsequencedEntry, EntryError> {
        let (e, used) = parse_author_part(b)?;
        if used != b.len() {
            return Err(EntryError::Trailing(b.len() - used));
        }
        Ok(e)
    }

    /// Checks the author's signature.
    pub fn verify(&self) -> Result<(), EntryError> {
        let mut msg = AUTHOR_DOMAIN.to_vec();
        self.write_head_and_body(&mut msg);
        self.author
            .verify(&msg, &self.author_sig)
            .map_err(|_| EntryError::AuthorSignature)
    }
}

/// An entry with its seq and the owner's countersignature: what the feed holds.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SequencedEntry {
    /// The author part.
    pub entry: UnsequencedEntry,
    /// Its place in the feed, from 1.
    pub seq: u64,
    /// The owner's signature.
    pub owner_sig: [u8; SIG_LEN],
}

impl SequencedEntry {
    /// Sequences `unseq` at `seq` with the owner's keys. Checks nothing about the author: the
    /// caller (the owner feed) has.
    pub fn seal(
        owner_keys: &Keypair,
        unseq: UnsequencedEntry,
        seq: u64,
    ) -> Result<SequencedEntry, EntryError> {
        if owner_keys.public() != &unseq.owner {
            return Err(EntryError::NotOwner);
        }
        if seq == 0 {
            return Err(EntryError::SeqZero);
        }
        let mut msg = OWNER_DOMAIN.to_vec();
        msg.extend_from_slice(&unseq.encode());
        msg.extend_from_slice(&seq.to_be_bytes());
        let owner_sig = owner_keys.sign(&msg);
        Ok(SequencedEntry {
            entry: unseq,
            seq,
            owner_sig,
        })
    }

    /// The whole entry's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.entry.encode();
        v.extend_from_slice(&self.seq.to_be_bytes());
        v.extend_from_slice(&self.owner_sig);
        v
    }

    /// Parses a whole entry; exactly the bytes of one, nothing after.
    pub fn decode(b: &[u8]) -> Result<SequencedEntry, EntryError> {
        let (entry, at) = parse_author_part(b)?;
        let seq = u64::from_be_bytes(take(b, at, "seq")?);
        let owner_sig: [u8; SIG_LEN] = take(b, at + 8, "owner signature")?;
        let used = at + 8 + SIG_LEN;
        if used != b.len() {
            return Err(EntryError::Trailing(b.len() - used));
        }
        if seq == 0 {
            return Err(EntryError::SeqZero);
        }
        Ok(SequencedEntry {
            entry,
            seq,
            owner_sig,
        })
    }

    /// Checks the owner's signature, then the author's.
    pub fn verify(&self) -> Result<(), EntryError> {
        let mut msg = OWNER_DOMAIN.to_vec();
        msg.extend_from_slice(&self.entry.encode());
        msg.extend_from_slice(&self.seq.to_be_bytes());
        self.entry
            .owner
            .verify(&msg, &self.owner_sig)
            .map_err(|_| EntryError::OwnerSignature)?;
        self.entry.verify()
    }
}

/// Parses a whole (sequenced) entry: [`SequencedEntry::decode`].
pub fn decode(b: &[u8]) -> Result<SequencedEntry, EntryError> {
    SequencedEntry::decode(b)
}

/// The bytes of a whole entry: [`SequencedEntry::encode`].
pub fn encode(e: &SequencedEntry) -> Vec<u8> {
    e.encode()
}

/// The seq of a whole entry's bytes without parsing the rest (for ordering a batch); `None`
/// when the bytes are too short to hold one.
pub fn peek_seq(b: &[u8]) -> Option<u64> {
    let n = u32::from_be_bytes(b.get(102..106)?.try_into().ok()?) as usize;
    let at = HEAD_LEN.checked_add(n)?.checked_add(SIG_LEN)?;
    Some(u64::from_be_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Checks a body against the caps (used before signing).
fn check_body(body: &Body) -> Result<(), EntryError> {
    match body {
        Body::Create { name, .. } | Body::Rename(name) => {
            check_name(name).map_err(|why| EntryError::Body {
                kind: body.kind(),
                why,
            })?
        }
        Body::Post(b) if b.len() > MAX_BODY => return Err(EntryError::BodyTooLong(b.len())),
        _ => {}
    }
    Ok(())
}

/// `N` bytes at `at`, or the error naming the field cut short.
fn take<const N: usize>(b: &[u8], at: usize, field: &'static str) -> Result<[u8; N], EntryError> {
    let short = EntryError::Short {
        field,
        need: at.saturating_add(N),
        have: b.len(),
    };
    let Some(end) = at.checked_add(N) else {
        return Err(short);
    };
    let s = b.get(at..end).ok_or(short)?;
    let mut out = [0u8; N];
    out.copy_from_slice(s);
    Ok(out)
}

fn key(bytes: [u8; 32], field: &'static str) -> Result<PublicKey, EntryError> {
    PublicKey::from_bytes(&bytes).map_err(|e| EntryError::Key {
        field,
        why: e.to_string(),
    })
}

/// Parses the author part at the start of `b`; returns it and the bytes it used.
fn parse_author_part(b: &[u8]) -> Result<(UnsequencedEntry, usize), EntryError> {
    let [version] = take::<1>(b, 0, "version")?;
    if version != VERSION {
        return Err(EntryError::Version(version));
    }
    let [k] = take::<1>(b, 1, "kind")?;
    let kind = Kind::from_byte(k).ok_or(EntryError::Kind(k))?;
    let group = GroupId(take(b, 2, "group id")?);
    let owner = take(b, 18, "owner key")?;
    let author = take(b, 50, "author key")?;
    let ts_ms = u64::from_be_bytes(take(b, 82, "timestamp")?);
    let entry_id = u64::from_be_bytes(take(b, 90, "entry id")?);
    let epoch = u32::from_be_bytes(take(b, 98, "epoch")?);
    let n = u32::from_be_bytes(take(b, 102, "body length")?) as usize;
    if n > MAX_BODY {
        return Err(EntryError::BodyTooLong(n));
    }
    let body_end = HEAD_LEN + n;
    let raw = b.get(HEAD_LEN..body_end).ok_or(EntryError::Short {
        field: "body",
        need: body_end,
        have: b.len(),
    })?;
    let author_sig: [u8; SIG_LEN] = take(b, body_end, "author signature")?;
    let owner = key(owner, "owner")?;
    let author = key(author, "author")?;
    let body = Body::decode(kind, raw)?;
    Ok((
        UnsequencedEntry {
            group,
            owner,
            author,
            ts_ms,
            entry_id,
            epoch,
            body,
            author_sig,
        },
        body_end + SIG_LEN,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn seed(start: u8) -> [u8; 32] {
        std::array::from_fn(|i| start + i as u8)
    }

    /// The entry of docs/protocol.md "Skychat groups": a public post `hi` at seq 3.
    pub(crate) fn golden() -> SequencedEntry {
        let owner = Keypair::from_seed(&seed(0x00));
        let author = Keypair::from_seed(&seed(0x20));
        let draft = Draft {
            group: GroupId(std::array::from_fn(|i| 0x10 + i as u8)),
            owner: *owner.public(),
            ts_ms: 1_700_000_000_000,
            entry_id: 0x0123_4567_89ab_cdef,
            epoch: 0,
            body: Body::Post(b"hi".to_vec()),
        };
        let u = UnsequencedEntry::sign(&author, draft).unwrap();
        SequencedEntry::seal(&owner, u, 3).unwrap()
    }

    /// [`golden`]'s bytes (and docs/protocol.md's).
    pub(crate) const GOLDEN_HEX: &str = "0102101112131415161718191a1b1c1d1e1f03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b829acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd70000018bcfe568000123456789abcdef00000000000000026869e64b1865d1e9691b2bed882fac68a9a42abf5c04f59c0ca02522cad088ada607c80c9100e01bd96a9676799ed00040d14efead4dc946514cf2635635c99249080000000000000003ab82a564ea5d0e5755da7346c87e2700613d717df7363e2535d5c302a5c55f2c622bf2bd0e6229ac50344a9423b6181a9a4a4adb5f2555ed10b925fb185c630f";

    #[test]
    fn golden_bytes_match_the_docs() {
        let e = golden();
        let bytes = e.encode();
        let hex = hex::encode(&bytes);
        assert_eq!(hex, GOLDEN_HEX);
        assert_eq!(bytes.len(), SEQ_OVERHEAD + 2);
        let doc = include_str!("../../../../docs/protocol.md");
        assert!(
            doc.contains(&hex),
            "docs/protocol.md does not hold the golden entry {hex}"
        );
        e.verify().unwrap();
        assert_eq!(decode(&bytes).unwrap(), e);
    }

    fn every_body() -> Vec<Body> {
        let pk = *Keypair::from_seed(&seed(0x40)).public();
        vec![
            Body::Create {
                name: "Pi club é".into(),
                mode: Mode::Private,
            },
            Body::Create {
                name: "g".into(),
                mode: Mode::Public,
            },
            Body::Post(Vec::new()),
            Body::Post(vec![0xff; MAX_BODY]),
            Body::Add(pk),
            Body::Remove(pk),
            Body::Promote(pk),
            Body::Demote(pk),
            Body::Leave,
            Body::Rename("n".repeat(MAX_NAME)),
            Body::Rotate(u32::MAX),
            Body::Delete,
        ]
    }

    fn sealed(body: Body, seq: u64) -> SequencedEntry {
        let owner = Keypair::from_seed(&seed(0x00));
        let d = Draft::new(GroupId([5; 16]), *owner.public(), 2, body, 99);
        SequencedEntry::seal(&owner, UnsequencedEntry::sign(&owner, d).unwrap(), seq).unwrap()
    }

    #[test]
    fn every_kind_round_trips_and_verifies() {
        for body in every_body() {
            let e = sealed(body.clone(), u64::MAX);
            let b = e.encode();
            assert_eq!(b.len(), SEQ_OVERHEAD + body.encode().len());
            assert_eq!(decode(&b).unwrap(), e);
            assert_eq!(peek_seq(&b), Some(u64::MAX));
            e.verify().unwrap();
            let u = e.entry.encode();
            assert_eq!(&b[..u.len()], &u[..]);
            assert_eq!(UnsequencedEntry::decode(&u).unwrap(), e.entry);
            assert_eq!(Kind::from_byte(body.kind().byte()), Some(body.kind()));
        }
    }

    #[test]
    fn every_truncation_and_extension_fails_cleanly() {
        for body in every_body()
            .into_iter()
            .filter(|b| !matches!(b, Body::Post(p) if p.len() > 100))
        {
            let b = sealed(body, 7).encode();
            for n in 0..b.len() {
                assert!(decode(&b[..n]).is_err(), "{n} of {} bytes decoded", b.len());
                assert_eq!(peek_seq(&b[..n]).is_some(), n >= b.len() - SIG_LEN);
            }
            let mut long = b.clone();
            long.push(0);
            assert_eq!(decode(&long), Err(EntryError::Trailing(1)));
            let u_len = b.len() - 8 - SIG_LEN;
            assert!(UnsequencedEntry::decode(&b[..u_len]).is_ok());
            assert_eq!(
                UnsequencedEntry::decode(&b),
                Err(EntryError::Trailing(8 + SIG_LEN))
            );
            for n in 0..u_len {
                assert!(UnsequencedEntry::decode(&b[..n]).is_err());
            }
        }
    }

    #[test]
    fn bad_fields_are_refused() {
        let good = golden().encode();
        let with = |at: usize, bytes: &[u8]| {
            let mut b = good.clone();
            b[at..at + bytes.len()].copy_from_slice(bytes);
            decode(&b)
        };
        assert_eq!(with(0, &[2]), Err(EntryError::Version(2)));
        assert_eq!(with(1, &[0]), Err(EntryError::Kind(0)));
        assert_eq!(with(1, &[11]), Err(EntryError::Kind(11)));
        // A body length past the cap, and one past the end of the bytes.
        assert_eq!(
            with(102, &((MAX_BODY + 1) as u32).to_be_bytes()),
            Err(EntryError::BodyTooLong(MAX_BODY + 1))
        );
        assert_eq!(
            with(102, &u32::MAX.to_be_bytes()),
            Err(EntryError::BodyTooLong(u32::MAX as usize))
        );
        assert!(matches!(
            with(102, &(MAX_BODY as u32).to_be_bytes()),
            Err(EntryError::Short { field: "body", .. })
        ));
        // The identity point is no key; nor are bytes off the curve.
        let mut id_point = [0u8; 32];
        id_point[0] = 1;
        assert!(matches!(
            with(18, &id_point),
            Err(EntryError::Key { field: "owner", .. })
        ));
        assert!(matches!(
            with(50, &[0xff; 32]),
            Err(EntryError::Key {
                field: "author",
                ..
            })
        ));
        // A post `hi` becomes a kind whose body it does not fit (as a rename it is a name).
        for k in [
            Kind::Add,
            Kind::Leave,
            Kind::Rotate,
            Kind::Create,
            Kind::Delete,
        ] {
            assert!(
                matches!(with(1, &[k.byte()]), Err(EntryError::Body { .. })),
                "{k:?}"
            );
        }
        let seq_at = good.len() - 8 - SIG_LEN;
        assert_eq!(with(seq_at, &[0; 8]), Err(EntryError::SeqZero));
        // A flipped byte anywhere: refused by decode or by a signature.
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x40;
            if let Ok(e) = decode(&b) {
                assert!(e.verify().is_err(), "byte {i} flipped still verifies");
            }
        }
    }

    #[test]
    fn signing_enforces_the_caps() {
        let k = Keypair::from_seed(&seed(0));
        let d = |body| Draft::new(GroupId([1; 16]), *k.public(), 0, body, 0);
        assert_eq!(
            UnsequencedEntry::sign(&k, d(Body::Post(vec![0; MAX_BODY + 1]))),
            Err(EntryError::BodyTooLong(MAX_BODY + 1))
        );
        assert!(UnsequencedEntry::sign(&k, d(Body::Rename("n".repeat(MAX_NAME + 1)))).is_err());
        assert!(UnsequencedEntry::sign(&k, d(Body::Rename(String::new()))).is_err());
        assert!(UnsequencedEntry::sign(&k, d(Body::Rename("a\nb".into()))).is_err());
        let mode_name = |mode: Mode, name: &str| Body::Create {
            name: name.into(),
            mode,
        };
        assert!(UnsequencedEntry::sign(&k, d(mode_name(Mode::Public, &"é".repeat(33)))).is_err());
        assert!(UnsequencedEntry::sign(&k, d(mode_name(Mode::Public, &"é".repeat(32)))).is_ok());
        let other = Keypair::from_seed(&seed(1));
        let u = UnsequencedEntry::sign(&k, d(Body::Leave)).unwrap();
        assert_eq!(
            SequencedEntry::seal(&other, u.clone(), 1),
            Err(EntryError::NotOwner)
        );
        assert_eq!(SequencedEntry::seal(&k, u, 0), Err(EntryError::SeqZero));
        assert_eq!(
            GroupId::from_hex(&GroupId([0xab; 16]).to_hex()),
            Ok(GroupId([0xab; 16]))
        );
        assert_ne!(GroupId::random(), GroupId::random());
    }
}
