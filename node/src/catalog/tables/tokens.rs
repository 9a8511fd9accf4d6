//! The `tokens` table: the hashes of the API tokens created at run time, with their role,
//! party and revocation, and rows for the config's tokens once they are revoked.

use std::collections::BTreeSet;

use rusqlite::OptionalExtension as _;
use sqlx::{Row, SqliteConnection};
use xchg_federation_config::Role;
use xchg_protocol::Timestamp;

use super::int;

/// A token's row, as the API checks a bearer against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The role it grants.
    pub role: Role,
    /// The party it acts for, if bound to one.
    pub party: Option<String>,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// Adds a run-time token; returns false (and changes nothing) if its hash is there already.
///
/// # Errors
/// SQLite's error.
pub fn create(
    db: &rusqlite::Connection,
    hash: &str,
    role: Role,
    party: Option<&str>,
    label: &str,
    at: Timestamp,
) -> rusqlite::Result<bool> {
    let added = db
        .prepare_cached(
            "INSERT INTO tokens (hash, role, party, label, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (hash) DO NOTHING",
        )?
        .execute(rusqlite::params![
            hash,
            role.as_str(),
            party,
            label,
            int(at.0)
        ])?;
    Ok(added == 1)
}

/// Whether the token `hash` has a row, and if so whether it is revoked.
///
/// # Errors
/// SQLite's error.
pub fn revoked(db: &rusqlite::Connection, hash: &str) -> rusqlite::Result<Option<bool>> {
    db.prepare_cached(REVOKED_AT)?
        .query_row([hash], |row| row.get::<_, Option<i64>>(0))
        .optional()
        .map(|row| row.map(|at| at.is_some()))
}

/// Revokes the token `hash` of `role` at `at` (a config token has no row yet: the revocation
/// creates one); an earlier revocation keeps its time.
///
/// # Errors
/// SQLite's error.
pub fn revoke(
    db: &rusqlite::Connection,
    hash: &str,
    role: Role,
    at: Timestamp,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO tokens (hash, role, party, label, created_at, revoked_at) \
         VALUES (?1, ?2, NULL, 'config', ?3, ?3) \
         ON CONFLICT (hash) DO UPDATE SET \
         revoked_at = COALESCE(tokens.revoked_at, excluded.revoked_at)",
    )?
    .execute(rusqlite::params![hash, role.as_str(), int(at.0)])
    .map(drop)
}

const REVOKED_AT: &str = "SELECT revoked_at FROM tokens WHERE hash = ?1";
const ADMINS: &str = "SELECT hash FROM tokens WHERE role = 'admin' AND revoked_at IS NULL";
const REVOKED: &str = "SELECT hash FROM tokens WHERE revoked_at IS NOT NULL";

/// The working admin tokens: the run-time admin tokens not revoked, and the config's
/// (`config_admins`) not revoked.
fn working(
    admins: Vec<String>,
    revoked: &BTreeSet<String>,
    config_admins: &[String],
) -> BTreeSet<String> {
    let mut working: BTreeSet<String> = admins.into_iter().collect();
    working.extend(
        config_admins
            .iter()
            .filter(|h| !revoked.contains(*h))
            .cloned(),
    );
    working
}

/// The hashes of the admin tokens that work: run-time admin tokens and the config's
/// (`config_admins`), less those revoked; on the writer, inside the state machine's
/// transaction.
///
/// # Errors
/// SQLite's error.
pub fn working_admins(
    db: &rusqlite::Connection,
    config_admins: &[String],
) -> rusqlite::Result<BTreeSet<String>> {
    let column = |sql: &str| -> rusqlite::Result<Vec<String>> {
        db.prepare_cached(sql)?
            .query_map([], |row| row.get(0))?
            .collect()
    };
    let revoked: BTreeSet<String> = column(REVOKED)?.into_iter().collect();
    Ok(working(column(ADMINS)?, &revoked, config_admins))
}

/// [`working_admins`] on a reader, for the API's check before it proposes a revocation.
///
/// # Errors
/// SQLite's error.
pub async fn working_admins_read(
    conn: &mut SqliteConnection,
    config_admins: &[String],
) -> Result<BTreeSet<String>, sqlx::Error> {
    let admins: Vec<String> = sqlx::query_scalar(ADMINS).fetch_all(&mut *conn).await?;
    let revoked: BTreeSet<String> = sqlx::query_scalar(REVOKED)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    Ok(working(admins, &revoked, config_admins))
}

/// The row of token `hash`, if it has one.
///
/// # Errors
/// SQLite's error, or a role this build does not know.
pub async fn lookup(
    conn: &mut SqliteConnection,
    hash: &str,
) -> Result<Option<Stored>, sqlx::Error> {
    let row = sqlx::query("SELECT role, party, revoked_at FROM tokens WHERE hash = ?")
        .bind(hash)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(r) = row else { return Ok(None) };
    let role: String = r.try_get(0)?;
    let role: Role = role
        .parse()
        .map_err(|e: <Role as std::str::FromStr>::Err| sqlx::Error::Decode(e.to_string().into()))?;
    Ok(Some(Stored {
        role,
        party: r.try_get(1)?,
        revoked: r.try_get::<Option<i64>, _>(2)?.is_some(),
    }))
}
