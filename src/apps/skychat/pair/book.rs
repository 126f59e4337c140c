//! The pair book: one record per peer (`pending-out`: we invited it; `pending-in`: it invited
//! us; `paired`), and the rules of the pairing steps, local (HTTP) and remote (envelopes).
//! Sans-IO: the service around it ([`super::Pairs`]) saves it and talks to peers.

use crate::crypto::PublicKey;

/// Pairs kept in all (any state).
pub const MAX_PAIRS: usize = 256;
/// Invites received and not yet answered.
pub const MAX_PENDING_IN: usize = 64;
/// Invites sent and not yet answered.
pub const MAX_PENDING_OUT: usize = 64;

/// A pair's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// We invited the peer; it has not answered.
    PendingOut,
    /// The peer invited us; we have not answered.
    PendingIn,
    /// Both sides agreed.
    Paired,
}

impl Status {
    /// `pending-out` | `pending-in` | `paired`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::PendingOut => "pending-out",
            Status::PendingIn => "pending-in",
            Status::Paired => "paired",
        }
    }

    /// Parses [`Status::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "pending-out" => Some(Status::PendingOut),
            "pending-in" => Some(Status::PendingIn),
            "paired" => Some(Status::Paired),
            _ => None,
        }
    }
}

/// One pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    /// The other visor.
    pub peer: PublicKey,
    /// Its state.
    pub status: Status,
    /// When it entered its state (unix ms).
    pub since: u64,
    /// The last pair message either way (unix ms, 0 = none).
    pub last_msg_at: u64,
}

/// A refused local step: its HTTP status and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fail(pub u16, pub String);

impl From<String> for Fail {
    /// A failure of the service itself (a save that did not happen).
    fn from(s: String) -> Fail {
        Fail(500, s)
    }
}

/// What `pair add` leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddStep {
    /// A new invite (recorded `pending-out`): send it.
    Invite,
    /// An invite of ours is pending already: send it again.
    Resend,
    /// The peer invited us first: adding it is accepting its invite.
    AcceptTheirs,
}

/// What a received `pair-invite` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InviteStep {
    /// A new pending invite.
    New,
    /// Its invite was pending already.
    Again,
    /// We had invited it too: now paired (tell it with a `pair-accept`).
    Crossed,
    /// Paired already (it lost its side): tell it with a `pair-accept`.
    AlreadyPaired,
}

/// Every pair, in the order they were made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Book {
    pairs: Vec<Pair>,
}

