//! Scenario applications and authorisations (一场景一申请、一场景一授权): a buyer applies to use
//! one listing for one of its scenarios; an operator approves (the terms as asked, or narrowed)
//! or rejects; an approval is an authorisation bound to the buyer, the listing, the scenario,
//! a delivery mode, an expiry and a usage limit, against which usage is counted.
//!
//! Every judgement is made here when a command is applied, by the command's own time (stamped
//! by the receiving node), never by a clock: expiry, the limit, the listing's state, the
//! buyer's standing. The check and the count of a usage are made in the state machine's one
//! transaction, on its one writer, so concurrent usage never passes the limit. A refused usage
//! changes nothing but its refusal count and the audit record.
//!
//! The SQL of `applications` and `authorizations` (schema v8) is in
//! [`super::tables::applications`] and [`super::tables::authorizations`]; the rules run on the
//! catalog's writer, the reads for the API on a reader.

use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;
use xchg_federation_config::Role;
use xchg_protocol::{ContentId, DeliveryMode, Listing, Timestamp, ZoneId};

use super::tables::applications as table;
use super::tables::enum_name;
use super::tables::{authorizations, listings};
use super::{
    Actor, Applied, CommandResponse, ListingState, Refusal, ZoneFacts, across, parties, policy,
};

/// The longest an authorisation may run: 1096 days (three years).
pub const MAX_DURATION_DAYS: u32 = 1096;
/// The most calls one authorisation may allow.
pub const MAX_USAGE_LIMIT: u64 = 1_000_000_000;
/// The most calls one usage report may count.
pub const MAX_CALLS: u64 = 1_000_000;
/// Longest purpose of an application, in characters.
pub const MAX_PURPOSE_CHARS: usize = 2000;
/// Longest reason of a rejection, suspension or revocation, in characters.
pub const MAX_REASON_CHARS: usize = 2000;
/// Most applications one buyer may have awaiting a decision; more are refused
/// ([`Refusal::ApplicationsFull`]) until operators decide.
pub const MAX_PENDING_PER_BUYER: i64 = 1000;
/// Most earlier decisions an application shows for its listing and scenario.
pub const MAX_PRECEDENTS: u32 = 20;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// What a buyer asks for: one listing, one scenario, one delivery mode, for a time and a
/// number of calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationRequest {
    /// The listing.
    pub listing_id: ContentId,
    /// One of the listing's scenarios.
    pub scenario: String,
    /// What the buyer will use it for.
    pub purpose: String,
    /// How it asks the product to be delivered.
    pub delivery_mode: DeliveryMode,
    /// For how many days from approval.
    pub duration_days: u32,
    /// How many calls in all.
    pub usage_limit: u64,
}

/// The terms an operator narrows at approval; absent ones are granted as asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Terms {
    /// Another delivery mode the listing offers that keeps the data in its domain (`sandbox`,
    /// `privacy_computing`, `model_output`, `verification`); the in-domain rule applies to it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_mode: Option<DeliveryMode>,
    /// Fewer days than asked (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_days: Option<u32>,
    /// Fewer calls than asked (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_limit: Option<u64>,
}

/// An application's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationState {
    /// For a listing of another exchange: not yet acknowledged by its origin zone, which is
    /// unreachable or not yet asked; the leader sends it again with backoff.
    Forwarding,
    /// Awaiting the operator's decision (for a listing of another exchange: its origin's).
    Submitted,
    /// Approved: an authorisation was created.
    Approved,
    /// Rejected with a reason.
    Rejected,
}

/// An authorisation's state (expiry is judged by time, not stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthorizationState {
    /// Usable until it expires or its limit is reached.
    Active,
    /// Suspended by an operator: every use is refused.
    Suspended,
    /// Revoked by an operator, for good.
    Revoked,
}

macro_rules! names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// The stored and JSON name.
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
            /// Parses a stored or query name.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(<$t>::$v),)* _ => None }
            }
        }
    };
}
names!(ApplicationState { Forwarding => "forwarding", Submitted => "submitted", Approved => "approved", Rejected => "rejected" });
names!(AuthorizationState { Active => "active", Suspended => "suspended", Revoked => "revoked" });

/// What an operator does to an authorisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `active → suspended`.
    Suspend,
    /// `active | suspended → revoked`.
    Revoke,
    /// `suspended → active`: an operator lifts a suspension.
    Reinstate,
}

impl Change {
    /// The states it leaves from, and the state it leads to.
    pub fn rule(self) -> (&'static [AuthorizationState], AuthorizationState) {
        use AuthorizationState::*;
        match self {
            Change::Suspend => (&[Active], Suspended),
            Change::Revoke => (&[Active, Suspended], Revoked),
            Change::Reinstate => (&[Suspended], Active),
        }
    }
}

/// What may stand between two scenarios joined in one text, besides white space.
pub const SCENARIO_SEPARATORS: [char; 6] = [',', ';', '、', '，', '；', '/'];

/// The one scenario named by `named` (what the application's `scenario` held), if it is one
/// the listing offers (一场景一申请).
///
/// # Errors
/// [`Refusal::OneScenario`] for none or several scenarios: a list, or one text that is not an
/// offered scenario but joins two or more ([`joined_scenarios`]);
/// [`Refusal::ScenarioNotOffered`] for one the listing does not offer.
pub fn one_scenario(named: &[String], offered: &[String]) -> Result<String, Refusal> {
    let rule = "one application names one scenario (一场景一申请)";
    let [scenario] = named else {
        return Err(Refusal::OneScenario(format!(
            "{rule}; this one names {}: apply once per scenario",
            named.len()
        )));
    };
    if offered.iter().any(|o| o == scenario) {
        return Ok(scenario.clone());
    }
    let parts = joined_scenarios(scenario, offered);
    if parts.len() > 1 {
        return Err(Refusal::OneScenario(format!(
            "{rule}; {scenario:?} names {}: apply once per scenario",
            parts.join(" and ")
        )));
    }
    Err(Refusal::ScenarioNotOffered(format!(
        "the listing does not offer the scenario {scenario:?}; it offers: {}",
        offered.join(", ")
    )))
}

