//! Reading the catalog: one listing with its history, and faceted full-text search.
//!
//! Search uses the FTS5 trigram index for terms of three or more characters and a substring
//! scan for shorter ones (two-character Chinese words are common and trigrams cannot match
//! them). Results come newest first and are never ranked, so a common term costs no more than
//! reading one page: ranking every match is what makes common terms slow on large catalogs.

use serde::Serialize;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use xchg_protocol::canonical::{Limits, from_canonical};
use xchg_protocol::{Listing, PublicKey, Timestamp, ZoneId};

/// Most items one search page returns.
pub const MAX_PAGE: u32 = 100;
/// Default page size.
pub const DEFAULT_PAGE: u32 = 20;
/// Matches are counted up to this number; `total` says "at least" beyond it.
pub const COUNT_CAP: i64 = 10_000;

/// One transition of a listing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// Position in the listing's history, from 1.
    pub seq: i64,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: String,
    /// In which role.
    pub role: String,
    /// What: submit, update, approve, reject, delist.
    pub action: String,
    /// State before (absent for the submission).
    pub from_state: Option<String>,
    /// State after.
    pub to_state: String,
    /// Listing version at the time.
    pub version: i64,
    /// Review record or reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
    /// The Raft log index of the command.
    pub raft_index: i64,
}

/// A listing as the API shows it: the current version plus its zone-local state.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ListingView {
    /// Listing id.
    pub id: String,
    /// Lifecycle state in this zone.
    #[schema(value_type = crate::catalog::ListingState)]
    pub state: String,
    /// Content id of the current version.
    pub content_id: String,
    /// The submitter (the only party that may update it).
    pub submitted_by: String,
    /// The current version's fields.
    #[serde(flatten)]
    pub listing: Listing,
    /// Transitions, oldest first (only in single-listing reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryEntry>>,
    /// Where it came from and where it went (only in single-listing reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// A listing's federation record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Provenance {
    /// The zone where it was submitted.
    pub origin: String,
    /// That zone's exchange.
    pub exchange: String,
    /// Whether this zone holds it as a recognised copy of another zone's listing.
    pub recognised: bool,
    /// Decisions on the announcements received for it, oldest first (recognised copies).
    pub recognitions: Vec<RecognitionView>,
    /// What this zone's export firewall did with its versions, oldest first (own listings).
    pub export: Vec<ExportView>,
    /// For a copy in state `revoked`: the revocation of the key that signed its current
    /// version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<RevocationView>,
}

/// A key revocation, as recorded by this zone.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RevocationView {
    /// The revocation announcement's content id.
    pub content_id: String,
    /// The revoking exchange.
    pub exchange: String,
    /// The revoked node key: 64 lowercase hex digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub key: String,
    /// Why, as the exchange's root stated it.
    pub reason: String,
    /// When the root revoked it (the revocation's `revoked_at`).
    pub revoked_at: Timestamp,
}

/// One decision on a received announcement.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecognitionView {
    /// Position in this zone's record (use as a cursor).
    pub seq: i64,
    /// The announcement's body id.
    pub content_id: String,
    /// listing, delisting or revocation.
    pub kind: String,
    /// The listing concerned.
    pub listing_id: Option<String>,
    /// Its version.
    pub version: Option<i64>,
    /// Origin zone (or the revoking exchange).
    pub origin: String,
    /// The exchange whose authority it carries.
    pub exchange: String,
    /// `sibling` or `outside:<exchange>`.
    pub agreement: String,
    /// recognised, rejected, stale, delisted or revoked.
    pub decision: String,
    /// Why (rejections, staleness, delisting and revocation reasons).
    pub reason: Option<String>,
    /// The signing key: 64 lowercase hex digits (PROTOCOL.md 2.7).
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub signer: String,
    /// The signer's delegation: exchange, zone, node key and root key (hex), validity window.
    pub delegation: Option<serde_json::Value>,
    /// The gossip peer that delivered it.
    pub received_from: String,
    /// When the deciding node received it.
    pub at: Timestamp,
    /// The Raft index of the decision.
    pub raft_index: i64,
}

/// One outbox entry of an own listing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExportView {
    /// listing or delisting.
    pub kind: String,
    /// The listing version announced.
    pub version: i64,
    /// pending, published or withheld.
    pub state: String,
    /// Why the firewall withheld it.
    pub reason: Option<String>,
    /// The announced body's id.
    pub content_id: String,
    /// When the change was made.
    pub at: Timestamp,
    /// When the signed envelope was recorded.
    pub published_at: Option<Timestamp>,
}

const RECOGNITION_COLUMNS: &str = "SELECT seq, content_id, kind, listing_id, version, origin, \
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

fn recognition(r: &sqlx::sqlite::SqliteRow) -> Result<RecognitionView, sqlx::Error> {
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
        at: Timestamp(r.try_get::<i64, _>(13)? as u64),
        raft_index: r.try_get(14)?,
    })
}

