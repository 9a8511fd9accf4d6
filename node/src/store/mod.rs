//! The node's storage, in its data directory: two SQLite databases, `raft-log.db` (the Raft
//! log and vote) and `catalog.db` (the state machine: catalog, audit chain, tokens), and the
//! latest snapshot in `snapshot.bin` ([`snapshot_file`]). The directory is readable by the
//! node's user only and locked by the running node ([`files`]).
//!
//! # Why two databases, and why that is durable
//!
//! SQLite lets one writer at a time into a database file. With the log and the state machine in
//! one file, every state-machine batch held up the next log fsync, and the zone's commit rate
//! fell to what one node could apply serially. In two files the log writer and the state
//! machine commit in parallel. Both are in WAL mode:
//!
//! - `raft-log.db`, writer with `synchronous=FULL`: every commit fsyncs the WAL before it
//!   returns, so a log entry is on disk before openraft is told it is flushed, and only then
//!   can it count towards a commit or be acknowledged to a client. The vote is written the same
//!   way before openraft acts on it.
//! - `catalog.db`, writer with `synchronous=NORMAL`: a commit survives a process crash
//!   (SIGKILL) but may be lost with the machine's power. That is safe because the last-applied
//!   log id is written in the same transaction: after a power loss the catalog is an older,
//!   consistent state and openraft re-applies the missing entries from the durable log. The
//!   log is only ever purged behind a snapshot, and only up to what the catalog has committed
//!   (`Db::applied`; openraft issues the purge of an installed snapshot without waiting for
//!   the install). Before every purge the catalog database is made durable by one commit with
//!   `synchronous=FULL` ([`Db::sync_catalog`]), which fsyncs the catalog's WAL and so
//!   everything committed before it — so no entry leaves the log before its effects are on
//!   disk.
//! - `snapshot.bin`: written whole under a temporary name, synced and renamed into place
//!   ([`snapshot_file`]). A snapshot from the leader is received into an unnamed file
//!   ([`snapshot_bytes`]), checked, and stored before the tables are replaced, so a crash in
//!   between leaves the file ahead of the catalog; the next start restores the catalog from it
//!   ([`StateMachine::new`]). Snapshots are built, sent, received and restored a piece at a
//!   time, never held whole in memory.
//! - Reads go through separate `query_only` pools and never wait for the writers.
//!
//! # Checkpoints off the write path
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses the threshold, so every
//! few hundred batches one Raft log append or one state-machine transaction also copied
//! megabytes from the WAL into the database file and fsynced it: that commit took tens of
//! milliseconds and everything queued behind it waited. Here each file has its own
//! checkpointer connection that runs `wal_checkpoint(PASSIVE)` every
//! [`CHECKPOINT_EVERY`]; a passive checkpoint never blocks the writer or the readers. The
//! writers keep an automatic checkpoint only as a far-off safety net
//! (`WRITER_AUTOCHECKPOINT_PAGES`) for a checkpointer that cannot keep up. Durability is
//! unchanged: a commit is durable (or, for the catalog, recoverable from the log) when it is in
//! the WAL, whoever copies it on later.
//!
//! # Who touches which connection
//!
//! Each file has one writer connection, held by the store ([`writer`]): every write to the
//! file, the state machine's batches and the log's appends alike, runs on it in the calling
//! thread, with its statements kept prepared (see [`crate::sqlite`]). Reads go through sqlx
//! pools of their own connections: the Raft log's inside this module, the catalog's handed out
//! to the layers above by [`Db::reader`] for the typed queries of the tables' homes (the
//! catalog's `tables`, `query` and the audit chain). No connection is driven by both.
//!
//! Layer: above the catalog (whose schema, tables and rules it runs) and below `raft`; imports only `catalog`, `audit` and `sqlite`.

