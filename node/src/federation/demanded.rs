//! Demands received on an exchange's demand topic (PROTOCOL.md 11.9), judged as a part of the
//! core with no IO: one message in, a [`Judgement`] out.
//!
//! Order: size → the verification of 11.9 against the trust store (roots and revoked keys) at
//! `now` → the delegation's exchange is the topic's → an agreement with that exchange (none:
//! ignored as `unknown_exchange`) → this zone's own demand coming back → the agreement covers
//! the demand: its category, and at least one of its delivery modes (else
//! `refused_by_agreement`). Before a leader proposes an accepted one, it looks up the state held
//! of its zone and number on the replica ([`against_held`]): one no newer is dropped (`stale`,
//! or `duplicate` when the same), so replays do not reach Raft; the state machine decides again
//! (`catalog::demands_across::receive`). A refused demand is only noted in the verdict journal:
//! nothing of it reaches Raft.

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

/// The zone and number of an accepted demand's proposal, what the replica is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DemandKey {
    /// Its origin zone.
    pub zone: String,
    /// Its number there.
    pub number: u64,
    /// When it reached its state, and whether that state is closed.
    pub at: (Timestamp, bool),
}

/// The key of the demand `judgement` proposes, if it proposes one.
pub(super) fn key_of(judgement: &Judgement) -> Option<DemandKey> {
    let Some(Proposal::Demand(r)) = &judgement.proposal else {
        return None;
    };
    let limits = demand::limits();
    let m = SignedMessage::from_bytes(&r.signed, &limits).ok()?;
    let d: demand::Demand = xchg_protocol::canonical::from_canonical(&m.body, &limits).ok()?;
    Some(DemandKey {
        zone: d.zone.to_string(),
        number: d.number,
        at: (d.updated_at, d.state != demand::DemandState::Open),
    })
}

/// `judgement` after the replica's answer: the state `held` of its demand's zone and number
/// (its `updated_at` and whether it is closed), if one is. A demand no newer than the one held
/// (the state machine's rule, `catalog::demands_across`) is dropped: `duplicate` when it is the
/// same, `stale` when older; nothing is proposed.
pub(super) fn against_held(judgement: Judgement, held: Option<(Timestamp, bool)>) -> Judgement {
    let (Some(key), Some(held)) = (key_of(&judgement), held) else {
        return judgement;
    };
    let reason = match key.at.cmp(&held) {
        std::cmp::Ordering::Greater => return judgement,
        std::cmp::Ordering::Equal => Reason::Duplicate,
        std::cmp::Ordering::Less => Reason::Stale,
    };
    Judgement {
        reason,
        detail: None,
        content_id: judgement.content_id,
        proposal: None,
    }
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

    #[test]
    fn a_leader_asks_the_replica_first_and_drops_a_replayed_or_older_demand() {
        use crate::federation::core::{Input, Output};
        use crate::gossip::Verdict;
        let kit = Kit::new();
        let data = kit.partner_demand(1, "credit");
        let v = demand::verify(
            &data,
            &kit.settings(testkit::tuning()).roots,
            testkit::NOW,
            &demand::limits(),
        )
        .expect("verifies");
        let at = v.body.updated_at;
        // What the leader does with the demand when the replica holds `held` of it.
        let outcome = |held: Option<(Timestamp, bool)>| {
            let mut core = kit.core(true);
            let arrived = Input::Message {
                message: testkit::reference(&data, "zz-1"),
                topic: crate::gossip::demand_topic_of("zhengzhou"),
                data: data.clone(),
            };
            let out = core.handle(arrived, testkit::NOW);
            assert!(!out.iter().any(|o| matches!(o, Output::Propose { .. })));
            let ticket = out
                .iter()
                .find_map(|o| match o {
                    Output::LookUpDemand {
                        ticket,
                        zone,
                        number,
                    } if zone == "zhengzhou/main" && *number == 1 => Some(*ticket),
                    _ => None,
                })
                .expect("the leader looks up the state held");
            let out = core.handle(Input::DemandHeld { ticket, held }, testkit::NOW);
            let proposed = out.iter().any(|o| matches!(o, Output::Propose { .. }));
            let reported = out.iter().find_map(|o| match o {
                Output::Report { verdict, .. } => Some(*verdict),
                _ => None,
            });
            let reason = out.iter().find_map(|o| match o {
                Output::Noted { reason, .. } => Some(reason.as_str()),
                _ => None,
            });
            (proposed, reported, reason)
        };
        assert_eq!(
            outcome(None),
            (true, Some(Verdict::Accept), Some("accepted"))
        );
        let older = Timestamp(at.0 - 1);
        assert_eq!(
            outcome(Some((older, false))),
            (true, Some(Verdict::Accept), Some("accepted"))
        );
        assert_eq!(
            outcome(Some((at, false))),
            (false, Some(Verdict::Ignore), Some("duplicate"))
        );
        assert_eq!(
            outcome(Some((at, true))),
            (false, Some(Verdict::Ignore), Some("stale")),
            "closed at the same time"
        );
        assert_eq!(
            outcome(Some((Timestamp(at.0 + 1), false))),
            (false, Some(Verdict::Ignore), Some("stale"))
        );
        // A follower proposes nothing, and so asks nothing.
        let mut follower = kit.core(false);
        let out = follower.handle(
            Input::Message {
                message: testkit::reference(&data, "zz-1"),
                topic: crate::gossip::demand_topic_of("zhengzhou"),
                data: data.clone(),
            },
            testkit::NOW,
        );
        assert!(!out.iter().any(|o| matches!(o, Output::LookUpDemand { .. })));
    }
}