/// Filters of the recognitions record.
#[derive(Debug, Clone, Default)]
pub struct RecognitionFilter {
    /// Only this decision.
    pub decision: Option<String>,
    /// Only announcements of this exchange.
    pub exchange: Option<String>,
    /// Page size (clamped to [`MAX_PAGE`]).
    pub limit: Option<u32>,
    /// Continue after this position (newest first).
    pub cursor: Option<i64>,
}

/// One page of recognition decisions.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecognitionPage {
    /// Newest first.
    pub items: Vec<RecognitionView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Lists recognition decisions, newest first.
///
/// # Errors
/// Storage errors.
pub async fn recognitions(
    conn: &mut SqliteConnection,
    f: &RecognitionFilter,
) -> Result<RecognitionPage, sqlx::Error> {
    let limit = f.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let mut qb = QueryBuilder::<Sqlite>::new(RECOGNITION_COLUMNS);
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
        .map(recognition)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if more {
        items.last().map(|i| i.seq.to_string())
    } else {
        None
    };
    Ok(RecognitionPage { items, next_cursor })
}

async fn provenance(
    conn: &mut SqliteConnection,
    v: &ListingView,
    own: &ZoneId,
) -> Result<Provenance, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "{RECOGNITION_COLUMNS} WHERE listing_id = ? ORDER BY seq"
    ))
    .bind(&v.id)
    .fetch_all(&mut *conn)
    .await?;
    let recognitions = rows
        .iter()
        .map(recognition)
        .collect::<Result<Vec<_>, _>>()?;
    let rows = sqlx::query(
        "SELECT kind, version, state, reason, content_id, at, published_at FROM outbox
         WHERE listing_id = ? ORDER BY seq",
    )
    .bind(&v.id)
    .fetch_all(&mut *conn)
    .await?;
    let mut export = Vec::with_capacity(rows.len());
    for r in rows {
        export.push(ExportView {
            kind: r.try_get(0)?,
            version: r.try_get(1)?,
            state: r.try_get(2)?,
            reason: r.try_get(3)?,
            content_id: r.try_get(4)?,
            at: Timestamp(r.try_get::<i64, _>(5)? as u64),
            published_at: r.try_get::<Option<i64>, _>(6)?.map(|t| Timestamp(t as u64)),
        });
    }
    let revocation = if v.state == crate::catalog::ListingState::Revoked.as_str() {
        // The key of the latest recognised announcement, revoked by its exchange.
        let latest = recognitions
            .iter()
            .rev()
            .find(|r| r.decision == "recognised" && r.kind == "listing");
        match latest {
            Some(r) => revocation_of(conn, &r.exchange, &r.signer).await?,
            None => None,
        }
    } else {
        None
    };
    Ok(Provenance {
        origin: v.listing.origin.to_string(),
        exchange: v.listing.origin.exchange().to_string(),
        recognised: v.listing.origin != *own,
        recognitions,
        export,
        revocation,
    })
}

/// The revocation of `key` (hex) by `exchange`, if recorded.
async fn revocation_of(
    conn: &mut SqliteConnection,
    exchange: &str,
    key: &str,
) -> Result<Option<RevocationView>, sqlx::Error> {
    let Ok(key) = key.parse::<PublicKey>() else {
        return Ok(None);
    };
    let row = sqlx::query(
        "SELECT content_id, reason, at FROM revocations WHERE exchange = ? AND key = ?",
    )
    .bind(exchange)
    .bind(key.to_base64())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(RevocationView {
        content_id: row.try_get(0)?,
        exchange: exchange.to_owned(),
        key: key.to_string(),
        reason: row.try_get(1)?,
        revoked_at: Timestamp(row.try_get::<i64, _>(2)? as u64),
    }))
}

/// Filters and paging of a search.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// Free text, whitespace-separated terms, all must match.
    pub q: Option<String>,
    /// Lifecycle state.
    pub state: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Classification.
    pub classification: Option<String>,
    /// Delivery mode offered.
    pub delivery_mode: Option<String>,
    /// `local` (this zone), `external` (any other zone), an exchange id, or a zone id.
    pub origin: Option<String>,
    /// Page size (clamped to [`MAX_PAGE`]).
    pub limit: Option<u32>,
    /// Continue after this cursor (from a previous page's `next_cursor`).
    pub cursor: Option<i64>,
}

/// One page of results.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page {
    /// The listings, newest first.
    pub items: Vec<ListingView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// Number of matches (all pages), counted up to 10,000.
    pub total: i64,
}

