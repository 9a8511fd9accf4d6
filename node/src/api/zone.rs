//! `/v1/zone/members`: add and remove zone members at run time (admin), by joint consensus.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;
use xchg_protocol::{NodeName, PublicKey};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, BearerErrors, BodyErrors, ErrorBody};
use super::json::JsonBody;
use crate::raft::transport::{ForwardError, MembershipChange, ZoneRequest, ZoneResponse};
use crate::raft::{MemberNode, node_id};

/// `POST /v1/zone/members` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// Node name, unique in the zone.
    pub name: String,
    /// Its Raft address, `host:port`.
    pub raft_addr: String,
    /// Base URL of its API.
    pub api_url: String,
    /// Its node key, base64 (as in config files).
    pub public_key: String,
}

/// The zone's membership after a change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Membership {
    /// Voting members' names.
    pub voters: Vec<String>,
}

async fn change(state: &AppState, change: MembershipChange) -> Result<Membership, ApiError> {
    let service = crate::raft::transport::ZoneService::new(state.raft.clone())
        .with_member_keys(state.member_keys.clone());
    let mut answer = service.change_membership_as_leader(change.clone()).await;
    if let Err(ForwardError::NotLeader { leader }) = &answer {
        let Some((id, node)) = crate::raft::leader_node(&state.raft, *leader) else {
            return Err(ApiError::unavailable(
                "no Raft leader is available in this zone; retry shortly",
            ));
        };
        answer = match state
            .transport
            .call(
                id,
                &node,
                ZoneRequest::ChangeMembers(change),
                std::time::Duration::from_secs(120),
            )
            .await
        {
            Ok(ZoneResponse::ChangeMembers(r)) => r,
            Ok(_) => Err(ForwardError::Unavailable(
                "unexpected answer from the leader".into(),
            )),
            Err(e) => Err(ForwardError::Unavailable(e.to_string())),
        };
    }
    let voters = answer.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("membership change failed: {e}"),
        )
    })?;
    Ok(Membership { voters })
}

/// `POST /v1/zone/members`: adds a node as a learner, waits for it to catch up, then makes it
/// a voter.
#[utoipa::path(
    post,
    path = "/v1/zone/members",
    operation_id = "add_zone_member",
    tag = "zone",
    request_body = NewMember,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The node is a voter; the zone's voters now", body = Membership),
        (status = 400, description = "Malformed JSON, or an invalid `name`, `raft_addr`, \
            `api_url` or `public_key` (`field` names it)", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 503, description = "No Raft leader, or the membership change failed", body = ErrorBody),
        BearerErrors,
        BodyErrors,
    )
)]
pub async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<NewMember>,
) -> Result<Json<Membership>, ApiError> {
    caller.require(&[Role::Admin])?;
    let name: NodeName = body
        .name
        .parse()
        .map_err(|e: xchg_protocol::IdError| ApiError::invalid_field("name", e.to_string()))?;
    body.raft_addr
        .parse::<std::net::SocketAddr>()
        .map_err(|_| {
            ApiError::invalid_field("raft_addr", "expected host:port, e.g. 127.0.0.1:7110")
        })?;
    if !(body.api_url.starts_with("http://") || body.api_url.starts_with("https://")) {
        return Err(ApiError::invalid_field(
            "api_url",
            "expected an http:// or https:// URL",
        ));
    }
    let key = PublicKey::from_base64(&body.public_key)
        .map_err(|e| ApiError::invalid_field("public_key", e.to_string()))?;
    let node = MemberNode {
        name: name.to_string(),
        raft_addr: body.raft_addr,
        api_url: body.api_url.trim_end_matches('/').to_owned(),
        public_key: key.as_bytes().to_vec(),
    };
    Ok(Json(
        change(
            &state,
            MembershipChange::Add {
                id: node_id(name.as_str()),
                node,
            },
        )
        .await?,
    ))
}

/// `DELETE /v1/zone/members/{name}`.
#[utoipa::path(
    delete,
    path = "/v1/zone/members/{name}",
    operation_id = "remove_zone_member",
    tag = "zone",
    params(("name" = NodeName, Path, description = "The member's node name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Removed; the zone's voters now", body = Membership),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No member with this name in the zone", body = ErrorBody),
        (status = 503, description = "No Raft leader, or the membership change failed", body = ErrorBody),
        BearerErrors,
    )
)]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Membership>, ApiError> {
    caller.require(&[Role::Admin])?;
    let id = node_id(&name);
    let known = state
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .get_node(&id)
        .is_some();
    if !known {
        return Err(ApiError::not_found(format!(
            "no member {name:?} in this zone"
        )));
    }
    Ok(Json(change(&state, MembershipChange::Remove { id }).await?))
}
