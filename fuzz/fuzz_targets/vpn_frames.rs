//! The VPN protocol (`apps::vpn::proto`, docs/protocol.md "VPN"), fed arbitrary bytes as a
//! hello, a welcome, a stream of frames and single frame bodies. Invariants: no panic or
//! hang; a hello or welcome that parses re-encodes to the bytes it came from (the networks,
//! passcode and reason bounded by their limits); a parsed `Ok` welcome names a client address
//! inside its gateway's network; the framer never claims more bytes than it was given and
//! walks the whole stream in frames that re-frame to the same bytes; every body classifies
//! (no panic), an IPv4 one only when its header is whole and its total length is the body's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::apps::vpn::proto::{self, Body, Net4};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = proto::parse_hello(data) {
        assert!(h.passcode.len() <= proto::MAX_PASSCODE);
        assert!(h.in_use.len() <= proto::MAX_IN_USE);
        assert!(h.in_use.iter().all(|n| n.prefix <= 32));
        assert_eq!(proto::encode_hello(&h), data);
        assert!(data.len() <= proto::MAX_HELLO);
    }
    if let Ok(w) = proto::parse_welcome(data) {
        assert!(w.reason.len() <= proto::MAX_REASON);
        assert_eq!(proto::encode_welcome(&w), data);
        if w.status == proto::Status::Ok {
            let net = Net4 {
                addr: w.gateway,
                prefix: w.prefix,
            };
            assert!(net.contains(w.client) && w.client != w.gateway);
        }
    }

    // The stream: frames until the bytes run out, re-framed to the same bytes.
    let mut at = 0;
    let mut again = Vec::new();
    while let Some((body, used)) = proto::next_frame(&data[at..]) {
        assert!(used >= proto::LEN_PREFIX && at + used <= data.len());
        assert_eq!(body.end, used);
        let b = &data[at + body.start..at + body.end];
        proto::put_frame(b, &mut again);
        if let Body::Ipv4 { .. } = proto::classify(b) {
            assert!(b.len() >= 20 && usize::from(u16::from_be_bytes([b[2], b[3]])) == b.len());
        }
        at += used;
    }
    assert_eq!(&again[..], &data[..at]);
    assert!(data.len() - at < proto::LEN_PREFIX || proto::next_frame(&data[at..]).is_none());

    // A body on its own.
    match proto::classify(data) {
        Body::Ipv4 { .. } => assert!(data.len() >= 20 && data[0] >> 4 == 4),
        Body::Ipv6 => assert!(data.len() >= 40 && data[0] >> 4 == 6),
        Body::Ping(t) => assert_eq!(&proto::keepalive(false, t)[2..], data),
        Body::Pong(t) => assert_eq!(&proto::keepalive(true, t)[2..], data),
        Body::Junk => {}
    }
});
