//! `/v1/authorizations`: what an approved application granted (一场景一授权), the usage counted
//! against it, and an operator's suspension or revocation. Usage is reported by the buyer's
//! token or by the delivery system of the listing's provider (its provider token); it is
//! counted by the state machine, which judges it by the time this node stamped on it and
//! records every refusal.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;

use super::applications::refuse;
use super::auth::Caller;
use super::error::{ApiError, BearerErrors, BodyErrors, ErrorBody, ProposeErrors, ReadErrors};
use super::idempotency::{IdempotencyHeader, IdempotencyKey};
use super::json::JsonBody;
use super::listings::{ReadParams, ReasonBody, consistency_schema, query_error};
use super::text::{self, Text};
use super::{AppState, CatchUp, Consistency, params};
use crate::catalog::applications::{self, AuthorizationState, AuthorizationView, Change};
use crate::catalog::tables::authorizations::{self, AuthorizationFilter};
use crate::catalog::{CatalogCommand, Refusal, RefusedAct};

/// A `403 forbidden` saying why.
pub(super) fn forbidden(why: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", why)
}

/// Authorisation `id` as this replica holds it after a read barrier.
///
/// # Errors
/// 404 when there is none; 503 when no leader confirms the read point.
pub(super) async fn read_authorization(
    state: &AppState,
    id: u64,
    written_at: u64,
) -> Result<AuthorizationView, ApiError> {
    state.applied(written_at).await?;
    let mut conn = state.db.reader().await?;
    applications::authorization(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no authorization {id}")))
}

/// Authorisation `id`, for a check of who may act on it: from this replica if it has it (its
/// parties never change), else after a read barrier (it may have been granted a moment ago
/// through another node).
async fn find(state: &AppState, id: u64) -> Result<AuthorizationView, ApiError> {
    let look = || async {
        let mut conn = state.db.reader().await?;
        Ok(applications::authorization(&mut conn, id).await?)
    };
    state
        .look_again_if(CatchUp::Always, look, Option::is_some)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no authorization {id}")))
}

/// Whether `caller` is one of `a`'s parties (its buyer, or its listing's provider) or the
/// zone's staff; if not, why.
fn may_see(caller: &Caller, a: &AuthorizationView) -> Result<(), Refusal> {
    let own = caller.party.as_deref();
    let allowed = match caller.actor.role {
        Role::Buyer => own == Some(a.buyer.as_str()),
        Role::Provider => own == Some(a.provider.as_str()),
        _ => true,
    };
    if allowed {
        return Ok(());
    }
    Err(Refusal::Forbidden(format!(
        "authorization {} is {}'s: a buyer sees its own authorisations, a provider those for \
         its listings",
        a.id, a.buyer
    )))
}

/// Refuses `caller` `act` on `a` unless it may see it; the refusal is in the audit chain.
async fn require_may_see(
    state: &AppState,
    caller: &Caller,
    act: RefusedAct,
    a: &AuthorizationView,
) -> Result<(), ApiError> {
    match may_see(caller, a) {
        Ok(()) => Ok(()),
        Err(refusal) => {
            let object = format!("authorization:{}", a.id);
            Err(refuse(state, caller, act, object, refusal, None).await)
        }
    }
}

/// `GET /v1/authorizations/{id}` (its buyer, its listing's provider, the zone's staff).
#[utoipa::path(
    get,
    path = "/v1/authorizations/{id}",
    operation_id = "get_authorization",
    tag = "applications",
    params(("id" = u64, Path, description = "Authorization number"), ReadParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The authorisation: terms, usage against its limit, \
            refusals, state; a use at or after `expires_at` is refused", body = AuthorizationView),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 403, description = "Another buyer's authorisation, or one for another \
            provider's listing", body = ErrorBody),
        (status = 404, description = "No authorization with this number", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<AuthorizationView>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let id = params::number_in_path("authorization", &id)?;
    state.read_barrier(&p.consistency).await?;
    let found = {
        let mut conn = state.db.reader().await?;
        applications::authorization(&mut conn, id).await?
    };
    let a = found.ok_or_else(|| ApiError::not_found(format!("no authorization {id}")))?;
    may_see(&caller, &a).map_err(ApiError::from)?;
    Ok(Json(a))
}

/// Most authorisations one page lists, and most numbers `ids` may name.
pub const MAX_PAGE: u32 = 100;
/// Authorisations listed when no `limit` is given.
pub const DEFAULT_PAGE: u32 = 50;
/// The pattern of `ids`: 1 to [`MAX_PAGE`] numbers, comma-separated.
const IDS_PATTERN: &str = "^[0-9]+(,[0-9]+){0,99}$";

/// The query string of `GET /v1/authorizations`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only these authorisations: 1 to 100 numbers separated by commas (`ids=3,8,21`), as the
    /// applications of a page name them (`authorization_id`); numbers the caller may not see,
    /// or that do not exist, are left out.
    #[param(schema_with = ids_schema)]
    ids: Option<String>,
    /// Only authorisations in this state.
    #[param(value_type = Option<AuthorizationState>)]
    state: Option<String>,
    /// Only authorisations for this listing: `sha256:` and 64 lowercase hex digits.
    #[param(value_type = Option<String>, pattern = "^sha256:[0-9a-f]{64}$")]
    listing_id: Option<String>,
    /// Page size.
    #[param(schema_with = page_size_schema)]
    limit: Option<String>,
    /// The `next_before` of the previous page: the page starts below this number.
    #[param(schema_with = before_schema)]
    before: Option<String>,
    #[serde(default)]
    #[param(schema_with = consistency_schema)]
    consistency: Consistency,
}

fn page_size_schema() -> utoipa::openapi::schema::Object {
    params::page_size_schema(DEFAULT_PAGE, MAX_PAGE)
}

fn ids_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(IDS_PATTERN))
        .build()
}

