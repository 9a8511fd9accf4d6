//! Certificates and certificate revocations received on an exchange's certificate topic
//! (PROTOCOL.md 10.5, 10.6), judged as a part of the core with no IO: one message in, a
//! [`Judgement`] out. A message whose body decodes as a revocation is one; any other is judged
//! as a certificate.
//!
//! Order: size → PROTOCOL.md 10.3 steps 1 to 8 against the trusted roots at `now` → the
//! delegation's exchange is the topic's → this zone's own certificate coming back. Step 9 (the
//! signing key's revocation against the certificate's issue time) needs the revocations the
//! zone recorded, so the state machine makes it when it applies the record
//! (`catalog::certified`). A certificate that fails is recorded as a bounded refusal (kind and
//! reason, never the bytes), within the judge's refusal rate; one from an exchange without an
//! agreement is only ignored.
//!
//! A revocation goes through the same order with 10.6 steps 1 to 8; steps 9 and 10 (the signing
//! key's revocation, and the certificate it names) need the zone's records, so the state
//! machine makes them (`catalog::certified::receive_revocation`). The leader adds its
//! agreement's `require_registration` to a valid one: that term is this node's configuration,
//! and the state machine withdraws a copy only when it is set.

use xchg_protocol::application::SignedMessage;
use xchg_protocol::certificate::{SignedCertificate, verify_certificate};
use xchg_protocol::certificate_revocation::{
    self, CertificateRevocation, verify_certificate_revocation,
};
use xchg_protocol::{ContentId, Limits, Timestamp};

use super::core::Settings;
use super::judge::{Judgement, Proposal};
use super::verdicts::Reason;
use crate::catalog::PEER_CHARS;
use crate::catalog::certified::{
    Judged, JudgedRevocation, ReceivedCertificate, ReceivedRevocation,
};
use crate::gossip::{MAX_PUBLISH_BYTES, Peer};

/// What the judge needs to know of a judged certificate to admit its refusal record.
pub(super) struct Certified {
    /// The verdict, why, and the record to propose.
    pub judgement: Judgement,
    /// The signing key it names (base64), or empty when it did not decode: refusals are
    /// admitted per signer and per peer.
    pub signer: String,
}

/// Judges `data`, received from `from` on the certificate topic of `topic_exchange`, at `now`:
/// as a revocation when its body decodes as one, as a certificate otherwise.
pub(super) fn judge(
    data: &[u8],
    topic_exchange: &str,
    from: &Peer,
    settings: &Settings,
    now: Timestamp,
) -> Certified {
    if data.len() <= MAX_PUBLISH_BYTES
        && let Ok(decoded) = certificate_revocation::decode(data, &certificate_revocation::limits())
    {
        return judge_revocation(data, &decoded, topic_exchange, from, settings, now);
    }
    let limits = Limits::default();
    let decoded = SignedCertificate::from_bytes(data, &limits).ok();
    let claimed = decoded.as_ref().map(|c| c.id);
    let signer = decoded
        .as_ref()
        .map(|c| c.delegation.delegation.node_key.to_base64())
        .unwrap_or_default();
    let record = |judged: Judged| ReceivedCertificate {
        message_id: ContentId::of(data),
        exchange: topic_exchange
            .parse()
            .unwrap_or_else(|_| settings.exchange.clone()),
        judged,
        received_from: from.0.chars().take(PEER_CHARS).collect(),
        at: now,
        node: settings.node.clone(),
    };
    let refuse = |reason: Reason, detail: String| {
        let proposal = Proposal::Certificate(Box::new(record(Judged::Refused {
            certificate_id: claimed,
            kind: reason.as_str().to_owned(),
            reason: detail.clone(),
        })));
        Judgement {
            reason,
            detail: Some(detail),
            content_id: claimed,
            proposal: Some(proposal),
        }
    };
    let judgement = if data.len() > MAX_PUBLISH_BYTES {
        refuse(
            Reason::Verification("too_large"),
            format!("{} bytes, more than {MAX_PUBLISH_BYTES}", data.len()),
        )
    } else if topic_exchange.parse::<xchg_protocol::ExchangeId>().is_err() {
        Judgement {
            reason: Reason::UnknownTopic,
            detail: None,
            content_id: claimed,
            proposal: None,
        }
    } else {
        match verify_certificate(data, &settings.roots, now, &limits) {
            Err(e) if e.kind() == "unknown_exchange" => Judgement {
                // No agreement with its exchange: nothing of this zone's business to record.
                reason: Reason::of(&e),
                detail: Some(e.to_string()),
                content_id: claimed,
                proposal: None,
            },
            Err(e) => refuse(Reason::of(&e), e.to_string()),
            Ok(v) if v.delegation.delegation.exchange.as_str() != topic_exchange => refuse(
                Reason::WrongTopic,
                format!(
                    "carries the authority of {}, arrived on the certificate topic of \
                     {topic_exchange}",
                    v.delegation.delegation.exchange
                ),
            ),
            Ok(v)
                if settings
                    .agreement_with(&v.delegation.delegation.exchange)
                    .is_none() =>
            {
                Judgement {
                    reason: Reason::Verification("unknown_exchange"),
                    detail: None,
                    content_id: Some(v.id),
                    proposal: None,
                }
            }
            Ok(v) if v.certificate.zone == settings.zone => Judgement {
                reason: Reason::OwnZone,
                detail: None,
                content_id: Some(v.id),
                proposal: None,
            },
            Ok(v) => Judgement {
                reason: Reason::Accepted,
                detail: None,
                content_id: Some(v.id),
                proposal: Some(Proposal::Certificate(Box::new(record(Judged::Valid {
                    signed: data.to_vec(),
                })))),
            },
        }
    };
    Certified { judgement, signer }
}

