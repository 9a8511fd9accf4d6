//! Scenarios and their schedules: what faults happen when, and what the clients ask, as a pure
//! function of the scenario, its options and the seed. The schedule's digest (SHA-256 of its
//! canonical JSON) goes into the report, so two runs with the same seed and options can be
//! shown to have run the same schedule.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use xchg_federation_config::layout::LayoutKind;

/// The scenarios `xchg-sim` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// The city layout (10 zones of Xuchang and Zhengzhou), moderate faults.
    Xuchang,
    /// A zone cut off from gossip and from a minority of its own nodes, then healed.
    PartitionHeal,
    /// Repeated leader kills in every zone during heavy submission.
    LeaderChurn,
    /// One follower down while large listings are written, then back.
    LaggingFollower,
    /// N single-zone exchanges in a mesh, each recognising every other, under WAN-like delays:
    /// how recognition latency and messages per listing grow with N.
    Scale,
}

impl Scenario {
    /// Every scenario, as named on the command line.
    pub const ALL: [Scenario; 5] = [
        Scenario::Xuchang,
        Scenario::PartitionHeal,
        Scenario::LeaderChurn,
        Scenario::LaggingFollower,
        Scenario::Scale,
    ];

    /// Its name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Xuchang => "xuchang",
            Scenario::PartitionHeal => "partition-heal",
            Scenario::LeaderChurn => "leader-churn",
            Scenario::LaggingFollower => "lagging-follower",
            Scenario::Scale => "scale",
        }
    }

    /// Parses a name.
    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The layout it runs by default.
    pub fn default_layout(self) -> LayoutKind {
        match self {
            Scenario::Xuchang => LayoutKind::Xuchang,
            Scenario::Scale => LayoutKind::Mesh { exchanges: 10 },
            _ => LayoutKind::TwoExchanges,
        }
    }
}

/// How many zones a generated layout has (the generator's tables: Xuchang's ten and
/// Zhengzhou's one).
pub fn zones_of(layout: LayoutKind) -> usize {
    match layout {
        LayoutKind::Xuchang => 11,
        LayoutKind::SingleZone => 1,
        LayoutKind::TwoExchanges => 2,
        LayoutKind::Mesh { exchanges } => usize::from(exchanges),
    }
}

/// What a run is asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// The scenario.
    pub scenario: Scenario,
    /// The seed every random choice derives from.
    pub seed: u64,
    /// Length of the chaos phase.
    #[serde(with = "millis")]
    pub duration: Duration,
    /// How long the heal phase may take to converge.
    #[serde(with = "millis")]
    pub heal_deadline: Duration,
    /// The layout.
    #[serde(serialize_with = "layout_name")]
    pub layout: LayoutKind,
    /// Nodes per zone.
    pub nodes_per_zone: usize,
    /// Client operations per second, over the whole federation.
    pub rate: u32,
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

fn layout_name<S: serde::Serializer>(l: &LayoutKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&l.to_string())
}

