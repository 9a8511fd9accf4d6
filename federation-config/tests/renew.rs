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
            renew_ca: false,
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
            renew_ca: false,
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
            renew_ca: false,
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
            renew_ca: false,
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
            renew_ca: false,
        },
        common::NOW,
    )
    .expect_err("no CA key");
    assert!(err.to_string().contains("api-ca.key"), "{err}");
    assert_eq!(std::fs::read(&config).expect("config"), before);
}

/// Review of the renewal: a node's files are renewed all or none; the workstation needs no node
/// keys; a node whose config is gone (removed from its zone) is skipped, not an error.
#[test]
fn a_node_is_renewed_whole_or_not_at_all_and_a_removed_one_is_skipped() {
    let (_dir, out) = short_lived(LayoutKind::SingleZone);
    std::fs::remove_dir_all(out.join("keys")).expect("node keys kept on the machines only");
    // Node 1's bundle config is broken: none of node 1's files change.
    let config = out.join("nodes/xuchang-municipal-1.toml");
    let bundle = out.join("bundles/xuchang-municipal-1");
    let bundled = bundle.join("node.toml");
    let broken = std::fs::read_to_string(&bundled)
        .expect("bundle config")
        .replace("delegation = \"", "delegation_ = \"");
    std::fs::write(&bundled, &broken).expect("write");
    let before = (
        std::fs::read(&config).expect("config"),
        std::fs::read(bundle.join("api.crt")).expect("cert"),
        std::fs::read(out.join("tls/xuchang-municipal-1.crt")).expect("cert"),
    );
    let opts = RenewOptions {
        dir: out.clone(),
        zone: None,
        valid_days: 365,
        renew_ca: false,
    };
    let err = renew(&opts, common::NOW).expect_err("broken bundle");
    assert!(err.to_string().contains("delegation"), "{err}");
    let after = (
        std::fs::read(&config).expect("config"),
        std::fs::read(bundle.join("api.crt")).expect("cert"),
        std::fs::read(out.join("tls/xuchang-municipal-1.crt")).expect("cert"),
    );
    assert!(before == after, "node 1's files are as they were");
    let staged: Vec<_> = [out.join("nodes"), out.join("tls"), bundle.clone()]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).expect("dir"))
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".renewing"))
        .map(|e| e.path())
        .collect();
    assert!(staged.is_empty(), "{staged:?}");

    // Node 1 removed from its zone and its files deleted: the others are renewed.
    std::fs::remove_file(&config).expect("rm");
    std::fs::remove_dir_all(&bundle).expect("rm");
    let renewed = renew(&opts, common::NOW).expect("renew");
    assert_eq!(renewed.nodes.len(), 2);
    assert_eq!(
        renewed.skipped,
        [std::path::PathBuf::from("nodes/xuchang-municipal-1.toml")]
    );
}

/// A certificate never outlasts the layout's API CA: renewing nine and a half years on for a
/// year is refused with what to do, and `renew_ca` gives the CA a new certificate first (same
/// key and name), copied into every bundle, after which the nodes' certificates are issued.
#[test]
fn certificates_never_outlast_the_ca_and_the_ca_is_renewed_first_on_request() {
    let (_dir, out) = short_lived(LayoutKind::SingleZone);
    let ca_file = out.join("api-ca.pem");
    let old_ca = std::fs::read_to_string(&ca_file).expect("ca");
    let ca_until = xchg_federation_config::layout::certificate_not_after(&old_ca).expect("ca");
    assert_eq!(
        ca_until,
        Timestamp(common::NOW.millis() / 1000 * 1000).plus_millis(3650 * DAY),
        "ten years from generation, read back from the certificate"
    );
    // The longest delegation fits inside a new CA.
    let longest = tempfile::tempdir().expect("tempdir");
    let mut opts = LayoutOptions::new(longest.path().join("out"), LayoutKind::SingleZone);
    opts.valid_days = 3650;
    opts.api_tls = true;
    generate(&opts, common::NOW).expect("ten years of delegation under a ten-year CA");

    let late = days_after_now(3650 - 180);
    let mut opts = RenewOptions {
        dir: out.clone(),
        zone: None,
        valid_days: 365,
        renew_ca: false,
    };
    let err = renew(&opts, late).expect_err("outlasts the CA");
    let text = err.to_string();
    assert!(
        text.contains("would outlast it") && text.contains("--renew-ca"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(&ca_file).expect("ca"),
        old_ca,
        "nothing renewed"
    );
    // Within the CA's life it goes.
    opts.valid_days = 100;
    renew(&opts, late).expect("within the CA");

    opts.valid_days = 365;
    opts.renew_ca = true;
    let renewed = renew(&opts, late).expect("CA first");
    assert!(renewed.ca_renewed);
    let new_ca = std::fs::read_to_string(&ca_file).expect("ca");
    assert_ne!(new_ca, old_ca);
    let new_until = xchg_federation_config::layout::certificate_not_after(&new_ca).expect("ca");
    assert_eq!(renewed.ca_not_after, Some(new_until));
    assert!(
        new_until > renewed.not_after,
        "the CA outlasts what it issued"
    );
    let bundle = out.join("bundles/xuchang-municipal-1");
    assert_eq!(
        std::fs::read_to_string(bundle.join("api-ca.pem")).expect("bundle ca"),
        new_ca
    );
    let cert = std::fs::read_to_string(bundle.join("api.crt")).expect("cert");
    assert_eq!(
        xchg_federation_config::layout::certificate_not_after(&cert).expect("cert"),
        Timestamp(renewed.not_after.millis() / 1000 * 1000),
        "the node's certificate runs as long as its delegation"
    );
}
