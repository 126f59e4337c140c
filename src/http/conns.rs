//! Who holds a server's connections, so that idle sockets cannot lock everyone else out.
//!
//! Every accepted connection takes a slot in a [`ConnTable`] shared by the listener. A slot is
//! *idle* while the connection waits for the first byte of a request (just accepted, or kept
//! alive between requests) and *busy* from that byte until its response is written. When a new
//! connection would exceed a limit, an idle one is closed to make room (shed) instead of the
//! new one being refused:
//!
//! - per source address (an IPv4 address, or an IPv6 /64): at `max_per_addr` the address's
//!   longest-idle connection is shed; if all of its connections are busy, the new one is
//!   refused. All local clients share 127.0.0.1, so for loopback surfaces shedding is what
//!   keeps the CLI working next to a flood of idle sockets;
//! - in total: at `max_total` the longest-idle connection of the address holding the most
//!   connections is shed (so one address's flood of idle sockets goes before anyone else's);
//!   if every connection is busy, the new one is refused.
//!
//! Overlay listeners count per peer public key instead of per address ([`AddrKey::Key`]).
//!
//! A shed connection had no request in flight, so closing it loses nothing (HTTP clients retry
//! on a kept-alive connection closed before their request). Busy connections are bounded by
//! the request timeout instead.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Instant;

/// The unit limits are counted in: an IPv4 address, or the /64 of an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrKey {
    /// An IPv4 address (IPv4-mapped IPv6 addresses count as IPv4).
    V4(std::net::Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
    /// An overlay peer's public key.
    Key(crate::crypto::PublicKey),
}

impl AddrKey {
    /// The key `ip` is counted under.
    pub fn of(ip: IpAddr) -> AddrKey {
        match ip.to_canonical() {
            IpAddr::V4(a) => AddrKey::V4(a),
            IpAddr::V6(a) => AddrKey::V6((u128::from(a) >> 64) as u64),
        }
    }
}

impl fmt::Display for AddrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrKey::V4(a) => write!(f, "{a}"),
            AddrKey::V6(p) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*p) << 64)),
            AddrKey::Key(k) => write!(f, "{k}"),
        }
    }
}

/// A close request for one connection: fired once, awaited by the connection's task.
#[derive(Debug, Default)]
struct Signal(Mutex<(bool, Option<Waker>)>);