/// The offered scenarios `text` joins, in order: each as the listing writes it (a scenario
/// may hold spaces and separators itself), bounded on each side by the start or end of the
/// text, white space or one of [`SCENARIO_SEPARATORS`], none overlapping another: the most
/// such parts there are, and of those the ones covering the most text. `"credit risk"` joins
/// `credit` and `risk`; `"credit risk, fraud"` joins `credit risk` and `fraud` when the listing
/// offers those; `"creditrisk"` joins nothing.
pub fn joined_scenarios<'a>(text: &str, offered: &'a [String]) -> Vec<&'a str> {
    let separates = |c: char| c.is_whitespace() || SCENARIO_SEPARATORS.contains(&c);
    // For each byte where a part may start, where each offered scenario found there ends.
    let mut found: Vec<Vec<(usize, &'a str)>> = vec![Vec::new(); text.len()];
    for (start, _) in text.char_indices() {
        if !text[..start].chars().next_back().is_none_or(separates) {
            continue;
        }
        for o in offered.iter().filter(|o| !o.is_empty()) {
            let end = start + o.len();
            if text[start..].starts_with(o.as_str())
                && text[end..].chars().next().is_none_or(separates)
            {
                found[start].push((end, o));
            }
        }
    }
    // best[i]: (parts, bytes covered) of the best choice in text[i..], and its first part.
    let mut best = vec![((0usize, 0usize), None::<(usize, &'a str)>); text.len() + 1];
    for i in (0..text.len()).rev() {
        best[i] = (best[i + 1].0, None);
        for &(end, o) in &found[i] {
            let ((parts, covered), _) = best[end];
            let taken = (parts + 1, covered + o.len());
            if taken > best[i].0 {
                best[i] = (taken, Some((end, o)));
            }
        }
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < text.len() {
        match best[i].1 {
            Some((end, o)) => {
                parts.push(o);
                i = end;
            }
            None => i += 1,
        }
    }
    parts
}

/// Whether `listing` may be authorised for delivery by `mode`: the in-domain rule first (the
/// export firewall's neighbour, [`policy::in_domain`]), then the modes the listing offers.
///
/// # Errors
/// [`Refusal::InDomainOnly`] naming the rule, or [`Refusal::Invalid`] for a mode the listing
/// does not offer.
pub fn deliverable(listing: &Listing, mode: DeliveryMode) -> Result<(), Refusal> {
    policy::in_domain(listing, mode).map_err(Refusal::InDomainOnly)?;
    if !listing.delivery_modes.contains(&mode) {
        let offered: Vec<String> = listing.delivery_modes.iter().map(enum_name).collect();
        return Err(Refusal::Invalid(format!(
            "the listing is not delivered by {}; it offers: {}",
            enum_name(&mode),
            offered.join(", ")
        )));
    }
    Ok(())
}

/// The range rules of an application's numbers.
///
/// # Errors
/// The field and what is wrong with it.
pub fn request_shape(duration_days: u32, usage_limit: u64) -> Result<(), (&'static str, String)> {
    if !(1..=MAX_DURATION_DAYS).contains(&duration_days) {
        return Err((
            "duration_days",
            format!("{duration_days} is not 1 to {MAX_DURATION_DAYS} days"),
        ));
    }
    if !(1..=MAX_USAGE_LIMIT).contains(&usage_limit) {
        return Err((
            "usage_limit",
            format!("{usage_limit} is not 1 to {MAX_USAGE_LIMIT} calls"),
        ));
    }
    Ok(())
}

/// The terms granted: the asked ones, narrowed by `terms`, which may only lower the numbers.
///
/// # Errors
/// [`Refusal::Invalid`] for a narrowing that widens or is out of range.
pub fn narrow(asked: &ApplicationRequest, terms: &Terms) -> Result<Granted, Refusal> {
    let (days, limit) = narrowed_numbers(asked.duration_days, asked.usage_limit, terms)
        .map_err(|(_, refusal)| refusal)?;
    Ok(Granted {
        delivery_mode: terms.delivery_mode.unwrap_or(asked.delivery_mode),
        duration_days: days,
        usage_limit: limit,
    })
}

/// The days and calls granted when `terms` narrow the `days` and `limit` asked.
///
/// # Errors
/// The term that widens or is out of range, and the refusal naming it.
fn narrowed_numbers(
    days: u32,
    limit: u64,
    terms: &Terms,
) -> Result<(u32, u64), (&'static str, Refusal)> {
    let granted_days = terms.duration_days.unwrap_or(days);
    let granted_limit = terms.usage_limit.unwrap_or(limit);
    if granted_days == 0 || granted_days > days {
        return Err((
            "duration_days",
            Refusal::Invalid(format!(
                "duration_days {granted_days}: an approval narrows the {days} days asked to 1 to \
                 {days}"
            )),
        ));
    }
    if granted_limit == 0 || granted_limit > limit {
        return Err((
            "usage_limit",
            Refusal::Invalid(format!(
                "usage_limit {granted_limit}: an approval narrows the {limit} calls asked to 1 \
                 to {limit}"
            )),
        ));
    }
    Ok((granted_days, granted_limit))
}

/// The term of an approval that `refusal` (the state machine's answer to approving, with
/// `terms`, an application that asked for `days` and `limit`) blames, for the API's `field`:
/// the number [`narrow`] refused, else the delivery mode granted ([`deliverable`] and
/// [`keeps_in_domain`] judge nothing else, and run after it); none for a refusal of the
/// application's or the listing's state. The terms asked never change, so this names the
/// term the state machine judged.
pub fn approval_field(
    days: u32,
    limit: u64,
    terms: &Terms,
    refusal: &Refusal,
) -> Option<&'static str> {
    match refusal {
        Refusal::InDomainOnly(_) => Some("delivery_mode"),
        Refusal::Invalid(_) => Some(match narrowed_numbers(days, limit, terms) {
            Err((field, _)) => field,
            Ok(_) => "delivery_mode",
        }),
        _ => None,
    }
}

/// Whether `granted` changes the mode `asked` only to one that keeps the data in its domain:
/// an approval narrows, and a mode that lets the data out is never narrower than another
/// (PROTOCOL.md 11.4 holds a decision across exchanges to the same rule). Judged after
/// [`deliverable`], whose refusal names the product's own rule.
///
/// # Errors
/// [`Refusal::Invalid`] naming the modes.
pub fn keeps_in_domain(asked: &ApplicationRequest, granted: &Granted) -> Result<(), Refusal> {
    let mode = granted.delivery_mode;
    if mode == asked.delivery_mode || mode.is_in_domain() {
        return Ok(());
    }
    Err(Refusal::Invalid(format!(
        "delivery_mode {}: an approval may change the {} mode asked only to one that keeps the \
         data in its domain (sandbox, privacy_computing, model_output, verification)",
        enum_name(&mode),
        enum_name(&asked.delivery_mode)
    )))
}

/// The terms of an authorisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// The delivery mode.
    pub delivery_mode: DeliveryMode,
    /// Days from approval.
    pub duration_days: u32,
    /// Calls in all.
    pub usage_limit: u64,
}

/// An authorisation as a usage is judged against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Its id.
    pub id: u64,
    /// Its state.
    pub state: AuthorizationState,
    /// When it ends (exclusive).
    pub expires_at: Timestamp,
    /// Calls counted.
    pub used: u64,
    /// Calls allowed.
    pub usage_limit: u64,
}

/// The count after `calls` more at `at` against `grant`, whose listing is in `listing` (`None`
/// when the zone no longer holds it).
///
/// # Errors
/// The refusal naming the first rule the use breaks, in the order: revoked, suspended,
/// expired, listing not listed, over the limit.
pub fn judge_use(
    grant: &Grant,
    listing: Option<ListingState>,
    calls: u64,
    at: Timestamp,
) -> Result<u64, Refusal> {
    let id = grant.id;
    match grant.state {
        AuthorizationState::Revoked => {
            return Err(Refusal::AuthorizationRevoked(format!(
                "authorization {id} was revoked: no use is allowed"
            )));
        }
        AuthorizationState::Suspended => {
            return Err(Refusal::AuthorizationSuspended(format!(
                "authorization {id} is suspended: no use is allowed until an operator lifts it"
            )));
        }
        AuthorizationState::Active => {}
    }
    if at >= grant.expires_at {
        return Err(Refusal::AuthorizationExpired(format!(
            "authorization {id} expired at {}",
            serde_json::to_value(grant.expires_at)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| grant.expires_at.0.to_string())
        )));
    }
    if listing != Some(ListingState::Listed) {
        let state = listing.map_or("no longer held", ListingState::as_str);
        return Err(Refusal::ListingNotListed(format!(
            "the listing of authorization {id} is {state}: no use is allowed while it is not listed"
        )));
    }
    let after = grant.used.saturating_add(calls);
    if after > grant.usage_limit {
        return Err(Refusal::UsageLimitExceeded(format!(
            "authorization {id} allows {} calls and has counted {}: {calls} more would pass the \
             limit",
            grant.usage_limit, grant.used
        )));
    }
    Ok(after)
}

