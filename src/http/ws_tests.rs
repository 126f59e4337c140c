//! Tests of `http::ws`: the handshake, every decoder rule, the RFC 6455 §5.7 examples, and the
//! reader and writer over a real connection (the HTTP server's upgrade, and split halves).

use super::*;
use crate::http::server::{Handler, Limits, serve, sync_handler};
use futures_lite::future::block_on;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame: `fin`, raw `opcode`, masked with `KEY`, the shortest length.
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&KEY);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    f
}

/// Every event of `bytes` fed at once, and the error that ended them (if any).
fn decode_all(max: usize, bytes: &[u8]) -> (Vec<Event>, Option<ProtocolError>) {
    let mut d = Decoder::new(max);
    d.feed(bytes);
    drain(&mut d)
}

fn drain(d: &mut Decoder) -> (Vec<Event>, Option<ProtocolError>) {
    let mut evs = Vec::new();
    loop {
        match d.next_event() {
            Ok(Some(ev)) => evs.push(ev),
            Ok(None) => return (evs, None),
            Err(e) => return (evs, Some(e)),
        }
    }
}

/// The error `bytes` end in (after any events).
fn error_of(bytes: &[u8]) -> ProtocolError {
    decode_all(DEFAULT_MAX_MESSAGE, bytes)
        .1
        .expect("a protocol error")
}

fn text(s: &str) -> Event {
    Event::Text(s.to_string())
}

// --- Handshake -------------------------------------------------------------------------------

