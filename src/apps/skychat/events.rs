//! The event hub: every message and status change gets a sequence number and goes into a
//! bounded ring (for `since` replays) and to each live subscriber's bounded queue. A
//! subscriber that falls [`SUB_BUFFER`] events behind is ended (counted), and resumes with
//! `since`; a slow client never holds memory or the publisher.
//!
//! Seq is process-wide, starting at the unix time in ms of the hub's creation, so it keeps
//! increasing across restarts in practice.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_lite::future::poll_fn;

use super::group::GroupId;
use super::proto::MsgId;
use crate::crypto::PublicKey;
use crate::http::json::{Ordered, Out};

/// Events a subscriber may have queued before it is ended.
pub const SUB_BUFFER: usize = 256;

/// Milliseconds since the unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Which way a message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Received.
    In,
    /// Sent.
    Out,
}

impl Dir {
    /// `in` | `out`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
        }
    }
}

/// An event's channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// Direct messages.
    Dm,
    /// The app's own notices.
    System,
    /// Group posts (`group` set on the event).
    Group,
    /// Pairing: pair messages (kind message) and invite/accept/decline/remove (kind status,
    /// `status` naming it).
    Pair,
}

impl Channel {
    /// `dm` | `system` | `group` | `pair`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Channel::Dm => "dm",
            Channel::System => "system",
            Channel::Group => "group",
            Channel::Pair => "pair",
        }
    }

    /// Parses `dm`, `system`, `group`, `pair`.
    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "dm" => Some(Channel::Dm),
            "system" => Some(Channel::System),
            "group" => Some(Channel::Group),
            "pair" => Some(Channel::Pair),
            _ => None,
        }
    }

    /// Every channel.
    pub const ALL: &'static [Channel] =
        &[Channel::Dm, Channel::System, Channel::Group, Channel::Pair];
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A message (in or out).
    Message,
    /// A message's status changed (`received`, `read`, `failed`).
    Status,
    /// A notice.
    System,
}

/// One event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Assigned by [`Hub::publish`].
    pub seq: u64,
    /// When (unix ms); 0 in a published body = now.
    pub ts_ms: u64,
    /// Its channel.
    pub channel: Channel,
    /// What happened.
    pub kind: Kind,
    /// The message concerned.
    pub id: MsgId,
    /// Its direction.
    pub dir: Dir,
    /// Sender.
    pub from: PublicKey,
    /// Recipient.
    pub to: PublicKey,
    /// `dmsg` | `skynet` | `tcp-direct` | `local` | `unknown`.
    pub transport: &'static str,
    /// The text.
    pub text: String,
    /// The message it answers.
    pub reply_to: Option<MsgId>,
    /// For status events.
    pub status: Option<&'static str>,
    /// True for history replayed to a new client.
    pub history: bool,
    /// A group post: the group, its seq in the group's feed and the author's time (unix ms).
    pub group: Option<(GroupId, u64, u64)>,
}

fn kind_str(k: Kind) -> &'static str {
    match k {
        Kind::Message => "message",
        Kind::Status => "status",
        Kind::System => "system",
    }
}

impl Event {
    /// A group post's form (`/events` and `/sse` alike): `group`, its `seq` in the group,
    /// `from`, `text`, `ts`, and the hub's seq as `event_seq`.
    pub fn group_json(&self) -> Option<String> {
        let (g, seq, ts) = self.group?;
        Some(
            Ordered::new()
                .field("channel", Out::Str("group".into()))
                .field("type", Out::Str(kind_str(self.kind).into()))
                .field("group", Out::Str(g.to_hex()))
                .field("seq", Out::U64(seq))
                .field("id", Out::Str(self.id.to_string()))
                .field("from", Out::Str(self.from.to_string()))
                .field("text", Out::Str(self.text.clone()))
                .field("ts", Out::U64(ts))
                .field("dir", Out::Str(self.dir.as_str().into()))
                .field("event_seq", Out::U64(self.seq))
                .to_compact(),
        )
    }

