//! Valuation reports (数据资产评估): a product valued by three approaches, each shown with its
//! inputs and arithmetic, and a final value weighted across them.
//!
//! - **Cost**: the cost of making the product again (collection, processing, storage,
//!   compliance, other), raised by a reasonable profit rate and lowered by a depreciation rate:
//!   `total × (1 + profit_rate) × (1 − depreciation_rate)`.
//! - **Income**: the present value of the cash flows the product is expected to bring, one per
//!   year, discounted at the discount rate: `Σ cf_t / (1 + r)^t` for `t = 1..n`.
//! - **Market**: the prices of comparable priced listings of the whole recognised catalog, each
//!   adjusted for how it differs from the product (classification, update frequency, spatial
//!   coverage) and weighted by its similarity (category, classification, update frequency);
//!   a price per call or per period is turned into a value by the units the caller expects.
//!
//! All arithmetic is decimal, in integers of 10⁻⁹ ([`Dec`]), never floats: each product and
//! quotient is rounded half away from zero to 9 decimals, and every amount shown is rounded half
//! away from zero (四舍五入) to the fen (0.01) from the unrounded figure, so shown parts may
//! differ from the shown total by a fen. Rates and weights are shown to 9 decimals at most.
//!
//! A report is computed by the node that receives the request, from its replica (the comparables
//! it holds at that moment), and recorded as it is through the zone's Raft: the stored report
//! is the one shown, whatever the catalog becomes.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};
use xchg_federation_config::Role;
use xchg_protocol::{Classification, ContentId, Listing, PricingModel, Timestamp, UpdateFrequency};

use super::tables::valuations as table;
use super::tables::{enum_name, listings};
use super::{Actor, Applied, CommandResponse, Refusal, parties};

/// Most yearly cash flows of the income approach.
pub const MAX_CASH_FLOWS: usize = 50;
/// Most comparables the market approach may use.
pub const MAX_COMPARABLES: u32 = 20;
/// Comparables used when the request does not say.
pub const DEFAULT_COMPARABLES: u32 = 5;
/// The field a refusal names when no listing is comparable (a conflict with the catalog's
/// state, not a malformed request).
pub const NOTHING_COMPARABLE: &str = "approaches.market";
/// Most assumptions stated.
pub const MAX_ASSUMPTIONS: usize = 20;
/// Longest assumption, in characters.
pub const MAX_ASSUMPTION_CHARS: usize = 500;
/// Most units (calls or periods) a per-call or subscription price is multiplied by.
pub const MAX_UNITS: u64 = 1_000_000_000;
/// Listings read as candidate comparables from each of the product's category and the others
/// (the most recent first).
pub const CANDIDATES_PER_QUERY: u32 = 500;

/// How the figures are rounded, as every report states it.
pub const ROUNDING: &str = "decimal arithmetic to 9 decimals, each step rounded half away from \
    zero; amounts shown rounded half away from zero to 0.01 (四舍五入) from the unrounded figure";

const SCALE: i128 = 1_000_000_000;
const DECIMALS: u32 = 9;

/// A decimal number held as an integer count of 10⁻⁹.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dec(i128);

impl Dec {
    /// Zero.
    pub const ZERO: Dec = Dec(0);
    /// One.
    pub const ONE: Dec = Dec(SCALE);

    /// A whole number.
    pub fn whole(n: i64) -> Dec {
        Dec(i128::from(n) * SCALE)
    }

    /// Reads a plain decimal: optional `-` (only if `signed`), 1 to 15 integer digits, and at
    /// most `decimals` (≤ 9) decimals after a `.`.
    ///
    /// # Errors
    /// What is wrong with the text.
    pub fn parse(text: &str, decimals: u32, signed: bool) -> Result<Dec, String> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) if signed => (true, rest),
            Some(_) => return Err(format!("{text:?} must not be negative")),
            None => (false, text),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let bad = || {
            format!(
                "{text:?} is not a decimal number: expected up to 15 digits, optionally a '.' and \
                 1 to {decimals} decimals{}",
                if signed {
                    ", optionally after a '-'"
                } else {
                    ""
                }
            )
        };
        if int.is_empty()
            || int.len() > 15
            || !int.bytes().all(|b| b.is_ascii_digit())
            || (digits.contains('.') && frac.is_empty())
            || frac.len() > decimals.min(DECIMALS) as usize
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let int: i128 = int.parse().map_err(|_| bad())?;
        let mut frac_value: i128 = 0;
        for (i, b) in frac.bytes().enumerate() {
            frac_value += i128::from(b - b'0') * 10i128.pow(DECIMALS - 1 - i as u32);
        }
        let value = int * SCALE + frac_value;
        Ok(Dec(if negative { -value } else { value }))
    }

    /// `self + other`, `None` on overflow.
    pub fn plus(self, other: Dec) -> Option<Dec> {
        self.0.checked_add(other.0).map(Dec)
    }

    /// `self − other`, `None` on overflow.
    pub fn minus(self, other: Dec) -> Option<Dec> {
        self.0.checked_sub(other.0).map(Dec)
    }

    /// `self × other`, rounded half away from zero to 9 decimals; `None` on overflow.
    pub fn times(self, other: Dec) -> Option<Dec> {
        divide_rounded(self.0.checked_mul(other.0)?, SCALE).map(Dec)
    }

    /// `self ÷ other`, rounded half away from zero to 9 decimals; `None` on overflow or
    /// division by zero.
    pub fn over(self, other: Dec) -> Option<Dec> {
        divide_rounded(self.0.checked_mul(SCALE)?, other.0).map(Dec)
    }

    /// `self × n` for a whole `n`; `None` on overflow.
    pub fn times_whole(self, n: u64) -> Option<Dec> {
        self.0.checked_mul(i128::from(n)).map(Dec)
    }

    /// Rounded half away from zero to `decimals` decimals.
    pub fn round(self, decimals: u32) -> Dec {
        let unit = 10i128.pow(DECIMALS - decimals.min(DECIMALS));
        Dec(divide_rounded(self.0, unit).unwrap_or(0) * unit)
    }

    /// As an amount: rounded to the fen and shown with two decimals (`"248.69"`).
    pub fn money(self) -> String {
        let fen = self.round(2).0 / (SCALE / 100);
        let sign = if fen < 0 { "-" } else { "" };
        let fen = fen.unsigned_abs();
        format!("{sign}{}.{:02}", fen / 100, fen % 100)
    }

    /// Whether it is below zero.
    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

