//! The layout generator: every layout loads cleanly, ports and gossip follow the documented
//! scheme, tokens match their hashes, and nothing is ever overwritten.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use xchg_federation_config::layout::{
    AddNodeError, AddNodeOptions, GenerateError, Layout, LayoutKind, LayoutNode, LayoutOptions,
    add_node, generate,
};
use xchg_federation_config::{Loaded, NodeConfig, Role, load, read_key_file, token_hash};

/// Every config of a generated layout, loaded, by node config path.
fn load_all(out: &Path, layout: &Layout) -> BTreeMap<String, Loaded> {
    let mut loaded = BTreeMap::new();
    for node in nodes(layout) {
        let config = load(&out.join(&node.config), common::NOW)
            .unwrap_or_else(|e| panic!("{} does not load:\n{e}", node.config.display()));
        loaded.insert(node.config.display().to_string(), config);
    }
    loaded
}

fn nodes(layout: &Layout) -> impl Iterator<Item = &LayoutNode> {
    layout
        .exchanges
        .iter()
        .flat_map(|e| &e.zones)
        .flat_map(|z| &z.nodes)
}

fn generated(kind: LayoutKind, nodes_per_zone: usize) -> (tempfile::TempDir, Layout) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = LayoutOptions::new(dir.path().join("out"), kind);
    opts.nodes_per_zone = nodes_per_zone;
    let layout = generate(&opts, common::NOW).expect("generate");
    (dir, layout)
}

fn config<'a>(loaded: &'a BTreeMap<String, Loaded>, name: &str) -> &'a NodeConfig {
    &loaded
        .get(&format!("nodes/{name}.toml"))
        .expect("node config")
        .config
}

#[test]
fn every_layout_generates_configs_that_load_without_errors_or_warnings() {
    for kind in LayoutKind::ALL {
        let (dir, layout) = generated(kind, 3);
        let out = dir.path().join("out");
        for (path, loaded) in load_all(&out, &layout) {
            assert!(
                loaded.warnings.is_empty(),
                "{kind} {path}: {:?}",
                loaded.warnings
            );
        }
        let text = std::fs::read_to_string(out.join("layout.json")).expect("layout.json");
        let read_back: Layout = serde_json::from_str(&text).expect("layout.json parses");
        assert_eq!(read_back, layout, "{kind}");
    }
}

#[test]
fn the_xuchang_layout_lists_the_municipal_hub_then_nine_zones_then_zhengzhou() {
    let (_dir, layout) = generated(LayoutKind::Xuchang, 1);
    let zones: Vec<String> = layout
        .exchanges
        .iter()
        .flat_map(|e| &e.zones)
        .map(|z| z.id.to_string())
        .collect();
    assert_eq!(
        zones,
        [
            "xuchang/municipal",
            "xuchang/weidu",
            "xuchang/jianan",
            "xuchang/yuzhou",
            "xuchang/changge",
            "xuchang/yanling",
            "xuchang/xiangcheng",
            "xuchang/demo",
            "xuchang/devzone",
            "xuchang/dongcheng",
            "zhengzhou/main",
        ]
    );
    assert_eq!(layout.exchanges[0].display_name, "许昌数据交易中心");
    assert_eq!(
        layout.exchanges[1].zones[0].display_name,
        "郑州数据交易中心"
    );
    assert_eq!(layout.exchanges[0].zones[3].display_name, "禹州市");
}

#[test]
fn ports_are_numbered_over_the_whole_layout_three_per_node() {
    let (_dir, layout) = generated(LayoutKind::TwoExchanges, 3);
    for (i, node) in nodes(&layout).enumerate() {
        let base = 7100 + 3 * i as u16;
        assert_eq!(node.api_url, format!("http://127.0.0.1:{base}"));
        assert_eq!(
            node.raft_addr.to_string(),
            format!("127.0.0.1:{}", base + 1)
        );
        assert!(
            node.p2p_addr
                .to_string()
                .starts_with(&format!("/ip4/127.0.0.1/tcp/{}/p2p/12D3KooW", base + 2)),
            "{}",
            node.p2p_addr
        );
    }
    let names: Vec<String> = nodes(&layout)
        .map(|n| n.config.display().to_string())
        .collect();
    assert_eq!(names[0], "nodes/xuchang-municipal-1.toml");
    assert_eq!(names[3], "nodes/zhengzhou-main-1.toml");
}

