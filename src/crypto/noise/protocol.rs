//! skywire-rs's handshakes (DESIGN.md §3.2–3.3): Noise statics derived from node identities,
//! prologue [`PROLOGUE`], and fixed payloads.
//!
//! Every handshake payload is empty except XK message 3, whose payload is the initiator's
//! 32-byte Ed25519 PK. The responder accepts it only if it is a valid PK whose
//! Edwards→Montgomery map equals the static the responder has just authenticated (the map
//! loses the sign of x, so the PK cannot be recovered from the static alone). A message of any
//! other length than the one expected is refused before any cryptography runs.

use core::fmt;

use super::NoiseError;
use super::handshake::{DhKeypair, HandshakeState, Pattern, Role, TransportState};
use crate::crypto::hmac::HASH_LEN;
use crate::crypto::identity::{KEY_LEN, Keypair, PublicKey};

/// The Noise prologue of every skywire-rs handshake; the protocol version lives here.
pub const PROLOGUE: &[u8] = b"skywire-rs/1";

/// The largest handshake message of our protocol (XK message 3: 48 + 32 + 16 bytes).
pub const MAX_HANDSHAKE_MESSAGE_LEN: usize = 96;

/// One side of a skywire-rs handshake between two identities.
pub struct Handshake {
    state: HandshakeState,
    local: PublicKey,
    remote: Option<PublicKey>,
    failed: bool,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("state", &self.state)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("failed", &self.failed)
            .finish()
    }
}

/// XK initiator: dials `remote`, whose PK it knows, and proves its own identity in message 3.
pub fn xk_initiator(local: &Keypair, remote: &PublicKey) -> Handshake {
    Handshake::build(Pattern::XK, Role::Initiator, local, Some(remote))
}

/// XK responder: accepts anyone, and learns and authenticates the initiator's PK.
pub fn xk_responder(local: &Keypair) -> Handshake {
    Handshake::build(Pattern::XK, Role::Responder, local, None)
}

/// KK initiator: both sides know each other's PK.
pub fn kk_initiator(local: &Keypair, remote: &PublicKey) -> Handshake {
    Handshake::build(Pattern::KK, Role::Initiator, local, Some(remote))
}

/// KK responder: accepts only the initiator whose PK it was given.
pub fn kk_responder(local: &Keypair, remote: &PublicKey) -> Handshake {
    Handshake::build(Pattern::KK, Role::Responder, local, Some(remote))
}

impl Handshake {
    /// A handshake of `pattern` in `role`. `remote` is required except for an XK responder,
    /// which must not be given one.
    pub fn new(
        pattern: Pattern,
        role: Role,
        local: &Keypair,
        remote: Option<&PublicKey>,
    ) -> Result<Self, NoiseError> {
        // Validate against the pattern exactly as the generic state does.
        HandshakeState::new(
            pattern,
            role,
            PROLOGUE,
            DhKeypair::from_secret([0; KEY_LEN]),
            remote.map(|pk| pk.noise_static()),
        )?;
        Ok(Self::build(pattern, role, local, remote))
    }

    fn build(pattern: Pattern, role: Role, local: &Keypair, remote: Option<&PublicKey>) -> Self {
        Handshake {
            state: HandshakeState::init(
                pattern,
                role,
                PROLOGUE,
                DhKeypair::from_identity(local),
                remote.map(|pk| pk.noise_static()),
            ),
            local: *local.public(),
            remote: remote.copied(),
            failed: false,
        }
    }

    /// Injects the ephemeral secret (golden-byte tests only; never outside tests).
    #[doc(hidden)]
    pub fn set_ephemeral(&mut self, secret: [u8; KEY_LEN]) -> Result<(), NoiseError> {
        self.state.set_ephemeral(secret)
    }

    /// The pattern.
    pub fn pattern(&self) -> Pattern {
        self.state.pattern()
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.state.role()
    }

    /// True if the next step is [`write_message`](Self::write_message).
    pub fn is_my_turn(&self) -> bool {
        !self.failed && self.state.is_my_turn()
    }

    /// True once all messages are exchanged and the peer's identity is established.
    pub fn is_finished(&self) -> bool {
        !self.failed && self.state.is_finished() && self.remote.is_some()
    }

    /// True if an error ended this handshake.
    pub fn is_failed(&self) -> bool {
        self.failed || self.state.is_failed()
    }

    /// The peer's PK: known from the start, except for an XK responder, which learns it from
    /// message 3.
    pub fn remote(&self) -> Option<&PublicKey> {
        self.remote.as_ref()
    }

