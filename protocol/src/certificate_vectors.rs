//! The registration-certificate test vectors (`protocol/test-vectors/certificates/*.json`)
//! and the certificate-revocation vectors (`protocol/test-vectors/certificate-revocations/`),
//! built from the same fixed keys and clock as the announcement vectors ([`crate::vectors`]).
//! A test rebuilds them and compares the bytes, so the files never drift from the code.

use serde::Serialize;

use crate::announcement::{Delegation, SignedDelegation};
use crate::application::SignedMessage;
use crate::canonical::{DEFAULT_MAX_DEPTH, DEFAULT_MAX_SIZE, to_canonical};
use crate::certificate::{Certificate, SignedCertificate, Source};
use crate::certificate_revocation::{self, CertificateRevocation, MAX_REVOCATION_BYTES};
use crate::ids::ContentId;
use crate::keys::{Domain, Keypair};
use crate::listing::Right;
use crate::time::Timestamp;
use crate::vectors::{NOW, delegation, node, root, stranger};

/// One certificate vector, as stored in `test-vectors/certificates/<name>.json`. Byte fields
/// are lowercase hex.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateVector {
    /// File name without `.json`.
    pub name: String,
    /// What the case shows.
    pub description: String,
    /// The exchange whose root key the verifier trusts.
    pub exchange: String,
    /// The trusted root public key of `exchange`.
    pub root_public_key: String,
    /// The certificate body as carried (canonical CBOR, except where that is the fault).
    pub body: String,
    /// The id carried, in text form.
    pub id: String,
    /// Exactly the bytes the signature covers: the certificate tag followed by the body as
    /// signed.
    pub signing_input: String,
    /// **The input**: the signed certificate as stored in a file or sent.
    pub certificate: String,
    /// When the verifier knows the exchange revoked the signing node key: the revocation's
    /// time, in milliseconds since the Unix epoch (PROTOCOL.md 10.3 step 9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
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

const DAY_MS: u64 = 86_400_000;

fn lit<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("a valid literal")
}

/// The certificate of the vectors: registration 123 of `xuchang/yuzhou`, issued a day before
/// [`NOW`] for the listing of `listing-valid-v1`.
pub fn certificate() -> Certificate {
    let listing: ContentId =
        lit("sha256:7a3f5ad1c5c4a3f1ab6c1dc6a29b3e2cd0a9c8b04cf1f1a1b5b6cb3a1e0d2f11");
    Certificate {
        number: "XC-2026-YUZHOU-000123".into(),
        holder: lit("yuzhou-credit-center"),
        listing_id: listing,
        content_id: listing,
        source: Source::Collected,
        rights: vec![Right::Holding, Right::Operating],
        evidence: vec![ContentId::of(b"business licence scan")],
        zone: lit("xuchang/yuzhou"),
        issued_at: Timestamp(NOW.0 - DAY_MS),
    }
}

/// The valid signed certificate of the vectors.
pub fn signed() -> SignedCertificate {
    SignedCertificate::sign(&certificate(), &node(), delegation())
}

fn vector(
    name: &str,
    description: &str,
    signed: &SignedCertificate,
    error: Option<&str>,
) -> CertificateVector {
    vector_signed_over(name, description, signed, &signed.body, error)
}

fn vector_signed_over(
    name: &str,
    description: &str,
    signed: &SignedCertificate,
    signed_body: &[u8],
    error: Option<&str>,
) -> CertificateVector {
    CertificateVector {
        name: name.into(),
        description: description.into(),
        exchange: "xuchang".into(),
        root_public_key: root().public().to_string(),
        body: hex::encode(&signed.body),
        id: signed.id.to_string(),
        signing_input: hex::encode(Domain::Certificate.signing_input(signed_body)),
        certificate: hex::encode(signed.to_bytes()),
        revoked_at: None,
        now: NOW.0,
        max_size: DEFAULT_MAX_SIZE,
        max_depth: DEFAULT_MAX_DEPTH,
        valid: error.is_none(),
        error: error.map(str::to_owned),
    }
}

fn delegation_by(
    root_key: &Keypair,
    not_before: Timestamp,
    not_after: Timestamp,
) -> SignedDelegation {
    SignedDelegation::sign(
        Delegation {
            exchange: lit("xuchang"),
            zone: lit("xuchang/yuzhou"),
            node_key: node().public(),
            not_before,
            not_after,
        },
        root_key,
    )
}

