//! The cross-exchange application test vectors (`protocol/test-vectors/applications/*.json`):
//! a `xuchang/yuzhou` node (the keys and clock of [`crate::vectors`]) forwards an application to
//! the origin zone `zhengzhou/zhongyuan`, whose node answers it. A test rebuilds them and
//! compares the bytes, so the files never drift from the code.

use serde::Serialize;

use crate::announcement::{Delegation, SignedDelegation};
use crate::application::{
    ApplicationDecision, ApplicationRequest, Granted, MAX_MESSAGE_BYTES, Outcome, SignedMessage,
};
use crate::canonical::{DEFAULT_MAX_DEPTH, to_canonical};
use crate::ids::{ContentId, PartyId, ZoneId};
use crate::keys::{Domain, Keypair};
use crate::listing::DeliveryMode;
use crate::time::Timestamp;
use crate::vectors::{NOW, delegation, node, root};

/// A root key the verifier trusts for an exchange.
#[derive(Debug, Clone, Serialize)]
pub struct TrustedRoot {
    /// The exchange.
    pub exchange: String,
    /// Its root public key.
    pub root_public_key: String,
}

/// One application vector, as stored in `test-vectors/applications/<name>.json`. Byte fields
/// are lowercase hex.
#[derive(Debug, Clone, Serialize)]
pub struct ApplicationVector {
    /// File name without `.json`.
    pub name: String,
    /// What the case shows.
    pub description: String,
    /// Which message is verified: `request` or `decision`.
    pub message: String,
    /// The roots the verifier trusts: both exchanges'.
    pub trust: Vec<TrustedRoot>,
    /// The signed request. **The input** of a `request` vector; in a `decision` vector, the
    /// request the decision is checked against, which verifies.
    pub request: String,
    /// **The input** of a `decision` vector: the signed decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// The body of the message verified, as carried.
    pub body: String,
    /// The id of the message verified, as carried, in text form.
    pub id: String,
    /// Exactly the bytes the signature of the message verified covers: a domain tag followed
    /// by the body as signed.
    pub signing_input: String,
    /// The verifier's clock, in milliseconds since the Unix epoch.
    pub now: u64,
    /// The size cap the verifier applies, in bytes ([`MAX_MESSAGE_BYTES`]).
    pub max_size: usize,
    /// The nesting cap the verifier applies.
    pub max_depth: usize,
    /// Whether verification succeeds.
    pub valid: bool,
    /// When invalid, the error kind (`VerifyError::kind`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

const DAY_MS: u64 = 86_400_000;

fn lit<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("a valid literal")
}

/// The Zhengzhou exchange root key of the vectors (seed `0x44` × 32).
pub fn origin_root() -> Keypair {
    Keypair::from_seed(&[0x44; 32])
}

/// The node key of the origin zone `zhengzhou/zhongyuan` (seed `0x55` × 32).
pub fn origin_node() -> Keypair {
    Keypair::from_seed(&[0x55; 32])
}

/// A Zhengzhou delegation of [`origin_node`] to `zone`, 30 days before [`NOW`] to 365 after.
pub fn origin_delegation(zone: &str) -> SignedDelegation {
    SignedDelegation::sign(
        Delegation {
            exchange: lit("zhengzhou"),
            zone: lit(zone),
            node_key: origin_node().public(),
            not_before: Timestamp(NOW.0 - 30 * DAY_MS),
            not_after: NOW.plus_millis(365 * DAY_MS),
        },
        &origin_root(),
    )
}

