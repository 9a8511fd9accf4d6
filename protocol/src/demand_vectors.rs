//! The demand test vectors (`protocol/test-vectors/demands/*.json`): the origin zone
//! `zhengzhou/zhongyuan` (the keys of [`crate::application_vectors`]) shares a buyer's demand
//! and later its withdrawal (PROTOCOL.md 11.9). A test rebuilds them and compares the bytes, so
//! the files never drift from the code.

use serde::Serialize;

use crate::application::SignedMessage;
use crate::application_vectors::{TrustedRoot, origin_delegation, origin_node, origin_root};
use crate::canonical::{DEFAULT_MAX_DEPTH, to_canonical};
use crate::demand::{Demand, DemandBudget, DemandState, MAX_DEMAND_BYTES, sign};
use crate::ids::ContentId;
use crate::keys::Domain;
use crate::listing::DeliveryMode;
use crate::time::Timestamp;
use crate::vectors::NOW;

/// One demand vector, as stored in `test-vectors/demands/<name>.json`. Byte fields are
/// lowercase hex.
#[derive(Debug, Clone, Serialize)]
pub struct DemandVector {
    /// File name without `.json`.
    pub name: String,
    /// What the case shows.
    pub description: String,
    /// The roots the verifier trusts.
    pub trust: Vec<TrustedRoot>,
    /// **The input**: the signed demand.
    pub demand: String,
    /// Its body, as carried.
    pub body: String,
    /// Its id, as carried, in text form.
    pub id: String,
    /// Exactly the bytes its signature covers: a domain tag followed by the body as signed.
    pub signing_input: String,
    /// The verifier's clock, in milliseconds since the Unix epoch.
    pub now: u64,
    /// The size cap the verifier applies, in bytes ([`MAX_DEMAND_BYTES`]).
    pub max_size: usize,
    /// The nesting cap the verifier applies.
    pub max_depth: usize,
    /// Whether verification succeeds.
    pub valid: bool,
    /// When invalid, the error kind (`VerifyError::kind`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

const MINUTE_MS: u64 = 60_000;
const DAY_MS: u64 = 86_400_000;
const ZONE: &str = "zhengzhou/zhongyuan";

/// The demand of the vectors: number 12 of `zhengzhou/zhongyuan`, enterprise credit data for
/// loan review by API or sandbox, 50000 to 120000.50 CNY, posted an hour before [`NOW`] with a
/// deadline thirty days after.
pub fn demand() -> Demand {
    let posted_at = Timestamp(NOW.0 - 60 * MINUTE_MS);
    Demand {
        zone: ZONE.parse().expect("a valid zone literal"),
        number: 12,
        state: DemandState::Open,
        category: "credit".into(),
        title: "企业信用数据".into(),
        description: "用于中小企业贷前审查的工商与司法信用数据".into(),
        scenario: "企业贷款授信审查".into(),
        delivery_modes: vec![DeliveryMode::Api, DeliveryMode::Sandbox],
        budget: DemandBudget {
            min: "50000".into(),
            max: "120000.50".into(),
            currency: "CNY".into(),
        },
        deadline: posted_at.plus_millis(30 * DAY_MS),
        posted_at,
        updated_at: posted_at,
    }
}

/// The same demand withdrawn by its buyer ten minutes before [`NOW`].
pub fn withdrawn() -> Demand {
    let mut d = demand();
    d.state = DemandState::Withdrawn;
    d.updated_at = Timestamp(NOW.0 - 10 * MINUTE_MS);
    d
}

fn trust() -> Vec<TrustedRoot> {
    vec![TrustedRoot {
        exchange: "zhengzhou".into(),
        root_public_key: origin_root().public().to_string(),
    }]
}

fn vector(
    name: &str,
    description: &str,
    signed: &SignedMessage,
    signed_over: (Domain, &[u8]),
    error: Option<&str>,
) -> DemandVector {
    DemandVector {
        name: name.into(),
        description: description.into(),
        trust: trust(),
        demand: hex::encode(signed.to_bytes()),
        body: hex::encode(&signed.body),
        id: signed.id.to_string(),
        signing_input: hex::encode(signed_over.0.signing_input(signed_over.1)),
        now: NOW.0,
        max_size: MAX_DEMAND_BYTES,
        max_depth: DEFAULT_MAX_DEPTH,
        valid: error.is_none(),
        error: error.map(str::to_owned),
    }
}

/// Every demand vector, in a fixed order.
pub fn all() -> Vec<DemandVector> {
    let delegation = || origin_delegation(ZONE);
    let mut out = Vec::new();
    let valid = sign(&demand(), &origin_node(), delegation());
    out.push(vector(
        "demand-valid",
        "zhengzhou/zhongyuan shares its open demand 12, posted an hour before now",
        &valid,
        (Domain::Demand, &valid.body),
        None,
    ));

    let gone = sign(&withdrawn(), &origin_node(), delegation());
    out.push(vector(
        "demand-valid-withdrawn",
        "the same demand withdrawn ten minutes before now: a later updated_at replaces the open \
         one",
        &gone,
        (Domain::Demand, &gone.body),
        None,
    ));

    let mut tampered = valid.clone();
    let mut changed = demand();
    changed.budget.max = "900000".into();
    tampered.body = to_canonical(&changed).expect("encodes");
    tampered.id = ContentId::of(&tampered.body);
    out.push(vector(
        "demand-invalid-tampered-body",
        "the budget's max raised after signing, id recomputed",
        &tampered,
        (Domain::Demand, &valid.body),
        Some("bad_signature"),
    ));

    let body = to_canonical(&demand()).expect("encodes");
    let wrong_domain = SignedMessage::seal(
        Domain::ApplicationPrecedents,
        body.clone(),
        &origin_node(),
        delegation(),
    );
    out.push(vector(
        "demand-invalid-wrong-domain",
        "the demand's body signed under the application-precedents tag",
        &wrong_domain,
        (Domain::ApplicationPrecedents, &body),
        Some("bad_signature"),
    ));

    let other_zone = sign(
        &demand(),
        &origin_node(),
        origin_delegation("zhengzhou/erqi"),
    );
    out.push(vector(
        "demand-invalid-wrong-origin",
        "a zhengzhou/erqi node, validly delegated, signs a demand of zhengzhou/zhongyuan",
        &other_zone,
        (Domain::Demand, &other_zone.body),
        Some("wrong_origin"),
    ));

    let mut no_modes = demand();
    no_modes.delivery_modes.clear();
    let invalid = sign(&no_modes, &origin_node(), delegation());
    out.push(vector(
        "demand-invalid-no-delivery-mode",
        "a demand that accepts no delivery mode",
        &invalid,
        (Domain::Demand, &invalid.body),
        Some("invalid_demand"),
    ));

    let mut ahead = withdrawn();
    ahead.updated_at = NOW.plus_millis(10 * MINUTE_MS);
    let future = sign(&ahead, &origin_node(), delegation());
    out.push(vector(
        "demand-invalid-from-the-future",
        "a withdrawal dated ten minutes after now, beyond the five minutes of clock skew",
        &future,
        (Domain::Demand, &future.body),
        Some("from_the_future"),
    ));
    out
}
