//! Accepting streams by port: the pieces every carrier of overlay streams shares (the dmsg
//! client, TCP mode, the visor's local dials, the in-memory network, and the skynet router
//! next), below all of them. No I/O and no clock: queues, a port table and an allocator.
//!
//! - [`AcceptQueue`]: a bounded queue of arrived streams with the wakers of the tasks waiting
//!   in `accept`. A carrier first [reserves](AcceptQueue::reserve) a place (so it can answer
//!   "busy" before it tells the peer "accepted"), then delivers the stream into it.
//! - [`PortTable`]: `port → queue`, the table a listener binds in.
//! - [`PortSink`]: the one interface through which a carrier hands an arrived stream to
//!   whoever serves its port — its own [`PortTable`], or the visor's services registry
//!   (`crate::app::services`), which is fed by every carrier this way.
//! - [`Ephemeral`]: dialling ports, from [`EPHEMERAL_START`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Why an arrived stream was not taken; the carrier answers the peer with it (the dmsg port
/// status `01` / `02`, `docs/protocol.md` §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing serves the port (or its listener closed).
    Closed,
    /// The listener's backlog is full.
    Busy,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Closed => "nothing listens on that port",
            Refusal::Busy => "the listener's backlog is full",
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct QueueState<T> {
    items: VecDeque<T>,
    /// Places promised to carriers that have not delivered yet.
    reserved: usize,
    /// Tasks waiting in `accept` (each kept once).
    wakers: Vec<Waker>,
    closed: bool,
}

/// A bounded queue of arrived streams, for the tasks that accept them.
pub struct AcceptQueue<T> {
    state: Mutex<QueueState<T>>,
    cap: usize,
}

impl<T> fmt::Debug for AcceptQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.state);
        f.debug_struct("AcceptQueue")
            .field("len", &s.items.len())
            .field("reserved", &s.reserved)
            .field("cap", &self.cap)
            .field("closed", &s.closed)
            .finish()
    }
}

impl<T> AcceptQueue<T> {
    /// A queue holding at most `cap` streams (delivered or promised).
    pub fn new(cap: usize) -> AcceptQueue<T> {
        AcceptQueue {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                reserved: 0,
                wakers: Vec::new(),
                closed: false,
            }),
            cap,
        }
    }

    /// Streams waiting for `accept`.
    pub fn len(&self) -> usize {
        lock(&self.state).items.len()
    }

    /// True if no stream waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Promises a place for a stream that is about to be delivered.
    pub fn reserve(self: &Arc<Self>) -> Result<Reservation<T>, Refusal> {
        let mut s = lock(&self.state);
        if s.closed {
            return Err(Refusal::Closed);
        }
        if s.items.len() + s.reserved >= self.cap {
            return Err(Refusal::Busy);
        }
        s.reserved += 1;
        Ok(Reservation {
            queue: Some(self.clone()),
        })
    }

    /// Queues `item` at once; gives it back if the queue is full or closed.
    pub fn try_push(&self, item: T) -> Result<(), (Refusal, T)> {
        let mut s = lock(&self.state);
        if s.closed {
            return Err((Refusal::Closed, item));
        }
        if s.items.len() + s.reserved >= self.cap {
            return Err((Refusal::Busy, item));
        }
        s.items.push_back(item);
        wake_all(&mut s);
        Ok(())
    }

    /// Drops the waiting streams for which `keep` is false (peers that gave up).
    pub fn retain(&self, keep: impl FnMut(&T) -> bool) {
        lock(&self.state).items.retain(keep);
    }

    /// Closes the queue: no more streams are taken, the waiting ones are dropped, and
    /// `accept` returns `None`.
    pub fn close(&self) {
        let mut s = lock(&self.state);
        s.closed = true;
        let dropped = std::mem::take(&mut s.items);
        wake_all(&mut s);
        drop(s);
        drop(dropped);
    }

    /// The next stream, or `None` once the queue is closed.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = lock(&self.state);
        if let Some(item) = s.items.pop_front() {
            return Poll::Ready(Some(item));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        if !s.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            s.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Waits for the next stream; `None` once the queue is closed.
    pub async fn accept(&self) -> Option<T> {
        futures_lite::future::poll_fn(|cx| self.poll_accept(cx)).await
    }
}

fn wake_all<T>(s: &mut QueueState<T>) {
    for w in s.wakers.drain(..) {
        w.wake();
    }
}

