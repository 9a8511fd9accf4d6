//! The counts behind the supervision figures (`catalog::supervision`), read from the listings'
//! and complaints' histories, the applications, authorisations and their changes (schema v19),
//! and the recognitions. Every period is `[start, end)` by the commands' own times.

use std::collections::BTreeMap;

use sqlx::{Row as _, SqliteConnection};
use xchg_protocol::Timestamp;

use super::{int, uint};

type Counts = BTreeMap<String, u64>;

async fn counts(
    conn: &mut SqliteConnection,
    sql: &str,
    binds: &[Timestamp],
) -> Result<Counts, sqlx::Error> {
    let mut q = sqlx::query(sql);
    for t in binds {
        q = q.bind(int(t.0));
    }
    let rows = q.fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, uint(r.try_get(1)?))))
        .collect()
}

async fn count(
    conn: &mut SqliteConnection,
    sql: &str,
    start: Timestamp,
    end: Timestamp,
) -> Result<u64, sqlx::Error> {
    sqlx::query_scalar::<_, i64>(sql)
        .bind(int(start.0))
        .bind(int(end.0))
        .fetch_one(&mut *conn)
        .await
        .map(uint)
}

/// How many listing transitions into each state fall in `[start, end)`.
///
/// # Errors
/// SQLite's error.
pub async fn listings_entered(
    conn: &mut SqliteConnection,
    start: Timestamp,
    end: Timestamp,
) -> Result<Counts, sqlx::Error> {
    counts(
        conn,
        "SELECT to_state, count(*) FROM listing_history WHERE at >= ?1 AND at < ?2 \
         GROUP BY to_state",
        &[start, end],
    )
    .await
}

/// The listings held before `end`, by the state their history gave them last before it and
/// their current classification: `(state, classification, count)`.
///
/// # Errors
/// SQLite's error.
pub async fn listings_at(
    conn: &mut SqliteConnection,
    end: Timestamp,
) -> Result<Vec<(String, String, u64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT h.to_state, l.classification, count(*) \
         FROM listing_history h JOIN listings l ON l.seq = h.listing_seq \
         WHERE h.at < ?1 AND h.seq = (SELECT max(h2.seq) FROM listing_history h2 \
                                      WHERE h2.listing_seq = h.listing_seq AND h2.at < ?1) \
         GROUP BY h.to_state, l.classification",
    )
    .bind(int(end.0))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, uint(r.try_get(2)?))))
        .collect()
}

/// Applications submitted in `[start, end)`.
///
/// # Errors
/// SQLite's error.
pub async fn applications_submitted(
    conn: &mut SqliteConnection,
    start: Timestamp,
    end: Timestamp,
) -> Result<u64, sqlx::Error> {
    count(
        conn,
        "SELECT count(*) FROM applications WHERE submitted_at >= ?1 AND submitted_at < ?2",
        start,
        end,
    )
    .await
}

/// Applications decided in `[start, end)`, by decision.
///
/// # Errors
/// SQLite's error.
pub async fn applications_decided(
    conn: &mut SqliteConnection,
    start: Timestamp,
    end: Timestamp,
) -> Result<Counts, sqlx::Error> {
    counts(
        conn,
        "SELECT state, count(*) FROM applications WHERE decided_at >= ?1 AND decided_at < ?2 \
         AND state IN ('approved', 'rejected') GROUP BY state",
        &[start, end],
    )
    .await
}

/// Authorisations granted in `[start, end)`.
///
/// # Errors
/// SQLite's error.
pub async fn authorizations_granted(
    conn: &mut SqliteConnection,
    start: Timestamp,
    end: Timestamp,
) -> Result<u64, sqlx::Error> {
    count(
        conn,
        "SELECT count(*) FROM authorizations WHERE granted_at >= ?1 AND granted_at < ?2",
        start,
        end,
    )
    .await
}

/// Authorisations whose expiry falls in `[start, end)` and that were not revoked before it.
///
/// # Errors
/// SQLite's error.
pub async fn authorizations_expired(
    conn: &mut SqliteConnection,
    start: Timestamp,
    end: Timestamp,
) -> Result<u64, sqlx::Error> {
    count(
        conn,
        "SELECT count(*) FROM authorizations a WHERE expires_at >= ?1 AND expires_at < ?2 \
         AND NOT EXISTS (SELECT 1 FROM authorization_changes c WHERE c.authorization_id = a.id \
                         AND c.to_state = 'revoked' AND c.at < a.expires_at)",
        start,
        end,
    )
    .await
}

