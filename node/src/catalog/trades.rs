//! Trades: order → contract → delivery → settlement (issue #16).
//!
//! A buyer places an order from one of its active authorisations, for a quantity under the
//! listing's pricing model; the order records the contract (terms, parties, authorisation,
//! scenario, delivery mode, unit price, total, the listing's content id and certificate
//! number). Its provider confirms it, records deliveries (each in the authorised delivery
//! mode, the calls counted against the order and the authorisation's usage limit), and an
//! operator settles it under the zone's fee schedule. A settlement is never edited: the buyer
//! or the provider disputes it with a reason, and an operator reverses it by a new record.
//!
//! States: `placed → confirmed → delivering → delivered → settled → disputed → reversed`
//! (`delivering` only for a per-call order partly delivered; a settlement is made from
//! `delivering` or `delivered`). No money moves: these are the records of record.
//!
//! Money is [`Money`]; settlement amounts are rounded to the fen half up ([`settle_amounts`]).
//! Every judgement is made by the command's own time; the SQL is in [`super::tables::trades`].

use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;
use xchg_protocol::{DeliveryMode, PricingModel, Timestamp};

use super::money::{Money, WHOLE_BP};
use super::tables::trades as table;
use super::tables::{authorizations, certificates, enum_name, listings};
use super::{Actor, Applied, CommandResponse, Refusal, applications, parties};

/// The most units one order may be placed for (calls, periods).
pub const MAX_QUANTITY: u64 = 1_000_000_000;
/// The most calls one delivery may record.
pub const MAX_DELIVERY_CALLS: u64 = applications::MAX_CALLS;
/// The most file manifest hashes one delivery may record.
pub const MAX_MANIFEST_HASHES: usize = 100;
/// The most model output ids one delivery may record.
pub const MAX_MODEL_OUTPUTS: usize = 100;
/// The longest model output id, in characters.
pub const MAX_OUTPUT_ID_CHARS: usize = 128;
/// The longest note of a delivery or fee schedule, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;
/// The longest reason of a dispute or reversal, in characters.
pub const MAX_REASON_CHARS: usize = 2000;

/// A zone's fee schedule, as the admin sets it: the platform's fee on each settlement and the
/// shares of the provider's revenue (what is left after the fee) that go to the operator and
/// the broker. Rates are whole basis points (1 bp = 0.01%).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeeSchedule {
    /// The platform's fee, in basis points of the settled amount: 0 to 10000.
    #[schema(maximum = 10000)]
    pub platform_fee_bp: u32,
    /// The operator's share of the provider's revenue, in basis points: 0 to 10000, and with
    /// `broker_share_bp` at most 10000.
    #[schema(maximum = 10000)]
    pub operator_share_bp: u32,
    /// The broker's share of the provider's revenue when the order was placed through a
    /// broker, in basis points: 0 to 10000, and with `operator_share_bp` at most 10000.
    #[schema(maximum = 10000)]
    pub broker_share_bp: u32,
    /// The least fee of a settlement in CNY (a settlement in another currency has none), a
    /// decimal string of whole fen: up to 15 integer digits and up to 2 decimals (`"1.00"`).
    #[schema(pattern = r"^(0|[1-9][0-9]{0,14})(\.[0-9]{1,2})?$")]
    pub minimum_fee: String,
    /// Why it was set, for people: up to 2000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl FeeSchedule {
    /// The schedule in force before an admin sets one: no fee, no shares (version 0).
    pub fn none() -> Self {
        FeeSchedule {
            platform_fee_bp: 0,
            operator_share_bp: 0,
            broker_share_bp: 0,
            minimum_fee: "0".into(),
            note: None,
        }
    }

    /// The bounds of a schedule; its minimum fee.
    ///
    /// # Errors
    /// The field and what is wrong with it.
    pub fn check(&self) -> Result<Money, (&'static str, String)> {
        for (field, bp) in [
            ("platform_fee_bp", self.platform_fee_bp),
            ("operator_share_bp", self.operator_share_bp),
            ("broker_share_bp", self.broker_share_bp),
        ] {
            if bp > WHOLE_BP {
                return Err((
                    field,
                    format!("{bp} is not 0 to {WHOLE_BP} basis points (a rate of 0 to 1)"),
                ));
            }
        }
        let shares = self.operator_share_bp + self.broker_share_bp;
        if shares > WHOLE_BP {
            return Err((
                "broker_share_bp",
                format!(
                    "the operator's and the broker's shares come to {shares} basis points; \
                     together they are at most {WHOLE_BP} (all of the provider's revenue)"
                ),
            ));
        }
        let minimum = Money::parse(&self.minimum_fee).map_err(|e| ("minimum_fee", e))?;
        if !minimum.is_fen() {
            return Err((
                "minimum_fee",
                format!(
                    "{} is not a whole number of fen (at most 2 decimals)",
                    self.minimum_fee
                ),
            ));
        }
        if let Some(note) = &self.note {
            crate::catalog::registrations::reason_rule(note, false).map_err(|e| ("note", e))?;
            if note.chars().count() > MAX_NOTE_CHARS {
                return Err(("note", format!("longer than {MAX_NOTE_CHARS} characters")));
            }
        }
        Ok(minimum)
    }
}

/// A fee schedule as recorded: its version, who set it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FeeScheduleView {
    /// Its version: 1 for the first an admin set, one more for each after; 0 for the schedule
    /// in force before any (no fee, no shares).
    pub version: u64,
    /// The rates.
    #[serde(flatten)]
    pub schedule: FeeSchedule,
    /// Who set it (absent for version 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_by: Option<String>,
    /// When (absent for version 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_at: Option<Timestamp>,
}

impl FeeScheduleView {
    /// Version 0: no fee, no shares.
    pub fn initial() -> Self {
        FeeScheduleView {
            version: 0,
            schedule: FeeSchedule::none(),
            set_by: None,
            set_at: None,
        }
    }
}

/// What a settlement comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amounts {
    /// The settled amount: quantity × unit price, rounded to the fen half up.
    pub amount: Money,
    /// The platform's fee: `platform_fee_bp` of the amount rounded half up, at least the
    /// minimum fee, at most the amount.
    pub fees: Money,
    /// The provider's revenue less the shares.
    pub provider: Money,
    /// The operator's share of the provider's revenue.
    pub operator: Money,
    /// The broker's share of the provider's revenue (none without a broker).
    pub broker: Money,
}

