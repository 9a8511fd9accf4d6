//! The plan of one run, from its inventory: which exchanges, zones and nodes, their keys,
//! names, addresses, tokens and terms. Nothing here touches the file system.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use base64::Engine as _;
use multiaddr::{Multiaddr, PeerId, Protocol};
use rand::{CryptoRng, RngCore};
use xchg_protocol::{ExchangeId, Keypair, NodeName, ZoneId};

use super::inventory::{Inventory, InventoryOutside, up_to_general};
use super::{GenerateError, LayoutParty, ZoneTokens};
use crate::raw::{RawAgreement, RawExport};
use crate::role::Role;
use crate::{Host, HostPort};

/// Every exchange of the run, in layout order.
pub(super) struct Plan {
    pub(super) exchanges: Vec<PlannedExchange>,
    /// Exchanges run by someone else that some of `exchanges` recognise.
    pub(super) outside: Vec<InventoryOutside>,
    /// Where each exchange id is in `exchanges`: a mesh of hundreds of exchanges renders every
    /// node's `[[outside]]` from it.
    pub(super) by_id: BTreeMap<String, usize>,
}

pub(super) struct PlannedExchange {
    pub(super) id: ExchangeId,
    pub(super) display_name: String,
    pub(super) root: Keypair,
    /// The hub zone first.
    pub(super) zones: Vec<PlannedZone>,
    /// What its zones recognise from each other.
    pub(super) sibling_agreement: RawAgreement,
    /// What it recognises from other exchanges, by exchange id.
    pub(super) recognises: BTreeMap<String, RawAgreement>,
}

pub(super) struct PlannedZone {
    pub(super) id: ZoneId,
    pub(super) display_name: String,
    pub(super) tokens: ZoneTokens,
    /// The party the zone's provider token is bound to.
    pub(super) provider_party: LayoutParty,
    /// The party the zone's buyer token is bound to.
    pub(super) buyer_party: LayoutParty,
    /// The zone's founding parties (written to every node's `[[parties]]`): the two above.
    pub(super) founding: Vec<xchg_protocol::PartyProfile>,
    /// Its export policy (the zone's own, else its exchange's, else the default).
    pub(super) export: RawExport,
    pub(super) nodes: Vec<PlannedNode>,
}

pub(super) struct PlannedNode {
    pub(super) name: NodeName,
    /// `<exchange>-<zone>-<n>`: the name of its key file, config file and data directory.
    pub(super) stem: String,
    pub(super) key: Keypair,
    /// Where the others reach it: its address or host name.
    pub(super) host: Host,
    /// Where its API listens.
    pub(super) api: SocketAddr,
    /// Where its Raft listener listens.
    pub(super) raft: SocketAddr,
    /// Where it listens for libp2p.
    pub(super) p2p: Multiaddr,
    /// Its libp2p port at `host` plus `/p2p/<peer id>`: how others dial it.
    pub(super) dial: Multiaddr,
    /// Whether its API is served over HTTPS (a certificate in the layout's `tls/`).
    pub(super) https: bool,
}

impl PlannedNode {
    pub(super) fn api_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.host.with_port(self.api.port()))
    }

    /// Where the zone reaches its Raft listener.
    pub(super) fn raft_addr(&self) -> HostPort {
        self.host.with_port(self.raft.port())
    }
}

