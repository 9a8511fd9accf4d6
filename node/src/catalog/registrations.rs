//! Registrations and rights confirmation (登记确权): a provider registers one of the zone's
//! listings with its source, the rights it claims and the hashes of its evidence; an operator
//! approves it (the zone issues a signed certificate) or rejects it; an operator may revoke a
//! certificate. The rules live here; their SQL in `tables::registrations` and
//! `tables::certificates`.
//!
//! The state machine never signs: the node that handles an approval builds the certificate
//! ([`certificate_for`]), signs it with its node key and proposes the signed bytes; [`approve`]
//! applies them only if they verify against the exchange's root key at their issue time and
//! state exactly the registration approved, so every replica reaches the same decision.

use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;
use xchg_protocol::certificate::{MAX_EVIDENCE, check_revocation, number};
use xchg_protocol::certificate_revocation::{
    self, CertificateRevocation, verify_certificate_revocation,
};
use xchg_protocol::{
    Certificate, ContentId, Limits, PartyId, Right, SignedCertificate, Source, Timestamp,
    TrustStore, VerifiedCertificate, VerifyError, ZoneId, verify_certificate,
};

use super::tables::certificates::{self as certificate_table, Issued};
use super::tables::registrations::{self as table, Decision};
use super::tables::{listings, outbox, revocations};
use super::{Actor, Applied, CommandResponse, Refusal, ZoneFacts, parties};

/// Longest approval note, rejection or revocation reason, in characters.
pub const REASON_CHARS: usize = 2000;

/// What a provider asks to register (the body of [`super::CatalogCommand::SubmitRegistration`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRegistration {
    /// The listing registered: one of this zone's, submitted or listed.
    pub listing_id: ContentId,
    /// The party registering: the listing's `provider.id` (set from the caller's token, or the
    /// party a broker acts for).
    pub holder: PartyId,
    /// Where the data came from.
    pub source: Source,
    /// The rights claimed: at least one, none twice.
    pub rights: Vec<Right>,
    /// SHA-256 content ids of the evidence documents: 1 to [`MAX_EVIDENCE`], none twice.
    pub evidence: Vec<ContentId>,
}

/// The lifecycle of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationState {
    /// Awaiting an operator's decision.
    Pending,
    /// Approved; its certificate was issued.
    Approved,
    /// Rejected, with a reason.
    Rejected,
}

impl RegistrationState {
    /// The stored and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationState::Pending => "pending",
            RegistrationState::Approved => "approved",
            RegistrationState::Rejected => "rejected",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Approved, Self::Rejected]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Checks the shape of a request: rights at least one, none twice; evidence 1 to
/// [`MAX_EVIDENCE`] hashes, none twice.
///
/// # Errors
/// The field at fault (`rights`, `evidence_hashes`) and what is wrong.
pub fn shape(rights: &[Right], evidence: &[ContentId]) -> Result<(), (&'static str, String)> {
    if rights.is_empty() {
        return Err(("rights", "name at least one right".into()));
    }
    if rights
        .iter()
        .enumerate()
        .any(|(i, r)| rights[..i].contains(r))
    {
        return Err(("rights", "a right is named twice".into()));
    }
    if evidence.is_empty() || evidence.len() > MAX_EVIDENCE {
        return Err((
            "evidence_hashes",
            format!(
                "give 1 to {MAX_EVIDENCE} evidence hashes, not {}",
                evidence.len()
            ),
        ));
    }
    if evidence
        .iter()
        .enumerate()
        .any(|(i, e)| evidence[..i].contains(e))
    {
        return Err(("evidence_hashes", "an evidence hash is named twice".into()));
    }
    Ok(())
}

/// Checks a reason or note: not blank when `required`, at most [`REASON_CHARS`] characters,
/// no control or invisible characters (the rule of every free text, `xchg_protocol::text`).
///
/// # Errors
/// What is wrong.
pub fn reason_rule(text: &str, required: bool) -> Result<(), String> {
    match xchg_protocol::text::problems(text, REASON_CHARS, required).first() {
        Some(p) => Err(p.message(REASON_CHARS)),
        None => Ok(()),
    }
}

