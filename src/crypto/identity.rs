//! Node identity: an Ed25519 key pair (DESIGN.md §3.1–3.2).
//!
//! The secret is the 32-byte seed; the public key (PK) is 32 bytes, written as 64 lowercase hex
//! characters. Verification is strict: a signature whose scalar `S` is not below the group order
//! `L` is rejected before salty sees it (RFC 8032 §5.1.7; salty 0.3.0 alone accepts such
//! signatures). The Noise static key pair is derived from the identity, so knowing a PK means
//! knowing its Noise static.

use core::fmt;

use super::hex::{self, HexError};

/// Length of a public key, a secret seed, and an X25519 key.
pub const KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIG_LEN: usize = 64;

/// The Ed25519 group order L = 2^252 + 27742317777372353535851937790883648493, little-endian.
const GROUP_ORDER_LE: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// What went wrong with a key or a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// The text is not hex of the right length.
    Hex(HexError),
    /// The 32 bytes are not the encoding of a point on the curve.
    NotAPoint,
    /// The signature does not verify (including a non-canonical `S`).
    BadSignature,
    /// The secret key does not produce the public key it was paired with.
    Mismatch,
    /// The operating system's random source failed.
    Random(String),
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::Hex(e) => write!(f, "bad key encoding: {e}"),
            IdentityError::NotAPoint => f.write_str("not a valid Ed25519 public key"),
            IdentityError::BadSignature => f.write_str("signature does not verify"),
            IdentityError::Mismatch => f.write_str("secret key does not match public key"),
            IdentityError::Random(e) => write!(f, "no randomness from the OS: {e}"),
        }
    }
}

impl std::error::Error for IdentityError {}

impl From<HexError> for IdentityError {
    fn from(e: HexError) -> Self {
        IdentityError::Hex(e)
    }
}

