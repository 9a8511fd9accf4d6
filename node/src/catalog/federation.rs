//! The federation side of the state machine: the outbox of this zone's exportable changes, the
//! envelopes it published or accepted, and the decisions on announcements from elsewhere.
//!
//! Like the rest of [`super::apply`], everything is deterministic: it reads only the transaction,
//! the command and the zone's facts.

use sqlx::{Row, SqliteConnection};
use xchg_protocol::canonical::{from_canonical, to_canonical};
use xchg_protocol::{
    AnnouncementKind, ContentId, Delisting, Envelope, Limits, Listing, Revocation, Timestamp,
};

use super::apply::{By, current, record_history, write_listing};
use super::policy;
use super::{
    Applied, CommandResponse, ListingState, Recognition, Refusal, RefusedAnnouncement, ZoneFacts,
};
use crate::sqlite::View;

/// Who recognised copies are recorded as submitted by.
pub const FEDERATION_SUBMITTER: &str = "federation";

/// How long a refusal record (a `rejected` decision) is kept, by the time in the commands:
/// a refusal recorded at `t` is deleted by the first refusal applied after `t` + 30 days.
pub const REFUSAL_RETENTION_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// Most refusal records kept per signing key; the oldest go first.
pub const MAX_REFUSALS_PER_SIGNER: i64 = 1_000;
/// Most refusal records kept per exchange (whatever the number of its keys); the oldest go
/// first. With the per-signer cap, no partner can fill a zone's disk with refusals.
pub const MAX_REFUSALS_PER_EXCHANGE: i64 = 10_000;

/// How long refusal records are kept and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalBounds {
    /// Age, by command time, after which a record goes.
    pub retention_ms: u64,
    /// Records kept per signing key.
    pub per_signer: i64,
    /// Records kept per exchange.
    pub per_exchange: i64,
}

impl RefusalBounds {
    /// The bounds every zone applies.
    pub const DEFAULT: RefusalBounds = RefusalBounds {
        retention_ms: REFUSAL_RETENTION_MS,
        per_signer: MAX_REFUSALS_PER_SIGNER,
        per_exchange: MAX_REFUSALS_PER_EXCHANGE,
    };
}

fn decode_err(e: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(e.to_string().into())
}

