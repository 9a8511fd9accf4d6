//! Federation routes: recognition decisions, this node's verdicts, gossip peers, and
//! submitting a root-signed key revocation.

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
use crate::catalog::tables::received_certificates::{self as received, ReceivedView};
use crate::catalog::tables::received_revocations::{self as revocations_received, RevocationView};
use crate::federation::identity::IdentityView;
use crate::federation::judge::Proposal;
use crate::federation::verdicts::{JournalFilter, Reason, VerdictRecord};
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
    let mut conn = state.db.reader().await?;
    Ok(Json(query::recognitions(&mut conn, &filter).await?))
}

/// `GET /v1/federation/certificates` query string.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReceivedParams {
    /// Only this decision.
    #[param(schema_with = received_decision_schema)]
    decision: Option<String>,
    /// Most records returned (default 100); values outside 1 to 1000 are brought within.
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    #[serde(default)]
    #[param(schema_with = consistency_schema)]
    consistency: Consistency,
}

const RECEIVED_DECISIONS: [&str; 2] = ["valid", "refused"];

fn received_decision_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(RECEIVED_DECISIONS))
        .build()
}

/// Received certificates found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReceivedPage {
    /// Newest first.
    pub items: Vec<ReceivedView>,
}

/// `GET /v1/federation/certificates?decision=&limit=` (any role): the registration
/// certificates this zone received from other zones (PROTOCOL.md 10.5), valid or refused with
/// the kind of the failed check, newest first.
#[utoipa::path(
    get,
    path = "/v1/federation/certificates",
    operation_id = "list_received_certificates",
    tag = "federation",
    params(ReceivedParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The zone's received certificates, newest first", body = ReceivedPage),
        (status = 400, description = "An unknown parameter or value (`field` names it)", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn received_certificates(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<ReceivedParams>, QueryRejection>,
) -> Result<Json<ReceivedPage>, ApiError> {
    let _ = caller;
    let Query(p) = params.map_err(query_error)?;
    let limit = decision_and_limit(
        p.decision.as_deref(),
        &RECEIVED_DECISIONS,
        p.limit.as_deref(),
    )?;
    state.read_barrier(&p.consistency).await?;
    let mut conn = state.db.reader().await?;
    let items = received::list(&mut conn, p.decision.as_deref(), limit).await?;
    Ok(Json(ReceivedPage { items }))
}

/// Checks a `decision` filter against `allowed` and brings `limit` within the verdict page's
/// bounds; the number of rows to read.
///
/// # Errors
/// `invalid_field` naming the parameter at fault.
fn decision_and_limit(
    decision: Option<&str>,
    allowed: &[&str],
    limit: Option<&str>,
) -> Result<i64, ApiError> {
    if let Some(d) = decision
        && !allowed.contains(&d)
    {
        return Err(ApiError::invalid_field(
            "decision",
            format!(
                "unknown decision {d:?}; expected one of {}",
                allowed.join(", ")
            ),
        ));
    }
    let (default, most) = VERDICT_PAGE;
    let limit = match limit {
        None => default,
        Some(l) => l.parse::<usize>().map(|n| n.clamp(1, most)).map_err(|_| {
            ApiError::invalid_field(
                "limit",
                format!("expected a whole number from 1 to {most}, got {l:?}"),
            )
        })?,
    };
    Ok(i64::try_from(limit).unwrap_or(i64::MAX))
}

/// `GET /v1/federation/certificate-revocations` query string.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RevocationParams {
    /// Only this decision.
    #[param(schema_with = revocation_decision_schema)]
    decision: Option<String>,
    /// Most records returned (default 100); values outside 1 to 1000 are brought within.
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    #[serde(default)]
    #[param(schema_with = consistency_schema)]
    consistency: Consistency,
}

const REVOCATION_DECISIONS: [&str; 3] = ["applied", "waiting", "refused"];

fn revocation_decision_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(REVOCATION_DECISIONS))
        .build()
}

/// Received certificate revocations found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RevocationPage {
    /// Newest first.
    pub items: Vec<RevocationView>,
}