fn ok(object_id: impl Into<String>) -> CommandResponse {
    Ok(Applied {
        object_id: object_id.into(),
        version: None,
        state: None,
        used: None,
    })
}

/// The refusal of an application for, or the approval of one for, suspended listing `id`.
pub fn suspended(id: &ContentId) -> Refusal {
    Refusal::ListingSuspended(format!(
        "listing {id} is suspended by the regulator under a complaint: no application for it \
         is taken or approved until the suspension is lifted"
    ))
}

/// Whether `listing` (in `state`) can be applied for: listed here.
fn open_for_applications(id: &ContentId, state: ListingState) -> Result<(), Refusal> {
    match state {
        ListingState::Listed => Ok(()),
        ListingState::Recognised => Err(Refusal::IllegalTransition(format!(
            "listing {id} is recognised from another zone: it is applied for at its origin"
        ))),
        ListingState::Suspended => Err(suspended(id)),
        s => Err(Refusal::IllegalTransition(format!(
            "listing {id} is {}: only a listed listing is applied for or authorised",
            s.as_str()
        ))),
    }
}

/// Applies an application of `buyer` (the caller's party).
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn submit(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    raft_index: u64,
    request: &ApplicationRequest,
    buyer: &str,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    if let Some(refusal) = parties::recorded_refusal(db, buyer)? {
        return Ok(Err(refusal));
    }
    if let Err((field, why)) = request_shape(request.duration_days, request.usage_limit) {
        return Ok(Err(Refusal::Invalid(format!("{field}: {why}"))));
    }
    let id = &request.listing_id;
    let Some(current) = listings::current(db, &id.to_string())? else {
        return Ok(Err(Refusal::NotFound(format!("no listing {id}"))));
    };
    let product = &current.listing;
    // A listing recognised from another exchange is applied for at its origin, through this
    // zone (PROTOCOL.md 11); the rules of the listing are judged here on this zone's copy too.
    let recognised = current.state == ListingState::Recognised;
    let state = if recognised {
        ListingState::Listed
    } else {
        current.state
    };
    let judged = open_for_applications(id, state)
        .and_then(|()| one_scenario(std::slice::from_ref(&request.scenario), &product.scenarios))
        .and_then(|_| deliverable(product, request.delivery_mode));
    if let Err(refusal) = judged {
        return Ok(Err(refusal));
    }
    let pending = table::pending_of(db, buyer)?;
    if pending >= MAX_PENDING_PER_BUYER {
        return Ok(Err(Refusal::ApplicationsFull(format!(
            "{buyer} has {pending} applications awaiting a decision, the most a buyer may have"
        ))));
    }
    if recognised {
        let Some(owner) = listings::owner(db, &id.to_string())? else {
            return Ok(Err(Refusal::NotFound(format!("no listing {id}"))));
        };
        let Ok(content_id) = owner.content_id.parse::<ContentId>() else {
            return Ok(Err(Refusal::Invalid(format!(
                "listing {id} holds no valid content id"
            ))));
        };
        return across::forward(
            db, zone, raft_index, request, buyer, product, content_id, at, actor,
        );
    }
    let new_id = table::insert(
        db,
        request,
        buyer,
        ApplicationState::Submitted,
        at,
        &actor.id,
        raft_index,
    )?;
    Ok(ok(new_id.to_string()))
}

/// An operator's decision on an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Approve with these terms (narrowed or as asked).
    Approve(&'a Terms),
    /// Reject for this reason.
    Reject(&'a str),
}

/// Applies an operator's decision on application `id`; an approval answers the new
/// authorisation's id.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn decide(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    id: u64,
    decision: &Decision<'_>,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let Some((request, buyer, state)) = table::asked(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!("no application {id}"))));
    };
    if let Some(origin) = table::across(db, id)?.and_then(|row| row.origin_zone) {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "application {id} is for a listing of another exchange: its origin zone {origin} \
             decides it"
        ))));
    }
    if state != ApplicationState::Submitted {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "application {id} is {}: only a submitted application is decided",
            state.as_str()
        ))));
    }
    let terms = match decision {
        Decision::Reject(reason) => {
            table::reject(db, id, at, &actor.id, reason)?;
            across::decision_body(db, zone, id, at)?;
            return Ok(ok(id.to_string()));
        }
        Decision::Approve(terms) => terms,
    };
    // A suspended (or refused) buyer can do nothing new, and an authorisation is new: its
    // pending applications may be rejected, not approved.
    if let Some(refusal) = super::parties::recorded_refusal(db, &buyer)? {
        return Ok(Err(refusal));
    }
    let listing_id = &request.listing_id;
    let Some(current) = listings::current(db, &listing_id.to_string())? else {
        return Ok(Err(Refusal::NotFound(format!("no listing {listing_id}"))));
    };
    let product = &current.listing;
    let granted = open_for_applications(listing_id, current.state)
        .and_then(|()| narrow(&request, terms))
        .and_then(|g| deliverable(product, g.delivery_mode).map(|()| g))
        .and_then(|g| keeps_in_domain(&request, &g).map(|()| g));
    let granted = match granted {
        Ok(g) => g,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let authorization = authorizations::insert(
        db,
        &authorizations::NewAuthorization {
            application_id: id,
            listing_id,
            provider: product.provider.id.as_str(),
            buyer: &buyer,
            scenario: &request.scenario,
            delivery_mode: granted.delivery_mode,
            usage_limit: granted.usage_limit,
            granted_at: at,
            expires_at: at.plus_millis(u64::from(granted.duration_days).saturating_mul(DAY_MS)),
            granted_by: &actor.id,
        },
    )?;
    table::approve(db, id, at, &actor.id, authorization)?;
    across::decision_body(db, zone, id, at)?;
    Ok(ok(authorization.to_string()))
}

