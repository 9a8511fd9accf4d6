//! The built-in layouts and the plan of one run: which exchanges, zones and nodes, their keys,
//! names, ports and tokens. Nothing here touches the file system.

use std::borrow::Cow;
use std::net::SocketAddr;

use base64::Engine as _;
use multiaddr::{Multiaddr, PeerId, Protocol};
use rand::{CryptoRng, RngCore};
use xchg_protocol::{ExchangeId, Keypair, NodeName, ZoneId};

use super::parties::{DemoRole, demo_profile};
use super::{GenerateError, LayoutKind, LayoutOptions, LayoutParty, ZoneTokens};
use crate::role::Role;

/// An exchange of a built-in layout: id, display name, zones hub first.
#[derive(Clone)]
struct ExchangeTable {
    id: Cow<'static, str>,
    display_name: Cow<'static, str>,
    zones: Cow<'static, [ZoneTable]>,
}

/// A zone of a built-in layout: its name, display name, administrative division code (the
/// one its parties' credit codes carry), and the demo parties its provider and buyer tokens are
/// bound to (the provider is the first of the zone in `xchg up --demo`'s catalog).
#[derive(Clone)]
struct ZoneTable {
    name: Cow<'static, str>,
    display_name: Cow<'static, str>,
    division: &'static str,
    provider: DemoParty,
    buyer: DemoParty,
}

/// A demo party of a built-in layout: id, legal name, and the first two characters of its
/// credit code (registering authority and kind: `11` a government body, `12` a public
/// institution, `91` a company).
#[derive(Clone)]
struct DemoParty(Cow<'static, str>, Cow<'static, str>, &'static str);

const fn z(
    name: &'static str,
    display_name: &'static str,
    division: &'static str,
    provider: DemoParty,
    buyer: DemoParty,
) -> ZoneTable {
    ZoneTable {
        name: Cow::Borrowed(name),
        display_name: Cow::Borrowed(display_name),
        division,
        provider,
        buyer,
    }
}

/// A demo party of the tables.
const fn p(id: &'static str, name: &'static str, kind: &'static str) -> DemoParty {
    DemoParty(Cow::Borrowed(id), Cow::Borrowed(name), kind)
}

const XUCHANG: ExchangeTable = ExchangeTable {
    id: Cow::Borrowed("xuchang"),
    display_name: Cow::Borrowed("许昌数据交易中心"),
    zones: Cow::Borrowed(&[
        z(
            "municipal",
            "许昌市数据交易专区 (市级)",
            "411000",
            p("xuchang-big-data-bureau", "许昌市大数据局", "11"),
            p("xuchang-smart-city-ops", "许昌智慧城市运营有限公司", "91"),
        ),
        z(
            "weidu",
            "魏都区",
            "411002",
            p("weidu-commerce-bureau", "魏都区商务局", "11"),
            p("weidu-retail-analytics", "魏都区商贸数据服务有限公司", "91"),
        ),
        z(
            "jianan",
            "建安区",
            "411003",
            p("jianan-agri-center", "建安区农业农村局", "11"),
            p(
                "jianan-agri-cooperative",
                "建安区农业专业合作社联合社",
                "93",
            ),
        ),
        z(
            "yuzhou",
            "禹州市",
            "411081",
            p("yuzhou-credit-center", "禹州市信用中心", "12"),
            p("yuzhou-rural-bank", "禹州市农村商业银行股份有限公司", "91"),
        ),
        z(
            "changge",
            "长葛市",
            "411082",
            p("changge-industry-park", "长葛市产业集聚区", "11"),
            p("changge-auto-parts", "长葛市汽车零部件有限公司", "91"),
        ),
        z(
            "yanling",
            "鄢陵县",
            "411024",
            p("yanling-tourism", "鄢陵县文化广电和旅游局", "11"),
            p("yanling-flower-trade", "鄢陵县花木交易市场有限公司", "91"),
        ),
        z(
            "xiangcheng",
            "襄城县",
            "411025",
            p("xiangcheng-emergency", "襄城县应急管理局", "11"),
            p("xiangcheng-coal-logistics", "襄城县煤化物流有限公司", "91"),
        ),
        z(
            "demo",
            "城乡一体化示范区",
            "411000",
            p("demo-ecology-station", "示范区生态环境分局", "11"),
            p("demo-new-energy", "示范区新能源科技有限公司", "91"),
        ),
        z(
            "devzone",
            "经济技术开发区",
            "411000",
            p("devzone-finance-service", "经开区金融服务中心", "12"),
            p(
                "devzone-equipment-maker",
                "经开区智能装备制造有限公司",
                "91",
            ),
        ),
        z(
            "dongcheng",
            "东城区",
            "411000",
            p("dongcheng-health-commission", "东城区卫生健康委", "11"),
            p(
                "dongcheng-health-insurer",
                "东城区健康保险服务有限公司",
                "91",
            ),
        ),
    ]),
};

const ZHENGZHOU: ExchangeTable = ExchangeTable {
    id: Cow::Borrowed("zhengzhou"),
    display_name: Cow::Borrowed("郑州数据交易中心"),
    zones: Cow::Borrowed(&[z(
        "main",
        "郑州数据交易中心",
        "410100",
        p("zhengzhou-logistics-hub", "郑州国际陆港", "91"),
        p(
            "zhengzhou-commodity-analytics",
            "郑州商品数据分析有限公司",
            "91",
        ),
    )]),
};

/// The administrative division code of `zone` in the built-in layouts: that of its city where
/// it has none of its own, and Xuchang's for a zone the tables do not name.
pub(super) fn division(zone: &ZoneId) -> &'static str {
    [&XUCHANG, &ZHENGZHOU]
        .iter()
        .filter(|t| t.id == zone.exchange().as_str())
        .flat_map(|t| t.zones.iter())
        .find(|z| zone.as_str().ends_with(&format!("/{}", z.name)))
        .map_or("411000", |z| z.division)
}

