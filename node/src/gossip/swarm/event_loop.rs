//! The task that owns the `Swarm`: it turns [`Command`]s into swarm calls and swarm events into
//! [`Event`]s, never blocking on the application.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId, ResponseChannel};
use libp2p::swarm::{SwarmEvent, dial_opts::DialOpts};
use libp2p::{Multiaddr, PeerId, Swarm, core::transport::ListenerId};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use super::SwarmError;
use super::behaviour::{Behaviour, BehaviourEvent, REQUEST_TIMEOUT};
use super::bootstrap::Bootstrap;
use super::capture::Capture;
use crate::gossip::{
    BoxFuture, EVENT_QUEUE, Event, MAX_RESPONSE_BYTES, Message, MessageRef, Offence, Peer,
    PeerInfo, PublishError, RequestError, Verdict,
};

/// Longest identify agent string kept (it is self-declared by the peer).
const MAX_AGENT_CHARS: usize = 256;
/// Dropped inbound events are logged once, then every this many.
const DROP_LOG_EVERY: u64 = 100;
/// Messages of one unproven peer awaiting the application's verdict at once; more are ignored
/// unread (the sender cannot tell an honest node's queue from a slow one).
pub(crate) const UNPROVEN_PER_PEER: usize = 64;
/// Messages of all unproven peers together awaiting a verdict at once: a quarter of the event
/// queue, so peers nobody vouches for cannot push out the messages of proven ones.
pub(crate) const UNPROVEN_SHARE: usize = EVENT_QUEUE / 4;
/// Messages of one proven peer awaiting a verdict at once: half the queue, so even a proven
/// peer leaves room for the others.
pub(crate) const PROVEN_PER_PEER: usize = EVENT_QUEUE / 2;
/// Most peers remembered as proven; beyond it, those no longer connected are forgotten.
const MAX_PROVEN: usize = 4096;
/// How often penalties decay and scores are brought up to date.
const PENALTY_TICK: Duration = Duration::from_secs(5);
/// A penalty halves in this time.
const PENALTY_HALF_LIFE: Duration = Duration::from_secs(60);

/// What a [`super::Client`] tells the event loop without waiting for an answer.
#[derive(Debug)]
pub(crate) enum Control {
    /// The application's verdict on a delivered message.
    Verdict(MessageRef, Verdict),
    /// Something held against a peer.
    Penalise(Peer, Offence),
    /// Whether a peer's identity is proven.
    Proven(Peer, bool),
}

/// What a [`super::Client`] asks of the event loop; each carries its reply channel.
#[derive(Debug)]
pub(crate) enum Command {
    Subscribe {
        topic: String,
        reply: oneshot::Sender<Result<(), PublishError>>,
    },
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), PublishError>>,
    },
    Request {
        peer: PeerId,
        body: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, RequestError>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Stats {
        reply: oneshot::Sender<TransportStats>,
    },
    Dial {
        address: Multiaddr,
        reply: oneshot::Sender<Result<(), SwarmError>>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// Counters of what the transport refused or dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Connections open now.
    pub connections: usize,
    /// Connections refused by the connection limits, in either direction.
    pub denied: u64,
    /// Gossip messages ignored unread because their peer had used its share of the queue.
    pub shed: u64,
    /// Inbound messages and requests dropped because the application's queue was full.
    pub dropped: u64,
}

/// What we know of a connected peer beyond what the swarm and gossipsub keep.
#[derive(Debug, Default)]
struct PeerState {
    address: Option<String>,
    agent: Option<String>,
    last_message_ms: Option<u64>,
    messages: u64,
    /// When its first current connection was established.
    connected_since_ms: Option<u64>,
}

/// The application's answer to an inbound request, with the channel it goes back on.
type PendingReply = BoxFuture<'static, (Option<Vec<u8>>, ResponseChannel<Vec<u8>>)>;
/// A bootstrap entry's host name being looked up: the entry, the lookup's number, and the
/// addresses it gave.
type PendingLookup = BoxFuture<'static, (usize, u64, Result<Vec<Multiaddr>, String>)>;

/// Messages delivered to the application and awaiting its verdict, counted per peer, so that
/// no peer, and no crowd of unproven peers, can take the whole event queue.
#[derive(Debug, Default)]
struct InFlight {
    /// (message id, delivering peer) → whether it counted against the unproven share.
    awaiting: HashMap<([u8; 32], PeerId), bool>,
    per_peer: HashMap<PeerId, usize>,
    unproven: usize,
}

impl InFlight {
    /// Whether one more message of `peer` may go to the application.
    fn has_room(&self, peer: &PeerId, proven: bool) -> bool {
        let mine = self.per_peer.get(peer).copied().unwrap_or(0);
        if proven {
            mine < PROVEN_PER_PEER
        } else {
            mine < UNPROVEN_PER_PEER && self.unproven < UNPROVEN_SHARE
        }
    }

    fn delivered(&mut self, id: [u8; 32], peer: PeerId, proven: bool) {
        if self.awaiting.insert((id, peer), !proven).is_none() {
            *self.per_peer.entry(peer).or_default() += 1;
            if !proven {
                self.unproven += 1;
            }
        }
    }

    fn judged(&mut self, id: [u8; 32], peer: PeerId) {
        let Some(unproven) = self.awaiting.remove(&(id, peer)) else {
            return;
        };
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
        }
        if unproven {
            self.unproven = self.unproven.saturating_sub(1);
        }
    }
}

