//! Tests across the group modules: the owner's sequencer and a member's replica driven with
//! real signatures, forged, replayed, reordered and refused entries, private groups end to
//! end, and the caps.

use super::crypt::{self, CryptError, GroupKey, Keyring, PostAd};
use super::entry::{Body, GroupId, MAX_BODY, Mode, SequencedEntry, UnsequencedEntry};
use super::feed::{Batch, FeedLimits, MemberFeed, OwnerFeed, Submitted};
use super::roster::{GroupState, MAX_MEMBERS, Refusal, Role, short};
use crate::crypto::{Keypair, PublicKey};

const T0: u64 = 1_700_000_000_000;

fn kp(n: u8) -> Keypair {
    Keypair::from_seed(&[n; 32])
}

fn pk(n: u8) -> PublicKey {
    *kp(n).public()
}

/// Owner 1, admin 2, members 3 and 4; 9 is an outsider.
fn group(mode: Mode) -> OwnerFeed {
    let mut f = OwnerFeed::create_with_id(
        &kp(1),
        GroupId([0x42; 16]),
        "test group",
        mode,
        &[pk(2), pk(3), pk(4), pk(3), pk(1)],
        T0,
    )
    .unwrap();
    f.author(Body::Promote(pk(2)), T0 + 1).unwrap();
    f
}

fn sign(k: &Keypair, state: &GroupState, body: Body, ts: u64) -> UnsequencedEntry {
    UnsequencedEntry::sign(k, state.draft(body, ts)).unwrap()
}

fn post(f: &OwnerFeed, k: &Keypair, text: &str, ts: u64) -> UnsequencedEntry {
    sign(k, f.state(), Body::Post(text.as_bytes().to_vec()), ts)
}

trait SubmitOk {
    /// Submits and expects a new seq; returns the sequenced bytes.
    fn ok(&mut self, e: UnsequencedEntry) -> Vec<u8>;
}

impl SubmitOk for OwnerFeed {
    fn ok(&mut self, e: UnsequencedEntry) -> Vec<u8> {
        match self.submit(e) {
            Ok(Submitted::New { bytes, .. }) => bytes,
            other => panic!("not sequenced: {other:?}"),
        }
    }
}

fn replica(f: &OwnerFeed) -> MemberFeed {
    let mut m = MemberFeed::new(f.id(), *f.state().owner());
    let rep = m.apply_batch(&f.entries_since(0, usize::MAX));
    assert!(rep.refused.is_empty(), "{:?}", rep.refused);
    assert_eq!(m.state(), f.state());
    m
}

/// Seals an entry the owner's submit would refuse (a buggy or hostile owner), to show the
/// member checks for itself.
fn force(f: &OwnerFeed, e: UnsequencedEntry) -> Vec<u8> {
    SequencedEntry::seal(&kp(1), e, f.state().last_seq() + 1)
        .unwrap()
        .encode()
}

#[test]
fn create_builds_the_roster() {
    let f = group(Mode::Public);
    let s = f.state();
    assert!(s.is_created());
    assert_eq!(s.name(), "test group");
    assert_eq!(s.epoch(), 0);
    // Create, three adds (the owner and the repeat skipped), the promote.
    assert_eq!(s.last_seq(), 5);
    assert_eq!(s.member_count(), 4);
    assert_eq!(s.role(&pk(1)), Some(Role::Founder));
    assert_eq!(s.role(&pk(2)), Some(Role::Admin));
    assert_eq!(s.role(&pk(3)), Some(Role::Member));
    assert_eq!(s.role(&pk(9)), None);
    assert!(s.may_invite(&pk(2)) && !s.may_invite(&pk(3)));
    assert_eq!(f.stats().accepted, 5);
    let p = group(Mode::Private);
    assert_eq!(p.state().epoch(), 1);
    assert_eq!(p.state().mode(), Mode::Private);
}

