//! The zone's party registry (交易主体管理): who may trade here, and on whose behalf.
//!
//! A party applies with its profile (id, legal name, credit code, kinds, contact) and is
//! `applied`; an operator admits or refuses it; an admitted party can be suspended, and a
//! suspended one reinstated. A refused party may apply again under the same id and credit
//! code. The zone's founding parties (its configuration's `[[parties]]`, the same on every
//! member: [`ZoneFacts::founding`]) are admitted without an application; their row is written
//! the first time their state changes.
//!
//! A provider or buyer token acts for its party only while that party is admitted. A party
//! whose kinds make it a broker ([`PartyKind::BROKERS`]) acts for another party only under an
//! entrustment (委托) that party granted it: the acts it covers, until when. The state machine
//! holds every command to these rules when it applies it, so a suspension that commits before
//! a write wins over the check the receiving node made earlier. Listings and tokens written
//! before the registry existed name parties it has no row for; those replay as they did (a
//! party the registry has no row for is refused by the node that receives a request, not here).
//!
//! The SQL of the registry's tables (`parties`, `party_history`, `entrustments`, schema v7)
//! is in [`super::tables::parties`]; the rules run on the catalog's writer, the reads for the
//! API on a reader.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;
use xchg_federation_config::Role;
use xchg_protocol::{Contact, CreditCode, PartyId, PartyKind, PartyProfile, Timestamp};

use super::tables::parties as table;
use super::{Actor, Applied, CommandResponse, Refusal, ZoneFacts};

/// The zone's founding parties by id.
pub type Founding = BTreeMap<PartyId, PartyProfile>;

/// Most applications awaiting a decision at once; more are refused until operators decide
/// ([`Refusal::ApplicationsFull`]). Anyone may apply, so this bounds what they can make the
/// zone store.
pub const MAX_PENDING_APPLICATIONS: i64 = 10_000;

/// The longest an entrustment may run: 1096 days (three years).
pub const MAX_ENTRUSTMENT_MS: u64 = 1096 * 24 * 60 * 60 * 1000;

/// Longest reason or notes a party decision or an entrustment's revocation keeps, in
/// characters.
pub const MAX_REASON_CHARS: usize = 2000;

/// A party's standing in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartyState {
    /// Applied, awaiting an operator's decision.
    Applied,
    /// Admitted: its tokens act, it may list, entrust and be entrusted.
    Admitted,
    /// Refused; it may apply again under the same id and credit code.
    Refused,
    /// Suspended by an operator: it can do nothing new until reinstated.
    Suspended,
}

impl PartyState {
    /// Every state.
    pub const ALL: [PartyState; 4] = [
        PartyState::Applied,
        PartyState::Admitted,
        PartyState::Refused,
        PartyState::Suspended,
    ];

    /// The stored and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            PartyState::Applied => "applied",
            PartyState::Admitted => "admitted",
            PartyState::Refused => "refused",
            PartyState::Suspended => "suspended",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        PartyState::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// An operator's decision on a party.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// `applied → admitted`.
    Admit,
    /// `applied → refused`.
    Refuse,
    /// `admitted → suspended`.
    Suspend,
    /// `suspended → admitted`.
    Reinstate,
}

impl Decision {
    /// The history action, and the only state it leaves and the state it makes.
    pub fn rule(self) -> (&'static str, PartyState, PartyState) {
        match self {
            Decision::Admit => ("admit", PartyState::Applied, PartyState::Admitted),
            Decision::Refuse => ("refuse", PartyState::Applied, PartyState::Refused),
            Decision::Suspend => ("suspend", PartyState::Admitted, PartyState::Suspended),
            Decision::Reinstate => ("reinstate", PartyState::Suspended, PartyState::Admitted),
        }
    }

    /// The state after deciding on a party in state `from`.
    ///
    /// # Errors
    /// [`Refusal::IllegalTransition`] naming the state the decision needs.
    pub fn transition(self, party: &PartyId, from: PartyState) -> Result<PartyState, Refusal> {
        let (action, needs, to) = self.rule();
        if from == needs {
            return Ok(to);
        }
        Err(Refusal::IllegalTransition(format!(
            "cannot {action} party {party}: it is {}, and only {} parties can be {}",
            from.as_str(),
            needs.as_str(),
            to.as_str()
        )))
    }
}

/// What a broker may be entrusted to do in a party's name: the commands of that name. Wire
/// names are stable; registrations and scenario applications will add theirs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Act {
    /// Submit a new listing in the party's name.
    SubmitListing,
    /// Update one of the party's listings.
    UpdateListing,
    /// Register one of the party's listings (登记).
    SubmitRegistration,
    /// Post a demand in the party's name (交易撮合).
    PostDemand,
    /// Place an order under one of the party's authorisations (a buyer's broker).
    PlaceOrder,
}

impl Act {
    /// Every act.
    pub const ALL: [Act; 5] = [
        Act::SubmitListing,
        Act::UpdateListing,
        Act::SubmitRegistration,
        Act::PostDemand,
        Act::PlaceOrder,
    ];

    /// The wire name, which is also the name of the command it allows.
    pub fn as_str(self) -> &'static str {
        match self {
            Act::SubmitListing => "submit_listing",
            Act::UpdateListing => "update_listing",
            Act::SubmitRegistration => "submit_registration",
            Act::PostDemand => "post_demand",
            Act::PlaceOrder => "place_order",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Act> {
        Act::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// An entrustment a party grants a broker (the party is the caller's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntrustmentGrant {
    /// The party that entrusts.
    pub party: PartyId,
    /// The broker it entrusts.
    pub broker: PartyId,
    /// What the broker may do in its name: at least one act, each once.
    pub scope: Vec<Act>,
    /// Until when (exclusive).
    pub expires_at: Timestamp,
}

/// A broker's act in a party's name ([`super::CatalogCommand::Entrusted`]): the command as the
/// party would ask for it, and the broker and entrustment it is done under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerAct {
    /// The broker: the party of the token that asked.
    pub broker: PartyId,
    /// The entrustment it acts under.
    pub entrustment: u64,
    /// The act, its actor the party acted for.
    pub command: super::CatalogCommand,
}

/// A party's standing as the rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// Its state.
    pub state: PartyState,
    /// Whether its kinds let it act for others.
    pub broker: bool,
}

