//! Certificates that travel (PROTOCOL.md 10.5, 10.6): the rules that record a registration
//! certificate or a certificate revocation received from another zone, valid or refused, and
//! that mark this zone's own certificates and revocations published.
//!
//! The leader verifies a received certificate (10.3 steps 1 to 8, with no state of its zone)
//! before it proposes anything; applying the record checks step 9 against the revocations the
//! zone recorded, as every member holds them at that point of the log, so all members record
//! the same decision. A valid certificate forgets the refusals of the listing version it
//! certifies: the zone has no decision on that version any more, so catch-up fetches and judges
//! it again, and the agreement may now recognise it.
//!
//! A revocation is applied to the valid certificate held with the id it names, once the state
//! machine has checked that the certificate is the revoking zone's with that number (10.6 step
//! 10); one that arrives first waits for its certificate. An applied revocation makes the
//! certificate count for nothing, and, under an agreement that requires registration (the
//! leader states the term in the command, as it judges `registration_required`), withdraws the
//! recognised copy whose current version only that certificate let in. A later valid
//! certificate of that version forgets the withdrawal as it forgets refusals, so catch-up
//! judges the version again.

use serde::{Deserialize, Serialize};
use xchg_protocol::canonical::from_canonical;
use xchg_protocol::certificate::{Certificate, SignedCertificate, check_revocation};
use xchg_protocol::certificate_revocation::{self, CertificateRevocation, check_names};
use xchg_protocol::{ContentId, ExchangeId, Limits, PublicKey, Timestamp};

use super::federation::REFUSAL_RETENTION_MS;
use super::tables::listings::{self, By, Transition};
use super::tables::received_certificates::{self as table, Received, ValidFields};
use super::tables::received_revocations as revocation_table;
use super::tables::{announcements, certificates, recognitions, revocations};
use super::{Applied, CommandResponse, ListingState, REFUSAL_REASON_CHARS, Refusal};

/// Most refused certificates kept per exchange; the oldest go first. The same cap holds for
/// refused revocations, and for the revocations of one zone waiting for their certificate.
pub const MAX_REFUSED_PER_EXCHANGE: i64 = 10_000;

/// Most revocations waiting for their certificate kept per exchange, all its zones together;
/// the oldest go first. Only an exchange root, which may sign for any of its zones, delegates
/// enough zones to reach it: a zone reaches only its own cap, [`MAX_REFUSED_PER_EXCHANGE`].
pub const MAX_WAITING_PER_EXCHANGE: i64 = 100_000;

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
/// message already recorded is left as it is, except a refusal, which a valid copy of the same
/// bytes replaces (a peer that delivered them on the wrong topic first must not keep them out).
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
            used: None,
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
    if table::record(db, &record)? && !settle_waiting(db, &outer.id, &certificate)? {
        // Revoked before it came, it counts for nothing: the refusals (and a withdrawal)
        // stand.
        recognitions::forget_refusals(db, &certificate.content_id)?;
        forget_withdrawal(db, &certificate)?;
    }
    Ok(Ok(Applied {
        object_id: certificate.number,
        version: None,
        state: None,
        used: None,
    }))
}

/// After `certificate` was recorded and counts: when the copy of its listing, from its issuing
/// zone, is `revoked` at exactly the version it certifies because an earlier certificate of
/// that version was revoked (PROTOCOL.md 10.6), the zone forgets its `revoked` decision on the
/// version and the envelope it held for it, so it has no decision on that version any more:
/// catch-up fetches it and judges it again, and the agreement may recognise it anew, as it does
/// a version refused for want of a certificate (10.5). A copy whose signing key its exchange
/// revoked stays withdrawn: judged again, it would only be refused.
fn forget_withdrawal(db: &rusqlite::Connection, certificate: &Certificate) -> rusqlite::Result<()> {
    let Some(cur) = listings::current(db, &certificate.listing_id.to_string())? else {
        return Ok(());
    };
    if cur.state != ListingState::Revoked
        || cur.listing.origin != certificate.zone
        || cur.listing.content_id() != certificate.content_id
    {
        return Ok(());
    }
    let Some((signer, exchange)) =
        recognitions::withdrawn_for(db, &certificate.content_id, CERTIFICATE_REVOKED)?
    else {
        return Ok(());
    };
    let key_revoked = match PublicKey::from_base64(&signer) {
        Ok(key) => revocations::revoked_at(db, &exchange, &key)?.is_some(),
        Err(_) => true,
    };
    if !key_revoked {
        recognitions::forget_revoked(db, &certificate.content_id)?;
        announcements::forget(db, &certificate.content_id)?;
    }
    Ok(())
}

