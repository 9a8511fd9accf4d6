//! Demands and matchmaking (交易撮合): a buyer (or a broker entrusted by it) posts what data it
//! needs; the exchange proposes matching listings, each with its score and the reasons for it;
//! a broker (or an operator) proposes a listing to a demand; the buyer accepts one listing and
//! goes on to apply for it. Posting, every proposal, the acceptance and a withdrawal are
//! commands of the zone's Raft and records of its audit chain; the exchange's own matches are
//! computed when read, from the replica, and the one accepted is recorded with its reasons.
//!
//! The SQL of `demands` and `demand_proposals` (schema v17) is in [`super::tables::demands`].

use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;
use xchg_protocol::{
    Classification, ContentId, DeliveryMode, Listing, PartyId, PricingModel, Timestamp,
};

use super::demands_across::{self, Share};
use super::tables::demands as table;
use super::tables::{enum_name, listings};
use super::valuation::Dec;
use super::{Actor, Applied, CommandResponse, ListingState, Refusal, ZoneFacts, parties};

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4000;
/// Longest scenario, in characters.
pub const MAX_SCENARIO_CHARS: usize = 200;
/// Longest note of a proposal, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;
/// The furthest deadline: 366 days after posting.
pub const MAX_DEADLINE_DAYS: u64 = 366;
/// Most open demands one buyer may have.
pub const MAX_OPEN_PER_BUYER: i64 = 200;
/// Most proposals one demand may collect.
pub const MAX_PROPOSALS: i64 = 200;
/// Most matches shown.
pub const MAX_MATCHES: usize = 20;
/// Listings read as candidate matches of the demand's category (the most recent first).
pub const CANDIDATES: u32 = 500;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// A budget: decimal strings of up to 15 digits and 4 decimals, `min` ≤ `max`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// The least the buyer expects to pay (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[0-9]{1,15}(\.[0-9]{1,4})?$")]
    pub min: Option<String>,
    /// The most it will pay.
    #[schema(pattern = r"^[0-9]{1,15}(\.[0-9]{1,4})?$")]
    pub max: String,
    /// ISO 4217 currency code.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

/// What a buyer needs, as posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDemand {
    /// The buyer it is for.
    pub buyer: PartyId,
    /// What data it needs, in a line.
    pub title: String,
    /// What data it needs, in full.
    pub description: String,
    /// The category sought.
    pub category: String,
    /// The one scenario it would use the data in.
    pub scenario: String,
    /// Delivery modes it can accept.
    pub delivery_modes: Vec<DeliveryMode>,
    /// Its budget.
    pub budget: Budget,
    /// When it stops looking.
    pub deadline: Timestamp,
    /// Whether it leaves the exchange (PROTOCOL.md 11.9); absent in a demand posted before
    /// demands travelled.
    #[serde(default, skip_serializing_if = "Share::is_exchange")]
    pub share: Share,
}

/// The state of a demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DemandState {
    /// Looking for a listing.
    Open,
    /// Its deadline passed while open (shown, never stored).
    Expired,
    /// The buyer accepted a listing.
    Accepted,
    /// The buyer withdrew it.
    Withdrawn,
}

impl DemandState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DemandState::Open => "open",
            DemandState::Expired => "expired",
            DemandState::Accepted => "accepted",
            DemandState::Withdrawn => "withdrawn",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => DemandState::Open,
            "expired" => DemandState::Expired,
            "accepted" => DemandState::Accepted,
            "withdrawn" => DemandState::Withdrawn,
            _ => return None,
        })
    }
}

/// A broker's or operator's proposal of a listing to a demand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Proposal {
    /// Its number in this zone.
    pub id: u64,
    /// The listing proposed.
    #[schema(value_type = String)]
    pub listing_id: ContentId,
    /// Who proposed it: a broker party, or an operator's actor id.
    pub proposed_by: String,
    /// In which role.
    pub role: String,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// The listing a buyer accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Acceptance {
    /// The listing.
    #[schema(value_type = String)]
    pub listing_id: ContentId,
    /// The proposal it came from, if a broker or operator proposed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<u64>,
    /// The match as the exchange scored it when accepted.
    pub score: u32,
    /// The reasons of that score.
    pub reasons: Vec<String>,
    /// When.
    pub at: Timestamp,
}

