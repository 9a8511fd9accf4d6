//! A peer built from stock libp2p parts, as another exchange's stack might be: identify,
//! gossipsub and a ping client that never answers pings itself (tests only).
//!
//! Its pings go out over request-response on `/ipfs/ping/1.0.0`, whose wire form (32 bytes out,
//! the same 32 bytes back) is the ping protocol's, so our node answers them; the pings our node
//! sends it are read and left unanswered until the stream is dropped.

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, StreamExt as _};
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, identify, noise, request_response, tcp, yamux};
use tokio::sync::watch;

use super::libp2p_identity;
use xchg_protocol::Keypair;

const PING: StreamProtocol = StreamProtocol::new("/ipfs/ping/1.0.0");
const PING_BYTES: usize = 32;

/// Ping payloads: 32 bytes each way, nothing else.
#[derive(Debug, Clone, Copy, Default)]
struct PingCodec;

async fn read_payload<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut payload = vec![0u8; PING_BYTES];
    io.read_exact(&mut payload).await?;
    Ok(payload)
}

impl request_response::Codec for PingCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_payload(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_payload(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        // The stream stays open for the answer: ping answers on the same stream.
        io.write_all(&request).await?;
        io.flush().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&response).await?;
        io.close().await
    }
}

#[derive(NetworkBehaviour)]
struct ForeignBehaviour {
    identify: identify::Behaviour,
    gossipsub: gossipsub::Behaviour,
    ping: request_response::Behaviour<PingCodec>,
}

/// A running foreign peer; it stops when dropped.
pub(super) struct ForeignPeer {
    /// Its peer id.
    pub(super) peer: PeerId,
    /// Pings it sent that our node answered.
    pub(super) answered: watch::Receiver<u64>,
    /// Pings our node sent it (all left unanswered).
    pub(super) unanswered: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ForeignPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a foreign peer that dials `address`, subscribes to `topic`, sends a ping every
/// `ping_every` and announces `agent` through identify.
pub(super) fn start(
    address: Multiaddr,
    topic: &str,
    agent: &str,
    ping_every: Duration,
) -> ForeignPeer {
    let key = libp2p_identity(&Keypair::generate()).expect("identity");
    let peer = key.public().to_peer_id();
    let topic = IdentTopic::new(topic);
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|key| {
            let gossipsub = gossipsub::Behaviour::new(
                MessageAuthenticity::Signed(key.clone()),
                gossipsub::ConfigBuilder::default()
                    .validation_mode(ValidationMode::Strict)
                    .build()
                    .expect("gossipsub config"),
            )
            .expect("gossipsub");
            ForeignBehaviour {
                identify: identify::Behaviour::new(
                    identify::Config::new("xchg/1".into(), key.public())
                        .with_agent_version(agent.into()),
                ),
                gossipsub,
                ping: request_response::Behaviour::new(
                    [(PING, request_response::ProtocolSupport::Full)],
                    // Inbound pings wait (unanswered) for as long as the test lasts.
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(3600)),
                ),
            }
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .expect("subscribe");
    swarm.dial(address).expect("dial");
    let (answered_tx, answered) = watch::channel(0u64);
    let (unanswered_tx, unanswered) = watch::channel(0u64);
    let task = tokio::spawn(async move {
        let mut pace = tokio::time::interval(ping_every);
        // Inbound pings are held here, never answered.
        let mut held = Vec::new();
        loop {
            tokio::select! {
                _ = pace.tick() => {
                    let connected: Vec<PeerId> = swarm.connected_peers().copied().collect();
                    for to in connected {
                        swarm.behaviour_mut().ping.send_request(&to, vec![7; PING_BYTES]);
                    }
                }
                event = swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(ForeignBehaviourEvent::Ping(
                        request_response::Event::Message { message, .. },
                    )) = event
                    {
                        match message {
                            request_response::Message::Request { channel, .. } => {
                                held.push(channel);
                                unanswered_tx.send_modify(|n| *n += 1);
                            }
                            request_response::Message::Response { .. } => {
                                answered_tx.send_modify(|n| *n += 1);
                            }
                        }
                    }
                }
            }
        }
    });
    ForeignPeer {
        peer,
        answered,
        unanswered,
        task,
    }
}
