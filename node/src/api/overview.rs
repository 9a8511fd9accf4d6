//! `GET /v1/federation/overview` and `GET /v1/federation/flows`: the hub's view of the
//! federation — every node it can reach with its Raft state, and what crossed this zone's
//! boundary, minute by minute.
//!
//! The overview asks each node's own `/v1/status` rather than trusting gossip, so a node that
//! is connected but stuck shows up as such. Only nodes whose identity is proven are shown or
//! asked (`federation::identity`): this zone's Raft members, at the API URLs of the membership,
//! and gossip peers whose key carries a valid delegation from a trusted root for the zone they
//! declare, at the API URL their identify agent declares on the address they connected from.
//! Every other peer is listed as unverified and never asked. Even a proven peer's URL is only
//! reduced to its origin and asked once with a short timeout, without redirects, its body
//! capped, and errors reported as a class, never as the remote text.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use xchg_federation_config::{NodeConfig, Role};
use xchg_protocol::{Timestamp, ZoneId};

use super::auth::Caller;
use super::error::ApiError;
use super::listings::query_error;
use super::{AppState, status};
use crate::catalog::tables::{outbox, recognitions};
use crate::federation::identity::Identity;
use crate::gossip::PeerInfo;
use crate::raft::MemberNode;

/// Most node APIs one overview asks; further URLs are left out.
pub const MAX_PROBES: usize = 128;
/// Status requests in flight at once.
const PROBE_CONCURRENCY: usize = 32;
/// How long one node may take to answer its status; a slower node is shown as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
/// How long a peer's API host name may take to resolve before it is not asked.
const NAME_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Most peers' API host names looked up for one overview.
const MAX_NAMED: usize = 32;
/// How long what a lookup found is reused, so that a dashboard polling the overview does not
/// look every name up again each time.
const NAME_CHECK_TTL: Duration = Duration::from_secs(60);
/// Most lookups remembered ([`NameChecks`]); past it they are forgotten and made again.
const MAX_NAME_CHECKS: usize = 1024;
/// Largest status document read (a real one is well under 4 KiB).
const MAX_STATUS_BYTES: usize = 64 * 1024;
/// Longest name, role or id kept from a remote status document.
const MAX_REMOTE_CHARS: usize = 128;
/// Most members of one zone taken from remote status documents.
const MAX_ZONE_MEMBERS: usize = 64;

/// `GET /v1/federation/overview` takes no parameters; any is refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverviewParams {}

/// The hub's view of the federation.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// The node that answered.
    #[serde(rename = "self")]
    pub this: SelfView,
    /// This node's exchange first, then the outside exchanges in config order.
    pub exchanges: Vec<ExchangeView>,
    /// Gossip peers of this node whose identity is proven, in other zones or in its own, with
    /// their message counts.
    pub gossip: Vec<GossipLink>,
    /// Gossip peers that proved nothing: shown as they declare themselves, never asked.
    pub unverified: Vec<UnverifiedPeer>,
    /// The signed audit tree head this node holds of each other zone it watches (PROTOCOL.md
    /// 12.7), by zone id: `consistent` false for a zone caught rewriting its history, with the
    /// `problem` and the `evidence` (the contradicting signed head and its proof).
    pub audit_heads: Vec<crate::federation::heads::ZoneHead>,
    /// When the view was assembled.
    pub at: Timestamp,
}

/// A gossip peer whose identity is not proven.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UnverifiedPeer {
    /// Its peer id.
    pub peer: String,
    /// Its identify agent, as it declares it (at most 256 characters).
    pub agent: Option<String>,
    /// The address it connected from.
    pub address: Option<String>,
    /// Why it is not verified.
    pub reason: String,
    /// Gossip messages it delivered to this node.
    pub messages: u64,
}

/// Which node answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SelfView {
    /// Its exchange id.
    pub exchange: String,
    /// Its zone id.
    pub zone: String,
    /// Its node name.
    pub node: String,
}

/// One exchange and the zones of it this node knows of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ExchangeView {
    /// Exchange id.
    pub id: String,
    /// Name shown to people, from this node's config.
    pub display_name: Option<String>,
    /// Its zones seen from here, this node's own first, then by id.
    pub zones: Vec<ZoneView>,
}

/// One zone and its nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ZoneView {
    /// Zone id.
    pub id: String,
    /// Name shown to people, known for this node's own zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Its nodes, by name.
    pub nodes: Vec<NodeView>,
}

/// One node as its own status document describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// API base URL, when this node knows one.
    pub api_url: Option<String>,
    /// Whether it answered its status in time.
    pub reachable: bool,
    /// Why it is not reachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `leader`, `follower`, `candidate` or `learner` (as the node says, or as a member list
    /// of its zone says when the node itself was not reached).
    pub role: Option<String>,
    /// The leader it knows of.
    pub leader: Option<String>,
    /// Its Raft term.
    pub term: Option<u64>,
    /// Highest committed index it knows.
    pub commit_index: Option<u64>,
    /// Highest index applied to its catalog.
    pub applied_index: Option<u64>,
    /// How far its catalog is behind the zone: the highest commit index any reachable node of
    /// the zone reports, minus its applied index.
    pub lag: Option<u64>,
}

/// A gossip connection of this node to a peer whose identity is proven.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GossipLink {
    /// The peer's zone (proven by membership or delegation).
    pub zone: String,
    /// The peer's node name: from the membership for this zone's members; as declared (or its
    /// peer id, if it declares none) for nodes of other zones.
    pub node: String,
    /// Gossip messages it delivered to this node.
    pub messages: u64,
    /// When it last delivered one.
    pub last_message_at: Option<Timestamp>,
}

/// A node API to ask for its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Origin of its API (`http://host:port`).
    pub api_url: String,
    /// The zone it is configured in or declares.
    pub zone: String,
    /// Its node name.
    pub node: String,
}

