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
use sqlx::SqliteConnection;
use xchg_protocol::application::{
    self as protocol, ApplicationDecision, Granted as GrantedTerms, Outcome, SignedMessage,
};
use xchg_protocol::canonical::{from_canonical, to_canonical};
use xchg_protocol::{ContentId, Listing, PartyId, Timestamp, ZoneId};

use super::applications::{
    self, ApplicationRequest, ApplicationState, Decision, MAX_PENDING_PER_BUYER, MAX_REASON_CHARS,
};
use super::tables::applications::{self as table, Across};
use super::tables::{authorizations, listings};
use super::{Actor, Applied, CommandResponse, ListingState, Refusal, ZoneFacts};

/// The actor prefix of what another zone asked or decided (`zone:<zone id>`): no token id or
/// party id contains `:`, so no caller is ever given it.
pub const ZONE_ACTOR_PREFIX: &str = "zone:";

/// Most applications one applying zone may have awaiting a decision at this origin, whatever
/// buyers it names, together with those rejected at once (by a rule of the listing) in the
/// last [`REJECTED_AT_ONCE_COUNT_FOR`] ms: these need no operator, so without counting them a
/// partner could make this zone write rows for ever.
pub const MAX_PENDING_PER_APPLICANT: i64 = 10_000;

/// How long a request rejected at once counts against its applying zone: a day.
pub const REJECTED_AT_ONCE_COUNT_FOR: u64 = 86_400_000;

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
        used: None,
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
    if let Err(refusal) = addressed(&zone.zone, &body) {
        return Ok(Err(refusal));
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
    let current = listings::current(db, &listing_id)?;
    let buyer = foreign_buyer(body.buyer.as_str(), &applicant);
    let since = counted_since(received.at);
    let standing = Standing {
        listing_origin: current.as_ref().map(|c| &c.listing.origin),
        of_buyer: table::pending_of(db, &buyer)?,
        of_applicant: table::pending_from(db, &applicant, super::NODE_ACTOR_PREFIX, since)?,
    };
    if let Err(refusal) = room(&zone.zone, &body, &standing) {
        return Ok(Err(refusal));
    }
    let Some(current) = current else {
        return Ok(Err(Refusal::NotFound(format!("no listing {listing_id}"))));
    };
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
        ListingState::Suspended => Err(applications::suspended(&request.listing_id)),
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

/// What a forwarded request needs of this zone's state before it is recorded.
struct Standing<'a> {
    /// The origin of the listing it applies for, if this zone holds it.
    listing_origin: Option<&'a ZoneId>,
    /// How many applications its buyer has awaiting a decision here.
    of_buyer: i64,
    /// How many its applying zone has awaiting a decision here or rejected at once lately.
    of_applicant: i64,
}

/// The time from which requests rejected at once count against their applying zone, for a
/// request received at `at`.
fn counted_since(at: Timestamp) -> Timestamp {
    Timestamp(at.0.saturating_sub(REJECTED_AT_ONCE_COUNT_FOR))
}

/// Whether `body` is for this zone `own` at all: addressed to it, from another exchange.
fn addressed(own: &ZoneId, body: &protocol::ApplicationRequest) -> Result<(), Refusal> {
    if body.origin != *own {
        return Err(Refusal::Invalid(format!(
            "the request is addressed to {}, not to this zone {own}",
            body.origin
        )));
    }
    // Across exchanges only: a zone of this exchange has its buyers apply here directly, and
    // a request from it would be a second road around that zone's own rules.
    if body.applicant.exchange() == own.exchange() {
        return Err(Refusal::Invalid(format!(
            "the request comes from {}, a zone of this exchange: only another exchange forwards \
             an application",
            body.applicant
        )));
    }
    Ok(())
}

