//! The stcp transport frame (`wire::transport`): the view and the length checks never panic
//! on any bytes, and a routing packet sealed the way a link seals it (header, or the whole
//! control packet) opens back to the same header and says how many bytes trail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::crypto::channel::{FrameOpener, FrameSealer};
use skywire::crypto::noise::CipherState;
use skywire::wire::route::{HEADER_LEN, Packet};
use skywire::wire::transport::{
    Frame, PREFIX_LEN, SEALED_MIN, TAG_LEN, frame_len, is_control, sealed_len_for, trailing_len,
};

fuzz_target!(|data: &[u8]| {
    // Untrusted bytes: the view and the checks.
    if let Ok(f) = Frame::new_checked(data) {
        assert!(f.sealed_len() >= SEALED_MIN);
        assert_eq!(f.sealed().len(), f.sealed_len());
        assert_eq!(frame_len(data).unwrap(), Some(PREFIX_LEN + f.sealed_len()));
    }
    if data.len() >= HEADER_LEN + 2 {
        let sealed_len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        if let Ok(n) = trailing_len(&data[2..], sealed_len) {
            assert!(n <= u16::MAX as usize);
        }
    }
    // A packet sealed as a link does, then opened.
    let Ok(p) = Packet::new_checked(data) else {
        return;
    };
    let packet = p.as_bytes();
    let control = is_control(packet[0], p.route_id());
    let sealed_part = if control {
        packet
    } else {
        &packet[..HEADER_LEN]
    };
    if sealed_part.len() + TAG_LEN > u16::MAX as usize {
        return;
    }
    let mut buf = vec![0u8; PREFIX_LEN];
    buf.extend_from_slice(sealed_part);
    FrameSealer::new(CipherState::new([7; 32]))
        .seal_frame(&mut buf, 0)
        .expect("fits");
    let sealed_len = buf.len() - PREFIX_LEN;
    assert_eq!(
        sealed_len,
        sealed_len_for(packet[0], p.route_id(), usize::from(p.payload_len()))
    );
    let mut opener = FrameOpener::new(CipherState::new([7; 32]));
    let n = opener.open_frame(&mut buf).expect("opens");
    assert_eq!(&buf[PREFIX_LEN..PREFIX_LEN + n], sealed_part);
    let trailing = trailing_len(&buf[PREFIX_LEN..], sealed_len).expect("consistent");
    assert_eq!(
        trailing,
        if control {
            0
        } else {
            packet.len() - HEADER_LEN
        }
    );
});
