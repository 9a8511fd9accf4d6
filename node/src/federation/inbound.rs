//! The receiving pipeline: one envelope in, a gossip verdict and perhaps a proposal out.
//!
//! Order (PROTOCOL.md 6 and 7.4): size → bounded decode → delegation chain to a trusted root →
//! signature → id → topic/authority match → duplicate and stale checks against the replica →
//! the agreement's recognition policy. Only verified envelopes ever reach Raft.

use xchg_protocol::{
    AnnouncementKind, Body, ContentId, ExchangeId, Limits, Timestamp, TrustStore, VerifyError,
    verify,
};

use super::policy;
use super::service::Federation;
use crate::catalog::Recognition;
use crate::gossip::{MAX_PUBLISH_BYTES, Peer, Verdict};

/// What the pipeline decided about one envelope.
#[derive(Debug)]
pub struct Judgement {
    /// The gossip verdict.
    pub verdict: Verdict,
    /// A short reason name for metrics and logs (`accepted`, a verify error kind, `duplicate`,
    /// `stale`, `refused_by_agreement`, `own_zone`, `wrong_topic`, ...).
    pub reason: &'static str,
    /// What to propose to the zone's Raft, if anything.
    pub proposal: Option<Recognition>,
}

impl Judgement {
    fn drop(verdict: Verdict, reason: &'static str) -> Self {
        Judgement {
            verdict,
            reason,
            proposal: None,
        }
    }
}

/// The verdict for a verification failure (PROTOCOL.md 7.4): failures that depend on the
/// receiver's own state or clock are ignored, everything else is rejected.
pub fn verdict_for(e: &VerifyError) -> Verdict {
    match e {
        VerifyError::UnsupportedVersion { .. }
        | VerifyError::UnknownExchange { .. }
        | VerifyError::UntrustedRoot { .. }
        | VerifyError::RevokedKey { .. }
        | VerifyError::DelegationNotYetValid { .. }
        | VerifyError::DelegationExpired { .. }
        | VerifyError::FromTheFuture { .. } => Verdict::Ignore,
        _ => Verdict::Reject,
    }
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
            return Judgement::drop(Verdict::Reject, "too_large");
        }
        let trust: TrustStore = self.trust().await;
        let verified = match verify(data, &trust, Timestamp::now(), &Limits::default()) {
            Ok(v) => v,
            Err(e) => return Judgement::drop(verdict_for(&e), e.kind()),
        };
        let authority: &ExchangeId = match (&verified.body, &verified.delegation) {
            (Body::Revocation(r), _) => &r.exchange,
            (_, Some(d)) => &d.delegation.exchange,
            (_, None) => return Judgement::drop(Verdict::Reject, "missing_delegation"),
        };
        if authority.as_str() != topic_exchange {
            return Judgement::drop(Verdict::Reject, "wrong_topic");
        }
        let own_exchange = &self.config.exchange.id;
        let (agreement_name, agreement) = if authority == own_exchange {
            ("sibling".to_owned(), &self.config.sibling_agreement)
        } else {
            match self.config.agreement_with(authority) {
                Some(a) => (format!("outside:{authority}"), a),
                None => return Judgement::drop(Verdict::Ignore, "unknown_exchange"),
            }
        };
        if let Some(d) = &verified.delegation
            && d.delegation.zone == self.config.zone.id
        {
            // This zone's own announcement coming back: valid, worth forwarding, nothing to do.
            return Judgement::drop(Verdict::Accept, "own_zone");
        }
        if against_replica && self.seen(&verified.id).await {
            return Judgement::drop(Verdict::Ignore, "duplicate");
        }
        let mut refusal = None;
        let mut verdict = Verdict::Accept;
        let mut reason = "accepted";
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
                    verdict = Verdict::Ignore;
                    reason = "origin_conflict";
                }
                Some(h) if h.origin == listing.origin.as_str() && h.version >= listing.version => {
                    return Judgement::drop(Verdict::Ignore, "stale");
                }
                _ => {}
            }
            if verdict == Verdict::Accept
                && let Err(why) = policy::recognise(listing, agreement)
            {
                verdict = Verdict::Ignore;
                reason = "refused_by_agreement";
                refusal = Some(why);
            }
        }
        let kind = match &verified.body {
            Body::Listing(_) => AnnouncementKind::Listing,
            Body::Delisting(_) => AnnouncementKind::Delisting,
            Body::Revocation(_) => AnnouncementKind::Revocation,
        };
        Judgement {
            verdict,
            reason,
            proposal: Some(Recognition {
                envelope: data.to_vec(),
                content_id: verified.id,
                kind,
                exchange: authority.clone(),
                agreement: agreement_name,
                signer: verified.signer,
                refusal,
                received_from: from.0.clone(),
                at: Timestamp::now(),
                node: self.config.node.name.to_string(),
            }),
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
