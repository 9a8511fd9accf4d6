//! `/v1/tokens`: create and revoke API tokens (admin). Only hashes are stored.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;
use xchg_protocol::PartyId;

use super::auth::{Caller, hash_hex};
use super::error::{ApiError, BearerErrors, BodyErrors, ErrorBody, ProposeErrors};
use super::json::JsonBody;
use super::{AppState, Consistency};
use crate::catalog::CatalogCommand;
use crate::catalog::apply::last_admin;
use crate::catalog::tables::tokens;

/// Longest accepted token label, in characters.
pub const MAX_LABEL_CHARS: usize = 200;

/// `POST /v1/tokens` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// The role it grants.
    #[schema(schema_with = role_schema)]
    pub role: Role,
    /// The party it acts for: a listing's `provider.id`. Required for a provider or buyer
    /// token, and then a party the zone admitted; a provider token submits and updates only
    /// that party's listings.
    #[serde(default)]
    pub party: Option<String>,
    /// A label for people, e.g. who holds it.
    pub label: String,
}

/// The created token: the only time its text is shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// The bearer token. Store it now; the node keeps only its hash.
    pub token: String,
    /// Hex SHA-256 of the token, the handle to revoke it.
    pub hash: String,
    /// The role.
    #[schema(schema_with = role_schema)]
    pub role: Role,
    /// The bound party.
    pub party: Option<String>,
    /// The label.
    pub label: String,
}

/// The schema of a role: one of [`Role::ALL`] by its text form.
fn role_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(Role::ALL.map(Role::as_str)))
        .description(Some("An API role"))
        .build()
}

/// `POST /v1/tokens`.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    operation_id = "create_token",
    tag = "tokens",
    request_body = NewToken,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new token; its text is shown only now", body = CreatedToken),
        (status = 400, description = "Malformed JSON, an unknown role, an invalid `party`, a \
            provider or buyer token without `party`, or a `label` that is empty, over 200 \
            characters or against the text rule (`field` names it)", body = ErrorBody),
        (status = 403, description = "Not an admin token; or `party_not_admitted`: a provider or \
            buyer token for a party the zone has not admitted (or suspended)", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    caller.require(&[])?;
    match &body.party {
        Some(p) => drop(
            p.parse::<PartyId>()
                .map_err(|e| ApiError::invalid_field("party", e.to_string()))?,
        ),
        // Unbound, a provider token could list in any party's name.
        None if body.role == Role::Provider => {
            return Err(ApiError::invalid_field(
                "party",
                "required for a provider token: the party (a listing's provider.id) whose \
                 listings it may submit and update",
            ));
        }
        None => {}
    }
    super::text::check(&[super::text::Text {
        field: "label",
        value: &body.label,
        max: MAX_LABEL_CHARS,
        required: true,
    }])?;
    super::parties::require_token_party(&state, body.role, body.party.as_deref()).await?;
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
        at: state.clock.now(),
        actor: caller.actor,
    };
    let (response, _) = state.propose_as(cmd, caller.credential).await?;
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
#[utoipa::path(
    delete,
    path = "/v1/tokens/{hash}",
    operation_id = "revoke_token",
    tag = "tokens",
    params(("hash" = String, Path, description = "Hex SHA-256 of the token (as `POST /v1/tokens` \
        answered)", pattern = "^[0-9a-fA-F]{64}$")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No token with this hash, or one already revoked; nothing \
            is written", body = ErrorBody),
        (status = 409, description = "`last_admin`: the zone's last working admin token, which \
            is never revoked (create another admin token first)", body = ErrorBody),
        BearerErrors,
        ProposeErrors,
    )
)]
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
    // Every revocation acknowledged before is in this replica after the barrier, so a refusal
    // below is the zone's answer and costs no Raft entry.
    state.read_barrier(&Consistency::Linearizable).await?;
    let mut reader = state.db.reader().await?;
    let row = tokens::lookup(&mut reader, &hash).await?;
    let configured = state.config.api.tokens.iter().find(|t| t.sha256 == digest);
    let role = match (row, configured) {
        (Some(r), _) if r.revoked => {
            return Err(ApiError::not_found(format!(
                "token {hash} is already revoked"
            )));
        }
        (Some(r), _) => r.role,
        (None, Some(t)) => t.role,
        (None, None) => return Err(ApiError::not_found(format!("no token {hash}"))),
    };
    let config_admins: Vec<String> = state
        .config
        .api
        .tokens
        .iter()
        .filter(|t| t.role == Role::Admin)
        .map(|t| hex::encode(t.sha256))
        .collect();
    if role == Role::Admin {
        let working = tokens::working_admins_read(&mut reader, &config_admins).await?;
        if working.iter().all(|h| *h == hash) {
            return Err(last_admin(&hash).into());
        }
    }
    // Back to the pool before the proposal, which may take a while.
    drop(reader);
    let cmd = CatalogCommand::RevokeToken {
        token_hash: hash,
        role,
        at: state.clock.now(),
        actor: caller.actor,
        config_admins: Some(config_admins),
    };
    let (response, _) = state.propose_as(cmd, caller.credential).await?;
    response?;
    Ok(StatusCode::NO_CONTENT)
}