/// The request of the vectors: application 42 of `xuchang/yuzhou`, for a Zhengzhou listing in
/// a sandbox, 90 days and 10000 calls, signed an hour before [`NOW`].
pub fn request() -> ApplicationRequest {
    let listing: ContentId =
        lit("sha256:5c0e2b8d4f6a71e3c9b2d8a4f0e6c3b1a7d5e9f2c4b6a8d0e2f4a6c8b0d2e4f6");
    ApplicationRequest {
        applicant: lit("xuchang/yuzhou"),
        application: 42,
        origin: lit("zhengzhou/zhongyuan"),
        listing_id: listing,
        content_id: listing,
        buyer: lit("xuchang-demo-buyer"),
        scenario: "企业贷款授信审查".into(),
        purpose: "Credit review of small-business loan applicants in Xuchang".into(),
        delivery_mode: DeliveryMode::Sandbox,
        duration_days: 90,
        usage_limit: 10_000,
        issued_at: Timestamp(NOW.0 - 3_600_000),
    }
}

/// The signed request of the vectors.
pub fn signed_request() -> SignedMessage {
    SignedMessage::request(&request(), &node(), delegation())
}

/// When the origin decided in the vectors: ten minutes before [`NOW`].
const DECIDED_AT: Timestamp = Timestamp(NOW.0 - 600_000);

/// The approval of the vectors: authorisation 7 at the origin, narrowed to 60 days and 5000
/// calls in the sandbox asked for.
pub fn approval() -> ApplicationDecision {
    ApplicationDecision {
        request: signed_request().id,
        decider: lit("zhengzhou/zhongyuan"),
        outcome: Outcome::Approved(Granted {
            authorization: 7,
            delivery_mode: DeliveryMode::Sandbox,
            duration_days: 60,
            usage_limit: 5_000,
            expires_at: DECIDED_AT.plus_millis(60 * DAY_MS),
        }),
        decided_at: DECIDED_AT,
    }
}

fn approval_with(change: impl FnOnce(&mut Granted)) -> ApplicationDecision {
    let mut d = approval();
    if let Outcome::Approved(g) = &mut d.outcome {
        change(g);
    }
    d
}

/// Signs `decision` as the origin node of `zhongyuan`.
pub fn signed_decision(decision: &ApplicationDecision) -> SignedMessage {
    SignedMessage::decision(
        decision,
        &origin_node(),
        origin_delegation("zhengzhou/zhongyuan"),
    )
}

fn trust() -> Vec<TrustedRoot> {
    vec![
        TrustedRoot {
            exchange: "xuchang".into(),
            root_public_key: root().public().to_string(),
        },
        TrustedRoot {
            exchange: "zhengzhou".into(),
            root_public_key: origin_root().public().to_string(),
        },
    ]
}

/// A vector verifying `signed`, whose signature covers `domain` followed by `signed_body`.
fn vector(
    name: &str,
    description: &str,
    request: &SignedMessage,
    decision: Option<&SignedMessage>,
    signed_over: (Domain, &[u8]),
    error: Option<&str>,
) -> ApplicationVector {
    let verified = decision.unwrap_or(request);
    ApplicationVector {
        name: name.into(),
        description: description.into(),
        message: if decision.is_some() {
            "decision"
        } else {
            "request"
        }
        .into(),
        trust: trust(),
        request: hex::encode(request.to_bytes()),
        decision: decision.map(|d| hex::encode(d.to_bytes())),
        body: hex::encode(&verified.body),
        id: verified.id.to_string(),
        signing_input: hex::encode(signed_over.0.signing_input(signed_over.1)),
        now: NOW.0,
        max_size: MAX_MESSAGE_BYTES,
        max_depth: DEFAULT_MAX_DEPTH,
        valid: error.is_none(),
        error: error.map(str::to_owned),
    }
}

fn request_vector(
    name: &str,
    description: &str,
    signed: &SignedMessage,
    error: Option<&str>,
) -> ApplicationVector {
    let over = (Domain::ApplicationRequest, signed.body.as_slice());
    vector(name, description, signed, None, over, error)
}

fn decision_vector(
    name: &str,
    description: &str,
    signed: &SignedMessage,
    error: Option<&str>,
) -> ApplicationVector {
    let over = (Domain::ApplicationDecision, signed.body.as_slice());
    vector(
        name,
        description,
        &signed_request(),
        Some(signed),
        over,
        error,
    )
}

