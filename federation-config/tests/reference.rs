//! The configuration reference (`CONFIG.md`) names every key the raw structs accept, and
//! nothing else: a key added to `raw.rs` without a line in the reference fails here.

use std::collections::BTreeSet;

use xchg_federation_config::REFERENCE;
use xchg_federation_config::raw::{
    RawAgreement, RawApi, RawConfig, RawContact, RawExport, RawParty, RawRaft, RawToken,
};

/// A config in which every optional key is set and every array has an element.
fn everything() -> RawConfig {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/xuchang/nodes/xuchang-yuzhou-1.toml"
    ))
    .expect("the example config");
    let mut raw: RawConfig = toml::from_str(&text).expect("the example parses");
    raw.raft = Some(RawRaft {
        heartbeat_ms: Some(1),
        election_timeout_min_ms: Some(1),
        election_timeout_max_ms: Some(1),
        snapshot_every_entries: Some(1),
        snapshot_log_percent: Some(1),
        keep_log_entries: Some(1),
    });
    raw.export = Some(RawExport {
        ceiling: Some("general".into()),
        personal_info: Some("never".into()),
    });
    let agreement = RawAgreement {
        categories: Some(vec!["*".into()]),
        max_classification: Some("general".into()),
        delivery_modes: Some(vec!["*".into()]),
        require_registration: Some(false),
    };
    raw.sibling_agreement = Some(agreement.clone());
    for outside in &mut raw.outside {
        outside.agreement = agreement.clone();
        outside.bootstrap = vec!["/ip4/127.0.0.1/tcp/1".into()];
    }
    // A struct literal: a key added to `[[api.tokens]]` must be set here too.
    let tokens = vec![RawToken {
        role: "provider".into(),
        sha256: "00".repeat(32),
        party: Some("yuzhou-credit-center".into()),
    }];
    // A struct literal: a key added to `[api]` must be set here too.
    raw.api = Some(RawApi {
        max_body_bytes: Some(1),
        max_connections: Some(1),
        header_read_timeout_ms: Some(1),
        idle_timeout_ms: Some(1),
        request_timeout_ms: Some(1),
        tls_cert: Some("tls/node.crt".into()),
        tls_key: Some("tls/node.key".into()),
        ca_cert: Some("api-ca.pem".into()),
        allow_plain_http: Some(false),
        tokens,
    });
    // Struct literals: a key added to `[[parties]]` or its contact must be set here too.
    raw.parties = vec![RawParty {
        id: "yuzhou-credit-center".into(),
        name: "禹州市信用中心".into(),
        credit_code: "12411081T81DJ7JM9K".into(),
        kinds: vec!["resource_holder".into()],
        contact: RawContact {
            name: "数据专员".into(),
            phone: Some("0374-8888888".into()),
            email: Some("data@yuzhou-credit-center.example".into()),
        },
    }];
    raw
}

fn key_paths(prefix: &str, value: &toml::Value, out: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                key_paths(&path, v, out);
            }
        }
        toml::Value::Array(items)
            if items.iter().all(toml::Value::is_table) && !items.is_empty() =>
        {
            for item in items {
                key_paths(&format!("{prefix}[]"), item, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

#[test]
fn the_reference_documents_exactly_the_keys_a_config_can_hold() {
    let value = toml::Value::try_from(everything()).expect("serialises");
    let mut in_structs = BTreeSet::new();
    key_paths("", &value, &mut in_structs);
    let documented: BTreeSet<String> = REFERENCE
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect();
    let undocumented: Vec<_> = in_structs.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&in_structs).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "keys missing from CONFIG.md: {undocumented:?}; documented keys no config holds: {unknown:?}"
    );
}
