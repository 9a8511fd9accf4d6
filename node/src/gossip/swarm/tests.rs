//! Real swarms on 127.0.0.1: delivery, forwarding only after Accept, scoring of rejects,
//! catch-up requests, the capture file and listen errors.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use libp2p::multiaddr::Protocol;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;
use xchg_protocol::Keypair;

use super::event_loop::{UNPROVEN_PER_PEER, UNPROVEN_SHARE};
use super::*;
use crate::gossip::{MAX_RESPONSE_BYTES, Message, topic_of};

/// Every wait in these tests ends by this deadline; none is a fixed sleep.
const DEADLINE: Duration = Duration::from_secs(30);
/// How often a condition is polled while waiting for it.
const POLL: Duration = Duration::from_millis(50);

struct Node {
    key: Keypair,
    client: Client,
    events: mpsc::Receiver<Event>,
    /// A listen address ending in `/p2p/<peer id>`.
    address: Multiaddr,
}

impl Node {
    fn peer(&self) -> Peer {
        self.client.local_peer()
    }
}

async fn start(bootstrap: Vec<Multiaddr>, capture: Option<PathBuf>) -> Node {
    let any_port = "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr");
    start_as(Keypair::generate(), any_port, bootstrap, capture).await
}

async fn start_as(
    key: Keypair,
    listen: Multiaddr,
    bootstrap: Vec<Multiaddr>,
    capture: Option<PathBuf>,
) -> Node {
    let mut config = SwarmConfig::new(key.clone(), "xchg/test zone node");
    config.listen = vec![listen];
    config.bootstrap = bootstrap;
    config.capture = capture;
    // Faster mesh upkeep and IHAVE gossip than the 1 s default, to keep the tests short.
    config.heartbeat = Duration::from_millis(200);
    let (client, events) = spawn(config).await.expect("spawn");
    let peer = client.local_peer().0.parse().expect("peer id");
    let bound = client.listen_addrs().await;
    let address = bound
        .first()
        .expect("a bound address")
        .clone()
        .with(Protocol::P2p(peer));
    Node {
        key,
        client,
        events,
        address,
    }
}

/// Polls `check` until it holds; fails the test at the deadline.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `node` sees `peer` connected and subscribed to `topic`.
async fn sees_subscribed(node: &Node, peer: &Peer, topic: &str) {
    eventually(&format!("{peer} subscribed to {topic}"), || async {
        node.client
            .peers()
            .await
            .iter()
            .any(|p| p.peer == peer.0 && p.topics.iter().any(|t| t == topic))
    })
    .await;
}

async fn next_event(node: &mut Node) -> Event {
    tokio::time::timeout(DEADLINE, node.events.recv())
        .await
        .expect("timed out waiting for an event")
        .expect("event stream ended")
}

async fn next_message(node: &mut Node) -> Message {
    match next_event(node).await {
        Event::Message(message) => message,
        other => panic!("expected a gossip message, got {other:?}"),
    }
}

/// Publishes as soon as a subscriber is known (gossipsub refuses with no peer).
async fn publish(node: &Node, topic: &str, data: &[u8]) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match node.client.publish(topic.into(), data.to_vec()).await {
            Ok(()) => return,
            Err(PublishError::NoPeers(_)) if Instant::now() < deadline => {
                tokio::time::sleep(POLL).await;
            }
            Err(e) => panic!("publish failed: {e}"),
        }
    }
}

/// A — B — C: B bootstraps to A, C only to B; all three subscribe to `topic`.
async fn three_in_a_line(topic: &str) -> (Node, Node, Node) {
    let a = start(Vec::new(), None).await;
    let b = start(vec![a.address.clone()], None).await;
    let c = start(vec![b.address.clone()], None).await;
    for node in [&a, &b, &c] {
        node.client
            .subscribe(topic.into())
            .await
            .expect("subscribe");
    }
    sees_subscribed(&a, &b.peer(), topic).await;
    sees_subscribed(&b, &a.peer(), topic).await;
    sees_subscribed(&b, &c.peer(), topic).await;
    sees_subscribed(&c, &b.peer(), topic).await;
    (a, b, c)
}

#[test]
fn the_libp2p_peer_id_is_the_protocol_peer_id_of_the_node_key() {
    for _ in 0..8 {
        let key = Keypair::generate();
        let identity = libp2p_identity(&key).expect("identity");
        assert_eq!(
            identity.public().to_peer_id().to_base58(),
            key.public().peer_id()
        );
    }
}

