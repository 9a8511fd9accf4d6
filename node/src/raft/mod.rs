//! Raft inside a zone: bootstrap, pre-vote elections, log compaction, the zone transport (mutual
//! TLS, or the in-process router) and the checks between members.
//!
//! The types (entries, member records, the runtime) are declared in the store
//! ([`crate::store::raft_types`], which keeps the entries) and re-exported here. A node's Raft id is derived from its name
//! ([`node_id`]), so every member computes the same ids from the same config.
//!
//! Layer: above the store, below federation and the API; imports `store`, `catalog`, `fault` and `metrics`.

pub mod bootstrap;
pub mod client;
pub mod compaction;
pub mod consistency;
pub mod election;
pub mod members;
pub mod network;
pub mod progress;
pub mod router;
pub mod tls;
pub mod transport;

pub use crate::store::raft_types::{
    Entry, LogId, MemberNode, NodeId, Raft, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig, node_id, runtime,
};

/// The leader to talk to: `hint` if given, else the leader this node knows, with its member
/// record from the current membership.
pub fn leader_node(raft: &Raft, hint: Option<NodeId>) -> Option<(NodeId, MemberNode)> {
    let metrics = raft.metrics();
    let m = metrics.borrow();
    let id = hint.or(m.current_leader)?;
    let node = m.membership_config.membership().get_node(&id)?.clone();
    Some((id, node))
}
