//! The mux core fed arbitrary frames interleaved with application calls. Invariants: no
//! panic; an error fails the session for good; no stream buffers more than the window; the
//! backlog, stream table and queued replies stay within their limits; every frame the core emits is
//! well-formed (data length equals the payload, at most the frame limit) and, per stream, the
//! data it sends never exceeds the credit the peer granted (initial window + updates).
#![no_main]

use std::collections::HashMap;
use std::task::Waker;

use libfuzzer_sys::fuzz_target;
use skywire::mux::core::{Config, Core, Side};
use skywire::wire::mux::{Flags, HEADER_LEN, Repr, Type};

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let cfg = Config {
        window: 4096,
        max_frame_data: 1000,
        accept_backlog: 4,
        max_queued_bytes: 8192,
        max_streams: 16,
        // Small enough that the budget, the reply bound and the pre-authorisation limit
        // all come into play.
        max_session_bytes: 48 * 1024,
        max_queued_replies: 8,
        preauth_rx_limit: (first & 2 != 0).then_some(3000),
    };
    let side = if first & 1 == 0 {
        Side::Client
    } else {
        Side::Server
    };
    let mut core = Core::new(side, cfg.clone());
    let waker = Waker::noop();
    // Credit granted to us per stream id, and data we sent.
    let mut credit: HashMap<u32, u64> = HashMap::new();
    let mut sent: HashMap<u32, u64> = HashMap::new();
    let mut failed = false;
    let mut buf = [0u8; 700];

    while !rest.is_empty() {
        let op = rest[0];
        rest = &rest[1..];
        match op % 8 {
            // A frame from the peer: 12 header bytes, then data as announced (or what is left).
            0..=3 => {
                if rest.len() < HEADER_LEN {
                    break;
                }
                let h = Repr::parse_header(rest).unwrap();
                rest = &rest[HEADER_LEN..];
                let n = if h.frame_type == Type::Data {
                    (h.length as usize).min(rest.len())
                } else {
                    0
                };
                let (payload, tail) = rest.split_at(n);
                rest = tail;
                let res = core.handle_frame(h, &[], payload);
                if failed {
                    assert!(res.is_err(), "a failed session accepted a frame");
                }
                if res.is_err() {
                    failed = true;
                    assert!(core.failure().is_some());
                } else if h.frame_type == Type::WindowUpdate
                    && !h.flags.contains(Flags::RST)
                    && core.buffered(h.stream_id).is_some()
                {
                    *credit.entry(h.stream_id).or_insert(u64::from(cfg.window)) +=
                        u64::from(h.length);
                }
            }
            4 => {
                let _ = core.open(&[]);
            }
            5 => {
                let _ = core.accept(waker);
            }
            6 => {
                for id in core.stream_ids() {
                    let _ = core.read(id, &mut buf, waker);
                    let _ = core.write(id, &buf[..(op as usize * 7) % 700], waker);
                }
            }
            _ => {
                if let Some(&id) = core.stream_ids().first() {
                    match op >> 4 {
                        0..=7 => core.close(id),
                        8..=11 => core.reset(id),
                        _ => core.detach(id),
                    }
                }
            }
        }
        // State invariants.
        assert!(core.backlog_len() <= cfg.accept_backlog);
        assert!(core.stream_count() <= cfg.max_streams + cfg.accept_backlog);
        for id in core.stream_ids() {
            assert!(core.buffered(id).unwrap() <= cfg.window as usize);
        }
        assert!(core.queued_replies() <= cfg.max_queued_replies);
        // Everything emitted is well-formed and within credit.
        while let Some(f) = core.poll_transmit() {
            if f.header.frame_type == Type::Data {
                assert_eq!(f.header.length as usize, f.data.len());
                assert!(f.data.len() <= cfg.max_frame_data);
                let s = sent.entry(f.header.stream_id).or_insert(0);
                *s += f.data.len() as u64;
                let c = credit
                    .get(&f.header.stream_id)
                    .copied()
                    .unwrap_or(u64::from(cfg.window));
                assert!(
                    *s <= c,
                    "stream {}: sent {} with credit {}",
                    f.header.stream_id,
                    s,
                    c
                );
            } else {
                assert!(f.data.is_empty());
            }
            let bytes = f.header.to_bytes();
            assert_eq!(Repr::parse_header(&bytes).unwrap(), f.header);
        }
        // A stream that is gone may come back under the same id with a fresh window.
        let live = core.stream_ids();
        credit.retain(|id, _| live.contains(id));
        sent.retain(|id, _| live.contains(id));
    }
});