/// The parts of a remote `/v1/status` document the overview shows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RemoteStatus {
    /// Node name.
    pub node: String,
    /// Zone id.
    pub zone: String,
    /// The zone's name for people, if the node states it.
    #[serde(default)]
    pub zone_display_name: Option<String>,
    /// Raft role.
    pub role: String,
    /// Leader name.
    pub leader: Option<String>,
    /// Term.
    pub term: u64,
    /// Commit index.
    pub commit_index: u64,
    /// Applied index.
    pub applied_index: u64,
    /// The zone's members.
    #[serde(default)]
    pub members: Vec<RemoteMember>,
}

impl From<status::Status> for RemoteStatus {
    fn from(s: status::Status) -> Self {
        RemoteStatus {
            node: s.node,
            zone: s.zone,
            zone_display_name: Some(s.zone_display_name),
            role: s.role.to_owned(),
            leader: s.leader,
            term: s.term,
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            members: s
                .members
                .into_iter()
                .map(|m| RemoteMember {
                    name: m.name,
                    role: m.role.to_owned(),
                })
                .collect(),
        }
    }
}

/// A member in a remote status document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RemoteMember {
    /// Member name.
    pub name: String,
    /// Role as that node sees it.
    pub role: String,
}

/// What asking one target gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Whom we asked.
    pub target: Target,
    /// Its status, or why there is none.
    pub outcome: Result<RemoteStatus, String>,
}

/// Reduces an API URL to its origin, refusing anything but a plain `http(s)://host[:port]`
/// base (a path, query, fragment or credentials would let a peer steer the request).
pub fn api_origin(raw: &str) -> Option<String> {
    let url = reqwest::Url::parse(raw.trim()).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && matches!(url.path(), "" | "/")
        && url.query().is_none()
        && url.fragment().is_none();
    plain.then(|| url.origin().ascii_serialization())
}

/// The IP address of a multiaddr such as `/ip4/10.0.0.5/tcp/7102`.
fn ip_of_multiaddr(addr: &str) -> Option<String> {
    let mut parts = addr.split('/').skip(1);
    match (parts.next(), parts.next()) {
        (Some("ip4" | "ip6"), Some(ip)) => Some(ip.to_owned()),
        _ => None,
    }
}

/// Whether an API host and a connection's address are the same machine: equal, or both
/// loopback (a node connecting over loopback shows 127.0.0.1 whatever address it listens on).
fn same_host(api_host: &str, connected: &str) -> bool {
    if api_host == connected {
        return true;
    }
    match (
        api_host.parse::<std::net::IpAddr>(),
        connected.parse::<std::net::IpAddr>(),
    ) {
        (Ok(a), Ok(b)) => a.is_loopback() && b.is_loopback(),
        _ => false,
    }
}

/// Whether `zone` belongs to an exchange this node federates with.
fn known_zone(config: &NodeConfig, zone: &str) -> bool {
    zone.parse::<ZoneId>().is_ok_and(|z| {
        let exchange = z.exchange();
        exchange == config.exchange.id || config.outside.iter().any(|o| o.id == exchange)
    })
}

/// What a peer declares in its identify agent (PROTOCOL.md 7.1):
/// `<product>/<version> <zone id> <node name> <API base URL or ->`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The zone it declares.
    pub zone: String,
    /// The node name it declares.
    pub node: String,
    /// The origin of the API it declares; `None` for `-` (a peer without an xchg API).
    pub api_url: Option<String>,
}

/// Parses an identify agent of a zone this node federates with.
pub fn parse_agent(config: &NodeConfig, agent: &str) -> Option<Declared> {
    let mut words = agent.split_whitespace();
    let (Some(product), Some(zone), Some(node), Some(url), None) = (
        words.next(),
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) else {
        return None;
    };
    if !product.contains('/')
        || !known_zone(config, zone)
        || node.parse::<xchg_protocol::NodeName>().is_err()
    {
        return None;
    }
    let api_url = match url {
        "-" => None,
        url => Some(api_origin(url)?),
    };
    Some(Declared {
        zone: zone.to_owned(),
        node: node.to_owned(),
        api_url,
    })
}

/// Who to ask and what to show, from the membership and the gossip peers' proven identities.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Found {
    /// The APIs to ask, this zone's members first, one per origin, at most [`MAX_PROBES`].
    pub targets: Vec<Target>,
    /// APIs of proven peers declared by host name: asked only once the name is found to
    /// resolve to the address the peer connected from ([`confirm_named`]).
    pub named: Vec<Named>,
    /// Gossip links to proven peers.
    pub links: Vec<GossipLink>,
    /// Peers that proved nothing.
    pub unverified: Vec<UnverifiedPeer>,
}

/// Sorts what this node knows into APIs to ask, proven links and unverified peers. A member of
/// this zone is shown under its membership name; a peer with a delegation under the zone it
/// proved, and only if it declares that same zone; its declared API is asked only if it is on
/// the address the peer connected from (an API named by host name goes to [`Found::named`], to
/// be confirmed). Nothing a peer merely declares makes it a target.
pub fn find(config: &NodeConfig, members: &[MemberNode], peers: &[(PeerInfo, Identity)]) -> Found {
    let own_zone = config.zone.id.to_string();
    let mut found = Found::default();
    let own = members.iter().filter_map(|m| {
        Some(Target {
            api_url: api_origin(&m.api_url)?,
            zone: own_zone.clone(),
            node: m.name.clone(),
        })
    });
    let mut gossip_targets = Vec::new();
    for (p, identity) in peers {
        let unverified = |reason: String| UnverifiedPeer {
            peer: p.peer.clone(),
            agent: p.agent.clone(),
            address: p.address.clone(),
            reason,
            messages: p.messages,
        };
        let declared = p.agent.as_deref().and_then(|a| parse_agent(config, a));
        let (zone, node) = match identity {
            Identity::Unproven { reason } => {
                found.unverified.push(unverified(reason.clone()));
                continue;
            }
            Identity::Member { name } => (own_zone.clone(), name.clone()),
            Identity::Delegated { zone } => {
                let zone = zone.to_string();
                match &declared {
                    Some(d) if d.zone != zone => {
                        found.unverified.push(unverified(format!(
                            "declares zone {}, but its delegation is for {zone}",
                            d.zone
                        )));
                        continue;
                    }
                    Some(d) => {
                        let parsed = d.api_url.as_deref().and_then(|u| {
                            let url = reqwest::Url::parse(u).ok()?;
                            let host = url.host_str()?.trim_matches(['[', ']']).to_owned();
                            Some((host, url.port_or_known_default()?))
                        });
                        let connected = p.address.as_deref().and_then(ip_of_multiaddr);
                        if let (Some(url), Some((host, port)), Some(connected)) =
                            (&d.api_url, parsed, connected)
                        {
                            let target = Target {
                                api_url: url.clone(),
                                zone: zone.clone(),
                                node: d.node.clone(),
                            };
                            if host.parse::<IpAddr>().is_ok() {
                                if same_host(&host, &connected) {
                                    gossip_targets.push(target);
                                }
                            } else if let Ok(connected) = connected.parse() {
                                found.named.push(Named {
                                    target,
                                    host,
                                    port,
                                    connected,
                                });
                            }
                        }
                        (zone, d.node.clone())
                    }
                    None => (zone, p.peer.clone()),
                }
            }
        };
        found.links.push(GossipLink {
            zone,
            node,
            messages: p.messages,
            last_message_at: p.last_message_ms.map(Timestamp),
        });
    }
    let mut seen = BTreeSet::new();
    found.targets = own
        .chain(gossip_targets)
        .filter(|t| seen.insert(t.api_url.clone()))
        .take(MAX_PROBES)
        .collect();
    found
}

