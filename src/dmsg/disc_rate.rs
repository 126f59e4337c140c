//! The discovery's rate limit on new keys (sans-IO: unix seconds are passed in).
//!
//! Every source address has a token bucket: `burst` tokens, refilled at `per_minute` a minute.
//! Storing an entry for a PK the registry does not hold costs one token; updates of a stored
//! entry, lookups and deletions cost nothing. IPv6 sources are grouped by their /64 (one host
//! usually holds a whole /64), IPv4-mapped IPv6 counts as the IPv4 address. Loopback sources
//! (127.0.0.0/8, ::1) are exempt unless `limit_loopback` is set: local processes (tests and
//! benches start hundreds of clients from 127.0.0.1, a visor's embedded discovery serves its
//! own host) are as trusted as the host.
//!
//! The bucket table holds at most `max_sources` addresses. A bucket that has refilled to
//! `burst` carries no state and is dropped when room is needed (and by [`NewKeyLimiter::prune`]);
//! when the table is full of draining buckets, every further new address shares one overflow
//! bucket, so the table's memory stays bounded whatever the number of addresses.

use std::collections::HashMap;
use std::net::IpAddr;

/// The limit's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// New keys a source may store at once; 0 turns the limit off.
    pub burst: u32,
    /// Tokens added a minute, up to `burst` (at least 1 when the limit is on).
    pub per_minute: u32,
    /// Apply the limit to loopback sources too.
    pub limit_loopback: bool,
    /// Most source addresses tracked; more share one overflow bucket.
    pub max_sources: usize,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            burst: 32,
            per_minute: 4,
            limit_loopback: false,
            max_sources: 16_384,
        }
    }
}

/// One token in thousandths (the refill is fractional per second).
const MILLI: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4([u8; 4]),
    /// The /64 prefix.
    V6([u8; 8]),
}

fn source(ip: IpAddr) -> Source {
    match ip {
        IpAddr::V4(a) => Source::V4(a.octets()),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => Source::V4(v4.octets()),
            None => {
                let mut p = [0u8; 8];
                p.copy_from_slice(&a.octets()[..8]);
                Source::V6(p)
            }
        },
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens, in thousandths.
    milli: u64,
    /// Unix second of the last refill.
    at: u64,
}

/// Adds what accrued since `b.at` at `per_minute`, up to `cap` thousandths.
fn refill(b: &mut Bucket, now: u64, cap: u64, per_minute: u32) {
    b.milli = accrued(b, now, per_minute).min(cap);
    b.at = b.at.max(now);
}

fn accrued(b: &Bucket, now: u64, per_minute: u32) -> u64 {
    let add = now
        .saturating_sub(b.at)
        .saturating_mul(u64::from(per_minute) * MILLI)
        / 60;
    b.milli.saturating_add(add)
}

/// The per-source buckets (module docs).
#[derive(Debug)]
pub struct NewKeyLimiter {
    cfg: RateLimit,
    buckets: HashMap<Source, Bucket>,
    overflow: Bucket,
}

