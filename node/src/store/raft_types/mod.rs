//! The zone's Raft types: what a log entry carries, what a member record holds, and the async
//! runtime openraft runs on. They live in the store, which keeps the entries and implements
//! openraft's storage traits for them; the `raft` layer above re-exports them, so the store
//! never imports the layer above it.

pub mod runtime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

use crate::catalog::{Batch, BatchResponse};

/// A Raft node id.
pub type NodeId = u64;

/// What the membership records about each node: enough to reach it and to authenticate it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemberNode {
    /// The member's name, unique in the zone.
    pub name: String,
    /// Address of its Raft (mutual TLS) listener.
    pub raft_addr: String,
    /// Base URL of its HTTP API.
    pub api_url: String,
    /// Its ed25519 node key (32 bytes): the only key its TLS certificate may carry.
    pub public_key: Vec<u8>,
}

impl From<&xchg_federation_config::Member> for MemberNode {
    /// The record of a member named in the zone's config.
    fn from(m: &xchg_federation_config::Member) -> Self {
        MemberNode {
            name: m.name.to_string(),
            raft_addr: m.raft_addr.to_string(),
            api_url: m.api_url.clone(),
            public_key: m.public_key.as_bytes().to_vec(),
        }
    }
}

impl fmt::Display for MemberNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.raft_addr)
    }
}

openraft::declare_raft_types!(
    /// The zone's Raft: batches of catalog commands in, their responses out.
    pub TypeConfig:
        D = Batch,
        R = BatchResponse,
        NodeId = NodeId,
        Node = MemberNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = super::snapshot_bytes::SnapshotBytes,
        AsyncRuntime = runtime::ZoneRuntime,
);

/// The running Raft handle of a node.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A storage error.
pub type StorageError = openraft::StorageError<NodeId>;
/// Membership as stored.
pub type StoredMembership = openraft::StoredMembership<NodeId, MemberNode>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, MemberNode>;

/// The Raft id of the member called `name`: the first 8 bytes of SHA-256(`name`), big-endian.
///
/// Names are unique within a zone and ids are only compared within a zone, so a collision would
/// need two names of one zone sharing 64 hash bits; the config loader rejects that case anyway.
pub fn node_id(name: &str) -> NodeId {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}
