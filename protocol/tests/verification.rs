//! `verify` refuses each kind of bad announcement with its own error kind, at the exact clock
//! boundaries PROTOCOL.md 6.2 states, and applies revocations only within the revoking exchange.
//!
//! Every case starts from the valid inputs of the test vectors (`vectors::root`, `node`,
//! `delegation`, `NOW`) and changes one thing.

use xchg_protocol::announcement::{CLOCK_SKEW_MS, REASON_CHARS};
use xchg_protocol::canonical::Limits;
use xchg_protocol::{
    AnnouncementKind, Body, Delegation, Delisting, Envelope, ExchangeId, Keypair, Listing,
    Revocation, SignedDelegation, Timestamp, TrustStore, Verified, VerifyError, ZoneId, vectors,
    verify,
};

const NOW: Timestamp = vectors::NOW;

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("identifier literal")
}

fn xuchang() -> ExchangeId {
    id("xuchang")
}

fn xinzheng() -> ExchangeId {
    id("xinzheng")
}

/// The root key of the second exchange of these tests (seed `0x44` × 32).
fn xinzheng_root() -> Keypair {
    Keypair::from_seed(&[0x44; 32])
}

/// A receiver that trusts the vectors' xuchang root and nothing else.
fn trust() -> TrustStore {
    let mut trust = TrustStore::default();
    trust.trust(xuchang(), vectors::root().public());
    trust
}

fn check(wire: &[u8], trust: &TrustStore, now: Timestamp) -> Result<Verified, VerifyError> {
    verify(wire, trust, now, &Limits::default())
}

/// The error kind `verify` reports, or `"verified"`.
fn kind_of(wire: &[u8], trust: &TrustStore, now: Timestamp) -> String {
    match check(wire, trust, now) {
        Ok(_) => "verified".into(),
        Err(e) => e.kind().into(),
    }
}

fn listing_at(at: Timestamp) -> Listing {
    Listing::first_version(vectors::credit_draft(), id("xuchang/yuzhou"), at)
}

fn listing() -> Listing {
    listing_at(Timestamp(NOW.0 - 86_400_000))
}

/// The vectors' delegation with one change, signed again by the xuchang root.
fn delegation_with(change: impl FnOnce(&mut Delegation)) -> SignedDelegation {
    let mut d = vectors::delegation().delegation;
    change(&mut d);
    SignedDelegation::sign(d, &vectors::root())
}

fn listing_wire(delegation: SignedDelegation) -> Vec<u8> {
    Envelope::listing(&listing(), &vectors::node(), delegation).to_bytes()
}

fn valid_wire() -> Vec<u8> {
    listing_wire(vectors::delegation())
}

fn delisting() -> Delisting {
    Delisting {
        listing_id: listing().id(),
        version: 1,
        origin: id("xuchang/yuzhou"),
        reason: "数据源停止更新".into(),
        delisted_at: Timestamp(NOW.0 - 60_000),
    }
}

fn delisting_wire(delisting: &Delisting) -> Vec<u8> {
    Envelope::delisting(delisting, &vectors::node(), vectors::delegation()).to_bytes()
}

fn revocation(exchange: ExchangeId, reason: &str) -> Revocation {
    Revocation {
        exchange,
        key: vectors::stranger().public(),
        reason: reason.into(),
        revoked_at: Timestamp(NOW.0 - 60_000),
    }
}

fn revocation_wire(revocation: &Revocation, root: &Keypair) -> Vec<u8> {
    Envelope::revocation(revocation, root).to_bytes()
}

/// Replaces the only occurrence of `from` in `wire` by `to` (same length).
fn patched(wire: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at: Vec<usize> = wire
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "pattern occurs exactly once");
    let mut out = wire.to_vec();
    out[at[0]..at[0] + to.len()].copy_from_slice(to);
    out
}

