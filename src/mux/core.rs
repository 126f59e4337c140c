//! The sans-IO multiplexer core: yamux v0 semantics (hashicorp/yamux's spec) over frames that
//! some codec delivers. No I/O and no clock: frames come in through [`Core::handle_frame`],
//! frames to send come out of [`Core::poll_transmit`], and the application side calls
//! [`Core::open`], [`Core::accept`], [`Core::read`], [`Core::write`], [`Core::close`] and
//! [`Core::reset`]. Wakers for the async driver are stored here but never called from I/O.
//!
//! Flow control: every stream starts with a 256 KiB window each way. A sender may have at most
//! the window in flight; the receiver returns credit with a window update once the
//! application has consumed half of it. The receive buffer of a stream therefore never holds
//! more than one window, and a stream whose reader stops reading only stops *that* stream:
//! its sender runs out of credit while every other stream keeps flowing (the session reader
//! never waits for an application).
//!
//! Stream lifecycle: `open` sends SYN (on a window-update frame, with an optional control
//! payload for the codecs that carry one); the peer answers ACK on its first frame. `close`
//! sends FIN (half-close: the other direction stays open). `reset` sends RST and discards
//! the stream at once. A stream is forgotten when both sides have sent FIN and the application
//! has dropped its handle ([`Core::detach`]), or on RST.
//!
//! Violations of the protocol (data beyond the window, data on a stream that was never
//! opened, a SYN with the wrong parity or a reused id, a bad version or unknown type) end the
//! session: the core queues a go-away with "protocol error" and fails every stream.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::task::Waker;

use crate::wire::mux::{Flags, GoAwayCode, Repr, Type, VERSION};

/// Tunables of a session.
#[derive(Debug, Clone)]
pub struct Config {
    /// Initial (and largest) receive window per stream.
    pub window: u32,
    /// Largest data payload of one frame this side sends.
    pub max_frame_data: usize,
    /// Inbound streams waiting for `accept`; a SYN beyond this is answered with RST.
    pub accept_backlog: usize,
    /// Bytes of frames queued for the writer before `write` pushes back.
    pub max_queued_bytes: usize,
    /// Most streams open at once; an inbound SYN beyond it is answered with RST.
    pub max_streams: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            window: 256 * 1024,
            max_frame_data: 16 * 1024,
            accept_backlog: 256,
            max_queued_bytes: 256 * 1024,
            max_streams: 4096,
        }
    }
}

/// Which end of the session this is: the client opens odd stream ids, the server even ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Dialled the connection.
    Client,
    /// Accepted the connection.
    Server,
}

/// Why the session or a stream failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MuxError {
    /// The peer broke the protocol (what it did).
    Protocol(String),
    /// The peer sent go-away with this code.
    GoAway(GoAwayCode),
    /// The underlying connection failed or closed.
    Closed(String),
    /// The stream was reset by the peer.
    Reset,
    /// The peer is not accepting new streams (it sent go-away), or this side is closing.
    NotAccepting,
    /// Every stream id of this side is used up.
    IdsExhausted,
    /// Too many streams are open.
    TooManyStreams,
}

impl fmt::Display for MuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MuxError::Protocol(m) => write!(f, "mux protocol error: {m}"),
            MuxError::GoAway(c) => write!(f, "peer closed the session ({c})"),
            MuxError::Closed(m) => write!(f, "session closed: {m}"),
            MuxError::Reset => write!(f, "stream reset by peer"),
            MuxError::NotAccepting => write!(f, "session is not accepting new streams"),
            MuxError::IdsExhausted => write!(f, "stream ids exhausted; open a new session"),
            MuxError::TooManyStreams => write!(f, "too many open streams"),
        }
    }
}

impl std::error::Error for MuxError {}

/// A frame for the writer: header, control payload (sealed codecs only) and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFrame {
    /// The header; for data frames `length` equals `data.len()`.
    pub header: Repr,
    /// Control payload (empty unless the frame opens a stream with one).
    pub control: Vec<u8>,
    /// Data payload.
    pub data: Vec<u8>,
}

impl OutFrame {
    fn control(header: Repr) -> OutFrame {
        OutFrame {
            header,
            control: Vec::new(),
            data: Vec::new(),
        }
    }

