//! Reading the catalog: one listing with its history, and faceted full-text search.
//!
//! Search uses the FTS5 trigram index for terms of three or more characters and a substring
//! scan for shorter ones (two-character Chinese words are common and trigrams cannot match
//! them). Results come newest first and are never ranked, so a common term costs no more than
//! reading one page: ranking every match is what makes common terms slow on large catalogs.

use serde::Serialize;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use xchg_protocol::canonical::{Limits, from_canonical};
use xchg_protocol::{Listing, Timestamp, ZoneId};

/// Most items one search page returns.
pub const MAX_PAGE: u32 = 100;
/// Default page size.
pub const DEFAULT_PAGE: u32 = 20;
/// Matches are counted up to this number; `total` says "at least" beyond it.
pub const COUNT_CAP: i64 = 10_000;

/// One transition of a listing.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
pub struct ListingView {
    /// Listing id.
    pub id: String,
    /// Lifecycle state in this zone.
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
    /// `local` (this zone), `external` (other exchanges), an exchange id, or a zone id.
    pub origin: Option<String>,
    /// Page size (clamped to [`MAX_PAGE`]).
    pub limit: Option<u32>,
    /// Continue after this cursor (from a previous page's `next_cursor`).
    pub cursor: Option<i64>,
}

/// One page of results.
#[derive(Debug, Clone, Serialize)]
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
    })
}

/// Reads one listing with its history.
///
/// # Errors
/// Storage errors.
pub async fn get(
    conn: &mut SqliteConnection,
    id: &str,
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
         FROM listing_history WHERE listing_id = ? ORDER BY seq",
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
            qb.push(" AND origin NOT LIKE ")
                .push_bind(format!("{}/%", own.exchange()));
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
