//! Delegations, announcements and their offline verification.
//!
//! An exchange's root key signs a [`Delegation`] for each node key. A node signs the canonical
//! body of a listing or delisting and sends it in an [`Envelope`] together with its delegation,
//! so a receiver that trusts the root key verifies everything without a network call. Root-signed
//! [`Revocation`]s travel in the same envelope, without a delegation. A revocation speaks only
//! for the exchange whose root signed it, and the [`TrustStore`] keeps revocations per exchange.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::canonical::{DecodeError, Limits, from_canonical, to_canonical};
use crate::ids::{ContentId, ExchangeId, ZoneId};
use crate::keys::{Domain, Keypair, PublicKey, Signature};
use crate::listing::{Listing, ValidationError, Violations};
use crate::time::Timestamp;

/// The envelope format version this crate writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// How far in the future a body's timestamp or a delegation's start may be, to absorb clock
/// differences between exchanges: five minutes.
pub const CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

/// Longest accepted `reason` of a delisting or revocation, in characters (Unicode scalar values).
pub const REASON_CHARS: usize = 2000;

/// A root key's statement that `node_key` speaks for `zone` during `[not_before, not_after)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delegation {
    /// The delegating exchange.
    pub exchange: ExchangeId,
    /// The zone the node belongs to; must be a zone of `exchange`.
    pub zone: ZoneId,
    /// The delegated node key.
    pub node_key: PublicKey,
    /// Start of validity (inclusive).
    pub not_before: Timestamp,
    /// End of validity (exclusive).
    pub not_after: Timestamp,
}

/// A delegation with the root key that signed it and its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDelegation {
    /// The statement.
    pub delegation: Delegation,
    /// The exchange root key that signed it; must be one the receiver trusts for `exchange`.
    pub root_key: PublicKey,
    /// Signature by `root_key` over the delegation domain tag and the delegation's canonical CBOR.
    pub signature: Signature,
}

impl SignedDelegation {
    /// Signs `delegation` with `root`.
    pub fn sign(delegation: Delegation, root: &Keypair) -> Self {
        let signature = root.sign(Domain::Delegation, &canonical(&delegation));
        SignedDelegation {
            delegation,
            root_key: root.public(),
            signature,
        }
    }

    /// Canonical CBOR of the whole signed delegation (the form stored in config files, as hex).
    pub fn to_bytes(&self) -> Vec<u8> {
        canonical(self)
    }

    /// Decodes a signed delegation (from a config file or elsewhere untrusted).
    ///
    /// # Errors
    /// [`DecodeError`] if it is not the canonical encoding of a signed delegation.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        from_canonical(bytes, &Limits::default())
    }

    /// Checks the chain: `root_key` trusted for the exchange, signature valid, zone inside the
    /// exchange, node key not revoked by that exchange, validity covering `now`.
    ///
    /// # Errors
    /// The first failed check, as a [`VerifyError`].
    pub fn verify(&self, trust: &TrustStore, now: Timestamp) -> Result<(), VerifyError> {
        let d = &self.delegation;
        let roots = trust
            .roots
            .get(&d.exchange)
            .ok_or_else(|| VerifyError::UnknownExchange {
                exchange: d.exchange.clone(),
            })?;
        if !roots.contains(&self.root_key) {
            return Err(VerifyError::UntrustedRoot {
                exchange: d.exchange.clone(),
            });
        }
        self.root_key
            .verify(Domain::Delegation, &canonical(d), &self.signature)
            .map_err(|_| VerifyError::BadDelegationSignature)?;
        if d.zone.exchange() != d.exchange {
            return Err(VerifyError::ZoneOutsideExchange {
                zone: d.zone.clone(),
            });
        }
        if trust.is_revoked(&d.exchange, &d.node_key) {
            return Err(VerifyError::RevokedKey { key: d.node_key });
        }
        if now.plus_millis(CLOCK_SKEW_MS) < d.not_before {
            return Err(VerifyError::DelegationNotYetValid {
                not_before: d.not_before,
                now,
            });
        }
        if now >= d.not_after {
            return Err(VerifyError::DelegationExpired {
                not_after: d.not_after,
                now,
            });
        }
        Ok(())
    }
}

