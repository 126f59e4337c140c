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
//!
//! Memory a peer can make us hold is bounded per session (see [`Config`]):
//!
//! - **Replies** to the peer's own frames — pongs, RSTs refusing a SYN or answering data for a
//!   gone stream, RSTs of streams dropped for the budget — queue at most
//!   [`Config::max_queued_replies`]; a peer that lets more pile up is not reading, and the
//!   session fails ([`MuxError::PeerNotReading`], go-away protocol error; the driver then drops
//!   the connection). Window updates are merged while queued (one per stream at most), and
//!   data for a stream nobody reads any more is credited back in half-window steps, so they
//!   never pile up.
//! - **Receive buffering** counts real bytes ([`Core::held_bytes`]): the allocations of every
//!   stream's receive buffer ([`recv`]: small frames are packed into 4 KiB chunks, so 1-byte
//!   frames cost about what they carry), control payloads of SYNs, and the stream table,
//!   accept backlog and transmit queue slots. Nothing the peer sends takes it over
//!   [`Config::max_session_bytes`] (only the queue slots of our own frames can add a little).
//!   Flow control bounds each stream by its window; the budget bounds their sum. A new stream
//!   (either way) is admitted only while a full window still fits ([`MuxError::OverBudget`]
//!   for our own, RST for the peer's); if data that arrives within its window would still
//!   overflow the budget (the windows are promised independently, yamux v0 has no way to take
//!   them back), the stream holding the most is reset (RST) and its buffer freed — the
//!   arriving stream itself if it is the largest. The driver first gives the application a
//!   moment to read ([`Core::needs_room`]), so an honest burst (a thousand streams opened at
//!   once) is slowed, not reset.
//! - A session may demand that inbound streams hold at most
//!   [`Config::preauth_rx_limit`] bytes before the application authorises them
//!   ([`Core::authorise`]); more resets the stream.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::mem::size_of;
use std::task::Waker;

use self::recv::{RecvBuf, alloc_cost};
use crate::wire::mux::{Flags, GoAwayCode, Repr, Type, VERSION};

mod recv;

/// Tunables of a session.
#[derive(Debug, Clone)]
pub struct Config {
    /// Initial (and largest) receive window per stream.
    pub window: u32,
    /// Largest data payload of one frame this side sends.
    pub max_frame_data: usize,
    /// Inbound streams waiting for `accept`; a SYN beyond this is answered with RST.
    pub accept_backlog: usize,
    /// Memory of frames queued for the writer before `write` pushes back: per frame its
    /// queue slot and its payloads' allocations (so 1-byte frames count about 100 bytes
    /// each, not one).
    pub max_queued_bytes: usize,
    /// Most streams open at once; an inbound SYN beyond it is answered with RST.
    pub max_streams: usize,
    /// Memory budget of the session for what the peer makes it hold ([`Core::held_bytes`]):
    /// received data not yet read (allocation sizes), SYN control payloads, the stream table,
    /// the accept backlog and the transmit queue's slots. Streams beyond it are refused (RST)
    /// and, should data within the windows still overflow it, the largest holder is reset.
    pub max_session_bytes: usize,
    /// Replies to the peer's frames (pongs, RSTs) queued and not yet sent; one more fails the
    /// session with [`MuxError::PeerNotReading`] (the peer is not reading).
    pub max_queued_replies: usize,
    /// Bytes an inbound stream may receive before the application authorises it
    /// ([`Core::authorise`]); more resets the stream. `None`: no limit but the window.
    pub preauth_rx_limit: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            window: 256 * 1024,
            max_frame_data: 16 * 1024,
            accept_backlog: 256,
            max_queued_bytes: 256 * 1024,
            max_streams: 4096,
            // With the codec's receive buffer (at most one 256 KiB frame) a session's receive
            // side stays under 3.5 MiB; one stream still gets its full 256 KiB window, and
            // about eleven streams can hold a full window each at the same time.
            max_session_bytes: 3 * 1024 * 1024,
            max_queued_replies: 1024,
            preauth_rx_limit: None,
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
    /// The session's memory budget has no room for another stream's window.
    OverBudget,
    /// The peer let more replies queue than allowed: it does not read what we send.
    PeerNotReading(usize),
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
            MuxError::OverBudget => write!(f, "the session's memory budget is used up"),
            MuxError::PeerNotReading(n) => {
                write!(f, "the peer does not read: {n} replies queued unsent")
            }
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
    /// Why it was queued (for the reply bound).
    kind: Kind,
}