/// Why `party` may not act (its state is not `admitted`), or `None` if it may.
pub fn not_admitted(party: &str, standing: Option<&Standing>) -> Option<Refusal> {
    let why = match standing.map(|s| s.state) {
        Some(PartyState::Admitted) => return None,
        None => format!(
            "party {party} is not in this zone's registry: it applies with POST /v1/parties and \
             an operator admits it"
        ),
        Some(PartyState::Applied) => {
            format!("party {party} has applied and is not admitted yet: an operator decides")
        }
        Some(PartyState::Refused) => format!("party {party} was refused admission"),
        Some(PartyState::Suspended) => {
            format!("party {party} is suspended: it can do nothing new until reinstated")
        }
    };
    Some(Refusal::PartyNotAdmitted(why))
}

/// The standing of `party` from its recorded state and kinds, or admitted if it is a founding
/// party without a row.
fn standing_of(
    row: Option<(PartyState, Vec<PartyKind>)>,
    founding: &Founding,
    party: &str,
) -> Option<Standing> {
    if let Some((state, kinds)) = row {
        return Some(Standing {
            state,
            broker: kinds.iter().any(|k| k.acts_for_others()),
        });
    }
    party.parse::<PartyId>().ok().and_then(|id| {
        founding.get(&id).map(|p| Standing {
            state: PartyState::Admitted,
            broker: p.is_broker(),
        })
    })
}

/// The standing of `party`: its row, or admitted if it is a founding party without one; on a
/// reader, for the API.
///
/// # Errors
/// Only storage errors.
pub async fn standing(
    conn: &mut SqliteConnection,
    founding: &Founding,
    party: &str,
) -> Result<Option<Standing>, sqlx::Error> {
    let row = table::state_and_kinds_read(conn, party).await?;
    Ok(standing_of(row, founding, party))
}

/// [`standing`] on the catalog's writer, for the rules.
///
/// # Errors
/// Only storage errors.
pub fn standing_on(
    db: &rusqlite::Connection,
    founding: &Founding,
    party: &str,
) -> rusqlite::Result<Option<Standing>> {
    Ok(standing_of(
        table::state_and_kinds(db, party)?,
        founding,
        party,
    ))
}

/// The rule of the state machine for a listing or token in `party`'s name, compatible with
/// entries from before the registry: refused only if the registry has a row for the party
/// and it is not admitted (so a suspension committed first wins).
///
/// # Errors
/// Only storage errors.
pub fn recorded_refusal(
    db: &rusqlite::Connection,
    party: &str,
) -> rusqlite::Result<Option<Refusal>> {
    Ok(table::state_and_kinds(db, party)?.and_then(|(state, _)| {
        not_admitted(
            party,
            Some(&Standing {
                state,
                broker: false,
            }),
        )
    }))
}

fn ok(object_id: impl Into<String>) -> CommandResponse {
    Ok(Applied {
        object_id: object_id.into(),
        version: None,
        state: None,
        used: None,
    })
}

/// Who a party's history entry names.
pub struct Who<'a> {
    /// The actor id (or `anonymous via <node>`).
    pub id: &'a str,
    /// Its role (or `anonymous`).
    pub role: &'a str,
}

impl<'a> From<&'a Actor> for Who<'a> {
    fn from(a: &'a Actor) -> Self {
        Who {
            id: &a.id,
            role: a.role.as_str(),
        }
    }
}

/// Records a change of `party`'s state in its history.
fn record_change(
    db: &rusqlite::Connection,
    party: &str,
    raft_index: u64,
    at: Timestamp,
    who: &Who<'_>,
    (action, from, to): (&str, Option<PartyState>, PartyState),
    reason: Option<&str>,
) -> rusqlite::Result<()> {
    table::record_history(
        db,
        party,
        &table::Change {
            raft_index,
            at,
            actor: who.id,
            role: who.role,
            action,
            from,
            to,
            reason,
        },
    )
}

/// Applies a party's application: a new party, or a refused one applying again with the same
/// credit code, becomes `applied`.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn apply_for(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    raft_index: u64,
    profile: &PartyProfile,
    at: Timestamp,
    who: &Who<'_>,
) -> rusqlite::Result<CommandResponse> {
    let id = &profile.id;
    let code = &profile.credit_code;
    if zone.founding.contains_key(id) {
        return Ok(Err(Refusal::Conflict(format!(
            "party {id} is a founding party of this zone; choose another id"
        ))));
    }
    if zone.founding.values().any(|p| p.credit_code == *code) {
        // Which party holds it is not told: the applicant may be anyone (the registry is
        // read by staff), and the record goes into the audit chain.
        return Ok(Err(Refusal::Conflict(format!(
            "credit code {code} is already registered in this zone: one party per credit code \
             (an operator can tell you which)"
        ))));
    }
    let again = match table::state_and_code(db, id.as_str())? {
        Some((state, their_code)) => {
            if state != PartyState::Refused || their_code != code.as_str() {
                return Ok(Err(Refusal::Conflict(format!(
                    "party {id} already exists ({}){}",
                    state.as_str(),
                    if state == PartyState::Refused {
                        "; a refused party applies again with its own credit code"
                    } else {
                        ""
                    }
                ))));
            }
            true
        }
        None => false,
    };
    if table::holder_of_code(db, code.as_str(), id.as_str())?.is_some() {
        return Ok(Err(Refusal::Conflict(format!(
            "credit code {code} is already registered in this zone: one party per credit code \
             (an operator can tell you which)"
        ))));
    }
    let pending = table::pending_applications(db)?;
    if pending >= MAX_PENDING_APPLICATIONS {
        return Ok(Err(Refusal::ApplicationsFull(format!(
            "{pending} applications await a decision, the most this zone keeps; apply again once \
             operators have decided on some"
        ))));
    }
    table::write(db, profile, PartyState::Applied, "application", at)?;
    let from = again.then_some(PartyState::Refused);
    let change = ("apply", from, PartyState::Applied);
    record_change(db, id.as_str(), raft_index, at, who, change, None)?;
    Ok(ok(id.as_str()))
}

