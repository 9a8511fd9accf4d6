//! The layout generator: a whole federation's keys, node configs and tokens in one directory.
//!
//! ```text
//! out/layout.json                      what was generated, tokens included (mode 0600)
//! out/root/<exchange>-root.key         exchange root keys (folder 0700, files 0600)
//! out/keys/<exchange>-<zone>-<n>.key   node keys (folder 0700, files 0600)
//! out/nodes/<exchange>-<zone>-<n>.toml node configs (folder 0700, files 0600); paths inside
//!                                      are relative to nodes/
//! out/bundles/<exchange>-<zone>-<n>/   one folder per node to copy to its machine: its config
//!                                      (node.toml), key, and API certificate ([`bundle`])
//! ```
//!
//! The root keys have a folder of their own because they belong on no node: a root key signs
//! delegations and revocations for its whole exchange, so it is kept offline and brought out
//! only for `xchg config add-node` and `xchg federation revoke`; `keys/` is what a node's
//! machine needs (its own key file). Every folder is created with mode 0700 and every file
//! with mode 0600 (set when it is created, so whatever the umask; nothing is chmod-ed after).
//!
//! Nodes are numbered `i = 0, 1, 2, ...` over the whole layout in layout order (exchanges, their
//! zones hub first, then nodes) and get ports `base + 3i` (API), `base + 3i + 1` (Raft) and
//! `base + 3i + 2` (libp2p). Nothing is ever overwritten: an existing `layout.json` or key file
//! stops the run. Every written config is loaded back before `layout.json` is written, so a run
//! that returns `Ok` produced configs a node accepts.
//!
//! [`add_node`] grows one zone of a written layout by a node, numbered and ported after the
//! others, without touching the existing configs; [`renew`] signs new delegations (and API
//! certificates) for its nodes. A layout is described by an [`Inventory`]; the built-in ones
//! are the inventories in `federation-config/examples/`.

mod add;
mod bundle;
mod inventory;
mod parties;
mod plan;
mod render;
mod renew;
mod tls;

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use multiaddr::Multiaddr;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use xchg_protocol::{ExchangeId, NodeName, PartyId, Timestamp, ZoneId};

use crate::model::RaftTuning;
use crate::raw::RawConfig;
use crate::role::Role;
use crate::secret::{create_private_dir, write_key_file, write_secret};
use crate::violation::{ConfigError, Violation};
use crate::{Host, HostPort};
pub use add::{AddNodeError, AddNodeOptions, AddedNode, JoinRequest, add_node};
pub use bundle::{BUNDLE_CONFIG, BUNDLE_DIR, bundle_dir};
pub use inventory::{
    INVENTORY_VERSION, Inventory, InventoryContact, InventoryDefaults, InventoryExchange,
    InventoryNode, InventoryOutside, InventoryParty, InventoryZone, MAX_INVENTORY_BYTES,
};
pub use parties::{DemoRole, demo_profile, demo_provider};
use plan::Plan;
use render::{Position, Validity};
pub use renew::{RenewOptions, Renewed, RenewedNode, renew};
pub use tls::{CA_CERT_FILE, LayoutApiCa, TLS_DIR, ca_key_file, certificate_not_after};

/// Which federation to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutKind {
    /// `xuchang`: the reference layout of DESIGN.md; the Xuchang exchange with its municipal hub
    /// and nine county and district zones, plus the Zhengzhou exchange as an outside peer.
    Xuchang,
    /// `single-zone`: only `xuchang/municipal`.
    SingleZone,
    /// `two-exchanges`: `xuchang/municipal` and `zhengzhou/main`, recognising each other.
    TwoExchanges,
    /// `mesh-N`: N exchanges `ex-001` … of one zone `main` each, every one recognising every
    /// other (the simulator's scale runs; not listed in [`LayoutKind::ALL`]).
    Mesh {
        /// How many exchanges, 2 to 999.
        exchanges: u16,
    },
}

impl LayoutKind {
    /// Every kind, in the order the CLI lists them.
    pub const ALL: [LayoutKind; 3] = [
        LayoutKind::Xuchang,
        LayoutKind::SingleZone,
        LayoutKind::TwoExchanges,
    ];

    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            LayoutKind::Xuchang => "xuchang",
            LayoutKind::SingleZone => "single-zone",
            LayoutKind::TwoExchanges => "two-exchanges",
            LayoutKind::Mesh { .. } => "mesh",
        }
    }
}