/// The request with `scenario` a list of two texts: what an application naming two scenarios
/// would have to look like on the wire, which no [`ApplicationRequest`] can be.
#[derive(Serialize)]
struct TwoScenarios {
    applicant: ZoneId,
    application: u64,
    origin: ZoneId,
    listing_id: ContentId,
    content_id: ContentId,
    buyer: PartyId,
    scenario: [&'static str; 2],
    purpose: String,
    delivery_mode: DeliveryMode,
    duration_days: u32,
    usage_limit: u64,
    issued_at: Timestamp,
}

fn two_scenarios() -> Vec<u8> {
    let r = request();
    to_canonical(&TwoScenarios {
        applicant: r.applicant,
        application: r.application,
        origin: r.origin,
        listing_id: r.listing_id,
        content_id: r.content_id,
        buyer: r.buyer,
        scenario: ["企业贷款授信审查", "供应链金融风控"],
        purpose: r.purpose,
        delivery_mode: r.delivery_mode,
        duration_days: r.duration_days,
        usage_limit: r.usage_limit,
        issued_at: r.issued_at,
    })
    .unwrap_or_default()
}

/// Every application vector, in file-name order.
pub fn all() -> Vec<ApplicationVector> {
    let request_ok = signed_request();
    let mut out = vec![request_vector(
        "application-request-valid",
        "Application 42 of xuchang/yuzhou for a zhengzhou/zhongyuan listing: one scenario, \
         sandbox delivery, 90 days, 10000 calls, signed an hour before now.",
        &request_ok,
        None,
    )];

    let mut tampered = request_ok.clone();
    let mut changed = request();
    changed.usage_limit = 1_000_000;
    tampered.body = to_canonical(&changed).unwrap_or_default();
    tampered.id = ContentId::of(&tampered.body);
    out.push(vector(
        "application-request-invalid-tampered-body",
        "The usage limit was raised after signing (the id was recomputed): the signature no \
         longer verifies. signing_input shows the original body, which the signature covers.",
        &tampered,
        None,
        (Domain::ApplicationRequest, &request_ok.body),
        Some("bad_signature"),
    ));

    let body = to_canonical(&request()).unwrap_or_default();
    let wrong_domain =
        SignedMessage::seal(Domain::ApplicationDecision, body, &node(), delegation());
    out.push(vector(
        "application-request-invalid-wrong-domain",
        "The request body signed under the decision tag: signing_input shows that tag.",
        &wrong_domain,
        None,
        (Domain::ApplicationDecision, &wrong_domain.body),
        Some("bad_signature"),
    ));

    let two = SignedMessage::seal(
        Domain::ApplicationRequest,
        two_scenarios(),
        &node(),
        delegation(),
    );
    out.push(request_vector(
        "application-request-invalid-two-scenarios",
        "A correctly signed body whose scenario is a list of two texts: one application names \
         one scenario (一场景一申请), and a list is not a request.",
        &two,
        Some("shape"),
    ));

    let mut elsewhere = request();
    elsewhere.applicant = lit("xuchang/changge");
    out.push(request_vector(
        "application-request-invalid-wrong-applicant",
        "A xuchang/yuzhou node signs a request in the name of xuchang/changge.",
        &SignedMessage::request(&elsewhere, &node(), delegation()),
        Some("wrong_origin"),
    ));

    let mut blank = request();
    blank.purpose = " \n ".into();
    out.push(request_vector(
        "application-request-invalid-blank-purpose",
        "A request whose purpose is only white space.",
        &SignedMessage::request(&blank, &node(), delegation()),
        Some("invalid_application"),
    ));

    let mut long = request();
    long.purpose = "x".repeat(MAX_MESSAGE_BYTES);
    out.push(request_vector(
        "application-request-invalid-too-large",
        "A signed request over 16 KiB: refused before anything is decoded.",
        &SignedMessage::request(&long, &node(), delegation()),
        Some("too_large"),
    ));

    out.push(decision_vector(
        "application-decision-valid-approved",
        "zhengzhou/zhongyuan approves the request of application-request-valid, narrowed to \
         60 days and 5000 calls, as authorisation 7; expiry 60 days after the decision.",
        &signed_decision(&approval()),
        None,
    ));

    let rejection = ApplicationDecision {
        outcome: Outcome::Rejected {
            reason: "该场景需先完成数据安全评估 (a security assessment is required first)".into(),
        },
        ..approval()
    };
    out.push(decision_vector(
        "application-decision-valid-rejected",
        "zhengzhou/zhongyuan rejects the request with a reason.",
        &signed_decision(&rejection),
        None,
    ));

    let approved = signed_decision(&approval());
    let mut tampered = approved.clone();
    tampered.body = to_canonical(&approval_with(|g| g.usage_limit = 10_000)).unwrap_or_default();
    tampered.id = ContentId::of(&tampered.body);
    out.push(vector(
        "application-decision-invalid-tampered-body",
        "The granted calls were raised after signing (the id was recomputed): the signature no \
         longer verifies. signing_input shows the original body, which the signature covers.",
        &request_ok,
        Some(&tampered),
        (Domain::ApplicationDecision, &approved.body),
        Some("bad_signature"),
    ));

    let body = to_canonical(&approval()).unwrap_or_default();
    let wrong_domain = SignedMessage::seal(
        Domain::ApplicationRequest,
        body,
        &origin_node(),
        origin_delegation("zhengzhou/zhongyuan"),
    );
    out.push(vector(
        "application-decision-invalid-wrong-domain",
        "The decision body signed under the request tag: signing_input shows that tag.",
        &request_ok,
        Some(&wrong_domain),
        (Domain::ApplicationRequest, &wrong_domain.body),
        Some("bad_signature"),
    ));

    let mut other = request();
    other.application = 43;
    let for_other = ApplicationDecision {
        request: SignedMessage::request(&other, &node(), delegation()).id,
        ..approval()
    };
    out.push(decision_vector(
        "application-decision-invalid-other-request",
        "A valid decision on application 43, checked against the request of application 42.",
        &signed_decision(&for_other),
        Some("wrong_request"),
    ));

    let by_erqi = ApplicationDecision {
        decider: lit("zhengzhou/erqi"),
        ..approval()
    };
    out.push(decision_vector(
        "application-decision-invalid-wrong-decider",
        "A zhengzhou/erqi node, under a valid delegation, decides a request addressed to \
         zhengzhou/zhongyuan.",
        &SignedMessage::decision(
            &by_erqi,
            &origin_node(),
            origin_delegation("zhengzhou/erqi"),
        ),
        Some("wrong_decider"),
    ));

    out.push(decision_vector(
        "application-decision-invalid-widened-calls",
        "An approval granting 20000 calls for the 10000 asked.",
        &signed_decision(&approval_with(|g| g.usage_limit = 20_000)),
        Some("wider_terms"),
    ));

    out.push(decision_vector(
        "application-decision-invalid-widened-mode",
        "An approval granting file delivery for the sandbox asked: the data would leave its \
         domain.",
        &signed_decision(&approval_with(|g| g.delivery_mode = DeliveryMode::File)),
        Some("wider_terms"),
    ));

    out.push(decision_vector(
        "application-decision-invalid-widened-expiry",
        "An approval of 60 days whose expiry is 61 days after the decision.",
        &signed_decision(&approval_with(|g| {
            g.expires_at = DECIDED_AT.plus_millis(61 * DAY_MS);
        })),
        Some("wider_terms"),
    ));

    let blank = ApplicationDecision {
        outcome: Outcome::Rejected { reason: "".into() },
        ..approval()
    };
    out.push(decision_vector(
        "application-decision-invalid-blank-reason",
        "A rejection without a reason.",
        &signed_decision(&blank),
        Some("invalid_decision"),
    ));

    // In the order of the files' names, as a directory listing sorts them.
    out.sort_by_key(|v| format!("{}.json", v.name));
    out
}
