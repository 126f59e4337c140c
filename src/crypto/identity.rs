//! Node identity: an Ed25519 key pair (DESIGN.md §3.1–3.2).
//!
//! The secret is the 32-byte seed; the public key (PK) is 32 bytes, written as 64 lowercase hex
//! characters. Verification is strict: a signature whose scalar `S` is not below the group order
//! `L` is rejected before salty sees it (RFC 8032 §5.1.7; salty 0.3.0 alone accepts such
//! signatures). The Noise static key pair is derived from the identity, so knowing a PK means
//! knowing its Noise static.
//!
//! A PK is accepted only in the one encoding its point has, and only if no one can hold its
//! secret ([`PublicKey::from_bytes`]): the bytes must decompress to a curve point, compress
//! back to the same 32 bytes (which refuses `y ≥ p` and `x = 0` with the sign bit set), and the
//! point must not be of small order (`[8]P` is not the identity). The eight small-order points
//! (the identity `0100…00` among them) verify forged signatures for every message under
//! cofactored checks and have no secret key, so they are never identities.

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

/// Why some text or bytes are not a public key. The Display reads after the input it is
/// about: `format!("{input:?} is {err}")` gives `"00…" is not a valid public key: not a point
/// on the curve`, and `format!("{input}: {err}")` reads as well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKeyError {
    /// The text is not 64 hex digits.
    Hex(HexError),
    /// The 32 bytes decode to no point on the curve.
    NotOnCurve,
    /// The bytes decode to a point but are not its canonical encoding (`y ≥ p`, or `x = 0`
    /// with the sign bit set).
    NonCanonical,
    /// The point has small order (it lies in the 8-torsion subgroup): no secret key exists.
    SmallOrder,
}

impl fmt::Display for PublicKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublicKeyError::Hex(e) => write!(f, "not a public key (64 hex digits): {e}"),
            PublicKeyError::NotOnCurve => {
                f.write_str("not a valid public key: not a point on the curve")
            }
            PublicKeyError::NonCanonical => f.write_str(
                "not a valid public key: not the canonical encoding of its point (y >= p, or \
                 x = 0 with the sign bit set)",
            ),
            PublicKeyError::SmallOrder => f.write_str(
                "not a valid public key: a point of small order, which no secret key produces",
            ),
        }
    }
}

impl std::error::Error for PublicKeyError {}

impl From<HexError> for PublicKeyError {
    fn from(e: HexError) -> Self {
        PublicKeyError::Hex(e)
    }
}

/// What went wrong with a key or a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// The text is not hex of the right length (a secret key).
    Hex(HexError),
    /// A public key is not acceptable.
    PublicKey(PublicKeyError),
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
            IdentityError::PublicKey(e) => write!(f, "{e}"),
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

impl From<PublicKeyError> for IdentityError {
    fn from(e: PublicKeyError) -> Self {
        IdentityError::PublicKey(e)
    }
}