impl fmt::Display for LayoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutKind::Mesh { exchanges } => write!(f, "mesh-{exchanges}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// A string that names no layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown layout {0:?}; expected xuchang, single-zone, two-exchanges or mesh-N (N from 2 to 999)"
)]
pub struct UnknownLayout(pub String);

impl FromStr for LayoutKind {
    type Err = UnknownLayout;
    fn from_str(s: &str) -> Result<Self, UnknownLayout> {
        if let Some(n) = s.strip_prefix("mesh-") {
            return match n.parse::<u16>() {
                Ok(exchanges) if (2..=999).contains(&exchanges) => {
                    Ok(LayoutKind::Mesh { exchanges })
                }
                _ => Err(UnknownLayout(s.to_owned())),
            };
        }
        LayoutKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownLayout(s.to_owned()))
    }
}

/// What to generate and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutOptions {
    /// Output directory; created if missing.
    pub out: PathBuf,
    /// Which federation.
    pub layout: LayoutKind,
    /// Nodes in every zone, 1 to 9; odd numbers tolerate failures best.
    pub nodes_per_zone: usize,
    /// First port; node `i` uses `base_port + 3i` to `base_port + 3i + 2`.
    pub base_port: u16,
    /// The address or host name every node is reached at (and, an address, listens on).
    pub host: Host,
    /// How long the node delegations are valid, in days from now.
    pub valid_days: u32,
    /// The `[raft]` section every node config gets.
    pub raft: RaftTuning,
    /// Serve every API over HTTPS, with a certificate per node from a certificate authority
    /// made for the layout (`--api-tls`).
    pub api_tls: bool,
}

impl LayoutOptions {
    /// Default nodes per zone: three tolerate one failed node.
    pub const DEFAULT_NODES_PER_ZONE: usize = 3;
    /// Default first port.
    pub const DEFAULT_BASE_PORT: u16 = 7100;
    /// Default delegation validity in days.
    pub const DEFAULT_VALID_DAYS: u32 = 365;

    /// Options with the defaults: 3 nodes per zone, ports from 7100, 127.0.0.1, 365 days.
    pub fn new(out: impl Into<PathBuf>, layout: LayoutKind) -> Self {
        LayoutOptions {
            out: out.into(),
            layout,
            nodes_per_zone: Self::DEFAULT_NODES_PER_ZONE,
            base_port: Self::DEFAULT_BASE_PORT,
            host: Host::LOCALHOST,
            valid_days: Self::DEFAULT_VALID_DAYS,
            raft: RaftTuning::default(),
            api_tls: false,
        }
    }
}

/// `layout.json`: everything generated, including the tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// In layout order: the Xuchang exchange first.
    pub exchanges: Vec<LayoutExchange>,
    /// The certificate authority of the nodes' HTTPS APIs, if the layout was generated with
    /// `--api-tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_ca: Option<LayoutApiCa>,
}

/// One exchange of a layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutExchange {
    /// Exchange id.
    pub id: ExchangeId,
    /// Name shown to people.
    pub display_name: String,
    /// Root public key, standard base64 as in the configs.
    pub root_public_key: String,
    /// Zones, the hub first.
    pub zones: Vec<LayoutZone>,
}

/// One zone of a layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutZone {
    /// Zone id.
    pub id: ZoneId,
    /// Name shown to people.
    pub display_name: String,
    /// The zone's initial tokens, one per role; the configs hold only their hashes.
    pub tokens: ZoneTokens,
    /// The demo party the provider token is bound to: it submits and updates only listings
    /// whose `provider.id` is this party's id. A founding party of the zone (admitted by its
    /// configuration).
    pub provider_party: LayoutParty,
    /// The demo party the buyer token is bound to, a founding party of the zone too. Layouts
    /// written before buyer tokens were bound to parties have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer_party: Option<LayoutParty>,
    /// The zone's nodes, in port order.
    pub nodes: Vec<LayoutNode>,
}

/// The initial bearer tokens of one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneTokens {
    /// Token of the admin role.
    pub admin: String,
    /// Token of the operator role.
    pub operator: String,
    /// Token of the provider role.
    pub provider: String,
    /// Token of the buyer role.
    pub buyer: String,
    /// Token of the regulator role.
    pub regulator: String,
}

impl ZoneTokens {
    /// The token of `role`.
    pub fn get(&self, role: Role) -> &str {
        match role {
            Role::Admin => &self.admin,
            Role::Operator => &self.operator,
            Role::Provider => &self.provider,
            Role::Buyer => &self.buyer,
            Role::Regulator => &self.regulator,
        }
    }
}

