//! The `revocations` table: the node keys each exchange's root revoked, as this zone recorded
//! them (keys in base64).

use rusqlite::OptionalExtension as _;
use sqlx::{Row, SqliteConnection};
use xchg_protocol::{ContentId, PublicKey, Timestamp};

use super::{int, uint};
use crate::catalog::query::RevocationView;

/// Records that `exchange` revoked `key` (announced as `content_id`) for `reason` at `at`; a
/// revocation already recorded stays as it is.
///
/// # Errors
/// SQLite's error.
pub fn insert(
    db: &rusqlite::Connection,
    exchange: &str,
    key: &PublicKey,
    content_id: &ContentId,
    reason: &str,
    at: Timestamp,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO revocations (exchange, key, content_id, reason, at) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
    )?
    .execute(rusqlite::params![
        exchange,
        key.to_base64(),
        content_id.to_string(),
        reason,
        int(at.0),
    ])
    .map(drop)
}

const REVOKED_AT: &str = "SELECT at FROM revocations WHERE exchange = ?1 AND key = ?2";

/// When `exchange` revoked `key` (the revocation's own time), if this zone recorded it; on the
/// writer, for the rules.
///
/// # Errors
/// SQLite's error.
pub fn revoked_at(
    db: &rusqlite::Connection,
    exchange: &str,
    key: &PublicKey,
) -> rusqlite::Result<Option<Timestamp>> {
    let at: Option<i64> = db
        .prepare_cached(REVOKED_AT)?
        .query_row(rusqlite::params![exchange, key.to_base64()], |row| {
            row.get(0)
        })
        .optional()?;
    Ok(at.map(|t| Timestamp(uint(t))))
}

/// [`revoked_at`] on a reader, for the API.
///
/// # Errors
/// SQLite's error.
pub async fn revoked_at_read(
    conn: &mut SqliteConnection,
    exchange: &str,
    key: &PublicKey,
) -> Result<Option<Timestamp>, sqlx::Error> {
    let at: Option<i64> = sqlx::query_scalar(REVOKED_AT)
        .bind(exchange)
        .bind(key.to_base64())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(at.map(|t| Timestamp(uint(t))))
}

/// Every revoked key with the exchange that revoked it, as stored: `(exchange, key)`.
///
/// # Errors
/// SQLite's error.
pub async fn all(conn: &mut SqliteConnection) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT exchange, key FROM revocations")
        .fetch_all(&mut *conn)
        .await
}

/// The keys `exchange` revoked, as stored (base64).
///
/// # Errors
/// SQLite's error.
pub async fn keys_of(
    conn: &mut SqliteConnection,
    exchange: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT key FROM revocations WHERE exchange = ?")
        .bind(exchange)
        .fetch_all(&mut *conn)
        .await
}

/// The revocation of `key` by `exchange`, if recorded.
///
/// # Errors
/// SQLite's error.
pub async fn of(
    conn: &mut SqliteConnection,
    exchange: &str,
    key: &PublicKey,
) -> Result<Option<RevocationView>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT content_id, reason, at FROM revocations WHERE exchange = ? AND key = ?",
    )
    .bind(exchange)
    .bind(key.to_base64())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(RevocationView {
        content_id: row.try_get(0)?,
        exchange: exchange.to_owned(),
        key: key.to_string(),
        reason: row.try_get(1)?,
        revoked_at: Timestamp(uint(row.try_get(2)?)),
    }))
}
