//! `/v1/demands`: demands and matchmaking (交易撮合). A buyer, or a broker it entrusted with
//! `post_demand`, posts what data it needs; anyone with a token reads and searches demands and
//! the listings the exchange matches to them, each with its score and reasons; a broker party or
//! an operator proposes a listing; the buyer accepts one and is shown the application to send.
//! The rules are in [`crate::catalog::demands`].

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;
use xchg_protocol::{ContentId, DeliveryMode, PartyId, Timestamp};

use super::auth::Caller;
use super::error::{ApiError, BearerErrors, BodyErrors, ErrorBody, ProposeErrors, ReadErrors};
use super::idempotency::{IdempotencyHeader, IdempotencyKey};
use super::json::JsonBody;
use super::listings::{ReadParams, consistency_schema, query_error};
use super::text::{self, Text};
use super::{AppState, CatchUp, Consistency, params};
use crate::catalog::demands::{
    self, Acceptance, Budget, Demand, DemandState, MAX_DESCRIPTION_CHARS, MAX_NOTE_CHARS,
    MAX_SCENARIO_CHARS, MAX_TITLE_CHARS, Match, Need, NewDemand,
};
use crate::catalog::demands_across::ExternalDemand;
use crate::catalog::demands_across::Share;
use crate::catalog::tables::demands_across as external;
use crate::catalog::tables::{demands as table, listings};
use crate::catalog::{CatalogCommand, Refusal};

/// Demands one page returns at most.
pub const MAX_LIMIT: u32 = 100;
/// Demands a page returns when no `limit` is given.
pub const DEFAULT_LIMIT: u32 = 20;

/// `POST /v1/demands` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DemandRequest {
    /// The buyer it is for: default the token's party; another party only by a broker it
    /// entrusted with `post_demand`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer: Option<PartyId>,
    /// What data it needs, in a line: 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    /// What data it needs, in full: 1 to 4000 characters.
    #[schema(min_length = 1, max_length = 4000)]
    pub description: String,
    /// The category sought.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub category: String,
    /// The one scenario it would use the data in: 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub scenario: String,
    /// Delivery modes it can accept: at least one, none twice.
    #[schema(min_items = 1)]
    pub delivery_modes: Vec<DeliveryMode>,
    /// Its budget: `min`, when given, at most `max`.
    pub budget: Budget,
    /// When it stops looking: after now, at most 366 days ahead.
    pub deadline: Timestamp,
    /// `exchange` (the default): it stays in this zone (the other zones of this exchange do not
    /// see it either); `federation`: it is also published on this exchange's demand topic,
    /// without the buyer or broker, and shown by the sibling zones of this exchange and the
    /// zones of the exchanges this one has agreements with, when the agreement covers its
    /// category and one of its delivery modes; the topic and catch-up are readable by any peer
    /// of the federation. Its withdrawal or acceptance follows it (PROTOCOL.md 11.9).
    #[serde(default, skip_serializing_if = "Share::is_exchange")]
    pub share: Share,
}

/// The answer to a new demand.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DemandCreated {
    /// Its number in this zone.
    pub id: u64,
    /// `open`.
    pub state: DemandState,
}

fn refused_field((field, why): demands::Invalid) -> ApiError {
    ApiError::invalid_field(field, why)
}

