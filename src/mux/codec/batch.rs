//! A writer's batch: the bytes of queued frames in order, small pieces (headers, sealed
//! headers, short payloads) copied into one buffer and large owned payloads kept as they are,
//! written out with vectored writes. A relayed or sealed payload thus goes from the core's
//! queue to the socket without being copied.

use std::io::{self, IoSlice};
use std::pin::Pin;

use futures_lite::future::poll_fn;
use futures_lite::io::AsyncWrite;

/// Payloads shorter than this are copied into the batch buffer (an extra iovec costs more).
pub const OWNED_MIN: usize = 1024;
/// Slices handed to one vectored write at most.
const MAX_IOV: usize = 64;

/// Bytes queued for one vectored write (see the module docs).
#[derive(Debug, Default)]
pub struct Batch {
    /// Copied bytes.
    head: Vec<u8>,
    /// Owned payloads, each with the length `head` had when it was queued: they go out after
    /// `head[..that]` and before the rest.
    owned: Vec<(usize, Vec<u8>)>,
    /// Bytes queued in all.
    len: usize,
}

impl Batch {
    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The copy buffer, to append small pieces to; call [`Batch::added`] with how many.
    pub fn head(&mut self) -> &mut Vec<u8> {
        &mut self.head
    }

    /// `n` bytes were appended to [`Batch::head`].
    pub fn added(&mut self, n: usize) {
        self.len += n;
    }

    /// Copies `bytes` in.
    pub fn push_copy(&mut self, bytes: &[u8]) {
        self.head.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Queues a payload: kept as it is if it is large, copied otherwise.
    pub fn push_owned(&mut self, data: Vec<u8>) {
        if data.len() < OWNED_MIN {
            self.push_copy(&data);
            return;
        }
        self.len += data.len();
        self.owned.push((self.head.len(), data));
    }

    /// Capacity of the copy buffer (what the batch keeps allocated between flushes).
    pub fn capacity(&self) -> usize {
        self.head.capacity()
    }

    /// Gives the copy buffer's room back down to `keep` bytes.
    pub fn shrink_to(&mut self, keep: usize) {
        self.head.shrink_to(keep);
    }

    /// Segment `j` of the batch in order: even ones are ranges of `head`, odd ones the owned
    /// payloads.
    fn seg(&self, j: usize) -> &[u8] {
        let i = j / 2;
        if j % 2 == 1 {
            return &self.owned[i].1;
        }
        let start = if i == 0 { 0 } else { self.owned[i - 1].0 };
        let end = self.owned.get(i).map_or(self.head.len(), |o| o.0);
        &self.head[start..end]
    }

    /// Writes everything queued to `w` (vectored writes, as many as it takes) and empties the
    /// batch. On an error the batch is emptied too (the connection is done for).
    pub async fn write_to<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<()> {
        let segs = 2 * self.owned.len() + 1;
        let (mut j, mut off) = (0usize, 0usize);
        let res = loop {
            while j < segs && off >= self.seg(j).len() {
                j += 1;
                off = 0;
            }
            if j >= segs {
                break Ok(());
            }
            let mut iov: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
            let mut k = 0;
            let (mut jj, mut o) = (j, off);
            while jj < segs && k < MAX_IOV {
                let s = &self.seg(jj)[o..];
                if !s.is_empty() {
                    iov[k] = IoSlice::new(s);
                    k += 1;
                }
                jj += 1;
                o = 0;
            }
            let iov = &iov[..k];
            let n = match poll_fn(|cx| Pin::new(&mut *w).poll_write_vectored(cx, iov)).await {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            };
            // Advance past what was written.
            let mut left = n;
            while left > 0 {
                let rest = self.seg(j).len() - off;
                if left < rest {
                    off += left;
                    left = 0;
                } else {
                    left -= rest;
                    j += 1;
                    off = 0;
                }
            }
        };
        self.head.clear();
        for (_, b) in self.owned.drain(..) {
            crate::mux::pool::give(b);
        }
        self.len = 0;
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    /// A sink that takes at most `max` bytes per write, to exercise partial vectored writes.
    struct Trickle {
        out: Vec<u8>,
        max: usize,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = buf.len().min(self.max);
            self.out.extend_from_slice(&buf[..n]);
            self.calls += 1;
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<io::Result<usize>> {
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(self.max - n);
                self.out.extend_from_slice(&b[..k]);
                n += k;
                if n == self.max {
                    break;
                }
            }
            self.calls += 1;
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn pieces_go_out_in_order_across_partial_writes() {
        for max in [1, 7, 1000, 5000, usize::MAX / 2] {
            let mut b = Batch::default();
            let mut want = Vec::new();
            for i in 0..40usize {
                let hdr = [i as u8; 5];
                b.push_copy(&hdr);
                want.extend_from_slice(&hdr);
                let data: Vec<u8> = (0..(i * 97) % 3000).map(|k| (k + i) as u8).collect();
                want.extend_from_slice(&data);
                b.push_owned(data);
            }
            assert_eq!(b.len(), want.len());
            let mut w = Trickle {
                out: Vec::new(),
                max,
                calls: 0,
            };
            block_on(b.write_to(&mut w)).unwrap();
            assert_eq!(w.out, want, "max {max}");
            assert!(b.is_empty());
            if max > want.len() {
                // Everything in one call, or two when more than MAX_IOV slices.
                assert!(w.calls <= 2, "{} calls", w.calls);
            }
        }
    }

    #[test]
    fn an_empty_batch_writes_nothing() {
        let mut b = Batch::default();
        let mut w = Trickle {
            out: Vec::new(),
            max: 10,
            calls: 0,
        };
        block_on(b.write_to(&mut w)).unwrap();
        assert_eq!((w.out.len(), w.calls), (0, 0));
    }
}
