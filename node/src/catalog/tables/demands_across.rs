//! The `shared_demands` and `foreign_demands` tables (schema v21). The rules are in
//! `catalog::demands_across`.

use rusqlite::OptionalExtension as _;
use sqlx::SqliteConnection;
use xchg_protocol::Timestamp;
use xchg_protocol::demand::Demand as WireDemand;

use super::{int, uint};
use crate::catalog::demands_across::ExternalDemand;

/// Queues `body`, the canonical Demand of demand `demand_id`'s latest state, for the leader to
/// sign and publish (the last published message stays what catch-up serves until then).
///
/// # Errors
/// SQLite's error.
pub fn queue(
    db: &rusqlite::Connection,
    demand_id: u64,
    body: &[u8],
    updated_at: Timestamp,
    raft_index: u64,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO shared_demands (demand_id, body, updated_at, state, raft_index) \
         VALUES (?1, ?2, ?3, 'pending', ?4) \
         ON CONFLICT (demand_id) DO UPDATE SET body = excluded.body, \
            updated_at = excluded.updated_at, state = 'pending', raft_index = excluded.raft_index",
    )?
    .execute(rusqlite::params![
        int(demand_id),
        body,
        int(updated_at.0),
        int(raft_index)
    ])
    .map(drop)
}

/// The canonical body queued or published last for demand `demand_id`, if it is shared.
///
/// # Errors
/// SQLite's error.
pub fn shared_body(db: &rusqlite::Connection, demand_id: u64) -> rusqlite::Result<Option<Vec<u8>>> {
    db.prepare_cached("SELECT body FROM shared_demands WHERE demand_id = ?1")?
        .query_row([int(demand_id)], |row| row.get(0))
        .optional()
}

/// Marks demand `demand_id`'s queued body published at `at` as `signed`, by the command at
/// `raft_index` (the position catch-up pages by).
///
/// # Errors
/// SQLite's error.
pub fn mark_published(
    db: &rusqlite::Connection,
    demand_id: u64,
    signed: &[u8],
    at: Timestamp,
    raft_index: u64,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "UPDATE shared_demands SET state = 'published', signed = ?2, published_at = ?3, \
            raft_index = ?4 WHERE demand_id = ?1",
    )?
    .execute(rusqlite::params![
        int(demand_id),
        signed,
        int(at.0),
        int(raft_index)
    ])
    .map(drop)
}

/// Whether demand `demand_id` is shared with the federation, on a reader.
///
/// # Errors
/// SQLite's error.
pub async fn is_shared(conn: &mut SqliteConnection, demand_id: u64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM shared_demands WHERE demand_id = ?)")
        .bind(int(demand_id))
        .fetch_one(&mut *conn)
        .await
}

/// Up to `limit` shared demands waiting to be signed and published, by number:
/// `(demand_id, body)`.
///
/// # Errors
/// SQLite's error.
pub async fn pending(
    conn: &mut SqliteConnection,
    limit: usize,
) -> Result<Vec<(u64, Vec<u8>)>, sqlx::Error> {
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT demand_id, body FROM shared_demands WHERE state = 'pending' \
         ORDER BY demand_id LIMIT ?",
    )
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|(id, b)| (uint(id), b)).collect())
}

/// Up to `limit` signed demands this zone published, and foreign ones it holds, filed after
/// position `after` of the demand feed, ascending: `(pos, signed)` (what catch-up serves,
/// PROTOCOL.md 11.9). Positions are strictly increasing: each write files the demand anew at
/// the end.
///
/// # Errors
/// SQLite's error.
pub async fn page(
    conn: &mut SqliteConnection,
    after: u64,
    limit: u32,
) -> Result<Vec<(u64, Vec<u8>)>, sqlx::Error> {
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT pos, data FROM demand_feed WHERE pos > ?1 ORDER BY pos LIMIT ?2")
            .bind(int(after))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows.into_iter().map(|(i, s)| (uint(i), s)).collect())
}