/// `POST /v1/demands` (buyer; a broker for the buyer it names).
#[utoipa::path(
    post,
    path = "/v1/demands",
    operation_id = "post_demand",
    tag = "demands",
    params(IdempotencyHeader),
    request_body = DemandRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Posted: state `open`", body = DemandCreated),
        (status = 400, description = "`invalid_field` (`field` names it): a text empty, too \
            long or with control characters; a category not `[a-z0-9_-]{1,64}`; no delivery \
            mode or one twice; a budget amount not up to 15 digits and 4 decimals, `min` over \
            `max`, a currency not three capitals; a deadline not after now or more than 366 \
            days ahead", body = ErrorBody),
        (status = 403, description = "Not a buyer token; a token bound to no party; \
            `party_not_admitted`; `forbidden`: another party's `buyer` by a party that is no \
            broker; `not_entrusted`: a broker without a `post_demand` entrustment from it",
            body = ErrorBody),
        (status = 503, description = "`applications_full`: the buyer has 200 open demands",
            body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn post(
    State(state): State<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    JsonBody(body): JsonBody<DemandRequest>,
) -> Result<(StatusCode, Json<DemandCreated>), ApiError> {
    caller.require_exactly(&[Role::Buyer])?;
    // A token bound to no party posts none, in its own name or (naming `buyer`) another's.
    let Some(own) = caller.party.as_deref() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only a token bound to a party can post demands",
        )
        .with_field("buyer"));
    };
    let buyer = match &body.buyer {
        Some(b) => b.clone(),
        None => own.parse().map_err(ApiError::internal)?,
    };
    text::check(&[
        Text {
            field: "title",
            value: &body.title,
            max: MAX_TITLE_CHARS,
            required: true,
        },
        Text {
            field: "description",
            value: &body.description,
            max: MAX_DESCRIPTION_CHARS,
            required: true,
        },
        Text {
            field: "scenario",
            value: &body.scenario,
            max: MAX_SCENARIO_CHARS,
            required: true,
        },
    ])?;
    let at = state.clock.now();
    let demand = NewDemand {
        buyer,
        title: body.title.clone(),
        description: body.description.clone(),
        category: body.category.clone(),
        scenario: body.scenario.clone(),
        delivery_modes: body.delivery_modes.clone(),
        budget: body.budget.clone(),
        deadline: body.deadline,
        share: body.share,
    };
    demands::shape(&demand, at).map_err(refused_field)?;
    let cmd = CatalogCommand::PostDemand {
        demand: Box::new(demand),
        at,
        actor: caller.actor.clone(),
    };
    let cmd = super::parties::act_for(&state, &caller, cmd).await?;
    let cmd = idempotency.wrap(&body, cmd, at);
    let (response, _) = state.propose_as(cmd, caller.credential).await?;
    let id = response?.object_id.parse().map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(DemandCreated {
            id,
            state: DemandState::Open,
        }),
    ))
}

/// Query string of `GET /v1/demands`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DemandSearch {
    /// Text in the title or description.
    #[param(max_length = 200)]
    q: Option<String>,
    /// Only this category.
    #[param(pattern = "^[a-z0-9_-]{1,64}$")]
    category: Option<String>,
    /// Only this buyer's (external demands name no buyer: with `buyer`, none of them is listed).
    buyer: Option<String>,
    /// `local` (the default: this zone's demands), `external` (every demand of another zone
    /// recognised here, PROTOCOL.md 11.9), an exchange id (the external demands of that
    /// exchange's zones) or a zone id (that zone's: this zone's own id means `local`).
    origin: Option<String>,
    /// `true` for open ones only (deadline not passed).
    open: Option<bool>,
    /// The `next` of the page before: this zone's demands numbered below it, or, for external
    /// demands, those at a position below it (their row here, not their number at the origin).
    #[param(schema_with = before_schema)]
    before: Option<String>,
    /// How many: 1 to 100 (default 20; larger values are brought to 100).
    #[param(schema_with = limit_schema)]
    limit: Option<String>,
    #[serde(default)]
    #[param(schema_with = consistency_schema)]
    consistency: Consistency,
}

fn before_schema() -> utoipa::openapi::schema::Object {
    params::position_integer_schema(
        "The `next` of the page before: this zone's demands numbered below it, or external \
         demands at a position below it (their row here, not their number at the origin).",
    )
}

fn limit_schema() -> utoipa::openapi::schema::Object {
    params::page_size_schema(DEFAULT_LIMIT, MAX_LIMIT)
}

/// One demand of a page: this zone's, or another zone's recognised here (with its `origin`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum DemandItem {
    /// This zone's.
    Local(Demand),
    /// Another zone's.
    External(ExternalDemand),
}