/// Decides the revocations that waited for certificate `id`, just recorded: each is applied
/// when the certificate is its zone's with its number, issued at or before the revocation
/// (PROTOCOL.md 10.6 step 10), refused otherwise. Whether one was applied.
fn settle_waiting(
    db: &rusqlite::Connection,
    id: &ContentId,
    certificate: &Certificate,
) -> rusqlite::Result<bool> {
    let mut applied = false;
    for w in revocation_table::waiting_for(db, id)? {
        let named = CertificateRevocation {
            number: w.number,
            certificate_id: *id,
            zone: match w.zone.parse() {
                Ok(zone) => zone,
                Err(_) => continue,
            },
            reason: String::new(),
            revoked_at: w.revoked_at,
        };
        match check_names(&named, certificate) {
            Ok(()) => {
                revocation_table::decide(db, &w.message_id, None)?;
                applied = true;
            }
            Err(e) => {
                let reason = clip(&e.to_string());
                revocation_table::decide(db, &w.message_id, Some((e.kind(), &reason)))?;
            }
        }
    }
    Ok(applied)
}

/// A certificate revocation received on an exchange's certificate topic, as the leader judged
/// it (PROTOCOL.md 10.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedRevocation {
    /// SHA-256 of the bytes as received (the gossip message id).
    pub message_id: ContentId,
    /// The exchange of the topic it arrived on.
    pub exchange: ExchangeId,
    /// What the leader found.
    pub judged: JudgedRevocation,
    /// The peer that delivered it, at most [`super::PEER_CHARS`] characters.
    pub received_from: String,
    /// When the proposing node received it.
    pub at: Timestamp,
    /// The proposing node's name.
    pub node: String,
}

/// The leader's judgement of a received revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgedRevocation {
    /// It passed PROTOCOL.md 10.6 steps 1 to 8.
    Valid {
        /// Canonical CBOR of the signed revocation.
        #[serde(with = "serde_bytes")]
        signed: Vec<u8>,
        /// Whether this zone's agreement with the revocation's exchange requires
        /// registration, as the leader's configuration says: then the recognised copy that
        /// counted on the certificate is withdrawn.
        require_registration: bool,
    },
    /// It failed a check: a bounded record of which and why (never the bytes).
    Refused {
        /// The id it carries, if it decoded.
        revocation_id: Option<ContentId>,
        /// The kind of the failed check (PROTOCOL.md 6.3).
        kind: String,
        /// What failed, at most [`REFUSAL_REASON_CHARS`] characters.
        reason: String,
    },
}

impl ReceivedRevocation {
    /// Whether the leader found it valid.
    pub fn is_valid(&self) -> bool {
        matches!(self.judged, JudgedRevocation::Valid { .. })
    }
}

