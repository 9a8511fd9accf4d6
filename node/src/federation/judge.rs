//! The judge: one envelope in, a [`Judgement`] out (a gossip verdict, why, and perhaps a
//! proposal), as a part of the core with no IO.
//!
//! Order (PROTOCOL.md 6 and 7.4): size → bounded decode → delegation chain to a trusted root →
//! signature → id → topic/authority match → own zone → duplicate and stale checks against the
//! replica → the agreement's recognition policy → the refusal rate. Everything before the
//! replica is decided at once (`assess`). The leader then asks the driver what the replica
//! holds ([`Output::LookUp`]) and concludes when the [`Facts`] arrive; followers skip those
//! checks, because their verdict only decides forwarding (gossip already drops repeated message
//! ids) and only the leader proposes. Only verified envelopes ever reach Raft, and a refused one
//! only as a bounded record, within a per-signer and per-peer rate ([`super::limits`]).
//!
//! The judge owns the refusal budgets, the envelopes waiting for their facts, the
//! announcements being proposed (they count as decided, so a second copy arriving meanwhile is
//! a duplicate) and which peers have proven who they are ([`super::core::Input::Proven`]; an
//! unproven peer pays for messages ignored for this node's trust store or clock beyond a small
//! allowance).

use std::collections::{BTreeMap, BTreeSet};

use xchg_protocol::canonical::from_canonical;
use xchg_protocol::{
    AnnouncementKind, Body, ContentId, Envelope, ExchangeId, Limits, Listing, Timestamp,
    TrustStore, Verified, VerifyError, verify,
};

use super::certify::Certified;
use super::core::{Outcome, Output, Reply, Settings, Shared, Ticket};
use super::limits::{Admission, Budgets};
use super::policy;
use super::verdicts::{Reason, VerdictRecord, Via};
use crate::catalog::certified::{ReceivedCertificate, ReceivedRevocation};
use crate::catalog::demands_across::ReceivedDemand;
use crate::catalog::{
    CatalogCommand, PEER_CHARS, REFUSAL_REASON_CHARS, Recognition, RefusedAnnouncement,
};
use crate::gossip::{MAX_PUBLISH_BYTES, MessageRef, Offence, Peer, Verdict};

/// What to propose to the zone's Raft about one envelope.
#[derive(Debug)]
pub enum Proposal {
    /// Record the announcement and the decision on it (the envelope goes through Raft).
    Recognize(Recognition),
    /// Record only a bounded refusal (no envelope).
    Refuse(RefusedAnnouncement),
    /// Record a certificate received on a certificate topic, valid or refused.
    Certificate(Box<ReceivedCertificate>),
    /// Record a certificate revocation received on a certificate topic, valid or refused.
    CertificateRevocation(Box<ReceivedRevocation>),
    /// Record a demand of another zone, verified and covered by the agreement.
    Demand(Box<ReceivedDemand>),
}

impl Proposal {
    /// The announcement's content id.
    pub fn content_id(&self) -> ContentId {
        match self {
            Proposal::Recognize(r) => r.content_id,
            Proposal::Refuse(r) => r.content_id,
            Proposal::Certificate(c) => c.message_id,
            Proposal::CertificateRevocation(r) => r.message_id,
            Proposal::Demand(d) => ContentId::of(&d.signed),
        }
    }

    /// The Raft command that records it.
    pub fn command(self) -> CatalogCommand {
        match self {
            Proposal::Recognize(r) => CatalogCommand::Recognize(Box::new(r)),
            Proposal::Refuse(r) => CatalogCommand::RecordRefusal(Box::new(r)),
            Proposal::Certificate(c) => CatalogCommand::ReceiveCertificate(c),
            Proposal::CertificateRevocation(r) => CatalogCommand::ReceiveCertificateRevocation(r),
            Proposal::Demand(d) => CatalogCommand::ReceiveDemand(d),
        }
    }
}

/// What the judge decided about one envelope.
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

    fn because(mut self, detail: String) -> Self {
        self.detail = Some(detail);
        self
    }

    /// The gossip verdict.
    pub fn verdict(&self) -> Verdict {
        self.reason.verdict()
    }

    /// The verdict journal's record of this judgement of `data`, delivered by `from` on the
    /// topic (or from the inventory) of `exchange`, via `via`, at `at`.
    pub fn record(
        &self,
        data: &[u8],
        from: &Peer,
        exchange: Option<&str>,
        via: Via,
        at: Timestamp,
    ) -> VerdictRecord {
        VerdictRecord {
            at,
            verdict: self.verdict().as_str(),
            kind: self.reason.as_str(),
            content_id: self.content_id.map(|c| c.to_string()),
            message_id: ContentId::of(data).to_string(),
            peer: from.0.clone(),
            exchange: exchange.map(str::to_owned),
            via,
            detail: self.detail.clone(),
        }
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Its origin zone.
    pub origin: String,
    /// Its current version.
    pub version: u32,
    /// It is `revoked` at exactly the content id judged, and the zone holds no decision on
    /// that version: withdrawn when its certificate was revoked, then certified again
    /// (PROTOCOL.md 10.6), it is judged anew rather than found stale.
    pub withdrawn: bool,
}