/// A validated Ed25519 public key: its bytes decode to a curve point.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// Accepts 32 bytes only if they encode a curve point.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<Self, IdentityError> {
        salty::PublicKey::try_from(bytes).map_err(|_| IdentityError::NotAPoint)?;
        Ok(PublicKey(*bytes))
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, IdentityError> {
        Self::from_bytes(&hex::decode_array(s)?)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// Strict Ed25519 verification: `S` must be below the group order, then salty verifies.
    pub fn verify(&self, msg: &[u8], sig: &[u8; SIG_LEN]) -> Result<(), IdentityError> {
        if !scalar_is_canonical(sig[32..].try_into().expect("32 bytes")) {
            return Err(IdentityError::BadSignature);
        }
        let pk = salty::PublicKey::try_from(&self.0).map_err(|_| IdentityError::NotAPoint)?;
        pk.verify(msg, &salty::Signature::from(sig))
            .map_err(|_| IdentityError::BadSignature)
    }

    /// The X25519 public key of this identity's Noise static: the Edwards→Montgomery map.
    pub fn noise_static(&self) -> [u8; KEY_LEN] {
        let point = salty::CompressedY(self.0)
            .decompressed()
            .expect("PublicKey is validated at construction");
        point.to_montgomery().to_bytes()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl core::str::FromStr for PublicKey {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

/// True when the little-endian scalar `s` is strictly below the group order L.
fn scalar_is_canonical(s: &[u8; 32]) -> bool {
    for i in (0..32).rev() {
        if s[i] != GROUP_ORDER_LE[i] {
            return s[i] < GROUP_ORDER_LE[i];
        }
    }
    false // equal to L
}

/// An identity: the secret seed and its public key.
pub struct Keypair {
    seed: [u8; KEY_LEN],
    public: PublicKey,
    inner: salty::Keypair,
}

impl Keypair {
    /// A fresh key pair from the operating system's random source.
    pub fn generate() -> Result<Self, IdentityError> {
        let mut seed = [0u8; KEY_LEN];
        getrandom::fill(&mut seed).map_err(|e| IdentityError::Random(e.to_string()))?;
        Ok(Self::from_seed(&seed))
    }

    /// The key pair for a 32-byte seed (the secret key).
    pub fn from_seed(seed: &[u8; KEY_LEN]) -> Self {
        let inner = salty::Keypair::from(seed);
        let public = PublicKey(inner.public.to_bytes());
        Keypair {
            seed: *seed,
            public,
            inner,
        }
    }

    /// Parses a hex secret and, if given, checks it produces `expected_pk`.
    pub fn from_hex(sk: &str, expected_pk: Option<&PublicKey>) -> Result<Self, IdentityError> {
        let kp = Self::from_seed(&hex::decode_array(sk)?);
        match expected_pk {
            Some(pk) if *pk != kp.public => Err(IdentityError::Mismatch),
            _ => Ok(kp),
        }
    }

    /// The public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The secret seed.
    pub fn seed(&self) -> &[u8; KEY_LEN] {
        &self.seed
    }

    /// The secret seed as hex (for config files; handle with care).
    pub fn secret_hex(&self) -> String {
        hex::encode(&self.seed)
    }

    /// Signs `msg` (deterministic Ed25519).
    pub fn sign(&self, msg: &[u8]) -> [u8; SIG_LEN] {
        self.inner.sign(msg).to_bytes()
    }

    /// The X25519 secret of this identity's Noise static: clamp(SHA-512(seed)[0..32]).
    pub fn noise_secret(&self) -> [u8; KEY_LEN] {
        let digest = salty::Sha512::new().updated(&self.seed).finalize();
        let mut k = [0u8; KEY_LEN];
        k.copy_from_slice(&digest[..KEY_LEN]);
        k[0] &= 248;
        k[31] &= 127;
        k[31] |= 64;
        k
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({}, <secret>)", self.public.to_hex())
    }
}

impl Drop for Keypair {
    fn drop(&mut self) {
        // Best effort: overwrite the seed so it does not linger in freed memory.
        self.seed = core::hint::black_box([0u8; KEY_LEN]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_round_trip() {
        let kp = Keypair::from_seed(&[7u8; 32]);
        let sig = kp.sign(b"hello");
        kp.public().verify(b"hello", &sig).unwrap();
        assert_eq!(
            kp.public().verify(b"hellp", &sig),
            Err(IdentityError::BadSignature)
        );
    }

    #[test]
    fn non_canonical_s_rejected() {
        let kp = Keypair::from_seed(&[9u8; 32]);
        let mut sig = kp.sign(b"m");
        // S + L is the same scalar mod L; salty would accept it, we must not.
        let mut carry = 0u16;
        for i in 0..32 {
            let v = sig[32 + i] as u16 + GROUP_ORDER_LE[i] as u16 + carry;
            sig[32 + i] = v as u8;
            carry = v >> 8;
        }
        if carry == 0 {
            assert_eq!(
                kp.public().verify(b"m", &sig),
                Err(IdentityError::BadSignature)
            );
        }
        assert!(!scalar_is_canonical(&GROUP_ORDER_LE));
        let mut below = GROUP_ORDER_LE;
        below[0] -= 1;
        assert!(scalar_is_canonical(&below));
    }

    #[test]
    fn hex_and_mismatch() {
        let kp = Keypair::from_seed(&[1u8; 32]);
        let pk = PublicKey::from_hex(&kp.public().to_hex()).unwrap();
        assert_eq!(&pk, kp.public());
        let other = Keypair::from_seed(&[2u8; 32]);
        assert_eq!(
            Keypair::from_hex(&kp.secret_hex(), Some(other.public())).unwrap_err(),
            IdentityError::Mismatch
        );
        assert!(matches!(
            PublicKey::from_hex("zz"),
            Err(IdentityError::Hex(_))
        ));
    }

    #[test]
    fn generate_differs() {
        let a = Keypair::generate().unwrap();
        let b = Keypair::generate().unwrap();
        assert_ne!(a.public(), b.public());
    }
}
