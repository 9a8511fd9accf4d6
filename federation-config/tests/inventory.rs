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

/// Lines of a node config that do not hold keys, delegations, token hashes or peer ids.
fn config_shape(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("config")
        .lines()
        .filter(|l| !l.contains("key") && !l.contains("delegation"))
        .filter(|l| !l.contains("sha256") && !l.contains("/p2p/"))
        .map(str::to_owned)
        .collect()
}

/// The committed example (`examples/xuchang/`) was written from the generator's compiled-in
/// tables, before the layouts became inventories: the Xuchang inventory lays out the same
/// federation, node for node and config line for config line.
#[test]
fn the_xuchang_inventory_lays_out_what_the_tables_before_it_did() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/xuchang");
    let before: Layout = serde_json::from_slice(
        &std::fs::read(committed.join("layout.json")).expect("committed layout.json"),
    )
    .expect("layout.json");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("now");
    let mut opts = LayoutOptions::new(&out, LayoutKind::Xuchang);
    opts.valid_days = 3650;
    let now = generate(&opts, common::NOW).expect("generate");
    assert_eq!(shape(&before), shape(&now));
    for node in now
        .exchanges
        .iter()
        .flat_map(|e| &e.zones)
        .flat_map(|z| &z.nodes)
    {
        assert_eq!(
            config_shape(&committed.join(&node.config)),
            config_shape(&out.join(&node.config)),
            "{}",
            node.config.display()
        );
    }
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
        let node = &from_file.exchanges[0].zones[0].nodes[0].config;
        assert_eq!(
            config_shape(&dir.path().join("built-in").join(node)),
            config_shape(&dir.path().join("inventory").join(node)),
            "{kind}"
        );
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
        .replace("ceiling = \"public\"", "ceiling = \"core\"")
        .replace(
            "raft_port = 9000\np2p_port = 9001\n\n[[exchanges.zones.nodes]]\nhost = \"10.20.0.13\"",
            "raft_port = 9000\np2p_port = 0\n\n[[exchanges.zones.nodes]]\nhost = \"0.0.0.0\"",
        )
        .replace("display_name = \"禹州市\"", "display_name = \"禹州\\t市\"");
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
        "exchanges[0].zones[0].nodes[1].p2p_port",
        "exchanges[0].zones[0].nodes[2].host",
        "exchanges[0].zones[1].display_name",
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
    assert!(err.to_string().contains("larger than"), "{err}");
    // A device claims no size; it is read up to the limit, not to its end.
    let err = Inventory::read(Path::new("/dev/zero")).expect_err("endless");
    assert!(err.to_string().contains("larger than"), "{err}");
}

/// Generates `text` into a fresh directory expecting a refusal, and returns it; nothing written.
fn refusal(text: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let inventory = Inventory::parse(text).expect("shape");
    let err =
        generate_from(&inventory, &out, RaftTuning::default(), common::NOW).expect_err("refused");
    assert!(!out.exists(), "nothing written for a refusal:\n{err}");
    err.to_string()
}

/// Generates `text` into a fresh directory; it must succeed.
fn generates(text: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let inventory = Inventory::parse(text).expect("shape");
    generate_from(
        &inventory,
        &dir.path().join("out"),
        RaftTuning::default(),
        common::NOW,
    )
    .expect("generated");
}

/// Generates `text` into a fresh directory expecting a refusal naming `path`; nothing written.
fn refused(text: &str, path: &str) {
    let err = refusal(text);
    assert!(
        err.contains(&format!("error: {path}:")),
        "{path} missing from\n{err}"
    );
}

/// An exchange `id` of one zone `zone` whose founding parties are `provider` and `buyer`.
fn exchange(id: &str, zone: &str, provider: &str, buyer: &str) -> String {
    format!(
        "[[exchanges]]\nid = \"{id}\"\ndisplay_name = \"E\"\n\
         [[exchanges.zones]]\nname = \"{zone}\"\ndisplay_name = \"Z\"\ndivision = \"411000\"\n\
         provider = {{ id = \"{provider}\", name = \"P\" }}\n\
         buyer = {{ id = \"{buyer}\", name = \"B\", credit_code = \"11411000MB12345674\" }}\n"
    )
}

