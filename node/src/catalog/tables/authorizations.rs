//! The authorisations table (schema v8): what an approved application granted (一场景一授权),
//! the usage counted against it, the refusals of usage, and an operator's suspension or
//! revocation. The rules are in `catalog::applications`.

use rusqlite::OptionalExtension as _;
use sqlx::{Row as _, SqliteConnection};
use xchg_protocol::{ContentId, DeliveryMode, Timestamp};

use super::{enum_name, enum_of, int, uint};
use crate::catalog::applications::{AuthorizationState, AuthorizationView, Grant};
use crate::sqlite::undecodable;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

fn state_of(s: &str) -> Result<AuthorizationState, String> {
    AuthorizationState::parse(s).ok_or_else(|| format!("unknown authorization state {s:?}"))
}

/// An authorisation to record.
pub struct NewAuthorization<'a> {
    /// The application whose approval creates it.
    pub application_id: u64,
    /// The listing.
    pub listing_id: &'a ContentId,
    /// The listing's party.
    pub provider: &'a str,
    /// The authorised party.
    pub buyer: &'a str,
    /// The one scenario.
    pub scenario: &'a str,
    /// The delivery mode granted.
    pub delivery_mode: DeliveryMode,
    /// Calls allowed.
    pub usage_limit: u64,
    /// When it was granted.
    pub granted_at: Timestamp,
    /// When it ends (exclusive).
    pub expires_at: Timestamp,
    /// Who granted it.
    pub granted_by: &'a str,
}

/// Records `a`, active with nothing used; returns its number (the next in log order).
///
/// # Errors
/// SQLite's error.
pub fn insert(db: &rusqlite::Connection, a: &NewAuthorization<'_>) -> rusqlite::Result<u64> {
    db.prepare_cached(
        "INSERT INTO authorizations (application_id, listing_id, provider, buyer, scenario, \
            delivery_mode, usage_limit, used, refused, state, granted_at, expires_at, granted_by) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 0, 'active', ?8, ?9, ?10) RETURNING id",
    )?
    .query_row(
        rusqlite::params![
            int(a.application_id),
            a.listing_id.to_string(),
            a.provider,
            a.buyer,
            a.scenario,
            enum_name(&a.delivery_mode),
            int(a.usage_limit),
            int(a.granted_at.0),
            int(a.expires_at.0),
            a.granted_by,
        ],
        |row| row.get::<_, i64>(0),
    )
    .map(uint)
}

/// Marks authorisation `id` as the copy of authorisation `authorization` of `zone`, whose
/// approval came from another exchange (schema v11).
///
/// # Errors
/// SQLite's error.
pub fn set_origin(
    db: &rusqlite::Connection,
    id: u64,
    zone: &str,
    authorization: u64,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "UPDATE authorizations SET origin_zone = ?1, origin_authorization = ?2 WHERE id = ?3",
    )?
    .execute(rusqlite::params![zone, int(authorization), int(id)])
    .map(drop)
}

/// The origin zone and its authorisation number, when authorisation `id` was granted by
/// another exchange (its usage is counted there).
///
/// # Errors
/// SQLite's error.
pub fn origin_of(db: &rusqlite::Connection, id: u64) -> rusqlite::Result<Option<(String, u64)>> {
    let row: Option<(Option<String>, Option<i64>)> = db
        .prepare_cached(
            "SELECT origin_zone, origin_authorization FROM authorizations WHERE id = ?1",
        )?
        .query_row([int(id)], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.and_then(|(zone, n)| Some((zone?, uint(n?)))))
}

/// What an authorisation granted, as a decision across exchanges states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantedTerms {
    /// The delivery mode.
    pub delivery_mode: DeliveryMode,
    /// Whole days from grant to expiry.
    pub duration_days: u32,
    /// Calls allowed.
    pub usage_limit: u64,
    /// When it ends (exclusive).
    pub expires_at: Timestamp,
}

