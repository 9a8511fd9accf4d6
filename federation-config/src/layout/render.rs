//! One node's configuration file, written through the raw structs the loader reads.

use xchg_protocol::{Delegation, Keypair, PublicKey, SignedDelegation, Timestamp, ZoneId};

use super::plan::{Plan, PlannedNode, PlannedZone};
use crate::model::{ApiSection, RaftTuning};
use crate::raw::{
    RawAgreement, RawApi, RawConfig, RawContact, RawExchange, RawGossip, RawListen, RawMember,
    RawNode, RawOutside, RawParty, RawRaft, RawToken, RawZone,
};
use crate::role::Role;
use crate::secret::token_hash;
use crate::validate::SCHEMA_VERSION;

/// Where one node sits in the plan.
#[derive(Clone, Copy)]
pub(super) struct Position {
    pub(super) exchange: usize,
    pub(super) zone: usize,
    pub(super) node: usize,
}

/// The validity window of the delegations of one run.
#[derive(Clone, Copy)]
pub(super) struct Validity {
    pub(super) not_before: Timestamp,
    pub(super) not_after: Timestamp,
}

impl Validity {
    /// From a day before `now`, so that a clock slightly behind still accepts the delegation,
    /// until `days` after it.
    pub(super) fn days_from(now: Timestamp, days: u32) -> Self {
        Validity {
            not_before: Timestamp(now.millis().saturating_sub(DAY_MS)),
            not_after: now.plus_millis(u64::from(days) * DAY_MS),
        }
    }
}

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// The configuration of the node at `at`, or `None` if `at` is outside the plan.
pub(super) fn node_config(
    plan: &Plan,
    at: Position,
    validity: Validity,
    raft: RaftTuning,
) -> Option<RawConfig> {
    let ex = plan.exchanges.get(at.exchange)?;
    let zone = ex.zones.get(at.zone)?;
    let me = zone.nodes.get(at.node)?;
    Some(RawConfig {
        version: SCHEMA_VERSION,
        node: RawNode {
            name: me.name.to_string(),
            key_file: format!("../keys/{}.key", me.stem),
            data_dir: format!("../data/{}", me.stem),
        },
        listen: RawListen {
            api: me.api.to_string(),
            raft: me.raft.to_string(),
            p2p: me.p2p.to_string(),
        },
        exchange: RawExchange {
            id: ex.id.to_string(),
            display_name: ex.display_name.to_owned(),
            root_public_key: ex.root.public().to_base64(),
        },
        zone: RawZone {
            id: zone.id.to_string(),
            display_name: zone.display_name.to_owned(),
            delegation: delegation_hex(&ex.root, &zone.id, me.key.public(), validity),
            members: zone.nodes.iter().map(member).collect(),
        },
        raft: Some(RawRaft {
            heartbeat_ms: Some(raft.heartbeat_ms),
            election_timeout_min_ms: Some(raft.election_timeout_min_ms),
            election_timeout_max_ms: Some(raft.election_timeout_max_ms),
            snapshot_every_entries: Some(raft.snapshot_every_entries),
            snapshot_log_percent: Some(raft.snapshot_log_percent),
            keep_log_entries: Some(raft.keep_log_entries),
        }),
        export: Some(zone.export.clone()),
        sibling_agreement: Some(ex.sibling_agreement.clone()),
        gossip: Some(RawGossip {
            bootstrap: plan.bootstrap(at.exchange, at.zone, at.node),
        }),
        outside: ex
            .recognises
            .iter()
            .filter_map(|(id, terms)| plan.outside_exchange(id, terms))
            .collect(),
        api: Some(api_section(zone, me)),
        parties: zone.founding.iter().map(raw_party).collect(),
    })
}

/// `[api]`: the zone's tokens, and the node's certificate when the layout serves HTTPS.
fn api_section(zone: &PlannedZone, me: &PlannedNode) -> RawApi {
    let api = RawApi {
        max_body_bytes: Some(ApiSection::DEFAULT_MAX_BODY_BYTES),
        tokens: tokens(zone),
        ..Default::default()
    };
    if me.https {
        super::tls::with_tls(api, &me.stem)
    } else {
        api
    }
}

/// A founding party as `[[parties]]` writes it.
pub(super) fn raw_party(p: &xchg_protocol::PartyProfile) -> RawParty {
    RawParty {
        id: p.id.to_string(),
        name: p.name.clone(),
        credit_code: p.credit_code.to_string(),
        kinds: p.kinds.iter().map(ToString::to_string).collect(),
        contact: RawContact {
            name: p.contact.name.clone(),
            phone: p.contact.phone.clone(),
            email: p.contact.email.clone(),
        },
    }
}

/// The delegation of the node with key `node_key` for `zone`, signed by its exchange's `root`,
/// as the hex a config holds.
pub(super) fn delegation_hex(
    root: &Keypair,
    zone: &ZoneId,
    node_key: PublicKey,
    validity: Validity,
) -> String {
    let delegation = SignedDelegation::sign(
        Delegation {
            exchange: zone.exchange(),
            zone: zone.clone(),
            node_key,
            not_before: validity.not_before,
            not_after: validity.not_after,
        },
        root,
    );
    hex::encode(delegation.to_bytes())
}

pub(super) fn member(node: &PlannedNode) -> RawMember {
    RawMember {
        name: node.name.to_string(),
        raft_addr: node.raft_addr().to_string(),
        api_url: node.api_url(),
        public_key: node.key.public().to_base64(),
    }
}

impl Plan {
    /// `[[outside]]` for exchange `id` (generated or outside) recognised on `terms`; `None` for
    /// an id the plan does not know (a checked inventory names none).
    fn outside_exchange(&self, id: &str, terms: &RawAgreement) -> Option<RawOutside> {
        if let Some(other) = self.by_id.get(id).and_then(|i| self.exchanges.get(*i)) {
            return Some(RawOutside {
                id: other.id.to_string(),
                display_name: other.display_name.clone(),
                root_public_key: other.root.public().to_base64(),
                bootstrap: Plan::outside_bootstrap(other),
                agreement: terms.clone(),
            });
        }
        let other = self.outside.iter().find(|o| o.id == id)?;
        Some(RawOutside {
            id: other.id.clone(),
            display_name: other.display_name.clone(),
            root_public_key: other.root_public_key.clone(),
            bootstrap: other.bootstrap.clone(),
            agreement: terms.clone(),
        })
    }
}

fn tokens(zone: &PlannedZone) -> Vec<RawToken> {
    Role::ALL
        .into_iter()
        .map(|role| RawToken {
            role: role.to_string(),
            sha256: hex::encode(token_hash(zone.tokens.get(role))),
            party: match role {
                Role::Provider => Some(zone.provider_party.id.to_string()),
                Role::Buyer => Some(zone.buyer_party.id.to_string()),
                _ => None,
            },
        })
        .collect()
}