fn ok(object_id: impl Into<String>) -> CommandResponse {
    Ok(Applied {
        object_id: object_id.into(),
        version: None,
        state: None,
        used: None,
    })
}

/// Applies a registration: the listing must be one of this zone's, submitted or listed, in the
/// holder's name; the holder admitted; no other registration of it pending.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn submit(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    raft_index: u64,
    new: &NewRegistration,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    if let Err((field, why)) = shape(&new.rights, &new.evidence) {
        return Ok(Err(Refusal::Invalid(format!("{field}: {why}"))));
    }
    let listing_id = new.listing_id.to_string();
    let Some(owner) = listings::owner(db, &listing_id)? else {
        return Ok(Err(Refusal::NotFound(format!(
            "no listing {listing_id} in this zone"
        ))));
    };
    if let Err(refusal) = listing_rule(zone, &new.listing_id, &owner, &new.holder) {
        return Ok(Err(refusal));
    }
    let standing = parties::standing_on(db, &zone.founding, new.holder.as_str())?;
    if let Some(refusal) = parties::not_admitted(new.holder.as_str(), standing.as_ref()) {
        return Ok(Err(refusal));
    }
    if let Some(id) = table::pending(db, &listing_id)? {
        return Ok(Err(Refusal::Conflict(format!(
            "registration {id} of listing {listing_id} is still pending: an operator decides \
             it first"
        ))));
    }
    let id = table::insert(db, new, &owner.content_id, at, &actor.id, raft_index)?;
    Ok(ok(id.to_string()))
}

/// Records that registration `id` (as a response's object id) was submitted by `broker` for
/// `party`: a broker's act names both.
///
/// # Errors
/// Only storage errors.
pub fn note_broker(
    db: &rusqlite::Connection,
    id: &str,
    broker: &str,
    party: &str,
) -> rusqlite::Result<()> {
    table::set_submitted_by(db, id, &format!("{broker} for {party}"))
}

/// Which listings a party may register: one of this zone's own (a recognised copy is registered
/// by its origin zone), in its own name, submitted or listed.
///
/// # Errors
/// The refusal naming the rule.
pub fn listing_rule(
    zone: &ZoneFacts,
    listing_id: &ContentId,
    owner: &listings::Owner,
    holder: &PartyId,
) -> Result<(), Refusal> {
    let (origin, provider, state) = (&owner.origin, &owner.provider, &owner.state);
    if origin != zone.zone.as_str() {
        return Err(Refusal::Forbidden(format!(
            "listing {listing_id} comes from {origin}; only its origin zone registers it"
        )));
    }
    if provider != holder.as_str() {
        return Err(Refusal::Forbidden(format!(
            "listing {listing_id} is {provider}'s; only {provider} (or a broker it entrusted) \
             registers it, not {holder}"
        )));
    }
    if !matches!(state.as_str(), "submitted" | "listed") {
        return Err(Refusal::IllegalTransition(format!(
            "listing {listing_id} is {state}; only a submitted or listed listing is registered"
        )));
    }
    Ok(())
}

/// The owner of listing `id` as this replica has it, for the API.
///
/// # Errors
/// Storage errors.
pub async fn listing_owner(
    conn: &mut SqliteConnection,
    id: &ContentId,
) -> Result<Option<listings::Owner>, sqlx::Error> {
    listings::owner_read(conn, id).await
}

/// A registration as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Registration {
    /// Its number in this zone (the last part of its certificate's number).
    pub id: u64,
    /// The listing registered.
    #[schema(value_type = String)]
    pub listing_id: ContentId,
    /// The listing version registered.
    #[schema(value_type = String)]
    pub content_id: ContentId,
    /// The party holding the rights.
    #[schema(value_type = String)]
    pub holder: PartyId,
    /// Where the data came from.
    #[schema(value_type = String)]
    pub source: Source,
    /// The rights claimed.
    #[schema(value_type = Vec<String>)]
    pub rights: Vec<Right>,
    /// The evidence documents' SHA-256 content ids.
    #[schema(value_type = Vec<String>)]
    pub evidence_hashes: Vec<ContentId>,
    /// `pending`, `approved` or `rejected`.
    pub state: RegistrationState,
    /// When it was submitted.
    pub submitted_at: Timestamp,
    /// Who submitted it (the party, or `<broker> for <party>`).
    pub submitted_by: String,
    /// When it was decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Timestamp>,
    /// Who decided it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// The approval notes or the rejection reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// The certificate issued on approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_number: Option<String>,
}