#[tokio::test]
async fn a_message_reaches_a_peer_and_is_forwarded_by_it_only_after_accept() {
    let topic = topic_of("xuchang");
    let (a, mut b, mut c) = three_in_a_line(&topic).await;
    assert_eq!(
        a.peer().0,
        a.key.public().peer_id(),
        "the swarm speaks as the node key"
    );

    let data = b"envelope 1".to_vec();
    publish(&a, &topic, &data).await;
    let at_b = next_message(&mut b).await;
    assert_eq!(
        at_b.reference.id.as_slice(),
        Sha256::digest(&data).as_slice()
    );
    assert_eq!(at_b.reference.source, a.peer());
    assert_eq!(at_b.topic, topic);
    assert_eq!(at_b.data, data);
    assert!(c.events.try_recv().is_err(), "forwarded before B's verdict");

    b.client.report(at_b.reference, Verdict::Accept);
    let at_c = next_message(&mut c).await;
    assert_eq!(at_c.data, data);
    assert_eq!(at_c.reference.source, b.peer(), "C only hears it through B");
    c.client.report(at_c.reference, Verdict::Accept);

    let seen_by_b = b.client.peers().await;
    let a_at_b = seen_by_b.iter().find(|p| p.peer == a.peer().0).expect("A");
    assert_eq!(a_at_b.messages, 1);
    assert!(a_at_b.last_message_ms.is_some());
    assert_eq!(a_at_b.agent.as_deref(), Some("xchg/test zone node"));
    assert!(a_at_b.address.is_some());
}

#[tokio::test]
async fn a_rejected_message_is_not_forwarded_and_lowers_the_deliverers_score() {
    let topic = topic_of("xuchang");
    let (a, mut b, mut c) = three_in_a_line(&topic).await;

    for n in 0..3 {
        publish(&a, &topic, format!("forged {n}").as_bytes()).await;
        let forged = next_message(&mut b).await;
        b.client.report(forged.reference, Verdict::Reject);
    }
    // A valid message after the forged ones travels the same A → B → C path; had B forwarded a
    // forged one, C would have received it first.
    publish(&a, &topic, b"valid").await;
    let valid = next_message(&mut b).await;
    assert_eq!(valid.data, b"valid");
    b.client.report(valid.reference, Verdict::Accept);
    let at_c = next_message(&mut c).await;
    assert_eq!(at_c.data, b"valid", "C received a rejected message");

    let score_of = |infos: Vec<PeerInfo>, peer: &Peer| {
        infos
            .into_iter()
            .find(|p| p.peer == peer.0)
            .and_then(|p| p.score)
            .expect("scored peer")
    };
    let a_at_b = score_of(b.client.peers().await, &a.peer());
    assert!(a_at_b < 0.0, "A's score at B after three rejects: {a_at_b}");
    let b_at_c = score_of(c.client.peers().await, &b.peer());
    assert!(b_at_c >= 0.0, "B only forwarded valid gossip: {b_at_c}");
}

#[tokio::test]
async fn a_request_gets_the_response_and_an_oversized_response_is_refused() {
    let mut a = start(Vec::new(), None).await;
    let b = start(vec![a.address.clone()], None).await;
    eventually("B connected to A", || async {
        b.client.peers().await.iter().any(|p| p.peer == a.peer().0)
    })
    .await;

    let responder = tokio::spawn(async move {
        for response in [b"digest!".to_vec(), vec![0u8; MAX_RESPONSE_BYTES + 1]] {
            match next_event(&mut a).await {
                Event::Request { peer, body, reply } => {
                    assert_eq!(body, b"digest?");
                    reply.send(response).expect("requester waiting");
                    assert!(!peer.0.is_empty());
                }
                other => panic!("expected a request, got {other:?}"),
            }
        }
        a
    });
    let a_peer = Peer(
        b.client
            .peers()
            .await
            .first()
            .map(|p| p.peer.clone())
            .expect("A"),
    );
    let answer = b.client.request(a_peer.clone(), b"digest?".to_vec()).await;
    assert_eq!(answer.expect("response"), b"digest!");

    let started = Instant::now();
    let refused = b.client.request(a_peer, b"digest?".to_vec()).await;
    assert!(
        matches!(refused, Err(RequestError::BadResponse(_))),
        "oversized response: {refused:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused promptly, not by timeout"
    );
    responder.await.expect("responder");

    let stranger = Peer(Keypair::generate().public().peer_id());
    let unreachable = b.client.request(stranger, b"digest?".to_vec()).await;
    assert!(
        matches!(unreachable, Err(RequestError::Unreachable(_))),
        "{unreachable:?}"
    );
}

