//! An in-process [`Broadcast`] network for tests and simulations: gossip with flooding after
//! Accept, catch-up requests, and the faults of [`crate::fault`].
//!
//! Gossip follows the swarm's semantics where a node can tell: a message goes to every
//! reachable subscriber of its topic that has not seen its id (never back to its publisher); a
//! receiver that reports `Accept` forwards it, on its behalf, to the subscribers reachable from
//! *it* that have not seen it, so delivery spans partial connectivity as real gossip does.
//! `Ignore` and `Reject` stop it there, and a `Reject` lowers the delivering peer's score as the
//! reporting peer sees it (score = minus the rejected messages it delivered, minus the points of
//! the offences held against it, which do not decay here). Old messages are
//! never replayed: whatever reaches a peer after a partition heals came through catch-up.
//!
//! The faults are those of [`crate::fault`], shared with the zone's Raft router, and every one
//! is off by default. A partition (isolated peer, or a cut link in the direction a message
//! travels) blocks gossip hops, requests and responses alike, including those in flight when it
//! is made. Loss, duplication and delay apply to every gossip hop, request and response; draws
//! come from each link's generator, derived from the seed given to [`Network::new`], so a run
//! that does the same things in the same order loses the same messages. A lost request or
//! response is a timeout for the requester; a paused peer's messages wait for it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot};
use xchg_protocol::PublicKey;

use super::swarm::REQUEST_TIMEOUT;
use super::{
    BoxFuture, Broadcast, EVENT_QUEUE, Event, MAX_PUBLISH_BYTES, MAX_REQUEST_BYTES,
    MAX_RESPONSE_BYTES, Message, MessageRef, Offence, Peer, PeerInfo, PublishError, RequestError,
    Verdict,
};
use crate::fault::{self, Delay, Fate, FaultModel};

/// The shared medium every [`MemoryClient`] talks through.
#[derive(Debug)]
pub struct Network {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    faults: FaultModel<Peer>,
    members: BTreeMap<Peer, Member>,
    /// Tells a rejoined peer's handle from the one it had before.
    next_generation: u64,
}

#[derive(Debug)]
struct Member {
    generation: u64,
    events: mpsc::Sender<Event>,
    topics: BTreeSet<String>,
    /// `topics` as [`PeerInfo`] shows them, made again on each subscription: peers() is asked
    /// by every node every round, and copying hundreds of topic names per peer each time was
    /// most of a 200-exchange simulation's work.
    topic_list: Arc<[String]>,
    /// Ids this peer published, received, or has on the way to it.
    seen: HashSet<[u8; 32]>,
    /// Delivered messages awaiting this peer's verdict, by id and deliverer.
    pending: HashMap<([u8; 32], Peer), Gossip>,
    /// Every verdict this peer reported, in order.
    verdicts: Vec<(MessageRef, Verdict)>,
    /// What each deliverer delivered to this peer.
    from: BTreeMap<Peer, Deliveries>,
    /// Messages and requests dropped because this peer's event queue was full.
    dropped: u64,
}

#[derive(Debug, Clone)]
struct Gossip {
    topic: String,
    data: Arc<Vec<u8>>,
}

#[derive(Debug, Default)]
struct Deliveries {
    messages: u64,
    last_message_ms: Option<u64>,
    rejects: u64,
    /// Points of the offences held against the deliverer ([`Broadcast::penalise`]).
    penalties: f64,
}

/// One gossip hop, decided under the lock and carried out now or after its wait.
#[derive(Debug)]
struct Hop {
    from: Peer,
    to: Peer,
    id: [u8; 32],
    gossip: Gossip,
    /// The wait before it lands.
    after: Duration,
    /// How many times it lands (2 when duplicated).
    copies: u32,
    /// An end is paused: it waits for the resume first.
    held: bool,
}

impl Network {
    /// An empty network whose fault draws derive from `seed`.
    pub fn new(seed: u64) -> Arc<Network> {
        Arc::new(Network {
            state: Mutex::new(State {
                faults: FaultModel::new(seed),
                members: BTreeMap::new(),
                next_generation: 0,
            }),
        })
    }

    /// Changes the faults with `change` ([`FaultModel`]: pauses, one-way cuts, duplication,
    /// a delay tail, ...).
    pub fn faults(&self, change: impl FnOnce(&mut FaultModel<Peer>)) {
        change(&mut self.lock().faults);
    }