/// Reads registration `id`, for the API.
///
/// # Errors
/// Storage errors, or a row that does not decode.
pub async fn registration(
    conn: &mut SqliteConnection,
    id: u64,
) -> Result<Option<Registration>, sqlx::Error> {
    table::registration_read(conn, id).await
}

/// The certificate a zone issues for `registration` at `at`: what the approving node signs and
/// what [`approve`] requires the signed certificate to state.
pub fn certificate_for(zone: &ZoneId, registration: &Registration, at: Timestamp) -> Certificate {
    Certificate {
        number: number(zone, at, registration.id),
        holder: registration.holder.clone(),
        listing_id: registration.listing_id,
        content_id: registration.content_id,
        source: registration.source,
        rights: registration.rights.clone(),
        evidence: registration.evidence_hashes.clone(),
        zone: zone.clone(),
        issued_at: at,
    }
}

/// The refusal of a decision on a registration that is not pending.
pub fn decided(id: u64, state: RegistrationState) -> Refusal {
    Refusal::IllegalTransition(format!(
        "registration {id} is already {}; only a pending registration is decided",
        state.as_str()
    ))
}

/// Checks `signed` as the certificate of `registration` approved at `at`: it verifies against
/// this exchange's root key at its issue time, its signing key was not revoked by then (as
/// this zone recorded revocations), and it states exactly [`certificate_for`].
///
/// # Errors
/// Storage errors; the inner [`Refusal::Invalid`] says what does not hold.
pub fn check_certificate(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    registration: &Registration,
    signed: &[u8],
    at: Timestamp,
) -> rusqlite::Result<Result<String, Refusal>> {
    let verified = match verified(zone, signed, at) {
        Ok(v) => v,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let exchange = verified.delegation.delegation.exchange.as_str();
    let revoked = revocations::revoked_at(db, exchange, &verified.signer)?;
    if let Err(e) = check_revocation(&verified, revoked) {
        return Ok(Err(not_verified(&e)));
    }
    let expected = certificate_for(&zone.zone, registration, at);
    if verified.certificate != expected {
        return Ok(Err(Refusal::Invalid(format!(
            "the certificate does not state registration {} as approved at {at}",
            registration.id
        ))));
    }
    Ok(Ok(expected.number))
}

fn not_verified(e: &xchg_protocol::VerifyError) -> Refusal {
    Refusal::Invalid(format!(
        "the certificate does not verify ({}): {e}",
        e.kind()
    ))
}

/// `signed` verified against this exchange's root key at `at`.
fn verified(
    zone: &ZoneFacts,
    signed: &[u8],
    at: Timestamp,
) -> Result<xchg_protocol::VerifiedCertificate, Refusal> {
    let Some(root) = zone.root else {
        return Err(Refusal::Invalid(
            "this zone knows no exchange root key to check certificates against".into(),
        ));
    };
    let mut trust = TrustStore::default();
    trust.trust(zone.exchange.clone(), root);
    verify_certificate(signed, &trust, at, &Limits::default()).map_err(|e| not_verified(&e))
}

/// Applies an approval: the registration must be pending and `signed` its certificate
/// ([`check_certificate`]); the certificate is recorded as `valid`.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn approve(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    id: u64,
    notes: Option<&str>,
    signed: &[u8],
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let Some(reg) = table::registration(db, id)? else {
        return Ok(Err(no_registration(id)));
    };
    if reg.state != RegistrationState::Pending {
        return Ok(Err(decided(id, reg.state)));
    }
    if let Some(Err(why)) = notes.map(|n| reason_rule(n, false)) {
        return Ok(Err(Refusal::Invalid(format!("notes: {why}"))));
    }
    let number = match check_certificate(db, zone, &reg, signed, at)? {
        Ok(number) => number,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let decision = Decision {
        state: RegistrationState::Approved,
        at,
        by: &actor.id,
        notes,
        certificate: Some(&number),
    };
    table::decide(db, id, &decision)?;
    // The certificate travels where its listing version went (PROTOCOL.md 10.5).
    let exported = outbox::let_out(db, &reg.content_id)?;
    certificate_table::insert(
        db,
        &Issued {
            number: &number,
            registration_id: id,
            listing_id: &reg.listing_id.to_string(),
            holder: reg.holder.as_str(),
            issued_at: at,
            signed,
        },
        exported,
    )?;
    Ok(ok(number))
}

fn no_registration(id: u64) -> Refusal {
    Refusal::NotFound(format!("no registration {id}"))
}

/// Applies a rejection: the registration must be pending; `reason` is recorded.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn reject(
    db: &rusqlite::Connection,
    id: u64,
    reason: &str,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let Some(reg) = table::registration(db, id)? else {
        return Ok(Err(no_registration(id)));
    };
    if reg.state != RegistrationState::Pending {
        return Ok(Err(decided(id, reg.state)));
    }
    if let Err(why) = reason_rule(reason, true) {
        return Ok(Err(Refusal::Invalid(format!("reason: {why}"))));
    }
    let decision = Decision {
        state: RegistrationState::Rejected,
        at,
        by: &actor.id,
        notes: Some(reason),
        certificate: None,
    };
    table::decide(db, id, &decision)?;
    Ok(ok(id.to_string()))
}

