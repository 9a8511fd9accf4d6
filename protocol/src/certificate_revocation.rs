//! Certificate revocations (证书撤销): the issuing zone's signed statement that one of its
//! registration certificates no longer stands, and its offline verification (PROTOCOL.md 10.6).
//!
//! A revocation is signed like a certificate, with its own domain tag, by a node key of the
//! issuing zone under its exchange's delegation, so a partner exchange that received the
//! certificate can verify the revocation with the same root key. It names the certificate by
//! its number and its id (the SHA-256 of its body, 10.2): a receiver applies it only to the
//! certificate with that id, and only when that certificate is of the revoking zone with that
//! number ([`check_names`]), so no zone revokes another's certificate.

use serde::{Deserialize, Serialize};

use crate::announcement::{REASON_CHARS, TrustStore, VerifyError};
use crate::application::{SignedMessage, Verified, check_authority, open};
use crate::canonical::{DEFAULT_MAX_DEPTH, DecodeError, Limits, to_canonical};
use crate::certificate::{Certificate, NUMBER_PREFIX};
use crate::ids::{ContentId, ZoneId};
use crate::keys::{Domain, Keypair};
use crate::listing::{ValidationError, Violations};
use crate::time::Timestamp;

/// Largest accepted encoding of a signed revocation: 16 KiB. The largest honest one (a
/// 2000-character reason of four-byte characters with the delegation) is about 8.5 KiB.
pub const MAX_REVOCATION_BYTES: usize = 16 * 1024;

/// The limits a receiver applies to a signed revocation: [`MAX_REVOCATION_BYTES`] and the
/// default nesting cap (an honest revocation nests 3 deep).
pub fn limits() -> Limits {
    Limits {
        max_size: MAX_REVOCATION_BYTES,
        max_depth: DEFAULT_MAX_DEPTH,
    }
}

/// What a revocation states. Field names are the same in JSON and CBOR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateRevocation {
    /// The number of the certificate revoked (PROTOCOL.md 10.1): one of `zone`'s.
    pub number: String,
    /// The id of the certificate revoked: the `id` of its SignedCertificate, the SHA-256 of its
    /// body (PROTOCOL.md 10.2).
    pub certificate_id: ContentId,
    /// The revoking zone: the certificate's issuing zone, and the zone of the signer's
    /// delegation.
    pub zone: ZoneId,
    /// Why, for the partners' operators: the reason rule of delistings (PROTOCOL.md 4.4).
    pub reason: String,
    /// When the zone's operator revoked it.
    pub revoked_at: Timestamp,
}

impl CertificateRevocation {
    /// Checks the content rules: `number` is a certificate number of `zone` (`XC-`, a year of
    /// four digits, the zone name in upper case, 6 to 20 digits); `reason` follows the reason
    /// rule.
    ///
    /// # Errors
    /// [`ValidationError`] listing each broken rule with its field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut v = Violations::default();
        let zone = self.zone.name().to_ascii_uppercase();
        let ok = self
            .number
            .strip_prefix(NUMBER_PREFIX)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(year, rest)| Some((year, rest.strip_prefix(&zone)?.strip_prefix('-')?)))
            .is_some_and(|(year, digits)| {
                year.len() == 4
                    && year.bytes().all(|b| b.is_ascii_digit())
                    && (6..=20).contains(&digits.len())
                    && digits.bytes().all(|b| b.is_ascii_digit())
            });
        if !ok {
            v.add(
                "number",
                format!(
                    "expected {NUMBER_PREFIX}-<year>-{zone}-<6 to 20 digits>, a certificate \
                     number of {}",
                    self.zone
                ),
            );
        }
        v.text("reason", &self.reason, REASON_CHARS, true);
        v.finish()
    }
}

/// A revocation that passed every check of [`verify_certificate_revocation`].
pub type VerifiedCertificateRevocation = Verified<CertificateRevocation>;

/// Signs `revocation` as a node of the issuing zone holding `key` under `delegation`: a
/// [`SignedMessage`] (the map of PROTOCOL.md 10.2 and 11.3) under the revocation's domain tag.
pub fn sign(
    revocation: &CertificateRevocation,
    key: &Keypair,
    delegation: crate::SignedDelegation,
) -> SignedMessage {
    // xchg's own protocol types contain no floats or tags, so encoding cannot fail.
    let body = to_canonical(revocation).unwrap_or_default();
    SignedMessage::seal(Domain::CertificateRevocation, body, key, delegation)
}

/// The checks [`verify_certificate_revocation`] makes, in its order (PROTOCOL.md 10.6).
pub const CHECKS: [&str; 8] = [
    "canonical CBOR of a signed revocation within the size and depth caps",
    "format version 1",
    "revocation body decodes canonically",
    "delegation: root key trusted for its exchange, root signature, zone of that exchange, node key not revoked, valid at the revocation time",
    "node key signature over the certificate-revocation domain tag and the body",
    "id is the SHA-256 of the body",
    "content rules (number of the revoking zone, reason)",
    "revoking zone is the delegation's zone, revocation time not in the future",
];

/// Verifies a certificate revocation offline (PROTOCOL.md 10.6 steps 1 to 8): size → decoding
/// → version → body decoding → delegation chain at `revoked_at` → signature → id → content
/// rules → `zone` is the delegation's zone → `revoked_at` not in the future.
///
/// What needs the verifier's state is not checked here: the signing key's revocation
/// ([`check_key_revocation`], step 9) and the certificate it names ([`check_names`], step 10).
///
/// # Errors
/// The first failed check, as a [`VerifyError`].
pub fn verify_certificate_revocation(
    bytes: &[u8],
    trust: &TrustStore,
    now: Timestamp,
    limits: &Limits,
) -> Result<VerifiedCertificateRevocation, VerifyError> {
    let verified = open(
        bytes,
        Domain::CertificateRevocation,
        |r: &CertificateRevocation| r.revoked_at,
        trust,
        limits,
    )?;
    let r = &verified.body;
    r.validate()
        .map_err(|errors| VerifyError::InvalidCertificateRevocation { errors })?;
    check_authority(&r.zone, r.revoked_at, &verified.delegation, now)?;
    Ok(verified)
}

