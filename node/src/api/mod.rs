//! The HTTP API (`/v1`, JSON) and `/metrics`.
//!
//! One file per resource. Writes become catalog commands proposed through Raft: on a follower
//! they are forwarded to the leader over the zone transport, so a client never has to find the
//! leader. Reads are linearizable unless `?consistency=local` asks for the local replica.
//!
//! Layer: above federation, Raft, the store and the catalog, which it reaches through their typed functions; below `node`, which assembles it. Nothing below imports it.

pub mod applications;
pub mod audit;
pub mod auth;
pub mod authorizations;
pub mod body;
pub mod certificates;
pub mod complaints;
pub mod dcat;
pub mod deadline;
pub mod demands;
pub mod entrustments;
pub mod error;
pub mod federation;
pub mod idempotency;
pub mod json;
pub mod listings;
pub mod metrics;
pub mod openapi;
pub mod overview;
pub mod params;
pub mod parties;
/// The proposer, now in the Raft layer ([`crate::raft::client`]); kept under its old path.
pub use crate::raft::client as propose;
pub mod rate_limit;
pub mod registrations;
pub mod server;
pub mod status;
pub mod supervision;
pub mod text;
pub mod tls;
pub mod tokens;
pub mod trades;
pub mod valuations;
pub mod zone;

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use xchg_federation_config::NodeConfig;

use crate::catalog::{CatalogCommand, CommandResponse};
use crate::raft::Raft;
use crate::raft::tls::MemberKeys;
use crate::raft::transport::{Credential, ZoneTransport};
use crate::store::Db;
use error::ApiError;

/// What the handlers need.
pub struct Context {
    /// The node's validated config.
    pub config: Arc<NodeConfig>,
    /// The node's Raft.
    pub raft: Raft,
    /// The node's database.
    pub db: Db,
    /// The search index over the catalog's listings.
    pub search: crate::search::SearchIndex,
    /// The client for other nodes' APIs (the federation overview's status probes): short
    /// timeout, no redirects, no proxy, trusting `[api] ca_cert` for HTTPS, peers' names pinned.
    pub peers_http: overview::PeerClient,
    /// The zone transport, for forwarding to the leader.
    pub transport: Arc<dyn ZoneTransport>,
    /// Keys allowed on the zone transport (a member being added is allowed at once).
    pub member_keys: MemberKeys,
    /// Prometheus metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// The highest committed index the log store has seen.
    pub committed: Arc<std::sync::atomic::AtomicU64>,
    /// Batches writes into Raft entries.
    pub proposer: propose::Proposer,
    /// Token rows of the local replica.
    pub tokens: auth::TokenCache,
    /// The federation service (gossip peers, the receiving pipeline).
    pub federation: Arc<crate::federation::Federation>,
    /// Set when this node is no longer a member of its zone: it then serves only its status.
    pub removal: crate::raft::election::Removal,
    /// Which members' zone-wide settings differ from this node's.
    pub policy_check: crate::raft::consistency::PolicyCheck,
    /// The time every command is stamped with (and idempotency keys expire by).
    pub clock: Arc<dyn crate::clock::Clock>,
    /// The party registry's founding parties and rate limit.
    pub parties: parties::Registry,
    /// The key and delegation this node signs registration certificates with.
    pub signer: registrations::Signer,
    /// One online backup at a time (`GET /v1/zone/backup`): each spools a copy of the catalog
    /// into the data directory until it is sent.
    pub backups: Arc<tokio::sync::Semaphore>,
}

/// Shared handler state.
#[derive(Clone)]
pub struct AppState(pub Arc<Context>);

impl AppState {
    /// Wraps the context.
    pub fn new(ctx: Context) -> Self {
        AppState(Arc::new(ctx))
    }
}

impl std::ops::Deref for AppState {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.0
    }
}

/// `?consistency=local` on reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Through the leader's read index (the default).
    #[default]
    Linearizable,
    /// From this node's replica, possibly stale.
    Local,
}