/// The exchanges of a layout and how many of each one's zones it uses, in layout order.
fn tables(kind: LayoutKind) -> Vec<(ExchangeTable, usize)> {
    match kind {
        LayoutKind::Xuchang => vec![(XUCHANG, XUCHANG.zones.len()), (ZHENGZHOU, 1)],
        LayoutKind::SingleZone => vec![(XUCHANG, 1)],
        LayoutKind::TwoExchanges => vec![(XUCHANG, 1), (ZHENGZHOU, 1)],
        LayoutKind::Mesh { exchanges } => (1..=exchanges).map(|n| (mesh_exchange(n), 1)).collect(),
    }
}

/// Exchange `n` of a mesh: `ex-<n>` (three digits at least) with its one zone `main`, in
/// Henan (division 410000), and two demo companies.
fn mesh_exchange(n: u16) -> ExchangeTable {
    let id = format!("ex-{n:03}");
    let party = |role: &str, name: &str| {
        DemoParty(
            Cow::Owned(format!("{id}-{role}")),
            Cow::Owned(format!("第{n}数据交易所{name}")),
            "91",
        )
    };
    let zone = ZoneTable {
        name: Cow::Borrowed("main"),
        display_name: Cow::Owned(format!("第{n}数据交易所")),
        division: "410000",
        provider: party("provider", "数据服务有限公司"),
        buyer: party("buyer", "数据应用有限公司"),
    };
    ExchangeTable {
        display_name: Cow::Owned(format!("第{n}数据交易所")),
        id: Cow::Owned(id),
        zones: Cow::Owned(vec![zone]),
    }
}

/// Every exchange of the run, in layout order.
pub(super) struct Plan {
    pub(super) exchanges: Vec<PlannedExchange>,
}

pub(super) struct PlannedExchange {
    pub(super) id: ExchangeId,
    pub(super) display_name: String,
    pub(super) root: Keypair,
    /// The hub zone first.
    pub(super) zones: Vec<PlannedZone>,
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
    pub(super) nodes: Vec<PlannedNode>,
}