/// The withdrawal of a listing by its origin zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delisting {
    /// The listing withdrawn.
    pub listing_id: ContentId,
    /// The last version that was listed.
    pub version: u32,
    /// The listing's origin zone (must match the signer's delegation).
    pub origin: ZoneId,
    /// Why, for people reading the record.
    pub reason: String,
    /// When the origin zone delisted it.
    pub delisted_at: Timestamp,
}

impl Delisting {
    /// Checks the content rules: `version` at least 1; `reason` not blank, at most
    /// [`REASON_CHARS`] characters, no control characters other than newline and tab.
    ///
    /// # Errors
    /// [`ValidationError`] listing each broken rule with its field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut v = Violations::default();
        if self.version == 0 {
            v.add("version", "versions start at 1");
        }
        check_reason(&mut v, &self.reason);
        v.finish()
    }
}

/// A root key's statement that a node key must no longer be trusted by the signing exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// The exchange whose root signs; the revocation applies to this exchange's delegations only.
    pub exchange: ExchangeId,
    /// The node key revoked.
    pub key: PublicKey,
    /// Why.
    pub reason: String,
    /// When it was revoked.
    pub revoked_at: Timestamp,
}

impl Revocation {
    /// Checks the content rules: `reason` not blank, at most [`REASON_CHARS`] characters, no
    /// control characters other than newline and tab.
    ///
    /// # Errors
    /// [`ValidationError`] listing each broken rule with its field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut v = Violations::default();
        check_reason(&mut v, &self.reason);
        v.finish()
    }
}

/// The `reason` rule of delistings and revocations: not blank, at most [`REASON_CHARS`]
/// characters, no control characters other than newline and tab. People read these records, so
/// they must say something and must not hide text behind terminal control codes.
fn check_reason(v: &mut Violations, reason: &str) {
    v.text("reason", reason, REASON_CHARS, true);
}

/// Which body an envelope carries; selects the domain tag and the body type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnouncementKind {
    /// A [`Listing`] version.
    Listing,
    /// A [`Delisting`].
    Delisting,
    /// A [`Revocation`], signed by a root key.
    Revocation,
}

impl AnnouncementKind {
    /// The signature domain of this kind.
    pub fn domain(self) -> Domain {
        match self {
            AnnouncementKind::Listing => Domain::Listing,
            AnnouncementKind::Delisting => Domain::Delisting,
            AnnouncementKind::Revocation => Domain::Revocation,
        }
    }
}

/// What is sent on the wire: a signed body, its id, and (for node-signed kinds) the delegation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Format version, [`ENVELOPE_VERSION`].
    pub v: u32,
    /// What `body` holds.
    pub kind: AnnouncementKind,
    /// SHA-256 of `body`.
    pub id: ContentId,
    /// The canonical CBOR of the body, as a byte string: exactly what was signed after the tag.
    #[serde(with = "crate::bytes::buf")]
    pub body: Vec<u8>,
    /// The signer's delegation; absent for revocations, which the root key signs itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<SignedDelegation>,
    /// Signature over the kind's domain tag followed by `body`.
    pub signature: Signature,
}

/// A decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A listing version.
    Listing(Box<Listing>),
    /// A delisting.
    Delisting(Delisting),
    /// A key revocation.
    Revocation(Revocation),
}

/// Keys a receiver trusts, and keys it has seen revoked.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    /// Root keys per exchange (more than one while a root key is being rotated).
    pub roots: BTreeMap<ExchangeId, BTreeSet<PublicKey>>,
    /// Revoked node keys, per revoking exchange. Kept per exchange so that one exchange's root
    /// can never disable the node keys another exchange delegated, even when both delegated
    /// the same key.
    pub revoked: BTreeMap<ExchangeId, BTreeSet<PublicKey>>,
}

impl TrustStore {
    /// Trusts `root` for `exchange`.
    pub fn trust(&mut self, exchange: ExchangeId, root: PublicKey) {
        self.roots.entry(exchange).or_default().insert(root);
    }

    /// Records that `exchange` revoked the node key `key` (normally after verifying a
    /// [`Revocation`] whose `exchange` is `exchange`). Only delegations issued by `exchange`
    /// are affected.
    pub fn revoke(&mut self, exchange: ExchangeId, key: PublicKey) {
        self.revoked.entry(exchange).or_default().insert(key);
    }

