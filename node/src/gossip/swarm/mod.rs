//! The libp2p implementation of [`Broadcast`]: TCP + Noise + Yamux, identify, ping, gossipsub
//! (strict signing, manual validation, peer scoring) and the catch-up request-response protocol.
//!
//! An actor: [`spawn`] builds the `Swarm`, binds the listen addresses and moves the swarm into
//! an event-loop task; the cheap, cloneable [`Client`] sends it commands over a bounded channel
//! and inbound traffic arrives as [`Event`]s on another. The loop stops on
//! [`Client::shutdown`] or when the last `Client` is dropped.

mod behaviour;
mod bootstrap;
mod capture;
mod codec;
mod event_loop;
#[cfg(test)]
mod foreign;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use libp2p::{PeerId, identity, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};
use xchg_protocol::Keypair;

use super::{
    BoxFuture, Broadcast, EVENT_QUEUE, Event, MAX_PUBLISH_BYTES, MAX_REQUEST_BYTES, MessageRef,
    Offence, Peer, PeerInfo, PublishError, RequestError, Verdict,
};
use behaviour::Behaviour;
use capture::Capture;
pub use event_loop::TransportStats;
use event_loop::{Command, Control, EventLoop};

pub(crate) use behaviour::REQUEST_TIMEOUT;
pub use behaviour::{ConnectionCaps, PingTiming};
pub use capture::read_capture;
/// The multiaddr type the swarm takes: libp2p's re-export, the same crate and major version as
/// the workspace's `multiaddr` dependency, so config addresses pass straight through.
pub use libp2p::Multiaddr;

