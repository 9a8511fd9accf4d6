//! The party registry's tables (schema v7): `parties` (a row for every party that applied, and
//! for a founding party once its state changed), `party_history` (each change of a party's
//! state) and `entrustments` (what a party entrusted a broker with). The rules are in
//! `catalog::parties`.

use rusqlite::OptionalExtension as _;
use sqlx::{Row, SqliteConnection};
use xchg_protocol::{PartyId, PartyKind, PartyProfile, Timestamp};

use super::{int, set_of, set_text, uint};
use crate::catalog::parties::{
    Act, Entrustment, EntrustmentGrant, PartyFilter, PartyHistoryEntry, PartyOrigin, PartyState,
    PartyView,
};
use crate::sqlite::{undecodable, unencodable};

/// Kinds in their stored form ([`set_text`]), found with `instr`, not `LIKE`, whose `_` would
/// match any character.
fn kinds_text(kinds: &[PartyKind]) -> String {
    set_text(&kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>())
}

fn kinds_of(text: &str) -> Vec<PartyKind> {
    set_of(text, |k| k.parse().ok())
}

fn acts_text(acts: &[Act]) -> String {
    set_text(&acts.iter().map(|a| a.as_str()).collect::<Vec<_>>())
}

fn acts_of(text: &str) -> Vec<Act> {
    set_of(text, Act::parse)
}

fn state_of(s: &str) -> Result<PartyState, String> {
    PartyState::parse(s).ok_or_else(|| format!("unknown party state {s:?}"))
}

const STATE_AND_KINDS: &str = "SELECT state, kinds FROM parties WHERE id = ?1";

/// A stored `(state, kinds)` as the rules read it.
fn state_and_kinds_of(
    (state, kinds): (String, String),
) -> Result<(PartyState, Vec<PartyKind>), String> {
    Ok((state_of(&state)?, kinds_of(&kinds)))
}

/// The state and kinds recorded for party `id`, if it has a row.
///
/// # Errors
/// SQLite's error, or a state this build does not know.
pub fn state_and_kinds(
    db: &rusqlite::Connection,
    id: &str,
) -> rusqlite::Result<Option<(PartyState, Vec<PartyKind>)>> {
    db.prepare_cached(STATE_AND_KINDS)?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?
        .map(|row| state_and_kinds_of(row).map_err(undecodable))
        .transpose()
}

/// [`state_and_kinds`] on a reader, for the API's checks before it proposes.
///
/// # Errors
/// SQLite's error, or a state this build does not know.
pub async fn state_and_kinds_read(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Option<(PartyState, Vec<PartyKind>)>, sqlx::Error> {
    let row: Option<(String, String)> = sqlx::query_as(STATE_AND_KINDS)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|row| state_and_kinds_of(row).map_err(|e| sqlx::Error::Decode(e.into())))
        .transpose()
}

/// The state and credit code recorded for party `id`, if it has a row.
///
/// # Errors
/// SQLite's error, or a state this build does not know.
pub fn state_and_code(
    db: &rusqlite::Connection,
    id: &str,
) -> rusqlite::Result<Option<(PartyState, String)>> {
    let row: Option<(String, String)> = db
        .prepare_cached("SELECT state, credit_code FROM parties WHERE id = ?1")?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    row.map(|(state, code)| Ok((state_of(&state).map_err(undecodable)?, code)))
        .transpose()
}

/// The party other than `except` that holds credit code `code`, if any.
///
/// # Errors
/// SQLite's error.
pub fn holder_of_code(
    db: &rusqlite::Connection,
    code: &str,
    except: &str,
) -> rusqlite::Result<Option<String>> {
    db.prepare_cached("SELECT id FROM parties WHERE credit_code = ?1 AND id <> ?2")?
        .query_row([code, except], |row| row.get(0))
        .optional()
}

/// How many applications await a decision.
///
/// # Errors
/// SQLite's error.
pub fn pending_applications(db: &rusqlite::Connection) -> rusqlite::Result<i64> {
    db.prepare_cached("SELECT count(*) FROM parties WHERE state = 'applied'")?
        .query_row([], |row| row.get(0))
}