#[test]
fn forged_author_signature_is_refused() {
    let mut f = group(Mode::Public);
    let mut e = post(&f, &kp(3), "hello", T0 + 10);
    e.author_sig[5] ^= 1;
    assert_eq!(f.submit(e.clone()), Err(Refusal::ForgedAuthor));
    // Text changed after signing.
    let mut t = post(&f, &kp(3), "hello", T0 + 10);
    t.body = Body::Post(b"hellO".to_vec());
    assert_eq!(f.submit(t), Err(Refusal::ForgedAuthor));
    // Signed by 9 but naming 3 as the author.
    let mut other = post(&f, &kp(9), "hello", T0 + 10);
    other.author = pk(3);
    assert_eq!(f.submit(other), Err(Refusal::ForgedAuthor));
    assert_eq!(f.stats().forged, 3);
    // A member refuses it even when the owner sequenced it.
    let mut m = replica(&f);
    assert_eq!(m.apply(&force(&f, e)), Err(Refusal::ForgedAuthor));
    assert_eq!(m.stats().forged, 1);
    assert_eq!(m.state().last_seq(), 5);
}

#[test]
fn forged_owner_signature_is_refused() {
    let mut f = group(Mode::Public);
    let mut m = replica(&f);
    let good = f.ok(post(&f, &kp(3), "hi", T0 + 10));
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 1] ^= 0x01;
    assert_eq!(m.apply(&bad), Err(Refusal::ForgedOwner));
    // The seq changed: the owner's signature covers it.
    let mut reseq = SequencedEntry::decode(&good).unwrap();
    reseq.seq = 7;
    assert_eq!(m.apply(&reseq.encode()), Err(Refusal::ForgedOwner));
    // Countersigned by someone else's key.
    let mut e = SequencedEntry::decode(&good).unwrap();
    let mut msg = super::entry::OWNER_DOMAIN.to_vec();
    msg.extend_from_slice(&e.entry.encode());
    msg.extend_from_slice(&e.seq.to_be_bytes());
    e.owner_sig = kp(2).sign(&msg);
    assert_eq!(m.apply(&e.encode()), Err(Refusal::ForgedOwner));
    assert_eq!(m.stats().forged, 3);
    assert!(m.apply(&good).is_ok());
}

#[test]
fn non_members_are_refused() {
    let mut f = group(Mode::Public);
    let e = post(&f, &kp(9), "let me in", T0 + 10);
    let r = f.submit(e.clone()).unwrap_err();
    assert_eq!(r, Refusal::NotMember(pk(9)));
    assert_eq!(
        r.to_string(),
        format!("author {}… is not a member", &pk(9).to_hex()[..8])
    );
    assert_eq!(f.stats().not_member, 1);
    let mut m = replica(&f);
    assert_eq!(m.apply(&force(&f, e)), Err(Refusal::NotMember(pk(9))));
    assert_eq!(m.stats().not_member, 1);
    // A member who left is no longer one.
    f.ok(sign(&kp(4), f.state(), Body::Leave, T0 + 11));
    assert_eq!(
        f.submit(post(&f, &kp(4), "still here?", T0 + 12)),
        Err(Refusal::NotMember(pk(4)))
    );
    // The founder does not leave.
    let r = f.author(Body::Leave, T0 + 13).unwrap_err();
    assert_eq!(r, Refusal::FounderCannotLeave);
}