pub(super) struct PlannedNode {
    pub(super) name: NodeName,
    /// `<exchange>-<zone>-<n>`: the name of its key file, config file and data directory.
    pub(super) stem: String,
    pub(super) key: Keypair,
    pub(super) api: SocketAddr,
    pub(super) raft: SocketAddr,
    /// Where it listens for libp2p.
    pub(super) p2p: Multiaddr,
    /// `p2p` plus `/p2p/<peer id>`: how others dial it.
    pub(super) dial: Multiaddr,
    /// Whether its API is served over HTTPS (a certificate in the layout's `tls/`).
    pub(super) https: bool,
}

impl PlannedNode {
    pub(super) fn api_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.api)
    }
}

/// Plans a run: keys and tokens come from `rng`, ports are numbered over the whole layout.
///
/// # Errors
/// [`GenerateError::Ports`] if the ports do not fit below 65536;
/// [`GenerateError::Inconsistent`] if a layout table yields an id the protocol refuses.
pub(super) fn plan(
    opts: &LayoutOptions,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Plan, GenerateError> {
    let tables = tables(opts.layout);
    let total: usize = tables
        .iter()
        .map(|(_, zones)| zones * opts.nodes_per_zone)
        .sum();
    let last = u64::from(opts.base_port) + 3 * total as u64 - 1;
    if opts.base_port == 0 || last > u64::from(u16::MAX) {
        return Err(GenerateError::Ports {
            base_port: opts.base_port,
            last,
            nodes: total,
        });
    }
    let mut port = opts.base_port;
    let mut next_port = || {
        let p = port;
        port = port.saturating_add(1);
        p
    };
    let mut exchanges = Vec::new();
    for (table, zone_count) in tables {
        let id: ExchangeId = table.id.parse()?;
        let mut zones = Vec::new();
        for ZoneTable {
            name: zone_name,
            display_name: zone_display,
            division,
            provider,
            buyer,
        } in &table.zones[..zone_count]
        {
            let zone_id = ZoneId::new(&id, zone_name)?;
            let mut nodes = Vec::new();
            for n in 1..=opts.nodes_per_zone {
                let key = Keypair::from_seed(&random_bytes(rng));
                let (api, raft, p2p_port) = (next_port(), next_port(), next_port());
                let p2p = Multiaddr::from(opts.host).with(Protocol::Tcp(p2p_port));
                nodes.push(PlannedNode {
                    name: format!("{zone_name}-{n}").parse()?,
                    stem: format!("{}-{zone_name}-{n}", table.id),
                    dial: p2p.clone().with(Protocol::P2p(peer_id(&key)?)),
                    key,
                    api: SocketAddr::new(opts.host, api),
                    raft: SocketAddr::new(opts.host, raft),
                    p2p,
                    https: opts.api_tls,
                });
            }
            let founding = vec![
                provider.profile(division, DemoRole::Provider)?,
                buyer.profile(division, DemoRole::Buyer)?,
            ];
            zones.push(PlannedZone {
                id: zone_id,
                display_name: zone_display.to_string(),
                tokens: ZoneTokens::random(rng),
                provider_party: provider.layout()?,
                buyer_party: buyer.layout()?,
                founding,
                nodes,
            });
        }
        let root = Keypair::from_seed(&random_bytes(rng));
        exchanges.push(PlannedExchange {
            id,
            display_name: table.display_name.to_string(),
            root,
            zones,
        });
    }
    Ok(Plan { exchanges })
}

impl DemoParty {
    fn layout(&self) -> Result<LayoutParty, GenerateError> {
        Ok(LayoutParty {
            id: self.0.parse()?,
            name: self.1.to_string(),
        })
    }

    fn profile(
        &self,
        division: &str,
        role: DemoRole,
    ) -> Result<xchg_protocol::PartyProfile, GenerateError> {
        demo_profile(&self.0.parse()?, &self.1, self.2, division, role)
            .map_err(|e| GenerateError::Inconsistent(format!("demo party {}: {e}", self.0)))
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

/// Ids are built from the layout tables above, which the tests cover, so this conversion only
/// fires if a table is edited into something the protocol refuses.
impl From<xchg_protocol::IdError> for GenerateError {
    fn from(e: xchg_protocol::IdError) -> Self {
        GenerateError::Inconsistent(e.to_string())
    }
}