/// Every certificate vector, in file-name order.
pub fn all() -> Vec<CertificateVector> {
    let valid = signed();
    let mut out = Vec::new();

    let expired_at_issue = delegation_by(
        &root(),
        Timestamp(NOW.0 - 30 * DAY_MS),
        Timestamp(NOW.0 - 2 * DAY_MS),
    );
    out.push(vector(
        "certificate-invalid-delegation-expired-at-issue",
        "The delegation ended a day before the certificate's issue time: a certificate needs a \
         delegation valid when it was issued.",
        &SignedCertificate::sign(&certificate(), &node(), expired_at_issue),
        Some("delegation_expired"),
    ));

    let mut forged = valid.clone();
    forged.delegation.delegation.zone = lit("xuchang/changge");
    out.push(vector(
        "certificate-invalid-tampered-delegation",
        "The delegation's zone was changed after the root signed it.",
        &forged,
        Some("bad_delegation_signature"),
    ));

    let mut tampered = valid.clone();
    let mut changed = certificate();
    changed.rights = vec![Right::Holding, Right::ProcessingUse, Right::Operating];
    tampered.body = to_canonical(&changed).unwrap_or_default();
    tampered.id = ContentId::of(&tampered.body);
    out.push(vector_signed_over(
        "certificate-invalid-tampered-rights",
        "A right was added to the body after signing (the id was recomputed): the signature no \
         longer verifies. signing_input shows the original body, which the signature covers.",
        &tampered,
        &valid.body,
        Some("bad_signature"),
    ));

    let untrusted = delegation_by(
        &stranger(),
        Timestamp(NOW.0 - 30 * DAY_MS),
        NOW.plus_millis(365 * DAY_MS),
    );
    out.push(vector(
        "certificate-invalid-untrusted-root",
        "The delegation is signed by a key that is not the exchange's root.",
        &SignedCertificate::sign(&certificate(), &node(), untrusted),
        Some("untrusted_root"),
    ));

    let issued = certificate().issued_at;
    out.push(CertificateVector {
        revoked_at: Some(issued.0 - 60_000),
        ..vector(
            "certificate-invalid-key-revoked-before-issue",
            "The exchange revoked the signing node key a minute before the issue time: the key \
             could no longer issue certificates.",
            &valid,
            Some("revoked_key"),
        )
    });

    out.push(CertificateVector {
        revoked_at: Some(issued.0 + 60_000),
        ..vector(
            "certificate-valid-key-revoked-after-issue",
            "The exchange revoked the signing node key a minute after the issue time: the \
             certificates it signed before stay valid.",
            &valid,
            None,
        )
    });

    out.push(vector(
        "certificate-valid",
        "Registration 123 of xuchang/yuzhou: holding and operating rights, one evidence hash, \
         issued a day before now.",
        &valid,
        None,
    ));
    // In the order of the files' names, as a directory listing sorts them.
    out.sort_by_key(|v| format!("{}.json", v.name));
    out
}

/// The revocation of the vectors' certificate by its issuing zone, an hour before [`NOW`].
pub fn revocation() -> CertificateRevocation {
    CertificateRevocation {
        number: certificate().number,
        certificate_id: signed().id,
        zone: lit("xuchang/yuzhou"),
        reason: "the evidence was forged".into(),
        revoked_at: Timestamp(NOW.0 - 3_600_000),
    }
}

/// `revocation` signed by the vectors' node key under its delegation to `xuchang/yuzhou`.
pub fn signed_revocation(revocation: &CertificateRevocation) -> SignedMessage {
    certificate_revocation::sign(revocation, &node(), crate::vectors::delegation())
}