/// What the replica says about one envelope, as the driver looked it up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// A decision on its content id is recorded.
    pub decided: bool,
    /// The replica's copy of the listing it concerns, if any.
    pub held: Option<Held>,
    /// For a listing: the zones that issued the valid certificates the zone holds for exactly
    /// this version (PROTOCOL.md 10.5); only one from the listing's origin zone counts.
    pub certified_by: Vec<String>,
}

/// An envelope as it arrived.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// Its bytes.
    pub data: Vec<u8>,
    /// The exchange whose topic it arrived on, or whose inventory it was fetched from.
    pub exchange: String,
    /// The peer that delivered it (`api` for the revocation route).
    pub from: Peer,
}

/// Where an envelope came from, and so what follows its judgement.
#[derive(Debug)]
pub(super) enum Origin {
    /// A gossip message: report its verdict, and propose if this node led when it arrived.
    Gossip {
        /// What the verdict is reported on.
        message: MessageRef,
        /// Whether this node led its zone when the message arrived.
        leading: bool,
    },
    /// Asked for by the driver (the revocation route): the judgement goes back, nothing else.
    Asked(Reply),
    /// Fetched by the catch-up round of this id.
    Catchup(u64),
}

/// A finished judgement with what the core needs to act on it.
#[derive(Debug)]
pub(super) struct Done {
    pub origin: Origin,
    pub judgement: Judgement,
    pub arrival: Arrival,
}

/// Whose proposal it is, so its outcome reaches the one waiting for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum For {
    /// A gossip message; nobody waits.
    Gossip,
    /// Catch-up round `round`, which waits for it before judging the next envelope;
    /// `certified` when it is a valid certificate (recorded, it makes catch-up read the
    /// inventories again from the start, as [`For::Certified`] does).
    Catchup {
        /// The round.
        round: u64,
        /// A valid certificate.
        certified: bool,
    },
    /// A valid certificate: once recorded, catch-up reads the inventories again from the
    /// start, so the listing version it certifies is fetched and judged again.
    Certified,
}

/// An envelope that passed every check that needs no replica.
#[derive(Debug)]
pub(super) struct Assessed {
    verified: Verified,
    /// The exchange whose authority it carries.
    authority: ExchangeId,
    /// The agreement it is judged under: `sibling` or `outside:<exchange>`.
    agreement: String,
}

#[derive(Debug)]
struct Waiting {
    assessed: Assessed,
    arrival: Arrival,
    origin: Origin,
}

/// The judge's state.
#[derive(Debug, Default)]
pub(super) struct Judge {
    /// How many refusals are still recorded per signer and peer, and how many untrusted
    /// messages are still forgiven per unproven peer.
    budgets: Budgets,
    /// Announcements whose decision is being proposed.
    pending: BTreeSet<ContentId>,
    /// Envelopes waiting for the replica's facts, by the ticket of the lookup.
    waiting: BTreeMap<Ticket, Waiting>,
    /// Accepted demands waiting for the state the replica holds of their zone and number, by
    /// the ticket of the lookup.
    waiting_demands: BTreeMap<Ticket, Done>,
    /// Proposals under way: their announcement and who waits for them.
    proposing: BTreeMap<Ticket, (ContentId, For)>,
    /// Peers that have proven who they are, as the driver last said.
    proven: BTreeSet<String>,
}

/// Most proven peers remembered; beyond it, one is forgotten until its identity is checked
/// again (every peer is, every few seconds, while it stays connected).
pub const MAX_PROVEN: usize = 4096;

impl Judge {
    /// Envelopes waiting for their facts plus proposals under way: the driver takes no more
    /// gossip while this is at its bound.
    pub(super) fn in_flight(&self) -> usize {
        self.waiting.len() + self.waiting_demands.len() + self.proposing.len()
    }

    /// Holds `done`, an accepted demand, until the replica says which state of its zone and
    /// number it holds ([`Output::LookUpDemand`], then [`Judge::demand_held`]); any other
    /// judgement, or one whose demand is being proposed already, is final now.
    pub(super) fn look_up_demand(
        &mut self,
        shared: &mut Shared,
        mut done: Done,
        out: &mut Vec<Output>,
    ) -> Option<Done> {
        let Some(key) = super::demanded::key_of(&done.judgement) else {
            return Some(done);
        };
        if let Some(proposal) = &done.judgement.proposal
            && self.pending.contains(&proposal.content_id())
        {
            done.judgement = Judgement::drop(Reason::Duplicate, done.judgement.content_id);
            return Some(done);
        }
        let ticket = shared.ticket();
        out.push(Output::LookUpDemand {
            ticket,
            zone: key.zone,
            number: key.number,
        });
        self.waiting_demands.insert(ticket, done);
        None
    }

