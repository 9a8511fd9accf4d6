//! `/v1/complaints`: complaints (投诉举报) and the regulator's supervision of them. Any token
//! files one against a listing or a party of the zone; the regulator investigates it, resolves
//! or dismisses it, and may suspend the listing it is against (and lift the suspension). Every
//! step is a command through the zone's Raft, in the audit chain and the complaint's history.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;

use super::auth::Caller;
use super::error::{ApiError, BearerErrors, BodyErrors, ErrorBody, ProposeErrors, ReadErrors};
use super::idempotency::{IdempotencyHeader, IdempotencyKey};
use super::json::JsonBody;
use super::listings::{ReadParams, consistency_schema, query_error};
use super::text::{self, Text};
use super::{AppState, Consistency, params};
use crate::catalog::complaints::{
    self, ComplaintState, ComplaintView, MAX_CATEGORY_CHARS, MAX_NOTE_CHARS, MAX_TEXT_CHARS,
    NewComplaint, Outcome, Step, TargetKind,
};
use crate::catalog::tables::complaints::{self as table, ComplaintFilter};
use crate::catalog::{CatalogCommand, Refusal};

/// Whether `caller` sees every complaint of the zone (the regulator, operators, admins) or
/// only those it filed.
fn sees_all(caller: &Caller) -> bool {
    matches!(
        caller.actor.role,
        Role::Regulator | Role::Operator | Role::Admin
    )
}

/// Refuses `caller` complaint `c` unless it sees all or filed it.
fn may_see(caller: &Caller, c: &ComplaintView) -> Result<(), ApiError> {
    if sees_all(caller) || c.filed_by == caller.actor.id {
        return Ok(());
    }
    Err(Refusal::Forbidden(format!(
        "complaint {} was filed by another: a complainant sees its own complaints, the \
         regulator, operators and admins all",
        c.id
    ))
    .into())
}

/// Complaint `id` with its history after the read point `written_at` (0: after a read
/// barrier).
async fn read(state: &AppState, id: u64, written_at: u64) -> Result<ComplaintView, ApiError> {
    state.applied(written_at).await?;
    let mut conn = state.db.reader().await?;
    complaints::complaint(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no complaint {id}")))
}

/// The answer to a complaint filed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ComplaintWrite {
    /// Its number.
    pub id: u64,
    /// `received`.
    pub state: ComplaintState,
}

/// `POST /v1/complaints` (any token).
#[utoipa::path(
    post,
    path = "/v1/complaints",
    operation_id = "file_complaint",
    tag = "supervision",
    params(IdempotencyHeader),
    request_body = NewComplaint,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Filed (`received`), for the regulator. Any token may \
            file one; the complainant is the token's actor (its party, or `token:<8 hex>`), \
            who alone besides the regulator, operators and admins reads it", body = ComplaintWrite),
        (status = 400, description = "Malformed JSON, an unknown field or target `kind` (only \
            `listing` and `party`); a `target.id` that is not a listing id (for `listing`) or \
            a party id (for `party`); a `text` that is empty, over 4000 characters or against \
            the text rule; a `category` that is empty, over 64 characters or against the text \
            rule (`invalid_field` naming it)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such listing, party or order in this zone \
            (recorded in the audit chain)", body = ErrorBody),
        (status = 503, description = "`complaints_full`: the complainant has 100 complaints \
            open; or no Raft leader answered in time", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn file(
    State(state): State<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    JsonBody(body): JsonBody<NewComplaint>,
) -> Result<(StatusCode, Json<ComplaintWrite>), ApiError> {
    let mut texts = vec![Text {
        field: "text",
        value: &body.text,
        max: MAX_TEXT_CHARS,
        required: true,
    }];
    if let Some(category) = &body.category {
        texts.push(Text {
            field: "category",
            value: category,
            max: MAX_CATEGORY_CHARS,
            required: true,
        });
    }
    text::check(&texts)?;
    complaints::shape(&body).map_err(|(field, why)| ApiError::invalid_field(field, why))?;
    let at = state.clock.now();
    let cmd = idempotency.wrap(
        &body,
        CatalogCommand::FileComplaint {
            complaint: Box::new(body.clone()),
            at,
            actor: caller.actor.clone(),
        },
        at,
    );
    let (response, index) = state.propose_as(cmd, caller.credential).await?;
    let object = response?.object_id;
    let id = object
        .strip_prefix("complaint:")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ApiError::internal(format!("unexpected object {object:?}")))?;
    let c = read(&state, id, index).await?;
    Ok((
        StatusCode::CREATED,
        Json(ComplaintWrite { id, state: c.state }),
    ))
}

