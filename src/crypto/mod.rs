//! Cryptography: node identity (Ed25519 with strict verification) and, with the secure-channel
//! layer, Noise XK/KK and the encrypted framed channel.

pub mod hex;
pub mod identity;

pub use identity::{IdentityError, Keypair, PublicKey};