/// After listing `listing_id` was delisted by `by`: every application for it still awaiting
/// this zone's decision is rejected, by `by`, for that reason (one received from another
/// exchange too, whose decision then goes back to it). An application this zone forwarded to
/// another exchange is left to its origin, which does the same when it delists.
///
/// # Errors
/// Only storage errors.
pub fn close_on_delisting(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    listing_id: &ContentId,
    at: Timestamp,
    by: &Actor,
    reason: &str,
) -> rusqlite::Result<()> {
    let why = format!("the listing was delisted: {reason}");
    let why: String = why.chars().take(MAX_REASON_CHARS).collect();
    for id in table::submitted_for(db, &listing_id.to_string())? {
        if table::across(db, id)?
            .and_then(|row| row.origin_zone)
            .is_some()
        {
            continue;
        }
        table::reject(db, id, at, &by.id, &why)?;
        across::decision_body(db, zone, id, at)?;
    }
    Ok(())
}

/// Whether `actor` may count usage of an authorisation of `buyer` for a listing of
/// `provider`: the buyer's own token, the provider's delivery system (its provider token), or
/// an admin.
fn may_count(actor: &Actor, buyer: &str, provider: &str, id: u64) -> Result<(), Refusal> {
    let own = match actor.role {
        Role::Admin => true,
        Role::Buyer => actor.id == buyer,
        Role::Provider => actor.id == provider,
        _ => false,
    };
    if own {
        return Ok(());
    }
    Err(Refusal::Forbidden(format!(
        "authorization {id} is counted by its buyer's token or its provider's delivery system, \
         not by {}",
        actor.id
    )))
}

/// Applies a usage report of `calls` at `at` (the time the receiving node stamped on it):
/// counted if every rule allows it, else refused and the refusal counted on the
/// authorisation. The check and the count are made in the one transaction of the state
/// machine, so reports applied one after another never count past the limit.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn record_usage(
    db: &rusqlite::Connection,
    id: u64,
    calls: u64,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let Some(found) = authorizations::judged(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!("no authorization {id}"))));
    };
    if let Err(refusal) = may_count(actor, &found.buyer, &found.provider, id) {
        return Ok(Err(refusal));
    }
    if let Some((origin, there)) = authorizations::origin_of(db, id)? {
        return Ok(Err(Refusal::Forbidden(format!(
            "authorization {id} was granted by {origin} of another exchange (its authorization \
             {there}): its usage is counted there, by the provider's delivery system"
        ))));
    }
    let judged = match parties::recorded_refusal(db, &found.buyer)? {
        Some(refusal) => Err(refusal),
        None if !(1..=MAX_CALLS).contains(&calls) => Err(Refusal::Invalid(format!(
            "calls: {calls} is not 1 to {MAX_CALLS}"
        ))),
        None => {
            let listed = listings::current(db, &found.listing_id)?.map(|c| c.state);
            judge_use(&found.grant, listed, calls, at)
        }
    };
    match judged {
        Ok(after) => {
            authorizations::set_used(db, id, after)?;
            Ok(Ok(Applied {
                object_id: id.to_string(),
                version: None,
                state: None,
                used: Some(after),
            }))
        }
        Err(refusal) => {
            let why = format!("{}: {refusal}", refusal.code());
            authorizations::note_refusal(db, id, &why)?;
            Ok(Err(refusal))
        }
    }
}

/// Applies an operator's change of authorisation `id`'s state.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn change(
    db: &rusqlite::Connection,
    id: u64,
    change: Change,
    reason: &str,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let Some(found) = authorizations::judged(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!("no authorization {id}"))));
    };
    let state = found.grant.state;
    let (from, to) = change.rule();
    if !from.contains(&state) {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "authorization {id} is {}: it cannot become {}",
            state.as_str(),
            to.as_str()
        ))));
    }
    authorizations::set_state(db, id, to, at, &actor.id, reason)?;
    Ok(ok(id.to_string()))
}

/// An earlier decision on the same listing and scenario (scenario reuse, 场景复用): what was
/// decided and on which terms, without who applied.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Precedent {
    /// The application decided.
    pub application_id: u64,
    /// `approved` or `rejected`.
    pub decision: ApplicationState,
    /// When.
    pub decided_at: Timestamp,
    /// The delivery mode granted (approvals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_mode: Option<DeliveryMode>,
    /// The days granted (approvals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_days: Option<u64>,
    /// The calls granted (approvals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_limit: Option<u64>,
    /// Why it was rejected (rejections).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The zone of another exchange that made the decision and listed it among its precedents
    /// (PROTOCOL.md 11.8), `application_id` being its number there; absent for a decision held
    /// in this zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_in: Option<String>,
}

/// An application as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApplicationView {
    /// Its id.
    pub id: u64,
    /// The listing.
    pub listing_id: ContentId,
    /// The applying party.
    pub buyer: String,
    /// The one scenario.
    pub scenario: String,
    /// What for.
    pub purpose: String,
    /// The delivery mode asked.
    pub delivery_mode: DeliveryMode,
    /// The days asked.
    pub duration_days: u32,
    /// The calls asked.
    pub usage_limit: u64,
    /// Its state.
    pub state: ApplicationState,
    /// When it was submitted.
    pub submitted_at: Timestamp,
    /// When it was decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Timestamp>,
    /// Who decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The authorisation its approval created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_id: Option<u64>,
    /// For an application across exchanges (PROTOCOL.md 11), where it travels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub across: Option<AcrossView>,
}

/// Where an application across exchanges travels, and the ids of its signed messages.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AcrossView {
    /// At the applying zone: the listing's origin zone, which decides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_zone: Option<String>,
    /// At the origin zone: the zone that forwarded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applicant_zone: Option<String>,
    /// At the origin zone: the application's number at the applying zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applicant_application: Option<u64>,
    /// The id of the ApplicationRequest (`sha256:<hex>` of its body).
    pub request_id: String,
    /// At the applying zone: when the origin acknowledged it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_at: Option<Timestamp>,
    /// The id of the ApplicationDecision, once decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
}

