//! Bearer tokens: which actor and role a request speaks for.
//!
//! A token is known by its SHA-256 only. The zone's initial tokens are in every node's config;
//! tokens created at run time, and revocations of either kind, are in the replicated `tokens`
//! table. A revoked token is refused even if the config still lists it.
//!
//! A token created a moment ago may not have reached this replica yet: before answering
//! "unknown token", a node asks the zone what it has missed (a read barrier) and looks again, so
//! a client can use a new token on any node at once. At most [`UNKNOWN_TOKEN_CHECKS`] such
//! checks run at a time; beyond that an unknown token is refused at once, so a flood of made-up
//! tokens costs the leader a bounded number of read-index round trips.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use xchg_federation_config::Role;

use super::error::ApiError;
use super::{AppState, CatchUp};
use crate::catalog::Actor;
use crate::catalog::tables::tokens;
use crate::raft::transport::{Authorize, BoxFuture, Credential};

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who, and in which role.
    pub actor: Actor,
    /// The party the token is bound to, if any: a provider token submits and updates only
    /// that party's listings, and one bound to no party none ([`crate::catalog::party_rule`]).
    pub party: Option<String>,
    /// The token, for a leader to check again when this node forwards the caller's write.
    pub credential: Credential,
}

impl Caller {
    /// The sides a list of applications or authorisations is narrowed to for this caller:
    /// `(buyer, provider)`. A buyer's token sees its party's as buyer, a provider's its
    /// party's listings', whatever else it asks (one bound to no party sees nothing); other
    /// roles are not narrowed.
    pub fn own_side(&self) -> (Option<String>, Option<String>) {
        let own = || Some(self.party.clone().unwrap_or_default());
        match self.actor.role {
            Role::Buyer => (own(), None),
            Role::Provider => (None, own()),
            _ => (None, None),
        }
    }

    /// Refuses unless the caller has one of `roles` (admin always passes).
    ///
    /// # Errors
    /// 403 `forbidden` naming the roles that may.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.actor.role == Role::Admin || roles.contains(&self.actor.role) {
            return Ok(());
        }
        let allowed: Vec<Role> = std::iter::once(Role::Admin)
            .chain(roles.iter().copied().filter(|r| *r != Role::Admin))
            .collect();
        Err(self.refused_role(&allowed))
    }

    /// Refuses unless the caller has one of `roles`, an admin's token too: for what only
    /// those roles' tokens can do (an act in the token's party's name, which an admin token
    /// has not).
    ///
    /// # Errors
    /// 403 `forbidden` naming exactly `roles`.
    pub fn require_exactly(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.actor.role) {
            return Ok(());
        }
        Err(self.refused_role(roles))
    }

    /// 403 `forbidden`: this caller's role is not one of `allowed`, which are named.
    fn refused_role(&self, allowed: &[Role]) -> ApiError {
        let allowed: Vec<&str> = allowed.iter().copied().map(Role::as_str).collect();
        let role = self.actor.role.as_str();
        let article = if role.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{article} {role} token cannot do this; it needs one of: {}",
                allowed.join(", ")
            ),
        )
    }
}

/// A row of the replicated `tokens` table.
pub type TokenRow = tokens::Stored;

/// Token rows read from the local replica, kept until the state machine applies a token
/// command (which bumps `epoch`), so a request costs no database round trip for its token.
#[derive(Debug)]
pub struct TokenCache {
    /// Bumped by the state machine after every batch that changed the tokens table.
    pub epoch: Arc<AtomicU64>,
    entries: Mutex<HashMap<String, (u64, Option<TokenRow>)>>,
    /// Permits for the checks of unknown tokens against the zone.
    unknown_checks: tokio::sync::Semaphore,
}

/// Entries kept before the cache is emptied (bounds memory against random tokens).
const TOKEN_CACHE_ENTRIES: usize = 10_000;

/// How many requests with a token this replica does not know may wait on the zone at once to
/// learn whether it was just created.
pub const UNKNOWN_TOKEN_CHECKS: usize = 8;

impl TokenCache {
    /// A cache invalidated through `epoch`.
    pub fn new(epoch: Arc<AtomicU64>) -> Self {
        TokenCache {
            epoch,
            entries: Mutex::default(),
            unknown_checks: tokio::sync::Semaphore::new(UNKNOWN_TOKEN_CHECKS),
        }
    }

    async fn lookup(
        &self,
        hash: &str,
        db: &crate::store::Db,
    ) -> Result<Option<TokenRow>, ApiError> {
        // Read the epoch before the table: a change applied meanwhile leaves this entry stale
        // by epoch, so the next request reads again.
        let epoch = self.epoch.load(Ordering::Acquire);
        if let Ok(entries) = self.entries.lock()
            && let Some((e, row)) = entries.get(hash)
            && *e == epoch
        {
            return Ok(row.clone());
        }
        let row = tokens::lookup(&mut *db.reader().await?, hash).await?;
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= TOKEN_CACHE_ENTRIES {
                entries.clear();
            }
            entries.insert(hash.to_owned(), (epoch, row.clone()));
        }
        Ok(row)
    }
}

/// Hex SHA-256 of a token text.
pub fn hash_hex(token: &str) -> String {
    hex::encode(xchg_federation_config::token_hash(token))
}

impl Caller {
    /// The caller `token` identifies: a row of the replicated tokens table, or a token of the
    /// config.
    ///
    /// # Errors
    /// 401 for a revoked or unknown token.
    pub async fn from_token(token: &str, state: &AppState) -> Result<Caller, ApiError> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let digest = xchg_federation_config::token_hash(token);
        let hash = hex::encode(digest);
        // Perhaps created a moment ago and not yet applied here: catch up with the zone and
        // look again (bounded, see the module's header).
        let catch_up = CatchUp::Bounded(&state.tokens.unknown_checks);
        let row = state
            .look_again_if(catch_up, || known(state, &hash, &digest), Option::is_some)
            .await?
            .ok_or_else(|| unauthorized("unknown token"))?;
        if row.revoked {
            return Err(unauthorized("this token has been revoked"));
        }
        let id = row
            .party
            .clone()
            .unwrap_or_else(|| format!("token:{}", &hash[..8]));
        Ok(Caller {
            actor: Actor { id, role: row.role },
            party: row.party,
            credential: Credential::Token(token.to_owned()),
        })
    }
}

/// The token with SHA-256 `digest` (`hash` in hex) as this replica knows it: its row of the
/// tokens table (a revocation included), else the config's token, which acts like a row that
/// was never revoked (a token bound to a party acts as that party).
async fn known(
    state: &AppState,
    hash: &str,
    digest: &[u8; 32],
) -> Result<Option<TokenRow>, ApiError> {
    if let Some(row) = state.tokens.lookup(hash, &state.db).await? {
        return Ok(Some(row));
    }
    Ok(state
        .config
        .api
        .tokens
        .iter()
        .find(|t| t.sha256 == *digest)
        .map(|t| TokenRow {
            role: t.role,
            party: t.party.as_ref().map(ToString::to_string),
            revoked: false,
        }))
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
        Caller::from_token(token, state).await
    }
}

/// The leader's check of forwarded writes: the same token resolution as the API's.
impl Authorize for AppState {
    fn caller<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<(Actor, Option<String>)>> {
        Box::pin(async move {
            Caller::from_token(token, self)
                .await
                .ok()
                .map(|c| (c.actor, c.party))
        })
    }
}