/// A rate, factor or weight: up to 9 decimals, no trailing zeros (`"0.35"`, `"1"`).
impl fmt::Display for Dec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let v = self.0.unsigned_abs();
        let scale = SCALE.unsigned_abs();
        let (int, frac) = (v / scale, v % scale);
        if frac == 0 {
            return write!(f, "{sign}{int}");
        }
        let frac = format!("{frac:09}");
        write!(f, "{sign}{int}.{}", frac.trim_end_matches('0'))
    }
}

/// `n ÷ d` rounded half away from zero.
fn divide_rounded(n: i128, d: i128) -> Option<i128> {
    if d == 0 {
        return None;
    }
    let q = n.checked_div(d)?;
    let r = n.checked_rem(d)?;
    let twice = r.unsigned_abs().checked_mul(2)?;
    if twice >= d.unsigned_abs() {
        let away = if (n < 0) != (d < 0) { -1 } else { 1 };
        q.checked_add(away)
    } else {
        Some(q)
    }
}

/// An amount: up to 15 digits and 4 decimals, not negative.
pub const AMOUNT_PATTERN: &str = r"^[0-9]{1,15}(\.[0-9]{1,4})?$";
/// A cash flow: an amount, or its negative.
pub const CASH_FLOW_PATTERN: &str = r"^-?[0-9]{1,15}(\.[0-9]{1,4})?$";
/// A rate in [0, 1] with up to 9 decimals.
pub const RATE_PATTERN: &str = r"^(0(\.[0-9]{1,9})?|1(\.0{1,9})?)$";
/// The largest weight of an approach.
pub const MAX_WEIGHT: u32 = 100;

/// `POST /v1/listings/{id}/valuations` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValuationRequest {
    /// The approaches to value by: at least one.
    pub approaches: Approaches,
    /// The assumptions the valuation rests on: at most 20, each 1 to 500 characters of text
    /// (no control characters, something visible).
    #[serde(default)]
    #[schema(max_items = 20, inline)]
    pub assumptions: Vec<Assumption>,
}

/// One assumption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Assumption(pub String);

impl utoipa::PartialSchema for Assumption {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_ASSUMPTION_CHARS))
            .into()
    }
}

impl utoipa::ToSchema for Assumption {}

/// The approaches, each with its inputs and its weight: at least one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approaches {
    /// The cost approach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub cost: Option<CostInputs>,
    /// The income approach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub income: Option<IncomeInputs>,
    /// The market approach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub market: Option<MarketInputs>,
}

/// The cost approach's inputs: amounts are decimal strings (up to 15 digits and 4 decimals, not
/// negative) in the report's currency; rates are decimals in [0, 1] with up to 9 decimals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CostInputs {
    /// Cost of collecting the data.
    #[schema(pattern = r"^[0-9]{1,15}(\.[0-9]{1,4})?$")]
    pub collection: String,
    /// Cost of cleaning, labelling and processing it.
    #[schema(pattern = r"^[0-9]{1,15}(\.[0-9]{1,4})?$")]
    pub processing: String,
    /// Cost of storing and serving it.
    #[schema(pattern = r"^[0-9]{1,15}(\.[0-9]{1,4})?$")]
    pub storage: String,
    /// Cost of compliance: reviews, assessments, registration.
    #[schema(pattern = r"^[0-9]{1,15}(\.[0-9]{1,4})?$")]
    pub compliance: String,
    /// Other costs (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[0-9]{1,15}(\.[0-9]{1,4})?$")]
    pub other: Option<String>,
    /// Reasonable profit on the cost, in [0, 1] (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^(0(\.[0-9]{1,9})?|1(\.0{1,9})?)$")]
    pub profit_rate: Option<String>,
    /// Loss of value from age, obsolescence and lapsed timeliness, in [0, 1] (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^(0(\.[0-9]{1,9})?|1(\.0{1,9})?)$")]
    pub depreciation_rate: Option<String>,
    /// This approach's weight, relative to the others given: 1 to 100 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub weight: Option<u32>,
}

/// The income approach's inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncomeInputs {
    /// The net cash flow expected in each year from the first: 1 to 50 decimal strings (up to
    /// 15 digits and 4 decimals, a `-` for a year that costs more than it brings).
    #[schema(min_items = 1, max_items = 50, inline)]
    pub cash_flows: Vec<CashFlow>,
    /// The yearly discount rate, in [0, 1] with up to 9 decimals.
    #[schema(pattern = r"^(0(\.[0-9]{1,9})?|1(\.0{1,9})?)$")]
    pub discount_rate: String,
    /// This approach's weight, relative to the others given: 1 to 100 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub weight: Option<u32>,
}

/// One year's cash flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CashFlow(pub String);

impl utoipa::PartialSchema for CashFlow {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(CASH_FLOW_PATTERN))
            .into()
    }
}

impl utoipa::ToSchema for CashFlow {}

