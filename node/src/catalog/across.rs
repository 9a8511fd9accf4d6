//! Applications across exchanges (PROTOCOL.md 11) as the state machine applies them.
//!
//! At the **applicant**, a buyer's application for a listing recognised from another exchange
//! is recorded `forwarding`, with the canonical ApplicationRequest its leader sends to the
//! listing's origin zone ([`forward`]). Whichever member leads signs that body with its own
//! key whenever it sends it: the body, and so the request's id, never changes, so a retry is
//! the same request. The origin's acknowledgement makes it `submitted` ([`forwarded`]); its
//! signed decision, verified by the receiving member, settles it ([`decided`]), and an approval
//! is kept as an authorisation whose usage is counted at the origin.
//!
//! At the **origin**, a verified request is recorded like this zone's own buyers'
//! applications, in the name `<buyer>@<applying zone>` ([`receive`]), after the checks of
//! PROTOCOL.md 11.5 that need this zone's state; a request that breaks a rule of the listing
//! (scenario, delivery mode, the listing's state) is recorded already rejected, so the answer
//! is a signed rejection naming the rule. Its operator decides it like any other; the decision's
//! canonical body is built here when the decision is applied ([`decision_body`]), so every
//! member answers the same decision, each signing it with its own key.
//!
//! The signatures were verified by the member that proposes the command, against its trust
//! store at the time it received the message; applying only decodes what it needs and checks
//! what the zone's state decides, so every member applies the same way.

use serde::{Deserialize, Serialize};
use xchg_protocol::application::{
    self as protocol, ApplicationDecision, Granted as GrantedTerms, Outcome, SignedMessage,
};
use xchg_protocol::canonical::{from_canonical, to_canonical};
use xchg_protocol::{ContentId, Listing, PartyId, Timestamp};

use super::applications::{
    self, ApplicationRequest, ApplicationState, Decision, MAX_PENDING_PER_BUYER, MAX_REASON_CHARS,
};
use super::tables::applications::{self as table, Across};
use super::tables::{authorizations, listings};
use super::{Actor, Applied, CommandResponse, ListingState, Refusal, ZoneFacts};

/// The actor prefix of what another zone asked or decided (`zone:<zone id>`): no token id or
/// party id contains `:`, so no caller is ever given it.
pub const ZONE_ACTOR_PREFIX: &str = "zone:";

/// A forwarded application as the origin's member received it and proposes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedApplication {
    /// The SignedMessage of the ApplicationRequest, as received (verified by the proposer).
    #[serde(with = "serde_bytes")]
    pub request: Vec<u8>,
    /// The libp2p peer that delivered it (bounded).
    pub received_from: String,
    /// When the member received it.
    pub at: Timestamp,
    /// The member's name.
    pub node: String,
}

/// The origin's decision as the applicant's member received it and proposes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedDecision {
    /// The application it decides.
    pub application_id: u64,
    /// The SignedMessage of the ApplicationDecision, as received (verified by the proposer
    /// against the request it answers).
    #[serde(with = "serde_bytes")]
    pub decision: Vec<u8>,
    /// The libp2p peer that delivered it (bounded).
    pub received_from: String,
    /// When the member received it.
    pub at: Timestamp,
    /// The member's name.
    pub node: String,
}

/// The name under which the origin records the buyer `buyer` of zone `applicant`.
pub fn foreign_buyer(buyer: &str, applicant: &str) -> String {
    format!("{buyer}@{applicant}")
}

fn ok(object_id: impl Into<String>) -> CommandResponse {
    Ok(Applied {
        object_id: object_id.into(),
        version: None,
        state: None,
    })
}

