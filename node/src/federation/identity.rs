//! Who a gossip peer proves to be. A peer's libp2p identity is its node key (PROTOCOL.md 2.9),
//! authenticated by the Noise handshake; what it says about itself in identify is not. A peer is
//! proven when its key is a member of this zone's Raft membership, or when it answers the
//! `identity` request (PROTOCOL.md 7.5) with a delegation of that very key from a root this node
//! trusts. Only proven peers go on the federation map or get their APIs asked; the others are
//! listed as unverified, and the transport gives them a smaller share of its inbound queue.
//!
//! [`judge_delegation`] is the pure check; [`Registry`] caches answers so a map refresh does not
//! ask every peer again. It is part of the shell, not of the core: asking is IO, and the answers
//! are checked on the handle's [`Clock`](crate::clock::Clock). What it finds goes to the transport
//! and to the core's judge, which holds an unproven peer to account for untrusted messages.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use serde::Serialize;
use tokio::sync::watch;
use xchg_protocol::catchup::{Request, Response};
use xchg_protocol::{PublicKey, SignedDelegation, Timestamp, TrustStore, ZoneId};

use super::driver::Federation;
use crate::gossip::{Peer, PeerInfo};
use crate::raft::MemberNode;

/// How long a peer's answer is kept before it is asked again (its delegation is checked against
/// the current trust store and clock at every use meanwhile, so a revocation counts at once).
pub const ANSWER_KEPT: Duration = Duration::from_secs(600);
/// How long a peer that answered with no usable delegation is left alone before it is asked
/// again.
pub const FAILURE_KEPT: Duration = Duration::from_secs(60);
/// How soon a peer that gave no answer (timed out, or the request failed) is asked again: a
/// node busy starting, or a moment of loss, is not held against it for a minute. Each further
/// silence doubles the wait, up to [`SILENCE_LONGEST_WAIT`].
pub const SILENCE_FIRST_RETRY: Duration = Duration::from_secs(2);
/// The longest wait before a peer that keeps giving no answer is asked again: one request of at
/// most [`ASK_TIMEOUT`] every 16 s per silent peer is cheap, and a peer that was slow while
/// busy is proven within seconds of its becoming responsive.
pub const SILENCE_LONGEST_WAIT: Duration = Duration::from_secs(16);
/// How long one identity request may take.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// Identity requests in flight at once.
pub const ASK_CONCURRENCY: usize = 16;
/// Most peers whose answers are kept; beyond it, the oldest answers are forgotten.
pub const MAX_KNOWN: usize = 4096;
/// How often connected peers are asked who they are (those without a fresh answer) and the
/// transport told which are proven.
pub const IDENTITY_EVERY: Duration = Duration::from_secs(10);

/// What a peer has proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Its key is the node key of this member of this zone.
    Member {
        /// The member's name in the Raft membership.
        name: String,
    },
    /// Its key holds a valid delegation for `zone`, a zone of another zone or exchange.
    Delegated {
        /// The delegated zone.
        zone: ZoneId,
    },
    /// Nothing proven.
    Unproven {
        /// Why not.
        reason: String,
    },
}

impl Identity {
    /// Whether anything is proven.
    pub fn is_proven(&self) -> bool {
        !matches!(self, Identity::Unproven { .. })
    }

    /// The zone it proved, if any (`own` for members).
    pub fn zone<'a>(&'a self, own: &'a ZoneId) -> Option<&'a ZoneId> {
        match self {
            Identity::Member { .. } => Some(own),
            Identity::Delegated { zone } => Some(zone),
            Identity::Unproven { .. } => None,
        }
    }

    /// As the API shows it.
    pub fn view(&self, own: &ZoneId) -> IdentityView {
        match self {
            Identity::Member { name } => IdentityView {
                verified: true,
                by: Some("membership"),
                zone: Some(own.to_string()),
                node: Some(name.clone()),
                reason: None,
            },
            Identity::Delegated { zone } => IdentityView {
                verified: true,
                by: Some("delegation"),
                zone: Some(zone.to_string()),
                node: None,
                reason: None,
            },
            Identity::Unproven { reason } => IdentityView {
                verified: false,
                by: None,
                zone: None,
                node: None,
                reason: Some(reason.clone()),
            },
        }
    }
}