#[test]
fn roles_are_enforced() {
    let mut f = group(Mode::Public);
    let state = f.state().clone();
    let try_as =
        |f: &mut OwnerFeed, k: u8, body: Body| f.submit(sign(&kp(k), &state, body, T0 + 20));
    // A member cannot promote, add, remove, demote, rename, rotate or delete.
    let r = try_as(&mut f, 3, Body::Promote(pk(4))).unwrap_err();
    assert_eq!(r.to_string(), "a member cannot promote");
    assert!(matches!(
        try_as(&mut f, 3, Body::Add(pk(9))),
        Err(Refusal::Forbidden {
            role: Role::Member,
            ..
        })
    ));
    assert!(try_as(&mut f, 3, Body::Remove(pk(4))).is_err());
    assert!(try_as(&mut f, 3, Body::Demote(pk(2))).is_err());
    assert!(try_as(&mut f, 3, Body::Rename("mine".into())).is_err());
    assert_eq!(
        try_as(&mut f, 3, Body::Delete),
        Err(Refusal::OnlyFounder("delete the group"))
    );
    // An admin cannot touch the founder, nor demote or remove an admin.
    let r = try_as(&mut f, 2, Body::Demote(pk(1))).unwrap_err();
    assert_eq!(r, Refusal::FounderImmune("demoted"));
    assert_eq!(r.to_string(), "the founder cannot be demoted");
    assert_eq!(
        try_as(&mut f, 2, Body::Remove(pk(1))),
        Err(Refusal::FounderImmune("removed"))
    );
    assert_eq!(
        try_as(&mut f, 2, Body::Promote(pk(1))),
        Err(Refusal::FounderImmune("promoted"))
    );
    assert_eq!(
        try_as(&mut f, 2, Body::Rotate(1)),
        Err(Refusal::OnlyFounder("rotate the key"))
    );
    assert_eq!(
        try_as(&mut f, 2, Body::Promote(pk(2))),
        Err(Refusal::AlreadyAdmin(pk(2)))
    );
    assert_eq!(
        try_as(&mut f, 2, Body::Add(pk(3))),
        Err(Refusal::AlreadyMember(pk(3)))
    );
    assert_eq!(
        try_as(&mut f, 2, Body::Remove(pk(9))),
        Err(Refusal::TargetNotMember(pk(9)))
    );
    assert_eq!(
        try_as(&mut f, 2, Body::Demote(pk(3))),
        Err(Refusal::NotAdmin(pk(3)))
    );
    assert_eq!(f.stats().accepted, 5);
    // The admin promotes 3; now 2 cannot demote or remove 3, the founder can.
    f.ok(try_as_ok(&state, 2, Body::Promote(pk(3)), 21));
    let s = f.state().clone();
    assert_eq!(
        f.submit(sign(&kp(2), &s, Body::Demote(pk(3)), T0 + 22)),
        Err(Refusal::OnlyFounder("demote an admin"))
    );
    assert_eq!(
        f.submit(sign(&kp(2), &s, Body::Remove(pk(3)), T0 + 22)),
        Err(Refusal::OnlyFounder("remove an admin"))
    );
    f.ok(sign(&kp(1), &s, Body::Demote(pk(3)), T0 + 23));
    assert_eq!(f.state().role(&pk(3)), Some(Role::Member));
    // The admin adds, removes and renames.
    f.ok(sign(&kp(2), &s, Body::Add(pk(9)), T0 + 24));
    f.ok(sign(&kp(2), &s, Body::Remove(pk(4)), T0 + 25));
    f.ok(sign(&kp(2), &s, Body::Rename("renamed".into()), T0 + 26));
    assert_eq!(f.state().name(), "renamed");
    assert_eq!(f.state().role(&pk(4)), None);
    assert_eq!(f.state().role(&pk(9)), Some(Role::Member));
    // Every member agrees.
    replica(&f);
    // A public group has no key to rotate, and no epoch but 0.
    assert_eq!(f.author(Body::Rotate(1), T0 + 27), Err(Refusal::NotPrivate));
    let mut d = f.state().draft(Body::Post(b"x".to_vec()), T0 + 28);
    d.epoch = 1;
    let e = UnsequencedEntry::sign(&kp(3), d).unwrap();
    assert!(matches!(
        f.submit(e),
        Err(Refusal::WrongEpoch {
            got: 1,
            current: 0,
            ..
        })
    ));
    // A second create, and anything after a delete.
    let c = Body::Create {
        name: "again".into(),
        mode: Mode::Public,
    };
    assert_eq!(f.author(c, T0 + 29), Err(Refusal::AlreadyCreated));
    f.ok(sign(&kp(1), &s, Body::Delete, T0 + 30));
    assert!(f.state().is_deleted());
    assert_eq!(
        f.submit(post(&f, &kp(3), "hello?", T0 + 31)),
        Err(Refusal::Deleted)
    );
    replica(&f);
}

fn try_as_ok(state: &GroupState, k: u8, body: Body, dt: u64) -> UnsequencedEntry {
    sign(&kp(k), state, body, T0 + dt)
}

