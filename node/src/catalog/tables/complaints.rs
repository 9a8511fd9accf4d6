//! The complaints table and their history (schema v19). The rules are in
//! `catalog::complaints`.

use rusqlite::OptionalExtension as _;
use sqlx::{Row as _, SqliteConnection};
use xchg_protocol::Timestamp;

use super::{int, uint};
use crate::catalog::Actor;
use crate::catalog::complaints::{
    ComplaintState, ComplaintStep, ComplaintView, NewComplaint, Target, TargetKind,
};
use crate::sqlite::undecodable;

fn state_of(s: &str) -> Result<ComplaintState, String> {
    ComplaintState::parse(s).ok_or_else(|| format!("unknown complaint state {s:?}"))
}

fn kind_of(s: &str) -> Result<TargetKind, String> {
    TargetKind::parse(s).ok_or_else(|| format!("unknown complaint target kind {s:?}"))
}

/// Records `c`, filed by `actor` at `at`, as `received`; returns its number.
///
/// # Errors
/// SQLite's error.
pub fn insert(
    db: &rusqlite::Connection,
    c: &NewComplaint,
    at: Timestamp,
    actor: &Actor,
    raft_index: u64,
) -> rusqlite::Result<u64> {
    db.prepare_cached(
        "INSERT INTO complaints (target_kind, target_id, category, text, state, filed_at, \
            filed_by, filed_role, raft_index, updated_at) \
         VALUES (?1, ?2, ?3, ?4, 'received', ?5, ?6, ?7, ?8, ?5) RETURNING id",
    )?
    .query_row(
        rusqlite::params![
            c.target.kind.as_str(),
            c.target.id,
            c.category,
            c.text,
            int(at.0),
            actor.id,
            actor.role.as_str(),
            int(raft_index),
        ],
        |row| row.get::<_, i64>(0),
    )
    .map(uint)
}

/// How many complaints `filed_by` has open.
///
/// # Errors
/// SQLite's error.
pub fn open_of(db: &rusqlite::Connection, filed_by: &str) -> rusqlite::Result<i64> {
    db.prepare_cached(
        "SELECT count(*) FROM complaints WHERE filed_by = ?1 \
         AND state IN ('received', 'investigating')",
    )?
    .query_row([filed_by], |row| row.get(0))
}

/// A complaint as the rules read it.
pub struct Row {
    /// Its number.
    pub id: u64,
    /// Its target.
    pub target: Target,
    /// Its state.
    pub state: ComplaintState,
    /// The listing suspended under it.
    pub suspended_listing: Option<String>,
}

/// Complaint `id`, on the writer.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub fn get(db: &rusqlite::Connection, id: u64) -> rusqlite::Result<Option<Row>> {
    let row: Option<(String, String, String, Option<String>)> = db
        .prepare_cached(
            "SELECT target_kind, target_id, state, suspended_listing FROM complaints \
             WHERE id = ?1",
        )?
        .query_row([int(id)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((kind, target_id, state, suspended_listing)) = row else {
        return Ok(None);
    };
    Ok(Some(Row {
        id,
        target: Target {
            kind: kind_of(&kind).map_err(undecodable)?,
            id: target_id,
        },
        state: state_of(&state).map_err(undecodable)?,
        suspended_listing,
    }))
}

/// Sets complaint `id`'s state.
///
/// # Errors
/// SQLite's error.
pub fn set_state(
    db: &rusqlite::Connection,
    id: u64,
    state: ComplaintState,
    at: Timestamp,
) -> rusqlite::Result<()> {
    db.prepare_cached("UPDATE complaints SET state = ?1, updated_at = ?2 WHERE id = ?3")?
        .execute(rusqlite::params![state.as_str(), int(at.0), int(id)])
        .map(drop)
}

/// Sets (or clears) the listing suspended under complaint `id`.
///
/// # Errors
/// SQLite's error.
pub fn set_suspended(
    db: &rusqlite::Connection,
    id: u64,
    listing: Option<&str>,
    at: Timestamp,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "UPDATE complaints SET suspended_listing = ?1, updated_at = ?2 WHERE id = ?3",
    )?
    .execute(rusqlite::params![listing, int(at.0), int(id)])
    .map(drop)
}

/// One step to record in a complaint's history.
pub struct HistoryEntry<'a> {
    /// The Raft index of the command.
    pub raft_index: u64,
    /// The command's time.
    pub at: Timestamp,
    /// Who.
    pub actor: &'a Actor,
    /// What.
    pub action: &'a str,
    /// The state before.
    pub from: Option<ComplaintState>,
    /// The state after.
    pub to: ComplaintState,
    /// The note.
    pub note: Option<&'a str>,
}

