//! The encrypted framed channel (DESIGN.md §3.3): a Noise handshake over any byte stream,
//! then whole frames sealed with the transport CipherStates.
//!
//! On the wire every handshake message and every frame is `u16 big-endian length ‖ bytes`.
//! A frame's bytes are `ChaCha20-Poly1305(payload) ‖ 16-byte tag`, with empty associated data
//! and the implicit per-direction nonce counter: nothing but the length travels in clear. A
//! frame is at most [`MAX_FRAME_LEN`] bytes including the tag, so a payload is at most
//! [`MAX_PAYLOAD_LEN`].
//!
//! Failure is final. A frame that does not authenticate, a truncated or oversize frame, a
//! spent nonce counter or an I/O error ends the channel: the failing call returns the reason
//! and every later call returns [`ChannelError::Failed`]. A [`Channel`] also closes its write
//! side then; after [`Channel::split`] a failure in either half marks the other as failed too.
//!
//! `recv` is not cancel-safe (a frame half read is lost with the future): run it from one
//! reader task, as the mux driver does.

use core::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_io::Timer;
use futures_lite::FutureExt;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use super::identity::{Keypair, PublicKey};
use super::noise::protocol::MAX_HANDSHAKE_MESSAGE_LEN;
use super::noise::{
    CipherState, Handshake, NoiseError, TAG_LEN, TransportState, kk_initiator, kk_responder,
    xk_initiator, xk_responder,
};
use crate::wire::noise::{Frame as NoiseFrame, Repr as NoiseRepr, frame_len as noise_frame_len};

/// How long a handshake may take before it is abandoned (DESIGN.md §3.3).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest frame on the wire, tag included (what a u16 length can say).
pub const MAX_FRAME_LEN: usize = 65535;
/// The largest payload of one frame.
pub const MAX_PAYLOAD_LEN: usize = MAX_FRAME_LEN - TAG_LEN;
/// Length of the frame length prefix.
pub const LEN_PREFIX: usize = 2;

/// Why a handshake or a channel failed.
#[derive(Debug)]
pub enum ChannelError {
    /// The underlying stream failed.
    Io(io::Error),
    /// The handshake or the AEAD refused (includes authentication failure and nonce
    /// exhaustion).
    Noise(NoiseError),
    /// The handshake did not finish in time.
    Timeout,
    /// The peer closed the stream cleanly, between frames.
    Closed,
    /// The stream ended in the middle of a frame or handshake message.
    Truncated,
    /// A frame longer than the limit: announced by the peer (refused before reading it), or
    /// a payload too long to send.
    FrameTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame too short to hold a tag.
    FrameTooShort {
        /// Its length.
        len: usize,
    },
    /// An earlier error ended this channel.
    Failed,
    /// The responder refused the peer's first handshake message before processing it (a
    /// replay, see [`handshake_transport_admit`]).
    Refused,
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::Io(e) => write!(f, "channel I/O error: {e}"),
            ChannelError::Noise(e) => write!(f, "channel: {e}"),
            ChannelError::Timeout => f.write_str("handshake timed out"),
            ChannelError::Closed => f.write_str("peer closed the channel"),
            ChannelError::Truncated => f.write_str("stream ended inside a frame"),
            ChannelError::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max}")
            }
            ChannelError::FrameTooShort { len } => {
                write!(f, "frame of {len} bytes is shorter than its tag")
            }
            ChannelError::Failed => f.write_str("channel already failed"),
            ChannelError::Refused => f.write_str("handshake message refused (replayed)"),
        }
    }
}

impl std::error::Error for ChannelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChannelError::Io(e) => Some(e),
            ChannelError::Noise(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ChannelError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ChannelError::Truncated
        } else {
            ChannelError::Io(e)
        }
    }
}

impl From<NoiseError> for ChannelError {
    fn from(e: NoiseError) -> Self {
        ChannelError::Noise(e)
    }
}

/// Reads a u16be length prefix. `Ok(None)` is a clean end of stream before its first byte.
async fn read_len<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<usize>, ChannelError> {
    let mut len = [0u8; LEN_PREFIX];
    loop {
        match r.read(&mut len[..1]).await {
            Ok(0) => return Ok(None),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    r.read_exact(&mut len[1..]).await?;
    let total = noise_frame_len(&len).expect("a whole prefix");
    Ok(Some(total - LEN_PREFIX))
}

/// Runs `hs` to completion over `stream`, bounded by `timeout`, and returns the transport
/// CipherStates and the peer's PK. The stream is left right after the last handshake message,
/// for a caller that frames the session itself (the mux session layer).
pub async fn handshake_transport<S>(
    stream: &mut S,
    hs: Handshake,
    timeout: Duration,
) -> Result<(TransportState, PublicKey), ChannelError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    handshake_transport_admit(stream, hs, timeout, |_| true).await
}

/// As [`handshake_transport`], but `admit` sees the first message the peer sends before it is
/// processed (before this side does any Diffie-Hellman for it); `false` ends the handshake
/// with [`ChannelError::Refused`]. The relay uses it to drop replayed XK message 1s.
pub async fn handshake_transport_admit<S>(
    stream: &mut S,
    hs: Handshake,
    timeout: Duration,
    admit: impl FnOnce(&[u8]) -> bool,
) -> Result<(TransportState, PublicKey), ChannelError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    run_handshake(stream, hs, admit)
        .or(async {
            Timer::after(timeout).await;
            Err(ChannelError::Timeout)
        })
        .await
}