    /// A pairing event's form (`/events`): `channel` `pair`, `type` `message` or the
    /// pairing step (`invite`, `accepted`, `declined`, `removed`), the other visor as `peer`.
    pub fn pair_json(&self) -> Option<String> {
        if self.channel != Channel::Pair {
            return None;
        }
        let ty = match self.kind {
            Kind::Message => "message",
            _ => self.status.unwrap_or("status"),
        };
        let peer = if self.dir == Dir::In {
            self.from
        } else {
            self.to
        };
        let mut o = Ordered::new()
            .field("seq", Out::U64(self.seq))
            .field("id", Out::Str(self.id.to_string()))
            .field("ts", Out::U64(self.ts_ms))
            .field("channel", Out::Str("pair".into()))
            .field("type", Out::Str(ty.into()))
            .field("dir", Out::Str(self.dir.as_str().into()))
            .field("peer", Out::Str(peer.to_string()))
            .field("from", Out::Str(self.from.to_string()))
            .field("to", Out::Str(self.to.to_string()));
        if self.kind == Kind::Message {
            o = o
                .field("text", Out::Str(self.text.clone()))
                .field("len", Out::U64(self.text.len() as u64));
        }
        Some(o.to_compact())
    }

    /// The structured form (`/events`).
    pub fn structured_json(&self) -> String {
        if let Some(j) = self.group_json() {
            return j;
        }
        if let Some(j) = self.pair_json() {
            return j;
        }
        let mut o = Ordered::new()
            .field("seq", Out::U64(self.seq))
            .field("id", Out::Str(self.id.to_string()))
            .field("ts", Out::U64(self.ts_ms))
            .field("channel", Out::Str(self.channel.as_str().into()))
            .field("type", Out::Str(kind_str(self.kind).into()))
            .field("transport", Out::Str(self.transport.into()))
            .field("dir", Out::Str(self.dir.as_str().into()))
            .field("from", Out::Str(self.from.to_string()))
            .field("to", Out::Str(self.to.to_string()))
            .field("text", Out::Str(self.text.clone()))
            .field(
                "reply_to_id",
                Out::Str(self.reply_to.map(|r| r.to_string()).unwrap_or_default()),
            )
            .field("len", Out::U64(self.text.len() as u64));
        if let Some(s) = self.status {
            o = o.field("status", Out::Str(s.into()));
        }
        o.to_compact()
    }

    /// The legacy form (`/sse`, Go's field names); `me` is this app's PK.
    pub fn legacy_json(&self, me: &PublicKey) -> String {
        if let Some(j) = self.group_json() {
            return j;
        }
        if self.kind == Kind::Status {
            let peer = if self.from == *me { self.to } else { self.from };
            return Ordered::new()
                .field("type", Out::Str("dm-status".into()))
                .field("id", Out::Str(self.id.to_string()))
                .field("status", Out::Str(self.status.unwrap_or("").into()))
                .field("peer", Out::Str(peer.to_string()))
                .to_compact();
        }
        let mut o = Ordered::new()
            .field("sender", Out::Str(self.from.to_string()))
            .field("message", Out::Str(self.text.clone()))
            .field("network", Out::Str(self.transport.into()))
            .field("dir", Out::Str(self.dir.as_str().into()))
            .field("id", Out::Str(self.id.to_string()))
            .field("len", Out::U64(self.text.len() as u64));
        if self.dir == Dir::Out {
            o = o.field("to", Out::Str(self.to.to_string()));
        }
        if let Some(r) = self.reply_to {
            o = o.field("reply_to_id", Out::Str(r.to_string()));
        }
        if self.history {
            o = o.field("history", Out::Str("true".into()));
        }
        o.to_compact()
    }
}

/// `since` asked for events the ring no longer holds: the oldest it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The oldest seq still kept (0 = the ring is empty).
    pub oldest: u64,
}

struct SubState {
    channels: Vec<Channel>,
    queue: VecDeque<Arc<Event>>,
    ended: bool,
    waker: Option<Waker>,
}