#[test]
fn a_group_starts_with_its_owners_create() {
    let id = GroupId([7; 16]);
    let mut m = MemberFeed::new(id, pk(1));
    let s = GroupState::new(id, pk(1));
    let post = sign(&kp(1), &s, Body::Post(b"x".to_vec()), T0);
    let at1 = |e| SequencedEntry::seal(&kp(1), e, 1).unwrap().encode();
    assert_eq!(m.apply(&at1(post)), Err(Refusal::NoGroupYet));
    let create = |mode| Body::Create {
        name: "g".into(),
        mode,
    };
    let by_other = sign(&kp(2), &s, create(Mode::Public), T0);
    assert_eq!(
        m.apply(&at1(by_other)),
        Err(Refusal::OnlyFounder("create the group"))
    );
    // A private group's create carries epoch 1.
    let mut d = s.draft(create(Mode::Private), T0);
    d.epoch = 0;
    let wrong_epoch = UnsequencedEntry::sign(&kp(1), d).unwrap();
    assert!(matches!(
        m.apply(&at1(wrong_epoch)),
        Err(Refusal::WrongEpoch {
            got: 0,
            current: 1,
            ..
        })
    ));
    // Another group's or owner's entry.
    let other = GroupState::new(GroupId([8; 16]), pk(1));
    let e = sign(&kp(1), &other, create(Mode::Public), T0);
    assert!(matches!(m.apply(&at1(e)), Err(Refusal::WrongGroup { .. })));
    let other = GroupState::new(id, pk(2));
    let e = sign(&kp(2), &other, create(Mode::Public), T0);
    let b = SequencedEntry::seal(&kp(2), e, 1).unwrap().encode();
    assert!(matches!(m.apply(&b), Err(Refusal::WrongOwner { .. })));
    assert_eq!(m.stats().wrong_group, 2);
    assert_eq!(m.stats().refused(), 5);
    let good = sign(&kp(1), &s, create(Mode::Public), T0);
    assert!(m.apply(&at1(good)).is_ok());
    assert_eq!(m.stats().accepted, 1);
}

#[test]
fn duplicate_and_out_of_order_seqs_are_refused() {
    let mut f = group(Mode::Public);
    let mut m = replica(&f);
    let a = f.ok(post(&f, &kp(3), "one", T0 + 10));
    let b = f.ok(post(&f, &kp(3), "two", T0 + 11));
    let c = f.ok(post(&f, &kp(4), "three", T0 + 12));
    assert_eq!(m.apply(&b), Err(Refusal::OutOfOrder { got: 7, want: 6 }));
    assert_eq!(m.apply(&c), Err(Refusal::OutOfOrder { got: 8, want: 6 }));
    assert_eq!(m.apply(&a).unwrap().seq, 6);
    assert_eq!(m.apply(&a), Err(Refusal::Replayed { seq: 6, last: 6 }));
    assert_eq!(m.apply(&b).unwrap().seq, 7);
    assert_eq!(m.apply(&b), Err(Refusal::Replayed { seq: 7, last: 7 }));
    assert_eq!(m.apply(&c).unwrap().skipped, 0);
    assert_eq!(m.stats().out_of_order, 2);
    assert_eq!(m.stats().replayed, 2);
    assert_eq!(m.next_wanted(), 9);
}

#[test]
fn an_old_roster_entry_replayed_is_refused() {
    let mut f = group(Mode::Public);
    let mut m = replica(&f);
    let add = sign(&kp(2), f.state(), Body::Add(pk(9)), T0 + 10);
    let add_bytes = f.ok(add.clone());
    let add_seq = SequencedEntry::decode(&add_bytes).unwrap().seq;
    f.ok(post(&f, &kp(9), "hi from 9", T0 + 11));
    f.ok(sign(&kp(2), f.state(), Body::Remove(pk(9)), T0 + 12));
    m.apply_batch(&f.entries_since(m.next_wanted() - 1, 100));
    assert_eq!(m.state().role(&pk(9)), None);
    // To a member: its seq is old. Valid signatures do not help.
    assert_eq!(
        m.apply(&add_bytes),
        Err(Refusal::Replayed {
            seq: add_seq,
            last: f.state().last_seq()
        })
    );
    assert_eq!(m.state().role(&pk(9)), None);
    // To the owner, resubmitted: the seq it had, not a second add.
    assert_eq!(f.submit(add), Ok(Submitted::Resend { seq: add_seq }));
    assert_eq!(f.state().role(&pk(9)), None);
    // 9 is added again: its old post, replayed, is stale (its ids went when it was removed).
    f.ok(sign(&kp(2), f.state(), Body::Add(pk(9)), T0 + 13));
    let old_post = SequencedEntry::decode(&f.entries_since(add_seq, 1).entries[0])
        .unwrap()
        .entry;
    assert!(matches!(f.submit(old_post), Err(Refusal::Stale { .. })));
    f.ok(post(&f, &kp(9), "back", T0 + 14));
}

