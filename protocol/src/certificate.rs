//! Registration certificates (登记证书): a zone's signed statement that a party holds rights
//! over a listing, and their offline verification against the exchange's root key.
//!
//! A certificate is signed like an announcement (PROTOCOL.md 10): the body's canonical CBOR,
//! its SHA-256 as its id, an ed25519 signature by a node key over the certificate domain tag and
//! the body, and the node's delegation from the exchange root, so anyone who trusts the root
//! verifies it without a network call. Unlike an announcement, a certificate outlives the
//! delegation that signed it: the delegation must cover the certificate's issue time, not the
//! verifier's clock.

use serde::{Deserialize, Serialize};

use crate::announcement::{CLOCK_SKEW_MS, SignedDelegation, TrustStore, VerifyError};
use crate::canonical::{DecodeError, Limits, from_canonical, to_canonical};
use crate::ids::{ContentId, PartyId, ZoneId};
use crate::keys::{Domain, Keypair, PublicKey, Signature};
use crate::listing::{Right, ValidationError, Violations};
use crate::time::Timestamp;

/// The certificate format version this crate writes and reads.
pub const CERTIFICATE_VERSION: u32 = 1;

/// Most evidence hashes one registration names.
pub const MAX_EVIDENCE: usize = 32;

/// The fixed first part of every certificate number (许昌 exchange, `XC`).
pub const NUMBER_PREFIX: &str = "XC";

/// Where the registered data came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Collected by the holder in its own activity.
    Collected,
    /// Generated (derived, processed) by the holder.
    Generated,
    /// Bought from another party.
    Purchased,
    /// Public data.
    Public,
}

/// What a certificate states. Field names are the same in JSON and CBOR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// `XC-<year of issue>-<ZONE NAME>-<registration number, 6 digits or more>`, e.g.
    /// `XC-2026-YUZHOU-000123`: unique in the exchange because zone names are unique in it
    /// and each zone numbers its registrations once.
    pub number: String,
    /// The party holding the rights.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub holder: PartyId,
    /// The listing registered.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub listing_id: ContentId,
    /// The content id of the listing version that was registered.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub content_id: ContentId,
    /// Where the data came from.
    pub source: Source,
    /// The rights confirmed: at least one, no repeats.
    pub rights: Vec<Right>,
    /// SHA-256 content ids of the evidence documents: 1 to [`MAX_EVIDENCE`], no repeats.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub evidence: Vec<ContentId>,
    /// The issuing zone (must be the zone of the signer's delegation).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub zone: ZoneId,
    /// When the zone issued it.
    pub issued_at: Timestamp,
}

/// The number of the certificate issued for registration `seq` of `zone` at `issued_at`.
pub fn number(zone: &ZoneId, issued_at: Timestamp, seq: u64) -> String {
    format!(
        "{NUMBER_PREFIX}-{}-{}-{seq:06}",
        year(issued_at),
        zone.name().to_ascii_uppercase()
    )
}

/// The UTC year of `at`, from its RFC 3339 form.
fn year(at: Timestamp) -> String {
    at.to_string().chars().take(4).collect()
}

impl Certificate {
    /// Checks the content rules: `number` of the form [`number`] gives for its zone and issue
    /// year; `rights` at least one and no repeats; `evidence` 1 to [`MAX_EVIDENCE`], no repeats.
    ///
    /// # Errors
    /// [`ValidationError`] listing each broken rule with its field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut v = Violations::default();
        let prefix = format!(
            "{NUMBER_PREFIX}-{}-{}-",
            year(self.issued_at),
            self.zone.name().to_ascii_uppercase()
        );
        let digits_ok = self
            .number
            .strip_prefix(&prefix)
            .is_some_and(|d| (6..=20).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()));
        if !digits_ok {
            v.add(
                "number",
                format!("expected {prefix} followed by 6 to 20 digits"),
            );
        }
        if self.rights.is_empty() {
            v.add("rights", "at least one right");
        }
        if !distinct(&self.rights) {
            v.add("rights", "a right is named twice");
        }
        if self.evidence.is_empty() || self.evidence.len() > MAX_EVIDENCE {
            v.add(
                "evidence",
                format!(
                    "1 to {MAX_EVIDENCE} evidence hashes, not {}",
                    self.evidence.len()
                ),
            );
        }
        if !distinct(&self.evidence) {
            v.add("evidence", "an evidence hash is named twice");
        }
        v.finish()
    }
}

