//! The `recognitions` table: this zone's decision on every announcement it received from
//! another zone or exchange (recognised, rejected, stale, delisted, revoked), in order.
//! Refusal records (`rejected`) are kept within bounds by the rules in `catalog::federation`.

use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use xchg_protocol::{AnnouncementKind, ContentId, PublicKey, Timestamp};

use super::{int, kind_name, uint};
use crate::catalog::query::{
    DEFAULT_PAGE, MAX_PAGE, RecognitionFilter, RecognitionPage, RecognitionView,
};

/// One decision to record.
pub struct Decision<'a> {
    /// The announcement's body id.
    pub content_id: &'a ContentId,
    /// Its kind.
    pub kind: AnnouncementKind,
    /// The listing it concerns.
    pub listing_id: Option<&'a ContentId>,
    /// That listing's version.
    pub version: Option<u32>,
    /// Its origin zone (or the revoking exchange).
    pub origin: &'a str,
    /// The exchange whose authority it carries.
    pub exchange: &'a str,
    /// The agreement it was judged under.
    pub agreement: &'a str,
    /// recognised, rejected, stale, delisted or revoked.
    pub decision: &'a str,
    /// Why.
    pub reason: Option<&'a str>,
    /// The signing key, base64.
    pub signer: &'a str,
    /// The signer's delegation (JSON), if it had one.
    pub delegation: Option<&'a str>,
    /// The gossip peer that delivered it.
    pub received_from: &'a str,
    /// When the proposing node received it.
    pub at: Timestamp,
    /// The Raft index of the command.
    pub raft_index: u64,
}

/// Appends `d`.
///
/// # Errors
/// SQLite's error.
pub fn record(db: &rusqlite::Connection, d: &Decision<'_>) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO recognitions (content_id, kind, listing_id, version, origin, exchange, \
            agreement, decision, reason, signer, delegation, received_from, at, raft_index) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(rusqlite::params![
        d.content_id.to_string(),
        kind_name(d.kind),
        d.listing_id.map(ToString::to_string),
        d.version.map(i64::from),
        d.origin,
        d.exchange,
        d.agreement,
        d.decision,
        d.reason,
        d.signer,
        d.delegation,
        d.received_from,
        int(d.at.0),
        int(d.raft_index),
    ])
    .map(drop)
}

/// Deletes refusal records from before `expired_before`, and the oldest of `signer`'s beyond
/// `per_signer` and of `exchange`'s beyond `per_exchange`.
///
/// # Errors
/// SQLite's error.
pub fn bound_refusals(
    db: &rusqlite::Connection,
    expired_before: Timestamp,
    (signer, per_signer): (&str, i64),
    (exchange, per_exchange): (&str, i64),
) -> rusqlite::Result<()> {
    db.prepare_cached("DELETE FROM recognitions WHERE decision = 'rejected' AND at < ?1")?
        .execute([int(expired_before.0)])?;
    // The newest `cap` records stay; everything older than the cap-th newest goes.
    db.prepare_cached(
        "DELETE FROM recognitions WHERE decision = 'rejected' AND signer = ?1 AND seq < \
            (SELECT seq FROM recognitions WHERE decision = 'rejected' AND signer = ?1 \
             ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
    )?
    .execute(rusqlite::params![signer, per_signer - 1])?;
    db.prepare_cached(
        "DELETE FROM recognitions WHERE decision = 'rejected' AND exchange = ?1 AND seq < \
            (SELECT seq FROM recognitions WHERE decision = 'rejected' AND exchange = ?1 \
             ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
    )?
    .execute(rusqlite::params![exchange, per_exchange - 1])?;
    Ok(())
}

/// Deletes the refusal records of `content_id`, so that catch-up fetches and judges its
/// envelope again; how many there were.
///
/// # Errors
/// SQLite's error.
pub fn forget_refusals(
    db: &rusqlite::Connection,
    content_id: &ContentId,
) -> rusqlite::Result<usize> {
    db.prepare_cached("DELETE FROM recognitions WHERE decision = 'rejected' AND content_id = ?1")?
        .execute([content_id.to_string()])
}