/// A page of demands.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DemandPage {
    /// Newest first (external ones: the most recently first recognised first). Each page is of
    /// one origin kind: this zone's demands, or external ones.
    pub items: Vec<DemandItem>,
    /// `before` of the next page, when there may be one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// `GET /v1/demands` (any token).
#[utoipa::path(
    get,
    path = "/v1/demands",
    operation_id = "search_demands",
    tag = "demands",
    params(DemandSearch),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Demands, newest first: this zone's, or with `origin` \
            `external`, an exchange id or another zone's id, the demands of other zones \
            recognised here (PROTOCOL.md 11.9), each with its `origin` and `number`", body = DemandPage),
        (status = 400, description = "An unknown or malformed query parameter; \
            `invalid_field`: an `origin` that is not `local`, `external`, an exchange id or a \
            zone id", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn search(
    State(state): State<AppState>,
    _caller: Caller,
    query: Result<Query<DemandSearch>, QueryRejection>,
) -> Result<Json<DemandPage>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let limit = params::page_size("limit", p.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let before = p
        .before
        .as_deref()
        .map(|b| params::position("before", b))
        .transpose()?;
    if p.q.as_deref().is_some_and(|q| q.chars().count() > 200) {
        return Err(ApiError::invalid_field("q", "at most 200 characters"));
    }
    let origin = Origin::of(p.origin.as_deref(), state.config.zone.id.as_str())?;
    if origin != Origin::Local && p.buyer.is_some() {
        // External demands name no buyer: none is any buyer's.
        return Ok(Json(DemandPage {
            items: Vec::new(),
            next: None,
        }));
    }
    state.read_barrier(&p.consistency).await?;
    let q = p.q.as_deref().filter(|q| !q.is_empty());
    let open = p.open.unwrap_or(false);
    let before = before.map(|b| u64::try_from(b).unwrap_or(0));
    let mut conn = state.db.reader().await?;
    let now = state.clock.now();
    let (items, last): (Vec<DemandItem>, Option<u64>) = if origin == Origin::Local {
        let filter = table::Filter {
            q,
            category: p.category.as_deref(),
            buyer: p.buyer.as_deref(),
            open,
            before,
        };
        let found = table::search(&mut conn, &filter, limit, now).await?;
        let last = found.last().map(|d| d.id);
        (found.into_iter().map(DemandItem::Local).collect(), last)
    } else {
        let filter = external::Filter {
            q,
            category: p.category.as_deref(),
            exchange: match &origin {
                Origin::Exchange(e) => Some(e.as_str()),
                _ => None,
            },
            zone: match &origin {
                Origin::Zone(z) => Some(z.as_str()),
                _ => None,
            },
            open,
            before,
        };
        let found = external::search(&mut conn, &filter, limit, now).await?;
        let last = found.last().map(|d| d.position);
        (found.into_iter().map(DemandItem::External).collect(), last)
    };
    let next = (items.len() == limit as usize).then_some(last).flatten();
    Ok(Json(DemandPage { items, next }))
}

/// Which demands a search lists.
#[derive(Debug, PartialEq, Eq)]
enum Origin {
    /// This zone's.
    Local,
    /// Every external one.
    External,
    /// The external ones of an exchange.
    Exchange(String),
    /// The external ones of a zone.
    Zone(String),
}

impl Origin {
    /// The `origin` parameter, for a node of `own` zone.
    fn of(origin: Option<&str>, own: &str) -> Result<Self, ApiError> {
        Ok(match origin {
            None | Some("local") => Origin::Local,
            Some("external") => Origin::External,
            Some(z) if z == own => Origin::Local,
            Some(z) if z.contains('/') => Origin::Zone(
                z.parse::<xchg_protocol::ZoneId>()
                    .map_err(|e| ApiError::invalid_field("origin", e.to_string()))?
                    .to_string(),
            ),
            Some(e) => Origin::Exchange(
                e.parse::<xchg_protocol::ExchangeId>()
                    .map_err(|e| ApiError::invalid_field("origin", e.to_string()))?
                    .to_string(),
            ),
        })
    }
}

async fn held(state: &AppState, id: u64) -> Result<Demand, ApiError> {
    let now = state.clock.now();
    let look = || async {
        let mut conn = state.db.reader().await?;
        Ok(table::get(&mut conn, id, now).await?)
    };
    state
        .look_again_if(CatchUp::Always, look, Option::is_some)
        .await?
        .ok_or_else(|| ApiError::from(Refusal::NotFound(format!("no demand {id}"))))
}

/// `GET /v1/demands/{id}` (any token).
#[utoipa::path(
    get,
    path = "/v1/demands/{id}",
    operation_id = "get_demand",
    tag = "demands",
    params(("id" = u64, Path, description = "Demand number"), ReadParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The demand, its proposals and what was accepted",
            body = Demand),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 404, description = "No demand with this number", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<u64>,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<Demand>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    state.read_barrier(&p.consistency).await?;
    Ok(Json(held(&state, id).await?))
}