/// Applies an operator's decision on `party`.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    raft_index: u64,
    party: &PartyId,
    decision: Decision,
    reason: Option<&str>,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let (action, _, _) = decision.rule();
    let who = Who::from(actor);
    let recorded = table::state_and_kinds(db, party.as_str())?;
    let from = match (recorded, zone.founding.get(party)) {
        (Some((state, _)), _) => state,
        (None, Some(founder)) => {
            // A founding party gets its row with its first change of state, from the zone's
            // configuration (every member's is the same).
            let next = match decision.transition(party, PartyState::Admitted) {
                Ok(next) => next,
                Err(refusal) => return Ok(Err(refusal)),
            };
            table::write(db, founder, next, "config", at)?;
            let change = (action, Some(PartyState::Admitted), next);
            record_change(db, party.as_str(), raft_index, at, &who, change, reason)?;
            return Ok(ok(party.as_str()));
        }
        (None, None) => {
            return Ok(Err(Refusal::NotFound(format!("no party {party}"))));
        }
    };
    let next = match decision.transition(party, from) {
        Ok(next) => next,
        Err(refusal) => return Ok(Err(refusal)),
    };
    table::set_state(db, party.as_str(), next, at)?;
    let change = (action, Some(from), next);
    record_change(db, party.as_str(), raft_index, at, &who, change, reason)?;
    Ok(ok(party.as_str()))
}

/// The checks of a grant that need no storage: a scope of distinct acts, a broker other than
/// the party, an expiry after `at` and within [`MAX_ENTRUSTMENT_MS`].
///
/// # Errors
/// The field at fault (`scope`, `broker`, `expires_at`) and what is wrong with it.
pub fn grant_shape(grant: &EntrustmentGrant, at: Timestamp) -> Result<(), (&'static str, String)> {
    if grant.scope.is_empty() {
        return Err(("scope", "an entrustment names at least one act".into()));
    }
    if grant
        .scope
        .iter()
        .enumerate()
        .any(|(i, a)| grant.scope[..i].contains(a))
    {
        return Err(("scope", "an entrustment names each act once".into()));
    }
    if grant.broker == grant.party {
        return Err((
            "broker",
            "a party acts for itself without an entrustment; entrust another party".into(),
        ));
    }
    if grant.expires_at <= at {
        return Err((
            "expires_at",
            format!(
                "the entrustment would expire at {}, which is not after now ({at})",
                grant.expires_at
            ),
        ));
    }
    if grant.expires_at.0 - at.0 > MAX_ENTRUSTMENT_MS {
        return Err((
            "expires_at",
            format!(
                "an entrustment runs at most 1096 days (three years); {} is further",
                grant.expires_at
            ),
        ));
    }
    Ok(())
}

/// Whether a party of `standing` may be entrusted as a broker.
///
/// # Errors
/// [`Refusal::Invalid`] saying which kinds may.
pub fn broker_rule(broker: &str, standing: &Standing) -> Result<(), Refusal> {
    if standing.broker {
        return Ok(());
    }
    Err(Refusal::Invalid(format!(
        "party {broker} is not a broker: only a data broker, an entrusted data merchant or a \
         brokerage service firm (kinds {}) acts for other parties",
        PartyKind::BROKERS.map(PartyKind::as_str).join(", ")
    )))
}

/// Records an entrustment: both parties admitted, the broker of a broker's kind.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn grant(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    raft_index: u64,
    grant: &EntrustmentGrant,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    if let Err((_, why)) = grant_shape(grant, at) {
        return Ok(Err(Refusal::Invalid(why)));
    }
    let party = standing_on(db, &zone.founding, grant.party.as_str())?;
    if let Some(refusal) = not_admitted(grant.party.as_str(), party.as_ref()) {
        return Ok(Err(refusal));
    }
    let broker = standing_on(db, &zone.founding, grant.broker.as_str())?;
    if let Some(refusal) = not_admitted(grant.broker.as_str(), broker.as_ref()) {
        return Ok(Err(refusal));
    }
    if let Some(b) = &broker
        && let Err(refusal) = broker_rule(grant.broker.as_str(), b)
    {
        return Ok(Err(refusal));
    }
    let id = table::insert_entrustment(db, grant, at, &actor.id, raft_index)?;
    Ok(ok(id.to_string()))
}

/// An entrustment as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Entrustment {
    /// Its number in this zone.
    pub id: u64,
    /// The party that entrusted.
    #[schema(value_type = String)]
    pub party: PartyId,
    /// The broker it entrusted.
    #[schema(value_type = String)]
    pub broker: PartyId,
    /// What the broker may do in the party's name.
    pub scope: Vec<Act>,
    /// Until when (exclusive).
    pub expires_at: Timestamp,
    /// When it was granted.
    pub granted_at: Timestamp,
    /// Who granted it (the party's token).
    pub granted_by: String,
    /// When it was revoked, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    /// Who revoked it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoke_reason: Option<String>,
}

/// Entrustment `id`, if there is one.
///
/// # Errors
/// Only storage errors.
pub async fn entrustment(
    conn: &mut SqliteConnection,
    id: u64,
) -> Result<Option<Entrustment>, sqlx::Error> {
    table::entrustment_read(conn, id).await
}