/// Decodes a signed revocation without verifying it: the signed message and what it states.
///
/// # Errors
/// [`DecodeError`] if the bytes or the body are not the canonical encoding of a revocation.
pub fn decode(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(SignedMessage, CertificateRevocation), DecodeError> {
    let signed = SignedMessage::from_bytes(bytes, limits)?;
    let body = crate::canonical::from_canonical(&signed.body, limits)?;
    Ok((signed, body))
}

/// Step 9: when the verifier knows that the delegation's exchange revoked the signing key, and
/// when (`key_revoked_at`, PROTOCOL.md 4.5), that time is after `revoked_at`.
///
/// # Errors
/// [`VerifyError::RevokedKey`] when the key was revoked at or before the revocation time.
pub fn check_key_revocation(
    verified: &VerifiedCertificateRevocation,
    key_revoked_at: Option<Timestamp>,
) -> Result<(), VerifyError> {
    match key_revoked_at {
        Some(at) if at <= verified.body.revoked_at => Err(VerifyError::RevokedKey {
            key: verified.signer,
        }),
        _ => Ok(()),
    }
}

/// Step 10, once the verifier holds the certificate with the id the revocation names: the
/// certificate's issuing zone is the revoking zone (so the signer's, by step 8), its number
/// the one the revocation names, and its issue time at or before the revocation's time (so a
/// key whose delegation ended before the issue cannot revoke it by backdating).
///
/// # Errors
/// [`VerifyError::WrongOrigin`] when the certificate is another zone's,
/// [`VerifyError::WrongCertificate`] when it has another number,
/// [`VerifyError::RevokedBeforeIssue`] (kind `wrong_certificate`) when the revocation is dated
/// before the issue.
pub fn check_names(
    revocation: &CertificateRevocation,
    certificate: &Certificate,
) -> Result<(), VerifyError> {
    if certificate.zone != revocation.zone {
        return Err(VerifyError::WrongOrigin {
            origin: certificate.zone.to_string(),
            zone: revocation.zone.to_string(),
        });
    }
    if certificate.number != revocation.number {
        return Err(VerifyError::WrongCertificate {
            named: revocation.number.clone(),
            number: certificate.number.clone(),
        });
    }
    if revocation.revoked_at < certificate.issued_at {
        return Err(VerifyError::RevokedBeforeIssue {
            number: certificate.number.clone(),
            revoked_at: revocation.revoked_at,
            issued_at: certificate.issued_at,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate_vectors::{revocation, signed_revocation};
    use crate::vectors;

    fn trust() -> TrustStore {
        let mut t = TrustStore::default();
        t.trust("xuchang".parse().expect("id"), vectors::root().public());
        t
    }

    #[test]
    fn a_signed_revocation_verifies_and_names_its_certificate() {
        let bytes = signed_revocation(&revocation()).to_bytes();
        let v = verify_certificate_revocation(&bytes, &trust(), vectors::NOW, &limits())
            .expect("verifies");
        assert_eq!(v.body.number, "XC-2026-YUZHOU-000123");
        let certificate = crate::certificate_vectors::certificate();
        check_names(&v.body, &certificate).expect("names the vectors' certificate");
    }

    #[test]
    fn a_revocation_dated_before_its_certificate_was_issued_is_wrong_certificate() {
        // A key whose delegation ended before the certificate was issued can sign a revocation
        // only by dating it inside that delegation, so before the issue: step 10 refuses it.
        let certificate = crate::certificate_vectors::certificate();
        let mut r = revocation();
        r.revoked_at = Timestamp(certificate.issued_at.0 - 1);
        let e = check_names(&r, &certificate).expect_err("dated before the issue");
        assert_eq!(e.kind(), "wrong_certificate");
        r.revoked_at = certificate.issued_at;
        check_names(&r, &certificate).expect("dated at the issue time");
    }

    #[test]
    fn a_number_of_another_zone_or_a_blank_reason_breaks_the_content_rules() {
        let mut r = revocation();
        r.number = "XC-2026-CHANGGE-000123".into();
        assert!(r.validate().is_err());
        let mut r = revocation();
        r.number = "XC-26-YUZHOU-000123".into();
        assert!(r.validate().is_err(), "a year of two digits");
        let mut r = revocation();
        r.reason = " \u{200b}".into();
        let e = r.validate().expect_err("blank reason");
        assert!(e.to_string().contains("reason"), "{e}");
        let mut r = revocation();
        r.reason = "x".repeat(REASON_CHARS);
        assert!(r.validate().is_ok(), "2000 characters are allowed");
        r.reason.push('x');
        assert!(r.validate().is_err(), "2001 are not");
    }

    #[test]
    fn a_revocation_signed_with_the_certificate_tag_does_not_verify() {
        let body = to_canonical(&revocation()).expect("encodes");
        let forged = SignedMessage::seal(
            Domain::Certificate,
            body,
            &vectors::node(),
            vectors::delegation(),
        );
        let e =
            verify_certificate_revocation(&forged.to_bytes(), &trust(), vectors::NOW, &limits())
                .expect_err("wrong domain");
        assert_eq!(e.kind(), "bad_signature");
    }
}