#[test]
fn each_zone_holds_the_hashes_of_its_own_tokens() {
    let (dir, layout) = generated(LayoutKind::TwoExchanges, 1);
    let loaded = load_all(&dir.path().join("out"), &layout);
    for zone in layout.exchanges.iter().flat_map(|e| &e.zones) {
        let node = &zone.nodes[0];
        let config = &loaded[&node.config.display().to_string()].config;
        for role in Role::ALL {
            let token = zone.tokens.get(role);
            assert!(token.starts_with(&format!("xchg-{role}-")), "{token}");
            assert_eq!(token.len(), format!("xchg-{role}-").len() + 43);
            let hashes: Vec<[u8; 32]> = config
                .api
                .tokens
                .iter()
                .filter(|t| t.role == role)
                .map(|t| t.sha256)
                .collect();
            assert_eq!(hashes, [token_hash(token)]);
        }
    }
    assert_ne!(
        layout.exchanges[0].zones[0].tokens,
        layout.exchanges[1].zones[0].tokens
    );
}

#[test]
fn gossip_bootstrap_links_each_zone_to_the_hub_and_the_hub_to_each_zone() {
    let (dir, layout) = generated(LayoutKind::Xuchang, 3);
    let loaded = load_all(&dir.path().join("out"), &layout);
    let dial = |exchange: usize, zone: usize, node: usize| {
        layout.exchanges[exchange].zones[zone].nodes[node]
            .p2p_addr
            .clone()
    };
    let bootstrap = |name: &str| config(&loaded, name).gossip.bootstrap.clone();

    // A county zone: the whole hub, then its own other nodes.
    let yuzhou_2 = bootstrap("xuchang-yuzhou-2");
    assert_eq!(
        yuzhou_2,
        [
            dial(0, 0, 0),
            dial(0, 0, 1),
            dial(0, 0, 2),
            dial(0, 3, 0),
            dial(0, 3, 2)
        ]
    );

    // The hub: its own other nodes, then the first node of each of the nine other zones.
    let municipal_1 = bootstrap("xuchang-municipal-1");
    let mut expected = vec![dial(0, 0, 1), dial(0, 0, 2)];
    expected.extend((1..10).map(|z| dial(0, z, 0)));
    assert_eq!(municipal_1, expected);

    // Zhengzhou is a one-zone exchange: its hub knows only its own nodes.
    assert_eq!(
        bootstrap("zhengzhou-main-3"),
        [dial(1, 0, 0), dial(1, 0, 1)]
    );

    // Outside exchanges are reached through every node of their hub zone.
    let outside = &config(&loaded, "xuchang-weidu-1").outside;
    assert_eq!(outside.len(), 1);
    assert_eq!(outside[0].id.to_string(), "zhengzhou");
    assert_eq!(
        outside[0].bootstrap,
        [dial(1, 0, 0), dial(1, 0, 1), dial(1, 0, 2)]
    );
    let back = &config(&loaded, "zhengzhou-main-1").outside;
    assert_eq!(
        back[0].bootstrap,
        [dial(0, 0, 0), dial(0, 0, 1), dial(0, 0, 2)]
    );
    assert_eq!(
        back[0].root_public_key.to_base64(),
        layout.exchanges[0].root_public_key
    );
}

#[test]
fn a_one_node_single_zone_layout_warns_only_that_it_gossips_with_no_one() {
    let (dir, layout) = generated(LayoutKind::SingleZone, 1);
    let loaded = load_all(&dir.path().join("out"), &layout);
    let warnings: Vec<&str> = loaded
        .values()
        .flat_map(|l| &l.warnings)
        .map(|w| w.path.as_str())
        .collect();
    assert_eq!(warnings, ["gossip.bootstrap"]);
}

