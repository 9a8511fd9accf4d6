//! Anti-entropy: a zone cut off from gossip while listings are approved elsewhere converges
//! after the cut heals, with no operator action. Whole federation in one process: Raft through
//! in-process routers (one per zone) and gossip through the in-process network, whose cuts block
//! gossip and catch-up requests alike and which never replays old messages, so anything that
//! arrives after healing came through catch-up.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use xchg_federation_config::layout::{self, Layout, LayoutKind, LayoutOptions};
use xchg_node::federation::Tuning;
use xchg_node::gossip::memory::Network;
use xchg_node::node::{NodeHandle, StartOptions};
use xchg_node::raft::router::Router;
use xchg_protocol::Timestamp;
use xchg_tests::{eventually, example_listing, start_in_process};

struct Federation {
    _dir: tempfile::TempDir,
    layout: Layout,
    /// Per zone of the layout (exchange order, then zone order), its running nodes.
    zones: Vec<Vec<NodeHandle>>,
    gossip: Arc<Network>,
    http: reqwest::Client,
}

async fn start(kind: LayoutKind, tuning: Tuning) -> anyhow::Result<Federation> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("layout");
    let mut opts = LayoutOptions::new(out.clone(), kind);
    // Never bound: APIs listen on port 0, Raft and gossip are in-process.
    opts.base_port = 41_000;
    let generated = layout::generate(&opts, Timestamp::now())?;
    let gossip = Network::new(11);
    let options = StartOptions {
        join: false,
        federation: tuning,
    };
    let mut zones = Vec::new();
    for exchange in &generated.exchanges {
        for zone in &exchange.zones {
            let router = Router::new(3);
            let mut nodes = Vec::new();
            for n in &zone.nodes {
                let node =
                    start_in_process(&out, &n.config, &router, &gossip, options.clone(), |_| {})
                        .await?;
                nodes.push(node);
            }
            zones.push(nodes);
        }
    }
    Ok(Federation {
        _dir: dir,
        layout: generated,
        zones,
        gossip,
        http: reqwest::Client::new(),
    })
}

impl Federation {
    async fn call(
        &self,
        zone: usize,
        node: usize,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("http://{}{path}", self.zones[zone][node].api_addr);
        let mut req = self.http.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let value = resp.json().await.unwrap_or(Value::Null);
        Ok((status, value))
    }

    fn zone_tokens(&self, zone: usize) -> &xchg_federation_config::layout::ZoneTokens {
        let all: Vec<_> = self
            .layout
            .exchanges
            .iter()
            .flat_map(|e| &e.zones)
            .collect();
        &all[zone].tokens
    }

    /// Submits and approves a listing in `zone` through its first node; returns its id.
    async fn approve_new(&self, zone: usize, listing: Value) -> anyhow::Result<String> {
        self.approve_on(zone, 0, listing).await
    }

    /// Submits and approves a listing in `zone` through node `node`; returns its id.
    async fn approve_on(&self, zone: usize, node: usize, listing: Value) -> anyhow::Result<String> {
        let t = self.zone_tokens(zone).clone();
        let post = reqwest::Method::POST;
        let (s, v) = self
            .call(
                zone,
                0,
                post.clone(),
                "/v1/listings",
                &t.provider,
                Some(listing),
            )
            .await?;
        anyhow::ensure!(s == 201, "submit: {s} {v}");
        let id = v["id"].as_str().unwrap_or_default().to_owned();
        let path = format!("/v1/listings/{id}/approve");
        let (s, v) = self
            .call(zone, node, post, &path, &t.operator, Some(json!({})))
            .await?;
        anyhow::ensure!(s == 200, "approve: {s} {v}");
        Ok(id)
    }

    /// The state of listing `id` on one node's replica (None if absent).
    async fn state_on(&self, zone: usize, node: usize, id: &str) -> anyhow::Result<Option<String>> {
        let t = &self.zone_tokens(zone).regulator;
        let path = format!("/v1/listings/{id}?consistency=local");
        let (s, v) = self
            .call(zone, node, reqwest::Method::GET, &path, t, None)
            .await?;
        Ok((s == 200).then(|| v["state"].as_str().unwrap_or_default().to_owned()))
    }

    async fn shutdown(self) {
        for zone in self.zones {
            for n in zone {
                n.shutdown().await;
            }
        }
    }
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
        eventually(
            Duration::from_secs(30),
            "recognised in zhengzhou",
            || async {
                let s = fed
                    .state_on(1, node, &id)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((s.as_deref() == Some("recognised")).then_some(()))
            },
        )
        .await?;
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
