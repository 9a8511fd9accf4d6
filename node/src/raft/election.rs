//! Elections behind a pre-vote, so that a member that cannot win does not disturb its zone.
//!
//! openraft 0.9 has no pre-vote. A follower that hears no leader for its election timeout
//! raises its term and campaigns. A member whose log is behind (it was down, its disk was
//! replaced, its replication stalls) cannot win, but its higher term reaches the leader in the
//! next AppendEntries answer and makes the leader step down: each such member costs the zone an
//! election, and one that stays behind costs one per timeout (issue #12: a follower went from
//! term 1 to 91 while every write failed).
//!
//! So openraft's own election timer is off (`enable_elect = false`) and [`run`] decides when to
//! campaign. After a randomised time without a leader it asks the voters whether they would
//! vote for this node ([`ZoneRequest::PreVote`], Raft thesis §9.6). Asking changes nothing on
//! them. Only when a majority of every configuration says yes does it start the real election
//! (`Raft::trigger().elect()`), which openraft decides as before. A member grants a pre-vote
//! ([`grants`]) when
//!
//! - it does not lead,
//! - it knows no leader, or has heard from none for the leader lease (the same rule openraft
//!   applies to a real vote), and
//! - the candidate's last log id is at least its own.
//!
//! A removed member or a learner never campaigns: it is not a voter of the membership it knows.
//! A member removed before it saw the entry that removed it learns it from the others: they
//! answer its pre-votes with [`PreVoteAnswer::NotAMember`]. Either way it records why in its
//! [`Removal`], stops campaigning, and its API stops serving (`GET /v1/status` says so).

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::join_all;
use openraft::ServerState;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::transport::{ZoneRequest, ZoneResponse, ZoneTransport};
use super::{LogId, NodeId, Raft};
use crate::store::LogStore;

/// A candidate's question: would you vote for me if I campaigned now?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVote {
    /// Who asks.
    pub candidate: NodeId,
    /// The term it would campaign in (for the record; the log decides).
    pub term: u64,
    /// Its last log id.
    pub last_log_id: Option<LogId>,
}

/// A member's answer to a [`PreVote`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreVoteAnswer {
    /// It would vote for the candidate.
    Granted,
    /// It would not (it hears a leader, or its log is ahead).
    Refused,
    /// The candidate is not a voter of the membership this member knows.
    NotAMember,
    /// The candidate's key was revoked by its exchange's root.
    Revoked,
}

/// Why this node is out of its zone, if it is: set when its membership no longer includes it,
/// or when the other members say so (cleared when it is a member again), or when its own key
/// was revoked (which nothing clears but a restart with a new key). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Removal(Arc<RwLock<Option<(String, bool)>>>);

impl Removal {
    /// Why this node is out of its zone, or `None` while it is a member.
    pub fn reason(&self) -> Option<String> {
        self.0
            .read()
            .ok()
            .and_then(|r| r.as_ref().map(|(why, _)| why.clone()))
    }

    /// Records that this node is out of its zone's membership, and why (logged once per
    /// reason); cleared when the membership includes it again.
    pub fn set(&self, why: &str) {
        self.record(why, false);
    }

    /// Records a reason that holds until the node restarts (its key was revoked).
    pub fn set_for_good(&self, why: &str) {
        self.record(why, true);
    }

    fn record(&self, why: &str, sticky: bool) {
        if let Ok(mut r) = self.0.write() {
            if r.as_ref()
                .is_some_and(|(old, s)| old == why || (*s && !sticky))
            {
                return;
            }
            let what = if sticky {
                "this node takes no part in its zone until it is restarted: it stops serving \
                 and campaigning; the reason says what to do"
            } else {
                "this node is no longer a member of its zone: it stops serving and campaigning; \
                 an operator should stop it, or add it back (POST /v1/zone/members)"
            };
            tracing::warn!(reason = why, "{what}");
            *r = Some((why.to_owned(), sticky));
        }
    }

