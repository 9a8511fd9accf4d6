//! A whole federation of in-process nodes: the node's real components (catalog state machine,
//! openraft, SQLite store, federation core) over the in-process transports, each zone's Raft
//! through its own router and every node's gossip through one network, both with the node's
//! fault model. Nodes crash (their tasks stop, their files stay) and start again from their
//! files.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use xchg_federation_config::layout::{
    self, Layout, LayoutKind, LayoutOptions, LayoutParty, ZoneTokens,
};
use xchg_node::clock::SkewedClock;
use xchg_node::fault::Delay;
use xchg_node::federation::Tuning;
use xchg_node::gossip::Peer;
use xchg_node::gossip::memory::Network;
use xchg_node::node::{NodeHandle, StartOptions};
use xchg_node::raft::NodeId;
use xchg_node::raft::router::Router;
use xchg_protocol::Timestamp;

/// One node of the federation.
pub struct Node {
    /// Its zone's index.
    pub zone: usize,
    /// Its exchange's index (in layout order).
    pub exchange: usize,
    /// Its name.
    pub name: String,
    /// Its config file, relative to the layout directory.
    config: PathBuf,
    /// Its Raft id.
    pub id: NodeId,
    /// Its gossip peer.
    pub peer: Peer,
    /// Running, or crashed.
    pub handle: Option<NodeHandle>,
}

/// One zone: its id, tokens, parties and routers.
pub struct Zone {
    /// Zone id.
    pub id: String,
    /// The initial tokens.
    pub tokens: ZoneTokens,
    /// The demo provider party.
    pub provider: LayoutParty,
    /// Indices of its nodes in [`Cluster::nodes`].
    pub nodes: Vec<usize>,
    /// Its Raft router.
    pub router: Arc<Router>,
}

/// The running federation.
pub struct Cluster {
    dir: tempfile::TempDir,
    /// The generated layout.
    pub layout: Layout,
    /// Every zone, in layout order.
    pub zones: Vec<Zone>,
    /// Every node, zone by zone.
    pub nodes: Vec<Node>,
    /// The gossip network.
    pub gossip: Arc<Network>,
    options: StartOptions,
    /// One clock per exchange, in layout order: every node of an exchange reads it.
    clocks: Vec<SkewedClock>,
}