#[tokio::test]
async fn the_capture_file_holds_what_the_node_published_and_answered_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("capture");
    let topic = topic_of("xuchang");
    let mut a = start(Vec::new(), Some(path.clone())).await;
    let mut b = start(vec![a.address.clone()], None).await;
    for node in [&a, &b] {
        node.client
            .subscribe(topic.clone())
            .await
            .expect("subscribe");
    }
    sees_subscribed(&a, &b.peer(), &topic).await;
    sees_subscribed(&b, &a.peer(), &topic).await;

    publish(&a, &topic, b"published by A").await;
    let at_b = next_message(&mut b).await;
    b.client.report(at_b.reference, Verdict::Accept);

    publish(&b, &topic, b"published by B").await;
    let at_a = next_message(&mut a).await;
    a.client.report(at_a.reference, Verdict::Accept);

    let request = b.client.request(a.peer(), b"digest?".to_vec());
    let answer = async {
        match next_event(&mut a).await {
            Event::Request { reply, .. } => reply.send(b"answered by A".to_vec()),
            other => panic!("expected a request, got {other:?}"),
        }
    };
    let (response, sent) = tokio::join!(request, answer);
    sent.expect("requester waiting");
    assert_eq!(response.expect("response"), b"answered by A");

    let records = read_capture(&path).expect("capture");
    assert_eq!(
        records,
        [b"published by A".to_vec(), b"answered by A".to_vec()]
    );
}

#[tokio::test]
async fn a_listen_address_already_in_use_is_refused() {
    let first = start(Vec::new(), None).await;
    let bound = first.client.listen_addrs().await;
    let mut config = SwarmConfig::new(Keypair::generate(), "xchg/test");
    config.listen = bound.clone();
    match spawn(config).await {
        Err(SwarmError::Listen { address, .. }) => assert_eq!(address, bound[0]),
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a second node bound {}", bound[0]),
    }
}

#[tokio::test]
async fn a_bootstrap_peer_that_restarts_is_redialled() {
    let a = start(Vec::new(), None).await;
    let b = start(vec![a.address.clone()], None).await;
    let connected = |node: &Node, peer: Peer| {
        let client = node.client.clone();
        async move { client.peers().await.iter().any(|p| p.peer == peer.0) }
    };
    eventually("B connected to A", || connected(&b, a.peer())).await;

    let (key, bound) = (a.key.clone(), a.client.listen_addrs().await);
    a.client.shutdown().await;
    eventually("B lost A", || async { !connected(&b, a.peer()).await }).await;

    let again = start_as(key, bound[0].clone(), Vec::new(), None).await;
    assert_eq!(again.peer(), a.peer());
    eventually("B redialled A", || connected(&b, a.peer())).await;
}

#[tokio::test]
async fn dial_connects_to_a_peer_given_its_address() {
    let a = start(Vec::new(), None).await;
    let b = start(Vec::new(), None).await;
    b.client.dial(a.address.clone()).await.expect("dial");
    eventually("B connected to A", || async {
        b.client.peers().await.iter().any(|p| p.peer == a.peer().0)
    })
    .await;
}

#[tokio::test]
async fn dropping_every_client_stops_the_node_and_frees_its_port() {
    let Node {
        client, mut events, ..
    } = start(Vec::new(), None).await;
    let bound = client.listen_addrs().await;
    drop(client.clone());
    drop(client);
    let ended = tokio::time::timeout(DEADLINE, events.recv()).await;
    assert!(matches!(ended, Ok(None)), "event stream still open");
    let again = start_as(Keypair::generate(), bound[0].clone(), Vec::new(), None).await;
    assert_eq!(again.client.listen_addrs().await, bound);
}

