//! Applying one catalog command inside the state machine's transaction.
//!
//! Everything here is deterministic: it reads only the transaction and the command. A command
//! that the current state does not allow changes nothing but its audit record, and returns a
//! [`Refusal`] to the proposer.

use sqlx::{Row, SqliteConnection};
use xchg_federation_config::Role;
use xchg_protocol::{ContentId, Listing, Timestamp};

use super::{
    Actor, Applied, CatalogCommand, CommandResponse, IDEMPOTENCY_TTL_MS, Idempotent, ListingState,
    Refusal, ZoneFacts,
};
use crate::audit;
use crate::catalog::{federation, parties};
use crate::sqlite::{View, with_view};

/// Applies `cmd` (the entry at `raft_index`) and records it in the audit chain.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub async fn apply(
    conn: &mut SqliteConnection,
    view: &mut View,
    chain: &mut audit::Chain,
    zone: &ZoneFacts,
    raft_index: u64,
    cmd: &CatalogCommand,
) -> Result<CommandResponse, sqlx::Error> {
    if let CatalogCommand::Idempotent(i) = cmd {
        return Box::pin(idempotent(conn, view, chain, zone, raft_index, i)).await;
    }
    let response = effect(conn, view, zone, raft_index, cmd).await?;
    record(chain, raft_index, cmd, &response);
    Ok(response)
}

