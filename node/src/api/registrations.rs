//! `/v1/registrations`: a provider registers one of its listings (登记: source, rights claimed,
//! evidence hashes), an operator approves it (this node builds and signs the certificate, then
//! proposes it) or rejects it, and anyone with a token reads it. The rules are in
//! [`crate::catalog::registrations`].

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;
use xchg_protocol::{ContentId, Keypair, Right, SignedCertificate, SignedDelegation, Source};

use super::auth::Caller;
use super::error::{ApiError, BearerErrors, BodyErrors, ErrorBody, ProposeErrors, ReadErrors};
use super::idempotency::{IdempotencyHeader, IdempotencyKey};
use super::json::{JsonBody, OptionalJsonBody};
use super::listings::{ReadParams, ReasonBody, query_error};
use super::text::{self, Text};
use super::{AppState, CatchUp, params};
use crate::catalog::registrations::{
    self, NewRegistration, REASON_CHARS, Registration, RegistrationState,
};
use crate::catalog::tables::listings;
use crate::catalog::{CatalogCommand, Refusal};

/// What this node signs certificates with: its node key and the exchange root's delegation of
/// it (the same pair it signs announcements with).
pub struct Signer {
    /// The node key.
    pub key: Keypair,
    /// Its delegation.
    pub delegation: SignedDelegation,
}

/// `POST /v1/registrations` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationRequest {
    /// The listing registered: one of this zone's own, submitted or listed, whose
    /// `provider.id` is the caller's party (or a party that entrusted the caller's party, a
    /// broker, with `submit_registration`). `sha256:` followed by 64 lowercase hex digits.
    #[schema(pattern = "^sha256:[0-9a-f]{64}$")]
    pub listing_id: String,
    /// Where the data came from.
    pub source: Source,
    /// The rights claimed: at least one, none twice.
    #[schema(min_items = 1)]
    pub rights: Vec<Right>,
    /// SHA-256 content ids of the evidence documents (`sha256:` and 64 lowercase hex digits
    /// each): 1 to 32, none twice.
    #[schema(min_items = 1, max_items = 32)]
    pub evidence_hashes: Vec<String>,
}

/// The response to a registration.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegistrationCreated {
    /// Its number in this zone.
    pub id: u64,
    /// `pending`.
    pub state: RegistrationState,
}

fn content_id(field: &str, raw: &str) -> Result<ContentId, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::invalid_field(
            field,
            format!(
                "{raw:?} is not a content id: expected sha256: followed by 64 lowercase hex digits"
            ),
        )
    })
}

/// `POST /v1/registrations` (provider).
#[utoipa::path(
    post,
    path = "/v1/registrations",
    operation_id = "submit_registration",
    tag = "registrations",
    params(IdempotencyHeader),
    request_body = RegistrationRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Registered: state `pending`", body = RegistrationCreated),
        (status = 400, description = "Malformed JSON; a `listing_id` or an `evidence_hashes[i]` \
            that is not a content id; no right, a right twice, no evidence hash, more than 32, \
            or one twice (`field` names it)", body = ErrorBody),
        (status = 403, description = "Not a provider token (an admin token has no party to \
            register for); `forbidden`: the listing is another party's (and the caller is not \
            its broker), or comes from another zone; \
            `party_not_admitted`; `not_entrusted`: a broker without a `submit_registration` \
            entrustment from the listing's party", body = ErrorBody),
        (status = 404, description = "No listing with this id in this zone", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: the listing is rejected or \
            delisted; `conflict`: a registration of it is still pending", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    idempotency: IdempotencyKey,
    JsonBody(body): JsonBody<RegistrationRequest>,
) -> Result<(StatusCode, Json<RegistrationCreated>), ApiError> {
    // The provider's own statement of source and rights: an admin token has no party to make
    // it for (README: provider routes need a token bound to the party named).
    caller.require_exactly(&[Role::Provider])?;
    let listing_id = content_id("listing_id", &body.listing_id)?;
    let evidence = body
        .evidence_hashes
        .iter()
        .enumerate()
        .map(|(i, e)| content_id(&format!("evidence_hashes[{i}]"), e))
        .collect::<Result<Vec<_>, _>>()?;
    registrations::shape(&body.rights, &evidence)
        .map_err(|(field, why)| ApiError::invalid_field(field, why))?;
    // A listing created a moment ago through another node may not be here yet.
    let look = || async {
        let mut conn = state.db.reader().await?;
        Ok(registrations::listing_owner(&mut conn, &listing_id).await?)
    };
    let owner = state
        .look_again_if(CatchUp::Always, look, Option::is_some)
        .await?;
    let Some(listings::Owner { provider, .. }) = owner else {
        return Err(
            ApiError::not_found(format!("no listing {listing_id}")).with_field("listing_id")
        );
    };
    let holder = provider.parse().map_err(ApiError::internal)?;
    let at = state.clock.now();
    let cmd = CatalogCommand::SubmitRegistration {
        registration: Box::new(NewRegistration {
            listing_id,
            holder,
            source: body.source,
            rights: body.rights.clone(),
            evidence,
        }),
        at,
        actor: caller.actor.clone(),
    };
    // The listing's party registers it; another party only as its entrusted broker.
    let cmd = super::parties::act_for(&state, &caller, cmd)
        .await
        .map_err(|e| e.with_field("listing_id"))?;
    let cmd = idempotency.wrap(&body, cmd, at);
    let (response, _) = state.propose_as(cmd, caller.credential).await?;
    let id = response?.object_id.parse().map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(RegistrationCreated {
            id,
            state: RegistrationState::Pending,
        }),
    ))
}