/// A fault, applied at its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "fault")]
pub enum Fault {
    /// Messages lost, per million, on every link (gossip and Raft).
    Loss {
        /// Per million.
        per_million: u32,
    },
    /// Messages delivered twice, per million.
    Duplicate {
        /// Per million.
        per_million: u32,
    },
    /// Every message waits `fixed_ms`, and `tail_per_million` of them up to `tail_ms` more.
    Delay {
        /// Fixed wait.
        fixed_ms: u64,
        /// Bound of the tail.
        tail_ms: u64,
        /// Per million with the tail.
        tail_per_million: u32,
    },
    /// A node cut from its zone's other nodes (Raft).
    IsolateMember {
        /// Zone index.
        zone: usize,
        /// Node index in the zone.
        node: usize,
    },
    /// Every node of a zone cut from gossip (to and from every other zone and exchange).
    CutZoneGossip {
        /// Zone index.
        zone: usize,
    },
    /// A node crashes: in-flight work is lost, its files are kept.
    Crash {
        /// Zone index.
        zone: usize,
        /// Node index in the zone.
        node: usize,
    },
    /// A crashed node starts again from its files.
    Restart {
        /// Zone index.
        zone: usize,
        /// Node index in the zone.
        node: usize,
    },
    /// Whichever node leads the zone at that moment crashes, and restarts `down_ms` later.
    KillLeader {
        /// Zone index.
        zone: usize,
        /// How long it stays down.
        down_ms: u64,
    },
    /// The Raft link from node `from` to node `to` of a zone goes down, one way (until the
    /// heal).
    CutRaftOneWay {
        /// Zone index.
        zone: usize,
        /// Node index of the sender.
        from: usize,
        /// Node index of the receiver.
        to: usize,
    },
    /// Gossip from every node of zone `from_zone` to every node of zone `to_zone` is cut, one
    /// way (until the heal).
    CutGossipOneWay {
        /// Zone index of the senders.
        from_zone: usize,
        /// Zone index of the receivers.
        to_zone: usize,
    },
    /// A node stalls: every message to and from it (Raft and gossip) is held, as if the
    /// process were stopped (its own timers still run), until [`Fault::Resume`].
    Pause {
        /// Zone index.
        zone: usize,
        /// Node index in the zone.
        node: usize,
    },
    /// A paused node's held messages go on.
    Resume {
        /// Zone index.
        zone: usize,
        /// Node index in the zone.
        node: usize,
    },
    /// Every node of exchange `exchange` reads a clock `offset_ms` ahead of the others'
    /// (behind when negative), and judges delegations and dates by it (until the heal).
    Skew {
        /// Exchange index, in layout order.
        exchange: usize,
        /// Milliseconds ahead.
        offset_ms: i64,
    },
    /// Every fault above ends (the heal phase starts with it too).
    HealAll,
}

/// How many exchanges a generated layout has.
pub fn exchanges_of(layout: LayoutKind) -> usize {
    match layout {
        LayoutKind::SingleZone => 1,
        LayoutKind::Xuchang | LayoutKind::TwoExchanges => 2,
        LayoutKind::Mesh { exchanges } => usize::from(exchanges),
    }
}

/// The largest clock skew a schedule draws: inside the 5 minutes of skew the protocol allows
/// (PROTOCOL.md 6.2), so that a skewed exchange is still recognised once its messages arrive.
pub const MAX_SKEW_MS: i64 = 240_000;

/// What a client asks, of a listing it names by `key` (its number in the run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Op {
    /// Submit a new listing `key` in `zone` through node `node`: `large` fills the description
    /// to the API's limit; `sensitive` makes it `important` (never to leave its zone).
    Submit {
        /// Zone index.
        zone: usize,
        /// Node index in the zone.
        node: usize,
        /// The listing's number.
        key: u64,
        /// A listing near the size limit.
        large: bool,
        /// An `important` listing, which the export firewall keeps in.
        sensitive: bool,
    },
    /// Approve it.
    Approve {
        /// Zone index.
        zone: usize,
        /// Node index.
        node: usize,
        /// The listing's number.
        key: u64,
    },
    /// Delist it.
    Delist {
        /// Zone index.
        zone: usize,
        /// Node index.
        node: usize,
        /// The listing's number.
        key: u64,
    },
    /// Revoke spare key number `key` of the zone's exchange (a key no node holds, so the
    /// federation keeps working), signed by the exchange's root and posted to node `node` as
    /// the zone's admin: every zone that trusts the exchange must record it.
    Revoke {
        /// Zone index.
        zone: usize,
        /// Node index.
        node: usize,
        /// The spare key's number ([`spare_key`]).
        key: u64,
    },
    /// Read it (linearizable).
    Read {
        /// Zone index.
        zone: usize,
        /// Node index.
        node: usize,
        /// The listing's number.
        key: u64,
    },
}