/// A validated Ed25519 public key: the canonical encoding of a curve point that is not of
/// small order (module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// Accepts 32 bytes only if they are the canonical encoding of a curve point of more than
    /// small order.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<Self, PublicKeyError> {
        let point = salty::CompressedY(*bytes)
            .decompressed()
            .map_err(|_| PublicKeyError::NotOnCurve)?;
        // salty reduces y mod p and ignores a sign bit it cannot honour (x = 0); compressing
        // the point again gives the one canonical encoding.
        if point.compressed().to_bytes() != *bytes {
            return Err(PublicKeyError::NonCanonical);
        }
        // [8]P by three doublings: the identity exactly when P is in the 8-torsion subgroup.
        let p2 = &point + &point;
        let p4 = &p2 + &p2;
        let p8 = &p4 + &p4;
        if p8 == salty::EdwardsPoint::neutral_element() {
            return Err(PublicKeyError::SmallOrder);
        }
        Ok(PublicKey(*bytes))
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, PublicKeyError> {
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
        let pk = salty::PublicKey::try_from(&self.0)
            .map_err(|_| IdentityError::PublicKey(PublicKeyError::NotOnCurve))?;
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
    type Err = PublicKeyError;
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
            Err(PublicKeyError::Hex(_))
        ));
    }

    /// Little-endian hex of `y` with the sign bit of x (bit 255) set if `sign`.
    fn enc(y: &[u8; 32], sign: bool) -> String {
        let mut b = *y;
        b[31] |= u8::from(sign) << 7;
        hex::encode(&b)
    }

    /// p = 2^255 - 19 plus `k`, little-endian (k < 19 + 256).
    fn p_plus(k: u8) -> [u8; 32] {
        let mut b = [0xffu8; 32];
        b[31] = 0x7f;
        let (lo, carry) = 0xedu8.overflowing_add(k);
        b[0] = lo;
        assert!(!carry, "p + {k} needs a carry; not used here");
        b
    }

    /// The encodings that are not identities, with why: the eight small-order points (the
    /// identity first), y = p, y = p + 1, the identity and y = -1 with the sign bit set, and
    /// a y that is on no point.
    #[test]
    fn non_canonical_and_small_order_keys_are_refused() {
        let small_order = [
            "0100000000000000000000000000000000000000000000000000000000000000", // identity
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 2
            "0000000000000000000000000000000000000000000000000000000000000000", // order 4
            "0000000000000000000000000000000000000000000000000000000000000080", // order 4
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", // order 8
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", // order 8
        ];
        for h in small_order {
            assert_eq!(
                PublicKey::from_hex(h),
                Err(PublicKeyError::SmallOrder),
                "{h}"
            );
            // salty alone takes every one of them.
            let b: [u8; 32] = hex::decode_array(h).unwrap();
            assert!(salty::PublicKey::try_from(&b).is_ok(), "{h}");
        }
        let mut one = [0u8; 32];
        one[0] = 1;
        let mut minus_one = p_plus(0);
        minus_one[0] = 0xec;
        let non_canonical = [
            hex::encode(&p_plus(0)), // y = p (the order-4 point y = 0)
            hex::encode(&p_plus(1)), // y = p + 1 (the identity)
            hex::encode(&p_plus(3)), // y = p + 3 (the point y = 3, of large order)
            enc(&one, true),         // identity, x = 0 with the sign bit
            enc(&minus_one, true),   // y = -1, x = 0 with the sign bit
        ];
        for h in &non_canonical {
            assert_eq!(
                PublicKey::from_hex(h),
                Err(PublicKeyError::NonCanonical),
                "{h}"
            );
            let b: [u8; 32] = hex::decode_array(h).unwrap();
            assert!(salty::PublicKey::try_from(&b).is_ok(), "salty takes {h}");
        }
        // y = 3 itself is a valid key (large order, canonical): only its alias is refused.
        let mut three = [0u8; 32];
        three[0] = 3;
        PublicKey::from_bytes(&three).unwrap();
        // y = 2 is on no point.
        let mut two = [0u8; 32];
        two[0] = 2;
        let err = PublicKey::from_bytes(&two).unwrap_err();
        assert_eq!(err, PublicKeyError::NotOnCurve);
        assert_eq!(
            format!("{:?} is {err}", hex::encode(&two)),
            format!(
                "{:?} is not a valid public key: not a point on the curve",
                hex::encode(&two)
            )
        );
        let err = PublicKey::from_hex("0100").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("not a public key (64 hex digits): "),
            "{err}"
        );
        // Real keys are unaffected.
        for seed in 0..64u8 {
            let kp = Keypair::from_seed(&[seed; 32]);
            assert_eq!(
                &PublicKey::from_bytes(kp.public().as_bytes()).unwrap(),
                kp.public()
            );
        }
    }

    #[test]
    fn generate_differs() {
        let a = Keypair::generate().unwrap();
        let b = Keypair::generate().unwrap();
        assert_ne!(a.public(), b.public());
    }
}
