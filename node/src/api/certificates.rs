//! `/v1/certificates/{number}`: a registration certificate with this node's verification of it
//! (against the exchange root keys of its configuration) and its status in the issuing zone;
//! an operator revokes one.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Serialize;
use xchg_federation_config::Role;
use xchg_protocol::Certificate;
use xchg_protocol::certificate::{CHECKS, REVOCATION_CHECK};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, BearerErrors, BodyErrors, ErrorBody, ProposeErrors, ReadErrors};
use super::json::JsonBody;
use super::listings::{ReasonBody, query_error};
use super::registrations::ReadParams;
use super::text::{self, Text};
use crate::catalog::registrations::{self, CertificateRecord, REASON_CHARS};
use crate::catalog::{CatalogCommand, Refusal};

/// What verifying a certificate found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Verification {
    /// Whether every check passed.
    pub valid: bool,
    /// The checks, in order (PROTOCOL.md 10.3 steps 1 to 9).
    pub checks: Vec<&'static str>,
    /// The error kind of the first failed check (PROTOCOL.md 6.3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    /// What failed, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `GET /v1/certificates/{number}` response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CertificateView {
    /// The zone's record: `status` `valid` or `revoked` (with when, by whom and why).
    #[serde(flatten)]
    pub record: CertificateRecord,
    /// What the certificate states.
    pub certificate: Certificate,
    /// The signed certificate, lowercase hex of its canonical CBOR (PROTOCOL.md 10.2): what
    /// `xchg certificate verify` reads.
    pub signed: String,
    /// This node's verification of `signed` now, against the exchange root keys of its
    /// configuration and the revocations its zone recorded (a signing key revoked at or before
    /// the issue time: `revoked_key`).
    pub verification: Verification,
}

async fn view(state: &AppState, number: &str) -> Result<CertificateView, ApiError> {
    let mut conn = state.db.reader().await?;
    let record = registrations::certificate(&mut conn, number)
        .await?
        .ok_or_else(|| ApiError::from(Refusal::NotFound(format!("no certificate {number:?}"))))?;
    let (_, certificate) = registrations::decoded(&record.signed).map_err(ApiError::internal)?;
    let trust = state.config.trust_store();
    let now = state.clock.now();
    let result = registrations::verify_here(&mut conn, &record.signed, &trust, now).await?;
    let verification = Verification {
        valid: result.is_ok(),
        checks: CHECKS.iter().copied().chain([REVOCATION_CHECK]).collect(),
        error: result.as_ref().err().map(|e| e.kind()),
        message: result.as_ref().err().map(ToString::to_string),
    };
    Ok(CertificateView {
        signed: hex::encode(&record.signed),
        record,
        certificate,
        verification,
    })
}

/// `GET /v1/certificates/{number}` (any token).
#[utoipa::path(
    get,
    path = "/v1/certificates/{number}",
    operation_id = "get_certificate",
    tag = "registrations",
    params(("number" = String, Path, description = "Certificate number, e.g. `XC-2026-YUZHOU-000001`"), ReadParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The certificate, its verification and its status", body = CertificateView),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 404, description = "No certificate with this number in this zone", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    _caller: Caller,
    Path(number): Path<String>,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<CertificateView>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    state.read_barrier(&p.consistency).await?;
    Ok(Json(view(&state, &number).await?))
}

/// `POST /v1/certificates/{number}/revoke` (operator).
#[utoipa::path(
    post,
    path = "/v1/certificates/{number}/revoke",
    operation_id = "revoke_certificate",
    tag = "registrations",
    params(("number" = String, Path, description = "Certificate number")),
    request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked: `status` `revoked`", body = CertificateView),
        (status = 400, description = "Malformed JSON, or a `reason` that is empty, over 2000 \
            characters or against the text rule", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No certificate with this number", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: already revoked", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(number): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<CertificateView>, ApiError> {
    caller.require(&[Role::Operator])?;
    text::check(&[Text {
        field: "reason",
        value: &body.reason,
        max: REASON_CHARS,
        required: true,
    }])?;
    let cmd = CatalogCommand::RevokeCertificate {
        number: number.clone(),
        reason: body.reason,
        at: state.clock.now(),
        actor: caller.actor,
    };
    let (response, _) = state.propose_as(cmd, caller.credential).await?;
    response?;
    state
        .read_barrier(&super::Consistency::Linearizable)
        .await?;
    Ok(Json(view(&state, &number).await?))
}