/// Penalties held against peers, decaying, as gossipsub application scores.
#[derive(Debug, Default)]
struct Penalties {
    /// peer → (points, when they were last decayed).
    points: HashMap<PeerId, (f64, Instant)>,
}

impl Penalties {
    fn decayed(points: f64, since: Instant, now: Instant) -> f64 {
        let halves = now.duration_since(since).as_secs_f64() / PENALTY_HALF_LIFE.as_secs_f64();
        points * 0.5f64.powf(halves)
    }

    /// Adds `cost` to `peer`'s points; returns its new total.
    fn add(&mut self, peer: PeerId, cost: f64, now: Instant) -> f64 {
        let entry = self.points.entry(peer).or_insert((0.0, now));
        let total = Self::decayed(entry.0, entry.1, now) + cost;
        *entry = (total, now);
        total
    }

    /// Decays every penalty to `now`; returns each peer's points (those that reached nothing
    /// are forgotten after one last 0).
    fn decay(&mut self, now: Instant) -> Vec<(PeerId, f64)> {
        let mut out = Vec::with_capacity(self.points.len());
        self.points.retain(|peer, (points, since)| {
            *points = Self::decayed(*points, *since, now);
            *since = now;
            let keep = *points >= 0.1;
            out.push((*peer, if keep { *points } else { 0.0 }));
            keep
        });
        out
    }
}

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    controls: mpsc::Receiver<Control>,
    events: mpsc::Sender<Event>,
    bootstrap: Bootstrap,
    peers: HashMap<PeerId, PeerState>,
    /// Our requests awaiting a response, by request id.
    outbound: HashMap<OutboundRequestId, oneshot::Sender<Result<Vec<u8>, RequestError>>>,
    /// Inbound requests handed to the application, awaited without blocking the loop.
    replies: FuturesUnordered<PendingReply>,
    /// Host names of bootstrap addresses being looked up: the entry and what its name gave.
    lookups: FuturesUnordered<PendingLookup>,
    capture: Option<Capture>,
    /// Inbound messages and requests dropped because the application's queue was full.
    dropped: u64,
    /// Messages ignored unread because their peer had used its share of the queue.
    shed: u64,
    /// Connections refused by the connection limits.
    denied: u64,
    in_flight: InFlight,
    /// Peers whose identity the application has proven.
    proven: HashSet<PeerId>,
    penalties: Penalties,
}

