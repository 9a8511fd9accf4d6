//! The `listings` table (the current version of every listing held, with its zone-local
//! state), its history (`listing_history`) and its full-text index (`listings_fts`).
//!
//! Search uses the FTS5 trigram index for terms of three or more characters and a substring
//! scan for shorter ones (two-character Chinese words are common and trigrams cannot match
//! them). Results come newest first and are never ranked, so a common term costs no more than
//! reading one page: ranking every match is what makes common terms slow on large catalogs.

use rusqlite::OptionalExtension as _;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use xchg_protocol::canonical::{Limits, from_canonical};
use xchg_protocol::{ContentId, Listing, Timestamp, ZoneId};

use super::{enum_name, int, set_text, uint};
use crate::catalog::ListingState;
use crate::catalog::query::{COUNT_CAP, DEFAULT_PAGE, HistoryEntry, ListingView, MAX_PAGE};
use crate::catalog::query::{Page, Search};
use crate::sqlite::undecodable;

/// A listing version's canonical bytes and the ids derived from them, computed once.
struct Encoded {
    id: ContentId,
    content_id: ContentId,
    bytes: Vec<u8>,
}

impl Encoded {
    fn of(listing: &Listing) -> Self {
        let bytes = listing.canonical_bytes();
        let content_id = ContentId::of(&bytes);
        Encoded {
            id: listing.listing_id.unwrap_or(content_id),
            content_id,
            bytes,
        }
    }
}

/// A new listings row; an id that is already there is left as it is.
const INSERT_LISTING: &str = "INSERT INTO listings (id, version, content_id, state, origin, \
    submitted_by, provider_id, provider_name, category, classification, delivery_modes, title, \
    description, keywords, scenarios, created_at, updated_at, body) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) \
    ON CONFLICT (id) DO NOTHING";

/// The same values over an existing row, keeping its first-seen order and creation time (?16).
/// Its update trigger keeps the search index in step.
const UPDATE_LISTING: &str = "UPDATE listings SET version = ?2, content_id = ?3, state = ?4, \
    origin = ?5, submitted_by = ?6, provider_id = ?7, provider_name = ?8, category = ?9, \
    classification = ?10, delivery_modes = ?11, title = ?12, description = ?13, keywords = ?14, \
    scenarios = ?15, updated_at = ?17, body = ?18 WHERE id = ?1";

/// One row of the listings table, to be written.
pub struct NewRow<'a> {
    listing: &'a Listing,
    encoded: Encoded,
    state: ListingState,
    submitted_by: &'a str,
}

impl<'a> NewRow<'a> {
    /// The row of `listing` in `state`, submitted by `submitted_by`.
    pub fn new(listing: &'a Listing, state: ListingState, submitted_by: &'a str) -> Self {
        NewRow {
            listing,
            encoded: Encoded::of(listing),
            state,
            submitted_by,
        }
    }

    /// The listing id the row is stored under.
    pub fn id(&self) -> &ContentId {
        &self.encoded.id
    }

    /// Inserts the row unless its id is there. Returns the new row's `seq` (to be indexed with
    /// [`index`]), `None` if the id was there.
    ///
    /// # Errors
    /// SQLite's error.
    pub fn insert(&self, db: &rusqlite::Connection) -> rusqlite::Result<Option<i64>> {
        let inserted = self.run(db, INSERT_LISTING)? == 1;
        Ok(inserted.then(|| db.last_insert_rowid()))
    }

    /// Writes the row over the one with its id, or inserts it; returns the `seq` as
    /// [`NewRow::insert`] does.
    fn replace(&self, db: &rusqlite::Connection) -> rusqlite::Result<Option<i64>> {
        if self.run(db, UPDATE_LISTING)? == 1 {
            return Ok(None);
        }
        self.insert(db)
    }

