//! Running a batch of SQL directly on a sqlx connection's SQLite handle.
//!
//! sqlx runs every statement on the connection's own worker thread: each statement is a
//! message to that thread and an answer back, two thread wake-ups. A state-machine batch of
//! a dozen statements therefore spent most of its time handing work between threads (on a
//! loaded two-core machine, each hand-off waits for a core), not in SQLite. [`with_raw`] takes
//! the connection from its worker once (sqlx's `lock_handle`, made for this) and runs a whole
//! closure of statements in the calling thread through `rusqlite` over the same handle: same
//! file, same transaction, one hand-off.

use sqlx::SqliteConnection;

/// Runs `f` on `conn`'s SQLite handle in the calling thread.
///
/// Statements `f` prepares are finalized before the handle goes back to sqlx (sqlx closes the
/// handle with `sqlite3_close`, which must find none left). The call blocks the current thread
/// for as long as `f` runs: keep `f` to one batch.
///
/// # Errors
/// sqlx's error if the handle cannot be taken, or `f`'s error as [`sqlx::Error::Io`].
#[allow(unsafe_code)]
pub async fn with_raw<T>(
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

/// Runs `f` between `BEGIN IMMEDIATE` and `COMMIT` on `db`, rolling back if `f` or the commit
/// fails. IMMEDIATE takes the write lock up front: a deferred transaction that reads first
/// and writes later fails with SQLITE_BUSY_SNAPSHOT when another connection committed
/// meanwhile.
///
/// # Errors
/// The first error of the BEGIN, `f` or the COMMIT.
pub fn in_transaction<T>(
    db: &rusqlite::Connection,
    f: impl FnOnce() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    db.execute_batch("BEGIN IMMEDIATE")?;
    let done = f().and_then(|out| db.execute_batch("COMMIT").map(|()| out));
    if done.is_err() {
        let _ = db.execute_batch("ROLLBACK");
    }
    done
}

/// A rusqlite error in sqlx's error type, which the store's callers already handle.
pub fn to_sqlx(e: rusqlite::Error) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

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
}
