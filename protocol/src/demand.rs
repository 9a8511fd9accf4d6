//! Demands across exchanges (交易撮合, PROTOCOL.md 11.9): what a buyer of an origin zone needs,
//! shared by its buyer beyond its exchange, signed by a node of that zone, so that the zones of
//! partner exchanges show it beside their own demands and rank their listings for it.
//!
//! Signed like the application messages (PROTOCOL.md 11.3) under its own domain tag. Never the
//! buyer or the broker that posted it: a seller elsewhere answers through the origin exchange,
//! and who needs the data is the origin's business (as for precedents, 11.8). A demand is
//! published again with a later `updated_at` when it is withdrawn or accepted; a receiver keeps
//! the one with the latest `updated_at` of each `(zone, number)`.

use serde::{Deserialize, Serialize};

use crate::announcement::{TrustStore, VerifyError};
use crate::application::{SignedMessage, Verified, check_authority, open};
use crate::canonical::{DEFAULT_MAX_DEPTH, Limits};
use crate::ids::ZoneId;
use crate::keys::{Domain, Keypair};
use crate::listing::{DeliveryMode, ValidationError, Violations};
use crate::time::Timestamp;

/// Longest title, in characters.
pub const TITLE_CHARS: usize = 200;
/// Longest description, in characters.
pub const DESCRIPTION_CHARS: usize = 4000;
/// Longest scenario, in characters: as in an application (PROTOCOL.md 11.1).
pub const SCENARIO_CHARS: usize = 200;
/// The furthest deadline: 366 days after posting.
pub const MAX_DEADLINE_DAYS: u64 = 366;
/// Largest accepted encoding of a signed demand: 64 KiB (a description of 4000 four-byte
/// characters and the delegation are under 17 KiB).
pub const MAX_DEMAND_BYTES: usize = 64 * 1024;

const DAY_MS: u64 = 86_400_000;

/// The limits a receiver applies to a signed demand.
pub fn limits() -> Limits {
    Limits {
        max_size: MAX_DEMAND_BYTES,
        max_depth: DEFAULT_MAX_DEPTH,
    }
}

/// Where a demand stands at its origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DemandState {
    /// Still looking for a listing (until its deadline).
    Open,
    /// Its buyer withdrew it.
    Withdrawn,
    /// Its buyer accepted a listing (which one stays at the origin).
    Accepted,
}

impl DemandState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DemandState::Open => "open",
            DemandState::Withdrawn => "withdrawn",
            DemandState::Accepted => "accepted",
        }
    }
}

/// A budget: decimal strings of up to 15 digits and 4 decimals, `min` ≤ `max`, in `currency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemandBudget {
    /// The least the buyer expects to pay (`"0"` when it stated none).
    pub min: String,
    /// The most it will pay.
    pub max: String,
    /// ISO 4217 code: three capital letters.
    pub currency: String,
}

/// A demand as its origin zone shares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Demand {
    /// The origin zone: must be the zone of the signer's delegation.
    pub zone: ZoneId,
    /// The demand's number at the origin zone.
    pub number: u64,
    /// Where it stands.
    pub state: DemandState,
    /// The category sought: 1 to 64 of `a-z 0-9 _ -`.
    pub category: String,
    /// What data it needs, in a line.
    pub title: String,
    /// What data it needs, in full.
    pub description: String,
    /// The one scenario the data would be used in.
    pub scenario: String,
    /// Delivery modes the buyer accepts: at least one, none twice.
    pub delivery_modes: Vec<DeliveryMode>,
    /// Its budget.
    pub budget: DemandBudget,
    /// When it stops looking.
    pub deadline: Timestamp,
    /// When it was posted.
    pub posted_at: Timestamp,
    /// When this state was reached: `posted_at` while open, the withdrawal or acceptance after.
    pub updated_at: Timestamp,
}

/// The value of a decimal amount in ten-thousandths, if it is one: up to 15 digits, optionally
/// a `.` and 1 to 4 decimals.
pub fn amount(s: &str) -> Option<u128> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let ok = !int.is_empty()
        && int.len() <= 15
        && int.bytes().all(|b| b.is_ascii_digit())
        && (!s.contains('.') || !frac.is_empty())
        && frac.len() <= 4
        && frac.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return None;
    }
    let mut value: u128 = int.parse().ok()?;
    for i in 0..4 {
        value = value * 10 + frac.as_bytes().get(i).map_or(0, |b| u128::from(b - b'0'));
    }
    Some(value)
}

