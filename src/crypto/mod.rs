//! Cryptography: node identity (Ed25519 with strict verification) and, with the secure-channel
//! layer, Noise XK/KK and the encrypted framed channel.

// Base64 for skychat (invites, entries, Basic credentials) and the hypervisor (the WebSocket
// handshake); below `http` so both may use it.
#[cfg(any(feature = "app-skychat", feature = "app-hypervisor"))]
pub mod b64;
pub mod channel;
pub mod hex;
pub mod hmac;
pub mod identity;
pub mod noise;
#[cfg(feature = "hv-term")]
pub mod sha1;

pub use identity::{IdentityError, Keypair, PublicKey, PublicKeyError};