/// What a peer proved, in API responses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IdentityView {
    /// Whether its identity is proven.
    pub verified: bool,
    /// How: `membership` (a member of this zone) or `delegation` (a delegation of its key from
    /// a trusted root).
    pub by: Option<&'static str>,
    /// The zone it proved to belong to.
    pub zone: Option<String>,
    /// Its name, for members of this zone (other nodes only declare theirs).
    pub node: Option<String>,
    /// Why it is not verified.
    pub reason: Option<String>,
}

/// Judges a peer's delegation: it must be for the key the peer connected with (`peer`, its
/// libp2p peer id), chain to a root trusted for its exchange now, and name a zone other than
/// `own` (this zone's nodes are proven by membership alone).
///
/// # Errors
/// Why the delegation proves nothing.
pub fn judge_delegation(
    peer: &str,
    delegation: &SignedDelegation,
    trust: &TrustStore,
    own: &ZoneId,
    now: Timestamp,
) -> Result<ZoneId, String> {
    let d = &delegation.delegation;
    if d.node_key.peer_id() != peer {
        return Err("its delegation is for another key than the one it connected with".into());
    }
    delegation
        .verify(trust, now)
        .map_err(|e| format!("its delegation does not verify ({}): {e}", e.kind()))?;
    if &d.zone == own {
        return Err("delegated to this zone but not one of its members".into());
    }
    Ok(d.zone.clone())
}

#[derive(Debug)]
struct Entry {
    answer: Result<SignedDelegation, String>,
    at: Timestamp,
    /// How long the entry stands before the peer is asked again.
    kept: Duration,
    /// Whether it records a silence (no answer), whose wait doubles each time.
    silent: bool,
}

/// The answers peers gave to identity requests.
#[derive(Debug, Default)]
pub struct Registry {
    answers: Mutex<HashMap<String, Entry>>,
    asking: Mutex<HashSet<String>>,
}

impl Registry {
    /// Whether `peer` is due to be asked at `now` (as [`Registry::should_ask`], without marking
    /// it as being asked).
    pub fn is_due(&self, peer: &str, now: Timestamp) -> bool {
        !self.is_fresh(peer, now) && self.asking.lock().is_ok_and(|a| !a.contains(peer))
    }

    /// Whether `peer` should be asked at `now`: never asked, or its answer is stale, and no
    /// request to it is under way. Marks it as being asked when it should.
    pub fn should_ask(&self, peer: &str, now: Timestamp) -> bool {
        !self.is_fresh(peer, now)
            && self
                .asking
                .lock()
                .is_ok_and(|mut a| a.insert(peer.to_owned()))
    }

    fn is_fresh(&self, peer: &str, now: Timestamp) -> bool {
        self.answers.lock().is_ok_and(|a| {
            a.get(peer).is_some_and(|e| {
                u128::from(now.millis().saturating_sub(e.at.millis())) < e.kept.as_millis()
            })
        })
    }

    /// Records `peer`'s answer: its delegation, or why what it answered is no use.
    pub fn answered(&self, peer: &str, answer: Result<SignedDelegation, String>, now: Timestamp) {
        let kept = if answer.is_ok() {
            ANSWER_KEPT
        } else {
            FAILURE_KEPT
        };
        self.record(peer, answer, now, kept, false);
    }

    /// Records that `peer` gave no answer, and why: it is asked again after
    /// [`SILENCE_FIRST_RETRY`], twice as long after each further silence, at most
    /// [`SILENCE_LONGEST_WAIT`].
    pub fn unanswered(&self, peer: &str, why: String, now: Timestamp) {
        let kept = self
            .answers
            .lock()
            .ok()
            .and_then(|a| a.get(peer).filter(|e| e.silent).map(|e| e.kept * 2))
            .unwrap_or(SILENCE_FIRST_RETRY)
            .min(SILENCE_LONGEST_WAIT);
        self.record(peer, Err(why), now, kept, true);
    }

    fn record(
        &self,
        peer: &str,
        answer: Result<SignedDelegation, String>,
        now: Timestamp,
        kept: Duration,
        silent: bool,
    ) {
        if let Ok(mut answers) = self.answers.lock() {
            if answers.len() >= MAX_KNOWN && !answers.contains_key(peer) {
                let oldest = answers
                    .iter()
                    .min_by_key(|(_, e)| e.at)
                    .map(|(p, _)| p.clone());
                if let Some(p) = oldest {
                    answers.remove(&p);
                }
            }
            answers.insert(
                peer.to_owned(),
                Entry {
                    answer,
                    at: now,
                    kept,
                    silent,
                },
            );
        }
        if let Ok(mut asking) = self.asking.lock() {
            asking.remove(peer);
        }
    }

