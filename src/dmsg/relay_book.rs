//! Which relays a client tries, and in what order (sans-IO: time and randomness are passed in).
//!
//! Discovery's list is signed by each relay's own key, so anyone can publish a relay entry —
//! with any address and any advertised capacity. A client therefore does not trust the
//! advertised capacity beyond "has room" (> 0): among the relays with room it picks at random,
//! except that relays that answered before come first and relays whose last attempt failed
//! come last (and only once their backoff has passed). The relays of the client's own
//! configuration always come first, in their order.
//!
//! The book remembers, per relay, how its last attempt went and when it may be tried again;
//! it holds at most [`MAX_RECORDS`] relays (the least recently used are forgotten).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::crypto::PublicKey;

/// Relays remembered at most.
pub const MAX_RECORDS: usize = 1024;

/// The first wait after a failure; it doubles with each further failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Record {
    last_ok: Option<bool>,
    retry_at: Option<Instant>,
    backoff: Duration,
    touched: Instant,
}

/// A relay to try: its PK and address.
pub type Candidate = (PublicKey, String);

/// What the client knows about relays.
#[derive(Debug)]
pub struct RelayBook {
    records: HashMap<PublicKey, Record>,
    cap: usize,
}

impl Default for RelayBook {
    fn default() -> Self {
        RelayBook::with_capacity(MAX_RECORDS)
    }
}

impl RelayBook {
    /// An empty book holding up to [`MAX_RECORDS`] relays.
    pub fn new() -> RelayBook {
        RelayBook::default()
    }

    /// An empty book holding up to `cap` relays.
    pub fn with_capacity(cap: usize) -> RelayBook {
        RelayBook {
            records: HashMap::new(),
            cap: cap.max(1),
        }
    }

