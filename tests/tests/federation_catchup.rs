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
use xchg_node::node::{self, GossipLink, NodeHandle, StartOptions, ZoneLink};
use xchg_node::raft::router::Router;
use xchg_protocol::Timestamp;
use xchg_tests::{eventually, example_listing};

struct Federation {
    _dir: tempfile::TempDir,
    layout: Layout,
    /// Per zone of the layout (exchange order, then zone order), its running nodes.
    zones: Vec<Vec<NodeHandle>>,
    gossip: Arc<Network>,
    http: reqwest::Client,
}

async fn start(kind: LayoutKind) -> anyhow::Result<Federation> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("layout");
    let mut opts = LayoutOptions::new(out.clone(), kind);
    // Never bound: APIs listen on port 0, Raft and gossip are in-process.
    opts.base_port = 41_000;
    let generated = layout::generate(&opts, Timestamp::now())?;
    let gossip = Network::new(11);
    let options = StartOptions {
        join: false,
        federation: Tuning {
            catchup_every: Duration::from_millis(500),
            outbox_poll: Duration::from_millis(500),
        },
    };
    let mut zones = Vec::new();
    for exchange in &generated.exchanges {
        for zone in &exchange.zones {
            let router = Router::new(3);
            let mut nodes = Vec::new();
            for n in &zone.nodes {
                let config =
                    xchg_federation_config::load(&out.join(&n.config), Timestamp::now())?.config;
                let key = xchg_federation_config::read_key_file(&config.node.key_file)?;
                let api = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                nodes.push(
                    node::start(
                        config,
                        key,
                        api,
                        ZoneLink::InProcess(router.clone()),
                        GossipLink::InProcess(gossip.clone()),
                        options.clone(),
                    )
                    .await?,
                );
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

    /// Submits and approves a listing in `zone`; returns its id.
    async fn approve_new(&self, zone: usize, listing: Value) -> anyhow::Result<String> {
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
            .call(zone, 0, post, &path, &t.operator, Some(json!({})))
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
    let fed = start(LayoutKind::TwoExchanges).await?;
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
    for id in &ids {
        for node in 0..3 {
            eventually(
                Duration::from_secs(30),
                "recognised after healing",
                || async {
                    let s = fed.state_on(1, node, id).await.map_err(|e| e.to_string())?;
                    Ok((s.as_deref() == Some("recognised")).then_some(()))
                },
            )
            .await?;
        }
    }
    fed.shutdown().await;
    Ok(())
}