#[test]
fn the_owner_forgets_old_ids_but_refuses_their_entries() {
    let mut f = group(Mode::Public);
    let first = sign(&kp(2), f.state(), Body::Add(pk(9)), T0 + 10);
    let seq = f.ok(first.clone());
    let seq = SequencedEntry::decode(&seq).unwrap().seq;
    f.ok(sign(&kp(2), f.state(), Body::Remove(pk(9)), T0 + 11));
    // A resend inside the memory gets its seq back.
    assert_eq!(f.submit(first.clone()), Ok(Submitted::Resend { seq }));
    assert_eq!(f.stats().resends, 1);
    f.set_limits(FeedLimits {
        recent_ids: 50,
        ..FeedLimits::default()
    });
    let admin = kp(2);
    for i in 0..50 {
        f.ok(post(&f, &admin, "spam", T0 + 100 + i));
    }
    // Past the memory: not sequenced again (it would re-add 9), refused as stale.
    let r = f.submit(first).unwrap_err();
    assert!(matches!(r, Refusal::Stale { .. }), "{r}");
    assert_eq!(f.state().role(&pk(9)), None);
    assert!(r.to_string().contains("too old"));
}

#[test]
#[cfg_attr(
    not(target_arch = "x86_64"),
    ignore = "thousands of Ed25519 signatures: minutes under qemu; the logic is the same on the host"
)]
fn catching_up_delivers_each_entry_once_in_order() {
    let mut f = group(Mode::Public);
    let base = f.state().last_seq();
    let mut m = replica(&f);
    for i in 0..100u64 {
        let k = if i % 3 == 0 { 4 } else { 3 };
        f.ok(post(&f, &kp(k), &format!("post {i}"), T0 + 10 + i));
    }
    let all = f.entries_since(0, usize::MAX).entries;
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut got: Vec<String> = Vec::new();
    let mut errs = 0u64;
    let mut rounds = 0;
    while m.next_wanted() <= f.state().last_seq() {
        rounds += 1;
        assert!(rounds < 1_000, "catch-up does not progress");
        let limit = 1 + (next() % 15) as usize;
        let mut batch = f.entries_since(m.next_wanted() - 1, limit);
        // Duplicates, old entries, future ones, and a shuffle.
        for _ in 0..next() % 4 {
            let dup = batch.entries[(next() as usize) % batch.entries.len()].clone();
            batch.entries.push(dup);
        }
        batch
            .entries
            .push(all[(next() as usize) % all.len()].clone());
        for i in (1..batch.entries.len()).rev() {
            batch.entries.swap(i, (next() as usize) % (i + 1));
        }
        let reports: Vec<_> = if next() % 2 == 0 {
            let r = m.apply_batch(&batch);
            errs += r.refused.len() as u64;
            r.applied
        } else {
            // One at a time, in the shuffled order: what comes early is refused and asked
            // for again.
            let mut v = Vec::new();
            for b in &batch.entries {
                match m.apply(b) {
                    Ok(a) => v.push(a),
                    Err(_) => errs += 1,
                }
            }
            v
        };
        for a in reports {
            assert_eq!(a.skipped, 0);
            if let Body::Post(t) = &a.entry.entry.body {
                got.push(String::from_utf8(t.clone()).unwrap());
            }
        }
    }
    let want: Vec<String> = (0..100).map(|i| format!("post {i}")).collect();
    assert_eq!(got, want);
    assert_eq!(m.state().last_seq(), base + 100);
    assert_eq!(m.state(), f.state());
    let st = m.stats();
    assert_eq!(st.refused(), errs);
    assert_eq!(st.refused(), st.replayed + st.out_of_order);
    assert!(st.replayed > 0 && st.out_of_order > 0, "{st:?}");
}

