//! The conformance test vectors, built from fixed inputs.
//!
//! `protocol/test-vectors/*.json` are exactly what [`all`] produces; a test rebuilds them and
//! compares the bytes, so the files can never drift from the code. Keys come from fixed seeds and
//! ed25519 signatures are deterministic, so every byte is reproducible.

use serde::Serialize;

use crate::announcement::{
    AnnouncementKind, Delegation, Delisting, Envelope, Revocation, SignedDelegation,
};
use crate::canonical::{DEFAULT_MAX_DEPTH, DEFAULT_MAX_SIZE};
use crate::ids::{ExchangeId, ZoneId};
use crate::keys::{Domain, Keypair};
use crate::listing::{
    Classification, DeliveryMode, Listing, ListingDraft, Pricing, PricingModel, ProductForm,
    Provider, RegistrationRef, Right, UpdateFrequency,
};
use crate::time::Timestamp;

/// One test vector, as stored in `test-vectors/<name>.json`. Byte fields are lowercase hex.
#[derive(Debug, Clone, Serialize)]
pub struct Vector {
    /// File name without `.json`.
    pub name: String,
    /// What the case shows.
    pub description: String,
    /// The envelope kind (`listing`, `delisting`, `revocation`).
    pub kind: AnnouncementKind,
    /// The exchange whose root key the verifier trusts.
    pub exchange: String,
    /// The trusted root public key of `exchange`.
    pub root_public_key: String,
    /// Node keys the verifier has already seen revoked by `exchange` (usually none).
    pub revoked_keys: Vec<String>,
    /// Canonical CBOR of the signed delegation carried in the envelope; empty when it has none.
    pub delegation: String,
    /// The key that made the envelope's signature (for valid vectors, the signer `verify`
    /// reports).
    pub signer_public_key: String,
    /// The body bytes as carried in the envelope (canonical CBOR, except where that is the fault).
    pub body: String,
    /// The id carried in the envelope, in text form; in valid vectors, the content id of `body`.
    pub id: String,
    /// Exactly the bytes the signature covers: the domain tag of `kind` followed by `body`, except
    /// in the vectors whose fault is the signature itself (their description says what it covers).
    pub signing_input: String,
    /// The signature carried in the envelope.
    pub signature: String,
    /// The full envelope as sent on the wire.
    pub envelope: String,
    /// The verifier's clock, in milliseconds since the Unix epoch.
    pub now: u64,
    /// The size cap the verifier applies, in bytes.
    pub max_size: usize,
    /// The nesting cap the verifier applies.
    pub max_depth: usize,
    /// Whether verification succeeds.
    pub valid: bool,
    /// When invalid, the error kind (`VerifyError::kind`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The verifier's clock in every vector: 2026-06-01T00:00:00Z.
pub const NOW: Timestamp = Timestamp(1_780_272_000_000);
const DAY_MS: u64 = 86_400_000;

/// The Xuchang exchange root key of the vectors (seed `0x11` × 32).
pub fn root() -> Keypair {
    Keypair::from_seed(&[0x11; 32])
}

/// The node key of the vectors (seed `0x22` × 32), a node of `xuchang/yuzhou`.
pub fn node() -> Keypair {
    Keypair::from_seed(&[0x22; 32])
}

/// A root key nobody trusts (seed `0x33` × 32).
pub fn stranger() -> Keypair {
    Keypair::from_seed(&[0x33; 32])
}

fn exchange() -> ExchangeId {
    lit("xuchang")
}

fn zone() -> ZoneId {
    lit("xuchang/yuzhou")
}

fn delegation_signed_by(
    root: &Keypair,
    not_before: Timestamp,
    not_after: Timestamp,
) -> SignedDelegation {
    SignedDelegation::sign(
        Delegation {
            exchange: exchange(),
            zone: zone(),
            node_key: node().public(),
            not_before,
            not_after,
        },
        root,
    )
}

/// The valid delegation of the vectors: 30 days before [`NOW`] to 365 days after.
pub fn delegation() -> SignedDelegation {
    delegation_signed_by(
        &root(),
        Timestamp(NOW.0 - 30 * DAY_MS),
        NOW.plus_millis(365 * DAY_MS),
    )
}

/// The example listing of the API (a credit verification service in Yuzhou).
pub fn credit_draft() -> ListingDraft {
    ListingDraft {
        title: "禹州市企业信用核验接口".into(),
        description: "按统一社会信用代码核验企业登记与信用状态".into(),
        provider: Provider {
            id: lit("yuzhou-credit-center"),
            name: "禹州市信用中心".into(),
        },
        category: "credit".into(),
        product_form: ProductForm::Verification,
        classification: Classification::General,
        contains_personal_info: false,
        delivery_modes: vec![DeliveryMode::Verification, DeliveryMode::Api],
        pricing: Pricing {
            model: PricingModel::PerCall,
            amount: Some("0.50".into()),
            currency: Some("CNY".into()),
        },
        scenarios: vec!["企业贷款授信审查".into()],
        update_frequency: UpdateFrequency::Daily,
        rights: vec![Right::Holding, Right::Operating],
        keywords: vec![],
        spatial_coverage: None,
        temporal_coverage: None,
        registration: None,
    }
}

/// Parses an identifier literal of this file; a bad literal is a bug here, caught by the tests.
fn lit<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse()
        .unwrap_or_else(|e| panic!("invalid literal {s:?} in the test vectors: {e:?}"))
}