pub mod backup;
pub mod files;
mod log;
pub mod pcache;
pub mod raft_types;
mod sm_meta;
mod snapshot;
pub mod snapshot_bytes;
pub mod snapshot_file;
mod state_machine;
#[cfg(feature = "wal-batch-vfs")]
mod vfs;
mod writer;

pub use log::{LogStore, REPLICATION_BUDGET_BYTES};
pub use state_machine::{Signals, StateMachine};
pub use writer::WriteError;

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

use rusqlite::OptionalExtension as _;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use writer::{Durability, Writer};

/// The Raft log file's schema steps; its version (`PRAGMA user_version`) is their count.
const LOG_SCHEMA: &[&str] = &[include_str!("log_schema_v1.sql")];
/// The catalog file's schema steps: the catalog's own ([`crate::catalog::SCHEMA`]).
const CATALOG_SCHEMA: &[&str] = crate::catalog::SCHEMA;

/// The page size of new database files, in bytes. Half SQLite's default: each new listing's
/// entry in the unique index on its (hash) id lands on a random page, and every page a commit
/// touches is written whole to the WAL and again by the checkpoint, so smaller pages write
/// less (measured with `xchg bench zone`, alternating runs: 14 instead of 17 KiB written per
/// listing per node at 64 clients, about 5 % more listings per second at 16 clients). 1024
/// wrote less still but cost more CPU per listing.
const PAGE_SIZE: u32 = 2048;

/// How often each file's checkpointer copies committed WAL frames into the database file.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// The writers' own automatic checkpoint, in WAL pages: reached only when the background
/// checkpointer falls this far behind (or cannot finish because a reader holds old frames).
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 50_000;

/// The Raft log file in a data directory.
pub const LOG_FILE: &str = "raft-log.db";
/// The catalog file in a data directory.
pub const CATALOG_FILE: &str = "catalog.db";

/// An error of either of the store's SQLite drivers.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    /// On a read pool (sqlx).
    #[error(transparent)]
    Read(#[from] sqlx::Error),
    /// On a writer connection (rusqlite).
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl From<rusqlite::Error> for SqliteError {
    fn from(e: rusqlite::Error) -> Self {
        SqliteError::Write(e.into())
    }
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The SQLite error.
        source: SqliteError,
    },
    /// The snapshot file could not be opened or stored.
    #[error("snapshot file {path}: {source}")]
    Snapshot {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The data directory could not be created, tightened or prepared.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory or file.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// Another process holds the data directory.
    #[error("{0}; stop it first, or give this node another data directory")]
    Locked(files::LockError),
    /// The file was written by a newer xchg.
    #[error("database {path} has schema version {found}; this xchg reads up to {supported}")]
    TooNew {
        /// The database file.
        path: String,
        /// Its version.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
}

/// A node's two database files: their writers, their read pools, the snapshot file. Nothing
/// outside the store touches a connection but through [`Db::reader`].
#[derive(Clone, Debug)]
pub struct Db {
    /// Raft log and vote writes (`raft-log.db`, synchronous=FULL).
    log_writer: std::sync::Arc<Writer>,
    /// State-machine writes (`catalog.db`, synchronous=NORMAL).
    sm_writer: std::sync::Arc<Writer>,
    /// Raft log reads.
    log_read: SqlitePool,
    /// Catalog reads.
    read: SqlitePool,
    /// One connection per file that only checkpoints, see [`Db::open`].
    checkpointers: [SqlitePool; 2],
    /// The catalog file, which snapshots are dumped from on a connection of their own.
    catalog_path: std::path::PathBuf,
    /// The latest snapshot.
    snapshot: std::sync::Arc<snapshot_file::SnapshotFile>,
    /// The index of the last entry the catalog has committed (0: none), kept by the state
    /// machine: the log is purged only behind it, see [`LogStore`].
    applied: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// Held while the files are open, so that offline tools refuse to touch them; let go by
    /// [`Db::close`].
    lock: std::sync::Arc<std::sync::Mutex<Option<files::DataDirLock>>>,
}

/// A read-only connection to the catalog, for the typed queries of the tables' homes.
pub type Reader = sqlx::pool::PoolConnection<sqlx::Sqlite>;

/// The options of the read pools and the checkpointers (the writer sets the file up first).
fn options(path: &Path, name: &str) -> Result<SqliteConnectOptions, StoreError> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display())).map_err(
        |source| StoreError::Sqlite {
            path: name.to_owned(),
            source: source.into(),
        },
    )?;
    // Every connection to a file through the same VFS as its writer.
    #[cfg(feature = "wal-batch-vfs")]
    let options = {
        vfs::register().map_err(|message| StoreError::Sqlite {
            path: name.to_owned(),
            source: sqlx::Error::Configuration(message.into()).into(),
        })?;
        options.vfs(vfs::NAME)
    };
    Ok(options
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(30))
        .pragma("temp_store", "MEMORY"))
}