/// What queued a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The application (data, open, close, reset, credit, ping) or the core itself (go-away).
    Local,
    /// A reply to a frame of the peer (pong, RST); bounded by `max_queued_replies`.
    Reply,
}

impl OutFrame {
    /// A frame to hand a writer directly (tests, attack clients); the core makes its own.
    pub fn new(header: Repr, control: Vec<u8>, data: Vec<u8>) -> OutFrame {
        OutFrame {
            header,
            control,
            data,
            kind: Kind::Local,
        }
    }

    fn control(header: Repr) -> OutFrame {
        OutFrame {
            header,
            control: Vec::new(),
            data: Vec::new(),
            kind: Kind::Local,
        }
    }

    fn reply(header: Repr) -> OutFrame {
        OutFrame {
            kind: Kind::Reply,
            ..OutFrame::control(header)
        }
    }

    /// Memory the frame holds while queued, as counted against
    /// [`Config::max_queued_bytes`]: its slot and its payloads' allocations (with
    /// [`recv::ALLOC_OVERHEAD`] each), so a queue of 1-byte frames is bounded by what it
    /// really costs, not by the bytes it carries.
    fn size(&self) -> usize {
        size_of::<OutFrame>()
            + alloc_cost(self.control.capacity())
            + alloc_cost(self.data.capacity())
    }
}

/// A received data payload as a codec hands it to [`Core::handle_payload`]: borrowed from the
/// codec's buffer (copied into the stream's receive buffer), or an owned buffer that the
/// stream keeps as it is and a forwarder can take out again as it is
/// ([`Core::read_chunk`]), so a relayed payload crosses the core without a copy.
#[derive(Debug)]
pub enum Payload<'a> {
    /// Bytes in the codec's buffer.
    Borrowed(&'a [u8]),
    /// A buffer of its own.
    Owned(Vec<u8>),
}

impl Payload<'_> {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Borrowed(b) => b,
            Payload::Owned(v) => v,
        }
    }
}

impl std::ops::Deref for Payload<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<'a> From<&'a [u8]> for Payload<'a> {
    fn from(b: &'a [u8]) -> Self {
        Payload::Borrowed(b)
    }
}

/// Result of [`Core::read_chunk`].
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkResult {
    /// Received bytes, owned.
    Data(Vec<u8>),
    /// The peer half-closed: no more data will come.
    Eof,
    /// Nothing buffered yet; the waker was registered.
    Pending,
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
    /// Received, not yet read.
    rx: RecvBuf,
    /// Consumed (or discarded) since the last window update.
    consumed: u32,
    /// Bytes the peer may still send before the application authorises the stream (`None`:
    /// authorised, or no limit configured).
    preauth_left: Option<u32>,
    /// Sequence number of a window update of ours still queued, to merge further credit into.
    queued_credit: Option<u64>,
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

    /// Memory this stream holds outside the stream table.
    fn held(&self) -> usize {
        self.rx.alloc() + alloc_cost(self.control.capacity())
    }
}

/// Bytes of a hash table (hashbrown's layout: buckets of `entry` bytes plus one control byte
/// each and a trailing group) that has room for `cap` items.
fn table_bytes(cap: usize, entry: usize) -> usize {
    if cap == 0 {
        return 0;
    }
    let buckets = if cap < 8 { cap + 1 } else { cap * 8 / 7 }.next_power_of_two();
    alloc_cost(buckets * (entry + 1) + 16)
}

/// Bytes of one stream table entry.
const STREAM_ENTRY: usize = size_of::<(u32, Stream)>();

/// Pings of ours awaiting an answer, and answers not yet taken, kept at most.
const MAX_PINGS: usize = 16;
/// Gone streams recently answered with RST (one RST per stream is enough).
const RECENT_RSTS: usize = 16;
/// Transmit queue slots kept when the queue runs empty.
const OUT_KEEP: usize = 16;

