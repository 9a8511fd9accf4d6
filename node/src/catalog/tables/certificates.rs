//! The `certificates` table (schema v9): the registration certificates the zone issued, the
//! signed bytes exactly as approved, and their status here (`valid` or `revoked`); since v10,
//! whether each goes out on the exchange's certificate topic (`export`). The rules are in
//! `catalog::registrations` and `catalog::certified`.

use rusqlite::OptionalExtension as _;
use sqlx::SqliteConnection;
use xchg_protocol::Timestamp;

use super::{int, uint};
use crate::catalog::registrations::CertificateRecord;

/// The columns every read of a certificate selects, in [`CertificateRow`]'s order.
macro_rules! select_certificates {
    () => {
        "SELECT number, registration_id, status, revoked_at, revoked_by, revoke_reason, signed, \
            export, revocation_export FROM certificates"
    };
}

const SELECT_CERTIFICATE: &str = concat!(select_certificates!(), " WHERE number = ?1");

/// A page of one listing's certificates, newest registration first (`certificates_listing`
/// finds them).
const SELECT_PAGE_OF_LISTING: &str = concat!(
    select_certificates!(),
    " WHERE listing_id = ?1 AND registration_id < ?2 ORDER BY registration_id DESC LIMIT ?3"
);

/// A page of every certificate, newest registration first (the registration number's unique
/// index walks them).
const SELECT_PAGE: &str = concat!(
    select_certificates!(),
    " WHERE registration_id < ?1 ORDER BY registration_id DESC LIMIT ?2"
);

/// The columns of every `SELECT_*` here, as either driver reads them.
type CertificateRow = (
    String,
    i64,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    Vec<u8>,
    String,
    Option<String>,
);

fn certificate_of(row: CertificateRow) -> CertificateRecord {
    let (
        number,
        registration_id,
        status,
        revoked_at,
        revoked_by,
        revoke_reason,
        signed,
        export,
        revocation_export,
    ) = row;
    CertificateRecord {
        number,
        registration_id: uint(registration_id),
        status,
        revoked_at: revoked_at.map(|t| Timestamp(uint(t))),
        revoked_by,
        revoke_reason,
        signed,
        export,
        revocation_export,
    }
}

/// Certificate `number`, if issued here, on the writer (the rules).
///
/// # Errors
/// SQLite's error.
pub fn certificate(
    db: &rusqlite::Connection,
    number: &str,
) -> rusqlite::Result<Option<CertificateRecord>> {
    db.prepare_cached(SELECT_CERTIFICATE)?
        .query_row([number], |row| {
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
            ))
        })
        .optional()
        .map(|row| row.map(certificate_of))
}

/// The number of the latest valid certificate of listing `listing_id` issued here, if any: what
/// an order's contract names (`catalog::trades`).
///
/// # Errors
/// SQLite's error.
pub fn valid_number_for(
    db: &rusqlite::Connection,
    listing_id: &str,
) -> rusqlite::Result<Option<String>> {
    db.prepare_cached(
        "SELECT number FROM certificates WHERE listing_id = ?1 AND status = 'valid' \
         ORDER BY issued_at DESC, registration_id DESC LIMIT 1",
    )?
    .query_row([listing_id], |row| row.get(0))
    .optional()
}

/// [`certificate`] on a reader, for the API.
///
/// # Errors
/// SQLite's error.
pub async fn certificate_read(
    conn: &mut SqliteConnection,
    number: &str,
) -> Result<Option<CertificateRecord>, sqlx::Error> {
    let row: Option<CertificateRow> = sqlx::query_as(SELECT_CERTIFICATE)
        .bind(number)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(certificate_of))
}

/// At most `rows` certificates with registration numbers below `before`, of listing
/// `listing_id` when given, newest registration first; on a reader, for the API.
///
/// # Errors
/// SQLite's error.
pub async fn list_read(
    conn: &mut SqliteConnection,
    listing_id: Option<&str>,
    before: i64,
    rows: i64,
) -> Result<Vec<CertificateRecord>, sqlx::Error> {
    let query = match listing_id {
        Some(id) => sqlx::query_as(SELECT_PAGE_OF_LISTING).bind(id),
        None => sqlx::query_as(SELECT_PAGE),
    };
    let found: Vec<CertificateRow> = query.bind(before).bind(rows).fetch_all(&mut *conn).await?;
    Ok(found.into_iter().map(certificate_of).collect())
}

/// What an approval issues: the certificate `number` of registration `registration_id`, for
/// listing `listing_id` held by `holder`, issued at `issued_at`, as `signed`.
pub struct Issued<'a> {
    /// Its number.
    pub number: &'a str,
    /// The registration approved.
    pub registration_id: u64,
    /// The listing it certifies.
    pub listing_id: &'a str,
    /// The party holding the rights.
    pub holder: &'a str,
    /// Its issue time.
    pub issued_at: Timestamp,
    /// The signed certificate, canonical CBOR.
    pub signed: &'a [u8],
}

/// Records certificate `c` as `valid`, its export `pending` when `exported` (its listing
/// version left the zone) and `withheld` otherwise.
///
/// # Errors
/// SQLite's error.
pub fn insert(db: &rusqlite::Connection, c: &Issued<'_>, exported: bool) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO certificates (number, registration_id, listing_id, holder, issued_at, \
            signed, status, export) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'valid', ?7)",
    )?
    .execute(rusqlite::params![
        c.number,
        int(c.registration_id),
        c.listing_id,
        c.holder,
        int(c.issued_at.0),
        c.signed,
        if exported { "pending" } else { "withheld" },
    ])
    .map(drop)
}

