//! Starting a zone's Raft: which member initialises a new zone, and what a member whose disk
//! was replaced does when it comes back.
//!
//! openraft's `initialize` makes the node campaign at once. When every member of a new zone
//! did so at the same moment, the three candidates of term 1 split the votes, and a candidate
//! whose vote compared higher made the elected leader step down (seen while reading the logs of
//! issue #12's item 10: a fresh zone with no leader for seconds, and on a loaded machine for a
//! minute). So a member with an empty log first asks the others ([`ZoneRequest::Hello`]):
//!
//! - If one of them has followed a leader (its vote is committed), the zone exists and this
//!   member lost its state: a disk replacement, or a wiped data directory. It does not
//!   initialise; the leader sends it the snapshot and the log. Until it has accepted a
//!   leader's AppendEntries it grants no vote in any term up to the highest term the others
//!   reported ([`Amnesia`]): it may have voted in those before it lost its state, and a member
//!   that votes twice in one term can make two leaders. A later term it cannot have voted in,
//!   so an election after the leader's loss still finds its majority.
//! - A member restored from a backup (`xchg restore`, which leaves a marker file) has a catalog
//!   at the backup's position, no log after it and no record of its votes: before it lost its
//!   disk it may have voted in the zone's current term, and acknowledged entries the backup
//!   does not hold. Granting a vote now could elect a leader without them, losing writes the
//!   zone acknowledged. So it grants **no** vote until it has caught up with a leader (applied
//!   what that leader held when it first reached it: every committed entry), or every other
//!   member reports it was restored too (a whole zone brought back from backups, where nothing
//!   newer exists) — [`guard_restored`]. Its stored vote is set to the backup's term, so that the
//!   elections it takes part in are in later terms than its log's last entry.
//! - Otherwise the zone is new. The member with the lowest Raft id initialises at once; the
//!   others wait (the leader lease and a random spread) for it to contact them, and initialise
//!   themselves only if it does not (it may be down).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::future::join_all;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::election::{Removal, Timing};
use super::transport::{ZoneRequest, ZoneResponse, ZoneTransport};
use super::{LogId, MemberNode, NodeId, Raft};

/// What a member tells a starting member about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The index of its last log entry (`None`: its log is empty).
    pub last_log_index: Option<u64>,
    /// It has followed (or been) an elected leader: its vote is committed.
    pub led: bool,
    /// Its current term.
    pub term: u64,
    /// It was restored from a backup and no leader has reached it since.
    #[serde(default)]
    pub restored: bool,
}

/// The longest log the other members of a zone just formed hold (the initial membership and
/// the first leader's entry, and a few writes): beyond it, a member with an empty log is taken
/// for one that lost its disk, and the operator is warned.
const FRESH_ZONE_ENTRIES: u64 = 10;

/// Set while this member's log is empty in a zone that exists: the highest term the others
/// reported, in which and below which it must not vote until a leader has reached it (0: no
/// guard). Cheap to clone; clones share the value.
/// A member restored from a backup refuses every vote until [`guard_restored`] lifts that
/// (the second flag), and says it was restored until a leader reaches it (the third).
///
/// A restored member also keeps the position the backup put it at, and is fenced (answers no
/// Raft request of its zone) once the zone's log shows that position is not of its history
/// ([`Amnesia::check_entries`], [`within_the_leaders_log`]).
#[derive(Debug, Clone, Default)]
pub struct Amnesia(
    Arc<AtomicU64>,
    Arc<AtomicBool>,
    Arc<AtomicBool>,
    Arc<std::sync::Mutex<Restored>>,
);

/// Where a restored member's backup put it, and why it was fenced, if it was.
#[derive(Debug, Default)]
struct Restored {
    at: Option<LogId>,
    fenced: Option<String>,
}

impl Amnesia {
    /// Whether this member must refuse a vote in `term`. The guard of an empty log lifts itself
    /// once `raft` has accepted a leader (its vote is committed); a restored member's only when
    /// [`guard_restored`] lifts it.
    pub fn guards(&self, raft: &Raft, term: u64) -> bool {
        if self.is_restored() {
            return true;
        }
        let upto = self.0.load(Ordering::Acquire);
        if upto == 0 {
            return false;
        }
        if raft.metrics().borrow().vote.is_committed() {
            self.0.store(0, Ordering::Release);
            tracing::info!("a leader has reached this member; it votes again");
            return false;
        }
        term <= upto
    }

