//! `GET /v1/audit`: the audit chain, in order (regulator, admin).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;
use xchg_protocol::Timestamp;

use super::auth::Caller;
use super::error::{ApiError, BearerErrors, ErrorBody, ReadErrors};
use super::listings::{consistency_schema, query_error};
use super::{AppState, Consistency, params};
use crate::audit::{self, AuditRecord};

/// Most records one call returns; larger `limit`s are clamped to it.
pub const MAX_LIMIT: u32 = 1000;
/// Records returned when no `limit` is given.
pub const DEFAULT_LIMIT: u32 = 100;

/// Query string. Numbers are read by [`params`] (whole numbers; `limit` brought within range,
/// `from` saturating).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// First seq to return (default 1).
    #[param(schema_with = from_schema)]
    from: Option<String>,
    /// How many.
    #[param(schema_with = limit_schema)]
    limit: Option<String>,
    #[serde(default)]
    #[param(schema_with = consistency_schema)]
    consistency: Consistency,
}

fn from_schema() -> utoipa::openapi::schema::Object {
    params::position_integer_schema("First seq to return (default 1).")
}

fn limit_schema() -> utoipa::openapi::schema::Object {
    params::page_size_schema(DEFAULT_LIMIT, MAX_LIMIT)
}

/// One page of audit records.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Records in chain order.
    #[schema(value_type = Vec<AuditRecordSchema>)]
    pub items: Vec<AuditRecord>,
}

/// The JSON form of an [`AuditRecord`], for the OpenAPI document only: the audit module
/// serializes the real type (its content flattened, hashes in hex).
#[derive(utoipa::ToSchema)]
#[schema(as = AuditRecord)]
pub struct AuditRecordSchema {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// The Raft log index of the command.
    pub raft_index: u64,
    /// When (the command's time).
    pub at: Timestamp,
    /// Who.
    pub actor: String,
    /// In which role.
    pub role: String,
    /// What (the command's action name).
    pub action: String,
    /// On what (listing id, token hash, member name).
    pub object_id: String,
    /// `ok`, or `refused:<code>: <message>`.
    pub result: String,
    /// Hash of the previous record, 64 hex digits (zeros for the first).
    pub prev_hash: String,
    /// SHA-256 of the canonical CBOR of the record without `hash`, 64 hex digits.
    pub hash: String,
}

/// `GET /v1/audit?from=&limit=`.
#[utoipa::path(
    get,
    path = "/v1/audit",
    operation_id = "list_audit_records",
    tag = "audit",
    params(AuditParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Audit records from `from` on, in chain order", body = AuditPage),
        (status = 400, description = "An unknown query parameter, or a `from` or `limit` that is \
            not a whole number (`field` names it)", body = ErrorBody),
        (status = 403, description = "Not a regulator or admin token", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(&[Role::Regulator])?;
    let Query(p) = query.map_err(query_error)?;
    let from = p
        .from
        .as_deref()
        .map_or(Ok(1), |f| params::position("from", f))?;
    let limit = params::page_size("limit", p.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    state.read_barrier(&p.consistency).await?;
    let mut conn = state.db.reader().await?;
    // `position` is never negative, and at most i64::MAX: the range binds it as SQLite's i64.
    let items = audit::range(&mut conn, from.unsigned_abs(), limit).await?;
    Ok(Json(AuditPage { items }))
}
