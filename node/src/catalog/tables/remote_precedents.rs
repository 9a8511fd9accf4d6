//! The `remote_precedents` table (schema v14): at an applying zone, the latest signed list of
//! precedents an origin zone of another exchange gave for one of its listings and one scenario
//! (PROTOCOL.md 11.8). The rules are in `catalog::precedents`.

use sqlx::SqliteConnection;
use xchg_protocol::Timestamp;

use super::int;

/// One list to keep.
pub struct Kept<'a> {
    /// The listing.
    pub listing_id: &'a str,
    /// The scenario.
    pub scenario: &'a str,
    /// The zone that signed it.
    pub origin_zone: &'a str,
    /// `sha256:...` of its body.
    pub list_id: &'a str,
    /// When the origin made it.
    pub issued_at: Timestamp,
    /// When its newest decision was made (0 for a list of none).
    pub newest: Timestamp,
    /// The signed list.
    pub signed: &'a [u8],
    /// The peer that delivered it.
    pub received_from: &'a str,
    /// When the member received it.
    pub at: Timestamp,
    /// The Raft index of the command.
    pub raft_index: u64,
}

/// Keeps `k` in place of the list held for its listing, scenario and zone, unless that one has
/// a newer decision, or as new a decision and was made at the same time or later; whether it
/// was kept. (A list signed by an origin member that lags behind its zone is made later but
/// misses the newest decisions: it must not replace a fuller one.)
///
/// # Errors
/// SQLite's error.
pub fn keep(db: &rusqlite::Connection, k: &Kept<'_>) -> rusqlite::Result<bool> {
    db.prepare_cached(
        "INSERT INTO remote_precedents (listing_id, scenario, origin_zone, list_id, issued_at, \
            signed, received_from, at, raft_index, newest) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (listing_id, scenario, origin_zone) DO UPDATE SET list_id = excluded.list_id, \
            issued_at = excluded.issued_at, signed = excluded.signed, \
            received_from = excluded.received_from, at = excluded.at, \
            raft_index = excluded.raft_index, newest = excluded.newest \
         WHERE (excluded.newest, excluded.issued_at) \
             > (remote_precedents.newest, remote_precedents.issued_at)",
    )?
    .execute(rusqlite::params![
        k.listing_id,
        k.scenario,
        k.origin_zone,
        k.list_id,
        int(k.issued_at.0),
        k.signed,
        k.received_from,
        int(k.at.0),
        int(k.raft_index),
        int(k.newest.0),
    ])
    .map(|n| n == 1)
}

/// The signed lists held for `listing_id` and `scenario`, one per origin zone.
///
/// # Errors
/// SQLite's error.
pub async fn lists(
    conn: &mut SqliteConnection,
    listing_id: &str,
    scenario: &str,
) -> Result<Vec<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT signed FROM remote_precedents WHERE listing_id = ? AND scenario = ? \
         ORDER BY origin_zone",
    )
    .bind(listing_id)
    .bind(scenario)
    .fetch_all(&mut *conn)
    .await
}

/// The signed list held for `listing_id`, `scenario` and `origin_zone`, if any.
///
/// # Errors
/// SQLite's error.
pub async fn held(
    conn: &mut SqliteConnection,
    listing_id: &str,
    scenario: &str,
    origin_zone: &str,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT signed FROM remote_precedents \
         WHERE listing_id = ? AND scenario = ? AND origin_zone = ?",
    )
    .bind(listing_id)
    .bind(scenario)
    .bind(origin_zone)
    .fetch_optional(&mut *conn)
    .await
}