/// The routes.
pub fn router(state: AppState) -> Router {
    let max_body = usize::try_from(state.config.api.max_body_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v1/status", get(status::get_status))
        .route("/v1/listings", post(listings::submit).get(listings::search))
        .route("/v1/catalog/dcat", get(dcat::catalog))
        .route(
            "/v1/listings/{id}",
            get(listings::get_one).put(listings::update),
        )
        .route("/v1/listings/{id}/approve", post(listings::approve))
        .route("/v1/listings/{id}/reject", post(listings::reject))
        .route("/v1/listings/{id}/delist", post(listings::delist))
        .route(
            "/v1/listings/{id}/valuations",
            post(valuations::create).get(valuations::history),
        )
        .route("/v1/listings/{id}/valuation", get(valuations::get_one))
        .route("/v1/audit", get(audit::list))
        .route("/v1/audit/head", get(audit::head))
        .route("/v1/audit/proof/inclusion", get(audit::inclusion))
        .route("/v1/audit/proof/consistency", get(audit::consistency))
        .route("/v1/recognitions", get(federation::recognitions))
        .route("/v1/federation/peers", get(federation::peers))
        .route("/v1/federation/verdicts", get(federation::verdicts))
        .route(
            "/v1/federation/certificates",
            get(federation::received_certificates),
        )
        .route(
            "/v1/federation/certificate-revocations",
            get(federation::received_revocations),
        )
        .route("/v1/federation/revocations", post(federation::revoke))
        .route("/v1/federation/overview", get(overview::overview))
        .route("/v1/federation/flows", get(overview::flows))
        .route("/v1/parties", post(parties::apply).get(parties::list))
        .route("/v1/parties/{id}", get(parties::get_one))
        .route("/v1/parties/{id}/admit", post(parties::admit))
        .route("/v1/parties/{id}/refuse", post(parties::refuse))
        .route("/v1/parties/{id}/suspend", post(parties::suspend))
        .route("/v1/parties/{id}/reinstate", post(parties::reinstate))
        .route(
            "/v1/entrustments",
            post(entrustments::grant).get(entrustments::list),
        )
        .route("/v1/entrustments/{id}/revoke", post(entrustments::revoke))
        .route(
            "/v1/applications",
            post(applications::submit).get(applications::list),
        )
        .route("/v1/applications/{id}", get(applications::get_one))
        .route("/v1/applications/{id}/approve", post(applications::approve))
        .route("/v1/applications/{id}/reject", post(applications::reject))
        .route("/v1/demands", post(demands::post).get(demands::search))
        .route("/v1/demands/{id}", get(demands::get_one))
        .route("/v1/demands/{id}/matches", get(demands::matches))
        .route("/v1/demands/{id}/proposals", post(demands::propose))
        .route("/v1/demands/{id}/accept", post(demands::accept))
        .route("/v1/demands/{id}/withdraw", post(demands::withdraw))
        .route(
            "/v1/demands/external/{exchange}/{zone}/{number}",
            get(demands::get_external),
        )
        .route(
            "/v1/demands/external/{exchange}/{zone}/{number}/matches",
            get(demands::match_external),
        )
        .route("/v1/authorizations", get(authorizations::list))
        .route("/v1/authorizations/{id}", get(authorizations::get_one))
        .route("/v1/authorizations/{id}/usage", post(authorizations::usage))
        .route(
            "/v1/authorizations/{id}/suspend",
            post(authorizations::suspend),
        )
        .route(
            "/v1/authorizations/{id}/revoke",
            post(authorizations::revoke),
        )
        .route(
            "/v1/authorizations/{id}/reinstate",
            post(authorizations::reinstate),
        )
        .route("/v1/registrations", post(registrations::submit))
        .route("/v1/registrations/{id}", get(registrations::get_one))
        .route(
            "/v1/registrations/{id}/approve",
            post(registrations::approve),
        )
        .route("/v1/registrations/{id}/reject", post(registrations::reject))
        .route("/v1/certificates", get(certificates::list))
        .route("/v1/certificates/{number}", get(certificates::get_one))
        .route(
            "/v1/certificates/{number}/revoke",
            post(certificates::revoke),
        )
        .route(
            "/v1/complaints",
            post(complaints::file).get(complaints::list),
        )
        .route("/v1/complaints/{id}", get(complaints::get_one))
        .route("/v1/supervision/stats", get(supervision::stats))
        .route("/v1/supervision/federation", get(supervision::federation))
        .route(
            "/v1/complaints/{id}/investigate",
            post(complaints::investigate),
        )
        .route("/v1/complaints/{id}/resolve", post(complaints::resolve))
        .route(
            "/v1/complaints/{id}/suspend-listing",
            post(complaints::suspend_listing),
        )
        .route(
            "/v1/complaints/{id}/lift-suspension",
            post(complaints::lift_suspension),
        )
        .route("/v1/tokens", post(tokens::create))
        .route("/v1/tokens/{hash}", delete(tokens::revoke))
        .route("/v1/orders", post(trades::place).get(trades::list))
        .route("/v1/orders/{id}", get(trades::get_one))
        .route("/v1/orders/{id}/confirm", post(trades::confirm))
        .route("/v1/orders/{id}/deliveries", post(trades::deliver))
        .route("/v1/orders/{id}/settlement", post(trades::settle))
        .route("/v1/orders/{id}/settlement/dispute", post(trades::dispute))
        .route("/v1/orders/{id}/settlement/reversal", post(trades::reverse))
        .route(
            "/v1/zone/fee-schedule",
            put(trades::set_fee_schedule).get(trades::get_fee_schedule),
        )
        .route("/v1/zone/backup", get(zone::backup))
        .route("/v1/zone/members", post(zone::add_member))
        .route("/v1/zone/members/{name}", delete(zone::remove_member))
        .route("/metrics", get(metrics::render))
        .route("/", get(crate::dashboard::index))
        .route("/assets/{file}", get(crate::dashboard::asset))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            refuse_when_removed,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            deadline::limit,
        ))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// A node removed from its zone serves its status, `/metrics` and the OpenAPI document only:
