//! The two state machines of a group's feed, sans-IO: the owner's sequencer
//! ([`OwnerFeed`]) and a member's replica ([`MemberFeed`]). Both run every entry through the
//! same [`GroupState::check`] with the state as of the previous entry, so they agree.
//!
//! **Owner.** [`OwnerFeed::submit`] takes an author's signed entry, checks the group and owner
//! fields, the author's signature, the resend memory, the roster rules and the caps, then gives
//! it the next seq and the owner's signature. A resend of an entry already sequenced (same
//! author, same author entry id) gets the seq it was given, not a second one: the owner keeps
//! the last [`RECENT_IDS`] entry ids of each member ([`FeedLimits::recent_ids`]). An entry of an author older than that
//! memory (its timestamp at or before the newest one forgotten) is refused as
//! [`Refusal::Stale`]: otherwise anyone holding an old entry, whose author part is in every
//! member's copy, could have it sequenced again (an old Add re-adding a removed member). When
//! an author leaves the roster its ids are forgotten and only that time floor is kept.
//!
//! The owner keeps the feed in memory, bounded by [`FeedLimits`] (at most [`FEED_CAP`]
//! entries and [`FEED_BYTES`] bytes by default). Past either cap the oldest *posts* are pruned;
//! roster and settings entries (everything but posts) are never pruned, so a newcomer catching
//! up from seq 1 still rebuilds the roster entry by entry. If the non-post entries alone would
//! pass a cap, a new entry is refused ([`Refusal::FeedFull`]).
//!
//! **Catch-up.** [`OwnerFeed::entries_since`] returns the entries after a seq, in order, with
//! the seq of the newest pruned post ([`Batch::pruned_through`]). A member applies entries in
//! seq order: the next seq is always accepted; a jump past it only where every seq skipped is
//! at or below the pruned-through mark it was told (those were posts, gone for good). Anything
//! else is [`Refusal::OutOfOrder`] and the member resumes from [`MemberFeed::next_wanted`]; a
//! seq already applied is [`Refusal::Replayed`]. So catching up from the last seq delivers
//! each entry once, in order, whatever duplicates or reorderings the network adds. The mark
//! must come from the owner itself (over the owner's authenticated stream): a relay that could
//! raise it could hide entries.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use super::entry::{self, Body, GroupId, Kind, Mode, SequencedEntry, UnsequencedEntry};
use super::roster::{GroupState, MAX_MEMBERS, Refusal};
use crate::crypto::{Keypair, PublicKey};

/// Entries the owner keeps in memory by default.
pub const FEED_CAP: usize = 10_000;
/// Bytes of entries the owner keeps in memory by default.
pub const FEED_BYTES: usize = 16 << 20;
/// Entry ids the owner remembers per member, to answer a resend with its seq.
pub const RECENT_IDS: usize = 1_024;

/// The owner's memory bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedLimits {
    /// Entries kept.
    pub max_entries: usize,
    /// Bytes of entries kept (their encodings).
    pub max_bytes: usize,
    /// Entry ids remembered per member ([`RECENT_IDS`]).
    pub recent_ids: usize,
}

impl Default for FeedLimits {
    fn default() -> Self {
        FeedLimits {
            max_entries: FEED_CAP,
            max_bytes: FEED_BYTES,
            recent_ids: RECENT_IDS,
        }
    }
}

/// Counters of a feed: what was accepted, and every refusal in exactly one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries sequenced (owner) or applied (member).
    pub accepted: u64,
    /// Resends answered with their earlier seq (owner only; not a refusal).
    pub resends: u64,
    /// Not an entry ([`Refusal::BadEncoding`]).
    pub bad_encoding: u64,
    /// A signature that does not verify.
    pub forged: u64,
    /// Another group's or owner's entry.
    pub wrong_group: u64,
    /// A seq already applied, or an entry too old to tell from a replay.
    pub replayed: u64,
    /// A seq past the next one.
    pub out_of_order: u64,
    /// An author not on the roster.
    pub not_member: u64,
    /// Any other rule: role, target, epoch, caps, a deleted group.
    pub not_allowed: u64,
}

