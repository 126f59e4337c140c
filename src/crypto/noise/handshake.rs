//! The Noise `HandshakeState` (spec §5.3) for the two patterns we use, XK and KK (spec §7.4),
//! with DH = X25519 (salty), cipher = ChaChaPoly, hash = SHA512.
//!
//! Sans-IO: [`HandshakeState::write_message`] fills a caller buffer, and
//! [`HandshakeState::read_message`] consumes one; no clock, no sockets, no allocation.
//!
//! Errors come in two kinds. A call the caller got wrong (not its turn, a buffer too small, a
//! payload too long) returns an error and leaves the state as it was. Anything caused by the
//! message or the cryptography (bad length, failed authentication, a low-order point) ends
//! the handshake: every later call returns [`NoiseError::Failed`].

use core::fmt;

use super::NoiseError;
use super::cipher::{CipherState, TAG_LEN};
use super::symmetric::SymmetricState;
use crate::crypto::hmac::{self, HASH_LEN};
use crate::crypto::identity::{KEY_LEN, Keypair};

/// Length of an X25519 public key (`DHLEN`).
pub const DH_LEN: usize = 32;
/// The largest Noise message (spec §3).
pub const MAX_MESSAGE_LEN: usize = 65535;

/// The X25519 base point, u = 9.
const BASEPOINT: [u8; DH_LEN] = {
    let mut b = [0u8; DH_LEN];
    b[0] = 9;
    b
};

/// An X25519 key pair: a static (from an identity) or an ephemeral.
#[derive(Clone)]
pub struct DhKeypair {
    secret: [u8; KEY_LEN],
    public: [u8; DH_LEN],
}

impl DhKeypair {
    /// The pair for an X25519 secret (clamped by X25519 itself, so any 32 bytes will do).
    pub fn from_secret(secret: [u8; KEY_LEN]) -> Self {
        let public = salty::agreement::x25519(secret, BASEPOINT);
        DhKeypair { secret, public }
    }

    /// The Noise static of an identity (DESIGN.md §3.2): secret
    /// `clamp(SHA-512(seed)[0..32])`, public the Edwards→Montgomery map of the PK.
    pub fn from_identity(identity: &Keypair) -> Self {
        DhKeypair {
            secret: identity.noise_secret(),
            public: identity.public().noise_static(),
        }
    }

    /// `GENERATE_KEYPAIR()`: a fresh pair from the operating system's random source.
    pub fn generate() -> Result<Self, NoiseError> {
        let mut secret = [0u8; KEY_LEN];
        getrandom::fill(&mut secret).map_err(|e| NoiseError::Random(e.to_string()))?;
        Ok(Self::from_secret(secret))
    }

    /// The public key.
    pub fn public(&self) -> &[u8; DH_LEN] {
        &self.public
    }

    /// `DH(key_pair, public_key)`, refusing the all-zero output of a low-order point.
    fn dh(&self, remote: &[u8; DH_LEN]) -> Result<[u8; DH_LEN], NoiseError> {
        let shared = salty::agreement::x25519(self.secret, *remote);
        // Constant-time test for all zeros (RFC 7748 §6.1).
        if shared.iter().fold(0u8, |acc, b| acc | b) == 0 {
            return Err(NoiseError::LowOrderPoint);
        }
        Ok(shared)
    }
}

impl fmt::Debug for DhKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DhKeypair({}, <secret>)",
            crate::crypto::hex::encode(&self.public)
        )
    }
}

impl Drop for DhKeypair {
    fn drop(&mut self) {
        hmac::wipe(&mut self.secret);
    }
}

/// The handshake patterns this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// `XK`: the initiator knows the responder's static; the responder learns the
    /// initiator's in message 3.
    XK,
    /// `KK`: both sides know each other's static beforehand; two messages.
    KK,
}

/// Which side of the handshake this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends the first message.
    Initiator,
    /// Receives the first message.
    Responder,
}

/// A token of a message pattern (spec §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    E,
    S,
    EE,
    ES,
    SE,
    SS,
}

use Token::{E, EE, ES, S, SE, SS};

