//! Running a batch of SQL directly on a sqlx connection's SQLite handle: the one place below
//! both the catalog (whose rules run their statements here) and the store (which owns the
//! connections) that touches the handle.
//!
//! sqlx runs every statement on the connection's own worker thread: each statement is a
//! message to that thread and an answer back, two thread wake-ups. A state-machine batch of
//! a dozen statements therefore spent most of its time handing work between threads (on a
//! loaded two-core machine, each hand-off waits for a core), not in SQLite. [`with_view`] takes
//! the connection from its worker once (sqlx's `lock_handle`, made for this) and runs a whole
//! closure of statements in the calling thread through `rusqlite` over the same handle: same
//! file, same transaction, one hand-off. The writers ([`Writer`]) keep that `rusqlite` view,
//! and the statements it prepared, from one batch to the next.

use sqlx::pool::PoolConnection;
use sqlx::{Sqlite, SqliteConnection, SqlitePool};

/// Why [`migrate`] could not bring a file's schema up to date.
#[derive(Debug)]
pub enum MigrateError {
    /// SQLite refused a step, or the version could not be read.
    Sqlite(sqlx::Error),
    /// The file is at version `found`, newer than the `supported` steps this build knows.
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
pub async fn migrate(pool: &SqlitePool, steps: &[&str]) -> Result<(), MigrateError> {
    let found: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(pool)
        .await
        .map_err(MigrateError::Sqlite)?;
    let supported = steps.len() as i64;
    if found > supported {
        return Err(MigrateError::TooNew { found, supported });
    }
    for (version, step) in (1i64..).zip(steps).skip(found.max(0) as usize) {
        let script = format!("BEGIN;\n{step}\nPRAGMA user_version = {version};\nCOMMIT;");
        sqlx::raw_sql(&script)
            .execute(pool)
            .await
            .map_err(MigrateError::Sqlite)?;
    }
    Ok(())
}

/// One writer connection of the store, taken from its pool at first use and held until
/// [`WriterSlot::close`]; every write to its file goes through it.
///
/// It carries a `rusqlite` view of the connection's handle that keeps the statements prepared
/// with `prepare_cached` from one batch to the next. Re-preparing a batch's statements cost
/// each node about 7 % of its CPU at one write per entry (measured with `perf`): compiling an
/// INSERT into a table with five indexes takes longer than running it. sqlx closes a handle
/// with `sqlite3_close`, which fails (and sqlx panics) while statements are open, so the
/// writer owns the pool connection: nothing can close the handle before the writer lets go,
/// and it finalizes the statements first ([`Writer::release`], or its `Drop`).
pub struct Writer {
    view: View,
    conn: PoolConnection<Sqlite>,
}

/// A `rusqlite` view of one handle, made on first use (see [`with_view`]). Only a [`Writer`]
/// makes one: its safety rests on the writer owning the connection.
pub struct View {
    db: Option<rusqlite::Connection>,
    /// The address of the handle `db` views.
    handle: usize,
}

impl Writer {
    /// The connection, for sqlx statements and transactions.
    pub fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }

    /// The connection and the view, to run [`with_view`] inside a sqlx transaction.
    pub fn split(&mut self) -> (&mut SqliteConnection, &mut View) {
        (&mut self.conn, &mut self.view)
    }

    /// [`with_view`] on this writer's connection.
    ///
    /// # Errors
    /// As [`with_view`].
    pub async fn raw<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, sqlx::Error> {
        with_view(&mut self.conn, &mut self.view, f).await
    }

    /// Finalizes the kept statements, taking the handle from sqlx's worker first (sqlx's
    /// connections are not thread-safe).
    async fn release(&mut self) {
        if self.view.db.is_none() {
            return;
        }
        // The view is cleared only once the lock is held: a release cancelled while waiting
        // leaves it in place for `Drop` to release.
        let handle = self.conn.lock_handle().await;
        // Locked, or the worker thread has crashed (and no longer uses the handle): either
        // way this thread alone touches it now.
        self.view.db = None;
        drop(handle);
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Dropped without `release` (a store dropped without `Db::close`): finalize now, under
        // the handle's lock, before the pool connection (declared after the view) goes.
        if self.view.db.is_some() {
            block_on(self.release());
        }
    }
}

/// Runs `future` to completion on this thread (used only to release a writer in `Drop`; the
/// future waits only for sqlx's worker thread, never for this one).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// A pool's single writer connection, handed out one user at a time.
pub struct WriterSlot {
    pool: SqlitePool,
    writer: tokio::sync::Mutex<Option<Writer>>,
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for WriterSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriterSlot")
    }
}