fn decode(body: &[u8]) -> Result<Listing, sqlx::Error> {
    from_canonical(body, &Limits::default()).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn view(row: &sqlx::sqlite::SqliteRow) -> Result<ListingView, sqlx::Error> {
    Ok(ListingView {
        id: row.try_get("id")?,
        state: row.try_get("state")?,
        content_id: row.try_get("content_id")?,
        submitted_by: row.try_get("submitted_by")?,
        listing: decode(&row.try_get::<Vec<u8>, _>("body")?)?,
        history: None,
        provenance: None,
    })
}

/// Reads one listing with its history and provenance; `own` is this node's zone.
///
/// # Errors
/// Storage errors.
pub async fn get(
    conn: &mut SqliteConnection,
    id: &str,
    own: &ZoneId,
) -> Result<Option<ListingView>, sqlx::Error> {
    let row =
        sqlx::query("SELECT id, state, content_id, submitted_by, body FROM listings WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(row) = row else { return Ok(None) };
    let mut v = view(&row)?;
    let rows = sqlx::query(
        "SELECT seq, at, actor, role, action, from_state, to_state, version, detail, raft_index
         FROM listing_history WHERE listing_seq = (SELECT seq FROM listings WHERE id = ?)
         ORDER BY seq",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let mut history = Vec::with_capacity(rows.len());
    for r in rows {
        let detail: Option<String> = r.try_get(8)?;
        history.push(HistoryEntry {
            seq: r.try_get(0)?,
            at: Timestamp(r.try_get::<i64, _>(1)? as u64),
            actor: r.try_get(2)?,
            role: r.try_get(3)?,
            action: r.try_get(4)?,
            from_state: r.try_get(5)?,
            to_state: r.try_get(6)?,
            version: r.try_get(7)?,
            detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
            raft_index: r.try_get(9)?,
        });
    }
    v.history = Some(history);
    v.provenance = Some(provenance(conn, &v, own).await?);
    Ok(Some(v))
}

/// FTS5 needs each term quoted as a phrase; quotes inside are doubled.
fn phrase(term: &str) -> String {
    format!("\"{}\"", term.replace('"', "\"\""))
}

fn push_filters<'a>(qb: &mut QueryBuilder<'a, Sqlite>, s: &'a Search, own: &ZoneId) {
    qb.push(" WHERE 1 = 1");
    if let Some(q) = &s.q {
        let terms: Vec<&str> = q.split_whitespace().collect();
        let long: Vec<String> = terms
            .iter()
            .filter(|t| t.chars().count() >= 3)
            .map(|t| phrase(t))
            .collect();
        if !long.is_empty() {
            qb.push(" AND seq IN (SELECT rowid FROM listings_fts WHERE listings_fts MATCH ");
            qb.push_bind(long.join(" AND "));
            qb.push(")");
        }
        for short in terms.iter().filter(|t| t.chars().count() < 3) {
            let pattern = format!(
                "%{}%",
                short
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            qb.push(" AND (");
            for (i, col) in [
                "title",
                "description",
                "keywords",
                "scenarios",
                "provider_name",
            ]
            .iter()
            .enumerate()
            {
                if i > 0 {
                    qb.push(" OR ");
                }
                qb.push(*col)
                    .push(" LIKE ")
                    .push_bind(pattern.clone())
                    .push(" ESCAPE '\\'");
            }
            qb.push(")");
        }
    }
    for (col, value) in [
        ("state", &s.state),
        ("category", &s.category),
        ("classification", &s.classification),
    ] {
        if let Some(v) = value {
            qb.push(format!(" AND {col} = ")).push_bind(v.as_str());
        }
    }
    if let Some(mode) = &s.delivery_mode {
        qb.push(" AND delivery_modes LIKE ")
            .push_bind(format!("%,{mode},%"));
    }
    match s.origin.as_deref() {
        None => {}
        Some("local") => {
            qb.push(" AND origin = ").push_bind(own.to_string());
        }
        Some("external") => {
            qb.push(" AND origin != ").push_bind(own.to_string());
        }
        Some(o) if o.contains('/') => {
            qb.push(" AND origin = ").push_bind(o);
        }
        Some(o) => {
            qb.push(" AND origin LIKE ").push_bind(format!("{o}/%"));
        }
    }
}

/// Runs a search; `own` is this node's zone (for `origin=local|external`).
///
/// # Errors
/// Storage errors, including a malformed full-text expression.
pub async fn search(
    conn: &mut SqliteConnection,
    s: &Search,
    own: &ZoneId,
) -> Result<Page, sqlx::Error> {
    let limit = s.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let mut qb = QueryBuilder::new("SELECT count(*) FROM (SELECT 1 FROM listings");
    push_filters(&mut qb, s, own);
    qb.push(" LIMIT ").push_bind(COUNT_CAP).push(")");
    let total: i64 = qb.build().fetch_one(&mut *conn).await?.try_get(0)?;

    let mut qb =
        QueryBuilder::new("SELECT seq, id, state, content_id, submitted_by, body FROM listings");
    push_filters(&mut qb, s, own);
    if let Some(cursor) = s.cursor {
        qb.push(" AND seq < ").push_bind(cursor);
    }
    // One extra row tells whether another page exists.
    qb.push(" ORDER BY seq DESC LIMIT ")
        .push_bind(i64::from(limit) + 1);
    let rows = qb.build().fetch_all(&mut *conn).await?;
    let more = rows.len() > limit as usize;
    let mut items = Vec::with_capacity(rows.len().min(limit as usize));
    let mut last_seq = None;
    for row in rows.iter().take(limit as usize) {
        last_seq = Some(row.try_get::<i64, _>("seq")?);
        items.push(view(row)?);
    }
    let next_cursor = if more {
        last_seq.map(|s| s.to_string())
    } else {
        None
    };
    Ok(Page {
        items,
        next_cursor,
        total,
    })
}