/// The terms authorisation `id` granted.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub fn granted(db: &rusqlite::Connection, id: u64) -> rusqlite::Result<Option<GrantedTerms>> {
    let row: Option<(String, i64, i64, i64)> = db
        .prepare_cached(
            "SELECT delivery_mode, usage_limit, granted_at, expires_at FROM authorizations \
             WHERE id = ?1",
        )?
        .query_row([int(id)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((mode, limit, granted_at, expires_at)) = row else {
        return Ok(None);
    };
    let days = uint(expires_at.saturating_sub(granted_at)) / DAY_MS;
    Ok(Some(GrantedTerms {
        delivery_mode: enum_of("delivery mode", &mode).map_err(undecodable)?,
        duration_days: u32::try_from(days).unwrap_or(u32::MAX),
        usage_limit: uint(limit),
        expires_at: Timestamp(uint(expires_at)),
    }))
}

/// An authorisation as usage is judged against it, with its listing, buyer and provider.
pub struct Judged {
    /// What usage is judged against.
    pub grant: Grant,
    /// The listing.
    pub listing_id: String,
    /// The authorised party.
    pub buyer: String,
    /// The listing's party.
    pub provider: String,
}

/// Authorisation `id` as usage is judged against it.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub fn judged(db: &rusqlite::Connection, id: u64) -> rusqlite::Result<Option<Judged>> {
    type Row = (String, i64, i64, i64, String, String, String);
    let row: Option<Row> = db
        .prepare_cached(
            "SELECT state, expires_at, used, usage_limit, listing_id, buyer, provider \
             FROM authorizations WHERE id = ?1",
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
            ))
        })
        .optional()?;
    let Some((state, expires_at, used, usage_limit, listing_id, buyer, provider)) = row else {
        return Ok(None);
    };
    Ok(Some(Judged {
        grant: Grant {
            id,
            state: state_of(&state).map_err(undecodable)?,
            expires_at: Timestamp(uint(expires_at)),
            used: uint(used),
            usage_limit: uint(usage_limit),
        },
        listing_id,
        buyer,
        provider,
    }))
}

/// The scenario authorisation `id` covers.
///
/// # Errors
/// SQLite's error.
pub fn scenario_of(db: &rusqlite::Connection, id: u64) -> rusqlite::Result<Option<String>> {
    db.prepare_cached("SELECT scenario FROM authorizations WHERE id = ?1")?
        .query_row([int(id)], |r| r.get(0))
        .optional()
}

/// Sets the calls counted on authorisation `id`.
///
/// # Errors
/// SQLite's error.
pub fn set_used(db: &rusqlite::Connection, id: u64, used: u64) -> rusqlite::Result<()> {
    db.prepare_cached("UPDATE authorizations SET used = ?1 WHERE id = ?2")?
        .execute([int(used), int(id)])
        .map(drop)
}

/// Counts a refused use of authorisation `id`, keeping `why` as its latest refusal.
///
/// # Errors
/// SQLite's error.
pub fn note_refusal(db: &rusqlite::Connection, id: u64, why: &str) -> rusqlite::Result<()> {
    db.prepare_cached(
        "UPDATE authorizations SET refused = refused + 1, last_refusal = ?1 WHERE id = ?2",
    )?
    .execute(rusqlite::params![why, int(id)])
    .map(drop)
}

/// Sets the state of authorisation `id`, changed at `at` by `by` for `reason`.
///
/// # Errors
/// SQLite's error.
pub fn set_state(
    db: &rusqlite::Connection,
    id: u64,
    state: AuthorizationState,
    at: Timestamp,
    by: &str,
    reason: &str,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "UPDATE authorizations SET state = ?1, changed_at = ?2, changed_by = ?3, reason = ?4 \
         WHERE id = ?5",
    )?
    .execute(rusqlite::params![
        state.as_str(),
        int(at.0),
        by,
        reason,
        int(id)
    ])?;
    // Every change is kept, for the supervision figures (schema v19).
    db.prepare_cached(
        "INSERT INTO authorization_changes (authorization_id, seq, at, to_state) \
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM authorization_changes \
                      WHERE authorization_id = ?1), ?2, ?3)",
    )?
    .execute(rusqlite::params![int(id), int(at.0), state.as_str()])
    .map(drop)
}