#[allow(clippy::too_many_arguments)]
async fn push_outbox(
    conn: &mut SqliteConnection,
    listing_id: &ContentId,
    kind: AnnouncementKind,
    version: u32,
    state: &str,
    reason: Option<&str>,
    body: &[u8],
    at: Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (listing_id, kind, version, state, reason, content_id, body, at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(listing_id.to_string())
    .bind(kind_name(kind))
    .bind(i64::from(version))
    .bind(state)
    .bind(reason)
    .bind(ContentId::of(body).to_string())
    .bind(body)
    .bind(at.0 as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The stored name of an announcement kind.
pub fn kind_name(kind: AnnouncementKind) -> &'static str {
    match kind {
        AnnouncementKind::Listing => "listing",
        AnnouncementKind::Delisting => "delisting",
        AnnouncementKind::Revocation => "revocation",
    }
}

/// The version of the listing's copies outside the zone, if any are live: the last
/// non-withheld outbox entry of the listing is a listing version, not a delisting.
async fn live_export(
    conn: &mut SqliteConnection,
    id: &ContentId,
) -> Result<Option<u32>, sqlx::Error> {
    let last: Option<(String, i64)> = sqlx::query_as(
        "SELECT kind, version FROM outbox WHERE listing_id = ? AND state != 'withheld'
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match last {
        Some((kind, version)) if kind == "listing" => u32::try_from(version).ok(),
        _ => None,
    })
}

/// A reason as a delisting must carry it (PROTOCOL.md 4.4): control characters other than
/// newline and tab become spaces, at most 2000 characters, never blank.
fn delisting_reason(reason: &str) -> String {
    let cleaned: String = reason
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .take(xchg_protocol::announcement::REASON_CHARS)
        .collect();
    if cleaned.trim().is_empty() {
        "withdrawn by its origin".into()
    } else {
        cleaned
    }
}

/// The current row of `id` if it is one of this zone's own listings (copies recognised from
/// elsewhere never go into the outbox).
async fn own_current(
    conn: &mut SqliteConnection,
    zone: &ZoneFacts,
    id: &ContentId,
) -> Result<Option<super::apply::Current>, sqlx::Error> {
    Ok(current(conn, id)
        .await?
        .filter(|c| c.listing.origin == zone.zone))
}

/// After an approval: queues the approved version of one of this zone's own listings for
/// publication, or records that the export firewall withholds it — and, if an earlier version
/// is out there, withdraws it, since the listing no longer may leave.
///
/// # Errors
/// Storage errors.
pub async fn queue_listing(
    conn: &mut SqliteConnection,
    zone: &ZoneFacts,
    id: &ContentId,
    at: Timestamp,
) -> Result<(), sqlx::Error> {
    let Some(cur) = own_current(conn, zone, id).await? else {
        return Ok(());
    };
    let (state, reason) = match policy::export(&cur.listing, &zone.export) {
        Ok(()) => ("pending", None),
        Err(reason) => ("withheld", Some(reason)),
    };
    let live = live_export(conn, id).await?;
    let body = cur.listing.canonical_bytes();
    push_outbox(
        conn,
        id,
        AnnouncementKind::Listing,
        cur.listing.version,
        state,
        reason.as_deref(),
        &body,
        at,
    )
    .await?;
    if let (Some(version), Some(why)) = (live, reason) {
        let why = format!(
            "version {} may not leave its zone: {why}",
            cur.listing.version
        );
        push_delisting(conn, zone, id, version, &why, at).await?;
    }
    Ok(())
}

/// After a delisting, or the rejection of a new version: if a version of the listing is out
/// there, queues its delisting.
///
/// # Errors
/// Storage errors.
pub async fn queue_delisting(
    conn: &mut SqliteConnection,
    zone: &ZoneFacts,
    id: &ContentId,
    reason: &str,
    at: Timestamp,
) -> Result<(), sqlx::Error> {
    if own_current(conn, zone, id).await?.is_none() {
        return Ok(());
    }
    match live_export(conn, id).await? {
        Some(version) => push_delisting(conn, zone, id, version, reason, at).await,
        None => Ok(()),
    }
}

async fn push_delisting(
    conn: &mut SqliteConnection,
    zone: &ZoneFacts,
    id: &ContentId,
    version: u32,
    reason: &str,
    at: Timestamp,
) -> Result<(), sqlx::Error> {
    let delisting = Delisting {
        listing_id: *id,
        version,
        origin: zone.zone.clone(),
        reason: delisting_reason(reason),
        delisted_at: at,
    };
    let body = to_canonical(&delisting).map_err(decode_err)?;
    push_outbox(
        conn,
        id,
        AnnouncementKind::Delisting,
        version,
        "pending",
        None,
        &body,
        at,
    )
    .await
}

async fn insert_announcement(
    conn: &mut SqliteConnection,
    content_id: &ContentId,
    exchange: &str,
    kind: AnnouncementKind,
    listing_id: Option<&ContentId>,
    envelope: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO announcements (content_id, exchange, kind, listing_id, envelope)
         VALUES (?, ?, ?, ?, ?) ON CONFLICT (content_id) DO NOTHING",
    )
    .bind(content_id.to_string())
    .bind(exchange)
    .bind(kind_name(kind))
    .bind(listing_id.map(ToString::to_string))
    .bind(envelope)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn done(
    object: impl ToString,
    version: Option<u32>,
    state: Option<ListingState>,
) -> CommandResponse {
    Ok(Applied {
        object_id: object.to_string(),
        version,
        state,
    })
}

/// Records the signed envelope of outbox entry `seq` and marks the entry published.
///
/// # Errors
/// Storage errors; a mismatched or withheld entry is a refusal.
pub async fn record_published(
    conn: &mut SqliteConnection,
    zone: &ZoneFacts,
    seq: u64,
    envelope: &[u8],
    at: Timestamp,
) -> Result<CommandResponse, sqlx::Error> {
    let row = sqlx::query("SELECT listing_id, state, content_id FROM outbox WHERE seq = ?")
        .bind(seq as i64)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(Err(Refusal::NotFound(format!("no outbox entry {seq}"))));
    };
    let listing_id: String = row.try_get(0)?;
    let state: String = row.try_get(1)?;
    let content_id: String = row.try_get(2)?;
    match state.as_str() {
        "published" => return Ok(done(&content_id, None, None)),
        "withheld" => {
            return Ok(Err(Refusal::IllegalTransition(format!(
                "outbox entry {seq} is withheld by the export firewall"
            ))));
        }
        _ => {}
    }
    let env: Envelope = match from_canonical(envelope, &Limits::default()) {
        Ok(env) => env,
        Err(e) => return Ok(Err(Refusal::Invalid(format!("envelope: {e}")))),
    };
    if ContentId::of(&env.body).to_string() != content_id {
        return Ok(Err(Refusal::Invalid(format!(
            "envelope carries {}, outbox entry {seq} holds {content_id}",
            env.id
        ))));
    }
    sqlx::query("UPDATE outbox SET state = 'published', published_at = ? WHERE seq = ?")
        .bind(at.0 as i64)
        .bind(seq as i64)
        .execute(&mut *conn)
        .await?;
    let listing_id: ContentId = listing_id.parse().map_err(decode_err)?;
    insert_announcement(
        conn,
        &env.id,
        zone.exchange.as_str(),
        env.kind,
        Some(&listing_id),
        envelope,
    )
    .await?;
    Ok(done(&content_id, None, None))
}

/// One row of the recognitions table.
struct Decision<'a> {
    r: &'a Recognition,
    listing_id: Option<ContentId>,
    version: Option<u32>,
    origin: String,
    decision: &'static str,
    reason: Option<String>,
    delegation: Option<String>,
}

async fn record_decision(
    conn: &mut SqliteConnection,
    raft_index: u64,
    d: Decision<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO recognitions (content_id, kind, listing_id, version, origin, exchange,
            agreement, decision, reason, signer, delegation, received_from, at, raft_index)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(d.r.content_id.to_string())
    .bind(kind_name(d.r.kind))
    .bind(d.listing_id.map(|i| i.to_string()))
    .bind(d.version.map(i64::from))
    .bind(d.origin)
    .bind(d.r.exchange.as_str())
    .bind(&d.r.agreement)
    .bind(d.decision)
    .bind(d.reason)
    .bind(d.r.signer.to_base64())
    .bind(d.delegation)
    .bind(&d.r.received_from)
    .bind(d.r.at.0 as i64)
    .bind(raft_index as i64)
    .execute(&mut *conn)
    .await?;
    if d.decision == "rejected" {
        let (signer, exchange) = (d.r.signer.to_base64(), d.r.exchange.as_str());
        bound_refusals(conn, &signer, exchange, d.r.at, &RefusalBounds::DEFAULT).await?;
    }
    Ok(())
}

