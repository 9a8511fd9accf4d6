//! `/v1/listings/{id}/valuations` and `/v1/listings/{id}/valuation`: valuation reports
//! (数据资产评估) by the cost, income and market approaches. The node that receives a request
//! computes the report from its replica ([`crate::catalog::valuation`]) and records it through
//! Raft; the reports are read by the listing's provider, operators, regulators and admins.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use xchg_federation_config::Role;
use xchg_protocol::{ContentId, Listing};

use super::auth::Caller;
use super::error::{ApiError, BearerErrors, BodyErrors, ErrorBody, ProposeErrors, ReadErrors};
use super::idempotency::{IdempotencyHeader, IdempotencyKey};
use super::json::JsonBody;
use super::listings::{consistency_schema, listing_id, query_error};
use super::{AppState, CatchUp, Consistency, params};
use crate::catalog::CatalogCommand;
use crate::catalog::tables::{listings, valuations};
use crate::catalog::valuation::{self, Candidate, Subject, ValuationReport, ValuationRequest};

/// Most lines of a listing's valuation history one call returns.
pub const MAX_HISTORY: u32 = 100;

/// The listing `id` as held here, caught up with the zone if this replica does not hold it yet.
async fn held(state: &AppState, id: &ContentId) -> Result<Listing, ApiError> {
    let key = id.to_string();
    let look = || async {
        let mut conn = state.db.reader().await?;
        Ok(listings::current_read(&mut conn, &key).await?)
    };
    state
        .look_again_if(CatchUp::Always, look, Option::is_some)
        .await?
        .map(|(_, listing)| listing)
        .ok_or_else(|| ApiError::not_found(format!("no listing {id}")))
}

/// A provider acts and reads only for its own party's listings.
fn require_own(caller: &Caller, listing: &Listing, id: &ContentId) -> Result<(), ApiError> {
    if caller.actor.role != Role::Provider {
        return Ok(());
    }
    let party = listing.provider.id.as_str();
    if caller.party.as_deref() == Some(party) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("listing {id} is {party}'s: a provider values and reads only its own listings"),
    ))
}

/// `POST /v1/listings/{id}/valuations` (provider of the listing, operator).
#[utoipa::path(
    post,
    path = "/v1/listings/{id}/valuations",
    operation_id = "create_valuation",
    tag = "valuations",
    params(("id" = ContentId, Path, description = "Listing id"), IdempotencyHeader),
    request_body = ValuationRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Recorded: the whole report with its version. Amounts are \
            decimal strings rounded half away from zero to 0.01 from unrounded figures; \
            intermediate figures keep 9 decimals (`rounding` says so)", body = ValuationReport),
        (status = 400, description = "`invalid_field` (`field` names it): a rule of the \
            schema: no approach; an amount not up to 15 digits and 4 decimals, or negative \
            (only a cash flow may be); a rate not in [0, 1] with up to 9 decimals; 0 or more \
            than 50 cash flows; a weight not 1 to 100; `units` not 1 to 1000000000; \
            `comparables` not 1 to 20; more than 20 assumptions, or one not 1 to 500 \
            characters of text with something visible and no control character",
            body = ErrorBody),
        (status = 403, description = "Not a provider or operator token; a provider whose party \
            is not the listing's; `party_not_admitted`", body = ErrorBody),
        (status = 404, description = "No listing with this id in this zone", body = ErrorBody),
        (status = 409, description = "`no_comparables` (`field` = `approaches.market`): no \
            listed or recognised listing is priced under the pricing model asked for in the \
            product's currency", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    idempotency: IdempotencyKey,
    JsonBody(body): JsonBody<ValuationRequest>,
) -> Result<(StatusCode, Json<ValuationReport>), ApiError> {
    caller.require(&[Role::Provider, Role::Operator])?;
    let id = listing_id(&id)?;
    let listing = held(&state, &id).await?;
    require_own(&caller, &listing, &id)?;
    let candidates = match &body.approaches.market {
        Some(inputs) => {
            let basis = valuation::market_basis(inputs, &listing);
            let mut conn = state.db.reader().await?;
            listings::comparable_candidates(
                &mut conn,
                &id,
                &listing.category,
                &basis.currency,
                valuation::CANDIDATES_PER_QUERY,
            )
            .await?
            .into_iter()
            .map(|(id, listing)| Candidate { id, listing })
            .collect()
        }
        None => Vec::new(),
    };
    let at = state.clock.now();
    let subject = Subject {
        id: &id,
        listing: &listing,
        at,
        by: &caller.actor.id,
    };
    let report = valuation::report(&body, &subject, &candidates).map_err(invalid)?;
    let cmd = CatalogCommand::RecordValuation {
        report: Box::new(report.clone()),
        actor: caller.actor.clone(),
    };
    let cmd = idempotency.wrap(&body, cmd, at);
    let (response, index) = state.propose_as(cmd, caller.credential).await?;
    let version = response?
        .version
        .ok_or_else(|| ApiError::internal("a recorded valuation without its version"))?;
    // The report recorded under that version: a replay under the same key answers the one
    // first recorded, not the one just computed.
    state.applied(index).await?;
    let mut conn = state.db.reader().await?;
    valuations::get(&mut conn, &id.to_string(), Some(version))
        .await?
        .map(|report| (StatusCode::CREATED, Json(report)))
        .ok_or_else(|| ApiError::internal(format!("valuation {version} of {id} not held")))
}

