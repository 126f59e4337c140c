//! The async driver: a [`Session`] runs a [`Core`] over a codec with two tasks (one reading
//! frames, one writing them) spawned on the executor the caller passes in — there is no
//! global spawn. [`Stream`]s implement `AsyncRead + AsyncWrite`.
//!
//! The reader task never waits for an application: received data goes into the stream's
//! buffer, which flow control bounds by the window, so a stream nobody reads cannot stall the
//! others. Writers queue at most one frame per `poll_write` within their credit, and the queue
//! of the writer task is bounded (`Config::max_queued_bytes`), so writers share the connection
//! in arrival order.
//!
//! The reader does wait when a frame does not fit the session's memory budget
//! ([`Config::max_session_bytes`]): for at most [`ROOM_WAIT`], until the application has read
//! enough; then the core refuses or resets (see `core`). A burst of honest streams is slowed
//! down this way rather than reset; an application that reads nothing is waited for once.
//!
//! The reader handles at most [`READ_TURN_FRAMES`] frames or [`READ_TURN_BYTES`] of payload
//! per turn, then yields, so sessions sharing an executor thread are served round robin. It
//! also paces itself to at most [`MAX_FRAMES_PER_SEC`] frames a second (a token bucket of
//! [`FRAME_BURST`]): every frame costs a header open whatever its size, so a peer sending tiny
//! frames is held to that rate by TCP backpressure instead of taking the CPU from its
//! neighbours; bulk data in large frames never comes near it (1 GiB/s of 16 KiB frames is
//! 65,536 frames a second).
//!
//! Closing: `Stream::poll_close` half-closes (FIN); dropping a stream that was not read to the
//! end resets it (RST), like a TCP socket closed with unread data. `Session::close` sends a
//! go-away, flushes and shuts the connection down; streams then fail.
//!
//! Once the session has failed (for any reason: a protocol error, a peer that does not read
//! its replies, `close`), the reader stops at once, and the writer has [`LINGER`] to deliver
//! what is still queued (the go-away) and close its half; a peer that does not take it by then
//! is dropped with everything queued for it, so a peer that stopped reading cannot keep a
//! connection and its buffers alive.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How long the writer of a failed session may still take to deliver what is queued.
pub const LINGER: Duration = Duration::from_secs(2);

/// How long the reader waits for the application to free memory when a frame does not fit
/// the session's budget, before the core refuses the stream or resets the largest holder.
pub const ROOM_WAIT: Duration = Duration::from_secs(1);

/// Frames the reader task handles in one turn before it yields to the executor.
pub const READ_TURN_FRAMES: usize = 64;

/// Payload bytes the reader task handles in one turn before it yields to the executor.
pub const READ_TURN_BYTES: usize = 256 * 1024;

/// Frames a session's reader handles per second at most (averaged over [`FRAME_BURST`]).
pub const MAX_FRAMES_PER_SEC: f64 = 65_536.0;

/// Frames a session's reader may handle at once after a quiet spell.
pub const FRAME_BURST: f64 = 8_192.0;

/// The reader's frame-rate token bucket (the driver's clock; the core never sees it).
struct FramePace {
    tokens: f64,
    last: Instant,
}

impl FramePace {
    fn new() -> FramePace {
        FramePace {
            tokens: FRAME_BURST,
            last: Instant::now(),
        }
    }

    /// Charges `frames`; when the bucket is in debt, waits until it is paid, otherwise yields.
    async fn charge(&mut self, frames: usize) {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * MAX_FRAMES_PER_SEC;
        self.tokens = (self.tokens + refill).min(FRAME_BURST) - frames as f64;
        self.last = now;
        if self.tokens < 0.0 {
            let debt = Duration::from_secs_f64(-self.tokens / MAX_FRAMES_PER_SEC);
            async_io::Timer::after(debt).await;
        } else {
            futures_lite::future::yield_now().await;
        }
    }
}

use async_executor::Executor;
use futures_lite::future::poll_fn;
use futures_lite::io::{AsyncRead, AsyncWrite};

use super::codec::{FrameRead, FrameWrite};
use super::core::{ChunkResult, Config, Core, MuxError, Payload, ReadResult, Side, WriteResult};
use crate::spawn::Spawn;
use crate::wire::mux::Repr;

