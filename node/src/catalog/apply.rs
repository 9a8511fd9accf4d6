//! Applying one catalog command inside the state machine's transaction.
//!
//! Everything here is deterministic: it reads only the transaction and the command. A command
//! that the current state does not allow changes nothing but its audit record, and returns a
//! [`Refusal`] to the proposer. The rules run on the catalog's writer connection, in the
//! calling thread, with nothing awaited (see [`crate::sqlite`]); the SQL is the tables' own
//! ([`super::tables`]).

use xchg_federation_config::Role;
use xchg_protocol::application::SignedMessage;
use xchg_protocol::{ContentId, Listing, Timestamp};

use super::tables::demands as demands_table;
use super::tables::listings::{self, By, NewRow, Transition};
use super::tables::{certificates, idempotency, tokens};
use super::{
    Actor, Applied, CatalogCommand, CommandResponse, IDEMPOTENCY_TTL_MS, Idempotent, ListingState,
    Refusal, ZoneFacts,
};
use crate::audit;
use crate::catalog::{
    across, applications, certified, complaints, demands, demands_across, federation, parties,
    registrations, trades,
};
use crate::sqlite::unencodable;

/// Applies `cmd` (the entry at `raft_index`) and records it in the audit chain.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn apply(
    db: &rusqlite::Connection,
    chain: &mut audit::Chain,
    zone: &ZoneFacts,
    raft_index: u64,
    cmd: &CatalogCommand,
) -> rusqlite::Result<CommandResponse> {
    if let CatalogCommand::Idempotent(i) = cmd {
        return idempotent(db, chain, zone, raft_index, i);
    }
    let response = effect(db, zone, raft_index, cmd)?;
    record(chain, raft_index, cmd, &response);
    Ok(response)
}