/// The settlement of `gross` (quantity × unit price, exact) under `schedule` with
/// `minimum` as its minimum fee (none when the order is not in CNY), with or without a broker.
///
/// The amount is `gross` rounded to the fen half up; the fee is `platform_fee_bp` of the
/// amount rounded half up, raised to the minimum and capped at the amount; the provider's
/// revenue is the amount less the fee, of which the operator's and the broker's shares are
/// taken (each rounded half up; if both rounded up would pass the revenue, the broker's is
/// what is left) and the provider keeps the rest. So `amount = fees + provider + operator +
/// broker` exactly.
pub fn settle_amounts(
    gross: Money,
    schedule: &FeeSchedule,
    minimum: Money,
    broker: bool,
) -> Amounts {
    let amount = gross.to_fen();
    let fees = amount
        .share_bp(schedule.platform_fee_bp)
        .max(minimum)
        .min(amount);
    let revenue = amount.minus(fees).unwrap_or_default();
    let operator = revenue.share_bp(schedule.operator_share_bp).min(revenue);
    let left = revenue.minus(operator).unwrap_or_default();
    let broker = if broker {
        revenue.share_bp(schedule.broker_share_bp).min(left)
    } else {
        Money::ZERO
    };
    Amounts {
        amount,
        fees,
        provider: left.minus(broker).unwrap_or_default(),
        operator,
        broker,
    }
}

/// What a buyer orders: `quantity` units under one of its authorisations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// An active authorisation of the caller's party.
    pub authorization_id: u64,
    /// Units of the listing's pricing model, 1 to 1,000,000,000: calls (`per_call`), periods
    /// (`subscription`), 1 (`fixed`); any for `free` and `negotiated`.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub quantity: u64,
    /// The agreed unit price, a decimal string (up to 15 integer digits, up to 4 decimals):
    /// required for a `negotiated` price, refused for every other model (the listing's
    /// pricing sets it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^(0|[1-9][0-9]{0,14})(\.[0-9]{1,4})?$")]
    pub unit_price: Option<String>,
}

/// What a provider delivered for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryRequest {
    /// The delivery mode: the one the authorisation grants.
    pub mode: DeliveryMode,
    /// Calls served (API, sandbox, privacy computing, verification, model output): 1 to
    /// 1,000,000; required for a per-call order, counted against the order's quantity and
    /// the authorisation's usage limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub calls: Option<u64>,
    /// For `file` delivery only, and required there: the SHA-256 of each file handed over, 64
    /// lowercase hex digits each, 1 to 100, no repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 100, min_items = 1)]
    pub manifest_hashes: Option<Vec<String>>,
    /// For `model_output` delivery only: the ids of the outputs handed over, 1 to 100, each 1
    /// to 128 characters of `A-Z a-z 0-9 . _ : -`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 100, min_items = 1)]
    pub model_output_ids: Option<Vec<String>>,
    /// A note, up to 2000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Whether `mode` is counted in calls.
fn counts_calls(mode: DeliveryMode) -> bool {
    mode != DeliveryMode::File
}

/// The shape rules of a delivery, judged before its order.
///
/// # Errors
/// The field and what is wrong with it.
pub fn delivery_shape(d: &DeliveryRequest) -> Result<(), (&'static str, String)> {
    let mode = enum_name(&d.mode);
    if let Some(calls) = d.calls {
        if !counts_calls(d.mode) {
            return Err((
                "calls",
                "a file delivery is recorded by its manifest hashes, not calls".into(),
            ));
        }
        if !(1..=MAX_DELIVERY_CALLS).contains(&calls) {
            return Err(("calls", format!("{calls} is not 1 to {MAX_DELIVERY_CALLS}")));
        }
    }
    match (&d.manifest_hashes, d.mode) {
        (Some(_), m) if m != DeliveryMode::File => {
            return Err((
                "manifest_hashes",
                format!("file manifests are recorded for file delivery only, not {mode}"),
            ));
        }
        (None, DeliveryMode::File) => {
            return Err((
                "manifest_hashes",
                "a file delivery records the SHA-256 of each file handed over".into(),
            ));
        }
        (Some(hashes), _) => {
            if hashes.is_empty() || hashes.len() > MAX_MANIFEST_HASHES {
                return Err((
                    "manifest_hashes",
                    format!("{} hashes; 1 to {MAX_MANIFEST_HASHES}", hashes.len()),
                ));
            }
            for h in hashes {
                if h.len() != 64 || !h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err((
                        "manifest_hashes",
                        format!("{h:.80?} is not a SHA-256: 64 lowercase hex digits"),
                    ));
                }
            }
            if !distinct(hashes) {
                return Err(("manifest_hashes", "a hash is repeated".into()));
            }
        }
        (None, _) => {}
    }
    if let Some(ids) = &d.model_output_ids {
        if d.mode != DeliveryMode::ModelOutput {
            return Err((
                "model_output_ids",
                format!("model output ids are recorded for model_output delivery only, not {mode}"),
            ));
        }
        if ids.is_empty() || ids.len() > MAX_MODEL_OUTPUTS {
            return Err((
                "model_output_ids",
                format!("{} ids; 1 to {MAX_MODEL_OUTPUTS}", ids.len()),
            ));
        }
        let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        for id in ids {
            if id.is_empty() || id.chars().count() > MAX_OUTPUT_ID_CHARS || !id.chars().all(fine) {
                return Err((
                    "model_output_ids",
                    format!(
                        "{id:.80?} is not 1 to {MAX_OUTPUT_ID_CHARS} characters of A-Z a-z 0-9 \
                         . _ : -"
                    ),
                ));
            }
        }
        if !distinct(ids) {
            return Err(("model_output_ids", "an id is repeated".into()));
        }
    }
    if d.calls.is_none() && d.manifest_hashes.is_none() && d.model_output_ids.is_none() {
        return Err((
            "calls",
            format!(
                "a delivery records what was delivered: calls for {mode}{}",
                if d.mode == DeliveryMode::ModelOutput {
                    " or model_output_ids"
                } else {
                    ""
                }
            ),
        ));
    }
    if let Some(note) = &d.note {
        if note.chars().count() > MAX_NOTE_CHARS {
            return Err(("note", format!("longer than {MAX_NOTE_CHARS} characters")));
        }
        crate::catalog::registrations::reason_rule(note, false).map_err(|e| ("note", e))?;
    }
    Ok(())
}

