//! The golden examples of docs/protocol.md, recomputed: a complete XK and KK handshake between
//! two fixed identities with fixed ephemerals, the first transport frame each way, and a sealed
//! session frame. Every hex string here must also appear in docs/protocol.md, so the document
//! a second implementation is written from cannot drift from the code.

use skywire::crypto::Keypair;
use skywire::crypto::hex;
use skywire::crypto::noise::{Handshake, kk_initiator, kk_responder, xk_initiator, xk_responder};
use skywire::wire::{MuxFlags, MuxRepr, SealedFrame, SealedRepr};

fn seq(start: u8) -> [u8; 32] {
    core::array::from_fn(|i| start + i as u8)
}

/// Runs a handshake to completion; returns every message and both transport states.
fn run(
    mut i: Handshake,
    mut r: Handshake,
) -> (
    Vec<String>,
    skywire::crypto::noise::TransportState,
    skywire::crypto::noise::TransportState,
    String,
) {
    i.set_ephemeral(seq(0x40)).unwrap();
    r.set_ephemeral(seq(0x60)).unwrap();
    let mut msgs = Vec::new();
    let mut buf = [0u8; 128];
    let mut turn = 0;
    while !(i.is_finished() && r.is_finished()) {
        let (w, rd) = if turn % 2 == 0 {
            (&mut i, &mut r)
        } else {
            (&mut r, &mut i)
        };
        let n = w.write_message(&mut buf).unwrap();
        rd.read_message(&buf[..n]).unwrap();
        msgs.push(format!("{:04x}{}", n, hex::encode(&buf[..n])));
        turn += 1;
    }
    let (ti, _) = i.into_transport().unwrap();
    let (tr, _) = r.into_transport().unwrap();
    assert_eq!(ti.handshake_hash, tr.handshake_hash);
    let h = hex::encode(&ti.handshake_hash);
    (msgs, ti, tr, h)
}

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md")).unwrap()
}

/// The doc shows long hex wrapped at 64 characters; compare without whitespace.
fn assert_in_doc(what: &str, hex: &str) {
    let flat: String = doc().chars().filter(|c| !c.is_whitespace()).collect();
    assert!(
        flat.contains(hex),
        "docs/protocol.md lacks the {what}:\n{hex}\n(update the doc from this test's output)"
    );
}

fn print(name: &str, v: &str) {
    println!("{name}: {v}");
}

fn identities() -> (Keypair, Keypair) {
    (
        Keypair::from_seed(&seq(0x00)),
        Keypair::from_seed(&seq(0x20)),
    )
}

#[test]
fn identities_and_statics() {
    let (a, b) = identities();
    for (name, k) in [("A", &a), ("B", &b)] {
        let pk = k.public().to_hex();
        let st = hex::encode(&k.public().noise_static());
        print(&format!("{name} pk"), &pk);
        print(&format!("{name} noise static"), &st);
        assert_in_doc("identity PK", &pk);
        assert_in_doc("Noise static", &st);
    }
}

