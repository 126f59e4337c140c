//! The discovery service (DESIGN.md §3.6, `skywire dmsg disc`): a registry of signed entries
//! and its HTTP/JSON API.
//!
//! [`Registry`] is sans-IO: the current unix time is passed in. Acceptance rules for a PUT:
//! the entry parses and is within limits; its signature verifies for its PK (strict Ed25519);
//! its timestamp is within ±`skew` of the server's clock; its sequence is strictly above the
//! stored one (a replay or an out-of-order update is refused); and the registry is not full.
//! Entries expire `ttl` seconds after they were stored unless re-published. Because
//! `ttl ≥ skew` is enforced, an entry that expired cannot be replayed afterwards either: its
//! timestamp is by then outside the window.
//!
//! **Deletions leave a tombstone** (PK → the deletion's sequence) for `ttl` seconds: an entry
//! for that PK is refused (409) unless its sequence is above the deletion's, so an old signed
//! entry replayed after the deletion cannot bring the node back. Any such entry was signed
//! before the deletion, so after `ttl ≥ skew` its timestamp is outside the window anyway and the
//! tombstone can go. Tombstones are kept in the store file too; at most `max_entries` are held
//! (when more are needed the one closest to its end is dropped first).
//!
//! **New keys are rate-limited per source address** ([`super::disc_rate`]): storing an entry
//! for a PK the registry does not hold costs a token of the sender's bucket (default: 32 at
//! once, then 4 a minute; loopback exempt unless asked); without one the answer is 429 with
//! `Retry-After`. Updates of a stored entry never cost a token.
//!
//! **When the registry is full**, a new key makes room by evicting one entry, in this order:
//! 1. client entries that no relay confirms: none of the relays the entry lists has a live
//!    relay entry here (throwaway keys list no relay, or relays that do not exist);
//! 2. client entries that list a registered relay but were not refreshed for `ttl/2` (a live
//!    client re-publishes every minute);
//! 3. relay entries not refreshed for `ttl/2`;
//!
//! each class oldest refresh first. A confirmed client or a relay refreshed within `ttl/2` is
//! never evicted; when only such entries are left the new key is refused (503). "Confirmed"
//! is what the data allows: a client entry is self-signed, so a forger can list a real
//! relay's PK; what the order buys is that junk listing nothing real goes first, and the
//! per-source rate limit bounds how fast anyone adds the rest.
//!
//! HTTP API (all JSON; errors are `{"error": "..."}` with a 4xx/5xx status):
//!
//! | request | answer |
//! |---|---|
//! | `GET /health` | `{"status":"ok","version","uptime_s","entries","relays","tombstones","evicted","rate_limited"}` |
//! | `GET /entries/{pk}` | the entry, or 404 |
//! | `POST /entries` (body: entry) | 200 `{"stored":true,"seq":n}`; 400 bad/forged, 409 replayed or deleted, 422 clock, 429 too many new keys from this address (`Retry-After`), 503 full |
//! | `DELETE /entries/{pk}` (body: signed deletion) | 200 `{"deleted":true}`; 404 none; 400/409/422 as above |
//! | `GET /relays` | `{"relays":[entry…]}`: relays with free sessions, most free first; `?all=1` for all |
//! | `GET /entries?limit=N` | `{"count":total,"pks":[…]}` (first N by PK, default 1000) |

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::disc_rate::{NewKeyLimiter, RateLimit};
use super::entry::{Deletion, Entry, EntryError, Kind};
use crate::crypto::PublicKey;
use crate::http::json::{Fields, Ordered, Out, parse_object};
use crate::http::server::{Handler, Request, Response, sync_handler};

/// Registry limits.
#[derive(Debug, Clone)]
pub struct DiscLimits {
    /// Most entries held.
    pub max_entries: usize,
    /// Seconds an entry lives after it was stored.
    pub ttl_secs: u64,
    /// Largest allowed difference between an entry's timestamp and the server's clock.
    pub skew_secs: u64,
    /// The per-source rate limit on new keys.
    pub new_keys: RateLimit,
}

impl Default for DiscLimits {
    fn default() -> Self {
        DiscLimits {
            max_entries: 100_000,
            ttl_secs: 300,
            skew_secs: 300,
            new_keys: RateLimit::default(),
        }
    }
}

/// Why the registry refused a request; each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscError {
    /// Malformed, out of limits, or a signature that does not verify.
    Invalid(EntryError),
    /// The sequence is not above the stored one.
    Replayed {
        /// Sequence offered.
        seq: u64,
        /// Sequence stored.
        stored: u64,
    },
    /// The timestamp is outside the window around the server's clock.
    Clock {
        /// Timestamp offered.
        timestamp: u64,
        /// The server's clock.
        now: u64,
        /// Allowed skew.
        skew: u64,
    },
    /// The entry is older than the deletion of this PK (a replay of a deleted entry).
    Deleted {
        /// Sequence offered.
        seq: u64,
        /// Sequence of the deletion.
        deleted: u64,
    },
    /// The sender's address spent its new-key tokens.
    RateLimited {
        /// Seconds until the next token.
        retry_after: u64,
        /// The limit, for the message.
        burst: u32,
        /// The refill a minute.
        per_minute: u32,
    },
    /// The registry holds `max_entries` already and none may be evicted.
    Full(usize),
    /// No entry for this PK.
    NotFound(PublicKey),
}