fn distinct(items: &[String]) -> bool {
    let mut sorted: Vec<&String> = items.iter().collect();
    sorted.sort_unstable();
    sorted.windows(2).all(|w| w[0] != w[1])
}

/// An order's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Placed by the buyer (its confirmation); awaiting the provider's.
    Placed,
    /// Confirmed by the provider: it may be delivered.
    Confirmed,
    /// A per-call order delivered in part.
    Delivering,
    /// Delivered: every call of a per-call order, or any delivery of another.
    Delivered,
    /// Settled by an operator.
    Settled,
    /// Its settlement is disputed by the buyer or the provider.
    Disputed,
    /// Its settlement was reversed by an operator (a new record).
    Reversed,
}

impl OrderState {
    /// Every state.
    pub const ALL: [OrderState; 7] = [
        OrderState::Placed,
        OrderState::Confirmed,
        OrderState::Delivering,
        OrderState::Delivered,
        OrderState::Settled,
        OrderState::Disputed,
        OrderState::Reversed,
    ];

    /// The stored and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Placed => "placed",
            OrderState::Confirmed => "confirmed",
            OrderState::Delivering => "delivering",
            OrderState::Delivered => "delivered",
            OrderState::Settled => "settled",
            OrderState::Disputed => "disputed",
            OrderState::Reversed => "reversed",
        }
    }

    /// Parses a stored or query name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// The price an order is placed at under `model` (the listing's `amount`, if any): its unit
/// price and total.
///
/// # Errors
/// [`Refusal::Invalid`] naming the rule.
pub fn price(
    model: PricingModel,
    amount: Option<&str>,
    quantity: u64,
    unit_price: Option<&str>,
) -> Result<(Money, Money), Refusal> {
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        return Err(Refusal::Invalid(format!(
            "quantity: {quantity} is not 1 to {MAX_QUANTITY}"
        )));
    }
    let unit = match (model, unit_price) {
        (PricingModel::Negotiated, None) => {
            return Err(Refusal::Invalid(
                "unit_price: the listing's price is negotiated: the order states the unit price \
                 agreed"
                    .into(),
            ));
        }
        (PricingModel::Negotiated, Some(p)) => {
            Money::parse(p).map_err(|e| Refusal::Invalid(format!("unit_price: {e}")))?
        }
        (_, Some(_)) => {
            return Err(Refusal::Invalid(
                "unit_price: the listing's pricing model sets the price; an order states one \
                 only for a negotiated price"
                    .into(),
            ));
        }
        (PricingModel::Free, None) => Money::ZERO,
        (_, None) => amount
            .ok_or_else(|| Refusal::Invalid("the listing states no amount".into()))
            .and_then(|a| Money::parse(a).map_err(Refusal::Invalid))?,
    };
    if model == PricingModel::Fixed && quantity != 1 {
        return Err(Refusal::Invalid(format!(
            "quantity: a fixed price buys the product once: quantity 1, not {quantity}"
        )));
    }
    // The total rounded to the fen (what a settlement of it comes to) must fit too: a total
    // just under the largest amount can round up past it.
    let total = unit
        .times(quantity)
        .filter(|t| t.to_fen() <= super::money::MAX)
        .ok_or_else(|| {
            Refusal::Invalid(format!(
                "quantity: {quantity} × {unit}, rounded to the fen, passes the largest amount \
                 kept (15 integer digits)"
            ))
        })?;
    Ok((unit, total))
}

fn ok(object_id: u64) -> CommandResponse {
    Ok(Applied {
        object_id: object_id.to_string(),
        version: None,
        state: None,
        used: None,
    })
}

/// Applies an admin's new fee schedule: the next version.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn set_fee_schedule(
    db: &rusqlite::Connection,
    raft_index: u64,
    schedule: &FeeSchedule,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    if let Err((field, why)) = schedule.check() {
        return Ok(Err(Refusal::Invalid(format!("{field}: {why}"))));
    }
    let version = table::insert_fee_schedule(db, schedule, at, &actor.id, raft_index)?;
    Ok(ok(version))
}

/// Applies an order of `buyer` (the caller's party).
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn place(
    db: &rusqlite::Connection,
    raft_index: u64,
    request: &OrderRequest,
    buyer: &str,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    if let Some(refusal) = parties::recorded_refusal(db, buyer)? {
        return Ok(Err(refusal));
    }
    let id = request.authorization_id;
    let Some(found) = authorizations::judged(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!("no authorization {id}"))));
    };
    if found.buyer != buyer {
        return Ok(Err(Refusal::Forbidden(format!(
            "authorization {id} is {}'s: a buyer orders only under its own authorisations",
            found.buyer
        ))));
    }
    if let Some((origin, _)) = authorizations::origin_of(db, id)? {
        return Ok(Err(Refusal::Forbidden(format!(
            "authorization {id} was granted by {origin} of another exchange: its usage is \
             counted there, so it is ordered from there"
        ))));
    }
    let Some(current) = listings::current(db, &found.listing_id)? else {
        return Ok(Err(Refusal::ListingNotListed(format!(
            "the listing of authorization {id} is no longer held: nothing is ordered under it"
        ))));
    };
    if let Err(refusal) = applications::judge_use(&found.grant, Some(current.state), 0, at) {
        return Ok(Err(refusal));
    }
    let pricing = &current.listing.pricing;
    let (unit, total) = match price(
        pricing.model,
        pricing.amount.as_deref(),
        request.quantity,
        request.unit_price.as_deref(),
    ) {
        Ok(p) => p,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let grant = &found.grant;
    if pricing.model == PricingModel::PerCall {
        let left = grant.usage_limit.saturating_sub(grant.used);
        if request.quantity > left {
            return Ok(Err(Refusal::UsageLimitExceeded(format!(
                "authorization {id} has {left} of its {} calls left: an order of {} calls \
                 would pass its limit",
                grant.usage_limit, request.quantity
            ))));
        }
    }
    let Some(terms) = authorizations::granted(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!("no authorization {id}"))));
    };
    let content_id = listings::owner(db, &found.listing_id)?
        .map(|o| o.content_id)
        .unwrap_or_else(|| found.listing_id.clone());
    let certificate = certificates::valid_number_for(db, &found.listing_id)?;
    let scenario = authorizations::scenario_of(db, id)?.unwrap_or_default();
    let order = table::NewOrder {
        authorization_id: id,
        listing_id: &found.listing_id,
        content_id: &content_id,
        certificate_number: certificate.as_deref(),
        provider: &found.provider,
        buyer,
        broker: None,
        scenario: &scenario,
        delivery_mode: terms.delivery_mode,
        pricing_model: &enum_name(&pricing.model),
        currency: pricing.currency.as_deref().unwrap_or("CNY"),
        quantity: request.quantity,
        unit_price: &unit.to_string(),
        total: &total.to_string(),
        at,
        by: &actor.id,
        raft_index,
    };
    Ok(ok(table::insert_order(db, &order)?))
}