#[test]
fn accept_key_of_rfc_6455_section_1_3() {
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

fn handshake(headers: &[(&str, &str)]) -> Request {
    Request {
        method: "GET".into(),
        path: "/term".into(),
        query: None,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: Vec::new(),
        peer: None,
        peer_pk: None,
    }
}

const GOOD: [(&str, &str); 5] = [
    ("host", "127.0.0.1:8000"),
    ("upgrade", "websocket"),
    ("connection", "Upgrade"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("sec-websocket-version", "13"),
];

fn with(name: &str, value: Option<&str>) -> Request {
    let mut r = handshake(&GOOD);
    r.headers.retain(|(k, _)| k != name);
    if let Some(v) = value {
        r.headers.push((name.to_string(), v.to_string()));
    }
    r
}

fn status_of(r: Result<String, Response>) -> (u16, Vec<(&'static str, String)>) {
    let resp = r.expect_err("refused");
    (resp.status, resp.headers)
}

#[test]
fn check_upgrade_accepts_what_browsers_send() {
    assert_eq!(
        check_upgrade(&handshake(&GOOD)).unwrap(),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    // Firefox: `Connection: keep-alive, Upgrade`; any case of the tokens; the list may also
    // be split over two header lines; the key may come unpadded.
    for (name, v) in [
        ("connection", "keep-alive, Upgrade"),
        ("connection", "UPGRADE"),
        ("upgrade", "WebSocket"),
        ("upgrade", "h2c, websocket"),
        ("sec-websocket-version", " 13 "),
    ] {
        assert!(check_upgrade(&with(name, Some(v))).is_ok(), "{name}: {v}");
    }
    let mut split = with("connection", Some("keep-alive"));
    split.headers.push(("connection".into(), "upgrade".into()));
    assert!(check_upgrade(&split).is_ok());
    let unpadded = with("sec-websocket-key", Some("dGhlIHNhbXBsZSBub25jZQ"));
    assert_eq!(
        check_upgrade(&unpadded).unwrap(),
        accept_key("dGhlIHNhbXBsZSBub25jZQ")
    );
}

#[test]
fn check_upgrade_refuses_with_the_right_status() {
    let mut post = handshake(&GOOD);
    post.method = "POST".into();
    let (s, h) = status_of(check_upgrade(&post));
    assert_eq!(s, 405);
    assert!(h.contains(&("Allow", "GET".to_string())));
    for (name, v) in [
        ("upgrade", None),
        ("upgrade", Some("websocketx")),
        ("upgrade", Some("h2c")),
        ("connection", None),
        ("connection", Some("keep-alive")),
        ("connection", Some("upgrade-ish")),
        ("sec-websocket-key", None),
        ("sec-websocket-key", Some("")),
        ("sec-websocket-key", Some("not base64 at all!!!!!==")),
        // 15 and 17 bytes.
        ("sec-websocket-key", Some("AAAAAAAAAAAAAAAAAAAA")),
        ("sec-websocket-key", Some("AAAAAAAAAAAAAAAAAAAAAAA=")),
        ("sec-websocket-key", Some("dGhlIHNhbXBsZSBub25jZQ===")),
    ] {
        assert_eq!(
            status_of(check_upgrade(&with(name, v))).0,
            400,
            "{name}: {v:?}"
        );
    }
    for v in [None, Some("8"), Some("14"), Some("13, 8")] {
        let (s, h) = status_of(check_upgrade(&with("sec-websocket-version", v)));
        assert_eq!(s, 426, "{v:?}");
        assert!(h.contains(&("Sec-WebSocket-Version", "13".to_string())));
    }
}

#[test]
fn upgrade_response_is_a_101_with_the_accept_header() {
    let r = upgrade_response("abc=", Box::new(|_| Box::pin(async {})));
    assert_eq!(r.status, 101);
    assert_eq!(
        r.headers,
        vec![
            ("Upgrade", "websocket".to_string()),
            ("Sec-WebSocket-Accept", "abc=".to_string())
        ]
    );
    assert!(r.upgrade.is_some());
}

// --- RFC 6455 §5.7 examples ------------------------------------------------------------------

#[test]
fn rfc_examples_decode_and_encode() {
    // A single-frame masked text message "Hello".
    let masked = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(client_frame(true, OP_TEXT, b"Hello"), masked);
    assert_eq!(decode_all(64, &masked), (vec![text("Hello")], None));
    // The unmasked one is what a server sends, and what a server must refuse.
    let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let mut out = Vec::new();
    encode(Opcode::Text, b"Hello", &mut out);
    assert_eq!(out, unmasked);
    assert_eq!(error_of(&unmasked), ProtocolError::Unmasked);
    // A fragmented unmasked text message: "Hel" then "lo".
    let mut frag = vec![0x01, 0x03, 0x48, 0x65, 0x6c];
    frag.extend([0x80, 0x02, 0x6c, 0x6f]);
    assert_eq!(error_of(&frag), ProtocolError::Unmasked);
    let mut frag = client_frame(false, OP_TEXT, b"Hel");
    frag.extend(client_frame(true, OP_CONTINUATION, b"lo"));
    assert_eq!(decode_all(64, &frag), (vec![text("Hello")], None));
    // Unmasked ping "Hello" (a server's), masked pong "Hello" (a client's answer).
    let mut out = Vec::new();
    encode(Opcode::Ping, b"Hello", &mut out);
    assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    let pong = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        decode_all(64, &pong),
        (vec![Event::Pong(b"Hello".to_vec())], None)
    );
    // 256 bytes of binary data: 16-bit length; 64 KiB: 64-bit length.
    for (n, head) in [
        (256usize, vec![0x82, 0x7e, 0x01, 0x00]),
        (65536, vec![0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]),
    ] {
        let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        encode(Opcode::Binary, &data, &mut out);
        assert_eq!(out.get(..head.len()), Some(&head[..]), "{n}");
        assert_eq!(out.len(), head.len() + n);
        let f = client_frame(true, OP_BINARY, &data);
        assert_eq!(f[1], 0x80 | head[1]);
        assert_eq!(decode_all(65536, &f), (vec![Event::Binary(data)], None));
    }
}

#[test]
fn encoder_length_edges_and_control_cut() {
    for (n, hdr) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
        let mut out = Vec::new();
        encode(Opcode::Binary, &vec![7; n], &mut out);
        assert_eq!(out.len(), hdr + n, "{n}");
    }
    let mut out = Vec::new();
    encode(Opcode::Ping, &[1; 300], &mut out);
    assert_eq!(out.len(), 2 + 125);
    assert_eq!(out[1], 125);
}

#[test]
fn close_frames_encode_with_a_cut_reason() {
    let mut out = Vec::new();
    encode_close(1000, "bye", &mut out);
    assert_eq!(out, [0x88, 0x05, 0x03, 0xe8, b'b', b'y', b'e']);
    // 'é' is two bytes: 61 of them are 122 bytes, one more would make 124 > 123.
    let long = "é".repeat(70);
    let mut out = Vec::new();
    encode_close(1002, &long, &mut out);
    assert_eq!(out[1] as usize, 2 + 122);
    assert!(std::str::from_utf8(&out[4..]).is_ok());
    let mut out = Vec::new();
    encode_close(CLOSE_TOO_BIG, "", &mut out);
    assert_eq!(out, [0x88, 0x02, 0x03, 0xf1]);
}

// --- Decoder rules ---------------------------------------------------------------------------

#[test]
fn reserved_bits_and_unknown_opcodes_are_protocol_errors() {
    for rsv in [0x40u8, 0x20, 0x10, 0x70] {
        let mut f = client_frame(true, OP_TEXT, b"x");
        f[0] |= rsv;
        let e = error_of(&f);
        assert_eq!(e, ProtocolError::ReservedBits(rsv >> 4));
        assert_eq!(e.code(), 1002);
        // Seen on the first byte.
        assert_eq!(decode_all(64, &f[..1]).1, Some(e));
    }
    for op in (3..=7).chain(0xb..=0xf) {
        let e = error_of(&client_frame(true, op, b""));
        assert_eq!(e, ProtocolError::UnknownOpcode(op));
        assert_eq!(e.code(), 1002);
    }
}

#[test]
fn control_frames_are_short_and_final() {
    for op in [OP_PING, OP_PONG, OP_CLOSE] {
        let e = error_of(&client_frame(true, op, &[0; 126]));
        assert_eq!(e, ProtocolError::ControlTooLong);
        assert_eq!(e.code(), 1002);
        let e = error_of(&client_frame(false, op, b""));
        assert_eq!(e, ProtocolError::FragmentedControl);
    }
    // 125 is fine; 126 fails on the second byte, before any extended length.
    let ok = client_frame(true, OP_PING, &[9; 125]);
    assert_eq!(decode_all(64, &ok), (vec![Event::Ping(vec![9; 125])], None));
    assert_eq!(
        decode_all(64, &[0x89, 0x80 | 126]).1,
        Some(ProtocolError::ControlTooLong)
    );
}

#[test]
fn fragmentation_rules() {
    // A continuation with nothing to continue.
    let e = error_of(&client_frame(true, OP_CONTINUATION, b"lo"));
    assert_eq!((e, e.code()), (ProtocolError::UnexpectedContinuation, 1002));
    // Also after a message has ended.
    let mut b = client_frame(true, OP_TEXT, b"a");
    b.extend(client_frame(true, OP_CONTINUATION, b"b"));
    assert_eq!(
        decode_all(64, &b),
        (vec![text("a")], Some(ProtocolError::UnexpectedContinuation))
    );
    // A new data frame inside a fragmented message.
    for op in [OP_TEXT, OP_BINARY] {
        let mut b = client_frame(false, OP_BINARY, b"ab");
        b.extend(client_frame(true, op, b"c"));
        let e = error_of(&b);
        assert_eq!((e, e.code()), (ProtocolError::UnfinishedMessage, 1002));
    }
    // Control frames between fragments pass at once; the message comes whole at its end.
    let mut b = client_frame(false, OP_BINARY, b"ab");
    b.extend(client_frame(true, OP_PING, b"p"));
    b.extend(client_frame(false, OP_CONTINUATION, b""));
    b.extend(client_frame(true, OP_PONG, b""));
    b.extend(client_frame(true, OP_CONTINUATION, b"cd"));
    assert_eq!(
        decode_all(64, &b),
        (
            vec![
                Event::Ping(b"p".to_vec()),
                Event::Pong(Vec::new()),
                Event::Binary(b"abcd".to_vec())
            ],
            None
        )
    );
    // Empty messages and empty fragments.
    let mut b = client_frame(true, OP_TEXT, b"");
    b.extend(client_frame(false, OP_BINARY, b""));
    b.extend(client_frame(true, OP_CONTINUATION, b""));
    assert_eq!(
        decode_all(64, &b),
        (vec![text(""), Event::Binary(Vec::new())], None)
    );
}

#[test]
fn text_must_be_utf8() {
    let e = error_of(&client_frame(true, OP_TEXT, b"ok \xff"));
    assert_eq!((e, e.code()), (ProtocolError::InvalidUtf8, 1007));
    // A character split between fragments is fine…
    let mut b = client_frame(false, OP_TEXT, "ab\u{20ac}".as_bytes().get(..3).unwrap());
    b.extend(client_frame(false, OP_CONTINUATION, &[0x82]));
    b.extend(client_frame(true, OP_CONTINUATION, &[0xac, b'!']));
    assert_eq!(decode_all(64, &b), (vec![text("ab\u{20ac}!")], None));
    // …but not one left unfinished at the end of the message.
    let mut b = client_frame(false, OP_TEXT, b"ab");
    b.extend(client_frame(true, OP_CONTINUATION, &[0xe2, 0x82]));
    assert_eq!(error_of(&b), ProtocolError::InvalidUtf8);
    // An invalid first fragment fails before the message ends.
    let b = client_frame(false, OP_TEXT, b"\xc0\xaf");
    assert_eq!(decode_all(64, &b).1, Some(ProtocolError::InvalidUtf8));
    // Binary is not checked.
    let b = client_frame(true, OP_BINARY, b"\xff");
    assert_eq!(decode_all(64, &b), (vec![Event::Binary(vec![0xff])], None));
}

#[test]
fn messages_over_the_limit_fail_from_their_header() {
    let max = 100;
    let too = ProtocolError::TooBig { max };
    assert_eq!(too.code(), 1009);
    // Exactly the limit is fine.
    let ok = client_frame(true, OP_BINARY, &[0; 100]);
    assert_eq!(decode_all(max, &ok).1, None);
    // One more: refused from the two header bytes alone.
    let f = client_frame(true, OP_BINARY, &[0; 101]);
    assert_eq!(decode_all(max, &f[..2]).1, Some(too));
    // 16-bit and 64-bit lengths, refused before the mask and payload arrive.
    assert_eq!(decode_all(max, &[0x82, 0xfe, 0x00, 0x65]).1, Some(too));
    let huge = [0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0];
    assert_eq!(decode_all(max, &huge).1, Some(too));
    // The 64-bit length with its top bit set (which would be negative to some).
    for top in [
        [0x80, 0, 0, 0, 0, 0, 0, 0],
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    ] {
        let mut f = vec![0x82, 0xff];
        f.extend(top);
        assert_eq!(
            decode_all(usize::MAX, &f).1,
            Some(ProtocolError::TooBig { max: usize::MAX })
        );
    }
    // Fragments together over the limit: refused at the header of the one that overflows.
    let mut b = client_frame(false, OP_TEXT, &[b'a'; 60]);
    b.extend(client_frame(false, OP_CONTINUATION, &[b'a'; 40]));
    let third = client_frame(true, OP_CONTINUATION, b"a");
    b.extend(&third[..2]);
    let mut d = Decoder::new(max);
    d.feed(&b);
    assert_eq!(d.next_event(), Err(too));
    // Control frames do not count against the message.
    let mut b = client_frame(false, OP_TEXT, &[b'a'; 100]);
    b.extend(client_frame(true, OP_PING, &[1; 125]));
    b.extend(client_frame(true, OP_CONTINUATION, b""));
    let (evs, e) = decode_all(max, &b);
    assert_eq!((evs.len(), e), (2, None));
}

#[test]
fn close_frames_are_checked() {
    let (evs, e) = decode_all(64, &client_frame(true, OP_CLOSE, b""));
    assert_eq!((evs, e), (vec![Event::Close(None, String::new())], None));
    let (evs, _) = decode_all(64, &client_frame(true, OP_CLOSE, b"\x03\xe8bye"));
    assert_eq!(evs, vec![Event::Close(Some(1000), "bye".into())]);
    for code in [1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
        let f = client_frame(true, OP_CLOSE, &code.to_be_bytes());
        assert_eq!(
            decode_all(64, &f).0,
            vec![Event::Close(Some(code), String::new())],
            "{code}"
        );
    }
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        let e = error_of(&client_frame(true, OP_CLOSE, &code.to_be_bytes()));
        assert_eq!((e, e.code()), (ProtocolError::BadCloseCode(code), 1002));
    }
    let e = error_of(&client_frame(true, OP_CLOSE, b"\x03"));
    assert_eq!((e, e.code()), (ProtocolError::BadCloseLength, 1002));
    let e = error_of(&client_frame(true, OP_CLOSE, b"\x03\xe8\xff"));
    assert_eq!((e, e.code()), (ProtocolError::InvalidUtf8, 1007));
}

#[test]
fn nothing_is_read_after_a_close() {
    let mut b = client_frame(true, OP_CLOSE, b"\x03\xe8");
    b.extend(client_frame(true, OP_TEXT, b"late"));
    b.extend([0xff; 10]); // even garbage
    let mut d = Decoder::new(64);
    d.feed(&b);
    assert_eq!(
        drain(&mut d),
        (vec![Event::Close(Some(1000), String::new())], None)
    );
    assert!(d.is_closed());
    d.feed(&client_frame(true, OP_TEXT, b"more"));
    assert_eq!(d.next_event(), Ok(None));
    assert_eq!(d.buffered(), 0);
}

#[test]
fn errors_are_sticky_and_free_the_buffers() {
    let mut d = Decoder::new(64);
    let mut b = client_frame(false, OP_TEXT, b"abc");
    b.extend([0x81, 0x05]); // unmasked
    d.feed(&b);
    assert_eq!(d.next_event(), Err(ProtocolError::UnfinishedMessage));
    assert_eq!(d.buffered(), 0);
    d.feed(&client_frame(true, OP_CONTINUATION, b"d"));
    assert_eq!(d.next_event(), Err(ProtocolError::UnfinishedMessage));
    assert_eq!(d.next_event(), Err(ProtocolError::UnfinishedMessage));
    assert_eq!(d.buffered(), 0);
}

#[test]
fn any_chunking_gives_the_same_events() {
    let mut b = client_frame(true, OP_TEXT, "héllo".as_bytes());
    b.extend(client_frame(false, OP_BINARY, &[1; 130]));
    b.extend(client_frame(true, OP_PING, b"x"));
    b.extend(client_frame(true, OP_CONTINUATION, &[2; 300]));
    b.extend(client_frame(true, OP_CLOSE, b"\x03\xe9"));
    let whole = decode_all(1024, &b);
    assert_eq!(whole.0.len(), 4);
    for step in [1, 2, 3, 5, 7, 13, 64] {
        let mut d = Decoder::new(1024);
        let mut evs = Vec::new();
        for c in b.chunks(step) {
            d.feed(c);
            let (mut e, err) = drain(&mut d);
            assert_eq!(err, None);
            evs.append(&mut e);
            // Payload bytes leave the input at once: at most a header is left undecoded.
            assert!(d.pending() < MAX_HEADER, "step {step}");
        }
        assert_eq!(evs, whole.0, "step {step}");
    }
}

#[test]
fn a_large_message_is_held_once() {
    let data = vec![5u8; DEFAULT_MAX_MESSAGE];
    let f = client_frame(true, OP_BINARY, &data);
    let mut d = Decoder::new(DEFAULT_MAX_MESSAGE);
    let mut got = None;
    for c in f.chunks(READ_CHUNK) {
        d.feed(c);
        if let Some(ev) = d.next_event().unwrap() {
            got = Some(ev);
        }
        assert!(d.buffered() <= DEFAULT_MAX_MESSAGE);
        assert!(d.pending() < MAX_HEADER);
    }
    assert_eq!(got, Some(Event::Binary(data)));
    assert!(d.at_boundary());
}

#[test]
fn protocol_errors_display_and_cross_io() {
    let e = ProtocolError::TooBig { max: 4096 };
    assert_eq!(e.to_string(), "message over 4096 bytes (close code 1009)");
    assert_eq!(
        ProtocolError::Unmasked.to_string(),
        "unmasked client frame (close code 1002)"
    );
    let io: io::Error = e.into();
    assert_eq!(io.kind(), io::ErrorKind::InvalidData);
    assert_eq!(ProtocolError::from_io(&io), Some(e));
    assert_eq!(ProtocolError::from_io(&io::Error::other("x")), None);
    for e in [
        ProtocolError::ReservedBits(4),
        ProtocolError::UnknownOpcode(3),
        ProtocolError::BadCloseCode(5),
        ProtocolError::InvalidUtf8,
    ] {
        assert!(e.reason().len() <= MAX_CONTROL - 2);
    }
}

// --- Reader and writer over connections ------------------------------------------------------

/// The server side of the tests: checks the handshake, then echoes messages on split halves
/// of the upgraded connection, answers pings and closes, and fails on protocol errors.
fn echo_handler() -> Handler {
    sync_handler(|req| match check_upgrade(&req) {
        Err(refusal) => refusal,
        Ok(accept) => upgrade_response(
            &accept,
            Box::new(|up| {
                Box::pin(async move {
                    let (r, w) = futures_lite::io::split(up);
                    let (mut r, mut w) = (WsReader::new(r, 1024), WsWriter::new(w));
                    loop {
                        match r.read_event().await {
                            Ok(Some(Event::Text(t))) => {
                                let _ = w.send_text(&t).await;
                            }
                            Ok(Some(Event::Binary(b))) => {
                                let _ = w.send_binary(&b).await;
                            }
                            Ok(Some(ev)) => {
                                let _ = w.reply(&ev).await;
                            }
                            Ok(None) => break,
                            Err(e) => {
                                if let Some(p) = ProtocolError::from_io(&e) {
                                    let _ = w.fail(&p).await;
                                }
                                break;
                            }
                        }
                    }
                })
            }),
        ),
    })
}

fn start() -> SocketAddr {
    let ex = Arc::new(async_executor::Executor::new());
    let listener = block_on(async_net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let ex2 = ex.clone();
    std::thread::spawn(move || {
        block_on(ex2.run(serve(
            listener,
            ex2.clone(),
            echo_handler(),
            Limits::default(),
        )))
        .ok();
    });
    addr
}

const REQUEST: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Origin: http://example.com\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Connects and completes the handshake; returns the stream after the exact 101.
fn connect(addr: SocketAddr) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(REQUEST.as_bytes()).unwrap();
    let want = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    let mut head = vec![0u8; want.len()];
    s.read_exact(&mut head).unwrap();
    assert_eq!(String::from_utf8_lossy(&head), want);
    s
}

fn read_n(s: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).unwrap();
    b
}