#[test]
fn generating_into_an_existing_layout_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LayoutOptions::new(dir.path().join("out"), LayoutKind::SingleZone);
    generate(&opts, common::NOW).expect("first run");
    let key = dir.path().join("out/root/xuchang-root.key");
    let before = std::fs::read(&key).expect("root key");
    let err = generate(&opts, common::NOW).expect_err("second run");
    assert!(matches!(err, GenerateError::AlreadyExists(_)), "{err}");
    assert_eq!(std::fs::read(&key).expect("root key"), before);
}

#[test]
fn leftover_keys_without_a_layout_are_not_overwritten_either() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("root")).expect("root dir");
    std::fs::write(out.join("root/xuchang-root.key"), "old key\n").expect("old key");
    let err = generate(
        &LayoutOptions::new(&out, LayoutKind::SingleZone),
        common::NOW,
    )
    .expect_err("existing key");
    assert!(
        matches!(&err, GenerateError::AlreadyExists(path) if path.ends_with("root/xuchang-root.key")),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("root/xuchang-root.key")).expect("key"),
        "old key\n"
    );
    // Found before anything was written (review of issue #18: a run stopped by a leftover file
    // had written the keys before it).
    assert!(!out.join("keys").exists() && !out.join("nodes").exists());
}

#[test]
fn nodes_per_zone_must_be_one_to_nine() {
    let dir = tempfile::tempdir().expect("tempdir");
    for n in [0, 10] {
        let mut opts = LayoutOptions::new(dir.path().join("out"), LayoutKind::SingleZone);
        opts.nodes_per_zone = n;
        let err = generate(&opts, common::NOW).expect_err("out of range");
        assert!(
            matches!(err, GenerateError::NodesPerZone(m) if m == n),
            "{err}"
        );
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[test]
fn keys_and_layout_json_are_private_files_in_private_folders() {
    let (dir, _layout) = generated(LayoutKind::SingleZone, 1);
    let out = dir.path().join("out");
    for file in [
        "root/xuchang-root.key",
        "keys/xuchang-municipal-1.key",
        "layout.json",
    ] {
        assert_eq!(mode(&out.join(file)), 0o600, "{file}");
    }
    for folder in ["", "root", "keys"] {
        assert_eq!(mode(&out.join(folder)), 0o700, "{folder:?}");
    }
    let root = std::fs::read_to_string(out.join("root/xuchang-root.key")).expect("root key");
    assert_eq!(root.len(), 65);
}

/// A root key signs for its whole exchange and belongs offline: the folder a node's machine
/// gets (`keys/`) holds node keys only.
#[test]
fn root_keys_are_written_to_their_own_folder_never_among_the_node_keys() {
    let (dir, layout) = generated(LayoutKind::TwoExchanges, 1);
    let out = dir.path().join("out");
    for exchange in &layout.exchanges {
        let file = xchg_federation_config::layout::root_key_file(&out, &exchange.id);
        assert_eq!(
            file,
            out.join(format!("root/{}-root.key", exchange.id)),
            "the documented place"
        );
        let key = read_key_file(&file).expect("root key");
        assert_eq!(key.public().to_base64(), exchange.root_public_key);
    }
    let node_keys: Vec<String> = std::fs::read_dir(out.join("keys"))
        .expect("keys")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(node_keys.len(), 2, "{node_keys:?}");
    assert!(
        node_keys.iter().all(|k| !k.contains("root")),
        "{node_keys:?}"
    );
}

/// Each zone's provider and buyer tokens are bound to the zone's demo parties, in
/// `layout.json` and in every node config of the zone, and both parties are founding parties of
/// the zone (admitted by its configuration) with valid credit codes.
#[test]
fn each_zones_provider_and_buyer_tokens_are_bound_to_founding_parties_named_in_layout_json() {
    let (dir, layout) = generated(LayoutKind::Xuchang, 1);
    let loaded = load_all(&dir.path().join("out"), &layout);
    let mut parties = std::collections::BTreeSet::new();
    for zone in layout.exchanges.iter().flat_map(|e| &e.zones) {
        let config = &loaded[&zone.nodes[0].config.display().to_string()].config;
        let bound: Vec<(Role, Option<String>)> = config
            .api
            .tokens
            .iter()
            .filter(|t| t.party.is_some() || t.role == Role::Provider)
            .map(|t| (t.role, t.party.as_ref().map(ToString::to_string)))
            .collect();
        let buyer = zone.buyer_party.as_ref().expect("a buyer party");
        assert_eq!(
            bound,
            [
                (Role::Provider, Some(zone.provider_party.id.to_string())),
                (Role::Buyer, Some(buyer.id.to_string()))
            ],
            "{}",
            zone.id
        );
        let founding: Vec<(String, String)> = config
            .parties
            .iter()
            .map(|p| (p.id.to_string(), p.name.clone()))
            .collect();
        assert_eq!(
            founding,
            [
                (
                    zone.provider_party.id.to_string(),
                    zone.provider_party.name.clone()
                ),
                (buyer.id.to_string(), buyer.name.clone())
            ],
            "{}",
            zone.id
        );
        assert!(config.parties.iter().all(|p| p.validate().is_ok()));
        parties.insert(zone.provider_party.id.clone());
        parties.insert(buyer.id.clone());
    }
    assert_eq!(parties.len(), 22, "two parties of its own per zone");
    let json = std::fs::read_to_string(dir.path().join("out/layout.json")).expect("layout.json");
    let raw: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(
        raw["exchanges"][0]["zones"][3]["provider_party"],
        serde_json::json!({"id": "yuzhou-credit-center", "name": "禹州市信用中心"})
    );
    assert_eq!(
        raw["exchanges"][0]["zones"][3]["buyer_party"],
        serde_json::json!({"id": "yuzhou-rural-bank", "name": "禹州市农村商业银行股份有限公司"})
    );
}

#[test]
fn an_ipv6_host_yields_bracketed_urls_and_ip6_multiaddrs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = LayoutOptions::new(dir.path().join("out"), LayoutKind::SingleZone);
    opts.host = "::1".parse().expect("ipv6");
    opts.nodes_per_zone = 1;
    let layout = generate(&opts, common::NOW).expect("generate");
    let node = &layout.exchanges[0].zones[0].nodes[0];
    assert_eq!(node.api_url, "http://[::1]:7100");
    assert!(
        node.p2p_addr
            .to_string()
            .starts_with("/ip6/::1/tcp/7102/p2p/"),
        "{}",
        node.p2p_addr
    );
}

fn read_layout(out: &Path) -> Layout {
    let text = std::fs::read_to_string(out.join("layout.json")).expect("layout.json");
    serde_json::from_str(&text).expect("layout.json parses")
}

/// Options to add a node to the municipal zone of the layout in `out`.
fn municipal(out: &Path) -> AddNodeOptions {
    AddNodeOptions::new(out, "xuchang/municipal".parse().expect("zone id"))
}

#[test]
fn an_added_node_loads_cleanly_and_lists_the_zone_plus_itself() {
    let (dir, layout) = generated(LayoutKind::SingleZone, 3);
    let out = dir.path().join("out");
    let before: Vec<Vec<u8>> = nodes(&layout)
        .map(|n| std::fs::read(out.join(&n.config)).expect("existing config"))
        .collect();

    let added = add_node(&municipal(&out), common::NOW).expect("add node");

    assert_eq!(added.node.name.as_str(), "municipal-4");
    assert_eq!(
        added.config_file,
        out.join("nodes/xuchang-municipal-4.toml")
    );
    assert_eq!(added.node.api_url, "http://127.0.0.1:7109");
    assert_eq!(added.node.raft_addr.to_string(), "127.0.0.1:7110");
    assert!(
        added
            .node
            .p2p_addr
            .to_string()
            .starts_with("/ip4/127.0.0.1/tcp/7111/p2p/12D3KooW"),
        "{}",
        added.node.p2p_addr
    );
    let loaded = load(&added.config_file, common::NOW).expect("the new config loads");
    let warnings: Vec<&str> = loaded.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(warnings, ["zone.members"], "only that 4 members are even");
    assert_eq!(added.warnings, loaded.warnings);
    let config = loaded.config;
    let members: Vec<&str> = config
        .zone
        .members
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        members,
        ["municipal-1", "municipal-2", "municipal-3", "municipal-4"]
    );
    let key = read_key_file(&added.key_file).expect("key file").public();
    assert_eq!(added.key_file, out.join("keys/xuchang-municipal-4.key"));
    assert_eq!(config.own_member().expect("own member").public_key, key);
    assert_eq!(added.public_key, key);

    let existing = load(&out.join("nodes/xuchang-municipal-1.toml"), common::NOW)
        .expect("existing config")
        .config;
    assert_eq!(config.api, existing.api, "tokens are the zone's");
    assert_eq!(config.raft, existing.raft);
    assert_eq!(config.exchange, existing.exchange);
    assert_eq!(config.zone.members[..3], existing.zone.members[..]);
    assert!(
        config
            .gossip
            .bootstrap
            .contains(&layout.exchanges[0].zones[0].nodes[0].p2p_addr),
        "the new node also gossips with the node its config was copied from"
    );

    let after = read_layout(&out);
    let zone = &after.exchanges[0].zones[0];
    assert_eq!(zone.nodes.len(), 4);
    assert_eq!(zone.nodes[3], added.node);
    assert_eq!(zone.tokens, layout.exchanges[0].zones[0].tokens);
    assert_eq!(added.admin_token, zone.tokens.admin);
    assert_eq!(added.member_api_url, zone.nodes[0].api_url);
    for (node, bytes) in nodes(&layout).zip(&before) {
        assert_eq!(
            &std::fs::read(out.join(&node.config)).expect("existing config"),
            bytes,
            "{} was modified",
            node.config.display()
        );
    }
}

