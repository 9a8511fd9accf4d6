//! Fixtures for the core's unit tests: a node of `xuchang/yuzhou` whose exchange has an agreement
//! with `zhengzhou` (credit and transport only), keys from fixed seeds, and envelopes signed by
//! either side.

use std::collections::BTreeSet;

use xchg_federation_config::{Agreement, CategorySet, ExportPolicy};
use xchg_protocol::{
    Delegation, Envelope, ExchangeId, Keypair, Listing, Revocation, SignedDelegation, Timestamp,
    TrustStore, ZoneId,
};

use super::core::{Core, Input, Settings, Tuning};
use crate::gossip::{MessageRef, Peer, topic_of};

/// The time every test runs at.
pub const NOW: Timestamp = Timestamp(1_800_000_000_000);

/// This node's exchange.
pub fn own() -> ExchangeId {
    "xuchang".parse().expect("exchange id")
}

/// The partner exchange.
pub fn partner() -> ExchangeId {
    "zhengzhou".parse().expect("exchange id")
}

fn zone(id: &str) -> ZoneId {
    id.parse().expect("zone id")
}

fn key(seed: u8) -> Keypair {
    Keypair::from_seed(&[seed; 32])
}

fn delegate(
    root: &Keypair,
    exchange: ExchangeId,
    zone_id: &str,
    node: &Keypair,
) -> SignedDelegation {
    SignedDelegation::sign(
        Delegation {
            exchange,
            zone: zone(zone_id),
            node_key: node.public(),
            not_before: Timestamp(0),
            not_after: NOW.plus_millis(365 * 24 * 3_600_000),
        },
        root,
    )
}

/// Timing for tests: the defaults with a fixed seed.
pub fn tuning() -> Tuning {
    Tuning {
        seed: Some(7),
        ..Tuning::default()
    }
}

/// The keys of both sides.
pub struct Kit {
    own_root: Keypair,
    /// This node's key.
    pub own_node: Keypair,
    own_delegation: SignedDelegation,
    partner_root: Keypair,
    /// The partner node signing [`Kit::partner_envelope`]s.
    pub partner_node: Keypair,
    partner_delegation: SignedDelegation,
}

impl Kit {
    /// Both sides' keys, the partner's root trusted.
    pub fn new() -> Self {
        Kit::with_partner_root(key(3), key(4))
    }

    fn with_partner_root(partner_root: Keypair, partner_node: Keypair) -> Self {
        let (own_root, own_node) = (key(1), key(2));
        Kit {
            own_delegation: delegate(&own_root, own(), "xuchang/yuzhou", &own_node),
            partner_delegation: delegate(&partner_root, partner(), "zhengzhou/main", &partner_node),
            own_root,
            own_node,
            partner_root,
            partner_node,
        }
    }

    /// The same, with partner node `i` signing.
    pub fn other_node(&self, i: u8) -> Kit {
        Kit::with_partner_root(self.partner_root.clone(), key(100 + i))
    }

    /// A signed tree head of the partner's zone `zhengzhou/main` (PROTOCOL.md 12.3).
    pub fn partner_head(&self, size: u64, root_hash: [u8; 32], at: Timestamp) -> Vec<u8> {
        let head = xchg_protocol::tree_head::TreeHead {
            zone: zone("zhengzhou/main"),
            size,
            root_hash,
            timestamp: at,
        };
        xchg_protocol::tree_head::sign(&head, &self.partner_node, self.partner_delegation.clone())
            .to_bytes()
    }

    /// A partner side whose root this node does not trust.
    pub fn stranger() -> Kit {
        Kit::with_partner_root(key(99), key(98))
    }

    /// This node's settings.
    pub fn settings(&self, tuning: Tuning) -> Settings {
        let mut roots = TrustStore::default();
        roots.trust(own(), self.own_root.public());
        roots.trust(partner(), key(3).public());
        let categories = BTreeSet::from(["credit".to_owned(), "transport".to_owned()]);
        Settings {
            exchange: own(),
            zone: zone("xuchang/yuzhou"),
            node: "yuzhou-1".into(),
            key: self.own_node.clone(),
            delegation: self.own_delegation.clone(),
            sibling: Agreement::default(),
            outside: vec![(
                partner(),
                Agreement {
                    categories: CategorySet::Only(categories),
                    ..Agreement::default()
                },
            )],
            export: ExportPolicy::default(),
            roots,
            tuning,
        }
    }

    /// A started core with [`tuning`], leading or not (the outputs of getting there dropped).
    pub fn core(&self, leading: bool) -> Core {
        self.core_with(tuning(), leading)
    }

