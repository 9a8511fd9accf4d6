//! A 3-node zone of real `xchg` processes survives the loss of its leader mid-load: every
//! acknowledged listing survives, the killed node catches up, and all three end identical. A
//! member whose Raft stops on a storage error exits, for its supervisor to restart it, rather
//! than linger answering `503`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;
use xchg_tests::{Zone, eventually, example_listing, refuse_listings};

const LISTINGS: usize = 1000;
const CLIENTS: usize = 16;

/// Every listing id and state on node `i`, read from its own replica page by page.
async fn catalog(zone: &Zone, i: usize, token: &str) -> anyhow::Result<BTreeSet<(String, String)>> {
    let mut out = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/listings?limit=100&consistency=local".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = zone.get(i, &path, Some(token)).await?;
        anyhow::ensure!(status == 200, "search on node {i}: {status} {page}");
        for item in page["items"].as_array().into_iter().flatten() {
            out.insert((
                item["id"].as_str().unwrap_or_default().to_owned(),
                item["state"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(out),
        }
    }
}

/// The whole audit chain of node `i`.
async fn audit_chain(zone: &Zone, i: usize, token: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    loop {
        let path = format!(
            "/v1/audit?from={}&limit=1000&consistency=local",
            out.len() + 1
        );
        let (status, page) = zone.get(i, &path, Some(token)).await?;
        anyhow::ensure!(status == 200, "audit on node {i}: {status} {page}");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return Ok(out);
        }
        out.extend(items);
    }
}

async fn applied_index(zone: &Zone, i: usize) -> Result<u64, String> {
    let (_, s) = zone
        .get(i, "/v1/status", None)
        .await
        .map_err(|e| e.to_string())?;
    s["applied_index"]
        .as_u64()
        .ok_or_else(|| format!("no applied_index in {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_kill_loses_no_acknowledged_listing() -> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    let leader = zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let tokens = zone.tokens().clone();
    let zone = Arc::new(Mutex::new(zone));

    // Submitters spread requests over every node; a request that fails is retried on the next
    // node with a new title (so it is a new listing): only acknowledged ids are promised.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let killed = Arc::new(tokio::sync::Notify::new());
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (zone, acknowledged, next, killed, provider) = (
            zone.clone(),
            acknowledged.clone(),
            next.clone(),
            killed.clone(),
            tokens.provider.clone(),
        );
        clients.spawn(async move {
            let mut attempt = 0usize;
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= LISTINGS {
                    return Ok::<(), anyhow::Error>(());
                }
                loop {
                    attempt += 1;
                    let target = (n + attempt + c) % 3;
                    let result = {
                        let z = zone.lock().await;
                        if !z.is_running(target) {
                            continue;
                        }
                        // Hold the lock only to build the request, not while it runs.
                        let url = format!("{}/v1/listings", z.nodes[target].api_url);
                        drop(z);
                        reqwest::Client::new()
                            .post(url)
                            .bearer_auth(&provider)
                            .json(&example_listing(&format!("#{n}-{attempt}")))
                            .timeout(Duration::from_secs(20))
                            .send()
                            .await
                    };
                    if let Ok(resp) = result
                        && resp.status().as_u16() == 201
                    {
                        let body: Value = resp.json().await?;
                        let mut acks = acknowledged.lock().await;
                        acks.push(body["id"].as_str().unwrap_or_default().to_owned());
                        if acks.len() == LISTINGS / 2 {
                            killed.notify_one();
                        }
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
    }
    let load = async {
        killed.notified().await;
        zone.lock().await.kill(leader);
        while let Some(r) = clients.join_next().await {
            r??;
        }
        Ok::<(), anyhow::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(300), load)
        .await
        .map_err(|_| anyhow::anyhow!("the load did not finish within 300 s"))??;
    let acknowledged: BTreeSet<String> = acknowledged.lock().await.iter().cloned().collect();
    assert_eq!(
        acknowledged.len(),
        LISTINGS,
        "every submission was eventually acknowledged"
    );

    let mut zone = Arc::try_unwrap(zone)
        .map_err(|_| anyhow::anyhow!("zone still shared"))?
        .into_inner();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let new_leader = zone
        .wait_for_leader(survivors[0], Duration::from_secs(30))
        .await?;
    assert_ne!(new_leader, leader, "a surviving node leads");
    for &i in &survivors {
        let ids: BTreeSet<String> = catalog(&zone, i, &tokens.regulator)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let missing: Vec<&String> = acknowledged.difference(&ids).collect();
        assert!(
            missing.is_empty(),
            "node {i} lacks {} acknowledged listings, e.g. {:?}",
            missing.len(),
            missing.first()
        );
    }

    zone.start(leader)?;
    let target = eventually(
        Duration::from_secs(60),
        "the restarted node to catch up",
        || async {
            let a = applied_index(&zone, survivors[0]).await?;
            let b = applied_index(&zone, leader).await?;
            Ok((b >= a && a > 0).then_some(a))
        },
    )
    .await?;
    for &i in &survivors {
        eventually(
            Duration::from_secs(30),
            "every node at the same index",
            || async { Ok((applied_index(&zone, i).await? >= target).then_some(())) },
        )
        .await?;
    }

    let catalogs = [
        catalog(&zone, 0, &tokens.regulator).await?,
        catalog(&zone, 1, &tokens.regulator).await?,
        catalog(&zone, 2, &tokens.regulator).await?,
    ];
    assert_eq!(
        catalogs[0], catalogs[1],
        "nodes 0 and 1 hold identical catalogs"
    );
    assert_eq!(
        catalogs[0], catalogs[2],
        "nodes 0 and 2 hold identical catalogs"
    );
    let chains = [
        audit_chain(&zone, 0, &tokens.regulator).await?,
        audit_chain(&zone, 1, &tokens.regulator).await?,
        audit_chain(&zone, 2, &tokens.regulator).await?,
    ];
    assert!(
        chains[0].len() >= LISTINGS,
        "the audit chain records every submission"
    );
    assert_eq!(
        chains[0], chains[1],
        "nodes 0 and 1 hold byte-identical audit chains"
    );
    assert_eq!(
        chains[0], chains[2],
        "nodes 0 and 2 hold byte-identical audit chains"
    );
    for pair in chains[0].windows(2) {
        assert_eq!(
            pair[1]["prev_hash"], pair[0]["hash"],
            "the chain links record {} to its predecessor",
            pair[1]["seq"]
        );
    }
    for i in 0..3 {
        let status = zone.terminate(i, Duration::from_secs(20))?;
        assert!(
            status.success(),
            "node {i} exits cleanly on SIGTERM: {status}\n{}",
            zone.log_of(i)
        );
    }
    Ok(())
}

/// A follower whose catalog refuses a write (here a trigger put into its file from outside,
/// standing for a damaged file or a full disk) cannot apply the zone's log: openraft stops its
/// Raft. Before, the process lived on and answered every write `503 unavailable` ("Raft cannot
/// take writes") for ever, a member in name only that no supervisor would restart; now it says
/// why and exits with a failure, and the other two go on taking writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_whose_raft_stops_on_a_storage_error_exits_with_the_reason() -> anyhow::Result<()>
{
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    let leader = zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let broken = (leader + 1) % 3;
    let provider = zone.tokens().provider.clone();
    let (code, body) = zone
        .post(
            leader,
            "/v1/listings",
            &provider,
            &example_listing("before"),
        )
        .await?;
    anyhow::ensure!(code == 201, "{code} {body}");

    refuse_listings(&zone.data_dir(broken)?.join("catalog.db"))?;

    let (code, body) = zone
        .post(leader, "/v1/listings", &provider, &example_listing("after"))
        .await?;
    anyhow::ensure!(code == 201, "the zone refused a write: {code} {body}");
    let status = zone.wait_for_exit(broken, Duration::from_secs(60))?;
    let log = zone.log_of(broken);
    anyhow::ensure!(
        !status.success(),
        "the member exited with {status}; its log:\n{log}"
    );
    anyhow::ensure!(
        log.contains("Raft stopped on an error") && log.contains("injected fault"),
        "the member's log does not say why it stopped:\n{log}"
    );
    let (code, body) = zone
        .post(leader, "/v1/listings", &provider, &example_listing("later"))
        .await?;
    anyhow::ensure!(code == 201, "the two left refused a write: {code} {body}");
    Ok(())
}
