//! Trades (issue #16): `/v1/orders` — an order placed from an active authorisation, the
//! contract it records, its provider's confirmation and deliveries, an operator's settlement
//! under the zone's fee schedule, a dispute by either party and an operator's reversal by a
//! new record — and `/v1/zone/fee-schedule` (admin). Every write is a command through Raft,
//! judged by the state machine (`catalog::trades`) and recorded in the audit chain; every
//! creating write takes an `Idempotency-Key`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;

use super::auth::Caller;
use super::authorizations::forbidden;
use super::error::{ApiError, BearerErrors, BodyErrors, ErrorBody, ProposeErrors, ReadErrors};
use super::idempotency::{IdempotencyHeader, IdempotencyKey};
use super::json::{JsonBody, OptionalJsonBody};
use super::listings::{ReadParams, ReasonBody, consistency_schema, query_error};
use super::text::{self, Text};
use super::{AppState, CatchUp, Consistency, params};
use crate::catalog::money::Money;
use crate::catalog::tables::trades as table;
use crate::catalog::trades::{
    self, DeliveryRequest, DeliveryView, DisputeView, FeeSchedule, FeeScheduleView, OrderFilter,
    OrderRequest, OrderState, OrderView, SettlementView,
};
use crate::catalog::{CatalogCommand, CommandResponse};
use xchg_protocol::PartyId;

/// The body of a write that takes none: `{}` or nothing.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

/// The number a command created, from its response.
fn created(response: CommandResponse) -> Result<u64, ApiError> {
    response?.object_id.parse().map_err(ApiError::internal)
}

/// Whether `caller` may read order `o`: its buyer, its provider, or the zone's staff
/// (operator, regulator, admin).
fn may_see(caller: &Caller, o: &OrderView) -> Result<(), ApiError> {
    let own = caller.party.as_deref();
    let allowed = match caller.actor.role {
        Role::Buyer => own == Some(o.buyer.as_str()),
        Role::Provider => own == Some(o.provider.as_str()),
        _ => true,
    };
    if allowed {
        return Ok(());
    }
    Err(forbidden(format!(
        "order {} is between {} and {}: a party sees its own orders",
        o.id, o.buyer, o.provider
    )))
}

/// Answers `404` for a number that is no order, writing nothing: from this replica if it has it,
/// else after a read barrier (it may have been placed a moment ago through another node). The
/// state machine judges the order again when it applies the command.
async fn require_order(state: &AppState, id: u64) -> Result<(), ApiError> {
    let look = || async {
        let mut conn = state.db.reader().await?;
        Ok(table::order_exists(&mut conn, id).await?)
    };
    if state
        .look_again_if(CatchUp::Always, look, |found| *found)
        .await?
    {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("no order {id}")))
    }
}

/// Answers `404` for a number that is no authorisation, writing nothing (as
/// [`require_order`]).
async fn require_authorization(state: &AppState, id: u64) -> Result<(), ApiError> {
    let look = || async {
        let mut conn = state.db.reader().await?;
        Ok(crate::catalog::applications::authorization(&mut conn, id)
            .await?
            .is_some())
    };
    if state
        .look_again_if(CatchUp::Always, look, |found| *found)
        .await?
    {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("no authorization {id}")))
    }
}

/// Order `id` after the write at `index` is applied here.
async fn read_order(state: &AppState, id: u64, index: u64) -> Result<OrderView, ApiError> {
    state.applied(index).await?;
    let mut conn = state.db.reader().await?;
    table::order_read(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no order {id}")))
}

/// The answer to a new order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderWrite {
    /// Its number.
    pub id: u64,
    /// `placed`: the buyer's confirmation is its placing; the provider confirms next.
    pub state: OrderState,
}