/// What applying `cmd` does to the tables, without its audit record.
fn effect(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    raft_index: u64,
    cmd: &CatalogCommand,
) -> rusqlite::Result<CommandResponse> {
    Ok(match cmd {
        CatalogCommand::SubmitListing { listing, actor } => {
            let item = [(listing.as_ref(), actor)];
            let mut one = submit_many(db, raft_index, &item)?;
            one.pop()
                .unwrap_or_else(|| Err(Refusal::Conflict("submission not applied".into())))
        }
        CatalogCommand::UpdateListing {
            listing_id,
            draft,
            at,
            actor,
        } => update(db, raft_index, listing_id, draft, *at, actor)?,
        CatalogCommand::ApproveListing {
            listing_id,
            review,
            at,
            actor,
        } => {
            let detail = serde_json::to_string(review).ok();
            let response = transition(
                db,
                raft_index,
                listing_id,
                Step::Approve,
                *at,
                actor,
                detail,
            )?;
            if response.is_ok() {
                federation::queue_listing(db, zone, listing_id, *at)?;
                // A certificate issued while its listing waited for approval travels now.
                certificates::release_let_out(db)?;
            }
            response
        }
        CatalogCommand::RejectListing {
            listing_id,
            reason,
            at,
            actor,
        } => {
            let detail = reason_detail(reason);
            let response =
                transition(db, raft_index, listing_id, Step::Reject, *at, actor, detail)?;
            if response.is_ok() {
                // A rejected new version of a listing that was out there withdraws it.
                let why = format!("new version rejected in review: {reason}");
                federation::queue_delisting(db, zone, listing_id, &why, *at)?;
            }
            response
        }
        CatalogCommand::DelistListing {
            listing_id,
            reason,
            at,
            actor,
        } => {
            let detail = reason_detail(reason);
            let response =
                transition(db, raft_index, listing_id, Step::Delist, *at, actor, detail)?;
            if response.is_ok() {
                federation::queue_delisting(db, zone, listing_id, reason, *at)?;
                applications::close_on_delisting(db, zone, listing_id, *at, actor, reason)?;
            }
            response
        }
        CatalogCommand::CreateToken {
            token_hash,
            role,
            party,
            label,
            at,
            ..
        } => create_token(db, token_hash, *role, party.as_deref(), label, *at)?,
        CatalogCommand::RevokeToken {
            token_hash,
            role,
            at,
            config_admins,
            ..
        } => revoke_token(db, token_hash, *role, *at, config_admins.as_deref())?,
        CatalogCommand::RecordPublished {
            outbox_seq,
            envelope,
            at,
            ..
        } => federation::record_published(db, zone, *outbox_seq, envelope, *at)?,
        CatalogCommand::RecordMembershipChange { change, .. } => Ok(Applied {
            object_id: change.clone(),
            version: None,
            state: None,
            used: None,
        }),
        CatalogCommand::Idempotent(_) => Err(Refusal::Invalid(
            "an idempotent write inside another".into(),
        )),
        CatalogCommand::Recognize(r) => federation::recognize(db, zone, raft_index, r)?,
        CatalogCommand::RecordRefusal(r) => federation::record_refusal(db, raft_index, r)?,
        CatalogCommand::ApplyParty {
            profile,
            at,
            actor,
            received_by,
        } => {
            let (id, role) = applicant(actor.as_ref(), received_by);
            let who = parties::Who {
                id: &id,
                role: &role,
            };
            parties::apply_for(db, zone, raft_index, profile, *at, &who)?
        }
        CatalogCommand::AdmitParty {
            party_id,
            notes,
            at,
            actor,
        } => {
            let decision = parties::Decision::Admit;
            let reason = notes.as_deref();
            parties::decide(db, zone, raft_index, party_id, decision, reason, *at, actor)?
        }
        CatalogCommand::RefuseParty {
            party_id,
            reason,
            at,
            actor,
        }
        | CatalogCommand::SuspendParty {
            party_id,
            reason,
            at,
            actor,
        }
        | CatalogCommand::ReinstateParty {
            party_id,
            reason,
            at,
            actor,
        } => {
            let decision = match cmd {
                CatalogCommand::RefuseParty { .. } => parties::Decision::Refuse,
                CatalogCommand::SuspendParty { .. } => parties::Decision::Suspend,
                _ => parties::Decision::Reinstate,
            };
            let reason = Some(reason.as_str());
            parties::decide(db, zone, raft_index, party_id, decision, reason, *at, actor)?
        }
        CatalogCommand::GrantEntrustment { grant, at, actor } => {
            parties::grant(db, zone, raft_index, grant, *at, actor)?
        }
        CatalogCommand::RevokeEntrustment {
            entrustment_id,
            reason,
            at,
            actor,
        } => parties::revoke(db, *entrustment_id, reason, *at, actor)?,
        CatalogCommand::Entrusted(act) => entrusted(db, zone, raft_index, act)?,
        CatalogCommand::SubmitApplication {
            request,
            buyer,
            at,
            actor,
        } => applications::submit(db, zone, raft_index, request, buyer.as_str(), *at, actor)?,
        CatalogCommand::ApproveApplication {
            application_id,
            terms,
            at,
            actor,
        } => {
            let decision = applications::Decision::Approve(terms);
            applications::decide(db, zone, *application_id, &decision, *at, actor)?
        }
        CatalogCommand::RejectApplication {
            application_id,
            reason,
            at,
            actor,
        } => {
            let decision = applications::Decision::Reject(reason);
            applications::decide(db, zone, *application_id, &decision, *at, actor)?
        }
        CatalogCommand::RecordUsage {
            authorization_id,
            calls,
            at,
            actor,
        } => applications::record_usage(db, *authorization_id, *calls, *at, actor)?,
        CatalogCommand::SuspendAuthorization {
            authorization_id,
            reason,
            at,
            actor,
        }
        | CatalogCommand::RevokeAuthorization {
            authorization_id,
            reason,
            at,
            actor,
        }
        | CatalogCommand::ReinstateAuthorization {
            authorization_id,
            reason,
            at,
            actor,
        } => {
            let change = match cmd {
                CatalogCommand::SuspendAuthorization { .. } => applications::Change::Suspend,
                CatalogCommand::RevokeAuthorization { .. } => applications::Change::Revoke,
                _ => applications::Change::Reinstate,
            };
            applications::change(db, *authorization_id, change, reason, *at, actor)?
        }
        CatalogCommand::RecordRefusedRequest(r) => Err(r.refusal.clone()),
        CatalogCommand::SubmitRegistration {
            registration,
            at,
            actor,
        } => registrations::submit(db, zone, raft_index, registration, *at, actor)?,
        CatalogCommand::ApproveRegistration {
            registration_id,
            notes,
            certificate,
            at,
            actor,
        } => {
            let notes = notes.as_deref();
            let id = *registration_id;
            registrations::approve(db, zone, id, notes, certificate, *at, actor)?
        }
        CatalogCommand::RejectRegistration {
            registration_id,
            reason,
            at,
            actor,
        } => registrations::reject(db, *registration_id, reason, *at, actor)?,
        CatalogCommand::RevokeCertificate {
            number,
            reason,
            revocation,
            at,
            actor,
        } => registrations::revoke(db, zone, number, reason, revocation, *at, actor)?,
        CatalogCommand::ReceiveCertificate(r) => certified::receive(db, raft_index, r)?,
        CatalogCommand::RecordCertificatePublished {
            registration_id,
            at,
            ..
        } => certified::published(db, *registration_id, *at)?,
        CatalogCommand::ReceiveCertificateRevocation(r) => {
            certified::receive_revocation(db, raft_index, r)?
        }
        CatalogCommand::RecordCertificateRevocationPublished {
            registration_id,
            at,
            ..
        } => certified::revocation_published(db, *registration_id, *at)?,
        CatalogCommand::ApplicationForwarded {
            application_id, at, ..
        } => across::forwarded(db, *application_id, *at)?,
        CatalogCommand::ReceiveApplication(r) => across::receive(db, zone, raft_index, r)?,
        CatalogCommand::ApplicationDecided(r) => across::decided(db, r)?,
        CatalogCommand::RecordPrecedents(r) => {
            super::precedents::record(db, &zone.zone, raft_index, r)?
        }
        CatalogCommand::RecordValuation { report, actor } => {
            super::valuation::record(db, raft_index, report, actor)?
        }
        CatalogCommand::PostDemand { demand, at, actor } => {
            demands::post(db, zone, raft_index, demand, *at, actor)?
        }
        CatalogCommand::ProposeToDemand {
            demand_id,
            listing_id,
            note,
            at,
            actor,
        } => demands::propose(
            db,
            zone,
            raft_index,
            *demand_id,
            listing_id,
            note.as_deref(),
            *at,
            actor,
        )?,
        CatalogCommand::AcceptDemandMatch {
            demand_id,
            acceptance,
            actor,
        } => {
            let response = demands::accept(db, *demand_id, acceptance, actor)?;
            if response.is_ok() {
                let accepted = xchg_protocol::demand::DemandState::Accepted;
                demands_across::queue_closed(db, raft_index, *demand_id, accepted, acceptance.at)?;
            }
            response
        }
        CatalogCommand::WithdrawDemand {
            demand_id,
            at,
            actor,
        } => {
            let response = demands::withdraw(db, *demand_id, *at, actor)?;
            if response.is_ok() {
                let withdrawn = xchg_protocol::demand::DemandState::Withdrawn;
                demands_across::queue_closed(db, raft_index, *demand_id, withdrawn, *at)?;
            }
            response
        }
        CatalogCommand::ReceiveDemand(r) => demands_across::receive(db, &zone.zone, raft_index, r)?,
        CatalogCommand::RecordDemandPublished {
            demand_id,
            signed,
            at,
            ..
        } => demands_across::published(db, raft_index, *demand_id, signed, *at)?,
        CatalogCommand::SetFeeSchedule {
            schedule,
            at,
            actor,
        } => trades::set_fee_schedule(db, raft_index, schedule, *at, actor)?,
        CatalogCommand::PlaceOrder {
            request,
            buyer,
            at,
            actor,
        } => trades::place(db, raft_index, request, buyer.as_str(), *at, actor)?,
        CatalogCommand::ConfirmOrder {
            order_id,
            at,
            actor,
        } => trades::confirm(db, *order_id, *at, actor)?,
        CatalogCommand::RecordDelivery {
            order_id,
            delivery,
            at,
            actor,
        } => trades::deliver(db, raft_index, *order_id, delivery, *at, actor)?,
        CatalogCommand::SettleOrder {
            order_id,
            at,
            actor,
        } => trades::settle(db, raft_index, *order_id, *at, actor)?,
        CatalogCommand::DisputeSettlement {
            order_id,
            reason,
            at,
            actor,
        } => trades::dispute(db, raft_index, *order_id, reason, *at, actor)?,
        CatalogCommand::ReverseSettlement {
            order_id,
            reason,
            at,
            actor,
        } => trades::reverse(db, raft_index, *order_id, reason, *at, actor)?,
        CatalogCommand::FileComplaint {
            complaint,
            at,
            actor,
        } => complaints::file(db, zone, raft_index, complaint, *at, actor)?,
        CatalogCommand::ActOnComplaint {
            complaint_id,
            step,
            note,
            at,
            actor,
        } => complaints::act(db, zone, raft_index, *complaint_id, *step, note, *at, actor)?,
    })
}