fn before_schema() -> utoipa::openapi::schema::Object {
    params::position_schema("The previous page's `next_before`.")
}

/// A page of authorisations, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuthorizationPage {
    /// The authorisations: terms, usage against the limit, refusals, state, expiry.
    pub items: Vec<AuthorizationView>,
    /// Pass as `before` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// The numbers of `ids=`: 1 to [`MAX_PAGE`] whole numbers separated by commas.
///
/// # Errors
/// 400 `invalid_field` naming `ids` otherwise.
fn ids_of(raw: &str) -> Result<Vec<u64>, ApiError> {
    let wrong = || {
        ApiError::invalid_field(
            "ids",
            format!(
                "expected 1 to {MAX_PAGE} authorization numbers separated by commas \
                 ({IDS_PATTERN}), got {raw:.80?}"
            ),
        )
    };
    let parts: Vec<&str> = raw.split(',').collect();
    if parts.len() > MAX_PAGE as usize {
        return Err(wrong());
    }
    let mut ids = parts
        .into_iter()
        .map(|p| params::whole_number("ids", p).map_err(|_| wrong()))
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// `GET /v1/authorizations?ids=&state=&listing_id=&limit=&before=` (a buyer: its own; a
/// provider: those for its listings; staff: all).
#[utoipa::path(
    get,
    path = "/v1/authorizations",
    operation_id = "list_authorizations",
    tag = "applications",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page, newest first: a buyer token sees its party's \
            authorisations, a provider token those for its party's listings, operator, \
            regulator and admin all; each with its usage against its limit and its expiry, as \
            `GET /v1/authorizations/{id}` shows it", body = AuthorizationPage),
        (status = 400, description = "An unknown parameter (`invalid_query`); `ids` that are \
            not 1 to 100 numbers separated by commas, an unknown `state`, a `listing_id` that \
            is not a listing id, or a `limit` or `before` that is not a whole number \
            (`invalid_field` naming it)", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<AuthorizationPage>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let ids = p.ids.as_deref().map(ids_of).transpose()?;
    let wanted = p
        .state
        .as_deref()
        .map(|s| {
            AuthorizationState::parse(s).ok_or_else(|| {
                ApiError::invalid_field(
                    "state",
                    format!("unknown state {s:.40?}; expected active, suspended or revoked"),
                )
            })
        })
        .transpose()?;
    let before = p
        .before
        .as_deref()
        .map(|b| params::whole_number("before", b))
        .transpose()?;
    let limit = params::page_size("limit", p.limit.as_deref(), DEFAULT_PAGE, MAX_PAGE)?;
    let (buyer, provider) = caller.own_side();
    let filter = AuthorizationFilter {
        ids,
        state: wanted,
        listing_id: params::listing_id_filter(p.listing_id.as_deref())?,
        buyer,
        provider,
        before,
    };
    state.read_barrier(&p.consistency).await?;
    let mut conn = state.db.reader().await?;
    let mut items = authorizations::list(&mut conn, &filter, i64::from(limit) + 1).await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_before = more.then(|| items.last().map(|a| a.id)).flatten();
    Ok(Json(AuthorizationPage { items, next_before }))
}

/// `POST /v1/authorizations/{id}/usage` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// Calls made: 1 to 1,000,000.
    pub calls: u64,
}