    /// Runs `sql` ([`INSERT_LISTING`] or [`UPDATE_LISTING`]) with the row's 18 values.
    fn run(&self, db: &rusqlite::Connection, sql: &str) -> rusqlite::Result<usize> {
        let l = self.listing;
        db.prepare_cached(sql)?.execute(rusqlite::params![
            self.encoded.id.to_string(),
            i64::from(l.version),
            self.encoded.content_id.to_string(),
            self.state.as_str(),
            l.origin.to_string(),
            self.submitted_by,
            l.provider.id.to_string(),
            l.provider.name,
            l.category,
            enum_name(&l.classification),
            modes(l),
            l.title,
            l.description,
            join(&l.keywords),
            join(&l.scenarios),
            int(l.created_at.0),
            int(l.updated_at.0),
            self.encoded.bytes,
        ])
    }
}

fn join(values: &[String]) -> String {
    values.join("\n")
}

fn modes(listing: &Listing) -> String {
    let names: Vec<String> = listing.delivery_modes.iter().map(enum_name).collect();
    set_text(&names)
}

/// Adds the listings rows with `seq` in `first..=last` to the search index, in one statement
/// (see `catalog_schema_v4.sql` for why not per row).
///
/// # Errors
/// SQLite's error.
pub fn index(db: &rusqlite::Connection, first: i64, last: i64) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO listings_fts (rowid, title, description, keywords, scenarios, provider_name) \
         SELECT seq, title, description, keywords, scenarios, provider_name FROM listings \
         WHERE seq BETWEEN ?1 AND ?2",
    )?
    .execute([first, last])?;
    Ok(())
}

/// Rebuilds the search index from the table (after a snapshot replaced the rows; new rows are
/// indexed by the state machine, not by a trigger, since schema v4).
///
/// # Errors
/// SQLite's error.
pub fn rebuild_search_index(db: &rusqlite::Connection) -> rusqlite::Result<()> {
    db.execute_batch("INSERT INTO listings_fts (listings_fts) VALUES ('rebuild')")
}

/// Writes `listing` as the current version of its id (a new row, or replacing the old one),
/// in `state`.
///
/// # Errors
/// SQLite's error.
pub fn write(
    db: &rusqlite::Connection,
    listing: &Listing,
    state: ListingState,
    submitted_by: &str,
) -> rusqlite::Result<()> {
    match NewRow::new(listing, state, submitted_by).replace(db)? {
        Some(seq) => index(db, seq, seq),
        None => Ok(()),
    }
}

/// Sets the state of listing `id`.
///
/// # Errors
/// SQLite's error.
pub fn set_state(db: &rusqlite::Connection, id: &str, state: ListingState) -> rusqlite::Result<()> {
    db.prepare_cached("UPDATE listings SET state = ?1 WHERE id = ?2")?
        .execute([state.as_str(), id])
        .map(drop)
}

/// Who a history entry names: a person's actor id and role, or a node acting for the zone.
#[derive(Clone, Copy)]
pub struct By<'a> {
    /// The actor id.
    pub id: &'a str,
    /// Its role.
    pub role: &'a str,
}

/// One transition to record in a listing's history.
pub struct Transition<'a> {
    /// The Raft index of the command.
    pub raft_index: u64,
    /// The command's time.
    pub at: Timestamp,
    /// Who.
    pub by: By<'a>,
    /// What: submit, update, approve, reject, delist, recognise, revoke.
    pub action: &'a str,
    /// The state before (none for a new row).
    pub from: Option<ListingState>,
    /// The state after.
    pub to: ListingState,
    /// The listing version at the time.
    pub version: u32,
    /// Review record or reason (JSON).
    pub detail: Option<String>,
}

/// Appends `t` to the history of listing `id`, whose row the caller wrote first.
///
/// # Errors
/// SQLite's error; [`rusqlite::Error::QueryReturnedNoRows`] if there is no such listing (a
/// bug to stop on).
pub fn record_history(
    db: &rusqlite::Connection,
    id: &str,
    t: &Transition<'_>,
) -> rusqlite::Result<()> {
    let written = db
        .prepare_cached(
            "INSERT INTO listing_history (listing_seq, listing_id, seq, raft_index, at, actor, \
             role, action, from_state, to_state, version, detail) \
             SELECT l.seq, ?1, (SELECT COALESCE(MAX(h.seq), 0) + 1 FROM listing_history h \
                                WHERE h.listing_seq = l.seq), \
                ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 \
             FROM listings l WHERE l.id = ?1",
        )?
        .execute(rusqlite::params![
            id,
            int(t.raft_index),
            int(t.at.0),
            t.by.id,
            t.by.role,
            t.action,
            t.from.map(ListingState::as_str),
            t.to.as_str(),
            i64::from(t.version),
            t.detail,
        ])?;
    if written != 1 {
        return Err(rusqlite::Error::QueryReturnedNoRows);
    }
    Ok(())
}