struct Inner {
    ring: VecDeque<Arc<Event>>,
    cap: usize,
    max_age: Duration,
    next: u64,
    subs: Vec<Arc<Mutex<SubState>>>,
}

/// The hub (cheap to clone).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Mutex<Inner>>,
    drops: Arc<AtomicU64>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("head", &self.head()).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    /// A hub keeping at most `ring` events, none older than `max_age`.
    pub fn new(ring: usize, max_age: Duration) -> Hub {
        Hub {
            inner: Arc::new(Mutex::new(Inner {
                ring: VecDeque::new(),
                cap: ring.max(1),
                max_age,
                next: now_ms().max(1),
                subs: Vec::new(),
            })),
            drops: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Publishes `ev` (its seq is assigned here; ts 0 = now); returns the seq.
    pub fn publish(&self, mut ev: Event) -> u64 {
        let mut g = lock(&self.inner);
        ev.seq = g.next;
        g.next += 1;
        if ev.ts_ms == 0 {
            ev.ts_ms = now_ms();
        }
        let ev = Arc::new(ev);
        let cutoff = ev.ts_ms.saturating_sub(g.max_age.as_millis() as u64);
        while g.ring.len() >= g.cap || g.ring.front().is_some_and(|e| e.ts_ms < cutoff) {
            g.ring.pop_front();
        }
        g.ring.push_back(ev.clone());
        let mut dropped = 0;
        g.subs.retain(|s| {
            let mut s = lock(s);
            if s.ended {
                return false;
            }
            if !s.channels.contains(&ev.channel) {
                return true;
            }
            if s.queue.len() >= SUB_BUFFER {
                s.ended = true;
                s.queue.clear();
                dropped += 1;
            } else {
                s.queue.push_back(ev.clone());
            }
            if let Some(w) = s.waker.take() {
                w.wake();
            }
            !s.ended
        });
        self.drops.fetch_add(dropped, Ordering::Relaxed);
        ev.seq
    }

    /// The kept events after `seq` on `channels`, oldest first; [`Gap`] if some after `seq`
    /// are no longer kept.
    pub fn since(&self, seq: u64, channels: &[Channel]) -> Result<Vec<Arc<Event>>, Gap> {
        let g = lock(&self.inner);
        let cutoff = now_ms().saturating_sub(g.max_age.as_millis() as u64);
        let kept: Vec<&Arc<Event>> = g.ring.iter().filter(|e| e.ts_ms >= cutoff).collect();
        let oldest = kept.first().map(|e| e.seq).unwrap_or(g.next);
        if oldest > seq + 1 && seq + 1 < g.next {
            return Err(Gap { oldest });
        }
        Ok(kept
            .into_iter()
            .filter(|e| e.seq > seq && channels.contains(&e.channel))
            .cloned()
            .collect())
    }

    /// The kept events on `channels` (for a client that cannot be served from `since`).
    pub fn kept(&self, channels: &[Channel]) -> Vec<Arc<Event>> {
        self.since(0, channels).unwrap_or_else(|g| {
            self.since(g.oldest.saturating_sub(1), channels)
                .unwrap_or_default()
        })
    }

    /// A live subscription to `channels` from now on.
    pub fn subscribe(&self, channels: &[Channel]) -> Sub {
        let s = Arc::new(Mutex::new(SubState {
            channels: channels.to_vec(),
            queue: VecDeque::new(),
            ended: false,
            waker: None,
        }));
        lock(&self.inner).subs.push(s.clone());
        Sub(s)
    }

    /// Live subscribers.
    pub fn subscribers(&self) -> usize {
        let mut g = lock(&self.inner);
        g.subs
            .retain(|s| !lock(s).ended && Arc::strong_count(s) > 1);
        g.subs.len()
    }

    /// The last seq assigned (0 before the first event of... never: seq starts at the clock).
    pub fn head(&self) -> u64 {
        lock(&self.inner).next - 1
    }

    /// Subscribers ended for falling behind.
    pub fn drop_count(&self) -> u64 {
        self.drops.load(Ordering::Relaxed)
    }
}

/// A subscription; dropping it unsubscribes.
pub struct Sub(Arc<Mutex<SubState>>);

impl std::fmt::Debug for Sub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sub")
            .field("queued", &lock(&self.0).queue.len())
            .finish()
    }
}

