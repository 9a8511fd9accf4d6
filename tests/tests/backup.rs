//! Backups (issue #18): a follower backed up online under write load, wiped and restored
//! rejoins its zone with nothing lost; a stopped node's data directory backed up offline
//! restores a whole zone that lost every disk; a damaged backup or a used directory is refused.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use xchg_tests::{Zone, eventually, example_listing, for_party, xchg_binary};

const DEADLINE: Duration = Duration::from_secs(120);

/// Runs `xchg` with `args` and the admin token in the environment; success and output.
async fn xchg(args: &[&str], token: Option<&str>) -> anyhow::Result<(bool, String)> {
    let mut command = tokio::process::Command::new(xchg_binary());
    command
        .args(args)
        .env_remove("XCHG_TOKEN")
        .env_remove("XCHG_TOKEN_FILE")
        .env_remove("XCHG_CA");
    if let Some(t) = token {
        command.env("XCHG_TOKEN", t);
    }
    let out = command.output().await?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// Writers that submit listings to `urls` until stopped, keeping the id of every listing the
/// zone acknowledged (201).
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(urls: &[String], token: &str, listing: &Value, writers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..writers)
            .map(|w| {
                let (stop, acked) = (stop.clone(), acked.clone());
                let url = format!("{}/v1/listings", urls[w % urls.len()]);
                let (token, listing) = (token.to_owned(), listing.clone());
                tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .expect("client");
                    let mut n = 0;
                    while !stop.load(Ordering::Acquire) {
                        n += 1;
                        let mut body = listing.clone();
                        body["title"] = format!("备份测试 {w}-{n}").into();
                        let Ok(resp) = http.post(&url).bearer_auth(&token).json(&body).send().await
                        else {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        };
                        if resp.status().as_u16() == 201
                            && let Ok(v) = resp.json::<Value>().await
                            && let Some(id) = v["id"].as_str()
                        {
                            acked.lock().expect("acked").push(id.to_owned());
                        }
                    }
                })
            })
            .collect();
        Load { stop, acked, tasks }
    }

    fn count(&self) -> usize {
        self.acked.lock().expect("acked").len()
    }

    async fn until(&self, n: usize) -> anyhow::Result<()> {
        eventually(DEADLINE, "acknowledged writes", || async {
            Ok::<_, String>((self.count() >= n).then_some(()))
        })
        .await
    }

    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Release);
        for t in self.tasks {
            let _ = t.await;
        }
        self.acked.lock().expect("acked").clone()
    }
}

/// Waits until node `i` holds every listing of `ids` in its own replica (a restarted node may
/// for a moment take itself for the leader of a past term, so no commit index it reports is
/// trusted: the listings themselves are looked for).
async fn holds_all(zone: &Zone, i: usize, ids: &[String], token: &str) -> anyhow::Result<()> {
    let missing = std::cell::RefCell::new(ids.to_vec());
    eventually(
        DEADLINE,
        "every acknowledged listing on the node",
        || async {
            let mut left = Vec::new();
            let looking: Vec<String> = missing.borrow().clone();
            for id in &looking {
                let (status, body) = zone
                    .get(
                        i,
                        &format!("/v1/listings/{id}?consistency=local"),
                        Some(token),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                match status {
                    200 => {}
                    404 => left.push(id.clone()),
                    other => return Err(format!("listing {id}: {other} {body}")),
                }
            }
            let done = left.is_empty();
            *missing.borrow_mut() = left;
            Ok(done.then_some(()))
        },
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}; still missing on {}: {:?}",
            zone.nodes[i].name,
            missing.borrow()
        )
    })
}

/// `xchg backup --node URL --out OUT` with `token`.
async fn online_backup(url: &str, out: &str, token: &str) -> anyhow::Result<(bool, String)> {
    xchg(&["backup", "--node", url, "--out", out], Some(token)).await
}

/// `xchg restore --from FROM --data-dir DIR`.
async fn restore(from: &str, dir: &Path) -> anyhow::Result<(bool, String)> {
    xchg(
        &[
            "restore",
            "--from",
            from,
            "--data-dir",
            &dir.display().to_string(),
        ],
        None,
    )
    .await
}

