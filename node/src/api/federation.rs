//! Federation routes: recognition decisions, gossip peers, and submitting a root-signed key
//! revocation.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;
use xchg_protocol::AnnouncementKind;

use super::auth::Caller;
use super::error::{ApiError, BearerErrors, BodyErrors, ErrorBody, ProposeErrors, ReadErrors};
use super::json::JsonBody;
use super::listings::{consistency_schema, query_error};
use super::{AppState, Consistency};
use crate::catalog::query::{self, RecognitionFilter, RecognitionPage};
use crate::gossip::{Peer, PeerInfo, Verdict};

/// `GET /v1/recognitions` query string.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecognitionParams {
    /// Only this decision.
    #[param(schema_with = decision_schema)]
    decision: Option<String>,
    /// Only announcements carrying this exchange's authority.
    exchange: Option<String>,
    /// Page size (default 20); values outside 1 to 100 are brought within.
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    #[serde(default)]
    #[param(schema_with = consistency_schema)]
    consistency: Consistency,
}

const DECISIONS: [&str; 5] = ["recognised", "rejected", "stale", "delisted", "revoked"];

fn decision_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(DECISIONS))
        .build()
}

/// `GET /v1/recognitions?decision=&exchange=&limit=&cursor=`: decisions on announcements from
/// other zones and exchanges, newest first.
#[utoipa::path(
    get,
    path = "/v1/recognitions",
    operation_id = "list_recognitions",
    tag = "federation",
    params(RecognitionParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of decisions, newest first", body = RecognitionPage),
        (status = 400, description = "An unknown parameter or value (`field` names it)", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn recognitions(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<RecognitionParams>, QueryRejection>,
) -> Result<Json<RecognitionPage>, ApiError> {
    let _ = caller;
    let Query(p) = params.map_err(query_error)?;
    if let Some(d) = &p.decision
        && !DECISIONS.contains(&d.as_str())
    {
        return Err(ApiError::invalid_field(
            "decision",
            format!(
                "unknown decision {d:?}; expected one of {}",
                DECISIONS.join(", ")
            ),
        ));
    }
    let (limit, cursor) = super::listings::paging(&p.limit, &p.cursor)?;
    state.read_barrier(&p.consistency).await?;
    let filter = RecognitionFilter {
        decision: p.decision,
        exchange: p.exchange,
        limit,
        cursor,
    };
    let mut conn = state.db.read.acquire().await?;
    Ok(Json(query::recognitions(&mut conn, &filter).await?))
}

/// `GET /v1/federation/peers`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PeersView {
    /// This node's peer id.
    pub local_peer: String,
    /// Topics this node subscribes to.
    pub topics: Vec<String>,
    /// Connected peers.
    pub peers: Vec<PeerInfo>,
}

/// `GET /v1/federation/peers` (admin, operator, regulator): connected gossip peers.
#[utoipa::path(
    get,
    path = "/v1/federation/peers",
    operation_id = "list_gossip_peers",
    tag = "federation",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Connected gossip peers", body = PeersView),
        (status = 403, description = "Not an admin, operator or regulator token", body = ErrorBody),
        BearerErrors,
    )
)]
pub async fn peers(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PeersView>, ApiError> {
    caller.require(&[Role::Operator, Role::Regulator])?;
    let f = &state.federation;
    Ok(Json(PeersView {
        local_peer: f.net.local_peer().0,
        topics: f.topics(),
        peers: f.net.peers().await,
    }))
}

/// A revocation to announce.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevocationBody {
    /// The envelope (canonical CBOR, standard base64), signed offline with the exchange's root
    /// key (`xchg federation revoke`).
    envelope: String,
}

/// What the node did with a revocation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RevocationResult {
    /// The revocation's content id.
    pub content_id: String,
    /// The revoked key (base64).
    pub key: String,
    /// `revoked`.
    pub decision: String,
}

/// `POST /v1/federation/revocations` (admin): records a root-signed key revocation in the zone
/// and publishes it on the exchange's topic.
#[utoipa::path(
    post,
    path = "/v1/federation/revocations",
    operation_id = "revoke_key",
    tag = "federation",
    request_body = RevocationBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Recorded in the zone and published", body = RevocationResult),
        (status = 400, description = "Malformed JSON, an envelope that is not base64, not a \
            revocation, or not signed by this exchange's root key", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "This revocation is already recorded", body = ErrorBody),
        (status = 422, description = "The zone refused the envelope when applying it", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<RevocationBody>,
) -> Result<(StatusCode, Json<RevocationResult>), ApiError> {
    caller.require(&[])?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body.envelope.trim())
        .map_err(|e| ApiError::invalid_field("envelope", format!("not base64: {e}")))?;
    let f = &state.federation;
    let own = state.config.exchange.id.to_string();
    let judgement = f.judge(&bytes, &own, &Peer("api".into())).await;
    let proposal = match (judgement.verdict, judgement.proposal) {
        (Verdict::Accept, Some(p)) if p.kind == AnnouncementKind::Revocation => p,
        (Verdict::Accept, Some(_)) => {
            return Err(ApiError::invalid_field(
                "envelope",
                "not a revocation envelope",
            ));
        }
        (_, _) if judgement.reason == "duplicate" => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "this revocation is already recorded",
            ));
        }
        (_, _) => {
            return Err(ApiError::invalid_field(
                "envelope",
                format!(
                    "refused ({}): a revocation must be signed by this exchange's root key",
                    judgement.reason
                ),
            ));
        }
    };
    let content_id = proposal.content_id.to_string();
    let envelope = proposal.envelope.clone();
    let (response, _) = state
        .propose_as(
            crate::catalog::CatalogCommand::Recognize(Box::new(proposal)),
            caller.credential,
        )
        .await?;
    let applied = response?;
    f.publish_envelope(envelope);
    Ok((
        StatusCode::CREATED,
        Json(RevocationResult {
            content_id,
            key: applied.object_id,
            decision: "revoked".into(),
        }),
    ))
}