/// A place promised in an [`AcceptQueue`]; given back if dropped undelivered.
pub struct Reservation<T> {
    queue: Option<Arc<AcceptQueue<T>>>,
}

impl<T> fmt::Debug for Reservation<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation").finish_non_exhaustive()
    }
}

impl<T> Reservation<T> {
    /// Queues `item` in the promised place; gives it back if the queue closed meanwhile.
    pub fn deliver(mut self, item: T) -> Result<(), T> {
        let q = self.queue.take().expect("a reservation is delivered once");
        let mut s = lock(&q.state);
        s.reserved -= 1;
        if s.closed {
            return Err(item);
        }
        s.items.push_back(item);
        wake_all(&mut s);
        Ok(())
    }
}

impl<T> Drop for Reservation<T> {
    fn drop(&mut self) {
        if let Some(q) = self.queue.take() {
            lock(&q.state).reserved -= 1;
        }
    }
}

/// A place for one arrived stream, as a carrier sees it (see [`PortSink`]).
pub trait Slot<S>: Send {
    /// Hands the stream over (after the carrier told the peer it was accepted).
    fn deliver(self: Box<Self>, stream: S);
}

impl<T: Send> Slot<T> for Reservation<T> {
    fn deliver(self: Box<Self>, stream: T) {
        // A listener that closed meanwhile drops the stream, which ends it.
        let _ = Reservation::deliver(*self, stream);
    }
}

/// Whoever serves the ports of a carrier: the carrier asks it for a place for each stream
/// that arrives (answering the peer with the refusal if there is none), then delivers.
pub trait PortSink<S>: Send + Sync + fmt::Debug {
    /// A place for a stream to `port`, or why there is none.
    fn reserve(&self, port: u16) -> Result<Box<dyn Slot<S>>, Refusal>;
    /// True if `port` is served (an ephemeral port must not take it).
    fn serves(&self, port: u16) -> bool;
}

/// `port → queue`: the ports a carrier (or the registry) serves.
pub struct PortTable<T> {
    ports: Mutex<HashMap<u16, Arc<AcceptQueue<T>>>>,
    backlog: usize,
}

impl<T> fmt::Debug for PortTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ports: Vec<u16> = lock(&self.ports).keys().copied().collect();
        crate::sort::sort(&mut ports);
        f.debug_struct("PortTable")
            .field("ports", &ports)
            .field("backlog", &self.backlog)
            .finish()
    }
}

impl<T> PortTable<T> {
    /// An empty table whose queues hold `backlog` streams each.
    pub fn new(backlog: usize) -> PortTable<T> {
        PortTable {
            ports: Mutex::new(HashMap::new()),
            backlog,
        }
    }

    /// Binds `port`; `None` if it is bound already.
    pub fn bind(&self, port: u16) -> Option<Arc<AcceptQueue<T>>> {
        let mut ports = lock(&self.ports);
        if ports.contains_key(&port) {
            return None;
        }
        let q = Arc::new(AcceptQueue::new(self.backlog));
        ports.insert(port, q.clone());
        Some(q)
    }

    /// Unbinds `port` if `queue` is what it is bound to, and closes the queue.
    pub fn unbind(&self, port: u16, queue: &Arc<AcceptQueue<T>>) {
        let mut ports = lock(&self.ports);
        if ports.get(&port).is_some_and(|q| Arc::ptr_eq(q, queue)) {
            ports.remove(&port);
        }
        drop(ports);
        queue.close();
    }

    /// True if `port` is bound.
    pub fn contains(&self, port: u16) -> bool {
        lock(&self.ports).contains_key(&port)
    }

    /// A place for a stream to `port`.
    pub fn reserve_in(&self, port: u16) -> Result<Reservation<T>, Refusal> {
        let q = lock(&self.ports).get(&port).cloned();
        q.ok_or(Refusal::Closed)?.reserve()
    }
}

impl<T: Send + 'static> PortSink<T> for PortTable<T> {
    fn reserve(&self, port: u16) -> Result<Box<dyn Slot<T>>, Refusal> {
        Ok(Box::new(self.reserve_in(port)?))
    }
    fn serves(&self, port: u16) -> bool {
        self.contains(port)
    }
}

/// The first dialling (ephemeral) port.
pub const EPHEMERAL_START: u16 = 49152;

/// Hands out dialling ports, `49152..=65535` in turn, skipping the ports a table serves.
#[derive(Debug)]
pub struct Ephemeral {
    next: AtomicU16,
}