fn distinct<T: PartialEq>(values: &[T]) -> bool {
    values
        .iter()
        .enumerate()
        .all(|(i, a)| values[..i].iter().all(|b| a != b))
}

/// A certificate as issued: its body bytes, their id, the signer's delegation and signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCertificate {
    /// Format version, [`CERTIFICATE_VERSION`].
    pub v: u32,
    /// SHA-256 of `body`.
    pub id: ContentId,
    /// The canonical CBOR of the [`Certificate`]: exactly what was signed after the tag.
    #[serde(with = "crate::bytes::buf")]
    pub body: Vec<u8>,
    /// The signing node's delegation from its exchange root.
    pub delegation: SignedDelegation,
    /// Signature by the delegated node key over the certificate domain tag and `body`.
    pub signature: Signature,
}

fn canonical<T: Serialize>(value: &T) -> Vec<u8> {
    // xchg's own protocol types contain no floats or tags, so encoding cannot fail.
    to_canonical(value).unwrap_or_default()
}

impl SignedCertificate {
    /// Signs `certificate` as the node holding `key` under `delegation`.
    pub fn sign(certificate: &Certificate, key: &Keypair, delegation: SignedDelegation) -> Self {
        let body = canonical(certificate);
        SignedCertificate {
            v: CERTIFICATE_VERSION,
            id: ContentId::of(&body),
            signature: key.sign(Domain::Certificate, &body),
            body,
            delegation,
        }
    }

    /// The file and wire form: canonical CBOR of the signed certificate.
    pub fn to_bytes(&self) -> Vec<u8> {
        canonical(self)
    }

    /// Decodes a signed certificate without verifying it.
    ///
    /// # Errors
    /// [`DecodeError`] if it is not the canonical encoding of a signed certificate.
    pub fn from_bytes(bytes: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        from_canonical(bytes, limits)
    }
}

/// A certificate that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCertificate {
    /// The certificate's id (hash of its body).
    pub id: ContentId,
    /// What it states.
    pub certificate: Certificate,
    /// The node key that signed it.
    pub signer: PublicKey,
    /// That key's delegation.
    pub delegation: SignedDelegation,
}

/// The checks [`verify_certificate`] makes, in its order, as printed by `xchg certificate
/// verify` (PROTOCOL.md 10.3).
pub const CHECKS: [&str; 8] = [
    "canonical CBOR of a signed certificate within the size and depth caps",
    "format version 1",
    "certificate body decodes canonically",
    "delegation: root key trusted for its exchange, root signature, zone of that exchange, node key not revoked, valid at the issue time",
    "node key signature over the certificate domain tag and the body",
    "id is the SHA-256 of the body",
    "content rules (number, rights, evidence)",
    "issuing zone is the delegation's zone, issue time not in the future",
];

/// The check [`check_revocation`] makes after [`CHECKS`], where the verifier knows revocations
/// (PROTOCOL.md 10.3 step 9).
pub const REVOCATION_CHECK: &str =
    "node key not revoked at or before the issue time, by the revocations the verifier holds";

/// Verifies a certificate offline: size → decoding → version → body decoding → delegation chain
/// (at the issue time) → signature → id → content rules → zone matches the delegation → issue
/// time not in the future (beyond [`CLOCK_SKEW_MS`]).
///
/// The body is decoded before the chain is checked because the delegation must cover the
/// issue time the body states; decoding is bounded by `limits` like any untrusted input.
///
/// # Errors
/// The first failed check, as a [`VerifyError`] (the same kinds as announcements).
pub fn verify_certificate(
    bytes: &[u8],
    trust: &TrustStore,
    now: Timestamp,
    limits: &Limits,
) -> Result<VerifiedCertificate, VerifyError> {
    let signed = SignedCertificate::from_bytes(bytes, limits)?;
    if signed.v != CERTIFICATE_VERSION {
        return Err(VerifyError::UnsupportedVersion { v: signed.v });
    }
    let certificate: Certificate = from_canonical(&signed.body, limits)?;
    signed.delegation.verify(trust, certificate.issued_at)?;
    let key = signed.delegation.delegation.node_key;
    key.verify(Domain::Certificate, &signed.body, &signed.signature)
        .map_err(|_| VerifyError::BadSignature)?;
    let computed = ContentId::of(&signed.body);
    if computed != signed.id {
        return Err(VerifyError::IdMismatch {
            claimed: signed.id,
            computed,
        });
    }
    certificate
        .validate()
        .map_err(|errors| VerifyError::InvalidCertificate { errors })?;
    let zone = &signed.delegation.delegation.zone;
    if certificate.zone != *zone {
        return Err(VerifyError::WrongOrigin {
            origin: certificate.zone.to_string(),
            zone: zone.to_string(),
        });
    }
    if certificate.issued_at > now.plus_millis(CLOCK_SKEW_MS) {
        return Err(VerifyError::FromTheFuture {
            at: certificate.issued_at,
            now,
        });
    }
    Ok(VerifiedCertificate {
        id: computed,
        certificate,
        signer: key,
        delegation: signed.delegation,
    })
}

