//! The Noise `SymmetricState` (spec §5.2): the chaining key `ck`, the handshake hash `h`, and
//! a `CipherState` that exists once the first DH output has been mixed in.

use core::fmt;

use super::NoiseError;
use super::cipher::{CIPHER_KEY_LEN, CipherState, TAG_LEN};
use crate::crypto::hmac::{self, HASH_LEN};

/// Handshake-time symmetric state.
pub(crate) struct SymmetricState {
    ck: [u8; HASH_LEN],
    h: [u8; HASH_LEN],
    /// `None` is the spec's "k is empty": EncryptAndHash then passes plaintext through.
    cipher: Option<CipherState>,
}

impl fmt::Debug for SymmetricState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SymmetricState {{ has_key: {}, ck: <secret> }}",
            self.cipher.is_some()
        )
    }
}

/// The first 32 bytes of a HASHLEN-byte HKDF output: "If HASHLEN is 64, then truncates
/// temp_k to 32 bytes."
fn truncate(k: &[u8; HASH_LEN]) -> [u8; CIPHER_KEY_LEN] {
    let mut out = [0u8; CIPHER_KEY_LEN];
    out.copy_from_slice(&k[..CIPHER_KEY_LEN]);
    out
}

impl SymmetricState {
    /// `InitializeSymmetric(protocol_name)`.
    pub(crate) fn new(protocol_name: &[u8]) -> Self {
        // "If protocol_name is less than or equal to HASHLEN bytes in length, sets h equal to
        // protocol_name with zero bytes appended to make HASHLEN bytes. Otherwise sets
        // h = HASH(protocol_name)."
        let h = if protocol_name.len() <= HASH_LEN {
            let mut h = [0u8; HASH_LEN];
            h[..protocol_name.len()].copy_from_slice(protocol_name);
            h
        } else {
            hmac::sha512(&[protocol_name])
        };
        // "Sets ck = h." "Calls InitializeKey(empty)."
        SymmetricState {
            ck: h,
            h,
            cipher: None,
        }
    }

    /// `HasKey()` of the inner CipherState.
    pub(crate) fn has_key(&self) -> bool {
        self.cipher.is_some()
    }

    /// The handshake hash `h` so far.
    pub(crate) fn hash(&self) -> [u8; HASH_LEN] {
        self.h
    }

    /// `MixKey(input_key_material)`.
    pub(crate) fn mix_key(&mut self, ikm: &[u8]) {
        // "Sets ck, temp_k = HKDF(ck, input_key_material, 2)."
        let (ck, mut temp_k) = hmac::hkdf2(&self.ck, ikm);
        self.ck = ck;
        // "If HASHLEN is 64, then truncates temp_k to 32 bytes."
        // "Calls InitializeKey(temp_k)."
        self.cipher = Some(CipherState::new(truncate(&temp_k)));
        hmac::wipe(&mut temp_k);
    }

    /// `MixHash(data)`: `h = HASH(h || data)`.
    pub(crate) fn mix_hash(&mut self, data: &[u8]) {
        self.h = hmac::sha512(&[&self.h, data]);
    }

