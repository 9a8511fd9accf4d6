//! `/v1/listings`: submit, update, review, delist, read and search listings.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;
use xchg_protocol::{Classification, ContentId, DeliveryMode, Listing, ListingDraft, Timestamp};

use super::auth::Caller;
use super::error::{ApiError, BearerErrors, BodyErrors, ErrorBody, ProposeErrors, ReadErrors};
use super::idempotency::{IdempotencyHeader, IdempotencyKey};
use super::json::{JsonBody, OptionalJsonBody};
use super::text::{self, Text};
use super::{AppState, CatchUp, Consistency, params};
use crate::catalog::query::{self, ListingView, Page, Search, Sort};
use crate::catalog::tables::listings;
use crate::catalog::{Applied, CatalogCommand, ListingState, Review};
use crate::raft::transport::Credential;

/// Longest accepted reason or review text, in characters.
pub const MAX_REASON_CHARS: usize = 2000;

/// The answer to a listing write.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WriteResult {
    /// Listing id.
    pub id: String,
    /// Version after the write.
    pub version: Option<u32>,
    /// State after the write.
    pub state: Option<ListingState>,
}

impl From<Applied> for WriteResult {
    fn from(a: Applied) -> Self {
        WriteResult {
            id: a.object_id,
            version: a.version,
            state: a.state,
        }
    }
}

/// The listing id a path names; one that is not an id names no listing: 404, as an id the
/// catalog does not hold.
pub(super) fn listing_id(raw: &str) -> Result<ContentId, ApiError> {
    raw.parse().map_err(|e: xchg_protocol::IdError| {
        ApiError::not_found(format!("no listing {raw:?}: {e}"))
    })
}

/// Answers 404 for a listing id the catalog does not hold, before anything is proposed: a
/// command on an unknown listing would cost a Raft entry and an audit record only to be refused
/// (issue #12). This replica may not yet have applied the write that created the listing, so an
/// id it lacks is looked up again after a read barrier. A listing that appears or goes between
/// this check and the command's entry is still decided by the state machine.
async fn require_known(state: &AppState, id: &ContentId) -> Result<(), ApiError> {
    let look = || async {
        let mut conn = state.db.reader().await?;
        Ok(listings::exists(&mut conn, id).await?)
    };
    if state
        .look_again_if(CatchUp::Always, look, |held| *held)
        .await?
    {
        return Ok(());
    }
    Err(ApiError::not_found(format!("no listing {id}")))
}

async fn run(
    state: &AppState,
    credential: Credential,
    cmd: CatalogCommand,
) -> Result<WriteResult, ApiError> {
    let (response, _index) = state.propose_as(cmd, credential).await?;
    Ok(response?.into())
}

/// `POST /v1/listings` (provider): submit version 1 of a listing for review.
#[utoipa::path(
    post,
    path = "/v1/listings",
    operation_id = "submit_listing",
    tag = "listings",
    params(IdempotencyHeader),
    request_body = ListingDraft,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Submitted: version 1, state `submitted`", body = WriteResult),
        (status = 400, description = "Malformed JSON, or fields that break listing rules \
            (`field` names the first, `details` lists every one)", body = ErrorBody),
        (status = 403, description = "Not a provider token, a token bound to another party \
            than `provider.id`, or a provider token bound to no party; `party_not_admitted`: \
            the party named, or the token's, is not admitted (unknown, applied, refused or \
            suspended); `not_entrusted`: a broker's token naming a party that has not \
            entrusted it with `submit_listing` (none, revoked, expired, other acts)",
            body = ErrorBody),
        (status = 409, description = "The same listing already exists", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    JsonBody(draft): JsonBody<ListingDraft>,
) -> Result<(StatusCode, Json<WriteResult>), ApiError> {
    caller.require(&[Role::Provider])?;
    draft.validate()?;
    let now = state.clock.now();
    let cmd = CatalogCommand::SubmitListing {
        listing: Box::new(Listing::first_version(
            draft.clone(),
            state.config.zone.id.clone(),
            now,
        )),
        actor: caller.actor.clone(),
    };
    // The party named must be admitted; another party's name only as its broker.
    let cmd = idempotency.wrap(
        &draft,
        super::parties::act_for(&state, &caller, cmd).await?,
        now,
    );
    let result = run(&state, caller.credential, cmd).await?;
    Ok((StatusCode::CREATED, Json(result)))
}