/// The read pool (`readers` connections, `query_only`) and the checkpointer (one connection,
/// kept for the node's life) of the file at `path`.
async fn pools(path: &Path, readers: u32) -> Result<(SqlitePool, SqlitePool), StoreError> {
    let name = path.display().to_string();
    let err = |source: sqlx::Error| StoreError::Sqlite {
        path: name.clone(),
        source: source.into(),
    };
    let base = options(path, &name)?;
    let checkpointer = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .test_before_acquire(false)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(base.clone())
        .await
        .map_err(err)?;
    let reader = SqlitePoolOptions::new()
        .max_connections(readers)
        .connect_with(base.pragma("query_only", "ON"))
        .await
        .map_err(err)?;
    Ok((reader, checkpointer))
}

/// Checkpoints `pool`'s file every [`CHECKPOINT_EVERY`] until the pool is closed.
async fn checkpoint_loop(pool: SqlitePool, name: String) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&pool)
            .await
        {
            Ok(_) => {}
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => tracing::warn!(database = %name, error = %e, "background checkpoint failed"),
        }
    }
}

impl Db {
    /// Opens (creating if needed) the two files in `dir` and brings their schemas up to
    /// date.
    ///
    /// # Errors
    /// [`StoreError`] if a file cannot be opened, or was written by a newer version.
    pub async fn open(dir: &Path) -> Result<Db, StoreError> {
        let lock = prepare(dir)?;
        let log_path = dir.join(LOG_FILE);
        let catalog_path = dir.join(CATALOG_FILE);
        let log_writer = Writer::open(&log_path, Durability::Full, LOG_SCHEMA).await?;
        let (log_read, log_checkpointer) = pools(&log_path, 2).await?;
        let sm_writer = Writer::open(&catalog_path, Durability::Normal, CATALOG_SCHEMA).await?;
        let (read, sm_checkpointer) = pools(&catalog_path, 4).await?;
        let snapshot_err = |source| StoreError::Snapshot {
            path: dir.join(snapshot_file::SNAPSHOT_FILE).display().to_string(),
            source,
        };
        let opened = dir.to_owned();
        let snapshot = blocking(move || snapshot_file::SnapshotFile::open(&opened))
            .await
            .map_err(snapshot_err)?;
        let snapshot = std::sync::Arc::new(snapshot);
        move_stored_snapshot(&sm_writer, &snapshot)
            .await
            .map_err(|e| match e {
                MoveError::Sqlite(source) => StoreError::Sqlite {
                    path: catalog_path.display().to_string(),
                    source: source.into(),
                },
                MoveError::File(source) => snapshot_err(source),
            })?;
        for (pool, file) in [
            (&log_checkpointer, LOG_FILE),
            (&sm_checkpointer, CATALOG_FILE),
        ] {
            tokio::spawn(checkpoint_loop(
                pool.clone(),
                dir.join(file).display().to_string(),
            ));
        }
        Ok(Db {
            log_writer: std::sync::Arc::new(log_writer),
            sm_writer: std::sync::Arc::new(sm_writer),
            log_read,
            read,
            checkpointers: [log_checkpointer, sm_checkpointer],
            catalog_path,
            snapshot,
            applied: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
            lock: std::sync::Arc::new(std::sync::Mutex::new(Some(lock))),
        })
    }

