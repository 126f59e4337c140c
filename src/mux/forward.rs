//! Forwarding between two streams as owned frames: what a relay does with a channel between
//! two of its clients, and what a router does with a route. The payloads move from one
//! session's core to the other's as the buffers they arrived in (a sealed reader hands large
//! payloads over owned, [`Stream::poll_read_chunk`] gives the same buffer back, and
//! [`Stream::poll_write_chunk`] queues it under a new header), and the writer's batch sends it
//! with a vectored write: no byte is copied inside the forwarder.
//!
//! Budgets: a payload is taken from the source only when the destination has room for it
//! (credit and queue space), so what the destination does not take yet stays in the source
//! stream's receive buffer, bounded by its window and its session's budget. A taken payload
//! is counted in the destination's queue (`Config::max_queued_bytes`, by allocation) at once;
//! only when the destination's queue filled between the room check and the write (possible
//! when both streams are on one session) does one payload wait in the forwarder, at most one
//! per direction.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use futures_lite::future::{self, poll_fn};

use super::Stream;

/// Payloads one forwarder moves in one poll before it lets the executor run others.
pub const TURN: usize = 16;

/// Moves everything `r` receives to `w` until `r` ends, then half-closes `w`; counts the
/// bytes in `bytes`. An error on either stream ends it with that error.
pub async fn forward(r: &Stream, w: &Stream, bytes: &AtomicU64) -> io::Result<()> {
    // A payload `w` did not take in the poll that read it (see the module docs).
    let mut left: Option<Vec<u8>> = None;
    poll_fn(|cx| {
        for _ in 0..TURN {
            if left.is_some() {
                match w.poll_write_chunk(cx, &mut left) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            // Room for the next payload whole: a payload is split (copied) only when it is
            // bigger than a frame or than what credit will ever come back at once.
            let room = match w.poll_write_room_for(cx, r.next_chunk_len()) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            let mut chunk = match r.poll_read_chunk(cx, room) {
                Poll::Ready(Ok(Some(c))) => Some(c),
                Poll::Ready(Ok(None)) => {
                    w.close_ref();
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            bytes.fetch_add(chunk.as_ref().map_or(0, Vec::len) as u64, Ordering::Relaxed);
            match w.poll_write_chunk(cx, &mut chunk) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => left = chunk,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// Forwards both ways between `a` and `b` until both directions have ended (a clean end in
/// one direction leaves the other running) or either failed.
pub async fn forward_both(a: &Stream, b: &Stream, bytes: &AtomicU64) -> io::Result<()> {
    future::try_zip(forward(a, b, bytes), forward(b, a, bytes))
        .await
        .map(|_| ())
}
