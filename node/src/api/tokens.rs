//! `/v1/tokens`: create and revoke API tokens (admin). Only hashes are stored.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use xchg_federation_config::Role;
use xchg_protocol::{PartyId, Timestamp};

use super::AppState;
use super::auth::{Caller, hash_hex};
use super::error::ApiError;
use super::json::JsonBody;
use crate::catalog::CatalogCommand;

/// `POST /v1/tokens` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// The role it grants.
    pub role: Role,
    /// The party it acts for (a provider token bound to a party submits only that party's
    /// listings).
    #[serde(default)]
    pub party: Option<String>,
    /// A label for people, e.g. who holds it.
    pub label: String,
}

/// The created token: the only time its text is shown.
#[derive(Debug, Serialize)]
pub struct CreatedToken {
    /// The bearer token. Store it now; the node keeps only its hash.
    pub token: String,
    /// Hex SHA-256 of the token, the handle to revoke it.
    pub hash: String,
    /// The role.
    pub role: Role,
    /// The bound party.
    pub party: Option<String>,
    /// The label.
    pub label: String,
}

/// `POST /v1/tokens`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    caller.require(&[])?;
    if let Some(p) = &body.party {
        p.parse::<PartyId>()
            .map_err(|e| ApiError::invalid_field("party", e.to_string()))?;
    }
    if body.label.trim().is_empty() || body.label.chars().count() > 200 {
        return Err(ApiError::invalid_field("label", "1 to 200 characters"));
    }
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let token = format!(
        "xchg-{}-{}",
        body.role,
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let hash = hash_hex(&token);
    let cmd = CatalogCommand::CreateToken {
        token_hash: hash.clone(),
        role: body.role,
        party: body.party.clone(),
        label: body.label.clone(),
        at: Timestamp::now(),
        actor: caller.actor,
    };
    let (response, _) = state.propose(cmd).await?;
    response?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token,
            hash,
            role: body.role,
            party: body.party,
            label: body.label,
        }),
    ))
}

/// `DELETE /v1/tokens/{hash}`: revoke a run-time or config token.
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(hash): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&[])?;
    let mut digest = [0u8; 32];
    hex::decode_to_slice(&hash, &mut digest)
        .map_err(|_| ApiError::not_found(format!("no token {hash:?}: expected 64 hex digits")))?;
    // Hashes are stored and looked up in lowercase: a revocation recorded under an uppercase
    // hash would answer 204 and leave the token working.
    let hash = hex::encode(digest);
    let row = sqlx::query("SELECT role FROM tokens WHERE hash = ?")
        .bind(&hash)
        .fetch_optional(&state.db.read)
        .await?;
    let role = match row {
        Some(r) => r
            .try_get::<String, _>(0)?
            .parse::<Role>()
            .map_err(ApiError::internal)?,
        None => state
            .config
            .api
            .tokens
            .iter()
            .find(|t| t.sha256 == digest)
            .map(|t| t.role)
            .ok_or_else(|| ApiError::not_found(format!("no token {hash}")))?,
    };
    let cmd = CatalogCommand::RevokeToken {
        token_hash: hash,
        role,
        at: Timestamp::now(),
        actor: caller.actor,
    };
    let (response, _) = state.propose(cmd).await?;
    response?;
    Ok(StatusCode::NO_CONTENT)
}
