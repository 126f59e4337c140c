//! Cryptography: node identity (Ed25519 with strict verification) and, with the secure-channel
//! layer, Noise XK/KK and the encrypted framed channel.

pub mod channel;
pub mod hex;
pub mod hmac;
pub mod identity;
pub mod noise;

pub use identity::{IdentityError, Keypair, PublicKey, PublicKeyError};