/// What applying `cmd` does to the tables, without its audit record.
async fn effect(
    conn: &mut SqliteConnection,
    view: &mut View,
    zone: &ZoneFacts,
    raft_index: u64,
    cmd: &CatalogCommand,
) -> Result<CommandResponse, sqlx::Error> {
    Ok(match cmd {
        CatalogCommand::SubmitListing { listing, actor } => {
            let item = [(listing.as_ref(), actor)];
            let mut one = with_view(conn, view, |db| submit_many(db, raft_index, &item)).await?;
            one.pop()
                .unwrap_or_else(|| Err(Refusal::Conflict("submission not applied".into())))
        }
        CatalogCommand::UpdateListing {
            listing_id,
            draft,
            at,
            actor,
        } => update(conn, view, raft_index, listing_id, draft, *at, actor).await?,
        CatalogCommand::ApproveListing {
            listing_id,
            review,
            at,
            actor,
        } => {
            let detail = serde_json::to_string(review).ok();
            let response = transition(
                conn,
                raft_index,
                listing_id,
                Transition::Approve,
                *at,
                actor,
                detail,
            )
            .await?;
            if response.is_ok() {
                federation::queue_listing(conn, zone, listing_id, *at).await?;
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
            let response = transition(
                conn,
                raft_index,
                listing_id,
                Transition::Reject,
                *at,
                actor,
                detail,
            )
            .await?;
            if response.is_ok() {
                // A rejected new version of a listing that was out there withdraws it.
                let why = format!("new version rejected in review: {reason}");
                federation::queue_delisting(conn, zone, listing_id, &why, *at).await?;
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
            let response = transition(
                conn,
                raft_index,
                listing_id,
                Transition::Delist,
                *at,
                actor,
                detail,
            )
            .await?;
            if response.is_ok() {
                federation::queue_delisting(conn, zone, listing_id, reason, *at).await?;
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
        } => create_token(conn, token_hash, *role, party.as_deref(), label, *at).await?,
        CatalogCommand::RevokeToken {
            token_hash,
            role,
            at,
            config_admins,
            ..
        } => revoke_token(conn, token_hash, *role, *at, config_admins.as_deref()).await?,
        CatalogCommand::RecordPublished {
            outbox_seq,
            envelope,
            at,
            ..
        } => federation::record_published(conn, zone, *outbox_seq, envelope, *at).await?,
        CatalogCommand::RecordMembershipChange { change, .. } => Ok(Applied {
            object_id: change.clone(),
            version: None,
            state: None,
        }),
        CatalogCommand::Idempotent(_) => Err(Refusal::Invalid(
            "an idempotent write inside another".into(),
        )),
        CatalogCommand::Recognize(r) => {
            federation::recognize(conn, view, zone, raft_index, r).await?
        }
        CatalogCommand::RecordRefusal(r) => federation::record_refusal(conn, raft_index, r).await?,
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
            parties::apply_for(conn, zone, raft_index, profile, *at, &who).await?
        }
        CatalogCommand::AdmitParty {
            party_id,
            notes,
            at,
            actor,
        } => {
            let decision = parties::Decision::Admit;
            let reason = notes.as_deref();
            parties::decide(
                conn, zone, raft_index, party_id, decision, reason, *at, actor,
            )
            .await?
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
            parties::decide(
                conn, zone, raft_index, party_id, decision, reason, *at, actor,
            )
            .await?
        }
        CatalogCommand::GrantEntrustment { grant, at, actor } => {
            parties::grant(conn, zone, raft_index, grant, *at, actor).await?
        }
        CatalogCommand::RevokeEntrustment {
            entrustment_id,
            reason,
            at,
            actor,
        } => parties::revoke(conn, *entrustment_id, reason, *at, actor).await?,
        CatalogCommand::Entrusted(act) => {
            Box::pin(entrusted(conn, view, zone, raft_index, act)).await?
        }
    })
}

/// Applies a broker's act: the entrustment it names must allow it (both parties admitted), and
/// then it is the party's own command, its history entry naming the broker and entrustment.
async fn entrusted(
    conn: &mut SqliteConnection,
    view: &mut View,
    zone: &ZoneFacts,
    raft_index: u64,
    act: &parties::BrokerAct,
) -> Result<CommandResponse, sqlx::Error> {
    let (Some(kind), Some(party)) = (act.command.act(), act.command.named_party()) else {
        return Ok(Err(Refusal::Invalid(format!(
            "a broker cannot be entrusted to {}",
            act.command.action().replace('_', " ")
        ))));
    };
    let (_, _, at, _) = subject(&act.command);
    if let Err(refusal) = parties::check_act(conn, zone, act, kind, party, at).await? {
        return Ok(Err(refusal));
    }
    let response = effect(conn, view, zone, raft_index, &act.command).await?;
    if let Ok(applied) = &response {
        let detail = serde_json::json!({
            "broker": act.broker.as_str(),
            "entrustment": act.entrustment,
        });
        note_latest_history(conn, &applied.object_id, &detail.to_string()).await?;
    }
    Ok(response)
}

/// Sets the detail of a listing's latest history entry (that of the command just applied).
async fn note_latest_history(
    conn: &mut SqliteConnection,
    listing_id: &str,
    detail: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE listing_history SET detail = ?1
         WHERE listing_id = ?2
           AND seq = (SELECT MAX(seq) FROM listing_history WHERE listing_id = ?2)",
    )
    .bind(detail)
    .bind(listing_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
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
async fn idempotent(
    conn: &mut SqliteConnection,
    view: &mut View,
    chain: &mut audit::Chain,
    zone: &ZoneFacts,
    raft_index: u64,
    i: &Idempotent,
) -> Result<CommandResponse, sqlx::Error> {
    let (actor, role, at, object) = subject(&i.command);
    sqlx::query("DELETE FROM idempotency WHERE at < ?")
        .bind(i.at.0.saturating_sub(IDEMPOTENCY_TTL_MS) as i64)
        .execute(&mut *conn)
        .await?;
    let earlier =
        sqlx::query("SELECT request, response FROM idempotency WHERE actor = ? AND key = ?")
            .bind(&actor)
            .bind(&i.key)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(row) = earlier {
        let request: Vec<u8> = row.try_get(0)?;
        let stored: Vec<u8> = row.try_get(1)?;
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
    let response = apply(conn, view, chain, zone, raft_index, &i.command).await?;
    let stored = cbor4ii::serde::to_vec(Vec::new(), &response)
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO idempotency (actor, key, request, response, at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&actor)
    .bind(&i.key)
    .bind(&i.request)
    .bind(stored)
    .bind(i.at.0 as i64)
    .execute(&mut *conn)
    .await?;
    Ok(response)
}

/// Applies a batch's commands in order; runs of submissions are written together.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub async fn apply_batch(
    conn: &mut SqliteConnection,
    view: &mut View,
    chain: &mut audit::Chain,
    zone: &ZoneFacts,
    raft_index: u64,
    commands: &[CatalogCommand],
) -> Result<Vec<CommandResponse>, sqlx::Error> {
    let mut out = Vec::with_capacity(commands.len());
    let mut rest = commands;
    while let Some(first) = rest.first() {
        let run = rest
            .iter()
            .take_while(|c| as_submission(c).is_some())
            .count();
        if run == 0 {
            out.push(apply(conn, view, chain, zone, raft_index, first).await?);
            rest = &rest[1..];
            continue;
        }
        let (now, later) = rest.split_at(run);
        out.extend(with_view(conn, view, |db| submit_run(db, chain, raft_index, now)).await?);
        rest = later;
    }
    Ok(out)
}

/// The listing and submitter of a submission.
pub fn as_submission(cmd: &CatalogCommand) -> Option<(&Listing, &Actor)> {
    match cmd {
        CatalogCommand::SubmitListing { listing, actor } => Some((listing.as_ref(), actor)),
        _ => None,
    }
}

/// Applies the submissions among `commands` together and appends their audit records (other
/// commands are the caller's: [`apply_batch`] passes runs of submissions only).
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn submit_run(
    db: &rusqlite::Connection,
    chain: &mut audit::Chain,
    raft_index: u64,
    commands: &[CatalogCommand],
) -> rusqlite::Result<Vec<CommandResponse>> {
    let run: Vec<_> = commands.iter().map_while(as_submission).collect();
    debug_assert_eq!(
        run.len(),
        commands.len(),
        "submit_run takes submissions only"
    );
    let responses = submit_many(db, raft_index, &run)?;
    for (cmd, response) in commands.iter().zip(&responses) {
        record(chain, raft_index, cmd, response);
    }
    Ok(responses)
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
    }
}

fn join(values: &[String]) -> String {
    values.join("\n")
}

fn modes(listing: &Listing) -> String {
    let names: Vec<String> = listing
        .delivery_modes
        .iter()
        .map(|m| {
            serde_json::to_value(m)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        })
        .collect();
    format!(",{},", names.join(","))
}

fn enum_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A listing version's canonical bytes and the ids derived from them, computed once.
pub(super) struct Encoded {
    id: ContentId,
    content_id: ContentId,
    bytes: Vec<u8>,
}

impl Encoded {
    fn of(listing: &Listing) -> Self {
        let bytes = listing.canonical_bytes();
        let content_id = ContentId::of(&bytes);
        Encoded {
            id: listing.listing_id.unwrap_or(content_id),
            content_id,
            bytes,
        }
    }
}

/// A new listings row; an id that is already there is left as it is.
const INSERT_LISTING: &str = "INSERT INTO listings (id, version, content_id, state, origin, \
    submitted_by, provider_id, provider_name, category, classification, delivery_modes, title, \
    description, keywords, scenarios, created_at, updated_at, body) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) \
    ON CONFLICT (id) DO NOTHING";

/// The same values over an existing row, keeping its first-seen order and creation time (?16).
/// Its update trigger keeps the search index in step.
const UPDATE_LISTING: &str = "UPDATE listings SET version = ?2, content_id = ?3, state = ?4, \
    origin = ?5, submitted_by = ?6, provider_id = ?7, provider_name = ?8, category = ?9, \
    classification = ?10, delivery_modes = ?11, title = ?12, description = ?13, keywords = ?14, \
    scenarios = ?15, updated_at = ?17, body = ?18 WHERE id = ?1";

/// One row of the listings table.
struct ListingRow<'a> {
    listing: &'a Listing,
    encoded: Encoded,
    state: ListingState,
    submitted_by: &'a str,
}

impl<'a> ListingRow<'a> {
    fn new(listing: &'a Listing, state: ListingState, submitted_by: &'a str) -> Self {
        ListingRow {
            listing,
            encoded: Encoded::of(listing),
            state,
            submitted_by,
        }
    }

    /// Inserts the row unless its id is there. Returns the new row's `seq` (to be indexed with
    /// [`index_listings`]), `None` if the id was there.
    fn insert(&self, db: &rusqlite::Connection) -> rusqlite::Result<Option<i64>> {
        let inserted = self.run(db, INSERT_LISTING)? == 1;
        Ok(inserted.then(|| db.last_insert_rowid()))
    }

    /// Writes the row over the one with its id, or inserts it; returns the `seq` as
    /// [`ListingRow::insert`] does.
    fn replace(&self, db: &rusqlite::Connection) -> rusqlite::Result<Option<i64>> {
        if self.run(db, UPDATE_LISTING)? == 1 {
            return Ok(None);
        }
        self.insert(db)
    }

    /// Runs `sql` ([`INSERT_LISTING`] or [`UPDATE_LISTING`]) with the row's 18 values.
    fn run(&self, db: &rusqlite::Connection, sql: &str) -> rusqlite::Result<usize> {
        let l = self.listing;
        db.prepare_cached(sql)?.execute(rusqlite::params![
            self.encoded.id.to_string(),
            i64::from(l.version),
            self.encoded.content_id.to_string(),
            self.state.as_str(),
            l.origin.to_string(),
            self.submitted_by,
            l.provider.id.to_string(),
            l.provider.name,
            l.category,
            enum_name(&l.classification),
            modes(l),
            l.title,
            l.description,
            join(&l.keywords),
            join(&l.scenarios),
            l.created_at.0 as i64,
            l.updated_at.0 as i64,
            self.encoded.bytes,
        ])
    }
}

/// Adds the listings rows with `seq` in `first..=last` to the search index, in one statement
/// (see `catalog_schema_v4.sql` for why not per row).
fn index_listings(db: &rusqlite::Connection, first: i64, last: i64) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO listings_fts (rowid, title, description, keywords, scenarios, provider_name) \
         SELECT seq, title, description, keywords, scenarios, provider_name FROM listings \
         WHERE seq BETWEEN ?1 AND ?2",
    )?
    .execute([first, last])?;
    Ok(())
}