/// Records a refusal made before recording (no envelope, PROTOCOL.md 7.4), then keeps the
/// refusal records within their bounds.
///
/// # Errors
/// Storage errors.
pub async fn record_refusal(
    conn: &mut SqliteConnection,
    raft_index: u64,
    r: &RefusedAnnouncement,
) -> Result<CommandResponse, sqlx::Error> {
    record_refusal_within(conn, raft_index, r, &RefusalBounds::DEFAULT).await
}

/// [`record_refusal`] within `bounds`.
async fn record_refusal_within(
    conn: &mut SqliteConnection,
    raft_index: u64,
    r: &RefusedAnnouncement,
    bounds: &RefusalBounds,
) -> Result<CommandResponse, sqlx::Error> {
    if decided(&mut *conn, &r.content_id).await? {
        return Ok(done(r.content_id, None, None));
    }
    let clip = |s: &str, n: usize| s.chars().take(n).collect::<String>();
    sqlx::query(
        "INSERT INTO recognitions (content_id, kind, listing_id, version, origin, exchange,
            agreement, decision, reason, signer, delegation, received_from, at, raft_index)
         VALUES (?, ?, ?, ?, ?, ?, ?, 'rejected', ?, ?, NULL, ?, ?, ?)",
    )
    .bind(r.content_id.to_string())
    .bind(kind_name(r.kind))
    .bind(r.listing_id.map(|i| i.to_string()))
    .bind(r.version.map(i64::from))
    .bind(r.origin.as_str())
    .bind(r.exchange.as_str())
    .bind(clip(&r.agreement, 64))
    .bind(clip(&r.reason, super::REFUSAL_REASON_CHARS))
    .bind(r.signer.to_base64())
    .bind(clip(&r.received_from, super::PEER_CHARS))
    .bind(r.at.0 as i64)
    .bind(raft_index as i64)
    .execute(&mut *conn)
    .await?;
    bound_refusals(
        conn,
        &r.signer.to_base64(),
        r.exchange.as_str(),
        r.at,
        bounds,
    )
    .await?;
    Ok(done(r.content_id, r.version, None))
}

/// Deletes refusal records older than the retention before `at`, and the oldest of `signer`'s
/// and of `exchange`'s beyond their caps. Decided by the command's time and the replica alone,
/// so every member deletes the same rows.
async fn bound_refusals(
    conn: &mut SqliteConnection,
    signer: &str,
    exchange: &str,
    at: Timestamp,
    bounds: &RefusalBounds,
) -> Result<(), sqlx::Error> {
    let expired = at.0.saturating_sub(bounds.retention_ms);
    sqlx::query("DELETE FROM recognitions WHERE decision = 'rejected' AND at < ?")
        .bind(i64::try_from(expired).unwrap_or(i64::MAX))
        .execute(&mut *conn)
        .await?;
    for (column, value, cap) in [
        ("signer", signer, bounds.per_signer),
        ("exchange", exchange, bounds.per_exchange),
    ] {
        // The newest `cap` records stay; everything older than the cap-th newest goes.
        sqlx::query(&format!(
            "DELETE FROM recognitions WHERE decision = 'rejected' AND {column} = ?1 AND seq <
                (SELECT seq FROM recognitions WHERE decision = 'rejected' AND {column} = ?1
                 ORDER BY seq DESC LIMIT 1 OFFSET ?2)"
        ))
        .bind(value)
        .bind(cap - 1)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Whether a decision on `content_id` is already recorded.
///
/// # Errors
/// Storage errors.
pub async fn decided<'e>(
    exec: impl sqlx::SqliteExecutor<'e>,
    content_id: &ContentId,
) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM recognitions WHERE content_id = ?1
         UNION ALL SELECT 1 FROM announcements WHERE content_id = ?1 LIMIT 1",
    )
    .bind(content_id.to_string())
    .fetch_optional(exec)
    .await?;
    Ok(found.is_some())
}

/// The history's name for the node that recorded a decision for the zone.
fn node_actor(r: &Recognition) -> String {
    format!("node:{}", r.node)
}