    /// Whether `exchange` has revoked `key`.
    pub fn is_revoked(&self, exchange: &ExchangeId, key: &PublicKey) -> bool {
        self.revoked
            .get(exchange)
            .is_some_and(|keys| keys.contains(key))
    }
}

/// An announcement that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The body's content id.
    pub id: ContentId,
    /// The decoded body.
    pub body: Body,
    /// The key that signed the body (a node key, or a root key for revocations).
    pub signer: PublicKey,
    /// The signer's delegation, for node-signed kinds.
    pub delegation: Option<SignedDelegation>,
}

/// Why an announcement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The bytes are not a canonical envelope or body.
    #[error("cannot decode: {0}")]
    Decode(#[from] DecodeError),
    /// An envelope version this node does not read.
    #[error("unsupported envelope version {v}")]
    UnsupportedVersion {
        /// The version found.
        v: u32,
    },
    /// The exchange is not one the receiver has an agreement with.
    #[error("no trusted root key for exchange {exchange}")]
    UnknownExchange {
        /// The exchange named.
        exchange: ExchangeId,
    },
    /// The delegation is signed by a key that is not a trusted root of its exchange.
    #[error("delegation signed by a key that is not a trusted root of {exchange}")]
    UntrustedRoot {
        /// The exchange named.
        exchange: ExchangeId,
    },
    /// The root's signature on the delegation does not verify.
    #[error("delegation signature does not verify")]
    BadDelegationSignature,
    /// The delegation names a zone of another exchange.
    #[error("delegation zone {zone} is not a zone of the delegating exchange")]
    ZoneOutsideExchange {
        /// The zone named.
        zone: ZoneId,
    },
    /// The delegation starts in the future (beyond the clock-skew allowance).
    #[error("delegation valid only from {not_before} (now {now})")]
    DelegationNotYetValid {
        /// Start of validity.
        not_before: Timestamp,
        /// The receiver's time.
        now: Timestamp,
    },
    /// The delegation has expired.
    #[error("delegation expired at {not_after} (now {now})")]
    DelegationExpired {
        /// End of validity.
        not_after: Timestamp,
        /// The receiver's time.
        now: Timestamp,
    },
    /// The signing key has been revoked.
    #[error("key {key} has been revoked")]
    RevokedKey {
        /// The revoked key.
        key: PublicKey,
    },
    /// A node-signed kind without a delegation.
    #[error("{kind:?} announcement without a delegation")]
    MissingDelegation {
        /// The kind.
        kind: AnnouncementKind,
    },
    /// A revocation that carries a delegation (only root keys revoke).
    #[error("revocations are signed by the root key and carry no delegation")]
    UnexpectedDelegation,
    /// The body's signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The envelope's id is not the hash of its body.
    #[error("envelope id {claimed} is not the body's hash {computed}")]
    IdMismatch {
        /// The id in the envelope.
        claimed: ContentId,
        /// The hash of the body.
        computed: ContentId,
    },
    /// The body names an origin the signer is not delegated for.
    #[error("body origin {origin} differs from the signer's authority {zone}")]
    WrongOrigin {
        /// The body's origin (for a revocation, its exchange).
        origin: String,
        /// The zone in the delegation; for a revocation, the exchanges for which the signing
        /// root is trusted, comma-separated.
        zone: String,
    },
    /// The body is dated in the future beyond the clock-skew allowance.
    #[error("body dated {at}, in the future (now {now})")]
    FromTheFuture {
        /// The body's time.
        at: Timestamp,
        /// The receiver's time.
        now: Timestamp,
    },
    /// The listing breaks a content rule.
    #[error("invalid listing: {0}")]
    InvalidListing(ValidationError),
    /// A registration certificate breaks a content rule.
    #[error("invalid certificate: {errors}")]
    InvalidCertificate {
        /// Every broken rule.
        errors: ValidationError,
    },
    /// A certificate revocation breaks a content rule (PROTOCOL.md 10.6).
    #[error("invalid certificate revocation: {errors}")]
    InvalidCertificateRevocation {
        /// Every broken rule.
        errors: ValidationError,
    },
    /// A forwarded application request breaks a content rule (PROTOCOL.md 11.1).
    #[error("invalid application request: {errors}")]
    InvalidApplication {
        /// Every broken rule.
        errors: ValidationError,
    },
    /// An application decision breaks a content rule (PROTOCOL.md 11.2).
    #[error("invalid application decision: {errors}")]
    InvalidDecision {
        /// Every broken rule.
        errors: ValidationError,
    },
    /// The decision names another request than the one it is checked against.
    #[error("the decision answers request {named}, not {request}")]
    WrongRequest {
        /// The request id the decision names.
        named: ContentId,
        /// The id of the request it was checked against.
        request: ContentId,
    },
    /// A certificate revocation names, with the id of a certificate the verifier holds, another
    /// number than that certificate's (PROTOCOL.md 10.6 step 10).
    #[error(
        "the revocation names certificate {named}, but the certificate with its id is {number}"
    )]
    WrongCertificate {
        /// The number the revocation names.
        named: String,
        /// The number of the certificate with the id it names.
        number: String,
    },
    /// A certificate revocation is dated before the certificate with the id it names was
    /// issued (PROTOCOL.md 10.6 step 10): no key of the zone revoked it then.
    #[error(
        "the revocation of certificate {number} is dated {revoked_at}, before its issue at \
         {issued_at}"
    )]
    RevokedBeforeIssue {
        /// The certificate's number.
        number: String,
        /// The revocation's time.
        revoked_at: Timestamp,
        /// The certificate's issue time.
        issued_at: Timestamp,
    },
    /// The decision is signed for another zone than the one the request was addressed to.
    #[error("the decision is by {decider}, but the request was addressed to {addressed}")]
    WrongDecider {
        /// The deciding zone (the signer's).
        decider: ZoneId,
        /// The zone the request named as its origin.
        addressed: ZoneId,
    },
    /// An approval grants more than the request asked for.
    #[error("granted terms wider than asked: {field}: {message}")]
    WiderTerms {
        /// The granted term that is too wide.
        field: &'static str,
        /// What was asked and what was granted.
        message: String,
    },
    /// A list of precedents breaks a content rule (PROTOCOL.md 11.8).
    #[error("invalid precedents: {errors}")]
    InvalidPrecedents {
        /// Every broken rule.
        errors: ValidationError,
    },
    /// A list of precedents answers another question than the one asked (PROTOCOL.md 11.8).
    #[error("{message}")]
    NotAsked {
        /// What it answers and what was asked.
        message: String,
    },
    /// A demand breaks a content rule (PROTOCOL.md 11.9).
    #[error("invalid demand: {errors}")]
    InvalidDemand {
        /// Every broken rule.
        errors: ValidationError,
    },
    /// The delisting or revocation breaks a content rule.
    #[error("invalid {kind:?} body: {errors}")]
    InvalidBody {
        /// Which kind of body.
        kind: AnnouncementKind,
        /// Every broken rule.
        errors: ValidationError,
    },
}

