//! The Raft log and vote in SQLite (openraft `RaftLogStorage`).
//!
//! Appends are one transaction per call on the `synchronous=FULL` connection: openraft hands
//! over every entry that arrived while the previous flush was running, so one fsync commits a
//! whole batch of client writes (group commit).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, OptionalSend, RaftLogReader, StorageIOError, Vote};
use sqlx::{Connection, Row};

use super::{Db, from_cbor, to_cbor};
use crate::raft::{Entry, LogId, NodeId, StorageError, TypeConfig};

/// The log store; cheap to clone (it holds pool handles).
#[derive(Clone, Debug)]
pub struct LogStore {
    db: Db,
    committed: Arc<AtomicU64>,
}

impl LogStore {
    /// Wraps the database.
    pub fn new(db: Db) -> Self {
        LogStore {
            db,
            committed: Arc::default(),
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
            .fetch_optional(&self.db.log)
            .await?;
        match row {
            Some(r) => {
                let bytes: Vec<u8> = r.try_get(0)?;
                from_cbor(&bytes)
                    .map(Some)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))
            }
            None => Ok(None),
        }
    }

    async fn set_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), sqlx::Error> {
        let bytes = to_cbor(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        sqlx::query("INSERT INTO raft_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(bytes)
            .execute(&self.db.log)
            .await?;
        Ok(())
    }
}

fn read_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::read_logs(AnyError::new(e)).into()
}

fn write_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_logs(AnyError::new(e)).into()
}

fn bounds(range: &impl RangeBounds<u64>) -> (i64, i64) {
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
    (
        start.min(i64::MAX as u64) as i64,
        end.min(i64::MAX as u64) as i64,
    )
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = bounds(&range);
        let rows =
            sqlx::query("SELECT entry FROM raft_log WHERE idx >= ? AND idx < ? ORDER BY idx")
                .bind(start)
                .bind(end)
                .fetch_all(&self.db.log)
                .await
                .map_err(|e| read_err(&e))?;
        rows.iter()
            .map(|r| {
                let bytes: Vec<u8> = r.try_get(0).map_err(|e| read_err(&e))?;
                from_cbor(&bytes).map_err(|e| read_err(&e))
            })
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> =
            self.meta("last_purged").await.map_err(|e| read_err(&e))?;
        let row = sqlx::query("SELECT entry FROM raft_log ORDER BY idx DESC LIMIT 1")
            .fetch_optional(&self.db.log)
            .await
            .map_err(|e| read_err(&e))?;
        let last = match row {
            Some(r) => {
                let bytes: Vec<u8> = r.try_get(0).map_err(|e| read_err(&e))?;
                let entry: Entry = from_cbor(&bytes).map_err(|e| read_err(&e))?;
                Some(entry.log_id)
            }
            None => last_purged,
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
        self.set_meta("vote", vote)
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.meta("vote")
            .await
            .map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.committed
            .store(committed.map_or(0, |l| l.index), Ordering::Relaxed);
        self.set_meta("committed", &committed)
            .await
            .map_err(|e| write_err(&e))
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
        let mut conn = self.db.log.acquire().await.map_err(|e| write_err(&e))?;
        // IMMEDIATE: take the write lock up front; a deferred transaction that reads first and
        // writes later gets SQLITE_BUSY_SNAPSHOT (no retry) when the other writer committed.
        let mut tx = conn
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| write_err(&e))?;
        for entry in entries {
            let bytes = to_cbor(&entry).map_err(|e| write_err(&e))?;
            sqlx::query("INSERT OR REPLACE INTO raft_log (idx, term, entry) VALUES (?, ?, ?)")
                .bind(entry.log_id.index as i64)
                .bind(entry.log_id.leader_id.term as i64)
                .bind(bytes)
                .execute(&mut *tx)
                .await
                .map_err(|e| write_err(&e))?;
        }
        // synchronous=FULL: the commit returns after the WAL is fsynced.
        let result = tx.commit().await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(&e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM raft_log WHERE idx >= ?")
            .bind(log_id.index as i64)
            .execute(&self.db.log)
            .await
            .map_err(|e| write_err(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = to_cbor(&log_id).map_err(|e| write_err(&e))?;
        let mut conn = self.db.log.acquire().await.map_err(|e| write_err(&e))?;
        // IMMEDIATE: take the write lock up front; a deferred transaction that reads first and
        // writes later gets SQLITE_BUSY_SNAPSHOT (no retry) when the other writer committed.
        let mut tx = conn
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| write_err(&e))?;
        sqlx::query("INSERT INTO raft_meta (key, value) VALUES ('last_purged', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(bytes)
            .execute(&mut *tx)
            .await
            .map_err(|e| write_err(&e))?;
        sqlx::query("DELETE FROM raft_log WHERE idx <= ?")
            .bind(log_id.index as i64)
            .execute(&mut *tx)
            .await
            .map_err(|e| write_err(&e))?;
        tx.commit().await.map_err(|e| write_err(&e))
    }
}
