//! How often clients may ask for something anyone may ask for but that costs the zone a
//! replicated record (a party's application): a token bucket per source address and one for
//! the whole node, on the node's clock, so a test can move time instead of waiting.
//!
//! IPv6 sources are counted per /64, the block one subscriber usually holds, so that a client
//! cannot take a fresh bucket with each of its addresses. The table of sources is bounded;
//! buckets that refilled are dropped first, and a node that still tracks as many sources as it
//! may refuses newcomers rather than forget the ones it limits.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use xchg_protocol::Timestamp;

/// A rate: `burst` at once, then one more each `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many at once.
    pub burst: u32,
    /// Then one each this long.
    pub every: Duration,
}

/// Why a request was not let through, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// This source used its share.
    Source(Duration),
    /// The node's share for everyone is used.
    Node(Duration),
    /// The node tracks as many sources as it may.
    Crowded(Duration),
}

impl Limited {
    /// When to try again.
    pub fn retry_after(self) -> Duration {
        match self {
            Limited::Source(d) | Limited::Node(d) | Limited::Crowded(d) => d,
        }
    }
}

/// One bucket: whole tokens, and the time up to which refills were counted.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    counted_to: u64,
}

impl Bucket {
    fn full(rate: Rate, now: u64) -> Self {
        Bucket {
            tokens: rate.burst,
            counted_to: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: u64) {
        let every = u64::try_from(rate.every.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let earned = now.saturating_sub(self.counted_to) / every;
        let tokens = u64::from(self.tokens).saturating_add(earned);
        if tokens >= u64::from(rate.burst) {
            self.tokens = rate.burst;
            self.counted_to = now;
        } else {
            self.tokens = u32::try_from(tokens).unwrap_or(rate.burst);
            self.counted_to += earned * every;
        }
    }

    /// How long until the next token, after [`Bucket::refill`].
    fn wait(&self, rate: Rate, now: u64) -> Duration {
        let every = u64::try_from(rate.every.as_millis()).unwrap_or(u64::MAX);
        let next = self.counted_to.saturating_add(every);
        Duration::from_millis(next.saturating_sub(now).max(1))
    }
}

/// The buckets of one kind of request.
#[derive(Debug)]
pub struct RateLimit {
    per_source: Rate,
    per_node: Rate,
    max_sources: usize,
    sources: HashMap<[u8; 16], Bucket>,
    node: Option<Bucket>,
}

/// The key of a source: an IPv4 address (or IPv4-mapped IPv6) whole, an IPv6 address by its
/// /64; no address (a connection the server could not name) counts as one source.
fn key(source: Option<IpAddr>) -> [u8; 16] {
    match source.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => {
            let mut k = [0u8; 16];
            k[12..].copy_from_slice(&v4.octets());
            k[10] = 0xff;
            k[11] = 0xff;
            k
        }
        Some(IpAddr::V6(v6)) => {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&v6.octets()[..8]);
            k[8] = 1;
            k
        }
        None => [0xff; 16],
    }
}

impl RateLimit {
    /// Buckets of `per_source` for each source and `per_node` for all, tracking at most
    /// `max_sources` sources.
    pub fn new(per_source: Rate, per_node: Rate, max_sources: usize) -> Self {
        RateLimit {
            per_source,
            per_node,
            max_sources,
            sources: HashMap::new(),
            node: None,
        }
    }

    /// Takes one request of `source` at `now` out of its bucket and the node's.
    ///
    /// # Errors
    /// [`Limited`] when either bucket is empty (neither is then drawn from), or the source is
    /// new and the table is full.
    pub fn take(&mut self, source: Option<IpAddr>, now: Timestamp) -> Result<(), Limited> {
        let now = now.millis();
        let k = key(source);
        if !self.sources.contains_key(&k) && self.sources.len() >= self.max_sources {
            let rate = self.per_source;
            self.sources.retain(|_, b| {
                b.refill(rate, now);
                b.tokens < rate.burst
            });
            if self.sources.len() >= self.max_sources {
                return Err(Limited::Crowded(rate.every));
            }
        }
        let node = self
            .node
            .get_or_insert_with(|| Bucket::full(self.per_node, now));
        node.refill(self.per_node, now);
        let source = self
            .sources
            .entry(k)
            .or_insert_with(|| Bucket::full(self.per_source, now));
        source.refill(self.per_source, now);
        if source.tokens == 0 {
            return Err(Limited::Source(source.wait(self.per_source, now)));
        }
        if node.tokens == 0 {
            return Err(Limited::Node(node.wait(self.per_node, now)));
        }
        source.tokens -= 1;
        node.tokens -= 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn at(ms: u64) -> Timestamp {
        Timestamp(1_800_000_000_000 + ms)
    }

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    fn limit() -> RateLimit {
        RateLimit::new(
            Rate {
                burst: 2,
                every: MINUTE,
            },
            Rate {
                burst: 3,
                every: Duration::from_secs(10),
            },
            2,
        )
    }

    #[test]
    fn a_source_gets_its_burst_then_one_per_period() {
        let mut l = limit();
        assert_eq!(l.take(ip("10.0.0.1"), at(0)), Ok(()));
        assert_eq!(l.take(ip("10.0.0.1"), at(0)), Ok(()));
        assert_eq!(
            l.take(ip("10.0.0.1"), at(1_000)),
            Err(Limited::Source(Duration::from_secs(59)))
        );
        assert_eq!(l.take(ip("10.0.0.1"), at(60_000)), Ok(()));
        assert!(l.take(ip("10.0.0.1"), at(60_001)).is_err());
    }

    #[test]
    fn the_node_bounds_all_sources_together() {
        let mut l = limit();
        assert_eq!(l.take(ip("10.0.0.1"), at(0)), Ok(()));
        assert_eq!(l.take(ip("10.0.0.1"), at(0)), Ok(()));
        assert_eq!(l.take(ip("10.0.0.2"), at(0)), Ok(()));
        assert_eq!(
            l.take(ip("10.0.0.2"), at(0)),
            Err(Limited::Node(Duration::from_secs(10)))
        );
        assert_eq!(l.take(ip("10.0.0.2"), at(10_000)), Ok(()));
    }

    #[test]
    fn an_ipv6_block_is_one_source_and_a_mapped_ipv4_is_its_ipv4() {
        assert_eq!(key(ip("2001:db8::1")), key(ip("2001:db8::ffff:2")));
        assert_ne!(key(ip("2001:db8::1")), key(ip("2001:db8:0:1::1")));
        assert_eq!(key(ip("::ffff:10.0.0.1")), key(ip("10.0.0.1")));
        assert_ne!(key(None), key(ip("10.0.0.1")));
    }

    #[test]
    fn a_full_table_forgets_refilled_sources_and_refuses_newcomers_otherwise() {
        let mut l = limit();
        assert_eq!(l.take(ip("10.0.0.1"), at(0)), Ok(()));
        assert_eq!(l.take(ip("10.0.0.2"), at(0)), Ok(()));
        assert_eq!(
            l.take(ip("10.0.0.3"), at(1_000)),
            Err(Limited::Crowded(MINUTE))
        );
        // A minute on, the first two refilled: they are forgotten and the newcomer is counted.
        assert_eq!(l.take(ip("10.0.0.3"), at(61_000)), Ok(()));
    }
}