impl Stats {
    /// Counts `r` in its bucket.
    pub fn count(&mut self, r: &Refusal) {
        let bucket = match r {
            Refusal::BadEncoding(_) => &mut self.bad_encoding,
            Refusal::ForgedAuthor | Refusal::ForgedOwner => &mut self.forged,
            Refusal::WrongGroup { .. } | Refusal::WrongOwner { .. } => &mut self.wrong_group,
            Refusal::Replayed { .. } | Refusal::Stale { .. } => &mut self.replayed,
            Refusal::OutOfOrder { .. } => &mut self.out_of_order,
            Refusal::NotMember(_) => &mut self.not_member,
            _ => &mut self.not_allowed,
        };
        *bucket += 1;
    }

    /// All refusals.
    pub fn refused(&self) -> u64 {
        self.bad_encoding
            + self.forged
            + self.wrong_group
            + self.replayed
            + self.out_of_order
            + self.not_member
            + self.not_allowed
    }
}

/// What [`OwnerFeed::submit`] did with an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Sequenced now: its seq and the whole entry's bytes (to store and hand to members).
    New {
        /// The seq given.
        seq: u64,
        /// The sequenced entry's bytes.
        bytes: Vec<u8>,
    },
    /// A resend of an entry sequenced before, at this seq.
    Resend {
        /// The seq it was given then.
        seq: u64,
    },
}

impl Submitted {
    /// The entry's seq.
    pub fn seq(&self) -> u64 {
        match self {
            Submitted::New { seq, .. } | Submitted::Resend { seq } => *seq,
        }
    }
}

/// Entries the owner hands a member catching up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Every post at or below this seq that is not in the feed was pruned (0: none).
    pub pruned_through: u64,
    /// Sequenced entries' bytes, in seq order.
    pub entries: Vec<Vec<u8>>,
}

/// One author's resend memory.
#[derive(Debug, Default)]
struct Recent {
    seqs: HashMap<u64, u64>,
    order: VecDeque<(u64, u64)>,
    floor_ms: Option<u64>,
}

impl Recent {
    fn remember(&mut self, entry_id: u64, ts_ms: u64, seq: u64, cap: usize) {
        if self.seqs.insert(entry_id, seq).is_none() {
            self.order.push_back((entry_id, ts_ms));
        }
        while self.order.len() > cap.max(1) {
            if let Some((id, ts)) = self.order.pop_front() {
                self.seqs.remove(&id);
                self.raise_floor(ts);
            }
        }
    }

    fn raise_floor(&mut self, ts: u64) {
        self.floor_ms = Some(self.floor_ms.map_or(ts, |f| f.max(ts)));
    }

    /// Forgets the ids, keeping only the time floor (the author left the roster).
    fn retire(&mut self) {
        for (_, ts) in std::mem::take(&mut self.order) {
            self.raise_floor(ts);
        }
        self.seqs.clear();
    }
}

/// The owner's side: sequences entries and keeps the feed's recent window.
#[derive(Debug)]
pub struct OwnerFeed {
    keys: Keypair,
    state: GroupState,
    limits: FeedLimits,
    window: BTreeMap<u64, Vec<u8>>,
    posts: VecDeque<u64>,
    bytes: usize,
    non_post_entries: usize,
    non_post_bytes: usize,
    pruned_through: u64,
    recent: HashMap<PublicKey, Recent>,
    stats: Stats,
}

impl OwnerFeed {
    fn empty(owner_keys: &Keypair, id: GroupId, limits: FeedLimits) -> OwnerFeed {
        OwnerFeed {
            keys: Keypair::from_seed(owner_keys.seed()),
            state: GroupState::new(id, *owner_keys.public()),
            limits,
            window: BTreeMap::new(),
            posts: VecDeque::new(),
            bytes: 0,
            non_post_entries: 0,
            non_post_bytes: 0,
            pruned_through: 0,
            recent: HashMap::new(),
            stats: Stats::default(),
        }
    }

