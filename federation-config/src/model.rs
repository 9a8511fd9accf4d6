//! The validated configuration: what a node runs with, built only by [`crate::parse`] and
//! [`crate::load`] from a file that passed every check.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use multiaddr::Multiaddr;
use xchg_protocol::{
    Classification, DeliveryMode, ExchangeId, NodeName, PartyId, PartyProfile, PublicKey,
    SignedDelegation, TrustStore, ZoneId,
};

use crate::role::Role;

/// One node's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// This node.
    pub node: NodeSection,
    /// Where it listens.
    pub listen: Listen,
    /// Its exchange.
    pub exchange: ExchangeSection,
    /// Its zone and the zone's members.
    pub zone: ZoneSection,
    /// Raft timing and log compaction.
    pub raft: RaftTuning,
    /// What may leave the zone.
    pub export: ExportPolicy,
    /// What it recognises from the other zones of its own exchange.
    pub sibling_agreement: Agreement,
    /// Where gossip starts.
    pub gossip: Gossip,
    /// Outside exchanges under a mutual-recognition agreement.
    pub outside: Vec<OutsideExchange>,
    /// HTTP API settings.
    pub api: ApiSection,
    /// The zone's founding parties (`[[parties]]`): admitted from the zone's start without an
    /// application; their ids and credit codes are unique.
    pub parties: Vec<PartyProfile>,
}

impl NodeConfig {
    /// This node's entry in `zone.members`; validation guarantees there is one.
    pub fn own_member(&self) -> Option<&Member> {
        self.zone.members.iter().find(|m| m.name == self.node.name)
    }

    /// A digest of the settings every member of the zone must share: the export policy, the
    /// sibling agreement, each outside exchange's id, root key and agreement (not display
    /// names or bootstrap addresses, which may differ), and the founding parties (which the
    /// catalog counts as admitted). Members compare it at run time.
    pub fn zone_policy_digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut outside: Vec<_> = self
            .outside
            .iter()
            .map(|o| {
                (
                    o.id.to_string(),
                    o.root_public_key.to_base64(),
                    &o.agreement,
                )
            })
            .collect();
        outside.sort_by(|a, b| a.0.cmp(&b.0));
        let mut parties: Vec<&PartyProfile> = self.parties.iter().collect();
        parties.sort_by(|a, b| a.id.cmp(&b.id));
        let text = format!(
            "{:?}|{:?}|{:?}",
            self.export, self.sibling_agreement, outside
        );
        // Appended only when there are founding parties, so a zone without any keeps the digest
        // its members computed before parties existed (members of two releases agree).
        let text = if parties.is_empty() {
            text
        } else {
            format!("{text}|{parties:?}")
        };
        Sha256::digest(text.as_bytes()).into()
    }

    /// The other members of the zone: the Raft peers.
    pub fn peers(&self) -> impl Iterator<Item = &Member> {
        self.zone
            .members
            .iter()
            .filter(|m| m.name != self.node.name)
    }

    /// The root keys this node trusts: its own exchange's and every outside exchange's.
    pub fn trust_store(&self) -> TrustStore {
        let mut trust = TrustStore::default();
        trust.trust(self.exchange.id.clone(), self.exchange.root_public_key);
        for outside in &self.outside {
            trust.trust(outside.id.clone(), outside.root_public_key);
        }
        trust
    }

    /// The agreement under which announcements from `exchange` are recognised: the sibling
    /// agreement for the own exchange, the outside agreement for a peer exchange, none otherwise.
    pub fn agreement_with(&self, exchange: &ExchangeId) -> Option<&Agreement> {
        if *exchange == self.exchange.id {
            return Some(&self.sibling_agreement);
        }
        self.outside
            .iter()
            .find(|o| o.id == *exchange)
            .map(|o| &o.agreement)
    }
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSection {
    /// This node's name, one of the zone's members.
    pub name: NodeName,
    /// The secret-key file, resolved against the config file's directory.
    pub key_file: PathBuf,
    /// The data directory, resolved against the config file's directory.
    pub data_dir: PathBuf,
}

