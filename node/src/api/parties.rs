//! `/v1/parties`: the zone's party registry (交易主体管理). Anyone may apply, with a token or
//! none, within a rate limit; an operator admits or refuses, suspends and reinstates; every
//! token reads. Also the checks the other resources make before acting in a party's name: the
//! party admitted, and a broker acting for another party only under its entrustment.
//!
//! The rules are the catalog's ([`crate::catalog::parties`]); the state machine applies them
//! again, so what these checks let through and what commits agree even when a decision lands
//! in between.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;
use xchg_protocol::{PartyId, PartyKind, PartyProfile, Timestamp};

use super::auth::Caller;
use super::error::{ApiError, BearerErrors, BodyErrors, ErrorBody, ProposeErrors, ReadErrors};
use super::json::{JsonBody, OptionalJsonBody};
use super::listings::{ReasonBody, consistency_schema, query_error};
use super::rate_limit::{Limited, Rate, RateLimit};
use super::text::{self, Text};
use super::{AppState, CatchUp, Consistency, params};
use crate::catalog::parties::{
    self, BrokerAct, Founding, PartyFilter, PartyPage, PartyState, PartyView, Standing,
};
use crate::catalog::{Actor, CatalogCommand, party_rule};

/// How often one source address may apply: 5 at once, then one a minute.
pub const PER_SOURCE: Rate = Rate {
    burst: 5,
    every: Duration::from_secs(60),
};

/// How often one node takes applications from everyone together: 60 at once, then one each
/// 10 seconds.
pub const PER_NODE: Rate = Rate {
    burst: 60,
    every: Duration::from_secs(10),
};

/// Most source addresses the limit tracks at once.
pub const MAX_SOURCES: usize = 10_000;

/// Most parties one page lists.
pub const MAX_PAGE: u32 = 100;
/// Parties listed when no `limit` is given.
pub const DEFAULT_PAGE: u32 = 50;

/// What the registry's handlers keep between requests. The time comes from the context's
/// clock ([`super::Context::clock`]) and the node's name from its config.
pub struct Registry {
    /// The zone's founding parties (the config's `[[parties]]`): the state machine's map.
    founding: Arc<Founding>,
    /// The limit on applications.
    limit: Mutex<RateLimit>,
}

impl Registry {
    /// The registry of a zone whose founding parties are `founding` (the map the state
    /// machine judges by, [`crate::catalog::ZoneFacts::founding`]).
    pub fn new(founding: Arc<Founding>) -> Self {
        Registry {
            founding,
            limit: Mutex::new(RateLimit::new(PER_SOURCE, PER_NODE, MAX_SOURCES)),
        }
    }
}

/// The caller, if the request carries a token; a token that is there must be valid.
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok(MaybeCaller(None));
        }
        Caller::from_request_parts(parts, state)
            .await
            .map(|c| MaybeCaller(Some(c)))
    }
}

