//! The SQLite plumbing below both the catalog (whose rules write through it) and the store
//! (which owns the connections): bringing a file's schema up to date, and running a batch of
//! statements as one transaction on a writer connection.
//!
//! Every write to a database file goes through one `rusqlite` connection, the file's writer,
//! in the calling thread: a state-machine batch of a dozen statements is then a dozen calls
//! into SQLite, not a dozen hand-offs to a driver's worker thread and back (on a loaded
//! two-core machine each hand-off waits for a core). Its statements stay prepared from one
//! batch to the next (`prepare_cached`): compiling an INSERT into a table with five indexes
//! takes longer than running it. Reads go through sqlx pools of their own connections; no
//! connection is ever driven by both.
//!
//! Layer: a leaf below `catalog` and `store`; imports nothing of the crate.

/// Why [`migrate`] could not bring a file's schema up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// SQLite refused a step, or the version could not be read.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The file is at version `found`, newer than the `supported` steps this build knows.
    #[error("schema version {found}; this xchg reads up to {supported}")]
    TooNew {
        /// The file's version.
        found: i64,
        /// How many steps this build has.
        supported: i64,
    },
}

/// Applies the `steps` a file has not had yet, in order, each in its own transaction; the
/// file's version (`PRAGMA user_version`) is how many it has had.
///
/// # Errors
/// [`MigrateError`]: a failed step (earlier steps stay applied), or a newer file.
pub fn migrate(db: &rusqlite::Connection, steps: &[&str]) -> Result<(), MigrateError> {
    let found: i64 = db.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let supported = steps.len() as i64;
    if found > supported {
        return Err(MigrateError::TooNew { found, supported });
    }
    for (version, step) in (1i64..).zip(steps).skip(found.max(0) as usize) {
        in_transaction(db, || {
            db.execute_batch(step)?;
            db.pragma_update(None, "user_version", version)
        })?;
    }
    Ok(())
}

/// Runs `f` between `BEGIN IMMEDIATE` and `COMMIT` on `db`, rolling back if `f` or the commit
/// fails, or `f` panics. IMMEDIATE takes the write lock up front: a deferred transaction that
/// reads first and writes later fails with SQLITE_BUSY_SNAPSHOT when another connection
/// committed meanwhile.
///
/// # Errors
/// The first error of the BEGIN, `f` or the COMMIT.
pub fn in_transaction<T>(
    db: &rusqlite::Connection,
    f: impl FnOnce() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    /// Rolls back whatever is still open when dropped: after an error, and after a panic in
    /// `f` (a transaction left open on a kept connection would fail every later batch).
    struct RollBack<'a>(&'a rusqlite::Connection);
    impl Drop for RollBack<'_> {
        fn drop(&mut self) {
            if !self.0.is_autocommit() {
                let _ = self.0.execute_batch("ROLLBACK");
            }
        }
    }
    let run = |sql: &str| db.prepare_cached(sql)?.execute([]).map(drop);
    run("BEGIN IMMEDIATE")?;
    let _open = RollBack(db);
    f().and_then(|out| run("COMMIT").map(|()| out))
}

/// A value read from a row that does not decode as what the table holds (a bug or a damaged
/// file), as the error of the read.
pub fn undecodable(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, e.into())
}

/// A value that could not be encoded for a row, as the error of the write.
pub fn unencodable(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(e.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch that fails or panics half way leaves no transaction open behind it.
    #[test]
    fn a_failed_or_panicking_transaction_is_rolled_back() {
        let db = rusqlite::Connection::open_in_memory().expect("open");
        db.execute_batch("CREATE TABLE t (x INTEGER)")
            .expect("table");
        let failed = in_transaction(&db, || {
            db.execute("INSERT INTO t (x) VALUES (1)", [])?;
            db.execute("INSERT INTO nowhere VALUES (1)", []).map(drop)
        });
        assert!(failed.is_err());
        assert!(db.is_autocommit(), "open after an error");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            in_transaction(&db, || -> rusqlite::Result<()> {
                db.execute("INSERT INTO t (x) VALUES (2)", [])?;
                panic!("half way")
            })
        }));
        assert!(panicked.is_err());
        assert!(db.is_autocommit(), "open after a panic");
        let n: i64 = db
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .expect("count");
        assert_eq!(n, 0);
    }

    /// A step that fails leaves the file at the version before it, with the earlier steps
    /// applied and nothing of the failed one; a file from a newer build is refused untouched.
    #[test]
    fn a_failed_migration_step_leaves_the_file_at_the_step_before() {
        let db = rusqlite::Connection::open_in_memory().expect("open");
        let steps = [
            "CREATE TABLE a (x INTEGER);",
            "CREATE TABLE b (x INTEGER); INSERT INTO nowhere VALUES (1);",
        ];
        assert!(matches!(migrate(&db, &steps), Err(MigrateError::Sqlite(_))));
        let version: i64 = db
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("version");
        assert_eq!(version, 1);
        let tables: i64 = db
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name IN ('a', 'b')",
                [],
                |row| row.get(0),
            )
            .expect("tables");
        assert_eq!(tables, 1, "only the first step's table");
        assert!(db.is_autocommit());
        assert!(matches!(
            migrate(&db, &steps[..0]),
            Err(MigrateError::TooNew {
                found: 1,
                supported: 0
            })
        ));
    }
}
