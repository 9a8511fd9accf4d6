//! Faults injected through the in-process zone transport: a partitioned follower falls behind
//! while the leader purges its log, then catches up from a snapshot once healed; writes commit
//! through delayed, lossy and one-way cut links; a leader cut off from its majority answers
//! `outcome_unknown` instead of holding writes forever; a token created a moment ago works on a
//! follower that has not applied it yet, and so does a broker's new entrustment.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use xchg_federation_config::layout::{self, LayoutKind, LayoutOptions};
use xchg_node::gossip::memory::Network;
use xchg_node::node::{NodeHandle, StartOptions};
use xchg_node::raft::router::Router;
use xchg_protocol::Timestamp;
use xchg_tests::{eventually, example_listing, start_in_process};

struct InProcessZone {
    _dir: tempfile::TempDir,
    nodes: Vec<NodeHandle>,
    router: Arc<Router>,
    provider: String,
    regulator: String,
    admin: String,
    operator: String,
}

async fn start_zone(
    snapshot_every: u64,
    snapshot_log_percent: u64,
    keep: u64,
) -> anyhow::Result<InProcessZone> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("layout");
    let mut opts = LayoutOptions::new(out.clone(), LayoutKind::SingleZone);
    // The generated addresses are never bound here: the API listens on port 0 and Raft goes
    // through the router.
    opts.base_port = 40_000;
    let generated = layout::generate(&opts, Timestamp::now())?;
    let zone = &generated.exchanges[0].zones[0];
    let router = Router::new(7);
    let gossip = Network::new(7);
    let mut nodes = Vec::new();
    for n in &zone.nodes {
        let node = start_in_process(
            &out,
            &n.config,
            &router,
            &gossip,
            StartOptions::default(),
            |c| {
                c.raft.snapshot_every_entries = snapshot_every;
                c.raft.snapshot_log_percent = snapshot_log_percent;
                c.raft.keep_log_entries = keep;
            },
        )
        .await?;
        nodes.push(node);
    }
    Ok(InProcessZone {
        _dir: dir,
        nodes,
        router,
        provider: zone.tokens.provider.clone(),
        regulator: zone.tokens.regulator.clone(),
        admin: zone.tokens.admin.clone(),
        operator: zone.tokens.operator.clone(),
    })
}

fn leader_of(zone: &InProcessZone) -> Option<usize> {
    let id = zone.nodes[0].raft.metrics().borrow().current_leader?;
    zone.nodes
        .iter()
        .position(|n| n.id == id && n.raft.metrics().borrow().current_leader == Some(n.id))
}