/// `PUT /v1/listings/{id}` (its provider): a new version, which goes back to review.
#[utoipa::path(
    put,
    path = "/v1/listings/{id}",
    operation_id = "update_listing",
    tag = "listings",
    params(("id" = ContentId, Path, description = "Listing id"), IdempotencyHeader),
    request_body = ListingDraft,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated: the new version, back in review", body = WriteResult),
        (status = 400, description = "Malformed JSON, or fields that break listing rules \
            (`field` names the first, `details` lists every one)", body = ErrorBody),
        (status = 403, description = "Not a provider token, not the listing's submitter, a \
            token bound to another party than `provider.id`, or a provider token bound to no \
            party; `party_not_admitted`: the party named, or the token's, is not admitted; \
            `not_entrusted`: a broker's token naming a party that has not entrusted it with \
            `update_listing`", body = ErrorBody),
        (status = 404, description = "No listing with this id", body = ErrorBody),
        (status = 409, description = "The listing's state does not allow an update", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    Path(id): Path<String>,
    JsonBody(draft): JsonBody<ListingDraft>,
) -> Result<Json<WriteResult>, ApiError> {
    caller.require(&[Role::Provider])?;
    let listing_id = listing_id(&id)?;
    draft.validate()?;
    require_known(&state, &listing_id).await?;
    let now = state.clock.now();
    let cmd = CatalogCommand::UpdateListing {
        listing_id,
        draft: Box::new(draft.clone()),
        at: now,
        actor: caller.actor.clone(),
    };
    // Without the party rule, a bound token could move its own listing into another party's
    // name; a broker updates only under an entrustment.
    let cmd = idempotency.wrap(
        &draft,
        super::parties::act_for(&state, &caller, cmd).await?,
        now,
    );
    Ok(Json(run(&state, caller.credential, cmd).await?))
}

/// A review, rejection or delisting text: at most [`MAX_REASON_CHARS`] characters under the
/// text rule.
fn review_text<'a>(field: &'a str, value: &'a str, required: bool) -> Text<'a> {
    Text {
        field,
        value,
        max: MAX_REASON_CHARS,
        required,
    }
}

/// `POST /v1/listings/{id}/approve` (operator): no body, `null`, `{}` or a review record.
#[utoipa::path(
    post,
    path = "/v1/listings/{id}/approve",
    operation_id = "approve_listing",
    tag = "listings",
    params(("id" = ContentId, Path, description = "Listing id")),
    request_body(
        content = Option<Review>,
        description = "What the review found; the body may be left out, or be `null` or `{}`",
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Approved: state `listed`", body = WriteResult),
        (status = 400, description = "Malformed JSON, or a review text over 2000 characters or \
            against the text rule (`field` names it)", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No listing with this id", body = ErrorBody),
        (status = 409, description = "The listing is not awaiting review", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJsonBody(review): OptionalJsonBody<Review>,
) -> Result<Json<WriteResult>, ApiError> {
    caller.require(&[Role::Operator])?;
    let listing_id = listing_id(&id)?;
    let texts: Vec<Text<'_>> = [
        ("compliance_review", &review.compliance_review),
        ("security_assessment", &review.security_assessment),
        ("notes", &review.notes),
    ]
    .into_iter()
    .filter_map(|(field, value)| Some(review_text(field, value.as_deref()?, false)))
    .collect();
    text::check(&texts)?;
    require_known(&state, &listing_id).await?;
    let cmd = CatalogCommand::ApproveListing {
        listing_id,
        review,
        at: state.clock.now(),
        actor: caller.actor,
    };
    Ok(Json(run(&state, caller.credential, cmd).await?))
}

/// `{"reason": "..."}`.
#[derive(Debug, serde::Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why: 1 to 2000 characters.
    pub reason: String,
}

/// A command that withdraws or refuses a listing for a stated reason.
type ReasonCommand = fn(ContentId, String, Timestamp, crate::catalog::Actor) -> CatalogCommand;

/// Shared body of reject and delist: operator only, a non-empty reason, one command.
async fn with_reason(
    state: AppState,
    caller: Caller,
    id: &str,
    body: ReasonBody,
    command: ReasonCommand,
) -> Result<Json<WriteResult>, ApiError> {
    caller.require(&[Role::Operator])?;
    let listing_id = listing_id(id)?;
    text::check(&[review_text("reason", &body.reason, true)])?;
    require_known(&state, &listing_id).await?;
    let cmd = command(listing_id, body.reason, state.clock.now(), caller.actor);
    Ok(Json(run(&state, caller.credential, cmd).await?))
}