/// The market approach: which prices to compare (the comparables are the node's to find).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "pricing_model", rename_all = "snake_case", deny_unknown_fields)]
pub enum MarketInputs {
    /// One-off prices: a comparable's price is a value.
    Fixed {
        /// How many comparables, the most similar first: 1 to 20 (default 5).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 1, maximum = 20)]
        comparables: Option<u32>,
        /// This approach's weight, relative to the others given: 1 to 100 (default 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 1, maximum = 100)]
        weight: Option<u32>,
    },
    /// Prices per call, times the calls expected.
    PerCall {
        /// Calls expected: 1 to 1,000,000,000.
        #[schema(minimum = 1, maximum = 1_000_000_000)]
        units: u64,
        /// How many comparables, the most similar first: 1 to 20 (default 5).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 1, maximum = 20)]
        comparables: Option<u32>,
        /// This approach's weight, relative to the others given: 1 to 100 (default 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 1, maximum = 100)]
        weight: Option<u32>,
    },
    /// Prices per subscription period, times the periods expected.
    Subscription {
        /// Periods expected: 1 to 1,000,000,000.
        #[schema(minimum = 1, maximum = 1_000_000_000)]
        units: u64,
        /// How many comparables, the most similar first: 1 to 20 (default 5).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 1, maximum = 20)]
        comparables: Option<u32>,
        /// This approach's weight, relative to the others given: 1 to 100 (default 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 1, maximum = 100)]
        weight: Option<u32>,
    },
}

impl MarketInputs {
    fn parts(&self) -> (PricingModel, Option<u64>, Option<u32>, Option<u32>) {
        match *self {
            MarketInputs::Fixed {
                comparables,
                weight,
            } => (PricingModel::Fixed, None, comparables, weight),
            MarketInputs::PerCall {
                units,
                comparables,
                weight,
            } => (PricingModel::PerCall, Some(units), comparables, weight),
            MarketInputs::Subscription {
                units,
                comparables,
                weight,
            } => (PricingModel::Subscription, Some(units), comparables, weight),
        }
    }
}

/// A recorded valuation report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ValuationReport {
    /// The listing valued.
    #[schema(value_type = String)]
    pub listing_id: ContentId,
    /// Its version when valued.
    pub listing_version: u32,
    /// The report's version for this listing, from 1 (assigned when recorded).
    pub version: u32,
    /// When it was made.
    pub valued_at: Timestamp,
    /// Who made it.
    pub valued_by: String,
    /// The currency of every amount (ISO 4217).
    pub currency: String,
    /// The cost approach, if used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostApproach>,
    /// The income approach, if used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub income: Option<IncomeApproach>,
    /// The market approach, if used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub market: Option<MarketApproach>,
    /// The weight given to each approach used.
    pub weights: Weights,
    /// The final value: the weighted sum of the approaches' values.
    pub value: String,
    /// How the figures are rounded.
    pub rounding: String,
    /// The assumptions stated.
    pub assumptions: Vec<String>,
}

/// The cost approach worked out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CostApproach {
    /// Collection cost.
    pub collection: String,
    /// Processing cost.
    pub processing: String,
    /// Storage cost.
    pub storage: String,
    /// Compliance cost.
    pub compliance: String,
    /// Other costs.
    pub other: String,
    /// Their sum.
    pub total: String,
    /// Profit rate.
    pub profit_rate: String,
    /// Depreciation rate.
    pub depreciation_rate: String,
    /// `total × (1 + profit_rate) × (1 − depreciation_rate)`.
    pub value: String,
}

/// The income approach worked out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IncomeApproach {
    /// The yearly cash flows.
    pub cash_flows: Vec<String>,
    /// The discount rate.
    pub discount_rate: String,
    /// Years.
    pub period_years: u32,
    /// Each year's present value `cf_t / (1 + r)^t`.
    pub present_values: Vec<String>,
    /// Their sum.
    pub value: String,
}

/// The market approach worked out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MarketApproach {
    /// The pricing model compared.
    pub pricing_model: PricingModel,
    /// Units a price was multiplied by (1 for `fixed`).
    pub units: u64,
    /// The comparables used, the most similar first.
    pub comparables: Vec<Comparable>,
    /// `units × Σ similarity × adjusted_price ÷ Σ similarity`.
    pub value: String,
}

/// One comparable listing and what was made of its price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Comparable {
    /// The listing.
    #[schema(value_type = String)]
    pub listing_id: ContentId,
    /// Its title.
    pub title: String,
    /// Its origin zone.
    pub origin: String,
    /// Its category.
    pub category: String,
    /// Its classification.
    pub classification: Classification,
    /// Its update frequency.
    pub update_frequency: UpdateFrequency,
    /// Its spatial coverage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spatial_coverage: Option<String>,
    /// Its price.
    pub price: String,
    /// The factors its price was multiplied by.
    pub adjustments: Adjustments,
    /// `price × classification × update_frequency × coverage`.
    pub adjusted_price: String,
    /// How like the product it is, in (0, 1].
    pub similarity: String,
    /// Its share of the market value: its similarity over the sum of all (to 9 decimals).
    pub weight: String,
}

/// Price adjustments of a comparable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Adjustments {
    /// `1 + 0.10 × (product's level − comparable's level)`, levels public 0, general 1,
    /// important 2, core 3.
    pub classification: String,
    /// `1 + 0.05 × (product's rank − comparable's rank)`, ranks static 0, irregular 1, yearly
    /// 2, quarterly 3, monthly 4, weekly 5, daily 6, hourly 7, realtime 8.
    pub update_frequency: String,
    /// `1.1` when the product covers more (the comparable's coverage begins with the product's
    /// and is longer), `0.9` when less, else `1`.
    pub coverage: String,
}

/// The weights used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Weights {
    /// The cost approach's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    /// The income approach's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub income: Option<String>,
    /// The market approach's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub market: Option<String>,
}

/// A rule a request breaks: the field and why.
pub type Invalid = (String, String);

fn invalid(field: &str, why: impl Into<String>) -> Invalid {
    (field.to_owned(), why.into())
}

fn overflow(field: &str) -> Invalid {
    invalid(field, "the figures are too large to compute")
}

fn amount(field: &str, text: &str, signed: bool) -> Result<Dec, Invalid> {
    Dec::parse(text, 4, signed).map_err(|why| invalid(field, why))
}

fn rate(field: &str, text: &str) -> Result<Dec, Invalid> {
    let r = Dec::parse(text, DECIMALS, false).map_err(|why| invalid(field, why))?;
    if r > Dec::ONE {
        return Err(invalid(field, format!("{text} is not in [0, 1]")));
    }
    Ok(r)
}