/// Applies a broker's act: the entrustment it names must allow it (both parties admitted), and
/// then it is the party's own command, its history entry naming the broker and entrustment.
fn entrusted(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    raft_index: u64,
    act: &parties::BrokerAct,
) -> rusqlite::Result<CommandResponse> {
    let (Some(kind), Some(party)) = (act.command.act(), act.command.named_party()) else {
        return Ok(Err(Refusal::Invalid(format!(
            "a broker cannot be entrusted to {}",
            act.command.action().replace('_', " ")
        ))));
    };
    let (_, _, at, _) = subject(&act.command);
    if let Err(refusal) = parties::check_act(db, zone, act, kind, party, at)? {
        return Ok(Err(refusal));
    }
    let response = effect(db, zone, raft_index, &act.command)?;
    if let Ok(applied) = &response {
        // The object the act created or changed records the broker: a registration in its
        // row, a listing in its latest history entry.
        if let CatalogCommand::SubmitRegistration { .. } = &act.command {
            registrations::note_broker(db, &applied.object_id, act.broker.as_str(), party)?;
        } else if let CatalogCommand::PostDemand { .. } = &act.command {
            demands_table::note_broker(db, &applied.object_id, act.broker.as_str())?;
        } else if let CatalogCommand::PlaceOrder { .. } = &act.command {
            trades::note_broker(db, &applied.object_id, act.broker.as_str())?;
        } else {
            let detail = serde_json::json!({
                "broker": act.broker.as_str(),
                "entrustment": act.entrustment,
            });
            listings::note_latest_history(db, &applied.object_id, &detail.to_string())?;
        }
    }
    Ok(response)
}

/// The actor id and role an application is recorded with: the caller's token, or
/// `anonymous via <member>`.
fn applicant(actor: Option<&Actor>, received_by: &str) -> (String, String) {
    match actor {
        Some(a) => (a.id.clone(), a.role.as_str().to_owned()),
        None => (
            format!("anonymous via {received_by}"),
            "anonymous".to_owned(),
        ),
    }
}