    /// A new group with a random id, owned by `owner_keys`: its Create entry (seq 1) and one
    /// Add per initial member (the owner and repeats skipped), all signed by the owner.
    pub fn create(
        owner_keys: &Keypair,
        name: &str,
        mode: Mode,
        initial_members: &[PublicKey],
        now_ms: u64,
    ) -> Result<OwnerFeed, Refusal> {
        Self::create_with_id(
            owner_keys,
            GroupId::random(),
            name,
            mode,
            initial_members,
            now_ms,
        )
    }

    /// [`OwnerFeed::create`] with a given id.
    pub fn create_with_id(
        owner_keys: &Keypair,
        id: GroupId,
        name: &str,
        mode: Mode,
        initial_members: &[PublicKey],
        now_ms: u64,
    ) -> Result<OwnerFeed, Refusal> {
        let mut f = Self::empty(owner_keys, id, FeedLimits::default());
        let mut seen = HashSet::new();
        let adds: Vec<&PublicKey> = initial_members
            .iter()
            .filter(|pk| *pk != owner_keys.public() && seen.insert(**pk))
            .collect();
        if adds.len() >= MAX_MEMBERS {
            return Err(Refusal::RosterFull);
        }
        f.author(
            Body::Create {
                name: name.to_string(),
                mode,
            },
            now_ms,
        )?;
        for pk in adds {
            f.author(Body::Add(*pk), now_ms)?;
        }
        Ok(f)
    }

    /// Rebuilds the owner's feed from entries it stored: each is verified and checked as a
    /// member would, in order (seq 1 first; posts at or below `pruned_through` may be
    /// missing). On a bad entry, its index and why.
    pub fn restore<B: AsRef<[u8]>>(
        owner_keys: &Keypair,
        id: GroupId,
        limits: FeedLimits,
        pruned_through: u64,
        entries: &[B],
    ) -> Result<OwnerFeed, (usize, Refusal)> {
        let mut f = Self::empty(owner_keys, id, limits);
        let mut replica = MemberFeed::new(id, *owner_keys.public());
        replica.note_pruned(pruned_through);
        for (i, b) in entries.iter().enumerate() {
            let applied = replica.apply(b.as_ref()).map_err(|r| (i, r))?;
            f.keep(&applied.entry, b.as_ref().to_vec());
        }
        f.state = replica.state;
        f.pruned_through = f.pruned_through.max(pruned_through);
        f.stats.accepted = replica.stats.accepted;
        f.prune();
        Ok(f)
    }

    /// Changes the memory bounds (pruning posts now if the feed is over them).
    pub fn set_limits(&mut self, limits: FeedLimits) {
        self.limits = limits;
        self.prune();
    }

    /// The group's state after the last entry.
    pub fn state(&self) -> &GroupState {
        &self.state
    }