fn health_draft() -> ListingDraft {
    ListingDraft {
        title: "许昌市慢病随访统计模型服务 (Chronic disease follow-up model)".into(),
        description: "基于脱敏随访记录训练的风险评分模型, 仅输出模型结果, 原始数据不出域".into(),
        provider: Provider {
            id: lit("xuchang-health-commission"),
            name: "许昌市卫生健康委员会".into(),
        },
        category: "healthcare".into(),
        product_form: ProductForm::Model,
        classification: Classification::General,
        contains_personal_info: true,
        delivery_modes: vec![DeliveryMode::ModelOutput, DeliveryMode::PrivacyComputing],
        pricing: Pricing {
            model: PricingModel::Subscription,
            amount: Some("12000".into()),
            currency: Some("CNY".into()),
        },
        scenarios: vec!["商业健康保险精算".into(), "公共卫生研究".into()],
        update_frequency: UpdateFrequency::Monthly,
        rights: vec![Right::ProcessingUse, Right::Operating],
        keywords: vec!["慢病".into(), "chronic disease".into()],
        spatial_coverage: Some("许昌市".into()),
        temporal_coverage: Some("2019-01 至今".into()),
        registration: Some(RegistrationRef {
            certificate_id: "XCDE-2025-000123".into(),
            issuer: "许昌数据交易中心".into(),
        }),
    }
}

fn hex_of(b: &[u8]) -> String {
    hex::encode(b)
}

/// Builds a vector from an envelope and what the verifier should conclude.
fn vector(
    name: &str,
    description: &str,
    env: &Envelope,
    wire: Vec<u8>,
    error: Option<&str>,
) -> Vector {
    let signer = match (&env.delegation, env.kind) {
        (Some(d), _) => d.delegation.node_key,
        (None, AnnouncementKind::Revocation) => root().public(),
        // Every node-signed envelope here is signed by `node()`, also the one that lost its
        // delegation.
        (None, _) => node().public(),
    };
    Vector {
        name: name.into(),
        description: description.into(),
        kind: env.kind,
        exchange: exchange().to_string(),
        root_public_key: root().public().to_string(),
        revoked_keys: Vec::new(),
        delegation: env
            .delegation
            .as_ref()
            .map(|d| hex_of(&d.to_bytes()))
            .unwrap_or_default(),
        signer_public_key: signer.to_string(),
        body: hex_of(&env.body),
        id: env.id.to_string(),
        signing_input: hex_of(&env.kind.domain().signing_input(&env.body)),
        signature: hex_of(&env.signature.0),
        envelope: hex_of(&wire),
        now: NOW.0,
        max_size: DEFAULT_MAX_SIZE,
        max_depth: DEFAULT_MAX_DEPTH,
        valid: error.is_none(),
        error: error.map(str::to_owned),
    }
}

fn listing_v1() -> Listing {
    Listing::first_version(credit_draft(), zone(), Timestamp(NOW.0 - DAY_MS))
}

fn listing_envelope(listing: &Listing) -> Envelope {
    Envelope::listing(listing, &node(), delegation())
}

