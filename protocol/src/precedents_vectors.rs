//! The precedents test vectors (`protocol/test-vectors/precedents/*.json`): the origin zone
//! `zhengzhou/zhongyuan` (the keys of [`crate::application_vectors`]) lists its decisions on one
//! of its listings for one scenario (PROTOCOL.md 11.8). A test rebuilds them and compares the
//! bytes, so the files never drift from the code.

use serde::Serialize;

use crate::application::{Granted, Outcome, SignedMessage};
use crate::application_vectors::{TrustedRoot, origin_delegation, origin_node, origin_root};
use crate::canonical::{DEFAULT_MAX_DEPTH, to_canonical};
use crate::ids::{ContentId, ZoneId};
use crate::keys::Domain;
use crate::listing::DeliveryMode;
use crate::precedents::{MAX_PRECEDENTS_BYTES, Precedent, Precedents, sign};
use crate::time::Timestamp;
use crate::vectors::NOW;

/// The question a list answers, as stored in a vector.
#[derive(Debug, Clone, Serialize)]
pub struct QuestionVector {
    /// The zone asked about.
    pub zone: String,
    /// The listing, in text form.
    pub listing_id: String,
    /// The scenario.
    pub scenario: String,
}

/// One precedents vector, as stored in `test-vectors/precedents/<name>.json`. Byte fields are
/// lowercase hex.
#[derive(Debug, Clone, Serialize)]
pub struct PrecedentsVector {
    /// File name without `.json`.
    pub name: String,
    /// What the case shows.
    pub description: String,
    /// The roots the verifier trusts.
    pub trust: Vec<TrustedRoot>,
    /// The question asked, which the list must answer.
    pub question: QuestionVector,
    /// **The input**: the signed list.
    pub list: String,
    /// Its body, as carried.
    pub body: String,
    /// Its id, as carried, in text form.
    pub id: String,
    /// Exactly the bytes its signature covers: a domain tag followed by the body as signed.
    pub signing_input: String,
    /// The verifier's clock, in milliseconds since the Unix epoch.
    pub now: u64,
    /// The size cap the verifier applies, in bytes ([`MAX_PRECEDENTS_BYTES`]).
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
const SCENARIO: &str = "企业贷款授信审查";

fn zone(id: &str) -> ZoneId {
    id.parse().expect("a valid zone literal")
}

/// The listing of the vectors.
pub fn listing_id() -> ContentId {
    ContentId::of(b"a zhengzhou/zhongyuan listing")
}

/// The list of the vectors: an approval of Xuchang's application 42 (60 days, 5000 calls in a
/// sandbox, authorisation 7) and, before it, a rejection of the zone's own buyer's application
/// 3, listed ten minutes before [`NOW`].
pub fn list() -> Precedents {
    let approved_at = Timestamp(NOW.0 - 30 * MINUTE_MS);
    Precedents {
        zone: zone(ZONE),
        listing_id: listing_id(),
        scenario: SCENARIO.into(),
        issued_at: Timestamp(NOW.0 - 10 * MINUTE_MS),
        decisions: vec![
            Precedent {
                applicant: zone("xuchang/yuzhou"),
                application: 42,
                decided_at: approved_at,
                outcome: Outcome::Approved(Granted {
                    authorization: 7,
                    delivery_mode: DeliveryMode::Sandbox,
                    duration_days: 60,
                    usage_limit: 5000,
                    expires_at: approved_at.plus_millis(60 * DAY_MS),
                }),
            },
            Precedent {
                applicant: zone(ZONE),
                application: 3,
                decided_at: Timestamp(NOW.0 - 2 * DAY_MS),
                outcome: Outcome::Rejected {
                    reason: "用途超出场景范围".into(),
                },
            },
        ],
    }
}

fn trust() -> Vec<TrustedRoot> {
    vec![TrustedRoot {
        exchange: "zhengzhou".into(),
        root_public_key: origin_root().public().to_string(),
    }]
}

fn question(scenario: &str) -> QuestionVector {
    QuestionVector {
        zone: ZONE.into(),
        listing_id: listing_id().to_string(),
        scenario: scenario.into(),
    }
}

fn vector(
    name: &str,
    description: &str,
    signed: &SignedMessage,
    signed_over: (Domain, &[u8]),
    asked: QuestionVector,
    error: Option<&str>,
) -> PrecedentsVector {
    PrecedentsVector {
        name: name.into(),
        description: description.into(),
        trust: trust(),
        question: asked,
        list: hex::encode(signed.to_bytes()),
        body: hex::encode(&signed.body),
        id: signed.id.to_string(),
        signing_input: hex::encode(signed_over.0.signing_input(signed_over.1)),
        now: NOW.0,
        max_size: MAX_PRECEDENTS_BYTES,
        max_depth: DEFAULT_MAX_DEPTH,
        valid: error.is_none(),
        error: error.map(str::to_owned),
    }
}

/// Every precedents vector, in a fixed order.
pub fn all() -> Vec<PrecedentsVector> {
    let delegation = || origin_delegation(ZONE);
    let valid = sign(&list(), &origin_node(), delegation());
    let over = |s: &SignedMessage| (Domain::ApplicationPrecedents, s.body.clone());
    let mut out = Vec::new();
    let (d, b) = over(&valid);
    out.push(vector(
        "precedents-valid",
        "zhengzhou/zhongyuan lists an approval of an application of xuchang/yuzhou and, before \
         it, a rejection of its own buyer's, ten minutes before now",
        &valid,
        (d, &b),
        question(SCENARIO),
        None,
    ));

    let mut tampered = valid.clone();
    let mut changed = list();
    changed.decisions.pop();
    tampered.body = to_canonical(&changed).expect("encodes");
    tampered.id = ContentId::of(&tampered.body);
    out.push(vector(
        "precedents-invalid-tampered-body",
        "the rejection removed after signing, id recomputed",
        &tampered,
        (Domain::ApplicationPrecedents, &valid.body),
        question(SCENARIO),
        Some("bad_signature"),
    ));

    let body = to_canonical(&list()).expect("encodes");
    let wrong_domain = SignedMessage::seal(
        Domain::ApplicationDecision,
        body.clone(),
        &origin_node(),
        delegation(),
    );
    out.push(vector(
        "precedents-invalid-wrong-domain",
        "the list's body signed under the application-decision tag",
        &wrong_domain,
        (Domain::ApplicationDecision, &body),
        question(SCENARIO),
        Some("bad_signature"),
    ));

    out.push(vector(
        "precedents-invalid-not-asked",
        "a valid list, offered as the answer to a question about another scenario",
        &valid,
        (d, &b),
        question("企业信用评价"),
        Some("not_asked"),
    ));

    let mut reversed = list();
    reversed.decisions.reverse();
    let oldest_first = sign(&reversed, &origin_node(), delegation());
    let (d2, b2) = over(&oldest_first);
    out.push(vector(
        "precedents-invalid-oldest-first",
        "the same decisions, oldest first",
        &oldest_first,
        (d2, &b2),
        question(SCENARIO),
        Some("invalid_precedents"),
    ));

    let other_zone = sign(&list(), &origin_node(), origin_delegation("zhengzhou/erqi"));
    let (d3, b3) = over(&other_zone);
    out.push(vector(
        "precedents-invalid-wrong-origin",
        "a zhengzhou/erqi node, validly delegated, signs the list of zhengzhou/zhongyuan",
        &other_zone,
        (d3, &b3),
        question(SCENARIO),
        Some("wrong_origin"),
    ));
    out
}
