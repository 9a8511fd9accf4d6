//! The `demands` and `demand_proposals` tables (schema v17). The rules are in
//! `catalog::demands`.

use rusqlite::OptionalExtension as _;
use sqlx::SqliteConnection;
use xchg_protocol::{ContentId, Timestamp};

use super::{int, uint};
use crate::catalog::Actor;
use crate::catalog::demands::{Acceptance, Demand, DemandState, NewDemand, Proposal};
use crate::sqlite::{undecodable, unencodable};

const COLUMNS: &str = "id, broker, body, state, posted_at, accepted";

/// A stored row before its proposals are read.
type Row = (i64, Option<String>, String, String, i64, Option<String>);

fn assemble(row: Row, proposals: Vec<Proposal>, now: Option<Timestamp>) -> Result<Demand, String> {
    let (id, broker, body, state, posted_at, accepted) = row;
    let posted: NewDemand = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let mut state = DemandState::parse(&state).ok_or(format!("unknown demand state {state:?}"))?;
    if state == DemandState::Open && now.is_some_and(|now| now >= posted.deadline) {
        state = DemandState::Expired;
    }
    let accepted = accepted
        .map(|a| serde_json::from_str::<Acceptance>(&a))
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok(Demand {
        id: uint(id),
        buyer: posted.buyer,
        broker,
        title: posted.title,
        description: posted.description,
        category: posted.category,
        scenario: posted.scenario,
        delivery_modes: posted.delivery_modes,
        budget: posted.budget,
        deadline: posted.deadline,
        state,
        posted_at: Timestamp(uint(posted_at)),
        accepted,
        proposals,
        share: posted.share,
    })
}

type ProposalRow = (i64, String, String, String, Option<String>, i64);

fn proposal(row: ProposalRow) -> Result<Proposal, String> {
    let (id, listing, by, role, note, at) = row;
    Ok(Proposal {
        id: uint(id),
        listing_id: listing
            .parse()
            .map_err(|_| format!("listing id {listing:?}"))?,
        proposed_by: by,
        role,
        note,
        at: Timestamp(uint(at)),
    })
}

const PROPOSALS: &str = "SELECT id, listing_id, proposed_by, role, note, at FROM demand_proposals \
     WHERE demand_id = ?1 ORDER BY id";

/// Records demand `d`, open; returns its number.
///
/// # Errors
/// SQLite's error.
pub fn insert(
    db: &rusqlite::Connection,
    d: &NewDemand,
    at: Timestamp,
    posted_by: &str,
    raft_index: u64,
) -> rusqlite::Result<u64> {
    let body = serde_json::to_string(d).map_err(unencodable)?;
    db.prepare_cached(
        "INSERT INTO demands (buyer, posted_by, category, title, description, body, \
            deadline, state, posted_at, raft_index) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'open', ?8, ?9) RETURNING id",
    )?
    .query_row(
        rusqlite::params![
            d.buyer.as_str(),
            posted_by,
            d.category,
            d.title,
            d.description,
            body,
            int(d.deadline.0),
            int(at.0),
            int(raft_index),
        ],
        |row| row.get::<_, i64>(0),
    )
    .map(uint)
}

/// Notes that `broker` posted demand `id` (given as its number's text).
///
/// # Errors
/// SQLite's error.
pub fn note_broker(db: &rusqlite::Connection, id: &str, broker: &str) -> rusqlite::Result<()> {
    db.prepare_cached("UPDATE demands SET broker = ?2 WHERE id = ?1")?
        .execute(rusqlite::params![id.parse::<i64>().unwrap_or(-1), broker])
        .map(drop)
}

/// How many demands of `buyer` are open at `at`.
///
/// # Errors
/// SQLite's error.
pub fn open_of(db: &rusqlite::Connection, buyer: &str, at: Timestamp) -> rusqlite::Result<i64> {
    db.prepare_cached(
        "SELECT COUNT(*) FROM demands WHERE buyer = ?1 AND state = 'open' AND deadline > ?2",
    )?
    .query_row(rusqlite::params![buyer, int(at.0)], |row| row.get(0))
}