/// Writes `listing` as the current version of its id (a new row, or replacing the old one),
/// in `state`.
pub(super) async fn write_listing(
    conn: &mut SqliteConnection,
    view: &mut View,
    listing: &Listing,
    state: ListingState,
    submitted_by: &str,
) -> Result<(), sqlx::Error> {
    let row = ListingRow::new(listing, state, submitted_by);
    with_view(conn, view, |db| match row.replace(db)? {
        Some(seq) => index_listings(db, seq, seq),
        None => Ok(()),
    })
    .await
}

/// Who a history entry names: a person's actor id and role, or a node acting for the zone.
#[derive(Clone, Copy)]
pub(super) struct By<'a> {
    pub(super) id: &'a str,
    pub(super) role: &'a str,
}

impl<'a> From<&'a Actor> for By<'a> {
    fn from(a: &'a Actor) -> Self {
        By {
            id: &a.id,
            role: a.role.as_str(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn record_history(
    conn: &mut SqliteConnection,
    listing_id: &str,
    raft_index: u64,
    at: Timestamp,
    by: By<'_>,
    action: &str,
    from: Option<ListingState>,
    to: ListingState,
    version: u32,
    detail: Option<String>,
) -> Result<(), sqlx::Error> {
    let written = sqlx::query(
        "INSERT INTO listing_history (listing_seq, listing_id, seq, raft_index, at, actor, role,
            action, from_state, to_state, version, detail)
         SELECT l.seq, ?1, (SELECT COALESCE(MAX(h.seq), 0) + 1 FROM listing_history h
                            WHERE h.listing_seq = l.seq),
            ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10
         FROM listings l WHERE l.id = ?1",
    )
    .bind(listing_id)
    .bind(raft_index as i64)
    .bind(at.0 as i64)
    .bind(by.id)
    .bind(by.role)
    .bind(action)
    .bind(from.map(ListingState::as_str))
    .bind(to.as_str())
    .bind(i64::from(version))
    .bind(detail)
    .execute(&mut *conn)
    .await?;
    if written.rows_affected() != 1 {
        // Callers write the listing first; a history entry with no listing is a bug to stop on.
        return Err(sqlx::Error::RowNotFound);
    }
    Ok(())
}

/// The current row of a listing: state, submitter and decoded current version.
pub(super) struct Current {
    pub(super) state: ListingState,
    pub(super) submitted_by: String,
    pub(super) listing: Listing,
}

const SELECT_CURRENT: &str = "SELECT state, submitted_by, body FROM listings WHERE id = ?1";

impl Current {
    fn decode(
        state: &str,
        submitted_by: String,
        body: &[u8],
    ) -> Result<Current, Box<dyn std::error::Error + Send + Sync>> {
        let listing: Listing = xchg_protocol::canonical::from_canonical(body, &Default::default())?;
        let state =
            ListingState::parse(state).ok_or_else(|| format!("unknown listing state {state:?}"))?;
        Ok(Current {
            state,
            submitted_by,
            listing,
        })
    }
}

pub(super) async fn current(
    conn: &mut SqliteConnection,
    id: &ContentId,
) -> Result<Option<Current>, sqlx::Error> {
    let row = sqlx::query(SELECT_CURRENT)
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let state: String = row.try_get(0)?;
    let body: Vec<u8> = row.try_get(2)?;
    Current::decode(&state, row.try_get(1)?, &body)
        .map(Some)
        .map_err(sqlx::Error::Decode)
}

/// [`current`] on the state machine's connection taken from sqlx.
fn current_raw(db: &rusqlite::Connection, id: &str) -> rusqlite::Result<Option<Current>> {
    let mut select = db.prepare_cached(SELECT_CURRENT)?;
    let mut rows = select.query([id])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let state: String = row.get(0)?;
    let body: Vec<u8> = row.get(2)?;
    Current::decode(&state, row.get(1)?, &body)
        .map(Some)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Blob, e))
}

