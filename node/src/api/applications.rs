//! `/v1/applications`: a buyer applies to use one listing for one of its scenarios
//! (一场景一申请); an operator approves it (as asked, or narrowed), creating an authorisation,
//! or rejects it. A buyer reads its own applications, a provider those for its listings, the
//! zone's staff all. An application shows the earlier decisions on the same listing and
//! scenario (scenario reuse), without who applied.
//!
//! The rules are the catalog's ([`crate::catalog::applications`]); what is checked here gives
//! the caller a `field` and costs no Raft entry, and the state machine judges again.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use xchg_federation_config::Role;
use xchg_protocol::listing::limits::SHORT_TEXT_CHARS;
use xchg_protocol::{ContentId, DeliveryMode, Listing};

use super::auth::Caller;
use super::authorizations::{forbidden, read_authorization};
use super::error::{ApiError, BearerErrors, BodyErrors, ErrorBody, ProposeErrors, ReadErrors};
use super::idempotency::{IdempotencyHeader, IdempotencyKey};
use super::json::{JsonBody, OptionalJsonBody};
use super::listings::{ReadParams, ReasonBody, consistency_schema, query_error};
use super::parties::require_admitted;
use super::text::{self, Text};
use super::{AppState, CatchUp, Consistency, params};
use crate::catalog::applications::{
    self, ApplicationFilter, ApplicationPage, ApplicationRequest, ApplicationState,
    ApplicationView, AuthorizationView, Precedent, Terms,
};
use crate::catalog::{CatalogCommand, ListingState, Refusal, RefusedAct, RefusedRequest};

/// Most applications one page lists.
pub const MAX_PAGE: u32 = 100;
/// Applications listed when no `limit` is given.
pub const DEFAULT_PAGE: u32 = 50;

/// `POST /v1/applications` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApplication {
    /// The listing: listed in this zone.
    pub listing_id: ContentId,
    /// One of the listing's `scenarios`, exactly as it is written there: one application
    /// names one scenario. A list of two or more (or none) is refused with `one_scenario` (a
    /// list of one text is read as that text), and so is a text that is
    /// not one of the listing's scenarios but holds two or more of them, each as written and
    /// bounded by the text's start or end, white space or one of `, ; 、 ， ； /`, none
    /// overlapping another (`"credit risk"` when the listing offers `credit` and `risk`, but
    /// not `credit risk`); any other text is `scenario_not_offered`.
    #[schema(value_type = String)]
    pub scenario: Value,
    /// What the buyer will use it for.
    pub purpose: String,
    /// One of the listing's delivery modes. A product that is `important` or `core`, or
    /// contains personal information, is authorised only for `sandbox`, `privacy_computing`,
    /// `model_output` or `verification` (`in_domain_only`).
    pub delivery_mode: DeliveryMode,
    /// Days from approval: 1 to 1096.
    pub duration_days: u32,
    /// Calls in all: 1 to 1,000,000,000.
    pub usage_limit: u64,
}

/// The answer to a new application.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApplicationWrite {
    /// Its id.
    pub id: u64,
    /// `submitted`, or `forwarding` for a listing recognised from another exchange.
    pub state: ApplicationState,
    /// The earlier decisions on the same listing and scenario, newest first (at most 20):
    /// what was granted or why it was refused, without who applied.
    pub precedents: Vec<Precedent>,
}

/// An application with the earlier decisions on its listing and scenario.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApplicationDetail {
    /// The application.
    #[serde(flatten)]
    pub application: ApplicationView,
    /// The other decisions on the same listing and scenario, newest first (at most 20).
    pub precedents: Vec<Precedent>,
}

/// The scenarios `raw` names: a text names one, a list of texts each of its entries.
fn named_scenarios(raw: &Value) -> Result<Vec<String>, ApiError> {
    let not_text = || {
        ApiError::invalid_field(
            "scenario",
            "a scenario is named by its text, as the listing has it",
        )
    };
    match raw {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(not_text))
            .collect(),
        _ => Err(not_text()),
    }
}

