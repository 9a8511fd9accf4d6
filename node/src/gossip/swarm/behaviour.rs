//! The composed libp2p behaviour and every gossipsub limit and scoring weight, with the reason
//! for each value (PROTOCOL.md 7.3 lists the same numbers).

use std::time::Duration;

use libp2p::gossipsub::{
    self, CallbackSubscriptionFilter, IdentTopic, MaxCountSubscriptionFilter, MessageAuthenticity,
    PeerScoreParams, PeerScoreThresholds, TopicHash, TopicScoreParams, ValidationMode,
};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{connection_limits, identify, identity, ping, request_response};
use sha2::{Digest as _, Sha256};

use super::codec::{CATCHUP_PROTOCOL, FrameCodec};
use crate::gossip::{
    MAX_TRANSMIT_BYTES, exchange_of_certificate_topic, exchange_of_topic,
    exchange_of_tree_head_topic,
};

/// identify `protocolVersion` (PROTOCOL.md 7.1).
pub(crate) const IDENTIFY_PROTOCOL_VERSION: &str = "xchg/1";
/// How long a catch-up request may take, dial included.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Catch-up streams open at once on one connection, both directions together.
pub(crate) const MAX_CONCURRENT_REQUESTS: usize = 16;

/// Gossip messages decoded from one RPC. The frame is at most [`MAX_TRANSMIT_BYTES`] anyway; a
/// low count keeps a frame of many tiny messages from costing thousands of signature checks.
pub(crate) const MAX_MESSAGES_PER_RPC: usize = 64;
/// Message ids in the IHAVE/IWANT control messages exchanged with one peer per heartbeat. Ids
/// are 32 bytes, so this is about what [`MAX_CONTROL_BYTES`] holds.
pub(crate) const MAX_IHAVE_LENGTH: usize = 500;
/// IHAVE messages accepted from one peer per heartbeat.
pub(crate) const MAX_IHAVE_MESSAGES: usize = 10;
/// Bytes of control messages and subscriptions in one RPC (the libp2p default).
pub(crate) const MAX_CONTROL_BYTES: usize = 16 * 1024;
/// Topics one peer may subscribe to (as we track it). A node subscribes to its own exchange and
/// to one topic per agreement; 64 leaves room without letting a peer grow our state unbounded.
pub(crate) const MAX_TOPICS_PER_PEER: usize = 64;
/// Subscription changes in one RPC.
pub(crate) const MAX_SUBSCRIPTIONS_PER_RPC: usize = 64;
/// Messages queued for one connection. Messages reach 320 KiB, so the libp2p default of 5000
/// could hold 1.6 GB for one slow peer; 128 bounds it at 40 MiB.
pub(crate) const SEND_QUEUE: usize = 128;
/// How long a message we publish may wait in a connection's queue before it is dropped.
pub(crate) const PUBLISH_QUEUE_TIME: Duration = Duration::from_secs(5);
/// How long a message we forward may wait in a connection's queue before it is dropped.
pub(crate) const FORWARD_QUEUE_TIME: Duration = Duration::from_secs(1);
/// How long a message id is remembered to drop duplicates. Longer than the libp2p minute:
/// ids are 32 bytes, and a replayed envelope costs a full verification.
pub(crate) const DUPLICATE_CACHE_TIME: Duration = Duration::from_secs(300);
/// Heartbeats of messages kept to answer IWANT.
pub(crate) const HISTORY_LENGTH: usize = 5;
/// Heartbeats of messages advertised in IHAVE.
pub(crate) const HISTORY_GOSSIP: usize = 3;
/// Times one peer may ask for the same message through IWANT.
pub(crate) const GOSSIP_RETRANSMISSION: u32 = 3;
/// How long an IHAVE promise may go unanswered before it counts as broken.
pub(crate) const IWANT_FOLLOWUP_TIME: Duration = Duration::from_secs(3);
/// How long we keep sending to a topic we publish on but do not subscribe to.
pub(crate) const FANOUT_TTL: Duration = Duration::from_secs(60);
/// How long a pruned peer must wait before grafting again.
pub(crate) const PRUNE_BACKOFF: Duration = Duration::from_secs(60);
/// Messages at least this long are announced with IDONTWANT to v1.2 mesh peers.
pub(crate) const IDONTWANT_THRESHOLD: usize = 1000;
/// Mesh degree: target, low and high watermarks, outbound minimum (the libp2p defaults).
pub(crate) const MESH: (usize, usize, usize, usize) = (6, 5, 12, 2);

