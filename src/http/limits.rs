//! Rate limits, checked before any expensive work (reading the body, computing an HMAC):
//! each client address's budget of rejected requests, and each source's optional `rate_limit`.
//!
//! Hand-written token buckets rather than the `governor` crate: the peer budget is looked at
//! before the work and spent only once the work ended in a rejection (governor's `check` always
//! spends, so an accepted delivery would cost budget), and the table of tracked addresses needs
//! a hard bound (governor's keyed store grows with every new key until `retain_recent` runs).

use crate::config::{RejectBudget, Source};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most client addresses whose budget is tracked at once (about 64 bytes each).
pub const MAX_PEERS: usize = 10_000;

/// A token bucket: `capacity` tokens, refilled at `per_second`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The shape shared by the buckets of one limit.
#[derive(Debug, Clone, Copy)]
struct Refill {
    per_second: f64,
    capacity: f64,
}

impl Refill {
    fn full(&self, now: Instant) -> Bucket {
        Bucket { tokens: self.capacity, at: now }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.capacity);
        bucket.at = now;
    }

    /// `Ok` when a token is there, else how long until one is.
    fn available(&self, bucket: &Bucket) -> Result<(), Duration> {
        if bucket.tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.per_second))
        }
    }
}

/// Each client address's budget of rejected requests (`[server] reject_rate`, `reject_burst`).
pub struct PeerBudgets {
    refill: Option<Refill>,
    peers: Mutex<Peers>,
}

#[derive(Default)]
struct Peers {
    buckets: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
}

/// The address a budget belongs to: an IPv6 client by its /64, since one host usually holds a
/// whole /64 and could otherwise rotate through addresses for a fresh budget each time.
fn budget_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !(u128::MAX >> 64)).into()),
        v4 => v4,
    }
}

impl PeerBudgets {
    pub fn new(budget: Option<RejectBudget>) -> PeerBudgets {
        let refill = budget.map(|b| Refill { per_second: b.rate.per_second(), capacity: f64::from(b.burst.max(1)) });
        PeerBudgets { refill, peers: Mutex::new(Peers::default()) }
    }

    /// `Ok` while `peer` has budget left, else how long until it has again. Spends nothing:
    /// only a request that ends rejected does ([`spend`](Self::spend)).
    pub fn check(&self, peer: IpAddr, now: Instant) -> Result<(), Duration> {
        let Some(refill) = self.refill else { return Ok(()) };
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let Some(bucket) = peers.buckets.get_mut(&budget_key(peer)) else { return Ok(()) };
        refill.refill(bucket, now);
        refill.available(bucket)
    }

    /// One rejected request from `peer`.
    pub fn spend(&self, peer: IpAddr, now: Instant) {
        let Some(refill) = self.refill else { return };
        let key = budget_key(peer);
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if !peers.buckets.contains_key(&key) && peers.buckets.len() >= MAX_PEERS {
            // A full bucket says nothing an absent one does not: drop those, at most once a second.
            if peers.last_sweep.is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1)) {
                peers.last_sweep = Some(now);
                peers.buckets.retain(|_, bucket| {
                    refill.refill(bucket, now);
                    bucket.tokens < refill.capacity
                });
            }
            if peers.buckets.len() >= MAX_PEERS {
                // Still full of addresses that are spending: this one goes untracked rather than
                // growing memory. Its rejections are still counted and logged in aggregate.
                return;
            }
        }
        let bucket = peers.buckets.entry(key).or_insert_with(|| refill.full(now));
        refill.refill(bucket, now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }

    /// How many addresses are tracked now.
    pub fn tracked(&self) -> usize {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).buckets.len()
    }
}

/// Each source's `rate_limit` over all its requests, accepted or not.
pub struct SourceLimits {
    buckets: BTreeMap<String, (Refill, Mutex<Bucket>)>,
}