/// Review findings: inventories that passed the check, then failed half-way through writing.
#[test]
fn clashing_file_names_shared_codes_and_keys_and_absurd_counts_are_refused_up_front() {
    // Exchange a-b's zone c and exchange a's zone b-c would both be nodes a-b-c-1, -2, -3.
    let clash = format!(
        "version = 1\n{}{}",
        exchange("a-b", "c", "p1", "b1"),
        exchange("a", "b-c", "p2", "b2")
    );
    refused(&clash, "exchanges[1].zones[0].name");
    let same_code = format!("version = 1\n{}", exchange("a", "z", "p", "b")).replace(
        "name = \"P\"",
        "name = \"P\", credit_code = \"11411000MB12345674\"",
    );
    refused(&same_code, "exchanges[0].zones[0].buyer.credit_code");
    let huge = format!(
        "version = 1\n[defaults]\nnodes_per_zone = 9223372036854775807\n{}",
        exchange("a", "z", "p", "b")
    );
    refused(&huge, "defaults.nodes_per_zone");
    let luoyang = "\n[[outside]]\nid = \"luoyang\"\ndisplay_name = \"洛阳\"\n\
        root_public_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n\
        bootstrap = [\"/ip4/10.30.0.2/tcp/9001/p2p/12D3KooWEANVyZZUiMvLB83ybxBCx3jv3eYB8xbaRGhREBuEkVvZ\"]\n";
    let both = (PLACED.to_owned() + luoyang).replace(
        "[exchanges.recognises.kaifeng]",
        "[exchanges.recognises.luoyang]\ncategories = [\"*\"]\nmax_classification = \"public\"\n\
         delivery_modes = [\"*\"]\nrequire_registration = false\n\n[exchanges.recognises.kaifeng]",
    );
    refused(&both, "outside[1].root_public_key");
}

#[test]
fn a_zone_overrides_its_exchanges_export_policy_one_key_at_a_time() {
    let text = PLACED
        .replace(
            "[exchanges.export]\nceiling = \"public\"",
            "[exchanges.export]\nceiling = \"public\"\npersonal_info = \"never\"",
        )
        .replace(
            "export = { ceiling = \"general\", personal_info = \"never\" }",
            "export = { ceiling = \"general\" }",
        );
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let inventory = Inventory::parse(&text).expect("shape");
    generate_from(&inventory, &out, RaftTuning::default(), common::NOW).expect("generate");
    let yuzhou = load(&out.join("nodes/xuchang-yuzhou-1.toml"), common::NOW)
        .expect("loads")
        .config;
    assert_eq!(format!("{:?}", yuzhou.export.ceiling), "General");
    assert_eq!(
        yuzhou.export.personal_info.as_str(),
        "never",
        "the exchange's"
    );
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
        bind: Some("127.0.0.1".parse().expect("ip")),
        base_port: Some(1),
        nodes_per_zone: Some(1),
        api_tls: Some(true),
        valid_days: Some(1),
    };
    let export = inventory.exchanges[0].export.clone();
    let zone = &mut inventory.exchanges[0].zones[0];
    zone.export = export;
    if let Some(node) = zone.nodes.as_mut().and_then(|n| n.first_mut()) {
        node.bind = Some("127.0.0.1".parse().expect("ip"));
    }
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