/// Applicant: records the application of `buyer` for `product`, a listing recognised from
/// another exchange whose current version is `content_id`, as `forwarding` to its origin zone,
/// with the canonical request the leader sends. The rules of the listing were judged by the
/// caller ([`applications::submit`]) on this zone's copy; the origin judges them again.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    raft_index: u64,
    request: &ApplicationRequest,
    buyer: &str,
    product: &Listing,
    content_id: ContentId,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let Ok(party) = buyer.parse::<PartyId>() else {
        return Ok(Err(Refusal::Invalid(format!(
            "buyer {buyer:?} is not a party id"
        ))));
    };
    if product.origin.exchange() == zone.exchange {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "listing {} is recognised from {}, a zone of this exchange: it is applied for there",
            request.listing_id, product.origin
        ))));
    }
    let mut body = protocol::ApplicationRequest {
        applicant: zone.zone.clone(),
        application: 0,
        origin: product.origin.clone(),
        listing_id: request.listing_id,
        content_id,
        buyer: party,
        scenario: request.scenario.clone(),
        purpose: request.purpose.clone(),
        delivery_mode: request.delivery_mode,
        duration_days: request.duration_days,
        usage_limit: request.usage_limit,
        issued_at: at,
    };
    // Judged before anything is written: a refusal leaves no row behind.
    if let Err(e) = body.validate() {
        return Ok(Err(Refusal::Invalid(e.to_string())));
    }
    let id = table::insert(
        db,
        request,
        buyer,
        ApplicationState::Forwarding,
        at,
        &actor.id,
        raft_index,
    )?;
    body.application = id;
    let bytes = canonical(&body);
    let origin = product.origin.to_string();
    table::set_request(
        db,
        id,
        &Across::ForwardedTo(&origin),
        &ContentId::of(&bytes),
        &bytes,
    )?;
    Ok(ok(id.to_string()))
}

/// Applicant: the origin acknowledged application `id` (`forwarding → submitted`); a retry
/// that finds it acknowledged or decided changes nothing.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn forwarded(
    db: &rusqlite::Connection,
    id: u64,
    at: Timestamp,
) -> rusqlite::Result<CommandResponse> {
    match table::across(db, id)? {
        Some(row) if row.origin_zone.is_some() => {
            table::set_forwarded(db, id, at)?;
            Ok(ok(id.to_string()))
        }
        _ => Ok(Err(Refusal::NotFound(format!(
            "no application {id} forwarded to another exchange"
        )))),
    }
}