/// Writes a party's row (a new one, or over a refused applicant's or a founding party's).
///
/// # Errors
/// SQLite's error.
pub fn write(
    db: &rusqlite::Connection,
    profile: &PartyProfile,
    state: PartyState,
    origin: &str,
    at: Timestamp,
) -> rusqlite::Result<()> {
    let contact = serde_json::to_string(&profile.contact).map_err(unencodable)?;
    db.prepare_cached(
        "INSERT INTO parties (id, name, credit_code, kinds, contact, state, origin, applied_at, \
            updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) \
         ON CONFLICT (id) DO UPDATE SET name = ?2, credit_code = ?3, kinds = ?4, contact = ?5, \
            state = ?6, updated_at = ?8",
    )?
    .execute(rusqlite::params![
        profile.id.as_str(),
        profile.name,
        profile.credit_code.as_str(),
        kinds_text(&profile.kinds),
        contact,
        state.as_str(),
        origin,
        int(at.0),
    ])
    .map(drop)
}

/// Sets the state of party `id` at `at`.
///
/// # Errors
/// SQLite's error.
pub fn set_state(
    db: &rusqlite::Connection,
    id: &str,
    state: PartyState,
    at: Timestamp,
) -> rusqlite::Result<()> {
    db.prepare_cached("UPDATE parties SET state = ?1, updated_at = ?2 WHERE id = ?3")?
        .execute(rusqlite::params![state.as_str(), int(at.0), id])
        .map(drop)
}

/// One change of a party's state, to record.
pub struct Change<'a> {
    /// The Raft index of the command.
    pub raft_index: u64,
    /// The command's time.
    pub at: Timestamp,
    /// The actor id (or `anonymous via <node>`).
    pub actor: &'a str,
    /// Its role (or `anonymous`).
    pub role: &'a str,
    /// apply, admit, refuse, suspend, reinstate.
    pub action: &'a str,
    /// The state before (none for a first application).
    pub from: Option<PartyState>,
    /// The state after.
    pub to: PartyState,
    /// The decision's reason or notes.
    pub reason: Option<&'a str>,
}

/// Appends `c` to party `id`'s history.
///
/// # Errors
/// SQLite's error.
pub fn record_history(db: &rusqlite::Connection, id: &str, c: &Change<'_>) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO party_history (party_id, seq, raft_index, at, actor, role, action, \
            from_state, to_state, reason) \
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM party_history WHERE party_id = ?1), \
            ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(rusqlite::params![
        id,
        int(c.raft_index),
        int(c.at.0),
        c.actor,
        c.role,
        c.action,
        c.from.map(PartyState::as_str),
        c.to.as_str(),
        c.reason,
    ])
    .map(drop)
}

/// Records `grant`, granted at `at` by `granted_by` (the entry at `raft_index`); returns its
/// number.
///
/// # Errors
/// SQLite's error.
pub fn insert_entrustment(
    db: &rusqlite::Connection,
    grant: &EntrustmentGrant,
    at: Timestamp,
    granted_by: &str,
    raft_index: u64,
) -> rusqlite::Result<i64> {
    db.prepare_cached(
        "INSERT INTO entrustments (party, broker, scope, expires_at, granted_at, granted_by, \
            raft_index) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
    )?
    .query_row(
        rusqlite::params![
            grant.party.as_str(),
            grant.broker.as_str(),
            acts_text(&grant.scope),
            int(grant.expires_at.0),
            int(at.0),
            granted_by,
            int(raft_index),
        ],
        |row| row.get(0),
    )
}

/// Ends entrustment `id` at `at`, by `by`, for `reason`.
///
/// # Errors
/// SQLite's error.
pub fn revoke_entrustment(
    db: &rusqlite::Connection,
    id: u64,
    at: Timestamp,
    by: &str,
    reason: &str,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "UPDATE entrustments SET revoked_at = ?1, revoked_by = ?2, revoke_reason = ?3 \
         WHERE id = ?4",
    )?
    .execute(rusqlite::params![int(at.0), by, reason, int(id)])
    .map(drop)
}