fn invalid((field, why): valuation::Invalid) -> ApiError {
    if field == valuation::NOTHING_COMPARABLE {
        ApiError::new(StatusCode::CONFLICT, "no_comparables", why).with_field(field)
    } else {
        ApiError::invalid_field(&field, why)
    }
}

/// Query string of `GET /v1/listings/{id}/valuation`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ValuationParams {
    /// The report's version (default the latest).
    #[param(schema_with = version_schema)]
    version: Option<String>,
    #[serde(default)]
    #[param(schema_with = consistency_schema)]
    consistency: Consistency,
}

fn version_schema() -> utoipa::openapi::schema::Object {
    params::position_integer_schema("The report's version, from 1 (default the latest).")
}

/// Who may read a listing's valuations: its provider, operators, regulators, admins.
async fn readable(
    state: &AppState,
    caller: &Caller,
    id: &str,
    consistency: &Consistency,
) -> Result<ContentId, ApiError> {
    caller.require(&[Role::Provider, Role::Operator, Role::Regulator])?;
    let id = listing_id(id)?;
    state.read_barrier(consistency).await?;
    let mut conn = state.db.reader().await?;
    let Some((_, listing)) = listings::current_read(&mut conn, &id.to_string()).await? else {
        return Err(ApiError::not_found(format!("no listing {id}")));
    };
    require_own(caller, &listing, &id)?;
    Ok(id)
}

/// `GET /v1/listings/{id}/valuation` (the listing's provider, operator, regulator, admin).
#[utoipa::path(
    get,
    path = "/v1/listings/{id}/valuation",
    operation_id = "get_valuation",
    tag = "valuations",
    params(("id" = ContentId, Path, description = "Listing id"), ValuationParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The listing's latest report, or the version asked for",
            body = ValuationReport),
        (status = 400, description = "An unknown or malformed query parameter",
            body = ErrorBody),
        (status = 403, description = "A buyer's or broker's token; a provider whose party is \
            not the listing's", body = ErrorBody),
        (status = 404, description = "No such listing (or a path that is not a listing id), \
            or no report (of that version)",
            body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<ValuationParams>, QueryRejection>,
) -> Result<Json<ValuationReport>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let version = match p.version.as_deref() {
        Some(v) => {
            // Beyond every version, it finds nothing.
            let n = params::position("version", v)?;
            Some(u32::try_from(n).unwrap_or(u32::MAX))
        }
        None => None,
    };
    let id = readable(&state, &caller, &id, &p.consistency).await?;
    let mut conn = state.db.reader().await?;
    valuations::get(&mut conn, &id.to_string(), version)
        .await?
        .map(Json)
        .ok_or_else(|| match version {
            Some(v) => ApiError::not_found(format!("listing {id} has no valuation version {v}")),
            None => ApiError::not_found(format!("listing {id} has no valuation yet")),
        })
}

/// `GET /v1/listings/{id}/valuations` (the listing's provider, operator, regulator, admin).
#[utoipa::path(
    get,
    path = "/v1/listings/{id}/valuations",
    operation_id = "list_valuations",
    tag = "valuations",
    params(("id" = ContentId, Path, description = "Listing id"), super::listings::ReadParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The listing's reports, newest first (at most 100): \
            version, time, author, value", body = [valuations::Summary]),
        (status = 400, description = "An unknown or malformed query parameter",
            body = ErrorBody),
        (status = 403, description = "A buyer's or broker's token; a provider whose party is \
            not the listing's", body = ErrorBody),
        (status = 404, description = "No listing with this id (or a path that is not a \
            listing id)", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<super::listings::ReadParams>, QueryRejection>,
) -> Result<Json<Vec<valuations::Summary>>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let id = readable(&state, &caller, &id, &p.consistency).await?;
    let mut conn = state.db.reader().await?;
    Ok(Json(
        valuations::history(&mut conn, &id.to_string(), MAX_HISTORY).await?,
    ))
}
