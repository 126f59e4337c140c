//! The one TCP ↔ stream splice of the forwarding apps (skysocks, skysocks-client, the
//! resolvers, skynet forwarding, the RPC's dial upgrade): copies both ways until both
//! directions have ended, passing an end of input on as a half-close (FIN) on the other
//! side, through one fixed buffer of [`SPLICE_BUF`] bytes per direction — nothing queues
//! beyond it, so a slow reader slows its writer (back-pressure) instead of growing memory.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes buffered per direction of a splice (two per spliced pair).
pub const SPLICE_BUF: usize = 16 * 1024;

/// Bytes moved by a splice, readable while it runs (for status lines).
#[derive(Debug, Default)]
pub struct Counters {
    /// From `a` to `b`.
    pub a_to_b: AtomicU64,
    /// From `b` to `a`.
    pub b_to_a: AtomicU64,
}

/// Copies `r` to `w` until `r` ends (then closes `w`'s write side) or either fails; returns
/// the bytes copied.
async fn copy_half<R, W>(mut r: R, mut w: W, count: &AtomicU64) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; SPLICE_BUF];
    let mut total = 0u64;
    let res = loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        if let Err(e) = w.write_all(&buf[..n]).await {
            break Err(e);
        }
        total += n as u64;
        count.fetch_add(n as u64, Ordering::Relaxed);
    };
    // End of input (or a failure) here is passed on: the other side sees FIN.
    let _ = w.flush().await;
    let _ = w.close().await;
    res.map(|()| total)
}

/// Splices `a` and `b` until both directions have ended; `counters` (if given) are bumped as
/// bytes move. Returns (a→b, b→a) bytes.
pub async fn splice<A, B>(a: A, b: B, counters: Option<&Counters>) -> (u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let local = Counters::default();
    let c = counters.unwrap_or(&local);
    let (ar, aw) = futures_lite::io::split(a);
    let (br, bw) = futures_lite::io::split(b);
    // Each direction polled only when woken (`future::zip` would retry the idle side's read
    // on every wake of the other).
    let (up, down) =
        crate::spawn::join(copy_half(ar, bw, &c.a_to_b), copy_half(br, aw, &c.b_to_a)).await;
    (up.unwrap_or(0), down.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_net::unix::UnixStream;
    use futures_lite::future;
    use futures_lite::future::block_on;

    /// Bytes cross both ways, an end of input arrives as FIN on the other side, and the
    /// counters agree with what moved.
    #[test]
    fn splices_both_ways_with_half_close() {
        block_on(async {
            let (a, a_far) = UnixStream::pair().unwrap();
            let (b, b_far) = UnixStream::pair().unwrap();
            let counters = Counters::default();
            let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            let big2 = big.clone();
            let client = async move {
                let (mut r, mut w) = futures_lite::io::split(a_far);
                let send = async {
                    w.write_all(&big2).await.unwrap();
                    w.close().await.unwrap();
                };
                let mut back = Vec::new();
                let recv = async { r.read_to_end(&mut back).await.unwrap() };
                future::zip(send, recv).await;
                back
            };
            let server = async move {
                let (mut r, mut w) = futures_lite::io::split(b_far);
                let mut got = Vec::new();
                r.read_to_end(&mut got).await.unwrap();
                // The FIN came through; answer after it, then close.
                w.write_all(b"done").await.unwrap();
                w.close().await.unwrap();
                got
            };
            let ((back, got), (up, down)) =
                future::zip(future::zip(client, server), splice(a, b, Some(&counters))).await;
            assert_eq!(got, big);
            assert_eq!(back, b"done");
            assert_eq!((up, down), (big.len() as u64, 4));
            assert_eq!(counters.a_to_b.load(Ordering::Relaxed), big.len() as u64);
            assert_eq!(counters.b_to_a.load(Ordering::Relaxed), 4);
        });
    }
}