/// Whether entrustment `e` lets `broker` do `act` in `party`'s name at `at`.
///
/// # Errors
/// [`Refusal::NotEntrusted`] saying which condition fails: another party's or another broker's
/// entrustment, revoked, expired, or not covering the act.
pub fn judge(
    e: &Entrustment,
    party: &str,
    broker: &str,
    act: Act,
    at: Timestamp,
) -> Result<(), Refusal> {
    let n = e.id;
    let why = if e.party.as_str() != party {
        format!(
            "entrustment {n} was granted by {}, not by {party}: {broker} may not act for {party}",
            e.party
        )
    } else if e.broker.as_str() != broker {
        format!("entrustment {n} entrusts {}, not {broker}", e.broker)
    } else if let Some(revoked) = e.revoked_at {
        format!("{party}'s entrustment {n} of {broker} was revoked at {revoked}")
    } else if e.expires_at <= at {
        format!(
            "{party}'s entrustment {n} of {broker} expired at {}",
            e.expires_at
        )
    } else if !e.scope.contains(&act) {
        let scope: Vec<&str> = e.scope.iter().map(|a| a.as_str()).collect();
        format!(
            "{party}'s entrustment {n} of {broker} covers {}, not {}",
            scope.join(", "),
            act.as_str()
        )
    } else {
        return Ok(());
    };
    Err(Refusal::NotEntrusted(why))
}

/// The entrustment under which `broker` may do `act` for `party` at `at`: the oldest that
/// allows it. Without one, why not: the newest of theirs judged, or that there is none.
///
/// # Errors
/// Only storage errors; the refusal is the inner `Err`.
pub async fn find_entrustment(
    conn: &mut SqliteConnection,
    party: &str,
    broker: &str,
    act: Act,
    at: Timestamp,
) -> Result<Result<u64, Refusal>, sqlx::Error> {
    let mut last = None;
    for e in table::between(conn, party, broker).await? {
        match judge(&e, party, broker, act, at) {
            Ok(()) => return Ok(Ok(e.id)),
            Err(refusal) => last = Some(refusal),
        }
    }
    Ok(Err(last.unwrap_or_else(|| {
        Refusal::NotEntrusted(format!(
            "{party} has not entrusted {broker}: a listing in {party}'s name needs a token of \
             {party}, or an entrustment {party} grants {broker} (POST /v1/entrustments)"
        ))
    })))
}

/// The check of the state machine before a broker's act: the broker and the party admitted,
/// the entrustment the act names allowing it.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn check_act(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    act: &BrokerAct,
    kind: Act,
    party: &str,
    at: Timestamp,
) -> rusqlite::Result<Result<(), Refusal>> {
    for who in [act.broker.as_str(), party] {
        let s = standing_on(db, &zone.founding, who)?;
        if let Some(refusal) = not_admitted(who, s.as_ref()) {
            return Ok(Err(refusal));
        }
    }
    let Some(e) = table::entrustment(db, act.entrustment)? else {
        return Ok(Err(Refusal::NotEntrusted(format!(
            "no entrustment {} in this zone",
            act.entrustment
        ))));
    };
    Ok(judge(&e, party, act.broker.as_str(), kind, at))
}

/// Revokes entrustment `id`: its party, or an operator, ends it before its expiry.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn revoke(
    db: &rusqlite::Connection,
    id: u64,
    reason: &str,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let Some(e) = table::entrustment(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!("no entrustment {id}"))));
    };
    let staff = matches!(actor.role, Role::Operator | Role::Admin);
    if !staff && actor.id != e.party.as_str() {
        return Ok(Err(Refusal::Forbidden(format!(
            "entrustment {id} is {}'s; only it or an operator may revoke it",
            e.party
        ))));
    }
    if let Some(revoked) = e.revoked_at {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "entrustment {id} was already revoked at {revoked}"
        ))));
    }
    table::revoke_entrustment(db, id, at, &actor.id, reason)?;
    Ok(ok(id.to_string()))
}

/// One change of a party's state.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PartyHistoryEntry {
    /// Position in the party's history, from 1.
    pub seq: i64,
    /// When.
    pub at: Timestamp,
    /// Who (`anonymous via <node>` for an application without a token).
    pub actor: String,
    /// In which role (`anonymous` without a token).
    pub role: String,
    /// What: apply, admit, refuse, suspend, reinstate.
    pub action: String,
    /// State before (absent for a first application).
    pub from_state: Option<PartyState>,
    /// State after.
    pub to_state: PartyState,
    /// The decision's reason or notes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The Raft log index of the command.
    pub raft_index: i64,
}

/// Where a party's record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartyOrigin {
    /// It applied through the API.
    Application,
    /// A founding party of the zone's configuration.
    Config,
}

/// A party as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PartyView {
    /// Party id.
    #[schema(value_type = String)]
    pub id: PartyId,
    /// Legal name.
    pub name: String,
    /// Unified social credit code.
    #[schema(value_type = String)]
    pub credit_code: CreditCode,
    /// Kinds of participant.
    pub kinds: Vec<PartyKind>,
    /// Whom to reach: shown to the zone's staff (operator, regulator, admin) and to the party
    /// itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
    /// Its standing.
    pub state: PartyState,
    /// An application or the zone's configuration.
    pub origin: PartyOrigin,
    /// When it applied (absent for a founding party whose state never changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<Timestamp>,
    /// When its state last changed (absent likewise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    /// Its changes of state, oldest first (single-party reads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<PartyHistoryEntry>>,
}

impl PartyView {
    fn founding(p: &PartyProfile) -> PartyView {
        PartyView {
            id: p.id.clone(),
            name: p.name.clone(),
            credit_code: p.credit_code.clone(),
            kinds: p.kinds.clone(),
            contact: Some(p.contact.clone()),
            state: PartyState::Admitted,
            origin: PartyOrigin::Config,
            applied_at: None,
            updated_at: None,
            history: None,
        }
    }
}

/// Party `id` with its history.
///
/// # Errors
/// Only storage errors.
pub async fn party(
    conn: &mut SqliteConnection,
    founding: &Founding,
    id: &PartyId,
) -> Result<Option<PartyView>, sqlx::Error> {
    match table::party(conn, id).await? {
        Some(view) => Ok(Some(view)),
        None => Ok(founding.get(id).map(|p| PartyView {
            history: Some(Vec::new()),
            ..PartyView::founding(p)
        })),
    }
}

/// What a list of parties asks for.
#[derive(Debug, Clone, Default)]
pub struct PartyFilter {
    /// Only parties of this kind.
    pub kind: Option<PartyKind>,
    /// Only parties in this state.
    pub state: Option<PartyState>,
    /// Only parties whose id sorts after this one (the previous page's `next_after`).
    pub after: Option<String>,
    /// Page size.
    pub limit: u32,
}