#[test]
fn xk_handshake_golden() {
    let (a, b) = identities();
    let (msgs, mut ti, mut tr, h) = run(xk_initiator(&a, b.public()), xk_responder(&b));
    assert_eq!(msgs.len(), 3);
    for (n, m) in msgs.iter().enumerate() {
        print(&format!("XK message {}", n + 1), m);
        assert_in_doc("XK handshake message", m);
    }
    print("XK handshake hash", &h);
    assert_in_doc("XK handshake hash", &h);

    // First transport frame each way.
    let a2b = ti.send.seal(&[], b"ping").unwrap();
    let a2b = format!("{:04x}{}", a2b.len(), hex::encode(&a2b));
    let b2a = tr.send.seal(&[], b"pong").unwrap();
    let b2a = format!("{:04x}{}", b2a.len(), hex::encode(&b2a));
    print("XK transport A->B ping", &a2b);
    print("XK transport B->A pong", &b2a);
    assert_in_doc("XK transport frame", &a2b);
    assert_in_doc("XK transport frame", &b2a);

    // The second frame A sends: a sealed session frame, a data header for stream 1 with the
    // SYN flag, no control payload, 5 data bytes after the sealed part.
    let header = MuxRepr::data(1, MuxFlags::SYN, 5).to_bytes();
    let repr = SealedRepr::new(0).unwrap();
    let mut buf = vec![0u8; repr.buffer_len() + 5];
    let mut frame = SealedFrame::new_unchecked(&mut buf[..]);
    repr.emit(&mut frame).unwrap();
    let sealed = frame.sealed_mut();
    sealed[..12].copy_from_slice(&header);
    let tag = ti.send.seal_in_place(&[], &mut sealed[..12]).unwrap();
    sealed[12..].copy_from_slice(&tag);
    frame.data_mut(5).unwrap().copy_from_slice(b"hello");
    let golden = hex::encode(&buf);
    print("sealed session frame", &golden);
    assert_in_doc("sealed session frame", &golden);

    // And the receiver opens it with its counter at 1 (it already opened "ping").
    let ping = tr
        .recv
        .open(&[], &hex::decode_vec(&a2b[4..]).unwrap())
        .unwrap();
    assert_eq!(ping, b"ping");
    let frame = SealedFrame::new_checked(&buf[..]).unwrap();
    let opened = tr.recv.open(&[], frame.sealed()).unwrap();
    let (hdr, control) = skywire::wire::session::split_opened(&opened).unwrap();
    assert_eq!(hdr, MuxRepr::data(1, MuxFlags::SYN, 5));
    assert!(control.is_empty());
    assert_eq!(frame.data(5).unwrap(), b"hello");
}

#[test]
fn kk_handshake_golden() {
    let (a, b) = identities();
    let (msgs, mut ti, _tr, h) = run(kk_initiator(&a, b.public()), kk_responder(&b, a.public()));
    assert_eq!(msgs.len(), 2);
    for (n, m) in msgs.iter().enumerate() {
        print(&format!("KK message {}", n + 1), m);
        assert_in_doc("KK handshake message", m);
    }
    print("KK handshake hash", &h);
    assert_in_doc("KK handshake hash", &h);
    let a2b = ti.send.seal(&[], b"ping").unwrap();
    let a2b = format!("{:04x}{}", a2b.len(), hex::encode(&a2b));
    print("KK transport A->B ping", &a2b);
    assert_in_doc("KK transport frame", &a2b);
}

#[test]
fn mux_and_route_golden() {
    use skywire::wire::mux::GoAwayCode;
    use skywire::wire::{RoutePacket, RouteRepr, RouteType};
    let frames = [
        MuxRepr::data(1, MuxFlags::SYN, 5),
        MuxRepr::window_update(1, MuxFlags::SYN, 0),
        MuxRepr::window_update(2, MuxFlags::ACK, 256 * 1024),
        MuxRepr::window_update(3, MuxFlags::FIN, 0),
        MuxRepr::window_update(3, MuxFlags::RST, 0),
        MuxRepr::ping(MuxFlags::SYN, 7),
        MuxRepr::ping(MuxFlags::ACK, 7),
        MuxRepr::go_away(GoAwayCode::ProtocolError),
    ];
    for f in frames {
        let h = hex::encode(&f.to_bytes());
        print(&format!("{f}"), &h);
        assert_in_doc("mux frame", &h);
    }
    let repr = RouteRepr::new(RouteType::Data, 0xdead_beef, 5).unwrap();
    let mut buf = vec![0u8; repr.buffer_len()];
    let mut p = RoutePacket::new_unchecked(&mut buf[..]);
    repr.emit(&mut p).unwrap();
    p.payload_mut().copy_from_slice(b"ping!");
    assert_in_doc("routing packet", &hex::encode(&buf));
}