    fn clear(&self) {
        if let Ok(mut r) = self.0.write()
            && r.as_ref().is_some_and(|(_, sticky)| !sticky)
        {
            *r = None;
            tracing::info!("this node is a member of its zone again");
        }
    }
}

/// What a member knows when it is asked for a pre-vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// It leads.
    pub leading: bool,
    /// Time since it last heard from a leader it knows (its committed vote was last
    /// refreshed); `None` when it knows no leader.
    pub since_leader: Option<Duration>,
    /// Its last log id.
    pub last_log_id: Option<LogId>,
    /// The voters of the membership it knows (both configurations during a joint change).
    pub voters: BTreeSet<NodeId>,
}

/// Election timing, from the zone's Raft settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// openraft's leader lease (its `election_timeout_max`): no vote, and no pre-vote, is
    /// granted while a member has heard from its leader within it.
    pub lease: Duration,
    /// The spread the election timeout is drawn from (`election_timeout_max - min`, at least
    /// one heartbeat): members that lost their leader together campaign at different times.
    pub spread: Duration,
    /// The least time between two attempts of one member (`election_timeout_min`).
    pub retry: Duration,
    /// How long a pre-vote question waits for answers.
    pub ask_timeout: Duration,
}

impl Timing {
    /// Timing for the given Raft settings, in milliseconds.
    pub fn new(heartbeat_ms: u64, election_min_ms: u64, election_max_ms: u64) -> Self {
        Timing {
            lease: Duration::from_millis(election_max_ms),
            spread: Duration::from_millis(
                election_max_ms
                    .saturating_sub(election_min_ms)
                    .max(heartbeat_ms),
            ),
            retry: Duration::from_millis(election_min_ms),
            ask_timeout: Duration::from_millis((election_min_ms / 2).max(heartbeat_ms)),
        }
    }
}

/// How a member in `me`'s standing answers `ask`, under `lease`.
pub fn answer(ask: &PreVote, me: &Standing, lease: Duration) -> PreVoteAnswer {
    let leader_heard = me.since_leader.is_some_and(|since| since < lease);
    if !me.voters.is_empty() && !me.voters.contains(&ask.candidate) {
        PreVoteAnswer::NotAMember
    } else if !me.leading && !leader_heard && ask.last_log_id >= me.last_log_id {
        PreVoteAnswer::Granted
    } else {
        PreVoteAnswer::Refused
    }
}

/// Whether the members in `granted` are a majority of every configuration in `configs` (one,
/// or two during a joint change).
pub fn is_quorum(configs: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    !configs.is_empty()
        && configs
            .iter()
            .all(|c| c.intersection(granted).count() * 2 > c.len())
}

/// Whether this node leads, and how long since it last heard from a leader it knows.
///
/// # Errors
/// When the Raft core has stopped.
async fn heard(raft: &Raft) -> Result<(bool, Option<Duration>), String> {
    raft.with_raft_state(|st| {
        let vote = st.vote_ref();
        let since = st
            .vote_last_modified()
            .filter(|_| vote.is_committed())
            .map(|t| Instant::now().saturating_duration_since(t));
        (st.server_state == ServerState::Leader, since)
    })
    .await
    .map_err(|e| e.to_string())
}

/// This node's standing, read from its Raft core and its log.
///
/// # Errors
/// When the Raft core has stopped or the log cannot be read.
pub async fn standing(raft: &Raft, log: &LogStore) -> Result<Standing, String> {
    let (leading, since_leader) = heard(raft).await?;
    let last_log_id = log.last_log_id().await.map_err(|e| e.to_string())?;
    let voters = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .get_joint_config()
        .iter()
        .flatten()
        .copied()
        .collect();
    Ok(Standing {
        leading,
        since_leader,
        last_log_id,
        voters,
    })
}

