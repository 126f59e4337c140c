//! Codec buffers return to their small size when idle (issue 11, finding 4): a session that
//! carried one big frame must not keep paying for it.

use std::collections::VecDeque;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::future::{self, block_on};

use super::*;
use crate::wire::mux::Flags;

/// A connection that delivers the chunks it was given, then has nothing (pending, forever).
struct Script(VecDeque<Vec<u8>>);

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let Some(front) = self.0.front_mut() else {
            return Poll::Pending;
        };
        let n = front.len().min(buf.len());
        buf[..n].copy_from_slice(&front[..n]);
        front.drain(..n);
        if front.is_empty() {
            self.0.pop_front();
        }
        Poll::Ready(Ok(n))
    }
}

fn plain_frame(id: u32, data: &[u8]) -> Vec<u8> {
    let mut v = Repr::data(id, Flags::NONE, data.len() as u32)
        .to_bytes()
        .to_vec();
    v.extend_from_slice(data);
    v
}

/// Reads frames until the connection has nothing more, for at most `secs` seconds; returns
/// how many frames came.
fn read_until_idle<R: FrameRead>(r: &mut R, secs: u64) -> usize {
    let mut n = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        let got = block_on(future::or(
            async { Some(r.read_frame().await.unwrap().is_some()) },
            async {
                async_io::Timer::after(Duration::from_millis(200)).await;
                None
            },
        ));
        match got {
            Some(true) => n += 1,
            Some(false) => panic!("stream ended"),
            None => return n,
        }
    }
    n
}

/// Waits (at most 10 s) until `cap(r)` is back to `small` while the connection stays idle.
fn wait_shrunk<R: FrameRead>(r: &mut R, cap: impl Fn(&R) -> usize, small: usize) -> usize {
    let t0 = Instant::now();
    while cap(r) > small && t0.elapsed() < Duration::from_secs(10) {
        assert_eq!(read_until_idle(r, 1), 0);
    }
    cap(r)
}

#[test]
fn plain_reader_buffer_shrinks_after_a_big_frame_once_idle() {
    let big = vec![7u8; 64 * 1024];
    let mut r = PlainReader::new(
        Script(VecDeque::from([
            plain_frame(1, &big),
            plain_frame(1, b"small"),
        ])),
        256 * 1024,
    );
    assert_eq!(read_until_idle(&mut r, 5), 2);
    // The 64 KiB frame grew it (before the fix it stayed so for good).
    assert!(r.buffer_capacity() > 64 * 1024, "{}", r.buffer_capacity());
    let cap = wait_shrunk(&mut r, PlainReader::buffer_capacity, RX_INITIAL);
    assert_eq!(cap, RX_INITIAL);
}

#[test]
fn sealed_reader_buffer_shrinks_after_a_big_frame_once_idle() {
    // The relay's codec: seal with one CipherState, open with a copy of it.
    let key = [3u8; 32];
    let bytes = {
        let mut w = SealedWriter::new(Vec::new(), CipherState::new(key));
        block_on(async {
            let f = OutFrame::new(
                Repr::data(1, Flags::SYN, 64 * 1024),
                b"ctl".to_vec(),
                vec![1u8; 64 * 1024],
            );
            w.write_frame(&f).await.unwrap();
            w.flush().await.unwrap();
        });
        w.inner
    };
    let mut r = SealedReader::new(
        Script(VecDeque::from([bytes])),
        CipherState::new(key),
        256 * 1024,
    );
    assert_eq!(read_until_idle(&mut r, 5), 1);
    assert!(r.buffer_capacity() > 64 * 1024);
    assert_eq!(
        wait_shrunk(&mut r, SealedReader::buffer_capacity, RX_INITIAL),
        RX_INITIAL
    );
}

#[test]
fn a_buffer_in_use_is_not_shrunk() {
    // Frames keep coming (each read needs the big buffer): no shrinking in between.
    let big = vec![7u8; 100 * 1024];
    let mut r = PlainReader::new(Script(VecDeque::new()), 256 * 1024);
    for _ in 0..5 {
        r.inner.0.push_back(plain_frame(1, &big));
        assert_eq!(read_until_idle(&mut r, 5), 1);
        assert!(r.buffer_capacity() > 100 * 1024);
    }
}

#[test]
fn writer_batch_buffers_shrink_after_a_light_flush_once_idle() {
    let big = OutFrame::new(Repr::data(1, Flags::NONE, 60_000), vec![], vec![0; 60_000]);
    let small = OutFrame::new(Repr::ping(Flags::SYN, 1), vec![], vec![]);
    block_on(async {
        let mut plain = PlainWriter::new(Vec::new());
        let mut sealed = SealedWriter::new(Vec::new(), CipherState::new([1; 32]));
        let t0 = Instant::now();
        plain.write_frame(&big).await.unwrap();
        plain.flush().await.unwrap();
        sealed.write_frame(&big).await.unwrap();
        sealed.flush().await.unwrap();
        assert!(plain.buffer_capacity() >= 60_000 && sealed.buffer_capacity() >= 60_000);
        // A light flush right after a heavy one (a lone update in a bulk transfer) keeps the
        // buffer: bulk does not pay for regrowing it.
        plain.write_frame(&small).await.unwrap();
        plain.flush().await.unwrap();
        sealed.write_frame(&small).await.unwrap();
        sealed.flush().await.unwrap();
        if t0.elapsed() < RX_IDLE {
            assert!(plain.buffer_capacity() >= 60_000 && sealed.buffer_capacity() >= 60_000);
        }
        // Once the traffic has been light for a while, it goes back (before: never).
        async_io::Timer::after(RX_IDLE + Duration::from_millis(100)).await;
        plain.write_frame(&small).await.unwrap();
        plain.flush().await.unwrap();
        sealed.write_frame(&small).await.unwrap();
        sealed.flush().await.unwrap();
        assert!(
            plain.buffer_capacity() <= WRITE_KEEP,
            "{}",
            plain.buffer_capacity()
        );
        assert!(
            sealed.buffer_capacity() <= WRITE_KEEP,
            "{}",
            sealed.buffer_capacity()
        );
    });
}