async fn read(state: &AppState, id: u64) -> Result<Registration, ApiError> {
    let mut conn = state.db.reader().await?;
    registrations::registration(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::from(Refusal::NotFound(format!("no registration {id}"))))
}

/// Registration `id`, caught up with the zone if this replica does not hold it yet (one
/// submitted a moment ago through another node). What a registration states never changes
/// once recorded, so the copy held here is the one to certify; a decision this replica has
/// not applied yet is the state machine's to refuse.
async fn known(state: &AppState, id: u64) -> Result<Registration, ApiError> {
    let look = || async {
        let mut conn = state.db.reader().await?;
        Ok(registrations::registration(&mut conn, id).await?)
    };
    state
        .look_again_if(CatchUp::Always, look, Option::is_some)
        .await?
        .ok_or_else(|| ApiError::from(Refusal::NotFound(format!("no registration {id}"))))
}

/// `GET /v1/registrations/{id}` (any token).
#[utoipa::path(
    get,
    path = "/v1/registrations/{id}",
    operation_id = "get_registration",
    tag = "registrations",
    params(("id" = u64, Path, description = "Registration number"), ReadParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The registration and its decision", body = Registration),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 404, description = "No registration with this number", body = ErrorBody),
        BearerErrors,
        ReadErrors,
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<Registration>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let id = params::number_in_path("registration", &id)?;
    state.read_barrier(&p.consistency).await?;
    Ok(Json(read(&state, id).await?))
}

/// `POST /v1/registrations/{id}/approve` body.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// What the review found: at most 2000 characters under the text rule.
    #[serde(default)]
    pub notes: Option<String>,
}

/// The response to an approval.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Approved {
    /// The certificate issued, e.g. `XC-2026-YUZHOU-000001`.
    pub certificate_number: String,
}

fn note_text<'a>(field: &'a str, value: &'a str, required: bool) -> Text<'a> {
    Text {
        field,
        value,
        max: REASON_CHARS,
        required,
    }
}

/// `POST /v1/registrations/{id}/approve` (operator): this node signs the certificate.
#[utoipa::path(
    post,
    path = "/v1/registrations/{id}/approve",
    operation_id = "approve_registration",
    tag = "registrations",
    params(("id" = u64, Path, description = "Registration number")),
    request_body(
        content = Option<ApproveBody>,
        description = "Review notes; the body may be left out, or be `null` or `{}`",
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Approved: the certificate `XC-<year>-<ZONE>-<number>` \
            is issued, signed by this node's key under the exchange's delegation", body = Approved),
        (status = 400, description = "Malformed JSON, or `notes` over 2000 characters or \
            against the text rule", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No registration with this number", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: the registration is already \
            approved or rejected", body = ErrorBody),
        (status = 422, description = "`invalid`: the certificate this node signed does not \
            verify against the exchange's root key (for example an expired delegation), or \
            the registration changed while it was signed; retry", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<ApproveBody>,
) -> Result<Json<Approved>, ApiError> {
    caller.require(&[Role::Operator])?;
    let id = params::number_in_path("registration", &id)?;
    if let Some(notes) = &body.notes {
        text::check(&[note_text("notes", notes, false)])?;
    }
    let reg = known(&state, id).await?;
    if reg.state != RegistrationState::Pending {
        return Err(registrations::decided(id, reg.state).into());
    }
    // Signed here, before proposing: apply only verifies (a state machine must not sign).
    let at = state.clock.now();
    let certificate = registrations::certificate_for(&state.config.zone.id, &reg, at);
    let signed = SignedCertificate::sign(
        &certificate,
        &state.signer.key,
        state.signer.delegation.clone(),
    );
    let cmd = CatalogCommand::ApproveRegistration {
        registration_id: id,
        notes: body.notes,
        certificate: signed.to_bytes(),
        at,
        actor: caller.actor,
    };
    let (response, _) = state.propose_as(cmd, caller.credential).await?;
    Ok(Json(Approved {
        certificate_number: response?.object_id,
    }))
}

/// `POST /v1/registrations/{id}/reject` (operator).
#[utoipa::path(
    post,
    path = "/v1/registrations/{id}/reject",
    operation_id = "reject_registration",
    tag = "registrations",
    params(("id" = u64, Path, description = "Registration number")),
    request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Rejected: state `rejected`", body = Registration),
        (status = 400, description = "Malformed JSON, or a `reason` that is empty, over 2000 \
            characters or against the text rule", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No registration with this number", body = ErrorBody),
        (status = 409, description = "`illegal_transition`: the registration is already \
            approved or rejected", body = ErrorBody),
        BearerErrors,
        BodyErrors,
        ProposeErrors,
    )
)]
pub async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<Registration>, ApiError> {
    caller.require(&[Role::Operator])?;
    let id = params::number_in_path("registration", &id)?;
    text::check(&[note_text("reason", &body.reason, true)])?;
    let cmd = CatalogCommand::RejectRegistration {
        registration_id: id,
        reason: body.reason,
        at: state.clock.now(),
        actor: caller.actor,
    };
    let (response, index) = state.propose_as(cmd, caller.credential).await?;
    response?;
    state.applied(index).await?;
    Ok(Json(read(&state, id).await?))
}
