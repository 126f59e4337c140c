//! The Noise `CipherState` (spec §5.1) with ChaCha20-Poly1305 (spec §12.3).
//!
//! A `CipherState` here always has a key: the "empty key" case of the spec exists only inside
//! the handshake, where [`SymmetricState`](super::symmetric) holds an `Option<CipherState>`.
//! Nonces are the implicit 64-bit counter `n`; they never travel on the wire. The value
//! 2^64-1 is reserved by the spec (it is the rekey nonce), so a state whose counter has reached
//! it refuses to encrypt or decrypt with [`NoiseError::NonceExhausted`]: never a wrap.

use core::fmt;

// The AEAD calls go through skywire-aead, compiled for speed (see that crate's docs).
use skywire_aead::{ChaCha20Poly1305, Key, KeyInit, Nonce, Tag};

use super::NoiseError;

/// Length of the Poly1305 tag appended to every ciphertext.
pub const TAG_LEN: usize = 16;
/// Length of a ChaCha20-Poly1305 key.
pub const CIPHER_KEY_LEN: usize = 32;

/// One direction of an established Noise session: a key and a nonce counter.
pub struct CipherState {
    cipher: ChaCha20Poly1305,
    n: u64,
}

impl fmt::Debug for CipherState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CipherState {{ n: {}, k: <secret> }}", self.n)
    }
}

/// The 96-bit ChaChaPoly nonce for counter `n`: 32 bits of zeros, then `n` little-endian.
fn chacha_nonce(n: u64) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&n.to_le_bytes());
    Nonce::from(nonce)
}

impl CipherState {
    /// `InitializeKey(key)`: sets `k = key` and `n = 0`.
    pub fn new(key: [u8; CIPHER_KEY_LEN]) -> Self {
        CipherState {
            cipher: ChaCha20Poly1305::new(&Key::from(key)),
            n: 0,
        }
    }

    /// The nonce the next seal or open will use (the number of messages so far).
    pub fn nonce(&self) -> u64 {
        self.n
    }

    /// `SetNonce(nonce)` from the spec. Test hook: lets a test put the counter next to its end
    /// without sealing 2^64 messages. Not part of the stable API.
    #[doc(hidden)]
    pub fn set_nonce(&mut self, n: u64) {
        self.n = n;
    }

    /// The current nonce, or the error that the counter is spent. Does not advance it.
    fn current_nonce(&self) -> Result<Nonce, NoiseError> {
        // "If incrementing n results in 2^64-1, then any further EncryptWithAd() or
        // DecryptWithAd() calls will signal an error to the caller."
        if self.n == u64::MAX {
            return Err(NoiseError::NonceExhausted);
        }
        Ok(chacha_nonce(self.n))
    }

    /// `EncryptWithAd(ad, plaintext)` in place: encrypts `buf`, advances the counter and
    /// returns the tag (detached, so the caller decides where it goes). No allocation.
    pub fn seal_in_place(
        &mut self,
        ad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], NoiseError> {
        let nonce = self.current_nonce()?;
        let len = buf.len();
        // Only fails for inputs longer than ChaCha20's 256 GiB keystream.
        let tag =
            skywire_aead::seal(&self.cipher, &nonce, ad, buf).ok_or(NoiseError::TooLong { len })?;
        self.n += 1;
        Ok(tag.into())
    }

    /// `DecryptWithAd(ad, ciphertext)` in place: checks `tag`, decrypts `buf` and advances the
    /// counter. On failure the counter does not move (spec §5.1), and `buf` is zeroed so no
    /// unauthenticated plaintext is left behind.
    pub fn open_in_place(
        &mut self,
        ad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), NoiseError> {
        let nonce = self.current_nonce()?;
        match skywire_aead::open(&self.cipher, &nonce, ad, buf, &Tag::from(*tag)) {
            true => {
                self.n += 1;
                Ok(())
            }
            false => {
                buf.fill(0);
                Err(NoiseError::Decrypt)
            }
        }
    }

