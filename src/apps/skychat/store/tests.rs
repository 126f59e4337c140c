//! The history log under crashes and bad bytes: a torn tail cut at every byte offset, a
//! corrupt middle moved aside, forget records across a reopen, and the caps bounding the index.

use super::*;
use crate::crypto::Keypair;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("skywire-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pk(n: u8) -> PublicKey {
    *Keypair::from_seed(&[n; 32]).public()
}

fn rec(peer: PublicKey, id: u64, body: &str) -> Record {
    Record {
        id,
        peer,
        dir: Dir::In,
        ts_ms: now_ms(),
        net: NetKind::Dmsg,
        reply_to: None,
        body: body.into(),
    }
}

fn ids(s: &Store, peer: &PublicKey) -> Vec<u64> {
    s.history(Some(peer), 10_000)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect()
}

/// A crash may leave any prefix of the last record: every one is cut off at open, the records
/// before it stay, and the next append goes where the torn one began.
#[test]
fn a_torn_last_record_is_cut_at_every_offset() {
    let d = dir("torn");
    let a = pk(1);
    {
        let (mut s, _) = Store::open(&d, StoreLimits::default()).unwrap();
        s.append(&[rec(a, 1, "one"), rec(a, 2, "two")]).unwrap();
    }
    let file = d.join(FILE_NAME);
    let good = std::fs::read(&file).unwrap();
    let last = encode_record(&rec(a, 3, "the torn one"));
    for cut in 1..last.len() {
        let mut bytes = good.clone();
        bytes.extend_from_slice(&last[..cut]);
        std::fs::write(&file, &bytes).unwrap();
        let (mut s, report) = Store::open(&d, StoreLimits::default()).unwrap();
        assert_eq!(report.torn_bytes, cut as u64, "cut at {cut}");
        assert!(report.corrupt_file.is_none(), "cut at {cut}");
        assert_eq!(ids(&s, &a), vec![1, 2], "cut at {cut}");
        assert_eq!(std::fs::metadata(&file).unwrap().len(), good.len() as u64);
        // Appending after the repair leaves a readable log.
        s.append(&[rec(a, 4, "after")]).unwrap();
        drop(s);
        let (s, report) = Store::open(&d, StoreLimits::default()).unwrap();
        assert_eq!(report.torn_bytes, 0);
        assert_eq!(ids(&s, &a), vec![1, 2, 4]);
        drop(s);
        std::fs::write(&file, &good).unwrap();
    }
}

/// A flipped byte inside an earlier record: the scan stops there, the rest is kept aside (not
/// dropped), and what came before is served.
#[test]
fn a_corrupt_middle_is_moved_aside() {
    let d = dir("corrupt");
    let a = pk(2);
    {
        let (mut s, _) = Store::open(&d, StoreLimits::default()).unwrap();
        s.append(&[rec(a, 1, "one"), rec(a, 2, "two"), rec(a, 3, "three")])
            .unwrap();
    }
    let file = d.join(FILE_NAME);
    let mut bytes = std::fs::read(&file).unwrap();
    let first = encode_record(&rec(a, 1, "one")).len();
    bytes[first + HEADER_LEN + 20] ^= 0x40; // inside record 2's payload
    std::fs::write(&file, &bytes).unwrap();
    let (s, report) = Store::open(&d, StoreLimits::default()).unwrap();
    assert_eq!(ids(&s, &a), vec![1]);
    let aside = report.corrupt_file.expect("the rest moved aside");
    assert_eq!(
        std::fs::metadata(&aside).unwrap().len(),
        (bytes.len() - first) as u64
    );
}

/// Duplicates are not stored twice; forget records hold across a reopen.
#[test]
fn duplicates_and_forget_survive_a_reopen() {
    let d = dir("forget");
    let (a, b) = (pk(3), pk(4));
    {
        let (mut s, _) = Store::open(&d, StoreLimits::default()).unwrap();
        let got = s
            .append(&[rec(a, 1, "x"), rec(a, 1, "x again"), rec(b, 1, "y")])
            .unwrap();
        assert_eq!(
            got,
            vec![Appended::Stored, Appended::Duplicate, Appended::Stored]
        );
        assert_eq!(s.forget(Some(&a)).unwrap(), 1);
    }
    let (s, _) = Store::open(&d, StoreLimits::default()).unwrap();
    assert!(ids(&s, &a).is_empty());
    assert_eq!(ids(&s, &b), vec![1]);
    assert!(!s.contains(&a, 1) && s.contains(&b, 1));
}

