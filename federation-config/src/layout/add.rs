//! `add-node`: one more node for a zone of a generated layout, written next to the others.
//!
//! The running members are never touched: their configs stay as they are and they learn about
//! the node through Raft, when an admin posts it to `/v1/zone/members`. Only the new node's
//! config lists the grown membership, so that it can be started with `xchg run --join`. The node
//! is appended to `layout.json` so that tools find it.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use multiaddr::{Multiaddr, Protocol};
use serde::Serialize;
use xchg_protocol::{Keypair, NodeName, PublicKey, Timestamp, ZoneId};

use super::plan::{PlannedNode, peer_id};
use super::render::{Validity, delegation_hex, member};
use super::{
    GenerateError, Layout, LayoutExchange, LayoutNode, LayoutOptions, io_error, write_raw_config,
};
use crate::model::{Member, NodeConfig};
use crate::raw::{RawConfig, RawGossip, RawListen, RawMember, RawNode};
use crate::secret::{KeyFileError, read_key_file, write_key_file, write_secret};
use crate::syntax::parse_raw;
use crate::violation::{ConfigError, Violation};
use crate::{Host, HostPort};

/// Which zone to grow and how to reach the new node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddNodeOptions {
    /// The layout directory, as written by [`super::generate`].
    pub dir: PathBuf,
    /// The zone that gets the node.
    pub zone: ZoneId,
    /// The node's name; `None` for `<zone name>-<n>`, `n` one above the zone's highest number.
    pub name: Option<NodeName>,
    /// The address or host name it is reached at; `None` for the host of the zone's nodes.
    pub host: Option<Host>,
    /// The address it listens on; `None` for the host when it is an address, loopback for
    /// `localhost`, every interface (0.0.0.0) for another host name.
    pub bind: Option<IpAddr>,
    /// Its API port, followed by its Raft and libp2p ports; `None` for the port after the
    /// highest one in `layout.json`.
    pub base_port: Option<u16>,
    /// How long its delegation is valid, in days from now.
    pub valid_days: u32,
}

impl AddNodeOptions {
    /// Options with the defaults: the next name, host and ports; 365 days.
    pub fn new(dir: impl Into<PathBuf>, zone: ZoneId) -> Self {
        AddNodeOptions {
            dir: dir.into(),
            zone,
            name: None,
            host: None,
            bind: None,
            base_port: None,
            valid_days: LayoutOptions::DEFAULT_VALID_DAYS,
        }
    }
}

/// What [`add_node`] wrote, and what the zone needs to admit the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedNode {
    /// The node as appended to `layout.json`; its config path is relative to the layout
    /// directory.
    pub node: LayoutNode,
    /// Its config file.
    pub config_file: PathBuf,
    /// Its key file (mode 0600).
    pub key_file: PathBuf,
    /// Its bundle folder, to copy to its machine.
    pub bundle: PathBuf,
    /// Its node key.
    pub public_key: PublicKey,
    /// Base URL of an existing member's API, which takes the request to add the node.
    pub member_api_url: String,
    /// The zone's admin token from `layout.json`: adding a member is an admin's call.
    pub admin_token: String,
    /// What loading the new config warned about, e.g. an even number of members.
    pub warnings: Vec<Violation>,
}

impl AddedNode {
    /// The body of `POST /v1/zone/members` that adds this node to its zone.
    pub fn join_request(&self) -> JoinRequest {
        JoinRequest {
            name: self.node.name.to_string(),
            raft_addr: self.node.raft_addr.to_string(),
            api_url: self.node.api_url.clone(),
            public_key: self.public_key.to_base64(),
        }
    }
}

/// The body of `POST /v1/zone/members`, field for field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JoinRequest {
    /// Node name, unique in the zone.
    pub name: String,
    /// Its Raft address, `host:port`.
    pub raft_addr: String,
    /// Base URL of its API.
    pub api_url: String,
    /// Its node key, standard base64 as in config files.
    pub public_key: String,
}

