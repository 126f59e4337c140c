//! The WebSocket frame decoder (`http::ws::Decoder`, docs/protocol.md "WebSocket"), fed
//! arbitrary bytes whole and in arbitrary chunkings (the first byte seeds the chunk sizes),
//! with a 4 KiB message limit. Invariants: no panic or hang; every chunking yields the same
//! events and ends in the same error as the whole input; an error is sticky (more input and
//! more calls return it again, and the buffers are freed); nothing is decoded after a close;
//! every event is within its limits (text UTF-8 by type, messages ≤ the limit, control
//! payloads ≤ 125 bytes, close codes a peer may send); the decoder never holds more than a
//! message, a control payload and a frame header; and each event, re-encoded by the server
//! encoder and masked as a client would, decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::http::ws::{
    Decoder, Event, MAX_CONTROL, MAX_HEADER, Opcode, ProtocolError, encode, encode_close,
};

const MAX: usize = 4096;

/// All events of `chunks` fed one after the other, and the error that ended them.
fn run<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<Event>, Option<ProtocolError>) {
    let mut d = Decoder::new(MAX);
    let mut evs = Vec::new();
    for c in chunks {
        d.feed(c);
        loop {
            match d.next_event() {
                Ok(Some(ev)) => evs.push(ev),
                Ok(None) => break,
                Err(e) => {
                    // Sticky, whatever comes next, and the buffers are gone.
                    assert_eq!(d.next_event(), Err(e));
                    d.feed(c);
                    assert_eq!(d.next_event(), Err(e));
                    assert_eq!(d.buffered(), 0);
                    return (evs, Some(e));
                }
            }
            assert!(d.buffered() <= MAX + MAX_CONTROL + MAX_HEADER);
        }
        if d.is_closed() {
            assert_eq!(d.buffered(), 0);
            d.feed(c);
            assert_eq!(d.next_event(), Ok(None));
        }
        assert!(d.buffered() <= MAX + MAX_CONTROL + MAX_HEADER);
    }
    (evs, None)
}

/// Chunk sizes 1..=64 from a small generator seeded by `seed`.
fn chunks(data: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut x = u32::from(seed) | 1;
    let mut rest = data;
    while !rest.is_empty() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = ((x >> 16) as usize % 64 + 1).min(rest.len());
        let (c, r) = rest.split_at(n);
        out.push(c);
        rest = r;
    }
    out
}

/// A server frame made into a client frame: the mask bit, a key, the payload masked.
fn masked(server: &[u8]) -> Vec<u8> {
    let ext = match server[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let key = [0xa5, 0x01, 0x7e, 0xc3];
    let mut f = vec![server[0], server[1] | 0x80];
    f.extend_from_slice(&server[2..2 + ext]);
    f.extend_from_slice(&key);
    f.extend(
        server[2 + ext..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4]),
    );
    f
}

fn check_event(ev: &Event) {
    let mut out = Vec::new();
    match ev {
        Event::Text(t) => {
            assert!(t.len() <= MAX);
            encode(Opcode::Text, t.as_bytes(), &mut out);
        }
        Event::Binary(b) => {
            assert!(b.len() <= MAX);
            encode(Opcode::Binary, b, &mut out);
        }
        Event::Ping(p) => {
            assert!(p.len() <= MAX_CONTROL);
            encode(Opcode::Ping, p, &mut out);
        }
        Event::Pong(p) => {
            assert!(p.len() <= MAX_CONTROL);
            encode(Opcode::Pong, p, &mut out);
        }
        Event::Close(None, reason) => {
            assert!(reason.is_empty());
            encode(Opcode::Close, b"", &mut out);
        }
        Event::Close(Some(code), reason) => {
            assert!(matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999));
            assert!(reason.len() <= MAX_CONTROL - 2);
            encode_close(*code, reason, &mut out);
        }
    }
    let mut d = Decoder::new(MAX);
    d.feed(&masked(&out));
    assert_eq!(d.next_event(), Ok(Some(ev.clone())));
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let whole = run(std::iter::once(input));
    for ev in &whole.0 {
        check_event(ev);
    }
    assert_eq!(run(chunks(input, seed).into_iter()), whole);
    assert_eq!(run(input.chunks(1)), whole);
});