/// Origin: records a forwarded request, after the checks of PROTOCOL.md 11.5 that need this
/// zone's state. The same request again answers the application it already is; another
/// request under the same applicant's application number is refused.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn receive(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    raft_index: u64,
    received: &ReceivedApplication,
) -> rusqlite::Result<CommandResponse> {
    let limits = protocol::limits();
    let decoded = SignedMessage::from_bytes(&received.request, &limits)
        .map_err(|e| e.to_string())
        .and_then(|signed| {
            from_canonical::<protocol::ApplicationRequest>(&signed.body, &limits)
                .map(|body| (signed, body))
                .map_err(|e| e.to_string())
        });
    let (signed, body) = match decoded {
        Ok(d) => d,
        Err(e) => return Ok(Err(Refusal::Invalid(format!("request: {e}")))),
    };
    if body.origin != zone.zone {
        return Ok(Err(Refusal::Invalid(format!(
            "the request is addressed to {}, not to this zone {}",
            body.origin, zone.zone
        ))));
    }
    let applicant = body.applicant.to_string();
    if let Some(row) = table::forwarded_by(db, &applicant, body.application)? {
        if row.request_id.as_deref() == Some(signed.id.to_string().as_str()) {
            return Ok(ok(row.id.to_string()));
        }
        return Ok(Err(Refusal::Conflict(format!(
            "application {} of {applicant} was already forwarded as another request ({}): one \
             application number names one request",
            body.application,
            row.request_id.unwrap_or_default()
        ))));
    }
    let listing_id = body.listing_id.to_string();
    let current = match listings::current(db, &listing_id)? {
        Some(c) if c.listing.origin == zone.zone => c,
        _ => {
            return Ok(Err(Refusal::NotFound(format!(
                "listing {listing_id} is not a listing of {}",
                zone.zone
            ))));
        }
    };
    let buyer = foreign_buyer(body.buyer.as_str(), &applicant);
    let pending = table::pending_of(db, &buyer)?;
    if pending >= MAX_PENDING_PER_BUYER {
        return Ok(Err(Refusal::ApplicationsFull(format!(
            "{buyer} has {pending} applications awaiting a decision, the most a buyer may have"
        ))));
    }
    let request = ApplicationRequest {
        listing_id: body.listing_id,
        scenario: body.scenario.clone(),
        purpose: body.purpose.clone(),
        delivery_mode: body.delivery_mode,
        duration_days: body.duration_days,
        usage_limit: body.usage_limit,
    };
    let submitted_by = format!("{ZONE_ACTOR_PREFIX}{applicant}");
    let id = table::insert(
        db,
        &request,
        &buyer,
        ApplicationState::Submitted,
        received.at,
        &submitted_by,
        raft_index,
    )?;
    let across = Across::ForwardedBy(&applicant, body.application);
    table::set_request(db, id, &across, &signed.id, &signed.body)?;
    let product = &current.listing;
    let judged = match current.state {
        ListingState::Listed => Ok(()),
        s => Err(Refusal::ListingNotListed(format!(
            "listing {listing_id} is {}: only a listed listing is applied for",
            s.as_str()
        ))),
    }
    .and_then(|()| {
        applications::one_scenario(std::slice::from_ref(&request.scenario), &product.scenarios)
    })
    .and_then(|_| applications::deliverable(product, request.delivery_mode));
    if let Err(refusal) = judged {
        // Nothing is left for an operator to decide: the origin's answer is a signed rejection
        // naming the rule.
        let reason = bounded_reason(&format!("{}: {refusal}", refusal.code()));
        let actor = Actor {
            id: format!("{}{}", super::NODE_ACTOR_PREFIX, received.node),
            role: xchg_federation_config::Role::Operator,
        };
        let decision = Decision::Reject(&reason);
        // A submitted application of this zone's own listing: nothing refuses its rejection.
        if let Err(refusal) = applications::decide(db, zone, id, &decision, received.at, &actor)? {
            return Ok(Err(refusal));
        }
    }
    Ok(ok(id.to_string()))
}

/// A rejection reason within the reason rule's length.
fn bounded_reason(reason: &str) -> String {
    reason.chars().take(MAX_REASON_CHARS).collect()
}

/// Origin: when application `id`, forwarded from another exchange, is decided (`approved`
/// with `authorization`, or rejected for `reason`) at `at`, the canonical decision every member
/// signs when asked; `None` for this zone's own applications.
///
/// # Errors
/// Only storage errors.
pub fn decision_body(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    id: u64,
    at: Timestamp,
) -> rusqlite::Result<Option<(ContentId, Vec<u8>)>> {
    let Some(row) = table::across(db, id)? else {
        return Ok(None);
    };
    let (Some(_), Some(request_id)) = (&row.applicant_zone, &row.request_id) else {
        return Ok(None);
    };
    let Ok(request) = request_id.parse::<ContentId>() else {
        return Ok(None);
    };
    let outcome = match (row.state, row.authorization_id) {
        (ApplicationState::Approved, Some(authorization)) => {
            let Some(grant) = authorizations::granted(db, authorization)? else {
                return Ok(None);
            };
            Outcome::Approved(GrantedTerms {
                authorization,
                delivery_mode: grant.delivery_mode,
                duration_days: grant.duration_days,
                usage_limit: grant.usage_limit,
                expires_at: grant.expires_at,
            })
        }
        (ApplicationState::Rejected, _) => Outcome::Rejected {
            reason: table::reason_of(db, id)?.unwrap_or_default(),
        },
        _ => return Ok(None),
    };
    let decision = ApplicationDecision {
        request,
        decider: zone.zone.clone(),
        outcome,
        decided_at: at,
    };
    let bytes = canonical(&decision);
    let decision_id = ContentId::of(&bytes);
    table::set_decision(db, id, &decision_id, &bytes, None)?;
    Ok(Some((decision_id, bytes)))
}