/// The cost approach.
///
/// # Errors
/// The field at fault.
pub fn cost(inputs: &CostInputs) -> Result<(CostApproach, Dec), Invalid> {
    let parts = [
        ("approaches.cost.collection", inputs.collection.as_str()),
        ("approaches.cost.processing", inputs.processing.as_str()),
        ("approaches.cost.storage", inputs.storage.as_str()),
        ("approaches.cost.compliance", inputs.compliance.as_str()),
        (
            "approaches.cost.other",
            inputs.other.as_deref().unwrap_or("0"),
        ),
    ];
    let mut values = Vec::with_capacity(parts.len());
    let mut total = Dec::ZERO;
    for (field, text) in parts {
        let v = amount(field, text, false)?;
        total = total.plus(v).ok_or_else(|| overflow(field))?;
        values.push(v);
    }
    let profit = rate(
        "approaches.cost.profit_rate",
        inputs.profit_rate.as_deref().unwrap_or("0"),
    )?;
    let depreciation = rate(
        "approaches.cost.depreciation_rate",
        inputs.depreciation_rate.as_deref().unwrap_or("0"),
    )?;
    let value = Dec::ONE
        .plus(profit)
        .and_then(|up| total.times(up))
        .and_then(|v| v.times(Dec::ONE.minus(depreciation)?))
        .ok_or_else(|| overflow("cost"))?;
    let money: Vec<String> = values.iter().map(|v| v.money()).collect();
    Ok((
        CostApproach {
            collection: money[0].clone(),
            processing: money[1].clone(),
            storage: money[2].clone(),
            compliance: money[3].clone(),
            other: money[4].clone(),
            total: total.money(),
            profit_rate: profit.to_string(),
            depreciation_rate: depreciation.to_string(),
            value: value.money(),
        },
        value,
    ))
}

/// The income approach.
///
/// # Errors
/// The field at fault.
pub fn income(inputs: &IncomeInputs) -> Result<(IncomeApproach, Dec), Invalid> {
    let n = inputs.cash_flows.len();
    if !(1..=MAX_CASH_FLOWS).contains(&n) {
        return Err(invalid(
            "approaches.income.cash_flows",
            format!("{n} cash flows: give 1 to {MAX_CASH_FLOWS}, one per year"),
        ));
    }
    let r = rate("approaches.income.discount_rate", &inputs.discount_rate)?;
    let growth = Dec::ONE.plus(r).ok_or_else(|| overflow("income"))?;
    let mut factor = Dec::ONE;
    let mut value = Dec::ZERO;
    let mut present = Vec::with_capacity(n);
    for (t, CashFlow(text)) in inputs.cash_flows.iter().enumerate() {
        let field = format!("approaches.income.cash_flows[{t}]");
        let cf = amount(&field, text, true)?;
        factor = factor.times(growth).ok_or_else(|| overflow(&field))?;
        let pv = cf.over(factor).ok_or_else(|| overflow(&field))?;
        value = value.plus(pv).ok_or_else(|| overflow(&field))?;
        present.push(pv.money());
    }
    Ok((
        IncomeApproach {
            cash_flows: inputs.cash_flows.iter().map(|c| c.0.clone()).collect(),
            discount_rate: r.to_string(),
            period_years: n as u32,
            present_values: present,
            value: value.money(),
        },
        value,
    ))
}

fn level(c: Classification) -> i64 {
    match c {
        Classification::Public => 0,
        Classification::General => 1,
        Classification::Important => 2,
        Classification::Core => 3,
    }
}

fn rank(f: UpdateFrequency) -> i64 {
    match f {
        UpdateFrequency::Static => 0,
        UpdateFrequency::Irregular => 1,
        UpdateFrequency::Yearly => 2,
        UpdateFrequency::Quarterly => 3,
        UpdateFrequency::Monthly => 4,
        UpdateFrequency::Weekly => 5,
        UpdateFrequency::Daily => 6,
        UpdateFrequency::Hourly => 7,
        UpdateFrequency::Realtime => 8,
    }
}

/// `1 + step × n`, never below `floor`.
fn linear(step_thousandths: i64, n: i64, floor_thousandths: i64) -> Dec {
    let v = (1000 + step_thousandths * n).max(floor_thousandths);
    Dec(i128::from(v) * (SCALE / 1000))
}

/// The coverage adjustment: the product covers more, less, or it cannot be told.
fn coverage(product: Option<&str>, other: Option<&str>) -> Dec {
    match (product, other) {
        (Some(p), Some(o)) if o.len() > p.len() && o.starts_with(p) => linear(100, 1, 0),
        (Some(p), Some(o)) if p.len() > o.len() && p.starts_with(o) => linear(100, -1, 0),
        _ => Dec::ONE,
    }
}

/// What the market approach compares: the pricing model, the currency, the units.
pub struct MarketBasis {
    /// The pricing model compared.
    pub model: PricingModel,
    /// The currency.
    pub currency: String,
    /// Units a price is multiplied by.
    pub units: u64,
    /// How many comparables.
    pub wanted: u32,
}

/// The basis of the market approach for `product`.
pub fn market_basis(inputs: &MarketInputs, product: &Listing) -> MarketBasis {
    let (model, units, wanted, _) = inputs.parts();
    MarketBasis {
        model,
        currency: report_currency(product),
        units: units.unwrap_or(1).clamp(1, MAX_UNITS),
        wanted: wanted
            .unwrap_or(DEFAULT_COMPARABLES)
            .clamp(1, MAX_COMPARABLES),
    }
}

/// The currency of a report on `product`: its price's, else CNY.
pub fn report_currency(product: &Listing) -> String {
    product
        .pricing
        .currency
        .clone()
        .unwrap_or_else(|| "CNY".to_owned())
}

/// A candidate comparable: a listing held, with its id.
pub struct Candidate {
    /// The listing id.
    pub id: ContentId,
    /// Its current version.
    pub listing: Listing,
}