/// Skychat (docs/protocol.md "Skychat"): a framed `chat-msg` asking for an ack, its
/// `chat-ack`, and the history store's record of the message as received.
#[test]
fn skychat_golden() {
    use skywire::apps::skychat::proto::{Envelope, MsgId, encode, frame};
    use skywire::apps::skychat::store::{Dir, NetKind, Record, encode_record};
    let id = MsgId(0x0123_4567_89ab_cdef);
    let msg = Envelope::Msg {
        id,
        body: "hi".into(),
        ack: true,
        reply_to: None,
    };
    let f = hex::encode(&frame(&encode(&msg)).unwrap());
    print("skychat chat-msg frame", &f);
    assert_in_doc("skychat chat-msg frame", &f);
    let a = hex::encode(&frame(&encode(&Envelope::Ack(id))).unwrap());
    print("skychat chat-ack frame", &a);
    assert_in_doc("skychat chat-ack frame", &a);
    let rec = Record {
        id: id.0,
        peer: *Keypair::from_seed(&seq(0x20)).public(),
        dir: Dir::In,
        ts_ms: 1_700_000_000_000,
        net: NetKind::Dmsg,
        reply_to: None,
        body: "hi".into(),
    };
    let r = hex::encode(&encode_record(&rec));
    print("skychat history record", &r);
    assert_in_doc("skychat history record", &r);
}

/// docs/protocol.md "Skysocks": the pipelined client handshake and the server's answers.
#[cfg(feature = "app-skysocks")]
#[test]
fn skysocks_golden() {
    use skywire::apps::socks5::proto::{self, Command, Host, Reply};
    let mut c = Vec::new();
    proto::emit_greeting(&[proto::METHOD_USERPASS], &mut c);
    proto::emit_userpass(b"pw", b"pw", &mut c);
    let host = Host::Name("example.com".into());
    proto::emit_request(Command::Connect, &host, 80, &mut c);
    let c = hex::encode(&c);
    print("skysocks client", &c);
    assert_in_doc("skysocks client handshake", &c);
    let mut a = proto::choice(proto::METHOD_USERPASS).to_vec();
    a.extend_from_slice(&proto::auth_status(true));
    proto::emit_reply(
        Reply::Succeeded,
        Some("127.0.0.1:50000".parse().unwrap()),
        &mut a,
    );
    let a = hex::encode(&a);
    print("skysocks answers", &a);
    assert_in_doc("skysocks answers", &a);
    let mut b = Vec::new();
    proto::emit_reply(Reply::CommandNotSupported, None, &mut b);
    assert_in_doc("skysocks BIND answer", &hex::encode(&b));
    assert_in_doc(
        "skysocks refused passcode",
        &hex::encode(&proto::auth_status(false)),
    );
}

/// docs/protocol.md "Skynet port forwarding": the request, the grant and a refusal, each as
/// the doc's sentence shows it (the short ones in their sentence, so that they cannot match
/// elsewhere), and parsed back.
#[cfg(feature = "app-skynet-fwd")]
#[test]
fn skynet_fwd_golden() {
    use skywire::apps::skynet_fwd::proto::{self, Status};
    let req = hex::encode(&proto::encode_request(8080));
    print("skynet-fwd request", &req);
    assert_in_doc(
        "skynet-fwd request",
        &format!("arequestforport8080is`{req}`"),
    );
    let mut ok = Vec::new();
    proto::encode_response(Status::Ok, "", &mut ok);
    let ok_hex = hex::encode(&ok);
    print("skynet-fwd grant", &ok_hex);
    assert_in_doc("skynet-fwd grant", &format!("theanswer`{ok_hex}`grantsit"));
    let why = "port 81 is not exposed";
    let mut no = Vec::new();
    proto::encode_response(Status::NotExposed, why, &mut no);
    let no_hex = hex::encode(&no);
    print("skynet-fwd refusal", &no_hex);
    assert_in_doc("skynet-fwd refusal", &no_hex);
    assert_in_doc(
        "skynet-fwd refusal reason",
        &format!("`{}`(22bytes)", why.replace(' ', "")),
    );
    assert_eq!(no.len(), 2 + 22);
    // And back.
    assert_eq!(
        proto::parse_request(&proto::encode_request(8080)),
        Ok(Some((8080, 3)))
    );
    assert_eq!(
        proto::parse_response(&ok),
        Ok(Some(((Status::Ok, String::new()), 2)))
    );
    assert_eq!(
        proto::parse_response(&no),
        Ok(Some(((Status::NotExposed, why.to_string()), 24)))
    );
}

