//! Roles and the group's state: who may write which entry, and what each entry changes.
//!
//! Roles:
//!
//! | role | may |
//! |---|---|
//! | founder (= the owner) | everything; cannot be removed, demoted, promoted, and cannot leave (it deletes the group instead) |
//! | admin | post, leave, add members, remove and promote members, rename the group, hand out invites |
//! | member | post, leave |
//!
//! Only the founder removes or demotes an admin, rotates the key of a private group, and
//! deletes the group: so admins cannot fight over the roster, and an admin gone rogue is
//! undone by the founder alone. The roster holds at most [`MAX_MEMBERS`], founder included.
//!
//! Key epochs: a public group is always at epoch 0. A private group starts at epoch 1 (its
//! Create entry carries 1) and each Rotate moves it to exactly the next epoch. A post must
//! carry the group's current epoch (it is encrypted with that epoch's key, which a removed
//! member does not get); any other entry may carry an epoch up to the current one (it is not
//! encrypted, the field only records what its author knew).
//!
//! [`GroupState::check`] decides with the state as of the previous entry;
//! [`GroupState::apply`] then applies it. The owner and every member run the same two, so
//! their rosters agree entry by entry.

use std::collections::BTreeMap;
use std::fmt;

use super::crypt;
use super::entry::{
    Body, Draft, EntryError, GroupId, Kind, Mode, SequencedEntry, UnsequencedEntry,
};
use crate::crypto::PublicKey;

/// The most members a group has, founder included.
pub const MAX_MEMBERS: usize = 256;

/// A member's role.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Role {
    /// The owner: created the group, sequences its feed.
    Founder,
    /// Roster authority over members.
    Admin,
    /// Posts and leaves.
    Member,
}

