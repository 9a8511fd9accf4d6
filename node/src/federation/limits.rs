//! How much a node takes from one signer or peer before it holds it against them: token
//! buckets, a pure core with time passed in.
//!
//! - Agreement refusals are recorded in the zone's replicated state (bounded, PROTOCOL.md 7.4),
//!   so a partner whose announcements the agreement refuses, or a peer relaying them, could
//!   otherwise have the zone write one record per message. Beyond the rates below a refusal is
//!   not recorded and the delivering peer pays for it in its gossip score.
//! - Messages ignored for this node's trust store or clock (untrusted root, expired
//!   delegation, ...) cost a peer whose identity is unproven nothing up to a small allowance
//!   (clocks and root rotations differ between honest nodes), then a score penalty each.

use std::collections::HashMap;

/// Refusals recorded from one signing key: a burst of this many ...
pub const SIGNER_BURST: f64 = 100.0;
/// ... then this many per second.
pub const SIGNER_PER_SECOND: f64 = 1.0;
/// Refusals recorded from what one peer delivered: a burst of this many ...
pub const PEER_BURST: f64 = 200.0;
/// ... then this many per second.
pub const PEER_PER_SECOND: f64 = 2.0;
/// Messages ignored for this node's trust store or clock that an unproven peer may deliver
/// without penalty: a burst of this many ...
pub const UNTRUSTED_BURST: f64 = 16.0;
/// ... then one per this many seconds.
pub const UNTRUSTED_PER_SECOND: f64 = 0.1;
/// Most signers or peers tracked at once; beyond it, full buckets are forgotten first.
pub const MAX_TRACKED: usize = 4096;

/// Token buckets by key.
#[derive(Debug)]
struct Buckets {
    burst: f64,
    per_ms: f64,
    /// key → (tokens, time of the last refill in ms).
    tokens: HashMap<String, (f64, u64)>,
}

impl Buckets {
    fn new(burst: f64, per_second: f64) -> Self {
        Buckets {
            burst,
            per_ms: per_second / 1000.0,
            tokens: HashMap::new(),
        }
    }

    /// The tokens of `key` at `now`, refilled.
    fn level(&self, key: &str, now: u64) -> f64 {
        self.tokens.get(key).map_or(self.burst, |&(tokens, at)| {
            (tokens + now.saturating_sub(at) as f64 * self.per_ms).min(self.burst)
        })
    }

    fn take(&mut self, key: &str, now: u64) {
        if self.tokens.len() >= MAX_TRACKED && !self.tokens.contains_key(key) {
            let (burst, per_ms) = (self.burst, self.per_ms);
            self.tokens.retain(|_, &mut (tokens, at)| {
                tokens + now.saturating_sub(at) as f64 * per_ms < burst
            });
            if self.tokens.len() >= MAX_TRACKED {
                // All of them are busy: the one whose bucket refills last is the one forgotten.
                if let Some(k) = self
                    .tokens
                    .iter()
                    .min_by(|a, b| a.1.0.total_cmp(&b.1.0))
                    .map(|(k, _)| k.clone())
                {
                    self.tokens.remove(&k);
                }
            }
        }
        let level = self.level(key, now);
        self.tokens.insert(key.to_owned(), (level - 1.0, now));
    }
}

/// Whether a refusal may be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Record it.
    Record,
    /// The signer has used its share.
    SignerOverRate,
    /// The delivering peer has used its share.
    PeerOverRate,
}

/// The budgets of one node.
#[derive(Debug)]
pub struct Budgets {
    signers: Buckets,
    peers: Buckets,
    untrusted: Buckets,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            signers: Buckets::new(SIGNER_BURST, SIGNER_PER_SECOND),
            peers: Buckets::new(PEER_BURST, PEER_PER_SECOND),
            untrusted: Buckets::new(UNTRUSTED_BURST, UNTRUSTED_PER_SECOND),
        }
    }
}

impl Budgets {
    /// Whether `peer` (unproven) may deliver one more message ignored for this node's trust
    /// store or clock at `now` (ms) without penalty; uses one token when it may.
    pub fn forgive_untrusted(&mut self, peer: &str, now: u64) -> bool {
        if self.untrusted.level(peer, now) < 1.0 {
            return false;
        }
        self.untrusted.take(peer, now);
        true
    }

    /// Whether a refusal of what `signer` signed and `peer` delivered may be recorded at `now`
    /// (ms); when it may, it uses one token of each.
    pub fn admit(&mut self, signer: &str, peer: &str, now: u64) -> Admission {
        if self.signers.level(signer, now) < 1.0 {
            return Admission::SignerOverRate;
        }
        if self.peers.level(peer, now) < 1.0 {
            return Admission::PeerOverRate;
        }
        self.signers.take(signer, now);
        self.peers.take(peer, now);
        Admission::Record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signer_gets_its_burst_then_one_per_second() {
        let mut limiter = Budgets::default();
        for i in 0..SIGNER_BURST as usize {
            // Each from another peer, so only the signer's budget counts.
            let peer = format!("p{i}");
            assert_eq!(limiter.admit("k", &peer, 0), Admission::Record, "{i}");
        }
        assert_eq!(limiter.admit("k", "q", 0), Admission::SignerOverRate);
        assert_eq!(limiter.admit("k", "q", 999), Admission::SignerOverRate);
        assert_eq!(limiter.admit("k", "q", 1_000), Admission::Record);
        assert_eq!(limiter.admit("other", "q", 1_000), Admission::Record);
    }

    #[test]
    fn a_peer_relaying_many_signers_is_limited_on_its_own() {
        let mut limiter = Budgets::default();
        for i in 0..PEER_BURST as usize {
            let signer = format!("k{i}");
            assert_eq!(limiter.admit(&signer, "p", 0), Admission::Record, "{i}");
        }
        assert_eq!(limiter.admit("fresh", "p", 0), Admission::PeerOverRate);
        assert_eq!(limiter.admit("fresh", "q", 0), Admission::Record);
    }

    #[test]
    fn tracking_stays_bounded_and_forgets_idle_keys_first() {
        let mut limiter = Budgets::default();
        for i in 0..MAX_TRACKED * 2 {
            let key = format!("k{i}");
            limiter.admit(&key, &key, i as u64);
        }
        assert!(limiter.signers.tokens.len() <= MAX_TRACKED);
        assert!(limiter.peers.tokens.len() <= MAX_TRACKED);
    }

    #[test]
    fn an_unproven_peer_is_forgiven_a_few_untrusted_messages_then_one_each_ten_seconds() {
        let mut budgets = Budgets::default();
        for i in 0..UNTRUSTED_BURST as usize {
            assert!(budgets.forgive_untrusted("p", 0), "{i}");
        }
        assert!(!budgets.forgive_untrusted("p", 0));
        assert!(!budgets.forgive_untrusted("p", 9_999));
        assert!(budgets.forgive_untrusted("p", 10_000));
        assert!(budgets.forgive_untrusted("q", 10_000), "per peer");
    }
}