/// Applies a write sent with an `Idempotency-Key` once per caller and key: a retry with the
/// same request gets the first response (and an audit record saying it was replayed, creating
/// nothing), another request under the same key is refused. Keys older than
/// [`IDEMPOTENCY_TTL_MS`] (by the command's time, so every replica agrees) are forgotten.
fn idempotent(
    db: &rusqlite::Connection,
    chain: &mut audit::Chain,
    zone: &ZoneFacts,
    raft_index: u64,
    i: &Idempotent,
) -> rusqlite::Result<CommandResponse> {
    let (actor, role, at, object) = subject(&i.command);
    idempotency::expire(db, Timestamp(i.at.0.saturating_sub(IDEMPOTENCY_TTL_MS)))?;
    if let Some((request, stored)) = idempotency::find(db, &actor, &i.key)? {
        let response = if request == i.request {
            cbor4ii::serde::from_slice::<CommandResponse>(&stored).unwrap_or_else(|e| {
                Err(Refusal::Invalid(format!(
                    "the stored response does not decode: {e}"
                )))
            })
        } else {
            Err(Refusal::KeyReused(format!(
                "Idempotency-Key {:?} was used for another request in the last 24 hours; use a \
                 new key for a new request",
                i.key
            )))
        };
        let result = match &response {
            Ok(_) => format!("replayed (Idempotency-Key {})", i.key),
            Err(r) => format!("refused:{}: {r}", r.code()),
        };
        chain.append(audit::Event {
            raft_index,
            at,
            actor: &actor,
            role,
            action: i.command.action(),
            object_id: &object,
            result,
        });
        return Ok(response);
    }
    let response = apply(db, chain, zone, raft_index, &i.command)?;
    let stored = cbor4ii::serde::to_vec(Vec::new(), &response).map_err(unencodable)?;
    idempotency::record(db, &actor, &i.key, &i.request, &stored, i.at)?;
    Ok(response)
}

/// Applies a batch's commands in order; runs of submissions are written together.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn apply_batch(
    db: &rusqlite::Connection,
    chain: &mut audit::Chain,
    zone: &ZoneFacts,
    raft_index: u64,
    commands: &[CatalogCommand],
) -> rusqlite::Result<Vec<CommandResponse>> {
    let mut out = Vec::with_capacity(commands.len());
    let mut rest = commands;
    while let Some(first) = rest.first() {
        let run: Vec<_> = rest.iter().map_while(as_submission).collect();
        if run.is_empty() {
            out.push(apply(db, chain, zone, raft_index, first)?);
            rest = &rest[1..];
            continue;
        }
        let (now, later) = rest.split_at(run.len());
        let responses = submit_many(db, raft_index, &run)?;
        for (cmd, response) in now.iter().zip(&responses) {
            record(chain, raft_index, cmd, response);
        }
        out.extend(responses);
        rest = later;
    }
    Ok(out)
}

/// The listing and submitter of a submission.
fn as_submission(cmd: &CatalogCommand) -> Option<(&Listing, &Actor)> {
    match cmd {
        CatalogCommand::SubmitListing { listing, actor } => Some((listing.as_ref(), actor)),
        _ => None,
    }
}

/// Appends the audit record of `cmd` with its outcome.
fn record(
    chain: &mut audit::Chain,
    raft_index: u64,
    cmd: &CatalogCommand,
    response: &CommandResponse,
) {
    let (actor, role, at, object) = subject(cmd);
    let result = match (cmd, response) {
        (CatalogCommand::RecordMembershipChange { outcome, .. }, _) => outcome.clone(),
        (_, Ok(_)) => "ok".to_owned(),
        (_, Err(r)) => format!("refused:{}: {r}", r.code()),
    };
    chain.append(audit::Event {
        raft_index,
        at,
        actor: &actor,
        role,
        action: cmd.action(),
        object_id: &object,
        result,
    });
}

/// The history detail of a reject or delist.
fn reason_detail(reason: &str) -> Option<String> {
    Some(serde_json::json!({ "reason": reason }).to_string())
}

