//! `/v1/entrustments`: a party entrusts a broker with acts in its name until a time (委托),
//! ends an entrustment, and reads its own; the zone's staff read them all. A broker then acts
//! for the party through the party's own routes (`POST /v1/listings` naming the party), and
//! the node finds the entrustment that allows it ([`super::parties::act_for`]).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;
use xchg_protocol::{PartyId, Timestamp};

use super::auth::Caller;
use super::error::{ApiError, BearerErrors, BodyErrors, ErrorBody, ProposeErrors, ReadErrors};
use super::idempotency::{IdempotencyHeader, IdempotencyKey};
use super::json::JsonBody;
use super::listings::{ReasonBody, consistency_schema, query_error};
use super::parties::require_admitted;
use super::text::{self, Text};
use super::{AppState, Consistency, params};
use crate::catalog::CatalogCommand;
use crate::catalog::parties::{self, Act, Entrustment, EntrustmentGrant};

/// Most entrustments one read returns.
pub const MAX_PAGE: u32 = 100;
/// Entrustments returned when no `limit` is given.
pub const DEFAULT_PAGE: u32 = 50;

/// `POST /v1/entrustments` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEntrustment {
    /// The broker: an admitted party whose kinds include `data_broker`, `merchant_entrusted`
    /// or `service_brokerage`, other than the caller's party.
    #[schema(value_type = String)]
    pub broker: PartyId,
    /// The acts it may do in the caller's party's name: at least one, each once.
    pub scope: Vec<Act>,
    /// Until when (exclusive): after now, at most 1096 days (three years) ahead.
    pub expires_at: Timestamp,
}

/// The caller's own party, for a route only a party's token may use.
fn own_party(caller: &Caller) -> Result<PartyId, ApiError> {
    // An admin's token too is refused: an entrustment is granted in the party's name.
    caller.require_exactly(&[Role::Provider, Role::Buyer])?;
    caller
        .party
        .as_deref()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only a provider or buyer token bound to a party entrusts a broker, in its \
                 party's name",
            )
        })
}

/// `POST /v1/entrustments` (a provider or buyer token, for its own party).
#[utoipa::path(
    post,
    path = "/v1/entrustments",
    operation_id = "grant_entrustment",
    tag = "parties",
    params(IdempotencyHeader),
    request_body = NewEntrustment,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Granted: the broker may do the acts of `scope` in the \
            caller's party's name until `expires_at`", body = Entrustment),
        (status = 400, description = "Malformed JSON, an empty scope or an act twice, the \
            caller's own party as broker, or an `expires_at` not after now or more than 1096 \
            days ahead (`field` names it)", body = ErrorBody),
        (status = 403, description = "Not a provider or buyer token bound to a party (an \
            admin token neither: an entrustment is granted in the party's name; the message \
            names the `provider` and `buyer` roles alone); or `party_not_admitted`: the \
            caller's party or the broker is not admitted", body = ErrorBody),
        (status = 422, description = "`invalid`: the broker's kinds do not include a broker's", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn grant(
    State(state): State<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    JsonBody(body): JsonBody<NewEntrustment>,
) -> Result<(StatusCode, Json<Entrustment>), ApiError> {
    let party = own_party(&caller)?;
    let at = state.clock.now();
    let grant = EntrustmentGrant {
        party: party.clone(),
        broker: body.broker.clone(),
        scope: body.scope.clone(),
        expires_at: body.expires_at,
    };
    parties::grant_shape(&grant, at).map_err(|(field, why)| ApiError::invalid_field(field, why))?;
    require_admitted(&state, party.as_str(), None).await?;
    let broker = require_admitted(&state, grant.broker.as_str(), Some("broker")).await?;
    parties::broker_rule(grant.broker.as_str(), &broker)
        .map_err(|r| ApiError::from(r).with_field("broker"))?;
    let granted_by = caller.actor.id.clone();
    let cmd = idempotency.wrap(
        &body,
        CatalogCommand::GrantEntrustment {
            grant: Box::new(grant.clone()),
            at,
            actor: caller.actor,
        },
        at,
    );
    let (response, _) = state.propose_as(cmd, caller.credential).await?;
    let applied = response?;
    let id = applied.object_id.parse().map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(Entrustment {
            id,
            party,
            broker: grant.broker,
            scope: grant.scope,
            expires_at: grant.expires_at,
            granted_at: at,
            granted_by,
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
        }),
    ))
}

