//! Per-node bundles (issue #18): each node of a zone generated with `--api-tls` runs from its
//! own bundle folder, copied away from the layout, with nothing else of the layout left on the
//! machine: the zone elects a leader, takes a write over HTTPS and answers the CLI, which
//! trusts the CA the bundle carries.

use std::time::Duration;

use xchg_tests::{Zone, example_listing, for_party, xchg_binary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_runs_from_its_bundles_alone() -> anyhow::Result<()> {
    let mut zone = Zone::generate_with("single-zone", 3, &["--api-tls"])?;
    let layout_dir = zone.dir.path().join("layout");
    let machines = tempfile::tempdir()?;
    for node in &mut zone.nodes {
        let stem = node
            .config
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_owned)
            .expect("config stem");
        let machine = machines.path().join(&node.name).join("var-lib-xchg");
        std::fs::create_dir_all(&machine)?;
        let bundle = machine.join(&stem);
        std::fs::rename(layout_dir.join("bundles").join(&stem), &bundle)?;
        node.config = bundle.join("node.toml");
    }
    // Nothing of the layout stays behind: no shared config, key, certificate or CA.
    std::fs::remove_dir_all(&layout_dir)?;
    zone.start_all()?;
    let leader = zone.wait_for_leader(0, Duration::from_secs(90)).await?;
    let tokens = zone.tokens().clone();
    let listing = for_party(
        example_listing("bundle"),
        zone.zone_party("xuchang/municipal"),
    );
    let (status, body) = zone
        .post(leader, "/v1/listings", &tokens.provider, &listing)
        .await?;
    assert_eq!(status, 201, "{body}");
    // Each node keeps its data inside its bundle.
    for node in &zone.nodes {
        let data = node.config.with_file_name("data");
        assert!(data.join("catalog.db").is_file(), "{}", data.display());
    }
    let ca = zone.nodes[1].config.with_file_name("api-ca.pem");
    let out = std::process::Command::new(xchg_binary())
        .args(["status", "--node", &zone.nodes[1].api_url, "--ca"])
        .arg(&ca)
        .env_remove("XCHG_CA")
        .output()?;
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The nodes stop before their folders go.
    drop(zone);
    drop(machines);
    Ok(())
}
