//! How mux frames travel on a byte stream. Three codecs, chosen when a session is made:
//!
//! - **Plain** — raw yamux v0 (`header ‖ data`), exactly what hashicorp/yamux speaks. Used
//!   against independent implementations in tests; never on the network unencrypted.
//! - **Channel** — inside an established Noise channel (end to end, TCP-direct): each channel
//!   frame carries one or more whole mux frames (`header ‖ data`, concatenated), so small
//!   control frames share one AEAD pass with the data around them. One AEAD per channel frame.
//! - **Sealed** — the client ↔ relay session layout of DESIGN.md §3.4:
//!   `u16 sealed_len ‖ AEAD(header ‖ control) ‖ data`. Only the header and control payload are
//!   sealed with the session key; the data bytes are already end-to-end ciphertext and pass
//!   unchanged (encrypt-once). See `docs/protocol.md` §4.
//!
//! Readers refuse a data length above the configured maximum before allocating, and any
//! authentication failure ends the session.
//!
//! Buffers return to their small size when the connection goes quiet, so a session that once
//! carried a big frame does not keep paying for it: a reader's buffer shrinks back to
//! [`RX_INITIAL`] once it has been empty at a frame boundary, with nothing more to read, and
//! not needed bigger for [`RX_IDLE`]; a writer's batch buffer shrinks back to [`WRITE_KEEP`]
//! at a light flush (no more than that) when it has had no heavy one for [`RX_IDLE`] (on an
//! idle session: the next keep-alive). Bulk transfers keep their buffers and never pay for
//! regrowing them — a light flush between heavy ones (a lone window update, the odd byte
//! left over from a channel frame) does not shrink anything.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Instant;

use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use self::batch::Batch;
use super::core::{MuxError, OutFrame, Payload};
use crate::crypto::channel::{ChannelReader, ChannelWriter, LEN_PREFIX, MAX_PAYLOAD_LEN};
use crate::crypto::noise::{CipherState, TAG_LEN};
use crate::wire::mux::{HEADER_LEN, Repr, Type};
use crate::wire::session::{
    Frame as SealedFrame, MIN_SEALED_LEN, PREFIX_LEN, Repr as SealedRepr, sealed_frame_len,
    split_opened,
};

pub mod batch;

/// One received frame, borrowed from the reader's buffer (its data payload may be an owned
/// buffer instead, see [`Payload`]).
#[derive(Debug)]
pub struct InFrame<'a> {
    /// The header.
    pub header: Repr,
    /// Control payload (sealed codec only; empty otherwise).
    pub control: &'a [u8],
    /// Data payload (data frames only).
    pub data: Payload<'a>,
}

/// The receiving side of a codec.
pub trait FrameRead: Send + 'static {
    /// The next frame; `Ok(None)` when the stream ended cleanly between frames.
    fn read_frame(&mut self) -> impl Future<Output = Result<Option<InFrame<'_>>, MuxError>> + Send;
}

