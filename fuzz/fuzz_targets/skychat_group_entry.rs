//! Skychat group entries, a member's replica and invite links from arbitrary bytes (docs/
//! protocol.md "Skychat groups"). Invariants: no panic; bytes that decode as a whole entry or
//! as an author part re-encode to exactly the input; the replica counts every refusal in
//! exactly one stats bucket and every entry it applies in `accepted`; an invite that decodes
//! re-encodes to a link that decodes to the same invite.
//!
//! The whole input goes to the decoders. Then it is read as records `len u16be ‖ len bytes`
//! fed in turn to a replica of the golden group (owner of seed `00 01 … 1f`) that holds the
//! group's create and roster entries already, and as the JSON inside an invite link.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use skywire::apps::skychat::group::entry::{self, GroupId, Mode, UnsequencedEntry};
use skywire::apps::skychat::group::{MemberFeed, OwnerFeed, invite};
use skywire::crypto::Keypair;

fn seed(start: u8) -> [u8; 32] {
    std::array::from_fn(|i| start + i as u8)
}

/// A replica after the golden group's first entries (built once: signing is slow).
fn replica() -> &'static MemberFeed {
    static R: OnceLock<MemberFeed> = OnceLock::new();
    R.get_or_init(|| {
        let owner = Keypair::from_seed(&seed(0x00));
        let id = GroupId(std::array::from_fn(|i| 0x10 + i as u8));
        let members = [*Keypair::from_seed(&seed(0x20)).public()];
        let f = OwnerFeed::create_with_id(&owner, id, "fuzz", Mode::Public, &members, 0)
            .expect("a valid group");
        let mut m = MemberFeed::new(id, *owner.public());
        let rep = m.apply_batch(&f.entries_since(0, usize::MAX));
        assert!(rep.refused.is_empty());
        m
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = entry::decode(data) {
        assert_eq!(e.encode(), data, "a decoded entry re-encodes to its input");
        assert_eq!(entry::peek_seq(data), Some(e.seq));
        let _ = e.verify();
    }
    if let Ok(u) = UnsequencedEntry::decode(data) {
        assert_eq!(
            u.encode(),
            data,
            "a decoded author part re-encodes to its input"
        );
        let _ = u.verify();
    }

    let mut m = replica().clone();
    let before = *m.stats();
    let (mut oks, mut errs) = (0u64, 0u64);
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let take = len.min(rest.len() - 2);
        let piece = &rest[2..2 + take];
        rest = &rest[2 + take..];
        let last = m.state().last_seq();
        match m.apply(piece) {
            Ok(a) => {
                oks += 1;
                assert!(a.seq > last);
                assert_eq!(m.state().last_seq(), a.seq);
            }
            Err(_) => {
                errs += 1;
                assert_eq!(m.state().last_seq(), last, "a refusal changes nothing");
            }
        }
    }
    let after = *m.stats();
    assert_eq!(after.accepted - before.accepted, oks);
    assert_eq!(after.refused() - before.refused(), errs);

    let text = String::from_utf8_lossy(data);
    for link in [
        text.to_string(),
        format!(
            "{}{}",
            invite::PREFIX,
            skywire::crypto::b64::encode_url(data)
        ),
    ] {
        if let Ok(inv) = invite::decode(&link) {
            let again = inv.encode().expect("a decoded invite encodes");
            assert_eq!(invite::decode(&again).expect("our link decodes"), inv);
        }
    }
    if let Ok(raw) = skywire::crypto::b64::decode_url(&text) {
        assert_eq!(
            skywire::crypto::b64::encode_url(&raw),
            text,
            "base64url is canonical"
        );
    }
});