    /// Whether `peer` was never asked (or its record was dropped to make room).
    pub fn is_new(&self, peer: &str) -> bool {
        self.answers.lock().is_ok_and(|a| !a.contains_key(peer))
    }

    /// Forgets that `peer` gave no answer, if that is all there is on record: it has just
    /// shown it is there.
    pub fn forget_silence(&self, peer: &str) {
        if let Ok(mut answers) = self.answers.lock()
            && answers.get(peer).is_some_and(|e| e.silent)
        {
            answers.remove(peer);
        }
    }

    /// `peer`'s last answer, if any.
    pub fn answer(&self, peer: &str) -> Option<Result<SignedDelegation, String>> {
        self.answers
            .lock()
            .ok()
            .and_then(|a| a.get(peer).map(|e| e.answer.clone()))
    }
}

/// The libp2p peer id of a member's node key.
pub(super) fn peer_id_of(member: &MemberNode) -> Option<String> {
    let key = <[u8; 32]>::try_from(member.public_key.as_slice()).ok()?;
    PublicKey::from_bytes(&key).ok().map(|k| k.peer_id())
}

impl Federation {
    /// The members of this zone as Raft knows them (the configured ones before Raft knows any).
    pub fn members(&self) -> Vec<MemberNode> {
        let from_raft: Vec<MemberNode> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .map(|(_, n)| n.clone())
            .collect();
        if !from_raft.is_empty() {
            return from_raft;
        }
        self.config
            .zone
            .members
            .iter()
            .map(MemberNode::from)
            .collect()
    }

    /// Whether `peer` (a libp2p peer id) is a member of this zone: no trust store needed (a
    /// check made per peer and per message, where copying the trust store, which grows with
    /// the exchanges agreed with, cost more than all the rest).
    pub(super) fn is_member(&self, peer: &str) -> bool {
        self.members()
            .iter()
            .any(|m| peer_id_of(m).is_some_and(|id| id == peer))
    }

    /// What `peer` (a libp2p peer id) has proven: membership of this zone, or its last answer
    /// to an identity request checked against `trust` and the clock of now.
    fn identity_with(&self, peer: &str, trust: &TrustStore) -> Identity {
        let member = self
            .members()
            .into_iter()
            .find(|m| peer_id_of(m).is_some_and(|id| id == peer));
        if let Some(m) = member {
            return Identity::Member { name: m.name };
        }
        match self.identities.answer(peer) {
            None => Identity::Unproven {
                reason: "not asked who it is yet".into(),
            },
            Some(Err(reason)) => Identity::Unproven { reason },
            Some(Ok(delegation)) => match judge_delegation(
                peer,
                &delegation,
                trust,
                &self.config.zone.id,
                self.clock.now(),
            ) {
                Ok(zone) => Identity::Delegated { zone },
                Err(reason) => Identity::Unproven { reason },
            },
        }
    }

    /// Asks each of `peers` that is not a member and has no fresh answer (with `only_new`:
    /// that was never asked) who it is (the `identity` request, bounded in time and
    /// concurrency), then tells the transport which of them are proven.
    pub async fn prove(&self, peers: &[Peer], only_new: bool) {
        let now = self.clock.now();
        let to_ask: Vec<&Peer> = peers
            .iter()
            .filter(|p| !self.is_member(&p.0))
            .filter(|p| !only_new || self.identities.is_new(&p.0))
            .filter(|p| self.identities.should_ask(&p.0, now))
            .collect();
        futures::stream::iter(to_ask)
            .for_each_concurrent(ASK_CONCURRENCY, |peer| async move {
                let now = || self.clock.now();
                match self.ask_identity(peer).await {
                    Ok(answer) => {
                        if let Err(why) = &answer {
                            tracing::debug!(%peer, reason = %why, "peer did not prove who it is");
                        }
                        self.identities.answered(&peer.0, answer, now());
                    }
                    Err(why) => {
                        tracing::debug!(%peer, reason = %why, "peer did not answer who it is");
                        self.identities.unanswered(&peer.0, why, now());
                    }
                }
            })
            .await;
        let trust = self.trust();
        for peer in peers {
            let proven = self.identity_with(&peer.0, &trust).is_proven();
            self.set_proven(peer.clone(), proven);
        }
    }