/// `GET /v1/complaints/{id}` (the complainant; regulator, operator, admin).
#[utoipa::path(
    get,
    path = "/v1/complaints/{id}",
    operation_id = "get_complaint",
    tag = "supervision",
    params(("id" = u64, Path, description = "Complaint number"), ReadParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The complaint with its history: every step, its actor \
            and note", body = ComplaintView),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 403, description = "Another complainant's complaint (a complainant sees its \
            own; the regulator, operators and admins all)", body = ErrorBody),
        (status = 404, description = "No complaint with this number", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<ComplaintView>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let id = params::number_in_path("complaint", &id)?;
    state.read_barrier(&p.consistency).await?;
    let c = read(&state, id, 0).await?;
    may_see(&caller, &c)?;
    Ok(Json(c))
}

/// Most complaints one page lists.
pub const MAX_PAGE: u32 = 100;
/// Complaints listed when no `limit` is given.
pub const DEFAULT_PAGE: u32 = 50;

/// The query string of `GET /v1/complaints`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only complaints in this state.
    #[param(value_type = Option<ComplaintState>)]
    state: Option<String>,
    /// Only complaints against this kind of target.
    #[param(value_type = Option<TargetKind>)]
    target_kind: Option<String>,
    /// Only complaints against this target id (at most 128 characters).
    #[param(max_length = 128)]
    target_id: Option<String>,
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

/// A page of complaints, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ComplaintPage {
    /// The complaints, without their history (`GET /v1/complaints/{id}` has it).
    pub items: Vec<ComplaintView>,
    /// Pass as `before` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// `GET /v1/complaints?state=&target_kind=&target_id=&limit=&before=`.
#[utoipa::path(
    get,
    path = "/v1/complaints",
    operation_id = "list_complaints",
    tag = "supervision",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page, newest first: the regulator, operators and \
            admins see every complaint of the zone, any other token those it filed",
            body = ComplaintPage),
        (status = 400, description = "An unknown parameter (`invalid_query`); an unknown \
            `state` or `target_kind`, a `target_id` over 128 characters, or a `limit` or \
            `before` that is not a whole number (`invalid_field` naming it)", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<ComplaintPage>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let wanted = p
        .state
        .as_deref()
        .map(|s| {
            ComplaintState::parse(s).ok_or_else(|| {
                ApiError::invalid_field(
                    "state",
                    format!(
                        "unknown state {s:.40?}; expected received, investigating, resolved or \
                         dismissed"
                    ),
                )
            })
        })
        .transpose()?;
    let kind = p
        .target_kind
        .as_deref()
        .map(|s| {
            TargetKind::parse(s).ok_or_else(|| {
                ApiError::invalid_field(
                    "target_kind",
                    format!("unknown target kind {s:.40?}; expected listing, party or order"),
                )
            })
        })
        .transpose()?;
    if p.target_id
        .as_deref()
        .is_some_and(|t| t.chars().count() > complaints::MAX_TARGET_CHARS)
    {
        return Err(ApiError::invalid_field(
            "target_id",
            format!("at most {} characters", complaints::MAX_TARGET_CHARS),
        ));
    }
    let before = p
        .before
        .as_deref()
        .map(|b| params::whole_number("before", b))
        .transpose()?;
    let limit = params::page_size("limit", p.limit.as_deref(), DEFAULT_PAGE, MAX_PAGE)?;
    let filter = ComplaintFilter {
        state: wanted,
        filed_by: (!sees_all(&caller)).then(|| caller.actor.id.clone()),
        target_kind: kind,
        target_id: p.target_id,
        before,
    };
    state.read_barrier(&p.consistency).await?;
    let mut conn = state.db.reader().await?;
    let mut items = table::list(&mut conn, &filter, i64::from(limit) + 1).await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_before = more.then(|| items.last().map(|c| c.id)).flatten();
    Ok(Json(ComplaintPage { items, next_before }))
}

/// `{"note": "..."}`: what the regulator found or did, 1 to 2000 characters.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    /// 1 to 2000 characters, kept in the complaint's history.
    #[schema(min_length = 1, max_length = 2000)]
    pub note: String,
}

/// `{"outcome": "resolved" | "dismissed", "note": "..."}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// How the complaint is closed.
    pub outcome: Outcome,
    /// 1 to 2000 characters, kept in the complaint's history.
    #[schema(min_length = 1, max_length = 2000)]
    pub note: String,
}