async fn run_handshake<S>(
    stream: &mut S,
    mut hs: Handshake,
    admit: impl FnOnce(&[u8]) -> bool,
) -> Result<(TransportState, PublicKey), ChannelError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut admit = Some(admit);
    let mut buf = [0u8; LEN_PREFIX + MAX_HANDSHAKE_MESSAGE_LEN];
    while !hs.is_finished() {
        if hs.is_my_turn() {
            let n = hs.write_message(&mut buf[LEN_PREFIX..])?;
            // n <= MAX_HANDSHAKE_MESSAGE_LEN, so it fits the u16 prefix.
            let repr = NoiseRepr::new(n).map_err(|_| NoiseError::Failed)?;
            NoiseFrame::new_unchecked(&mut buf[..]).set_payload_len(repr.payload_len);
            stream.write_all(&buf[..LEN_PREFIX + n]).await?;
            stream.flush().await?;
        } else {
            let want = hs.next_message_len().ok_or(NoiseError::Failed)?;
            let len = read_len(stream).await?.ok_or(ChannelError::Closed)?;
            // Every message of our protocol has one exact length: refuse any other before
            // reading (let alone allocating) the body.
            if len != want || len > MAX_HANDSHAKE_MESSAGE_LEN {
                return Err(NoiseError::BadLength { len, min: want }.into());
            }
            stream.read_exact(&mut buf[..len]).await?;
            if let Some(admit) = admit.take()
                && !admit(&buf[..len])
            {
                return Err(ChannelError::Refused);
            }
            hs.read_message(&buf[..len])?;
        }
    }
    Ok(hs.into_transport()?)
}

/// The receive side of a channel without I/O: opens whole wire frames (`u16 len ‖ ciphertext
/// ‖ tag`, parsed with the [`crate::wire::noise`] view) in place. A reader that gets its
/// bytes some other way than from an `AsyncRead` (the mux's owned chunks) opens them with
/// this; [`ChannelReader`] runs it too. An error marks the channel failed (both halves).
#[derive(Debug)]
pub struct FrameOpener {
    cipher: CipherState,
    max_frame: usize,
    dead: Arc<AtomicBool>,
}

impl FrameOpener {
    /// An opener of frames sealed under `cipher`, accepting frames up to [`MAX_FRAME_LEN`]
    /// (a channel's halves share one failure flag; this one has its own).
    pub fn new(cipher: CipherState) -> FrameOpener {
        FrameOpener {
            cipher,
            max_frame: MAX_FRAME_LEN,
            dead: Arc::new(AtomicBool::new(false)),
        }
    }

    /// How many bytes the frame starting at `prefix` occupies (prefix included), once its two
    /// prefix bytes are known (`Ok(None)` before); an announced length over the limit or too
    /// short for a tag is refused here, before its body is read (and fails the channel).
    pub fn frame_len(&self, prefix: &[u8]) -> Result<Option<usize>, ChannelError> {
        if self.dead.load(Ordering::Acquire) {
            return Err(ChannelError::Failed);
        }
        let Some(total) = noise_frame_len(prefix) else {
            return Ok(None);
        };
        let len = total - LEN_PREFIX;
        let r = if len > self.max_frame {
            Err(ChannelError::FrameTooLarge {
                len,
                max: self.max_frame,
            })
        } else if len < TAG_LEN {
            Err(ChannelError::FrameTooShort { len })
        } else {
            Ok(Some(total))
        };
        if r.is_err() {
            self.dead.store(true, Ordering::Release);
        }
        r
    }

    /// Opens the frame at the start of `frame` in place; returns its payload length (the
    /// payload is then `frame[LEN_PREFIX..LEN_PREFIX + n]`). Bytes after the frame are left
    /// alone.
    pub fn open_frame(&mut self, frame: &mut [u8]) -> Result<usize, ChannelError> {
        let r = self.open_inner(frame);
        if r.is_err() {
            self.dead.store(true, Ordering::Release);
        }
        r
    }

    fn open_inner(&mut self, frame: &mut [u8]) -> Result<usize, ChannelError> {
        if self.frame_len(frame)?.is_none() {
            return Err(ChannelError::Truncated);
        }
        let mut view = NoiseFrame::new_checked(frame).map_err(|_| ChannelError::Truncated)?;
        let msg = view.payload_mut();
        let body = msg.len() - TAG_LEN;
        let (data, tag) = msg.split_at_mut(body);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| NoiseError::Decrypt)?;
        self.cipher.open_in_place(&[], data, &tag)?;
        Ok(body)
    }

    /// Lowers the largest frame accepted (see [`Channel::set_max_frame_len`]).
    pub fn set_max_frame_len(&mut self, len: usize) {
        self.max_frame = len.clamp(TAG_LEN, MAX_FRAME_LEN);
    }

    /// True once the channel has failed (either half).
    pub fn is_failed(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }
}