/// Records `broker` on order `order_id`, which it placed in its buyer's name under an
/// entrustment (`apply::entrusted` has checked it): its settlement gives the broker its share.
///
/// # Errors
/// Only storage errors.
pub fn note_broker(
    db: &rusqlite::Connection,
    order_id: &str,
    broker: &str,
) -> rusqlite::Result<()> {
    match order_id.parse::<u64>() {
        Ok(id) => table::set_broker(db, id, broker),
        Err(_) => Ok(()),
    }
}

/// Whether `actor` is the party of `side` (`buyer` or `provider`) of order `id`, or an admin.
fn is_party(actor: &Actor, role: Role, party: &str) -> bool {
    actor.role == Role::Admin || (actor.role == role && actor.id == party)
}

/// Applies a provider's confirmation of order `id`: `placed → confirmed`.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn confirm(
    db: &rusqlite::Connection,
    id: u64,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let Some(order) = table::order_row(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!("no order {id}"))));
    };
    if !is_party(actor, Role::Provider, &order.provider) {
        return Ok(Err(Refusal::Forbidden(format!(
            "order {id} is confirmed by its provider {}, not by {}",
            order.provider, actor.id
        ))));
    }
    if order.state != OrderState::Placed {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "order {id} is {}: only a placed order is confirmed",
            order.state.as_str()
        ))));
    }
    if let Err(refusal) = still_usable(db, order.authorization_id, 0, at)? {
        return Ok(Err(refusal));
    }
    table::confirm(db, id, at, &actor.id)?;
    Ok(ok(id))
}

/// Whether authorisation `id` allows `calls` more at `at`; the count after them.
fn still_usable(
    db: &rusqlite::Connection,
    id: u64,
    calls: u64,
    at: Timestamp,
) -> rusqlite::Result<Result<u64, Refusal>> {
    let Some(found) = authorizations::judged(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!("no authorization {id}"))));
    };
    let listed = listings::current(db, &found.listing_id)?.map(|c| c.state);
    if let Some(refusal) = parties::recorded_refusal(db, &found.buyer)? {
        return Ok(Err(refusal));
    }
    Ok(applications::judge_use(&found.grant, listed, calls, at))
}

/// Applies a provider's delivery for order `id`.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn deliver(
    db: &rusqlite::Connection,
    raft_index: u64,
    id: u64,
    delivery: &DeliveryRequest,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let Some(order) = table::order_row(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!("no order {id}"))));
    };
    if !is_party(actor, Role::Provider, &order.provider) {
        return Ok(Err(Refusal::Forbidden(format!(
            "order {id} is delivered by its provider {}, not by {}",
            order.provider, actor.id
        ))));
    }
    match order.state {
        OrderState::Confirmed | OrderState::Delivering | OrderState::Delivered => {}
        OrderState::Placed => {
            return Ok(Err(Refusal::IllegalTransition(format!(
                "order {id} is placed: it is delivered once its provider has confirmed it"
            ))));
        }
        s => {
            return Ok(Err(Refusal::IllegalTransition(format!(
                "order {id} is {}: a settled order takes no more deliveries",
                s.as_str()
            ))));
        }
    }
    if let Err((field, why)) = delivery_shape(delivery) {
        return Ok(Err(Refusal::Invalid(format!("{field}: {why}"))));
    }
    let auth = order.authorization_id;
    if delivery.mode != order.delivery_mode {
        return Ok(Err(Refusal::DeliveryModeNotAuthorized(format!(
            "authorization {auth} grants delivery by {} only: order {id} is not delivered by {}",
            enum_name(&order.delivery_mode),
            enum_name(&delivery.mode)
        ))));
    }
    let per_call = order.pricing_model == enum_name(&PricingModel::PerCall);
    let calls = delivery.calls.unwrap_or(0);
    if per_call && calls == 0 {
        return Ok(Err(Refusal::Invalid(
            "calls: a per-call order's delivery counts the calls served".into(),
        )));
    }
    let delivered = order.delivered_calls.saturating_add(calls);
    if per_call && delivered > order.quantity {
        return Ok(Err(Refusal::OrderQuantityExceeded(format!(
            "order {id} is for {} calls and {} are delivered: {calls} more would pass it",
            order.quantity, order.delivered_calls
        ))));
    }
    if calls > 0 {
        match still_usable(db, auth, calls, at)? {
            Ok(used) => authorizations::set_used(db, auth, used)?,
            Err(refusal) => {
                let why = format!("{}: {refusal}", refusal.code());
                authorizations::note_refusal(db, auth, &why)?;
                return Ok(Err(refusal));
            }
        }
    } else if let Err(refusal) = still_usable(db, auth, 0, at)? {
        return Ok(Err(refusal));
    }
    let state = if per_call && delivered < order.quantity {
        OrderState::Delivering
    } else {
        OrderState::Delivered
    };
    let new = table::insert_delivery(db, id, delivery, at, &actor.id, raft_index)?;
    table::delivered(db, id, delivered, state)?;
    Ok(ok(new))
}