/// The multiplexer state of one session.
#[derive(Debug)]
pub struct Core {
    side: Side,
    config: Config,
    next_id: u32,
    streams: HashMap<u32, Stream>,
    /// Sum of [`Stream::held`] over `streams`.
    rx_bytes: usize,
    backlog: VecDeque<u32>,
    accept_waker: Option<Waker>,
    out: VecDeque<OutFrame>,
    /// Sequence number of `out[0]` (frames are numbered as they are queued).
    out_seq: u64,
    out_bytes: usize,
    /// Frames of kind [`Kind::Reply`] in `out`.
    out_replies: usize,
    tx_waker: Option<Waker>,
    /// Everything queued so far has been written out (the writer flushed an empty queue).
    flushed: bool,
    flush_wakers: Vec<Waker>,
    /// Tasks waiting for the session to end.
    end_wakers: Vec<Waker>,
    /// The reader, waiting for memory to be freed ([`Core::poll_room`]).
    room_waker: Option<Waker>,
    /// A wait for room ran out and the application has read nothing since: frames that do
    /// not fit are handled (refused, or room made) at once.
    impatient: bool,
    /// Writers waiting for queue space.
    blocked_writers: Vec<u32>,
    /// Our pings not answered yet.
    pings: VecDeque<u32>,
    /// Answers to our pings not taken yet.
    pongs: VecDeque<u32>,
    ping_waker: Option<Waker>,
    next_ping: u32,
    /// Gone streams we recently sent RST for.
    recent_rsts: VecDeque<u32>,
    go_away_sent: bool,
    /// Set by [`Core::begin_shutdown`]: once the queue drains, the writer closes its half.
    shutting_down: bool,
    peer_go_away: Option<GoAwayCode>,
    failed: Option<MuxError>,
}

fn add_waker(list: &mut Vec<Waker>, w: &Waker) {
    if !list.iter().any(|x| x.will_wake(w)) {
        list.push(w.clone());
    }
}