pub(super) fn applied(listing: &Listing, state: ListingState) -> CommandResponse {
    Ok(Applied {
        object_id: listing.id().to_string(),
        version: Some(listing.version),
        state: Some(state),
    })
}

/// Submits a run of new listings over prepared statements on the state machine's connection
/// taken from sqlx ([`with_view`]): no hand-off to sqlx's thread per statement. The outcome of
/// each is what applying them one by one would give.
fn submit_many(
    db: &rusqlite::Connection,
    raft_index: u64,
    items: &[(&Listing, &Actor)],
) -> rusqlite::Result<Vec<CommandResponse>> {
    let mut history = db.prepare_cached(
        "INSERT INTO listing_history (listing_seq, listing_id, seq, raft_index, at, actor, role, \
         action, from_state, to_state, version, detail) \
         VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, 'submit', NULL, ?7, 1, NULL)",
    )?;
    let mut responses = Vec::with_capacity(items.len());
    // Rows inserted by this run: consecutive, as nothing else inserts meanwhile.
    let mut inserted: Option<(i64, i64)> = None;
    for (listing, actor) in items {
        if listing.version != 1 {
            responses.push(Err(Refusal::Conflict(
                "a new listing must be version 1".into(),
            )));
            continue;
        }
        if let Some(refusal) = parties::recorded_refusal_raw(db, listing.provider.id.as_str())? {
            responses.push(Err(refusal));
            continue;
        }
        let row = ListingRow::new(listing, ListingState::Submitted, &actor.id);
        let id = row.encoded.id.to_string();
        if let Some(seq) = row.insert(db)? {
            inserted = Some((inserted.map_or(seq, |(first, _)| first), seq));
            history.execute(rusqlite::params![
                seq,
                id,
                raft_index as i64,
                listing.created_at.0 as i64,
                actor.id,
                actor.role.as_str(),
                ListingState::Submitted.as_str(),
            ])?;
            responses.push(Ok(Applied {
                object_id: id,
                version: Some(1),
                state: Some(ListingState::Submitted),
            }));
            continue;
        }
        // Resubmitting the very same version by the same submitter (a client retry after a
        // lost answer) succeeds without a second effect; anything else is a conflict.
        responses.push(match current_raw(db, &id)? {
            Some(c) if c.submitted_by == actor.id && c.listing == **listing => {
                applied(&c.listing, c.state)
            }
            _ => Err(Refusal::Conflict(format!("listing {id} already exists"))),
        });
    }
    if let Some((first, last)) = inserted {
        index_listings(db, first, last)?;
    }
    Ok(responses)
}