/// The caller's party, for a route only a buyer token bound to one may use (an admin's
/// token too is refused: an application is made in the buyer's party's name).
fn buyer_party(caller: &Caller) -> Result<String, ApiError> {
    caller.require_exactly(&[Role::Buyer])?;
    caller.party.clone().ok_or_else(|| {
        forbidden(
            "this buyer token is bound to no party: only a buyer token bound to a party \
             applies, in its party's name"
                .into(),
        )
    })
}

/// Listing `id` and its state: as this replica holds it if it is listed here, else as the
/// zone holds it after a read barrier (it may have been approved a moment ago through another
/// node). The state machine judges the listing's state again when it applies the command.
async fn listing(state: &AppState, id: &ContentId) -> Result<(ListingState, Listing), ApiError> {
    let look = || async {
        let mut conn = state.db.reader().await?;
        Ok(applications::listing(&mut conn, &id.to_string()).await?)
    };
    let listed =
        |found: &Option<(ListingState, Listing)>| matches!(found, Some((ListingState::Listed, _)));
    state
        .look_again_if(CatchUp::Always, look, listed)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no listing {id}")).with_field("listing_id"))
}

/// `POST /v1/applications` (a buyer token, for its own party).
#[utoipa::path(
    post,
    path = "/v1/applications",
    operation_id = "submit_application",
    tag = "applications",
    params(IdempotencyHeader),
    request_body = NewApplication,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Submitted (`submitted`), for an operator to decide; or, \
            for a listing recognised from another exchange, `forwarding`: this zone's leader \
            sends it to the listing's origin zone, whose operator decides (PROTOCOL.md 11.7). \
            With the earlier decisions on the same listing and scenario", body = ApplicationWrite),
        (status = 400, description = "Malformed JSON, a `scenario` that is not text, a \
            `purpose` that is empty, over 2000 characters or against the text rule, a \
            `duration_days` or `usage_limit` out of range (`field` names it)", body = ErrorBody),
        (status = 403, description = "Not a buyer token bound to a party (an admin token \
            neither: an application is made in the buyer's party's name; the message names the \
            `buyer` role alone); or `party_not_admitted`: the buyer's party is not admitted",
            body = ErrorBody),
        (status = 404, description = "No listing `listing_id` in this zone", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: the listing is not listed here \
            (in review, rejected, delisted, or a copy recognised from another zone of this \
            exchange, which is applied for there)", body = ErrorBody),
        (status = 422, description = "`one_scenario`: no scenario or several (an empty list or a \
            list of two or more, or a text that is no offered scenario but holds two or more, \
            apart, each bounded by white space, `, ; 、 ， ； /` or the text's ends); \
            `scenario_not_offered`: one the listing does not offer; `in_domain_only`: `file` or \
            `api` for an `important` or `core` product or one with personal information; \
            `invalid`: a delivery mode the listing does not offer. `field` names `scenario` or \
            `delivery_mode`", body = ErrorBody),
        (status = 503, description = "`applications_full`: the buyer has 1000 applications \
            awaiting a decision; or no Raft leader answered in time", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    JsonBody(body): JsonBody<NewApplication>,
) -> Result<(StatusCode, Json<ApplicationWrite>), ApiError> {
    let buyer = buyer_party(&caller)?;
    let named = named_scenarios(&body.scenario)?;
    let texts: Vec<Text<'_>> = std::iter::once(Text {
        field: "purpose",
        value: &body.purpose,
        max: applications::MAX_PURPOSE_CHARS,
        required: true,
    })
    .chain(named.iter().map(|s| Text {
        field: "scenario",
        value: s,
        max: SHORT_TEXT_CHARS,
        required: true,
    }))
    .collect();
    text::check(&texts)?;
    applications::request_shape(body.duration_days, body.usage_limit)
        .map_err(|(field, why)| ApiError::invalid_field(field, why))?;
    require_admitted(&state, &buyer, None).await?;
    let (_, product) = listing(&state, &body.listing_id).await?;
    // The rules of the application itself are refused here, where the caller's list of
    // scenarios is still known, and recorded in the audit chain like the state machine's.
    let judged = applications::one_scenario(&named, &product.scenarios)
        .map_err(|r| (r, "scenario"))
        .and_then(|s| {
            applications::deliverable(&product, body.delivery_mode)
                .map(|()| s)
                .map_err(|r| (r, "delivery_mode"))
        });
    let scenario = match judged {
        Ok(s) => s,
        Err((refusal, field)) => {
            let object = body.listing_id.to_string();
            let act = RefusedAct::SubmitApplication;
            return Err(refuse(&state, &caller, act, object, refusal, Some(field)).await);
        }
    };
    let at = state.clock.now();
    let request = ApplicationRequest {
        listing_id: body.listing_id,
        scenario: scenario.clone(),
        purpose: body.purpose.clone(),
        delivery_mode: body.delivery_mode,
        duration_days: body.duration_days,
        usage_limit: body.usage_limit,
    };
    let cmd = idempotency.wrap(
        &body,
        CatalogCommand::SubmitApplication {
            request: Box::new(request),
            buyer: buyer.parse().map_err(ApiError::internal)?,
            at,
            actor: caller.actor.clone(),
        },
        at,
    );
    let (response, index) = state.propose_as(cmd, caller.credential).await?;
    let id: u64 = response?.object_id.parse().map_err(ApiError::internal)?;
    state.applied(index).await?;
    let mut conn = state.db.reader().await?;
    let listing_id = body.listing_id.to_string();
    let own = &state.config.zone.id;
    let precedents = applications::precedents(&mut conn, &listing_id, &scenario, id, own).await?;
    let state = applications::application(&mut conn, id)
        .await?
        .map_or(ApplicationState::Submitted, |a| a.state);
    let answer = ApplicationWrite {
        id,
        state,
        precedents,
    };
    Ok((StatusCode::CREATED, Json(answer)))
}