impl EventLoop {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        controls: mpsc::Receiver<Control>,
        events: mpsc::Sender<Event>,
        capture: Option<Capture>,
        bootstrap: Vec<Multiaddr>,
    ) -> Self {
        EventLoop {
            swarm,
            commands,
            controls,
            events,
            bootstrap: Bootstrap::new(bootstrap, Instant::now()),
            peers: HashMap::new(),
            outbound: HashMap::new(),
            replies: FuturesUnordered::new(),
            lookups: FuturesUnordered::new(),
            capture,
            dropped: 0,
            shed: 0,
            denied: 0,
            in_flight: InFlight::default(),
            proven: HashSet::new(),
            penalties: Penalties::default(),
        }
    }

    /// Binds every address and drives the swarm until each listener has reported an address,
    /// so that [`super::Client::listen_addrs`] is complete as soon as `spawn` returns.
    pub(crate) async fn listen(
        &mut self,
        addresses: Vec<Multiaddr>,
        timeout: Duration,
    ) -> Result<(), SwarmError> {
        let mut waiting: HashMap<ListenerId, Multiaddr> = HashMap::new();
        for address in addresses {
            ensure_port_free(&address)?;
            let id = self
                .swarm
                .listen_on(address.clone())
                .map_err(|e| SwarmError::Listen {
                    address: address.clone(),
                    reason: e.to_string(),
                })?;
            waiting.insert(id, address);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while !waiting.is_empty() {
            let event = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
                .await
                .map_err(|_| SwarmError::Listen {
                    address: waiting
                        .values()
                        .next()
                        .cloned()
                        .unwrap_or_else(Multiaddr::empty),
                    reason: format!("no address reported within {timeout:?}"),
                })?;
            match event {
                SwarmEvent::NewListenAddr { listener_id, .. } => {
                    waiting.remove(&listener_id);
                }
                SwarmEvent::ListenerClosed {
                    listener_id,
                    reason,
                    ..
                } if waiting.contains_key(&listener_id) => {
                    let address = waiting
                        .remove(&listener_id)
                        .unwrap_or_else(Multiaddr::empty);
                    let reason = reason.err().map_or("closed".into(), |e| e.to_string());
                    return Err(SwarmError::Listen { address, reason });
                }
                _ => {}
            }
            self.on_swarm_event(event);
        }
        Ok(())
    }

    /// Runs until shutdown or until every client is gone, then drops the swarm.
    pub(crate) async fn run(mut self) {
        let mut done = None;
        let mut decay = tokio::time::interval(PENALTY_TICK);
        loop {
            let redial = self.bootstrap.next_due();
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(command) => {
                        if let Some(reply) = self.on_command(command) {
                            done = Some(reply);
                            break;
                        }
                    }
                    None => break,
                },
                Some(control) = self.controls.recv() => self.on_control(control),
                _ = decay.tick() => self.decay_penalties(),
                Some((body, channel)) = self.replies.next(), if !self.replies.is_empty() => {
                    self.respond(body, channel);
                }
                () = sleep_until(redial), if redial.is_some() => self.redial(),
                Some((index, lookup, found)) = self.lookups.next(), if !self.lookups.is_empty() => {
                    self.on_lookup(index, lookup, found);
                }
            }
        }
        tracing::debug!(peer = %self.swarm.local_peer_id(), "gossip transport stopping");
        let EventLoop {
            swarm, commands, ..
        } = self;
        // Listeners and connections go with the swarm; only then is the caller told.
        drop(swarm);
        drop(commands);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    /// Carries out `command`; returns the shutdown acknowledgement when it asks to stop.
    fn on_command(&mut self, command: Command) -> Option<oneshot::Sender<()>> {
        match command {
            Command::Subscribe { topic, reply } => {
                let result = self
                    .swarm
                    .behaviour_mut()
                    .subscribe(&topic)
                    .map_err(PublishError::Other);
                let _ = reply.send(result);
            }
            Command::Publish { topic, data, reply } => {
                if let Some(capture) = &mut self.capture {
                    capture.record(&data);
                }
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(IdentTopic::new(topic.clone()), data)
                    .map(|_| ())
                    .map_err(|e| match e {
                        gossipsub::PublishError::NoPeersSubscribedToTopic => {
                            PublishError::NoPeers(topic)
                        }
                        gossipsub::PublishError::Duplicate => PublishError::Duplicate,
                        gossipsub::PublishError::MessageTooLarge => {
                            PublishError::Other("message too large for gossipsub".into())
                        }
                        other => PublishError::Other(other.to_string()),
                    });
                let _ = reply.send(result);
            }
            Command::Request { peer, body, reply } => {
                if peer == *self.swarm.local_peer_id() {
                    let _ = reply.send(Err(RequestError::Unreachable(peer.to_base58())));
                    return None;
                }
                let id = self.swarm.behaviour_mut().catchup.send_request(&peer, body);
                self.outbound.insert(id, reply);
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peer_infos());
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Stats { reply } => {
                let _ = reply.send(TransportStats {
                    connections: self
                        .swarm
                        .network_info()
                        .connection_counters()
                        .num_established() as usize,
                    denied: self.denied,
                    shed: self.shed,
                    dropped: self.dropped,
                });
            }
            Command::Dial { address, reply } => {
                let result = self
                    .swarm
                    .dial(address.clone())
                    .map_err(|e| SwarmError::Dial {
                        address,
                        reason: e.to_string(),
                    });
                let _ = reply.send(result);
            }
            Command::Shutdown { done } => return Some(done),
        }
        None
    }

    fn on_control(&mut self, control: Control) {
        match control {
            Control::Verdict(message, verdict) => self.on_verdict(message, verdict),
            Control::Penalise(peer, offence) => {
                let Ok(peer) = peer.0.parse::<PeerId>() else {
                    return;
                };
                let points = self.penalties.add(peer, offence.cost(), Instant::now());
                tracing::debug!(%peer, ?offence, points, "gossip peer penalised");
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .set_application_score(&peer, -points);
            }
            Control::Proven(peer, proven) => {
                let Ok(peer) = peer.0.parse::<PeerId>() else {
                    return;
                };
                if !proven {
                    self.proven.remove(&peer);
                    return;
                }
                if self.proven.len() >= MAX_PROVEN && !self.proven.contains(&peer) {
                    let swarm = &self.swarm;
                    self.proven.retain(|p| swarm.is_connected(p));
                }
                if self.proven.len() < MAX_PROVEN {
                    self.proven.insert(peer);
                }
            }
        }
    }

    fn decay_penalties(&mut self) {
        for (peer, points) in self.penalties.decay(Instant::now()) {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .set_application_score(&peer, -points);
        }
    }

    fn on_verdict(&mut self, message: MessageRef, verdict: Verdict) {
        let Ok(source) = message.source.0.parse::<PeerId>() else {
            tracing::warn!(source = %message.source, "verdict for a message from an invalid peer id");
            return;
        };
        self.in_flight.judged(message.id, source);
        let acceptance = match verdict {
            Verdict::Accept => MessageAcceptance::Accept,
            Verdict::Ignore => MessageAcceptance::Ignore,
            Verdict::Reject => MessageAcceptance::Reject,
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(
                &gossipsub::MessageId::new(&message.id),
                &source,
                acceptance,
            );
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Catchup(event)) => self.on_catchup(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(
                libp2p::identify::Event::Received { peer_id, info, .. },
            )) => {
                let agent: String = info.agent_version.chars().take(MAX_AGENT_CHARS).collect();
                tracing::debug!(peer = %peer_id, %agent, "identified");
                self.peers.entry(peer_id).or_default().agent = Some(agent);
            }
            SwarmEvent::Behaviour(_) => {}
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, peer = %self.swarm.local_peer_id(), "gossip listening");
            }
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => {
                tracing::warn!(?addresses, ?reason, "gossip listener closed");
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(%error, "gossip listener error");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let address = endpoint.get_remote_address().to_string();
                tracing::debug!(peer = %peer_id, %address, connections = num_established, "connected");
                let state = self.peers.entry(peer_id).or_default();
                state.address = Some(address);
                if num_established.get() == 1 {
                    state.connected_since_ms = Some(now_ms());
                }
                self.bootstrap.connected(connection_id, peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, ?cause, remaining = num_established, "connection closed");
                if num_established == 0 {
                    self.peers.remove(&peer_id);
                    self.bootstrap
                        .disconnected(peer_id, Instant::now(), rand::random());
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                if matches!(error, libp2p::swarm::DialError::Denied { .. }) {
                    self.denied += 1;
                }
                tracing::debug!(peer = ?peer_id, %error, "dial failed");
                self.bootstrap
                    .failed(connection_id, Instant::now(), rand::random());
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                if matches!(error, libp2p::swarm::ListenError::Denied { .. }) {
                    self.denied += 1;
                }
                tracing::debug!(address = %send_back_addr, %error, "inbound connection failed");
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => self.on_message(propagation_source, message_id, message),
            gossipsub::Event::Subscribed { peer_id, topic } => {
                tracing::debug!(peer = %peer_id, %topic, "peer subscribed");
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                tracing::debug!(peer = %peer_id, %topic, "peer unsubscribed");
            }
            gossipsub::Event::GossipsubNotSupported { peer_id } => {
                tracing::debug!(peer = %peer_id, "peer does not speak gossipsub");
            }
            gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            } => {
                tracing::debug!(peer = %peer_id, ?failed_messages, "slow gossip peer");
            }
        }
    }

    fn on_message(
        &mut self,
        source: PeerId,
        message_id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let stats = self.peers.entry(source).or_default();
        stats.messages += 1;
        stats.last_message_ms = Some(now_ms());
        let Ok(id) = <[u8; 32]>::try_from(message_id.0.as_slice()) else {
            // Cannot happen: our id function yields 32 bytes.
            tracing::warn!(%message_id, "gossip message id is not 32 bytes");
            return;
        };
        let reference = MessageRef {
            id,
            source: Peer(source.to_base58()),
        };
        let proven = self.proven.contains(&source);
        if !self.in_flight.has_room(&source, proven) {
            // Its share of the queue is taken: not forwarded, not read. Catch-up fetches what an
            // honest peer sent meanwhile.
            self.shed += 1;
            if self.shed % DROP_LOG_EVERY == 1 {
                tracing::warn!(
                    peer = %source,
                    proven,
                    shed = self.shed,
                    "gossip peer over its share of the inbound queue: message ignored unread"
                );
            }
            self.on_verdict(reference, Verdict::Ignore);
            return;
        }
        let event = Event::Message(Message {
            reference: reference.clone(),
            topic: message.topic.into_string(),
            data: message.data,
        });
        if self.deliver(event).is_err() {
            // Not forwarded, not held against the peer: the delay is ours.
            self.on_verdict(reference, Verdict::Ignore);
        } else {
            self.in_flight.delivered(id, source, proven);
        }
    }

    fn on_catchup(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let (reply, answer) = oneshot::channel();
                let event = Event::Request {
                    peer: Peer(peer.to_base58()),
                    body: request,
                    reply,
                };
                if self.deliver(event).is_ok() {
                    // The application may never answer; the requester gives up after the same
                    // timeout, so the channel is not worth keeping longer.
                    self.replies.push(Box::pin(async move {
                        let body = tokio::time::timeout(REQUEST_TIMEOUT, answer).await;
                        (body.ok().and_then(Result::ok), channel)
                    }));
                }
            }
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.outbound.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, %error, "catch-up request failed");
                if let Some(reply) = self.outbound.remove(&request_id) {
                    let _ = reply.send(Err(request_error(peer, error)));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound catch-up request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Sends the application's response, unless it gave none or one over the limit: then the
    /// channel is dropped and the requester sees the stream end without a response.
    fn respond(&mut self, body: Option<Vec<u8>>, channel: ResponseChannel<Vec<u8>>) {
        let Some(body) = body else {
            tracing::debug!("catch-up request left unanswered");
            return;
        };
        if body.len() > MAX_RESPONSE_BYTES {
            tracing::warn!(
                bytes = body.len(),
                limit = MAX_RESPONSE_BYTES,
                "catch-up response over the limit not sent"
            );
            return;
        }
        if let Some(capture) = &mut self.capture {
            capture.record(&body);
        }
        if self
            .swarm
            .behaviour_mut()
            .catchup
            .send_response(channel, body)
            .is_err()
        {
            tracing::debug!("catch-up requester gone before the response");
        }
    }

    /// Hands an event to the application without waiting: a full queue drops it.
    fn deliver(&mut self, event: Event) -> Result<(), ()> {
        match self.events.try_send(event) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                if self.dropped % DROP_LOG_EVERY == 1 {
                    tracing::warn!(
                        dropped = self.dropped,
                        "gossip event queue full: inbound message or request dropped"
                    );
                }
                Err(())
            }
            Err(TrySendError::Closed(_)) => Err(()),
        }
    }

    /// Dials every bootstrap address that is due.
    fn redial(&mut self) {
        let now = Instant::now();
        for (index, address, peer) in self.bootstrap.due(now) {
            if peer.is_some_and(|p| self.swarm.is_connected(&p)) {
                self.bootstrap.already_connected(index);
                continue;
            }
            if has_host_name(&address) {
                // Looked up off the loop, with the system's resolver, at every dial: a
                // machine that moves keeps its name.
                let lookup = self.bootstrap.resolving(index);
                self.lookups.push(Box::pin(async move {
                    (index, lookup, resolve(&address, LOOKUP_TIMEOUT).await)
                }));
                continue;
            }
            self.dial_bootstrap(index, DialOpts::from(address.clone()), &address);
        }
    }

    /// Dials bootstrap entry `index` (at `address`, for the log) with `opts`.
    fn dial_bootstrap(&mut self, index: usize, opts: DialOpts, address: &Multiaddr) {
        let connection = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                tracing::debug!(%address, "dialling bootstrap peer");
                self.bootstrap.dialing(index, connection);
            }
            Err(error) => {
                tracing::debug!(%address, %error, "bootstrap dial refused");
                self.bootstrap
                    .refused(index, Instant::now(), rand::random());
            }
        }
    }

    /// Dials the addresses bootstrap entry `index`'s host name gave in lookup `lookup`, or
    /// backs off.
    fn on_lookup(&mut self, index: usize, lookup: u64, found: Result<Vec<Multiaddr>, String>) {
        if !self.bootstrap.awaiting_lookup(index, lookup) {
            return;
        }
        match found {
            Ok(addresses) => {
                // One dial over every address the name gave, when the peer is known (the swarm
                // tries each); else one address at a time (its peer id is learnt from the
                // connection), the next when one fails.
                let (opts, shown) = match (self.bootstrap.peer(index), addresses.first()) {
                    (Some(peer), Some(first)) => {
                        let shown = first.clone();
                        let opts = DialOpts::peer_id(peer)
                            .addresses(addresses.iter().map(without_peer).collect())
                            .build();
                        (opts, shown)
                    }
                    _ => {
                        let now = Instant::now();
                        match self.bootstrap.found(index, addresses, now, rand::random()) {
                            Some(first) => (DialOpts::from(first.clone()), first),
                            None => return,
                        }
                    }
                };
                self.dial_bootstrap(index, opts, &shown);
            }
            Err(reason) => {
                tracing::warn!(index, %reason, "bootstrap address does not resolve; trying again later");
                self.bootstrap
                    .refused(index, Instant::now(), rand::random());
            }
        }
    }

    fn peer_infos(&self) -> Vec<PeerInfo> {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let topics: HashMap<&PeerId, Vec<String>> = gossipsub
            .all_peers()
            .map(|(peer, topics)| (peer, topics.iter().map(|t| t.to_string()).collect()))
            .collect();
        let connected: HashSet<&PeerId> = self.swarm.connected_peers().collect();
        let mut infos: Vec<PeerInfo> = connected
            .into_iter()
            .map(|peer| {
                let state = self.peers.get(peer);
                let mut peer_topics = topics.get(peer).cloned().unwrap_or_default();
                peer_topics.sort();
                PeerInfo {
                    peer: peer.to_base58(),
                    address: state.and_then(|s| s.address.clone()),
                    agent: state.and_then(|s| s.agent.clone()),
                    score: gossipsub.peer_score(peer),
                    topics: peer_topics.into(),
                    last_message_ms: state.and_then(|s| s.last_message_ms),
                    messages: state.map_or(0, |s| s.messages),
                    connected_since_ms: state.and_then(|s| s.connected_since_ms),
                }
            })
            .collect();
        infos.sort_by(|a, b| a.peer.cmp(&b.peer));
        infos
    }
}