    /// The group id.
    pub fn id(&self) -> GroupId {
        self.state.id()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Every post at or below this seq that is not in the window was pruned.
    pub fn pruned_through(&self) -> u64 {
        self.pruned_through
    }

    /// Entries held in memory.
    pub fn len(&self) -> usize {
        self.window.len()
    }

    /// No entry held (never after [`OwnerFeed::create`]).
    pub fn is_empty(&self) -> bool {
        self.window.is_empty()
    }

    /// Bytes of the entries held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Signs `body` as the owner and sequences it (the owner's own posts and roster changes).
    pub fn author(&mut self, body: Body, now_ms: u64) -> Result<Submitted, Refusal> {
        let draft = self.state.draft(body, now_ms);
        let e = match UnsequencedEntry::sign(&self.keys, draft) {
            Ok(e) => e,
            Err(err) => {
                let r = Refusal::from(err);
                self.stats.count(&r);
                return Err(r);
            }
        };
        self.submit(e)
    }

    /// [`OwnerFeed::submit`] of an author part's bytes.
    pub fn submit_bytes(&mut self, b: &[u8]) -> Result<Submitted, Refusal> {
        match UnsequencedEntry::decode(b) {
            Ok(e) => self.submit(e),
            Err(err) => {
                let r = Refusal::from(err);
                self.stats.count(&r);
                Err(r)
            }
        }
    }

    /// Sequences an author's entry, or answers a resend with its seq, or refuses it.
    pub fn submit(&mut self, e: UnsequencedEntry) -> Result<Submitted, Refusal> {
        let r = self.try_submit(e);
        match &r {
            Ok(Submitted::New { .. }) => self.stats.accepted += 1,
            Ok(Submitted::Resend { .. }) => self.stats.resends += 1,
            Err(refusal) => self.stats.count(refusal),
        }
        r
    }

    fn try_submit(&mut self, e: UnsequencedEntry) -> Result<Submitted, Refusal> {
        if e.group != self.state.id() {
            return Err(Refusal::WrongGroup {
                got: e.group,
                want: self.state.id(),
            });
        }
        if &e.owner != self.state.owner() {
            return Err(Refusal::WrongOwner {
                got: e.owner,
                want: *self.state.owner(),
            });
        }
        e.verify()?;
        if let Some(rec) = self.recent.get(&e.author) {
            if let Some(seq) = rec.seqs.get(&e.entry_id) {
                return Ok(Submitted::Resend { seq: *seq });
            }
            if let Some(floor_ms) = rec.floor_ms
                && e.ts_ms <= floor_ms
            {
                return Err(Refusal::Stale {
                    author: e.author,
                    ts_ms: e.ts_ms,
                    floor_ms,
                });
            }
        }
        self.state.check(&e)?;
        let len = entry::SEQ_OVERHEAD + e.body.encode().len();
        if self.non_post_entries + 1 > self.limits.max_entries
            || self.non_post_bytes + len > self.limits.max_bytes
        {
            return Err(Refusal::FeedFull {
                entries: self.window.len(),
            });
        }
        let seq = self.state.last_seq() + 1;
        let sealed = SequencedEntry::seal(&self.keys, e, seq)?;
        let bytes = sealed.encode();
        self.state.apply(&sealed);
        self.keep(&sealed, bytes.clone());
        self.prune();
        Ok(Submitted::New { seq, bytes })
    }

    /// Holds a sequenced entry and remembers its id.
    fn keep(&mut self, e: &SequencedEntry, bytes: Vec<u8>) {
        let u = &e.entry;
        self.recent.entry(u.author).or_default().remember(
            u.entry_id,
            u.ts_ms,
            e.seq,
            self.limits.recent_ids,
        );
        match &u.body {
            Body::Remove(pk) => self.retire(pk),
            Body::Leave => self.retire(&u.author),
            _ => {}
        }
        self.bytes += bytes.len();
        if u.kind() == Kind::Post {
            self.posts.push_back(e.seq);
        } else {
            self.non_post_entries += 1;
            self.non_post_bytes += bytes.len();
        }
        self.window.insert(e.seq, bytes);
    }

    fn retire(&mut self, pk: &PublicKey) {
        if let Some(r) = self.recent.get_mut(pk) {
            r.retire();
        }
    }

    /// Drops the oldest posts while the window is over a cap.
    fn prune(&mut self) {
        while self.window.len() > self.limits.max_entries || self.bytes > self.limits.max_bytes {
            let Some(seq) = self.posts.pop_front() else {
                return;
            };
            if let Some(b) = self.window.remove(&seq) {
                self.bytes -= b.len();
            }
            self.pruned_through = self.pruned_through.max(seq);
        }
    }

    /// Up to `limit` entries after seq `after`, in seq order, and the pruned-through mark.
    pub fn entries_since(&self, after: u64, limit: usize) -> Batch {
        let entries = match after.checked_add(1) {
            Some(from) => self
                .window
                .range(from..)
                .take(limit)
                .map(|(_, b)| b.clone())
                .collect(),
            None => Vec::new(),
        };
        Batch {
            pruned_through: self.pruned_through,
            entries,
        }
    }
}

/// An entry a member applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Its seq.
    pub seq: u64,
    /// Seqs skipped before it (pruned posts).
    pub skipped: u64,
    /// The entry.
    pub entry: SequencedEntry,
}

