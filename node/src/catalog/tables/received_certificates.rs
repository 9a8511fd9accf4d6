//! The `received_certificates` table (schema v10): registration certificates received from
//! other zones on their exchange's certificate topic, one row per message: `valid` ones with
//! their bytes, `refused` ones as a bounded record of why. The rules are in
//! `catalog::certified`; the recognition policy asks [`certified_by`] whether a listing version
//! carries a valid certificate that its issuing zone has not revoked.

use sqlx::{Row, SqliteConnection};
use xchg_protocol::{ContentId, Timestamp};

use super::{int, uint};

/// One received certificate to record.
pub struct Received<'a> {
    /// SHA-256 of the bytes as received.
    pub message_id: &'a ContentId,
    /// The id the certificate carries, if it decoded.
    pub certificate_id: Option<&'a ContentId>,
    /// The exchange of the topic it arrived on.
    pub exchange: &'a str,
    /// What a valid certificate states; `None` for a refused one.
    pub valid: Option<ValidFields<'a>>,
    /// The refusal's kind and reason; `None` for a valid one.
    pub refused: Option<(&'a str, &'a str)>,
    /// The gossip peer that delivered it.
    pub received_from: &'a str,
    /// When the proposing node received it.
    pub at: Timestamp,
    /// The Raft index of the command.
    pub raft_index: u64,
}

/// The columns of a valid certificate.
pub struct ValidFields<'a> {
    /// The issuing zone.
    pub zone: &'a str,
    /// Its number.
    pub number: &'a str,
    /// The listing it certifies.
    pub listing_id: &'a ContentId,
    /// The listing version it certifies.
    pub content_id: &'a ContentId,
    /// The signing node key, base64.
    pub signer: &'a str,
    /// Its issue time.
    pub issued_at: Timestamp,
    /// The signed bytes.
    pub signed: &'a [u8],
}

/// Records `r` unless a message with the same id is recorded, except that a valid one replaces
/// a refusal of the same bytes (a peer that delivered them on the wrong topic first must not
/// keep them out); whether it was recorded.
///
/// # Errors
/// SQLite's error.
pub fn record(db: &rusqlite::Connection, r: &Received<'_>) -> rusqlite::Result<bool> {
    let v = r.valid.as_ref();
    let decision = if v.is_some() { "valid" } else { "refused" };
    db.prepare_cached(
        "INSERT INTO received_certificates (message_id, certificate_id, exchange, \
            zone, number, listing_id, content_id, signer, issued_at, decision, kind, reason, \
            signed, received_from, at, raft_index) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
         ON CONFLICT (message_id) DO UPDATE SET certificate_id = excluded.certificate_id, \
            exchange = excluded.exchange, zone = excluded.zone, number = excluded.number, \
            listing_id = excluded.listing_id, content_id = excluded.content_id, \
            signer = excluded.signer, issued_at = excluded.issued_at, \
            decision = excluded.decision, kind = NULL, reason = NULL, signed = excluded.signed, \
            received_from = excluded.received_from, at = excluded.at, \
            raft_index = excluded.raft_index \
         WHERE received_certificates.decision = 'refused' AND excluded.decision = 'valid'",
    )?
    .execute(rusqlite::params![
        r.message_id.to_string(),
        r.certificate_id.map(ToString::to_string),
        r.exchange,
        v.map(|v| v.zone),
        v.map(|v| v.number),
        v.map(|v| v.listing_id.to_string()),
        v.map(|v| v.content_id.to_string()),
        v.map(|v| v.signer),
        v.map(|v| int(v.issued_at.0)),
        decision,
        r.refused.map(|(kind, _)| kind),
        r.refused.map(|(_, reason)| reason),
        v.map(|v| v.signed),
        r.received_from,
        int(r.at.0),
        int(r.raft_index),
    ])
    .map(|n| n == 1)
}

/// Deletes refused records from before `expired_before`, and the oldest of `exchange`'s
/// beyond `per_exchange`.
///
/// # Errors
/// SQLite's error.
pub fn bound_refused(
    db: &rusqlite::Connection,
    expired_before: Timestamp,
    exchange: &str,
    per_exchange: i64,
) -> rusqlite::Result<()> {
    db.prepare_cached("DELETE FROM received_certificates WHERE decision = 'refused' AND at < ?1")?
        .execute([int(expired_before.0)])?;
    db.prepare_cached(
        "DELETE FROM received_certificates WHERE decision = 'refused' AND exchange = ?1 \
            AND rowid < (SELECT rowid FROM received_certificates \
                WHERE decision = 'refused' AND exchange = ?1 ORDER BY rowid DESC \
                LIMIT 1 OFFSET ?2)",
    )?
    .execute(rusqlite::params![exchange, per_exchange - 1])?;
    Ok(())
}

/// The valid certificates this zone holds for version `?2` of listing `?1`, signed by a key
/// its exchange had not revoked by the certificate's issue time (as this zone recorded
/// revocations, PROTOCOL.md 10.3 step 9), and not revoked by their issuing zone (10.6).
macro_rules! counting_certificates {
    () => {
        "FROM received_certificates c \
         WHERE c.listing_id = ?1 AND c.content_id = ?2 AND c.decision = 'valid' \
           AND NOT EXISTS (SELECT 1 FROM revocations r \
               WHERE r.exchange = c.exchange AND r.key = c.signer AND r.at <= c.issued_at) \
           AND NOT EXISTS (SELECT 1 FROM received_revocations v \
               WHERE v.certificate_id = c.certificate_id AND v.decision = 'applied')"
    };
}