/// A demand as served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Demand {
    /// Its number in this zone.
    pub id: u64,
    /// The buyer it is for.
    #[schema(value_type = String)]
    pub buyer: PartyId,
    /// The broker that posted it for the buyer, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// What data it needs, in a line.
    pub title: String,
    /// What data it needs, in full.
    pub description: String,
    /// The category sought.
    pub category: String,
    /// The one scenario.
    pub scenario: String,
    /// Delivery modes it can accept.
    pub delivery_modes: Vec<DeliveryMode>,
    /// Its budget.
    pub budget: Budget,
    /// When it stops looking.
    pub deadline: Timestamp,
    /// Its state (`expired` once the deadline passed while open).
    pub state: DemandState,
    /// When it was posted.
    pub posted_at: Timestamp,
    /// The listing accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<Acceptance>,
    /// Proposals of brokers and operators, oldest first.
    pub proposals: Vec<Proposal>,
    /// `federation` when its buyer shared it with the exchanges this one has agreements with
    /// (PROTOCOL.md 11.9); absent when it stays in this exchange.
    #[serde(default, skip_serializing_if = "Share::is_exchange")]
    pub share: Share,
}

/// One listing the exchange proposes for a demand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Match {
    /// The listing.
    #[schema(value_type = String)]
    pub listing_id: ContentId,
    /// Its title.
    pub title: String,
    /// Its origin zone.
    pub origin: String,
    /// Its price as listed (`"12000.00 CNY fixed"`, `"negotiated"`).
    pub price: String,
    /// The delivery modes it offers that the demand accepts (and its rules allow).
    pub delivery_modes: Vec<DeliveryMode>,
    /// 0 to 100: scenario 40, delivery 20, price 25, classification 5, a proposal 10.
    pub score: u32,
    /// Why it matches, one reason per point of the score.
    pub reasons: Vec<String>,
    /// Proposals of it to this demand.
    pub proposed_by: Vec<String>,
}

