//! `GET /v1/audit`: the audit chain, in order (regulator, admin); `GET /v1/audit/head` and
//! the proofs: the chain as a Merkle tree, its signed head and proofs (PROTOCOL.md 12, any
//! role).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;
use xchg_protocol::Timestamp;
use xchg_protocol::application::SignedMessage;
use xchg_protocol::tree_head::TreeHead;

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

/// `GET /v1/audit/head`: a signed tree head (PROTOCOL.md 12.3). Hashes, keys and signatures in
/// lowercase hex.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignedTreeHeadJson {
    /// The zone whose audit log it is.
    pub zone: String,
    /// Leaves (audit records) in the tree: the records with seq 1 to `size`.
    pub size: u64,
    /// The tree's root (RFC 9162 2.1.1), 64 hex digits; for size 0, SHA-256 of nothing.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub root_hash: String,
    /// When the node signed it (RFC 3339 in JSON, milliseconds since the Unix epoch in the
    /// signed CBOR).
    pub timestamp: Timestamp,
    /// The signing node's key, 64 hex digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub signer: String,
    /// Its ed25519 signature over `xchg/v1/tree-head\0` followed by the canonical CBOR of the
    /// head (`zone`, `size`, `root_hash`, `timestamp`), 128 hex digits.
    #[schema(pattern = "^[0-9a-f]{128}$")]
    pub signature: String,
    /// The signer's delegation from its exchange root: the canonical CBOR of the signed
    /// delegation, in hex.
    pub delegation: String,
    /// The whole signed head as the protocol object (a SignedMessage, PROTOCOL.md 11.3), in hex:
    /// what a verifier checks (`xchg_protocol::tree_head::verify`).
    pub signed_head: String,
}

impl SignedTreeHeadJson {
    /// The JSON form of a signed head.
    pub fn new(head: &TreeHead, signed: &SignedMessage) -> Self {
        SignedTreeHeadJson {
            zone: head.zone.to_string(),
            size: head.size,
            root_hash: hex::encode(head.root_hash),
            timestamp: head.timestamp,
            signer: signed.delegation.delegation.node_key.to_string(),
            signature: hex::encode(signed.signature.0),
            delegation: hex::encode(signed.delegation.to_bytes()),
            signed_head: hex::encode(signed.to_bytes()),
        }
    }
}

/// Query string of the tree routes.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HeadParams {
    #[serde(default)]
    #[param(schema_with = consistency_schema)]
    consistency: Consistency,
}

/// Signs the head of this node's replica of the audit log now, and keeps it in the data
/// directory when it is larger than the one kept.
///
/// # Errors
/// Storage errors.
pub async fn sign_head(state: &AppState) -> Result<(TreeHead, SignedMessage), ApiError> {
    let mut conn = state.db.reader().await?;
    let size = audit::tree_size(&mut conn).await?;
    let root_hash = audit::root(&mut conn, size).await?;
    drop(conn);
    let head = TreeHead {
        zone: state.config.zone.id.clone(),
        size,
        root_hash,
        timestamp: state.clock.now(),
    };
    let signed = audit::sign_and_keep(
        &state.config.node.data_dir,
        head.clone(),
        &state.signer.key,
        state.signer.delegation.clone(),
    );
    Ok((head, signed))
}

/// `GET /v1/audit/head`.
#[utoipa::path(
    get,
    path = "/v1/audit/head",
    operation_id = "get_audit_tree_head",
    tag = "audit",
    params(HeadParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The signed tree head of the zone's audit log as this node \
            holds it (any role: a head names no record), signed now by this node's key under its \
            delegation", body = SignedTreeHeadJson),
        (status = 400, description = "An unknown query parameter (`invalid_query`)", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn head(
    State(state): State<AppState>,
    _caller: Caller,
    query: Result<Query<HeadParams>, QueryRejection>,
) -> Result<Json<SignedTreeHeadJson>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    state.read_barrier(&p.consistency).await?;
    let (head, signed) = sign_head(&state).await?;
    Ok(Json(SignedTreeHeadJson::new(&head, &signed)))
}

/// Query string of `GET /v1/audit/proof/inclusion`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InclusionParams {
    /// The leaf: the record with seq `index + 1`. Required; below `size`.
    #[param(value_type = u64, minimum = 0)]
    index: String,
    /// The tree size. Required; at least 1, at most the log's size.
    #[param(value_type = u64, minimum = 0)]
    size: String,
    #[serde(default)]
    #[param(schema_with = consistency_schema)]
    consistency: Consistency,
}

