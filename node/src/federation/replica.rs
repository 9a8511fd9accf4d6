//! What the federation driver reads from the replica on the core's behalf: the facts about an
//! envelope, the revoked keys, the pending outbox, the summaries and undecided ids of catch-up,
//! and the answers to peers' catch-up queries. All on the read pool; none of it writes.

use sqlx::Row;
use xchg_protocol::catchup::{Blob, ExchangeSummary, Item, Response, digest};
use xchg_protocol::{ContentId, ExchangeId, PublicKey};

use super::catchup::Query;
use super::judge::{Facts, Held};
use super::publish::OutboxEntry;
use crate::catalog::federation::decided;
use crate::store::Db;

/// Whether a decision on `content_id` is recorded, and the copy of `listing_id` held. A read
/// that fails counts as nothing known (the leader then proposes, and apply decides).
pub async fn facts(db: &Db, content_id: &ContentId, listing_id: Option<&ContentId>) -> Facts {
    let decided = matches!(decided(&db.read, content_id).await, Ok(true));
    let held = match (decided, listing_id) {
        (false, Some(id)) => held(db, id).await,
        _ => None,
    };
    Facts { decided, held }
}

/// The replica's copy of listing `id`, if any.
async fn held(db: &Db, id: &ContentId) -> Option<Held> {
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT origin, version FROM listings WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&db.read)
            .await
            .ok()
            .flatten();
    row.map(|(origin, version)| Held {
        origin,
        version: u32::try_from(version).unwrap_or(u32::MAX),
    })
}

/// Every revoked key with the exchange that revoked it (rows that do not parse are skipped; a
/// failed read gives none, and the next revocation epoch reads again).
pub async fn revoked(db: &Db) -> Vec<(ExchangeId, PublicKey)> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT exchange, key FROM revocations")
        .fetch_all(&db.read)
        .await
        .unwrap_or_default();
    rows.into_iter()
        .filter_map(|(exchange, key)| {
            Some((exchange.parse().ok()?, PublicKey::from_base64(&key).ok()?))
        })
        .collect()
}

/// Up to `limit` pending outbox entries, oldest first.
///
/// # Errors
/// The read failed.
pub async fn pending_outbox(db: &Db, limit: usize) -> Result<Vec<OutboxEntry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, kind, body FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT ?",
    )
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&db.read)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(OutboxEntry {
                seq: u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or_default(),
                kind: row.try_get(1)?,
                body: row.try_get(2)?,
            })
        })
        .collect()
}

/// The ids of `ids` with no decision recorded, in order (a failed read counts as undecided:
/// the envelope is fetched and judged, and apply decides).
pub async fn undecided(db: &Db, ids: Vec<ContentId>) -> Vec<ContentId> {
    let mut missing = Vec::with_capacity(ids.len());
    for id in ids {
        if !matches!(decided(&db.read, &id).await, Ok(true)) {
            missing.push(id);
        }
    }
    missing
}

/// Count and digest of the announcements held, per exchange.
///
/// # Errors
/// The read failed.
pub async fn summaries(db: &Db) -> Result<Vec<ExchangeSummary>, sqlx::Error> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT exchange, content_id FROM announcements ORDER BY exchange")
            .fetch_all(&db.read)
            .await?;
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
            let rows = sqlx::query(
                "SELECT seq, content_id FROM announcements WHERE exchange = ? AND seq > ?
                 ORDER BY seq LIMIT ?",
            )
            .bind(exchange.as_str())
            .bind(i64::try_from(after).unwrap_or(i64::MAX))
            .bind(i64::from(limit) + 1)
            .fetch_all(&db.read)
            .await?;
            let more = rows.len() > limit as usize;
            let mut items = Vec::with_capacity(rows.len());
            for row in rows.iter().take(limit as usize) {
                let pos: i64 = row.try_get(0)?;
                let id: String = row.try_get(1)?;
                if let Ok(id) = id.parse() {
                    items.push(Item {
                        pos: pos as u64,
                        id,
                    });
                }
            }
            Response::Inventory { items, more }
        }
        Query::Fetch { ids } => {
            let mut envelopes = Vec::with_capacity(ids.len());
            for id in &ids {
                let env: Option<Vec<u8>> =
                    sqlx::query_scalar("SELECT envelope FROM announcements WHERE content_id = ?")
                        .bind(id.to_string())
                        .fetch_optional(&db.read)
                        .await?;
                if let Some(env) = env {
                    envelopes.push(Blob(env));
                }
            }
            Response::Envelopes { envelopes }
        }
    })
}
