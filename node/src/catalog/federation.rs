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

use super::apply::{ListingRow, current, insert_new_listings, record_history, write_listing};
use super::{Actor, Applied, CommandResponse, ListingState, Recognition, Refusal, ZoneFacts};
use crate::federation::policy;

/// Who recognised copies are recorded as submitted by.
pub const FEDERATION_SUBMITTER: &str = "federation";

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

/// After an approval: queues the approved version of one of this zone's own listings for
/// publication, or records that the export firewall withholds it.
///
/// # Errors
/// Storage errors.
pub async fn queue_listing(
    conn: &mut SqliteConnection,
    zone: &ZoneFacts,
    id: &ContentId,
    at: Timestamp,
) -> Result<(), sqlx::Error> {
    let Some(cur) = current(conn, id).await? else {
        return Ok(());
    };
    if cur.listing.origin != zone.zone {
        return Ok(());
    }
    let (state, reason) = match policy::export(&cur.listing, &zone.export) {
        Ok(()) => ("pending", None),
        Err(reason) => ("withheld", Some(reason)),
    };
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
    .await
}

/// After a delisting: if the listing was ever let out of the zone, queues the delisting.
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
    let Some(cur) = current(conn, id).await? else {
        return Ok(());
    };
    if cur.listing.origin != zone.zone {
        return Ok(());
    }
    let exported: Option<i64> = sqlx::query_scalar(
        "SELECT seq FROM outbox WHERE listing_id = ? AND kind = 'listing' AND state != 'withheld'
         LIMIT 1",
    )
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    if exported.is_none() {
        return Ok(());
    }
    let delisting = Delisting {
        listing_id: *id,
        version: cur.listing.version,
        origin: zone.zone.clone(),
        reason: reason.to_owned(),
        delisted_at: at,
    };
    let body = to_canonical(&delisting).map_err(decode_err)?;
    push_outbox(
        conn,
        id,
        AnnouncementKind::Delisting,
        cur.listing.version,
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
    if env.id.to_string() != content_id {
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
    Ok(())
}

/// Whether a decision on `content_id` is already recorded.
async fn decided(conn: &mut SqliteConnection, content_id: &ContentId) -> Result<bool, sqlx::Error> {
    let id = content_id.to_string();
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM recognitions WHERE content_id = ?1
         UNION ALL SELECT 1 FROM announcements WHERE content_id = ?1 LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found.is_some())
}

fn federation_actor(r: &Recognition) -> Actor {
    Actor {
        id: format!("node:{}", r.node),
        role: xchg_federation_config::Role::Admin,
    }
}

/// Applies the decision on an announcement from another zone or exchange.
///
/// # Errors
/// Storage errors; an envelope that does not match the command is a refusal.
pub async fn recognize(
    conn: &mut SqliteConnection,
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
    if decided(conn, &env.id).await? {
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
            recognize_listing(conn, zone, raft_index, r, listing, delegation).await
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
            Ok(done(rev.key.to_base64(), None, None))
        }
    }
}

async fn recognize_listing(
    conn: &mut SqliteConnection,
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
        let actor = federation_actor(r);
        match &cur {
            Some(c) => {
                write_listing(conn, &listing, state, FEDERATION_SUBMITTER).await?;
                record_history(
                    conn,
                    &id.to_string(),
                    raft_index,
                    r.at,
                    &actor,
                    "recognise",
                    Some(c.state),
                    state,
                    listing.version,
                    Some(serde_json::json!({ "agreement": r.agreement }).to_string()),
                )
                .await?;
            }
            None => {
                let row = ListingRow::new(&listing, state, FEDERATION_SUBMITTER);
                insert_new_listings(conn, std::slice::from_ref(&row)).await?;
                record_history(
                    conn,
                    &id.to_string(),
                    raft_index,
                    r.at,
                    &actor,
                    "recognise",
                    None,
                    state,
                    listing.version,
                    Some(serde_json::json!({ "agreement": r.agreement }).to_string()),
                )
                .await?;
            }
        }
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
        Some(c) if c.state == ListingState::Recognised => {
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
                &federation_actor(r),
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
