//! The group service (docs/protocol.md "Skychat groups: messages"): the IO around the
//! sans-IO core in [`super::group`]. It owns the groups this visor hosts ([`OwnerFeed`],
//! keyring, subscribers, invite secrets) and the groups it joined ([`MemberFeed`], keyring,
//! subscription), answers the `group-*` envelopes [`Chat`] hands it, and keeps every group
//! in `<app dir>/groups/<id>/` ([`disk`]). Every entry is in the feed log, synced, before it
//! is pushed, acknowledged or shown: small synchronous writes (one `fdatasync` each) made
//! while the group's lock is held, so entries reach the log in seq order.

pub mod disk;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use async_executor::Executor;
use async_io::Timer;
use futures_lite::future::{self, poll_fn};

use super::chat::{Bucket, Chat, Link};
use super::events::{Channel, Dir, Event, Hub, Kind, now_ms};
use super::group::entry::{self, Draft};
use super::group::invite::{Access, Invite};
use super::group::wire::{BATCH_BYTES, BATCH_ENTRIES, GroupMsg};
use super::group::{
    Body, FEED_CAP, FeedLimits, GroupId, GroupState, Keyring, MemberFeed, Mode, OwnerFeed, Refusal,
    Role, Submitted, UnsequencedEntry,
};
use super::proto::{Envelope, MsgId};
use crate::crypto::{Keypair, PublicKey};
use crate::spawn::Spawn;
use disk::{FeedLog, MAX_SECRETS, Meta};

/// Groups one visor holds (owned and joined).
pub const MAX_GROUPS: usize = 64;
/// `group-join`s accepted per 10 s from one peer (burst twice that).
pub const JOIN_RATE: u32 = 20;
/// `group-submit`s accepted per 10 s from one peer (burst twice that).
pub const SUBMIT_RATE: u32 = 200;
/// How long a join or a submission waits for the owner.
pub const OWNER_WAIT: Duration = Duration::from_secs(10);
/// How often a member without a live subscription tries again.
pub const RESUB_EVERY: Duration = Duration::from_secs(5);

/// A post as history shows it.
#[derive(Clone, Debug)]
pub struct Post {
    /// Its seq.
    pub seq: u64,
    /// The author.
    pub from: PublicKey,
    /// The author's time (unix ms).
    pub ts_ms: u64,
    /// The text, or why it cannot be read.
    pub text: Result<String, String>,
}

/// Why a request failed, with its HTTP status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fail(pub u16, pub String);

fn fail(code: u16, msg: impl Into<String>) -> Fail {
    Fail(code, msg.into())
}

/// A group's summary (GroupInfo).
#[derive(Clone, Debug)]
pub struct Info {
    #[allow(missing_docs)]
    pub id: GroupId,
    #[allow(missing_docs)]
    pub name: String,
    #[allow(missing_docs)]
    pub owner: PublicKey,
    #[allow(missing_docs)]
    pub port: u16,
    #[allow(missing_docs)]
    pub mode: Mode,
    /// This visor's role (None: no longer on the roster).
    pub role: Option<Role>,
    #[allow(missing_docs)]
    pub members: Vec<PublicKey>,
    #[allow(missing_docs)]
    pub admins: Vec<PublicKey>,
    #[allow(missing_docs)]
    pub last_seq: u64,
    #[allow(missing_docs)]
    pub last_message_at: u64,
    #[allow(missing_docs)]
    pub created_at: u64,
    #[allow(missing_docs)]
    pub subscriber_alive: bool,
    /// Owner: live subscribers.
    pub subscribers: Option<usize>,
    #[allow(missing_docs)]
    pub deleted: bool,
}

enum Side {
    Owner {
        feed: Box<OwnerFeed>,
        /// One pusher per subscribed connection (by [`Link::id`]): its peer and its rewind
        /// request (`u64::MAX` for none; a second `group-sub` on the same connection lowers
        /// it instead of starting a second pusher).
        subs: HashMap<u64, (PublicKey, Arc<AtomicU64>)>,
    },
    Member {
        feed: MemberFeed,
        sub: Option<Link>,
        refused: Option<String>,
    },
}

struct Data {
    side: Side,
    meta: Meta,
    ring: Keyring,
    log: FeedLog,
    posts: VecDeque<(u64, UnsequencedEntry)>,
    last_message_at: u64,
}

impl Data {
    fn state(&self) -> &GroupState {
        match &self.side {
            Side::Owner { feed, .. } => feed.state(),
            Side::Member { feed, .. } => feed.state(),
        }
    }

    fn note(&mut self, seq: u64, e: &UnsequencedEntry) {
        if let Body::Post(_) = e.body {
            self.posts.push_back((seq, e.clone()));
            while self.posts.len() > FEED_CAP {
                self.posts.pop_front();
            }
            self.last_message_at = self.last_message_at.max(e.ts_ms);
        }
    }