const SELECT_ENTRUSTMENT: &str = "SELECT id, party, broker, scope, expires_at, granted_at, \
    granted_by, revoked_at, revoked_by, revoke_reason FROM entrustments";

/// The columns of [`SELECT_ENTRUSTMENT`], as either driver reads them.
type EntrustmentRow = (
    i64,
    String,
    String,
    String,
    i64,
    i64,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
);

fn entrustment_of(row: EntrustmentRow) -> Result<Entrustment, String> {
    let (id, party, broker, scope, expires_at, granted_at, granted_by, revoked_at, by, why) = row;
    let party_id = |s: &str| {
        s.parse::<PartyId>()
            .map_err(|e| format!("party id {s}: {e}"))
    };
    Ok(Entrustment {
        id: uint(id),
        party: party_id(&party)?,
        broker: party_id(&broker)?,
        scope: acts_of(&scope),
        expires_at: Timestamp(uint(expires_at)),
        granted_at: Timestamp(uint(granted_at)),
        granted_by,
        revoked_at: revoked_at.map(|t| Timestamp(uint(t))),
        revoked_by: by,
        revoke_reason: why,
    })
}

fn entrustment_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<EntrustmentRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
    ))
}

fn decoded(rows: Vec<EntrustmentRow>) -> Result<Vec<Entrustment>, sqlx::Error> {
    rows.into_iter()
        .map(|r| entrustment_of(r).map_err(|e| sqlx::Error::Decode(e.into())))
        .collect()
}

/// Entrustment `id`, if there is one, on the writer (the rules).
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub fn entrustment(db: &rusqlite::Connection, id: u64) -> rusqlite::Result<Option<Entrustment>> {
    db.prepare_cached(&format!("{SELECT_ENTRUSTMENT} WHERE id = ?1"))?
        .query_row([int(id)], entrustment_row)
        .optional()?
        .map(|row| entrustment_of(row).map_err(undecodable))
        .transpose()
}

/// [`entrustment`] on a reader, for the API.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn entrustment_read(
    conn: &mut SqliteConnection,
    id: u64,
) -> Result<Option<Entrustment>, sqlx::Error> {
    let row: Option<EntrustmentRow> = sqlx::query_as(&format!("{SELECT_ENTRUSTMENT} WHERE id = ?"))
        .bind(int(id))
        .fetch_optional(&mut *conn)
        .await?;
    Ok(decoded(row.into_iter().collect())?.pop())
}

/// The entrustments `party` granted `broker`, oldest first.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn between(
    conn: &mut SqliteConnection,
    party: &str,
    broker: &str,
) -> Result<Vec<Entrustment>, sqlx::Error> {
    let rows: Vec<EntrustmentRow> = sqlx::query_as(&format!(
        "{SELECT_ENTRUSTMENT} WHERE party = ? AND broker = ? ORDER BY id"
    ))
    .bind(party)
    .bind(broker)
    .fetch_all(&mut *conn)
    .await?;
    decoded(rows)
}

/// The entrustments `party` granted or `broker` holds (each filter optional), newest first,
/// at most `limit`.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn entrustments(
    conn: &mut SqliteConnection,
    party: Option<&str>,
    broker: Option<&str>,
    limit: u32,
) -> Result<Vec<Entrustment>, sqlx::Error> {
    let rows: Vec<EntrustmentRow> = sqlx::query_as(&format!(
        "{SELECT_ENTRUSTMENT} WHERE (?1 IS NULL OR party = ?1) AND (?2 IS NULL OR broker = ?2)
         ORDER BY id DESC LIMIT ?3"
    ))
    .bind(party)
    .bind(broker)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    decoded(rows)
}

const SELECT_PARTY: &str = "SELECT id, name, credit_code, kinds, contact, state, origin, \
    applied_at, updated_at FROM parties";