    /// The catalog file (`catalog.db`), for readers that open their own connection (a backup).
    pub fn catalog_path(&self) -> &Path {
        &self.catalog_path
    }

    /// A connection that reads the catalog, for the typed queries of the tables' homes.
    ///
    /// # Errors
    /// The pool's error (closed, or every connection busy past its timeout).
    pub async fn reader(&self) -> Result<Reader, sqlx::Error> {
        self.read.acquire().await
    }

    /// Follows the index of the last entry the catalog has committed (changes after every
    /// applied batch and snapshot install): what derived indexes wake on.
    pub fn subscribe_applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// The catalog's size: its pages in use, free pages left out.
    ///
    /// # Errors
    /// SQLite's error.
    pub async fn catalog_bytes(&self) -> Result<u64, sqlx::Error> {
        let bytes: i64 = sqlx::query_scalar(
            "SELECT (p.page_count - f.freelist_count) * s.page_size \
             FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(bytes.unsigned_abs())
    }

    /// Makes everything committed to the catalog so far durable: one commit with
    /// `synchronous=FULL` fsyncs the catalog's WAL, and with it every frame before it (frames
    /// already copied out of the WAL are in the database file, which every checkpoint fsyncs
    /// before the WAL starts over). About one fsync, where a full checkpoint would copy the
    /// whole WAL — after a snapshot, hundreds of megabytes — while holding the writer.
    ///
    /// # Errors
    /// SQLite's error; the writer is back at `synchronous=NORMAL` either way.
    pub async fn sync_catalog(&self) -> Result<(), WriteError> {
        let db = self.sm_writer.lock().await?;
        db.execute_batch("PRAGMA synchronous = FULL")?;
        let synced = crate::sqlite::in_transaction(&db, || sm_meta::mark_synced(&db));
        let restored = db.execute_batch("PRAGMA synchronous = NORMAL");
        Ok(synced.and(restored)?)
    }

    /// Closes every connection, the writers first (once their current batch is done).
    pub async fn close(&self) {
        self.log_writer.close().await;
        self.sm_writer.close().await;
        for pool in &self.checkpointers {
            pool.close().await;
        }
        self.read.close().await;
        self.log_read.close().await;
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
    }
}

/// Makes `dir` ready to be opened: created private (or tightened, once, if an older xchg left
/// it readable by others), locked for this process, and the database files created with mode
/// 0600 before SQLite opens them (see [`files`]).
fn prepare(dir: &Path) -> Result<files::DataDirLock, StoreError> {
    let failed = |path: &Path, source| StoreError::DataDir {
        path: path.display().to_string(),
        source,
    };
    let tightened = files::prepare_dir(dir).map_err(|e| failed(dir, e))?;
    if !tightened.is_empty() {
        let paths: Vec<String> = tightened.iter().map(|p| p.display().to_string()).collect();
        tracing::info!(
            dir = %dir.display(),
            tightened = %paths.join(", "),
            "made the data directory private: readable by this user only (directory 0700, files \
             0600); an older xchg had created it readable by others"
        );
    }
    let lock = files::DataDirLock::acquire(dir).map_err(StoreError::Locked)?;
    for file in [LOG_FILE, CATALOG_FILE] {
        let path = dir.join(file);
        files::create_private_file(&path).map_err(|e| failed(&path, e))?;
    }
    Ok(lock)
}

/// Moves a snapshot kept in the catalog (as nodes before `snapshot.bin` did) into the snapshot
/// file, then deletes the row. The row goes only once the file is stored and synced, so a crash
/// in between repeats the move at the next start. The `snapshot` table's only home.
async fn move_stored_snapshot(
    sm: &Writer,
    file: &std::sync::Arc<snapshot_file::SnapshotFile>,
) -> Result<(), MoveError> {
    let row: Option<(Vec<u8>, Vec<u8>)> = {
        let db = sm.lock().await.map_err(MoveError::Sqlite)?;
        db.query_row("SELECT meta, data FROM snapshot WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(|e| MoveError::Sqlite(e.into()))?
    };
    let Some((meta, data)) = row else {
        return Ok(());
    };
    let file = file.clone();
    blocking(move || file.store_encoded(&meta, &data))
        .await
        .map_err(MoveError::File)?;
    let db = sm.lock().await.map_err(MoveError::Sqlite)?;
    db.execute("DELETE FROM snapshot", [])
        .map_err(|e| MoveError::Sqlite(e.into()))?;
    Ok(())
}

/// Runs the blocking file work `f` on the runtime's blocking threads; a panic in it is an I/O
/// error.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

/// Why [`move_stored_snapshot`] failed.
enum MoveError {
    Sqlite(WriteError),
    File(std::io::Error),
}

/// Decodes the CBOR `value` column of a metadata row, if there is a row.
pub(crate) fn meta_value<T: serde::de::DeserializeOwned>(
    row: Option<sqlx::sqlite::SqliteRow>,
) -> Result<Option<T>, sqlx::Error> {
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

/// Encodes an internal value (log entries, votes, snapshots) as CBOR.
pub(crate) fn to_cbor<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, std::io::Error> {
    cbor4ii::serde::to_vec(Vec::new(), value).map_err(|e| std::io::Error::other(e.to_string()))
}

/// Decodes an internal CBOR value written by [`to_cbor`].
pub(crate) fn from_cbor<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, std::io::Error> {
    cbor4ii::serde::from_slice(bytes).map_err(|e| std::io::Error::other(e.to_string()))
}

/// Zone facts for tests: `xuchang/yuzhou` with the default export policy.
pub use crate::catalog::test_zone;

/// Opens a log store and state machine over the databases in `dir`, for tests and the openraft
/// conformance suite.
///
/// # Errors
/// As [`Db::open`].
pub async fn open_pair(dir: &Path) -> Result<(LogStore, StateMachine), StoreError> {
    let db = Db::open(dir).await?;
    let sm = StateMachine::new(db.clone(), test_zone())
        .await
        .map_err(|e| StoreError::Sqlite {
            path: dir.join(CATALOG_FILE).display().to_string(),
            source: e.into(),
        })?;
    Ok((LogStore::new(db, None), sm))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Builder {
        dir: tempfile::TempDir,
    }

    impl openraft::testing::StoreBuilder<super::raft_types::TypeConfig, LogStore, StateMachine, ()>
        for Builder
    {
        async fn build(
            &self,
        ) -> Result<((), LogStore, StateMachine), super::raft_types::StorageError> {
            static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = self.dir.path().join(format!("suite-{n}"));
            std::fs::create_dir_all(&path).map_err(|e| {
                super::raft_types::StorageError::from(openraft::StorageIOError::write(
                    openraft::AnyError::new(&e),
                ))
            })?;
            let failed = |e: &dyn std::error::Error| {
                super::raft_types::StorageError::from(openraft::StorageIOError::write(
                    openraft::AnyError::error(e.to_string()),
                ))
            };
            let db = Db::open(&path).await.map_err(|e| failed(&e))?;
            let sm = StateMachine::new(db.clone(), test_zone())
                .await
                .map_err(|e| failed(&e))?;
            Ok(((), LogStore::without_purge_guard(db), sm))
        }
    }

    /// The data directory holds the whole catalog and the token hashes: the directory is
    /// created 0700, and every file in it — both databases with their WAL and shared-memory
    /// files, the snapshot, the lock — is 0600 from its creation.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_data_directory_and_every_file_in_it_are_readable_by_the_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("data/xuchang-yuzhou-1");
        let db = Db::open(&dir).await.expect("open");
        db.sync_catalog()
            .await
            .expect("a commit, so the WAL files exist");
        let meta = super::raft_types::SnapshotMeta {
            last_log_id: Some(super::raft_types::LogId::new(
                openraft::CommittedLeaderId::new(1, 1),
                7,
            )),
            last_membership: openraft::StoredMembership::default(),
            snapshot_id: "1-7-1".into(),
        };
        let file = db.snapshot.clone();
        blocking(move || file.store(&meta, b"rows"))
            .await
            .expect("store a snapshot");
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700, "the data directory");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("list") {
            let path = entry.expect("entry").path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
            names.push(
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        names.sort();
        for expected in [
            "catalog.db",
            "catalog.db-shm",
            "catalog.db-wal",
            "raft-log.db",
            "raft-log.db-wal",
            "snapshot.bin",
            "xchg.lock",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        db.close().await;
    }

    /// While a node has the files open, nothing else may open them; a closed database lets go.
    #[tokio::test]
    async fn an_open_data_directory_cannot_be_opened_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path()).await.expect("open");
        let second = Db::open(dir.path()).await.expect_err("held");
        assert!(matches!(second, StoreError::Locked(_)), "{second}");
        db.close().await;
        Db::open(dir.path()).await.expect("reopen").close().await;
    }

    /// A catalog from before `snapshot.bin` keeps its snapshot in a row: the first start of
    /// this version moves it into the file, and the file then serves it.
    #[tokio::test]
    async fn a_snapshot_kept_in_an_older_catalog_moves_into_the_snapshot_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path()).await.expect("open");
        let meta = super::raft_types::SnapshotMeta {
            last_log_id: Some(super::raft_types::LogId::new(
                openraft::CommittedLeaderId::new(3, 1),
                42,
            )),
            last_membership: openraft::StoredMembership::default(),
            snapshot_id: "3-42-5".into(),
        };
        db.sm_writer
            .lock()
            .await
            .expect("writer")
            .execute(
                "INSERT INTO snapshot (id, meta, data) VALUES (1, ?1, ?2)",
                rusqlite::params![to_cbor(&meta).expect("meta"), &b"dump!"[..]],
            )
            .expect("old row");
        assert!(db.snapshot.read().expect("read").is_none());
        db.close().await;

        let db = Db::open(dir.path()).await.expect("reopen");
        let (moved, data) = db.snapshot.read().expect("read").expect("moved");
        assert_eq!(moved.snapshot_id, "3-42-5");
        assert_eq!(moved.last_log_id, meta.last_log_id);
        assert_eq!(data, b"dump!");
        let rows: i64 = db
            .sm_writer
            .lock()
            .await
            .expect("writer")
            .query_row("SELECT count(*) FROM snapshot", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 0, "the row goes once the file holds it");
        db.close().await;
    }

    /// Each sync commits a change (so there is a frame to fsync) and leaves the writer at
    /// `synchronous=NORMAL` (1) for the state machine's batches.
    #[tokio::test]
    async fn syncing_the_catalog_commits_a_change_and_leaves_the_writer_at_normal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path()).await.expect("open");
        for expected in [1_u8, 2, 1] {
            db.sync_catalog().await.expect("sync");
            let writer = db.sm_writer.lock().await.expect("writer");
            let value = sm_meta::synced(&writer).expect("synced row");
            assert_eq!(value, Some(vec![expected]));
        }
        let level: i64 = db
            .sm_writer
            .lock()
            .await
            .expect("writer")
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("pragma");
        assert_eq!(level, 1);
        db.close().await;
    }

    #[test]
    fn openraft_storage_conformance_suite_passes_on_sqlite() {
        let builder = Builder {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        openraft::testing::Suite::test_all(builder).expect("openraft storage suite");
    }
}