/// Demand `id` as stored (its state not judged by any clock), on the writer.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub fn get_on(db: &rusqlite::Connection, id: u64) -> rusqlite::Result<Option<Demand>> {
    let row: Option<Row> = db
        .prepare_cached(&format!("SELECT {COLUMNS} FROM demands WHERE id = ?1"))?
        .query_row([int(id)], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    let proposals = db
        .prepare_cached(PROPOSALS)?
        .query_map([int(id)], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<ProposalRow>>>()?
        .into_iter()
        .map(proposal)
        .collect::<Result<Vec<_>, _>>()
        .map_err(undecodable)?;
    assemble(row, proposals, None)
        .map(Some)
        .map_err(undecodable)
}

/// How many proposals demand `id` has.
///
/// # Errors
/// SQLite's error.
pub fn proposal_count(db: &rusqlite::Connection, id: u64) -> rusqlite::Result<i64> {
    db.prepare_cached("SELECT COUNT(*) FROM demand_proposals WHERE demand_id = ?1")?
        .query_row([int(id)], |row| row.get(0))
}

/// Records `actor`'s proposal of `listing` to demand `id`; its number, or `None` if `actor`
/// proposed it already.
///
/// # Errors
/// SQLite's error.
pub fn insert_proposal(
    db: &rusqlite::Connection,
    id: u64,
    listing: &ContentId,
    note: Option<&str>,
    at: Timestamp,
    actor: &Actor,
    raft_index: u64,
) -> rusqlite::Result<Option<u64>> {
    db.prepare_cached(
        "INSERT INTO demand_proposals (demand_id, listing_id, proposed_by, role, note, at, \
            raft_index) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (demand_id, listing_id, proposed_by) DO NOTHING RETURNING id",
    )?
    .query_row(
        rusqlite::params![
            int(id),
            listing.to_string(),
            actor.id,
            actor.role.as_str(),
            note,
            int(at.0),
            int(raft_index),
        ],
        |row| row.get::<_, i64>(0),
    )
    .optional()
    .map(|id| id.map(uint))
}

/// Marks demand `id` accepted with `a`.
///
/// # Errors
/// SQLite's error.
pub fn accept(db: &rusqlite::Connection, id: u64, a: &Acceptance) -> rusqlite::Result<()> {
    let json = serde_json::to_string(a).map_err(unencodable)?;
    db.prepare_cached(
        "UPDATE demands SET state = 'accepted', accepted = ?2, closed_at = ?3 WHERE id = ?1",
    )?
    .execute(rusqlite::params![int(id), json, int(a.at.0)])
    .map(drop)
}

/// Sets demand `id`'s state.
///
/// # Errors
/// SQLite's error.
pub fn set_state(
    db: &rusqlite::Connection,
    id: u64,
    state: DemandState,
    at: Timestamp,
) -> rusqlite::Result<()> {
    db.prepare_cached("UPDATE demands SET state = ?2, closed_at = ?3 WHERE id = ?1")?
        .execute(rusqlite::params![int(id), state.as_str(), int(at.0)])
        .map(drop)
}

async fn proposals_read(
    conn: &mut SqliteConnection,
    id: i64,
) -> Result<Vec<Proposal>, sqlx::Error> {
    let rows: Vec<ProposalRow> = sqlx::query_as(PROPOSALS)
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    rows.into_iter()
        .map(proposal)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| sqlx::Error::Decode(e.into()))
}

/// Demand `id`, its state judged at `now`, on a reader.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn get(
    conn: &mut SqliteConnection,
    id: u64,
    now: Timestamp,
) -> Result<Option<Demand>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM demands WHERE id = ?"))
        .bind(int(id))
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let proposals = proposals_read(conn, row.0).await?;
    assemble(row, proposals, Some(now))
        .map(Some)
        .map_err(|e| sqlx::Error::Decode(e.into()))
}

/// What a search of demands narrows to.
#[derive(Debug, Default)]
pub struct Filter<'a> {
    /// Text in the title or description.
    pub q: Option<&'a str>,
    /// The category.
    pub category: Option<&'a str>,
    /// The buyer.
    pub buyer: Option<&'a str>,
    /// Only open ones (deadline after `now`).
    pub open: bool,
    /// Numbers below this one (the next page).
    pub before: Option<u64>,
}

/// Demands matching `f`, newest first, at most `limit`, their states judged at `now`.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn search(
    conn: &mut SqliteConnection,
    f: &Filter<'_>,
    limit: u32,
    now: Timestamp,
) -> Result<Vec<Demand>, sqlx::Error> {
    let like = f.q.map(super::contains_pattern);
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM demands \
         WHERE (?1 IS NULL OR title LIKE ?1 ESCAPE '\\' OR description LIKE ?1 ESCAPE '\\') \
           AND (?2 IS NULL OR category = ?2) AND (?3 IS NULL OR buyer = ?3) \
           AND (?4 = 0 OR (state = 'open' AND deadline > ?5)) AND id < ?6 \
         ORDER BY id DESC LIMIT ?7"
    ))
    .bind(like)
    .bind(f.category)
    .bind(f.buyer)
    .bind(f.open)
    .bind(int(now.0))
    .bind(f.before.map_or(i64::MAX, int))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let proposals = proposals_read(conn, row.0).await?;
        out.push(assemble(row, proposals, Some(now)).map_err(|e| sqlx::Error::Decode(e.into()))?);
    }
    Ok(out)
}