/// One certificate-revocation vector, as stored in
/// `test-vectors/certificate-revocations/<name>.json`. Byte fields are lowercase hex.
#[derive(Debug, Clone, Serialize)]
pub struct RevocationVector {
    /// File name without `.json`.
    pub name: String,
    /// What the case shows.
    pub description: String,
    /// The exchange whose root key the verifier trusts.
    pub exchange: String,
    /// The trusted root public key of `exchange`.
    pub root_public_key: String,
    /// The revocation body as carried.
    pub body: String,
    /// The id carried, in text form.
    pub id: String,
    /// Exactly the bytes the signature covers: the tag followed by the body as signed.
    pub signing_input: String,
    /// **The input**: the signed revocation as sent.
    pub revocation: String,
    /// The signed certificate the verifier holds under the id the revocation names (step 10).
    pub certificate: String,
    /// When the verifier knows the exchange revoked the signing node key: the revocation's
    /// time, in milliseconds since the Unix epoch (step 9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_revoked_at: Option<u64>,
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

fn revocation_vector(
    name: &str,
    description: &str,
    signed: &SignedMessage,
    domain: Domain,
    error: Option<&str>,
) -> RevocationVector {
    RevocationVector {
        name: name.into(),
        description: description.into(),
        exchange: "xuchang".into(),
        root_public_key: root().public().to_string(),
        body: hex::encode(&signed.body),
        id: signed.id.to_string(),
        signing_input: hex::encode(domain.signing_input(&signed.body)),
        revocation: hex::encode(signed.to_bytes()),
        certificate: hex::encode(self::signed().to_bytes()),
        key_revoked_at: None,
        now: NOW.0,
        max_size: MAX_REVOCATION_BYTES,
        max_depth: DEFAULT_MAX_DEPTH,
        valid: error.is_none(),
        error: error.map(str::to_owned),
    }
}

/// Every certificate-revocation vector, in file-name order.
pub fn revocations() -> Vec<RevocationVector> {
    let tag = Domain::CertificateRevocation;
    let valid = signed_revocation(&revocation());
    let changge = SignedDelegation::sign(
        Delegation {
            zone: lit("xuchang/changge"),
            ..crate::vectors::delegation().delegation
        },
        &root(),
    );
    let mut out = Vec::new();

    out.push(revocation_vector(
        "certificate-revocation-valid",
        "xuchang/yuzhou revokes its certificate XC-2026-YUZHOU-000123 an hour before now, \
         naming it by number and id.",
        &valid,
        tag,
        None,
    ));

    out.push(revocation_vector(
        "certificate-revocation-invalid-signed-by-another-zone",
        "A node of xuchang/changge signs a revocation in the name of xuchang/yuzhou: the \
         revoking zone is not the signer's.",
        &certificate_revocation::sign(&revocation(), &node(), changge.clone()),
        tag,
        Some("wrong_origin"),
    ));

    let theirs = CertificateRevocation {
        number: "XC-2026-CHANGGE-000123".into(),
        zone: lit("xuchang/changge"),
        ..revocation()
    };
    out.push(revocation_vector(
        "certificate-revocation-invalid-of-another-zones-certificate",
        "A node of xuchang/changge revokes, in its own name, the id of a certificate of \
         xuchang/yuzhou: valid offline, but the certificate with that id is not the revoking \
         zone's (step 10).",
        &certificate_revocation::sign(&theirs, &node(), changge),
        tag,
        Some("wrong_origin"),
    ));

    let other_number = CertificateRevocation {
        number: "XC-2026-YUZHOU-000124".into(),
        ..revocation()
    };
    out.push(revocation_vector(
        "certificate-revocation-invalid-wrong-certificate",
        "The revocation names number 000124 with the id of certificate 000123 (step 10).",
        &signed_revocation(&other_number),
        tag,
        Some("wrong_certificate"),
    ));

    let mut tampered = valid.clone();
    tampered.body = to_canonical(&CertificateRevocation {
        reason: "revoked at the holder's request".into(),
        ..revocation()
    })
    .unwrap_or_default();
    tampered.id = ContentId::of(&tampered.body);
    let mut v = revocation_vector(
        "certificate-revocation-invalid-tampered-reason",
        "The reason was changed after signing (the id was recomputed): the signature no longer \
         verifies. signing_input shows the original body, which the signature covers.",
        &tampered,
        tag,
        Some("bad_signature"),
    );
    v.signing_input = hex::encode(tag.signing_input(&valid.body));
    out.push(v);

    let body = to_canonical(&revocation()).unwrap_or_default();
    out.push(revocation_vector(
        "certificate-revocation-invalid-certificate-tag",
        "The revocation body signed under the certificate tag: domain separation makes the \
         signature fail under the revocation tag.",
        &SignedMessage::seal(
            Domain::Certificate,
            body,
            &node(),
            crate::vectors::delegation(),
        ),
        Domain::Certificate,
        Some("bad_signature"),
    ));

    out.push(revocation_vector(
        "certificate-revocation-invalid-blank-reason",
        "A reason of white space only breaks the reason rule.",
        &signed_revocation(&CertificateRevocation {
            reason: " \t ".into(),
            ..revocation()
        }),
        tag,
        Some("invalid_certificate_revocation"),
    ));

    out.push(revocation_vector(
        "certificate-revocation-invalid-dated-before-issue",
        "A revocation dated a minute before the certificate it names was issued, as a key whose \
         delegation ended before the issue would date it (step 10).",
        &signed_revocation(&CertificateRevocation {
            revoked_at: Timestamp(certificate().issued_at.0 - 60_000),
            ..revocation()
        }),
        tag,
        Some("wrong_certificate"),
    ));

    let revoked_at = revocation().revoked_at;
    out.push(RevocationVector {
        key_revoked_at: Some(revoked_at.0 - 60_000),
        ..revocation_vector(
            "certificate-revocation-invalid-key-revoked-before",
            "The exchange revoked the signing node key a minute before the revocation time.",
            &valid,
            tag,
            Some("revoked_key"),
        )
    });
    out.sort_by_key(|v| format!("{}.json", v.name));
    out
}