    /// How many messages have landed at a peer so far, over every peer (a duplicate counts
    /// once; one dropped for a full queue counts).
    pub fn deliveries(&self) -> u64 {
        self.lock()
            .members
            .values()
            .flat_map(|m| m.from.values())
            .map(|d| d.messages)
            .sum()
    }

    /// Joins the peer of `key` (peer id = `key.peer_id()`), returning its handle and its event
    /// stream (capacity [`EVENT_QUEUE`]). Joining again replaces the earlier membership; the
    /// old handle then answers `Stopped`.
    pub fn join(self: &Arc<Self>, key: &PublicKey) -> (MemoryClient, mpsc::Receiver<Event>) {
        let peer = Peer(key.peer_id());
        let (events, receiver) = mpsc::channel(EVENT_QUEUE);
        let mut state = self.lock();
        let generation = state.next_generation;
        state.next_generation += 1;
        state.members.insert(
            peer.clone(),
            Member {
                generation,
                events,
                topics: BTreeSet::new(),
                topic_list: Arc::from([]),
                seen: HashSet::new(),
                pending: HashMap::new(),
                verdicts: Vec::new(),
                from: BTreeMap::new(),
                dropped: 0,
            },
        );
        let client = MemoryClient {
            network: Arc::clone(self),
            peer,
            generation,
        };
        (client, receiver)
    }

    /// Removes `peer`: its event stream ends and its handle answers `Stopped`.
    pub fn leave(&self, peer: &Peer) {
        self.lock().members.remove(peer);
    }

    /// Takes every link of `peer` down, both directions.
    pub fn isolate(&self, peer: &Peer) {
        self.lock().faults.isolate(peer);
    }

    /// Takes the link between `a` and `b` down, both directions.
    pub fn cut(&self, a: &Peer, b: &Peer) {
        self.lock().faults.cut(a, b);
    }

    /// Clears every fault ([`FaultModel::heal_all`]): links, pauses, loss, duplication, delay.
    pub fn heal_all(&self) {
        self.lock().faults.heal_all();
    }