    /// Appends `ciphertext ‖ tag` of `plaintext` to `out`.
    pub fn seal_to(
        &mut self,
        ad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), NoiseError> {
        let start = out.len();
        out.extend_from_slice(plaintext);
        match self.seal_in_place(ad, &mut out[start..]) {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// `ciphertext ‖ tag` of `plaintext`, in a new vector.
    pub fn seal(&mut self, ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
        self.seal_to(ad, plaintext, &mut out)?;
        Ok(out)
    }

    /// The plaintext of `ciphertext ‖ tag`, in a new vector.
    pub fn open(&mut self, ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let Some(body_len) = sealed.len().checked_sub(TAG_LEN) else {
            return Err(NoiseError::BadLength {
                len: sealed.len(),
                min: TAG_LEN,
            });
        };
        let (body, tag) = sealed.split_at(body_len);
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| NoiseError::Decrypt)?;
        let mut out = body.to_vec();
        self.open_in_place(ad, &mut out, &tag)?;
        Ok(out)
    }

    /// `Rekey()` (spec §4.2 and §11.3): `k = first 32 bytes of ENCRYPT(k, 2^64-1, "", zeros)`.
    /// The counter is kept. Both ends must rekey at the same point in the stream.
    pub fn rekey(&mut self) {
        let mut k = [0u8; CIPHER_KEY_LEN];
        // Encrypting 32 bytes with a 32-byte key cannot fail; if it ever did, the old key
        // would stay and the peers' next message would fail to authenticate.
        if skywire_aead::seal(&self.cipher, &chacha_nonce(u64::MAX), &[], &mut k[..]).is_some() {
            self.cipher = ChaCha20Poly1305::new(&Key::from(k));
        }
        super::super::hmac::wipe(&mut k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (CipherState, CipherState) {
        (CipherState::new([7; 32]), CipherState::new([7; 32]))
    }

    #[test]
    fn round_trip_and_counters() {
        let (mut a, mut b) = pair();
        for i in 0..3u64 {
            assert_eq!(a.nonce(), i);
            let mut buf = *b"attack at dawn";
            let tag = a.seal_in_place(b"ad", &mut buf).unwrap();
            assert_ne!(&buf, b"attack at dawn");
            b.open_in_place(b"ad", &mut buf, &tag).unwrap();
            assert_eq!(&buf, b"attack at dawn");
            assert_eq!(b.nonce(), i + 1);
        }
        let sealed = a.seal(b"", b"vec").unwrap();
        assert_eq!(sealed.len(), 3 + TAG_LEN);
        assert_eq!(b.open(b"", &sealed).unwrap(), b"vec");
    }

    #[test]
    fn tamper_and_wrong_ad_fail_without_advancing() {
        let (mut a, mut b) = pair();
        let mut sealed = a.seal(b"", b"hello").unwrap();
        sealed[0] ^= 1;
        assert_eq!(b.open(b"", &sealed), Err(NoiseError::Decrypt));
        sealed[0] ^= 1;
        assert_eq!(b.open(b"x", &sealed), Err(NoiseError::Decrypt));
        assert_eq!(b.nonce(), 0);
        assert_eq!(b.open(b"", &sealed).unwrap(), b"hello");
        assert!(matches!(
            b.open(b"", &[0u8; 15]),
            Err(NoiseError::BadLength { len: 15, min: 16 })
        ));
        // Replaying the same message fails: the counter moved on.
        assert_eq!(b.open(b"", &sealed), Err(NoiseError::Decrypt));
    }

    #[test]
    fn nonce_exhaustion_is_an_error_not_a_wrap() {
        let (mut a, mut b) = pair();
        a.set_nonce(u64::MAX - 1);
        b.set_nonce(u64::MAX - 1);
        let sealed = a.seal(b"", b"last").unwrap();
        assert_eq!(a.nonce(), u64::MAX);
        assert_eq!(a.seal(b"", b"one more"), Err(NoiseError::NonceExhausted));
        let mut buf = [0u8; 4];
        assert_eq!(
            a.seal_in_place(b"", &mut buf),
            Err(NoiseError::NonceExhausted)
        );
        assert_eq!(a.nonce(), u64::MAX);
        assert_eq!(b.open(b"", &sealed).unwrap(), b"last");
        assert_eq!(b.open(b"", &sealed), Err(NoiseError::NonceExhausted));
        let mut out = vec![1, 2];
        assert_eq!(
            a.seal_to(b"", b"x", &mut out),
            Err(NoiseError::NonceExhausted)
        );
        assert_eq!(out, [1, 2]);
    }

    #[test]
    fn rekey_changes_key_in_step() {
        let (mut a, mut b) = pair();
        a.rekey();
        let sealed = a.seal(b"", b"after").unwrap();
        let mut stale = CipherState::new([7; 32]);
        assert_eq!(stale.open(b"", &sealed), Err(NoiseError::Decrypt));
        b.rekey();
        assert_eq!(b.open(b"", &sealed).unwrap(), b"after");
    }

    #[test]
    fn nonce_layout() {
        let n = chacha_nonce(0x0102030405060708);
        assert_eq!(n.as_slice(), &[0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]);
    }
}