fn read_to_end(s: &mut std::net::TcpStream) -> Vec<u8> {
    let mut b = Vec::new();
    s.read_to_end(&mut b).unwrap();
    b
}

#[test]
fn a_session_through_the_http_server() {
    let addr = start();
    let mut s = connect(addr);
    // The RFC's masked "Hello" comes back as the server's unmasked one.
    s.write_all(&[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ])
    .unwrap();
    assert_eq!(
        read_n(&mut s, 7),
        [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    );
    // "Hel" + ping + "lo", one byte at a time: the pong first, then the message.
    let mut b = client_frame(false, OP_TEXT, b"Hel");
    b.extend(client_frame(true, OP_PING, b"hb"));
    b.extend(client_frame(true, OP_CONTINUATION, b"lo"));
    for byte in &b {
        s.write_all(std::slice::from_ref(byte)).unwrap();
    }
    assert_eq!(read_n(&mut s, 4), [0x8a, 0x02, b'h', b'b']);
    assert_eq!(
        read_n(&mut s, 7),
        [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    );
    // 300 bytes of binary: a 16-bit length.
    s.write_all(&client_frame(true, OP_BINARY, &[0xab; 300]))
        .unwrap();
    let echo = read_n(&mut s, 4 + 300);
    assert_eq!(echo[..4], [0x82, 0x7e, 0x01, 0x2c]);
    // The closing handshake: our code echoed, then the server ends the connection.
    s.write_all(&client_frame(true, OP_CLOSE, b"\x03\xe8done"))
        .unwrap();
    assert_eq!(read_to_end(&mut s), [0x88, 0x02, 0x03, 0xe8]);
}

#[test]
fn protocol_errors_close_with_their_code() {
    let addr = start();
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (vec![0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], 1002), // unmasked
        (client_frame(true, OP_TEXT, b"\xff"), 1007),
        (vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0], 1009), // top bit set
        (client_frame(true, OP_BINARY, &[0; 1025]), 1009),   // over the 1,024 limit
        (client_frame(true, 0x3, b""), 1002),
    ];
    for (bytes, code) in cases {
        let mut s = connect(addr);
        s.write_all(&bytes).unwrap();
        let got = read_to_end(&mut s);
        assert_eq!(got.first(), Some(&0x88), "{code}: {got:02x?}");
        assert_eq!(got.get(2..4), Some(&code.to_be_bytes()[..]), "{code}");
        // The reason is the error's, as UTF-8, and the frame is all there is.
        assert_eq!(got.len(), 2 + usize::from(got[1]));
        assert!(std::str::from_utf8(&got[4..]).is_ok());
    }
}