/// The field at fault and why.
pub type Invalid = (&'static str, String);

/// Checks what needs no storage: texts, category, modes, budget, deadline (against `now`).
///
/// # Errors
/// The field at fault and why.
pub fn shape(d: &NewDemand, now: Timestamp) -> Result<(), Invalid> {
    for (field, value, max) in [
        ("title", &d.title, MAX_TITLE_CHARS),
        ("description", &d.description, MAX_DESCRIPTION_CHARS),
        ("scenario", &d.scenario, MAX_SCENARIO_CHARS),
    ] {
        if let Some(p) = xchg_protocol::text::problems(value, max, true).first() {
            return Err((field, p.message(max)));
        }
    }
    let category_ok = (1..=64).contains(&d.category.len())
        && d.category
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !category_ok {
        return Err(("category", "1 to 64 characters of a-z 0-9 _ -".into()));
    }
    if d.delivery_modes.is_empty() {
        return Err(("delivery_modes", "at least one delivery mode".into()));
    }
    let mut seen = d.delivery_modes.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != d.delivery_modes.len() {
        return Err(("delivery_modes", "a delivery mode given twice".into()));
    }
    let max = Dec::parse(&d.budget.max, 4, false).map_err(|why| ("budget.max", why))?;
    if let Some(min) = &d.budget.min {
        let min = Dec::parse(min, 4, false).map_err(|why| ("budget.min", why))?;
        if min > max {
            return Err(("budget.min", "more than budget.max".into()));
        }
    }
    let currency_ok =
        d.budget.currency.len() == 3 && d.budget.currency.bytes().all(|b| b.is_ascii_uppercase());
    if !currency_ok {
        return Err(("budget.currency", "three capital letters (ISO 4217)".into()));
    }
    let latest = now.0.saturating_add(MAX_DEADLINE_DAYS * DAY_MS);
    if d.deadline <= now || d.deadline.0 > latest {
        return Err((
            "deadline",
            format!("after now and at most {MAX_DEADLINE_DAYS} days ahead"),
        ));
    }
    Ok(())
}

fn ok(id: u64) -> CommandResponse {
    Ok(Applied {
        object_id: id.to_string(),
        version: None,
        state: None,
        used: None,
    })
}

/// Posts `demand` at `at`, by `actor` (the buyer itself, or, for a broker's act, the buyer the
/// broker acts for: `apply` checks the entrustment and notes the broker).
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn post(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    raft_index: u64,
    demand: &NewDemand,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let buyer = demand.buyer.as_str();
    // The buyer's own token, or its broker's act (whose actor is the buyer): never a token
    // bound to no party or to another party.
    if actor.id != buyer {
        return Ok(Err(Refusal::Forbidden(format!(
            "{} cannot post a demand in the name of {buyer}: a buyer posts its own, or a broker \
             it entrusted with post_demand does",
            actor.id
        ))));
    }
    let standing = parties::standing_on(db, &zone.founding, buyer)?;
    if let Some(refusal) = parties::not_admitted(buyer, standing.as_ref()) {
        return Ok(Err(refusal));
    }
    if let Err((field, why)) = shape(demand, at) {
        return Ok(Err(Refusal::Invalid(format!("{field}: {why}"))));
    }
    if table::open_of(db, buyer, at)? >= MAX_OPEN_PER_BUYER {
        return Ok(Err(Refusal::ApplicationsFull(format!(
            "{buyer} has {MAX_OPEN_PER_BUYER} open demands, the most a buyer may have: withdraw \
             some or let them reach their deadline"
        ))));
    }
    let id = table::insert(db, demand, at, &actor.id, raft_index)?;
    demands_across::queue_posted(db, &zone.zone, raft_index, id, demand, at)?;
    Ok(ok(id))
}

/// Records `actor`'s proposal of `listing_id` to demand `id` (a broker party or an operator).
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
#[allow(clippy::too_many_arguments)]
pub fn propose(
    db: &rusqlite::Connection,
    zone: &ZoneFacts,
    raft_index: u64,
    id: u64,
    listing_id: &ContentId,
    note: Option<&str>,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let Some(found) = table::get_on(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!("no demand {id}"))));
    };
    if actor.role != Role::Operator && actor.role != Role::Admin {
        let standing = parties::standing_on(db, &zone.founding, &actor.id)?;
        if let Some(refusal) = parties::not_admitted(&actor.id, standing.as_ref()) {
            return Ok(Err(refusal));
        }
        if !standing.is_some_and(|s| s.broker) {
            return Ok(Err(Refusal::Forbidden(format!(
                "party {} is not a broker: only a broker party or an operator proposes listings \
                 to demands",
                actor.id
            ))));
        }
    }
    if let Err(refusal) = still_open(&found, at) {
        return Ok(Err(refusal));
    }
    if let Err(refusal) = listed(db, listing_id)? {
        return Ok(Err(refusal));
    }
    if table::proposal_count(db, id)? >= MAX_PROPOSALS {
        return Ok(Err(Refusal::Conflict(format!(
            "demand {id} has {MAX_PROPOSALS} proposals, the most it collects"
        ))));
    }
    match table::insert_proposal(db, id, listing_id, note, at, actor, raft_index)? {
        Some(p) => Ok(ok(p)),
        None => Ok(Err(Refusal::Conflict(format!(
            "{} already proposed listing {listing_id} to demand {id}",
            actor.id
        )))),
    }
}

/// The buyer (`actor`'s party) accepts `acceptance.listing_id` for demand `id`.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn accept(
    db: &rusqlite::Connection,
    id: u64,
    acceptance: &Acceptance,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let Some(found) = table::get_on(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!("no demand {id}"))));
    };
    if let Err(refusal) = own(&found, actor, "accept a listing for") {
        return Ok(Err(refusal));
    }
    if let Err(refusal) = still_open(&found, acceptance.at) {
        return Ok(Err(refusal));
    }
    if let Err(refusal) = listed(db, &acceptance.listing_id)? {
        return Ok(Err(refusal));
    }
    if let Some(why) = proposal_mismatch(&found, acceptance.proposal, acceptance.listing_id) {
        return Ok(Err(Refusal::Invalid(why)));
    }
    table::accept(db, id, acceptance)?;
    Ok(ok(id))
}

/// Why `proposal`, named in accepting `listing_id` for `demand`, is not a proposal of that
/// listing to it; `None` when it is, or when none is named.
pub fn proposal_mismatch(
    demand: &Demand,
    proposal: Option<u64>,
    listing_id: ContentId,
) -> Option<String> {
    let p = proposal?;
    let proposes = |q: &Proposal| q.id == p && q.listing_id == listing_id;
    (!demand.proposals.iter().any(proposes)).then(|| {
        format!(
            "proposal {p} of demand {} does not propose listing {listing_id}",
            demand.id
        )
    })
}