    fn size(&self) -> usize {
        crate::wire::mux::HEADER_LEN + self.control.len() + self.data.len()
    }
}

/// Result of [`Core::read`].
#[derive(Debug, PartialEq, Eq)]
pub enum ReadResult {
    /// This many bytes were copied.
    Data(usize),
    /// The peer half-closed: no more data will come.
    Eof,
    /// Nothing buffered yet; the waker was registered.
    Pending,
}

/// Result of [`Core::write`].
#[derive(Debug, PartialEq, Eq)]
pub enum WriteResult {
    /// This many bytes were queued.
    Written(usize),
    /// No credit or queue space; the waker was registered.
    Pending,
}

#[derive(Debug, Default)]
struct Stream {
    /// Credit for sending.
    send_window: u32,
    /// Credit the peer still has for sending to us.
    recv_window: u32,
    /// Received, not yet read: whole frame payloads, the first one read from `buf_off`.
    buf: VecDeque<Vec<u8>>,
    /// Bytes already read from the first chunk.
    buf_off: usize,
    /// Unread bytes in `buf`.
    buf_len: usize,
    /// Consumed since the last window update.
    consumed: u32,
    /// We must set ACK on our next frame (inbound stream not yet acknowledged).
    need_ack: bool,
    /// We sent FIN.
    local_fin: bool,
    /// The peer sent FIN.
    remote_fin: bool,
    /// Reset (by either side).
    reset: bool,
    /// The application dropped its handle.
    detached: bool,
    /// Control payload of the SYN that opened an inbound stream.
    control: Vec<u8>,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl Stream {
    fn wake(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }

    /// Both directions are done and the application has let go of its handle.
    fn finished(&self) -> bool {
        self.reset || (self.local_fin && self.remote_fin && self.detached)
    }
}

/// The multiplexer state of one session.
#[derive(Debug)]
pub struct Core {
    side: Side,
    config: Config,
    next_id: u32,
    streams: HashMap<u32, Stream>,
    backlog: VecDeque<u32>,
    accept_waker: Option<Waker>,
    out: VecDeque<OutFrame>,
    out_bytes: usize,
    tx_waker: Option<Waker>,
    /// Everything queued so far has been written out (the writer flushed an empty queue).
    flushed: bool,
    flush_wakers: Vec<Waker>,
    /// Writers waiting for queue space.
    blocked_writers: Vec<u32>,
    pongs: Vec<u32>,
    ping_waker: Option<Waker>,
    next_ping: u32,
    go_away_sent: bool,
    /// Set by [`Core::begin_shutdown`]: once the queue drains, the writer closes its half.
    shutting_down: bool,
    peer_go_away: Option<GoAwayCode>,
    failed: Option<MuxError>,
}

impl Core {
    /// A new session core.
    pub fn new(side: Side, config: Config) -> Core {
        Core {
            side,
            next_id: if side == Side::Client { 1 } else { 2 },
            config,
            streams: HashMap::new(),
            backlog: VecDeque::new(),
            accept_waker: None,
            out: VecDeque::new(),
            out_bytes: 0,
            tx_waker: None,
            flushed: true,
            flush_wakers: Vec::new(),
            blocked_writers: Vec::new(),
            pongs: Vec::new(),
            ping_waker: None,
            next_ping: 1,
            go_away_sent: false,
            shutting_down: false,
            peer_go_away: None,
            failed: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The session's failure, if it failed.
    pub fn failure(&self) -> Option<&MuxError> {
        self.failed.as_ref()
    }

    /// Number of live streams.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Ids of the live streams (for inspection and the fuzz invariants).
    pub fn stream_ids(&self) -> Vec<u32> {
        self.streams.keys().copied().collect()
    }

    /// Bytes received on stream `id` and not yet read.
    pub fn buffered(&self, id: u32) -> Option<usize> {
        self.streams.get(&id).map(|s| s.buf_len)
    }

    /// Inbound streams waiting for `accept`.
    pub fn backlog_len(&self) -> usize {
        self.backlog.len()
    }

    fn push(&mut self, f: OutFrame) {
        self.flushed = false;
        self.out_bytes += f.size();
        self.out.push_back(f);
        if let Some(w) = self.tx_waker.take() {
            w.wake();
        }
    }

    /// The next frame to send, if any.
    pub fn poll_transmit(&mut self) -> Option<OutFrame> {
        let f = self.out.pop_front()?;
        self.out_bytes -= f.size();
        if self.out_bytes < self.config.max_queued_bytes {
            for id in std::mem::take(&mut self.blocked_writers) {
                if let Some(s) = self.streams.get_mut(&id)
                    && let Some(w) = s.write_waker.take()
                {
                    w.wake();
                }
            }
        }
        Some(f)
    }

    /// Registers the writer task's waker, to be woken when a frame is queued.
    pub fn set_tx_waker(&mut self, w: &Waker) {
        self.tx_waker = Some(w.clone());
    }

    /// True when nothing is queued for the writer.
    pub fn is_tx_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// The writer reports that it has written and flushed everything taken so far.
    pub fn mark_flushed(&mut self) {
        if self.out.is_empty() {
            self.flushed = true;
            for w in self.flush_wakers.drain(..) {
                w.wake();
            }
        }
    }

    /// True once everything queued has been written out (or the session failed); otherwise
    /// registers `waker`.
    pub fn poll_flushed(&mut self, waker: &Waker) -> bool {
        if self.flushed || self.failed.is_some() {
            return true;
        }
        self.flush_wakers.push(waker.clone());
        false
    }

    /// Fails the session: queues a go-away (for protocol errors) and wakes everyone.
    pub fn fail(&mut self, err: MuxError) {
        if self.failed.is_some() {
            return;
        }
        if let MuxError::Protocol(_) = err
            && !self.go_away_sent
        {
            self.go_away_sent = true;
            self.push(OutFrame::control(Repr::go_away(GoAwayCode::ProtocolError)));
        }
        self.failed = Some(err);
        for s in self.streams.values_mut() {
            s.wake();
        }
        if let Some(w) = self.accept_waker.take() {
            w.wake();
        }
        if let Some(w) = self.ping_waker.take() {
            w.wake();
        }
        if let Some(w) = self.tx_waker.take() {
            w.wake();
        }
        for w in self.flush_wakers.drain(..) {
            w.wake();
        }
    }

    /// Handles one received frame. An error is a protocol violation: the session has failed
    /// (see [`Core::fail`]) and the caller should flush the go-away and stop reading.
    pub fn handle_frame(&mut self, h: Repr, control: &[u8], data: &[u8]) -> Result<(), MuxError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.handle_inner(h, control, data);
        if let Err(e) = &r {
            self.fail(e.clone());
        }
        r
    }

    fn handle_inner(&mut self, h: Repr, control: &[u8], data: &[u8]) -> Result<(), MuxError> {
        if h.version != VERSION {
            return Err(MuxError::Protocol(format!("version {}", h.version)));
        }
        match h.frame_type {
            Type::Data | Type::WindowUpdate => self.handle_stream_frame(h, control, data),
            Type::Ping => {
                if h.flags.contains(Flags::SYN) {
                    self.push(OutFrame::control(Repr::ping(Flags::ACK, h.length)));
                } else if h.flags.contains(Flags::ACK) {
                    self.pongs.push(h.length);
                    if let Some(w) = self.ping_waker.take() {
                        w.wake();
                    }
                }
                Ok(())
            }
            Type::GoAway => {
                let code = GoAwayCode::from(h.length);
                self.peer_go_away = Some(code);
                if code != GoAwayCode::Normal {
                    self.fail(MuxError::GoAway(code));
                }
                Ok(())
            }
            Type::Unknown(t) => Err(MuxError::Protocol(format!("unknown frame type {t}"))),
        }
    }

    fn handle_stream_frame(
        &mut self,
        h: Repr,
        control: &[u8],
        data: &[u8],
    ) -> Result<(), MuxError> {
        let id = h.stream_id;
        let is_data = h.frame_type == Type::Data;
        if is_data && data.len() != h.length as usize {
            return Err(MuxError::Protocol(format!(
                "data frame announces {} bytes, carries {}",
                h.length,
                data.len()
            )));
        }
        if h.flags.contains(Flags::SYN) {
            self.handle_syn(id, control)?;
            if !self.streams.contains_key(&id) {
                // Refused (backlog or stream limit): RST sent, ignore the rest.
                return Ok(());
            }
        }
        let Some(s) = self.streams.get_mut(&id) else {
            if h.flags.contains(Flags::RST) || (!is_data || data.is_empty()) {
                // Late frames for a stream we already forgot are normal after a reset.
                return Ok(());
            }
            // Data for a stream that is gone: tell the peer to stop.
            if self.recently_valid(id) {
                self.push(OutFrame::control(Repr::window_update(id, Flags::RST, 0)));
                return Ok(());
            }
            return Err(MuxError::Protocol(format!("data for unknown stream {id}")));
        };
        if h.flags.contains(Flags::RST) {
            s.reset = true;
            s.wake();
            self.streams.remove(&id);
            return Ok(());
        }
        if is_data {
            let n = data.len() as u32;
            if n > s.recv_window {
                return Err(MuxError::Protocol(format!(
                    "stream {id}: {n} bytes beyond the window of {}",
                    s.recv_window
                )));
            }
            if s.remote_fin && n > 0 {
                return Err(MuxError::Protocol(format!("stream {id}: data after FIN")));
            }
            s.recv_window -= n;
            if s.detached {
                // Nobody will read it: return the credit at once.
                s.recv_window += n;
                if n > 0 && !s.remote_fin {
                    self.push(OutFrame::control(Repr::window_update(id, Flags::NONE, n)));
                }
            } else {
                if !data.is_empty() {
                    s.buf.push_back(data.to_vec());
                    s.buf_len += data.len();
                }
                if let Some(w) = s.read_waker.take() {
                    w.wake();
                }
            }
        } else {
            // Window update: credit for sending.
            let s = self.streams.get_mut(&id).expect("checked above");
            s.send_window = s.send_window.saturating_add(h.length).min(u32::MAX / 2);
            if let Some(w) = s.write_waker.take() {
                w.wake();
            }
        }
        let s = self.streams.get_mut(&id).expect("checked above");
        if h.flags.contains(Flags::FIN) {
            s.remote_fin = true;
            if let Some(w) = s.read_waker.take() {
                w.wake();
            }
        }
        self.gc(id);
        Ok(())
    }

    /// Whether `id` could have been one of ours or the peer's already (so a frame for it is
    /// late, not invented).
    fn recently_valid(&self, id: u32) -> bool {
        let ours = (id % 2 == 1) == (self.side == Side::Client);
        if ours { id < self.next_id } else { id != 0 }
    }

    fn handle_syn(&mut self, id: u32, control: &[u8]) -> Result<(), MuxError> {
        let peer_parity = if self.side == Side::Client { 0 } else { 1 };
        if id == 0 || id % 2 != peer_parity {
            return Err(MuxError::Protocol(format!(
                "SYN with stream id {id} of the wrong side"
            )));
        }
        if self.streams.contains_key(&id) {
            return Err(MuxError::Protocol(format!(
                "SYN for stream {id}, already open"
            )));
        }
        if self.go_away_sent
            || self.backlog.len() >= self.config.accept_backlog
            || self.streams.len() >= self.config.max_streams
        {
            self.push(OutFrame::control(Repr::window_update(id, Flags::RST, 0)));
            return Ok(());
        }
        let window = self.config.window;
        self.streams.insert(
            id,
            Stream {
                // yamux: both windows start at the initial size.
                send_window: window,
                recv_window: window,
                need_ack: true,
                control: control.to_vec(),
                ..Stream::default()
            },
        );
        self.backlog.push_back(id);
        if let Some(w) = self.accept_waker.take() {
            w.wake();
        }
        Ok(())
    }

    /// Opens a stream; `control` rides on the SYN for codecs that carry it (empty otherwise).
    pub fn open(&mut self, control: &[u8]) -> Result<u32, MuxError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.go_away_sent || self.peer_go_away.is_some() {
            return Err(MuxError::NotAccepting);
        }
        if self.streams.len() >= self.config.max_streams {
            return Err(MuxError::TooManyStreams);
        }
        let id = self.next_id;
        if id > u32::MAX - 2 {
            return Err(MuxError::IdsExhausted);
        }
        self.next_id += 2;
        let window = self.config.window;
        self.streams.insert(
            id,
            Stream {
                send_window: window,
                recv_window: window,
                ..Stream::default()
            },
        );
        self.push(OutFrame {
            header: Repr::window_update(id, Flags::SYN, 0),
            control: control.to_vec(),
            data: Vec::new(),
        });
        Ok(id)
    }

