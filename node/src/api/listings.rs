//! `/v1/listings`: submit, update, review, delist, read and search listings.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;
use xchg_protocol::{Classification, ContentId, DeliveryMode, Listing, ListingDraft, Timestamp};

use super::auth::Caller;
use super::error::ApiError;
use super::json::{JsonBody, OptionalJsonBody};
use super::{AppState, Consistency};
use crate::catalog::query::{self, ListingView, Page, Search};
use crate::catalog::{Applied, CatalogCommand, ListingState, Review};

/// Longest accepted reason or review text, in characters.
const MAX_REASON_CHARS: usize = 2000;

/// The answer to a listing write.
#[derive(Debug, Serialize)]
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

fn listing_id(raw: &str) -> Result<ContentId, ApiError> {
    raw.parse().map_err(|e: xchg_protocol::IdError| {
        ApiError::not_found(format!("no listing {raw:?}: {e}"))
    })
}

async fn run(state: &AppState, cmd: CatalogCommand) -> Result<WriteResult, ApiError> {
    let (response, _index) = state.propose(cmd).await?;
    Ok(response?.into())
}

/// Refuses a draft in another party's name from a token bound to a party.
fn require_party(caller: &Caller, draft: &ListingDraft) -> Result<(), ApiError> {
    match &caller.party {
        Some(party) if draft.provider.id.as_str() != party => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this token acts for {party}; it cannot submit or update listings for {}",
                draft.provider.id
            ),
        )
        .with_field("provider.id")),
        _ => Ok(()),
    }
}

/// `POST /v1/listings` (provider): submit version 1 of a listing for review.
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(draft): JsonBody<ListingDraft>,
) -> Result<(StatusCode, Json<WriteResult>), ApiError> {
    caller.require(&[Role::Provider])?;
    draft.validate()?;
    require_party(&caller, &draft)?;
    let listing = Listing::first_version(draft, state.config.zone.id.clone(), Timestamp::now());
    let result = run(
        &state,
        CatalogCommand::SubmitListing {
            listing: Box::new(listing),
            actor: caller.actor,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(result)))
}

/// `PUT /v1/listings/{id}` (its provider): a new version, which goes back to review.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(draft): JsonBody<ListingDraft>,
) -> Result<Json<WriteResult>, ApiError> {
    caller.require(&[Role::Provider])?;
    let listing_id = listing_id(&id)?;
    draft.validate()?;
    // Without this, a bound token could move its own listing into another party's name.
    require_party(&caller, &draft)?;
    let cmd = CatalogCommand::UpdateListing {
        listing_id,
        draft: Box::new(draft),
        at: Timestamp::now(),
        actor: caller.actor,
    };
    Ok(Json(run(&state, cmd).await?))
}

fn check_text(field: &str, value: &str, required: bool) -> Result<(), ApiError> {
    if required && value.trim().is_empty() {
        return Err(ApiError::invalid_field(field, "must not be empty"));
    }
    let n = value.chars().count();
    if n > MAX_REASON_CHARS {
        return Err(ApiError::invalid_field(
            field,
            format!("{n} characters, at most {MAX_REASON_CHARS} allowed"),
        ));
    }
    Ok(())
}

/// `POST /v1/listings/{id}/approve` (operator): body `{}` or a review record.
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJsonBody(review): OptionalJsonBody<Review>,
) -> Result<Json<WriteResult>, ApiError> {
    caller.require(&[Role::Operator])?;
    let listing_id = listing_id(&id)?;
    for (field, value) in [
        ("compliance_review", &review.compliance_review),
        ("security_assessment", &review.security_assessment),
        ("notes", &review.notes),
    ] {
        if let Some(v) = value {
            check_text(field, v, false)?;
        }
    }
    let cmd = CatalogCommand::ApproveListing {
        listing_id,
        review,
        at: Timestamp::now(),
        actor: caller.actor,
    };
    Ok(Json(run(&state, cmd).await?))
}

/// `{"reason": "..."}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why.
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
    check_text("reason", &body.reason, true)?;
    let cmd = command(listing_id, body.reason, Timestamp::now(), caller.actor);
    Ok(Json(run(&state, cmd).await?))
}

/// `POST /v1/listings/{id}/reject` (operator).
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
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    /// `local` to skip the read index.
    #[serde(default)]
    pub consistency: Consistency,
}

/// Maps a query-string rejection to a 400 naming the problem.
pub fn query_error(e: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
}

/// `GET /v1/listings/{id}` (any role).
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
    let mut conn = state.db.read.acquire().await?;
    query::get(&mut conn, &id, &state.config.zone.id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no listing {id}")))
}

/// The search query string.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    q: Option<String>,
    state: Option<String>,
    category: Option<String>,
    classification: Option<String>,
    delivery_mode: Option<String>,
    origin: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    #[serde(default)]
    consistency: Consistency,
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

/// Parses the `limit` and `cursor` query parameters of a paged list.
///
/// # Errors
/// A 400 naming the parameter that is not a number.
pub fn paging(
    limit: &Option<String>,
    cursor: &Option<String>,
) -> Result<(Option<u32>, Option<i64>), ApiError> {
    let limit = match limit {
        Some(l) => Some(l.parse::<u32>().map_err(|_| {
            ApiError::invalid_field(
                "limit",
                format!(
                    "expected a whole number from 1 to {}, got {l:?}",
                    query::MAX_PAGE
                ),
            )
        })?),
        None => None,
    };
    let cursor =
        match cursor {
            Some(c) => Some(c.parse::<i64>().map_err(|_| {
                ApiError::invalid_field("cursor", "not a cursor returned by this API")
            })?),
            None => None,
        };
    Ok((limit, cursor))
}

/// `GET /v1/listings?q=&state=&category=&classification=&delivery_mode=&origin=&limit=&cursor=`.
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
    let (limit, cursor) = paging(&p.limit, &p.cursor)?;
    if let Some(q) = &p.q
        && q.chars().count() > 200
    {
        return Err(ApiError::invalid_field("q", "at most 200 characters"));
    }
    state.read_barrier(&p.consistency).await?;
    let search = Search {
        q: p.q.filter(|q| !q.trim().is_empty()),
        state: p.state,
        category: p.category,
        classification: p.classification,
        delivery_mode: p.delivery_mode,
        origin: p.origin,
        limit,
        cursor,
    };
    let mut conn = state.db.read.acquire().await?;
    Ok(Json(
        query::search(&mut conn, &search, &state.config.zone.id).await?,
    ))
}