async fn update(
    conn: &mut SqliteConnection,
    view: &mut View,
    raft_index: u64,
    id: &ContentId,
    draft: &xchg_protocol::ListingDraft,
    at: Timestamp,
    actor: &Actor,
) -> Result<CommandResponse, sqlx::Error> {
    let Some(cur) = current(conn, id).await? else {
        return Ok(Err(Refusal::NotFound(format!("no listing {id}"))));
    };
    if let Some(refusal) = parties::recorded_refusal(conn, draft.provider.id.as_str()).await? {
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
    write_listing(
        conn,
        view,
        &next,
        ListingState::Submitted,
        &cur.submitted_by,
    )
    .await?;
    record_history(
        conn,
        &id.to_string(),
        raft_index,
        at,
        actor.into(),
        "update",
        Some(cur.state),
        ListingState::Submitted,
        next.version,
        None,
    )
    .await?;
    Ok(applied(&next, ListingState::Submitted))
}

#[derive(Clone, Copy)]
enum Transition {
    Approve,
    Reject,
    Delist,
}

impl Transition {
    fn rule(self) -> (&'static str, ListingState, ListingState) {
        match self {
            Transition::Approve => ("approve", ListingState::Submitted, ListingState::Listed),
            Transition::Reject => ("reject", ListingState::Submitted, ListingState::Rejected),
            Transition::Delist => ("delist", ListingState::Listed, ListingState::Delisted),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn transition(
    conn: &mut SqliteConnection,
    raft_index: u64,
    id: &ContentId,
    t: Transition,
    at: Timestamp,
    actor: &Actor,
    detail: Option<String>,
) -> Result<CommandResponse, sqlx::Error> {
    let (action, from, to) = t.rule();
    let Some(cur) = current(conn, id).await? else {
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
    sqlx::query("UPDATE listings SET state = ? WHERE id = ?")
        .bind(to.as_str())
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    record_history(
        conn,
        &id.to_string(),
        raft_index,
        at,
        actor.into(),
        action,
        Some(from),
        to,
        cur.listing.version,
        detail,
    )
    .await?;
    Ok(applied(&cur.listing, to))
}

async fn create_token(
    conn: &mut SqliteConnection,
    hash: &str,
    role: Role,
    party: Option<&str>,
    label: &str,
    at: Timestamp,
) -> Result<CommandResponse, sqlx::Error> {
    // A provider or buyer token acts for its party: none for a party the registry holds as
    // not admitted (a suspension committed before the token wins).
    if let (Role::Provider | Role::Buyer, Some(party)) = (role, party)
        && let Some(refusal) = parties::recorded_refusal(conn, party).await?
    {
        return Ok(Err(refusal));
    }
    let done = sqlx::query(
        "INSERT INTO tokens (hash, role, party, label, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (hash) DO NOTHING",
    )
    .bind(hash)
    .bind(role.as_str())
    .bind(party)
    .bind(label)
    .bind(at.0 as i64)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(Err(Refusal::Conflict(
            "a token with this hash already exists".into(),
        )));
    }
    Ok(Ok(Applied {
        object_id: hash.to_owned(),
        version: None,
        state: None,
    }))
}

async fn revoke_token(
    conn: &mut SqliteConnection,
    hash: &str,
    role: Role,
    at: Timestamp,
    config_admins: Option<&[String]>,
) -> Result<CommandResponse, sqlx::Error> {
    // Entries from before these rules carry no config admins and apply as they did, so that
    // every replica replays them the same.
    if let Some(config_admins) = config_admins {
        let revoked: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoked_at FROM tokens WHERE hash = ?")
                .bind(hash)
                .fetch_optional(&mut *conn)
                .await?;
        if revoked.flatten().is_some() {
            return Ok(Err(Refusal::NotFound(format!(
                "token {hash} is already revoked"
            ))));
        }
        // Checked here, where every revocation is applied in order, and not only by the API:
        // two admins revoking each other at the same time both pass the API's check.
        if role == Role::Admin {
            let others = working_admins(conn, config_admins)
                .await?
                .into_iter()
                .filter(|h| h != hash)
                .count();
            if others == 0 {
                return Ok(Err(last_admin(hash)));
            }
        }
    }
    // Config-issued tokens have no row yet: the revocation creates one.
    sqlx::query(
        "INSERT INTO tokens (hash, role, party, label, created_at, revoked_at) VALUES (?1, ?2, NULL, 'config', ?3, ?3)
         ON CONFLICT (hash) DO UPDATE SET revoked_at = COALESCE(tokens.revoked_at, excluded.revoked_at)",
    )
    .bind(hash)
    .bind(role.as_str())
    .bind(at.0 as i64)
    .execute(&mut *conn)
    .await?;
    Ok(Ok(Applied {
        object_id: hash.to_owned(),
        version: None,
        state: None,
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

/// The hashes of the admin tokens that work: run-time admin tokens and the config's
/// (`config_admins`), less those revoked.
///
/// # Errors
/// Only storage errors.
pub async fn working_admins(
    conn: &mut SqliteConnection,
    config_admins: &[String],
) -> Result<std::collections::BTreeSet<String>, sqlx::Error> {
    let mut working: std::collections::BTreeSet<String> =
        sqlx::query_scalar("SELECT hash FROM tokens WHERE role = 'admin' AND revoked_at IS NULL")
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    for hash in config_admins {
        let revoked: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoked_at FROM tokens WHERE hash = ?")
                .bind(hash)
                .fetch_optional(&mut *conn)
                .await?;
        if revoked.flatten().is_none() {
            working.insert(hash.clone());
        }
    }
    Ok(working)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

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
    ) -> (Vec<CommandResponse>, Vec<audit::AuditRecord>, i64) {
        let dir = tempfile::tempdir().expect("tempdir");
        let slot = crate::catalog::test_writer(dir.path()).await;
        let mut writer = slot.lock().await.expect("writer");
        let (conn, view) = writer.split();
        let mut tx = conn.begin().await.expect("tx");
        let mut chain = audit::Chain::load(&mut tx).await.expect("chain");
        let zone = crate::catalog::test_zone();
        let mut responses = Vec::new();
        if one_by_one {
            for c in commands {
                responses.push(
                    apply(&mut tx, view, &mut chain, &zone, 7, c)
                        .await
                        .expect("apply"),
                );
            }
        } else {
            responses = apply_batch(&mut tx, view, &mut chain, &zone, 7, commands)
                .await
                .expect("apply");
        }
        with_view(&mut tx, view, |db| chain.flush(db))
            .await
            .expect("flush");
        let records = audit::range(&mut tx, 1, 100).await.expect("audit");
        let history: i64 = sqlx::query("SELECT count(*) FROM listing_history")
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get(0))
            .expect("count");
        tx.commit().await.expect("commit");
        drop(writer);
        slot.close().await;
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
