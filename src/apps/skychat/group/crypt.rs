//! Private groups: one 32-byte group key per key epoch, and posts encrypted with it.
//!
//! A private post's body is `nonce [12] ‖ ciphertext ‖ tag [16]`: ChaCha20-Poly1305 under the
//! key of the entry's epoch, a random nonce, and associated data
//! `group id [16] ‖ author pk [32] ‖ author entry id u64be ‖ epoch u32be`, so a ciphertext
//! opens only inside the entry it was made for (moved to another group, author, entry or
//! epoch, it fails). The text fits in [`MAX_TEXT`] bytes (the body cap less [`OVERHEAD`]).
//!
//! Rotation: the owner's Rotate entry carries only the new epoch's number, never a key. The
//! owner draws the new key ([`Keyring::fresh_key`]) and hands it to each remaining member out
//! of band, over the end-to-end encrypted overlay stream; a removed member never gets it, so
//! it cannot read posts of the new epoch. A [`Keyring`] keeps the last [`KEYRING_CAP`] epochs
//! so older posts still open.

use std::collections::BTreeMap;
use std::fmt;

use skywire_aead::{ChaCha20Poly1305, Key, KeyInit, Nonce, Tag};

use super::entry::{Body, Draft, GroupId, MAX_BODY, UnsequencedEntry};
use crate::crypto::PublicKey;
use crate::crypto::hex;

/// Bytes of a group key.
pub const KEY_LEN: usize = 32;
/// Bytes of the nonce that starts a private post.
pub const NONCE_LEN: usize = 12;
/// Bytes of the Poly1305 tag that ends it.
pub const TAG_LEN: usize = 16;
/// A private post's bytes besides its text.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// The longest text of a private post.
pub const MAX_TEXT: usize = MAX_BODY - OVERHEAD;
/// Epochs a [`Keyring`] keeps; older ones are dropped first.
pub const KEYRING_CAP: usize = 64;
/// Bytes of the associated data.
pub const AD_LEN: usize = 16 + 32 + 8 + 4;

/// A group key. Its Debug does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupKey([u8; KEY_LEN]);

impl GroupKey {
    /// The key of these bytes.
    pub fn from_bytes(b: [u8; KEY_LEN]) -> GroupKey {
        GroupKey(b)
    }

    /// The raw bytes (to hand to a member, or to store).
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<GroupKey, hex::HexError> {
        hex::decode_array(s).map(GroupKey)
    }

    /// 64 lowercase hex digits (for an invite; handle with care).
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GroupKey(<secret>)")
    }
}

impl Drop for GroupKey {
    fn drop(&mut self) {
        // Best effort: do not leave the key in freed memory.
        self.0 = core::hint::black_box([0u8; KEY_LEN]);
    }
}

/// What went wrong sealing or opening a private post.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CryptError {
    /// The operating system's random source failed.
    Random(String),
    /// The text is over [`MAX_TEXT`] bytes.
    TooLong(usize),
    /// The body is too short to be `nonce ‖ ciphertext ‖ tag`.
    Short(usize),
    /// The tag does not verify: a wrong key (another epoch's), another entry's associated
    /// data, or a tampered body.
    Decrypt,
    /// It decrypts, but not to UTF-8.
    NotUtf8,
    /// No key for this epoch in the keyring.
    NoKey(u32),
    /// The entry is not a post.
    NotPost,
}

impl fmt::Display for CryptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptError::Random(e) => write!(f, "no randomness from the OS: {e}"),
            CryptError::TooLong(n) => {
                write!(
                    f,
                    "text of {n} bytes, more than the {MAX_TEXT} a private post holds"
                )
            }
            CryptError::Short(n) => write!(
                f,
                "private post of {n} bytes, too short for a nonce, a ciphertext and a tag"
            ),
            CryptError::Decrypt => f.write_str(
                "the post does not decrypt (wrong epoch key, moved from another entry, or \
                 tampered)",
            ),
            CryptError::NotUtf8 => f.write_str("the post decrypts to bytes that are not UTF-8"),
            CryptError::NoKey(e) => write!(f, "no group key for epoch {e}"),
            CryptError::NotPost => f.write_str("the entry is not a post"),
        }
    }
}

impl std::error::Error for CryptError {}

