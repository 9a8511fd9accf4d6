//! The scenario applications table (schema v8): a row for every application a buyer made, the
//! terms it asked and the operator's decision on it. The rules are in
//! `catalog::applications`; the authorisation an approval created is in
//! [`super::authorizations`].

use rusqlite::OptionalExtension as _;
use sqlx::SqliteConnection;
use xchg_protocol::{ContentId, Timestamp};

use super::{enum_name, enum_of, int, uint};
use crate::catalog::applications::{
    AcrossView, ApplicationFilter, ApplicationRequest, ApplicationState, ApplicationView, Precedent,
};
use crate::sqlite::undecodable;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

fn state_of(s: &str) -> Result<ApplicationState, String> {
    ApplicationState::parse(s).ok_or_else(|| format!("unknown application state {s:?}"))
}

const PENDING_OF: &str = "SELECT count(*) FROM applications WHERE buyer = ?1 \
    AND state IN ('submitted', 'forwarding')";

/// How many applications of `buyer` await a decision.
///
/// # Errors
/// SQLite's error.
pub fn pending_of(db: &rusqlite::Connection, buyer: &str) -> rusqlite::Result<i64> {
    db.prepare_cached(PENDING_OF)?
        .query_row([buyer], |row| row.get(0))
}

/// [`pending_of`] on a reader.
///
/// # Errors
/// SQLite's error.
pub async fn pending_of_read(conn: &mut SqliteConnection, buyer: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(PENDING_OF)
        .bind(buyer)
        .fetch_one(&mut *conn)
        .await
}

const PENDING_FROM: &str = "SELECT count(*) FROM applications WHERE applicant_zone = ?1 \
    AND (state = 'submitted' \
        OR (state = 'rejected' AND decided_at >= ?2 AND substr(decided_by, 1, ?3) = ?4))";

/// How many applications forwarded by `applicant` await a decision here, or were rejected
/// at once (by a member, `decided_by` starting with `by_member`) at or after `since`.
///
/// # Errors
/// SQLite's error.
pub fn pending_from(
    db: &rusqlite::Connection,
    applicant: &str,
    by_member: &str,
    since: Timestamp,
) -> rusqlite::Result<i64> {
    db.prepare_cached(PENDING_FROM)?.query_row(
        rusqlite::params![applicant, int(since.0), prefix_chars(by_member), by_member],
        |row| row.get(0),
    )
}

/// [`pending_from`] on a reader.
///
/// # Errors
/// SQLite's error.
pub async fn pending_from_read(
    conn: &mut SqliteConnection,
    applicant: &str,
    by_member: &str,
    since: Timestamp,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(PENDING_FROM)
        .bind(applicant)
        .bind(int(since.0))
        .bind(prefix_chars(by_member))
        .bind(by_member)
        .fetch_one(&mut *conn)
        .await
}

fn prefix_chars(prefix: &str) -> i64 {
    i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX)
}

/// Records `request` of `buyer` in `state`, submitted at `at` by `submitted_by` (the entry at
/// `raft_index`); returns its number (the next in log order, so every member agrees).
///
/// # Errors
/// SQLite's error.
pub fn insert(
    db: &rusqlite::Connection,
    request: &ApplicationRequest,
    buyer: &str,
    state: ApplicationState,
    at: Timestamp,
    submitted_by: &str,
    raft_index: u64,
) -> rusqlite::Result<u64> {
    db.prepare_cached(
        "INSERT INTO applications (listing_id, buyer, scenario, purpose, delivery_mode, \
            duration_days, usage_limit, state, submitted_at, submitted_by, raft_index) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?11, ?8, ?9, ?10) RETURNING id",
    )?
    .query_row(
        rusqlite::params![
            request.listing_id.to_string(),
            buyer,
            request.scenario,
            request.purpose,
            enum_name(&request.delivery_mode),
            i64::from(request.duration_days),
            int(request.usage_limit),
            int(at.0),
            submitted_by,
            int(raft_index),
            state.as_str(),
        ],
        |row| row.get::<_, i64>(0),
    )
    .map(uint)
}

