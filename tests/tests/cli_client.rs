//! The operator's client commands as the README shows them, against a real 3-node zone: the
//! README's `examples/listing.json` is submitted as the zone's provider party and its id taken
//! from the first word of the answer, then approved and read — with the token never on the
//! command line: from `XCHG_TOKEN`, `--token-file` or `XCHG_TOKEN_FILE` (issue #12, item 9).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::ensure;
use xchg_tests::{FIRST_ZONE_PARTY, Zone, xchg_binary};

/// The listing file the README's quick start posts.
fn readme_listing() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/listing.json")
}

/// `xchg ARGS` against `node`, with `env` set, no token inherited from the test's environment.
fn xchg(node: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Output> {
    let mut command = Command::new(xchg_binary());
    command
        .args(args)
        .args(["--node", node])
        .env_remove("XCHG_TOKEN")
        .env_remove("XCHG_TOKEN_FILE");
    for (k, v) in env {
        command.env(k, v);
    }
    Ok(command.output()?)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Writes `token` to a file of its own (mode 0600, as a secret should be).
fn token_file(dir: &Path, name: &str, token: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    xchg_federation_config::write_secret(&path, format!("{token}\n").as_bytes())?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_listing_goes_through_the_cli_with_tokens_from_the_environment_or_files()
-> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    let leader = zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let node = zone.nodes[(leader + 1) % 3].api_url.clone();
    let tokens = zone.tokens().clone();
    ensure!(
        zone.zone_party("xuchang/municipal").id.as_str() == FIRST_ZONE_PARTY.0,
        "the README's listing names the single-zone layout's provider party"
    );
    let files = tempfile::tempdir()?;

    // Submit: the token from XCHG_TOKEN; the id is the first word of the answer.
    let listing = readme_listing();
    let listing = listing.to_str().unwrap_or_default();
    let out = xchg(
        &node,
        &["listing", "submit", listing],
        &[("XCHG_TOKEN", &tokens.provider)],
    )?;
    ensure!(out.status.success(), "submit: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let id = stdout.split_whitespace().next().unwrap_or_default();
    ensure!(
        id.starts_with("sha256:") && stdout.contains("submitted"),
        "{stdout}"
    );

    // Approve: the token from --token-file.
    let operator = token_file(files.path(), "operator.token", &tokens.operator)?;
    let operator = operator.to_str().unwrap_or_default();
    let out = xchg(
        &node,
        &["listing", "approve", id, "--token-file", operator],
        &[],
    )?;
    ensure!(out.status.success(), "approve: {}", text(&out));
    ensure!(text(&out).contains("listed"), "{}", text(&out));

    // Read as a buyer: the token file named by XCHG_TOKEN_FILE.
    let buyer = token_file(files.path(), "buyer.token", &tokens.buyer)?;
    let out = xchg(
        &node,
        &["listing", "show", id, "--json"],
        &[("XCHG_TOKEN_FILE", buyer.to_str().unwrap_or_default())],
    )?;
    ensure!(out.status.success(), "show: {}", text(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        shown["state"] == "listed" && shown["provider"]["id"] == FIRST_ZONE_PARTY.0,
        "{shown}"
    );

    // A token given twice is refused, not silently chosen; so is an empty token file.
    let out = xchg(
        &node,
        &["status", "--token-file", operator],
        &[("XCHG_TOKEN", &tokens.buyer)],
    )?;
    ensure!(
        !out.status.success() && text(&out).contains("given twice"),
        "{}",
        text(&out)
    );
    let empty = token_file(files.path(), "empty.token", "")?;
    let out = xchg(
        &node,
        &["status", "--token-file", empty.to_str().unwrap_or_default()],
        &[],
    )?;
    ensure!(
        !out.status.success() && text(&out).contains("empty"),
        "{}",
        text(&out)
    );
    Ok(())
}

#[test]
fn output_cut_short_by_a_closed_pipe_ends_the_command_quietly() -> anyhow::Result<()> {
    // `xchg config reference | head -1`: the reader goes away before the command writes.
    let mut child = Command::new(xchg_binary())
        .args(["config", "reference"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    drop(child.stdout.take());
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!stderr.contains("panicked"), "it panicked: {stderr}");
    ensure!(out.status.success(), "exit {:?}: {stderr}", out.status);
    Ok(())
}