/// Applies an operator's settlement of order `id` under the current fee schedule.
///
/// The quantity settled is what was delivered: the calls delivered for a per-call order, the
/// order's quantity for any other once a delivery is recorded.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn settle(
    db: &rusqlite::Connection,
    raft_index: u64,
    id: u64,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let Some(order) = table::order_row(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!("no order {id}"))));
    };
    match order.state {
        OrderState::Delivering | OrderState::Delivered => {}
        OrderState::Placed | OrderState::Confirmed => {
            let why = if order.state == OrderState::Placed {
                "its provider has not confirmed it"
            } else {
                "nothing is delivered yet"
            };
            return Ok(Err(Refusal::IllegalTransition(format!(
                "order {id} is {}: {why}; an order is settled once confirmed and delivered",
                order.state.as_str()
            ))));
        }
        s => {
            return Ok(Err(Refusal::IllegalTransition(format!(
                "order {id} is {}: it is settled once; a disputed settlement is reversed by a \
                 new record",
                s.as_str()
            ))));
        }
    }
    let per_call = order.pricing_model == enum_name(&PricingModel::PerCall);
    let quantity = if per_call {
        order.delivered_calls
    } else {
        order.quantity
    };
    let (Ok(unit), schedule) = (
        Money::parse(&order.unit_price),
        table::current_fee_schedule(db)?,
    ) else {
        return Ok(Err(Refusal::Invalid(format!(
            "order {id} holds no valid unit price"
        ))));
    };
    let Some(gross) = unit.times(quantity) else {
        return Ok(Err(Refusal::Invalid(format!(
            "order {id}: {quantity} × {unit} passes the largest amount kept"
        ))));
    };
    let minimum = if order.currency == "CNY" {
        Money::parse(&schedule.schedule.minimum_fee).unwrap_or_default()
    } else {
        Money::ZERO
    };
    let amounts = settle_amounts(gross, &schedule.schedule, minimum, order.broker.is_some());
    let new = table::insert_settlement(
        db,
        &table::NewSettlement {
            order_id: id,
            reverses: None,
            quantity,
            amounts,
            currency: &order.currency,
            fee_schedule_version: schedule.version,
            reason: None,
            at,
            by: &actor.id,
            raft_index,
        },
    )?;
    table::set_state(db, id, OrderState::Settled)?;
    Ok(ok(new))
}

/// Applies the buyer's or the provider's dispute of order `id`'s settlement.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn dispute(
    db: &rusqlite::Connection,
    raft_index: u64,
    id: u64,
    reason: &str,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let Some(order) = table::order_row(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!("no order {id}"))));
    };
    if !is_party(actor, Role::Buyer, &order.buyer)
        && !is_party(actor, Role::Provider, &order.provider)
    {
        return Ok(Err(Refusal::Forbidden(format!(
            "the settlement of order {id} is disputed by its buyer {} or its provider {}, not \
             by {}",
            order.buyer, order.provider, actor.id
        ))));
    }
    if order.state != OrderState::Settled {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "order {id} is {}: only a settled order's settlement is disputed",
            order.state.as_str()
        ))));
    }
    let Some(settlement) = table::latest_settlement(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!(
            "order {id} has no settlement"
        ))));
    };
    if reason.trim().is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Ok(Err(Refusal::Invalid(format!(
            "reason: 1 to {MAX_REASON_CHARS} characters"
        ))));
    }
    let new = table::insert_dispute(db, id, settlement, reason, at, actor, raft_index)?;
    table::set_state(db, id, OrderState::Disputed)?;
    Ok(ok(new))
}

/// Applies an operator's reversal of order `id`'s disputed settlement: a new record with the
/// same amounts naming the one it reverses, which stays as it was.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn reverse(
    db: &rusqlite::Connection,
    raft_index: u64,
    id: u64,
    reason: &str,
    at: Timestamp,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let Some(order) = table::order_row(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!("no order {id}"))));
    };
    if order.state != OrderState::Disputed {
        return Ok(Err(Refusal::IllegalTransition(format!(
            "order {id} is {}: only a disputed settlement is reversed",
            order.state.as_str()
        ))));
    }
    let Some(first) = table::latest_settlement(db, id)? else {
        return Ok(Err(Refusal::NotFound(format!(
            "order {id} has no settlement"
        ))));
    };
    if reason.trim().is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Ok(Err(Refusal::Invalid(format!(
            "reason: 1 to {MAX_REASON_CHARS} characters"
        ))));
    }
    let new = table::insert_reversal(db, first, reason, at, &actor.id, raft_index)?;
    table::set_state(db, id, OrderState::Reversed)?;
    Ok(ok(new))
}

/// The split of a settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SplitView {
    /// The provider's revenue less the shares (decimal string, 2 decimals).
    pub provider: String,
    /// The operator's share of the provider's revenue.
    pub operator: String,
    /// The broker's share (`0.00` without a broker).
    pub broker: String,
}

/// A settlement record (or the reversal of one) as the API shows it. Never edited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SettlementView {
    /// Its number.
    pub id: u64,
    /// The order.
    pub order_id: u64,
    /// `settlement`, or `reversal` (of the settlement `reverses`).
    pub kind: String,
    /// For a reversal: the settlement it reverses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverses: Option<u64>,
    /// The quantity settled: calls delivered (per call) or the order's quantity.
    pub quantity: u64,
    /// quantity × unit price rounded to the fen half up (decimal string, 2 decimals);
    /// `amount = fees + split.provider + split.operator + split.broker`.
    pub amount: String,
    /// The platform's fee.
    pub fees: String,
    /// The rest, split between provider, operator and broker.
    pub split: SplitView,
    /// ISO 4217 currency.
    pub currency: String,
    /// The fee schedule version applied (0: none set).
    pub fee_schedule_version: u64,
    /// Why (reversals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When.
    pub at: Timestamp,
    /// By whom.
    pub by: String,
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// Its number.
    pub id: u64,
    /// The order.
    pub order_id: u64,
    /// The delivery mode.
    pub mode: DeliveryMode,
    /// Calls served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<u64>,
    /// SHA-256 of each file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_hashes: Option<Vec<String>>,
    /// Model output ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_output_ids: Option<Vec<String>>,
    /// A note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When.
    pub at: Timestamp,
    /// By whom.
    pub by: String,
}

/// A dispute of a settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DisputeView {
    /// Its number.
    pub id: u64,
    /// The order.
    pub order_id: u64,
    /// The settlement disputed.
    pub settlement_id: u64,
    /// Why.
    pub reason: String,
    /// Who: the buyer's or the provider's party.
    pub by: String,
    /// In which role.
    pub role: String,
    /// When.
    pub at: Timestamp,
}

/// An order and the contract it records, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    /// Its number.
    pub id: u64,
    /// Its state.
    pub state: OrderState,
    /// The authorisation it was placed under.
    pub authorization_id: u64,
    /// The listing.
    pub listing_id: String,
    /// The content id of the listing's version when the order was placed.
    pub content_id: String,
    /// The listing's valid registration certificate number when placed, if certified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_number: Option<String>,
    /// The provider's party.
    pub provider: String,
    /// The buyer's party.
    pub buyer: String,
    /// The broker's party, when placed through one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// The authorised scenario.
    pub scenario: String,
    /// The authorised delivery mode.
    pub delivery_mode: DeliveryMode,
    /// The listing's pricing model.
    pub pricing_model: String,
    /// ISO 4217 currency.
    pub currency: String,
    /// Units ordered.
    pub quantity: u64,
    /// Price of one unit (decimal string, 2 to 4 decimals).
    pub unit_price: String,
    /// quantity × unit price, exact.
    pub total: String,
    /// Calls delivered so far.
    pub delivered_calls: u64,
    /// When placed (the buyer's confirmation).
    pub placed_at: Timestamp,
    /// By whom.
    pub placed_by: String,
    /// When the provider confirmed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<Timestamp>,
    /// By whom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed_by: Option<String>,
    /// Its deliveries, oldest first (`GET /v1/orders/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<Vec<DeliveryView>>,
    /// Its settlement records, oldest first: the settlement and any reversal.
    pub settlements: Vec<SettlementView>,
    /// The disputes of its settlement.
    pub disputes: Vec<DisputeView>,
}