impl VerifyError {
    /// Every string [`VerifyError::kind`] returns (the decoding kinds of [`DecodeError::kind`]
    /// first), in the order of PROTOCOL.md 6.3, which lists the same strings
    /// (`protocol/tests/kinds.rs` keeps the three in step).
    pub const KINDS: [&'static str; 35] = [
        "too_large",
        "too_deep",
        "truncated",
        "trailing_bytes",
        "non_canonical",
        "unsupported_item",
        "invalid_utf8",
        "shape",
        "unsupported_version",
        "unexpected_delegation",
        "missing_delegation",
        "unknown_exchange",
        "untrusted_root",
        "bad_delegation_signature",
        "zone_outside_exchange",
        "revoked_key",
        "delegation_not_yet_valid",
        "delegation_expired",
        "bad_signature",
        "id_mismatch",
        "invalid_listing",
        "invalid_body",
        "wrong_origin",
        "from_the_future",
        "invalid_certificate",
        "invalid_certificate_revocation",
        "wrong_certificate",
        "invalid_application",
        "invalid_decision",
        "wrong_request",
        "wrong_decider",
        "wider_terms",
        "invalid_precedents",
        "not_asked",
        "invalid_demand",
    ];

    /// A stable snake_case name for this kind of error: test vectors, metrics, rejection records.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyError::Decode(e) => e.kind(),
            VerifyError::UnsupportedVersion { .. } => "unsupported_version",
            VerifyError::UnknownExchange { .. } => "unknown_exchange",
            VerifyError::UntrustedRoot { .. } => "untrusted_root",
            VerifyError::BadDelegationSignature => "bad_delegation_signature",
            VerifyError::ZoneOutsideExchange { .. } => "zone_outside_exchange",
            VerifyError::DelegationNotYetValid { .. } => "delegation_not_yet_valid",
            VerifyError::DelegationExpired { .. } => "delegation_expired",
            VerifyError::RevokedKey { .. } => "revoked_key",
            VerifyError::MissingDelegation { .. } => "missing_delegation",
            VerifyError::UnexpectedDelegation => "unexpected_delegation",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::IdMismatch { .. } => "id_mismatch",
            VerifyError::WrongOrigin { .. } => "wrong_origin",
            VerifyError::FromTheFuture { .. } => "from_the_future",
            VerifyError::InvalidListing(_) => "invalid_listing",
            VerifyError::InvalidBody { .. } => "invalid_body",
            VerifyError::InvalidCertificate { .. } => "invalid_certificate",
            VerifyError::InvalidCertificateRevocation { .. } => "invalid_certificate_revocation",
            VerifyError::WrongCertificate { .. } | VerifyError::RevokedBeforeIssue { .. } => {
                "wrong_certificate"
            }
            VerifyError::InvalidApplication { .. } => "invalid_application",
            VerifyError::InvalidDecision { .. } => "invalid_decision",
            VerifyError::WrongRequest { .. } => "wrong_request",
            VerifyError::WrongDecider { .. } => "wrong_decider",
            VerifyError::WiderTerms { .. } => "wider_terms",
            VerifyError::InvalidPrecedents { .. } => "invalid_precedents",
            VerifyError::NotAsked { .. } => "not_asked",
            VerifyError::InvalidDemand { .. } => "invalid_demand",
        }
    }
}