/// The actor, role, time and object of a command, for its audit record.
fn subject(cmd: &CatalogCommand) -> (String, &'static str, Timestamp, String) {
    let by = |a: &Actor| (a.id.clone(), a.role.as_str());
    match cmd {
        CatalogCommand::SubmitListing { listing, actor } => {
            let (id, role) = by(actor);
            (id, role, listing.created_at, listing.id().to_string())
        }
        CatalogCommand::UpdateListing {
            listing_id,
            at,
            actor,
            ..
        }
        | CatalogCommand::ApproveListing {
            listing_id,
            at,
            actor,
            ..
        }
        | CatalogCommand::RejectListing {
            listing_id,
            at,
            actor,
            ..
        }
        | CatalogCommand::DelistListing {
            listing_id,
            at,
            actor,
            ..
        } => {
            let (id, role) = by(actor);
            (id, role, *at, listing_id.to_string())
        }
        CatalogCommand::Idempotent(i) => subject(&i.command),
        CatalogCommand::RecordMembershipChange {
            change, at, actor, ..
        } => {
            let (id, role) = by(actor);
            (id, role, *at, change.clone())
        }
        CatalogCommand::CreateToken {
            token_hash,
            at,
            actor,
            ..
        }
        | CatalogCommand::RevokeToken {
            token_hash,
            at,
            actor,
            ..
        } => {
            let (id, role) = by(actor);
            (id, role, *at, token_hash.clone())
        }
        CatalogCommand::RecordPublished {
            outbox_seq,
            at,
            node,
            ..
        } => (
            format!("node:{node}"),
            "system",
            *at,
            format!("outbox:{outbox_seq}"),
        ),
        CatalogCommand::Recognize(r) => (
            format!("node:{}", r.node),
            "system",
            r.at,
            r.content_id.to_string(),
        ),
        CatalogCommand::RecordRefusal(r) => (
            format!("node:{}", r.node),
            "system",
            r.at,
            r.content_id.to_string(),
        ),
        CatalogCommand::ApplyParty {
            profile,
            at,
            actor,
            received_by,
        } => match actor {
            Some(a) => (a.id.clone(), a.role.as_str(), *at, profile.id.to_string()),
            None => (
                format!("anonymous via {received_by}"),
                "anonymous",
                *at,
                profile.id.to_string(),
            ),
        },
        CatalogCommand::AdmitParty {
            party_id,
            at,
            actor,
            ..
        }
        | CatalogCommand::RefuseParty {
            party_id,
            at,
            actor,
            ..
        }
        | CatalogCommand::SuspendParty {
            party_id,
            at,
            actor,
            ..
        }
        | CatalogCommand::ReinstateParty {
            party_id,
            at,
            actor,
            ..
        } => {
            let (id, role) = by(actor);
            (id, role, *at, party_id.to_string())
        }
        CatalogCommand::GrantEntrustment { grant, at, actor } => {
            let (id, role) = by(actor);
            let object = format!("{}->{}", grant.party, grant.broker);
            (id, role, *at, object)
        }
        CatalogCommand::RevokeEntrustment {
            entrustment_id,
            at,
            actor,
            ..
        } => {
            let (id, role) = by(actor);
            (id, role, *at, format!("entrustment:{entrustment_id}"))
        }
        // Both names: the broker that acted and the party it acted for.
        CatalogCommand::Entrusted(act) => {
            let (party, role, at, object) = subject(&act.command);
            (format!("{} for {party}", act.broker), role, at, object)
        }
        CatalogCommand::SubmitApplication {
            request, at, actor, ..
        } => {
            let (id, role) = by(actor);
            (id, role, *at, request.listing_id.to_string())
        }
        CatalogCommand::ApproveApplication {
            application_id,
            at,
            actor,
            ..
        }
        | CatalogCommand::RejectApplication {
            application_id,
            at,
            actor,
            ..
        } => {
            let (id, role) = by(actor);
            (id, role, *at, format!("application:{application_id}"))
        }
        CatalogCommand::RecordUsage {
            authorization_id,
            at,
            actor,
            ..
        }
        | CatalogCommand::SuspendAuthorization {
            authorization_id,
            at,
            actor,
            ..
        }
        | CatalogCommand::RevokeAuthorization {
            authorization_id,
            at,
            actor,
            ..
        }
        | CatalogCommand::ReinstateAuthorization {
            authorization_id,
            at,
            actor,
            ..
        } => {
            let (id, role) = by(actor);
            (id, role, *at, format!("authorization:{authorization_id}"))
        }
        CatalogCommand::RecordRefusedRequest(r) => {
            let (id, role) = by(&r.actor);
            (id, role, r.at, r.object.clone())
        }
        CatalogCommand::SubmitRegistration {
            registration,
            at,
            actor,
        } => {
            let (id, role) = by(actor);
            let object = format!("registration of {}", registration.listing_id);
            (id, role, *at, object)
        }
        CatalogCommand::ApproveRegistration {
            registration_id,
            at,
            actor,
            ..
        }
        | CatalogCommand::RejectRegistration {
            registration_id,
            at,
            actor,
            ..
        } => {
            let (id, role) = by(actor);
            (id, role, *at, format!("registration:{registration_id}"))
        }
        CatalogCommand::RevokeCertificate {
            number, at, actor, ..
        } => {
            let (id, role) = by(actor);
            (id, role, *at, format!("certificate:{number}"))
        }
        CatalogCommand::ReceiveCertificate(r) => (
            format!("node:{}", r.node),
            "system",
            r.at,
            format!("received-certificate:{}", r.message_id),
        ),
        CatalogCommand::RecordCertificatePublished {
            registration_id,
            at,
            node,
        }
        | CatalogCommand::RecordCertificateRevocationPublished {
            registration_id,
            at,
            node,
        } => (
            format!("node:{node}"),
            "system",
            *at,
            format!("registration:{registration_id}"),
        ),
        CatalogCommand::ReceiveCertificateRevocation(r) => (
            format!("node:{}", r.node),
            "system",
            r.at,
            format!("received-certificate-revocation:{}", r.message_id),
        ),
        CatalogCommand::ApplicationForwarded {
            application_id,
            at,
            node,
        } => (
            format!("node:{node}"),
            "system",
            *at,
            format!("application:{application_id}"),
        ),
        // The ids of the signed messages: the same in both zones' chains.
        CatalogCommand::ReceiveApplication(r) => (
            format!("node:{}", r.node),
            "system",
            r.at,
            format!("application-request:{}", message_id(&r.request)),
        ),
        CatalogCommand::ApplicationDecided(r) => (
            format!("node:{}", r.node),
            "system",
            r.at,
            format!(
                "application:{} decision:{}",
                r.application_id,
                message_id(&r.decision)
            ),
        ),
        CatalogCommand::FileComplaint {
            complaint,
            at,
            actor,
        } => {
            let (id, role) = by(actor);
            let t = &complaint.target;
            (id, role, *at, format!("{}:{}", t.kind.as_str(), t.id))
        }
        CatalogCommand::ActOnComplaint {
            complaint_id,
            at,
            actor,
            ..
        } => {
            let (id, role) = by(actor);
            (id, role, *at, format!("complaint:{complaint_id}"))
        }
        CatalogCommand::RecordPrecedents(r) => (
            format!("node:{}", r.node),
            "system",
            r.at,
            format!("precedents:{}", precedents_id(&r.list)),
        ),
        // The id of the signed demand: the same in every zone that holds it.
        CatalogCommand::ReceiveDemand(r) => (
            format!("node:{}", r.node),
            "system",
            r.at,
            format!("demand-message:{}", demands_across::message_id(&r.signed)),
        ),
        CatalogCommand::RecordDemandPublished {
            demand_id,
            signed,
            at,
            node,
        } => (
            format!("node:{node}"),
            "system",
            *at,
            format!(
                "demand:{demand_id} demand-message:{}",
                demands_across::message_id(signed)
            ),
        ),
        CatalogCommand::RecordValuation { report, actor } => {
            let (id, role) = by(actor);
            (id, role, report.valued_at, report.listing_id.to_string())
        }
        CatalogCommand::PostDemand { demand, at, actor } => {
            let (id, role) = by(actor);
            (id, role, *at, format!("demand of {}", demand.buyer))
        }
        CatalogCommand::ProposeToDemand {
            demand_id,
            listing_id,
            at,
            actor,
            ..
        } => {
            let (id, role) = by(actor);
            (
                id,
                role,
                *at,
                format!("demand:{demand_id} listing:{listing_id}"),
            )
        }
        CatalogCommand::AcceptDemandMatch {
            demand_id,
            acceptance,
            actor,
        } => {
            let (id, role) = by(actor);
            let object = format!("demand:{demand_id} listing:{}", acceptance.listing_id);
            (id, role, acceptance.at, object)
        }
        CatalogCommand::WithdrawDemand {
            demand_id,
            at,
            actor,
        } => {
            let (id, role) = by(actor);
            (id, role, *at, format!("demand:{demand_id}"))
        }
        CatalogCommand::SetFeeSchedule { at, actor, .. } => {
            let (id, role) = by(actor);
            (id, role, *at, "fee_schedule".to_owned())
        }
        CatalogCommand::PlaceOrder {
            request, at, actor, ..
        } => {
            let (id, role) = by(actor);
            let object = format!("authorization:{}", request.authorization_id);
            (id, role, *at, object)
        }
        CatalogCommand::ConfirmOrder {
            order_id,
            at,
            actor,
        }
        | CatalogCommand::RecordDelivery {
            order_id,
            at,
            actor,
            ..
        }
        | CatalogCommand::SettleOrder {
            order_id,
            at,
            actor,
        }
        | CatalogCommand::DisputeSettlement {
            order_id,
            at,
            actor,
            ..
        }
        | CatalogCommand::ReverseSettlement {
            order_id,
            at,
            actor,
            ..
        } => {
            let (id, role) = by(actor);
            (id, role, *at, format!("order:{order_id}"))
        }
    }
}

