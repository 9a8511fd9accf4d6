//! The receiving pipeline: one envelope in, a gossip verdict and perhaps a proposal out.
//!
//! Order (PROTOCOL.md 6 and 7.4): size → bounded decode → delegation chain to a trusted root →
//! signature → id → topic/authority match → duplicate and stale checks against the replica →
//! the agreement's recognition policy. Only verified envelopes ever reach Raft, and a refused
//! one only as a bounded record, within a per-signer and per-peer rate ([`super::limits`]).

use xchg_protocol::canonical::from_canonical;
use xchg_protocol::{
    AnnouncementKind, Body, ContentId, Envelope, ExchangeId, Limits, Timestamp, TrustStore,
    VerifyError, verify,
};

use super::limits::Admission;
use super::policy;
use super::service::Federation;
use super::verdicts::{Reason, VerdictRecord, Via};
use crate::catalog::{PEER_CHARS, REFUSAL_REASON_CHARS, Recognition, RefusedAnnouncement};
use crate::gossip::{MAX_PUBLISH_BYTES, Offence, Peer, Verdict};

/// What to propose to the zone's Raft about one envelope.
#[derive(Debug)]
pub enum Proposal {
    /// Record the announcement and the decision on it (the envelope goes through Raft).
    Recognize(Recognition),
    /// Record only a bounded refusal (no envelope).
    Refuse(RefusedAnnouncement),
}

impl Proposal {
    /// The announcement's content id.
    pub fn content_id(&self) -> ContentId {
        match self {
            Proposal::Recognize(r) => r.content_id,
            Proposal::Refuse(r) => r.content_id,
        }
    }
}

/// What the pipeline decided about one envelope.
#[derive(Debug)]
pub struct Judgement {
    /// Why; [`Reason::verdict`] is the gossip verdict.
    pub reason: Reason,
    /// What exactly failed, or why the agreement refuses it.
    pub detail: Option<String>,
    /// The envelope's id, if the envelope decoded (for a failure, the id it claims).
    pub content_id: Option<ContentId>,
    /// What to propose to the zone's Raft, if anything.
    pub proposal: Option<Proposal>,
}

impl Judgement {
    fn drop(reason: Reason, content_id: Option<ContentId>) -> Self {
        Judgement {
            reason,
            detail: None,
            content_id,
            proposal: None,
        }
    }

    /// The gossip verdict.
    pub fn verdict(&self) -> Verdict {
        self.reason.verdict()
    }
}

/// The verdict for a verification failure (PROTOCOL.md 7.4): failures that depend on the
/// receiver's own state or clock are ignored, everything else is rejected.
pub fn verdict_for(e: &VerifyError) -> Verdict {
    Reason::of(e).verdict()
}

/// The id an envelope claims, when the bytes decode as one (for the verdict journal).
fn claimed_id(data: &[u8]) -> Option<ContentId> {
    from_canonical::<Envelope>(data, &Limits::default())
        .ok()
        .map(|e| e.id)
}

/// What the replica holds of a listing id.
pub struct Held {
    /// Its origin zone.
    pub origin: String,
    /// Its current version.
    pub version: u32,
}

impl Federation {
    /// Judges `data` received on the topic of `topic_exchange` from `from`, with every check.
    pub async fn judge(&self, data: &[u8], topic_exchange: &str, from: &Peer) -> Judgement {
        self.judge_with(data, topic_exchange, from, true).await
    }