/// Plans a run of a checked `inventory` whose founding parties are `profiles` (zone by zone,
/// layout order; [`Inventory::check`]): keys and tokens come from `rng`.
///
/// # Errors
/// [`GenerateError::Inconsistent`] if the inventory was not checked first (a bug).
pub(super) fn plan(
    inventory: &Inventory,
    profiles: &[[xchg_protocol::PartyProfile; 2]],
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Plan, GenerateError> {
    let mut addresses = inventory.addresses().into_iter();
    let mut profiles = profiles.iter();
    let https = inventory.api_tls();
    let mut exchanges = Vec::new();
    for ex in &inventory.exchanges {
        let id: ExchangeId = ex.id.parse()?;
        let mut zones = Vec::new();
        for zone in &ex.zones {
            let zone_id = ZoneId::new(&id, &zone.name)?;
            let mut nodes = Vec::new();
            for n in 1..=inventory.nodes_of(zone).len() {
                let addrs = addresses.next().flatten().ok_or_else(|| {
                    GenerateError::Inconsistent(format!("no addresses for node {n} of {zone_id}"))
                })?;
                let key = Keypair::from_seed(&random_bytes(rng));
                let p2p = Multiaddr::from(addrs.bind).with(Protocol::Tcp(addrs.p2p));
                nodes.push(PlannedNode {
                    name: format!("{}-{n}", zone.name).parse()?,
                    stem: format!("{}-{}-{n}", ex.id, zone.name),
                    dial: addrs
                        .host
                        .multiaddr(addrs.p2p)
                        .with(Protocol::P2p(peer_id(&key)?)),
                    key,
                    api: SocketAddr::new(addrs.bind, addrs.api),
                    raft: SocketAddr::new(addrs.bind, addrs.raft),
                    host: addrs.host,
                    p2p,
                    https,
                });
            }
            let [provider, buyer] = profiles.next().cloned().ok_or_else(|| {
                GenerateError::Inconsistent(format!("no founding parties for {zone_id}"))
            })?;
            zones.push(PlannedZone {
                id: zone_id,
                display_name: zone.display_name.clone(),
                tokens: ZoneTokens::random(rng),
                provider_party: layout_party(&provider),
                buyer_party: layout_party(&buyer),
                founding: vec![provider, buyer],
                export: merged_export(zone.export.as_ref(), ex.export.as_ref()),
                nodes,
            });
        }
        let root = Keypair::from_seed(&random_bytes(rng));
        exchanges.push(PlannedExchange {
            id,
            display_name: ex.display_name.clone(),
            root,
            zones,
            sibling_agreement: ex.sibling_agreement.clone().unwrap_or_else(up_to_general),
            recognises: ex.recognises.clone(),
        });
    }
    let by_id = exchanges
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.to_string(), i))
        .collect();
    Ok(Plan {
        exchanges,
        outside: inventory.outside.clone(),
        by_id,
    })
}

/// A zone's export policy: each key the zone's own, else its exchange's, else the default.
fn merged_export(zone: Option<&RawExport>, exchange: Option<&RawExport>) -> RawExport {
    let key = |get: fn(&RawExport) -> &Option<String>, default: &str| {
        zone.and_then(|z| get(z).clone())
            .or_else(|| exchange.and_then(|e| get(e).clone()))
            .or_else(|| Some(default.to_owned()))
    };
    RawExport {
        ceiling: key(|e| &e.ceiling, "general"),
        personal_info: key(|e| &e.personal_info, "in_domain_only"),
    }
}

fn layout_party(profile: &xchg_protocol::PartyProfile) -> LayoutParty {
    LayoutParty {
        id: profile.id.clone(),
        name: profile.name.clone(),
    }
}

fn random_bytes(rng: &mut impl RngCore) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// The libp2p peer id of a node key, as multiaddr's type.
pub(super) fn peer_id(key: &Keypair) -> Result<PeerId, GenerateError> {
    let text = key.public().peer_id();
    text.parse()
        .map_err(|e| GenerateError::Inconsistent(format!("peer id {text}: {e}")))
}

impl ZoneTokens {
    /// Fresh tokens, `xchg-<role>-<43 characters of base64url>` (32 random bytes each).
    fn random(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut token = |role: Role| {
            let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(rng));
            format!("xchg-{role}-{secret}")
        };
        ZoneTokens {
            admin: token(Role::Admin),
            operator: token(Role::Operator),
            provider: token(Role::Provider),
            buyer: token(Role::Buyer),
            regulator: token(Role::Regulator),
        }
    }
}

impl Plan {
    /// Whom a node of `zones[zone]` of `exchanges[exchange]` dials for gossip: its own zone's
    /// other nodes; for the hub zone also the first node of every other zone of the exchange,
    /// for any other zone every node of the hub.
    pub(super) fn bootstrap(&self, exchange: usize, zone: usize, node: usize) -> Vec<String> {
        let Some(ex) = self.exchanges.get(exchange) else {
            return Vec::new();
        };
        let mut peers: Vec<&PlannedNode> = Vec::new();
        for (z, planned) in ex.zones.iter().enumerate() {
            if z == zone {
                peers.extend(
                    planned
                        .nodes
                        .iter()
                        .enumerate()
                        .filter(|(n, _)| *n != node)
                        .map(|(_, p)| p),
                );
            } else if zone == 0 {
                peers.extend(planned.nodes.first());
            } else if z == 0 {
                peers.extend(&planned.nodes);
            }
        }
        peers.iter().map(|p| p.dial.to_string()).collect()
    }

    /// How a node dials an outside exchange: every node of its hub zone.
    pub(super) fn outside_bootstrap(ex: &PlannedExchange) -> Vec<String> {
        ex.zones.first().map_or_else(Vec::new, |hub| {
            hub.nodes.iter().map(|n| n.dial.to_string()).collect()
        })
    }
}

/// Ids come from a checked inventory, so this conversion only fires if the check and the plan
/// disagree (a bug).
impl From<xchg_protocol::IdError> for GenerateError {
    fn from(e: xchg_protocol::IdError) -> Self {
        GenerateError::Inconsistent(e.to_string())
    }
}