#[test]
fn adding_a_node_to_a_zone_spread_over_hosts_needs_its_host_and_a_reachable_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let inventory = Inventory::parse(PLACED).expect("shape");
    generate_from(&inventory, &out, RaftTuning::default(), common::NOW).expect("generate");
    let zone = "xuchang/municipal".parse().expect("zone");
    let mut opts = xchg_federation_config::layout::AddNodeOptions::new(&out, zone);
    let err = xchg_federation_config::layout::add_node(&opts, common::NOW).expect_err("no host");
    assert!(
        err.to_string()
            .contains("10.20.0.11, 10.20.0.12, 10.20.0.13")
            && err.to_string().contains("--host"),
        "{err}"
    );
    opts.host = Some("0.0.0.0".parse().expect("ip"));
    let err = xchg_federation_config::layout::add_node(&opts, common::NOW).expect_err("nowhere");
    assert!(err.to_string().contains("no one's address"), "{err}");
    opts.host = Some("10.20.0.14".parse().expect("ip"));
    let added = xchg_federation_config::layout::add_node(&opts, common::NOW).expect("added");
    assert_eq!(added.node.api_url, "https://10.20.0.14:9002");
}

/// Hosts named by DNS name (issue #18): the name is where the others reach a node (member
/// list, API URL, certificate, libp2p address); the node listens on every interface unless
/// `bind` names one; plain HTTP is refused for a name other than `localhost`; add-node takes a
/// name too.
#[test]
fn nodes_named_by_host_name_are_reached_at_the_name_and_listen_where_bound() {
    let named = PLACED
        .replace(
            "host = \"10.20.0.11\"",
            "host = \"XC-Municipal-1.example.cn\"",
        )
        .replace(
            "host = \"10.20.0.12\"",
            "host = \"xc-municipal-2.example.cn\"\nbind = \"10.20.0.12\"",
        );
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let inventory = Inventory::parse(&named).expect("shape");
    let layout =
        generate_from(&inventory, &out, RaftTuning::default(), common::NOW).expect("generate");
    let first = &layout.exchanges[0].zones[0].nodes[0];
    assert_eq!(first.api_url, "https://xc-municipal-1.example.cn:8443");
    assert_eq!(
        first.raft_addr.to_string(),
        "xc-municipal-1.example.cn:9000"
    );
    assert!(
        first
            .p2p_addr
            .to_string()
            .starts_with("/dns/xc-municipal-1.example.cn/tcp/9001/p2p/"),
        "{}",
        first.p2p_addr
    );
    let one = load(&out.join("nodes/xuchang-municipal-1.toml"), common::NOW)
        .expect("loads")
        .config;
    assert_eq!(one.listen.api.to_string(), "0.0.0.0:8443");
    assert_eq!(one.listen.raft.to_string(), "0.0.0.0:9000");
    assert_eq!(one.listen.p2p.to_string(), "/ip4/0.0.0.0/tcp/9001");
    let two = load(&out.join("nodes/xuchang-municipal-2.toml"), common::NOW)
        .expect("loads")
        .config;
    assert_eq!(two.listen.api.to_string(), "10.20.0.12:8443");
    assert_eq!(
        two.zone.members[1].raft_addr.to_string(),
        "xc-municipal-2.example.cn:9000"
    );
    // Its certificate names it by its DNS name.
    let cert = std::fs::read(out.join("bundles/xuchang-municipal-1/api.crt")).expect("cert");
    let pem = String::from_utf8(cert).expect("pem");
    let der = pem_body(&pem);
    assert!(
        der.windows(25).any(|w| w == b"xc-municipal-1.example.cn"),
        "the certificate names the host"
    );

    // A name off loopback with plain HTTP: refused at the node's host.
    let plain =
        Inventory::parse(&named.replace("api_tls = true", "api_tls = false")).expect("shape");
    let err = generate_from(
        &plain,
        &dir.path().join("plain"),
        RaftTuning::default(),
        common::NOW,
    )
    .expect_err("plain HTTP off loopback");
    assert!(
        err.to_string().contains("exchanges[0].zones[0].nodes[0].host: xc-municipal-1.example.cn is not a loopback address"),
        "{err}"
    );
    // A name that is no name.
    let bad = named.replace("XC-Municipal-1.example.cn", "xc_municipal_1.example.cn");
    let err = Inventory::parse(&bad).expect_err("not a host");
    assert!(
        err.to_string()
            .contains("neither an IP address nor a host name"),
        "{err}"
    );

    // add-node with a host name: reached at it, listening everywhere.
    let zone = "xuchang/municipal".parse().expect("zone");
    let mut opts = xchg_federation_config::layout::AddNodeOptions::new(&out, zone);
    opts.host = Some("xc-municipal-4.example.cn".parse().expect("name"));
    let added = xchg_federation_config::layout::add_node(&opts, common::NOW).expect("added");
    assert_eq!(added.node.api_url, "https://xc-municipal-4.example.cn:9002");
    assert_eq!(
        added.node.raft_addr.to_string(),
        "xc-municipal-4.example.cn:9003"
    );
    let four = load(&added.config_file, common::NOW).expect("loads").config;
    assert_eq!(four.listen.api.to_string(), "0.0.0.0:9002");
    // An address host listens on itself or everywhere, nowhere else.
    opts.host = Some("10.20.0.15".parse().expect("ip"));
    opts.bind = Some("10.20.0.16".parse().expect("ip"));
    let err = xchg_federation_config::layout::add_node(&opts, common::NOW).expect_err("bind");
    assert!(
        err.to_string()
            .contains("--bind 10.20.0.16 is not 10.20.0.15"),
        "{err}"
    );
}

