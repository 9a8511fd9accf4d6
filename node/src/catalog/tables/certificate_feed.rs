//! The `certificate_feed` table (schema v13): every message this zone holds on a certificate
//! topic (its own published certificates and revocations, and the valid ones it received), in
//! the order it recorded them, for catch-up to page through (PROTOCOL.md 7.5). Triggers in the
//! schema keep it; it is derived from the replicated tables, so a snapshot does not carry it
//! and [`rebuild`] makes it again after one is installed.

use sqlx::{Row, SqliteConnection};
use xchg_protocol::ContentId;

use super::{int, uint};

/// Files again every message held, in the order of the schema step that made the table: this
/// zone's published certificates, its published revocations, then the received ones in the
/// order they were recorded. Positions continue after the highest ever given, so a cursor a
/// peer holds never skips what is filed again.
///
/// # Errors
/// SQLite's error.
pub fn rebuild(db: &rusqlite::Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "DELETE FROM certificate_feed;
         INSERT INTO certificate_feed (exchange, source, ref, data)
            SELECT NULL, 'certificate', CAST(registration_id AS TEXT), signed FROM certificates
             WHERE export = 'published' ORDER BY registration_id;
         INSERT INTO certificate_feed (exchange, source, ref, data)
            SELECT NULL, 'revocation', CAST(registration_id AS TEXT), revocation
              FROM certificates
             WHERE revocation_export = 'published' AND revocation IS NOT NULL
             ORDER BY registration_id;
         INSERT INTO certificate_feed (exchange, source, ref, data)
            SELECT exchange, 'received_certificate', message_id, signed
              FROM received_certificates
             WHERE decision = 'valid' AND signed IS NOT NULL ORDER BY raft_index;
         INSERT INTO certificate_feed (exchange, source, ref, data)
            SELECT exchange, 'received_revocation', message_id, signed
              FROM received_revocations
             WHERE decision IN ('applied', 'waiting') AND signed IS NOT NULL
             ORDER BY raft_index;",
    )
}

/// Up to `rows` messages after position `after`, ascending: `(pos, exchange, data)`, the
/// messages this zone published itself filed under `own`, its exchange.
///
/// # Errors
/// SQLite's error.
pub async fn after(
    conn: &mut SqliteConnection,
    own: &str,
    after: u64,
    rows: i64,
) -> Result<Vec<(u64, String, Vec<u8>)>, sqlx::Error> {
    let found = sqlx::query(
        "SELECT pos, COALESCE(exchange, ?1), data FROM certificate_feed
          WHERE pos > ?2 ORDER BY pos LIMIT ?3",
    )
    .bind(own)
    .bind(int(after))
    .bind(rows)
    .fetch_all(&mut *conn)
    .await?;
    found
        .iter()
        .map(|row| Ok((uint(row.try_get(0)?), row.try_get(1)?, row.try_get(2)?)))
        .collect()
}

