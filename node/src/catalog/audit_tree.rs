//! The audit chain's Merkle tree on the catalog file's schema (the `audit` and `audit_tree`
//! tables are created by the catalog's schema steps, so the tests that need a real file live
//! here, above `audit`, which imports nothing of the crate).

use sqlx::SqliteConnection;
use xchg_protocol::Timestamp;

use crate::audit::{
    AuditRecord, Chain, Event, FILL_CHUNK, add_leaf, consistency_proof, inclusion_proof, range,
    rebuild_tree, root, tree_size,
};
use xchg_protocol::merkle::MemoryTree;

fn append(chain: &mut Chain, db: &rusqlite::Connection, n: u64) {
    for i in 0..n {
        chain.append(Event {
            raft_index: i + 3,
            at: Timestamp(1_000 + i),
            actor: "admin",
            role: "admin",
            action: "submit_listing",
            object_id: "o",
            result: format!("ok {i}"),
        });
    }
    chain.flush(db).expect("flush");
}

async fn records(conn: &mut SqliteConnection) -> Vec<AuditRecord> {
    range(conn, 1, 1000).await.expect("records")
}

/// The tree rebuilt from the records, a chunk at a time across chunk boundaries, is the tree
/// written record by record.
#[test]
fn a_tree_rebuilt_in_chunks_is_the_tree_written_record_by_record() {
    let dir = tempfile::tempdir().expect("dir");
    let db = super::test_db(dir.path());
    let mut chain = Chain::load(&db).expect("load");
    let records = 2 * FILL_CHUNK + 7;
    append(&mut chain, &db, records);
    let tree = |db: &rusqlite::Connection| -> Vec<(i64, i64, Vec<u8>)> {
        db.prepare("SELECT level, idx, hash FROM audit_tree ORDER BY level, idx")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    };
    let written = tree(&db);
    assert_eq!(
        written.iter().filter(|(level, _, _)| *level == 0).count() as u64,
        records
    );
    rebuild_tree(&db).expect("rebuild");
    assert_eq!(tree(&db), written);
}

#[tokio::test]
async fn stored_subtrees_give_the_roots_and_proofs_of_the_records_after_a_refill_too() {
    let dir = tempfile::tempdir().expect("dir");
    let db = super::test_db(dir.path());
    let mut chain = Chain::load(&db).expect("load");
    append(&mut chain, &db, 23);
    let mut conn = super::test_reader(dir.path()).await;
    let all = records(&mut conn).await;
    let tree = MemoryTree::new(all.iter().map(|r| r.content.leaf_hash()));
    assert_eq!(tree_size(&mut conn).await.expect("size"), 23);
    for n in 0..=23 {
        assert_eq!(root(&mut conn, n).await.expect("root"), tree.root(n), "{n}");
    }
    let (leaf, path) = inclusion_proof(&mut conn, 9, 21).await.expect("proof");
    assert_eq!(
        (leaf, path),
        (all[9].content.leaf_hash(), tree.inclusion(9, 21))
    );
    let proof = consistency_proof(&mut conn, 6, 23).await.expect("proof");
    assert_eq!(proof, tree.consistency(6, 23));

    // A chain written before the tree existed: the next flush fills the tree first.
    db.execute("DELETE FROM audit_tree", []).expect("delete");
    let mut chain = Chain::load(&db).expect("load");
    append(&mut chain, &db, 2);
    let all = records(&mut conn).await;
    let tree = MemoryTree::new(all.iter().map(|r| r.content.leaf_hash()));
    assert_eq!(tree_size(&mut conn).await.expect("size"), 25);
    assert_eq!(root(&mut conn, 25).await.expect("root"), tree.root(25));

    // And a rebuild (after a snapshot is installed) gives the same tree.
    rebuild_tree(&db).expect("rebuild");
    assert_eq!(root(&mut conn, 25).await.expect("root"), tree.root(25));
    assert_eq!(root(&mut conn, 16).await.expect("root"), tree.root(16));
}

/// Measures the tree at size: `XCHG_AUDIT_BENCH_RECORDS=200000 cargo test -p xchg-node
/// --lib catalog::audit_tree::tree_cost -- --ignored --nocapture` (figures in bench/RESULTS.md).
#[tokio::test]
#[ignore = "a measurement, run by hand"]
async fn tree_cost() {
    let n: u64 = std::env::var("XCHG_AUDIT_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("dir");
    let db = super::test_db(dir.path());
    let mut chain = Chain::load(&db).expect("load");
    let batch = 500;
    let started = std::time::Instant::now();
    let mut appended = 0;
    while appended < n {
        db.execute_batch("BEGIN").expect("begin");
        append(&mut chain, &db, batch.min(n - appended));
        db.execute_batch("COMMIT").expect("commit");
        appended += batch.min(n - appended);
    }
    let append_all = started.elapsed();
    let tree_rows: i64 = db
        .query_row("SELECT count(*) FROM audit_tree", [], |r| r.get(0))
        .expect("count");
    // The last batches alone, as the log is now large.
    let started = std::time::Instant::now();
    for _ in 0..10 {
        db.execute_batch("BEGIN").expect("begin");
        append(&mut chain, &db, batch);
        db.execute_batch("COMMIT").expect("commit");
    }
    let late_batch = started.elapsed() / 10;
    // The tree's part of one batch: its leaves and nodes alone, rolled back.
    let size = n + 10 * batch;
    let started = std::time::Instant::now();
    for _ in 0..10 {
        db.execute_batch("BEGIN").expect("begin");
        for i in 0..batch {
            add_leaf(&db, size + i, [7; 32]).expect("leaf");
        }
        db.execute_batch("ROLLBACK").expect("rollback");
    }
    let tree_part = started.elapsed() / 10;
    let mut conn = super::test_reader(dir.path()).await;
    let started = std::time::Instant::now();
    let r = root(&mut conn, size).await.expect("root");
    let root_time = started.elapsed();
    let started = std::time::Instant::now();
    let _ = inclusion_proof(&mut conn, size / 3, size)
        .await
        .expect("proof");
    let inclusion_time = started.elapsed();
    let started = std::time::Instant::now();
    let _ = consistency_proof(&mut conn, size / 3 + 7, size)
        .await
        .expect("proof");
    let consistency_time = started.elapsed();
    let all = range(&mut conn, 1, u32::MAX).await.expect("records");
    let started = std::time::Instant::now();
    let tree = MemoryTree::new(all.iter().map(|r| r.content.leaf_hash()));
    let rehash = started.elapsed();
    assert_eq!(tree.root(size), r);
    println!(
        "records {size}: appending {n} in batches of {batch}: {append_all:?} \
         ({:.1} µs/record); audit_tree rows {tree_rows}; one batch of {batch} at that size \
         {late_batch:?}, of which the tree's rows {tree_part:?}; root {root_time:?}, \
         inclusion proof {inclusion_time:?}, consistency proof {consistency_time:?}; \
         rehashing every record instead {rehash:?}",
        append_all.as_secs_f64() * 1e6 / n as f64
    );
}