/// Records in the audit chain, through the zone's Raft like every refusal the state machine
/// makes, that `caller`'s request to `act` on `object` is refused for `refusal`, and answers
/// it (naming `field`, if any). When the record cannot be made, the answer is why not.
pub(super) async fn refuse(
    state: &AppState,
    caller: &Caller,
    act: RefusedAct,
    object: String,
    refusal: Refusal,
    field: Option<&str>,
) -> ApiError {
    let record = CatalogCommand::RecordRefusedRequest(Box::new(RefusedRequest {
        act,
        object,
        refusal,
        at: state.clock.now(),
        actor: caller.actor.clone(),
    }));
    let answer = match state.propose_as(record, caller.credential.clone()).await {
        Ok((Err(refusal), _)) => ApiError::from(refusal),
        Ok((Ok(_), _)) => return ApiError::internal("a recorded refusal was applied as a success"),
        Err(e) => return e,
    };
    match field {
        Some(f) => answer.with_field(f),
        None => answer,
    }
}

/// Whether `caller` may read `a`: its buyer, the provider of its listing, or the zone's staff;
/// if not, why.
async fn may_read(
    state: &AppState,
    caller: &Caller,
    a: &ApplicationView,
) -> Result<Result<(), Refusal>, ApiError> {
    let own = caller.party.as_deref().unwrap_or_default();
    let allowed = match caller.actor.role {
        Role::Buyer => a.buyer == own,
        Role::Provider => {
            let mut conn = state.db.reader().await?;
            let listing = applications::listing(&mut conn, &a.listing_id.to_string()).await?;
            listing.is_some_and(|(_, l)| l.provider.id.as_str() == own)
        }
        _ => true,
    };
    if allowed {
        return Ok(Ok(()));
    }
    Ok(Err(Refusal::Forbidden(format!(
        "application {} is {}'s: a buyer reads its own applications, a provider those for its \
         listings",
        a.id, a.buyer
    ))))
}