#[test]
fn the_unchanged_inputs_verify() {
    let ok = check(&valid_wire(), &trust(), NOW).expect("valid");
    assert_eq!(ok.signer, vectors::node().public());
    check(&delisting_wire(&delisting()), &trust(), NOW).expect("valid delisting");
    let ok = check(
        &revocation_wire(&revocation(xuchang(), "key compromised"), &vectors::root()),
        &trust(),
        NOW,
    )
    .expect("valid revocation");
    assert_eq!(ok.signer, vectors::root().public());
}

#[test]
fn a_byte_after_the_envelope_is_trailing_bytes() {
    let mut wire = valid_wire();
    wire.push(0x00);
    assert_eq!(kind_of(&wire, &trust(), NOW), "trailing_bytes");
}

#[test]
fn an_envelope_text_that_is_not_utf8_is_invalid_utf8() {
    // The kind value "listing" (67 6c 69 73 74 69 6e 67) with its first letter replaced by a
    // lone UTF-8 continuation byte.
    let wire = patched(&valid_wire(), b"\x67listing", b"\x67\x80isting");
    assert_eq!(kind_of(&wire, &trust(), NOW), "invalid_utf8");
}

#[test]
fn an_unknown_enumeration_value_in_the_envelope_is_shape() {
    let wire = patched(&valid_wire(), b"\x67listing", b"\x67Listing");
    assert_eq!(kind_of(&wire, &trust(), NOW), "shape");
}

#[test]
fn an_unknown_envelope_field_is_shape_not_non_canonical() {
    // Insert `"x": 0` after the first entry `"v": 1`: canonical order is kept, so only the
    // typed reading can object.
    let wire = valid_wire();
    let mut extra = vec![wire[0] + 1];
    extra.extend_from_slice(&wire[1..4]);
    extra.extend_from_slice(&[0x61, b'x', 0x00]);
    extra.extend_from_slice(&wire[4..]);
    assert_eq!(kind_of(&extra, &trust(), NOW), "shape");
}

#[test]
fn an_envelope_of_version_2_is_unsupported_version() {
    let mut env = Envelope::listing(&listing(), &vectors::node(), vectors::delegation());
    env.v = 2;
    let err = check(&env.to_bytes(), &trust(), NOW).expect_err("version 2");
    assert_eq!(err, VerifyError::UnsupportedVersion { v: 2 });
    assert_eq!(err.kind(), "unsupported_version");
}

#[test]
fn a_revocation_carrying_a_delegation_is_unexpected_delegation() {
    let mut env = Envelope::revocation(&revocation(xuchang(), "key compromised"), &vectors::root());
    env.delegation = Some(vectors::delegation());
    assert_eq!(
        kind_of(&env.to_bytes(), &trust(), NOW),
        "unexpected_delegation"
    );
}

#[test]
fn a_delegation_from_an_exchange_without_agreement_is_unknown_exchange() {
    let mut only_xinzheng = TrustStore::default();
    only_xinzheng.trust(xinzheng(), xinzheng_root().public());
    assert_eq!(
        kind_of(&valid_wire(), &only_xinzheng, NOW),
        "unknown_exchange"
    );
}

#[test]
fn a_delegation_changed_after_signing_is_bad_delegation_signature() {
    let mut stretched = vectors::delegation();
    stretched.delegation.not_after = stretched.delegation.not_after.plus_millis(1);
    assert_eq!(
        kind_of(&listing_wire(stretched), &trust(), NOW),
        "bad_delegation_signature"
    );
}

#[test]
fn a_delegation_to_a_zone_of_another_exchange_is_zone_outside_exchange() {
    let foreign = delegation_with(|d| d.zone = id("xinzheng/zhongmou"));
    assert_eq!(
        kind_of(&listing_wire(foreign), &trust(), NOW),
        "zone_outside_exchange"
    );
}

#[test]
fn a_node_key_revoked_by_its_own_exchange_is_revoked_key() {
    let mut trust = trust();
    trust.revoke(xuchang(), vectors::node().public());
    let err = check(&valid_wire(), &trust, NOW).expect_err("revoked");
    assert_eq!(
        err,
        VerifyError::RevokedKey {
            key: vectors::node().public()
        }
    );
    assert_eq!(err.kind(), "revoked_key");
}