/// A proven peer's API declared by host name, and the address the peer connected from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// What would be asked.
    pub target: Target,
    /// The API URL's host name.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The address the peer's gossip connection came from.
    pub connected: IpAddr,
}

/// A peer's API declared by host name, confirmed: the address its probe goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmed {
    /// What is asked.
    pub target: Target,
    /// The API URL's host name (the certificate is checked against it).
    pub host: String,
    /// Where the name led to the peer: the probe connects here and nowhere else.
    pub addr: SocketAddr,
}

/// What recent lookups of peers' API host names found, by host, port and the address the peer
/// connected from: the address to ask, or `None` (the name did not lead there).
#[derive(Debug, Clone, Default)]
pub struct NameChecks(Arc<Mutex<HashMap<NameKey, NameFound>>>);

/// A looked-up name: its host, port, and the address of the peer that declared it.
type NameKey = (String, u16, IpAddr);
/// When it was looked up, and the address found to ask (`None`: the name did not lead there).
type NameFound = (std::time::Instant, Option<IpAddr>);

impl NameChecks {
    fn get(&self, key: &NameKey) -> Option<Option<IpAddr>> {
        let checks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        checks
            .get(key)
            .filter(|(at, _)| at.elapsed() < NAME_CHECK_TTL)
            .map(|(_, found)| *found)
    }

    fn put(&self, key: NameKey, found: Option<IpAddr>) {
        let mut checks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if checks.len() >= MAX_NAME_CHECKS {
            checks.clear();
        }
        checks.insert(key, (std::time::Instant::now(), found));
    }
}

/// The address of `named`'s host that the peer connected from (or, for a peer on loopback, a
/// loopback address of the name when it has not that one), if the name resolves there within
/// [`NAME_LOOKUP_TIMEOUT`] (system resolver).
async fn look_up(named: &Named) -> Option<IpAddr> {
    let lookup = tokio::net::lookup_host((named.host.as_str(), named.port));
    let addrs: Vec<IpAddr> = match tokio::time::timeout(NAME_LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(addrs)) => addrs.map(|a| a.ip().to_canonical()).collect(),
        Ok(Err(_)) | Err(_) => return None,
    };
    let connected = named.connected.to_canonical();
    addrs
        .iter()
        .copied()
        .find(|ip| *ip == connected)
        .or_else(|| {
            connected
                .is_loopback()
                .then(|| addrs.iter().copied().find(IpAddr::is_loopback))
                .flatten()
        })
}

/// The first [`MAX_NAMED`] peers of `named` whose host name resolves to the address the peer
/// connected from ([`look_up`], or what a lookup found within [`NAME_CHECK_TTL`]), each with
/// that address, which is the only one its probe may connect to. A name that does not resolve,
/// or resolves elsewhere, is not asked: a peer cannot make this node call another machine by
/// declaring a name, nor by changing where the name leads after it was looked up.
pub async fn confirm_named(checks: &NameChecks, named: Vec<Named>) -> Vec<Confirmed> {
    futures::stream::iter(named.into_iter().take(MAX_NAMED))
        .map(|n| async move {
            let key = (n.host.clone(), n.port, n.connected);
            let found = match checks.get(&key) {
                Some(found) => found,
                None => {
                    let found = look_up(&n).await;
                    checks.put(key, found);
                    found
                }
            };
            found.map(|ip| Confirmed {
                addr: SocketAddr::new(ip, n.port),
                host: n.host,
                target: n.target,
            })
        })
        .buffer_unordered(PROBE_CONCURRENCY)
        .filter_map(std::future::ready)
        .collect()
        .await
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_REMOTE_CHARS).collect()
}

/// The Raft roles a status document may state; anything else is shown as `unknown`.
fn role(raw: &str) -> String {
    match raw {
        "leader" | "follower" | "candidate" | "learner" => raw.to_owned(),
        _ => "unknown".to_owned(),
    }
}