/// `GET /v1/applications/{id}` (its buyer, its listing's provider, the zone's staff).
#[utoipa::path(
    get,
    path = "/v1/applications/{id}",
    operation_id = "get_application",
    tag = "applications",
    params(("id" = u64, Path, description = "Application number"), ReadParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The application, with the earlier decisions on its \
            listing and scenario", body = ApplicationDetail),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 403, description = "Another buyer's application, or one for another \
            provider's listing", body = ErrorBody),
        (status = 404, description = "No application with this number", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<ApplicationDetail>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let id = params::number_in_path("application", &id)?;
    state.read_barrier(&p.consistency).await?;
    let found = {
        let mut conn = state.db.reader().await?;
        applications::application(&mut conn, id).await?
    };
    let application = found.ok_or_else(|| ApiError::not_found(format!("no application {id}")))?;
    may_read(&state, &caller, &application)
        .await?
        .map_err(ApiError::from)?;
    let mut conn = state.db.reader().await?;
    let listing_id = application.listing_id.to_string();
    let own = &state.config.zone.id;
    let precedents =
        applications::precedents(&mut conn, &listing_id, &application.scenario, id, own).await?;
    Ok(Json(ApplicationDetail {
        application,
        precedents,
    }))
}

/// The query string of `GET /v1/applications`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only applications in this state.
    #[param(value_type = Option<ApplicationState>)]
    state: Option<String>,
    /// Only applications for this listing: `sha256:` and 64 lowercase hex digits.
    #[param(value_type = Option<String>, pattern = "^sha256:[0-9a-f]{64}$")]
    listing_id: Option<String>,
    /// Page size.
    #[param(schema_with = page_size_schema)]
    limit: Option<String>,
    /// The `next_before` of the previous page: the page starts below this number.
    #[param(value_type = Option<u64>)]
    before: Option<String>,
    #[serde(default)]
    #[param(schema_with = consistency_schema)]
    consistency: Consistency,
}

fn page_size_schema() -> utoipa::openapi::schema::Object {
    params::page_size_schema(DEFAULT_PAGE, MAX_PAGE)
}

