//! A whole federation in one process: every node of a generated layout with its real parts
//! (Raft over mutual TLS, libp2p gossip on TCP, SQLite files), started by [`start`] and
//! stopped by [`Running::stop`].
//!
//! This is `xchg up` without its terminal: the binary adds the printing, the signals and the
//! demo catalog; tests and simulations call [`start`] directly. It assembles nodes, so it sits
//! at the top of the library with [`crate::node`], and no other module imports it.
//!
//! The layout is generated into the data directory on first run (exactly as `xchg config
//! generate` writes it) and reused afterwards, so a restart keeps every node's data.

mod data_dir;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use xchg_federation_config::layout::{GenerateError, Layout, LayoutKind, LayoutZone};
use xchg_federation_config::{ConfigError, KeyFileError};
use xchg_protocol::Timestamp;

use crate::node::{self, GossipLink, NodeHandle, StartError, StartOptions, ZoneLink};

/// What to start. The addresses and sizes apply to a first run, when the layout is generated;
/// later runs take them from the data directory's `layout.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpOptions {
    /// The data directory: the layout, every node's keys, configs and databases. It holds
    /// every secret of the federation, so it is created private (mode 0700).
    pub dir: PathBuf,
    /// The layout of a first run [default: xuchang]; on later runs, if given, it must be the
    /// one the directory holds.
    pub layout: Option<LayoutKind>,
    /// Nodes per zone on a first run [default: 3]; on later runs, if given, it must match.
    pub nodes_per_zone: Option<usize>,
    /// First port of a first run [default: 7100]; refused when reusing a directory, whose
    /// addresses are fixed.
    pub base_port: Option<u16>,
    /// The address every node listens on, for a first run [default: 127.0.0.1]; refused when
    /// reusing a directory.
    pub host: Option<IpAddr>,
}

impl UpOptions {
    /// The defaults in `dir`: whatever it holds, or the Xuchang layout on a first run.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        UpOptions {
            dir: dir.into(),
            layout: None,
            nodes_per_zone: None,
            base_port: None,
            host: None,
        }
    }
}

/// Progress of [`start`], for a caller that shows it (`xchg up` prints it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpEvent {
    /// The data directory holds a layout of this kind, which is used.
    Reusing {
        /// The layout in the directory.
        kind: LayoutKind,
    },
    /// First run: the layout is being generated (keys, delegations, tokens, configs).
    Generating {
        /// The layout.
        kind: LayoutKind,
        /// Its nodes per zone.
        nodes_per_zone: usize,
    },
    /// The layout was generated and moved into the data directory.
    Generated {
        /// How long generating took.
        took: Duration,
    },
    /// Another node is running.
    NodeStarted {
        /// Nodes running so far.
        started: usize,
        /// Nodes in the layout.
        total: usize,
    },
    /// How many zones have elected a leader: sent at every check until all have.
    Leaders {
        /// Zones with a leader.
        led: usize,
        /// Zones in the layout.
        zones: usize,
    },
}

/// Why a federation could not be started or stopped. The messages name the command-line flags
/// of `xchg up`, which are these options under the same names.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// The data directory could not be created.
    #[error("creating {}", dir.display())]
    CreateDir {
        /// The data directory.
        dir: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// `layout.json` exists but could not be read.
    #[error("reading {}", path.display())]
    ReadLayout {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// `layout.json` is not a layout.
    #[error("{} is not a layout written by xchg", path.display())]
    NotALayout {
        /// The file.
        path: PathBuf,
        /// What did not parse.
        source: serde_json::Error,
    },
    /// `layout.json` lacks an exchange, a zone, or a zone's nodes.
    #[error("{} is not a layout written by xchg: {what}", path.display())]
    IncompleteLayout {
        /// The file.
        path: PathBuf,
        /// What is missing.
        what: String,
    },
    /// The data directory holds another layout than the one asked for.
    #[error(
        "{} holds a {held} layout, not {asked}; pass another --dir, or remove it to start afresh",
        dir.display()
    )]
    OtherLayout {
        /// The data directory.
        dir: PathBuf,
        /// The layout it holds.
        held: LayoutKind,
        /// The layout asked for.
        asked: LayoutKind,
    },
    /// The data directory's zones have another number of nodes than asked for.
    #[error(
        "{} has {held} node(s) per zone, not {asked}; pass another --dir, or remove it",
        dir.display()
    )]
    OtherNodesPerZone {
        /// The data directory.
        dir: PathBuf,
        /// Nodes per zone it holds.
        held: usize,
        /// Nodes per zone asked for.
        asked: usize,
    },
    /// Addresses were asked for on a directory whose layout already fixed them.
    #[error(
        "--base-port and --host apply to a first run only; {} keeps the addresses in its \
         layout.json (pass another --dir to start a new federation)",
        dir.display()
    )]
    AddressesFixed {
        /// The data directory.
        dir: PathBuf,
    },
    /// The data directory holds files but no layout.
    #[error(
        "{} exists but holds no layout.json (an interrupted first run, or another directory): \
         remove it, or pass another --dir",
        dir.display()
    )]
    NoLayout {
        /// The data directory.
        dir: PathBuf,
    },
    /// The layout could not be generated.
    #[error("generating the layout")]
    Generate(#[source] GenerateError),
    /// The generated layout could not be moved into the data directory.
    #[error("moving {} to {}", from.display(), to.display())]
    MoveIntoPlace {
        /// Where it was generated.
        from: PathBuf,
        /// The data directory.
        to: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A node's config did not load.
    #[error("{}: {error}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// Every violation (its own message, so not a `source` printed twice).
        error: ConfigError,
    },
    /// A node's key file could not be read.
    #[error("reading {}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: KeyFileError,
    },
    /// A node's address is taken.
    #[error(
        "{node}: binding the {what} address {addr} (is another xchg using it? a new --dir with \
         another --base-port starts elsewhere)"
    )]
    Bind {
        /// The node.
        node: String,
        /// `API` or `Raft`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A node failed to start.
    #[error("starting {node}")]
    StartNode {
        /// The node.
        node: String,
        /// Why.
        source: StartError,
    },
    /// Some zone elected no leader in time.
    #[error("not every zone elected a leader within {} s", within.as_secs())]
    NoLeader {
        /// How long it waited.
        within: Duration,
    },
    /// The caller's interrupt fired before every zone had a leader.
    #[error("interrupted; every node started so far was stopped")]
    Interrupted,
    /// The nodes did not stop in time.
    #[error("the nodes did not stop within {within:?}")]
    StopTimeout {
        /// How long it waited.
        within: Duration,
    },
}