/// What a list of applications asks for.
#[derive(Debug, Clone, Default)]
pub struct ApplicationFilter {
    /// Only in this state.
    pub state: Option<ApplicationState>,
    /// Only for this listing.
    pub listing_id: Option<String>,
    /// Only of this buyer (a buyer token sees its own only).
    pub buyer: Option<String>,
    /// Only for listings of this provider (a provider token sees its own only).
    pub provider: Option<String>,
    /// Only with ids below this one (the previous page's `next_before`).
    pub before: Option<u64>,
    /// Page size.
    pub limit: u32,
}

/// A page of applications, newest first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApplicationPage {
    /// The applications.
    pub items: Vec<ApplicationView>,
    /// Pass as `before` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// An authorisation as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuthorizationView {
    /// Its id.
    pub id: u64,
    /// The application whose approval created it.
    pub application_id: u64,
    /// The listing.
    pub listing_id: ContentId,
    /// The listing's party.
    pub provider: String,
    /// The authorised party.
    pub buyer: String,
    /// The one scenario it covers.
    pub scenario: String,
    /// The delivery mode granted.
    pub delivery_mode: DeliveryMode,
    /// Calls allowed in all.
    pub usage_limit: u64,
    /// Calls counted.
    pub used: u64,
    /// Calls left.
    pub remaining: u64,
    /// Usage reports refused.
    pub refused: u64,
    /// The code and message of the latest refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_refusal: Option<String>,
    /// Its state (expiry is `expires_at`; a use at or after it is refused).
    pub state: AuthorizationState,
    /// When it was granted.
    pub granted_at: Timestamp,
    /// When it ends.
    pub expires_at: Timestamp,
    /// Who granted it.
    pub granted_by: String,
    /// When it was last suspended or revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<Timestamp>,
    /// By whom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For an authorisation granted by another exchange: the origin zone that granted it and
    /// its number there. The terms here are those granted; its state and usage are kept at the
    /// origin, where usage is reported and which alone suspends or revokes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<OriginAuthorization>,
}

/// Where an authorisation granted by another exchange is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OriginAuthorization {
    /// The origin zone.
    pub zone: String,
    /// The authorisation's number there.
    pub authorization: u64,
}

