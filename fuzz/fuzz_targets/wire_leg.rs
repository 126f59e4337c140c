//! The route-group leg views: any bytes parse to a Data header or a keep-alive (or an error),
//! never a panic, and what parses emits back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::wire::leg::{Data, KEEPALIVE_LEN, KeepAlive};

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = Data::new_checked(data) {
        let (seq, ack, frame) = (d.seq(), d.ack(), d.frame().len());
        let _ = d.to_string();
        let mut copy = data.to_vec();
        let mut v = Data::new_checked(&mut copy[..]).expect("same length");
        v.set_seq(seq);
        v.set_ack(ack);
        assert_eq!(v.frame_mut().len(), frame);
        assert_eq!(&copy[..], data);
    }
    match KeepAlive::parse(data) {
        Ok(k) => {
            assert_eq!(data.len(), KEEPALIVE_LEN);
            assert_eq!(&k.to_bytes()[..], data);
            let _ = k.to_string();
        }
        Err(e) => {
            assert_ne!(data.len(), KEEPALIVE_LEN);
            let _ = e.to_string();
        }
    }
});