/// A regulator's step, proposed; the state machine judges it.
async fn act(
    state: &AppState,
    caller: Caller,
    id: &str,
    step: Step,
    note: String,
) -> Result<Json<ComplaintView>, ApiError> {
    caller.require(&[Role::Regulator])?;
    let id = params::number_in_path("complaint", id)?;
    text::check(&[Text {
        field: "note",
        value: &note,
        max: MAX_NOTE_CHARS,
        required: true,
    }])?;
    let cmd = CatalogCommand::ActOnComplaint {
        complaint_id: id,
        step,
        note,
        at: state.clock.now(),
        actor: caller.actor,
    };
    let (response, index) = state.propose_as(cmd, caller.credential).await?;
    response?;
    Ok(Json(read(state, id, index).await?))
}

/// `POST /v1/complaints/{id}/investigate` (regulator): `received → investigating`.
#[utoipa::path(
    post,
    path = "/v1/complaints/{id}/investigate",
    operation_id = "investigate_complaint",
    tag = "supervision",
    params(("id" = u64, Path, description = "Complaint number")),
    request_body = NoteBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Investigating; the note is in its history", body = ComplaintView),
        (status = 400, description = "Malformed JSON, or a `note` that is empty, over 2000 \
            characters or against the text rule", body = ErrorBody),
        (status = 403, description = "Not a regulator (or admin) token", body = ErrorBody),
        (status = 404, description = "No complaint with this number", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: not `received`", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn investigate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<NoteBody>,
) -> Result<Json<ComplaintView>, ApiError> {
    act(&state, caller, &id, Step::Investigate, body.note).await
}

/// `POST /v1/complaints/{id}/resolve` (regulator): `received | investigating → resolved |
/// dismissed`.
#[utoipa::path(
    post,
    path = "/v1/complaints/{id}/resolve",
    operation_id = "resolve_complaint",
    tag = "supervision",
    params(("id" = u64, Path, description = "Complaint number")),
    request_body = ResolveBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Closed as `resolved` or `dismissed`; the note is in its \
            history. A listing suspended under it stays suspended until lifted", body = ComplaintView),
        (status = 400, description = "Malformed JSON, an `outcome` other than `resolved` or \
            `dismissed`, or a `note` that is empty, over 2000 characters or against the text \
            rule", body = ErrorBody),
        (status = 403, description = "Not a regulator (or admin) token", body = ErrorBody),
        (status = 404, description = "No complaint with this number", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: already resolved or dismissed",
            body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ResolveBody>,
) -> Result<Json<ComplaintView>, ApiError> {
    act(&state, caller, &id, Step::Close(body.outcome), body.note).await
}

/// `POST /v1/complaints/{id}/suspend-listing` (regulator).
#[utoipa::path(
    post,
    path = "/v1/complaints/{id}/suspend-listing",
    operation_id = "suspend_listing",
    tag = "supervision",
    params(("id" = u64, Path, description = "Complaint number")),
    request_body = NoteBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The listing the complaint is against is `suspended`: it \
            leaves search as listed, its delisting is announced to the exchanges that \
            recognised it (reason `suspended under complaint <id>: <note>`, PROTOCOL.md 4.4), \
            applications for it and approvals of them are refused `listing_suspended`, usage \
            of its authorisations `listing_not_listed`, its provider cannot update it. The \
            complaint names it in `suspended_listing`", body = ComplaintView),
        (status = 400, description = "Malformed JSON, or a `note` that is empty, over 2000 \
            characters or against the text rule", body = ErrorBody),
        (status = 403, description = "Not a regulator (or admin) token", body = ErrorBody),
        (status = 404, description = "No complaint with this number", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: the complaint is closed, or is \
            not against a listing, or the listing is a copy recognised from another zone \
            (suspended at its origin), or is not `listed`", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn suspend_listing(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<NoteBody>,
) -> Result<Json<ComplaintView>, ApiError> {
    act(&state, caller, &id, Step::SuspendListing, body.note).await
}

/// `POST /v1/complaints/{id}/lift-suspension` (regulator).
#[utoipa::path(
    post,
    path = "/v1/complaints/{id}/lift-suspension",
    operation_id = "lift_listing_suspension",
    tag = "supervision",
    params(("id" = u64, Path, description = "Complaint number")),
    request_body = NoteBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The listing suspended under the complaint is `listed` \
            again in this zone (whatever the complaint's state): applications are taken. The \
            exchanges that received its delisting keep their copy delisted (a delisting is \
            final, PROTOCOL.md 4.4)", body = ComplaintView),
        (status = 400, description = "Malformed JSON, or a `note` that is empty, over 2000 \
            characters or against the text rule", body = ErrorBody),
        (status = 403, description = "Not a regulator (or admin) token", body = ErrorBody),
        (status = 404, description = "No complaint with this number", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: no listing is suspended under \
            this complaint", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn lift_suspension(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<NoteBody>,
) -> Result<Json<ComplaintView>, ApiError> {
    act(&state, caller, &id, Step::LiftSuspension, body.note).await
}
