//! README's "Deploying a zone on three machines" (issue #18), played on loopback: an inventory
//! puts the zone's three nodes on 127.0.0.2, 127.0.0.3 and 127.0.0.4 with the same ports on
//! each "machine" and HTTPS APIs; `xchg config generate --inventory` writes one bundle per node;
//! each node runs from its own copy of its bundle (no file shared with another node or with the
//! operator's layout directory); the zone elects a leader, takes a listing, answers
//! `xchg status`; a fourth machine, 127.0.0.5, is added with `xchg config add-node`, joins, and
//! catches up; renewed delegations and certificates (`xchg config renew`) bring a restarted
//! node back.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::json;
use xchg_tests::{Zone, example_listing, ports_free, xchg_binary};

const MACHINES: [Ipv4Addr; 4] = [
    Ipv4Addr::new(127, 0, 0, 2),
    Ipv4Addr::new(127, 0, 0, 3),
    Ipv4Addr::new(127, 0, 0, 4),
    Ipv4Addr::new(127, 0, 0, 5),
];

/// A first port whose next two are free on every machine.
fn ports_free_everywhere() -> anyhow::Result<u16> {
    let seed = std::process::id();
    for attempt in 0..200u32 {
        let base = 20_000 + ((seed.wrapping_add(attempt * 7_919)) % 40_000) as u16;
        if MACHINES.iter().all(|host| ports_free(*host, base, 3)) {
            return Ok(base);
        }
    }
    bail!("no port range free on 127.0.0.2 to 127.0.0.5")
}

fn inventory(port: u16) -> String {
    let nodes: String = MACHINES[..3]
        .iter()
        .map(|host| {
            format!(
                "\n[[exchanges.zones.nodes]]\nhost = \"{host}\"\napi_port = {port}\n\
                 raft_port = {}\np2p_port = {}\n",
                port + 1,
                port + 2
            )
        })
        .collect();
    inventory_of("api_tls = true\nvalid_days = 30\n", &nodes)
}

/// An inventory of exchange `xuchang` with `defaults` and its municipal zone followed by `rest`
/// (its nodes, more zones).
fn inventory_of(defaults: &str, rest: &str) -> String {
    format!(
        r#"version = 1

[defaults]
{defaults}
[[exchanges]]
id = "xuchang"
display_name = "许昌数据交易中心"

[[exchanges.zones]]
name = "municipal"
display_name = "许昌市数据交易专区 (市级)"
division = "411000"
provider = {{ id = "xuchang-big-data-bureau", name = "许昌市大数据局", registration = "11" }}
buyer = {{ id = "xuchang-smart-city-ops", name = "许昌智慧城市运营有限公司", registration = "91" }}
{rest}"#
    )
}

/// Runs `xchg config generate --inventory` on `inventory` in a fresh workstation directory;
/// the layout it wrote there (`layout/`), its nodes not started.
fn generate(inventory: &str) -> anyhow::Result<Zone> {
    let workstation = tempfile::tempdir()?;
    let inventory_file = workstation.path().join("zone.toml");
    std::fs::write(&inventory_file, inventory)?;
    let generated = Command::new(xchg_binary())
        .args(["config", "generate", "--inventory"])
        .arg(&inventory_file)
        .arg("--out")
        .arg(workstation.path().join("layout"))
        .output()?;
    anyhow::ensure!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    Zone::open(workstation)
}