/// Builds the overview from the probes and the proven links (pure: no IO, `at` passed in).
pub fn assemble(
    config: &NodeConfig,
    probes: Vec<Probe>,
    links: Vec<GossipLink>,
    unverified: Vec<UnverifiedPeer>,
    at: Timestamp,
) -> Overview {
    let own_zone = config.zone.id.to_string();
    // zone id -> node name -> view
    let mut zones: BTreeMap<String, BTreeMap<String, NodeView>> = BTreeMap::new();
    zones.entry(own_zone.clone()).or_default();
    let mut members: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    // Names for people that the zones' own nodes state (shown, never trusted for anything).
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for probe in probes {
        let (zone, view) = match probe.outcome {
            // A node is shown only as what it was asked as: the name and zone it declared (in
            // the config, or in its gossip identify agent) must be what its status says, so a
            // peer cannot add members to a zone or stand in for a node.
            Ok(s)
                if known_zone(config, &s.zone)
                    && s.node == probe.target.node
                    && s.zone == probe.target.zone =>
            {
                if let Some(name) = s
                    .zone_display_name
                    .as_deref()
                    .filter(|n| !n.trim().is_empty())
                {
                    names.entry(s.zone.clone()).or_insert_with(|| clip(name));
                }
                let zone_members = members.entry(s.zone.clone()).or_default();
                for m in s.members.iter().take(MAX_ZONE_MEMBERS) {
                    zone_members
                        .entry(clip(&m.name))
                        .or_insert_with(|| role(&m.role));
                }
                let view = NodeView {
                    name: clip(&s.node),
                    api_url: Some(probe.target.api_url),
                    reachable: true,
                    error: None,
                    role: Some(role(&s.role)),
                    leader: s.leader.as_deref().map(clip),
                    term: Some(s.term),
                    commit_index: Some(s.commit_index),
                    applied_index: Some(s.applied_index),
                    lag: None,
                };
                (s.zone, view)
            }
            outcome => {
                let error = match outcome {
                    Ok(_) => "its status does not match the node and zone it declared".to_owned(),
                    Err(e) => e,
                };
                let view = NodeView {
                    name: probe.target.node,
                    api_url: Some(probe.target.api_url),
                    reachable: false,
                    error: Some(error),
                    role: None,
                    leader: None,
                    term: None,
                    commit_index: None,
                    applied_index: None,
                    lag: None,
                };
                (probe.target.zone, view)
            }
        };
        let nodes = zones.entry(zone).or_default();
        // Two URLs may lead to the same node; the answer that reached it wins.
        match nodes.get(&view.name) {
            Some(existing) if existing.reachable => {}
            _ => {
                nodes.insert(view.name.clone(), view);
            }
        }
    }
    for (zone, names) in members {
        let nodes = zones.entry(zone).or_default();
        for (name, member_role) in names {
            nodes.entry(name.clone()).or_insert_with(|| NodeView {
                name,
                api_url: None,
                reachable: false,
                error: Some("no API URL known to this node (not one of its gossip peers)".into()),
                role: Some(member_role),
                leader: None,
                term: None,
                commit_index: None,
                applied_index: None,
                lag: None,
            });
        }
    }
    let mut exchanges: Vec<ExchangeView> = std::iter::once((
        config.exchange.id.to_string(),
        config.exchange.display_name.clone(),
    ))
    .chain(
        config
            .outside
            .iter()
            .map(|o| (o.id.to_string(), o.display_name.clone())),
    )
    .map(|(id, display_name)| ExchangeView {
        id,
        display_name: Some(display_name),
        zones: Vec::new(),
    })
    .collect();
    for (id, nodes) in zones {
        let mut nodes: Vec<NodeView> = nodes.into_values().collect();
        let top = nodes.iter().filter_map(|n| n.commit_index).max();
        for n in &mut nodes {
            n.lag = top.zip(n.applied_index).map(|(c, a)| c.saturating_sub(a));
        }
        let exchange = id.split_once('/').map_or(id.as_str(), |(e, _)| e);
        let Some(ex) = exchanges.iter_mut().find(|e| e.id == exchange) else {
            continue;
        };
        let display_name = if id == own_zone {
            Some(config.zone.display_name.clone())
        } else {
            names.get(&id).cloned()
        };
        let zone = ZoneView {
            id,
            display_name,
            nodes,
        };
        if zone.id == own_zone {
            ex.zones.insert(0, zone);
        } else {
            ex.zones.push(zone);
        }
    }
    Overview {
        this: SelfView {
            exchange: config.exchange.id.to_string(),
            zone: own_zone,
            node: config.node.name.to_string(),
        },
        exchanges,
        gossip: links,
        unverified,
        audit_heads: Vec::new(),
        at,
    }
}

/// The client for status probes: short timeout, no redirects, no proxy (node APIs are asked
/// directly), trusting the CA file of `[api] ca_cert` for HTTPS APIs.
///
/// # Errors
/// If the CA file cannot be read.
pub fn client(ca: Option<&std::path::Path>) -> Result<PeerClient, String> {
    let trusted = super::tls::trusted_certificates(ca).map_err(|e| e.to_string())?;
    Ok(PeerClient {
        http: probe_client(&trusted, None)?,
        trusted,
        checks: NameChecks::default(),
    })
}

/// The probe client; with `pinned`, one that connects to that host name only at that address.
fn probe_client(
    trusted: &[reqwest::Certificate],
    pinned: Option<(&str, SocketAddr)>,
) -> Result<reqwest::Client, String> {
    let mut builder = super::tls::client_builder_trusting(trusted)
        .timeout(PROBE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    if let Some((host, addr)) = pinned {
        builder = builder.resolve(host, addr);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client for other nodes' APIs: {e}"))
}

/// The clients for other nodes' APIs: the shared one, and what is needed to make one pinned to
/// a confirmed peer's address ([`confirm_named`]).
#[derive(Debug, Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    /// The certificates of `[api] ca_cert`, read once.
    trusted: Vec<reqwest::Certificate>,
    checks: NameChecks,
}

/// A transport failure as the overview shows it: its class, never the remote's words.
fn transport_error(e: reqwest::Error) -> String {
    if e.is_timeout() {
        format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())
    } else if refused_by_tls(&e) {
        "TLS handshake failed (certificate not trusted by [api] ca_cert, or not for this address)"
            .to_owned()
    } else {
        "connection failed".to_owned()
    }
}

/// Whether rustls ended the connection: the peer's certificate was refused, or the handshake
/// broke.
fn refused_by_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // An I/O error's `source` skips the error it wraps (hyper-rustls nests rustls's
        // error two I/O errors deep): look inside it instead.
        cause = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    false
}

/// Asks one node for its status.
async fn probe(client: &reqwest::Client, target: &Target) -> Result<RemoteStatus, String> {
    let mut resp = client
        .get(format!("{}/v1/status", target.api_url))
        .send()
        .await
        .map_err(transport_error)?;
    if !resp.status().is_success() {
        return Err("not an xchg node".to_owned());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_STATUS_BYTES {
            return Err("status document too large".into());
        }
    }
    serde_json::from_slice(&body).map_err(|_| "not an xchg status document".to_owned())
}