/// The market approach over `candidates` (listed or recognised listings other than the
/// product): those priced under the basis's model in its currency, the most similar first
/// (then the most recently updated, then by id).
///
/// # Errors
/// `market` when no candidate is comparable, or the figures overflow.
pub fn market(
    basis: &MarketBasis,
    product: &Listing,
    candidates: &[Candidate],
) -> Result<(MarketApproach, Dec), Invalid> {
    struct Scored<'a> {
        candidate: &'a Candidate,
        price: Dec,
        similarity: Dec,
    }
    let mut scored: Vec<Scored<'_>> = Vec::new();
    for c in candidates {
        let p = &c.listing.pricing;
        if p.model != basis.model || p.currency.as_deref() != Some(basis.currency.as_str()) {
            continue;
        }
        let Some(price) = p
            .amount
            .as_deref()
            .and_then(|a| Dec::parse(a, 4, false).ok())
        else {
            continue;
        };
        let category = if c.listing.category == product.category {
            Dec::ONE
        } else {
            linear(-500, 1, 0)
        };
        let class_gap = (level(product.classification) - level(c.listing.classification)).abs();
        let freq_gap = (rank(product.update_frequency) - rank(c.listing.update_frequency)).abs();
        let similarity = category
            .times(linear(-200, class_gap, 200))
            .and_then(|s| s.times(linear(-50, freq_gap, 200)))
            .ok_or_else(|| overflow("approaches.market.units"))?;
        scored.push(Scored {
            candidate: c,
            price,
            similarity,
        });
    }
    if scored.is_empty() {
        return Err(invalid(
            NOTHING_COMPARABLE,
            format!(
                "no listed or recognised listing is priced {} in {}: the market approach has \
                 nothing to compare",
                enum_name(&basis.model),
                basis.currency
            ),
        ));
    }
    scored.sort_by(|a, b| {
        b.similarity
            .cmp(&a.similarity)
            .then(
                b.candidate
                    .listing
                    .updated_at
                    .cmp(&a.candidate.listing.updated_at),
            )
            .then_with(|| a.candidate.id.to_string().cmp(&b.candidate.id.to_string()))
            .then(Ordering::Equal)
    });
    scored.truncate(basis.wanted as usize);
    let total_similarity = scored
        .iter()
        .try_fold(Dec::ZERO, |sum, s| sum.plus(s.similarity))
        .ok_or_else(|| overflow("approaches.market.units"))?;
    let mut weighted = Dec::ZERO;
    let mut comparables = Vec::with_capacity(scored.len());
    for s in &scored {
        let l = &s.candidate.listing;
        let by_class = linear(
            100,
            level(product.classification) - level(l.classification),
            0,
        );
        let by_freq = linear(
            50,
            rank(product.update_frequency) - rank(l.update_frequency),
            0,
        );
        let by_coverage = coverage(
            product.spatial_coverage.as_deref(),
            l.spatial_coverage.as_deref(),
        );
        let adjusted = s
            .price
            .times(by_class)
            .and_then(|v| v.times(by_freq))
            .and_then(|v| v.times(by_coverage))
            .ok_or_else(|| overflow("approaches.market.units"))?;
        weighted = adjusted
            .times(s.similarity)
            .and_then(|v| weighted.plus(v))
            .ok_or_else(|| overflow("approaches.market.units"))?;
        comparables.push(Comparable {
            listing_id: s.candidate.id,
            title: l.title.clone(),
            origin: l.origin.to_string(),
            category: l.category.clone(),
            classification: l.classification,
            update_frequency: l.update_frequency,
            spatial_coverage: l.spatial_coverage.clone(),
            price: s.price.money(),
            adjustments: Adjustments {
                classification: by_class.to_string(),
                update_frequency: by_freq.to_string(),
                coverage: by_coverage.to_string(),
            },
            adjusted_price: adjusted.money(),
            similarity: s.similarity.to_string(),
            weight: s
                .similarity
                .over(total_similarity)
                .ok_or_else(|| overflow("approaches.market.units"))?
                .to_string(),
        });
    }
    let value = weighted
        .over(total_similarity)
        .and_then(|v| v.times_whole(basis.units))
        .ok_or_else(|| overflow("approaches.market.units"))?;
    Ok((
        MarketApproach {
            pricing_model: basis.model,
            units: basis.units,
            comparables,
            value: value.money(),
        },
        value,
    ))
}

/// The relative weight of each approach given (cost, income, market), 1 when not said.
///
/// # Errors
/// The field at fault.
pub fn weights(approaches: &Approaches) -> Result<[Option<u32>; 3], Invalid> {
    let given = [
        approaches.cost.as_ref().map(|c| c.weight),
        approaches.income.as_ref().map(|i| i.weight),
        approaches.market.as_ref().map(|m| m.parts().3),
    ];
    if given.iter().all(Option::is_none) {
        return Err(invalid(
            "approaches",
            "give at least one approach: cost, income or market",
        ));
    }
    let names = ["cost", "income", "market"];
    let mut out = [None; 3];
    for (i, w) in given.iter().enumerate() {
        if let Some(w) = w {
            let w = w.unwrap_or(1);
            if !(1..=MAX_WEIGHT).contains(&w) {
                return Err(invalid(
                    &format!("approaches.{}.weight", names[i]),
                    format!("{w} is not 1 to {MAX_WEIGHT}"),
                ));
            }
            out[i] = Some(w);
        }
    }
    Ok(out)
}

/// Checks the assumptions.
///
/// # Errors
/// The field at fault.
pub fn assumptions(given: &[Assumption]) -> Result<(), Invalid> {
    if given.len() > MAX_ASSUMPTIONS {
        return Err(invalid(
            "assumptions",
            format!("{} assumptions: at most {MAX_ASSUMPTIONS}", given.len()),
        ));
    }
    for (i, a) in given.iter().enumerate() {
        if let Some(problem) = xchg_protocol::text::problems(&a.0, MAX_ASSUMPTION_CHARS, true)
            .into_iter()
            .next()
        {
            return Err(invalid(
                &format!("assumptions[{i}]"),
                problem.message(MAX_ASSUMPTION_CHARS),
            ));
        }
    }
    Ok(())
}