/// The buyer withdraws demand `id`.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn withdraw(
    db: &rusqlite::Connection,
    id: u64,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let Some(found) = table::get_on(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!("no demand {id}"))));
    };
    if let Err(refusal) = own(&found, actor, "withdraw") {
        return Ok(Err(refusal));
    }
    if let Err(refusal) = still_open(&found, at) {
        return Ok(Err(refusal));
    }
    table::set_state(db, id, DemandState::Withdrawn, at)?;
    Ok(ok(id))
}

fn own(found: &Demand, actor: &Actor, what: &str) -> Result<(), Refusal> {
    if actor.role == Role::Admin || actor.id == found.buyer.as_str() {
        return Ok(());
    }
    Err(Refusal::Forbidden(format!(
        "demand {} is {}'s: only its buyer may {what} it",
        found.id, found.buyer
    )))
}

fn still_open(found: &Demand, at: Timestamp) -> Result<(), Refusal> {
    match found.state {
        DemandState::Open if at < found.deadline => Ok(()),
        DemandState::Open | DemandState::Expired => Err(Refusal::IllegalTransition(format!(
            "demand {} reached its deadline {}",
            found.id, found.deadline
        ))),
        state => Err(Refusal::IllegalTransition(format!(
            "demand {} is {}",
            found.id,
            state.as_str()
        ))),
    }
}

fn listed(db: &rusqlite::Connection, id: &ContentId) -> rusqlite::Result<Result<(), Refusal>> {
    Ok(
        match listings::current(db, &id.to_string())?.map(|c| c.state) {
            None => Err(Refusal::NotFound(format!("no listing {id}"))),
            Some(ListingState::Listed | ListingState::Recognised) => Ok(()),
            Some(state) => Err(Refusal::ListingNotListed(format!(
                "listing {id} is {}: only a listed or recognised listing matches a demand",
                state.as_str()
            ))),
        },
    )
}

fn price_text(l: &Listing) -> String {
    let model = match l.pricing.model {
        PricingModel::Free => return "free".into(),
        PricingModel::Negotiated => return "negotiated".into(),
        PricingModel::Fixed => "fixed",
        PricingModel::PerCall => "per call",
        PricingModel::Subscription => "per subscription period",
    };
    format!(
        "{} {} {model}",
        l.pricing.amount.as_deref().unwrap_or("?"),
        l.pricing.currency.as_deref().unwrap_or("?")
    )
}

/// What a match is scored against: a demand of this zone ([`Demand::need`]) or of another
/// (`demands_across::ExternalDemand::need`).
#[derive(Debug, Clone)]
pub struct Need<'a> {
    /// How it is named in reasons: `demand 12`, `demand zhengzhou/zhongyuan:12`.
    pub name: String,
    /// The one scenario.
    pub scenario: &'a str,
    /// Delivery modes it can accept.
    pub delivery_modes: &'a [DeliveryMode],
    /// Its budget.
    pub budget: &'a Budget,
    /// Proposals of brokers and operators (none for another zone's demand).
    pub proposals: &'a [Proposal],
}

impl Demand {
    /// What its matches are scored against.
    pub fn need(&self) -> Need<'_> {
        Need {
            name: format!("demand {}", self.id),
            scenario: &self.scenario,
            delivery_modes: &self.delivery_modes,
            budget: &self.budget,
            proposals: &self.proposals,
        }
    }
}

/// The scenario of `listing` an application for `wanted` goes on with: `wanted` itself when
/// the listing offers it, else the first it offers that contains it or is contained in it.
pub fn offered_scenario<'l>(listing: &'l Listing, wanted: &str) -> Option<&'l str> {
    let offered = || listing.scenarios.iter().map(String::as_str);
    offered()
        .find(|s| *s == wanted)
        .or_else(|| offered().find(|s| s.contains(wanted) || wanted.contains(s)))
}

