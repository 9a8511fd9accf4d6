//! The HTTP API (`/v1`, JSON) and `/metrics`.
//!
//! One file per resource. Writes become catalog commands proposed through Raft: on a follower
//! they are forwarded to the leader over the zone transport, so a client never has to find the
//! leader. Reads are linearizable unless `?consistency=local` asks for the local replica.

pub mod audit;
pub mod auth;
pub mod error;
pub mod json;
pub mod listings;
pub mod metrics;
pub mod status;
pub mod tokens;
pub mod zone;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{delete, get, post};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use serde::Deserialize;
use xchg_federation_config::NodeConfig;

use crate::catalog::{CatalogCommand, CommandResponse};
use crate::raft::tls::MemberKeys;
use crate::raft::transport::{
    ForwardError, TransportError, ZoneRequest, ZoneResponse, ZoneTransport,
};
use crate::raft::{NodeId, Raft};
use crate::store::Db;
use error::ApiError;

/// How long a write or a linearizable read may wait for a leader before answering 503.
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// Timeout of one forwarded request.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handlers need.
pub struct Context {
    /// The node's validated config.
    pub config: Arc<NodeConfig>,
    /// The node's Raft.
    pub raft: Raft,
    /// The node's database.
    pub db: Db,
    /// The zone transport, for forwarding to the leader.
    pub transport: Arc<dyn ZoneTransport>,
    /// Keys allowed on the zone transport (a member being added is allowed at once).
    pub member_keys: MemberKeys,
    /// Prometheus metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// The highest committed index the log store has seen.
    pub committed: Arc<std::sync::atomic::AtomicU64>,
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

/// The fate of a forwarded write.
enum Forwarded {
    /// Applied by the leader.
    Done((CommandResponse, u64)),
    /// Certainly not proposed; try again (towards this leader, if known).
    Retry(Option<NodeId>),
    /// Sent, but whether it was applied is unknown.
    Unknown(String),
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
        .route("/v1/status", get(status::get_status))
        .route("/v1/listings", post(listings::submit).get(listings::search))
        .route(
            "/v1/listings/{id}",
            get(listings::get_one).put(listings::update),
        )
        .route("/v1/listings/{id}/approve", post(listings::approve))
        .route("/v1/listings/{id}/reject", post(listings::reject))
        .route("/v1/listings/{id}/delist", post(listings::delist))
        .route("/v1/audit", get(audit::list))
        .route("/v1/tokens", post(tokens::create))
        .route("/v1/tokens/{hash}", delete(tokens::revoke))
        .route("/v1/zone/members", post(zone::add_member))
        .route("/v1/zone/members/{name}", delete(zone::remove_member))
        .route("/metrics", get(metrics::render))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

impl Context {
    fn leader_node(&self, leader: Option<NodeId>) -> Option<(NodeId, crate::raft::MemberNode)> {
        let id = leader.or_else(|| self.raft.metrics().borrow().current_leader)?;
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    /// Proposes `cmd` through Raft, on this node if it leads, else through the leader.
    /// Returns the state machine's response and the entry's log index.
    ///
    /// A write is retried only when it certainly was not proposed (no leader yet, the node
    /// asked was not the leader, the leader could not be connected to). If a forwarded write
    /// times out after it was sent, it may have been applied: the client gets
    /// `outcome_unknown` rather than a blind retry that could apply it twice.
    ///
    /// # Errors
    /// [`ApiError`] 503 when no leader answers within the wait; 504 when the outcome is unknown.
    pub async fn propose(&self, cmd: CatalogCommand) -> Result<(CommandResponse, u64), ApiError> {
        let started = Instant::now();
        let deadline = started + LEADER_WAIT;
        let mut hint: Option<NodeId> = None;
        let result = loop {
            let leader = match self.raft.client_write(cmd.clone()).await {
                Ok(r) => break Ok((r.data, r.log_id.index)),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    f.leader_id.or(hint)
                }
                Err(e) => {
                    break Err(ApiError::unavailable(&format!(
                        "Raft cannot take writes: {e}"
                    )));
                }
            };
            match self.forward_write(leader, &cmd).await {
                Forwarded::Done(r) => break Ok(r),
                Forwarded::Retry(next) => hint = next,
                Forwarded::Unknown(msg) => break Err(ApiError::outcome_unknown(&msg)),
            }
            if Instant::now() >= deadline {
                break Err(ApiError::unavailable(
                    "no Raft leader is available in this zone; retry shortly",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.metrics.observe_write(started.elapsed());
        result
    }

    async fn forward_write(&self, leader: Option<NodeId>, cmd: &CatalogCommand) -> Forwarded {
        let Some((id, node)) = self.leader_node(leader) else {
            return Forwarded::Retry(None);
        };
        match self
            .transport
            .call(
                id,
                &node,
                ZoneRequest::ForwardWrite(cmd.clone()),
                FORWARD_TIMEOUT,
            )
            .await
        {
            Ok(ZoneResponse::ForwardWrite(Ok(r))) => Forwarded::Done(r),
            Ok(ZoneResponse::ForwardWrite(Err(ForwardError::NotLeader { leader }))) => {
                Forwarded::Retry(leader)
            }
            Ok(ZoneResponse::ForwardWrite(Err(ForwardError::Unavailable(msg)))) => {
                Forwarded::Unknown(msg)
            }
            Ok(_) => Forwarded::Unknown("unexpected answer from the leader".into()),
            Err(TransportError::Unreachable(_)) => Forwarded::Retry(None),
            Err(e) => Forwarded::Unknown(format!(
                "forwarding to the leader failed after sending: {e}"
            )),
        }
    }

    /// Waits until this node's replica reflects every write committed before the call
    /// (read index through the leader), unless `consistency` is local.
    ///
    /// # Errors
    /// [`ApiError`] 503 when no leader confirms within the wait.
    pub async fn read_barrier(&self, consistency: &Consistency) -> Result<(), ApiError> {
        if matches!(consistency, Consistency::Local) {
            return Ok(());
        }
        let deadline = Instant::now() + LEADER_WAIT;
        let mut hint = None;
        let index = loop {
            let attempt = match self.raft.ensure_linearizable().await {
                Ok(log_id) => break log_id.map_or(0, |l| l.index),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    self.forward_read_index(f.leader_id.or(hint)).await
                }
                Err(e) => Err(ForwardError::Unavailable(e.to_string())),
            };
            match attempt {
                Ok(i) => break i,
                Err(ForwardError::NotLeader { leader }) => hint = leader,
                Err(ForwardError::Unavailable(_)) => {}
            }
            if Instant::now() >= deadline {
                return Err(ApiError::unavailable(
                    "no Raft leader confirmed a read point; retry, or pass ?consistency=local",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(remaining))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|_| {
                ApiError::unavailable("this node is catching up; retry, or read from another node")
            })?;
        Ok(())
    }

    async fn forward_read_index(&self, leader: Option<NodeId>) -> Result<u64, ForwardError> {
        let Some((id, node)) = self.leader_node(leader) else {
            return Err(ForwardError::Unavailable("leader unknown".into()));
        };
        match self
            .transport
            .call(id, &node, ZoneRequest::ReadIndex, FORWARD_TIMEOUT)
            .await
        {
            Ok(ZoneResponse::ReadIndex(r)) => r,
            Ok(_) => Err(ForwardError::Unavailable(
                "unexpected answer from leader".into(),
            )),
            Err(e) => Err(ForwardError::Unavailable(e.to_string())),
        }
    }
}