/// The columns of an authorisation as the API shows it ([`view_of`]).
const SELECT_VIEW: &str = "SELECT id, application_id, listing_id, provider, buyer, scenario, \
    delivery_mode, usage_limit, used, refused, last_refusal, state, granted_at, expires_at, \
    granted_by, changed_at, changed_by, reason, origin_zone, origin_authorization \
    FROM authorizations";

/// Authorisation `id` as the API shows it, on a reader.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn authorization(
    conn: &mut SqliteConnection,
    id: u64,
) -> Result<Option<AuthorizationView>, sqlx::Error> {
    let row = sqlx::query(&format!("{SELECT_VIEW} WHERE id = ?"))
        .bind(int(id))
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(view_of).transpose()
}

/// What a list of authorisations asks for; every field given narrows it.
#[derive(Debug, Clone, Default)]
pub struct AuthorizationFilter {
    /// Only these numbers.
    pub ids: Option<Vec<u64>>,
    /// Only in this state.
    pub state: Option<AuthorizationState>,
    /// Only for this listing.
    pub listing_id: Option<String>,
    /// Only of this buyer (a buyer token sees its own only).
    pub buyer: Option<String>,
    /// Only for listings of this provider (a provider token sees its own only).
    pub provider: Option<String>,
    /// Only with numbers below this one (the previous page's `next_before`).
    pub before: Option<u64>,
}

/// The authorisations `filter` selects, newest first, at most `rows`, on a reader.
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn list(
    conn: &mut SqliteConnection,
    filter: &AuthorizationFilter,
    rows: i64,
) -> Result<Vec<AuthorizationView>, sqlx::Error> {
    let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!("{SELECT_VIEW} WHERE 1 = 1"));
    if let Some(ids) = &filter.ids {
        qb.push(" AND id IN (");
        let mut each = qb.separated(", ");
        for id in ids {
            each.push_bind(int(*id));
        }
        // An empty list selects nothing (`IN ()` is not SQL).
        each.push_unseparated(if ids.is_empty() { "NULL)" } else { ")" });
    }
    if let Some(state) = filter.state {
        qb.push(" AND state = ").push_bind(state.as_str());
    }
    if let Some(listing_id) = &filter.listing_id {
        qb.push(" AND listing_id = ").push_bind(listing_id.as_str());
    }
    if let Some(buyer) = &filter.buyer {
        qb.push(" AND buyer = ").push_bind(buyer.as_str());
    }
    if let Some(provider) = &filter.provider {
        qb.push(" AND provider = ").push_bind(provider.as_str());
    }
    if let Some(before) = filter.before {
        qb.push(" AND id < ").push_bind(int(before));
    }
    qb.push(" ORDER BY id DESC LIMIT ").push_bind(rows);
    let found = qb.build().fetch_all(&mut *conn).await?;
    found.iter().map(view_of).collect()
}