/// What application `id` asked, its buyer and its state.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub fn asked(
    db: &rusqlite::Connection,
    id: u64,
) -> rusqlite::Result<Option<(ApplicationRequest, String, ApplicationState)>> {
    type Row = (String, String, String, String, i64, i64, String, String);
    let row: Option<Row> = db
        .prepare_cached(
            "SELECT listing_id, scenario, purpose, delivery_mode, duration_days, usage_limit, \
                buyer, state FROM applications WHERE id = ?1",
        )?
        .query_row([int(id)], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .optional()?;
    let Some((listing_id, scenario, purpose, mode, days, limit, buyer, state)) = row else {
        return Ok(None);
    };
    let request = ApplicationRequest {
        listing_id: listing_id
            .parse()
            .map_err(|e| undecodable(format!("listing id {listing_id}: {e}")))?,
        scenario,
        purpose,
        delivery_mode: enum_of("delivery mode", &mode).map_err(undecodable)?,
        duration_days: u32::try_from(days).unwrap_or_default(),
        usage_limit: uint(limit),
    };
    Ok(Some((
        request,
        buyer,
        state_of(&state).map_err(undecodable)?,
    )))
}

/// Why application `id` was rejected, if it was.
///
/// # Errors
/// SQLite's error.
pub fn reason_of(db: &rusqlite::Connection, id: u64) -> rusqlite::Result<Option<String>> {
    db.prepare_cached("SELECT reason FROM applications WHERE id = ?1")?
        .query_row([int(id)], |r| r.get::<_, Option<String>>(0))
        .optional()
        .map(Option::flatten)
}

/// The applications for `listing_id` awaiting a decision (`submitted`), in number order.
///
/// # Errors
/// SQLite's error.
pub fn submitted_for(db: &rusqlite::Connection, listing_id: &str) -> rusqlite::Result<Vec<u64>> {
    let mut stmt = db.prepare_cached(
        "SELECT id FROM applications WHERE listing_id = ?1 AND state = 'submitted' ORDER BY id",
    )?;
    let ids = stmt.query_map([listing_id], |r| r.get::<_, i64>(0))?;
    ids.map(|id| id.map(|i| u64::try_from(i).unwrap_or(0)))
        .collect()
}

/// Records the rejection of application `id` at `at` by `by` for `reason`.
///
/// # Errors
/// SQLite's error.
pub fn reject(
    db: &rusqlite::Connection,
    id: u64,
    at: Timestamp,
    by: &str,
    reason: &str,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "UPDATE applications SET state = 'rejected', decided_at = ?1, decided_by = ?2, \
            reason = ?3 WHERE id = ?4",
    )?
    .execute(rusqlite::params![int(at.0), by, reason, int(id)])
    .map(drop)
}

/// Records the approval of application `id` at `at` by `by`, which created authorisation
/// `authorization`.
///
/// # Errors
/// SQLite's error.
pub fn approve(
    db: &rusqlite::Connection,
    id: u64,
    at: Timestamp,
    by: &str,
    authorization: u64,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "UPDATE applications SET state = 'approved', decided_at = ?1, decided_by = ?2, \
            authorization_id = ?3 WHERE id = ?4",
    )?
    .execute(rusqlite::params![
        int(at.0),
        by,
        int(authorization),
        int(id)
    ])
    .map(drop)
}

/// The request of an application across exchanges (schema v11): at the applicant, the zone it
/// is forwarded to; at the origin, the zone that forwarded it and its number there.
///
/// # Errors
/// SQLite's error.
pub fn set_request(
    db: &rusqlite::Connection,
    id: u64,
    across: &Across<'_>,
    request_id: &ContentId,
    body: &[u8],
) -> rusqlite::Result<()> {
    let (origin, applicant, remote) = match across {
        Across::ForwardedTo(zone) => (Some(*zone), None, None),
        Across::ForwardedBy(zone, remote) => (None, Some(*zone), Some(int(*remote))),
    };
    db.prepare_cached(
        "UPDATE applications SET origin_zone = ?1, applicant_zone = ?2, remote_id = ?3, \
            request_id = ?4, request_body = ?5 WHERE id = ?6",
    )?
    .execute(rusqlite::params![
        origin,
        applicant,
        remote,
        request_id.to_string(),
        body,
        int(id)
    ])
    .map(drop)
}