/// The id a signed list of precedents states (the hash of its body), or `undecodable`.
fn precedents_id(signed: &[u8]) -> String {
    SignedMessage::from_bytes(signed, &xchg_protocol::precedents::limits())
        .map_or_else(|_| "undecodable".to_owned(), |m| m.id.to_string())
}

/// The id a signed application message states (the hash of its body), or `undecodable`.
fn message_id(signed: &[u8]) -> String {
    SignedMessage::from_bytes(signed, &xchg_protocol::application::limits())
        .map_or_else(|_| "undecodable".to_owned(), |m| m.id.to_string())
}

impl<'a> From<&'a Actor> for By<'a> {
    fn from(a: &'a Actor) -> Self {
        By {
            id: &a.id,
            role: a.role.as_str(),
        }
    }
}

pub(super) fn applied(listing: &Listing, state: ListingState) -> CommandResponse {
    Ok(Applied {
        object_id: listing.id().to_string(),
        version: Some(listing.version),
        state: Some(state),
        used: None,
    })
}

/// Submits a run of new listings together: one search-index statement for the rows the run
/// inserts. The outcome of each is what applying them one by one would give.
fn submit_many(
    db: &rusqlite::Connection,
    raft_index: u64,
    items: &[(&Listing, &Actor)],
) -> rusqlite::Result<Vec<CommandResponse>> {
    let mut responses = Vec::with_capacity(items.len());
    for (listing, actor) in items {
        if listing.version != 1 {
            responses.push(Err(Refusal::Conflict(
                "a new listing must be version 1".into(),
            )));
            continue;
        }
        if let Some(refusal) = parties::recorded_refusal(db, listing.provider.id.as_str())? {
            responses.push(Err(refusal));
            continue;
        }
        let row = NewRow::new(listing, ListingState::Submitted, &actor.id);
        let id = row.id().to_string();
        if let Some(seq) = row.insert(db)? {
            let by = By::from(*actor);
            listings::record_submission(db, seq, raft_index, listing.created_at, by)?;
            responses.push(Ok(Applied {
                object_id: id,
                version: Some(1),
                state: Some(ListingState::Submitted),
                used: None,
            }));
            continue;
        }
        // Resubmitting the very same version by the same submitter (a client retry after a
        // lost answer) succeeds without a second effect; anything else is a conflict.
        responses.push(match listings::current(db, &id)? {
            Some(c) if c.submitted_by == actor.id && c.listing == **listing => {
                applied(&c.listing, c.state)
            }
            _ => Err(Refusal::Conflict(format!("listing {id} already exists"))),
        });
    }
    Ok(responses)
}

