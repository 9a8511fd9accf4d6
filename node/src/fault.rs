//! One fault model for the in-process networks: the zone's Raft router
//! (the `raft::router`) and the gossip network (`gossip::memory`).
//!
//! A fault description says, for every message from one endpoint to another, whether it is
//! delivered, after how long and how many times. The faults:
//!
//! - **isolation** of an endpoint (every link to and from it down) and **cuts**, one-way
//!   (`from → to`) or two-way;
//! - **pauses**: a paused endpoint is frozen, not gone: messages to and from it wait and are
//!   delivered, in order of release, when it is resumed;
//! - **loss** and **duplication**, each a probability per million messages;
//! - **delay**: a fixed part for every message plus, with a probability, a tail drawn
//!   uniformly up to a bound.
//!
//! Every draw comes from a generator of the link (`from → to`), itself derived from the
//! model's one seed and the link's endpoints, so what happens on one link does not shift the
//! draws of another, and a run that sends the same messages over each link loses, duplicates
//! and delays the same ones. A generator draws only for the faults that are on, so turning a
//! fault on later in a run does not shift the draws made before.
//!
//! [`FaultModel::heal_all`] means the same in both networks: every link, pause, loss,
//! duplication and delay is cleared.
//!
//! Layer: a leaf; the Raft router and the gossip network above use it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::sync::watch;

/// An endpoint of a link: a Raft node id or a gossip peer. Its bytes seed its links'
/// generators, so they must be the same in every run.
pub trait Endpoint: Ord + Clone + std::fmt::Debug {
    /// A stable byte form, unique among endpoints.
    fn stable_bytes(&self) -> Vec<u8>;
}

impl Endpoint for u64 {
    fn stable_bytes(&self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }
}

/// How long messages wait: `fixed` each, and with probability `tail_per_million` a further
/// wait drawn uniformly from zero to `tail`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delay {
    /// Every message waits this long.
    pub fixed: Duration,
    /// The bound of the extra wait of the unlucky ones.
    pub tail: Duration,
    /// How many messages in a million get the extra wait.
    pub tail_per_million: u32,
}

impl Delay {
    /// The same wait for every message.
    pub fn fixed(wait: Duration) -> Delay {
        Delay {
            fixed: wait,
            ..Delay::default()
        }
    }
}

/// What becomes of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// The link is down (a cut or an isolated endpoint): the sender can tell.
    Cut,
    /// Lost in transit: the sender learns nothing.
    Lost,
    /// An endpoint is paused: wait for [`FaultModel::resumes`] and ask again.
    Held,
    /// Delivered `copies` times (1, or 2 when duplicated), after `after`.
    Deliver {
        /// The wait before delivery.
        after: Duration,
        /// How many times it arrives.
        copies: u32,
    },
}

/// A seeded, reproducible description of what the network does to messages.
#[derive(Debug)]
pub struct FaultModel<K: Endpoint> {
    seed: u64,
    isolated: BTreeSet<K>,
    /// Directed cuts `(from, to)`; a two-way cut is both.
    cut: BTreeSet<(K, K)>,
    paused: BTreeSet<K>,
    loss_per_million: u32,
    duplicate_per_million: u32,
    delay: Delay,
    links: BTreeMap<(K, K), SplitMix>,
    /// Bumped on every resume, so a holder of a receiver wakes and asks again.
    resumes: watch::Sender<u64>,
}

impl<K: Endpoint> FaultModel<K> {
    /// No faults; every generator derived from `seed`.
    pub fn new(seed: u64) -> FaultModel<K> {
        FaultModel {
            seed,
            isolated: BTreeSet::new(),
            cut: BTreeSet::new(),
            paused: BTreeSet::new(),
            loss_per_million: 0,
            duplicate_per_million: 0,
            delay: Delay::default(),
            links: BTreeMap::new(),
            resumes: watch::channel(0).0,
        }
    }

    /// Takes every link to and from `k` down.
    pub fn isolate(&mut self, k: &K) {
        self.isolated.insert(k.clone());
    }

    /// Ends `k`'s isolation (its single cuts stay).
    pub fn heal(&mut self, k: &K) {
        self.isolated.remove(k);
    }

    /// Takes the link `from → to` down; `to → from` stays up.
    pub fn cut_one_way(&mut self, from: &K, to: &K) {
        self.cut.insert((from.clone(), to.clone()));
    }

    /// Takes the link between `a` and `b` down in both directions.
    pub fn cut(&mut self, a: &K, b: &K) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// Brings the link between `a` and `b` back in both directions.
    pub fn mend(&mut self, a: &K, b: &K) {
        self.cut.remove(&(a.clone(), b.clone()));
        self.cut.remove(&(b.clone(), a.clone()));
    }