fn wipe(dir: &Path) -> anyhow::Result<()> {
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backed_up_under_load_wiped_and_restored_a_node_and_then_a_whole_zone_lose_nothing()
-> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    let leader = zone.wait_for_leader(0, DEADLINE).await?;
    let victim = (leader + 1) % 3;
    let tokens = zone.tokens().clone();
    let listing = for_party(
        example_listing("backup"),
        zone.zone_party("xuchang/municipal"),
    );
    let others: Vec<String> = (0..3)
        .filter(|i| *i != victim)
        .map(|i| zone.nodes[i].api_url.clone())
        .collect();
    let files = tempfile::tempdir()?;
    let online = files.path().join("online.backup");
    let online_text = online.display().to_string();

    // 1. Online, under load: a backup of a follower holds every write acknowledged before it.
    let load = Load::start(&others, &tokens.provider, &listing, 4);
    load.until(20).await?;
    let before: Vec<String> = load.acked.lock().expect("acked").clone();
    let (_, status) = zone.get(leader, "/v1/status", None).await?;
    let committed = status["commit_index"].as_u64().expect("commit index");
    let (ok, out) = online_backup(&zone.nodes[victim].api_url, &online_text, &tokens.admin).await?;
    assert!(ok, "online backup: {out}");
    // Every write acknowledged before it is at or below the commit index read after them.
    let index: u64 = out
        .split("at log index ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no log index in {out:?}"));
    assert!(
        index >= committed,
        "the backup of a follower stops at {index}, before the commit index {committed}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&online)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a backup holds every party's contact");
    }
    // Not for other roles; never over an existing file.
    let other_out = format!("{online_text}.2");
    let (ok, out) =
        online_backup(&zone.nodes[victim].api_url, &other_out, &tokens.operator).await?;
    assert!(!ok && out.contains("403"), "{out}");
    let (ok, out) = online_backup(&zone.nodes[victim].api_url, &online_text, &tokens.admin).await?;
    assert!(!ok && out.contains("exists already"), "{out}");

    // A backup restores into a directory of its own, as the node's stored snapshot.
    let check_dir = files.path().join("check");
    let (ok, out) = restore(&online_text, &check_dir).await?;
    assert!(ok, "{out}");
    assert!(check_dir.join("snapshot.bin").is_file());

    // 2. The follower loses its disk while writes go on, and is restored from the backup.
    load.until(before.len() + 20).await?;
    let term = |status: &Value| status["term"].as_u64().unwrap_or(0);
    let (_, status) = zone.get(leader, "/v1/status", None).await?;
    let term_before = term(&status);
    zone.kill(victim);
    let victim_dir = zone.data_dir(victim)?;
    wipe(&victim_dir)?;
    let (ok, out) = restore(&online_text, &victim_dir).await?;
    assert!(ok, "{out}");
    assert!(out.contains("restored"), "{out}");
    let (ok, out) = restore(&online_text, &victim_dir).await?;
    assert!(
        !ok && out.contains("is not empty"),
        "a second restore over it: {out}"
    );
    let now = load.count();
    zone.start(victim)?;
    load.until(now + 20).await?;
    let acked = load.stop().await;
    assert!(acked.len() > before.len() + 40, "{} writes", acked.len());
    holds_all(&zone, victim, &acked, &tokens.regulator).await?;
    // The restored member followed the leader it found: no election on its account.
    let (_, status) = zone.get(leader, "/v1/status", None).await?;
    assert_eq!(
        (term(&status), status["role"].as_str()),
        (term_before, Some("leader")),
        "the leader stepped down when the restored member came back: {status}"
    );
    let log = zone.log_of(victim);
    assert!(
        log.contains("the catalog is behind the stored snapshot; restoring it"),
        "{log}"
    );
    assert!(
        log.contains("this member was restored from a backup: it votes in no election"),
        "the restored member did not guard its lost votes: {log}"
    );
    // It looks every half second: wait for it to see that it has caught up.
    eventually(DEADLINE, "the restored member to vote again", || async {
        let log = zone.log_of(victim);
        Ok::<_, String>(
            (log.contains("this restored member votes again")
                && log.contains("caught up with its zone's leader"))
            .then_some(()),
        )
    })
    .await?;
    assert!(
        !zone.data_dir(victim)?.join("restored-from-backup").exists(),
        "the restore marker stays once the member has caught up"
    );
    // Writes go on through the restored member.
    let (status, body) = zone
        .post(victim, "/v1/listings", &tokens.provider, &listing)
        .await?;
    assert_eq!(status, 201, "{body}");

    // 3. Offline: a running node's directory is refused; a stopped one's is backed up.
    let spare = (victim + 1) % 3;
    let spare_dir = zone.data_dir(spare)?.display().to_string();
    let offline = files.path().join("offline.backup").display().to_string();
    let (ok, out) = xchg(
        &["backup", "--data-dir", &spare_dir, "--out", &offline],
        None,
    )
    .await?;
    assert!(!ok && out.contains("stop the node first"), "{out}");
    let mut all = acked.clone();
    all.push(body["id"].as_str().unwrap_or_default().to_owned());
    // A leader change first, so that the backup's last entry is of a later term than the one
    // a new zone starts in (a zone restored from it must elect in a term above it).
    let old_leader = zone.wait_for_leader(spare, DEADLINE).await?;
    zone.kill(old_leader);
    let survivor = (old_leader + 1) % 3;
    let new_leader = eventually(DEADLINE, "a new leader", || async {
        let leader = zone
            .wait_for_leader(survivor, DEADLINE)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((leader != old_leader).then_some(leader))
    })
    .await?;
    zone.start(old_leader)?;
    let (status, body) = zone
        .post(new_leader, "/v1/listings", &tokens.provider, &listing)
        .await?;
    assert_eq!(status, 201, "{body}");
    all.push(body["id"].as_str().unwrap_or_default().to_owned());
    // Every member has the last write before the zone goes down.
    for i in 0..3 {
        holds_all(&zone, i, &all, &tokens.regulator).await?;
    }
    for i in 0..3 {
        zone.terminate(i, Duration::from_secs(30))?;
    }
    let (ok, out) = xchg(
        &["backup", "--data-dir", &spare_dir, "--out", &offline],
        None,
    )
    .await?;
    assert!(ok, "offline backup: {out}");
    let term: u64 = out
        .split("(term ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no term in {out:?}"));
    assert!(term >= 2, "the backup's last entry is of term {term}");

    // 4. A damaged backup is refused and leaves nothing behind.
    let mut damaged = std::fs::read(&offline)?;
    let last = damaged.len() - 1;
    damaged[last] ^= 0x40;
    let damaged_file = files.path().join("damaged.backup");
    std::fs::write(&damaged_file, &damaged)?;
    let damaged_dir = files.path().join("damaged-dir");
    let (ok, out) = restore(&damaged_file.display().to_string(), &damaged_dir).await?;
    assert!(!ok && out.contains("not a usable backup"), "{out}");
    assert!(!damaged_dir.join("snapshot.bin").exists());

    // 5. Every member loses its disk; all three are restored from the offline backup, elect a
    // leader, hold every acknowledged write, and take new ones.
    let dirs: Vec<PathBuf> = (0..3).map(|i| zone.data_dir(i)).collect::<Result<_, _>>()?;
    for dir in &dirs {
        wipe(dir)?;
        let (ok, out) = restore(&offline, dir).await?;
        assert!(ok, "{out}");
    }
    zone.start_all()?;
    let leader = zone.wait_for_leader(0, DEADLINE).await?;
    holds_all(&zone, leader, &all, &tokens.regulator).await?;
    // Each voted again because it found the others restored too (or, if it looked only after
    // the leader was elected, because it caught up with it).
    for i in 0..3 {
        eventually(DEADLINE, "every restored member to vote again", || async {
            let log = zone.log_of(i);
            Ok::<_, String>(
                (log.contains("every other member of the zone was restored from a backup too")
                    || log.matches("this restored member votes again").count() >= 2)
                    .then_some(()),
            )
        })
        .await?;
    }
    let (status, body) = zone
        .post(leader, "/v1/listings", &tokens.provider, &listing)
        .await?;
    assert_eq!(status, 201, "{body}");
    Ok(())
}

