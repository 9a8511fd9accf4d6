//! Anti-entropy: a zone cut off from gossip while listings are approved elsewhere converges
//! after the cut heals, with no operator action. Whole federation in one process: Raft through
//! in-process routers (one per zone) and gossip through the in-process network, whose cuts block
//! gossip and catch-up requests alike and which never replays old messages, so anything that
//! arrives after healing came through catch-up.

use std::time::Duration;

use serde_json::json;
use xchg_federation_config::layout::LayoutKind;
use xchg_node::federation::Tuning;
use xchg_tests::in_process::Federation;
use xchg_tests::{eventually, example_listing};

async fn start(kind: LayoutKind, tuning: Tuning) -> anyhow::Result<Federation> {
    Federation::start(kind, 3, tuning, |_, _| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_cut_off_from_gossip_converges_through_catch_up_after_healing() -> anyhow::Result<()>
{
    // Production timing: catch-up every 5 s.
    let fed = start(LayoutKind::TwoExchanges, Tuning::default()).await?;
    // Zone 0 is xuchang's, zone 1 zhengzhou's.
    let xuchang: Vec<_> = fed.zones[0]
        .iter()
        .map(|n| n.federation.net().local_peer())
        .collect();
    let zhengzhou: Vec<_> = fed.zones[1]
        .iter()
        .map(|n| n.federation.net().local_peer())
        .collect();
    for a in &xuchang {
        for b in &zhengzhou {
            fed.gossip.cut(a, b);
        }
    }
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            fed.approve_new(0, example_listing(&format!("cut {i}")))
                .await?,
        );
    }
    // Wait until xuchang has published all of them (signed and recorded in its zone).
    for id in &ids {
        eventually(Duration::from_secs(15), "xuchang publishes", || async {
            let t = &fed.zone_tokens(0).regulator;
            let path = format!("/v1/listings/{id}");
            let (_, v) = fed
                .call(0, 0, reqwest::Method::GET, &path, t, None)
                .await
                .map_err(|e| e.to_string())?;
            let published = v["provenance"]["export"]
                .as_array()
                .is_some_and(|e| e.iter().any(|x| x["state"] == "published"));
            Ok(published.then_some(()))
        })
        .await?;
    }
    // The cut holds: nothing reached zhengzhou (publishing is done, so nothing is in flight).
    for id in &ids {
        for node in 0..3 {
            assert_eq!(
                fed.state_on(1, node, id).await?,
                None,
                "{id} leaked through the cut"
            );
        }
    }
    fed.gossip.heal_all();
    // One deadline from healing for everything.
    eventually(
        Duration::from_secs(30),
        "all recognised after healing",
        || async {
            for id in &ids {
                for node in 0..3 {
                    let s = fed.state_on(1, node, id).await.map_err(|e| e.to_string())?;
                    if s.as_deref() != Some("recognised") {
                        return Err(format!("{id} on zhengzhou node {node}: {s:?}"));
                    }
                }
            }
            Ok(Some(()))
        },
    )
    .await?;
    // A new version of a recognised listing goes back through review at its origin; once
    // approved, it replaces the recognised copies.
    let t = fed.zone_tokens(0).clone();
    let id = &ids[0];
    let (s, v) = fed
        .call(
            0,
            1,
            reqwest::Method::PUT,
            &format!("/v1/listings/{id}"),
            &t.provider,
            Some(example_listing("cut 0, second version")),
        )
        .await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["version"], 2, "{v}");
    let path = format!("/v1/listings/{id}/approve");
    let (s, v) = fed
        .call(
            0,
            2,
            reqwest::Method::POST,
            &path,
            &t.operator,
            Some(json!({})),
        )
        .await?;
    assert_eq!(s, 200, "{v}");
    for node in 0..3 {
        eventually(Duration::from_secs(10), "version 2 recognised", || async {
            let r = &fed.zone_tokens(1).regulator;
            let path = format!("/v1/listings/{id}?consistency=local");
            let (_, v) = fed
                .call(1, node, reqwest::Method::GET, &path, r, None)
                .await
                .map_err(|e| e.to_string())?;
            Ok((v["version"] == 2 && v["state"] == "recognised").then_some(()))
        })
        .await?;
    }
    fed.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_publishes_what_the_old_one_approved_but_never_sent() -> anyhow::Result<()> {
    // Every leader waits 3 s before signing, so the first one can be stopped in between.
    let tuning = Tuning {
        publish_delay: Duration::from_secs(3),
        outbox_poll: Duration::from_millis(500),
        ..Tuning::default()
    };
    let mut fed = start(LayoutKind::TwoExchanges, tuning).await?;
    let leader = eventually(Duration::from_secs(30), "a xuchang leader", || async {
        Ok(fed.zones[0].iter().position(|n| n.federation.is_leader()))
    })
    .await?;
    let old_name = fed.layout.exchanges[0].zones[0].nodes[leader]
        .name
        .to_string();
    let id = fed
        .approve_on(
            0,
            leader,
            example_listing("approved, then the leader stops"),
        )
        .await?;
    let old = fed.zones[0].remove(leader);
    old.shutdown().await;
    for node in 0..3 {
        fed.wait_for_state(1, node, &id, "recognised").await?;
    }
    // Signed and recorded by the new leader, not the one that approved it.
    let t = fed.zone_tokens(0).regulator.clone();
    let (_, audit) = fed
        .call(0, 0, reqwest::Method::GET, "/v1/audit?limit=1000", &t, None)
        .await?;
    let publishers: Vec<String> = audit["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["action"] == "record_published")
        .filter_map(|r| r["actor"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(publishers.len(), 1, "{audit}");
    assert_ne!(publishers[0], format!("node:{old_name}"));
    fed.shutdown().await;
    Ok(())
}