/// Spare key `n` of the simulator: a key no node holds, revoked by [`Op::Revoke`].
pub fn spare_key(n: u64) -> xchg_protocol::Keypair {
    let seed: [u8; 32] = Sha256::digest(format!("xchg-sim spare key {n}").as_bytes()).into();
    xchg_protocol::Keypair::from_seed(&seed)
}

/// One scheduled event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timed<T> {
    /// Milliseconds after the start of the chaos phase.
    pub at_ms: u64,
    /// What happens.
    pub what: T,
}

/// The whole schedule of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    /// Faults, in time order.
    pub faults: Vec<Timed<Fault>>,
    /// Client operations, in time order.
    pub ops: Vec<Timed<Op>>,
}

impl Schedule {
    /// The schedule of `options`: a pure function of them.
    pub fn generate(options: &Options) -> Schedule {
        let mut rng = StdRng::seed_from_u64(options.seed);
        let zones = zones_of(options.layout);
        let nodes = options.nodes_per_zone;
        let span = u64::try_from(options.duration.as_millis()).unwrap_or(u64::MAX);
        let exchanges = exchanges_of(options.layout);
        let faults = faults(options.scenario, &mut rng, (exchanges, zones, nodes), span);
        let ops = workload(options, &mut rng, zones, nodes, span);
        Schedule { faults, ops }
    }

    /// SHA-256 of the canonical JSON of the schedule, hex.
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(json))
    }
}

fn at<T>(at_ms: u64, what: T) -> Timed<T> {
    Timed { at_ms, what }
}