/// Who made a report and when, and the listing as it was.
pub struct Subject<'a> {
    /// The listing's id.
    pub id: &'a ContentId,
    /// Its current version.
    pub listing: &'a Listing,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub by: &'a str,
}

/// The whole report for `request` on `subject`, with `candidates` for the market approach (only
/// read if it is asked for). Its `version` is 0 until recorded.
///
/// # Errors
/// The field at fault and why; `market` when nothing is comparable.
pub fn report(
    request: &ValuationRequest,
    subject: &Subject<'_>,
    candidates: &[Candidate],
) -> Result<ValuationReport, Invalid> {
    assumptions(&request.assumptions)?;
    let a = &request.approaches;
    let w = weights(a)?;
    let cost = a.cost.as_ref().map(cost).transpose()?;
    let income = a.income.as_ref().map(income).transpose()?;
    let market = match &a.market {
        Some(inputs) => {
            let (_, units, comparables, _) = inputs.parts();
            if let Some(u) = units.filter(|u| !(1..=MAX_UNITS).contains(u)) {
                let why = format!("{u} is not 1 to {MAX_UNITS}");
                return Err(invalid("approaches.market.units", why));
            }
            if let Some(c) = comparables.filter(|c| !(1..=MAX_COMPARABLES).contains(c)) {
                let why = format!("{c} is not 1 to {MAX_COMPARABLES}");
                return Err(invalid("approaches.market.comparables", why));
            }
            let basis = market_basis(inputs, subject.listing);
            Some(market(&basis, subject.listing, candidates)?)
        }
        None => None,
    };
    let values = [
        cost.as_ref().map(|c| c.1),
        income.as_ref().map(|i| i.1),
        market.as_ref().map(|m| m.1),
    ];
    let total: u32 = w.iter().flatten().sum();
    let total = Dec::whole(i64::from(total));
    let mut weighted = Dec::ZERO;
    for (v, w) in values.iter().zip(w.iter()) {
        if let (Some(v), Some(w)) = (v, w) {
            weighted = v
                .times_whole(u64::from(*w))
                .and_then(|x| weighted.plus(x))
                .ok_or_else(|| overflow("approaches"))?;
        }
    }
    let value = weighted.over(total).ok_or_else(|| overflow("approaches"))?;
    let share = |w: Option<u32>| -> Option<String> {
        w.and_then(|w| Dec::whole(i64::from(w)).over(total))
            .map(|d| d.to_string())
    };
    Ok(ValuationReport {
        listing_id: *subject.id,
        listing_version: subject.listing.version,
        version: 0,
        valued_at: subject.at,
        valued_by: subject.by.to_owned(),
        currency: report_currency(subject.listing),
        cost: cost.map(|c| c.0),
        income: income.map(|i| i.0),
        market: market.map(|m| m.0),
        weights: Weights {
            cost: share(w[0]),
            income: share(w[1]),
            market: share(w[2]),
        },
        value: value.money(),
        rounding: ROUNDING.to_owned(),
        assumptions: request.assumptions.iter().map(|a| a.0.clone()).collect(),
    })
}