    /// The next inbound stream, or `None` after registering `waker`.
    pub fn accept(&mut self, waker: &Waker) -> Result<Option<u32>, MuxError> {
        if let Some(id) = self.backlog.pop_front() {
            return Ok(Some(id));
        }
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.accept_waker = Some(waker.clone());
        Ok(None)
    }

    /// The control payload an inbound stream was opened with.
    pub fn control(&self, id: u32) -> &[u8] {
        self.streams.get(&id).map(|s| &s.control[..]).unwrap_or(&[])
    }

    /// Copies buffered data of stream `id` into `buf`.
    pub fn read(&mut self, id: u32, buf: &mut [u8], waker: &Waker) -> Result<ReadResult, MuxError> {
        let half = self.config.window / 2;
        let Some(s) = self.streams.get_mut(&id) else {
            return Err(self.failed.clone().unwrap_or(MuxError::Reset));
        };
        if s.reset {
            return Err(MuxError::Reset);
        }
        if s.buf_len == 0 {
            if s.remote_fin {
                return Ok(ReadResult::Eof);
            }
            if let Some(e) = &self.failed {
                return Err(e.clone());
            }
            s.read_waker = Some(waker.clone());
            return Ok(ReadResult::Pending);
        }
        let mut n = 0;
        while n < buf.len() {
            let Some(front) = s.buf.front() else {
                break;
            };
            let avail = &front[s.buf_off..];
            let take = avail.len().min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&avail[..take]);
            n += take;
            s.buf_off += take;
            if s.buf_off == front.len() {
                s.buf.pop_front();
                s.buf_off = 0;
            }
        }
        s.buf_len -= n;
        s.consumed += n as u32;
        if s.consumed >= half && !s.remote_fin {
            let delta = s.consumed;
            s.consumed = 0;
            s.recv_window += delta;
            let flags = if s.need_ack {
                s.need_ack = false;
                Flags::ACK
            } else {
                Flags::NONE
            };
            self.push(OutFrame::control(Repr::window_update(id, flags, delta)));
        }
        if s_finished(self, id) {
            self.streams.remove(&id);
        }
        Ok(ReadResult::Data(n))
    }