/// Whether this zone `own`, in `standing`, can record `body`: the listing is its own, and
/// neither the buyer nor the applying zone is at its bound.
fn room(
    own: &ZoneId,
    body: &protocol::ApplicationRequest,
    standing: &Standing<'_>,
) -> Result<(), Refusal> {
    if standing.listing_origin != Some(own) {
        return Err(Refusal::NotFound(format!(
            "listing {} is not a listing of {own}",
            body.listing_id
        )));
    }
    let pending = standing.of_buyer;
    if pending >= MAX_PENDING_PER_BUYER {
        return Err(Refusal::ApplicationsFull(format!(
            "{} has {pending} applications awaiting a decision, the most a buyer may have",
            foreign_buyer(body.buyer.as_str(), body.applicant.as_str())
        )));
    }
    // The applying zone names its buyers: one zone's are bounded together too.
    let from_zone = standing.of_applicant;
    if from_zone >= MAX_PENDING_PER_APPLICANT {
        return Err(Refusal::ApplicationsFull(format!(
            "{} has {from_zone} applications awaiting a decision here or rejected at once in \
             the last day, the most one zone may have",
            body.applicant
        )));
    }
    Ok(())
}

/// Origin, before proposing: what [`receive`] would refuse `body`, received at `at`, without
/// recording it, judged on a replica. Such a request is answered without a write (every
/// proposal is a Raft entry and an audit record, and an applicant sends a refused request
/// again and again). A replica that lags may let a request through, which [`receive`] judges
/// again on the zone's state, or refuse one the zone could now record, which the applicant
/// sends again (every refusal is temporary to it, PROTOCOL.md 11.7).
///
/// # Errors
/// SQLite's error, or a row that does not decode.
pub async fn unrecordable(
    conn: &mut SqliteConnection,
    own: &ZoneId,
    body: &protocol::ApplicationRequest,
    at: Timestamp,
) -> Result<Option<Refusal>, sqlx::Error> {
    if let Err(refusal) = addressed(own, body) {
        return Ok(Some(refusal));
    }
    let applicant = body.applicant.to_string();
    let buyer = foreign_buyer(body.buyer.as_str(), &applicant);
    let listing = listings::current_read(conn, &body.listing_id.to_string()).await?;
    let standing = Standing {
        listing_origin: listing.as_ref().map(|(_, l)| &l.origin),
        of_buyer: table::pending_of_read(conn, &buyer).await?,
        of_applicant: table::pending_from_read(
            conn,
            &applicant,
            super::NODE_ACTOR_PREFIX,
            counted_since(at),
        )
        .await?,
    };
    Ok(room(own, body, &standing).err())
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
    let mut decision = ApplicationDecision {
        request,
        decider: zone.zone.clone(),
        outcome,
        decided_at: at,
    };
    // A reason the decision's own rule refuses would make the applicant refuse the decision,
    // and ask for ever: it goes out as a plain rejection (the full reason stays recorded here).
    if decision.validate().is_err() && matches!(decision.outcome, Outcome::Rejected { .. }) {
        decision.outcome = Outcome::Rejected {
            reason: "rejected by the origin zone".into(),
        };
    }
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

#[cfg(test)]
mod tests {
    use xchg_federation_config::Role;
    use xchg_protocol::announcement::{AnnouncementKind, Envelope};
    use xchg_protocol::{Delegation, DeliveryMode, Keypair, SignedDelegation, ZoneId};

    use super::*;
    use crate::audit;
    use crate::catalog::applications::{ApplicationView, AuthorizationView, Terms};
    use crate::catalog::apply::apply;
    use crate::catalog::{CatalogCommand, Recognition, test_zone};
    use crate::sqlite::in_transaction;

    const T0: Timestamp = Timestamp(1_800_000_000_000);
    const LENDING: &str = "企业贷款授信审查";

    fn zone(id: &str) -> ZoneId {
        id.parse().expect("zone id")
    }

    fn actor(id: &str, role: Role) -> Actor {
        Actor {
            id: id.into(),
            role,
        }
    }

    fn product(origin: &str) -> Listing {
        let mut draft = xchg_protocol::vectors::credit_draft();
        draft.delivery_modes = vec![DeliveryMode::Verification, DeliveryMode::Sandbox];
        draft.scenarios = vec![LENDING.into()];
        Listing::first_version(draft, zone(origin), T0)
    }

    /// A key of `zone`'s exchange, delegated for it (apply never checks the chain: the
    /// receiving member did).
    fn signer(zone_id: &str) -> (Keypair, SignedDelegation) {
        let z = zone(zone_id);
        let root = Keypair::from_seed(&[7; 32]);
        let key = Keypair::from_seed(&[8; 32]);
        let delegation = SignedDelegation::sign(
            Delegation {
                exchange: z.exchange(),
                zone: z,
                node_key: key.public(),
                not_before: Timestamp(0),
                not_after: Timestamp(4_000_000_000_000),
            },
            &root,
        );
        (key, delegation)
    }

    /// Applies `commands` on a fresh catalog of `xuchang/yuzhou`; the responses, and what the
    /// applications and authorisations ended as.
    async fn run(
        commands: &[CatalogCommand],
    ) -> (
        Vec<CommandResponse>,
        Vec<ApplicationView>,
        Vec<AuthorizationView>,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let zone = test_zone();
        let responses = in_transaction(&db, || {
            let mut chain = audit::Chain::load(&db)?;
            let responses = (10..)
                .zip(commands)
                .map(|(index, c)| apply(&db, &mut chain, &zone, index, c))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            chain.flush(&db)?;
            Ok(responses)
        })
        .expect("apply");
        drop(db);
        let mut reader = crate::catalog::test_reader(dir.path()).await;
        let mut found = (Vec::new(), Vec::new());
        for id in 1..20 {
            if let Some(a) = applications::application(&mut reader, id)
                .await
                .expect("read")
            {
                found.0.push(a);
            }
            if let Some(a) = applications::authorization(&mut reader, id)
                .await
                .expect("read")
            {
                found.1.push(a);
            }
        }
        (responses, found.0, found.1)
    }

    fn codes(responses: &[CommandResponse]) -> Vec<Option<&'static str>> {
        responses
            .iter()
            .map(|r| r.as_ref().err().map(Refusal::code))
            .collect()
    }

    // ---- the origin (this zone, xuchang/yuzhou, owns the listing) ----

    fn listed(p: &Listing) -> [CatalogCommand; 2] {
        [
            CatalogCommand::SubmitListing {
                listing: Box::new(p.clone()),
                actor: actor("yuzhou-credit-center", Role::Provider),
            },
            CatalogCommand::ApproveListing {
                listing_id: p.id(),
                review: crate::catalog::Review::default(),
                at: T0,
                actor: actor("token:op", Role::Operator),
            },
        ]
    }

    /// Application `number` of `zhengzhou/main` for `p`, for `scenario`, signed.
    fn request(p: &Listing, number: u64, scenario: &str, purpose: &str) -> SignedMessage {
        request_from("zhengzhou/main", p, number, scenario, purpose)
    }

    /// Application `number` of zone `applicant` for `p`, for `scenario`, signed.
    fn request_from(
        applicant: &str,
        p: &Listing,
        number: u64,
        scenario: &str,
        purpose: &str,
    ) -> SignedMessage {
        let (key, delegation) = signer(applicant);
        let body = protocol::ApplicationRequest {
            applicant: zone(applicant),
            application: number,
            origin: p.origin.clone(),
            listing_id: p.id(),
            content_id: p.content_id(),
            buyer: "zz-bank".parse().expect("party"),
            scenario: scenario.into(),
            purpose: purpose.into(),
            delivery_mode: DeliveryMode::Verification,
            duration_days: 30,
            usage_limit: 100,
            issued_at: T0,
        };
        SignedMessage::request(&body, &key, delegation)
    }

    fn receive(signed: &SignedMessage) -> CatalogCommand {
        CatalogCommand::ReceiveApplication(Box::new(ReceivedApplication {
            request: signed.to_bytes(),
            received_from: "peer".into(),
            at: T0,
            node: "yuzhou-1".into(),
        }))
    }

    #[tokio::test]
    async fn the_origin_records_a_request_once_and_refuses_a_second_under_its_number() {
        let p = product("xuchang/yuzhou");
        let first = request(&p, 7, LENDING, "授信前核验");
        let other = request(&p, 7, LENDING, "另一个用途");
        let mut commands = listed(&p).to_vec();
        commands.extend([receive(&first), receive(&first), receive(&other)]);
        let elsewhere = request(&product("xuchang/changge"), 8, LENDING, "x");
        commands.push(receive(&elsewhere));
        let (responses, apps, _) = run(&commands).await;
        let c = codes(&responses);
        assert_eq!(
            &c[2..],
            &[None, None, Some("conflict"), Some("invalid")],
            "{responses:?}"
        );
        assert_eq!(
            responses[2], responses[3],
            "the same request is the same application"
        );
        assert_eq!(apps.len(), 1);
        let a = &apps[0];
        assert_eq!(a.buyer, "zz-bank@zhengzhou/main");
        assert_eq!(a.state, ApplicationState::Submitted);
        let across = a.across.as_ref().expect("across");
        assert_eq!(across.applicant_zone.as_deref(), Some("zhengzhou/main"));
        assert_eq!(across.applicant_application, Some(7));
        assert_eq!(across.request_id, first.id.to_string());
    }

    #[tokio::test]
    async fn the_origin_decision_states_the_terms_its_authorisation_grants() {
        let p = product("xuchang/yuzhou");
        let mut commands = listed(&p).to_vec();
        commands.push(receive(&request(&p, 7, LENDING, "授信前核验")));
        commands.push(CatalogCommand::ApproveApplication {
            application_id: 1,
            terms: Terms {
                usage_limit: Some(40),
                delivery_mode: Some(DeliveryMode::Sandbox),
                ..Terms::default()
            },
            at: T0,
            actor: actor("token:op", Role::Operator),
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let zone = test_zone();
        in_transaction(&db, || {
            let mut chain = audit::Chain::load(&db)?;
            for (i, c) in commands.iter().enumerate() {
                apply(&db, &mut chain, &zone, 10 + i as u64, c)?.expect("applied");
            }
            Ok(())
        })
        .expect("apply");
        let row = table::across(&db, 1).expect("read").expect("row");
        let body = row.decision_body.expect("a decision body");
        let decision: ApplicationDecision =
            from_canonical(&body, &protocol::limits()).expect("canonical");
        assert_eq!(row.decision_id, Some(ContentId::of(&body).to_string()));
        assert_eq!(decision.decider, zone.zone);
        assert_eq!(decision.request.to_string(), row.request_id.expect("id"));
        let Outcome::Approved(granted) = decision.outcome else {
            panic!("approved: {decision:?}");
        };
        assert_eq!(granted.authorization, 1);
        assert_eq!(granted.usage_limit, 40);
        assert_eq!(granted.duration_days, 30);
        assert_eq!(granted.delivery_mode, DeliveryMode::Sandbox);
        assert_eq!(granted.expires_at, T0.plus_millis(30 * 86_400_000));
    }

    #[tokio::test]
    async fn a_request_breaking_a_rule_of_the_listing_is_recorded_rejected_with_the_rule() {
        let p = product("xuchang/yuzhou");
        let mut commands = listed(&p).to_vec();
        commands.push(receive(&request(&p, 7, "个人征信", "授信前核验")));
        let (responses, apps, _) = run(&commands).await;
        assert_eq!(codes(&responses), [None, None, None]);
        let a = &apps[0];
        assert_eq!(a.state, ApplicationState::Rejected);
        assert!(
            a.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("scenario_not_offered: ")),
            "{a:?}"
        );
        assert!(
            a.across
                .as_ref()
                .and_then(|x| x.decision_id.as_ref())
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_request_for_a_listing_the_origin_does_not_own_is_not_recorded() {
        let p = product("xuchang/yuzhou");
        let (responses, apps, _) = run(&[receive(&request(&p, 7, LENDING, "x"))]).await;
        assert_eq!(codes(&responses), [Some("not_found")]);
        assert!(apps.is_empty());
    }

    #[test]
    fn one_applying_zone_may_have_ten_thousand_applications_awaiting_the_origin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let zone = test_zone();
        let p = product("xuchang/yuzhou");
        in_transaction(&db, || {
            let mut chain = audit::Chain::load(&db)?;
            for (i, c) in listed(&p).iter().enumerate() {
                apply(&db, &mut chain, &zone, 10 + i as u64, c)?.expect("listed");
            }
            // As if 10,000 requests of many buyers were recorded.
            db.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
                 INSERT INTO applications (listing_id, buyer, scenario, purpose, delivery_mode,
                    duration_days, usage_limit, state, submitted_at, submitted_by, raft_index,
                    applicant_zone, remote_id)
                 SELECT ?1, 'b' || i || '@zhengzhou/main', 's', 'p', 'verification', 1, 1,
                    'submitted', 0, 'zone:zhengzhou/main', 1, 'zhengzhou/main', 100000 + i FROM n",
                [p.id().to_string()],
            )?;
            let refused = apply(
                &db,
                &mut chain,
                &zone,
                20,
                &receive(&request(&p, 7, LENDING, "x")),
            )?;
            assert_eq!(refused.err().map(|r| r.code()), Some("applications_full"));
            Ok(())
        })
        .expect("apply");
    }

    #[tokio::test]
    async fn a_request_from_a_zone_of_the_origins_own_exchange_is_not_recorded() {
        // A sibling zone's buyers apply here directly; only another exchange forwards.
        let p = product("xuchang/yuzhou");
        let mut commands = listed(&p).to_vec();
        commands.push(receive(&request_from(
            "xuchang/changge",
            &p,
            7,
            LENDING,
            "授信前核验",
        )));
        let (responses, apps, _) = run(&commands).await;
        assert_eq!(
            codes(&responses),
            [None, None, Some("invalid")],
            "{responses:?}"
        );
        assert!(apps.is_empty());
    }

    /// Records, as if received, `count` requests of `zhengzhou/main` for `p` that this zone
    /// rejected at once (by a rule of the listing) at `decided_at`.
    fn rejected_at_once(db: &rusqlite::Connection, p: &Listing, count: u32, decided_at: u64) {
        db.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2)
             INSERT INTO applications (listing_id, buyer, scenario, purpose, delivery_mode,
                duration_days, usage_limit, state, submitted_at, submitted_by, raft_index,
                applicant_zone, remote_id, decided_at, decided_by, reason)
             SELECT ?1, 'b' || i || '@zhengzhou/main', 's', 'p', 'verification', 1, 1,
                'rejected', ?3, 'zone:zhengzhou/main', 1, 'zhengzhou/main', 100000 + i, ?3,
                'node:yuzhou-1', 'scenario_not_offered: s' FROM n",
            rusqlite::params![p.id().to_string(), count, decided_at],
        )
        .expect("rows");
    }

    #[test]
    fn requests_rejected_at_once_count_against_the_applying_zone_for_a_day() {
        // Each is a row and an audit record that no operator ever looks at: a partner sending
        // rule-breaking requests under ever new numbers must not make this zone write for ever.
        let p = product("xuchang/yuzhou");
        let breaking = |n| receive(&request(&p, n, "个人征信", "x"));
        let day = 86_400_000;
        for (decided_at, expected) in [
            (T0.0 - 1000, Some("applications_full")),
            (T0.0 - day - 1, None),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = crate::catalog::test_db(dir.path());
            let zone = test_zone();
            in_transaction(&db, || {
                let mut chain = audit::Chain::load(&db)?;
                for (i, c) in listed(&p).iter().enumerate() {
                    apply(&db, &mut chain, &zone, 10 + i as u64, c)?.expect("listed");
                }
                rejected_at_once(&db, &p, 10_000, decided_at);
                let answer = apply(&db, &mut chain, &zone, 20, &breaking(7))?;
                assert_eq!(answer.err().map(|r| r.code()), expected, "{decided_at}");
                Ok(())
            })
            .expect("apply");
        }
    }

    #[tokio::test]
    async fn a_replica_refuses_before_proposing_what_the_zone_would_refuse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let zone = test_zone();
        let p = product("xuchang/yuzhou");
        in_transaction(&db, || {
            let mut chain = audit::Chain::load(&db)?;
            for (i, c) in listed(&p).iter().enumerate() {
                apply(&db, &mut chain, &zone, 10 + i as u64, c)?.expect("listed");
            }
            Ok(())
        })
        .expect("apply");
        let body = |p: &Listing, applicant: &str| {
            let signed = request_from(applicant, p, 7, LENDING, "x");
            from_canonical::<protocol::ApplicationRequest>(&signed.body, &protocol::limits())
                .expect("body")
        };
        let mut unknown = body(&p, "zhengzhou/main");
        unknown.listing_id = ContentId::of(b"no listing here");
        let mut reader = crate::catalog::test_reader(dir.path()).await;
        let mut codes = Vec::new();
        for b in [
            body(&p, "zhengzhou/main"),
            body(&p, "xuchang/changge"),
            unknown,
        ] {
            let refusal = unrecordable(&mut reader, &zone.zone, &b, T0)
                .await
                .expect("read");
            codes.push(refusal.map(|r| r.code()));
        }
        rejected_at_once(&db, &p, 10_000, T0.0 - 1000);
        let refusal = unrecordable(&mut reader, &zone.zone, &body(&p, "zhengzhou/main"), T0)
            .await
            .expect("read");
        codes.push(refusal.map(|r| r.code()));
        assert_eq!(
            codes,
            [
                None,
                Some("invalid"),
                Some("not_found"),
                Some("applications_full")
            ]
        );
    }

    // ---- the applicant (this zone applies for a listing of zhengzhou/main) ----

    fn recognised(p: &Listing) -> CatalogCommand {
        let (key, delegation) = signer(p.origin.as_str());
        let env = Envelope::seal(
            AnnouncementKind::Listing,
            p.canonical_bytes(),
            &key,
            Some(delegation),
        );
        CatalogCommand::Recognize(Box::new(Recognition {
            envelope: env.to_bytes(),
            content_id: env.id,
            kind: env.kind,
            exchange: p.origin.exchange(),
            agreement: "outside:zhengzhou".into(),
            signer: key.public(),
            refusal: None,
            wants_certificate: false,
            received_from: "peer".into(),
            at: T0,
            node: "yuzhou-1".into(),
        }))
    }

    fn apply_for(p: &Listing) -> CatalogCommand {
        CatalogCommand::SubmitApplication {
            request: Box::new(ApplicationRequest {
                listing_id: p.id(),
                scenario: LENDING.into(),
                purpose: "授信前核验".into(),
                delivery_mode: DeliveryMode::Verification,
                duration_days: 30,
                usage_limit: 100,
            }),
            buyer: "xuchang-bank".parse().expect("party"),
            at: T0,
            actor: actor("xuchang-bank", Role::Buyer),
        }
    }

    /// The request application 1 of this zone sends for `p`, as [`forward`] builds it.
    fn sent(p: &Listing) -> protocol::ApplicationRequest {
        protocol::ApplicationRequest {
            applicant: test_zone().zone,
            application: 1,
            origin: p.origin.clone(),
            listing_id: p.id(),
            content_id: p.content_id(),
            buyer: "xuchang-bank".parse().expect("party"),
            scenario: LENDING.into(),
            purpose: "授信前核验".into(),
            delivery_mode: DeliveryMode::Verification,
            duration_days: 30,
            usage_limit: 100,
            issued_at: T0,
        }
    }

    fn decision_on(request: &protocol::ApplicationRequest, outcome: Outcome) -> CatalogCommand {
        let (key, delegation) = signer("zhengzhou/main");
        let body = ApplicationDecision {
            request: ContentId::of(&canonical(request)),
            decider: zone("zhengzhou/main"),
            outcome,
            decided_at: T0.plus_millis(1000),
        };
        CatalogCommand::ApplicationDecided(Box::new(ReceivedDecision {
            application_id: 1,
            decision: SignedMessage::decision(&body, &key, delegation).to_bytes(),
            received_from: "peer".into(),
            at: T0,
            node: "yuzhou-1".into(),
        }))
    }

    fn approval(limit: u64) -> Outcome {
        Outcome::Approved(GrantedTerms {
            authorization: 9,
            delivery_mode: DeliveryMode::Verification,
            duration_days: 10,
            usage_limit: limit,
            expires_at: T0.plus_millis(1000 + 10 * 86_400_000),
        })
    }

    #[tokio::test]
    async fn an_application_for_a_listing_of_another_exchange_is_forwarded_and_settled_once() {
        let p = product("zhengzhou/main");
        let asked = sent(&p);
        let mut other = asked.clone();
        other.usage_limit = 99;
        let commands = [
            recognised(&p),
            apply_for(&p),
            CatalogCommand::ApproveApplication {
                application_id: 1,
                terms: Terms::default(),
                at: T0,
                actor: actor("token:op", Role::Operator),
            },
            decision_on(&other, approval(50)),
            CatalogCommand::ApplicationForwarded {
                application_id: 1,
                at: T0,
                node: "yuzhou-1".into(),
            },
            decision_on(&asked, approval(50)),
            decision_on(&asked, approval(50)),
            decision_on(&asked, approval(40)),
            CatalogCommand::RecordUsage {
                authorization_id: 1,
                calls: 1,
                at: T0.plus_millis(2000),
                actor: actor("xuchang-bank", Role::Buyer),
            },
        ];
        let (responses, apps, auths) = run(&commands).await;
        assert_eq!(
            codes(&responses),
            [
                None,
                None,
                Some("illegal_transition"),
                Some("invalid"),
                None,
                None,
                None,
                Some("conflict"),
                Some("forbidden")
            ],
            "{responses:?}"
        );
        let a = &apps[0];
        assert_eq!(a.state, ApplicationState::Approved);
        assert_eq!(a.decided_by.as_deref(), Some("zone:zhengzhou/main"));
        let across = a.across.as_ref().expect("across");
        assert_eq!(across.origin_zone.as_deref(), Some("zhengzhou/main"));
        assert_eq!(
            across.request_id,
            ContentId::of(&canonical(&asked)).to_string()
        );
        assert_eq!(across.forwarded_at, Some(T0));
        assert_eq!(auths.len(), 1);
        assert_eq!((auths[0].usage_limit, auths[0].used), (50, 0));
        assert_eq!(auths[0].granted_by, "zone:zhengzhou/main");
    }

    #[tokio::test]
    async fn a_listing_of_a_sibling_zone_is_not_forwarded_across_exchanges() {
        let p = product("xuchang/changge");
        let (responses, apps, _) = run(&[recognised(&p), apply_for(&p)]).await;
        assert_eq!(codes(&responses), [None, Some("illegal_transition")]);
        assert!(apps.is_empty());
    }
}