/// Sets the detail of listing `id`'s latest history entry (that of the command just applied).
///
/// # Errors
/// SQLite's error.
pub fn note_latest_history(
    db: &rusqlite::Connection,
    id: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "UPDATE listing_history SET detail = ?1 \
         WHERE listing_id = ?2 \
           AND seq = (SELECT MAX(seq) FROM listing_history WHERE listing_id = ?2)",
    )?
    .execute([detail, id])
    .map(drop)
}

/// Records the submission of the new row `seq` (listing `id`, version 1): the first entry of
/// its history, written without looking the row up.
///
/// # Errors
/// SQLite's error.
pub fn record_submission(
    db: &rusqlite::Connection,
    seq: i64,
    id: &str,
    raft_index: u64,
    at: Timestamp,
    by: By<'_>,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO listing_history (listing_seq, listing_id, seq, raft_index, at, actor, role, \
         action, from_state, to_state, version, detail) \
         VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, 'submit', NULL, ?7, 1, NULL)",
    )?
    .execute(rusqlite::params![
        seq,
        id,
        int(raft_index),
        int(at.0),
        by.id,
        by.role,
        ListingState::Submitted.as_str(),
    ])
    .map(drop)
}

/// The current row of a listing: state, submitter and decoded current version.
pub struct Current {
    /// Its state in this zone.
    pub state: ListingState,
    /// Who submitted it (the only party that may update it), or the federation.
    pub submitted_by: String,
    /// The current version.
    pub listing: Listing,
}

/// The current row of listing `id`, if held.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub fn current(db: &rusqlite::Connection, id: &str) -> rusqlite::Result<Option<Current>> {
    let row = db
        .prepare_cached("SELECT state, submitted_by, body FROM listings WHERE id = ?1")?
        .query_row([id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Vec<u8>>(2)?,
            ))
        })
        .optional()?;
    let Some((state, submitted_by, body)) = row else {
        return Ok(None);
    };
    let listing: Listing = from_canonical(&body, &Limits::default()).map_err(undecodable)?;
    let state = ListingState::parse(&state)
        .ok_or_else(|| undecodable(format!("unknown listing state {state:?}")))?;
    Ok(Some(Current {
        state,
        submitted_by,
        listing,
    }))
}

/// The state and current version of listing `id`, if held, on a reader.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn current_read(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Option<(ListingState, Listing)>, sqlx::Error> {
    let row: Option<(String, Vec<u8>)> =
        sqlx::query_as("SELECT state, body FROM listings WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((state, body)) = row else {
        return Ok(None);
    };
    let state = ListingState::parse(&state)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown listing state {state:?}").into()))?;
    Ok(Some((state, decode(&body)?)))
}

const OWNER: &str = "SELECT content_id, state, origin, provider_id FROM listings WHERE id = ?1";

/// Who a listing belongs to, as the rules of registrations need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The content id of its current version.
    pub content_id: String,
    /// Its state in this zone.
    pub state: String,
    /// Its origin zone.
    pub origin: String,
    /// Its `provider.id`.
    pub provider: String,
}

/// The owner of listing `id`, if held, on the writer (the rules).
///
/// # Errors
/// SQLite's error.
pub fn owner(db: &rusqlite::Connection, id: &str) -> rusqlite::Result<Option<Owner>> {
    db.prepare_cached(OWNER)?
        .query_row([id], |row| {
            Ok(Owner {
                content_id: row.get(0)?,
                state: row.get(1)?,
                origin: row.get(2)?,
                provider: row.get(3)?,
            })
        })
        .optional()
}

