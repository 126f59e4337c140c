//! Response bodies written as they happen: Server-Sent Events (`text/event-stream`) and
//! chunked streams such as NDJSON, fed by a producer task through a bounded queue.
//!
//! A handler answers [`Response::sse`](super::server::Response::sse) or
//! [`Response::streaming`](super::server::Response::streaming) and hands the sender
//! ([`SseTx`] / [`BodyTx`]) to a task of its own; the connection's task writes what is queued
//! as it arrives (one HTTP/1.1 chunk per batch; HTTP/1.0 clients get the raw bytes and a close),
//! and an SSE body gets a `: keep-alive` comment whenever it has been quiet for the keep-alive
//! interval. The body ends when every sender is dropped.
//!
//! The budget of one streaming connection ([`StreamOpts`]): at most `queue_bytes` of body
//! queued or being written (default 32 KiB, so at most 8 MiB for a listener's 256
//! connections), and each write must make progress within `write_timeout` (10 s). A client
//! that stops reading is dropped when either runs out: [`BodyTx::send`] never waits (a
//! producer serving many clients is never held by one of them), it closes the body instead
//! and says so; [`BodyTx::send_wait`] waits for room, at most until the write timeout drops
//! the client. A client that closes its end is noticed at once (the server keeps reading the
//! connection while it streams; bytes of a next, pipelined request are kept, up to the header
//! limit). Once closed, every send returns [`Closed`] and [`BodyTx::closed`] resolves, so a
//! producer learns it can stop.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_io::Timer;
use futures_lite::io::{AsyncRead, AsyncWrite};

/// The budget and pacing of one streaming body.
#[derive(Debug, Clone)]
pub struct StreamOpts {
    /// Most bytes of body queued or being written at once.
    pub queue_bytes: usize,
    /// Longest a write may go without progress before the client is dropped.
    pub write_timeout: Duration,
    /// SSE only: a `: keep-alive` comment after this long without an event (`None`: never).
    pub keepalive: Option<Duration>,
}

impl Default for StreamOpts {
    fn default() -> Self {
        StreamOpts {
            queue_bytes: 32 * 1024,
            write_timeout: Duration::from_secs(10),
            keepalive: Some(Duration::from_secs(15)),
        }
    }
}

/// The SSE comment written when the stream has been quiet for the keep-alive interval.
pub const KEEPALIVE: &[u8] = b": keep-alive\n\n";

/// The body is closed: the client is gone, was too slow, or the chunk was over the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the streaming response is closed (client gone or too slow)")
    }
}

impl std::error::Error for Closed {}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Vec<u8>>,
    /// Bytes queued plus bytes taken by the writer and not yet written.
    bytes: usize,
    senders: usize,
    /// Why the body was closed, once it is.
    closed: Option<String>,
    /// The connection's task, waiting for body.
    writer: Option<Waker>,
    /// Producers waiting for room or for the close.
    waiting: Vec<Waker>,
}

#[derive(Debug)]
struct Shared {
    st: Mutex<State>,
    budget: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the body (first reason wins) and wakes everyone.
    fn close(&self, why: &str) {
        let (writer, waiting) = {
            let mut st = self.lock();
            if st.closed.is_none() {
                st.closed = Some(why.to_string());
            }
            st.queue.clear();
            (st.writer.take(), std::mem::take(&mut st.waiting))
        };
        writer.into_iter().chain(waiting).for_each(Waker::wake);
    }

    fn push(st: &mut State, bytes: Vec<u8>) -> Option<Waker> {
        st.bytes += bytes.len();
        st.queue.push_back(bytes);
        st.writer.take()
    }
}

fn register(list: &mut Vec<Waker>, w: &Waker) {
    if !list.iter().any(|x| x.will_wake(w)) {
        list.push(w.clone());
    }
}

/// The producer's end of a streaming body (cheap to clone; the body ends when every clone
/// is dropped).
#[derive(Debug)]
pub struct BodyTx(Arc<Shared>);

impl Clone for BodyTx {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        BodyTx(self.0.clone())
    }
}

impl Drop for BodyTx {
    fn drop(&mut self) {
        let w = {
            let mut st = self.0.lock();
            st.senders -= 1;
            if st.senders == 0 {
                st.writer.take()
            } else {
                None
            }
        };
        if let Some(w) = w {
            w.wake();
        }
    }
}