#[test]
fn a_second_added_node_gets_the_next_name_and_ports_and_lists_the_first() {
    let (dir, _layout) = generated(LayoutKind::SingleZone, 3);
    let out = dir.path().join("out");
    let opts = municipal(&out);
    let first = add_node(&opts, common::NOW).expect("first add");
    let second = add_node(&opts, common::NOW).expect("second add");
    assert_eq!(second.node.name.as_str(), "municipal-5");
    assert_eq!(
        second.config_file,
        out.join("nodes/xuchang-municipal-5.toml")
    );
    assert_eq!(second.node.api_url, "http://127.0.0.1:7112");
    assert_eq!(second.node.raft_addr.to_string(), "127.0.0.1:7113");
    let config = load(&second.config_file, common::NOW)
        .expect("the second config loads")
        .config;
    assert_eq!(config.zone.members.len(), 5);
    assert_eq!(config.zone.members[3].public_key, first.public_key);
    assert_eq!(read_layout(&out).exchanges[0].zones[0].nodes.len(), 5);
}

#[test]
fn the_join_request_carries_exactly_the_four_fields_of_the_members_api() {
    let (dir, _layout) = generated(LayoutKind::SingleZone, 1);
    let opts = municipal(&dir.path().join("out"));
    let added = add_node(&opts, common::NOW).expect("add node");
    let body = serde_json::to_value(added.join_request()).expect("json");
    assert_eq!(
        body,
        serde_json::json!({
            "name": "municipal-2",
            "raft_addr": "127.0.0.1:7104",
            "api_url": "http://127.0.0.1:7103",
            "public_key": added.public_key.to_base64(),
        })
    );
}

