//! The channel codec over a stream of an outer mux session (a dmsg channel through a relay),
//! moving owned frames instead of bytes: the writer builds each channel frame in a buffer of
//! its own, seals it in place ([`FrameSealer`]) and hands that buffer to the outer stream
//! ([`Stream::poll_write_chunk`]), which queues it as it is under its sealed session header; the
//! reader takes the outer stream's payloads as the buffers they arrived in
//! ([`Stream::poll_read_chunk`]) and opens each channel frame in place ([`FrameOpener`]). A
//! channel frame the sender made is one outer data frame at most 64 KiB long, so it crosses
//! the relay and arrives as one buffer: from the inner mux frame to the socket and back, no
//! copy of the bytes is made outside the AEAD. Frames cut differently (another
//! implementation, a split for credit) are put together in a buffer first.
//!
//! The wire format is the channel codec's (`docs/protocol.md` §5): channel frames whose
//! plaintext is whole mux frames.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use futures_lite::future::poll_fn;

use super::codec::{FrameRead, FrameWrite, InFrame, RX_IDLE, next_in_channel_frame};
use crate::crypto::channel::{Channel, FrameOpener, FrameSealer, LEN_PREFIX, MAX_PAYLOAD_LEN};
use crate::crypto::noise::TAG_LEN;
use crate::mux::core::{MuxError, OutFrame, Payload};
use crate::mux::pool;
use crate::mux::session::Stream;
use crate::wire::mux::{HEADER_LEN, Repr};

/// Longest channel frame the writer makes, prefix and tag included: one outer session frame
/// (`dmsg::relay::session_config`'s 64 KiB), so that it crosses a relay whole.
pub const FRAME_TARGET: usize = 64 * 1024;

/// Splits a channel over an outer mux stream into the owned-frame reader and writer.
pub fn channel_over_stream(ch: Channel<Stream>) -> (StreamChannelReader, StreamChannelWriter) {
    let (r, w) = ch.split_with(|s| {
        let s = Arc::new(s);
        (s.clone(), s)
    });
    let (rs, opener) = r.into_opener();
    let (ws, sealer) = w.into_sealer();
    (
        StreamChannelReader {
            stream: rs,
            opener,
            cur: Vec::new(),
            pos: 0,
            frame: None,
        },
        StreamChannelWriter {
            stream: ws,
            sealer,
            frame: Vec::new(),
            last_len: 0,
            big_at: None,
        },
    )
}

fn channel_err(e: crate::crypto::channel::ChannelError) -> MuxError {
    MuxError::Closed(e.to_string())
}

/// Reads mux frames from channel frames carried as owned payloads of an outer stream.
#[derive(Debug)]
pub struct StreamChannelReader {
    stream: Arc<Stream>,
    opener: FrameOpener,
    /// The current buffer: an outer payload, or frames put together from several.
    cur: Vec<u8>,
    /// Start of the next channel frame in `cur`.
    pos: usize,
    /// The opened channel frame being read: next mux frame at `.0`, plaintext ends at `.1`.
    frame: Option<(usize, usize)>,
}

