//! A whole federation inside the test process: Raft through in-process routers (one per zone)
//! and gossip through the in-process network, whose cuts block gossip and catch-up requests
//! alike and which never replays old messages. Nodes' APIs listen on loopback port 0.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use xchg_federation_config::NodeConfig;
use xchg_federation_config::layout::{self, Layout, LayoutKind, LayoutOptions, ZoneTokens};
use xchg_node::federation::Tuning;
use xchg_node::gossip::memory::Network;
use xchg_node::node::{NodeHandle, StartOptions};
use xchg_node::raft::router::Router;
use xchg_protocol::Timestamp;

use crate::start_in_process;

/// A running in-process federation.
pub struct Federation {
    /// The layout directory (keys, configs, data).
    pub dir: tempfile::TempDir,
    /// The generated layout.
    pub layout: Layout,
    /// Per zone of the layout (exchange order, then zone order), its running nodes.
    pub zones: Vec<Vec<NodeHandle>>,
    /// Per zone (the order of `zones`), the router its Raft messages go through, where a test
    /// injects faults.
    pub routers: Vec<Arc<Router>>,
    /// The gossip medium every node is on.
    pub gossip: Arc<Network>,
    http: reqwest::Client,
}

impl Federation {
    /// Generates `kind` with `nodes_per_zone` nodes per zone and starts every node with
    /// `tuning`; `tweak` adjusts each node's config (given its zone id) before it starts.
    ///
    /// # Errors
    /// If the layout cannot be generated or a node cannot start.
    pub async fn start(
        kind: LayoutKind,
        nodes_per_zone: usize,
        tuning: Tuning,
        tweak: impl Fn(&str, &mut NodeConfig),
    ) -> anyhow::Result<Federation> {
        let options = StartOptions {
            federation: tuning,
            ..StartOptions::default()
        };
        Federation::start_with(kind, nodes_per_zone, options, tweak).await
    }

    /// As [`Federation::start`], with every node started with `options` (a clock of the
    /// test's, for one).
    ///
    /// # Errors
    /// If the layout cannot be generated or a node cannot start.
    pub async fn start_with(
        kind: LayoutKind,
        nodes_per_zone: usize,
        options: StartOptions,
        tweak: impl Fn(&str, &mut NodeConfig),
    ) -> anyhow::Result<Federation> {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("layout");
        let mut opts = LayoutOptions::new(out.clone(), kind);
        opts.nodes_per_zone = nodes_per_zone;
        // Never bound: APIs listen on port 0, Raft and gossip are in-process.
        opts.base_port = 41_000;
        let generated = layout::generate(&opts, Timestamp::now())?;
        let gossip = Network::new(11);
        let mut zones = Vec::new();
        let mut routers = Vec::new();
        for exchange in &generated.exchanges {
            for zone in &exchange.zones {
                let router = Router::new(3);
                let mut nodes = Vec::new();
                for n in &zone.nodes {
                    let zone_id = zone.id.to_string();
                    let node =
                        start_in_process(&out, &n.config, &router, &gossip, options.clone(), |c| {
                            tweak(&zone_id, c)
                        })
                        .await?;
                    nodes.push(node);
                }
                zones.push(nodes);
                routers.push(router);
            }
        }
        Ok(Federation {
            dir,
            layout: generated,
            zones,
            routers,
            gossip,
            http: reqwest::Client::new(),
        })
    }

    /// The layout directory (where `keys/` and `nodes/` are).
    pub fn layout_dir(&self) -> PathBuf {
        self.dir.path().join("layout")
    }

    /// Sends `method` `path` to node `node` of zone `zone` with `token` and an optional JSON
    /// body; the status and JSON answer.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn call(
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