/// The state and content of listing `id` in this zone, if it holds it, on a reader.
///
/// # Errors
/// Only storage errors.
pub async fn listing(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Option<(ListingState, Listing)>, sqlx::Error> {
    listings::current_read(conn, id).await
}

/// The latest decisions on `listing_id` for `scenario`, other than application `except`,
/// newest first (at most [`MAX_PRECEDENTS`]): this zone's, and for a listing of another
/// exchange those its origin zone listed (PROTOCOL.md 11.8) on applications not of zone `own`.
///
/// # Errors
/// Only storage errors.
pub async fn precedents(
    conn: &mut SqliteConnection,
    listing_id: &str,
    scenario: &str,
    except: u64,
    own: &ZoneId,
) -> Result<Vec<Precedent>, sqlx::Error> {
    let mut all = table::precedents(conn, listing_id, scenario, except, MAX_PRECEDENTS).await?;
    all.extend(super::precedents::remote(conn, listing_id, scenario, own).await?);
    all.sort_by_key(|p| std::cmp::Reverse(p.decided_at));
    all.truncate(MAX_PRECEDENTS as usize);
    Ok(all)
}

/// Application `id`.
///
/// # Errors
/// Only storage errors.
pub async fn application(
    conn: &mut SqliteConnection,
    id: u64,
) -> Result<Option<ApplicationView>, sqlx::Error> {
    table::application(conn, id).await
}

/// The applications `filter` selects, newest first.
///
/// # Errors
/// Only storage errors.
pub async fn list(
    conn: &mut SqliteConnection,
    filter: &ApplicationFilter,
) -> Result<ApplicationPage, sqlx::Error> {
    let limit = usize::try_from(filter.limit.max(1)).unwrap_or(1);
    let rows = i64::try_from(limit + 1).unwrap_or(i64::MAX);
    let mut items = table::list(conn, filter, rows).await?;
    let more = items.len() > limit;
    items.truncate(limit);
    let next_before = more.then(|| items.last().map(|a| a.id)).flatten();
    Ok(ApplicationPage { items, next_before })
}

/// Authorisation `id`.
///
/// # Errors
/// Only storage errors.
pub async fn authorization(
    conn: &mut SqliteConnection,
    id: u64,
) -> Result<Option<AuthorizationView>, sqlx::Error> {
    authorizations::authorization(conn, id).await
}

#[cfg(test)]
mod tests {
    use xchg_protocol::Classification;

    use super::*;
    use crate::audit;
    use crate::catalog::apply::apply;
    use crate::catalog::{CatalogCommand, test_zone};
    use crate::sqlite::in_transaction;

    const T0: Timestamp = Timestamp(1_800_000_000_000);
    const PROVIDER: &str = "yuzhou-credit-center";
    const BUYER: &str = "xuchang-bank";

    fn actor(id: &str, role: Role) -> Actor {
        Actor {
            id: id.into(),
            role,
        }
    }

    fn operator() -> Actor {
        actor("token:0perator", Role::Operator)
    }

    fn product(c: Classification, personal: bool, modes: &[DeliveryMode]) -> Listing {
        let mut draft = xchg_protocol::vectors::credit_draft();
        draft.classification = c;
        draft.contains_personal_info = personal;
        draft.delivery_modes = modes.to_vec();
        draft.scenarios = vec!["企业贷款授信审查".into(), "供应链金融".into()];
        Listing::first_version(draft, "xuchang/yuzhou".parse().expect("zone"), T0)
    }

    fn scenarios() -> Vec<String> {
        vec!["企业贷款授信审查".into(), "供应链金融".into()]
    }

    fn asked(mode: DeliveryMode) -> ApplicationRequest {
        ApplicationRequest {
            listing_id: product(Classification::General, false, &[mode]).id(),
            scenario: "企业贷款授信审查".into(),
            purpose: "授信前核验".into(),
            delivery_mode: mode,
            duration_days: 30,
            usage_limit: 100,
        }
    }

    #[test]
    fn an_application_names_exactly_one_offered_scenario() {
        let offered = scenarios();
        let one = |s: &str| one_scenario(&[s.to_owned()], &offered);
        assert_eq!(one("供应链金融"), Ok("供应链金融".to_owned()));
        let code = |r: Result<String, Refusal>| r.err().map(|e| e.code());
        assert_eq!(
            code(one("企业贷款授信审查, 供应链金融")),
            Some("one_scenario")
        );
        assert_eq!(
            code(one("企业贷款授信审查、供应链金融")),
            Some("one_scenario")
        );
        assert_eq!(code(one_scenario(&offered, &offered)), Some("one_scenario"));
        assert_eq!(code(one_scenario(&[], &offered)), Some("one_scenario"));
        assert_eq!(code(one("个人征信")), Some("scenario_not_offered"));
        // One offered scenario and an unknown one is still a scenario not offered.
        assert_eq!(
            code(one("供应链金融, 个人征信")),
            Some("scenario_not_offered")
        );
        let e = one("个人征信").expect_err("not offered");
        assert!(
            e.to_string().contains("供应链金融"),
            "names what is offered: {e}"
        );
        // Joined by white space (an ideographic space too), or by nothing but a word.
        for two in [
            "企业贷款授信审查 供应链金融",
            "企业贷款授信审查\u{3000}供应链金融",
            "企业贷款授信审查\t供应链金融",
            " 供应链金融 / 企业贷款授信审查 ",
        ] {
            assert_eq!(code(one(two)), Some("one_scenario"), "{two:?}");
        }
        // Run together, they are one text the listing does not offer.
        assert_eq!(
            code(one("企业贷款授信审查供应链金融")),
            Some("scenario_not_offered")
        );
    }

    #[test]
    fn two_scenarios_joined_are_found_even_when_a_scenario_holds_spaces() {
        let offered: Vec<String> = ["credit", "risk", "credit risk", "fraud", "a/b"]
            .map(String::from)
            .to_vec();
        let joined = |t: &str| joined_scenarios(t, &offered);
        let code = |t: &str| {
            one_scenario(&[t.to_owned()], &offered)
                .err()
                .map(|e| e.code())
        };
        // A scenario with a space is one scenario, as the listing writes it.
        assert_eq!(code("credit risk"), None);
        assert_eq!(joined("credit fraud"), ["credit", "fraud"]);
        assert_eq!(code("credit fraud"), Some("one_scenario"));
        // The reading with the most parts; of those, the one covering the most text.
        assert_eq!(joined("credit risk fraud"), ["credit", "risk", "fraud"]);
        assert_eq!(joined("credit risk, a/b"), ["credit", "risk", "a/b"]);
        let nested: Vec<String> = ["credit", "credit risk", "fraud"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            joined_scenarios("credit risk fraud", &nested),
            ["credit risk", "fraud"]
        );
        assert_eq!(joined("risk and fraud"), ["risk", "fraud"]);
        // One offered part and another that is not: a scenario not offered.
        assert_eq!(joined("credit scoring"), ["credit"]);
        assert_eq!(code("credit scoring"), Some("scenario_not_offered"));
        // Parts are whole: inside a word nothing is found.
        assert!(joined("creditrisk").is_empty());
        assert!(joined("discredit riskier").is_empty());
        assert_eq!(code("credit  risk"), Some("one_scenario"));
        assert!(joined("").is_empty());
    }

    #[test]
    fn sensitive_products_are_authorised_only_for_in_domain_delivery() {
        use DeliveryMode::*;
        let all = [
            File,
            Api,
            Sandbox,
            PrivacyComputing,
            ModelOutput,
            Verification,
        ];
        for (c, personal) in [
            (Classification::Important, false),
            (Classification::Core, false),
            (Classification::General, true),
        ] {
            let p = product(c, personal, &all);
            for mode in [File, Api] {
                let e = deliverable(&p, mode).expect_err("out of its domain");
                assert_eq!(e.code(), "in_domain_only", "{e}");
                assert!(e.to_string().contains("in-domain delivery rule"), "{e}");
            }
            for mode in [Sandbox, PrivacyComputing, ModelOutput, Verification] {
                assert_eq!(deliverable(&p, mode), Ok(()));
            }
        }
        let open = product(Classification::General, false, &[Api]);
        assert_eq!(deliverable(&open, Api), Ok(()));
        let e = deliverable(&open, Sandbox).expect_err("not offered");
        assert_eq!(e.code(), "invalid", "{e}");
    }

    #[test]
    fn an_approval_only_narrows() {
        let a = asked(DeliveryMode::Api);
        let as_asked = narrow(&a, &Terms::default()).expect("as asked");
        assert_eq!((as_asked.duration_days, as_asked.usage_limit), (30, 100));
        let narrower = Terms {
            delivery_mode: Some(DeliveryMode::Verification),
            duration_days: Some(7),
            usage_limit: Some(10),
        };
        let g = narrow(&a, &narrower).expect("narrowed");
        assert_eq!(
            (g.delivery_mode, g.duration_days, g.usage_limit),
            (DeliveryMode::Verification, 7, 10)
        );
        for wider in [
            Terms {
                duration_days: Some(31),
                ..Terms::default()
            },
            Terms {
                usage_limit: Some(101),
                ..Terms::default()
            },
            Terms {
                usage_limit: Some(0),
                ..Terms::default()
            },
        ] {
            assert!(narrow(&a, &wider).is_err(), "{wider:?}");
        }
        // A mode changed away from the one asked must keep the data in its domain.
        let sandbox = asked(DeliveryMode::Sandbox);
        for out in [DeliveryMode::File, DeliveryMode::Api] {
            let terms = Terms {
                delivery_mode: Some(out),
                ..Terms::default()
            };
            let granted = narrow(&sandbox, &terms).expect("the numbers are as asked");
            let e = keeps_in_domain(&sandbox, &granted).expect_err("a mode that lets the data out");
            assert_eq!(e.code(), "invalid", "{e}");
        }
    }

    #[test]
    fn a_refused_approval_names_the_term_it_blames() {
        let a = asked(DeliveryMode::Sandbox);
        let p = product(
            Classification::Important,
            false,
            &[DeliveryMode::Sandbox, DeliveryMode::File],
        );
        // What the state machine judges, in its order, and the field the API names.
        let judged = |terms: &Terms| {
            let refusal = narrow(&a, terms)
                .and_then(|g| deliverable(&p, g.delivery_mode).map(|()| g))
                .and_then(|g| keeps_in_domain(&a, &g))
                .expect_err("refused");
            (
                refusal.code(),
                approval_field(a.duration_days, a.usage_limit, terms, &refusal),
            )
        };
        let days = Terms {
            duration_days: Some(31),
            ..Terms::default()
        };
        assert_eq!(judged(&days), ("invalid", Some("duration_days")));
        let limit = Terms {
            usage_limit: Some(0),
            ..Terms::default()
        };
        assert_eq!(judged(&limit), ("invalid", Some("usage_limit")));
        // A number widened and a mode not offered: the number is judged first.
        let both = Terms {
            delivery_mode: Some(DeliveryMode::Api),
            usage_limit: Some(101),
            ..Terms::default()
        };
        assert_eq!(judged(&both), ("invalid", Some("usage_limit")));
        for (mode, code) in [
            (DeliveryMode::File, "in_domain_only"),
            (DeliveryMode::Verification, "invalid"),
        ] {
            let terms = Terms {
                delivery_mode: Some(mode),
                ..Terms::default()
            };
            assert_eq!(judged(&terms), (code, Some("delivery_mode")), "{mode:?}");
        }
        // A refusal of the application's or the listing's state blames no term.
        let state = Refusal::IllegalTransition("decided".into());
        assert_eq!(approval_field(30, 100, &days, &state), None);
    }

    #[test]
    fn a_use_is_judged_by_its_own_time_state_listing_and_limit() {
        let grant = Grant {
            id: 7,
            state: AuthorizationState::Active,
            expires_at: Timestamp(T0.0 + 1000),
            used: 8,
            usage_limit: 10,
        };
        let listed = Some(ListingState::Listed);
        assert_eq!(judge_use(&grant, listed, 2, T0), Ok(10));
        let code = |g: &Grant, l, calls, at| judge_use(g, l, calls, at).err().map(|e| e.code());
        assert_eq!(code(&grant, listed, 3, T0), Some("usage_limit_exceeded"));
        let at_expiry = Timestamp(T0.0 + 1000);
        assert_eq!(
            code(&grant, listed, 1, at_expiry),
            Some("authorization_expired")
        );
        let delisted = Some(ListingState::Delisted);
        assert_eq!(code(&grant, delisted, 1, T0), Some("listing_not_listed"));
        assert_eq!(code(&grant, None, 1, T0), Some("listing_not_listed"));
        for (state, refused) in [
            (AuthorizationState::Suspended, "authorization_suspended"),
            (AuthorizationState::Revoked, "authorization_revoked"),
        ] {
            let g = Grant {
                state,
                ..grant.clone()
            };
            assert_eq!(code(&g, listed, 1, T0), Some(refused));
        }
    }

    #[test]
    fn only_an_active_authorisation_is_suspended_only_a_suspended_one_reinstated_and_a_revoked_one_stays_revoked()
     {
        use AuthorizationState::*;
        assert_eq!(Change::Suspend.rule(), (&[Active][..], Suspended));
        assert_eq!(Change::Revoke.rule(), (&[Active, Suspended][..], Revoked));
        assert_eq!(Change::Reinstate.rule(), (&[Suspended][..], Active));
    }

    /// Applies `commands` in order on a fresh catalog; the responses, and the authorisations
    /// as they ended.
    async fn run(commands: &[CatalogCommand]) -> (Vec<CommandResponse>, Vec<AuthorizationView>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let zone = test_zone();
        let responses = in_transaction(&db, || {
            let mut chain = audit::Chain::load(&db)?;
            let responses = (10..)
                .zip(commands)
                .map(|(index, c)| apply(&db, &mut chain, &zone, index, c))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            chain.flush(&db)?;
            Ok(responses)
        })
        .expect("apply");
        drop(db);
        let mut reader = crate::catalog::test_reader(dir.path()).await;
        let mut authorizations = Vec::new();
        for id in 1.. {
            match authorization(&mut reader, id).await.expect("read") {
                Some(a) => authorizations.push(a),
                None => break,
            }
        }
        (responses, authorizations)
    }

    fn listed(p: &Listing) -> [CatalogCommand; 2] {
        [
            CatalogCommand::SubmitListing {
                listing: Box::new(p.clone()),
                actor: actor(PROVIDER, Role::Provider),
            },
            CatalogCommand::ApproveListing {
                listing_id: p.id(),
                review: crate::catalog::Review::default(),
                at: T0,
                actor: operator(),
            },
        ]
    }

    fn apply_for(p: &Listing, mode: DeliveryMode, limit: u64) -> CatalogCommand {
        CatalogCommand::SubmitApplication {
            request: Box::new(ApplicationRequest {
                listing_id: p.id(),
                usage_limit: limit,
                delivery_mode: mode,
                ..asked(mode)
            }),
            buyer: BUYER.parse().expect("party id"),
            at: T0,
            actor: actor(BUYER, Role::Buyer),
        }
    }

    fn approve(application_id: u64, terms: Terms) -> CatalogCommand {
        CatalogCommand::ApproveApplication {
            application_id,
            terms,
            at: T0,
            actor: operator(),
        }
    }

    fn usage(calls: u64, at: Timestamp, by: Actor) -> CatalogCommand {
        CatalogCommand::RecordUsage {
            authorization_id: 1,
            calls,
            at,
            actor: by,
        }
    }

    fn codes(responses: &[CommandResponse]) -> Vec<Option<&'static str>> {
        responses
            .iter()
            .map(|r| r.as_ref().err().map(Refusal::code))
            .collect()
    }

    #[tokio::test]
    async fn usage_stops_at_the_limit_and_at_expiry_and_every_refusal_is_counted() {
        let p = product(Classification::General, false, &[DeliveryMode::Api]);
        let buyer = actor(BUYER, Role::Buyer);
        let narrowed = Terms {
            usage_limit: Some(5),
            duration_days: Some(1),
            ..Terms::default()
        };
        let mut commands = listed(&p).to_vec();
        commands.push(apply_for(&p, DeliveryMode::Api, 100));
        commands.push(approve(1, narrowed));
        commands.extend((0..7).map(|_| usage(1, T0, buyer.clone())));
        // A day after approval, by the command's own time: expired.
        let day_later = T0.plus_millis(DAY_MS);
        commands.push(usage(1, Timestamp(day_later.0 - 1), buyer.clone()));
        commands.push(usage(1, day_later, buyer.clone()));
        commands.push(usage(0, T0, buyer));
        let (responses, auths) = run(&commands).await;
        let c = codes(&responses);
        assert_eq!(&c[..4], &[None; 4], "{responses:?}");
        assert_eq!(&c[4..9], &[None; 5]);
        assert_eq!(&c[9..11], &[Some("usage_limit_exceeded"); 2]);
        assert_eq!(
            c[11],
            Some("usage_limit_exceeded"),
            "still within a day, but spent"
        );
        assert_eq!(c[12], Some("authorization_expired"));
        assert_eq!(c[13], Some("invalid"), "no call is no use");
        let a = &auths[0];
        assert_eq!((a.used, a.remaining, a.usage_limit), (5, 0, 5));
        assert_eq!(a.refused, 5);
        assert_eq!(a.expires_at, day_later);
        assert!(
            a.last_refusal
                .as_deref()
                .is_some_and(|r| r.starts_with("invalid")),
            "{a:?}"
        );
    }

    #[tokio::test]
    async fn a_suspended_buyers_pending_application_may_be_rejected_not_approved() {
        let p = product(Classification::General, false, &[DeliveryMode::Api]);
        let mut commands = listed(&p).to_vec();
        // The buyer in the registry, admitted.
        let buyer = xchg_protocol::PartyProfile {
            id: BUYER.parse().expect("party id"),
            name: "许昌银行".into(),
            credit_code: "11411081005012345B".parse().expect("a credit code"),
            kinds: vec![xchg_protocol::PartyKind::Processor],
            contact: xchg_protocol::Contact {
                name: "数据专员".into(),
                phone: None,
                email: Some("data@bank.example".into()),
            },
        };
        commands.push(CatalogCommand::ApplyParty {
            profile: Box::new(buyer),
            at: T0,
            actor: None,
            received_by: "yuzhou-1".into(),
        });
        commands.push(CatalogCommand::AdmitParty {
            party_id: BUYER.parse().expect("party id"),
            notes: None,
            at: T0,
            actor: operator(),
        });
        commands.push(apply_for(&p, DeliveryMode::Api, 10));
        commands.push(apply_for(&p, DeliveryMode::Api, 10));
        commands.push(CatalogCommand::SuspendParty {
            party_id: BUYER.parse().expect("party id"),
            reason: "under investigation".into(),
            at: T0,
            actor: operator(),
        });
        commands.push(approve(1, Terms::default()));
        commands.push(CatalogCommand::RejectApplication {
            application_id: 2,
            reason: "the buyer is suspended".into(),
            at: T0,
            actor: operator(),
        });
        let (responses, auths) = run(&commands).await;
        let c = codes(&responses);
        assert_eq!(&c[..7], &[None; 7], "up to the suspension: {responses:?}");
        assert_eq!(c[7], Some("party_not_admitted"), "{responses:?}");
        assert_eq!(c[8], None, "a rejection is allowed");
        assert!(auths.is_empty(), "no authorisation: {auths:?}");
    }

    #[tokio::test]
    async fn delisting_rejects_the_applications_still_awaiting_a_decision() {
        let p = product(Classification::General, false, &[DeliveryMode::Api]);
        let mut commands = listed(&p).to_vec();
        commands.push(apply_for(&p, DeliveryMode::Api, 10));
        commands.push(apply_for(&p, DeliveryMode::Api, 10));
        commands.push(approve(1, Terms::default()));
        commands.push(CatalogCommand::DelistListing {
            listing_id: p.id(),
            reason: "source data withdrawn".into(),
            at: T0,
            actor: operator(),
        });
        commands.push(CatalogCommand::RejectApplication {
            application_id: 2,
            reason: "too late".into(),
            at: T0,
            actor: operator(),
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let zone = test_zone();
        let responses = in_transaction(&db, || {
            let mut chain = audit::Chain::load(&db)?;
            let r = (10..)
                .zip(&commands)
                .map(|(index, c)| apply(&db, &mut chain, &zone, index, c))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            chain.flush(&db)?;
            Ok(r)
        })
        .expect("apply");
        let c = codes(&responses);
        assert_eq!(&c[..6], &[None; 6], "{responses:?}");
        assert_eq!(
            c[6],
            Some("illegal_transition"),
            "already rejected by the delisting"
        );
        drop(db);
        let mut reader = crate::catalog::test_reader(dir.path()).await;
        let second = application(&mut reader, 2)
            .await
            .expect("read")
            .expect("application 2");
        assert_eq!(second.state, ApplicationState::Rejected);
        assert_eq!(
            second.reason.as_deref(),
            Some("the listing was delisted: source data withdrawn")
        );
        let first = application(&mut reader, 1)
            .await
            .expect("read")
            .expect("application 1");
        assert_eq!(
            first.state,
            ApplicationState::Approved,
            "a decided one stays"
        );
    }

    #[tokio::test]
    async fn only_its_buyer_or_its_provider_counts_usage() {
        let p = product(Classification::General, false, &[DeliveryMode::Api]);
        let mut commands = listed(&p).to_vec();
        commands.push(apply_for(&p, DeliveryMode::Api, 10));
        commands.push(approve(1, Terms::default()));
        commands.push(usage(1, T0, actor("another-bank", Role::Buyer)));
        commands.push(usage(1, T0, actor("another-provider", Role::Provider)));
        commands.push(usage(1, T0, actor(PROVIDER, Role::Provider)));
        commands.push(usage(2, T0, actor(BUYER, Role::Buyer)));
        let (responses, auths) = run(&commands).await;
        let c = codes(&responses);
        assert_eq!(&c[4..], &[Some("forbidden"), Some("forbidden"), None, None]);
        assert_eq!(auths[0].used, 3);
        assert_eq!(
            auths[0].refused, 0,
            "a stranger's report is not the buyer's use"
        );
    }

    #[tokio::test]
    async fn a_sensitive_product_is_refused_for_file_both_asked_and_narrowed() {
        let p = product(
            Classification::Important,
            false,
            &[DeliveryMode::File, DeliveryMode::Sandbox],
        );
        let mut commands = listed(&p).to_vec();
        commands.push(apply_for(&p, DeliveryMode::File, 10));
        commands.push(apply_for(&p, DeliveryMode::Sandbox, 10));
        commands.push(approve(
            1,
            Terms {
                delivery_mode: Some(DeliveryMode::File),
                ..Terms::default()
            },
        ));
        commands.push(approve(1, Terms::default()));
        let (responses, auths) = run(&commands).await;
        let c = codes(&responses);
        assert_eq!(
            &c[2..],
            &[Some("in_domain_only"), None, Some("in_domain_only"), None]
        );
        assert_eq!(auths.len(), 1);
        assert_eq!(auths[0].delivery_mode, DeliveryMode::Sandbox);
    }

    #[tokio::test]
    async fn a_delisted_product_refuses_use_and_a_decided_application_is_not_decided_again() {
        let p = product(Classification::General, false, &[DeliveryMode::Api]);
        let mut commands = listed(&p).to_vec();
        commands.push(apply_for(&p, DeliveryMode::Api, 10));
        commands.push(approve(1, Terms::default()));
        commands.push(CatalogCommand::RejectApplication {
            application_id: 1,
            reason: "too late".into(),
            at: T0,
            actor: operator(),
        });
        commands.push(CatalogCommand::DelistListing {
            listing_id: p.id(),
            reason: "withdrawn".into(),
            at: T0,
            actor: operator(),
        });
        commands.push(usage(1, T0, actor(BUYER, Role::Buyer)));
        commands.push(apply_for(&p, DeliveryMode::Api, 10));
        let (responses, auths) = run(&commands).await;
        let c = codes(&responses);
        assert_eq!(
            &c[4..],
            &[
                Some("illegal_transition"),
                None,
                Some("listing_not_listed"),
                Some("illegal_transition")
            ]
        );
        assert_eq!((auths[0].used, auths[0].refused), (0, 1));
    }
}
