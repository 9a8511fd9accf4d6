//! `/v1/certificates`: a registration certificate with this node's verification of it
//! (against the exchange root keys of its configuration) and its status in the issuing zone,
//! one by its number or a listing's in pages; an operator revokes one.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;
use xchg_protocol::Certificate;
use xchg_protocol::certificate::{CHECKS, REVOCATION_CHECK};
use xchg_protocol::certificate_revocation;

use super::auth::Caller;
use super::error::{ApiError, BearerErrors, BodyErrors, ErrorBody, ProposeErrors, ReadErrors};
use super::json::JsonBody;
use super::listings::{ReadParams, ReasonBody, consistency_schema, query_error};
use super::text::{self, Text};
use super::{AppState, Consistency, params};
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
    shown(state, &mut conn, record).await
}

/// `record` with what it states and this node's verification of it now.
async fn shown(
    state: &AppState,
    conn: &mut sqlx::SqliteConnection,
    record: CertificateRecord,
) -> Result<CertificateView, ApiError> {
    let (_, certificate) = registrations::decoded(&record.signed).map_err(ApiError::internal)?;
    let trust = state.config.trust_store();
    let now = state.clock.now();
    let result = registrations::verify_here(conn, &record.signed, &trust, now).await?;
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

/// Most certificates one page lists.
pub const MAX_PAGE: u32 = 100;
/// Certificates listed when no `limit` is given.
pub const DEFAULT_PAGE: u32 = 20;

/// The query string of `GET /v1/certificates`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only the certificates of this listing: `sha256:` and 64 lowercase hex digits.
    #[param(value_type = Option<String>, pattern = "^sha256:[0-9a-f]{64}$")]
    listing_id: Option<String>,
    /// Page size.
    #[param(schema_with = page_size_schema)]
    limit: Option<String>,
    /// The `next_before` of the previous page: the page starts below this registration number.
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

/// A page of certificates, newest registration first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CertificatePage {
    /// The certificates, each with its status and this node's verification of it.
    pub items: Vec<CertificateView>,
    /// Pass as `before` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// `GET /v1/certificates?listing_id=&limit=&before=` (any token).
#[utoipa::path(
    get,
    path = "/v1/certificates",
    operation_id = "list_certificates",
    tag = "registrations",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page, newest registration first: the certificates \
            this zone issued (a listing's, with `listing_id`), each with its status and this \
            node's verification of it", body = CertificatePage),
        (status = 400, description = "An unknown parameter (`invalid_query`); a `listing_id` \
            that is not a content id, or a `limit` or `before` that is not a whole number \
            (`invalid_field` naming it)", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<CertificatePage>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let listing_id = params::listing_id_filter(p.listing_id.as_deref())?;
    let limit = params::page_size("limit", p.limit.as_deref(), DEFAULT_PAGE, MAX_PAGE)?;
    let before = p
        .before
        .as_deref()
        .map(|b| params::whole_number("before", b))
        .transpose()?;
    state.read_barrier(&p.consistency).await?;
    let mut conn = state.db.reader().await?;
    let (records, more) =
        registrations::certificates(&mut conn, listing_id.as_deref(), before, limit).await?;
    let next_before = more
        .then(|| records.last().map(|r| r.registration_id))
        .flatten();
    let mut items = Vec::with_capacity(records.len());
    for record in records {
        items.push(shown(&state, &mut conn, record).await?);
    }
    Ok(Json(CertificatePage { items, next_before }))
}

/// `POST /v1/certificates/{number}/revoke` (operator): this node signs the revocation, which
/// goes out where the certificate went (PROTOCOL.md 10.6).
#[utoipa::path(
    post,
    path = "/v1/certificates/{number}/revoke",
    operation_id = "revoke_certificate",
    tag = "registrations",
    params(("number" = String, Path, description = "Certificate number")),
    request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked: `status` `revoked`; the revocation, signed by \
            this node's key under the exchange's delegation, is published on the exchange's \
            certificate topic when the certificate was", body = CertificateView),
        (status = 400, description = "Malformed JSON, or a `reason` that is empty, over 2000 \
            characters or against the text rule", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No certificate with this number", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: already revoked", body = ErrorBody),
        (status = 422, description = "`invalid`: the revocation this node signed does not \
            verify against the exchange's root key (for example an expired delegation); retry", body = ErrorBody),
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
    // Signed here, before proposing: apply only verifies (a state machine must not sign). The
    // revocation names the certificate by its id, read from the record.
    let record = {
        let mut conn = state.db.reader().await?;
        registrations::certificate(&mut conn, &number)
            .await?
            .ok_or_else(|| {
                ApiError::from(Refusal::NotFound(format!("no certificate {number:?}")))
            })?
    };
    let (issued, _) = registrations::decoded(&record.signed).map_err(ApiError::internal)?;
    let at = state.clock.now();
    let revocation =
        registrations::revocation_for(&state.config.zone.id, &number, issued.id, &body.reason, at);
    let signed = certificate_revocation::sign(
        &revocation,
        &state.signer.key,
        state.signer.delegation.clone(),
    );
    let cmd = CatalogCommand::RevokeCertificate {
        number: number.clone(),
        reason: body.reason,
        revocation: signed.to_bytes(),
        at,
        actor: caller.actor,
    };
    let (response, index) = state.propose_as(cmd, caller.credential).await?;
    response?;
    state.applied(index).await?;
    Ok(Json(view(&state, &number).await?))
}