/// Whether `c` is a category: 1 to 64 of `a-z 0-9 _ -`.
pub fn valid_category(c: &str) -> bool {
    (1..=64).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Demand {
    /// Checks the content rules: title, description and scenario follow the text rule (not
    /// blank, at most [`TITLE_CHARS`], [`DESCRIPTION_CHARS`], [`SCENARIO_CHARS`]); the category
    /// is 1 to 64 of `a-z 0-9 _ -`; at least one delivery mode, none twice; the budget's amounts
    /// are decimals of up to 15 digits and 4 decimals, `min` ≤ `max`, in three capital letters;
    /// the deadline is after `posted_at` and at most [`MAX_DEADLINE_DAYS`] days after it;
    /// `updated_at` is not before `posted_at`, and equals it while open.
    ///
    /// # Errors
    /// [`ValidationError`] listing each broken rule with its field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut v = Violations::default();
        v.text("title", &self.title, TITLE_CHARS, true);
        v.text("description", &self.description, DESCRIPTION_CHARS, true);
        v.text("scenario", &self.scenario, SCENARIO_CHARS, true);
        if i64::try_from(self.number).is_err() {
            v.add("number", "at most 2^63 - 1");
        }
        if !valid_category(&self.category) {
            v.add("category", "1 to 64 characters of a-z 0-9 _ -");
        }
        if self.delivery_modes.is_empty() {
            v.add("delivery_modes", "at least one delivery mode");
        }
        let modes = &self.delivery_modes;
        if (0..modes.len()).any(|i| modes[..i].contains(&modes[i])) {
            v.add("delivery_modes", "a delivery mode given twice");
        }
        let (min, max) = (amount(&self.budget.min), amount(&self.budget.max));
        if min.is_none() {
            v.add(
                "budget.min",
                "up to 15 digits, optionally a '.' and 1 to 4 decimals",
            );
        }
        if max.is_none() {
            v.add(
                "budget.max",
                "up to 15 digits, optionally a '.' and 1 to 4 decimals",
            );
        }
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            v.add("budget.min", "more than budget.max");
        }
        let currency = &self.budget.currency;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            v.add("budget.currency", "three capital letters (ISO 4217)");
        }
        let latest = self.posted_at.plus_millis(MAX_DEADLINE_DAYS * DAY_MS);
        if self.deadline <= self.posted_at || self.deadline > latest {
            v.add(
                "deadline",
                format!("after posted_at and at most {MAX_DEADLINE_DAYS} days after it"),
            );
        }
        if self.updated_at < self.posted_at
            || (self.state == DemandState::Open && self.updated_at != self.posted_at)
        {
            v.add(
                "updated_at",
                "not before posted_at, and equal to it while open",
            );
        }
        v.finish()
    }
}

/// Signs `demand` as a node of its zone holding `key` under `delegation`.
pub fn sign(demand: &Demand, key: &Keypair, delegation: crate::SignedDelegation) -> SignedMessage {
    let body = crate::canonical::to_canonical(demand).unwrap_or_default();
    SignedMessage::seal(Domain::Demand, body, key, delegation)
}

