//! The routing-packet view: parse → emit → parse round trips, and in-place route-id rewriting
//! (what the forwarder does) changes exactly those four bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::wire::route::{Packet, Repr, packet_len};

fuzz_target!(|data: &[u8]| {
    match Packet::new_checked(data) {
        Ok(packet) => {
            let repr = Repr::parse(&packet).expect("a checked packet parses");
            let total = packet.total_len();
            assert_eq!(packet_len(data), Some(total));
            let _ = packet.to_string();
            let mut out = vec![0u8; repr.buffer_len()];
            let mut copy = Packet::new_unchecked(&mut out[..]);
            repr.emit(&mut copy)
                .expect("emit into a buffer of buffer_len");
            copy.payload_mut().copy_from_slice(packet.payload());
            assert_eq!(&out[..], &data[..total]);

            // Forwarding: rewrite the route id in place.
            let new_id = repr.route_id.wrapping_add(1);
            let mut fwd = data[..total].to_vec();
            Packet::new_checked(&mut fwd[..])
                .unwrap()
                .set_route_id(new_id);
            let moved = Repr::parse(&Packet::new_checked(&fwd[..]).unwrap()).unwrap();
            assert_eq!(moved.route_id, new_id);
            assert_eq!(moved.packet_type, repr.packet_type);
            assert_eq!(moved.payload_len, repr.payload_len);
            assert_eq!(fwd[0], data[0]);
            assert_eq!(&fwd[5..], &data[5..total]);
        }
        Err(_) => {
            assert!(Repr::parse(&Packet::new_unchecked(data)).is_err());
        }
    }
});
