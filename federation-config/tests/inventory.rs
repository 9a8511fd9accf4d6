//! Inventories (issue #18): the built-in layouts are the example inventories; an inventory
//! places each node on its own host and ports, states what each exchange recognises (outside
//! exchanges included) and its export policy; a broken inventory is refused with every
//! violation by its TOML path, before anything is written.

mod common;

use std::path::{Path, PathBuf};

use xchg_federation_config::layout::{
    GenerateError, Inventory, Layout, LayoutKind, LayoutOptions, MAX_INVENTORY_BYTES, generate,
    generate_from,
};
use xchg_federation_config::{RaftTuning, load};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.toml"))
}

/// A layout with its secrets blanked: what must be equal between two runs.
fn shape(layout: &Layout) -> serde_json::Value {
    let mut value = serde_json::to_value(layout).expect("layout json");
    for ex in value["exchanges"].as_array_mut().into_iter().flatten() {
        ex["root_public_key"] = serde_json::Value::Null;
        for zone in ex["zones"].as_array_mut().into_iter().flatten() {
            zone["tokens"] = serde_json::Value::Null;
            for node in zone["nodes"].as_array_mut().into_iter().flatten() {
                let addr = node["p2p_addr"].as_str().unwrap_or_default();
                let without_peer = addr.split("/p2p/").next().unwrap_or_default().to_owned();
                node["p2p_addr"] = serde_json::Value::String(without_peer);
            }
        }
    }
    value
}

/// The API URL of every node of the first exchange, in layout order.
fn api_urls(layout: &Layout) -> Vec<&str> {
    layout.exchanges[0]
        .zones
        .iter()
        .flat_map(|z| &z.nodes)
        .map(|n| n.api_url.as_str())
        .collect()
}

