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
use super::{AppState, Consistency};
use crate::audit::{self, AuditRecord};

/// Most records one call returns; larger `limit`s are clamped to it.
pub const MAX_LIMIT: u32 = 1000;

/// Query string.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// First seq to return (default 1).
    from: Option<u64>,
    /// How many (default 100, at most 1000).
    limit: Option<u32>,
    #[serde(default)]
    #[param(schema_with = consistency_schema)]
    consistency: Consistency,
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
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 403, description = "Not a regulator or admin token", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(&[Role::Regulator])?;
    let Query(p) = params.map_err(query_error)?;
    state.read_barrier(&p.consistency).await?;
    let limit = p.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    let mut conn = state.db.read.acquire().await?;
    let items = audit::range(&mut conn, p.from.unwrap_or(1), limit).await?;
    Ok(Json(AuditPage { items }))
}
