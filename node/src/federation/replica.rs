//! What the federation driver reads from the replica on the core's behalf: the facts about an
//! envelope, the revoked keys, the pending outbox, the summaries and undecided ids of catch-up,
//! and the answers to peers' catch-up queries. All through the catalog tables' reads on a
//! reader connection; none of it writes, and none of it holds SQL of its own.

use xchg_protocol::catchup::{
    Blob, ExchangeSummary, HeldDemand, HeldMessage, Item, MAX_CERTIFICATE_PAGE_BYTES, Response,
    digest,
};
use xchg_protocol::{ContentId, ExchangeId, PublicKey, Timestamp};

use super::catchup::Query;
use super::judge::{Facts, Held};
use super::publish::{CERTIFICATE_ENTRY, CERTIFICATE_REVOCATION_ENTRY, DEMAND_ENTRY, OutboxEntry};
use crate::catalog::tables::{
    announcements, certificate_feed, certificates, listings, outbox, received_certificates,
    recognitions, revocations,
};
use crate::store::Db;

/// Whether a decision on `content_id` is recorded, the copy of `listing_id` held, and whether
/// a valid certificate for that listing version is. A read that fails counts as nothing known
/// (the leader then proposes, and apply decides; an unread certificate counts as none).
pub async fn facts(db: &Db, content_id: &ContentId, listing_id: Option<&ContentId>) -> Facts {
    let Ok(mut conn) = db.reader().await else {
        return Facts::default();
    };
    let decided = matches!(
        recognitions::decided_read(&mut conn, content_id).await,
        Ok(true)
    );
    let held = match (decided, listing_id) {
        (false, Some(id)) => listings::origin_and_version(&mut conn, id)
            .await
            .ok()
            .flatten()
            .map(|c| Held {
                withdrawn: c.state == crate::catalog::ListingState::Revoked.as_str()
                    && c.content_id == content_id.to_string(),
                origin: c.origin,
                version: c.version,
            }),
        _ => None,
    };
    let certified_by = match (decided, listing_id) {
        (false, Some(id)) => received_certificates::certified_by(&mut conn, id, content_id)
            .await
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    Facts {
        decided,
        held,
        certified_by,
    }
}

/// The `updated_at` of the state held of foreign demand `number` of `zone`, and whether it is
/// closed, if one is (a failed read says none: the state machine decides anyway).
pub async fn demand_held(db: &Db, zone: &str, number: u64) -> Option<(Timestamp, bool)> {
    let mut conn = db.reader().await.ok()?;
    crate::catalog::tables::demands_across::held_read(&mut conn, zone, number)
        .await
        .ok()
        .flatten()
}

/// Every revoked key with the exchange that revoked it (rows that do not parse are skipped; a
/// failed read gives none, and the next revocation epoch reads again).
pub async fn revoked(db: &Db) -> Vec<(ExchangeId, PublicKey)> {
    let rows = match db.reader().await {
        Ok(mut conn) => revocations::all(&mut conn).await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    rows.into_iter()
        .filter_map(|(exchange, key)| {
            Some((exchange.parse().ok()?, PublicKey::from_base64(&key).ok()?))
        })
        .collect()
}

/// Up to `limit` pending outbox entries, oldest first, then, within the same limit, the
/// certificates waiting to be published (kind [`CERTIFICATE_ENTRY`]: `seq` is the
/// registration, `body` the signed certificate), then the certificate revocations (kind
/// [`CERTIFICATE_REVOCATION_ENTRY`], the same way), then the shared demands whose latest state
/// waits to be signed (kind [`DEMAND_ENTRY`]: `seq` is the demand, `body` its canonical Demand).
///
/// # Errors
/// The read failed.
pub async fn pending_outbox(db: &Db, limit: usize) -> Result<Vec<OutboxEntry>, sqlx::Error> {
    let mut conn = db.reader().await?;
    let mut entries = outbox::pending(&mut conn, limit).await?;
    let room = limit.saturating_sub(entries.len());
    if room > 0 {
        let pending = certificates::pending_export(&mut conn, room).await?;
        entries.extend(pending.into_iter().map(|c| OutboxEntry {
            seq: c.registration_id,
            kind: CERTIFICATE_ENTRY.to_owned(),
            body: c.signed,
        }));
    }
    // After the certificates, so a certificate revoked before it went out is sent first (a
    // receiver keeps a revocation that comes first all the same).
    let room = limit.saturating_sub(entries.len());
    if room > 0 {
        let pending = certificates::pending_revocations(&mut conn, room).await?;
        entries.extend(pending.into_iter().map(|c| OutboxEntry {
            seq: c.registration_id,
            kind: CERTIFICATE_REVOCATION_ENTRY.to_owned(),
            body: c.signed,
        }));
    }
    let room = limit.saturating_sub(entries.len());
    if room > 0 {
        let pending = crate::catalog::tables::demands_across::pending(&mut conn, room).await?;
        entries.extend(pending.into_iter().map(|(demand_id, body)| OutboxEntry {
            seq: demand_id,
            kind: DEMAND_ENTRY.to_owned(),
            body,
        }));
    }
    Ok(entries)
}

/// The ids of `ids` with no decision recorded, in order (a failed read counts as undecided:
/// the envelope is fetched and judged, and apply decides).
pub async fn undecided(db: &Db, ids: Vec<ContentId>) -> Vec<ContentId> {
    let Ok(mut conn) = db.reader().await else {
        return ids;
    };
    let mut missing = Vec::with_capacity(ids.len());
    for id in ids {
        if !matches!(recognitions::decided_read(&mut conn, &id).await, Ok(true)) {
            missing.push(id);
        }
    }
    missing
}

/// Whether each of the certificate-topic messages with these ids is unrecorded, in order (a
/// failed read counts as unrecorded: the message is judged, and apply decides); for a page of
/// signed demands, the ids are their SignedMessages' and a demand held in that very state is
/// recorded.
pub async fn unreceived(db: &Db, ids: &[ContentId]) -> Vec<bool> {
    let Ok(mut conn) = db.reader().await else {
        return vec![true; ids.len()];
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let held = matches!(certificate_feed::received(&mut conn, id).await, Ok(true))
            || matches!(
                crate::catalog::tables::demands_across::recognised(&mut conn, id).await,
                Ok(true)
            );
        out.push(!held);
    }
    out
}

/// Count and digest of the announcements held, per exchange.
///
/// # Errors
/// The read failed.
pub async fn summaries(db: &Db) -> Result<Vec<ExchangeSummary>, sqlx::Error> {
    let rows = announcements::by_exchange(&mut *db.reader().await?).await?;
    let mut out: Vec<ExchangeSummary> = Vec::new();
    let mut ids: Vec<ContentId> = Vec::new();
    let mut current: Option<String> = None;
    let mut flush = |exchange: Option<String>, ids: &mut Vec<ContentId>| {
        if let Some(e) = exchange.and_then(|e| e.parse::<ExchangeId>().ok()) {
            out.push(ExchangeSummary {
                exchange: e,
                count: ids.len() as u64,
                digest: digest(ids.iter()),
            });
        }
        ids.clear();
    };
    for (exchange, id) in rows {
        if current.as_deref() != Some(exchange.as_str()) {
            flush(current.take(), &mut ids);
            current = Some(exchange);
        }
        if let Ok(id) = id.parse() {
            ids.push(id);
        }
    }
    flush(current, &mut ids);
    Ok(out)
}

/// The answer to a peer's catch-up `query`.
///
/// # Errors
/// A read failed.
pub async fn serve(db: &Db, query: Query) -> Result<Response, sqlx::Error> {
    Ok(match query {
        Query::Summary => Response::Summary {
            exchanges: summaries(db).await?,
        },
        Query::Inventory {
            exchange,
            after,
            limit,
        } => {
            let rows = announcements::after(
                &mut *db.reader().await?,
                exchange.as_str(),
                after,
                i64::from(limit) + 1,
            )
            .await?;
            let more = rows.len() > limit as usize;
            let mut items = Vec::with_capacity(rows.len());
            for (pos, id) in rows.into_iter().take(limit as usize) {
                if let Ok(id) = id.parse() {
                    items.push(Item { pos, id });
                }
            }
            Response::Inventory { items, more }
        }
        Query::Fetch { ids } => {
            let mut conn = db.reader().await?;
            let mut envelopes = Vec::with_capacity(ids.len());
            for id in &ids {
                if let Some(env) = announcements::envelope(&mut conn, id).await? {
                    envelopes.push(Blob(env));
                }
            }
            Response::Envelopes { envelopes }
        }
        Query::Certificates { own, after, limit } => {
            let rows = certificate_feed::after(
                &mut *db.reader().await?,
                own.as_str(),
                after,
                i64::from(limit) + 1,
            )
            .await?;
            let mut more = rows.len() > limit as usize;
            let mut items = Vec::with_capacity(rows.len().min(limit as usize));
            let mut bytes = 0;
            for (pos, exchange, data) in rows.into_iter().take(limit as usize) {
                // Within the page's byte budget, but never an empty page while there is more.
                if !items.is_empty() && bytes + data.len() > MAX_CERTIFICATE_PAGE_BYTES {
                    more = true;
                    break;
                }
                let Ok(exchange) = exchange.parse() else {
                    continue;
                };
                bytes += data.len();
                items.push(HeldMessage {
                    pos,
                    exchange,
                    data,
                });
            }
            Response::Certificates { items, more }
        }
        Query::Demands { after, limit } => {
            let rows = crate::catalog::tables::demands_across::page(
                &mut *db.reader().await?,
                after,
                limit + 1,
            )
            .await?;
            let more = rows.len() > limit as usize;
            let items = rows
                .into_iter()
                .take(limit as usize)
                .map(|(pos, data)| HeldDemand { pos, data })
                .collect();
            Response::Demands { items, more }
        }
    })
}