#[cfg(feature = "app-vpn")]
#[test]
fn vpn_golden() {
    use skywire::apps::vpn::proto::{self, Hello, Net4, Status, Welcome};
    use std::net::Ipv4Addr;
    let net = |a: [u8; 4], prefix| Net4 {
        addr: Ipv4Addr::from(a),
        prefix,
    };
    let hello = proto::encode_hello(&Hello {
        passcode: b"pw".to_vec(),
        in_use: vec![net([192, 168, 1, 20], 24), net([10, 0, 0, 1], 8)],
    });
    let h = hex::encode(&hello);
    print("vpn hello", &h);
    assert_in_doc("vpn hello", &format!("`{h}`"));
    let ok = Welcome {
        status: Status::Ok,
        client: Ipv4Addr::new(192, 168, 2, 2),
        gateway: Ipv4Addr::new(192, 168, 2, 1),
        prefix: 29,
        mtu: 1500,
        reason: String::new(),
    };
    let w = hex::encode(&proto::encode_welcome(&ok));
    print("vpn welcome", &w);
    assert_in_doc("vpn welcome", &format!("`{w}`"));
    let no = proto::encode_welcome(&Welcome::refuse(Status::Forbidden, "wrong passcode"));
    let n = hex::encode(&no[..14]);
    print("vpn refusal", &n);
    assert_in_doc("vpn refusal", &format!("`{n}`"));
    let k = hex::encode(&proto::keepalive(false, 7));
    print("vpn keepalive", &k);
    assert_in_doc("vpn keepalive", &format!("`{k}`"));
    assert_eq!(proto::parse_welcome(&no).unwrap().reason, "wrong passcode");
}

/// docs/protocol.md "WebSocket": the RFC 6455 handshake accept value and frames, and the
/// close frames of two protocol errors.
#[cfg(feature = "hv-term")]
#[test]
fn websocket_golden() {
    use skywire::http::ws::{
        Decoder, Event, Opcode, ProtocolError, accept_key, encode, encode_close,
    };
    let accept = accept_key("dGhlIHNhbXBsZSBub25jZQ==");
    print("websocket accept", &accept);
    assert_in_doc(
        "websocket accept",
        &format!("Sec-WebSocket-Accept:{accept}"),
    );
    let masked = "818537fa213d7f9f4d5158";
    let mut d = Decoder::new(64);
    d.feed(&hex::decode_vec(masked).unwrap());
    assert_eq!(d.next_event(), Ok(Some(Event::Text("Hello".into()))));
    assert_in_doc("websocket client frame", masked);
    let mut out = Vec::new();
    encode(Opcode::Text, b"Hello", &mut out);
    let h = hex::encode(&out);
    print("websocket server frame", &h);
    assert_in_doc("websocket server frame", &format!("`{h}`"));
    for (what, err) in [
        ("normal close", None),
        ("unmasked", Some(ProtocolError::Unmasked)),
        ("too big", Some(ProtocolError::TooBig { max: 64 })),
    ] {
        let mut out = Vec::new();
        match err {
            None => encode_close(1000, "", &mut out),
            Some(e) => encode_close(e.code(), e.reason(), &mut out),
        }
        let h = hex::encode(&out);
        print(&format!("websocket {what}"), &h);
        assert_in_doc(&format!("websocket {what}"), &format!("`{h}`"));
    }
}
