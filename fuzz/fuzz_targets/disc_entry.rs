//! Discovery entries, deletions and store files parsed from arbitrary text. Invariants: no
//! panic; an entry that parses is within its limits, re-serialises to JSON that parses back
//! to the same entry, and its signed bytes are a pure function of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::dmsg::disc::{DiscLimits, Registry};
use skywire::dmsg::entry::{Deletion, Entry};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(e) = Entry::from_json(&text) {
        e.check_shape().expect("a parsed entry is within limits");
        let again = Entry::from_json(&e.to_json().to_compact()).expect("our JSON parses");
        assert_eq!(again, e);
        assert_eq!(again.signed_bytes(), e.signed_bytes());
        let _ = e.verify();
    }
    if let Ok(d) = Deletion::from_json(&text) {
        let again = Deletion::from_json(&d.to_json().to_compact()).expect("our JSON parses");
        assert_eq!(again, d);
    }
    let mut reg = Registry::new(DiscLimits::default());
    if let Ok((loaded, _)) = reg.load_text(&text, 1_763_800_000) {
        // Later duplicates of a PK replace earlier ones; nothing appears from nowhere.
        assert!(reg.counts(1_763_800_000).0 <= loaded);
    }
});