    /// Concludes the demand that waited for the state held of its zone and number (`held`:
    /// its `updated_at` and whether it is closed): one no newer than that is dropped, `stale`
    /// when older and `duplicate` when the same. `None` for an unknown ticket.
    pub(super) fn demand_held(
        &mut self,
        ticket: Ticket,
        held: Option<(Timestamp, bool)>,
    ) -> Option<Done> {
        let mut done = self.waiting_demands.remove(&ticket)?;
        done.judgement = super::demanded::against_held(done.judgement, held);
        Some(done)
    }

    /// Records whether `peer` has proven who it is.
    pub(super) fn proven(&mut self, peer: Peer, proven: bool) {
        if !proven {
            self.proven.remove(&peer.0);
            return;
        }
        if self.proven.len() >= MAX_PROVEN
            && !self.proven.contains(&peer.0)
            && let Some(first) = self.proven.first().cloned()
        {
            self.proven.remove(&first);
        }
        self.proven.insert(peer.0);
    }

    /// Takes the judgement of a certificate or a certificate revocation delivered by `from`: a
    /// refusal is recorded only
    /// within the same per-signer and per-peer rate as refused announcements (beyond it the
    /// verdict stands and nothing is proposed), and only the leader counts it.
    pub(super) fn certificate(
        &mut self,
        certified: Certified,
        from: &Peer,
        leading: bool,
        now: Timestamp,
    ) -> Judgement {
        let Certified {
            mut judgement,
            signer,
        } = certified;
        let refused = match &judgement.proposal {
            Some(Proposal::Certificate(c)) => !c.is_valid(),
            Some(Proposal::CertificateRevocation(r)) => !r.is_valid(),
            _ => false,
        };
        if refused
            && leading
            && !matches!(
                self.budgets.admit(&signer, &from.0, now.millis()),
                Admission::Record
            )
        {
            judgement.proposal = None;
        }
        judgement
    }

    /// Whether a decision on `id` is being proposed.
    pub(super) fn is_pending(&self, id: &ContentId) -> bool {
        self.pending.contains(id)
    }

    /// Judges `arrival`, with the checks against the replica when `against_replica`. Returns
    /// the judgement when it is final now; otherwise it asks the driver for the facts and the
    /// judgement follows from [`Judge::facts`].
    pub(super) fn begin(
        &mut self,
        shared: &mut Shared,
        arrival: Arrival,
        against_replica: bool,
        origin: Origin,
        now: Timestamp,
        out: &mut Vec<Output>,
    ) -> Option<Done> {
        let assessed = match assess(
            &arrival.data,
            &arrival.exchange,
            &shared.settings,
            &shared.trust,
            now,
        ) {
            Ok(a) => a,
            Err(judgement) => {
                return Some(Done {
                    origin,
                    judgement,
                    arrival,
                });
            }
        };
        if !against_replica {
            let judgement = self.conclude(&shared.settings, assessed, None, &arrival, now);
            return Some(Done {
                origin,
                judgement,
                arrival,
            });
        }
        let id = assessed.verified.id;
        if self.pending.contains(&id) {
            return Some(Done {
                origin,
                judgement: Judgement::drop(Reason::Duplicate, Some(id)),
                arrival,
            });
        }
        let ticket = shared.ticket();
        let listing_id = match &assessed.verified.body {
            Body::Listing(l) => Some(l.id()),
            _ => None,
        };
        out.push(Output::LookUp {
            ticket,
            content_id: id,
            listing_id,
        });
        self.waiting.insert(
            ticket,
            Waiting {
                assessed,
                arrival,
                origin,
            },
        );
        None
    }

    /// Concludes the judgement that waited for `facts`; `None` for an unknown ticket.
    pub(super) fn facts(
        &mut self,
        shared: &Shared,
        ticket: Ticket,
        facts: Facts,
        now: Timestamp,
    ) -> Option<Done> {
        let Waiting {
            assessed,
            arrival,
            origin,
        } = self.waiting.remove(&ticket)?;
        let id = assessed.verified.id;
        // Being proposed counts as decided: the same envelope may have arrived twice meanwhile.
        let judgement = if facts.decided || self.pending.contains(&id) {
            Judgement::drop(Reason::Duplicate, Some(id))
        } else {
            self.conclude(&shared.settings, assessed, Some(facts), &arrival, now)
        };
        Some(Done {
            origin,
            judgement,
            arrival,
        })
    }