#[test]
fn adding_to_an_unknown_zone_names_the_zones_there_are_and_writes_nothing() {
    let (dir, _layout) = generated(LayoutKind::SingleZone, 1);
    let out = dir.path().join("out");
    let layout_before = std::fs::read(out.join("layout.json")).expect("layout.json");
    let opts = AddNodeOptions::new(&out, "xuchang/yuzhou".parse().expect("zone id"));
    let err = add_node(&opts, common::NOW).expect_err("unknown zone");
    assert!(matches!(err, AddNodeError::UnknownZone { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("xuchang/yuzhou") && message.contains("xuchang/municipal"),
        "{message}"
    );
    assert_eq!(
        std::fs::read(out.join("layout.json")).expect("layout.json"),
        layout_before
    );
    assert_eq!(
        std::fs::read_dir(out.join("keys")).expect("keys").count(),
        1
    );
}

#[test]
fn a_taken_name_or_port_is_refused_before_anything_is_written() {
    let (dir, _layout) = generated(LayoutKind::SingleZone, 3);
    let out = dir.path().join("out");
    let taken_name = AddNodeOptions {
        name: Some("municipal-2".parse().expect("name")),
        ..municipal(&out)
    };
    let err = add_node(&taken_name, common::NOW).expect_err("taken name");
    assert!(matches!(err, AddNodeError::NameTaken { .. }), "{err}");
    let taken_port = AddNodeOptions {
        base_port: Some(7104),
        ..municipal(&out)
    };
    let err = add_node(&taken_port, common::NOW).expect_err("taken port");
    assert!(
        matches!(&err, AddNodeError::PortTaken { node, .. } if node.as_str() == "municipal-2"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(out.join("nodes")).expect("nodes").count(),
        3
    );
    assert_eq!(read_layout(&out).exchanges[0].zones[0].nodes.len(), 3);
}

#[test]
fn a_leftover_key_file_of_the_next_number_is_not_overwritten() {
    let (dir, _layout) = generated(LayoutKind::SingleZone, 1);
    let out = dir.path().join("out");
    let leftover = out.join("keys/xuchang-municipal-2.key");
    std::fs::write(&leftover, "old key\n").expect("leftover key");
    let opts = municipal(&out);
    let err = add_node(&opts, common::NOW).expect_err("leftover key");
    assert!(
        matches!(&err, AddNodeError::AlreadyExists(path) if *path == leftover),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&leftover).expect("key"),
        "old key\n"
    );
    assert!(!out.join("nodes/xuchang-municipal-2.toml").exists());
}

#[cfg(unix)]
#[test]
fn after_adding_a_node_its_key_and_layout_json_are_private_files() {
    use std::os::unix::fs::PermissionsExt as _;
    let (dir, _layout) = generated(LayoutKind::SingleZone, 1);
    let out = dir.path().join("out");
    let added = add_node(&municipal(&out), common::NOW).expect("add node");
    for file in [added.key_file, out.join("layout.json")] {
        let mode = std::fs::metadata(&file)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
}

/// A layout written before the root keys had their own folder keeps them in `keys/`: adding a
/// node to it still finds the root key there.
#[test]
fn adding_a_node_to_a_layout_that_keeps_its_root_key_among_the_node_keys_still_works() {
    let (dir, _layout) = generated(LayoutKind::SingleZone, 1);
    let out = dir.path().join("out");
    std::fs::rename(
        out.join("root/xuchang-root.key"),
        out.join("keys/xuchang-root.key"),
    )
    .expect("move the root key where older layouts kept it");
    let added = add_node(&municipal(&out), common::NOW).expect("add node");
    assert!(added.config_file.exists() && added.key_file.exists());
}

/// A single-zone layout generated with `--api-tls`.
fn generated_with_tls() -> (tempfile::TempDir, Layout) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = LayoutOptions::new(dir.path().join("out"), LayoutKind::SingleZone);
    opts.api_tls = true;
    let layout = generate(&opts, common::NOW).expect("generate");
    (dir, layout)
}

#[test]
fn an_api_tls_layout_serves_https_with_a_certificate_per_node_and_its_ca_key_offline() {
    let (dir, layout) = generated_with_tls();
    let out = dir.path().join("out");
    let ca = layout.api_ca.as_ref().expect("layout.json records the CA");
    assert_eq!(ca.cert, Path::new("api-ca.pem"));
    let ca_pem = std::fs::read_to_string(out.join(&ca.cert)).expect("CA certificate");
    assert!(
        ca_pem.starts_with("-----BEGIN CERTIFICATE-----"),
        "{ca_pem}"
    );
    let ca_key = xchg_federation_config::layout::ca_key_file(&out);
    assert_eq!(ca_key, out.join("root/api-ca.key"), "beside the root keys");
    #[cfg(unix)]
    assert_eq!(mode(&ca_key), 0o600);
    for (path, loaded) in load_all(&out, &layout) {
        assert!(loaded.warnings.is_empty(), "{path}: {:?}", loaded.warnings);
        let config = &loaded.config;
        let tls = config.api.tls.as_ref().expect("the API has TLS");
        let stem = Path::new(&path)
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("stem")
            .to_owned();
        assert_eq!(
            tls.cert,
            out.join("nodes/../tls").join(format!("{stem}.crt"))
        );
        assert_eq!(
            tls.key,
            out.join("nodes/../tls").join(format!("{stem}.key"))
        );
        #[cfg(unix)]
        assert_eq!(mode(&tls.key), 0o600, "{path}");
        assert_eq!(
            config.api.ca_cert.as_deref(),
            Some(out.join("nodes/../api-ca.pem").as_path())
        );
        for member in &config.zone.members {
            assert!(
                member.api_url.starts_with("https://127.0.0.1:"),
                "{}",
                member.api_url
            );
        }
    }
    for node in nodes(&layout) {
        assert!(node.api_url.starts_with("https://"), "{}", node.api_url);
    }
    let (plain_dir, plain) = generated(LayoutKind::SingleZone, 3);
    assert_eq!(plain.api_ca, None);
    assert!(!plain_dir.path().join("out/api-ca.pem").exists());
    assert!(!plain_dir.path().join("out/tls").exists());
}

#[test]
fn add_node_to_an_api_tls_layout_issues_its_certificate_and_needs_the_ca_key() {
    let (dir, _) = generated_with_tls();
    let out = dir.path().join("out");
    let ca_key = xchg_federation_config::layout::ca_key_file(&out);
    let offline = dir.path().join("api-ca.key.offline");
    std::fs::rename(&ca_key, &offline).expect("take the CA key offline");
    let layout_before = std::fs::read(out.join("layout.json")).expect("layout.json");

    let refused = add_node(&municipal(&out), common::NOW).expect_err("no CA key");
    assert!(
        matches!(&refused, AddNodeError::Write(GenerateError::MissingCaKey(p)) if *p == ca_key),
        "{refused}"
    );
    assert!(refused.to_string().contains("offline storage"), "{refused}");
    assert_eq!(
        std::fs::read(out.join("layout.json")).expect("layout.json"),
        layout_before
    );
    assert!(!out.join("nodes/xuchang-municipal-4.toml").exists());
    assert!(!out.join("keys/xuchang-municipal-4.key").exists());
    assert!(!out.join("tls/xuchang-municipal-4.crt").exists());
    assert!(!out.join("bundles/xuchang-municipal-4").exists());

    std::fs::rename(&offline, &ca_key).expect("bring the CA key back");
    let added = add_node(&municipal(&out), common::NOW).expect("add node");
    assert_eq!(added.node.api_url, "https://127.0.0.1:7109");
    let loaded = load(&added.config_file, common::NOW).expect("the new config loads");
    let tls = loaded.config.api.tls.clone().expect("TLS");
    assert_eq!(tls.cert, out.join("nodes/../tls/xuchang-municipal-4.crt"));
    assert!(tls.cert.is_file() && tls.key.is_file());
    assert_eq!(
        loaded.config.own_member().map(|m| m.api_url.as_str()),
        Some("https://127.0.0.1:7109")
    );
}

/// The files of a folder, sorted by name.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn each_node_gets_a_bundle_with_its_own_secrets_only_and_paths_inside_it() {
    for tls in [false, true] {
        let (dir, layout) = if tls {
            generated_with_tls()
        } else {
            generated(LayoutKind::SingleZone, 3)
        };
        let out = dir.path().join("out");
        let stems: Vec<String> = nodes(&layout)
            .map(|n| {
                n.config
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .expect("stem")
                    .to_owned()
            })
            .collect();
        assert_eq!(names(&out.join("bundles")), stems);
        for (node, stem) in nodes(&layout).zip(&stems) {
            let bundle = xchg_federation_config::layout::bundle_dir(&out, stem);
            let expected: &[&str] = if tls {
                &["api-ca.pem", "api.crt", "api.key", "node.key", "node.toml"]
            } else {
                &["node.key", "node.toml"]
            };
            assert_eq!(names(&bundle), expected, "{stem}");
            // Moved anywhere, it still loads: every path in it is its own.
            let moved = dir.path().join("machine").join(stem);
            std::fs::create_dir_all(moved.parent().expect("parent")).expect("machine");
            std::fs::rename(&bundle, &moved).expect("move the bundle");
            let loaded = load(&moved.join("node.toml"), common::NOW)
                .unwrap_or_else(|e| panic!("{stem}: {e}"));
            assert!(loaded.warnings.is_empty(), "{stem}: {:?}", loaded.warnings);
            let config = loaded.config;
            assert_eq!(config.node.name, node.name);
            assert_eq!(config.node.key_file, moved.join("node.key"));
            assert_eq!(config.node.data_dir, moved.join("data"));
            assert_eq!(
                read_key_file(&config.node.key_file).expect("key").public(),
                config.own_member().expect("member").public_key
            );
            if tls {
                let api_tls = config.api.tls.as_ref().expect("TLS");
                assert_eq!(api_tls.cert, moved.join("api.crt"));
                assert_eq!(config.api.ca_cert, Some(moved.join("api-ca.pem")));
                assert_eq!(
                    std::fs::read(&api_tls.cert).expect("certificate"),
                    std::fs::read(out.join("tls").join(format!("{stem}.crt"))).expect("issued")
                );
            }
            #[cfg(unix)]
            {
                assert_eq!(mode(&moved), 0o700, "{stem}");
                for file in names(&moved) {
                    assert_eq!(mode(&moved.join(&file)), 0o600, "{stem}/{file}");
                }
            }
            // The same config as nodes/ but for its paths.
            let beside = load(&out.join(&node.config), common::NOW)
                .expect("nodes/")
                .config;
            assert_eq!(config.zone, beside.zone);
            assert_eq!(config.api.tokens, beside.api.tokens);
            assert_eq!(config.listen, beside.listen);
        }
    }
}

#[test]
fn an_added_node_gets_its_bundle_too() {
    let (dir, _) = generated(LayoutKind::SingleZone, 3);
    let out = dir.path().join("out");
    let added = add_node(&municipal(&out), common::NOW).expect("add node");
    let bundle = xchg_federation_config::layout::bundle_dir(&out, "xuchang-municipal-4");
    assert_eq!(names(&bundle), ["node.key", "node.toml"]);
    let config = load(&bundle.join("node.toml"), common::NOW)
        .expect("the bundle loads")
        .config;
    assert_eq!(config.node.name, added.node.name);
    assert_eq!(config.zone.members.len(), 4);
}

#[test]
fn a_routable_host_without_api_tls_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = LayoutOptions::new(dir.path().join("out"), LayoutKind::SingleZone);
    opts.host = "10.0.0.5".parse().expect("ip");
    let err = generate(&opts, common::NOW).expect_err("plain HTTP off loopback");
    assert!(matches!(err, GenerateError::PlainHttp(_)), "{err}");
    assert!(err.to_string().contains("--api-tls"), "{err}");
    assert!(!opts.out.exists());
    opts.api_tls = true;
    let layout = generate(&opts, common::NOW).expect("with --api-tls");
    for node in nodes(&layout) {
        assert!(
            node.api_url.starts_with("https://10.0.0.5:"),
            "{}",
            node.api_url
        );
    }
}