/// `GET /v1/applications?state=&listing_id=&limit=&before=` (a buyer: its own; a provider:
/// those for its listings; staff: all).
#[utoipa::path(
    get,
    path = "/v1/applications",
    operation_id = "list_applications",
    tag = "applications",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page, newest first: a buyer token sees its party's \
            applications, a provider token those for its party's listings, operator, regulator \
            and admin all", body = ApplicationPage),
        (status = 400, description = "An unknown parameter (`invalid_query`); an unknown \
            `state`, a `listing_id` that is not a listing id, or a `limit` or `before` that is \
            not a whole number (`invalid_field` naming it)", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<ApplicationPage>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let wanted = p
        .state
        .as_deref()
        .map(|s| {
            ApplicationState::parse(s).ok_or_else(|| {
                ApiError::invalid_field(
                    "state",
                    format!(
                        "unknown state {s:?}; expected forwarding, submitted, approved or \
                         rejected"
                    ),
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
    let filter = ApplicationFilter {
        state: wanted,
        listing_id: params::listing_id_filter(p.listing_id.as_deref())?,
        buyer,
        provider,
        before,
        limit,
    };
    state.read_barrier(&p.consistency).await?;
    let mut conn = state.db.reader().await?;
    Ok(Json(applications::list(&mut conn, &filter).await?))
}

/// The answer to an approval.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Approval {
    /// The authorisation created.
    pub authorization_id: u64,
    /// The application approved.
    pub application_id: u64,
    /// `approved`.
    pub state: ApplicationState,
    /// The authorisation, as granted.
    pub authorization: AuthorizationView,
}

/// An operator's decision on an application, proposed; the state machine judges it.
async fn decide(
    state: &AppState,
    caller: Caller,
    id: &str,
    decision: Ruling,
) -> Result<(u64, u64), ApiError> {
    caller.require(&[Role::Operator])?;
    let application_id = params::number_in_path("application", id)?;
    // A number that is no application is answered here, writing nothing (as a listing's is);
    // one submitted a moment ago through another node is found after a read barrier.
    let look = || async {
        let mut conn = state.db.reader().await?;
        Ok(applications::application(&mut conn, application_id).await?)
    };
    let Some(asked) = state
        .look_again_if(CatchUp::Always, look, Option::is_some)
        .await?
    else {
        return Err(ApiError::not_found(format!(
            "no application {application_id}"
        )));
    };
    let at = state.clock.now();
    // A refusal of narrowed terms names the term it blames, as one of an application does.
    let narrowed = match &decision {
        Ruling::Approve(terms) => Some(terms.clone()),
        Ruling::Reject(_) => None,
    };
    let cmd = match decision {
        Ruling::Approve(terms) => CatalogCommand::ApproveApplication {
            application_id,
            terms,
            at,
            actor: caller.actor,
        },
        Ruling::Reject(reason) => CatalogCommand::RejectApplication {
            application_id,
            reason,
            at,
            actor: caller.actor,
        },
    };
    let (response, index) = state.propose_as(cmd, caller.credential).await?;
    let applied = response.map_err(|refusal| {
        let field = narrowed.as_ref().and_then(|terms| {
            applications::approval_field(asked.duration_days, asked.usage_limit, terms, &refusal)
        });
        let answer = ApiError::from(refusal);
        match field {
            Some(f) => answer.with_field(f),
            None => answer,
        }
    })?;
    let id = applied.object_id.parse().map_err(ApiError::internal)?;
    Ok((id, index))
}

/// The decision an operator asked for.
enum Ruling {
    Approve(Terms),
    Reject(String),
}

/// `POST /v1/applications/{id}/approve` (operator).
#[utoipa::path(
    post,
    path = "/v1/applications/{id}/approve",
    operation_id = "approve_application",
    tag = "applications",
    params(("id" = u64, Path, description = "Application number")),
    request_body(
        content = Option<Terms>,
        description = "Terms narrowed from those asked (fewer days, fewer calls, another \
            delivery mode the listing offers); the body may be left out, or be `null` or `{}`, \
            to grant them as asked",
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Approved: the authorisation runs from now for the days \
            granted", body = Approval),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 403, description = "Not an operator token; or `party_not_admitted`: the \
            buyer was suspended or refused since it applied (its application may be rejected)",
            body = ErrorBody),
        (status = 404, description = "No application with this number (or its listing is \
            gone)", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: the application is decided, or its \
            listing is no longer listed", body = ErrorBody),
        (status = 422, description = "`invalid`: terms that widen what was asked, a mode the \
            listing does not offer, or a change of the mode asked to one that lets the data out; \
            `in_domain_only`: `file` or `api` for a product that stays in its domain. `field` \
            names the term refused: `duration_days`, `usage_limit` or `delivery_mode` (the \
            mode granted, whether narrowed or as asked)", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJsonBody(terms): OptionalJsonBody<Terms>,
) -> Result<Json<Approval>, ApiError> {
    let application_id = params::number_in_path("application", &id)?;
    let (authorization_id, index) = decide(&state, caller, &id, Ruling::Approve(terms)).await?;
    let authorization = read_authorization(&state, authorization_id, index).await?;
    Ok(Json(Approval {
        authorization_id,
        application_id,
        state: ApplicationState::Approved,
        authorization,
    }))
}

/// The answer to a rejection.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Rejection {
    /// The application.
    pub id: u64,
    /// `rejected`.
    pub state: ApplicationState,
}

/// `POST /v1/applications/{id}/reject` (operator).
#[utoipa::path(
    post,
    path = "/v1/applications/{id}/reject",
    operation_id = "reject_application",
    tag = "applications",
    params(("id" = u64, Path, description = "Application number")),
    request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Rejected; the reason is shown to later applicants for \
            the same listing and scenario", body = Rejection),
        (status = 400, description = "Malformed JSON, or a `reason` that is empty, over 2000 \
            characters or against the text rule", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No application with this number", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: the application is decided", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<Rejection>, ApiError> {
    caller.require(&[Role::Operator])?;
    text::check(&[Text {
        field: "reason",
        value: &body.reason,
        max: applications::MAX_REASON_CHARS,
        required: true,
    }])?;
    let (id, _) = decide(&state, caller, &id, Ruling::Reject(body.reason)).await?;
    Ok(Json(Rejection {
        id,
        state: ApplicationState::Rejected,
    }))
}
