//! Certificates that travel (PROTOCOL.md 10.5): the rules that record a registration
//! certificate received from another zone, valid or refused, and that mark this zone's own
//! certificates published.
//!
//! The leader verifies a received certificate (10.3 steps 1 to 8, with no state of its zone)
//! before it proposes anything; applying the record checks step 9 against the revocations the
//! zone recorded, as every member holds them at that point of the log, so all members record
//! the same decision. A valid certificate forgets the refusals of the listing version it
//! certifies: the zone has no decision on that version any more, so catch-up fetches and judges
//! it again, and the agreement may now recognise it.

use serde::{Deserialize, Serialize};
use xchg_protocol::canonical::from_canonical;
use xchg_protocol::certificate::{Certificate, SignedCertificate, check_revocation};
use xchg_protocol::{ContentId, ExchangeId, Limits, Timestamp};

use super::federation::REFUSAL_RETENTION_MS;
use super::tables::received_certificates::{self as table, Received, ValidFields};
use super::tables::{certificates, recognitions, revocations};
use super::{Applied, CommandResponse, REFUSAL_REASON_CHARS, Refusal};

/// Most refused certificates kept per exchange; the oldest go first.
pub const MAX_REFUSED_PER_EXCHANGE: i64 = 10_000;

/// A certificate received on an exchange's certificate topic, as the leader judged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedCertificate {
    /// SHA-256 of the bytes as received (the gossip message id).
    pub message_id: ContentId,
    /// The exchange of the topic it arrived on (the authority of its delegation, if valid).
    pub exchange: ExchangeId,
    /// What the leader found.
    pub judged: Judged,
    /// The peer that delivered it, at most [`super::PEER_CHARS`] characters.
    pub received_from: String,
    /// When the proposing node received it.
    pub at: Timestamp,
    /// The proposing node's name.
    pub node: String,
}

/// The leader's judgement of a received certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Judged {
    /// It passed PROTOCOL.md 10.3 steps 1 to 8: the signed bytes.
    Valid {
        /// Canonical CBOR of the SignedCertificate.
        #[serde(with = "serde_bytes")]
        signed: Vec<u8>,
    },
    /// It failed a check: a bounded record of which and why (never the bytes).
    Refused {
        /// The id it carries, if it decoded.
        certificate_id: Option<ContentId>,
        /// The kind of the failed check (PROTOCOL.md 6.3).
        kind: String,
        /// What failed, at most [`REFUSAL_REASON_CHARS`] characters.
        reason: String,
    },
}

impl ReceivedCertificate {
    /// Whether the leader found it valid.
    pub fn is_valid(&self) -> bool {
        matches!(self.judged, Judged::Valid { .. })
    }
}

fn clip(text: &str) -> String {
    text.chars().take(REFUSAL_REASON_CHARS).collect()
}

/// The certificate inside `signed`, decoded again (the leader verified it; a state machine
/// never trusts a proposal's bytes to be what it says).
fn decode(signed: &[u8]) -> Result<(SignedCertificate, Certificate), String> {
    let limits = Limits::default();
    let outer = SignedCertificate::from_bytes(signed, &limits).map_err(|e| e.to_string())?;
    let inner: Certificate = from_canonical(&outer.body, &limits).map_err(|e| e.to_string())?;
    if ContentId::of(&outer.body) != outer.id {
        return Err("its id is not the hash of its body".into());
    }
    if outer.delegation.delegation.zone != inner.zone {
        return Err("its zone is not its delegation's".into());
    }
    Ok((outer, inner))
}