    fn set(&self, upto: u64) {
        self.0.store(upto.max(1), Ordering::Release);
    }

    /// Marks this member restored from a backup at `at`: it refuses every vote from now on.
    pub fn set_restored(&self, at: Option<LogId>) {
        if let Ok(mut r) = self.3.lock() {
            r.at = at;
        }
        self.1.store(true, Ordering::Release);
        self.2.store(true, Ordering::Release);
    }

    /// Why this member answers no Raft request of its zone, if it is fenced.
    pub fn fenced(&self) -> Option<String> {
        self.3.lock().ok().and_then(|r| r.fenced.clone())
    }

    /// Where the backup put this member (`None` unless restored from one).
    fn restored_at(&self) -> Option<LogId> {
        self.3.lock().ok().and_then(|r| r.at)
    }

    /// Fences this member for `why`, unless its guard was lifted meanwhile (both under one
    /// lock, so a member is never both lifted and fenced); returns whether it is fenced.
    fn fence(&self, why: String) -> bool {
        let Ok(mut r) = self.3.lock() else {
            return false;
        };
        if r.fenced.is_none() && self.1.load(Ordering::Acquire) {
            tracing::error!("{why}");
            r.fenced = Some(why);
        }
        r.fenced.is_some()
    }

    /// Checks the log ids a leader sends (an AppendEntries' previous entry and its entries, a
    /// snapshot's last entry) against the position a restored member's backup put it at, while
    /// it is guarded, before Raft sees them; fences it if they show the backup is not of the
    /// zone's history. Returns whether it is fenced. (Left to Raft, such a request stops
    /// this member's Raft for good: openraft asserts that what a member holds as committed
    /// agrees with the leader's log, and panics.)
    pub fn check_entries<'a>(&self, sent: impl IntoIterator<Item = &'a LogId>) -> bool {
        // Fenced implies restored (a fenced guard is never lifted): one load for every other
        // member, on every request.
        if !self.is_restored() {
            return false;
        }
        let (at, fenced) = self
            .3
            .lock()
            .map(|r| (r.at, r.fenced.is_some()))
            .unwrap_or_default();
        if fenced {
            return true;
        }
        let Some(at) = at else {
            return false;
        };
        let Some(theirs) = sent.into_iter().find(|q| diverges(at, **q)) else {
            return false;
        };
        // Fenced unless lifted meanwhile (then Raft judges the request, as for any member).
        self.fence(format!(
            "this member was restored from a backup that is not of its zone's history: the backup \
             ends at log index {} in term {}, and the zone's leader holds index {} in term {}, \
             which cannot both be; {FENCED}",
            at.index, at.leader_id.term, theirs.index, theirs.leader_id.term
        ))
    }

    /// Lets a restored member vote again (it still says it was restored until led), unless it
    /// was fenced; returns whether it was let.
    fn lift_restored(&self) -> bool {
        let Ok(restored) = self.3.lock() else {
            return false;
        };
        if restored.fenced.is_some() {
            return false;
        }
        self.1.store(false, Ordering::Release);
        true
    }

    /// Whether this member refuses every vote (restored from a backup, not yet caught up).
    pub fn is_restored(&self) -> bool {
        self.1.load(Ordering::Acquire)
    }

    /// Whether this member was restored from a backup and no leader has reached it since:
    /// what it tells the others ([`Hello::restored`]), whether or not it votes again already.
    fn restored_unled(&self, raft: &Raft) -> bool {
        self.2.load(Ordering::Acquire) && !raft.metrics().borrow().vote.is_committed()
    }
}

/// Asks every other member for its [`Hello`]; `None` for one that did not answer.
async fn ask_others(
    transport: &dyn ZoneTransport,
    members: &BTreeMap<NodeId, MemberNode>,
    me: NodeId,
    timing: Timing,
) -> Vec<Option<Hello>> {
    join_all(
        members
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, node)| async move {
                match transport
                    .call(*id, node, ZoneRequest::Hello, timing.ask_timeout)
                    .await
                {
                    Ok(ZoneResponse::Hello(h)) => Some(h),
                    _ => None,
                }
            }),
    )
    .await
}

