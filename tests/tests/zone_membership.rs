//! Zone membership over the real mutual-TLS transport: a fourth node joins a running zone and
//! catches up; a key that is not a member's cannot talk Raft to the zone.

use std::time::Duration;

use serde_json::{Value, json};
use xchg_node::raft::MemberNode;
use xchg_node::raft::tls::{self, MemberKeys, TlsTransport};
use xchg_node::raft::transport::{TransportError, ZoneRequest, ZoneResponse, ZoneTransport};
use xchg_protocol::Keypair;
use xchg_tests::{Zone, eventually, example_listing};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fourth_node_added_at_run_time_catches_up_and_votes() -> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    let tokens = zone.tokens().clone();
    zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let mut ids = Vec::new();
    for n in 0..20 {
        let (status, body) = zone
            .post(
                n % 3,
                "/v1/listings",
                &tokens.provider,
                &example_listing(&format!("before-join-{n}")),
            )
            .await?;
        anyhow::ensure!(status == 201, "{status} {body}");
        ids.push(body["id"].as_str().unwrap_or_default().to_owned());
    }
    // An operator grows the zone: `xchg config add-node`, start it with --join, admit it.
    let (new, fourth) = zone.add_node("xuchang/municipal")?;
    assert_eq!(new, 3);
    zone.start_with(3, &["--join"])?;
    let (status, body) = admit(&zone, 1, &tokens.admin, &fourth).await?;
    assert_eq!(status, 200, "adding the member: {body}\n{}", zone.log_of(3));
    let voters: Vec<&str> = body["voters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(voters.len(), 4, "four voters after the change: {body}");
    assert!(voters.contains(&fourth["name"].as_str().unwrap_or_default()));

    zone.wait_caught_up(3, 0, Duration::from_secs(30)).await?;
    for id in &ids {
        let (status, listing) = zone
            .get(
                3,
                &format!("/v1/listings/{id}?consistency=local"),
                Some(&tokens.regulator),
            )
            .await?;
        assert_eq!(status, 200, "listing {id} on the new member: {listing}");
    }
    let (_, status) = zone.get(3, "/v1/status", None).await?;
    assert_eq!(
        status["members"].as_array().map(Vec::len),
        Some(4),
        "{status}"
    );
    // The new member takes writes too (forwarded to the leader).
    let (code, body) = zone
        .post(
            3,
            "/v1/listings",
            &tokens.provider,
            &example_listing("after-join"),
        )
        .await?;
    assert_eq!(code, 201, "{body}");

    // And the zone can shrink again: removing the first node leaves three voters that still
    // commit writes.
    let removed = zone.nodes[0].name.clone();
    let (code, body) = zone
        .send(
            2,
            reqwest::Method::DELETE,
            &format!("/v1/zone/members/{removed}"),
            Some(&tokens.admin),
            None,
        )
        .await?;
    assert_eq!(code, 200, "removing {removed}: {body}");
    let voters: Vec<&str> = body["voters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(voters.len(), 3, "three voters after the removal: {body}");
    assert!(
        !voters.contains(&removed.as_str()),
        "{removed} is gone: {body}"
    );
    zone.kill(0);
    let (code, body) = zone
        .post(
            3,
            "/v1/listings",
            &tokens.provider,
            &example_listing("after-removal"),
        )
        .await?;
    assert_eq!(code, 201, "the shrunk zone commits: {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_that_is_not_a_members_cannot_send_raft_rpcs() -> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let target_config =
        xchg_federation_config::load(&zone.nodes[0].config, xchg_protocol::Timestamp::now())?
            .config;
    let target = MemberNode {
        name: zone.nodes[0].name.clone(),
        raft_addr: target_config.listen.raft.to_string(),
        api_url: zone.nodes[0].api_url.clone(),
        public_key: target_config
            .own_member()
            .map(|m| m.public_key.as_bytes().to_vec())
            .unwrap_or_default(),
    };
    let trusted = MemberKeys::default();
    trusted.set([<[u8; 32]>::try_from(target.public_key.as_slice())?]);
    let call = |key: Keypair| {
        let trusted = trusted.clone();
        let target = target.clone();
        async move {
            let transport = TlsTransport::new(&tls::configs(&key, trusted)?);
            anyhow::Ok(
                transport
                    .call(1, &target, ZoneRequest::ReadIndex, Duration::from_secs(5))
                    .await,
            )
        }
    };

    let stranger = Keypair::generate();
    // In TLS 1.3 the server judges the client's certificate after the client's side of the
    // handshake is done, so the refusal reaches the client as the server's access_denied alert
    // or, if the server has closed the connection first, as a reset: either way, no answer.
    match call(stranger).await? {
        Err(TransportError::Network(_) | TransportError::Unreachable(_)) => {}
        other => panic!("a non-member key must be refused, got {other:?}"),
    }
    let log = &zone.nodes[0].log;
    eventually(
        Duration::from_secs(10),
        "the node to log the refused connection",
        || async {
            let text = std::fs::read_to_string(log).map_err(|e| e.to_string())?;
            Ok(text.contains("refused Raft connection").then_some(()))
        },
    )
    .await?;
    // Control: the same call with a member's key is served.
    let member_config =
        xchg_federation_config::load(&zone.nodes[1].config, xchg_protocol::Timestamp::now())?
            .config;
    let member_key = xchg_federation_config::read_key_file(&member_config.node.key_file)?;
    match call(member_key).await? {
        Ok(ZoneResponse::ReadIndex(_)) => {}
        other => panic!("a member's key must be served, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_forms_from_its_configs_whatever_order_its_members_start_in() -> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    let provider = zone.tokens().provider.clone();
    // The last member alone: it answers, but there is no quorum, so no leader.
    zone.start(2)?;
    let alone = eventually(Duration::from_secs(30), "the lone member's API", || async {
        Ok(zone.get(2, "/v1/status", None).await.ok().map(|(_, s)| s))
    })
    .await?;
    assert!(
        alone["leader"].is_null() || alone["role"] != "leader",
        "one of three cannot lead: {alone}"
    );
    // A second member makes a majority; the third joins whenever it comes.
    zone.start(0)?;
    let leader = zone.wait_for_leader(2, Duration::from_secs(30)).await?;
    assert!(leader == 0 || leader == 2, "a started member leads");
    let (status, body) = zone
        .post(
            2,
            "/v1/listings",
            &provider,
            &example_listing("two of three"),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    zone.start(1)?;
    zone.wait_caught_up(1, leader, Duration::from_secs(30))
        .await?;
    Ok(())
}

/// Every node's term, through its status.
async fn terms(zone: &Zone, nodes: &[usize]) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::new();
    for &i in nodes {
        let (_, s) = zone.get(i, "/v1/status", None).await?;
        out.push(s["term"].as_u64().unwrap_or_default());
    }
    Ok(out)
}

/// Issue #12 (schema-driven fuzzing): re-adding a removed member answered 503 yet applied, and
/// its inflated term knocked the leader out; removing two of three was accepted without a
/// guard and the removed processes kept campaigning and serving stale reads; removing the last
/// member answered 503; the audit chain named `raft` (dated 1970) instead of the admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_changes_are_guarded_audited_and_a_removed_node_stands_down()
-> anyhow::Result<()> {
    let started = xchg_protocol::Timestamp::now();
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    let tokens = zone.tokens().clone();
    let leader = zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    let names: Vec<String> = zone.nodes.iter().map(|n| n.name.clone()).collect();
    let term = terms(&zone, &[leader]).await?[0];
    let delete = |i: usize, query: &'static str| {
        let path = format!("/v1/zone/members/{}{query}", names[i]);
        let admin = tokens.admin.clone();
        let zone = &zone;
        async move {
            zone.send(leader, reqwest::Method::DELETE, &path, Some(&admin), None)
                .await
        }
    };

    // Remove one member: it learns that it is out, stands down and says so.
    let (code, body) = delete(b, "").await?;
    assert_eq!(code, 200, "{body}");
    let removed = eventually(
        Duration::from_secs(30),
        "the removed node to stand down",
        || async {
            let (_, s) = zone
                .get(b, "/v1/status", None)
                .await
                .map_err(|e| e.to_string())?;
            Ok((s["role"] == "removed").then_some(s))
        },
    )
    .await?;
    assert!(removed["removed"].is_string(), "{removed}");
    let (code, body) = zone
        .get(b, "/v1/listings?consistency=local", Some(&tokens.regulator))
        .await?;
    assert_eq!(code, 503, "a removed node serves no stale reads: {body}");
    assert_eq!(body["error"]["code"], "removed_from_zone", "{body}");

    // One of two left would not be a majority of the three configured: refused unless forced.
    let (code, body) = delete(a, "").await?;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error"]["code"], "would_lose_majority", "{body}");
    // Re-adding the removed member answers 200 and it serves again, without an election.
    let config = xchg_federation_config::load(&zone.nodes[b].config, started)?.config;
    let me = config
        .own_member()
        .ok_or_else(|| anyhow::anyhow!("no own member"))?;
    let member_b = json!({
        "name": names[b], "raft_addr": me.raft_addr.to_string(),
        "api_url": zone.nodes[b].api_url, "public_key": me.public_key.to_base64(),
    });
    let (code, body) = zone
        .post(leader, "/v1/zone/members", &tokens.admin, &member_b)
        .await?;
    assert_eq!(code, 200, "re-adding: {body}\n{}", zone.log_of(b));
    assert_eq!(body["voters"].as_array().map(Vec::len), Some(3), "{body}");
    eventually(
        Duration::from_secs(30),
        "the re-added node to serve",
        || async {
            let (_, s) = zone
                .get(b, "/v1/status", None)
                .await
                .map_err(|e| e.to_string())?;
            Ok((s["role"] == "follower").then_some(()))
        },
    )
    .await?;
    // Adding it again changes nothing and says so.
    let (code, body) = zone
        .post(a, "/v1/zone/members", &tokens.admin, &member_b)
        .await?;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        terms(&zone, &[0, 1, 2]).await?,
        vec![term; 3],
        "no membership change cost the zone an election"
    );

    // The audit chain names the admin and the time of each request; nothing is dated 1970.
    let (_, audit) = zone
        .get(leader, "/v1/audit?limit=1000", Some(&tokens.regulator))
        .await?;
    let records = audit["items"].as_array().cloned().unwrap_or_default();
    let requests: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "request_membership_change")
        .collect();
    assert_eq!(requests.len(), 3, "remove, add, add again: {audit}");
    for r in &requests {
        assert_eq!(r["role"], "admin", "{r}");
        assert_eq!(r["result"], "ok", "{r}");
    }
    assert_eq!(requests[0]["object_id"], format!("remove {}", names[b]));
    for r in &records {
        let at: xchg_protocol::Timestamp = serde_json::from_value(r["at"].clone())?;
        assert!(at >= started, "a record dated before the zone existed: {r}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_member_of_a_zone_cannot_be_removed() -> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 1)?;
    zone.start_all()?;
    zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let path = format!("/v1/zone/members/{}?force=true", zone.nodes[0].name);
    let admin = zone.tokens().admin.clone();
    let (code, body) = zone
        .send(0, reqwest::Method::DELETE, &path, Some(&admin), None)
        .await?;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error"]["code"], "last_member", "{body}");
    let (_, status) = zone.get(0, "/v1/status", None).await?;
    assert_eq!(status["role"], "leader", "nothing changed: {status}");
    Ok(())
}

/// Issue #12: `[[outside]]` (like the export policy) must be the same on every node of a zone;
/// nothing checked it. Members now compare their zone-wide settings and say who differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_with_another_export_policy_are_named_in_the_status() -> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.edit_config(2, |c| {
        c.replace("ceiling = \"general\"", "ceiling = \"public\"")
    })?;
    zone.start_all()?;
    zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let odd = zone.nodes[2].name.clone();
    let seen = eventually(
        Duration::from_secs(30),
        "node 0 to name the odd member",
        || async {
            let (_, s) = zone
                .get(0, "/v1/status", None)
                .await
                .map_err(|e| e.to_string())?;
            Ok((s["zone_policy"] != "same").then_some(s))
        },
    )
    .await?;
    assert_eq!(
        seen["zone_policy"],
        format!("differs from: {odd}"),
        "{seen}"
    );
    eventually(
        Duration::from_secs(30),
        "node 1 to name the odd member too",
        || async {
            let (_, s) = zone
                .get(1, "/v1/status", None)
                .await
                .map_err(|e| e.to_string())?;
            Ok((s["zone_policy"] == format!("differs from: {odd}")).then_some(()))
        },
    )
    .await?;
    Ok(())
}

