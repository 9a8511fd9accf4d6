//! Every table of the catalog's schema is either replicated state, which a Raft snapshot
//! carries to a member that installs it (`catalog::tables::REPLICATED_TABLES`), or one
//! of the few that are a member's own. A table added to the schema and left out of the list
//! would be missing on every member that caught up from a snapshot.

use xchg_node::catalog::SCHEMA;
use xchg_node::catalog::tables::REPLICATED_TABLES;

/// Tables each member keeps for itself: Raft's metadata, the snapshot it built, the search
/// index, rebuilt from `listings` after a snapshot is installed, and the certificate feed
/// catch-up serves from, rebuilt from the certificate tables after a snapshot is installed, the
/// demand feed, rebuilt from the demand tables likewise, and the audit chain's Merkle tree,
/// rebuilt from the audit records after a snapshot is installed.
const OWN_TABLES: &[&str] = &[
    "sm_meta",
    "snapshot",
    "listing_clock",
    "listing_changes",
    "certificate_feed",
    "demand_feed",
    "audit_tree",
];

#[test]
fn every_table_of_the_catalog_schema_is_replicated_or_a_members_own() {
    let db = rusqlite::Connection::open_in_memory().expect("an in-memory database");
    for step in SCHEMA {
        db.execute_batch(step).expect("the schema applies");
    }
    let mut tables = db
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY name",
        )
        .expect("a query");
    let names: Vec<String> = tables
        .query_map([], |row| row.get(0))
        .expect("tables")
        .collect::<Result<_, _>>()
        .expect("names");
    let unaccounted: Vec<&String> = names
        .iter()
        .filter(|t| !REPLICATED_TABLES.contains(&t.as_str()))
        // FTS5 keeps the index in shadow tables named after it.
        .filter(|t| !OWN_TABLES.iter().any(|own| t.starts_with(own)))
        .collect();
    assert!(
        unaccounted.is_empty(),
        "tables neither replicated nor a member's own: {unaccounted:?}"
    );
    for table in ["parties", "party_history", "entrustments"] {
        assert!(names.iter().any(|t| t == table), "the schema has {table}");
    }
}
