//! The page cache layer of `xchg_node::store::pcache`, in a process of its own: it can only be
//! installed before SQLite's first use. In a debug build (this test's) the layer passes every
//! truncation it would skip on anyway and aborts the process if that dropped a page, so each
//! skip below is checked as it happens.

use rusqlite::Connection;
use xchg_node::store::pcache;

/// A xorshift sequence: random keys split and rebalance b-trees, which is where SQLite parks a
/// page at the lock page's number.
fn keys(mut x: u64) -> impl FnMut() -> String {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        format!("{x:016x}")
    }
}

fn count(db: &Connection) -> usize {
    db.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .expect("count")
}

fn intact(db: &Connection) {
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok");
}

/// Forty transactions of fifty random keys on `db`, every fifth rolled back; returns the keys
/// kept.
fn write_rounds(db: &Connection, seed: u64) -> Vec<String> {
    let mut next = keys(seed);
    let mut kept = Vec::new();
    for round in 0..40 {
        let tx = db.unchecked_transaction().expect("begin");
        let mut batch = Vec::new();
        for _ in 0..50 {
            let k = next();
            tx.execute("INSERT INTO t VALUES (?1, zeroblob(300))", [&k])
                .expect("insert");
            batch.push(k);
        }
        if round % 5 == 4 {
            tx.rollback().expect("rollback");
        } else {
            tx.commit().expect("commit");
            kept.extend(batch);
        }
    }
    kept
}

#[test]
fn databases_behind_the_layer_read_back_what_was_written() {
    pcache::install().expect("installed before SQLite's first use");
    let dir = tempfile::tempdir().expect("dir");

    // WAL, as the node's files are: one writer, rolled-back rounds, then a second connection
    // that reads through its own cache.
    let wal = dir.path().join("wal.db");
    let db = Connection::open(&wal).expect("open");
    db.execute_batch(
        "PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; PRAGMA cache_size = 50;
         CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB);",
    )
    .expect("schema");
    let kept = write_rounds(&db, 0x9e37_79b9_7f4a_7c15);
    assert_eq!(count(&db), kept.len());
    intact(&db);
    let other = Connection::open(&wal).expect("open again");
    assert_eq!(count(&other), kept.len());

    // Two connections taking turns: each finds the file changed and empties its cache, then
    // must read the other's rows.
    let mut next = keys(7);
    for turn in 0..30 {
        let (writer, reader) = if turn % 2 == 0 {
            (&db, &other)
        } else {
            (&other, &db)
        };
        let k = next();
        writer
            .execute("INSERT INTO t VALUES (?1, zeroblob(500))", [&k])
            .expect("insert");
        let found: i64 = reader
            .query_row("SELECT count(*) FROM t WHERE k = ?1", [&k], |r| r.get(0))
            .expect("lookup");
        assert_eq!(found, 1, "turn {turn}");
    }
    intact(&other);

    // A rollback journal and a file that shrinks: deletes under auto_vacuum move pages and
    // truncate the file at commit, and a rolled-back growth must leave no page behind.
    let delete = dir.path().join("delete.db");
    let db = Connection::open(&delete).expect("open");
    db.execute_batch(
        "PRAGMA page_size = 2048; PRAGMA auto_vacuum = FULL; PRAGMA journal_mode = DELETE;
         PRAGMA cache_size = 50; CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB);",
    )
    .expect("schema");
    let kept = write_rounds(&db, 42);
    let gone = db
        .execute("DELETE FROM t WHERE k < '8'", [])
        .expect("delete");
    assert!(gone > 0);
    let left = kept.iter().filter(|k| k.as_str() >= "8").count();
    assert_eq!(count(&db), left);
    intact(&db);
    let more = write_rounds(&db, 43);
    assert_eq!(count(&db), left + more.len());
    intact(&db);

    // A temporary table in memory goes through the layer too.
    db.execute_batch(
        "PRAGMA temp_store = MEMORY; CREATE TEMP TABLE scratch (k TEXT PRIMARY KEY);
         INSERT INTO scratch SELECT k FROM t;",
    )
    .expect("temp table");
    let n: usize = db
        .query_row("SELECT count(*) FROM scratch", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, left + more.len());

    assert!(pcache::parked() > 0, "no b-tree rebalance parked a page");
    assert!(pcache::skipped() > 0, "no truncation was skipped");
    assert!(pcache::install().is_err(), "a second install is refused");
}
