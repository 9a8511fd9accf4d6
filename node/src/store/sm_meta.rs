//! The catalog file's `sm_meta` table, its only home: the state machine's position (the last
//! applied log id and the membership), written in the transaction of every applied batch, and
//! the row [`super::Db::sync_catalog`] changes to have a commit to fsync. Values are CBOR.

use rusqlite::OptionalExtension as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::raft_types::{LogId, StoredMembership};
use super::{from_cbor, to_cbor};
use crate::sqlite::{undecodable, unencodable};

/// The value under `key`, if any.
///
/// # Errors
/// SQLite's error, or a value that does not decode as `T`.
pub(super) fn get<T: DeserializeOwned>(
    db: &rusqlite::Connection,
    key: &str,
) -> rusqlite::Result<Option<T>> {
    let bytes: Option<Vec<u8>> = db
        .prepare_cached("SELECT value FROM sm_meta WHERE key = ?1")?
        .query_row([key], |row| row.get(0))
        .optional()?;
    bytes
        .map(|b| from_cbor(&b).map_err(undecodable))
        .transpose()
}

/// Sets `key` to `value`.
///
/// # Errors
/// SQLite's error, or a value that does not encode.
pub(super) fn set<T: Serialize>(
    db: &rusqlite::Connection,
    key: &str,
    value: &T,
) -> rusqlite::Result<()> {
    let bytes = to_cbor(value).map_err(unencodable)?;
    db.prepare_cached(
        "INSERT INTO sm_meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(rusqlite::params![key, bytes])?;
    Ok(())
}

/// The last applied log id and the membership recorded (none and the empty membership in a new
/// file).
///
/// # Errors
/// SQLite's error, or a value that does not decode.
pub(super) fn position(
    db: &rusqlite::Connection,
) -> rusqlite::Result<(Option<LogId>, StoredMembership)> {
    let last_applied = get::<Option<LogId>>(db, "last_applied")?.flatten();
    let membership = get(db, "membership")?.unwrap_or_default();
    Ok((last_applied, membership))
}

/// Records `last_applied` and, if given, `membership` (inside the caller's transaction).
///
/// # Errors
/// SQLite's error.
pub(super) fn set_position(
    db: &rusqlite::Connection,
    last_applied: &Option<LogId>,
    membership: Option<&StoredMembership>,
) -> rusqlite::Result<()> {
    set(db, "last_applied", last_applied)?;
    match membership {
        Some(m) => set(db, "membership", m),
        None => Ok(()),
    }
}

/// Changes a row that exists only for this, so the commit has a frame to write and sync.
///
/// # Errors
/// SQLite's error.
pub(super) fn mark_synced(db: &rusqlite::Connection) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO sm_meta (key, value) VALUES ('synced', x'01') \
         ON CONFLICT (key) DO UPDATE SET \
         value = CASE value WHEN x'01' THEN x'02' ELSE x'01' END",
    )?
    .execute([])
    .map(drop)
}

/// The value of the row [`mark_synced`] changes, for tests.
#[cfg(test)]
pub(super) fn synced(db: &rusqlite::Connection) -> rusqlite::Result<Option<Vec<u8>>> {
    db.query_row("SELECT value FROM sm_meta WHERE key = 'synced'", [], |r| {
        r.get(0)
    })
    .optional()
}
