//! Files on disk (issue #12, item 9), with real processes run under `umask 000`, the loosest
//! mask an operator's shell or a service manager may hand down: whatever the mask, the layout
//! `xchg config generate` writes and the data directory `xchg run` fills are readable by their
//! owner only — every folder 0700, every key, config, database, WAL, shared-memory, snapshot
//! and lock file 0600 — because each is created with that mode, never loosened and tightened
//! later. The exchange root keys are kept apart from the node keys, with a warning.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use xchg_tests::{Zone, eventually, example_listing, free_addresses, xchg_binary};

/// Every folder and file under `root` (itself included), depth first, with its mode bits.
fn modes(root: &Path) -> anyhow::Result<Vec<(PathBuf, bool, u32)>> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_owned()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        let is_dir = meta.is_dir();
        out.push((path.clone(), is_dir, meta.permissions().mode() & 0o777));
        if is_dir {
            for entry in std::fs::read_dir(&path)? {
                todo.push(entry?.path());
            }
        }
    }
    Ok(out)
}

/// Every folder under `root` is 0700 and every file 0600; says which are not.
fn all_private(root: &Path) -> anyhow::Result<()> {
    let loose: Vec<String> = modes(root)?
        .into_iter()
        .filter(|(_, is_dir, mode)| *mode != if *is_dir { 0o700 } else { 0o600 })
        .map(|(path, _, mode)| format!("{} {mode:o}", path.display()))
        .collect();
    ensure!(
        loose.is_empty(),
        "readable or writable by others:\n{}",
        loose.join("\n")
    );
    Ok(())
}

#[test]
fn config_generate_under_umask_000_writes_private_folders_and_files_and_keeps_root_keys_apart()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("layout");
    let (host, base) = free_addresses(6)?;
    let generated = Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(xchg_binary())
        .args(["config", "generate", "--layout", "two-exchanges"])
        .args(["--nodes-per-zone", "3", "--host", &host.to_string()])
        .args(["--base-port", &base.to_string(), "--out"])
        .arg(&out)
        .output()?;
    let stdout = String::from_utf8_lossy(&generated.stdout);
    let stderr = String::from_utf8_lossy(&generated.stderr);
    ensure!(generated.status.success(), "{stdout}{stderr}");
    all_private(&out)?;

    for exchange in ["xuchang", "zhengzhou"] {
        let root = out.join(format!("root/{exchange}-root.key"));
        ensure!(root.is_file(), "no {}", root.display());
        ensure!(
            !out.join(format!("keys/{exchange}-root.key")).exists(),
            "a root key among the node keys"
        );
    }
    ensure!(
        stderr.contains("warning:") && stderr.contains("belong offline"),
        "no warning that the root keys belong offline: {stderr}"
    );
    ensure!(
        stdout.contains(&out.join("root").display().to_string()),
        "where the root keys are: {stdout}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_run_under_umask_000_keeps_its_data_directory_private() -> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 1)?;
    // A snapshot after every entry, so that `snapshot.bin` is written too.
    zone.edit_config(0, |text| {
        text.replace(
            "snapshot_every_entries = 10000",
            "snapshot_every_entries = 1",
        )
        .replace("snapshot_log_percent = 50", "snapshot_log_percent = 0")
    })?;
    let data = zone.data_dir(0)?;
    let data_parent = data.parent().context("data dir parent")?.to_owned();
    ensure!(!data_parent.exists(), "the fixture made no data folder yet");
    zone.start_under_umask(0, "000")?;
    let leader = zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let tokens = zone.tokens().clone();
    for n in 0..3 {
        let (status, body) = zone
            .post(
                leader,
                "/v1/listings",
                &tokens.provider,
                &example_listing(&format!("#{n}")),
            )
            .await?;
        ensure!(status == 201, "{status} {body}");
    }
    eventually(Duration::from_secs(30), "a snapshot on disk", || async {
        Ok(data.join("snapshot.bin").is_file().then_some(()))
    })
    .await?;

    let files: Vec<String> = std::fs::read_dir(&data)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    for expected in [
        "catalog.db",
        "catalog.db-wal",
        "catalog.db-shm",
        "raft-log.db",
        "raft-log.db-wal",
        "snapshot.bin",
        "xchg.lock",
    ] {
        ensure!(
            files.iter().any(|f| f == expected),
            "{expected} not in {files:?}"
        );
    }
    // The folder `data/` the node created for its data directory, and everything in it.
    all_private(&data_parent)?;
    zone.terminate(0, Duration::from_secs(30))?;
    all_private(&data_parent)?;
    Ok(())
}
