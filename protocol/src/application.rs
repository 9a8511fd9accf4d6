//! Scenario applications across exchanges (场景互认复用): the request a zone forwards to the
//! origin zone of a listing it recognised from another exchange, and the origin zone's signed
//! decision, with their offline verification (PROTOCOL.md 11).
//!
//! Both messages are signed like a certificate (PROTOCOL.md 10): the body's canonical CBOR, its
//! SHA-256 as its id, an ed25519 signature by a node key over the message's own domain tag and
//! the body, and the node's delegation from its exchange root. The delegation must cover the
//! time the message states, not the verifier's clock, because a request waits and is resent
//! byte for byte while the origin is unreachable; resending the same bytes keeps its id, so a
//! decision names exactly one request and a request is never decided twice.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::announcement::{CLOCK_SKEW_MS, REASON_CHARS, SignedDelegation, TrustStore, VerifyError};
use crate::canonical::{DEFAULT_MAX_DEPTH, DecodeError, Limits, from_canonical, to_canonical};
use crate::ids::{ContentId, PartyId, ZoneId};
use crate::keys::{Domain, Keypair, PublicKey, Signature};
use crate::listing::{DeliveryMode, ValidationError, Violations, limits};
use crate::time::Timestamp;

/// The format version of both messages this crate writes and reads.
pub const APPLICATION_VERSION: u32 = 1;

/// Largest accepted encoding of either signed message: 16 KiB. The largest honest request (a
/// 2000-character purpose and a 200-character scenario of four-byte characters, with the
/// delegation) is about 9.3 KiB, so a peer cannot make a receiver read twice that.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Longest `purpose`, in characters (Unicode scalar values).
pub const PURPOSE_CHARS: usize = 2000;

/// Longest authorisation a request may ask for: 1096 days (three years).
pub const MAX_DURATION_DAYS: u32 = 1096;

/// Most calls a request may ask for.
pub const MAX_USAGE_LIMIT: u64 = 1_000_000_000;

const DAY_MS: u64 = 86_400_000;

/// The limits a receiver applies to a signed request or decision: [`MAX_MESSAGE_BYTES`] and
/// the default nesting cap (an honest message nests 3 deep).
pub fn limits() -> Limits {
    Limits {
        max_size: MAX_MESSAGE_BYTES,
        max_depth: DEFAULT_MAX_DEPTH,
    }
}

/// A buyer's application for one listing and one scenario, forwarded by the applying zone to
/// the listing's origin zone. Field names are the same in JSON and CBOR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationRequest {
    /// The applying zone; its exchange is the part before the `/`. Must be the zone of the
    /// signer's delegation.
    pub applicant: ZoneId,
    /// The application's id in the applying zone, which never gives one id to two
    /// applications: with `applicant`, it names the application across exchanges.
    pub application: u64,
    /// The zone the request is addressed to: the listing's origin zone, the only one whose
    /// decision answers it.
    pub origin: ZoneId,
    /// The listing applied for.
    pub listing_id: ContentId,
    /// The content id of the listing version the buyer saw and applied for.
    pub content_id: ContentId,
    /// The buyer party, at the applying exchange.
    pub buyer: PartyId,
    /// The one scenario applied for (一场景一申请): one text, never a list.
    pub scenario: String,
    /// What the buyer will use the product for.
    pub purpose: String,
    /// The delivery mode asked for.
    pub delivery_mode: DeliveryMode,
    /// Days asked for, from approval: 1 to [`MAX_DURATION_DAYS`].
    pub duration_days: u32,
    /// Calls asked for in all: 1 to [`MAX_USAGE_LIMIT`].
    pub usage_limit: u64,
    /// When the applying zone signed the request.
    pub issued_at: Timestamp,
}