/// What a bind may be, checked before anything is written: an address host's own address or
/// every interface; `localhost` and 127.0.0.1 are one place; plain HTTP is fine on `localhost`.
#[test]
fn a_bind_that_does_not_fit_its_host_or_a_place_taken_twice_is_refused_before_writing() {
    let elsewhere = PLACED.replace(
        "host = \"10.20.0.12\"",
        "host = \"10.20.0.12\"\nbind = \"10.20.0.99\"",
    );
    let err = refusal(&elsewhere);
    assert!(
        err.contains("exchanges[0].zones[0].nodes[1].bind: 10.20.0.99 is not 10.20.0.12"),
        "{err}"
    );
    generates(&PLACED.replace(
        "host = \"10.20.0.12\"",
        "host = \"10.20.0.12\"\nbind = \"0.0.0.0\"",
    ));

    let local = "version = 1\n[defaults]\nbase_port = 7300\n".to_owned()
        + &PLACED[PLACED.find("[[exchanges]]").expect("exchanges")
            ..PLACED.find("[[exchanges.zones.nodes]]").expect("nodes")]
        + "nodes = [{ host = \"localhost\" }, { host = \"127.0.0.1\", api_port = 7300 }, {}]\n";
    let err = refusal(&local);
    assert!(
        err.contains(
            "exchanges[0].zones[0].nodes[1].api_port: 127.0.0.1:7300 is already taken by \
             defaults.base_port (numbering exchanges[0].zones[0].nodes[0].api_port)"
        ),
        "{err}"
    );
    assert!(
        !err.contains("plain HTTP"),
        "localhost serves plain HTTP on loopback: {err}"
    );

    // Found by an attacker's review: every loopback address is one machine, so a node there
    // listening on every interface takes its ports on 127.0.0.2 too; the second node failed
    // to start ("Address already in use") from a layout generated without complaint.
    let on_loopback = |first: &str| {
        PLACED
            .replace("host = \"10.20.0.11\"", first)
            .replace("host = \"10.20.0.12\"", "host = \"127.0.0.2\"")
            .replace("host = \"10.20.0.13\"", "host = \"127.0.0.3\"")
    };
    let err = refusal(&on_loopback("host = \"127.0.0.1\"\nbind = \"0.0.0.0\""));
    assert!(
        err.contains(
            "exchanges[0].zones[0].nodes[1].api_port: port 8443 on this machine's loopback is \
             already taken by exchanges[0].zones[0].nodes[0].api_port"
        ),
        "{err}"
    );
    // Distinct loopback addresses with their own binds share port numbers freely.
    generates(&on_loopback("host = \"127.0.0.1\""));
}

/// The DER bytes of the first PEM block of `pem`.
fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64")
}
