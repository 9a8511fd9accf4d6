//! Faults injected through the in-process zone transport: a partitioned follower falls behind
//! while the leader purges its log, then catches up from a snapshot once healed; writes commit
//! through delayed, lossy and one-way cut links; a leader cut off from its majority answers
//! `outcome_unknown` instead of holding writes forever; a token created a moment ago works on a
//! follower that has not applied it yet, and so does a broker's new entrustment.

use std::time::Duration;

use serde_json::{Value, json};
use xchg_federation_config::layout::LayoutKind;
use xchg_node::node::StartOptions;
use xchg_protocol::Timestamp;
use xchg_tests::in_process::Federation;
use xchg_tests::{eventually, example_listing};

/// A single zone of three nodes in this process with the given snapshot policy; its nodes are
/// `zones[0]`, its Raft router `routers[0]`.
async fn start_zone(
    snapshot_every: u64,
    snapshot_log_percent: u64,
    keep: u64,
) -> anyhow::Result<Federation> {
    Federation::start_with(
        LayoutKind::SingleZone,
        3,
        StartOptions::default(),
        |_, c| {
            c.raft.snapshot_every_entries = snapshot_every;
            c.raft.snapshot_log_percent = snapshot_log_percent;
            c.raft.keep_log_entries = keep;
        },
    )
    .await
}

fn leader_of(zone: &Federation) -> Option<usize> {
    let nodes = &zone.zones[0];
    let id = nodes[0].raft.metrics().borrow().current_leader?;
    nodes
        .iter()
        .position(|n| n.id == id && n.raft.metrics().borrow().current_leader == Some(n.id))
}