/// Suspensions, reinstatements (`active`) and revocations in `[start, end)`, by the state
/// they led to.
///
/// # Errors
/// SQLite's error.
pub async fn authorization_changes(
    conn: &mut SqliteConnection,
    start: Timestamp,
    end: Timestamp,
) -> Result<Counts, sqlx::Error> {
    counts(
        conn,
        "SELECT to_state, count(*) FROM authorization_changes WHERE at >= ?1 AND at < ?2 \
         GROUP BY to_state",
        &[start, end],
    )
    .await
}

/// The authorisations granted before `end`, by their state at `end`: the last change before
/// it (none: `active`), and `expired` for one not revoked whose expiry is at or before `end`.
///
/// # Errors
/// SQLite's error.
pub async fn authorizations_at(
    conn: &mut SqliteConnection,
    end: Timestamp,
) -> Result<Counts, sqlx::Error> {
    counts(
        conn,
        "SELECT CASE WHEN last = 'revoked' THEN 'revoked' \
                     WHEN expires_at <= ?1 THEN 'expired' \
                     ELSE COALESCE(last, 'active') END AS s, count(*) \
         FROM (SELECT a.expires_at, \
                      (SELECT c.to_state FROM authorization_changes c \
                        WHERE c.authorization_id = a.id AND c.at < ?1 \
                        ORDER BY c.seq DESC LIMIT 1) AS last \
                 FROM authorizations a WHERE a.granted_at < ?1) \
         GROUP BY s",
        &[end],
    )
    .await
}

/// Announcements judged in `[start, end)`: `exchange → decision → count`.
///
/// # Errors
/// SQLite's error.
pub async fn recognitions(
    conn: &mut SqliteConnection,
    start: Timestamp,
    end: Timestamp,
) -> Result<BTreeMap<String, Counts>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT exchange, decision, count(*) FROM recognitions WHERE at >= ?1 AND at < ?2 \
         GROUP BY exchange, decision",
    )
    .bind(int(start.0))
    .bind(int(end.0))
    .fetch_all(&mut *conn)
    .await?;
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    for r in &rows {
        out.entry(r.try_get(0)?)
            .or_default()
            .insert(r.try_get(1)?, uint(r.try_get(2)?));
    }
    Ok(out)
}

/// Complaint steps in `[start, end)`, by action.
///
/// # Errors
/// SQLite's error.
pub async fn complaint_steps(
    conn: &mut SqliteConnection,
    start: Timestamp,
    end: Timestamp,
) -> Result<Counts, sqlx::Error> {
    counts(
        conn,
        "SELECT action, count(*) FROM complaint_history WHERE at >= ?1 AND at < ?2 \
         GROUP BY action",
        &[start, end],
    )
    .await
}

/// The complaints filed before `end`, by their state at `end`.
///
/// # Errors
/// SQLite's error.
pub async fn complaints_at(
    conn: &mut SqliteConnection,
    end: Timestamp,
) -> Result<Counts, sqlx::Error> {
    counts(
        conn,
        "SELECT h.to_state, count(*) FROM complaint_history h \
         WHERE h.at < ?1 AND h.seq = (SELECT max(h2.seq) FROM complaint_history h2 \
                                      WHERE h2.complaint_id = h.complaint_id AND h2.at < ?1) \
         GROUP BY h.to_state",
        &[end],
    )
    .await
}

/// The steps of orders taken in `[start, end)`, by name: `placed`, `confirmed`, `delivery`,
/// `settlement`, `reversal`, `dispute`.
///
/// # Errors
/// SQLite's error.
pub async fn order_steps(
    conn: &mut SqliteConnection,
    start: Timestamp,
    end: Timestamp,
) -> Result<Counts, sqlx::Error> {
    counts(
        conn,
        "SELECT 'placed', count(*) FROM orders WHERE placed_at >= ?1 AND placed_at < ?2 \
         UNION ALL SELECT 'confirmed', count(*) FROM orders \
             WHERE confirmed_at >= ?1 AND confirmed_at < ?2 \
         UNION ALL SELECT 'delivery', count(*) FROM deliveries WHERE at >= ?1 AND at < ?2 \
         UNION ALL SELECT kind, count(*) FROM settlements WHERE at >= ?1 AND at < ?2 \
             GROUP BY kind \
         UNION ALL SELECT 'dispute', count(*) FROM settlement_disputes \
             WHERE at >= ?1 AND at < ?2",
        &[start, end],
    )
    .await
}

/// Every settlement and reversal recorded in `[start, end)`: its kind, currency and amount.
///
/// # Errors
/// SQLite's error.
pub async fn settled_amounts(
    conn: &mut SqliteConnection,
    start: Timestamp,
    end: Timestamp,
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT kind, currency, amount FROM settlements WHERE at >= ?1 AND at < ?2 ORDER BY id",
    )
    .bind(int(start.0))
    .bind(int(end.0))
    .fetch_all(&mut *conn)
    .await
}