impl BodyTx {
    /// Queues `bytes` without waiting. When they do not fit in the budget the client is too
    /// slow: the body is closed (the connection dropped) and `Err(Closed)` returned. Empty
    /// input is a no-op.
    pub fn send(&self, bytes: impl Into<Vec<u8>>) -> Result<(), Closed> {
        let bytes = bytes.into();
        let w = {
            let mut st = self.0.lock();
            if st.closed.is_some() {
                return Err(Closed);
            }
            if bytes.is_empty() {
                return Ok(());
            }
            if st.bytes + bytes.len() > self.0.budget {
                let why = format!(
                    "client too slow: {} bytes would be over the {}-byte queue",
                    st.bytes + bytes.len(),
                    self.0.budget
                );
                drop(st);
                self.0.close(&why);
                return Err(Closed);
            }
            Shared::push(&mut st, bytes)
        };
        if let Some(w) = w {
            w.wake();
        }
        Ok(())
    }

    /// Queues `bytes`, waiting for room in the budget; ends with `Err(Closed)` when the
    /// client is gone (a client that stops reading is dropped by the write timeout). A chunk
    /// larger than the whole budget closes the body.
    pub async fn send_wait(&self, bytes: impl Into<Vec<u8>>) -> Result<(), Closed> {
        let mut bytes = Some(bytes.into());
        if bytes.as_ref().is_some_and(|b| b.len() > self.0.budget) {
            self.0.close("a chunk larger than the streaming budget");
            return Err(Closed);
        }
        futures_lite::future::poll_fn(|cx| {
            let w = {
                let mut st = self.0.lock();
                if st.closed.is_some() {
                    return Poll::Ready(Err(Closed));
                }
                let len = bytes.as_ref().map_or(0, Vec::len);
                if len == 0 {
                    return Poll::Ready(Ok(()));
                }
                if st.bytes + len > self.0.budget {
                    register(&mut st.waiting, cx.waker());
                    return Poll::Pending;
                }
                Shared::push(&mut st, bytes.take().unwrap_or_default())
            };
            if let Some(w) = w {
                w.wake();
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// True once the body is closed.
    pub fn is_closed(&self) -> bool {
        self.0.lock().closed.is_some()
    }

    /// Resolves when the body is closed (the client went away or was dropped).
    pub fn closed(&self) -> impl Future<Output = ()> + '_ {
        futures_lite::future::poll_fn(|cx| {
            let mut st = self.0.lock();
            if st.closed.is_some() {
                Poll::Ready(())
            } else {
                register(&mut st.waiting, cx.waker());
                Poll::Pending
            }
        })
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event<'a> {
    /// `event:` (the type; `None` is the default `message`).
    pub event: Option<&'a str>,
    /// `id:` (the last-event ID a reconnecting client sends back).
    pub id: Option<&'a str>,
    /// `data:`, one line per line of the text.
    pub data: &'a str,
}

impl<'a> Event<'a> {
    /// A `message` event carrying `data`.
    pub fn data(data: &'a str) -> Event<'a> {
        Event {
            data,
            ..Event::default()
        }
    }

    /// An event of type `event` carrying `data`.
    pub fn named(event: &'a str, data: &'a str) -> Event<'a> {
        Event {
            event: Some(event),
            data,
            ..Event::default()
        }
    }

    /// With an `id:` line.
    pub fn id(mut self, id: &'a str) -> Event<'a> {
        self.id = Some(id);
        self
    }

    /// The event on the wire: `event:`, `id:` and `data:` lines and a blank line. Line breaks
    /// in the event type and ID are dropped (they would end the field); the data is split at
    /// CRLF, CR and LF into `data:` lines, which the client joins back with LF.
    pub fn encode(&self) -> Vec<u8> {
        let one_line = |s: &str| s.replace(['\r', '\n'], "");
        let mut out = String::new();
        if let Some(e) = self.event {
            out += &format!("event: {}\n", one_line(e));
        }
        if let Some(id) = self.id {
            out += &format!("id: {}\n", one_line(id).replace('\0', ""));
        }
        for line in self.data.replace("\r\n", "\n").split(['\r', '\n']) {
            out += "data: ";
            out += line;
            out += "\n";
        }
        out += "\n";
        out.into_bytes()
    }
}

/// The producer's end of an SSE body.
#[derive(Debug, Clone)]
pub struct SseTx(BodyTx);

impl SseTx {
    /// Queues `ev` without waiting (see [`BodyTx::send`]).
    pub fn send(&self, ev: &Event<'_>) -> Result<(), Closed> {
        self.0.send(ev.encode())
    }

    /// Queues `ev`, waiting for room (see [`BodyTx::send_wait`]).
    pub async fn send_wait(&self, ev: &Event<'_>) -> Result<(), Closed> {
        self.0.send_wait(ev.encode()).await
    }

    /// A comment line (`: text`), which clients ignore.
    pub fn comment(&self, text: &str) -> Result<(), Closed> {
        self.0
            .send(format!(": {}\n\n", text.replace(['\r', '\n'], " ")))
    }

    /// The underlying body sender.
    pub fn body(&self) -> &BodyTx {
        &self.0
    }
}

impl From<BodyTx> for SseTx {
    fn from(b: BodyTx) -> SseTx {
        SseTx(b)
    }
}

/// The connection's end of a streaming body.
#[derive(Debug)]
pub struct BodyRx {
    shared: Arc<Shared>,
    write_timeout: Duration,
    keepalive: Option<(Duration, &'static [u8])>,
}

impl Drop for BodyRx {
    fn drop(&mut self) {
        self.shared.close("the connection ended");
    }
}

/// A new streaming body: the producer's and the connection's ends. `keepalive` is the
/// filler written after a quiet interval (SSE's comment), if any.
pub fn channel(opts: &StreamOpts, keepalive: Option<&'static [u8]>) -> (BodyTx, BodyRx) {
    let shared = Arc::new(Shared {
        st: Mutex::new(State {
            senders: 1,
            ..State::default()
        }),
        budget: opts.queue_bytes.max(1),
    });
    let rx = BodyRx {
        shared: shared.clone(),
        write_timeout: opts.write_timeout,
        keepalive: keepalive.and_then(|k| Some((opts.keepalive?, k))),
    };
    (BodyTx(shared), rx)
}

impl BodyRx {
    /// Closes the body without writing it (a HEAD request, a connection closing).
    pub fn close(self, why: &str) {
        self.shared.close(why);
    }

    /// Moves everything queued into `out` as one piece (framed as one HTTP chunk when
    /// `chunked`) and returns its length; `Ready(None)` once every sender is gone and nothing
    /// is left, or the body is closed.
    fn poll_take(&self, cx: &Context<'_>, out: &mut Vec<u8>, chunked: bool) -> Poll<Option<usize>> {
        let mut st = self.shared.lock();
        if st.queue.is_empty() {
            if st.senders == 0 || st.closed.is_some() {
                return Poll::Ready(None);
            }
            st.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let len: usize = st.queue.iter().map(Vec::len).sum();
        if chunked {
            out.extend_from_slice(format!("{len:x}\r\n").as_bytes());
        }
        for piece in st.queue.drain(..) {
            out.extend_from_slice(&piece);
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        Poll::Ready(Some(len))
    }

    /// Gives `n` bytes of budget back (written) and wakes producers waiting for room.
    fn release(&self, n: usize) {
        let waiting = {
            let mut st = self.shared.lock();
            st.bytes = st.bytes.saturating_sub(n);
            std::mem::take(&mut st.waiting)
        };
        waiting.into_iter().for_each(Waker::wake);
    }

    /// Writes the body to `stream` as it is produced, until every sender is gone (then the
    /// last chunk) or the client is gone or too slow (`Err` says which; the body is closed
    /// either way). While it writes it reads the connection: end-of-stream or an error means
    /// the client left; other bytes (a pipelined next request) go to `pipelined`, up to
    /// `max_pipelined` bytes (then reading pauses).
    pub async fn write_to<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        stream: &mut S,
        chunked: bool,
        pipelined: &mut Vec<u8>,
        max_pipelined: usize,
    ) -> Result<(), String> {
        let mut out: Vec<u8> = Vec::new();
        let mut off = 0usize;
        let mut payload = 0usize; // body bytes (budget) in `out`
        let mut flush = false;
        let mut done = false;
        let mut stall: Option<Timer> = None;
        let mut ka = self.keepalive.map(|(d, _)| Timer::after(d));
        let mut tmp = [0u8; 512];
        let r = futures_lite::future::poll_fn(|cx| {
            loop {
                // Closed by a producer's overflowing send: drop the client now, even with a
                // write pending.
                if let Some(why) = self.shared.lock().closed.clone() {
                    return Poll::Ready(Err(why));
                }
                // The client: gone, or a pipelined request.
                if pipelined.len() < max_pipelined {
                    let room = (max_pipelined - pipelined.len()).min(tmp.len());
                    match Pin::new(&mut *stream).poll_read(cx, &mut tmp[..room]) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                            return Poll::Ready(Err("the client closed the connection".into()));
                        }
                        Poll::Ready(Ok(n)) => {
                            pipelined.extend_from_slice(&tmp[..n]);
                            continue;
                        }
                        Poll::Pending => {}
                    }
                }
                // What is taken, out to the client.
                if off < out.len() || flush {
                    let step = if off < out.len() {
                        match Pin::new(&mut *stream).poll_write(cx, &out[off..]) {
                            Poll::Ready(Ok(0)) => Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                            Poll::Ready(Ok(n)) => {
                                off += n;
                                flush = off == out.len();
                                Poll::Ready(Ok(()))
                            }
                            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                            Poll::Pending => Poll::Pending,
                        }
                    } else {
                        Pin::new(&mut *stream)
                            .poll_flush(cx)
                            .map_ok(|()| flush = false)
                    };
                    match step {
                        Poll::Ready(Ok(())) => {
                            stall = None;
                            if off == out.len() && !flush {
                                out.clear();
                                off = 0;
                                self.release(std::mem::take(&mut payload));
                            }
                            continue;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(format!("write: {e}"))),
                        Poll::Pending => {
                            let t = stall.get_or_insert_with(|| Timer::after(self.write_timeout));
                            if Pin::new(t).poll(cx).is_ready() {
                                return Poll::Ready(Err(format!(
                                    "client stopped reading ({} ms without progress)",
                                    self.write_timeout.as_millis()
                                )));
                            }
                            return Poll::Pending;
                        }
                    }
                }
                if done {
                    return Poll::Ready(Ok(()));
                }
                // More body, or its end.
                match self.poll_take(cx, &mut out, chunked) {
                    Poll::Ready(Some(len)) => {
                        payload = len;
                        if let (Some(t), Some((d, _))) = (ka.as_mut(), self.keepalive) {
                            t.set_after(d);
                        }
                        continue;
                    }
                    Poll::Ready(None) => {
                        if chunked {
                            out.extend_from_slice(b"0\r\n\r\n");
                        }
                        flush = true;
                        done = true;
                        continue;
                    }
                    Poll::Pending => {}
                }
                // A quiet stream gets its keep-alive.
                if let (Some(t), Some((d, bytes))) = (ka.as_mut(), self.keepalive)
                    && Pin::new(&mut *t).poll(cx).is_ready()
                {
                    frame(&mut out, bytes, chunked);
                    t.set_after(d);
                    continue;
                }
                return Poll::Pending;
            }
        })
        .await;
        if let Err(why) = &r {
            self.shared.close(why);
        }
        r
    }
}

fn frame(out: &mut Vec<u8>, bytes: &[u8], chunked: bool) {
    if chunked {
        out.extend_from_slice(format!("{:x}\r\n", bytes.len()).as_bytes());
    }
    out.extend_from_slice(bytes);
    if chunked {
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    #[test]
    fn events_encode_as_sse_lines() {
        let e = Event::named("msg", "one\r\ntwo\nthree").id("7\n");
        assert_eq!(
            String::from_utf8(e.encode()).unwrap(),
            "event: msg\nid: 7\ndata: one\ndata: two\ndata: three\n\n"
        );
        assert_eq!(Event::data("").encode(), b"data: \n\n");
    }

    #[test]
    fn send_closes_a_full_queue_and_send_wait_waits() {
        let opts = StreamOpts {
            queue_bytes: 10,
            ..StreamOpts::default()
        };
        let (tx, rx) = channel(&opts, None);
        tx.send(b"12345".to_vec()).unwrap();
        tx.send(Vec::new()).unwrap();
        assert!(!tx.is_closed());
        // 5 + 6 > 10: the client is too slow, the body closes.
        assert_eq!(tx.send(b"123456".to_vec()), Err(Closed));
        assert!(tx.is_closed());
        block_on(tx.closed());
        drop(rx);

        let (tx, rx) = channel(&opts, None);
        assert_eq!(block_on(tx.send_wait(vec![0u8; 11])), Err(Closed));
        drop((tx, rx));

        // send_wait waits until the writer releases budget.
        let (tx, rx) = channel(&opts, None);
        tx.send(vec![1u8; 8]).unwrap();
        let mut out = Vec::new();
        let cx = &mut Context::from_waker(Waker::noop());
        assert!(rx.poll_take(cx, &mut out, true).is_ready());
        assert_eq!(out, b"8\r\n\x01\x01\x01\x01\x01\x01\x01\x01\r\n");
        let mut wait = Box::pin(tx.send_wait(vec![2u8; 4]));
        assert!(wait.as_mut().poll(cx).is_pending());
        rx.release(8);
        assert_eq!(wait.as_mut().poll(cx), Poll::Ready(Ok(())));
    }
}
