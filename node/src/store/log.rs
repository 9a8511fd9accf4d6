//! The Raft log and vote in SQLite (openraft `RaftLogStorage`), with group commit.
//!
//! openraft 0.9 hands each client write to the log store as its own `append` call. If every
//! call committed (and fsynced) on its own, a zone could never commit more entries per second
//! than the disk does fsyncs. So `append` only queues its entries for a single writer task and
//! keeps them readable in memory; the writer takes every append that is queued, writes them in
//! one transaction, fsyncs once (`synchronous=FULL`) and only then reports each of them flushed
//! through its callback. openraft counts an entry towards a commit only after that callback,
//! so nothing is acknowledged before it is durable — and under load one fsync carries many
//! writes.
//!
//! Vote, truncation and purge go through the same queue (so they are ordered with the appends)
//! and wait until they are on disk.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::TryStreamExt;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, OptionalSend, RaftLogReader, StorageIOError, Vote};
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use super::raft_types::{Entry, LogId, NodeId, StorageError, TypeConfig};
use super::{BatchObserver, Db, from_cbor, meta_value, to_cbor};
use crate::sqlite::in_transaction;

/// Work for the writer task, in the order openraft issued it.
enum Op {
    Append(Vec<Encoded>, LogFlushed<TypeConfig>),
    Truncate(LogId, oneshot::Sender<Result<(), String>>),
    Purge(LogId, oneshot::Sender<Result<(), String>>),
    Meta(&'static str, Vec<u8>, oneshot::Sender<Result<(), String>>),
    /// The commit index, which openraft does not wait for: see [`write_loop`].
    Committed(Vec<u8>),
}

/// An entry as the writer stores it: encoded once, when it is appended.
struct Encoded {
    log_id: LogId,
    bytes: Vec<u8>,
}

/// An entry kept in memory, with its encoded size (what replication budgets by).
#[derive(Clone)]
struct Held {
    entry: Entry,
    bytes: u64,
}

/// Entries by index, shared between the store, its readers and the writer task.
type Pending = Arc<Mutex<BTreeMap<u64, Held>>>;

/// How long a new commit index waits for an append to ride along with before it is written
/// in a commit (and fsync) of its own.
const COMMITTED_ALONE_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// The bytes of log entries one AppendEntries carries at most (at least one entry is always
/// sent). Small enough to cross a LAN in a few tens of milliseconds and to be appended by the
/// follower in one transaction; large enough that catching up is not bound by round trips.
pub const REPLICATION_BUDGET_BYTES: u64 = 4 * 1024 * 1024;

/// Flushed entries kept in memory so that replication reads the newest part of the log
/// without a round trip to SQLite.
const RECENT_ENTRIES: usize = 4096;

/// The log store; cheap to clone (clones share the writer and the pending entries).
#[derive(Clone)]
pub struct LogStore {
    db: Db,
    committed: Arc<AtomicU64>,
    /// Appended, not yet on disk; readers see them as part of the log.
    pending: Pending,
    /// The newest flushed entries (at most [`RECENT_ENTRIES`]).
    recent: Pending,
    /// Bytes of entries written since the store was opened.
    appended: Arc<AtomicU64>,
    writer: mpsc::UnboundedSender<Op>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// Wraps the database and starts the writer task (must be called inside a Tokio runtime).
    pub fn new(db: Db, observer: Option<BatchObserver>) -> Self {
        Self::start(db, observer, PurgeGuard::AppliedOnly)
    }

    /// As [`LogStore::new`], for the openraft conformance suite, which purges logs on their own
    /// with nothing applied: its purges do not wait for the catalog.
    #[cfg(test)]
    pub(crate) fn without_purge_guard(db: Db) -> Self {
        Self::start(db, None, PurgeGuard::Off)
    }

    fn start(db: Db, observer: Option<BatchObserver>, guard: PurgeGuard) -> Self {
        let (writer, queue) = mpsc::unbounded_channel();
        let pending = Pending::default();
        let recent = Pending::default();
        let appended = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_loop(
            db.clone(),
            queue,
            pending.clone(),
            recent.clone(),
            appended.clone(),
            observer,
            guard,
        ));
        LogStore {
            db,
            committed: Arc::default(),
            pending,
            recent,
            appended,
            writer,
        }
    }

    /// How many bytes of entries this store has written since it was opened (encoded, as
    /// stored), shared for the snapshot policy.
    pub fn appended_bytes(&self) -> Arc<AtomicU64> {
        self.appended.clone()
    }