/// How often the node pings each connected peer, and how long it waits for the answer. The
/// answer only measures the round trip: a peer that never answers stays connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingTiming {
    /// Time between two pings on one connection.
    pub interval: Duration,
    /// How long one ping may wait for its answer.
    pub timeout: Duration,
}

impl Default for PingTiming {
    /// The libp2p defaults: every 15 s, 20 s to answer.
    fn default() -> Self {
        PingTiming {
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(20),
        }
    }
}

/// How many connections the node keeps. A connection costs a socket, Noise and Yamux state and
/// a gossipsub handler with its queues, so a peer (or many peer ids) dialling in cannot be
/// allowed to open them without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// Established connections in total.
    pub total: u32,
    /// Established connections a peer dialled in; the difference to `total` stays free for the
    /// node's own dials (its bootstrap peers).
    pub incoming: u32,
    /// Established connections to one peer (two when both dial at once).
    pub per_peer: u32,
    /// Incoming connections still in their handshake.
    pub pending_incoming: u32,
    /// Outgoing dials still in their handshake.
    pub pending_outgoing: u32,
}

impl Default for ConnectionCaps {
    /// 256 in total (a 33-node city federation fully meshed needs 32 per node), 192 of them
    /// incoming, 2 per peer, 64 pending each way.
    fn default() -> Self {
        ConnectionCaps {
            total: 256,
            incoming: 192,
            per_peer: 2,
            pending_incoming: 64,
            pending_outgoing: 64,
        }
    }
}

impl ConnectionCaps {
    fn limits(self) -> connection_limits::ConnectionLimits {
        connection_limits::ConnectionLimits::default()
            .with_max_established(Some(self.total))
            .with_max_established_incoming(Some(self.incoming))
            .with_max_established_per_peer(Some(self.per_peer))
            .with_max_pending_incoming(Some(self.pending_incoming))
            .with_max_pending_outgoing(Some(self.pending_outgoing))
    }
}

/// Everything the node speaks: identify, ping, gossipsub and catch-up request-response, within
/// the connection limits.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) gossipsub: gossipsub::Behaviour<gossipsub::IdentityTransform, TopicFilter>,
    pub(crate) catchup: request_response::Behaviour<FrameCodec>,
}

/// Only xchg announcement, certificate, tree-head and demand topics, and a bounded number of them per peer: a peer announcing
/// thousands of junk subscriptions must not grow our state.
pub(crate) type TopicFilter =
    MaxCountSubscriptionFilter<CallbackSubscriptionFilter<fn(&TopicHash) -> bool>>;

fn is_announcement_topic(topic: &TopicHash) -> bool {
    exchange_of_topic(topic.as_str()).is_some()
        || exchange_of_certificate_topic(topic.as_str()).is_some()
        || exchange_of_tree_head_topic(topic.as_str()).is_some()
        || crate::gossip::exchange_of_demand_topic(topic.as_str()).is_some()
}