/// The count after a usage report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageCount {
    /// The authorisation.
    pub authorization_id: u64,
    /// Calls counted, this report's included (and any committed with it or since).
    pub used: u64,
    /// Calls left before the limit.
    pub remaining: u64,
}

/// `POST /v1/authorizations/{id}/usage` (its buyer, or its listing's provider's delivery
/// system).
#[utoipa::path(
    post,
    path = "/v1/authorizations/{id}/usage",
    operation_id = "record_usage",
    tag = "applications",
    params(("id" = u64, Path, description = "Authorization number"), IdempotencyHeader),
    request_body = Usage,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Counted. Send an `Idempotency-Key` so that a retry is \
            not counted twice", body = UsageCount),
        (status = 400, description = "Malformed JSON, or `calls` not 1 to 1,000,000", body = ErrorBody),
        (status = 403, description = "`forbidden`: neither its buyer's token nor its \
            provider's; or the use is refused and the refusal recorded: \
            `authorization_expired` (at or after `expires_at`), `usage_limit_exceeded` (the \
            calls would pass the limit; none of them is counted), `authorization_suspended`, \
            `authorization_revoked`, `listing_not_listed` (delisted or back in review), \
            `party_not_admitted` (the buyer is suspended)", body = ErrorBody),
        (status = 404, description = "No authorization with this number", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Usage>,
) -> Result<Json<UsageCount>, ApiError> {
    caller.require(&[Role::Buyer, Role::Provider])?;
    let id = params::number_in_path("authorization", &id)?;
    if !(1..=applications::MAX_CALLS).contains(&body.calls) {
        return Err(ApiError::invalid_field(
            "calls",
            format!("{} is not 1 to {}", body.calls, applications::MAX_CALLS),
        ));
    }
    let a = find(&state, id).await?;
    require_may_see(&state, &caller, RefusedAct::RecordUsage, &a).await?;
    let at = state.clock.now();
    let cmd = idempotency.wrap(
        &body,
        CatalogCommand::RecordUsage {
            authorization_id: id,
            calls: body.calls,
            at,
            actor: caller.actor.clone(),
        },
        at,
    );
    let (response, index) = state.propose_as(cmd, caller.credential).await?;
    // The count this report left, as the state machine answered it (a replay under the same
    // idempotency key answers it again), not whatever later reports made of it since.
    let counted = response?.used;
    let a = read_authorization(&state, id, index).await?;
    let used = counted.unwrap_or(a.used);
    Ok(Json(UsageCount {
        authorization_id: id,
        used,
        remaining: a.usage_limit.saturating_sub(used),
    }))
}