impl Role {
    /// `"founder"`, `"admin"` or `"member"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Founder => "founder",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first 8 hex digits of a key and an ellipsis, for messages.
pub fn short(pk: &PublicKey) -> String {
    let mut s = pk.to_hex();
    s.truncate(8);
    s.push('…');
    s
}

/// Why an entry is refused, by the owner when it is submitted or by a member when it is
/// applied. The Display says what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The bytes are not an entry.
    BadEncoding(EntryError),
    /// The author's signature does not verify.
    ForgedAuthor,
    /// The owner's signature does not verify.
    ForgedOwner,
    /// The entry belongs to another group.
    WrongGroup {
        /// Its group.
        got: GroupId,
        /// This group.
        want: GroupId,
    },
    /// The entry names another owner.
    WrongOwner {
        /// Its owner.
        got: PublicKey,
        /// This group's owner.
        want: PublicKey,
    },
    /// A seq already applied (a duplicate, or an old entry replayed).
    Replayed {
        /// Its seq.
        seq: u64,
        /// The last seq applied.
        last: u64,
    },
    /// A seq past the next one where no posts were pruned (an entry is missing before it).
    OutOfOrder {
        /// Its seq.
        got: u64,
        /// The seq wanted next.
        want: u64,
    },
    /// An entry older than the owner's resend memory for its author (an old entry replayed,
    /// or an author whose clock went back).
    Stale {
        /// The author.
        author: PublicKey,
        /// Its timestamp.
        ts_ms: u64,
        /// Entries of this author at or before this time are no longer accepted.
        floor_ms: u64,
    },
    /// The owner's feed is full of roster and settings entries, which are never pruned.
    FeedFull {
        /// Entries held.
        entries: usize,
    },
    /// An entry before the group's Create entry.
    NoGroupYet,
    /// A second Create entry.
    AlreadyCreated,
    /// The group was deleted; it takes no more entries.
    Deleted,
    /// The author is not on the roster.
    NotMember(PublicKey),
    /// The author's role does not allow this kind of entry.
    Forbidden {
        /// The author's role.
        role: Role,
        /// The entry's kind.
        kind: Kind,
    },
    /// Only the founder may do this (what, as a phrase: "remove an admin").
    OnlyFounder(&'static str),
    /// The founder cannot be the target of this (as a participle: "removed").
    FounderImmune(&'static str),
    /// The founder tried to leave.
    FounderCannotLeave,
    /// Adding someone already on the roster.
    AlreadyMember(PublicKey),
    /// The target of a remove, promote or demote is not on the roster.
    TargetNotMember(PublicKey),
    /// Promoting an admin.
    AlreadyAdmin(PublicKey),
    /// Demoting someone who is not an admin.
    NotAdmin(PublicKey),
    /// The roster holds [`MAX_MEMBERS`] already.
    RosterFull,
    /// The entry's key epoch does not fit the group's.
    WrongEpoch {
        /// The entry's epoch.
        got: u32,
        /// The group's epoch.
        current: u32,
        /// The entry is a post (which must carry exactly the current epoch).
        post: bool,
    },
    /// A Rotate whose epoch is not the next one.
    BadRotate {
        /// The epoch it names.
        got: u32,
        /// The next epoch.
        want: u32,
    },
    /// A Rotate in a public group.
    NotPrivate,
    /// A post body that does not fit the group's mode.
    BadPost(&'static str),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::BadEncoding(e) => write!(f, "bad entry: {e}"),
            Refusal::ForgedAuthor => f.write_str("the author's signature does not verify"),
            Refusal::ForgedOwner => f.write_str("the owner's signature does not verify"),
            Refusal::WrongGroup { got, want } => {
                write!(f, "entry of group {got}, this is group {want}")
            }
            Refusal::WrongOwner { got, want } => write!(
                f,
                "entry names owner {}, this group's owner is {}",
                short(got),
                short(want)
            ),
            Refusal::Replayed { seq, last } => {
                write!(f, "seq {seq} was already applied (last applied {last})")
            }
            Refusal::OutOfOrder { got, want } => {
                write!(f, "seq {got} out of order: seq {want} comes first")
            }
            Refusal::Stale {
                author,
                ts_ms,
                floor_ms,
            } => write!(
                f,
                "entry of {} at {ts_ms} ms is too old to tell from a replay (entries of this \
                 author up to {floor_ms} ms are no longer accepted)",
                short(author)
            ),
            Refusal::FeedFull { entries } => write!(
                f,
                "the feed is full ({entries} entries) of roster and settings entries, which are \
                 never pruned"
            ),
            Refusal::NoGroupYet => f.write_str("the group has no create entry yet"),
            Refusal::AlreadyCreated => f.write_str("the group was already created"),
            Refusal::Deleted => f.write_str("the group was deleted"),
            Refusal::NotMember(pk) => write!(f, "author {} is not a member", short(pk)),
            Refusal::Forbidden { role, kind } => {
                let a = if *role == Role::Admin { "an" } else { "a" };
                write!(f, "{a} {role} cannot {}", kind.name())
            }
            Refusal::OnlyFounder(what) => write!(f, "only the founder can {what}"),
            Refusal::FounderImmune(what) => write!(f, "the founder cannot be {what}"),
            Refusal::FounderCannotLeave => {
                f.write_str("the founder cannot leave (delete the group instead)")
            }
            Refusal::AlreadyMember(pk) => write!(f, "{} is already a member", short(pk)),
            Refusal::TargetNotMember(pk) => write!(f, "{} is not a member", short(pk)),
            Refusal::AlreadyAdmin(pk) => write!(f, "{} is already an admin", short(pk)),
            Refusal::NotAdmin(pk) => write!(f, "{} is not an admin", short(pk)),
            Refusal::RosterFull => write!(f, "the group has {MAX_MEMBERS} members already"),
            Refusal::WrongEpoch {
                got,
                current,
                post: true,
            } => write!(
                f,
                "post at key epoch {got}, the group is at epoch {current}"
            ),
            Refusal::WrongEpoch { got, current, .. } => {
                write!(f, "key epoch {got} is ahead of the group's epoch {current}")
            }
            Refusal::BadRotate { got, want } => {
                write!(f, "rotate to epoch {got}, the next epoch is {want}")
            }
            Refusal::NotPrivate => f.write_str("a public group has no key to rotate"),
            Refusal::BadPost(why) => write!(f, "bad post: {why}"),
        }
    }
}

impl std::error::Error for Refusal {}

impl From<EntryError> for Refusal {
    fn from(e: EntryError) -> Self {
        match e {
            EntryError::AuthorSignature => Refusal::ForgedAuthor,
            EntryError::OwnerSignature => Refusal::ForgedOwner,
            other => Refusal::BadEncoding(other),
        }
    }
}

/// A group as its feed has built it so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupState {
    id: GroupId,
    owner: PublicKey,
    created: bool,
    name: String,
    mode: Mode,
    members: BTreeMap<PublicKey, Role>,
    epoch: u32,
    deleted: bool,
    last_seq: u64,
}