/// How often a restored member looks again at whether it may vote.
const RESTORED_CHECK_EVERY: Duration = Duration::from_millis(500);

/// Keeps a member restored from a backup out of every election ([`Amnesia::set_restored`],
/// set before it serves Raft) until either a leader has reached it and it has applied what
/// that leader held when it first asked (its last log index: every entry the zone had
/// committed, which includes whatever this member acknowledged before it was lost), or every
/// other member answers that it was restored too. Then it deletes `marker` and votes again.
/// Returns then, or when `stop` is true.
///
/// A backup whose position ([`Amnesia::set_restored`]) lies beyond the log of the first leader
/// that reaches it, or that the entries a leader sends contradict, is not of the zone's history
/// as it stands (a backup taken before the zone was restored whole from an older one, or a file
/// made by hand): its rows claim entries the zone
/// never committed, and the member would take them for caught up at once, and could then be
/// elected and overwrite writes the zone acknowledged. Such a member is taken out of its zone
/// for good ([`Removal::set_for_good`]: it grants no vote, answers no Raft request, and its API
/// serves only its status, which says why) and keeps its marker, until an operator restores
/// another backup. A restored member does not campaign while guarded ([`super::election`]).
/// The fence is noticed here within [`RESTORED_CHECK_EVERY`] of the transport setting it.
#[allow(clippy::too_many_arguments)]
pub async fn guard_restored(
    raft: Raft,
    transport: Arc<dyn ZoneTransport>,
    members: BTreeMap<NodeId, MemberNode>,
    timing: Timing,
    amnesia: Amnesia,
    removal: Removal,
    marker: PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    let me = raft.metrics().borrow().id;
    tracing::warn!(
        "this member was restored from a backup: it votes in no election until it has caught up \
         with its zone's leader (or every member turns out to be restored from a backup too)"
    );
    let restored_at = amnesia.restored_at();
    let mut target: Option<u64> = None;
    let why = loop {
        if let Some(why) = amnesia.fenced() {
            removal.set_for_good(&why);
            return;
        }
        let m = raft.metrics().borrow().clone();
        if let Some(leader) = m
            .current_leader
            .filter(|l| *l != me && m.vote.is_committed())
        {
            if target.is_none()
                && let Some(node) = members.get(&leader)
                && let Ok(ZoneResponse::Hello(h)) = transport
                    .call(leader, node, ZoneRequest::Hello, timing.ask_timeout)
                    .await
            {
                // Only a leader's own answer (its vote committed, its log not empty) is
                // measured against and caught up with: a node that just lost its disk, named
                // leader by stale metrics, is neither (asked again at the next look).
                if let (true, Some(last)) = (h.led, h.last_log_index) {
                    if let Err(why) = within_the_leaders_log(restored_at, &h) {
                        // Taken out at the top of the loop.
                        amnesia.fence(why);
                        continue;
                    }
                    target = Some(last);
                    tracing::info!(
                        leader,
                        upto = target,
                        "a leader has reached this restored member; it votes again once it has \
                         applied this far"
                    );
                }
            }
            let applied = m.last_applied.map_or(0, |a| a.index);
            if target.is_some_and(|t| applied >= t) {
                break "it has caught up with its zone's leader";
            }
        } else {
            let answers = ask_others(&*transport, &members, me, timing).await;
            let others = members
                .len()
                .saturating_sub(usize::from(members.contains_key(&me)));
            let all_restored = answers.iter().flatten().count() == others
                && answers.iter().flatten().all(|h| h.restored);
            if all_restored {
                break "every other member of the zone was restored from a backup too";
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RESTORED_CHECK_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    };
    // Fenced meanwhile (a request the transport checked): no lift.
    if !amnesia.lift_restored() {
        if let Some(why) = amnesia.fenced() {
            removal.set_for_good(&why);
        }
        return;
    }
    if let Err(e) = std::fs::remove_file(&marker)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, marker = %marker.display(), "cannot remove the restore marker; it is guarded again at its next start");
    }
    tracing::info!(reason = why, "this restored member votes again");
}