fn canonical<T: Serialize>(value: &T) -> Vec<u8> {
    // xchg's own protocol types contain no floats or tags, so encoding cannot fail.
    to_canonical(value).unwrap_or_default()
}

impl Envelope {
    /// Signs a listing version as the node holding `key` under `delegation`.
    pub fn listing(listing: &Listing, key: &Keypair, delegation: SignedDelegation) -> Self {
        Self::seal(
            AnnouncementKind::Listing,
            canonical(listing),
            key,
            Some(delegation),
        )
    }

    /// Signs a delisting as the node holding `key` under `delegation`.
    pub fn delisting(delisting: &Delisting, key: &Keypair, delegation: SignedDelegation) -> Self {
        Self::seal(
            AnnouncementKind::Delisting,
            canonical(delisting),
            key,
            Some(delegation),
        )
    }

    /// Signs a revocation with the exchange root key.
    pub fn revocation(revocation: &Revocation, root: &Keypair) -> Self {
        Self::seal(
            AnnouncementKind::Revocation,
            canonical(revocation),
            root,
            None,
        )
    }

    /// Builds an envelope around already-encoded body bytes.
    pub fn seal(
        kind: AnnouncementKind,
        body: Vec<u8>,
        key: &Keypair,
        delegation: Option<SignedDelegation>,
    ) -> Self {
        let signature = key.sign(kind.domain(), &body);
        Envelope {
            v: ENVELOPE_VERSION,
            kind,
            id: ContentId::of(&body),
            body,
            delegation,
            signature,
        }
    }

    /// The wire form: canonical CBOR of the envelope.
    pub fn to_bytes(&self) -> Vec<u8> {
        canonical(self)
    }
}

