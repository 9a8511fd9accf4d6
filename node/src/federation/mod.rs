//! Federation: what leaves a zone, what is accepted from elsewhere, and catching up.
//!
//! - [`policy`]: the export firewall and the recognition policy, as pure functions.
//! - [`inbound`]: the receiving pipeline (size → decode → delegation → signature → id →
//!   agreement) that turns gossip messages into verdicts and proposals.
//! - [`outbound`]: the leader's publisher, which signs the replicated outbox and publishes it.
//! - [`catchup`]: anti-entropy over request-response.
//! - [`service`]: the task that ties them to the gossip transport and to Raft.

pub mod catchup;
pub mod inbound;
pub mod outbound;
pub mod policy;
pub mod service;

pub use service::{Federation, Tuning};