impl SourceLimits {
    pub fn new<'a>(sources: impl IntoIterator<Item = &'a Source>, now: Instant) -> SourceLimits {
        let buckets = sources
            .into_iter()
            .filter_map(|source| {
                let rate = source.rate_limit?;
                let refill = Refill { per_second: rate.per_second(), capacity: f64::from(rate.count) };
                Some((source.name.clone(), (refill, Mutex::new(refill.full(now)))))
            })
            .collect();
        SourceLimits { buckets }
    }

    /// Takes one request's token from `source`, or says how long until one is there.
    pub fn take(&self, source: &str, now: Instant) -> Result<(), Duration> {
        let Some((refill, bucket)) = self.buckets.get(source) else { return Ok(()) };
        let mut bucket = bucket.lock().unwrap_or_else(|p| p.into_inner());
        refill.refill(&mut bucket, now);
        refill.available(&bucket)?;
        bucket.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rate;

    fn budget(count: u32, per_secs: u64, burst: u32) -> PeerBudgets {
        PeerBudgets::new(Some(RejectBudget { rate: Rate { count, per: Duration::from_secs(per_secs) }, burst }))
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_peer_that_spent_its_burst_waits_for_one_token_and_others_are_untouched() {
        let budgets = budget(2, 1, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(budgets.check(ip("198.51.100.1"), t0), Ok(()));
            budgets.spend(ip("198.51.100.1"), t0);
        }
        assert_eq!(budgets.check(ip("198.51.100.1"), t0), Err(Duration::from_millis(500)));
        assert_eq!(budgets.check(ip("198.51.100.2"), t0), Ok(()), "another address has its own budget");
        let later = t0 + Duration::from_millis(500);
        assert_eq!(budgets.check(ip("198.51.100.1"), later), Ok(()), "one token back after 1/rate");
        budgets.spend(ip("198.51.100.1"), later);
        assert!(budgets.check(ip("198.51.100.1"), later).is_err());
        let much_later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(budgets.check(ip("198.51.100.1"), much_later), Ok(()));
            budgets.spend(ip("198.51.100.1"), much_later);
        }
        assert!(budgets.check(ip("198.51.100.1"), much_later).is_err(), "refilled to the burst, not beyond");
    }

    #[test]
    fn checking_spends_nothing_and_off_never_limits() {
        let budgets = budget(1, 60, 1);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(budgets.check(ip("10.0.0.1"), t0), Ok(()));
        }
        let off = PeerBudgets::new(None);
        for _ in 0..1000 {
            off.spend(ip("10.0.0.1"), t0);
        }
        assert_eq!(off.check(ip("10.0.0.1"), t0), Ok(()));
        assert_eq!(off.tracked(), 0);
    }

    #[test]
    fn an_ipv6_host_cannot_rotate_through_its_64_for_a_fresh_budget() {
        let budgets = budget(1, 60, 2);
        let t0 = Instant::now();
        budgets.spend(ip("2001:db8:1:2::1"), t0);
        budgets.spend(ip("2001:db8:1:2::ffff"), t0);
        assert!(budgets.check(ip("2001:db8:1:2:abcd::9"), t0).is_err());
        assert_eq!(budgets.check(ip("2001:db8:1:3::1"), t0), Ok(()));
        budgets.spend(ip("::ffff:192.0.2.1"), t0);
        budgets.spend(ip("192.0.2.1"), t0);
        assert!(budgets.check(ip("192.0.2.1"), t0).is_err(), "an IPv4-mapped address is the IPv4 address");
    }

    #[test]
    fn spraying_addresses_never_tracks_more_than_the_bound() {
        let budgets = budget(1, 3600, 5);
        let t0 = Instant::now();
        for i in 0..(MAX_PEERS as u32 + 5000) {
            budgets.spend(IpAddr::V4(i.into()), t0);
        }
        assert_eq!(budgets.tracked(), MAX_PEERS);
        // Once their buckets are full again, the table makes room for new spenders.
        let refilled = t0 + Duration::from_secs(5 * 3600);
        budgets.spend(ip("203.0.113.9"), refilled);
        assert_eq!(budgets.tracked(), 1);
    }

    #[test]
    fn a_source_limit_counts_every_request_and_refills_at_its_rate() {
        let config = crate::config::Config::parse(
            std::path::Path::new("/tmp/handoff.toml"),
            "[sources.a]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\nrate_limit = \"2/s\"\n[sources.b]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\n",
        )
        .unwrap();
        let t0 = Instant::now();
        let limits = SourceLimits::new(config.sources.values(), t0);
        assert_eq!(limits.take("a", t0), Ok(()));
        assert_eq!(limits.take("a", t0), Ok(()));
        assert_eq!(limits.take("a", t0), Err(Duration::from_millis(500)));
        for _ in 0..100 {
            assert_eq!(limits.take("b", t0), Ok(()), "no rate_limit, no limit");
        }
        assert_eq!(limits.take("a", t0 + Duration::from_millis(500)), Ok(()));
    }
}
