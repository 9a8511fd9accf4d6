//! The node's SQLite database: one file holding the Raft log, the vote, the state machine and
//! the latest snapshot.
//!
//! # Durability
//!
//! The file is in WAL mode and is reached through three connection pools:
//!
//! - `log` (one connection, `synchronous=FULL`): Raft log appends, truncations, purges and the
//!   vote. Every commit fsyncs the WAL before returning, so an entry is on disk before openraft
//!   is told it is flushed, and only then can it count towards a commit or be acknowledged.
//! - `sm` (one connection, `synchronous=NORMAL`): state-machine batches. A NORMAL commit in WAL
//!   mode survives a process crash (SIGKILL) but may be lost with the machine's power. That is
//!   safe: the last-applied log id is written in the same transaction, so after a power loss the
//!   state machine is an older, consistent state and openraft re-applies the missing entries
//!   from the durable log. The log is only purged behind a snapshot, and the purge commits with
//!   FULL on the same WAL — which syncs every earlier NORMAL commit too.
//! - `read` (several connections, `query_only`): API reads, never blocked by the writers.

mod log;
mod state_machine;

pub use log::LogStore;
pub use state_machine::StateMachine;

/// Told how long each batch (a log append with its fsync, or an applied batch of entries) took
/// and how many entries it held; feeds the metrics that show group commit at work.
#[derive(Clone)]
pub struct BatchObserver(pub std::sync::Arc<dyn Fn(std::time::Duration, usize) + Send + Sync>);

impl std::fmt::Debug for BatchObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BatchObserver")
    }
}

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The SQLite error.
        source: sqlx::Error,
    },
    /// The file was written by a newer xchg.
    #[error("database {path} has schema version {found}; this xchg reads up to {SCHEMA_VERSION}")]
    TooNew {
        /// The database file.
        path: String,
        /// Its version.
        found: i64,
    },
}

/// The pools over one database file.
#[derive(Clone, Debug)]
pub struct Db {
    /// Raft log and vote writes (synchronous=FULL).
    pub log: SqlitePool,
    /// State-machine writes (synchronous=NORMAL, see the module docs).
    pub sm: SqlitePool,
    /// Reads.
    pub read: SqlitePool,
}

impl Db {
    /// Opens (creating if needed) `path` and brings its schema up to [`SCHEMA_VERSION`].
    ///
    /// # Errors
    /// [`StoreError`] if the file cannot be opened, or was written by a newer version.
    pub async fn open(path: &Path) -> Result<Db, StoreError> {
        let name = path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: name.clone(),
            source,
        };
        let base = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(30))
            .pragma("wal_autocheckpoint", "4000");
        migrate(&base, &name).await?;
        let single = |sync| {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(base.clone().synchronous(sync))
        };
        let log = single(SqliteSynchronous::Full).await.map_err(err)?;
        let sm = single(SqliteSynchronous::Normal).await.map_err(err)?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(base.clone().pragma("query_only", "ON"))
            .await
            .map_err(err)?;
        Ok(Db { log, sm, read })
    }

    /// Closes every pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.read.close().await;
        self.sm.close().await;
        self.log.close().await;
    }
}

async fn migrate(options: &SqliteConnectOptions, name: &str) -> Result<(), StoreError> {
    let err = |source| StoreError::Sqlite {
        path: name.to_owned(),
        source,
    };
    // A pool as executor (not `&mut SqliteConnection`) keeps this future `Send` for callers
    // that need it for any lifetime.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .map_err(err)?;
    let found: i64 = sqlx::query("PRAGMA user_version")
        .fetch_one(&pool)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(err)?;
    if found > SCHEMA_VERSION {
        pool.close().await;
        return Err(StoreError::TooNew {
            path: name.to_owned(),
            found,
        });
    }
    if found < 1 {
        let script = format!(
            "BEGIN;\n{}\nPRAGMA user_version = 1;\nCOMMIT;",
            include_str!("schema_v1.sql")
        );
        sqlx::raw_sql(&script).execute(&pool).await.map_err(err)?;
    }
    // Later versions add their steps here, each in its own transaction, in order.
    pool.close().await;
    Ok(())
}

/// Encodes an internal value (log entries, votes, snapshots) as CBOR.
pub(crate) fn to_cbor<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, std::io::Error> {
    cbor4ii::serde::to_vec(Vec::new(), value).map_err(|e| std::io::Error::other(e.to_string()))
}

/// Decodes an internal CBOR value written by [`to_cbor`].
pub(crate) fn from_cbor<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, std::io::Error> {
    cbor4ii::serde::from_slice(bytes).map_err(|e| std::io::Error::other(e.to_string()))
}

/// Opens a fresh log store and state machine over one database file, for tests and the
/// openraft conformance suite.
///
/// # Errors
/// As [`Db::open`].
pub async fn open_pair(path: &Path) -> Result<(LogStore, StateMachine), StoreError> {
    let db = Db::open(path).await?;
    let sm = StateMachine::new(db.clone())
        .await
        .map_err(|e| StoreError::Sqlite {
            path: path.display().to_string(),
            source: e,
        })?;
    Ok((LogStore::new(db, None), sm))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Builder {
        dir: tempfile::TempDir,
    }

    impl openraft::testing::StoreBuilder<crate::raft::TypeConfig, LogStore, StateMachine, ()>
        for Builder
    {
        async fn build(&self) -> Result<((), LogStore, StateMachine), crate::raft::StorageError> {
            static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = self.dir.path().join(format!("suite-{n}.db"));
            let (log, sm) = open_pair(&path).await.map_err(|e| {
                crate::raft::StorageError::from(openraft::StorageIOError::write(
                    openraft::AnyError::new(&e),
                ))
            })?;
            Ok(((), log, sm))
        }
    }

    #[test]
    fn openraft_storage_conformance_suite_passes_on_sqlite() {
        let builder = Builder {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        openraft::testing::Suite::test_all(builder).expect("openraft storage suite");
    }
}