/// Refuses a restored position beyond the log of the leader that answered `leader`: with
/// the reason, for the operator, when it is.
fn within_the_leaders_log(restored_at: Option<LogId>, leader: &Hello) -> Result<(), String> {
    let Some(at) = restored_at else {
        return Ok(());
    };
    let leader_last = leader.last_log_index.unwrap_or(0);
    if at.index > leader_last || at.leader_id.term > leader.term {
        return Err(format!(
            "this member was restored from a backup ahead of its zone: the backup ends at log \
             index {} in term {}, the zone's leader's log at index {leader_last} in term {}, so \
             the backup holds writes the zone never committed; {FENCED}",
            at.index, at.leader_id.term, leader.term
        ));
    }
    Ok(())
}

/// What a fenced member's reason ends with: why, and what the operator does.
const FENCED: &str = "it is not of the zone's history as it stands (a backup taken before the \
    zone was restored from an older one, or a file made by hand). This member takes no part in \
    its zone: stop it, empty its data directory and restore a backup taken since, or remove it \
    (DELETE /v1/zone/members/<name>) and add it again as a new member";

/// Whether the leader holding `theirs` shows that `ours`, a position a backup holds as
/// committed, is not in the leader's log: terms never go down along a log, so an entry at or
/// before our index with a later term, one at our index with another term, or one after it
/// with an earlier term means the leader's entry at our index is not ours.
///
/// One log holds one leader's entries per term (a leader campaigns in a term above the entries
/// it holds), so the same term with another leader is another history wherever it is. (Two
/// histories whose same term had the same leader, as after a zone restored whole from an older
/// backup elects in terms the old history used too, are not told apart here.)
fn diverges(ours: LogId, theirs: LogId) -> bool {
    let (ours_term, theirs_term) = (ours.leader_id.term, theirs.leader_id.term);
    if ours_term == theirs_term {
        return ours.leader_id.node_id != theirs.leader_id.node_id;
    }
    match theirs.index.cmp(&ours.index) {
        std::cmp::Ordering::Less => theirs_term > ours_term,
        // Another term at our index.
        std::cmp::Ordering::Equal => true,
        std::cmp::Ordering::Greater => theirs_term < ours_term,
    }
}

/// This member's answer to [`ZoneRequest::Hello`].
pub fn hello(raft: &Raft, amnesia: &Amnesia) -> Hello {
    let m = raft.metrics().borrow().clone();
    Hello {
        last_log_index: m.last_log_index,
        led: m.vote.is_committed(),
        term: m.current_term,
        restored: amnesia.restored_unled(raft),
    }
}