impl Default for Ephemeral {
    fn default() -> Self {
        Ephemeral::new()
    }
}

impl Ephemeral {
    /// An allocator starting at [`EPHEMERAL_START`].
    pub const fn new() -> Ephemeral {
        Ephemeral {
            next: AtomicU16::new(EPHEMERAL_START),
        }
    }

    /// The next port for which `served` is false (when every one is served, the next one
    /// anyway: the port is a label of the stream, not an address that must be unique).
    pub fn next(&self, served: impl Fn(u16) -> bool) -> u16 {
        const SPAN: u32 = u16::MAX as u32 - EPHEMERAL_START as u32 + 1;
        let mut first = None;
        for _ in 0..SPAN {
            let p = self
                .next
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                    Some(if p == u16::MAX {
                        EPHEMERAL_START
                    } else {
                        p + 1
                    })
                })
                .unwrap_or(EPHEMERAL_START)
                .max(EPHEMERAL_START);
            first.get_or_insert(p);
            if !served(p) {
                return p;
            }
        }
        first.unwrap_or(EPHEMERAL_START)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    #[test]
    fn reserve_then_deliver_respects_the_backlog() {
        let q = Arc::new(AcceptQueue::new(2));
        let a = q.reserve().unwrap();
        q.try_push(1).unwrap();
        assert_eq!(q.reserve().unwrap_err(), Refusal::Busy);
        assert_eq!(q.try_push(9).unwrap_err(), (Refusal::Busy, 9));
        a.deliver(2).unwrap();
        assert_eq!(block_on(q.accept()), Some(1));
        assert_eq!(block_on(q.accept()), Some(2));
        // A dropped reservation gives its place back.
        drop(q.reserve().unwrap());
        drop(q.reserve().unwrap());
        q.try_push(3).unwrap();
        q.try_push(4).unwrap();
        q.retain(|x| *x != 3);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn close_ends_accept_and_refuses_deliveries() {
        let q = Arc::new(AcceptQueue::new(4));
        let r = q.reserve().unwrap();
        q.try_push(1).unwrap();
        q.close();
        assert_eq!(r.deliver(5), Err(5));
        assert_eq!(block_on(q.accept()), None);
        assert_eq!(q.reserve().unwrap_err(), Refusal::Closed);
    }

    #[test]
    fn every_waiting_task_is_woken() {
        let q = Arc::new(AcceptQueue::<u8>::new(4));
        let (w1, c1) = counting_waker();
        let (w2, c2) = counting_waker();
        assert!(q.poll_accept(&mut Context::from_waker(&w1)).is_pending());
        assert!(q.poll_accept(&mut Context::from_waker(&w1)).is_pending());
        assert!(q.poll_accept(&mut Context::from_waker(&w2)).is_pending());
        q.try_push(7).unwrap();
        assert_eq!(c1.load(Ordering::Relaxed), 1);
        assert_eq!(c2.load(Ordering::Relaxed), 1);
    }

    fn counting_waker() -> (Waker, Arc<std::sync::atomic::AtomicUsize>) {
        struct W(Arc<std::sync::atomic::AtomicUsize>);
        impl std::task::Wake for W {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        (Waker::from(Arc::new(W(n.clone()))), n)
    }

    #[test]
    fn table_binds_once_and_refuses_unbound_ports() {
        let t = PortTable::<u8>::new(1);
        let q = t.bind(5).unwrap();
        assert!(t.bind(5).is_none());
        assert_eq!(t.reserve_in(6).unwrap_err(), Refusal::Closed);
        let slot = PortSink::reserve(&t, 5).unwrap();
        assert_eq!(t.reserve_in(5).unwrap_err(), Refusal::Busy);
        slot.deliver(3);
        assert_eq!(block_on(q.accept()), Some(3));
        t.unbind(5, &q);
        assert!(!t.serves(5));
        assert_eq!(block_on(q.accept()), None);
    }

    #[test]
    fn ephemeral_ports_skip_served_ones_and_wrap() {
        let e = Ephemeral::new();
        assert_eq!(e.next(|_| false), 49152);
        assert_eq!(e.next(|p| p == 49153), 49154);
        e.next.store(u16::MAX, Ordering::Relaxed);
        assert_eq!(e.next(|_| false), u16::MAX);
        assert_eq!(e.next(|_| false), EPHEMERAL_START);
        // All served: still a port, and no endless loop.
        assert!(e.next(|_| true) >= EPHEMERAL_START);
    }
}