fn update(
    db: &rusqlite::Connection,
    raft_index: u64,
    id: &ContentId,
    draft: &xchg_protocol::ListingDraft,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let Some(cur) = listings::current(db, &id.to_string())? else {
        return Ok(Err(Refusal::NotFound(format!("no listing {id}"))));
    };
    if let Some(refusal) = parties::recorded_refusal(db, draft.provider.id.as_str())? {
        return Ok(Err(refusal));
    }
    if actor.role != Role::Admin && cur.submitted_by != actor.id {
        return Ok(Err(Refusal::Forbidden(format!(
            "listing {id} was submitted by {}; only its provider may update it",
            cur.submitted_by
        ))));
    }
    if !matches!(cur.state, ListingState::Submitted | ListingState::Listed) {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "listing {id} is {}; only submitted or listed listings can be updated",
            cur.state.as_str()
        ))));
    }
    let next = cur
        .listing
        .next_version(draft.clone(), at.max(cur.listing.updated_at));
    listings::write(db, &next, ListingState::Submitted, &cur.submitted_by)?;
    listings::record_history(
        db,
        &id.to_string(),
        &Transition {
            raft_index,
            at,
            by: actor.into(),
            action: "update",
            from: Some(cur.state),
            to: ListingState::Submitted,
            version: next.version,
            detail: None,
        },
    )?;
    Ok(applied(&next, ListingState::Submitted))
}

/// A review step an operator takes on a listing.
#[derive(Clone, Copy)]
enum Step {
    Approve,
    Reject,
    Delist,
}

impl Step {
    fn rule(self) -> (&'static str, ListingState, ListingState) {
        match self {
            Step::Approve => ("approve", ListingState::Submitted, ListingState::Listed),
            Step::Reject => ("reject", ListingState::Submitted, ListingState::Rejected),
            Step::Delist => ("delist", ListingState::Listed, ListingState::Delisted),
        }
    }
}

fn transition(
    db: &rusqlite::Connection,
    raft_index: u64,
    id: &ContentId,
    step: Step,
    at: Timestamp,
    actor: &Actor,
    detail: Option<String>,
) -> rusqlite::Result<CommandResponse> {
    let (action, from, to) = step.rule();
    let key = id.to_string();
    let Some(cur) = listings::current(db, &key)? else {
        return Ok(Err(Refusal::NotFound(format!("no listing {id}"))));
    };
    if cur.state != from {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "cannot {action} listing {id}: it is {}, and only {} listings can be {}",
            cur.state.as_str(),
            from.as_str(),
            to.as_str()
        ))));
    }
    listings::set_state(db, &key, to)?;
    listings::record_history(
        db,
        &key,
        &Transition {
            raft_index,
            at,
            by: actor.into(),
            action,
            from: Some(from),
            to,
            version: cur.listing.version,
            detail,
        },
    )?;
    Ok(applied(&cur.listing, to))
}

fn create_token(
    db: &rusqlite::Connection,
    hash: &str,
    role: Role,
    party: Option<&str>,
    label: &str,
    at: Timestamp,
) -> rusqlite::Result<CommandResponse> {
    // A provider or buyer token acts for its party: none for a party the registry holds as
    // not admitted (a suspension committed before the token wins).
    if let (Role::Provider | Role::Buyer, Some(party)) = (role, party)
        && let Some(refusal) = parties::recorded_refusal(db, party)?
    {
        return Ok(Err(refusal));
    }
    if !tokens::create(db, hash, role, party, label, at)? {
        return Ok(Err(Refusal::Conflict(
            "a token with this hash already exists".into(),
        )));
    }
    Ok(Ok(Applied {
        object_id: hash.to_owned(),
        version: None,
        state: None,
        used: None,
    }))
}

fn revoke_token(
    db: &rusqlite::Connection,
    hash: &str,
    role: Role,
    at: Timestamp,
    config_admins: Option<&[String]>,
) -> rusqlite::Result<CommandResponse> {
    // Entries from before these rules carry no config admins and apply as they did, so that
    // every replica replays them the same.
    if let Some(config_admins) = config_admins {
        if tokens::revoked(db, hash)? == Some(true) {
            return Ok(Err(Refusal::NotFound(format!(
                "token {hash} is already revoked"
            ))));
        }
        // Checked here, where every revocation is applied in order, and not only by the API:
        // two admins revoking each other at the same time both pass the API's check.
        if role == Role::Admin {
            let others = tokens::working_admins(db, config_admins)?
                .into_iter()
                .filter(|h| h != hash)
                .count();
            if others == 0 {
                return Ok(Err(last_admin(hash)));
            }
        }
    }
    tokens::revoke(db, hash, role, at)?;
    Ok(Ok(Applied {
        object_id: hash.to_owned(),
        version: None,
        state: None,
        used: None,
    }))
}

