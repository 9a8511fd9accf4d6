//! Starting and stopping one node: storage, Raft, the zone transport and the HTTP API.
//!
//! [`start`] takes a validated config, the node key, listeners that are already bound (tests
//! bind port 0) and the zone link to use; it returns a [`NodeHandle`] whose
//! [`NodeHandle::shutdown`] stops everything it started.
//!
//! Layer: assembly, above every other module; `up` and the binary's `cli` use it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use openraft::SnapshotPolicy;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use xchg_federation_config::NodeConfig;
use xchg_protocol::Keypair;

use crate::api;
use crate::catalog::ZoneFacts;
use crate::clock::SystemClock;
use crate::federation::{Federation, Parts, Tuning};
use crate::gossip::{self, Broadcast, swarm::SwarmConfig};
use crate::raft::network::ZoneNetwork;
use crate::raft::router::Router;
use crate::raft::tls::{self, MemberKeys, TlsTransport};
use crate::raft::transport::{ZoneService, ZoneTransport};
use crate::raft::{MemberNode, NodeId, Raft, node_id};
use crate::raft::{bootstrap, compaction, consistency, election};
use crate::store::{BatchObserver, Db, LogStore, Signals, StateMachine};

/// How this node reaches the other members of its zone.
pub enum ZoneLink {
    /// TCP with mutual TLS 1.3 on this listener (real nodes).
    Tls(TcpListener),
    /// The in-process router (tests and simulations).
    InProcess(Arc<Router>),
}

/// How this node reaches other zones and exchanges.
pub enum GossipLink {
    /// libp2p on the config's `listen.p2p`, dialling `gossip.bootstrap` and every outside
    /// exchange's bootstrap addresses.
    Libp2p {
        /// Record every byte this node publishes or serves (see [`SwarmConfig::capture`]).
        capture: Option<PathBuf>,
    },
    /// The in-process network (tests and simulations).
    InProcess(Arc<gossip::memory::Network>),
}

/// How to start.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Join an existing zone instead of forming it from the config's member list: the node
    /// waits to be added by `POST /v1/zone/members` on a current member.
    pub join: bool,
    /// Timing of the federation service.
    pub federation: Tuning,
    /// Where the node reads the time it stamps commands with and judges by: the system clock,
    /// or a [`crate::clock::ManualClock`] in tests and simulations.
    pub clock: Arc<dyn crate::clock::Clock>,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            join: false,
            federation: Tuning::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The state machine could not be loaded.
    #[error("loading the state machine: {0}")]
    StateMachine(crate::store::WriteError),
    /// The Raft configuration was refused.
    #[error("Raft configuration: {0}")]
    RaftConfig(#[from] openraft::ConfigError),
    /// Raft failed to start.
    #[error("starting Raft: {0}")]
    Raft(String),
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
    /// A listener's address could not be read.
    #[error("listener: {0}")]
    Listener(std::io::Error),
    /// The federation transport could not start.
    #[error("gossip transport: {0}")]
    Gossip(#[from] gossip::swarm::SwarmError),
    /// The search index could not be opened.
    #[error("search index: {0}")]
    Search(String),
    /// The node's config or key file could not be read ([`start_in_process`]).
    #[error("{0}")]
    Config(String),
}

/// The zone's members from the config, as Raft sees them.
pub fn config_members(config: &NodeConfig) -> BTreeMap<NodeId, MemberNode> {
    config
        .zone
        .members
        .iter()
        .map(|m| (node_id(m.name.as_str()), MemberNode::from(m)))
        .collect()
}

/// A running node.
pub struct NodeHandle {
    /// This node's Raft id.
    pub id: NodeId,
    /// The Raft handle (for tests and tools).
    pub raft: Raft,
    /// The database.
    pub db: Db,
    /// Where the HTTP API listens.
    pub api_addr: SocketAddr,
    /// The federation service.
    pub federation: Arc<Federation>,
    stop: watch::Sender<bool>,
    tasks: Tasks,
    router: Option<Arc<Router>>,
    swarm: Option<gossip::swarm::Client>,
    memory: Option<Arc<gossip::memory::Network>>,
}

impl NodeHandle {
    /// Resolves when the node cannot go on, with why: its Raft stopped by itself (an error of
    /// its log or state machine, a failed write of the catalog say, or a panic in its core),
    /// after which it answers every write `503` and takes no part in its zone; or one of its
    /// own tasks panicked (the search index, the federation driver, an election watch …), which
    /// is then gone for good. `xchg run` exits on it, for a supervisor to start the node again
    /// from its data directory. A panic while answering one request is not such a failure: it
    /// ends that connection only.
    pub async fn failed(&self) -> String {
        let mut panicked = self.tasks.panicked.subscribe();
        let first_panic = async move {
            match panicked.wait_for(Option::is_some).await {
                Ok(why) => why.clone().unwrap_or_default(),
                // The sender lives in this handle: never closed while it is borrowed.
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            why = self.raft_failed() => format!("Raft stopped on an error: {why}"),
            why = first_panic => why,
        }
    }

    /// Resolves when this node's Raft has stopped by itself, with why (see [`Self::failed`]).
    async fn raft_failed(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow_and_update().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return match &metrics.borrow().running_state {
                    Err(fatal) => fatal.to_string(),
                    Ok(()) => "Raft's core ended without saying why".to_owned(),
                };
            }
        }
    }

    /// Stops the API and the transport, shuts Raft down and closes the database.
    pub async fn shutdown(mut self) {
        if let Some(router) = &self.router {
            router.unregister(self.id);
        }
        if let Some(network) = &self.memory {
            network.leave(&self.federation.net.local_peer());
        }
        let _ = self.stop.send(true);
        while self.tasks.set.join_next().await.is_some() {}
        if let Some(swarm) = &self.swarm {
            swarm.shutdown().await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft shutdown");
        }
        self.db.close().await;
    }
}