/// its replica is no longer kept up to date, and writes would be refused by the zone.
async fn refuse_when_removed(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = request.uri().path();
    let open = !path.starts_with("/v1/") || path == "/v1/status" || path == "/v1/openapi.json";
    match state.removal.reason() {
        Some(why) if !open => ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "removed_from_zone",
            format!(
                "this node takes no part in zone {} ({why}); use another member",
                state.config.zone.id
            ),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

impl Context {
    /// Proposes `cmd` through Raft (batched with concurrent writes; see [`propose`]).
    /// Returns the state machine's response and the log index of the entry that carried it.
    ///
    /// # Errors
    /// [`ApiError`] 503 when no leader answers within the wait; 504 when the outcome is unknown.
    pub async fn propose(&self, cmd: CatalogCommand) -> Result<(CommandResponse, u64), ApiError> {
        Ok(self.proposer.propose(cmd).await?)
    }

    /// As [`Context::propose`], for a command a caller asked for: a leader this node forwards
    /// it to checks `credential` again before proposing it.
    ///
    /// # Errors
    /// As [`Context::propose`].
    pub async fn propose_as(
        &self,
        cmd: CatalogCommand,
        credential: Credential,
    ) -> Result<(CommandResponse, u64), ApiError> {
        Ok(self.proposer.propose_as(cmd, credential).await?)
    }

    /// Waits until this node has applied log entry `index`: the entry of a write it proposed,
    /// which the zone committed, so that what it reads next shows the write (the leader has
    /// applied it when it answers; a follower that forwarded it may still be applying).
    ///
    /// # Errors
    /// The write took effect whatever happens here, so a node that does not apply it within
    /// [`crate::raft::client::LEADER_WAIT`] answers `504 outcome_unknown` saying so (read it
    /// back), never the 503 that says nothing was applied.
    pub async fn applied(&self, index: u64) -> Result<(), ApiError> {
        self.raft
            .wait(Some(crate::raft::client::LEADER_WAIT))
            .applied_index_at_least(Some(index), "a write's answer")
            .await
            .map(|_| ())
            .map_err(|_| {
                // Committed: unlike other `outcome_unknown` answers, it will be applied.
                ApiError::new(
                    axum::http::StatusCode::GATEWAY_TIMEOUT,
                    "outcome_unknown",
                    format!(
                        "the write was committed (log index {index}) but this node has not \
                         applied it yet; read it back, here later or from another node"
                    ),
                )
            })
    }

    /// Waits until this node's replica reflects every write committed before the call
    /// (read index through the leader, [`crate::raft::client::read_barrier`]), unless
    /// `consistency` is local.
    ///
    /// # Errors
    /// [`ApiError`] 503 when no leader confirms within the wait.
    pub async fn read_barrier(&self, consistency: &Consistency) -> Result<(), ApiError> {
        if matches!(consistency, Consistency::Local) {
            return Ok(());
        }
        Ok(crate::raft::client::read_barrier(&self.raft, &self.transport).await?)
    }

    /// What `look` finds on this replica; when `found` rejects it, this replica may only lag
    /// behind a write the zone already committed (a token, a decision, an entrustment, a
    /// listing created a moment ago through another node), so it catches up with a read
    /// barrier as `catch_up` allows and looks once more.
    ///
    /// # Errors
    /// What `look` fails with; with [`CatchUp::Always`], 503 when no leader confirms the
    /// read point.
    pub async fn look_again_if<T, F, Fut>(
        &self,
        catch_up: CatchUp<'_>,
        look: F,
        found: impl Fn(&T) -> bool,
    ) -> Result<T, ApiError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let first = look().await?;
        if found(&first) {
            return Ok(first);
        }
        match catch_up {
            CatchUp::Always => self.read_barrier(&Consistency::Linearizable).await?,
            CatchUp::Bounded(permits) => {
                let Ok(_permit) = permits.try_acquire() else {
                    return Ok(first);
                };
                if self.read_barrier(&Consistency::Linearizable).await.is_err() {
                    return Ok(first);
                }
            }
        }
        look().await
    }
}

/// When [`Context::look_again_if`] catches up with the zone before looking again.
#[derive(Clone, Copy)]
pub enum CatchUp<'a> {
    /// Every time; a read barrier that fails fails the request.
    Always,
    /// Only with one of these permits, for what anyone may ask at no cost (a made-up token):
    /// without a free permit, or when the barrier fails, the first answer stands.
    Bounded(&'a tokio::sync::Semaphore),
}
