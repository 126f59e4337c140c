//! A small per-thread pool of payload buffers for the owned-frame data path (the buffers a
//! sealed reader fills, a channel frame is built in, a writer has sent). A payload buffer
//! lives from the reader that fills it to the writer that sends it (or the channel reader
//! that opened it); allocating and freeing one per frame made the allocator give the top of
//! its heap back and take it again every few frames (a `brk` call and a page fault per 4 KiB
//! each time). Buffers of [`MIN_POOLED`]..=[`MAX_POOLED`] bytes of capacity are kept for reuse
//! instead, at most [`POOL_MAX`] per thread, so the pool holds at most
//! `POOL_MAX × MAX_POOLED` (408 KiB) per thread whatever the traffic. A buffer taken is
//! counted by its capacity wherever it goes (session budget, queue bound), like any other.

use std::cell::RefCell;

/// Smallest capacity worth keeping.
pub const MIN_POOLED: usize = 16 * 1024;
/// Largest capacity kept (a 64 KiB frame and some).
pub const MAX_POOLED: usize = 68 * 1024;
/// Buffers kept per thread at most.
pub const POOL_MAX: usize = 6;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least `cap` bytes: a kept one at most a quarter bigger
/// (so what it is counted at stays close to what it holds), or a new one.
pub fn take(cap: usize) -> Vec<u8> {
    if (MIN_POOLED / 2..=MAX_POOLED).contains(&cap) {
        let found = FREE.with_borrow_mut(|free| {
            let i = free
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= cap && b.capacity() <= cap + cap / 4)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i)?;
            Some(free.swap_remove(i))
        });
        if let Some(b) = found {
            return b;
        }
    }
    Vec::with_capacity(cap)
}

/// A copy of `bytes` in a buffer from [`take`].
pub fn copy_of(bytes: &[u8]) -> Vec<u8> {
    let mut v = take(bytes.len());
    v.extend_from_slice(bytes);
    v
}

/// Gives a buffer that is done with back for reuse (or frees it). A full pool forgets its
/// oldest buffer, so what it keeps follows the sizes in use now.
pub fn give(mut buf: Vec<u8>) {
    if !(MIN_POOLED..=MAX_POOLED).contains(&buf.capacity()) {
        return;
    }
    buf.clear();
    FREE.with_borrow_mut(|free| {
        if free.len() >= POOL_MAX {
            free.remove(0);
        }
        free.push(buf);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_the_pool_stays_bounded() {
        let a = copy_of(&[7u8; 40_000]);
        let p = a.as_ptr();
        give(a);
        let b = take(35_000);
        assert_eq!(b.as_ptr(), p, "the kept buffer comes back");
        assert!(b.is_empty() && b.capacity() >= 35_000);
        // Too small for it to be counted fairly: a new one.
        give(b);
        let c = take(10_000);
        assert_ne!(c.as_ptr(), p);
        for _ in 0..3 * POOL_MAX {
            give(Vec::with_capacity(MIN_POOLED));
        }
        FREE.with_borrow(|f| assert!(f.len() <= POOL_MAX));
        // Outside the range: never kept.
        give(Vec::with_capacity(MAX_POOLED + 1));
        give(Vec::with_capacity(100));
        FREE.with_borrow(|f| {
            assert!(
                f.iter()
                    .all(|b| b.capacity() <= MAX_POOLED && b.capacity() >= MIN_POOLED)
            )
        });
    }
}
