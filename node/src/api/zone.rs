//! `/v1/zone/members`: add and remove zone members at run time (admin), by joint consensus.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;
use xchg_protocol::{NodeName, PublicKey};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, BearerErrors, BodyErrors, ErrorBody};
use super::json::JsonBody;
use crate::catalog::CatalogCommand;
use crate::raft::transport::{MembershipChange, MembershipError, ZoneRequest, ZoneResponse};
use crate::raft::{MemberNode, NodeId, node_id};

/// `POST /v1/zone/members` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// Node name, unique in the zone.
    pub name: String,
    /// Its Raft address, `host:port`: an IP address (IPv6 in brackets; not one that reaches no
    /// machine: `0.0.0.0`, `::`, multicast, broadcast) or a DNS host name
    /// (letters, digits and hyphens in dot-separated labels of at most 63 characters, 253 in
    /// all, the last not starting with a digit), and a port from 1 to 65535 without leading
    /// zeros. Stored normalised (a name in lower case, a v4-mapped v6 address as v4); members
    /// resolve a name at each connection.
    #[schema(max_length = 259, example = "xc-municipal-4.example.cn:7110")]
    pub raft_addr: String,
    /// Base URL of its API: `http://` or `https://`, its host an IP address that reaches a
    /// machine or a DNS host name (as `raft_addr`'s), an optional port and path, no user, query
    /// or fragment.
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

/// `DELETE /v1/zone/members/{name}` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    /// Remove even if fewer voters than a majority of the zone's configured members remain
    /// (`[[zone.members]]` of the config): a zone shrunk that far loses its majority with its
    /// next failure. Default `false`.
    #[serde(default)]
    pub force: bool,
}

/// The longest a membership request is served: adding a member waits until it has caught up
/// with the catalog.
pub const MEMBERSHIP_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Carries out `change` (on the leader, forwarded if need be), then records who asked and how
/// it ended in the audit chain; at most [`MEMBERSHIP_WAIT`].
async fn change(
    state: &AppState,
    caller: &Caller,
    what: String,
    change: MembershipChange,
) -> Result<Membership, ApiError> {
    tokio::time::timeout(MEMBERSHIP_WAIT, change_now(state, caller, what, change))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "outcome_unknown",
                format!(
                    "the membership change did not finish within {MEMBERSHIP_WAIT:?} (a large \
                     catalog to copy to a new member?); it may still complete: read GET \
                     /v1/status before repeating it"
                ),
            )
        })?
}

async fn change_now(
    state: &AppState,
    caller: &Caller,
    what: String,
    change: MembershipChange,
) -> Result<Membership, ApiError> {
    let service = crate::raft::transport::ZoneService::new(state.raft.clone())
        .with_member_keys(state.member_keys.clone())
        .with_policy(state.config.zone_policy_digest())
        .with_transport(state.transport.clone());
    let mut answer = service.change_membership_as_leader(change.clone()).await;
    if let Err(MembershipError::NotLeader { leader }) = &answer {
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
                MEMBERSHIP_WAIT,
            )
            .await
        {
            Ok(ZoneResponse::ChangeMembers(r)) => r,
            Ok(_) => Err(MembershipError::Failed(
                "unexpected answer from the leader".into(),
            )),
            Err(e) => Err(MembershipError::Failed(format!(
                "the leader did not answer ({e}); read GET /v1/status to see whether it applied"
            ))),
        };
    }
    if !matches!(answer, Err(MembershipError::Refused { .. })) {
        record(state, caller, what, &answer).await;
    }
    let voters = answer.map_err(|e| match e {
        MembershipError::Refused { code, message } => match code.as_str() {
            "not_found" => ApiError::not_found(message),
            _ => ApiError::new(StatusCode::CONFLICT, conflict_code(&code), message),
        },
        MembershipError::NotLeader { .. } => {
            ApiError::unavailable("the zone's leader changed during the request; retry it")
        }
        MembershipError::Failed(why) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "membership_change_failed",
            format!("membership change failed: {why}"),
        ),
    })?;
    Ok(Membership { voters })
}