#[test]
fn the_window_prunes_posts_and_keeps_the_roster() {
    let mut f = group(Mode::Public);
    f.set_limits(FeedLimits {
        max_entries: 20,
        max_bytes: 1 << 20,
        ..FeedLimits::default()
    });
    let mut late_seq = 0;
    for i in 0..60u64 {
        f.ok(post(&f, &kp(3), &format!("p{i}"), T0 + 10 + i));
        if i == 30 {
            late_seq =
                SequencedEntry::decode(&f.ok(sign(&kp(2), f.state(), Body::Add(pk(9)), T0 + 500)))
                    .unwrap()
                    .seq;
        }
    }
    assert_eq!(f.len(), 20);
    let kept: Vec<SequencedEntry> = f
        .entries_since(0, usize::MAX)
        .entries
        .iter()
        .map(|b| SequencedEntry::decode(b).unwrap())
        .collect();
    // The five roster entries of the start and the late add are all still there.
    let roster: Vec<u64> = kept
        .iter()
        .filter(|e| !matches!(e.entry.body, Body::Post(_)))
        .map(|e| e.seq)
        .collect();
    assert_eq!(roster, vec![1, 2, 3, 4, 5, late_seq]);
    let last = f.state().last_seq();
    assert_eq!(f.pruned_through(), last - 14);
    // A newcomer catches up from nothing: the roster, then the newest posts, once each.
    let mut m = MemberFeed::new(f.id(), pk(1));
    let mut texts = Vec::new();
    let mut skipped = 0;
    while m.next_wanted() <= last {
        let rep = m.apply_batch(&f.entries_since(m.next_wanted() - 1, 4));
        assert!(rep.refused.is_empty(), "{:?}", rep.refused);
        for a in rep.applied {
            skipped += a.skipped;
            if let Body::Post(t) = a.entry.entry.body {
                texts.push(String::from_utf8(t).unwrap());
            }
        }
    }
    assert_eq!(texts, (46..60).map(|i| format!("p{i}")).collect::<Vec<_>>());
    assert_eq!(skipped, last - 20);
    assert_eq!(m.state(), f.state());
    // Without the pruned-through mark a gap is refused.
    let mut blind = MemberFeed::new(f.id(), pk(1));
    let b = f.entries_since(0, usize::MAX);
    let rep = blind.apply_batch(&Batch {
        pruned_through: 0,
        entries: b.entries,
    });
    assert_eq!(rep.applied.len(), 5);
    assert!(matches!(rep.refused[0], Refusal::OutOfOrder { .. }));
    // A byte cap prunes as well.
    f.set_limits(FeedLimits {
        max_entries: 100,
        max_bytes: f.bytes() - 1,
        ..FeedLimits::default()
    });
    assert_eq!(f.len(), 19);
    // Roster entries fill the feed: then only posts are taken... and none fit past it.
    f.set_limits(FeedLimits {
        max_entries: 6,
        max_bytes: 1 << 20,
        ..FeedLimits::default()
    });
    assert_eq!(f.len(), 6);
    let r = f.submit(sign(&kp(2), f.state(), Body::Remove(pk(9)), T0 + 600));
    assert!(matches!(r, Err(Refusal::FeedFull { entries: 6 })), "{r:?}");
    f.set_limits(FeedLimits {
        max_entries: 7,
        max_bytes: 1 << 20,
        ..FeedLimits::default()
    });
    f.ok(post(&f, &kp(3), "fits", T0 + 601));
    assert_eq!(f.len(), 7);
}

#[test]
fn restore_rebuilds_the_owner() {
    let mut f = group(Mode::Public);
    f.set_limits(FeedLimits {
        max_entries: 10,
        max_bytes: 1 << 20,
        ..FeedLimits::default()
    });
    let mut last_post = None;
    for i in 0..20u64 {
        let e = post(&f, &kp(3), &format!("p{i}"), T0 + 10 + i);
        f.ok(e.clone());
        last_post = Some(e);
    }
    let stored = f.entries_since(0, usize::MAX);
    let mut g = OwnerFeed::restore(
        &kp(1),
        f.id(),
        FeedLimits {
            max_entries: 10,
            max_bytes: 1 << 20,
            ..FeedLimits::default()
        },
        stored.pruned_through,
        &stored.entries,
    )
    .unwrap();
    assert_eq!(g.state(), f.state());
    assert_eq!(g.len(), f.len());
    assert_eq!(g.entries_since(0, usize::MAX), stored);
    // A resend after the restart still gets its seq.
    let seq = f.state().last_seq();
    assert_eq!(g.submit(last_post.unwrap()), Ok(Submitted::Resend { seq }));
    g.ok(post(&g, &kp(4), "after restart", T0 + 100));
    // Entries with a hole that was not pruned, or not the owner's: refused, with the index.
    let mut holey = stored.entries.clone();
    holey.remove(7);
    let r = OwnerFeed::restore(&kp(1), f.id(), FeedLimits::default(), 0, &stored.entries);
    assert!(matches!(r, Err((5, Refusal::OutOfOrder { .. }))));
    let r = OwnerFeed::restore(
        &kp(1),
        f.id(),
        FeedLimits::default(),
        stored.pruned_through,
        &holey,
    );
    assert!(matches!(r, Err((7, Refusal::OutOfOrder { .. }))));
    let r = OwnerFeed::restore(&kp(2), f.id(), FeedLimits::default(), 0, &stored.entries);
    assert!(matches!(r, Err((0, Refusal::WrongOwner { .. }))));
}