/// Applies the decision on an announcement from another zone or exchange.
///
/// # Errors
/// Storage errors; an envelope that does not match the command is a refusal.
pub async fn recognize(
    conn: &mut SqliteConnection,
    view: &mut View,
    zone: &ZoneFacts,
    raft_index: u64,
    r: &Recognition,
) -> Result<CommandResponse, sqlx::Error> {
    let limits = Limits::default();
    let env: Envelope = match from_canonical(&r.envelope, &limits) {
        Ok(env) => env,
        Err(e) => return Ok(Err(Refusal::Invalid(format!("envelope: {e}")))),
    };
    if env.id != r.content_id || env.kind != r.kind {
        return Ok(Err(Refusal::Invalid(
            "the envelope does not match the command's id and kind".into(),
        )));
    }
    if decided(&mut *conn, &env.id).await? {
        return Ok(done(env.id, None, None));
    }
    let delegation = env.delegation.as_ref().map(|d| {
        serde_json::json!({
            "exchange": d.delegation.exchange.as_str(),
            "zone": d.delegation.zone.as_str(),
            "node_key": d.delegation.node_key.to_base64(),
            "root_key": d.root_key.to_base64(),
            "not_before": d.delegation.not_before,
            "not_after": d.delegation.not_after,
        })
        .to_string()
    });
    let invalid = |e: xchg_protocol::DecodeError| Ok(Err(Refusal::Invalid(format!("body: {e}"))));
    match env.kind {
        AnnouncementKind::Listing => {
            let listing: Listing = match from_canonical(&env.body, &limits) {
                Ok(l) => l,
                Err(e) => return invalid(e),
            };
            recognize_listing(conn, view, zone, raft_index, r, listing, delegation).await
        }
        AnnouncementKind::Delisting => {
            let d: Delisting = match from_canonical(&env.body, &limits) {
                Ok(d) => d,
                Err(e) => return invalid(e),
            };
            recognize_delisting(conn, raft_index, r, d, delegation).await
        }
        AnnouncementKind::Revocation => {
            let rev: Revocation = match from_canonical(&env.body, &limits) {
                Ok(rev) => rev,
                Err(e) => return invalid(e),
            };
            sqlx::query(
                "INSERT INTO revocations (exchange, key, content_id, reason, at)
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(rev.exchange.as_str())
            .bind(rev.key.to_base64())
            .bind(env.id.to_string())
            .bind(&rev.reason)
            .bind(rev.revoked_at.0 as i64)
            .execute(&mut *conn)
            .await?;
            insert_announcement(
                conn,
                &env.id,
                r.exchange.as_str(),
                env.kind,
                None,
                &r.envelope,
            )
            .await?;
            record_decision(
                conn,
                raft_index,
                Decision {
                    r,
                    listing_id: None,
                    version: None,
                    origin: rev.exchange.to_string(),
                    decision: "revoked",
                    reason: Some(rev.reason.clone()),
                    delegation,
                },
            )
            .await?;
            revoke_copies(conn, raft_index, r, &env.id, &rev).await?;
            Ok(done(hex::encode(rev.key.as_bytes()), None, None))
        }
    }
}

async fn recognize_listing(
    conn: &mut SqliteConnection,
    view: &mut View,
    zone: &ZoneFacts,
    raft_index: u64,
    r: &Recognition,
    listing: Listing,
    delegation: Option<String>,
) -> Result<CommandResponse, sqlx::Error> {
    let id = listing.id();
    let cur = current(conn, &id).await?;
    let (decision, reason): (&'static str, Option<String>) = if let Some(reason) = &r.refusal {
        ("rejected", Some(reason.clone()))
    } else if listing.origin == zone.zone {
        ("rejected", Some("announces a listing of this zone".into()))
    } else {
        match &cur {
            // Version 1's listing id is its own content id: it proves whose listing it is, and
            // replaces a copy that another zone announced under that id.
            Some(c) if c.listing.origin != listing.origin && listing.listing_id.is_none() => (
                "recognised",
                Some(format!(
                    "replaces a copy that {} announced under this listing id",
                    c.listing.origin
                )),
            ),
            Some(c) if c.listing.origin != listing.origin => (
                "rejected",
                Some(format!(
                    "listing {id} belongs to {}, not to {}",
                    c.listing.origin, listing.origin
                )),
            ),
            Some(c) if c.state == ListingState::Delisted => {
                ("stale", Some("already delisted by its origin".into()))
            }
            Some(c) if c.listing.version >= listing.version => (
                "stale",
                Some(format!("version {} is already held", c.listing.version)),
            ),
            _ => ("recognised", None),
        }
    };
    let mut response = done(id, Some(listing.version), None);
    if decision == "recognised" {
        let delisted_before = delisting_recorded(conn, &id, &listing).await?;
        let state = if delisted_before {
            ListingState::Delisted
        } else {
            ListingState::Recognised
        };
        let node = node_actor(r);
        let by = By {
            id: &node,
            role: "system",
        };
        write_listing(conn, view, &listing, state, FEDERATION_SUBMITTER).await?;
        record_history(
            conn,
            &id.to_string(),
            raft_index,
            r.at,
            by,
            "recognise",
            cur.as_ref().map(|c| c.state),
            state,
            listing.version,
            Some(serde_json::json!({ "agreement": r.agreement }).to_string()),
        )
        .await?;
        insert_announcement(
            conn,
            &r.content_id,
            r.exchange.as_str(),
            AnnouncementKind::Listing,
            Some(&id),
            &r.envelope,
        )
        .await?;
        response = done(id, Some(listing.version), Some(state));
    }
    record_decision(
        conn,
        raft_index,
        Decision {
            r,
            listing_id: Some(id),
            version: Some(listing.version),
            origin: listing.origin.to_string(),
            decision,
            reason,
            delegation,
        },
    )
    .await?;
    Ok(response)
}

/// After a revocation of `rev.key` by `rev.exchange`: every recognised copy whose current
/// version this zone recognised from an announcement that key signed under that exchange's
/// delegation becomes `revoked`, with the revocation in its history (PROTOCOL.md 9: a
/// revocation applies whatever the date of what the key signed). Copies of versions signed by
/// other keys stay as they are.
async fn revoke_copies(
    conn: &mut SqliteConnection,
    raft_index: u64,
    r: &Recognition,
    revocation: &ContentId,
    rev: &Revocation,
) -> Result<(), sqlx::Error> {
    // The copies whose current version is the latest announcement recognised for them.
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT r.listing_id FROM recognitions r
         JOIN listings l ON l.id = r.listing_id AND l.state = 'recognised'
         WHERE r.decision = 'recognised' AND r.signer = ?1 AND r.exchange = ?2
           AND r.seq = (SELECT MAX(seq) FROM recognitions
                        WHERE listing_id = r.listing_id AND decision = 'recognised')",
    )
    .bind(rev.key.to_base64())
    .bind(rev.exchange.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let detail = serde_json::json!({
        "revocation": revocation.to_string(),
        "exchange": rev.exchange.as_str(),
        "key": hex::encode(rev.key.as_bytes()),
        "reason": rev.reason,
    })
    .to_string();
    for (listing_id,) in rows {
        let Ok(id) = listing_id.parse::<ContentId>() else {
            continue;
        };
        let Some(cur) = current(conn, &id).await? else {
            continue;
        };
        sqlx::query("UPDATE listings SET state = ? WHERE id = ?")
            .bind(ListingState::Revoked.as_str())
            .bind(&listing_id)
            .execute(&mut *conn)
            .await?;
        record_history(
            conn,
            &listing_id,
            raft_index,
            r.at,
            By {
                id: &node_actor(r),
                role: "system",
            },
            "revoke",
            Some(cur.state),
            ListingState::Revoked,
            cur.listing.version,
            Some(detail.clone()),
        )
        .await?;
    }
    Ok(())
}

/// Whether the origin's delisting of `listing` (at this version or later) arrived before it.
async fn delisting_recorded(
    conn: &mut SqliteConnection,
    id: &ContentId,
    listing: &Listing,
) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM recognitions WHERE listing_id = ? AND kind = 'delisting'
            AND decision = 'delisted' AND origin = ? AND version >= ? LIMIT 1",
    )
    .bind(id.to_string())
    .bind(listing.origin.as_str())
    .bind(i64::from(listing.version))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found.is_some())
}

