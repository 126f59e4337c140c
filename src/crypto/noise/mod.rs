//! Noise handshakes (DESIGN.md §3.2–3.3): `Noise_XK_25519_ChaChaPoly_SHA512` and
//! `Noise_KK_25519_ChaChaPoly_SHA512`, written as the Noise specification (revision 34) states
//! them, step by step.
//!
//! - [`cipher`]: `CipherState`, the per-direction key and implicit nonce counter, with
//!   allocation-free detached seal/open for the session layer.
//! - `symmetric`: `SymmetricState` (chaining key, handshake hash).
//! - [`handshake`]: `HandshakeState` for XK and KK, generic over keys and prologue; this is
//!   what the conformance vectors exercise.
//! - [`protocol`]: skywire-rs's use of it: statics derived from identities, prologue
//!   [`PROLOGUE`], and the XK rule that the initiator's Ed25519 PK is the payload of
//!   message 3 and must map to the static the responder authenticated.
//!
//! All of it is sans-IO; [`crate::crypto::channel`] runs it over a byte stream.

use core::fmt;

pub mod cipher;
pub mod handshake;
pub mod protocol;
mod symmetric;

pub use cipher::{CipherState, TAG_LEN};
pub use handshake::{
    DH_LEN, DhKeypair, HandshakeState, MAX_MESSAGE_LEN, Pattern, Role, TransportState,
};
pub use protocol::{Handshake, PROLOGUE, kk_initiator, kk_responder, xk_initiator, xk_responder};

/// What went wrong in a handshake or with a CipherState.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoiseError {
    /// `write_message` when a message was expected from the peer, or the reverse.
    NotMyTurn,
    /// The handshake already exchanged all its messages.
    Finished,
    /// `into_transport` before the last handshake message.
    Unfinished,
    /// An earlier error ended this handshake; it cannot continue.
    Failed,
    /// The caller's buffer is too small.
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        have: usize,
    },
    /// A message longer than Noise's 65535-byte limit (or than the AEAD can take).
    TooLong {
        /// Its length.
        len: usize,
    },
    /// A message shorter than its pattern requires, or not the exact length our protocol
    /// expects.
    BadLength {
        /// Its length.
        len: usize,
        /// The length required.
        min: usize,
    },
    /// Authentication failed: the message was altered, or the peer has other keys.
    Decrypt,
    /// The peer sent a low-order point: the Diffie-Hellman output was all zeros.
    LowOrderPoint,
    /// The 64-bit nonce counter is spent; rekey or reconnect.
    NonceExhausted,
    /// This pattern and role need the peer's static key up front.
    MissingRemoteStatic,
    /// An XK responder learns the peer's static in the handshake and takes none up front.
    UnexpectedRemoteStatic,
    /// An ephemeral was injected after the handshake already had one.
    EphemeralAlreadySet,
    /// XK message 3: the initiator's Ed25519 PK does not map to the static it authenticated.
    IdentityMismatch,
    /// XK message 3: the payload is not a valid Ed25519 public key.
    BadIdentity,
    /// A handshake payload where our protocol has none.
    UnexpectedPayload {
        /// Its length.
        len: usize,
    },
    /// The operating system's random source failed.
    Random(String),
}

impl fmt::Display for NoiseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoiseError::NotMyTurn => f.write_str("handshake message out of order"),
            NoiseError::Finished => f.write_str("handshake already finished"),
            NoiseError::Unfinished => f.write_str("handshake not finished yet"),
            NoiseError::Failed => f.write_str("handshake already failed"),
            NoiseError::BufferTooSmall { need, have } => {
                write!(f, "buffer too small: need {need} bytes, have {have}")
            }
            NoiseError::TooLong { len } => {
                write!(f, "message of {len} bytes exceeds the Noise limit of 65535")
            }
            NoiseError::BadLength { len, min } => {
                write!(f, "bad handshake message length {len} (expected {min})")
            }
            NoiseError::Decrypt => f.write_str("decryption failed: message altered or wrong keys"),
            NoiseError::LowOrderPoint => {
                f.write_str("peer sent a low-order public key (all-zero shared secret)")
            }
            NoiseError::NonceExhausted => {
                f.write_str("nonce counter exhausted: rekey or reconnect")
            }
            NoiseError::MissingRemoteStatic => f.write_str("the peer's static key is required"),
            NoiseError::UnexpectedRemoteStatic => {
                f.write_str("an XK responder takes no remote static key")
            }
            NoiseError::EphemeralAlreadySet => f.write_str("ephemeral key already set"),
            NoiseError::IdentityMismatch => f.write_str(
                "peer's public key does not match the Noise static it authenticated with",
            ),
            NoiseError::BadIdentity => f.write_str("peer sent an invalid Ed25519 public key"),
            NoiseError::UnexpectedPayload { len } => {
                write!(f, "unexpected {len}-byte handshake payload")
            }
            NoiseError::Random(e) => write!(f, "no randomness from the OS: {e}"),
        }
    }
}

impl std::error::Error for NoiseError {}