#[test]
fn each_built_in_layout_is_its_example_inventory() {
    for kind in LayoutKind::ALL {
        let dir = tempfile::tempdir().expect("tempdir");
        let built_in = generate(
            &LayoutOptions::new(dir.path().join("built-in"), kind),
            common::NOW,
        )
        .expect("built-in layout");
        let inventory = Inventory::read(&example(kind.as_str())).expect("example inventory");
        let from_file = generate_from(
            &inventory,
            &dir.path().join("inventory"),
            RaftTuning::default(),
            common::NOW,
        )
        .expect("inventory layout");
        assert_eq!(shape(&built_in), shape(&from_file), "{kind}");
        // The configs agree too, but for keys, delegations and token hashes.
        let config = |run: &str| {
            let node = &from_file.exchanges[0].zones[0].nodes[0];
            let text =
                std::fs::read_to_string(dir.path().join(run).join(&node.config)).expect("config");
            text.lines()
                .filter(|l| !l.contains("key") && !l.contains("delegation"))
                .filter(|l| !l.contains("sha256") && !l.contains("/p2p/"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(config("built-in"), config("inventory"), "{kind}");
    }
}

const PLACED: &str = r#"
version = 1

[defaults]
api_tls = true

[[exchanges]]
id = "xuchang"
display_name = "许昌数据交易中心"

[exchanges.export]
ceiling = "public"

[exchanges.sibling_agreement]
max_classification = "public"

[exchanges.recognises.kaifeng]
categories = ["credit"]
max_classification = "public"
delivery_modes = ["api"]
require_registration = true

[[exchanges.zones]]
name = "municipal"
display_name = "许昌市数据交易专区 (市级)"
division = "411000"
provider = { id = "xuchang-big-data-bureau", name = "许昌市大数据局", credit_code = "11411000MB12345674" }
buyer = { id = "xuchang-smart-city-ops", name = "许昌智慧城市运营有限公司", contact = { name = "王经理", phone = "0374-1234567" } }

[[exchanges.zones.nodes]]
host = "10.20.0.11"
api_port = 8443
raft_port = 9000
p2p_port = 9001

[[exchanges.zones.nodes]]
host = "10.20.0.12"
api_port = 8443
raft_port = 9000
p2p_port = 9001

[[exchanges.zones.nodes]]
host = "10.20.0.13"

[[exchanges.zones]]
name = "yuzhou"
display_name = "禹州市"
division = "411081"
provider = { id = "yuzhou-credit-center", name = "禹州市信用中心", registration = "12" }
buyer = { id = "yuzhou-rural-bank", name = "禹州市农村商业银行股份有限公司" }
export = { ceiling = "general", personal_info = "never" }
nodes = [{ host = "10.20.1.11" }]

[[outside]]
id = "kaifeng"
display_name = "开封数据交易中心"
root_public_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
bootstrap = ["/ip4/10.30.0.1/tcp/9001/p2p/12D3KooWEANVyZZUiMvLB83ybxBCx3jv3eYB8xbaRGhREBuEkVvZ"]
"#;

#[test]
fn an_inventory_places_each_node_and_states_its_terms_and_outside_exchanges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let inventory = Inventory::parse(PLACED).expect("shape");
    let layout =
        generate_from(&inventory, &out, RaftTuning::default(), common::NOW).expect("generate");
    let urls = api_urls(&layout);
    // Named ports where named; a node that names none takes those of its place (base 7100).
    assert_eq!(
        urls,
        [
            "https://10.20.0.11:8443",
            "https://10.20.0.12:8443",
            "https://10.20.0.13:7106",
            "https://10.20.1.11:7109"
        ]
    );
    let municipal = load(&out.join("nodes/xuchang-municipal-3.toml"), common::NOW)
        .expect("loads")
        .config;
    assert_eq!(municipal.listen.api.to_string(), "10.20.0.13:7106");
    assert_eq!(format!("{:?}", municipal.export.ceiling), "Public");
    assert_eq!(
        format!("{:?}", municipal.sibling_agreement.max_classification),
        "Public"
    );
    let kaifeng = &municipal.outside[0];
    assert_eq!(kaifeng.id.as_str(), "kaifeng");
    assert!(kaifeng.agreement.require_registration);
    assert_eq!(kaifeng.bootstrap.len(), 1);
    let parties = &municipal.parties;
    assert_eq!(parties[0].credit_code.as_str(), "11411000MB12345674");
    assert_eq!(parties[1].contact.name, "王经理");
    let yuzhou = load(&out.join("nodes/xuchang-yuzhou-1.toml"), common::NOW)
        .expect("loads")
        .config;
    assert_eq!(format!("{:?}", yuzhou.export.ceiling), "General");
    assert_eq!(yuzhou.export.personal_info.as_str(), "never");
    assert!(
        yuzhou.parties[0]
            .credit_code
            .as_str()
            .starts_with("12411081")
    );
    // Every node's bundle is there, with its certificate for its own address.
    for stem in [
        "xuchang-municipal-1",
        "xuchang-municipal-2",
        "xuchang-municipal-3",
        "xuchang-yuzhou-1",
    ] {
        let bundle = out.join("bundles").join(stem);
        load(&bundle.join("node.toml"), common::NOW).expect("bundle config loads");
        assert!(bundle.join("api.crt").is_file(), "{stem}");
    }
}

#[test]
fn a_broken_inventory_is_refused_with_every_violation_and_nothing_is_written() {
    let broken = PLACED
        .replace("api_tls = true", "api_tls = false")
        .replace("host = \"10.20.0.12\"", "host = \"10.20.0.11\"")
        .replace("division = \"411081\"", "division = \"4110\"")
        .replace(
            "[exchanges.recognises.kaifeng]",
            "[exchanges.recognises.luoyang]",
        )
        .replace("ceiling = \"public\"", "ceiling = \"core\"");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let inventory = Inventory::parse(&broken).expect("shape");
    let err =
        generate_from(&inventory, &out, RaftTuning::default(), common::NOW).expect_err("refused");
    let GenerateError::Inventory(e) = &err else {
        panic!("{err}")
    };
    let paths: Vec<&str> = e.violations().iter().map(|v| v.path.as_str()).collect();
    for expected in [
        "exchanges[0].export.ceiling",
        "exchanges[0].recognises.luoyang",
        "exchanges[0].zones[1].division",
        "exchanges[0].zones[0].nodes[1].api_port",
        "exchanges[0].zones[0].nodes[0].host",
        "outside[0].id",
    ] {
        assert!(paths.contains(&expected), "{expected} missing from\n{err}");
    }
    assert!(!out.exists(), "nothing written");
}

#[test]
fn an_unknown_key_is_named_with_its_path_and_line() {
    let err = Inventory::parse(&PLACED.replace("api_port = 8443\n", "api_prot = 8443\n"))
        .expect_err("unknown key");
    let text = err.to_string();
    assert!(
        text.contains("exchanges[0].zones[0].nodes[0].api_prot") && text.contains("line"),
        "{text}"
    );
}

#[test]
fn an_oversized_inventory_is_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("big.toml");
    let padding = "#".repeat(usize::try_from(MAX_INVENTORY_BYTES).expect("fits") + 1);
    std::fs::write(&file, format!("{PLACED}\n{padding}\n")).expect("write");
    let err = Inventory::read(&file).expect_err("too large");
    assert!(err.to_string().contains("at most"), "{err}");
}

#[test]
fn the_three_machines_example_puts_one_node_on_each_machine_over_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inventory = Inventory::read(&example("three-machines")).expect("example");
    let layout = generate_from(
        &inventory,
        &dir.path().join("out"),
        RaftTuning::default(),
        common::NOW,
    )
    .expect("generate");
    let urls = api_urls(&layout);
    assert_eq!(
        urls,
        [
            "https://10.20.0.11:8443",
            "https://10.20.0.12:8443",
            "https://10.20.0.13:8443"
        ]
    );
}

