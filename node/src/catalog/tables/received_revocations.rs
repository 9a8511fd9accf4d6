//! The `received_revocations` table (schema v12): certificate revocations received from other
//! zones on their exchange's certificate topic, one row per message: `applied` to the valid
//! certificate held with the id they name, `waiting` for that certificate, or `refused` as a
//! bounded record of why. The rules are in `catalog::certified`; the recognition policy counts
//! no certificate with an `applied` revocation (`received_certificates`).

use sqlx::{Row, SqliteConnection};
use xchg_protocol::{ContentId, Timestamp};

use super::{int, uint};

/// One received revocation to record.
pub struct Received<'a> {
    /// SHA-256 of the bytes as received.
    pub message_id: &'a ContentId,
    /// The id the revocation carries, if it decoded.
    pub revocation_id: Option<&'a ContentId>,
    /// The exchange of the topic it arrived on.
    pub exchange: &'a str,
    /// What a valid revocation states; `None` for a refused one.
    pub valid: Option<ValidFields<'a>>,
    /// `applied`, `waiting` or `refused`.
    pub decision: &'a str,
    /// The refusal's kind and reason; `None` unless refused.
    pub refused: Option<(&'a str, &'a str)>,
    /// The gossip peer that delivered it.
    pub received_from: &'a str,
    /// When the proposing node received it.
    pub at: Timestamp,
    /// The Raft index of the command.
    pub raft_index: u64,
}

/// The columns of a revocation that passed the offline checks.
pub struct ValidFields<'a> {
    /// The certificate it names.
    pub certificate_id: &'a ContentId,
    /// The revoking zone.
    pub zone: &'a str,
    /// The number it names.
    pub number: &'a str,
    /// When the zone revoked the certificate.
    pub revoked_at: Timestamp,
    /// The signed reason.
    pub reason: &'a str,
    /// The signing node key, base64.
    pub signer: &'a str,
    /// The signed bytes.
    pub signed: &'a [u8],
}

/// Records `r` unless a message with the same id is recorded, except that one that passed the
/// offline checks replaces a refusal of the same bytes (a peer that delivered them on the wrong
/// topic first must not keep them out); whether it was recorded.
///
/// # Errors
/// SQLite's error.
pub fn record(db: &rusqlite::Connection, r: &Received<'_>) -> rusqlite::Result<bool> {
    let v = r.valid.as_ref();
    db.prepare_cached(
        "INSERT INTO received_revocations (message_id, revocation_id, certificate_id, \
            exchange, zone, number, revoked_at, revocation_reason, signer, decision, kind, \
            reason, signed, received_from, at, raft_index) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
         ON CONFLICT (message_id) DO UPDATE SET revocation_id = excluded.revocation_id, \
            certificate_id = excluded.certificate_id, exchange = excluded.exchange, \
            zone = excluded.zone, number = excluded.number, revoked_at = excluded.revoked_at, \
            revocation_reason = excluded.revocation_reason, signer = excluded.signer, \
            decision = excluded.decision, kind = excluded.kind, reason = excluded.reason, \
            signed = excluded.signed, received_from = excluded.received_from, at = excluded.at, \
            raft_index = excluded.raft_index \
         WHERE received_revocations.decision = 'refused' AND excluded.decision != 'refused'",
    )?
    .execute(rusqlite::params![
        r.message_id.to_string(),
        r.revocation_id.map(ToString::to_string),
        v.map(|v| v.certificate_id.to_string()),
        r.exchange,
        v.map(|v| v.zone),
        v.map(|v| v.number),
        v.map(|v| int(v.revoked_at.0)),
        v.map(|v| v.reason),
        v.map(|v| v.signer),
        r.decision,
        r.refused.map(|(kind, _)| kind),
        r.refused.map(|(_, reason)| reason),
        v.map(|v| v.signed),
        r.received_from,
        int(r.at.0),
        int(r.raft_index),
    ])
    .map(|n| n == 1)
}

/// How many received revocations of an exchange are kept, by decision: refused ones per
/// exchange; waiting ones per revoking zone, so that a zone flooding revocations of
/// certificates no one holds pushes out only its own, and per exchange as a backstop (only an
/// exchange root, which may sign for any of its zones, delegates enough zones to reach it).
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Refused records per exchange.
    pub refused_per_exchange: i64,
    /// Waiting records per revoking zone.
    pub waiting_per_zone: i64,
    /// Waiting records per exchange.
    pub waiting_per_exchange: i64,
}

