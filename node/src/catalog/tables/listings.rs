//! The `listings` table (the current version of every listing held, with its zone-local
//! state), its history (`listing_history`) and this member's change clock (`listing_clock`,
//! `listing_changes`), which the search index (`crate::search`, off the apply path) follows:
//! every change of a row takes the clock's next number, by trigger (`catalog_schema_v22.sql`).

use rusqlite::OptionalExtension as _;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use xchg_protocol::canonical::{Limits, from_stored};
use xchg_protocol::{ContentId, Listing, Timestamp};

use super::{enum_name, int, packed, uint};
use crate::catalog::ListingState;
use crate::catalog::query::{HistoryEntry, ListingView};
use crate::sqlite::undecodable;

/// A listing version's id and its canonical bytes, computed once.
struct Encoded {
    id: ContentId,
    bytes: Vec<u8>,
}

impl Encoded {
    fn of(listing: &Listing) -> Self {
        let bytes = listing.canonical_bytes();
        Encoded {
            id: listing.listing_id.unwrap_or_else(|| ContentId::of(&bytes)),
            bytes,
        }
    }
}

/// A new listings row; an id that is already there is left as it is.
const INSERT_LISTING: &str = "INSERT INTO listings (id, version, state, origin, submitted_by, \
    provider_id, category, classification, body) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
    ON CONFLICT (id) DO NOTHING";

/// The same values over an existing row, keeping its first-seen order.
const UPDATE_LISTING: &str = "UPDATE listings SET version = ?2, state = ?3, origin = ?4, \
    submitted_by = ?5, provider_id = ?6, category = ?7, classification = ?8, body = ?9 \
    WHERE id = ?1";

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

    /// Inserts the row unless its id is there. Returns the new row's `seq`, `None` if the id
    /// was there.
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

    /// Runs `sql` ([`INSERT_LISTING`] or [`UPDATE_LISTING`]) with the row's 9 values, the
    /// body packed ([`packed::pack`]).
    fn run(&self, db: &rusqlite::Connection, sql: &str) -> rusqlite::Result<usize> {
        let l = self.listing;
        let body = packed::pack(&self.encoded.bytes)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        db.prepare_cached(sql)?.execute(rusqlite::params![
            self.encoded.id.to_string(),
            i64::from(l.version),
            self.state.as_str(),
            l.origin.to_string(),
            self.submitted_by,
            l.provider.id.to_string(),
            l.category,
            enum_name(&l.classification),
            body,
        ])
    }
}

/// Draws a new epoch for the listing clock: every row was renumbered (a snapshot replaced
/// them), so the search index starts over.
///
/// # Errors
/// SQLite's error.
pub fn new_clock_epoch(db: &rusqlite::Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "UPDATE listing_clock SET epoch = abs(random() % 9007199254740991) WHERE id = 1",
    )
}

/// The listing clock: the number of the latest change of a listings row, and the epoch of the
/// numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clock {
    /// The latest change's number (0: none yet).
    pub change: i64,
    /// The numbering's epoch.
    pub epoch: i64,
}

/// The listing clock as of this read.
///
/// # Errors
/// SQLite's error.
pub async fn clock(conn: &mut SqliteConnection) -> Result<Clock, sqlx::Error> {
    let (change, epoch): (i64, i64) =
        sqlx::query_as("SELECT n, epoch FROM listing_clock WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?;
    Ok(Clock { change, epoch })
}

/// One changed listings row, as the search index takes it.
#[derive(Debug, Clone)]
pub struct Changed {
    /// Its order of first appearance (the index's key).
    pub seq: i64,
    /// The number of its latest change.
    pub change: i64,
    /// Its state in this zone.
    pub state: String,
    /// Its current version as stored: packed or plain ([`Changed::listing`]).
    pub body: Vec<u8>,
}

impl Changed {
    /// Its current version.
    ///
    /// # Errors
    /// A body that does not unpack or decode (a damaged file, or a bug).
    pub fn listing(&self) -> Result<Listing, sqlx::Error> {
        decode(&self.body)
    }
}

/// The rows changed after change `after`, in change order, at most `limit`.
///
/// # Errors
/// SQLite's error.
pub async fn changed_since(
    conn: &mut SqliteConnection,
    after: i64,
    limit: u32,
) -> Result<Vec<Changed>, sqlx::Error> {
    let rows: Vec<(i64, i64, String, Vec<u8>)> = sqlx::query_as(
        "SELECT l.seq, c.change, l.state, l.body FROM listing_changes c \
         JOIN listings l ON l.seq = c.seq WHERE c.change > ?1 ORDER BY c.change LIMIT ?2",
    )
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, change, state, body)| Changed {
            seq,
            change,
            state,
            body,
        })
        .collect())
}

/// The listings with these `seq`s as the API shows them, in the order given (a `seq` not held
/// is left out).
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn views_by_seq(
    conn: &mut SqliteConnection,
    seqs: &[i64],
) -> Result<Vec<ListingView>, sqlx::Error> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let mut qb = QueryBuilder::<Sqlite>::new(
        "SELECT seq, id, state, submitted_by, body FROM listings WHERE seq IN (",
    );
    let mut list = qb.separated(", ");
    for seq in seqs {
        list.push_bind(*seq);
    }
    qb.push(")");
    let rows = qb.build().fetch_all(&mut *conn).await?;
    let mut by_seq = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        by_seq.insert(row.try_get::<i64, _>("seq")?, view(row)?);
    }
    Ok(seqs.iter().filter_map(|s| by_seq.remove(s)).collect())
}