/// A party (a provider or buyer organisation) as `layout.json` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutParty {
    /// Party id: what a listing's `provider.id` and a token's `party` hold.
    pub id: PartyId,
    /// Its legal name: a listing's `provider.name`.
    pub name: String,
}

/// One node of a layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutNode {
    /// Node name, unique in its zone.
    pub name: NodeName,
    /// Its config file, relative to the layout directory, e.g. `nodes/xuchang-yuzhou-1.toml`.
    pub config: PathBuf,
    /// Base URL of its HTTP API.
    pub api_url: String,
    /// Its Raft RPC address.
    pub raft_addr: HostPort,
    /// Its libp2p address including `/p2p/<peer id>`, ready to dial.
    pub p2p_addr: Multiaddr,
}

/// Why a layout could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// `nodes_per_zone` is outside 1..=9.
    #[error("{0} nodes per zone; expected 1 to 9")]
    NodesPerZone(usize),
    /// `valid_days` is 0 or above [`MAX_VALID_DAYS`].
    #[error("delegations valid for {0} days: expected 1 to {MAX_VALID_DAYS} days")]
    ValidDays(u32),
    /// The ports do not fit.
    #[error(
        "{nodes} nodes need ports {base_port} to {last}, but ports must lie in 1..=65535; choose \
         another base port"
    )]
    Ports {
        /// The first port asked for.
        base_port: u16,
        /// The last port the layout would need.
        last: u64,
        /// How many nodes the layout has.
        nodes: usize,
    },
    /// The output directory already holds a layout, or a file this run would write.
    #[error(
        "{} already exists; refusing to overwrite a layout's keys (choose another directory, or \
         remove the old layout or what an interrupted run left there)",
        .0.display()
    )]
    AlreadyExists(PathBuf),
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The nodes would serve plain HTTP on an address other than loopback.
    #[error(
        "the nodes would serve plain HTTP at {0}, and bearer tokens would cross the \
         network in clear text: serve the APIs over HTTPS (xchg config generate --api-tls, or \
         api_tls = true in an inventory: a certificate for each node from a CA made for the \
         layout); a layout generated without it can add nodes on loopback only"
    )]
    PlainHttp(Host),
    /// A certificate would outlast the layout's API CA.
    #[error(
        "the layout's API certificate authority (api-ca.pem) is valid until {ca}, and a \
         certificate valid until {wanted} would outlast it (clients that check the whole chain \
         would refuse it then): renew the CA first with `xchg config renew --renew-ca`, or ask \
         for fewer days"
    )]
    CaExpires {
        /// When the CA's certificate runs out.
        ca: Timestamp,
        /// When the certificate asked for would.
        wanted: Timestamp,
    },
    /// The layout serves HTTPS and its CA key is not in `root/`.
    #[error(
        "{} is missing: this layout serves its APIs over HTTPS, and the new node's certificate is \
         signed with the layout's CA key; bring it back from offline storage",
        .0.display()
    )]
    MissingCaKey(PathBuf),
    /// A generated config did not load: a bug in the generator.
    #[error("generated config {} does not load:\n{source}", path.display())]
    SelfCheck {
        /// The config file.
        path: PathBuf,
        /// Its violations.
        source: ConfigError,
    },
    /// The inventory breaks at least one rule: every error, each with its TOML path.
    #[error("the inventory is invalid:\n{0}")]
    Inventory(ConfigError),
    /// A built-in layout produced an identifier or address the protocol refuses: a bug in the
    /// layout tables.
    #[error("built-in layout is inconsistent: {0}")]
    Inconsistent(String),
}