/// The faults of `scenario` over `span` ms.
fn faults(
    scenario: Scenario,
    rng: &mut StdRng,
    (exchanges, zones, nodes): (usize, usize, usize),
    span: u64,
) -> Vec<Timed<Fault>> {
    let mut out = Vec::new();
    let zone = |rng: &mut StdRng| rng.gen_range(0..zones);
    match scenario {
        Scenario::Xuchang => {
            out.push(at(
                0,
                Fault::Loss {
                    per_million: rng.gen_range(0..=20_000),
                },
            ));
            out.push(at(
                0,
                Fault::Duplicate {
                    per_million: rng.gen_range(0..=10_000),
                },
            ));
            out.push(at(
                0,
                Fault::Delay {
                    fixed_ms: rng.gen_range(1..=20),
                    tail_ms: rng.gen_range(50..=500),
                    tail_per_million: 20_000,
                },
            ));
            // A crash and a restart now and then, in zones drawn at random.
            let mut t = span / 6;
            while t + 2000 < span {
                let (z, n) = (zone(rng), rng.gen_range(0..nodes));
                out.push(at(t, Fault::Crash { zone: z, node: n }));
                let back = (t + rng.gen_range(1000..=span / 6 + 1000)).min(span - 1);
                out.push(at(back, Fault::Restart { zone: z, node: n }));
                t += span / 3;
            }
            // Every exchange's clock off by up to four minutes either way.
            for exchange in 0..exchanges {
                out.push(at(
                    0,
                    Fault::Skew {
                        exchange,
                        offset_ms: rng.gen_range(-MAX_SKEW_MS..=MAX_SKEW_MS),
                    },
                ));
            }
            // A node stalls for one to four seconds.
            let (z, n) = (zone(rng), rng.gen_range(0..nodes));
            let t = span / 4;
            out.push(at(t, Fault::Pause { zone: z, node: n }));
            let back = (t + rng.gen_range(1000..=4000)).min(span - 1);
            out.push(at(back, Fault::Resume { zone: z, node: n }));
            // Gossip from one zone to another goes down one way.
            if zones > 1 {
                let from_zone = zone(rng);
                let to_zone = (from_zone + rng.gen_range(1..zones)) % zones;
                out.push(at(span / 2, Fault::CutGossipOneWay { from_zone, to_zone }));
            }
            // Raft from one node of a zone to another goes down one way.
            if nodes > 1 {
                let z = zone(rng);
                let from = rng.gen_range(0..nodes);
                let to = (from + rng.gen_range(1..nodes)) % nodes;
                out.push(at(span * 2 / 3, Fault::CutRaftOneWay { zone: z, from, to }));
            }
        }
        Scenario::PartitionHeal => {
            let z = zone(rng);
            let start = rng.gen_range(span / 10..=span / 4);
            // Half the seeds cut the zone off both ways; the others one way, the zone deaf to
            // the rest or unheard by it.
            match rng.gen_range(0..4) {
                0 => (0..zones).filter(|&o| o != z).for_each(|o| {
                    out.push(at(
                        start,
                        Fault::CutGossipOneWay {
                            from_zone: o,
                            to_zone: z,
                        },
                    ));
                }),
                1 => (0..zones).filter(|&o| o != z).for_each(|o| {
                    out.push(at(
                        start,
                        Fault::CutGossipOneWay {
                            from_zone: z,
                            to_zone: o,
                        },
                    ));
                }),
                _ => out.push(at(start, Fault::CutZoneGossip { zone: z })),
            }
            if nodes >= 3 {
                let minority = rng.gen_range(0..nodes);
                out.push(at(
                    start,
                    Fault::IsolateMember {
                        zone: z,
                        node: minority,
                    },
                ));
            }
            out.push(at(start + span / 2, Fault::HealAll));
        }
        Scenario::LeaderChurn => {
            let mut t = rng.gen_range(500..=2000);
            while t + 1000 < span {
                out.push(at(
                    t,
                    Fault::KillLeader {
                        zone: zone(rng),
                        down_ms: rng.gen_range(500..=3000),
                    },
                ));
                t += rng.gen_range(1500..=4000);
            }
        }
        Scenario::Scale => {
            // Every message waits what crossing a province's backbone takes one way (15 ms),
            // and one in twenty up to 200 ms more, drawn uniformly (a congested or re-routed
            // path); drawn per message, not per link.
            out.push(at(
                0,
                Fault::Delay {
                    fixed_ms: 15,
                    tail_ms: 200,
                    tail_per_million: 50_000,
                },
            ));
        }
        Scenario::LaggingFollower => {
            let z = zone(rng);
            // Node 0 leads at the start as often as not: take the last, a follower mostly.
            let n = nodes.saturating_sub(1);
            out.push(at(span / 10, Fault::Crash { zone: z, node: n }));
            out.push(at(span * 8 / 10, Fault::Restart { zone: z, node: n }));
        }
    }
    out.sort_by_key(|t| t.at_ms);
    out
}