fn party_of(row: &sqlx::sqlite::SqliteRow) -> Result<PartyView, sqlx::Error> {
    let decode = |e: String| sqlx::Error::Decode(e.into());
    let id: String = row.try_get(0)?;
    let code: String = row.try_get(2)?;
    let contact: String = row.try_get(4)?;
    let origin: String = row.try_get(6)?;
    let state: String = row.try_get(5)?;
    Ok(PartyView {
        id: id
            .parse()
            .map_err(|e| decode(format!("party id {id}: {e}")))?,
        name: row.try_get(1)?,
        credit_code: code.parse().map_err(|e| decode(format!("{code}: {e}")))?,
        kinds: kinds_of(&row.try_get::<String, _>(3)?),
        contact: Some(serde_json::from_str(&contact).map_err(|e| decode(e.to_string()))?),
        state: state_of(&state).map_err(decode)?,
        origin: if origin == "config" {
            PartyOrigin::Config
        } else {
            PartyOrigin::Application
        },
        applied_at: Some(Timestamp(uint(row.try_get(7)?))),
        updated_at: Some(Timestamp(uint(row.try_get(8)?))),
        history: None,
    })
}

/// Party `id`'s row with its history, if it has a row.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn party(
    conn: &mut SqliteConnection,
    id: &PartyId,
) -> Result<Option<PartyView>, sqlx::Error> {
    let row = sqlx::query(&format!("{SELECT_PARTY} WHERE id = ?"))
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut view = party_of(&row)?;
    let rows = sqlx::query(
        "SELECT seq, at, actor, role, action, from_state, to_state, reason, raft_index
         FROM party_history WHERE party_id = ? ORDER BY seq",
    )
    .bind(id.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let decode = |e: String| sqlx::Error::Decode(e.into());
    let mut history = Vec::with_capacity(rows.len());
    for r in rows {
        let from: Option<String> = r.try_get(5)?;
        let to: String = r.try_get(6)?;
        history.push(PartyHistoryEntry {
            seq: r.try_get(0)?,
            at: Timestamp(uint(r.try_get(1)?)),
            actor: r.try_get(2)?,
            role: r.try_get(3)?,
            action: r.try_get(4)?,
            from_state: from.as_deref().map(state_of).transpose().map_err(decode)?,
            to_state: state_of(&to).map_err(decode)?,
            reason: r.try_get(7)?,
            raft_index: r.try_get(8)?,
        });
    }
    view.history = Some(history);
    Ok(Some(view))
}

/// The rows `filter` selects (founding parties without a row are the caller's), by id, at
/// most `rows`.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn list(
    conn: &mut SqliteConnection,
    filter: &PartyFilter,
    rows: i64,
) -> Result<Vec<PartyView>, sqlx::Error> {
    let found = sqlx::query(&format!(
        "{SELECT_PARTY} WHERE (?1 IS NULL OR instr(kinds, ',' || ?1 || ',') > 0)
           AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR id > ?3)
         ORDER BY id LIMIT ?4"
    ))
    .bind(filter.kind.map(PartyKind::as_str))
    .bind(filter.state.map(PartyState::as_str))
    .bind(filter.after.as_deref())
    .bind(rows)
    .fetch_all(&mut *conn)
    .await?;
    found.iter().map(party_of).collect()
}

/// The registered names of those of `ids` that have a row, by id: one query.
///
/// # Errors
/// SQLite's error.
pub async fn names(
    conn: &mut SqliteConnection,
    ids: impl IntoIterator<Item = &str>,
) -> Result<std::collections::HashMap<String, String>, sqlx::Error> {
    let mut qb =
        sqlx::QueryBuilder::<sqlx::Sqlite>::new("SELECT id, name FROM parties WHERE id IN (");
    let mut list = qb.separated(", ");
    let mut any = false;
    for id in ids {
        list.push_bind(id.to_owned());
        any = true;
    }
    if !any {
        return Ok(std::collections::HashMap::new());
    }
    qb.push(")");
    let rows: Vec<(String, String)> = qb.build_query_as().fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().collect())
}

/// Whether party `id` has a row.
///
/// # Errors
/// SQLite's error.
pub async fn recorded(conn: &mut SqliteConnection, id: &PartyId) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM parties WHERE id = ?")
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(found.is_some())
}
