//! The pty frame view (`wire::pty`), the layer `apps::pty::proto` parses through: a checked
//! view never panics in an accessor, agrees with `frame_len`, and rebuilding a frame from its
//! type byte, length and payload with the setters gives back exactly its bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::wire::pty::{Frame, FrameType, frame_len};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(frame) = Frame::new_checked(rest) {
        let total = frame.total_len();
        assert_eq!(frame_len(rest), Some(total));
        assert_eq!(frame.payload().len(), usize::from(frame.payload_len()));
        assert_eq!(frame.payload_ref(), frame.payload());
        if let Some(t) = frame.frame_type() {
            assert_eq!(t.to_u8(), frame.type_byte());
            let mut out = vec![0u8; total];
            let mut copy = Frame::new_unchecked(&mut out[..]);
            copy.set_frame_type(t);
            copy.set_payload_len(frame.payload_len());
            copy.payload_mut().copy_from_slice(frame.payload());
            assert_eq!(&out[..], frame.as_bytes());
        } else {
            assert_eq!(FrameType::from_u8(frame.type_byte()), None);
        }
        rest = &rest[total..];
    }
    // A buffer shorter than its frame is refused, never read past.
    if let Some(total) = frame_len(rest) {
        assert!(total > rest.len());
    }
});