/// The node's own tasks, each under a name. A task that panics is gone for good, and with it a
/// part of the node: the first such panic is logged and kept for [`NodeHandle::failed`].
struct Tasks {
    set: JoinSet<()>,
    panicked: watch::Sender<Option<String>>,
}

impl Tasks {
    fn new() -> Tasks {
        Tasks {
            set: JoinSet::new(),
            panicked: watch::channel(None).0,
        }
    }

    /// Runs `task` as the node's task `name`.
    fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let panicked = self.panicked.clone();
        self.set.spawn(async move {
            let Err(payload) = std::panic::AssertUnwindSafe(task).catch_unwind().await else {
                return;
            };
            let why = panic_text(payload.as_ref());
            tracing::error!(task = name, panic = %why, "a task of the node panicked");
            panicked.send_if_modified(|first| {
                let is_first = first.is_none();
                if is_first {
                    *first = Some(format!("its task {name} panicked: {why}"));
                }
                is_first
            });
        });
    }
}

/// What a panic said, when it said it with a string (as `panic!` and `expect` do).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

fn key_of(node: &MemberNode) -> Option<[u8; 32]> {
    node.public_key.as_slice().try_into().ok()
}

/// How long a node that left the zone may still connect to be told so.
const DEPARTED_KEYS_KEPT: Duration = Duration::from_secs(600);

/// What [`follow_member_keys`] needs to know about this node.
struct MemberKeyFacts {
    exchange: String,
    own_key: [u8; 32],
    /// Bumped by the state machine when revocations were added.
    revocations: Arc<std::sync::atomic::AtomicU64>,
}

