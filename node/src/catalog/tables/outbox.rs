//! The `outbox` table: this zone's exportable changes, queued by the state machine for the
//! publisher (`pending`), marked `published` once their signed envelope is recorded, or
//! `withheld` by the export firewall. Written by the rules in `catalog::federation`; read by
//! the federation driver (what to publish), the listing views (what left the zone) and the
//! flows overview.

use rusqlite::OptionalExtension as _;
use sqlx::{Row, SqliteConnection};
use xchg_protocol::{AnnouncementKind, ContentId, Timestamp};

use super::{int, kind_name, uint};
use crate::catalog::query::ExportView;

/// A new outbox entry.
pub struct NewEntry<'a> {
    /// The listing it concerns.
    pub listing_id: &'a ContentId,
    /// A listing version or its delisting.
    pub kind: AnnouncementKind,
    /// The listing version.
    pub version: u32,
    /// `pending` or `withheld`.
    pub state: &'a str,
    /// Why the firewall withheld it.
    pub reason: Option<&'a str>,
    /// The canonical body to announce.
    pub body: &'a [u8],
    /// The command's time.
    pub at: Timestamp,
}

/// Appends `e`.
///
/// # Errors
/// SQLite's error.
pub fn push(db: &rusqlite::Connection, e: &NewEntry<'_>) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO outbox (listing_id, kind, version, state, reason, content_id, body, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(rusqlite::params![
        e.listing_id.to_string(),
        kind_name(e.kind),
        i64::from(e.version),
        e.state,
        e.reason,
        ContentId::of(e.body).to_string(),
        e.body,
        int(e.at.0),
    ])
    .map(drop)
}

/// The version of the listing's copies outside the zone, if any are live: the last
/// non-withheld outbox entry of the listing is a listing version, not a delisting.
///
/// # Errors
/// SQLite's error.
pub fn live_export(db: &rusqlite::Connection, id: &ContentId) -> rusqlite::Result<Option<u32>> {
    let last: Option<(String, i64)> = db
        .prepare_cached(
            "SELECT kind, version FROM outbox WHERE listing_id = ?1 AND state != 'withheld' \
             ORDER BY seq DESC LIMIT 1",
        )?
        .query_row([id.to_string()], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    Ok(match last {
        Some((kind, version)) if kind == "listing" => u32::try_from(version).ok(),
        _ => None,
    })
}

/// Whether the listing version with body id `content_id` was let out of the zone: an outbox
/// entry announces it and the firewall did not withhold it.
///
/// # Errors
/// SQLite's error.
pub fn let_out(db: &rusqlite::Connection, content_id: &ContentId) -> rusqlite::Result<bool> {
    db.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM outbox WHERE content_id = ?1 AND kind = 'listing' \
            AND state != 'withheld')",
    )?
    .query_row([content_id.to_string()], |row| row.get(0))
}

/// Whether some version of listing `id` was let out of the zone (an outbox entry announces it
/// and the firewall did not withhold it), on a reader.
///
/// # Errors
/// SQLite's error.
pub async fn ever_let_out(
    conn: &mut SqliteConnection,
    id: &ContentId,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM outbox WHERE listing_id = ? AND kind = 'listing' \
            AND state != 'withheld')",
    )
    .bind(id.to_string())
    .fetch_one(&mut *conn)
    .await
}

/// An entry as the publisher's record of it needs it.
pub struct Queued {
    /// The listing it concerns.
    pub listing_id: String,
    /// `pending`, `published` or `withheld`.
    pub state: String,
    /// The id of its body.
    pub content_id: String,
}

/// Entry `seq`, if there is one.
///
/// # Errors
/// SQLite's error.
pub fn entry(db: &rusqlite::Connection, seq: u64) -> rusqlite::Result<Option<Queued>> {
    db.prepare_cached("SELECT listing_id, state, content_id FROM outbox WHERE seq = ?1")?
        .query_row([int(seq)], |row| {
            Ok(Queued {
                listing_id: row.get(0)?,
                state: row.get(1)?,
                content_id: row.get(2)?,
            })
        })
        .optional()
}

/// Marks entry `seq` published at `at`.
///
/// # Errors
/// SQLite's error.
pub fn mark_published(db: &rusqlite::Connection, seq: u64, at: Timestamp) -> rusqlite::Result<()> {
    db.prepare_cached("UPDATE outbox SET state = 'published', published_at = ?1 WHERE seq = ?2")?
        .execute([int(at.0), int(seq)])
        .map(drop)
}

/// An entry waiting to be signed and published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Its position in the outbox.
    pub seq: u64,
    /// `listing` or `delisting` as stored.
    pub kind: String,
    /// The canonical body to sign.
    pub body: Vec<u8>,
}

/// Up to `limit` pending entries, oldest first.
///
/// # Errors
/// SQLite's error.
pub async fn pending(
    conn: &mut SqliteConnection,
    limit: usize,
) -> Result<Vec<Pending>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, kind, body FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT ?",
    )
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Pending {
                seq: uint(row.try_get(0)?),
                kind: row.try_get(1)?,
                body: row.try_get(2)?,
            })
        })
        .collect()
}

/// How many entries wait to be published.
///
/// # Errors
/// SQLite's error.
pub async fn pending_count(conn: &mut SqliteConnection) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE state = 'pending'")
        .fetch_one(&mut *conn)
        .await?;
    Ok(uint(n))
}

/// The entries of listing `id`, oldest first.
///
/// # Errors
/// SQLite's error.
pub async fn of_listing(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Vec<ExportView>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT kind, version, state, reason, content_id, at, published_at FROM outbox
         WHERE listing_id = ? ORDER BY seq",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let mut export = Vec::with_capacity(rows.len());
    for r in rows {
        export.push(ExportView {
            kind: r.try_get(0)?,
            version: r.try_get(1)?,
            state: r.try_get(2)?,
            reason: r.try_get(3)?,
            content_id: r.try_get(4)?,
            at: Timestamp(uint(r.try_get(5)?)),
            published_at: r.try_get::<Option<i64>, _>(6)?.map(|t| Timestamp(uint(t))),
        });
    }
    Ok(export)
}

/// Entries published (by their publication time) and withheld (by their time) in
/// `[from, to)`, counted per `bucket` milliseconds from `from`: `(state, bucket, count)`.
///
/// # Errors
/// SQLite's error.
pub async fn flows(
    conn: &mut SqliteConnection,
    from: Timestamp,
    to: Timestamp,
    bucket: u64,
) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    let (from, to, bucket) = (int(from.0), int(to.0), int(bucket));
    sqlx::query_as(
        "SELECT 'published', (published_at - ?) / ?, count(*) FROM outbox
         WHERE state = 'published' AND published_at >= ? AND published_at < ? GROUP BY 2
         UNION ALL
         SELECT 'withheld', (at - ?) / ?, count(*) FROM outbox
         WHERE state = 'withheld' AND at >= ? AND at < ? GROUP BY 2",
    )
    .bind(from)
    .bind(bucket)
    .bind(from)
    .bind(to)
    .bind(from)
    .bind(bucket)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await
}

/// The firewall's most frequent reasons for entries withheld in `[from, to)`, at most `limit`,
/// most frequent first: `(reason, count)`.
///
/// # Errors
/// SQLite's error.
pub async fn withheld_reasons(
    conn: &mut SqliteConnection,
    from: Timestamp,
    to: Timestamp,
    limit: i64,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT reason, count(*) FROM outbox
         WHERE state = 'withheld' AND at >= ? AND at < ? AND reason IS NOT NULL
         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
    )
    .bind(int(from.0))
    .bind(int(to.0))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}