/// Applies the record of a received revocation: a valid one is checked against the key
/// revocations recorded here (PROTOCOL.md 10.6 step 9) and against the certificate it names,
/// if held (step 10), then recorded `applied` (and the copy that counted on the certificate is
/// withdrawn where the agreement requires registration) or `waiting` for its certificate; a
/// refused one is recorded within the bounds. A message already recorded is left as it is,
/// except a refusal, which a valid copy of the same bytes replaces.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn receive_revocation(
    db: &rusqlite::Connection,
    raft_index: u64,
    r: &ReceivedRevocation,
) -> rusqlite::Result<CommandResponse> {
    let received_from: String = r.received_from.chars().take(super::PEER_CHARS).collect();
    let mut record = revocation_table::Received {
        message_id: &r.message_id,
        revocation_id: None,
        exchange: r.exchange.as_str(),
        valid: None,
        decision: "refused",
        refused: None,
        received_from: &received_from,
        at: r.at,
        raft_index,
    };
    let bound = |db: &rusqlite::Connection, zone: Option<&str>| {
        let expired = Timestamp(r.at.0.saturating_sub(REFUSAL_RETENTION_MS));
        revocation_table::bound(
            db,
            expired,
            r.exchange.as_str(),
            zone,
            revocation_table::Caps {
                refused_per_exchange: MAX_REFUSED_PER_EXCHANGE,
                waiting_per_zone: MAX_REFUSED_PER_EXCHANGE,
                waiting_per_exchange: MAX_WAITING_PER_EXCHANGE,
            },
        )
    };
    let recorded = |object_id: String| {
        Ok(Ok(Applied {
            object_id,
            version: None,
            state: None,
            used: None,
        }))
    };
    let (signed, require_registration) = match &r.judged {
        JudgedRevocation::Refused {
            revocation_id,
            kind,
            reason,
        } => {
            let reason = clip(reason);
            record.revocation_id = revocation_id.as_ref();
            record.refused = Some((kind, &reason));
            revocation_table::record(db, &record)?;
            bound(db, None)?;
            return recorded(r.message_id.to_string());
        }
        JudgedRevocation::Valid {
            signed,
            require_registration,
        } => (signed, *require_registration),
    };
    let (outer, revocation) =
        match certificate_revocation::decode(signed, &certificate_revocation::limits()) {
            Ok(decoded) => decoded,
            Err(e) => {
                return Ok(Err(Refusal::Invalid(format!(
                    "a revocation proposed as valid does not decode: {e}"
                ))));
            }
        };
    let delegation = &outer.delegation.delegation;
    if ContentId::of(&outer.body) != outer.id
        || delegation.zone != revocation.zone
        || delegation.exchange != r.exchange
    {
        return Ok(Err(Refusal::Invalid(format!(
            "a revocation proposed as valid for the topic of {} is not one of its zones' \
             (its id, zone or exchange does not match)",
            r.exchange
        ))));
    }
    let verified = certificate_revocation::VerifiedCertificateRevocation {
        id: outer.id,
        body: revocation.clone(),
        signer: delegation.node_key,
        delegation: outer.delegation.clone(),
    };
    record.revocation_id = Some(&outer.id);
    let key_revoked = revocations::revoked_at(db, r.exchange.as_str(), &verified.signer)?;
    let held = table::held(db, &revocation.certificate_id)?;
    let certificate = held.as_deref().map(decode).transpose();
    let refusal = certificate_revocation::check_key_revocation(&verified, key_revoked)
        .err()
        .or_else(|| match &certificate {
            Ok(Some((_, c))) => check_names(&revocation, c).err(),
            _ => None,
        });
    if let Some(e) = refusal {
        let reason = clip(&e.to_string());
        record.refused = Some((e.kind(), &reason));
        revocation_table::record(db, &record)?;
        bound(db, None)?;
        return recorded(r.message_id.to_string());
    }
    let certificate = match certificate {
        Ok(c) => c.map(|(_, c)| c),
        Err(why) => {
            return Ok(Err(Refusal::Invalid(format!(
                "the certificate held as {} does not decode: {why}",
                revocation.certificate_id
            ))));
        }
    };
    let signer = verified.signer.to_base64();
    let zone = revocation.zone.to_string();
    record.decision = if certificate.is_some() {
        "applied"
    } else {
        "waiting"
    };
    record.valid = Some(revocation_table::ValidFields {
        certificate_id: &revocation.certificate_id,
        zone: &zone,
        number: &revocation.number,
        revoked_at: revocation.revoked_at,
        reason: &revocation.reason,
        signer: &signer,
        signed,
    });
    let new = revocation_table::record(db, &record)?;
    bound(db, Some(&zone))?;
    if new
        && require_registration
        && let Some(certificate) = &certificate
    {
        withdraw(db, raft_index, r, &outer.id, &revocation, certificate)?;
    }
    recorded(revocation.number)
}

