//! The federation transport: gossip of signed envelopes between zones and exchanges, and
//! request-response for catch-up (anti-entropy).
//!
//! [`Broadcast`] is what the rest of the node sees. Two implementations:
//! - [`swarm`]: libp2p (TCP + Noise + Yamux, identify, ping, gossipsub v1.1 with strict signing,
//!   manual validation and peer scoring, request-response). An actor: a [`swarm::Client`] handle
//!   sends commands to the `EventLoop` task that owns the `Swarm`.
//! - [`memory`]: an in-process network with loss, delay and partitions, for tests and
//!   simulations.
//!
//! Both deliver inbound traffic as [`Event`]s on a bounded channel. Every [`Event::Message`] must
//! be answered with [`Broadcast::report`]: the message is forwarded only after `Accept`, and a
//! `Reject` counts against the peer that delivered it. Every [`Event::Request`] is answered by
//! sending the response bytes on its `reply` channel (dropping it answers with an error).
//!
//! The transport does not interpret payloads: message data are envelope bytes (PROTOCOL.md 4.7)
//! and request/response bodies are the CBOR of PROTOCOL.md 7.5, both decoded by the federation
//! layer with the bounded decoder. The transport enforces the size limits below before anything
//! reaches the application.
//!
//! Layer: the federation's transport, below `federation`; imports only `fault` and the protocol.

pub mod memory;
pub mod swarm;

use std::future::Future;
use std::pin::Pin;

use tokio::sync::oneshot;

/// A boxed, sendable future (the trait is used as `Arc<dyn Broadcast>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Largest gossip frame accepted (PROTOCOL.md 7.3): envelope bytes plus gossipsub framing.
pub const MAX_TRANSMIT_BYTES: usize = 327_680;
/// Largest envelope a node publishes (PROTOCOL.md 7.3).
pub const MAX_PUBLISH_BYTES: usize = 262_144;
/// Largest catch-up request body accepted.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest catch-up response body accepted.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Inbound events waiting for the application; when full, the transport waits (backpressure)
/// and gossipsub's own bounded queues drop the excess.
pub const EVENT_QUEUE: usize = 1024;

/// The gossipsub topic of an exchange (PROTOCOL.md 7.2).
pub fn topic_of(exchange: &str) -> String {
    format!("xchg/v1/announcements/{exchange}")
}

/// The exchange whose topic `topic` is, if it is an xchg announcement topic.
pub fn exchange_of_topic(topic: &str) -> Option<&str> {
    topic.strip_prefix("xchg/v1/announcements/")
}

/// The certificate topic of an exchange (PROTOCOL.md 10.5): registration certificates of its
/// zones' exported listings. Version-1 peers do not subscribe to it, so they never see one.
pub fn certificate_topic_of(exchange: &str) -> String {
    format!("xchg/v1/certificates/{exchange}")
}

/// The exchange whose certificate topic `topic` is, if it is one.
pub fn exchange_of_certificate_topic(topic: &str) -> Option<&str> {
    topic.strip_prefix("xchg/v1/certificates/")
}

/// The demand topic of an exchange (PROTOCOL.md 11.9): the demands its zones' buyers share
/// with the federation, and their withdrawals and acceptances.
pub fn demand_topic_of(exchange: &str) -> String {
    format!("xchg/v1/demands/{exchange}")
}

/// The exchange whose demand topic `topic` is, if it is one.
pub fn exchange_of_demand_topic(topic: &str) -> Option<&str> {
    topic.strip_prefix("xchg/v1/demands/")
}

/// The tree-head topic of an exchange (PROTOCOL.md 12.7): its zones' leaders publish their
/// signed audit tree heads there.
pub fn tree_head_topic_of(exchange: &str) -> String {
    format!("xchg/v1/tree-heads/{exchange}")
}

/// The exchange whose tree-head topic `topic` is, if it is one.
pub fn exchange_of_tree_head_topic(topic: &str) -> Option<&str> {
    topic.strip_prefix("xchg/v1/tree-heads/")
}

/// A peer, by its libp2p peer id in text form (base58; derived from its ed25519 key as in
/// PROTOCOL.md 2.9, so the in-process network uses the same names).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Peer(pub String);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The application's judgement of a gossip message (PROTOCOL.md 7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: forward it.
    Accept,
    /// Not forwarded, not penalised.
    Ignore,
    /// Not forwarded; the delivering peer is penalised.
    Reject,
}

impl Verdict {
    /// Lower-case name (metrics labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Ignore => "ignore",
            Verdict::Reject => "reject",
        }
    }
}

/// Something a peer did that the application holds against it beyond its verdicts
/// ([`Broadcast::penalise`]). Each lowers the peer's gossip score (the application-specific
/// part, PROTOCOL.md 7.3) by [`Offence::cost`]; the penalty halves every minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// A peer whose identity is not proven delivered a message ignored for this node's trust
    /// store or clock (untrusted root, unknown exchange, revoked key, expired delegation, ...),
    /// beyond the allowance the application grants (`federation::limits`).
    Untrusted,
    /// It delivered an announcement the agreement refuses, beyond the refusals recorded from
    /// one signer or peer.
    RefusedBeyondRate,
}

