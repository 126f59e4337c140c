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

use std::future::Future;
use std::io;

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::core::{MuxError, OutFrame};
use crate::crypto::channel::{ChannelReader, ChannelWriter, MAX_PAYLOAD_LEN};
use crate::crypto::noise::{CipherState, TAG_LEN};
use crate::wire::mux::{HEADER_LEN, Repr, Type};
use crate::wire::session::{MAX_CONTROL_LEN, MIN_SEALED_LEN};

/// One received frame, borrowed from the reader's buffer.
#[derive(Debug)]
pub struct InFrame<'a> {
    /// The header.
    pub header: Repr,
    /// Control payload (sealed codec only; empty otherwise).
    pub control: &'a [u8],
    /// Data payload (data frames only).
    pub data: &'a [u8],
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
    /// Writes everything queued.
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Flushes and closes the write side.
    fn close(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

/// Bytes a writer collects before writing them out.
const WRITE_BATCH: usize = 64 * 1024;

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

/// Reads `buf.len()` bytes; `Ok(false)` if the stream ended before the first byte.
async fn read_full<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<bool, MuxError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]).await {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(MuxError::Closed("stream ended inside a frame".into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_closed(e)),
        }
    }
    Ok(true)
}

/// Plain yamux reader.
#[derive(Debug)]
pub struct PlainReader<R> {
    inner: R,
    buf: Vec<u8>,
    max_data: usize,
}

impl<R> PlainReader<R> {
    /// Reads frames from `inner`, refusing data frames over `max_data` bytes (use the
    /// session's window: a peer may send up to its credit in one frame).
    pub fn new(inner: R, max_data: usize) -> Self {
        PlainReader {
            inner,
            buf: Vec::new(),
            max_data,
        }
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> FrameRead for PlainReader<R> {
    async fn read_frame(&mut self) -> Result<Option<InFrame<'_>>, MuxError> {
        let mut head = [0u8; HEADER_LEN];
        if !read_full(&mut self.inner, &mut head).await? {
            return Ok(None);
        }
        let header = Repr::parse_header(&head).map_err(|e| MuxError::Protocol(e.to_string()))?;
        let n = data_len(&header, self.max_data)?;
        self.buf.resize(n, 0);
        if n > 0 && !read_full(&mut self.inner, &mut self.buf).await? {
            return Err(MuxError::Closed("stream ended inside a frame".into()));
        }
        Ok(Some(InFrame {
            header,
            control: &[],
            data: &self.buf,
        }))
    }
}

/// Plain yamux writer.
#[derive(Debug)]
pub struct PlainWriter<W> {
    inner: W,
    buf: Vec<u8>,
}

impl<W> PlainWriter<W> {
    /// Writes frames to `inner`.
    pub fn new(inner: W) -> Self {
        PlainWriter {
            inner,
            buf: Vec::new(),
        }
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> FrameWrite for PlainWriter<W> {
    async fn write_frame(&mut self, f: &OutFrame) -> io::Result<()> {
        self.buf.extend_from_slice(&f.header.to_bytes());
        self.buf.extend_from_slice(&f.data);
        if self.buf.len() >= WRITE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf).await?;
            self.buf.clear();
        }
        self.inner.flush().await
    }