/// Initialises `raft` with `members` when this member should (see the module docs), or marks
/// it [`Amnesia`] when the zone exists without it. Returns when done or when `stop` is true.
pub async fn run(
    raft: Raft,
    transport: Arc<dyn ZoneTransport>,
    members: BTreeMap<NodeId, MemberNode>,
    timing: Timing,
    amnesia: Amnesia,
    mut stop: watch::Receiver<bool>,
) {
    let me = raft.metrics().borrow().id;
    let first = members.keys().next().copied();
    let spread = rand::thread_rng().gen_range(0..=timing.spread.as_millis() as u64);
    let patience = Instant::now() + timing.lease + Duration::from_millis(spread);
    loop {
        match raft.is_initialized().await {
            Ok(true) | Err(_) => return,
            Ok(false) => {}
        }
        let answers = ask_others(&*transport, &members, me, timing).await;
        if answers.iter().flatten().any(|h| h.led) {
            let upto = answers.iter().flatten().map(|h| h.term).max().unwrap_or(0);
            amnesia.set(upto);
            let longest = answers
                .iter()
                .flatten()
                .filter_map(|h| h.last_log_index)
                .max()
                .unwrap_or(0);
            if longest <= FRESH_ZONE_ENTRIES {
                // The usual start of a new zone: another member was elected first.
                tracing::info!(
                    term = upto,
                    "the zone has elected a leader before this member asked: not initialising; \
                     the leader sends it the log"
                );
            } else {
                tracing::warn!(
                    term = upto,
                    entries = longest,
                    "this member's log is empty but its zone has a log (a replaced disk or a \
                     wiped data directory): not initialising; the leader sends it the catalog, \
                     and until then it votes in no term up to this one"
                );
            }
            return;
        }
        if Some(me) == first || Instant::now() >= patience {
            // Refusal means initialised meanwhile (a leader reached this member first).
            if let Err(e) = raft.initialize(members.clone()).await {
                tracing::debug!(error = %e, "initialize refused (already initialised)");
            }
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Amnesia, Hello, LogId, diverges, within_the_leaders_log};

    fn leader(last: u64, term: u64) -> Hello {
        Hello {
            last_log_index: Some(last),
            led: true,
            term,
            restored: false,
        }
    }

    fn at(term: u64, index: u64) -> Option<LogId> {
        Some(id(term, index))
    }

    /// Found by an attacker's review: a backup whose position was beyond the zone's log was
    /// taken for caught up at once, and the member then won an election and erased a write the
    /// zone had acknowledged.
    #[test]
    fn a_restored_position_beyond_the_leaders_log_is_refused() {
        let refused = within_the_leaders_log(at(1, 100_000), &leader(26, 2))
            .expect_err("ahead of the leader's log");
        assert!(refused.contains("index 100000 in term 1"), "{refused}");
        assert!(refused.contains("index 26 in term 2"), "{refused}");
        // A term the zone has not reached is not of its history either.
        assert!(within_the_leaders_log(at(5, 20), &leader(26, 4)).is_err());
        // A backup behind the leader, or at its very end, catches up as before.
        assert!(within_the_leaders_log(at(1, 25), &leader(26, 2)).is_ok());
        assert!(within_the_leaders_log(at(2, 26), &leader(26, 2)).is_ok());
        assert!(within_the_leaders_log(None, &leader(0, 1)).is_ok());
    }

    fn id(term: u64, index: u64) -> LogId {
        LogId::new(openraft::CommittedLeaderId::new(term, 0), index)
    }

    /// Found while testing the fix above with a genuine backup taken before the whole zone was
    /// restored from an older one: the leader's first AppendEntries made openraft panic in the
    /// restored member (its committed position contradicted the leader's log), which then
    /// answered nothing and said nothing useful.
    #[test]
    fn log_ids_that_contradict_a_restored_position_fence_the_member() {
        let ours = id(3, 12);
        // Consistent with a log that holds (3, 12): earlier terms before it, later after it.
        for theirs in [id(1, 4), id(3, 4), id(3, 12), id(3, 40), id(5, 40)] {
            assert!(!diverges(ours, theirs), "{theirs:?}");
        }
        // A later term before it (the test's case: (2, 4) against (1, 12)), another term at it,
        // an earlier term after it.
        for theirs in [id(4, 4), id(4, 12), id(2, 12), id(2, 13)] {
            assert!(diverges(ours, theirs), "{theirs:?}");
        }
        // Found by review: the same term under another leader is another history, before, at
        // or after our index (terms are reused once a zone is restored whole).
        let other = |index| LogId::new(openraft::CommittedLeaderId::new(3, 7), index);
        for index in [4, 12, 40] {
            assert!(diverges(ours, other(index)), "{index}");
        }
        let amnesia = Amnesia::default();
        // Not restored: nothing is checked.
        assert!(!amnesia.check_entries(&[id(9, 1)]));
        amnesia.set_restored(Some(ours));
        assert!(!amnesia.check_entries(&[id(3, 11), id(3, 12), id(4, 13)]));
        assert!(amnesia.fenced().is_none());
        assert!(amnesia.check_entries(&[id(3, 11), id(4, 12)]));
        let why = amnesia.fenced().expect("fenced");
        assert!(
            why.contains("index 12 in term 3") && why.contains("index 12 in term 4"),
            "{why}"
        );
        // Fenced for good: whatever comes next, and its guard is not lifted.
        assert!(amnesia.check_entries(&[]));
        assert!(!amnesia.lift_restored());
        assert!(amnesia.is_restored());
    }
}