/// Verifies an announcement received from anywhere, offline, in the order PROTOCOL.md 6.2
/// fixes: size → envelope decoding → version → delegation presence → delegation chain →
/// signature → id → body decoding and content rules → origin matches the signer's authority →
/// body time not in the future.
///
/// A revocation's signature is checked, before its body is decoded, against every trusted root
/// key; the body is then accepted only if a root trusted for the exchange the body names is
/// among those that verified (`wrong_origin` otherwise). So a revocation verifies only under the
/// root keys of its own exchange, and a key trusted for several exchanges can revoke for each.
///
/// # Errors
/// The first failed check.
pub fn verify(
    bytes: &[u8],
    trust: &TrustStore,
    now: Timestamp,
    limits: &Limits,
) -> Result<Verified, VerifyError> {
    let env: Envelope = from_canonical(bytes, limits)?;
    if env.v != ENVELOPE_VERSION {
        return Err(VerifyError::UnsupportedVersion { v: env.v });
    }
    let domain = env.kind.domain();
    let authority = match (env.kind, &env.delegation) {
        (AnnouncementKind::Revocation, Some(_)) => return Err(VerifyError::UnexpectedDelegation),
        (AnnouncementKind::Revocation, None) => {
            let distinct: BTreeSet<PublicKey> = trust.roots.values().flatten().copied().collect();
            let verifying: BTreeSet<PublicKey> = distinct
                .into_iter()
                .filter(|root| root.verify(domain, &env.body, &env.signature).is_ok())
                .collect();
            let roots: BTreeMap<ExchangeId, PublicKey> = trust
                .roots
                .iter()
                .filter_map(|(exchange, keys)| {
                    let first = keys.iter().find(|k| verifying.contains(k))?;
                    Some((exchange.clone(), *first))
                })
                .collect();
            if roots.is_empty() {
                return Err(VerifyError::BadSignature);
            }
            Authority::Roots(roots)
        }
        (kind, None) => return Err(VerifyError::MissingDelegation { kind }),
        (_, Some(d)) => {
            d.verify(trust, now)?;
            let key = d.delegation.node_key;
            key.verify(domain, &env.body, &env.signature)
                .map_err(|_| VerifyError::BadSignature)?;
            Authority::Zone {
                key,
                zone: d.delegation.zone.clone(),
            }
        }
    };
    let computed = ContentId::of(&env.body);
    if computed != env.id {
        return Err(VerifyError::IdMismatch {
            claimed: env.id,
            computed,
        });
    }
    let body = decode_body(env.kind, &env.body, limits)?;
    let signer = check_body(&body, &authority, now)?;
    Ok(Verified {
        id: computed,
        body,
        signer,
        delegation: env.delegation,
    })
}

/// Whose name the signature lets the body speak in.
enum Authority {
    /// The delegated node key `key` speaks for `zone`.
    Zone { key: PublicKey, zone: ZoneId },
    /// For each exchange with a trusted root that verified the signature, the first such root
    /// (ascending bytes). Never empty.
    Roots(BTreeMap<ExchangeId, PublicKey>),
}

fn decode_body(kind: AnnouncementKind, bytes: &[u8], limits: &Limits) -> Result<Body, VerifyError> {
    Ok(match kind {
        AnnouncementKind::Listing => Body::Listing(Box::new(from_canonical(bytes, limits)?)),
        AnnouncementKind::Delisting => Body::Delisting(from_canonical(bytes, limits)?),
        AnnouncementKind::Revocation => Body::Revocation(from_canonical(bytes, limits)?),
    })
}

/// Applies the content rules, the origin rule and the time rule; returns the signer.
fn check_body(
    body: &Body,
    authority: &Authority,
    now: Timestamp,
) -> Result<PublicKey, VerifyError> {
    let (origin, at) = match body {
        Body::Listing(l) => {
            l.validate().map_err(VerifyError::InvalidListing)?;
            (l.origin.to_string(), l.updated_at)
        }
        Body::Delisting(d) => {
            d.validate().map_err(|errors| VerifyError::InvalidBody {
                kind: AnnouncementKind::Delisting,
                errors,
            })?;
            (d.origin.to_string(), d.delisted_at)
        }
        Body::Revocation(r) => {
            r.validate().map_err(|errors| VerifyError::InvalidBody {
                kind: AnnouncementKind::Revocation,
                errors,
            })?;
            (r.exchange.to_string(), r.revoked_at)
        }
    };
    let signer = match authority {
        Authority::Zone { key, zone } if zone.as_str() == origin => *key,
        Authority::Zone { zone, .. } => {
            return Err(VerifyError::WrongOrigin {
                origin,
                zone: zone.to_string(),
            });
        }
        Authority::Roots(roots) => match roots.iter().find(|(e, _)| e.as_str() == origin) {
            Some((_, root)) => *root,
            None => {
                let exchanges: Vec<&str> = roots.keys().map(ExchangeId::as_str).collect();
                return Err(VerifyError::WrongOrigin {
                    origin,
                    zone: exchanges.join(", "),
                });
            }
        },
    };
    if at > now.plus_millis(CLOCK_SKEW_MS) {
        return Err(VerifyError::FromTheFuture { at, now });
    }
    Ok(signer)
}