/// The sending side of a codec. `write_frame` may buffer; `flush` pushes everything out.
pub trait FrameWrite: Send + 'static {
    /// Queues one frame.
    fn write_frame(&mut self, f: &OutFrame) -> impl Future<Output = io::Result<()>> + Send;
    /// Queues one frame, taking its buffers: a writer that batches with vectored writes keeps
    /// a large data payload as it is instead of copying it. By default, [`write_frame`].
    ///
    /// [`write_frame`]: FrameWrite::write_frame
    fn write_owned(&mut self, f: OutFrame) -> impl Future<Output = io::Result<()>> + Send {
        async move { self.write_frame(&f).await }
    }
    /// Writes everything queued.
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Flushes and closes the write side.
    fn close(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

/// Bytes a writer collects before writing them out.
const WRITE_BATCH: usize = 64 * 1024;
/// A writer's batch buffer is shrunk back to this after a flush of no more than this.
pub const WRITE_KEEP: usize = 4 * 1024;

/// After a flush of `flushed` bytes: gives a batch buffer grown by a burst back to the
/// allocator once traffic has been light for [`RX_IDLE`] (see the module docs). `heavy_at`
/// is when the last flush of more than [`WRITE_KEEP`] was.
fn settle_batch(buf: &mut Vec<u8>, flushed: usize, heavy_at: &mut Option<Instant>) {
    debug_assert!(buf.is_empty());
    if flushed > WRITE_KEEP {
        *heavy_at = Some(Instant::now());
    } else if buf.capacity() > WRITE_KEEP && heavy_at.is_none_or(|t| t.elapsed() >= RX_IDLE) {
        buf.shrink_to(WRITE_KEEP);
    }
}

/// [`settle_batch`] for a [`Batch`].
fn settle(batch: &mut Batch, flushed: usize, heavy_at: &mut Option<Instant>) {
    debug_assert!(batch.is_empty());
    if flushed > WRITE_KEEP {
        *heavy_at = Some(Instant::now());
    } else if batch.capacity() > WRITE_KEEP && heavy_at.is_none_or(|t| t.elapsed() >= RX_IDLE) {
        batch.shrink_to(WRITE_KEEP);
    }
}

fn io_closed(e: io::Error) -> MuxError {
    MuxError::Closed(e.to_string())
}

fn data_len(h: &Repr, max: usize) -> Result<usize, MuxError> {
    if h.frame_type != Type::Data {
        return Ok(0);
    }
    let n = h.length as usize;
    if n > max {
        return Err(MuxError::Protocol(format!(
            "data frame of {n} bytes, more than the {max} allowed"
        )));
    }
    Ok(n)
}

/// A receive buffer: reads as much as the socket has (up to its size) and hands out frames
/// parsed in place, so a frame costs no extra copy and usually no extra read call.
#[derive(Debug)]
struct RxBuf {
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Bytes of the frame handed out last, consumed at the next call.
    pending: usize,
    /// More than [`RX_INITIAL`] was needed since `idle_timer` was armed.
    wide: bool,
    /// Armed when the grown buffer is found empty and idle; when it fires and the buffer was
    /// not needed bigger meanwhile, the buffer shrinks.
    idle_timer: Option<async_io::Timer>,
}

/// How long a grown receive buffer must go unneeded before it shrinks back.
pub const RX_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Bytes a receive buffer starts with. It grows (doubling) only when a frame needs more, so
/// an idle session costs 4 KiB here while a busy one reads up to a few frames per call; it
/// shrinks back when the connection goes quiet (see the module docs).
pub const RX_INITIAL: usize = 4 * 1024;
/// Growth beyond one frame stops here (a single larger frame still gets room).
const RX_GROW_CAP: usize = 256 * 1024;

impl RxBuf {
    fn new() -> Self {
        RxBuf {
            buf: Vec::new(),
            start: 0,
            end: 0,
            pending: 0,
            wide: false,
            idle_timer: None,
        }
    }

    /// Nothing is buffered and the connection has nothing more right now: gives a grown
    /// buffer back once it has not been needed for [`RX_IDLE`].
    fn idle(&mut self, cx: &mut std::task::Context<'_>) {
        debug_assert_eq!(self.start, self.end);
        if self.buf.len() <= RX_INITIAL {
            return;
        }
        let wide = &mut self.wide;
        let timer = self.idle_timer.get_or_insert_with(|| {
            *wide = false;
            async_io::Timer::after(RX_IDLE)
        });
        if Pin::new(&mut *timer).poll(cx).is_pending() {
            return;
        }
        if std::mem::take(&mut self.wide) {
            // Used since: look again later.
            timer.set_after(RX_IDLE);
            let _ = Pin::new(timer).poll(cx);
            return;
        }
        self.idle_timer = None;
        self.buf.truncate(RX_INITIAL);
        self.buf.shrink_to_fit();
    }

    /// Bytes the buffer holds allocated.
    fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Drops the frame handed out last.
    fn consume_pending(&mut self) {
        self.start += self.pending;
        self.pending = 0;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Makes at least `n` unconsumed bytes available. `Ok(false)` if the stream ended cleanly
    /// with nothing buffered (only allowed at a frame boundary: `at_boundary`).
    async fn ensure<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        n: usize,
        at_boundary: bool,
    ) -> Result<bool, MuxError> {
        if self.end - self.start >= n {
            return Ok(true);
        }
        if n > RX_INITIAL {
            self.wide = true;
        }
        if self.buf.len() < n.max(RX_INITIAL) {
            // Grows rarely: first use, or a frame bigger than the buffer. Room for two such
            // frames (up to the cap) lets one read call bring in the next frame too.
            let want = n.saturating_mul(2).min(RX_GROW_CAP).max(n).max(RX_INITIAL);
            self.buf.resize(want, 0);
        }
        if self.start + n > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end - self.start < n {
            let got = std::future::poll_fn(|cx| {
                let p = Pin::new(&mut *r).poll_read(cx, &mut self.buf[self.end..]);
                if p.is_pending() && at_boundary && self.start == self.end {
                    // Idle at a frame boundary (start and end are both 0 here).
                    self.idle(cx);
                }
                p
            })
            .await;
            match got {
                Ok(0) if at_boundary && self.end == self.start => return Ok(false),
                Ok(0) => return Err(MuxError::Closed("stream ended inside a frame".into())),
                Ok(k) => {
                    self.end += k;
                    if self.end > RX_INITIAL {
                        self.wide = true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_closed(e)),
            }
        }
        Ok(true)
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }
}

/// Plain yamux reader.
#[derive(Debug)]
pub struct PlainReader<R> {
    inner: R,
    rx: RxBuf,
    max_data: usize,
}

impl<R> PlainReader<R> {
    /// Reads frames from `inner`, refusing data frames over `max_data` bytes (use the
    /// session's window: a peer may send up to its credit in one frame).
    pub fn new(inner: R, max_data: usize) -> Self {
        PlainReader {
            inner,
            rx: RxBuf::new(),
            max_data,
        }
    }
}

impl<R> PlainReader<R> {
    /// Bytes its receive buffer holds allocated.
    pub fn buffer_capacity(&self) -> usize {
        self.rx.capacity()
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> FrameRead for PlainReader<R> {
    async fn read_frame(&mut self) -> Result<Option<InFrame<'_>>, MuxError> {
        self.rx.consume_pending();
        if !self.rx.ensure(&mut self.inner, HEADER_LEN, true).await? {
            return Ok(None);
        }
        let header =
            Repr::parse_header(self.rx.bytes()).map_err(|e| MuxError::Protocol(e.to_string()))?;
        let n = data_len(&header, self.max_data)?;
        self.rx
            .ensure(&mut self.inner, HEADER_LEN + n, false)
            .await?;
        self.rx.pending = HEADER_LEN + n;
        Ok(Some(InFrame {
            header,
            control: &[],
            data: Payload::Borrowed(&self.rx.bytes()[HEADER_LEN..HEADER_LEN + n]),
        }))
    }
}

/// Plain yamux writer.
#[derive(Debug)]
pub struct PlainWriter<W> {
    inner: W,
    buf: Batch,
    /// When the last heavy flush was.
    heavy_at: Option<Instant>,
}

impl<W> PlainWriter<W> {
    /// Writes frames to `inner`.
    pub fn new(inner: W) -> Self {
        PlainWriter {
            inner,
            buf: Batch::default(),
            heavy_at: None,
        }
    }

    /// Bytes its batch buffer holds allocated.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> FrameWrite for PlainWriter<W> {
    async fn write_frame(&mut self, f: &OutFrame) -> io::Result<()> {
        self.buf.push_copy(&f.header.to_bytes());
        self.buf.push_copy(&f.data);
        if self.buf.len() >= WRITE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn write_owned(&mut self, f: OutFrame) -> io::Result<()> {
        self.buf.push_copy(&f.header.to_bytes());
        self.buf.push_owned(f.data);
        if self.buf.len() >= WRITE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        let n = self.buf.len();
        if n > 0 {
            self.buf.write_to(&mut self.inner).await?;
        }
        settle(&mut self.buf, n, &mut self.heavy_at);
        self.inner.flush().await
    }

    async fn close(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.inner.close().await
    }
}

/// The largest data payload one mux frame can carry inside a channel frame.
pub const CHANNEL_MAX_DATA: usize = MAX_PAYLOAD_LEN - HEADER_LEN;

/// Reader for mux frames inside channel frames. The frames are parsed where the channel
/// opened them (its receive buffer): no copy.
#[derive(Debug)]
pub struct ChannelFrameReader<R> {
    inner: ChannelReader<R>,
    /// Next mux frame in the channel's last frame.
    pos: usize,
    /// Length of the channel's last frame (0 before the first).
    len: usize,
    /// When the last channel frame of more than [`RX_INITIAL`] bytes came.
    big_at: Option<Instant>,
}

impl<R> ChannelFrameReader<R> {
    /// Reads mux frames from the channel's frames.
    pub fn new(inner: ChannelReader<R>) -> Self {
        ChannelFrameReader {
            inner,
            pos: 0,
            len: 0,
            big_at: None,
        }
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> FrameRead for ChannelFrameReader<R> {
    async fn read_frame(&mut self) -> Result<Option<InFrame<'_>>, MuxError> {
        if self.pos >= self.len {
            // Only small frames for a while after a big one: give the room back.
            if self.len > RX_INITIAL {
                self.big_at = Some(Instant::now());
            } else if self.inner.buffer_capacity() > RX_INITIAL + 2 * TAG_LEN
                && self.big_at.is_none_or(|t| t.elapsed() >= RX_IDLE)
            {
                self.inner.shrink_buffer(RX_INITIAL);
            }
            match self.inner.recv().await {
                Ok(frame) => {
                    self.len = frame.len();
                    self.pos = 0;
                }
                Err(crate::crypto::channel::ChannelError::Closed) => return Ok(None),
                Err(e) => return Err(MuxError::Closed(e.to_string())),
            }
            if self.len == 0 {
                return Err(MuxError::Protocol("empty channel frame".into()));
            }
        }
        let buf = self.inner.last_frame();
        let (header, start, n) = next_in_channel_frame(buf, self.pos)?;
        self.pos = start + n;
        Ok(Some(InFrame {
            header,
            control: &[],
            data: Payload::Borrowed(&buf[start..start + n]),
        }))
    }
}

/// The mux frame at `pos` of an opened channel frame's plaintext `buf`: its header, where its
/// data starts and how long it is. A mux frame never crosses a channel frame.
pub(crate) fn next_in_channel_frame(
    buf: &[u8],
    pos: usize,
) -> Result<(Repr, usize, usize), MuxError> {
    let rest = &buf[pos..];
    let header = Repr::parse_header(rest).map_err(|e| {
        MuxError::Protocol(format!("channel frame holds a partial mux header: {e}"))
    })?;
    let n = data_len(&header, CHANNEL_MAX_DATA)?;
    if rest.len() < HEADER_LEN + n {
        return Err(MuxError::Protocol(
            "a mux frame crosses a channel frame boundary".into(),
        ));
    }
    Ok((header, pos + HEADER_LEN, n))
}

/// Writer of mux frames into channel frames, packing several per channel frame. The frame is
/// built behind room for its length prefix and sealed in place.
#[derive(Debug)]
pub struct ChannelFrameWriter<W> {
    inner: ChannelWriter<W>,
    /// `LEN_PREFIX` bytes of room, then the packed mux frames.
    buf: Vec<u8>,
    /// When the last heavy flush was.
    heavy_at: Option<Instant>,
}

impl<W> ChannelFrameWriter<W> {
    /// Writes mux frames as channel frames.
    pub fn new(inner: ChannelWriter<W>) -> Self {
        ChannelFrameWriter {
            inner,
            buf: Vec::new(),
            heavy_at: None,
        }
    }
}

fn channel_io(e: crate::crypto::channel::ChannelError) -> io::Error {
    io::Error::other(e.to_string())
}

impl<W: AsyncWrite + Unpin + Send + 'static> FrameWrite for ChannelFrameWriter<W> {
    async fn write_frame(&mut self, f: &OutFrame) -> io::Result<()> {
        let size = HEADER_LEN + f.data.len();
        if size > MAX_PAYLOAD_LEN {
            return Err(io::Error::other(format!(
                "mux frame of {size} bytes does not fit a channel frame"
            )));
        }
        if self.buf.len() + size > LEN_PREFIX + MAX_PAYLOAD_LEN {
            self.flush().await?;
        }
        if self.buf.is_empty() {
            self.buf.extend_from_slice(&[0; LEN_PREFIX]);
        }
        self.buf.extend_from_slice(&f.header.to_bytes());
        self.buf.extend_from_slice(&f.data);
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        let n = self.buf.len();
        if n > LEN_PREFIX {
            self.inner
                .send_in_place(&mut self.buf)
                .await
                .map_err(channel_io)?;
        }
        self.buf.clear();
        settle_batch(&mut self.buf, n, &mut self.heavy_at);
        Ok(())
    }

    async fn close(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.inner.close().await.map_err(channel_io)
    }
}

/// Reader of sealed session frames.
#[derive(Debug)]
pub struct SealedReader<R> {
    inner: R,
    cipher: CipherState,
    rx: RxBuf,
    max_data: usize,
}

impl<R> SealedReader<R> {
    /// Reads sealed frames from `inner`, opening headers with `cipher` (the session's
    /// receive CipherState), refusing data payloads over `max_data`.
    pub fn new(inner: R, cipher: CipherState, max_data: usize) -> Self {
        SealedReader {
            inner,
            cipher,
            rx: RxBuf::new(),
            max_data,
        }
    }
}

impl<R> SealedReader<R> {
    /// Bytes its receive buffer holds allocated.
    pub fn buffer_capacity(&self) -> usize {
        self.rx.capacity()
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> FrameRead for SealedReader<R> {
    async fn read_frame(&mut self) -> Result<Option<InFrame<'_>>, MuxError> {
        self.rx.consume_pending();
        if !self.rx.ensure(&mut self.inner, PREFIX_LEN, true).await? {
            return Ok(None);
        }
        // The `wire::session` view: the prefix says how long the sealed part is; a short one
        // is refused before its body is read.
        let sealed_end = sealed_frame_len(self.rx.bytes()).expect("the prefix is buffered");
        let sealed_len = sealed_end - PREFIX_LEN;
        if sealed_len < MIN_SEALED_LEN {
            return Err(MuxError::Protocol(format!(
                "sealed length {sealed_len} is below {MIN_SEALED_LEN}"
            )));
        }
        self.rx.ensure(&mut self.inner, sealed_end, false).await?;
        let mut frame = SealedFrame::new_checked(self.rx.bytes_mut())
            .map_err(|e| MuxError::Protocol(e.to_string()))?;
        let sealed = frame.sealed_mut();
        let (plain, tag) = sealed.split_at_mut(sealed_len - TAG_LEN);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().expect("16 bytes");
        self.cipher
            .open_in_place(&[], plain, &tag)
            .map_err(|e| MuxError::Protocol(format!("session frame refused: {e}")))?;
        let (header, _) = split_opened(plain).map_err(|e| MuxError::Protocol(e.to_string()))?;
        let body = sealed_end - TAG_LEN;
        let n = data_len(&header, self.max_data)?;
        let total = sealed_end + n;
        self.rx.ensure(&mut self.inner, total, false).await?;
        self.rx.pending = total;
        let b = self.rx.bytes();
        let data = &b[sealed_end..total];
        // A large payload leaves the receive buffer as a buffer of its own: the core keeps it
        // as it is, and a relay forwards that same buffer (see `mux::forward`).
        let data = if n >= RX_OWNED_MIN {
            Payload::Owned(super::pool::copy_of(data))
        } else {
            Payload::Borrowed(data)
        };
        Ok(Some(InFrame {
            header,
            control: &b[PREFIX_LEN + HEADER_LEN..body],
            data,
        }))
    }
}

/// Payloads at least this long leave a sealed reader as owned buffers (what a stream's
/// receive buffer keeps as its own chunk anyway).
pub const RX_OWNED_MIN: usize = 4 * 1024;

/// Writer of sealed session frames.
#[derive(Debug)]
pub struct SealedWriter<W> {
    inner: W,
    cipher: CipherState,
    buf: Batch,
    /// When the last heavy flush was.
    heavy_at: Option<Instant>,
}

impl<W> SealedWriter<W> {
    /// Writes sealed frames to `inner`, sealing headers with `cipher` (the session's send
    /// CipherState).
    pub fn new(inner: W, cipher: CipherState) -> Self {
        SealedWriter {
            inner,
            cipher,
            buf: Batch::default(),
            heavy_at: None,
        }
    }

    /// Bytes its batch buffer holds allocated.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

impl<W> SealedWriter<W> {
    /// Seals `f`'s header and control payload into the batch buffer (its data follows).
    fn seal_header(&mut self, f: &OutFrame) -> io::Result<()> {
        let repr = SealedRepr::new(f.control.len()).map_err(|e| io::Error::other(e.to_string()))?;
        let head = self.buf.head();
        let at = head.len();
        head.resize(at + repr.buffer_len(), 0);
        let mut frame = SealedFrame::new_unchecked(&mut head[at..]);
        repr.emit(&mut frame)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let sealed = frame.sealed_mut();
        let (plain, tag_room) = sealed.split_at_mut(sealed.len() - TAG_LEN);
        f.header
            .emit_header(&mut plain[..HEADER_LEN])
            .map_err(|e| io::Error::other(e.to_string()))?;
        plain[HEADER_LEN..].copy_from_slice(&f.control);
        let tag = self
            .cipher
            .seal_in_place(&[], plain)
            .map_err(|e| io::Error::other(e.to_string()))?;
        tag_room.copy_from_slice(&tag);
        self.buf.added(repr.buffer_len());
        Ok(())
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> FrameWrite for SealedWriter<W> {
    async fn write_frame(&mut self, f: &OutFrame) -> io::Result<()> {
        self.seal_header(f)?;
        self.buf.push_copy(&f.data);
        if self.buf.len() >= WRITE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn write_owned(&mut self, f: OutFrame) -> io::Result<()> {
        self.seal_header(&f)?;
        self.buf.push_owned(f.data);
        if self.buf.len() >= WRITE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        let n = self.buf.len();
        if n > 0 {
            self.buf.write_to(&mut self.inner).await?;
        }
        settle(&mut self.buf, n, &mut self.heavy_at);
        self.inner.flush().await
    }

    async fn close(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests;