/// Campaigns for this node when its zone has no leader and a majority would vote for it, until
/// `stop` turns true. See the module docs.
pub async fn run(
    raft: Raft,
    log: LogStore,
    transport: Arc<dyn ZoneTransport>,
    timing: Timing,
    removal: Removal,
    amnesia: super::bootstrap::Amnesia,
    mut stop: watch::Receiver<bool>,
) {
    let tick = (timing.spread / 8).clamp(Duration::from_millis(20), Duration::from_millis(100));
    let mut attempts = Attempts::new(timing);
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let metrics = raft.metrics().borrow().clone();
        let me = metrics.id;
        let membership = metrics.membership_config.membership().clone();
        let configs: Vec<BTreeSet<NodeId>> = membership.get_joint_config().clone();
        let voter = configs.iter().any(|c| c.contains(&me));
        let known = membership.nodes().count() > 0;
        if known && membership.get_node(&me).is_none() {
            removal.set("this node's zone membership no longer includes it");
        }
        let Ok((_, since_leader)) = heard(&raft).await else {
            return;
        };
        if membership.get_node(&me).is_some()
            && since_leader.is_some_and(|since| since < timing.lease)
        {
            removal.clear();
        }
        // A member restored from a backup campaigns only once its guard is lifted
        // ([`super::bootstrap::guard_restored`]): its log may not be of the zone's history.
        if metrics.state == ServerState::Leader
            || !voter
            || removal.reason().is_some()
            || amnesia.is_restored()
        {
            attempts.reset();
            continue;
        }
        if !attempts.due(since_leader) {
            continue;
        }
        let Ok(last_log_id) = log.last_log_id().await else {
            continue;
        };
        let ask = PreVote {
            candidate: me,
            term: metrics.current_term + 1,
            last_log_id,
        };
        let others: Vec<(NodeId, super::MemberNode)> = configs
            .iter()
            .flatten()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|id| **id != me)
            .filter_map(|id| membership.get_node(id).map(|n| (*id, n.clone())))
            .collect();
        let answers = join_all(others.iter().map(|(id, node)| {
            let request = ZoneRequest::PreVote(ask.clone());
            let transport = transport.clone();
            async move {
                let answer = transport
                    .call(*id, node, request, timing.ask_timeout)
                    .await;
                match answer {
                    Ok(ZoneResponse::PreVote(a)) => (*id, Some(a)),
                    other => {
                        tracing::debug!(member = %node, answer = ?other.err(), "no pre-vote answer");
                        (*id, None)
                    }
                }
            }
        }))
        .await;
        let told = |what: PreVoteAnswer| answers.iter().filter(|(_, a)| *a == Some(what)).count();
        let (disowned, revoked) = (
            told(PreVoteAnswer::NotAMember),
            told(PreVoteAnswer::Revoked),
        );
        if revoked * 2 > others.len() {
            removal.set_for_good(
                "this node's key was revoked by its exchange's root (the other members say so): \
                 an operator must remove it from the zone (DELETE /v1/zone/members/<name>)",
            );
            continue;
        }
        if (disowned + revoked) * 2 > others.len() {
            removal.set("the zone's other members no longer count this node as a member");
            continue;
        }
        let mut granted: BTreeSet<NodeId> = answers
            .into_iter()
            .filter_map(|(id, a)| (a == Some(PreVoteAnswer::Granted)).then_some(id))
            .collect();
        granted.insert(me);
        if is_quorum(&configs, &granted) {
            tracing::info!(term = ask.term, granted = ?granted, "pre-vote won; campaigning");
            if raft.trigger().elect().await.is_err() {
                return;
            }
        } else {
            tracing::debug!(term = ask.term, granted = ?granted, "pre-vote lost; not campaigning");
        }
    }
}

/// When this node may next ask for pre-votes.
struct Attempts {
    timing: Timing,
    /// The randomised wait, drawn afresh for every attempt.
    wait: Duration,
    /// No attempt before this (after one that did not lead to a leader).
    not_before: Instant,
    /// When the driver started: the reference while no leader has been heard from.
    started: Instant,
}