/// Records `report` for its listing, asked for by `actor`: a provider only for a listing in its
/// own party's name (and while its party is admitted), an operator for any listing held.
///
/// # Errors
/// Only storage errors; refusals are part of the `Ok` value.
pub fn record(
    db: &rusqlite::Connection,
    raft_index: u64,
    report: &ValuationReport,
    actor: &Actor,
) -> rusqlite::Result<CommandResponse> {
    let id = report.listing_id.to_string();
    let Some(current) = listings::current(db, &id)? else {
        return Ok(Err(Refusal::NotFound(format!("no listing {id}"))));
    };
    if actor.role == Role::Provider {
        let party = current.listing.provider.id.as_str();
        if party != actor.id {
            return Ok(Err(Refusal::Forbidden(format!(
                "listing {id} is {party}'s: a provider values only its own listings"
            ))));
        }
        if let Some(refusal) = parties::recorded_refusal(db, party)? {
            return Ok(Err(refusal));
        }
    }
    let stored = ValuationReport {
        valued_by: actor.id.clone(),
        ..report.clone()
    };
    let version = table::insert(db, &stored, raft_index)?;
    Ok(Ok(Applied {
        object_id: id,
        version: Some(version),
        state: None,
        used: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Dec {
        Dec::parse(s, 9, true).expect("computes")
    }

    #[test]
    fn decimals_parse_round_and_show_without_floats() {
        assert_eq!(d("248.685199").money(), "248.69");
        assert_eq!(d("0.005").money(), "0.01", "half away from zero");
        assert_eq!(d("0.004999999").money(), "0.00");
        assert_eq!(
            d("-0.005").money(),
            "-0.01",
            "half away from zero, below zero too"
        );
        assert_eq!(d("-12.3").money(), "-12.30");
        assert_eq!(d("1.50").to_string(), "1.5");
        assert_eq!(d("2").to_string(), "2");
        assert_eq!(d("0.000000001").to_string(), "0.000000001");
        assert_eq!(
            Dec::ONE.over(Dec::whole(3)).expect("computes").to_string(),
            "0.333333333"
        );
        assert_eq!(
            d("2").over(d("3")).expect("computes").to_string(),
            "0.666666667"
        );
        assert_eq!(d("999999999999999.9999").money(), "1000000000000000.00");
        for bad in [
            "",
            ".5",
            "5.",
            "1e3",
            "+1",
            "1,000",
            "1.23456",
            "1234567890123456",
            " 1",
        ] {
            assert!(Dec::parse(bad, 4, false).is_err(), "{bad:?}");
        }
        assert!(Dec::parse("-1", 4, false).is_err());
        assert_eq!(Dec::parse("-1", 4, true), Ok(Dec::whole(-1)));
        assert!(Dec::ONE.over(Dec::ZERO).is_none());
    }

    #[test]
    fn the_cost_approach_marks_the_total_up_by_profit_and_down_by_depreciation() {
        // By hand: 120000 + 30000 + 8000 + 12000 + 0 = 170000; × 1.10 = 187000;
        // × (1 − 0.20) = 149600.
        let (c, v) = cost(&CostInputs {
            collection: "120000".into(),
            processing: "30000".into(),
            storage: "8000".into(),
            compliance: "12000".into(),
            other: None,
            profit_rate: Some("0.10".into()),
            depreciation_rate: Some("0.2".into()),
            weight: None,
        })
        .expect("computes");
        assert_eq!(c.total, "170000.00");
        assert_eq!(c.value, "149600.00");
        assert_eq!(v, Dec::whole(149_600));
        assert_eq!((c.profit_rate.as_str(), c.other.as_str()), ("0.1", "0.00"));
        // By hand: 0.01 + 0.02 = 0.03; × 1.5 = 0.045; × 0.9 = 0.0405 → 0.04.
        let (c, _) = cost(&CostInputs {
            collection: "0.01".into(),
            processing: "0.02".into(),
            storage: "0".into(),
            compliance: "0".into(),
            other: Some("0".into()),
            profit_rate: Some("0.5".into()),
            depreciation_rate: Some("0.1".into()),
            weight: None,
        })
        .expect("computes");
        assert_eq!(c.value, "0.04");
        let mut bad = CostInputs {
            collection: "-1".into(),
            processing: "0".into(),
            storage: "0".into(),
            compliance: "0".into(),
            other: None,
            profit_rate: None,
            depreciation_rate: None,
            weight: None,
        };
        assert_eq!(
            cost(&bad).expect_err("refused").0,
            "approaches.cost.collection"
        );
        bad.collection = "1".into();
        bad.depreciation_rate = Some("1.01".into());
        assert_eq!(
            cost(&bad).expect_err("refused").0,
            "approaches.cost.depreciation_rate"
        );
    }

    fn flows(texts: &[&str], rate: &str) -> IncomeInputs {
        IncomeInputs {
            cash_flows: texts.iter().map(|t| CashFlow((*t).into())).collect(),
            discount_rate: rate.into(),
            weight: None,
        }
    }

    #[test]
    fn the_income_approach_discounts_each_year_and_sums_unrounded() {
        // By hand at 10 %: 100/1.1 = 90.909090909, 100/1.21 = 82.644628099,
        // 100/1.331 = 75.131480090; sum 248.685199098 → 248.69 (the rounded parts sum to
        // 248.68: the total is rounded once, from the unrounded figure).
        let (i, _) = income(&flows(&["100", "100", "100"], "0.10")).expect("computes");
        assert_eq!(i.present_values, ["90.91", "82.64", "75.13"]);
        assert_eq!(i.value, "248.69");
        assert_eq!(i.period_years, 3);
        // By hand at 8 %: −50000/1.08 = −46296.296296; 80000/1.1664 = 68587.105624;
        // 60000/1.259712 = 47629.934969; sum 69920.744297 → 69920.74.
        let (i, _) = income(&flows(&["-50000", "80000", "60000"], "0.08")).expect("computes");
        assert_eq!(i.present_values, ["-46296.30", "68587.11", "47629.93"]);
        assert_eq!(i.value, "69920.74");
        // At 0 % nothing is discounted.
        assert_eq!(
            income(&flows(&["1", "2"], "0")).expect("computes").0.value,
            "3.00"
        );
        assert_eq!(
            income(&flows(&["1"], "1.5")).expect_err("refused").0,
            "approaches.income.discount_rate"
        );
        assert_eq!(
            income(&flows(&[], "0.1")).expect_err("refused").0,
            "approaches.income.cash_flows"
        );
        let largest = vec!["999999999999999.9999"; MAX_CASH_FLOWS];
        assert!(
            income(&flows(&largest, "1")).is_ok() && income(&flows(&largest, "0")).is_ok(),
            "50 years of the largest flow compute at any rate"
        );
    }

    fn listing(category: &str, class: Classification, freq: UpdateFrequency) -> Listing {
        let mut l = Listing::first_version(
            xchg_protocol::vectors::credit_draft(),
            "xuchang/yuzhou".parse().expect("zone"),
            Timestamp(1),
        );
        l.category = category.into();
        l.classification = class;
        l.update_frequency = freq;
        l.spatial_coverage = Some("许昌市".into());
        l.pricing = xchg_protocol::Pricing {
            model: PricingModel::Fixed,
            amount: Some("1".into()),
            currency: Some("CNY".into()),
        };
        l
    }

    fn candidate(n: u8, mut l: Listing, price: &str, coverage: &str) -> Candidate {
        l.pricing.amount = Some(price.into());
        l.spatial_coverage = Some(coverage.into());
        l.title = format!("comparable {n}");
        Candidate {
            id: ContentId::of(&[n]),
            listing: l,
        }
    }

    #[test]
    fn the_market_approach_adjusts_comparables_and_weights_them_by_similarity() {
        use Classification::{General, Important};
        use UpdateFrequency::{Daily, Weekly};
        let product = listing("credit", General, Daily);
        let candidates = [
            // Like the product in every way: factors 1, similarity 1.
            candidate(1, listing("credit", General, Daily), "10000", "许昌市"),
            // One classification level above: price × (1 + 0.10 × (1 − 2)) = 0.9 → 18000;
            // similarity 1 − 0.2 = 0.8.
            candidate(2, listing("credit", Important, Daily), "20000", "许昌市"),
            // Another category (similarity × 0.5), weekly (one rank below daily: price × 1.05,
            // similarity × 0.95), a narrower coverage (the product covers more: × 1.1):
            // 5000 × 1.05 × 1.1 = 5775; similarity 0.5 × 0.95 = 0.475.
            candidate(
                3,
                listing("finance", General, Weekly),
                "5000",
                "许昌市禹州市",
            ),
            // Priced per call: not comparable with fixed prices.
            {
                let mut c = candidate(4, listing("credit", General, Daily), "1", "许昌市");
                c.listing.pricing.model = PricingModel::PerCall;
                c
            },
            // Priced in another currency: not comparable.
            {
                let mut c = candidate(5, listing("credit", General, Daily), "1", "许昌市");
                c.listing.pricing.currency = Some("USD".into());
                c
            },
        ];
        let fixed = MarketInputs::Fixed {
            comparables: None,
            weight: None,
        };
        let basis = market_basis(&fixed, &product);
        let (m, v) = market(&basis, &product, &candidates).expect("computes");
        // By hand: (10000 × 1 + 18000 × 0.8 + 5775 × 0.475) / (1 + 0.8 + 0.475)
        //        = 27143.125 / 2.275 = 11931.043956 → 11931.04.
        assert_eq!(m.value, "11931.04");
        assert_eq!(v.money(), "11931.04");
        let shown: Vec<_> = m
            .comparables
            .iter()
            .map(|c| {
                (
                    c.title.as_str(),
                    c.adjusted_price.as_str(),
                    c.similarity.as_str(),
                    c.weight.as_str(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("comparable 1", "10000.00", "1", "0.43956044"),
                ("comparable 2", "18000.00", "0.8", "0.351648352"),
                ("comparable 3", "5775.00", "0.475", "0.208791209"),
            ]
        );
        let third = &m.comparables[2].adjustments;
        assert_eq!(
            (
                third.classification.as_str(),
                third.update_frequency.as_str(),
                third.coverage.as_str()
            ),
            ("1", "1.05", "1.1")
        );
        // Only the two most similar.
        let two = MarketBasis { wanted: 2, ..basis };
        let (m, _) = market(&two, &product, &candidates).expect("computes");
        // By hand: (10000 + 14400) / 1.8 = 13555.555… → 13555.56.
        assert_eq!(m.value, "13555.56");
        // A per-call basis: 1 per call × 3000 calls, from the one per-call comparable.
        let per_call = MarketInputs::PerCall {
            units: 3000,
            comparables: None,
            weight: None,
        };
        let basis = market_basis(&per_call, &product);
        assert_eq!(
            market(&basis, &product, &candidates)
                .expect("computes")
                .0
                .value,
            "3000.00"
        );
        let empty = market(&two, &product, &[]).expect_err("refused");
        assert_eq!(empty.0, NOTHING_COMPARABLE);
        // The largest price, adjusted up by every factor, times the most units computes.
        let mut dearest = candidate(
            6,
            listing("credit", Classification::Public, UpdateFrequency::Static),
            "999999999999999.9999",
            "许昌市禹州市",
        );
        dearest.listing.pricing.model = PricingModel::Subscription;
        let mut core = listing("credit", Classification::Core, UpdateFrequency::Realtime);
        core.spatial_coverage = Some("许".into());
        let most = MarketBasis {
            model: PricingModel::Subscription,
            currency: "CNY".into(),
            units: MAX_UNITS,
            wanted: 1,
        };
        assert!(market(&most, &core, &[dearest]).is_ok());
    }

    fn cost_of(collection: &str, weight: Option<u32>) -> CostInputs {
        CostInputs {
            collection: collection.into(),
            processing: "0".into(),
            storage: "0".into(),
            compliance: "0".into(),
            other: None,
            profit_rate: None,
            depreciation_rate: None,
            weight,
        }
    }

    #[test]
    fn a_report_weighs_the_approaches_by_their_relative_weights() {
        let product = listing("credit", Classification::General, UpdateFrequency::Daily);
        let id = ContentId::of(b"product");
        let subject = Subject {
            id: &id,
            listing: &product,
            at: Timestamp(1),
            by: "p1",
        };
        let mut income = flows(&["110000"], "0.1");
        income.weight = Some(3);
        let request = ValuationRequest {
            approaches: Approaches {
                cost: Some(cost_of("80000", Some(1))),
                income: Some(income),
                market: None,
            },
            assumptions: vec![Assumption("持续经营".into())],
        };
        // By hand: cost 80000, income 110000 / 1.1 = 100000; (1 × 80000 + 3 × 100000) / 4.
        let r = report(&request, &subject, &[]).expect("computes");
        assert_eq!(r.value, "95000.00");
        assert_eq!(r.currency, "CNY");
        assert_eq!(
            (
                r.weights.cost.as_deref(),
                r.weights.income.as_deref(),
                r.weights.market
            ),
            (Some("0.25"), Some("0.75"), None)
        );
        // Unweighted approaches weigh the same: (1 + 2 + 3) / 3 = 2.
        let three = ValuationRequest {
            approaches: Approaches {
                cost: Some(cost_of("1", None)),
                income: Some(flows(&["2"], "0")),
                market: Some(MarketInputs::Fixed {
                    comparables: None,
                    weight: None,
                }),
            },
            assumptions: vec![],
        };
        let third = candidate(
            1,
            listing("credit", Classification::General, UpdateFrequency::Daily),
            "3",
            "许昌市",
        );
        let r = report(&three, &subject, &[third]).expect("computes");
        assert_eq!(r.value, "2.00");
        assert_eq!(r.weights.market.as_deref(), Some("0.333333333"));
        let none = ValuationRequest {
            approaches: Approaches::default(),
            assumptions: vec![],
        };
        assert_eq!(
            report(&none, &subject, &[]).expect_err("refused").0,
            "approaches"
        );
        let mut heavy = request.clone();
        heavy.approaches.cost = Some(cost_of("1", Some(MAX_WEIGHT + 1)));
        assert_eq!(
            report(&heavy, &subject, &[]).expect_err("refused").0,
            "approaches.cost.weight"
        );
        let mut long = request.clone();
        long.assumptions = vec![Assumption("x".repeat(MAX_ASSUMPTION_CHARS + 1))];
        assert_eq!(
            report(&long, &subject, &[]).expect_err("refused").0,
            "assumptions[0]"
        );
        long.assumptions = vec![Assumption(" ".into())];
        assert_eq!(
            report(&long, &subject, &[]).expect_err("refused").0,
            "assumptions[0]"
        );
    }
}