/// After revocation `revocation_id` of `certificate` was applied under an agreement that
/// requires registration: the recognised copy of the certificate's listing, from its issuing
/// zone, whose current version is the one certified, becomes `revoked` (its decision too, with
/// the reason `certificate_revoked: ...`), unless another certificate of that zone still
/// counts for the version. Copies of other versions, or already withdrawn, stay as they are.
fn withdraw(
    db: &rusqlite::Connection,
    raft_index: u64,
    r: &ReceivedRevocation,
    revocation_id: &ContentId,
    revocation: &CertificateRevocation,
    certificate: &Certificate,
) -> rusqlite::Result<()> {
    let listing_id = certificate.listing_id.to_string();
    let Some(cur) = listings::current(db, &listing_id)? else {
        return Ok(());
    };
    if cur.state != ListingState::Recognised
        || cur.listing.origin != certificate.zone
        || cur.listing.content_id() != certificate.content_id
        || table::certified_by_zone(
            db,
            &certificate.listing_id,
            &certificate.content_id,
            certificate.zone.as_str(),
        )?
    {
        return Ok(());
    }
    let node = format!("node:{}", r.node);
    listings::set_state(db, &listing_id, ListingState::Revoked)?;
    listings::record_history(
        db,
        &listing_id,
        &Transition {
            raft_index,
            at: r.at,
            by: By {
                id: &node,
                role: "system",
            },
            action: "revoke",
            from: Some(cur.state),
            to: ListingState::Revoked,
            version: cur.listing.version,
            detail: Some(
                serde_json::json!({
                    "certificate_revocation": revocation_id.to_string(),
                    "certificate": revocation.number,
                    "zone": revocation.zone.as_str(),
                    "reason": revocation.reason,
                })
                .to_string(),
            ),
        },
    )?;
    let why = clip(&format!(
        "{CERTIFICATE_REVOKED}: certificate {} was revoked by {}: {}",
        revocation.number, revocation.zone, revocation.reason
    ));
    recognitions::mark_revoked(db, &certificate.content_id, &why)?;
    Ok(())
}

/// The kind a copy withdrawn for its certificate's revocation is recorded with (the reason of
/// its `revoked` decision starts with it, PROTOCOL.md 7.4 and 10.6).
pub const CERTIFICATE_REVOKED: &str = "certificate_revoked";

