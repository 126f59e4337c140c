//! The skychat history log (`apps::skychat::store`) fed arbitrary bytes as a log file.
//! Invariants: the scan never panics and reports good records at strictly increasing offsets,
//! each of which re-encodes to exactly the bytes it was read from; opening a store on those
//! bytes never panics and repairs the file, so that a second open finds a clean log (nothing
//! torn, nothing moved aside) holding the same history.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use skywire::apps::skychat::store::{
    Payload, Record, ScanEnd, Store, StoreLimits, encode_record, scan,
};
use skywire::crypto::PublicKey;

static RUN: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    let mut last: Option<u64> = None;
    let end = scan(data, data.len() as u64, |off, payload, parsed| {
        assert!(last.is_none_or(|l| off > l));
        last = Some(off);
        if let Payload::Message {
            ts_ms,
            dir,
            peer,
            id,
            reply_to,
            net,
            body,
        } = parsed
            && let Ok(peer) = PublicKey::from_bytes(&peer)
        {
            let r = Record {
                id,
                peer,
                dir,
                ts_ms,
                net,
                reply_to: (reply_to != 0).then_some(reply_to),
                body,
            };
            let bytes = encode_record(&r);
            let at = off as usize;
            assert_eq!(&bytes[..], &data[at..at + bytes.len()]);
            assert_eq!(&bytes[8..], payload);
        }
    })
    .expect("reading a slice cannot fail");
    if let ScanEnd::Torn { off } | ScanEnd::Corrupt { off, .. } = end {
        assert!(off < data.len() as u64);
    }

    let dir = std::env::temp_dir().join(format!(
        "skychat-fuzz-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("history.log"), data).unwrap();
    // The clock at 0: the TTL expires nothing, so both opens see the same records.
    let limits = StoreLimits::default();
    let first = Store::open_at(&dir, limits.clone(), 0).map(|(s, _)| s.history(None, usize::MAX));
    if let Ok(Ok(h1)) = first {
        let (s, rep) = Store::open_at(&dir, limits, 0).expect("a repaired log reopens");
        assert_eq!(rep.torn_bytes, 0, "{rep:?}");
        assert!(rep.corrupt_file.is_none(), "{rep:?}");
        assert_eq!(s.history(None, usize::MAX).unwrap(), h1);
    }
    let _ = std::fs::remove_dir_all(&dir);
});