    /// GET `path` on node `node` of zone `zone`.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn get(
        &self,
        zone: usize,
        node: usize,
        path: &str,
        token: &str,
    ) -> anyhow::Result<(u16, Value)> {
        self.call(zone, node, reqwest::Method::GET, path, token, None)
            .await
    }

    /// POSTs JSON `body` to node `node` of zone `zone` with `token`.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn post(
        &self,
        zone: usize,
        node: usize,
        path: &str,
        token: &str,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        self.call(
            zone,
            node,
            reqwest::Method::POST,
            path,
            token,
            Some(body.clone()),
        )
        .await
    }

    /// POSTs JSON `body` to node `node` of zone `zone` with `token` under a fresh
    /// `Idempotency-Key`, and again with the same key for as long as the zone answers
    /// `504 outcome_unknown` (a 33-node federation on two cores can miss the 5 s commit budget).
    /// Only for endpoints that honour the key; the last answer.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn post_keyed(
        &self,
        zone: usize,
        node: usize,
        path: &str,
        token: &str,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("http://{}{path}", self.zones[zone][node].api_addr);
        let key = crate::fresh_idempotency_key();
        crate::while_outcome_unknown(|| crate::post_with_key(&url, token, &key, body)).await
    }

    /// Zone `zone` of the layout (layout order).
    ///
    /// # Panics
    /// If the layout has fewer zones (a mistake in the test).
    fn layout_zone(&self, zone: usize) -> &layout::LayoutZone {
        self.layout
            .exchanges
            .iter()
            .flat_map(|e| &e.zones)
            .nth(zone)
            .expect("the test names a zone of its layout")
    }

    /// The party the provider token of zone `zone` (layout order) is bound to.
    ///
    /// # Panics
    /// If the layout has fewer zones (a mistake in the test).
    pub fn zone_party(&self, zone: usize) -> &layout::LayoutParty {
        &self.layout_zone(zone).provider_party
    }

    /// The role tokens of zone `zone` (layout order).
    ///
    /// # Panics
    /// If the layout has fewer zones (a mistake in the test).
    pub fn zone_tokens(&self, zone: usize) -> &ZoneTokens {
        &self.layout_zone(zone).tokens
    }

    /// Submits and approves a listing in `zone` through its first node; returns its id.
    ///
    /// # Errors
    /// If either call does not succeed.
    pub async fn approve_new(&self, zone: usize, listing: Value) -> anyhow::Result<String> {
        self.approve_on(zone, 0, listing).await
    }

    /// Submits a listing through the first node of `zone` and approves it through node `node`;
    /// returns its id.
    ///
    /// # Errors
    /// If either call does not succeed.
    pub async fn approve_on(
        &self,
        zone: usize,
        node: usize,
        listing: Value,
    ) -> anyhow::Result<String> {
        let t = self.zone_tokens(zone);
        // The zone's provider token lists only for the zone's demo party.
        let listing = crate::for_party(listing, self.zone_party(zone));
        let base = |node: usize| format!("http://{}", self.zones[zone][node].api_addr);
        crate::submit_and_approve(&base(0), &base(node), t, &listing).await
    }

    /// The state of listing `id` on one node's replica (None if absent).
    ///
    /// # Errors
    /// Transport errors.
    pub async fn state_on(
        &self,
        zone: usize,
        node: usize,
        id: &str,
    ) -> anyhow::Result<Option<String>> {
        let t = &self.zone_tokens(zone).regulator;
        let path = format!("/v1/listings/{id}?consistency=local");
        let (s, v) = self.get(zone, node, &path, t).await?;
        Ok((s == 200).then(|| v["state"].as_str().unwrap_or_default().to_owned()))
    }

    /// Waits up to 30 s until listing `id` is in `state` on one node's replica.
    ///
    /// # Errors
    /// If it is not by then; the message names the last state seen.
    pub async fn wait_for_state(
        &self,
        zone: usize,
        node: usize,
        id: &str,
        state: &str,
    ) -> anyhow::Result<()> {
        crate::eventually(
            std::time::Duration::from_secs(30),
            &format!("listing {id} {state} on zone {zone} node {node}"),
            || async {
                let s = self
                    .state_on(zone, node, id)
                    .await
                    .map_err(|e| e.to_string())?;
                if s.as_deref() == Some(state) {
                    Ok(Some(()))
                } else {
                    Err(format!("state {s:?}"))
                }
            },
        )
        .await
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for zone in self.zones {
            for n in zone {
                n.shutdown().await;
            }
        }
    }
}