/// `GET /v1/federation/certificate-revocations?decision=&limit=` (any role): the certificate
/// revocations this zone received from other zones (PROTOCOL.md 10.6), applied, waiting for
/// their certificate, or refused with the kind of the failed check, newest first.
#[utoipa::path(
    get,
    path = "/v1/federation/certificate-revocations",
    operation_id = "list_received_certificate_revocations",
    tag = "federation",
    params(RevocationParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The zone's received certificate revocations, newest first", body = RevocationPage),
        (status = 400, description = "An unknown parameter or value (`field` names it)", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn received_revocations(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<RevocationParams>, QueryRejection>,
) -> Result<Json<RevocationPage>, ApiError> {
    let _ = caller;
    let Query(p) = params.map_err(query_error)?;
    let limit = decision_and_limit(
        p.decision.as_deref(),
        &REVOCATION_DECISIONS,
        p.limit.as_deref(),
    )?;
    state.read_barrier(&p.consistency).await?;
    let mut conn = state.db.reader().await?;
    let items = revocations_received::list(&mut conn, p.decision.as_deref(), limit).await?;
    Ok(Json(RevocationPage { items }))
}

/// `GET /v1/federation/peers`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PeersView {
    /// This node's peer id.
    pub local_peer: String,
    /// Topics this node subscribes to.
    pub topics: Vec<String>,
    /// Connected peers.
    pub peers: Vec<PeerView>,
}

/// A connected gossip peer and what it has proven.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PeerView {
    /// What the transport knows of it (its `agent` is self-declared).
    #[serde(flatten)]
    pub info: PeerInfo,
    /// What it has proven: membership of this zone, or a delegation of its key.
    pub identity: IdentityView,
}

/// `GET /v1/federation/peers` (admin, operator, regulator): connected gossip peers.
#[utoipa::path(
    get,
    path = "/v1/federation/peers",
    operation_id = "list_gossip_peers",
    tag = "federation",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Connected gossip peers, each with what it has proven", body = PeersView),
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
    let own = &state.config.zone.id;
    let peers = f
        .peer_identities()
        .await
        .into_iter()
        .map(|(info, identity)| PeerView {
            info,
            identity: identity.view(own),
        })
        .collect();
    Ok(Json(PeersView {
        local_peer: f.net.local_peer().0,
        topics: f.topics(),
        peers,
    }))
}

/// `GET /v1/federation/verdicts` query string.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct VerdictParams {
    /// Only verdicts on this announcement: its content id, or the SHA-256 of the message bytes
    /// (`sha256:` and 64 lowercase hex digits).
    #[param(pattern = "^sha256:[0-9a-f]{64}$")]
    content_id: Option<String>,
    /// Only messages delivered by this peer (a libp2p peer id).
    peer: Option<String>,
    /// Only this verdict.
    #[param(schema_with = verdict_schema)]
    verdict: Option<String>,
    /// Only this kind (PROTOCOL.md 7.4).
    #[param(schema_with = kind_schema)]
    kind: Option<String>,
    /// Most records returned (default 100); values outside 1 to 1000 are brought within.
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
}

const VERDICTS: [&str; 3] = ["accept", "ignore", "reject"];
/// Default and largest page of verdicts.
const VERDICT_PAGE: (usize, usize) = (100, 1000);

fn verdict_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(VERDICTS))
        .build()
}

fn kind_schema() -> utoipa::openapi::schema::Object {
    let kinds: Vec<&'static str> = Reason::all().into_iter().map(Reason::as_str).collect();
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(kinds))
        .build()
}

/// Verdicts found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerdictPage {
    /// Newest first.
    pub items: Vec<VerdictRecord>,
}

