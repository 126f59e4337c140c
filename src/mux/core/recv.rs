//! The receive buffer of one stream: bytes received and not yet read, kept in chunks so that
//! what it costs is close to what it holds, however the peer cuts its frames.
//!
//! A payload first fills the spare room of the last chunk; what does not fit goes into a new
//! chunk of [`CHUNK`] bytes, or into a chunk of exactly its size when it is at least that big.
//! Every chunk but the last is therefore full, so a window of 1-byte frames costs about the
//! window, not a `Vec` (and its allocator overhead) per frame. Fully read chunks are freed at
//! once, and an emptied buffer gives its chunk table back.
//!
//! [`RecvBuf::alloc`] is the memory this buffer holds, counted as the allocator sees it: the
//! capacity of every chunk and of the chunk table, plus [`ALLOC_OVERHEAD`] per allocation.

use std::collections::VecDeque;
use std::mem::size_of;

/// Size of a chunk that small payloads are packed into.
pub(crate) const CHUNK: usize = 4 * 1024;
/// What the allocator adds to every allocation (glibc: a 16-byte chunk header, rounding).
pub(crate) const ALLOC_OVERHEAD: usize = 16;

/// Bytes of one allocation of `cap` bytes (0 for none).
pub(crate) fn alloc_cost(cap: usize) -> usize {
    if cap == 0 { 0 } else { cap + ALLOC_OVERHEAD }
}

#[derive(Debug, Default)]
pub(crate) struct RecvBuf {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes already read from the first chunk.
    off: usize,
    /// Unread bytes.
    len: usize,
    /// Sum of the chunks' capacities.
    chunk_bytes: usize,
}

impl RecvBuf {
    /// Unread bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Memory held (see the module docs).
    pub(crate) fn alloc(&self) -> usize {
        self.chunk_bytes
            + self.chunks.len() * ALLOC_OVERHEAD
            + alloc_cost(self.chunks.capacity() * size_of::<Vec<u8>>())
    }

    /// How much [`RecvBuf::alloc`] grows at most if `n` bytes are pushed.
    pub(crate) fn growth_for(&self, n: usize) -> usize {
        let rest = n.saturating_sub(self.spare());
        if rest == 0 {
            return 0;
        }
        let chunk = alloc_cost(rest.max(CHUNK));
        let table = if self.chunks.len() == self.chunks.capacity() {
            // The table doubles (at least 4 slots) and is reallocated.
            let new = self.chunks.capacity().max(4) * 2;
            alloc_cost(new * size_of::<Vec<u8>>())
        } else {
            0
        };
        chunk + table
    }

    fn spare(&self) -> usize {
        self.chunks.back().map_or(0, |c| c.capacity() - c.len())
    }

    /// Appends `data`.
    pub(crate) fn push(&mut self, mut data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        if let Some(tail) = self.chunks.back_mut() {
            let k = (tail.capacity() - tail.len()).min(data.len());
            // Within the capacity: no reallocation.
            tail.extend_from_slice(&data[..k]);
            data = &data[k..];
        }
        if data.is_empty() {
            return;
        }
        let chunk = if data.len() >= CHUNK {
            data.to_vec()
        } else {
            let mut c = Vec::with_capacity(CHUNK);
            c.extend_from_slice(data);
            c
        };
        self.chunk_bytes += chunk.capacity();
        self.chunks.push_back(chunk);
    }

    /// Copies up to `out.len()` unread bytes into `out`; returns how many.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> usize {
        let mut n = 0;
        while n < out.len() {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let avail = &front[self.off..];
            let take = avail.len().min(out.len() - n);
            out[n..n + take].copy_from_slice(&avail[..take]);
            n += take;
            self.off += take;
            if self.off == front.len() {
                // A fully read chunk is freed at once.
                let c = self.chunks.pop_front().expect("front exists");
                self.chunk_bytes -= c.capacity();
                self.off = 0;
            }
        }
        self.len -= n;
        if self.len == 0 {
            self.release_table();
        }
        n
    }

    /// Drops everything unread; returns how many bytes that was.
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.len;
        *self = RecvBuf::default();
        n
    }

    fn release_table(&mut self) {
        debug_assert!(self.chunks.is_empty());
        if self.chunks.capacity() > 0 {
            self.chunks = VecDeque::new();
        }
        self.off = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_payloads_share_chunks_and_cost_about_what_they_hold() {
        let mut b = RecvBuf::default();
        for i in 0..100_000u32 {
            let g = b.growth_for(1);
            let before = b.alloc();
            b.push(&[i as u8]);
            assert!(
                b.alloc() - before <= g,
                "growth {} > {g}",
                b.alloc() - before
            );
        }
        assert_eq!(b.len(), 100_000);
        // 25 chunks of 4 KiB and a table of 32 slots.
        assert!(b.alloc() < 100_000 + 2 * CHUNK + 2048, "{}", b.alloc());
        let mut out = vec![0u8; 100_000];
        let mut got = 0;
        while got < out.len() {
            got += b.read(&mut out[got..(got + 777).min(100_000)]);
        }
        assert!(out.iter().enumerate().all(|(i, &v)| v == i as u8));
        assert_eq!(b.alloc(), 0, "an emptied buffer holds nothing");
    }

    #[test]
    fn mixed_sizes_keep_order_and_free_read_chunks() {
        let mut b = RecvBuf::default();
        let mut want = Vec::new();
        for (i, n) in [3usize, 5000, 1, 4095, 70_000, 2, 9000]
            .into_iter()
            .enumerate()
        {
            let p: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
            b.push(&p);
            want.extend_from_slice(&p);
        }
        let mut got = Vec::new();
        let mut out = [0u8; 1000];
        loop {
            let n = b.read(&mut out);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&out[..n]);
            // Never more than two partly used chunks beyond what is unread.
            assert!(b.alloc() <= b.len() + 2 * CHUNK + 70_000 + 1024);
        }
        assert_eq!(got, want);
        assert_eq!(b.alloc(), 0);
    }

    #[test]
    fn clear_frees_everything() {
        let mut b = RecvBuf::default();
        b.push(&[1; 10_000]);
        assert_eq!(b.clear(), 10_000);
        assert_eq!((b.len(), b.alloc()), (0, 0));
    }
}