impl ApplicationRequest {
    /// Checks the content rules: `scenario` (at most 200 characters) and `purpose` (at most
    /// [`PURPOSE_CHARS`]) follow the text rule and are not blank; `duration_days` and
    /// `usage_limit` are in range; `origin` is not `applicant`.
    ///
    /// # Errors
    /// [`ValidationError`] listing each broken rule with its field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut v = Violations::default();
        v.text("scenario", &self.scenario, limits::SHORT_TEXT_CHARS, true);
        v.text("purpose", &self.purpose, PURPOSE_CHARS, true);
        if !(1..=MAX_DURATION_DAYS).contains(&self.duration_days) {
            v.add(
                "duration_days",
                format!(
                    "{} is not 1 to {MAX_DURATION_DAYS} days",
                    self.duration_days
                ),
            );
        }
        if !(1..=MAX_USAGE_LIMIT).contains(&self.usage_limit) {
            v.add(
                "usage_limit",
                format!("{} is not 1 to {MAX_USAGE_LIMIT} calls", self.usage_limit),
            );
        }
        if self.origin == self.applicant {
            v.add("origin", "a zone does not forward an application to itself");
        }
        v.finish()
    }
}

/// The terms of an approval, as the origin zone granted them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Granted {
    /// The authorisation's id at the origin zone.
    pub authorization: u64,
    /// The delivery mode granted: the one asked for, or one that keeps the data in its domain.
    pub delivery_mode: DeliveryMode,
    /// Days granted: 1 to the days asked.
    pub duration_days: u32,
    /// Calls granted: 1 to the calls asked.
    pub usage_limit: u64,
    /// When the authorisation ends (exclusive): after `decided_at`, and no later than
    /// `duration_days` after it.
    pub expires_at: Timestamp,
}

/// What the origin zone decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    /// Approved with these terms; an authorisation exists at the origin.
    Approved(Granted),
    /// Rejected.
    Rejected {
        /// Why, for the buyer and the operators: the reason rule of delistings.
        reason: String,
    },
}

/// The origin zone's answer to one forwarded request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationDecision {
    /// The id of the request answered: the SHA-256 of its body, which names the applying zone,
    /// the application and every term asked, so the decision answers exactly that request.
    pub request: ContentId,
    /// The deciding zone; must be the zone of the signer's delegation and the request's
    /// `origin`.
    pub decider: ZoneId,
    /// Approved with terms, or rejected with a reason.
    pub outcome: Outcome,
    /// When the origin zone decided.
    pub decided_at: Timestamp,
}

impl ApplicationDecision {
    /// Checks the content rules that need no request: a rejection's `reason` follows the reason
    /// rule (PROTOCOL.md 4.4); an approval grants at least one day and one call and expires
    /// after `decided_at`.
    ///
    /// # Errors
    /// [`ValidationError`] listing each broken rule with its field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut v = Violations::default();
        match &self.outcome {
            Outcome::Rejected { reason } => {
                v.text("outcome.rejected.reason", reason, REASON_CHARS, true);
            }
            Outcome::Approved(g) => {
                if g.duration_days == 0 {
                    v.add("outcome.approved.duration_days", "at least 1 day");
                }
                if g.usage_limit == 0 {
                    v.add("outcome.approved.usage_limit", "at least 1 call");
                }
                if g.expires_at <= self.decided_at {
                    v.add(
                        "outcome.approved.expires_at",
                        format!(
                            "{} is not after decided_at {}",
                            g.expires_at, self.decided_at
                        ),
                    );
                }
            }
        }
        v.finish()
    }

    /// Checks that an approval grants no more than `asked` (PROTOCOL.md 11.4): no more days
    /// or calls, an expiry no later than the days granted after the decision, and the mode
    /// asked or one that keeps the data in its domain. A rejection grants nothing.
    ///
    /// # Errors
    /// [`VerifyError::WiderTerms`] naming the first term that is too wide.
    pub fn within(&self, asked: &ApplicationRequest) -> Result<(), VerifyError> {
        let Outcome::Approved(g) = &self.outcome else {
            return Ok(());
        };
        let wider = |field, message: String| Err(VerifyError::WiderTerms { field, message });
        if g.duration_days > asked.duration_days {
            return wider(
                "duration_days",
                format!(
                    "{} days granted, {} asked",
                    g.duration_days, asked.duration_days
                ),
            );
        }
        if g.usage_limit > asked.usage_limit {
            return wider(
                "usage_limit",
                format!(
                    "{} calls granted, {} asked",
                    g.usage_limit, asked.usage_limit
                ),
            );
        }
        let latest = self
            .decided_at
            .plus_millis(u64::from(g.duration_days) * DAY_MS);
        if g.expires_at > latest {
            return wider(
                "expires_at",
                format!(
                    "expires {}, after {} ({} days from the decision)",
                    g.expires_at, latest, g.duration_days
                ),
            );
        }
        if g.delivery_mode != asked.delivery_mode && !g.delivery_mode.is_in_domain() {
            return wider(
                "delivery_mode",
                format!(
                    "{:?} granted for {:?} asked: a changed mode must keep the data in its domain",
                    g.delivery_mode, asked.delivery_mode
                ),
            );
        }
        Ok(())
    }
}