/// A backup of one zone restored for a node of another (two exchanges whose zones are laid out
/// alike) would have that zone's leader extend a log it never wrote: `xchg restore --config`
/// refuses it before writing anything, and a node started on such a directory refuses to run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_another_zone_is_refused_by_restore_and_by_the_node() -> anyhow::Result<()> {
    let mut zone = Zone::generate("two-exchanges", 1)?;
    zone.start_all()?;
    zone.wait_for_leader(0, DEADLINE).await?;
    let tokens = zone.tokens().clone();
    zone.approve_new(0, &tokens, &example_listing("外区备份"))
        .await?;
    for i in 0..2 {
        zone.terminate(i, Duration::from_secs(30))?;
    }
    let files = tempfile::tempdir()?;
    let xuchang = files.path().join("xuchang.backup").display().to_string();
    let (ok, out) = xchg(
        &[
            "backup",
            "--data-dir",
            &zone.data_dir(0)?.display().to_string(),
            "--out",
            &xuchang,
        ],
        None,
    )
    .await?;
    assert!(ok, "{out}");

    // Checked against the Zhengzhou node's config: refused, nothing written.
    let target = files.path().join("zhengzhou-data");
    let dir = target.display().to_string();
    let restore_for = |node: usize| {
        let config = zone.nodes[node].config.display().to_string();
        let (from, dir) = (xuchang.clone(), dir.clone());
        async move {
            let args = [
                "restore",
                "--from",
                &from,
                "--data-dir",
                &dir,
                "--config",
                &config,
            ];
            xchg(&args, None).await
        }
    };
    let (ok, out) = restore_for(1).await?;
    assert!(
        !ok && out.contains("the backup is not of this node's zone"),
        "{out}"
    );
    assert!(!target.exists(), "nothing written");
    // The same file for the Xuchang node's own config is fine.
    let (ok, out) = restore_for(0).await?;
    assert!(ok, "{out}");

    // Restored without the check into the Zhengzhou node's directory: the node will not run.
    let zhengzhou_dir = zone.data_dir(1)?;
    wipe(&zhengzhou_dir)?;
    let (ok, out) = restore(&xuchang, &zhengzhou_dir).await?;
    assert!(ok, "{out}");
    zone.start(1)?;
    let status = zone.wait_for_exit(1, DEADLINE)?;
    let log = zone.log_of(1);
    assert!(
        !status.success() && log.contains("does not fit this node"),
        "{status}\n{log}"
    );
    Ok(())
}