fn view_of(r: &sqlx::sqlite::SqliteRow) -> Result<AuthorizationView, sqlx::Error> {
    let decode = |e: String| sqlx::Error::Decode(e.into());
    let time = |t: i64| Timestamp(uint(t));
    let listing_id: String = r.try_get("listing_id")?;
    let mode: String = r.try_get("delivery_mode")?;
    let state: String = r.try_get("state")?;
    let usage_limit = uint(r.try_get("usage_limit")?);
    let used = uint(r.try_get("used")?);
    Ok(AuthorizationView {
        id: uint(r.try_get("id")?),
        application_id: uint(r.try_get("application_id")?),
        listing_id: listing_id
            .parse()
            .map_err(|e| decode(format!("listing id {listing_id}: {e}")))?,
        provider: r.try_get("provider")?,
        buyer: r.try_get("buyer")?,
        scenario: r.try_get("scenario")?,
        delivery_mode: enum_of("delivery mode", &mode).map_err(decode)?,
        usage_limit,
        used,
        remaining: usage_limit.saturating_sub(used),
        refused: uint(r.try_get("refused")?),
        last_refusal: r.try_get("last_refusal")?,
        state: state_of(&state).map_err(decode)?,
        granted_at: time(r.try_get("granted_at")?),
        expires_at: time(r.try_get("expires_at")?),
        granted_by: r.try_get("granted_by")?,
        changed_at: r.try_get::<Option<i64>, _>("changed_at")?.map(time),
        changed_by: r.try_get("changed_by")?,
        reason: r.try_get("reason")?,
        origin: match (
            r.try_get::<Option<String>, _>("origin_zone")?,
            r.try_get::<Option<i64>, _>("origin_authorization")?,
        ) {
            (Some(zone), Some(n)) => Some(crate::catalog::applications::OriginAuthorization {
                zone,
                authorization: uint(n),
            }),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records authorisation `n` (application `n`) for `buyer` on a listing of `provider`.
    fn grant(db: &rusqlite::Connection, n: u64, buyer: &str, provider: &str) -> u64 {
        let listing = ContentId::of(provider.as_bytes());
        insert(
            db,
            &NewAuthorization {
                application_id: n,
                listing_id: &listing,
                provider,
                buyer,
                scenario: "企业贷款授信审查",
                delivery_mode: DeliveryMode::Api,
                usage_limit: 100,
                granted_at: Timestamp(1_000),
                expires_at: Timestamp(2_000),
                granted_by: "token:0perator",
            },
        )
        .expect("insert")
    }

    #[tokio::test]
    async fn a_list_selects_by_number_party_state_and_position_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let a = grant(&db, 1, "bank", "credit-center");
        let b = grant(&db, 2, "bank", "weather-bureau");
        let c = grant(&db, 3, "insurer", "credit-center");
        set_state(
            &db,
            b,
            AuthorizationState::Revoked,
            Timestamp(1_500),
            "op",
            "ended",
        )
        .expect("revoke");
        drop(db);
        let mut reader = crate::catalog::test_reader(dir.path()).await;
        let mut ids = async |filter: AuthorizationFilter| -> Vec<u64> {
            list(&mut reader, &filter, 10)
                .await
                .expect("list")
                .into_iter()
                .map(|v| v.id)
                .collect()
        };
        assert_eq!(ids(AuthorizationFilter::default()).await, [c, b, a]);
        let these = AuthorizationFilter {
            ids: Some(vec![a, c, 99]),
            ..AuthorizationFilter::default()
        };
        assert_eq!(ids(these).await, [c, a], "an unknown number is left out");
        let none = AuthorizationFilter {
            ids: Some(Vec::new()),
            ..AuthorizationFilter::default()
        };
        assert_eq!(ids(none).await, [0u64; 0]);
        let the_banks = AuthorizationFilter {
            ids: Some(vec![a, b, c]),
            buyer: Some("bank".into()),
            ..AuthorizationFilter::default()
        };
        assert_eq!(ids(the_banks).await, [b, a], "a buyer sees its own only");
        let for_credit = AuthorizationFilter {
            provider: Some("credit-center".into()),
            ..AuthorizationFilter::default()
        };
        assert_eq!(ids(for_credit).await, [c, a]);
        let revoked = AuthorizationFilter {
            state: Some(AuthorizationState::Revoked),
            ..AuthorizationFilter::default()
        };
        assert_eq!(ids(revoked).await, [b]);
        let below = AuthorizationFilter {
            before: Some(c),
            listing_id: Some(ContentId::of(b"credit-center").to_string()),
            ..AuthorizationFilter::default()
        };
        assert_eq!(ids(below).await, [a]);
    }
}