    /// The handshake hash so far.
    pub fn handshake_hash(&self) -> [u8; HASH_LEN] {
        self.state.handshake_hash()
    }

    /// The payload length our protocol puts in the next message: the PK in XK message 3
    /// (index 2), nothing anywhere else.
    fn payload_len(&self) -> usize {
        if self.pattern() == Pattern::XK && self.state.message_index() == 2 {
            KEY_LEN
        } else {
            0
        }
    }

    /// The exact length of the next handshake message, in either direction; `None` once the
    /// handshake is over or failed.
    pub fn next_message_len(&self) -> Option<usize> {
        if self.failed {
            return None;
        }
        self.state.next_message_len(self.payload_len())
    }

    /// Writes the next handshake message into `out` (at least
    /// [`MAX_HANDSHAKE_MESSAGE_LEN`] bytes is always enough) and returns its length.
    pub fn write_message(&mut self, out: &mut [u8]) -> Result<usize, NoiseError> {
        if self.failed {
            return Err(NoiseError::Failed);
        }
        let payload: &[u8] = if self.payload_len() == KEY_LEN {
            self.local.as_bytes()
        } else {
            &[]
        };
        let r = self.state.write_message(payload, out);
        if self.state.is_failed() {
            self.failed = true;
        }
        r
    }