/// A fresh random group key.
pub fn fresh_key() -> Result<GroupKey, CryptError> {
    let mut k = [0u8; KEY_LEN];
    getrandom::fill(&mut k).map_err(|e| CryptError::Random(e.to_string()))?;
    Ok(GroupKey(k))
}

/// What binds a ciphertext to its entry: the associated data's fields.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PostAd {
    /// The group.
    pub group: GroupId,
    /// The author.
    pub author: PublicKey,
    /// The author's entry id.
    pub entry_id: u64,
    /// The key epoch.
    pub epoch: u32,
}

impl PostAd {
    /// The associated data of an entry.
    pub fn of(e: &UnsequencedEntry) -> PostAd {
        PostAd {
            group: e.group,
            author: e.author,
            entry_id: e.entry_id,
            epoch: e.epoch,
        }
    }

    /// The associated data of a draft `author` is about to sign.
    pub fn of_draft(d: &Draft, author: &PublicKey) -> PostAd {
        PostAd {
            group: d.group,
            author: *author,
            entry_id: d.entry_id,
            epoch: d.epoch,
        }
    }

    /// `group id ‖ author pk ‖ entry id u64be ‖ epoch u32be`.
    pub fn bytes(&self) -> [u8; AD_LEN] {
        let mut b = [0u8; AD_LEN];
        b[..16].copy_from_slice(&self.group.0);
        b[16..48].copy_from_slice(self.author.as_bytes());
        b[48..56].copy_from_slice(&self.entry_id.to_be_bytes());
        b[56..].copy_from_slice(&self.epoch.to_be_bytes());
        b
    }
}

/// Encrypts `text` into a private post's body.
pub fn seal_post(key: &GroupKey, ad: &PostAd, text: &str) -> Result<Vec<u8>, CryptError> {
    if text.len() > MAX_TEXT {
        return Err(CryptError::TooLong(text.len()));
    }
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| CryptError::Random(e.to_string()))?;
    let cipher = ChaCha20Poly1305::new(&Key::from(key.0));
    let mut body = Vec::with_capacity(OVERHEAD + text.len());
    body.extend_from_slice(&nonce);
    body.extend_from_slice(text.as_bytes());
    let tag = skywire_aead::seal(
        &cipher,
        &Nonce::from(nonce),
        &ad.bytes(),
        &mut body[NONCE_LEN..],
    )
    .ok_or(CryptError::TooLong(text.len()))?;
    let tag: [u8; TAG_LEN] = tag.into();
    body.extend_from_slice(&tag);
    Ok(body)
}

/// Decrypts a private post's body.
pub fn open_post(key: &GroupKey, ad: &PostAd, body: &[u8]) -> Result<String, CryptError> {
    if body.len() < OVERHEAD {
        return Err(CryptError::Short(body.len()));
    }
    let (nonce, rest) = body.split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut nonce_arr = [0u8; NONCE_LEN];
    nonce_arr.copy_from_slice(nonce);
    let mut tag_arr = [0u8; TAG_LEN];
    tag_arr.copy_from_slice(tag);
    let cipher = ChaCha20Poly1305::new(&Key::from(key.0));
    let mut buf = ct.to_vec();
    if !skywire_aead::open(
        &cipher,
        &Nonce::from(nonce_arr),
        &ad.bytes(),
        &mut buf,
        &Tag::from(tag_arr),
    ) {
        return Err(CryptError::Decrypt);
    }
    String::from_utf8(buf).map_err(|_| CryptError::NotUtf8)
}