#[tokio::test]
async fn shutdown_stops_the_loop_and_later_calls_say_stopped() {
    let node = start(Vec::new(), None).await;
    let other = node.client.clone();
    node.client.shutdown().await;
    let result = other.subscribe(topic_of("xuchang")).await;
    assert!(matches!(result, Err(PublishError::Stopped)), "{result:?}");
    assert!(other.listen_addrs().await.is_empty());
}

#[tokio::test]
async fn an_oversized_publish_is_refused_before_gossipsub_unless_unchecked() {
    let topic = topic_of("xuchang");
    let a = start(Vec::new(), None).await;
    let mut b = start(vec![a.address.clone()], None).await;
    for node in [&a, &b] {
        node.client
            .subscribe(topic.clone())
            .await
            .expect("subscribe");
    }
    sees_subscribed(&a, &b.peer(), &topic).await;

    let oversized = vec![0x40; MAX_PUBLISH_BYTES + 1];
    let refused = a.client.publish(topic.clone(), oversized.clone()).await;
    assert!(
        matches!(refused, Err(PublishError::TooLarge(n)) if n == MAX_PUBLISH_BYTES + 1),
        "{refused:?}"
    );
    // What a hostile peer can still send: up to the transmit size, which receivers accept.
    a.client
        .publish_unchecked(topic.clone(), oversized.clone())
        .await
        .expect("unchecked publish");
    assert_eq!(next_message(&mut b).await.data, oversized);
    let beyond = a
        .client
        .publish_unchecked(topic, vec![0x40; crate::gossip::MAX_TRANSMIT_BYTES + 1])
        .await;
    assert!(matches!(beyond, Err(PublishError::Other(_))), "{beyond:?}");
}

#[tokio::test]
async fn a_peer_that_pings_but_never_answers_pings_stays_connected() {
    let any_port = "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr");
    let mut config = SwarmConfig::new(Keypair::generate(), "xchg/test zone node");
    config.listen = vec![any_port];
    // Pings every 300 ms, each given 300 ms: many unanswered rounds within the test.
    config.ping = PingTiming {
        interval: Duration::from_millis(300),
        timeout: Duration::from_millis(300),
    };
    let (node, _events) = spawn(config).await.expect("spawn");
    let topic = topic_of("zhengzhou");
    node.subscribe(topic.clone()).await.expect("subscribe");
    let address = node.listen_addrs().await[0].clone();
    let mut foreign = super::foreign::start(
        address,
        &topic,
        "other-stack/2.1 zhengzhou/main main-1 -",
        Duration::from_millis(300),
    );
    let since = |infos: Vec<PeerInfo>| {
        infos
            .into_iter()
            .find(|p| p.peer == foreign.peer.to_base58())
            .and_then(|p| p.connected_since_ms)
    };
    eventually("the foreign peer connected", || async {
        since(node.peers().await).is_some()
    })
    .await;
    let first = since(node.peers().await);
    // Ten of our pings left unanswered, while it keeps pinging us and we answer.
    let deadline = Instant::now() + DEADLINE;
    while *foreign.unanswered.borrow_and_update() < 10 {
        assert!(
            Instant::now() < deadline,
            "our node stopped pinging the peer"
        );
        let _ = tokio::time::timeout(POLL * 10, foreign.unanswered.changed()).await;
    }
    assert!(*foreign.answered.borrow() >= 3, "its pings were answered");
    assert_eq!(
        since(node.peers().await),
        first,
        "the connection was dropped and made again"
    );
}

/// The gossip messages `from` has delivered to `node` so far (counted before any queue).
async fn delivered_by(node: &Node, from: &Peer) -> u64 {
    node.client
        .peers()
        .await
        .into_iter()
        .find(|p| p.peer == from.0)
        .map_or(0, |p| p.messages)
}

/// Publishes numbered messages from `from` until `to` has received `count` of them (gossipsub
/// may drop a few from a full send queue). Signing and checking a thousand messages takes a
/// debug build on a busy machine a while, hence its own, longer deadline.
async fn flood(from: &Node, to: &Node, topic: &str, count: u64) {
    let deadline = Instant::now() + 4 * DEADLINE;
    let mut n = 0u64;
    while delivered_by(to, &from.peer()).await < count {
        assert!(Instant::now() < deadline, "the flood did not arrive");
        for _ in 0..64 {
            publish(from, topic, format!("flood {} {n}", from.peer()).as_bytes()).await;
            n += 1;
        }
    }
}