    /// How many bytes the stored entries after `index` take (encoded, as stored).
    ///
    /// # Errors
    /// SQLite's error.
    pub async fn bytes_after(&self, index: u64) -> Result<u64, sqlx::Error> {
        let bytes: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(length(entry)), 0) FROM raft_log WHERE idx > ?",
        )
        .bind(sql_index(index))
        .fetch_one(&self.db.log_read)
        .await?;
        Ok(bytes.unsigned_abs())
    }

    /// The id of the last entry in the log (appended, flushed or not), or of the last purged
    /// one when the log is empty.
    ///
    /// # Errors
    /// When the table cannot be read.
    pub async fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let held = {
            let p = self.lock_pending();
            let r = self.lock_recent();
            p.last_key_value()
                .or_else(|| r.last_key_value())
                .map(|(_, h)| h.entry.log_id)
        };
        match held {
            Some(id) => Ok(Some(id)),
            None => Ok(self.clone().get_log_state().await?.last_log_id),
        }
    }

    /// The highest committed log index openraft has reported, shared for status reporting.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    async fn meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, sqlx::Error> {
        let row = sqlx::query("SELECT value FROM raft_meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.db.log_read)
            .await?;
        meta_value(row)
    }

    /// Queues `op` and waits for the writer to finish it.
    async fn submit(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Op,
    ) -> Result<(), StorageError> {
        let (done, wait) = oneshot::channel();
        self.writer
            .send(make(done))
            .map_err(|_| write_err(&std::io::Error::other("log writer stopped")))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(write_err(&std::io::Error::other(e))),
            Err(_) => Err(write_err(&std::io::Error::other("log writer stopped"))),
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Held>> {
        lock(&self.pending)
    }

    fn lock_recent(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Held>> {
        lock(&self.recent)
    }

    /// The entry at `index` if it is held in memory, and the next index held at or after it.
    fn in_memory(&self, index: u64) -> (Option<Held>, Option<u64>) {
        let p = self.lock_pending();
        let r = self.lock_recent();
        if let Some(h) = p.get(&index).or_else(|| r.get(&index)) {
            return (Some(h.clone()), Some(index));
        }
        let next = [p.range(index..).next(), r.range(index..).next()]
            .into_iter()
            .flatten()
            .map(|(i, _)| *i)
            .min();
        (None, next)
    }
}

fn lock(map: &Pending) -> std::sync::MutexGuard<'_, BTreeMap<u64, Held>> {
    map.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::read_logs(AnyError::new(e)).into()
}

fn write_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_logs(AnyError::new(e)).into()
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

fn sql_index(i: u64) -> i64 {
    i.min(i64::MAX as u64) as i64
}