/// Group keys by epoch, the newest [`KEYRING_CAP`] kept.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    keys: BTreeMap<u32, GroupKey>,
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// Stores `key` for `epoch` (replacing one held), dropping the oldest epochs past the cap.
    pub fn insert(&mut self, epoch: u32, key: GroupKey) {
        self.keys.insert(epoch, key);
        while self.keys.len() > KEYRING_CAP {
            self.keys.pop_first();
        }
    }

    /// Draws a fresh key for `epoch`, stores it and returns a copy (to hand out).
    pub fn fresh_key(&mut self, epoch: u32) -> Result<GroupKey, CryptError> {
        let k = fresh_key()?;
        self.insert(epoch, k.clone());
        Ok(k)
    }

    /// The key of `epoch`.
    pub fn get(&self, epoch: u32) -> Option<&GroupKey> {
        self.keys.get(&epoch)
    }

    /// The newest epoch and its key.
    pub fn current(&self) -> Option<(u32, &GroupKey)> {
        self.keys.last_key_value().map(|(e, k)| (*e, k))
    }

    /// The epochs held, oldest first.
    pub fn epochs(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    /// How many epochs are held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No key at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Encrypts `text` into `draft`'s body with the key of the draft's epoch, bound to
    /// `author` and the draft's group and entry id.
    pub fn seal_draft(
        &self,
        draft: &mut Draft,
        author: &PublicKey,
        text: &str,
    ) -> Result<(), CryptError> {
        let key = self
            .get(draft.epoch)
            .ok_or(CryptError::NoKey(draft.epoch))?;
        draft.body = Body::Post(seal_post(key, &PostAd::of_draft(draft, author), text)?);
        Ok(())
    }

    /// The text of a private post entry, with the key of its epoch.
    pub fn open_entry(&self, e: &UnsequencedEntry) -> Result<String, CryptError> {
        let Body::Post(body) = &e.body else {
            return Err(CryptError::NotPost);
        };
        let key = self.get(e.epoch).ok_or(CryptError::NoKey(e.epoch))?;
        open_post(key, &PostAd::of(e), body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn ad(entry_id: u64, epoch: u32) -> PostAd {
        PostAd {
            group: GroupId([7; 16]),
            author: *Keypair::from_seed(&[3; 32]).public(),
            entry_id,
            epoch,
        }
    }

    #[test]
    fn seal_open_and_every_binding() {
        let k = GroupKey::from_bytes([9; 32]);
        let a = ad(42, 1);
        let body = seal_post(&k, &a, "secret é").unwrap();
        assert_eq!(body.len(), OVERHEAD + "secret é".len());
        assert_eq!(open_post(&k, &a, &body).unwrap(), "secret é");
        // Another key, entry id, epoch, group or author: refused.
        assert_eq!(
            open_post(&GroupKey::from_bytes([8; 32]), &a, &body),
            Err(CryptError::Decrypt)
        );
        assert_eq!(open_post(&k, &ad(43, 1), &body), Err(CryptError::Decrypt));
        assert_eq!(open_post(&k, &ad(42, 2), &body), Err(CryptError::Decrypt));
        let mut g = a;
        g.group = GroupId([6; 16]);
        assert_eq!(open_post(&k, &g, &body), Err(CryptError::Decrypt));
        let mut au = a;
        au.author = *Keypair::from_seed(&[4; 32]).public();
        assert_eq!(open_post(&k, &au, &body), Err(CryptError::Decrypt));
        // Every flipped bit and every truncation: refused, no panic.
        for i in 0..body.len() {
            let mut t = body.clone();
            t[i] ^= 0x01;
            assert_eq!(open_post(&k, &a, &t), Err(CryptError::Decrypt));
        }
        for n in 0..body.len() {
            assert!(open_post(&k, &a, &body[..n]).is_err());
        }
        assert_eq!(open_post(&k, &a, &[0; 5]), Err(CryptError::Short(5)));
        // Two seals of one text differ (random nonce).
        assert_ne!(
            seal_post(&k, &a, "x").unwrap(),
            seal_post(&k, &a, "x").unwrap()
        );
        assert_eq!(
            seal_post(&k, &a, &"a".repeat(MAX_TEXT + 1)),
            Err(CryptError::TooLong(MAX_TEXT + 1))
        );
        assert!(seal_post(&k, &a, &"a".repeat(MAX_TEXT)).unwrap().len() == MAX_BODY);
        assert_eq!(format!("{k:?}"), "GroupKey(<secret>)");
    }

    #[test]
    fn keyring_is_bounded_and_keeps_the_newest() {
        let mut r = Keyring::new();
        assert!(r.current().is_none());
        for e in 1..=(KEYRING_CAP as u32 + 10) {
            r.fresh_key(e).unwrap();
        }
        assert_eq!(r.len(), KEYRING_CAP);
        assert_eq!(r.current().unwrap().0, KEYRING_CAP as u32 + 10);
        assert!(r.get(1).is_none());
        assert!(r.get(11).is_some());
        assert_ne!(r.get(11), r.get(12));
    }
}