/// The address the request's connection came from, as the server saw it.
pub struct Source(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Source(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

fn party_id(raw: &str) -> Result<PartyId, ApiError> {
    raw.parse()
        .map_err(|e: xchg_protocol::IdError| ApiError::not_found(format!("no party {raw:?}: {e}")))
}

/// The standing of `party` in the zone, for a check that passes when `enough` holds of it.
/// This replica may not have applied a decision the leader already committed, so a standing
/// that is not enough is looked up again after a read barrier.
///
/// # Errors
/// 503 when no leader confirms the read point.
async fn standing_of(
    state: &AppState,
    party: &str,
    enough: impl Fn(&Option<Standing>) -> bool,
) -> Result<Option<Standing>, ApiError> {
    let look = || async {
        let mut conn = state.db.reader().await?;
        Ok(parties::standing(&mut conn, &state.parties.founding, party).await?)
    };
    state.look_again_if(CatchUp::Always, look, enough).await
}

/// Refuses unless `party` is admitted.
///
/// # Errors
/// 403 `party_not_admitted` blaming `field` (if any) and saying the party's state.
pub async fn require_admitted(
    state: &AppState,
    party: &str,
    field: Option<&str>,
) -> Result<Standing, ApiError> {
    let admitted =
        |s: &Option<Standing>| s.as_ref().is_some_and(|s| s.state == PartyState::Admitted);
    let standing = standing_of(state, party, admitted).await?;
    match parties::not_admitted(party, standing.as_ref()) {
        None => Ok(standing.unwrap_or(Standing {
            state: PartyState::Admitted,
            broker: false,
        })),
        Some(refusal) => Err(ApiError::from(refusal).with_field(field.unwrap_or_default())),
    }
}

/// The command to propose for `cmd`, which names a party (a listing's `provider.id`), asked by
/// `caller`: the party must be admitted; a token acts for its own party, or, if that party is
/// a broker, for another under an entrustment that party granted it (the command is then a
/// [`CatalogCommand::Entrusted`] naming it). A command that names no party is returned as it
/// is.
///
/// # Errors
/// 403 `party_not_admitted` (the token's party or the named one), `forbidden` (another
/// party's name, not as a broker), `not_entrusted` (no entrustment allows it), all blaming
/// `provider.id`.
pub async fn act_for(
    state: &AppState,
    caller: &Caller,
    cmd: CatalogCommand,
) -> Result<CatalogCommand, ApiError> {
    let (Some(named), Some(act)) = (cmd.named_party().map(str::to_owned), cmd.act()) else {
        return Ok(cmd);
    };
    let field = cmd.party_field();
    let own = caller.party.as_deref();
    let bound = matches!(caller.actor.role, Role::Provider | Role::Buyer);
    let Some(own) = own.filter(|own| bound && *own != named) else {
        party_rule(caller.actor.role, own, &named, cmd.party_act()).map_err(|why| {
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", why).with_field(field)
        })?;
        require_admitted(state, &named, Some(field)).await?;
        return Ok(cmd);
    };
    let mine = require_admitted(state, own, Some(field)).await?;
    if !mine.broker {
        let why = party_rule(caller.actor.role, Some(own), &named, cmd.party_act())
            .err()
            .unwrap_or_default();
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", why).with_field(field));
    }
    require_admitted(state, &named, Some(field)).await?;
    // Perhaps granted a moment ago and not yet applied here: then caught up with.
    let look = || async {
        let mut conn = state.db.reader().await?;
        Ok(parties::find_entrustment(&mut conn, &named, own, act, state.clock.now()).await?)
    };
    let found = state
        .look_again_if(CatchUp::Always, look, Result::is_ok)
        .await?;
    let entrustment = found.map_err(|r| ApiError::from(r).with_field(field))?;
    let mut act = BrokerAct {
        broker: own
            .parse()
            .map_err(|e: xchg_protocol::IdError| ApiError::internal(e))?,
        entrustment,
        command: cmd,
    };
    act.authorise(caller.actor.clone(), Some(own))
        .map_err(|r| ApiError::from(r).with_field(field))?;
    Ok(CatalogCommand::Entrusted(Box::new(act)))
}

/// The party rule of a new token: a provider or buyer token names an admitted party.
///
/// # Errors
/// 400 `invalid_field` for a buyer token without `party`; 403 `party_not_admitted` for a
/// party the zone has not admitted.
pub async fn require_token_party(
    state: &AppState,
    role: Role,
    party: Option<&str>,
) -> Result<(), ApiError> {
    if !matches!(role, Role::Provider | Role::Buyer) {
        return Ok(());
    }
    let Some(party) = party else {
        return Err(ApiError::invalid_field(
            "party",
            format!("required for a {role} token: the admitted party it acts for"),
        ));
    };
    require_admitted(state, party, Some("party"))
        .await
        .map(drop)
}

/// The answer to a party write.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PartyWrite {
    /// Party id.
    #[schema(value_type = String)]
    pub id: PartyId,
    /// Its state after the write.
    pub state: PartyState,
}

/// The answer `429 rate_limited`, with when to try again in `Retry-After`.
fn rate_limited(limited: Limited) -> Response {
    let wait = limited.retry_after().as_secs().max(1);
    let why = match limited {
        Limited::Source(_) => format!(
            "this address applied {} times within {} s; apply again in {wait} s",
            PER_SOURCE.burst,
            PER_SOURCE.every.as_secs() * u64::from(PER_SOURCE.burst)
        ),
        Limited::Node(_) => format!("this node takes no more applications now; retry in {wait} s"),
        Limited::Crowded(_) => {
            format!("too many addresses are applying at once; retry in {wait} s")
        }
    };
    let error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", why);
    ([(header::RETRY_AFTER, wait.to_string())], error).into_response()
}

/// `POST /v1/parties` (anyone, with a token or without): apply to trade in the zone.
#[utoipa::path(
    post,
    path = "/v1/parties",
    operation_id = "apply_party",
    tag = "parties",
    request_body = PartyProfile,
    security((), ("bearer" = [])),
    responses(
        (status = 201, description = "Applied: state `applied`, for an operator to decide", body = PartyWrite),
        (status = 400, description = "Malformed JSON, or a field that breaks a rule: an invalid \
            party id, a credit code of another length, with characters outside its alphabet, \
            letters in its division or a wrong check character, no kind or a kind twice, a name \
            or contact against its rule (`field` names the first, `details` lists every one)",
            body = ErrorBody),
        (status = 401, description = "An `Authorization` header with an unknown or revoked \
            token (leave it out to apply without one)", body = ErrorBody),
        (status = 409, description = "The party id or the credit code is already in the \
            registry (a refused party applies again under its id with its own credit code)",
            body = ErrorBody),
        (status = 429, description = "`rate_limited`: this address applied 5 times, then once a \
            minute, or the node took 60, then one each 10 s; `Retry-After` says when to try \
            again. Operator and admin tokens are not limited", body = ErrorBody),
        (status = 503, description = "`applications_full`: 10,000 applications await a \
            decision; or no Raft leader answered in time", body = ErrorBody),
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn apply(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Source(source): Source,
    JsonBody(profile): JsonBody<PartyProfile>,
) -> Response {
    match apply_for(state, caller, source, profile).await {
        Ok(answer) => answer,
        Err(e) => e.into_response(),
    }
}

async fn apply_for(
    state: AppState,
    caller: Option<Caller>,
    source: Option<IpAddr>,
    profile: PartyProfile,
) -> Result<Response, ApiError> {
    profile.validate()?;
    let staff = caller
        .as_ref()
        .is_some_and(|c| matches!(c.actor.role, Role::Operator | Role::Admin));
    let now = state.clock.now();
    if !staff {
        let taken = match state.parties.limit.lock() {
            Ok(mut limit) => limit.take(source, now),
            Err(poisoned) => poisoned.into_inner().take(source, now),
        };
        if let Err(limited) = taken {
            return Ok(rate_limited(limited));
        }
    }
    let id = profile.id.clone();
    let cmd = CatalogCommand::ApplyParty {
        profile: Box::new(profile),
        at: now,
        actor: caller.as_ref().map(|c| c.actor.clone()),
        received_by: state.config.node.name.to_string(),
    };
    let (response, _) = match caller {
        Some(c) => state.propose_as(cmd, c.credential).await?,
        None => state.propose(cmd).await?,
    };
    response?;
    let answer = PartyWrite {
        id,
        state: PartyState::Applied,
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// The query string of `GET /v1/parties`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only parties of this kind.
    #[param(value_type = Option<PartyKind>)]
    kind: Option<String>,
    /// Only parties in this state.
    #[param(value_type = Option<PartyState>)]
    state: Option<String>,
    /// Page size.
    #[param(schema_with = page_size_schema)]
    limit: Option<String>,
    /// The `next_after` of the previous page: the page starts after this party id.
    #[param(value_type = Option<PartyId>)]
    after: Option<String>,
    #[serde(default)]
    #[param(schema_with = consistency_schema)]
    consistency: Consistency,
}

fn page_size_schema() -> utoipa::openapi::schema::Object {
    params::page_size_schema(DEFAULT_PAGE, MAX_PAGE)
}

/// Whether `caller` sees `view`'s contact: the zone's staff and the party itself do.
fn sees_contact(caller: &Caller, view: &PartyView) -> bool {
    matches!(
        caller.actor.role,
        Role::Operator | Role::Regulator | Role::Admin
    ) || caller.party.as_deref() == Some(view.id.as_str())
}

fn shown(caller: &Caller, mut view: PartyView) -> PartyView {
    if !sees_contact(caller, &view) {
        view.contact = None;
    }
    view
}

/// `GET /v1/parties?kind=&state=&limit=&after=` (any token).
#[utoipa::path(
    get,
    path = "/v1/parties",
    operation_id = "list_parties",
    tag = "parties",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of the registry, by id; founding parties \
            included. `contact` is shown to operators, regulators, admins and the party itself",
            body = PartyPage),
        (status = 400, description = "An unknown parameter or value (`field` names it)", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<PartyPage>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let kind = p
        .kind
        .as_deref()
        .map(|k| {
            k.parse::<PartyKind>()
                .map_err(|e| ApiError::invalid_field("kind", e.to_string()))
        })
        .transpose()?;
    let wanted = p
        .state
        .as_deref()
        .map(|s| {
            PartyState::parse(s).ok_or_else(|| {
                ApiError::invalid_field(
                    "state",
                    format!(
                        "unknown state {s:?}; expected applied, admitted, refused or suspended"
                    ),
                )
            })
        })
        .transpose()?;
    let limit = params::page_size("limit", p.limit.as_deref(), DEFAULT_PAGE, MAX_PAGE)?;
    state.read_barrier(&p.consistency).await?;
    let filter = PartyFilter {
        kind,
        state: wanted,
        after: p.after,
        limit,
    };
    let mut conn = state.db.reader().await?;
    let mut page = parties::list(&mut conn, &state.parties.founding, &filter).await?;
    page.items = page.items.into_iter().map(|v| shown(&caller, v)).collect();
    Ok(Json(page))
}

/// `?consistency=` on a single party.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    #[serde(default)]
    #[param(schema_with = consistency_schema)]
    consistency: Consistency,
}

/// `GET /v1/parties/{id}` (any token).
#[utoipa::path(
    get,
    path = "/v1/parties/{id}",
    operation_id = "get_party",
    tag = "parties",
    params(("id" = PartyId, Path, description = "Party id"), ReadParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The party with its history; `contact` as in the list", body = PartyView),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 404, description = "No party with this id", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<PartyView>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let id = party_id(&id)?;
    state.read_barrier(&p.consistency).await?;
    let mut conn = state.db.reader().await?;
    parties::party(&mut conn, &state.parties.founding, &id)
        .await?
        .map(|v| Json(shown(&caller, v)))
        .ok_or_else(|| ApiError::not_found(format!("no party {id}")))
}

/// `{"notes"}` of an admission: what the review found.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdmitBody {
    /// What the review found: at most 2000 characters.
    #[serde(default)]
    pub notes: Option<String>,
}