/// A page of parties, by id.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PartyPage {
    /// The parties, ordered by id.
    pub items: Vec<PartyView>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// The registry's parties that `filter` selects, founding parties included, ordered by id.
///
/// # Errors
/// Only storage errors.
pub async fn list(
    conn: &mut SqliteConnection,
    founding: &Founding,
    filter: &PartyFilter,
) -> Result<PartyPage, sqlx::Error> {
    let limit = usize::try_from(filter.limit.max(1)).unwrap_or(1);
    let rows = i64::try_from(limit + 1).unwrap_or(i64::MAX);
    let mut items = table::list(conn, filter, rows).await?;
    for p in founding.values() {
        let after = filter.after.as_deref().is_none_or(|a| p.id.as_str() > a);
        let selected = filter.kind.is_none_or(|k| p.kinds.contains(&k))
            && filter.state.is_none_or(|s| s == PartyState::Admitted);
        if after && selected && !table::recorded(conn, &p.id).await? {
            items.push(PartyView::founding(p));
        }
    }
    items.sort_by(|a, b| a.id.cmp(&b.id));
    let more = items.len() > limit;
    items.truncate(limit);
    let next_after = more
        .then(|| items.last().map(|p| p.id.to_string()))
        .flatten();
    Ok(PartyPage { items, next_after })
}

/// The entrustments `party` granted or `broker` holds (each filter optional), newest first.
///
/// # Errors
/// Only storage errors.
pub async fn entrustments(
    conn: &mut SqliteConnection,
    party: Option<&str>,
    broker: Option<&str>,
    limit: u32,
) -> Result<Vec<Entrustment>, sqlx::Error> {
    table::entrustments(conn, party, broker, limit).await
}

#[cfg(test)]
mod tests {
    use xchg_protocol::{Listing, PartyKind};

    use super::*;
    use crate::audit;
    use crate::catalog::apply::apply;
    use crate::catalog::query::MAX_PAGE;
    use crate::catalog::tables::listings;
    use crate::catalog::{CatalogCommand, test_zone};
    use crate::sqlite::in_transaction;

    const T0: Timestamp = Timestamp(1_800_000_000_000);
    const DAY: u64 = 24 * 60 * 60 * 1000;

    fn id(s: &str) -> PartyId {
        s.parse().expect("a party id")
    }

    fn profile(party: &str, code: &str, kinds: &[PartyKind]) -> PartyProfile {
        PartyProfile {
            id: id(party),
            name: format!("{party} 有限公司"),
            credit_code: code.parse().expect("a credit code"),
            kinds: kinds.to_vec(),
            contact: Contact {
                name: "数据专员".into(),
                phone: None,
                email: Some(format!("data@{party}.example")),
            },
        }
    }

    /// The founding provider of the test zone, as the generated layouts found one.
    fn founder() -> PartyProfile {
        profile(
            "yuzhou-credit-center",
            "12411081T81DJ7JM9K",
            &[PartyKind::ResourceHolder],
        )
    }

    fn broker() -> PartyProfile {
        profile(
            "henan-data-broker",
            "91411000MA44XD2K1M",
            &[PartyKind::DataBroker],
        )
    }

    fn plain() -> PartyProfile {
        profile(
            "yuzhou-ceramics",
            "91411081751284935Y",
            &[PartyKind::ResourceHolder, PartyKind::MerchantResource],
        )
    }

    fn actor(party: &str, role: Role) -> Actor {
        Actor {
            id: party.into(),
            role,
        }
    }

    fn operator() -> Actor {
        actor("token:0perator", Role::Operator)
    }

    fn apply_party(p: &PartyProfile) -> CatalogCommand {
        CatalogCommand::ApplyParty {
            profile: Box::new(p.clone()),
            at: T0,
            actor: None,
            received_by: "yuzhou-1".into(),
        }
    }

    fn admit(p: &PartyProfile) -> CatalogCommand {
        CatalogCommand::AdmitParty {
            party_id: p.id.clone(),
            notes: None,
            at: T0,
            actor: operator(),
        }
    }

    fn refuse(p: &PartyProfile) -> CatalogCommand {
        CatalogCommand::RefuseParty {
            party_id: p.id.clone(),
            reason: "materials incomplete".into(),
            at: T0,
            actor: operator(),
        }
    }

    fn suspend(p: &PartyProfile) -> CatalogCommand {
        CatalogCommand::SuspendParty {
            party_id: p.id.clone(),
            reason: "under investigation".into(),
            at: T0,
            actor: operator(),
        }
    }

    fn reinstate(p: &PartyProfile) -> CatalogCommand {
        CatalogCommand::ReinstateParty {
            party_id: p.id.clone(),
            reason: "investigation closed".into(),
            at: T0,
            actor: operator(),
        }
    }

    fn entrust(party: &PartyProfile, to: &PartyProfile, scope: &[Act]) -> CatalogCommand {
        CatalogCommand::GrantEntrustment {
            grant: Box::new(EntrustmentGrant {
                party: party.id.clone(),
                broker: to.id.clone(),
                scope: scope.to_vec(),
                expires_at: Timestamp(T0.0 + 30 * DAY),
            }),
            at: T0,
            actor: actor(party.id.as_str(), Role::Provider),
        }
    }

    fn listing_of(party: &str, title: &str, at: Timestamp) -> Listing {
        let mut draft = xchg_protocol::vectors::credit_draft();
        draft.title = title.into();
        draft.provider.id = id(party);
        Listing::first_version(draft, "xuchang/yuzhou".parse().expect("zone"), at)
    }

    fn submit(party: &str, title: &str) -> CatalogCommand {
        CatalogCommand::SubmitListing {
            listing: Box::new(listing_of(party, title, T0)),
            actor: actor(party, Role::Provider),
        }
    }