/// [`owner`] on a reader, for the API's checks before it proposes.
///
/// # Errors
/// SQLite's error.
pub async fn owner_read(
    conn: &mut SqliteConnection,
    id: &ContentId,
) -> Result<Option<Owner>, sqlx::Error> {
    let row: Option<(String, String, String, String)> = sqlx::query_as(OWNER)
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|(content_id, state, origin, provider)| Owner {
        content_id,
        state,
        origin,
        provider,
    }))
}

/// Whether this replica holds listing `id`.
///
/// # Errors
/// SQLite's error.
pub async fn exists(conn: &mut SqliteConnection, id: &ContentId) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT 1 FROM listings WHERE id = ?")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.is_some())
}

/// The copy of listing `id` held, if any: its origin, version, state and content id.
///
/// # Errors
/// SQLite's error.
pub async fn origin_and_version(
    conn: &mut SqliteConnection,
    id: &ContentId,
) -> Result<Option<HeldCopy>, sqlx::Error> {
    let row: Option<(String, i64, String, String)> =
        sqlx::query_as("SELECT origin, version, state, content_id FROM listings WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.map(|(origin, version, state, content_id)| HeldCopy {
        origin,
        version: u32::try_from(version).unwrap_or(u32::MAX),
        state,
        content_id,
    }))
}

/// What [`origin_and_version`] reads of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldCopy {
    /// Its origin zone.
    pub origin: String,
    /// Its current version.
    pub version: u32,
    /// Its state's stored name.
    pub state: String,
    /// The content id of its current version.
    pub content_id: String,
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

/// Listing `id` as the API shows it, with its history (its provenance is the caller's).
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn with_history(
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
            at: Timestamp(uint(r.try_get(1)?)),
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
            let pattern = super::contains_pattern(short);
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

/// How many listings the search index finds for `text` (a substring, as the API's `q`), for
/// tests.
#[cfg(test)]
pub async fn found(conn: &mut SqliteConnection, text: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM listings_fts WHERE listings_fts MATCH ?")
        .bind(phrase(text))
        .fetch_one(&mut *conn)
        .await
        .expect("search")
}

/// Candidate comparables for valuing listing `id` by the market approach: the listed or
/// recognised listings other than it, priced in `currency`, at most `per_query` of its category
/// and `per_query` of the others, the most recently first held first.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn comparable_candidates(
    conn: &mut SqliteConnection,
    id: &ContentId,
    category: &str,
    currency: &str,
    per_query: u32,
) -> Result<Vec<(ContentId, Listing)>, sqlx::Error> {
    let mut out = Vec::new();
    for same in [true, false] {
        let sql = if same {
            "SELECT id, body FROM listings INDEXED BY listings_category \
             WHERE category = ?1 AND id <> ?2 AND state IN ('listed', 'recognised') \
             ORDER BY seq DESC LIMIT ?3"
        } else {
            "SELECT id, body FROM listings \
             WHERE category <> ?1 AND id <> ?2 AND state IN ('listed', 'recognised') \
             ORDER BY seq DESC LIMIT ?3"
        };
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(sql)
            .bind(category)
            .bind(id.to_string())
            .bind(i64::from(per_query))
            .fetch_all(&mut *conn)
            .await?;
        for (held, body) in rows {
            let listing = decode(&body)?;
            if listing.pricing.currency.as_deref() != Some(currency) {
                continue;
            }
            let held = held
                .parse()
                .map_err(|_| sqlx::Error::Decode(format!("listing id {held:?}").into()))?;
            out.push((held, listing));
        }
    }
    Ok(out)
}

/// The listed or recognised listings of `category`, the most recently held first, at most
/// `limit`.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn listed_of_category(
    conn: &mut SqliteConnection,
    category: &str,
    limit: u32,
) -> Result<Vec<(ContentId, Listing)>, sqlx::Error> {
    let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT id, body FROM listings INDEXED BY listings_category \
         WHERE category = ?1 AND state IN ('listed', 'recognised') ORDER BY seq DESC LIMIT ?2",
    )
    .bind(category)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(id, body)| {
            let id = id
                .parse()
                .map_err(|_| sqlx::Error::Decode(format!("listing id {id:?}").into()))?;
            Ok((id, decode(&body)?))
        })
        .collect()
}