/// An operator's decision, checked and proposed: the party must be known (404 otherwise,
/// without a Raft entry); the state machine judges the transition.
async fn decide(
    state: &AppState,
    caller: Caller,
    id: &str,
    decision: parties::Decision,
    reason: Option<String>,
) -> Result<Json<PartyWrite>, ApiError> {
    caller.require(&[Role::Operator])?;
    let party_id = party_id(id)?;
    let (field, required) = match decision {
        parties::Decision::Admit => ("notes", false),
        _ => ("reason", true),
    };
    if let Some(text) = &reason {
        text::check(&[Text {
            field,
            value: text,
            max: parties::MAX_REASON_CHARS,
            required,
        }])?;
    }
    // Known is enough here (the state machine judges the transition): a party this replica
    // holds in any state costs no read barrier.
    if standing_of(state, party_id.as_str(), Option::is_some)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!("no party {party_id}")));
    }
    let (at, actor) = (state.clock.now(), caller.actor);
    let cmd = decision_command(decision, party_id.clone(), reason, at, actor);
    let (response, _) = state.propose_as(cmd, caller.credential).await?;
    response?;
    let (_, _, to) = decision.rule();
    Ok(Json(PartyWrite {
        id: party_id,
        state: to,
    }))
}

fn decision_command(
    decision: parties::Decision,
    party_id: PartyId,
    reason: Option<String>,
    at: Timestamp,
    actor: Actor,
) -> CatalogCommand {
    let reason_text = reason.clone().unwrap_or_default();
    match decision {
        parties::Decision::Admit => CatalogCommand::AdmitParty {
            party_id,
            notes: reason,
            at,
            actor,
        },
        parties::Decision::Refuse => CatalogCommand::RefuseParty {
            party_id,
            reason: reason_text,
            at,
            actor,
        },
        parties::Decision::Suspend => CatalogCommand::SuspendParty {
            party_id,
            reason: reason_text,
            at,
            actor,
        },
        parties::Decision::Reinstate => CatalogCommand::ReinstateParty {
            party_id,
            reason: reason_text,
            at,
            actor,
        },
    }
}