/// Generates a layout into `opts.out`, with delegations valid from a day before `now` until
/// `valid_days` after it. Keys and tokens come from the operating system's random source.
///
/// # Errors
/// [`GenerateError`]: bad options, an existing layout or key file, an IO failure, or (a bug) a
/// generated config that does not load.
pub fn generate(opts: &LayoutOptions, now: Timestamp) -> Result<Layout, GenerateError> {
    if !NODES_PER_ZONE.contains(&opts.nodes_per_zone) {
        return Err(GenerateError::NodesPerZone(opts.nodes_per_zone));
    }
    if !(1..=MAX_VALID_DAYS).contains(&opts.valid_days) {
        return Err(GenerateError::ValidDays(opts.valid_days));
    }
    if !opts.api_tls && !opts.host.is_loopback() {
        return Err(GenerateError::PlainHttp(opts.host.clone()));
    }
    let inventory = Inventory::builtin(opts)?;
    let total: usize = inventory
        .exchanges
        .iter()
        .flat_map(|e| &e.zones)
        .map(|z| inventory.nodes_of(z).len())
        .sum();
    let last = u64::from(opts.base_port) + 3 * total as u64 - 1;
    if opts.base_port == 0 || last > u64::from(u16::MAX) {
        return Err(GenerateError::Ports {
            base_port: opts.base_port,
            last,
            nodes: total,
        });
    }
    generate_from(&inventory, &opts.out, opts.raft, now)
}

/// Generates the federation `inventory` describes into `out`, as [`generate`] does, every
/// rule of the inventory checked before anything is written.
///
/// # Errors
/// [`GenerateError::Inventory`] with every broken rule of the inventory; otherwise as
/// [`generate`].
pub fn generate_from(
    inventory: &Inventory,
    out: &Path,
    raft: RaftTuning,
    now: Timestamp,
) -> Result<Layout, GenerateError> {
    let profiles = inventory.check()?;
    let layout_file = out.join("layout.json");
    if layout_file.exists() {
        return Err(GenerateError::AlreadyExists(layout_file));
    }
    let plan = plan::plan(inventory, &profiles, &mut OsRng)?;
    // Everything this run would write, checked before the first file: a directory left by an
    // interrupted run, or another layout's files, stop it with nothing written.
    if let Some(taken) = planned_files(out, &plan, inventory.api_tls())
        .into_iter()
        .find(|f| f.exists())
    {
        return Err(GenerateError::AlreadyExists(taken));
    }
    let validity = Validity::days_from(now, inventory.valid_days());
    let keys = out.join("keys");
    let roots = out.join(ROOT_KEY_DIR);
    let nodes = out.join("nodes");
    // The layout directory holds every secret of the federation (tokens, keys): private when
    // this run creates it; an existing directory keeps the modes its owner chose.
    for dir in [out, &keys, &roots, &nodes] {
        create_private_dir(dir).map_err(|source| io_error(dir, source))?;
    }
    let ca = if inventory.api_tls() {
        let first = plan.exchanges.first().map(|e| e.id.to_string());
        let ca = tls::ApiCa::create(first.as_deref().unwrap_or("layout"), now)?;
        ca.write(out)?;
        Some(ca)
    } else {
        None
    };
    let mut layout = Layout {
        exchanges: Vec::new(),
        api_ca: ca.as_ref().map(tls::ApiCa::record),
    };
    for (e, ex) in plan.exchanges.iter().enumerate() {
        let root_file = root_key_file(out, &ex.id);
        write_key_file(&root_file, &ex.root).map_err(|source| io_error(&root_file, source))?;
        let mut zones = Vec::new();
        for (z, zone) in ex.zones.iter().enumerate() {
            let mut layout_nodes = Vec::new();
            for (n, node) in zone.nodes.iter().enumerate() {
                let key_file = keys.join(format!("{}.key", node.stem));
                write_key_file(&key_file, &node.key)
                    .map_err(|source| io_error(&key_file, source))?;
                let at = Position {
                    exchange: e,
                    zone: z,
                    node: n,
                };
                if let Some(ca) = &ca {
                    ca.issue(out, &node.stem, node.name.as_str(), &node.host, validity)?;
                }
                let config = Path::new("nodes").join(format!("{}.toml", node.stem));
                let raw = write_config(&out.join(&config), &plan, at, validity, raft, now)?;
                bundle::write(out, &node.stem, &raw, &node.key, now)?;
                layout_nodes.push(LayoutNode {
                    name: node.name.clone(),
                    config,
                    api_url: node.api_url(),
                    raft_addr: node.raft_addr(),
                    p2p_addr: node.dial.clone(),
                });
            }
            zones.push(LayoutZone {
                id: zone.id.clone(),
                display_name: zone.display_name.to_owned(),
                tokens: zone.tokens.clone(),
                provider_party: zone.provider_party.clone(),
                buyer_party: Some(zone.buyer_party.clone()),
                nodes: layout_nodes,
            });
        }
        layout.exchanges.push(LayoutExchange {
            id: ex.id.clone(),
            display_name: ex.display_name.to_owned(),
            root_public_key: ex.root.public().to_base64(),
            zones,
        });
    }
    let json = serde_json::to_string_pretty(&layout)
        .map_err(|e| GenerateError::Inconsistent(format!("layout.json: {e}")))?;
    write_secret(&layout_file, format!("{json}\n").as_bytes())
        .map_err(|source| io_error(&layout_file, source))?;
    Ok(layout)
}

