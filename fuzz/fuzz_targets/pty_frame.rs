//! pty session frames, read as a stream: every frame that parses re-emits to exactly its
//! bytes and parses again to the same value; frame lengths agree with `frame_len`; nothing
//! panics (Display included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::apps::pty::proto::{Frame, Repr, frame_len};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(frame) = Frame::new_checked(rest) {
        let total = frame.total_len();
        assert_eq!(frame_len(rest), Some(total));
        let _ = frame.to_string();
        if let Ok(repr) = Repr::parse(&frame) {
            let _ = repr.to_string();
            assert_eq!(repr.buffer_len(), total);
            let out = repr.to_vec().expect("a parsed frame emits");
            assert_eq!(&out[..], &rest[..total]);
            let again = Repr::parse(&Frame::new_checked(&out[..]).expect("emitted frame is whole"))
                .expect("an emitted frame parses");
            assert_eq!(again, repr);
        }
        rest = &rest[total..];
    }
});