impl DiscError {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            DiscError::Invalid(_) => 400,
            DiscError::Replayed { .. } | DiscError::Deleted { .. } => 409,
            DiscError::Clock { .. } => 422,
            DiscError::RateLimited { .. } => 429,
            DiscError::Full(_) => 503,
            DiscError::NotFound(_) => 404,
        }
    }
}

impl fmt::Display for DiscError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscError::Invalid(e) => write!(f, "invalid entry: {e}"),
            DiscError::Replayed { seq, stored } => write!(
                f,
                "sequence {seq} is not above the stored {stored} (replayed or out of order)"
            ),
            DiscError::Clock {
                timestamp,
                now,
                skew,
            } => {
                let (dir, by) = if timestamp > now {
                    ("ahead of", timestamp - now)
                } else {
                    ("behind", now - timestamp)
                };
                write!(
                    f,
                    "timestamp {timestamp} is {by} s {dir} the discovery clock ({now}), more \
                     than the {skew} s allowed; check the signer's clock (NTP)"
                )
            }
            DiscError::Deleted { seq, deleted } => write!(
                f,
                "sequence {seq} is not above {deleted}, the sequence of this pk's deletion (a \
                 replay of a deleted entry); sign a new entry with a higher sequence"
            ),
            DiscError::RateLimited {
                retry_after,
                burst,
                per_minute,
            } => write!(
                f,
                "too many new keys from this address ({burst} at once, then {per_minute} a \
                 minute); retry in {retry_after} s"
            ),
            DiscError::Full(n) => write!(
                f,
                "registry full ({n} live entries, none evictable); try another discovery"
            ),
            DiscError::NotFound(pk) => write!(f, "no entry for {pk}"),
        }
    }
}

impl std::error::Error for DiscError {}

#[derive(Debug, Clone)]
struct Stored {
    entry: Entry,
    /// Unix second after which the entry is gone.
    expires: u64,
}

/// What is left of a deleted entry until `expires` (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tombstone {
    /// The deletion's sequence: entries at or below it are refused.
    seq: u64,
    /// Unix second after which the tombstone is gone.
    expires: u64,
}

/// Counters for `/health`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DiscStats {
    /// Entries evicted to make room for new keys.
    pub evicted: u64,
    /// New keys refused by the per-source rate limit.
    pub rate_limited: u64,
}

/// The entries, keyed by PK.
#[derive(Debug)]
pub struct Registry {
    entries: HashMap<PublicKey, Stored>,
    tombstones: HashMap<PublicKey, Tombstone>,
    limiter: NewKeyLimiter,
    limits: DiscLimits,
    stats: DiscStats,
    dirty: bool,
}

impl Registry {
    /// An empty registry. `ttl` is raised to `skew` if lower (see the module docs).
    pub fn new(mut limits: DiscLimits) -> Self {
        limits.ttl_secs = limits.ttl_secs.max(limits.skew_secs);
        Registry {
            entries: HashMap::new(),
            tombstones: HashMap::new(),
            limiter: NewKeyLimiter::new(limits.new_keys.clone()),
            limits,
            stats: DiscStats::default(),
            dirty: false,
        }
    }

    /// Eviction and rate-limit counters.
    pub fn stats(&self) -> DiscStats {
        self.stats
    }

    /// The limits in force.
    pub fn limits(&self) -> &DiscLimits {
        &self.limits
    }

    fn check_clock(&self, timestamp: u64, now: u64) -> Result<(), DiscError> {
        if timestamp.abs_diff(now) > self.limits.skew_secs {
            return Err(DiscError::Clock {
                timestamp,
                now,
                skew: self.limits.skew_secs,
            });
        }
        Ok(())
    }

    /// Stores `e` if it passes every rule (module docs), with no rate limit (a trusted
    /// caller: tests, tools); the HTTP API calls [`Registry::put_from`].
    pub fn put(&mut self, e: Entry, now: u64) -> Result<(), DiscError> {
        self.put_from(e, now, None)
    }