/// One running node of the federation.
pub struct UpNode {
    /// The zone it belongs to, e.g. `xuchang/municipal`.
    pub zone: String,
    /// Its name in the zone.
    pub name: String,
    /// Base URL of its HTTP API, as `layout.json` gives it.
    pub api_url: String,
    /// The node itself (its Raft, database and federation service), for tests and tools.
    pub handle: NodeHandle,
}

/// A running federation, from [`start`]. Stop it with [`Running::stop`]: dropping it leaves
/// the nodes' tasks to the end of the runtime.
pub struct Running {
    dir: PathBuf,
    layout: Layout,
    nodes: Vec<UpNode>,
}

/// Longest a clean stop of every node may take.
const STOP_WITHIN: Duration = Duration::from_secs(60);

/// Longest the zones may take to elect their leaders.
const LEADERS_WITHIN: Duration = Duration::from_secs(60);

impl Running {
    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The layout: every exchange, zone and node with their addresses, and each zone's role
    /// tokens (secret).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Every node, in layout order.
    pub fn nodes(&self) -> &[UpNode] {
        &self.nodes
    }

    /// How many zones are running.
    pub fn zones(&self) -> usize {
        zone_count(&self.layout)
    }

    /// The hub: the first zone of the first exchange, which serves the dashboard.
    pub fn hub(&self) -> &LayoutZone {
        // A layout always has an exchange with a zone with a node: `layout::generate` makes
        // them and `data_dir` refuses a layout.json without.
        &self.layout.exchanges[0].zones[0]
    }

    /// The dashboard's URL (the hub's first node), without its token.
    pub fn dashboard_url(&self) -> String {
        format!("{}/", self.hub().nodes[0].api_url)
    }

    /// The token the dashboard takes: the hub's regulator token (secret).
    pub fn dashboard_token(&self) -> &str {
        &self.hub().tokens.regulator
    }

    /// Stops every node cleanly: APIs, transports, Raft, databases, and the tasks of each.
    ///
    /// # Errors
    /// [`UpError::StopTimeout`] if they take longer than a minute.
    pub async fn stop(self) -> Result<(), UpError> {
        let stops = self.nodes.into_iter().map(|n| n.handle.shutdown());
        tokio::time::timeout(STOP_WITHIN, futures::future::join_all(stops))
            .await
            .map(|_| ())
            .map_err(|_| UpError::StopTimeout {
                within: STOP_WITHIN,
            })
    }
}

fn zone_count(layout: &Layout) -> usize {
    layout.exchanges.iter().map(|e| e.zones.len()).sum()
}

