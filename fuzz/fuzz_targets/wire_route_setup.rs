//! The route setup payload views (request, ack, nack): whatever `new_checked` accepts parses,
//! emits back to the same bytes, and no accessor panics; whatever it refuses, `parse` refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::wire::setup::{Ack, AckRepr, Nack, NackRepr, Request, RequestRepr};

fuzz_target!(|data: &[u8]| {
    match Request::new_checked(data) {
        Ok(view) => {
            let repr = RequestRepr::parse(&view).expect("a checked request parses");
            let total = view.total_len();
            assert_eq!(repr.buffer_len(), total);
            assert!((2..=9).contains(&repr.path.len()));
            assert!(repr.hop >= 1 && usize::from(repr.hop) < repr.path.len());
            let _ = repr.to_string();
            let mut out = vec![0u8; total];
            repr.emit(&mut Request::new_unchecked(&mut out[..]))
                .expect("sized");
            assert_eq!(&out[..], &data[..total]);
        }
        Err(_) => assert!(RequestRepr::parse(&Request::new_unchecked(data)).is_err()),
    }
    if let Ok(view) = Ack::new_checked(data) {
        let repr = AckRepr::parse(&view).expect("a checked ack parses");
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Ack::new_unchecked(&mut out[..]))
            .expect("sized");
        assert_eq!(&out[..], &data[..8]);
    }
    match Nack::new_checked(data) {
        Ok(view) => {
            let repr = NackRepr::parse(&view).expect("a checked nack parses");
            assert_eq!(repr.reason, view.reason());
            let total = view.total_len();
            let mut out = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Nack::new_unchecked(&mut out[..]))
                .expect("sized");
            assert_eq!(&out[..], &data[..total]);
        }
        Err(_) => assert!(NackRepr::parse(&Nack::new_unchecked(data)).is_err()),
    }
});
