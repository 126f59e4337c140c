//! The length-prefixed Noise frame view: a frame that parses re-emits to the same bytes and
//! re-parses to the same Repr; one that does not is refused consistently.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::wire::noise::{Frame, Repr, frame_len};

fuzz_target!(|data: &[u8]| {
    match Frame::new_checked(data) {
        Ok(frame) => {
            let repr = Repr::parse(&frame).expect("a checked frame parses");
            assert_eq!(frame_len(data), Some(frame.total_len()));
            assert_eq!(repr.buffer_len(), frame.total_len());
            let _ = frame.to_string();
            let mut out = vec![0u8; repr.buffer_len()];
            let mut copy = Frame::new_unchecked(&mut out[..]);
            repr.emit(&mut copy)
                .expect("emit into a buffer of buffer_len");
            copy.payload_mut().copy_from_slice(frame.payload());
            assert_eq!(&out[..], &data[..frame.total_len()]);
            let again = Frame::new_checked(&out[..]).expect("re-emitted frame parses");
            assert_eq!(Repr::parse(&again).unwrap(), repr);
        }
        Err(_) => {
            assert!(Repr::parse(&Frame::new_unchecked(data)).is_err());
            assert!(frame_len(data).is_none_or(|n| n > data.len()));
        }
    }
});
