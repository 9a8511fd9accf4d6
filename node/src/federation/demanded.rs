//! Demands received on an exchange's demand topic (PROTOCOL.md 11.9), judged as a part of the
//! core with no IO: one message in, a [`Judgement`] out.
//!
//! Order: size → the verification of 11.9 against the trust store (roots and revoked keys) at
//! `now` → the delegation's exchange is the topic's → an agreement with that exchange (none:
//! ignored as `unknown_exchange`) → this zone's own demand coming back → the agreement covers
//! the demand: its category, and at least one of its delivery modes (else
//! `refused_by_agreement`). Whether it is newer than the one held of its zone and number is the
//! state machine's to decide (`catalog::demands_across::receive`). A refused demand is only
//! noted in the verdict journal: nothing of it reaches Raft.

use xchg_protocol::application::SignedMessage;
use xchg_protocol::demand::{self, MAX_DEMAND_BYTES};
use xchg_protocol::{ContentId, ExchangeId, Timestamp, TrustStore};

use super::core::Settings;
use super::judge::{Judgement, Proposal};
use super::verdicts::Reason;
use crate::catalog::PEER_CHARS;
use crate::catalog::demands_across::ReceivedDemand;
use crate::gossip::Peer;

/// Whether `agreement` covers a demand of `category` accepting `modes`: the category is one of
/// the agreement's, and at least one mode is.
///
/// # Errors
/// Why not, for the verdict journal.
pub fn covers(
    agreement: &xchg_federation_config::Agreement,
    category: &str,
    modes: &[xchg_protocol::DeliveryMode],
) -> Result<(), String> {
    if !agreement.categories.contains(category) {
        return Err(format!(
            "category {category} is not covered by the agreement"
        ));
    }
    if !modes.iter().any(|m| agreement.delivery_modes.contains(*m)) {
        return Err("none of its delivery modes is covered by the agreement".into());
    }
    Ok(())
}

/// Judges `data`, received from `from` on the demand topic of `topic_exchange`, at `now`.
pub(super) fn judge(
    data: &[u8],
    topic_exchange: &str,
    from: &Peer,
    settings: &Settings,
    trust: &TrustStore,
    now: Timestamp,
) -> Judgement {
    let judged = |reason: Reason, detail: Option<String>, id: Option<ContentId>| Judgement {
        reason,
        detail,
        content_id: id,
        proposal: None,
    };
    if data.len() > MAX_DEMAND_BYTES {
        return judged(
            Reason::Verification("too_large"),
            Some(format!(
                "{} bytes, more than {MAX_DEMAND_BYTES}",
                data.len()
            )),
            None,
        );
    }
    let Ok(exchange) = topic_exchange.parse::<ExchangeId>() else {
        return judged(Reason::UnknownTopic, None, None);
    };
    let v = match demand::verify(data, trust, now, &demand::limits()) {
        Ok(v) => v,
        Err(e) => {
            // The id it claims, for the journal, when it decodes that far.
            let claimed = SignedMessage::from_bytes(data, &demand::limits())
                .ok()
                .map(|m| m.id);
            return judged(Reason::of(&e), Some(e.to_string()), claimed);
        }
    };
    let id = Some(v.id);
    let signer = &v.delegation.delegation;
    if signer.exchange != exchange {
        return judged(
            Reason::WrongTopic,
            Some(format!(
                "carries the authority of {}, arrived on the demand topic of {exchange}",
                signer.exchange
            )),
            id,
        );
    }
    let Some((_, agreement)) = settings.agreement_with(&exchange) else {
        return judged(Reason::Verification("unknown_exchange"), None, id);
    };
    if v.body.zone == settings.zone {
        return judged(Reason::OwnZone, None, id);
    }
    if let Err(why) = covers(agreement, &v.body.category, &v.body.delivery_modes) {
        return judged(Reason::RefusedByAgreement, Some(why), id);
    }
    Judgement {
        reason: Reason::Accepted,
        detail: None,
        content_id: id,
        proposal: Some(Proposal::Demand(Box::new(ReceivedDemand {
            signed: data.to_vec(),
            exchange,
            received_from: from.0.chars().take(PEER_CHARS).collect(),
            at: now,
            node: settings.node.clone(),
        }))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::testkit::{self, Kit};

    fn judged(kit: &Kit, data: &[u8], topic: &str) -> Judgement {
        let settings = kit.settings(testkit::tuning());
        let trust = settings.roots.clone();
        judge(
            data,
            topic,
            &Peer("zz-1".into()),
            &settings,
            &trust,
            testkit::NOW,
        )
    }

    #[test]
    fn a_covered_demand_is_proposed_and_the_rest_get_their_verdicts() {
        let kit = Kit::new();
        let credit = kit.partner_demand(1, "credit");
        let accepted = judged(&kit, &credit, "zhengzhou");
        assert_eq!(accepted.reason, Reason::Accepted);
        assert!(
            matches!(&accepted.proposal, Some(Proposal::Demand(d)) if d.signed == credit
                && d.exchange.as_str() == "zhengzhou")
        );
        // The agreement covers credit and transport only.
        let uncovered = judged(&kit, &kit.partner_demand(2, "healthcare"), "zhengzhou");
        assert_eq!(uncovered.reason, Reason::RefusedByAgreement);
        assert!(uncovered.proposal.is_none());
        assert!(
            uncovered
                .detail
                .is_some_and(|d| d.contains("category healthcare")),
        );
        // Zhengzhou's authority on Xuchang's topic.
        let moved = judged(&kit, &credit, "xuchang");
        assert_eq!(
            (moved.reason, moved.proposal.is_none()),
            (Reason::WrongTopic, true)
        );
        // Tampered after signing: the id it claims is journalled.
        let mut tampered = credit.clone();
        let at = tampered
            .windows(6)
            .position(|w| w == "需求".as_bytes())
            .expect("the title");
        tampered[at] ^= 1;
        let refused = judged(&kit, &tampered, "zhengzhou");
        assert_eq!(refused.reason.as_str(), "bad_signature");
        assert!(refused.content_id.is_some() && refused.proposal.is_none());
        let huge = vec![0; MAX_DEMAND_BYTES + 1];
        assert_eq!(
            judged(&kit, &huge, "zhengzhou").reason.as_str(),
            "too_large"
        );
    }
}