/// Which side of an exchange boundary an application is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Across<'a> {
    /// At the applicant: forwarded to this origin zone.
    ForwardedTo(&'a str),
    /// At the origin: forwarded by this zone, where it has this number.
    ForwardedBy(&'a str, u64),
}

/// What the rules of an application across exchanges read of its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcrossRow {
    /// Its number here.
    pub id: u64,
    /// Its state.
    pub state: ApplicationState,
    /// At the applicant, the origin zone.
    pub origin_zone: Option<String>,
    /// At the origin, the applying zone.
    pub applicant_zone: Option<String>,
    /// The request's id.
    pub request_id: Option<String>,
    /// The canonical request.
    pub request_body: Option<Vec<u8>>,
    /// The decision's id, once decided.
    pub decision_id: Option<String>,
    /// The canonical decision (at the origin), once decided.
    pub decision_body: Option<Vec<u8>>,
    /// The authorisation an approval created here.
    pub authorization_id: Option<u64>,
}

const SELECT_ACROSS: &str = "SELECT id, state, origin_zone, applicant_zone, request_id, \
    request_body, decision_id, decision_body, authorization_id FROM applications";

type AcrossColumns = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
    Option<Vec<u8>>,
    Option<i64>,
);

fn across_of(row: AcrossColumns) -> Result<AcrossRow, String> {
    let (
        id,
        state,
        origin_zone,
        applicant_zone,
        request_id,
        request_body,
        decision_id,
        decision_body,
        authorization_id,
    ) = row;
    Ok(AcrossRow {
        id: uint(id),
        state: state_of(&state)?,
        origin_zone,
        applicant_zone,
        request_id,
        request_body,
        decision_id,
        decision_body,
        authorization_id: authorization_id.map(uint),
    })
}

fn across_columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<AcrossColumns> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

/// Application `id`'s cross-exchange columns, on the writer.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub fn across(db: &rusqlite::Connection, id: u64) -> rusqlite::Result<Option<AcrossRow>> {
    db.prepare_cached(&format!("{SELECT_ACROSS} WHERE id = ?1"))?
        .query_row([int(id)], across_columns)
        .optional()?
        .map(|row| across_of(row).map_err(undecodable))
        .transpose()
}

/// The application `applicant` forwarded as its number `remote`, on the writer.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub fn forwarded_by(
    db: &rusqlite::Connection,
    applicant: &str,
    remote: u64,
) -> rusqlite::Result<Option<AcrossRow>> {
    db.prepare_cached(&format!(
        "{SELECT_ACROSS} WHERE applicant_zone = ?1 AND remote_id = ?2"
    ))?
    .query_row(rusqlite::params![applicant, int(remote)], across_columns)
    .optional()?
    .map(|row| across_of(row).map_err(undecodable))
    .transpose()
}

/// [`forwarded_by`] on a reader, for the node answering a forwarded request.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn forwarded_by_read(
    conn: &mut SqliteConnection,
    applicant: &str,
    remote: u64,
) -> Result<Option<AcrossRow>, sqlx::Error> {
    let row: Option<AcrossColumns> = sqlx::query_as(&format!(
        "{SELECT_ACROSS} WHERE applicant_zone = ? AND remote_id = ?"
    ))
    .bind(applicant)
    .bind(int(remote))
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| across_of(r).map_err(|e| sqlx::Error::Decode(e.into())))
        .transpose()
}

/// This zone's applications awaiting another exchange (`forwarding`, or `submitted` to an
/// origin zone) with ids above `after`, oldest first, at most `limit`: what the leader
/// forwards and asks after, a page at a time.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn awaiting_origin(
    conn: &mut SqliteConnection,
    after: u64,
    limit: u32,
) -> Result<Vec<AcrossRow>, sqlx::Error> {
    let rows: Vec<AcrossColumns> = sqlx::query_as(&format!(
        "{SELECT_ACROSS} WHERE state IN ('forwarding', 'submitted') AND origin_zone IS NOT NULL \
         AND id > ? ORDER BY id LIMIT ?"
    ))
    .bind(int(after))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|r| across_of(r).map_err(|e| sqlx::Error::Decode(e.into())))
        .collect()
}

/// At the applicant: the origin acknowledged application `id` at `at` (`forwarding →
/// submitted`); an application no longer `forwarding` is left as it is.
///
/// # Errors
/// SQLite's error.
pub fn set_forwarded(db: &rusqlite::Connection, id: u64, at: Timestamp) -> rusqlite::Result<()> {
    db.prepare_cached(
        "UPDATE applications SET state = 'submitted', forwarded_at = ?1 \
         WHERE id = ?2 AND state = 'forwarding'",
    )?
    .execute(rusqlite::params![int(at.0), int(id)])
    .map(drop)
}

