//! The error kinds of verification: every variant's kind is one of `VerifyError::KINDS`, every
//! listed kind comes from some variant, and PROTOCOL.md 6.3 lists exactly those strings.

use std::collections::BTreeSet;

use xchg_protocol::{
    AnnouncementKind, ContentId, DecodeError, FieldError, Timestamp, ValidationError, VerifyError,
};

/// One value of every variant (a new variant without a line here fails to compile the match in
/// `every_variant`).
fn every_variant() -> Vec<VerifyError> {
    let decode = [
        DecodeError::TooLarge { size: 2, max: 1 },
        DecodeError::TooDeep { offset: 0, max: 1 },
        DecodeError::Truncated { offset: 0 },
        DecodeError::TrailingBytes {
            offset: 0,
            extra: 1,
        },
        DecodeError::IndefiniteLength { offset: 0 },
        DecodeError::NonShortestArgument { offset: 0 },
        DecodeError::UnsortedKeys { offset: 0 },
        DecodeError::DuplicateKey { offset: 0 },
        DecodeError::UnsupportedItem {
            offset: 0,
            major: 7,
            info: 25,
        },
        DecodeError::InvalidUtf8 { offset: 0 },
        DecodeError::Shape("x".into()),
        DecodeError::NonCanonical,
    ];
    for d in &decode {
        // Exhaustive: a new decoding variant must be added above.
        match d {
            DecodeError::TooLarge { .. }
            | DecodeError::TooDeep { .. }
            | DecodeError::Truncated { .. }
            | DecodeError::TrailingBytes { .. }
            | DecodeError::IndefiniteLength { .. }
            | DecodeError::NonShortestArgument { .. }
            | DecodeError::UnsortedKeys { .. }
            | DecodeError::DuplicateKey { .. }
            | DecodeError::UnsupportedItem { .. }
            | DecodeError::InvalidUtf8 { .. }
            | DecodeError::Shape(_)
            | DecodeError::NonCanonical => {}
        }
    }
    let key = xchg_protocol::Keypair::from_seed(&[1; 32]).public();
    let exchange: xchg_protocol::ExchangeId = "xuchang".parse().expect("id");
    let zone: xchg_protocol::ZoneId = "xuchang/yuzhou".parse().expect("id");
    let invalid = ValidationError(vec![FieldError {
        field: "title".into(),
        message: "x".into(),
    }]);
    let mut all: Vec<VerifyError> = decode.into_iter().map(VerifyError::Decode).collect();
    all.extend([
        VerifyError::UnsupportedVersion { v: 2 },
        VerifyError::UnknownExchange {
            exchange: exchange.clone(),
        },
        VerifyError::UntrustedRoot {
            exchange: exchange.clone(),
        },
        VerifyError::BadDelegationSignature,
        VerifyError::ZoneOutsideExchange { zone },
        VerifyError::DelegationNotYetValid {
            not_before: Timestamp(2),
            now: Timestamp(1),
        },
        VerifyError::DelegationExpired {
            not_after: Timestamp(1),
            now: Timestamp(2),
        },
        VerifyError::RevokedKey { key },
        VerifyError::MissingDelegation {
            kind: AnnouncementKind::Listing,
        },
        VerifyError::UnexpectedDelegation,
        VerifyError::BadSignature,
        VerifyError::IdMismatch {
            claimed: ContentId::of(b"a"),
            computed: ContentId::of(b"b"),
        },
        VerifyError::WrongOrigin {
            origin: "a".into(),
            zone: "b".into(),
        },
        VerifyError::FromTheFuture {
            at: Timestamp(2),
            now: Timestamp(1),
        },
        VerifyError::InvalidListing(invalid.clone()),
        VerifyError::InvalidBody {
            kind: AnnouncementKind::Delisting,
            errors: invalid.clone(),
        },
        VerifyError::InvalidCertificate {
            errors: invalid.clone(),
        },
        VerifyError::InvalidCertificateRevocation {
            errors: invalid.clone(),
        },
        VerifyError::WrongCertificate {
            named: "a".into(),
            number: "b".into(),
        },
        VerifyError::RevokedBeforeIssue {
            number: "a".into(),
            revoked_at: Timestamp(1),
            issued_at: Timestamp(2),
        },
        VerifyError::InvalidApplication {
            errors: invalid.clone(),
        },
        VerifyError::InvalidDecision {
            errors: invalid.clone(),
        },
        VerifyError::WrongRequest {
            named: ContentId::of(b"a"),
            request: ContentId::of(b"b"),
        },
        VerifyError::WrongDecider {
            decider: "zhengzhou/erqi".parse().expect("id"),
            addressed: "zhengzhou/zhongyuan".parse().expect("id"),
        },
        VerifyError::WiderTerms {
            field: "usage_limit",
            message: "x".into(),
        },
        VerifyError::InvalidPrecedents {
            errors: invalid.clone(),
        },
        VerifyError::NotAsked {
            message: "x".into(),
        },
        VerifyError::InvalidDemand { errors: invalid },
    ]);
    for e in &all {
        // Exhaustive: a new variant must be added above.
        match e {
            VerifyError::Decode(_)
            | VerifyError::UnsupportedVersion { .. }
            | VerifyError::UnknownExchange { .. }
            | VerifyError::UntrustedRoot { .. }
            | VerifyError::BadDelegationSignature
            | VerifyError::ZoneOutsideExchange { .. }
            | VerifyError::DelegationNotYetValid { .. }
            | VerifyError::DelegationExpired { .. }
            | VerifyError::RevokedKey { .. }
            | VerifyError::MissingDelegation { .. }
            | VerifyError::UnexpectedDelegation
            | VerifyError::BadSignature
            | VerifyError::IdMismatch { .. }
            | VerifyError::WrongOrigin { .. }
            | VerifyError::FromTheFuture { .. }
            | VerifyError::InvalidListing(_)
            | VerifyError::InvalidBody { .. }
            | VerifyError::InvalidCertificate { .. }
            | VerifyError::InvalidCertificateRevocation { .. }
            | VerifyError::WrongCertificate { .. }
            | VerifyError::RevokedBeforeIssue { .. }
            | VerifyError::InvalidApplication { .. }
            | VerifyError::InvalidDecision { .. }
            | VerifyError::WrongRequest { .. }
            | VerifyError::WrongDecider { .. }
            | VerifyError::WiderTerms { .. }
            | VerifyError::InvalidPrecedents { .. }
            | VerifyError::NotAsked { .. }
            | VerifyError::InvalidDemand { .. } => {}
        }
    }
    all
}

/// The first column of the table under `heading` in PROTOCOL.md (the backquoted strings).
fn table_column(heading: &str) -> Vec<String> {
    let spec = include_str!("../../PROTOCOL.md");
    let section = spec
        .split_once(heading)
        .map(|(_, rest)| rest)
        .expect("the heading is in PROTOCOL.md");
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .filter_map(|l| {
            let cell = l.split('|').nth(1)?.trim();
            Some(cell.trim_matches('`').to_owned())
        })
        .collect()
}

#[test]
fn every_kind_a_variant_reports_is_listed_and_every_listed_kind_is_reported() {
    let reported: BTreeSet<&str> = every_variant().iter().map(VerifyError::kind).collect();
    let listed: BTreeSet<&str> = VerifyError::KINDS.iter().copied().collect();
    assert_eq!(reported, listed);
    assert_eq!(
        listed.len(),
        VerifyError::KINDS.len(),
        "a kind listed twice"
    );
}

#[test]
fn protocol_section_6_3_lists_exactly_the_kinds_in_the_same_order() {
    let in_spec = table_column("### 6.3 Error kinds");
    assert_eq!(in_spec, VerifyError::KINDS);
}
