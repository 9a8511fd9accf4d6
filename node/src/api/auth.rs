//! Bearer tokens: which actor and role a request speaks for.
//!
//! A token is known by its SHA-256 only. The zone's initial tokens are in every node's config;
//! tokens created at run time, and revocations of either kind, are in the replicated `tokens`
//! table. A revoked token is refused even if the config still lists it.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use sqlx::Row;
use xchg_federation_config::Role;

use super::AppState;
use super::error::ApiError;
use crate::catalog::Actor;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who, and in which role.
    pub actor: Actor,
    /// The party the token is bound to, if any (a provider token bound to a party may only
    /// submit listings for that party).
    pub party: Option<String>,
}

impl Caller {
    /// Refuses unless the caller has one of `roles` (admin always passes).
    ///
    /// # Errors
    /// 403 `forbidden` naming the roles that may.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.actor.role == Role::Admin || roles.contains(&self.actor.role) {
            return Ok(());
        }
        let allowed: Vec<&str> = std::iter::once(Role::Admin)
            .chain(roles.iter().copied().filter(|r| *r != Role::Admin))
            .map(Role::as_str)
            .collect();
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "a {} token cannot do this; it needs one of: {}",
                self.actor.role,
                allowed.join(", ")
            ),
        ))
    }
}

/// Hex SHA-256 of a token text.
pub fn hash_hex(token: &str) -> String {
    hex::encode(xchg_federation_config::token_hash(token))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing Authorization: Bearer <token> header"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("the Authorization header must be \"Bearer <token>\""))?;
        let hash = hash_hex(token);
        let short = format!("token:{}", &hash[..8]);
        let row = sqlx::query("SELECT role, party, revoked_at FROM tokens WHERE hash = ?")
            .bind(&hash)
            .fetch_optional(&state.db.read)
            .await?;
        if let Some(row) = row {
            let revoked: Option<i64> = row.try_get(2)?;
            if revoked.is_some() {
                return Err(unauthorized("this token has been revoked"));
            }
            let role: String = row.try_get(0)?;
            let role: Role = role.parse().map_err(ApiError::internal)?;
            let party: Option<String> = row.try_get(1)?;
            let id = party.clone().unwrap_or(short);
            return Ok(Caller {
                actor: Actor { id, role },
                party,
            });
        }
        let digest = xchg_federation_config::token_hash(token);
        let configured = state.config.api.tokens.iter().find(|t| t.sha256 == digest);
        match configured {
            Some(t) => Ok(Caller {
                actor: Actor {
                    id: short,
                    role: t.role,
                },
                party: None,
            }),
            None => Err(unauthorized("unknown token")),
        }
    }
}