/// Applies the leader's record that it published the revocation of the certificate of
/// registration `registration_id`.
///
/// # Errors
/// Only storage errors; a revocation not waiting to be published is refused.
pub fn revocation_published(
    db: &rusqlite::Connection,
    registration_id: u64,
    at: Timestamp,
) -> rusqlite::Result<CommandResponse> {
    if !certificates::mark_revocation_published(db, registration_id, at)? {
        return Ok(Err(Refusal::Conflict(format!(
            "the revocation of the certificate of registration {registration_id} is not waiting \
             to be published"
        ))));
    }
    Ok(Ok(Applied {
        object_id: format!("registration:{registration_id}"),
        version: None,
        state: None,
        used: None,
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
        used: None,
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

    /// The credit listing of the vectors, as a copy recognised from `xuchang/yuzhou`.
    fn copy() -> xchg_protocol::Listing {
        xchg_protocol::Listing::first_version(
            vectors::credit_draft(),
            "xuchang/yuzhou".parse().expect("zone"),
            Timestamp(1),
        )
    }

    /// The vectors' certificate, for the version of [`copy`].
    fn certificate_of_copy() -> SignedCertificate {
        let l = copy();
        let mut c = certificate_vectors::certificate();
        c.listing_id = l.id();
        c.content_id = l.content_id();
        SignedCertificate::sign(&c, &vectors::node(), vectors::delegation())
    }

    /// `revocation` signed by the vectors' node key delegated to `zone`.
    fn revocation_signed_in(zone: &str, revocation: &CertificateRevocation) -> Vec<u8> {
        let delegation = xchg_protocol::SignedDelegation::sign(
            xchg_protocol::Delegation {
                zone: zone.parse().expect("zone"),
                ..vectors::delegation().delegation
            },
            &vectors::root(),
        );
        certificate_revocation::sign(revocation, &vectors::node(), delegation).to_bytes()
    }

    fn revocation_received(signed: Vec<u8>, require_registration: bool) -> ReceivedRevocation {
        ReceivedRevocation {
            message_id: ContentId::of(&signed),
            exchange: "xuchang".parse().expect("exchange"),
            judged: JudgedRevocation::Valid {
                signed,
                require_registration,
            },
            received_from: "peer".into(),
            at: vectors::NOW,
            node: "n1".into(),
        }
    }

    /// The yuzhou revocation of [`certificate_of_copy`].
    fn revocation_of_copy(require_registration: bool) -> ReceivedRevocation {
        let r = CertificateRevocation {
            certificate_id: certificate_of_copy().id,
            ..certificate_vectors::revocation()
        };
        revocation_received(
            revocation_signed_in("xuchang/yuzhou", &r),
            require_registration,
        )
    }

    /// `(decision, kind)` of every received revocation, in order.
    fn revocation_rows(db: &rusqlite::Connection) -> Vec<(String, Option<String>)> {
        let mut stmt = db
            .prepare("SELECT decision, kind FROM received_revocations ORDER BY rowid")
            .expect("select");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("read")
    }

    fn counts(db: &rusqlite::Connection) -> bool {
        let l = copy();
        table::certified_by_zone(db, &l.id(), &l.content_id(), "xuchang/yuzhou").expect("read")
    }

    /// A zone holding [`copy`] recognised thanks to [`certificate_of_copy`], after the
    /// certificate's revocation was applied under an agreement that requires registration when
    /// `require_registration`: the copy's state and its recorded decision.
    fn copy_after_revocation(require_registration: bool) -> (ListingState, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let l = copy();
        listings::write(&db, &l, ListingState::Recognised, "federation").expect("copy");
        recognitions::record(
            &db,
            &Decision {
                content_id: &l.content_id(),
                kind: AnnouncementKind::Listing,
                listing_id: Some(&l.id()),
                version: Some(1),
                origin: "xuchang/yuzhou",
                exchange: "xuchang",
                agreement: "sibling",
                decision: "recognised",
                reason: None,
                signer: &vectors::node().public().to_base64(),
                delegation: None,
                received_from: "peer",
                at: vectors::NOW,
                raft_index: 1,
            },
        )
        .expect("recognised");
        let cert = received(Judged::Valid {
            signed: certificate_of_copy().to_bytes(),
        });
        receive(&db, 2, &cert).expect("apply").expect("recorded");
        assert!(counts(&db));
        let applied = receive_revocation(&db, 3, &revocation_of_copy(require_registration))
            .expect("apply")
            .expect("recorded");
        assert_eq!(applied.object_id, "XC-2026-YUZHOU-000123");
        assert_eq!(revocation_rows(&db), [("applied".to_owned(), None)]);
        assert!(!counts(&db), "a revoked certificate counts for nothing");
        let state = listings::current(&db, &l.id().to_string())
            .expect("read")
            .expect("held")
            .state;
        let decision: String = db
            .query_row(
                "SELECT decision || ' ' || coalesce(reason, '') FROM recognitions \
                 WHERE content_id = ?1",
                [l.content_id().to_string()],
                |r| r.get(0),
            )
            .expect("decision");
        (state, decision)
    }

    #[test]
    fn a_revoked_certificate_withdraws_the_copy_it_let_in_only_where_registration_is_required() {
        let (state, decision) = copy_after_revocation(true);
        assert_eq!(state, ListingState::Revoked);
        assert!(
            decision.starts_with("revoked certificate_revoked: certificate XC-2026-YUZHOU-000123"),
            "{decision}"
        );
        let (state, decision) = copy_after_revocation(false);
        assert_eq!(state, ListingState::Recognised);
        assert_eq!(decision.trim(), "recognised");
    }

    #[test]
    fn a_recognition_judged_on_a_certificate_revoked_before_it_is_applied_is_not_recorded() {
        // The leader read the replica while the certificate counted and proposed the copy's
        // recognition; the certificate's revocation was applied first. Recorded, the copy
        // would stay recognised on a certificate that no longer counts.
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let cert = received(Judged::Valid {
            signed: certificate_of_copy().to_bytes(),
        });
        receive(&db, 1, &cert).expect("apply").expect("recorded");
        receive_revocation(&db, 2, &revocation_of_copy(true))
            .expect("apply")
            .expect("recorded");
        let l = copy();
        let env = xchg_protocol::Envelope::seal(
            AnnouncementKind::Listing,
            l.canonical_bytes(),
            &vectors::node(),
            Some(vectors::delegation()),
        );
        let recognition = |wants_certificate: bool| crate::catalog::Recognition {
            envelope: env.to_bytes(),
            content_id: env.id,
            kind: env.kind,
            exchange: "xuchang".parse().expect("exchange"),
            agreement: "sibling".into(),
            signer: vectors::node().public(),
            refusal: None,
            wants_certificate,
            received_from: "peer".into(),
            at: vectors::NOW,
            node: "n1".into(),
        };
        let zone = crate::catalog::ZoneFacts::new(
            "xuchang/changge".parse().expect("zone"),
            crate::catalog::ExportPolicy::default(),
        );
        let late = crate::catalog::federation::recognize(&db, &zone, 3, &recognition(true))
            .expect("apply");
        assert!(
            matches!(&late, Err(Refusal::Conflict(why)) if why.contains("certificate")),
            "{late:?}"
        );
        assert!(
            !recognitions::decided(&db, &l.content_id()).expect("read"),
            "undecided, so catch-up judges it again (and refuses it for want of a certificate)"
        );
        assert!(
            listings::current(&db, &l.id().to_string())
                .expect("read")
                .is_none()
        );
        // Recognised under an agreement without the term, it stands, certificate or not.
        crate::catalog::federation::recognize(&db, &zone, 4, &recognition(false))
            .expect("apply")
            .expect("recorded");
        assert!(recognitions::decided(&db, &l.content_id()).expect("read"));
    }

    /// [`certificate_of_copy`] under another number: the same version certified again.
    fn second_certificate_of_copy() -> ReceivedCertificate {
        let l = copy();
        let mut c = certificate_vectors::certificate();
        c.number = "XC-2026-YUZHOU-000124".into();
        c.listing_id = l.id();
        c.content_id = l.content_id();
        let signed = SignedCertificate::sign(&c, &vectors::node(), vectors::delegation());
        let mut r = received(Judged::Valid {
            signed: signed.to_bytes(),
        });
        r.message_id = ContentId::of(b"the second certificate");
        r
    }

    /// The recognition of [`copy`]'s envelope under an agreement that requires registration,
    /// as the leader proposes it after finding a certificate of its origin zone.
    fn recognition_of_copy() -> crate::catalog::Recognition {
        let env = xchg_protocol::Envelope::seal(
            AnnouncementKind::Listing,
            copy().canonical_bytes(),
            &vectors::node(),
            Some(vectors::delegation()),
        );
        crate::catalog::Recognition {
            envelope: env.to_bytes(),
            content_id: env.id,
            kind: env.kind,
            exchange: "xuchang".parse().expect("exchange"),
            agreement: "sibling".into(),
            signer: vectors::node().public(),
            refusal: None,
            wants_certificate: true,
            received_from: "peer".into(),
            at: vectors::NOW,
            node: "n1".into(),
        }
    }

    fn changge() -> crate::catalog::ZoneFacts {
        crate::catalog::ZoneFacts::new(
            "xuchang/changge".parse().expect("zone"),
            crate::catalog::ExportPolicy::default(),
        )
    }

    /// A zone that recognised [`copy`] on [`certificate_of_copy`], then withdrew it when that
    /// certificate was revoked (registration required).
    fn withdrawn_copy(db: &rusqlite::Connection) {
        let cert = received(Judged::Valid {
            signed: certificate_of_copy().to_bytes(),
        });
        receive(db, 1, &cert).expect("apply").expect("recorded");
        let recognised =
            crate::catalog::federation::recognize(db, &changge(), 2, &recognition_of_copy())
                .expect("apply")
                .expect("recognised");
        assert_eq!(recognised.state, Some(ListingState::Recognised));
        receive_revocation(db, 3, &revocation_of_copy(true))
            .expect("apply")
            .expect("recorded");
        let l = copy();
        assert_eq!(state_of(db), ListingState::Revoked);
        assert!(recognitions::decided(db, &l.content_id()).expect("read"));
    }

    fn state_of(db: &rusqlite::Connection) -> ListingState {
        listings::current(db, &copy().id().to_string())
            .expect("read")
            .expect("held")
            .state
    }

    #[test]
    fn a_copy_withdrawn_for_its_certificate_is_judged_again_and_recognised_when_certified_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        withdrawn_copy(&db);
        let l = copy();
        receive(&db, 4, &second_certificate_of_copy())
            .expect("apply")
            .expect("recorded");
        assert!(counts(&db), "the new certificate counts");
        assert!(
            !recognitions::decided(&db, &l.content_id()).expect("read"),
            "the version is undecided again, so catch-up fetches and judges it"
        );
        assert_eq!(state_of(&db), ListingState::Revoked, "until it is judged");
        let again =
            crate::catalog::federation::recognize(&db, &changge(), 5, &recognition_of_copy())
                .expect("apply")
                .expect("recognised again, not stale");
        assert_eq!(again.state, Some(ListingState::Recognised));
        assert_eq!(state_of(&db), ListingState::Recognised);
        let actions: Vec<(String, String)> = db
            .prepare(
                "SELECT action, to_state FROM listing_history \
                 WHERE listing_seq = (SELECT seq FROM listings WHERE id = ?1) ORDER BY seq",
            )
            .expect("select")
            .query_map([l.id().to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("read");
        let pair = |a: &str, s: &str| (a.to_owned(), s.to_owned());
        assert_eq!(
            actions,
            [
                pair("recognise", "recognised"),
                pair("revoke", "revoked"),
                pair("recognise", "recognised")
            ]
        );
        assert!(recognitions::decided(&db, &l.content_id()).expect("read"));
    }

    #[test]
    fn a_withdrawn_copy_whose_key_was_revoked_stays_withdrawn_when_certified_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        withdrawn_copy(&db);
        // Revoked after the certificates were issued: they stay valid, the envelope does not.
        let issued = certificate_vectors::certificate().issued_at;
        revocations::insert(
            &db,
            "xuchang",
            &vectors::node().public(),
            &ContentId::of(b"key revocation"),
            "key lost",
            Timestamp(issued.0 + 1),
        )
        .expect("key revocation");
        receive(&db, 4, &second_certificate_of_copy())
            .expect("apply")
            .expect("recorded");
        assert!(counts(&db));
        assert!(
            recognitions::decided(&db, &copy().content_id()).expect("read"),
            "judged again, it would only be refused: the withdrawal stands"
        );
        assert_eq!(state_of(&db), ListingState::Revoked);
    }

    #[test]
    fn a_revocation_that_arrives_before_its_certificate_waits_and_is_applied_when_it_comes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        receive_revocation(&db, 1, &revocation_of_copy(true))
            .expect("apply")
            .expect("recorded");
        assert_eq!(revocation_rows(&db), [("waiting".to_owned(), None)]);
        let cert = received(Judged::Valid {
            signed: certificate_of_copy().to_bytes(),
        });
        receive(&db, 2, &cert).expect("apply").expect("recorded");
        assert_eq!(revocation_rows(&db), [("applied".to_owned(), None)]);
        assert!(!counts(&db), "the certificate never counts");
    }

    #[test]
    fn a_revocation_of_another_zones_certificate_is_refused_held_or_not() {
        // A changge node revokes, in changge's name, the id of yuzhou's certificate.
        let forged = || {
            let r = CertificateRevocation {
                number: "XC-2026-CHANGGE-000123".into(),
                zone: "xuchang/changge".parse().expect("zone"),
                certificate_id: certificate_of_copy().id,
                ..certificate_vectors::revocation()
            };
            revocation_received(revocation_signed_in("xuchang/changge", &r), true)
        };
        let cert = received(Judged::Valid {
            signed: certificate_of_copy().to_bytes(),
        });
        let refused = [("refused".to_owned(), Some("wrong_origin".to_owned()))];
        // The certificate held first.
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        receive(&db, 1, &cert).expect("apply").expect("recorded");
        receive_revocation(&db, 2, &forged())
            .expect("apply")
            .expect("recorded");
        assert_eq!(revocation_rows(&db), refused);
        assert!(counts(&db));
        // The forged revocation first: refused when the certificate comes.
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        receive_revocation(&db, 1, &forged())
            .expect("apply")
            .expect("recorded");
        receive(&db, 2, &cert).expect("apply").expect("recorded");
        assert_eq!(revocation_rows(&db), refused);
        assert!(counts(&db));
    }

    #[test]
    fn a_revocation_dated_before_its_certificate_was_issued_is_refused_held_or_not() {
        // Signed with a key whose delegation ended before the issue, it can only be backdated.
        let backdated = || {
            let r = CertificateRevocation {
                certificate_id: certificate_of_copy().id,
                revoked_at: Timestamp(certificate_vectors::certificate().issued_at.0 - 1),
                ..certificate_vectors::revocation()
            };
            revocation_received(revocation_signed_in("xuchang/yuzhou", &r), true)
        };
        let cert = || {
            received(Judged::Valid {
                signed: certificate_of_copy().to_bytes(),
            })
        };
        let refused = [("refused".to_owned(), Some("wrong_certificate".to_owned()))];
        for certificate_first in [true, false] {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = crate::catalog::test_db(dir.path());
            if certificate_first {
                receive(&db, 1, &cert()).expect("apply").expect("recorded");
            }
            receive_revocation(&db, 2, &backdated())
                .expect("apply")
                .expect("recorded");
            if !certificate_first {
                receive(&db, 3, &cert()).expect("apply").expect("recorded");
            }
            assert_eq!(
                revocation_rows(&db),
                refused,
                "certificate first: {certificate_first}"
            );
            assert!(counts(&db), "certificate first: {certificate_first}");
        }
    }

    /// Records a valid revocation by `zone` of certificate `certificate`, waiting for it.
    fn waiting(db: &rusqlite::Connection, n: u64, zone: &str, certificate: &ContentId) {
        let message = ContentId::of(format!("message {n}").as_bytes());
        revocation_table::record(
            db,
            &revocation_table::Received {
                message_id: &message,
                revocation_id: Some(&message),
                exchange: "xuchang",
                valid: Some(revocation_table::ValidFields {
                    certificate_id: certificate,
                    zone,
                    number: "XC-2026-X-000001",
                    revoked_at: vectors::NOW,
                    reason: "r",
                    signer: "k",
                    signed: b"s",
                }),
                decision: "waiting",
                refused: None,
                received_from: "peer",
                at: vectors::NOW,
                raft_index: n,
            },
        )
        .expect("record");
    }

    #[test]
    fn a_zone_flooding_waiting_revocations_pushes_out_only_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let real = ContentId::of(b"a certificate of yuzhou");
        waiting(&db, 0, "xuchang/yuzhou", &real);
        for n in 1..=10 {
            // Valid-looking: changge's own, naming certificates no one holds.
            waiting(&db, n, "xuchang/changge", &ContentId::of(&n.to_be_bytes()));
            let caps = revocation_table::Caps {
                refused_per_exchange: 10,
                waiting_per_zone: 3,
                waiting_per_exchange: 100,
            };
            revocation_table::bound(&db, Timestamp(0), "xuchang", Some("xuchang/changge"), caps)
                .expect("bound");
        }
        let left = |zone: &str| -> i64 {
            db.query_row(
                "SELECT count(*) FROM received_revocations WHERE decision = 'waiting' \
                 AND zone = ?1",
                [zone],
                |r| r.get(0),
            )
            .expect("count")
        };
        assert_eq!(
            left("xuchang/changge"),
            3,
            "changge keeps its newest within the cap"
        );
        assert_eq!(
            left("xuchang/yuzhou"),
            1,
            "yuzhou's waiting revocation is not pushed out"
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
