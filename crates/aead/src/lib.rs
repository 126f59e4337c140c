//! The two ChaCha20-Poly1305 calls skywire's Noise CipherState makes, in a crate of their own
//! so that they can be compiled at `opt-level = 3` while the rest of the board binary is
//! compiled for size (`opt-level = "z"`).
//!
//! Why a crate: chacha20poly1305's cipher is generic code, so it is monomorphised — and
//! optimised — in whichever crate names the concrete type and calls it. Called from `skywire`
//! directly it is compiled at `skywire`'s `opt-level = "z"` and runs at a tenth of its speed
//! (~90 MiB/s instead of ~870 MiB/s on the bench machine); a per-package `opt-level` for the
//! `chacha20` and `poly1305` crates does not help, because almost none of that code is
//! instantiated there. Here the concrete instantiation lives in this crate, which the release
//! profile builds at `opt-level = 3`, and the fat-LTO pass keeps it that way. The measurements
//! are in `docs/benchmarks.md` ("Build profile").
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce, Tag};

use chacha20poly1305::AeadInOut;
use chacha20poly1305::aead::inout::InOutBuf;

/// Encrypts `buf` in place with associated data `ad` and returns the detached tag; `None`
/// only for inputs beyond ChaCha20's 256 GiB keystream.
#[inline(never)]
pub fn seal(cipher: &ChaCha20Poly1305, nonce: &Nonce, ad: &[u8], buf: &mut [u8]) -> Option<Tag> {
    cipher
        .encrypt_inout_detached(nonce, ad, InOutBuf::from(buf))
        .ok()
}

/// Checks `tag` over `ad` and the ciphertext in `buf`, then decrypts `buf` in place. Returns
/// false, leaving `buf` as it was, when the tag does not verify.
#[inline(never)]
pub fn open(
    cipher: &ChaCha20Poly1305,
    nonce: &Nonce,
    ad: &[u8],
    buf: &mut [u8],
    tag: &Tag,
) -> bool {
    cipher
        .decrypt_inout_detached(nonce, ad, InOutBuf::from(buf), tag)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let c = ChaCha20Poly1305::new(&Key::from([7u8; 32]));
        let n = Nonce::from([1u8; 12]);
        let mut buf = *b"attack at dawn";
        let tag = seal(&c, &n, b"ad", &mut buf).unwrap();
        assert_ne!(&buf, b"attack at dawn");
        let mut bad = buf;
        bad[0] ^= 1;
        assert!(!open(&c, &n, b"ad", &mut bad, &tag));
        assert!(!open(&c, &n, b"AD", &mut buf.clone(), &tag));
        assert!(open(&c, &n, b"ad", &mut buf, &tag));
        assert_eq!(&buf, b"attack at dawn");
    }
}