impl Offence {
    /// The score points it costs.
    pub fn cost(self) -> f64 {
        match self {
            Offence::Untrusted => 5.0,
            Offence::RefusedBeyondRate => 1.0,
        }
    }
}

/// Identifies a received gossip message for its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    /// Message id: SHA-256 of the data (PROTOCOL.md 7.3).
    pub id: [u8; 32],
    /// The peer that delivered it to us (not necessarily its publisher).
    pub source: Peer,
}

/// A gossip message awaiting validation.
#[derive(Debug, Clone)]
pub struct Message {
    /// What to pass to [`Broadcast::report`].
    pub reference: MessageRef,
    /// The topic it arrived on.
    pub topic: String,
    /// The message data: envelope bytes, at most [`MAX_TRANSMIT_BYTES`].
    pub data: Vec<u8>,
}

/// Inbound traffic.
#[derive(Debug)]
pub enum Event {
    /// A gossip message to validate and answer with [`Broadcast::report`].
    Message(Message),
    /// A catch-up request from `peer`; send the response body on `reply`.
    Request {
        /// Who asks.
        peer: Peer,
        /// The request body, at most [`MAX_REQUEST_BYTES`].
        body: Vec<u8>,
        /// Where the response body goes (at most [`MAX_RESPONSE_BYTES`]).
        reply: oneshot::Sender<Vec<u8>>,
    },
}

/// What a node knows about one connected peer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct PeerInfo {
    /// Its peer id.
    pub peer: String,
    /// The address we reached it on or it reached us from.
    pub address: Option<String>,
    /// Its identify `agent_version` (self-declared: `xchg/<version> <zone> <node> <api url>`).
    pub agent: Option<String>,
    /// Gossipsub peer score, if scoring is on.
    pub score: Option<f64>,
    /// Topics it subscribes to (shared: a transport may hand the same list to many callers).
    #[schema(value_type = Vec<String>)]
    pub topics: std::sync::Arc<[String]>,
    /// When it last delivered a gossip message to us (ms since the Unix epoch).
    pub last_message_ms: Option<u64>,
    /// Gossip messages it delivered to us.
    pub messages: u64,
    /// Since when it has been connected without a break (ms since the Unix epoch).
    pub connected_since_ms: Option<u64>,
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No peer subscribes to the topic right now; retry later.
    #[error("no peer subscribes to {0} yet")]
    NoPeers(String),
    /// Already published (same message id): harmless.
    #[error("already published")]
    Duplicate,
    /// The data exceed [`MAX_PUBLISH_BYTES`].
    #[error("message of {0} bytes exceeds the publish limit")]
    TooLarge(usize),
    /// The transport has stopped.
    #[error("gossip transport stopped")]
    Stopped,
    /// Anything else the transport reports.
    #[error("{0}")]
    Other(String),
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Not connected and could not dial, or the connection closed.
    #[error("peer {0} unreachable")]
    Unreachable(String),
    /// No answer in time.
    #[error("request timed out")]
    Timeout,
    /// The peer answered with an error or an oversized body.
    #[error("bad response: {0}")]
    BadResponse(String),
    /// The transport has stopped.
    #[error("gossip transport stopped")]
    Stopped,
}

/// The federation transport as the node uses it.
pub trait Broadcast: Send + Sync + 'static {
    /// This node's peer id.
    fn local_peer(&self) -> Peer;

    /// Subscribes to `topic` (idempotent).
    fn subscribe(&self, topic: String) -> BoxFuture<'_, Result<(), PublishError>>;

    /// Publishes `data` on `topic` (which this node need not subscribe to).
    fn publish(&self, topic: String, data: Vec<u8>) -> BoxFuture<'_, Result<(), PublishError>>;

    /// The application's verdict on a received message. Never blocks.
    fn report(&self, message: MessageRef, verdict: Verdict);

    /// Sends a catch-up request to `peer` and waits for the response body (bounded, with a
    /// timeout).
    fn request(&self, peer: Peer, body: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, RequestError>>;

    /// Connected peers.
    fn peers(&self) -> BoxFuture<'_, Vec<PeerInfo>>;

    /// Holds `offence` against `peer` (its gossip score drops). Never blocks.
    fn penalise(&self, peer: Peer, offence: Offence);

    /// Whether `peer`'s identity is proven (PROTOCOL.md 7.1). Every peer starts unproven:
    /// unproven peers together may hold only a bounded part of the inbound event queue, so
    /// that a flood from peers nobody vouches for cannot push proven peers' messages out.
    /// Never blocks.
    fn set_proven(&self, peer: Peer, proven: bool);
}

impl crate::fault::Endpoint for Peer {
    fn stable_bytes(&self) -> Vec<u8> {
        self.0.as_bytes().to_vec()
    }
}