/// What [`MemberFeed::apply_batch`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// The entries applied, in seq order.
    pub applied: Vec<Applied>,
    /// The refusals, in the order met (duplicates among them).
    pub refused: Vec<Refusal>,
}

/// A member's verified replica of a group's feed.
#[derive(Clone, Debug)]
pub struct MemberFeed {
    state: GroupState,
    pruned_through: u64,
    stats: Stats,
}

impl MemberFeed {
    /// A replica of group `id` of `owner`, before any entry.
    pub fn new(id: GroupId, owner: PublicKey) -> MemberFeed {
        MemberFeed {
            state: GroupState::new(id, owner),
            pruned_through: 0,
            stats: Stats::default(),
        }
    }

    /// The group's state after the last entry applied.
    pub fn state(&self) -> &GroupState {
        &self.state
    }

    /// Counters: every refusal is in one bucket.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The seq to resume catching up from (ask the owner for entries after `next_wanted - 1`).
    pub fn next_wanted(&self) -> u64 {
        self.state.last_seq().saturating_add(1)
    }

    /// The owner says every post at or below `through` that it did not send was pruned (from
    /// [`Batch::pruned_through`]; never lowers the mark).
    pub fn note_pruned(&mut self, through: u64) {
        self.pruned_through = self.pruned_through.max(through);
    }

    /// Verifies and applies one sequenced entry's bytes.
    pub fn apply(&mut self, b: &[u8]) -> Result<Applied, Refusal> {
        let r = self.try_apply(b);
        match &r {
            Ok(_) => self.stats.accepted += 1,
            Err(refusal) => self.stats.count(refusal),
        }
        r
    }

    fn try_apply(&mut self, b: &[u8]) -> Result<Applied, Refusal> {
        let e = SequencedEntry::decode(b)?;
        let u = &e.entry;
        if u.group != self.state.id() {
            return Err(Refusal::WrongGroup {
                got: u.group,
                want: self.state.id(),
            });
        }
        if &u.owner != self.state.owner() {
            return Err(Refusal::WrongOwner {
                got: u.owner,
                want: *self.state.owner(),
            });
        }
        e.verify()?;
        let last = self.state.last_seq();
        if e.seq <= last {
            return Err(Refusal::Replayed { seq: e.seq, last });
        }
        let want = last + 1;
        if e.seq > want && e.seq - 1 > self.pruned_through {
            return Err(Refusal::OutOfOrder { got: e.seq, want });
        }
        self.state.check(u)?;
        self.state.apply(&e);
        Ok(Applied {
            seq: e.seq,
            skipped: e.seq - want,
            entry: e,
        })
    }

    /// Applies a catch-up batch: notes its pruned-through mark, then applies its entries in
    /// seq order (so a batch reordered on the way still applies; duplicates are refused).
    pub fn apply_batch(&mut self, batch: &Batch) -> BatchReport {
        self.note_pruned(batch.pruned_through);
        let mut order: Vec<&Vec<u8>> = batch.entries.iter().collect();
        // Stable: entries without a readable seq keep their place at the end.
        order.sort_by_key(|b| entry::peek_seq(b).unwrap_or(u64::MAX));
        let mut report = BatchReport::default();
        for b in order {
            match self.apply(b) {
                Ok(a) => report.applied.push(a),
                Err(r) => report.refused.push(r),
            }
        }
        report
    }
}