/// The send side of a channel without I/O: seals a payload into a whole wire frame in place.
/// [`ChannelWriter`] runs it; a writer that hands frames on as owned buffers (the mux's owned
/// chunks) seals with it directly, so a payload is never copied to be sealed.
#[derive(Debug)]
pub struct FrameSealer {
    cipher: CipherState,
    dead: Arc<AtomicBool>,
}

impl FrameSealer {
    /// A sealer of frames under `cipher`, with a failure flag of its own.
    pub fn new(cipher: CipherState) -> FrameSealer {
        FrameSealer {
            cipher,
            dead: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Seals `buf[start + LEN_PREFIX..]` as one frame: writes the length prefix into the two
    /// bytes at `start` (reserved by the caller), encrypts the payload in place and appends
    /// the tag. A payload over [`MAX_PAYLOAD_LEN`] is refused and changes nothing (the channel
    /// stays usable); a spent nonce fails the channel.
    pub fn seal_frame(&mut self, buf: &mut Vec<u8>, start: usize) -> Result<(), ChannelError> {
        if self.dead.load(Ordering::Acquire) {
            return Err(ChannelError::Failed);
        }
        let payload = buf.len().saturating_sub(start + LEN_PREFIX);
        if buf.len() < start + LEN_PREFIX || payload > MAX_PAYLOAD_LEN {
            return Err(ChannelError::FrameTooLarge {
                len: payload + TAG_LEN,
                max: MAX_FRAME_LEN,
            });
        }
        let tag = match self
            .cipher
            .seal_in_place(&[], &mut buf[start + LEN_PREFIX..])
        {
            Ok(t) => t,
            Err(e) => {
                self.dead.store(true, Ordering::Release);
                return Err(e.into());
            }
        };
        buf.extend_from_slice(&tag);
        let repr = NoiseRepr::new(payload + TAG_LEN).expect("checked above");
        let mut view = NoiseFrame::new_unchecked(&mut buf[start..]);
        view.set_payload_len(repr.payload_len);
        Ok(())
    }

    /// True once the channel has failed (either half).
    pub fn is_failed(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Marks the channel failed (the writer could not deliver a sealed frame).
    pub fn fail(&self) {
        self.dead.store(true, Ordering::Release);
    }
}

/// Receive side state: the opener and a reusable buffer.
#[derive(Debug)]
struct RecvState {
    opener: FrameOpener,
    buf: Vec<u8>,
    /// Payload length of the frame opened last (in `buf` after the prefix).
    last: usize,
}

impl RecvState {
    /// Reads and opens the next frame; its payload is `buf[LEN_PREFIX..LEN_PREFIX + n]`.
    async fn recv<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<usize, ChannelError> {
        if self.opener.is_failed() {
            return Err(ChannelError::Failed);
        }
        let res = self.recv_frame(r).await;
        self.last = *res.as_ref().unwrap_or(&0);
        if res.is_err() {
            self.opener.dead.store(true, Ordering::Release);
            self.buf.clear();
        }
        res
    }

    async fn recv_frame<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<usize, ChannelError> {
        let len = read_len(r).await?.ok_or(ChannelError::Closed)?;
        let prefix = (len as u16).to_be_bytes();
        let total = self.opener.frame_len(&prefix)?.expect("a whole prefix");
        // Grows only: frames of varying sizes do not refill the buffer each time.
        if self.buf.len() < total {
            self.buf.resize(total, 0);
        }
        self.buf[..LEN_PREFIX].copy_from_slice(&prefix);
        r.read_exact(&mut self.buf[LEN_PREFIX..total]).await?;
        self.opener.open_frame(&mut self.buf[..total])
    }
}

/// Send side state: the sealer and a reusable buffer.
#[derive(Debug)]
struct SendState {
    sealer: FrameSealer,
    buf: Vec<u8>,
}

impl SendState {
    async fn send<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        data: &[u8],
    ) -> Result<(), ChannelError> {
        if self.sealer.is_failed() {
            return Err(ChannelError::Failed);
        }
        if data.len() > MAX_PAYLOAD_LEN {
            // The caller's mistake: nothing was sent, the channel stays usable.
            return Err(ChannelError::FrameTooLarge {
                len: data.len() + TAG_LEN,
                max: MAX_FRAME_LEN,
            });
        }
        let res = self.send_frame(w, data).await;
        if res.is_err() {
            self.sealer.fail();
        }
        res
    }

    async fn send_frame<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        data: &[u8],
    ) -> Result<(), ChannelError> {
        self.buf.clear();
        self.buf.extend_from_slice(&[0; LEN_PREFIX]);
        self.buf.extend_from_slice(data);
        self.sealer.seal_frame(&mut self.buf, 0)?;
        w.write_all(&self.buf).await?;
        w.flush().await?;
        Ok(())
    }
}

/// An established encrypted channel over a byte stream `S`.
#[derive(Debug)]
pub struct Channel<S> {
    stream: S,
    recv: RecvState,
    send: SendState,
    remote: PublicKey,
    handshake_hash: [u8; 64],
}

impl<S: AsyncRead + AsyncWrite + Unpin> Channel<S> {
    /// Runs `hs` over `stream` within `timeout` and wraps the result.
    pub async fn handshake(
        mut stream: S,
        hs: Handshake,
        timeout: Duration,
    ) -> Result<Self, ChannelError> {
        let (transport, remote) = handshake_transport(&mut stream, hs, timeout).await?;
        Ok(Self::from_parts(stream, transport, remote))
    }