    /// Asks `peer` who it is: `Err` when it gave no answer (timed out, or the request
    /// failed), else what it answered.
    async fn ask_identity(&self, peer: &Peer) -> Result<Result<SignedDelegation, String>, String> {
        let body = Request::Identity {}.to_bytes().map_err(|e| e.to_string())?;
        let answer = tokio::select! {
            answer = self.net.request(peer.clone(), body) => answer,
            () = self.clock.sleep(ASK_TIMEOUT) => {
                return Err(format!("no identity answer within {ASK_TIMEOUT:?}"));
            }
        };
        let answer = answer.map_err(|e| format!("identity request failed: {e}"))?;
        Ok(match Response::from_bytes(&answer) {
            Ok(Response::Identity { delegation }) => Ok(delegation),
            // A node that answers identity only when it is not busy (releases before it was
            // answered first) has said nothing about itself: asked again as if silent.
            Ok(Response::Error { message }) if message.starts_with("busy") => {
                return Err(format!("answered busy: {message}"));
            }
            Ok(Response::Error { message }) => Err(format!(
                "answered the identity request with an error: {}",
                message.chars().take(200).collect::<String>()
            )),
            Ok(_) => Err("answered the identity request with something else".into()),
            Err(e) => Err(format!("undecodable identity answer ({})", e.kind())),
        })
    }

    /// The connected peers with what each has proven, asking first those never asked. Peers
    /// whose answer is stale, or that gave none, are asked again by [`Self::identity_loop`],
    /// not here: a request answered or served with this list does not wait on a silent peer.
    pub async fn peer_identities(&self) -> Vec<(PeerInfo, Identity)> {
        let peers = self.net.peers().await;
        let ids: Vec<Peer> = peers.iter().map(|p| Peer(p.peer.clone())).collect();
        self.prove(&ids, true).await;
        let trust = self.trust();
        peers
            .into_iter()
            .map(|p| {
                let identity = self.identity_with(&p.peer, &trust);
                (p, identity)
            })
            .collect()
    }

    /// What `peer`, connected, has proven, asking it first if it was never asked or gave no
    /// answer last time (it is asking something of this node, so it is there to answer);
    /// `None` if it is not connected.
    pub async fn identity_of(&self, peer: &Peer) -> Option<Identity> {
        let connected = self.net.peers().await.iter().any(|p| p.peer == peer.0);
        if !connected {
            return None;
        }
        self.identities.forget_silence(&peer.0);
        self.prove(std::slice::from_ref(peer), true).await;
        Some(self.identity_with(&peer.0, &self.trust()))
    }