/// The exchange's matches for a demand.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Matches {
    /// The demand.
    pub demand: u64,
    /// Best first, at most 20.
    pub matches: Vec<Match>,
}

/// The listings that match `need` (a demand of `category`): listed or recognised ones of its
/// category (the 500 most recent) and every one proposed to it.
async fn matches_of(
    state: &AppState,
    need: &Need<'_>,
    category: &str,
) -> Result<Vec<Match>, ApiError> {
    let mut conn = state.db.reader().await?;
    let mut candidates =
        listings::listed_of_category(&mut conn, category, demands::CANDIDATES).await?;
    for p in need.proposals {
        if candidates.iter().any(|(id, _)| *id == p.listing_id) {
            continue;
        }
        if let Some((state, listing)) =
            listings::current_read(&mut conn, &p.listing_id.to_string()).await?
            && matches!(
                state,
                crate::catalog::ListingState::Listed | crate::catalog::ListingState::Recognised
            )
        {
            candidates.push((p.listing_id, listing));
        }
    }
    Ok(demands::matches(need, &candidates))
}

/// `GET /v1/demands/{id}/matches` (any token).
#[utoipa::path(
    get,
    path = "/v1/demands/{id}/matches",
    operation_id = "match_demand",
    tag = "demands",
    params(("id" = u64, Path, description = "Demand number"), ReadParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Listed or recognised listings that can serve the demand, \
            best first, each with its score and reasons: a delivery mode the buyer accepts \
            (and the listing's in-domain rule allows) is needed, and a fixed price within the \
            budget; score = scenario 40 (a close one 20), delivery 20, price 25 (per call or \
            period 15, negotiated 10), public or general data 5, a proposal 10", body = Matches),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 404, description = "No demand with this number", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn matches(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<u64>,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<Matches>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    state.read_barrier(&p.consistency).await?;
    let demand = held(&state, id).await?;
    let matches = matches_of(&state, &demand.need(), &demand.category).await?;
    Ok(Json(Matches {
        demand: id,
        matches,
    }))
}

/// `POST /v1/demands/{id}/proposals` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalRequest {
    /// The listing proposed: listed or recognised here.
    #[schema(value_type = String, pattern = "^sha256:[0-9a-f]{64}$")]
    pub listing_id: ContentId,
    /// Why it fits: up to 1000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000)]
    pub note: Option<String>,
}

/// The answer to a proposal.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProposalCreated {
    /// Its number.
    pub id: u64,
}