    /// XK as initiator: dial `remote`, proving our identity (default timeout).
    pub async fn connect_xk(
        stream: S,
        local: &Keypair,
        remote: &PublicKey,
    ) -> Result<Self, ChannelError> {
        Self::handshake(stream, xk_initiator(local, remote), HANDSHAKE_TIMEOUT).await
    }

    /// XK as responder: accept anyone; [`remote`](Self::remote) says who (default timeout).
    pub async fn accept_xk(stream: S, local: &Keypair) -> Result<Self, ChannelError> {
        Self::handshake(stream, xk_responder(local), HANDSHAKE_TIMEOUT).await
    }

    /// KK as initiator with a known peer (default timeout).
    pub async fn connect_kk(
        stream: S,
        local: &Keypair,
        remote: &PublicKey,
    ) -> Result<Self, ChannelError> {
        Self::handshake(stream, kk_initiator(local, remote), HANDSHAKE_TIMEOUT).await
    }

    /// KK as responder, accepting only `remote` (default timeout).
    pub async fn accept_kk(
        stream: S,
        local: &Keypair,
        remote: &PublicKey,
    ) -> Result<Self, ChannelError> {
        Self::handshake(stream, kk_responder(local, remote), HANDSHAKE_TIMEOUT).await
    }

    /// Seals `data` as one frame and writes it.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), ChannelError> {
        let res = self.send.send(&mut self.stream, data).await;
        if self.send.sealer.is_failed() {
            let _ = self.stream.close().await;
        }
        res
    }

    /// Reads and opens the next frame; the payload borrows the channel's buffer.
    /// [`ChannelError::Closed`] is the peer's clean close.
    pub async fn recv(&mut self) -> Result<&[u8], ChannelError> {
        match self.recv.recv(&mut self.stream).await {
            Ok(n) => Ok(&self.recv.buf[LEN_PREFIX..LEN_PREFIX + n]),
            Err(e) => {
                // Close our side too: nothing more will be read or written.
                let _ = self.stream.close().await;
                Err(e)
            }
        }
    }

    /// Closes the write side of the stream (the peer's `recv` then returns `Closed`).
    pub async fn close(&mut self) -> Result<(), ChannelError> {
        self.stream.close().await?;
        Ok(())
    }

    /// Splits into a reader and a writer that can run in different tasks, over
    /// `futures_lite::io::split` halves.
    pub fn split(self) -> (ChannelReader<ReadHalf<S>>, ChannelWriter<WriteHalf<S>>) {
        self.split_with(futures_lite::io::split)
    }
}

impl<S> Channel<S> {
    /// Wraps a stream whose handshake has been run (see [`handshake_transport`]).
    pub fn from_parts(stream: S, transport: TransportState, remote: PublicKey) -> Self {
        let dead = Arc::new(AtomicBool::new(false));
        Channel {
            stream,
            recv: RecvState {
                opener: FrameOpener {
                    cipher: transport.recv,
                    max_frame: MAX_FRAME_LEN,
                    dead: dead.clone(),
                },
                buf: Vec::new(),
                last: 0,
            },
            send: SendState {
                sealer: FrameSealer {
                    cipher: transport.send,
                    dead,
                },
                buf: Vec::new(),
            },
            remote,
            handshake_hash: transport.handshake_hash,
        }
    }

    /// The peer's authenticated PK.
    pub fn remote(&self) -> &PublicKey {
        &self.remote
    }

    /// The Noise handshake hash, identical at both ends (channel binding).
    pub fn handshake_hash(&self) -> &[u8; 64] {
        &self.handshake_hash
    }

    /// Lowers the largest frame accepted from the peer (tag included), within
    /// `TAG_LEN..=MAX_FRAME_LEN`. A longer announced frame fails the channel before its body
    /// is read.
    pub fn set_max_frame_len(&mut self, len: usize) {
        self.recv.opener.set_max_frame_len(len);
    }

    /// The nonce counters (frames sent, frames received).
    pub fn nonces(&self) -> (u64, u64) {
        (
            self.send.sealer.cipher.nonce(),
            self.recv.opener.cipher.nonce(),
        )
    }

    /// Splits with a caller-supplied stream splitter, e.g. `|s| (s.clone(), s)` for a
    /// cloneable `async_net::TcpStream` (no lock between the halves).
    pub fn split_with<R, W>(
        self,
        f: impl FnOnce(S) -> (R, W),
    ) -> (ChannelReader<R>, ChannelWriter<W>) {
        let (r, w) = f(self.stream);
        (
            ChannelReader {
                inner: r,
                state: self.recv,
                remote: self.remote,
            },
            ChannelWriter {
                inner: w,
                state: self.send,
                remote: self.remote,
            },
        )
    }
}

/// The receiving half of a split [`Channel`].
#[derive(Debug)]
pub struct ChannelReader<R> {
    inner: R,
    state: RecvState,
    remote: PublicKey,
}