/// Whether a message with id `message_id` (SHA-256 of its bytes) was recorded as received and
/// not refused (a refused one is judged again when met: a valid copy replaces the refusal).
///
/// # Errors
/// SQLite's error.
pub async fn received(
    conn: &mut SqliteConnection,
    message_id: &ContentId,
) -> Result<bool, sqlx::Error> {
    let id = message_id.to_string();
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM received_certificates WHERE message_id = ?1 AND decision != 'refused'
         UNION ALL SELECT 1 FROM received_revocations
          WHERE message_id = ?1 AND decision != 'refused' LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tables::{received_certificates, received_revocations};
    use xchg_protocol::Timestamp;

    fn certificate(db: &rusqlite::Connection, name: &str, valid: bool) -> ContentId {
        let id = ContentId::of(name.as_bytes());
        let listing = ContentId::of(b"listing");
        let fields = received_certificates::ValidFields {
            zone: "zhengzhou/main",
            number: "XC-2026-MAIN-000001",
            listing_id: &listing,
            content_id: &listing,
            signer: "key",
            issued_at: Timestamp(1),
            signed: name.as_bytes(),
        };
        let (valid, refused) = if valid {
            (Some(fields), None)
        } else {
            (None, Some(("bad_signature", "no")))
        };
        let r = received_certificates::Received {
            message_id: &id,
            certificate_id: None,
            exchange: "zhengzhou",
            valid,
            refused,
            received_from: "peer",
            at: Timestamp(1),
            raft_index: 1,
        };
        received_certificates::record(db, &r).expect("recorded");
        id
    }

    fn revocation(db: &rusqlite::Connection, name: &str) -> ContentId {
        let id = ContentId::of(name.as_bytes());
        let r = received_revocations::Received {
            message_id: &id,
            revocation_id: None,
            exchange: "zhengzhou",
            valid: Some(received_revocations::ValidFields {
                certificate_id: &id,
                zone: "zhengzhou/main",
                number: "XC-2026-MAIN-000009",
                revoked_at: Timestamp(1),
                reason: "why",
                signer: "key",
                signed: name.as_bytes(),
            }),
            decision: "waiting",
            refused: None,
            received_from: "peer",
            at: Timestamp(1),
            raft_index: 2,
        };
        assert!(received_revocations::record(db, &r).expect("recorded"));
        id
    }

    #[tokio::test]
    async fn a_valid_copy_replaces_a_refusal_of_the_same_bytes_and_a_refused_revocation_leaves() {
        let dir = tempfile::tempdir().expect("dir");
        let db = crate::catalog::test_db(dir.path());
        // The same bytes, first refused (delivered on the wrong topic), then valid.
        let id = certificate(&db, "twice", false);
        let mut conn = crate::catalog::test_reader(dir.path()).await;
        assert!(
            !received(&mut conn, &id).await.expect("read"),
            "a refusal is judged again"
        );
        drop(conn);
        certificate(&db, "twice", true);
        let filed = feed(dir.path(), "zhengzhou").await;
        assert_eq!(filed.len(), 1, "filed once it is valid");
        let mut conn = crate::catalog::test_reader(dir.path()).await;
        assert!(received(&mut conn, &id).await.expect("read"));
        drop(conn);
        // A waiting revocation later refused is no longer served.
        let waiting = revocation(&db, "waiting");
        assert_eq!(feed(dir.path(), "zhengzhou").await.len(), 2);
        received_revocations::decide(
            &db,
            &waiting.to_string(),
            Some(("wrong_origin", "another zone's certificate")),
        )
        .expect("decided");
        assert_eq!(feed(dir.path(), "zhengzhou").await.len(), 1);
    }

    async fn feed(dir: &std::path::Path, exchange: &str) -> Vec<(u64, Vec<u8>)> {
        let mut conn = crate::catalog::test_reader(dir).await;
        let all = after(&mut conn, "xuchang", 0, 100).await.expect("read");
        all.into_iter()
            .filter(|(_, e, _)| e == exchange)
            .map(|(pos, _, data)| (pos, data))
            .collect()
    }

    #[tokio::test]
    async fn valid_messages_are_filed_in_order_leave_with_their_record_and_survive_a_rebuild() {
        let dir = tempfile::tempdir().expect("dir");
        let db = crate::catalog::test_db(dir.path());
        let valid = certificate(&db, "valid", true);
        certificate(&db, "refused", false);
        revocation(&db, "waiting");
        let filed = feed(dir.path(), "zhengzhou").await;
        let data: Vec<&[u8]> = filed.iter().map(|(_, d)| d.as_slice()).collect();
        assert_eq!(
            data,
            [b"valid".as_slice(), b"waiting"],
            "refused ones are not served"
        );
        assert!(
            feed(dir.path(), "xuchang").await.is_empty(),
            "filed by exchange"
        );
        let mut conn = crate::catalog::test_reader(dir.path()).await;
        assert!(received(&mut conn, &valid).await.expect("read"));
        assert!(
            !received(&mut conn, &ContentId::of(b"refused"))
                .await
                .expect("read"),
            "a refused one is judged again when met (a valid copy may replace it)"
        );
        assert!(
            !received(&mut conn, &ContentId::of(b"never"))
                .await
                .expect("read")
        );
        drop(conn);

        // A waiting revocation pushed out by its bound leaves the feed with it.
        revocation(&db, "waiting later");
        let caps = received_revocations::Caps {
            refused_per_exchange: 10,
            waiting_per_zone: 1,
            waiting_per_exchange: 10,
        };
        received_revocations::bound(&db, Timestamp(0), "zhengzhou", Some("zhengzhou/main"), caps)
            .expect("bounded");
        let filed = feed(dir.path(), "zhengzhou").await;
        let data: Vec<&[u8]> = filed.iter().map(|(_, d)| d.as_slice()).collect();
        assert_eq!(data, [b"valid".as_slice(), b"waiting later"]);

        // Rebuilt (after a snapshot is installed): the same messages, at later positions.
        let before = feed(dir.path(), "zhengzhou").await;
        rebuild(&db).expect("rebuilt");
        let after_rebuild = feed(dir.path(), "zhengzhou").await;
        assert_eq!(after_rebuild.len(), before.len());
        assert_eq!(after_rebuild[0].1, before[0].1);
        assert_eq!(after_rebuild[1].1, before[1].1);
        assert!(after_rebuild[0].0 > before[0].0, "positions never go back");
    }
}