    /// Freezes `k`: its messages wait until [`FaultModel::resume`].
    pub fn pause(&mut self, k: &K) {
        self.paused.insert(k.clone());
    }

    /// Unfreezes `k`; the messages held for it go on.
    pub fn resume(&mut self, k: &K) {
        if self.paused.remove(k) {
            self.resumes.send_modify(|n| *n += 1);
        }
    }

    /// Loses each message with probability `per_million` / 1,000,000 (capped at all).
    pub fn set_loss_per_million(&mut self, per_million: u32) {
        self.loss_per_million = per_million.min(1_000_000);
    }

    /// Delivers each message twice with probability `per_million` / 1,000,000.
    pub fn set_duplicate_per_million(&mut self, per_million: u32) {
        self.duplicate_per_million = per_million.min(1_000_000);
    }

    /// Sets how long messages wait.
    pub fn set_delay(&mut self, delay: Delay) {
        self.delay = delay;
    }

    /// Clears every fault: links, isolation, pauses, loss, duplication and delay.
    pub fn heal_all(&mut self) {
        self.isolated.clear();
        self.cut.clear();
        self.loss_per_million = 0;
        self.duplicate_per_million = 0;
        self.delay = Delay::default();
        if !self.paused.is_empty() {
            self.paused.clear();
            self.resumes.send_modify(|n| *n += 1);
        }
    }

    /// Whether the link `from → to` is up (pauses do not take links down).
    pub fn link_up(&self, from: &K, to: &K) -> bool {
        !self.isolated.contains(from)
            && !self.isolated.contains(to)
            && !self.cut.contains(&(from.clone(), to.clone()))
    }

    /// Whether `k` is paused.
    pub fn is_paused(&self, k: &K) -> bool {
        self.paused.contains(k)
    }

    /// A receiver that changes whenever an endpoint is resumed. Take it under the same lock as
    /// the [`Fate::Held`] answer, so no resume between the two is missed.
    pub fn resumes(&self) -> watch::Receiver<u64> {
        self.resumes.subscribe()
    }

    /// What becomes of the next message from `from` to `to`.
    pub fn fate(&mut self, from: &K, to: &K) -> Fate {
        if !self.link_up(from, to) {
            return Fate::Cut;
        }
        if self.paused.contains(from) || self.paused.contains(to) {
            return Fate::Held;
        }
        let (loss, duplicate, delay) = (
            self.loss_per_million,
            self.duplicate_per_million,
            self.delay,
        );
        let seed = self.seed;
        let rng = self
            .links
            .entry((from.clone(), to.clone()))
            .or_insert_with(|| SplitMix::for_link(seed, from, to));
        if loss > 0 && rng.per_million() < loss {
            return Fate::Lost;
        }
        let copies = if duplicate > 0 && rng.per_million() < duplicate {
            2
        } else {
            1
        };
        let mut after = delay.fixed;
        if delay.tail_per_million > 0
            && !delay.tail.is_zero()
            && rng.per_million() < delay.tail_per_million
        {
            let tail_ns = u64::try_from(delay.tail.as_nanos()).unwrap_or(u64::MAX);
            after += Duration::from_nanos(rng.next() % tail_ns.saturating_add(1));
        }
        Fate::Deliver { after, copies }
    }
}