/// `[listen]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// HTTP API.
    pub api: SocketAddr,
    /// Raft RPC (mutual TLS).
    pub raft: SocketAddr,
    /// libp2p.
    pub p2p: Multiaddr,
}

/// `[exchange]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSection {
    /// The exchange id.
    pub id: ExchangeId,
    /// Name shown to people.
    pub display_name: String,
    /// The root key that signs the exchange's node delegations.
    pub root_public_key: PublicKey,
}

/// `[zone]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSection {
    /// The zone id, a zone of the node's exchange.
    pub id: ZoneId,
    /// Name shown to people.
    pub display_name: String,
    /// This node's delegation: signed by the exchange root, for this zone and this node's key,
    /// valid when the file was loaded.
    pub delegation: SignedDelegation,
    /// Every node of the zone, this one included, in file order; names, Raft addresses and keys
    /// are distinct.
    pub members: Vec<Member>,
}

/// `[[zone.members]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Node name.
    pub name: NodeName,
    /// Raft RPC address: an IP address or a host name (resolved at each connection) and a port.
    pub raft_addr: crate::HostPort,
    /// Base URL of the member's HTTP API (`http://` or `https://`), without a trailing `/`.
    pub api_url: String,
    /// The member's node key, pinned for mutual TLS.
    pub public_key: PublicKey,
}

/// `[raft]`: timing and log compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTuning {
    /// Leader heartbeat interval, milliseconds.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomised election timeout, milliseconds; above the heartbeat.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomised election timeout, milliseconds; above the lower bound.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after at least this many applied entries; at least 1.
    pub snapshot_every_entries: u64,
    /// …and only once the Raft log written since the last snapshot is at least this
    /// percentage of the catalog's size, or 1 GiB (0: on the entry count alone); at most 1000.
    /// A snapshot is a full copy of the catalog, so this keeps its cost in proportion to what
    /// was written. Each node adds the same per-node stagger (up to a quarter) to both
    /// thresholds, so that a zone's members do not all copy their catalogs at once.
    pub snapshot_log_percent: u64,
    /// Log entries kept behind a snapshot before purging, so that a slightly lagging follower
    /// catches up from the log instead of a full snapshot.
    pub keep_log_entries: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat_ms: 250,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_every_entries: 10_000,
            snapshot_log_percent: 50,
            keep_log_entries: 1000,
        }
    }
}

/// `[export]`: the zone's export firewall settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportPolicy {
    /// Highest classification that may leave the zone; `public` or `general`.
    pub ceiling: Classification,
    /// What happens to products that contain personal information.
    pub personal_info: PersonalInfoExport,
}

impl Default for ExportPolicy {
    fn default() -> Self {
        ExportPolicy {
            ceiling: Classification::General,
            personal_info: PersonalInfoExport::InDomainOnly,
        }
    }
}

/// Whether products with personal information may be announced outside the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonalInfoExport {
    /// Only if every delivery mode keeps the data in its domain (可用不可见).
    InDomainOnly,
    /// Never.
    Never,
}

impl PersonalInfoExport {
    /// The text form in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            PersonalInfoExport::InDomainOnly => "in_domain_only",
            PersonalInfoExport::Never => "never",
        }
    }
}

/// What one side recognises from the other under a recognition agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// Categories recognised.
    pub categories: CategorySet,
    /// Highest classification recognised.
    pub max_classification: Classification,
    /// Delivery modes recognised; a listing qualifies if all its modes are in the set.
    pub delivery_modes: ModeSet,
    /// Whether only listings for whose version the zone holds a valid registration certificate
    /// from their origin zone are recognised (PROTOCOL.md 10.5).
    pub require_registration: bool,
}

impl Default for Agreement {
    /// The default sibling agreement: every category and mode, up to `general`.
    fn default() -> Self {
        Agreement {
            categories: CategorySet::All,
            max_classification: Classification::General,
            delivery_modes: ModeSet::All,
            require_registration: false,
        }
    }
}

/// A set of listing categories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CategorySet {
    /// Every category (`"*"`).
    All,
    /// Exactly these.
    Only(BTreeSet<String>),
}