impl Behaviour {
    /// Builds the behaviour for `key`, announcing `agent` through identify.
    pub(crate) fn new(
        key: &identity::Keypair,
        agent: String,
        heartbeat: Duration,
        ping: PingTiming,
        caps: ConnectionCaps,
    ) -> Result<Self, String> {
        let filter: TopicFilter = MaxCountSubscriptionFilter {
            filter: CallbackSubscriptionFilter(is_announcement_topic),
            max_subscribed_topics: MAX_TOPICS_PER_PEER,
            max_subscriptions_per_request: MAX_SUBSCRIPTIONS_PER_RPC,
        };
        let mut gossipsub = gossipsub::Behaviour::new_with_subscription_filter(
            MessageAuthenticity::Signed(key.clone()),
            gossipsub_config(heartbeat)?,
            filter,
        )
        .map_err(|e| format!("gossipsub: {e}"))?;
        gossipsub
            .with_peer_score(peer_score_params(), peer_score_thresholds())
            .map_err(|e| format!("gossipsub peer scoring: {e}"))?;

        Ok(Behaviour {
            limits: connection_limits::Behaviour::new(caps.limits()),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL_VERSION.to_string(), key.public())
                    .with_agent_version(agent),
            ),
            // A failed ping is only reported (libp2p ping closes nothing since 0.43); the event
            // loop logs it and keeps the connection (PROTOCOL.md 7.1: answering is optional).
            ping: ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(ping.interval)
                    .with_timeout(ping.timeout),
            ),
            gossipsub,
            catchup: request_response::Behaviour::new(
                [(CATCHUP_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(REQUEST_TIMEOUT)
                    .with_max_concurrent_streams(MAX_CONCURRENT_REQUESTS),
            ),
        })
    }

    /// Subscribes to `topic` and scores the peers that deliver on it.
    pub(crate) fn subscribe(&mut self, topic: &str) -> Result<(), String> {
        let topic = IdentTopic::new(topic);
        self.gossipsub.subscribe(&topic).map_err(|e| match e {
            gossipsub::SubscriptionError::NotAllowed => {
                format!("{topic} is not an xchg announcement topic")
            }
            other => other.to_string(),
        })?;
        self.gossipsub
            .set_topic_params(topic, topic_score_params())
            .map_err(str::to_string)
    }
}

/// Message id = SHA-256 of the data (PROTOCOL.md 7.3): the same envelope from two publishers is
/// one message.
pub(crate) fn message_id(data: &[u8]) -> gossipsub::MessageId {
    gossipsub::MessageId::new(&Sha256::digest(data))
}

fn gossipsub_config(heartbeat: Duration) -> Result<gossipsub::Config, String> {
    let (mesh_n, mesh_n_low, mesh_n_high, mesh_outbound_min) = MESH;
    gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(|message| message_id(&message.data))
        .max_transmit_size(MAX_TRANSMIT_BYTES)
        .max_publish_messages(MAX_MESSAGES_PER_RPC)
        .max_control_messages_sent(MAX_IHAVE_LENGTH)
        .max_ihave_messages_heartbeat(MAX_IHAVE_MESSAGES)
        .max_control_message_size(MAX_CONTROL_BYTES)
        .connection_handler_queue_len(SEND_QUEUE)
        .publish_queue_duration(PUBLISH_QUEUE_TIME)
        .forward_queue_duration(FORWARD_QUEUE_TIME)
        .duplicate_cache_time(DUPLICATE_CACHE_TIME)
        .history_length(HISTORY_LENGTH)
        .history_gossip(HISTORY_GOSSIP)
        .gossip_retransimission(GOSSIP_RETRANSMISSION)
        .iwant_followup_time(IWANT_FOLLOWUP_TIME)
        .mesh_n(mesh_n)
        .mesh_n_low(mesh_n_low)
        .mesh_n_high(mesh_n_high)
        .mesh_outbound_min(mesh_outbound_min)
        .fanout_ttl(FANOUT_TTL)
        .prune_backoff(PRUNE_BACKOFF)
        .flood_publish(true)
        .idontwant_message_size_threshold(IDONTWANT_THRESHOLD)
        .heartbeat_interval(heartbeat)
        // The libp2p default waits 5 s; one heartbeat is enough for the first connections.
        .heartbeat_initial_delay(heartbeat)
        // Our own messages echoed back are refused, and peer exchange stays off (the libp2p
        // defaults, spelled out): peers come from configuration, not from other peers.
        .allow_self_origin(false)
        .build()
        .map_err(|e| format!("gossipsub config: {e}"))
}

/// Score of one invalid delivery: P4 adds `weight * count²`, so 1, 2, 3, 4, 5 rejects give
/// -5, -20, -45, -80, -125: below the gossip threshold at 2, graylisted at 5.
pub(crate) const INVALID_MESSAGE_WEIGHT: f64 = -5.0;

