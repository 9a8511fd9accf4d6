//! The `registrations` table (schema v9): a provider's registration of one of the zone's
//! listings (登记), numbered in log order, and the decision on it. The rules are in
//! `catalog::registrations`; the certificates an approval issues have their own table
//! ([`super::certificates`]).

use rusqlite::OptionalExtension as _;
use sqlx::SqliteConnection;
use xchg_protocol::{ContentId, Source, Timestamp};

use super::{int, uint};
use crate::catalog::registrations::{NewRegistration, Registration, RegistrationState};
use crate::sqlite::{undecodable, unencodable};

const SELECT_REGISTRATION: &str = "SELECT id, listing_id, content_id, holder, source, rights, \
    evidence, state, submitted_at, submitted_by, decided_at, decided_by, notes, certificate \
    FROM registrations WHERE id = ?1";

/// The columns of [`SELECT_REGISTRATION`], as either driver reads them.
type RegistrationRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A source or right as stored: its wire name.
fn name_of<T: serde::Serialize>(value: &T) -> Result<String, String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        other => Err(format!("not a name: {other:?}")),
    }
}

fn registration_of(row: RegistrationRow) -> Result<Registration, String> {
    let (id, listing, content, holder, source, rights, evidence, state, at, by, decided_at, ..) =
        row.clone();
    let (.., decided_by, notes, certificate) = row;
    let content_id = |s: &str| s.parse::<ContentId>().map_err(|e| format!("{s}: {e}"));
    let source: Source = serde_json::from_value(serde_json::Value::String(source))
        .map_err(|e| format!("source: {e}"))?;
    let evidence: Vec<String> =
        serde_json::from_str(&evidence).map_err(|e| format!("evidence: {e}"))?;
    Ok(Registration {
        id: uint(id),
        listing_id: content_id(&listing)?,
        content_id: content_id(&content)?,
        holder: holder
            .parse()
            .map_err(|e| format!("holder {holder}: {e}"))?,
        source,
        rights: serde_json::from_str(&rights).map_err(|e| format!("rights: {e}"))?,
        evidence_hashes: evidence
            .iter()
            .map(|e| content_id(e))
            .collect::<Result<_, _>>()?,
        state: RegistrationState::parse(&state)
            .ok_or_else(|| format!("unknown registration state {state:?}"))?,
        submitted_at: Timestamp(uint(at)),
        submitted_by: by,
        decided_at: decided_at.map(|t| Timestamp(uint(t))),
        decided_by,
        notes,
        certificate_number: certificate,
    })
}

fn registration_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RegistrationRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
        row.get(10)?,
        row.get(11)?,
        row.get(12)?,
        row.get(13)?,
    ))
}

/// Registration `id`, if there is one, on the writer (the rules).
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub fn registration(db: &rusqlite::Connection, id: u64) -> rusqlite::Result<Option<Registration>> {
    db.prepare_cached(SELECT_REGISTRATION)?
        .query_row([int(id)], registration_row)
        .optional()?
        .map(|row| registration_of(row).map_err(undecodable))
        .transpose()
}

/// [`registration`] on a reader, for the API.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn registration_read(
    conn: &mut SqliteConnection,
    id: u64,
) -> Result<Option<Registration>, sqlx::Error> {
    let row: Option<RegistrationRow> = sqlx::query_as(SELECT_REGISTRATION)
        .bind(int(id))
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| registration_of(r).map_err(|e| sqlx::Error::Decode(e.into())))
        .transpose()
}

/// The number of the registration of listing `listing_id` still pending, if any.
///
/// # Errors
/// SQLite's error.
pub fn pending(db: &rusqlite::Connection, listing_id: &str) -> rusqlite::Result<Option<i64>> {
    db.prepare_cached(
        "SELECT id FROM registrations WHERE listing_id = ?1 AND state = 'pending' LIMIT 1",
    )?
    .query_row([listing_id], |row| row.get(0))
    .optional()
}

/// Records `new` of the listing version `content_id`, pending, submitted at `at` by
/// `submitted_by` (the entry at `raft_index`); returns its number.
///
/// # Errors
/// SQLite's error.
pub fn insert(
    db: &rusqlite::Connection,
    new: &NewRegistration,
    content_id: &str,
    at: Timestamp,
    submitted_by: &str,
    raft_index: u64,
) -> rusqlite::Result<i64> {
    let evidence: Vec<String> = new.evidence.iter().map(ToString::to_string).collect();
    db.prepare_cached(
        "INSERT INTO registrations (listing_id, content_id, holder, source, rights, evidence, \
            state, submitted_at, submitted_by, raft_index) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?9) RETURNING id",
    )?
    .query_row(
        rusqlite::params![
            new.listing_id.to_string(),
            content_id,
            new.holder.as_str(),
            name_of(&new.source).map_err(unencodable)?,
            serde_json::to_string(&new.rights).map_err(unencodable)?,
            serde_json::to_string(&evidence).map_err(unencodable)?,
            int(at.0),
            submitted_by,
            int(raft_index),
        ],
        |row| row.get(0),
    )
}

/// Sets who submitted registration `id` (a broker's act names the broker and the party).
///
/// # Errors
/// SQLite's error.
pub fn set_submitted_by(db: &rusqlite::Connection, id: &str, by: &str) -> rusqlite::Result<()> {
    db.prepare_cached("UPDATE registrations SET submitted_by = ?1 WHERE id = ?2")?
        .execute(rusqlite::params![by, id])
        .map(drop)
}

/// A decision on a pending registration, to record.
pub struct Decision<'a> {
    /// `approved` or `rejected`.
    pub state: RegistrationState,
    /// When.
    pub at: Timestamp,
    /// The deciding actor.
    pub by: &'a str,
    /// Approval notes or the rejection reason.
    pub notes: Option<&'a str>,
    /// The certificate issued, for an approval.
    pub certificate: Option<&'a str>,
}

/// Records decision `d` on registration `id`.
///
/// # Errors
/// SQLite's error.
pub fn decide(db: &rusqlite::Connection, id: u64, d: &Decision<'_>) -> rusqlite::Result<()> {
    db.prepare_cached(
        "UPDATE registrations SET state = ?1, decided_at = ?2, decided_by = ?3, notes = ?4, \
            certificate = ?5 WHERE id = ?6",
    )?
    .execute(rusqlite::params![
        d.state.as_str(),
        int(d.at.0),
        d.by,
        d.notes,
        d.certificate,
        int(id),
    ])
    .map(drop)
}