async fn listing_ids(zone: &Federation, i: usize) -> anyhow::Result<Vec<String>> {
    let regulator = &zone.zone_tokens(0).regulator;
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/listings?limit=100&consistency=local{cursor}");
        let (status, page) = zone.get(0, i, &path, regulator).await?;
        anyhow::ensure!(status == 200, "listings of node {i}: {status} {page}");
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

/// Submits a listing titled with `suffix` through node `i` with the zone's provider token; it
/// must be created.
async fn submit(zone: &Federation, i: usize, suffix: &str) -> anyhow::Result<()> {
    let provider = &zone.zone_tokens(0).provider;
    let body = example_listing(suffix);
    let (status, answer) = zone.post(0, i, "/v1/listings", provider, &body).await?;
    anyhow::ensure!(status == 201, "submission {suffix}: {status} {answer}");
    Ok(())
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
    zone.routers[0].isolate(zone.zones[0][follower].id);
    let behind = zone.zones[0][follower]
        .raft
        .metrics()
        .borrow()
        .last_log_index
        .unwrap_or(0);

    for n in 0..150 {
        submit(&zone, leader, &format!("partition-{n}")).await?;
    }
    let purged = eventually(
        Duration::from_secs(30),
        "the leader to purge past the follower's log",
        || async {
            let m = zone.zones[0][leader].raft.metrics().borrow().clone();
            Ok(m.purged.filter(|p| p.index > behind).map(|p| p.index))
        },
    )
    .await?;
    assert!(
        purged > behind,
        "the follower's next entry {} is gone from the leader's log",
        behind + 1
    );

    zone.routers[0].heal(zone.zones[0][follower].id);
    let leader_applied = zone.zones[0][leader]
        .raft
        .metrics()
        .borrow()
        .last_applied
        .map_or(0, |l| l.index);
    eventually(
        Duration::from_secs(60),
        "the healed follower to catch up",
        || async {
            let m = zone.zones[0][follower].raft.metrics().borrow().clone();
            Ok((m.last_applied.map_or(0, |l| l.index) >= leader_applied).then_some(()))
        },
    )
    .await?;
    let snapshot = zone.zones[0][follower].raft.metrics().borrow().snapshot;
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
    zone.shutdown().await;
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
    zone.routers[0].set_delay(Duration::from_millis(5));
    zone.routers[0].set_loss_per_million(100_000);
    zone.routers[0].cut(zone.zones[0][leader].id, zone.zones[0][follower].id);
    for n in 0..30 {
        submit(&zone, leader, &format!("lossy-{n}")).await?;
    }
    zone.routers[0].heal_all();
    let target = zone.zones[0][leader]
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
                let m = zone.zones[0][i].raft.metrics().borrow().clone();
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
    zone.shutdown().await;
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
    zone.routers[0].isolate(zone.zones[0][leader].id);
    // Two writes to the cut-off leader: neither can commit. Each must get an answer (the
    // second waits behind the first's batch), well before the client gives up.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("http://{}/v1/listings", zone.zones[0][leader].api_addr);
    let send = |n: usize| {
        http.post(url.clone())
            .bearer_auth(&zone.zone_tokens(0).provider)
            .json(&example_listing(&format!("cut-off-{n}")))
            .send()
    };
    let (first, second) = tokio::join!(send(1), send(2));
    for resp in [first?, second?] {
        assert_eq!(resp.status().as_u16(), 504);
        let body: Value = resp.json().await?;
        assert_eq!(body["error"]["code"], "outcome_unknown", "{body}");
    }
    zone.routers[0].heal_all();
    zone.shutdown().await;
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
    zone.routers[0].faults().pause(&zone.zones[0][follower].id);
    let admin = &zone.zone_tokens(0).admin;
    let auditor = json!({"role": "regulator", "label": "new auditor"});
    let (_, created) = zone.post(0, leader, "/v1/tokens", admin, &auditor).await?;
    let token = created["token"].as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(!token.is_empty(), "no token in {created}");

    let (status, _) = {
        let read = zone.get(0, follower, "/v1/listings?consistency=local", &token);
        tokio::pin!(read);
        // Before the follower can learn of the token it must not refuse it; it asks the leader
        // what it has missed, and answers once resumed and caught up.
        let early = tokio::select! {
            answer = &mut read => Some(answer?.0),
            () = tokio::time::sleep(Duration::from_millis(500)) => None,
        };
        assert_eq!(early, None, "answered while it could not know the token");
        zone.routers[0].faults().resume(&zone.zones[0][follower].id);
        read.await?
    };
    assert_eq!(
        status, 200,
        "the new token is known once the follower caught up"
    );

    // An unknown token is still refused, after the same check.
    let (unknown, _) = zone
        .get(0, follower, "/v1/listings", "xchg-regulator-never-issued")
        .await?;
    assert_eq!(unknown, 401);
    zone.shutdown().await;
    Ok(())
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
    let tokens = zone.zone_tokens(0);
    let broker_party = "henan-data-broker";
    let application = xchg_tests::party_application(broker_party, &["data_broker"]);
    let (s, v) = zone
        .post(0, leader, "/v1/parties", &tokens.operator, &application)
        .await?;
    anyhow::ensure!(s == 201, "apply: {s} {v}");
    let admit = format!("/v1/parties/{broker_party}/admit");
    let (s, v) = zone
        .post(0, leader, &admit, &tokens.operator, &json!({}))
        .await?;
    anyhow::ensure!(s == 200, "admit: {s} {v}");
    let body = json!({"role": "provider", "party": broker_party, "label": "broker"});
    let (s, v) = zone
        .post(0, leader, "/v1/tokens", &tokens.admin, &body)
        .await?;
    anyhow::ensure!(s == 201, "token: {s} {v}");
    let broker = v["token"].as_str().unwrap_or_default().to_owned();
    // Everything so far is on the follower too; the entrustment will not be.
    eventually(
        Duration::from_secs(30),
        "the follower to catch up",
        || async {
            let m = |i: usize| zone.zones[0][i].raft.metrics().borrow().last_applied;
            Ok((m(follower) == m(leader)).then_some(()))
        },
    )
    .await?;
    zone.routers[0].faults().pause(&zone.zones[0][follower].id);
    let grant = json!({
        "broker": broker_party,
        "scope": ["submit_listing"],
        "expires_at": Timestamp::now().plus_millis(86_400_000),
    });
    let (s, v) = zone
        .post(0, leader, "/v1/entrustments", &tokens.provider, &grant)
        .await?;
    anyhow::ensure!(s == 201, "grant: {s} {v}");

    let listing = example_listing("through a broker");
    let (status, answer) = {
        let submit = zone.post(0, follower, "/v1/listings", &broker, &listing);
        tokio::pin!(submit);
        let early = tokio::select! {
            answer = &mut submit => Some(answer?),
            () = tokio::time::sleep(Duration::from_millis(500)) => None,
        };
        assert_eq!(
            early, None,
            "answered while it could not know the entrustment"
        );
        zone.routers[0].faults().resume(&zone.zones[0][follower].id);
        submit.await?
    };
    assert_eq!(
        status, 201,
        "under the entrustment, once caught up: {answer}"
    );
    zone.shutdown().await;
    Ok(())
}

/// The in-process transport reported an answer lost on a cut return link as `Unreachable`,
/// which tells the caller nothing was sent: a follower then proposed a forwarded write again
/// after the leader had applied it, and its client was answered `409` for a write that took
/// effect (found by `xchg-sim sweep --scenario partition-heal`, seed 6). A request that was
/// handled and whose answer is lost is a broken connection; only a request that never left is
/// `Unreachable`.
#[tokio::test]
async fn an_answer_lost_on_its_way_back_is_a_broken_connection_not_an_unreachable_node()
-> anyhow::Result<()> {
    use xchg_node::raft::transport::{TransportError, ZoneRequest, ZoneTransport as _};
    let f = Federation::start_with(
        LayoutKind::SingleZone,
        2,
        StartOptions::default(),
        |_, _| {},
    )
    .await?;
    let router = &f.routers[0];
    let (a, b) = (f.zones[0][0].id, f.zones[0][1].id);
    let node = xchg_node::store::raft_types::MemberNode {
        name: "b".into(),
        raft_addr: String::new(),
        api_url: String::new(),
        public_key: Vec::new(),
    };
    let from_a = router.transport(a);
    let answered = from_a
        .call(b, &node, ZoneRequest::Policy, Duration::from_secs(2))
        .await;
    anyhow::ensure!(answered.is_ok(), "both ways up: {answered:?}");
    router.faults().cut_one_way(&b, &a);
    let lost = from_a
        .call(b, &node, ZoneRequest::Policy, Duration::from_secs(2))
        .await;
    anyhow::ensure!(
        matches!(lost, Err(TransportError::Network(_))),
        "handled, answer lost: {lost:?}"
    );
    router.faults().heal_all();
    router.faults().cut_one_way(&a, &b);
    let unsent = from_a
        .call(b, &node, ZoneRequest::Policy, Duration::from_secs(2))
        .await;
    anyhow::ensure!(
        matches!(unsent, Err(TransportError::Unreachable(_))),
        "never sent: {unsent:?}"
    );
    Ok(())
}