impl Sub {
    /// The next event; `None` once ended (it fell [`SUB_BUFFER`] behind: resume with `since`).
    pub async fn next(&self) -> Option<Arc<Event>> {
        poll_fn(|cx| {
            let mut s = lock(&self.0);
            if let Some(e) = s.queue.pop_front() {
                return Poll::Ready(Some(e));
            }
            if s.ended {
                return Poll::Ready(None);
            }
            s.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        lock(&self.0).ended = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use futures_lite::future::block_on;

    fn ev(channel: Channel, text: &str) -> Event {
        let pk = *Keypair::from_seed(&[1; 32]).public();
        Event {
            seq: 0,
            ts_ms: 0,
            channel,
            kind: Kind::Message,
            id: MsgId(7),
            dir: Dir::In,
            from: pk,
            to: pk,
            transport: "dmsg",
            text: text.into(),
            reply_to: None,
            status: None,
            history: false,
            group: None,
        }
    }

    #[test]
    fn seq_is_monotonic_and_since_reports_gaps() {
        let hub = Hub::new(4, Duration::from_secs(3600));
        let first = hub.publish(ev(Channel::Dm, "a"));
        assert!(first >= now_ms() - 10_000, "seq starts at the clock");
        let mut last = first;
        for i in 0..5 {
            let s = hub.publish(ev(
                if i % 2 == 0 {
                    Channel::System
                } else {
                    Channel::Dm
                },
                "b",
            ));
            assert_eq!(s, last + 1);
            last = s;
        }
        assert_eq!(hub.head(), last);
        // The ring keeps 4: first+2 ..= first+5.
        assert_eq!(
            hub.since(first, Channel::ALL),
            Err(Gap { oldest: first + 2 })
        );
        let got = hub.since(first + 2, Channel::ALL).unwrap();
        assert_eq!(
            got.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [first + 3, first + 4, first + 5]
        );
        let dm = hub.since(first + 1, &[Channel::Dm]).unwrap();
        assert!(dm.iter().all(|e| e.channel == Channel::Dm));
        assert_eq!(dm.len(), 2);
        assert!(hub.since(last, Channel::ALL).unwrap().is_empty());
        assert_eq!(hub.kept(Channel::ALL).len(), 4);
    }

    #[test]
    fn old_events_expire() {
        let hub = Hub::new(100, Duration::from_secs(24 * 3600));
        let mut old = ev(Channel::Dm, "old");
        old.ts_ms = now_ms() - 25 * 3600 * 1000;
        let s = hub.publish(old);
        let s2 = hub.publish(ev(Channel::Dm, "new"));
        let got = hub.kept(Channel::ALL);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].seq, s2);
        assert_eq!(hub.since(s - 1, Channel::ALL), Err(Gap { oldest: s2 }));
    }

    #[test]
    fn slow_subscriber_is_ended_not_buffered() {
        let hub = Hub::new(10, Duration::from_secs(3600));
        let sub = hub.subscribe(&[Channel::Dm]);
        let other = hub.subscribe(&[Channel::System]);
        assert_eq!(hub.subscribers(), 2);
        for _ in 0..SUB_BUFFER {
            hub.publish(ev(Channel::Dm, "x"));
        }
        assert_eq!(hub.drop_count(), 0);
        let e = block_on(sub.next()).unwrap();
        assert_eq!(e.text, "x");
        hub.publish(ev(Channel::Dm, "y"));
        hub.publish(ev(Channel::Dm, "z"));
        assert_eq!(hub.drop_count(), 1);
        assert_eq!(block_on(sub.next()), None);
        assert_eq!(hub.subscribers(), 1);
        hub.publish(ev(Channel::System, "s"));
        assert_eq!(block_on(other.next()).unwrap().text, "s");
        drop(other);
        assert_eq!(hub.subscribers(), 0);
    }
}