/// The writer task: one transaction and one fsync for every run of queued appends.
///
/// openraft reports each new commit index (`save_committed`) without waiting for it. Written
/// on its own, every entry would cost each node a second commit and fsync, and the next append
/// would queue behind it. So the newest index is kept and written in the transaction of the
/// next append; only when no append comes to carry it within [`COMMITTED_ALONE_AFTER`] (or
/// the queue closes while the store is still open) is it written alone. A restarted node may
/// therefore read a slightly older commit index, which is safe: openraft learns the rest from
/// the leader.
async fn write_loop(
    db: Db,
    mut queue: mpsc::UnboundedReceiver<Op>,
    pending: Pending,
    recent: Pending,
    appended: Arc<AtomicU64>,
    observer: Option<BatchObserver>,
    guard: PurgeGuard,
) {
    let mut held: Option<Op> = None;
    let mut committed: Option<HeldIndex> = None;
    // A purge waiting for the catalog to apply what it deletes (see [`purge`]).
    let mut purge_due: Option<LogId> = None;
    let mut applied = db.applied.subscribe();
    loop {
        if let Some(due) = purge_due
            && *applied.borrow_and_update() >= due.index
        {
            purge_due = None;
            if let Err(e) = purge(&db, due).await {
                // The entries stay; the next purge deletes them.
                tracing::warn!(error = %e, upto = due.index, "could not purge the log");
            }
        }
        let op = match held.take() {
            Some(op) => op,
            None => {
                let held_index_due = async {
                    match &committed {
                        Some(c) => {
                            tokio::time::sleep(
                                COMMITTED_ALONE_AFTER.saturating_sub(c.since.elapsed()),
                            )
                            .await;
                        }
                        None => std::future::pending().await,
                    }
                };
                let catalog_moved = async {
                    if purge_due.is_none() || applied.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    next = queue.recv() => match next {
                        Some(op) => op,
                        None => {
                            // Closed: the held index goes to disk before the writer stops.
                            if let Some(c) = committed.take() {
                                write_committed_alone(&db, c.value).await;
                            }
                            return;
                        }
                    },
                    () = held_index_due => {
                        // Quiet for as long as the held index may wait.
                        if let Some(c) = committed.take() {
                            write_committed_alone(&db, c.value).await;
                        }
                        continue;
                    }
                    () = catalog_moved => continue,
                }
            }
        };
        match op {
            Op::Committed(value) => HeldIndex::hold(&mut committed, value),
            Op::Append(entries, callback) => {
                let started = Instant::now();
                let mut batch = vec![(entries, callback)];
                while let Ok(next) = queue.try_recv() {
                    match next {
                        Op::Append(e, c) => batch.push((e, c)),
                        Op::Committed(value) => HeldIndex::hold(&mut committed, value),
                        other => {
                            held = Some(other);
                            break;
                        }
                    }
                }
                let riding = committed.take();
                let result = write_entries(
                    &db,
                    batch.iter().flat_map(|(e, _)| e.iter()),
                    riding.as_ref().map(|c| c.value.as_slice()),
                )
                .await;
                if result.is_err() && committed.is_none() {
                    committed = riding;
                }
                let count: usize = batch.iter().map(|(e, _)| e.len()).sum();
                if let Ok(bytes) = result {
                    appended.fetch_add(bytes, Ordering::Relaxed);
                    // Lock order everywhere: pending, then recent.
                    let mut p = lock(&pending);
                    let mut r = lock(&recent);
                    for entry in batch.iter().flat_map(|(e, _)| e.iter()) {
                        // Move it to the recent entries, unless a truncation has replaced it.
                        if p.get(&entry.log_id.index)
                            .is_some_and(|q| q.entry.log_id == entry.log_id)
                            && let Some(h) = p.remove(&entry.log_id.index)
                        {
                            r.insert(entry.log_id.index, h);
                        }
                    }
                    while r.len() > RECENT_ENTRIES {
                        r.pop_first();
                    }
                }
                if let (Ok(_), Some(observer)) = (&result, &observer) {
                    (observer.0)(started.elapsed(), count);
                }
                for (_, callback) in batch {
                    callback
                        .log_io_completed(result.clone().map(drop).map_err(std::io::Error::other));
                }
            }
            Op::Truncate(log_id, done) => {
                let _ = done.send(truncate(&db, log_id).await);
            }
            Op::Purge(log_id, done) => match guard {
                PurgeGuard::AppliedOnly => {
                    // Done when the catalog has applied it (at the top of the loop, at once if
                    // it has); openraft allows a purge to be carried out later.
                    purge_due = purge_due.max(Some(log_id));
                    let _ = done.send(Ok(()));
                }
                PurgeGuard::Off => {
                    let _ = done.send(purge(&db, log_id).await.map_err(|e| e.to_string()));
                }
            },
            Op::Meta(key, value, done) => {
                let _ = done.send(write_meta(&db, key, value).await);
            }
        }
    }
}

const UPSERT_META: &str = "INSERT INTO raft_meta (key, value) VALUES (?1, ?2) \
    ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// Writes one `raft_meta` value durably, in its own commit.