/// A request or a decision as sent: its body bytes, their id, the signer's delegation and
/// signature. Which of the two it holds is known from where it travels (the request or the
/// response of the exchange), and the domain tag makes one never verify as the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedMessage {
    /// Format version, [`APPLICATION_VERSION`].
    pub v: u32,
    /// SHA-256 of `body`.
    pub id: ContentId,
    /// The canonical CBOR of the [`ApplicationRequest`] or [`ApplicationDecision`]: exactly
    /// what was signed after the tag.
    #[serde(with = "crate::bytes::buf")]
    pub body: Vec<u8>,
    /// The signing node's delegation from its exchange root.
    pub delegation: SignedDelegation,
    /// Signature by the delegated node key over the message's domain tag and `body`.
    pub signature: Signature,
}

fn canonical<T: Serialize>(value: &T) -> Vec<u8> {
    // xchg's own protocol types contain no floats or tags, so encoding cannot fail.
    to_canonical(value).unwrap_or_default()
}

impl SignedMessage {
    /// Signs a request as a node of the applying zone holding `key` under `delegation`.
    pub fn request(
        request: &ApplicationRequest,
        key: &Keypair,
        delegation: SignedDelegation,
    ) -> Self {
        Self::seal(
            Domain::ApplicationRequest,
            canonical(request),
            key,
            delegation,
        )
    }

    /// Signs a decision as a node of the origin zone holding `key` under `delegation`.
    pub fn decision(
        decision: &ApplicationDecision,
        key: &Keypair,
        delegation: SignedDelegation,
    ) -> Self {
        Self::seal(
            Domain::ApplicationDecision,
            canonical(decision),
            key,
            delegation,
        )
    }

    /// Signs already-encoded body bytes under `domain`.
    pub fn seal(
        domain: Domain,
        body: Vec<u8>,
        key: &Keypair,
        delegation: SignedDelegation,
    ) -> Self {
        SignedMessage {
            v: APPLICATION_VERSION,
            id: ContentId::of(&body),
            signature: key.sign(domain, &body),
            body,
            delegation,
        }
    }

    /// The wire form: canonical CBOR of the signed message.
    pub fn to_bytes(&self) -> Vec<u8> {
        canonical(self)
    }

    /// Decodes a signed message without verifying it.
    ///
    /// # Errors
    /// [`DecodeError`] if it is not the canonical encoding of a signed message within `limits`.
    pub fn from_bytes(bytes: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        from_canonical(bytes, limits)
    }
}

/// A message that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T> {
    /// The message's id (hash of its body).
    pub id: ContentId,
    /// What it states.
    pub body: T,
    /// The node key that signed it.
    pub signer: PublicKey,
    /// That key's delegation.
    pub delegation: SignedDelegation,
}

/// A verified forwarded application.
pub type VerifiedRequest = Verified<ApplicationRequest>;

