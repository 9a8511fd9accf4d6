//! Federation: what leaves a zone, what is accepted from elsewhere, and catching up.
//!
//! A core with no IO and a driver around it. The core ([`core::Core`]) is a state machine,
//! `handle(input, now) -> outputs`, made of three parts that each own their state:
//! - [`judge`]: the receiving pipeline (size → decode → delegation → signature → id →
//!   agreement → refusal rate) that turns envelopes into verdicts and proposals;
//! - [`publish`]: the leader's publisher, which signs the replicated outbox and publishes it;
//! - [`catchup`]: anti-entropy over request-response, answering and asking, with its cursors;
//! - `certify`: certificates received on a certificate topic (PROTOCOL.md 10.5), judged
//!   without the replica;
//! - [`demanded`]: demands received on a demand topic (PROTOCOL.md 11.9), judged likewise.
//!
//! The core imports only the protocol, the catalog's types, the policies below and the
//! transport's vocabulary (peers, verdicts, offences). [`driver`] is the async shell: it feeds
//! the core from the transport, the replica's signals, Raft's leadership and the [`Clock`], and
//! carries out its outputs (replica reads in [`replica`], proposals, publishes, requests,
//! timers). [`Federation`] is the handle the rest of the node holds.
//!
//! Beside them:
//! - [`policy`]: the export firewall and the recognition policy, as pure functions.
//! - [`identity`]: what a gossip peer proves to be (membership, or a delegation of its key).
//! - [`limits`]: how many agreement refusals are recorded per signer and peer.
//! - [`verdicts`]: why each verdict was given, and the journal an operator reads.
//! - [`heads`]: other zones' signed audit tree heads, each checked consistent with the last
//!   held (PROTOCOL.md 12.7).
//! - [`across`]: applications across exchanges (PROTOCOL.md 11.7): the origin's answer to a
//!   forwarded request, and the leader forwarding its zone's, with the backoff schedule.
//!
//! [`Clock`]: crate::clock::Clock
//!
//! Layer: above `raft`, `store`, `catalog` and `gossip`, below the API; never imports the API.

pub mod across;
pub mod catchup;
mod certify;
pub mod core;
pub mod demanded;
pub mod driver;
pub mod figures;
pub mod heads;
pub mod identity;
pub mod judge;
pub mod limits;
pub use crate::catalog::policy;
pub mod publish;
pub mod replica;
#[cfg(test)]
mod testkit;
pub mod verdicts;

pub use self::core::Tuning;
pub use driver::{Driver, Federation, Parts, Stopped};
pub use judge::{Judgement, Proposal};