async fn listing_ids(zone: &InProcessZone, i: usize) -> anyhow::Result<Vec<String>> {
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let url = format!(
            "http://{}/v1/listings?limit=100&consistency=local{cursor}",
            zone.nodes[i].api_addr
        );
        let page: Value = http
            .get(url)
            .bearer_auth(&zone.regulator)
            .send()
            .await?
            .json()
            .await?;
        ids.extend(
            page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v["id"].as_str().map(str::to_owned)),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return Ok(ids),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_follower_catches_up_from_a_snapshot_after_the_log_is_purged()
-> anyhow::Result<()> {
    // The node's own snapshot policy, at a low share so that 150 listings cross it: at least
    // 40 entries, and a log of a tenth of the catalog.
    let zone = start_zone(40, 10, 5).await?;
    let leader = eventually(Duration::from_secs(30), "a leader", || async {
        Ok(leader_of(&zone))
    })
    .await?;
    let follower = (leader + 1) % 3;
    zone.router.isolate(zone.nodes[follower].id);
    let behind = zone.nodes[follower]
        .raft
        .metrics()
        .borrow()
        .last_log_index
        .unwrap_or(0);

    let http = reqwest::Client::new();
    for n in 0..150 {
        let resp = http
            .post(format!(
                "http://{}/v1/listings",
                zone.nodes[leader].api_addr
            ))
            .bearer_auth(&zone.provider)
            .json(&example_listing(&format!("partition-{n}")))
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().as_u16() == 201,
            "submission {n}: {}",
            resp.status()
        );
    }
    let purged = eventually(
        Duration::from_secs(30),
        "the leader to purge past the follower's log",
        || async {
            let m = zone.nodes[leader].raft.metrics().borrow().clone();
            Ok(m.purged.filter(|p| p.index > behind).map(|p| p.index))
        },
    )
    .await?;
    assert!(
        purged > behind,
        "the follower's next entry {} is gone from the leader's log",
        behind + 1
    );

    zone.router.heal(zone.nodes[follower].id);
    let leader_applied = zone.nodes[leader]
        .raft
        .metrics()
        .borrow()
        .last_applied
        .map_or(0, |l| l.index);
    eventually(
        Duration::from_secs(60),
        "the healed follower to catch up",
        || async {
            let m = zone.nodes[follower].raft.metrics().borrow().clone();
            Ok((m.last_applied.map_or(0, |l| l.index) >= leader_applied).then_some(()))
        },
    )
    .await?;
    let snapshot = zone.nodes[follower].raft.metrics().borrow().snapshot;
    assert!(
        snapshot.is_some_and(|s| s.index > behind),
        "the follower installed a snapshot: {snapshot:?}"
    );

    let mut expected = listing_ids(&zone, leader).await?;
    let mut got = listing_ids(&zone, follower).await?;
    expected.sort();
    got.sort();
    assert_eq!(expected.len(), 150);
    assert_eq!(got, expected, "the follower's catalog equals the leader's");
    for n in zone.nodes {
        n.shutdown().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_commit_through_delayed_lossy_and_one_way_cut_links_and_replicas_converge()
-> anyhow::Result<()> {
    let zone = start_zone(10_000, 0, 1_000).await?;
    let leader = eventually(Duration::from_secs(30), "a leader", || async {
        Ok(leader_of(&zone))
    })
    .await?;
    let follower = (leader + 1) % 3;
    // Every message 5 ms late, one in ten lost, and the leader cannot reach one follower
    // (which can still answer): a majority remains, so writes must still commit.
    zone.router.set_delay(Duration::from_millis(5));
    zone.router.set_loss_per_million(100_000);
    zone.router
        .cut(zone.nodes[leader].id, zone.nodes[follower].id);
    let http = reqwest::Client::new();
    for n in 0..30 {
        let resp = http
            .post(format!(
                "http://{}/v1/listings",
                zone.nodes[leader].api_addr
            ))
            .bearer_auth(&zone.provider)
            .json(&example_listing(&format!("lossy-{n}")))
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().as_u16() == 201,
            "submission {n}: {}",
            resp.status()
        );
    }
    zone.router.heal_all();
    let target = zone.nodes[leader]
        .raft
        .metrics()
        .borrow()
        .last_applied
        .map_or(0, |l| l.index);
    for i in 0..3 {
        eventually(
            Duration::from_secs(30),
            "every replica to apply the writes",
            || async {
                let m = zone.nodes[i].raft.metrics().borrow().clone();
                Ok((m.last_applied.map_or(0, |l| l.index) >= target).then_some(()))
            },
        )
        .await?;
    }
    let mut expected = listing_ids(&zone, leader).await?;
    expected.sort();
    assert_eq!(expected.len(), 30);
    for i in 0..3 {
        let mut got = listing_ids(&zone, i).await?;
        got.sort();
        assert_eq!(got, expected, "node {i} holds the same catalog");
    }
    for n in zone.nodes {
        n.shutdown().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_off_from_its_majority_answers_outcome_unknown_instead_of_hanging()
-> anyhow::Result<()> {
    let zone = start_zone(10_000, 0, 1_000).await?;
    let leader = eventually(Duration::from_secs(30), "a leader", || async {
        Ok(leader_of(&zone))
    })
    .await?;
    zone.router.isolate(zone.nodes[leader].id);
    // Two writes to the cut-off leader: neither can commit. Each must get an answer (the
    // second waits behind the first's batch), well before the client gives up.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("http://{}/v1/listings", zone.nodes[leader].api_addr);
    let send = |n: usize| {
        http.post(url.clone())
            .bearer_auth(&zone.provider)
            .json(&example_listing(&format!("cut-off-{n}")))
            .send()
    };
    let (first, second) = tokio::join!(send(1), send(2));
    for resp in [first?, second?] {
        assert_eq!(resp.status().as_u16(), 504);
        let body: Value = resp.json().await?;
        assert_eq!(body["error"]["code"], "outcome_unknown", "{body}");
    }
    zone.router.heal_all();
    for n in zone.nodes {
        n.shutdown().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_token_works_at_once_on_a_follower_that_has_not_applied_it_yet() -> anyhow::Result<()>
{
    let zone = start_zone(10_000, 50, 1_000).await?;
    let leader = eventually(Duration::from_secs(30), "a leader", || async {
        Ok(leader_of(&zone))
    })
    .await?;
    let follower = (leader + 1) % 3;
    // The follower hears nothing from the zone until resumed: the token reaches only the
    // leader and the other follower.
    zone.router.faults().pause(&zone.nodes[follower].id);
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("http://{}/v1/tokens", zone.nodes[leader].api_addr))
        .bearer_auth(&zone.admin)
        .json(&serde_json::json!({"role": "regulator", "label": "new auditor"}))
        .send()
        .await?
        .json()
        .await?;
    let token = created["token"].as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(!token.is_empty(), "no token in {created}");

    let read = http
        .get(format!(
            "http://{}/v1/listings?consistency=local",
            zone.nodes[follower].api_addr
        ))
        .bearer_auth(&token)
        .send();
    tokio::pin!(read);
    // Before the follower can learn of the token it must not refuse it; it asks the leader
    // what it has missed, and answers once resumed and caught up.
    let early = tokio::select! {
        answer = &mut read => Some(answer?.status().as_u16()),
        () = tokio::time::sleep(Duration::from_millis(500)) => None,
    };
    assert_eq!(early, None, "answered while it could not know the token");
    zone.router.faults().resume(&zone.nodes[follower].id);
    let status = read.await?.status().as_u16();
    assert_eq!(
        status, 200,
        "the new token is known once the follower caught up"
    );

    // An unknown token is still refused, after the same check.
    let unknown = http
        .get(format!(
            "http://{}/v1/listings",
            zone.nodes[follower].api_addr
        ))
        .bearer_auth("xchg-regulator-never-issued")
        .send()
        .await?;
    assert_eq!(unknown.status().as_u16(), 401);
    for n in zone.nodes {
        n.shutdown().await;
    }
    Ok(())
}

/// POSTs `body` to node `i` with `token`; the status and answer.
async fn post(
    zone: &InProcessZone,
    i: usize,
    path: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let resp = reqwest::Client::new()
        .post(format!("http://{}{path}", zone.nodes[i].api_addr))
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_acts_at_once_on_a_follower_that_has_not_applied_its_new_entrustment()
-> anyhow::Result<()> {
    let zone = start_zone(10_000, 50, 1_000).await?;
    let leader = eventually(Duration::from_secs(30), "a leader", || async {
        Ok(leader_of(&zone))
    })
    .await?;
    let follower = (leader + 1) % 3;
    let broker_party = "henan-data-broker";
    let application = xchg_tests::party_application(broker_party, &["data_broker"]);
    let (s, v) = post(&zone, leader, "/v1/parties", &zone.operator, &application).await?;
    anyhow::ensure!(s == 201, "apply: {s} {v}");
    let admit = format!("/v1/parties/{broker_party}/admit");
    let (s, v) = post(
        &zone,
        leader,
        &admit,
        &zone.operator,
        &serde_json::json!({}),
    )
    .await?;
    anyhow::ensure!(s == 200, "admit: {s} {v}");
    let body = serde_json::json!({"role": "provider", "party": broker_party, "label": "broker"});
    let (s, v) = post(&zone, leader, "/v1/tokens", &zone.admin, &body).await?;
    anyhow::ensure!(s == 201, "token: {s} {v}");
    let broker = v["token"].as_str().unwrap_or_default().to_owned();
    // Everything so far is on the follower too; the entrustment will not be.
    eventually(
        Duration::from_secs(30),
        "the follower to catch up",
        || async {
            let m = |i: usize| zone.nodes[i].raft.metrics().borrow().last_applied;
            Ok((m(follower) == m(leader)).then_some(()))
        },
    )
    .await?;
    zone.router.faults().pause(&zone.nodes[follower].id);
    let grant = serde_json::json!({
        "broker": broker_party,
        "scope": ["submit_listing"],
        "expires_at": Timestamp::now().plus_millis(86_400_000),
    });
    let (s, v) = post(&zone, leader, "/v1/entrustments", &zone.provider, &grant).await?;
    anyhow::ensure!(s == 201, "grant: {s} {v}");

    let listing = example_listing("through a broker");
    let (status, answer) = {
        let submit = post(&zone, follower, "/v1/listings", &broker, &listing);
        tokio::pin!(submit);
        let early = tokio::select! {
            answer = &mut submit => Some(answer?),
            () = tokio::time::sleep(Duration::from_millis(500)) => None,
        };
        assert_eq!(
            early, None,
            "answered while it could not know the entrustment"
        );
        zone.router.faults().resume(&zone.nodes[follower].id);
        submit.await?
    };
    assert_eq!(
        status, 201,
        "under the entrustment, once caught up: {answer}"
    );
    for n in zone.nodes {
        n.shutdown().await;
    }
    Ok(())
}
