//! What `parse` builds from the valid fixtures, and the rules that need a variation of them.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use xchg_federation_config::{
    Agreement, ApiSection, CategorySet, ConfigError, ExportPolicy, HttpLimits, Loaded, ModeSet,
    RaftTuning, Role, Severity, Violation, parse,
};
use xchg_protocol::{Classification, DeliveryMode, ExchangeId, Timestamp};

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/valid")
        .join(name);
    std::fs::read_to_string(path).expect("read fixture")
}

fn parse_at(text: &str, now: Timestamp) -> Result<Loaded, ConfigError> {
    parse(text, Path::new("/etc/xchg/nodes"), now)
}

fn errors(err: &ConfigError) -> Vec<String> {
    err.violations()
        .iter()
        .filter(|v| v.is_error())
        .map(Violation::to_string)
        .collect()
}

fn warnings(loaded: &Loaded) -> Vec<String> {
    loaded.warnings.iter().map(Violation::to_string).collect()
}

#[test]
fn the_three_member_fixture_becomes_a_fully_typed_config() {
    let loaded =
        parse_at(&fixture("three_members_with_outside.toml"), common::NOW).expect("valid fixture");
    assert!(loaded.warnings.is_empty(), "{:?}", warnings(&loaded));
    let c = loaded.config;
    assert_eq!(
        c.node.key_file,
        Path::new("/etc/xchg/nodes/keys/xuchang-yuzhou-1.key")
    );
    assert_eq!(c.zone.id.to_string(), "xuchang/yuzhou");
    assert_eq!(c.zone.members.len(), 3);
    assert_eq!(
        c.own_member().map(|m| m.public_key),
        Some(common::key(11).public())
    );
    assert_eq!(
        c.peers().map(|m| m.name.to_string()).collect::<Vec<_>>(),
        ["yuzhou-2", "yuzhou-3"]
    );
    assert_eq!(
        c.zone.delegation.delegation.node_key,
        common::key(11).public()
    );
    assert_eq!(c.gossip.bootstrap.len(), 2);

    let zhengzhou: ExchangeId = "zhengzhou".parse().expect("exchange id");
    let outside = c
        .agreement_with(&zhengzhou)
        .expect("agreement with zhengzhou");
    let credit_and_transport: BTreeSet<String> = ["credit", "transport"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(outside.categories, CategorySet::Only(credit_and_transport));
    assert!(!outside.delivery_modes.contains(DeliveryMode::File));
    assert!(outside.delivery_modes.contains(DeliveryMode::Sandbox));
    assert!(outside.require_registration);
    assert_eq!(
        c.agreement_with(&c.exchange.id),
        Some(&Agreement::default())
    );
    assert_eq!(
        c.agreement_with(&"beijing".parse().expect("exchange id")),
        None
    );

    let trust = c.trust_store();
    assert_eq!(trust.roots.len(), 2);
    c.zone
        .delegation
        .verify(&trust, common::NOW)
        .expect("own delegation verifies");

    assert_eq!(
        c.api.limits,
        HttpLimits {
            max_connections: 64,
            header_read_timeout_ms: 2000,
            idle_timeout_ms: 30_000,
            request_timeout_ms: 15_000,
        }
    );
    let roles: Vec<Role> = c.api.tokens.iter().map(|t| t.role).collect();
    assert_eq!(roles, Role::ALL);
    let parties: Vec<Option<&str>> = c
        .api
        .tokens
        .iter()
        .map(|t| t.party.as_ref().map(|p| p.as_str()))
        .collect();
    assert_eq!(
        parties,
        [
            None,
            None,
            Some("yuzhou-credit-center"),
            Some("yuzhou-rural-bank"),
            None
        ],
        "the provider and buyer tokens are bound to parties"
    );
    let founding: Vec<(&str, &str, usize)> = c
        .parties
        .iter()
        .map(|p| (p.id.as_str(), p.credit_code.as_str(), p.kinds.len()))
        .collect();
    assert_eq!(
        founding,
        [
            ("yuzhou-credit-center", "12411081T81DJ7JM9K", 2),
            ("yuzhou-rural-bank", "91411081X35R9BLFW5", 1)
        ]
    );
    assert_eq!(
        c.api.tokens[0].sha256,
        xchg_federation_config::token_hash("xchg-admin-fixture")
    );
}

#[test]
fn omitted_sections_take_their_documented_defaults() {
    let c = parse_at(&fixture("minimal.toml"), common::NOW)
        .expect("valid fixture")
        .config;
    assert_eq!(c.raft, RaftTuning::default());
    assert_eq!(c.raft.heartbeat_ms, 250);
    assert_eq!(c.export, ExportPolicy::default());
    assert_eq!(c.export.ceiling, Classification::General);
    assert_eq!(c.sibling_agreement.categories, CategorySet::All);
    assert_eq!(c.sibling_agreement.delivery_modes, ModeSet::All);
    assert_eq!(c.api.max_body_bytes, ApiSection::DEFAULT_MAX_BODY_BYTES);
    assert_eq!(c.api.limits, HttpLimits::default());
    assert_eq!(
        (
            c.api.limits.max_connections,
            c.api.limits.header_read_timeout_ms
        ),
        (512, 10_000)
    );
    assert!(c.api.tokens.is_empty() && c.outside.is_empty() && c.gossip.bootstrap.is_empty());
}

#[test]
fn a_delegation_ending_within_30_days_draws_a_warning() {
    let ten_days_before_end = Timestamp(common::NOT_AFTER.millis() - 10 * 24 * 3600 * 1000);
    let loaded = parse_at(
        &fixture("three_members_with_outside.toml"),
        ten_days_before_end,
    )
    .expect("still valid");
    assert_eq!(
        warnings(&loaded),
        [
            "zone.delegation: expires at 2100-01-01T00:00:00.000Z, in 10 days; ask the exchange for \
          a new delegation"
        ]
    );
}

#[test]
fn a_delegation_that_has_not_started_is_an_error() {
    let before_start = Timestamp(common::NOT_BEFORE.millis() - 24 * 3600 * 1000);
    let err = parse_at(&fixture("minimal.toml"), before_start).expect_err("not yet valid");
    assert_eq!(
        errors(&err),
        [
            "zone.delegation: not valid before 2025-01-01T00:00:00.000Z (now \
          2024-12-31T00:00:00.000Z)"
        ]
    );
}

/// The three-member fixture without its third member.
fn two_members() -> String {
    let text = fixture("three_members_with_outside.toml");
    let start = text.rfind("[[zone.members]]").expect("third member");
    let end = text.find("[raft]").expect("raft section");
    format!("{}{}", &text[..start], &text[end..])
}

#[test]
fn an_even_sized_zone_draws_a_warning() {
    let loaded = parse_at(&two_members(), common::NOW).expect("valid");
    assert_eq!(
        warnings(&loaded),
        [
            "zone.members: 2 members tolerate no more failed nodes than 1 (both tolerate 0); use an \
          odd number"
        ]
    );
}

#[test]
fn duplicate_addresses_and_keys_name_the_member_they_repeat() {
    let text = fixture("three_members_with_outside.toml")
        .replace("127.0.0.1:7107", "127.0.0.1:7104")
        .replace(
            "kaKKC3Q4FZOk2UaVeSCJJq/IrYLIg5t2RDWbnrqaSzo=",
            "Zr5+Myx6RTMyvZ0Kf32wVfXF7xoGraZtmLOftoEMRzo=",
        );
    let err = parse_at(&text, common::NOW).expect_err("duplicates");
    assert_eq!(
        errors(&err),
        [
            "zone.members[2].raft_addr: duplicates zone.members[1].raft_addr (127.0.0.1:7104)",
            "zone.members[2].public_key: duplicates zone.members[0].public_key \
             (Zr5+Myx6RTMyvZ0Kf32wVfXF7xoGraZtmLOftoEMRzo=)",
        ]
    );
}

#[test]
fn a_member_named_by_host_name_is_matched_to_the_listener_by_port() {
    let named = fixture("three_members_with_outside.toml")
        .replace(
            "raft_addr = \"127.0.0.1:7101\"",
            "raft_addr = \"XC-1.example.cn:7101\"",
        )
        .replace(
            "raft_addr = \"127.0.0.1:7104\"",
            "raft_addr = \"[fd00::2]:7104\"",
        );
    let loaded = parse_at(&named, common::NOW).expect("a name and a v6 address are hosts");
    let members = &loaded.config.zone.members;
    assert_eq!(members[0].raft_addr.to_string(), "xc-1.example.cn:7101");
    assert_eq!(members[1].raft_addr.to_string(), "[fd00::2]:7104");
    let other_port = named.replace("XC-1.example.cn:7101", "xc-1.example.cn:7199");
    let err = parse_at(&other_port, common::NOW).expect_err("another port");
    assert!(
        errors(&err)
            .iter()
            .any(|e| e.starts_with("listen.raft: 127.0.0.1:7101 differs from zone.members[0]")),
        "{err}"
    );
    let not_a_host = named.replace("XC-1.example.cn:7101", "xc_1.example.cn:7101");
    let err = parse_at(&not_a_host, common::NOW).expect_err("not a host");
    assert!(
        errors(&err).iter().any(|e| e
            .starts_with("zone.members[0].raft_addr: \"xc_1.example.cn:7101\" is not host:port")),
        "{err}"
    );
}

/// A node config is held to an inventory's `bind` rules: nothing listens on multicast, a
/// member at an address listens there or everywhere, and one at `localhost` on loopback.
#[test]
fn a_listener_that_the_member_address_cannot_reach_is_refused() {
    let base = fixture("three_members_with_outside.toml");
    let with = |raft_addr: &str, listen: &str| {
        base.replace(
            "raft_addr = \"127.0.0.1:7101\"",
            &format!("raft_addr = \"{raft_addr}\""),
        )
        .replace("raft = \"127.0.0.1:7101\"", &format!("raft = \"{listen}\""))
    };
    let refused = |raft_addr: &str, listen: &str, why: &str| {
        let err = parse_at(&with(raft_addr, listen), common::NOW).expect_err(listen);
        assert!(
            errors(&err)
                .iter()
                .any(|e| e.starts_with("listen.raft: ") && e.contains(why)),
            "{raft_addr} / {listen}: {err}"
        );
    };
    refused(
        "localhost:7101",
        "10.0.0.5:7101",
        "is not where localhost is",
    );
    refused("127.0.0.1:7101", "224.0.0.1:7101", "multicast");
    refused("10.0.0.5:7101", "10.0.0.6:7101", "is not 10.0.0.5");
    for (raft_addr, listen) in [
        ("[fd00::1]:7101", "[::]:7101"),
        // Behind NAT or in a container a public v6 address may reach a v4 listener.
        ("[fd00::1]:7101", "0.0.0.0:7101"),
        ("[fd00::1]:7101", "[fd00::1]:7101"),
        ("localhost:7101", "127.0.0.1:7101"),
        ("localhost:7101", "0.0.0.0:7101"),
        ("xc-1.example.cn:7101", "10.0.0.5:7101"),
        ("10.0.0.5:7101", "0.0.0.0:7101"),
    ] {
        parse_at(&with(raft_addr, listen), common::NOW)
            .unwrap_or_else(|e| panic!("{raft_addr} / {listen}: {e}"));
    }
}

#[test]
fn an_outside_agreement_must_state_every_term() {
    let text = fixture("three_members_with_outside.toml").replace(
        "categories = [\"credit\", \"transport\"]\nmax_classification = \"general\"\n",
        "",
    );
    let err = parse_at(&text, common::NOW).expect_err("missing terms");
    let paths: Vec<&str> = err.violations().iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "outside[0].agreement.categories",
            "outside[0].agreement.max_classification"
        ]
    );
}