    /// Stores `e`, sent from `src`, if it passes every rule (module docs). A new PK costs a
    /// token of `src`'s bucket; `None` is exempt.
    pub fn put_from(&mut self, e: Entry, now: u64, src: Option<IpAddr>) -> Result<(), DiscError> {
        // A new key (or one whose entry expired) costs a token. Checked first: a flood from
        // one address is refused before any signature is verified for it.
        let new_key = self.entries.get(&e.pk).is_none_or(|s| s.expires < now);
        if new_key && let Err(retry_after) = self.limiter.check(src, now) {
            self.stats.rate_limited += 1;
            let cfg = self.limiter.config();
            return Err(DiscError::RateLimited {
                retry_after,
                burst: cfg.burst,
                per_minute: cfg.per_minute,
            });
        }
        e.verify().map_err(DiscError::Invalid)?;
        self.check_clock(e.timestamp, now)?;
        if let Some(t) = self.tombstones.get(&e.pk)
            && t.expires >= now
            && e.seq <= t.seq
        {
            return Err(DiscError::Deleted {
                seq: e.seq,
                deleted: t.seq,
            });
        }
        match self.entries.get(&e.pk) {
            Some(s) if !new_key && e.seq <= s.entry.seq => {
                return Err(DiscError::Replayed {
                    seq: e.seq,
                    stored: s.entry.seq,
                });
            }
            // An update of a live entry: free.
            _ if !new_key => {}
            _ => {
                if !self.entries.contains_key(&e.pk)
                    && self.entries.len() >= self.limits.max_entries
                {
                    self.make_room(now)?;
                }
                self.limiter.consume(src, now);
            }
        }
        self.tombstones.remove(&e.pk);
        let expires = now + self.limits.ttl_secs;
        self.entries.insert(e.pk, Stored { entry: e, expires });
        self.dirty = true;
        Ok(())
    }

    /// Frees one slot: expired entries first, else the first victim of the eviction order
    /// (module docs); `Full` if nothing may go.
    fn make_room(&mut self, now: u64) -> Result<(), DiscError> {
        self.expire(now);
        if self.entries.len() < self.limits.max_entries {
            return Ok(());
        }
        let Some(pk) = self.eviction_victim(now) else {
            return Err(DiscError::Full(self.entries.len()));
        };
        self.entries.remove(&pk);
        self.stats.evicted += 1;
        log::debug!("disc: registry full; evicted {pk}");
        Ok(())
    }

    /// The entry to evict first (module docs), if any may be.
    fn eviction_victim(&self, now: u64) -> Option<PublicKey> {
        let ttl = self.limits.ttl_secs;
        // Refreshed at `expires - ttl`; fresh if that is within ttl/2 of now.
        let stale = |s: &Stored| s.expires.saturating_sub(ttl) + ttl / 2 < now;
        let relays: HashSet<&PublicKey> = self
            .entries
            .iter()
            .filter(|(_, s)| s.expires >= now && s.entry.is_relay())
            .map(|(pk, _)| pk)
            .collect();
        let mut best: Option<(u8, u64, &PublicKey)> = None;
        for (pk, s) in &self.entries {
            let class = match &s.entry.kind {
                Kind::Client { relays: listed } if !listed.iter().any(|r| relays.contains(r)) => 0,
                Kind::Client { .. } if stale(s) => 1,
                Kind::Relay { .. } if stale(s) => 2,
                _ => continue,
            };
            let key = (class, s.expires, pk);
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        best.map(|(_, _, pk)| *pk)
    }

    /// The live entry for `pk`.
    pub fn get(&self, pk: &PublicKey, now: u64) -> Option<&Entry> {
        self.entries
            .get(pk)
            .filter(|s| s.expires >= now)
            .map(|s| &s.entry)
    }

    /// Deletes the entry a valid, fresh, newer deletion names.
    pub fn delete(&mut self, d: &Deletion, now: u64) -> Result<(), DiscError> {
        d.verify().map_err(DiscError::Invalid)?;
        self.check_clock(d.timestamp, now)?;
        let Some(s) = self.entries.get(&d.pk).filter(|s| s.expires >= now) else {
            return Err(DiscError::NotFound(d.pk));
        };
        if d.seq <= s.entry.seq {
            return Err(DiscError::Replayed {
                seq: d.seq,
                stored: s.entry.seq,
            });
        }
        self.entries.remove(&d.pk);
        self.bury(d.pk, d.seq, now + self.limits.ttl_secs, now);
        self.dirty = true;
        Ok(())
    }

    /// Records a tombstone, within the bound on how many are held (module docs).
    fn bury(&mut self, pk: PublicKey, seq: u64, expires: u64, now: u64) {
        if !self.tombstones.contains_key(&pk) && self.tombstones.len() >= self.limits.max_entries {
            self.tombstones.retain(|_, t| t.expires >= now);
            if self.tombstones.len() >= self.limits.max_entries
                && let Some(first) = self
                    .tombstones
                    .iter()
                    .min_by_key(|(pk, t)| (t.expires, **pk))
                    .map(|(pk, _)| *pk)
            {
                self.tombstones.remove(&first);
            }
        }
        self.tombstones.insert(pk, Tombstone { seq, expires });
    }

    /// Live tombstones.
    pub fn tombstones(&self, now: u64) -> usize {
        self.tombstones
            .values()
            .filter(|t| t.expires >= now)
            .count()
    }

    /// Relay entries: with free sessions only (most free first) unless `all`.
    pub fn relays(&self, now: u64, all: bool) -> Vec<&Entry> {
        let mut v: Vec<(&Entry, u32)> = self
            .entries
            .values()
            .filter(|s| s.expires >= now)
            .filter_map(|s| match &s.entry.kind {
                Kind::Relay {
                    available_sessions, ..
                } if all || *available_sessions > 0 => Some((&s.entry, *available_sessions)),
                _ => None,
            })
            .collect();
        crate::sort::sort_by_cmp(&mut v, |a, b| b.1.cmp(&a.1).then(a.0.pk.cmp(&b.0.pk)));
        v.into_iter().map(|(e, _)| e).collect()
    }

    /// Live PKs in order, at most `limit`, and the total count.
    pub fn pks(&self, now: u64, limit: usize) -> (usize, Vec<PublicKey>) {
        let mut all: Vec<PublicKey> = self
            .entries
            .iter()
            .filter(|(_, s)| s.expires >= now)
            .map(|(pk, _)| *pk)
            .collect();
        crate::sort::sort(&mut all);
        let total = all.len();
        all.truncate(limit);
        (total, all)
    }

    /// Drops expired entries and tombstones, and rate-limit buckets that refilled; returns
    /// how many entries went.
    pub fn expire(&mut self, now: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, s| s.expires >= now);
        let n = before - self.entries.len();
        let tombs = self.tombstones.len();
        self.tombstones.retain(|_, t| t.expires >= now);
        if n > 0 || tombs != self.tombstones.len() {
            self.dirty = true;
        }
        self.limiter.prune(now);
        n
    }

