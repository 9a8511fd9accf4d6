//! How far a member that is catching up has come, in the log at a steady rate: the leader
//! reports each member its log reaches more than [`FAR_BEHIND`] entries behind (a new member,
//! one back from a long outage, a restored one) while it moves, once that it has stopped
//! moving, and when it has caught up. A member being sent
//! a snapshot logs its install itself ([`crate::store`]).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;

use crate::raft::{NodeId, Raft};

/// How often the leader looks.
const EVERY: Duration = Duration::from_secs(5);

/// Entries behind the leader's log from which a member counts as catching up.
pub const FAR_BEHIND: u64 = 1_000;

/// What the leader says about one member on one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// It is `behind` entries short of `of` (the leader's last log index), at `at`.
    Behind {
        /// The member.
        member: NodeId,
        /// The last index its log is known to match.
        at: u64,
        /// The leader's last log index.
        of: u64,
    },
    /// It was behind at the last look and has not moved since: stopped, cut off or stuck.
    /// Said once; nothing more until it moves.
    Stalled {
        /// The member.
        member: NodeId,
        /// Where its log stopped.
        at: u64,
        /// The leader's last log index.
        of: u64,
    },
    /// It was behind at the last look and is not any more.
    CaughtUp {
        /// The member.
        member: NodeId,
    },
}

/// The members behind at the last look: where each was, and whether it was said to stall.
#[derive(Debug, Default)]
pub struct Tracker {
    behind: BTreeMap<NodeId, (u64, bool)>,
}

impl Tracker {
    /// What to report, given the leader's last log index and where each member's log is known
    /// to match (`None`: not yet known, as for a member just added).
    pub fn look(&mut self, last: u64, matched: &BTreeMap<NodeId, Option<u64>>) -> Vec<Report> {
        let mut reports = Vec::new();
        let mut now_behind = BTreeMap::new();
        for (&member, at) in matched {
            let at = at.unwrap_or(0);
            if last.saturating_sub(at) > FAR_BEHIND {
                let stalled = match self.behind.get(&member) {
                    Some(&(before, said)) if before == at => {
                        if !said {
                            reports.push(Report::Stalled {
                                member,
                                at,
                                of: last,
                            });
                        }
                        true
                    }
                    _ => {
                        reports.push(Report::Behind {
                            member,
                            at,
                            of: last,
                        });
                        false
                    }
                };
                now_behind.insert(member, (at, stalled));
            } else if self.behind.contains_key(&member) {
                reports.push(Report::CaughtUp { member });
            }
        }
        self.behind = now_behind;
        reports
    }
}

/// While this node leads, logs every [`EVERY`] each member catching up and each that caught
/// up, until `stop`.
pub async fn run(raft: Raft, mut stop: watch::Receiver<bool>) {
    let mut tracker = Tracker::default();
    loop {
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let metrics = raft.metrics().borrow().clone();
        let Some(replication) = &metrics.replication else {
            tracker = Tracker::default();
            continue;
        };
        let last = metrics.last_log_index.unwrap_or(0);
        let matched = replication
            .iter()
            .filter(|(id, _)| **id != metrics.id)
            .map(|(id, log_id)| (*id, log_id.map(|l| l.index)))
            .collect();
        let membership = metrics.membership_config.membership();
        let name = |id: &NodeId| {
            membership
                .get_node(id)
                .map_or_else(|| id.to_string(), |n| n.name.clone())
        };
        for report in tracker.look(last, &matched) {
            match report {
                Report::Behind { member, at, of } => tracing::info!(
                    member = %name(&member),
                    at,
                    of,
                    "a member is catching up: {}% of the leader's log",
                    at * 100 / of.max(1)
                ),
                Report::Stalled { member, at, of } => tracing::warn!(
                    member = %name(&member),
                    at,
                    of,
                    "a member far behind has not moved for {} s (stopped or cut off?)",
                    EVERY.as_secs()
                ),
                Report::CaughtUp { member } => {
                    tracing::info!(member = %name(&member), "the member has caught up");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_far_behind_is_reported_each_look_and_once_more_when_caught_up() {
        let mut t = Tracker::default();
        let matched = |a: Option<u64>, b: Option<u64>| BTreeMap::from([(1, a), (2, b)]);
        assert_eq!(
            t.look(5_000, &matched(Some(4_990), None)),
            [Report::Behind {
                member: 2,
                at: 0,
                of: 5_000
            }]
        );
        assert_eq!(
            t.look(5_100, &matched(Some(5_100), Some(3_000))),
            [Report::Behind {
                member: 2,
                at: 3_000,
                of: 5_100
            }]
        );
        assert_eq!(
            t.look(5_200, &matched(Some(5_200), Some(5_150))),
            [Report::CaughtUp { member: 2 }]
        );
        assert!(t.look(5_300, &matched(Some(5_300), Some(5_300))).is_empty());
    }

    #[test]
    fn a_member_that_stops_far_behind_is_said_to_stall_once_until_it_moves() {
        let mut t = Tracker::default();
        let at = |i: u64| BTreeMap::from([(2, Some(i))]);
        assert!(matches!(
            t.look(9_000, &at(100))[..],
            [Report::Behind { .. }]
        ));
        assert_eq!(
            t.look(9_100, &at(100)),
            [Report::Stalled {
                member: 2,
                at: 100,
                of: 9_100
            }]
        );
        assert!(t.look(9_200, &at(100)).is_empty(), "said once");
        assert!(t.look(9_300, &at(100)).is_empty());
        assert!(matches!(
            t.look(9_400, &at(2_000))[..],
            [Report::Behind { at: 2_000, .. }]
        ));
    }
}