fn conflict_code(code: &str) -> &'static str {
    match code {
        "last_member" => "last_member",
        "policy_differs" => "policy_differs",
        _ => "conflict",
    }
}

/// Records an attempted change in the audit chain (a failure to record is logged: the
/// membership change itself has happened or not regardless).
async fn record(
    state: &AppState,
    caller: &Caller,
    change: String,
    answer: &Result<Vec<String>, MembershipError>,
) {
    let outcome = match answer {
        Ok(_) => "ok".to_owned(),
        Err(e) => {
            let why: String = e.to_string().chars().take(500).collect();
            format!("failed: {why}")
        }
    };
    let cmd = CatalogCommand::RecordMembershipChange {
        change,
        outcome,
        at: state.clock.now(),
        actor: caller.actor.clone(),
    };
    if let Err(e) = state.propose_as(cmd, caller.credential.clone()).await {
        tracing::warn!(error = ?e, "could not record a membership change in the audit chain");
    }
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
        (status = 409, description = "`conflict`: a member of that name exists with another \
            address or key, or the key was revoked by its exchange's root; `policy_differs`: the \
            node has another export policy, sibling agreement, `[[outside]]` agreements or \
            founding parties than the zone", body = ErrorBody),
        (status = 503, description = "No Raft leader, or the change failed \
            (`membership_change_failed`: the node did not answer the leader at its `raft_addr` \
            within 10 s on a mutual-TLS connection only its `public_key` may answer, and nothing \
            changed; or a later step failed and the message says what the membership was left \
            as, a learner added for it removed again)", body = ErrorBody),
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
    let raft_addr = xchg_federation_config::raft_addr(&body.raft_addr)
        .map_err(|e| ApiError::invalid_field("raft_addr", e))?;
    let api_url = xchg_federation_config::api_url(&body.api_url)
        .map_err(|e| ApiError::invalid_field("api_url", e))?;
    let key = PublicKey::from_base64(&body.public_key)
        .map_err(|e| ApiError::invalid_field("public_key", e.to_string()))?;
    let node = MemberNode {
        name: name.to_string(),
        raft_addr: raft_addr.to_string(),
        api_url,
        public_key: key.as_bytes().to_vec(),
    };
    Ok(Json(
        change(
            &state,
            &caller,
            format!("add {name}"),
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
    params(("name" = NodeName, Path, description = "The member's node name"), RemoveQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Removed; the zone's voters now", body = Membership),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No member with this name in the zone", body = ErrorBody),
        (status = 409, description = "`last_member`: it is the zone's only voter; \
            `would_lose_majority`: fewer voters than a majority of the configured members would \
            remain (repeat with `?force=true` to remove it anyway)", body = ErrorBody),
        (status = 503, description = "No Raft leader, or the change failed \
            (`membership_change_failed`)", body = ErrorBody),
        BearerErrors,
    )
)]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    query: Result<Query<RemoveQuery>, QueryRejection>,
) -> Result<Json<Membership>, ApiError> {
    caller.require(&[Role::Admin])?;
    let Query(query) = query.map_err(super::listings::query_error)?;
    let id = node_id(&name);
    let membership = state
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .clone();
    if membership.get_node(&id).is_none() {
        return Err(ApiError::not_found(format!(
            "no member {name:?} in this zone"
        )));
    }
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    let remaining = voters.iter().filter(|v| **v != id).count();
    let configured = state.config.zone.members.len();
    if voters.contains(&id) && remaining > 0 && remaining * 2 <= configured && !query.force {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "would_lose_majority",
            format!(
                "removing {name} leaves {remaining} voter(s), not a majority of the zone's \
                 {configured} configured members: the zone would stop at its next failure; \
                 add members first, or repeat with ?force=true"
            ),
        ));
    }
    Ok(Json(
        change(
            &state,
            &caller,
            format!("remove {name}"),
            MembershipChange::Remove { id },
        )
        .await?,
    ))
}