/// The issuing zones of the certificates that count for a listing version.
const CERTIFIED_BY: &str = concat!(
    "SELECT DISTINCT c.zone ",
    counting_certificates!(),
    " ORDER BY 1 LIMIT 16"
);

/// Whether zone `?3` issued a certificate that counts for a listing version.
const CERTIFIED_BY_ZONE: &str = concat!(
    "SELECT 1 ",
    counting_certificates!(),
    " AND c.zone = ?3 LIMIT 1"
);

/// Whether this zone holds a certificate that counts for version `content_id` of listing
/// `listing_id`, issued by `zone`: for the state machine, which decides at its point of the
/// log what the leader judged earlier.
///
/// # Errors
/// SQLite's error.
pub fn certified_by_zone(
    db: &rusqlite::Connection,
    listing_id: &ContentId,
    content_id: &ContentId,
    zone: &str,
) -> rusqlite::Result<bool> {
    db.prepare_cached(CERTIFIED_BY_ZONE)?
        .exists(rusqlite::params![
            listing_id.to_string(),
            content_id.to_string(),
            zone
        ])
}

/// [`CERTIFIED_BY`] on a reader, for the federation driver.
///
/// # Errors
/// SQLite's error.
pub async fn certified_by(
    conn: &mut SqliteConnection,
    listing_id: &ContentId,
    content_id: &ContentId,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(CERTIFIED_BY)
        .bind(listing_id.to_string())
        .bind(content_id.to_string())
        .fetch_all(&mut *conn)
        .await
}

/// The signed bytes of a valid certificate this zone holds with id `certificate_id`, if any
/// (every valid one with that id has the same body).
///
/// # Errors
/// SQLite's error.
pub fn held(
    db: &rusqlite::Connection,
    certificate_id: &ContentId,
) -> rusqlite::Result<Option<Vec<u8>>> {
    use rusqlite::OptionalExtension as _;
    db.prepare_cached(
        "SELECT signed FROM received_certificates \
         WHERE certificate_id = ?1 AND decision = 'valid' ORDER BY rowid LIMIT 1",
    )?
    .query_row([certificate_id.to_string()], |r| r.get(0))
    .optional()
}

/// A received certificate as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ReceivedView {
    /// SHA-256 of the bytes as received.
    pub message_id: String,
    /// The id the certificate carries, if it decoded.
    pub certificate_id: Option<String>,
    /// The exchange of the topic it arrived on.
    pub exchange: String,
    /// The issuing zone (valid ones).
    pub zone: Option<String>,
    /// Its number (valid ones).
    pub number: Option<String>,
    /// The listing it certifies (valid ones).
    pub listing_id: Option<String>,
    /// The listing version it certifies (valid ones).
    pub content_id: Option<String>,
    /// Its issue time (valid ones).
    pub issued_at: Option<Timestamp>,
    /// `valid` or `refused`.
    pub decision: String,
    /// The kind of the failed check (refused ones, PROTOCOL.md 6.3).
    pub kind: Option<String>,
    /// Why it was refused.
    pub reason: Option<String>,
    /// When its issuing zone revoked it, if this zone applied that zone's revocation
    /// (PROTOCOL.md 10.6): it no longer counts for recognition.
    pub revoked_at: Option<Timestamp>,
    /// The issuing zone's reason for revoking it.
    pub revocation_reason: Option<String>,
    /// The gossip peer that delivered it.
    pub received_from: String,
    /// When the zone received it.
    pub at: Timestamp,
}

/// The newest received certificates, at most `limit`, those of `decision` only when given.
///
/// # Errors
/// SQLite's error.
pub async fn list(
    conn: &mut SqliteConnection,
    decision: Option<&str>,
    limit: i64,
) -> Result<Vec<ReceivedView>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.message_id, c.certificate_id, c.exchange, c.zone, c.number, c.listing_id, \
            c.content_id, c.issued_at, c.decision, c.kind, c.reason, c.received_from, c.at, \
            v.revoked_at, v.revocation_reason \
         FROM received_certificates c \
         LEFT JOIN received_revocations v ON v.rowid = (SELECT rowid FROM received_revocations \
             WHERE c.decision = 'valid' AND certificate_id = c.certificate_id \
               AND decision = 'applied' ORDER BY rowid LIMIT 1) \
         WHERE (?1 IS NULL OR c.decision = ?1) \
         ORDER BY c.rowid DESC LIMIT ?2",
    )
    .bind(decision)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ReceivedView {
                message_id: r.try_get(0)?,
                certificate_id: r.try_get(1)?,
                exchange: r.try_get(2)?,
                zone: r.try_get(3)?,
                number: r.try_get(4)?,
                listing_id: r.try_get(5)?,
                content_id: r.try_get(6)?,
                issued_at: r.try_get::<Option<i64>, _>(7)?.map(|t| Timestamp(uint(t))),
                decision: r.try_get(8)?,
                kind: r.try_get(9)?,
                reason: r.try_get(10)?,
                received_from: r.try_get(11)?,
                at: Timestamp(uint(r.try_get(12)?)),
                revoked_at: r.try_get::<Option<i64>, _>(13)?.map(|t| Timestamp(uint(t))),
                revocation_reason: r.try_get(14)?,
            })
        })
        .collect()
}