    /// Live entries and relay entries.
    pub fn counts(&self, now: u64) -> (usize, usize) {
        let live = self.entries.values().filter(|s| s.expires >= now);
        let (mut n, mut r) = (0, 0);
        for s in live {
            n += 1;
            r += usize::from(s.entry.is_relay());
        }
        (n, r)
    }

    /// True if changed since the last [`Registry::save_text`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The store file's text: every live entry with its expiry; clears the dirty flag.
    pub fn save_text(&mut self, now: u64) -> String {
        self.dirty = false;
        // Sorted as `Vec<PublicKey>` like `pks` above: one sort instantiation for all.
        let mut pks: Vec<PublicKey> = self.entries.keys().copied().collect();
        crate::sort::sort(&mut pks);
        let items: Vec<Out> = pks
            .into_iter()
            .filter_map(|pk| self.entries.get(&pk))
            .filter(|s| s.expires >= now)
            .map(|s| {
                Out::Obj(
                    Ordered::new()
                        .field("expires", Out::U64(s.expires))
                        .field("entry", Out::Obj(s.entry.to_json())),
                )
            })
            .collect();
        let mut tomb_pks: Vec<PublicKey> = self
            .tombstones
            .iter()
            .filter(|(_, t)| t.expires >= now)
            .map(|(pk, _)| *pk)
            .collect();
        crate::sort::sort(&mut tomb_pks);
        let tombs = tomb_pks
            .iter()
            .filter_map(|pk| Some((pk, self.tombstones.get(pk)?)))
            .map(|(pk, t)| {
                Out::Obj(
                    Ordered::new()
                        .field("pk", Out::Str(pk.to_hex()))
                        .field("seq", Out::U64(t.seq))
                        .field("expires", Out::U64(t.expires)),
                )
            })
            .collect();
        Ordered::new()
            .field("version", Out::Str("1".into()))
            .field("entries", Out::Arr(items))
            .field("tombstones", Out::Arr(tombs))
            .to_pretty()
    }