impl WriterSlot {
    /// A slot over `pool` (a pool of one connection).
    pub fn new(pool: SqlitePool) -> Self {
        WriterSlot {
            pool,
            writer: tokio::sync::Mutex::new(None),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The writer, waiting for its current user; taken from the pool at first use.
    ///
    /// # Errors
    /// [`sqlx::Error::PoolClosed`] after [`WriterSlot::close`], or the pool's error.
    pub async fn lock(&self) -> Result<tokio::sync::MappedMutexGuard<'_, Writer>, sqlx::Error> {
        let mut slot = self.writer.lock().await;
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(sqlx::Error::PoolClosed);
        }
        if slot.is_none() {
            let conn = self.pool.acquire().await?;
            *slot = Some(Writer {
                view: View {
                    db: None,
                    handle: 0,
                },
                conn,
            });
        }
        tokio::sync::MutexGuard::try_map(slot, Option::as_mut).map_err(|_| sqlx::Error::PoolClosed)
    }

    /// Finalizes the writer's statements and gives its connection back to the pool, which can
    /// then be closed; later [`WriterSlot::lock`]s fail.
    pub async fn close(&self) {
        let mut slot = self.writer.lock().await;
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        if let Some(mut writer) = slot.take() {
            writer.release().await;
        }
    }
}

/// Runs `f` on `conn`'s SQLite handle in the calling thread, through `view`, which keeps the
/// statements `f` prepares with `prepare_cached` for the next call. The call blocks the current
/// thread for as long as `f` runs: keep `f` to one batch.
///
/// # Errors
/// sqlx's error if the handle cannot be taken, `f`'s error as [`sqlx::Error::Io`], or an error
/// if `view` was made for another connection's handle.
#[allow(unsafe_code)]
pub async fn with_view<T>(
    conn: &mut SqliteConnection,
    view: &mut View,
    f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
) -> Result<T, sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let raw = handle.as_raw_handle().as_ptr();
    let db = match &mut view.db {
        Some(_) if view.handle != raw as usize => {
            return Err(to_sqlx(rusqlite::Error::InvalidParameterName(
                "a statement view used on another connection".into(),
            )));
        }
        Some(db) => &*db,
        // SAFETY: the handle is valid and exclusively ours while `handle` (sqlx's lock on the
        // connection) lives, and `from_handle` does not take ownership (dropping the view does
        // not close the handle). The view outlives
        // `handle` only inside its `Writer`, which owns the pool connection (so the handle
        // is not closed under it), uses it only here under the lock of the same handle
        // (checked above), and drops it only under that lock (`Writer::release`).
        None => {
            view.handle = raw as usize;
            &*view
                .db
                .insert(unsafe { rusqlite::Connection::from_handle(raw) }.map_err(to_sqlx)?)
        }
    };
    let out = f(db);
    drop(handle);
    out.map_err(to_sqlx)
}

/// Runs `f` between `BEGIN IMMEDIATE` and `COMMIT` on `db`, rolling back if `f` or the commit
/// fails, or `f` panics. IMMEDIATE takes the write lock up front: a deferred transaction that reads first
/// and writes later fails with SQLITE_BUSY_SNAPSHOT when another connection committed
/// meanwhile.
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