    /// `broker` submits a listing in `party`'s name under entrustment `n`, at `at`.
    fn brokered(party: &str, broker: &str, n: u64, at: Timestamp) -> CatalogCommand {
        CatalogCommand::Entrusted(Box::new(BrokerAct {
            broker: id(broker),
            entrustment: n,
            command: CatalogCommand::SubmitListing {
                listing: Box::new(listing_of(party, &format!("经纪 {n} {at}"), at)),
                actor: actor(party, Role::Provider),
            },
        }))
    }

    /// What a zone applying `commands` in order answered, its audit records, and the history
    /// details of its listings.
    struct Run {
        codes: Vec<Option<&'static str>>,
        responses: Vec<CommandResponse>,
        audit: Vec<audit::AuditRecord>,
        details: Vec<String>,
        submitted_by: Vec<String>,
    }

    /// Applies `commands` in order, from index `first`, to the catalog `db` of `zone`.
    fn apply_all(
        db: &rusqlite::Connection,
        zone: &ZoneFacts,
        first: u64,
        commands: &[CatalogCommand],
    ) -> Vec<CommandResponse> {
        in_transaction(db, || {
            let mut chain = audit::Chain::load(db)?;
            let responses = (first..)
                .zip(commands)
                .map(|(index, c)| apply(db, &mut chain, zone, index, c))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            chain.flush(db)?;
            Ok(responses)
        })
        .expect("apply")
    }

    async fn run(commands: &[CatalogCommand]) -> Run {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let zone = test_zone().with_founding(&[founder()]);
        let responses = apply_all(&db, &zone, 10, commands);
        drop(db);
        let mut reader = crate::catalog::test_reader(dir.path()).await;
        let audit = audit::range(&mut reader, 1, 100).await.expect("audit");
        let mut held = listings::newest(&mut reader, MAX_PAGE)
            .await
            .expect("listings");
        held.reverse();
        let (mut details, mut submitted_by) = (Vec::new(), Vec::new());
        for l in held {
            let whole = listings::with_history(&mut reader, &l.id)
                .await
                .expect("listing")
                .expect("held");
            details.extend(
                whole
                    .history
                    .into_iter()
                    .flatten()
                    .filter_map(|h| h.detail.map(|d| d.to_string())),
            );
            submitted_by.push(l.submitted_by);
        }
        Run {
            codes: responses
                .iter()
                .map(|r| r.as_ref().err().map(Refusal::code))
                .collect(),
            responses,
            audit,
            details,
            submitted_by,
        }
    }

