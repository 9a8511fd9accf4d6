//! Federation: what leaves a zone, what is accepted from elsewhere, and catching up.
//!
//! - [`policy`]: the export firewall and the recognition policy, as pure functions.
//! - [`inbound`]: the receiving pipeline (size → decode → delegation → signature → id →
//!   agreement) that turns gossip messages into verdicts and proposals.
//! - [`outbound`]: the leader's publisher, which signs the replicated outbox and publishes it.
//! - [`catchup`]: anti-entropy over request-response.
//! - [`identity`]: what a gossip peer proves to be (membership, or a delegation of its key).
//! - [`limits`]: how many agreement refusals are recorded per signer and peer.
//! - [`verdicts`]: why each verdict was given, and the journal an operator reads.
//! - [`service`]: the task that ties them to the gossip transport and to Raft.

pub mod catchup;
pub mod identity;
pub mod inbound;
pub mod limits;
pub mod outbound;
pub mod policy;
pub mod service;
pub mod verdicts;

pub use service::{Federation, Tuning};