/// Applies the record of a received certificate: a valid one is checked against the
/// revocations recorded here (PROTOCOL.md 10.3 step 9) and recorded, and the refusals of the
/// listing version it certifies are forgotten; a refused one is recorded within the bounds. A
/// message already recorded is left as it is.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn receive(
    db: &rusqlite::Connection,
    raft_index: u64,
    r: &ReceivedCertificate,
) -> rusqlite::Result<CommandResponse> {
    let received_from: String = r.received_from.chars().take(super::PEER_CHARS).collect();
    let mut record = Received {
        message_id: &r.message_id,
        certificate_id: None,
        exchange: r.exchange.as_str(),
        valid: None,
        refused: None,
        received_from: &received_from,
        at: r.at,
        raft_index,
    };
    let refused = |db: &rusqlite::Connection, record: &Received<'_>| {
        table::record(db, record)?;
        let expired = Timestamp(r.at.0.saturating_sub(REFUSAL_RETENTION_MS));
        table::bound_refused(db, expired, r.exchange.as_str(), MAX_REFUSED_PER_EXCHANGE)?;
        Ok(Ok(Applied {
            object_id: r.message_id.to_string(),
            version: None,
            state: None,
        }))
    };
    let signed = match &r.judged {
        Judged::Refused {
            certificate_id,
            kind,
            reason,
        } => {
            let reason = clip(reason);
            record.certificate_id = certificate_id.as_ref();
            record.refused = Some((kind, &reason));
            return refused(db, &record);
        }
        Judged::Valid { signed } => signed,
    };
    let (outer, certificate) = match decode(signed) {
        Ok(decoded) => decoded,
        Err(why) => {
            return Ok(Err(Refusal::Invalid(format!(
                "a certificate proposed as valid does not decode: {why}"
            ))));
        }
    };
    let delegation = &outer.delegation.delegation;
    if delegation.exchange != r.exchange {
        return Ok(Err(Refusal::Invalid(format!(
            "a certificate of {} proposed for the topic of {}",
            delegation.exchange, r.exchange
        ))));
    }
    let verified = xchg_protocol::VerifiedCertificate {
        id: outer.id,
        certificate: certificate.clone(),
        signer: delegation.node_key,
        delegation: outer.delegation.clone(),
    };
    let revoked = revocations::revoked_at(db, r.exchange.as_str(), &verified.signer)?;
    record.certificate_id = Some(&outer.id);
    if let Err(e) = check_revocation(&verified, revoked) {
        let reason = clip(&e.to_string());
        record.refused = Some((e.kind(), &reason));
        return refused(db, &record);
    }
    let signer = verified.signer.to_base64();
    let zone = certificate.zone.to_string();
    record.valid = Some(ValidFields {
        zone: &zone,
        number: &certificate.number,
        listing_id: &certificate.listing_id,
        content_id: &certificate.content_id,
        signer: &signer,
        issued_at: certificate.issued_at,
        signed,
    });
    if table::record(db, &record)? {
        recognitions::forget_refusals(db, &certificate.content_id)?;
    }
    Ok(Ok(Applied {
        object_id: certificate.number,
        version: None,
        state: None,
    }))
}

