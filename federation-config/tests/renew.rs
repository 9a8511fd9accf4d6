//! `xchg config renew` (issue #18): new delegations and API certificates for a layout's nodes,
//! in `nodes/` and in the bundles, before or after the old ones ran out; everything else in the
//! configs kept; a wrong root key or a zone not in the layout changes nothing.

mod common;

use std::path::Path;

use xchg_federation_config::layout::{
    AddNodeError, LayoutKind, LayoutOptions, RenewOptions, generate, renew,
};
use xchg_federation_config::load;
use xchg_protocol::Timestamp;

const DAY: u64 = 24 * 60 * 60 * 1000;

fn days_after_now(days: u64) -> Timestamp {
    common::NOW.plus_millis(days * DAY)
}

/// A layout of `kind` with HTTPS and delegations valid for 40 days from [`common::NOW`].
fn short_lived(kind: LayoutKind) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let mut opts = LayoutOptions::new(&out, kind);
    opts.valid_days = 40;
    opts.api_tls = true;
    generate(&opts, common::NOW).expect("generate");
    (dir, out)
}

fn lines_but_the_delegation(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("config")
        .lines()
        .filter(|l| !l.starts_with("delegation = "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn expired_nodes_are_renewed_in_their_configs_bundles_and_certificates() {
    let (_dir, out) = short_lived(LayoutKind::SingleZone);
    let config = out.join("nodes/xuchang-municipal-1.toml");
    let bundle = out.join("bundles/xuchang-municipal-1");
    let before = lines_but_the_delegation(&config);
    let old_cert = std::fs::read(bundle.join("api.crt")).expect("cert");
    // Forty days on, the old delegation no longer loads.
    let later = days_after_now(50);
    let err = load(&config, later).expect_err("expired");
    assert!(err.to_string().contains("zone.delegation"), "{err}");

    let renewed = renew(
        &RenewOptions {
            dir: out.clone(),
            zone: None,
            valid_days: 365,
        },
        later,
    )
    .expect("renew");
    assert_eq!(renewed.nodes.len(), 3);
    assert!(
        renewed
            .nodes
            .iter()
            .all(|n| n.certificate && n.bundle.is_some())
    );
    // Both copies load for a year from then, and only the delegation line changed.
    for path in [config.clone(), bundle.join("node.toml")] {
        let loaded = load(&path, days_after_now(50 + 300)).expect("renewed config loads");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }
    assert_eq!(lines_but_the_delegation(&config), before);
    assert_ne!(
        std::fs::read(bundle.join("api.crt")).expect("cert"),
        old_cert
    );
    assert_eq!(
        std::fs::read(out.join("tls/xuchang-municipal-1.crt")).expect("cert"),
        std::fs::read(bundle.join("api.crt")).expect("cert")
    );
    // No staged file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&bundle)
        .expect("bundle")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".renewing"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn one_zone_is_renewed_alone_and_an_unknown_zone_or_a_wrong_root_key_changes_nothing() {
    let (_dir, out) = short_lived(LayoutKind::TwoExchanges);
    let xuchang = out.join("nodes/xuchang-municipal-1.toml");
    let zhengzhou = out.join("nodes/zhengzhou-main-1.toml");
    let zhengzhou_before = std::fs::read(&zhengzhou).expect("config");
    let renewed = renew(
        &RenewOptions {
            dir: out.clone(),
            zone: Some("xuchang/municipal".parse().expect("zone")),
            valid_days: 365,
        },
        common::NOW,
    )
    .expect("renew");
    assert_eq!(renewed.nodes.len(), 3);
    load(&xuchang, days_after_now(300)).expect("renewed");
    assert_eq!(std::fs::read(&zhengzhou).expect("config"), zhengzhou_before);

    let err = renew(
        &RenewOptions {
            dir: out.clone(),
            zone: Some("xuchang/weidu".parse().expect("zone")),
            valid_days: 365,
        },
        common::NOW,
    )
    .expect_err("not in the layout");
    assert!(matches!(err, AddNodeError::UnknownZone { .. }), "{err}");

    // Zhengzhou's root key swapped for Xuchang's: refused before anything of it changes.
    let xuchang_root = std::fs::read(out.join("root/xuchang-root.key")).expect("root");
    std::fs::remove_file(out.join("root/zhengzhou-root.key")).expect("rm");
    std::fs::write(out.join("root/zhengzhou-root.key"), xuchang_root).expect("write");
    let err = renew(
        &RenewOptions {
            dir: out.clone(),
            zone: Some("zhengzhou/main".parse().expect("zone")),
            valid_days: 365,
        },
        common::NOW,
    )
    .expect_err("wrong root");
    assert!(matches!(err, AddNodeError::RootKeyMismatch { .. }), "{err}");
    assert_eq!(std::fs::read(&zhengzhou).expect("config"), zhengzhou_before);
}

#[test]
fn without_the_ca_key_nothing_is_renewed() {
    let (_dir, out) = short_lived(LayoutKind::SingleZone);
    std::fs::remove_file(out.join("root/api-ca.key")).expect("rm");
    let config = out.join("nodes/xuchang-municipal-1.toml");
    let before = std::fs::read(&config).expect("config");
    let err = renew(
        &RenewOptions {
            dir: out.clone(),
            zone: None,
            valid_days: 365,
        },
        common::NOW,
    )
    .expect_err("no CA key");
    assert!(err.to_string().contains("api-ca.key"), "{err}");
    assert_eq!(std::fs::read(&config).expect("config"), before);
}