    /// Judges `data`; without `against_replica`, the checks that read the replica (duplicate
    /// content, stale version, origin conflict) are skipped. Followers judge that way: their
    /// verdict only decides forwarding (gossip already drops repeated message ids), and only the
    /// leader, which checks everything, proposes a decision.
    pub async fn judge_with(
        &self,
        data: &[u8],
        topic_exchange: &str,
        from: &Peer,
        against_replica: bool,
    ) -> Judgement {
        if data.len() > MAX_PUBLISH_BYTES {
            return Judgement::drop(Reason::Verification("too_large"), None);
        }
        let trust: TrustStore = self.trust().await;
        let verified = match verify(data, &trust, Timestamp::now(), &Limits::default()) {
            Ok(v) => v,
            Err(e) => {
                return Judgement {
                    reason: Reason::of(&e),
                    detail: Some(e.to_string()),
                    content_id: claimed_id(data),
                    proposal: None,
                };
            }
        };
        let id = Some(verified.id);
        let authority: &ExchangeId = match (&verified.body, &verified.delegation) {
            (Body::Revocation(r), _) => &r.exchange,
            (_, Some(d)) => &d.delegation.exchange,
            (_, None) => return Judgement::drop(Reason::Verification("missing_delegation"), id),
        };
        if authority.as_str() != topic_exchange {
            let mut j = Judgement::drop(Reason::WrongTopic, id);
            j.detail = Some(format!(
                "carries the authority of {authority}, arrived on the topic of {topic_exchange}"
            ));
            return j;
        }
        let own_exchange = &self.config.exchange.id;
        let (agreement_name, agreement) = if authority == own_exchange {
            ("sibling".to_owned(), &self.config.sibling_agreement)
        } else {
            match self.config.agreement_with(authority) {
                Some(a) => (format!("outside:{authority}"), a),
                None => {
                    return Judgement::drop(Reason::Verification("unknown_exchange"), id);
                }
            }
        };
        if let Some(d) = &verified.delegation
            && d.delegation.zone == self.config.zone.id
        {
            // This zone's own announcement coming back: valid, worth forwarding, nothing to do.
            return Judgement::drop(Reason::OwnZone, id);
        }
        if against_replica && self.seen(&verified.id).await {
            return Judgement::drop(Reason::Duplicate, id);
        }
        // Why it is refused before recording, and the listing it concerns.
        let mut refusal: Option<(Reason, String, &xchg_protocol::Listing)> = None;
        if let Body::Listing(listing) = &verified.body {
            let held = if against_replica {
                self.held(&listing.id()).await
            } else {
                None
            };
            match held {
                // A version 1 proves its listing id (the id is its own content id), so it may
                // replace a copy someone else announced under that id; apply decides.
                Some(h) if h.origin != listing.origin.as_str() && listing.listing_id.is_some() => {
                    // A later version naming a listing id held from another origin. Ignore, not
                    // Reject: whether it conflicts depends on what this receiver holds. The
                    // refusal is recorded.
                    let why = format!(
                        "listing {} belongs to {}, not to {}",
                        listing.id(),
                        h.origin,
                        listing.origin
                    );
                    refusal = Some((Reason::OriginConflict, why, listing));
                }
                Some(h) if h.origin == listing.origin.as_str() && h.version >= listing.version => {
                    return Judgement::drop(Reason::Stale, id);
                }
                _ => {}
            }
            if refusal.is_none()
                && let Err(why) = policy::recognise(listing, agreement)
            {
                refusal = Some((Reason::RefusedByAgreement, why, listing));
            }
        }
        let kind = match &verified.body {
            Body::Listing(_) => AnnouncementKind::Listing,
            Body::Delisting(_) => AnnouncementKind::Delisting,
            Body::Revocation(_) => AnnouncementKind::Revocation,
        };
        let received_from: String = from.0.chars().take(PEER_CHARS).collect();
        if let Some((reason, why, listing)) = refusal {
            let signer = verified.signer.to_base64();
            if let Admission::SignerOverRate | Admission::PeerOverRate =
                self.admit_refusal(&signer, &from.0)
            {
                let mut j = Judgement::drop(Reason::RefusalRateLimited, id);
                j.detail = Some(why);
                return j;
            }
            return Judgement {
                reason,
                detail: Some(why.clone()),
                content_id: id,
                proposal: Some(Proposal::Refuse(RefusedAnnouncement {
                    content_id: verified.id,
                    kind,
                    listing_id: Some(listing.id()),
                    version: Some(listing.version),
                    origin: listing.origin.clone(),
                    exchange: authority.clone(),
                    agreement: agreement_name,
                    signer: verified.signer,
                    reason: why.chars().take(REFUSAL_REASON_CHARS).collect(),
                    received_from,
                    at: Timestamp::now(),
                    node: self.config.node.name.to_string(),
                })),
            };
        }
        Judgement {
            reason: Reason::Accepted,
            detail: None,
            content_id: id,
            proposal: Some(Proposal::Recognize(Recognition {
                envelope: data.to_vec(),
                content_id: verified.id,
                kind,
                exchange: authority.clone(),
                agreement: agreement_name,
                signer: verified.signer,
                refusal: None,
                received_from,
                at: Timestamp::now(),
                node: self.config.node.name.to_string(),
            })),
        }
    }