/// `POST /v1/demands/{id}/proposals` (a broker party's token, operator).
#[utoipa::path(
    post,
    path = "/v1/demands/{id}/proposals",
    operation_id = "propose_to_demand",
    tag = "demands",
    params(("id" = u64, Path, description = "Demand number"), IdempotencyHeader),
    request_body = ProposalRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Recorded", body = ProposalCreated),
        (status = 400, description = "`invalid_field`: a note too long or with control \
            characters", body = ErrorBody),
        (status = 403, description = "A regulator's token; a provider or buyer token bound to \
            no party, or to a party that is not a broker; `party_not_admitted`; \
            `listing_not_listed`: the listing is not listed or recognised", body = ErrorBody),
        (status = 404, description = "No such demand or listing", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: the demand is accepted, withdrawn \
            or past its deadline; `conflict`: this proposer proposed this listing already, or \
            the demand has 200 proposals", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn propose(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
    idempotency: IdempotencyKey,
    JsonBody(body): JsonBody<ProposalRequest>,
) -> Result<(StatusCode, Json<ProposalCreated>), ApiError> {
    caller.require(&[Role::Operator, Role::Provider, Role::Buyer])?;
    if let Some(note) = &body.note {
        text::check(&[Text {
            field: "note",
            value: note,
            max: MAX_NOTE_CHARS,
            required: false,
        }])?;
    }
    held(&state, id).await?;
    let at = state.clock.now();
    let cmd = CatalogCommand::ProposeToDemand {
        demand_id: id,
        listing_id: body.listing_id,
        note: body.note.clone().filter(|n| !n.trim().is_empty()),
        at,
        actor: caller.actor.clone(),
    };
    let cmd = idempotency.wrap(&body, cmd, at);
    let (response, _) = state.propose_as(cmd, caller.credential).await?;
    let id = response?.object_id.parse().map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(ProposalCreated { id })))
}

/// `POST /v1/demands/{id}/accept` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    /// The listing accepted: one that matches the demand.
    #[schema(value_type = String, pattern = "^sha256:[0-9a-f]{64}$")]
    pub listing_id: ContentId,
    /// The proposal it came from, if a broker or operator proposed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<u64>,
}

/// The answer to an acceptance: the demand, and the application to send next.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The demand, now `accepted`.
    pub demand: Demand,
    /// `POST /v1/applications` with this body (add `purpose`, `duration_days`, `usage_limit`).
    pub next: serde_json::Value,
}