impl CategorySet {
    /// Whether `category` is in the set.
    pub fn contains(&self, category: &str) -> bool {
        match self {
            CategorySet::All => true,
            CategorySet::Only(set) => set.contains(category),
        }
    }
}

/// A set of delivery modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeSet {
    /// Every mode (`"*"`).
    All,
    /// Exactly these.
    Only(BTreeSet<DeliveryMode>),
}

impl ModeSet {
    /// Whether `mode` is in the set.
    pub fn contains(&self, mode: DeliveryMode) -> bool {
        match self {
            ModeSet::All => true,
            ModeSet::Only(set) => set.contains(&mode),
        }
    }
}

/// `[gossip]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gossip {
    /// Multiaddrs dialled at start.
    pub bootstrap: Vec<Multiaddr>,
}

/// `[[outside]]`: an outside exchange under a mutual-recognition agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutsideExchange {
    /// Its id; never the node's own exchange.
    pub id: ExchangeId,
    /// Name shown to people.
    pub display_name: String,
    /// Its root key, trusted for delegations naming this exchange.
    pub root_public_key: PublicKey,
    /// Multiaddrs of some of its nodes.
    pub bootstrap: Vec<Multiaddr>,
    /// What this node recognises from it.
    pub agreement: Agreement,
}

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSection {
    /// Largest accepted request body, bytes.
    pub max_body_bytes: u64,
    /// The HTTP server's bounds on connections and time.
    pub limits: HttpLimits,
    /// The zone's initial role tokens, as hashes; distinct.
    pub tokens: Vec<TokenHash>,
    /// HTTPS: the certificate chain and key the API is served with; `None` serves plain HTTP,
    /// which validation allows only on a loopback address or with `allow_plain_http`.
    pub tls: Option<ApiTls>,
    /// Certificate authorities (a PEM file) trusted for other nodes' HTTPS APIs; without it
    /// this node reaches only plain-HTTP APIs.
    pub ca_cert: Option<PathBuf>,
}

/// `[api] tls_cert` and `tls_key`, resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTls {
    /// PEM certificate chain, this node's certificate first.
    pub cert: PathBuf,
    /// PEM private key of the certificate.
    pub key: PathBuf,
}

impl ApiSection {
    /// `https` when the API is served over TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The default request body limit: 1 MiB.
    pub const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;
    /// The highest request body limit a config may set: 16 MiB.
    pub const MAX_MAX_BODY_BYTES: u64 = 16 << 20;
}

/// How many connections the API serves at once and how long each may take: a client that
/// connects and stays silent, sends half a request, or never finishes its body is dropped, not
/// served forever (issue #12: 300 half-sent requests held 400 files open for good).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most connections open at once; 1 to [`HttpLimits::MAX_CONNECTIONS`]. Each costs a file
    /// descriptor, and the node needs others for its database, Raft and gossip, so the default
    /// stays well under the usual limit of 1024 open files.
    pub max_connections: u32,
    /// Milliseconds to receive a request's head once the node waits for it.
    pub header_read_timeout_ms: u64,
    /// Milliseconds a kept-alive connection may wait for its next request.
    pub idle_timeout_ms: u64,
    /// Milliseconds from a request's head to its answer, its body included.
    pub request_timeout_ms: u64,
}

impl HttpLimits {
    /// The highest `max_connections` a config may set.
    pub const MAX_CONNECTIONS: u32 = 65_536;
    /// The shortest timeout a config may set, milliseconds.
    pub const MIN_TIMEOUT_MS: u64 = 100;
    /// The longest timeout a config may set, milliseconds (one hour).
    pub const MAX_TIMEOUT_MS: u64 = 3_600_000;
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 512,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            request_timeout_ms: 60_000,
        }
    }
}

/// A role token, known only by its hash.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenHash {
    /// What the token may do.
    pub role: Role,
    /// SHA-256 of the token text ([`crate::token_hash`]).
    pub sha256: [u8; 32],
    /// The party it acts for; always present for a provider or buyer token. A provider token
    /// submits and updates only listings whose `provider.id` is this party.
    pub party: Option<PartyId>,
}
