//! The sealed session frame view: the prefix is validated before any decryption, a frame that
//! parses re-emits to the same prefix, and data accessors never read past the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::wire::session::{Frame, MIN_SEALED_LEN, Repr, sealed_frame_len};

fuzz_target!(|data: &[u8]| {
    // The first byte picks a data length to ask for; the rest is the frame.
    let Some((&want, bytes)) = data.split_first() else {
        return;
    };
    match Frame::new_checked(bytes) {
        Ok(frame) => {
            let repr = Repr::parse(&frame).expect("a checked frame parses");
            assert!(repr.sealed_len() >= MIN_SEALED_LEN);
            assert_eq!(sealed_frame_len(bytes), Some(repr.buffer_len()));
            assert_eq!(frame.sealed().len(), repr.sealed_len());
            let _ = frame.to_string();
            let mut out = vec![0u8; repr.buffer_len()];
            let mut copy = Frame::new_unchecked(&mut out[..]);
            repr.emit(&mut copy)
                .expect("emit into a buffer of buffer_len");
            copy.sealed_mut().copy_from_slice(frame.sealed());
            assert_eq!(&out[..], &bytes[..repr.buffer_len()]);
            let want = usize::from(want);
            match frame.data(want) {
                Ok(d) => {
                    assert_eq!(d.len(), want);
                    assert!(frame.total_len(want) <= bytes.len());
                }
                Err(_) => assert!(frame.total_len(want) > bytes.len()),
            }
        }
        Err(_) => assert!(Repr::parse(&Frame::new_unchecked(bytes)).is_err()),
    }
});