    async fn close(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.inner.close().await
    }
}

/// The largest data payload one mux frame can carry inside a channel frame.
pub const CHANNEL_MAX_DATA: usize = MAX_PAYLOAD_LEN - HEADER_LEN;

/// Reader for mux frames inside channel frames.
#[derive(Debug)]
pub struct ChannelFrameReader<R> {
    inner: ChannelReader<R>,
    buf: Vec<u8>,
    pos: usize,
}

impl<R> ChannelFrameReader<R> {
    /// Reads mux frames from the channel's frames.
    pub fn new(inner: ChannelReader<R>) -> Self {
        ChannelFrameReader {
            inner,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> FrameRead for ChannelFrameReader<R> {
    async fn read_frame(&mut self) -> Result<Option<InFrame<'_>>, MuxError> {
        if self.pos >= self.buf.len() {
            match self.inner.recv().await {
                Ok(frame) => {
                    self.buf.clear();
                    self.buf.extend_from_slice(frame);
                    self.pos = 0;
                }
                Err(crate::crypto::channel::ChannelError::Closed) => return Ok(None),
                Err(e) => return Err(MuxError::Closed(e.to_string())),
            }
            if self.buf.is_empty() {
                return Err(MuxError::Protocol("empty channel frame".into()));
            }
        }
        let rest = &self.buf[self.pos..];
        let header = Repr::parse_header(rest).map_err(|e| {
            MuxError::Protocol(format!("channel frame holds a partial mux header: {e}"))
        })?;
        let n = data_len(&header, CHANNEL_MAX_DATA)?;
        if rest.len() < HEADER_LEN + n {
            return Err(MuxError::Protocol(
                "a mux frame crosses a channel frame boundary".into(),
            ));
        }
        let start = self.pos + HEADER_LEN;
        self.pos = start + n;
        Ok(Some(InFrame {
            header,
            control: &[],
            data: &self.buf[start..start + n],
        }))
    }
}

/// Writer of mux frames into channel frames, packing several per channel frame.
#[derive(Debug)]
pub struct ChannelFrameWriter<W> {
    inner: ChannelWriter<W>,
    buf: Vec<u8>,
}

impl<W> ChannelFrameWriter<W> {
    /// Writes mux frames as channel frames.
    pub fn new(inner: ChannelWriter<W>) -> Self {
        ChannelFrameWriter {
            inner,
            buf: Vec::new(),
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
        if self.buf.len() + size > MAX_PAYLOAD_LEN {
            self.flush().await?;
        }
        self.buf.extend_from_slice(&f.header.to_bytes());
        self.buf.extend_from_slice(&f.data);
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.inner.send(&self.buf).await.map_err(channel_io)?;
            self.buf.clear();
        }
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
    buf: Vec<u8>,
    max_data: usize,
}

impl<R> SealedReader<R> {
    /// Reads sealed frames from `inner`, opening headers with `cipher` (the session's
    /// receive CipherState), refusing data payloads over `max_data`.
    pub fn new(inner: R, cipher: CipherState, max_data: usize) -> Self {
        SealedReader {
            inner,
            cipher,
            buf: Vec::new(),
            max_data,
        }
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> FrameRead for SealedReader<R> {
    async fn read_frame(&mut self) -> Result<Option<InFrame<'_>>, MuxError> {
        let mut prefix = [0u8; 2];
        if !read_full(&mut self.inner, &mut prefix).await? {
            return Ok(None);
        }
        let sealed_len = usize::from(u16::from_be_bytes(prefix));
        if sealed_len < MIN_SEALED_LEN {
            return Err(MuxError::Protocol(format!(
                "sealed length {sealed_len} is below {MIN_SEALED_LEN}"
            )));
        }
        self.buf.resize(sealed_len, 0);
        if !read_full(&mut self.inner, &mut self.buf).await? {
            return Err(MuxError::Closed("stream ended inside a frame".into()));
        }
        let body = sealed_len - TAG_LEN;
        let (plain, tag) = self.buf.split_at_mut(body);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().expect("16 bytes");
        self.cipher
            .open_in_place(&[], plain, &tag)
            .map_err(|e| MuxError::Protocol(format!("session frame refused: {e}")))?;
        let header = Repr::parse_header(plain).map_err(|e| MuxError::Protocol(e.to_string()))?;
        let n = data_len(&header, self.max_data)?;
        self.buf.truncate(body);
        self.buf.resize(body + n, 0);
        if n > 0 && !read_full(&mut self.inner, &mut self.buf[body..]).await? {
            return Err(MuxError::Closed("stream ended inside a frame".into()));
        }
        Ok(Some(InFrame {
            header,
            control: &self.buf[HEADER_LEN..body],
            data: &self.buf[body..],
        }))
    }
}

/// Writer of sealed session frames.
#[derive(Debug)]
pub struct SealedWriter<W> {
    inner: W,
    cipher: CipherState,
    buf: Vec<u8>,
}

impl<W> SealedWriter<W> {
    /// Writes sealed frames to `inner`, sealing headers with `cipher` (the session's send
    /// CipherState).
    pub fn new(inner: W, cipher: CipherState) -> Self {
        SealedWriter {
            inner,
            cipher,
            buf: Vec::new(),
        }
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> FrameWrite for SealedWriter<W> {
    async fn write_frame(&mut self, f: &OutFrame) -> io::Result<()> {
        if f.control.len() > MAX_CONTROL_LEN {
            return Err(io::Error::other("control payload too long"));
        }
        let sealed_len = MIN_SEALED_LEN + f.control.len();
        self.buf
            .extend_from_slice(&(sealed_len as u16).to_be_bytes());
        let start = self.buf.len();
        self.buf.extend_from_slice(&f.header.to_bytes());
        self.buf.extend_from_slice(&f.control);
        let tag = self
            .cipher
            .seal_in_place(&[], &mut self.buf[start..])
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.buf.extend_from_slice(&tag);
        self.buf.extend_from_slice(&f.data);
        if self.buf.len() >= WRITE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf).await?;
            self.buf.clear();
        }
        self.inner.flush().await
    }

    async fn close(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.inner.close().await
    }
}