    /// The rest of the pipeline after the replica's `facts` (none for a follower): stale and
    /// origin checks, the agreement, the refusal rate, and the proposal.
    fn conclude(
        &mut self,
        settings: &Settings,
        assessed: Assessed,
        facts: Option<Facts>,
        arrival: &Arrival,
        now: Timestamp,
    ) -> Judgement {
        let Assessed {
            verified,
            authority,
            agreement,
        } = assessed;
        let id = Some(verified.id);
        let certified_by = facts.as_ref().map(|f| f.certified_by.clone());
        // Why it is refused before recording, and the listing it concerns.
        let mut refusal: Option<(Reason, String, &Listing)> = None;
        // Let in only on a certificate of its origin zone: applying it checks one still counts.
        let mut wants_certificate = false;
        if let Body::Listing(listing) = &verified.body {
            match facts.and_then(|f| f.held) {
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
                Some(h)
                    if h.origin == listing.origin.as_str()
                        && h.version >= listing.version
                        && !h.withdrawn =>
                {
                    return Judgement::drop(Reason::Stale, id);
                }
                _ => {}
            }
            if refusal.is_none()
                && let Some((_, terms)) = settings.agreement_with(&authority)
            {
                if let Err(why) = policy::recognise(listing, terms) {
                    refusal = Some((Reason::RefusedByAgreement, why, listing));
                } else if let Some(by) = &certified_by
                    && let Err(why) =
                        policy::registration(terms, by.iter().any(|z| z == listing.origin.as_str()))
                {
                    // Only the leader, which looked up the certificates held, judges this; a
                    // follower's verdict only decides forwarding.
                    refusal = Some((Reason::RegistrationRequired, why, listing));
                } else {
                    wants_certificate = terms.require_registration && certified_by.is_some();
                }
            }
        }
        let kind = match &verified.body {
            Body::Listing(_) => AnnouncementKind::Listing,
            Body::Delisting(_) => AnnouncementKind::Delisting,
            Body::Revocation(_) => AnnouncementKind::Revocation,
        };
        let received_from: String = arrival.from.0.chars().take(PEER_CHARS).collect();
        if let Some((reason, why, listing)) = refusal {
            let signer = verified.signer.to_base64();
            let admission = self.budgets.admit(&signer, &arrival.from.0, now.millis());
            if let Admission::SignerOverRate | Admission::PeerOverRate = admission {
                return Judgement::drop(Reason::RefusalRateLimited, id).because(why);
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
                    agreement,
                    signer: verified.signer,
                    reason: why.chars().take(REFUSAL_REASON_CHARS).collect(),
                    wants_certificate: reason == Reason::RegistrationRequired,
                    received_from,
                    at: now,
                    node: settings.node.clone(),
                })),
            };
        }
        Judgement {
            reason: Reason::Accepted,
            detail: None,
            content_id: id,
            proposal: Some(Proposal::Recognize(Recognition {
                envelope: arrival.data.clone(),
                content_id: verified.id,
                kind,
                exchange: authority,
                agreement,
                signer: verified.signer,
                refusal: None,
                wants_certificate,
                received_from,
                at: now,
                node: settings.node.clone(),
            })),
        }
    }

    /// Notes a verdict for the driver to journal, count and log; holds it against the peer
    /// that delivered it when it is a refusal beyond the rate, or an ignore for this node's
    /// trust store or clock from an unproven peer beyond its allowance.
    pub(super) fn note(&mut self, done: &Done, via: Via, now: Timestamp, out: &mut Vec<Output>) {
        let Done {
            judgement, arrival, ..
        } = done;
        let reason = judgement.reason;
        out.push(Output::Noted {
            reason,
            record: judgement.record(
                &arrival.data,
                &arrival.from,
                Some(&arrival.exchange),
                via,
                now,
            ),
        });
        if via == Via::Api {
            return;
        }
        let offence = if reason == Reason::RefusalRateLimited {
            Some(Offence::RefusedBeyondRate)
        } else if reason.is_receivers_view()
            && !self.proven.contains(&arrival.from.0)
            && !self
                .budgets
                .forgive_untrusted(&arrival.from.0, now.millis())
        {
            Some(Offence::Untrusted)
        } else {
            None
        };
        if let Some(offence) = offence {
            out.push(Output::Penalise {
                peer: arrival.from.clone(),
                offence,
            });
        }
    }

    /// Proposes `proposal` for `whose` unless the same announcement is already being proposed;
    /// false when it is (that proposal may still fail, so the caller must not count on it).
    pub(super) fn propose(
        &mut self,
        shared: &mut Shared,
        proposal: Proposal,
        whose: For,
        out: &mut Vec<Output>,
    ) -> bool {
        let id = proposal.content_id();
        if !self.pending.insert(id) {
            return false;
        }
        let ticket = shared.ticket();
        self.proposing.insert(ticket, (id, whose));
        out.push(Output::Propose {
            ticket,
            command: proposal.command(),
        });
        true
    }

    /// Takes the outcome of one of the judge's proposals: who waits for it and whether the
    /// decision is recorded (refused by the state machine counts: it is decided). `None` when
    /// the ticket is not the judge's.
    pub(super) fn proposed(&mut self, ticket: Ticket, outcome: &Outcome) -> Option<(For, bool)> {
        let (id, whose) = self.proposing.remove(&ticket)?;
        self.pending.remove(&id);
        let recorded = match outcome {
            Outcome::Applied { object_id } => {
                tracing::debug!(announcement = %id, object = %object_id, "recorded");
                true
            }
            Outcome::Refused(refusal) => {
                tracing::warn!(announcement = %id, %refusal, "recognition refused");
                true
            }
            Outcome::Failed(error) => {
                tracing::info!(announcement = %id, %error, "not recorded");
                false
            }
        };
        Some((whose, recorded))
    }
}