/// Why a node could not be added.
#[derive(Debug, thiserror::Error)]
pub enum AddNodeError {
    /// `valid_days` is 0 or above [`super::MAX_VALID_DAYS`].
    #[error(
        "a delegation valid for {0} days: expected 1 to {max} days",
        max = super::MAX_VALID_DAYS
    )]
    ValidDays(u32),
    /// The zone's nodes are on several hosts and no host was given.
    #[error("zone {zone}'s nodes are on several hosts ({hosts}): give the new node's with --host")]
    HostNeeded {
        /// The zone.
        zone: ZoneId,
        /// Its nodes' hosts.
        hosts: String,
    },
    /// The node would listen where it cannot be reached at its host.
    #[error("--bind {0}")]
    Bind(String),
    /// The host is no one's address.
    #[error("{0} is no one's address: a node is reached at its host, so give the machine's own")]
    Unreachable(Host),
    /// `layout.json` could not be read.
    #[error(
        "cannot read {}: {source}; expected a directory written by `xchg config generate`",
        path.display()
    )]
    ReadLayout {
        /// The `layout.json` file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// `layout.json` is not a layout.
    #[error("{} is not a layout written by `xchg config generate`: {source}", path.display())]
    ParseLayout {
        /// The `layout.json` file.
        path: PathBuf,
        /// What is wrong with it.
        source: serde_json::Error,
    },
    /// The zone is not in the layout.
    #[error("zone {zone} is not in {}; its zones are: {known}", layout.display())]
    UnknownZone {
        /// The zone asked for.
        zone: ZoneId,
        /// The `layout.json` file.
        layout: PathBuf,
        /// The layout's zones, comma-separated.
        known: String,
    },
    /// The zone has no node whose config could be copied.
    #[error("zone {0} has no nodes in layout.json, so there is no running zone to grow")]
    EmptyZone(ZoneId),
    /// An existing config of the zone does not load.
    #[error("existing config {} does not load; fix it first:\n{source}", path.display())]
    ExistingConfig {
        /// The config file.
        path: PathBuf,
        /// Its violations.
        source: ConfigError,
    },
    /// The exchange root key could not be read.
    #[error("cannot use the exchange root key: {0}")]
    RootKey(#[from] KeyFileError),
    /// The root key file does not hold the key the zone's configs trust.
    #[error(
        "{} holds root key {found}, but the zone's configs trust {expected}; the delegation \
         would not be accepted",
        path.display()
    )]
    RootKeyMismatch {
        /// The root key file.
        path: PathBuf,
        /// Its public key, base64.
        found: String,
        /// The `exchange.root_public_key` of the zone's configs.
        expected: String,
    },
    /// The name is already a member's.
    #[error("zone {zone} already has a node named {name}; choose another --name")]
    NameTaken {
        /// The zone.
        zone: ZoneId,
        /// The name asked for.
        name: NodeName,
    },
    /// The three ports do not fit below 65536.
    #[error(
        "ports {first} to {last} do not lie in 1..=65535 (without --base-port a new node takes \
         the ports after the highest one in layout.json); choose another --base-port"
    )]
    Ports {
        /// The API port.
        first: u16,
        /// The libp2p port.
        last: u32,
    },
    /// A port is already a node's in `layout.json`.
    #[error("{addr} is already used by node {node} in layout.json; choose another --base-port")]
    PortTaken {
        /// The address in use.
        addr: HostPort,
        /// The node using it.
        node: NodeName,
    },
    /// A file or directory of the new node already exists.
    #[error(
        "{} already exists; refusing to overwrite it (remove it if an earlier add-node left it \
         behind)",
        .0.display()
    )]
    AlreadyExists(PathBuf),
    /// Writing or checking the new files failed as it would for [`super::generate`].
    #[error(transparent)]
    Write(#[from] GenerateError),
}