/// The keys of this exchange's nodes that its root revoked (base64 in the catalog).
async fn revoked_keys(db: &Db, exchange: &str) -> BTreeSet<[u8; 32]> {
    let rows = match db.reader().await {
        Ok(mut conn) => crate::catalog::tables::revocations::keys_of(&mut conn, exchange)
            .await
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    rows.iter()
        .filter_map(|k| xchg_protocol::PublicKey::from_base64(k).ok())
        .map(|k| *k.as_bytes())
        .collect()
}

/// Keeps `keys` (who may talk Raft to this node) equal to the membership's keys less the
/// revoked ones; see [`start`].
async fn follow_member_keys(
    raft: Raft,
    db: Db,
    keys: MemberKeys,
    configured: BTreeMap<NodeId, MemberNode>,
    facts: MemberKeyFacts,
    removal: election::Removal,
    mut stop: watch::Receiver<bool>,
) {
    let mut metrics_rx = raft.metrics();
    let mut revoked = BTreeSet::new();
    let mut seen_epoch = None;
    // Keys that were members, with when they left: for a while they may still connect, to be
    // told that they are out.
    let mut departed: BTreeMap<[u8; 32], std::time::Instant> = BTreeMap::new();
    let mut previous: BTreeSet<[u8; 32]> = BTreeSet::new();
    loop {
        let epoch = facts.revocations.load(std::sync::atomic::Ordering::Acquire);
        if seen_epoch != Some(epoch) {
            seen_epoch = Some(epoch);
            revoked = revoked_keys(&db, &facts.exchange).await;
            if revoked.contains(&facts.own_key) {
                removal.set_for_good(
                    "this node's key was revoked by its exchange's root: an operator must \
                     remove it from the zone (DELETE /v1/zone/members/<name>)",
                );
            }
        }
        let nodes: Vec<[u8; 32]> = {
            let m = metrics_rx.borrow_and_update();
            let from_raft: Vec<[u8; 32]> = m
                .membership_config
                .membership()
                .nodes()
                .filter_map(|(_, n)| key_of(n))
                .collect();
            if from_raft.is_empty() {
                configured.values().filter_map(key_of).collect()
            } else {
                from_raft
            }
        };
        let now: BTreeSet<[u8; 32]> = nodes.into_iter().collect();
        for gone in previous.difference(&now) {
            departed.insert(*gone, std::time::Instant::now());
        }
        departed.retain(|k, at| !now.contains(k) && at.elapsed() < DEPARTED_KEYS_KEPT);
        keys.set(now.iter().copied().filter(|k| !revoked.contains(k)));
        keys.set_departed(departed.keys().copied(), revoked.iter().copied());
        previous = now;
        tokio::select! {
            changed = metrics_rx.changed() => if changed.is_err() { break },
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// Starts, inside this process, the node whose config is `config` (a path from `layout.json`,
/// relative to the layout directory `layout`): its API on a free loopback port, Raft through
/// `router`, gossip through `gossip`. `tweak` adjusts the loaded config first. For tests and
/// simulations, which run whole federations in one process.
///
/// # Errors
/// [`StartError::Config`] if the config or key cannot be read, else as [`start`].
pub async fn start_in_process(
    layout: &std::path::Path,
    config: &std::path::Path,
    router: &Arc<Router>,
    gossip: &Arc<gossip::memory::Network>,
    options: StartOptions,
    tweak: impl FnOnce(&mut NodeConfig),
) -> Result<NodeHandle, StartError> {
    let path = layout.join(config);
    let mut loaded = xchg_federation_config::load(&path, xchg_protocol::Timestamp::now())
        .map_err(|e| StartError::Config(format!("{}: {e}", path.display())))?
        .config;
    tweak(&mut loaded);
    let key = xchg_federation_config::read_key_file(&loaded.node.key_file)
        .map_err(|e| StartError::Config(e.to_string()))?;
    let api = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(StartError::Listener)?;
    start(
        loaded,
        key,
        api,
        ZoneLink::InProcess(router.clone()),
        GossipLink::InProcess(gossip.clone()),
        options,
    )
    .await
}

/// Starts a node.
///
/// # Errors
/// [`StartError`] for anything that prevents the node from running.
pub async fn start(
    config: NodeConfig,
    key: Keypair,
    api_listener: TcpListener,
    link: ZoneLink,
    gossip_link: GossipLink,
    options: StartOptions,
) -> Result<NodeHandle, StartError> {
    let config = Arc::new(config);
    let id = node_id(config.node.name.as_str());
    // Certificate and key are read before anything else opens: a bad file stops the start.
    let api_tls = config
        .api
        .tls
        .as_ref()
        .map(api::tls::acceptor)
        .transpose()
        .map_err(|e| StartError::Config(e.to_string()))?;
    // A directory restored from another zone's backup would have this zone's leader extend a
    // log it never wrote: refused before the backup is installed into the catalog.
    let restored_marker = config
        .node
        .data_dir
        .join(crate::store::backup::RESTORED_MARKER);
    if restored_marker.exists() {
        let snapshot = config
            .node
            .data_dir
            .join(crate::store::snapshot_file::SNAPSHOT_FILE);
        let meta =
            tokio::task::spawn_blocking(move || crate::store::snapshot_file::read_meta(&snapshot))
                .await
                .map_err(|e| StartError::Config(e.to_string()))?;
        if let Ok(meta) = meta {
            crate::store::backup::check_zone(&meta.last_membership, &config_members(&config))
                .map_err(|e| {
                    StartError::Config(format!(
                        "{} was restored from a backup that does not fit this node: {e}; empty \
                         the directory and restore a backup of this node's zone",
                        config.node.data_dir.display()
                    ))
                })?;
        }
    }
    let db = Db::open(&config.node.data_dir).await?;
    // The search index compares what it covers with the catalog before anything is applied.
    let search = {
        let search_error = |e: &dyn std::fmt::Display| StartError::Search(e.to_string());
        let mut conn = db.reader().await.map_err(|e| search_error(&e))?;
        let clock = crate::catalog::tables::listings::clock(&mut conn)
            .await
            .map_err(|e| search_error(&e))?;
        drop(conn);
        let dir = config.node.data_dir.clone();
        tokio::task::spawn_blocking(move || crate::search::SearchIndex::open(&dir, clock))
            .await
            .map_err(|e| search_error(&e))?
            .map_err(|e| search_error(&e))?
    };
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let zone = ZoneFacts::new(config.zone.id.clone(), config.export)
        .with_founding(&config.parties)
        .with_root(config.exchange.root_public_key);
    let sm = StateMachine::new(db.clone(), zone.clone())
        .await
        .map_err(StartError::StateMachine)?;
    let signals = Signals::default();
    let sm = sm
        .with_apply_observer({
            let m = metrics.clone();
            BatchObserver(Arc::new(move |elapsed, n| m.observe_apply(elapsed, n)))
        })
        .with_signals(signals.clone());
    let log = LogStore::new(
        db.clone(),
        Some({
            let m = metrics.clone();
            BatchObserver(Arc::new(move |elapsed, n| m.observe_append(elapsed, n)))
        }),
    );
    let committed = log.committed_index();
    // A data directory restored from a backup (`xchg restore`): the catalog is at the backup's
    // position and there is no vote. The vote is set to the backup's term (a zone restored
    // whole would otherwise elect in term 1, below its log's last entry, and never commit), and
    // the member is kept out of elections until it catches up ([`bootstrap::guard_restored`]).
    let restored = restored_marker.exists();
    let mut sm = sm;
    let mut restored_at = None;
    if restored {
        let raft_err = |e: &dyn std::fmt::Display| StartError::Raft(e.to_string());
        let mut log_store = log.clone();
        let vote = openraft::storage::RaftLogStorage::read_vote(&mut log_store)
            .await
            .map_err(|e| raft_err(&e))?;
        let (applied, _) = openraft::storage::RaftStateMachine::applied_state(&mut sm)
            .await
            .map_err(|e| raft_err(&e))?;
        restored_at = applied;
        if let (None, Some(at)) = (vote, applied) {
            // For no member (id 0): in that term, every real member's vote compares above it,
            // so the zone's leader is followed at once (a vote for itself would outrank the
            // leader's of the same term and make it step down); its own elections are in later
            // terms than its log's last entry.
            openraft::storage::RaftLogStorage::save_vote(
                &mut log_store,
                &openraft::Vote::new(at.leader_id.term, 0),
            )
            .await
            .map_err(|e| raft_err(&e))?;
        }
    }

    let tuning = config.raft;
    let election_timing = election::Timing::new(
        tuning.heartbeat_ms,
        tuning.election_timeout_min_ms,
        tuning.election_timeout_max_ms,
    );
    let compaction = compaction::Policy::new(
        tuning.snapshot_every_entries,
        tuning.snapshot_log_percent,
        id,
    );
    let raft_config = openraft::Config {
        cluster_name: config.zone.id.to_string(),
        heartbeat_interval: tuning.heartbeat_ms,
        election_timeout_min: tuning.election_timeout_min_ms,
        election_timeout_max: tuning.election_timeout_max_ms,
        install_snapshot_timeout: 5_000,
        // See [`compaction`]: openraft's own policy only when the entry count alone decides.
        snapshot_policy: if compaction.entries_only() {
            SnapshotPolicy::LogsSinceLast(compaction.every_entries)
        } else {
            SnapshotPolicy::Never
        },
        max_in_snapshot_log_to_keep: tuning.keep_log_entries,
        // Elections go through a pre-vote first: see [`election`].
        enable_elect: false,
        ..Default::default()
    }
    .validate()?;

    let members = config_members(&config);
    let member_keys = MemberKeys::default();
    member_keys.set(members.values().filter_map(key_of));
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Tasks::new();

    type RaftListener = Option<(TcpListener, tls::TlsConfigs)>;
    let (transport, raft_listener, router): (
        Arc<dyn ZoneTransport>,
        RaftListener,
        Option<Arc<Router>>,
    ) = match link {
        ZoneLink::Tls(listener) => {
            let tls = tls::configs(&key, member_keys.clone())?;
            (
                Arc::new(TlsTransport::new(&tls)),
                Some((listener, tls)),
                None,
            )
        }
        ZoneLink::InProcess(router) => (router.transport(id), None, Some(router)),
    };
    let raft = Raft::new(
        id,
        Arc::new(raft_config),
        ZoneNetwork::new(transport.clone()),
        log.clone(),
        sm,
    )
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;
    let removal = election::Removal::default();
    let amnesia = bootstrap::Amnesia::default();
    if restored {
        amnesia.set_restored(restored_at);
    }
    tasks.spawn(
        "election",
        election::run(
            raft.clone(),
            log.clone(),
            transport.clone(),
            election_timing,
            removal.clone(),
            amnesia.clone(),
            stop_rx.clone(),
        ),
    );
    if !compaction.entries_only() {
        tasks.spawn(
            "compaction",
            compaction::run(
                raft.clone(),
                log.clone(),
                db.clone(),
                compaction,
                stop_rx.clone(),
            ),
        );
    }
    tasks.spawn(
        "raft progress",
        crate::raft::progress::run(raft.clone(), stop_rx.clone()),
    );
    let policy_digest = config.zone_policy_digest();
    let policy_check = consistency::PolicyCheck::default();
    tasks.spawn(
        "policy consistency",
        consistency::run(
            raft.clone(),
            transport.clone(),
            policy_digest,
            policy_check.clone(),
            stop_rx.clone(),
        ),
    );
    let service = ZoneService::new(raft.clone())
        .with_transport(transport.clone())
        .with_member_keys(member_keys.clone())
        .with_configured(members.clone())
        .with_policy(policy_digest)
        .with_pre_vote(log.clone(), election_timing.lease)
        .with_amnesia(amnesia.clone());
    if let Some(router) = &router {
        router.register(id, service.clone());
    }
    if let Some((listener, tls)) = raft_listener {
        let mut rx = stop_rx.clone();
        let service = service.clone();
        tasks.spawn("raft listener", async move {
            tls::serve(listener, tls, service, async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await;
        });
    }

    // The member keys follow the membership Raft knows (including entries not yet committed),
    // so a node being added can connect as soon as the leader proposes it, less the keys this
    // exchange's root revoked: a revoked member is cut off from Raft RPCs and forwarding at
    // once, and a node whose own key was revoked stands down (an operator must remove it).
    tasks.spawn(
        "member keys",
        follow_member_keys(
            raft.clone(),
            db.clone(),
            member_keys.clone(),
            members.clone(),
            MemberKeyFacts {
                exchange: config.exchange.id.to_string(),
                own_key: *key.public().as_bytes(),
                revocations: signals.revocations.clone(),
            },
            removal.clone(),
            stop_rx.clone(),
        ),
    );

    if restored {
        tasks.spawn(
            "restore guard",
            bootstrap::guard_restored(
                raft.clone(),
                transport.clone(),
                members.clone(),
                election_timing,
                amnesia.clone(),
                removal.clone(),
                restored_marker,
                stop_rx.clone(),
            ),
        );
    }
    if !options.join {
        // Who initialises a new zone, and what a member with a replaced disk does: see
        // [`bootstrap`].
        tasks.spawn(
            "bootstrap",
            bootstrap::run(
                raft.clone(),
                transport.clone(),
                members.clone(),
                election_timing,
                amnesia.clone(),
                stop_rx.clone(),
            ),
        );
    }

    let api_addr = api_listener.local_addr().map_err(StartError::Listener)?;
    let proposer = api::propose::Proposer::start(raft.clone(), transport.clone(), metrics.clone());
    let (net, events, swarm, memory): (Arc<dyn Broadcast>, _, _, _) = match gossip_link {
        GossipLink::Libp2p { capture } => {
            let mut sc = SwarmConfig::new(
                key.clone(),
                format!(
                    "xchg/{} {} {} {}",
                    env!("CARGO_PKG_VERSION"),
                    config.zone.id,
                    config.node.name,
                    config.own_member().map_or("-", |m| m.api_url.as_str())
                ),
            );
            sc.listen = vec![config.listen.p2p.clone()];
            sc.bootstrap = config
                .gossip
                .bootstrap
                .iter()
                .chain(config.outside.iter().flat_map(|o| o.bootstrap.iter()))
                .cloned()
                .collect();
            sc.capture = capture;
            let (client, events) = gossip::swarm::spawn(sc).await?;
            (Arc::new(client.clone()), events, Some(client), None)
        }
        GossipLink::InProcess(network) => {
            let (client, events) = network.join(&key.public());
            (Arc::new(client), events, None, Some(network))
        }
    };
    let (federation, driver) = Federation::new(Parts {
        config: config.clone(),
        key: key.clone(),
        id,
        raft: raft.clone(),
        db: db.clone(),
        proposer: proposer.clone(),
        net,
        metrics: metrics.clone(),
        signals: signals.clone(),
        tuning: options.federation,
        clock: options.clock.clone(),
    });
    tasks.spawn("federation", driver.run(events, stop_rx.clone()));
    // Admin tokens created offline while the node was stopped go to the zone now.
    tasks.spawn(
        "admin token hand-over",
        crate::recovery::hand_over(
            config.node.data_dir.clone(),
            config.node.name.to_string(),
            proposer.clone(),
            stop_rx.clone(),
        ),
    );
    tasks.spawn(
        "search index",
        search.clone().run(db.clone(), stop_rx.clone()),
    );
    let peers_http =
        api::overview::client(config.api.ca_cert.as_deref()).map_err(StartError::Config)?;
    let state = api::AppState::new(api::Context {
        search,
        peers_http,
        config: config.clone(),
        raft: raft.clone(),
        db: db.clone(),
        transport,
        member_keys,
        proposer,
        tokens: api::auth::TokenCache::new(signals.tokens.clone()),
        federation: federation.clone(),
        metrics,
        committed,
        removal,
        policy_check,
        clock: options.clock.clone(),
        parties: api::parties::Registry::new(zone.founding.clone()),
        signer: api::registrations::Signer {
            key: key.clone(),
            delegation: config.zone.delegation.clone(),
        },
        backups: Arc::new(tokio::sync::Semaphore::new(1)),
    });
    // The leader checks writes its followers forward with the same token table as its API.
    service.set_authorize(Arc::new(state.clone()));
    {
        let mut rx = stop_rx.clone();
        let limits = api::server::Limits::from(config.api.limits);
        let metrics = state.metrics.clone();
        let app = api::router(state);
        tasks.spawn(
            "api",
            api::server::serve(api_listener, app, limits, api_tls, metrics, async move {
                let _ = rx.wait_for(|s| *s).await;
            }),
        );
    }
    let api_scheme = config.api.scheme();
    tracing::info!(node = %config.node.name, zone = %config.zone.id, %api_addr, api_scheme, "node started");
    Ok(NodeHandle {
        id,
        raft,
        db,
        api_addr,
        federation,
        stop,
        tasks,
        router,
        swarm,
        memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that ends is no failure; one that panics is, named, with what it said, and only
    /// the first is kept.
    #[tokio::test]
    async fn the_first_task_that_panics_is_kept_with_its_message() {
        let mut tasks = Tasks::new();
        let mut first = tasks.panicked.subscribe();
        tasks.spawn("quiet", async {});
        while tasks.set.join_next().await.is_some() {}
        assert_eq!(*first.borrow_and_update(), None);

        tasks.spawn("indexer", async { panic!("index file gone") });
        while tasks.set.join_next().await.is_some() {}
        let owned = String::from("second");
        tasks.spawn("driver", async move { panic!("{owned}") });
        while tasks.set.join_next().await.is_some() {}
        assert_eq!(
            first.borrow_and_update().as_deref(),
            Some("its task indexer panicked: index file gone")
        );
        assert_eq!(panic_text(&5_u8), "a panic without a message");
    }
}