/// Files again every signed demand held, in the order they were last written (by Raft index,
/// then row), after a snapshot is installed: the feed is a member's own table. Positions
/// continue after the highest ever given, so a cursor a peer holds never skips what is filed
/// again.
///
/// # Errors
/// SQLite's error.
pub fn rebuild_feed(db: &rusqlite::Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "DELETE FROM demand_feed;
         INSERT INTO demand_feed (source, ref, data)
            SELECT src, ref, data FROM (
                SELECT 'own' AS src, CAST(demand_id AS TEXT) AS ref, signed AS data,
                       raft_index AS ix, 0 AS side, demand_id AS row
                  FROM shared_demands WHERE signed IS NOT NULL
                UNION ALL
                SELECT 'foreign', zone || ':' || number, signed, raft_index, 1, id
                  FROM foreign_demands)
            ORDER BY ix, side, row;",
    )
}

/// Whether a foreign demand is held in the state of the SignedMessage with id `message_id`
/// (the hash of its body), on a reader.
///
/// # Errors
/// SQLite's error.
pub async fn recognised(
    conn: &mut SqliteConnection,
    message_id: &xchg_protocol::ContentId,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM foreign_demands WHERE message_id = ?)")
        .bind(message_id.to_string())
        .fetch_one(&mut *conn)
        .await
}

/// The `updated_at` and state of the foreign demand `number` of `zone` held, if one is.
///
/// # Errors
/// SQLite's error.
pub fn held(
    db: &rusqlite::Connection,
    zone: &str,
    number: u64,
) -> rusqlite::Result<Option<(Timestamp, String)>> {
    db.prepare_cached(
        "SELECT updated_at, state FROM foreign_demands WHERE zone = ?1 AND number = ?2",
    )?
    .query_row(rusqlite::params![zone, int(number)], |row| {
        Ok((Timestamp(uint(row.get(0)?)), row.get(1)?))
    })
    .optional()
}

/// The `updated_at` of the foreign demand `number` of `zone` held, and whether it is closed, if
/// one is, on a reader.
///
/// # Errors
/// SQLite's error.
pub async fn held_read(
    conn: &mut SqliteConnection,
    zone: &str,
    number: u64,
) -> Result<Option<(Timestamp, bool)>, sqlx::Error> {
    let row: Option<(i64, String)> = sqlx::query_as(
        "SELECT updated_at, state FROM foreign_demands WHERE zone = ? AND number = ?",
    )
    .bind(zone)
    .bind(int(number))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(at, state)| (Timestamp(uint(at)), state != "open")))
}

/// How many foreign demands of `zone` are held, not counting its demand `number`.
///
/// # Errors
/// SQLite's error.
pub fn count_of_zone(db: &rusqlite::Connection, zone: &str, number: u64) -> rusqlite::Result<u64> {
    db.prepare_cached("SELECT COUNT(*) FROM foreign_demands WHERE zone = ?1 AND number <> ?2")?
        .query_row(rusqlite::params![zone, int(number)], |row| {
            Ok(uint(row.get(0)?))
        })
}

/// Deletes the foreign demands whose deadline is before `cutoff`, or that closed (withdrawn or
/// accepted) before it, with their place in the demand feed: how many.
///
/// # Errors
/// SQLite's error.
pub fn delete_ended_before(
    db: &rusqlite::Connection,
    cutoff: Timestamp,
) -> rusqlite::Result<usize> {
    db.prepare_cached(
        "DELETE FROM foreign_demands WHERE deadline < ?1 \
            OR (updated_at < ?1 AND state <> 'open')",
    )?
    .execute([int(cutoff.0)])
}

/// A recognised foreign demand to keep.
pub struct Kept<'a> {
    /// Its origin's exchange.
    pub exchange: &'a str,
    /// The demand as decoded.
    pub demand: &'a WireDemand,
    /// The id of its SignedMessage.
    pub message_id: &'a str,
    /// The SignedMessage as received.
    pub signed: &'a [u8],
    /// The node key that signed it, base64.
    pub signer: &'a str,
    /// The peer that delivered it.
    pub received_from: &'a str,
    /// When the member received it.
    pub at: Timestamp,
    /// The command's index.
    pub raft_index: u64,
}

