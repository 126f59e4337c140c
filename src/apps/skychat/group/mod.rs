//! Skychat groups (docs/protocol.md "Skychat groups"): a group is a signed feed. Every
//! message, roster change and setting is an entry signed by its author and then sequenced by
//! the group's owner, who countersigns it with its seq; members keep verified copies. Sans-IO:
//! no sockets, files or clocks in here (the caller passes `now_ms`).
//!
//! - [`entry`]: the canonical bytes of an entry, its signatures, the caps;
//! - [`roster`]: roles and the group's state, who may do what ([`Refusal`]);
//! - [`feed`]: the owner's sequencer ([`OwnerFeed`]) and a member's replica ([`MemberFeed`]);
//! - [`crypt`]: private groups: the key per epoch and encrypted posts;
//! - [`invite`]: `skychat:invite:` links;
//! - [`wire`]: the `group-*` envelopes on a peer connection.

pub mod crypt;
pub mod entry;
pub mod feed;
pub mod invite;
pub mod roster;
pub mod wire;

#[cfg(test)]
mod tests;

pub use crypt::{GroupKey, Keyring};
pub use entry::{
    Body, Draft, EntryError, GroupId, Kind, MAX_BODY, MAX_NAME, Mode, SequencedEntry,
    UnsequencedEntry,
};
pub use feed::{Applied, Batch, FEED_CAP, FeedLimits, MemberFeed, OwnerFeed, Stats, Submitted};
pub use invite::{Access, Invite, InviteError};
pub use roster::{GroupState, MAX_MEMBERS, Refusal, Role};