/// Checks a verified certificate against the revocation of its signing key, when the verifier
/// knows when the delegation's exchange revoked it (`revoked_at`, the revocation's own time,
/// PROTOCOL.md 4.5): a key revoked at or before the certificate's issue time could no longer
/// issue it. A key revoked later leaves the certificates it signed before valid, as an expired
/// delegation does (PROTOCOL.md 10.3, step 9).
///
/// # Errors
/// [`VerifyError::RevokedKey`] when the key was revoked at or before the issue time.
pub fn check_revocation(
    verified: &VerifiedCertificate,
    revoked_at: Option<Timestamp>,
) -> Result<(), VerifyError> {
    match revoked_at {
        Some(at) if at <= verified.certificate.issued_at => Err(VerifyError::RevokedKey {
            key: verified.signer,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors;

    fn trust() -> TrustStore {
        let mut t = TrustStore::default();
        t.trust("xuchang".parse().expect("id"), vectors::root().public());
        t
    }

    #[test]
    fn a_signed_certificate_verifies_and_a_changed_byte_of_its_body_does_not() {
        let signed = crate::certificate_vectors::signed();
        let ok = verify_certificate(
            &signed.to_bytes(),
            &trust(),
            vectors::NOW,
            &Limits::default(),
        )
        .expect("verifies");
        assert_eq!(ok.certificate.number, "XC-2026-YUZHOU-000123");
        let mut tampered = signed.clone();
        let last = tampered.body.len() - 1;
        tampered.body[last] ^= 1;
        let e = verify_certificate(
            &tampered.to_bytes(),
            &trust(),
            vectors::NOW,
            &Limits::default(),
        );
        assert!(e.is_err());
    }

    #[test]
    fn a_key_revoked_before_the_issue_time_invalidates_the_certificate_and_one_revoked_after_does_not()
     {
        let signed = crate::certificate_vectors::signed();
        let v = verify_certificate(
            &signed.to_bytes(),
            &trust(),
            vectors::NOW,
            &Limits::default(),
        )
        .expect("verifies");
        let issued = v.certificate.issued_at;
        let e = check_revocation(&v, Some(Timestamp(issued.0 - 1))).expect_err("revoked before");
        assert_eq!(e.kind(), "revoked_key");
        assert!(
            check_revocation(&v, Some(issued)).is_err(),
            "revoked at the issue time"
        );
        assert!(check_revocation(&v, Some(issued.plus_millis(1))).is_ok());
        assert!(check_revocation(&v, None).is_ok());
    }

    #[test]
    fn a_certificate_number_carries_the_year_and_zone_and_six_digits_at_least() {
        let zone: ZoneId = "xuchang/yuzhou".parse().expect("zone");
        assert_eq!(number(&zone, vectors::NOW, 7), "XC-2026-YUZHOU-000007");
        assert_eq!(
            number(&zone, vectors::NOW, 1_234_567),
            "XC-2026-YUZHOU-1234567"
        );
    }

    #[test]
    fn a_certificate_whose_number_names_another_zone_breaks_the_number_rule() {
        let mut c = crate::certificate_vectors::certificate();
        c.number = "XC-2026-JIANAN-000123".into();
        let e = c.validate().expect_err("wrong zone in the number");
        assert!(e.to_string().contains("number"), "{e}");
    }
}