#[test]
fn private_posts_open_with_their_epoch_key_only() {
    let mut f = group(Mode::Private);
    let mut ring = Keyring::new();
    let key1 = ring.fresh_key(1).unwrap();
    // Members get the key out of band.
    let mut member_ring = Keyring::new();
    member_ring.insert(1, key1.clone());
    let mut m = replica(&f);

    let mut d = f.state().draft(Body::Post(Vec::new()), T0 + 10);
    member_ring
        .seal_draft(&mut d, &pk(3), "secret one")
        .unwrap();
    let e = UnsequencedEntry::sign(&kp(3), d).unwrap();
    let a = m.apply(&f.ok(e.clone())).unwrap();
    assert_eq!(
        member_ring.open_entry(&a.entry.entry).unwrap(),
        "secret one"
    );
    // Moved to another entry (other id, author or epoch): the AD does not match.
    let Body::Post(ct) = &e.body else {
        unreachable!()
    };
    let mut ad = PostAd::of(&e);
    ad.entry_id ^= 1;
    assert_eq!(crypt::open_post(&key1, &ad, ct), Err(CryptError::Decrypt));
    let mut moved = f.state().draft(Body::Post(ct.clone()), T0 + 11);
    moved.entry_id = e.entry_id;
    let moved = UnsequencedEntry::sign(&kp(4), moved).unwrap();
    assert_eq!(member_ring.open_entry(&moved), Err(CryptError::Decrypt));
    // A plaintext post, or an empty one, is not a private post.
    assert_eq!(
        f.submit(post(&f, &kp(3), "oops", T0 + 12)),
        Err(Refusal::BadPost(
            "too short for a nonce, a ciphertext and a tag"
        ))
    );

    // 4 is removed; the owner rotates to epoch 2 and gives the new key to 2 and 3 only.
    f.ok(sign(&kp(1), f.state(), Body::Remove(pk(4)), T0 + 20));
    assert_eq!(
        f.author(Body::Rotate(3), T0 + 21).unwrap_err(),
        Refusal::BadRotate { got: 3, want: 2 }
    );
    f.ok(sign(&kp(1), f.state(), Body::Rotate(2), T0 + 21));
    assert_eq!(f.state().epoch(), 2);
    let key2 = ring.fresh_key(2).unwrap();
    member_ring.insert(2, key2.clone());
    m.apply_batch(&f.entries_since(m.next_wanted() - 1, 100));
    assert_eq!(m.state().epoch(), 2);

    // A post still at epoch 1 is refused (4 could read it).
    let mut d = f.state().draft(Body::Post(Vec::new()), T0 + 22);
    d.epoch = 1;
    member_ring.seal_draft(&mut d, &pk(3), "stale").unwrap();
    let r = f
        .submit(UnsequencedEntry::sign(&kp(3), d).unwrap())
        .unwrap_err();
    assert_eq!(
        r.to_string(),
        "post at key epoch 1, the group is at epoch 2"
    );
    // At epoch 2: opens with the new key, not the old one.
    let mut d = f.state().draft(Body::Post(Vec::new()), T0 + 23);
    member_ring
        .seal_draft(&mut d, &pk(3), "secret two")
        .unwrap();
    let e2 = UnsequencedEntry::sign(&kp(3), d).unwrap();
    let a2 = m.apply(&f.ok(e2.clone())).unwrap();
    assert_eq!(
        member_ring.open_entry(&a2.entry.entry).unwrap(),
        "secret two"
    );
    let Body::Post(ct2) = &e2.body else {
        unreachable!()
    };
    assert_eq!(
        crypt::open_post(&key1, &PostAd::of(&e2), ct2),
        Err(CryptError::Decrypt)
    );
    // What 4 holds (only epoch 1's key) does not open it.
    let mut removed_ring = Keyring::new();
    removed_ring.insert(1, key1.clone());
    assert_eq!(removed_ring.open_entry(&e2), Err(CryptError::NoKey(2)));
    let mut relabelled = e2.clone();
    relabelled.epoch = 1;
    assert_eq!(
        removed_ring.open_entry(&relabelled),
        Err(CryptError::Decrypt)
    );
    assert_eq!(
        crypt::open_post(&GroupKey::from_bytes([0; 32]), &PostAd::of(&e2), ct2),
        Err(CryptError::Decrypt)
    );
    // The older post still opens with the older key.
    assert_eq!(
        member_ring.open_entry(&a.entry.entry).unwrap(),
        "secret one"
    );
}