impl Pattern {
    /// The full protocol name (spec §8), hashed into the initial state.
    pub fn protocol_name(self) -> &'static str {
        match self {
            Pattern::XK => "Noise_XK_25519_ChaChaPoly_SHA512",
            Pattern::KK => "Noise_KK_25519_ChaChaPoly_SHA512",
        }
    }

    /// Number of handshake messages.
    pub fn message_count(self) -> usize {
        self.messages().len()
    }

    /// The message patterns after the `...`; even indices are sent by the initiator.
    fn messages(self) -> &'static [&'static [Token]] {
        match self {
            // XK:
            //   <- s
            //   ...
            //   -> e, es
            //   <- e, ee
            //   -> s, se
            Pattern::XK => &[&[E, ES], &[E, EE], &[S, SE]],
            // KK:
            //   -> s
            //   <- s
            //   ...
            //   -> e, es, ss
            //   <- e, ee, se
            Pattern::KK => &[&[E, ES, SS], &[E, EE, SE]],
        }
    }

    /// Whether the initiator's static is a pre-message (`-> s` before `...`).
    fn initiator_premessage(self) -> bool {
        matches!(self, Pattern::KK)
    }

    /// Whether `role` must be given the remote static before the handshake starts.
    fn needs_remote_static(self, role: Role) -> bool {
        match self {
            Pattern::XK => role == Role::Initiator,
            Pattern::KK => true,
        }
    }
}

/// The result of a finished handshake: one CipherState per direction and the handshake hash.
#[derive(Debug)]
pub struct TransportState {
    /// Seals what this side sends.
    pub send: CipherState,
    /// Opens what this side receives.
    pub recv: CipherState,
    /// `h` at the end of the handshake (spec §11.2): identical on both sides, usable for
    /// channel binding.
    pub handshake_hash: [u8; HASH_LEN],
}

/// The handshake state machine for one side of an XK or KK handshake.
pub struct HandshakeState {
    pattern: Pattern,
    role: Role,
    symmetric: SymmetricState,
    s: DhKeypair,
    e: Option<DhKeypair>,
    rs: Option<[u8; DH_LEN]>,
    re: Option<[u8; DH_LEN]>,
    /// Index of the next message pattern to write or read.
    next: usize,
    failed: bool,
}