impl Core {
    /// A new session core.
    pub fn new(side: Side, config: Config) -> Core {
        Core {
            side,
            next_id: if side == Side::Client { 1 } else { 2 },
            config,
            streams: HashMap::new(),
            rx_bytes: 0,
            backlog: VecDeque::new(),
            accept_waker: None,
            out: VecDeque::new(),
            out_seq: 0,
            out_bytes: 0,
            out_replies: 0,
            tx_waker: None,
            flushed: true,
            flush_wakers: Vec::new(),
            end_wakers: Vec::new(),
            room_waker: None,
            impatient: false,
            blocked_writers: Vec::new(),
            pings: VecDeque::new(),
            pongs: VecDeque::new(),
            ping_waker: None,
            next_ping: 1,
            recent_rsts: VecDeque::new(),
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
        self.streams.get(&id).map(|s| s.rx.len())
    }

    /// Inbound streams waiting for `accept`.
    pub fn backlog_len(&self) -> usize {
        self.backlog.len()
    }

    /// Memory the session holds on the peer's account, in bytes as allocated: every stream's
    /// receive buffer and SYN control payload, the stream table, the accept backlog and the
    /// transmit queue's slots (not the data the application queued: that is bounded by
    /// [`Config::max_queued_bytes`], see [`Core::queued_bytes`]). At most
    /// [`Config::max_session_bytes`].
    pub fn held_bytes(&self) -> usize {
        self.rx_bytes + self.table_bytes()
    }

    /// Memory of the frames queued for the writer (slots and payload allocations).
    pub fn queued_bytes(&self) -> usize {
        self.out_bytes
    }

    /// Replies (pongs, RSTs) queued for the writer.
    pub fn queued_replies(&self) -> usize {
        self.out_replies
    }

    fn table_bytes(&self) -> usize {
        table_bytes(self.streams.capacity(), STREAM_ENTRY)
            + alloc_cost(self.backlog.capacity() * size_of::<u32>())
            + alloc_cost(self.out.capacity() * size_of::<OutFrame>())
            + alloc_cost((self.pings.capacity() + self.pongs.capacity()) * size_of::<u32>())
            + alloc_cost(self.recent_rsts.capacity() * size_of::<u32>())
    }

    /// Whether one more stream (with a SYN control payload of `control` bytes) fits the
    /// budget together with a full window of data.
    fn room_for_stream(&self, control: usize, inbound: bool) -> bool {
        let len = self.streams.len();
        let cap = self.streams.capacity();
        let table_growth = if len < cap {
            0
        } else {
            table_bytes((cap + 1).max(3) * 2, STREAM_ENTRY)
                .saturating_sub(table_bytes(cap, STREAM_ENTRY))
        };
        let backlog_growth = if inbound && self.backlog.len() == self.backlog.capacity() {
            alloc_cost(self.backlog.capacity().max(4) * 2 * size_of::<u32>())
        } else {
            0
        };
        let need =
            table_growth + backlog_growth + alloc_cost(control) + self.config.window as usize;
        self.held_bytes() + need <= self.config.max_session_bytes
    }

    /// Forgets stream `id`, releasing what it held.
    fn forget(&mut self, id: u32) -> Option<Stream> {
        let s = self.streams.remove(&id)?;
        self.rx_bytes -= s.held();
        self.room_freed();
        let cap = self.streams.capacity();
        if self.streams.is_empty() {
            self.streams = HashMap::new();
        } else if cap > 8 && self.streams.len() * 4 < cap {
            self.streams.shrink_to(self.streams.len() * 2);
        }
        Some(s)
    }

    /// Memory was given back: a reader waiting for room may try again.
    fn room_freed(&mut self) {
        if let Some(w) = self.room_waker.take() {
            w.wake();
        }
    }

    /// Whether handling this frame would have to make room in the memory budget — refuse the
    /// stream it opens, or reset the largest holder to store its data — so the driver should
    /// first wait a little for the application to read ([`Core::poll_room`]) before handing
    /// it in. False after a wait ran out ([`Core::room_wait_expired`]) until the application
    /// reads again: an application that reads nothing does not get waited for twice.
    pub fn needs_room(&self, h: &Repr, control: &[u8], data: &[u8]) -> bool {
        self.needs_room_for(h, control, &Payload::Borrowed(data))
    }

    /// [`Core::needs_room`] for a payload as [`Core::handle_payload`] takes it.
    pub fn needs_room_for(&self, h: &Repr, control: &[u8], data: &Payload<'_>) -> bool {
        if self.failed.is_some()
            || self.impatient
            || !matches!(h.frame_type, Type::Data | Type::WindowUpdate)
        {
            return false;
        }
        let id = h.stream_id;
        let Some(s) = self.streams.get(&id) else {
            // Only a SYN that nothing but the budget would refuse.
            return h.flags.contains(Flags::SYN)
                && !self.go_away_sent
                && self.backlog.len() < self.config.accept_backlog
                && self.streams.len() < self.config.max_streams
                && !self.room_for_stream(control.len(), true);
        };
        if h.frame_type != Type::Data || data.is_empty() || s.detached || s.reset {
            return false;
        }
        let growth = rx_growth(&s.rx, data);
        growth > 0 && self.held_bytes() + growth > self.config.max_session_bytes
    }

    /// The driver waited for room and the application freed too little in time.
    pub fn room_wait_expired(&mut self) {
        self.impatient = true;
    }

    /// Registers `waker` to be woken when memory is freed; true if the session has failed
    /// (no point waiting).
    pub fn poll_room(&mut self, waker: &Waker) -> bool {
        if self.failed.is_some() {
            return true;
        }
        self.room_waker = Some(waker.clone());
        false
    }

    fn push(&mut self, f: OutFrame) {
        self.flushed = false;
        self.out_bytes += f.size();
        if f.kind == Kind::Reply {
            self.out_replies += 1;
        }
        self.out.push_back(f);
        if let Some(w) = self.tx_waker.take() {
            w.wake();
        }
    }

    /// Queues a reply to the peer; fails the session instead if the peer lets too many pile
    /// up (it is not reading).
    fn push_reply(&mut self, header: Repr) -> Result<(), MuxError> {
        if self.out_replies >= self.config.max_queued_replies {
            let e = MuxError::PeerNotReading(self.out_replies);
            self.fail(e.clone());
            return Err(e);
        }
        self.push(OutFrame::reply(header));
        Ok(())
    }

    /// Returns `delta` bytes of credit on stream `id`, merged into a window update of ours
    /// that is still queued for it, if any.
    fn push_credit(&mut self, id: u32, delta: u32) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.recv_window += delta;
        if let Some(seq) = s.queued_credit
            && let Some(i) = seq.checked_sub(self.out_seq)
            && let Some(f) = self.out.get_mut(i as usize)
        {
            debug_assert!(f.header.stream_id == id && f.header.frame_type == Type::WindowUpdate);
            f.header.length += delta;
            return;
        }
        let flags = if s.need_ack {
            s.need_ack = false;
            Flags::ACK
        } else {
            Flags::NONE
        };
        s.queued_credit = Some(self.out_seq + self.out.len() as u64);
        self.push(OutFrame::control(Repr::window_update(id, flags, delta)));
    }