#[test]
#[cfg_attr(
    not(target_arch = "x86_64"),
    ignore = "thousands of Ed25519 signatures: minutes under qemu; the logic is the same on the host"
)]
fn caps_are_enforced() {
    // Members: 256 with the founder.
    let many: Vec<PublicKey> = (0..MAX_MEMBERS as u64)
        .map(|i| {
            let mut s = [0xb0; 32];
            s[..8].copy_from_slice(&i.to_be_bytes());
            *Keypair::from_seed(&s).public()
        })
        .collect();
    let mut f = group(Mode::Public);
    let admin = kp(2);
    for (i, k) in many.iter().take(MAX_MEMBERS - 4).enumerate() {
        f.ok(sign(&admin, f.state(), Body::Add(*k), T0 + i as u64));
    }
    assert_eq!(f.state().member_count(), MAX_MEMBERS);
    let r = f.submit(sign(&admin, f.state(), Body::Add(pk(9)), T0 + 1_000));
    assert_eq!(r, Err(Refusal::RosterFull));
    assert_eq!(
        r.unwrap_err().to_string(),
        "the group has 256 members already"
    );
    replica(&f);
    assert_eq!(
        OwnerFeed::create(&kp(1), "big", Mode::Public, &many, T0).unwrap_err(),
        Refusal::RosterFull
    );
    let big = OwnerFeed::create(&kp(1), "big", Mode::Public, &many[1..], T0).unwrap();
    assert_eq!(big.state().member_count(), MAX_MEMBERS);

    // Body: a post over the cap cannot be signed, and its bytes are not an entry.
    let mut f = group(Mode::Public);
    let big = post(&f, &kp(3), &"x".repeat(MAX_BODY), T0 + 1);
    f.ok(big.clone());
    let mut bytes = big.encode();
    bytes[102..106].copy_from_slice(&((MAX_BODY + 1) as u32).to_be_bytes());
    bytes.insert(106, b'x');
    assert!(matches!(
        f.submit_bytes(&bytes),
        Err(Refusal::BadEncoding(super::entry::EntryError::BodyTooLong(
            _
        )))
    ));
    assert_eq!(f.stats().bad_encoding, 1);
    assert!(matches!(
        f.author(Body::Post(vec![b'x'; MAX_BODY + 1]), T0 + 2),
        Err(Refusal::BadEncoding(_))
    ));
    // Name: 64 bytes at most, for create and rename.
    assert!(OwnerFeed::create(&kp(1), &"n".repeat(65), Mode::Public, &[], T0).is_err());
    assert!(OwnerFeed::create(&kp(1), "", Mode::Public, &[], T0).is_err());
    assert!(f.author(Body::Rename("n".repeat(65)), T0 + 3).is_err());
    f.ok(sign(
        &kp(2),
        f.state(),
        Body::Rename("n".repeat(64)),
        T0 + 4,
    ));
    // An empty or non-UTF-8 public post.
    assert_eq!(
        f.submit(post(&f, &kp(3), "", T0 + 5)),
        Err(Refusal::BadPost("empty text"))
    );
    let e = sign(&kp(3), f.state(), Body::Post(vec![0xff, 0xfe]), T0 + 6);
    assert_eq!(f.submit(e), Err(Refusal::BadPost("text is not UTF-8")));
    assert_eq!(
        f.stats().refused(),
        f.stats().bad_encoding + f.stats().not_allowed
    );
}

#[test]
fn garbage_never_panics_and_is_counted() {
    let mut f = group(Mode::Public);
    let good = f.ok(post(&f, &kp(3), "hello", T0 + 1));
    let mut m = MemberFeed::new(f.id(), pk(1));
    let mut errs = 0;
    for n in 0..good.len() {
        if m.apply(&good[..n]).is_err() {
            errs += 1;
        }
        if f.submit_bytes(&good[..n]).is_err() {
            errs += 1;
        }
    }
    let mut b = good.clone();
    b.push(0);
    assert!(m.apply(&b).is_err());
    assert!(f.submit_bytes(&b).is_err());
    errs += 2;
    assert_eq!(m.stats().refused() + f.stats().refused(), errs);
    assert_eq!(short(&pk(1)).chars().count(), 9);
}