/// The body of `POST /v1/orders`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// An active authorisation of the buyer's party.
    pub authorization_id: u64,
    /// Units of the listing's pricing model, 1 to 1,000,000,000: calls (`per_call`), periods
    /// (`subscription`), 1 (`fixed`); any for `free` and `negotiated`.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub quantity: u64,
    /// The agreed unit price, a decimal string (up to 15 integer digits, up to 4 decimals):
    /// required for a `negotiated` price, refused for every other model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^(0|[1-9][0-9]{0,14})(\.[0-9]{1,4})?$")]
    pub unit_price: Option<String>,
    /// The buyer party ordered for: absent, the token's own; another party only for a broker
    /// it entrusted with `place_order` (the order then records the broker, whose share the
    /// settlement gives it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub buyer: Option<PartyId>,
}

/// `POST /v1/orders` (a buyer token, for its own party).
#[utoipa::path(
    post,
    path = "/v1/orders",
    operation_id = "place_order",
    tag = "trades",
    params(IdempotencyHeader),
    request_body = NewOrder,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Placed: the order records the contract (the listing's \
            content id and certificate number, parties, authorisation, scenario, delivery mode, \
            unit price and total). The price follows the listing's pricing model: `per_call` \
            quantity calls × amount (at most the calls the authorisation has left), `fixed` \
            quantity 1, `subscription` quantity periods × amount, `free` zero, `negotiated` \
            quantity × `unit_price` (required). A retry with the same `Idempotency-Key` and \
            body answers the first result and creates nothing", body = OrderWrite),
        (status = 400, description = "Malformed JSON, a `quantity` not 1 to 1,000,000,000, or \
            a `unit_price` that is not a decimal amount (`field` names it)", body = ErrorBody),
        (status = 403, description = "Not a buyer token bound to a party; `forbidden`: another \
            buyer's authorisation, one granted by another exchange, or a `buyer` other than the \
            token's party when that party is no broker; `not_entrusted`: a broker without an \
            entrustment of `place_order` from `buyer`; \
            `authorization_expired`, `authorization_suspended`, `authorization_revoked`, \
            `listing_not_listed`: the authorisation is not active; `usage_limit_exceeded`: a \
            per-call order for more calls than it has left; `party_not_admitted`", body = ErrorBody),
        (status = 404, description = "No authorization `authorization_id`", body = ErrorBody),
        (status = 409, description = "`idempotency_key_reused`: the key was used for another \
            request", body = ErrorBody),
        (status = 422, description = "`invalid`: a fixed price ordered more than once, a \
            negotiated price without `unit_price`, a `unit_price` for another model, or a total \
            that, rounded to the fen, is past 15 integer digits", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn place(
    State(state): State<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    JsonBody(body): JsonBody<NewOrder>,
) -> Result<(StatusCode, Json<OrderWrite>), ApiError> {
    caller.require_exactly(&[Role::Buyer])?;
    let own = caller.party.clone().ok_or_else(|| {
        forbidden(
            "this buyer token is bound to no party: an order is placed in a party's name".into(),
        )
    })?;
    if !(1..=trades::MAX_QUANTITY).contains(&body.quantity) {
        return Err(ApiError::invalid_field(
            "quantity",
            format!("{} is not 1 to {}", body.quantity, trades::MAX_QUANTITY),
        ));
    }
    if let Some(p) = &body.unit_price {
        Money::parse(p).map_err(|e| ApiError::invalid_field("unit_price", e))?;
    }
    let buyer = match &body.buyer {
        Some(b) => b.clone(),
        None => own.parse().map_err(ApiError::internal)?,
    };
    require_authorization(&state, body.authorization_id).await?;
    let at = state.clock.now();
    let cmd = CatalogCommand::PlaceOrder {
        request: OrderRequest {
            authorization_id: body.authorization_id,
            quantity: body.quantity,
            unit_price: body.unit_price.clone(),
        },
        buyer,
        at,
        actor: caller.actor.clone(),
    };
    // Another party's name: a broker's act under an entrustment, or refused.
    let cmd = super::parties::act_for(&state, &caller, cmd).await?;
    let cmd = idempotency.wrap(&body, cmd, at);
    let (response, _) = state.propose_as(cmd, caller.credential).await?;
    let id = created(response)?;
    Ok((
        StatusCode::CREATED,
        Json(OrderWrite {
            id,
            state: OrderState::Placed,
        }),
    ))
}

/// `GET /v1/orders/{id}` (its buyer, its provider, the zone's staff).
#[utoipa::path(
    get,
    path = "/v1/orders/{id}",
    operation_id = "get_order",
    tag = "trades",
    params(("id" = u64, Path, description = "Order number"), ReadParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order and its contract, with its deliveries (oldest \
            first, at most 1000), settlement records and disputes", body = OrderView),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 403, description = "Another party's order", body = ErrorBody),
        (status = 404, description = "No order with this number", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<OrderView>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let id = params::number_in_path("order", &id)?;
    state.read_barrier(&p.consistency).await?;
    let mut conn = state.db.reader().await?;
    let o = table::order_read(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no order {id}")))?;
    may_see(&caller, &o)?;
    Ok(Json(o))
}

/// Most orders one page lists.
pub const MAX_PAGE: u32 = 100;
/// Orders listed when no `limit` is given.
pub const DEFAULT_PAGE: u32 = 50;

/// The query string of `GET /v1/orders`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only orders in this state.
    #[param(value_type = Option<OrderState>)]
    state: Option<String>,
    /// Only orders under this authorisation.
    #[param(value_type = Option<u64>)]
    authorization_id: Option<String>,
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

fn before_schema() -> utoipa::openapi::schema::Object {
    params::position_schema("The previous page's `next_before`.")
}

/// A page of orders, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderPage {
    /// The orders with their settlement records and disputes (deliveries: `GET
    /// /v1/orders/{id}`).
    pub items: Vec<OrderView>,
    /// Pass as `before` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// `GET /v1/orders?state=&authorization_id=&limit=&before=` (a buyer: its own; a provider:
/// those for its listings; operator, regulator, admin: the zone's).
#[utoipa::path(
    get,
    path = "/v1/orders",
    operation_id = "list_orders",
    tag = "trades",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page, newest first: a buyer token sees its party's \
            orders, a provider token those for its party's listings, operator, regulator and \
            admin the zone's; each with its settlement records and disputes", body = OrderPage),
        (status = 400, description = "An unknown parameter (`invalid_query`); an unknown \
            `state`, or an `authorization_id`, `limit` or `before` that is not a whole number \
            (`invalid_field` naming it)", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<OrderPage>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let wanted = p
        .state
        .as_deref()
        .map(|s| {
            OrderState::parse(s).ok_or_else(|| {
                let all: Vec<&str> = OrderState::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::invalid_field(
                    "state",
                    format!("unknown state {s:.40?}; expected one of {}", all.join(", ")),
                )
            })
        })
        .transpose()?;
    let number =
        |field: &str, raw: Option<&str>| raw.map(|r| params::whole_number(field, r)).transpose();
    let authorization_id = number("authorization_id", p.authorization_id.as_deref())?;
    let before = number("before", p.before.as_deref())?;
    let limit = params::page_size("limit", p.limit.as_deref(), DEFAULT_PAGE, MAX_PAGE)?;
    let (buyer, provider) = caller.own_side();
    let filter = OrderFilter {
        state: wanted,
        authorization_id,
        buyer,
        provider,
        before,
    };
    state.read_barrier(&p.consistency).await?;
    let mut conn = state.db.reader().await?;
    let mut items = table::list_read(&mut conn, &filter, i64::from(limit) + 1).await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_before = more.then(|| items.last().map(|o| o.id)).flatten();
    Ok(Json(OrderPage { items, next_before }))
}

/// `POST /v1/orders/{id}/confirm` (its provider).
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/confirm",
    operation_id = "confirm_order",
    tag = "trades",
    params(("id" = u64, Path, description = "Order number")),
    request_body(content = NoFields, description = "`{}` or nothing"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Confirmed by its provider: both parties have confirmed \
            the contract, and it may be delivered", body = OrderView),
        (status = 400, description = "Malformed JSON or a field in the body", body = ErrorBody),
        (status = 403, description = "Not a provider token; `forbidden`: another provider's \
            order; `authorization_expired`, `authorization_suspended`, \
            `authorization_revoked`, `listing_not_listed`, `party_not_admitted`: its \
            authorisation is no longer usable", body = ErrorBody),
        (status = 404, description = "No order with this number", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: not `placed`", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn confirm(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJsonBody(_): OptionalJsonBody<NoFields>,
) -> Result<Json<OrderView>, ApiError> {
    caller.require(&[Role::Provider])?;
    let id = params::number_in_path("order", &id)?;
    require_order(&state, id).await?;
    let at = state.clock.now();
    let cmd = CatalogCommand::ConfirmOrder {
        order_id: id,
        at,
        actor: caller.actor.clone(),
    };
    let (response, index) = state.propose_as(cmd, caller.credential).await?;
    response?;
    Ok(Json(read_order(&state, id, index).await?))
}

/// `POST /v1/orders/{id}/deliveries` (its provider).
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/deliveries",
    operation_id = "record_delivery",
    tag = "trades",
    params(("id" = u64, Path, description = "Order number"), IdempotencyHeader),
    request_body = DeliveryRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Recorded. Its calls are counted against the order (a \
            per-call order becomes `delivering`, then `delivered` when every call is) and \
            against the authorisation's usage limit; any delivery of another order makes it \
            `delivered`. A retry with the same `Idempotency-Key` and body answers the first \
            result and counts nothing", body = DeliveryView),
        (status = 400, description = "Malformed JSON; `calls` not 1 to 1,000,000 or given for \
            `file`; `manifest_hashes` missing for `file`, given for another mode, not 1 to \
            100 distinct 64-hex-digit SHA-256; `model_output_ids` for a mode other than \
            `model_output` or malformed; nothing delivered; a `note` over 2000 characters \
            (`field` names it)", body = ErrorBody),
        (status = 403, description = "Not a provider token; `forbidden`: another provider's \
            order; `delivery_mode_not_authorized`: a mode other than the authorisation's; \
            `usage_limit_exceeded`: the calls would pass the authorisation's limit (none is \
            counted); `authorization_expired`, `authorization_suspended`, \
            `authorization_revoked`, `listing_not_listed`, `party_not_admitted`", body = ErrorBody),
        (status = 404, description = "No order with this number", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: not yet confirmed, or already \
            settled; `order_quantity_exceeded`: more calls than the per-call order is for; \
            `idempotency_key_reused`", body = ErrorBody),
        (status = 422, description = "`invalid`: a per-call order's delivery without `calls`", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn deliver(
    State(state): State<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<DeliveryRequest>,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    caller.require(&[Role::Provider])?;
    let id = params::number_in_path("order", &id)?;
    require_order(&state, id).await?;
    trades::delivery_shape(&body).map_err(|(field, why)| ApiError::invalid_field(field, why))?;
    if let Some(note) = &body.note {
        text::check(&[Text {
            field: "note",
            value: note,
            max: trades::MAX_NOTE_CHARS,
            required: false,
        }])?;
    }
    let at = state.clock.now();
    let cmd = idempotency.wrap(
        &body,
        CatalogCommand::RecordDelivery {
            order_id: id,
            delivery: Box::new(body.clone()),
            at,
            actor: caller.actor.clone(),
        },
        at,
    );
    let (response, index) = state.propose_as(cmd, caller.credential).await?;
    let delivery = created(response)?;
    state.applied(index).await?;
    let mut conn = state.db.reader().await?;
    let view = table::delivery_read(&mut conn, delivery)
        .await?
        .ok_or_else(|| ApiError::internal(format!("delivery {delivery} not found")))?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// The settlement record `id` after the write at `index` is applied here.
async fn read_settlement(
    state: &AppState,
    id: u64,
    index: u64,
) -> Result<SettlementView, ApiError> {
    state.applied(index).await?;
    let mut conn = state.db.reader().await?;
    table::settlement_read(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::internal(format!("settlement {id} not found")))
}

/// `POST /v1/orders/{id}/settlement` (operator).
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/settlement",
    operation_id = "settle_order",
    tag = "trades",
    params(("id" = u64, Path, description = "Order number"), IdempotencyHeader),
    request_body(content = NoFields, description = "`{}` or nothing"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Settled under the current fee schedule (its version is \
            recorded): `amount` = quantity delivered (calls delivered for a per-call order, \
            the order's quantity for any other) × unit price, rounded to the fen half up; \
            `fees` = `platform_fee_bp` of it rounded half up, at least `minimum_fee` (CNY \
            orders), at most the amount; the rest is split: the operator's and broker's \
            shares rounded half up, the provider keeps the remainder, so amount = fees + \
            provider + operator + broker. Decimal strings with 2 decimals. A retry with the \
            same `Idempotency-Key` answers the first result", body = SettlementView),
        (status = 400, description = "Malformed JSON or a field in the body", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No order with this number", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: not confirmed, nothing delivered, \
            or already settled; `idempotency_key_reused`", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn settle(
    State(state): State<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<NoFields>,
) -> Result<(StatusCode, Json<SettlementView>), ApiError> {
    caller.require(&[Role::Operator])?;
    let id = params::number_in_path("order", &id)?;
    require_order(&state, id).await?;
    let at = state.clock.now();
    let cmd = idempotency.wrap(
        &body,
        CatalogCommand::SettleOrder {
            order_id: id,
            at,
            actor: caller.actor.clone(),
        },
        at,
    );
    let (response, index) = state.propose_as(cmd, caller.credential).await?;
    let settlement = created(response)?;
    let view = read_settlement(&state, settlement, index).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Checks a dispute's or reversal's reason.
fn reason_rule(reason: &str) -> Result<(), ApiError> {
    text::check(&[Text {
        field: "reason",
        value: reason,
        max: trades::MAX_REASON_CHARS,
        required: true,
    }])
}

/// `POST /v1/orders/{id}/settlement/dispute` (its buyer or its provider).
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/settlement/dispute",
    operation_id = "dispute_settlement",
    tag = "trades",
    params(("id" = u64, Path, description = "Order number"), IdempotencyHeader),
    request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Disputed: the order is `disputed`; the settlement record \
            stays as it was", body = DisputeView),
        (status = 400, description = "Malformed JSON, or a `reason` that is empty, over 2000 \
            characters or against the text rule", body = ErrorBody),
        (status = 403, description = "Neither a buyer nor a provider token; `forbidden`: not \
            this order's buyer or provider", body = ErrorBody),
        (status = 404, description = "No order with this number", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: not `settled`; \
            `idempotency_key_reused`", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn dispute(
    State(state): State<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<(StatusCode, Json<DisputeView>), ApiError> {
    caller.require(&[Role::Buyer, Role::Provider])?;
    let id = params::number_in_path("order", &id)?;
    require_order(&state, id).await?;
    reason_rule(&body.reason)?;
    let at = state.clock.now();
    let cmd = idempotency.wrap(
        &body,
        CatalogCommand::DisputeSettlement {
            order_id: id,
            reason: body.reason.clone(),
            at,
            actor: caller.actor.clone(),
        },
        at,
    );
    let (response, index) = state.propose_as(cmd, caller.credential).await?;
    let dispute = created(response)?;
    state.applied(index).await?;
    let mut conn = state.db.reader().await?;
    let view = table::dispute_read(&mut conn, dispute)
        .await?
        .ok_or_else(|| ApiError::internal(format!("dispute {dispute} not found")))?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `POST /v1/orders/{id}/settlement/reversal` (operator).
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/settlement/reversal",
    operation_id = "reverse_settlement",
    tag = "trades",
    params(("id" = u64, Path, description = "Order number"), IdempotencyHeader),
    request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Reversed by a new record (`kind` `reversal`, `reverses` \
            naming the settlement, the same amounts); the order is `reversed` and the first \
            record stays as it was", body = SettlementView),
        (status = 400, description = "Malformed JSON, or a `reason` that is empty, over 2000 \
            characters or against the text rule", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No order with this number", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: its settlement is not disputed; \
            `idempotency_key_reused`", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn reverse(
    State(state): State<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<(StatusCode, Json<SettlementView>), ApiError> {
    caller.require(&[Role::Operator])?;
    let id = params::number_in_path("order", &id)?;
    require_order(&state, id).await?;
    reason_rule(&body.reason)?;
    let at = state.clock.now();
    let cmd = idempotency.wrap(
        &body,
        CatalogCommand::ReverseSettlement {
            order_id: id,
            reason: body.reason.clone(),
            at,
            actor: caller.actor.clone(),
        },
        at,
    );
    let (response, index) = state.propose_as(cmd, caller.credential).await?;
    let reversal = created(response)?;
    let view = read_settlement(&state, reversal, index).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// The zone's fee schedule: the one in force and those before it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeeSchedules {
    /// In force: the latest version, or version 0 (no fee, no shares) before any is set.
    pub current: FeeScheduleView,
    /// Every version set, newest first (at most 100).
    pub history: Vec<FeeScheduleView>,
}

async fn schedules(state: &AppState) -> Result<FeeSchedules, ApiError> {
    let mut conn = state.db.reader().await?;
    let history = table::fee_schedules_read(&mut conn).await?;
    let current = history
        .first()
        .cloned()
        .unwrap_or_else(FeeScheduleView::initial);
    Ok(FeeSchedules { current, history })
}

/// `PUT /v1/zone/fee-schedule` (admin).
#[utoipa::path(
    put,
    path = "/v1/zone/fee-schedule",
    operation_id = "set_fee_schedule",
    tag = "trades",
    params(IdempotencyHeader),
    request_body = FeeSchedule,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Recorded as the next version (who and when with it); \
            settlements made from now on apply it and record its version. A retry with the same \
            `Idempotency-Key` and body records no second version", body = FeeSchedules),
        (status = 400, description = "Malformed JSON; a rate over 10000 basis points; \
            `operator_share_bp` + `broker_share_bp` over 10000; a `minimum_fee` that is not a \
            decimal amount of whole fen; a `note` over 2000 characters or against the text \
            rule (`field` names it)", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "`idempotency_key_reused`", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn set_fee_schedule(
    State(state): State<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    JsonBody(body): JsonBody<FeeSchedule>,
) -> Result<Json<FeeSchedules>, ApiError> {
    caller.require(&[])?;
    body.check()
        .map_err(|(field, why)| ApiError::invalid_field(field, why))?;
    let at = state.clock.now();
    let cmd = idempotency.wrap(
        &body,
        CatalogCommand::SetFeeSchedule {
            schedule: body.clone(),
            at,
            actor: caller.actor.clone(),
        },
        at,
    );
    let (response, index) = state.propose_as(cmd, caller.credential).await?;
    response?;
    state.applied(index).await?;
    Ok(Json(schedules(&state).await?))
}

/// `GET /v1/zone/fee-schedule` (any token).
#[utoipa::path(
    get,
    path = "/v1/zone/fee-schedule",
    operation_id = "get_fee_schedule",
    tag = "trades",
    params(ReadParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The schedule in force and every version set", body = FeeSchedules),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn get_fee_schedule(
    State(state): State<AppState>,
    _caller: Caller,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<FeeSchedules>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    state.read_barrier(&p.consistency).await?;
    Ok(Json(schedules(&state).await?))
}