/// A certificate's status in its issuing zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CertificateRecord {
    /// Its number.
    pub number: String,
    /// The registration it was issued for.
    pub registration_id: u64,
    /// `valid` or `revoked`.
    pub status: String,
    /// When it was revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    /// Who revoked it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoke_reason: Option<String>,
    /// The signed certificate, canonical CBOR (PROTOCOL.md 10.2).
    #[serde(skip)]
    pub signed: Vec<u8>,
    /// Whether it goes out on the exchange's certificate topic (PROTOCOL.md 10.5): `pending`
    /// until published, then `published`; `withheld` when its listing version never left the
    /// zone.
    pub export: String,
    /// The same for its revocation (PROTOCOL.md 10.6), once revoked: `pending`, `published`,
    /// or `withheld` (the certificate never went out, or it was revoked before revocations
    /// travelled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_export: Option<String>,
}

/// Reads certificate `number`, for the API.
///
/// # Errors
/// Storage errors.
pub async fn certificate(
    conn: &mut SqliteConnection,
    number: &str,
) -> Result<Option<CertificateRecord>, sqlx::Error> {
    certificate_table::certificate_read(conn, number).await
}

/// A page of certificates (the listing's, when `listing_id` is given) with registration
/// numbers below `before`, newest first: at most `limit`, and whether more follow.
///
/// # Errors
/// Storage errors.
pub async fn certificates(
    conn: &mut SqliteConnection,
    listing_id: Option<&str>,
    before: Option<u64>,
    limit: u32,
) -> Result<(Vec<CertificateRecord>, bool), sqlx::Error> {
    let limit = usize::try_from(limit.max(1)).unwrap_or(1);
    let rows = i64::try_from(limit + 1).unwrap_or(i64::MAX);
    let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
    let mut found = certificate_table::list_read(conn, listing_id, before, rows).await?;
    let more = found.len() > limit;
    found.truncate(limit);
    Ok((found, more))
}

/// The revocation a zone signs when its operator revokes certificate `number` (whose id is
/// `certificate_id`) at `at` for `reason` (PROTOCOL.md 10.6): what the handling node signs and
/// what [`revoke`] requires the signed revocation to state.
pub fn revocation_for(
    zone: &ZoneId,
    number: &str,
    certificate_id: ContentId,
    reason: &str,
    at: Timestamp,
) -> CertificateRevocation {
    CertificateRevocation {
        number: number.to_owned(),
        certificate_id,
        zone: zone.clone(),
        reason: reason.to_owned(),
        revoked_at: at,
    }
}

