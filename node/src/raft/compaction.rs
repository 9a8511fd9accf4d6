//! When a node builds a snapshot, and so may purge its log.
//!
//! A snapshot here is a full copy of the catalog (a dump of every replicated row): its cost
//! grows with the catalog, not with what changed. On openraft's own policy (every N entries)
//! the work per written entry therefore grew with the catalog: at 80,000 listings each node
//! rewrote ~100 MB every 10,000 entries, and at a million it would rewrite more than a
//! gigabyte. So a node builds one only when both hold:
//!
//! - at least `snapshot_every_entries` entries were applied since the last one (staggered per
//!   node, see [`staggered`]), and
//! - the log written since then is at least `snapshot_log_percent` of the catalog's size, or
//!   [`LOG_CAP_BYTES`] whatever the catalog.
//!
//! The second keeps the copying in proportion to the writing (at 50 %, a snapshot follows at
//! least half a catalog's worth of new log) and bounds the log at about that share of the
//! catalog. A zone that only ever adds listings writes less log than catalog (each listing
//! also lands in indexes, its history and the audit chain: measured, the log is about a third
//! of the catalog), so at 50 % it builds a snapshot only once its log reaches the cap. With
//! `snapshot_log_percent = 0` the entry count alone decides (openraft's own policy).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::raft::{NodeId, Raft};
use crate::store::{Db, LogStore};

/// How often the policy is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A log this large since the last snapshot makes one due whatever the catalog's size, so the
/// log is bounded even where it never reaches its share of the catalog. (Staggered per node
/// like the rest.)
pub const LOG_CAP_BYTES: u64 = 1 << 30;

/// A node's snapshot policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Entries since the last snapshot before the next, this node's staggered share.
    pub every_entries: u64,
    /// Log bytes since the last snapshot per thousand bytes of catalog, staggered the same
    /// way; 0 for the entry count alone.
    pub log_permille: u64,
    /// Log bytes since the last snapshot that make one due whatever the catalog's size.
    pub log_cap: u64,
}

/// The snapshot interval of the node with Raft id `id`: `every` plus up to a quarter more,
/// fixed per node. A zone's members see the same log, so with one interval they all built
/// their snapshot (a full dump of the catalog) at the same index, at once; on a shared or small
/// machine that stalled the whole zone (measured with `xchg bench zone` at 64 clients while
/// three 100 MB snapshots were built together: p99 54–72 ms, single writes up to 450 ms).
pub fn staggered(every: u64, id: u64) -> u64 {
    every.saturating_add(id % (every / 4 + 1))
}

impl Policy {
    /// The policy of node `id` for the configured `every` entries and `log_percent`.
    pub fn new(every: u64, log_percent: u64, id: NodeId) -> Policy {
        let every_entries = staggered(every, id);
        // The same stagger for the size condition: the zone's members see the same log and
        // catalog sizes, and would otherwise cross it together.
        let stagger = |value: u64| {
            let v = u128::from(value) * u128::from(every_entries) / u128::from(every.max(1));
            u64::try_from(v).unwrap_or(u64::MAX)
        };
        Policy {
            every_entries,
            log_permille: stagger(log_percent.saturating_mul(10)),
            log_cap: stagger(LOG_CAP_BYTES),
        }
    }

    /// Whether only the entry count decides (openraft's own policy does it then).
    pub fn entries_only(&self) -> bool {
        self.log_permille == 0
    }

    /// Whether a snapshot is due after `entries` applied entries and `log_bytes` of log since
    /// the last one, with a catalog of `catalog_bytes`.
    pub fn due(&self, entries: u64, log_bytes: u64, catalog_bytes: u64) -> bool {
        entries >= self.every_entries
            && (log_bytes >= self.log_cap
                || u128::from(log_bytes) * 1000
                    >= u128::from(catalog_bytes) * u128::from(self.log_permille))
    }
}

/// The log written after a snapshot: the bytes stored after it when it was first seen, and the
/// log writer's running count then (what it appends later is added from that count).
struct LogSince {
    /// The snapshot's index.
    snapshot: u64,
    stored: u64,
    counter: u64,
}