/// Deletes refused records from before `expired_before` and the oldest of `exchange`'s
/// beyond the cap, the oldest waiting records of `zone` (the zone of the record just made, if
/// it was valid) beyond its cap, and the oldest of `exchange`'s beyond the exchange's.
///
/// # Errors
/// SQLite's error.
pub fn bound(
    db: &rusqlite::Connection,
    expired_before: Timestamp,
    exchange: &str,
    zone: Option<&str>,
    caps: Caps,
) -> rusqlite::Result<()> {
    db.prepare_cached("DELETE FROM received_revocations WHERE decision = 'refused' AND at < ?1")?
        .execute([int(expired_before.0)])?;
    if let Some(zone) = zone {
        db.prepare_cached(
            "DELETE FROM received_revocations WHERE decision = 'waiting' AND exchange = ?1 \
                AND zone = ?2 AND rowid < (SELECT rowid FROM received_revocations \
                    WHERE decision = 'waiting' AND exchange = ?1 AND zone = ?2 \
                    ORDER BY rowid DESC LIMIT 1 OFFSET ?3)",
        )?
        .execute(rusqlite::params![exchange, zone, caps.waiting_per_zone - 1])?;
    }
    for (decision, cap) in [
        ("refused", caps.refused_per_exchange),
        ("waiting", caps.waiting_per_exchange),
    ] {
        db.prepare_cached(
            "DELETE FROM received_revocations WHERE decision = ?1 AND exchange = ?2 \
                AND rowid < (SELECT rowid FROM received_revocations \
                    WHERE decision = ?1 AND exchange = ?2 ORDER BY rowid DESC \
                    LIMIT 1 OFFSET ?3)",
        )?
        .execute(rusqlite::params![decision, exchange, cap - 1])?;
    }
    Ok(())
}

/// A waiting revocation: its message id, the zone and number it names, and its time.
pub struct Waiting {
    /// SHA-256 of the bytes as received.
    pub message_id: String,
    /// The revoking zone.
    pub zone: String,
    /// The number it names.
    pub number: String,
    /// When the zone revoked the certificate.
    pub revoked_at: Timestamp,
}

/// The revocations waiting for certificate `certificate_id`, in arrival order.
///
/// # Errors
/// SQLite's error.
pub fn waiting_for(
    db: &rusqlite::Connection,
    certificate_id: &ContentId,
) -> rusqlite::Result<Vec<Waiting>> {
    db.prepare_cached(
        "SELECT message_id, zone, number, revoked_at FROM received_revocations \
         WHERE certificate_id = ?1 AND decision = 'waiting' ORDER BY rowid",
    )?
    .query_map([certificate_id.to_string()], |r| {
        Ok(Waiting {
            message_id: r.get(0)?,
            zone: r.get(1)?,
            number: r.get(2)?,
            revoked_at: Timestamp(uint(r.get(3)?)),
        })
    })?
    .collect()
}

/// Decides waiting revocation `message_id`: `applied`, or `refused` with `refused`'s kind and
/// reason.
///
/// # Errors
/// SQLite's error.
pub fn decide(
    db: &rusqlite::Connection,
    message_id: &str,
    refused: Option<(&str, &str)>,
) -> rusqlite::Result<()> {
    let decision = if refused.is_some() {
        "refused"
    } else {
        "applied"
    };
    db.prepare_cached(
        "UPDATE received_revocations SET decision = ?1, kind = ?2, reason = ?3 \
         WHERE message_id = ?4 AND decision = 'waiting'",
    )?
    .execute(rusqlite::params![
        decision,
        refused.map(|(kind, _)| kind),
        refused.map(|(_, reason)| reason),
        message_id
    ])
    .map(drop)
}

/// A received revocation as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RevocationView {
    /// SHA-256 of the bytes as received.
    pub message_id: String,
    /// The id the revocation carries, if it decoded.
    pub revocation_id: Option<String>,
    /// The certificate it names (valid ones).
    pub certificate_id: Option<String>,
    /// The exchange of the topic it arrived on.
    pub exchange: String,
    /// The revoking zone (valid ones).
    pub zone: Option<String>,
    /// The certificate number it names (valid ones).
    pub number: Option<String>,
    /// When the zone revoked the certificate (valid ones).
    pub revoked_at: Option<Timestamp>,
    /// The revoking zone's reason (valid ones).
    pub revocation_reason: Option<String>,
    /// `applied`, `waiting` (for the certificate it names) or `refused`.
    pub decision: String,
    /// The kind of the failed check (refused ones, PROTOCOL.md 6.3).
    pub kind: Option<String>,
    /// Why it was refused.
    pub reason: Option<String>,
    /// The gossip peer that delivered it.
    pub received_from: String,
    /// When the zone received it.
    pub at: Timestamp,
}

/// The newest received revocations, at most `limit`, those of `decision` only when given.
///
/// # Errors
/// SQLite's error.
pub async fn list(
    conn: &mut SqliteConnection,
    decision: Option<&str>,
    limit: i64,
) -> Result<Vec<RevocationView>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT message_id, revocation_id, certificate_id, exchange, zone, number, revoked_at, \
            revocation_reason, decision, kind, reason, received_from, at \
         FROM received_revocations WHERE (?1 IS NULL OR decision = ?1) \
         ORDER BY rowid DESC LIMIT ?2",
    )
    .bind(decision)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(RevocationView {
                message_id: r.try_get(0)?,
                revocation_id: r.try_get(1)?,
                certificate_id: r.try_get(2)?,
                exchange: r.try_get(3)?,
                zone: r.try_get(4)?,
                number: r.try_get(5)?,
                revoked_at: r.try_get::<Option<i64>, _>(6)?.map(|t| Timestamp(uint(t))),
                revocation_reason: r.try_get(7)?,
                decision: r.try_get(8)?,
                kind: r.try_get(9)?,
                reason: r.try_get(10)?,
                received_from: r.try_get(11)?,
                at: Timestamp(uint(r.try_get(12)?)),
            })
        })
        .collect()
}