/// The refusal to revoke `hash`, the zone's last working admin token.
pub fn last_admin(hash: &str) -> Refusal {
    Refusal::LastAdmin(format!(
        "token {hash} is the zone's last working admin token; revoking it would leave nobody \
         able to manage the zone (create another admin token first; a zone that lost every admin \
         token recovers with `xchg token create --data-dir`, see the README)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::in_transaction;

    fn actor(id: &str) -> Actor {
        Actor {
            id: id.into(),
            role: Role::Provider,
        }
    }

    fn listing(title: &str) -> Listing {
        let mut draft = xchg_protocol::vectors::credit_draft();
        draft.title = title.into();
        Listing::first_version(
            draft,
            "xuchang/yuzhou".parse().expect("zone"),
            Timestamp(1_000),
        )
    }

    fn submit(l: &Listing, a: &Actor) -> CatalogCommand {
        CatalogCommand::SubmitListing {
            listing: Box::new(l.clone()),
            actor: a.clone(),
        }
    }

    async fn run(
        commands: &[CatalogCommand],
        one_by_one: bool,
    ) -> (Vec<CommandResponse>, Vec<audit::AuditRecord>, usize) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let zone = crate::catalog::test_zone();
        let responses = in_transaction(&db, || {
            let mut chain = audit::Chain::load(&db)?;
            let responses = if one_by_one {
                commands
                    .iter()
                    .map(|c| apply(&db, &mut chain, &zone, 7, c))
                    .collect::<rusqlite::Result<Vec<_>>>()?
            } else {
                apply_batch(&db, &mut chain, &zone, 7, commands)?
            };
            chain.flush(&db)?;
            Ok(responses)
        })
        .expect("apply");
        drop(db);
        let mut reader = crate::catalog::test_reader(dir.path()).await;
        let records = audit::range(&mut reader, 1, 100).await.expect("audit");
        let created: std::collections::BTreeSet<&str> = responses
            .iter()
            .flatten()
            .map(|a| a.object_id.as_str())
            .collect();
        let mut history = 0;
        for id in created {
            // Token commands answer with a token hash: no listing, no history.
            let view = listings::with_history(&mut reader, id).await.expect("read");
            history += view.and_then(|v| v.history).map_or(0, |h| h.len());
        }
        (responses, records, history)
    }

    #[tokio::test]
    async fn a_run_of_submissions_applied_together_equals_applying_them_one_by_one() {
        let (a, b) = (listing("甲"), listing("乙"));
        let mut v2 = listing("丙");
        v2.version = 2;
        let commands = vec![
            submit(&a, &actor("p1")),
            submit(&a, &actor("p1")), // the same client's retry: succeeds, no second effect
            submit(&a, &actor("p2")), // someone else's copy: a conflict
            submit(&v2, &actor("p1")), // not a new listing: refused
            submit(&b, &actor("p2")),
        ];
        let together = run(&commands, false).await;
        let one_by_one = run(&commands, true).await;
        assert_eq!(together.0, one_by_one.0, "the same responses");
        assert_eq!(together.1, one_by_one.1, "the same audit chain");
        assert_eq!(together.2, one_by_one.2, "the same history rows");
        let codes: Vec<Option<&str>> = together
            .0
            .iter()
            .map(|r| r.as_ref().err().map(Refusal::code))
            .collect();
        assert_eq!(
            codes,
            [None, None, Some("conflict"), Some("conflict"), None]
        );
        assert_eq!(
            together.2, 2,
            "one history entry per listing actually created"
        );
        assert_eq!(
            together.1.len(),
            5,
            "every command is audited, refusals too"
        );
        assert!(audit::first_broken_link(&together.1, [0u8; 32]).is_none());
    }

    fn admin() -> Actor {
        Actor {
            id: "token:00000000".into(),
            role: Role::Admin,
        }
    }

    fn revoke(hash: &str, role: Role, config_admins: Option<&[&str]>) -> CatalogCommand {
        CatalogCommand::RevokeToken {
            token_hash: hash.into(),
            role,
            at: Timestamp(2_000),
            actor: admin(),
            config_admins: config_admins.map(|a| a.iter().map(|h| (*h).to_owned()).collect()),
        }
    }

    fn create_admin(hash: &str) -> CatalogCommand {
        CatalogCommand::CreateToken {
            token_hash: hash.into(),
            role: Role::Admin,
            party: None,
            label: "second admin".into(),
            at: Timestamp(1_500),
            actor: admin(),
        }
    }

    fn codes(responses: &[CommandResponse]) -> Vec<Option<&'static str>> {
        responses
            .iter()
            .map(|r| r.as_ref().err().map(Refusal::code))
            .collect()
    }

    /// With one admin token in the config and none created, revoking it is refused, whether
    /// it is asked once or, as two admins racing would, right after another admin's
    /// revocation went through.
    #[tokio::test]
    async fn the_last_working_admin_token_is_never_revoked() {
        let config: &[&str] = &["aa"];
        let (responses, _, _) = run(&[revoke("aa", Role::Admin, Some(config))], true).await;
        assert_eq!(codes(&responses), [Some("last_admin")]);

        let racing = [
            create_admin("bb"),
            revoke("aa", Role::Admin, Some(config)),
            revoke("bb", Role::Admin, Some(config)),
        ];
        let (responses, _, _) = run(&racing, true).await;
        assert_eq!(codes(&responses), [None, None, Some("last_admin")]);
    }

    /// A token revoked once is not revoked again: the second revocation is refused as unknown.
    #[tokio::test]
    async fn revoking_a_revoked_token_again_is_refused_as_not_found() {
        let config: &[&str] = &["aa"];
        let commands = [
            revoke("cc", Role::Buyer, Some(config)),
            revoke("cc", Role::Buyer, Some(config)),
        ];
        let (responses, _, _) = run(&commands, true).await;
        assert_eq!(codes(&responses), [None, Some("not_found")]);
    }

    /// Log entries written before these rules carry no config admins; replayed, they apply as
    /// they did then, so every replica ends in the same state.
    #[tokio::test]
    async fn a_revocation_from_before_the_last_admin_rule_applies_as_it_did() {
        let commands = [
            revoke("aa", Role::Admin, None),
            revoke("aa", Role::Admin, None),
        ];
        let (responses, _, _) = run(&commands, true).await;
        assert_eq!(codes(&responses), [None, None]);
    }
}