impl Cluster {
    /// Generates `kind` with `nodes_per_zone` nodes per zone and starts every node, the
    /// transports' fault generators seeded from `seed`.
    ///
    /// # Errors
    /// If the layout cannot be generated or a node cannot start.
    pub async fn start(
        kind: LayoutKind,
        nodes_per_zone: usize,
        seed: u64,
    ) -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("layout");
        let mut opts = LayoutOptions::new(out.clone(), kind);
        opts.nodes_per_zone = nodes_per_zone;
        // Never bound: APIs listen on port 0, Raft and gossip are in-process.
        opts.base_port = 41_000;
        let layout = layout::generate(&opts, Timestamp::now())?;
        let gossip = Network::new(seed);
        let options = StartOptions {
            federation: Tuning {
                catchup_every: Duration::from_secs(2),
                seed: Some(seed),
                ..Tuning::default()
            },
            ..StartOptions::default()
        };
        let mut cluster = Cluster {
            dir,
            layout: layout.clone(),
            zones: Vec::new(),
            nodes: Vec::new(),
            gossip,
            options,
            clocks: layout
                .exchanges
                .iter()
                .map(|_| SkewedClock::default())
                .collect(),
        };
        let zones = layout
            .exchanges
            .iter()
            .enumerate()
            .flat_map(|(e, x)| x.zones.iter().map(move |z| (e, z)));
        let total: usize = layout
            .exchanges
            .iter()
            .flat_map(|e| &e.zones)
            .map(|z| z.nodes.len())
            .sum();
        let mut shown = std::time::Instant::now();
        for (z, (exchange, zone)) in zones.enumerate() {
            let router = Router::new(seed.wrapping_add(z as u64 + 1));
            let mut indices = Vec::new();
            for n in &zone.nodes {
                indices.push(cluster.nodes.len());
                let handle = cluster.launch(&router, &n.config, exchange).await?;
                // Progress on a large layout, at most every two seconds.
                if shown.elapsed() >= Duration::from_secs(2) {
                    println!("  started {} of {total} nodes", cluster.nodes.len() + 1);
                    shown = std::time::Instant::now();
                }
                cluster.nodes.push(Node {
                    zone: z,
                    exchange,
                    name: n.name.to_string(),
                    config: n.config.clone(),
                    id: handle.id,
                    peer: handle.federation.net().local_peer(),
                    handle: Some(handle),
                });
            }
            cluster.zones.push(Zone {
                id: zone.id.to_string(),
                tokens: zone.tokens.clone(),
                provider: zone.provider_party.clone(),
                nodes: indices,
                router,
            });
        }
        Ok(cluster)
    }

    async fn launch(
        &self,
        router: &Arc<Router>,
        config: &std::path::Path,
        exchange: usize,
    ) -> anyhow::Result<NodeHandle> {
        let out = self.dir.path().join("layout");
        let mut options = self.options.clone();
        if let Some(clock) = self.clocks.get(exchange) {
            options.clock = Arc::new(clock.clone());
        }
        xchg_node::node::start_in_process(&out, config, router, &self.gossip, options, |_| {})
            .await
            .with_context(|| format!("starting {}", config.display()))
    }

    /// The data directory of node `i` (its files, kept across a crash).
    ///
    /// # Errors
    /// If its config no longer loads.
    pub fn data_dir(&self, i: usize) -> anyhow::Result<PathBuf> {
        let node = self.nodes.get(i).context("no such node")?;
        let path = self.dir.path().join("layout").join(&node.config);
        let loaded = xchg_federation_config::load(&path, Timestamp::now())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(loaded.config.node.data_dir)
    }

    /// The exchange of zone `zone`.
    pub fn exchange_of(&self, zone: usize) -> Option<xchg_protocol::ExchangeId> {
        let id: xchg_protocol::ZoneId = self.zones.get(zone)?.id.parse().ok()?;
        Some(id.exchange())
    }

    /// The envelope of a revocation of `key` signed by the root of zone `zone`'s exchange (as
    /// `xchg federation revoke` makes it).
    ///
    /// # Errors
    /// The zone is unknown or its exchange's root key cannot be read.
    pub fn revocation(
        &self,
        zone: usize,
        key: &xchg_protocol::PublicKey,
    ) -> anyhow::Result<Vec<u8>> {
        let exchange = self.exchange_of(zone).context("no such zone")?;
        let file = xchg_federation_config::layout::root_key_file(
            &self.dir.path().join("layout"),
            &exchange,
        );
        let root = xchg_federation_config::read_key_file(&file)?;
        let revocation = xchg_protocol::Revocation {
            exchange,
            key: *key,
            reason: "revoked in a simulation".into(),
            revoked_at: Timestamp::now(),
        };
        Ok(xchg_protocol::Envelope::revocation(&revocation, &root).to_bytes())
    }

    /// The node index of node `node` of zone `zone`.
    pub fn index(&self, zone: usize, node: usize) -> Option<usize> {
        self.zones.get(zone)?.nodes.get(node).copied()
    }

    /// The API base URL of node `i`, if it runs.
    pub fn url(&self, i: usize) -> Option<String> {
        let h = self.nodes.get(i)?.handle.as_ref()?;
        Some(format!("http://{}", h.api_addr))
    }

    /// Crashes node `i`: its tasks stop, its files stay. Nothing if it is down.
    pub async fn crash(&mut self, i: usize) {
        if let Some(handle) = self.nodes.get_mut(i).and_then(|n| n.handle.take()) {
            handle.shutdown().await;
        }
    }

    /// Starts node `i` again from its files. Nothing if it runs.
    ///
    /// # Errors
    /// If it cannot start.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let Some(node) = self.nodes.get(i) else {
            return Ok(());
        };
        if node.handle.is_some() {
            return Ok(());
        }
        let router = self.zones[node.zone].router.clone();
        let handle = self
            .launch(&router, &node.config.clone(), node.exchange)
            .await?;
        self.nodes[i].handle = Some(handle);
        Ok(())
    }

    /// The running node of zone `zone` that leads it, by its own account.
    pub fn leader_of(&self, zone: usize) -> Option<usize> {
        self.zones.get(zone)?.nodes.iter().copied().find(|&i| {
            self.nodes[i]
                .handle
                .as_ref()
                .is_some_and(|h| h.raft.metrics().borrow().current_leader == Some(h.id))
        })
    }

    /// Whether the running members of every zone have applied the same log position.
    pub fn same_applied(&self) -> bool {
        self.zones.iter().all(|z| {
            let applied: Vec<_> = z
                .nodes
                .iter()
                .filter_map(|&i| self.nodes[i].handle.as_ref())
                .map(|h| h.raft.metrics().borrow().last_applied)
                .collect();
            applied.windows(2).all(|w| w[0] == w[1])
        })
    }

    /// Every zone's Raft and the gossip lose, duplicate and delay as given.
    pub fn set_link_faults(&self, loss: Option<u32>, duplicate: Option<u32>, delay: Option<Delay>) {
        fn apply<K: xchg_node::fault::Endpoint>(
            f: &mut xchg_node::fault::FaultModel<K>,
            (loss, duplicate, delay): (Option<u32>, Option<u32>, Option<Delay>),
        ) {
            if let Some(l) = loss {
                f.set_loss_per_million(l);
            }
            if let Some(d) = duplicate {
                f.set_duplicate_per_million(d);
            }
            if let Some(d) = delay {
                f.set_delay(d);
            }
        }
        let faults = (loss, duplicate, delay);
        for z in &self.zones {
            apply(&mut z.router.faults(), faults);
        }
        self.gossip.faults(|f| apply(f, faults));
    }

    /// Sets how far exchange `exchange`'s clock is ahead of the system clock (behind when
    /// negative): every node of it reads that time, and judges by it.
    pub fn set_skew(&self, exchange: usize, offset_ms: i64) {
        if let Some(c) = self.clocks.get(exchange) {
            c.set_offset(offset_ms);
        }
    }

    /// Takes the Raft link from node `from` to node `to` of zone `zone` down, one way.
    pub fn cut_raft_one_way(&self, zone: usize, from: usize, to: usize) {
        if let (Some(a), Some(b)) = (self.index(zone, from), self.index(zone, to)) {
            self.zones[zone]
                .router
                .faults()
                .cut_one_way(&self.nodes[a].id, &self.nodes[b].id);
        }
    }

    /// Takes the gossip links from every node of zone `from` to every node of zone `to` down,
    /// one way.
    pub fn cut_gossip_one_way(&self, from: usize, to: usize) {
        let peers = |z: usize| -> Vec<Peer> {
            self.zones
                .get(z)
                .map(|z| {
                    z.nodes
                        .iter()
                        .map(|&i| self.nodes[i].peer.clone())
                        .collect()
                })
                .unwrap_or_default()
        };
        let (senders, receivers) = (peers(from), peers(to));
        self.gossip.faults(|f| {
            for a in &senders {
                for b in &receivers {
                    f.cut_one_way(a, b);
                }
            }
        });
    }

    /// Holds every message to and from node `i` (Raft and gossip) until [`Cluster::resume`]:
    /// the node seems stopped to the others, and they to it.
    pub fn pause(&self, i: usize) {
        let Some(n) = self.nodes.get(i) else { return };
        self.zones[n.zone].router.faults().pause(&n.id);
        self.gossip.faults(|f| f.pause(&n.peer));
    }

    /// Lets node `i`'s held messages go on.
    pub fn resume(&self, i: usize) {
        let Some(n) = self.nodes.get(i) else { return };
        self.zones[n.zone].router.faults().resume(&n.id);
        self.gossip.faults(|f| f.resume(&n.peer));
    }

    /// Every fault on every transport ends, and every exchange's clock reads the system's.
    pub fn heal_all(&self) {
        for z in &self.zones {
            z.router.heal_all();
        }
        self.gossip.heal_all();
        for c in &self.clocks {
            c.set_offset(0);
        }
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for n in &mut self.nodes {
            if let Some(h) = n.handle.take() {
                h.shutdown().await;
            }
        }
    }
}