/// `xchg status --node URL --ca CA` succeeds: the CLI verifies the node's certificate.
fn status_trusting(url: &str, ca: &Path) -> anyhow::Result<()> {
    let status = Command::new(xchg_binary())
        .args(["status", "--node", url, "--ca"])
        .arg(ca)
        .env_remove("XCHG_CA")
        .output()?;
    anyhow::ensure!(
        status.status.success(),
        "{}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    Ok(())
}

/// The bundle name of the node whose config is `config`: its file stem in the layout's
/// `nodes/`, its folder's name in a bundle.
fn stem_of(config: &Path) -> anyhow::Result<String> {
    let in_bundle = config.file_name().is_some_and(|n| n == "node.toml");
    let named = if in_bundle {
        config.parent().and_then(Path::file_name)
    } else {
        config.file_stem()
    };
    Ok(named
        .and_then(|s| s.to_str())
        .context("config stem")?
        .to_owned())
}

/// Copies the bundle of the node whose config is `config` onto `machine` (its own folder, as
/// `scp -r` would), over what is there; the copy's config.
fn copy_bundle(layout: &Path, config: &Path, machine: &Path) -> anyhow::Result<PathBuf> {
    let stem = stem_of(config)?;
    let from = layout.join("bundles").join(&stem);
    let to = machine.join("var/lib/xchg").join(&stem);
    std::fs::create_dir_all(&to)?;
    for entry in std::fs::read_dir(&from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(to.join("node.toml"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_deployed_from_an_inventory_on_three_machines_grows_to_a_fourth()
-> anyhow::Result<()> {
    let port = ports_free_everywhere()?;
    let mut zone = generate(&inventory(port))?;
    let layout = zone.dir.path().join("layout");
    let machines = tempfile::tempdir()?;
    let mut expected_urls = Vec::new();
    for (node, host) in zone.nodes.iter_mut().zip(MACHINES) {
        expected_urls.push(format!("https://{host}:{port}"));
        let machine = machines.path().join(host.to_string());
        node.config = copy_bundle(&layout, &node.config, &machine)?;
    }
    let urls: Vec<&str> = zone.nodes.iter().map(|n| n.api_url.as_str()).collect();
    assert_eq!(urls, expected_urls, "each node on its machine, same ports");
    zone.start_all()?;
    let leader = zone.wait_for_leader(0, Duration::from_secs(90)).await?;
    let id = zone
        .approve_new(
            leader,
            &zone.tokens().clone(),
            &example_listing("three machines"),
        )
        .await?;

    // `xchg status` from a machine, trusting the CA its bundle carries.
    status_trusting(
        &zone.nodes[1].api_url,
        &zone.nodes[1].config.with_file_name("api-ca.pem"),
    )?;

    // A fourth machine: add-node on the operator's workstation, copy its bundle, start it
    // with --join, and admit it through a member.
    let (fourth, member) = zone.add_node_with(
        "xuchang/municipal",
        &["--host", "127.0.0.5", "--base-port", &port.to_string()],
    )?;
    assert_eq!(
        zone.nodes[fourth].api_url,
        format!("https://127.0.0.5:{port}")
    );
    let machine = machines.path().join("127.0.0.5");
    zone.nodes[fourth].config = copy_bundle(&layout, &zone.nodes[fourth].config, &machine)?;
    zone.start_with(fourth, &["--join"])?;
    let admin = zone.tokens().admin.clone();
    let (s, body) = zone
        .post(leader, "/v1/zone/members", &admin, &member)
        .await?;
    assert_eq!(s, 200, "{body}\n{}", zone.log_of(fourth));
    zone.wait_caught_up(fourth, leader, Duration::from_secs(60))
        .await?;
    let regulator = zone.tokens().regulator.clone();
    let (s, listing) = zone
        .get(
            fourth,
            &format!("/v1/listings/{id}?consistency=local"),
            Some(&regulator),
        )
        .await?;
    assert_eq!(s, 200, "{listing}");
    assert_eq!(listing["state"], json!("listed"));
    // A year on, the operator renews the delegations and certificates on the workstation and
    // restarts a node with its renewed bundle: it is back in its zone over HTTPS.
    let renewed = Command::new(xchg_binary())
        .args(["config", "renew", "--valid-days", "400", "--layout"])
        .arg(&layout)
        .output()?;
    anyhow::ensure!(
        renewed.status.success(),
        "{}",
        String::from_utf8_lossy(&renewed.stderr)
    );
    let follower = (0..3).find(|&i| i != leader).context("a follower")?;
    zone.terminate(follower, Duration::from_secs(30))?;
    let old_cert = std::fs::read(zone.nodes[follower].config.with_file_name("api.crt"))?;
    let machine = machines.path().join(MACHINES[follower].to_string());
    zone.nodes[follower].config = copy_bundle(&layout, &zone.nodes[follower].config, &machine)?;
    assert_ne!(
        std::fs::read(zone.nodes[follower].config.with_file_name("api.crt"))?,
        old_cert,
        "a new certificate on the machine"
    );
    zone.start(follower)?;
    zone.wait_caught_up(follower, leader, Duration::from_secs(60))
        .await?;

    // Every node keeps its data inside its own machine's bundle.
    for node in &zone.nodes {
        let data = node.config.with_file_name("data");
        assert!(
            node.config.starts_with(machines.path()) && data.join("catalog.db").is_file(),
            "{}",
            data.display()
        );
    }
    drop(zone);
    drop(machines);
    Ok(())
}

/// The inventory of an exchange whose nodes are named by host name: a three-node hub zone and
/// a one-node county zone, every node at `localhost` (which the system's resolver answers) on
/// its own ports from `port`.
fn named_inventory(port: u16) -> String {
    inventory_of(
        &format!("host = \"localhost\"\nbase_port = {port}\napi_tls = true\nvalid_days = 30\n"),
        r#"
[[exchanges.zones]]
name = "yuzhou"
display_name = "禹州市数据交易分专区"
division = "411081"
provider = { id = "yuzhou-data-bureau", name = "禹州市数据局", registration = "11" }
buyer = { id = "yuzhou-ceramics-works", name = "禹州钧瓷工坊有限公司", registration = "91" }
nodes = [{}]
"#,
    )
}

/// Nodes named by host name (issue #18): the zone's members reach each other's Raft listener
/// at `localhost:PORT`, gossip dials `/dns/localhost/...` (looked up at each dial), and the
/// CLI checks each API certificate against the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_whose_nodes_are_named_by_host_name_elects_gossips_and_serves_https()
-> anyhow::Result<()> {
    let seed = std::process::id();
    let port = (0..200u32)
        .map(|attempt| 20_000 + ((seed.wrapping_add(attempt * 7_919)) % 40_000) as u16)
        .find(|base| ports_free(Ipv4Addr::LOCALHOST, *base, 12))
        .context("no 12 free ports on 127.0.0.1")?;
    let mut zone = generate(&named_inventory(port))?;
    let nodes: Vec<_> = zone
        .layout
        .exchanges
        .iter()
        .flat_map(|e| &e.zones)
        .flat_map(|z| &z.nodes)
        .cloned()
        .collect();
    for (i, node) in nodes.iter().enumerate() {
        let api = port + 3 * u16::try_from(i)?;
        assert_eq!(node.api_url, format!("https://localhost:{api}"));
        assert_eq!(node.raft_addr.to_string(), format!("localhost:{}", api + 1));
        assert!(
            node.p2p_addr
                .to_string()
                .starts_with(&format!("/dns/localhost/tcp/{}/p2p/", api + 2)),
            "{}",
            node.p2p_addr
        );
    }
    let config = std::fs::read_to_string(&zone.nodes[0].config)?;
    assert!(
        config.contains(&format!("api = \"127.0.0.1:{port}\"")),
        "listens on loopback, as localhost resolves:\n{config}"
    );

    zone.start_all()?;
    let leader = zone.wait_for_leader(0, Duration::from_secs(90)).await?;
    anyhow::ensure!(leader < 3, "the hub's leader is one of its three nodes");
    let county = zone.zone_nodes("xuchang/yuzhou");
    zone.wait_for_leader(county[0], Duration::from_secs(30))
        .await?;
    let hub_tokens = zone.tokens().clone();
    let id = zone
        .approve_new(leader, &hub_tokens, &example_listing("named hosts"))
        .await?;
    // Replicated to every hub member over Raft at their names...
    zone.wait_for_state(
        &[0, 1, 2],
        &hub_tokens.regulator,
        &id,
        "listed",
        Duration::from_secs(30),
    )
    .await?;
    // ...and gossiped to the county zone, whose only way to the hub is a /dns/ address.
    let county_tokens = zone.zone_tokens("xuchang/yuzhou").clone();
    zone.wait_for_state(
        &county,
        &county_tokens.regulator,
        &id,
        "recognised",
        Duration::from_secs(60),
    )
    .await?;

    // The CLI verifies the certificate each node serves against its host name.
    let ca = zone.dir.path().join("layout/api-ca.pem");
    for node in &zone.nodes {
        status_trusting(&node.api_url, &ca)?;
    }

    // The county node's federation overview asks the hub nodes it gossips with at their
    // declared `https://localhost:…`: the name resolves to the loopback address they connected
    // from (before, a named API was never asked).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, overview) = zone
            .get(
                county[0],
                "/v1/federation/overview",
                Some(&county_tokens.operator),
            )
            .await?;
        anyhow::ensure!(status == 200, "{overview}");
        let hub_reached = overview["exchanges"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| e["zones"].as_array().into_iter().flatten())
            .filter(|z| z["id"] != "xuchang/yuzhou")
            .flat_map(|z| z["nodes"].as_array().into_iter().flatten())
            .any(|n| n["reachable"] == true && n["role"].is_string());
        if hub_reached {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the county's overview never reached a hub node by name: {overview}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(zone);
    Ok(())
}
