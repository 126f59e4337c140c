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
            // Exactly its size (not from `mux::pool`): `growth_for` promises that.
            data.to_vec()
        } else {
            let mut c = Vec::with_capacity(CHUNK);
            c.extend_from_slice(data);
            c
        };
        self.chunk_bytes += chunk.capacity();
        self.chunks.push_back(chunk);
    }

    /// How much [`RecvBuf::alloc`] grows at most if the owned buffer `data` is pushed with
    /// [`RecvBuf::push_owned`].
    pub(crate) fn growth_for_owned(&self, data: &[u8], capacity: usize) -> usize {
        if data.len() < CHUNK {
            return self.growth_for(data.len());
        }
        let table = if self.chunks.len() == self.chunks.capacity() {
            alloc_cost(self.chunks.capacity().max(4) * 2 * size_of::<Vec<u8>>())
        } else {
            0
        };
        alloc_cost(capacity) + table
    }

    /// Appends an owned payload. One of at least [`CHUNK`] bytes is kept as it is, as its own
    /// chunk (no copy; a partly filled chunk before it gives its spare room back first, so
    /// the buffer still costs about what it holds); a smaller one is packed like
    /// [`RecvBuf::push`].
    pub(crate) fn push_owned(&mut self, data: Vec<u8>) {
        if data.len() < CHUNK {
            self.push(&data);
            return;
        }
        if let Some(tail) = self.chunks.back_mut()
            && tail.capacity() > tail.len()
        {
            self.chunk_bytes -= tail.capacity();
            tail.shrink_to_fit();
            self.chunk_bytes += tail.capacity();
        }
        self.len += data.len();
        self.chunk_bytes += data.capacity();
        self.chunks.push_back(data);
    }

    /// Unread bytes of the first chunk (what [`RecvBuf::pop_chunk`] gives whole).
    pub(crate) fn front_len(&self) -> usize {
        self.chunks.front().map_or(0, |c| c.len() - self.off)
    }

    /// Takes up to `max` unread bytes as an owned buffer: the first chunk itself when it is
    /// unread and fits (no copy), otherwise a copy of what fits of the first chunk.
    pub(crate) fn pop_chunk(&mut self, max: usize) -> Option<Vec<u8>> {
        let front = self.chunks.front()?;
        if max == 0 {
            return None;
        }
        if self.off == 0 && front.len() <= max {
            let c = self.chunks.pop_front().expect("front exists");
            self.chunk_bytes -= c.capacity();
            self.len -= c.len();
            if self.len == 0 {
                self.release_table();
            }
            return Some(c);
        }
        // Only from the first chunk, so the ones after it can still move whole.
        let mut out = vec![0u8; max.min(front.len() - self.off)];
        let n = self.read(&mut out);
        debug_assert_eq!(n, out.len());
        Some(out)
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
    fn owned_payloads_move_in_and_out_without_copies() {
        let mut b = RecvBuf::default();
        b.push(&[1, 2, 3]);
        let big = vec![7u8; 3 * CHUNK];
        let g = b.growth_for_owned(&big, big.capacity());
        let before = b.alloc();
        b.push_owned(big);
        assert!(b.alloc() <= before + g);
        // The small chunk before it gave its spare room back.
        assert!(
            b.alloc() < 3 * CHUNK + 3 + 4 * ALLOC_OVERHEAD + 256,
            "{}",
            b.alloc()
        );
        b.push_owned(vec![9u8; 10]);
        assert_eq!(b.len(), 3 + 3 * CHUNK + 10);
        assert_eq!(b.pop_chunk(100).unwrap(), vec![1, 2, 3]);
        // Too big for `max`: a copy of what fits.
        assert_eq!(b.pop_chunk(5).unwrap(), vec![7u8; 5]);
        let rest = b.pop_chunk(usize::MAX).unwrap();
        assert_eq!(rest.len(), 3 * CHUNK - 5);
        let mut b2 = RecvBuf::default();
        let big = vec![5u8; 2 * CHUNK];
        let ptr2 = big.as_ptr();
        b2.push_owned(big);
        let back = b2.pop_chunk(2 * CHUNK).unwrap();
        assert_eq!(back.as_ptr(), ptr2, "the same buffer comes back out");
        assert_eq!((b2.len(), b2.alloc()), (0, 0));
        assert_eq!(b.pop_chunk(usize::MAX).unwrap(), vec![9u8; 10]);
        assert_eq!((b.len(), b.alloc()), (0, 0));
        assert!(b.pop_chunk(10).is_none());
    }

    #[test]
    fn clear_frees_everything() {
        let mut b = RecvBuf::default();
        b.push(&[1; 10_000]);
        assert_eq!(b.clear(), 10_000);
        assert_eq!((b.len(), b.alloc()), (0, 0));
    }
}
