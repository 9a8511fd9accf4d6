//! The one connection each database file is written through (see [`crate::sqlite`] for why a
//! `rusqlite` connection used in the calling thread).
//!
//! A writer is opened with the file's pragmas and its schema brought up to date, then held by
//! the store for the node's life. Whoever writes takes it with [`Writer::lock`], runs its batch
//! with no `.await` in between, and lets go; the statements it prepared stay prepared for the
//! next batch. Dropping the connection finalizes them and closes the handle, so closing needs
//! no care beyond letting go ([`Writer::close`]).

use std::path::Path;
use std::time::Duration;

use super::StoreError;
use crate::sqlite::{MigrateError, migrate};

/// Statements each writer keeps prepared: every statement of the state machine's rules fits,
/// so a batch of any kind compiles nothing after the first ones.
const KEPT_STATEMENTS: usize = 128;

/// How a writer's commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// Every commit fsyncs the WAL before it returns (the Raft log).
    Full,
    /// Commits survive a process crash, not a power loss (the catalog; see the module docs of
    /// [`super`] for why that is safe).
    Normal,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

/// Why a write could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The store was closed ([`super::Db::close`]).
    #[error("the store is closed")]
    Closed,
    /// SQLite refused.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The stored snapshot could not be installed at start; the message says what to do.
    #[error("{0}")]
    StoredSnapshot(String),
}

/// A database file's writer connection, handed out one user at a time.
pub(super) struct Writer {
    conn: tokio::sync::Mutex<Option<rusqlite::Connection>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    /// Opens the file at `path` (which exists, created private by the store) for writing with
    /// `sync`, in WAL mode, and applies the schema `steps` it has not had yet.
    ///
    /// # Errors
    /// [`StoreError`] if SQLite refuses, or the file is newer than `steps`.
    pub(super) async fn open(
        path: &Path,
        sync: Durability,
        steps: &'static [&'static str],
    ) -> Result<Writer, StoreError> {
        let name = path.display().to_string();
        let opened = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || -> Result<_, MigrateError> {
            let db = connect(&opened, sync)?;
            migrate(&db, steps)?;
            Ok(db)
        })
        .await
        .map_err(|e| StoreError::DataDir {
            path: name.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(|e| match e {
            MigrateError::Sqlite(source) => StoreError::Sqlite {
                path: name.clone(),
                source: source.into(),
            },
            MigrateError::TooNew { found, supported } => StoreError::TooNew {
                path: name.clone(),
                found,
                supported,
            },
        })?;
        Ok(Writer {
            conn: tokio::sync::Mutex::new(Some(conn)),
        })
    }

    /// The connection, waiting for its current user.
    ///
    /// # Errors
    /// [`WriteError::Closed`] after [`Writer::close`].
    pub(super) async fn lock(
        &self,
    ) -> Result<tokio::sync::MappedMutexGuard<'_, rusqlite::Connection>, WriteError> {
        let slot = self.conn.lock().await;
        tokio::sync::MutexGuard::try_map(slot, Option::as_mut).map_err(|_| WriteError::Closed)
    }

    /// Closes the connection once its current user lets go (its kept statements are finalized
    /// first); later [`Writer::lock`]s fail.
    pub(super) async fn close(&self) {
        let conn = self.conn.lock().await.take();
        drop(conn);
    }
}

/// A writer connection to `path`: the file's pragmas set, nothing else done.
fn connect(path: &Path, sync: Durability) -> rusqlite::Result<rusqlite::Connection> {
    let flags = rusqlite::OpenFlags::default();
    // One write per transaction into the WAL instead of two per page: see `super::vfs`.
    #[cfg(feature = "wal-batch-vfs")]
    let db = {
        super::vfs::register().map_err(|message| {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                Some(message),
            )
        })?;
        rusqlite::Connection::open_with_flags_and_vfs(path, flags, super::vfs::NAME)?
    };
    #[cfg(not(feature = "wal-batch-vfs"))]
    let db = rusqlite::Connection::open_with_flags(path, flags)?;
    db.busy_timeout(Duration::from_secs(30))?;
    // New files only (an existing file keeps its page size): see `super::PAGE_SIZE`. Before
    // anything else, as the first write fixes it.
    db.pragma_update(None, "page_size", super::PAGE_SIZE)?;
    let mode: String = db.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(format!("journal_mode is {mode}, not wal")),
        ));
    }
    db.pragma_update(None, "synchronous", sync.pragma())?;
    db.pragma_update(
        None,
        "wal_autocheckpoint",
        super::WRITER_AUTOCHECKPOINT_PAGES,
    )?;
    // Statement journals (statements that fire triggers need them) stay in memory instead of a
    // new temporary file per transaction.
    db.pragma_update(None, "temp_store", "MEMORY")?;
    // As sqlx sets it on the readers, so both kinds of connection see the same rules.
    db.pragma_update(None, "foreign_keys", "ON")?;
    db.set_prepared_statement_cache_capacity(KEPT_STATEMENTS);
    Ok(db)
}
