//! `GET /v1/status`: this node's view of its zone's Raft.

use axum::Json;
use axum::extract::State;
use openraft::ServerState;
use serde::Serialize;

use super::AppState;

/// One member as the leader sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberStatus {
    /// Member name.
    pub name: String,
    /// `leader`, `follower` (voter) or `learner`.
    pub role: &'static str,
    /// The last log index the leader knows this member holds (only on the leader).
    pub matched_index: Option<u64>,
}

/// The status document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// This node's name.
    pub node: String,
    /// Its zone.
    pub zone: String,
    /// The zone's name for people (e.g. 禹州市).
    pub zone_display_name: String,
    /// Its exchange.
    pub exchange: String,
    /// The exchange's name for people.
    pub exchange_display_name: String,
    /// `leader`, `follower`, `candidate`, `learner`, or `removed` (no longer a member of its
    /// zone: see `removed`).
    pub role: &'static str,
    /// Why this node is no longer a member of its zone (only when `role` is `removed`): it
    /// then serves nothing but its status until it is stopped or added back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<String>,
    /// The leader's name, if known.
    pub leader: Option<String>,
    /// Current term.
    pub term: u64,
    /// Highest committed log index known here.
    pub commit_index: u64,
    /// Highest log index applied to this node's catalog.
    pub applied_index: u64,
    /// The zone's members.
    pub members: Vec<MemberStatus>,
    /// `same` when every member answered with this node's export policy, sibling agreement
    /// and `[[outside]]` agreements (compared every 30 s), else `differs from: <names>`.
    pub zone_policy: String,
}

/// `GET /v1/status` (no token needed: health checks use it).
#[utoipa::path(
    get,
    path = "/v1/status",
    operation_id = "get_status",
    tag = "status",
    responses((status = 200, description = "This node's view of its zone's Raft", body = Status))
)]
pub async fn get_status(State(state): State<AppState>) -> Json<Status> {
    let m = state.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let name_of = |id: &u64| membership.get_node(id).map(|n| n.name.clone());
    let removed = state.removal.reason();
    let role = match m.state {
        _ if removed.is_some() => "removed",
        ServerState::Leader => "leader",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        _ => "follower",
    };
    let replication = m.replication.clone().unwrap_or_default();
    let members = membership
        .nodes()
        .map(|(id, node)| MemberStatus {
            name: node.name.clone(),
            role: if Some(*id) == m.current_leader {
                "leader"
            } else if voters.contains(id) {
                "follower"
            } else {
                "learner"
            },
            matched_index: replication.get(id).and_then(|l| l.map(|l| l.index)),
        })
        .collect();
    Json(Status {
        node: state.config.node.name.to_string(),
        zone: state.config.zone.id.to_string(),
        zone_display_name: state.config.zone.display_name.clone(),
        exchange_display_name: state.config.exchange.display_name.clone(),
        exchange: state.config.exchange.id.to_string(),
        role,
        removed,
        leader: m.current_leader.as_ref().and_then(name_of),
        term: m.current_term,
        commit_index: state
            .committed
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(m.last_applied.map_or(0, |l| l.index)),
        applied_index: m.last_applied.map_or(0, |l| l.index),
        members,
        zone_policy: match state.policy_check.differing() {
            d if d.is_empty() => "same".to_owned(),
            d => format!("differs from: {}", d.join(", ")),
        },
    })
}