/// Found by an attacker's review: a member restored from a backup whose position lay beyond its
/// zone's log took itself for caught up at once, voted again, and could then be elected and
/// overwrite writes the zone had acknowledged. Here the backup is genuine: taken before the
/// whole zone was restored from an older one. The member is taken out of its zone, says why,
/// and the zone goes on without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restored_from_a_backup_ahead_of_its_zone_is_kept_out() -> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    let tokens = zone.tokens().clone();
    let listing = for_party(
        example_listing("ahead"),
        zone.zone_party("xuchang/municipal"),
    );
    let files = tempfile::tempdir()?;
    let offline = |name: &str| files.path().join(name).display().to_string();
    // `writes` listings, then the zone stopped and its first node backed up offline to `out`.
    let write_then_back_up = async |zone: &mut Zone, writes: usize, out: String| {
        let leader = zone.wait_for_leader(0, DEADLINE).await?;
        for _ in 0..writes {
            let (status, body) = zone
                .post(leader, "/v1/listings", &tokens.provider, &listing)
                .await?;
            anyhow::ensure!(status == 201, "{body}");
        }
        for i in 0..3 {
            zone.terminate(i, Duration::from_secs(30))?;
        }
        let dir = zone.data_dir(0)?.display().to_string();
        let (ok, said) = xchg(&["backup", "--data-dir", &dir, "--out", &out], None).await?;
        anyhow::ensure!(ok, "offline backup: {said}");
        Ok::<_, anyhow::Error>(said)
    };
    let older = write_then_back_up(&mut zone, 1, offline("older.backup")).await?;
    // More writes, then the newer backup.
    zone.start_all()?;
    let newer = write_then_back_up(&mut zone, 8, offline("newer.backup")).await?;
    assert_ne!(older, newer);

    // The whole zone is restored from the older backup and takes writes again.
    for i in 0..3 {
        let dir = zone.data_dir(i)?;
        wipe(&dir)?;
        let (ok, out) = restore(&offline("older.backup"), &dir).await?;
        assert!(ok, "{out}");
    }
    zone.start_all()?;
    let leader = zone.wait_for_leader(0, DEADLINE).await?;
    let (status, body) = zone
        .post(leader, "/v1/listings", &tokens.provider, &listing)
        .await?;
    assert_eq!(status, 201, "{body}");

    // A follower is restored from the newer backup, which the zone's log no longer reaches.
    let victim = (leader + 1) % 3;
    zone.terminate(victim, Duration::from_secs(30))?;
    let dir = zone.data_dir(victim)?;
    wipe(&dir)?;
    let (ok, out) = restore(&offline("newer.backup"), &dir).await?;
    assert!(ok, "{out}");
    zone.start(victim)?;
    eventually(DEADLINE, "the restored member to be taken out", || async {
        let (_, status) = zone
            .get(victim, "/v1/status", None)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((status["role"] == "removed").then_some(status))
    })
    .await
    .map(|status| {
        let why = status["removed"].as_str().unwrap_or_default().to_owned();
        assert!(
            why.contains("restored from a backup")
                && why.contains("not of the zone's history as it stands"),
            "{why}"
        );
    })?;
    // Its Raft did not stop (openraft panicked at the leader's first AppendEntries before).
    let log = zone.log_of(victim);
    let since_restart = &log[log
        .rfind("this member was restored from a backup: it votes")
        .unwrap_or(0)..];
    assert!(
        !since_restart.contains("this restored member votes again"),
        "{log}"
    );
    assert!(!since_restart.contains("panicked"), "{log}");
    // The other two go on.
    let (status, body) = zone
        .post(leader, "/v1/listings", &tokens.provider, &listing)
        .await?;
    assert_eq!(status, 201, "{body}");
    Ok(())
}