impl<R: AsyncRead + Unpin> ChannelReader<R> {
    /// Reads and opens the next frame (see [`Channel::recv`]). A failure here also fails the
    /// writer half.
    pub async fn recv(&mut self) -> Result<&[u8], ChannelError> {
        let n = self.state.recv(&mut self.inner).await?;
        Ok(&self.state.buf[LEN_PREFIX..LEN_PREFIX + n])
    }
}

impl<R> ChannelReader<R> {
    /// The peer's authenticated PK.
    pub fn remote(&self) -> &PublicKey {
        &self.remote
    }

    /// See [`Channel::set_max_frame_len`].
    pub fn set_max_frame_len(&mut self, len: usize) {
        self.state.opener.set_max_frame_len(len);
    }

    /// The payload of the frame [`ChannelReader::recv`] opened last (empty before the first
    /// and after a failure), for a reader that parses it over several calls.
    pub fn last_frame(&self) -> &[u8] {
        &self.state.buf[LEN_PREFIX..LEN_PREFIX + self.state.last]
    }

    /// Bytes its receive buffer holds allocated.
    pub fn buffer_capacity(&self) -> usize {
        self.state.buf.capacity()
    }

    /// Gives the receive buffer's room back down to `keep` bytes.
    pub fn shrink_buffer(&mut self, keep: usize) {
        if self.state.buf.len() > keep {
            self.state
                .buf
                .truncate(keep.max(LEN_PREFIX + self.state.last));
        }
        self.state.buf.shrink_to(keep);
    }

    /// The stream and the sans-IO opener, for a reader that gets its frames another way.
    pub fn into_opener(self) -> (R, FrameOpener) {
        (self.inner, self.state.opener)
    }
}

/// The sending half of a split [`Channel`].
#[derive(Debug)]
pub struct ChannelWriter<W> {
    inner: W,
    state: SendState,
    remote: PublicKey,
}

impl<W: AsyncWrite + Unpin> ChannelWriter<W> {
    /// Seals `data` as one frame and writes it. Once either half has failed, this closes the
    /// write side and returns [`ChannelError::Failed`].
    pub async fn send(&mut self, data: &[u8]) -> Result<(), ChannelError> {
        let res = self.state.send(&mut self.inner, data).await;
        if self.state.sealer.is_failed() {
            let _ = self.inner.close().await;
        }
        res
    }

    /// Seals `buf[LEN_PREFIX..]` in place as one frame (the first [`LEN_PREFIX`] bytes are
    /// room for the length) and writes it: a caller that builds its payload there saves the
    /// copy [`ChannelWriter::send`] makes. Errors as for `send`.
    pub async fn send_in_place(&mut self, buf: &mut Vec<u8>) -> Result<(), ChannelError> {
        let res = async {
            self.state.sealer.seal_frame(buf, 0)?;
            self.inner.write_all(buf).await?;
            self.inner.flush().await?;
            Ok(())
        }
        .await;
        if let Err(e) = &res
            && !matches!(e, ChannelError::FrameTooLarge { .. })
        {
            self.state.sealer.fail();
        }
        if self.state.sealer.is_failed() {
            let _ = self.inner.close().await;
        }
        res
    }

    /// Closes the write side of the stream.
    pub async fn close(&mut self) -> Result<(), ChannelError> {
        self.inner.close().await?;
        Ok(())
    }
}

impl<W> ChannelWriter<W> {
    /// The peer's authenticated PK.
    pub fn remote(&self) -> &PublicKey {
        &self.remote
    }

    /// The stream and the sans-IO sealer, for a writer that hands sealed frames on itself.
    pub fn into_sealer(self) -> (W, FrameSealer) {
        (self.inner, self.state.sealer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::noise::{DhKeypair, HandshakeState, PROLOGUE, Pattern, Role};
    use async_io::block_on;
    use async_net::{TcpListener, TcpStream};
    use futures_lite::future::zip;

    fn ids() -> (Keypair, Keypair) {
        (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]))
    }

