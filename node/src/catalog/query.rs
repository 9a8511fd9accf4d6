//! Reading the catalog as the API shows it: one listing with its history and provenance,
//! the shape of a faceted search (served by `crate::search`), the record of recognition
//! decisions. The views are put together
//! here from the tables' own reads ([`super::tables`]), which hold the SQL.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::SqliteConnection;
use xchg_protocol::{Listing, PublicKey, Timestamp, ZoneId};

use super::tables::{listings, outbox, recognitions, revocations};

/// Most items one search page returns.
pub const MAX_PAGE: u32 = 100;
/// Default page size.
pub const DEFAULT_PAGE: u32 = 20;

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
    recognitions::page(conn, f).await
}

async fn provenance(
    conn: &mut SqliteConnection,
    v: &ListingView,
    own: &ZoneId,
) -> Result<Provenance, sqlx::Error> {
    let recognitions = recognitions::of_listing(conn, &v.id).await?;
    let export = outbox::of_listing(conn, &v.id).await?;
    let revocation = if v.state == crate::catalog::ListingState::Revoked.as_str() {
        // The key of the latest recognised announcement, revoked by its exchange.
        let latest = recognitions
            .iter()
            .rev()
            .find(|r| r.decision == "recognised" && r.kind == "listing");
        match latest.and_then(|r| Some((&r.exchange, r.signer.parse::<PublicKey>().ok()?))) {
            Some((exchange, key)) => revocations::of(conn, exchange, &key).await?,
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

/// The order of a search's results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Best match first (BM25: title above description, a phrase above scattered words), the
    /// most recently held first among equals. The default with `q`.
    Relevance,
    /// The most recently held first. The default without `q`.
    #[default]
    Newest,
}

/// Filters and paging of a search.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// Free text, whitespace-separated terms, all must match.
    pub q: Option<String>,
    /// The order.
    pub sort: Sort,
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
    pub cursor: Option<String>,
}

/// How many matches each value of each facet has (see [`Page::facets`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Facets {
    /// By lifecycle state.
    pub state: BTreeMap<String, u64>,
    /// By category.
    pub category: BTreeMap<String, u64>,
    /// By classification.
    pub classification: BTreeMap<String, u64>,
    /// By delivery mode offered (a listing offering two counts under both).
    pub delivery_mode: BTreeMap<String, u64>,
    /// By origin zone.
    pub origin: BTreeMap<String, u64>,
}

/// One page of results.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page {
    /// The listings, in the page's order.
    pub items: Vec<ListingView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// Number of matches (all pages), exact.
    pub total: u64,
    /// The order of `items`.
    pub sort: Sort,
    /// For each facet, the number of matches per value: matches of `q` and of every filter
    /// but that facet's own (so a facet's other values show what choosing them would find),
    /// exact; values with no match are left out.
    pub facets: Facets,
    /// How many listing changes the search index had not taken in when the page was read: 0
    /// for a `linearizable` read (it waits for the index); with `consistency=local` more only
    /// when the index did not catch up within a second (a rebuild).
    pub index_lag: u64,
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
    let Some(mut v) = listings::with_history(conn, id).await? else {
        return Ok(None);
    };
    v.provenance = Some(provenance(conn, &v, own).await?);
    Ok(Some(v))
}