/// `POST /v1/parties/{id}/admit` (operator): `applied → admitted`.
#[utoipa::path(
    post,
    path = "/v1/parties/{id}/admit",
    operation_id = "admit_party",
    tag = "parties",
    params(("id" = PartyId, Path, description = "Party id")),
    request_body(
        content = Option<AdmitBody>,
        description = "What the review found; the body may be left out, or be `null` or `{}`",
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Admitted: its tokens act from now on", body = PartyWrite),
        (status = 400, description = "Malformed JSON, or `notes` over 2000 characters or \
            against the text rule", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No party with this id", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: the party is not `applied`", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn admit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<AdmitBody>,
) -> Result<Json<PartyWrite>, ApiError> {
    let decision = parties::Decision::Admit;
    decide(&state, caller, &id, decision, body.notes).await
}

/// `POST /v1/parties/{id}/refuse` (operator): `applied → refused`.
#[utoipa::path(
    post,
    path = "/v1/parties/{id}/refuse",
    operation_id = "refuse_party",
    tag = "parties",
    params(("id" = PartyId, Path, description = "Party id")),
    request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Refused; it may apply again with its own credit code", body = PartyWrite),
        (status = 400, description = "Malformed JSON, or a `reason` that is empty, over 2000 \
            characters or against the text rule", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No party with this id", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: the party is not `applied`", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn refuse(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<PartyWrite>, ApiError> {
    let decision = parties::Decision::Refuse;
    decide(&state, caller, &id, decision, Some(body.reason)).await
}

/// `POST /v1/parties/{id}/suspend` (operator): `admitted → suspended`.
#[utoipa::path(
    post,
    path = "/v1/parties/{id}/suspend",
    operation_id = "suspend_party",
    tag = "parties",
    params(("id" = PartyId, Path, description = "Party id")),
    request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Suspended: it can do nothing new (no listing, update, \
            token or entrustment; a broker acts for nobody) until reinstated", body = PartyWrite),
        (status = 400, description = "Malformed JSON, or a `reason` that is empty, over 2000 \
            characters or against the text rule", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No party with this id", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: the party is not `admitted`", body = ErrorBody),
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
) -> Result<Json<PartyWrite>, ApiError> {
    let decision = parties::Decision::Suspend;
    decide(&state, caller, &id, decision, Some(body.reason)).await
}

/// `POST /v1/parties/{id}/reinstate` (operator): `suspended → admitted`.
#[utoipa::path(
    post,
    path = "/v1/parties/{id}/reinstate",
    operation_id = "reinstate_party",
    tag = "parties",
    params(("id" = PartyId, Path, description = "Party id")),
    request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Reinstated: admitted again", body = PartyWrite),
        (status = 400, description = "Malformed JSON, or a `reason` that is empty, over 2000 \
            characters or against the text rule", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No party with this id", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: the party is not `suspended`", body = ErrorBody),
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
) -> Result<Json<PartyWrite>, ApiError> {
    let decision = parties::Decision::Reinstate;
    decide(&state, caller, &id, decision, Some(body.reason)).await
}