    /// Whether a refusal of what `signer` signed and `peer` delivered may still be recorded.
    pub(crate) fn admit_refusal(&self, signer: &str, peer: &str) -> Admission {
        self.budgets.lock().map_or(Admission::Record, |mut b| {
            b.admit(signer, peer, Timestamp::now().millis())
        })
    }

    /// Counts, journals and (for rejects and for ignores that depend on this node's trust store
    /// or clock) logs a verdict; holds what it says against an unproven or flooding peer.
    pub(crate) fn note(
        &self,
        judgement: &Judgement,
        data: &[u8],
        from: &Peer,
        exchange: Option<&str>,
        via: Via,
    ) {
        let reason = judgement.reason;
        let verdict = reason.verdict();
        self.metrics
            .gossip_verdict(verdict.as_str(), reason.as_str());
        let record = VerdictRecord {
            at: Timestamp::now(),
            verdict: verdict.as_str(),
            kind: reason.as_str(),
            content_id: judgement.content_id.map(|c| c.to_string()),
            message_id: ContentId::of(data).to_string(),
            peer: from.0.clone(),
            exchange: exchange.map(str::to_owned),
            via,
            detail: judgement.detail.clone(),
        };
        if verdict == Verdict::Reject || reason.is_receivers_view() {
            let allowed = self
                .log_budget
                .lock()
                .ok()
                .and_then(|mut b| b.take(record.at.millis()));
            if let Some(held_back) = allowed {
                tracing::info!(
                    peer = %from,
                    verdict = verdict.as_str(),
                    kind = reason.as_str(),
                    content_id = record.content_id.as_deref().unwrap_or("-"),
                    message_id = %record.message_id,
                    detail = record.detail.as_deref().unwrap_or(""),
                    held_back,
                    "announcement not accepted"
                );
            }
        }
        self.journal.record(record);
        if via == Via::Api {
            return;
        }
        if reason == Reason::RefusalRateLimited {
            self.net.penalise(from.clone(), Offence::RefusedBeyondRate);
        } else if reason.is_receivers_view()
            && !self.identity_of(&from.0).is_proven()
            && !self
                .budgets
                .lock()
                .is_ok_and(|mut b| b.forgive_untrusted(&from.0, Timestamp::now().millis()))
        {
            self.net.penalise(from.clone(), Offence::Untrusted);
        }
    }

    /// Whether a decision on `id` is recorded in the replica or being proposed.
    pub async fn seen(&self, id: &ContentId) -> bool {
        if self.is_pending(id) {
            return true;
        }
        matches!(
            crate::catalog::federation::decided(&self.db.read, id).await,
            Ok(true)
        )
    }

    /// The replica's copy of listing `id`, if any.
    pub async fn held(&self, id: &ContentId) -> Option<Held> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT origin, version FROM listings WHERE id = ?")
                .bind(id.to_string())
                .fetch_optional(&self.db.read)
                .await
                .ok()
                .flatten();
        row.map(|(origin, version)| Held {
            origin,
            version: u32::try_from(version).unwrap_or(u32::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xchg_protocol::DecodeError;

    #[test]
    fn verdicts_follow_protocol_7_4() {
        // Failures that depend on the receiver's own state or clock: ignored.
        let ignored = [
            VerifyError::UnsupportedVersion { v: 2 },
            VerifyError::DelegationExpired {
                not_after: Timestamp(1),
                now: Timestamp(2),
            },
        ];
        for e in &ignored {
            assert_eq!(verdict_for(e), Verdict::Ignore, "{e}");
        }
        // Failures of the message itself: rejected.
        let rejected = [
            VerifyError::BadSignature,
            VerifyError::Decode(DecodeError::NonCanonical),
            VerifyError::BadDelegationSignature,
        ];
        for e in &rejected {
            assert_eq!(verdict_for(e), Verdict::Reject, "{e}");
        }
    }
}