/// A verified decision, checked against the request it answers.
pub type VerifiedDecision = Verified<ApplicationDecision>;

/// Steps 1 to 6 of PROTOCOL.md 11.4, shared by both messages: decoding, version, body
/// decoding, the delegation chain at the time the body states, the signature, the id.
pub(crate) fn open<T: DeserializeOwned + Serialize>(
    bytes: &[u8],
    domain: Domain,
    stated: impl Fn(&T) -> Timestamp,
    trust: &TrustStore,
    limits: &Limits,
) -> Result<Verified<T>, VerifyError> {
    let signed = SignedMessage::from_bytes(bytes, limits)?;
    if signed.v != APPLICATION_VERSION {
        return Err(VerifyError::UnsupportedVersion { v: signed.v });
    }
    let body: T = from_canonical(&signed.body, limits)?;
    signed.delegation.verify(trust, stated(&body))?;
    let key = signed.delegation.delegation.node_key;
    key.verify(domain, &signed.body, &signed.signature)
        .map_err(|_| VerifyError::BadSignature)?;
    let computed = ContentId::of(&signed.body);
    if computed != signed.id {
        return Err(VerifyError::IdMismatch {
            claimed: signed.id,
            computed,
        });
    }
    Ok(Verified {
        id: computed,
        body,
        signer: key,
        delegation: signed.delegation,
    })
}

/// Step 8: the zone the body speaks for is the signer's, and its time is not in the future.
pub(crate) fn check_authority(
    zone: &ZoneId,
    at: Timestamp,
    delegation: &SignedDelegation,
    now: Timestamp,
) -> Result<(), VerifyError> {
    let delegated = &delegation.delegation.zone;
    if zone != delegated {
        return Err(VerifyError::WrongOrigin {
            origin: zone.to_string(),
            zone: delegated.to_string(),
        });
    }
    if at > now.plus_millis(CLOCK_SKEW_MS) {
        return Err(VerifyError::FromTheFuture { at, now });
    }
    Ok(())
}

/// Verifies a forwarded application offline (PROTOCOL.md 11.4): size → decoding → version →
/// body decoding → delegation chain at `issued_at` → signature → id → content rules →
/// applicant is the signer's zone → `issued_at` not in the future.
///
/// What needs the receiver's state is not checked here: that `origin` is the receiver's zone,
/// that the listing and scenario are ones it offers, and that the applicant's application id
/// was not already used for another request (PROTOCOL.md 11.5).
///
/// # Errors
/// The first failed check, as a [`VerifyError`].
pub fn verify_request(
    bytes: &[u8],
    trust: &TrustStore,
    now: Timestamp,
    limits: &Limits,
) -> Result<VerifiedRequest, VerifyError> {
    let verified = open(
        bytes,
        Domain::ApplicationRequest,
        |r: &ApplicationRequest| r.issued_at,
        trust,
        limits,
    )?;
    let r = &verified.body;
    r.validate()
        .map_err(|errors| VerifyError::InvalidApplication { errors })?;
    check_authority(&r.applicant, r.issued_at, &verified.delegation, now)?;
    Ok(verified)
}