/// Every key path of `value`, arrays as `[]` and the exchange ids under `recognises` as
/// `<exchange>`.
fn key_paths(prefix: &str, value: &toml::Value, out: &mut std::collections::BTreeSet<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, v) in table {
                let key = if prefix.ends_with(".recognises") {
                    "<exchange>"
                } else {
                    key.as_str()
                };
                let path = if prefix.is_empty() {
                    key.to_owned()
                } else {
                    format!("{prefix}.{key}")
                };
                if !v.is_table() && !v.is_array() {
                    out.insert(path.clone());
                }
                key_paths(&path, v, out);
            }
        }
        toml::Value::Array(items) if items.iter().any(toml::Value::is_table) => {
            out.insert(format!("{prefix}[]"));
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
fn the_inventory_reference_names_every_key_the_generator_reads() {
    let mut inventory = Inventory::parse(PLACED).expect("shape");
    inventory.defaults = xchg_federation_config::layout::InventoryDefaults {
        host: Some("127.0.0.1".parse().expect("ip")),
        base_port: Some(1),
        nodes_per_zone: Some(1),
        api_tls: Some(true),
        valid_days: Some(1),
    };
    let export = inventory.exchanges[0].export.clone();
    let zone = &mut inventory.exchanges[0].zones[0];
    zone.export = export;
    zone.provider.registration = Some("11".into());
    zone.provider.contact = Some(xchg_federation_config::layout::InventoryContact {
        name: "x".into(),
        phone: Some("x".into()),
        email: Some("x".into()),
    });
    let agreement = inventory.exchanges[0].recognises["kaifeng"].clone();
    inventory.exchanges[0].export = Some(xchg_federation_config::raw::RawExport {
        ceiling: Some("general".into()),
        personal_info: Some("never".into()),
    });
    inventory.exchanges[0].sibling_agreement = Some(agreement);
    let value = toml::Value::try_from(&inventory).expect("toml");
    let mut paths = std::collections::BTreeSet::new();
    key_paths("", &value, &mut paths);
    let reference = include_str!("../INVENTORY.md");
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| !p.starts_with("exchanges[].zones[].buyer."))
        .filter(|p| !reference.contains(&format!("| `{p}` |")))
        .collect();
    assert!(missing.is_empty(), "not in INVENTORY.md: {missing:?}");
    assert!(paths.len() > 30, "{paths:?}");
}