    /// Reads the next handshake message. A call out of turn is refused and changes
    /// nothing; any error caused by the message ends the handshake.
    pub fn read_message(&mut self, msg: &[u8]) -> Result<(), NoiseError> {
        if self.is_failed() {
            return Err(NoiseError::Failed);
        }
        if self.state.is_finished() {
            return Err(NoiseError::Finished);
        }
        if self.state.is_my_turn() {
            return Err(NoiseError::NotMyTurn);
        }
        let r = self.read_checked(msg);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn read_checked(&mut self, msg: &[u8]) -> Result<(), NoiseError> {
        let payload_len = self.payload_len();
        let want = self
            .state
            .next_message_len(payload_len)
            .ok_or(NoiseError::Finished)?;
        if msg.len() != want {
            return Err(NoiseError::BadLength {
                len: msg.len(),
                min: want,
            });
        }
        let mut payload = [0u8; KEY_LEN];
        let n = self.state.read_message(msg, &mut payload)?;
        if payload_len == 0 {
            return if n == 0 {
                Ok(())
            } else {
                Err(NoiseError::UnexpectedPayload { len: n })
            };
        }
        // XK message 3 at the responder: the payload must be a PK mapping to the static
        // just authenticated by the `s` and `se` tokens.
        let pk = PublicKey::from_bytes(&payload).map_err(|_| NoiseError::BadIdentity)?;
        match self.state.remote_static() {
            Some(rs) if *rs == pk.noise_static() => {
                self.remote = Some(pk);
                Ok(())
            }
            _ => Err(NoiseError::IdentityMismatch),
        }
    }

    /// The transport CipherStates and the peer's authenticated PK.
    pub fn into_transport(self) -> Result<(TransportState, PublicKey), NoiseError> {
        if self.failed {
            return Err(NoiseError::Failed);
        }
        let remote = self.remote.ok_or(NoiseError::Unfinished)?;
        Ok((self.state.into_transport()?, remote))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Keypair, Keypair) {
        (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]))
    }

    /// Runs a handshake to the end; returns the first error.
    fn run(i: &mut Handshake, r: &mut Handshake) -> Result<(), NoiseError> {
        let mut buf = [0u8; MAX_HANDSHAKE_MESSAGE_LEN];
        while !i.is_finished() || !r.is_finished() {
            let (a, b) = if i.is_my_turn() {
                (&mut *i, &mut *r)
            } else {
                (&mut *r, &mut *i)
            };
            let n = a.write_message(&mut buf)?;
            assert_eq!(Some(n), b.next_message_len());
            b.read_message(&buf[..n])?;
        }
        Ok(())
    }

    #[test]
    fn xk_learns_initiator_identity() {
        let (a, b) = ids();
        let mut i = xk_initiator(&a, b.public());
        let mut r = xk_responder(&b);
        assert_eq!(r.remote(), None);
        assert_eq!(i.next_message_len(), Some(48));
        run(&mut i, &mut r).unwrap();
        assert_eq!(r.remote(), Some(a.public()));
        let (mut ti, rb) = i.into_transport().unwrap();
        let (mut tr, ra) = r.into_transport().unwrap();
        assert_eq!((&ra, &rb), (a.public(), b.public()));
        assert_eq!(ti.handshake_hash, tr.handshake_hash);
        let c = ti.send.seal(&[], b"x").unwrap();
        assert_eq!(tr.recv.open(&[], &c).unwrap(), b"x");
    }

    #[test]
    fn kk_completes_and_rejects_a_stranger() {
        let (a, b) = ids();
        let mut i = kk_initiator(&a, b.public());
        let mut r = kk_responder(&b, a.public());
        run(&mut i, &mut r).unwrap();
        assert!(i.into_transport().is_ok() && r.into_transport().is_ok());
        // The responder expects someone else: message 1 does not authenticate.
        let c = Keypair::from_seed(&[3; 32]);
        let mut i = kk_initiator(&a, b.public());
        let mut r = kk_responder(&b, c.public());
        assert_eq!(run(&mut i, &mut r), Err(NoiseError::Decrypt));
        assert!(r.is_failed());
        assert_eq!(r.read_message(&[0; 48]), Err(NoiseError::Failed));
        assert_eq!(r.into_transport().unwrap_err(), NoiseError::Failed);
    }

    #[test]
    fn xk_wrong_pk_in_message_3_rejected() {
        let (a, b) = ids();
        let c = Keypair::from_seed(&[3; 32]);
        for (claimed, want) in [
            (*c.public().as_bytes(), NoiseError::IdentityMismatch),
            // y = 2 is not the y-coordinate of any curve point.
            (
                {
                    let mut y2 = [0u8; 32];
                    y2[0] = 2;
                    y2
                },
                NoiseError::BadIdentity,
            ),
        ] {
            // A raw initiator with A's static that claims another PK in message 3.
            let mut i = HandshakeState::new(
                Pattern::XK,
                Role::Initiator,
                PROLOGUE,
                DhKeypair::from_identity(&a),
                Some(b.public().noise_static()),
            )
            .unwrap();
            let mut r = xk_responder(&b);
            let mut buf = [0u8; 128];
            let mut p = [0u8; 32];
            let n = i.write_message(&[], &mut buf).unwrap();
            r.read_message(&buf[..n]).unwrap();
            let n = r.write_message(&mut buf).unwrap();
            i.read_message(&buf[..n], &mut p).unwrap();
            let n = i.write_message(&claimed, &mut buf).unwrap();
            assert_eq!(r.read_message(&buf[..n]), Err(want));
            assert!(r.is_failed() && !r.is_finished() && r.remote().is_none());
            assert_eq!(r.into_transport().unwrap_err(), NoiseError::Failed);
        }
    }

    #[test]
    fn wrong_lengths_and_turns() {
        let (a, b) = ids();
        let mut i = xk_initiator(&a, b.public());
        let mut r = xk_responder(&b);
        let mut buf = [0u8; MAX_HANDSHAKE_MESSAGE_LEN];
        // Out of turn: refused, nothing changes.
        assert_eq!(r.write_message(&mut buf), Err(NoiseError::NotMyTurn));
        assert_eq!(i.read_message(&buf[..48]), Err(NoiseError::NotMyTurn));
        assert!(!i.is_failed() && !r.is_failed());
        // A message with a payload our protocol does not have: refused before decryption.
        let mut raw = HandshakeState::new(
            Pattern::XK,
            Role::Initiator,
            PROLOGUE,
            DhKeypair::from_identity(&a),
            Some(b.public().noise_static()),
        )
        .unwrap();
        let n = raw.write_message(b"extra", &mut buf).unwrap();
        assert_eq!(
            r.read_message(&buf[..n]),
            Err(NoiseError::BadLength { len: 53, min: 48 })
        );
        assert!(r.is_failed());
        assert_eq!(r.next_message_len(), None);
        assert_eq!(r.write_message(&mut buf), Err(NoiseError::Failed));
        // Wrong-pattern construction is refused.
        assert_eq!(
            Handshake::new(Pattern::XK, Role::Responder, &b, Some(a.public())).unwrap_err(),
            NoiseError::UnexpectedRemoteStatic
        );
        assert_eq!(
            Handshake::new(Pattern::KK, Role::Initiator, &a, None).unwrap_err(),
            NoiseError::MissingRemoteStatic
        );
        assert!(Handshake::new(Pattern::XK, Role::Initiator, &a, Some(b.public())).is_ok());
        let _ = i;
    }
}
