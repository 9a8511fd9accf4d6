//! The page cache layer of `xchg_node::store::pcache`, in a process of its own: it can only be
//! installed before SQLite's first use.

use xchg_node::store::pcache;

/// Random keys split and rebalance the b-tree (where SQLite parks a page at the lock page's
/// number); some transactions roll back. What the layer skips must leave the same rows as SQLite
/// alone would, and it must have skipped something (else it is not in the way at all).
#[test]
fn a_database_behind_the_layer_reads_back_what_was_written() {
    pcache::install().expect("installed before SQLite's first use");
    let dir = tempfile::tempdir().expect("dir");
    let db = rusqlite::Connection::open(dir.path().join("t.db")).expect("open");
    db.execute_batch(
        "PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; PRAGMA cache_size = 50;
         CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB);",
    )
    .expect("schema");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut kept = Vec::new();
    for round in 0..40 {
        let tx = db.unchecked_transaction().expect("begin");
        let mut batch = Vec::new();
        for _ in 0..50 {
            let k = format!("{:016x}", next());
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
    let n: usize = db
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, kept.len());
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok");
    for k in kept.iter().step_by(17) {
        let found: i64 = db
            .query_row("SELECT count(*) FROM t WHERE k = ?1", [k], |r| r.get(0))
            .expect("lookup");
        assert_eq!(found, 1, "{k}");
    }
    // A second connection sees the same rows through its own cache.
    let other = rusqlite::Connection::open(dir.path().join("t.db")).expect("open again");
    let n2: usize = other
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n2, kept.len());
    assert!(pcache::skipped() > 0, "no truncation was skipped");
    assert!(pcache::install().is_err(), "a second install is refused");
}
