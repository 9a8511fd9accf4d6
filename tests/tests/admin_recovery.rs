//! The offline recovery of admin access (issue #12, API fuzzer item 3), with real processes: a
//! zone that lost its admin tokens gets one back with `xchg token create --data-dir DIR --role
//! admin`, run on one member's data directory while that member is stopped. The tool refuses
//! while the node holds the directory; the token works once the node is started again, on every
//! member (it goes through Raft), and survives a restart of the whole zone.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::json;
use xchg_tests::{Zone, eventually, xchg_binary};

/// How long a fresh zone may take to elect its first leader.
const ELECTION: Duration = Duration::from_secs(30);

/// `xchg token create --data-dir DIR --role admin`: exit success, stdout, stderr.
fn token_create(dir: &std::path::Path) -> anyhow::Result<(bool, String, String)> {
    let out = Command::new(xchg_binary())
        .args(["token", "create", "--role", "admin", "--data-dir"])
        .arg(dir)
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Waits until `token` reads the audit chain (admin) on node `i`.
async fn works_on(zone: &Zone, i: usize, token: &str) -> anyhow::Result<()> {
    eventually(
        Duration::from_secs(30),
        &format!("the recovered token working on node {i}"),
        || async {
            let (status, body) = zone
                .get(i, "/v1/audit?limit=1", Some(token))
                .await
                .map_err(|e| e.to_string())?;
            match status {
                200 => Ok(Some(())),
                401 => Ok(None),
                other => Err(format!("{other} {body}")),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_created_offline_reaches_every_member_and_survives_restarts()
-> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    zone.wait_for_leader(0, ELECTION).await?;
    let dir = zone.data_dir(0)?;

    // While node 0 runs, its data directory is its own: refused, nothing written.
    let (ok, stdout, stderr) = token_create(&dir)?;
    ensure!(!ok, "created while the node runs: {stdout}");
    ensure!(
        stderr.contains("Stop that node first"),
        "no clear refusal: {stderr}"
    );
    ensure!(
        !dir.join("recovery").exists() || std::fs::read_dir(dir.join("recovery"))?.next().is_none(),
        "a request was written for a running node"
    );

    // Stopped (killed: the lock goes with the process), the tool writes the request.
    zone.kill(0);
    let (ok, token, stderr) = token_create(&dir)?;
    ensure!(ok, "refused on a stopped node: {stderr}");
    ensure!(token.starts_with("xchg-admin-"), "not a token: {token:?}");
    ensure!(
        !std::fs::read_to_string(dir.join("catalog.db"))
            .unwrap_or_default()
            .contains(&token),
        "the token itself is stored"
    );
    let (status, _) = zone.get(1, "/v1/audit?limit=1", Some(&token)).await?;
    ensure!(
        status == 401,
        "works before the node handed it over: {status}"
    );

    // Started again, node 0 hands it to the zone: it works on every member.
    zone.start(0)?;
    for i in 0..3 {
        works_on(&zone, i, &token).await?;
    }
    let (status, audit) = zone.get(1, "/v1/audit?limit=1000", Some(&token)).await?;
    ensure!(status == 200, "{status} {audit}");
    let record = audit["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["action"] == "create_token" && r["actor"] == "node:municipal-1")
        .with_context(|| format!("no create_token record by node:municipal-1 in {audit}"))?;
    ensure!(
        record["role"] == "admin" && record["result"] == "ok",
        "{record}"
    );
    let request_left = std::fs::read_dir(dir.join("recovery"))?.count();
    ensure!(request_left == 0, "the handed-over request stays");

    // It survives a restart of every member, and acts as an admin.
    for i in 0..3 {
        zone.terminate(i, Duration::from_secs(30))?;
    }
    zone.start_all()?;
    let leader = zone.wait_for_leader(0, ELECTION).await?;
    for i in 0..3 {
        works_on(&zone, i, &token).await?;
    }
    let (status, body) = zone
        .post(
            leader,
            "/v1/tokens",
            &token,
            &json!({"role": "admin", "label": "day-to-day admin"}),
        )
        .await?;
    ensure!(
        status == 201,
        "the recovered admin creates tokens: {status} {body}"
    );
    Ok(())
}