async fn write_meta(db: &Db, key: &str, value: Vec<u8>) -> Result<(), String> {
    let writer = db.log_writer.lock().await.map_err(|e| e.to_string())?;
    writer
        .prepare_cached(UPSERT_META)
        .and_then(|mut upsert| upsert.execute(rusqlite::params![key, value]))
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Deletes the entries from `log_id` on.
async fn truncate(db: &Db, log_id: LogId) -> Result<(), String> {
    let writer = db.log_writer.lock().await.map_err(|e| e.to_string())?;
    writer
        .prepare_cached("DELETE FROM raft_log WHERE idx >= ?1")
        .and_then(|mut delete| delete.execute([sql_index(log_id.index)]))
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The newest commit index not yet written, and since when one has been waiting.
struct HeldIndex {
    value: Vec<u8>,
    since: Instant,
}

impl HeldIndex {
    /// Holds `value` in `slot`, keeping the time the first unwritten one arrived.
    fn hold(slot: &mut Option<HeldIndex>, value: Vec<u8>) {
        let since = slot.as_ref().map_or_else(Instant::now, |c| c.since);
        *slot = Some(HeldIndex { value, since });
    }
}

/// Writes a commit index no append came to carry (see [`write_loop`]).
async fn write_committed_alone(db: &Db, value: Vec<u8>) {
    if let Err(e) = write_meta(db, "committed", value).await {
        // Not needed for safety: a restarted node learns the index from the leader.
        tracing::warn!(error = %e, "could not record the commit index");
    }
}

/// Writes `entries` durably, with the commit index `committed` if given, in one transaction
/// (`synchronous=FULL`: the commit returns after the WAL is fsynced). The whole transaction is
/// one call into SQLite on the log's writer, over statements kept prepared. Returns the
/// bytes of the entries written.
async fn write_entries(
    db: &Db,
    entries: impl Iterator<Item = &Encoded>,
    committed: Option<&[u8]>,
) -> Result<u64, String> {
    let rows: Vec<(i64, i64, &[u8])> = entries
        .map(|e| {
            (
                sql_index(e.log_id.index),
                e.log_id.leader_id.term as i64,
                e.bytes.as_slice(),
            )
        })
        .collect();
    let writer = db.log_writer.lock().await.map_err(|e| e.to_string())?;
    in_transaction(&writer, || {
        let mut insert = writer.prepare_cached(
            "INSERT OR REPLACE INTO raft_log (idx, term, entry) VALUES (?1, ?2, ?3)",
        )?;
        for (idx, term, bytes) in &rows {
            insert.execute(rusqlite::params![idx, term, bytes])?;
        }
        if let Some(value) = committed {
            writer
                .prepare_cached(UPSERT_META)?
                .execute(rusqlite::params!["committed", value])?;
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    Ok(rows.iter().map(|(_, _, bytes)| bytes.len() as u64).sum())
}

/// Whether a purge waits for the catalog to have applied what it deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PurgeGuard {
    /// Always, except in the storage conformance suite.
    AppliedOnly,
    /// The conformance suite's (see [`LogStore::without_purge_guard`]).
    #[cfg_attr(not(test), allow(dead_code))]
    Off,
}

/// Deletes the entries up to `log_id`, once the catalog is on disk.
///
/// The writer runs it only once the catalog has applied `log_id` ([`Db::applied`]): openraft
/// issues the purge behind a snapshot from the leader right after it hands the snapshot to the
/// state machine, without waiting for the install. Deleting at once, a crash before the install
/// commits would leave a catalog behind a log that no longer has the entries between them. The
/// purge is therefore recorded and carried out when the catalog has caught up (openraft allows
/// a purge to be done later), without holding up openraft or the appends queued behind it.
async fn purge(db: &Db, log_id: LogId) -> Result<(), String> {
    // Everything the catalog has committed goes to disk before any log entry is deleted: see
    // the module docs of `store`.
    db.sync_catalog().await.map_err(|e| e.to_string())?;
    let bytes = to_cbor(&log_id).map_err(|e| e.to_string())?;
    let writer = db.log_writer.lock().await.map_err(|e| e.to_string())?;
    in_transaction(&writer, || {
        writer
            .prepare_cached(UPSERT_META)?
            .execute(rusqlite::params!["last_purged", bytes])?;
        writer
            .prepare_cached("DELETE FROM raft_log WHERE idx <= ?1")?
            .execute([sql_index(log_id.index)])
            .map(drop)
    })
    .map_err(|e| e.to_string())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = bounds(&range);
        // Memory first: anything the writer finishes meanwhile is then in the table.
        let mut memory: BTreeMap<u64, Entry> = {
            let p = self.lock_pending();
            let r = self.lock_recent();
            r.range(start..end)
                .chain(p.range(start..end))
                .map(|(i, h)| (*i, h.entry.clone()))
                .collect()
        };
        if end != u64::MAX && memory.len() as u64 == end.saturating_sub(start) {
            return Ok(memory.into_values().collect());
        }
        let rows =
            sqlx::query("SELECT entry FROM raft_log WHERE idx >= ? AND idx < ? ORDER BY idx")
                .bind(sql_index(start))
                .bind(sql_index(end))
                .fetch_all(&self.db.log_read)
                .await
                .map_err(|e| read_err(&e))?;
        let mut out: BTreeMap<u64, Entry> = BTreeMap::new();
        for r in &rows {
            let bytes: Vec<u8> = r.try_get(0).map_err(|e| read_err(&e))?;
            let entry: Entry = from_cbor(&bytes).map_err(|e| read_err(&e))?;
            out.insert(entry.log_id.index, entry);
        }
        out.append(&mut memory);
        Ok(out.into_values().collect())
    }

    /// Entries from `start` on, before `end`, up to [`REPLICATION_BUDGET_BYTES`] of them
    /// (encoded, as stored) and always at least one: what one AppendEntries carries.
    ///
    /// The entries are consecutive from `start`: the run ends at the first index that is
    /// missing (purged meanwhile), and nothing is returned if `start` itself is missing, so a
    /// follower is never sent entries with a hole before them. Entries held in memory are taken
    /// from there; runs of older ones are read from the table row by row, so a follower far
    /// behind costs one budget's worth of reading, not the range openraft asked for.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut next = start;
        let fits = |out: &Vec<Entry>, bytes: u64, more: u64| {
            out.is_empty() || bytes.saturating_add(more) <= REPLICATION_BUDGET_BYTES
        };
        'runs: while next < end {
            let (held, memory_from) = self.in_memory(next);
            if let Some(h) = held {
                if !fits(&out, bytes, h.bytes) {
                    break;
                }
                bytes += h.bytes;
                out.push(h.entry);
                next += 1;
                continue;
            }
            // A run not in memory: from the table, up to the next entry memory holds.
            let stop = memory_from.unwrap_or(end).min(end);
            let mut rows = sqlx::query(
                "SELECT idx, entry FROM raft_log WHERE idx >= ? AND idx < ? ORDER BY idx",
            )
            .bind(sql_index(next))
            .bind(sql_index(stop))
            .fetch(&self.db.log_read);
            while let Some(row) = rows.try_next().await.map_err(|e| read_err(&e))? {
                let idx: i64 = row.try_get(0).map_err(|e| read_err(&e))?;
                let stored: &[u8] = row.try_get(1).map_err(|e| read_err(&e))?;
                let size = stored.len() as u64;
                if idx != sql_index(next) || !fits(&out, bytes, size) {
                    break 'runs;
                }
                let entry: Entry = from_cbor(stored).map_err(|e| read_err(&e))?;
                bytes += size;
                out.push(entry);
                next += 1;
            }
            if next < stop {
                // The table ends before memory begins: a hole.
                break;
            }
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> =
            self.meta("last_purged").await.map_err(|e| read_err(&e))?;
        let last_pending = self
            .lock_pending()
            .last_key_value()
            .map(|(_, h)| h.entry.log_id);
        let last = match last_pending {
            Some(id) => Some(id),
            None => {
                let row = sqlx::query("SELECT entry FROM raft_log ORDER BY idx DESC LIMIT 1")
                    .fetch_optional(&self.db.log_read)
                    .await
                    .map_err(|e| read_err(&e))?;
                match row {
                    Some(r) => {
                        let bytes: Vec<u8> = r.try_get(0).map_err(|e| read_err(&e))?;
                        Some(from_cbor::<Entry>(&bytes).map_err(|e| read_err(&e))?.log_id)
                    }
                    None => last_purged,
                }
            }
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let bytes = to_cbor(vote).map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        self.submit(|done| Op::Meta("vote", bytes, done)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.meta("vote")
            .await
            .map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.committed
            .store(committed.map_or(0, |l| l.index), Ordering::Relaxed);
        // Not needed for safety (openraft re-learns the commit index from the leader), so it
        // rides along with the queue without waiting for its fsync.
        let bytes = to_cbor(&committed).map_err(|e| write_err(&e))?;
        self.writer
            .send(Op::Committed(bytes))
            .map_err(|_| write_err(&std::io::Error::other("log writer stopped")))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .meta::<Option<LogId>>("committed")
            .await
            .map_err(|e| read_err(&e))?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Encoded here, once: the writer stores these bytes and replication budgets by them.
        let entries: Vec<Entry> = entries.into_iter().collect();
        let encoded = entries
            .iter()
            .map(|e| {
                Ok(Encoded {
                    log_id: e.log_id,
                    bytes: to_cbor(e)?,
                })
            })
            .collect::<Result<Vec<_>, std::io::Error>>()
            .map_err(|e| write_err(&e))?;
        {
            let mut p = self.lock_pending();
            for (entry, e) in entries.into_iter().zip(&encoded) {
                let bytes = e.bytes.len() as u64;
                p.insert(entry.log_id.index, Held { entry, bytes });
            }
        }
        self.writer
            .send(Op::Append(encoded, callback))
            .map_err(|_| write_err(&std::io::Error::other("log writer stopped")))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Entries at or after `log_id` vanish for readers now; the queued writes of any of them
        // are undone by the truncation, which the writer runs after them.
        self.lock_pending().retain(|i, _| *i < log_id.index);
        self.lock_recent().retain(|i, _| *i < log_id.index);
        self.submit(|done| Op::Truncate(log_id, done)).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.lock_recent().retain(|i, _| *i > log_id.index);
        self.submit(|done| Op::Purge(log_id, done)).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};

    use super::*;

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn blank(index: u64) -> Entry {
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Blank,
        }
    }

    async fn stored_committed(db: &Db) -> Option<LogId> {
        let row = sqlx::query("SELECT value FROM raft_meta WHERE key = 'committed'")
            .fetch_optional(&db.log_read)
            .await
            .expect("read raft_meta");
        meta_value::<Option<LogId>>(row).expect("decode").flatten()
    }

    /// Polls `stored_committed` until it is `want`, for at most 10 s.
    /// An entry of about `bytes` bytes: one command carrying that much text.
    fn sized(index: u64, bytes: usize) -> Entry {
        use crate::catalog::{Actor, Batch, CatalogCommand};
        use xchg_federation_config::Role;
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(Batch(vec![CatalogCommand::RejectListing {
                listing_id: xchg_protocol::ContentId::from_bytes([7; 32]),
                reason: "x".repeat(bytes),
                at: xchg_protocol::Timestamp(1),
                actor: Actor {
                    id: "op".into(),
                    role: Role::Operator,
                },
            }])),
        }
    }

    /// Regression (issue #12): a member with a replaced disk was sent entries 275.. with no
    /// previous entry (openraft asked for purged ones), and panicked applying the hole.
    #[tokio::test]
    async fn replication_never_reads_past_a_hole_in_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path()).await.expect("open");
        let entries = (1..=5).chain(8..=10).map(|i| sized(i, 10));
        write_entries(&db, encoded(entries).iter(), None)
            .await
            .expect("append");
        let store = LogStore::new(db.clone(), None);
        store.lock_recent().insert(
            12,
            Held {
                entry: sized(12, 10),
                bytes: 50,
            },
        );
        let indexes =
            |entries: Vec<Entry>| entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>();
        let read = |s: u64| {
            let mut store = store.clone();
            async move { indexes(store.limited_get_log_entries(s, 13).await.expect("read")) }
        };
        assert_eq!(read(1).await, [1, 2, 3, 4, 5]);
        assert_eq!(read(6).await, Vec::<u64>::new());
        assert_eq!(read(8).await, [8, 9, 10]);
        assert_eq!(read(11).await, Vec::<u64>::new());
        assert_eq!(read(12).await, [12]);
    }

    /// Regression (issue #12): replication read up to 300 entries whatever their size, and a
    /// lagging follower got an 84 MB AppendEntries it refused for ever.
    #[tokio::test]
    async fn replication_reads_at_most_its_byte_budget_from_table_and_memory_but_always_one_entry()
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path()).await.expect("open");
        const ENTRY: usize = 300 * 1024;
        write_entries(&db, encoded((1..=20).map(|i| sized(i, ENTRY))).iter(), None)
            .await
            .expect("append");
        let mut store = LogStore::new(db.clone(), None);
        {
            let mut recent = store.lock_recent();
            for i in 21..=40 {
                let entry = sized(i, ENTRY);
                let bytes = to_cbor(&entry).expect("cbor").len() as u64;
                recent.insert(i, Held { entry, bytes });
            }
        }
        let indexes =
            |entries: &[Entry]| entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>();
        let size = |entries: &[Entry]| -> u64 {
            entries
                .iter()
                .map(|e| to_cbor(e).expect("cbor").len() as u64)
                .sum()
        };
        for start in [1, 15, 30] {
            let got = store
                .limited_get_log_entries(start, 41)
                .await
                .expect("read");
            assert!(
                size(&got) <= REPLICATION_BUDGET_BYTES,
                "{} bytes",
                size(&got)
            );
            let want = (REPLICATION_BUDGET_BYTES as usize / (ENTRY + 64)) as u64;
            assert_eq!(
                indexes(&got),
                (start..(start + want).min(41)).collect::<Vec<_>>()
            );
        }
        let tail = store.limited_get_log_entries(38, 41).await.expect("read");
        assert_eq!(indexes(&tail), [38, 39, 40]);
        // The whole range is still there for whoever asks for all of it.
        let all = store.try_get_log_entries(1..41).await.expect("read");
        assert_eq!(indexes(&all), (1..=40).collect::<Vec<_>>());

        // An entry larger than the budget goes alone.
        write_entries(
            &db,
            encoded([sized(41, 5 << 20), sized(42, 10)]).iter(),
            None,
        )
        .await
        .expect("append");
        let big = store.limited_get_log_entries(41, 43).await.expect("read");
        assert_eq!(indexes(&big), [41]);
        let after = store.limited_get_log_entries(42, 43).await.expect("read");
        assert_eq!(indexes(&after), [42]);
    }

    fn encoded(entries: impl IntoIterator<Item = Entry>) -> Vec<Encoded> {
        entries
            .into_iter()
            .map(|e| Encoded {
                log_id: e.log_id,
                bytes: to_cbor(&e).expect("cbor"),
            })
            .collect()
    }

    async fn wait_for_committed(db: &Db, want: LogId) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while stored_committed(db).await != Some(want) {
            assert!(
                Instant::now() < deadline,
                "commit index {want} never written"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn an_append_carries_the_commit_index_in_its_own_transaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path()).await.expect("open");
        let committed = to_cbor(&Some(log_id(1))).expect("cbor");
        write_entries(&db, encoded([blank(1), blank(2)]).iter(), Some(&committed))
            .await
            .expect("append");
        assert_eq!(stored_committed(&db).await, Some(log_id(1)));
        let mut store = LogStore::new(db.clone(), None);
        let read = store.try_get_log_entries(1..3).await.expect("read");
        assert_eq!(
            read.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            [1, 2]
        );
        // Without a commit index the row is left as it was.
        write_entries(&db, encoded([blank(3)]).iter(), None)
            .await
            .expect("append");
        assert_eq!(stored_committed(&db).await, Some(log_id(1)));
        db.close().await;
    }

    #[tokio::test]
    async fn a_commit_index_no_append_carries_is_written_alone_when_the_log_is_quiet_or_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path()).await.expect("open");
        let mut store = LogStore::new(db.clone(), None);
        store.save_committed(Some(log_id(5))).await.expect("save");
        // Quiet: written after COMMITTED_ALONE_AFTER.
        wait_for_committed(&db, log_id(5)).await;
        assert_eq!(store.read_committed().await.expect("read"), Some(log_id(5)));
        // Closed: the last index is written as the writer stops.
        store.save_committed(Some(log_id(6))).await.expect("save");
        drop(store);
        wait_for_committed(&db, log_id(6)).await;
        db.close().await;
    }

    /// A purge deletes nothing the catalog has not applied: it is carried out once the catalog
    /// has caught up (openraft purges behind a snapshot from the leader before the install has
    /// committed), without holding up the caller.
    #[tokio::test]
    async fn a_purge_is_carried_out_once_the_catalog_has_applied_what_it_deletes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path()).await.expect("open");
        write_entries(&db, encoded((1..=5).map(blank)).iter(), None)
            .await
            .expect("append");
        let mut store = LogStore::new(db.clone(), None);
        db.applied.send_replace(2);
        tokio::time::timeout(Duration::from_secs(10), store.purge(log_id(4)))
            .await
            .expect("the purge is accepted at once")
            .expect("purge");
        // Not while the catalog is at 2 (only the deferred purge could delete them) ...
        let left = store.try_get_log_entries(1..6).await.expect("read");
        assert_eq!(left.len(), 5, "purged entries the catalog had not applied");
        // ... but once it has applied them.
        db.applied.send_replace(4);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = store.try_get_log_entries(1..6).await.expect("read");
            if left.iter().map(|e| e.log_id.index).eq([5]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "never purged: {} left",
                left.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            store
                .get_log_state()
                .await
                .expect("state")
                .last_purged_log_id,
            Some(log_id(4))
        );
        drop(store);
        db.close().await;
    }
}