/// The clients' operations over `span` ms at `options.rate` per second: submissions first of
/// all, then approvals of submitted listings, reads, and now and then a delisting.
fn workload(
    options: &Options,
    rng: &mut StdRng,
    zones: usize,
    nodes: usize,
    span: u64,
) -> Vec<Timed<Op>> {
    let rate = u64::from(options.rate.max(1));
    let count = span * rate / 1000;
    let mut out = Vec::new();
    // (zone of each key, whether submitted / approved)
    let mut keys: Vec<(usize, u8)> = Vec::new();
    let mut revoked = 0;
    let large_share = match options.scenario {
        Scenario::LaggingFollower => 50,
        _ => 10,
    };
    for i in 0..count {
        let t = i * 1000 / rate;
        let node = rng.gen_range(0..nodes);
        let roll = rng.gen_range(0..100);
        let op = if keys.is_empty() || roll < 35 {
            let zone = rng.gen_range(0..zones);
            keys.push((zone, 1));
            Op::Submit {
                zone,
                node,
                key: keys.len() as u64,
                large: rng.gen_range(0..100) < large_share,
                sensitive: rng.gen_range(0..100) < 10,
            }
        } else {
            let k = rng.gen_range(0..keys.len());
            let (zone, stage) = keys[k];
            let key = k as u64 + 1;
            match (roll, stage) {
                (35..=69, 1) => {
                    keys[k].1 = 2;
                    Op::Approve { zone, node, key }
                }
                (70..=74, 2) => {
                    keys[k].1 = 3;
                    Op::Delist { zone, node, key }
                }
                // One operation in a hundred revokes a key, in the zone of a listing drawn.
                (99, _) => {
                    revoked += 1;
                    Op::Revoke {
                        zone,
                        node,
                        key: revoked,
                    }
                }
                _ => Op::Read { zone, node, key },
            }
        };
        out.push(at(t, op));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(scenario: Scenario, seed: u64) -> Options {
        Options {
            scenario,
            seed,
            duration: Duration::from_secs(30),
            heal_deadline: Duration::from_secs(60),
            layout: scenario.default_layout(),
            nodes_per_zone: 3,
            rate: 20,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        for s in Scenario::ALL {
            let a = Schedule::generate(&options(s, 7));
            let b = Schedule::generate(&options(s, 7));
            let c = Schedule::generate(&options(s, 8));
            assert_eq!(a.digest(), b.digest(), "{s:?}");
            assert_ne!(a.digest(), c.digest(), "{s:?}");
        }
    }

    #[test]
    fn every_event_falls_in_the_chaos_phase_and_names_a_zone_and_node_that_exist() {
        for s in Scenario::ALL {
            for seed in 0..20 {
                let o = options(s, seed);
                let plan = Schedule::generate(&o);
                let zones = zones_of(o.layout);
                for f in &plan.faults {
                    assert!(f.at_ms < 30_000, "{f:?}");
                    match f.what {
                        Fault::Crash { zone, node }
                        | Fault::Restart { zone, node }
                        | Fault::Pause { zone, node }
                        | Fault::Resume { zone, node }
                        | Fault::IsolateMember { zone, node } => {
                            assert!(zone < zones && node < 3, "{f:?}");
                        }
                        Fault::CutRaftOneWay { zone, from, to } => {
                            assert!(zone < zones && from < 3 && to < 3 && from != to, "{f:?}");
                        }
                        Fault::CutGossipOneWay { from_zone, to_zone } => {
                            assert!(from_zone < zones && to_zone < zones && from_zone != to_zone);
                        }
                        Fault::Skew {
                            exchange,
                            offset_ms,
                        } => {
                            assert!(exchange < exchanges_of(o.layout), "{f:?}");
                            assert!(offset_ms.abs() <= MAX_SKEW_MS, "{f:?}");
                        }
                        _ => {}
                    }
                }
                assert_eq!(plan.ops.len(), 600, "{s:?} at 20 per second");
                assert!(matches!(plan.ops[0].what, Op::Submit { key: 1, .. }));
            }
        }
    }

    #[test]
    fn a_crashed_node_is_restarted_in_the_chaos_phase() {
        for seed in 0..50 {
            let plan = Schedule::generate(&options(Scenario::Xuchang, seed));
            let crashes = plan
                .faults
                .iter()
                .filter(|f| matches!(f.what, Fault::Crash { .. }))
                .count();
            let restarts = plan
                .faults
                .iter()
                .filter(|f| matches!(f.what, Fault::Restart { .. }))
                .count();
            assert_eq!(crashes, restarts, "seed {seed}");
            let count =
                |pred: fn(&Fault) -> bool| plan.faults.iter().filter(|f| pred(&f.what)).count();
            assert_eq!(
                count(|f| matches!(f, Fault::Pause { .. })),
                count(|f| matches!(f, Fault::Resume { .. })),
                "seed {seed}: every pause ends"
            );
            assert_eq!(count(|f| matches!(f, Fault::Skew { .. })), 2, "seed {seed}");
        }
    }
}