/// Verifies a signed demand offline (PROTOCOL.md 11.9): the steps 1 to 6 of 11.4 with the
/// demand tag and `updated_at` → content rules (`invalid_demand`) → `zone` is the signer's
/// (`wrong_origin`) and `updated_at` not in the future (`from_the_future`).
///
/// What needs the receiver's state is not checked here: that an agreement with the signer's
/// exchange covers the demand's category and one of its delivery modes, and that it is newer
/// than the one held of the same zone and number.
///
/// # Errors
/// The first failed check, as a [`VerifyError`].
pub fn verify(
    bytes: &[u8],
    trust: &TrustStore,
    now: Timestamp,
    limits: &Limits,
) -> Result<Verified<Demand>, VerifyError> {
    let verified = open(
        bytes,
        Domain::Demand,
        |d: &Demand| d.updated_at,
        trust,
        limits,
    )?;
    let d = &verified.body;
    d.validate()
        .map_err(|errors| VerifyError::InvalidDemand { errors })?;
    check_authority(&d.zone, d.updated_at, &verified.delegation, now)?;
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demand_vectors as dv;

    #[test]
    fn a_demand_encodes_its_keys_in_the_canonical_order_of_protocol_11_9() {
        let body = crate::canonical::to_canonical(&dv::demand()).expect("encodes");
        let at = |key: &str| {
            body.windows(key.len())
                .position(|w| w == key.as_bytes())
                .unwrap_or(usize::MAX)
        };
        assert_eq!(&body[..6], &[0xac, 0x64, b'z', b'o', b'n', b'e']);
        let order = [
            "zone",
            "state",
            "title",
            "budget",
            "number",
            "category",
            "deadline",
            "scenario",
            "posted_at",
            "updated_at",
            "description",
            "delivery_modes",
        ];
        assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{order:?}");
        assert!(
            !body.windows(5).any(|w| w == b"buyer"),
            "no buyer on the wire"
        );
    }

    #[test]
    fn amounts_follow_the_api_grammar_and_compare_by_value() {
        assert_eq!(amount("12"), Some(120_000));
        assert_eq!(amount("0.5"), Some(5_000));
        assert_eq!(amount("12.0001"), Some(120_001));
        assert_eq!(amount("007"), Some(70_000));
        for bad in ["", ".5", "1.", "1.00001", "-1", "1e3", "1234567890123456"] {
            assert_eq!(amount(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn each_content_rule_names_its_field() {
        let broken = |f: &dyn Fn(&mut Demand)| {
            let mut d = dv::demand();
            f(&mut d);
            d.validate()
                .err()
                .map(|e| e.0.iter().map(|f| f.field.clone()).collect::<Vec<_>>())
        };
        assert_eq!(broken(&|_| {}), None);
        assert_eq!(
            broken(&|d| d.title = " ".into()),
            Some(vec!["title".into()])
        );
        assert_eq!(broken(&|d| d.number = 1 << 63), Some(vec!["number".into()]));
        assert_eq!(
            broken(&|d| d.category = "Credit".into()),
            Some(vec!["category".into()])
        );
        assert_eq!(
            broken(&|d| d.delivery_modes.clear()),
            Some(vec!["delivery_modes".into()])
        );
        assert_eq!(
            broken(&|d| d.delivery_modes.push(DeliveryMode::Api)),
            Some(vec!["delivery_modes".into()])
        );
        assert_eq!(
            broken(&|d| d.budget.min = "200000".into()),
            Some(vec!["budget.min".into()])
        );
        assert_eq!(
            broken(&|d| d.budget.currency = "cny".into()),
            Some(vec!["budget.currency".into()])
        );
        assert_eq!(
            broken(&|d| d.deadline = d.posted_at),
            Some(vec!["deadline".into()])
        );
        assert_eq!(
            broken(&|d| d.updated_at = d.posted_at.plus_millis(1)),
            Some(vec!["updated_at".into()])
        );
        let mut withdrawn = dv::demand();
        withdrawn.state = DemandState::Withdrawn;
        withdrawn.updated_at = withdrawn.posted_at.plus_millis(1);
        assert_eq!(withdrawn.validate().map_err(|e| e.to_string()), Ok(()));
    }

    #[test]
    fn a_demand_from_the_future_or_of_another_zone_does_not_verify() {
        let mut trust = TrustStore::default();
        trust.trust(
            "zhengzhou".parse().expect("id"),
            crate::application_vectors::origin_root().public(),
        );
        let signed = |d: &Demand, zone: &str| {
            sign(
                d,
                &crate::application_vectors::origin_node(),
                crate::application_vectors::origin_delegation(zone),
            )
            .to_bytes()
        };
        let now = crate::vectors::NOW;
        let d = dv::demand();
        assert!(verify(&signed(&d, "zhengzhou/zhongyuan"), &trust, now, &limits()).is_ok());
        let mut later = d.clone();
        later.state = DemandState::Withdrawn;
        later.updated_at = now.plus_millis(crate::announcement::CLOCK_SKEW_MS + 1);
        let kind = |bytes: Vec<u8>| {
            verify(&bytes, &trust, now, &limits())
                .map(drop)
                .expect_err("refused")
                .kind()
        };
        assert_eq!(
            kind(signed(&later, "zhengzhou/zhongyuan")),
            "from_the_future"
        );
        assert_eq!(kind(signed(&d, "zhengzhou/erqi")), "wrong_origin");
    }
}