/// `POST /v1/demands/{id}/accept` (the demand's buyer).
#[utoipa::path(
    post,
    path = "/v1/demands/{id}/accept",
    operation_id = "accept_demand_match",
    tag = "demands",
    params(("id" = u64, Path, description = "Demand number")),
    request_body = AcceptRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Accepted: the demand, with the match recorded as \
            scored, and the application to send next", body = Accepted),
        (status = 403, description = "Not a buyer token, or another buyer's demand; \
            `listing_not_listed`", body = ErrorBody),
        (status = 404, description = "No such demand or listing", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: the demand is accepted, withdrawn \
            or past its deadline; `conflict`: the listing does not match the demand (the \
            message says why)", body = ErrorBody),
        (status = 400, description = "`invalid_field` (`field` names it): `listing_id` \
            missing or not a listing id, `proposal` not a whole number", body = ErrorBody),
        (status = 422, description = "`invalid` (`field` is `proposal`): `proposal` does not \
            propose this listing to this demand", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn accept(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
    JsonBody(body): JsonBody<AcceptRequest>,
) -> Result<Json<Accepted>, ApiError> {
    caller.require_exactly(&[Role::Buyer])?;
    let demand = held(&state, id).await?;
    let mut conn = state.db.reader().await?;
    let Some((_, listing)) =
        listings::current_read(&mut conn, &body.listing_id.to_string()).await?
    else {
        return Err(
            ApiError::not_found(format!("no listing {}", body.listing_id)).with_field("listing_id"),
        );
    };
    drop(conn);
    let scored = demands::score(&demand.need(), body.listing_id, &listing)
        .map_err(|why| ApiError::from(Refusal::Conflict(why)).with_field("listing_id"))?;
    let apply_for = acceptable(&demand, body.listing_id, &listing)
        .map_err(|why| ApiError::from(Refusal::Conflict(why)).with_field("listing_id"))?;
    // The state machine refuses it too; said here with the field to blame.
    if let Some(why) = demands::proposal_mismatch(&demand, body.proposal, body.listing_id) {
        return Err(ApiError::from(Refusal::Invalid(why)).with_field("proposal"));
    }
    let at = state.clock.now();
    let cmd = CatalogCommand::AcceptDemandMatch {
        demand_id: id,
        acceptance: Box::new(Acceptance {
            listing_id: body.listing_id,
            proposal: body.proposal,
            score: scored.score,
            reasons: scored.reasons.clone(),
            at,
        }),
        actor: caller.actor.clone(),
    };
    let (response, index) = state.propose_as(cmd, caller.credential).await?;
    response?;
    state.applied(index).await?;
    let demand = held(&state, id).await?;
    let next = serde_json::json!({
        "method": "POST",
        "path": "/v1/applications",
        "body": {
            "listing_id": body.listing_id,
            "scenario": apply_for,
            "delivery_mode": scored.delivery_modes.first(),
        },
    });
    Ok(Json(Accepted { demand, next }))
}

/// Whether `demand`'s buyer may accept `listing` (`id`), which [`demands::score`] found a
/// match by its delivery, scenario and price: it is in the demand's category or was proposed
/// to it. The scenario to apply for (the demand's, or the close one the listing offers), or why
/// not.
fn acceptable(
    demand: &demands::Demand,
    id: ContentId,
    listing: &xchg_protocol::Listing,
) -> Result<String, String> {
    let proposed = demand.proposals.iter().any(|p| p.listing_id == id);
    if listing.category != demand.category && !proposed {
        return Err(format!(
            "listing {id} is in category {}, not {} as demand {} asks, and no one proposed it \
             to the demand",
            listing.category, demand.category, demand.id
        ));
    }
    Ok(demands::offered_scenario(listing, &demand.scenario)
        .unwrap_or(&demand.scenario)
        .to_owned())
}

/// `POST /v1/demands/{id}/withdraw` (the demand's buyer).
#[utoipa::path(
    post,
    path = "/v1/demands/{id}/withdraw",
    operation_id = "withdraw_demand",
    tag = "demands",
    params(("id" = u64, Path, description = "Demand number")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Withdrawn", body = Demand),
        (status = 403, description = "Not a buyer token, or another buyer's demand",
            body = ErrorBody),
        (status = 404, description = "No demand with this number", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: the demand is accepted, withdrawn \
            or past its deadline", body = ErrorBody),
        BearerErrors,
        ProposeErrors,
    )
)]
pub async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
) -> Result<Json<Demand>, ApiError> {
    caller.require_exactly(&[Role::Buyer])?;
    held(&state, id).await?;
    let cmd = CatalogCommand::WithdrawDemand {
        demand_id: id,
        at: state.clock.now(),
        actor: caller.actor.clone(),
    };
    let (response, index) = state.propose_as(cmd, caller.credential).await?;
    response?;
    state.applied(index).await?;
    Ok(Json(held(&state, id).await?))
}

/// The zone id and number of an external demand's path, each malformed part named as its
/// field: `exchange`, `zone`, or `number` (at most 2^63 − 1, as on the wire).
fn external_key(
    exchange: &str,
    zone: &str,
    number: u64,
) -> Result<(xchg_protocol::ZoneId, u64), ApiError> {
    exchange
        .parse::<xchg_protocol::ExchangeId>()
        .map_err(|e| ApiError::invalid_field("exchange", e.to_string()))?;
    let zone = format!("{exchange}/{zone}")
        .parse()
        .map_err(|e: xchg_protocol::IdError| ApiError::invalid_field("zone", e.to_string()))?;
    if i64::try_from(number).is_err() {
        return Err(ApiError::invalid_field(
            "number",
            format!("at most {}", i64::MAX),
        ));
    }
    Ok((zone, number))
}

async fn held_external(
    state: &AppState,
    exchange: &str,
    zone: &str,
    number: u64,
) -> Result<ExternalDemand, ApiError> {
    let (zone, number) = external_key(exchange, zone, number)?;
    let now = state.clock.now();
    let look = || async {
        let mut conn = state.db.reader().await?;
        Ok(external::get(&mut conn, zone.as_str(), number, now).await?)
    };
    state
        .look_again_if(CatchUp::Always, look, Option::is_some)
        .await?
        .ok_or_else(|| {
            ApiError::from(Refusal::NotFound(format!(
                "no demand {number} of {zone} is recognised here"
            )))
        })
}