/// Records the decision on application `id` across exchanges: its id, its canonical body and,
/// at the applicant, the signed decision as received.
///
/// # Errors
/// SQLite's error.
pub fn set_decision(
    db: &rusqlite::Connection,
    id: u64,
    decision_id: &ContentId,
    body: &[u8],
    signed: Option<&[u8]>,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "UPDATE applications SET decision_id = ?1, decision_body = ?2, decision = ?3 \
         WHERE id = ?4",
    )?
    .execute(rusqlite::params![
        decision_id.to_string(),
        body,
        signed,
        int(id)
    ])
    .map(drop)
}

const SELECT_APPLICATION: &str = "SELECT id, listing_id, buyer, scenario, purpose, \
    delivery_mode, duration_days, usage_limit, state, submitted_at, decided_at, decided_by, \
    reason, authorization_id, CASE WHEN request_id IS NULL THEN NULL ELSE json_object(\
        'origin_zone', origin_zone, 'applicant_zone', applicant_zone, \
        'applicant_application', remote_id, 'request_id', request_id, \
        'forwarded_at', forwarded_at, 'decision_id', decision_id) END FROM applications";

/// The columns of [`SELECT_APPLICATION`].
type ApplicationRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

/// The cross-exchange columns as [`SELECT_APPLICATION`] gathers them into one JSON object.
#[derive(serde::Deserialize)]
struct AcrossJson {
    origin_zone: Option<String>,
    applicant_zone: Option<String>,
    applicant_application: Option<u64>,
    request_id: String,
    forwarded_at: Option<u64>,
    decision_id: Option<String>,
}

impl AcrossJson {
    fn view(self) -> AcrossView {
        AcrossView {
            origin_zone: self.origin_zone,
            applicant_zone: self.applicant_zone,
            applicant_application: self.applicant_application,
            request_id: self.request_id,
            forwarded_at: self.forwarded_at.map(Timestamp),
            decision_id: self.decision_id,
        }
    }
}

fn application_of(row: ApplicationRow) -> Result<ApplicationView, sqlx::Error> {
    let decode = |e: String| sqlx::Error::Decode(e.into());
    let (
        id,
        listing_id,
        buyer,
        scenario,
        purpose,
        mode,
        days,
        limit,
        state,
        submitted_at,
        decided_at,
        decided_by,
        reason,
        authorization_id,
        across,
    ) = row;
    let across = across
        .map(|json| {
            serde_json::from_str::<AcrossJson>(&json)
                .map(AcrossJson::view)
                .map_err(|e| decode(format!("across: {e}")))
        })
        .transpose()?;
    Ok(ApplicationView {
        id: uint(id),
        listing_id: listing_id
            .parse()
            .map_err(|e| decode(format!("listing id {listing_id}: {e}")))?,
        buyer,
        scenario,
        purpose,
        delivery_mode: enum_of("delivery mode", &mode).map_err(decode)?,
        duration_days: u32::try_from(days).unwrap_or_default(),
        usage_limit: uint(limit),
        state: state_of(&state).map_err(decode)?,
        submitted_at: Timestamp(uint(submitted_at)),
        decided_at: decided_at.map(|t| Timestamp(uint(t))),
        decided_by,
        reason,
        authorization_id: authorization_id.map(uint),
        across,
    })
}

/// Application `id`, on a reader.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn application(
    conn: &mut SqliteConnection,
    id: u64,
) -> Result<Option<ApplicationView>, sqlx::Error> {
    let row: Option<ApplicationRow> = sqlx::query_as(&format!("{SELECT_APPLICATION} WHERE id = ?"))
        .bind(int(id))
        .fetch_optional(&mut *conn)
        .await?;
    row.map(application_of).transpose()
}

/// The applications `filter` selects, newest first, at most `rows`.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn list(
    conn: &mut SqliteConnection,
    filter: &ApplicationFilter,
    rows: i64,
) -> Result<Vec<ApplicationView>, sqlx::Error> {
    let found: Vec<ApplicationRow> = sqlx::query_as(&format!(
        "{SELECT_APPLICATION} WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR listing_id = ?2)
           AND (?3 IS NULL OR buyer = ?3) AND (?5 IS NULL OR id < ?5)
           AND (?4 IS NULL OR listing_id IN (SELECT id FROM listings WHERE provider_id = ?4))
         ORDER BY id DESC LIMIT ?6"
    ))
    .bind(filter.state.map(ApplicationState::as_str))
    .bind(filter.listing_id.as_deref())
    .bind(filter.buyer.as_deref())
    .bind(filter.provider.as_deref())
    .bind(filter.before.map(int))
    .bind(rows)
    .fetch_all(&mut *conn)
    .await?;
    found.into_iter().map(application_of).collect()
}

