//! The `valuations` table (schema v16): each listing's valuation reports, version after
//! version. The rules are in `catalog::valuation` and `catalog::apply`.

use sqlx::SqliteConnection;

use super::{int, uint};
use crate::catalog::valuation::ValuationReport;
use crate::sqlite::undecodable;

/// Records `report` as the next version for its listing; returns that version.
///
/// # Errors
/// SQLite's error, or a report that does not encode.
pub fn insert(
    db: &rusqlite::Connection,
    report: &ValuationReport,
    raft_index: u64,
) -> rusqlite::Result<u32> {
    let listing = report.listing_id.to_string();
    let version: i64 = db
        .prepare_cached(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM valuations WHERE listing_id = ?1",
        )?
        .query_row([&listing], |row| row.get(0))?;
    let version = u32::try_from(version).map_err(undecodable)?;
    let stored = ValuationReport {
        version,
        ..report.clone()
    };
    let json = serde_json::to_string(&stored).map_err(crate::sqlite::unencodable)?;
    db.prepare_cached(
        "INSERT INTO valuations (listing_id, version, valued_at, valued_by, value, report, \
            raft_index) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(rusqlite::params![
        listing,
        version,
        int(report.valued_at.0),
        report.valued_by,
        report.value,
        json,
        int(raft_index),
    ])?;
    Ok(version)
}

/// Report `version` of listing `id` (its latest when `None`), if any.
///
/// # Errors
/// SQLite's error, or a stored report that does not decode.
pub async fn get(
    conn: &mut SqliteConnection,
    id: &str,
    version: Option<u32>,
) -> Result<Option<ValuationReport>, sqlx::Error> {
    let row: Option<(String,)> =
        match version {
            Some(v) => {
                sqlx::query_as("SELECT report FROM valuations WHERE listing_id = ? AND version = ?")
                    .bind(id)
                    .bind(i64::from(v))
                    .fetch_optional(&mut *conn)
                    .await?
            }
            None => sqlx::query_as(
                "SELECT report FROM valuations WHERE listing_id = ? ORDER BY version DESC LIMIT 1",
            )
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?,
        };
    row.map(|(json,)| serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(e.into())))
        .transpose()
}

/// One line of a listing's valuation history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// The report's version.
    pub version: u32,
    /// When it was made.
    pub valued_at: xchg_protocol::Timestamp,
    /// Who made it.
    pub valued_by: String,
    /// Its final value.
    pub value: String,
}

/// Every report of listing `id`, newest first (at most `limit`).
///
/// # Errors
/// SQLite's error.
pub async fn history(
    conn: &mut SqliteConnection,
    id: &str,
    limit: u32,
) -> Result<Vec<Summary>, sqlx::Error> {
    let rows: Vec<(i64, i64, String, String)> = sqlx::query_as(
        "SELECT version, valued_at, valued_by, value FROM valuations WHERE listing_id = ? \
         ORDER BY version DESC LIMIT ?",
    )
    .bind(id)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(version, at, by, value)| Summary {
            version: u32::try_from(version).unwrap_or(u32::MAX),
            valued_at: xchg_protocol::Timestamp(uint(at)),
            valued_by: by,
            value,
        })
        .collect())
}