    fn message(r: &CommandResponse) -> String {
        r.as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    #[test]
    fn decisions_follow_the_state_diagram_and_nothing_else() {
        use Decision::*;
        use PartyState::*;
        let party = id("p");
        for (decision, from, to) in [
            (Admit, Applied, Some(Admitted)),
            (Refuse, Applied, Some(Refused)),
            (Suspend, Admitted, Some(Suspended)),
            (Reinstate, Suspended, Some(Admitted)),
            (Admit, Admitted, None),
            (Admit, Refused, None),
            (Admit, Suspended, None),
            (Refuse, Admitted, None),
            (Suspend, Applied, None),
            (Suspend, Suspended, None),
            (Reinstate, Admitted, None),
            (Reinstate, Refused, None),
        ] {
            let got = decision.transition(&party, from);
            assert_eq!(got.as_ref().ok().copied(), to, "{decision:?} from {from:?}");
            if to.is_none() {
                assert_eq!(got.map_err(|r| r.code()), Err("illegal_transition"));
            }
        }
    }

    #[tokio::test]
    async fn an_applicant_is_admitted_or_refused_and_a_refused_one_may_apply_again() {
        let mut other_code = plain();
        other_code.credit_code = "11411081005012345B".parse().expect("code");
        let r = run(&[
            apply_party(&plain()),
            apply_party(&plain()),
            refuse(&plain()),
            apply_party(&other_code),
            apply_party(&plain()),
            admit(&plain()),
            admit(&plain()),
        ])
        .await;
        assert_eq!(
            r.codes,
            [
                None,
                Some("conflict"),
                None,
                Some("conflict"),
                None,
                None,
                Some("illegal_transition")
            ]
        );
        assert!(message(&r.responses[3]).contains("its own credit code"));
        assert_eq!(r.audit.len(), 7, "refusals are audited too");
        assert_eq!(r.audit[0].content.actor, "anonymous via yuzhou-1");
        assert_eq!(r.audit[0].content.role, "anonymous");
    }

    #[tokio::test]
    async fn one_credit_code_is_one_party_founding_parties_included() {
        let mut same_code = plain();
        same_code.id = id("yuzhou-ceramics-2");
        let mut founders_code = plain();
        founders_code.id = id("yuzhou-ceramics-3");
        founders_code.credit_code = founder().credit_code;
        let mut founders_id = plain();
        founders_id.id = founder().id;
        founders_id.credit_code = "11411081005012345B".parse().expect("code");
        let r = run(&[
            apply_party(&plain()),
            apply_party(&same_code),
            apply_party(&founders_code),
            apply_party(&founders_id),
        ])
        .await;
        assert_eq!(
            r.codes,
            [None, Some("conflict"), Some("conflict"), Some("conflict")]
        );
        // Anyone may apply, so the refusal does not tell who holds the code.
        for refused in &r.responses[1..3] {
            let m = message(refused);
            assert!(m.contains("already registered in this zone"), "{m}");
            assert!(
                !m.contains("yuzhou-ceramics") && !m.contains("yuzhou-credit-center"),
                "{m}"
            );
        }
    }

    /// A founding party is admitted without a row; suspending it writes its row, and from then
    /// on the state machine refuses its listings and tokens until it is reinstated.
    #[tokio::test]
    async fn a_suspended_party_can_do_nothing_new_until_reinstated() {
        let f = founder();
        let token = |hash: &str| CatalogCommand::CreateToken {
            token_hash: hash.into(),
            role: Role::Provider,
            party: Some(f.id.to_string()),
            label: "t".into(),
            at: T0,
            actor: actor("token:admin", Role::Admin),
        };
        let r = run(&[
            submit(f.id.as_str(), "before"),
            suspend(&f),
            submit(f.id.as_str(), "while suspended"),
            token("aa"),
            suspend(&f),
            reinstate(&f),
            submit(f.id.as_str(), "after"),
            token("bb"),
        ])
        .await;
        assert_eq!(
            r.codes,
            [
                None,
                None,
                Some("party_not_admitted"),
                Some("party_not_admitted"),
                Some("illegal_transition"),
                None,
                None,
                None
            ]
        );
        assert!(message(&r.responses[2]).contains("suspended"));
    }

    /// Entries from before the registry name parties it has never heard of: they apply as they
    /// did, so a replica replaying an old log ends where the others are.
    #[tokio::test]
    async fn listings_and_tokens_of_parties_the_registry_never_held_apply_as_before() {
        let r = run(&[
            submit("henan-credit", "old entry"),
            CatalogCommand::CreateToken {
                token_hash: "cc".into(),
                role: Role::Buyer,
                party: None,
                label: "old buyer".into(),
                at: T0,
                actor: actor("token:admin", Role::Admin),
            },
        ])
        .await;
        assert_eq!(r.codes, [None, None]);
    }

    #[tokio::test]
    async fn a_token_for_an_applicant_or_a_refused_party_is_refused() {
        let token = |party: &PartyProfile, hash: &str| CatalogCommand::CreateToken {
            token_hash: hash.into(),
            role: Role::Buyer,
            party: Some(party.id.to_string()),
            label: "t".into(),
            at: T0,
            actor: actor("token:admin", Role::Admin),
        };
        let r = run(&[
            apply_party(&plain()),
            token(&plain(), "aa"),
            refuse(&plain()),
            token(&plain(), "bb"),
        ])
        .await;
        assert_eq!(
            r.codes,
            [
                None,
                Some("party_not_admitted"),
                None,
                Some("party_not_admitted")
            ]
        );
        assert!(message(&r.responses[1]).contains("not admitted yet"));
        assert!(message(&r.responses[3]).contains("refused"));
    }

    #[tokio::test]
    async fn only_an_admitted_broker_of_a_brokers_kind_is_entrusted() {
        let f = founder();
        let r = run(&[
            entrust(&f, &broker(), &[Act::SubmitListing]),
            apply_party(&broker()),
            entrust(&f, &broker(), &[Act::SubmitListing]),
            admit(&broker()),
            entrust(&f, &broker(), &[Act::SubmitListing]),
            apply_party(&plain()),
            admit(&plain()),
            entrust(&f, &plain(), &[Act::SubmitListing]),
            suspend(&f),
            entrust(&f, &broker(), &[Act::SubmitListing]),
        ])
        .await;
        assert_eq!(
            r.codes,
            [
                Some("party_not_admitted"),
                None,
                Some("party_not_admitted"),
                None,
                None,
                None,
                None,
                Some("invalid"),
                None,
                Some("party_not_admitted")
            ]
        );
        assert_eq!(
            r.responses[4].as_ref().map(|a| a.object_id.as_str()),
            Ok("1")
        );
        assert!(message(&r.responses[7]).contains("is not a broker"));
    }

    #[test]
    fn a_grant_names_distinct_acts_another_party_and_a_near_future_expiry() {
        let grant = |scope: &[Act], broker: &str, days: i64| EntrustmentGrant {
            party: id("a"),
            broker: id(broker),
            scope: scope.to_vec(),
            expires_at: Timestamp(T0.0.saturating_add_signed(days * DAY as i64)),
        };
        let s = [Act::SubmitListing];
        assert!(grant_shape(&grant(&s, "b", 30), T0).is_ok());
        let field = |g: EntrustmentGrant| grant_shape(&g, T0).err().map(|(f, _)| f);
        assert_eq!(field(grant(&s, "a", 30)), Some("broker"));
        assert_eq!(field(grant(&s, "b", 1097)), Some("expires_at"));
        assert!(grant_shape(&grant(&s, "b", 1096), T0).is_ok());
        for bad in [
            grant(&[], "b", 30),
            grant(&[Act::SubmitListing, Act::SubmitListing], "b", 30),
            grant(&s, "a", 30),
            grant(&s, "b", 0),
            grant(&s, "b", -1),
            grant(&s, "b", 1097),
        ] {
            assert!(grant_shape(&bad, T0).is_err(), "{bad:?}");
        }
    }

    fn entrustment(scope: &[Act], expires_in_days: u64) -> Entrustment {
        Entrustment {
            id: 7,
            party: id("yuzhou-credit-center"),
            broker: id("henan-data-broker"),
            scope: scope.to_vec(),
            expires_at: Timestamp(T0.0 + expires_in_days * DAY),
            granted_at: T0,
            granted_by: "yuzhou-credit-center".into(),
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
        }
    }

    #[test]
    fn an_entrustment_allows_only_its_party_its_broker_its_acts_until_it_ends() {
        let (p, b) = ("yuzhou-credit-center", "henan-data-broker");
        let e = entrustment(&[Act::SubmitListing], 30);
        assert_eq!(judge(&e, p, b, Act::SubmitListing, T0), Ok(()));
        let refused =
            |e: &Entrustment, party: &str, broker: &str, act: Act, at: Timestamp| match judge(
                e, party, broker, act, at,
            ) {
                Err(Refusal::NotEntrusted(why)) => why,
                other => panic!("expected not_entrusted, got {other:?}"),
            };
        let wrong_scope = refused(&e, p, b, Act::UpdateListing, T0);
        assert!(wrong_scope.contains("covers submit_listing, not update_listing"));
        let expired = refused(&e, p, b, Act::SubmitListing, Timestamp(T0.0 + 30 * DAY));
        assert!(expired.contains("expired at"), "{expired}");
        let other_party = refused(&e, "yuzhou-ceramics", b, Act::SubmitListing, T0);
        assert!(other_party.contains("granted by yuzhou-credit-center, not by yuzhou-ceramics"));
        let other_broker = refused(&e, p, "zhengzhou-broker", Act::SubmitListing, T0);
        assert!(other_broker.contains("entrusts henan-data-broker, not zhengzhou-broker"));
        let mut revoked = e.clone();
        revoked.revoked_at = Some(T0);
        assert!(refused(&revoked, p, b, Act::SubmitListing, T0).contains("revoked"));
    }

    /// Through the state machine: a broker's listing is the party's (its submitter, so the
    /// party may update it), and both names are recorded; outside the entrustment (another
    /// act, after expiry, another party's entrustment, after revocation) it is refused.
    #[tokio::test]
    async fn a_broker_acts_for_a_party_only_under_its_entrustment_and_both_are_recorded() {
        let (f, b) = (founder(), broker());
        let (p, bk) = (f.id.as_str(), b.id.as_str());
        let update_only = [Act::UpdateListing];
        let after_expiry = Timestamp(T0.0 + 30 * DAY);
        let r = run(&[
            apply_party(&b),
            admit(&b),
            apply_party(&plain()),
            admit(&plain()),
            entrust(&f, &b, &[Act::SubmitListing]),
            entrust(&f, &b, &update_only),
            entrust(&plain(), &b, &[Act::SubmitListing]),
            brokered(p, bk, 1, T0),
            brokered(p, bk, 2, T0),
            brokered(p, bk, 1, after_expiry),
            brokered(p, bk, 3, T0),
            brokered(p, bk, 99, T0),
            CatalogCommand::RevokeEntrustment {
                entrustment_id: 1,
                reason: "contract ended".into(),
                at: T0,
                actor: actor(p, Role::Provider),
            },
            brokered(p, bk, 1, Timestamp(T0.0 + 1)),
        ])
        .await;
        assert_eq!(
            r.codes[7..],
            [
                None,
                Some("not_entrusted"),
                Some("not_entrusted"),
                Some("not_entrusted"),
                Some("not_entrusted"),
                None,
                Some("not_entrusted")
            ]
        );
        assert!(message(&r.responses[8]).contains("not submit_listing"));
        assert!(message(&r.responses[9]).contains("expired"));
        assert!(message(&r.responses[10]).contains("granted by yuzhou-ceramics"));
        assert!(message(&r.responses[11]).contains("no entrustment 99"));
        assert!(message(&r.responses[13]).contains("revoked"));
        assert_eq!(r.submitted_by, [p], "the party owns what its broker listed");
        assert_eq!(
            r.details,
            [r#"{"broker":"henan-data-broker","entrustment":1}"#]
        );
        assert_eq!(
            r.audit[7].content.actor,
            "henan-data-broker for yuzhou-credit-center"
        );
        assert_eq!(r.audit[7].content.action, "submit_listing");
        assert_eq!(r.audit[7].content.result, "ok");
    }

    #[tokio::test]
    async fn only_its_party_or_an_operator_revokes_an_entrustment_and_only_once() {
        let (f, b) = (founder(), broker());
        let revoke = |by: Actor| CatalogCommand::RevokeEntrustment {
            entrustment_id: 1,
            reason: "ended".into(),
            at: T0,
            actor: by,
        };
        let r = run(&[
            apply_party(&b),
            admit(&b),
            entrust(&f, &b, &[Act::SubmitListing]),
            revoke(actor(b.id.as_str(), Role::Provider)),
            revoke(operator()),
            revoke(actor(f.id.as_str(), Role::Provider)),
        ])
        .await;
        assert_eq!(
            r.codes[3..],
            [Some("forbidden"), None, Some("illegal_transition")]
        );
    }

    /// Anyone may apply, so what waits for a decision is bounded: beyond
    /// [`MAX_PENDING_APPLICATIONS`] an application is refused until operators decide.
    #[tokio::test]
    async fn applications_beyond_the_pending_bound_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        // Rows written straight into the table: that many applications through the rules
        // would each need a valid credit code of their own.
        db.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
             INSERT INTO parties (id, name, credit_code, kinds, contact, state, origin,
                applied_at, updated_at)
             SELECT 'p' || i, 'p', 'c' || i, ',processor,', '{}', 'applied', 'application', 0, 0
             FROM n",
            [MAX_PENDING_APPLICATIONS],
        )
        .expect("pending applications");
        let full = apply_all(&db, &test_zone(), 1, &[apply_party(&plain())]);
        assert_eq!(
            full[0].as_ref().map_err(|r| r.code()),
            Err("applications_full")
        );
    }