async fn recognize_delisting(
    conn: &mut SqliteConnection,
    raft_index: u64,
    r: &Recognition,
    d: Delisting,
    delegation: Option<String>,
) -> Result<CommandResponse, sqlx::Error> {
    let cur = current(conn, &d.listing_id).await?;
    let (decision, reason, state) = match &cur {
        Some(c) if c.listing.origin != d.origin => (
            "rejected",
            Some(format!(
                "listing {} belongs to {}, not to {}",
                d.listing_id, c.listing.origin, d.origin
            )),
            None,
        ),
        // A revoked copy is still the origin's listing: its delisting is final all the same.
        Some(c) if matches!(c.state, ListingState::Recognised | ListingState::Revoked) => {
            sqlx::query("UPDATE listings SET state = ? WHERE id = ?")
                .bind(ListingState::Delisted.as_str())
                .bind(d.listing_id.to_string())
                .execute(&mut *conn)
                .await?;
            record_history(
                conn,
                &d.listing_id.to_string(),
                raft_index,
                r.at,
                By {
                    id: &node_actor(r),
                    role: "system",
                },
                "delist",
                Some(c.state),
                ListingState::Delisted,
                c.listing.version,
                Some(serde_json::json!({ "reason": d.reason }).to_string()),
            )
            .await?;
            (
                "delisted",
                Some(d.reason.clone()),
                Some(ListingState::Delisted),
            )
        }
        Some(c) => (
            "stale",
            Some(format!("copy is {}", c.state.as_str())),
            Some(c.state),
        ),
        // Recorded ahead of the listing, so a late copy arrives already delisted.
        None => ("delisted", Some(d.reason.clone()), None),
    };
    if decision != "rejected" {
        insert_announcement(
            conn,
            &r.content_id,
            r.exchange.as_str(),
            AnnouncementKind::Delisting,
            Some(&d.listing_id),
            &r.envelope,
        )
        .await?;
    }
    record_decision(
        conn,
        raft_index,
        Decision {
            r,
            listing_id: Some(d.listing_id),
            version: Some(d.version),
            origin: d.origin.to_string(),
            decision,
            reason,
            delegation,
        },
    )
    .await?;
    Ok(done(d.listing_id, Some(d.version), state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit;
    use crate::catalog::apply::apply;
    use crate::catalog::{Actor, CatalogCommand, Review};
    use sqlx::Connection;
    use xchg_federation_config::Role;
    use xchg_protocol::{Classification, Delegation, Keypair, SignedDelegation, ZoneId};

    fn zone(id: &str) -> ZoneId {
        id.parse().expect("zone id")
    }

    /// `body` of `kind` sealed by a node key delegated to `origin`.
    fn signed(origin: &ZoneId, kind: AnnouncementKind, body: Vec<u8>) -> Envelope {
        let root = Keypair::from_seed(&[7; 32]);
        let key = Keypair::from_seed(&[8; 32]);
        let delegation = SignedDelegation::sign(
            Delegation {
                exchange: origin.exchange(),
                zone: origin.clone(),
                node_key: key.public(),
                not_before: Timestamp(0),
                not_after: Timestamp(4_000_000_000_000),
            },
            &root,
        );
        Envelope::seal(kind, body, &key, Some(delegation))
    }

    /// The command recording `env` (from `origin`'s exchange) with `refusal`, received at `at`.
    fn recognition(
        env: &Envelope,
        origin: &ZoneId,
        refusal: Option<&str>,
        at: u64,
    ) -> CatalogCommand {
        CatalogCommand::Recognize(Box::new(Recognition {
            envelope: env.to_bytes(),
            content_id: env.id,
            kind: env.kind,
            exchange: origin.exchange(),
            agreement: "outside:zhengzhou".into(),
            signer: Keypair::from_seed(&[8; 32]).public(),
            refusal: refusal.map(str::to_owned),
            received_from: "peer".into(),
            at: Timestamp(at),
            node: "main-1".into(),
        }))
    }

    fn recognise(listing: &Listing, refusal: Option<&str>) -> CatalogCommand {
        let env = signed(
            &listing.origin,
            AnnouncementKind::Listing,
            listing.canonical_bytes(),
        );
        recognition(&env, &listing.origin, refusal, 5_000)
    }

    fn delist(listing: &Listing) -> CatalogCommand {
        let d = Delisting {
            listing_id: listing.id(),
            version: listing.version,
            origin: listing.origin.clone(),
            reason: "withdrawn".into(),
            delisted_at: Timestamp(6_000),
        };
        let body = to_canonical(&d).expect("encode");
        let env = signed(&listing.origin, AnnouncementKind::Delisting, body);
        recognition(&env, &listing.origin, None, 6_000)
    }

    /// The (kind, state) of outbox rows, for comparing with literals.
    fn kind_state(outbox: &[(String, String)]) -> Vec<(&str, &str)> {
        outbox
            .iter()
            .map(|(k, s)| (k.as_str(), s.as_str()))
            .collect()
    }

    fn listing(origin: &str, title: &str) -> Listing {
        let mut draft = xchg_protocol::vectors::credit_draft();
        draft.title = title.into();
        Listing::first_version(draft, zone(origin), Timestamp(1_000))
    }

    /// Applies `commands` in order to a fresh xuchang/yuzhou replica; returns, per command, the
    /// decisions table's last row (decision, reason) and the listing rows (id, origin, version,
    /// state) at the end.
    async fn run(
        commands: &[CatalogCommand],
    ) -> (
        Vec<(String, Option<String>)>,
        Vec<(String, String, i64, String)>,
        Vec<(String, String)>,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let slot = crate::catalog::test_writer(dir.path()).await;
        let mut writer = slot.lock().await.expect("writer");
        let (conn, view) = writer.split();
        let mut tx = conn.begin().await.expect("tx");
        let mut chain = audit::Chain::load(&mut tx).await.expect("chain");
        let facts = crate::catalog::test_zone();
        for (i, c) in commands.iter().enumerate() {
            let _response = apply(&mut tx, view, &mut chain, &facts, i as u64 + 1, c)
                .await
                .expect("apply");
        }
        let decisions: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT decision, reason FROM recognitions ORDER BY seq")
                .fetch_all(&mut *tx)
                .await
                .expect("decisions");
        let listings: Vec<(String, String, i64, String)> =
            sqlx::query_as("SELECT id, origin, version, state FROM listings ORDER BY seq")
                .fetch_all(&mut *tx)
                .await
                .expect("listings");
        let outbox: Vec<(String, String)> =
            sqlx::query_as("SELECT kind, state FROM outbox ORDER BY seq")
                .fetch_all(&mut *tx)
                .await
                .expect("outbox");
        (decisions, listings, outbox)
    }

    #[tokio::test]
    async fn a_recognised_copy_follows_new_versions_and_the_delisting_of_its_origin() {
        let v1 = listing("zhengzhou/main", "v1");
        let v2 = v1.next_version(v1.draft(), Timestamp(2_000));
        let (decisions, listings, _) = run(&[
            recognise(&v1, None),
            recognise(&v2, None),
            recognise(&v1, None), // the same announcement again: no effect
            delist(&v2),
        ])
        .await;
        let names: Vec<&str> = decisions.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(names, ["recognised", "recognised", "delisted"]);
        assert_eq!(listings.len(), 1);
        assert_eq!(listings[0].1, "zhengzhou/main");
        assert_eq!(listings[0].2, 2);
        assert_eq!(listings[0].3, "delisted");
    }

    #[tokio::test]
    async fn a_refusal_is_recorded_and_nothing_listed() {
        let v1 = listing("zhengzhou/main", "refused");
        let (decisions, listings, _) =
            run(&[recognise(&v1, Some("category credit is not covered"))]).await;
        assert_eq!(decisions[0].0, "rejected");
        assert_eq!(
            decisions[0].1.as_deref(),
            Some("category credit is not covered")
        );
        assert!(listings.is_empty());
    }

    #[tokio::test]
    async fn another_zone_cannot_take_over_a_listing_id_but_version_1_proves_its_owner() {
        let genuine = listing("zhengzhou/main", "genuine");
        // A later version naming the genuine listing id, announced by another zone.
        let mut squat = genuine.next_version(genuine.draft(), Timestamp(2_000));
        squat.origin = zone("xuchang/weidu");
        let mut stolen = genuine.next_version(genuine.draft(), Timestamp(3_000));
        stolen.version = 3;
        stolen.origin = zone("xuchang/weidu");
        let (decisions, listings, _) = run(&[
            recognise(&squat, None),
            recognise(&genuine, None),
            recognise(&stolen, None),
        ])
        .await;
        let names: Vec<&str> = decisions.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(names, ["recognised", "recognised", "rejected"]);
        assert_eq!(listings.len(), 1);
        assert_eq!(
            listings[0].1, "zhengzhou/main",
            "version 1 took the id back"
        );
        assert_eq!(listings[0].2, 1);
    }

    #[tokio::test]
    async fn a_delisting_that_arrives_first_keeps_the_late_listing_delisted() {
        let v1 = listing("zhengzhou/main", "late");
        let (decisions, listings, _) = run(&[delist(&v1), recognise(&v1, None)]).await;
        assert_eq!(decisions[0].0, "delisted");
        assert_eq!(listings[0].3, "delisted");
    }

    #[tokio::test]
    async fn an_own_listing_announced_back_is_not_recorded_as_a_copy() {
        let own = listing("xuchang/yuzhou", "own");
        let (decisions, listings, _) = run(&[recognise(&own, None)]).await;
        assert_eq!(decisions[0].0, "rejected");
        assert!(listings.is_empty());
    }

    fn submit(l: &Listing) -> CatalogCommand {
        CatalogCommand::SubmitListing {
            listing: Box::new(l.clone()),
            actor: Actor {
                id: "p".into(),
                role: Role::Provider,
            },
        }
    }

    fn review(cmd: &str, id: ContentId, at: u64) -> CatalogCommand {
        let actor = Actor {
            id: "o".into(),
            role: Role::Operator,
        };
        let at = Timestamp(at);
        match cmd {
            "approve" => CatalogCommand::ApproveListing {
                listing_id: id,
                review: Review::default(),
                at,
                actor,
            },
            "reject" => CatalogCommand::RejectListing {
                listing_id: id,
                reason: "no\u{7}".into(),
                at,
                actor,
            },
            _ => CatalogCommand::DelistListing {
                listing_id: id,
                reason: "gone".into(),
                at,
                actor,
            },
        }
    }

    fn update(l: &Listing, classification: Classification) -> CatalogCommand {
        let mut draft = l.draft();
        draft.classification = classification;
        CatalogCommand::UpdateListing {
            listing_id: l.id(),
            draft: Box::new(draft),
            at: Timestamp(3_000),
            actor: Actor {
                id: "p".into(),
                role: Role::Provider,
            },
        }
    }

    #[tokio::test]
    async fn the_outbox_withdraws_copies_when_a_listing_stops_being_exportable() {
        let l = listing("xuchang/yuzhou", "own general");
        let id = l.id();
        // Exported, then a new version becomes important: its approval withdraws the copies.
        let (_, _, outbox) = run(&[
            submit(&l),
            review("approve", id, 2_000),
            update(&l, Classification::Important),
            review("approve", id, 4_000),
        ])
        .await;
        let rows = kind_state(&outbox);
        assert_eq!(
            rows,
            [
                ("listing", "pending"),
                ("listing", "withheld"),
                ("delisting", "pending")
            ]
        );
        // Exported, then a new version is rejected in review: the copies are withdrawn.
        let (_, _, outbox) = run(&[
            submit(&l),
            review("approve", id, 2_000),
            update(&l, Classification::General),
            review("reject", id, 4_000),
        ])
        .await;
        let rows = kind_state(&outbox);
        assert_eq!(rows, [("listing", "pending"), ("delisting", "pending")]);
        // Never exported: nothing to withdraw.
        let imp = {
            let mut d = l.draft();
            d.classification = Classification::Core;
            Listing::first_version(d, zone("xuchang/yuzhou"), Timestamp(1_500))
        };
        let (_, _, outbox) = run(&[
            submit(&imp),
            review("approve", imp.id(), 2_000),
            review("delist", imp.id(), 3_000),
        ])
        .await;
        let rows = kind_state(&outbox);
        assert_eq!(rows, [("listing", "withheld")]);
    }

    /// A refusal record of `n` (its content id and time) signed by the key of `seed`.
    fn refusal(n: u64, seed: u8, at: u64) -> RefusedAnnouncement {
        RefusedAnnouncement {
            content_id: ContentId::of(&n.to_be_bytes()),
            kind: AnnouncementKind::Listing,
            listing_id: Some(ContentId::of(&n.to_be_bytes())),
            version: Some(1),
            origin: zone("zhengzhou/main"),
            exchange: "zhengzhou".parse().expect("exchange id"),
            agreement: "outside:zhengzhou".into(),
            signer: Keypair::from_seed(&[seed; 32]).public(),
            reason: "x".repeat(crate::catalog::REFUSAL_REASON_CHARS + 50),
            received_from: "peer".into(),
            at: Timestamp(at),
            node: "main-1".into(),
        }
    }

    /// Records `refusals` in order within `bounds` on a fresh replica; returns the content ids
    /// kept (`rejected`) and the longest reason, in order.
    async fn kept(
        refusals: &[RefusedAnnouncement],
        bounds: &RefusalBounds,
    ) -> (Vec<ContentId>, usize) {
        let dir = tempfile::tempdir().expect("tempdir");
        let slot = crate::catalog::test_writer(dir.path()).await;
        let mut writer = slot.lock().await.expect("writer");
        let (conn, _) = writer.split();
        let mut tx = conn.begin().await.expect("tx");
        for (i, r) in refusals.iter().enumerate() {
            let response = record_refusal_within(&mut tx, i as u64 + 1, r, bounds)
                .await
                .expect("apply");
            assert!(response.is_ok(), "{response:?}");
        }
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT content_id, reason FROM recognitions WHERE decision = 'rejected' ORDER BY seq",
        )
        .fetch_all(&mut *tx)
        .await
        .expect("rows");
        let longest = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
        let ids = rows
            .into_iter()
            .map(|r| r.0.parse().expect("content id"))
            .collect();
        (ids, longest)
    }

    #[tokio::test]
    async fn refusal_records_expire_by_command_time_and_stay_within_their_caps() {
        let bounds = RefusalBounds {
            retention_ms: 10_000,
            per_signer: 3,
            per_exchange: 4,
        };
        let id = |n: u64| ContentId::of(&n.to_be_bytes());
        // Key 1 refused five times: its three newest stay.
        let mut rs: Vec<RefusedAnnouncement> = (0..5).map(|n| refusal(n, 1, 1_000 + n)).collect();
        let (ids, longest) = kept(&rs, &bounds).await;
        assert_eq!(ids, [id(2), id(3), id(4)]);
        assert_eq!(
            longest,
            crate::catalog::REFUSAL_REASON_CHARS,
            "reasons are clipped"
        );
        // Key 2 of the same exchange twice: the exchange keeps four, the oldest go.
        rs.extend((5..7).map(|n| refusal(n, 2, 1_000 + n)));
        let (ids, _) = kept(&rs, &bounds).await;
        assert_eq!(ids, [id(3), id(4), id(5), id(6)]);
        // The same announcement again: recorded once.
        rs.push(refusal(6, 2, 1_007));
        assert_eq!(kept(&rs, &bounds).await.0, ids);
        // A refusal applied more than the retention later: the old ones go, whatever the clock
        // of the node applying it says (only command times count).
        rs.push(refusal(9, 3, 11_006));
        let (ids, _) = kept(&rs, &bounds).await;
        assert_eq!(ids, [id(6), id(9)]);
        // Every replica applying the same commands keeps the same records.
        assert_eq!(kept(&rs, &bounds).await.0, ids);
    }

    /// The revocation, by the root of `origin`'s exchange, of the node key of `seed`.
    fn revoke(origin: &ZoneId, seed: u8, at: u64) -> CatalogCommand {
        let root = Keypair::from_seed(&[7; 32]);
        let rev = Revocation {
            exchange: origin.exchange(),
            key: Keypair::from_seed(&[seed; 32]).public(),
            reason: "key leaked".into(),
            revoked_at: Timestamp(at),
        };
        let env = Envelope::revocation(&rev, &root);
        CatalogCommand::Recognize(Box::new(Recognition {
            envelope: env.to_bytes(),
            content_id: env.id,
            kind: env.kind,
            exchange: origin.exchange(),
            agreement: "outside:zhengzhou".into(),
            signer: root.public(),
            refusal: None,
            received_from: "peer".into(),
            at: Timestamp(at),
            node: "main-1".into(),
        }))
    }

    /// `listing` announced with the node key of `seed` (delegated by the seed-7 root).
    fn recognise_signed_by(listing: &Listing, seed: u8) -> CatalogCommand {
        let root = Keypair::from_seed(&[7; 32]);
        let key = Keypair::from_seed(&[seed; 32]);
        let delegation = SignedDelegation::sign(
            Delegation {
                exchange: listing.origin.exchange(),
                zone: listing.origin.clone(),
                node_key: key.public(),
                not_before: Timestamp(0),
                not_after: Timestamp(4_000_000_000_000),
            },
            &root,
        );
        let env = Envelope::listing(listing, &key, delegation);
        CatalogCommand::Recognize(Box::new(Recognition {
            envelope: env.to_bytes(),
            content_id: env.id,
            kind: env.kind,
            exchange: listing.origin.exchange(),
            agreement: "outside:zhengzhou".into(),
            signer: key.public(),
            refusal: None,
            received_from: "peer".into(),
            at: Timestamp(5_000),
            node: "main-1".into(),
        }))
    }

    #[tokio::test]
    async fn a_revocation_moves_the_copies_its_key_signed_to_revoked() {
        let origin = zone("zhengzhou/main");
        let by_leaked = listing("zhengzhou/main", "signed by the leaked key");
        let by_other = listing("zhengzhou/main", "signed by another key");
        let moved_on = listing("zhengzhou/main", "v1 by the leaked key, v2 by another");
        let moved_on_v2 = moved_on.next_version(moved_on.draft(), Timestamp(2_000));
        let (decisions, listings, _) = run(&[
            recognise_signed_by(&by_leaked, 8),
            recognise_signed_by(&by_other, 9),
            recognise_signed_by(&moved_on, 8),
            recognise_signed_by(&moved_on_v2, 9),
            revoke(&origin, 8, 7_000),
        ])
        .await;
        assert_eq!(decisions.last().map(|d| d.0.as_str()), Some("revoked"));
        let state = |l: &Listing| {
            listings
                .iter()
                .find(|row| row.0 == l.id().to_string())
                .map(|row| row.3.clone())
        };
        assert_eq!(state(&by_leaked).as_deref(), Some("revoked"));
        assert_eq!(state(&by_other).as_deref(), Some("recognised"));
        assert_eq!(
            state(&moved_on).as_deref(),
            Some("recognised"),
            "v2 is another key's"
        );

        // A later version under a valid key recognises the copy again; the origin's delisting
        // still delists a revoked copy.
        let by_leaked_v2 = by_leaked.next_version(by_leaked.draft(), Timestamp(8_000));
        let (_, listings, _) = run(&[
            recognise_signed_by(&by_leaked, 8),
            revoke(&origin, 8, 7_000),
            recognise_signed_by(&by_leaked_v2, 9),
        ])
        .await;
        assert_eq!(listings[0].3, "recognised");
        assert_eq!(listings[0].2, 2);
        let (_, listings, _) = run(&[
            recognise_signed_by(&by_leaked, 8),
            revoke(&origin, 8, 7_000),
            delist(&by_leaked),
        ])
        .await;
        assert_eq!(listings[0].3, "delisted");
    }

    #[test]
    fn delisting_reasons_are_made_valid() {
        assert_eq!(delisting_reason("a\u{7}b"), "a b");
        assert_eq!(delisting_reason("  "), "withdrawn by its origin");
        assert_eq!(delisting_reason(&"x".repeat(3000)).chars().count(), 2000);
    }
}