/// Adds a node to `opts.zone` of the layout in `opts.dir`: a fresh key, a delegation from the
/// exchange root valid from a day before `now` until `valid_days` after it, a config whose
/// members are the zone's nodes in `layout.json` plus this one, and the node appended to
/// `layout.json`. Everything else in the config is copied from the zone's first node. Existing
/// configs are not modified and no file is overwritten; the new config is loaded back before
/// `layout.json` is rewritten, and on failure the files written so far are removed.
///
/// # Errors
/// [`AddNodeError`]: an unreadable layout, an unknown or empty zone, an existing config that does
/// not load, a wrong root key, a taken name or port, an existing file, or an IO failure.
pub fn add_node(opts: &AddNodeOptions, now: Timestamp) -> Result<AddedNode, AddNodeError> {
    if !(1..=super::MAX_VALID_DAYS).contains(&opts.valid_days) {
        return Err(AddNodeError::ValidDays(opts.valid_days));
    }
    let layout_file = opts.dir.join("layout.json");
    let mut layout = read_layout(&layout_file)?;
    let zone = Zone::read(opts, &layout, &layout_file, now)?;
    let exchange = opts.zone.exchange();
    let root = root_key(&opts.dir, &exchange, zone.source.exchange.root_public_key)?;

    let number = zone.next_number(&exchange.to_string(), opts.zone.name());
    let stem = format!("{exchange}-{}-{number}", opts.zone.name());
    let name = match &opts.name {
        Some(name) => name.clone(),
        None => format!("{}-{number}", opts.zone.name())
            .parse()
            .map_err(|e| GenerateError::Inconsistent(format!("node name: {e}")))?,
    };
    if zone.members.iter().any(|m| m.name == name) {
        return Err(AddNodeError::NameTaken {
            zone: opts.zone.clone(),
            name,
        });
    }
    let host = match (&opts.host, &zone.host) {
        (Some(host), _) | (None, Some(host)) => host.clone(),
        (None, None) => {
            let mut hosts: Vec<String> = zone
                .members
                .iter()
                .map(|m| m.raft_addr.host.to_string())
                .collect();
            hosts.dedup();
            return Err(AddNodeError::HostNeeded {
                zone: opts.zone.clone(),
                hosts: hosts.join(", "),
            });
        }
    };
    if host.nowhere().is_some() {
        return Err(AddNodeError::Unreachable(host));
    }
    let bind = opts
        .bind
        .unwrap_or_else(|| super::inventory::bind_of(&host))
        .to_canonical();
    if let Some(why) = host.bind_misfit(bind) {
        return Err(AddNodeError::Bind(why));
    }
    if layout.api_ca.is_none() && !(host.is_loopback() && bind.is_loopback()) {
        let shown = if host.is_loopback() {
            Host::Ip(bind)
        } else {
            host
        };
        return Err(GenerateError::PlainHttp(shown).into());
    }
    let first = opts.base_port.unwrap_or_else(|| next_port(&layout));
    // A layout serving HTTPS needs its CA key back from offline storage to sign the node's
    // certificate.
    let ca = layout
        .api_ca
        .as_ref()
        .map(|record| super::tls::ApiCa::load(&opts.dir, record))
        .transpose()?;
    let node = plan_node(name, stem, (host, bind), first, &layout, ca.is_some())?;
    let (cert_file, cert_key_file) = super::tls::node_files(&opts.dir, &node.stem);

    let files = NewFiles {
        key: opts.dir.join("keys").join(format!("{}.key", node.stem)),
        config: Path::new("nodes").join(format!("{}.toml", node.stem)),
        layout: layout_file,
    };
    let staged = staged_layout(&files.layout);
    let bundle = super::bundle::bundle_dir(&opts.dir, &node.stem);
    for path in [
        &files.key,
        &opts.dir.join(&files.config),
        &opts.dir.join("data").join(&node.stem),
        &staged,
        &cert_file,
        &cert_key_file,
        &bundle,
    ] {
        if path.exists() {
            return Err(AddNodeError::AlreadyExists(path.clone()));
        }
    }

    let validity = Validity::days_from(now, opts.valid_days);
    let mut raw = zone.config_for(
        &node,
        delegation_hex(&root, &opts.zone, node.key.public(), validity),
    );
    if ca.is_some() {
        raw.api = Some(super::tls::with_tls(
            raw.api.take().unwrap_or_default(),
            &node.stem,
        ));
    }
    let layout_node = LayoutNode {
        name: node.name.clone(),
        config: files.config.clone(),
        api_url: node.api_url(),
        raft_addr: node.raft_addr(),
        p2p_addr: node.dial.clone(),
    };
    zone_mut(&mut layout, &opts.zone)
        .ok_or_else(|| GenerateError::Inconsistent(format!("zone {} vanished", opts.zone)))?
        .nodes
        .push(layout_node.clone());

    let mut created = Vec::new();
    let written = match &ca {
        Some(ca) => {
            let issued = ca.issue(
                &opts.dir,
                &node.stem,
                node.name.as_str(),
                &node.host,
                validity,
            );
            // Whatever of the two files exists now was made by this call.
            created.extend(
                [cert_file, cert_key_file]
                    .into_iter()
                    .filter(|p| p.exists()),
            );
            issued.map_err(AddNodeError::from)
        }
        None => Ok(()),
    }
    // The bundle before `layout.json` is replaced, which comes last: a failure leaves the
    // layout as it was.
    .and_then(|()| {
        super::bundle::write(&opts.dir, &node.stem, &raw, &node.key, now)
            .map_err(AddNodeError::from)
    })
    .and_then(|()| files.write(&opts.dir, &node.key, &raw, &layout, now, &mut created));
    if written.is_err() {
        // Only files this call created are removed; a failure to remove one changes nothing
        // about the error the operator has to see.
        for path in &created {
            let _ = std::fs::remove_file(path);
        }
        // It did not exist before this call (checked above).
        let _ = std::fs::remove_dir_all(&bundle);
    }
    let warnings = written?;
    Ok(AddedNode {
        warnings,
        config_file: opts.dir.join(&files.config),
        key_file: files.key,
        bundle: super::bundle_dir(&opts.dir, &node.stem),
        public_key: node.key.public(),
        node: layout_node,
        member_api_url: zone.source_api_url,
        admin_token: zone.admin_token,
    })
}

