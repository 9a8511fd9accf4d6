//! The `idempotency` table: the first response to each write sent with an `Idempotency-Key`,
//! per caller and key, kept for a day by the command's time.

use rusqlite::OptionalExtension as _;
use xchg_protocol::Timestamp;

use super::int;

/// Forgets the keys first used before `before`.
///
/// # Errors
/// SQLite's error.
pub fn expire(db: &rusqlite::Connection, before: Timestamp) -> rusqlite::Result<()> {
    db.prepare_cached("DELETE FROM idempotency WHERE at < ?1")?
        .execute([int(before.0)])
        .map(drop)
}

/// The request and encoded response recorded under `actor`'s `key`, if any.
///
/// # Errors
/// SQLite's error.
pub fn find(
    db: &rusqlite::Connection,
    actor: &str,
    key: &str,
) -> rusqlite::Result<Option<(Vec<u8>, Vec<u8>)>> {
    db.prepare_cached("SELECT request, response FROM idempotency WHERE actor = ?1 AND key = ?2")?
        .query_row([actor, key], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
}

/// Records the first `response` (encoded) to `request` under `actor`'s `key`, at `at`.
///
/// # Errors
/// SQLite's error.
pub fn record(
    db: &rusqlite::Connection,
    actor: &str,
    key: &str,
    request: &[u8],
    response: &[u8],
    at: Timestamp,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO idempotency (actor, key, request, response, at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(rusqlite::params![actor, key, request, response, int(at.0)])
    .map(drop)
}