/// Checks `signed` as the revocation of `record` for `reason` at `at`: it verifies against
/// this exchange's root key at `at`, its signing key was not revoked by then, and it states
/// exactly [`revocation_for`].
fn check_revocation_signed(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    record: &CertificateRecord,
    signed: &[u8],
    reason: &str,
    at: Timestamp,
) -> rusqlite::Result<Result<(), Refusal>> {
    let not_verified = |e: &VerifyError| {
        Refusal::Invalid(format!(
            "the revocation does not verify ({}): {e}",
            e.kind()
        ))
    };
    let Some(root) = zone.root else {
        return Ok(Err(Refusal::Invalid(
            "this zone knows no exchange root key to check revocations against".into(),
        )));
    };
    let mut trust = TrustStore::default();
    trust.trust(zone.exchange.clone(), root);
    let limits = certificate_revocation::limits();
    let verified = match verify_certificate_revocation(signed, &trust, at, &limits) {
        Ok(v) => v,
        Err(e) => return Ok(Err(not_verified(&e))),
    };
    let key_revoked = revocations::revoked_at(db, zone.exchange.as_str(), &verified.signer)?;
    if let Err(e) = certificate_revocation::check_key_revocation(&verified, key_revoked) {
        return Ok(Err(not_verified(&e)));
    }
    let certificate_id = match decoded(&record.signed) {
        Ok((s, _)) => s.id,
        Err(why) => {
            return Ok(Err(Refusal::Invalid(format!(
                "certificate {} does not decode: {why}",
                record.number
            ))));
        }
    };
    let expected = revocation_for(&zone.zone, &record.number, certificate_id, reason, at);
    if verified.body != expected {
        return Ok(Err(Refusal::Invalid(format!(
            "the signed revocation does not state the revocation of {} at {at} for this reason",
            record.number
        ))));
    }
    Ok(Ok(()))
}

/// Applies a revocation: the certificate must exist and be valid; `reason` is recorded, with
/// `signed`, the revocation the handling node signed ([`revocation_for`], checked here), which
/// goes out where the certificate went (PROTOCOL.md 10.6). An empty `signed` is a command from
/// before revocations travelled: recorded, never published.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn revoke(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    number: &str,
    reason: &str,
    signed: &[u8],
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let Some(record) = certificate_table::certificate(db, number)? else {
        return Ok(Err(Refusal::NotFound(format!("no certificate {number}"))));
    };
    if record.status != "valid" {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "certificate {number} is already revoked"
        ))));
    }
    if let Err(why) = reason_rule(reason, true) {
        return Ok(Err(Refusal::Invalid(format!("reason: {why}"))));
    }
    let signed = (!signed.is_empty()).then_some(signed);
    if let Some(bytes) = signed
        && let Err(refusal) = check_revocation_signed(db, zone, &record, bytes, reason, at)?
    {
        return Ok(Err(refusal));
    }
    let revoked = certificate_table::Revoked {
        at,
        by: &actor.id,
        reason,
        signed,
    };
    certificate_table::revoke(db, number, &revoked)?;
    Ok(ok(number))
}

/// Verifies `signed` as a verifier in this zone does: against `trust` at `now` (PROTOCOL.md
/// 10.3 steps 1 to 8), then against the revocations this zone recorded (step 9).
///
/// # Errors
/// Storage errors; the inner error is the first failed check.
pub async fn verify_here(
    conn: &mut SqliteConnection,
    signed: &[u8],
    trust: &TrustStore,
    now: Timestamp,
) -> Result<Result<VerifiedCertificate, VerifyError>, sqlx::Error> {
    let verified = match verify_certificate(signed, trust, now, &Limits::default()) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let exchange = verified.delegation.delegation.exchange.as_str();
    let revoked = revocations::revoked_at_read(conn, exchange, &verified.signer).await?;
    Ok(check_revocation(&verified, revoked).map(|()| verified))
}

