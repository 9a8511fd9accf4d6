//! xchg-node: the node daemon of a federated data-product exchange.
//!
//! A node is started from a validated config, already-bound listeners and a shutdown future
//! ([`node::start`]); it returns a handle. Inside a zone the nodes replicate the catalog with
//! Raft ([`raft`], [`store`], [`catalog`]) and every applied command extends the audit chain
//! ([`audit`]); operators, providers, buyers and regulators use the HTTP API ([`api`]).
//! [`up`] starts every node of a generated layout in one process (`xchg up`, tests,
//! simulations) and returns a handle that stops them all.

// openraft's error types (StorageError, RaftError) are large by design and fixed by its traits.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod audit;
pub mod catalog;
pub mod clock;
pub mod dashboard;
pub mod fault;
pub mod federation;
pub mod gossip;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod recovery;
pub mod search;
pub mod sqlite;
pub mod store;
pub mod up;
