//! The `announcements` table: every signed envelope this zone published or accepted, kept
//! byte for byte, in order per exchange. Catch-up serves and summarises it.

use sqlx::{Row, SqliteConnection};
use xchg_protocol::{AnnouncementKind, ContentId};

use super::{int, kind_name, uint};

/// Records `envelope` (its body's id `content_id`, of `kind`, under `exchange`'s authority,
/// about `listing_id`); an envelope already recorded stays as it is.
///
/// # Errors
/// SQLite's error.
pub fn insert(
    db: &rusqlite::Connection,
    content_id: &ContentId,
    exchange: &str,
    kind: AnnouncementKind,
    listing_id: Option<&ContentId>,
    envelope: &[u8],
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO announcements (content_id, exchange, kind, listing_id, envelope) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (content_id) DO NOTHING",
    )?
    .execute(rusqlite::params![
        content_id.to_string(),
        exchange,
        kind_name(kind),
        listing_id.map(ToString::to_string),
        envelope,
    ])
    .map(drop)
}

/// Deletes the envelope whose body id is `content_id`: the zone no longer holds it as
/// accepted (a copy withdrawn, whose version is to be judged again); whether it was held.
///
/// # Errors
/// SQLite's error.
pub fn forget(db: &rusqlite::Connection, content_id: &ContentId) -> rusqlite::Result<bool> {
    db.prepare_cached("DELETE FROM announcements WHERE content_id = ?1")?
        .execute([content_id.to_string()])
        .map(|n| n == 1)
}

/// Every announcement's exchange and body id, grouped by exchange: `(exchange, content_id)`.
///
/// # Errors
/// SQLite's error.
pub async fn by_exchange(
    conn: &mut SqliteConnection,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT exchange, content_id FROM announcements ORDER BY exchange")
        .fetch_all(&mut *conn)
        .await
}

/// Up to `rows` announcements of `exchange` after position `after`, in order:
/// `(position, content_id)`.
///
/// # Errors
/// SQLite's error.
pub async fn after(
    conn: &mut SqliteConnection,
    exchange: &str,
    after: u64,
    rows: i64,
) -> Result<Vec<(u64, String)>, sqlx::Error> {
    let found = sqlx::query(
        "SELECT seq, content_id FROM announcements WHERE exchange = ? AND seq > ?
         ORDER BY seq LIMIT ?",
    )
    .bind(exchange)
    .bind(int(after))
    .bind(rows)
    .fetch_all(&mut *conn)
    .await?;
    found
        .iter()
        .map(|row| Ok((uint(row.try_get(0)?), row.try_get(1)?)))
        .collect()
}

/// The envelope whose body id is `id`, if recorded.
///
/// # Errors
/// SQLite's error.
pub async fn envelope(
    conn: &mut SqliteConnection,
    id: &ContentId,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar("SELECT envelope FROM announcements WHERE content_id = ?")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await
}