/// The columns of a precedent: the application's id, state, decision time and reason, and its
/// authorisation's mode, grant and expiry times and limit.
type PrecedentRow = (
    i64,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// The latest decisions on `listing_id` for `scenario`, other than application `except`,
/// newest first, at most `limit`.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn precedents(
    conn: &mut SqliteConnection,
    listing_id: &str,
    scenario: &str,
    except: u64,
    limit: u32,
) -> Result<Vec<Precedent>, sqlx::Error> {
    let rows: Vec<PrecedentRow> = sqlx::query_as(
        "SELECT a.id, a.state, a.decided_at, a.reason, z.delivery_mode, z.granted_at,
            z.expires_at, z.usage_limit
         FROM applications a LEFT JOIN authorizations z ON z.id = a.authorization_id
         WHERE a.listing_id = ? AND a.scenario = ? AND a.state != 'submitted' AND a.id != ?
         ORDER BY a.decided_at DESC, a.id DESC LIMIT ?",
    )
    .bind(listing_id)
    .bind(scenario)
    .bind(int(except))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    let decode = |e: String| sqlx::Error::Decode(e.into());
    rows.into_iter()
        .map(
            |(id, state, decided_at, reason, mode, granted_at, expires_at, limit)| {
                Ok(Precedent {
                    application_id: uint(id),
                    decision: state_of(&state).map_err(decode)?,
                    decided_at: Timestamp(uint(decided_at.unwrap_or_default())),
                    reason,
                    delivery_mode: mode
                        .map(|m| enum_of("delivery mode", &m).map_err(decode))
                        .transpose()?,
                    duration_days: granted_at
                        .zip(expires_at)
                        .map(|(g, e)| uint(e.saturating_sub(g)) / DAY_MS),
                    usage_limit: limit.map(uint),
                    decided_in: None,
                })
            },
        )
        .collect()
}

/// One decision of this zone, as its list of precedents states it (PROTOCOL.md 11.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnDecision {
    /// The application's id here.
    pub id: u64,
    /// `approved` or `rejected`.
    pub state: String,
    /// When it was decided.
    pub decided_at: Timestamp,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// The zone that forwarded it; `None` for this zone's own buyers.
    pub applicant_zone: Option<String>,
    /// An approval's authorisation: its id, mode, grant and expiry times and limit.
    pub granted: Option<(u64, String, Timestamp, Timestamp, u64)>,
}

type OwnDecisionRow = (
    i64,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// The latest approvals and rejections this zone decided itself on `listing_id` for
/// `scenario` (its own buyers' and those forwarded to it, not those it forwarded), newest
/// first, at most `limit`.
///
/// # Errors
/// SQLite's error.
pub async fn own_decisions(
    conn: &mut SqliteConnection,
    listing_id: &str,
    scenario: &str,
    limit: u32,
) -> Result<Vec<OwnDecision>, sqlx::Error> {
    let rows: Vec<OwnDecisionRow> = sqlx::query_as(
        "SELECT a.id, a.state, a.decided_at, a.reason, a.applicant_zone, z.id, z.delivery_mode,
            z.granted_at, z.expires_at, z.usage_limit
         FROM applications a LEFT JOIN authorizations z ON z.id = a.authorization_id
         WHERE a.listing_id = ? AND a.scenario = ? AND a.origin_zone IS NULL
           AND a.state IN ('approved', 'rejected') AND a.decided_at IS NOT NULL
         ORDER BY a.decided_at DESC, a.id DESC LIMIT ?",
    )
    .bind(listing_id)
    .bind(scenario)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, state, decided_at, reason, applicant_zone, z, mode, granted, expires, limit)| {
                let granted = match (z, mode, granted, expires, limit) {
                    (Some(z), Some(mode), Some(g), Some(e), Some(l)) => Some((
                        uint(z),
                        mode,
                        Timestamp(uint(g)),
                        Timestamp(uint(e)),
                        uint(l),
                    )),
                    _ => None,
                };
                OwnDecision {
                    id: uint(id),
                    state,
                    decided_at: Timestamp(uint(decided_at.unwrap_or_default())),
                    reason,
                    applicant_zone,
                    granted,
                }
            },
        )
        .collect())
}