/// Commands waiting for the event loop; callers wait when it is full.
const COMMAND_QUEUE: usize = 256;
/// Verdicts, penalties and proven peers waiting for the event loop. At most one verdict per
/// delivered message, and deliveries stop while [`EVENT_QUEUE`] is full, so this never fills
/// in practice; what does not fit is logged and lost (a lost verdict lets gossipsub expire the
/// message unforwarded).
const CONTROL_QUEUE: usize = 4 * EVENT_QUEUE;
/// How long [`spawn`] waits for the listeners to report their addresses.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`spawn`] needs to start a node's federation transport.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// The node key. It is also the libp2p identity (PROTOCOL.md 7.1), so the peer id is the one
    /// other nodes derive from the node key in the zone configuration.
    pub key: Keypair,
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/7102`; tests use `/ip4/127.0.0.1/tcp/0`.
    pub listen: Vec<Multiaddr>,
    /// Addresses dialled at start and redialled with backoff whenever the connection is lost.
    /// Ending them in `/p2p/<peer id>` makes the handshake check who answers.
    pub bootstrap: Vec<Multiaddr>,
    /// identify `agent_version`: `xchg/<version> <zone> <node> <api url>`.
    pub agent: String,
    /// For tests: if set, every `data` passed to [`Broadcast::publish`] and every response body
    /// sent for an inbound request is appended to this file as a record (`u32` big-endian
    /// length, then the bytes), flushed per record, before it is handed to libp2p. Read it with
    /// [`read_capture`]. Gossip this node merely forwards is not recorded: it is someone else's.
    pub capture: Option<PathBuf>,
    /// Gossipsub heartbeat: mesh maintenance, IHAVE gossip and score decay run this often.
    pub heartbeat: Duration,
    /// A connection with no open stream is closed after this long (bootstrap peers are then
    /// redialled).
    pub idle_timeout: Duration,
    /// Pings to connected peers (round trips only: a peer that does not answer is kept).
    pub ping: PingTiming,
    /// Connection limits: in total, per peer, and being set up.
    pub limits: ConnectionCaps,
}

impl SwarmConfig {
    /// A configuration with no listen or bootstrap address, no capture, a 1 s heartbeat, a
    /// 60 s idle timeout and pings every 15 s.
    pub fn new(key: Keypair, agent: impl Into<String>) -> Self {
        SwarmConfig {
            key,
            listen: Vec::new(),
            bootstrap: Vec::new(),
            agent: agent.into(),
            capture: None,
            heartbeat: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(60),
            ping: PingTiming::default(),
            limits: ConnectionCaps::default(),
        }
    }
}

/// Why the transport could not start, or a dial could not begin.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    /// The node key could not become a libp2p identity.
    #[error("node key unusable as libp2p identity: {0}")]
    Identity(String),
    /// The transport or a behaviour refused its configuration.
    #[error("cannot build the libp2p swarm: {0}")]
    Build(String),
    /// A listen address could not be bound: in use, not local, or not `/ip4|ip6/…/tcp/…`.
    #[error("cannot listen on {address}: {reason}")]
    Listen {
        /// The address from the configuration.
        address: Multiaddr,
        /// What the transport said.
        reason: String,
    },
    /// The capture file could not be opened.
    #[error("cannot open capture file {path}: {reason}")]
    Capture {
        /// The configured path.
        path: PathBuf,
        /// What the file system said.
        reason: String,
    },
    /// A dial could not be started (unsupported address, or our own).
    #[error("cannot dial {address}: {reason}")]
    Dial {
        /// The address given.
        address: Multiaddr,
        /// What the swarm said.
        reason: String,
    },
    /// The event loop has stopped.
    #[error("gossip transport stopped")]
    Stopped,
}

/// The libp2p identity of a node key.
///
/// # Errors
/// [`SwarmError::Identity`] if libp2p refuses the seed (it accepts every 32-byte seed).
pub fn libp2p_identity(key: &Keypair) -> Result<identity::Keypair, SwarmError> {
    identity::Keypair::ed25519_from_bytes(key.seed())
        .map_err(|e| SwarmError::Identity(e.to_string()))
}

/// Starts the transport: builds the swarm, binds every listen address, starts dialling the
/// bootstrap addresses and spawns the event loop on the current tokio runtime.
///
/// Returns the handle and the inbound event stream (capacity [`EVENT_QUEUE`]).
///
/// # Errors
/// [`SwarmError::Listen`] if a listen address cannot be bound; [`SwarmError::Capture`],
/// [`SwarmError::Identity`] or [`SwarmError::Build`] for a configuration libp2p refuses.
pub async fn spawn(config: SwarmConfig) -> Result<(Client, mpsc::Receiver<Event>), SwarmError> {
    let key = libp2p_identity(&config.key)?;
    let local = Peer(key.public().to_peer_id().to_base58());
    let capture = match &config.capture {
        Some(path) => Some(Capture::open(path).map_err(|e| SwarmError::Capture {
            path: path.clone(),
            reason: e.to_string(),
        })?),
        None => None,
    };
    let (agent, heartbeat, ping, limits) = (
        config.agent.clone(),
        config.heartbeat,
        config.ping,
        config.limits,
    );
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| SwarmError::Build(e.to_string()))?
        .with_behaviour(|key| {
            Behaviour::new(key, agent, heartbeat, ping, limits).map_err(Into::into)
        })
        .map_err(|e| SwarmError::Build(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
        .build();

    let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let (event_tx, event_rx) = mpsc::channel(EVENT_QUEUE);
    let mut event_loop = EventLoop::new(
        swarm,
        command_rx,
        control_rx,
        event_tx,
        capture,
        config.bootstrap,
    );
    event_loop.listen(config.listen, LISTEN_TIMEOUT).await?;
    tokio::spawn(event_loop.run());

    let client = Client {
        local,
        commands: command_tx,
        controls: control_tx,
    };
    Ok((client, event_rx))
}

/// A handle on the running transport. Cheap to clone; the event loop stops when the last clone
/// is dropped or on [`Client::shutdown`].
#[derive(Debug, Clone)]
pub struct Client {
    local: Peer,
    commands: mpsc::Sender<Command>,
    controls: mpsc::Sender<Control>,
}

impl Client {
    /// Sends a command and waits for its answer; `None` once the loop has stopped.
    async fn call<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).await.ok()?;
        answer.await.ok()
    }

    /// The addresses actually bound (port 0 resolved); empty once stopped.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.call(|reply| Command::ListenAddrs { reply })
            .await
            .unwrap_or_default()
    }

    /// What the transport refused or dropped so far, and its open connections; the default
    /// once stopped.
    pub async fn stats(&self) -> TransportStats {
        self.call(|reply| Command::Stats { reply })
            .await
            .unwrap_or_default()
    }

    /// Starts dialling `address` (it may end in `/p2p/<peer id>`); the connection, if it
    /// succeeds, shows in [`Broadcast::peers`].
    ///
    /// # Errors
    /// [`SwarmError::Dial`] if the dial cannot begin, [`SwarmError::Stopped`].
    pub async fn dial(&self, address: Multiaddr) -> Result<(), SwarmError> {
        self.call(|reply| Command::Dial { address, reply })
            .await
            .unwrap_or(Err(SwarmError::Stopped))
    }

    /// Publishes without the [`MAX_PUBLISH_BYTES`] check (gossipsub still refuses data over
    /// [`crate::gossip::MAX_TRANSMIT_BYTES`]). Only for tests that play a hostile peer sending
    /// what no honest node would; the node itself publishes through [`Broadcast::publish`].
    ///
    /// # Errors
    /// As [`Broadcast::publish`], except [`PublishError::TooLarge`].
    pub async fn publish_unchecked(
        &self,
        topic: String,
        data: Vec<u8>,
    ) -> Result<(), PublishError> {
        self.call(|reply| Command::Publish { topic, data, reply })
            .await
            .unwrap_or(Err(PublishError::Stopped))
    }

    /// Stops the event loop and waits until it has dropped the swarm (listeners closed,
    /// connections dropped). Other clones then answer [`PublishError::Stopped`] and the like.
    pub async fn shutdown(&self) {
        let (done, stopped) = oneshot::channel();
        if self.commands.send(Command::Shutdown { done }).await.is_ok() {
            // An error means the loop stopped for another reason: stopped either way.
            let _ = stopped.await;
        }
    }
}

impl Broadcast for Client {
    fn local_peer(&self) -> Peer {
        self.local.clone()
    }

    fn subscribe(&self, topic: String) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move {
            self.call(|reply| Command::Subscribe { topic, reply })
                .await
                .unwrap_or(Err(PublishError::Stopped))
        })
    }

    fn publish(&self, topic: String, data: Vec<u8>) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move {
            if data.len() > MAX_PUBLISH_BYTES {
                return Err(PublishError::TooLarge(data.len()));
            }
            self.publish_unchecked(topic, data).await
        })
    }

    fn report(&self, message: MessageRef, verdict: Verdict) {
        if let Err(e) = self.controls.try_send(Control::Verdict(message, verdict)) {
            tracing::warn!(error = %e, "gossip verdict lost; the message will not be forwarded");
        }
    }

    fn penalise(&self, peer: Peer, offence: Offence) {
        if let Err(e) = self.controls.try_send(Control::Penalise(peer, offence)) {
            tracing::warn!(error = %e, "gossip penalty lost");
        }
    }

    fn set_proven(&self, peer: Peer, proven: bool) {
        if let Err(e) = self.controls.try_send(Control::Proven(peer, proven)) {
            tracing::debug!(error = %e, "proven peer not passed on; it is passed again later");
        }
    }

    fn request(&self, peer: Peer, body: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, RequestError>> {
        Box::pin(async move {
            if body.len() > MAX_REQUEST_BYTES {
                return Err(RequestError::BadResponse(format!(
                    "request of {} bytes not sent: over the {MAX_REQUEST_BYTES}-byte limit",
                    body.len()
                )));
            }
            let Ok(id) = peer.0.parse::<PeerId>() else {
                return Err(RequestError::Unreachable(peer.0));
            };
            self.call(|reply| Command::Request {
                peer: id,
                body,
                reply,
            })
            .await
            .unwrap_or(Err(RequestError::Stopped))
        })
    }

    fn peers(&self) -> BoxFuture<'_, Vec<PeerInfo>> {
        Box::pin(async move {
            self.call(|reply| Command::Peers { reply })
                .await
                .unwrap_or_default()
        })
    }
}
