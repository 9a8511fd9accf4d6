//! `GET /v1/audit`: the audit chain, in order (regulator, admin).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;

use super::auth::Caller;
use super::error::ApiError;
use super::listings::query_error;
use super::{AppState, Consistency};
use crate::audit::{self, AuditRecord};

/// Most records one call returns; larger `limit`s are clamped to it.
pub const MAX_LIMIT: u32 = 1000;

/// Query string.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// First seq to return (default 1).
    from: Option<u64>,
    /// How many (default 100, at most 1000).
    limit: Option<u32>,
    #[serde(default)]
    consistency: Consistency,
}

/// One page of audit records.
#[derive(Debug, Serialize)]
pub struct AuditPage {
    /// Records in chain order.
    pub items: Vec<AuditRecord>,
}

/// `GET /v1/audit?from=&limit=`.
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