/// Queues for publication every `withheld` certificate whose listing version has since been
/// let out of the zone (a listing registered while submitted, approved after its certificate
/// was issued), unless it was revoked meanwhile (no partner holds it); how many.
///
/// # Errors
/// SQLite's error.
pub fn release_let_out(db: &rusqlite::Connection) -> rusqlite::Result<usize> {
    db.prepare_cached(
        "UPDATE certificates SET export = 'pending' WHERE export = 'withheld' \
           AND status = 'valid' AND EXISTS (SELECT 1 FROM registrations r JOIN outbox o ON o.content_id = r.content_id \
                        WHERE r.id = certificates.registration_id \
                          AND o.kind = 'listing' AND o.state != 'withheld')",
    )?
    .execute([])
}

/// A certificate waiting to be published: its registration (the position the publisher
/// records it by) and its signed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingExport {
    /// The registration it was issued for.
    pub registration_id: u64,
    /// The signed certificate, canonical CBOR, exactly as issued.
    pub signed: Vec<u8>,
}

/// Up to `limit` certificates waiting to be published, in issue order.
///
/// # Errors
/// SQLite's error.
pub async fn pending_export(
    conn: &mut SqliteConnection,
    limit: usize,
) -> Result<Vec<PendingExport>, sqlx::Error> {
    pending(conn, Outgoing::Certificate, limit).await
}

/// What goes out of this zone on the certificate topic: a certificate, or its revocation. Each
/// has its signed bytes and its export state and publication time in the certificate's row.
#[derive(Clone, Copy)]
enum Outgoing {
    Certificate,
    Revocation,
}

impl Outgoing {
    /// Its columns: signed bytes, export state, publication time.
    fn columns(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Outgoing::Certificate => ("signed", "export", "published_at"),
            Outgoing::Revocation => ("revocation", "revocation_export", "revocation_published_at"),
        }
    }
}

/// Up to `limit` rows whose `what` waits to be published, in registration order.
async fn pending(
    conn: &mut SqliteConnection,
    what: Outgoing,
    limit: usize,
) -> Result<Vec<PendingExport>, sqlx::Error> {
    let (signed, export, _) = what.columns();
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(&format!(
        "SELECT registration_id, {signed} FROM certificates \
         WHERE {export} = 'pending' AND {signed} IS NOT NULL \
         ORDER BY registration_id LIMIT ?"
    ))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, signed)| PendingExport {
            registration_id: uint(id),
            signed,
        })
        .collect())
}

/// Marks `what` of registration `registration_id` published at `at`; false when it was not
/// pending.
fn mark(
    db: &rusqlite::Connection,
    what: Outgoing,
    registration_id: u64,
    at: Timestamp,
) -> rusqlite::Result<bool> {
    let (_, export, published_at) = what.columns();
    db.prepare_cached(&format!(
        "UPDATE certificates SET {export} = 'published', {published_at} = ?1 \
         WHERE registration_id = ?2 AND {export} = 'pending'"
    ))?
    .execute([int(at.0), int(registration_id)])
    .map(|n| n == 1)
}

/// Marks the certificate of registration `registration_id` published at `at`; false when it
/// was not pending.
///
/// # Errors
/// SQLite's error.
pub fn mark_published(
    db: &rusqlite::Connection,
    registration_id: u64,
    at: Timestamp,
) -> rusqlite::Result<bool> {
    mark(db, Outgoing::Certificate, registration_id, at)
}

/// How an operator's revocation is recorded: when, by whom, why, and the signed revocation
/// (PROTOCOL.md 10.6) with whether it goes out.
pub struct Revoked<'a> {
    /// When.
    pub at: Timestamp,
    /// The operator.
    pub by: &'a str,
    /// Why.
    pub reason: &'a str,
    /// The signed revocation, canonical CBOR; `None` for a command from before revocations
    /// travelled.
    pub signed: Option<&'a [u8]>,
}

/// Marks certificate `number` revoked as `r` states. Its revocation goes out (`pending`) when
/// it is signed and the certificate itself went or is going out; otherwise it is `withheld`.
///
/// # Errors
/// SQLite's error.
pub fn revoke(db: &rusqlite::Connection, number: &str, r: &Revoked<'_>) -> rusqlite::Result<()> {
    db.prepare_cached(
        "UPDATE certificates SET status = 'revoked', revoked_at = ?1, revoked_by = ?2, \
            revoke_reason = ?3, revocation = ?4, \
            revocation_export = CASE WHEN ?4 IS NOT NULL AND export IN ('pending', 'published') \
                THEN 'pending' ELSE 'withheld' END \
         WHERE number = ?5",
    )?
    .execute(rusqlite::params![
        int(r.at.0),
        r.by,
        r.reason,
        r.signed,
        number
    ])
    .map(drop)
}

/// Up to `limit` revocations of this zone's certificates waiting to be published, in
/// registration order: the registration (the position the publisher records them by) and the
/// signed revocation.
///
/// # Errors
/// SQLite's error.
pub async fn pending_revocations(
    conn: &mut SqliteConnection,
    limit: usize,
) -> Result<Vec<PendingExport>, sqlx::Error> {
    pending(conn, Outgoing::Revocation, limit).await
}

/// Marks the revocation of the certificate of registration `registration_id` published at
/// `at`; false when it was not pending.
///
/// # Errors
/// SQLite's error.
pub fn mark_revocation_published(
    db: &rusqlite::Connection,
    registration_id: u64,
    at: Timestamp,
) -> rusqlite::Result<bool> {
    mark(db, Outgoing::Revocation, registration_id, at)
}