/// How `listing` matches `demand`, or why it cannot serve it (no delivery mode the buyer accepts
/// and the listing's rules allow, neither the scenario nor a close one, or a fixed price over
/// the budget).
///
/// # Errors
/// Why it does not match.
pub fn score(demand: &Need<'_>, id: ContentId, listing: &Listing) -> Result<Match, String> {
    let mut reasons = Vec::new();
    let mut score = 0;
    let restricted = matches!(
        listing.classification,
        Classification::Important | Classification::Core
    ) || listing.contains_personal_info;
    let modes: Vec<DeliveryMode> = listing
        .delivery_modes
        .iter()
        .copied()
        .filter(|m| demand.delivery_modes.contains(m) && (!restricted || m.is_in_domain()))
        .collect();
    if modes.is_empty() {
        let offered: Vec<String> = listing.delivery_modes.iter().map(enum_name).collect();
        return Err(format!(
            "listing {id} delivers by {}{}: none of them is a mode {} accepts",
            offered.join(", "),
            if restricted {
                " (its data stays in its domain: in-domain modes only)"
            } else {
                ""
            },
            demand.name
        ));
    }
    score += 20;
    let names: Vec<String> = modes.iter().map(enum_name).collect();
    reasons.push(format!(
        "delivers by {} as the buyer accepts",
        names.join(", ")
    ));
    if restricted {
        reasons.push("its data stays in its domain (数据不出域): in-domain delivery only".into());
    }
    match offered_scenario(listing, demand.scenario) {
        Some(s) if s == demand.scenario => {
            score += 40;
            reasons.push(format!("offers the scenario {s}"));
        }
        Some(s) => {
            score += 20;
            reasons.push(format!("offers the close scenario {s}"));
        }
        None => {
            // Not a match: the application the buyer would go on to send would be refused.
            return Err(format!(
                "listing {id} does not offer the scenario {} nor a close one: the application \
                 that follows would be refused",
                demand.scenario
            ));
        }
    }
    let budget_max = Dec::parse(&demand.budget.max, 4, false).unwrap_or(Dec::ZERO);
    let same_currency =
        listing.pricing.currency.as_deref() == Some(demand.budget.currency.as_str());
    let amount = listing
        .pricing
        .amount
        .as_deref()
        .and_then(|a| Dec::parse(a, 4, false).ok());
    match (listing.pricing.model, amount) {
        (PricingModel::Free, _) => {
            score += 25;
            reasons.push("free of charge".into());
        }
        (PricingModel::Fixed, Some(a)) if same_currency => {
            if a > budget_max {
                return Err(format!(
                    "listing {id}'s fixed price {} {} is over {}'s budget of {}",
                    a.money(),
                    demand.budget.currency,
                    demand.name,
                    budget_max.money()
                ));
            }
            score += 25;
            reasons.push(format!(
                "fixed price {} {} within the budget of {}",
                a.money(),
                demand.budget.currency,
                budget_max.money()
            ));
        }
        (PricingModel::PerCall | PricingModel::Subscription, Some(a)) if same_currency => {
            score += 15;
            reasons.push(format!(
                "priced {} {} {}: the total depends on use",
                a.money(),
                demand.budget.currency,
                if listing.pricing.model == PricingModel::PerCall {
                    "per call"
                } else {
                    "per period"
                }
            ));
        }
        (PricingModel::Negotiated, _) => {
            score += 10;
            reasons.push("price negotiated case by case".into());
        }
        _ => reasons.push(format!(
            "priced {}: not comparable with the budget",
            price_text(listing)
        )),
    }
    if matches!(
        listing.classification,
        Classification::Public | Classification::General
    ) {
        score += 5;
        reasons.push(format!(
            "{} data",
            if listing.classification == Classification::Public {
                "public"
            } else {
                "general"
            }
        ));
    }
    let proposed_by: Vec<String> = demand
        .proposals
        .iter()
        .filter(|p| p.listing_id == id)
        .map(|p| p.proposed_by.clone())
        .collect();
    if !proposed_by.is_empty() {
        score += 10;
        reasons.push(format!("proposed by {}", proposed_by.join(", ")));
    }
    Ok(Match {
        listing_id: id,
        title: listing.title.clone(),
        origin: listing.origin.to_string(),
        price: price_text(listing),
        delivery_modes: modes,
        score,
        reasons,
        proposed_by,
    })
}

/// The matches of `demand` among `candidates` (listed or recognised listings), best first (then
/// the most recently held), at most [`MAX_MATCHES`].
pub fn matches(demand: &Need<'_>, candidates: &[(ContentId, Listing)]) -> Vec<Match> {
    let mut found: Vec<(usize, Match)> = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, (id, l))| score(demand, *id, l).ok().map(|m| (i, m)))
        .collect();
    found.sort_by(|(ia, a), (ib, b)| b.score.cmp(&a.score).then(ia.cmp(ib)));
    found.truncate(MAX_MATCHES);
    found.into_iter().map(|(_, m)| m).collect()
}