/// An operator's suspension or revocation, proposed; the state machine judges it.
async fn change(
    state: &AppState,
    caller: Caller,
    id: &str,
    change: Change,
    reason: String,
) -> Result<Json<AuthorizationView>, ApiError> {
    caller.require(&[Role::Operator])?;
    let id = params::number_in_path("authorization", id)?;
    text::check(&[Text {
        field: "reason",
        value: &reason,
        max: applications::MAX_REASON_CHARS,
        required: true,
    }])?;
    // A number that is no authorisation is answered here, writing nothing.
    find(state, id).await?;
    let (at, actor) = (state.clock.now(), caller.actor);
    let cmd = match change {
        Change::Suspend => CatalogCommand::SuspendAuthorization {
            authorization_id: id,
            reason,
            at,
            actor,
        },
        Change::Revoke => CatalogCommand::RevokeAuthorization {
            authorization_id: id,
            reason,
            at,
            actor,
        },
        Change::Reinstate => CatalogCommand::ReinstateAuthorization {
            authorization_id: id,
            reason,
            at,
            actor,
        },
    };
    let (response, index) = state.propose_as(cmd, caller.credential).await?;
    response?;
    Ok(Json(read_authorization(state, id, index).await?))
}

/// `POST /v1/authorizations/{id}/suspend` (operator): `active → suspended`.
#[utoipa::path(
    post,
    path = "/v1/authorizations/{id}/suspend",
    operation_id = "suspend_authorization",
    tag = "applications",
    params(("id" = u64, Path, description = "Authorization number")),
    request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Suspended: every use is refused", body = AuthorizationView),
        (status = 400, description = "Malformed JSON, or a `reason` that is empty, over 2000 \
            characters or against the text rule", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No authorization with this number", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: not `active`", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn suspend(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<AuthorizationView>, ApiError> {
    change(&state, caller, &id, Change::Suspend, body.reason).await
}

/// `POST /v1/authorizations/{id}/revoke` (operator): `active | suspended → revoked`.
#[utoipa::path(
    post,
    path = "/v1/authorizations/{id}/revoke",
    operation_id = "revoke_authorization",
    tag = "applications",
    params(("id" = u64, Path, description = "Authorization number")),
    request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked for good: every use is refused", body = AuthorizationView),
        (status = 400, description = "Malformed JSON, or a `reason` that is empty, over 2000 \
            characters or against the text rule", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No authorization with this number", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: already revoked", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<AuthorizationView>, ApiError> {
    change(&state, caller, &id, Change::Revoke, body.reason).await
}

/// `POST /v1/authorizations/{id}/reinstate` (operator): `suspended → active`.
#[utoipa::path(
    post,
    path = "/v1/authorizations/{id}/reinstate",
    operation_id = "reinstate_authorization",
    tag = "applications",
    params(("id" = u64, Path, description = "Authorization number")),
    request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Active again: uses are judged by its expiry, limit and \
            listing as before its suspension", body = AuthorizationView),
        (status = 400, description = "Malformed JSON, or a `reason` that is empty, over 2000 \
            characters or against the text rule", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No authorization with this number", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: not `suspended` (a revoked \
            authorisation stays revoked)", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn reinstate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<AuthorizationView>, ApiError> {
    change(&state, caller, &id, Change::Reinstate, body.reason).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_to_a_hundred_numbers_separated_by_commas() {
        assert_eq!(ids_of("21,3,8,3").ok(), Some(vec![3, 8, 21]));
        let hundred: Vec<String> = (1..=MAX_PAGE).map(|n| n.to_string()).collect();
        assert_eq!(ids_of(&hundred.join(",")).map(|v| v.len()).ok(), Some(100));
        let too_many = format!("{},101", hundred.join(","));
        for bad in [
            "",
            "1,,2",
            ",1",
            "1,",
            "a",
            "-1",
            "1 ,2",
            "1;2",
            too_many.as_str(),
        ] {
            let e = ids_of(bad).expect_err(bad);
            assert_eq!(
                (e.code, e.field.as_deref()),
                ("invalid_field", Some("ids")),
                "{bad}"
            );
        }
        assert!(
            IDS_PATTERN.contains(&format!("{{0,{}}}", MAX_PAGE - 1)),
            "the documented pattern allows {MAX_PAGE} numbers"
        );
    }
}