/// Appends `e` to complaint `id`'s history.
///
/// # Errors
/// SQLite's error.
pub fn record_history(
    db: &rusqlite::Connection,
    id: u64,
    e: &HistoryEntry<'_>,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO complaint_history (complaint_id, seq, raft_index, at, actor, role, action, \
            from_state, to_state, note) \
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM complaint_history \
                      WHERE complaint_id = ?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(rusqlite::params![
        int(id),
        int(e.raft_index),
        int(e.at.0),
        e.actor.id,
        e.actor.role.as_str(),
        e.action,
        e.from.map(ComplaintState::as_str),
        e.to.as_str(),
        e.note,
    ])
    .map(drop)
}

const SELECT_VIEW: &str = "SELECT id, target_kind, target_id, category, text, state, filed_at, \
    filed_by, filed_role, updated_at, suspended_listing FROM complaints";

fn view_of(r: &sqlx::sqlite::SqliteRow) -> Result<ComplaintView, sqlx::Error> {
    let decode = |e: String| sqlx::Error::Decode(e.into());
    let time = |t: i64| Timestamp(uint(t));
    let kind: String = r.try_get("target_kind")?;
    let state: String = r.try_get("state")?;
    Ok(ComplaintView {
        id: uint(r.try_get("id")?),
        target: Target {
            kind: kind_of(&kind).map_err(decode)?,
            id: r.try_get("target_id")?,
        },
        category: r.try_get("category")?,
        text: r.try_get("text")?,
        state: state_of(&state).map_err(decode)?,
        filed_at: time(r.try_get("filed_at")?),
        filed_by: r.try_get("filed_by")?,
        filed_role: r.try_get("filed_role")?,
        updated_at: time(r.try_get("updated_at")?),
        suspended_listing: r.try_get("suspended_listing")?,
        history: Vec::new(),
    })
}

/// Complaint `id` without its history, on a reader.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn view(
    conn: &mut SqliteConnection,
    id: u64,
) -> Result<Option<ComplaintView>, sqlx::Error> {
    let row = sqlx::query(&format!("{SELECT_VIEW} WHERE id = ?"))
        .bind(int(id))
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(view_of).transpose()
}

/// Complaint `id`'s history, oldest first, on a reader.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn history(
    conn: &mut SqliteConnection,
    id: u64,
) -> Result<Vec<ComplaintStep>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT at, actor, role, action, from_state, to_state, note FROM complaint_history \
         WHERE complaint_id = ? ORDER BY seq",
    )
    .bind(int(id))
    .fetch_all(&mut *conn)
    .await?;
    let decode = |e: String| sqlx::Error::Decode(e.into());
    rows.iter()
        .map(|r| {
            let from: Option<String> = r.try_get("from_state")?;
            let to: String = r.try_get("to_state")?;
            Ok(ComplaintStep {
                at: Timestamp(uint(r.try_get("at")?)),
                actor: r.try_get("actor")?,
                role: r.try_get("role")?,
                action: r.try_get("action")?,
                from: from.as_deref().map(state_of).transpose().map_err(decode)?,
                to: state_of(&to).map_err(decode)?,
                note: r.try_get("note")?,
            })
        })
        .collect()
}

/// What a list of complaints asks for; every field given narrows it.
#[derive(Debug, Clone, Default)]
pub struct ComplaintFilter {
    /// Only in this state.
    pub state: Option<ComplaintState>,
    /// Only filed by this actor (a provider's or buyer's token sees its own only).
    pub filed_by: Option<String>,
    /// Only against this kind of target.
    pub target_kind: Option<TargetKind>,
    /// Only against this target id.
    pub target_id: Option<String>,
    /// Only with numbers below this one.
    pub before: Option<u64>,
}

/// The complaints `filter` selects, newest first, at most `rows`, on a reader.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn list(
    conn: &mut SqliteConnection,
    filter: &ComplaintFilter,
    rows: i64,
) -> Result<Vec<ComplaintView>, sqlx::Error> {
    let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!("{SELECT_VIEW} WHERE 1 = 1"));
    if let Some(state) = filter.state {
        qb.push(" AND state = ").push_bind(state.as_str());
    }
    if let Some(filed_by) = &filter.filed_by {
        qb.push(" AND filed_by = ").push_bind(filed_by.as_str());
    }
    if let Some(kind) = filter.target_kind {
        qb.push(" AND target_kind = ").push_bind(kind.as_str());
    }
    if let Some(id) = &filter.target_id {
        qb.push(" AND target_id = ").push_bind(id.as_str());
    }
    if let Some(before) = filter.before {
        qb.push(" AND id < ").push_bind(int(before));
    }
    qb.push(" ORDER BY id DESC LIMIT ").push_bind(rows);
    let found = qb.build().fetch_all(&mut *conn).await?;
    found.iter().map(view_of).collect()
}