/// Every vector, in file-name order.
pub fn all() -> Vec<Vector> {
    let mut out = Vec::new();
    let v1 = listing_v1();

    let env = listing_envelope(&v1);
    out.push(vector(
        "listing-valid-v1",
        "Version 1 of a listing (the API example): no listing_id, id = SHA-256 of the body.",
        &env,
        env.to_bytes(),
        None,
    ));

    let mut d2 = credit_draft();
    d2.description.push_str("; 新增失信被执行人状态");
    let v2 = v1.next_version(d2, Timestamp(NOW.0 - 3_600_000));
    let env = listing_envelope(&v2);
    out.push(vector(
        "listing-valid-v2",
        "Version 2 of the same listing: listing_id carries the id of version 1.",
        &env,
        env.to_bytes(),
        None,
    ));

    let full = Listing::first_version(health_draft(), zone(), Timestamp(NOW.0 - 2 * DAY_MS));
    let env = listing_envelope(&full);
    out.push(vector("listing-valid-all-fields", "A personal-information product with only in-domain delivery modes and every optional field present.", &env, env.to_bytes(), None));

    let delisting = Delisting {
        listing_id: v1.id(),
        version: 2,
        origin: zone(),
        reason: "数据源停止更新".into(),
        delisted_at: Timestamp(NOW.0 - 60_000),
    };
    let env = Envelope::delisting(&delisting, &node(), delegation());
    out.push(vector(
        "delisting-valid",
        "Delisting of the listing of listing-valid-v1.",
        &env,
        env.to_bytes(),
        None,
    ));

    let revocation = Revocation {
        exchange: exchange(),
        key: stranger().public(),
        reason: "key compromised".into(),
        revoked_at: Timestamp(NOW.0 - 60_000),
    };
    let env = Envelope::revocation(&revocation, &root());
    out.push(vector(
        "revocation-valid",
        "A root-signed key revocation: no delegation, signer is the root key.",
        &env,
        env.to_bytes(),
        None,
    ));

    let mut env = listing_envelope(&v1);
    let signed_input = Domain::Listing.signing_input(&env.body);
    let pos = env.body.len() - 1;
    env.body[pos] ^= 0x01;
    let mut v = vector(
        "invalid-tampered-body",
        "The last byte of the body changed after signing: the signature no longer verifies. body is the tampered body as carried; id, also as carried, is still the hash of the original body; signing_input is what the signature covers, the listing tag followed by the original body.",
        &env,
        env.to_bytes(),
        Some("bad_signature"),
    );
    v.signing_input = hex_of(&signed_input);
    out.push(v);

    let body = v1.canonical_bytes();
    let mut env = Envelope::seal(
        AnnouncementKind::Listing,
        body.clone(),
        &node(),
        Some(delegation()),
    );
    env.signature = node().sign(Domain::Delisting, &body);
    let mut v = vector(
        "invalid-wrong-domain-tag",
        "The listing body signed under the delisting domain tag: signing_input is what the signature covers, the delisting tag followed by body, while a listing envelope is verified over the listing tag followed by body.",
        &env,
        env.to_bytes(),
        Some("bad_signature"),
    );
    v.signing_input = hex_of(&Domain::Delisting.signing_input(&body));
    out.push(v);

    let expired = delegation_signed_by(
        &root(),
        Timestamp(NOW.0 - 400 * DAY_MS),
        Timestamp(NOW.0 - DAY_MS),
    );
    let env = Envelope::listing(&v1, &node(), expired);
    out.push(vector(
        "invalid-expired-delegation",
        "The delegation ended one day before the verifier's clock.",
        &env,
        env.to_bytes(),
        Some("delegation_expired"),
    ));

    let untrusted = delegation_signed_by(
        &stranger(),
        Timestamp(NOW.0 - 30 * DAY_MS),
        NOW.plus_millis(365 * DAY_MS),
    );
    let env = Envelope::listing(&v1, &node(), untrusted);
    out.push(vector(
        "invalid-untrusted-root",
        "The delegation is signed by a root key the verifier does not trust for xuchang.",
        &env,
        env.to_bytes(),
        Some("untrusted_root"),
    ));

    let mut env = listing_envelope(&v1);
    env.id = crate::ids::ContentId::of(b"another body");
    out.push(vector(
        "invalid-id-mismatch",
        "The envelope id is not the SHA-256 of the body.",
        &env,
        env.to_bytes(),
        Some("id_mismatch"),
    ));

    let mut elsewhere = v1.clone();
    elsewhere.origin = lit("xuchang/changge");
    let env = listing_envelope(&elsewhere);
    out.push(vector(
        "invalid-wrong-origin",
        "A yuzhou node signs a listing whose origin is changge.",
        &env,
        env.to_bytes(),
        Some("wrong_origin"),
    ));

    let raw_body = cbor4ii::serde::to_vec(Vec::new(), &v1).unwrap_or_default();
    let env = Envelope::seal(
        AnnouncementKind::Listing,
        raw_body,
        &node(),
        Some(delegation()),
    );
    out.push(vector(
        "invalid-non-canonical-body",
        "A correctly signed body whose map keys are in declaration order, not canonical order.",
        &env,
        env.to_bytes(),
        Some("non_canonical"),
    ));

    let env = listing_envelope(&v1);
    let mut wire = env.to_bytes();
    // The envelope's first entry is "v": 1, encoded 61 76 01; spell the 1 as 18 01.
    wire.splice(3..4, [0x18, 0x01]);
    out.push(vector(
        "invalid-non-canonical-envelope",
        "The envelope's version number in a two-byte form where one byte suffices.",
        &env,
        wire,
        Some("non_canonical"),
    ));

    let env = listing_envelope(&v1);
    out.push(vector(
        "invalid-oversized",
        "An envelope over the 256 KiB cap: an extra entry carrying a 262,144-byte byte string.",
        &env,
        with_extra_entry(&env.to_bytes(), &padding(DEFAULT_MAX_SIZE)),
        Some("too_large"),
    ));

    let env = listing_envelope(&v1);
    let mut deep = vec![0x81u8; 40];
    deep.push(0x00);
    out.push(vector(
        "invalid-too-deep",
        "An extra envelope entry nesting 40 arrays, past the depth cap of 16.",
        &env,
        with_extra_entry(&env.to_bytes(), &deep),
        Some("too_deep"),
    ));

    let mut env = listing_envelope(&v1);
    env.delegation = None;
    out.push(vector(
        "invalid-missing-delegation",
        "A listing signed by the node key, sent without its delegation.",
        &env,
        env.to_bytes(),
        Some("missing_delegation"),
    ));

    let env = listing_envelope(&v1);
    let mut v = vector(
        "invalid-revoked-key",
        "The envelope of listing-valid-v1, verified after xuchang revoked the node key (revoked_keys).",
        &env,
        env.to_bytes(),
        Some("revoked_key"),
    );
    v.revoked_keys = vec![node().public().to_string()];
    out.push(v);

    let elsewhere = Revocation {
        exchange: lit("xinzheng"),
        key: stranger().public(),
        reason: "key compromised".into(),
        revoked_at: Timestamp(NOW.0 - 60_000),
    };
    let env = Envelope::revocation(&elsewhere, &root());
    out.push(vector("invalid-revocation-other-exchange", "The xuchang root signs a revocation in the name of exchange xinzheng, for which it is not trusted.", &env, env.to_bytes(), Some("wrong_origin")));

    let blank = Delisting {
        reason: " \n ".into(),
        ..delisting
    };
    let env = Envelope::delisting(&blank, &node(), delegation());
    out.push(vector(
        "invalid-delisting-blank-reason",
        "A delisting whose reason is only white space.",
        &env,
        env.to_bytes(),
        Some("invalid_body"),
    ));

    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn padding(len: usize) -> Vec<u8> {
    let mut item = Vec::with_capacity(len + 5);
    item.push(0x5a);
    item.extend_from_slice(&(len as u32).to_be_bytes());
    item.resize(len + 5, 0);
    item
}

/// Inserts `"x": item` right after the envelope's first entry (`"v"`, which sorts first; `"x"`
/// sorts second), keeping the key order canonical so the decoder reaches `item`.
fn with_extra_entry(envelope: &[u8], item: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(envelope.len() + item.len() + 2);
    out.push(envelope[0] + 1);
    out.extend_from_slice(&envelope[1..4]);
    out.extend_from_slice(&[0x61, b'x']);
    out.extend_from_slice(item);
    out.extend_from_slice(&envelope[4..]);
    out
}