    /// The registry lists founding parties with the recorded ones, by id, a page at a time,
    /// filtered by kind (exactly: `data_broker` is not a pattern) and by state.
    #[tokio::test]
    async fn the_list_merges_founding_parties_filters_and_pages_by_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let zone = test_zone().with_founding(&[founder()]);
        let commands = [
            apply_party(&broker()),
            apply_party(&plain()),
            admit(&plain()),
        ];
        for r in apply_all(&db, &zone, 1, &commands) {
            assert!(r.is_ok(), "{r:?}");
        }
        drop(db);
        let mut reader = crate::catalog::test_reader(dir.path()).await;
        let conn = &mut reader;
        let ids =
            |p: &PartyPage| -> Vec<String> { p.items.iter().map(|v| v.id.to_string()).collect() };
        let all = list(
            conn,
            &zone.founding,
            &PartyFilter {
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .expect("list");
        assert_eq!(ids(&all), ["henan-data-broker", "yuzhou-ceramics"]);
        assert_eq!(all.next_after.as_deref(), Some("yuzhou-ceramics"));
        let rest = list(
            conn,
            &zone.founding,
            &PartyFilter {
                after: all.next_after.clone(),
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .expect("list");
        assert_eq!(ids(&rest), ["yuzhou-credit-center"]);
        assert_eq!(rest.next_after, None);
        let admitted = list(
            conn,
            &zone.founding,
            &PartyFilter {
                state: Some(PartyState::Admitted),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("list");
        assert_eq!(ids(&admitted), ["yuzhou-ceramics", "yuzhou-credit-center"]);
        let brokers = list(
            conn,
            &zone.founding,
            &PartyFilter {
                kind: Some(PartyKind::DataBroker),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("list");
        assert_eq!(ids(&brokers), ["henan-data-broker"]);
    }
}
