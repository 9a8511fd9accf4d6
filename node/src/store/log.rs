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

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, OptionalSend, RaftLogReader, StorageIOError, Vote};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::raw::in_transaction;
use super::{BatchObserver, Db, from_cbor, meta_value, to_cbor};
use crate::raft::{Entry, LogId, NodeId, StorageError, TypeConfig};

/// Work for the writer task, in the order openraft issued it.
enum Op {
    Append(Vec<Entry>, LogFlushed<TypeConfig>),
    Truncate(LogId, oneshot::Sender<Result<(), String>>),
    Purge(LogId, oneshot::Sender<Result<(), String>>),
    Meta(&'static str, Vec<u8>, oneshot::Sender<Result<(), String>>),
    /// The commit index, which openraft does not wait for: see [`write_loop`].
    Committed(Vec<u8>),
}

/// Entries by index, shared between the store, its readers and the writer task.
type Pending = Arc<Mutex<BTreeMap<u64, Entry>>>;

/// How long a new commit index waits for an append to ride along with before it is written
/// in a commit (and fsync) of its own.
const COMMITTED_ALONE_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

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

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        lock(&self.pending)
    }

    fn lock_recent(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        lock(&self.recent)
    }
}

fn lock(map: &Pending) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
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
                            .is_some_and(|q| q.log_id == entry.log_id)
                            && let Some(e) = p.remove(&entry.log_id.index)
                        {
                            r.insert(e.log_id.index, e);
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
    let mut writer = db.log_writer.lock().await.map_err(|e| e.to_string())?;
    sqlx::query(UPSERT_META)
        .bind(key)
        .bind(value)
        .execute(writer.conn())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Deletes the entries from `log_id` on.
async fn truncate(db: &Db, log_id: LogId) -> Result<(), String> {
    let mut writer = db.log_writer.lock().await.map_err(|e| e.to_string())?;
    sqlx::query("DELETE FROM raft_log WHERE idx >= ?")
        .bind(sql_index(log_id.index))
        .execute(writer.conn())
        .await
        .map(|_| ())
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
/// one hand-off to SQLite, over statements kept prepared ([`super::raw::Writer`]). Returns the
/// bytes of the entries written.
async fn write_entries(
    db: &Db,
    entries: impl Iterator<Item = &Entry>,
    committed: Option<&[u8]>,
) -> Result<u64, String> {
    let rows = entries
        .map(|e| {
            Ok((
                sql_index(e.log_id.index),
                e.log_id.leader_id.term as i64,
                to_cbor(e)?,
            ))
        })
        .collect::<Result<Vec<_>, std::io::Error>>()
        .map_err(|e| e.to_string())?;
    let mut writer = db.log_writer.lock().await.map_err(|e| e.to_string())?;
    writer
        .raw(|raw| {
            in_transaction(raw, || {
                let mut insert = raw.prepare_cached(
                    "INSERT OR REPLACE INTO raft_log (idx, term, entry) VALUES (?1, ?2, ?3)",
                )?;
                for (idx, term, bytes) in &rows {
                    insert.execute(rusqlite::params![idx, term, bytes])?;
                }
                if let Some(value) = committed {
                    raw.prepare_cached(UPSERT_META)?
                        .execute(rusqlite::params!["committed", value])?;
                }
                Ok(())
            })
        })
        .await
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
    let mut writer = db.log_writer.lock().await.map_err(|e| e.to_string())?;
    let mut tx = writer
        .conn()
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query(
        "INSERT INTO raft_meta (key, value) VALUES ('last_purged', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(bytes)
    .execute(&mut *tx)
    .await
    .map_err(|e| e.to_string())?;
    sqlx::query("DELETE FROM raft_log WHERE idx <= ?")
        .bind(sql_index(log_id.index))
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())
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
                .map(|(i, e)| (*i, e.clone()))
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
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> =
            self.meta("last_purged").await.map_err(|e| read_err(&e))?;
        let last_pending = self.lock_pending().last_key_value().map(|(_, e)| e.log_id);
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        {
            let mut p = self.lock_pending();
            for e in &entries {
                p.insert(e.log_id.index, e.clone());
            }
        }
        self.writer
            .send(Op::Append(entries, callback))
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
        write_entries(&db, [blank(1), blank(2)].iter(), Some(&committed))
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
        write_entries(&db, [blank(3)].iter(), None)
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
        write_entries(&db, (1..=5).map(blank).collect::<Vec<_>>().iter(), None)
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
