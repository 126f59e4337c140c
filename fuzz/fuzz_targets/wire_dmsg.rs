//! The dmsg header views (`wire::dmsg`): the relay's channel request and the port header of
//! an inner stream, as the relay and the dmsg client parse them. Invariants: a request is
//! accepted only at exactly 33 bytes and a port header from 4; whatever parses emits the same
//! bytes again; status bytes round-trip; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::wire::dmsg::{
    PORT_HEADER_LEN, PortHeader, PortRepr, PortStatus, REQUEST_LEN, RelayStatus, Request,
    RequestRepr,
};

fuzz_target!(|data: &[u8]| {
    match Request::new_checked(data) {
        Ok(r) => {
            assert_eq!(data.len(), REQUEST_LEN);
            let repr = RequestRepr::parse(&r).expect("a checked request parses");
            assert_eq!(&repr.to_bytes()[..], data);
            let mut out = [0u8; REQUEST_LEN];
            repr.emit(&mut Request::new_unchecked(&mut out[..]))
                .expect("emit into a buffer of buffer_len");
            assert_eq!(&out[..], data);
            let _ = r.to_string();
        }
        Err(_) => {
            assert_ne!(data.len(), REQUEST_LEN);
            assert!(RequestRepr::parse(&Request::new_unchecked(data)).is_err());
        }
    }
    match PortHeader::new_checked(data) {
        Ok(h) => {
            let repr = PortRepr::parse(&h).expect("a checked header parses");
            assert_eq!(&repr.to_bytes()[..], &data[..PORT_HEADER_LEN]);
            let _ = h.to_string();
        }
        Err(_) => assert!(data.len() < PORT_HEADER_LEN),
    }
    if let Some(&b) = data.first() {
        assert_eq!(PortStatus::from_byte(b).to_byte(), b);
        assert_eq!(RelayStatus::from_byte(b).to_byte(), b);
        let _ = RelayStatus::from_byte(b).to_string();
    }
});