impl NewKeyLimiter {
    /// No source has spent anything yet.
    pub fn new(mut cfg: RateLimit) -> Self {
        if cfg.burst > 0 {
            cfg.per_minute = cfg.per_minute.max(1);
        }
        let full = Bucket {
            milli: u64::from(cfg.burst) * MILLI,
            at: 0,
        };
        NewKeyLimiter {
            cfg,
            buckets: HashMap::new(),
            overflow: full,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &RateLimit {
        &self.cfg
    }

    /// Source addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    fn cap(&self) -> u64 {
        u64::from(self.cfg.burst) * MILLI
    }

    fn exempt(&self, src: Option<IpAddr>) -> Option<Source> {
        match src {
            _ if self.cfg.burst == 0 => None,
            None => None,
            Some(ip) if is_loopback(ip) && !self.cfg.limit_loopback => None,
            Some(ip) => Some(source(ip)),
        }
    }

    /// The bucket `s` draws from (its own, or the overflow one when the table is full),
    /// refilled to `now`.
    fn bucket(&mut self, s: Source, now: u64) -> &mut Bucket {
        let known = self.buckets.contains_key(&s);
        if !known && self.buckets.len() >= self.cfg.max_sources {
            self.prune(now);
        }
        let (cap, per_minute) = (self.cap(), self.cfg.per_minute);
        let b = if known || self.buckets.len() < self.cfg.max_sources {
            self.buckets.entry(s).or_insert(Bucket {
                milli: cap,
                at: now,
            })
        } else {
            &mut self.overflow
        };
        refill(b, now, cap, per_minute);
        b
    }

    /// `Ok` if `src` may store one more new key now; else the seconds until it may.
    pub fn check(&mut self, src: Option<IpAddr>, now: u64) -> Result<(), u64> {
        let Some(s) = self.exempt(src) else {
            return Ok(());
        };
        let per_minute = u64::from(self.cfg.per_minute);
        let b = self.bucket(s, now);
        if b.milli >= MILLI {
            return Ok(());
        }
        let missing = MILLI - b.milli;
        Err((missing * 60).div_ceil(per_minute * MILLI).max(1))
    }

    /// Spends the token [`NewKeyLimiter::check`] found.
    pub fn consume(&mut self, src: Option<IpAddr>, now: u64) {
        if let Some(s) = self.exempt(src) {
            let b = self.bucket(s, now);
            b.milli = b.milli.saturating_sub(MILLI);
        }
    }

    /// Drops the buckets that have refilled to `burst` by `now` (they hold no state).
    pub fn prune(&mut self, now: u64) {
        let (cap, per_minute) = (self.cap(), self.cfg.per_minute);
        self.buckets
            .retain(|_, b| accrued(b, now, per_minute) < cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_763_800_000;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn lim(limit_loopback: bool, max_sources: usize) -> NewKeyLimiter {
        NewKeyLimiter::new(RateLimit {
            burst: 3,
            per_minute: 6,
            limit_loopback,
            max_sources,
        })
    }

    fn spend(l: &mut NewKeyLimiter, src: Option<IpAddr>, now: u64) -> Result<(), u64> {
        l.check(src, now)?;
        l.consume(src, now);
        Ok(())
    }

    #[test]
    fn burst_then_refill() {
        let mut l = lim(false, 16);
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            spend(&mut l, a, NOW).unwrap();
        }
        // 6 a minute: one token every 10 s.
        assert_eq!(spend(&mut l, a, NOW), Err(10));
        assert_eq!(spend(&mut l, a, NOW + 4), Err(6));
        spend(&mut l, a, NOW + 10).unwrap();
        assert!(spend(&mut l, a, NOW + 10).is_err());
        // Another address has its own bucket; so has another /64, not another host in one.
        spend(&mut l, ip("192.0.2.2"), NOW).unwrap();
        for _ in 0..3 {
            spend(&mut l, ip("2001:db8:0:1::1"), NOW).unwrap();
        }
        assert!(spend(&mut l, ip("2001:db8:0:1::2"), NOW).is_err());
        spend(&mut l, ip("2001:db8:0:2::1"), NOW).unwrap();
        // IPv4-mapped IPv6 is the IPv4 address.
        assert!(spend(&mut l, ip("::ffff:192.0.2.1"), NOW + 10).is_err());
        // A long pause refills to the burst, not beyond.
        for _ in 0..3 {
            spend(&mut l, a, NOW + 100_000).unwrap();
        }
        assert!(spend(&mut l, a, NOW + 100_000).is_err());
    }

    #[test]
    fn loopback_exempt_unless_asked_and_zero_burst_is_off() {
        let mut l = lim(false, 16);
        for _ in 0..1000 {
            spend(&mut l, ip("127.0.0.1"), NOW).unwrap();
            spend(&mut l, ip("::1"), NOW).unwrap();
            spend(&mut l, None, NOW).unwrap();
        }
        assert_eq!(l.tracked(), 0);
        let mut l = lim(true, 16);
        for _ in 0..3 {
            spend(&mut l, ip("127.0.0.1"), NOW).unwrap();
        }
        assert!(spend(&mut l, ip("127.0.0.1"), NOW).is_err());
        spend(&mut l, ip("127.0.0.2"), NOW).unwrap();
        let mut off = NewKeyLimiter::new(RateLimit {
            burst: 0,
            ..RateLimit::default()
        });
        for _ in 0..1000 {
            spend(&mut off, ip("192.0.2.1"), NOW).unwrap();
        }
    }

    #[test]
    fn table_is_bounded_and_overflow_is_shared() {
        let mut l = lim(false, 4);
        for n in 0..4 {
            spend(&mut l, ip(&format!("192.0.2.{n}")), NOW).unwrap();
        }
        assert_eq!(l.tracked(), 4);
        // Thousands of further addresses share the one overflow bucket of 3.
        let mut ok = 0;
        for n in 0..5000u32 {
            let a = IpAddr::from((0x0a00_0000 + n).to_be_bytes());
            ok += usize::from(spend(&mut l, Some(a), NOW).is_ok());
        }
        assert_eq!(ok, 3);
        assert_eq!(l.tracked(), 4);
        // Once the tracked buckets have refilled they are dropped and new addresses get theirs.
        spend(&mut l, ip("198.51.100.1"), NOW + 60).unwrap();
        assert_eq!(l.tracked(), 1);
        l.prune(NOW + 1000);
        assert_eq!(l.tracked(), 0);
    }
}