    /// Delays every gossip hop, request and response by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().faults.set_delay(Delay::fixed(delay));
    }

    /// Loses each gossip hop, request and response with this probability (per million).
    pub fn set_loss_per_million(&self, loss: u32) {
        self.lock().faults.set_loss_per_million(loss);
    }

    /// Every verdict `peer` has reported, in order (empty for an unknown peer).
    pub fn verdicts(&self, peer: &Peer) -> Vec<(MessageRef, Verdict)> {
        self.lock()
            .members
            .get(peer)
            .map(|m| m.verdicts.clone())
            .unwrap_or_default()
    }

    /// Messages and requests dropped because `peer`'s event queue was full.
    pub fn dropped(&self, peer: &Peer) -> u64 {
        self.lock().members.get(peer).map_or(0, |m| m.dropped)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under the lock is a single insert, removal or counter step, so the state
        // is consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Carries out `hops`: at once those with no wait, the others each on a task.
    fn send(self: &Arc<Self>, hops: Vec<Hop>) {
        let (now, later): (Vec<Hop>, Vec<Hop>) =
            hops.into_iter().partition(|h| h.after.is_zero() && !h.held);
        if !now.is_empty() {
            let mut state = self.lock();
            for hop in now {
                state.land(hop);
            }
        }
        for hop in later {
            let network = Arc::clone(self);
            tokio::spawn(async move {
                if hop.held {
                    network.until_running(&hop.from, &hop.to).await;
                }
                tokio::time::sleep(hop.after).await;
                network.lock().land(hop);
            });
        }
    }

    /// Returns once neither `a` nor `b` is paused.
    async fn until_running(&self, a: &Peer, b: &Peer) {
        loop {
            let mut resumes = {
                let state = self.lock();
                if !state.faults.is_paused(a) && !state.faults.is_paused(b) {
                    return;
                }
                state.faults.resumes()
            };
            if resumes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Waits out the fate of one request or response `from → to` ([`fault::cross`]): how many
    /// copies arrive (0 when lost), or the cut that stops it.
    async fn cross(&self, from: &Peer, to: &Peer) -> Result<u32, RequestError> {
        fault::cross(|| {
            let mut state = self.lock();
            (state.faults.fate(from, to), state.faults.resumes())
        })
        .await
        .ok_or_else(|| RequestError::Unreachable(to.0.clone()))
    }
}

impl State {
    /// Whether `from` can send to `b` right now: both are members and the link `a → b` is up.
    fn reachable(&self, a: &Peer, b: &Peer) -> bool {
        a != b
            && self.members.contains_key(a)
            && self.members.contains_key(b)
            && self.faults.link_up(a, b)
    }

    /// Whether `a` and `b` are connected: reachable both ways, as a connection needs.
    fn connected(&self, a: &Peer, b: &Peer) -> bool {
        self.reachable(a, b) && self.reachable(b, a)
    }

    /// The hops that carry `gossip` from `from` to every reachable subscriber of its topic that
    /// has not seen it. Each receiver counts as having seen it from now on, unless its hop is
    /// lost: then another path may still bring it.
    fn route(&mut self, from: &Peer, id: [u8; 32], gossip: &Gossip) -> Vec<Hop> {
        let receivers: Vec<Peer> = self
            .members
            .iter()
            .filter(|(peer, member)| {
                member.topics.contains(&gossip.topic)
                    && !member.seen.contains(&id)
                    && self.reachable(from, peer)
            })
            .map(|(peer, _)| peer.clone())
            .collect();
        let mut hops = Vec::new();
        for to in receivers {
            let (after, copies, held) = match self.faults.fate(from, &to) {
                Fate::Cut | Fate::Lost => continue,
                Fate::Held => (Duration::ZERO, 1, true),
                Fate::Deliver { after, copies } => (after, copies, false),
            };
            if let Some(member) = self.members.get_mut(&to) {
                member.seen.insert(id);
            }
            hops.push(Hop {
                from: from.clone(),
                to,
                id,
                gossip: gossip.clone(),
                after,
                copies,
                held,
            });
        }
        hops
    }

    /// Hands a hop's message to its receiver, if the link still holds.
    fn land(&mut self, hop: Hop) {
        let up = self.reachable(&hop.from, &hop.to);
        let Some(member) = self.members.get_mut(&hop.to) else {
            return;
        };
        if !up {
            // Cut while in flight: lost, and free to arrive by another path later.
            member.seen.remove(&hop.id);
            return;
        }
        let deliveries = member.from.entry(hop.from.clone()).or_default();
        deliveries.messages += 1;
        deliveries.last_message_ms = Some(now_ms());
        let reference = MessageRef {
            id: hop.id,
            source: hop.from,
        };
        for _ in 0..hop.copies {
            let event = Event::Message(Message {
                reference: reference.clone(),
                topic: hop.gossip.topic.clone(),
                data: hop.gossip.data.as_ref().clone(),
            });
            if member.events.try_send(event).is_ok() {
                member
                    .pending
                    .insert((reference.id, reference.source.clone()), hop.gossip.clone());
            } else {
                // A full queue drops the message as the swarm does: seen, never validated.
                member.dropped += 1;
            }
        }
    }

    /// The member behind a handle, unless it left (or rejoined under a new handle).
    fn member(&mut self, peer: &Peer, generation: u64) -> Option<&mut Member> {
        self.members
            .get_mut(peer)
            .filter(|m| m.generation == generation)
    }
}

/// A peer's handle on the [`Network`].
#[derive(Debug, Clone)]
pub struct MemoryClient {
    network: Arc<Network>,
    peer: Peer,
    generation: u64,
}

impl MemoryClient {
    /// One request and its response, each crossing its link with that link's faults.
    async fn exchange(&self, peer: Peer, body: Vec<u8>) -> Result<Vec<u8>, RequestError> {
        self.reach(&peer)?;
        let copies = self.network.cross(&self.peer, &peer).await?;
        if copies == 0 {
            // Lost on the way: the requester hears nothing until its timeout.
            return std::future::pending().await;
        }
        let answer = {
            let mut state = self.network.lock();
            if state.member(&self.peer, self.generation).is_none() {
                return Err(RequestError::Stopped);
            }
            if !state.reachable(&self.peer, &peer) {
                return Err(RequestError::Unreachable(peer.0));
            }
            let Some(target) = state.members.get_mut(&peer) else {
                return Err(RequestError::Unreachable(peer.0));
            };
            let (reply, answer) = oneshot::channel();
            let mut replies = vec![reply];
            // A duplicate is answered into the void, as a second stream would be.
            replies.extend((1..copies).map(|_| oneshot::channel().0));
            for reply in replies {
                let event = Event::Request {
                    peer: self.peer.clone(),
                    body: body.clone(),
                    reply,
                };
                if target.events.try_send(event).is_err() {
                    target.dropped += 1;
                }
            }
            answer
        };
        // A dropped request or reply channel is what the swarm's requester sees as a stream
        // closed without a response.
        let response = answer
            .await
            .map_err(|_| RequestError::BadResponse("no response".into()))?;
        if self.network.cross(&peer, &self.peer).await? == 0 {
            return std::future::pending().await;
        }
        if !self.network.lock().reachable(&peer, &self.peer) {
            return Err(RequestError::Unreachable(peer.0));
        }
        if response.len() > MAX_RESPONSE_BYTES {
            return Err(RequestError::BadResponse(format!(
                "response of {} bytes over the {MAX_RESPONSE_BYTES}-byte limit",
                response.len()
            )));
        }
        Ok(response)
    }
}

impl MemoryClient {
    /// Whether this handle is live and `peer` reachable from it now.
    fn reach(&self, peer: &Peer) -> Result<(), RequestError> {
        let mut state = self.network.lock();
        if state.member(&self.peer, self.generation).is_none() {
            return Err(RequestError::Stopped);
        }
        if !state.reachable(&self.peer, peer) {
            return Err(RequestError::Unreachable(peer.0.clone()));
        }
        Ok(())
    }
}

impl Broadcast for MemoryClient {
    fn local_peer(&self) -> Peer {
        self.peer.clone()
    }

    fn subscribe(&self, topic: String) -> BoxFuture<'_, Result<(), PublishError>> {
        let result = match self.network.lock().member(&self.peer, self.generation) {
            Some(member) => {
                if member.topics.insert(topic) {
                    member.topic_list = member.topics.iter().cloned().collect();
                }
                Ok(())
            }
            None => Err(PublishError::Stopped),
        };
        Box::pin(std::future::ready(result))
    }

    fn publish(&self, topic: String, data: Vec<u8>) -> BoxFuture<'_, Result<(), PublishError>> {
        if data.len() > MAX_PUBLISH_BYTES {
            return Box::pin(std::future::ready(Err(PublishError::TooLarge(data.len()))));
        }
        let id: [u8; 32] = Sha256::digest(&data).into();
        let routed = {
            let mut state = self.network.lock();
            let subscribed = state
                .members
                .iter()
                .any(|(peer, m)| m.topics.contains(&topic) && state.reachable(&self.peer, peer));
            match state.member(&self.peer, self.generation) {
                None => Err(PublishError::Stopped),
                Some(member) if member.seen.contains(&id) => Err(PublishError::Duplicate),
                Some(_) if !subscribed => Err(PublishError::NoPeers(topic)),
                Some(member) => {
                    member.seen.insert(id);
                    let gossip = Gossip {
                        topic,
                        data: Arc::new(data),
                    };
                    Ok(state.route(&self.peer, id, &gossip))
                }
            }
        };
        let result = routed.map(|hops| self.network.send(hops));
        Box::pin(std::future::ready(result))
    }

    fn report(&self, message: MessageRef, verdict: Verdict) {
        let forward = {
            let mut state = self.network.lock();
            let Some(member) = state.member(&self.peer, self.generation) else {
                return;
            };
            member.verdicts.push((message.clone(), verdict));
            let Some(gossip) = member.pending.remove(&(message.id, message.source.clone())) else {
                return;
            };
            match verdict {
                Verdict::Accept => Some(state.route(&self.peer, message.id, &gossip)),
                Verdict::Ignore => None,
                Verdict::Reject => {
                    member.from.entry(message.source).or_default().rejects += 1;
                    None
                }
            }
        };
        if let Some(hops) = forward {
            self.network.send(hops);
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
            tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(peer, body))
                .await
                .unwrap_or(Err(RequestError::Timeout))
        })
    }

    fn penalise(&self, peer: Peer, offence: Offence) {
        let mut state = self.network.lock();
        if let Some(member) = state.member(&self.peer, self.generation) {
            member.from.entry(peer).or_default().penalties += offence.cost();
        }
    }

    /// The in-process network shares no queue between peers, so there is nothing to apportion.
    fn set_proven(&self, _peer: Peer, _proven: bool) {}

    fn peers(&self) -> BoxFuture<'_, Vec<PeerInfo>> {
        let state = self.network.lock();
        let infos = match state.members.get(&self.peer) {
            Some(me) if me.generation == self.generation => state
                .members
                .iter()
                .filter(|(peer, _)| state.connected(&self.peer, peer))
                .map(|(peer, member)| {
                    let deliveries = me.from.get(peer);
                    PeerInfo {
                        peer: peer.0.clone(),
                        address: Some(format!("memory/{peer}")),
                        agent: None,
                        score: Some(-(deliveries.map_or(0.0, |d| d.rejects as f64 + d.penalties))),
                        topics: Arc::clone(&member.topic_list),
                        last_message_ms: deliveries.and_then(|d| d.last_message_ms),
                        messages: deliveries.map_or(0, |d| d.messages),
                        connected_since_ms: None,
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        Box::pin(std::future::ready(infos))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc::error::TryRecvError;
    use xchg_protocol::Keypair;

    use super::*;
    use crate::gossip::topic_of;

    struct Node {
        client: MemoryClient,
        events: mpsc::Receiver<Event>,
    }

    impl Node {
        fn peer(&self) -> Peer {
            self.client.local_peer()
        }

        /// The next message, which must be there already: hops without delay are synchronous.
        fn message(&mut self) -> Message {
            match self.events.try_recv() {
                Ok(Event::Message(message)) => message,
                other => panic!("expected a delivered message, got {other:?}"),
            }
        }

        fn nothing(&mut self) {
            let next = self.events.try_recv();
            assert!(
                matches!(next, Err(TryRecvError::Empty)),
                "expected nothing, got {next:?}"
            );
        }
    }

    /// `N` fresh peers, each subscribed to `topic`.
    async fn nodes<const N: usize>(network: &Arc<Network>, topic: &str) -> [Node; N] {
        let mut nodes = Vec::new();
        for _ in 0..N {
            let (client, events) = network.join(&Keypair::generate().public());
            client.subscribe(topic.into()).await.expect("subscribe");
            nodes.push(Node { client, events });
        }
        match nodes.try_into() {
            Ok(nodes) => nodes,
            Err(_) => unreachable!("N nodes were made"),
        }
    }

    /// Sends `request` from `from` to `to` while answering it at `to` with `respond`.
    async fn round_trip(
        from: &Node,
        to: &mut Node,
        request: &[u8],
        respond: impl FnOnce(&Peer, Vec<u8>) -> Vec<u8>,
    ) -> Result<Vec<u8>, RequestError> {
        let asked = from.client.request(to.peer(), request.to_vec());
        let answer = async {
            match to.events.recv().await {
                Some(Event::Request { peer, body, reply }) => {
                    let _ = reply.send(respond(&peer, body));
                }
                other => panic!("expected a request, got {other:?}"),
            }
        };
        tokio::join!(asked, answer).0
    }

    #[tokio::test]
    async fn a_message_reaches_every_reachable_subscriber_but_not_its_publisher() {
        let network = Network::new(1);
        let topic = topic_of("xuchang");
        let [mut a, mut b, mut c] = nodes(&network, &topic).await;
        let [mut outsider] = nodes(&network, &topic_of("elsewhere")).await;

        a.client
            .publish(topic.clone(), b"envelope".to_vec())
            .await
            .expect("publish");
        for node in [&mut b, &mut c] {
            let message = node.message();
            assert_eq!(
                message.reference.id.as_slice(),
                Sha256::digest(b"envelope").as_slice()
            );
            assert_eq!(message.reference.source, a.peer());
            assert_eq!(message.topic, topic);
            assert_eq!(message.data, b"envelope");
        }
        a.nothing();
        outsider.nothing();

        let again = a.client.publish(topic, b"envelope".to_vec()).await;
        assert!(matches!(again, Err(PublishError::Duplicate)), "{again:?}");
    }

    #[tokio::test]
    async fn an_accepted_message_is_flooded_across_partial_connectivity_once() {
        let network = Network::new(1);
        let topic = topic_of("xuchang");
        let [mut a, mut b, mut c] = nodes(&network, &topic).await;
        network.cut(&a.peer(), &c.peer());

        a.client
            .publish(topic, b"envelope".to_vec())
            .await
            .expect("publish");
        let at_b = b.message();
        c.nothing();
        b.client.report(at_b.reference, Verdict::Accept);
        let at_c = c.message();
        assert_eq!(at_c.reference.source, b.peer());
        c.client.report(at_c.reference, Verdict::Accept);
        for node in [&mut a, &mut b, &mut c] {
            node.nothing();
        }
    }

    #[tokio::test]
    async fn a_rejected_message_is_not_forwarded_and_lowers_the_deliverers_score() {
        let network = Network::new(1);
        let topic = topic_of("xuchang");
        let [a, mut b, mut c] = nodes(&network, &topic).await;
        network.cut(&a.peer(), &c.peer());

        for (data, verdict) in [(b"forged", Verdict::Reject), (b"stale!", Verdict::Ignore)] {
            a.client
                .publish(topic.clone(), data.to_vec())
                .await
                .expect("publish");
            let at_b = b.message();
            b.client.report(at_b.reference, verdict);
            c.nothing();
        }
        let peers = b.client.peers().await;
        let a_at_b = peers.iter().find(|p| p.peer == a.peer().0).expect("A");
        assert_eq!(
            a_at_b.score,
            Some(-1.0),
            "one reject; the ignore costs nothing"
        );
        assert_eq!(a_at_b.messages, 2);
        assert!(a_at_b.last_message_ms.is_some());
        let verdicts: Vec<Verdict> = network
            .verdicts(&b.peer())
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(verdicts, [Verdict::Reject, Verdict::Ignore]);
    }

    #[tokio::test]
    async fn a_partition_blocks_gossip_and_requests_until_healed() {
        let network = Network::new(1);
        let topic = topic_of("xuchang");
        let [a, mut b] = nodes(&network, &topic).await;

        let partitions: [&dyn Fn(); 2] = [&|| network.isolate(&b.peer()), &|| {
            network.cut(&b.peer(), &a.peer())
        }];
        for partition in partitions {
            partition();
            let published = a.client.publish(topic.clone(), b"during".to_vec()).await;
            assert!(
                matches!(published, Err(PublishError::NoPeers(_))),
                "{published:?}"
            );
            let asked = a.client.request(b.peer(), b"digest?".to_vec()).await;
            assert!(
                matches!(asked, Err(RequestError::Unreachable(_))),
                "{asked:?}"
            );
            assert!(a.client.peers().await.is_empty());
            assert!(b.client.peers().await.is_empty());
            network.heal_all();
        }
        b.nothing();

        a.client
            .publish(topic, b"after".to_vec())
            .await
            .expect("publish after healing");
        assert_eq!(b.message().data, b"after");
        let response = round_trip(&a, &mut b, b"digest?", |peer, body| {
            assert_eq!((peer, body.as_slice()), (&a.peer(), &b"digest?"[..]));
            b"digest!".to_vec()
        })
        .await;
        assert_eq!(response.expect("response after healing"), b"digest!");
    }

    #[tokio::test]
    async fn a_request_to_a_stranger_is_unreachable_and_an_oversized_response_is_refused() {
        let network = Network::new(1);
        let [a, mut b] = nodes(&network, "t").await;
        let stranger = Peer(Keypair::generate().public().peer_id());
        let asked = a.client.request(stranger, Vec::new()).await;
        assert!(
            matches!(asked, Err(RequestError::Unreachable(_))),
            "{asked:?}"
        );

        let response = round_trip(&a, &mut b, b"", |_, _| vec![0; MAX_RESPONSE_BYTES + 1]).await;
        assert!(
            matches!(response, Err(RequestError::BadResponse(_))),
            "{response:?}"
        );
    }

    /// Which of 40 messages each of four subscribers received at 50 % loss with `seed`.
    async fn lossy_run(seed: u64) -> Vec<Vec<bool>> {
        let network = Network::new(seed);
        network.set_loss_per_million(500_000);
        let topic = topic_of("xuchang");
        // The same keys in every run: draws follow the receivers' peer-id order.
        let mut nodes = Vec::new();
        for i in 1..=5u8 {
            let (client, events) = network.join(&Keypair::from_seed(&[i; 32]).public());
            client.subscribe(topic.clone()).await.expect("subscribe");
            nodes.push(Node { client, events });
        }
        for n in 0..40u8 {
            nodes[0]
                .client
                .publish(topic.clone(), vec![n])
                .await
                .expect("publish");
        }
        nodes[1..]
            .iter_mut()
            .map(|node| {
                let mut got = vec![false; 40];
                while let Ok(Event::Message(m)) = node.events.try_recv() {
                    got[usize::from(m.data[0])] = true;
                }
                got
            })
            .collect()
    }

    #[tokio::test]
    async fn loss_is_reproducible_from_the_seed() {
        let first = lossy_run(7).await;
        assert_eq!(first, lossy_run(7).await, "same seed, same losses");
        assert_ne!(first, lossy_run(8).await, "another seed, other losses");
        let delivered = first.iter().flatten().filter(|&&got| got).count();
        assert!(
            (40..=120).contains(&delivered),
            "{delivered} of 160 at 50% loss"
        );
    }

    #[tokio::test]
    async fn a_delayed_message_arrives_after_the_delay() {
        let network = Network::new(1);
        network.set_delay(Duration::from_millis(20));
        let topic = topic_of("xuchang");
        let [a, mut b] = nodes(&network, &topic).await;
        let sent = tokio::time::Instant::now();
        a.client
            .publish(topic, b"late".to_vec())
            .await
            .expect("publish");
        b.nothing();
        let arrived = tokio::time::timeout(Duration::from_secs(10), b.events.recv())
            .await
            .expect("arrives");
        assert!(matches!(arrived, Some(Event::Message(m)) if m.data == b"late"));
        assert!(sent.elapsed() >= Duration::from_millis(20));
    }

    #[tokio::test]
    async fn a_message_in_flight_when_the_link_is_cut_is_lost() {
        let network = Network::new(1);
        network.set_delay(Duration::from_millis(20));
        let topic = topic_of("xuchang");
        let [a, mut b, mut c] = nodes(&network, &topic).await;
        a.client
            .publish(topic, b"in flight".to_vec())
            .await
            .expect("publish");
        network.cut(&a.peer(), &b.peer());
        // C's copy travels the same delay on an intact link: once it is in, B's would be too.
        let at_c = tokio::time::timeout(Duration::from_secs(10), c.events.recv())
            .await
            .expect("arrives at C");
        assert!(matches!(at_c, Some(Event::Message(_))));
        b.nothing();
    }

    #[tokio::test]
    async fn a_paused_peer_gets_what_was_sent_to_it_once_resumed() {
        let network = Network::new(1);
        let topic = topic_of("xuchang");
        let [a, mut b] = nodes(&network, &topic).await;
        network.faults(|f| f.pause(&b.peer()));
        a.client
            .publish(topic, b"while paused".to_vec())
            .await
            .expect("a paused peer is still connected");
        tokio::task::yield_now().await;
        b.nothing();
        network.faults(|f| f.resume(&b.peer()));
        let arrived = tokio::time::timeout(Duration::from_secs(10), b.events.recv())
            .await
            .expect("arrives after the resume");
        assert!(matches!(arrived, Some(Event::Message(m)) if m.data == b"while paused"));
    }

    #[tokio::test]
    async fn a_duplicated_hop_delivers_the_message_twice() {
        let network = Network::new(1);
        network.faults(|f| f.set_duplicate_per_million(1_000_000));
        let topic = topic_of("xuchang");
        let [a, mut b] = nodes(&network, &topic).await;
        a.client
            .publish(topic, b"twice".to_vec())
            .await
            .expect("publish");
        assert_eq!(b.message().data, b"twice");
        assert_eq!(b.message().data, b"twice");
        b.nothing();
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_request_is_a_timeout_for_the_requester() {
        let network = Network::new(1);
        network.set_loss_per_million(1_000_000);
        let [a, b] = nodes(&network, "t").await;
        let asked = a.client.request(b.peer(), b"digest?".to_vec()).await;
        assert!(matches!(asked, Err(RequestError::Timeout)), "{asked:?}");
    }

    #[tokio::test]
    async fn a_peer_that_left_is_gone_and_its_handle_stopped() {
        let network = Network::new(1);
        let [a, mut b] = nodes(&network, "t").await;
        network.leave(&b.peer());
        assert!(b.events.recv().await.is_none(), "event stream ends");
        assert!(a.client.peers().await.is_empty());
        let result = b.client.subscribe("t".into()).await;
        assert!(matches!(result, Err(PublishError::Stopped)), "{result:?}");
    }
}