/// The zone being grown, as its existing configs describe it.
struct Zone {
    /// The zone's first node's config, validated.
    source: NodeConfig,
    /// The same file as written, copied into the new config.
    source_raw: RawConfig,
    /// Base URL of the first node's API.
    source_api_url: String,
    /// How others dial the first node.
    source_dial: Multiaddr,
    /// Each node of the zone in `layout.json` order, as its own config describes it.
    members: Vec<Member>,
    /// The config file stems and names of the zone's nodes, to number the new one.
    taken: Vec<(String, NodeName)>,
    /// Where the zone's nodes are reached, if they share one host.
    host: Option<Host>,
    /// The zone's admin token.
    admin_token: String,
}

impl Zone {
    /// Finds the zone in the layout and loads every config of it.
    fn read(
        opts: &AddNodeOptions,
        layout: &Layout,
        layout_file: &Path,
        now: Timestamp,
    ) -> Result<Self, AddNodeError> {
        let zone = layout
            .exchanges
            .iter()
            .flat_map(|e| &e.zones)
            .find(|z| z.id == opts.zone)
            .ok_or_else(|| AddNodeError::UnknownZone {
                zone: opts.zone.clone(),
                layout: layout_file.to_owned(),
                known: zone_list(&layout.exchanges),
            })?;
        let first = zone
            .nodes
            .first()
            .ok_or_else(|| AddNodeError::EmptyZone(opts.zone.clone()))?;
        let mut members = Vec::new();
        let mut source = None;
        for node in &zone.nodes {
            let path = opts.dir.join(&node.config);
            let loaded = crate::load(&path, now)
                .map_err(|source| AddNodeError::ExistingConfig { path, source })?;
            let own = loaded.config.own_member().cloned().ok_or_else(|| {
                GenerateError::Inconsistent(format!("{} lists no own member", node.name))
            })?;
            members.push(own);
            source.get_or_insert(loaded.config);
        }
        let source = source.ok_or_else(|| AddNodeError::EmptyZone(opts.zone.clone()))?;
        let source_path = opts.dir.join(&first.config);
        let text = std::fs::read_to_string(&source_path).map_err(|source| {
            AddNodeError::ExistingConfig {
                path: source_path.clone(),
                source: ConfigError::Io {
                    path: source_path.clone(),
                    source,
                },
            }
        })?;
        let source_raw = parse_raw(&text).map_err(|v| AddNodeError::ExistingConfig {
            path: source_path,
            source: ConfigError::Invalid(vec![v]),
        })?;
        Ok(Zone {
            source,
            source_raw,
            source_api_url: first.api_url.clone(),
            source_dial: first.p2p_addr.clone(),
            members,
            taken: zone
                .nodes
                .iter()
                .map(|n| (file_stem(&n.config), n.name.clone()))
                .collect(),
            host: Some(first.raft_addr.host.clone())
                .filter(|h| zone.nodes.iter().all(|n| n.raft_addr.host == *h)),
            admin_token: zone.tokens.admin.clone(),
        })
    }

    /// One above the highest `n` among `<exchange>-<zone>-<n>` config files and `<zone>-<n>`
    /// names, so a number is never reused while its files or name may still be around.
    fn next_number(&self, exchange: &str, zone_name: &str) -> u32 {
        let stem_prefix = format!("{exchange}-{zone_name}-");
        let name_prefix = format!("{zone_name}-");
        let numbered =
            |text: &str, prefix: &str| -> Option<u32> { text.strip_prefix(prefix)?.parse().ok() };
        self.taken
            .iter()
            .flat_map(|(stem, name)| {
                [
                    numbered(stem, &stem_prefix),
                    numbered(name.as_str(), &name_prefix),
                ]
            })
            .flatten()
            .max()
            .unwrap_or(0)
            .saturating_add(1)
    }