/// Waits out one message's fate as `decide` tells it: the copies to deliver (0 when lost) after
/// the delay, or `None` when the link is cut. A held message waits for a resume and is decided
/// again; if the model is gone it waits for good (the caller's timeout ends it). `decide` takes
/// the fate and a resume receiver under one lock, so no resume between the two is missed.
pub async fn cross(mut decide: impl FnMut() -> (Fate, watch::Receiver<u64>)) -> Option<u32> {
    loop {
        let (fate, mut resumes) = decide();
        match fate {
            Fate::Cut => return None,
            Fate::Lost => return Some(0),
            Fate::Held => {
                if resumes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            Fate::Deliver { after, copies } => {
                tokio::time::sleep(after).await;
                return Some(copies);
            }
        }
    }
}

/// SplitMix64: small, seeded, and good enough for fault draws.
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    /// The generator of the link `from → to` under `seed`: the seed mixed with an FNV-1a hash
    /// of the endpoints' stable bytes.
    fn for_link<K: Endpoint>(seed: u64, from: &K, to: &K) -> SplitMix {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in from
            .stable_bytes()
            .into_iter()
            .chain([0xff])
            .chain(to.stable_bytes())
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        SplitMix(seed ^ hash)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn per_million(&mut self) -> u32 {
        // Below 1,000,000, so the cast cannot truncate.
        (self.next() % 1_000_000) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fates(model: &mut FaultModel<u64>, from: u64, to: u64, n: usize) -> Vec<Fate> {
        (0..n).map(|_| model.fate(&from, &to)).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_fates_and_another_seed_other_ones() {
        let run = |seed| {
            let mut m = FaultModel::<u64>::new(seed);
            m.set_loss_per_million(300_000);
            m.set_duplicate_per_million(200_000);
            m.set_delay(Delay {
                fixed: Duration::from_millis(1),
                tail: Duration::from_millis(50),
                tail_per_million: 100_000,
            });
            fates(&mut m, 1, 2, 200)
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn traffic_on_one_link_does_not_shift_the_draws_of_another() {
        let mut quiet = FaultModel::<u64>::new(3);
        quiet.set_loss_per_million(500_000);
        let alone = fates(&mut quiet, 1, 2, 100);

        let mut busy = FaultModel::<u64>::new(3);
        busy.set_loss_per_million(500_000);
        let mut interleaved = Vec::new();
        for _ in 0..100 {
            busy.fate(&2, &3);
            busy.fate(&3, &1);
            interleaved.push(busy.fate(&1, &2));
        }
        assert_eq!(alone, interleaved);
    }

    #[test]
    fn loss_and_duplication_happen_at_about_their_rates() {
        let mut m = FaultModel::<u64>::new(11);
        m.set_loss_per_million(100_000);
        m.set_duplicate_per_million(250_000);
        let all = fates(&mut m, 1, 2, 20_000);
        let lost = all.iter().filter(|f| **f == Fate::Lost).count();
        let doubled = all
            .iter()
            .filter(|f| matches!(f, Fate::Deliver { copies: 2, .. }))
            .count();
        assert!((1_600..2_400).contains(&lost), "lost {lost} of 20000");
        // A quarter of the 90 % that arrive.
        assert!(
            (4_000..5_000).contains(&doubled),
            "doubled {doubled} of 20000"
        );
    }

    #[test]
    fn a_delay_tail_waits_at_most_its_bound_and_only_for_some() {
        let mut m = FaultModel::<u64>::new(5);
        m.set_delay(Delay {
            fixed: Duration::from_millis(10),
            tail: Duration::from_millis(100),
            tail_per_million: 200_000,
        });
        let waits: Vec<Duration> = fates(&mut m, 1, 2, 5_000)
            .into_iter()
            .map(|f| match f {
                Fate::Deliver { after, copies: 1 } => after,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        let bound = Duration::from_millis(110);
        assert!(
            waits
                .iter()
                .all(|w| *w >= Duration::from_millis(10) && *w <= bound)
        );
        let tailed = waits
            .iter()
            .filter(|w| **w > Duration::from_millis(10))
            .count();
        assert!((800..1_200).contains(&tailed), "tailed {tailed} of 5000");
    }

    #[test]
    fn a_one_way_cut_leaves_the_other_direction_up_and_a_two_way_cut_takes_both() {
        let mut m = FaultModel::<u64>::new(1);
        m.cut_one_way(&1, &2);
        assert_eq!(m.fate(&1, &2), Fate::Cut);
        assert!(matches!(m.fate(&2, &1), Fate::Deliver { .. }));
        m.cut(&2, &3);
        assert_eq!(m.fate(&2, &3), Fate::Cut);
        assert_eq!(m.fate(&3, &2), Fate::Cut);
        m.mend(&3, &2);
        assert!(matches!(m.fate(&2, &3), Fate::Deliver { .. }));
        m.isolate(&4);
        assert_eq!(m.fate(&1, &4), Fate::Cut);
        assert_eq!(m.fate(&4, &1), Fate::Cut);
        m.heal(&4);
        assert!(matches!(m.fate(&4, &1), Fate::Deliver { .. }));
    }

    #[test]
    fn a_paused_endpoint_holds_its_messages_until_resumed_and_wakes_the_waiters() {
        let mut m = FaultModel::<u64>::new(1);
        m.pause(&2);
        assert_eq!(m.fate(&1, &2), Fate::Held);
        assert_eq!(m.fate(&2, &3), Fate::Held);
        let woken = m.resumes();
        m.resume(&2);
        assert!(woken.has_changed().unwrap_or(false));
        assert!(matches!(m.fate(&1, &2), Fate::Deliver { .. }));
    }

    #[test]
    fn heal_all_clears_every_fault() {
        let mut m = FaultModel::<u64>::new(1);
        m.isolate(&1);
        m.cut_one_way(&2, &3);
        m.pause(&4);
        m.set_loss_per_million(1_000_000);
        m.set_duplicate_per_million(1_000_000);
        m.set_delay(Delay::fixed(Duration::from_secs(1)));
        m.heal_all();
        for (from, to) in [(1, 2), (2, 3), (4, 1), (5, 6)] {
            assert_eq!(
                m.fate(&from, &to),
                Fate::Deliver {
                    after: Duration::ZERO,
                    copies: 1
                }
            );
        }
    }
}
