//! API errors: the right status and `{"error":{"code","message","field"}}`.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, ToSchema};

use crate::catalog::Refusal;

/// One error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What went wrong and how to fix it.
    pub message: String,
    /// The offending field (dotted path), when one is to blame.
    pub field: Option<String>,
    /// Every violated rule, when validation found several.
    pub details: Vec<FieldDetail>,
}

/// One violated rule of a request body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldDetail {
    /// Dotted path.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    /// What went wrong.
    error: ErrorDetail<'a>,
}

/// An error: a stable code, a message for people, and the field to blame.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    /// Stable machine-readable code, e.g. `invalid_field`, `not_found`, `unauthorized`.
    code: &'a str,
    /// What went wrong and how to fix it.
    message: &'a str,
    /// The offending field (dotted path), when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    field: Option<&'a str>,
    /// Every violated rule, when validation found several.
    #[serde(skip_serializing_if = "<[FieldDetail]>::is_empty")]
    #[schema(value_type = Vec<FieldDetail>)]
    details: &'a [FieldDetail],
}

impl ApiError {
    /// An error with no field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            details: Vec::new(),
        }
    }

    /// Blames `field`.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.field = (!field.is_empty()).then_some(field);
        self
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 400 `invalid_field` for one field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_field", message).with_field(field)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503 `unavailable`.
    pub fn unavailable(message: &str) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 504 `outcome_unknown`: a write was sent to the leader but its fate is unknown.
    pub fn outcome_unknown(message: &str) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "outcome_unknown",
            format!("{message}; the write may have been applied: read it back before retrying"),
        )
    }

    /// 500 `internal`, logging the cause.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the node's log",
        )
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let status = match r {
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::Conflict(_)
            | Refusal::IllegalTransition(_)
            | Refusal::ListingSuspended(_)
            | Refusal::KeyReused(_)
            | Refusal::LastAdmin(_) => StatusCode::CONFLICT,
            Refusal::Forbidden(_) | Refusal::PartyNotAdmitted(_) | Refusal::NotEntrusted(_) => {
                StatusCode::FORBIDDEN
            }
            Refusal::Invalid(_)
            | Refusal::OneScenario(_)
            | Refusal::ScenarioNotOffered(_)
            | Refusal::InDomainOnly(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::AuthorizationExpired(_)
            | Refusal::UsageLimitExceeded(_)
            | Refusal::AuthorizationSuspended(_)
            | Refusal::AuthorizationRevoked(_)
            | Refusal::ListingNotListed(_)
            | Refusal::DeliveryModeNotAuthorized(_) => StatusCode::FORBIDDEN,
            Refusal::OrderQuantityExceeded(_) => StatusCode::CONFLICT,
            Refusal::ApplicationsFull(_) | Refusal::ComplaintsFull(_) | Refusal::DemandsFull(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        ApiError::new(status, r.code(), r.to_string())
    }
}

impl From<xchg_protocol::ValidationError> for ApiError {
    fn from(v: xchg_protocol::ValidationError) -> Self {
        let first = v.0.first().map(|e| e.field.clone()).unwrap_or_default();
        let mut err = ApiError::invalid_field(&first, v.to_string());
        err.details =
            v.0.into_iter()
                .map(|e| FieldDetail {
                    field: e.field,
                    message: e.message,
                })
                .collect();
        err
    }
}

impl ApiError {
    /// The error for `status` when nothing more precise is known: the code every error of
    /// that status carries (see the README's table of error codes).
    pub fn for_status(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, code_for(status), message)
    }

    fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
                details: &self.details,
            },
        }
    }

    /// The whole HTTP/1.1 answer, for the server to write where no router runs (a connection
    /// over the cap, a head hyper could not parse, a head that never arrived). It closes the
    /// connection.
    pub fn to_http1(&self) -> Vec<u8> {
        // Strings, a number-free map and a list of strings always serialize.
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut answer = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or("Error"),
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(&body);
        answer
    }
}