/// Builds a snapshot whenever `policy` says one is due, until `stop` is raised.
pub async fn run(
    raft: Raft,
    log: LogStore,
    db: Db,
    policy: Policy,
    mut stop: watch::Receiver<bool>,
) {
    let appended: Arc<AtomicU64> = log.appended_bytes();
    let mut since: Option<LogSince> = None;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let (applied, snapshot) = {
            let m = raft.metrics().borrow().clone();
            (
                m.last_applied.map_or(0, |id| id.index),
                m.snapshot.map_or(0, |id| id.index),
            )
        };
        if since.as_ref().is_none_or(|s| s.snapshot != snapshot) {
            let counter = appended.load(Ordering::Relaxed);
            match log.bytes_after(snapshot).await {
                Ok(stored) => {
                    since = Some(LogSince {
                        snapshot,
                        stored,
                        counter,
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "snapshot policy: cannot size the log");
                    continue;
                }
            }
        }
        let Some(since) = &since else {
            continue;
        };
        let entries = applied.saturating_sub(snapshot);
        if entries < policy.every_entries {
            continue;
        }
        let log_bytes = since.stored
            + appended
                .load(Ordering::Relaxed)
                .saturating_sub(since.counter);
        let catalog = match db.catalog_bytes().await {
            Ok(b) => b,
            Err(e) => {
                // The entry count decides alone rather than never.
                tracing::warn!(error = %e, "snapshot policy: cannot size the catalog");
                0
            }
        };
        // A build that finished since the metrics were read has reset the count.
        let rebuilt = raft
            .metrics()
            .borrow()
            .snapshot
            .is_some_and(|id| id.index != snapshot);
        if !rebuilt && policy.due(entries, log_bytes, catalog) {
            tracing::info!(
                entries,
                log_bytes,
                catalog_bytes = catalog,
                "building a snapshot: the log since the last one has outgrown its share"
            );
            // Ignored by openraft while a build is under way.
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_intervals_are_staggered_by_node_within_a_quarter() {
        let ids: Vec<u64> = ["a-1", "a-2", "a-3"]
            .iter()
            .map(|n| crate::raft::node_id(n))
            .collect();
        let every: Vec<u64> = ids.iter().map(|id| staggered(10_000, *id)).collect();
        assert!(
            every.iter().all(|e| (10_000..=12_500).contains(e)),
            "{every:?}"
        );
        assert!(every[0] != every[1] && every[1] != every[2], "{every:?}");
        assert_eq!(staggered(1, u64::MAX), 1);
        // The size condition is staggered alike.
        let policies: Vec<Policy> = ids.iter().map(|id| Policy::new(10_000, 50, *id)).collect();
        for p in &policies {
            assert!((500..=625).contains(&p.log_permille), "{p:?}");
            // The same factor (to the permille): 500 ‰ × every_entries / 10,000.
            assert_eq!(p.log_permille, 500 * p.every_entries / 10_000, "{p:?}");
        }
    }

    #[test]
    fn a_snapshot_is_due_after_enough_entries_and_enough_log_for_the_catalog() {
        let p = Policy {
            every_entries: 100,
            log_permille: 500,
            log_cap: 1 << 30,
        };
        let mb = 1 << 20;
        // Enough entries, and a log of half the catalog.
        assert!(p.due(100, 50 * mb, 100 * mb));
        // Too few entries, whatever the log.
        assert!(!p.due(99, 500 * mb, 100 * mb));
        // Enough entries, but a log small for this catalog: copying it now would cost far more
        // than the log it frees.
        assert!(!p.due(10_000, 49 * mb, 100 * mb));
        // Entry count alone.
        let entries_only = Policy::new(100, 0, 7);
        assert!(entries_only.entries_only());
        assert!(entries_only.due(entries_only.every_entries, 0, 100 * mb));
        // Whatever the catalog, once the log reaches the cap.
        assert!(p.due(100, 1 << 30, u64::MAX));
        assert!(!p.due(100, (1 << 30) - 1, u64::MAX));
        // No overflow at the extremes.
        assert!(!p.due(u64::MAX, 0, u64::MAX));
        assert!(p.due(u64::MAX, u64::MAX, u64::MAX));
    }
}