/// Decodes a stored certificate's body for display (it was verified when approved).
///
/// # Errors
/// A message if the stored bytes do not decode.
pub fn decoded(signed: &[u8]) -> Result<(SignedCertificate, Certificate), String> {
    let limits = Limits::default();
    let s = SignedCertificate::from_bytes(signed, &limits).map_err(|e| e.to_string())?;
    let c: Certificate =
        xchg_protocol::canonical::from_canonical(&s.body, &limits).map_err(|e| e.to_string())?;
    Ok((s, c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit;
    use crate::catalog::apply::apply;
    use crate::catalog::{CatalogCommand, test_zone};
    use crate::sqlite::in_transaction;
    use xchg_federation_config::Role;
    use xchg_protocol::canonical::to_canonical;
    use xchg_protocol::{Listing, vectors};

    const HOLDER: &str = "yuzhou-credit-center";
    const BROKER: &str = "henan-data-broker";

    fn actor(id: &str, role: Role) -> Actor {
        Actor {
            id: id.into(),
            role,
        }
    }

    fn listing() -> Listing {
        let zone = test_zone().zone;
        Listing::first_version(vectors::credit_draft(), zone, Timestamp(1))
    }

    fn register(listing_id: ContentId, holder: &str) -> CatalogCommand {
        CatalogCommand::SubmitRegistration {
            registration: Box::new(NewRegistration {
                listing_id,
                holder: holder.parse().expect("party id"),
                source: Source::Collected,
                rights: vec![Right::Holding],
                evidence: vec![ContentId::of(b"licence")],
            }),
            at: Timestamp(2),
            actor: actor(holder, Role::Provider),
        }
    }

    fn approval(id: u64, certificate: Vec<u8>) -> CatalogCommand {
        CatalogCommand::ApproveRegistration {
            registration_id: id,
            notes: Some("evidence checked".into()),
            certificate,
            at: vectors::NOW,
            actor: actor("token:op", Role::Operator),
        }
    }

    /// Applies `commands` in order to a fresh catalog with the holder admitted and the credit
    /// listing submitted and registered (registration 1); returns each response (`ok` and the
    /// object id, or the refusal's code and message).
    fn run(commands: impl Fn(&Registration) -> Vec<CatalogCommand>) -> Vec<String> {
        run_and_read(|_| Ok(()), commands).0
    }

    /// As [`run`], after `setup` wrote its rows, with every registration as recorded at the
    /// end.
    fn run_and_read(
        setup: impl Fn(&rusqlite::Connection) -> rusqlite::Result<()>,
        commands: impl Fn(&Registration) -> Vec<CatalogCommand>,
    ) -> (Vec<String>, Vec<Registration>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        for (party, kind) in [(HOLDER, "resource_holder"), (BROKER, "data_broker")] {
            db.execute(
                "INSERT INTO parties (id, name, credit_code, kinds, contact, state, origin, \
                    applied_at, updated_at) \
                 VALUES (?1, 'n', ?1, ',' || ?2 || ',', '{}', 'admitted', 'application', 0, 0)",
                [party, kind],
            )
            .expect("party admitted");
        }
        setup(&db).expect("setup");
        let zone = test_zone();
        let l = listing();
        in_transaction(&db, || {
            let mut chain = audit::Chain::load(&db)?;
            let submit = CatalogCommand::SubmitListing {
                listing: Box::new(l.clone()),
                actor: actor(HOLDER, Role::Provider),
            };
            for (i, c) in [submit, register(l.id(), HOLDER)].iter().enumerate() {
                let r = apply(&db, &mut chain, &zone, i as u64 + 1, c)?;
                assert!(r.is_ok(), "{r:?}");
            }
            let reg = table::registration(&db, 1)?.expect("registration 1");
            let mut out = Vec::new();
            for (i, c) in commands(&reg).iter().enumerate() {
                out.push(match apply(&db, &mut chain, &zone, i as u64 + 3, c)? {
                    Ok(a) => format!("ok {}", a.object_id),
                    Err(e) => format!("{} {e}", e.code()),
                });
            }
            chain.flush(&db)?;
            let mut all = Vec::new();
            while let Some(r) = table::registration(&db, all.len() as u64 + 1)? {
                all.push(r);
            }
            Ok((out, all))
        })
        .expect("apply")
    }

    fn signed(c: &Certificate) -> Vec<u8> {
        SignedCertificate::sign(c, &vectors::node(), vectors::delegation()).to_bytes()
    }

    #[test]
    fn an_approval_issues_the_numbered_certificate_once_and_a_second_decision_is_refused() {
        let out = run(|reg| {
            let c = certificate_for(&test_zone().zone, reg, vectors::NOW);
            vec![
                approval(1, signed(&c)),
                approval(1, signed(&c)),
                CatalogCommand::RejectRegistration {
                    registration_id: 1,
                    reason: "late".into(),
                    at: vectors::NOW,
                    actor: actor("token:op", Role::Operator),
                },
            ]
        });
        assert_eq!(out[0], "ok XC-2026-YUZHOU-000001");
        assert!(out[1].starts_with("illegal_transition registration 1 is already approved"));
        assert!(out[2].starts_with("illegal_transition"), "{}", out[2]);
    }

    #[test]
    fn a_certificate_stating_other_rights_or_under_an_untrusted_root_is_not_applied() {
        let out = run(|reg| {
            let mut more = certificate_for(&test_zone().zone, reg, vectors::NOW);
            more.rights.push(Right::Operating);
            let c = certificate_for(&test_zone().zone, reg, vectors::NOW);
            let stranger = xchg_protocol::SignedDelegation::sign(
                vectors::delegation().delegation,
                &vectors::stranger(),
            );
            let foreign = SignedCertificate::sign(&c, &vectors::node(), stranger).to_bytes();
            vec![approval(1, signed(&more)), approval(1, foreign)]
        });
        assert!(
            out[0].starts_with("invalid the certificate does not state registration 1"),
            "{}",
            out[0]
        );
        assert!(out[1].contains("untrusted_root"), "{}", out[1]);
    }

    /// Approves registration 1 at [`vectors::NOW`] after the exchange revoked the signing
    /// node key at `revoked_at`; the approval's response.
    fn approve_after_revocation(revoked_at: Timestamp) -> String {
        let setup = |db: &rusqlite::Connection| {
            let key = vectors::node().public();
            let exchange = test_zone().exchange;
            revocations::insert(
                db,
                exchange.as_str(),
                &key,
                &ContentId::of(b"revocation"),
                "key lost",
                revoked_at,
            )
        };
        let (out, _) = run_and_read(setup, |reg| {
            let c = certificate_for(&test_zone().zone, reg, vectors::NOW);
            vec![approval(1, signed(&c))]
        });
        out.into_iter().next().unwrap_or_default()
    }

    #[test]
    fn a_certificate_signed_by_a_key_revoked_before_its_issue_time_is_not_applied() {
        let before = approve_after_revocation(Timestamp(vectors::NOW.0 - 1));
        assert!(
            before.starts_with("invalid the certificate does not verify (revoked_key)"),
            "{before}"
        );
        let after = approve_after_revocation(vectors::NOW.plus_millis(1));
        assert_eq!(after, "ok XC-2026-YUZHOU-000001");
    }

    #[test]
    fn a_certificate_of_a_listing_still_in_review_travels_once_the_listing_is_approved() {
        let published = || CatalogCommand::RecordCertificatePublished {
            registration_id: 1,
            at: vectors::NOW,
            node: "n1".into(),
        };
        let out = run(|reg| {
            let c = certificate_for(&test_zone().zone, reg, vectors::NOW);
            vec![
                approval(1, signed(&c)),
                published(),
                CatalogCommand::ApproveListing {
                    listing_id: reg.listing_id,
                    review: crate::catalog::Review::default(),
                    at: vectors::NOW,
                    actor: actor("token:op", Role::Operator),
                },
                published(),
            ]
        });
        assert!(
            out[1].starts_with("conflict"),
            "withheld while its listing is not out: {out:?}"
        );
        assert_eq!(out[3], "ok registration:1", "{out:?}");
    }

    #[test]
    fn only_the_listings_own_party_registers_it_and_an_unknown_listing_is_not_found() {
        let out = run(|reg| {
            vec![
                register(reg.listing_id, "henan-data-broker"),
                register(ContentId::of(b"nothing"), HOLDER),
                register(reg.listing_id, HOLDER),
            ]
        });
        assert!(out[0].starts_with("forbidden"), "{}", out[0]);
        assert!(out[0].contains("only yuzhou-credit-center"), "{}", out[0]);
        assert!(out[1].starts_with("not_found no listing"), "{}", out[1]);
        assert!(out[2].starts_with("conflict registration 1"), "{}", out[2]);
    }

    #[test]
    fn a_revocation_states_exactly_what_the_operator_revoked_and_is_not_repeated() {
        let out = run(|reg| {
            let c = certificate_for(&test_zone().zone, reg, vectors::NOW);
            let id = ContentId::of(&to_canonical(&c).expect("encodes"));
            let revoke = |reason: &str, signed_reason: &str| {
                let r = revocation_for(
                    &test_zone().zone,
                    &c.number,
                    id,
                    signed_reason,
                    vectors::NOW,
                );
                CatalogCommand::RevokeCertificate {
                    number: c.number.clone(),
                    reason: reason.into(),
                    revocation: certificate_revocation::sign(
                        &r,
                        &vectors::node(),
                        vectors::delegation(),
                    )
                    .to_bytes(),
                    at: vectors::NOW,
                    actor: actor("token:op", Role::Operator),
                }
            };
            vec![
                approval(1, signed(&c)),
                revoke("evidence forged", "holder's request"),
                revoke("evidence forged", "evidence forged"),
                revoke("evidence forged", "evidence forged"),
            ]
        });
        assert!(
            out[1].starts_with("invalid the signed revocation does not state"),
            "a revocation signed for another reason is not applied: {}",
            out[1]
        );
        assert_eq!(out[2], "ok XC-2026-YUZHOU-000001");
        assert!(out[3].starts_with("illegal_transition"), "{}", out[3]);
    }

    /// Regression: a broker's registration named only the party it acted for (the broker was
    /// noted on a listing's history under the registration's number, which names no listing).
    #[test]
    fn a_brokers_registration_records_the_broker_and_the_party() {
        let (out, all) = run_and_read(
            |_| Ok(()),
            |reg| {
                let grant = parties::EntrustmentGrant {
                    party: HOLDER.parse().expect("party id"),
                    broker: BROKER.parse().expect("party id"),
                    scope: vec![parties::Act::SubmitRegistration],
                    expires_at: Timestamp(86_400_000),
                };
                let brokered = parties::BrokerAct {
                    broker: BROKER.parse().expect("party id"),
                    entrustment: 1,
                    command: register(reg.listing_id, HOLDER),
                };
                vec![
                    CatalogCommand::RejectRegistration {
                        registration_id: 1,
                        reason: "evidence unreadable".into(),
                        at: Timestamp(2),
                        actor: actor("token:op", Role::Operator),
                    },
                    CatalogCommand::GrantEntrustment {
                        grant: Box::new(grant),
                        at: Timestamp(2),
                        actor: actor(HOLDER, Role::Provider),
                    },
                    CatalogCommand::Entrusted(Box::new(brokered)),
                ]
            },
        );
        assert_eq!(out, ["ok 1", "ok 1", "ok 2"]);
        assert_eq!(all[1].holder.as_str(), HOLDER);
        assert_eq!(all[1].submitted_by, format!("{BROKER} for {HOLDER}"));
    }

    #[test]
    fn rights_and_evidence_are_one_at_least_and_never_twice() {
        let e = ContentId::of(b"e");
        assert!(shape(&[Right::Holding], &[e]).is_ok());
        assert_eq!(shape(&[], &[e]).map_err(|f| f.0), Err("rights"));
        let twice = [Right::Holding, Right::Holding];
        assert_eq!(shape(&twice, &[e]).map_err(|f| f.0), Err("rights"));
        assert_eq!(
            shape(&[Right::Holding], &[]).map_err(|f| f.0),
            Err("evidence_hashes")
        );
        assert_eq!(
            shape(&[Right::Holding], &[e, e]).map_err(|f| f.0),
            Err("evidence_hashes")
        );
        let many = vec![e; MAX_EVIDENCE + 1];
        assert!(shape(&[Right::Holding], &many).is_err());
    }
}