    /// Every [`IDENTITY_EVERY`], asks the connected peers without a fresh answer who they are
    /// and tells the transport which are proven; in between, every [`SILENCE_FIRST_RETRY`],
    /// asks those that fell due (a silent peer's next try).
    pub(super) async fn identity_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut since_full = IDENTITY_EVERY;
        loop {
            let peers = self.net.peers().await.into_iter().map(|p| Peer(p.peer));
            if since_full >= IDENTITY_EVERY {
                self.prove(&peers.collect::<Vec<_>>(), false).await;
                since_full = Duration::ZERO;
            } else {
                let now = self.clock.now();
                let due: Vec<Peer> = peers
                    .filter(|p| self.identities.is_due(&p.0, now) && !self.is_member(&p.0))
                    .collect();
                if !due.is_empty() {
                    self.prove(&due, false).await;
                }
            }
            tokio::select! {
                () = self.clock.sleep(SILENCE_FIRST_RETRY) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            since_full += SILENCE_FIRST_RETRY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xchg_protocol::{Delegation, Keypair};

    fn zone(id: &str) -> ZoneId {
        id.parse().expect("zone id")
    }

    /// A trust store with the `zhengzhou` root, and a delegation by it of `node` for `z`.
    fn delegated(root: &Keypair, node: &Keypair, z: &str) -> (TrustStore, SignedDelegation) {
        let mut trust = TrustStore::default();
        trust.trust("zhengzhou".parse().expect("id"), root.public());
        let d = SignedDelegation::sign(
            Delegation {
                exchange: "zhengzhou".parse().expect("id"),
                zone: zone(z),
                node_key: node.public(),
                not_before: Timestamp(0),
                not_after: Timestamp(10_000),
            },
            root,
        );
        (trust, d)
    }

    #[test]
    fn a_delegation_proves_its_zone_only_for_the_key_it_delegates() {
        let (root, node) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
        let (trust, d) = delegated(&root, &node, "zhengzhou/main");
        let own = zone("xuchang/municipal");
        let peer = node.public().peer_id();
        assert_eq!(
            judge_delegation(&peer, &d, &trust, &own, Timestamp(5)),
            Ok(zone("zhengzhou/main"))
        );
        // Someone else presenting that node's delegation.
        let other = Keypair::from_seed(&[3; 32]).public().peer_id();
        let err = judge_delegation(&other, &d, &trust, &own, Timestamp(5)).expect_err("stolen");
        assert!(err.contains("another key"), "{err}");
        // Expired, untrusted, revoked.
        let err = judge_delegation(&peer, &d, &trust, &own, Timestamp(10_000)).expect_err("old");
        assert!(err.contains("delegation_expired"), "{err}");
        let (_, foreign) = delegated(&Keypair::from_seed(&[4; 32]), &node, "zhengzhou/main");
        let err = judge_delegation(&peer, &foreign, &trust, &own, Timestamp(5)).expect_err("root");
        assert!(err.contains("untrusted_root"), "{err}");
        let mut revoked = trust.clone();
        revoked.revoke("zhengzhou".parse().expect("id"), node.public());
        let err = judge_delegation(&peer, &d, &revoked, &own, Timestamp(5)).expect_err("revoked");
        assert!(err.contains("revoked_key"), "{err}");
        // This zone's nodes are proven by membership, not by a delegation.
        let err = judge_delegation(&peer, &d, &trust, &zone("zhengzhou/main"), Timestamp(5))
            .expect_err("own zone");
        assert!(err.contains("not one of its members"), "{err}");
    }

    #[test]
    fn a_peer_is_asked_once_at_a_time_and_again_only_when_its_answer_is_stale() {
        let registry = Registry::default();
        let start = Timestamp(1_000_000);
        assert!(registry.is_due("p", start));
        assert!(registry.should_ask("p", start));
        assert!(!registry.is_due("p", start), "already being asked");
        assert!(!registry.should_ask("p", start), "already being asked");
        registry.answered("p", Err("no delegation".into()), start);
        let later = |d: Duration| start.plus_millis(d.as_millis() as u64);
        assert!(!registry.should_ask("p", later(FAILURE_KEPT / 2)));
        assert!(registry.should_ask("p", later(FAILURE_KEPT)));
        assert!(registry.answer("p").is_some());
    }

    /// Found by tests/complaints (the hub's view of every zone): in a city starting on a busy
    /// machine, every county's node took longer than 2 s to answer the hub's first identity
    /// request and was then left unproven for a minute. A peer that gave no answer is asked
    /// again after 2 s, then 4, 8 and every 16 s after that; an answer that proves nothing still
    /// waits the minute.
    #[test]
    fn a_silent_peer_is_asked_again_soon_and_less_often_the_longer_it_stays_silent() {
        let registry = Registry::default();
        let mut at = Timestamp(1_000_000);
        let after = |t: Timestamp, d: Duration| t.plus_millis(d.as_millis() as u64);
        let mut waits = Vec::new();
        for _ in 0..7 {
            assert!(registry.should_ask("p", at));
            registry.unanswered("p", "no identity answer within 2s".into(), at);
            let mut wait = Duration::from_secs(1);
            while !registry.is_due("p", after(at, wait)) {
                wait += Duration::from_secs(1);
            }
            waits.push(wait.as_secs());
            at = after(at, wait);
        }
        assert_eq!(waits, [2, 4, 8, 16, 16, 16, 16]);
        // An answer resets the schedule; a useless answer waits the full minute.
        assert!(registry.should_ask("p", at));
        registry.answered("p", Err("no delegation".into()), at);
        assert!(!registry.is_due("p", after(at, Duration::from_secs(59))));
        assert!(registry.should_ask("p", after(at, FAILURE_KEPT)));
        registry.unanswered("p", "silent".into(), after(at, FAILURE_KEPT));
        assert!(registry.is_due("p", after(at, FAILURE_KEPT + SILENCE_FIRST_RETRY)));
        // A peer heard from again has its silence forgotten (and is asked at once); an answer
        // is never forgotten that way.
        registry.forget_silence("p");
        assert!(registry.is_new("p"));
        registry.answered("p", Err("no delegation".into()), at);
        registry.forget_silence("p");
        assert!(!registry.is_new("p"));
    }
}