/// One HTTP response (the connection stays open: a refused handshake is plain keep-alive
/// HTTP).
fn read_response(s: &mut std::net::TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.extend(read_n(s, 1));
    }
    let head = String::from_utf8(head).unwrap();
    let len: usize = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    head + &String::from_utf8(read_n(s, len)).unwrap()
}

#[test]
fn a_bad_handshake_gets_http_errors() {
    let addr = start();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = REQUEST.replace("Version: 13", "Version: 8");
    s.write_all(req.as_bytes()).unwrap();
    let out = read_response(&mut s);
    assert!(
        out.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{out}"
    );
    assert!(out.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{out}");
    // The same connection may try again.
    let req = REQUEST.replace("Upgrade: websocket\r\n", "");
    s.write_all(req.as_bytes()).unwrap();
    let out = read_response(&mut s);
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    assert!(out.ends_with("\"}\n"), "{out}");
}

#[test]
fn reader_ends_cleanly_between_frames_and_not_inside_one() {
    block_on(async {
        let (a, mut b) = async_net::unix::UnixStream::pair().unwrap();
        let mut r = WsReader::new(a, 64);
        b.write_all(&client_frame(true, OP_TEXT, b"hi"))
            .await
            .unwrap();
        drop(b);
        assert_eq!(r.read_event().await.unwrap(), Some(text("hi")));
        assert_eq!(r.read_event().await.unwrap(), None);
        assert_eq!(r.read_event().await.unwrap(), None);

        let (a, mut b) = async_net::unix::UnixStream::pair().unwrap();
        let mut r = WsReader::new(a, 64);
        let f = client_frame(true, OP_TEXT, b"hello");
        b.write_all(&f[..5]).await.unwrap();
        drop(b);
        let e = r.read_event().await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    });
}

#[test]
fn writer_gives_up_on_a_peer_that_does_not_read() {
    block_on(async {
        let (a, _b) = async_net::unix::UnixStream::pair().unwrap();
        let mut w = WsWriter::new(a).with_write_timeout(Duration::from_millis(200));
        let big = vec![0u8; 16 << 20];
        let e = w.send_binary(&big).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(w.is_closed());
        let e = w.send_text("x").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        // The large frame's buffer is not kept.
        assert_eq!(w.buf.capacity(), 0);
    });
}

#[test]
fn writer_close_is_once_and_shuts_the_write_side() {
    block_on(async {
        let (a, mut b) = async_net::unix::UnixStream::pair().unwrap();
        let mut w = WsWriter::new(a);
        w.reply(&Event::Ping(b"p".to_vec())).await.unwrap();
        w.reply(&Event::Close(None, String::new())).await.unwrap();
        w.close(1001, "again").await.unwrap();
        w.reply(&Event::Ping(b"late".to_vec())).await.unwrap();
        assert!(w.send_text("late").await.is_err());
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, [0x8a, 0x01, b'p', 0x88, 0x02, 0x03, 0xe8]);
    });
}