impl fmt::Debug for HandshakeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeState")
            .field("pattern", &self.pattern)
            .field("role", &self.role)
            .field("next", &self.next)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl HandshakeState {
    /// `Initialize(handshake_pattern, initiator, prologue, s, e, rs, re)` with `e` and `re`
    /// empty. `remote_static` is required for an XK initiator and for both KK sides, and
    /// must be absent for an XK responder (which learns it in message 3).
    pub fn new(
        pattern: Pattern,
        role: Role,
        prologue: &[u8],
        s: DhKeypair,
        remote_static: Option<[u8; DH_LEN]>,
    ) -> Result<Self, NoiseError> {
        match (pattern.needs_remote_static(role), remote_static.is_some()) {
            (true, false) => return Err(NoiseError::MissingRemoteStatic),
            (false, true) => return Err(NoiseError::UnexpectedRemoteStatic),
            _ => {}
        }
        Ok(Self::init(pattern, role, prologue, s, remote_static))
    }

    /// The body of `Initialize`, for arguments already checked against the pattern.
    pub(crate) fn init(
        pattern: Pattern,
        role: Role,
        prologue: &[u8],
        s: DhKeypair,
        remote_static: Option<[u8; DH_LEN]>,
    ) -> Self {
        // "Derives a protocol_name byte sequence ... Calls InitializeSymmetric(protocol_name)."
        let mut symmetric = SymmetricState::new(pattern.protocol_name().as_bytes());
        // "Calls MixHash(prologue)."
        symmetric.mix_hash(prologue);
        // "Calls MixHash() once for each public key listed in the pre-messages", the
        // initiator's pre-message first.
        let (initiator_s, responder_s) = match role {
            Role::Initiator => (Some(s.public), remote_static),
            Role::Responder => (remote_static, Some(s.public)),
        };
        if pattern.initiator_premessage()
            && let Some(k) = initiator_s
        {
            symmetric.mix_hash(&k);
        }
        // Both XK and KK have `<- s` as the responder's pre-message.
        if let Some(k) = responder_s {
            symmetric.mix_hash(&k);
        }
        HandshakeState {
            pattern,
            role,
            symmetric,
            s,
            e: None,
            rs: remote_static,
            re: None,
            next: 0,
            failed: false,
        }
    }

    /// Injects the ephemeral secret the next `e` token will use, instead of a random one.
    /// Test hook (known-answer vectors, golden bytes); never use it outside tests.
    #[doc(hidden)]
    pub fn set_ephemeral(&mut self, secret: [u8; KEY_LEN]) -> Result<(), NoiseError> {
        if self.e.is_some() || self.next > 0 {
            return Err(NoiseError::EphemeralAlreadySet);
        }
        self.e = Some(DhKeypair::from_secret(secret));
        Ok(())
    }

    /// The pattern.
    pub fn pattern(&self) -> Pattern {
        self.pattern
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// True once every handshake message has been written or read.
    pub fn is_finished(&self) -> bool {
        !self.failed && self.next >= self.pattern.message_count()
    }

    /// Index of the next handshake message (0-based; even ones are the initiator's).
    pub fn message_index(&self) -> usize {
        self.next
    }

    /// True if an error ended this handshake.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// True if the next step is `write_message` (false: `read_message`, or finished/failed).
    pub fn is_my_turn(&self) -> bool {
        !self.failed
            && self.next < self.pattern.message_count()
            && self.next.is_multiple_of(2) == (self.role == Role::Initiator)
    }

    /// The remote static public key, once known.
    pub fn remote_static(&self) -> Option<&[u8; DH_LEN]> {
        self.rs.as_ref()
    }

    /// The handshake hash `h` so far (final once [`is_finished`](Self::is_finished)).
    pub fn handshake_hash(&self) -> [u8; HASH_LEN] {
        self.symmetric.hash()
    }

    /// The length of the next handshake message (either direction) carrying a payload of
    /// `payload_len` bytes, or `None` when the handshake is over.
    pub fn next_message_len(&self, payload_len: usize) -> Option<usize> {
        if self.failed {
            return None;
        }
        let tokens = self.pattern.messages().get(self.next)?;
        let mut has_key = self.symmetric.has_key();
        let tag = |k: bool| if k { TAG_LEN } else { 0 };
        let mut len = 0;
        for t in tokens.iter() {
            match t {
                E => len += DH_LEN,
                S => len += DH_LEN + tag(has_key),
                EE | ES | SE | SS => has_key = true,
            }
        }
        Some(len + payload_len + tag(has_key))
    }

    /// Checks the state allows a write (`writing`) or a read; no side effects.
    fn check_turn(&self, writing: bool) -> Result<(), NoiseError> {
        if self.failed {
            return Err(NoiseError::Failed);
        }
        if self.next >= self.pattern.message_count() {
            return Err(NoiseError::Finished);
        }
        if self.is_my_turn() != writing {
            return Err(NoiseError::NotMyTurn);
        }
        Ok(())
    }

    /// `WriteMessage(payload, message_buffer)`: writes the next handshake message into `out`
    /// and returns its length.
    pub fn write_message(&mut self, payload: &[u8], out: &mut [u8]) -> Result<usize, NoiseError> {
        self.check_turn(true)?;
        let need = self
            .next_message_len(payload.len())
            .ok_or(NoiseError::Finished)?;
        if need > MAX_MESSAGE_LEN {
            return Err(NoiseError::TooLong { len: need });
        }
        if out.len() < need {
            return Err(NoiseError::BufferTooSmall {
                need,
                have: out.len(),
            });
        }
        match self.write_tokens(payload, &mut out[..need]) {
            Ok(n) => {
                self.next += 1;
                Ok(n)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn write_tokens(&mut self, payload: &[u8], out: &mut [u8]) -> Result<usize, NoiseError> {
        let tokens = self.pattern.messages()[self.next];
        let mut pos = 0;
        // "Fetches and deletes the next message pattern from message_patterns, then
        // sequentially processes each token from the message pattern".
        for &t in tokens {
            match t {
                // "e": "Sets e (which must be empty) to GENERATE_KEYPAIR(). Appends e.public_key
                // to the buffer. Calls MixHash(e.public_key)." (A test may have injected e.)
                E => {
                    if self.e.is_none() {
                        self.e = Some(DhKeypair::generate()?);
                    }
                    let e_pub = *self.local_e()?.public();
                    out[pos..pos + DH_LEN].copy_from_slice(&e_pub);
                    pos += DH_LEN;
                    self.symmetric.mix_hash(&e_pub);
                }
                // "s": "Appends EncryptAndHash(s.public_key) to the buffer."
                S => {
                    let s_pub = self.s.public;
                    pos += self.symmetric.encrypt_and_hash(&s_pub, &mut out[pos..])?;
                }
                dh => self.mix_dh(dh)?,
            }
        }
        // "Appends EncryptAndHash(payload) to the buffer."
        pos += self.symmetric.encrypt_and_hash(payload, &mut out[pos..])?;
        Ok(pos)
    }

    /// `ReadMessage(message, payload_buffer)`: consumes the next handshake message and writes
    /// its decrypted payload into `payload_out`, returning the payload length.
    pub fn read_message(
        &mut self,
        msg: &[u8],
        payload_out: &mut [u8],
    ) -> Result<usize, NoiseError> {
        self.check_turn(false)?;
        let overhead = self.next_message_len(0).ok_or(NoiseError::Finished)?;
        if msg.len() > MAX_MESSAGE_LEN || msg.len() < overhead {
            self.failed = true;
            return Err(if msg.len() > MAX_MESSAGE_LEN {
                NoiseError::TooLong { len: msg.len() }
            } else {
                NoiseError::BadLength {
                    len: msg.len(),
                    min: overhead,
                }
            });
        }
        let payload_len = msg.len() - overhead;
        if payload_out.len() < payload_len {
            return Err(NoiseError::BufferTooSmall {
                need: payload_len,
                have: payload_out.len(),
            });
        }
        match self.read_tokens(msg, payload_out) {
            Ok(n) => {
                self.next += 1;
                Ok(n)
            }
            Err(e) => {
                self.failed = true;
                payload_out[..payload_len].fill(0);
                Err(e)
            }
        }
    }

    fn read_tokens(&mut self, msg: &[u8], payload_out: &mut [u8]) -> Result<usize, NoiseError> {
        let tokens = self.pattern.messages()[self.next];
        let mut pos = 0;
        for &t in tokens {
            match t {
                // "e": "Sets re (which must be empty) to the next DHLEN bytes from the message.
                // Calls MixHash(re.public_key)."
                E => {
                    let re: [u8; DH_LEN] = msg
                        .get(pos..pos + DH_LEN)
                        .and_then(|b| b.try_into().ok())
                        .ok_or(NoiseError::BadLength {
                            len: msg.len(),
                            min: pos + DH_LEN,
                        })?;
                    pos += DH_LEN;
                    self.re = Some(re);
                    self.symmetric.mix_hash(&re);
                }
                // "s": "Sets temp to the next DHLEN + 16 bytes of the message if HasKey() ==
                // True, or to the next DHLEN bytes otherwise. Sets rs (which must be empty) to
                // DecryptAndHash(temp)."
                S => {
                    let len = DH_LEN + if self.symmetric.has_key() { TAG_LEN } else { 0 };
                    let temp = msg.get(pos..pos + len).ok_or(NoiseError::BadLength {
                        len: msg.len(),
                        min: pos + len,
                    })?;
                    pos += len;
                    let mut rs = [0u8; DH_LEN];
                    self.symmetric.decrypt_and_hash(temp, &mut rs)?;
                    self.rs = Some(rs);
                }
                dh => self.mix_dh(dh)?,
            }
        }
        // "Calls DecryptAndHash() on the remaining bytes of the message and stores the output
        // into payload_buffer."
        self.symmetric.decrypt_and_hash(&msg[pos..], payload_out)
    }

    fn local_e(&self) -> Result<&DhKeypair, NoiseError> {
        // Only reachable with e set: every pattern here writes `e` before using it.
        self.e.as_ref().ok_or(NoiseError::Failed)
    }

    fn remote_e(&self) -> Result<&[u8; DH_LEN], NoiseError> {
        self.re.as_ref().ok_or(NoiseError::Failed)
    }

    fn remote_s(&self) -> Result<&[u8; DH_LEN], NoiseError> {
        self.rs.as_ref().ok_or(NoiseError::MissingRemoteStatic)
    }

    /// The DH tokens. The first letter names the initiator's key, the second the responder's.
    fn mix_dh(&mut self, token: Token) -> Result<(), NoiseError> {
        let initiator = self.role == Role::Initiator;
        let shared = match token {
            // "ee": "Calls MixKey(DH(e, re))."
            EE => self.local_e()?.dh(self.remote_e()?)?,
            // "es": "Calls MixKey(DH(e, rs)) if initiator, MixKey(DH(s, re)) if responder."
            ES if initiator => self.local_e()?.dh(self.remote_s()?)?,
            ES => self.s.dh(self.remote_e()?)?,
            // "se": "Calls MixKey(DH(s, re)) if initiator, MixKey(DH(e, rs)) if responder."
            SE if initiator => self.s.dh(self.remote_e()?)?,
            SE => self.local_e()?.dh(self.remote_s()?)?,
            // "ss": "Calls MixKey(DH(s, rs))."
            SS => self.s.dh(self.remote_s()?)?,
            E | S => return Ok(()),
        };
        let mut shared = shared;
        self.symmetric.mix_key(&shared);
        hmac::wipe(&mut shared);
        Ok(())
    }

    /// `Split()` after the last message: the transport CipherStates, oriented for this side.
    pub fn into_transport(self) -> Result<TransportState, NoiseError> {
        if self.failed {
            return Err(NoiseError::Failed);
        }
        if !self.is_finished() {
            return Err(NoiseError::Unfinished);
        }
        // c1 encrypts initiator→responder, c2 responder→initiator.
        let (c1, c2) = self.symmetric.split();
        let (send, recv) = match self.role {
            Role::Initiator => (c1, c2),
            Role::Responder => (c2, c1),
        };
        Ok(TransportState {
            send,
            recv,
            handshake_hash: self.symmetric.hash(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statics() -> (DhKeypair, DhKeypair) {
        (
            DhKeypair::from_secret([1; 32]),
            DhKeypair::from_secret([2; 32]),
        )
    }

    fn pair(pattern: Pattern) -> (HandshakeState, HandshakeState) {
        let (i, r) = statics();
        let (ipub, rpub) = (*i.public(), *r.public());
        let init = HandshakeState::new(pattern, Role::Initiator, b"pro", i, Some(rpub)).unwrap();
        let rs = (pattern == Pattern::KK).then_some(ipub);
        let resp = HandshakeState::new(pattern, Role::Responder, b"pro", r, rs).unwrap();
        (init, resp)
    }

    /// Runs the rest of a handshake, each message carrying "hi".
    fn run(i: &mut HandshakeState, r: &mut HandshakeState) {
        let mut buf = [0u8; 256];
        let mut payload = [0u8; 64];
        while !i.is_finished() || !r.is_finished() {
            let (a, b) = if i.is_my_turn() {
                (&mut *i, &mut *r)
            } else {
                (&mut *r, &mut *i)
            };
            let n = a.write_message(b"hi", &mut buf).unwrap();
            assert_eq!(Some(n), b.next_message_len(2));
            let m = b.read_message(&buf[..n], &mut payload).unwrap();
            assert_eq!(&payload[..m], b"hi");
        }
    }

    #[test]
    fn xk_and_kk_complete_and_agree() {
        for pattern in [Pattern::XK, Pattern::KK] {
            let (mut i, mut r) = pair(pattern);
            run(&mut i, &mut r);
            assert_eq!(i.handshake_hash(), r.handshake_hash());
            assert_eq!(r.remote_static(), Some(&statics().0.public));
            let mut ti = i.into_transport().unwrap();
            let mut tr = r.into_transport().unwrap();
            let c = ti.send.seal(b"", b"ping").unwrap();
            assert_eq!(tr.recv.open(b"", &c).unwrap(), b"ping");
            let c = tr.send.seal(b"", b"pong").unwrap();
            assert_eq!(ti.recv.open(b"", &c).unwrap(), b"pong");
        }
    }

    #[test]
    fn remote_static_requirements() {
        let (i, _) = statics();
        let e = HandshakeState::new(Pattern::XK, Role::Initiator, b"", i.clone(), None);
        assert_eq!(e.unwrap_err(), NoiseError::MissingRemoteStatic);
        let e = HandshakeState::new(Pattern::XK, Role::Responder, b"", i.clone(), Some([9; 32]));
        assert_eq!(e.unwrap_err(), NoiseError::UnexpectedRemoteStatic);
        let e = HandshakeState::new(Pattern::KK, Role::Responder, b"", i, None);
        assert_eq!(e.unwrap_err(), NoiseError::MissingRemoteStatic);
    }

    #[test]
    fn wrong_calls_leave_state_alone() {
        let (mut i, mut r) = pair(Pattern::XK);
        let mut buf = [0u8; 256];
        let mut p = [0u8; 16];
        assert_eq!(r.write_message(b"", &mut buf), Err(NoiseError::NotMyTurn));
        assert_eq!(
            i.read_message(&buf[..48], &mut p),
            Err(NoiseError::NotMyTurn)
        );
        assert!(matches!(
            i.write_message(b"", &mut buf[..47]),
            Err(NoiseError::BufferTooSmall { need: 48, have: 47 })
        ));
        assert_eq!(
            i.write_message(&[0u8; MAX_MESSAGE_LEN], &mut buf),
            Err(NoiseError::TooLong {
                len: MAX_MESSAGE_LEN + 48
            })
        );
        // A payload buffer too small for the payload in the message.
        let n = i.write_message(b"0123456789abcdefXYZ", &mut buf).unwrap();
        assert!(matches!(
            r.read_message(&buf[..n], &mut p),
            Err(NoiseError::BufferTooSmall { need: 19, have: 16 })
        ));
        let mut big = [0u8; 32];
        assert_eq!(r.read_message(&buf[..n], &mut big).unwrap(), 19);
        // None of the refused calls disturbed the handshake.
        run(&mut i, &mut r);
        assert!(i.is_finished() && r.is_finished());
        assert_eq!(i.write_message(b"", &mut buf), Err(NoiseError::Finished));
        assert_eq!(i.read_message(&buf, &mut p), Err(NoiseError::Finished));
        assert_eq!(i.next_message_len(0), None);
        assert_eq!(
            i.set_ephemeral([3; 32]),
            Err(NoiseError::EphemeralAlreadySet)
        );
        let (i2, _) = pair(Pattern::KK);
        assert_eq!(i2.into_transport().unwrap_err(), NoiseError::Unfinished);
    }

    #[test]
    fn bad_message_fails_for_good() {
        for pattern in [Pattern::XK, Pattern::KK] {
            let (mut i, mut r) = pair(pattern);
            let mut buf = [0u8; 256];
            let mut p = [0u8; 16];
            let n = i.write_message(b"", &mut buf).unwrap();
            // Too short.
            let (_, mut r2) = pair(pattern);
            assert!(matches!(
                r2.read_message(&buf[..n - 1], &mut p),
                Err(NoiseError::BadLength { .. })
            ));
            assert_eq!(r2.read_message(&buf[..n], &mut p), Err(NoiseError::Failed));
            assert!(r2.is_failed() && !r2.is_finished() && !r2.is_my_turn());
            // Tampered.
            buf[n - 1] ^= 0x80;
            assert_eq!(r.read_message(&buf[..n], &mut p), Err(NoiseError::Decrypt));
            buf[n - 1] ^= 0x80;
            assert_eq!(r.read_message(&buf[..n], &mut p), Err(NoiseError::Failed));
            assert_eq!(r.write_message(b"", &mut buf), Err(NoiseError::Failed));
            assert_eq!(r.into_transport().unwrap_err(), NoiseError::Failed);
        }
    }

    #[test]
    fn low_order_ephemeral_rejected() {
        for pattern in [Pattern::XK, Pattern::KK] {
            // u = 0 and u = 1 are low-order points: every DH with them is all zeros.
            for u in [[0u8; 32], {
                let mut one = [0u8; 32];
                one[0] = 1;
                one
            }] {
                let (_, mut r2) = pair(pattern);
                let mut msg = [0u8; 48];
                msg[..32].copy_from_slice(&u);
                let mut p = [0u8; 16];
                assert_eq!(
                    r2.read_message(&msg, &mut p),
                    Err(NoiseError::LowOrderPoint)
                );
            }
        }
    }
}