/// A node whose export policy differs from the zone's is not added (`409 policy_differs`), and
/// the membership is untouched: it would judge what crosses the zone's border differently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_export_policy_is_refused_before_the_membership_changes()
-> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    zone.start_all()?;
    let tokens = zone.tokens().clone();
    zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let (new, fourth) = zone.add_node("xuchang/municipal")?;
    zone.edit_config(new, |text| {
        text.replacen("ceiling = \"general\"", "ceiling = \"public\"", 1)
    })?;
    anyhow::ensure!(
        std::fs::read_to_string(&zone.nodes[new].config)?.contains("ceiling = \"public\""),
        "the policy was edited"
    );
    zone.start_with(new, &["--join"])?;
    let (status, body) = admit(&zone, 1, &tokens.admin, &fourth).await?;
    assert_eq!(status, 409, "{body}\n{}", zone.log_of(new));
    assert_eq!(body["error"]["code"], "policy_differs", "{body}");
    let (_, status) = zone.get(1, "/v1/status", None).await?;
    assert_eq!(
        status["members"].as_array().map(Vec::len),
        Some(3),
        "the membership as it was: {status}"
    );
    Ok(())
}

/// Asks node `via` to admit the node `xchg config add-node` printed as `added`.
async fn admit(
    zone: &Zone,
    via: usize,
    admin: &str,
    added: &Value,
) -> anyhow::Result<(u16, Value)> {
    let body = json!({
        "name": added["name"], "raft_addr": added["raft_addr"],
        "api_url": added["api_url"], "public_key": added["public_key"],
    });
    zone.post(via, "/v1/zone/members", admin, &body).await
}