#[test]
fn a_revocation_by_another_exchange_does_not_affect_this_exchanges_delegation() {
    let mut trust = trust();
    trust.trust(xinzheng(), xinzheng_root().public());
    trust.revoke(xinzheng(), vectors::node().public());
    assert!(trust.is_revoked(&xinzheng(), &vectors::node().public()));
    assert!(!trust.is_revoked(&xuchang(), &vectors::node().public()));
    check(&valid_wire(), &trust, NOW).expect("xuchang never revoked its node key");
}

#[test]
fn a_delegation_starting_within_the_clock_skew_is_accepted_and_one_millisecond_later_is_not() {
    let starting = |ms: u64| delegation_with(|d| d.not_before = NOW.plus_millis(ms));
    assert_eq!(
        kind_of(&listing_wire(starting(CLOCK_SKEW_MS - 1)), &trust(), NOW),
        "verified"
    );
    assert_eq!(
        kind_of(&listing_wire(starting(CLOCK_SKEW_MS)), &trust(), NOW),
        "verified"
    );
    let err =
        check(&listing_wire(starting(CLOCK_SKEW_MS + 1)), &trust(), NOW).expect_err("too early");
    assert_eq!(err.kind(), "delegation_not_yet_valid");
    assert_eq!(
        err,
        VerifyError::DelegationNotYetValid {
            not_before: NOW.plus_millis(CLOCK_SKEW_MS + 1),
            now: NOW
        }
    );
}

#[test]
fn a_delegation_ending_exactly_now_has_expired_and_one_ending_a_millisecond_later_has_not() {
    let ending = |at: Timestamp| delegation_with(|d| d.not_after = at);
    assert_eq!(
        kind_of(&listing_wire(ending(NOW)), &trust(), NOW),
        "delegation_expired"
    );
    assert_eq!(
        kind_of(&listing_wire(ending(NOW.plus_millis(1))), &trust(), NOW),
        "verified"
    );
}

#[test]
fn a_body_dated_up_to_the_clock_skew_ahead_is_accepted_and_one_millisecond_more_is_from_the_future()
{
    let dated = |ms: u64| {
        Envelope::listing(
            &listing_at(NOW.plus_millis(ms)),
            &vectors::node(),
            vectors::delegation(),
        )
        .to_bytes()
    };
    assert_eq!(kind_of(&dated(CLOCK_SKEW_MS), &trust(), NOW), "verified");
    let err = check(&dated(CLOCK_SKEW_MS + 1), &trust(), NOW).expect_err("future");
    assert_eq!(err.kind(), "from_the_future");
    assert_eq!(
        err,
        VerifyError::FromTheFuture {
            at: NOW.plus_millis(CLOCK_SKEW_MS + 1),
            now: NOW
        }
    );
}

#[test]
fn a_listing_breaking_a_content_rule_is_invalid_listing_through_verify() {
    let mut blank = vectors::credit_draft();
    blank.title = " \t ".into();
    let l = Listing::first_version(blank, id("xuchang/yuzhou"), Timestamp(NOW.0 - 1_000));
    let wire = Envelope::listing(&l, &vectors::node(), vectors::delegation()).to_bytes();
    match check(&wire, &trust(), NOW) {
        Err(e @ VerifyError::InvalidListing(_)) => {
            assert_eq!(e.kind(), "invalid_listing");
            assert!(e.to_string().contains("title: must not be empty"), "{e}");
        }
        other => panic!("expected invalid_listing, got {other:?}"),
    }
}

#[test]
fn a_delisting_of_version_0_is_invalid_body() {
    let zero = Delisting {
        version: 0,
        ..delisting()
    };
    let err = check(&delisting_wire(&zero), &trust(), NOW).expect_err("version 0");
    assert_eq!(err.kind(), "invalid_body");
    assert!(
        err.to_string().contains("version: versions start at 1"),
        "{err}"
    );
}