impl GroupState {
    /// The state before the Create entry.
    pub fn new(id: GroupId, owner: PublicKey) -> GroupState {
        GroupState {
            id,
            owner,
            created: false,
            name: String::new(),
            mode: Mode::Public,
            members: BTreeMap::new(),
            epoch: 0,
            deleted: false,
            last_seq: 0,
        }
    }

    /// The group id.
    pub fn id(&self) -> GroupId {
        self.id
    }

    /// The owner (the founder).
    pub fn owner(&self) -> &PublicKey {
        &self.owner
    }

    /// The Create entry has been applied.
    pub fn is_created(&self) -> bool {
        self.created
    }

    /// The name (empty before Create).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Public or private.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The current key epoch (0 in a public group).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The owner ended the group.
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// The seq of the last entry applied (0 for none).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// `pk`'s role, if it is on the roster.
    pub fn role(&self, pk: &PublicKey) -> Option<Role> {
        self.members.get(pk).copied()
    }

    /// The roster, in key order.
    pub fn members(&self) -> impl Iterator<Item = (&PublicKey, Role)> {
        self.members.iter().map(|(k, r)| (k, *r))
    }

    /// How many are on the roster, founder included.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// The founder and admins hand out invites.
    pub fn may_invite(&self, pk: &PublicKey) -> bool {
        matches!(self.role(pk), Some(Role::Founder | Role::Admin)) && !self.deleted
    }

    /// A draft for this group at its current epoch (a Create at its mode's first epoch),
    /// with a fresh entry id.
    pub fn draft(&self, body: Body, ts_ms: u64) -> Draft {
        let epoch = match &body {
            Body::Create { mode, .. } => initial_epoch(*mode),
            _ => self.epoch,
        };
        Draft::new(self.id, self.owner, epoch, body, ts_ms)
    }

    /// Whether `e` may come next. Checks the group and owner fields, the roster rules and the
    /// epoch; not the signatures nor the seq (the feeds do).
    pub fn check(&self, e: &UnsequencedEntry) -> Result<(), Refusal> {
        if e.group != self.id {
            return Err(Refusal::WrongGroup {
                got: e.group,
                want: self.id,
            });
        }
        if e.owner != self.owner {
            return Err(Refusal::WrongOwner {
                got: e.owner,
                want: self.owner,
            });
        }
        if self.deleted {
            return Err(Refusal::Deleted);
        }
        if !self.created {
            let Body::Create { mode, .. } = &e.body else {
                return Err(Refusal::NoGroupYet);
            };
            if e.author != self.owner {
                return Err(Refusal::OnlyFounder("create the group"));
            }
            let want = initial_epoch(*mode);
            if e.epoch != want {
                return Err(Refusal::WrongEpoch {
                    got: e.epoch,
                    current: want,
                    post: false,
                });
            }
            return Ok(());
        }
        if e.kind() == Kind::Create {
            return Err(Refusal::AlreadyCreated);
        }
        let Some(role) = self.role(&e.author) else {
            return Err(Refusal::NotMember(e.author));
        };
        let is_post = e.kind() == Kind::Post;
        if (is_post && e.epoch != self.epoch) || e.epoch > self.epoch {
            return Err(Refusal::WrongEpoch {
                got: e.epoch,
                current: self.epoch,
                post: is_post,
            });
        }
        let forbidden = || Refusal::Forbidden {
            role,
            kind: e.kind(),
        };
        let target = |pk: &PublicKey| self.role(pk).ok_or(Refusal::TargetNotMember(*pk));
        match &e.body {
            Body::Create { .. } => Err(Refusal::AlreadyCreated),
            Body::Post(b) => self.check_post(b),
            Body::Add(pk) => {
                if role == Role::Member {
                    return Err(forbidden());
                }
                if self.members.contains_key(pk) {
                    return Err(Refusal::AlreadyMember(*pk));
                }
                if self.members.len() >= MAX_MEMBERS {
                    return Err(Refusal::RosterFull);
                }
                Ok(())
            }
            Body::Remove(pk) => {
                if role == Role::Member {
                    return Err(forbidden());
                }
                match target(pk)? {
                    Role::Founder => Err(Refusal::FounderImmune("removed")),
                    Role::Admin if role != Role::Founder => {
                        Err(Refusal::OnlyFounder("remove an admin"))
                    }
                    _ => Ok(()),
                }
            }
            Body::Promote(pk) => {
                if role == Role::Member {
                    return Err(forbidden());
                }
                match target(pk)? {
                    Role::Founder => Err(Refusal::FounderImmune("promoted")),
                    Role::Admin => Err(Refusal::AlreadyAdmin(*pk)),
                    Role::Member => Ok(()),
                }
            }
            Body::Demote(pk) => {
                if role == Role::Member {
                    return Err(forbidden());
                }
                match target(pk)? {
                    Role::Founder => Err(Refusal::FounderImmune("demoted")),
                    Role::Member => Err(Refusal::NotAdmin(*pk)),
                    Role::Admin if role != Role::Founder => {
                        Err(Refusal::OnlyFounder("demote an admin"))
                    }
                    Role::Admin => Ok(()),
                }
            }
            Body::Leave => match role {
                Role::Founder => Err(Refusal::FounderCannotLeave),
                _ => Ok(()),
            },
            Body::Rename(_) => match role {
                Role::Member => Err(forbidden()),
                _ => Ok(()),
            },
            Body::Rotate(n) => {
                if role != Role::Founder {
                    return Err(Refusal::OnlyFounder("rotate the key"));
                }
                if self.mode == Mode::Public {
                    return Err(Refusal::NotPrivate);
                }
                let want = self.epoch.saturating_add(1);
                if *n != want || self.epoch == u32::MAX {
                    return Err(Refusal::BadRotate { got: *n, want });
                }
                Ok(())
            }
            Body::Delete => match role {
                Role::Founder => Ok(()),
                _ => Err(Refusal::OnlyFounder("delete the group")),
            },
        }
    }