/// `GET /v1/federation/verdicts?content_id=&peer=&verdict=&kind=&limit=` (admin, operator,
/// regulator): this node's verdicts on the gossip messages and catch-up envelopes it judged in
/// the last 24 hours (at most 10,000), newest first.
#[utoipa::path(
    get,
    path = "/v1/federation/verdicts",
    operation_id = "list_verdicts",
    tag = "federation",
    params(VerdictParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "This node's matching verdicts, newest first (kept in \
            memory: each node has its own, and a restart empties it)", body = VerdictPage),
        (status = 400, description = "An unknown parameter or value (`field` names it)", body = ErrorBody),
        (status = 403, description = "Not an admin, operator or regulator token", body = ErrorBody),
        BearerErrors,
    )
)]
pub async fn verdicts(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<VerdictParams>, QueryRejection>,
) -> Result<Json<VerdictPage>, ApiError> {
    caller.require(&[Role::Operator, Role::Regulator])?;
    let Query(p) = params.map_err(query_error)?;
    if let Some(id) = &p.content_id
        && id.parse::<xchg_protocol::ContentId>().is_err()
    {
        return Err(ApiError::invalid_field(
            "content_id",
            "expected sha256: followed by 64 lowercase hex digits",
        ));
    }
    if let Some(v) = &p.verdict
        && !VERDICTS.contains(&v.as_str())
    {
        return Err(ApiError::invalid_field(
            "verdict",
            format!(
                "unknown verdict {v:?}; expected one of {}",
                VERDICTS.join(", ")
            ),
        ));
    }
    if let Some(k) = &p.kind
        && !Reason::all().iter().any(|r| r.as_str() == k)
    {
        return Err(ApiError::invalid_field(
            "kind",
            format!("unknown kind {k:?}; PROTOCOL.md 7.4 lists them"),
        ));
    }
    let (default, most) = VERDICT_PAGE;
    let limit = match &p.limit {
        None => default,
        Some(l) => l.parse::<usize>().map(|n| n.clamp(1, most)).map_err(|_| {
            ApiError::invalid_field(
                "limit",
                format!("expected a whole number from 1 to {most}, got {l:?}"),
            )
        })?,
    };
    let filter = JournalFilter {
        id: p.content_id,
        peer: p.peer,
        verdict: p.verdict,
        kind: p.kind,
        limit,
    };
    let items = state.federation.journal.query(&filter, state.clock.now());
    Ok(Json(VerdictPage { items }))
}

/// Bytes written in JSON: lowercase hex (PROTOCOL.md 2.10). Standard base64, the form of
/// earlier releases, is still accepted on input until the next release. The two cannot be confused:
/// an envelope's base64 starts with `p` (its first byte is `a5` or `a6`), not a hex digit.
///
/// # Errors
/// A 400 naming `field`.
fn json_bytes(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    let text = text.trim();
    let is_hex = text.len().is_multiple_of(2)
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if is_hex {
        return hex::decode(text).map_err(|e| ApiError::invalid_field(field, e.to_string()));
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| {
            ApiError::invalid_field(
                field,
                "not lowercase hex (nor the standard base64 still accepted until the next release)",
            )
        })
}

/// A revocation to announce.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevocationBody {
    /// The envelope (canonical CBOR in lowercase hex; standard base64 is still accepted until
    /// the next release), signed offline with the exchange's root key (`xchg federation
    /// revoke`).
    #[schema(pattern = "^(([0-9a-f]{2})+|[A-Za-z0-9+/]+={0,2})$")]
    envelope: String,
}

/// What the node did with a revocation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RevocationResult {
    /// The revocation's content id.
    pub content_id: String,
    /// The revoked key: 64 lowercase hex digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
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
        (status = 400, description = "Malformed JSON, an envelope that is not hex (or base64), \
            not a revocation, or not signed by this exchange's root key", body = ErrorBody),
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
    let bytes = json_bytes("envelope", &body.envelope)?;
    let f = &state.federation;
    let own = state.config.exchange.id.to_string();
    let api = Peer("api".into());
    let judgement = f
        .judge(&bytes, &own, &api)
        .await
        .map_err(|e| ApiError::unavailable(&e.to_string()))?;
    f.note(
        &judgement,
        &bytes,
        &api,
        Some(&own),
        crate::federation::verdicts::Via::Api,
    );
    let reason = judgement.reason;
    let proposal = match (judgement.verdict(), judgement.proposal) {
        (Verdict::Accept, Some(Proposal::Recognize(p)))
            if p.kind == AnnouncementKind::Revocation =>
        {
            p
        }
        (Verdict::Accept, Some(_)) => {
            return Err(ApiError::invalid_field(
                "envelope",
                "not a revocation envelope",
            ));
        }
        _ if reason == Reason::Duplicate => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "this revocation is already recorded",
            ));
        }
        _ => {
            return Err(ApiError::invalid_field(
                "envelope",
                format!(
                    "refused ({}): a revocation must be signed by this exchange's root key",
                    reason.as_str()
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