    /// Queues up to one frame of `data` on stream `id`, within its credit.
    pub fn write(&mut self, id: u32, data: &[u8], waker: &Waker) -> Result<WriteResult, MuxError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let over_queue = self.out_bytes >= self.config.max_queued_bytes;
        let max = self.config.max_frame_data;
        let Some(s) = self.streams.get_mut(&id) else {
            return Err(MuxError::Reset);
        };
        if s.reset {
            return Err(MuxError::Reset);
        }
        if s.local_fin {
            return Err(MuxError::Closed("write after close".into()));
        }
        if data.is_empty() {
            return Ok(WriteResult::Written(0));
        }
        if s.send_window == 0 {
            s.write_waker = Some(waker.clone());
            return Ok(WriteResult::Pending);
        }
        if over_queue {
            s.write_waker = Some(waker.clone());
            self.blocked_writers.push(id);
            return Ok(WriteResult::Pending);
        }
        let n = data.len().min(s.send_window as usize).min(max);
        s.send_window -= n as u32;
        let flags = if s.need_ack {
            s.need_ack = false;
            Flags::ACK
        } else {
            Flags::NONE
        };
        self.push(OutFrame {
            header: Repr::data(id, flags, n as u32),
            control: Vec::new(),
            data: data[..n].to_vec(),
        });
        Ok(WriteResult::Written(n))
    }

    /// Half-closes stream `id` (FIN).
    pub fn close(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.local_fin || s.reset {
            return;
        }
        s.local_fin = true;
        let flags = if s.need_ack {
            s.need_ack = false;
            Flags::ACK | Flags::FIN
        } else {
            Flags::FIN
        };
        self.push(OutFrame::control(Repr::window_update(id, flags, 0)));
        if s_finished(self, id) {
            self.streams.remove(&id);
        }
    }

    /// Resets stream `id` (RST) and forgets it.
    pub fn reset(&mut self, id: u32) {
        if let Some(mut s) = self.streams.remove(&id) {
            if !s.reset && self.failed.is_none() {
                self.push(OutFrame::control(Repr::window_update(id, Flags::RST, 0)));
            }
            s.wake();
        }
    }

    /// The application dropped stream `id`. If it had closed its side (FIN sent), the stream
    /// lingers until the peer's FIN, discarding (and re-crediting) whatever still arrives, so
    /// the peer can read everything we sent; if the peer had finished and everything was
    /// read, it closes gracefully; otherwise it is reset, as TCP does for a socket closed with
    /// unread data.
    pub fn detach(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.detached = true;
        s.read_waker = None;
        s.write_waker = None;
        if s.local_fin || (s.remote_fin && s.buf_len == 0) {
            // Unread bytes are dropped; give their credit back so the peer is not left
            // waiting for a window nobody will open.
            let unread = s.buf_len as u32;
            s.buf = VecDeque::new();
            s.buf_off = 0;
            s.buf_len = 0;
            if unread > 0 && !s.remote_fin {
                s.recv_window += unread;
                self.push(OutFrame::control(Repr::window_update(
                    id,
                    Flags::NONE,
                    unread,
                )));
            }
            self.close(id);
            if s_finished(self, id) {
                self.streams.remove(&id);
            }
        } else {
            self.reset(id);
        }
    }

    /// Forgets a stream whose both directions are finished.
    fn gc(&mut self, id: u32) {
        if s_finished(self, id) {
            self.streams.remove(&id);
        }
    }

    /// Sends a ping; returns its opaque value (match it in [`Core::take_pong`]).
    pub fn ping(&mut self) -> Result<u32, MuxError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let opaque = self.next_ping;
        self.next_ping = self.next_ping.wrapping_add(1);
        self.push(OutFrame::control(Repr::ping(Flags::SYN, opaque)));
        Ok(opaque)
    }

    /// True (once) if the answer to ping `opaque` has arrived; otherwise registers `waker`.
    pub fn take_pong(&mut self, opaque: u32, waker: &Waker) -> Result<bool, MuxError> {
        if let Some(i) = self.pongs.iter().position(|p| *p == opaque) {
            self.pongs.swap_remove(i);
            return Ok(true);
        }
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        // Bound the list if answers arrive for pings nobody waits for.
        if self.pongs.len() > 64 {
            self.pongs.drain(..32);
        }
        self.ping_waker = Some(waker.clone());
        Ok(false)
    }

    /// Queues a normal go-away: no new streams either way; existing ones continue.
    pub fn go_away(&mut self) {
        if !self.go_away_sent && self.failed.is_none() {
            self.go_away_sent = true;
            self.push(OutFrame::control(Repr::go_away(GoAwayCode::Normal)));
        }
    }

    /// Starts a graceful shutdown: queues a go-away; the driver closes its write half once
    /// everything queued is out, and the session ends when the peer closes its side.
    pub fn begin_shutdown(&mut self) {
        self.go_away();
        self.shutting_down = true;
        if let Some(w) = self.tx_waker.take() {
            w.wake();
        }
    }

    /// True after [`Core::begin_shutdown`].
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// True once the session has failed or ended; otherwise registers `waker`.
    pub fn poll_ended(&mut self, waker: &Waker) -> bool {
        if self.failed.is_some() {
            return true;
        }
        self.flush_wakers.push(waker.clone());
        false
    }

    /// True once the peer sent a go-away.
    pub fn peer_went_away(&self) -> bool {
        self.peer_go_away.is_some()
    }
}

fn s_finished(core: &Core, id: u32) -> bool {
    core.streams.get(&id).is_some_and(Stream::finished)
}

#[cfg(test)]
mod tests;