#[test]
fn a_delisting_reason_that_is_blank_or_holds_a_control_character_is_invalid_body() {
    for reason in ["", "  \n\t ", "停止\r更新", "stop\u{1b}[2J"] {
        let bad = Delisting {
            reason: reason.into(),
            ..delisting()
        };
        match check(&delisting_wire(&bad), &trust(), NOW) {
            Err(VerifyError::InvalidBody { kind, errors }) => {
                assert_eq!(kind, AnnouncementKind::Delisting);
                assert_eq!(errors.0[0].field, "reason", "{reason:?}");
            }
            other => panic!("{reason:?}: expected invalid_body, got {other:?}"),
        }
    }
    let multiline = Delisting {
        reason: "数据源停止更新\n\t见公告".into(),
        ..delisting()
    };
    check(&delisting_wire(&multiline), &trust(), NOW).expect("newline and tab are allowed");
}

#[test]
fn a_revocation_reason_may_have_2000_characters_but_not_2001() {
    let root = vectors::root();
    let at_limit = revocation(xuchang(), &"许".repeat(REASON_CHARS));
    check(&revocation_wire(&at_limit, &root), &trust(), NOW).expect("2000 characters");
    let over = revocation(xuchang(), &"许".repeat(REASON_CHARS + 1));
    let err = check(&revocation_wire(&over, &root), &trust(), NOW).expect_err("2001 characters");
    assert_eq!(err.kind(), "invalid_body");
    assert!(
        err.to_string()
            .contains("2001 characters, at most 2000 allowed"),
        "{err}"
    );
}

#[test]
fn a_revocation_in_the_name_of_another_known_exchange_is_wrong_origin() {
    let mut trust = trust();
    trust.trust(xinzheng(), xinzheng_root().public());
    let wire = revocation_wire(&revocation(xuchang(), "key compromised"), &xinzheng_root());
    match check(&wire, &trust, NOW) {
        Err(e @ VerifyError::WrongOrigin { .. }) => {
            assert_eq!(e.kind(), "wrong_origin");
            assert_eq!(
                e,
                VerifyError::WrongOrigin {
                    origin: "xuchang".into(),
                    zone: "xinzheng".into()
                }
            );
        }
        other => panic!("expected wrong_origin, got {other:?}"),
    }
}

#[test]
fn a_revocation_signed_by_no_trusted_root_is_bad_signature() {
    let wire = revocation_wire(
        &revocation(xuchang(), "key compromised"),
        &vectors::stranger(),
    );
    assert_eq!(kind_of(&wire, &trust(), NOW), "bad_signature");
}

#[test]
fn a_root_key_trusted_for_two_exchanges_delegates_and_revokes_for_both() {
    let shared = vectors::root();
    let mut trust = trust();
    trust.trust(xinzheng(), shared.public());

    let zone: ZoneId = id("xinzheng/zhongmou");
    let delegation = delegation_with(|d| {
        d.exchange = xinzheng();
        d.zone = zone.clone();
    });
    let l = Listing::first_version(vectors::credit_draft(), zone, Timestamp(NOW.0 - 1_000));
    let wire = Envelope::listing(&l, &vectors::node(), delegation).to_bytes();
    check(&wire, &trust, NOW).expect("a xinzheng listing under the shared root");
    check(&valid_wire(), &trust, NOW).expect("a xuchang listing under the shared root");

    for exchange in [xuchang(), xinzheng()] {
        let ok = check(
            &revocation_wire(&revocation(exchange.clone(), "key compromised"), &shared),
            &trust,
            NOW,
        )
        .unwrap_or_else(|e| panic!("revocation for {exchange}: {e}"));
        assert_eq!(ok.signer, shared.public());
        match ok.body {
            Body::Revocation(r) => assert_eq!(r.exchange, exchange),
            other => panic!("expected a revocation, got {other:?}"),
        }
    }
}