/// Keeps `k` in place of what is held of its zone and number (the row, and so its place in
/// searches, stays).
///
/// # Errors
/// SQLite's error.
pub fn keep(db: &rusqlite::Connection, k: &Kept<'_>) -> rusqlite::Result<()> {
    let d = k.demand;
    let body = serde_json::to_string(d).map_err(crate::sqlite::unencodable)?;
    db.prepare_cached(
        "INSERT INTO foreign_demands (exchange, zone, number, state, category, title, \
            description, body, deadline, updated_at, message_id, signed, received_from, \
            recorded_at, raft_index, signer) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
         ON CONFLICT (zone, number) DO UPDATE SET state = excluded.state, \
            category = excluded.category, title = excluded.title, \
            description = excluded.description, body = excluded.body, \
            deadline = excluded.deadline, updated_at = excluded.updated_at, \
            message_id = excluded.message_id, signed = excluded.signed, \
            received_from = excluded.received_from, recorded_at = excluded.recorded_at, \
            raft_index = excluded.raft_index, signer = excluded.signer",
    )?
    .execute(rusqlite::params![
        k.exchange,
        d.zone.as_str(),
        int(d.number),
        d.state.as_str(),
        d.category,
        d.title,
        d.description,
        body,
        int(d.deadline.0),
        int(d.updated_at.0),
        k.message_id,
        k.signed,
        k.received_from,
        int(k.at.0),
        int(k.raft_index),
        k.signer,
    ])
    .map(drop)
}

/// Deletes the foreign demands of `exchange` whose held state the node key `signer` (base64)
/// signed, with their place in the demand feed: how many.
///
/// # Errors
/// SQLite's error.
pub fn delete_signed_by(
    db: &rusqlite::Connection,
    exchange: &str,
    signer: &str,
) -> rusqlite::Result<usize> {
    db.prepare_cached("DELETE FROM foreign_demands WHERE exchange = ?1 AND signer = ?2")?
        .execute([exchange, signer])
}

const COLUMNS: &str = "id, exchange, body, recorded_at";

type Row = (i64, String, String, i64);

fn assemble(row: Row, now: Timestamp) -> Result<ExternalDemand, sqlx::Error> {
    let (id, exchange, body, recorded_at) = row;
    let demand: WireDemand =
        serde_json::from_str(&body).map_err(|e| sqlx::Error::Decode(e.into()))?;
    Ok(ExternalDemand::of(
        uint(id),
        exchange,
        demand,
        Timestamp(uint(recorded_at)),
        now,
    ))
}

/// What a search of foreign demands narrows to.
#[derive(Debug, Default)]
pub struct Filter<'a> {
    /// Text in the title or description.
    pub q: Option<&'a str>,
    /// The category.
    pub category: Option<&'a str>,
    /// Only of this exchange.
    pub exchange: Option<&'a str>,
    /// Only of this zone.
    pub zone: Option<&'a str>,
    /// Only open ones (deadline after `now`).
    pub open: bool,
    /// Rows below this one (the next page).
    pub before: Option<u64>,
}

/// Foreign demands matching `f`, the most recently first recognised first, at most `limit`,
/// their states judged at `now`.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn search(
    conn: &mut SqliteConnection,
    f: &Filter<'_>,
    limit: u32,
    now: Timestamp,
) -> Result<Vec<ExternalDemand>, sqlx::Error> {
    let like = f.q.map(super::contains_pattern);
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM foreign_demands \
         WHERE (?1 IS NULL OR title LIKE ?1 ESCAPE '\\' OR description LIKE ?1 ESCAPE '\\') \
           AND (?2 IS NULL OR category = ?2) AND (?3 IS NULL OR exchange = ?3) \
           AND (?4 IS NULL OR zone = ?4) \
           AND (?5 = 0 OR (state = 'open' AND deadline > ?6)) AND id < ?7 \
         ORDER BY id DESC LIMIT ?8"
    ))
    .bind(like)
    .bind(f.category)
    .bind(f.exchange)
    .bind(f.zone)
    .bind(f.open)
    .bind(int(now.0))
    .bind(f.before.map_or(i64::MAX, int))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(|r| assemble(r, now)).collect()
}

/// The foreign demand `number` of `zone`, its state judged at `now`, on a reader.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn get(
    conn: &mut SqliteConnection,
    zone: &str,
    number: u64,
    now: Timestamp,
) -> Result<Option<ExternalDemand>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM foreign_demands WHERE zone = ? AND number = ?"
    ))
    .bind(zone)
    .bind(int(number))
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| assemble(r, now)).transpose()
}