    fn check_post(&self, b: &[u8]) -> Result<(), Refusal> {
        match self.mode {
            Mode::Public if b.is_empty() => Err(Refusal::BadPost("empty text")),
            Mode::Public if std::str::from_utf8(b).is_err() => {
                Err(Refusal::BadPost("text is not UTF-8"))
            }
            Mode::Private if b.len() <= crypt::OVERHEAD => Err(Refusal::BadPost(
                "too short for a nonce, a ciphertext and a tag",
            )),
            _ => Ok(()),
        }
    }

    /// Applies `e` (which [`GroupState::check`] accepted; an entry it would refuse is applied
    /// as well as it can be, never with a panic).
    pub fn apply(&mut self, e: &SequencedEntry) {
        self.last_seq = self.last_seq.max(e.seq);
        let u = &e.entry;
        match &u.body {
            Body::Create { name, mode } => {
                self.created = true;
                self.name = name.clone();
                self.mode = *mode;
                self.epoch = initial_epoch(*mode);
                self.members.clear();
                self.members.insert(self.owner, Role::Founder);
            }
            Body::Post(_) => {}
            Body::Add(pk) => {
                self.members.entry(*pk).or_insert(Role::Member);
            }
            Body::Remove(pk) => {
                if self.role(pk) != Some(Role::Founder) {
                    self.members.remove(pk);
                }
            }
            Body::Promote(pk) => self.set_role(pk, Role::Admin),
            Body::Demote(pk) => self.set_role(pk, Role::Member),
            Body::Leave => {
                if self.role(&u.author) != Some(Role::Founder) {
                    self.members.remove(&u.author);
                }
            }
            Body::Rename(name) => self.name = name.clone(),
            Body::Rotate(n) => self.epoch = self.epoch.max(*n),
            Body::Delete => self.deleted = true,
        }
    }

    fn set_role(&mut self, pk: &PublicKey, role: Role) {
        if let Some(r) = self.members.get_mut(pk)
            && *r != Role::Founder
        {
            *r = role;
        }
    }
}

/// The epoch a group starts at: 0 public, 1 private.
pub fn initial_epoch(mode: Mode) -> u32 {
    match mode {
        Mode::Public => 0,
        Mode::Private => 1,
    }
}