/// A deterministic stand-in for the `ws_frames` fuzz target on the pinned toolchain: valid
/// frames with random bytes flipped, cut and spliced, decoded whole and in random chunks.
#[test]
fn mutated_streams_decode_the_same_in_any_chunking() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n.max(1) as u64) as usize
    };
    let mut base = client_frame(false, OP_TEXT, "né".as_bytes());
    base.extend(client_frame(true, OP_PING, b"p"));
    base.extend(client_frame(true, OP_CONTINUATION, b"!"));
    base.extend(client_frame(true, OP_BINARY, &[3; 200]));
    base.extend(client_frame(true, OP_CLOSE, b"\x03\xe8"));
    let (mut errors, mut events) = (0, 0);
    for _ in 0..3000 {
        let mut b = base.clone();
        for _ in 0..1 + rnd(4) {
            match rnd(3) {
                0 if !b.is_empty() => {
                    let i = rnd(b.len());
                    b[i] ^= 1 << rnd(8);
                }
                1 => b.truncate(rnd(b.len() + 1)),
                _ => {
                    let i = rnd(b.len() + 1);
                    let junk: Vec<u8> = (0..rnd(12)).map(|_| rnd(256) as u8).collect();
                    b.splice(i..i, junk);
                }
            }
        }
        let whole = decode_all(128, &b);
        let mut d = Decoder::new(128);
        let (mut evs, mut err) = (Vec::new(), None);
        let mut rest = &b[..];
        while !rest.is_empty() && err.is_none() {
            let (c, r) = rest.split_at((1 + rnd(16)).min(rest.len()));
            rest = r;
            d.feed(c);
            let (mut e, x) = drain(&mut d);
            evs.append(&mut e);
            err = x;
            assert!(d.buffered() <= 128 + MAX_CONTROL + MAX_HEADER);
        }
        assert_eq!((evs, err), whole, "{b:02x?}");
        if let Some(e) = err {
            d.feed(&base);
            assert_eq!(d.next_event(), Err(e));
            errors += 1;
        }
        events += whole.0.len();
    }
    // The mutations reach both sides.
    assert!(
        errors > 300 && events > 3000,
        "{errors} errors, {events} events"
    );
}