impl Signal {
    fn lock(&self) -> MutexGuard<'_, (bool, Option<Waker>)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fire(&self) {
        let waker = {
            let mut s = self.lock();
            s.0 = true;
            s.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn wait(&self) -> impl Future<Output = ()> + '_ {
        futures_lite::future::poll_fn(move |cx| {
            let mut s = self.lock();
            if s.0 {
                Poll::Ready(())
            } else {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

#[derive(Debug)]
struct Entry {
    key: AddrKey,
    /// `Some(since)` while idle.
    idle_since: Option<Instant>,
    close: Arc<Signal>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Entry>,
    per_addr: HashMap<AddrKey, usize>,
    shed: u64,
    refused: u64,
}

impl Inner {
    /// Removes connection `id` (counts included); returns its entry.
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.conns.remove(&id)?;
        if let Some(n) = self.per_addr.get_mut(&e.key) {
            *n -= 1;
            if *n == 0 {
                self.per_addr.remove(&e.key);
            }
        }
        Some(e)
    }

    /// Sheds the longest-idle connection of `key`, or (no key) of the address holding the
    /// most connections among those with an idle one; false if none is idle.
    fn shed_one(&mut self, key: Option<AddrKey>) -> bool {
        let held = |k: &AddrKey| self.per_addr.get(k).copied().unwrap_or(0);
        let victim = self
            .conns
            .iter()
            .filter(|(_, e)| key.is_none_or(|k| e.key == k))
            .filter_map(|(id, e)| {
                e.idle_since
                    .map(|t| (std::cmp::Reverse(held(&e.key)), t, *id))
            })
            .min();
        match victim.and_then(|(_, _, id)| self.remove(id)) {
            Some(e) => {
                e.close.fire();
                self.shed += 1;
                true
            }
            None => false,
        }
    }
}

/// Counters, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnStats {
    /// Connections holding a slot now.
    pub open: usize,
    /// Idle connections closed to make room, since the start.
    pub shed: u64,
    /// Connections refused because every slot they could take was busy.
    pub refused: u64,
}

/// The connections of one listener.
#[derive(Debug)]
pub struct ConnTable {
    inner: Mutex<Inner>,
    max_total: usize,
    max_per_addr: usize,
}

impl ConnTable {
    /// A table admitting `max_total` connections, `max_per_addr` per source address.
    pub fn new(max_total: usize, max_per_addr: usize) -> Arc<ConnTable> {
        Arc::new(ConnTable {
            inner: Mutex::new(Inner::default()),
            max_total: max_total.max(1),
            max_per_addr: max_per_addr.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection from `ip` (idle until it sends), shedding an idle
    /// connection when a limit is reached; `Err` says why there is no room.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, String> {
        self.admit_key(AddrKey::of(ip))
    }

    /// [`ConnTable::admit`] for a connection counted under `key` (an overlay peer's key).
    pub fn admit_key(self: &Arc<Self>, key: AddrKey) -> Result<Slot, String> {
        let mut t = self.lock();
        if t.per_addr.get(&key).copied().unwrap_or(0) >= self.max_per_addr && !t.shed_one(Some(key))
        {
            t.refused += 1;
            return Err(format!(
                "too many connections from {key} ({} busy); try again shortly",
                self.max_per_addr
            ));
        }
        if t.conns.len() >= self.max_total && !t.shed_one(None) {
            t.refused += 1;
            return Err("too many connections; try again shortly".to_string());
        }
        let id = t.next_id;
        t.next_id += 1;
        let close = Arc::new(Signal::default());
        t.conns.insert(
            id,
            Entry {
                key,
                idle_since: Some(Instant::now()),
                close: close.clone(),
            },
        );
        *t.per_addr.entry(key).or_insert(0) += 1;
        Ok(Slot {
            table: self.clone(),
            id,
            key,
            close,
        })
    }

    /// The counters.
    pub fn stats(&self) -> ConnStats {
        let t = self.lock();
        ConnStats {
            open: t.conns.len(),
            shed: t.shed,
            refused: t.refused,
        }
    }
}

/// One connection's place in a [`ConnTable`]; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    table: Arc<ConnTable>,
    id: u64,
    key: AddrKey,
    close: Arc<Signal>,
}

impl Slot {
    /// The connection waits for a request: it may be shed from now on.
    pub fn idle(&self) {
        if let Some(e) = self.table.lock().conns.get_mut(&self.id) {
            e.idle_since = Some(Instant::now());
        }
    }

    /// The connection started a request: it is not shed while busy. False when it was shed
    /// already (the caller closes it).
    pub fn busy(&self) -> bool {
        match self.table.lock().conns.get_mut(&self.id) {
            Some(e) => {
                e.idle_since = None;
                true
            }
            None => false,
        }
    }

    /// Resolves when the connection has been shed.
    pub fn shed(&self) -> impl Future<Output = ()> + '_ {
        self.close.wait()
    }

    /// True when the table or this address is at three quarters of its limit or more: idle
    /// waits are shortened then.
    pub fn under_pressure(&self) -> bool {
        let t = self.table.lock();
        t.conns.len() * 4 >= self.table.max_total * 3
            || t.per_addr.get(&self.key).copied().unwrap_or(0) * 4 >= self.table.max_per_addr * 3
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_limit_sheds_that_address_idle_first() {
        let t = ConnTable::new(10, 2);
        let a1 = t.admit(ip("127.0.0.1")).unwrap();
        let a2 = t.admit(ip("127.0.0.1")).unwrap();
        let b = t.admit(ip("127.0.0.2")).unwrap();
        assert!(a2.busy());
        // A third from .1 sheds a1 (idle), not a2 (busy) nor b (another address).
        let a3 = t.admit(ip("::ffff:127.0.0.1")).unwrap();
        assert!(!a1.busy() && a2.busy() && b.busy());
        futures_lite::future::block_on(a1.shed());
        // .1 now has a2 and a3 busy: the next from .1 is refused.
        assert!(a3.busy());
        assert!(t.admit(ip("127.0.0.1")).is_err());
        assert_eq!(
            t.stats(),
            ConnStats {
                open: 3,
                shed: 1,
                refused: 1
            }
        );
        drop((a1, a2, a3, b));
        assert_eq!(t.stats().open, 0);
    }

    #[test]
    fn global_limit_sheds_longest_idle_then_refuses() {
        let t = ConnTable::new(3, 3);
        let s: Vec<Slot> = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
            .iter()
            .map(|a| t.admit(ip(a)).unwrap())
            .collect();
        s[1].idle();
        assert!(s[2].under_pressure());
        let n = t.admit(ip("10.0.0.4")).unwrap();
        // s[0] was idle longest.
        assert!(!s[0].busy());
        assert!(s[1].busy() && s[2].busy() && n.busy());
        assert!(t.admit(ip("10.0.0.5")).is_err());
    }

    #[test]
    fn when_full_the_key_holding_the_most_loses_an_idle_one() {
        let t = ConnTable::new(4, 3);
        let k = |n: u8| AddrKey::Key(*crate::crypto::Keypair::from_seed(&[n; 32]).public());
        // The reader's connection is the oldest idle one, but key 1 holds three.
        let reader = t.admit_key(k(9)).unwrap();
        let many: Vec<Slot> = (0..3).map(|_| t.admit_key(k(1)).unwrap()).collect();
        let newcomer = t.admit_key(k(2)).unwrap();
        assert!(reader.busy() && newcomer.busy());
        assert!(!many[0].busy() && many[1].busy());
        assert_eq!(t.stats().shed, 1);
        // Every connection busy now: the next one is refused.
        assert!(many[2].busy());
        assert!(t.admit_key(k(1)).is_err());
        assert!(k(1).to_string().len() == 64);
    }

    #[test]
    fn ipv6_counts_per_64() {
        let t = ConnTable::new(10, 1);
        let a = t.admit(ip("2001:db8::1")).unwrap();
        assert!(a.busy());
        assert!(t.admit(ip("2001:db8::2")).is_err());
        assert!(t.admit(ip("2001:db8:0:1::2")).is_ok());
        assert_eq!(AddrKey::of(ip("2001:db8::1")).to_string(), "2001:db8::/64");
    }
}