/// Verifies a decision offline against the verified request it must answer (PROTOCOL.md
/// 11.4): the steps of [`verify_request`] with the decision's tag and `decided_at`, then the
/// decision names `request` → it is decided by the zone the request was addressed to → an
/// approval grants no more than was asked.
///
/// # Errors
/// The first failed check, as a [`VerifyError`].
pub fn verify_decision(
    bytes: &[u8],
    request: &VerifiedRequest,
    trust: &TrustStore,
    now: Timestamp,
    limits: &Limits,
) -> Result<VerifiedDecision, VerifyError> {
    let verified = open(
        bytes,
        Domain::ApplicationDecision,
        |d: &ApplicationDecision| d.decided_at,
        trust,
        limits,
    )?;
    let d = &verified.body;
    d.validate()
        .map_err(|errors| VerifyError::InvalidDecision { errors })?;
    check_authority(&d.decider, d.decided_at, &verified.delegation, now)?;
    if d.request != request.id {
        return Err(VerifyError::WrongRequest {
            named: d.request,
            request: request.id,
        });
    }
    if d.decider != request.body.origin {
        return Err(VerifyError::WrongDecider {
            decider: d.decider.clone(),
            addressed: request.body.origin.clone(),
        });
    }
    d.within(&request.body)?;
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::application_vectors as av;
    use crate::vectors;

    fn trust() -> TrustStore {
        let mut t = TrustStore::default();
        t.trust("xuchang".parse().expect("id"), vectors::root().public());
        t.trust("zhengzhou".parse().expect("id"), av::origin_root().public());
        t
    }

    fn request_at(now: Timestamp) -> VerifiedRequest {
        verify_request(&av::signed_request().to_bytes(), &trust(), now, &limits())
            .expect("the request verifies")
    }

    fn decide(decision: &ApplicationDecision) -> Result<VerifiedDecision, VerifyError> {
        let bytes = av::signed_decision(decision).to_bytes();
        verify_decision(
            &bytes,
            &request_at(vectors::NOW),
            &trust(),
            vectors::NOW,
            &limits(),
        )
    }

    fn granted(change: impl FnOnce(&mut Granted)) -> ApplicationDecision {
        let mut d = av::approval();
        if let Outcome::Approved(g) = &mut d.outcome {
            change(g);
        }
        d
    }

    #[test]
    fn a_request_resent_after_its_delegation_ended_still_verifies_by_its_issue_time() {
        let after = vectors::NOW.plus_millis(400 * 86_400_000);
        let r = request_at(after);
        assert_eq!(r.body.application, 42);
    }

    #[test]
    fn an_approval_may_narrow_every_term_and_switch_to_an_in_domain_mode() {
        let at = av::approval().decided_at;
        let narrowed = granted(|g| {
            g.delivery_mode = DeliveryMode::PrivacyComputing;
            g.duration_days = 1;
            g.usage_limit = 1;
            g.expires_at = at.plus_millis(DAY_MS);
        });
        assert!(decide(&narrowed).is_ok());
        let as_asked = granted(|g| {
            g.duration_days = 90;
            g.usage_limit = 10_000;
            g.expires_at = at.plus_millis(90 * DAY_MS);
        });
        assert!(decide(&as_asked).is_ok());
    }

    #[test]
    fn an_approval_granting_a_day_more_than_asked_or_leaving_the_domain_is_wider_terms() {
        let at = av::approval().decided_at;
        let longer = granted(|g| {
            g.duration_days = 91;
            g.expires_at = at.plus_millis(91 * DAY_MS);
        });
        let e = decide(&longer).expect_err("91 days for 90 asked");
        assert_eq!(e.kind(), "wider_terms");
        assert!(e.to_string().contains("duration_days"), "{e}");
        let api = granted(|g| g.delivery_mode = DeliveryMode::Api);
        assert_eq!(decide(&api).expect_err("raw api").kind(), "wider_terms");
    }

    #[test]
    fn an_approval_expiring_at_or_before_its_decision_is_an_invalid_decision() {
        let at = av::approval().decided_at;
        let e = decide(&granted(|g| g.expires_at = at)).expect_err("expires when decided");
        assert_eq!(e.kind(), "invalid_decision");
    }

    #[test]
    fn a_signed_decision_offered_as_a_request_is_refused() {
        let bytes = av::signed_decision(&av::approval()).to_bytes();
        let e = verify_request(&bytes, &trust(), vectors::NOW, &limits()).expect_err("not one");
        assert_eq!(e.kind(), "shape");
    }

    #[test]
    fn a_request_addressed_to_its_own_zone_or_asking_for_zero_days_is_an_invalid_application() {
        let mut r = av::request();
        r.origin = r.applicant.clone();
        r.duration_days = 0;
        let e = r.validate().expect_err("two rules broken");
        assert_eq!(e.0.len(), 2, "{e}");
        let signed = SignedMessage::request(&r, &vectors::node(), vectors::delegation());
        let e = verify_request(&signed.to_bytes(), &trust(), vectors::NOW, &limits())
            .expect_err("invalid");
        assert_eq!(e.kind(), "invalid_application");
    }

    #[test]
    fn the_largest_honest_request_fits_the_size_cap() {
        let mut r = av::request();
        r.purpose = "𝔁".repeat(PURPOSE_CHARS);
        r.scenario = "𝔁".repeat(limits::SHORT_TEXT_CHARS);
        r.application = u64::MAX;
        r.usage_limit = MAX_USAGE_LIMIT;
        r.issued_at = Timestamp(u64::from(u32::MAX) + 1);
        assert!(r.validate().is_ok());
        let bytes = SignedMessage::request(&r, &vectors::node(), vectors::delegation()).to_bytes();
        assert!(bytes.len() < 9_600, "{} bytes", bytes.len());
        assert!(
            bytes.len() * 3 / 2 < MAX_MESSAGE_BYTES,
            "{} bytes",
            bytes.len()
        );
    }

    #[derive(Serialize)]
    struct Reason {
        reason: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<&'static str>,
    }

    #[derive(Serialize)]
    struct BothOutcomes {
        approved: Granted,
        rejected: Reason,
    }

    #[derive(Serialize)]
    struct RawDecision<O> {
        request: ContentId,
        decider: ZoneId,
        outcome: O,
        decided_at: Timestamp,
    }

    fn raw_decision_kind<O: Serialize>(outcome: O) -> &'static str {
        let d = av::approval();
        let raw = RawDecision {
            request: d.request,
            decider: d.decider,
            outcome,
            decided_at: d.decided_at,
        };
        let signed = SignedMessage::seal(
            Domain::ApplicationDecision,
            canonical(&raw),
            &av::origin_node(),
            av::origin_delegation("zhengzhou/zhongyuan"),
        );
        let request = request_at(vectors::NOW);
        match verify_decision(
            &signed.to_bytes(),
            &request,
            &trust(),
            vectors::NOW,
            &limits(),
        ) {
            Ok(_) => "verified",
            Err(e) => e.kind(),
        }
    }

    #[test]
    fn an_outcome_both_approved_and_rejected_or_with_an_unknown_key_is_refused_as_shape() {
        let Outcome::Approved(g) = av::approval().outcome else {
            unreachable!("the vectors' approval approves")
        };
        let both = BothOutcomes {
            approved: g,
            rejected: Reason {
                reason: "no",
                note: None,
            },
        };
        assert_eq!(raw_decision_kind(both), "shape");
        let extra = BTreeMap::from([(
            "rejected",
            Reason {
                reason: "no",
                note: Some("more"),
            },
        )]);
        assert_eq!(raw_decision_kind(extra), "shape");
        let plain = BTreeMap::from([(
            "rejected",
            Reason {
                reason: "no",
                note: None,
            },
        )]);
        assert_eq!(raw_decision_kind(plain), "verified");
    }

    #[test]
    fn flipping_a_bit_of_any_byte_of_a_signed_request_or_decision_never_verifies() {
        let request = av::signed_request().to_bytes();
        let answered = request_at(vectors::NOW);
        let decision = av::signed_decision(&av::approval()).to_bytes();
        // One bit per byte changes every field, length and key byte; all eight bits of each
        // would take minutes in a debug build.
        for i in 0..request.len() {
            let mut bytes = request.clone();
            bytes[i] ^= 1;
            let r = verify_request(&bytes, &trust(), vectors::NOW, &limits());
            assert!(r.is_err(), "request byte {i}");
        }
        for i in 0..decision.len() {
            let mut bytes = decision.clone();
            bytes[i] ^= 1;
            let r = verify_decision(&bytes, &answered, &trust(), vectors::NOW, &limits());
            assert!(r.is_err(), "decision byte {i}");
        }
    }
}