/// `GET /v1/zone/backup`: a consistent copy of the zone's replicated state and its log
/// position, as one file (the layout of PROTOCOL.md's snapshot file; `xchg backup` saves it and
/// `xchg restore` puts it in a data directory).
#[utoipa::path(
    get,
    path = "/v1/zone/backup",
    operation_id = "get_zone_backup",
    tag = "zone",
    params(super::listings::ReadParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The backup file (`application/octet-stream`, with \
            `Content-Length`): every replicated table read in one read transaction of this \
            node's catalog, at the log position named by `X-Xchg-Backup-Index` and \
            `X-Xchg-Backup-Term`. With `consistency=linearizable` (the default) it holds every \
            write the zone acknowledged before the request; `local` copies this replica as it \
            is, without a leader. It must be delivered within `api.request_timeout_ms` plus \
            `api.header_read_timeout_ms`; for a catalog too large for that, back up a stopped \
            node with `xchg backup --data-dir`",
            content_type = "application/octet-stream", body = Vec<u8>,
            headers(
                ("X-Xchg-Backup-Index" = u64, description = "The log index the backup holds \
                    the zone at"),
                ("X-Xchg-Backup-Term" = u64, description = "The term of that log entry"),
            )),
        (status = 400, description = "An unknown query parameter or consistency value \
            (`invalid_query`)", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 503, description = "No Raft leader to read the commit point from \
            (`unavailable`); try again, or ask with `consistency=local`. \
            `backup_in_progress`: another backup of this node is being taken or sent (one at a \
            time: each is a copy of the catalog on the node's disk until it is sent); try \
            again when it ends", body = ErrorBody),
        BearerErrors,
    )
)]
pub async fn backup(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<super::listings::ReadParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let Query(params) = params.map_err(super::listings::query_error)?;
    // Held until the spooled copy is sent or dropped (by the spool while it runs, then by the
    // body), so that retries cannot fill the node's disk with copies.
    let permit = state.backups.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "backup_in_progress",
            "another backup of this node is being taken or sent; try again when it ends",
        )
    })?;
    state.read_barrier(&params.consistency).await?;
    let catalog = state.db.catalog_path().to_owned();
    let started = std::time::Instant::now();
    // Spooled to an unnamed file in the data directory, not held in memory: a catalog of a
    // million listings is most of a gigabyte.
    let (backup, permit) = tokio::task::spawn_blocking(move || {
        let dir = catalog.parent().unwrap_or(std::path::Path::new("."));
        crate::store::backup::spool(&catalog, dir).map(|spooled| (spooled, permit))
    })
    .await
    .map_err(|e| ApiError::internal(format!("the backup task failed: {e}")))?
    .map_err(|e| ApiError::internal(format!("writing the backup: {e}")))?;
    let (term, index) = backup
        .meta
        .last_log_id
        .map_or((0, 0), |id| (id.leader_id.term, id.index));
    let length = backup.head.len() as u64 + backup.data_len;
    tracing::info!(
        caller = %caller.actor.id,
        index,
        rows = backup.rows,
        bytes = length,
        encode_ms = started.elapsed().as_millis(),
        "backup taken"
    );
    let head = futures::stream::once(std::future::ready(Ok::<_, std::io::Error>(
        axum::body::Bytes::from(backup.head),
    )));
    let data = futures::stream::try_unfold(
        (tokio::fs::File::from_std(backup.data), permit),
        |(mut file, permit)| async move {
            use tokio::io::AsyncReadExt as _;
            let mut piece = vec![0u8; 256 * 1024];
            let n = file.read(&mut piece).await?;
            piece.truncate(n);
            Ok::<_, std::io::Error>(
                (n > 0).then(|| (axum::body::Bytes::from(piece), (file, permit))),
            )
        },
    );
    let mut response = Body::from_stream(futures::StreamExt::chain(head, data)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    let file = format!(
        "xchg-{}-{index}.backup",
        state.config.zone.id.to_string().replace('/', "-")
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert("x-xchg-backup-index", HeaderValue::from(index));
    headers.insert("x-xchg-backup-term", HeaderValue::from(term));
    Ok(response)
}