/// How many nodes a zone may have.
pub(super) const NODES_PER_ZONE: std::ops::RangeInclusive<usize> = 1..=9;

/// The longest a delegation (and a node's API certificate) may be valid: the API CA's own
/// lifetime, ten years.
pub const MAX_VALID_DAYS: u32 = 3650;

/// The folder of a layout that holds the exchange root keys, apart from the node keys.
pub const ROOT_KEY_DIR: &str = "root";

/// Where a layout in `dir` keeps `exchange`'s root key: `root/<exchange>-root.key`.
pub fn root_key_file(dir: &Path, exchange: &ExchangeId) -> PathBuf {
    dir.join(ROOT_KEY_DIR).join(format!("{exchange}-root.key"))
}

/// Every file and bundle folder a run of `plan` writes into `out`.
fn planned_files(out: &Path, plan: &Plan, https: bool) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if https {
        files.push(out.join(tls::CA_CERT_FILE));
        files.push(tls::ca_key_file(out));
    }
    for ex in &plan.exchanges {
        files.push(root_key_file(out, &ex.id));
        for node in ex.zones.iter().flat_map(|z| &z.nodes) {
            files.push(out.join("keys").join(format!("{}.key", node.stem)));
            files.push(out.join("nodes").join(format!("{}.toml", node.stem)));
            files.push(bundle::bundle_dir(out, &node.stem));
            if https {
                let (cert, key) = tls::node_files(out, &node.stem);
                files.extend([cert, key]);
            }
        }
    }
    files
}

/// Writes one node's config and loads it back; returns what it wrote.
fn write_config(
    path: &Path,
    plan: &Plan,
    at: Position,
    validity: Validity,
    raft: RaftTuning,
    now: Timestamp,
) -> Result<RawConfig, GenerateError> {
    let raw = render::node_config(plan, at, validity, raft)
        .ok_or_else(|| GenerateError::Inconsistent(format!("no node for {}", path.display())))?;
    write_raw_config(path, &raw, now)?;
    Ok(raw)
}

/// Writes a config file that must not exist yet and loads it back; returns its warnings.
fn write_raw_config(
    path: &Path,
    raw: &RawConfig,
    now: Timestamp,
) -> Result<Vec<Violation>, GenerateError> {
    let body = toml::to_string_pretty(raw)
        .map_err(|e| GenerateError::Inconsistent(format!("{}: {e}", path.display())))?;
    // The display name is the operator's text: no line break or other control character of it
    // reaches the comment (a line break would end the comment and start TOML).
    let display: String = raw
        .zone
        .display_name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = format!(
        "# xchg node configuration, schema version {}: node {} of zone {} ({display}).\n\
         # Written by the xchg layout generator. Paths are relative to this file's directory.\n\n\
         {body}",
        raw.version, raw.node.name, raw.zone.id
    );
    // Mode 0600 whatever the umask: a config names the keys a node trusts and the token hashes
    // it accepts, so no other user may change it (nor read it: it sits beside the keys).
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|source| io_error(path, source))?;
    file.write_all(text.as_bytes())
        .map_err(|source| io_error(path, source))?;
    crate::load(path, now)
        .map(|loaded| loaded.warnings)
        .map_err(|source| GenerateError::SelfCheck {
            path: path.to_owned(),
            source,
        })
}

fn io_error(path: &Path, source: std::io::Error) -> GenerateError {
    GenerateError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_kinds_parse_from_their_cli_names() {
        for kind in LayoutKind::ALL {
            assert_eq!(kind.to_string().parse::<LayoutKind>(), Ok(kind));
        }
        assert!("xuchang-city".parse::<LayoutKind>().is_err());
    }

    #[test]
    fn ports_beyond_65535_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = LayoutOptions::new(dir.path().join("out"), LayoutKind::Xuchang);
        opts.base_port = 65_500;
        let err = generate(&opts, Timestamp(1_767_225_600_000)).expect_err("33 nodes do not fit");
        assert!(
            matches!(err, GenerateError::Ports { nodes: 33, .. }),
            "{err}"
        );
        assert!(!opts.out.exists());
    }
}