/// Refuses a TCP port another socket listens on. libp2p sets `SO_REUSEPORT` on its listeners,
/// so without this check a second node on the same port would bind "successfully" and the
/// kernel would split the inbound connections between the two.
fn ensure_port_free(address: &Multiaddr) -> Result<(), SwarmError> {
    let mut ip = None;
    let mut port = None;
    for protocol in address.iter() {
        match protocol {
            Protocol::Ip4(v4) => ip = Some(IpAddr::V4(v4)),
            Protocol::Ip6(v6) => ip = Some(IpAddr::V6(v6)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    match (ip, port) {
        (Some(ip), Some(port)) if port != 0 => std::net::TcpListener::bind((ip, port))
            .map(drop)
            .map_err(|e| SwarmError::Listen {
                address: address.clone(),
                reason: e.to_string(),
            }),
        _ => Ok(()),
    }
}

/// Maps a request-response failure to what the caller can act on.
fn request_error(peer: PeerId, error: OutboundFailure) -> RequestError {
    match error {
        OutboundFailure::DialFailure | OutboundFailure::ConnectionClosed => {
            RequestError::Unreachable(peer.to_base58())
        }
        OutboundFailure::Timeout => RequestError::Timeout,
        OutboundFailure::UnsupportedProtocols => {
            RequestError::BadResponse("peer does not speak /xchg/catchup/1.0.0".into())
        }
        OutboundFailure::Io(e) => RequestError::BadResponse(e.to_string()),
    }
}

/// How long a bootstrap address's host name may take to resolve.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `address` names its host (`/dns/`, `/dns4/` or `/dns6/`) rather than an address.
fn has_host_name(address: &Multiaddr) -> bool {
    address
        .iter()
        .any(|p| matches!(p, Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_)))
}

/// `address` once for each address its host name has now (`/dns4/` only IPv4 ones, `/dns6/`
/// only IPv6 ones), the name replaced by the address: the system's resolver (`/etc/hosts`,
/// DNS, as the operating system is set up), as the Raft transport resolves member names.
async fn resolve(address: &Multiaddr, timeout: Duration) -> Result<Vec<Multiaddr>, String> {
    let mut name = None;
    let mut port = None;
    for part in address.iter() {
        match part {
            Protocol::Dns(n) => name = Some((n, None)),
            Protocol::Dns4(n) => name = Some((n, Some(false))),
            Protocol::Dns6(n) => name = Some((n, Some(true))),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    let (Some((name, v6)), Some(port)) = (name, port) else {
        return Err(format!("{address} has no host name and /tcp/ port"));
    };
    let found = tokio::time::timeout(timeout, tokio::net::lookup_host((name.as_ref(), port)))
        .await
        .map_err(|_| format!("looking up {name} took more than {timeout:?}"))?
        .map_err(|e| format!("looking up {name}: {e}"))?;
    let mut ips: Vec<IpAddr> = Vec::new();
    for ip in found.map(|a| a.ip()) {
        if v6.is_none_or(|v6| ip.is_ipv6() == v6) && !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    if ips.is_empty() {
        return Err(format!(
            "{name} has no address of the kind {address} asks for"
        ));
    }
    Ok(ips
        .into_iter()
        .map(|ip| {
            address
                .iter()
                .map(|part| match part {
                    Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) => Protocol::from(ip),
                    other => other,
                })
                .collect()
        })
        .collect())
}

/// `address` without its `/p2p/<peer id>`.
fn without_peer(address: &Multiaddr) -> Multiaddr {
    address
        .iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

/// Sleeps until `deadline`; only polled when there is one.
async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod lookup_tests {
    use super::*;

    #[tokio::test]
    async fn a_host_name_becomes_its_addresses_keeping_port_and_peer() {
        let peer = PeerId::random();
        let named: Multiaddr = format!("/dns4/localhost/tcp/7102/p2p/{peer}")
            .parse()
            .expect("multiaddr");
        assert!(has_host_name(&named));
        let found = resolve(&named, Duration::from_secs(10))
            .await
            .expect("localhost resolves");
        assert_eq!(
            found,
            [format!("/ip4/127.0.0.1/tcp/7102/p2p/{peer}")
                .parse::<Multiaddr>()
                .expect("multiaddr")]
        );
        assert_eq!(
            without_peer(&found[0]).to_string(),
            "/ip4/127.0.0.1/tcp/7102"
        );
        let plain: Multiaddr = "/ip4/127.0.0.1/tcp/7102".parse().expect("multiaddr");
        assert!(!has_host_name(&plain));
        assert!(resolve(&plain, Duration::from_secs(1)).await.is_err());
    }
}