/// `POST /v1/listings/{id}/reject` (operator).
#[utoipa::path(
    post,
    path = "/v1/listings/{id}/reject",
    operation_id = "reject_listing",
    tag = "listings",
    params(("id" = ContentId, Path, description = "Listing id")),
    request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Rejected: state `rejected`", body = WriteResult),
        (status = 400, description = "Malformed JSON, or a `reason` that is empty, over 2000 \
            characters or against the text rule", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No listing with this id", body = ErrorBody),
        (status = 409, description = "The listing is not awaiting review", body = ErrorBody),
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
) -> Result<Json<WriteResult>, ApiError> {
    with_reason(state, caller, &id, body, |listing_id, reason, at, actor| {
        CatalogCommand::RejectListing {
            listing_id,
            reason,
            at,
            actor,
        }
    })
    .await
}

/// `POST /v1/listings/{id}/delist` (operator).
#[utoipa::path(
    post,
    path = "/v1/listings/{id}/delist",
    operation_id = "delist_listing",
    tag = "listings",
    params(("id" = ContentId, Path, description = "Listing id")),
    request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Withdrawn: state `delisted`", body = WriteResult),
        (status = 400, description = "Malformed JSON, or a `reason` that is empty, over 2000 \
            characters or against the text rule", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No listing with this id", body = ErrorBody),
        (status = 409, description = "The listing is not listed", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn delist(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<WriteResult>, ApiError> {
    with_reason(state, caller, &id, body, |listing_id, reason, at, actor| {
        CatalogCommand::DelistListing {
            listing_id,
            reason,
            at,
            actor,
        }
    })
    .await
}

/// `?consistency=` on single reads.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    /// `local` to skip the read index.
    #[serde(default)]
    #[param(schema_with = consistency_schema)]
    pub consistency: Consistency,
}

/// The schema of `?consistency=`, shared by every read that takes it.
pub fn consistency_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["linearizable", "local"]))
        .default(Some("linearizable".into()))
        .description(Some(
            "`linearizable` (default) reads through the leader's read index; `local` reads this \
             node's replica, possibly stale, and works without a leader",
        ))
        .build()
}

/// Maps a query-string rejection to a 400 naming the problem.
pub fn query_error(e: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
}

/// `GET /v1/listings/{id}` (any role).
#[utoipa::path(
    get,
    path = "/v1/listings/{id}",
    operation_id = "get_listing",
    tag = "listings",
    params(("id" = ContentId, Path, description = "Listing id"), ReadParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The listing with its history and provenance", body = ListingView),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 404, description = "No listing with this id", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<ListingView>, ApiError> {
    let _ = caller;
    let Query(params) = params.map_err(query_error)?;
    listing_id(&id)?;
    state.read_barrier(&params.consistency).await?;
    let mut conn = state.db.reader().await?;
    query::get(&mut conn, &id, &state.config.zone.id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no listing {id}")))
}

/// The search query string.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// Free text (Chinese or English), whitespace-separated terms that must all match; at most
    /// 200 characters.
    #[param(max_length = 200)]
    q: Option<String>,
    /// Lifecycle state.
    #[param(value_type = Option<ListingState>)]
    state: Option<String>,
    /// Category, e.g. `credit`.
    category: Option<String>,
    /// Classification level.
    #[param(value_type = Option<Classification>)]
    classification: Option<String>,
    /// A delivery mode the listing offers.
    #[param(value_type = Option<DeliveryMode>)]
    delivery_mode: Option<String>,
    /// `local` (this zone), `external` (any other zone), an exchange id, or a zone id.
    origin: Option<String>,
    /// `relevance` (the default with `q`: best match first) or `newest` (the default without
    /// `q`: the most recently held first). Without `q` every match is equally relevant, so
    /// `relevance` orders newest first.
    #[param(schema_with = sort_schema)]
    sort: Option<String>,
    /// Page size.
    #[param(schema_with = page_size_schema)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page of the same search.
    #[param(schema_with = search_cursor_schema)]
    cursor: Option<String>,
    #[serde(default)]
    #[param(schema_with = consistency_schema)]
    consistency: Consistency,
}

fn sort_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["relevance", "newest"]))
        .description(Some(
            "`relevance` (default with `q`) or `newest` (default without `q`)",
        ))
        .build()
}

fn search_cursor_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some("^([0-9]+|r\\.[A-Za-z0-9_-]+)$"))
        .max_length(Some(crate::search::CURSOR_MAX))
        .description(Some(
            "The `next_cursor` of the previous page of the same search (same `q`, filters and \
             `sort`): decimal digits in newest-first order, `r.` and base64url in relevance \
             order, which carries the statistics the first page was scored with so that pages \
             stay in one order while listings change.",
        ))
        .build()
}

fn one_of<T: for<'de> Deserialize<'de>>(
    field: &str,
    value: &Option<String>,
    expected: &str,
) -> Result<(), ApiError> {
    if let Some(v) = value {
        serde_json::from_value::<T>(serde_json::Value::String(v.clone())).map_err(|_| {
            ApiError::invalid_field(
                field,
                format!("unknown {field} {v:?}; expected one of {expected}"),
            )
        })?;
    }
    Ok(())
}