/// The messages waiting in `node`'s event queue, by their data.
fn queued(node: &mut Node) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Ok(event) = node.events.try_recv() {
        if let Event::Message(m) = event {
            out.push(m.data);
        }
    }
    out
}

#[tokio::test]
async fn a_flooding_peer_cannot_push_others_out_of_the_inbound_queue() {
    let topic = topic_of("xuchang");
    let mut a = start(Vec::new(), None).await;
    let flooder = start(vec![a.address.clone()], None).await;
    let honest = start(vec![a.address.clone()], None).await;
    for node in [&a, &flooder, &honest] {
        node.client
            .subscribe(topic.clone())
            .await
            .expect("subscribe");
    }
    sees_subscribed(&flooder, &a.peer(), &topic).await;
    sees_subscribed(&honest, &a.peer(), &topic).await;

    // More than the whole queue, while A's application reads nothing.
    flood(&flooder, &a, &topic, EVENT_QUEUE as u64 + 64).await;
    publish(&honest, &topic, b"honest").await;
    eventually("the honest message at A", || async {
        delivered_by(&a, &honest.peer()).await >= 1
    })
    .await;

    let waiting = queued(&mut a);
    assert!(
        waiting.iter().any(|d| d == b"honest"),
        "the honest message was pushed out ({} queued)",
        waiting.len()
    );
    let from_flooder = waiting.iter().filter(|d| d.starts_with(b"flood")).count();
    assert!(
        from_flooder <= UNPROVEN_PER_PEER,
        "{from_flooder} from the flooder"
    );
    assert!(a.client.stats().await.shed > 0);
}

#[tokio::test]
async fn peers_nobody_vouches_for_share_a_quarter_of_the_queue_and_proven_ones_get_through() {
    let topic = topic_of("xuchang");
    let mut a = start(Vec::new(), None).await;
    let proven = start(vec![a.address.clone()], None).await;
    let mut flooders = Vec::new();
    for _ in 0..UNPROVEN_SHARE / UNPROVEN_PER_PEER + 1 {
        flooders.push(start(vec![a.address.clone()], None).await);
    }
    for node in std::iter::once(&a).chain([&proven]).chain(&flooders) {
        node.client
            .subscribe(topic.clone())
            .await
            .expect("subscribe");
    }
    for node in std::iter::once(&proven).chain(&flooders) {
        sees_subscribed(node, &a.peer(), &topic).await;
    }
    a.client.set_proven(proven.peer(), true);

    for f in &flooders {
        flood(f, &a, &topic, UNPROVEN_PER_PEER as u64 + 8).await;
    }
    publish(&proven, &topic, b"proven").await;
    eventually("the proven peer's message at A", || async {
        delivered_by(&a, &proven.peer()).await >= 1
    })
    .await;
    let waiting = queued(&mut a);
    assert!(waiting.iter().any(|d| d == b"proven"));
    let unproven = waiting.iter().filter(|d| d.starts_with(b"flood")).count();
    assert_eq!(unproven, UNPROVEN_SHARE, "unproven peers together");
}

#[tokio::test]
async fn a_node_at_its_connection_limit_refuses_more_peers() {
    let any_port: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr");
    let mut config = SwarmConfig::new(Keypair::generate(), "xchg/test zone node");
    config.listen = vec![any_port];
    config.limits = ConnectionCaps {
        total: 2,
        incoming: 2,
        per_peer: 1,
        pending_incoming: 8,
        pending_outgoing: 8,
    };
    let (a, _events) = spawn(config).await.expect("spawn");
    let a_peer: libp2p::PeerId = a.local_peer().0.parse().expect("peer id");
    let address = a.listen_addrs().await[0]
        .clone()
        .with(Protocol::P2p(a_peer));
    let b = start(vec![address.clone()], None).await;
    eventually("B connected", || async { a.peers().await.len() == 1 }).await;
    // A second connection from the same peer is one too many.
    b.client.dial(address.clone()).await.expect("dial");
    eventually("B's second connection refused", || async {
        a.stats().await.denied >= 1
    })
    .await;
    let _c = start(vec![address.clone()], None).await;
    let _d = start(vec![address.clone()], None).await;
    eventually("one of C and D refused", || async {
        a.stats().await.denied >= 2 && a.peers().await.len() == 2
    })
    .await;
    assert!(a.stats().await.connections <= 2);
}