    /// The new node's config: the first node's, with this node's identity, addresses and
    /// delegation, the grown member list, and the first node added to the gossip peers (its
    /// own list leaves it out).
    fn config_for(&self, node: &PlannedNode, delegation: String) -> RawConfig {
        let mut raw = self.source_raw.clone();
        raw.node = RawNode {
            name: node.name.to_string(),
            key_file: format!("../keys/{}.key", node.stem),
            data_dir: format!("../data/{}", node.stem),
        };
        raw.listen = RawListen {
            api: node.api.to_string(),
            raft: node.raft.to_string(),
            p2p: node.p2p.to_string(),
        };
        raw.zone.delegation = delegation;
        raw.zone.members = self.members.iter().map(raw_member).collect();
        raw.zone.members.push(member(node));
        let mut bootstrap = raw.gossip.take().map(|g| g.bootstrap).unwrap_or_default();
        let source_dial = self.source_dial.to_string();
        if !bootstrap.contains(&source_dial) {
            bootstrap.insert(0, source_dial);
        }
        raw.gossip = Some(RawGossip { bootstrap });
        raw
    }
}

/// The paths [`add_node`] creates or replaces.
struct NewFiles {
    /// The node's key file.
    key: PathBuf,
    /// The node's config, relative to the layout directory.
    config: PathBuf,
    /// `layout.json`.
    layout: PathBuf,
}

impl NewFiles {
    /// Writes the key and the config, loads the config back, then replaces `layout.json`;
    /// returns the config's warnings. Every file created is recorded in `created`, so that a
    /// failure can take it back.
    fn write(
        &self,
        dir: &Path,
        key: &Keypair,
        raw: &RawConfig,
        layout: &Layout,
        now: Timestamp,
        created: &mut Vec<PathBuf>,
    ) -> Result<Vec<Violation>, AddNodeError> {
        write_key_file(&self.key, key).map_err(|source| io_error(&self.key, source))?;
        created.push(self.key.clone());
        let config = dir.join(&self.config);
        let written = write_raw_config(&config, raw, now);
        let refused = matches!(
            &written,
            Err(GenerateError::Io { source, .. }) if source.kind() == ErrorKind::AlreadyExists
        );
        if !refused {
            created.push(config);
        }
        let warnings = written?;
        let json = serde_json::to_string_pretty(layout)
            .map_err(|e| GenerateError::Inconsistent(format!("layout.json: {e}")))?;
        // Written aside and renamed, so that `layout.json` is whole at every moment and keeps
        // mode 0600; `write_secret` never overwrites, the rename replaces.
        let staged = staged_layout(&self.layout);
        write_secret(&staged, format!("{json}\n").as_bytes())
            .map_err(|source| io_error(&staged, source))?;
        created.push(staged.clone());
        std::fs::rename(&staged, &self.layout).map_err(|source| io_error(&self.layout, source))?;
        Ok(warnings)
    }
}

pub(super) fn read_layout(path: &Path) -> Result<Layout, AddNodeError> {
    let text = std::fs::read_to_string(path).map_err(|source| AddNodeError::ReadLayout {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| AddNodeError::ParseLayout {
        path: path.to_owned(),
        source,
    })
}

fn staged_layout(layout_file: &Path) -> PathBuf {
    layout_file.with_extension("json.new")
}

fn zone_mut<'a>(layout: &'a mut Layout, zone: &ZoneId) -> Option<&'a mut super::LayoutZone> {
    layout
        .exchanges
        .iter_mut()
        .flat_map(|e| &mut e.zones)
        .find(|z| z.id == *zone)
}

pub(super) fn zone_list(exchanges: &[LayoutExchange]) -> String {
    let zones: Vec<String> = exchanges
        .iter()
        .flat_map(|e| &e.zones)
        .map(|z| z.id.to_string())
        .collect();
    zones.join(", ")
}

pub(super) fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn raw_member(m: &Member) -> RawMember {
    RawMember {
        name: m.name.to_string(),
        raft_addr: m.raft_addr.to_string(),
        api_url: m.api_url.clone(),
        public_key: m.public_key.to_base64(),
    }
}