    /// A connected pair of loopback TCP streams.
    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = zip(TcpStream::connect(addr), l.accept()).await;
        (a.unwrap(), b.unwrap().0)
    }

    /// Both ends of an XK channel over TCP.
    async fn xk_pair() -> (Channel<TcpStream>, Channel<TcpStream>) {
        let (a, b) = ids();
        let (sa, sb) = tcp_pair().await;
        let (ca, cb) = zip(
            Channel::connect_xk(sa, &a, b.public()),
            Channel::accept_xk(sb, &b),
        )
        .await;
        (ca.unwrap(), cb.unwrap())
    }

    /// A channel at one end and, at the other, the raw stream plus its transport keys, so a
    /// test can put arbitrary bytes on the wire.
    async fn raw_pair() -> (Channel<TcpStream>, TcpStream, TransportState) {
        let (a, b) = ids();
        let (sa, mut sb) = tcp_pair().await;
        let (ca, tb) = zip(
            Channel::connect_kk(sa, &a, b.public()),
            handshake_transport(&mut sb, kk_responder(&b, a.public()), HANDSHAKE_TIMEOUT),
        )
        .await;
        (ca.unwrap(), sb, tb.unwrap().0)
    }

    #[test]
    fn xk_and_kk_exchange_frames_both_ways() {
        block_on(async {
            let (a, b) = ids();
            let (mut ca, mut cb) = xk_pair().await;
            assert_eq!(cb.remote(), a.public());
            assert_eq!(ca.remote(), b.public());
            assert_eq!(ca.handshake_hash(), cb.handshake_hash());
            let big = vec![0x5a; MAX_PAYLOAD_LEN];
            for msg in [&b"hello"[..], b"", &big] {
                ca.send(msg).await.unwrap();
                assert_eq!(cb.recv().await.unwrap(), msg);
                cb.send(msg).await.unwrap();
                assert_eq!(ca.recv().await.unwrap(), msg);
            }
            assert_eq!(ca.nonces(), (3, 3));
            assert!(matches!(
                ca.send(&vec![0; MAX_PAYLOAD_LEN + 1]).await,
                Err(ChannelError::FrameTooLarge {
                    len: 65536,
                    max: 65535
                })
            ));
            // Refusing an oversize send does not break the channel.
            ca.send(b"still here").await.unwrap();
            assert_eq!(cb.recv().await.unwrap(), b"still here");
            ca.close().await.unwrap();
            assert!(matches!(cb.recv().await, Err(ChannelError::Closed)));

            let (sa, sb) = tcp_pair().await;
            let (ka, kb) = zip(
                Channel::connect_kk(sa, &a, b.public()),
                Channel::accept_kk(sb, &b, a.public()),
            )
            .await;
            let (mut ka, mut kb) = (ka.unwrap(), kb.unwrap());
            kb.send(b"kk").await.unwrap();
            assert_eq!(ka.recv().await.unwrap(), b"kk");
        });
    }

    fn sealer_opener(key: u8) -> (FrameSealer, FrameOpener) {
        let dead = Arc::new(AtomicBool::new(false));
        (
            FrameSealer {
                cipher: CipherState::new([key; 32]),
                dead: dead.clone(),
            },
            FrameOpener {
                cipher: CipherState::new([key; 32]),
                max_frame: MAX_FRAME_LEN,
                dead,
            },
        )
    }

    #[test]
    fn sealer_and_opener_work_in_place_on_the_wire_layout() {
        let (mut sealer, mut opener) = sealer_opener(7);
        // Two bytes of something else before the frame, as in a batch.
        let mut buf = vec![0xee, 0xee, 0, 0];
        buf.extend_from_slice(b"abc");
        sealer.seal_frame(&mut buf, 2).unwrap();
        // Golden prefix: 3 + 16 = 0x0013; the body is what one AEAD pass gives.
        assert_eq!(&buf[..4], &[0xee, 0xee, 0x00, 0x13]);
        let mut reference = CipherState::new([7; 32]);
        assert_eq!(&buf[4..], reference.seal(&[], b"abc").unwrap().as_slice());
        assert_eq!(opener.frame_len(&buf[2..3]).unwrap(), None);
        assert_eq!(opener.frame_len(&buf[2..]).unwrap(), Some(21));
        buf.extend_from_slice(b"next frame");
        let n = opener.open_frame(&mut buf[2..]).unwrap();
        assert_eq!(&buf[4..4 + n], b"abc");
        assert_eq!(&buf[4 + 19..], b"next frame");
        // Too long to seal: refused, nothing changes, the channel lives on.
        let mut big = vec![0u8; LEN_PREFIX + MAX_PAYLOAD_LEN + 1];
        assert!(matches!(
            sealer.seal_frame(&mut big, 0),
            Err(ChannelError::FrameTooLarge { .. })
        ));
        assert!(!sealer.is_failed());
        // A tampered frame fails the channel, both halves.
        let mut f = vec![0, 0];
        f.extend_from_slice(b"xyz");
        sealer.seal_frame(&mut f, 0).unwrap();
        f[3] ^= 1;
        assert!(matches!(
            opener.open_frame(&mut f),
            Err(ChannelError::Noise(NoiseError::Decrypt))
        ));
        assert!(sealer.is_failed() && opener.is_failed());
        assert!(matches!(
            sealer.seal_frame(&mut vec![0, 0], 0),
            Err(ChannelError::Failed)
        ));
        // Announced lengths out of range are refused from the prefix alone.
        let (_, mut o) = sealer_opener(1);
        o.set_max_frame_len(100);
        assert!(matches!(
            o.frame_len(&[0, 101]),
            Err(ChannelError::FrameTooLarge { len: 101, max: 100 })
        ));
        let (_, o) = sealer_opener(1);
        assert!(matches!(
            o.frame_len(&[0, 15]),
            Err(ChannelError::FrameTooShort { len: 15 })
        ));
        let (_, mut o) = sealer_opener(1);
        assert!(matches!(
            o.open_frame(&mut [0, 40, 1, 2]),
            Err(ChannelError::Truncated)
        ));
    }

    #[test]
    fn frames_carry_no_nonce() {
        block_on(async {
            let (mut ch, mut raw, mut t) = raw_pair().await;
            ch.send(b"abc").await.unwrap();
            let mut frame = [0u8; 2 + 3 + TAG_LEN];
            raw.read_exact(&mut frame).await.unwrap();
            assert_eq!(&frame[..2], &[0, 3 + TAG_LEN as u8]);
            assert_eq!(t.recv.open(&[], &frame[2..]).unwrap(), b"abc");
            let sealed = t.send.seal(&[], b"xyz").unwrap();
            raw.write_all(&(sealed.len() as u16).to_be_bytes())
                .await
                .unwrap();
            raw.write_all(&sealed).await.unwrap();
            assert_eq!(ch.recv().await.unwrap(), b"xyz");
        });
    }

    #[test]
    fn garbage_handshake_rejected() {
        block_on(async {
            let (_, b) = ids();
            // Right length, random bytes: fails authentication.
            let (mut sa, sb) = tcp_pair().await;
            let mut junk = [0u8; 50];
            junk[..2].copy_from_slice(&48u16.to_be_bytes());
            for (i, x) in junk[2..].iter_mut().enumerate() {
                *x = (i as u8).wrapping_mul(37).wrapping_add(11);
            }
            sa.write_all(&junk).await.unwrap();
            let r = Channel::accept_xk(sb, &b).await;
            assert!(
                matches!(r, Err(ChannelError::Noise(NoiseError::Decrypt))),
                "{r:?}"
            );
            // A wrong length is refused without reading the body.
            let (mut sa, sb) = tcp_pair().await;
            sa.write_all(&[0xff, 0xff]).await.unwrap();
            let r = Channel::accept_xk(sb, &b).await;
            assert!(
                matches!(
                    r,
                    Err(ChannelError::Noise(NoiseError::BadLength {
                        len: 65535,
                        min: 48
                    }))
                ),
                "{r:?}"
            );
            // The peer hangs up mid-message, or before saying anything.
            let (mut sa, sb) = tcp_pair().await;
            sa.write_all(&junk[..20]).await.unwrap();
            drop(sa);
            let r = Channel::accept_xk(sb, &b).await;
            assert!(matches!(r, Err(ChannelError::Truncated)), "{r:?}");
            let (sa, sb) = tcp_pair().await;
            drop(sa);
            let r = Channel::accept_xk(sb, &b).await;
            assert!(matches!(r, Err(ChannelError::Closed)), "{r:?}");
        });
    }

    #[test]
    fn xk_wrong_pk_in_message_3_rejected() {
        block_on(async {
            let (a, b) = ids();
            let c = Keypair::from_seed(&[3; 32]);
            let (mut sa, sb) = tcp_pair().await;
            // A hand-driven initiator with A's static that claims to be C.
            let liar = async {
                let mut hs = HandshakeState::new(
                    Pattern::XK,
                    Role::Initiator,
                    PROLOGUE,
                    DhKeypair::from_identity(&a),
                    Some(b.public().noise_static()),
                )
                .unwrap();
                let mut buf = [0u8; 130];
                let mut p = [0u8; 8];
                let n = hs.write_message(&[], &mut buf[2..]).unwrap();
                buf[..2].copy_from_slice(&(n as u16).to_be_bytes());
                sa.write_all(&buf[..2 + n]).await.unwrap();
                let mut m2 = [0u8; 50];
                sa.read_exact(&mut m2).await.unwrap();
                hs.read_message(&m2[2..], &mut p).unwrap();
                let n = hs
                    .write_message(c.public().as_bytes(), &mut buf[2..])
                    .unwrap();
                buf[..2].copy_from_slice(&(n as u16).to_be_bytes());
                sa.write_all(&buf[..2 + n]).await.unwrap();
                sa
            };
            let (_sa, r) = zip(liar, Channel::accept_xk(sb, &b)).await;
            assert!(
                matches!(r, Err(ChannelError::Noise(NoiseError::IdentityMismatch))),
                "{r:?}"
            );
        });
    }

    #[test]
    fn kk_with_unexpected_peer_rejected() {
        block_on(async {
            let (a, b) = ids();
            let c = Keypair::from_seed(&[3; 32]);
            let (sa, sb) = tcp_pair().await;
            let (ra, rb) = zip(
                Channel::handshake(sa, kk_initiator(&a, b.public()), Duration::from_secs(2)),
                Channel::accept_kk(sb, &b, c.public()),
            )
            .await;
            assert!(
                matches!(rb, Err(ChannelError::Noise(NoiseError::Decrypt))),
                "{rb:?}"
            );
            // The initiator sees the responder hang up.
            assert!(
                matches!(ra, Err(ChannelError::Closed | ChannelError::Io(_))),
                "{ra:?}"
            );
        });
    }

    #[test]
    fn handshake_timeout_fires_when_peer_is_silent() {
        block_on(async {
            let (a, b) = ids();
            let (sa, _sb) = tcp_pair().await;
            let t0 = std::time::Instant::now();
            let r =
                Channel::handshake(sa, xk_initiator(&a, b.public()), Duration::from_millis(200))
                    .await;
            assert!(matches!(r, Err(ChannelError::Timeout)), "{r:?}");
            let waited = t0.elapsed();
            assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(5));
            // And as responder, facing a client that connects and says nothing.
            let (_sa, sb) = tcp_pair().await;
            let r = Channel::handshake(sb, xk_responder(&b), Duration::from_millis(100)).await;
            assert!(matches!(r, Err(ChannelError::Timeout)), "{r:?}");
        });
    }

    #[test]
    fn truncated_frame() {
        block_on(async {
            let (mut ch, mut raw, _t) = raw_pair().await;
            raw.write_all(&[0, 100]).await.unwrap();
            raw.write_all(&[7; 50]).await.unwrap();
            drop(raw);
            assert!(matches!(ch.recv().await, Err(ChannelError::Truncated)));
            assert!(matches!(ch.recv().await, Err(ChannelError::Failed)));
            assert!(matches!(ch.send(b"x").await, Err(ChannelError::Failed)));
            // A frame too short for a tag.
            let (mut ch, mut raw, _t) = raw_pair().await;
            raw.write_all(&[0, 15]).await.unwrap();
            assert!(matches!(
                ch.recv().await,
                Err(ChannelError::FrameTooShort { len: 15 })
            ));
        });
    }

    #[test]
    fn oversize_length_refused_before_reading() {
        block_on(async {
            let (mut ch, mut raw, _t) = raw_pair().await;
            ch.set_max_frame_len(1024);
            // Only the length goes out: the error must come without waiting for a body.
            raw.write_all(&2000u16.to_be_bytes()).await.unwrap();
            let r = ch.recv().await;
            assert!(
                matches!(
                    r,
                    Err(ChannelError::FrameTooLarge {
                        len: 2000,
                        max: 1024
                    })
                ),
                "{r:?}"
            );
            // The channel closed its side: the peer reads end of stream.
            let mut rest = Vec::new();
            raw.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
        });
    }

    #[test]
    fn tampered_ciphertext_closes() {
        block_on(async {
            let (mut ch, mut raw, mut t) = raw_pair().await;
            let mut sealed = t.send.seal(&[], b"genuine").unwrap();
            sealed[3] ^= 0x01;
            raw.write_all(&(sealed.len() as u16).to_be_bytes())
                .await
                .unwrap();
            raw.write_all(&sealed).await.unwrap();
            let r = ch.recv().await;
            assert!(
                matches!(r, Err(ChannelError::Noise(NoiseError::Decrypt))),
                "{r:?}"
            );
            let mut rest = Vec::new();
            raw.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty(), "channel must close after a bad frame");
            // Even the genuine frame is refused now.
            let good = t.send.seal(&[], b"genuine").unwrap();
            let _ = raw.write_all(&(good.len() as u16).to_be_bytes()).await;
            let _ = raw.write_all(&good).await;
            assert!(matches!(ch.recv().await, Err(ChannelError::Failed)));
        });
    }

    #[test]
    fn counter_exhaustion_is_an_error() {
        block_on(async {
            let (a, b) = ids();
            let (mut sa, mut sb) = tcp_pair().await;
            let (ta, tb) = zip(
                handshake_transport(&mut sa, kk_initiator(&a, b.public()), HANDSHAKE_TIMEOUT),
                handshake_transport(&mut sb, kk_responder(&b, a.public()), HANDSHAKE_TIMEOUT),
            )
            .await;
            let ((mut ta, pb), (mut tb, pa)) = (ta.unwrap(), tb.unwrap());
            ta.send.set_nonce(u64::MAX - 1);
            tb.recv.set_nonce(u64::MAX - 1);
            let mut ca = Channel::from_parts(sa, ta, pb);
            let mut cb = Channel::from_parts(sb, tb, pa);
            ca.send(b"last one").await.unwrap();
            assert_eq!(cb.recv().await.unwrap(), b"last one");
            assert!(matches!(
                ca.send(b"wrap?").await,
                Err(ChannelError::Noise(NoiseError::NonceExhausted))
            ));
            assert!(matches!(ca.send(b"again").await, Err(ChannelError::Failed)));
            // Nothing went out; the sender closed, so the receiver sees a clean close.
            assert!(matches!(cb.recv().await, Err(ChannelError::Closed)));
        });
    }

    #[test]
    fn split_halves_work_concurrently_and_share_failure() {
        block_on(async {
            let (ca, cb) = xk_pair().await;
            let (mut ra, mut wa) = ca.split_with(|s| (s.clone(), s));
            let (mut rb, mut wb) = cb.split();
            let n = 50usize;
            let send_a = async {
                for i in 0..n {
                    wa.send(&vec![i as u8; i * 100]).await.unwrap();
                }
            };
            let echo_b = async {
                for _ in 0..n {
                    let f = rb.recv().await.unwrap().to_vec();
                    wb.send(&f).await.unwrap();
                }
            };
            let recv_a = async {
                for i in 0..n {
                    assert_eq!(ra.recv().await.unwrap(), vec![i as u8; i * 100].as_slice());
                }
            };
            zip(send_a, zip(echo_b, recv_a)).await;
            assert_eq!(ra.remote(), wa.remote());
            assert_ne!(ra.remote(), wb.remote());
            // A reader failure fails the writer too.
            ra.set_max_frame_len(16);
            wb.send(b"too long for the new limit").await.unwrap();
            assert!(matches!(
                ra.recv().await,
                Err(ChannelError::FrameTooLarge { .. })
            ));
            assert!(matches!(wa.send(b"x").await, Err(ChannelError::Failed)));
            assert!(matches!(rb.recv().await, Err(ChannelError::Closed)));
        });
    }
}