/// The caps bound what is kept, and so the index in RAM, however many messages arrive.
#[test]
fn caps_bound_the_index() {
    let d = dir("caps");
    let limits = StoreLimits {
        per_peer_cap: 50,
        total_bytes: 64 * 1024,
        ..StoreLimits::default()
    };
    let (mut s, _) = Store::open(&d, limits).unwrap();
    let mut high = 0;
    for round in 0..20u64 {
        let batch: Vec<Record> = (0..100u64)
            .map(|i| {
                rec(
                    pk((i % 5) as u8 + 10),
                    round * 100 + i + 1,
                    "some text of a message",
                )
            })
            .collect();
        s.append(&batch).unwrap();
        high = high.max(s.stats().index_entries);
    }
    let st = s.stats();
    assert!(st.records <= 5 * 50, "{st:?}");
    assert!(st.live_bytes <= 64 * 1024, "{st:?}");
    // 2,000 appended; the index holds about what the caps keep, not what arrived.
    // (Per kept record: its queue entry and at most two append-order entries, stale ones
    // included, plus a constant.)
    assert!(high <= 3 * 5 * 50 + 64, "index grew to {high}: {st:?}");
    assert!(
        st.compactions >= 1 || st.file_bytes <= 2 * 64 * 1024 + (1 << 20),
        "{st:?}"
    );
    let newest = ids(&s, &pk(10));
    assert_eq!(
        newest.last(),
        Some(&1996),
        "oldest-first eviction keeps the newest"
    );
}

/// Evictions by the per-peer cap alone (the total far from its cap) leave stale entries in
/// the append-order queue: they are dropped, so the index stays bounded, and history over
/// everyone still lists the kept messages in order, the same after a reopen.
#[test]
fn per_peer_evictions_keep_the_order_queue_bounded() {
    evictions_then_reopen(false);
}

/// The same with compaction every few KiB of dead bytes: the live records move, the index
/// follows them.
#[test]
fn compaction_moves_the_live_records_with_stale_order_entries() {
    evictions_then_reopen(true);
}

fn evictions_then_reopen(compact: bool) {
    let d = dir(if compact { "stale-compact" } else { "stale" });
    let limits = StoreLimits {
        per_peer_cap: 10,
        ..StoreLimits::default()
    };
    let (mut s, _) = Store::open(&d, limits.clone()).unwrap();
    if compact {
        s.set_compact_min_dead(4 * 1024);
    }
    let mut high = 0;
    for i in 0..3_000u64 {
        // One chatty peer and one quiet one.
        let peer = if i % 100 == 0 { pk(2) } else { pk(1) };
        s.append(&[rec(peer, i + 1, "x")]).unwrap();
        high = high.max(s.stats().index_entries);
    }
    let st = s.stats();
    assert_eq!(st.records, 20, "{st:?}");
    assert!(high <= 3 * 20 + 64, "index grew to {high}: {st:?}");
    let all: Vec<u64> = s.history(None, 100).unwrap().iter().map(|r| r.id).collect();
    let mut want: Vec<u64> = (0..3_000u64)
        .filter(|i| i % 100 == 0)
        .skip(20)
        .map(|i| i + 1)
        .collect();
    want.extend((2_990..3_000u64).filter(|i| i % 100 != 0).map(|i| i + 1));
    crate::sort::sort_by_cmp(&mut want, |a, b| a.cmp(b));
    assert_eq!(all, want);
    assert!(s.contains(&pk(1), 3_000) && !s.contains(&pk(1), 2_000));
    let st = s.stats();
    if compact {
        assert!(st.compactions >= 10, "{st:?}");
        assert!(st.file_bytes < 8 * 1024, "{st:?}");
    }
    drop(s);
    let (s, rep) = Store::open(&d, limits).unwrap();
    assert_eq!(rep.records, 20);
    let again: Vec<u64> = s.history(None, 100).unwrap().iter().map(|r| r.id).collect();
    assert_eq!(again, want);
}