/// The new node with a fresh key, on ports `first` (API), `first + 1` (Raft) and `first + 2`
/// (libp2p) of `host`, listening on `bind`, none of them a port of `layout`.
fn plan_node(
    name: NodeName,
    stem: String,
    (host, bind): (Host, IpAddr),
    first: u16,
    layout: &Layout,
    https: bool,
) -> Result<PlannedNode, AddNodeError> {
    let last = u32::from(first) + 2;
    let (Some(raft), Some(p2p)) = (first.checked_add(1), first.checked_add(2)) else {
        return Err(AddNodeError::Ports { first, last });
    };
    if first == 0 {
        return Err(AddNodeError::Ports { first, last });
    }
    let used = used_addrs(layout);
    for port in [first, raft, p2p] {
        let addr = host.with_port(port);
        // `localhost` and 127.0.0.1 are one place.
        if let Some((_, node)) = used
            .iter()
            .find(|(a, _)| a.host.place() == host.place() && a.port == port)
        {
            return Err(AddNodeError::PortTaken {
                addr,
                node: node.clone(),
            });
        }
    }
    let key = Keypair::generate();
    let listen = Multiaddr::from(bind).with(Protocol::Tcp(p2p));
    Ok(PlannedNode {
        name,
        stem,
        dial: host.multiaddr(p2p).with(Protocol::P2p(peer_id(&key)?)),
        key,
        api: SocketAddr::new(bind, first),
        raft: SocketAddr::new(bind, raft),
        host,
        p2p: listen,
        https,
    })
}

/// The port after the highest one any node of the layout uses; 0 (refused later) if none is
/// left.
fn next_port(layout: &Layout) -> u16 {
    let highest = used_addrs(layout)
        .iter()
        .map(|(a, _)| a.port)
        .max()
        .unwrap_or(LayoutOptions::DEFAULT_BASE_PORT - 1);
    highest.checked_add(1).unwrap_or(0)
}

/// Every address a node of the layout is reached at, with the node.
fn used_addrs(layout: &Layout) -> Vec<(HostPort, NodeName)> {
    let mut used = Vec::new();
    for node in layout
        .exchanges
        .iter()
        .flat_map(|e| &e.zones)
        .flat_map(|z| &z.nodes)
    {
        let api = node
            .api_url
            .split_once("://")
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|authority| authority.parse().ok());
        let p2p = p2p_addr(&node.p2p_addr);
        for addr in [api, Some(node.raft_addr.clone()), p2p]
            .into_iter()
            .flatten()
        {
            used.push((addr, node.name.clone()));
        }
    }
    used
}

/// The host and TCP port of a libp2p address such as `/ip4/127.0.0.1/tcp/7102/p2p/…` or
/// `/dns/xc-1.example.cn/tcp/7102/p2p/…`.
fn p2p_addr(addr: &Multiaddr) -> Option<HostPort> {
    let mut host = None;
    let mut port = None;
    for part in addr.iter() {
        match part {
            Protocol::Ip4(a) => host = Some(Host::from(IpAddr::V4(a))),
            Protocol::Ip6(a) => host = Some(Host::from(IpAddr::V6(a))),
            Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name) => {
                host = name.parse().ok();
            }
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    Some(HostPort {
        host: host?,
        port: port?,
    })
}

/// The root key file of `exchange` in a layout: `root/<exchange>-root.key`, or where layouts
/// written before the root keys had their own folder kept it, `keys/<exchange>-root.key`.
/// The root key of `exchange` in the layout `dir`, which must be `expected`, the key its nodes'
/// configs trust.
pub(super) fn root_key(
    dir: &Path,
    exchange: &xchg_protocol::ExchangeId,
    expected: PublicKey,
) -> Result<Keypair, AddNodeError> {
    let root_file = root_key_in(dir, exchange);
    let root = read_key_file(&root_file)?;
    if root.public() != expected {
        return Err(AddNodeError::RootKeyMismatch {
            path: root_file,
            found: root.public().to_base64(),
            expected: expected.to_base64(),
        });
    }
    Ok(root)
}

fn root_key_in(dir: &Path, exchange: &xchg_protocol::ExchangeId) -> PathBuf {
    let file = super::root_key_file(dir, exchange);
    let older = dir.join("keys").join(format!("{exchange}-root.key"));
    if !file.exists() && older.exists() {
        return older;
    }
    file
}