/// A demand of `buyer` as the tests post it: credit, scenario `s`, by API, at most 2 CNY, a day
/// to run, kept in its zone.
#[cfg(test)]
pub(crate) fn sample(buyer: &str) -> NewDemand {
    NewDemand {
        buyer: buyer.parse().expect("party"),
        title: "t".into(),
        description: "d".into(),
        category: "credit".into(),
        scenario: "s".into(),
        delivery_modes: vec![DeliveryMode::Api],
        budget: Budget {
            min: None,
            max: "2".into(),
            currency: "CNY".into(),
        },
        deadline: Timestamp(DAY_MS),
        share: Share::Exchange,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(modes: &[DeliveryMode], max: &str) -> Demand {
        Demand {
            id: 1,
            buyer: "buyer-1".parse().expect("party"),
            broker: None,
            title: "企业信用数据".into(),
            description: "用于贷前审查".into(),
            category: "credit".into(),
            scenario: "企业贷款授信审查".into(),
            delivery_modes: modes.to_vec(),
            budget: Budget {
                min: None,
                max: max.into(),
                currency: "CNY".into(),
            },
            deadline: Timestamp(10),
            state: DemandState::Open,
            posted_at: Timestamp(1),
            accepted: None,
            proposals: vec![],
            share: Share::Exchange,
        }
    }

    fn listing(fixed: Option<&str>) -> Listing {
        let mut l = Listing::first_version(
            xchg_protocol::vectors::credit_draft(),
            "xuchang/yuzhou".parse().expect("zone"),
            Timestamp(1),
        );
        if let Some(a) = fixed {
            l.pricing.model = PricingModel::Fixed;
            l.pricing.amount = Some(a.into());
        }
        l
    }

    #[test]
    fn a_match_needs_a_mode_the_buyer_accepts_and_a_fixed_price_within_budget() {
        use DeliveryMode::{Api, File, Sandbox, Verification};
        let id = ContentId::of(b"l");
        // The credit draft offers verification and api, scenario 企业贷款授信审查, per call.
        let m = score(&demand(&[Api, File], "1000").need(), id, &listing(None)).expect("a match");
        assert_eq!(m.score, 20 + 40 + 15 + 5);
        assert_eq!(m.delivery_modes, [Api]);
        assert!(m.reasons[0].contains("api"), "{:?}", m.reasons);
        assert!(score(&demand(&[File, Sandbox], "1000").need(), id, &listing(None)).is_err());
        assert!(score(&demand(&[Api], "99.99").need(), id, &listing(Some("100"))).is_err());
        let within =
            score(&demand(&[Api], "100").need(), id, &listing(Some("100"))).expect("within");
        assert!(
            within
                .reasons
                .iter()
                .any(|r| r.contains("within the budget"))
        );
        // Important data: only in-domain modes count.
        let mut important = listing(None);
        important.classification = Classification::Important;
        assert!(score(&demand(&[Api], "1").need(), id, &important).is_err());
        let m =
            score(&demand(&[Api, Verification], "1").need(), id, &important).expect("in-domain");
        assert_eq!(
            (m.delivery_modes.as_slice(), m.score),
            ([Verification].as_slice(), 75)
        );
        // A broker's proposal adds to the score and says who.
        let mut d = demand(&[Api], "1000");
        d.proposals.push(Proposal {
            id: 1,
            listing_id: id,
            proposed_by: "broker-1".into(),
            role: "buyer".into(),
            note: None,
            at: Timestamp(2),
        });
        let m = score(&d.need(), id, &listing(None)).expect("proposed");
        assert_eq!(
            (m.score, m.proposed_by.as_slice()),
            (90, ["broker-1".to_owned()].as_slice())
        );
        // A listing offering neither the scenario nor a close one is no match: the application
        // that follows would be refused.
        let mut unrelated = listing(None);
        unrelated.scenarios = vec!["其他".into()];
        let why = score(&d.need(), id, &unrelated).expect_err("no scenario");
        assert!(why.contains("does not offer the scenario"), "{why}");
        // Ranked best first: a close scenario after the scenario itself.
        let mut close = listing(None);
        close.scenarios = vec!["小微企业贷款授信审查".into()];
        let (close_id, unrelated_id) = (ContentId::of(b"c"), ContentId::of(b"o"));
        let ranked = matches(
            &d.need(),
            &[
                (close_id, close),
                (unrelated_id, unrelated),
                (id, listing(None)),
            ],
        );
        let order: Vec<ContentId> = ranked.iter().map(|m| m.listing_id).collect();
        assert_eq!(order, [id, close_id]);
    }

    fn post_as(buyer: &str, actor: &str) -> crate::catalog::CatalogCommand {
        crate::catalog::CatalogCommand::PostDemand {
            demand: Box::new(sample(buyer)),
            at: Timestamp(1),
            actor: Actor {
                id: actor.into(),
                role: Role::Buyer,
            },
        }
    }

    /// A buyer token bound to no party (one an older xchg created) posts no demand, in anyone's
    /// name: the leader's check of a forwarded command and the state machine both refuse it,
    /// which writes no demand (it would count against that buyer's open demands).
    #[test]
    fn a_demand_is_posted_only_by_its_buyers_own_token_or_a_broker() {
        let mut cmd = post_as("xuchang-bank", "token:1234abcd");
        let refused = cmd.authorise(
            Actor {
                id: "token:1234abcd".into(),
                role: Role::Buyer,
            },
            None,
        );
        assert_eq!(refused.map_err(|r| r.code()), Err("forbidden"));
        let mut own = post_as("xuchang-bank", "xuchang-bank");
        let caller = Actor {
            id: "xuchang-bank".into(),
            role: Role::Buyer,
        };
        assert!(own.authorise(caller, Some("xuchang-bank")).is_ok());

        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::catalog::test_db(dir.path());
        let zone = crate::catalog::test_zone();
        let responses = crate::sqlite::in_transaction(&db, || {
            let mut chain = crate::audit::Chain::load(&db)?;
            let responses = [
                post_as("xuchang-bank", "token:1234abcd"),
                post_as("xuchang-bank", "xuchang-bank"),
            ]
            .iter()
            .zip(10..)
            .map(|(c, index)| crate::catalog::apply::apply(&db, &mut chain, &zone, index, c))
            .collect::<rusqlite::Result<Vec<_>>>()?;
            chain.flush(&db)?;
            Ok(responses)
        })
        .expect("apply");
        let codes: Vec<_> = responses
            .iter()
            .map(|r| r.as_ref().map(|_| ()).map_err(Refusal::code))
            .collect();
        // The buyer's own token passes the check and meets the next: this test zone has not
        // admitted it.
        assert_eq!(codes, [Err("forbidden"), Err("party_not_admitted")]);
        let held: i64 = db
            .query_row("SELECT count(*) FROM demands", [], |r| r.get(0))
            .expect("count");
        assert_eq!(held, 0, "the refused demands wrote nothing");
    }

    #[test]
    fn a_demand_states_its_needs_within_bounds() {
        let d = |f: &dyn Fn(&mut NewDemand)| {
            let mut n = sample("buyer-1");
            n.budget.min = Some("1".into());
            f(&mut n);
            shape(&n, Timestamp(1)).err().map(|e| e.0)
        };
        assert_eq!(d(&|_| {}), None);
        assert_eq!(d(&|n| n.title = " ".into()), Some("title"));
        assert_eq!(d(&|n| n.category = "Credit".into()), Some("category"));
        assert_eq!(d(&|n| n.delivery_modes.clear()), Some("delivery_modes"));
        assert_eq!(
            d(&|n| n.delivery_modes.push(DeliveryMode::Api)),
            Some("delivery_modes")
        );
        assert_eq!(d(&|n| n.budget.min = Some("3".into())), Some("budget.min"));
        assert_eq!(d(&|n| n.budget.max = "1.00001".into()), Some("budget.max"));
        assert_eq!(
            d(&|n| n.budget.currency = "cny".into()),
            Some("budget.currency")
        );
        assert_eq!(d(&|n| n.deadline = Timestamp(1)), Some("deadline"));
        assert_eq!(
            d(&|n| n.deadline = Timestamp(MAX_DEADLINE_DAYS * DAY_MS + 2)),
            Some("deadline")
        );
    }
}