impl FrameRead for StreamChannelReader {
    async fn read_frame(&mut self) -> Result<Option<InFrame<'_>>, MuxError> {
        loop {
            if let Some((at, end)) = self.frame {
                if at < end {
                    let (header, start, n) = next_in_channel_frame(&self.cur[..end], at)?;
                    self.frame = Some((start + n, end));
                    return Ok(Some(InFrame {
                        header,
                        control: &[],
                        data: Payload::Borrowed(&self.cur[start..start + n]),
                    }));
                }
                self.frame = None;
            }
            // The next channel frame: whole in `cur`, or more must come.
            let avail = &self.cur[self.pos..];
            if let Some(total) = self.opener.frame_len(avail).map_err(channel_err)?
                && avail.len() >= total
            {
                let at = self.pos;
                let n = self
                    .opener
                    .open_frame(&mut self.cur[at..at + total])
                    .map_err(channel_err)?;
                if n == 0 {
                    return Err(MuxError::Protocol("empty channel frame".into()));
                }
                self.pos = at + total;
                self.frame = Some((at + LEN_PREFIX, at + LEN_PREFIX + n));
                continue;
            }
            let stream = &self.stream;
            let chunk = poll_fn(|cx| stream.poll_read_chunk(cx, usize::MAX))
                .await
                .map_err(|e| MuxError::Closed(e.to_string()))?;
            let rest = self.cur.len() - self.pos;
            let Some(chunk) = chunk else {
                if rest == 0 {
                    return Ok(None);
                }
                return Err(MuxError::Closed("stream ended inside a frame".into()));
            };
            if rest == 0 {
                // The usual case: a new frame starts the new buffer.
                pool::give(std::mem::replace(&mut self.cur, chunk));
            } else {
                // A frame crosses buffers: put it together.
                let mut joined = pool::take(rest + chunk.len());
                joined.extend_from_slice(&self.cur[self.pos..]);
                joined.extend_from_slice(&chunk);
                pool::give(std::mem::replace(&mut self.cur, joined));
                pool::give(chunk);
            }
            self.pos = 0;
        }
    }
}

/// Writes mux frames into channel frames sealed in place and handed to an outer stream as
/// owned buffers, packing several mux frames per channel frame.
#[derive(Debug)]
pub struct StreamChannelWriter {
    stream: Arc<Stream>,
    sealer: FrameSealer,
    /// The channel frame being filled: two prefix bytes, then whole mux frames.
    frame: Vec<u8>,
    /// Length of the last frame sent: the next one starts with that much room.
    last_len: usize,
    /// When the last frame bigger than [`super::codec::WRITE_KEEP`] went out.
    big_at: Option<Instant>,
}

impl StreamChannelWriter {
    fn append(&mut self, header: &Repr, data: &[u8]) {
        if self.frame.is_empty() {
            let want = if self.big_at.is_some_and(|t| t.elapsed() < RX_IDLE) {
                self.last_len
            } else {
                0
            };
            self.frame = pool::take(want.max(LEN_PREFIX + HEADER_LEN + data.len()));
            self.frame.extend_from_slice(&[0; LEN_PREFIX]);
        }
        self.frame.extend_from_slice(&header.to_bytes());
        self.frame.extend_from_slice(data);
    }

    async fn queue(&mut self, header: &Repr, data: &[u8]) -> io::Result<()> {
        let size = HEADER_LEN + data.len();
        if size > MAX_PAYLOAD_LEN {
            return Err(io::Error::other(format!(
                "mux frame of {size} bytes does not fit a channel frame"
            )));
        }
        if !self.frame.is_empty() && self.frame.len() + size + TAG_LEN > FRAME_TARGET {
            self.flush().await?;
        }
        self.append(header, data);
        Ok(())
    }

    fn failed(&self, e: impl ToString) -> io::Error {
        self.sealer.fail();
        self.stream.close_ref();
        io::Error::other(e.to_string())
    }
}

impl FrameWrite for StreamChannelWriter {
    async fn write_frame(&mut self, f: &OutFrame) -> io::Result<()> {
        self.queue(&f.header, &f.data).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.frame.len() <= LEN_PREFIX {
            return Ok(());
        }
        let mut frame = std::mem::take(&mut self.frame);
        if let Err(e) = self.sealer.seal_frame(&mut frame, 0) {
            return Err(self.failed(e));
        }
        self.last_len = frame.len();
        if frame.len() > super::codec::WRITE_KEEP {
            self.big_at = Some(Instant::now());
        }
        let mut chunk = Some(frame);
        let stream = &self.stream;
        if let Err(e) = poll_fn(|cx| stream.poll_write_chunk(cx, &mut chunk)).await {
            return Err(self.failed(e));
        }
        Ok(())
    }

    async fn close(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.stream.close_ref();
        Ok(())
    }
}