/// Per-topic scoring. Announcement traffic is sparse and bursty, so the mesh-delivery-rate
/// penalties (P3, P3b) are off: they would punish honest peers on quiet topics. What remains
/// rewards time in the mesh (P1) and first deliveries of valid messages (P2), each capped at
/// +10, and punishes invalid ones (P4).
pub(crate) fn topic_score_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        // P1: +1 per minute in the mesh, at most +10.
        time_in_mesh_weight: 1.0,
        time_in_mesh_quantum: Duration::from_secs(60),
        time_in_mesh_cap: 10.0,
        // P2: +1 per first delivery of a message we accepted, at most +10, decaying over an hour.
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(3600)),
        first_message_deliveries_cap: 10.0,
        // P3, P3b: off (see above); the other fields are inert but must be valid.
        mesh_message_deliveries_weight: 0.0,
        mesh_message_deliveries_decay: 0.5,
        mesh_message_deliveries_cap: 1.0,
        mesh_message_deliveries_threshold: 1.0,
        mesh_message_deliveries_window: Duration::from_millis(10),
        mesh_message_deliveries_activation: Duration::from_secs(5),
        mesh_failure_penalty_weight: 0.0,
        mesh_failure_penalty_decay: 0.5,
        // P4: every Reject counts; the count decays to a tenth over an hour.
        invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
        invalid_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(
            3600,
        )),
    }
}

fn peer_score_params() -> PeerScoreParams {
    PeerScoreParams {
        // Topic parameters are added per topic as we subscribe.
        topics: Default::default(),
        // Positive topic score is capped at what one topic can give (P1 + P2 = 20).
        topic_score_cap: 20.0,
        // P5: the application's penalties (`Offence`), as a negative score: an unproven peer
        // delivering messages signed under no trusted root, or a peer relaying refusals beyond
        // their rate, reaches the graylist like one delivering invalid messages.
        app_specific_weight: 1.0,
        // P6: more than 64 peers on one IP address costs (n - 64)² · 5; honest deployments stay
        // far below (the libp2p threshold of 10 would punish a zone run behind one NAT).
        ip_colocation_factor_weight: -5.0,
        ip_colocation_factor_threshold: 64.0,
        ip_colocation_factor_whitelist: Default::default(),
        // P7: broken IWANT promises and early re-grafts beyond 6 cost (n - 6)² · 10, decaying
        // over a minute.
        behaviour_penalty_weight: -10.0,
        behaviour_penalty_threshold: 6.0,
        behaviour_penalty_decay: gossipsub::score_parameter_decay(Duration::from_secs(60)),
        decay_interval: Duration::from_secs(1),
        decay_to_zero: 0.1,
        // A peer that reconnects keeps its (bad) score for an hour.
        retain_score: Duration::from_secs(3600),
        // Messages dropped from a full send queue: -0.2 each, decaying fast (libp2p defaults).
        slow_peer_weight: -0.2,
        slow_peer_threshold: 0.0,
        slow_peer_decay: 0.2,
    }
}

/// The libp2p default thresholds. An honest peer's score is at least 0 from topics (P3, P3b are
/// off) and only P6, P7 and the slow-peer penalty can lower it, each far from -80 in normal
/// operation, so honest peers are not graylisted.
fn peer_score_thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A behaviour with a fresh key and default settings; libp2p accepts it or this panics.
    fn test_behaviour() -> Behaviour {
        Behaviour::new(
            &identity::Keypair::generate_ed25519(),
            "xchg/test".into(),
            Duration::from_secs(1),
            PingTiming::default(),
            ConnectionCaps::default(),
        )
        .expect("behaviour")
    }

    #[test]
    fn the_configuration_is_accepted_by_libp2p() {
        test_behaviour();
        topic_score_params().validate().expect("topic params");
        peer_score_params().validate().expect("peer params");
        peer_score_thresholds().validate().expect("thresholds");
    }

    #[test]
    fn only_announcement_topics_may_be_subscribed() {
        let mut behaviour = test_behaviour();
        behaviour
            .subscribe(&crate::gossip::topic_of("xuchang"))
            .expect("announcement topic");
        let err = behaviour
            .subscribe("chat")
            .expect_err("junk topic accepted");
        assert!(err.contains("not an xchg announcement topic"), "{err}");
    }

    #[test]
    fn the_message_id_is_the_sha256_of_the_data() {
        let id = message_id(b"envelope");
        assert_eq!(id.0, Sha256::digest(b"envelope").to_vec());
    }
}