/// The code of an error of `status` that no handler chose.
fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        409 => "conflict",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        431 => "headers_too_large",
        503 => "unavailable",
        504 => "timeout",
        _ if status.is_client_error() => "client_error",
        _ => "internal",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// Most bytes of a non-JSON error body kept as the message of its JSON replacement.
const MAX_PLAIN_MESSAGE: usize = 300;

/// Middleware giving every error answer of the router the JSON error shape: an error whose
/// body is not JSON (axum's own rejections, such as a path segment that is not UTF-8, answer
/// in plain text) is rewritten, its text kept as the message. Errors hyper answers before any
/// router runs are rewritten by the server ([`super::server`]).
pub async fn json_errors(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_MESSAGE * 4)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().chars().take(MAX_PLAIN_MESSAGE).collect::<String>())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let mut replaced = ApiError::for_status(status, text).into_response();
    // Keep what the answer said besides its body (Allow, Connection, ...).
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            replaced.headers_mut().append(name.clone(), value.clone());
        }
    }
    replaced
}

/// The fallback for unknown routes.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route {}", uri.path()))
}

/// The fallback for a known route asked with a method it does not serve (axum's own answer
/// has an empty body).
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not accept {method}", uri.path()),
    )
}

/// An error answer of the OpenAPI document: `description` and an [`ErrorBody`].
fn documented(description: &str) -> RefOr<Response> {
    let body = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(ErrorBody::name())))
        .build();
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", body)
            .build(),
    )
}

/// Declares a set of error answers shared by several routes, for their `#[utoipa::path]`.
macro_rules! error_set {
    ($(#[$doc:meta])* $name:ident { $($status:literal => $why:expr),+ $(,)? }) => {
        $(#[$doc])*
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                [$(($status, $why)),+]
                    .into_iter()
                    .map(|(status, why)| (status.to_string(), documented(why)))
                    .collect()
            }
        }
    };
}

error_set! {
    /// What any route that takes a bearer token may answer.
    BearerErrors {
        401 => "No `Authorization: Bearer <token>` header, or an unknown or revoked token",
        500 => "Internal error; the node's log has the cause",
    }
}

error_set! {
    /// What reading a JSON request body may answer.
    BodyErrors {
        413 => "The request body exceeds the node's size limit",
        415 => "A Content-Type other than `application/json`",
    }
}

error_set! {
    /// What a linearizable read may answer when the zone has no working leader.
    ReadErrors {
        503 => "No Raft leader confirmed a read point in time, or this node is catching up; \
                retry, or pass `consistency=local`",
    }
}

error_set! {
    /// What a write proposed through Raft may answer besides its own refusals.
    ProposeErrors {
        503 => "No Raft leader answered in time; retry",
        504 => "The write reached the leader but its outcome is unknown; read it back before \
                retrying",
    }
}

impl From<crate::raft::client::ClientError> for ApiError {
    fn from(e: crate::raft::client::ClientError) -> Self {
        use crate::raft::client::ClientErrorKind;
        match e.kind {
            ClientErrorKind::Unavailable => ApiError::unavailable(&e.message),
            ClientErrorKind::OutcomeUnknown => ApiError::outcome_unknown(&e.message),
        }
    }
}

#[cfg(test)]
mod readme_tests {
    use super::*;

    /// Every code a refusal is answered with is a row of the README's table of error codes,
    /// with the status the API gives it.
    #[test]
    fn every_refusal_code_is_in_the_readmes_error_table_with_its_status() {
        let readme = include_str!("../../../README.md");
        let table = readme
            .split("### Errors")
            .nth(1)
            .and_then(|t| t.split("\n### ").next())
            .unwrap_or_default();
        for refusal in crate::catalog::every_refusal() {
            let error = ApiError::from(refusal);
            let listed = table.lines().any(|row| {
                row.starts_with(&format!("| {} |", error.status.as_u16()))
                    && row.contains(&format!("`{}`", error.code))
            });
            assert!(
                listed,
                "README's error table has no row for {} `{}`",
                error.status.as_u16(),
                error.code
            );
        }
    }
}