/// `GET /v1/audit/proof/inclusion` answer (RFC 9162 2.1.3).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InclusionProofJson {
    /// The leaf, from 0.
    pub index: u64,
    /// The tree size.
    pub size: u64,
    /// SHA-256(0x00 ‖ the record bytes) of record `index + 1`, 64 hex digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub leaf_hash: String,
    /// The audit path, from the leaf upward, each 64 hex digits.
    pub audit_path: Vec<String>,
}

/// `GET /v1/audit/proof/consistency` answer (RFC 9162 2.1.4).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsistencyProofJson {
    /// The older size.
    pub from: u64,
    /// The newer size.
    pub to: u64,
    /// The proof, each 64 hex digits; empty when `from` is 0 or equals `to`.
    pub proof: Vec<String>,
}

/// Query string of `GET /v1/audit/proof/consistency`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    /// The older tree size. Required; at most `to`.
    #[param(value_type = u64, minimum = 0)]
    from: String,
    /// The newer tree size. Required; at most the log's current size.
    #[param(value_type = u64, minimum = 0)]
    to: String,
    #[serde(default)]
    #[param(schema_with = consistency_schema)]
    consistency: Consistency,
}

/// Refuses a size beyond the log's.
fn within(field: &str, size: u64, held: u64) -> Result<(), ApiError> {
    if size > held {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} {size} is beyond the log's {held} records"),
        ));
    }
    Ok(())
}

/// `GET /v1/audit/proof/inclusion?index=&size=`.
#[utoipa::path(
    get,
    path = "/v1/audit/proof/inclusion",
    operation_id = "get_audit_inclusion_proof",
    tag = "audit",
    params(InclusionParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The proof that record `index + 1` is leaf `index` of the \
            tree of `size` records (any role)", body = InclusionProofJson),
        (status = 400, description = "`invalid_field` naming `index` or `size`: not a whole \
            number, `size` 0 or beyond the log's size, `index` not below `size`; \
            `invalid_query`: a missing or unknown parameter", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn inclusion(
    State(state): State<AppState>,
    _caller: Caller,
    query: Result<Query<InclusionParams>, QueryRejection>,
) -> Result<Json<InclusionProofJson>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let index = params::whole_number("index", &p.index)?;
    let size = params::whole_number("size", &p.size)?;
    if size == 0 {
        return Err(ApiError::invalid_field(
            "size",
            "size 0: the empty tree has no leaves",
        ));
    }
    if index >= size {
        return Err(ApiError::invalid_field(
            "index",
            format!("index {index} is not below size {size}"),
        ));
    }
    state.read_barrier(&p.consistency).await?;
    let mut conn = state.db.reader().await?;
    within("size", size, audit::tree_size(&mut conn).await?)?;
    let (leaf, path) = audit::inclusion_proof(&mut conn, index, size).await?;
    Ok(Json(InclusionProofJson {
        index,
        size,
        leaf_hash: hex::encode(leaf),
        audit_path: path.iter().map(hex::encode).collect(),
    }))
}

/// `GET /v1/audit/proof/consistency?from=&to=`.
#[utoipa::path(
    get,
    path = "/v1/audit/proof/consistency",
    operation_id = "get_audit_consistency_proof",
    tag = "audit",
    params(ConsistencyParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The proof that the tree of `to` records extends the tree \
            of `from` records (any role)", body = ConsistencyProofJson),
        (status = 400, description = "`invalid_field` naming `from` or `to`: not a whole \
            number, `from` above `to`, `to` beyond the log's size; `invalid_query`: a missing \
            or unknown parameter", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn consistency(
    State(state): State<AppState>,
    _caller: Caller,
    query: Result<Query<ConsistencyParams>, QueryRejection>,
) -> Result<Json<ConsistencyProofJson>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let from = params::whole_number("from", &p.from)?;
    let to = params::whole_number("to", &p.to)?;
    if from > to {
        return Err(ApiError::invalid_field(
            "from",
            format!("from {from} is above to {to}"),
        ));
    }
    state.read_barrier(&p.consistency).await?;
    let mut conn = state.db.reader().await?;
    within("to", to, audit::tree_size(&mut conn).await?)?;
    let proof = audit::consistency_proof(&mut conn, from, to).await?;
    Ok(Json(ConsistencyProofJson {
        from,
        to,
        proof: proof.iter().map(hex::encode).collect(),
    }))
}
