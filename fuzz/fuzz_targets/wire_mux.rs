//! The plain yamux v0 frame view: any frame that parses (unknown versions, types and flag
//! bits included) re-emits to the same bytes; the header-only parser agrees with the view.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::wire::mux::{Frame, HEADER_LEN, Repr};

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = Repr::parse_header(data) {
        assert_eq!(header.to_bytes(), data[..HEADER_LEN]);
        let _ = header.to_string();
    } else {
        assert!(data.len() < HEADER_LEN);
    }
    match Frame::new_checked(data) {
        Ok(frame) => {
            let repr = Repr::parse(&frame).expect("a checked frame parses");
            assert_eq!(Repr::parse_header(data).unwrap(), repr);
            assert_eq!(repr.buffer_len(), frame.total_len());
            let _ = frame.to_string();
            let mut out = vec![0u8; repr.buffer_len()];
            let mut copy = Frame::new_unchecked(&mut out[..]);
            repr.emit(&mut copy)
                .expect("emit into a buffer of buffer_len");
            copy.payload_mut().copy_from_slice(frame.payload());
            assert_eq!(&out[..], &data[..frame.total_len()]);
            let again = Frame::new_checked(&out[..]).unwrap();
            assert_eq!(Repr::parse(&again).unwrap(), repr);
        }
        Err(_) => assert!(Repr::parse(&Frame::new_unchecked(data)).is_err()),
    }
});