/// Parses the `limit` and `cursor` query parameters of a paged list (see [`params`]): `limit`
/// saturates here and is brought within 1 to [`query::MAX_PAGE`] by the query; a `cursor`
/// beyond every record finds nothing.
///
/// # Errors
/// A 400 naming the parameter that is not a whole number.
pub fn paging(
    limit: &Option<String>,
    cursor: &Option<String>,
) -> Result<(Option<u32>, Option<i64>), ApiError> {
    let limit = limit
        .as_deref()
        .map(|l| params::page_size("limit", Some(l), query::DEFAULT_PAGE, query::MAX_PAGE))
        .transpose()?;
    let cursor = cursor
        .as_deref()
        .map(|c| params::position("cursor", c))
        .transpose()?;
    Ok((limit, cursor))
}

/// The schema of a paged list's `limit`.
pub fn page_size_schema() -> utoipa::openapi::schema::Object {
    params::page_size_schema(query::DEFAULT_PAGE, query::MAX_PAGE)
}

/// The schema of a paged list's `cursor`.
pub fn cursor_schema() -> utoipa::openapi::schema::Object {
    params::position_schema("The `next_cursor` of the previous page.")
}

/// `GET /v1/listings?q=&state=&category=&classification=&delivery_mode=&origin=&limit=&cursor=`.
#[utoipa::path(
    get,
    path = "/v1/listings",
    operation_id = "search_listings",
    tag = "listings",
    params(SearchParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of matches, with the exact total and facet counts", body = Page),
        (status = 400, description = "An unknown parameter or value (`field` names it)", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let _ = caller;
    let Query(p) = params.map_err(query_error)?;
    if let Some(s) = &p.state {
        ListingState::parse(s).ok_or_else(|| {
            ApiError::invalid_field(
                "state",
                format!(
                    "unknown state {s:?}; expected submitted, listed, rejected, delisted or recognised"
                ),
            )
        })?;
    }
    one_of::<Classification>(
        "classification",
        &p.classification,
        "public, general, important, core",
    )?;
    one_of::<DeliveryMode>(
        "delivery_mode",
        &p.delivery_mode,
        "file, api, sandbox, privacy_computing, model_output, verification",
    )?;
    let limit = p
        .limit
        .as_deref()
        .map(|l| params::page_size("limit", Some(l), query::DEFAULT_PAGE, query::MAX_PAGE))
        .transpose()?;
    if let Some(q) = &p.q
        && q.chars().count() > 200
    {
        return Err(ApiError::invalid_field("q", "at most 200 characters"));
    }
    let q = p.q.filter(|q| !q.trim().is_empty());
    let sort = match p.sort.as_deref() {
        None if q.is_some() => Sort::Relevance,
        None => Sort::Newest,
        Some("relevance") => Sort::Relevance,
        Some("newest") => Sort::Newest,
        Some(other) => {
            return Err(ApiError::invalid_field(
                "sort",
                format!("unknown sort {other:?}; expected relevance or newest"),
            ));
        }
    };
    state.read_barrier(&p.consistency).await?;
    let clock = {
        let mut conn = state.db.reader().await?;
        crate::catalog::tables::listings::clock(&mut conn).await?
    };
    match p.consistency {
        Consistency::Linearizable => state
            .search
            .wait_covers(clock, crate::search::COVER_WAIT)
            .await
            .map_err(search_error)?,
        // What this replica holds, if the index takes it in within a moment; otherwise (the
        // index rebuilding) what the index holds, `index_lag` saying how far behind.
        Consistency::Local => {
            let _ = state
                .search
                .wait_covers(clock, crate::search::LOCAL_WAIT)
                .await;
        }
    }
    let search = Search {
        q,
        sort,
        state: p.state,
        category: p.category,
        classification: p.classification,
        delivery_mode: p.delivery_mode,
        origin: p.origin,
        limit,
        cursor: p.cursor,
    };
    let page = crate::search::search(
        &state.search,
        &state.db,
        search,
        state.config.zone.id.clone(),
        clock,
    )
    .await
    .map_err(search_error)?;
    Ok(Json(page))
}

fn search_error(e: crate::search::SearchError) -> ApiError {
    use crate::search::SearchError;
    match e {
        SearchError::Cursor(message) => ApiError::invalid_field("cursor", message),
        SearchError::Behind { .. } => ApiError::unavailable(&format!(
            "{e}; try again, or read with consistency=local (index_lag says how far behind)"
        )),
        SearchError::Catalog(e) => e.into(),
        other => ApiError::internal(other),
    }
}