    fn record(&mut self, pk: PublicKey, now: Instant) -> &mut Record {
        if !self.records.contains_key(&pk) && self.records.len() >= self.cap {
            let oldest = self
                .records
                .iter()
                .min_by_key(|(_, r)| r.touched)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.records.remove(&k);
            }
        }
        let r = self.records.entry(pk).or_insert(Record {
            last_ok: None,
            retry_at: None,
            backoff: Duration::ZERO,
            touched: now,
        });
        r.touched = now;
        r
    }

    /// A session with `pk` came up.
    pub fn succeeded(&mut self, pk: PublicKey, now: Instant) {
        let r = self.record(pk, now);
        r.last_ok = Some(true);
        r.retry_at = None;
        r.backoff = Duration::ZERO;
    }

    /// An attempt with `pk` failed: it is not tried again before the returned wait, which
    /// doubles with each failure in a row (from [`FIRST_BACKOFF`] up to `max`), plus a jitter
    /// of `jitter` (in [0, 1)) times half of it, so that many clients refused together do not
    /// come back together.
    pub fn failed(&mut self, pk: PublicKey, now: Instant, max: Duration, jitter: f64) -> Duration {
        let r = self.record(pk, now);
        r.last_ok = Some(false);
        r.backoff = if r.backoff.is_zero() {
            FIRST_BACKOFF.min(max)
        } else {
            (r.backoff * 2).min(max)
        };
        let wait = r.backoff + (r.backoff / 2).mul_f64(jitter.clamp(0.0, 1.0));
        r.retry_at = Some(now + wait);
        wait
    }

    /// True unless `pk` is waiting out a backoff at `now`.
    pub fn ready(&self, pk: &PublicKey, now: Instant) -> bool {
        self.records
            .get(pk)
            .and_then(|r| r.retry_at)
            .is_none_or(|t| t <= now)
    }

    /// Relays remembered now.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True if no relay is remembered.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// 0 (last attempt worked), 1 (never tried), 2 (last attempt failed).
    fn rank(&self, pk: &PublicKey) -> u8 {
        match self.records.get(pk).and_then(|r| r.last_ok) {
            Some(true) => 0,
            None => 1,
            Some(false) => 2,
        }
    }

    /// The order to try relays in at `now`: the `configured` ones (in their order), then the
    /// `discovered` ones with room (`(pk, addr, available sessions)`), shuffled with `random`
    /// and then ordered by how their last attempt went. Relays in backoff, and those in
    /// `skip`, are left out.
    pub fn order(
        &self,
        configured: &[Candidate],
        discovered: Vec<(PublicKey, String, u32)>,
        skip: impl Fn(&PublicKey) -> bool,
        now: Instant,
        mut random: impl FnMut() -> u64,
    ) -> Vec<Candidate> {
        let usable = |pk: &PublicKey| self.ready(pk, now) && !skip(pk);
        let mut out: Vec<Candidate> = configured
            .iter()
            .filter(|(pk, _)| usable(pk))
            .cloned()
            .collect();
        let mut found: Vec<Candidate> = discovered
            .into_iter()
            .filter(|(pk, _, avail)| {
                *avail > 0 && usable(pk) && !configured.iter().any(|(c, _)| c == pk)
            })
            .map(|(pk, addr, _)| (pk, addr))
            .collect();
        let mut seen = HashSet::new();
        found.retain(|(pk, _)| seen.insert(*pk));
        // Fisher-Yates, then a stable sort by rank keeps the shuffle within each rank.
        for i in (1..found.len()).rev() {
            let j = (random() % (i as u64 + 1)) as usize;
            found.swap(i, j);
        }
        // Ordered by rank, shuffle order kept within a rank: three buckets, not a sort (a
        // stable sort instantiated for this element type costs ~3 KB of code on armv7).
        let mut by_rank: [Vec<Candidate>; 3] = Default::default();
        for c in found {
            by_rank[usize::from(self.rank(&c.0))].push(c);
        }
        out.extend(by_rank.into_iter().flatten());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn pk(i: u8) -> PublicKey {
        *Keypair::from_seed(&[i; 32]).public()
    }

    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn advertised_capacity_does_not_decide_the_order() {
        let book = RelayBook::new();
        let now = Instant::now();
        // Five relays claiming huge capacity, one real relay claiming little: across shuffles
        // the real one is not always last (before, the list was sorted by capacity).
        let mut disc: Vec<_> = (1..=5)
            .map(|i| (pk(i), format!("h{i}:1"), u32::MAX))
            .collect();
        disc.push((pk(9), "real:1".into(), 3));
        disc.push((pk(10), "full:1".into(), 0));
        let mut first = std::collections::HashSet::new();
        for seed in 0..64 {
            let o = book.order(&[], disc.clone(), |_| false, now, rng(seed));
            assert_eq!(o.len(), 6, "the relay without room is left out");
            assert!(!o.iter().any(|(p, _)| *p == pk(10)));
            first.insert(o.iter().position(|(p, _)| *p == pk(9)).unwrap());
        }
        assert!(first.len() >= 4, "positions of the real relay: {first:?}");
    }

    #[test]
    fn relays_that_answered_come_first_and_failed_ones_last_after_their_backoff() {
        let mut book = RelayBook::new();
        let t0 = Instant::now();
        let disc: Vec<_> = (1..=6).map(|i| (pk(i), format!("h{i}:1"), 100)).collect();
        book.succeeded(pk(4), t0);
        let wait = book.failed(pk(2), t0, Duration::from_secs(30), 0.0);
        assert_eq!(wait, FIRST_BACKOFF);
        let o = book.order(&[], disc.clone(), |_| false, t0, rng(7));
        assert_eq!(o[0].0, pk(4));
        assert!(!o.iter().any(|(p, _)| *p == pk(2)), "in backoff");
        let later = t0 + Duration::from_secs(2);
        let o = book.order(&[], disc.clone(), |_| false, later, rng(7));
        assert_eq!(o[0].0, pk(4));
        assert_eq!(o.last().unwrap().0, pk(2));
        // Skipped ones (connected, or being tried) are left out.
        let o = book.order(&[], disc, |p| *p == pk(4), later, rng(7));
        assert!(!o.iter().any(|(p, _)| *p == pk(4)));
    }

    #[test]
    fn configured_relays_first_in_order() {
        let book = RelayBook::new();
        let now = Instant::now();
        let conf = vec![(pk(8), "c8:1".to_string()), (pk(7), "c7:1".to_string())];
        let disc = vec![(pk(7), "other:1".into(), 5), (pk(1), "h1:1".into(), 5)];
        let o = book.order(&conf, disc, |_| false, now, rng(1));
        assert_eq!(
            o,
            vec![
                (pk(8), "c8:1".to_string()),
                (pk(7), "c7:1".to_string()),
                (pk(1), "h1:1".to_string())
            ]
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_max_and_resets_on_success() {
        let mut book = RelayBook::new();
        let t0 = Instant::now();
        let max = Duration::from_secs(30);
        let waits: Vec<_> = (0..7).map(|_| book.failed(pk(1), t0, max, 0.0)).collect();
        let secs: Vec<u64> = waits.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(
            book.failed(pk(1), t0, max, 0.5),
            Duration::from_millis(37_500)
        );
        assert!(!book.ready(&pk(1), t0 + Duration::from_secs(37)));
        assert!(book.ready(&pk(1), t0 + Duration::from_secs(38)));
        book.succeeded(pk(1), t0);
        assert!(book.ready(&pk(1), t0));
        assert_eq!(book.failed(pk(1), t0, max, 0.0), FIRST_BACKOFF);
    }

    #[test]
    fn the_book_is_bounded() {
        let mut book = RelayBook::with_capacity(16);
        let t0 = Instant::now();
        for i in 0..40u32 {
            let k = Keypair::from_seed(&{
                let mut s = [0u8; 32];
                s[..4].copy_from_slice(&i.to_be_bytes());
                s
            });
            book.failed(
                *k.public(),
                t0 + Duration::from_millis(u64::from(i)),
                Duration::from_secs(1),
                0.0,
            );
        }
        assert_eq!(book.len(), 16);
        // The least recently used went first: the last 16 are kept.
        let last = Keypair::from_seed(&{
            let mut s = [0u8; 32];
            s[..4].copy_from_slice(&39u32.to_be_bytes());
            s
        });
        assert!(!book.ready(last.public(), t0));
    }
}