    /// A core with `tuning`, leading or not.
    pub fn core_with(&self, tuning: Tuning, leading: bool) -> Core {
        let mut core = Core::new(self.settings(tuning), tuning.seed.unwrap_or(0));
        core.handle(Input::Leadership(leading), NOW);
        core
    }

    /// A credit listing of the partner's zone titled `title`.
    pub fn partner_listing(&self, title: &str) -> Listing {
        self.partner_listing_in(title, "credit")
    }

    /// A listing of the partner's zone in `category`.
    pub fn partner_listing_in(&self, title: &str, category: &str) -> Listing {
        let mut draft = xchg_protocol::vectors::credit_draft();
        draft.title = title.into();
        draft.category = category.into();
        Listing::first_version(draft, zone("zhengzhou/main"), Timestamp(1_000))
    }

    /// Demand `number` of the partner's zone, open, of `category`, signed by the partner node.
    pub fn partner_demand(&self, number: u64, category: &str) -> Vec<u8> {
        let posted_at = Timestamp(NOW.0 - 60_000);
        let demand = xchg_protocol::demand::Demand {
            zone: zone("zhengzhou/main"),
            number,
            state: xchg_protocol::demand::DemandState::Open,
            category: category.into(),
            title: format!("需求 {number}"),
            description: "企业信用数据".into(),
            scenario: "企业贷款授信审查".into(),
            delivery_modes: vec![xchg_protocol::DeliveryMode::Api],
            budget: xchg_protocol::demand::DemandBudget {
                min: "0".into(),
                max: "100".into(),
                currency: "CNY".into(),
            },
            deadline: NOW.plus_millis(86_400_000),
            posted_at,
            updated_at: posted_at,
        };
        xchg_protocol::demand::sign(&demand, &self.partner_node, self.partner_delegation.clone())
            .to_bytes()
    }

    /// `listing` signed by the partner node.
    pub fn partner_envelope(&self, listing: &Listing) -> Vec<u8> {
        Envelope::listing(listing, &self.partner_node, self.partner_delegation.clone()).to_bytes()
    }

    /// A new partner listing titled `title`, announced: its content id and envelope.
    pub fn partner_announcement(&self, title: &str) -> (xchg_protocol::ContentId, Vec<u8>) {
        let envelope = Envelope::listing(
            &self.partner_listing(title),
            &self.partner_node,
            self.partner_delegation.clone(),
        );
        (envelope.id, envelope.to_bytes())
    }

    /// A certificate of the partner's zone, registration `seq`, for `listing`, signed by the
    /// partner node: the bytes published on the certificate topic.
    pub fn partner_certificate(&self, listing: &Listing, seq: u64) -> Vec<u8> {
        use xchg_protocol::Right;
        use xchg_protocol::certificate::{Certificate, SignedCertificate, Source, number};
        let zone_id = zone("zhengzhou/main");
        let issued_at = Timestamp(2_000);
        let certificate = Certificate {
            number: number(&zone_id, issued_at, seq),
            holder: listing.provider.id.clone(),
            listing_id: listing.id(),
            content_id: listing.content_id(),
            source: Source::Collected,
            rights: vec![Right::Holding],
            evidence: vec![xchg_protocol::ContentId::of(b"evidence")],
            zone: zone_id,
            issued_at,
        };
        SignedCertificate::sign(
            &certificate,
            &self.partner_node,
            self.partner_delegation.clone(),
        )
        .to_bytes()
    }

    /// A listing of this node's zone.
    pub fn own_listing(&self, title: &str) -> Listing {
        let mut draft = xchg_protocol::vectors::credit_draft();
        draft.title = title.into();
        Listing::first_version(draft, zone("xuchang/yuzhou"), Timestamp(1_000))
    }

    /// `listing` signed by this node.
    pub fn own_envelope(&self, listing: &Listing) -> Vec<u8> {
        Envelope::listing(listing, &self.own_node, self.own_delegation.clone()).to_bytes()
    }

    /// A revocation of some key, signed by this exchange's root.
    pub fn own_revocation(&self) -> Vec<u8> {
        let revocation = Revocation {
            exchange: own(),
            key: key(50).public(),
            reason: "leaked".into(),
            revoked_at: Timestamp(1_000),
        };
        Envelope::revocation(&revocation, &self.own_root).to_bytes()
    }
}

/// A reference to `data` delivered by `peer`.
pub fn reference(data: &[u8], peer: &str) -> MessageRef {
    MessageRef {
        id: *xchg_protocol::ContentId::of(data).as_bytes(),
        source: Peer(peer.into()),
    }
}

/// `data` arriving on `exchange`'s topic from `peer`.
pub fn message(exchange: &str, data: Vec<u8>, peer: &str) -> Input {
    Input::Message {
        message: reference(&data, peer),
        topic: topic_of(exchange),
        data,
    }
}