    /// `EncryptAndHash(plaintext)` into `out`; returns the bytes written (plaintext length, plus
    /// the tag once a key exists). The caller has checked that `out` is long enough.
    pub(crate) fn encrypt_and_hash(
        &mut self,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, NoiseError> {
        let len = plaintext.len() + if self.has_key() { TAG_LEN } else { 0 };
        if out.len() < len {
            return Err(NoiseError::BufferTooSmall {
                need: len,
                have: out.len(),
            });
        }
        let out = &mut out[..len];
        out[..plaintext.len()].copy_from_slice(plaintext);
        // "Sets ciphertext = EncryptWithAd(h, plaintext)"; with an empty key that is the
        // plaintext itself.
        if let Some(cipher) = self.cipher.as_mut() {
            let (body, tag_out) = out.split_at_mut(plaintext.len());
            let tag = cipher.seal_in_place(&self.h, body)?;
            tag_out.copy_from_slice(&tag);
        }
        // "calls MixHash(ciphertext)".
        self.mix_hash(out);
        Ok(len)
    }

    /// `DecryptAndHash(ciphertext)` into `out`; returns the plaintext length.
    pub(crate) fn decrypt_and_hash(
        &mut self,
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, NoiseError> {
        let overhead = if self.has_key() { TAG_LEN } else { 0 };
        let Some(len) = ciphertext.len().checked_sub(overhead) else {
            return Err(NoiseError::BadLength {
                len: ciphertext.len(),
                min: overhead,
            });
        };
        if out.len() < len {
            return Err(NoiseError::BufferTooSmall {
                need: len,
                have: out.len(),
            });
        }
        let (body, tag) = ciphertext.split_at(len);
        out[..len].copy_from_slice(body);
        // "Sets plaintext = DecryptWithAd(h, ciphertext)" with the h from *before* this
        // ciphertext is mixed in ...
        if let Some(cipher) = self.cipher.as_mut() {
            let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| NoiseError::Decrypt)?;
            cipher.open_in_place(&self.h, &mut out[..len], &tag)?;
        }
        // ... "calls MixHash(ciphertext)".
        self.mix_hash(ciphertext);
        Ok(len)
    }

    /// `Split()`: the two transport CipherStates, initiator→responder first.
    pub(crate) fn split(&self) -> (CipherState, CipherState) {
        // "Sets temp_k1, temp_k2 = HKDF(ck, zerolen, 2)."
        let (mut k1, mut k2) = hmac::hkdf2(&self.ck, &[]);
        // "If HASHLEN is 64, then truncates temp_k1 and temp_k2 to 32 bytes."
        // "Creates two new CipherState objects c1 and c2. Calls c1.InitializeKey(temp_k1) and
        // c2.InitializeKey(temp_k2)."
        let pair = (
            CipherState::new(truncate(&k1)),
            CipherState::new(truncate(&k2)),
        );
        hmac::wipe(&mut k1);
        hmac::wipe(&mut k2);
        pair
    }
}

impl Drop for SymmetricState {
    fn drop(&mut self) {
        hmac::wipe(&mut self.ck);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialize_pads_or_hashes() {
        let s = SymmetricState::new(b"Noise_XK_25519_ChaChaPoly_SHA512");
        assert_eq!(&s.hash()[..32], b"Noise_XK_25519_ChaChaPoly_SHA512");
        assert_eq!(s.hash()[32..], [0u8; 32]);
        let long = [b'x'; 65];
        assert_eq!(
            SymmetricState::new(&long).hash(),
            hmac::sha512(&[&long[..]])
        );
    }

    #[test]
    fn without_key_is_plaintext_with_key_is_sealed() {
        let mut a = SymmetricState::new(b"p");
        let mut b = SymmetricState::new(b"p");
        let mut out = [0u8; 64];
        assert_eq!(a.encrypt_and_hash(b"abc", &mut out).unwrap(), 3);
        assert_eq!(&out[..3], b"abc");
        let mut pt = [0u8; 8];
        assert_eq!(b.decrypt_and_hash(b"abc", &mut pt).unwrap(), 3);
        a.mix_key(&[1; 32]);
        b.mix_key(&[1; 32]);
        let n = a.encrypt_and_hash(b"secret", &mut out).unwrap();
        assert_eq!(n, 6 + TAG_LEN);
        assert_ne!(&out[..6], b"secret");
        assert_eq!(b.decrypt_and_hash(&out[..n], &mut pt).unwrap(), 6);
        assert_eq!(&pt[..6], b"secret");
        assert_eq!(a.hash(), b.hash());
        // A too-short ciphertext or output buffer is an error, not a panic.
        assert!(matches!(
            b.decrypt_and_hash(&out[..5], &mut pt),
            Err(NoiseError::BadLength { .. })
        ));
        assert!(matches!(
            a.encrypt_and_hash(b"0123456789", &mut pt),
            Err(NoiseError::BufferTooSmall { need: 26, have: 8 })
        ));
    }
}
