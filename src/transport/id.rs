//! Transport types and the deterministic transport id.
//!
//! `id = SHA-512("skywire-rs/tp" ‖ min(pk_a, pk_b) ‖ max(pk_a, pk_b) ‖ type byte)[0..16]`, the
//! PKs compared as bytes, the type byte 1 for stcp and 2 for dmsg. Both ends compute the same
//! id, whoever dialled; it is shown as 32 lowercase hex digits.

use core::fmt;
use core::str::FromStr;

use crate::crypto::PublicKey;
use crate::crypto::hex;
use crate::crypto::hmac::sha512;
use crate::dmsg::entry::{LINK_DMSG, LINK_STCP};

/// Domain separation of the id hash.
const ID_DOMAIN: &[u8] = b"skywire-rs/tp";

/// A transport's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TpType {
    /// Direct TCP with Noise KK.
    Stcp,
    /// A dmsg stream to the peer's port 45.
    Dmsg,
}

impl TpType {
    /// Every type this build has.
    pub const ALL: [TpType; 2] = [TpType::Stcp, TpType::Dmsg];

    /// Its byte (in the id and in discovery links).
    pub fn to_byte(self) -> u8 {
        match self {
            TpType::Stcp => LINK_STCP,
            TpType::Dmsg => LINK_DMSG,
        }
    }

    /// The type of a byte, if known.
    pub fn from_byte(b: u8) -> Option<TpType> {
        match b {
            LINK_STCP => Some(TpType::Stcp),
            LINK_DMSG => Some(TpType::Dmsg),
            _ => None,
        }
    }
}

impl fmt::Display for TpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TpType::Stcp => "stcp",
            TpType::Dmsg => "dmsg",
        })
    }
}

impl FromStr for TpType {
    type Err = String;
    fn from_str(s: &str) -> Result<TpType, String> {
        match s {
            "stcp" => Ok(TpType::Stcp),
            "dmsg" => Ok(TpType::Dmsg),
            other => Err(format!(
                "unknown transport type {:?}: expected stcp or dmsg",
                other.chars().take(40).collect::<String>()
            )),
        }
    }
}

/// A transport id (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TpId(pub [u8; 16]);

impl TpId {
    /// The id of the `kind` transport between `a` and `b` (either order).
    pub fn derive(a: &PublicKey, b: &PublicKey, kind: TpType) -> TpId {
        let (lo, hi) = if a.as_bytes() <= b.as_bytes() {
            (a, b)
        } else {
            (b, a)
        };
        let h = sha512(&[ID_DOMAIN, lo.as_bytes(), hi.as_bytes(), &[kind.to_byte()]]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&h[..16]);
        TpId(id)
    }
}

impl fmt::Display for TpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl FromStr for TpId {
    type Err = String;
    fn from_str(s: &str) -> Result<TpId, String> {
        hex::decode_array::<16>(s)
            .map(TpId)
            .map_err(|e| format!("transport id must be 32 hex digits: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    #[test]
    fn id_is_symmetric_and_golden() {
        let a = *Keypair::from_seed(&[1; 32]).public();
        let b = *Keypair::from_seed(&[2; 32]).public();
        let id = TpId::derive(&a, &b, TpType::Stcp);
        assert_eq!(id, TpId::derive(&b, &a, TpType::Stcp));
        assert_ne!(id, TpId::derive(&a, &b, TpType::Dmsg));
        // The worked example of docs/protocol.md ("Skynet: transports").
        let (lo, hi) = if a.as_bytes() < b.as_bytes() {
            (a, b)
        } else {
            (b, a)
        };
        let mut pre = b"skywire-rs/tp".to_vec();
        pre.extend_from_slice(lo.as_bytes());
        pre.extend_from_slice(hi.as_bytes());
        pre.push(1);
        assert_eq!(&sha512(&[&pre])[..16], &id.0[..]);
        assert_eq!(id.to_string(), GOLDEN_STCP_1_2);
        assert_eq!(GOLDEN_STCP_1_2.parse::<TpId>().unwrap(), id);
        assert!("00".parse::<TpId>().is_err());
        assert_eq!("dmsg".parse::<TpType>().unwrap(), TpType::Dmsg);
        assert!(
            "udp"
                .parse::<TpType>()
                .unwrap_err()
                .contains("stcp or dmsg")
        );
    }

    /// Id of the stcp transport between the keys of seeds [1; 32] and [2; 32].
    const GOLDEN_STCP_1_2: &str = "3a9a6a4d54766df5784b5770fe83f322";
}