    fn text(&self, e: &UnsequencedEntry) -> Result<String, String> {
        let Body::Post(b) = &e.body else {
            return Err("not a post".into());
        };
        if self.state().mode() == Mode::Public {
            return Ok(String::from_utf8_lossy(b).into_owned());
        }
        self.ring.open_entry(e).map_err(|err| match err {
            super::group::crypt::CryptError::NoKey(n) => format!("no key for epoch {n}"),
            other => other.to_string(),
        })
    }
}

/// A wake-up for a group's pushers.
#[derive(Default)]
struct Notify {
    inner: Mutex<(u64, Vec<Waker>)>,
}

impl Notify {
    fn generation(&self) -> u64 {
        lock(&self.inner).0
    }
    fn wake(&self) {
        let mut g = lock(&self.inner);
        g.0 += 1;
        for w in g.1.drain(..) {
            w.wake();
        }
    }
    async fn changed(&self, since: u64) {
        poll_fn(|cx| {
            let mut g = lock(&self.inner);
            if g.0 != since {
                Poll::Ready(())
            } else {
                g.1.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

struct Group {
    id: GroupId,
    dir: PathBuf,
    data: Mutex<Data>,
    notify: Notify,
}

/// A wait for the owner: none yet, a seq, or the refusal.
type Answer = Option<Result<u64, String>>;

struct Inner {
    keys: Keypair,
    dir: PathBuf,
    hub: Hub,
    ex: Arc<Executor<'static>>,
    groups: Mutex<HashMap<GroupId, Arc<Group>>>,
    rate: Mutex<HashMap<(PublicKey, bool), Bucket>>,
    waits: Mutex<HashMap<(GroupId, u64), Answer>>,
    joining: Mutex<HashSet<GroupId>>,
    refused: AtomicU64,
}

/// The group service (cheap to clone).
#[derive(Clone)]
pub struct Groups(Arc<Inner>);

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups")
            .field("groups", &lock(&self.0.groups).len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn env(m: GroupMsg) -> Envelope {
    Envelope::Group(m)
}

impl Groups {
    /// The service of `keys` (the visor's identity) keeping its groups under `app_dir`;
    /// restores every group found there.
    pub fn open(
        keys: Keypair,
        app_dir: &std::path::Path,
        hub: Hub,
        ex: Arc<Executor<'static>>,
    ) -> Result<Groups, String> {
        let dir = disk::groups_dir(app_dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let g = Groups(Arc::new(Inner {
            keys,
            dir: dir.clone(),
            hub,
            ex,
            groups: Mutex::new(HashMap::new()),
            rate: Mutex::new(HashMap::new()),
            waits: Mutex::new(HashMap::new()),
            joining: Mutex::new(HashSet::new()),
            refused: AtomicU64::new(0),
        }));
        let rd = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            let Ok(id) = GroupId::from_hex(&name) else {
                continue;
            };
            match g.restore(id, ent.path()) {
                Ok(grp) => {
                    lock(&g.0.groups).insert(id, Arc::new(grp));
                }
                Err(e) => log::warn!("skychat: group {id} not restored: {e}"),
            }
        }
        Ok(g)
    }

    fn restore(&self, id: GroupId, dir: PathBuf) -> Result<Group, String> {
        let meta = Meta::load(&dir)?;
        let (log, entries, rep) = FeedLog::open(&dir.join("feed.log"))?;
        if rep.cut_bytes > 0 {
            log::warn!(
                "skychat: group {id}: {} bytes cut off the feed log (a crash)",
                rep.cut_bytes
            );
        }
        let ring = disk::load_keys(&dir);
        let mut replica = MemberFeed::new(id, meta.owner);
        replica.note_pruned(entries.last().and_then(|b| entry::peek_seq(b)).unwrap_or(0));
        let mut good = 0;
        let mut posts = VecDeque::new();
        let mut last_message_at = 0;
        for b in &entries {
            match replica.apply(b) {
                Ok(a) => {
                    good += 1;
                    if let Body::Post(_) = a.entry.entry.body {
                        last_message_at = a.entry.entry.ts_ms;
                        posts.push_back((a.seq, a.entry.entry));
                        if posts.len() > FEED_CAP {
                            posts.pop_front();
                        }
                    }
                }
                Err(r) => {
                    log::warn!("skychat: group {id}: the feed log stops at a bad entry: {r}");
                    break;
                }
            }
        }
        let side = if meta.owner_role {
            let feed =
                OwnerFeed::restore(&self.0.keys, id, FeedLimits::default(), 0, &entries[..good])
                    .map_err(|(i, r)| format!("entry {i}: {r}"))?;
            Side::Owner {
                feed: Box::new(feed),
                subs: HashMap::new(),
            }
        } else {
            Side::Member {
                feed: replica,
                sub: None,
                refused: None,
            }
        };
        Ok(Group {
            id,
            dir,
            data: Mutex::new(Data {
                side,
                meta,
                ring,
                log,
                posts,
                last_message_at,
            }),
            notify: Notify::default(),
        })
    }

    fn me(&self) -> PublicKey {
        *self.0.keys.public()
    }

    fn get(&self, id: GroupId) -> Result<Arc<Group>, Fail> {
        lock(&self.0.groups)
            .get(&id)
            .cloned()
            .ok_or_else(|| fail(404, format!("no group {id} (GET /groups lists them)")))
    }

    /// Every group's id.
    pub fn ids(&self) -> Vec<GroupId> {
        let mut v: Vec<GroupId> = lock(&self.0.groups).keys().copied().collect();
        v.sort();
        v
    }

    /// Refusals counted (joins, subs and submissions refused).
    pub fn refused(&self) -> u64 {
        self.0.refused.load(Ordering::Relaxed)
    }

    fn rate_ok(&self, peer: PublicKey, submit: bool) -> bool {
        let rate = if submit { SUBMIT_RATE } else { JOIN_RATE } as f64;
        let mut g = lock(&self.0.rate);
        if g.len() > 4096 {
            g.retain(|_, b| b.at.elapsed() < Duration::from_secs(60));
        }
        g.entry((peer, submit))
            .or_insert_with(|| Bucket::new(rate))
            .take(rate)
    }

    /// Starts the member side's resubscriber (at once, then every [`RESUB_EVERY`]).
    pub fn start(&self, chat: &Chat) {
        let (me, chat) = (Arc::downgrade(&self.0), chat.clone());
        self.0
            .ex
            .spawn_boxed(async move {
                loop {
                    let Some(inner) = me.upgrade() else { return };
                    Groups(inner).resubscribe(&chat).await;
                    Timer::after(RESUB_EVERY).await;
                }
            })
            .detach();
    }

    async fn resubscribe(&self, chat: &Chat) {
        let groups: Vec<Arc<Group>> = lock(&self.0.groups).values().cloned().collect();
        for g in groups {
            let (owner, since) = {
                let d = lock(&g.data);
                match &d.side {
                    Side::Member { sub, refused, feed } => {
                        if refused.is_some()
                            || sub.as_ref().is_some_and(|l| l.alive())
                            || feed.state().is_deleted()
                        {
                            continue;
                        }
                        (d.meta.owner, feed.state().last_seq())
                    }
                    Side::Owner { .. } => continue,
                }
            };
            let Ok(link) = chat.link_to(owner).await else {
                continue;
            };
            if link
                .send(&env(GroupMsg::Sub { g: g.id, since }))
                .await
                .is_ok()
                && let Side::Member { sub, .. } = &mut lock(&g.data).side
            {
                *sub = Some(link);
            }
        }
    }

    // ---- the owner ----

    /// Creates a group owned by this visor.
    pub fn create(&self, name: &str, mode: Mode, members: &[PublicKey]) -> Result<Info, Fail> {
        if lock(&self.0.groups).len() >= MAX_GROUPS {
            return Err(fail(409, format!("at most {MAX_GROUPS} groups")));
        }
        entry::check_name(name).map_err(|e| fail(400, format!("field `name`: {e}")))?;
        let now = now_ms();
        let feed = OwnerFeed::create(&self.0.keys, name, mode, members, now)
            .map_err(|r| fail(400, r.to_string()))?;
        let id = feed.id();
        let dir = self.0.dir.join(id.to_hex());
        std::fs::create_dir_all(&dir).map_err(|e| fail(503, e.to_string()))?;
        let mut ring = Keyring::new();
        if mode == Mode::Private {
            ring.fresh_key(feed.state().epoch())
                .map_err(|e| fail(503, e.to_string()))?;
        }
        disk::save_keys(&dir, &ring).map_err(|e| fail(503, e))?;
        let meta = Meta {
            owner_role: true,
            owner: self.me(),
            port: super::PORT,
            created_at: now,
            secrets: Vec::new(),
        };
        meta.save(&dir).map_err(|e| fail(503, e))?;
        let (mut log, _, _) = FeedLog::open(&dir.join("feed.log")).map_err(|e| fail(503, e))?;
        for b in feed.entries_since(0, usize::MAX).entries {
            log.append(&b).map_err(|e| fail(503, e))?;
        }
        let g = Arc::new(Group {
            id,
            dir,
            data: Mutex::new(Data {
                side: Side::Owner {
                    feed: Box::new(feed),
                    subs: HashMap::new(),
                },
                meta,
                ring,
                log,
                posts: VecDeque::new(),
                last_message_at: 0,
            }),
            notify: Notify::default(),
        });
        lock(&self.0.groups).insert(id, g.clone());
        Ok(self.info_of(&g))
    }

    /// An invite link (owner, or an admin of a group whose owner made secrets... only the
    /// owner holds secrets: an admin's invite carries none and is accepted by roster only).
    pub fn invite(&self, id: GroupId) -> Result<String, Fail> {
        let g = self.get(id)?;
        let mut d = lock(&g.data);
        let me = self.me();
        if !d.state().may_invite(&me) {
            return Err(fail(403, "only the owner or an admin may invite"));
        }
        let access = match d.state().mode() {
            Mode::Public => Access::Public,
            Mode::Private => match d.ring.current() {
                Some((epoch, key)) => Access::Private {
                    key: key.clone(),
                    epoch,
                },
                None => return Err(fail(409, "no key for the current epoch")),
            },
        };
        let mut secret = None;
        if d.meta.owner_role {
            let mut s = [0u8; 16];
            getrandom::fill(&mut s).map_err(|e| fail(503, e.to_string()))?;
            d.meta.secrets.push(s);
            while d.meta.secrets.len() > MAX_SECRETS {
                d.meta.secrets.remove(0);
            }
            d.meta.save(&g.dir).map_err(|e| fail(503, e))?;
            secret = Some(s);
        }
        let inv = Invite {
            id,
            name: d.state().name().to_string(),
            owner: d.meta.owner,
            port: d.meta.port,
            access,
            secret,
        };
        inv.encode().map_err(|e| fail(409, e.to_string()))
    }

    /// Stores and pushes an entry the owner sequenced (the group's lock held).
    fn owner_keep(&self, g: &Group, d: &mut Data, s: &Submitted) -> Result<(), Fail> {
        if let Submitted::New { seq, bytes } = s {
            d.log.append(bytes).map_err(|e| fail(503, e))?;
            if let Ok(e) = entry::decode(bytes) {
                self.publish(g.id, d, *seq, &e.entry);
                d.note(*seq, &e.entry);
                // A member gone from a private group: rotate the key.
                let gone = matches!(e.entry.body, Body::Remove(_) | Body::Leave);
                if gone && d.state().mode() == Mode::Private && !d.state().is_deleted() {
                    let next = d.state().epoch() + 1;
                    let r = match &mut d.side {
                        Side::Owner { feed, .. } => feed.author(Body::Rotate(next), now_ms()),
                        Side::Member { .. } => return Ok(()),
                    };
                    match r {
                        Ok(Submitted::New { bytes, .. }) => {
                            d.log.append(&bytes).map_err(|e| fail(503, e))?;
                            d.ring
                                .fresh_key(next)
                                .map_err(|e| fail(503, e.to_string()))?;
                            disk::save_keys(&g.dir, &d.ring).map_err(|e| fail(503, e))?;
                        }
                        Ok(_) => {}
                        Err(r) => log::warn!("skychat: group {}: rotate refused: {r}", g.id),
                    }
                }
            }
            g.notify.wake();
        }
        Ok(())
    }

    fn publish(&self, id: GroupId, d: &Data, seq: u64, e: &UnsequencedEntry) {
        if !matches!(e.body, Body::Post(_)) {
            return;
        }
        let text = d.text(e).unwrap_or_default();
        let ev = Event {
            seq: 0,
            ts_ms: 0,
            channel: Channel::Group,
            kind: Kind::Message,
            id: MsgId(e.entry_id),
            dir: if e.author == self.me() {
                Dir::Out
            } else {
                Dir::In
            },
            from: e.author,
            to: *d.state().owner(),
            transport: "group",
            text,
            reply_to: None,
            status: None,
            history: false,
            group: Some((id, seq, e.ts_ms)),
        };
        self.0.hub.publish(ev);
    }

    /// Serves a subscription from `since` on `link`: starts its pusher, or, when this
    /// connection already has one, asks that pusher to go back to `since` (one pusher per
    /// group and connection, however often the member re-subscribes).
    fn serve_sub(&self, g: Arc<Group>, link: Link, since: u64) {
        let rewind = {
            let mut d = lock(&g.data);
            let Side::Owner { subs, .. } = &mut d.side else {
                return;
            };
            if let Some((_, rewind)) = subs.get(&link.id()) {
                rewind.fetch_min(since, Ordering::Relaxed);
                drop(d);
                g.notify.wake();
                return;
            }
            let rewind = Arc::new(AtomicU64::new(u64::MAX));
            subs.insert(link.id(), (link.peer(), rewind.clone()));
            rewind
        };
        let me = self.clone();
        self.0
            .ex
            .spawn_boxed(async move {
                me.push_loop(&g, &link, since, &rewind).await;
                if let Side::Owner { subs, .. } = &mut lock(&g.data).side {
                    subs.remove(&link.id());
                }
            })
            .detach();
    }

    async fn push_loop(&self, g: &Group, link: &Link, mut cursor: u64, rewind: &AtomicU64) {
        let peer = link.peer();
        let mut key_epochs: HashSet<u32> = HashSet::new();
        let mut first = true;
        loop {
            let generation = g.notify.generation();
            let back = rewind.swap(u64::MAX, Ordering::Relaxed);
            if back != u64::MAX {
                // A re-subscription on this connection: answer it like the first one.
                cursor = cursor.min(back);
                first = true;
            }
            let (keys, batch) = {
                let d = lock(&g.data);
                let Side::Owner { feed, .. } = &d.side else {
                    return;
                };
                if feed.state().role(&peer).is_none() {
                    return;
                }
                let keys: Vec<_> = d
                    .ring
                    .epochs()
                    .filter(|e| !key_epochs.contains(e))
                    .filter_map(|e| d.ring.get(e).map(|k| (e, k.clone())))
                    .collect();
                let mut b = feed.entries_since(cursor, BATCH_ENTRIES);
                let mut total = 0;
                let mut keep = 0;
                for e in &b.entries {
                    if keep > 0 && total + e.len() > BATCH_BYTES {
                        break;
                    }
                    total += e.len();
                    keep += 1;
                }
                b.entries.truncate(keep);
                (keys, b)
            };
            for (epoch, key) in keys {
                if link
                    .send(&env(GroupMsg::Key {
                        g: g.id,
                        epoch,
                        key,
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
                key_epochs.insert(epoch);
            }
            if !batch.entries.is_empty() || first {
                let last = batch.entries.last().and_then(|b| entry::peek_seq(b));
                let m = if batch.entries.len() == 1 && !first {
                    GroupMsg::Entry {
                        g: g.id,
                        e: batch.entries[0].clone(),
                    }
                } else {
                    GroupMsg::Batch {
                        g: g.id,
                        pruned: batch.pruned_through,
                        es: batch.entries,
                    }
                };
                if link.send(&env(m)).await.is_err() {
                    return;
                }
                first = false;
                if let Some(l) = last {
                    cursor = l;
                    continue;
                }
            }
            if !link.alive() {
                return;
            }
            future::or(g.notify.changed(generation), async {
                Timer::after(Duration::from_secs(5)).await;
            })
            .await;
        }
    }

    /// A `group-*` envelope from `link`'s peer.
    pub async fn on_msg(&self, link: Link, m: GroupMsg) {
        let peer = link.peer();
        let refuse = |g: GroupId, id: Option<u64>, reason: String| {
            self.0.refused.fetch_add(1, Ordering::Relaxed);
            env(GroupMsg::Refuse { g, id, reason })
        };
        match m {
            GroupMsg::Join { g, owner, secret } => {
                if !self.rate_ok(peer, false) {
                    let r = refuse(
                        g,
                        None,
                        format!("too many joins: at most {JOIN_RATE} per 10 s"),
                    );
                    let _ = link.send(&r).await;
                    return;
                }
                let grp = lock(&self.0.groups).get(&g).cloned();
                let verdict = match &grp {
                    Some(grp) if owner == self.me() => self.accept_join(grp, peer, &secret),
                    _ => Err("no such group here".to_string()),
                };
                match (verdict, grp) {
                    (Ok(()), Some(grp)) => self.serve_sub(grp, link, 0),
                    (Err(why), _) => {
                        let _ = link.send(&refuse(g, None, why)).await;
                    }
                    (Ok(()), None) => {}
                }
            }
            GroupMsg::Sub { g, since } => {
                let grp = lock(&self.0.groups).get(&g).cloned();
                let ok = grp.as_ref().is_some_and(|grp| {
                    let d = lock(&grp.data);
                    matches!(d.side, Side::Owner { .. }) && d.state().role(&peer).is_some()
                });
                match grp {
                    Some(grp) if ok => self.serve_sub(grp, link, since),
                    _ => {
                        let r = refuse(g, None, "not a member of this group".into());
                        let _ = link.send(&r).await;
                    }
                }
            }
            GroupMsg::Submit { g, e } => {
                let id = UnsequencedEntry::decode(&e).ok().map(|u| u.entry_id);
                let answer = if !self.rate_ok(peer, true) {
                    Err(format!(
                        "too many submissions: at most {SUBMIT_RATE} per 10 s"
                    ))
                } else {
                    self.owner_submit(g, peer, &e)
                };
                let reply = match answer {
                    Ok(seq) => env(GroupMsg::Ok {
                        g,
                        id: id.unwrap_or(0),
                        seq,
                    }),
                    Err(why) => refuse(g, id, why),
                };
                let _ = link.send(&reply).await;
            }
            GroupMsg::Batch { g, pruned, es } => self.member_apply(&link, g, pruned, es),
            GroupMsg::Entry { g, e } => self.member_apply(&link, g, 0, vec![e]),
            GroupMsg::Key { g, epoch, key } => {
                if let Ok(grp) = self.get(g) {
                    let mut d = lock(&grp.data);
                    if matches!(d.side, Side::Member { .. }) && d.meta.owner == peer {
                        d.ring.insert(epoch, key);
                        if let Err(e) = disk::save_keys(&grp.dir, &d.ring) {
                            log::warn!("skychat: group {g}: keys not saved: {e}");
                        }
                    }
                }
            }
            GroupMsg::Ok { g, id, seq } => self.answer(g, id, Ok(seq)),
            GroupMsg::Refuse { g, id, reason } => match id {
                Some(id) => self.answer(g, id, Err(reason)),
                None => {
                    let joining = lock(&self.0.joining).contains(&g);
                    if !joining
                        && let Ok(grp) = self.get(g)
                        && let Side::Member { refused, sub, .. } = &mut lock(&grp.data).side
                    {
                        *sub = None;
                        *refused = Some(reason.clone());
                    }
                    self.answer(g, 0, Err(reason));
                }
            },
        }
    }

    fn answer(&self, g: GroupId, id: u64, r: Result<u64, String>) {
        if let Some(slot) = lock(&self.0.waits).get_mut(&(g, id)) {
            *slot = Some(r);
        }
    }

    async fn wait_for(&self, g: GroupId, id: u64) -> Option<Result<u64, String>> {
        let deadline = Instant::now() + OWNER_WAIT;
        loop {
            if let Some(Some(r)) = lock(&self.0.waits).get(&(g, id)).cloned() {
                return Some(r);
            }
            if Instant::now() > deadline {
                return None;
            }
            Timer::after(Duration::from_millis(20)).await;
        }
    }

    fn accept_join(&self, g: &Group, peer: PublicKey, secret: &[u8; 16]) -> Result<(), String> {
        let mut d = lock(&g.data);
        let on_roster = d.state().role(&peer).is_some();
        let invited = d.meta.secrets.iter().any(|s| s == secret);
        if d.state().is_deleted() {
            return Err("the group was deleted".into());
        }
        if !on_roster && !invited {
            return Err("not invited: the owner does not know this invite".into());
        }
        if !on_roster {
            let r = match &mut d.side {
                Side::Owner { feed, .. } => feed.author(Body::Add(peer), now_ms()),
                Side::Member { .. } => return Err("not the owner".into()),
            };
            let s = r.map_err(|r| r.to_string())?;
            self.owner_keep(g, &mut d, &s).map_err(|f| f.1)?;
        }
        Ok(())
    }

    fn owner_submit(&self, g: GroupId, _peer: PublicKey, e: &[u8]) -> Result<u64, String> {
        let grp = self.get(g).map_err(|f| f.1)?;
        let mut d = lock(&grp.data);
        let r = match &mut d.side {
            Side::Owner { feed, .. } => feed.submit_bytes(e),
            Side::Member { .. } => return Err("this visor does not own the group".into()),
        };
        let s = r.map_err(|r: Refusal| r.to_string())?;
        self.owner_keep(&grp, &mut d, &s).map_err(|f| f.1)?;
        Ok(s.seq())
    }

    // ---- the member ----

    fn member_apply(&self, link: &Link, g: GroupId, pruned: u64, es: Vec<Vec<u8>>) {
        let Ok(grp) = self.get(g) else { return };
        let mut d = lock(&grp.data);
        if d.meta.owner != link.peer() {
            return;
        }
        let Side::Member { feed, .. } = &mut d.side else {
            return;
        };
        let report = feed.apply_batch(&super::group::Batch {
            pruned_through: pruned,
            entries: es,
        });
        let gap = report
            .refused
            .iter()
            .any(|r| matches!(r, Refusal::OutOfOrder { .. }));
        // Stored (one sync for the batch) before any of it is shown.
        let bytes: Vec<Vec<u8>> = report.applied.iter().map(|a| a.entry.encode()).collect();
        if let Err(e) = d.log.append_all(&bytes) {
            log::warn!(
                "skychat: group {g}: {} entries not stored: {e}",
                bytes.len()
            );
        }
        for a in &report.applied {
            self.publish(g, &d, a.seq, &a.entry.entry);
            d.note(a.seq, &a.entry.entry);
        }
        if let Side::Member { sub, .. } = &mut d.side {
            if gap {
                *sub = None;
            } else if sub.is_none() {
                *sub = Some(link.clone());
            }
        }
        drop(d);
        self.answer(g, 0, Ok(0));
    }

    /// Joins with an invite link: waits for the owner's first batch.
    pub async fn join(&self, chat: &Chat, link: &str) -> Result<Info, Fail> {
        let inv = Invite::decode(link).map_err(|e| fail(400, e.to_string()))?;
        if inv.owner == self.me() {
            return Err(fail(409, "this visor owns the group"));
        }
        if let Ok(g) = self.get(inv.id) {
            return Ok(self.info_of(&g));
        }
        if lock(&self.0.groups).len() >= MAX_GROUPS {
            return Err(fail(409, format!("at most {MAX_GROUPS} groups")));
        }
        let dir = self.0.dir.join(inv.id.to_hex());
        std::fs::create_dir_all(&dir).map_err(|e| fail(503, e.to_string()))?;
        let mut ring = Keyring::new();
        if let Access::Private { key, epoch } = &inv.access {
            ring.insert(*epoch, key.clone());
        }
        let meta = Meta {
            owner_role: false,
            owner: inv.owner,
            port: inv.port,
            created_at: now_ms(),
            secrets: Vec::new(),
        };
        let (log, _, _) = FeedLog::open(&dir.join("feed.log")).map_err(|e| fail(503, e))?;
        let g = Arc::new(Group {
            id: inv.id,
            dir: dir.clone(),
            data: Mutex::new(Data {
                side: Side::Member {
                    feed: MemberFeed::new(inv.id, inv.owner),
                    sub: None,
                    refused: None,
                },
                meta: meta.clone(),
                ring,
                log,
                posts: VecDeque::new(),
                last_message_at: 0,
            }),
            notify: Notify::default(),
        });
        let forget = |me: &Groups| {
            lock(&me.0.groups).remove(&inv.id);
            lock(&me.0.waits).remove(&(inv.id, 0));
            lock(&me.0.joining).remove(&inv.id);
            let _ = std::fs::remove_dir_all(&dir);
        };
        lock(&self.0.groups).insert(inv.id, g.clone());
        lock(&self.0.joining).insert(inv.id);
        lock(&self.0.waits).insert((inv.id, 0), None);
        let msg = env(GroupMsg::Join {
            g: inv.id,
            owner: inv.owner,
            secret: inv.secret.unwrap_or([0; 16]),
        });
        let sent = match chat.link_to(inv.owner).await {
            Ok(l) => l.send(&msg).await.map(|_| l),
            Err(e) => Err(e),
        };
        let link = match sent {
            Ok(l) => l,
            Err(e) => {
                forget(self);
                return Err(fail(504, format!("owner unreachable: {e}")));
            }
        };
        let r = self.wait_for(inv.id, 0).await;
        match r {
            Some(Ok(_)) => {
                lock(&self.0.waits).remove(&(inv.id, 0));
                lock(&self.0.joining).remove(&inv.id);
                disk::save_keys(&dir, &lock(&g.data).ring).map_err(|e| fail(503, e))?;
                meta.save(&dir).map_err(|e| fail(503, e))?;
                if let Side::Member { sub, .. } = &mut lock(&g.data).side {
                    *sub = Some(link);
                }
                Ok(self.info_of(&g))
            }
            Some(Err(why)) => {
                forget(self);
                Err(fail(403, format!("refused by the owner: {why}")))
            }
            None => {
                forget(self);
                Err(fail(504, "the owner did not answer within 10 s"))
            }
        }
    }

    /// Signs `body` as this visor and has the owner sequence it; its seq and entry id.
    async fn submit(&self, chat: &Chat, id: GroupId, body: Body) -> Result<(u64, u64), Fail> {
        let g = self.get(id)?;
        let (draft, text) = match body {
            Body::Post(t) => (None, Some(String::from_utf8_lossy(&t).into_owned())),
            b => (Some(b), None),
        };
        let (u, owner_side) = {
            let d = lock(&g.data);
            let st = d.state();
            if st.is_deleted() {
                return Err(fail(409, "the group was deleted"));
            }
            let mut dr: Draft = st.draft(draft.unwrap_or(Body::Post(Vec::new())), now_ms());
            if let Some(t) = &text {
                if t.is_empty() {
                    return Err(fail(400, "field `message`: must not be empty"));
                }
                match st.mode() {
                    Mode::Public => dr.body = Body::Post(t.as_bytes().to_vec()),
                    Mode::Private => d
                        .ring
                        .seal_draft(&mut dr, &self.me(), t)
                        .map_err(|e| fail(409, e.to_string()))?,
                }
            }
            let u =
                UnsequencedEntry::sign(&self.0.keys, dr).map_err(|e| fail(400, e.to_string()))?;
            (u, matches!(d.side, Side::Owner { .. }))
        };
        let eid = u.entry_id;
        if owner_side {
            let mut d = lock(&g.data);
            let r = match &mut d.side {
                Side::Owner { feed, .. } => feed.submit(u),
                Side::Member { .. } => return Err(fail(409, "not the owner")),
            };
            let s = r.map_err(|r| fail(403, r.to_string()))?;
            self.owner_keep(&g, &mut d, &s)?;
            return Ok((s.seq(), eid));
        }
        let owner = lock(&g.data).meta.owner;
        lock(&self.0.waits).insert((id, eid), None);
        let sent = match chat.link_to(owner).await {
            Ok(l) => {
                l.send(&env(GroupMsg::Submit {
                    g: id,
                    e: u.encode(),
                }))
                .await
            }
            Err(e) => Err(e),
        };
        let r = match sent {
            Ok(()) => self.wait_for(id, eid).await,
            Err(e) => {
                lock(&self.0.waits).remove(&(id, eid));
                return Err(fail(504, format!("owner unreachable: {e}")));
            }
        };
        lock(&self.0.waits).remove(&(id, eid));
        match r {
            Some(Ok(seq)) => Ok((seq, eid)),
            Some(Err(why)) => Err(fail(403, format!("refused by the owner: {why}"))),
            None => Err(fail(504, "the owner did not answer within 10 s")),
        }
    }

    /// Posts `text`: its seq and entry id.
    pub async fn post(&self, chat: &Chat, id: GroupId, text: &str) -> Result<(u64, u64), Fail> {
        self.submit(chat, id, Body::Post(text.as_bytes().to_vec()))
            .await
    }

    /// A roster change: `add|remove|promote|demote`.
    pub async fn member_action(
        &self,
        chat: &Chat,
        id: GroupId,
        action: &str,
        pk: PublicKey,
    ) -> Result<u64, Fail> {
        let body = match action {
            "add" => Body::Add(pk),
            "remove" => Body::Remove(pk),
            "promote" => Body::Promote(pk),
            "demote" => Body::Demote(pk),
            a => return Err(fail(400, format!("field `action`: {a:?}"))),
        };
        {
            let g = self.get(id)?;
            let d = lock(&g.data);
            let draft = d.state().draft(body.clone(), now_ms());
            if let Ok(u) = UnsequencedEntry::sign(&self.0.keys, draft)
                && let Err(r) = d.state().check(&u)
            {
                return Err(fail(403, r.to_string()));
            }
        }
        self.submit(chat, id, body).await.map(|(s, _)| s)
    }

    /// Leaves a joined group (tells the owner if it can) and forgets it.
    pub async fn leave(&self, chat: &Chat, id: GroupId) -> Result<(), Fail> {
        let g = self.get(id)?;
        if lock(&g.data).meta.owner_role {
            return Err(fail(
                403,
                "the founder cannot leave; delete the group instead",
            ));
        }
        let on_roster = lock(&g.data).state().role(&self.me()).is_some();
        if on_roster && let Err(e) = self.submit(chat, id, Body::Leave).await {
            log::info!(
                "skychat: group {id}: leave not sequenced ({}); forgetting it",
                e.1
            );
        }
        lock(&self.0.groups).remove(&id);
        let _ = std::fs::remove_dir_all(&g.dir);
        Ok(())
    }

    /// Deletes an owned group (members see the delete entry) and forgets it.
    pub async fn delete(&self, chat: &Chat, id: GroupId) -> Result<(), Fail> {
        let g = self.get(id)?;
        if !lock(&g.data).meta.owner_role {
            return Err(fail(403, "only the owner may delete the group"));
        }
        self.submit(chat, id, Body::Delete).await?;
        // Give the pushers a moment to hand the delete entry out.
        Timer::after(Duration::from_millis(300)).await;
        lock(&self.0.groups).remove(&id);
        let _ = std::fs::remove_dir_all(&g.dir);
        Ok(())
    }

    /// Posts after `since`, oldest first, at most `limit` (the newest ones).
    pub fn history(&self, id: GroupId, since: u64, limit: usize) -> Result<Vec<Post>, Fail> {
        let g = self.get(id)?;
        let d = lock(&g.data);
        let all: Vec<&(u64, UnsequencedEntry)> =
            d.posts.iter().filter(|(s, _)| *s > since).collect();
        let skip = all.len().saturating_sub(limit);
        Ok(all[skip..]
            .iter()
            .map(|(seq, e)| Post {
                seq: *seq,
                from: e.author,
                ts_ms: e.ts_ms,
                text: d.text(e),
            })
            .collect())
    }

    /// A group's summary.
    pub fn info(&self, id: GroupId) -> Result<Info, Fail> {
        self.get(id).map(|g| self.info_of(&g))
    }

    fn info_of(&self, g: &Group) -> Info {
        let d = lock(&g.data);
        let st = d.state();
        let mut members: Vec<(PublicKey, Role)> = st.members().map(|(p, r)| (*p, r)).collect();
        members.sort_by_key(|(p, _)| p.to_hex());
        let (alive, subs) = match &d.side {
            Side::Owner { subs, .. } => (true, Some(subs.len())),
            Side::Member { sub, .. } => (sub.as_ref().is_some_and(|l| l.alive()), None),
        };
        Info {
            id: g.id,
            name: st.name().to_string(),
            owner: d.meta.owner,
            port: d.meta.port,
            mode: st.mode(),
            role: st.role(&self.me()),
            members: members.iter().map(|(p, _)| *p).collect(),
            admins: members
                .iter()
                .filter(|(_, r)| *r == Role::Admin)
                .map(|(p, _)| *p)
                .collect(),
            last_seq: st.last_seq(),
            last_message_at: d.last_message_at,
            created_at: d.meta.created_at,
            subscriber_alive: alive,
            subscribers: subs,
            deleted: st.is_deleted(),
        }
    }
}