impl Attempts {
    fn new(timing: Timing) -> Self {
        let now = Instant::now();
        let mut a = Attempts {
            timing,
            wait: Duration::ZERO,
            not_before: now,
            started: now,
        };
        a.draw();
        a
    }

    fn draw(&mut self) {
        let extra = rand::thread_rng().gen_range(0..=self.timing.spread.as_millis() as u64);
        self.wait = self.timing.lease + Duration::from_millis(extra);
    }

    fn reset(&mut self) {
        self.not_before = Instant::now();
        self.started = Instant::now();
    }

    /// Whether to ask now, given how long ago a leader was last heard from.
    fn due(&mut self, since_leader: Option<Duration>) -> bool {
        let now = Instant::now();
        let silent = since_leader.unwrap_or_else(|| now.saturating_duration_since(self.started));
        if silent < self.wait || now < self.not_before {
            return false;
        }
        self.draw();
        let extra = rand::thread_rng().gen_range(0..=self.timing.spread.as_millis() as u64);
        self.not_before = now + self.timing.retry + Duration::from_millis(extra);
        true
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn log_id(term: u64, index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    fn standing(leading: bool, since: Option<u64>, last: Option<LogId>) -> Standing {
        Standing {
            leading,
            since_leader: since.map(Duration::from_millis),
            last_log_id: last,
            voters: BTreeSet::from([1, 2, 3]),
        }
    }

    fn ask(last: Option<LogId>) -> PreVote {
        PreVote {
            candidate: 2,
            term: 9,
            last_log_id: last,
        }
    }

    const LEASE: Duration = Duration::from_secs(2);

    #[test]
    fn a_candidate_behind_this_members_log_gets_no_pre_vote() {
        let me = standing(false, None, log_id(3, 500));
        let refused = |last| answer(&ask(last), &me, LEASE) == PreVoteAnswer::Refused;
        assert!(refused(log_id(3, 20)));
        assert!(refused(log_id(2, 900)));
        assert!(refused(None));
        assert_eq!(
            answer(&ask(log_id(3, 500)), &me, LEASE),
            PreVoteAnswer::Granted
        );
        assert_eq!(
            answer(&ask(log_id(4, 1)), &me, LEASE),
            PreVoteAnswer::Granted
        );
    }

    #[test]
    fn a_member_that_hears_its_leader_or_leads_grants_no_pre_vote() {
        let heard = standing(false, Some(300), None);
        assert_eq!(
            answer(&ask(log_id(5, 5)), &heard, LEASE),
            PreVoteAnswer::Refused
        );
        let silent = standing(false, Some(2500), None);
        assert_eq!(
            answer(&ask(log_id(5, 5)), &silent, LEASE),
            PreVoteAnswer::Granted
        );
        let leading = standing(true, None, None);
        assert_eq!(
            answer(&ask(log_id(5, 5)), &leading, LEASE),
            PreVoteAnswer::Refused
        );
    }

    #[test]
    fn a_candidate_outside_the_membership_is_told_so() {
        let mut me = standing(false, None, None);
        me.voters = BTreeSet::from([1, 3, 4]);
        assert_eq!(
            answer(&ask(log_id(9, 9)), &me, LEASE),
            PreVoteAnswer::NotAMember
        );
        // A member that knows no membership yet cannot tell.
        me.voters.clear();
        assert_eq!(
            answer(&ask(log_id(9, 9)), &me, LEASE),
            PreVoteAnswer::Granted
        );
    }

    #[test]
    fn a_quorum_is_a_majority_of_every_configuration() {
        let one = vec![BTreeSet::from([1, 2, 3])];
        assert!(is_quorum(&one, &BTreeSet::from([1, 2])));
        assert!(!is_quorum(&one, &BTreeSet::from([1])));
        let joint = vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([3, 4, 5])];
        assert!(!is_quorum(&joint, &BTreeSet::from([1, 2, 3])));
        assert!(is_quorum(&joint, &BTreeSet::from([1, 3, 4])));
        assert!(!is_quorum(&[], &BTreeSet::from([1])));
    }
}