/// Applicant: records the origin's decision on application `id`. The same decision again
/// changes nothing; another one for a request already decided is refused.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn decided(
    db: &rusqlite::Connection,
    received: &ReceivedDecision,
) -> rusqlite::Result<CommandResponse> {
    let id = received.application_id;
    let Some(row) = table::across(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!("no application {id}"))));
    };
    let Some(origin) = row.origin_zone.clone() else {
        return Ok(Err(Refusal::Invalid(format!(
            "application {id} is decided in this zone, not by another exchange"
        ))));
    };
    let limits = protocol::limits();
    let decoded = SignedMessage::from_bytes(&received.decision, &limits)
        .map_err(|e| e.to_string())
        .and_then(|signed| {
            from_canonical::<ApplicationDecision>(&signed.body, &limits)
                .map(|body| (signed, body))
                .map_err(|e| e.to_string())
        });
    let (signed, decision) = match decoded {
        Ok(d) => d,
        Err(e) => return Ok(Err(Refusal::Invalid(format!("decision: {e}")))),
    };
    if row.request_id.as_deref() != Some(decision.request.to_string().as_str()) {
        return Ok(Err(Refusal::Invalid(format!(
            "the decision answers request {}, not application {id}'s",
            decision.request
        ))));
    }
    if decision.decider.as_str() != origin {
        return Ok(Err(Refusal::Invalid(format!(
            "the decision is {}'s, not the origin {origin}'s",
            decision.decider
        ))));
    }
    if let Some(known) = &row.decision_id {
        if *known == signed.id.to_string() {
            return Ok(ok(id.to_string()));
        }
        return Ok(Err(Refusal::Conflict(format!(
            "application {id} was already decided by decision {known}: a second, different \
             decision is refused"
        ))));
    }
    if !matches!(
        row.state,
        ApplicationState::Forwarding | ApplicationState::Submitted
    ) {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "application {id} is {}",
            row.state.as_str()
        ))));
    }
    let decided_by = format!("{ZONE_ACTOR_PREFIX}{origin}");
    let at = decision.decided_at;
    match &decision.outcome {
        Outcome::Rejected { reason } => table::reject(db, id, at, &decided_by, reason)?,
        Outcome::Approved(granted) => {
            let Some((asked, buyer, _)) = table::asked(db, id)? else {
                return Ok(Err(Refusal::NotFound(format!("no application {id}"))));
            };
            let provider = listings::current(db, &asked.listing_id.to_string())?
                .map(|c| c.listing.provider.id.to_string())
                .unwrap_or_default();
            let authorization = authorizations::insert(
                db,
                &authorizations::NewAuthorization {
                    application_id: id,
                    listing_id: &asked.listing_id,
                    provider: &provider,
                    buyer: &buyer,
                    scenario: &asked.scenario,
                    delivery_mode: granted.delivery_mode,
                    usage_limit: granted.usage_limit,
                    granted_at: at,
                    expires_at: granted.expires_at,
                    granted_by: &decided_by,
                },
            )?;
            authorizations::set_origin(db, authorization, &origin, granted.authorization)?;
            table::approve(db, id, at, &decided_by, authorization)?;
        }
    }
    table::set_decision(
        db,
        id,
        &signed.id,
        &signed.body,
        Some(received.decision.as_slice()),
    )?;
    Ok(ok(id.to_string()))
}

fn canonical<T: Serialize>(value: &T) -> Vec<u8> {
    // The protocol's own types hold no floats or tags: encoding cannot fail.
    to_canonical(value).unwrap_or_default()
}