#[test]
fn a_star_cannot_be_mixed_with_names_and_unknown_modes_are_named() {
    let text = fixture("three_members_with_outside.toml")
        .replace(
            "categories = [\"credit\", \"transport\"]",
            "categories = [\"*\", \"credit\"]",
        )
        .replace(
            "\"model_output\", \"verification\"",
            "\"model_output\", \"email\"",
        );
    let err = parse_at(&text, common::NOW).expect_err("bad sets");
    assert_eq!(
        errors(&err),
        [
            "outside[0].agreement.categories: \"*\" means every category and cannot be combined \
             with names",
            "outside[0].agreement.delivery_modes[3]: unknown delivery mode \"email\"; expected \
             \"*\" or one of file, api, sandbox, privacy_computing, model_output, verification",
        ]
    );
}

#[test]
fn an_outside_exchange_may_not_reuse_the_own_root_key() {
    let text = fixture("three_members_with_outside.toml").replace(
        "root_public_key = \"gTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q=\"",
        "root_public_key = \"iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=\"",
    );
    let err = parse_at(&text, common::NOW).expect_err("shared root");
    assert_eq!(
        errors(&err),
        [
            "outside[0].root_public_key: duplicates exchange.root_public_key \
          (iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=)"
        ]
    );
}

#[test]
fn a_weak_key_is_refused() {
    // The identity point, a small-order key.
    let weak = "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let text = fixture("three_members_with_outside.toml")
        .replace("kaKKC3Q4FZOk2UaVeSCJJq/IrYLIg5t2RDWbnrqaSzo=", weak);
    let err = parse_at(&text, common::NOW).expect_err("weak key");
    let v = &err.violations()[0];
    assert_eq!(
        (v.path.as_str(), v.severity),
        ("zone.members[2].public_key", Severity::Error)
    );
    assert!(v.message.contains("weak (small-order)"), "{v}");
}

/// The founding parties are zone-wide settings: a member with other founding parties (or
/// none) has another policy digest.
#[test]
fn founding_parties_are_part_of_the_zone_policy_digest() {
    let text = fixture("three_members_with_outside.toml");
    let with = parse_at(&text, common::NOW).expect("valid fixture").config;
    let cut = text
        .find("[[parties]]")
        .expect("the fixture founds parties");
    let without = parse_at(&text[..cut], common::NOW)
        .expect("valid without parties")
        .config;
    assert_ne!(with.zone_policy_digest(), without.zone_policy_digest());
    let renamed = text.replace("禹州市信用中心", "禹州市信用中心 (renamed)");
    let renamed = parse_at(&renamed, common::NOW)
        .expect("valid renamed")
        .config;
    assert_ne!(with.zone_policy_digest(), renamed.zone_policy_digest());
}