/// `GET /v1/demands/external/{exchange}/{zone}/{number}` (any token).
#[utoipa::path(
    get,
    path = "/v1/demands/external/{exchange}/{zone}/{number}",
    operation_id = "get_external_demand",
    tag = "demands",
    params(
        ("exchange" = String, Path, description = "The origin zone's exchange"),
        ("zone" = String, Path, description = "The origin zone's name in its exchange (the \
            part of its zone id after the `/`)"),
        ("number" = u64, Path, description = "The demand's number at its origin zone"),
        ReadParams
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A demand of another zone, recognised here under the \
            agreement with its exchange (PROTOCOL.md 11.9), in its latest state",
            body = ExternalDemand),
        (status = 400, description = "An unknown or malformed query parameter; \
            `invalid_field` with the field to blame: a malformed `exchange` or `zone`, or a \
            `number` above 2^63 - 1", body = ErrorBody),
        (status = 404, description = "No such demand recognised here", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn get_external(
    State(state): State<AppState>,
    _caller: Caller,
    Path((exchange, zone, number)): Path<(String, String, u64)>,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<ExternalDemand>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    state.read_barrier(&p.consistency).await?;
    Ok(Json(held_external(&state, &exchange, &zone, number).await?))
}

/// This exchange's matches for a demand of another zone.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExternalMatches {
    /// The demand's origin.
    pub origin: crate::catalog::demands_across::Provenance,
    /// Its number there.
    pub number: u64,
    /// This exchange's listings, best first, at most 20.
    pub matches: Vec<Match>,
}

/// `GET /v1/demands/external/{exchange}/{zone}/{number}/matches` (any token).
#[utoipa::path(
    get,
    path = "/v1/demands/external/{exchange}/{zone}/{number}/matches",
    operation_id = "match_external_demand",
    tag = "demands",
    params(
        ("exchange" = String, Path, description = "The origin zone's exchange"),
        ("zone" = String, Path, description = "The origin zone's name in its exchange"),
        ("number" = u64, Path, description = "The demand's number at its origin zone"),
        ReadParams
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The listings held here (listed or recognised) that can \
            serve another zone's demand, best first, scored and explained as for this zone's \
            demands (no proposals: those are made at the demand's origin)",
            body = ExternalMatches),
        (status = 400, description = "An unknown or malformed query parameter; \
            `invalid_field` with the field to blame: a malformed `exchange` or `zone`, or a \
            `number` above 2^63 - 1", body = ErrorBody),
        (status = 404, description = "No such demand recognised here", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn match_external(
    State(state): State<AppState>,
    _caller: Caller,
    Path((exchange, zone, number)): Path<(String, String, u64)>,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<ExternalMatches>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    state.read_barrier(&p.consistency).await?;
    let demand = held_external(&state, &exchange, &zone, number).await?;
    let need = Need {
        name: demand.name(),
        scenario: &demand.scenario,
        delivery_modes: &demand.delivery_modes,
        budget: &demand.budget,
        proposals: &[],
    };
    let matches = matches_of(&state, &need, &demand.category).await?;
    Ok(Json(ExternalMatches {
        origin: demand.origin.clone(),
        number,
        matches,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_external_demand_path_names_the_part_to_blame() {
        let field = |exchange: &str, zone: &str, number: u64| {
            external_key(exchange, zone, number)
                .err()
                .map(|e| (e.status.as_u16(), e.field.unwrap_or_default()))
        };
        assert_eq!(field("zhengzhou", "main", 12), None);
        assert_eq!(
            field("Zheng zhou", "main", 12),
            Some((400, "exchange".into()))
        );
        assert_eq!(field("zhengzhou", "Main!", 12), Some((400, "zone".into())));
        assert_eq!(
            field("zhengzhou", "main", i64::MAX as u64 + 1),
            Some((400, "number".into()))
        );
        assert_eq!(field("zhengzhou", "main", i64::MAX as u64), None);
    }
}
