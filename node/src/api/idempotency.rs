//! The `Idempotency-Key` header of writes: a retry after a lost answer (`outcome_unknown`, a
//! dropped connection) with the same key and body returns the first result and creates
//! nothing; the same key with another body is `409 idempotency_key_reused`.
//!
//! The key travels with the command through Raft ([`CatalogCommand::Idempotent`]), so the
//! state machine of every replica decides the same way, whichever node the retry reaches.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Serialize;
use sha2::{Digest, Sha256};
use xchg_protocol::Timestamp;

use super::error::ApiError;
use crate::catalog::{CatalogCommand, Idempotent};

/// The header's name.
pub const HEADER: &str = "Idempotency-Key";

/// The longest key accepted.
pub const MAX_KEY_CHARS: usize = 64;

/// The header in the OpenAPI document of every write that takes it.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyHeader {
    /// Optional. The same key and body again (a retry after `outcome_unknown` or a lost
    /// answer) returns the first result and creates nothing, for 24 hours; the same key with
    /// another body is 409 `idempotency_key_reused`; a malformed key is 400
    /// `invalid_idempotency_key`. Keys are per caller (the token's party, or the token).
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9._:-]{1,64}$"
    )]
    #[serde(rename = "Idempotency-Key")]
    pub key: Option<String>,
}

/// A write's `Idempotency-Key`, if it was sent, with the method and path it was sent to.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    key: Option<String>,
    scope: String,
}

/// Checks a key: 1 to [`MAX_KEY_CHARS`] characters of `A-Z a-z 0-9 . _ : -`.
///
/// # Errors
/// 400 `invalid_idempotency_key`.
pub fn check(key: &str) -> Result<(), ApiError> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS || !key.chars().all(fine) {
        return Err(invalid());
    }
    Ok(())
}

fn invalid() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "invalid_idempotency_key",
        format!(
            "the {HEADER} header must be 1 to {MAX_KEY_CHARS} characters of A-Z a-z 0-9 . _ : - \
             (a UUID fits)"
        ),
    )
    .with_field(HEADER)
}

impl IdempotencyKey {
    /// `cmd` as the write to propose: wrapped with the key and a hash of this request (its
    /// method, path and `body`) when a key was sent, as it is otherwise. `at` is when the
    /// key was used (by the node's clock): it expires 24 hours later.
    pub fn wrap(
        &self,
        body: &impl Serialize,
        cmd: CatalogCommand,
        at: Timestamp,
    ) -> CatalogCommand {
        let Some(key) = &self.key else {
            return cmd;
        };
        let mut hash = Sha256::new();
        hash.update(self.scope.as_bytes());
        hash.update(b"\n");
        hash.update(serde_json::to_vec(body).unwrap_or_default());
        CatalogCommand::Idempotent(Box::new(Idempotent {
            key: key.clone(),
            request: hash.finalize().to_vec(),
            at,
            command: cmd,
        }))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let key = match parts.headers.get(HEADER) {
            None => None,
            Some(v) => {
                let text = v.to_str().map_err(|_| invalid())?;
                check(text)?;
                Some(text.to_owned())
            }
        };
        Ok(IdempotencyKey {
            key,
            scope: format!("{} {}", parts.method, parts.uri.path()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_and_plain() {
        assert!(check("7f9c1c2e-0b7a-4d51-9a8e-3c2d1b0a9f8e").is_ok());
        assert!(check("order:2026-12-01.7").is_ok());
        assert!(check("").is_err());
        assert!(check(&"k".repeat(65)).is_err());
        assert!(check("has space").is_err());
        assert!(check("信用").is_err());
    }
}