/// Applies the leader's record that it published the certificate of registration
/// `registration_id`.
///
/// # Errors
/// Only storage errors; a certificate not waiting to be published is refused.
pub fn published(
    db: &rusqlite::Connection,
    registration_id: u64,
    at: Timestamp,
) -> rusqlite::Result<CommandResponse> {
    if !certificates::mark_published(db, registration_id, at)? {
        return Ok(Err(Refusal::Conflict(format!(
            "the certificate of registration {registration_id} is not waiting to be published"
        ))));
    }
    Ok(Ok(Applied {
        object_id: format!("registration:{registration_id}"),
        version: None,
        state: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tables::recognitions::Decision;
    use xchg_protocol::{AnnouncementKind, certificate_vectors, vectors};

    fn received(judged: Judged) -> ReceivedCertificate {
        ReceivedCertificate {
            message_id: ContentId::of(b"message"),
            exchange: "xuchang".parse().expect("exchange"),
            judged,
            received_from: "peer".into(),
            at: vectors::NOW,
            node: "n1".into(),
        }
    }

    fn valid() -> ReceivedCertificate {
        received(Judged::Valid {
            signed: certificate_vectors::signed().to_bytes(),
        })
    }

    /// `(decision, kind)` of every received certificate, in order.
    fn rows(db: &rusqlite::Connection) -> Vec<(String, Option<String>)> {
        let mut stmt = db
            .prepare("SELECT decision, kind FROM received_certificates ORDER BY rowid")
            .expect("select");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("read")
    }

    #[test]
    fn a_valid_certificate_is_recorded_once_and_forgets_the_refusals_of_its_listing_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let certificate = certificate_vectors::certificate();
        let key = vectors::node().public().to_base64();
        recognitions::record(
            &db,
            &Decision {
                content_id: &certificate.content_id,
                kind: AnnouncementKind::Listing,
                listing_id: Some(&certificate.listing_id),
                version: Some(1),
                origin: "xuchang/yuzhou",
                exchange: "xuchang",
                agreement: "outside:xuchang",
                decision: "rejected",
                reason: Some("the agreement requires a registration certificate"),
                signer: &key,
                delegation: None,
                received_from: "peer",
                at: vectors::NOW,
                raft_index: 1,
            },
        )
        .expect("refusal");
        assert!(recognitions::decided(&db, &certificate.content_id).expect("read"));

        let first = receive(&db, 2, &valid()).expect("apply").expect("recorded");
        assert_eq!(first.object_id, certificate.number);
        assert!(
            !recognitions::decided(&db, &certificate.content_id).expect("read"),
            "the listing version is undecided again, so catch-up fetches it"
        );
        receive(&db, 3, &valid())
            .expect("apply")
            .expect("a repeat is harmless");
        assert_eq!(rows(&db), [("valid".to_owned(), None)]);
    }

    /// The leader's refusal of the vectors' listing version, for want of a certificate when
    /// `wants_certificate`, for another rule of the agreement otherwise.
    fn refusal_of_certified_version(
        wants_certificate: bool,
    ) -> crate::catalog::RefusedAnnouncement {
        let certificate = certificate_vectors::certificate();
        crate::catalog::RefusedAnnouncement {
            content_id: certificate.content_id,
            kind: AnnouncementKind::Listing,
            listing_id: Some(certificate.listing_id),
            version: Some(1),
            origin: certificate.zone,
            exchange: "xuchang".parse().expect("exchange"),
            agreement: "outside:xuchang".into(),
            signer: vectors::node().public(),
            reason: "refused".into(),
            wants_certificate,
            received_from: "peer".into(),
            at: vectors::NOW,
            node: "n1".into(),
        }
    }

    #[test]
    fn a_refusal_for_want_of_a_certificate_applied_after_the_certificate_is_not_recorded() {
        // The leader read the replica before the certificate was recorded, and proposed the
        // refusal after it: recorded, the refusal would keep the version decided for good.
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let certificate = certificate_vectors::certificate();
        receive(&db, 1, &valid()).expect("apply").expect("recorded");
        let late =
            crate::catalog::federation::record_refusal(&db, 2, &refusal_of_certified_version(true))
                .expect("apply");
        assert!(
            matches!(&late, Err(Refusal::Conflict(why)) if why.contains("certificate")),
            "{late:?}"
        );
        assert!(
            !recognitions::decided(&db, &certificate.content_id).expect("read"),
            "the listing version stays undecided, so catch-up fetches and recognises it"
        );
        // A refusal under another rule of the agreement stands, certificate or not.
        crate::catalog::federation::record_refusal(&db, 3, &refusal_of_certified_version(false))
            .expect("apply")
            .expect("recorded");
        assert!(recognitions::decided(&db, &certificate.content_id).expect("read"));
    }

    #[test]
    fn a_refusal_for_want_of_a_certificate_is_recorded_when_only_another_zone_certified_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        receive(&db, 1, &valid()).expect("apply").expect("recorded");
        let mut elsewhere = refusal_of_certified_version(true);
        elsewhere.origin = "xuchang/other".parse().expect("zone");
        crate::catalog::federation::record_refusal(&db, 2, &elsewhere)
            .expect("apply")
            .expect("recorded: only a certificate of the listing's origin zone counts");
        assert!(recognitions::decided(&db, &elsewhere.content_id).expect("read"));
    }

    #[test]
    fn a_certificate_whose_key_was_revoked_before_its_issue_time_is_recorded_as_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let issued = certificate_vectors::certificate().issued_at;
        revocations::insert(
            &db,
            "xuchang",
            &vectors::node().public(),
            &ContentId::of(b"revocation"),
            "key lost",
            Timestamp(issued.0 - 1),
        )
        .expect("revocation");
        receive(&db, 1, &valid()).expect("apply").expect("recorded");
        assert_eq!(
            rows(&db),
            [("refused".to_owned(), Some("revoked_key".to_owned()))]
        );
    }

    #[test]
    fn refused_certificates_are_kept_within_their_cap_per_exchange() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        for i in 0..5u8 {
            let mut r = received(Judged::Refused {
                certificate_id: None,
                kind: "bad_signature".into(),
                reason: "x".repeat(REFUSAL_REASON_CHARS + 10),
            });
            r.message_id = ContentId::of(&[i]);
            receive(&db, u64::from(i), &r)
                .expect("apply")
                .expect("recorded");
            table::bound_refused(&db, Timestamp(0), "xuchang", 3).expect("bound");
        }
        assert_eq!(rows(&db).len(), 3);
        let longest: i64 = db
            .query_row(
                "SELECT max(length(reason)) FROM received_certificates",
                [],
                |r| r.get(0),
            )
            .expect("read");
        assert_eq!(longest, REFUSAL_REASON_CHARS as i64);
    }
}