    /// Loads a store file's text. Entries are verified again; bad or expired ones are
    /// skipped and counted. Returns (loaded, skipped).
    pub fn load_text(&mut self, text: &str, now: u64) -> Result<(usize, usize), String> {
        let obj = parse_object(text).map_err(|e| e.to_string())?;
        let mut f = Fields::new(&obj, "");
        let items = f.opt_array("entries").map_err(|e| e.to_string())?;
        let (mut loaded, mut skipped) = (0, 0);
        for (path, v) in items {
            let miniserde::json::Value::Object(o) = v else {
                skipped += 1;
                continue;
            };
            let mut item = Fields::new(o, path);
            let expires = item
                .opt_u64("expires", u64::MAX)
                .ok()
                .flatten()
                .unwrap_or(0);
            let entry = match item.opt_object("entry") {
                Ok(Some(mut ef)) => Entry::from_fields(&mut ef),
                _ => {
                    skipped += 1;
                    continue;
                }
            };
            match entry {
                Ok(e) if expires >= now && e.verify().is_ok() => {
                    self.entries.insert(e.pk, Stored { entry: e, expires });
                    loaded += 1;
                }
                _ => skipped += 1,
            }
        }
        // Tombstones (absent in stores written before they existed). A bad one is skipped:
        // it only ever refuses entries.
        for (path, v) in f.opt_array("tombstones").map_err(|e| e.to_string())? {
            let miniserde::json::Value::Object(o) = v else {
                continue;
            };
            let mut t = Fields::new(o, path);
            let pk = t.str("pk").ok().and_then(|h| PublicKey::from_hex(h).ok());
            let seq = t.opt_u64("seq", u64::MAX).ok().flatten();
            let expires = t.opt_u64("expires", u64::MAX).ok().flatten();
            if let (Some(pk), Some(seq), Some(expires)) = (pk, seq, expires)
                && expires >= now
                && self.entries.get(&pk).is_none_or(|s| s.entry.seq <= seq)
            {
                self.entries.remove(&pk);
                self.bury(pk, seq, expires, now);
            }
        }
        Ok((loaded, skipped))
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A registry shared between the HTTP handler and the store flusher.
pub type Shared = Arc<Mutex<Registry>>;

/// Locks the registry; a poisoned lock (a panic elsewhere) is recovered, not propagated.
pub fn lock(r: &Shared) -> std::sync::MutexGuard<'_, Registry> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

/// The HTTP handler for the API in the module docs. `clock` gives unix seconds (tests pass
/// their own).
pub fn handler(reg: Shared, clock: Arc<dyn Fn() -> u64 + Send + Sync>) -> Handler {
    let started = Instant::now();
    sync_handler(move |req| route(&reg, &req, clock(), started))
}

fn route(reg: &Shared, req: &Request, now: u64, started: Instant) -> Response {
    let seg = req.segments();
    match (req.method.as_str(), seg.as_slice()) {
        ("GET" | "HEAD", ["health"]) => {
            let (n, r, t, stats) = {
                let reg = lock(reg);
                let (n, r) = reg.counts(now);
                (n, r, reg.tombstones(now), reg.stats())
            };
            let body = Ordered::new()
                .field("status", Out::Str("ok".into()))
                .field("version", Out::Str(crate::VERSION.into()))
                .field("uptime_s", Out::U64(started.elapsed().as_secs()))
                .field("entries", Out::U64(n as u64))
                .field("relays", Out::U64(r as u64))
                .field("tombstones", Out::U64(t as u64))
                .field("evicted", Out::U64(stats.evicted))
                .field("rate_limited", Out::U64(stats.rate_limited));
            Response::json(200, body.to_compact())
        }
        ("GET" | "HEAD", ["entries"]) => {
            let limit = match req.query_param("limit").map(str::parse::<usize>) {
                None => 1000,
                Some(Ok(n)) => n,
                Some(Err(_)) => return Response::error(400, "limit must be a number"),
            };
            let (total, pks) = lock(reg).pks(now, limit);
            let body = Ordered::new().field("count", Out::U64(total as u64)).field(
                "pks",
                Out::Arr(pks.iter().map(|p| Out::Str(p.to_hex())).collect()),
            );
            Response::json(200, body.to_compact())
        }
        ("GET" | "HEAD", ["entries", pk]) => match PublicKey::from_hex(pk) {
            Err(e) => Response::error(400, format!("bad pk in path: {e}")),
            Ok(pk) => match lock(reg).get(&pk, now) {
                Some(e) => Response::json(200, e.to_json().to_compact()),
                None => Response::error(404, DiscError::NotFound(pk).to_string()),
            },
        },
        ("POST" | "PUT", ["entries"]) | ("POST" | "PUT", ["entries", _]) => {
            let Ok(text) = std::str::from_utf8(&req.body) else {
                return Response::error(400, "body is not UTF-8");
            };
            let e = match Entry::from_json(text) {
                Ok(e) => e,
                Err(e) => return Response::error(400, format!("invalid entry: {e}")),
            };
            if let [_, pk] = seg.as_slice()
                && *pk != e.pk.to_hex()
            {
                return Response::error(400, "the pk in the path differs from the entry's pk");
            }
            let seq = e.seq;
            let pk = e.pk;
            match lock(reg).put_from(e, now, req.peer.map(|a| a.ip())) {
                Ok(()) => {
                    log::debug!("disc: stored {pk} seq {seq}");
                    let body = Ordered::new()
                        .field("stored", Out::Bool(true))
                        .field("seq", Out::U64(seq));
                    Response::json(200, body.to_compact())
                }
                Err(err @ DiscError::RateLimited { retry_after, .. }) => {
                    // A flood would flood the log too: debug only (the count is in /health).
                    log::debug!("disc: refused a new key {pk} from {:?}: {err}", req.peer);
                    Response::error(429, err.to_string())
                        .with_header("Retry-After", retry_after.to_string())
                }
                Err(err) => {
                    log::info!("disc: refused an entry for {pk}: {err}");
                    Response::error(err.status(), err.to_string())
                }
            }
        }
        ("DELETE", ["entries", pk]) => {
            let Ok(text) = std::str::from_utf8(&req.body) else {
                return Response::error(400, "body is not UTF-8");
            };
            let d = match Deletion::from_json(text) {
                Ok(d) => d,
                Err(e) => return Response::error(400, format!("invalid deletion: {e}")),
            };
            if *pk != d.pk.to_hex() {
                return Response::error(400, "the pk in the path differs from the deletion's pk");
            }
            match lock(reg).delete(&d, now) {
                Ok(()) => Response::json(200, r#"{"deleted":true}"#.into()),
                Err(err) => Response::error(err.status(), err.to_string()),
            }
        }
        ("GET" | "HEAD", ["relays"]) => {
            let all = matches!(req.query_param("all"), Some("1" | "true"));
            let reg = lock(reg);
            let items = reg
                .relays(now, all)
                .into_iter()
                .map(|e| Out::Obj(e.to_json()))
                .collect();
            Response::json(
                200,
                Ordered::new().field("relays", Out::Arr(items)).to_compact(),
            )
        }
        (_, ["health" | "entries" | "relays"]) | (_, ["entries", _]) => Response::error(
            405,
            format!("{} is not allowed on {}", req.method, req.path),
        ),
        _ => Response::error(
            404,
            format!(
                "no such endpoint {}; see /health, /entries, /relays",
                req.path
            ),
        ),
    }
}

/// Writes the store atomically: a temporary file beside it, fsync, then rename.
pub fn write_store(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp: PathBuf = {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        path.with_file_name(name)
    };
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// The discovery service on `addr` (`dmsg disc`, `dmsg server --disc-addr`, the visor's
/// embedded network): the bound listener, its handler, and the task that expires entries
/// and writes the store (when `store` is given).
pub fn service(
    addr: &str,
    store: Option<std::path::PathBuf>,
    limits: DiscLimits,
) -> Result<
    (
        async_net::TcpListener,
        crate::http::server::Handler,
        impl Future<Output = ()> + use<>,
    ),
    String,
> {
    let mut reg = Registry::new(limits);
    let now = unix_now();
    if let Some(path) = &store {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let (n, skipped) = reg.load_text(&text, now).map_err(|e| {
                    format!(
                        "{}: not a discovery store ({e}); move it away or pick another --store",
                        path.display()
                    )
                })?;
                log::info!(
                    "loaded {n} entries from {} ({skipped} expired or invalid skipped)",
                    path.display()
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::info!("{} does not exist yet; starting empty", path.display());
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    let reg = Arc::new(std::sync::Mutex::new(reg));
    let listener = futures_lite::future::block_on(async_net::TcpListener::bind(addr))
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let handler = handler(reg.clone(), Arc::new(unix_now));
    let flusher = async move {
        let mut ticks = 0u64;
        loop {
            async_io::Timer::after(std::time::Duration::from_secs(1)).await;
            ticks += 1;
            let now = unix_now();
            let text = {
                let mut r = lock(&reg);
                if ticks.is_multiple_of(10) {
                    let n = r.expire(now);
                    if n > 0 {
                        log::debug!("expired {n} entries");
                    }
                }
                match &store {
                    Some(_) if r.is_dirty() => Some(r.save_text(now)),
                    _ => None,
                }
            };
            if let (Some(path), Some(text)) = (&store, text)
                && let Err(e) = write_store(path, &text)
            {
                log::error!(
                    "cannot write {}: {e}; entries stay in memory",
                    path.display()
                );
            }
        }
    };
    Ok((listener, handler, flusher))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    const NOW: u64 = 1_763_800_000;

    fn keys(n: u8) -> Keypair {
        Keypair::from_seed(&[n; 32])
    }

    fn reg() -> Registry {
        Registry::new(DiscLimits {
            max_entries: 3,
            ttl_secs: 300,
            skew_secs: 60,
            new_keys: RateLimit::default(),
        })
    }

    #[test]
    fn sequence_must_increase() {
        let mut r = reg();
        let k = keys(1);
        r.put(Entry::client(&k, 5, NOW, vec![], vec![]).unwrap(), NOW)
            .unwrap();
        let again = Entry::client(&k, 5, NOW, vec![], vec![]).unwrap();
        assert_eq!(
            r.put(again, NOW),
            Err(DiscError::Replayed { seq: 5, stored: 5 })
        );
        let older = Entry::client(&k, 4, NOW, vec![], vec![]).unwrap();
        assert!(matches!(r.put(older, NOW), Err(DiscError::Replayed { .. })));
        r.put(Entry::client(&k, 6, NOW, vec![], vec![]).unwrap(), NOW)
            .unwrap();
        assert_eq!(r.get(k.public(), NOW).unwrap().seq, 6);
    }

    #[test]
    fn forged_and_clock() {
        let mut r = reg();
        let k = keys(1);
        let mut e = Entry::client(&k, 1, NOW, vec![], vec![]).unwrap();
        e.pk = *keys(2).public();
        assert_eq!(
            r.put(e, NOW),
            Err(DiscError::Invalid(EntryError::BadSignature))
        );
        let old = Entry::client(&k, 1, NOW - 61, vec![], vec![]).unwrap();
        let err = r.put(old, NOW).unwrap_err();
        assert_eq!(err.status(), 422);
        assert!(err.to_string().contains("61 s behind"), "{err}");
        let future = Entry::client(&k, 1, NOW + 61, vec![], vec![]).unwrap();
        assert!(matches!(r.put(future, NOW), Err(DiscError::Clock { .. })));
    }

    #[test]
    fn ttl_expiry_and_capacity() {
        let mut r = reg();
        // Fresh relay entries are never evicted: a full registry of them refuses new keys.
        for n in 1..=3 {
            r.put(
                Entry::relay(&keys(n), 1, NOW, format!("h:{n}"), 1).unwrap(),
                NOW,
            )
            .unwrap();
        }
        let late = Entry::client(&keys(4), 1, NOW, vec![], vec![]).unwrap();
        assert_eq!(r.put(late.clone(), NOW), Err(DiscError::Full(3)));
        assert_eq!(r.put(late, NOW).unwrap_err().status(), 503);
        // After the TTL the old entries are gone and there is room.
        let later = NOW + 301;
        assert!(r.get(keys(1).public(), later).is_none());
        let late = Entry::client(&keys(4), 2, later, vec![], vec![]).unwrap();
        r.put(late, later).unwrap();
        assert_eq!(r.counts(later), (1, 0));
    }

    /// A full registry: throwaway client entries (no relay, or relays that are not
    /// registered) go first, then stale confirmed clients, then stale relays; a fresh relay
    /// and a fresh client it confirms are never evicted.
    #[test]
    fn full_registry_evicts_throwaway_entries_first() {
        let mut r = Registry::new(DiscLimits {
            max_entries: 6,
            ttl_secs: 300,
            skew_secs: 300,
            new_keys: RateLimit::default(),
        });
        let relay = keys(1);
        let rp = *relay.public();
        let client = |n: u8, at: u64, relays: Vec<PublicKey>| {
            Entry::client(&keys(n), 1, at, relays, vec![]).unwrap()
        };
        // Stored 200 s ago (> ttl/2: stale): a confirmed client and a relay.
        r.put(client(3, NOW - 200, vec![rp]), NOW - 200).unwrap();
        r.put(
            Entry::relay(&keys(6), 1, NOW - 200, "h:6".into(), 5).unwrap(),
            NOW - 200,
        )
        .unwrap();
        // Fresh: the live relay, a client it confirms, and two throwaway keys.
        r.put(Entry::relay(&relay, 1, NOW, "h:1".into(), 5).unwrap(), NOW)
            .unwrap();
        r.put(client(2, NOW, vec![rp]), NOW).unwrap();
        let bogus_relay = *keys(99).public();
        r.put(client(4, NOW - 10, vec![bogus_relay]), NOW - 10)
            .unwrap();
        r.put(client(5, NOW, vec![]), NOW).unwrap();
        assert_eq!(r.counts(NOW), (6, 2));

        // Each new key (listing the real relay, as a forger may) evicts the next in order.
        let order = [4u8, 5, 3, 6];
        for (i, gone) in order.iter().enumerate() {
            let n = 10 + i as u8;
            r.put(client(n, NOW, vec![rp]), NOW).unwrap();
            assert!(r.get(keys(*gone).public(), NOW).is_none(), "{gone} evicted");
            for kept in &order[i + 1..] {
                assert!(r.get(keys(*kept).public(), NOW).is_some(), "{kept} kept");
            }
            assert_eq!(r.stats().evicted, i as u64 + 1);
        }
        // Only fresh relay-confirmed entries are left: a new key is refused.
        assert_eq!(r.put(client(20, NOW, vec![]), NOW), Err(DiscError::Full(6)));
        assert!(r.get(&rp, NOW).is_some());
        assert!(r.get(keys(2).public(), NOW).is_some());
        // Updates still go through when full.
        r.put(
            Entry::client(&keys(2), 2, NOW, vec![rp], vec![]).unwrap(),
            NOW,
        )
        .unwrap();
        // Once the relay's entry is gone, clients listing it are no longer confirmed.
        let d = Deletion::new(&relay, 2, NOW);
        r.delete(&d, NOW).unwrap();
        r.put(client(21, NOW, vec![]), NOW).unwrap();
        assert_eq!(r.counts(NOW).0, 6);
    }

    /// New keys cost a token of the sender's address; updates and other addresses do not
    /// feel it.
    #[test]
    fn new_keys_are_rate_limited_per_source() {
        let mut r = Registry::new(DiscLimits {
            max_entries: 1000,
            ttl_secs: 300,
            skew_secs: 60,
            new_keys: RateLimit {
                burst: 2,
                per_minute: 1,
                ..RateLimit::default()
            },
        });
        let a: Option<IpAddr> = Some("192.0.2.1".parse().unwrap());
        let b: Option<IpAddr> = Some("192.0.2.2".parse().unwrap());
        let put = |r: &mut Registry, n: u8, seq: u64, src| {
            r.put_from(
                Entry::client(&keys(n), seq, NOW, vec![], vec![]).unwrap(),
                NOW,
                src,
            )
        };
        put(&mut r, 1, 1, a).unwrap();
        put(&mut r, 2, 1, a).unwrap();
        let err = put(&mut r, 3, 1, a).unwrap_err();
        assert_eq!(err.status(), 429);
        assert!(
            matches!(
                err,
                DiscError::RateLimited {
                    retry_after: 60,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("retry in 60 s"), "{err}");
        // Existing keys update for free, from anywhere.
        for seq in 2..50 {
            put(&mut r, 1, seq, a).unwrap();
        }
        put(&mut r, 3, 1, b).unwrap();
        // Loopback (and no address) is exempt by default.
        let lo: Option<IpAddr> = Some("127.0.0.1".parse().unwrap());
        for n in 30..90 {
            put(&mut r, n, 1, lo).unwrap();
        }
        put(&mut r, 90, 1, None).unwrap();
        assert_eq!(r.stats().rate_limited, 1);
        // A minute later a gets one more.
        r.put_from(
            Entry::client(&keys(4), 1, NOW + 60, vec![], vec![]).unwrap(),
            NOW + 60,
            a,
        )
        .unwrap();
    }

    /// The replay of a deleted entry: refused until the tombstone ends (after the TTL, when
    /// the replayed entry's timestamp is out of the window anyway); the tombstone survives a
    /// restart through the store.
    #[test]
    fn deleted_entry_cannot_be_replayed() {
        let mut r = reg();
        let k = keys(1);
        let old = Entry::client(&k, 5, NOW, vec![], vec![]).unwrap();
        r.put(old.clone(), NOW).unwrap();
        r.delete(&Deletion::new(&k, 6, NOW), NOW).unwrap();
        assert_eq!(r.tombstones(NOW), 1);
        let err = r.put(old.clone(), NOW + 1).unwrap_err();
        assert_eq!(err, DiscError::Deleted { seq: 5, deleted: 6 });
        assert_eq!(err.status(), 409);
        let at_deletion = Entry::client(&k, 6, NOW, vec![], vec![]).unwrap();
        assert!(matches!(
            r.put(at_deletion, NOW + 1),
            Err(DiscError::Deleted { .. })
        ));
        assert!(r.get(k.public(), NOW + 1).is_none());
        // Through a restart.
        let text = r.save_text(NOW + 1);
        let mut back = reg();
        back.load_text(&text, NOW + 2).unwrap();
        assert_eq!(back.tombstones(NOW + 2), 1);
        assert!(matches!(
            back.put(old.clone(), NOW + 2),
            Err(DiscError::Deleted { .. })
        ));
        // The owner comes back with a newer entry: stored, tombstone gone.
        back.put(
            Entry::client(&k, 7, NOW + 2, vec![], vec![]).unwrap(),
            NOW + 2,
        )
        .unwrap();
        assert_eq!(back.tombstones(NOW + 2), 0);
        // After the TTL the tombstone expires; the old entry's timestamp is stale by then.
        let late = NOW + 302;
        r.expire(late);
        assert_eq!(r.tombstones(late), 0);
        assert!(matches!(r.put(old, late), Err(DiscError::Clock { .. })));
    }

    #[test]
    fn delete_rules() {
        let mut r = reg();
        let k = keys(1);
        r.put(Entry::client(&k, 5, NOW, vec![], vec![]).unwrap(), NOW)
            .unwrap();
        assert!(matches!(
            r.delete(&Deletion::new(&k, 5, NOW), NOW),
            Err(DiscError::Replayed { .. })
        ));
        let mut forged = Deletion::new(&keys(2), 6, NOW);
        forged.pk = *k.public();
        assert!(matches!(r.delete(&forged, NOW), Err(DiscError::Invalid(_))));
        r.delete(&Deletion::new(&k, 6, NOW), NOW).unwrap();
        assert!(r.get(k.public(), NOW).is_none());
        assert!(matches!(
            r.delete(&Deletion::new(&k, 7, NOW), NOW),
            Err(DiscError::NotFound(_))
        ));
    }

    #[test]
    fn relays_sorted_by_free_sessions() {
        let mut r = reg();
        r.put(
            Entry::relay(&keys(1), 1, NOW, "h:1".into(), 5).unwrap(),
            NOW,
        )
        .unwrap();
        r.put(
            Entry::relay(&keys(2), 1, NOW, "h:2".into(), 0).unwrap(),
            NOW,
        )
        .unwrap();
        r.put(
            Entry::relay(&keys(3), 1, NOW, "h:3".into(), 9).unwrap(),
            NOW,
        )
        .unwrap();
        let free: Vec<_> = r.relays(NOW, false).iter().map(|e| e.pk).collect();
        assert_eq!(free, vec![*keys(3).public(), *keys(1).public()]);
        assert_eq!(r.relays(NOW, true).len(), 3);
    }

    #[test]
    fn store_round_trip_skips_bad_and_expired() {
        let mut r = reg();
        r.put(
            Entry::relay(&keys(1), 1, NOW, "h:1".into(), 5).unwrap(),
            NOW,
        )
        .unwrap();
        r.put(
            Entry::client(&keys(2), 3, NOW, vec![*keys(1).public()], vec![]).unwrap(),
            NOW,
        )
        .unwrap();
        assert!(r.is_dirty());
        let text = r.save_text(NOW);
        assert!(!r.is_dirty());
        let mut back = reg();
        assert_eq!(back.load_text(&text, NOW).unwrap(), (2, 0));
        assert_eq!(back.get(keys(2).public(), NOW).unwrap().seq, 3);
        // A tampered entry in the file is skipped, as are expired ones.
        let tampered = text.replace("\"seq\": 3", "\"seq\": 4");
        let mut t = reg();
        assert_eq!(t.load_text(&tampered, NOW).unwrap(), (1, 1));
        let mut e = reg();
        assert_eq!(e.load_text(&text, NOW + 1000).unwrap(), (0, 2));
        assert!(reg().load_text("not json", NOW).is_err());
    }
}