impl Book {
    /// A book of `pairs` (as loaded: at most [`MAX_PAIRS`], one per peer, else refused).
    pub fn from_pairs(pairs: Vec<Pair>) -> Result<Book, String> {
        if pairs.len() > MAX_PAIRS {
            return Err(format!(
                "{} pairs, more than the {MAX_PAIRS} allowed",
                pairs.len()
            ));
        }
        for (i, p) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|q| q.peer == p.peer) {
                return Err(format!("peer {} is listed twice", p.peer));
            }
        }
        Ok(Book { pairs })
    }

    /// Every pair.
    pub fn pairs(&self) -> &[Pair] {
        &self.pairs
    }

    /// The pair with `peer`.
    pub fn get(&self, peer: &PublicKey) -> Option<&Pair> {
        self.pairs.iter().find(|p| p.peer == *peer)
    }

    fn status(&self, peer: &PublicKey) -> Option<Status> {
        self.get(peer).map(|p| p.status)
    }

    fn count(&self, s: Status) -> usize {
        self.pairs.iter().filter(|p| p.status == s).count()
    }

    fn set(&mut self, peer: PublicKey, status: Status, now: u64) {
        match self.pairs.iter_mut().find(|p| p.peer == peer) {
            Some(p) => {
                p.status = status;
                p.since = now;
            }
            None => self.pairs.push(Pair {
                peer,
                status,
                since: now,
                last_msg_at: 0,
            }),
        }
    }

    fn drop_peer(&mut self, peer: &PublicKey) -> Option<Pair> {
        let i = self.pairs.iter().position(|p| p.peer == *peer)?;
        Some(self.pairs.remove(i))
    }

    /// Notes a pair message with `peer` at `now`.
    pub fn note_msg(&mut self, peer: &PublicKey, now: u64) {
        if let Some(p) = self.pairs.iter_mut().find(|p| p.peer == *peer) {
            p.last_msg_at = p.last_msg_at.max(now);
        }
    }

    /// `pair add <peer>` (from `me`).
    pub fn add(&mut self, me: &PublicKey, peer: PublicKey, now: u64) -> Result<AddStep, Fail> {
        if peer == *me {
            return Err(Fail(
                400,
                "that is this visor's own key: pair with another visor".into(),
            ));
        }
        match self.status(&peer) {
            Some(Status::PendingOut) => Ok(AddStep::Resend),
            Some(Status::PendingIn) => Ok(AddStep::AcceptTheirs),
            Some(Status::Paired) => Err(Fail(
                409,
                format!("already paired with {peer} (pair send -t {peer} -m <text>)"),
            )),
            None if self.count(Status::PendingOut) >= MAX_PENDING_OUT => Err(Fail(
                429,
                format!(
                    "{MAX_PENDING_OUT} invites are waiting for an answer already: remove some \
                     (pair list; pair remove <pk>)"
                ),
            )),
            None if self.pairs.len() >= MAX_PAIRS => Err(Fail(
                429,
                format!("{MAX_PAIRS} pairs already: remove some (pair list; pair remove <pk>)"),
            )),
            None => {
                self.set(peer, Status::PendingOut, now);
                Ok(AddStep::Invite)
            }
        }
    }

    fn no_invite(peer: &PublicKey) -> Fail {
        Fail(
            404,
            format!("no invite from {peer} is pending (pair list shows the pending-in ones)"),
        )
    }

    /// Checks that `peer`'s invite is pending (before the acceptance is sent).
    pub fn check_invite(&self, peer: &PublicKey) -> Result<(), Fail> {
        match self.status(peer) {
            Some(Status::PendingIn) => Ok(()),
            _ => Err(Self::no_invite(peer)),
        }
    }

    /// Our acceptance of `peer`'s invite reached it: paired.
    pub fn accepted(&mut self, peer: PublicKey, now: u64) {
        self.set(peer, Status::Paired, now);
    }

    /// `pair decline <peer>`: its pending invite is dropped.
    pub fn decline(&mut self, peer: &PublicKey) -> Result<(), Fail> {
        self.check_invite(peer)?;
        self.drop_peer(peer);
        Ok(())
    }

    /// `pair remove <peer>`: whatever we had with it goes; its former state.
    pub fn remove(&mut self, peer: &PublicKey) -> Result<Status, Fail> {
        self.drop_peer(peer).map(|p| p.status).ok_or_else(|| {
            Fail(
                404,
                format!("no pair or invite with {peer} (pair list shows them)"),
            )
        })
    }

    /// Forgets `peer` (an invite the peer refused).
    pub fn forget(&mut self, peer: &PublicKey) {
        self.drop_peer(peer);
    }

    /// Checks that a message may go to `peer`.
    pub fn check_send(&self, peer: &PublicKey) -> Result<(), Fail> {
        match self.status(peer) {
            Some(Status::Paired) => Ok(()),
            Some(Status::PendingOut) => Err(Fail(
                409,
                format!("{peer} has not accepted the invite yet (pair list shows it pending-out)"),
            )),
            Some(Status::PendingIn) => Err(Fail(
                409,
                format!("{peer} invited you: accept first (pair accept {peer})"),
            )),
            None => Err(Fail(
                404,
                format!("not paired with {peer}: invite it first (pair add {peer})"),
            )),
        }
    }

    /// A `pair-invite` from `peer`; `Err` is the nack's reason.
    pub fn on_invite(&mut self, peer: PublicKey, now: u64) -> Result<InviteStep, String> {
        match self.status(&peer) {
            Some(Status::PendingIn) => Ok(InviteStep::Again),
            Some(Status::PendingOut) => {
                self.set(peer, Status::Paired, now);
                Ok(InviteStep::Crossed)
            }
            Some(Status::Paired) => Ok(InviteStep::AlreadyPaired),
            None if self.count(Status::PendingIn) >= MAX_PENDING_IN => Err(format!(
                "the receiver has {MAX_PENDING_IN} unanswered invites already; try later"
            )),
            None if self.pairs.len() >= MAX_PAIRS => {
                Err(format!("the receiver has {MAX_PAIRS} pairs already"))
            }
            None => {
                self.set(peer, Status::PendingIn, now);
                Ok(InviteStep::New)
            }
        }
    }

    /// A `pair-accept` from `peer`: true when it paired us now (false: paired already).
    pub fn on_accept(&mut self, peer: PublicKey, now: u64) -> Result<bool, String> {
        match self.status(&peer) {
            Some(Status::PendingOut) => {
                self.set(peer, Status::Paired, now);
                Ok(true)
            }
            Some(Status::Paired) => Ok(false),
            _ => Err("no invite to you is pending here (it was removed): invite again".into()),
        }
    }

    /// A `pair-decline` from `peer`.
    pub fn on_decline(&mut self, peer: &PublicKey) -> Result<(), String> {
        match self.status(peer) {
            Some(Status::PendingOut) => {
                self.drop_peer(peer);
                Ok(())
            }
            _ => Err("no invite to you is pending here".into()),
        }
    }

    /// A `pair-remove` from `peer`: its former state, if it had one.
    pub fn on_remove(&mut self, peer: &PublicKey) -> Option<Status> {
        self.drop_peer(peer).map(|p| p.status)
    }

    /// A `pair-msg` from `peer` may be taken.
    pub fn on_msg(&self, peer: &PublicKey) -> Result<(), String> {
        match self.status(peer) {
            Some(Status::Paired) => Ok(()),
            Some(Status::PendingOut) => {
                Err("not paired yet: accept the receiver's invite first".into())
            }
            _ => Err("not paired: the receiver has no pair with you (pair add first)".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(n: u8) -> PublicKey {
        *crate::crypto::Keypair::from_seed(&[n; 32]).public()
    }

    #[test]
    fn invite_accept_and_both_sides_agree() {
        let (a, b) = (pk(1), pk(2));
        let (mut ba, mut bb) = (Book::default(), Book::default());
        assert_eq!(ba.add(&a, b, 1), Ok(AddStep::Invite));
        assert_eq!(ba.add(&a, b, 2), Ok(AddStep::Resend));
        assert_eq!(ba.check_send(&b).unwrap_err().0, 409);
        assert_eq!(bb.on_invite(a, 3), Ok(InviteStep::New));
        assert_eq!(bb.on_invite(a, 4), Ok(InviteStep::Again));
        assert!(bb.on_msg(&a).is_err());
        assert_eq!(bb.check_send(&a).unwrap_err().0, 409);
        bb.check_invite(&a).unwrap();
        // The acceptance reaches A first, then B records it.
        assert_eq!(ba.on_accept(b, 5), Ok(true));
        assert_eq!(ba.on_accept(b, 6), Ok(false));
        bb.accepted(a, 5);
        assert_eq!(bb.get(&a).unwrap().status, Status::Paired);
        ba.check_send(&b).unwrap();
        bb.on_msg(&a).unwrap();
        assert_eq!(ba.add(&a, b, 7).unwrap_err().0, 409);
        assert_eq!(ba.add(&a, a, 7).unwrap_err().0, 400);
        bb.note_msg(&a, 9);
        assert_eq!(bb.get(&a).unwrap().last_msg_at, 9);
        // Remove on one side, its envelope on the other.
        assert_eq!(ba.remove(&b), Ok(Status::Paired));
        assert_eq!(ba.remove(&b).unwrap_err().0, 404);
        assert_eq!(bb.on_remove(&a), Some(Status::Paired));
        assert_eq!(bb.on_remove(&a), None);
        assert_eq!(ba.check_send(&b).unwrap_err().0, 404);
    }

    #[test]
    fn decline_crossed_invites_and_strays() {
        let (a, b, c) = (pk(1), pk(2), pk(3));
        let mut ba = Book::default();
        ba.add(&a, b, 1).unwrap();
        assert!(ba.on_decline(&c).is_err());
        ba.on_decline(&b).unwrap();
        assert!(ba.get(&b).is_none());
        // Crossed: both invited each other.
        ba.add(&a, b, 2).unwrap();
        assert_eq!(ba.on_invite(b, 3), Ok(InviteStep::Crossed));
        assert_eq!(ba.get(&b).unwrap().status, Status::Paired);
        assert_eq!(ba.on_invite(b, 4), Ok(InviteStep::AlreadyPaired));
        // An acceptance nobody asked for, a decline of nothing.
        assert!(ba.on_accept(c, 5).is_err());
        assert!(ba.on_decline(&c).is_err());
        assert_eq!(ba.decline(&c).unwrap_err().0, 404);
        ba.on_invite(c, 6).unwrap();
        assert_eq!(ba.add(&a, c, 7), Ok(AddStep::AcceptTheirs));
        ba.decline(&c).unwrap();
        assert!(ba.get(&c).is_none());
    }

    #[test]
    fn caps_hold() {
        let me = pk(0);
        let mut b = Book::default();
        for i in 0..MAX_PENDING_IN {
            let p = *crate::crypto::Keypair::from_seed(&[i as u8 + 10; 32]).public();
            b.on_invite(p, 1).unwrap();
        }
        let e = b.on_invite(pk(200), 1).unwrap_err();
        assert!(e.contains("unanswered invites"), "{e}");
        for i in 0..MAX_PENDING_OUT {
            let mut s = [0u8; 32];
            s[0] = 1;
            s[1] = i as u8;
            let p = *crate::crypto::Keypair::from_seed(&s).public();
            b.add(&me, p, 1).unwrap();
        }
        assert_eq!(b.add(&me, pk(201), 1).unwrap_err().0, 429);
        let twice = vec![b.pairs()[0].clone(), b.pairs()[0].clone()];
        assert!(Book::from_pairs(twice).is_err());
        assert_eq!(Book::from_pairs(b.pairs().to_vec()).unwrap(), b);
    }
}