    /// The next frame to send, if any.
    pub fn poll_transmit(&mut self) -> Option<OutFrame> {
        let f = self.out.pop_front()?;
        self.out_seq += 1;
        self.out_bytes -= f.size();
        if f.kind == Kind::Reply {
            self.out_replies -= 1;
        }
        if self.out.is_empty() && self.out.capacity() > OUT_KEEP {
            self.out.shrink_to(OUT_KEEP);
        }
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

    /// The writer gave up on the connection (the session failed and the peer does not take
    /// what is left): drops everything still queued.
    pub fn abandon_transmit(&mut self) {
        // Keep the numbering going, so no queued-credit mark points at a later frame.
        self.out_seq += self.out.len() as u64;
        self.out = VecDeque::new();
        self.out_bytes = 0;
        self.out_replies = 0;
        self.blocked_writers = Vec::new();
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
        add_waker(&mut self.flush_wakers, waker);
        false
    }

    /// Fails the session: queues a go-away (for protocol errors and a peer that does not
    /// read) and wakes everyone.
    pub fn fail(&mut self, err: MuxError) {
        if self.failed.is_some() {
            return;
        }
        if matches!(err, MuxError::Protocol(_) | MuxError::PeerNotReading(_)) && !self.go_away_sent
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
        for w in self.end_wakers.drain(..) {
            w.wake();
        }
        self.room_freed();
    }

    /// Handles one received frame. An error ends the session (see [`Core::fail`]): the
    /// caller should stop reading and let the writer flush the go-away.
    pub fn handle_frame(&mut self, h: Repr, control: &[u8], data: &[u8]) -> Result<(), MuxError> {
        self.handle_payload(h, control, Payload::Borrowed(data))
    }

    /// [`Core::handle_frame`] with the data payload borrowed or owned (an owned one is kept
    /// as it is, see [`Payload`]).
    pub fn handle_payload(
        &mut self,
        h: Repr,
        control: &[u8],
        data: Payload<'_>,
    ) -> Result<(), MuxError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.handle_inner(h, control, data);
        if let Err(e) = &r {
            self.fail(e.clone());
        }
        r
    }