#[derive(Debug)]
struct Shared {
    core: Mutex<Core>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One multiplexed session. Cloning gives another handle to the same session.
#[derive(Debug, Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

/// One stream of a session.
#[derive(Debug)]
pub struct Stream {
    id: u32,
    shared: Arc<Shared>,
    closed: bool,
}

fn to_io(e: MuxError) -> io::Error {
    let kind = match e {
        MuxError::Reset => io::ErrorKind::ConnectionReset,
        MuxError::Closed(_) | MuxError::GoAway(_) => io::ErrorKind::ConnectionAborted,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

impl Session {
    /// Starts a session over `reader`/`writer` with its two tasks on `ex`.
    pub fn new<R: FrameRead, W: FrameWrite>(
        ex: &Executor<'static>,
        reader: R,
        writer: W,
        side: Side,
        config: Config,
    ) -> Session {
        let shared = Arc::new(Shared {
            core: Mutex::new(Core::new(side, config)),
        });
        ex.spawn_boxed(read_task(reader, shared.clone())).detach();
        ex.spawn_boxed(write_task(writer, shared.clone())).detach();
        Session { shared }
    }

    /// Opens a stream.
    pub async fn open(&self) -> Result<Stream, MuxError> {
        self.open_with(&[]).await
    }

    /// Opens a stream whose SYN carries `control` (sealed codec only; other codecs drop it).
    pub async fn open_with(&self, control: &[u8]) -> Result<Stream, MuxError> {
        let id = self.shared.lock().open(control)?;
        Ok(Stream {
            id,
            shared: self.shared.clone(),
            closed: false,
        })
    }

    /// The next stream the peer opens; an error once the session has ended.
    pub async fn accept(&self) -> Result<Stream, MuxError> {
        let id = poll_fn(|cx| match self.shared.lock().accept(cx.waker()) {
            Ok(Some(id)) => Poll::Ready(Ok(id)),
            Ok(None) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        })
        .await?;
        Ok(Stream {
            id,
            shared: self.shared.clone(),
            closed: false,
        })
    }

    /// Sends a ping and waits for the answer; returns the round-trip time.
    pub async fn ping(&self) -> Result<Duration, MuxError> {
        let t0 = Instant::now();
        let opaque = self.shared.lock().ping()?;
        poll_fn(
            |cx| match self.shared.lock().take_pong(opaque, cx.waker()) {
                Ok(true) => Poll::Ready(Ok(())),
                Ok(false) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        )
        .await?;
        Ok(t0.elapsed())
    }

    /// Waits until every frame queued so far has been written to the connection (or the
    /// session has failed). Call before exiting a process so nothing queued is lost.
    pub async fn flush(&self) {
        poll_fn(|cx| {
            if self.shared.lock().poll_flushed(cx.waker()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Sends a go-away, flushes, and shuts the connection down.
    pub fn close(&self) {
        let mut core = self.shared.lock();
        core.go_away();
        core.fail(MuxError::Closed("closed by this side".into()));
    }

    /// Ends the session gracefully: sends a go-away and everything queued, closes our write
    /// half, then waits (at most `timeout`) for the peer to close its side. Unlike dropping
    /// the connection this never makes the kernel reset it (which would discard data the
    /// peer has not read yet). The session has ended when this returns.
    pub async fn shutdown(&self, timeout: std::time::Duration) {
        self.shared.lock().begin_shutdown();
        let ended = poll_fn(|cx| {
            if self.shared.lock().poll_ended(cx.waker()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        futures_lite::future::or(ended, async {
            async_io::Timer::after(timeout).await;
        })
        .await;
        self.shared
            .lock()
            .fail(MuxError::Closed("closed by this side".into()));
    }

    /// The session's failure, once it has ended.
    pub fn failure(&self) -> Option<MuxError> {
        self.shared.lock().failure().cloned()
    }

    /// True if both handles refer to the same session.
    pub fn same(&self, other: &Session) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Streams currently open.
    pub fn stream_count(&self) -> usize {
        self.shared.lock().stream_count()
    }

    /// Memory the session holds on the peer's account ([`Core::held_bytes`]).
    pub fn held_bytes(&self) -> usize {
        self.shared.lock().held_bytes()
    }
}

/// Resolves once the session has failed (or ended).
async fn ended(shared: &Shared) {
    poll_fn(|cx| {
        if shared.lock().poll_ended(cx.waker()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

async fn read_task<R: FrameRead>(mut reader: R, shared: Arc<Shared>) {
    // What this turn has handled: a socket that always has data would otherwise keep the
    // task (and its executor thread) busy for as long as the peer sends, starving every
    // other session on the thread. After a budget of frames or bytes the task yields, so
    // sessions are served round robin, whatever the size of their frames.
    let (mut turn_frames, mut turn_bytes) = (0usize, 0usize);
    let mut pace = FramePace::new();
    loop {
        if turn_frames >= READ_TURN_FRAMES || turn_bytes >= READ_TURN_BYTES {
            pace.charge(turn_frames).await;
            (turn_frames, turn_bytes) = (0, 0);
        }
        // A failed session stops reading at once (dropping the reader and its buffer), even
        // if the peer sends nothing more.
        let res = futures_lite::future::or(async { Some(reader.read_frame().await) }, async {
            ended(&shared).await;
            None
        })
        .await;
        let Some(res) = res else {
            return;
        };
        let f = match res {
            Ok(Some(f)) => f,
            Ok(None) => {
                shared
                    .lock()
                    .fail(MuxError::Closed("peer closed the connection".into()));
                return;
            }
            Err(e) => {
                log::debug!("mux: {e}");
                shared.lock().fail(e);
                return;
            }
        };
        turn_frames += 1;
        turn_bytes += f.control.len() + f.data.len();
        let mut waited = false;
        let pressure = loop {
            {
                let mut core = shared.lock();
                if core.failure().is_some() {
                    return;
                }
                // Over the memory budget: first give the application a moment to read (the
                // peer waits meanwhile, as with TCP), and only then refuse or reset.
                if waited || !core.needs_room_for(&f.header, f.control, &f.data) {
                    if let Err(e) = core.handle_payload(f.header, f.control, f.data) {
                        log::debug!("mux: {e}");
                        return;
                    }
                    break core.queued_replies() * 2 >= core.config().max_queued_replies;
                }
            }
            // Boxed: rare, and it would otherwise grow every session's reader task.
            Box::pin(wait_for_room(&shared, &f.header, f.control, &f.data)).await;
            waited = true;
        };
        // Replies are piling up: let the writer take them before reading on (a burst of
        // frames already buffered would otherwise be answered all at once), so only a peer
        // that really does not read reaches the limit.
        if pressure {
            pace.charge(turn_frames).await;
            (turn_frames, turn_bytes) = (0, 0);
        }
    }
}

/// Waits (at most [`ROOM_WAIT`]) until the frame fits the session's budget or the session
/// fails; if the application freed too little in time, the core stops waiting for it until
/// it reads again.
async fn wait_for_room(shared: &Shared, h: &Repr, control: &[u8], data: &Payload<'_>) {
    let room = poll_fn(|cx| {
        let mut core = shared.lock();
        if !core.needs_room_for(h, control, data) || core.poll_room(cx.waker()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    });
    let in_time = futures_lite::future::or(
        async {
            room.await;
            true
        },
        async {
            async_io::Timer::after(ROOM_WAIT).await;
            false
        },
    )
    .await;
    if !in_time {
        shared.lock().room_wait_expired();
    }
}

async fn write_task<W: FrameWrite>(mut writer: W, shared: Arc<Shared>) {
    let mut deadline = None;
    loop {
        let next = poll_fn(|cx| {
            let mut core = shared.lock();
            if let Some(f) = core.poll_transmit() {
                let more = !core.is_tx_empty();
                return Poll::Ready(Some((f, more)));
            }
            if core.failure().is_some() || core.is_shutting_down() {
                return Poll::Ready(None);
            }
            core.set_tx_waker(cx.waker());
            Poll::Pending
        })
        .await;
        match next {
            Some((f, more)) => {
                let sent = lingering(&shared, &mut deadline, async {
                    let mut r = writer.write_owned(f).await;
                    if r.is_ok() && !more {
                        r = writer.flush().await;
                        if r.is_ok() {
                            shared.lock().mark_flushed();
                        }
                    }
                    r
                })
                .await;
                match sent {
                    Some(Ok(())) => {}
                    Some(Err(e)) => {
                        shared.lock().fail(MuxError::Closed(e.to_string()));
                        let _ = lingering(&shared, &mut deadline, writer.close()).await;
                        return;
                    }
                    None => {
                        shared.lock().abandon_transmit();
                        return;
                    }
                }
            }
            None => {
                if lingering(&shared, &mut deadline, writer.close())
                    .await
                    .is_none()
                {
                    shared.lock().abandon_transmit();
                }
                return;
            }
        }
    }
}

/// Runs `op`, unless the session has failed and `op` is still not done [`LINGER`] after the
/// writer first saw the failure (`deadline`): then `None` (the peer does not take what we
/// send; give up on it).
async fn lingering<T>(
    shared: &Shared,
    deadline: &mut Option<Instant>,
    op: impl std::future::Future<Output = T>,
) -> Option<T> {
    futures_lite::future::or(async { Some(op.await) }, async move {
        ended(shared).await;
        let at = *deadline.get_or_insert_with(|| Instant::now() + LINGER);
        async_io::Timer::at(at).await;
        None
    })
    .await
}

impl Stream {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The control payload the peer opened this stream with (empty for our own streams).
    pub fn control(&self) -> Vec<u8> {
        self.shared.lock().control(self.id).to_vec()
    }

    /// The application has decided to serve this stream: lifts
    /// [`Config::preauth_rx_limit`] from it.
    pub fn authorise(&self) {
        self.shared.lock().authorise(self.id);
    }

    /// Ready with how many bytes a write would take now (at most one frame, within the
    /// stream's credit and the session's queue bound); pending, with the waker registered,
    /// while it would take none.
    pub fn poll_write_room(&self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        match self.shared.lock().write_room(self.id, cx.waker()) {
            Ok(Some(n)) => Poll::Ready(Ok(n)),
            Ok(None) => Poll::Pending,
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }

    /// Like `AsyncRead::poll_read`, through a shared reference.
    pub fn poll_read_ref(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match self.shared.lock().read(self.id, buf, cx.waker()) {
            Ok(ReadResult::Data(n)) => Poll::Ready(Ok(n)),
            Ok(ReadResult::Eof) => Poll::Ready(Ok(0)),
            Ok(ReadResult::Pending) => Poll::Pending,
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }

    /// Like `AsyncWrite::poll_write`, through a shared reference.
    pub fn poll_write_ref(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.shared.lock().write(self.id, buf, cx.waker()) {
            Ok(WriteResult::Written(n)) => Poll::Ready(Ok(n)),
            Ok(WriteResult::Pending) => Poll::Pending,
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }

    /// [`Stream::poll_write_room`] for a whole payload of `want` bytes
    /// ([`Core::write_room_for`]).
    pub fn poll_write_room_for(
        &self,
        cx: &mut Context<'_>,
        want: usize,
    ) -> Poll<io::Result<usize>> {
        match self.shared.lock().write_room_for(self.id, want, cx.waker()) {
            Ok(Some(n)) => Poll::Ready(Ok(n)),
            Ok(None) => Poll::Pending,
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }

    /// Bytes of the next received buffer [`Stream::poll_read_chunk`] would give whole.
    pub fn next_chunk_len(&self) -> usize {
        self.shared.lock().next_chunk_len(self.id)
    }

    /// Takes up to `max` received bytes as an owned buffer ([`Core::read_chunk`]: a payload
    /// that arrived owned comes out as the same buffer); `Ok(None)` at the end of the stream.
    pub fn poll_read_chunk(
        &self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<io::Result<Option<Vec<u8>>>> {
        match self.shared.lock().read_chunk(self.id, max, cx.waker()) {
            Ok(ChunkResult::Data(v)) => Poll::Ready(Ok(Some(v))),
            Ok(ChunkResult::Eof) => Poll::Ready(Ok(None)),
            Ok(ChunkResult::Pending) => Poll::Pending,
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }

    /// Queues the owned buffer in `chunk` as data without copying it ([`Core::write_chunk`]):
    /// ready once all of it is queued (`chunk` is then `None`); pending, with what is left
    /// still in `chunk`, while there is no room.
    pub fn poll_write_chunk(
        &self,
        cx: &mut Context<'_>,
        chunk: &mut Option<Vec<u8>>,
    ) -> Poll<io::Result<()>> {
        let mut core = self.shared.lock();
        loop {
            let before = chunk.as_ref().map_or(0, Vec::len);
            if before > 0 {
                core.write_chunk(self.id, chunk, cx.waker())
                    .map_err(to_io)?;
            }
            let after = chunk.as_ref().map_or(0, Vec::len);
            if after == 0 {
                *chunk = None;
                return Poll::Ready(Ok(()));
            }
            if after == before {
                // No room: the waker is registered.
                return Poll::Pending;
            }
        }
    }

    /// Half-closes the stream (FIN), through a shared reference; idempotent.
    pub fn close_ref(&self) {
        self.shared.lock().close(self.id);
    }

    /// Resets the stream (RST) instead of closing it gracefully.
    pub fn reset(mut self) {
        self.closed = true;
        self.shared.lock().reset(self.id);
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_ref(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_ref(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Frames are handed to the writer task as they are written; it flushes whenever its
        // queue runs empty.
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.closed {
            self.closed = true;
            self.shared.lock().close(self.id);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.shared.lock().detach(self.id);
    }
}