/// Every check of `data`, received on the topic of `topic_exchange`, that needs no replica:
/// the envelope verified against `trust` at `now` and the agreement it falls under, or the
/// final judgement.
///
/// # Errors
/// The judgement, when the envelope is dropped here.
pub(super) fn assess(
    data: &[u8],
    topic_exchange: &str,
    settings: &Settings,
    trust: &TrustStore,
    now: Timestamp,
) -> Result<Assessed, Judgement> {
    if data.len() > MAX_PUBLISH_BYTES {
        return Err(Judgement::drop(Reason::Verification("too_large"), None));
    }
    let verified = verify(data, trust, now, &Limits::default()).map_err(|e| Judgement {
        reason: Reason::of(&e),
        detail: Some(e.to_string()),
        content_id: claimed_id(data),
        proposal: None,
    })?;
    let id = Some(verified.id);
    let authority = match (&verified.body, &verified.delegation) {
        (Body::Revocation(r), _) => r.exchange.clone(),
        (_, Some(d)) => d.delegation.exchange.clone(),
        (_, None) => {
            return Err(Judgement::drop(
                Reason::Verification("missing_delegation"),
                id,
            ));
        }
    };
    if authority.as_str() != topic_exchange {
        return Err(Judgement::drop(Reason::WrongTopic, id).because(format!(
            "carries the authority of {authority}, arrived on the topic of {topic_exchange}"
        )));
    }
    let Some((agreement, _)) = settings.agreement_with(&authority) else {
        return Err(Judgement::drop(
            Reason::Verification("unknown_exchange"),
            id,
        ));
    };
    if let Some(d) = &verified.delegation
        && d.delegation.zone == settings.zone
    {
        // This zone's own announcement coming back: valid, worth forwarding, nothing to do.
        return Err(Judgement::drop(Reason::OwnZone, id));
    }
    Ok(Assessed {
        verified,
        authority,
        agreement,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::core::{Core, Input};
    use crate::federation::testkit::{self, Kit};
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

    /// The reason and the proposal kind (`recognize`, `refuse` or none) of what `core` says
    /// about one judged gossip message in `out`.
    fn outcome_of(out: &[Output]) -> (Verdict, &'static str, Option<&'static str>) {
        let verdict = out
            .iter()
            .find_map(|o| match o {
                Output::Report { verdict, .. } => Some(*verdict),
                _ => None,
            })
            .expect("a verdict is reported");
        let kind = out
            .iter()
            .find_map(|o| match o {
                Output::Noted { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .expect("a verdict is noted");
        let proposal = out.iter().find_map(|o| match o {
            Output::Propose { command, .. } => Some(match command {
                CatalogCommand::Recognize(_) => "recognize",
                CatalogCommand::RecordRefusal(_) => "refuse",
                _ => "other",
            }),
            _ => None,
        });
        (verdict, kind, proposal)
    }

    /// Sends `data` on the topic of `exchange` from `peer` to a leading core and answers its
    /// lookup with `facts`; everything the core said.
    fn judged_by_leader(
        core: &mut Core,
        exchange: &str,
        data: Vec<u8>,
        peer: &str,
        facts: Facts,
    ) -> Vec<Output> {
        let mut out = core.handle(testkit::message(exchange, data, peer), testkit::NOW);
        if let Some(ticket) = out.iter().find_map(|o| match o {
            Output::LookUp { ticket, .. } => Some(*ticket),
            _ => None,
        }) {
            out.extend(core.handle(Input::Facts { ticket, facts }, testkit::NOW));
        }
        out
    }

    /// Sends `data` on the partner's topic from `peer` to a leading core that holds nothing of
    /// it; everything the core said.
    fn fresh_to_leader(core: &mut Core, data: Vec<u8>, peer: &str) -> Vec<Output> {
        judged_by_leader(core, "zhengzhou", data, peer, Facts::default())
    }

    /// Sends `data` on the partner's topic from `peer`; what the core said at once.
    fn from_partner(core: &mut Core, data: Vec<u8>, peer: &str) -> Vec<Output> {
        core.handle(testkit::message("zhengzhou", data, peer), testkit::NOW)
    }

    #[test]
    fn a_new_listing_under_the_agreement_is_accepted_and_proposed_by_the_leader_only() {
        let kit = Kit::new();
        let listing = kit.partner_listing("new");
        let mut leader = kit.core(true);
        let out = fresh_to_leader(&mut leader, kit.partner_envelope(&listing), "p");
        assert_eq!(
            outcome_of(&out),
            (Verdict::Accept, "accepted", Some("recognize"))
        );
        let mut follower = kit.core(false);
        let out = from_partner(&mut follower, kit.partner_envelope(&listing), "p");
        assert!(
            !out.iter().any(|o| matches!(o, Output::LookUp { .. })),
            "a follower does not read the replica: {out:?}"
        );
        assert_eq!(outcome_of(&out), (Verdict::Accept, "accepted", None));
    }

    #[test]
    fn a_version_not_newer_than_the_one_held_is_stale_and_a_newer_one_is_accepted() {
        let kit = Kit::new();
        let v1 = kit.partner_listing("versions");
        let v2 = v1.next_version(v1.draft(), Timestamp(2_000));
        let held_as = |version, withdrawn| Facts {
            decided: false,
            held: Some(Held {
                origin: v1.origin.to_string(),
                version,
                withdrawn,
            }),
            certified_by: Vec::new(),
        };
        let held = |version| held_as(version, false);
        let mut core = kit.core(true);
        let out = judged_by_leader(
            &mut core,
            "zhengzhou",
            kit.partner_envelope(&v1),
            "p",
            held(1),
        );
        assert_eq!(outcome_of(&out), (Verdict::Ignore, "stale", None));
        let out = judged_by_leader(
            &mut core,
            "zhengzhou",
            kit.partner_envelope(&v1),
            "p",
            held(2),
        );
        assert_eq!(outcome_of(&out), (Verdict::Ignore, "stale", None), "older");
        let out = judged_by_leader(
            &mut core,
            "zhengzhou",
            kit.partner_envelope(&v2),
            "p",
            held(1),
        );
        assert_eq!(
            outcome_of(&out),
            (Verdict::Accept, "accepted", Some("recognize"))
        );
        // The same version, held withdrawn with no decision on it (its certificate revoked,
        // then certified again): judged anew.
        let out = judged_by_leader(
            &mut core,
            "zhengzhou",
            kit.partner_envelope(&v1),
            "p",
            held_as(1, true),
        );
        assert_eq!(
            outcome_of(&out),
            (Verdict::Accept, "accepted", Some("recognize"))
        );
    }

    #[test]
    fn a_decided_or_pending_announcement_is_a_duplicate() {
        let kit = Kit::new();
        let listing = kit.partner_listing("twice");
        let mut core = kit.core(true);
        let decided = Facts {
            decided: true,
            ..Facts::default()
        };
        let out = judged_by_leader(
            &mut core,
            "zhengzhou",
            kit.partner_envelope(&listing),
            "p",
            decided,
        );
        assert_eq!(outcome_of(&out), (Verdict::Ignore, "duplicate", None));
        // Proposed and not yet applied: a second copy needs no lookup to be a duplicate.
        let other = kit.partner_listing("in flight");
        let first = fresh_to_leader(&mut core, kit.partner_envelope(&other), "p");
        assert_eq!(outcome_of(&first).2, Some("recognize"));
        let again = from_partner(&mut core, kit.partner_envelope(&other), "q");
        assert_eq!(outcome_of(&again), (Verdict::Ignore, "duplicate", None));
    }

    #[test]
    fn a_later_version_naming_a_listing_held_from_another_origin_is_refused_and_recorded() {
        let kit = Kit::new();
        let v1 = kit.partner_listing("squatted");
        let v2 = v1.next_version(v1.draft(), Timestamp(2_000));
        let mut core = kit.core(true);
        let facts = Facts {
            decided: false,
            certified_by: Vec::new(),
            held: Some(Held {
                origin: "zhengzhou/other".into(),
                version: 1,
                withdrawn: false,
            }),
        };
        let out = judged_by_leader(
            &mut core,
            "zhengzhou",
            kit.partner_envelope(&v2),
            "p",
            facts,
        );
        assert_eq!(
            outcome_of(&out),
            (Verdict::Ignore, "origin_conflict", Some("refuse"))
        );
    }

    #[test]
    fn a_listing_the_agreement_refuses_is_recorded_as_a_small_refusal() {
        let kit = Kit::new();
        let refused = kit.partner_listing_in("refused", "health");
        let mut core = kit.core(true);
        let out = fresh_to_leader(&mut core, kit.partner_envelope(&refused), "p");
        assert_eq!(
            outcome_of(&out),
            (Verdict::Ignore, "refused_by_agreement", Some("refuse"))
        );
        let Some(Output::Propose {
            command: CatalogCommand::RecordRefusal(r),
            ..
        }) = out.iter().find(|o| matches!(o, Output::Propose { .. }))
        else {
            panic!("no refusal proposed: {out:?}");
        };
        assert!(r.reason.contains("category health"), "{r:?}");
        assert_eq!(r.at, testkit::NOW);
    }

    #[test]
    fn a_refusal_for_want_of_a_certificate_says_so_to_the_state_machine_and_no_other_does() {
        let kit = Kit::new();
        let mut settings = kit.settings(testkit::tuning());
        settings.outside[0].1.require_registration = true;
        let mut core = Core::new(settings, 7);
        core.handle(Input::Leadership(true), testkit::NOW);
        let wants_certificate = |out: &[Output]| {
            out.iter().find_map(|o| match o {
                Output::Propose {
                    command: CatalogCommand::RecordRefusal(r),
                    ..
                } => Some(r.wants_certificate),
                _ => None,
            })
        };
        let uncertified = kit.partner_listing("uncertified");
        let out = fresh_to_leader(&mut core, kit.partner_envelope(&uncertified), "p");
        assert_eq!(outcome_of(&out).1, "registration_required");
        assert_eq!(wants_certificate(&out), Some(true));
        let health = kit.partner_listing_in("health", "health");
        let out = fresh_to_leader(&mut core, kit.partner_envelope(&health), "p");
        assert_eq!(outcome_of(&out).1, "refused_by_agreement");
        assert_eq!(wants_certificate(&out), Some(false));
        let certified = kit.partner_listing("certified");
        let facts = Facts {
            certified_by: vec![certified.origin.to_string()],
            ..Facts::default()
        };
        let out = judged_by_leader(
            &mut core,
            "zhengzhou",
            kit.partner_envelope(&certified),
            "p",
            facts,
        );
        assert_eq!(outcome_of(&out).1, "accepted");
    }

    #[test]
    fn refusals_are_recorded_up_to_the_signers_rate_then_cost_the_peer() {
        let kit = Kit::new();
        let mut core = kit.core(true);
        let burst = crate::federation::limits::SIGNER_BURST as usize;
        for i in 0..burst {
            let refused = kit.partner_listing_in(&format!("refused {i}"), "health");
            // From many peers, so only the signer's budget runs out.
            let out = fresh_to_leader(&mut core, kit.partner_envelope(&refused), &format!("p{i}"));
            assert_eq!(outcome_of(&out).1, "refused_by_agreement", "{i}");
        }
        let refused = kit.partner_listing_in("one too many", "health");
        let out = fresh_to_leader(&mut core, kit.partner_envelope(&refused), "flooder");
        assert_eq!(
            outcome_of(&out),
            (Verdict::Ignore, "refusal_rate_limited", None)
        );
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Penalise { peer, offence: Offence::RefusedBeyondRate } if peer.0 == "flooder"
        )));
    }

    #[test]
    fn refusals_delivered_by_one_peer_are_limited_on_their_own() {
        let kit = Kit::new();
        let mut core = kit.core(true);
        let burst = crate::federation::limits::PEER_BURST as usize;
        // Many signers (nodes of the partner zone), one relaying peer.
        let signers: Vec<Kit> = (0..burst / 50 + 1)
            .map(|i| kit.other_node(i as u8))
            .collect();
        for i in 0..burst {
            let signer = &signers[i / 50];
            let refused = signer.partner_listing_in(&format!("relayed {i}"), "health");
            let out = fresh_to_leader(&mut core, signer.partner_envelope(&refused), "relay");
            assert_eq!(outcome_of(&out).1, "refused_by_agreement", "{i}");
        }
        let fresh = signers[burst / 50].partner_listing_in("fresh signer", "health");
        let out = fresh_to_leader(
            &mut core,
            signers[burst / 50].partner_envelope(&fresh),
            "relay",
        );
        assert_eq!(outcome_of(&out).1, "refusal_rate_limited");
    }

    #[test]
    fn an_envelope_signed_by_a_revoked_key_is_ignored_for_this_nodes_view() {
        let kit = Kit::new();
        let listing = kit.partner_listing("revoked signer");
        let mut core = kit.core(true);
        core.handle(
            Input::Revoked(vec![(testkit::partner(), kit.partner_node.public())]),
            testkit::NOW,
        );
        let out = from_partner(&mut core, kit.partner_envelope(&listing), "p");
        assert_eq!(outcome_of(&out), (Verdict::Ignore, "revoked_key", None));
        // The revocation is per exchange: the same key revoked by another exchange is not.
        core.handle(
            Input::Revoked(vec![(testkit::own(), kit.partner_node.public())]),
            testkit::NOW,
        );
        let out = fresh_to_leader(&mut core, kit.partner_envelope(&listing), "p");
        assert_eq!(outcome_of(&out).1, "accepted");
    }

    #[test]
    fn malformed_misrouted_and_unroutable_messages_are_rejected_or_ignored() {
        let kit = Kit::new();
        let listing = kit.partner_listing("misrouted");
        let mut core = kit.core(true);
        let mut forged = kit.partner_envelope(&listing);
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let out = from_partner(&mut core, forged, "p");
        assert_eq!(outcome_of(&out).0, Verdict::Reject);
        let out = core.handle(
            testkit::message("xuchang", kit.partner_envelope(&listing), "p"),
            testkit::NOW,
        );
        assert_eq!(outcome_of(&out), (Verdict::Reject, "wrong_topic", None));
        let out = core.handle(
            Input::Message {
                message: testkit::reference(b"x", "p"),
                topic: "elsewhere".into(),
                data: b"x".to_vec(),
            },
            testkit::NOW,
        );
        assert_eq!(outcome_of(&out), (Verdict::Ignore, "unknown_topic", None));
        let out = from_partner(&mut core, vec![0; MAX_PUBLISH_BYTES + 1], "p");
        assert_eq!(outcome_of(&out), (Verdict::Reject, "too_large", None));
    }

    #[test]
    fn this_zones_own_announcement_coming_back_is_accepted_and_nothing_proposed() {
        let kit = Kit::new();
        let own = kit.own_listing("ours");
        let mut core = kit.core(true);
        let out = core.handle(
            testkit::message("xuchang", kit.own_envelope(&own), "p"),
            testkit::NOW,
        );
        assert_eq!(outcome_of(&out), (Verdict::Accept, "own_zone", None));
        assert!(!out.iter().any(|o| matches!(o, Output::LookUp { .. })));
    }

    #[test]
    fn an_unproven_peer_is_forgiven_a_few_untrusted_messages_then_penalised() {
        let kit = Kit::new();
        let stranger = Kit::stranger();
        let mut core = kit.core(false);
        let penalised = |out: &[Output]| {
            out.iter().any(|o| {
                matches!(
                    o,
                    Output::Penalise {
                        offence: Offence::Untrusted,
                        ..
                    }
                )
            })
        };
        for i in 0..crate::federation::limits::UNTRUSTED_BURST as usize {
            let l = stranger.partner_listing(&format!("untrusted {i}"));
            let out = from_partner(&mut core, stranger.partner_envelope(&l), "p");
            assert_eq!(outcome_of(&out), (Verdict::Ignore, "untrusted_root", None));
            assert!(!penalised(&out), "{i}");
        }
        let l = stranger.partner_listing("one more");
        let out = from_partner(&mut core, stranger.partner_envelope(&l), "p");
        assert!(penalised(&out));
        // Once it proves who it is, relaying them is not held against it.
        let p = Peer("p".into());
        core.handle(
            Input::Proven {
                peer: p.clone(),
                proven: true,
            },
            testkit::NOW,
        );
        let again = testkit::message("zhengzhou", stranger.partner_envelope(&l), "p");
        assert!(!penalised(&core.handle(again, testkit::NOW)));
        core.handle(
            Input::Proven {
                peer: p,
                proven: false,
            },
            testkit::NOW,
        );
        let again = testkit::message("zhengzhou", stranger.partner_envelope(&l), "p");
        assert!(penalised(&core.handle(again, testkit::NOW)));
    }

    #[test]
    fn an_asked_judgement_comes_back_whole_and_proposes_nothing() {
        let kit = Kit::new();
        let revocation = kit.own_revocation();
        let mut core = kit.core(true);
        let reply = Reply(7);
        let out = core.handle(
            Input::Judge {
                reply,
                arrival: Arrival {
                    data: revocation,
                    exchange: "xuchang".into(),
                    from: Peer("api".into()),
                },
            },
            testkit::NOW,
        );
        let Some(Output::LookUp { ticket, .. }) = out.first() else {
            panic!("the leader's checks read the replica: {out:?}");
        };
        let out = core.handle(
            Input::Facts {
                ticket: *ticket,
                facts: Facts::default(),
            },
            testkit::NOW,
        );
        assert!(
            matches!(
                out.as_slice(),
                [Output::Judged { reply: r, judgement }]
                    if *r == reply && judgement.reason == Reason::Accepted
                        && matches!(judgement.proposal, Some(Proposal::Recognize(_)))
            ),
            "{out:?}"
        );
    }

    #[test]
    fn the_proposal_outcome_releases_the_announcement() {
        let kit = Kit::new();
        let listing = kit.partner_listing("released");
        let mut core = kit.core(true);
        let out = fresh_to_leader(&mut core, kit.partner_envelope(&listing), "p");
        let ticket = out
            .iter()
            .find_map(|o| match o {
                Output::Propose { ticket, .. } => Some(*ticket),
                _ => None,
            })
            .expect("proposed");
        assert_eq!(core.in_flight(), 1);
        core.handle(
            Input::Proposed {
                ticket,
                outcome: Outcome::Failed("no leader".into()),
            },
            testkit::NOW,
        );
        assert_eq!(core.in_flight(), 0);
        // Not recorded: the next copy is judged afresh and proposed again.
        let out = fresh_to_leader(&mut core, kit.partner_envelope(&listing), "p");
        assert_eq!(outcome_of(&out).2, Some("recognize"));
    }
}