/// The signer and exchange of the `revoked` decision on `content_id` whose reason starts with
/// `kind` (`certificate_revoked`: a copy withdrawn for its certificate's revocation,
/// PROTOCOL.md 10.6), if there is one.
///
/// # Errors
/// SQLite's error.
pub fn withdrawn_for(
    db: &rusqlite::Connection,
    content_id: &ContentId,
    kind: &str,
) -> rusqlite::Result<Option<(String, String)>> {
    let rows: Vec<(Option<String>, String, String)> = db
        .prepare_cached(
            "SELECT reason, signer, exchange FROM recognitions \
             WHERE content_id = ?1 AND decision = 'revoked'",
        )?
        .query_map([content_id.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let prefix = format!("{kind}: ");
    Ok(rows
        .into_iter()
        .find(|(reason, _, _)| reason.as_deref().is_some_and(|r| r.starts_with(&prefix)))
        .map(|(_, signer, exchange)| (signer, exchange)))
}

/// Deletes the `revoked` decisions on `content_id`, so that catch-up fetches and judges its
/// envelope again (with [`super::announcements::forget`]); how many there were.
///
/// # Errors
/// SQLite's error.
pub fn forget_revoked(
    db: &rusqlite::Connection,
    content_id: &ContentId,
) -> rusqlite::Result<usize> {
    db.prepare_cached("DELETE FROM recognitions WHERE decision = 'revoked' AND content_id = ?1")?
        .execute([content_id.to_string()])
}

/// Turns the `recognised` decision on `content_id` into `revoked` with `reason` (a copy
/// withdrawn after the fact, PROTOCOL.md 10.6); whether there was one.
///
/// # Errors
/// SQLite's error.
pub fn mark_revoked(
    db: &rusqlite::Connection,
    content_id: &ContentId,
    reason: &str,
) -> rusqlite::Result<bool> {
    db.prepare_cached(
        "UPDATE recognitions SET decision = 'revoked', reason = ?2 \
         WHERE content_id = ?1 AND decision = 'recognised'",
    )?
    .execute([content_id.to_string(), reason.to_owned()])
    .map(|n| n == 1)
}

/// Whether a decision on `content_id` is recorded here, or its envelope is held (an
/// announcement this zone published or accepted).
const DECIDED: &str = "SELECT 1 FROM recognitions WHERE content_id = ?1 \
    UNION ALL SELECT 1 FROM announcements WHERE content_id = ?1 LIMIT 1";

/// Whether a decision on `content_id` is already recorded (see [`DECIDED`]).
///
/// # Errors
/// SQLite's error.
pub fn decided(db: &rusqlite::Connection, content_id: &ContentId) -> rusqlite::Result<bool> {
    db.prepare_cached(DECIDED)?.exists([content_id.to_string()])
}

/// [`decided`] on a reader, for the federation driver.
///
/// # Errors
/// SQLite's error.
pub async fn decided_read(
    conn: &mut SqliteConnection,
    content_id: &ContentId,
) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar(DECIDED)
        .bind(content_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(found.is_some())
}

/// Whether the delisting of listing `id` by `origin`, at `version` or later, is recorded.
///
/// # Errors
/// SQLite's error.
pub fn delisting_recorded(
    db: &rusqlite::Connection,
    id: &ContentId,
    origin: &str,
    version: u32,
) -> rusqlite::Result<bool> {
    db.prepare_cached(
        "SELECT 1 FROM recognitions WHERE listing_id = ?1 AND kind = 'delisting' \
            AND decision = 'delisted' AND origin = ?2 AND version >= ?3 LIMIT 1",
    )?
    .exists(rusqlite::params![
        id.to_string(),
        origin,
        i64::from(version)
    ])
}

/// The recognised copies whose current version is the latest announcement recognised for
/// them and was signed by `signer` (base64) under `exchange`: their listing ids.
///
/// # Errors
/// SQLite's error.
pub fn copies_signed_by(
    db: &rusqlite::Connection,
    signer: &str,
    exchange: &str,
) -> rusqlite::Result<Vec<String>> {
    db.prepare_cached(
        "SELECT r.listing_id FROM recognitions r \
         JOIN listings l ON l.id = r.listing_id AND l.state = 'recognised' \
         WHERE r.decision = 'recognised' AND r.signer = ?1 AND r.exchange = ?2 \
           AND r.seq = (SELECT MAX(seq) FROM recognitions \
                        WHERE listing_id = r.listing_id AND decision = 'recognised')",
    )?
    .query_map([signer, exchange], |row| row.get(0))?
    .collect()
}

const COLUMNS: &str = "SELECT seq, content_id, kind, listing_id, version, origin, \
    exchange, agreement, decision, reason, signer, delegation, received_from, at, raft_index \
    FROM recognitions";

/// A key as the catalog stores it (base64) in its JSON form (lowercase hex, PROTOCOL.md 2.10);
/// anything else is shown as stored.
fn key_hex(stored: &str) -> String {
    PublicKey::from_base64(stored).map_or_else(|_| stored.to_owned(), |k| k.to_string())
}

/// A stored delegation with its keys in their JSON form.
fn delegation_json(stored: &str) -> Option<serde_json::Value> {
    let mut d: serde_json::Value = serde_json::from_str(stored).ok()?;
    for field in ["node_key", "root_key"] {
        if let Some(serde_json::Value::String(k)) = d.get_mut(field) {
            *k = key_hex(k);
        }
    }
    Some(d)
}

fn view(r: &sqlx::sqlite::SqliteRow) -> Result<RecognitionView, sqlx::Error> {
    let delegation: Option<String> = r.try_get(11)?;
    let signer: String = r.try_get(10)?;
    Ok(RecognitionView {
        seq: r.try_get(0)?,
        content_id: r.try_get(1)?,
        kind: r.try_get(2)?,
        listing_id: r.try_get(3)?,
        version: r.try_get(4)?,
        origin: r.try_get(5)?,
        exchange: r.try_get(6)?,
        agreement: r.try_get(7)?,
        decision: r.try_get(8)?,
        reason: r.try_get(9)?,
        signer: key_hex(&signer),
        delegation: delegation.as_deref().and_then(delegation_json),
        received_from: r.try_get(12)?,
        at: Timestamp(uint(r.try_get(13)?)),
        raft_index: r.try_get(14)?,
    })
}

/// One page of decisions, newest first.
///
/// # Errors
/// SQLite's error.
pub async fn page(
    conn: &mut SqliteConnection,
    f: &RecognitionFilter,
) -> Result<RecognitionPage, sqlx::Error> {
    let limit = f.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let mut qb = QueryBuilder::<Sqlite>::new(COLUMNS);
    qb.push(" WHERE 1 = 1");
    if let Some(d) = &f.decision {
        qb.push(" AND decision = ").push_bind(d.as_str());
    }
    if let Some(e) = &f.exchange {
        qb.push(" AND exchange = ").push_bind(e.as_str());
    }
    if let Some(c) = f.cursor {
        qb.push(" AND seq < ").push_bind(c);
    }
    qb.push(" ORDER BY seq DESC LIMIT ")
        .push_bind(i64::from(limit) + 1);
    let rows = qb.build().fetch_all(&mut *conn).await?;
    let more = rows.len() > limit as usize;
    let items = rows
        .iter()
        .take(limit as usize)
        .map(view)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if more {
        items.last().map(|i| i.seq.to_string())
    } else {
        None
    };
    Ok(RecognitionPage { items, next_cursor })
}

/// The decisions on announcements about listing `id`, oldest first.
///
/// # Errors
/// SQLite's error.
pub async fn of_listing(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Vec<RecognitionView>, sqlx::Error> {
    let rows = sqlx::query(&format!("{COLUMNS} WHERE listing_id = ? ORDER BY seq"))
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(view).collect()
}

/// Decisions made in `[from, to)`, counted per origin, exchange and decision and per `bucket`
/// milliseconds from `from`: `((origin, exchange, decision), bucket, count)`.
///
/// # Errors
/// SQLite's error.
pub async fn flows(
    conn: &mut SqliteConnection,
    from: Timestamp,
    to: Timestamp,
    bucket: u64,
) -> Result<Vec<((String, String, String), i64, i64)>, sqlx::Error> {
    let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
        "SELECT origin, exchange, decision, (at - ?) / ?, count(*) FROM recognitions
         WHERE at >= ? AND at < ? GROUP BY 1, 2, 3, 4",
    )
    .bind(int(from.0))
    .bind(int(bucket))
    .bind(int(from.0))
    .bind(int(to.0))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(origin, exchange, decision, bucket, n)| ((origin, exchange, decision), bucket, n))
        .collect())
}

/// The most frequent reasons of the decisions other than `recognised` made in `[from, to)`,
/// at most `limit`, most frequent first: `(origin, decision, reason, count)`.
///
/// # Errors
/// SQLite's error.
pub async fn reasons(
    conn: &mut SqliteConnection,
    from: Timestamp,
    to: Timestamp,
    limit: i64,
) -> Result<Vec<(String, String, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT origin, decision, reason, count(*) FROM recognitions
         WHERE at >= ? AND at < ? AND decision != 'recognised' AND reason IS NOT NULL
         GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 3 LIMIT ?",
    )
    .bind(int(from.0))
    .bind(int(to.0))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}