/// Starts every node of the layout in `options.dir` (generating it there on a first run) and
/// waits until every zone has elected a leader. `events` hears the progress. `interrupt`
/// (e.g. a signal) stops the start cleanly between nodes or while waiting for leaders: every
/// node started so far is stopped and [`UpError::Interrupted`] returned.
///
/// Dropping the returned future before it finishes skips that clean stop; use `interrupt`.
///
/// # Errors
/// [`UpError`]: a data directory that holds something else or another layout, a node that
/// cannot start (an address taken), no leader within a minute, or the interrupt. Whatever
/// failed, every node started so far has been stopped.
pub async fn start(
    options: UpOptions,
    mut events: impl FnMut(UpEvent) + Send,
    interrupt: impl Future<Output = ()> + Send,
) -> Result<Running, UpError> {
    let interrupt = std::pin::pin!(interrupt);
    let mut interrupt = Interrupt::new(interrupt);
    let layout = data_dir::load_or_generate(&options, &mut events)?;
    // Owned, since the layout moves into the handle that the nodes join one by one.
    let plan: Vec<(UpNodePlace, PathBuf)> = layout
        .exchanges
        .iter()
        .flat_map(|e| &e.zones)
        .flat_map(|z| {
            z.nodes.iter().map(move |n| {
                let place = UpNodePlace {
                    zone: z.id.to_string(),
                    name: n.name.to_string(),
                    api_url: n.api_url.clone(),
                };
                (place, n.config.clone())
            })
        })
        .collect();
    let mut running = Running {
        dir: options.dir,
        layout,
        nodes: Vec::with_capacity(plan.len()),
    };
    let total = plan.len();
    for (place, config) in plan {
        if interrupt.fired() {
            return Err(stopped(running, UpError::Interrupted).await);
        }
        match start_node(&running.dir, &config).await {
            Ok(handle) => running.nodes.push(UpNode {
                zone: place.zone,
                name: place.name,
                api_url: place.api_url,
                handle,
            }),
            Err(e) => return Err(stopped(running, e).await),
        }
        events(UpEvent::NodeStarted {
            started: running.nodes.len(),
            total,
        });
    }
    let ready = tokio::select! {
        r = wait_for_leaders(&running, &mut events) => r,
        () = interrupt.wait() => Err(UpError::Interrupted),
    };
    match ready {
        Ok(()) => Ok(running),
        Err(e) => Err(stopped(running, e).await),
    }
}

/// Stops `running` after `error`; a failure to stop is the error then, since nodes may be left.
async fn stopped(running: Running, error: UpError) -> UpError {
    match running.stop().await {
        Ok(()) => error,
        Err(stop) => stop,
    }
}

/// The caller's interrupt, checked between steps without being consumed, and never polled
/// again once it has fired.
struct Interrupt<'a, F> {
    future: Pin<&'a mut F>,
    fired: bool,
}

impl<'a, F: Future<Output = ()>> Interrupt<'a, F> {
    fn new(future: Pin<&'a mut F>) -> Self {
        Interrupt {
            future,
            fired: false,
        }
    }

    /// Whether it has fired, without waiting.
    fn fired(&mut self) -> bool {
        if !self.fired && self.future.as_mut().now_or_never().is_some() {
            self.fired = true;
        }
        self.fired
    }

    /// Resolves when it fires.
    async fn wait(&mut self) {
        if !self.fired {
            self.future.as_mut().await;
            self.fired = true;
        }
    }
}

/// Where a node of the plan belongs, before it runs.
struct UpNodePlace {
    zone: String,
    name: String,
    api_url: String,
}

/// Loads the config `config` (relative to `dir`), binds its addresses and starts the node.
async fn start_node(dir: &Path, config: &Path) -> Result<NodeHandle, UpError> {
    let path = dir.join(config);
    let loaded =
        xchg_federation_config::load(&path, Timestamp::now()).map_err(|error| UpError::Config {
            path: path.clone(),
            error,
        })?;
    let config = loaded.config;
    let name = config.node.name.to_string();
    let key = xchg_federation_config::read_key_file(&config.node.key_file).map_err(|source| {
        UpError::Key {
            path: config.node.key_file.clone(),
            source,
        }
    })?;
    let bind = |what: &'static str, addr: SocketAddr| {
        let node = name.clone();
        async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| UpError::Bind {
                    node,
                    what,
                    addr,
                    source,
                })
        }
    };
    let api = bind("API", config.listen.api).await?;
    let raft = bind("Raft", config.listen.raft).await?;
    node::start(
        config,
        key,
        api,
        ZoneLink::Tls(raft),
        GossipLink::Libp2p { capture: None },
        StartOptions::default(),
    )
    .await
    .map_err(|source| UpError::StartNode { node: name, source })
}

/// Waits until every zone has a leader, within [`LEADERS_WITHIN`].
async fn wait_for_leaders(
    running: &Running,
    events: &mut impl FnMut(UpEvent),
) -> Result<(), UpError> {
    let zones = running.zones();
    let deadline = Instant::now() + LEADERS_WITHIN;
    loop {
        let led: std::collections::BTreeSet<&str> = running
            .nodes
            .iter()
            .filter(|n| n.handle.federation.is_leader())
            .map(|n| n.zone.as_str())
            .collect();
        events(UpEvent::Leaders {
            led: led.len(),
            zones,
        });
        if led.len() == zones {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(UpError::NoLeader {
                within: LEADERS_WITHIN,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