/// What a list of orders asks for.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    /// Only in this state.
    pub state: Option<OrderState>,
    /// Only under this authorisation.
    pub authorization_id: Option<u64>,
    /// Only of this buyer (a buyer token sees its own only).
    pub buyer: Option<String>,
    /// Only of this provider (a provider token sees its own only).
    pub provider: Option<String>,
    /// Only with ids below this one.
    pub before: Option<u64>,
}

/// For tests: a whole trade as commands, from a listed per-call product (0.50 CNY) and its
/// authorisation (1, 100 calls by API) to an order of 60 calls (1) confirmed, delivered in
/// two parts, settled under a fee schedule (5%, operator 10%), disputed and reversed.
#[cfg(test)]
pub(crate) fn whole_trade() -> Vec<super::CatalogCommand> {
    tests::rules::whole_trade()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Money {
        Money::parse(s).expect(s)
    }

    fn schedule(fee: u32, operator: u32, broker: u32, minimum: &str) -> FeeSchedule {
        FeeSchedule {
            platform_fee_bp: fee,
            operator_share_bp: operator,
            broker_share_bp: broker,
            minimum_fee: minimum.into(),
            note: None,
        }
    }

    fn strings(a: Amounts) -> [String; 5] {
        [a.amount, a.fees, a.provider, a.operator, a.broker].map(Money::fen_string)
    }

    #[test]
    fn a_settlement_worked_by_hand() {
        // 200 calls at 0.50 = 100.00. Fee 5% = 5.00; revenue 95.00; operator 10% = 9.50;
        // broker 5% = 4.75; provider 95.00 − 9.50 − 4.75 = 80.75.
        let s = schedule(500, 1000, 500, "1");
        let gross = m("0.50").times(200).expect("fits");
        let a = settle_amounts(gross, &s, m("1"), true);
        assert_eq!(strings(a), ["100.00", "5.00", "80.75", "9.50", "4.75"]);
        // Without a broker, the broker's share stays with the provider: 85.50.
        let a = settle_amounts(gross, &s, m("1"), false);
        assert_eq!(strings(a), ["100.00", "5.00", "85.50", "9.50", "0.00"]);
    }

    #[test]
    fn every_amount_is_rounded_half_up_and_the_parts_add_up() {
        // 7 calls at 0.0015 = 0.0105 → 0.01. Fee 2.5% of 0.01 = 0.00025 → 0.00, but the
        // minimum is 0.01: the whole amount; nothing left to split.
        let s = schedule(250, 1000, 0, "0.01");
        let a = settle_amounts(m("0.0105"), &s, m("0.01"), false);
        assert_eq!(strings(a), ["0.01", "0.01", "0.00", "0.00", "0.00"]);
        // A minimum above the amount is capped at the amount: 0.50 with a 1.00 minimum.
        let a = settle_amounts(m("0.50"), &schedule(0, 0, 0, "1"), m("1"), false);
        assert_eq!(strings(a), ["0.50", "0.50", "0.00", "0.00", "0.00"]);
        // 3 calls at 0.35 = 1.05. Fee 5% = 0.0525 → 0.05; revenue 1.00; operator 50% =
        // 0.50, broker 50% = 0.50, provider 0.00.
        let a = settle_amounts(
            m("1.05"),
            &schedule(500, 5000, 5000, "0"),
            Money::ZERO,
            true,
        );
        assert_eq!(strings(a), ["1.05", "0.05", "0.00", "0.50", "0.50"]);
        // Revenue 0.01 split 50/50: each share 0.005 → 0.01 rounded half up, which would
        // come to 0.02; the broker gets what is left, 0.00.
        let a = settle_amounts(m("0.01"), &schedule(0, 5000, 5000, "0"), Money::ZERO, true);
        assert_eq!(strings(a), ["0.01", "0.00", "0.00", "0.01", "0.00"]);
        // 12.345 → 12.35 (an exact half fen goes up); fee 10% of 12.35 = 1.235 → 1.24;
        // revenue 11.11; operator 1/3 (3333 bp) = 3.7029663 → 3.70; provider 7.41.
        let a = settle_amounts(
            m("12.345"),
            &schedule(1000, 3333, 0, "0"),
            Money::ZERO,
            false,
        );
        assert_eq!(strings(a), ["12.35", "1.24", "7.41", "3.70", "0.00"]);
        for a in [
            settle_amounts(
                m("12.345"),
                &schedule(1000, 3333, 2000, "0"),
                Money::ZERO,
                true,
            ),
            settle_amounts(m("999.9999"), &schedule(10000, 0, 0, "5"), m("5"), true),
        ] {
            let sum = [a.fees, a.provider, a.operator, a.broker]
                .into_iter()
                .try_fold(Money::ZERO, Money::plus);
            assert_eq!(sum, Some(a.amount), "{a:?}");
        }
    }

    #[test]
    fn a_fee_schedule_is_bounded() {
        assert_eq!(schedule(500, 1000, 500, "1.00").check(), Ok(m("1")));
        assert_eq!(schedule(10000, 10000, 0, "0").check(), Ok(Money::ZERO));
        let field = |s: FeeSchedule| s.check().err().map(|(f, _)| f);
        assert_eq!(field(schedule(10001, 0, 0, "0")), Some("platform_fee_bp"));
        assert_eq!(field(schedule(0, 10001, 0, "0")), Some("operator_share_bp"));
        assert_eq!(field(schedule(0, 6000, 4001, "0")), Some("broker_share_bp"));
        assert_eq!(field(schedule(0, 0, 0, "0.001")), Some("minimum_fee"));
        assert_eq!(field(schedule(0, 0, 0, "-1")), Some("minimum_fee"));
    }

    #[test]
    fn the_price_follows_the_listings_pricing_model() {
        let p = |model, amount, q, unit| {
            price(model, amount, q, unit).map(|(u, t)| (u.to_string(), t.to_string()))
        };
        let ok = |u: &str, t: &str| Ok((u.to_owned(), t.to_owned()));
        assert_eq!(
            p(PricingModel::PerCall, Some("0.50"), 200, None),
            ok("0.50", "100.00")
        );
        assert_eq!(
            p(PricingModel::Subscription, Some("12000"), 3, None),
            ok("12000.00", "36000.00")
        );
        assert_eq!(
            p(PricingModel::Fixed, Some("8000"), 1, None),
            ok("8000.00", "8000.00")
        );
        assert_eq!(p(PricingModel::Free, None, 50, None), ok("0.00", "0.00"));
        assert_eq!(
            p(PricingModel::Negotiated, None, 4, Some("2.125")),
            ok("2.125", "8.50")
        );
        let code = |model, amount, q, unit| price(model, amount, q, unit).err().map(|r| r.code());
        assert_eq!(
            code(PricingModel::Fixed, Some("8000"), 2, None),
            Some("invalid")
        );
        assert_eq!(
            code(PricingModel::Negotiated, None, 1, None),
            Some("invalid")
        );
        assert_eq!(
            code(PricingModel::PerCall, Some("0.50"), 1, Some("0.40")),
            Some("invalid")
        );
        assert_eq!(
            code(PricingModel::PerCall, Some("0.50"), 0, None),
            Some("invalid")
        );
        assert_eq!(
            code(PricingModel::PerCall, Some("0.50"), MAX_QUANTITY + 1, None),
            Some("invalid")
        );
        assert_eq!(
            code(
                PricingModel::Negotiated,
                None,
                MAX_QUANTITY,
                Some("999999999999999")
            ),
            Some("invalid"),
            "a total past 15 integer digits"
        );
    }

    #[test]
    fn a_total_that_rounds_to_the_fen_past_the_largest_amount_is_refused() {
        // 999999999999999.995 fits under the largest amount kept, but its settlement, rounded
        // to the fen half up, would be 1000000000000000.00: 16 integer digits, which no amount
        // of this node may have (the supervision figures could not read it back).
        for (model, amount, unit) in [
            (PricingModel::Fixed, Some("999999999999999.995"), None),
            (PricingModel::Negotiated, None, Some("999999999999999.9999")),
        ] {
            let refused = price(model, amount, 1, unit).err().map(|r| r.code());
            assert_eq!(refused, Some("invalid"), "{model:?}");
        }
        let (_, total) =
            price(PricingModel::Fixed, Some("999999999999999.9949"), 1, None).expect("fits");
        let a = settle_amounts(total, &FeeSchedule::none(), Money::ZERO, false);
        assert_eq!(a.amount.fen_string(), "999999999999999.99");
        assert!(Money::parse(&a.amount.fen_string()).is_ok());
    }

    #[test]
    fn a_delivery_records_what_its_mode_delivers() {
        let d =
            |mode, calls, hashes: Option<Vec<&str>>, outputs: Option<Vec<&str>>| DeliveryRequest {
                mode,
                calls,
                manifest_hashes: hashes.map(|h| h.into_iter().map(String::from).collect()),
                model_output_ids: outputs.map(|o| o.into_iter().map(String::from).collect()),
                note: None,
            };
        let field = |r: DeliveryRequest| delivery_shape(&r).err().map(|(f, _)| f);
        let hash = "ab".repeat(32);
        assert_eq!(field(d(DeliveryMode::Api, Some(10), None, None)), None);
        assert_eq!(
            field(d(DeliveryMode::File, None, Some(vec![&hash]), None)),
            None
        );
        assert_eq!(
            field(d(
                DeliveryMode::ModelOutput,
                None,
                None,
                Some(vec!["run-7:out.1"])
            )),
            None
        );
        assert_eq!(field(d(DeliveryMode::Api, None, None, None)), Some("calls"));
        assert_eq!(
            field(d(DeliveryMode::Api, Some(0), None, None)),
            Some("calls")
        );
        assert_eq!(
            field(d(DeliveryMode::File, Some(1), Some(vec![&hash]), None)),
            Some("calls")
        );
        assert_eq!(
            field(d(DeliveryMode::File, None, None, None)),
            Some("manifest_hashes")
        );
        assert_eq!(
            field(d(DeliveryMode::Api, Some(1), Some(vec![&hash]), None)),
            Some("manifest_hashes")
        );
        let upper = "AB".repeat(32);
        assert_eq!(
            field(d(DeliveryMode::File, None, Some(vec![&upper]), None)),
            Some("manifest_hashes")
        );
        assert_eq!(
            field(d(DeliveryMode::File, None, Some(vec![&hash, &hash]), None)),
            Some("manifest_hashes")
        );
        let many: Vec<String> = (0..101).map(|i| format!("{i:064x}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            field(d(DeliveryMode::File, None, Some(many), None)),
            Some("manifest_hashes")
        );
        assert_eq!(
            field(d(DeliveryMode::Api, Some(1), None, Some(vec!["x"]))),
            Some("model_output_ids")
        );
        assert_eq!(
            field(d(
                DeliveryMode::ModelOutput,
                None,
                None,
                Some(vec!["has space"])
            )),
            Some("model_output_ids")
        );
    }

    pub(super) mod rules {
        use xchg_protocol::{Listing, Timestamp};

        use super::super::*;
        use crate::audit;
        use crate::catalog::applications::{ApplicationRequest, Terms};
        use crate::catalog::apply::apply;
        use crate::catalog::{CatalogCommand, Review, test_zone};
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

        fn provider() -> Actor {
            actor(PROVIDER, Role::Provider)
        }

        fn buyer() -> Actor {
            actor(BUYER, Role::Buyer)
        }

        /// A listed per-call product (0.50 CNY), an application by API for 100 calls and its
        /// approval: authorisation 1.
        fn authorised() -> Vec<CatalogCommand> {
            let mut draft = xchg_protocol::vectors::credit_draft();
            draft.delivery_modes = vec![DeliveryMode::Api, DeliveryMode::Verification];
            let p = Listing::first_version(draft, "xuchang/yuzhou".parse().expect("zone"), T0);
            vec![
                CatalogCommand::SubmitListing {
                    listing: Box::new(p.clone()),
                    actor: provider(),
                },
                CatalogCommand::ApproveListing {
                    listing_id: p.id(),
                    review: Review::default(),
                    at: T0,
                    actor: operator(),
                },
                CatalogCommand::SubmitApplication {
                    request: Box::new(ApplicationRequest {
                        listing_id: p.id(),
                        scenario: "企业贷款授信审查".into(),
                        purpose: "授信前核验".into(),
                        delivery_mode: DeliveryMode::Api,
                        duration_days: 30,
                        usage_limit: 100,
                    }),
                    buyer: BUYER.parse().expect("party id"),
                    at: T0,
                    actor: buyer(),
                },
                CatalogCommand::ApproveApplication {
                    application_id: 1,
                    terms: Terms::default(),
                    at: T0,
                    actor: operator(),
                },
            ]
        }

        /// See [`super::super::whole_trade`].
        pub(crate) fn whole_trade() -> Vec<CatalogCommand> {
            let mut commands = authorised();
            commands.extend([
                CatalogCommand::SetFeeSchedule {
                    schedule: FeeSchedule {
                        platform_fee_bp: 500,
                        operator_share_bp: 1000,
                        broker_share_bp: 0,
                        minimum_fee: "0".into(),
                        note: None,
                    },
                    at: T0,
                    actor: actor("token:adm1n", Role::Admin),
                },
                order(60, buyer()),
                step(confirm, provider()),
                deliver(DeliveryMode::Api, 40, provider()),
                deliver(DeliveryMode::Api, 20, provider()),
                step(settle, operator()),
                CatalogCommand::DisputeSettlement {
                    order_id: 1,
                    reason: "对账不符".into(),
                    at: T0,
                    actor: buyer(),
                },
                CatalogCommand::ReverseSettlement {
                    order_id: 1,
                    reason: "冲正".into(),
                    at: T0,
                    actor: operator(),
                },
            ]);
            commands
        }

        fn order(quantity: u64, by: Actor) -> CatalogCommand {
            CatalogCommand::PlaceOrder {
                request: OrderRequest {
                    authorization_id: 1,
                    quantity,
                    unit_price: None,
                },
                buyer: by.id.parse().expect("party id"),
                at: T0,
                actor: by,
            }
        }

        fn deliver(mode: DeliveryMode, calls: u64, by: Actor) -> CatalogCommand {
            CatalogCommand::RecordDelivery {
                order_id: 1,
                delivery: Box::new(DeliveryRequest {
                    mode,
                    calls: Some(calls),
                    manifest_hashes: None,
                    model_output_ids: None,
                    note: None,
                }),
                at: T0,
                actor: by,
            }
        }

        fn step(cmd: fn(u64, Timestamp, Actor) -> CatalogCommand, by: Actor) -> CatalogCommand {
            cmd(1, T0, by)
        }

        fn confirm(order_id: u64, at: Timestamp, actor: Actor) -> CatalogCommand {
            CatalogCommand::ConfirmOrder {
                order_id,
                at,
                actor,
            }
        }

        fn settle(order_id: u64, at: Timestamp, actor: Actor) -> CatalogCommand {
            CatalogCommand::SettleOrder {
                order_id,
                at,
                actor,
            }
        }

        /// Applies `commands` on a fresh catalog: the refusal codes (none for a success),
        /// the calls counted on authorisation 1, and order 1's delivered calls and state.
        fn run(commands: &[CatalogCommand]) -> (Vec<Option<&'static str>>, u64, u64, OrderState) {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = crate::catalog::test_db(dir.path());
            let zone = test_zone();
            let responses = in_transaction(&db, || {
                let mut chain = audit::Chain::load(&db)?;
                let r = (10..)
                    .zip(commands)
                    .map(|(index, c)| apply(&db, &mut chain, &zone, index, c))
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                chain.flush(&db)?;
                Ok(r)
            })
            .expect("apply");
            let used = authorizations::judged(&db, 1)
                .expect("read")
                .map_or(0, |j| j.grant.used);
            let order = table::order_row(&db, 1).expect("read").expect("order 1");
            let codes = responses
                .iter()
                .map(|r| r.as_ref().err().map(Refusal::code))
                .collect();
            (codes, used, order.delivered_calls, order.state)
        }

        #[test]
        fn an_order_moves_only_by_its_parties_in_order_and_counts_what_is_delivered() {
            let stranger = actor("another-provider", Role::Provider);
            let mut commands = authorised();
            commands.extend([
                order(101, buyer()),                                 // over the limit
                order(1, actor("another-bank", Role::Buyer)),        // not its buyer's
                order(60, buyer()),                                  // placed
                deliver(DeliveryMode::Api, 10, provider()),          // not yet confirmed
                step(settle, operator()),                            // not yet confirmed
                step(confirm, stranger.clone()),                     // another provider
                step(confirm, provider()),                           // confirmed
                step(confirm, provider()),                           // already
                step(settle, operator()),                            // nothing delivered
                deliver(DeliveryMode::Verification, 10, provider()), // not the mode
                deliver(DeliveryMode::Api, 10, stranger),            // not its provider
                deliver(DeliveryMode::Api, 61, provider()),          // past the order
                deliver(DeliveryMode::Api, 40, provider()),          // delivering
                CatalogCommand::RecordUsage {
                    authorization_id: 1,
                    calls: 50,
                    at: T0,
                    actor: buyer(),
                },
                deliver(DeliveryMode::Api, 20, provider()), // past the authorisation
                deliver(DeliveryMode::Api, 10, provider()),
                step(settle, operator()),
                deliver(DeliveryMode::Api, 10, provider()), // settled
            ]);
            let (codes, used, delivered, state) = run(&commands);
            assert_eq!(&codes[..4], &[None; 4]);
            assert_eq!(
                &codes[4..],
                &[
                    Some("usage_limit_exceeded"),
                    Some("forbidden"),
                    None,
                    Some("illegal_transition"),
                    Some("illegal_transition"),
                    Some("forbidden"),
                    None,
                    Some("illegal_transition"),
                    Some("illegal_transition"),
                    Some("delivery_mode_not_authorized"),
                    Some("forbidden"),
                    Some("order_quantity_exceeded"),
                    None,
                    None,
                    Some("usage_limit_exceeded"),
                    None,
                    None,
                    Some("illegal_transition"),
                ]
            );
            // 40 + 10 delivered, 50 reported besides: 100 counted, the refused 20 not.
            assert_eq!((used, delivered, state), (100, 50, OrderState::Settled));
        }
    }
}
