//! Core tests: two cores wired back to back in memory, and hand-made frames for violations.

use super::*;
use std::task::Waker;

fn w() -> Waker {
    Waker::noop().clone()
}

fn small() -> Config {
    Config {
        window: 1024,
        max_frame_data: 256,
        accept_backlog: 2,
        max_queued_bytes: 4096,
        max_streams: 8,
    }
}

/// Moves every queued frame from `a` to `b`; returns how many.
fn pump(a: &mut Core, b: &mut Core) -> usize {
    let mut n = 0;
    while let Some(f) = a.poll_transmit() {
        b.handle_frame(f.header, &f.control, &f.data).unwrap();
        n += 1;
    }
    n
}

fn settle(a: &mut Core, b: &mut Core) {
    while pump(a, b) + pump(b, a) > 0 {}
}

fn pair() -> (Core, Core) {
    (
        Core::new(Side::Client, small()),
        Core::new(Side::Server, small()),
    )
}

fn read_all(c: &mut Core, id: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 100];
    while let Ok(ReadResult::Data(n)) = c.read(id, &mut buf, &w()) {
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn open_accept_exchange_and_half_close() {
    let (mut c, mut s) = pair();
    let id = c.open(b"ctl").unwrap();
    assert_eq!(id, 1);
    let first = c.poll_transmit().unwrap();
    assert_eq!(first.header, Repr::window_update(1, Flags::SYN, 0));
    assert_eq!(first.control, b"ctl");
    s.handle_frame(first.header, &first.control, &first.data)
        .unwrap();
    let sid = s.accept(&w()).unwrap().unwrap();
    assert_eq!(sid, 1);
    assert_eq!(s.control(sid), b"ctl");

    assert_eq!(
        c.write(id, b"hello", &w()).unwrap(),
        WriteResult::Written(5)
    );
    c.close(id);
    settle(&mut c, &mut s);
    assert_eq!(read_all(&mut s, sid), b"hello");
    let mut buf = [0u8; 8];
    assert_eq!(s.read(sid, &mut buf, &w()).unwrap(), ReadResult::Eof);
    // The other direction is still open; the server's first frame carries ACK.
    assert_eq!(
        s.write(sid, b"back", &w()).unwrap(),
        WriteResult::Written(4)
    );
    let reply = s.poll_transmit().unwrap();
    assert!(reply.header.flags.contains(Flags::ACK));
    c.handle_frame(reply.header, &reply.control, &reply.data)
        .unwrap();
    s.close(sid);
    settle(&mut c, &mut s);
    assert_eq!(read_all(&mut c, id), b"back");
    assert_eq!(c.read(id, &mut buf, &w()).unwrap(), ReadResult::Eof);
    // Finished streams are forgotten once the handles are dropped, with no frame sent.
    c.detach(id);
    s.detach(sid);
    assert!(c.poll_transmit().is_none() && s.poll_transmit().is_none());
    assert_eq!(c.stream_count(), 0);
    assert_eq!(s.stream_count(), 0);
}

#[test]
fn window_limits_and_updates() {
    let (mut c, mut s) = pair();
    let id = c.open(&[]).unwrap();
    settle(&mut c, &mut s);
    let sid = s.accept(&w()).unwrap().unwrap();
    let data = vec![7u8; 5000];
    let mut sent = 0;
    // Writes stop at the 1024-byte window, in frames of at most 256 bytes.
    while let WriteResult::Written(n) = c.write(id, &data[sent..], &w()).unwrap() {
        assert!(n <= 256);
        sent += n;
    }
    assert_eq!(sent, 1024);
    settle(&mut c, &mut s);
    // Reading half the window returns credit and the writer can go on.
    let mut buf = [0u8; 512];
    assert_eq!(s.read(sid, &mut buf, &w()).unwrap(), ReadResult::Data(512));
    settle(&mut c, &mut s);
    let mut more = 0;
    while let WriteResult::Written(n) = c.write(id, &data[sent..], &w()).unwrap() {
        more += n;
        sent += n;
    }
    assert_eq!(more, 512);
}

#[test]
fn data_beyond_window_is_a_protocol_error() {
    let (mut c, mut s) = pair();
    let id = c.open(&[]).unwrap();
    settle(&mut c, &mut s);
    let big = vec![0u8; 1025];
    let err = s
        .handle_frame(Repr::data(id, Flags::NONE, 1025), &[], &big)
        .unwrap_err();
    assert!(matches!(err, MuxError::Protocol(_)), "{err}");
    // The core queued a go-away (protocol error) and fails everything after.
    let f = s.poll_transmit().unwrap();
    assert_eq!(f.header, Repr::go_away(GoAwayCode::ProtocolError));
    assert!(s.open(&[]).is_err());
}

#[test]
fn violations() {
    let cases: Vec<(Repr, Vec<u8>)> = vec![
        // Wrong parity: the client's peer (server) must not open odd ids... here the client
        // receives a SYN with an odd id.
        (Repr::window_update(3, Flags::SYN, 0), vec![]),
        (Repr::data(9, Flags::NONE, 3), vec![1, 2, 3]),
        (
            Repr {
                version: 1,
                ..Repr::ping(Flags::SYN, 1)
            },
            vec![],
        ),
        (
            Repr {
                frame_type: Type::Unknown(9),
                ..Repr::ping(Flags::SYN, 1)
            },
            vec![],
        ),
        (Repr::data(2, Flags::SYN, 4), vec![1, 2]),
    ];
    for (h, data) in cases {
        let mut c = Core::new(Side::Client, small());
        assert!(
            matches!(c.handle_frame(h, &[], &data), Err(MuxError::Protocol(_))),
            "{h}"
        );
        assert!(c.failure().is_some());
    }
    // A duplicate SYN.
    let mut s = Core::new(Side::Server, small());
    s.handle_frame(Repr::window_update(1, Flags::SYN, 0), &[], &[])
        .unwrap();
    assert!(
        s.handle_frame(Repr::window_update(1, Flags::SYN, 0), &[], &[])
            .is_err()
    );
}

#[test]
fn backlog_overflow_is_answered_with_rst() {
    let mut s = Core::new(Side::Server, small());
    for id in [1, 3, 5] {
        s.handle_frame(Repr::window_update(id, Flags::SYN, 0), &[], &[])
            .unwrap();
    }
    let f = s.poll_transmit().unwrap();
    assert_eq!(f.header, Repr::window_update(5, Flags::RST, 0));
    assert_eq!(s.accept(&w()).unwrap(), Some(1));
    assert_eq!(s.accept(&w()).unwrap(), Some(3));
    assert_eq!(s.accept(&w()).unwrap(), None);
}

#[test]
fn reset_and_detach() {
    let (mut c, mut s) = pair();
    let id = c.open(&[]).unwrap();
    c.write(id, b"abc", &w()).unwrap();
    settle(&mut c, &mut s);
    let sid = s.accept(&w()).unwrap().unwrap();
    // Dropping with unread data resets.
    s.detach(sid);
    settle(&mut c, &mut s);
    let mut buf = [0u8; 4];
    assert_eq!(c.read(id, &mut buf, &w()), Err(MuxError::Reset));
    assert_eq!(c.stream_count(), 0);
    // Late data for the forgotten stream is not a protocol error.
    s.handle_frame(Repr::data(1, Flags::NONE, 1), &[], &[0])
        .unwrap();
    assert!(s.failure().is_none());
}

#[test]
fn ping_and_pong() {
    let (mut c, mut s) = pair();
    let p = c.ping().unwrap();
    assert!(!c.take_pong(p, &w()).unwrap());
    settle(&mut c, &mut s);
    assert!(c.take_pong(p, &w()).unwrap());
}

#[test]
fn go_away_stops_new_streams_not_old_ones() {
    let (mut c, mut s) = pair();
    let id = c.open(&[]).unwrap();
    settle(&mut c, &mut s);
    let sid = s.accept(&w()).unwrap().unwrap();
    s.go_away();
    settle(&mut c, &mut s);
    assert!(c.peer_went_away());
    assert_eq!(c.open(&[]), Err(MuxError::NotAccepting));
    c.write(id, b"still", &w()).unwrap();
    settle(&mut c, &mut s);
    assert_eq!(read_all(&mut s, sid), b"still");
}

#[test]
fn stream_limit() {
    let mut c = Core::new(Side::Client, small());
    for _ in 0..8 {
        c.open(&[]).unwrap();
    }
    assert_eq!(c.open(&[]), Err(MuxError::TooManyStreams));
}