/// Judges `data`, a certificate revocation (`decoded`, its body decoded), received from `from`
/// on the certificate topic of `topic_exchange`, at `now`.
fn judge_revocation(
    data: &[u8],
    (signed, _): &(SignedMessage, CertificateRevocation),
    topic_exchange: &str,
    from: &Peer,
    settings: &Settings,
    now: Timestamp,
) -> Certified {
    let limits = certificate_revocation::limits();
    let claimed = Some(signed.id);
    let signer = signed.delegation.delegation.node_key.to_base64();
    let record = |judged: JudgedRevocation| ReceivedRevocation {
        message_id: ContentId::of(data),
        exchange: topic_exchange
            .parse()
            .unwrap_or_else(|_| settings.exchange.clone()),
        judged,
        received_from: from.0.chars().take(PEER_CHARS).collect(),
        at: now,
        node: settings.node.clone(),
    };
    let refuse = |reason: Reason, detail: String| {
        let proposal =
            Proposal::CertificateRevocation(Box::new(record(JudgedRevocation::Refused {
                revocation_id: claimed,
                kind: reason.as_str().to_owned(),
                reason: detail.clone(),
            })));
        Judgement {
            reason,
            detail: Some(detail),
            content_id: claimed,
            proposal: Some(proposal),
        }
    };
    let nothing = |reason: Reason, detail: Option<String>| Judgement {
        reason,
        detail,
        content_id: claimed,
        proposal: None,
    };
    let judgement = if topic_exchange.parse::<xchg_protocol::ExchangeId>().is_err() {
        nothing(Reason::UnknownTopic, None)
    } else {
        match verify_certificate_revocation(data, &settings.roots, now, &limits) {
            // No agreement with its exchange: nothing of this zone's business to record.
            Err(e) if e.kind() == "unknown_exchange" => {
                nothing(Reason::of(&e), Some(e.to_string()))
            }
            Err(e) => refuse(Reason::of(&e), e.to_string()),
            Ok(v) if v.delegation.delegation.exchange.as_str() != topic_exchange => refuse(
                Reason::WrongTopic,
                format!(
                    "carries the authority of {}, arrived on the certificate topic of \
                     {topic_exchange}",
                    v.delegation.delegation.exchange
                ),
            ),
            Ok(v) => match settings.agreement_with(&v.delegation.delegation.exchange) {
                None => nothing(Reason::Verification("unknown_exchange"), None),
                Some(_) if v.body.zone == settings.zone => nothing(Reason::OwnZone, None),
                Some((_, terms)) => Judgement {
                    reason: Reason::Accepted,
                    detail: None,
                    content_id: Some(v.id),
                    proposal: Some(Proposal::CertificateRevocation(Box::new(record(
                        JudgedRevocation::Valid {
                            signed: data.to_vec(),
                            require_registration: terms.require_registration,
                        },
                    )))),
                },
            },
        }
    };
    Certified { judgement, signer }
}