/// `GET /v1/federation/overview` (admin, operator, regulator): every node this node can find, with its Raft
/// role, indices and lag, grouped by exchange and zone.
///
/// # Errors
/// 400 on query parameters (there are none); 401 without a valid token.
pub async fn overview(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<OverviewParams>, QueryRejection>,
) -> Result<Json<Overview>, ApiError> {
    // It makes this node call other nodes' APIs: not for every token.
    caller.require(&[Role::Operator, Role::Regulator])?;
    params.map_err(query_error)?;
    let config = &state.config;
    let peers = state.federation.peer_identities().await;
    let mut found = find(config, &state.federation.members(), &peers);
    let named = std::mem::take(&mut found.named);
    let mut asks: Vec<(Target, Option<(String, SocketAddr)>)> =
        found.targets.into_iter().map(|t| (t, None)).collect();
    for c in confirm_named(&state.peers_http.checks, named).await {
        if asks.len() < MAX_PROBES && !asks.iter().any(|(t, _)| t.api_url == c.target.api_url) {
            asks.push((c.target, Some((c.host, c.addr))));
        }
    }
    let own_name = config.node.name.to_string();
    let own_zone = config.zone.id.to_string();
    let probes = futures::stream::iter(asks)
        .map(|(target, pinned)| {
            let state = state.clone();
            let local = target.node == own_name && target.zone == own_zone;
            async move {
                // This node answers from memory: asking itself over HTTP would only add a way
                // to fail.
                let outcome = if local {
                    let Json(s) = status::get_status(State(state)).await;
                    Ok(RemoteStatus::from(s))
                } else {
                    match &pinned {
                        None => probe(&state.peers_http.http, &target).await,
                        Some((host, addr)) => {
                            let trusted = &state.peers_http.trusted;
                            match probe_client(trusted, Some((host, *addr))) {
                                Ok(client) => probe(&client, &target).await,
                                Err(e) => Err(e),
                            }
                        }
                    }
                };
                Probe { target, outcome }
            }
        })
        .buffer_unordered(PROBE_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let mut overview = assemble(
        config,
        probes,
        found.links,
        found.unverified,
        state.clock.now(),
    );
    overview.audit_heads = state.federation.zone_heads();
    Ok(Json(overview))
}

/// Default window of `/v1/federation/flows`, minutes.
pub const DEFAULT_FLOW_MINUTES: u32 = 60;
/// Longest window of `/v1/federation/flows`, minutes (one day).
pub const MAX_FLOW_MINUTES: u32 = 1440;
/// One bucket.
const MINUTE_MS: u64 = 60_000;
/// Most reasons listed per direction.
const MAX_REASONS: i64 = 20;

/// `GET /v1/federation/flows` query string.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowParams {
    /// Window length in minutes, 1 to 1440 (default 60).
    minutes: Option<String>,
}

/// What crossed this zone's boundary, per minute, oldest minute first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Flows {
    /// The zone whose replica answered.
    pub zone: String,
    /// Number of one-minute buckets.
    pub minutes: u32,
    /// Start of the first bucket (a whole minute).
    pub from: Timestamp,
    /// End of the last bucket (exclusive; the end of the current minute).
    pub to: Timestamp,
    /// Decisions on announcements received from other zones, one series per origin zone (or
    /// revoking exchange) and decision.
    pub inbound: Vec<InboundSeries>,
    /// This zone's own outbox: `published` (by publication time) and `withheld` (by the time
    /// of the change the firewall kept home); both always present.
    pub outbound: Vec<OutboundSeries>,
    /// Outbox entries waiting to be published now.
    pub pending: u64,
    /// Why announcements were not recognised in the window, most frequent first.
    pub rejections: Vec<InboundReason>,
    /// Why changes were withheld in the window, most frequent first.
    pub withheld: Vec<OutboundReason>,
}

/// Per-minute decisions on one origin's announcements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InboundSeries {
    /// Origin zone (or the revoking exchange).
    pub origin: String,
    /// The exchange whose authority the announcements carried.
    pub exchange: String,
    /// recognised, rejected, stale, delisted or revoked.
    pub decision: String,
    /// Sum of `counts`.
    pub total: u64,
    /// One count per minute, oldest first.
    pub counts: Vec<u64>,
}

/// Per-minute outbox entries in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OutboundSeries {
    /// published or withheld.
    pub state: String,
    /// Sum of `counts`.
    pub total: u64,
    /// One count per minute, oldest first.
    pub counts: Vec<u64>,
}

/// A reason announcements from an origin were not recognised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InboundReason {
    /// Origin zone.
    pub origin: String,
    /// The decision.
    pub decision: String,
    /// The recorded reason.
    pub reason: String,
    /// How many times in the window.
    pub count: u64,
}

/// A reason the export firewall kept changes home.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OutboundReason {
    /// The recorded reason.
    pub reason: String,
    /// How many times in the window.
    pub count: u64,
}

/// The window of `minutes` whole minutes ending with the minute that contains `now`.
pub fn window(now: Timestamp, minutes: u32) -> (Timestamp, Timestamp) {
    let to = (now.millis() / MINUTE_MS + 1) * MINUTE_MS;
    let from = to.saturating_sub(u64::from(minutes) * MINUTE_MS);
    (Timestamp(from), Timestamp(to))
}

/// Spreads `(key, bucket, count)` rows into one dense series per key, keys in order.
pub fn series<K: Ord>(rows: Vec<(K, i64, i64)>, minutes: u32) -> Vec<(K, u64, Vec<u64>)> {
    let mut by_key: BTreeMap<K, Vec<u64>> = BTreeMap::new();
    for (key, bucket, count) in rows {
        let counts = by_key
            .entry(key)
            .or_insert_with(|| vec![0; minutes as usize]);
        if let (Ok(b), Ok(c)) = (usize::try_from(bucket), u64::try_from(count))
            && let Some(slot) = counts.get_mut(b)
        {
            *slot += c;
        }
    }
    by_key
        .into_iter()
        .map(|(k, counts)| (k, counts.iter().sum(), counts))
        .collect()
}