/// `POST /v1/entrustments/{id}/revoke` (its party, or an operator).
#[utoipa::path(
    post,
    path = "/v1/entrustments/{id}/revoke",
    operation_id = "revoke_entrustment",
    tag = "parties",
    params(("id" = u64, Path, description = "Entrustment number")),
    request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked: the broker acts under it no more", body = Entrustment),
        (status = 400, description = "Malformed JSON, or a `reason` that is empty, over 2000 \
            characters or against the text rule", body = ErrorBody),
        (status = 403, description = "Neither the entrustment's party nor an operator", body = ErrorBody),
        (status = 404, description = "No entrustment with this number", body = ErrorBody),
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
) -> Result<Json<Entrustment>, ApiError> {
    caller.require(&[Role::Provider, Role::Buyer, Role::Operator])?;
    let id = params::number_in_path("entrustment", &id)?;
    text::check(&[Text {
        field: "reason",
        value: &body.reason,
        max: parties::MAX_REASON_CHARS,
        required: true,
    }])?;
    state.read_barrier(&Consistency::Linearizable).await?;
    let found = {
        let mut conn = state.db.reader().await?;
        parties::entrustment(&mut conn, id).await?
    };
    let Some(mut e) = found else {
        return Err(ApiError::not_found(format!("no entrustment {id}")));
    };
    // The state machine holds the command to this rule too; asked here, a refusal costs no
    // Raft entry.
    if caller.actor.role != Role::Operator
        && caller.actor.role != Role::Admin
        && caller.party.as_deref() != Some(e.party.as_str())
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "entrustment {id} is {}'s; only it or an operator may revoke it",
                e.party
            ),
        ));
    }
    let at = state.clock.now();
    let cmd = CatalogCommand::RevokeEntrustment {
        entrustment_id: id,
        reason: body.reason.clone(),
        at,
        actor: caller.actor.clone(),
    };
    let (response, _) = state.propose_as(cmd, caller.credential).await?;
    response?;
    e.revoked_at = Some(at);
    e.revoked_by = Some(caller.actor.id);
    e.revoke_reason = Some(body.reason);
    Ok(Json(e))
}

/// The query string of `GET /v1/entrustments`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only those this party granted. A provider or buyer token names its own party here or
    /// in `broker` (by default, here).
    party: Option<PartyId>,
    /// Only those this broker holds.
    broker: Option<PartyId>,
    /// Page size.
    #[param(schema_with = page_size_schema)]
    limit: Option<String>,
    #[serde(default)]
    #[param(schema_with = consistency_schema)]
    consistency: Consistency,
}

fn page_size_schema() -> utoipa::openapi::schema::Object {
    params::page_size_schema(DEFAULT_PAGE, MAX_PAGE)
}

/// The entrustments, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EntrustmentList {
    /// Newest first.
    pub items: Vec<Entrustment>,
}

/// `GET /v1/entrustments?party=&broker=&limit=` (a party's token: its own; staff: all).
#[utoipa::path(
    get,
    path = "/v1/entrustments",
    operation_id = "list_entrustments",
    tag = "parties",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Entrustments, newest first, revoked and expired ones \
            included", body = EntrustmentList),
        (status = 400, description = "An unknown parameter or value (`field` names it)", body = ErrorBody),
        (status = 403, description = "A provider or buyer token asking for entrustments its \
            party neither granted nor holds", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<EntrustmentList>, ApiError> {
    let Query(mut p) = query.map_err(query_error)?;
    let limit = params::page_size("limit", p.limit.as_deref(), DEFAULT_PAGE, MAX_PAGE)?;
    if matches!(caller.actor.role, Role::Provider | Role::Buyer) {
        let own = caller.party.as_deref().unwrap_or_default();
        let names_itself = |p: &Option<PartyId>| p.as_ref().is_some_and(|p| p.as_str() == own);
        if p.party.is_none() && p.broker.is_none() {
            p.party = own.parse().ok();
        }
        if !(names_itself(&p.party) || names_itself(&p.broker)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a party's token reads the entrustments its party granted (party=<its id>) or \
                 holds (broker=<its id>)",
            ));
        }
    }
    state.read_barrier(&p.consistency).await?;
    let mut conn = state.db.reader().await?;
    let items = parties::entrustments(
        &mut conn,
        p.party.as_ref().map(PartyId::as_str),
        p.broker.as_ref().map(PartyId::as_str),
        limit,
    )
    .await?;
    Ok(Json(EntrustmentList { items }))
}