/// The newest `limit` listings held, newest first (tests read the whole catalog with it).
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn newest(
    conn: &mut SqliteConnection,
    limit: u32,
) -> Result<Vec<ListingView>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, id, state, submitted_by, body FROM listings ORDER BY seq DESC LIMIT ?",
    )
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(view).collect()
}

/// One page of what a zone publishes to harvesters (`GET /v1/catalog/dcat`).
pub struct Published {
    /// The listings, each with its `seq`, in `seq` order.
    pub items: Vec<(i64, ListingView)>,
    /// Where the next page starts after, if there may be more.
    pub next: Option<i64>,
}

/// The listings a zone publishes to harvesters: listed or recognised, classified public or
/// general; those after `seq` `after`, in `seq` order, at most `limit`. At most `window` rows
/// are looked at, whatever they hold, so a page costs the same however few of them are
/// published: a page may hold fewer than `limit` (none, even) and still have a next one.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn published_after(
    conn: &mut SqliteConnection,
    after: i64,
    limit: u32,
    window: u32,
) -> Result<Published, sqlx::Error> {
    let (looked, last): (i64, Option<i64>) = sqlx::query_as(
        "SELECT count(*), max(seq) FROM \
           (SELECT seq FROM listings WHERE seq > ?1 ORDER BY seq LIMIT ?2)",
    )
    .bind(after)
    .bind(i64::from(window))
    .fetch_one(&mut *conn)
    .await?;
    let Some(last) = last else {
        return Ok(Published {
            items: Vec::new(),
            next: None,
        });
    };
    let rows = sqlx::query(
        "SELECT seq, id, state, submitted_by, body FROM listings \
         WHERE seq > ?1 AND seq <= ?2 AND state IN ('listed', 'recognised') \
           AND classification IN ('public', 'general') \
         ORDER BY seq LIMIT ?3",
    )
    .bind(after)
    .bind(last)
    .bind(i64::from(limit) + 1)
    .fetch_all(&mut *conn)
    .await?;
    let mut items = rows
        .iter()
        .map(|row| Ok((row.try_get::<i64, _>("seq")?, view(row)?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|(seq, _)| *seq)
    } else if looked >= i64::from(window) {
        // The window was full: rows after it may hold more.
        Some(last)
    } else {
        None
    };
    Ok(Published { items, next })
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
    NewRow::new(listing, state, submitted_by)
        .replace(db)
        .map(drop)
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
            "INSERT INTO listing_history (listing_seq, seq, raft_index, at, actor, role, action, \
             from_state, to_state, version, detail) \
             SELECT l.seq, (SELECT COALESCE(MAX(h.seq), 0) + 1 FROM listing_history h \
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
         WHERE listing_seq = (SELECT seq FROM listings WHERE id = ?2) \
           AND seq = (SELECT MAX(h.seq) FROM listing_history h \
                      WHERE h.listing_seq = listing_history.listing_seq)",
    )?
    .execute([detail, id])
    .map(drop)
}

/// Records the submission of the new row `seq` (a listing's version 1): the first entry of its
/// history, written without looking the row up.
///
/// # Errors
/// SQLite's error.
pub fn record_submission(
    db: &rusqlite::Connection,
    seq: i64,
    raft_index: u64,
    at: Timestamp,
    by: By<'_>,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO listing_history (listing_seq, seq, raft_index, at, actor, role, action, \
         from_state, to_state, version, detail) \
         VALUES (?1, 1, ?2, ?3, ?4, ?5, 'submit', NULL, ?6, 1, NULL)",
    )?
    .execute(rusqlite::params![
        seq,
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
    let listing = decode(&body).map_err(undecodable)?;
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

const OWNER: &str = "SELECT body, state, origin, provider_id FROM listings WHERE id = ?1";

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
            let body: Vec<u8> = row.get(0)?;
            let body = packed::unpack(&body).map_err(undecodable)?;
            Ok(Owner {
                content_id: ContentId::of(&body).to_string(),
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
    let row: Option<(Vec<u8>, String, String, String)> = sqlx::query_as(OWNER)
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|(body, state, origin, provider)| {
        Ok(Owner {
            content_id: content_id(&body)?,
            state,
            origin,
            provider,
        })
    })
    .transpose()
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
    let row: Option<(String, i64, String, Vec<u8>)> =
        sqlx::query_as("SELECT origin, version, state, body FROM listings WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    row.map(|(origin, version, state, body)| {
        Ok(HeldCopy {
            origin,
            version: u32::try_from(version).unwrap_or(u32::MAX),
            state,
            content_id: content_id(&body)?,
        })
    })
    .transpose()
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

/// The canonical bytes of a stored body ([`packed::unpack`]).
fn canonical(body: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, sqlx::Error> {
    packed::unpack(body).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// The content id of a stored body's version: the hash of its canonical bytes.
fn content_id(body: &[u8]) -> Result<String, sqlx::Error> {
    Ok(ContentId::of(&canonical(body)?).to_string())
}

fn decode_canonical(bytes: &[u8]) -> Result<Listing, sqlx::Error> {
    from_stored(bytes, &Limits::default()).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn decode(body: &[u8]) -> Result<Listing, sqlx::Error> {
    decode_canonical(&canonical(body)?)
}

fn view(row: &sqlx::sqlite::SqliteRow) -> Result<ListingView, sqlx::Error> {
    let body = row.try_get::<Vec<u8>, _>("body")?;
    let bytes = canonical(&body)?;
    Ok(ListingView {
        id: row.try_get("id")?,
        state: row.try_get("state")?,
        content_id: ContentId::of(&bytes).to_string(),
        submitted_by: row.try_get("submitted_by")?,
        listing: decode_canonical(&bytes)?,
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
    let row = sqlx::query("SELECT id, state, submitted_by, body FROM listings WHERE id = ?")
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