    fn handle_inner(&mut self, h: Repr, control: &[u8], data: Payload<'_>) -> Result<(), MuxError> {
        if h.version != VERSION {
            return Err(MuxError::Protocol(format!("version {}", h.version)));
        }
        match h.frame_type {
            Type::Data | Type::WindowUpdate => self.handle_stream_frame(h, control, data),
            Type::Ping => {
                if h.flags.contains(Flags::SYN) {
                    self.push_reply(Repr::ping(Flags::ACK, h.length))?;
                } else if h.flags.contains(Flags::ACK) {
                    // Only answers to pings we sent count; anything else is dropped, so
                    // unsolicited answers cannot pile up.
                    if let Some(i) = self.pings.iter().position(|p| *p == h.length) {
                        self.pings.remove(i);
                        if self.pongs.len() >= MAX_PINGS {
                            self.pongs.pop_front();
                        }
                        self.pongs.push_back(h.length);
                        if let Some(w) = self.ping_waker.take() {
                            w.wake();
                        }
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
        data: Payload<'_>,
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
                // Refused (backlog, stream limit or budget): RST sent, ignore the rest.
                return Ok(());
            }
        }
        let Some(s) = self.streams.get_mut(&id) else {
            if h.flags.contains(Flags::RST) || (!is_data || data.is_empty()) {
                // Late frames for a stream we already forgot are normal after a reset.
                return Ok(());
            }
            // Data for a stream that is gone: tell the peer to stop (once).
            if self.recently_valid(id) {
                if !self.recent_rsts.contains(&id) {
                    self.reply_rst(id)?;
                }
                return Ok(());
            }
            return Err(MuxError::Protocol(format!("data for unknown stream {id}")));
        };
        if h.flags.contains(Flags::RST) {
            s.reset = true;
            s.wake();
            self.forget(id);
            self.backlog.retain(|x| *x != id);
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
            if let Some(left) = s.preauth_left {
                if n > left {
                    log::debug!("mux: stream {id} sent more than {left} bytes unauthorised");
                    return self.drop_stream(id);
                }
                s.preauth_left = Some(left - n);
            }
            if s.detached {
                // Nobody will read it: credit it back, in half-window steps so a peer that
                // does not read cannot make updates pile up.
                s.consumed += n;
                if s.consumed >= self.config.window / 2 && !s.remote_fin {
                    let delta = std::mem::take(&mut s.consumed);
                    self.push_credit(id, delta);
                }
            } else if n > 0 {
                let growth = rx_growth(&s.rx, &data);
                if growth > 0
                    && self.held_bytes() + growth > self.config.max_session_bytes
                    && !self.make_room(id, growth)?
                {
                    return Ok(());
                }
                let s = self.streams.get_mut(&id).expect("make_room keeps it");
                let before = s.rx.alloc();
                match data {
                    Payload::Borrowed(b) => s.rx.push(b),
                    Payload::Owned(v) => s.rx.push_owned(v),
                }
                self.rx_bytes = self.rx_bytes + s.rx.alloc() - before;
                if let Some(w) = s.read_waker.take() {
                    w.wake();
                }
            }
        } else {
            // Window update: credit for sending.
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

    /// Makes room for `growth` more bytes on stream `id` by resetting the streams that hold
    /// the most, largest first. `Ok(false)` if `id` itself was the largest and was reset.
    fn make_room(&mut self, id: u32, growth: usize) -> Result<bool, MuxError> {
        while self.held_bytes() + growth > self.config.max_session_bytes {
            let own = self.streams.get(&id).map_or(0, Stream::held) + growth;
            let victim = self
                .streams
                .iter()
                .filter(|(k, _)| **k != id)
                .max_by_key(|(_, s)| s.held())
                .filter(|(_, s)| s.held() > own)
                .map(|(k, _)| *k);
            let Some(victim) = victim else {
                log::debug!("mux: stream {id} reset: session memory budget used up");
                self.drop_stream(id)?;
                return Ok(false);
            };
            log::debug!("mux: stream {victim} reset: session memory budget used up");
            self.drop_stream(victim)?;
        }
        Ok(true)
    }

    /// Resets stream `id` on the core's own account (budget, unauthorised data): RST to the
    /// peer, the buffer freed, the application's handle failing with [`MuxError::Reset`].
    fn drop_stream(&mut self, id: u32) -> Result<(), MuxError> {
        if let Some(mut s) = self.forget(id) {
            s.reset = true;
            s.wake();
            self.backlog.retain(|x| *x != id);
            self.reply_rst(id)?;
        }
        Ok(())
    }

    /// Answers the peer with RST on stream `id`, and remembers that it was told, so late
    /// data for the stream is not answered again.
    fn reply_rst(&mut self, id: u32) -> Result<(), MuxError> {
        if self.recent_rsts.len() >= RECENT_RSTS {
            self.recent_rsts.pop_front();
        }
        self.recent_rsts.push_back(id);
        self.push_reply(Repr::window_update(id, Flags::RST, 0))
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
            || !self.room_for_stream(control.len(), true)
        {
            return self.reply_rst(id);
        }
        let window = self.config.window;
        let s = Stream {
            // yamux: both windows start at the initial size.
            send_window: window,
            recv_window: window,
            need_ack: true,
            preauth_left: self.config.preauth_rx_limit,
            control: control.to_vec(),
            ..Stream::default()
        };
        self.rx_bytes += s.held();
        self.streams.insert(id, s);
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
        if !self.room_for_stream(0, false) {
            return Err(MuxError::OverBudget);
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
            kind: Kind::Local,
        });
        Ok(id)
    }

    /// The next inbound stream, or `None` after registering `waker`.
    pub fn accept(&mut self, waker: &Waker) -> Result<Option<u32>, MuxError> {
        if let Some(id) = self.backlog.pop_front() {
            if self.backlog.is_empty() && self.backlog.capacity() > 16 {
                self.backlog = VecDeque::new();
            }
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

    /// Lifts [`Config::preauth_rx_limit`] from stream `id`: the application has decided to
    /// serve it.
    pub fn authorise(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.preauth_left = None;
        }
    }

    /// Copies buffered data of stream `id` into `buf`.
    pub fn read(&mut self, id: u32, buf: &mut [u8], waker: &Waker) -> Result<ReadResult, MuxError> {
        self.take(id, waker, |rx| rx.read(buf))
    }

    /// Takes up to `max` buffered bytes of stream `id` as an owned buffer: a received payload
    /// that came owned ([`Payload::Owned`]) and fits comes out as the same buffer, without a
    /// copy. Credit and the memory budget are kept exactly as by [`Core::read`].
    pub fn read_chunk(
        &mut self,
        id: u32,
        max: usize,
        waker: &Waker,
    ) -> Result<ChunkResult, MuxError> {
        if max == 0 {
            return Ok(ChunkResult::Data(Vec::new()));
        }
        let mut out = None;
        let r = self.take(id, waker, |rx| {
            let c = rx.pop_chunk(max).unwrap_or_default();
            let n = c.len();
            out = Some(c);
            n
        })?;
        Ok(match r {
            ReadResult::Data(_) => ChunkResult::Data(out.unwrap_or_default()),
            ReadResult::Eof => ChunkResult::Eof,
            ReadResult::Pending => ChunkResult::Pending,
        })
    }

    /// Takes buffered data of stream `id` with `f` (which returns how many bytes it took) and
    /// does the accounting: budget, credit, forgetting a finished stream.
    fn take(
        &mut self,
        id: u32,
        waker: &Waker,
        f: impl FnOnce(&mut RecvBuf) -> usize,
    ) -> Result<ReadResult, MuxError> {
        let half = self.config.window / 2;
        let Some(s) = self.streams.get_mut(&id) else {
            return Err(self.failed.clone().unwrap_or(MuxError::Reset));
        };
        if s.reset {
            return Err(MuxError::Reset);
        }
        if s.rx.len() == 0 {
            if s.remote_fin {
                return Ok(ReadResult::Eof);
            }
            if let Some(e) = &self.failed {
                return Err(e.clone());
            }
            s.read_waker = Some(waker.clone());
            return Ok(ReadResult::Pending);
        }
        let before = s.rx.alloc();
        let n = f(&mut s.rx);
        let after = s.rx.alloc();
        self.rx_bytes = self.rx_bytes + after - before;
        self.impatient = false;
        if after < before
            && let Some(w) = self.room_waker.take()
        {
            w.wake();
        }
        s.consumed += n as u32;
        if s.consumed >= half && !s.remote_fin {
            let delta = std::mem::take(&mut s.consumed);
            self.push_credit(id, delta);
        }
        if s_finished(self, id) {
            self.forget(id);
        }
        Ok(ReadResult::Data(n))
    }

    /// How many bytes [`Core::write`] would take on stream `id` right now (within its credit,
    /// at most one frame), or `None` (with the waker registered) while it has no credit or
    /// the queue is full; the errors of `write`. Lets a forwarder take from its source only
    /// what the destination accepts, so nothing waits in between.
    pub fn write_room(&mut self, id: u32, waker: &Waker) -> Result<Option<usize>, MuxError> {
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
        if s.send_window == 0 {
            s.write_waker = Some(waker.clone());
            return Ok(None);
        }
        if over_queue {
            s.write_waker = Some(waker.clone());
            if !self.blocked_writers.contains(&id) {
                self.blocked_writers.push(id);
            }
            return Ok(None);
        }
        Ok(Some((s.send_window as usize).min(max)))
    }

    /// Queues up to one frame of `data` on stream `id`, within its credit (what
    /// [`Core::write_room`] allows).
    pub fn write(&mut self, id: u32, data: &[u8], waker: &Waker) -> Result<WriteResult, MuxError> {
        if data.is_empty() {
            // The same errors as a write with data, but never Pending.
            return self.write_room(id, waker).map(|_| WriteResult::Written(0));
        }
        let Some(room) = self.write_room(id, waker)? else {
            return Ok(WriteResult::Pending);
        };
        let n = data.len().min(room);
        self.push_data(id, data[..n].to_vec());
        Ok(WriteResult::Written(n))
    }

    /// As [`Core::write_room`], but while the credit is short of `want` bytes (a whole owned
    /// payload of at most a frame and half a window, which the peer's next window update is
    /// sure to make room for), `None` with the waker registered: a forwarder then moves the
    /// payload whole later instead of splitting it (a copy) now.
    pub fn write_room_for(
        &mut self,
        id: u32,
        want: usize,
        waker: &Waker,
    ) -> Result<Option<usize>, MuxError> {
        let room = self.write_room(id, waker)?;
        let whole = want.min(self.config.max_frame_data);
        if let Some(r) = room
            && r < whole
            && whole <= self.config.window as usize / 2
        {
            if let Some(s) = self.streams.get_mut(&id) {
                s.write_waker = Some(waker.clone());
            }
            return Ok(None);
        }
        Ok(room)
    }

    /// Bytes of the next owned chunk [`Core::read_chunk`] would give whole (0 if none).
    pub fn next_chunk_len(&self, id: u32) -> usize {
        self.streams.get(&id).map_or(0, |s| s.rx.front_len())
    }

    /// Queues `data` (within the credit [`Core::write_room`] found) as a data frame of
    /// stream `id`, spending its credit.
    fn push_data(&mut self, id: u32, data: Vec<u8>) {
        let s = self.streams.get_mut(&id).expect("write_room found it");
        let n = data.len();
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
            data,
            kind: Kind::Local,
        });
    }

    /// Queues the owned buffer `chunk` as data on stream `id` without copying it, as far as
    /// [`Core::write_room`] allows: taken whole when it fits (`chunk` is left `None`), or
    /// its first part when only that fits and waiting would not help (the rest, copied, is
    /// left in `chunk`); nothing (waker registered) while there is no room, or while the
    /// credit is short of a whole payload [`Core::write_room_for`] waits for.
    pub fn write_chunk(
        &mut self,
        id: u32,
        chunk: &mut Option<Vec<u8>>,
        waker: &Waker,
    ) -> Result<(), MuxError> {
        let want = chunk.as_ref().map_or(0, Vec::len);
        let Some(room) = self.write_room_for(id, want, waker)? else {
            return Ok(());
        };
        let Some(mut data) = chunk.take() else {
            return Ok(());
        };
        if data.is_empty() {
            return Ok(());
        }
        if data.len() > room {
            *chunk = Some(data.split_off(room));
        }
        self.push_data(id, data);
        Ok(())
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
            self.forget(id);
        }
    }

    /// Resets stream `id` (RST) and forgets it.
    pub fn reset(&mut self, id: u32) {
        if let Some(mut s) = self.forget(id) {
            self.impatient = false;
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
        if s.local_fin || (s.remote_fin && s.rx.len() == 0) {
            // Unread bytes are dropped; give their credit back so the peer is not left
            // waiting for a window nobody will open.
            let before = s.held();
            let unread = s.rx.clear() as u32;
            s.control = Vec::new();
            self.rx_bytes -= before;
            self.impatient = false;
            if let Some(w) = self.room_waker.take() {
                w.wake();
            }
            if unread > 0 && !s.remote_fin {
                self.push_credit(id, unread);
            }
            self.close(id);
            if s_finished(self, id) {
                self.forget(id);
            }
        } else {
            self.reset(id);
        }
    }

    /// Forgets a stream whose both directions are finished.
    fn gc(&mut self, id: u32) {
        if s_finished(self, id) {
            self.forget(id);
        }
    }

    /// Sends a ping; returns its opaque value (match it in [`Core::take_pong`]).
    pub fn ping(&mut self) -> Result<u32, MuxError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let opaque = self.next_ping;
        self.next_ping = self.next_ping.wrapping_add(1);
        if self.pings.len() >= MAX_PINGS {
            // Nobody waits for the oldest any more.
            self.pings.pop_front();
        }
        self.pings.push_back(opaque);
        self.push(OutFrame::control(Repr::ping(Flags::SYN, opaque)));
        Ok(opaque)
    }

    /// True (once) if the answer to ping `opaque` has arrived; otherwise registers `waker`.
    pub fn take_pong(&mut self, opaque: u32, waker: &Waker) -> Result<bool, MuxError> {
        if let Some(i) = self.pongs.iter().position(|p| *p == opaque) {
            self.pongs.remove(i);
            return Ok(true);
        }
        if let Some(e) = &self.failed {
            return Err(e.clone());
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
        add_waker(&mut self.end_wakers, waker);
        false
    }

    /// True once the peer sent a go-away.
    pub fn peer_went_away(&self) -> bool {
        self.peer_go_away.is_some()
    }
}

/// How much a stream's receive buffer grows at most to store `data`.
fn rx_growth(rx: &RecvBuf, data: &Payload<'_>) -> usize {
    match data {
        Payload::Borrowed(b) => rx.growth_for(b.len()),
        Payload::Owned(v) => rx.growth_for_owned(v, v.capacity()),
    }
}

fn s_finished(core: &Core, id: u32) -> bool {
    core.streams.get(&id).is_some_and(Stream::finished)
}

#[cfg(test)]
mod tests;