/// A rusqlite error in sqlx's error type, which the store's callers already handle.
pub fn to_sqlx(e: rusqlite::Error) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    /// Runs `f` on `conn`'s SQLite handle through a view made for this call only (for tests on
    /// a plain connection, which has no [`Writer`]).
    ///
    /// Statements `f` prepares are finalized before the handle goes back to sqlx (sqlx closes the
    /// handle with `sqlite3_close`, which must find none left). The call blocks the current thread
    /// for as long as `f` runs: keep `f` to one batch.
    ///
    /// # Errors
    /// sqlx's error if the handle cannot be taken, or `f`'s error as [`sqlx::Error::Io`].
    #[allow(unsafe_code)]
    async fn with_raw<T>(
        conn: &mut SqliteConnection,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, sqlx::Error> {
        let mut handle = conn.lock_handle().await?;
        let raw = handle.as_raw_handle();
        // SAFETY: the handle is valid and exclusively ours while `handle` (sqlx's lock on the
        // connection) lives; `from_handle` does not take ownership (dropping `db` does not close
        // it), and `db` with its cached statements is dropped before `handle`.
        let db = unsafe { rusqlite::Connection::from_handle(raw.as_ptr()) }.map_err(to_sqlx)?;
        let out = f(&db);
        drop(db);
        drop(handle);
        out.map_err(to_sqlx)
    }

    #[tokio::test]
    async fn raw_statements_share_the_connection_and_its_transaction() {
        let mut conn = SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("connect");
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut conn)
            .await
            .expect("table");
        sqlx::query("BEGIN")
            .execute(&mut conn)
            .await
            .expect("begin");
        with_raw(&mut conn, |db| {
            let mut insert = db.prepare_cached("INSERT INTO t (x) VALUES (?1)")?;
            for x in 1..=3 {
                insert.execute([x])?;
            }
            Ok(())
        })
        .await
        .expect("raw inserts");
        // sqlx sees them inside the same transaction, and rolling back removes them.
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut conn)
            .await
            .expect("count");
        assert_eq!(n, 3);
        sqlx::query("ROLLBACK")
            .execute(&mut conn)
            .await
            .expect("rollback");
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut conn)
            .await
            .expect("count");
        assert_eq!(n, 0);
        // An error inside is reported, and the connection stays usable (and closes cleanly).
        let err = with_raw(&mut conn, |db| {
            db.execute_batch("INSERT INTO nowhere VALUES (1)")
        })
        .await
        .expect_err("no such table");
        assert!(err.to_string().contains("nowhere"), "{err}");
        conn.close().await.expect("close");
    }

    /// Set by a panic hook when sqlx fails to close a handle that still has statements.
    static UNFINALIZED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    fn watch_for_unfinalized_statements() {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if info.to_string().contains("unfinalized statements") {
                    UNFINALIZED.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                previous(info);
            }));
        });
    }

    async fn count_meta(writer: &mut Writer) -> i64 {
        writer
            .raw(|db| {
                db.prepare_cached("SELECT count(*) FROM sm_meta")?
                    .query_row([], |row| row.get(0))
            })
            .await
            .expect("count")
    }

    /// A writer keeps its statements between calls; whether the store is closed or just
    /// dropped, they are finalized before sqlx closes the handle (sqlx panics otherwise).
    #[tokio::test]
    async fn kept_statements_are_finalized_before_the_handle_closes() {
        watch_for_unfinalized_statements();
        for closed_properly in [true, false] {
            let dir = tempfile::tempdir().expect("tempdir");
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.path().join("t.db"))
                .create_if_missing(true);
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(2)
                .connect_with(options)
                .await
                .expect("open");
            sqlx::raw_sql("CREATE TABLE sm_meta (key TEXT PRIMARY KEY, value BLOB)")
                .execute(&pool)
                .await
                .expect("table");
            let slot = WriterSlot::new(pool.clone());
            {
                let mut writer = slot.lock().await.expect("writer");
                assert_eq!(count_meta(&mut writer).await, count_meta(&mut writer).await);
                // A view made for this handle is refused on another connection.
                let mut other = pool.acquire().await.expect("reader");
                let (_, view) = writer.split();
                let err = with_view(&mut other, view, |_| Ok(()))
                    .await
                    .expect_err("another handle");
                assert!(err.to_string().contains("another connection"), "{err}");
            }
            if closed_properly {
                slot.close().await;
            } else {
                // Dropping the slot drops the writer, which finalizes in its `Drop`; closing
                // the pool then waits until sqlx has closed the handle.
                drop(slot);
            }
            pool.close().await;
            assert!(
                !UNFINALIZED.load(std::sync::atomic::Ordering::SeqCst),
                "a handle was closed with statements open (closed properly: {closed_properly})"
            );
        }
    }

    /// A batch that fails or panics half way leaves no transaction open behind it.
    #[tokio::test]
    async fn a_failed_or_panicking_transaction_is_rolled_back() {
        let mut conn = SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("connect");
        with_raw(&mut conn, |db| {
            db.execute_batch("CREATE TABLE t (x INTEGER)")?;
            let failed = in_transaction(db, || {
                db.execute("INSERT INTO t (x) VALUES (1)", [])?;
                db.execute("INSERT INTO nowhere VALUES (1)", []).map(drop)
            });
            assert!(failed.is_err());
            assert!(db.is_autocommit(), "open after an error");
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                in_transaction(db, || -> rusqlite::Result<()> {
                    db.execute("INSERT INTO t (x) VALUES (2)", [])?;
                    panic!("half way")
                })
            }));
            assert!(panicked.is_err());
            assert!(db.is_autocommit(), "open after a panic");
            db.query_row("SELECT count(*) FROM t", [], |row| row.get::<_, i64>(0))
        })
        .await
        .map(|n| assert_eq!(n, 0))
        .expect("raw");
        conn.close().await.expect("close");
    }
}