fn minutes_param(raw: Option<&str>) -> Result<u32, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_FLOW_MINUTES);
    };
    raw.parse::<u32>()
        .ok()
        .filter(|m| (1..=MAX_FLOW_MINUTES).contains(m))
        .ok_or_else(|| {
            ApiError::invalid_field(
                "minutes",
                format!("expected a whole number from 1 to {MAX_FLOW_MINUTES}, got {raw:?}"),
            )
        })
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// `GET /v1/federation/flows?minutes=N` (any token): per-minute recognition decisions by
/// origin and this zone's published and withheld announcements, from this node's replica.
///
/// # Errors
/// 400 naming `minutes` when it is not 1 to 1440, or an unknown parameter; 401 without a
/// valid token.
pub async fn flows(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<FlowParams>, QueryRejection>,
) -> Result<Json<Flows>, ApiError> {
    let _ = caller;
    let Query(p) = params.map_err(query_error)?;
    let minutes = minutes_param(p.minutes.as_deref())?;
    let (from, to) = window(state.clock.now(), minutes);
    let mut conn = state.db.reader().await?;

    let inbound_rows = recognitions::flows(&mut conn, from, to, MINUTE_MS).await?;
    let inbound = series(inbound_rows, minutes)
        .into_iter()
        .map(
            |((origin, exchange, decision), total, counts)| InboundSeries {
                origin,
                exchange,
                decision,
                total,
                counts,
            },
        )
        .collect();

    // Bucket -1 lies outside every window: these rows only make both series exist.
    let mut outbound_rows = vec![
        ("published".to_owned(), -1, 0),
        ("withheld".to_owned(), -1, 0),
    ];
    outbound_rows.extend(outbox::flows(&mut conn, from, to, MINUTE_MS).await?);
    let outbound = series(outbound_rows, minutes)
        .into_iter()
        .map(|(state, total, counts)| OutboundSeries {
            state,
            total,
            counts,
        })
        .collect();

    let pending = outbox::pending_count(&mut conn).await?;

    let rejections = recognitions::reasons(&mut conn, from, to, MAX_REASONS)
        .await?
        .into_iter()
        .map(|(origin, decision, reason, n)| InboundReason {
            origin,
            decision,
            reason,
            count: count(n),
        })
        .collect();

    let withheld = outbox::withheld_reasons(&mut conn, from, to, MAX_REASONS)
        .await?
        .into_iter()
        .map(|(reason, n)| OutboundReason {
            reason,
            count: count(n),
        })
        .collect();

    Ok(Json(Flows {
        zone: state.config.zone.id.to_string(),
        minutes,
        from,
        to,
        inbound,
        outbound,
        pending,
        rejections,
        withheld,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use xchg_federation_config::layout::{self, LayoutKind, LayoutOptions};

    /// The first Zhengzhou node of a generated `two-exchanges` layout with two nodes per zone.
    fn zhengzhou() -> (tempfile::TempDir, NodeConfig) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let out = dir.path().join("layout");
        let mut options = LayoutOptions::new(out.clone(), LayoutKind::TwoExchanges);
        options.nodes_per_zone = 2;
        let generated = layout::generate(&options, Timestamp::now()).expect("a layout");
        let node = &generated.exchanges[1].zones[0].nodes[0];
        let loaded = xchg_federation_config::load(&out.join(&node.config), Timestamp::now())
            .expect("a valid config");
        (dir, loaded.config)
    }

    fn peer(agent: &str, messages: u64) -> PeerInfo {
        PeerInfo {
            peer: format!("peer-{messages}"),
            address: Some("/ip4/127.0.0.1/tcp/40000".into()),
            agent: Some(agent.to_owned()),
            score: None,
            topics: std::sync::Arc::from([]),
            last_message_ms: Some(1_000),
            messages,
            connected_since_ms: Some(500),
        }
    }

    fn status(node: &str, zone: &str, role: &str, commit: u64, applied: u64) -> RemoteStatus {
        RemoteStatus {
            node: node.into(),
            zone: zone.into(),
            zone_display_name: None,
            role: role.into(),
            leader: Some(node.into()),
            term: 3,
            commit_index: commit,
            applied_index: applied,
            members: Vec::new(),
        }
    }

    fn target(url: &str, zone: &str, node: &str) -> Target {
        Target {
            api_url: url.into(),
            zone: zone.into(),
            node: node.into(),
        }
    }

    #[test]
    fn api_urls_are_reduced_to_a_plain_origin() {
        assert_eq!(
            api_origin("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            api_origin("https://node.example/").as_deref(),
            Some("https://node.example")
        );
        for steering in [
            "http://127.0.0.1:8080/admin",
            "http://user:secret@127.0.0.1:8080",
            "http://127.0.0.1:8080/?x=1",
            "http://127.0.0.1:8080/#frag",
            "file:///etc/passwd",
            "gopher://127.0.0.1:70",
            "not a url",
        ] {
            assert_eq!(api_origin(steering), None, "{steering}");
        }
    }

    fn declared(url: Option<&str>, zone: &str, node: &str) -> Declared {
        Declared {
            api_url: url.map(str::to_owned),
            zone: zone.into(),
            node: node.into(),
        }
    }

    fn members(config: &NodeConfig) -> Vec<MemberNode> {
        config.zone.members.iter().map(MemberNode::from).collect()
    }

    fn delegated(zone: &str) -> Identity {
        Identity::Delegated {
            zone: zone.parse().expect("zone id"),
        }
    }

    fn unproven() -> Identity {
        Identity::Unproven {
            reason: "no identity answer".into(),
        }
    }

    #[test]
    fn agents_of_federated_zones_parse_with_an_api_url_or_a_dash() {
        let (_dir, config) = zhengzhou();
        let ok = "xchg/0.1.0 xuchang/municipal municipal-1 http://127.0.0.1:9000";
        assert_eq!(
            parse_agent(&config, ok),
            Some(declared(
                Some("http://127.0.0.1:9000"),
                "xuchang/municipal",
                "municipal-1"
            ))
        );
        // Another stack, without an xchg API (PROTOCOL.md 7.1).
        assert_eq!(
            parse_agent(&config, "rust-libp2p/0.45 xuchang/municipal municipal-1 -"),
            Some(declared(None, "xuchang/municipal", "municipal-1"))
        );
        for refused in [
            "xchg/0.1.0 shanghai/main main-1 http://127.0.0.1:9000",
            "xchg/0.1.0 xuchang/municipal municipal-1",
            "xchg/0.1.0 xuchang/municipal municipal-1 - extra",
            "xchg xuchang/municipal municipal-1 -",
            "xchg/0.1.0 xuchang/municipal municipal-1 http://127.0.0.1:9000/v1/tokens",
            "xchg/0.1.0 xuchang/municipal Not_A_Name http://127.0.0.1:9000",
        ] {
            assert_eq!(parse_agent(&config, refused), None, "{refused}");
        }
    }

    #[test]
    fn a_peer_that_proves_nothing_is_listed_unverified_and_never_asked() {
        let (_dir, config) = zhengzhou();
        let liar = peer("xchg/0.1.0 zhengzhou/main main-9 http://127.0.0.1:9999", 7);
        let found = find(&config, &members(&config), &[(liar, unproven())]);
        assert_eq!(
            found.targets.len(),
            config.zone.members.len(),
            "members only"
        );
        assert!(found.targets.iter().all(|t| t.node != "main-9"));
        assert!(found.links.is_empty());
        assert_eq!(found.unverified.len(), 1);
        assert_eq!(found.unverified[0].reason, "no identity answer");
        assert_eq!(found.unverified[0].messages, 7);
    }

    #[test]
    fn a_delegated_peer_is_asked_only_for_the_zone_it_proved() {
        let (_dir, config) = zhengzhou();
        let honest = peer(
            "xchg/0.1.0 xuchang/municipal municipal-1 http://127.0.0.1:9000",
            1,
        );
        let found = find(
            &config,
            &members(&config),
            &[(honest.clone(), delegated("xuchang/municipal"))],
        );
        let last = found.targets.last().expect("a target");
        assert_eq!(last.api_url, "http://127.0.0.1:9000");
        assert_eq!(found.links[0].zone, "xuchang/municipal");
        assert_eq!(found.links[0].node, "municipal-1");
        // Delegated to one zone, claiming another.
        let found = find(
            &config,
            &members(&config),
            &[(honest, delegated("xuchang/yuzhou"))],
        );
        assert!(found.links.is_empty());
        assert!(
            found.unverified[0].reason.contains("delegation is for"),
            "{:?}",
            found.unverified
        );
        // Without an API (`-`): linked, not asked.
        let no_api = peer("other/2 xuchang/municipal municipal-2 -", 1);
        let found = find(
            &config,
            &members(&config),
            &[(no_api, delegated("xuchang/municipal"))],
        );
        assert_eq!(found.targets.len(), config.zone.members.len());
        assert_eq!(found.links[0].node, "municipal-2");
    }

    /// A proven peer whose API is named by host name is not asked on the strength of the name:
    /// it waits for the name to be confirmed.
    #[test]
    fn a_delegated_peer_declaring_a_host_name_is_held_for_confirmation() {
        let (_dir, config) = zhengzhou();
        let mut named = peer(
            "xchg/0.1.0 xuchang/municipal municipal-1 https://hub.example:7443",
            1,
        );
        named.address = Some("/ip4/10.0.0.5/tcp/7102".into());
        let found = find(
            &config,
            &members(&config),
            &[(named, delegated("xuchang/municipal"))],
        );
        assert_eq!(found.targets.len(), config.zone.members.len(), "{found:?}");
        assert_eq!(
            found.named,
            [Named {
                target: target(
                    "https://hub.example:7443",
                    "xuchang/municipal",
                    "municipal-1"
                ),
                host: "hub.example".into(),
                port: 7443,
                connected: "10.0.0.5".parse().expect("ip"),
            }]
        );
        assert_eq!(found.links[0].node, "municipal-1");
    }

    /// A name is asked only if it resolves to where the peer connected from, and then only at
    /// that address (the connection's own when the name has it among several).
    #[tokio::test]
    async fn a_host_name_is_asked_only_where_the_peer_connected_from() {
        let named = |host: &str, connected: &str| Named {
            target: target(&format!("https://{host}:7443"), "xuchang/municipal", "m-1"),
            host: host.into(),
            port: 7443,
            connected: connected.parse().expect("ip"),
        };
        let checks = NameChecks::default();
        let confirmed = confirm_named(&checks, vec![named("localhost", "127.0.0.1")]).await;
        assert_eq!(confirmed.len(), 1);
        assert_eq!(
            confirmed[0].addr,
            "127.0.0.1:7443".parse::<SocketAddr>().expect("addr"),
            "the connection's address, even when the name resolves to ::1 first"
        );
        assert_eq!(confirmed[0].host, "localhost");

        let refused = confirm_named(
            &checks,
            vec![
                named("localhost", "10.9.9.9"),
                named("no-such-host.invalid", "10.9.9.9"),
            ],
        )
        .await;
        assert!(refused.is_empty(), "{refused:?}");

        // What a lookup found is reused: a remembered refusal stays a refusal, whatever the
        // name would resolve to now.
        checks.put(
            ("localhost".into(), 7443, "127.0.0.1".parse().expect("ip")),
            None,
        );
        let remembered = confirm_named(&checks, vec![named("localhost", "127.0.0.1")]).await;
        assert!(remembered.is_empty(), "{remembered:?}");

        // At most MAX_NAMED names are looked up for one overview.
        let many: Vec<Named> = (0..MAX_NAMED + 5)
            .map(|_| named("localhost", "127.0.0.1"))
            .collect();
        let fresh = NameChecks::default();
        assert_eq!(confirm_named(&fresh, many).await.len(), MAX_NAMED);
    }

    #[test]
    fn targets_put_the_own_zone_first_once_per_origin_and_at_most_the_cap() {
        let (_dir, config) = zhengzhou();
        let own: Vec<String> = config
            .zone
            .members
            .iter()
            .map(|m| m.api_url.clone())
            .collect();
        let member = Identity::Member {
            name: config.zone.members[1].name.to_string(),
        };
        let mut peers = vec![(
            peer(&format!("xchg/0.1.0 zhengzhou/main main-2 {}/", own[1]), 1),
            member,
        )];
        peers.extend((0..300).map(|i| {
            let p = peer(
                &format!(
                    "xchg/0.1.0 xuchang/municipal municipal-{} http://127.0.0.1:{}",
                    i % 9 + 1,
                    10_000 + i
                ),
                i,
            );
            (p, delegated("xuchang/municipal"))
        }));
        let found = find(&config, &members(&config), &peers).targets;
        assert_eq!(found.len(), MAX_PROBES);
        // A peer declaring an API on a host other than the one it connected from is not asked.
        let elsewhere = [(
            peer(
                "xchg/0.1.0 xuchang/municipal municipal-1 http://10.9.9.9:7100",
                1,
            ),
            delegated("xuchang/municipal"),
        )];
        assert_eq!(
            find(&config, &members(&config), &elsewhere).targets.len(),
            own.len()
        );
        assert_eq!(found[0].api_url, own[0]);
        assert_eq!(found[1].api_url, own[1]);
        assert_eq!(
            found.iter().filter(|t| t.api_url == own[1]).count(),
            1,
            "a peer of the own zone is asked once"
        );
        assert!(found[2..].iter().all(|t| t.zone == "xuchang/municipal"));
    }

    #[test]
    fn the_overview_groups_nodes_by_exchange_and_zone_with_lag_and_unreached_members() {
        let (_dir, config) = zhengzhou();
        let own = config.node.name.to_string();
        let other = config
            .peers()
            .next()
            .map(|m| m.name.to_string())
            .unwrap_or_default();
        let mut xuchang = status("municipal-1", "xuchang/municipal", "leader", 9, 7);
        xuchang.zone_display_name = Some("许昌市数据交易专区".into());
        xuchang.members = vec![
            RemoteMember {
                name: "municipal-1".into(),
                role: "leader".into(),
            },
            RemoteMember {
                name: "municipal-2".into(),
                role: "follower".into(),
            },
        ];
        let probes = vec![
            Probe {
                target: target("http://127.0.0.1:1", "zhengzhou/main", &own),
                outcome: Ok(status(&own, "zhengzhou/main", "leader", 12, 12)),
            },
            Probe {
                target: target("http://127.0.0.1:2", "zhengzhou/main", &other),
                outcome: Err("no answer within 800 ms".into()),
            },
            Probe {
                target: target("http://127.0.0.1:3", "xuchang/municipal", "municipal-1"),
                outcome: Ok(xuchang),
            },
            Probe {
                target: target("http://127.0.0.1:4", "xuchang/municipal", "impostor"),
                outcome: Ok(status("impostor", "shanghai/main", "leader", 1, 1)),
            },
        ];
        let peers = [(
            peer(
                "xchg/0.1.0 xuchang/municipal municipal-1 http://127.0.0.1:3",
                42,
            ),
            delegated("xuchang/municipal"),
        )];
        let found = find(&config, &members(&config), &peers);
        let o = assemble(&config, probes, found.links, found.unverified, Timestamp(5));

        assert_eq!(o.this.zone, "zhengzhou/main");
        let ids: Vec<&str> = o.exchanges.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["zhengzhou", "xuchang"]);
        let zz = &o.exchanges[0].zones[0];
        assert_eq!(zz.id, "zhengzhou/main");
        assert_eq!(zz.display_name.as_deref(), Some("郑州数据交易中心"));
        let me = zz
            .nodes
            .iter()
            .find(|n| n.name == own)
            .expect("self listed");
        assert!(me.reachable);
        assert_eq!(me.lag, Some(0));
        let down = zz
            .nodes
            .iter()
            .find(|n| n.name == other)
            .expect("peer listed");
        assert!(!down.reachable);
        assert_eq!(down.error.as_deref(), Some("no answer within 800 ms"));
        assert_eq!(down.lag, None);

        let xu = &o.exchanges[1].zones[0];
        assert_eq!(
            xu.display_name.as_deref(),
            Some("许昌市数据交易专区"),
            "as its node states"
        );
        let names: Vec<&str> = xu.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["impostor", "municipal-1", "municipal-2"]);
        assert_eq!(xu.nodes[1].lag, Some(2));
        assert!(!xu.nodes[2].reachable);
        assert_eq!(xu.nodes[2].api_url, None);
        assert_eq!(xu.nodes[2].role.as_deref(), Some("follower"));
        assert!(
            !xu.nodes[0].reachable,
            "a status naming a zone outside the federation is not believed"
        );

        assert_eq!(o.gossip.len(), 1);
        assert_eq!(o.gossip[0].messages, 42);
        assert_eq!(o.gossip[0].zone, "xuchang/municipal");
    }

    #[test]
    fn the_flow_window_ends_with_the_current_minute() {
        let (from, to) = window(Timestamp(125_000), 2);
        assert_eq!((from.millis(), to.millis()), (60_000, 180_000));
        let (from, _) = window(Timestamp(30_000), MAX_FLOW_MINUTES);
        assert_eq!(from.millis(), 0, "no window starts before the epoch");
    }

    #[test]
    fn series_are_dense_per_key_and_ignore_buckets_outside_the_window() {
        let rows = vec![
            ("b", 0, 2),
            ("a", 1, 3),
            ("a", 2, 1),
            ("a", 3, 9),
            ("c", -1, 0),
        ];
        let got = series(rows, 3);
        assert_eq!(
            got,
            vec![
                ("a", 4, vec![0, 3, 1]),
                ("b", 2, vec![2, 0, 0]),
                ("c", 0, vec![0, 0, 0]),
            ]
        );
    }

    #[test]
    fn minutes_must_be_a_whole_number_within_a_day() {
        assert_eq!(minutes_param(None).ok(), Some(DEFAULT_FLOW_MINUTES));
        assert_eq!(minutes_param(Some("1440")).ok(), Some(1440));
        for bad in ["0", "1441", "-5", "ten", ""] {
            let e = minutes_param(Some(bad)).expect_err("refused");
            assert_eq!(e.field.as_deref(), Some("minutes"), "{bad}");
        }
    }
}
